/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_tf32: the TF32 error bound of attn.h (attn_precision) holds for the
 * arithmetic it describes.  No kernel of the library has a TF32 path yet,
 * so the bound is tested on the native attention core run in its TF32
 * emulation (attn_cpu_sdpa with emulate = ATTN_PRECISION_TF32: q and k of
 * the dot score, p and v rounded to TF32 before their products, sums in
 * float), in every instruction set's copy this machine runs, against the
 * double-precision oracle with the tolerances of tests/ref.h, "precision":
 * derived from the rounding of the inputs (u = 2^-11 per input, so
 * t = 2u + u^2 per product; the scores then move by (g + t) M, O by
 * (exp(2e) - 1 + t exp(2e)) V), never fitted to the results.  Each case
 * also shows that the bound is needed: the emulated results leave the
 * EXACT tolerance somewhere, and differ from the EXACT run.  Private
 * symbols: linked with the static library.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "cases.h"
#include "cpu/cpu_impl.h"
#include "cpu/tf32.h"
#include "harness.h"
#include "ref.h"

typedef struct tf32_case {
    const char *name;
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    attn_dtype dtype;
    attn_score score;
    int causal, window, kv_len;
    attn_bias_kind bias;
    double qk_amp;
    int must_exceed; /* the EXACT tolerance must not hold (F32, large M) */
} tf32_case;

static const tf32_case cases[] = {
    {"d64 f32", 1, 4, 4, 96, 160, 64, 64, ATTN_F32, ATTN_SCORE_DOT, 0, 0, 0,
     ATTN_BIAS_NONE, 2.0, 1},
    {"d128 f32 causal", 1, 2, 2, 130, 130, 128, 128, ATTN_F32, ATTN_SCORE_DOT,
     1, 0, 0, ATTN_BIAS_NONE, 1.0, 1},
    {"d40/24 f32 gqa window kv_len lse", 2, 4, 2, 37, 150, 40, 24, ATTN_F32,
     ATTN_SCORE_DOT, 1, 50, 1, ATTN_BIAS_NONE, 3.0, 0},
    {"d64 f32 bias per head", 1, 2, 2, 65, 70, 64, 64, ATTN_F32, ATTN_SCORE_DOT,
     0, 0, 0, ATTN_BIAS_PER_HEAD, 2.0, 0},
    {"d64 f16 causal", 1, 2, 1, 80, 200, 64, 64, ATTN_F16, ATTN_SCORE_DOT, 1, 0,
     0, ATTN_BIAS_NONE, 2.0, 0},
    {"d16 f32 additive", 1, 2, 2, 33, 90, 16, 16, ATTN_F32, ATTN_SCORE_ADDITIVE,
     0, 0, 0, ATTN_BIAS_NONE, 1.0, 0},
    {"d1 f32 decode", 3, 2, 2, 1, 300, 1, 8, ATTN_F32, ATTN_SCORE_DOT, 0, 0, 0,
     ATTN_BIAS_NONE, 4.0, 0},
};

/* NaN in the keys and values kv_len hides (a hidden key never counts,
 * attn.h rule 1; the oracle does not read them). */
static void poison_hidden(sdpa_case *c)
{
    const attn_sdpa_desc *d = &c->d;
    size_t es = d->dtype == ATTN_F16 ? 2 : 4;
    for (int b = 0; b < d->batch; b++)
        for (int g = 0; g < d->heads_kv; g++)
            for (int j = c->kv_len[b]; j < d->seq_kv; j++) {
                size_t row = ((size_t)b * (size_t)d->heads_kv + (size_t)g) *
                                 (size_t)d->seq_kv +
                             (size_t)j;
                memset((char *)c->k + row * (size_t)d->head_dim * es, 0xff,
                       (size_t)d->head_dim * es);
                memset((char *)c->v + row * (size_t)d->head_dim_v * es, 0xff,
                       (size_t)d->head_dim_v * es);
            }
}

/* One case on cpu: the TF32 emulation within the TF32 bound, and (F32)
 * not the EXACT result. */
