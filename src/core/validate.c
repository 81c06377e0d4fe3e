/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Argument checks for every entry point.  They run before any work or
 * allocation, so a rejected call touches nothing.  Size arithmetic is done in
 * size_t with overflow checks; every byte count must also fit in ptrdiff_t.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"

#define INVALID(...) attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* Bytes of an n-dimensional tensor; OOM when it cannot be addressed. */
static attn_status tensor_bytes(size_t *bytes, const char *name, int n,
                                const size_t *dims, size_t elem, attn_err *err)
{
    size_t count;
    if (!attn_mul_sizes(&count, n, dims) ||
        !attn_mul_size(bytes, count, elem) || *bytes > PTRDIFF_MAX)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows the address space", name);
    return ATTN_OK;
}

static int overlaps(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a && b && na && nb && x < y + nb && y < x + na;
}

static attn_status check_positive(const char *name, int v, attn_err *err)
{
    if (v <= 0)
        return INVALID("%s must be positive (got %d)", name, v);
    return ATTN_OK;
}

attn_status attn_validate_mask(const attn_mask_desc *m, const int *bias_shape,
                               int batch, int heads_q, int seq_q, int seq_kv,
                               attn_err *err)
{
    static const char *const dim_name[3] = {"batch", "heads_q", "seq_q"};
    const int size[3] = {batch, heads_q, seq_q};
    size_t dims[4], bytes;
    int span[3];
    attn_status s;
    if (m->causal != 0 && m->causal != 1)
        return INVALID("mask.causal must be 0 or 1 (got %d)", m->causal);
    if (m->window < 0)
        return INVALID("mask.window must be >= 0 (got %d)", m->window);
    if ((unsigned)m->bias_kind > ATTN_BIAS_BROADCAST)
        return INVALID("mask.bias_kind %d is not an attn_bias_kind",
                       (int)m->bias_kind);
    if (m->bias_kind != ATTN_BIAS_NONE && !m->bias)
        return INVALID("mask.bias_kind is set but mask.bias is NULL");
    if (m->bias_kind == ATTN_BIAS_NONE && m->bias)
        return INVALID("mask.bias is set but mask.bias_kind is "
                       "ATTN_BIAS_NONE");
    if (m->bias_kind == ATTN_BIAS_BROADCAST && !bias_shape)
        return INVALID("mask.bias_kind ATTN_BIAS_BROADCAST takes its shape "
                       "from attn_sdpa_desc.bias_shape, which a mask alone "
                       "does not have: use FULL, PER_HEAD, SHARED or KEY");
    if (m->bias_kind == ATTN_BIAS_BROADCAST)
        for (int i = 0; i < 3; i++)
            if (bias_shape[i] != 1 && bias_shape[i] != size[i])
                return INVALID("bias_shape[%d] = %d must be 1 (broadcast) or "
                               "%s (%d)",
                               i, bias_shape[i], dim_name[i], size[i]);
    /* The bias tensor must be addressable in the shape its kind names. */
    if (m->bias_kind != ATTN_BIAS_NONE) {
        attn_bias_spans(m->bias_kind, bias_shape, span);
        for (int i = 0; i < 3; i++)
            dims[i] = span[i] ? (size_t)size[i] : 1;
        dims[3] = (size_t)seq_kv;
        s = tensor_bytes(&bytes, "mask.bias", 4, dims, sizeof(float), err);
        if (s != ATTN_OK)
            return s;
    }
    if (m->kv_len) {
        for (int b = 0; b < batch; b++)
            if (m->kv_len[b] < 0 || m->kv_len[b] > seq_kv)
                return INVALID("mask.kv_len[%d] = %d is outside [0, %d]", b,
                               (int)m->kv_len[b], seq_kv);
    }
    return ATTN_OK;
}

