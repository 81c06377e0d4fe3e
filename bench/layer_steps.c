/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-layer-steps: the time of one decoder step of a persistent layer
 * (attn_mha_forward_layer with a KV cache, one token per step) as the
 * cache grows, split into its attention part and the rest.
 *
 * Every step is timed; each window of --every steps prints the median of
 * its steps (steps_ms), then the window's last step run again (step_ms)
 * and the attention alone at its cache length (attn_sdpa, seq_q 1, on the
 * cache itself, kv_len hiding its empty rows), 7 times each in turns, medians,
 * and their difference (rest_ms): the projections, the RoPE, the cache append
 * and, on OpenCL, the cache's copy to the device.  With --recompute the row
 * also times what a step costs without a cache: the layer over the whole
 * prefix, causal (median of 3). Bench code: not part of the library.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <attn/attn.h>

#include "cli/cli_options.h"

typedef struct config {
    const char *device;
    int threads, d_model, heads_q, heads_kv, head_dim, steps, every;
    int recompute;
} config;

enum {
    K_DEVICE = 'd',
    K_THREADS = 't',
    K_DMODEL = CLI_LONG_ONLY,
    K_HEADS,
    K_KV_HEADS,
    K_HEAD_DIM,
    K_STEPS,
    K_EVERY,
    K_RECOMPUTE
};

static const cli_option options[] = {
    {"device", K_DEVICE, "SPEC", "attn_options.device (default native)"},
    {"threads", K_THREADS, "N", "native worker threads (default: all)"},
    {"d-model", K_DMODEL, "N", "model width (default 1024)"},
    {"heads", K_HEADS, "N", "query heads (default 16)"},
    {"kv-heads", K_KV_HEADS, "N", "key / value heads (default 16)"},
    {"head-dim", K_HEAD_DIM, "N", "elements per head (default 64)"},
    {"steps", K_STEPS, "N", "decoder steps, one token each (default 2048)"},
    {"every", K_EVERY, "N", "steps per printed row (default 256)"},
    {"recompute", K_RECOMPUTE, NULL,
     "also time the layer over the whole prefix (no cache)"},
    {NULL, 0, NULL, NULL}};

static int positive(const char *v, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n <= 0 || n > 1 << 20)
        return -1;
    *out = (int)n;
    return 0;
}

static int on_option(void *user, int key, const char *v)
{
    config *c = user;
    switch (key) {
    case K_DEVICE:
        c->device = v;
        return 0;
    case K_THREADS:
        return positive(v, &c->threads);
    case K_DMODEL:
        return positive(v, &c->d_model);
    case K_HEADS:
        return positive(v, &c->heads_q);
    case K_KV_HEADS:
        return positive(v, &c->heads_kv);
    case K_HEAD_DIM:
        return positive(v, &c->head_dim);
    case K_STEPS:
        return positive(v, &c->steps);
    case K_EVERY:
        return positive(v, &c->every);
    case K_RECOMPUTE:
        c->recompute = 1;
        return 0;
    }
    return -1;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *random_array(size_t n, float scale, unsigned *state)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; a && i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        a[i] = scale * ((float)(*state >> 8) / 8388608.0f - 1.0f);
    }
    return a;
}

/* The last step again (kv->len - 1 cached keys, one token) and the
 * attention alone at its length (the token's query against kv->len keys,
 * attn_sdpa on the cache), 7 times each, in turns so
 * that both see the same machine: the medians into *step and *att. */
static int time_split(attn_context *ctx, attn_mha_layer *layer, const config *c,
                      attn_kv_cache *kv, const float *x, float *y,
                      const float *q, float *o, double *step, double *att)
{
    const int32_t len = kv->len;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_mask_desc causal = ATTN_MASK_DESC_INIT;
    double ts[7], ta[7];
    causal.causal = 1;
    /* The cache [1, heads_kv, capacity, head_dim] is a K and V of
     * seq_kv = capacity; kv_len hides the rows not filled yet. */
    d.batch = 1;
    d.heads_q = c->heads_q;
    d.heads_kv = c->heads_kv;
    d.seq_q = 1;
    d.seq_kv = kv->capacity;
    d.head_dim = d.head_dim_v = c->head_dim;
    d.mask.kv_len = &len;
    for (int i = 0; i < 7; i++) {
        double t0 = now_ms();
        /* Rows at and past len are the call's to write: the same step
         * again writes the same row. */
        kv->len--;
        if (attn_mha_forward_layer(ctx, layer, 1, 1, 1, ATTN_F32, x, NULL,
                                   &causal, kv, y) != ATTN_OK)
            return -1;
        ts[i] = now_ms() - t0;
        t0 = now_ms();
        if (attn_sdpa(ctx, &d, q, kv->k, kv->v, o, NULL) != ATTN_OK)
            return -1;
        ta[i] = now_ms() - t0;
    }
    *step = median(ts, 7);
    *att = median(ta, 7);
    return 0;
}

/* The layer over the first len tokens at once, causal, no cache: median
 * of 3. */