static void run_case(attn_cpu *cpu, const char *isa, const tf32_case *tc,
                     uint64_t seed)
{
    attn_sdpa_desc shape = ATTN_SDPA_DESC_INIT;
    sdpa_case c;
    ref_sdpa_result ref;
    char what[160];
    size_t es;
    void *o, *o_exact;
    float *lse;
    shape.batch = tc->batch;
    shape.heads_q = tc->heads_q;
    shape.heads_kv = tc->heads_kv;
    shape.seq_q = tc->seq_q;
    shape.seq_kv = tc->seq_kv;
    shape.head_dim = tc->head_dim;
    shape.head_dim_v = tc->head_dim_v;
    shape.dtype = tc->dtype;
    shape.score = tc->score;
    shape.mask.causal = tc->causal;
    shape.mask.window = tc->window;
    shape.mask.bias_kind = tc->bias;
    snprintf(what, sizeof what, "%s, %s kernels", tc->name, isa);
    CU_ASSERT_EQUAL_FATAL(
        sdpa_case_init(&c, &shape, seed, tc->qk_amp, 0.1, tc->kv_len), 0);
    if (tc->kv_len)
        poison_hidden(&c);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    es = tc->dtype == ATTN_F16 ? 2 : 4;
    o = malloc(c.no * es);
    o_exact = malloc(c.no * es);
    lse = malloc(c.nlse * sizeof *lse);
    CU_ASSERT_FATAL(o && o_exact && lse);
    CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, c.q, c.k, c.v, o, lse, NULL,
                                  ATTN_PRECISION_TF32),
                    ATTN_OK);
    HARNESS_EXPECT(
        ref_check_sdpa_at(what, &c.d, &ref, o, lse, NULL, ATTN_PRECISION_TF32),
        what);
    CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, c.q, c.k, c.v, o_exact, NULL, NULL,
                                  ATTN_PRECISION_EXACT),
                    ATTN_OK);
    /* The emulation is real: it rounds what EXACT does not. */
    HARNESS_EXPECT(memcmp(o, o_exact, c.no * es) != 0, what);
    if (tc->dtype == ATTN_F32) {
        double x = ref_o_excess_f32(&ref, o, ATTN_PRECISION_EXACT);
        printf("\n  %s: worst error of O %.2fx the EXACT tolerance, %.3fx "
               "the TF32 one",
               what, x, ref_o_excess_f32(&ref, o, ATTN_PRECISION_TF32));
        if (tc->must_exceed)
            HARNESS_EXPECT(x > 1.0, what);
    }
    free(o);
    free(o_exact);
    free(lse);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

/* Token-major tensors [batch, seq, heads * d], as the multi-head layer
 * hands them over: the rows are copied into the working tiles before they
 * are rounded. */
static void run_strided(attn_cpu *cpu, const char *isa)
{
    enum { B = 2, H = 3, S = 70, D = 24 };
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_cpu_layout lay;
    sdpa_case c;
    ref_sdpa_result ref;
    float *tq = malloc(sizeof(float) * B * S * H * D);
    float *tk = malloc(sizeof(float) * B * S * H * D);
    float *tv = malloc(sizeof(float) * B * S * H * D);
    float *to = malloc(sizeof(float) * B * S * H * D);
    float *o = malloc(sizeof(float) * B * S * H * D);
    char what[96];
    d.batch = B;
    d.heads_q = d.heads_kv = H;
    d.seq_q = d.seq_kv = S;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = 1;
    snprintf(what, sizeof what, "token-major rows, %s kernels", isa);
    CU_ASSERT_FATAL(tq && tk && tv && to && o);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 77, 2.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < S; i++)
                for (size_t e = 0; e < D; e++) {
                    size_t hm = ((b * H + h) * S + i) * D + e;
                    size_t tm = (b * S + i) * H * D + h * D + e;
                    tq[tm] = ((const float *)c.q)[hm];
                    tk[tm] = ((const float *)c.k)[hm];
                    tv[tm] = ((const float *)c.v)[hm];
                }
    lay.q[0] = lay.k[0] = lay.v[0] = lay.o[0] = (size_t)S * H * D;
    lay.q[1] = lay.k[1] = lay.v[1] = lay.o[1] = D;
    lay.q[2] = lay.k[2] = lay.v[2] = lay.o[2] = (size_t)H * D;
    CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, tq, tk, tv, to, NULL, &lay,
                                  ATTN_PRECISION_TF32),
                    ATTN_OK);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < S; i++)
                for (size_t e = 0; e < D; e++)
                    o[((b * H + h) * S + i) * D + e] =
                        to[(b * S + i) * H * D + h * D + e];
    HARNESS_EXPECT(
        ref_check_sdpa_at(what, &c.d, &ref, o, NULL, NULL, ATTN_PRECISION_TF32),
        what);
    HARNESS_EXPECT(ref_o_excess_f32(&ref, o, ATTN_PRECISION_EXACT) > 1.0, what);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    free(tq);
    free(tk);
    free(tv);
    free(to);
    free(o);
}

