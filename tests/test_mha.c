/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_mha: attn_mha_forward against the reference layer (projections,
 * positional encodings, GQA, additive score, masks, self and cross
 * attention) and attn_posenc_sinusoidal against the formula.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

static attn_context *ctx;

static const char *posenc_name(attn_posenc p)
{
    switch (p) {
    case ATTN_POSENC_NONE:
        return "NONE";
    case ATTN_POSENC_SINUSOIDAL:
        return "SINUSOIDAL";
    case ATTN_POSENC_LEARNED:
        return "LEARNED";
    case ATTN_POSENC_ROPE:
        return "ROPE";
    }
    return "?";
}

/* d_model 20 with 4 heads of 6 (inner width 24 != d_model), 2 kv heads. */
static mha_spec base_spec(void)
{
    mha_spec s;
    memset(&s, 0, sizeof s);
    s.d_model = 20;
    s.heads_q = 4;
    s.heads_kv = 2;
    s.head_dim = 6;
    s.batch = 2;
    s.seq_q = 5;
    s.seq_kv = 7;
    s.self = 1;
    return s;
}

static int run(const mha_spec *s, uint64_t seed, const char *what)
{
    mha_case c;
    if (mha_case_init(&c, s, seed) != 0)
        return 0;
    int ok = mha_case_check(ctx, &c, NULL, what);
    mha_case_free(&c);
    return ok;
}

/* attn_mha_forward for the tests that compare calls with each other: 1
 * when it ran, 0 when a kernel variant forced by name (ATTN_TEST_KERNEL)
 * declined the layer's attention (counted; nothing to compare), -1 on any
 * other status (printed). */
static int forward(const mha_case *c, const attn_mha_desc *m, const float *x_kv,
                   const attn_mask_desc *mask, float *y, const char *what)
{
    attn_status st = attn_mha_forward(ctx, m, c->batch, c->seq_q, c->seq_kv,
                                      c->x_q, x_kv, mask, y);
    if (st == ATTN_OK) {
        harness_taken();
        return 1;
    }
    if (harness_declined(ctx, NULL, st, what))
        return 0;
    printf("\nFAIL %s: attn_mha_forward returned %s (%s)\n", what,
           attn_status_string(st), attn_context_last_error(ctx));
    return -1;
}

/* Adds to extra (c->ny elements) what the precision the layer's attention
 * runs at can move each element of m's y (ref_mha_at; nothing at EXACT):
 * two calls compared with each other differ by at most the sum of their
 * two terms on top of float's.  Returns 0, or -1 when memory runs out. */
static int add_precision_tol(const mha_case *c, const attn_mha_desc *m,
                             const float *x_kv, const attn_mask_desc *mask,
                             double *extra)
{
    const attn_precision p = mha_case_ran_at(ctx, c);
    double *y, *t;
    int rc = -1;
    if (p == ATTN_PRECISION_EXACT)
        return 0;
    y = malloc(c->ny * sizeof *y);
    t = malloc(c->ny * sizeof *t);
    if (y && t &&
        ref_mha_at(m, p, c->batch, c->seq_q, c->seq_kv, c->x_q, x_kv, mask, y,
                   t) == 0) {
        for (size_t i = 0; i < c->ny; i++)
            extra[i] += t[i];
        rc = 0;
    }
    free(y);
    free(t);
    return rc;
}

/* ---- attn_posenc_sinusoidal
 * ------------------------------------------------------ */

