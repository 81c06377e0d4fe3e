/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which copy of the native backend's hot code a context runs: the widest
 * instruction set that the build has a copy for and the CPU runs, unless
 * the environment variable ATTN_CPU_ISA names another (for tests and for
 * comparing the copies).  The CPU is asked through the compiler's CPUID
 * built-ins, which also check that the operating system saves the wider
 * registers; only this file and the copies themselves know about x86.
 */
/* syscall(2), for arch_prctl (glibc declares it with the default set). */
#define _DEFAULT_SOURCE 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpu/backend_native.h"
#include "cpu/cpu_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) &&                              \
    (defined(__GNUC__) || defined(__clang__))
#define ATTN_ISA_X86 1
#include <cpuid.h>
#endif
#if defined(ATTN_ISA_X86) && defined(__linux__) &&                             \
    defined(ATTN_HAVE_ISA_AVX512_AMX)
#include <sys/syscall.h>
#include <unistd.h>
#define ATTN_ISA_AMX_LINUX 1
#endif

static const char *const isa_names[ATTN_CPU_ISA_COUNT] = {"generic", "avx2",
                                                          "avx512"};

/* What each copy needs of the CPU, for messages. */
static const char *const isa_needs[ATTN_CPU_ISA_COUNT] = {
    "", "AVX2, FMA and F16C", "AVX-512 F, BW, DQ and VL"};

static const attn_cpu_kern *const isa_kern[ATTN_CPU_ISA_COUNT] = {
    &attn_cpu_kern_generic,
#ifdef ATTN_HAVE_ISA_AVX2
    &attn_cpu_kern_avx2,
#else
    NULL,
#endif
#ifdef ATTN_HAVE_ISA_AVX512
    &attn_cpu_kern_avx512,
#else
    NULL,
#endif
};

const char *attn_cpu_isa_name(attn_cpu_isa isa)
{
    return (unsigned)isa < ATTN_CPU_ISA_COUNT ? isa_names[isa] : "unknown";
}

#ifdef ATTN_ISA_X86
/* F16C is asked of CPUID directly: not every compiler's
 * __builtin_cpu_supports knows it.  Its instructions are VEX-encoded, so
 * the AVX check (which includes the OS's support) covers the registers. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

/* Whether this CPU, and its OS, run what isa's copy was compiled for. */
static int cpu_runs(attn_cpu_isa isa)
{
#ifdef ATTN_ISA_X86
    __builtin_cpu_init();
    switch (isa) {
    case ATTN_CPU_ISA_GENERIC:
        return 1;
    case ATTN_CPU_ISA_AVX2:
        return __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && cpu_has_f16c();
    case ATTN_CPU_ISA_AVX512:
        return cpu_runs(ATTN_CPU_ISA_AVX2) &&
               __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    default:
        return 0;
    }
#else
    return isa == ATTN_CPU_ISA_GENERIC;
#endif
}

int attn_cpu_isa_available(attn_cpu_isa isa)
{
    return (unsigned)isa < ATTN_CPU_ISA_COUNT && isa_kern[isa] && cpu_runs(isa);
}

attn_cpu_isa attn_cpu_isa_best(void)
{
    for (int i = ATTN_CPU_ISA_COUNT - 1; i > 0; i--)
        if (attn_cpu_isa_available((attn_cpu_isa)i))
            return (attn_cpu_isa)i;
    return ATTN_CPU_ISA_GENERIC;
}

attn_cpu_isa attn_cpu_isa_select(char *warn, size_t cap)
{
    const char *env = getenv("ATTN_CPU_ISA");
    attn_cpu_isa best = attn_cpu_isa_best();
    int want;

    if (warn && cap)
        warn[0] = '\0';
    else
        cap = 0;
    if (!env || !*env)
        return best;
    for (want = 0; want < ATTN_CPU_ISA_COUNT; want++)
        if (!strcasecmp(env, isa_names[want]))
            break;
    if (want == ATTN_CPU_ISA_COUNT) {
        snprintf(warn, cap,
                 "ATTN_CPU_ISA=\"%.32s\" is not one of generic, avx2, "
                 "avx512; the native backend uses %s",
                 env, isa_names[best]);
        return best;
    }
    if (!isa_kern[want] || !cpu_runs((attn_cpu_isa)want)) {
        char here[64] = "";
        for (int i = 0; i < ATTN_CPU_ISA_COUNT; i++)
            if (attn_cpu_isa_available((attn_cpu_isa)i))
                snprintf(here + strlen(here), sizeof here - strlen(here),
                         "%s%s", i ? ", " : "", isa_names[i]);
        if (!isa_kern[want])
            snprintf(warn, cap,
                     "ATTN_CPU_ISA=%s: this build has no %s kernels (the "
                     "compiler or the architecture lacks them; accepted "
                     "here: %s); the native backend uses %s",
                     isa_names[want], isa_names[want], here, isa_names[best]);
        else
            snprintf(warn, cap,
                     "ATTN_CPU_ISA=%s: this CPU lacks %s (accepted here: "
                     "%s); the native backend uses %s",
                     isa_names[want], isa_needs[want], here, isa_names[best]);
        return best;
    }
    return (attn_cpu_isa)want;
}

