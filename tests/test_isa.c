/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_isa: the instruction set of the native backend's kernels.  Without
 * ATTN_CPU_ISA a context runs the widest set both the build and the CPU
 * have; ATTN_CPU_ISA=generic|avx2|avx512 picks one when the CPU has it; a
 * set the CPU lacks or an unknown name is a warning naming the variable,
 * and the context runs the widest set.  The suite asks the CPU itself
 * (CPUID) what it has, and reads the set a context runs from its device
 * reason ("..., avx2 kernels, ...") and its info log.  Each set runs a
 * small problem of every score kind and dtype against the oracle.  Where
 * the machine's best OpenCL device is a CPU device, "auto" picks the native
 * backend only with vectorized (avx2 or avx512) kernels.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    (defined(__GNUC__) || defined(__clang__))
#define TEST_X86 1
#include <cpuid.h>
#endif

enum { ISA_GENERIC, ISA_AVX2, ISA_AVX512, ISA_COUNT };
static const char *const isa_name[ISA_COUNT] = {"generic", "avx2", "avx512"};

/* Copies the build has: the definitions the library is compiled with
 * (tests/CMakeLists.txt passes them on). */
static int built(int isa)
{
    switch (isa) {
    case ISA_GENERIC:
        return 1;
    case ISA_AVX2:
#ifdef ATTN_HAVE_ISA_AVX2
        return 1;
#else
        return 0;
#endif
    default:
#ifdef ATTN_HAVE_ISA_AVX512
        return 1;
#else
        return 0;
#endif
    }
}

/* What the CPU has, asked independently of the library: CPUID leaves 1
 * and 7 and the registers the OS saves (XGETBV). */
static int cpu_has(int isa)
{
#ifdef TEST_X86
    unsigned a, b, c, d, b7 = 0, xcr0 = 0;
    int avx2;
    if (isa == ISA_GENERIC)
        return 1;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return 0;
    __asm__("xgetbv" : "=a"(xcr0), "=d"(d) : "c"(0));
    if (__get_cpuid_max(0, NULL) >= 7) {
        unsigned a7, c7, d7;
        __cpuid_count(7, 0, a7, b7, c7, d7);
        (void)a7, (void)c7, (void)d7;
    }
    avx2 = (xcr0 & 0x6) == 0x6 && (c & bit_AVX) && (c & bit_FMA) &&
           (c & bit_F16C) && (b7 & bit_AVX2);
    if (isa == ISA_AVX2)
        return avx2;
    return avx2 && (xcr0 & 0xe6) == 0xe6 && (b7 & bit_AVX512F) &&
           (b7 & bit_AVX512BW) && (b7 & bit_AVX512DQ) && (b7 & bit_AVX512VL);
#else
    return isa == ISA_GENERIC;
#endif
}

static int best(void)
{
    int i = ISA_COUNT - 1;
    while (i > 0 && !(built(i) && cpu_has(i)))
        i--;
    return i;
}

/* The log of one context creation. */
typedef struct log_capture {
    char text[4096];
    int warnings;
} log_capture;

static void capture(int level, const char *msg, void *user)
{
    log_capture *lc = user;
    size_t at = strlen(lc->text);
    if (level == ATTN_LOG_WARN)
        lc->warnings++;
    snprintf(lc->text + at, sizeof lc->text - at, "%s\n", msg);
}

/* A native context created with ATTN_CPU_ISA=env (NULL: unset), its log
 * in lc and the set its device reason names in *isa (-1: none). */
static attn_context *create_with(const char *env, log_capture *lc, int *isa)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    char word[32];

    memset(lc, 0, sizeof *lc);
    *isa = -1;
    if (env) {
        CU_ASSERT_EQUAL_FATAL(setenv("ATTN_CPU_ISA", env, 1), 0);
    } else {
        unsetenv("ATTN_CPU_ISA");
    }
    attn_options_init(&o);
    o.device = "native";
    o.log = capture;
    o.log_user = lc;
    o.log_level = ATTN_LOG_INFO;
    attn_status st = attn_context_create(&o, &ctx);
    unsetenv("ATTN_CPU_ISA");
    CU_ASSERT_EQUAL(st, ATTN_OK);
    if (st != ATTN_OK)
        return NULL;
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    for (int i = 0; i < ISA_COUNT; i++) {
        snprintf(word, sizeof word, ", %s kernels,", isa_name[i]);
        if (strstr(info.reason, word))
            *isa = i;
    }
    return ctx;
}

