/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_backward's optional gradients on the native backend: dbias in
 * the bias's own shape (every bias kind, BROADCAST shapes, KEY, keep,
 * GQA, causal with both alignments, F16) and the additive score's dq, dk,
 * dv and d additive_w, against the double reference (ref_bwd.c), which
 * central finite differences of the double forward check in turn.  An
 * entry of dbias that no visible score reaches is exactly 0; dbias is the
 * same on every call; a caller of the first attn_sdpa_grad layout still
 * works.
 *
 * Tolerances as in test_backward.c: per element e of a gradient whose
 * reference has the largest magnitude M, |got - want| <= TOL * (M + 1) +
 * TOL * |want|, TOL 1e-4 (F32) and 8e-3 (F16; dbias, a float output, is
 * computed from the same half-rounded O and inputs); an entry of dbias
 * that no visible score reads must be exactly 0.  The additive score's
 * sums of tanh take 3e-4 (F32): tanhf is within a few ulps, and each
 * gradient sums dh of them per pair.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref.h"

#define TOL_F32 1e-4
#define TOL_ADD 3e-4
#define TOL_F16 8e-3

enum { WANT_DBIAS = 1, WANT_DW = 2 };

static attn_context *ctx1, *ctx3; /* one and three worker threads */

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

/* Elements of the bias of d (its kind's own shape). */
static size_t bias_elems(const attn_sdpa_desc *d)
{
    return ref_bias_index(d, d->batch - 1, d->heads_q - 1, d->seq_q - 1,
                          d->seq_kv - 1) +
           1;
}

static double elem(int f16, const void *x, size_t i)
{
    return f16 ? ref_f16_to_f32(((const uint16_t *)x)[i])
               : ((const float *)x)[i];
}

/* Every element of got (half when f16, else float) within tol of want;
 * where reached (NULL: everywhere) is 0, no visible score reaches the
 * entry and it must be exactly 0. */
static int close_to(const char *what, const char *name, int f16,
                    const void *got, const double *want, size_t n, double tol,
                    const unsigned char *reached)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double g = elem(f16, got, i);
        int ok =
            reached && !reached[i]
                ? g == 0.0
                : fabs(g - want[i]) <= tol * (m + 1.0) + tol * fabs(want[i]);
        if (!ok) {
            printf("\n%s: %s[%zu] is %.9g, want %.9g (max %.3g)\n", what, name,
                   i, g, want[i], m);
            return 0;
        }
    }
    return 1;
}

/* reached[e] = 1 for the bias entries e that a visible score of d reads
 * (the oracle's masks and scores, q and k in double). */
static void reached_entries(const attn_sdpa_desc *d, const double *q,
                            const double *k, unsigned char *reached, size_t nb)
{
    memset(reached, 0, nb);
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < d->seq_q; i++)
                for (int j = 0; j < d->seq_kv; j++) {
                    double s;
                    if (ref_score(d, q, k, b, h, i, j, &s) && s != -INFINITY)
                        reached[ref_bias_index(d, b, h, i, j)] = 1;
                }
}

static void *fill(ref_rng *r, int f16, size_t n)
{
    void *x = malloc(n * (f16 ? 2 : 4) + 1);
    if (x && f16)
        ref_fill_f16(r, x, n, -1.0, 1.0);
    else if (x)
        ref_fill_f32(r, x, n, -1.0, 1.0);
    return x;
}

static double *to_f64(int f16, const void *x, size_t n)
{
    double *y = malloc(n * sizeof *y + 1);
    for (size_t i = 0; y && i < n; i++)
        y[i] = elem(f16, x, i);
    return y;
}

/* The forward and the backward of d on ctx with random inputs (and, with
 * WANT_DBIAS and WANT_DW, dbias and d additive_w, prefilled with NaN so
 * that an entry left unwritten shows), against the double reference.
 * With twice, a second backward must give the same dbias bit for bit. */
