/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The machinery of test_validation: valid base calls, sentinel-filled
 * outputs, and one bad call at a time on a fresh thread with a fresh
 * context (see vcall.h).
 */
#include "vcall.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "harness.h"

float in_q[512], in_k[512], in_v[512], in_w[512], in_bias[512];
float in_xq[512], in_xkv[512], in_table[512];
float w_q[512], w_k[512], w_v[512], w_o[512];
float out_pool[POOL_FLOATS];

void pool_reset(void)
{
    memset(out_pool, SENTINEL, sizeof out_pool);
}

int pool_untouched(void)
{
    const unsigned char *p = (const unsigned char *)out_pool;
    for (size_t i = 0; i < sizeof out_pool; i++)
        if (p[i] != SENTINEL)
            return 0;
    return 1;
}

static void *call_thread(void *arg)
{
    call *c = arg;
    attn_context *ctx = NULL;
    snprintf(c->tls_before, sizeof c->tls_before, "%s", attn_last_error());
    if (!c->null_ctx && (c->kind == CALL_SDPA || c->kind == CALL_MHA)) {
        attn_options o;
        attn_options_init(&o);
        o.device = "native";
        o.threads = 1;
        if (attn_context_create(&o, &ctx) != ATTN_OK) {
            c->setup_failed = 1;
            return NULL;
        }
        snprintf(c->ctx_before, sizeof c->ctx_before, "%s",
                 attn_context_last_error(ctx));
    }
    switch (c->kind) {
    case CALL_SDPA:
        c->st = attn_sdpa(ctx, c->dp, c->q, c->k, c->v, c->o, c->lse);
        break;
    case CALL_MHA:
        c->st = attn_mha_forward(ctx, c->mp, c->batch, c->seq_q, c->seq_kv,
                                 c->x_q, c->x_kv, &c->mask, c->y);
        break;
    case CALL_POSENC:
        c->st = attn_posenc_sinusoidal(c->seq, c->d_model, c->offset, c->table);
        break;
    case CALL_CREATE:
        c->created = (attn_context *)c; /* must come back NULL */
        c->st = attn_context_create(&c->opt, c->null_out ? NULL : &c->created);
        break;
    }
    snprintf(c->tls_after, sizeof c->tls_after, "%s", attn_last_error());
    if (ctx) {
        snprintf(c->ctx_after, sizeof c->ctx_after, "%s",
                 attn_context_last_error(ctx));
        attn_context_destroy(ctx);
    }
    return NULL;
}

void expect_fail(call *c, const char *what, attn_status want, attn_status alt)
{
    pthread_t t;
    pool_reset();
    HARNESS_EXPECT(pthread_create(&t, NULL, call_thread, c) == 0, what);
    pthread_join(t, NULL);
    HARNESS_EXPECT(!c->setup_failed, what);
    if (c->setup_failed)
        return;
    int status_ok = c->st == want || (alt != ATTN_OK && c->st == alt);
    HARNESS_EXPECT(status_ok, what);
    if (!status_ok)
        printf("\n  %s: got %s, want %s\n", what, attn_status_string(c->st),
               attn_status_string(want));
    HARNESS_EXPECT(pool_untouched(), what);
    HARNESS_EXPECT(c->tls_before[0] == '\0', what);
    HARNESS_EXPECT(c->tls_after[0] != '\0', what);
    if ((c->kind == CALL_SDPA || c->kind == CALL_MHA) && !c->null_ctx) {
        HARNESS_EXPECT(c->ctx_before[0] == '\0', what);
        HARNESS_EXPECT(c->ctx_after[0] != '\0', what);
    }
    if (c->kind == CALL_CREATE && !c->null_out) {
        HARNESS_EXPECT(c->created == NULL, what);
        if (c->created && c->created != (attn_context *)c)
            attn_context_destroy(c->created);
    }
}

void sdpa_base(call *c)
{
    memset(c, 0, sizeof *c);
    c->kind = CALL_SDPA;
    c->d.batch = 2;
    c->d.heads_q = 4;
    c->d.heads_kv = 2;
    c->d.seq_q = 5;
    c->d.seq_kv = 7;
    c->d.head_dim = 8;
    c->d.head_dim_v = 6;
    c->dp = &c->d;
    c->q = in_q;
    c->k = in_k;
    c->v = in_v;
    c->o = OUT_O;
    c->lse = OUT_LSE;
    c->kv_len[0] = 7;
    c->kv_len[1] = 3;
}

void mha_base(call *c)
{
    memset(c, 0, sizeof *c);
    c->kind = CALL_MHA;
    c->m.d_model = 8;
    c->m.heads_q = 2;
    c->m.heads_kv = 1;
    c->m.head_dim = 4;
    c->m.wq = w_q;
    c->m.wk = w_k;
    c->m.wv = w_v;
    c->m.wo = w_o;
    c->mp = &c->m;
    c->batch = 2;
    c->seq_q = 3;
    c->seq_kv = 3;
    c->x_q = in_xq;
    c->y = OUT_Y;
    c->kv_len[0] = 3;
    c->kv_len[1] = 1;
}

void mha_cross(call *c)
{
    c->x_kv = in_xkv;
    c->seq_kv = 5;
}

int vcall_init_inputs(void)
{
    for (size_t i = 0; i < 512; i++) {
        float x = (float)((int)(i * 37 % 101) - 50) / 64.0f;
        in_q[i] = in_k[i] = in_v[i] = in_w[i] = x;
        in_xq[i] = in_xkv[i] = in_table[i] = x;
        w_q[i] = w_k[i] = w_v[i] = w_o[i] = x / 4.0f;
        in_bias[i] = 0.25f;
    }
    return 0;
}
