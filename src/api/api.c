/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public entry points of attn.h: argument checks, then the plan of the
 * call's shape, then the scheduler, which runs it on the context's backend
 * (and natively when a device fails and fallback is allowed).  Nothing
 * here knows how the work is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/context.h"
#include "cpu/backend_native.h"
#include "opencl/opencl_backend.h"

attn_status attn_devices(attn_device_info *out, size_t capacity, size_t *count)
{
    attn_err err = {{0}};
    size_t stride = 0, raw = 0;
    if (!count || (!out && capacity > 0)) {
        attn_thread_set_error(!count ? "attn_devices: count is NULL"
                                     : "attn_devices: out is NULL but "
                                       "capacity > 0");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    /* The caller's array is walked by its own element size (abi.c). */
    if (capacity > 0) {
        if (attn_abi_info_size(out, &stride, &err))
            return attn_api_report(NULL, "attn_devices",
                                   ATTN_ERR_INVALID_ARGUMENT, &err);
        memcpy(&raw, out, sizeof raw);
    }
#ifdef ATTN_HAVE_OPENCL
    {
        attn_device_info *all = NULL;
        size_t n = 0;
        attn_status s = attn_opencl_devices(&all, &n, &err);
        if (s)
            return attn_api_report(NULL, "attn_devices", s, &err);
        for (size_t i = 0; i < n && i < capacity; i++)
            attn_abi_info_put((unsigned char *)out + i * stride, stride, raw,
                              &all[i]);
        free(all);
        *count = n;
        return ATTN_OK;
    }
#else
    /* Built without the OpenCL backend: there are no OpenCL devices. */
    (void)stride;
    (void)raw;
    *count = 0;
    return ATTN_OK;
#endif
}

const char *attn_kernel_name(int index)
{
#ifdef ATTN_HAVE_OPENCL
    return attn_opencl_kernel_name(index);
#else
    (void)index;
    return NULL;
#endif
}

attn_status attn_sdpa(attn_context *ctx, const attn_sdpa_desc *d, const void *q,
                      const void *k, const void *v, void *o, float *lse)
{
    attn_sdpa_desc dl;
    attn_err err = {{0}};
    attn_status s;
    if (!ctx) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "ctx is NULL");
        return attn_api_report(NULL, "attn_sdpa", ATTN_ERR_INVALID_ARGUMENT,
                               &err);
    }
    if (attn_api_from_callback("attn_sdpa", &err))
        return attn_api_report(ctx, "attn_sdpa", ATTN_ERR_INVALID_ARGUMENT,
                               &err);
    if ((s = attn_abi_sdpa_desc(d, &dl, &d, &err)))
        return attn_api_report(ctx, "attn_sdpa", s, &err);
    if (d && (d->cu_seqlens_q || d->cu_seqlens_kv))
        s = attn_sdpa_varlen(ctx, d, q, k, v, o, lse, &err);
    else
        s = attn_sdpa_run(ctx, d, q, k, v, o, lse, &err);
    return s == ATTN_OK ? s : attn_api_report(ctx, "attn_sdpa", s, &err);
}

/* What attn_sdpa runs d (read and checked here) at on ctx: the kernel's
 * name into name (cap bytes; NULL: not asked) and its precision into
 * *runs (NULL: not asked).  Failures are reported as fn's. */
static attn_status which_kernel(attn_context *ctx, const char *fn,
                                const attn_sdpa_desc *d, char *name, size_t cap,
                                attn_precision *runs)
{
    attn_err err = {{0}};
    attn_sdpa_desc dl, item;
    attn_sdpa_bytes sz;
    attn_status s;
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if ((s = attn_abi_sdpa_desc(d, &dl, &d, &err)))
        return attn_api_report(ctx, fn, s, &err);
    /* packed sequences: checked as attn_sdpa checks them (all rows as
     * one sequence), then what their longest would run at */
    if (d && (d->cu_seqlens_q || d->cu_seqlens_kv)) {
        if ((s = attn_varlen_item(d, ATTN_VARLEN_WHOLE, &item, &err)) ||
            (s = attn_validate_sdpa_desc(&item, &sz, &err)) ||
            (s = attn_varlen_item(d, ATTN_VARLEN_LONGEST, &item, &err)))
            return attn_api_report(ctx, fn, s, &err);
        d = &item;
    }
    if ((s = attn_validate_sdpa_desc(d, &sz, &err)))
        return attn_api_report(ctx, fn, s, &err);
    if (!ctx->backend->ops->exec) {
        if (name)
            snprintf(name, cap, "native");
        if (runs)
            *runs = attn_backend_native_precision(ctx->backend, d);
        return ATTN_OK;
    }
    /* as attn_sdpa runs it: keep merged into the bias */
    attn_sdpa_desc merged;
    float *merged_bias = NULL;
    if ((s = attn_keep_merge(d, &merged, &merged_bias, &err)) == ATTN_OK)
        s = attn_plan_variant(ctx->plans, ctx->backend, &merged, name, cap,
                              runs, &err);
    free(merged_bias);
    return s == ATTN_OK ? s : attn_api_report(ctx, fn, s, &err);
}