static void test_bound(void)
{
    int ran = 0;
    for (int isa = 0; isa < ATTN_CPU_ISA_COUNT; isa++) {
        attn_cpu *cpu = NULL;
        const char *name = attn_cpu_isa_name((attn_cpu_isa)isa);
        if (!attn_cpu_isa_available((attn_cpu_isa)isa)) {
            printf("\n  SKIP %s kernels: not on this machine or build", name);
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(attn_cpu_create(2, (attn_cpu_isa)isa, &cpu),
                              ATTN_OK);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_case(cpu, name, &cases[i], 1000 + i);
        run_strided(cpu, name);
        attn_cpu_destroy(cpu);
        ran++;
    }
    CU_ASSERT(ran > 0);
}

/* EXACT through the same entry point stays within the EXACT tolerance
 * (the emulation switch touches nothing else). */
static void test_exact_unchanged(void)
{
    attn_cpu *cpu = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    sdpa_case c;
    ref_sdpa_result ref;
    float *o, *lse;
    d.batch = 1;
    d.heads_q = d.heads_kv = 2;
    d.seq_q = d.seq_kv = 130;
    d.head_dim = d.head_dim_v = 64;
    d.mask.causal = 1;
    CU_ASSERT_EQUAL_FATAL(attn_cpu_create(2, attn_cpu_isa_best(), &cpu),
                          ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 5, 2.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    o = malloc(c.no * sizeof *o);
    lse = malloc(c.nlse * sizeof *lse);
    CU_ASSERT_FATAL(o && lse);
    for (int p = ATTN_PRECISION_EXACT; p <= ATTN_PRECISION_3XTF32; p++) {
        if (p == ATTN_PRECISION_TF32)
            continue;
        CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, c.q, c.k, c.v, o, lse, NULL,
                                      (attn_precision)p),
                        ATTN_OK);
        HARNESS_EXPECT(ref_check_sdpa("EXACT and 3XTF32 compute as EXACT", &c.d,
                                      &ref, o, lse, NULL),
                       attn_precision_name((attn_precision)p));
    }
    free(o);
    free(lse);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_cpu_destroy(cpu);
}

/* TF32 rounding by its definition: the float's value to a multiple of
 * its exponent's quantum (2^(e - 10), e no lower than float's -126), to
 * nearest, ties to the even multiple; in double, where that is exact. */
static float tf32_ref(float x)
{
    int e;
    double q, m, r;
    if (x == 0.0f || !isfinite(x))
        return x;
    e = ilogb(x) < -126 ? -126 : ilogb(x);
    q = ldexp(1.0, e - 10);
    m = (double)x / q;
    r = floor(m);
    if (m - r > 0.5 || (m - r == 0.5 && fmod(r, 2.0) != 0.0))
        r += 1.0;
    return copysignf((float)(r * q), x); /* past FLT_MAX: infinity */
}

static float from_bits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* attn_tf32_round against tf32_ref: every tie (even and odd kept
 * mantissa), the neighbours of ties, subnormals, the top of the range and
 * random floats; NaN and infinities pass. */
static void test_rounding(void)
{
    static const uint32_t edge[] = {
        0x3f801000u, 0x3f803000u, 0x3f800fffu, 0x3f801001u, 0xbf803000u,
        0x3fffffffu, 0x00001000u, 0x00003000u, 0x00000fffu, 0x807ff000u,
        0x7f7fefffu, 0x7f7ff000u, 0x7f7fffffu, 0xff7fffffu, 0x00000001u};
    ref_rng r;
    int bad = 0;
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        float x = from_bits(edge[i]);
        float got = attn_tf32_round(x), want = tf32_ref(x);
        if (memcmp(&got, &want, sizeof got) != 0) {
            printf("\n  tf32(%a): %a, want %a", (double)x, (double)got,
                   (double)want);
            bad++;
        }
    }
    ref_rng_seed(&r, 11);
    for (int i = 0; i < 1000000; i++) {
        uint32_t b = (uint32_t)ref_rng_int(&r, 0, 0x7fff) << 17 ^
                     (uint32_t)ref_rng_int(&r, 0, 0x1ffff);
        float x, got, want;
        if (i & 1) /* a tie or its neighbour, half of the time */
            b = (b & 0xffffe000u) | (0xfffu + (uint32_t)(i % 3));
        x = from_bits(b);
        if (!isfinite(x))
            continue;
        got = attn_tf32_round(x);
        want = tf32_ref(x);
        if (memcmp(&got, &want, sizeof got) != 0 && bad++ < 5)
            printf("\n  tf32(%a): %a, want %a", (double)x, (double)got,
                   (double)want);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT(isnan(attn_tf32_round(NAN)));
    CU_ASSERT_EQUAL(attn_tf32_round(INFINITY), INFINITY);
    CU_ASSERT_EQUAL(attn_tf32_round(-INFINITY), -INFINITY);
    /* the tie 1 + 2^-11 goes to 1 (even), 1 + 3 2^-11 to 1 + 2^-9 */
    CU_ASSERT_EQUAL(attn_tf32_round(1.0f + 0x1p-11f), 1.0f);
    CU_ASSERT_EQUAL(attn_tf32_round(1.0f + 0x3p-11f), 1.0f + 0x1p-9f);
}

int main(void)
{
    static const harness_test tests[] = {
        {"TF32 rounding: to nearest, ties to even", test_rounding},
        {"TF32 emulation within the TF32 bound", test_bound},
        {"EXACT and 3XTF32 unchanged", test_exact_unchanged},
        {NULL, NULL}};
    return harness_main("tf32", NULL, NULL, tests);
}
