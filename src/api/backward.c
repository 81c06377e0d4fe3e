/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward pass's entry point (attn_sdpa_backward): argument checks,
 * then the native backend's gradients.  A context on an OpenCL device
 * computes them natively too (its fallback backend), until device
 * variants exist.
 */
#include <string.h>

#include "api/abi.h"
#include "api/context.h"
#include "cpu/cpu_impl.h"

static const attn_abi_layout grad_layout = {
    "attn_sdpa_grad", ATTN_ABI_GRAD_FIRST, sizeof(attn_sdpa_grad)};

attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa_desc *d,
                               const attn_sdpa_grad *g)
{
    static const char fn[] = "attn_sdpa_backward";
    attn_sdpa_desc dl;
    attn_sdpa_grad gl;
    attn_err err = {{0}};
    attn_status s;

    if (!ctx) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "ctx is NULL");
        return attn_api_report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if ((s = attn_abi_sdpa_desc(d, &dl, &d, &err)))
        return attn_api_report(ctx, fn, s, &err);
    if (g) {
        if ((s = attn_abi_read(&gl, g, &grad_layout, &err)))
            return attn_api_report(ctx, fn, s, &err);
        g = &gl;
    }
    if (d && (d->cu_seqlens_q || d->cu_seqlens_kv))
        return attn_api_report(
            ctx, fn, ATTN_ERR_UNSUPPORTED,
            &(attn_err){"packed sequences (cu_seqlens_q, cu_seqlens_kv) are "
                        "not taken by the backward pass yet"});
    if ((s = attn_validate_sdpa_grad(d, g, &err)))
        return attn_api_report(ctx, fn, s, &err);
    if (attn_sdpa_strided(d))
        return attn_api_report(
            ctx, fn, ATTN_ERR_UNSUPPORTED,
            &(attn_err){"strided tensors (q_strides, k_strides, v_strides, "
                        "o_strides) are not taken by the backward pass yet: "
                        "pass contiguous tensors"});
    s = attn_cpu_sdpa_backward(ctx->native->impl, d, g);
    if (s)
        return attn_api_report(
            ctx, fn, s,
            &(attn_err){"not enough memory for the backward pass's working "
                        "memory (a dq buffer per worker)"});
    return ATTN_OK;
}
