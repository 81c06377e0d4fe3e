/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_bf16: the BF16 precision of attn.h (attn_precision) on the native
 * backend.  Where the avx512 copy has the BF16 kernels and the CPU reports
 * AVX512_BF16 (attn_cpu_bf16_available), a call asked for BF16 must run
 * them (attn_cpu_sdpa_precision and, through a context, attn_sdpa_precision
 * say BF16) and meet the BF16 bound of tests/ref.h against the
 * double-precision oracle: u = 2^-8 per rounded input, t = 2u + u^2 per
 * product, scores within e = (g + t) M, O within (exp(2e) - 1 + t exp(2e))
 * V, derived from the rounding, never fitted.  The bound is needed: the
 * results leave the EXACT tolerance somewhere and differ from the EXACT
 * run.  Copies without the kernels, the decode form and additive scores
 * must report EXACT and meet the EXACT tolerance.  Where the AMX kernels
 * are available (attn_cpu_amx_available) they are the BF16 kernels that
 * run; ctest runs the suite again with ATTN_CPU_AMX=off for the VDPBF16PS
 * ones.  The rounding itself is
 * checked where it shows exactly: with one key, O is the value rounded to
 * bfloat16 and (with a zero bias) lse the rounded q times a key of 1.
 * The store of BF16 storage (ATTN_BF16) is checked here too: each copy's
 * against the oracle's rounding (test_bf16_storage checks the calls).
 * Private symbols: linked with the static library.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "cases.h"
#include "cpu/cpu_impl.h"
#include "harness.h"
#include "ref.h"

typedef struct bf16_case {
    const char *name;
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    attn_dtype dtype;
    attn_score score;
    int causal, window, kv_len;
    attn_bias_kind bias;
    double qk_amp;
    int must_exceed; /* where BF16 runs, the EXACT tolerance must not hold */
} bf16_case;

static const bf16_case cases[] = {
    {"d64 f32", 1, 4, 4, 96, 160, 64, 64, ATTN_F32, ATTN_SCORE_DOT, 0, 0, 0,
     ATTN_BIAS_NONE, 2.0, 1},
    {"d128 f32 causal", 1, 2, 2, 130, 130, 128, 128, ATTN_F32, ATTN_SCORE_DOT,
     1, 0, 0, ATTN_BIAS_NONE, 1.0, 1},
    {"d40/24 f32 gqa window kv_len lse", 2, 4, 2, 37, 150, 40, 24, ATTN_F32,
     ATTN_SCORE_DOT, 1, 50, 1, ATTN_BIAS_NONE, 3.0, 0},
    {"d63/33 f32 odd sizes", 1, 2, 2, 45, 77, 63, 33, ATTN_F32, ATTN_SCORE_DOT,
     0, 0, 0, ATTN_BIAS_NONE, 2.0, 1},
    {"d64 f32 bias per head", 1, 2, 2, 65, 70, 64, 64, ATTN_F32, ATTN_SCORE_DOT,
     0, 0, 0, ATTN_BIAS_PER_HEAD, 2.0, 0},
    {"d64 f16 causal", 1, 2, 1, 80, 200, 64, 64, ATTN_F16, ATTN_SCORE_DOT, 1, 0,
     0, ATTN_BIAS_NONE, 2.0, 0},
    {"d16 f32 additive (EXACT)", 1, 2, 2, 33, 90, 16, 16, ATTN_F32,
     ATTN_SCORE_ADDITIVE, 0, 0, 0, ATTN_BIAS_NONE, 1.0, 0},
    {"d64 f32 decode (EXACT)", 3, 8, 2, 1, 300, 64, 64, ATTN_F32,
     ATTN_SCORE_DOT, 0, 0, 0, ATTN_BIAS_NONE, 2.0, 0},
};

/* NaN in the keys and values kv_len hides (rule 1 of attn.h). */
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

