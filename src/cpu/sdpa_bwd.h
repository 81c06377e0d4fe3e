/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One call of the native backward pass, as sdpa_bwd.c (which builds it and
 * owns its memory) hands it to the per-instruction-set code
 * (sdpa_bwd_tile.c).  Private to those files.
 */
#ifndef ATTN_CPU_SDPA_BWD_H
#define ATTN_CPU_SDPA_BWD_H

#include "cpu/cpu_impl.h"

/* Keys per item of the main job: each item owns the dk and dv rows of its
 * key tile, so that no two workers write the same row. */
#ifndef SDPA_BWD_KTILE
#define SDPA_BWD_KTILE 128
#endif
/* Query rows computed together inside an item, and the width of the
 * vector chunks (head dimensions are padded to it in the scratch). */
#define SDPA_BWD_QB 32
#define SDPA_BWD_W  16
/* Query rows per item of the dq reduction. */
#define SDPA_BWD_DQ_ROWS 64

struct attn_sdpa_bwd_job {
    const attn_sdpa_desc *d;
    const attn_sdpa_grad *g; /* the caller's tensors */
    /* F32 views of q, k, v and d_o: the caller's arrays (F32) or copies
     * that the prepare job fills (F16) */
    const float *q, *k, *v, *dout;
    float *q32, *k32, *v32, *dout32; /* the copies (F16), else NULL */
    float *drow; /* [batch * heads_q * seq_q]: rowsum(d_o * o) */
    /* [batch * heads_q * seq_q]: bit 0 set when the row of q is finite,
     * bit 1 when the row of d_o is (the prepare job's) */
    uint8_t *rowfin;
    float *dq_part; /* [workers][dq_elems]: each worker's sum of dS K */
    size_t dq_elems;
    float *scratch; /* [workers][scratch_floats] */
    size_t scratch_floats;
    float scale;  /* of the dot score (1 for the additive score) */
    float gscale; /* dq and dk's factor: scale (dot) or 1 (additive) */
    size_t bias_st[3], keep_st[3];
    int f16, workers, group, nkt, nqb;
    int additive; /* S = sum_c w[c] tanh(q[c] + k[c]) */
    /* dbias (NULL: not asked).  The (batch, kv head) pairs whose sums
     * land on the same bias entries (a bias broadcast over the batch, bb,
     * or over the kv heads, bh) are "members" of one owner, members_b x
     * members_h of them; an item is (key tile, slice, owner) and runs its
     * slice of the members in order, into dbias itself (slice 0) or the
     * slice's bias-sized buffer dbias_part[slice - 1], summed in order by
     * a last job: the same sums in the same order on every call. */
    float *dbias_part;
    size_t bias_elems;
    int bb, bh, members_b, members_h, owners_b, owners_h, slices;
    /* d_additive_w (NULL: not asked): a [group][head_dim] float sum per
     * (batch, kv head, key tile), summed in order at the end */
    float *dw_part;
};

/* n rounded up to the chunk width. */
static inline size_t attn_sdpa_bwd_pad(int n)
{
    return ((size_t)n + SDPA_BWD_W - 1) / SDPA_BWD_W * SDPA_BWD_W;
}

/* Floats of one worker's scratch for head sizes dh, dv (sdpa_bwd_tile.c
 * lays it out): a key tile transposed (K, V) and as rows (K), its dk and
 * dv sums, a block of query rows (q, dO, dq) and its P and dS. */
static inline size_t attn_sdpa_bwd_scratch(int dh, int dv)
{
    size_t kt = SDPA_BWD_KTILE, qb = SDPA_BWD_QB;
    size_t a = attn_sdpa_bwd_pad(dh), b = attn_sdpa_bwd_pad(dv);
    return kt * (3 * a + 2 * b) + qb * (2 * a + b) + 2 * qb * kt;
}

#ifdef ATTN_ISA_SUFFIX
#define attn_sdpa_bwd_prep ATTN_ISA_FN(attn_sdpa_bwd_prep)
#define attn_sdpa_bwd_item ATTN_ISA_FN(attn_sdpa_bwd_item)
#define attn_sdpa_bwd_dq   ATTN_ISA_FN(attn_sdpa_bwd_dq)
/* Items [0, batch * heads_q): the F32 copies of that head's q and d_o
 * rows (F16) and its rowsum(d_o * o); then [.., + batch * heads_kv): the
 * copies of a kv head's k and v rows (F16; nothing for F32). */
void attn_sdpa_bwd_prep(void *arg, size_t item, int worker);
/* One (key tile, slice, owner): for each (batch, kv head) of the slice,
 * its dk and dv rows, the worker's partial dq of every query row that sees
 * the tile, its dbias sums and d additive_w sums (when asked). */
void attn_sdpa_bwd_item(void *arg, size_t item, int worker);
/* SDPA_BWD_DQ_ROWS query rows of dq: the workers' partial sums, times gscale.
 */
void attn_sdpa_bwd_dq(void *arg, size_t item, int worker);
#endif

#endif /* ATTN_CPU_SDPA_BWD_H */