static int check_table(int seq, int d_model, int offset)
{
    size_t n = (size_t)seq * (size_t)d_model;
    float *t = malloc((n + 16) * sizeof *t);
    double *want = malloc(n * sizeof *want);
    if (!t || !want) {
        free(t);
        free(want);
        return 0;
    }
    for (size_t i = 0; i < n + 16; i++)
        t[i] = -7.0f;
    for (int p = 0; p < seq; p++)
        for (int c = 0; c < d_model; c++)
            want[(size_t)p * (size_t)d_model + (size_t)c] =
                ref_sinusoidal((double)(offset + p), c, d_model);
    char what[96];
    snprintf(what, sizeof what, "sinusoidal seq %d d_model %d offset %d", seq,
             d_model, offset);
    int ok = attn_posenc_sinusoidal(seq, d_model, offset, t) == ATTN_OK;
    if (!ok)
        printf("\nFAIL %s: status not ATTN_OK\n", what);
    ok = ok &&
         ref_check_f32(what, t, want, n, REF_PE_ABS(offset + seq - 1), 0.0);
    for (size_t i = n; i < n + 16; i++)
        if (t[i] != -7.0f) {
            printf("\nFAIL %s: wrote past the table\n", what);
            ok = 0;
            break;
        }
    free(t);
    free(want);
    return ok;
}

static void test_sinusoidal_table(void)
{
    CU_ASSERT_TRUE(check_table(20, 16, 0));
    CU_ASSERT_TRUE(check_table(13, 7, 37));
    CU_ASSERT_TRUE(check_table(1, 1, 0));
    CU_ASSERT_TRUE(check_table(3, 1, 5));
    CU_ASSERT_TRUE(check_table(64, 33, 100));
    /* Position 0: sin 0 = 0 and cos 0 = 1 exactly. */
    float t[8];
    CU_ASSERT_EQUAL_FATAL(attn_posenc_sinusoidal(1, 8, 0, t), ATTN_OK);
    for (int c = 0; c < 8; c++)
        CU_ASSERT_DOUBLE_EQUAL(t[c], (c & 1) ? 1.0 : 0.0, 1e-7);
}

/* ---- the layer
 * ------------------------------------------------------------------------ */

static void test_posenc_bias_self_cross(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_NONE, ATTN_POSENC_SINUSOIDAL,
                                 ATTN_POSENC_LEARNED, ATTN_POSENC_ROPE};
    for (int k = 0; k < 4; k++)
        for (int bias = 0; bias < 2; bias++)
            for (int self = 0; self < 2; self++) {
                mha_spec s = base_spec();
                s.posenc = kinds[k];
                s.with_bias = bias;
                s.self = self;
                char what[96];
                snprintf(what, sizeof what, "mha %s bias %d %s",
                         posenc_name(kinds[k]), bias, self ? "self" : "cross");
                CU_ASSERT_TRUE(
                    run(&s, 10 + (uint64_t)(k * 4 + bias * 2 + self), what));
            }
}

static void test_pos_offset(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_SINUSOIDAL, ATTN_POSENC_LEARNED,
                                 ATTN_POSENC_ROPE};
    for (int k = 0; k < 3; k++)
        for (int self = 0; self < 2; self++) {
            mha_spec s = base_spec();
            s.posenc = kinds[k];
            s.pos_offset = 11;
            s.self = self;
            s.with_bias = 1;
            s.causal = self;
            char what[96];
            snprintf(what, sizeof what, "mha %s pos_offset 11 %s",
                     posenc_name(kinds[k]), self ? "self causal" : "cross");
            CU_ASSERT_TRUE(run(&s, 30 + (uint64_t)(k * 2 + self), what));
        }
}

