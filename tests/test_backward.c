/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_backward on the native backend: the double reference backward
 * (ref_bwd.c) checked by central finite differences of the double forward,
 * the library against that reference over every mask, GQA/MQA, kv_len,
 * both causal alignments, keep, F16 and BF16, the non-finite rules, and the
 * argument checks.  On an OpenCL context (ATTN_TEST_DEVICE) both run on
 * the device, fallback off: the backward on the variant path AUTO chooses
 * (bwd_fused on PoCL), or on the one ATTN_TEST_KERNEL forces (bwd_ref,
 * bwd_fused, bwd_tiled;
 * the forward then chooses as under AUTO), with the same tolerances
 * (dbias and the additive score: tests/test_bwd_grads.c).
 *
 * Tolerances, per element e of a gradient tensor whose reference has the
 * largest magnitude M: |got - want| <= TOL * (M + 1) + TOL * |want|, with
 * TOL 1e-4 for F32 (float sums of a few hundred products, P recomputed
 * from a float lse) and 8e-3 for F16 (the forward's O and the gradients
 * stored as binary16, whose unit roundoff is 2^-11 ~ 4.9e-4, with D =
 * rowsum(dO * O) taken from that rounded O), 8 times that for BF16
 * (bfloat16's unit roundoff is 2^-8, 8 times binary16's).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref.h"

#define TOL_F32 1e-4
#define TOL_F16 8e-3
/* TOL_F16 with bfloat16's rounding unit (2^-8) in place of binary16's
 * (2^-11): the stored O, the rounded inputs and gradients all carry it */
#define TOL_BF16 (TOL_F16 * 8.0)

static attn_context *ctx1, *ctx3; /* one and three worker threads */

/* The suite's options (harness_options: native, or the test device with
 * fallback off). */
static int init(void)
{
    attn_options o;
    harness_options(&o);
    o.threads = 1;
    if (attn_context_create(&o, &ctx1))
        return -1;
    o.threads = 3;
    return attn_context_create(&o, &ctx3) ? -1 : 0;
}

static int clean(void)
{
    attn_context_destroy(ctx1);
    attn_context_destroy(ctx3);
    return 0;
}

static size_t nq_of(const attn_sdpa_desc *d)
{
    return (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
}

static size_t nkv_of(const attn_sdpa_desc *d)
{
    return (size_t)d->batch * (size_t)d->heads_kv * (size_t)d->seq_kv;
}

static double elem(const attn_sdpa_desc *d, const void *x, size_t i)
{
    return ref_elem(d->dtype, x, i);
}

static double *to_f64(const attn_sdpa_desc *d, const void *x, size_t n)
{
    double *y = malloc(n * sizeof *y);
    for (size_t i = 0; y && i < n; i++)
        y[i] = elem(d, x, i);
    return y;
}

/* Every element of got (dtype) within the tolerance of want. */
static int close_to(const attn_sdpa_desc *d, const char *what, const void *got,
                    const double *want, size_t n)
{
    double m = 0.0, tol = d->dtype == ATTN_F16    ? TOL_F16
                          : d->dtype == ATTN_BF16 ? TOL_BF16
                                                  : TOL_F32;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double g = elem(d, got, i);
        if (!(fabs(g - want[i]) <= tol * (m + 1.0) + tol * fabs(want[i]))) {
            printf("\n%s: element %zu is %.9g, want %.9g (max %.3g)\n", what, i,
                   g, want[i], m);
            return 0;
        }
    }
    return 1;
}

static void *fill(ref_rng *r, const attn_sdpa_desc *d, size_t n)
{
    void *x = malloc(n * (d->dtype == ATTN_F32 ? 4 : 2) + 1);
    if (d->dtype == ATTN_BF16)
        ref_fill_bf16(r, x, n, -1.0, 1.0);
    else if (d->dtype == ATTN_F16)
        ref_fill_f16(r, x, n, -1.0, 1.0);
    else
        ref_fill_f32(r, x, n, -1.0, 1.0);
    return x;
}

/* Runs the forward and the backward of d on ctx with random inputs and
 * compares dq, dk, dv with the double reference. */
