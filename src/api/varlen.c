/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Packed variable-length batches (attn_sdpa_desc.cu_seqlens_q and
 * cu_seqlens_kv, attn.h): the checks of the whole call, then one
 * attention call per sequence over its packed rows, addressed through the
 * strides, so that every backend and kernel path takes them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/context.h"

#define INVALID(...) attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* Tensor t's strides over (unused) batch, head and packed row. */
static void packed(const attn_sdpa_desc *d, int t, int64_t st[3])
{
    const int64_t *g = attn_tensor_given(d, t);
    size_t n[3], w;
    if (g[0] || g[1] || g[2]) {
        memcpy(st, g, 3 * sizeof *st);
        return;
    }
    attn_tensor_dims(d, t, n, &w);
    st[0] = 0;
    st[1] = (int64_t)w;
    st[2] = (int64_t)(n[1] * w);
}

static attn_status check_arrays(const attn_sdpa_desc *d, attn_err *err)
{
    const int32_t *const cu[2] = {d->cu_seqlens_q, d->cu_seqlens_kv};
    static const char *const name[2] = {"cu_seqlens_q", "cu_seqlens_kv"};
    const int most[2] = {d->seq_q, d->seq_kv};
    if (!cu[0] || !cu[1])
        return INVALID("cu_seqlens_q and cu_seqlens_kv go together: %s is "
                       "NULL",
                       cu[0] ? "cu_seqlens_kv" : "cu_seqlens_q");
    if (d->batch <= 0 || d->seq_q <= 0 || d->seq_kv <= 0)
        return INVALID("batch, seq_q and seq_kv must be positive (got %d, "
                       "%d, %d)",
                       d->batch, d->seq_q, d->seq_kv);
    if (d->mask.kv_len || d->mask.bias || d->mask.bias_kind || d->keep ||
        d->q_start || d->kv_start || d->causal_offset)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "packed sequences (cu_seqlens_q) take no kv_len, "
                         "bias, keep, q_start, kv_start or causal_offset");
    if (d->q_strides[0] || d->k_strides[0] || d->v_strides[0] ||
        d->o_strides[0])
        return INVALID("the batch strides of packed sequences must be 0 "
                       "(the sequences' rows follow cu_seqlens_q)");
    for (int t = 0; t < 2; t++) {
        if (cu[t][0] != 0)
            return INVALID("%s[0] = %d must be 0", name[t], (int)cu[t][0]);
        for (int b = 0; b < d->batch; b++) {
            const int64_t len = (int64_t)cu[t][b + 1] - cu[t][b];
            if (len < 0 || len > most[t])
                return INVALID("%s: sequence %d has %lld rows, outside [0, "
                               "%s = %d]",
                               name[t], b, (long long)len,
                               t ? "seq_kv" : "seq_q", most[t]);
        }
        if (cu[t][d->batch] <= 0)
            return INVALID("%s: the sequences hold no row", name[t]);
    }
    return ATTN_OK;
}

attn_status attn_varlen_item(const attn_sdpa_desc *d, int b,
                             attn_sdpa_desc *item, attn_err *err)
{
    attn_status s = check_arrays(d, err);
    if (s)
        return s;
    *item = *d;
    item->cu_seqlens_q = item->cu_seqlens_kv = NULL;
    item->batch = 1;
    if (b >= 0) {
        item->seq_q = d->cu_seqlens_q[b + 1] - d->cu_seqlens_q[b];
        item->seq_kv = d->cu_seqlens_kv[b + 1] - d->cu_seqlens_kv[b];
    } else if (b == -1) { /* the longest sequences (at least one row) */
        item->seq_q = item->seq_kv = 1;
        for (int i = 0; i < d->batch; i++) {
            const int lq = d->cu_seqlens_q[i + 1] - d->cu_seqlens_q[i];
            const int lk = d->cu_seqlens_kv[i + 1] - d->cu_seqlens_kv[i];
            item->seq_q = lq > item->seq_q ? lq : item->seq_q;
            item->seq_kv = lk > item->seq_kv ? lk : item->seq_kv;
        }
    } else { /* the whole call as one sequence of all the rows */
        item->seq_q = d->cu_seqlens_q[d->batch];
        item->seq_kv = d->cu_seqlens_kv[d->batch];
    }
    packed(d, ATTN_T_Q, item->q_strides);
    packed(d, ATTN_T_K, item->k_strides);
    packed(d, ATTN_T_V, item->v_strides);
    packed(d, ATTN_T_O, item->o_strides);
    return ATTN_OK;
}

attn_status attn_sdpa_varlen(attn_context *ctx, const attn_sdpa_desc *d,
                             const void *q, const void *k, const void *v,
                             void *o, float *lse, attn_err *err)
{
    const size_t elem = d->dtype == ATTN_F32 ? sizeof(float) : 2;
    attn_sdpa_desc whole;
    float *part = NULL;
    size_t total_q;
    attn_status s;
    /* The whole call as one sequence of all the rows: every check of the
     * tensors (sizes, strides, overlaps) at once. */
    if ((s = attn_varlen_item(d, ATTN_VARLEN_WHOLE, &whole, err)))
        return s;
    if ((s = attn_validate_sdpa(&whole, q, k, v, o, lse, err)))
        return s;
    total_q = (size_t)whole.seq_q;
    if (lse &&
        !(part = malloc((size_t)d->heads_q * (size_t)d->seq_q * sizeof *part)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the log-sum-exp of one sequence");
    for (int b = 0; b < d->batch && s == ATTN_OK; b++) {
        attn_sdpa_desc it;
        const size_t q0 = (size_t)d->cu_seqlens_q[b];
        const size_t k0 = (size_t)d->cu_seqlens_kv[b];
        if ((s = attn_varlen_item(d, b, &it, err)) || it.seq_q == 0)
            continue;
        if (it.seq_kv == 0) { /* no key: O = 0, lse = -inf */
            for (size_t h = 0; h < (size_t)it.heads_q; h++)
                for (size_t i = 0; i < (size_t)it.seq_q; i++) {
                    memset((char *)o + ((q0 + i) * (size_t)it.o_strides[2] +
                                        h * (size_t)it.o_strides[1]) *
                                           elem,
                           0, (size_t)it.head_dim_v * elem);
                    if (lse)
                        lse[h * total_q + q0 + i] = -INFINITY;
                }
            continue;
        }
        s = attn_sdpa_run(
            ctx, &it, (const char *)q + q0 * (size_t)it.q_strides[2] * elem,
            (const char *)k + k0 * (size_t)it.k_strides[2] * elem,
            (const char *)v + k0 * (size_t)it.v_strides[2] * elem,
            (char *)o + q0 * (size_t)it.o_strides[2] * elem, part, err);
        for (size_t h = 0; s == ATTN_OK && lse && h < (size_t)it.heads_q; h++)
            memcpy(lse + h * total_q + q0, part + h * (size_t)it.seq_q,
                   (size_t)it.seq_q * sizeof *lse);
    }
    free(part);
    return s;
}
