/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_sdpa: attn_sdpa against the double-precision oracle: scores, scale,
 * causal / window / kv_len / bias masks, GQA and MQA, cross-attention,
 * head_dim_v, F32 and F16, lse, fully hidden rows, odd and long sizes,
 * extreme logits and NaN isolation.  Runs on the context ATTN_DEVICE picks
 * (default "auto").
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

static attn_context *ctx;

static attn_sdpa_desc shape(int batch, int hq, int hkv, int sq, int skv, int d,
                            int dv)
{
    attn_sdpa_desc s;
    attn_sdpa_desc_init(&s);
    s.batch = batch;
    s.heads_q = hq;
    s.heads_kv = hkv;
    s.seq_q = sq;
    s.seq_kv = skv;
    s.head_dim = d;
    s.head_dim_v = dv;
    return s;
}

/* Builds the case, runs it with lse (lse 1), without (0) or both (2). */
static int run(const attn_sdpa_desc *s, uint64_t seed, double amp, double ninf,
               int with_kv_len, int lse, const char *what)
{
    sdpa_case c;
    if (sdpa_case_init(&c, s, seed, amp, ninf, with_kv_len) != 0)
        return 0;
    ref_sdpa_result r;
    if (ref_sdpa(&c.d, c.q, c.k, c.v, &r) != 0) {
        sdpa_case_free(&c);
        return 0;
    }
    int ok = 1;
    if (lse != 0)
        ok &= sdpa_case_check(ctx, &c, &r, 1, NULL, what);
    if (lse != 1)
        ok &= sdpa_case_check(ctx, &c, &r, 0, NULL, what);
    ref_sdpa_free(&r);
    sdpa_case_free(&c);
    return ok;
}

/* ---- the oracle itself
 * --------------------------------------------------------- */