static int check(attn_context *ctx, const attn_sdpa_desc *d, int want,
                 uint64_t seed, const char *what, int twice)
{
    const int f16 = d->dtype == ATTN_F16;
    const size_t rows = (size_t)d->batch * (size_t)d->heads_q * d->seq_q,
                 kvr = (size_t)d->batch * (size_t)d->heads_kv * d->seq_kv;
    const size_t n[4] = {rows * d->head_dim, kvr * d->head_dim,
                         kvr * d->head_dim_v, rows * d->head_dim_v};
    const size_t nb = (want & WANT_DBIAS) ? bias_elems(d) : 0,
                 nw = (size_t)d->heads_q * (size_t)d->head_dim;
    const double tol = f16                               ? TOL_F16
                       : d->score == ATTN_SCORE_ADDITIVE ? TOL_ADD
                                                         : TOL_F32;
    static const char *const name[3] = {"dq", "dk", "dv"};
    void *x[4], *gr[3], *o;
    double *x8[4], *r8[3], *rb, *rw;
    float *lse, *db, *db2, *dw;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    ref_rng r;
    int ok = 1;

    ref_rng_seed(&r, seed);
    for (int t = 0; t < 4; t++) {
        x[t] = fill(&r, f16, n[t]);
        x8[t] = to_f64(f16, x[t], n[t]);
    }
    for (int t = 0; t < 3; t++) {
        gr[t] = malloc(n[t] * (f16 ? 2 : 4) + 1);
        r8[t] = malloc(n[t] * sizeof(double) + 1);
    }
    o = malloc(n[3] * (f16 ? 2 : 4) + 1);
    lse = malloc(rows * sizeof *lse);
    db = malloc(nb * sizeof *db + 4);
    db2 = malloc(nb * sizeof *db2 + 4);
    dw = malloc(nw * sizeof *dw);
    rb = malloc(nb * sizeof *rb + 8);
    rw = malloc(nw * sizeof *rw);
    if (!o || !lse || !db || !db2 || !dw || !rb || !rw || !x8[3] || !r8[2]) {
        ok = 0;
        goto out;
    }
    for (size_t e = 0; e < nb; e++)
        db[e] = NAN;
    for (size_t e = 0; e < nw; e++)
        dw[e] = NAN;
    g.q = x[0], g.k = x[1], g.v = x[2], g.d_o = x[3], g.o = o, g.lse = lse;
    g.dq = gr[0], g.dk = gr[1], g.dv = gr[2];
    g.dbias = (want & WANT_DBIAS) ? db : NULL;
    g.d_additive_w = (want & WANT_DW) ? dw : NULL;
    {
        attn_status st = attn_sdpa(ctx, d, x[0], x[1], x[2], o, lse);
        if (st == ATTN_OK)
            st = attn_sdpa_backward(ctx, d, &g);
        if (st != ATTN_OK && harness_declined(ctx, NULL, st, what)) {
            /* a forced backward variant declining: nothing written */
            for (size_t e = 0; e < nb; e++)
                ok &= isnan(db[e]);
            for (size_t e = 0; g.d_additive_w && e < nw; e++)
                ok &= isnan(dw[e]);
            goto out;
        }
        if (st != ATTN_OK) {
            printf("\n%s: %s\n", what, attn_context_last_error(ctx));
            ok = 0;
            goto out;
        }
        harness_taken();
    }
    if (ref_sdpa_backward_all_f64(d, x8[0], x8[1], x8[2], x8[3], r8[0], r8[1],
                                  r8[2], g.dbias ? rb : NULL,
                                  g.d_additive_w ? rw : NULL)) {
        ok = 0;
        goto out;
    }
    for (int t = 0; t < 3 && ok; t++)
        ok = close_to(what, name[t], f16, gr[t], r8[t], n[t], tol, NULL);
    if (ok && g.dbias) {
        unsigned char *reached = malloc(nb + 1);
        ok = reached != NULL;
        if (ok) {
            reached_entries(d, x8[0], x8[1], reached, nb);
            ok = close_to(what, "dbias", 0, db, rb, nb, tol, reached);
        }
        free(reached);
    }
    if (ok && g.d_additive_w)
        ok = close_to(what, "d_additive_w", 0, dw, rw, nw, tol, NULL);
    if (ok && twice && g.dbias) {
        g.dbias = db2;
        ok = attn_sdpa_backward(ctx, d, &g) == ATTN_OK &&
             memcmp(db, db2, nb * sizeof *db) == 0;
        if (!ok)
            printf("\n%s: a second call gave another dbias\n", what);
    }
out:
    for (int t = 0; t < 4; t++)
        free(x[t]), free(x8[t]);
    for (int t = 0; t < 3; t++)
        free(gr[t]), free(r8[t]);
    free(o), free(lse), free(db), free(db2), free(dw), free(rb), free(rw);
    return ok;
}

