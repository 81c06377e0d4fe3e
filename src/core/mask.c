/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shapes of the bias and of the boolean mask keep (attn.h): tensors
 * [B, H, Q, seq_kv] read in place through their strides over batch, head
 * and query, 0 over a broadcast dimension; and keep merged into a bias for
 * the devices, which take the bias only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

void attn_bias_spans(attn_bias_kind k, const int *shape, int span[3])
{
    span[0] = k == ATTN_BIAS_FULL || k == ATTN_BIAS_KEY;
    span[1] = k == ATTN_BIAS_FULL || k == ATTN_BIAS_PER_HEAD;
    span[2] =
        k == ATTN_BIAS_FULL || k == ATTN_BIAS_PER_HEAD || k == ATTN_BIAS_SHARED;
    if (k == ATTN_BIAS_BROADCAST)
        for (int i = 0; i < 3; i++)
            span[i] = shape[i] != 1;
}

/* The strides of a [B, H, Q, seq_kv] tensor of d spanning span. */
static void strides_of(const attn_sdpa_desc *d, const int span[3], size_t st[3])
{
    const size_t skv = (size_t)d->seq_kv;
    st[2] = span[2] ? skv : 0;
    st[1] = span[1] ? (span[2] ? (size_t)d->seq_q : 1) * skv : 0;
    st[0] = span[0] ? (span[1] ? (size_t)d->heads_q : 1) *
                          (span[2] ? (size_t)d->seq_q : 1) * skv
                    : 0;
}

void attn_bias_strides(const attn_sdpa_desc *d, size_t st[3])
{
    int span[3];
    st[0] = st[1] = st[2] = 0;
    if (d->mask.bias_kind == ATTN_BIAS_NONE)
        return;
    attn_bias_spans(d->mask.bias_kind, d->bias_shape, span);
    strides_of(d, span, st);
}

int attn_bias_elems(const attn_sdpa_desc *d, size_t *n)
{
    int span[3];
    size_t f[4];
    *n = 0;
    if (d->mask.bias_kind == ATTN_BIAS_NONE)
        return 1;
    attn_bias_spans(d->mask.bias_kind, d->bias_shape, span);
    f[0] = span[0] ? (size_t)d->batch : 1;
    f[1] = span[1] ? (size_t)d->heads_q : 1;
    f[2] = span[2] ? (size_t)d->seq_q : 1;
    f[3] = (size_t)d->seq_kv;
    return attn_mul_sizes(n, 4, f);
}

void attn_keep_strides(const attn_sdpa_desc *d, size_t st[3])
{
    int span[3];
    st[0] = st[1] = st[2] = 0;
    if (!d->keep)
        return;
    attn_bias_spans(ATTN_BIAS_BROADCAST, d->keep_shape, span);
    strides_of(d, span, st);
}

/* Whether the starts move d's causal mask or window off the one diagonal
 * the devices take (TOP_LEFT with kv_start[b] != q_start[b], attn.h). */
static int diag_per_item(const attn_sdpa_desc *d)
{
    if (d->causal_align != ATTN_CAUSAL_TOP_LEFT ||
        (!d->mask.causal && d->mask.window <= 0))
        return 0;
    for (int b = 0; b < d->batch; b++)
        if (attn_causal_diag_b(d, b) != attn_causal_diag(d))
            return 1;
    return 0;
}

/* Whether key j is hidden from query i of batch item b by the folded
 * masks: kv_start, and the causal mask and window when fold_diag. */
static int folded_hides(const attn_sdpa_desc *d, int fold_diag, size_t b,
                        size_t i, size_t j)
{
    long long off;
    if ((long long)j < attn_kv_first(d, (int)b))
        return 1;
    if (!fold_diag)
        return 0;
    off = attn_causal_diag_b(d, (int)b);
    return (d->mask.causal && (long long)j > (long long)i + off) ||
           (d->mask.window > 0 &&
            (long long)j < (long long)i + off - d->mask.window + 1);
}

attn_status attn_keep_merge(const attn_sdpa_desc *d, attn_sdpa_desc *out,
                            float **buf, attn_err *err)
{
    int sb[3] = {0, 0, 0}, sk[3] = {0, 0, 0}, span[3];
    size_t bst[3], kst[3], ext[3], n, at = 0;
    const int fold_diag = diag_per_item(d);
    float *m;
    *out = *d;
    *buf = NULL;
    out->q_start = out->kv_start = NULL; /* rows: zeroed by the caller */
    if (!d->keep && !d->kv_start && !fold_diag)
        return ATTN_OK;
    if (d->mask.bias_kind != ATTN_BIAS_NONE)
        attn_bias_spans(d->mask.bias_kind, d->bias_shape, sb);
    if (d->keep)
        attn_bias_spans(ATTN_BIAS_BROADCAST, d->keep_shape, sk);
    for (int i = 0; i < 3; i++)
        span[i] = sb[i] || sk[i];
    if (d->kv_start)
        span[0] = 1;
    if (fold_diag)
        span[0] = span[2] = 1;
    ext[0] = span[0] ? (size_t)d->batch : 1;
    ext[1] = span[1] ? (size_t)d->heads_q : 1;
    ext[2] = span[2] ? (size_t)d->seq_q : 1;
    if (!attn_mul_sizes(&n, 3, ext) ||
        !attn_mul_size(&n, n, (size_t)d->seq_kv) ||
        !attn_mul_size(&n, n, sizeof(float)) || !(m = malloc(n ? n : 1)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the bias that keep, kv_start or "
                         "the per-item causal mask is merged into for the "
                         "device");
    attn_bias_strides(d, bst);
    attn_keep_strides(d, kst);
    for (size_t b = 0; b < ext[0]; b++)
        for (size_t h = 0; h < ext[1]; h++)
            for (size_t i = 0; i < ext[2]; i++) {
                const float *br =
                    d->mask.bias_kind != ATTN_BIAS_NONE
                        ? d->mask.bias + b * bst[0] + h * bst[1] + i * bst[2]
                        : NULL;
                const uint8_t *kr =
                    d->keep ? d->keep + b * kst[0] + h * kst[1] + i * kst[2]
                            : NULL;
                for (size_t j = 0; j < (size_t)d->seq_kv; j++, at++)
                    m[at] =
                        (kr && !kr[j]) || folded_hides(d, fold_diag, b, i, j)
                            ? -INFINITY
                        : br ? br[j]
                             : 0.0f;
            }
    out->keep = NULL;
    memset(out->keep_shape, 0, sizeof out->keep_shape);
    out->mask.bias = m;
    out->mask.bias_kind = ATTN_BIAS_BROADCAST;
    if (fold_diag) {
        out->mask.causal = 0;
        out->mask.window = 0;
    }
    for (int i = 0; i < 3; i++)
        out->bias_shape[i] = (int)ext[i];
    *buf = m;
    return ATTN_OK;
}

void attn_pad_rows_zero(const attn_sdpa_desc *d, const size_t ost[3], void *o,
                        float *lse)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    if (!d->q_start)
        return;
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < (int)d->q_start[b]; i++) {
                size_t at = (size_t)b * ost[0] + (size_t)h * ost[1] +
                            (size_t)i * ost[2];
                memset((char *)o + at * es, 0, (size_t)d->head_dim_v * es);
                if (lse)
                    lse[((size_t)b * (size_t)d->heads_q + (size_t)h) *
                            (size_t)d->seq_q +
                        (size_t)i] = -INFINITY;
            }
}