static void test_oracle(void)
{
    /* Half conversion: every finite half survives a round trip; rounding is
     * to nearest even, with overflow to infinity and the subnormal range. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float f = ref_f16_to_f32((uint16_t)h);
        if (isnan(f))
            bad += !isnan(ref_f16_to_f32(ref_f32_to_f16(f)));
        else
            bad += ref_f32_to_f16(f) != h;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(ref_f32_to_f16(1.0f), 0x3c00);
    CU_ASSERT_EQUAL(ref_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie, even */
    CU_ASSERT_EQUAL(ref_f32_to_f16(1.0f + 3 * 0x1p-11f),
                    0x3c02); /* tie, even */
    CU_ASSERT_EQUAL(ref_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(ref_f32_to_f16(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(ref_f32_to_f16(-0x1p-25f), 0x8000);
    CU_ASSERT_EQUAL(ref_f32_to_f16(3 * 0x1p-26f), 0x0001);
    CU_ASSERT_EQUAL(ref_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400);
    CU_ASSERT_DOUBLE_EQUAL(ref_f16_to_f32(0x3555), 0.333251953125, 0.0);

    /* q = 0: uniform weights, O = mean of the visible V, lse = log(n). */
    attn_sdpa_desc d = shape(1, 1, 1, 2, 4, 2, 1);
    d.mask.causal = 1;
    double q[4] = {0, 0, 0, 0}, k[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    double v[4] = {1, 2, 3, 6}, o[2], lse[2];
    unsigned char hid[2];
    CU_ASSERT_EQUAL_FATAL(ref_sdpa_f64(&d, q, k, v, o, lse, NULL, NULL, hid),
                          0);
    CU_ASSERT_DOUBLE_EQUAL(o[0], 2.0, 1e-12); /* keys 0..2 */
    CU_ASSERT_DOUBLE_EQUAL(o[1], 3.0, 1e-12); /* keys 0..3 */
    CU_ASSERT_DOUBLE_EQUAL(lse[0], log(3.0), 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(lse[1], log(4.0), 1e-12);
    /* Two keys, scores 0 and log 3: weights 1/4 and 3/4. */
    d = shape(1, 1, 1, 1, 2, 1, 1);
    d.scale = 1.0f;
    double q1[1] = {log(3.0)}, k1[2] = {0.0, 1.0}, v1[2] = {4.0, 8.0};
    CU_ASSERT_EQUAL_FATAL(ref_sdpa_f64(&d, q1, k1, v1, o, lse, NULL, NULL, hid),
                          0);
    CU_ASSERT_DOUBLE_EQUAL(o[0], 7.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(lse[0], log(4.0), 1e-12);
    /* Window 2, not causal, seq 3/3: row 2 sees keys 1, 2; row 0 all. */
    d = shape(1, 1, 1, 3, 3, 1, 1);
    d.mask.window = 2;
    double q3[3] = {0, 0, 0}, k3[3] = {0, 0, 0}, v3[3] = {3, 6, 9}, o3[3];
    CU_ASSERT_EQUAL_FATAL(
        ref_sdpa_f64(&d, q3, k3, v3, o3, NULL, NULL, NULL, NULL), 0);
    CU_ASSERT_DOUBLE_EQUAL(o3[0], 6.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(o3[2], 7.5, 1e-12);
}

/* ---- scores and scale
 * --------------------------------------------------------------- */

static void test_dot(void)
{
    attn_sdpa_desc s = shape(2, 3, 3, 11, 13, 16, 16);
    CU_ASSERT_TRUE(run(&s, 1, 1.0, 0, 0, 2, "dot, scale 0"));
    s.scale = 0.3f;
    CU_ASSERT_TRUE(run(&s, 2, 1.0, 0, 0, 2, "dot, scale 0.3"));
    s.scale = -0.7f;
    CU_ASSERT_TRUE(run(&s, 3, 1.0, 0, 0, 1, "dot, scale -0.7"));
    s.scale = 1.0f;
    CU_ASSERT_TRUE(run(&s, 4, 2.0, 0, 0, 1, "dot, scale 1"));
    s = shape(1, 1, 1, 1, 1, 1, 1);
    CU_ASSERT_TRUE(run(&s, 5, 1.0, 0, 0, 2, "dot, all sizes 1"));
}

static void test_additive(void)
{
    attn_sdpa_desc s = shape(2, 4, 2, 9, 14, 12, 10);
    s.score = ATTN_SCORE_ADDITIVE;
    CU_ASSERT_TRUE(run(&s, 11, 1.0, 0, 0, 2, "additive"));
    s.scale = 3.0f; /* scale is for the dot score only */
    CU_ASSERT_TRUE(run(&s, 12, 1.0, 0, 0, 1, "additive ignores scale"));
    s.scale = 0.0f;
    s.mask.causal = 1;
    s.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    CU_ASSERT_TRUE(run(&s, 13, 2.0, 0.1, 1, 1, "additive with masks"));
    s.dtype = ATTN_F16;
    CU_ASSERT_TRUE(run(&s, 14, 1.0, 0.1, 1, 2, "additive F16 with masks"));
}

/* ---- masks
 * ------------------------------------------------------------------------ */

static void test_causal(void)
{
    const int sq[] = {6, 16, 16, 40, 1, 64};
    const int skv[] = {16, 16, 6, 17, 30, 64};
    for (int i = 0; i < 6; i++) {
        char what[64];
        attn_sdpa_desc s = shape(2, 2, 1, sq[i], skv[i], 8, 8);
        s.mask.causal = 1;
        snprintf(what, sizeof what, "causal seq_q %d seq_kv %d", sq[i], skv[i]);
        CU_ASSERT_TRUE(run(&s, 20 + (uint64_t)i, 1.5, 0, 0, 2, what));
    }
}

/* Top-left causal (PyTorch's is_causal): query i sees keys j <= i, also
 * when seq_q != seq_kv; the window follows the same diagonal.  Several
 * query and key tiles, so that whole tiles are skipped on both sides of
 * the diagonal. */
static void test_causal_top_left(void)
{
    const int sq[] = {6, 16, 40, 1, 200, 333};
    const int skv[] = {16, 6, 17, 30, 600, 97};
    const int win[] = {0, 0, 5, 0, 77, 0};
    for (int i = 0; i < 6; i++)
        for (int dt = 0; dt < 2; dt++) {
            char what[80];
            attn_sdpa_desc s = shape(2, 2, 1, sq[i], skv[i], 8, 8);
            s.mask.causal = 1;
            s.mask.window = win[i];
            s.causal_align = ATTN_CAUSAL_TOP_LEFT;
            s.dtype = dt ? ATTN_F16 : ATTN_F32;
            snprintf(what, sizeof what, "top-left causal %d x %d window %d %s",
                     sq[i], skv[i], win[i], dt ? "F16" : "F32");
            CU_ASSERT_TRUE(
                run(&s, 120 + (uint64_t)i, 1.5, 0, i == 4, 2 - dt, what));
        }
    /* A window alone is aligned too. */
    attn_sdpa_desc s = shape(1, 2, 2, 29, 20, 8, 8);
    s.mask.window = 4;
    s.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_TRUE(run(&s, 130, 1.5, 0, 0, 1, "top-left window 4, 29 x 20"));
}

/* Left padding (q_start, kv_start) against the oracle, which applies it
 * independently: equal paddings (a left-padded batch), unequal ones under
 * TOP_LEFT (the diagonal then moves per batch item), a decode row against
 * a left-padded cache, with kv_len, a bias and keep; NaN written into the
 * padding keys must not reach any row. */
static void test_left_padding(void)
{
    static const struct {
        int b, hq, hkv, sq, skv, causal, window, top_left, f16, kvlen, bias,
            keep;
        int32_t qs[3], ks[3];
    } t[] = {
        {3, 2, 1, 37, 37, 1, 0, 0, 0, 0, 0, 0, {0, 5, 36}, {0, 5, 36}},
        {3, 2, 1, 37, 37, 1, 0, 1, 1, 0, 0, 0, {0, 5, 37}, {0, 5, 37}},
        {3, 2, 2, 37, 37, 0, 0, 0, 0, 0, 0, 0, {2, 0, 9}, {2, 0, 9}},
        {3, 4, 1, 1, 300, 1, 0, 0, 0, 1, 0, 0, {0, 0, 0}, {0, 100, 299}},
        {3, 2, 1, 20, 50, 1, 7, 1, 0, 0, 0, 0, {3, 0, 20}, {10, 49, 0}},
        {3, 2, 1, 20, 50, 0, 5, 1, 1, 0, 1, 1, {3, 1, 0}, {1, 40, 0}},
        {2, 3, 3, 70, 70, 1, 0, 0, 0, 1, 1, 0, {17, 64}, {17, 64}},
        /* one shift for every item, off the descriptor's diagonal */
        {2, 2, 1, 12, 30, 1, 0, 1, 0, 0, 0, 0, {4, 4}, {9, 9}},
        {1, 2, 2, 3, 80, 1, 0, 1, 0, 0, 0, 0, {0}, {60}},
    };
    for (size_t n = 0; n < sizeof t / sizeof t[0]; n++) {
        char what[96];
        attn_sdpa_desc s =
            shape(t[n].b, t[n].hq, t[n].hkv, t[n].sq, t[n].skv, 16, 8);
        sdpa_case c;
        ref_sdpa_result r;
        s.mask.causal = t[n].causal;
        s.mask.window = t[n].window;
        s.causal_align =
            t[n].top_left ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_BOTTOM_RIGHT;
        s.dtype = t[n].f16 ? ATTN_F16 : ATTN_F32;
        if (t[n].bias)
            s.mask.bias_kind = ATTN_BIAS_KEY;
        if (t[n].keep) {
            s.keep_shape[0] = t[n].b;
            s.keep_shape[1] = 1;
            s.keep_shape[2] = t[n].sq;
        }
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&c, &s, 500 + (uint64_t)n, 1.5, 0.05, t[n].kvlen),
            0);
        c.d.q_start = t[n].qs;
        c.d.kv_start = t[n].ks;
        /* NaN in the keys and values of the padding: never read */
        for (int b = 0; b < t[n].b; b++)
            for (int h = 0; h < t[n].hkv; h++)
                for (int j = 0; j < t[n].ks[b]; j++) {
                    size_t row = ((size_t)b * (size_t)t[n].hkv + (size_t)h) *
                                     (size_t)t[n].skv +
                                 (size_t)j;
                    if (t[n].f16) {
                        ((uint16_t *)c.k)[row * 16] = 0x7e00;
                        ((uint16_t *)c.v)[row * 8] = 0x7e00;
                    } else {
                        ((float *)c.k)[row * 16] = NAN;
                        ((float *)c.v)[row * 8] = NAN;
                    }
                }
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        snprintf(what, sizeof what,
                 "left padding %d: %d x %d causal %d window %d %s", (int)n,
                 t[n].sq, t[n].skv, t[n].causal, t[n].window,
                 t[n].top_left ? "top-left" : "bottom-right");
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 0, NULL, what));
        ref_sdpa_free(&r);
        sdpa_case_free(&c);
    }
}

/* Out-of-range starts are refused, and the outputs left alone. */
static void test_left_padding_invalid(void)
{
    attn_sdpa_desc s = shape(2, 1, 1, 4, 6, 8, 8);
    float q[2 * 4 * 8] = {0}, k[2 * 6 * 8] = {0}, v[2 * 6 * 8] = {0};
    float o[2 * 4 * 8];
    const int32_t bad_q[2] = {0, 5}, bad_kv[2] = {-1, 0}, ok[2] = {0, 6};
    for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
        o[i] = 7.0f;
    s.q_start = bad_q;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &s, q, k, v, o, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    s.q_start = NULL;
    s.kv_start = bad_kv;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &s, q, k, v, o, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(o[0], 7.0f);
    s.kv_start = ok; /* every key of item 1 hidden: O = 0 there */
    attn_status st = attn_sdpa(ctx, &s, q, k, v, o, NULL);
    if (st != ATTN_OK && harness_declined(ctx, &s, st, "kv_start = seq_kv"))
        return; /* a forced kernel that does not take the shape */
    CU_ASSERT_EQUAL(st, ATTN_OK);
    CU_ASSERT_EQUAL(o[4 * 8], 0.0f);
    CU_ASSERT_EQUAL(o[2 * 4 * 8 - 1], 0.0f);
}

/* A top-left causal (and windowed) call gives what the default alignment
 * gives with the same mask spelt out as a FULL bias of 0 and -inf: both
 * calls are checked against the one oracle result of the first. */
static void test_top_left_as_bias(void)
{
    const int sq[] = {5, 70, 1};
    const int skv[] = {70, 23, 9};
    const int win[] = {0, 9, 0};
    for (int t = 0; t < 3; t++) {
        char what[96];
        attn_sdpa_desc s = shape(2, 3, 1, sq[t], skv[t], 16, 16);
        sdpa_case c, e;
        ref_sdpa_result r;
        s.mask.causal = 1;
        s.mask.window = win[t];
        s.causal_align = ATTN_CAUSAL_TOP_LEFT;
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&c, &s, 140 + (uint64_t)t, 1.5, 0, 0), 0);
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        snprintf(what, sizeof what, "top-left %d x %d window %d", sq[t], skv[t],
                 win[t]);
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
        /* the same inputs (same seed), the mask as a FULL bias */
        s.mask.causal = 0;
        s.mask.window = 0;
        s.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT;
        s.mask.bias_kind = ATTN_BIAS_FULL;
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&e, &s, 140 + (uint64_t)t, 1.5, 0, 0), 0);
        CU_ASSERT_EQUAL(memcmp(c.q, e.q, c.nq * sizeof(float)), 0);
        for (size_t bh = 0; bh < (size_t)(2 * 3); bh++)
            for (int i = 0; i < sq[t]; i++)
                for (int j = 0; j < skv[t]; j++)
                    e.bias[(bh * (size_t)sq[t] + (size_t)i) * (size_t)skv[t] +
                           (size_t)j] =
                        j > i || (win[t] > 0 && j < i - win[t] + 1) ? -INFINITY
                                                                    : 0.0f;
        snprintf(what, sizeof what, "top-left %d x %d window %d as a bias",
                 sq[t], skv[t], win[t]);
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &e, &r, 1, NULL, what));
        ref_sdpa_free(&r);
        sdpa_case_free(&e);
        sdpa_case_free(&c);
    }
}

