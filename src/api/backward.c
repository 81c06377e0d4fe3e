/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward pass's entry point (attn_sdpa_backward): argument checks,
 * then, on a device backend, the plan of the call's shape (its backward
 * variant on the first device) and the device's run; the native backend
 * computes it on a native context, and redoes a device's failure (device
 * fault, out of memory, failed build, no variant taking the shape) when
 * fallback is allowed, as the forward does (src/sched/run.c).  A forced
 * backward variant that does not take the call is the caller's error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/context.h"
#include "cpu/cpu_impl.h"

static const attn_abi_layout grad_layout = {
    "attn_sdpa_grad", ATTN_ABI_GRAD_FIRST, sizeof(attn_sdpa_grad)};

/* Statuses after which the native backend may redo a device's work. */
static int recoverable(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_BUILD_FAILED ||
           s == ATTN_ERR_OUT_OF_MEMORY || s == ATTN_ERR_UNSUPPORTED;
}

/* lse with the padding rows of q_start at -INFINITY (rows that see no
 * key: they add nothing and get dq = 0), or NULL when out of memory. */
static float *lse_padded(const attn_sdpa_desc *d, const float *lse)
{
    const size_t rows =
        (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
    float *l = malloc((rows ? rows : 1) * sizeof *l);
    if (!l)
        return NULL;
    memcpy(l, lse, rows * sizeof *l);
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < (int)d->q_start[b] && i < d->seq_q; i++)
                l[((size_t)b * (size_t)d->heads_q + (size_t)h) *
                      (size_t)d->seq_q +
                  (size_t)i] = -INFINITY;
    return l;
}

/* The call on the context's device backend. */
static attn_status device_backward(attn_context *ctx, const attn_sdpa_desc *d,
                                   const attn_sdpa_grad *g, attn_err *err)
{
    attn_backend *b = ctx->backend;
    const unsigned grads = (g->dbias ? ATTN_BWD_DBIAS : 0u) |
                           (g->d_additive_w ? ATTN_BWD_DADDW : 0u);
    attn_sdpa_desc merged;
    attn_sdpa_grad gm = *g;
    float *merged_bias = NULL, *lse = NULL;
    attn_plan *plan = NULL;
    const attn_dev_work *work = NULL;
    attn_status s;
    /* the devices take keep, kv_start and a per-item causal diagonal
     * merged into the bias, the padding rows of q_start through lse */
    if ((s = attn_keep_merge(d, &merged, &merged_bias, err)))
        return s;
    if (d->q_start && !(gm.lse = lse = lse_padded(d, g->lse))) {
        free(merged_bias);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the copy of lse");
    }
    s = attn_plan_backward(ctx->plans, b, &merged, grads, &plan, &work, err);
    if (s == ATTN_OK && work->prep[0] != ATTN_OK)
        s = attn_fail(err, work->prep[0], "%s", work->why[0]);
    else if (s == ATTN_OK)
        s = b->ops->sdpa_bwd(b, 0, &work->p[0], &merged, &gm, err);
    attn_plan_release(ctx->plans, plan);
    free(lse);
    free(merged_bias);
    return s;
}

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
    if (ctx->backend->ops->sdpa_bwd) {
        attn_backend *b = ctx->backend;
        s = device_backward(ctx, d, g, &err);
        if (s == ATTN_OK)
            return ATTN_OK;
        /* as the forward (src/sched/run.c): the native backend redoes a
         * device's failure when allowed */
        if (!ctx->run.allow_fallback || !recoverable(s) ||
            (s == ATTN_ERR_UNSUPPORTED && b->ops->bwd_forced &&
             b->ops->bwd_forced(b)))
            return attn_api_report(ctx, fn, s, &err);
        {
            char fell[ATTN_MSG_MAX];
            snprintf(fell, sizeof fell,
                     "%s fell back to the native backend: %.400s", fn, err.msg);
            attn_log(ctx->run.log, ATTN_LOG_WARN, "%s", fell);
            attn_context_note(ctx, fell);
        }
    }
    s = attn_cpu_sdpa_backward(ctx->native->impl, d, g);
    if (s)
        return attn_api_report(
            ctx, fn, s,
            &(attn_err){"not enough memory for the backward pass's working "
                        "memory (a dq buffer per worker)"});
    return ATTN_OK;
}
