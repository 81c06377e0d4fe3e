/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-mha-bwd-bench: the multi-head layer's training calls against its
 * forward.  Per N (seq_q = seq_kv = N, self-attention, B=1, d_model 512,
 * 8 heads of 64, RoPE, causal unless --no-causal): the medians of
 * attn_mha_forward, attn_mha_forward_train, attn_mha_backward from the
 * saved activations (every gradient asked for) and attn_mha_backward
 * recomputing the forward, after one warm-up of each, and the ratio of
 * the backward to the forward.
 *
 *   attn-mha-bwd-bench [--n N,N,...] [--reps R] [--threads T]
 *                      [--device SPEC] [--no-causal]
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"

enum { DM = 512, HEADS = 8, HD = 64, CALLS = 4 };

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

static float *filled(size_t n, float a, unsigned *state)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        x[i] = a * ((float)(*state >> 8) / 8388608.0f - 1.0f);
    }
    return x;
}

/* One of the timed calls; 0 on success. */
static int call(attn_context *ctx, int which, const attn_mha_desc *m, int n,
                const float *x, const attn_mask_desc *mask, float *y,
                attn_mha_saved **saved, const attn_mha_grad *g)
{
    switch (which) {
    case 0:
        return attn_mha_forward(ctx, m, 1, n, n, x, NULL, mask, y);
    case 1:
        return attn_mha_forward_train(ctx, m, 1, n, n, x, NULL, mask, y, saved);
    case 2:
        return attn_mha_backward(ctx, m, 1, n, n, x, NULL, mask, *saved, g);
    default:
        return attn_mha_backward(ctx, m, 1, n, n, x, NULL, mask, NULL, g);
    }
}

int main(int argc, char **argv)
{
    static const char *const names[CALLS] = {"forward", "forward_train",
                                             "backward", "backward_recompute"};
    const char *list = "512,1024,2048", *device = "native";
    int reps = 5, causal = 1;
    attn_options o = ATTN_OPTIONS_INIT;
    attn_context *ctx;
    attn_mha_desc m = ATTN_MHA_DESC_INIT;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    float *w[4], *gw[4];
    unsigned state = 7;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--n") && next)
            list = argv[++i];
        else if (!strcmp(argv[i], "--reps") && next)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && next)
            o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && next)
            device = argv[++i];
        else if (!strcmp(argv[i], "--no-causal"))
            causal = 0;
        else {
            fprintf(stderr,
                    "usage: %s [--n N,N,...] [--reps R] [--threads T] "
                    "[--device SPEC] [--no-causal]\n",
                    argv[0]);
            return 2;
        }
    }
    if (reps < 1)
        reps = 1;
    o.device = device;
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        fprintf(stderr, "attn-mha-bwd-bench: %s\n", attn_last_error());
        return 1;
    }
    for (int i = 0; i < 4; i++) {
        w[i] = filled((size_t)DM * DM, 1.0f / sqrtf((float)DM), &state);
        gw[i] = malloc((size_t)DM * DM * sizeof(float));
        if (!w[i] || !gw[i])
            return 1;
    }
    m.d_model = DM;
    m.heads_q = m.heads_kv = HEADS;
    m.head_dim = HD;
    m.wq = w[0];
    m.wk = w[1];
    m.wv = w[2];
    m.wo = w[3];
    m.posenc = ATTN_POSENC_ROPE;
    mask.causal = causal;
    printf("# B=1 d_model %d, %d heads of %d, RoPE, %s, %d reps (ms, "
           "medians)\n",
           DM, HEADS, HD, causal ? "causal" : "not causal", reps);
    printf("%6s %10s %14s %10s %19s %9s\n", "N", names[0], names[1], names[2],
           names[3], "bwd/fwd");
    for (const char *p = list; *p && rc == 0;) {
        int n = atoi(p);
        size_t tok = (size_t)n * DM;
        float *x = filled(tok, 1.0f, &state), *y = malloc(tok * 4),
              *dy = filled(tok, 1.0f, &state), *dx = malloc(tok * 4);
        double *t = malloc((size_t)CALLS * (size_t)reps * sizeof *t),
               med[CALLS];
        attn_mha_saved *saved = NULL;
        attn_mha_grad g = ATTN_MHA_GRAD_INIT;
        const char *comma = strchr(p, ',');
        p = comma ? comma + 1 : p + strlen(p);
        if (n <= 0 || !x || !y || !dy || !dx || !t) {
            fprintf(stderr, "attn-mha-bwd-bench: bad N or out of memory\n");
            rc = 1;
        }
        g.d_y = dy;
        g.d_x_q = dx;
        g.d_wq = gw[0];
        g.d_wk = gw[1];
        g.d_wv = gw[2];
        g.d_wo = gw[3];
        for (int r = -1; r < reps && rc == 0; r++)
            for (int c = 0; c < CALLS && rc == 0; c++) {
                double t0 = now();
                if (call(ctx, c, &m, n, x, &mask, y, &saved, &g)) {
                    fprintf(stderr, "attn-mha-bwd-bench: %s: %s\n", names[c],
                            attn_context_last_error(ctx));
                    rc = 1;
                } else if (r >= 0) {
                    t[c * reps + r] = now() - t0;
                }
            }
        if (rc == 0) {
            for (int c = 0; c < CALLS; c++)
                med[c] = 1e3 * median(t + c * reps, reps);
            printf("%6d %10.2f %14.2f %10.2f %19.2f %9.2f\n", n, med[0], med[1],
                   med[2], med[3], med[2] / med[0]);
            fflush(stdout);
        }
        attn_mha_saved_destroy(saved);
        free(x);
        free(y);
        free(dy);
        free(dx);
        free(t);
    }
    for (int i = 0; i < 4; i++) {
        free(w[i]);
        free(gw[i]);
    }
    attn_context_destroy(ctx);
    return rc;
}