attn_status attn_sdpa_kernel(attn_context *ctx, const attn_sdpa_desc *d,
                             char *name, size_t cap)
{
    attn_err err = {{0}};
    if (!ctx || !name || cap == 0) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT,
                  !ctx ? "ctx is NULL"
                       : "name is NULL or cap is 0: nowhere to write");
        return attn_api_report(ctx, "attn_sdpa_kernel",
                               ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    return which_kernel(ctx, "attn_sdpa_kernel", d, name, cap, NULL);
}

attn_status attn_sdpa_precision(attn_context *ctx, const attn_sdpa_desc *d,
                                attn_precision *asked, attn_precision *runs)
{
    attn_err err = {{0}};
    attn_precision p = ATTN_PRECISION_EXACT;
    attn_status s;
    if (!ctx || !runs) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT,
                  !ctx ? "ctx is NULL" : "runs is NULL: nowhere to write");
        return attn_api_report(ctx, "attn_sdpa_precision",
                               ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if ((s = which_kernel(ctx, "attn_sdpa_precision", d, NULL, 0, &p)))
        return s;
    if (asked)
        *asked = ctx->precision;
    *runs = p;
    return ATTN_OK;
}

/* attn_mha_forward with 16-bit weights: c validated as the caller gave it
 * (the arrays' sizes by weight_dtype), then run on float copies of the
 * arrays, made for the call. */
static attn_status mha_forward_16(attn_context *ctx, attn_mha_call *c)
{
    static const char fn[] = "attn_mha_forward";
    attn_err err = {{0}};
    attn_mha_desc mf;
    float *host = NULL;
    size_t pos_rows = 0;
    attn_status s = attn_validate_mha(c, &err);
    if (s == ATTN_OK && c->m->posenc == ATTN_POSENC_LEARNED) {
        /* the rows the call reads (validate.c) */
        pos_rows = (size_t)c->m->pos_offset + (size_t)c->seq_q;
        if (c->x_kv && (size_t)c->seq_kv > pos_rows)
            pos_rows = (size_t)c->seq_kv;
    }
    if (s == ATTN_OK)
        s = attn_mha_weights_float(c->m, pos_rows, &mf, &host, &err);
    if (s != ATTN_OK)
        return attn_api_report(ctx, fn, s, &err);
    c->m = &mf;
    s = attn_api_mha(ctx, fn, c);
    free(host);
    return s;
}

attn_status attn_mha_forward(attn_context *ctx, const attn_mha_desc *m,
                             int batch, int seq_q, int seq_kv, const float *x_q,
                             const float *x_kv, const attn_mask_desc *mask,
                             float *y)
{
    static const attn_mask_desc no_mask = ATTN_MASK_DESC_INIT;
    attn_mha_desc ml;
    attn_mask_desc kl;
    attn_mha_call c;
    attn_err err = {{0}};
    attn_status s;
    if (!ctx) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "ctx is NULL");
        return attn_api_report(NULL, "attn_mha_forward",
                               ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (attn_api_from_callback("attn_mha_forward", &err))
        return attn_api_report(ctx, "attn_mha_forward",
                               ATTN_ERR_INVALID_ARGUMENT, &err);
    if ((s = attn_abi_mha_desc(m, &ml, &m, &err)) ||
        (s = attn_abi_mask_desc(mask, &kl, &mask, &err)))
        return attn_api_report(ctx, "attn_mha_forward", s, &err);
    memset(&c, 0, sizeof c);
    c.m = m;
    c.batch = batch;
    c.seq_q = seq_q;
    c.seq_kv = seq_kv;
    c.x_q = x_q;
    c.x_kv = x_kv;
    c.mask = mask ? mask : &no_mask;
    c.y = y;
    if (m && m->weight_dtype != ATTN_F32)
        return mha_forward_16(ctx, &c);
    return attn_api_mha(ctx, "attn_mha_forward", &c);
}

attn_status attn_posenc_sinusoidal(int seq, int d_model, int offset,
                                   float *table)
{
    attn_err err = {{0}};
    size_t n;
    attn_status s = ATTN_ERR_INVALID_ARGUMENT;
    if (!table)
        attn_fail(&err, s, "table is NULL");
    else if (seq <= 0 || d_model <= 0)
        attn_fail(&err, s, "seq and d_model must be positive (got %d, %d)", seq,
                  d_model);
    else if (offset < 0 || offset > INT32_MAX - seq)
        attn_fail(&err, s, "offset must be in [0, INT_MAX - seq] (got %d)",
                  offset);
    else if (!attn_mul_size(&n, (size_t)seq, (size_t)d_model) ||
             n > PTRDIFF_MAX / sizeof(float))
        s = attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                      "seq * d_model overflows the address space");
    else {
        attn_native_posenc_sinusoidal(seq, d_model, offset, table);
        return ATTN_OK;
    }
    return attn_api_report(NULL, "attn_posenc_sinusoidal", s, &err);
}