static int check_case(attn_context *ctx, const attn_sdpa_desc *d, uint64_t seed,
                      const char *what)
{
    ref_rng r;
    const size_t nq = nq_of(d) * (size_t)d->head_dim,
                 no = nq_of(d) * (size_t)d->head_dim_v,
                 nk = nkv_of(d) * (size_t)d->head_dim,
                 nv = nkv_of(d) * (size_t)d->head_dim_v,
                 es = d->dtype == ATTN_F32 ? 4 : 2;
    int ok = 0;
    ref_rng_seed(&r, seed);
    void *q = fill(&r, d, nq), *k = fill(&r, d, nk), *v = fill(&r, d, nv);
    void *dout = fill(&r, d, no), *o = malloc(no * es);
    void *dq = malloc(nq * es), *dk = malloc(nk * es), *dv = malloc(nv * es);
    float *lse = malloc(nq_of(d) * sizeof *lse);
    double *q8 = to_f64(d, q, nq), *k8 = to_f64(d, k, nk),
           *v8 = to_f64(d, v, nv), *do8 = to_f64(d, dout, no);
    double *rq = malloc(nq * 8), *rk = malloc(nk * 8), *rv = malloc(nv * 8);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    attn_status st;

    g.q = q;
    g.k = k;
    g.v = v;
    g.o = o;
    g.lse = lse;
    g.d_o = dout;
    g.dq = dq;
    g.dk = dk;
    g.dv = dv;
    if (!q8 || !k8 || !v8 || !do8 || !rq || !rk || !rv || !lse || !dq || !dk ||
        !dv || !o)
        goto out;
    st = attn_sdpa(ctx, d, q, k, v, o, lse);
    HARNESS_EXPECT(st == ATTN_OK, what);
    st = attn_sdpa_backward(ctx, d, &g);
    HARNESS_EXPECT(st == ATTN_OK, what);
    if (st != ATTN_OK)
        printf("\n%s: %s\n", what, attn_context_last_error(ctx));
    HARNESS_EXPECT(ref_sdpa_backward_f64(d, q8, k8, v8, do8, rq, rk, rv) == 0,
                   what);
    if (st == ATTN_OK)
        harness_taken();
    ok = st == ATTN_OK && close_to(d, what, dq, rq, nq) &&
         close_to(d, what, dk, rk, nk) && close_to(d, what, dv, rv, nv);
out:
    free(q), free(k), free(v), free(dout), free(o), free(dq), free(dk);
    free(dv), free(lse), free(q8), free(k8), free(v8), free(do8);
    free(rq), free(rk), free(rv);
    return ok;
}

static attn_sdpa_desc shape(int b, int hq, int hkv, int sq, int skv, int dh,
                            int dv)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    d.batch = b;
    d.heads_q = hq;
    d.heads_kv = hkv;
    d.seq_q = sq;
    d.seq_kv = skv;
    d.head_dim = dh;
    d.head_dim_v = dv;
    return d;
}

/* L = sum(dO * O) of the double forward; its central differences in each
 * element of q, k and v against the reference backward. */
static void test_finite_differences(void)
{
    attn_sdpa_desc d = shape(2, 4, 2, 5, 7, 4, 3);
    const int32_t kv_len[2] = {7, 4};
    float bias[5 * 7];
    ref_rng r;
    ref_rng_seed(&r, 7);
    ref_fill_f32(&r, bias, 35, -1.0, 1.0);
    bias[3] = -INFINITY;
    d.mask.causal = 1;
    d.mask.kv_len = kv_len;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_SHARED;
    d.scale = 0.6f;
    const size_t nq = nq_of(&d) * 4, nk = nkv_of(&d) * 4, nv = nkv_of(&d) * 3,
                 no = nq_of(&d) * 3;
    double *x[3], *grad[3], *dout = malloc(no * 8), *o = malloc(no * 8);
    const size_t n[3] = {nq, nk, nv};
    for (int t = 0; t < 3; t++) {
        x[t] = malloc(n[t] * 8);
        grad[t] = malloc(n[t] * 8);
        for (size_t i = 0; i < n[t]; i++)
            x[t][i] = ref_rng_uniform(&r, -1.0, 1.0);
    }
    for (size_t i = 0; i < no; i++)
        dout[i] = ref_rng_uniform(&r, -1.0, 1.0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa_backward_f64(&d, x[0], x[1], x[2], dout,
                                                grad[0], grad[1], grad[2]),
                          0);
    double worst = 0.0;
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < n[t]; i++) {
            const double h = 1e-5, keep = x[t][i];
            double lp = 0.0, lm = 0.0;
            x[t][i] = keep + h;
            ref_sdpa_f64(&d, x[0], x[1], x[2], o, NULL, NULL, NULL, NULL);
            for (size_t e = 0; e < no; e++)
                lp += dout[e] * o[e];
            x[t][i] = keep - h;
            ref_sdpa_f64(&d, x[0], x[1], x[2], o, NULL, NULL, NULL, NULL);
            for (size_t e = 0; e < no; e++)
                lm += dout[e] * o[e];
            x[t][i] = keep;
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - grad[t][i]));
        }
    /* central differences: O(h^2) truncation, rounding ~ 1e-16 / h */
    CU_ASSERT(worst < 1e-8);
    /* keys past kv_len and rows that see nothing get exactly 0 */
    for (int b = 0; b < 2; b++)
        for (int j = kv_len[b]; j < 7; j++)
            for (int c = 0; c < 4; c++)
                CU_ASSERT_EQUAL(
                    grad[1][((size_t)b * 2 * 7 + (size_t)j) * 4 + (size_t)c],
                    0.0);
    for (int t = 0; t < 3; t++) {
        free(x[t]);
        free(grad[t]);
    }
    free(dout);
    free(o);
}

static void test_plain_and_gqa(void)
{
    attn_sdpa_desc d = shape(2, 2, 2, 9, 13, 8, 8);
    CU_ASSERT(check_case(ctx1, &d, 1, "plain"));
    d = shape(1, 4, 2, 37, 600, 16, 8); /* several key tiles, GQA */
    CU_ASSERT(check_case(ctx3, &d, 2, "GQA, 3 threads"));
    d = shape(2, 3, 1, 20, 70, 5, 7); /* MQA, odd head sizes */
    d.scale = -0.4f;
    CU_ASSERT(check_case(ctx3, &d, 3, "MQA"));
    d = shape(1, 1, 1, 1, 1, 1, 1);
    CU_ASSERT(check_case(ctx1, &d, 4, "all sizes 1"));
    d = shape(1, 2, 1, 70, 45, 64, 64); /* a model's head size */
    d.mask.causal = 1;
    CU_ASSERT(check_case(ctx3, &d, 5, "head size 64, causal"));
    d = shape(1, 2, 2, 20, 33, 128, 96);
    CU_ASSERT(check_case(ctx1, &d, 6, "head sizes 128 and 96"));
    /* head sizes of 16: whole blocks of 32 query rows are read in place,
     * the last short block is copied */
    d = shape(1, 2, 1, 70, 300, 16, 16);
    CU_ASSERT(check_case(ctx3, &d, 7, "head sizes 16"));
    d.mask.causal = 1;
    CU_ASSERT(check_case(ctx1, &d, 8, "head sizes 16, causal"));
}

