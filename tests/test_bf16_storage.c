/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_bf16_storage: attn_sdpa with q, k, v and o stored as bfloat16
 * (ATTN_BF16) against the double-precision oracle given the very
 * bfloat16 inputs the library saw: dot and additive scores, masks (causal
 * both alignments, window, kv_len, bias, boolean keep, left padding), GQA
 * and MQA, head_dim_v, odd and long sizes, the decode shapes (few query
 * rows, long keys) and lse.  The tolerance is the float one of tests/ref.h
 * plus the output's rounding to 8 significant bits: REF_BF16_REL (2^-8,
 * half an ulp of bfloat16) times |O|, and REF_BF16_ABS (2^-126) for an
 * output the store flushes to zero.  The store's rounding shows exactly
 * where O is known in closed form: to nearest even on ties, a subnormal
 * result flushed to a zero of its sign, NaN kept NaN.  Runs on the context
 * ATTN_DEVICE / ATTN_TEST_DEVICE picks (ctest: each instruction set of the
 * native backend, BF16 products, each OpenCL variant PoCL runs).
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
    s.dtype = ATTN_BF16;
    return s;
}

/* The case against the oracle, with and without lse. */
static int run(const attn_sdpa_desc *s, uint64_t seed, double amp, double ninf,
               int starts, const char *what)
{
    sdpa_case c;
    ref_sdpa_result r;
    int ok = 1;
    if (sdpa_case_init(&c, s, seed, amp, ninf, starts) != 0)
        return 0;
    if (ref_sdpa(&c.d, c.q, c.k, c.v, &r) != 0) {
        sdpa_case_free(&c);
        return 0;
    }
    ok &= sdpa_case_check(ctx, &c, &r, 1, NULL, what);
    ok &= sdpa_case_check(ctx, &c, &r, 0, NULL, what);
    ref_sdpa_free(&r);
    sdpa_case_free(&c);
    return ok;
}

/* ---- the oracle's conversion --------------------------------------------
 */

static void test_oracle_bf16(void)
{
    int bad = 0;
    /* the exact conversion is the 16-bit shift; every bfloat16 survives
     * a round trip but the subnormal ones, flushed to a zero of their
     * sign, and NaN, kept a NaN */
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float f = ref_bf16_to_f32((uint16_t)h);
        const uint16_t back = ref_f32_to_bf16(f);
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        if (isnan(f))
            bad += (h & 0x7f80u) != 0x7f80u || !isnan(ref_bf16_to_f32(back));
        else if ((h & 0x7f80u) == 0)
            bad += u != h << 16 || back != (h & 0x8000u);
        else
            bad += u != h << 16 || back != h;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie, even */
    CU_ASSERT_EQUAL(ref_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(-2.0f), 0xc000);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(0x1.ffp127f), 0x7f80); /* past the max */
    CU_ASSERT_EQUAL(ref_f32_to_bf16(0x1.fep127f), 0x7f7f);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(0x1p-127f), 0x0000); /* subnormal */
    CU_ASSERT_EQUAL(ref_f32_to_bf16(-0x1p-130f), 0x8000);
    CU_ASSERT_EQUAL(ref_f32_to_bf16(0x1p-126f), 0x0080);
    CU_ASSERT_TRUE(isnan(ref_bf16_to_f32(ref_f32_to_bf16(NAN))));
    CU_ASSERT_DOUBLE_EQUAL(ref_bf16_to_f32(0x3eab), 0.333984375, 0.0);
}

/* ---- against the oracle -------------------------------------------------
 */