/* causal_offset moves the diagonal of either alignment (attn.h): against
 * the oracle, at both ends of its range (1 - seq_q: only the last row sees
 * a key; seq_kv - 1: the causal mask hides nothing), with a window alone,
 * with left padding, a decode-sized call, F16; then one case against its
 * mask spelt out as a FULL bias, and the offsets refused. */
static void test_causal_offset(void)
{
    static const struct {
        int sq, skv, hd, top_left, causal, window, f16, kvlen, pad;
        int64_t off;
    } t[] = {
        {40, 64, 32, 1, 1, 0, 0, 0, 0, 24},     /* keys before the rows */
        {40, 64, 64, 1, 1, 30, 0, 0, 0, 63},    /* the last diagonal */
        {64, 40, 32, 1, 1, 0, 0, 0, 0, -63},    /* the first diagonal */
        {33, 50, 16, 0, 1, 8, 0, 1, 0, -10},    /* bottom-right moved back */
        {3, 300, 16, 0, 1, 0, 1, 0, 0, -100},   /* decode-sized rows */
        {3, 300, 64, 1, 1, 60, 0, 0, 0, 250},   /* decode rows, a window */
        {200, 200, 32, 1, 0, 77, 0, 0, 0, 150}, /* a window alone */
        {37, 45, 32, 1, 1, 6, 1, 0, 1, 5},      /* with equal left padding */
        {130, 70, 16, 0, 1, 0, 0, 0, 0, 33},    /* bottom-right moved on */
    };
    for (size_t n = 0; n < sizeof t / sizeof t[0]; n++) {
        char what[112];
        const int32_t starts[2] = {0, 4};
        attn_sdpa_desc s = shape(2, 2, 1, t[n].sq, t[n].skv, t[n].hd, t[n].hd);
        sdpa_case c;
        ref_sdpa_result r;
        s.mask.causal = t[n].causal;
        s.mask.window = t[n].window;
        s.causal_align =
            t[n].top_left ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_BOTTOM_RIGHT;
        s.causal_offset = t[n].off;
        s.dtype = t[n].f16 ? ATTN_F16 : ATTN_F32;
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&c, &s, 900 + (uint64_t)n, 1.5, 0.05, t[n].kvlen),
            0);
        if (t[n].pad)
            c.d.q_start = c.d.kv_start = starts;
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        snprintf(what, sizeof what,
                 "causal_offset %lld: %d x %d %s causal %d window %d%s",
                 (long long)t[n].off, t[n].sq, t[n].skv,
                 t[n].top_left ? "top-left" : "bottom-right", t[n].causal,
                 t[n].window, t[n].pad ? " left-padded" : "");
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 0, NULL, what));
        ref_sdpa_free(&r);
        sdpa_case_free(&c);
    }
    {
        /* A block of a longer sequence: query rows from position 50, keys
         * from 20 (offset 30), causal with a window of 40, against the
         * same mask as a FULL bias of 0 and -inf. */
        const int sq = 24, skv = 32, win = 40, off = 30;
        attn_sdpa_desc s = shape(1, 2, 2, sq, skv, 32, 32);
        sdpa_case c, e;
        ref_sdpa_result r;
        s.mask.causal = 1;
        s.mask.window = win;
        s.causal_align = ATTN_CAUSAL_TOP_LEFT;
        s.causal_offset = off;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 950, 1.5, 0, 0), 0);
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        CU_ASSERT_TRUE(
            sdpa_case_check(ctx, &c, &r, 1, NULL, "block of a sequence"));
        s.mask.causal = 0;
        s.mask.window = 0;
        s.causal_offset = 0;
        s.mask.bias_kind = ATTN_BIAS_FULL;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&e, &s, 950, 1.5, 0, 0), 0);
        for (size_t h = 0; h < 2; h++)
            for (int i = 0; i < sq; i++)
                for (int j = 0; j < skv; j++) {
                    const int gi = 50 + i, gj = 20 + j;
                    e.bias[(h * (size_t)sq + (size_t)i) * (size_t)skv +
                           (size_t)j] =
                        gj > gi || gj < gi - win + 1 ? -INFINITY : 0.0f;
                }
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &e, &r, 1, NULL,
                                       "block of a sequence as a bias"));
        ref_sdpa_free(&r);
        sdpa_case_free(&e);
        sdpa_case_free(&c);
    }
    {
        /* Out of [1 - seq_q, seq_kv - 1]: refused, o untouched. */
        attn_sdpa_desc s = shape(1, 1, 1, 4, 6, 8, 8);
        float q[4 * 8] = {0}, k[6 * 8] = {0}, v[6 * 8] = {0}, o[4 * 8];
        const int32_t cu[2] = {0, 4};
        const int64_t bad[] = {6, -4, INT64_MAX, INT64_MIN,
                               (int64_t)INT_MAX + 1};
        for (size_t i = 0; i < sizeof o / sizeof o[0]; i++)
            o[i] = 7.0f;
        s.mask.causal = 1;
        s.causal_align = ATTN_CAUSAL_TOP_LEFT;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            s.causal_offset = bad[i];
            CU_ASSERT_EQUAL(attn_sdpa(ctx, &s, q, k, v, o, NULL),
                            ATTN_ERR_INVALID_ARGUMENT);
            CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "causal_offset"));
        }
        s.causal_align = ATTN_CAUSAL_BOTTOM_RIGHT; /* diagonal 2: 4 is out */
        s.causal_offset = 4;
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &s, q, k, v, o, NULL),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(o[0], 7.0f);
        /* packed sequences take none */
        s.causal_offset = 1;
        s.cu_seqlens_q = s.cu_seqlens_kv = cu;
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &s, q, k, v, o, NULL),
                        ATTN_ERR_UNSUPPORTED);
        CU_ASSERT_EQUAL(o[0], 7.0f);
    }
}