#define NSEQ 4

/* Strided and packed calls: the items of d (lq[b] query and lk[b] key
 * rows each; batch items of d.seq_q and d.seq_kv when lk is NULL), each
 * its own random problem, placed with `pad` spare elements after each
 * row, in BSHD ([batch, seq, heads, dim]) or packed ([total, heads, dim]
 * with cu_seqlens); the forward and the backward run on that layout, and
 * each item's dq, dk and dv are compared with the double reference of its
 * own contiguous problem.  An item without keys must get dq = 0, one
 * without queries dk = dv = 0; the padding must stay untouched. */
static int check_placed(attn_context *ctx, const attn_sdpa_desc *d,
                        const int *lq, const int *lk, int pad, uint64_t seed,
                        const char *what)
{
    const int B = d->batch, packed = lk != NULL;
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t HQ = (size_t)d->heads_q, HK = (size_t)d->heads_kv;
    const size_t wq = (size_t)d->head_dim, wv = (size_t)d->head_dim_v;
    /* row widths in elements: q/dq, k/dk, v/dv, o/dO */
    const size_t rw[4] = {HQ * wq + pad, HK * wq + pad, HK * wv + pad,
                          HQ * wv + pad};
    int32_t cq[NSEQ + 1] = {0}, ck[NSEQ + 1] = {0};
    attn_sdpa_desc c = *d;
    size_t tq, tk;
    int ok = 1;
    for (int b = 0; b < B; b++) {
        cq[b + 1] = cq[b] + (packed ? lq[b] : d->seq_q);
        ck[b + 1] = ck[b] + (packed ? lk[b] : d->seq_kv);
    }
    tq = (size_t)cq[B];
    tk = (size_t)ck[B];
    /* [0] q [1] k [2] v [3] o [4] dO [5] dq [6] dk [7] dv, 0x7f filled */
    const size_t n[8] = {tq * rw[0], tk * rw[1], tk * rw[2], tq * rw[3],
                         tq * rw[3], tq * rw[0], tk * rw[1], tk * rw[2]};
    unsigned char *t[8];
    float *lse = malloc(tq * HQ * sizeof *lse);
    CU_ASSERT_FATAL(lse != NULL);
    for (int i = 0; i < 8; i++) {
        t[i] = malloc(n[i] * es + 1);
        CU_ASSERT_FATAL(t[i] != NULL);
        memset(t[i], 0x7f, n[i] * es);
    }
    c.q_strides[0] = packed ? 0 : (int64_t)(d->seq_q * rw[0]);
    c.k_strides[0] = packed ? 0 : (int64_t)(d->seq_kv * rw[1]);
    c.v_strides[0] = packed ? 0 : (int64_t)(d->seq_kv * rw[2]);
    c.o_strides[0] = packed ? 0 : (int64_t)(d->seq_q * rw[3]);
    c.q_strides[1] = c.k_strides[1] = (int64_t)wq;
    c.v_strides[1] = c.o_strides[1] = (int64_t)wv;
    c.q_strides[2] = (int64_t)rw[0];
    c.k_strides[2] = (int64_t)rw[1];
    c.v_strides[2] = (int64_t)rw[2];
    c.o_strides[2] = (int64_t)rw[3];
    if (packed) {
        c.cu_seqlens_q = cq;
        c.cu_seqlens_kv = ck;
    }
    /* each item's problem, placed; its reference gradients kept */
    double *ref[NSEQ][3] = {{NULL}};
    for (int b = 0; b < B; b++) {
        attn_sdpa_desc one = *d;
        const size_t sq = (size_t)(cq[b + 1] - cq[b]),
                     sk = (size_t)(ck[b + 1] - ck[b]);
        const size_t cnt[4] = {HQ * sq * wq, HK * sk * wq, HK * sk * wv,
                               HQ * sq * wv};
        ref_rng r;
        void *x[4];
        double *x8[4];
        one.batch = 1;
        one.seq_q = (int)sq;
        one.seq_kv = (int)sk;
        ref_rng_seed(&r, seed * 31 + (uint64_t)b);
        for (int i = 0; i < 4; i++) {
            x[i] = fill(&r, d, cnt[i] ? cnt[i] : 1);
            x8[i] = to_f64(d, x[i], cnt[i] ? cnt[i] : 1);
            CU_ASSERT_FATAL(x[i] && x8[i]);
        }
        for (int i = 0; i < 3; i++) {
            ref[b][i] = calloc(cnt[i] ? cnt[i] : 1, sizeof(double));
            CU_ASSERT_FATAL(ref[b][i] != NULL);
        }
        if (sq && sk)
            CU_ASSERT_FATAL(ref_sdpa_backward_f64(&one, x8[0], x8[1], x8[2],
                                                  x8[3], ref[b][0], ref[b][1],
                                                  ref[b][2]) == 0);
        /* q -> t[0], k -> t[1], v -> t[2], dO -> t[4] */
        for (int i = 0; i < 4; i++) {
            const int dst = i == 3 ? 4 : i;
            const size_t hh = i == 0 || i == 3 ? HQ : HK,
                         rows = i == 0 || i == 3 ? sq : sk,
                         w = i == 0 || i == 1 ? wq : wv,
                         r0 = (size_t)(i == 0 || i == 3 ? cq[b] : ck[b]);
            for (size_t h = 0; h < hh; h++)
                for (size_t j = 0; j < rows; j++)
                    memcpy(t[dst] +
                               ((r0 + j) * rw[i == 3 ? 3 : i] + h * w) * es,
                           (char *)x[i] + ((h * rows + j) * w) * es, w * es);
            free(x[i]);
            free(x8[i]);
        }
    }
    attn_status st = attn_sdpa(ctx, &c, t[0], t[1], t[2], t[3], lse);
    if (st == ATTN_OK) {
        attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
        g.q = t[0], g.k = t[1], g.v = t[2], g.o = t[3], g.lse = lse;
        g.d_o = t[4], g.dq = t[5], g.dk = t[6], g.dv = t[7];
        st = attn_sdpa_backward(ctx, &c, &g);
    }
    if (st != ATTN_OK) {
        printf("\n%s: %s (%s)\n", what, attn_status_string(st),
               attn_context_last_error(ctx));
        ok = 0;
    }
    for (int b = 0; ok && b < B; b++) {
        const size_t sq = (size_t)(cq[b + 1] - cq[b]),
                     sk = (size_t)(ck[b + 1] - ck[b]);
        for (int i = 0; i < 3; i++) {
            const size_t hh = i == 0 ? HQ : HK, rows = i == 0 ? sq : sk,
                         w = i == 1 || i == 0 ? wq : wv,
                         r0 = (size_t)(i == 0 ? cq[b] : ck[b]);
            const size_t cnt = hh * rows * w;
            unsigned char *got = malloc(cnt * es + 1);
            CU_ASSERT_FATAL(got != NULL);
            for (size_t h = 0; h < hh; h++)
                for (size_t j = 0; j < rows; j++)
                    memcpy(got + ((h * rows + j) * w) * es,
                           t[5 + i] + ((r0 + j) * rw[i] + h * w) * es, w * es);
            /* an item without keys or queries: zeros (ref is 0) */
            ok &= close_to(d, what, got, ref[b][i], cnt);
            free(got);
        }
    }
    /* the padding of dq, dk and dv untouched */
    for (int i = 0; ok && pad && i < 3; i++) {
        const size_t rows = i == 0 ? tq : tk;
        const size_t used = rw[i] - (size_t)pad;
        for (size_t j = 0; j < rows; j++)
            for (size_t e = used * es; e < rw[i] * es; e++)
                ok &= t[5 + i][j * rw[i] * es + e] == 0x7f;
        if (!ok)
            printf("\n%s: the backward wrote into the padding\n", what);
    }
    if (ok)
        harness_taken();
    for (int b = 0; b < B; b++)
        for (int i = 0; i < 3; i++)
            free(ref[b][i]);
    for (int i = 0; i < 8; i++)
        free(t[i]);
    free(lse);
    return ok;
}