attn_status attn_validate_sdpa_desc(const attn_sdpa_desc *d, attn_sdpa_bytes *b,
                                    attn_err *err)
{
    size_t elem, dq[4], dk[4], dv[4], dout[4];
    attn_status s;
    if (!d)
        return INVALID("the attention descriptor is NULL");
    if ((s = check_positive("batch", d->batch, err)) ||
        (s = check_positive("heads_q", d->heads_q, err)) ||
        (s = check_positive("heads_kv", d->heads_kv, err)) ||
        (s = check_positive("seq_q", d->seq_q, err)) ||
        (s = check_positive("seq_kv", d->seq_kv, err)) ||
        (s = check_positive("head_dim", d->head_dim, err)) ||
        (s = check_positive("head_dim_v", d->head_dim_v, err)))
        return s;
    if (d->heads_q % d->heads_kv != 0)
        return INVALID("heads_q (%d) must be a multiple of heads_kv (%d)",
                       d->heads_q, d->heads_kv);
    if ((unsigned)d->score > ATTN_SCORE_ADDITIVE)
        return INVALID("score %d is not an attn_score", (int)d->score);
    if ((unsigned)d->dtype > ATTN_BF16)
        return INVALID("dtype %d is not an attn_dtype", (int)d->dtype);
    if (!isfinite(d->scale))
        return INVALID("scale must be finite");
    if (d->score == ATTN_SCORE_ADDITIVE && !d->additive_w)
        return INVALID("the additive score needs additive_w "
                       "[heads_q, head_dim]");
    if ((unsigned)d->causal_align > ATTN_CAUSAL_TOP_LEFT)
        return INVALID("causal_align %d is not an attn_causal_align",
                       (int)d->causal_align);
    if (d->causal_offset < -(int64_t)INT_MAX ||
        d->causal_offset > (int64_t)INT_MAX ||
        attn_causal_diag(d) < 1 - (long long)d->seq_q ||
        attn_causal_diag(d) > (long long)d->seq_kv - 1)
        return INVALID("causal_offset %lld puts the causal diagonal outside "
                       "[1 - seq_q, seq_kv - 1] = [%d, %d]",
                       (long long)d->causal_offset, 1 - d->seq_q,
                       d->seq_kv - 1);
    s = attn_validate_mask(&d->mask, d->bias_shape, d->batch, d->heads_q,
                           d->seq_q, d->seq_kv, err);
    if (s != ATTN_OK)
        return s;
    if (d->keep) {
        static const char *const dim_name[3] = {"batch", "heads_q", "seq_q"};
        const int size[3] = {d->batch, d->heads_q, d->seq_q};
        size_t dm[4];
        for (int i = 0; i < 3; i++) {
            if (d->keep_shape[i] != 1 && d->keep_shape[i] != size[i])
                return INVALID("keep_shape[%d] = %d must be 1 (broadcast) or "
                               "%s (%d)",
                               i, d->keep_shape[i], dim_name[i], size[i]);
            dm[i] = (size_t)d->keep_shape[i];
        }
        dm[3] = (size_t)d->seq_kv;
        if ((s = tensor_bytes(&elem, "keep", 4, dm, 1, err)))
            return s;
    }
    {
        const int32_t *const st[2] = {d->q_start, d->kv_start};
        static const char *const st_name[2] = {"q_start", "kv_start"};
        const int st_max[2] = {d->seq_q, d->seq_kv};
        for (int t = 0; t < 2; t++)
            for (int bi = 0; st[t] && bi < d->batch; bi++)
                if (st[t][bi] < 0 || st[t][bi] > st_max[t])
                    return INVALID("%s[%d] = %d is outside [0, %d]", st_name[t],
                                   bi, (int)st[t][bi], st_max[t]);
    }

    elem = d->dtype == ATTN_F32 ? 4 : 2;
    dq[0] = dk[0] = dv[0] = dout[0] = (size_t)d->batch;
    dq[1] = dout[1] = (size_t)d->heads_q;
    dk[1] = dv[1] = (size_t)d->heads_kv;
    dq[2] = dout[2] = (size_t)d->seq_q;
    dk[2] = dv[2] = (size_t)d->seq_kv;
    dq[3] = dk[3] = (size_t)d->head_dim;
    dv[3] = dout[3] = (size_t)d->head_dim_v;
    if ((s = tensor_bytes(&b->q, "q", 4, dq, elem, err)) ||
        (s = tensor_bytes(&b->k, "k", 4, dk, elem, err)) ||
        (s = tensor_bytes(&b->v, "v", 4, dv, elem, err)) ||
        (s = tensor_bytes(&b->o, "o", 4, dout, elem, err)) ||
        (s = tensor_bytes(&b->lse, "lse", 3, dout, sizeof(float), err)))
        return s;
    /* With strides each tensor takes the extent they span. */
    if (attn_sdpa_strided(d) &&
        ((s = attn_strides_extent(d, ATTN_T_Q, elem, &b->q, err)) ||
         (s = attn_strides_extent(d, ATTN_T_K, elem, &b->k, err)) ||
         (s = attn_strides_extent(d, ATTN_T_V, elem, &b->v, err)) ||
         (s = attn_strides_extent(d, ATTN_T_O, elem, &b->o, err))))
        return s;
    return ATTN_OK;
}