static void test_window(void)
{
    const int win[] = {1, 2, 5, 16, 100};
    for (int causal = 0; causal < 2; causal++)
        for (int w = 0; w < 5; w++) {
            char what[64];
            attn_sdpa_desc s = shape(1, 2, 2, 20, 29, 8, 8);
            s.mask.causal = causal;
            s.mask.window = win[w];
            snprintf(what, sizeof what, "window %d causal %d", win[w], causal);
            CU_ASSERT_TRUE(run(&s, 30 + (uint64_t)w, 1.5, 0, 0, 1, what));
            s.seq_q = 29;
            s.seq_kv = 20;
            CU_ASSERT_TRUE(run(&s, 40 + (uint64_t)w, 1.5, 0, 0, 1, what));
        }
}

static void test_kv_len(void)
{
    attn_sdpa_desc s = shape(4, 2, 2, 7, 19, 8, 5);
    sdpa_case c;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 50, 1.0, 0, 1), 0);
    const int32_t lens[4] = {0, 19, 1, 10};
    memcpy(c.kv_len, lens, sizeof lens);
    CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 1, NULL, "kv_len 0/19/1/10"));
    CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 0, NULL, "kv_len, no lse"));
    c.d.mask.causal = 1;
    CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 1, NULL, "kv_len + causal"));
    c.d.mask.window = 3;
    CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 1, NULL, "kv_len + window"));
    sdpa_case_free(&c);
    for (uint64_t seed = 0; seed < 4; seed++)
        CU_ASSERT_TRUE(run(&s, 60 + seed, 1.0, 0, 1, 1, "random kv_len"));
}

/* Hides every key of one (b, h, i) row through the bias; the oracle must
 * see a hidden row there, and the library must give O = 0, lse = -inf. */
static void test_bias(void)
{
    const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                    ATTN_BIAS_FULL};
    for (int k = 0; k < 3; k++)
        for (int dt = 0; dt < 2; dt++) {
            char what[64];
            attn_sdpa_desc s = shape(2, 4, 2, 6, 11, 8, 8);
            s.mask.bias_kind = kinds[k];
            s.dtype = dt ? ATTN_F16 : ATTN_F32;
            snprintf(what, sizeof what, "bias kind %d %s", (int)kinds[k],
                     dt ? "F16" : "F32");
            sdpa_case c;
            CU_ASSERT_EQUAL_FATAL(
                sdpa_case_init(&c, &s, 70 + (uint64_t)k, 1.0, 0.2, 0), 0);
            /* row i = 2 of head 1 (SHARED: every head), batch 1 (FULL). */
            size_t plane = 6 * 11, base = 2 * 11;
            if (kinds[k] == ATTN_BIAS_PER_HEAD)
                base += 1 * plane;
            if (kinds[k] == ATTN_BIAS_FULL)
                base += (1 * 4 + 1) * plane;
            for (size_t j = 0; j < 11; j++)
                c.bias[base + j] = -INFINITY;
            ref_sdpa_result r;
            CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
            size_t hidden = 0;
            for (size_t i = 0; i < r.rows; i++)
                hidden += r.hidden[i];
            CU_ASSERT(hidden >= 1);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 0, NULL, what));
            c.d.mask.causal = 1;
            ref_sdpa_free(&r);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 1, NULL, what));
            sdpa_case_free(&c);
        }
}

/* Sets the broadcast bias kinds on s in place of a drawn kind, from the
 * bits of t: KEY, or BROADCAST over a mix of batch, heads and queries. */
static void broadcast_kind(attn_sdpa_desc *s, int t)
{
    if (s->mask.bias_kind == ATTN_BIAS_NONE || t % 3 != 1)
        return;
    s->mask.bias_kind = t % 2 ? ATTN_BIAS_KEY : ATTN_BIAS_BROADCAST;
    s->bias_shape[0] = t & 4 ? s->batch : 1;
    s->bias_shape[1] = t & 8 ? s->heads_q : 1;
    s->bias_shape[2] = t & 16 ? s->seq_q : 1;
}

/* A boolean mask keep for some t, of a shape from t's bits. */
static void keep_shape(attn_sdpa_desc *s, int t)
{
    if (t % 4 != 2)
        return;
    s->keep_shape[0] = t & 8 ? s->batch : 1;
    s->keep_shape[1] = t & 16 ? s->heads_q : 1;
    s->keep_shape[2] = t & 32 ? s->seq_q : 1;
}

/* The bias expanded to FULL [batch, heads_q, seq_q, seq_kv]: element
 * (b, h, i, j) of a bias of extents ext (index 0 over an extent 1). */
static void expand_bias(const attn_sdpa_desc *d, const int ext[3],
                        const float *src, float *dst)
{
    size_t n = 0;
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < d->seq_q; i++) {
                size_t at = (size_t)(ext[0] > 1 ? b : 0);
                at = at * (size_t)ext[1] + (size_t)(ext[1] > 1 ? h : 0);
                at = at * (size_t)ext[2] + (size_t)(ext[2] > 1 ? i : 0);
                for (int j = 0; j < d->seq_kv; j++)
                    dst[n++] = src[at * (size_t)d->seq_kv + (size_t)j];
            }
}

/* Every broadcast shape [B|1, H|1, Q|1, seq_kv] (ATTN_BIAS_BROADCAST) and
 * the key bias [batch, seq_kv] (ATTN_BIAS_KEY), with -inf entries, on a
 * decoding shape and on one of several query tiles; each call also gives
 * what the FULL call of its bias expanded gives (both checked against the
 * one oracle result).  A key bias of -inf everywhere hides a batch item. */
