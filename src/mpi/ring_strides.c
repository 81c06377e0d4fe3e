/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strided slices of attn_sdpa_ring (attn_sdpa_desc.q_strides ... over the
 * rank's local rows): checked, gathered once into contiguous copies that
 * the ring packs and reads as before, and O written back through its
 * strides (the gaps between rows untouched), as attn_sdpa_backward
 * gathers strided tensors.  The copies are O(local rows), counted in the
 * stats' bytes_held.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ring_call.h"

static const char *const NAMES[4] = {"q_strides", "k_strides", "v_strides",
                                     "o_strides"};

static int64_t *given(attn_sdpa_desc *g, int t)
{
    return t == 0   ? g->q_strides
           : t == 1 ? g->k_strides
           : t == 2 ? g->v_strides
                    : g->o_strides;
}

static int any(const int64_t *s)
{
    return s[0] != 0 || s[1] != 0 || s[2] != 0;
}

int ring_strides_given(const ring_call *c, int t)
{
    return any(c->strides[t]);
}

static int strided(const ring_call *c)
{
    for (int t = 0; t < 4; t++)
        if (any(c->strides[t]))
            return 1;
    return 0;
}

/* Tensor t's local dimensions (batch, heads, rows), row width and element
 * strides (the contiguous layout's when none are given). */
static void dims(const ring_call *c, int t, size_t n[3], size_t st[3],
                 size_t *w)
{
    const int64_t *s = c->strides[t];
    n[0] = (size_t)c->g.batch;
    n[1] = (size_t)(t == 0 || t == 3 ? c->g.heads_q : c->g.heads_kv);
    n[2] = c->local_rows;
    *w = t == 0 || t == 1 ? c->d : c->dv;
    if (any(s)) {
        for (int i = 0; i < 3; i++)
            st[i] = (size_t)s[i];
    } else {
        st[2] = *w;
        st[1] = n[2] * *w;
        st[0] = n[1] * st[1];
    }
}

/* The elements tensor t spans (last offset + 1), or 0 with why set when
 * that does not fit the address space. */
static size_t extent(ring_call *c, int t);

size_t ring_strides_bytes(ring_call *c, int t)
{
    return extent(c, t) * c->elem;
}

static size_t extent(ring_call *c, int t)
{
    size_t n[3], st[3], w, e;
    dims(c, t, n, st, &w);
    if (n[0] == 0 || n[1] == 0 || n[2] == 0)
        return 1;
    e = w;
    for (int i = 0; i < 3; i++) {
        if (st[i] && n[i] - 1 > (SIZE_MAX / c->elem - e) / st[i]) {
            snprintf(c->why, sizeof c->why,
                     "rank %d: the extent %s spans over its %zu local rows "
                     "does not fit the address space",
                     c->rank, NAMES[t], c->local_rows);
            return 0;
        }
        e += (n[i] - 1) * st[i];
    }
    return e;
}

attn_status ring_strides_check(ring_call *c)
{
    for (int t = 0; t < 4; t++) {
        int64_t *s = given(&c->g, t);
        memcpy(c->strides[t], s, sizeof c->strides[t]);
        memset(s, 0, sizeof c->strides[t]);
    }
    if (!strided(c))
        return ATTN_OK;
    if (c->io) {
        snprintf(c->why, sizeof c->why,
                 "attn_sdpa_ring_cl takes contiguous buffers only (no "
                 "q_strides, k_strides, v_strides, o_strides)");
        return ATTN_ERR_UNSUPPORTED;
    }
    for (int t = 0; t < 4; t++)
        if (extent(c, t) == 0)
            return ATTN_ERR_INVALID_ARGUMENT;
    return ring_strides_rows_apart(c, 3);
}

attn_status ring_strides_rows_apart(ring_call *c, int t)
{
    /* tensor t's dimensions of more than one index, by stride, nest, so
     * that no two rows share an element (a rank of 0 rows has none) */
    size_t n[3], st[3], w, span;
    int order[3], m = 0;
    dims(c, t, n, st, &w);
    if (n[2] == 0)
        return ATTN_OK;
    for (int i = 0; i < 3; i++)
        if (n[i] > 1)
            order[m++] = i;
    for (int a = 1; a < m; a++)
        for (int b = a; b > 0 && st[order[b]] < st[order[b - 1]]; b--) {
            int x = order[b];
            order[b] = order[b - 1];
            order[b - 1] = x;
        }
    span = w;
    for (int a = 0; a < m; a++) {
        if (st[order[a]] < span) {
            snprintf(c->why, sizeof c->why,
                     "rank %d: %s {%lld, %lld, %lld} make rows of the %s "
                     "share elements",
                     c->rank, NAMES[t], (long long)c->strides[t][0],
                     (long long)c->strides[t][1], (long long)c->strides[t][2],
                     t == 3 ? "output" : "gradient written through them");
            return ATTN_ERR_INVALID_ARGUMENT;
        }
        span += (n[order[a]] - 1) * st[order[a]];
    }
    return ATTN_OK;
}

void ring_strides_move(const ring_call *c, int t, void *contig, void *strided,
                       int to_contig)
{
    size_t n[3], st[3], w, row = 0;
    dims(c, t, n, st, &w);
    const size_t line = w * c->elem;
    for (size_t b = 0; b < n[0]; b++)
        for (size_t h = 0; h < n[1]; h++)
            for (size_t i = 0; i < n[2]; i++, row++) {
                char *s = (char *)strided +
                          (b * st[0] + h * st[1] + i * st[2]) * c->elem;
                char *d = (char *)contig + row * line;
                if (to_contig)
                    memcpy(d, s, line);
                else
                    memcpy(s, d, line);
            }
}

attn_status ring_strides_gather(ring_call *c, const void **q, const void **k,
                                const void **v)
{
    const void **in[3] = {q, k, v};
    for (int t = 0; t < 4; t++) {
        size_t n[3], st[3], w;
        if (!any(c->strides[t]))
            continue;
        dims(c, t, n, st, &w);
        size_t bytes = n[0] * n[1] * n[2] * w * c->elem;
        c->strided[t] = ring_grab(c, bytes);
        if (!c->strided[t]) {
            snprintf(c->why, sizeof c->why,
                     "rank %d: no memory for the contiguous copies of its "
                     "strided slices",
                     c->rank);
            return ATTN_ERR_OUT_OF_MEMORY;
        }
        if (t < 3) {
            ring_strides_move(c, t, c->strided[t], (void *)(uintptr_t)*in[t],
                              1);
            *in[t] = c->strided[t];
        }
    }
    return ATTN_OK;
}

void ring_strides_write_o(const ring_call *c, void *o)
{
    ring_strides_move(c, 3, c->strided[3], o, 0);
}