static void run_case(attn_cpu *cpu, attn_cpu_isa isa, const bf16_case *tc,
                     uint64_t seed)
{
    attn_sdpa_desc shape = ATTN_SDPA_DESC_INIT;
    sdpa_case c;
    ref_sdpa_result ref;
    char what[160];
    size_t es = tc->dtype == ATTN_F16 ? 2 : 4;
    void *o, *o_exact;
    float *lse;
    attn_precision runs;
    int want_bf16;
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
    snprintf(what, sizeof what, "%s, %s kernels", tc->name,
             attn_cpu_isa_name(isa));
    CU_ASSERT_EQUAL_FATAL(
        sdpa_case_init(&c, &shape, seed, tc->qk_amp, 0.1, tc->kv_len), 0);
    if (tc->kv_len)
        poison_hidden(&c);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    /* BF16 runs exactly where the kernels exist, for the tiled dot form */
    want_bf16 = attn_cpu_bf16_available(isa) && tc->score == ATTN_SCORE_DOT &&
                tc->seq_q > 1;
    runs = attn_cpu_sdpa_precision(cpu, &c.d, ATTN_PRECISION_BF16);
    HARNESS_EXPECT(
        runs == (want_bf16 ? ATTN_PRECISION_BF16 : ATTN_PRECISION_EXACT), what);
    o = malloc(c.no * es);
    o_exact = malloc(c.no * es);
    lse = malloc(c.nlse * sizeof *lse);
    CU_ASSERT_FATAL(o && o_exact && lse);
    CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, c.q, c.k, c.v, o, lse, NULL,
                                  ATTN_PRECISION_BF16),
                    ATTN_OK);
    HARNESS_EXPECT(ref_check_sdpa_at(what, &c.d, &ref, o, lse, NULL, runs),
                   what);
    CU_ASSERT_EQUAL(attn_cpu_sdpa(cpu, &c.d, c.q, c.k, c.v, o_exact, NULL, NULL,
                                  ATTN_PRECISION_EXACT),
                    ATTN_OK);
    /* BF16 is real where it is said to run, and nothing else changes */
    if (want_bf16)
        HARNESS_EXPECT(memcmp(o, o_exact, c.no * es) != 0, what);
    else
        HARNESS_EXPECT(memcmp(o, o_exact, c.no * es) == 0, what);
    if (tc->dtype == ATTN_F32 && want_bf16) {
        double x = ref_o_excess_f32(&ref, o, ATTN_PRECISION_EXACT);
        printf("\n  %s: worst error of O %.2fx the EXACT tolerance, %.3fx "
               "the BF16 one",
               what, x, ref_o_excess_f32(&ref, o, ATTN_PRECISION_BF16));
        if (tc->must_exceed)
            HARNESS_EXPECT(x > 1.0, what);
    }
    free(o);
    free(o_exact);
    free(lse);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