static void test_rope_odd_head_dim(void)
{
    const int dims[] = {1, 5, 7};
    for (int i = 0; i < 3; i++)
        for (int self = 0; self < 2; self++) {
            mha_spec s = base_spec();
            s.posenc = ATTN_POSENC_ROPE;
            s.head_dim = dims[i];
            s.pos_offset = 3;
            s.self = self;
            char what[96];
            snprintf(what, sizeof what, "mha ROPE head_dim %d %s", dims[i],
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(run(&s, 40 + (uint64_t)(i * 2 + self), what));
        }
}

static void test_heads(void)
{
    mha_spec s = base_spec();
    s.heads_kv = 4;
    CU_ASSERT_TRUE(run(&s, 50, "mha MHA 4/4"));
    s.heads_kv = 1;
    s.posenc = ATTN_POSENC_ROPE;
    CU_ASSERT_TRUE(run(&s, 51, "mha MQA 4/1 ROPE"));
    s.heads_q = 6;
    s.heads_kv = 3;
    s.head_dim = 4;
    s.self = 0;
    CU_ASSERT_TRUE(run(&s, 52, "mha GQA 6/3 cross"));
    s = base_spec();
    s.d_model = 1;
    s.heads_q = s.heads_kv = 1;
    s.head_dim = 1;
    s.batch = 1;
    s.seq_q = 1;
    CU_ASSERT_TRUE(run(&s, 53, "mha every size 1"));
    s = base_spec();
    s.d_model = 64;
    s.heads_q = 8;
    s.heads_kv = 2;
    s.head_dim = 8;
    s.seq_q = 33;
    s.with_bias = 1;
    s.posenc = ATTN_POSENC_ROPE;
    s.causal = 1;
    CU_ASSERT_TRUE(run(&s, 54, "mha d_model 64, 8/2 heads, seq 33"));
}

/* The head sizes the GPU-shaped kernel variants are built for (tiled, mma,
 * amdmm: 32, 64, 96, 128; splitkv and decode: few query rows per kv
 * head), so that each variant forced by name (ATTN_TEST_KERNEL) takes
 * some of the layer's attention calls; the suite's other layers, head
 * sizes 1 to 8, go to the run-time kernels. */
static void test_kernel_head_sizes(void)
{
    /* batch 2, the biases of the projections, each a layer of its own */
#define LAYER(...)                                                             \
    {                                                                          \
        .batch = 2, .with_bias = 1, __VA_ARGS__                                \
    }
    static const struct {
        mha_spec s;
        const char *what;
    } k[] = {
        {LAYER(.d_model = 64, .heads_q = 4, .heads_kv = 2, .head_dim = 32,
               .seq_q = 37, .self = 1, .causal = 1, .posenc = ATTN_POSENC_ROPE),
         "mha head_dim 32, GQA 4/2, self causal ROPE"},
        {LAYER(.d_model = 96, .heads_q = 2, .heads_kv = 1, .head_dim = 64,
               .seq_q = 20, .seq_kv = 45, .with_kv_len = 1,
               .posenc = ATTN_POSENC_SINUSOIDAL,
               .bias_kind = ATTN_BIAS_PER_HEAD),
         "mha head_dim 64, MQA 2/1, cross kv_len bias"},
        {LAYER(.d_model = 80, .heads_q = 2, .heads_kv = 2, .head_dim = 96,
               .seq_q = 19, .self = 1, .causal = 1, .window = 6),
         "mha head_dim 96, self causal window 6"},
        {LAYER(.d_model = 128, .heads_q = 2, .heads_kv = 1, .head_dim = 128,
               .seq_q = 24, .self = 1, .posenc = ATTN_POSENC_ROPE,
               .bias_kind = ATTN_BIAS_KEY),
         "mha head_dim 128, self, key bias"},
        {LAYER(.d_model = 64, .heads_q = 4, .heads_kv = 1, .head_dim = 64,
               .seq_q = 2, .seq_kv = 70, .with_kv_len = 1,
               .posenc = ATTN_POSENC_ROPE),
         "mha head_dim 64, 2 query rows over 70 keys, GQA 4/1"},
        {LAYER(.d_model = 64, .heads_q = 2, .heads_kv = 2, .head_dim = 32,
               .seq_q = 1, .seq_kv = 90, .posenc = ATTN_POSENC_LEARNED,
               .bias_kind = ATTN_BIAS_SHARED),
         "mha head_dim 32, one query row over 90 keys"},
    };
#undef LAYER
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        CU_ASSERT_TRUE(run(&k[i].s, 200 + (uint64_t)i, k[i].what));
}

static void test_additive(void)
{
    mha_spec s = base_spec();
    s.score = ATTN_SCORE_ADDITIVE;
    CU_ASSERT_TRUE(run(&s, 60, "mha additive self"));
    s.self = 0;
    s.with_bias = 1;
    s.posenc = ATTN_POSENC_ROPE;
    s.bias_kind = ATTN_BIAS_PER_HEAD;
    CU_ASSERT_TRUE(run(&s, 61, "mha additive cross ROPE bias"));
}

static void test_masks(void)
{
    const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                    ATTN_BIAS_FULL, ATTN_BIAS_KEY};
    for (int self = 0; self < 2; self++) {
        mha_spec s = base_spec();
        s.self = self;
        s.causal = 1;
        CU_ASSERT_TRUE(run(&s, 70 + (uint64_t)self, "mha causal"));
        s.window = 2;
        CU_ASSERT_TRUE(run(&s, 72 + (uint64_t)self, "mha causal window 2"));
        s.window = 0;
        s.causal = 0;
        s.with_kv_len = 1;
        s.with_bias = 1;
        CU_ASSERT_TRUE(run(&s, 74 + (uint64_t)self, "mha kv_len"));
        for (int k = 0; k < 4; k++) {
            s.bias_kind = kinds[k];
            s.causal = k == 1;
            s.posenc = ATTN_POSENC_ROPE;
            char what[64];
            snprintf(what, sizeof what, "mha bias kind %d %s", (int)kinds[k],
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(run(&s, 76 + (uint64_t)(k * 2 + self), what));
        }
    }
    /* A batch item whose keys are all hidden: y = bo there. */
    mha_spec s = base_spec();
    s.with_bias = 1;
    s.with_kv_len = 1;
    mha_case c;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 90), 0);
    c.kv_len[0] = 0;
    c.kv_len[1] = 5;
    CU_ASSERT_TRUE(mha_case_check(ctx, &c, NULL, "mha kv_len 0"));
    mha_case_free(&c);
}

