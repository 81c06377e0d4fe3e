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

/* Puts the dimension (stride st, count n) into ds, dn (*m of them so
 * far), sorted by stride, the smallest first. */
static void add_dim(size_t ds[3], size_t dn[3], int *m, size_t st, size_t n)
{
    int j = (*m)++;
    while (j > 0 && ds[j - 1] > st) {
        ds[j] = ds[j - 1];
        dn[j] = dn[j - 1];
        j--;
    }
    ds[j] = st;
    dn[j] = n;
}

/* Tensor t's dimensions of more than one index, sorted by stride (the
 * smallest first) into ds, dn; returns how many (0 to 3). */
static int sorted_dims(const attn_sdpa_desc *d, int t, size_t ds[3],
                       size_t dn[3], size_t *w)
{
    size_t n[3], st[3];
    int m = 0;
    attn_tensor_dims(d, t, n, w);
    attn_tensor_strides(d, t, st);
    for (int i = 0; i < 3; i++)
        if (n[i] > 1)
            add_dim(ds, dn, &m, st[i], n[i]);
    return m;
}

int attn_tensor_rows_apart(const attn_sdpa_desc *d, int t)
{
    size_t ds[3], dn[3], inner;
    const int m = sorted_dims(d, t, ds, dn, &inner);
    for (int i = 0; i < m; i++) {
        if (ds[i] < inner)
            return 0;
        inner = ds[i] * (dn[i] - 1) + inner;
    }
    return 1;
}

/* 1 when a (rows in [0, ea) of each cell) and b (rows in [gap, gap + eb)
 * of each cell, gap = b's offset from a's in elements) provably do not
 * meet, the cells being those of the dimensions in `shared` (a bit per
 * dimension: the same stride in both; counts, the larger of the two). */
static int cells_apart(const size_t sa[3], const size_t na[3], size_t ea,
                       const size_t nb[3], size_t eb, unsigned shared,
                       uintptr_t pa, uintptr_t pb, size_t elem)
{
    size_t st[3], n[3], gap, span;
    int m = 0;
    for (int k = 0; k < 3; k++)
        if (shared >> k & 1u)
            add_dim(st, n, &m, sa[k], na[k] > nb[k] ? na[k] : nb[k]);
    /* cells (of either tensor) at least the smallest stride apart */
    for (int j = 0; j + 1 < m; j++)
        if (!attn_mul_size(&span, n[j], st[j]) || st[j + 1] < span)
            return 0;
    if (pb < pa) {
        const uintptr_t tp = pa;
        const size_t te = ea;
        pa = pb, pb = tp, ea = eb, eb = te;
    }
    if ((pb - pa) % elem != 0)
        return 0;
    gap = (pb - pa) / elem;
    return gap >= ea && gap <= st[0] && eb <= st[0] - gap;
}

int attn_tensors_disjoint(const attn_sdpa_desc *d, int ta, const void *a,
                          int tb, const void *b, size_t elem)
{
    size_t na[3], nb[3], sa[3], sb[3], wa, wb;
    unsigned same = 0;
    if (d->cu_seqlens_q || !attn_tensor_rows_apart(d, ta) ||
        !attn_tensor_rows_apart(d, tb))
        return 0;
    attn_tensor_dims(d, ta, na, &wa);
    attn_tensor_dims(d, tb, nb, &wb);
    attn_tensor_strides(d, ta, sa);
    attn_tensor_strides(d, tb, sb);
    for (int k = 0; k < 3; k++)
        if (sa[k] == sb[k] && (na[k] > 1 || nb[k] > 1))
            same |= 1u << k;
    /* each choice of the cells' dimensions among those of the same stride
     * (the heads of both may have it too, yet interleave) is a proof when
     * it holds; the other dimensions make up a cell's rows */
    for (unsigned shared = same; shared; shared = (shared - 1) & same) {
        size_t ea = wa, eb = wb;
        for (int k = 0; k < 3; k++)
            if (!(shared >> k & 1u)) {
                ea += sa[k] * (na[k] - 1);
                eb += sb[k] * (nb[k] - 1);
            }
        if (cells_apart(sa, na, ea, nb, eb, shared, (uintptr_t)a, (uintptr_t)b,
                        elem))
            return 1;
    }
    return 0;
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
    if (t == ATTN_T_O && !attn_tensor_rows_apart(d, t))
        return INVALID("o_strides {%lld, %lld, %lld} make rows of o overlap: "
                       "sorted, each stride must be at least the extent of "
                       "the smaller ones",
                       (long long)s[0], (long long)s[1], (long long)s[2]);
    return ATTN_OK;
}
