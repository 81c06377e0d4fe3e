/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strided and packed attn_sdpa calls for the soak program and the fuzzer
 * (see attn_place.h): the inputs placed at a generated shape's strides,
 * the outputs gathered back and checked against the oracle.
 */
#include "attn_place.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gen_fill_nan(void *p, size_t n, attn_dtype dt)
{
    for (size_t i = 0; i < n; i++)
        if (dt == ATTN_F32)
            ((float *)p)[i] = NAN;
        else
            ((uint16_t *)p)[i] = dt == ATTN_F16 ? 0x7e00u : 0x7fc0u;
}

/* Places the contiguous c's inputs at the strides of d (n*: the storage's
 * sizes); 0 when out of memory. */
int gen_place_inputs(const gen_sdpa *shape, const attn_sdpa_desc *d,
                     const sdpa_case *c, const size_t nq[3], const size_t nk[3],
                     gen_placed *p)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t hd = (size_t)d->head_dim, hdv = (size_t)d->head_dim_v;
    int64_t sq[3], sk[3], sv[3];
    size_t eq, ek, ev;
    memset(p, 0, sizeof *p);
    if (shape->layout == GEN_CONTIG && !shape->varlen) {
        /* the call reads c's own tensors */
        p->q = c->q;
        p->k = c->k;
        p->v = c->v;
        return 1;
    }
    gen_strides(d->q_strides, nq, hd, shape->varlen, sq);
    gen_strides(d->k_strides, nk, hd, shape->varlen, sk);
    gen_strides(d->v_strides, nk, hdv, shape->varlen, sv);
    eq = gen_extent(nq, hd, sq);
    ek = gen_extent(nk, hd, sk);
    ev = gen_extent(nk, hdv, sv);
    if (shape->layout == GEN_FUSED) {
        /* one buffer: k and v start at their heads' place in a row */
        const size_t ok_ = nq[1] * hd, ov = ok_ + nk[1] * hd;
        size_t all = eq;
        all = ok_ + ek > all ? ok_ + ek : all;
        all = ov + ev > all ? ov + ev : all;
        if (!(p->buf[0] = malloc(all * es)))
            return 0;
        gen_fill_nan(p->buf[0], all, d->dtype);
        p->q = p->buf[0];
        p->k = (char *)p->buf[0] + ok_ * es;
        p->v = (char *)p->buf[0] + ov * es;
    } else {
        p->buf[0] = p->q = malloc(eq * es);
        p->buf[1] = p->k = malloc(ek * es);
        p->buf[2] = p->v = malloc(ev * es);
        if (!p->q || !p->k || !p->v)
            return 0;
        gen_fill_nan(p->q, eq, d->dtype);
        gen_fill_nan(p->k, ek, d->dtype);
        gen_fill_nan(p->v, ev, d->dtype);
    }
    gen_move(p->q, c->q, es, nq, hd, sq, 1);
    gen_move(p->k, c->k, es, nk, hd, sk, 1);
    gen_move(p->v, c->v, es, nk, hdv, sv, 1);
    return 1;
}

/* Output element e of o as a float. */
double gen_out_at(attn_dtype dt, const void *o, size_t e)
{
    if (dt == ATTN_F16)
        return (double)ref_f16_to_f32(((const uint16_t *)o)[e]);
    if (dt == ATTN_BF16)
        return (double)ref_bf16_to_f32(((const uint16_t *)o)[e]);
    return (double)((const float *)o)[e];
}

/* Worst |got - want| / tol of O and lse with the tolerances of ref.h;
 * infinity for a NaN or a hidden row that is not exactly 0 / -inf. */
double gen_sdpa_ratio(const attn_sdpa_desc *d, const ref_sdpa_result *r,
                      const void *o, const float *lse)
{
    const size_t dv = (size_t)r->dv;
    double worst = 0.0;
    for (size_t row = 0; row < r->rows; row++) {
        for (size_t c = 0; c < dv; c++) {
            size_t e = row * dv + c;
            double got = gen_out_at(d->dtype, o, e);
            double want = r->o[e], tol, q;
            if (r->hidden[row]) {
                if (got != 0.0)
                    return INFINITY;
                continue;
            }
            tol = REF_F32_ABS + REF_F32_REL * fabs(want) + r->tol_o[row];
            if (d->dtype == ATTN_F16)
                tol += REF_F16_ABS + REF_F16_REL * fabs(want);
            if (d->dtype == ATTN_BF16)
                tol += REF_BF16_ABS + REF_BF16_REL * fabs(want) +
                       (fabs(want) < 0x1p-126 ? fabs(want) : 0.0);
            q = fabs(got - want) / tol;
            if (isnan(q))
                return INFINITY;
            worst = q > worst ? q : worst;
        }
        if (lse) {
            double want = r->lse[row], got = (double)lse[row], q;
            if (isinf(want) || isinf(got)) {
                if (got != want)
                    return INFINITY;
                continue;
            }
            q = fabs(got - want) /
                (REF_LSE_ABS + REF_LSE_REL * fabs(want) + r->tol_lse[row]);
            if (isnan(q))
                return INFINITY;
            worst = q > worst ? q : worst;
        }
    }
    return worst;
}

