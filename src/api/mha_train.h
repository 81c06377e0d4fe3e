/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Training the multi-head layer (attn_mha_forward_train,
 * attn_mha_backward): the activations saved by the training forward and
 * the host arithmetic the forward and the backward share.  Not installed.
 */
#ifndef ATTN_API_MHA_TRAIN_H
#define ATTN_API_MHA_TRAIN_H

#include "api/context.h"
#include "cpu/backend_native.h"

/* Q and K (after projection, bias and RoPE), V and O in the heads' layout
 * of attention ([batch, heads, seq, head_dim]), lse [batch, heads_q,
 * seq_q]: one allocation of cap floats. */
struct attn_mha_saved {
    int batch, seq_q, seq_kv, heads_q, heads_kv, head_dim;
    size_t cap;
    float *buf, *q, *k, *v, *o, *lse;
};

/* Floats the saved activations of call c take (c validated). */
size_t attn_mha_saved_floats(const attn_mha_call *c);

/* Points s's tensors for call c inside s->buf (s->cap >= the floats c
 * needs) and records c's sizes. */
void attn_mha_saved_shape(attn_mha_saved *s, const attn_mha_call *c);

/* The layer's forward for validated call c: fills s (shaped for c) and,
 * when y is not NULL, writes y (last, so that an error leaves it as it
 * was).  The attention runs through attn_sdpa on ctx.  Errors:
 * ATTN_ERR_OUT_OF_MEMORY and those of attn_sdpa (reported by it). */
attn_status attn_mha_train_forward(attn_context *ctx, const attn_mha_call *c,
                                   attn_mha_saved *s, float *y, attn_err *err);

/* C [m, n] = A [m, k] B [n, k]^T (+ bias[n] when not NULL), leading
 * dimensions lda, ldb, ldc: the native backend's GEMM on ctx's worker
 * pool.  Returns ATTN_OK or ATTN_ERR_OUT_OF_MEMORY (C untouched then). */
attn_status attn_mha_gemm(attn_context *ctx, int m, int n, int k,
                          const float *a, size_t lda, const float *b,
                          size_t ldb, const float *bias, float *c, size_t ldc);

/* out[c][r] = in[r][c] for r < rows, c < cols. */
void attn_mha_transpose(const float *in, size_t rows, size_t cols, float *out);

/* Rotates every head of x [rows, heads*head_dim] (row r at position
 * pos0 + r % seq) by RoPE's angles, or by their negatives when inverse
 * (the transpose of the rotation, which carries a gradient back). */
void attn_mha_rope(float *x, size_t rows, int heads, int head_dim, int seq,
                   int pos0, int inverse);

/* Token-major t [batch, seq, heads*hd] to the heads' layout h [batch,
 * heads, seq, hd] (to_heads), or back. */
void attn_mha_heads(float *t, float *h, int batch, int seq, int heads, int hd,
                    int to_heads);

#endif /* ATTN_API_MHA_TRAIN_H */
