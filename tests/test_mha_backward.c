/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_mha_forward_train and attn_mha_backward: every gradient of the
 * multi-head layer (x_q, x_kv, the weights, the biases, a LEARNED table)
 * against central finite differences of the double reference layer
 * (ref_mha), with RoPE, learned and sinusoidal positions, biases, causal
 * and kv_len masks, GQA and cross-attention, from saved activations and
 * recomputed; the training forward's y against the reference; the saved
 * object's reuse; accumulation; the argument checks.  On an OpenCL
 * context (ATTN_TEST_DEVICE) the attention's forward and backward run on
 * the device, with fallback on: the additive score's backward, which no
 * device variant takes, runs natively (tests/test_backward.c checks the
 * device's backward with fallback off).
 *
 * The loss is L = sum(y * r) for a fixed random r (d_y = r).  A finite
 * difference moves one float input by +-h (h = 2^-10, the moved values
 * rounded to float and the difference taken between those), in double,
 * so its error is O(h^2) of the third derivative: about 1e-7 here.  The
 * library computes in float: |got - want| <= TOL (M + 1) + TOL |want|,
 * with M the largest |want| of the tensor and TOL 2e-4 (three float GEMMs
 * and the attention's backward, each a few ulps per term, over sums of
 * at most a few dozen terms).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ref.h"

#define TOL      2e-4
#define FD_H     (1.0 / 1024.0)
#define POS_ROWS 16

static attn_context *ctx;

static int init(void)
{
    attn_options o;
    harness_options(&o);
    o.threads = 3;
    o.allow_fallback = 1;
    return attn_context_create(&o, &ctx) ? -1 : 0;
}

static int clean(void)
{
    attn_context_destroy(ctx);
    return 0;
}

typedef struct layer_case {
    const char *name;
    int batch, seq_q, seq_kv, d_model, hq, hkv, hd;
    int cross, biases, causal, kv_len, pos_offset, use_saved;
    attn_posenc posenc;
    int additive; /* the ADDITIVE score (additive_w's gradient too) */
} layer_case;

/* The tensors of one case: the inputs the gradients are taken of. */
enum {
    T_XQ,
    T_XKV,
    T_WQ,
    T_WK,
    T_WV,
    T_WO,
    T_BQ,
    T_BK,
    T_BV,
    T_BO,
    T_POS,
    T_ADDW,
    N_T
};
static const char *const tname[N_T] = {
    "x_q", "x_kv", "wq", "wk", "wv",        "wo",
    "bq",  "bk",   "bv", "bo", "pos_table", "additive_w"};

typedef struct problem {
    attn_mha_desc m;
    attn_mask_desc mask;
    int32_t kv_len[4];
    float *t[N_T];
    size_t n[N_T];
    float *dy;
    size_t ny;
} problem;

static void problem_free(problem *p)
{
    for (int i = 0; i < N_T; i++)
        free(p->t[i]);
    free(p->dy);
}

static int problem_make(const layer_case *c, problem *p, uint64_t seed)
{
    ref_rng r;
    const size_t d = (size_t)c->d_model, dq = (size_t)c->hq * (size_t)c->hd,
                 dkv = (size_t)c->hkv * (size_t)c->hd;
    memset(p, 0, sizeof *p);
    ref_rng_seed(&r, seed);
    p->n[T_XQ] = (size_t)c->batch * (size_t)c->seq_q * d;
    p->n[T_XKV] = c->cross ? (size_t)c->batch * (size_t)c->seq_kv * d : 0;
    p->n[T_WQ] = dq * d;
    p->n[T_WK] = p->n[T_WV] = dkv * d;
    p->n[T_WO] = d * dq;
    p->n[T_BQ] = c->biases ? dq : 0;
    p->n[T_BK] = p->n[T_BV] = c->biases ? dkv : 0;
    p->n[T_BO] = c->biases ? d : 0;
    p->n[T_POS] = c->posenc == ATTN_POSENC_LEARNED ? POS_ROWS * d : 0;
    p->n[T_ADDW] = c->additive ? dq : 0;
    for (int i = 0; i < N_T; i++) {
        if (!p->n[i])
            continue;
        if (!(p->t[i] = malloc(p->n[i] * sizeof(float))))
            return -1;
        ref_fill_f32(&r, p->t[i], p->n[i], i <= T_XKV ? -1.0 : -0.6,
                     i <= T_XKV ? 1.0 : 0.6);
    }
    p->ny = p->n[T_XQ];
    if (!(p->dy = malloc(p->ny * sizeof(float))))
        return -1;
    ref_fill_f32(&r, p->dy, p->ny, -1.0, 1.0);
    attn_mha_desc_init(&p->m);
    p->m.d_model = c->d_model;
    p->m.heads_q = c->hq;
    p->m.heads_kv = c->hkv;
    p->m.head_dim = c->hd;
    p->m.wq = p->t[T_WQ];
    p->m.wk = p->t[T_WK];
    p->m.wv = p->t[T_WV];
    p->m.wo = p->t[T_WO];
    p->m.bq = p->t[T_BQ];
    p->m.bk = p->t[T_BK];
    p->m.bv = p->t[T_BV];
    p->m.bo = p->t[T_BO];
    p->m.posenc = c->posenc;
    p->m.pos_table = p->t[T_POS];
    p->m.pos_table_len = p->t[T_POS] ? POS_ROWS : 0;
    p->m.pos_offset = c->pos_offset;
    if (c->additive) {
        p->m.score = ATTN_SCORE_ADDITIVE;
        p->m.additive_w = p->t[T_ADDW];
    }
    attn_mask_desc_init(&p->mask);
    p->mask.causal = c->causal;
    if (c->kv_len) {
        for (int b = 0; b < c->batch; b++)
            p->kv_len[b] = c->seq_kv - b % 3;
        p->mask.kv_len = p->kv_len;
    }
    return 0;
}

/* L = sum(y * dy) by the double reference. */
static double loss(const layer_case *c, const problem *p)
{
    double *y = malloc(p->ny * sizeof *y), l = 0.0;
    if (!y || ref_mha(&p->m, c->batch, c->seq_q, c->seq_kv, p->t[T_XQ],
                      p->t[T_XKV], &p->mask, y)) {
        free(y);
        return NAN;
    }
    for (size_t i = 0; i < p->ny; i++)
        l += y[i] * p->dy[i];
    free(y);
    return l;
}

/* dL/dt for every element of tensor t, by central differences. */
static double *finite_diff(const layer_case *c, problem *p, int t)
{
    double *g = malloc(p->n[t] * sizeof *g);
    float *x = p->t[t];
    for (size_t e = 0; g && e < p->n[t]; e++) {
        const float v = x[e], up = (float)(v + FD_H), dn = (float)(v - FD_H);
        double lp, lm;
        x[e] = up;
        lp = loss(c, p);
        x[e] = dn;
        lm = loss(c, p);
        x[e] = v;
        g[e] = (lp - lm) / ((double)up - (double)dn);
    }
    return g;
}

static void set_bias(attn_mha_desc *m, int t, const float *b)
{
    if (t == T_BQ)
        m->bq = b;
    else if (t == T_BK)
        m->bk = b;
    else if (t == T_BV)
        m->bv = b;
    else
        m->bo = b;
}

static int close_to(const char *what, const float *got, const double *want,
                    size_t n)
{
    double m = 0.0, worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]),
               tol = TOL * (m + 1.0) + TOL * fabs(want[i]);
        if (!(err <= tol)) {
            printf("\n  %s[%zu]: got %.8g, want %.8g\n", what, i,
                   (double)got[i], want[i]);
            return 0;
        }
        if (err / tol > worst) {
            worst = err / tol;
            at = i;
        }
    }
    (void)at;
    return 1;
}