/* ---- 16-bit weights (weight_dtype F16, BF16) ----------------------------
 * The reference runs the float layer whose arrays hold the 16-bit values,
 * so the tolerance is the float layer's. */

static int run_weights16(const mha_spec *s, uint64_t seed, attn_dtype dt,
                         const char *what)
{
    mha_case c, c16;
    uint16_t *mem = NULL;
    double *ref = NULL;
    int ok = 0;
    if (mha_case_init(&c, s, seed) != 0)
        return 0;
    if (mha_case_weights16(&c, dt, &c16.m, &mem) == 0 &&
        (ref = mha_case_reference(&c)) != NULL) {
        attn_mha_desc m16 = c16.m;
        c16 = c;
        c16.m = m16;
        ok = mha_case_check(ctx, &c16, ref, what);
    }
    free(ref);
    free(mem);
    mha_case_free(&c);
    return ok;
}

static void test_weights16(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_NONE, ATTN_POSENC_SINUSOIDAL,
                                 ATTN_POSENC_LEARNED, ATTN_POSENC_ROPE};
    const attn_dtype dts[] = {ATTN_F16, ATTN_BF16};
    for (int d = 0; d < 2; d++) {
        for (int k = 0; k < 4; k++)
            for (int self = 0; self < 2; self++) {
                mha_spec s = base_spec();
                char what[96];
                s.posenc = kinds[k];
                s.with_bias = 1;
                s.self = self;
                s.causal = self;
                snprintf(what, sizeof what, "mha %s weights, %s %s",
                         dts[d] == ATTN_BF16 ? "BF16" : "F16",
                         posenc_name(kinds[k]), self ? "self" : "cross");
                CU_ASSERT_TRUE(run_weights16(
                    &s, 400 + (uint64_t)(d * 8 + k * 2 + self), dts[d], what));
            }
        mha_spec s = base_spec();
        s.score = ATTN_SCORE_ADDITIVE;
        s.self = 0;
        s.bias_kind = ATTN_BIAS_PER_HEAD;
        CU_ASSERT_TRUE(run_weights16(&s, 420 + (uint64_t)d, dts[d],
                                     dts[d] == ATTN_BF16
                                         ? "mha BF16 weights, additive"
                                         : "mha F16 weights, additive"));
    }
}