static void test_bias_shapes(void)
{
    static const int seqs[2][2] = {{3, 70}, {70, 133}};
    for (int sh = 0; sh < 9; sh++)
        for (int si = 0; si < 2; si++) {
            attn_sdpa_desc s = shape(2, 4, 2, seqs[si][0], seqs[si][1], 16, 8);
            int ext[3];
            sdpa_case c, e;
            ref_sdpa_result r;
            char what[96];
            if (sh == 8) {
                s.mask.bias_kind = ATTN_BIAS_KEY;
                ext[0] = s.batch;
                ext[1] = ext[2] = 1;
            } else {
                s.mask.bias_kind = ATTN_BIAS_BROADCAST;
                ext[0] = s.bias_shape[0] = sh & 1 ? s.batch : 1;
                ext[1] = s.bias_shape[1] = sh & 2 ? s.heads_q : 1;
                ext[2] = s.bias_shape[2] = sh & 4 ? s.seq_q : 1;
            }
            s.mask.causal = sh % 3 == 0;
            s.dtype = (sh + si) % 2 ? ATTN_F16 : ATTN_F32;
            snprintf(what, sizeof what, "bias [%d, %d, %d, %d]%s %d x %d %s",
                     ext[0], ext[1], ext[2], s.seq_kv, sh == 8 ? " (KEY)" : "",
                     s.seq_q, s.seq_kv, s.dtype == ATTN_F16 ? "F16" : "F32");
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s,
                                                 150 + (uint64_t)(sh * 2 + si),
                                                 1.5, 0.2, sh == 5),
                                  0);
            if (sh == 8) /* batch item 1 sees no key */
                for (int j = 0; j < s.seq_kv; j++)
                    c.bias[(size_t)s.seq_kv + (size_t)j] = -INFINITY;
            CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
            s.mask.bias_kind = ATTN_BIAS_FULL;
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&e, &s,
                                                 150 + (uint64_t)(sh * 2 + si),
                                                 1.5, 0.2, sh == 5),
                                  0);
            if (e.kv_len)
                memcpy(e.kv_len, c.kv_len, (size_t)s.batch * sizeof(int32_t));
            expand_bias(&s, ext, c.bias, e.bias);
            strncat(what, " as FULL", sizeof what - strlen(what) - 1);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &e, &r, 0, NULL, what));
            ref_sdpa_free(&r);
            sdpa_case_free(&e);
            sdpa_case_free(&c);
        }
}

/* The boolean mask keep in every broadcast shape, alone or with a bias of
 * another shape (so that a device merging the two needs the shape
 * spanning both), on a decoding shape and on one of several tiles.  A 0
 * hides its key whatever the bias holds there (NaN here), and each call
 * gives what the FULL-bias call of the same mask spelt out as -inf gives
 * (both against the one oracle result).  A keep of 0 everywhere for a
 * batch item hides its rows. */
static void test_keep(void)
{
    static const int seqs[2][2] = {{2, 77}, {70, 131}};
    for (int sh = 0; sh < 8; sh++)
        for (int si = 0; si < 2; si++) {
            attn_sdpa_desc s = shape(2, 4, 2, seqs[si][0], seqs[si][1], 16, 8);
            const int with_bias = (sh + si) % 2;
            sdpa_case c, e;
            ref_sdpa_result r;
            char what[112];
            s.keep_shape[0] = sh & 1 ? s.batch : 1;
            s.keep_shape[1] = sh & 2 ? s.heads_q : 1;
            s.keep_shape[2] = sh & 4 ? s.seq_q : 1;
            if (with_bias) { /* spans what keep does not, and the keys */
                s.mask.bias_kind = ATTN_BIAS_BROADCAST;
                s.bias_shape[0] = sh & 1 ? 1 : s.batch;
                s.bias_shape[1] = sh & 2 ? 1 : s.heads_q;
                s.bias_shape[2] = s.seq_q;
            }
            s.mask.causal = sh == 3;
            s.dtype = sh % 3 == 1 ? ATTN_F16 : ATTN_F32;
            snprintf(what, sizeof what, "keep [%d, %d, %d, %d]%s %d x %d %s",
                     s.keep_shape[0], s.keep_shape[1], s.keep_shape[2],
                     s.seq_kv, with_bias ? " with a bias" : "", s.seq_q,
                     s.seq_kv, s.dtype == ATTN_F16 ? "F16" : "F32");
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s,
                                                 170 + (uint64_t)(sh * 2 + si),
                                                 1.5, 0.1, sh == 6),
                                  0);
            if (sh == 1) /* keep spans batch: item 1 sees nothing */
                memset(c.keep + c.nkeep / 2, 0, c.nkeep / 2);
            if (sh == 0 && s.dtype == ATTN_F32) /* NaN K, V behind keep */
                for (size_t j = 0; j < (size_t)s.seq_kv; j++)
                    if (!c.keep[j])
                        for (size_t g = 0; g < (size_t)(s.batch * s.heads_kv);
                             g++) {
                            float *kr =
                                (float *)c.k + (g * (size_t)s.seq_kv + j) * 16;
                            float *vr =
                                (float *)c.v + (g * (size_t)s.seq_kv + j) * 8;
                            for (int x = 0; x < 16; x++)
                                kr[x] = NAN;
                            for (int x = 0; x < 8; x++)
                                vr[x] = x % 2 ? NAN : INFINITY;
                        }
            /* NaN in the bias entries that keep hides from every row that
             * reads them (rule 1) */
            unsigned char *seen = calloc(c.nbias ? c.nbias : 1, 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(seen);
            for (int b = 0; with_bias && b < s.batch; b++)
                for (int h = 0; h < s.heads_q; h++)
                    for (int i = 0; i < s.seq_q; i++)
                        for (int j = 0; j < s.seq_kv; j++) {
                            const int x3[3] = {b, h, i};
                            size_t ka = 0, ba = 0;
                            for (int x = 0; x < 3; x++) {
                                ka = ka * (size_t)s.keep_shape[x] +
                                     (size_t)(s.keep_shape[x] > 1 ? x3[x] : 0);
                                ba = ba * (size_t)s.bias_shape[x] +
                                     (size_t)(s.bias_shape[x] > 1 ? x3[x] : 0);
                            }
                            if (c.keep[ka * (size_t)s.seq_kv + (size_t)j])
                                seen[ba * (size_t)s.seq_kv + (size_t)j] = 1;
                        }
            for (size_t x = 0; with_bias && x < c.nbias; x++)
                if (!seen[x])
                    c.bias[x] = NAN;
            free(seen);
            CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &r, 1, NULL, what));
            /* the same, keep and bias spelt out as one FULL bias */
            s.keep_shape[0] = 0;
            s.mask.bias_kind = ATTN_BIAS_FULL;
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&e, &s,
                                                 170 + (uint64_t)(sh * 2 + si),
                                                 1.5, 0.1, sh == 6),
                                  0);
            if (e.kv_len)
                memcpy(e.kv_len, c.kv_len, (size_t)s.batch * sizeof(int32_t));
            for (int b = 0, n = 0; b < s.batch; b++)
                for (int h = 0; h < s.heads_q; h++)
                    for (int i = 0; i < s.seq_q; i++)
                        for (int j = 0; j < s.seq_kv; j++, n++) {
                            const int x3[3] = {b, h, i};
                            size_t ka = 0, ba = 0;
                            for (int x = 0; x < 3; x++) {
                                ka =
                                    ka * (size_t)c.d.keep_shape[x] +
                                    (size_t)(c.d.keep_shape[x] > 1 ? x3[x] : 0);
                                ba = ba * (size_t)s.bias_shape[x] +
                                     (size_t)(s.bias_shape[x] > 1 ? x3[x] : 0);
                            }
                            e.bias[n] =
                                !c.keep[ka * (size_t)s.seq_kv + (size_t)j]
                                    ? -INFINITY
                                : with_bias
                                    ? c.bias[ba * (size_t)s.seq_kv + (size_t)j]
                                    : 0.0f;
                        }
            strncat(what, " as FULL", sizeof what - strlen(what) - 1);
            CU_ASSERT_TRUE(sdpa_case_check(ctx, &e, &r, 0, NULL, what));
            ref_sdpa_free(&r);
            sdpa_case_free(&e);
            sdpa_case_free(&c);
        }
}

