/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The multi-head attention layer on an OpenCL device: projections through
 * CLBlast GEMMs on the runtime's queue, positional encodings and head
 * split/merge as kernels (cl/posenc.cl, cl/heads.cl), attention through the
 * kernel variant the plan chose for the layer's attention step (driver.h).
 * Every device buffer comes from the device's pool (pool.h), so repeated
 * calls of a shape allocate nothing after the first.  Not installed.
 *
 * Data flow of one call (every input uploaded once, one blocking read):
 *   x_q (x_kv) += positional table (SINUSOIDAL, LEARNED)   posenc kernel
 *   [q | k | v] = x [Wq; Wk; Wv]^T   one GEMM (self), or q and [k | v]
 *   Q, K, V [B, H, S, D] = split(+ bias, RoPE)               split kernel
 *   O = attention(Q, K, V)                        the prepared variant
 *   y = merge(O) Wo^T + bo                  merge kernel, GEMM, bias kernel
 * Activations live in a few device buffers that are reused along the way
 * (the merged heads overwrite the projections, y overwrites x_q).
 *
 * Programs: posenc.cl + heads.cl, built lazily under rt->lock and kept in
 * rt->mha (released by rt->mha_free); a build failure is kept too and later
 * calls fail fast with the same sentence.  CLBlast compiles and caches its
 * own GEMM kernels per device on first use.
 */
#ifndef ATTN_OPENCL_MHA_CL_H
#define ATTN_OPENCL_MHA_CL_H

#include "core/backend.h"
#include "opencl/runtime.h"

/* The build options of posenc.cl + heads.cl (before attn_cl_build adds
 * -cl-std).  Returns what snprintf returns. */
int attn_cl_mha_options(char *buf, size_t cap);

/* A persistent layer's weights and biases on one device. */
typedef struct attn_cl_mha_held attn_cl_mha_held;

/* The multi-head layer on the runtime's device; c is validated
 * (attn_validate_mha) and p is the variant prepared on rt for its attention
 * step (attn_mha_sdpa_desc).  Uploads x_q (and x_kv), the weights and
 * biases once per call, runs: posenc add (kernel) -> GEMMs via
 * CLBlastSgemm (RowMajor, x [tokens, d_model] times W^T) -> bias + RoPE +
 * head split to [B,H,S,D] (kernel) -> the attention variant p (scale
 * 1/sqrt(head_dim), c->mask, score and additive_w from the descriptor) ->
 * head merge (kernel) -> output GEMM
 * (+bo, kernel) -> blocking read into c->y, which waits for every command
 * of the call and fails without writing when any of them failed.  held
 * (or NULL): the layer's weights on rt's device, used in place of m's
 * arrays.  With a KV cache (c->cache_k) the step's K and V heads are
 * appended to the cached rows on the device (the past copied from the
 * caller's cache, one rectangle per tensor), the attention runs over
 * them, and the step's rows are read back into the cache before y.  Returns
 * ATTN_OK, or ATTN_ERR_DEVICE / ATTN_ERR_OUT_OF_MEMORY /
 * ATTN_ERR_BUILD_FAILED / ATTN_ERR_UNSUPPORTED (built without CLBlast, or
 * the device cannot run the kernels) with a sentence in err; c->y untouched
 * on error; nothing leaked; no command of the call still reads the caller's
 * memory when it returns.  Thread-safe (several threads may call it on one
 * runtime). */
attn_status attn_cl_mha(attn_cl_runtime *rt, const attn_prepared *p,
                        const attn_cl_mha_held *held, const attn_mha_call *c,
                        attn_err *err);

/* Copies m's weights and biases to rt's device once, for the calls of a
 * persistent layer (attn_cl_mha's held: nothing of them is uploaded
 * again).  Blocking.  Errors: ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_DEVICE,
 * with a sentence in err; *out NULL then. */
attn_status attn_cl_mha_hold(attn_cl_runtime *rt, const attn_mha_desc *m,
                             attn_cl_mha_held **out, attn_err *err);
/* Releases what attn_cl_mha_hold made; NULL is a no-op. */
void attn_cl_mha_drop(attn_cl_mha_held *h);

#endif /* ATTN_OPENCL_MHA_CL_H */
