/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-probe --bench: one attention call per device through the public API
 * (a context on "P:D" with fallback off, so a device failure is reported,
 * not hidden), checked against the native backend on the same inputs;
 * each row names the kernel variant and the precision it ran at.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/probe.h"

#define BENCH_HEADS 8
#define BENCH_SEQ   1024
#define BENCH_DIM   64
#define BENCH_REPS  5
#define BENCH_TOL   1e-4

typedef struct bench_data {
    attn_sdpa_desc d;
    float *q, *k, *v;
    float *ref; /* the native backend's output */
    float *out;
    size_t n; /* elements of each tensor */
    double flop;
} bench_data;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench_free(bench_data *b)
{
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->ref);
    free(b->out);
}

static int bench_init(bench_data *b)
{
    uint64_t state = 0x9e3779b97f4a7c15ull;
    memset(b, 0, sizeof *b);
    b->d.batch = 1;
    b->d.heads_q = b->d.heads_kv = BENCH_HEADS;
    b->d.seq_q = b->d.seq_kv = BENCH_SEQ;
    b->d.head_dim = b->d.head_dim_v = BENCH_DIM;
    b->n = (size_t)BENCH_HEADS * BENCH_SEQ * BENCH_DIM;
    b->flop = 4.0 * BENCH_SEQ * BENCH_SEQ * BENCH_DIM * BENCH_HEADS;
    b->q = malloc(b->n * sizeof(float));
    b->k = malloc(b->n * sizeof(float));
    b->v = malloc(b->n * sizeof(float));
    b->ref = malloc(b->n * sizeof(float));
    b->out = malloc(b->n * sizeof(float));
    if (!b->q || !b->k || !b->v || !b->ref || !b->out) {
        bench_free(b);
        return -1;
    }
    /* Uniform in [-1, 1) from a fixed xorshift stream. */
    for (size_t i = 0; i < 3 * b->n; i++) {
        float *t = i < b->n ? b->q : i < 2 * b->n ? b->k : b->v;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        t[i % b->n] = (float)((double)(state >> 11) * 0x1p-52 - 1.0);
    }
    return 0;
}

/* What ran on ctx: "<variant> <precision>" into ran (attn_sdpa_kernel,
 * attn_sdpa_precision), the precision asked into *asked. */
static void bench_ran(attn_context *ctx, const attn_sdpa_desc *d, char *ran,
                      size_t cap, attn_precision *asked)
{
    char kernel[48];
    attn_precision runs;
    if (attn_sdpa_kernel(ctx, d, kernel, sizeof kernel) != ATTN_OK ||
        attn_sdpa_precision(ctx, d, asked, &runs) != ATTN_OK) {
        snprintf(ran, cap, "?");
        return;
    }
    snprintf(ran, cap, "%s %s", kernel, attn_precision_name(runs));
}

/* A warm-up call (it builds the kernels), then BENCH_REPS timed ones on a
 * context for spec; out receives the result, ran what ran (bench_ran).
 * 0 and the median time, or -1 and the reason in why. */
static int bench_run(const char *spec, const bench_data *b, float *out,
                     double *median, char *ran, size_t rcap,
                     attn_precision *asked, char *why, size_t cap)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_status s;
    double t[BENCH_REPS];
    attn_options_init(&o);
    o.device = spec;
    o.allow_fallback = 0;
    if ((s = attn_context_create(&o, &ctx))) {
        snprintf(why, cap, "%s: %s", attn_status_string(s), attn_last_error());
        return -1;
    }
    if (strcmp(spec, "native") != 0 &&
        (attn_context_device(ctx, &info) != ATTN_OK ||
         info.kind == ATTN_DEVICE_NATIVE)) {
        snprintf(why, cap, "the context landed on the native backend");
        attn_context_destroy(ctx);
        return -1;
    }
    for (int r = -1; r < BENCH_REPS; r++) {
        double t0 = now_s();
        s = attn_sdpa(ctx, &b->d, b->q, b->k, b->v, out, NULL);
        if (s != ATTN_OK) {
            snprintf(why, cap, "%s: %s", attn_status_string(s),
                     attn_context_last_error(ctx));
            attn_context_destroy(ctx);
            return -1;
        }
        if (r >= 0)
            t[r] = now_s() - t0;
    }
    bench_ran(ctx, &b->d, ran, rcap, asked);
    attn_context_destroy(ctx);
    qsort(t, BENCH_REPS, sizeof t[0], cmp_double);
    *median = t[BENCH_REPS / 2];
    return 0;
}