/* One small problem of each score kind and dtype against the oracle. */
static int small_problems_ok(attn_context *ctx, const char *what)
{
    static const attn_score scores[] = {ATTN_SCORE_DOT, ATTN_SCORE_ADDITIVE};
    static const attn_dtype dtypes[] = {ATTN_F32, ATTN_F16, ATTN_BF16};
    int ok = 1;
    for (size_t s = 0; s < 2; s++)
        for (size_t t = 0; t < 3; t++) {
            attn_sdpa_desc d;
            sdpa_case c;
            memset(&d, 0, sizeof d);
            d.batch = 2;
            d.heads_q = 4;
            d.heads_kv = 2;
            d.seq_q = 70;
            d.seq_kv = 133;
            d.head_dim = 40;
            d.head_dim_v = 24;
            d.score = scores[s];
            d.dtype = dtypes[t];
            d.mask.causal = 1;
            if (sdpa_case_init(&c, &d, 11 + s * 3 + t, 1.0, 0.0, 1) != 0)
                return 0;
            ok &= sdpa_case_check(ctx, &c, NULL, 1, NULL, what);
            sdpa_case_free(&c);
        }
    return ok;
}

static void test_default_is_widest(void)
{
    log_capture lc;
    int isa;
    attn_context *ctx = create_with(NULL, &lc, &isa);
    CU_ASSERT_EQUAL(isa, best());
    CU_ASSERT_EQUAL(lc.warnings, 0);
    /* the choice is logged at info level */
    {
        char line[64];
        snprintf(line, sizeof line, "native backend: %s kernels",
                 isa_name[best()]);
        CU_ASSERT_PTR_NOT_NULL(strstr(lc.text, line));
    }
    attn_context_destroy(ctx);
    /* empty means unset */
    ctx = create_with("", &lc, &isa);
    CU_ASSERT_EQUAL(isa, best());
    CU_ASSERT_EQUAL(lc.warnings, 0);
    attn_context_destroy(ctx);
}

static void test_each_isa(void)
{
    for (int i = 0; i < ISA_COUNT; i++) {
        log_capture lc;
        int isa;
        char what[64];
        attn_context *ctx = create_with(isa_name[i], &lc, &isa);
        if (!ctx)
            continue;
        snprintf(what, sizeof what, "ATTN_CPU_ISA=%s", isa_name[i]);
        if (built(i) && cpu_has(i)) {
            HARNESS_EXPECT(isa == i, what);
            HARNESS_EXPECT(lc.warnings == 0, what);
        } else {
            printf("\n  %s: not on this %s (runs %s)\n", what,
                   built(i) ? "CPU" : "build", isa_name[best()]);
            HARNESS_EXPECT(isa == best(), what);
            HARNESS_EXPECT(lc.warnings == 1, what);
            HARNESS_EXPECT(strstr(lc.text, what) != NULL, what);
            HARNESS_EXPECT(strstr(lc.text, "accepted here: generic") != NULL,
                           what);
        }
        HARNESS_EXPECT(small_problems_ok(ctx, what), what);
        attn_context_destroy(ctx);
    }
}

static void test_bad_values(void)
{
    static const char *const bad[] = {"bogus", "avx-512", "sse2", "avx2 ", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        log_capture lc;
        int isa;
        attn_context *ctx = create_with(bad[i], &lc, &isa);
        HARNESS_EXPECT(ctx != NULL, bad[i]);
        HARNESS_EXPECT(isa == best(), bad[i]);
        HARNESS_EXPECT(lc.warnings == 1, bad[i]);
        HARNESS_EXPECT(strstr(lc.text, "ATTN_CPU_ISA") != NULL, bad[i]);
        HARNESS_EXPECT(strstr(lc.text, "generic, avx2, avx512") != NULL,
                       bad[i]);
        attn_context_destroy(ctx);
    }
}