static void run_case(const layer_case *c)
{
    problem p;
    attn_mha_saved *saved = NULL;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT;
    float *out[N_T] = {NULL}, *y = NULL;
    double *ref_y = NULL;
    char what[160];
    if (problem_make(c, &p,
                     1000u + (uint64_t)c->seq_q * 7u + (uint64_t)c->hq)) {
        CU_FAIL("out of memory");
        problem_free(&p);
        return;
    }
    /* Every gradient asked for, biases too when the layer has none. */
    for (int i = 0; i < N_T; i++) {
        size_t n = p.n[i];
        if (!n && i >= T_BQ && i <= T_BO)
            n = i == T_BO   ? (size_t)c->d_model
                : i == T_BQ ? (size_t)(c->hq * c->hd)
                            : (size_t)(c->hkv * c->hd);
        if (n)
            out[i] = calloc(n, sizeof(float));
    }
    g.d_y = p.dy;
    g.d_x_q = out[T_XQ];
    g.d_x_kv = out[T_XKV];
    g.d_wq = out[T_WQ];
    g.d_wk = out[T_WK];
    g.d_wv = out[T_WV];
    g.d_wo = out[T_WO];
    g.d_bq = out[T_BQ];
    g.d_bk = out[T_BK];
    g.d_bv = out[T_BV];
    g.d_bo = out[T_BO];
    g.d_pos_table = out[T_POS];
    g.d_additive_w = out[T_ADDW];

    y = malloc(p.ny * sizeof *y);
    ref_y = malloc(p.ny * sizeof *ref_y);
    const float *xkv = c->cross ? p.t[T_XKV] : NULL;
    if (c->use_saved) {
        HARNESS_EXPECT(attn_mha_forward_train(ctx, &p.m, c->batch, c->seq_q,
                                              c->seq_kv, p.t[T_XQ], xkv,
                                              &p.mask, y, &saved) == ATTN_OK,
                       c->name);
        HARNESS_EXPECT(ref_mha(&p.m, c->batch, c->seq_q, c->seq_kv, p.t[T_XQ],
                               xkv, &p.mask, ref_y) == 0,
                       c->name);
        snprintf(what, sizeof what, "%s: y", c->name);
        HARNESS_EXPECT(
            ref_check_f32(what, y, ref_y, p.ny, REF_MHA_ABS, REF_MHA_REL),
            c->name);
    }
    attn_status st = attn_mha_backward(ctx, &p.m, c->batch, c->seq_q, c->seq_kv,
                                       p.t[T_XQ], xkv, &p.mask, saved, &g);
    HARNESS_EXPECT(st == ATTN_OK, c->name);
    if (st != ATTN_OK)
        printf("\n  %s: %s\n", c->name, attn_context_last_error(ctx));
    for (int i = 0; st == ATTN_OK && i < N_T; i++) {
        double *want;
        size_t n = p.n[i];
        if (!out[i])
            continue;
        if (!n) {
            /* A bias the layer does not have: the gradient of a zero bias,
             * which finite differences see on a zero array. */
            n = i == T_BO   ? (size_t)c->d_model
                : i == T_BQ ? (size_t)(c->hq * c->hd)
                            : (size_t)(c->hkv * c->hd);
            p.t[i] = calloc(n, sizeof(float));
            p.n[i] = n;
            set_bias(&p.m, i, p.t[i]);
            want = finite_diff(c, &p, i);
            set_bias(&p.m, i, NULL);
        } else {
            want = finite_diff(c, &p, i);
        }
        snprintf(what, sizeof what, "%s: d_%s", c->name, tname[i]);
        HARNESS_EXPECT(want && close_to(what, out[i], want, n), what);
        free(want);
    }
    attn_mha_saved_destroy(saved);
    for (int i = 0; i < N_T; i++)
        free(out[i]);
    free(y);
    free(ref_y);
    problem_free(&p);
}