static void test_fully_hidden_rows(void)
{
    /* seq_q > seq_kv with causal: the first rows see nothing; kv_len 0
     * hides a whole batch item. */
    attn_sdpa_desc s = shape(3, 2, 1, 12, 5, 8, 4);
    s.mask.causal = 1;
    for (int dt = 0; dt < 2; dt++) {
        s.dtype = dt ? ATTN_F16 : ATTN_F32;
        sdpa_case c;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 80, 1.0, 0, 1), 0);
        c.kv_len[0] = 5;
        c.kv_len[1] = 0;
        c.kv_len[2] = 2;
        ref_sdpa_result r;
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        size_t hidden = 0;
        for (size_t i = 0; i < r.rows; i++)
            hidden += r.hidden[i];
        CU_ASSERT(hidden >= 2 * 12 + 2 * 2 * 7);
        CU_ASSERT_TRUE(
            sdpa_case_check(ctx, &c, &r, 1, NULL, "fully hidden rows"));
        CU_ASSERT_TRUE(
            sdpa_case_check(ctx, &c, &r, 0, NULL, "fully hidden rows, no lse"));
        ref_sdpa_free(&r);
        sdpa_case_free(&c);
    }
}

/* ---- heads, cross-attention, value width, dtype
 * ------------------------------------- */

static void test_gqa_mqa(void)
{
    attn_sdpa_desc s = shape(2, 8, 2, 9, 12, 16, 16);
    CU_ASSERT_TRUE(run(&s, 90, 1.0, 0, 0, 2, "GQA 8/2"));
    s.heads_kv = 1;
    CU_ASSERT_TRUE(run(&s, 91, 1.0, 0, 0, 2, "MQA 8/1"));
    s.heads_kv = 4;
    s.mask.causal = 1;
    s.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    CU_ASSERT_TRUE(run(&s, 92, 1.0, 0.1, 1, 1, "GQA 8/4 masked"));
    s.dtype = ATTN_F16;
    s.heads_kv = 1;
    CU_ASSERT_TRUE(run(&s, 93, 1.0, 0.1, 1, 1, "MQA F16 masked"));
}

static void test_cross(void)
{
    attn_sdpa_desc s = shape(2, 2, 2, 17, 40, 8, 8);
    CU_ASSERT_TRUE(run(&s, 100, 1.0, 0, 0, 2, "cross 17 x 40"));
    s.seq_q = 40;
    s.seq_kv = 17;
    CU_ASSERT_TRUE(run(&s, 101, 1.0, 0, 0, 2, "cross 40 x 17"));
    s.mask.bias_kind = ATTN_BIAS_FULL;
    CU_ASSERT_TRUE(run(&s, 102, 1.0, 0.1, 1, 1, "cross 40 x 17 masked"));
}

static void test_head_dim_v(void)
{
    attn_sdpa_desc s = shape(2, 2, 1, 9, 11, 16, 3);
    CU_ASSERT_TRUE(run(&s, 110, 1.0, 0, 0, 2, "head_dim 16, head_dim_v 3"));
    s.head_dim = 8;
    s.head_dim_v = 40;
    CU_ASSERT_TRUE(run(&s, 111, 1.0, 0, 0, 2, "head_dim 8, head_dim_v 40"));
    s.dtype = ATTN_F16;
    s.mask.causal = 1;
    CU_ASSERT_TRUE(run(&s, 112, 1.0, 0, 0, 2, "F16 head_dim 8, head_dim_v 40"));
}

static void test_f16(void)
{
    attn_sdpa_desc s = shape(2, 4, 2, 13, 21, 32, 32);
    s.dtype = ATTN_F16;
    CU_ASSERT_TRUE(run(&s, 120, 1.0, 0, 0, 2, "F16"));
    s.mask.causal = 1;
    s.mask.window = 7;
    s.mask.bias_kind = ATTN_BIAS_SHARED;
    CU_ASSERT_TRUE(run(&s, 121, 1.0, 0.1, 1, 2, "F16 all masks"));
    s.scale = 0.05f;
    CU_ASSERT_TRUE(run(&s, 122, 4.0, 0.1, 1, 1, "F16 scale 0.05"));
}

/* ---- sizes
 * -------------------------------------------------------------------------- */

static void test_odd_sizes(void)
{
    static const char *names[] = {"batch",  "heads",    "seq_q",
                                  "seq_kv", "head_dim", "head_dim_v"};
    const int vals[] = {1, 7, 33, 255};
    for (int f = 0; f < 6; f++)
        for (int i = 0; i < 4; i++) {
            int dims[6] = {2, 2, 5, 9, 8, 8};
            dims[f] = vals[i];
            attn_sdpa_desc s = shape(dims[0], dims[1], dims[1], dims[2],
                                     dims[3], dims[4], dims[5]);
            char what[80];
            for (int variant = 0; variant < 3; variant++) {
                s.mask.causal = variant == 1;
                s.dtype = variant == 2 ? ATTN_F16 : ATTN_F32;
                if (variant == 2 && f == 1)
                    s.heads_kv = 1;
                snprintf(what, sizeof what, "%s = %d (%s)", names[f], vals[i],
                         variant == 0   ? "F32"
                         : variant == 1 ? "F32 causal"
                                        : "F16");
                CU_ASSERT_TRUE(run(&s,
                                   1000 + (uint64_t)(f * 40 + i * 4 + variant),
                                   1.0, 0, 0, 1, what));
            }
        }
}

static void test_long(void)
{
    struct {
        const char *what;
        int sq, skv, causal, window, dtype;
    } cases[] = {
        {"4096 causal", 4096, 4096, 1, 0, ATTN_F32},
        {"4096 causal window 129", 4096, 4096, 1, 129, ATTN_F32},
        {"4096 window 77 (not causal)", 4096, 4096, 0, 77, ATTN_F32},
        {"1 x 4096 causal (decode)", 1, 4096, 1, 0, ATTN_F32},
        {"4096 x 1500 causal", 4096, 1500, 1, 0, ATTN_F32},
        {"1500 x 4096 causal window 1000", 1500, 4096, 1, 1000, ATTN_F32},
        {"4096 F16 window 300", 4096, 4096, 1, 300, ATTN_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        attn_sdpa_desc s = shape(1, 1, 1, cases[i].sq, cases[i].skv, 16, 16);
        s.mask.causal = cases[i].causal;
        s.mask.window = cases[i].window;
        s.dtype = (attn_dtype)cases[i].dtype;
        /* amp 3: sharp enough that single keys matter. */
        CU_ASSERT_TRUE(
            run(&s, 2000 + (uint64_t)i, 3.0, 0, 0, 1, cases[i].what));
    }
    attn_sdpa_desc s = shape(2, 2, 1, 1000, 4096, 8, 8);
    s.mask.causal = 1;
    sdpa_case c;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 2100, 2.0, 0, 1), 0);
    c.kv_len[0] = 3001;
    c.kv_len[1] = 4095;
    CU_ASSERT_TRUE(
        sdpa_case_check(ctx, &c, NULL, 1, NULL, "1000 x 4096 causal kv_len"));
    sdpa_case_free(&c);
}