/* What 16-bit weights are refused: an unknown weight_dtype, the training
 * calls; y is checked against the arrays' 16-bit extents. */
static void test_weights16_refused(void)
{
    mha_spec s = base_spec();
    mha_case c;
    attn_mha_desc m16;
    uint16_t *mem = NULL;
    attn_mha_saved *saved = NULL;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT;
    float *y;
    s.with_bias = 1;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 430), 0);
    CU_ASSERT_EQUAL_FATAL(mha_case_weights16(&c, ATTN_BF16, &m16, &mem), 0);
    y = malloc(c.ny * sizeof *y);
    CU_ASSERT_FATAL(y != NULL);
    m16.weight_dtype = (attn_dtype)7;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &m16, c.batch, c.seq_q, c.seq_kv,
                                     c.x_q, c.x_kv, &c.mask, y),
                    ATTN_ERR_INVALID_ARGUMENT);
    m16.weight_dtype = ATTN_BF16;
    CU_ASSERT_EQUAL(attn_mha_forward_train(ctx, &m16, c.batch, c.seq_q,
                                           c.seq_kv, c.x_q, c.x_kv, &c.mask, y,
                                           &saved),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_NULL(saved);
    g.d_y = y;
    for (size_t i = 0; i < c.ny; i++)
        y[i] = 0.0f;
    CU_ASSERT_EQUAL(attn_mha_backward(ctx, &m16, c.batch, c.seq_q, c.seq_kv,
                                      c.x_q, c.x_kv, &c.mask, NULL, &g),
                    ATTN_ERR_UNSUPPORTED);
    /* wq's 16-bit extent: y just past it is no overlap, y on its last
     * element is one. */
    {
        const size_t nw = (size_t)s.heads_q * s.head_dim * s.d_model;
        uint16_t *big = malloc(nw * 2 + c.ny * sizeof(float) + 8);
        CU_ASSERT_FATAL(big != NULL);
        memcpy(big, m16.wq, nw * 2);
        m16.wq = (const float *)(void *)big;
        CU_ASSERT_TRUE(forward(&c, &m16, c.x_kv, &c.mask,
                               (float *)(void *)(big + nw),
                               "16-bit weights, y past wq") >= 0);
        CU_ASSERT_EQUAL(attn_mha_forward(ctx, &m16, c.batch, c.seq_q, c.seq_kv,
                                         c.x_q, c.x_kv, &c.mask,
                                         (float *)(void *)(big + nw - 2)),
                        ATTN_ERR_INVALID_ARGUMENT);
        free(big);
    }
    free(y);
    free(mem);
    mha_case_free(&c);
}

/* LEARNED with the table attn_posenc_sinusoidal writes is SINUSOIDAL. */
static void test_learned_equals_sinusoidal(void)
{
    mha_spec s = base_spec();
    s.posenc = ATTN_POSENC_SINUSOIDAL;
    s.pos_offset = 4;
    s.with_bias = 1;
    for (int self = 0; self < 2; self++) {
        s.self = self;
        mha_case c;
        CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 100 + (uint64_t)self), 0);
        int rows = 4 + 7 + 1;
        float *table = malloc((size_t)rows * 20 * sizeof *table);
        float *y1 = malloc(c.ny * sizeof *y1), *y2 = malloc(c.ny * sizeof *y2);
        double *y1d = malloc(c.ny * sizeof *y1d);
        CU_ASSERT_FATAL(table && y1 && y2 && y1d);
        const char *what = self ? "LEARNED(sin table) vs SINUSOIDAL, self"
                                : "LEARNED(sin table) vs SINUSOIDAL, cross";
        CU_ASSERT_EQUAL(attn_posenc_sinusoidal(rows, 20, 0, table), ATTN_OK);
        int ran = forward(&c, &c.m, c.x_kv, &c.mask, y1, what);
        CU_ASSERT_TRUE(ran >= 0);
        c.m.posenc = ATTN_POSENC_LEARNED;
        c.m.pos_table = table;
        c.m.pos_table_len = rows;
        if (ran > 0) {
            double *extra = calloc(c.ny, sizeof *extra);
            CU_ASSERT_FATAL(extra != NULL);
            CU_ASSERT_EQUAL(forward(&c, &c.m, c.x_kv, &c.mask, y2, what), 1);
            for (size_t i = 0; i < c.ny; i++)
                y1d[i] = y1[i];
            /* Both calls carry their precision's error (the same layer). */
            CU_ASSERT_EQUAL(add_precision_tol(&c, &c.m, c.x_kv, &c.mask, extra),
                            0);
            for (size_t i = 0; i < c.ny; i++)
                extra[i] *= 2.0;
            CU_ASSERT_TRUE(ref_check_f32_tol(what, y2, y1d, extra, c.ny,
                                             REF_MHA_ABS, REF_MHA_REL));
            free(extra);
        }
        c.m.pos_table = NULL;
        free(table);
        free(y1);
        free(y2);
        free(y1d);
        mha_case_free(&c);
    }
}

