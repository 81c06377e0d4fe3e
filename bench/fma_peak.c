/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-fma-peak: the machine's float FMA throughput, the ceiling the
 * native backend's products are measured against (bench/README.md).  Each
 * thread runs 12 independent chains of fused multiply-adds on the widest
 * vectors the CPU has (AVX-512, else AVX2 + FMA, chosen at run time), long
 * enough to run for about a second; prints GFLOP/s (2 per lane per FMA)
 * for 1 .. N threads.
 *
 *   attn-fma-peak [THREADS]     # default 2
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ITERS 20000000L /* of 12 FMAs */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float chains512(void)
{
    __m512 x[12];
    const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++)
        x[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
        for (int i = 0; i < 12; i++)
            x[i] = _mm512_fmadd_ps(x[i], m, c);
    float s = 0.0f;
    for (int i = 0; i < 12; i++)
        s += _mm512_reduce_add_ps(x[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float chains256(void)
{
    __m256 x[12];
    const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-7f);
    float lane[8], s = 0.0f;
    for (int i = 0; i < 12; i++)
        x[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++)
        for (int i = 0; i < 12; i++)
            x[i] = _mm256_fmadd_ps(x[i], m, c);
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(lane, x[i]);
        for (int l = 0; l < 8; l++)
            s += lane[l];
    }
    return s;
}

static int wide; /* 1: AVX-512 */
static volatile float sink;

static void *run(void *arg)
{
    (void)arg;
    sink = wide ? chains512() : chains256();
    return NULL;
}

int main(int argc, char **argv)
{
    const int most = argc > 1 ? atoi(argv[1]) : 2;
    __builtin_cpu_init();
    wide = __builtin_cpu_supports("avx512f");
    if (!wide &&
        !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        printf("attn-fma-peak: neither AVX-512 nor AVX2 + FMA\n");
        return 2;
    }
    if (most < 1 || most > 256) {
        fprintf(stderr, "usage: attn-fma-peak [THREADS 1..256]\n");
        return 2;
    }
    for (int n = 1; n <= most; n++) {
        pthread_t *t = malloc((size_t)n * sizeof *t);
        double t0, dt;
        if (!t)
            return 1;
        t0 = now();
        for (int i = 0; i < n; i++)
            pthread_create(&t[i], NULL, run, NULL);
        for (int i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        dt = now() - t0;
        free(t);
        printf("%d thread%s, %s: %.1f GFLOP/s\n", n, n == 1 ? "" : "s",
               wide ? "AVX-512" : "AVX2",
               (double)n * ITERS * 12.0 * (wide ? 16.0 : 8.0) * 2.0 / dt / 1e9);
    }
    return 0;
}
#else
int main(void)
{
    printf("attn-fma-peak: x86 only\n");
    return 2;
}
#endif