static void test_strided_and_packed(void)
{
    static const int lq[NSEQ] = {17, 0, 40, 5}, lk[NSEQ] = {29, 3, 40, 0};
    attn_sdpa_desc d = shape(2, 4, 2, 19, 31, 16, 8);
    CU_ASSERT(check_placed(ctx3, &d, NULL, NULL, 3, 11, "BSHD, padded rows"));
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT(check_placed(ctx1, &d, NULL, NULL, 0, 12, "BSHD, causal"));
    d = shape(NSEQ, 4, 2, 40, 40, 16, 16);
    CU_ASSERT(check_placed(ctx3, &d, lq, lk, 0, 13, "packed"));
    d.mask.causal = 1;
    CU_ASSERT(check_placed(ctx1, &d, lq, lk, 2, 14, "packed, causal, padded"));
    d.dtype = ATTN_F16;
    d.mask.window = 5;
    CU_ASSERT(check_placed(ctx3, &d, lq, lk, 0, 15, "packed F16 window"));
}

/* Fused QKV: q, k and v views of one [batch, seq, heads_q + 2 heads_kv,
 * dim] block, and dq, dk, dv views of another of that layout (as a fused
 * projection's gradient is): each gradient against the double reference
 * of the contiguous problem.  Views whose elements meet (dk one element
 * into dq's heads) and rows that share elements (one query row for the
 * whole sequence, as an input may be) are refused with nothing written. */
static int untouched(const float *x, size_t n);