const attn_cpu_kern *attn_cpu_isa_kern(attn_cpu_isa isa)
{
    return attn_cpu_isa_available(isa) ? isa_kern[isa] : NULL;
}

#if defined(ATTN_ISA_X86) && defined(ATTN_HAVE_ISA_AVX512_BF16)
/* AVX512_BF16 is CPUID leaf 7, sub-leaf 1 (which exists when sub-leaf 0's
 * EAX is at least 1), EAX bit 5; its registers are AVX-512's, whose OS
 * support cpu_runs(AVX512) has checked. */
static int cpu_has_avx512_bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1)
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a & (1u << 5)) != 0;
}
#endif

int attn_cpu_bf16_available(attn_cpu_isa isa)
{
#if defined(ATTN_ISA_X86) && defined(ATTN_HAVE_ISA_AVX512_BF16)
    return isa == ATTN_CPU_ISA_AVX512 && attn_cpu_isa_available(isa) &&
           cpu_has_avx512_bf16();
#else
    (void)isa;
    return 0;
#endif
}

#ifdef ATTN_ISA_AMX_LINUX
/* AMX-BF16 and AMX-TILE are CPUID leaf 7, sub-leaf 0, EDX bits 22 and 24;
 * XCR0 bits 17 and 18 (XTILECFG, XTILEDATA) say the OS manages the tile
 * state.  Linux then grants the tile data per process on request
 * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); a thread that
 * touches the tiles without it is killed. */
static int amx_granted;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_request(void)
{
    unsigned a, b, c, d, lo, hi;

    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) ||
        !(d & (1u << 24)))
        return;
    __cpuid(1, a, b, c, d);
    if (!(c & bit_OSXSAVE))
        return;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & (3u << 17)) != (3u << 17))
        return;
    /* ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA */
    amx_granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}
#endif

int attn_cpu_amx_available(attn_cpu_isa isa)
{
#ifdef ATTN_ISA_AMX_LINUX
    const char *env = getenv("ATTN_CPU_AMX");

    if (env && (!strcmp(env, "0") || !strcasecmp(env, "off") ||
                !strcasecmp(env, "no")))
        return 0;
    if (!attn_cpu_bf16_available(isa))
        return 0;
    if (pthread_once(&amx_once, amx_request) != 0)
        return 0;
    return amx_granted;
#else
    (void)isa;
    return 0;
#endif
}

/* A context's backend runs both attention and the multi-head layer.
 * Measured on a 2-core AVX-512 Xeon against PoCL 3.1, which compiled for
 * skylake-avx512 or, held to AVX2 as on an AVX2 CPU, for haswell
 * (POCL_LLVM_CPU_NAME):
 * - attention (attn-bench --impl native,cl-fused, B=1 H=8 N=1024 d=64
 *   f32, native and PoCL interleaved in one process; time ratios of 5
 *   runs, causal and not): the avx512 kernels are 1.3 to 2.4 times faster
 *   than PoCL's fused path; the avx2 ones 1.4 to 2.0 times faster than
 *   PoCL at AVX2, 0.6 to 0.95 times as fast as PoCL at AVX-512; the
 *   generic ones 0.2 to 0.65 times as fast;
 * - the layer (attn-demo: seq 1024, d_model 512, 8 heads of 64, causal,
 *   RoPE; 3 alternating runs each): native 19-24 ms with avx512, 27-32 ms
 *   with avx2, 250-300 ms with generic; PoCL (CLBlast projections)
 *   220-310 ms at either width.
 * So native wins with any vectorized kernels (the avx2 ones lose up to 40
 * per cent on attention, only where the CPU has wider vectors, and win the
 * layer 8-fold), and the generic ones lose attention 2 to 5 times and tie
 * the layer. */
int attn_native_beats_opencl_cpu(void)
{
    return attn_cpu_isa_select(NULL, 0) != ATTN_CPU_ISA_GENERIC;
}

const char *attn_native_isa_name(void)
{
    return attn_cpu_isa_name(attn_cpu_isa_select(NULL, 0));
}
