/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The native backward pass of the attention (attn_sdpa_backward): sets up
 * a call and runs its three jobs on the worker pool, in the copy of the
 * instruction set the attn_cpu was created with (sdpa_bwd_tile.c):
 *  1. prepare: D = rowsum(dO * O) per query row (and F32 copies of F16
 *     or BF16 q, k, v and dO);
 *  2. one item per (batch, kv head, key tile): the tile's dk and dv rows,
 *     complete (summed over the GQA group's query heads), so that no two
 *     items write the same output; each worker adds the tile's share of dq
 *     into its own [batch, heads_q, seq_q, head_dim] float buffer;
 *  3. dq = the sum of the workers' buffers, by blocks of query rows.
 * Memory per call: one dq buffer per worker, D (a float per query row),
 * a few key tiles of scratch per worker and, for F16 or BF16, float copies of
 * q, k, v and dO: O(seq) per worker, never seq_q x seq_kv.  A second pass
 * over the key tiles per query block would need no per-worker dq but
 * recompute S and dP (7 tile products instead of 5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/memsize.h"
#include "cpu/sdpa_bwd.h"

/* n floats, 64-byte aligned, or NULL (also when n * 4 overflows). */
static float *alloc_floats(size_t n)
{
    void *p = NULL;
    if (n > SIZE_MAX / sizeof(float) ||
        posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) != 0)
        return NULL;
    return p;
}

attn_status attn_cpu_sdpa_backward(attn_cpu *c, const attn_sdpa_desc *d,
                                   const attn_sdpa_grad *g)
{
    struct attn_sdpa_bwd_job jb;
    const attn_cpu_kern *kern = attn_cpu_kerns(c);
    attn_pool *pool = attn_cpu_pool(c);
    size_t nq, nk, nv, ndo, rows, ws, total;
    float *mem;

    memset(&jb, 0, sizeof jb);
    jb.d = d;
    jb.g = g;
    jb.f16 = d->dtype != ATTN_F32; /* F16 or BF16: float copies */
    jb.workers = attn_pool_threads(pool);
    jb.group = d->heads_q / d->heads_kv;
    jb.nkt = (d->seq_kv + SDPA_BWD_KTILE - 1) / SDPA_BWD_KTILE;
    jb.scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim);
    jb.diag = attn_causal_diag(d);
    attn_bias_strides(d, jb.bias_st);
    attn_keep_strides(d, jb.keep_st);

    /* sizes fit in size_t: the validation checked the tensors' bytes */
    rows = (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
    nq = rows * (size_t)d->head_dim;
    ndo = rows * (size_t)d->head_dim_v;
    nk = (size_t)d->batch * (size_t)d->heads_kv * (size_t)d->seq_kv *
         (size_t)d->head_dim;
    nv = nk / (size_t)d->head_dim * (size_t)d->head_dim_v;
    jb.dq_elems = nq;
    jb.scratch_floats =
        (attn_sdpa_bwd_scratch(d->head_dim, d->head_dim_v) + 15) / 16 * 16;
    ws = (size_t)jb.workers;
    /* one block: D, the scratch, the dq buffers, the F16 copies */
    total = rows + 16;
    if (nq > (SIZE_MAX - total) / (ws + 1))
        return ATTN_ERR_OUT_OF_MEMORY;
    total += ws * jb.scratch_floats + ws * nq;
    if (jb.f16) {
        if (nk > SIZE_MAX / 4 || nv > SIZE_MAX / 4 || ndo > SIZE_MAX / 4 ||
            nq + nk + nv + ndo > SIZE_MAX - total)
            return ATTN_ERR_OUT_OF_MEMORY;
        total += nq + nk + nv + ndo;
    }
    if (attn_host_memory_bytes() != 0 &&
        (uint64_t)total > attn_host_memory_bytes() / sizeof(float))
        return ATTN_ERR_OUT_OF_MEMORY;
    mem = alloc_floats(total);
    if (!mem)
        return ATTN_ERR_OUT_OF_MEMORY;
    jb.drow = mem;
    jb.scratch = mem + (rows + 15) / 16 * 16;
    jb.dq_part = jb.scratch + ws * jb.scratch_floats;
    /* the dq sums start at 0; the scratch too, so that the lanes past a
     * short tile's keys, computed and never read, come from defined
     * values */
    memset(jb.scratch, 0, ws * (jb.scratch_floats + nq) * sizeof(float));
    if (jb.f16) {
        jb.q32 = jb.dq_part + ws * nq;
        jb.k32 = jb.q32 + nq;
        jb.v32 = jb.k32 + nk;
        jb.dout32 = jb.v32 + nv;
        jb.q = jb.q32;
        jb.k = jb.k32;
        jb.v = jb.v32;
        jb.dout = jb.dout32;
    } else {
        jb.q = g->q;
        jb.k = g->k;
        jb.v = g->v;
        jb.dout = g->d_o;
    }
    attn_pool_run(pool, (size_t)d->batch * (size_t)(d->heads_q + d->heads_kv),
                  kern->sdpa_bwd_prep, &jb);
    attn_pool_run(pool, (size_t)d->batch * (size_t)d->heads_kv * (size_t)jb.nkt,
                  kern->sdpa_bwd_item, &jb);
    attn_pool_run(pool, (rows + SDPA_BWD_DQ_ROWS - 1) / SDPA_BWD_DQ_ROWS,
                  kern->sdpa_bwd_dq, &jb);
    free(mem);
    return ATTN_OK;
}