static int check_fused(attn_context *ctx, int batch, int hq, int hkv,
                       uint64_t seed, const char *what)
{
    const int S = 23, D = 16;
    attn_sdpa_desc d = shape(batch, hq, hkv, S, S, D, D), c;
    const size_t R = (size_t)(hq + 2 * hkv) * (size_t)D; /* row width */
    const size_t nb = (size_t)batch * (size_t)S * R;
    const size_t off[3] = {0, (size_t)hq * D, (size_t)(hq + hkv) * D};
    const size_t cnt[3] = {nq_of(&d) * D, nkv_of(&d) * D, nkv_of(&d) * D};
    float *x = malloc(nb * sizeof *x), *gr = malloc(nb * sizeof *gr);
    float *o = malloc(cnt[0] * sizeof *o), *lse = malloc(nq_of(&d) * 4);
    float *dense[3], *dout;
    double *x8[4], *ref[3];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    ref_rng r;
    int ok = 1;
    CU_ASSERT_FATAL(x && gr && o && lse);
    ref_rng_seed(&r, seed);
    ref_fill_f32(&r, x, nb, -1.0, 1.0);
    dout = fill(&r, &d, cnt[0]);
    CU_ASSERT_FATAL(dout != NULL);
    c = d;
    for (int t = 0; t < 3; t++) {
        int64_t *st = t == 0 ? c.q_strides : t == 1 ? c.k_strides : c.v_strides;
        const int h = t == 0 ? hq : hkv;
        st[0] = (int64_t)((size_t)S * R);
        st[1] = D;
        st[2] = (int64_t)R;
        /* the contiguous copy [batch, heads, seq, dim] for the reference */
        dense[t] = malloc(cnt[t] * sizeof(float));
        CU_ASSERT_FATAL(dense[t] != NULL);
        for (int b = 0; b < batch; b++)
            for (int hh = 0; hh < h; hh++)
                for (int i = 0; i < S; i++)
                    memcpy(dense[t] + (((size_t)b * h + hh) * S + i) * D,
                           x + ((size_t)b * S + i) * R + off[t] + hh * D,
                           D * sizeof(float));
        x8[t] = to_f64(&d, dense[t], cnt[t]);
        ref[t] = calloc(cnt[t], sizeof(double));
        CU_ASSERT_FATAL(x8[t] && ref[t]);
    }
    x8[3] = to_f64(&d, dout, cnt[0]);
    CU_ASSERT_FATAL(x8[3] != NULL);
    CU_ASSERT_FATAL(ref_sdpa_backward_f64(&d, x8[0], x8[1], x8[2], x8[3],
                                          ref[0], ref[1], ref[2]) == 0);
    for (size_t i = 0; i < nb; i++)
        gr[i] = 1234.5f;
    g.q = x + off[0], g.k = x + off[1], g.v = x + off[2];
    g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = gr + off[0], g.dk = gr + off[1], g.dv = gr + off[2];
    /* refused: dk one element into dq's heads; q broadcast over the batch */
    {
        attn_sdpa_grad bad = g;
        attn_sdpa_desc e = c;
        bad.dk = gr + off[1] - 1;
        ok &= attn_sdpa(ctx, &c, g.q, g.k, g.v, o, lse) == ATTN_OK;
        ok &= attn_sdpa_backward(ctx, &c, &bad) == ATTN_ERR_INVALID_ARGUMENT;
        ok &= strstr(attn_context_last_error(ctx), "dq and dk overlap") != NULL;
        e.q_strides[2] = 0; /* every query row the same */
        ok &= attn_sdpa_backward(ctx, &e, &g) == ATTN_ERR_INVALID_ARGUMENT;
        ok &= strstr(attn_context_last_error(ctx), "rows share") != NULL;
        e = c; /* the diagonal past the last key */
        e.causal_offset =
            c.causal_align == ATTN_CAUSAL_TOP_LEFT ? c.seq_kv : c.seq_q;
        ok &= attn_sdpa_backward(ctx, &e, &g) == ATTN_ERR_INVALID_ARGUMENT;
        ok &= strstr(attn_context_last_error(ctx), "causal_offset") != NULL;
        ok &= untouched(gr, nb);
        if (!ok)
            printf("\n%s: an overlap was not refused, or output written\n",
                   what);
    }
    if (attn_sdpa_backward(ctx, &c, &g) != ATTN_OK) {
        printf("\n%s: %s\n", what, attn_context_last_error(ctx));
        ok = 0;
    }
    for (int t = 0; ok && t < 3; t++) {
        const int h = t == 0 ? hq : hkv;
        for (int b = 0; b < batch; b++)
            for (int hh = 0; hh < h; hh++)
                for (int i = 0; i < S; i++)
                    memcpy(dense[t] + (((size_t)b * h + hh) * S + i) * D,
                           gr + ((size_t)b * S + i) * R + off[t] + hh * D,
                           D * sizeof(float));
        ok &= close_to(&d, what, dense[t], ref[t], cnt[t]);
    }
    if (ok)
        harness_taken();
    for (int t = 0; t < 3; t++)
        free(dense[t]), free(x8[t]), free(ref[t]);
    free(x8[3]), free(dout), free(x), free(gr), free(o), free(lse);
    return ok;
}

/* Fused QKV with packed sequences ([total, heads_q + 2 heads_kv, dim],
 * cu_seqlens): dq, dk, dv as views of one block give bit for bit what
 * three separate blocks of that layout get (which check_placed's packed
 * cases hold against the reference), and nothing between. */