/* Working memory sized by head_dim grows and shrinks between calls. */
static void test_large_head_dim(void)
{
    attn_sdpa_desc s = shape(1, 2, 1, 20, 30, 1000, 513);
    s.mask.causal = 1;
    CU_ASSERT_TRUE(run(&s, 150, 0.3, 0, 0, 1, "head_dim 1000, head_dim_v 513"));
    attn_sdpa_desc small = shape(2, 2, 2, 9, 9, 4, 4);
    CU_ASSERT_TRUE(run(&small, 151, 1.0, 0, 0, 1, "head_dim 4 after 1000"));
    s = shape(1, 1, 1, 7, 40, 96, 2048);
    s.dtype = ATTN_F16;
    CU_ASSERT_TRUE(run(&s, 152, 1.0, 0, 0, 1, "F16 head_dim_v 2048"));
    CU_ASSERT_TRUE(run(&small, 153, 1.0, 0, 0, 1, "head_dim 4 after 2048"));
}

/* ---- numerics
 * ------------------------------------------------------------------------ */

static void test_extreme_logits(void)
{
    attn_sdpa_desc s = shape(2, 2, 2, 33, 47, 16, 16);
    CU_ASSERT_TRUE(run(&s, 300, 50.0, 0, 0, 1, "inputs x 50"));
    s.mask.causal = 1;
    s.mask.bias_kind = ATTN_BIAS_FULL;
    CU_ASSERT_TRUE(run(&s, 301, 50.0, 0.1, 1, 1, "inputs x 50, masked"));
    s.dtype = ATTN_F16;
    CU_ASSERT_TRUE(run(&s, 302, 50.0, 0.1, 1, 1, "F16 inputs x 50, masked"));
    s = shape(1, 1, 1, 9, 300, 64, 8);
    s.scale = 1.0f;
    CU_ASSERT_TRUE(run(&s, 303, 30.0, 0, 0, 1, "logits ~ 1e4"));
}

/* A NaN in one query row may spoil that row; every other row still
 * matches. */
static void test_nan_isolated(void)
{
    for (int dt = 0; dt < 2; dt++) {
        attn_sdpa_desc s = shape(2, 4, 2, 7, 9, 8, 8);
        s.mask.causal = dt;
        s.dtype = dt ? ATTN_F16 : ATTN_F32;
        sdpa_case c;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 400, 1.0, 0, 0), 0);
        size_t row = ((size_t)1 * 4 + 3) * 7 + 5; /* b 1, h 3, i 5 */
        if (dt)
            ((uint16_t *)c.q)[row * 8 + 2] = 0x7e00;
        else
            ((float *)c.q)[row * 8 + 2] = NAN;
        unsigned char *skip = calloc(c.nlse, 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(skip);
        skip[row] = 1;
        ref_sdpa_result r;
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
        CU_ASSERT_TRUE(
            sdpa_case_check(ctx, &c, &r, 1, skip, "NaN in one query row"));
        ref_sdpa_free(&r);
        free(skip);
        sdpa_case_free(&c);
    }
}

/* Keys past kv_len are hidden: whatever memory holds there (NaN, inf, as
 * in an uninitialised KV cache) must not reach the output. */
static void test_garbage_past_kv_len(void)
{
    for (int dt = 0; dt < 2; dt++) {
        attn_sdpa_desc s = shape(3, 2, 2, 6, 12, 8, 8);
        s.dtype = dt ? ATTN_F16 : ATTN_F32;
        sdpa_case c;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 500, 1.0, 0, 1), 0);
        const int32_t lens[3] = {5, 12, 0};
        memcpy(c.kv_len, lens, sizeof lens);
        for (int b = 0; b < 3; b++)
            for (int h = 0; h < 2; h++)
                for (int j = lens[b]; j < 12; j++)
                    for (int e = 0; e < 8; e++) {
                        size_t at =
                            (((size_t)b * 2 + (size_t)h) * 12 + (size_t)j) * 8 +
                            (size_t)e;
                        if (dt) {
                            ((uint16_t *)c.k)[at] = (e & 1) ? 0x7e00 : 0x7c00;
                            ((uint16_t *)c.v)[at] = (e & 1) ? 0xfc00 : 0x7e00;
                        } else {
                            ((float *)c.k)[at] = (e & 1) ? NAN : INFINITY;
                            ((float *)c.v)[at] = (e & 1) ? -INFINITY : NAN;
                        }
                    }
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, NULL, 1, NULL,
                                       dt ? "F16 NaN/inf past kv_len"
                                          : "F32 NaN/inf past kv_len"));
        sdpa_case_free(&c);
    }
}

/* A key hidden from every row by a -inf bias column, in a causal window
 * crossing the kernels' tiles: its V (inf, NaN) must not reach any row
 * either (0 * inf is NaN).  The reference sees clean inputs. */
static void test_garbage_behind_bias(void)
{
    for (int dt = 0; dt < 2; dt++) {
        attn_sdpa_desc s = shape(1, 2, 1, 40, 70, 8, 8);
        ref_sdpa_result ref;
        sdpa_case c;
        s.dtype = dt ? ATTN_F16 : ATTN_F32;
        s.mask.causal = 1;
        s.mask.bias_kind = ATTN_BIAS_SHARED;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 501, 1.0, 0, 0), 0);
        for (int i = 0; i < 40; i++)
            c.bias[(size_t)i * 70 + 33] = -INFINITY;
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
        for (int e = 0; e < 8; e++) {
            size_t at = (size_t)33 * 8 + (size_t)e;
            if (dt) {
                ((uint16_t *)c.k)[at] = 0x7e00;
                ((uint16_t *)c.v)[at] = (e & 1) ? 0xfc00 : 0x7c00;
            } else {
                ((float *)c.k)[at] = NAN;
                ((float *)c.v)[at] = (e & 1) ? -INFINITY : INFINITY;
            }
        }
        CU_ASSERT_TRUE(sdpa_case_check(ctx, &c, &ref, 1, NULL,
                                       dt ? "F16 inf V behind a -inf bias"
                                          : "F32 inf V behind a -inf bias"));
        ref_sdpa_free(&ref);
        sdpa_case_free(&c);
    }
}

/* One visible key: O = V.  In F16 the value must come back bit for bit
 * (every finite half, subnormals included), which pins both conversions. */