/* ROPE scores depend on relative positions only: without masks, shifting
 * pos_offset in self-attention leaves y unchanged. */
static void test_rope_relative(void)
{
    mha_spec s = base_spec();
    s.posenc = ATTN_POSENC_ROPE;
    s.with_bias = 1;
    mha_case c;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 110), 0);
    float *y0 = malloc(c.ny * sizeof *y0), *y1 = malloc(c.ny * sizeof *y1);
    double *y0d = malloc(c.ny * sizeof *y0d);
    CU_ASSERT_FATAL(y0 && y1 && y0d);
    int ran = forward(&c, &c.m, NULL, NULL, y0, "ROPE shift invariance");
    CU_ASSERT_TRUE(ran >= 0);
    c.m.pos_offset = 9;
    if (ran > 0) {
        double *extra = calloc(c.ny, sizeof *extra);
        CU_ASSERT_FATAL(extra != NULL);
        CU_ASSERT_EQUAL(forward(&c, &c.m, NULL, NULL, y1, "ROPE shift"), 1);
        for (size_t i = 0; i < c.ny; i++)
            y0d[i] = y0[i];
        /* Each call within its precision's terms of the reference. */
        CU_ASSERT_EQUAL(add_precision_tol(&c, &c.m, NULL, NULL, extra), 0);
        c.m.pos_offset = 0;
        CU_ASSERT_EQUAL(add_precision_tol(&c, &c.m, NULL, NULL, extra), 0);
        CU_ASSERT_TRUE(ref_check_f32_tol("ROPE shift invariance", y1, y0d,
                                         extra, c.ny, REF_MHA_ABS,
                                         REF_MHA_REL));
        free(extra);
    }
    free(y0);
    free(y1);
    free(y0d);
    mha_case_free(&c);
}

static int suite_init(void)
{
    ctx = harness_context();
    return ctx ? 0 : 1;
}

static int suite_clean(void)
{
    attn_context_destroy(ctx);
    ctx = NULL;
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"posenc_sinusoidal table", test_sinusoidal_table},
        {"posenc x biases x self/cross", test_posenc_bias_self_cross},
        {"pos_offset > 0", test_pos_offset},
        {"ROPE with odd head_dim", test_rope_odd_head_dim},
        {"MHA, GQA, MQA and sizes", test_heads},
        {"the kernel variants' head sizes", test_kernel_head_sizes},
        {"additive score", test_additive},
        {"masks", test_masks},
        {"F16 and BF16 weights = reference", test_weights16},
        {"16-bit weights refused", test_weights16_refused},
        {"LEARNED with a sinusoidal table", test_learned_equals_sinusoidal},
        {"ROPE depends on relative positions", test_rope_relative},
        {NULL, NULL},
    };
    return harness_main("mha", suite_init, suite_clean, tests);
}
