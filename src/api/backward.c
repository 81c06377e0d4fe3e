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
#include "cpu/backend_native.h"

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
    if (g->dbias && merged_bias) {
        free(merged_bias);
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the backward kernel variants (bwd_ref, bwd_fused, "
                         "bwd_tiled) compute no dbias with keep, kv_start or "
                         "a moved causal diagonal, which the device's bias "
                         "holds merged");
    }
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

/* The call on contiguous tensors: on the device backend (its failure
 * redone natively when allowed), or natively. */
static attn_status dense_backward(attn_context *ctx, const char *fn,
                                  const attn_sdpa_desc *d,
                                  const attn_sdpa_grad *g, attn_err *err)
{
    attn_status s;
    if (ctx->backend->ops->sdpa_bwd) {
        attn_backend *b = ctx->backend;
        s = device_backward(ctx, d, g, err);
        if (s == ATTN_OK)
            return ATTN_OK;
        /* as the forward (src/sched/run.c): the native backend redoes a
         * device's failure when allowed */
        if (!ctx->run.allow_fallback || !recoverable(s) ||
            (s == ATTN_ERR_UNSUPPORTED && b->ops->bwd_forced &&
             b->ops->bwd_forced(b)))
            return s;
        {
            char fell[ATTN_MSG_MAX];
            snprintf(fell, sizeof fell,
                     "%s fell back to the native backend: %.400s", fn,
                     err->msg);
            attn_log(ctx->run.log, ATTN_LOG_WARN, "%s", fell);
            attn_context_note(ctx, fell);
        }
    }
    s = attn_backend_native_backward(ctx->native, d, g);
    if (s)
        return attn_fail(err, s,
                         "not enough memory for the backward pass's working "
                         "memory (a dq buffer per worker)");
    return ATTN_OK;
}

/* Copies the rows of tensor t of d between its strided place x and the
 * contiguous dense (to_dense), or zeroes them at x (dense NULL). */
static void move_rows(const attn_sdpa_desc *d, int t, void *x, void *dense,
                      int to_dense)
{
    const size_t e = d->dtype == ATTN_F32 ? 4 : 2;
    size_t n[3], w, st[3], r = 0;
    attn_tensor_dims(d, t, n, &w);
    attn_tensor_strides(d, t, st);
    for (size_t b = 0; b < n[0]; b++)
        for (size_t h = 0; h < n[1]; h++)
            for (size_t i = 0; i < n[2]; i++, r++) {
                char *at = (char *)x + (b * st[0] + h * st[1] + i * st[2]) * e;
                char *dn = dense ? (char *)dense + r * w * e : NULL;
                if (!dn)
                    memset(at, 0, w * e);
                else if (to_dense)
                    memcpy(dn, at, w * e);
                else
                    memcpy(at, dn, w * e);
            }
}

/* Strided tensors: the inputs gathered into contiguous copies, the
 * contiguous backward, dq, dk and dv scattered to their places. */