/* Every array a call of d reads (d valid): q, k and v of b's sizes, and
 * the descriptor's own (bias, keep, additive_w, kv_len, the starts, the
 * packed offsets), into p, n (bytes) and name; returns how many. */
enum { SDPA_INPUTS_MAX = 11 };
static int sdpa_inputs(const attn_sdpa_desc *d, const attn_sdpa_bytes *b,
                       const void *q, const void *k, const void *v,
                       const void **p, size_t *n, const char **name)
{
    const size_t nbatch = (size_t)d->batch * sizeof(int32_t);
    size_t nb = 0, nk = 0;
    int m = 0;
    attn_bias_elems(d, &nb); /* the descriptor's check sized them */
    if (d->keep) {
        const size_t f[4] = {(size_t)d->keep_shape[0], (size_t)d->keep_shape[1],
                             (size_t)d->keep_shape[2], (size_t)d->seq_kv};
        attn_mul_sizes(&nk, 4, f);
    }
#define IN(ptr, bytes, nm)                                                     \
    do {                                                                       \
        p[m] = (ptr);                                                          \
        n[m] = (bytes);                                                        \
        name[m++] = (nm);                                                      \
    } while (0)
    IN(q, b->q, "q");
    IN(k, b->k, "k");
    IN(v, b->v, "v");
    IN(d->mask.bias, nb * sizeof(float), "mask.bias");
    IN(d->keep, nk, "keep");
    IN(d->score == ATTN_SCORE_ADDITIVE ? d->additive_w : NULL,
       (size_t)d->heads_q * (size_t)d->head_dim * sizeof(float), "additive_w");
    IN(d->mask.kv_len, nbatch, "mask.kv_len");
    IN(d->q_start, nbatch, "q_start");
    IN(d->kv_start, nbatch, "kv_start");
    IN(d->cu_seqlens_q, nbatch + sizeof(int32_t), "cu_seqlens_q");
    IN(d->cu_seqlens_kv, nbatch + sizeof(int32_t), "cu_seqlens_kv");
#undef IN
    return m;
}

attn_status attn_validate_sdpa(const attn_sdpa_desc *d, const void *q,
                               const void *k, const void *v, const void *o,
                               const float *lse, attn_err *err)
{
    attn_sdpa_bytes b;
    attn_status s;
    if (!d)
        return INVALID("the attention descriptor is NULL");
    if (!q || !k || !v || !o)
        return INVALID("tensor pointer %s is NULL", !q   ? "q"
                                                    : !k ? "k"
                                                    : !v ? "v"
                                                         : "o");
    if ((s = attn_validate_sdpa_desc(d, &b, err)))
        return s;
    {
        /* an output sharing memory with anything the call reads would be
         * written while read: wrong results with ATTN_OK (SECURITY.md) */
        const void *in[SDPA_INPUTS_MAX];
        size_t in_n[SDPA_INPUTS_MAX];
        const char *in_name[SDPA_INPUTS_MAX];
        const int m = sdpa_inputs(d, &b, q, k, v, in, in_n, in_name);
        for (int j = 0; j < m; j++) {
            if (overlaps(o, b.o, in[j], in_n[j]))
                return INVALID("the output o overlaps the input %s",
                               in_name[j]);
            if (overlaps(lse, b.lse, in[j], in_n[j]))
                return INVALID("the output lse overlaps the input %s",
                               in_name[j]);
        }
        if (overlaps(lse, b.lse, o, b.o))
            return INVALID("the outputs lse and o overlap");
    }
    return ATTN_OK;
}