/* A bias of n random entries in [-2, 2), with -INFINITY at every 9th. */
static float *random_bias(size_t n, uint64_t seed)
{
    float *b = malloc(n * sizeof *b + 4);
    ref_rng r;
    ref_rng_seed(&r, seed);
    ref_fill_f32(&r, b, n, -2.0, 2.0);
    for (size_t i = 4; i < n; i += 9)
        b[i] = -INFINITY;
    return b;
}

static void test_dbias_kinds(void)
{
    static const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                           ATTN_BIAS_FULL, ATTN_BIAS_KEY};
    /* several key tiles of 128, GQA */
    attn_sdpa_desc d = shape(2, 4, 2, 21, 300, 8, 6);
    float *bias = random_bias(2 * 4 * 21 * 300, 50);
    d.mask.bias = bias;
    for (int t = 0; t < 4; t++) {
        char what[64];
        d.mask.bias_kind = kinds[t];
        snprintf(what, sizeof what, "dbias, kind %d", (int)kinds[t]);
        CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 50 + (uint64_t)t, what, 1));
        CU_ASSERT(check(ctx1, &d, WANT_DBIAS, 60 + (uint64_t)t, what, 0));
    }
    /* BROADCAST over each subset of (batch, heads, rows) */
    d.mask.bias_kind = ATTN_BIAS_BROADCAST;
    for (int m = 0; m < 8; m++) {
        char what[64];
        d.bias_shape[0] = m & 1 ? 2 : 1;
        d.bias_shape[1] = m & 2 ? 4 : 1;
        d.bias_shape[2] = m & 4 ? 21 : 1;
        snprintf(what, sizeof what, "dbias, broadcast [%d, %d, %d]",
                 d.bias_shape[0], d.bias_shape[1], d.bias_shape[2]);
        CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 70 + (uint64_t)m, what, 1));
    }
    /* MQA and a batch of 3: five-way slices of the shared sums */
    d = shape(3, 6, 1, 17, 40, 5, 4);
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_SHARED;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 80, "dbias, MQA, shared", 1));
    d.heads_kv = 3;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 81, "dbias, GQA, key", 1));
    free(bias);
}

static void test_dbias_masks(void)
{
    attn_sdpa_desc d = shape(2, 4, 2, 40, 600, 8, 8);
    const int32_t kv_len[2] = {0, 371}, qs[2] = {0, 7}, ks[2] = {5, 300};
    const size_t n = 2 * 4 * 40 * 600;
    float *bias = random_bias(n, 90);
    uint8_t *keep = malloc(n);
    ref_rng r;
    ref_rng_seed(&r, 91);
    for (size_t i = 0; i < n; i++)
        keep[i] = (uint8_t)(ref_rng_int(&r, 0, 3) != 0);
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_FULL;
    d.mask.causal = 1;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 92, "dbias, causal bottom-right", 0));
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 93, "dbias, causal top-left", 0));
    d.mask.window = 100;
    d.mask.kv_len = kv_len;
    d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 94, "dbias, window, kv_len", 1));
    /* keep hides entries: their dbias is 0 whatever the bias holds */
    d.mask.window = 0;
    d.keep = keep;
    d.keep_shape[0] = 2;
    d.keep_shape[1] = 1;
    d.keep_shape[2] = 40;
    d.mask.bias_kind = ATTN_BIAS_BROADCAST;
    d.bias_shape[0] = 1;
    d.bias_shape[1] = 4;
    d.bias_shape[2] = 40;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 95, "dbias, keep, causal", 1));
    d.q_start = qs;
    d.kv_start = ks;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 96, "dbias, left padding, key", 1));
    d = shape(1, 4, 2, 33, 100, 16, 8);
    d.dtype = ATTN_F16;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_FULL;
    CU_ASSERT(check(ctx3, &d, WANT_DBIAS, 97, "dbias, F16", 0));
    d.mask.bias_kind = ATTN_BIAS_SHARED;
    d.mask.causal = 1;
    CU_ASSERT(check(ctx1, &d, WANT_DBIAS, 98, "dbias, F16, causal", 0));
    free(bias);
    free(keep);
}