static int check_fused_packed(attn_context *ctx, const char *what)
{
    enum { HQ = 4, HK = 2, D = 8, T = 41, R = (HQ + 2 * HK) * D };
    const int32_t cu[4] = {0, 12, 12, 41}; /* the second is empty */
    const size_t off[3] = {0, HQ * D, (HQ + HK) * D};
    float *x = malloc(T * R * sizeof *x), *one = malloc(T * R * sizeof *one);
    float *sep[3], *o = malloc(T * HQ * D * sizeof *o);
    float *dout = malloc(T * HQ * D * sizeof *dout);
    float *lse = malloc(HQ * T * sizeof *lse);
    attn_sdpa_desc d = shape(3, HQ, HK, 29, 29, D, D);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    const int64_t st[3] = {0, D, R};
    ref_rng r;
    int ok = 1;
    CU_ASSERT_FATAL(x && one && o && dout && lse);
    ref_rng_seed(&r, 61);
    ref_fill_f32(&r, x, T * R, -1.0, 1.0);
    ref_fill_f32(&r, dout, T * HQ * D, -1.0, 1.0);
    d.cu_seqlens_q = d.cu_seqlens_kv = cu;
    d.mask.causal = 1;
    memcpy(d.q_strides, st, sizeof st);
    memcpy(d.k_strides, st, sizeof st);
    memcpy(d.v_strides, st, sizeof st);
    ok &= attn_sdpa(ctx, &d, x + off[0], x + off[1], x + off[2], o, lse) ==
          ATTN_OK;
    g.q = x + off[0], g.k = x + off[1], g.v = x + off[2];
    g.o = o, g.lse = lse, g.d_o = dout;
    for (size_t i = 0; i < (size_t)T * R; i++)
        one[i] = 1234.5f;
    g.dq = one + off[0], g.dk = one + off[1], g.dv = one + off[2];
    ok &= attn_sdpa_backward(ctx, &d, &g) == ATTN_OK;
    for (int t = 0; t < 3; t++) {
        sep[t] = malloc(T * R * sizeof(float));
        CU_ASSERT_FATAL(sep[t] != NULL);
        for (size_t i = 0; i < (size_t)T * R; i++)
            sep[t][i] = 1234.5f;
    }
    g.dq = sep[0] + off[0], g.dk = sep[1] + off[1], g.dv = sep[2] + off[2];
    ok &= attn_sdpa_backward(ctx, &d, &g) == ATTN_OK;
    /* each element of the block is its gradient's, and the same */
    for (size_t i = 0; ok && i < (size_t)T * R; i++) {
        const size_t c = i % R;
        const int t = c < off[1] ? 0 : c < off[2] ? 1 : 2;
        ok &= memcmp(&one[i], &sep[t][i], sizeof one[i]) == 0;
    }
    if (!ok)
        printf("\n%s: %s\n", what, attn_context_last_error(ctx));
    else
        harness_taken();
    for (int t = 0; t < 3; t++)
        free(sep[t]);
    free(x), free(one), free(o), free(dout), free(lse);
    return ok;
}

static void test_fused_qkv(void)
{
    CU_ASSERT(check_fused_packed(ctx3, "fused QKV, packed sequences"));
    CU_ASSERT(check_fused(ctx3, 2, 4, 2, 51, "fused QKV, GQA"));
    CU_ASSERT(check_fused(ctx1, 3, 2, 1, 52, "fused QKV, MQA"));
    CU_ASSERT(check_fused(ctx3, 1, 2, 2, 53, "fused QKV, one batch item"));
}

static void test_masks(void)
{
    /* key tiles of 128: the causal diagonal and the window cross them */
    attn_sdpa_desc d = shape(2, 4, 2, 40, 600, 8, 8);
    const int32_t kv_len[2] = {0, 371};
    d.mask.causal = 1;
    CU_ASSERT(check_case(ctx3, &d, 10, "causal, bottom-right"));
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT(check_case(ctx3, &d, 11, "causal, top-left"));
    d.mask.window = 300;
    CU_ASSERT(check_case(ctx3, &d, 12, "causal, top-left, window"));
    d.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT;
    CU_ASSERT(check_case(ctx3, &d, 13, "causal, window"));
    d.mask.kv_len = kv_len;
    CU_ASSERT(check_case(ctx3, &d, 14, "causal, window, kv_len"));
    /* the diagonal moved by causal_offset: a block of a longer sequence
     * whose keys start 300 positions before its rows, then bottom-right
     * moved back */
    d.mask.kv_len = NULL;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.causal_offset = 300;
    d.mask.window = 200;
    CU_ASSERT(check_case(ctx3, &d, 20, "causal_offset 300, top-left, window"));
    d.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT;
    d.causal_offset = -400;
    d.mask.window = 0;
    CU_ASSERT(check_case(ctx3, &d, 21, "causal_offset -400, bottom-right"));
    d.causal_offset = 0;
    /* more queries than keys: the first rows see nothing (bottom-right) */
    d = shape(1, 2, 1, 80, 20, 8, 4);
    d.mask.causal = 1;
    CU_ASSERT(check_case(ctx3, &d, 15, "seq_q > seq_kv, causal"));
    d.mask.causal = 0;
    d.mask.window = 5;
    CU_ASSERT(check_case(ctx1, &d, 16, "window alone"));
    /* left padding: keys before kv_start get no gradient, rows before
     * q_start none; top-left measures the diagonal from the starts */
    {
        const int32_t qs[2] = {0, 7}, ks[2] = {5, 300};
        d = shape(2, 4, 2, 40, 600, 8, 8);
        d.q_start = qs;
        d.kv_start = ks;
        d.mask.causal = 1;
        CU_ASSERT(check_case(ctx3, &d, 17, "left padding, bottom-right"));
        d.causal_align = ATTN_CAUSAL_TOP_LEFT;
        d.mask.window = 9;
        CU_ASSERT(check_case(ctx3, &d, 18, "left padding, top-left, window"));
        d.mask.causal = 0;
        d.mask.window = 0;
        CU_ASSERT(check_case(ctx1, &d, 19, "left padding alone"));
    }
}