static const layer_case cases[] = {
    /* name, batch, seq_q, seq_kv, d_model, hq, hkv, hd, cross, biases,
     * causal, kv_len, pos_offset, use_saved, posenc */
    {"self, RoPE, biases, causal, GQA, saved", 2, 5, 5, 8, 4, 2, 4, 0, 1, 1, 0,
     3, 1, ATTN_POSENC_ROPE, 0},
    {"self, RoPE, odd head_dim, MQA, recomputed", 2, 4, 4, 6, 2, 1, 3, 0, 1, 0,
     0, 0, 0, ATTN_POSENC_ROPE, 0},
    {"self, learned, biases, causal, saved", 2, 5, 5, 8, 2, 2, 4, 0, 1, 1, 0, 2,
     1, ATTN_POSENC_LEARNED, 0},
    {"self, sinusoidal, no biases, recomputed", 1, 6, 6, 8, 2, 1, 4, 0, 0, 0, 0,
     4, 0, ATTN_POSENC_SINUSOIDAL, 0},
    {"cross, RoPE, kv_len, GQA, saved", 3, 3, 5, 8, 4, 2, 2, 1, 1, 0, 1, 1, 1,
     ATTN_POSENC_ROPE, 0},
    {"cross, learned, causal, recomputed", 2, 3, 6, 8, 2, 1, 4, 1, 1, 1, 0, 5,
     0, ATTN_POSENC_LEARNED, 0},
    {"cross, no encoding, saved", 2, 4, 3, 4, 2, 2, 2, 1, 0, 0, 0, 0, 1,
     ATTN_POSENC_NONE, 0},
    {"self, additive, RoPE, biases, causal, GQA, saved", 2, 5, 5, 8, 4, 2, 4, 0,
     1, 1, 0, 1, 1, ATTN_POSENC_ROPE, 1},
    {"cross, additive, kv_len, recomputed", 2, 3, 6, 8, 2, 1, 4, 1, 0, 0, 1, 0,
     0, ATTN_POSENC_NONE, 1},
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* accumulate 1 adds to what the outputs hold; a second call with the
 * saved object gives the same gradients as the first. */
static void test_accumulate(void)
{
    const layer_case c = {
        "accumulate",        2, 4, 4, 8, 2, 1, 4, 0, 1, 1, 0, 0, 1,
        ATTN_POSENC_LEARNED, 0};
    problem p;
    attn_mha_saved *saved = NULL;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT;
    float y[64], dwq[64], acc[64], dpos[POS_ROWS * 8], dx[64];
    CU_ASSERT_FATAL(problem_make(&c, &p, 77) == 0);
    CU_ASSERT_FATAL(attn_mha_forward_train(ctx, &p.m, 2, 4, 4, p.t[T_XQ], NULL,
                                           &p.mask, y, &saved) == ATTN_OK);
    g.d_y = p.dy;
    g.d_wq = dwq;
    g.d_pos_table = dpos;
    g.d_x_q = dx;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 2, 4, 4, p.t[T_XQ], NULL, &p.mask,
                                saved, &g) == ATTN_OK);
    /* Rows past the positions used are 0; the used ones sum d_x_q's. */
    for (int r = 0; r < POS_ROWS; r++)
        for (int x = 0; x < 8; x++) {
            float want = r < 4 ? dx[r * 8 + x] + dx[32 + r * 8 + x] : 0.0f;
            CU_ASSERT(fabsf(dpos[r * 8 + x] - want) <= 1e-6f);
        }
    for (int i = 0; i < 64; i++)
        acc[i] = 1.0f;
    g.d_wq = acc;
    g.d_pos_table = NULL;
    g.d_x_q = NULL;
    g.accumulate = 1;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 2, 4, 4, p.t[T_XQ], NULL, &p.mask,
                                saved, &g) == ATTN_OK);
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 2, 4, 4, p.t[T_XQ], NULL, &p.mask,
                                NULL, &g) == ATTN_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT(fabsf(acc[i] - (1.0f + 2.0f * dwq[i])) <=
                  1e-5f * (1.0f + fabsf(dwq[i])));
    attn_mha_saved_destroy(saved);
    problem_free(&p);
}