static void test_any_case(void)
{
    log_capture lc;
    int isa;
    attn_context *ctx = create_with("GENERIC", &lc, &isa);
    CU_ASSERT_EQUAL(isa, ISA_GENERIC);
    CU_ASSERT_EQUAL(lc.warnings, 0);
    attn_context_destroy(ctx);
}

/* The set is chosen per context: two contexts with different sets live
 * side by side and both compute right. */
static void test_two_contexts(void)
{
    log_capture l1, l2;
    int i1, i2;
    attn_context *a = create_with("generic", &l1, &i1);
    attn_context *b = create_with(NULL, &l2, &i2);
    CU_ASSERT_EQUAL(i1, ISA_GENERIC);
    CU_ASSERT_EQUAL(i2, best());
    if (a && b) {
        CU_ASSERT(small_problems_ok(a, "generic beside the widest"));
        CU_ASSERT(small_problems_ok(b, "the widest beside generic"));
    }
    attn_context_destroy(a);
    attn_context_destroy(b);
}

/* The kind of device "auto" picks under ATTN_CPU_ISA=env (NULL: unset). */
static int auto_kind(const char *env)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    int kind = -1;

    if (env)
        setenv("ATTN_CPU_ISA", env, 1);
    attn_options_init(&o);
    if (attn_context_create(&o, &ctx) == ATTN_OK &&
        attn_context_device(ctx, &info) == ATTN_OK)
        kind = (int)info.kind;
    attn_context_destroy(ctx);
    unsetenv("ATTN_CPU_ISA");
    return kind;
}

/* "auto" prefers the native backend to an OpenCL CPU device only while the
 * native kernels are vectorized (avx2 or avx512).  Checked where the best
 * usable OpenCL device is a CPU device, whose profiles say native may
 * win. */
static void test_auto_ranking(void)
{
    attn_device_info devs[16] = {ATTN_DEVICE_INFO_INIT};
    size_t n = 0, i;
    int best_kind = -1;
    double rank = 0;

    if (attn_devices(devs, 16, &n) != ATTN_OK)
        n = 0;
    for (i = 0; i < n && i < 16; i++)
        if (devs[i].usable && (best_kind < 0 || devs[i].rank > rank)) {
            best_kind = (int)devs[i].kind;
            rank = devs[i].rank;
        }
    if (best_kind != ATTN_DEVICE_CPU_OPENCL) {
        printf("\n  auto_ranking: the best OpenCL device is not a CPU device "
               "(or there is none): not checked\n");
        return;
    }
    CU_ASSERT_EQUAL(auto_kind("generic"), ATTN_DEVICE_CPU_OPENCL);
    CU_ASSERT_EQUAL(auto_kind(NULL), best() > ISA_GENERIC
                                         ? ATTN_DEVICE_NATIVE
                                         : ATTN_DEVICE_CPU_OPENCL);
    for (int isa = ISA_AVX2; isa < ISA_COUNT; isa++)
        if (built(isa) && cpu_has(isa))
            HARNESS_EXPECT(auto_kind(isa_name[isa]) == ATTN_DEVICE_NATIVE,
                           isa_name[isa]);
}

int main(void)
{
    static const harness_test tests[] = {
        {"default_is_widest", test_default_is_widest},
        {"each_isa", test_each_isa},
        {"bad_values", test_bad_values},
        {"any_case", test_any_case},
        {"two_contexts", test_two_contexts},
        {"auto_ranking", test_auto_ranking},
        {NULL, NULL},
    };
    unsetenv("ATTN_CPU_ISA");
    unsetenv("ATTN_LOG");
    unsetenv("ATTN_DEVICE");
    for (int i = 0; i < ISA_COUNT; i++)
        printf("%s: build %s, CPU %s\n", isa_name[i], built(i) ? "yes" : "no",
               cpu_has(i) ? "yes" : "no");
    return harness_main("isa", NULL, NULL, tests);
}
