/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small decoder generating tokens with persistent layers and KV caches:
 * four attention layers (d_model 64, 8 query heads of 8 over 2 kv heads,
 * RoPE), each with residual, x <- x + layer(x).  A prompt of 8 tokens
 * goes in as one step; then every step feeds one token, whose input is
 * made from the model's last output (tanh of it), so the 256 tokens are
 * generated one after the other.  Each layer keeps its own cache: a step
 * projects only its own token and attends over the cache.
 *
 * Afterwards the whole sequence (prompt and generated tokens) runs through
 * the same layers at once, causal, without caches: every output of the
 * step-by-step run must agree with it to float rounding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn/attn.h>

enum {
    LAYERS = 4,
    DM = 64,
    HQ = 8,
    HKV = 2,
    HD = 8,
    PROMPT = 8,
    GEN = 256,
    SEQ = PROMPT + GEN
};

/* Deterministic values in [-1, 1). */
static float next_value(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

static float *random_array(size_t n, float scale, unsigned *state)
{
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; a && i < n; i++)
        a[i] = scale * next_value(state);
    return a;
}

/* x [n, DM] += y [n, DM] */
static void add_rows(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n * DM; i++)
        x[i] += y[i];
}

int main(void)
{
    static float kc[LAYERS][HKV * SEQ * HD], vc[LAYERS][HKV * SEQ * HD];
    static float xs[SEQ * DM], h[SEQ * DM], y[SEQ * DM];
    static float out_step[SEQ * DM], out_full[SEQ * DM];
    attn_mha_layer *layer[LAYERS] = {NULL};
    attn_kv_cache kv[LAYERS];
    float *w[LAYERS][4] = {{NULL}};
    attn_mask_desc causal = ATTN_MASK_DESC_INIT;
    attn_context *ctx;
    unsigned state = 11;
    double worst = 0.0;
    int rc = 1, t = 0;

    if (attn_context_create(NULL, &ctx) != ATTN_OK) {
        fprintf(stderr, "decoder: %s\n", attn_last_error());
        return 1;
    }
    causal.causal = 1;
    for (int l = 0; l < LAYERS; l++) {
        attn_mha_desc m = ATTN_MHA_DESC_INIT;
        const float s = 1.0f / sqrtf((float)DM);
        for (int i = 0; i < 4; i++)
            if (!(w[l][i] = random_array((size_t)DM * HQ * HD, s, &state)))
                goto out;
        m.d_model = DM;
        m.heads_q = HQ;
        m.heads_kv = HKV;
        m.head_dim = HD;
        m.wq = w[l][0];
        m.wk = w[l][1];
        m.wv = w[l][2];
        m.wo = w[l][3];
        m.posenc = ATTN_POSENC_ROPE;
        if (attn_mha_create(ctx, &m, 0.0f, &layer[l]) != ATTN_OK) {
            fprintf(stderr, "decoder: %s\n", attn_context_last_error(ctx));
            goto out;
        }
        attn_kv_cache_init(&kv[l]);
        kv[l].k = kc[l];
        kv[l].v = vc[l];
        kv[l].capacity = SEQ;
    }
    for (int i = 0; i < PROMPT * DM; i++)
        xs[i] = next_value(&state);

    /* Step by step: the prompt at once, then one token a step. */
    while (t < SEQ) {
        const int n = t == 0 ? PROMPT : 1;
        float *x = h + (size_t)t * DM;
        memcpy(x, xs + (size_t)t * DM, (size_t)n * DM * sizeof *x);
        for (int l = 0; l < LAYERS; l++) {
            if (attn_mha_forward_layer(ctx, layer[l], 1, n, n, ATTN_F32, x,
                                       NULL, &causal, &kv[l], y) != ATTN_OK) {
                fprintf(stderr, "decoder: step at token %d, layer %d: %s\n", t,
                        l, attn_context_last_error(ctx));
                goto out;
            }
            add_rows(x, y, (size_t)n);
        }
        memcpy(out_step + (size_t)t * DM, x, (size_t)n * DM * sizeof *x);
        t += n;
        /* The next token's input comes from the last output. */
        if (t < SEQ)
            for (int c = 0; c < DM; c++)
                xs[(size_t)t * DM + c] = tanhf(x[(size_t)(n - 1) * DM + c]);
    }

    /* The whole sequence at once, no cache. */
    memcpy(out_full, xs, sizeof xs);
    for (int l = 0; l < LAYERS; l++) {
        if (attn_mha_forward_layer(ctx, layer[l], 1, SEQ, SEQ, ATTN_F32,
                                   out_full, NULL, &causal, NULL,
                                   y) != ATTN_OK) {
            fprintf(stderr, "decoder: full sequence, layer %d: %s\n", l,
                    attn_context_last_error(ctx));
            goto out;
        }
        add_rows(out_full, y, SEQ);
    }
    for (size_t i = 0; i < (size_t)SEQ * DM; i++) {
        double e = fabs((double)out_step[i] - (double)out_full[i]) /
                   (1.0 + fabs((double)out_full[i]));
        if (!(e <= worst)) /* NaN too */
            worst = isnan(e) ? INFINITY : e;
    }
    if (worst > 1e-4) {
        fprintf(stderr,
                "decoder: step-by-step and full-sequence outputs differ "
                "(%g)\n",
                worst);
        goto out;
    }
    printf("decoder: %d layers, prompt %d, %d tokens generated with KV "
           "caches (len %d): outputs match the full causal sequence "
           "(largest difference %.2g)\n",
           LAYERS, PROMPT, GEN, kv[0].len, worst);
    rc = 0;
out:
    for (int l = 0; l < LAYERS; l++) {
        attn_mha_destroy(layer[l]);
        for (int i = 0; i < 4; i++)
            free(w[l][i]);
    }
    attn_context_destroy(ctx);
    return rc;
}