/* The saved object: reused for the same sizes, replaced for larger ones;
 * a saved object of other sizes is refused by the backward. */
static void test_saved_reuse(void)
{
    const layer_case c = {
        "saved", 2, 6, 6, 8, 2, 1, 4, 0, 1, 0, 0, 0, 1, ATTN_POSENC_ROPE, 0};
    problem p;
    attn_mha_saved *saved = NULL, *first;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT;
    float y[96], dwo[64];
    CU_ASSERT_FATAL(problem_make(&c, &p, 5) == 0);
    CU_ASSERT_FATAL(attn_mha_forward_train(ctx, &p.m, 1, 6, 6, p.t[T_XQ], NULL,
                                           NULL, y, &saved) == ATTN_OK);
    first = saved;
    CU_ASSERT(attn_mha_forward_train(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                     y, &saved) == ATTN_OK);
    CU_ASSERT(saved == first); /* smaller: reused */
    g.d_y = p.dy;
    g.d_wo = dwo;
    /* It now holds seq 4: the backward of seq 6 refuses it. */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 6, 6, p.t[T_XQ], NULL, NULL,
                                saved, &g) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                saved, &g) == ATTN_OK);
    {
        /* a forward refused (here: a NULL weight) leaves it holding
         * nothing: the backward refuses it until a forward succeeds */
        attn_mha_desc e = p.m;
        e.wq = NULL;
        CU_ASSERT(attn_mha_forward_train(ctx, &e, 1, 4, 4, p.t[T_XQ], NULL,
                                         NULL, y,
                                         &saved) == ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT(saved == first);
        CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                    saved, &g) == ATTN_ERR_INVALID_ARGUMENT);
    }
    CU_ASSERT(attn_mha_forward_train(ctx, &p.m, 2, 6, 6, p.t[T_XQ], NULL, NULL,
                                     y, &saved) == ATTN_OK);
    CU_ASSERT(saved != NULL);
    attn_mha_saved_destroy(saved);
    attn_mha_saved_destroy(NULL);
    problem_free(&p);
}

