/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_validation's machinery: inputs valid for two base shapes, outputs in
 * one sentinel-filled pool, and expect_fail, which runs one call on a fresh
 * thread with a fresh native context so that both error strings start
 * empty, then checks the status, the pool and the error strings.
 */
#ifndef ATTN_TEST_VCALL_H
#define ATTN_TEST_VCALL_H

#include <stdint.h>

#include "attn/attn.h"

#define POOL_FLOATS 4096
#define SENTINEL    0xa5

/* Inputs: valid for the base shapes, filled with small values. */
extern float in_q[512], in_k[512], in_v[512], in_w[512], in_bias[512];
extern float in_xq[512], in_xkv[512], in_table[512];
extern float w_q[512], w_k[512], w_v[512], w_o[512];
/* Outputs live in one sentinel-filled pool, checked whole after each call. */
extern float out_pool[POOL_FLOATS];
#define OUT_O     (out_pool + 256)
#define OUT_LSE   (out_pool + 1024)
#define OUT_Y     (out_pool + 2048)
#define OUT_TABLE (out_pool + 3072)

typedef enum call_kind {
    CALL_SDPA,
    CALL_MHA,
    CALL_POSENC,
    CALL_CREATE
} call_kind;

/* One call of any entry point, with what it returned (set by expect_fail). */
typedef struct call {
    call_kind kind;
    int null_ctx;
    /* attn_sdpa */
    attn_sdpa_desc d;
    const attn_sdpa_desc *dp;
    const void *q, *k, *v;
    void *o;
    float *lse;
    int32_t kv_len[2];
    /* attn_mha_forward */
    attn_mha_desc m;
    const attn_mha_desc *mp;
    int batch, seq_q, seq_kv;
    const float *x_q, *x_kv;
    attn_mask_desc mask;
    float *y;
    /* attn_posenc_sinusoidal */
    int seq, d_model, offset;
    float *table;
    /* attn_context_create */
    attn_options opt;
    int null_out;
    attn_context *created;
    /* results */
    int setup_failed;
    attn_status st;
    char tls_before[256], tls_after[256], ctx_before[256], ctx_after[256];
} call;

void pool_reset(void);
int pool_untouched(void);
/* Runs c and checks the failure contract; alt is a second acceptable
 * status (ATTN_OK when there is none). */
void expect_fail(call *c, const char *what, attn_status want, attn_status alt);
/* attn_sdpa base: batch 2, heads 4/2, seq 5/7, head_dim 8, head_dim_v 6. */
void sdpa_base(call *c);
/* attn_mha_forward base: d_model 8, heads 2/1, head_dim 4, batch 2, seq 3,
 * self-attention; mha_cross switches to x_kv with seq_kv 5. */
void mha_base(call *c);
void mha_cross(call *c);
/* Suite init: fills the inputs.  Returns 0. */
int vcall_init_inputs(void);

#endif /* ATTN_TEST_VCALL_H */