static void test_dot(void)
{
    attn_sdpa_desc s = shape(2, 3, 3, 11, 13, 16, 16);
    CU_ASSERT_TRUE(run(&s, 1, 1.0, 0, 0, "bf16 dot"));
    s.scale = 0.3f;
    CU_ASSERT_TRUE(run(&s, 2, 2.0, 0, 0, "bf16 dot, scale 0.3"));
    s = shape(1, 1, 1, 1, 1, 1, 1);
    CU_ASSERT_TRUE(run(&s, 3, 1.0, 0, 0, "bf16 dot, all sizes 1"));
    s = shape(1, 4, 4, 96, 160, 64, 64);
    CU_ASSERT_TRUE(run(&s, 4, 2.0, 0, 0, "bf16 d64"));
    s = shape(1, 2, 2, 130, 130, 128, 128);
    s.mask.causal = 1;
    CU_ASSERT_TRUE(run(&s, 5, 1.0, 0, 0, "bf16 d128 causal"));
    s = shape(1, 2, 2, 45, 77, 63, 33);
    CU_ASSERT_TRUE(run(&s, 6, 2.0, 0, 0, "bf16 d63/33 odd sizes"));
    s = shape(1, 2, 1, 300, 333, 40, 24);
    s.mask.causal = 1;
    CU_ASSERT_TRUE(run(&s, 7, 1.5, 0, 0, "bf16 d40/24 long, gqa"));
}

static void test_additive(void)
{
    attn_sdpa_desc s = shape(2, 4, 2, 9, 14, 12, 10);
    s.score = ATTN_SCORE_ADDITIVE;
    CU_ASSERT_TRUE(run(&s, 11, 1.0, 0, 0, "bf16 additive"));
}

static void test_masks(void)
{
    const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                    ATTN_BIAS_FULL};
    attn_sdpa_desc s = shape(2, 4, 2, 37, 50, 16, 16);
    s.mask.causal = 1;
    s.mask.window = 9;
    CU_ASSERT_TRUE(
        run(&s, 21, 1.0, 0, CASE_KV_LEN, "bf16 causal window kv_len"));
    s.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_TRUE(run(&s, 22, 1.0, 0, 0, "bf16 top-left causal window"));
    for (int k = 0; k < 3; k++) {
        char what[64];
        s = shape(2, 4, 2, 6, 11, 8, 8);
        s.mask.bias_kind = kinds[k];
        snprintf(what, sizeof what, "bf16 bias kind %d", (int)kinds[k]);
        CU_ASSERT_TRUE(run(&s, 23 + (uint64_t)k, 1.0, 0.2, 0, what));
    }
    s = shape(2, 4, 2, 12, 19, 16, 16);
    s.keep_shape[0] = 2;
    s.keep_shape[1] = 1;
    s.keep_shape[2] = 12;
    CU_ASSERT_TRUE(run(&s, 27, 1.0, 0, 0, "bf16 boolean keep [B,1,Sq,Skv]"));
    s = shape(3, 2, 2, 10, 14, 16, 16);
    s.mask.causal = 1;
    CU_ASSERT_TRUE(
        run(&s, 28, 1.0, 0, CASE_KV_START | CASE_Q_START, "bf16 left padding"));
}

static void test_gqa_decode(void)
{
    const int sq[] = {1, 2, 4, 1};
    const int skv[] = {300, 257, 129, 1000};
    for (int i = 0; i < 4; i++) {
        char what[64];
        attn_sdpa_desc s = shape(3, 8, i == 3 ? 1 : 2, sq[i], skv[i], 64, 64);
        s.mask.causal = i == 1;
        snprintf(what, sizeof what, "bf16 decode seq_q %d seq_kv %d", sq[i],
                 skv[i]);
        CU_ASSERT_TRUE(
            run(&s, 31 + (uint64_t)i, 2.0, 0, i == 2 ? CASE_KV_LEN : 0, what));
    }
    attn_sdpa_desc s = shape(1, 4, 4, 3, 90, 80, 48);
    CU_ASSERT_TRUE(run(&s, 35, 1.0, 0, 0, "bf16 decode d80/48"));
}

/* ---- the store's rounding -----------------------------------------------
 */

/* One call of 1 x 1 x 1 x nk keys, head_dim 1, q = 0 (uniform weights over
 * the keys), values v (bfloat16 bits); *o receives O's bits.  Returns the
 * status (a forced kernel's refusal counts as OK with *o untouched). */