static void test_bound(void)
{
    int ran = 0, bf16 = 0, amx = 0;
    for (int isa = 0; isa < ATTN_CPU_ISA_COUNT; isa++) {
        attn_cpu *cpu = NULL;
        if (!attn_cpu_isa_available((attn_cpu_isa)isa)) {
            printf("\n  SKIP %s kernels: not on this machine or build",
                   attn_cpu_isa_name((attn_cpu_isa)isa));
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(attn_cpu_create(2, (attn_cpu_isa)isa, &cpu),
                              ATTN_OK);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            run_case(cpu, (attn_cpu_isa)isa, &cases[i], 2000 + i);
        bf16 += attn_cpu_bf16_available((attn_cpu_isa)isa);
        amx += attn_cpu_amx_available((attn_cpu_isa)isa);
        attn_cpu_destroy(cpu);
        ran++;
    }
    CU_ASSERT(ran > 0);
    printf("\n  BF16 kernels %s", amx    ? "ran (AMX-BF16)"
                                  : bf16 ? "ran (AVX512_BF16, VDPBF16PS)"
                                         : "absent here: EXACT checked");
}

/* bfloat16 by its definition: the value to a multiple of its exponent's
 * quantum 2^(e - 7), to nearest, ties to the even multiple (in double,
 * where that is exact); subnormals are 0, as the instruction reads them. */
static float bf16_ref(float x)
{
    int e;
    double q, m, r;
    if (x == 0.0f || !isfinite(x))
        return x;
    if (fabsf(x) < 0x1p-126f)
        return copysignf(0.0f, x);
    e = ilogb(x);
    q = ldexp(1.0, e - 7);
    m = (double)x / q;
    r = floor(m);
    if (m - r > 0.5 || (m - r == 0.5 && fmod(r, 2.0) != 0.0))
        r += 1.0;
    return (float)(r * q); /* past FLT_MAX: infinity */
}

static float from_bits(uint32_t b)
{
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* One key of 1 seen by 64 queries (no decode form): O[i] = bf16(v), and
 * with a zero bias (natural units, scale 1, head_dim 1) lse[i] = bf16(q_i)
 * exactly (p = 1, l = 1; a product of two bfloat16 is exact in float). */
static void test_rounding(void)
{
    enum { N = 64, DV = 64 };
    static const uint32_t edge[] = {
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u,
        0xbf818000u, 0x3fffffffu, 0x7f7f7fffu, 0x7f7f8000u,
        0x7f7fffffu, 0xff7fffffu, 0x00800000u, 0x00808000u,
        0x00818000u, 0x007fffffu, 0x80000001u, 0x3f800000u};
    attn_cpu *cpu = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    float q[N], k[1] = {1.0f}, v[DV], o[N * DV], lse[N], bias[N];
    ref_rng r;
    int bad = 0;

    if (!attn_cpu_bf16_available(ATTN_CPU_ISA_AVX512)) {
        printf("\n  SKIP: no BF16 kernels on this machine or build");
        return;
    }
    CU_ASSERT_EQUAL_FATAL(attn_cpu_create(1, ATTN_CPU_ISA_AVX512, &cpu),
                          ATTN_OK);
    d.batch = d.heads_q = d.heads_kv = 1;
    d.seq_q = N;
    d.seq_kv = 1;
    d.head_dim = 1;
    d.head_dim_v = DV;
    d.scale = 1.0f;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_SHARED;
    ref_rng_seed(&r, 21);
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < N; i++) {
            uint32_t b = (uint32_t)ref_rng_int(&r, 0, 0x7fff) << 17 ^
                         (uint32_t)ref_rng_int(&r, 0, 0x1ffff);
            if (i & 1) /* a tie or its neighbour, half of the time */
                b = (b & 0xffff0000u) | (0x7fffu + (uint32_t)(i % 3));
            if (round == 0 && i < (int)(sizeof edge / sizeof edge[0]))
                b = edge[i];
            q[i] = from_bits(b);
            if (!isfinite(q[i]) || fabsf(q[i]) > 0x1p100f)
                q[i] = 1.0f; /* finite scores; the top is checked on v */
            bias[i] = 0.0f;
        }
        for (int c = 0; c < DV; c++) {
            uint32_t b = (uint32_t)ref_rng_int(&r, 0, 0x7fff) << 17 ^
                         (uint32_t)ref_rng_int(&r, 0, 0x1ffff);
            if (c & 1)
                b = (b & 0xffff0000u) | (0x7fffu + (uint32_t)(c % 3));
            if (round == 0 && c < (int)(sizeof edge / sizeof edge[0]))
                b = edge[c];
            v[c] = from_bits(b);
            if (isnan(v[c]))
                v[c] = 2.0f;
        }
        CU_ASSERT_EQUAL_FATAL(
            attn_cpu_sdpa(cpu, &d, q, k, v, o, lse, NULL, ATTN_PRECISION_BF16),
            ATTN_OK);
        for (int i = 0; i < N; i++) {
            float want = bf16_ref(q[i]);
            if (lse[i] != want && bad++ < 5)
                printf("\n  q %a: lse %a, want %a", (double)q[i],
                       (double)lse[i], (double)want);
            for (int c = 0; c < DV; c++) {
                float got = o[i * DV + c], wv = bf16_ref(v[c]);
                /* the sign of a flushed zero is the instruction's */
                if (wv == 0.0f ? got != 0.0f
                               : memcmp(&got, &wv, sizeof got) != 0) {
                    if (bad++ < 5)
                        printf("\n  v %a: O %a, want %a", (double)v[c],
                               (double)got, (double)wv);
                }
            }
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    attn_cpu_destroy(cpu);
}

/* Through the API: a context asked for BF16 (option or ATTN_PRECISION)
 * reports what its kernels run and meets that precision's tolerance. */
static void test_context(void)
{
    attn_options opt = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT, dec;
    attn_precision asked, runs = (attn_precision)-1;
    int have = attn_cpu_bf16_available(attn_cpu_isa_select(NULL, 0));
    sdpa_case c;
    ref_sdpa_result ref;
    opt.device = "native";
    opt.precision = ATTN_PRECISION_BF16;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&opt, &ctx), ATTN_OK);
    d.batch = 1;
    d.heads_q = d.heads_kv = 2;
    d.seq_q = d.seq_kv = 100;
    d.head_dim = d.head_dim_v = 64;
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, &asked, &runs), ATTN_OK);
    CU_ASSERT_EQUAL(asked, ATTN_PRECISION_BF16);
    CU_ASSERT_EQUAL(runs, have ? ATTN_PRECISION_BF16 : ATTN_PRECISION_EXACT);
    dec = d;
    dec.seq_q = 1; /* the decode form stays EXACT */
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &dec, NULL, &runs), ATTN_OK);
    CU_ASSERT_EQUAL(runs, ATTN_PRECISION_EXACT);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 9, 2.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    {
        float *o = malloc(c.no * sizeof *o), *lse = malloc(c.nlse * 4);
        CU_ASSERT_FATAL(o && lse);
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, lse), ATTN_OK);
        HARNESS_EXPECT(ref_check_sdpa_at(
                           "context asked for bf16", &c.d, &ref, o, lse, NULL,
                           have ? ATTN_PRECISION_BF16 : ATTN_PRECISION_EXACT),
                       "bf16 context");
        if (have)
            HARNESS_EXPECT(ref_o_excess_f32(&ref, o, ATTN_PRECISION_EXACT) >
                               1.0,
                           "bf16 context leaves the EXACT tolerance");
        free(o);
        free(lse);
    }
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(ctx);
}