static double time_recompute(attn_context *ctx, attn_mha_layer *layer, int len,
                             const float *x, float *y)
{
    attn_mask_desc causal = ATTN_MASK_DESC_INIT;
    double t[3];
    causal.causal = 1;
    for (int i = 0; i < 3; i++) {
        double t0 = now_ms();
        if (attn_mha_forward_layer(ctx, layer, 1, len, len, ATTN_F32, x, NULL,
                                   &causal, NULL, y) != ATTN_OK)
            return NAN;
        t[i] = now_ms() - t0;
    }
    return median(t, 3);
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {
        "attn-layer-steps",
        "times decoder steps of a persistent layer as its KV cache grows",
        ATTN_VERSION_STRING,
        "[options]",
        "Runs --steps decoder steps of one attn_mha_forward_layer layer "
        "(RoPE, one token per step, a KV cache) and prints, per window of "
        "--every steps, the median step time, the attention alone at the "
        "window's last cache length and the rest (projections, RoPE, "
        "cache append).",
        options,
        NULL};
    config c = {"native", 0, 1024, 16, 16, 64, 2048, 256, 0};
    attn_options o;
    attn_context *ctx = NULL;
    attn_mha_layer *layer = NULL;
    attn_mha_desc m = ATTN_MHA_DESC_INIT;
    attn_mask_desc causal = ATTN_MASK_DESC_INIT;
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    unsigned state = 5;
    float *w[4] = {NULL}, *x = NULL, *y = NULL, *kc = NULL, *vc = NULL;
    float *q = NULL, *ob = NULL;
    double *step_ms = NULL;
    int rc = cli_parse(&spec, argc, argv, on_option, &c);
    size_t dq, dkv, cache_n;

    if (rc >= 0)
        return rc;
    rc = 1;
    if (c.heads_q % c.heads_kv) {
        fprintf(stderr, "attn-layer-steps: --heads must be a multiple of "
                        "--kv-heads\n");
        return 2;
    }
    dq = (size_t)c.heads_q * c.head_dim;
    dkv = (size_t)c.heads_kv * c.head_dim;
    cache_n = dkv * (size_t)c.steps;
    attn_options_init(&o);
    o.device = c.device;
    o.threads = c.threads;
    o.allow_fallback = 0;
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        fprintf(stderr, "attn-layer-steps: %s\n", attn_last_error());
        return 1;
    }
    w[0] = random_array(dq * c.d_model, 0.03f, &state);
    w[1] = random_array(dkv * c.d_model, 0.03f, &state);
    w[2] = random_array(dkv * c.d_model, 0.03f, &state);
    w[3] = random_array(dq * c.d_model, 0.03f, &state);
    x = random_array((size_t)c.steps * c.d_model, 1.0f, &state);
    y = malloc((size_t)c.steps * c.d_model * sizeof *y);
    kc = malloc(cache_n * sizeof *kc);
    vc = malloc(cache_n * sizeof *vc);
    q = random_array(dq, 1.0f, &state);
    ob = malloc(dq * sizeof *ob);
    step_ms = malloc((size_t)c.every * sizeof *step_ms);
    if (!w[0] || !w[1] || !w[2] || !w[3] || !x || !y || !kc || !vc || !q ||
        !ob || !step_ms) {
        fprintf(stderr, "attn-layer-steps: out of memory\n");
        goto out;
    }
    m.d_model = c.d_model;
    m.heads_q = c.heads_q;
    m.heads_kv = c.heads_kv;
    m.head_dim = c.head_dim;
    m.wq = w[0];
    m.wk = w[1];
    m.wv = w[2];
    m.wo = w[3];
    m.posenc = ATTN_POSENC_ROPE;
    if (attn_mha_create(ctx, &m, 0.0f, &layer) != ATTN_OK) {
        fprintf(stderr, "attn-layer-steps: %s\n", attn_context_last_error(ctx));
        goto out;
    }
    kv.k = kc;
    kv.v = vc;
    kv.capacity = c.steps;
    causal.causal = 1;
    attn_context_device(ctx, &info);
    printf("# attn-layer-steps %s: %s; d_model %d, heads %d / %d x %d, one "
           "token per step\n",
           attn_version(), info.name, c.d_model, c.heads_q, c.heads_kv,
           c.head_dim);
    printf("%8s %12s %12s %14s %12s%s\n", "cache", "steps_ms", "step_ms",
           "attention_ms", "rest_ms", c.recompute ? "  recompute_ms" : "");
    for (int s = 0; s < c.steps; s++) {
        double t0 = now_ms();
        if (attn_mha_forward_layer(ctx, layer, 1, 1, 1, ATTN_F32,
                                   x + (size_t)s * c.d_model, NULL, &causal,
                                   &kv, y) != ATTN_OK) {
            fprintf(stderr, "attn-layer-steps: step %d: %s\n", s,
                    attn_context_last_error(ctx));
            goto out;
        }
        step_ms[s % c.every] = now_ms() - t0;
        if ((s + 1) % c.every == 0 || s + 1 == c.steps) {
            int n = s % c.every + 1;
            double step = median(step_ms, n), again, att;
            if (time_split(ctx, layer, &c, &kv, x + (size_t)s * c.d_model, y, q,
                           ob, &again, &att)) {
                fprintf(stderr, "attn-layer-steps: at %d: %s\n", kv.len,
                        attn_context_last_error(ctx));
                goto out;
            }
            printf("%8d %12.3f %12.3f %14.3f %12.3f", kv.len, step, again, att,
                   again - att);
            if (c.recompute)
                printf("  %12.3f", time_recompute(ctx, layer, kv.len, x, y));
            printf("\n");
            fflush(stdout);
        }
    }
    rc = 0;
out:
    attn_mha_destroy(layer);
    attn_context_destroy(ctx);
    for (int i = 0; i < 4; i++)
        free(w[i]);
    free(x);
    free(y);
    free(kc);
    free(vc);
    free(q);
    free(ob);
    free(step_ms);
    return rc;
}