static void test_additive(void)
{
    attn_sdpa_desc d = shape(2, 4, 2, 19, 300, 8, 6);
    float w[4 * 16], *bias = random_bias(2 * 4 * 19 * 300, 100);
    const int32_t kv_len[2] = {300, 201};
    ref_rng r;
    ref_rng_seed(&r, 101);
    ref_fill_f32(&r, w, 4 * 16, -1.0, 1.0);
    d.score = ATTN_SCORE_ADDITIVE;
    d.additive_w = w;
    CU_ASSERT(check(ctx3, &d, 0, 102, "additive", 0));
    CU_ASSERT(check(ctx3, &d, WANT_DW, 103, "additive, d_additive_w", 0));
    d.mask.causal = 1;
    d.mask.kv_len = kv_len;
    CU_ASSERT(check(ctx1, &d, WANT_DW, 104, "additive, causal, kv_len", 0));
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    CU_ASSERT(check(ctx3, &d, WANT_DW | WANT_DBIAS, 105,
                    "additive, top-left, key bias, dbias", 1));
    d = shape(1, 4, 1, 30, 70, 16, 8);
    d.score = ATTN_SCORE_ADDITIVE;
    d.additive_w = w;
    d.dtype = ATTN_F16;
    CU_ASSERT(check(ctx3, &d, WANT_DW, 106, "additive, F16, MQA", 0));
    free(bias);
}

/* L = sum(dO * O) of the double forward; central differences in q, k, v
 * (step 1e-5) and in the float bias and additive_w (step 2^-12, whose
 * entries are multiples of 2^-12 so that x +- h is exact) against the
 * reference's gradients. */
static double loss(const attn_sdpa_desc *d, double *const x[3],
                   const double *dout, double *o, size_t no)
{
    double l = 0.0;
    ref_sdpa_f64(d, x[0], x[1], x[2], o, NULL, NULL, NULL, NULL);
    for (size_t e = 0; e < no; e++)
        l += dout[e] * o[e];
    return l;
}