static attn_status strided_backward(attn_context *ctx, const char *fn,
                                    const attn_sdpa_desc *d,
                                    const attn_sdpa_grad *g, attn_err *err)
{
    const size_t e = d->dtype == ATTN_F32 ? 4 : 2;
    /* q, k, v, o, d_o, dq, dk, dv */
    static const int kind[8] = {ATTN_T_Q, ATTN_T_K, ATTN_T_V, ATTN_T_O,
                                ATTN_T_O, ATTN_T_Q, ATTN_T_K, ATTN_T_V};
    void *const at[8] = {(void *)g->q, (void *)g->k,   (void *)g->v,
                         (void *)g->o, (void *)g->d_o, g->dq,
                         g->dk,        g->dv};
    size_t off[9] = {0};
    attn_sdpa_desc dd = *d;
    attn_sdpa_grad gd = *g;
    char *buf;
    attn_status s;
    for (int i = 0; i < 8; i++) {
        size_t n[3], w;
        attn_tensor_dims(d, kind[i], n, &w);
        off[i + 1] = off[i] + n[0] * n[1] * n[2] * w * e;
    }
    if (!(buf = malloc(off[8] ? off[8] : 1)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate %zu bytes for contiguous copies of "
                         "the strided tensors",
                         off[8]);
    for (int i = 0; i < 5; i++)
        move_rows(d, kind[i], at[i], buf + off[i], 1);
    memset(dd.q_strides, 0, sizeof dd.q_strides);
    memset(dd.k_strides, 0, sizeof dd.k_strides);
    memset(dd.v_strides, 0, sizeof dd.v_strides);
    memset(dd.o_strides, 0, sizeof dd.o_strides);
    gd.q = buf + off[0], gd.k = buf + off[1], gd.v = buf + off[2];
    gd.o = buf + off[3], gd.d_o = buf + off[4];
    gd.dq = buf + off[5], gd.dk = buf + off[6], gd.dv = buf + off[7];
    s = dense_backward(ctx, fn, &dd, &gd, err);
    for (int i = 5; i < 8 && s == ATTN_OK; i++)
        move_rows(d, kind[i], at[i], buf + off[i], 0);
    free(buf);
    return s;
}

/* Copies the rows of tensor t of d from src to dst, both in d's layout
 * (the gaps between rows untouched). */
static void copy_rows(const attn_sdpa_desc *d, int t, void *dst,
                      const void *src)
{
    const size_t e = d->dtype == ATTN_F32 ? 4 : 2;
    size_t n[3], w, st[3];
    attn_tensor_dims(d, t, n, &w);
    attn_tensor_strides(d, t, st);
    for (size_t b = 0; b < n[0]; b++)
        for (size_t h = 0; h < n[1]; h++)
            for (size_t i = 0; i < n[2]; i++) {
                const size_t at = (b * st[0] + h * st[1] + i * st[2]) * e;
                memcpy((char *)dst + at, (const char *)src + at, w * e);
            }
}

/* Packed sequences (cu_seqlens_q, cu_seqlens_kv): each sequence as its own
 * strided call over its rows, its lse rows gathered from [heads_q,
 * total_q]; a sequence without keys gets dq = 0, one without queries dk =
 * dv = 0; d_additive_w summed over the sequences.  dq, dk and dv are
 * written to copies of their spans (whole: all the rows as one sequence)
 * and the sum kept apart, all copied to the caller's only when every
 * sequence has run: outputs are untouched on error. */
static attn_status packed_backward(attn_context *ctx, const char *fn,
                                   const attn_sdpa_desc *d,
                                   const attn_sdpa_desc *whole,
                                   const attn_sdpa_grad *g, attn_err *err)
{
    const size_t e = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t total_q = (size_t)d->cu_seqlens_q[d->batch];
    const size_t nw = (size_t)d->heads_q * (size_t)d->head_dim;
    const size_t span[3] = {attn_tensor_extent(whole, ATTN_T_Q) * e,
                            attn_tensor_extent(whole, ATTN_T_K) * e,
                            attn_tensor_extent(whole, ATTN_T_V) * e};
    void *const out[3] = {g->dq, g->dk, g->dv};
    float *lse = malloc((size_t)d->heads_q * (size_t)d->seq_q * sizeof *lse);
    float *dw = g->d_additive_w ? malloc(2 * nw * sizeof *dw) : NULL;
    char *stage = malloc(span[0] + span[1] + span[2]);
    char *sq = stage, *sk = stage + span[0], *sv = sk + span[1];
    attn_status s = ATTN_OK;
    if (!lse || !stage || (g->d_additive_w && !dw)) {
        free(lse);
        free(dw);
        free(stage);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the log-sum-exp of one sequence "
                         "and copies of dq, dk and dv");
    }
    /* the gaps of strided outputs keep what the caller has there */
    memcpy(sq, g->dq, span[0]);
    memcpy(sk, g->dk, span[1]);
    memcpy(sv, g->dv, span[2]);
    if (dw)
        memset(dw + nw, 0, nw * sizeof *dw); /* the sum over sequences */
    for (int b = 0; b < d->batch && s == ATTN_OK; b++) {
        attn_sdpa_desc it;
        attn_sdpa_grad gi = *g;
        size_t q0 = (size_t)d->cu_seqlens_q[b],
               k0 = (size_t)d->cu_seqlens_kv[b];
        if ((s = attn_varlen_item(d, b, &it, err)))
            break;
        gi.q = (const char *)g->q + q0 * (size_t)it.q_strides[2] * e;
        gi.k = (const char *)g->k + k0 * (size_t)it.k_strides[2] * e;
        gi.v = (const char *)g->v + k0 * (size_t)it.v_strides[2] * e;
        gi.o = (const char *)g->o + q0 * (size_t)it.o_strides[2] * e;
        gi.d_o = (const char *)g->d_o + q0 * (size_t)it.o_strides[2] * e;
        gi.dq = sq + q0 * (size_t)it.q_strides[2] * e;
        gi.dk = sk + k0 * (size_t)it.k_strides[2] * e;
        gi.dv = sv + k0 * (size_t)it.v_strides[2] * e;
        gi.lse = lse;
        gi.d_additive_w = dw;
        if (it.seq_q == 0 || it.seq_kv == 0) {
            /* the rows that exist get zero gradients (each item has at
             * least one row of the other kind counted as 0 here) */
            if (it.seq_kv == 0) {
                it.seq_kv = 1; /* dims of the queries only */
                move_rows(&it, ATTN_T_Q, gi.dq, NULL, 0);
            } else {
                it.seq_q = 1;
                move_rows(&it, ATTN_T_K, gi.dk, NULL, 0);
                move_rows(&it, ATTN_T_V, gi.dv, NULL, 0);
            }
            continue;
        }
        for (size_t h = 0; h < (size_t)it.heads_q; h++)
            memcpy(lse + h * (size_t)it.seq_q, g->lse + h * total_q + q0,
                   (size_t)it.seq_q * sizeof *lse);
        s = strided_backward(ctx, fn, &it, &gi, err);
        for (size_t i = 0; s == ATTN_OK && dw && i < nw; i++)
            dw[nw + i] += dw[i];
    }
    if (s == ATTN_OK) {
        /* row by row: dq, dk and dv may share one block (fused QKV) */
        copy_rows(whole, ATTN_T_Q, out[0], sq);
        copy_rows(whole, ATTN_T_K, out[1], sk);
        copy_rows(whole, ATTN_T_V, out[2], sv);
        if (dw)
            memcpy(g->d_additive_w, dw + nw, nw * sizeof *dw);
    }
    free(lse);
    free(dw);
    free(stage);
    return s;
}

attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa_desc *d,
                               const attn_sdpa_grad *g)
{
    static const char fn[] = "attn_sdpa_backward";
    attn_sdpa_desc dl, whole;
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
    if (d && (d->cu_seqlens_q || d->cu_seqlens_kv)) {
        /* checked whole: all rows as one sequence, as attn_sdpa does */
        if ((s = attn_varlen_item(d, ATTN_VARLEN_WHOLE, &whole, &err)) ||
            (s = attn_validate_sdpa_grad(&whole, g, &err)) ||
            (s = packed_backward(ctx, fn, d, &whole, g, &err)))
            return attn_api_report(ctx, fn, s, &err);
        return ATTN_OK;
    }
    if ((s = attn_validate_sdpa_grad(d, g, &err)))
        return attn_api_report(ctx, fn, s, &err);
    s = attn_sdpa_strided(d) ? strided_backward(ctx, fn, d, g, &err)
                             : dense_backward(ctx, fn, d, g, &err);
    return s == ATTN_OK ? s : attn_api_report(ctx, fn, s, &err);
}