static int untouched(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != -7.0f)
            return 0;
    return 1;
}

static void test_bad_arguments(void)
{
    const layer_case c = {
        "bad", 1, 4, 4, 8, 2, 1, 4, 0, 1, 0, 0, 0, 1, ATTN_POSENC_ROPE, 0};
    problem p;
    attn_mha_saved *saved = NULL;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT, bad;
    float y[32], dx[32], dwq[64], dkv[32];
    float dw_add[8];
    attn_mha_desc e;
    CU_ASSERT_FATAL(problem_make(&c, &p, 9) == 0);
    for (int i = 0; i < 32; i++)
        dx[i] = -7.0f;
    for (int i = 0; i < 64; i++)
        dwq[i] = -7.0f;
    g.d_y = p.dy;
    g.d_x_q = dx;
    g.d_wq = dwq;
    CU_ASSERT(attn_mha_forward_train(NULL, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                     y, &saved) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_mha_forward_train(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                     y, NULL) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_mha_forward_train(ctx, &p.m, 1, 4, 5, p.t[T_XQ], NULL, NULL,
                                     y, &saved) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(saved == NULL);
    CU_ASSERT(attn_mha_backward(NULL, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                NULL, &g) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                NULL) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.d_y = NULL;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.d_x_kv = dkv; /* self-attention has no x_kv */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.d_pos_table = dkv; /* RoPE has no table */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.d_wq = dx + 8; /* over another output */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.d_x_q = (float *)p.dy; /* over the input */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    {
        /* over a weight the call reads: refused, the weight untouched */
        float wq0[64];
        memcpy(wq0, p.m.wq, sizeof wq0);
        bad = g;
        bad.d_wq = (float *)p.m.wq;
        CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                    NULL, &bad) == ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT(strstr(attn_context_last_error(ctx), "overlaps wq") != NULL);
        CU_ASSERT(memcmp(wq0, p.m.wq, sizeof wq0) == 0);
        bad = g;
        bad.d_wq = NULL;
        bad.d_wk = (float *)p.m.wv + 1;
        CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                    NULL, &bad) == ATTN_ERR_INVALID_ARGUMENT);
    }
    bad = g;
    bad.accumulate = 2;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.struct_size = 3;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    e = p.m;
    e.heads_kv = 3;
    CU_ASSERT(attn_mha_backward(ctx, &e, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &g) == ATTN_ERR_INVALID_ARGUMENT);
    bad = g; /* the additive score's gradient of a dot-score layer */
    bad.d_additive_w = dw_add;
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &bad) == ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(untouched(dx, 32) && untouched(dwq, 64));
    /* and a good call still works */
    CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL, NULL,
                                &g) == ATTN_OK);
    CU_ASSERT(!untouched(dx, 32) && !untouched(dwq, 64));
    {
        /* d_y is an input: it may be x_q itself (the same gradients as
         * from a copy of it) */
        float dx2[32], dwq2[64];
        bad = g;
        bad.d_y = p.t[T_XQ];
        bad.d_x_q = dx2;
        bad.d_wq = dwq2;
        CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                    NULL, &bad) == ATTN_OK);
        memcpy(p.dy, p.t[T_XQ], 32 * sizeof(float));
        CU_ASSERT(attn_mha_backward(ctx, &p.m, 1, 4, 4, p.t[T_XQ], NULL, NULL,
                                    NULL, &g) == ATTN_OK);
        CU_ASSERT(memcmp(dx, dx2, sizeof dx2) == 0);
        CU_ASSERT(memcmp(dwq, dwq2, sizeof dwq2) == 0);
    }
    problem_free(&p);
}

int main(void)
{
    static const harness_test tests[] = {
        {"every gradient against finite differences", test_cases},
        {"accumulate and the table's gradient", test_accumulate},
        {"the saved activations reused", test_saved_reuse},
        {"bad arguments", test_bad_arguments},
        {NULL, NULL}};
    return harness_main("mha_backward", init, clean, tests);
}