attn_status attn_validate_sdpa_grad(const attn_sdpa_desc *d,
                                    const attn_sdpa_grad *g, attn_err *err)
{
    attn_sdpa_bytes b;
    attn_status s;
    if (!d)
        return INVALID("the attention descriptor is NULL");
    if (!g)
        return INVALID("the gradient tensors (attn_sdpa_grad) are NULL");
    {
        const void *const p[9] = {g->q,   g->k,  g->v,  g->o, g->lse,
                                  g->d_o, g->dq, g->dk, g->dv};
        static const char *const name[9] = {"q",   "k",  "v",  "o", "lse",
                                            "d_o", "dq", "dk", "dv"};
        for (int i = 0; i < 9; i++)
            if (!p[i])
                return INVALID("tensor pointer %s is NULL", name[i]);
    }
    if ((s = attn_validate_sdpa_desc(d, &b, err)))
        return s;
    if (g->dbias && d->mask.bias_kind == ATTN_BIAS_NONE)
        return INVALID("dbias is set but the descriptor has no bias");
    if (g->d_additive_w && d->score != ATTN_SCORE_ADDITIVE)
        return INVALID("d_additive_w is set but the score is not additive");
    {
        /* o and d_o share a shape, as do q and dq, k and dk, v and dv;
         * dbias has the bias's, d_additive_w additive_w's */
        size_t nb = 0, nw = 0;
        attn_bias_elems(d, &nb); /* the descriptor's check sized it */
        nb *= sizeof(float);
        nw = (size_t)d->heads_q * (size_t)d->head_dim * sizeof(float);
        const void *in[SDPA_INPUTS_MAX + 3];
        size_t in_n[SDPA_INPUTS_MAX + 3];
        const char *in_name[SDPA_INPUTS_MAX + 3];
        int n_in = sdpa_inputs(d, &b, g->q, g->k, g->v, in, in_n, in_name);
        in[n_in] = g->o, in_n[n_in] = b.o, in_name[n_in++] = "o";
        in[n_in] = g->lse, in_n[n_in] = b.lse, in_name[n_in++] = "lse";
        in[n_in] = g->d_o, in_n[n_in] = b.o, in_name[n_in++] = "d_o";
        const void *out[5] = {g->dq, g->dk, g->dv, g->dbias, g->d_additive_w};
        const size_t out_n[5] = {b.q, b.k, b.v, nb, nw};
        static const char *const out_name[5] = {"dq", "dk", "dv", "dbias",
                                                "d_additive_w"};
        /* dq, dk and dv are written in q's, k's and v's strides: rows
         * that share elements (inputs may) would be written over */
        for (int i = 0; i < 3; i++)
            if (!attn_tensor_rows_apart(d, ATTN_T_Q + i))
                return INVALID("the strides of %s make its rows share "
                               "elements, so would %s's: a gradient needs "
                               "rows apart (sorted, each stride at least the "
                               "extent of the smaller ones)",
                               in_name[i], out_name[i]);
        for (int i = 0; i < 5; i++) {
            for (int j = 0; j < n_in; j++)
                if (overlaps(out[i], out_n[i], in[j], in_n[j]))
                    return INVALID("the output %s overlaps the input %s",
                                   out_name[i], in_name[j]);
            /* dq, dk and dv may share a block (fused QKV) when their
             * elements provably do not meet */
            for (int j = i + 1; j < 5; j++)
                if (overlaps(out[i], out_n[i], out[j], out_n[j]) &&
                    !(j < 3 && attn_tensors_disjoint(
                                   d, ATTN_T_Q + i, out[i], ATTN_T_Q + j,
                                   out[j], d->dtype == ATTN_F32 ? 4 : 2)))
                    return INVALID("the outputs %s and %s overlap", out_name[i],
                                   out_name[j]);
        }
    }
    return ATTN_OK;
}

