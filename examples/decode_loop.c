/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A decoder loop over a growing KV cache: each step appends one token's key
 * and value to a cache of fixed capacity and attends from that token's
 * query (seq_q 1) to the tokens so far.  The cache keeps its capacity as
 * seq_kv; kv_len[b] says how many rows are filled, so the rows behind it
 * (never written: NaN here) are never read.  Two sequences of different
 * lengths share a batch, with grouped-query heads (4 query heads, 2 kv).
 *
 * Each step is checked against attn_sdpa on a packed copy of the cache,
 * exactly as long as the sequence: the answers must agree.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn/attn.h>

enum { B = 2, HQ = 4, HKV = 2, D = 32, CAP = 48, STEPS = 40 };

/* Deterministic values in [-1, 1). */
static float next_value(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / 8388608.0f - 1.0f;
}

/* Row t of kv head h of batch item b in a cache of capacity cap. */
static float *cache_row(float *cache, int b, int h, int t, int cap)
{
    return cache + (((size_t)b * HKV + h) * cap + t) * D;
}

/* The same step as one exact-length call per sequence (a sequence with
 * no token yet sees no key: its O is 0). */
static int check_step(attn_context *ctx, const float *kc, const float *vc,
                      const float *q, const int32_t *len, const float *o)
{
    static float k[HKV * CAP * D], v[HKV * CAP * D], want[HQ * D];
    for (int b = 0; b < B; b++) {
        attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
        if (len[b] == 0) {
            for (int i = 0; i < HQ * D; i++)
                if (o[(size_t)b * HQ * D + i] != 0.0f)
                    return -1;
            continue;
        }
        d.batch = 1;
        d.heads_q = HQ;
        d.heads_kv = HKV;
        d.seq_q = 1;
        d.seq_kv = len[b];
        d.head_dim = d.head_dim_v = D;
        for (int h = 0; h < HKV; h++) {
            memcpy(k + (size_t)h * len[b] * D,
                   cache_row((float *)kc, b, h, 0, CAP),
                   (size_t)len[b] * D * sizeof(float));
            memcpy(v + (size_t)h * len[b] * D,
                   cache_row((float *)vc, b, h, 0, CAP),
                   (size_t)len[b] * D * sizeof(float));
        }
        if (attn_sdpa(ctx, &d, q + (size_t)b * HQ * D, k, v, want, NULL) !=
            ATTN_OK)
            return -1;
        for (int i = 0; i < HQ * D; i++)
            if (!(fabsf(o[(size_t)b * HQ * D + i] - want[i]) <= 1e-5f))
                return -1;
    }
    return 0;
}

int main(void)
{
    static float kc[B * HKV * CAP * D], vc[B * HKV * CAP * D];
    static float q[B * HQ * D], o[B * HQ * D];
    int32_t len[B] = {0, 0};
    const int start[B] = {0, 7}; /* the second sequence joins later */
    attn_context *ctx;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    unsigned state = 7;
    int rc = 0;

    if (attn_context_create(NULL, &ctx) != ATTN_OK) {
        fprintf(stderr, "decode_loop: %s\n", attn_last_error());
        return 1;
    }
    /* Rows not yet written hold NaN: kv_len keeps them out. */
    for (size_t i = 0; i < sizeof kc / sizeof kc[0]; i++)
        kc[i] = vc[i] = NAN;

    /* One descriptor for every step: the cache's capacity is seq_kv. */
    d.batch = B;
    d.heads_q = HQ;
    d.heads_kv = HKV;
    d.seq_q = 1;
    d.seq_kv = CAP;
    d.head_dim = d.head_dim_v = D;
    d.mask.kv_len = len;

    for (int step = 0; step < STEPS && rc == 0; step++) {
        for (int b = 0; b < B; b++) {
            if (step < start[b])
                continue; /* kv_len 0: the row sees no key, O = 0 */
            /* The new token: its key and value into the cache. */
            for (int h = 0; h < HKV; h++)
                for (int c = 0; c < D; c++) {
                    cache_row(kc, b, h, len[b], CAP)[c] = next_value(&state);
                    cache_row(vc, b, h, len[b], CAP)[c] = next_value(&state);
                }
            len[b]++;
        }
        for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
            q[i] = next_value(&state);
        if (attn_sdpa(ctx, &d, q, kc, vc, o, NULL) != ATTN_OK) {
            fprintf(stderr, "decode_loop: step %d: %s\n", step,
                    attn_context_last_error(ctx));
            rc = 1;
        } else if (check_step(ctx, kc, vc, q, len, o) != 0) {
            fprintf(stderr,
                    "decode_loop: step %d differs from the packed "
                    "cache\n",
                    step);
            rc = 1;
        }
    }
    if (rc == 0)
        printf("decode_loop: %d steps, cache of %d, lengths %d and %d: each "
               "step matches the packed cache\n",
               STEPS, CAP, (int)len[0], (int)len[1]);
    attn_context_destroy(ctx);
    return rc;
}
