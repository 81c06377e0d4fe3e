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

attn_status attn_keep_merge(const attn_sdpa_desc *d, attn_sdpa_desc *out,
                            float **buf, attn_err *err)
{
    int sb[3] = {0, 0, 0}, sk[3], span[3];
    size_t bst[3], kst[3], ext[3], n, at = 0;
    float *m;
    *out = *d;
    *buf = NULL;
    if (!d->keep)
        return ATTN_OK;
    if (d->mask.bias_kind != ATTN_BIAS_NONE)
        attn_bias_spans(d->mask.bias_kind, d->bias_shape, sb);
    attn_bias_spans(ATTN_BIAS_BROADCAST, d->keep_shape, sk);
    for (int i = 0; i < 3; i++)
        span[i] = sb[i] || sk[i];
    ext[0] = span[0] ? (size_t)d->batch : 1;
    ext[1] = span[1] ? (size_t)d->heads_q : 1;
    ext[2] = span[2] ? (size_t)d->seq_q : 1;
    if (!attn_mul_sizes(&n, 3, ext) ||
        !attn_mul_size(&n, n, (size_t)d->seq_kv) ||
        !attn_mul_size(&n, n, sizeof(float)) || !(m = malloc(n ? n : 1)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the bias that keep is merged into "
                         "for the device");
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
                    d->keep + b * kst[0] + h * kst[1] + i * kst[2];
                for (size_t j = 0; j < (size_t)d->seq_kv; j++, at++)
                    m[at] = !kr[j] ? -INFINITY : br ? br[j] : 0.0f;
            }
    out->keep = NULL;
    memset(out->keep_shape, 0, sizeof out->keep_shape);
    out->mask.bias = m;
    out->mask.bias_kind = ATTN_BIAS_BROADCAST;
    for (int i = 0; i < 3; i++)
        out->bias_shape[i] = (int)ext[i];
    *buf = m;
    return ATTN_OK;
}