static void test_biases_and_keep(void)
{
    attn_sdpa_desc d = shape(2, 4, 2, 12, 70, 8, 6);
    size_t n = 2 * 4 * 12 * 70;
    float *bias = malloc(n * sizeof *bias);
    uint8_t *keep = malloc(n);
    ref_rng r;
    ref_rng_seed(&r, 5);
    ref_fill_f32(&r, bias, n, -2.0, 2.0);
    for (size_t i = 0; i < n; i += 7)
        bias[i] = -INFINITY;
    for (size_t i = 0; i < n; i++)
        keep[i] = (uint8_t)(ref_rng_int(&r, 0, 3) != 0);
    d.mask.bias = bias;
    static const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                           ATTN_BIAS_FULL, ATTN_BIAS_KEY,
                                           ATTN_BIAS_BROADCAST};
    for (int t = 0; t < 5; t++) {
        char what[64];
        d.mask.bias_kind = kinds[t];
        d.bias_shape[0] = 2;
        d.bias_shape[1] = 1;
        d.bias_shape[2] = 12;
        snprintf(what, sizeof what, "bias kind %d", (int)kinds[t]);
        CU_ASSERT(check_case(ctx3, &d, 20 + (uint64_t)t, what));
    }
    d.keep = keep;
    d.keep_shape[0] = 1;
    d.keep_shape[1] = 4;
    d.keep_shape[2] = 12;
    CU_ASSERT(check_case(ctx3, &d, 30, "broadcast bias and keep"));
    d.mask.bias_kind = ATTN_BIAS_NONE;
    d.mask.bias = NULL;
    d.mask.causal = 1;
    CU_ASSERT(check_case(ctx1, &d, 31, "keep and causal"));
    free(bias);
    free(keep);
}

static void test_f16(void)
{
    attn_sdpa_desc d = shape(1, 4, 2, 33, 100, 16, 8);
    const int32_t kv_len[1] = {77};
    d.dtype = ATTN_F16;
    CU_ASSERT(check_case(ctx3, &d, 40, "F16"));
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.mask.kv_len = kv_len;
    CU_ASSERT(check_case(ctx1, &d, 41, "F16, top-left causal, kv_len"));
}

static void test_bf16(void)
{
    attn_sdpa_desc d = shape(1, 4, 2, 33, 100, 16, 8);
    const int32_t kv_len[1] = {77};
    d.dtype = ATTN_BF16;
    CU_ASSERT(check_case(ctx3, &d, 42, "BF16"));
    d.mask.causal = 1;
    d.mask.kv_len = kv_len;
    CU_ASSERT(check_case(ctx1, &d, 43, "BF16, causal, kv_len"));
    /* a head size built at compile time, GQA, a window, top-left */
    d = shape(2, 4, 2, 40, 70, 64, 64);
    d.dtype = ATTN_BF16;
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.mask.window = 9;
    CU_ASSERT(check_case(ctx3, &d, 44, "BF16, d 64, GQA, causal window"));
}

/* Hidden keys hold NaN and infinity (behind kv_len): their
 * dk and dv are exactly 0 and nothing else turns NaN; a row with no
 * visible key (q NaN too) gets dq exactly 0. */
static void test_non_finite(void)
{
    attn_sdpa_desc d = shape(1, 1, 1, 4, 6, 2, 2);
    const int32_t kv_len[1] = {4};
    float q[8], k[12], v[12], o[8], lse[4], dout[8], dq[8], dk[12], dv[12];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    ref_rng r;
    ref_rng_seed(&r, 9);
    ref_fill_f32(&r, q, 8, -1, 1);
    ref_fill_f32(&r, k, 12, -1, 1);
    ref_fill_f32(&r, v, 12, -1, 1);
    ref_fill_f32(&r, dout, 8, -1, 1);
    d.mask.kv_len = kv_len;
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT; /* diag 2: row 0 sees 0..2 */
    for (int c = 0; c < 2; c++) {
        k[4 * 2 + c] = k[5 * 2 + c] = NAN; /* behind kv_len */
        v[4 * 2 + c] = v[5 * 2 + c] = INFINITY;
    }
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    for (int c = 0; c < 2; c++) {
        CU_ASSERT(dk[8 + c] == 0.0f && dk[10 + c] == 0.0f);
        CU_ASSERT(dv[8 + c] == 0.0f && dv[10 + c] == 0.0f);
        for (int j = 0; j < 4; j++)
            CU_ASSERT(isfinite(dk[2 * j + c]) && isfinite(dv[2 * j + c]));
        for (int i = 0; i < 4; i++)
            CU_ASSERT(isfinite(dq[2 * i + c]));
    }
    /* NaN in row 0's dO: keys 3 .. 5, which row 0 does not see, keep
     * finite dk and dv; NaN in key 3 (seen by rows 1 .. 3 only): row 0's
     * dq stays finite */
    dout[0] = NAN;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    for (int i = 6; i < 12; i++)
        CU_ASSERT(isfinite(dk[i]) && isfinite(dv[i]));
    dout[0] = 0.5f;
    k[3 * 2] = NAN;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    CU_ASSERT(isfinite(dq[0]) && isfinite(dq[1]));
    CU_ASSERT(isnan(dq[2])); /* row 1 sees the NaN key */
    /* a row with no visible key: top-left causal with a kv_len of 0 */
    const int32_t none[1] = {0};
    d.mask.kv_len = none;
    q[0] = NAN;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    for (int i = 0; i < 8; i++)
        CU_ASSERT(dq[i] == 0.0f);
    for (int i = 0; i < 12; i++)
        CU_ASSERT(dk[i] == 0.0f && dv[i] == 0.0f);
}