/* Largest |a - b|; NaN anywhere gives NaN. */
static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d))
            return NAN;
        if (d > m)
            m = d;
    }
    return m;
}

static void bench_row(const char *pd, const char *name, const char *ran,
                      const char *check, double median, double flop)
{
    printf("%-7s %-36.36s %-16s %-20s %10.2f %9.2f\n", pd, name, ran, check,
           median * 1e3, flop / median * 1e-9);
}

int probe_bench(const attn_tool_device *devs, size_t n,
                const attn_tool_selection *sel)
{
    bench_data b;
    char why[600], check[64], pd[24], ran[64];
    attn_precision asked = ATTN_PRECISION_EXACT;
    double median;
    int failed = 0;
    size_t count = sel ? (sel->native ? 0 : sel->count) : n;

    if (bench_init(&b) != 0) {
        fprintf(stderr, "attn-probe: out of memory\n");
        return 1;
    }
    printf("attn-probe (libattn %s) --bench: B=%d H=%d N=%d d=%d f32, "
           "non-causal; median of %d calls after a warm-up\n\n",
           attn_version(), b.d.batch, BENCH_HEADS, BENCH_SEQ, BENCH_DIM,
           BENCH_REPS);
    printf("%-7s %-36s %-16s %-20s %10s %9s\n", "P:D", "device",
           "kernel precision", "max|diff| vs native", "median ms", "GFLOP/s");
    if (bench_run("native", &b, b.ref, &median, ran, sizeof ran, &asked, why,
                  sizeof why) != 0) {
        printf("%-7s %-36s FAILED: %s\n", "native", "native backend", why);
        printf("\nno reference: the devices are not tested\n");
        bench_free(&b);
        return 1;
    }
    bench_row("native", "native backend", ran, "(reference)", median, b.flop);
    fflush(stdout);
    for (size_t k = 0; k < count; k++) {
        const attn_device_info *d = &devs[sel ? sel->index[k] : k].info;
        double diff;
        snprintf(pd, sizeof pd, "%d:%d", d->platform_index, d->device_index);
        if (!d->usable) {
            printf("%-7s %-36.36s skipped: %s\n", pd, d->name, d->reason);
            continue;
        }
        memset(b.out, 0xff, b.n * sizeof(float)); /* NaN */
        if (bench_run(pd, &b, b.out, &median, ran, sizeof ran, &asked, why,
                      sizeof why) != 0) {
            printf("%-7s %-36.36s FAILED: %s\n", pd, d->name, why);
            failed++;
            fflush(stdout);
            continue;
        }
        diff = max_abs_diff(b.out, b.ref, b.n);
        snprintf(check, sizeof check, "%.2e %s", diff,
                 diff <= BENCH_TOL ? "pass" : "FAIL");
        bench_row(pd, d->name, ran, check, median, b.flop);
        if (!(diff <= BENCH_TOL)) {
            printf("        FAILED: max abs difference %.3g exceeds %.0e\n",
                   diff, BENCH_TOL);
            failed++;
        }
        fflush(stdout);
    }
    if (n == 0)
        printf("\nNo OpenCL platform (or device) found: only the native "
               "backend was measured.\n");
    printf("\nprecision asked: %s (options.precision / ATTN_PRECISION); "
           "kernel precision: what each row ran at\n",
           attn_precision_name(asked));
    printf("%s\n", failed ? "some devices FAILED their self-test"
                          : "all devices passed");
    bench_free(&b);
    return failed;
}