static attn_status call_mean(int nk, const uint16_t *v, uint16_t *o,
                             int *declined)
{
    attn_sdpa_desc s = shape(1, 1, 1, 1, nk, 1, 1);
    uint16_t q = 0, k[4] = {0, 0, 0, 0};
    attn_status st;
    *o = 0xffff;
    *declined = 0;
    st = attn_sdpa(ctx, &s, &q, k, v, o, NULL);
    if (st != ATTN_OK && harness_declined(ctx, &s, st, "bf16 rounding")) {
        *declined = 1;
        return ATTN_OK;
    }
    if (st == ATTN_OK)
        harness_taken();
    return st;
}

static void test_store_rounding(void)
{
    static const struct {
        int nk;
        uint16_t v[2], want;
        const char *what;
    } t[] = {
        {1, {0x3f81, 0}, 0x3f81, "one key: O is the value"},
        {1, {0xc2f7, 0}, 0xc2f7, "one key, negative"},
        /* means that fall halfway between two bfloat16 */
        {2, {0x3f80, 0x3f81}, 0x3f80, "tie 1 + 2^-8 to even 1"},
        {2, {0x3f81, 0x3f82}, 0x3f82, "tie 1 + 3 2^-8 to even 1 + 2^-6"},
        /* a float subnormal result: a zero of its sign */
        {1, {0x0001, 0}, 0x0000, "subnormal to +0"},
        {1, {0x8005, 0}, 0x8000, "subnormal to -0"},
        {1, {0x7f7f, 0}, 0x7f7f, "largest bfloat16 kept"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint16_t o;
        int declined;
        CU_ASSERT_EQUAL_FATAL(call_mean(t[i].nk, t[i].v, &o, &declined),
                              ATTN_OK);
        if (declined)
            continue;
        HARNESS_EXPECT(o == t[i].want, t[i].what);
        if (o != t[i].want)
            printf("\n%s: 0x%04x, want 0x%04x\n", t[i].what, o, t[i].want);
    }
}

/* NaN in a key reaches every row that sees it and no other (attn.h,
 * non-finite inputs); a NaN value the column of those rows. */
static void test_nonfinite(void)
{
    for (int which = 0; which < 2; which++) {
        attn_sdpa_desc s = shape(1, 2, 2, 8, 8, 16, 16);
        sdpa_case c;
        char what[64];
        s.mask.causal = 1;
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&c, &s, 41 + (uint64_t)which, 1.0, 0, 0), 0);
        /* key 5 of head 1: k[5][3] or v[5][7] = NaN (0x7fc1) */
        uint16_t *x = which ? c.v : c.k;
        x[(size_t)(8 + 5) * 16 + (which ? 7 : 3)] = 0x7fc1;
        uint16_t *o = malloc(c.no * 2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        attn_status st = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, NULL);
        snprintf(what, sizeof what, "bf16 NaN in %s", which ? "v" : "k");
        if (st != ATTN_OK && harness_declined(ctx, &c.d, st, what)) {
            free(o);
            sdpa_case_free(&c);
            continue;
        }
        CU_ASSERT_EQUAL(st, ATTN_OK);
        harness_taken();
        int bad = 0;
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < 8; i++)
                for (int e = 0; e < 16; e++) {
                    uint16_t b =
                        o[((size_t)h * 8 + (size_t)i) * 16 + (size_t)e];
                    int nan = (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0;
                    /* causal: rows 5.. of head 1 see key 5; a NaN
                     * value spoils its own column only */
                    bad += nan != (h == 1 && i >= 5 && (!which || e == 7));
                }
        HARNESS_EXPECT(bad == 0, what);
        free(o);
        sdpa_case_free(&c);
    }
}

static int suite_init(void)
{
    ctx = harness_context();
    return ctx ? 0 : -1;
}

static int suite_clean(void)
{
    attn_context_destroy(ctx);
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"oracle bfloat16", test_oracle_bf16},
        {"dot", test_dot},
        {"additive", test_additive},
        {"masks", test_masks},
        {"gqa and decode shapes", test_gqa_decode},
        {"store rounding", test_store_rounding},
        {"non-finite", test_nonfinite},
        {NULL, NULL},
    };
    return harness_main("bf16_storage", suite_init, suite_clean, tests);
}