/* A NaN in row 0 of dO within a whole block of 32 query rows read in
 * place (head sizes of 16): under the top-left causal mask only key 0
 * sees row 0, so every other key's dk and dv stays finite. */
static void test_non_finite_block(void)
{
    enum { N = 64, D = 16 };
    attn_sdpa_desc d = shape(1, 1, 1, N, N, D, D);
    float *q = malloc(N * D * sizeof(float)),
          *k = malloc(N * D * sizeof(float)),
          *v = malloc(N * D * sizeof(float)),
          *o = malloc(N * D * sizeof(float)),
          *dout = malloc(N * D * sizeof(float)),
          *dq = malloc(N * D * sizeof(float)),
          *dk = malloc(N * D * sizeof(float)),
          *dv = malloc(N * D * sizeof(float)), lse[N];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    ref_rng r;
    CU_ASSERT_FATAL(q && k && v && o && dout && dq && dk && dv);
    ref_rng_seed(&r, 10);
    ref_fill_f32(&r, q, N * D, -1, 1);
    ref_fill_f32(&r, k, N * D, -1, 1);
    ref_fill_f32(&r, v, N * D, -1, 1);
    ref_fill_f32(&r, dout, N * D, -1, 1);
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
    dout[0] = NAN;
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    CU_ASSERT(isnan(dv[0]));
    for (int i = D; i < N * D; i++)
        CU_ASSERT(isfinite(dk[i]) && isfinite(dv[i]));
    for (int i = D; i < N * D; i++)
        CU_ASSERT(isfinite(dq[i]));
    free(q), free(k), free(v), free(o), free(dout), free(dq), free(dk);
    free(dv);
}

static int untouched(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != 1234.5f)
            return 0;
    return 1;
}

static void test_bad_arguments(void)
{
    attn_sdpa_desc d = shape(1, 2, 1, 3, 4, 2, 2);
    float q[12] = {0}, k[8] = {0}, v[8] = {0}, o[12] = {0}, lse[6] = {0};
    float dout[12] = {0}, dq[12], dk[8], dv[8];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT, bad;
    for (int i = 0; i < 12; i++)
        dq[i] = 1234.5f;
    for (int i = 0; i < 8; i++)
        dk[i] = dv[i] = 1234.5f;
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    CU_ASSERT_EQUAL(attn_sdpa_backward(NULL, &d, &g),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, NULL, &g),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx1), "attn_sdpa_grad") != NULL);
    const void **ptrs[9] = {&bad.q,
                            &bad.k,
                            &bad.v,
                            &bad.o,
                            (const void **)&bad.lse,
                            &bad.d_o,
                            (const void **)&bad.dq,
                            (const void **)&bad.dk,
                            (const void **)&bad.dv};
    for (int t = 0; t < 9; t++) {
        bad = g;
        *ptrs[t] = NULL;
        CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT(strstr(attn_context_last_error(ctx1), "is NULL") != NULL);
    }
    bad = g;
    bad.dq = q; /* over an input */
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx1), "dq overlaps") != NULL);
    bad = g;
    bad.dv = dk + 1; /* over another output */
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.struct_size = 3; /* no layout has it */
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    attn_sdpa_desc e = d;
    e.heads_kv = 3;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &e, &g),
                    ATTN_ERR_INVALID_ARGUMENT);
    e = d;
    e.mask.causal = 2;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &e, &g),
                    ATTN_ERR_INVALID_ARGUMENT);
    /* dbias without a bias, d_additive_w without the additive score */
    float dbias[12], dw[4];
    bad = g;
    bad.dbias = dbias;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx1), "no bias") != NULL);
    bad = g;
    bad.d_additive_w = dw;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx1), "not additive") != NULL);
    /* dbias over the bias it is the gradient of */
    e = d;
    e.mask.bias = dbias;
    e.mask.bias_kind = ATTN_BIAS_SHARED;
    bad = g;
    bad.dbias = dbias + 2;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &e, &bad),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx1), "dbias overlaps") != NULL);
    CU_ASSERT(untouched(dq, 12) && untouched(dk, 8) && untouched(dv, 8));
    /* and a good call still works */
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    CU_ASSERT(!untouched(dq, 12));
}

int main(void)
{
    static const harness_test tests[] = {
        {"finite differences of the reference", test_finite_differences},
        {"plain, GQA, MQA", test_plain_and_gqa},
        {"causal, window, kv_len", test_masks},
        {"bias kinds and keep", test_biases_and_keep},
        {"F16", test_f16},
        {"BF16", test_bf16},
        {"fused QKV gradients", test_fused_qkv},
        {"non-finite rules", test_non_finite},
        {"non-finite rules, whole blocks", test_non_finite_block},
        {"bad arguments", test_bad_arguments},
        {"strided and packed tensors", test_strided_and_packed},
        {NULL, NULL}};
    return harness_main("backward", init, clean, tests);
}
