/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The strides of an attention call's tensors (attn_sdpa_desc.q_strides
 * ...): their defaults, the extent they span and the rules they must keep
 * (attn.h).
 */
#include <stdint.h>

#include "core/core.h"

const int64_t *attn_tensor_given(const attn_sdpa_desc *d, int t)
{
    return t == ATTN_T_Q   ? d->q_strides
           : t == ATTN_T_K ? d->k_strides
           : t == ATTN_T_V ? d->v_strides
                           : d->o_strides;
}

static int given_any(const int64_t *s)
{
    return s[0] != 0 || s[1] != 0 || s[2] != 0;
}

int attn_sdpa_strided(const attn_sdpa_desc *d)
{
    for (int t = ATTN_T_Q; t <= ATTN_T_O; t++)
        if (given_any(attn_tensor_given(d, t)))
            return 1;
    return 0;
}

void attn_tensor_dims(const attn_sdpa_desc *d, int t, size_t n[3], size_t *w)
{
    const int kv = t == ATTN_T_K || t == ATTN_T_V;
    n[0] = (size_t)d->batch;
    n[1] = (size_t)(kv ? d->heads_kv : d->heads_q);
    n[2] = (size_t)(kv ? d->seq_kv : d->seq_q);
    *w = (size_t)(t == ATTN_T_Q || t == ATTN_T_K ? d->head_dim : d->head_dim_v);
}

void attn_tensor_strides(const attn_sdpa_desc *d, int t, size_t st[3])
{
    const int64_t *s = attn_tensor_given(d, t);
    size_t n[3], w;
    if (given_any(s)) {
        for (int i = 0; i < 3; i++)
            st[i] = (size_t)s[i];
        return;
    }
    attn_tensor_dims(d, t, n, &w);
    st[2] = w;
    st[1] = n[2] * w;
    st[0] = n[1] * n[2] * w;
}

size_t attn_tensor_extent(const attn_sdpa_desc *d, int t)
{
    size_t n[3], w, st[3];
    attn_tensor_dims(d, t, n, &w);
    attn_tensor_strides(d, t, st);
    return w + st[0] * (n[0] - 1) + st[1] * (n[1] - 1) + st[2] * (n[2] - 1);
}

#define INVALID(...) attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

attn_status attn_strides_extent(const attn_sdpa_desc *d, int t, size_t elem,
                                size_t *bytes, attn_err *err)
{
    static const char *const name[4] = {"q", "k", "v", "o"};
    const int64_t *s = attn_tensor_given(d, t);
    size_t n[3], w, st[3], ext;
    attn_tensor_dims(d, t, n, &w);
    for (int i = 0; i < 3; i++)
        if (s[i] < 0)
            return INVALID("%s_strides[%d] = %lld is negative", name[t], i,
                           (long long)s[i]);
    attn_tensor_strides(d, t, st);
    ext = w;
    for (int i = 0; i < 3; i++) {
        size_t span;
        if (!attn_mul_size(&span, st[i], n[i] - 1) || ext + span < ext)
            return INVALID("the strides of %s span more than the address "
                           "space",
                           name[t]);
        ext += span;
    }
    if (!attn_mul_size(bytes, ext, elem) || *bytes > PTRDIFF_MAX)
        return INVALID("the strides of %s span more than the address space",
                       name[t]);
    if (t != ATTN_T_O || !given_any(s))
        return ATTN_OK;
    /* o's rows apart: the dimensions of more than one index, sorted by
     * stride, nest. */
    {
        size_t ds[3], dn[3], inner = w;
        int m = 0;
        for (int i = 0; i < 3; i++)
            if (n[i] > 1) {
                int j = m++;
                while (j > 0 && ds[j - 1] > st[i]) {
                    ds[j] = ds[j - 1];
                    dn[j] = dn[j - 1];
                    j--;
                }
                ds[j] = st[i];
                dn[j] = n[i];
            }
        for (int i = 0; i < m; i++) {
            if (ds[i] < inner)
                return INVALID("o_strides {%lld, %lld, %lld} make rows of o "
                               "overlap: sorted, each stride must be at least "
                               "the extent of the smaller ones (%zu)",
                               (long long)s[0], (long long)s[1],
                               (long long)s[2], inner);
            inner = ds[i] * (dn[i] - 1) + inner;
        }
    }
    return ATTN_OK;
}
