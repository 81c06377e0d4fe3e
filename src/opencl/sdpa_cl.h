/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device tensors of one attention call, as every kernel variant and
 * the layer see them, and those of the calls on the caller's buffers
 * (the spans the embedding API checks, the backward's buffers and items).
 * Not installed.
 */
#ifndef ATTN_OPENCL_SDPA_CL_H
#define ATTN_OPENCL_SDPA_CL_H

#include "core/backend.h"
#include "opencl/runtime.h"

/* Device tensors of one call.  q, k, v, o hold d->dtype values (float or
 * IEEE half), lse floats; each starts at its offset (in elements) inside its
 * buffer and is laid out as DESIGN.md says, contiguous. */
typedef struct attn_cl_tensors {
    cl_mem q, k, v, o, lse;                     /* lse may be NULL */
    size_t q_off, k_off, v_off, o_off, lse_off; /* offsets in elements */
} attn_cl_tensors;

/* One tensor of a call on the caller's buffers: its buffer, its name for
 * messages, where it starts and how many elements of elem bytes it spans,
 * and whether the call writes it. */
typedef struct attn_cl_span {
    cl_mem mem;
    const char *name;
    size_t off, count, elem;
    int written;
} attn_cl_span;

/* The caller's buffers of one backward call on device buffers
 * (attn_sdpa_backward_cl_buffers), in the order q, k, v, o, d_o, lse, D
 * (unused), dq, dk, dv, dbias, the rows' parts of d additive_w (unused),
 * d additive_w; offsets in elements of the dtype (floats for lse, dbias
 * and d additive_w).  dbias and d additive_w NULL: not asked.  lse_pitch:
 * 0 when lse is dense [batch, heads_q, seq_q], else the floats between
 * the starts of two heads' rows (a packed sequence's lse in [heads_q,
 * total_q]). */
typedef struct attn_cl_bwd_bufs {
    cl_mem mem[13];
    size_t off[13];
    size_t lse_pitch;
} attn_cl_bwd_bufs;

/* What an item of a backward call does: its gradients, or (a packed
 * sequence with no key, or with no query) zeroes its dq rows, or its dk
 * and dv rows; or, last in a packed call with d additive_w, sums the
 * sequences' parts of it: b.mem[dwp] holds float [d.batch, heads_q,
 * head_dim] (one row of parts per sequence), b.mem[dw] (at its offset)
 * receives their sum. */
enum {
    ATTN_CL_BWD_GRADS,
    ATTN_CL_BWD_ZERO_DQ,
    ATTN_CL_BWD_ZERO_DKDV,
    ATTN_CL_BWD_SUM_DW
};
/* The index of the rows' parts of d additive_w and of d additive_w in
 * attn_cl_bwd_bufs. */
enum { ATTN_CL_BWD_DWP = 11, ATTN_CL_BWD_DW = 12 };

/* One item of a backward call on device buffers: its prepared variant
 * (for a zeroing item, that of any shape of the call's dtype and head
 * sizes), its descriptor (validated, keep and kv_start merged into the
 * bias, q_start taken out into q_start below, one sequence of a packed
 * call) and buffers. */
typedef struct attn_cl_bwd_item {
    const attn_prepared *p;
    attn_sdpa_desc d;
    attn_cl_bwd_bufs b;
    int zero;               /* ATTN_CL_BWD_* */
    const int32_t *q_start; /* [d.batch] or NULL: the caller's left padding
                               of the queries (d has none): lse gathered
                               into a buffer of the run's own with those
                               rows at -INFINITY, so that they add nothing
                               and get dq = 0 */
} attn_cl_bwd_item;

#endif /* ATTN_OPENCL_SDPA_CL_H */
