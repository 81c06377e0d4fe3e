/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the two halves of the OpenCL multi-head layer share (not
 * installed): mha_stage.c sizes a call, creates its device buffers and
 * enqueues the uploads; mha_cl.c builds the layer's kernels and runs the
 * pipeline on those buffers.  Both record the commands they enqueue in one
 * mha_run.
 */
#ifndef ATTN_OPENCL_MHA_IMPL_H
#define ATTN_OPENCL_MHA_IMPL_H

#include "core/backend.h"
#include "opencl/mha_cl.h"
#include "opencl/pool.h"
#include "opencl/runtime.h"

#define MHA_MAX_EVENTS 40 /* commands of one call: 29 at most */

/* rt->mha: the layer's program and kernels (mha_cl.c). */
typedef struct mha_state mha_state;

/* Element counts of one call's tensors. */
typedef struct mha_sizes {
    size_t d, dq, dkv, dall; /* d_model, q width, k/v width, q+k+v width */
    size_t nq, nkv;          /* tokens */
    size_t xq, xkv, wqkv, wo, bias, pe, proj, hq, hkv;
    size_t hkc; /* KV cache step: K (or V) heads of every key, 0 without */
    size_t pairs, half; /* sinusoidal frequencies, RoPE pairs per head */
} mha_sizes;

/* Buffers of the attention step besides the heads: the copies of
 * mask.bias, mask.kv_len and additive_w, and the variant's scratch. */
enum { A_BIAS, A_KV_LEN, A_ADDW, A_SCRATCH, N_ABUFS };

/* What a call has enqueued so far, and the pooled buffers it holds. */
typedef struct mha_run {
    attn_cl_runtime *rt;
    const attn_prepared *p; /* the attention step's variant */
    mha_state *st;
    attn_err *err;
    const attn_cl_mha_held *held; /* the layer's weights, or NULL */
    cl_event ev[MHA_MAX_EVENTS];
    cl_uint n_ev;
    attn_cl_buf pb[20]; /* the call's buffers (N_BUFS of them) */
    attn_cl_buf ab[N_ABUFS];
    float *fpe, *frope; /* frequency tables, uploaded from here */
} mha_run;

/* Device buffers of one call. */
enum {
    B_XQ,    /* x_q (+ encoding), at the end y */
    B_XKV,   /* x_kv (+ encoding), cross-attention only */
    B_WQKV,  /* [Wq; Wk; Wv] */
    B_WO,    /* Wo */
    B_BIAS,  /* [bq | bk | bv | bo] where given */
    B_PE,    /* LEARNED rows: the query positions, then the key positions */
    B_FPE,   /* SINUSOIDAL frequencies */
    B_FROPE, /* RoPE frequencies */
    B_CSQ,   /* RoPE (cos, sin) of the query positions */
    B_CSKV,  /* ... of the key positions, cross-attention only */
    B_PROJ,  /* projections, token-major; later the merged heads */
    B_HQ,    /* heads [B, H, S, D]: Q, K, V, attention output */
    B_HK,
    B_HV,
    B_HO,
    B_HKC, /* KV cache step: the cached and the step's K heads [B, H, L, D] */
    B_HVC, /* ... and V heads */
    N_BUFS
};

/* A persistent layer's weights on one device (attn_cl_mha_hold): the
 * contents of B_WQKV, B_WO and B_BIAS (NULL without biases). */
struct attn_cl_mha_held {
    cl_mem wqkv, wo, bias;
};

/* Element counts of the tensors of call c into z.  Errors:
 * ATTN_ERR_UNSUPPORTED (projections wider than INT_MAX),
 * ATTN_ERR_OUT_OF_MEMORY (sizes overflow). */
attn_status attn_cl_mha_stage_sizes(const attn_mha_call *c, mha_sizes *z,
                                    attn_err *err);

/* Records ev, the event of a command r's call enqueued (what names it in
 * the error); releases it and fails with ATTN_ERR_DEVICE when r is full. */
attn_status attn_cl_mha_stage_event(mha_run *r, cl_event ev, const char *what);

/* Takes the attention step's buffers (r->ab) from the pool and enqueues
 * the uploads of the step's host-side inputs (sd's mask.bias, mask.kv_len
 * and additive_w), recorded in r. */
attn_status attn_cl_mha_stage_attention(mha_run *r, const attn_sdpa_desc *sd);

/* Gives every buffer r holds back to the pool (kept for the next call when
 * ok) and frees the frequency tables. */
void attn_cl_mha_stage_release(mha_run *r, int ok);

/* Checks, before anything is created, that the call's buffers and the
 * attention step's input copies and scratch (r->p) fit rt's device
 * (attn_cl_check_fit).  Errors: ATTN_ERR_OUT_OF_MEMORY with a sentence
 * naming the sizes. */
attn_status attn_cl_mha_stage_fit(mha_run *r, const attn_mha_call *c,
                                  const mha_sizes *z, attn_err *err);

/* Takes the call's buffers from the pool into r->pb and b[N_BUFS] (NULL
 * where unused) and enqueues the uploads of its inputs, recorded in r.
 * On error r holds what was taken, for the caller to give back. */
attn_status attn_cl_mha_stage_inputs(mha_run *r, const attn_mha_call *c,
                                     const mha_sizes *z, cl_mem *b);

#endif /* ATTN_OPENCL_MHA_IMPL_H */