static void fd_case(attn_sdpa_desc *d, float *bias, size_t nb, float *w)
{
    const size_t rows = (size_t)d->batch * (size_t)d->heads_q * d->seq_q,
                 kvr = (size_t)d->batch * (size_t)d->heads_kv * d->seq_kv;
    const size_t n[3] = {rows * d->head_dim, kvr * d->head_dim,
                         kvr * d->head_dim_v},
                 no = rows * d->head_dim_v,
                 nw = w ? (size_t)d->heads_q * (size_t)d->head_dim : 0;
    double *x[3], *gr[3], *dout = malloc(no * 8), *o = malloc(no * 8);
    double *gb = malloc(nb * 8 + 8), *gw = malloc(nw * 8 + 8), worst = 0.0,
           worst_f = 0.0;
    ref_rng r;
    ref_rng_seed(&r, 110);
    for (int t = 0; t < 3; t++) {
        x[t] = malloc(n[t] * 8);
        gr[t] = malloc(n[t] * 8);
        for (size_t i = 0; i < n[t]; i++)
            x[t][i] = ref_rng_uniform(&r, -1.0, 1.0);
    }
    for (size_t i = 0; i < no; i++)
        dout[i] = ref_rng_uniform(&r, -1.0, 1.0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa_backward_all_f64(d, x[0], x[1], x[2], dout,
                                                    gr[0], gr[1], gr[2], gb,
                                                    w ? gw : NULL),
                          0);
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < n[t]; i++) {
            const double h = 1e-5, keep = x[t][i];
            double lp, lm;
            x[t][i] = keep + h;
            lp = loss(d, x, dout, o, no);
            x[t][i] = keep - h;
            lm = loss(d, x, dout, o, no);
            x[t][i] = keep;
            worst = fmax(worst, fabs((lp - lm) / (2 * h) - gr[t][i]));
        }
    for (int t = 0; t < 2; t++) {
        float *p = t ? w : bias;
        const double *want = t ? gw : gb;
        for (size_t i = 0; p && i < (t ? nw : nb); i++) {
            const float h = 0x1p-12f, keep = p[i];
            double lp, lm;
            if (!isfinite(keep))
                continue;
            p[i] = keep + h;
            lp = loss(d, x, dout, o, no);
            p[i] = keep - h;
            lm = loss(d, x, dout, o, no);
            p[i] = keep;
            worst_f = fmax(worst_f, fabs((lp - lm) / (2.0 * h) - want[i]));
        }
    }
    /* O(h^2) truncation: 1e-10 for 1e-5, about 1e-8 for 2^-12 */
    CU_ASSERT(worst < 1e-8);
    CU_ASSERT(worst_f < 1e-6);
    if (!(worst < 1e-8) || !(worst_f < 1e-6))
        printf("\nfinite differences: %.3g (q, k, v), %.3g (bias, w)\n", worst,
               worst_f);
    for (int t = 0; t < 3; t++)
        free(x[t]), free(gr[t]);
    free(dout), free(o), free(gb), free(gw);
}

/* Keys hidden by a -INFINITY bias entry or a -INFINITY score (attn.h,
 * rules 1 and 3) add nothing to any gradient, whatever their K and V and
 * whatever the row: two query rows against three keys, key 0 behind a
 * -inf KEY bias with K NaN and V inf (a finite row), then a NaN row (q
 * NaN) beside a finite one, then a row made NaN by a +inf score beside
 * a key it scores -inf; dot and additive scores. */
static void hidden_nonfinite(int additive)
{
    attn_sdpa_desc d = shape(1, 1, 1, 2, 3, 2, 2);
    float q[4] = {0.5f, 0.25f, -0.3f, 0.7f},
          k[6] = {0.3f, 0.1f, 0.2f, -0.4f, 0.6f, 0.1f},
          v[6] = {1, 2, 3, 4, 5, 6}, w[2] = {0.8f, -0.6f}, o[4], lse[2],
          dout[4] = {1, -1, 0.5f, 0.25f}, dq[4], dk[6], dv[6], db[3], dw[2],
          bias[3] = {-INFINITY, 0.1f, -0.2f};
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    const char *what = additive ? "additive" : "dot";
    if (additive) {
        d.score = ATTN_SCORE_ADDITIVE;
        d.additive_w = w;
        g.d_additive_w = dw;
    }
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv, g.dbias = db;
    for (int t = 0; t < 3; t++) {
        if (t == 0) { /* finite rows, garbage behind the -inf bias */
            k[0] = k[1] = NAN;
            v[0] = v[1] = INFINITY;
        } else if (t == 1) { /* row 0 NaN */
            q[0] = NAN;
        } else { /* row 0: +inf score at key 2, -inf at key 1 */
            if (additive)
                break; /* tanh keeps an infinite q finite */
            q[0] = INFINITY;
            q[1] = 0.0f;
            k[2] = -0.5f;
            k[4] = 0.5f;
        }
        CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
        CU_ASSERT_EQUAL_FATAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
        /* key 0: no gradient at all */
        HARNESS_EXPECT(dk[0] == 0.0f && dk[1] == 0.0f && dv[0] == 0.0f &&
                           dv[1] == 0.0f && db[0] == 0.0f,
                       what);
        if (t == 0) { /* nothing NaN anywhere */
            int fin = 1;
            for (int e = 0; e < 6; e++)
                fin &= isfinite(dk[e]) && isfinite(dv[e]);
            for (int e = 0; e < 4; e++)
                fin &= isfinite(dq[e]);
            fin &= isfinite(db[1]) && isfinite(db[2]);
            if (additive)
                fin &= isfinite(dw[0]) && isfinite(dw[1]);
            HARNESS_EXPECT(fin, what);
        } else {
            /* row 1 stays finite, and so does its dq */
            HARNESS_EXPECT(isfinite(dq[2]) && isfinite(dq[3]), what);
        }
        if (t == 2) /* key 1, -inf to row 0, gets row 1's finite share */
            HARNESS_EXPECT(isfinite(dk[2]) && isfinite(dk[3]) &&
                               isfinite(dv[2]) && isfinite(dv[3]) &&
                               isfinite(db[1]),
                           what);
    }
}