/* rows x cols elements of size bytes each, SIZE_MAX when that
 * overflows. */
static size_t elems_bytes(size_t rows, size_t cols, size_t size)
{
    size_t n;
    return attn_mul_size(&n, rows, cols) && attn_mul_size(&n, n, size)
               ? n
               : SIZE_MAX;
}

/* rows x cols floats in bytes, SIZE_MAX when that overflows. */
static size_t floats_bytes(size_t rows, size_t cols)
{
    return elems_bytes(rows, cols, sizeof(float));
}

/* Bytes of one element of the layer's weights, biases and tables. */
static size_t weight_size(const attn_mha_desc *m)
{
    return m->weight_dtype == ATTN_F32 ? sizeof(float) : sizeof(uint16_t);
}

/* The layer's weight_dtype is an attn_dtype. */
static attn_status check_weight_dtype(const attn_mha_desc *m, attn_err *err)
{
    if ((unsigned)m->weight_dtype > ATTN_BF16)
        return INVALID("weight_dtype %d is not an attn_dtype",
                       (int)m->weight_dtype);
    return ATTN_OK;
}

/* [a, a + na) and [b, b + nb) share a byte; ends past the address space
 * count as its end. */
static int overlaps_sat(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    uintptr_t xe = na > UINTPTR_MAX - x ? UINTPTR_MAX : x + na;
    uintptr_t ye = nb > UINTPTR_MAX - y ? UINTPTR_MAX : y + nb;
    return a && b && na && nb && x < ye && y < xe;
}

/* Rows of a LEARNED table the layer reads: the queries' positions
 * pos_offset .. pos_offset+seq_q-1 and, for cross-attention, the keys'
 * positions 0 .. seq_kv-1.  pos_offset + seq_q must not overflow. */
static long pos_rows_read(const attn_mha_call *c)
{
    long need = (long)c->m->pos_offset + c->seq_q;
    return c->x_kv && c->seq_kv > need ? c->seq_kv : need;
}

/* Bytes of one element of c's x_q, x_kv and y. */
static size_t act_size(const attn_mha_call *c)
{
    return c->act_size ? c->act_size : sizeof(float);
}

