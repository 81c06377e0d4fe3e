/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A padded batch: three sequences of 5, 9 and 7 tokens padded to 9.
 * Padded at the end (an encoder, no causal mask), the padding keys are
 * hidden in one of two ways, which give the same result:
 *   - kv_len[b] = the sequence's length (keys j >= kv_len[b] are hidden);
 *   - a key-padding bias, ATTN_BIAS_KEY: [batch, seq_kv] floats, 0 at
 *     the tokens and -INFINITY at the padding keys, read for every head
 *     and query (the form to use when the padding is not at the end, as
 *     the attention mask of a Hugging Face tokenizer gives it).
 * Query rows of padding tokens are computed too and simply ignored.
 * Padded at the start (a decoder's prompt batch, causal), q_start and
 * kv_start give each item's pad count: the padding keys are hidden, the
 * top-left causal diagonal starts at the first token, and the padding
 * rows come out 0.
 *
 * Checked against each sequence run alone, unpadded.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn/attn.h>

enum { B = 3, H = 4, L = 9, D = 16 };

static const int32_t lengths[B] = {5, 9, 7};

static float next_value(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

static size_t at(int b, int h, int i)
{
    return (((size_t)b * H + h) * L + i) * D;
}

/* Sequence b alone, unpadded (causal or not), against rows first ..
 * first+len-1 of o, in which the sequence's q, k and v rows sit at those
 * rows too. */
static int check_alone(attn_context *ctx, const float *q, const float *k,
                       const float *v, const float *o, int b, int first,
                       int causal)
{
    static float qa[H * L * D], ka[H * L * D], va[H * L * D], oa[H * L * D];
    const int n = lengths[b];
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    d.batch = 1;
    d.heads_q = d.heads_kv = H;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = causal;
    for (int h = 0; h < H; h++) {
        memcpy(qa + (size_t)h * n * D, q + at(b, h, first), n * D * sizeof *q);
        memcpy(ka + (size_t)h * n * D, k + at(b, h, first), n * D * sizeof *k);
        memcpy(va + (size_t)h * n * D, v + at(b, h, first), n * D * sizeof *v);
    }
    if (attn_sdpa(ctx, &d, qa, ka, va, oa, NULL) != ATTN_OK)
        return -1;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < n * D; i++)
            if (!(fabsf(o[at(b, h, first) + i] - oa[(size_t)h * n * D + i]) <=
                  1e-5f))
                return -1;
    return 0;
}

/* 3: left padding.  Each sequence's tokens moved to the end of its rows
 * (q, k, v: the padded arrays, rearranged in place), q_start = kv_start =
 * the pad count, causal from the first token (TOP_LEFT measures the
 * diagonal from the starts).  Returns 0 when every sequence matches its
 * causal run alone and the padding rows are 0. */
static int left_padded(attn_context *ctx, float *q, float *k, float *v,
                       float *o)
{
    int32_t pad[B];
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    for (int b = 0; b < B; b++) {
        pad[b] = L - lengths[b];
        for (int h = 0; h < H; h++) {
            float *const t[3] = {q, k, v};
            for (int x = 0; x < 3; x++) /* tokens 0 .. len-1 to pad .. L-1 */
                memmove(t[x] + at(b, h, pad[b]), t[x] + at(b, h, 0),
                        (size_t)lengths[b] * D * sizeof *q);
        }
    }
    d.batch = B;
    d.heads_q = d.heads_kv = H;
    d.seq_q = d.seq_kv = L;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.q_start = pad;
    d.kv_start = pad;
    if (attn_sdpa(ctx, &d, q, k, v, o, NULL) != ATTN_OK)
        return -1;
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++)
            for (int i = 0; i < pad[b] * D; i++)
                if (o[at(b, h, 0) + i] != 0.0f)
                    return -1;
        if (check_alone(ctx, q, k, v, o, b, pad[b], 1) != 0)
            return -1;
    }
    return 0;
}

int main(void)
{
    static float q[B * H * L * D], k[B * H * L * D], v[B * H * L * D];
    static float o_len[B * H * L * D], o_bias[B * H * L * D];
    static float bias[B * L];
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_context *ctx;
    unsigned state = 3;
    int rc = 0;

    if (attn_context_create(NULL, &ctx) != ATTN_OK) {
        fprintf(stderr, "padded_batch: %s\n", attn_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        q[i] = next_value(&state);
        k[i] = next_value(&state);
        v[i] = next_value(&state);
    }
    d.batch = B;
    d.heads_q = d.heads_kv = H;
    d.seq_q = d.seq_kv = L;
    d.head_dim = d.head_dim_v = D;

    /* 1: the lengths. */
    d.mask.kv_len = lengths;
    if (attn_sdpa(ctx, &d, q, k, v, o_len, NULL) != ATTN_OK)
        rc = 1;

    /* 2: a key-padding bias [batch, seq_kv]. */
    for (int b = 0; b < B; b++)
        for (int j = 0; j < L; j++)
            bias[(size_t)b * L + j] = j < lengths[b] ? 0.0f : -INFINITY;
    d.mask.kv_len = NULL;
    d.mask.bias = bias;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    if (rc == 0 && attn_sdpa(ctx, &d, q, k, v, o_bias, NULL) != ATTN_OK)
        rc = 1;
    if (rc)
        fprintf(stderr, "padded_batch: %s\n", attn_context_last_error(ctx));

    for (int b = 0; b < B && rc == 0; b++) {
        if (check_alone(ctx, q, k, v, o_len, b, 0, 0) != 0 ||
            check_alone(ctx, q, k, v, o_bias, b, 0, 0) != 0) {
            fprintf(stderr,
                    "padded_batch: sequence %d differs from its unpadded "
                    "run\n",
                    b);
            rc = 1;
        }
    }
    if (rc == 0 && left_padded(ctx, q, k, v, o_len) != 0) {
        fprintf(stderr,
                "padded_batch: the left-padded causal batch differs "
                "from its sequences run alone (%s)\n",
                attn_context_last_error(ctx));
        rc = 1;
    }
    if (rc == 0)
        printf("padded_batch: lengths 5, 9, 7 padded to %d: kv_len and the "
               "key-padding bias both match each sequence alone; so does "
               "the left-padded causal batch (q_start, kv_start)\n",
               L);
    attn_context_destroy(ctx);
    return rc;
}