static void test_hidden_nonfinite(void)
{
    hidden_nonfinite(0);
    hidden_nonfinite(1);
}

static void test_finite_differences(void)
{
    attn_sdpa_desc d = shape(2, 4, 2, 5, 7, 4, 3);
    const int32_t kv_len[2] = {7, 5};
    float bias[2 * 4 * 5 * 7], w[4 * 4];
    ref_rng r;
    ref_rng_seed(&r, 120);
    for (size_t i = 0; i < sizeof bias / sizeof *bias; i++)
        bias[i] = (float)ref_rng_int(&r, -4096, 4096) * 0x1p-12f;
    for (size_t i = 0; i < 16; i++)
        w[i] = (float)ref_rng_int(&r, -4096, 4096) * 0x1p-12f;
    bias[3] = -INFINITY;
    d.mask.causal = 1;
    d.mask.kv_len = kv_len;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_BROADCAST; /* over the heads */
    d.bias_shape[0] = 2;
    d.bias_shape[1] = 1;
    d.bias_shape[2] = 5;
    d.scale = 0.6f;
    fd_case(&d, bias, 2 * 5 * 7, NULL);
    d.mask.bias_kind = ATTN_BIAS_FULL;
    fd_case(&d, bias, 2 * 4 * 5 * 7, NULL);
    d.score = ATTN_SCORE_ADDITIVE;
    d.additive_w = w;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    fd_case(&d, bias, 2 * 7, w);
}

/* A caller of the first attn_sdpa_grad layout: its struct_size stops
 * before dbias, whose bytes (garbage here) are not read. */
static void test_first_layout(void)
{
    attn_sdpa_desc d = shape(1, 2, 1, 3, 4, 2, 2);
    float q[12], k[8], v[8], o[12], lse[6], dout[12], dq[12], dk[8], dv[8];
    float bias[12], dq2[12];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    ref_rng r;
    ref_rng_seed(&r, 130);
    ref_fill_f32(&r, q, 12, -1, 1);
    ref_fill_f32(&r, k, 8, -1, 1);
    ref_fill_f32(&r, v, 8, -1, 1);
    ref_fill_f32(&r, dout, 12, -1, 1);
    ref_fill_f32(&r, bias, 12, -1, 1);
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_SHARED;
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(ctx1, &d, q, k, v, o, lse), ATTN_OK);
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    g.dq = dq2;
    g.struct_size = offsetof(attn_sdpa_grad, dbias);
    memset(&g.dbias, 0xa5, sizeof g.dbias);
    memset(&g.d_additive_w, 0x5a, sizeof g.d_additive_w);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
    CU_ASSERT(memcmp(dq, dq2, sizeof dq) == 0);
    g.struct_size = 0; /* 0 is the first layout too */
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx1, &d, &g), ATTN_OK);
}

int main(void)
{
    static const harness_test tests[] = {
        {"finite differences: dbias, additive", test_finite_differences},
        {"dbias: every bias kind and shape", test_dbias_kinds},
        {"dbias: masks, keep, F16", test_dbias_masks},
        {"additive score", test_additive},
        {"first attn_sdpa_grad layout", test_first_layout},
        {"keys hidden by a -inf bias or score hold NaN and inf",
         test_hidden_nonfinite},
        {NULL, NULL}};
    return harness_main("backward_grads", init, clean, tests);
}