const char *attn_mha_input_overlap(const attn_mha_call *c, const void *p,
                                   size_t bytes)
{
    const attn_mha_desc *m = c->m;
    const size_t dm = (size_t)m->d_model, as = act_size(c),
                 nq = (size_t)m->heads_q * (size_t)m->head_dim,
                 nkv = (size_t)m->heads_kv * (size_t)m->head_dim,
                 rows_q = (size_t)c->batch * (size_t)c->seq_q,
                 rows_kv = (size_t)c->batch * (size_t)c->seq_kv,
                 read_rows = (size_t)pos_rows_read(c);
    /* the table as declared (pos_table_len), else the rows the call reads */
    const size_t pos_rows =
        m->pos_table_len > 0 && (size_t)m->pos_table_len > read_rows
            ? (size_t)m->pos_table_len
            : read_rows;
    const attn_mask_desc *mk = c->mask;
    const size_t bias_rows =
        mk->bias_kind == ATTN_BIAS_FULL ? rows_q * (size_t)m->heads_q
        : mk->bias_kind == ATTN_BIAS_PER_HEAD
            ? (size_t)m->heads_q * (size_t)c->seq_q
        : mk->bias_kind == ATTN_BIAS_KEY ? (size_t)c->batch
                                         : (size_t)c->seq_q;
    const size_t ws = weight_size(m), keys = (size_t)attn_mha_keys(c),
                 cache = c->cache_k
                             ? (size_t)c->batch * nkv * (size_t)c->cache_cap
                             : 0;
    const struct {
        const char *name;
        const void *p;
        size_t bytes;
    } in[] = {
        {"mask.bias", mk->bias, floats_bytes(bias_rows, keys)},
        {"the cache's k", c->cache_k, floats_bytes(cache, 1)},
        {"the cache's v", c->cache_v, floats_bytes(cache, 1)},
        {"mask.kv_len", mk->kv_len, floats_bytes((size_t)c->batch, 1)},
        {"x_q", c->x_q, elems_bytes(rows_q, dm, as)},
        {"x_kv", c->x_kv, elems_bytes(rows_kv, dm, as)},
        {"wq", m->wq, elems_bytes(nq, dm, ws)},
        {"wk", m->wk, elems_bytes(nkv, dm, ws)},
        {"wv", m->wv, elems_bytes(nkv, dm, ws)},
        {"wo", m->wo, elems_bytes(dm, nq, ws)},
        {"bq", m->bq, elems_bytes(nq, 1, ws)},
        {"bk", m->bk, elems_bytes(nkv, 1, ws)},
        {"bv", m->bv, elems_bytes(nkv, 1, ws)},
        {"bo", m->bo, elems_bytes(dm, 1, ws)},
        {"additive_w",
         m->score == ATTN_SCORE_ADDITIVE ? (const void *)m->additive_w : NULL,
         elems_bytes(nq, 1, ws)},
        {"pos_table",
         m->posenc == ATTN_POSENC_LEARNED ? (const void *)m->pos_table : NULL,
         elems_bytes(pos_rows, dm, ws)},
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        if (overlaps_sat(p, bytes, in[i].p, in[i].bytes))
            return in[i].name;
    return NULL;
}

/* y is written while the layer still reads its other arrays (the output
 * projection reads the attention result while it writes y, the input
 * projections read x and the weights), so y must overlap none of them. */
static attn_status check_mha_in_place(const attn_mha_call *c, attn_err *err)
{
    const size_t cache = c->cache_k
                             ? (size_t)c->batch * (size_t)c->m->heads_kv *
                                   (size_t)c->m->head_dim * (size_t)c->cache_cap
                             : 0;
    const char *in = c->y_is_input
                         ? NULL
                         : attn_mha_input_overlap(
                               c, c->y,
                               elems_bytes((size_t)c->batch * (size_t)c->seq_q,
                                           (size_t)c->m->d_model, act_size(c)));
    if (in)
        return INVALID("y overlaps %s: the layer does not work in place", in);
    if (overlaps_sat(c->cache_k, floats_bytes(cache, 1), c->cache_v,
                     floats_bytes(cache, 1)))
        return INVALID("the cache's k and v overlap");
    return ATTN_OK;
}

/* A KV cache step: self-attention, room for the step, sizes that can be
 * addressed. */
static attn_status check_cache(const attn_mha_call *c, attn_err *err)
{
    const attn_mha_desc *m = c->m;
    size_t dims[4], bytes;
    if (c->x_kv)
        return INVALID("a step with a KV cache is self-attention: x_kv must "
                       "be NULL");
    if (!c->cache_v)
        return INVALID("the KV cache's v is NULL");
    if (c->cache_cap <= 0)
        return INVALID("the KV cache's capacity must be positive (got %d)",
                       c->cache_cap);
    if (c->cache_len < 0 || c->cache_len > c->cache_cap)
        return INVALID("the KV cache's len (%d) is outside 0 .. capacity "
                       "(%d)",
                       c->cache_len, c->cache_cap);
    if (c->seq_q > c->cache_cap - c->cache_len)
        return INVALID("the KV cache holds %d of %d rows: the step's %d "
                       "tokens do not fit",
                       c->cache_len, c->cache_cap, c->seq_q);
    dims[0] = (size_t)c->batch;
    dims[1] = (size_t)m->heads_kv;
    dims[2] = (size_t)c->cache_cap;
    dims[3] = (size_t)m->head_dim;
    return tensor_bytes(&bytes, "the KV cache", 4, dims, sizeof(float), err);
}

attn_status attn_validate_mha(const attn_mha_call *c, attn_err *err)
{
    const attn_mha_desc *m = c->m;
    size_t dims[3], bytes, rows;
    attn_status s;
    if (!m)
        return INVALID("the multi-head descriptor is NULL");
    if (!c->x_q || !c->y)
        return INVALID("%s is NULL", !c->x_q         ? "x_q"
                                     : c->y_is_input ? "d_y"
                                                     : "y");
    if (!m->wq || !m->wk || !m->wv || !m->wo)
        return INVALID("weight %s is NULL", !m->wq   ? "wq"
                                            : !m->wk ? "wk"
                                            : !m->wv ? "wv"
                                                     : "wo");
    if ((s = check_positive("d_model", m->d_model, err)) ||
        (s = check_positive("heads_q", m->heads_q, err)) ||
        (s = check_positive("heads_kv", m->heads_kv, err)) ||
        (s = check_positive("head_dim", m->head_dim, err)) ||
        (s = check_positive("batch", c->batch, err)) ||
        (s = check_positive("seq_q", c->seq_q, err)) ||
        (s = check_positive("seq_kv", c->seq_kv, err)))
        return s;
    if (m->heads_q % m->heads_kv != 0)
        return INVALID("heads_q (%d) must be a multiple of heads_kv (%d)",
                       m->heads_q, m->heads_kv);
    if (!c->x_kv && c->seq_kv != c->seq_q)
        return INVALID("self-attention (x_kv NULL) needs seq_kv == seq_q "
                       "(got %d and %d)",
                       c->seq_kv, c->seq_q);
    if (c->cache_k && (s = check_cache(c, err)))
        return s;
    if ((unsigned)m->score > ATTN_SCORE_ADDITIVE)
        return INVALID("score %d is not an attn_score", (int)m->score);
    if ((s = check_weight_dtype(m, err)))
        return s;
    if (m->score == ATTN_SCORE_ADDITIVE && !m->additive_w)
        return INVALID("the additive score needs additive_w "
                       "[heads_q, head_dim]");
    if ((unsigned)m->posenc > ATTN_POSENC_ROPE)
        return INVALID("posenc %d is not an attn_posenc", (int)m->posenc);
    if (m->pos_offset < 0)
        return INVALID("pos_offset must be >= 0 (got %d)", m->pos_offset);
    if (m->pos_offset > INT32_MAX - c->seq_q)
        return INVALID(c->cache_k && c->cache_len > 0
                           ? "pos_offset + the cache's len + seq_q overflows "
                             "int"
                           : "pos_offset + seq_q overflows int");
    if (m->posenc == ATTN_POSENC_LEARNED) {
        const long need = pos_rows_read(c);
        if (!m->pos_table)
            return INVALID("learned positional encoding needs pos_table");
        if (m->pos_table_len < 0)
            return INVALID("pos_table_len must be >= 0");
        if (m->pos_table_len > 0 && need > m->pos_table_len)
            return INVALID("pos_table has %d rows but positions up to %ld "
                           "are used",
                           m->pos_table_len, need - 1);
    }
    /* Every activation and weight must be addressable. */
    dims[0] = (size_t)c->batch;
    dims[1] = (size_t)(c->seq_q > c->seq_kv ? c->seq_q : c->seq_kv);
    dims[2] = (size_t)m->d_model;
    if ((s = tensor_bytes(&bytes, "x", 3, dims, sizeof(float), err)))
        return s;
    if (dims[0] * dims[1] > INT32_MAX)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "batch * seq (%zu tokens) exceeds INT_MAX",
                         dims[0] * dims[1]);
    if (!attn_mul_size(&rows, (size_t)m->heads_q, (size_t)m->head_dim) ||
        rows > INT32_MAX)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "heads_q * head_dim overflows int");
    dims[2] = rows;
    if ((s = tensor_bytes(&bytes, "q", 3, dims, sizeof(float), err)))
        return s;
    dims[0] = rows;
    dims[1] = (size_t)m->d_model;
    if ((s = tensor_bytes(&bytes, "wq", 2, dims, weight_size(m), err)) ||
        (s = attn_validate_mask(c->mask, NULL, c->batch, m->heads_q, c->seq_q,
                                attn_mha_keys(c), err)))
        return s;
    return check_mha_in_place(c, err);
}

