/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bwd-bench: the native backward pass (attn_sdpa_backward) against the
 * forward (attn_sdpa) it differentiates, B=1 H=8 d=64 (F32, non-causal,
 * seq_q = seq_kv = N) unless told otherwise.  Forward and backward calls
 * alternate, after one warm-up of each; the medians and their ratio are
 * printed per N.  --rss N runs one forward and one backward at N and prints
 * the process's peak resident set (getrusage ru_maxrss) and the bytes of
 * the tensors themselves (q, k, v, o, dO, dq, dk, dv, lse).
 *
 *   attn-bwd-bench [--n N,N,...] [--reps R] [--threads T] [--heads H]
 *                  [--head-dim D] [--causal] [--rss N]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "attn/attn.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static float *rnd(size_t n, unsigned *seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
    return x;
}

/* One N: returns 0 or 1 on failure. */
static int run(attn_context *ctx, int heads, int hd, int n, int causal,
               int reps, int rss)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    size_t e = (size_t)heads * (size_t)n * (size_t)hd;
    unsigned seed = 1;
    float *q = rnd(e, &seed), *k = rnd(e, &seed), *v = rnd(e, &seed);
    float *dout = rnd(e, &seed), *o = malloc(e * 4), *dq = malloc(e * 4);
    float *dk = malloc(e * 4), *dv = malloc(e * 4);
    float *lse = malloc((size_t)heads * (size_t)n * 4);
    double *tf = malloc((size_t)reps * sizeof *tf);
    double *tb = malloc((size_t)reps * sizeof *tb);
    int bad = !q || !k || !v || !dout || !o || !dq || !dk || !dv || !lse ||
              !tf || !tb;

    d.batch = 1;
    d.heads_q = d.heads_kv = heads;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = hd;
    d.mask.causal = causal;
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    for (int r = -1; !bad && r < reps; r++) {
        double t0 = now();
        bad |= attn_sdpa(ctx, &d, q, k, v, o, lse) != ATTN_OK;
        double t1 = now();
        bad |= attn_sdpa_backward(ctx, &d, &g) != ATTN_OK;
        double t2 = now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t1;
        }
        if (rss)
            break;
    }
    if (bad) {
        fprintf(stderr, "N=%d: %s\n", n, attn_context_last_error(ctx));
    } else if (rss) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        printf("N=%d H=%d d=%d: peak RSS %.1f MiB (tensors %.1f MiB)\n", n,
               heads, hd, (double)u.ru_maxrss / 1024.0,
               (double)(9 * e * 4) / 1048576.0);
    } else {
        double f = median(tf, reps), b = median(tb, reps);
        printf("N=%-6d forward %9.3f ms  backward %9.3f ms  ratio %.2f  "
               "(medians of %d alternating runs)\n",
               n, 1e3 * f, 1e3 * b, b / f, reps);
    }
    free(q), free(k), free(v), free(dout), free(o), free(dq), free(dk);
    free(dv), free(lse), free(tf), free(tb);
    return bad;
}

int main(int argc, char **argv)
{
    attn_options opt = ATTN_OPTIONS_INIT;
    attn_context *ctx;
    const char *ns = "512,2048";
    int reps = 9, heads = 8, hd = 64, causal = 0, rss = 0, bad = 0;

    opt.device = "native";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--causal")) {
            causal = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "attn-bwd-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--n"))
            ns = val;
        else if (!strcmp(a, "--reps"))
            reps = atoi(val);
        else if (!strcmp(a, "--threads"))
            opt.threads = atoi(val);
        else if (!strcmp(a, "--heads"))
            heads = atoi(val);
        else if (!strcmp(a, "--head-dim"))
            hd = atoi(val);
        else if (!strcmp(a, "--rss"))
            rss = atoi(val);
        else {
            fprintf(stderr, "attn-bwd-bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (reps < 1 || heads < 1 || hd < 1) {
        fprintf(stderr, "attn-bwd-bench: --reps, --heads and --head-dim "
                        "must be positive\n");
        return 2;
    }
    if (attn_context_create(&opt, &ctx) != ATTN_OK) {
        fprintf(stderr, "attn-bwd-bench: %s\n", attn_last_error());
        return 1;
    }
    if (rss > 0) {
        bad = run(ctx, heads, hd, rss, causal, 1, 1);
    } else {
        for (const char *p = ns; *p;) {
            char *end;
            long n = strtol(p, &end, 10);
            if (n < 1 || end == p) {
                fprintf(stderr, "attn-bwd-bench: bad --n %s\n", ns);
                bad = 1;
                break;
            }
            bad |= run(ctx, heads, hd, (int)n, causal, reps, 0);
            p = *end == ',' ? end + 1 : end;
        }
    }
    attn_context_destroy(ctx);
    return bad;
}