static void test_f16_exact_single_key(void)
{
    const int n = 63488; /* finite halves: all but exponent 31 */
    attn_sdpa_desc s = shape(1, 1, 1, 3, 1, 4, n);
    s.dtype = ATTN_F16;
    sdpa_case c;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &s, 600, 1.0, 0, 0), 0);
    uint16_t *v = c.v;
    int e = 0;
    for (uint32_t h = 0; h < 0x10000u; h++)
        if (((h >> 10) & 0x1f) != 0x1f)
            v[e++] = (uint16_t)h;
    CU_ASSERT_EQUAL_FATAL(e, n);
    uint16_t *o = malloc((size_t)3 * (size_t)n * sizeof *o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    attn_status st = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, NULL);
    if (st != ATTN_OK && harness_declined(ctx, &c.d, st, "F16 single key")) {
        free(o);
        sdpa_case_free(&c);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(st, ATTN_OK);
    harness_taken();
    int bad = 0, first = -1;
    for (int i = 0; i < 3 * n; i++) {
        uint16_t want = v[i % n], got = o[i];
        int zero = (want & 0x7fff) == 0 && (got & 0x7fff) == 0;
        if (got != want && !zero) {
            if (first < 0)
                first = i;
            bad++;
        }
    }
    if (bad)
        printf(
            "\nFAIL F16 single key: o[%d] = 0x%04x, want 0x%04x (%d wrong)\n",
            first, o[first], v[first % n], bad);
    CU_ASSERT_EQUAL(bad, 0);
    free(o);
    sdpa_case_free(&c);
}

/* Random shapes with every feature on or off, seeded. */
/* Decoding shapes: a few query rows (seq_q 1..4) against short and long
 * key sequences, every feature drawn at random.  On a device with path
 * AUTO these take the decode kernel (keys split over work-groups). */
static void test_decode_mix(void)
{
    /* 2000 keys: the native decode form splits the keys of few (batch, kv
     * head) pairs; head sizes 64 and 128 take its vector blocks whole */
    static const int skv[] = {1, 5, 33, 300, 2000};
    static const int dims[] = {0, 0, 64, 128};
    ref_rng g;
    ref_rng_seed(&g, 777);
    for (int t = 0; t < 60; t++) {
        int hkv = ref_rng_int(&g, 1, 3);
        int group = ref_rng_int(&g, 1, t < 40 ? 4 : 8);
        int d = dims[ref_rng_int(&g, 0, 3)];
        int dv = d ? d : ref_rng_int(&g, 1, 70);
        attn_sdpa_desc s = shape(ref_rng_int(&g, 1, 2), hkv * group, hkv,
                                 ref_rng_int(&g, 1, t < 40 ? 4 : 8), skv[t % 5],
                                 d ? d : ref_rng_int(&g, 1, 70), dv);
        s.score =
            ref_rng_int(&g, 0, 3) == 0 ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
        s.dtype = ref_rng_int(&g, 0, 1) ? ATTN_F16 : ATTN_F32;
        s.mask.causal = ref_rng_int(&g, 0, 1);
        s.mask.window = ref_rng_int(&g, 0, 1) ? 0 : ref_rng_int(&g, 1, 40);
        s.mask.bias_kind = (attn_bias_kind)ref_rng_int(&g, 0, 3);
        broadcast_kind(&s, t);
        keep_shape(&s, t);
        s.causal_align = (attn_causal_align)(t / 2 % 2);
        int kv = ref_rng_int(&g, 0, 1);
        char what[180];
        snprintf(what, sizeof what,
                 "decode %d: b%d h%d/%d s%d/%d d%d/%d score %d dtype %d "
                 "causal %d window %d align %d bias %d kv_len %d",
                 t, s.batch, s.heads_q, s.heads_kv, s.seq_q, s.seq_kv,
                 s.head_dim, s.head_dim_v, (int)s.score, (int)s.dtype,
                 s.mask.causal, s.mask.window, (int)s.causal_align,
                 (int)s.mask.bias_kind, kv);
        CU_ASSERT_TRUE(run(&s, 9000 + (uint64_t)t, t % 7 == 0 ? 50.0 : 1.0, 0.1,
                           kv, 2, what));
    }
}

static void test_random_mix(void)
{
    ref_rng g;
    ref_rng_seed(&g, 4242);
    for (int t = 0; t < 60; t++) {
        int hkv = ref_rng_int(&g, 1, 3);
        int group = ref_rng_int(&g, 1, 3);
        attn_sdpa_desc s =
            shape(ref_rng_int(&g, 1, 3), hkv * group, hkv,
                  ref_rng_int(&g, 1, 70), ref_rng_int(&g, 1, 70),
                  ref_rng_int(&g, 1, 40), ref_rng_int(&g, 1, 40));
        s.score =
            ref_rng_int(&g, 0, 3) == 0 ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
        s.scale =
            ref_rng_int(&g, 0, 1) ? 0.0f : (float)ref_rng_uniform(&g, -1, 1);
        s.dtype = ref_rng_int(&g, 0, 1) ? ATTN_F16 : ATTN_F32;
        s.mask.causal = ref_rng_int(&g, 0, 1);
        s.mask.window = ref_rng_int(&g, 0, 1) ? 0 : ref_rng_int(&g, 1, 30);
        s.mask.bias_kind = (attn_bias_kind)ref_rng_int(&g, 0, 3);
        broadcast_kind(&s, t);
        keep_shape(&s, t);
        s.causal_align = (attn_causal_align)(t / 2 % 2);
        int kv = ref_rng_int(&g, 0, 1);
        char what[180];
        snprintf(what, sizeof what,
                 "mix %d: b%d h%d/%d s%d/%d d%d/%d score %d dtype %d causal %d "
                 "window %d align %d bias %d kv_len %d",
                 t, s.batch, s.heads_q, s.heads_kv, s.seq_q, s.seq_kv,
                 s.head_dim, s.head_dim_v, (int)s.score, (int)s.dtype,
                 s.mask.causal, s.mask.window, (int)s.causal_align,
                 (int)s.mask.bias_kind, kv);
        CU_ASSERT_TRUE(run(&s, 5000 + (uint64_t)t,
                           ref_rng_uniform(&g, 0.5, 4.0), 0.15, kv, t % 3,
                           what));
    }
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
        {"oracle self-check", test_oracle},
        {"dot score and scale", test_dot},
        {"additive score", test_additive},
        {"causal (bottom-right)", test_causal},
        {"causal and window top-left", test_causal_top_left},
        {"top-left equals its mask as a FULL bias", test_top_left_as_bias},
        {"left padding (q_start, kv_start)", test_left_padding},
        {"left padding out of range", test_left_padding_invalid},
        {"causal_offset", test_causal_offset},
        {"sliding window", test_window},
        {"kv_len", test_kv_len},
        {"bias kinds with -inf", test_bias},
        {"broadcast and key biases", test_bias_shapes},
        {"boolean mask keep", test_keep},
        {"fully hidden rows", test_fully_hidden_rows},
        {"GQA and MQA", test_gqa_mqa},
        {"cross-attention", test_cross},
        {"head_dim_v != head_dim", test_head_dim_v},
        {"F16", test_f16},
        {"odd sizes in every dimension", test_odd_sizes},
        {"long sequences", test_long},
        {"extreme logits", test_extreme_logits},
        {"NaN stays in its row", test_nan_isolated},
        {"large head_dim, then small", test_large_head_dim},
        {"NaN/inf past kv_len never read", test_garbage_past_kv_len},
        {"inf V behind a -inf bias never read", test_garbage_behind_bias},
        {"decoding shapes (seq_q 1..8), every feature", test_decode_mix},
        {"F16 single key is exact", test_f16_exact_single_key},
        {"random feature mix", test_random_mix},
        {NULL, NULL},
    };
    return harness_main("sdpa", suite_init, suite_clean, tests);
}