/* ---- storage (ATTN_BF16) --------------------------------------------------
 * Each copy's float -> bfloat16 store (VCVTNEPS2BF16 in the avx512 copy
 * where the CPU has AVX512_BF16, integer rounding elsewhere) against the
 * oracle's, on every high half with low halves at and around the ties:
 * the same bits, NaN kept a NaN with its sign. */
typedef void (*store_fn)(const float *, uint16_t *, size_t);
void attn_float_to_bf16_n_generic(const float *src, uint16_t *dst, size_t n);
#ifdef ATTN_HAVE_ISA_AVX2
void attn_float_to_bf16_n_avx2(const float *src, uint16_t *dst, size_t n);
#endif
#ifdef ATTN_HAVE_ISA_AVX512
void attn_float_to_bf16_n_avx512(const float *src, uint16_t *dst, size_t n);
#endif

static void test_storage_rounding(void)
{
    static const uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000,
                                    0x8001, 0xc000, 0xffff, 0x1234};
    const size_t nl = sizeof lows / sizeof lows[0], n = 65536 * nl;
    float *x = malloc(n * sizeof *x);
    uint16_t *got = malloc(n * sizeof *got);
    struct {
        attn_cpu_isa isa;
        store_fn fn;
        const char *name;
    } copies[] = {
        {ATTN_CPU_ISA_GENERIC, attn_float_to_bf16_n_generic, "generic"},
#ifdef ATTN_HAVE_ISA_AVX2
        {ATTN_CPU_ISA_AVX2, attn_float_to_bf16_n_avx2, "avx2"},
#endif
#ifdef ATTN_HAVE_ISA_AVX512
        {ATTN_CPU_ISA_AVX512, attn_float_to_bf16_n_avx512, "avx512"},
#endif
    };
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    for (uint32_t h = 0; h < 65536; h++)
        for (size_t l = 0; l < nl; l++) {
            uint32_t u = h << 16 | lows[l];
            memcpy(&x[h * nl + l], &u, sizeof u);
        }
    for (size_t c = 0; c < sizeof copies / sizeof copies[0]; c++) {
        size_t bad = 0;
        if (!attn_cpu_isa_available(copies[c].isa))
            continue;
        /* an odd length: the vector body and its tail */
        copies[c].fn(x, got, n - 3);
        for (size_t i = 0; i < n - 3; i++) {
            uint16_t want = ref_f32_to_bf16(x[i]);
            if (isnan(x[i]))
                bad += (got[i] & 0x7f80u) != 0x7f80u || !(got[i] & 0x7fu) ||
                       (got[i] & 0x8000u) != (want & 0x8000u);
            else
                bad += got[i] != want;
        }
        HARNESS_EXPECT(bad == 0, copies[c].name);
        if (bad)
            printf("\n%s: %zu stores differ from the oracle\n", copies[c].name,
                   bad);
    }
    free(x);
    free(got);
}

int main(void)
{
    static const harness_test tests[] = {
        {"BF16 rounding: to nearest even, subnormals flushed", test_rounding},
        {"BF16 kernels within the BF16 bound", test_bound},
        {"a context asked for BF16", test_context},
        {"BF16 storage: every copy's store rounding", test_storage_rounding},
        {NULL, NULL}};
    return harness_main("bf16", NULL, NULL, tests);
}