/* Compares o (contiguous) and lse of the problem d (inputs q, k, v,
 * contiguous) with the oracle; a problem without keys (seq_kv 0, a
 * packed sequence) must give O = 0 and lse = -inf. */
int gen_check_one(double *worst, attn_precision prec, const attn_sdpa_desc *d,
                  const void *q, const void *k, const void *v, const void *o,
                  const float *lse, const char *what)
{
    ref_sdpa_result ref;
    double r;
    int ok;
    if (d->seq_kv == 0) {
        const size_t rows =
            (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
        for (size_t e = 0; e < rows * (size_t)d->head_dim_v; e++)
            if (gen_out_at(d->dtype, o, e) != 0.0) {
                printf("FAIL %s: O[%zu] of a sequence without keys is not "
                       "0\n",
                       what, e);
                return 0;
            }
        for (size_t e = 0; lse && e < rows; e++)
            if (!(isinf(lse[e]) && lse[e] < 0)) {
                printf("FAIL %s: lse[%zu] of a sequence without keys is "
                       "%g\n",
                       what, e, (double)lse[e]);
                return 0;
            }
        return 1;
    }
    if (ref_sdpa(d, q, k, v, &ref) != 0) {
        printf("FAIL %s: out of memory in the oracle\n", what);
        return 0;
    }
    ok = ref_check_sdpa_at(what, d, &ref, o, lse, NULL, prec);
    if (worst && prec == ATTN_PRECISION_EXACT) {
        r = gen_sdpa_ratio(d, &ref, o, lse);
        *worst = r > *worst ? r : *worst;
        ok &= r <= 1.0;
    }
    ref_sdpa_free(&ref);
    return ok;
}

/* Rows r0 .. r0 + len - 1 of each head of x [heads, total, w] (elem-byte
 * elements), into a new [heads, len, w] (NULL when out of memory; a
 * malloc of at least one byte). */
static void *cut_rows(const void *x, size_t elem, size_t heads, size_t total,
                      size_t r0, size_t len, size_t w)
{
    unsigned char *out = malloc(heads * len * w * elem + 1);
    for (size_t h = 0; out && h < heads; h++)
        memcpy(out + h * len * w * elem,
               (const unsigned char *)x + (h * total + r0) * w * elem,
               len * w * elem);
    return out;
}

/* The oracle's check of a packed batch: each sequence's own problem, cut
 * out of the contiguous storage c (one batch item of all the rows). */
int gen_check_packed(double *worst, attn_precision prec, const gen_sdpa *shape,
                     const sdpa_case *c, const void *o, const float *lse,
                     const char *what)
{
    const attn_sdpa_desc *sd = &c->d;
    const size_t es = sd->dtype == ATTN_F32 ? 4 : 2;
    const size_t hq = (size_t)sd->heads_q, hk = (size_t)sd->heads_kv;
    const size_t tq = (size_t)sd->seq_q, tk = (size_t)sd->seq_kv;
    int ok = 1;
    for (int b = 0; ok && b < shape->d.batch; b++) {
        const size_t q0 = (size_t)shape->cu_q[b], k0 = (size_t)shape->cu_kv[b];
        const size_t lq = (size_t)shape->cu_q[b + 1] - q0;
        const size_t lk = (size_t)shape->cu_kv[b + 1] - k0;
        attn_sdpa_desc one = *sd;
        void *q, *k, *v, *ob;
        float *lb = NULL;
        if (lq == 0)
            continue;
        one.seq_q = (int)lq;
        one.seq_kv = (int)lk;
        one.mask.causal = shape->d.mask.causal;
        one.mask.window = shape->d.mask.window;
        q = cut_rows(c->q, es, hq, tq, q0, lq, (size_t)sd->head_dim);
        k = cut_rows(c->k, es, hk, tk, k0, lk, (size_t)sd->head_dim);
        v = cut_rows(c->v, es, hk, tk, k0, lk, (size_t)sd->head_dim_v);
        ob = cut_rows(o, es, hq, tq, q0, lq, (size_t)sd->head_dim_v);
        if (lse)
            lb = cut_rows(lse, sizeof *lse, hq, tq, q0, lq, 1);
        if (!q || !k || !v || !ob || (lse && !lb)) {
            printf("FAIL %s: out of memory\n", what);
            ok = 0;
        } else {
            ok = gen_check_one(worst, prec, &one, q, k, v, ob, lb, what);
            if (!ok)
                printf("  sequence %d of %d: %zu rows, %zu keys\n", b,
                       shape->d.batch, lq, lk);
        }
        free(q);
        free(k);
        free(v);
        free(ob);
        free(lb);
    }
    return ok;
}