attn_status attn_validate_mha_desc(const attn_mha_desc *m, attn_err *err)
{
    size_t dims[2], bytes, rows;
    attn_status s;
    if (!m)
        return INVALID("the multi-head descriptor is NULL");
    if (!m->wq || !m->wk || !m->wv || !m->wo)
        return INVALID("weight %s is NULL", !m->wq   ? "wq"
                                            : !m->wk ? "wk"
                                            : !m->wv ? "wv"
                                                     : "wo");
    if ((s = check_positive("d_model", m->d_model, err)) ||
        (s = check_positive("heads_q", m->heads_q, err)) ||
        (s = check_positive("heads_kv", m->heads_kv, err)) ||
        (s = check_positive("head_dim", m->head_dim, err)))
        return s;
    if (m->heads_q % m->heads_kv != 0)
        return INVALID("heads_q (%d) must be a multiple of heads_kv (%d)",
                       m->heads_q, m->heads_kv);
    if ((unsigned)m->score > ATTN_SCORE_ADDITIVE)
        return INVALID("score %d is not an attn_score", (int)m->score);
    if ((s = check_weight_dtype(m, err)))
        return s;
    if (m->score == ATTN_SCORE_ADDITIVE && !m->additive_w)
        return INVALID("the additive score needs additive_w "
                       "[heads_q, head_dim]");
    if ((unsigned)m->posenc > ATTN_POSENC_ROPE)
        return INVALID("posenc %d is not an attn_posenc", (int)m->posenc);
    if (m->pos_offset < 0)
        return INVALID("pos_offset must be >= 0 (got %d)", m->pos_offset);
    if (m->posenc == ATTN_POSENC_LEARNED) {
        if (!m->pos_table)
            return INVALID("learned positional encoding needs pos_table");
        if (m->pos_table_len < 0)
            return INVALID("pos_table_len must be >= 0");
    }
    if (!attn_mul_size(&rows, (size_t)m->heads_q, (size_t)m->head_dim) ||
        rows > INT32_MAX)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "heads_q * head_dim overflows int");
    dims[0] = rows;
    dims[1] = (size_t)m->d_model;
    if ((s = tensor_bytes(&bytes, "wq", 2, dims, weight_size(m), err)))
        return s;
    dims[0] = (size_t)m->pos_table_len;
    return m->posenc == ATTN_POSENC_LEARNED
               ? tensor_bytes(&bytes, "pos_table", 2, dims, weight_size(m), err)
               : ATTN_OK;
}

int attn_mha_keys(const attn_mha_call *c)
{
    return c->cache_k ? c->cache_len + c->seq_q : c->seq_kv;
}

void attn_mha_sdpa_desc(const attn_mha_call *c, attn_sdpa_desc *sd)
{
    const attn_mha_desc *m = c->m;
    memset(sd, 0, sizeof *sd);
    sd->batch = c->batch;
    sd->heads_q = m->heads_q;
    sd->heads_kv = m->heads_kv;
    sd->seq_q = c->seq_q;
    sd->seq_kv = attn_mha_keys(c);
    sd->head_dim = m->head_dim;
    sd->head_dim_v = m->head_dim;
    sd->scale =
        c->scale != 0.0f ? c->scale : (float)(1.0 / sqrt((double)m->head_dim));
    sd->score = m->score;
    sd->additive_w = m->additive_w;
    sd->mask = *c->mask;
    sd->dtype = ATTN_F32;
}
