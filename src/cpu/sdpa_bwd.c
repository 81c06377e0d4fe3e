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
 *     into its own [batch, heads_q, seq_q, head_dim] float buffer.  With
 *     dbias of a bias broadcast over the batch or the kv heads, the pairs
 *     that share bias entries are run in order by one item per slice of
 *     them (sdpa_bwd.h);
 *  3. dq = the sum of the workers' buffers, by blocks of query rows; the
 *     dbias slices summed in order; d additive_w summed in order.
 * Memory per call: one dq buffer per worker, D (a float per query row),
 * a few key tiles of scratch per worker and, for F16 or BF16, float copies of
 * q, k, v and dO: O(seq) per worker, never seq_q x seq_kv.  dbias adds
 * slices - 1 bias-sized buffers (none unless the bias is broadcast over
 * the batch or the kv heads; slices <= 2 x workers, and the buffers <=
 * DBIAS_PART_MAX bytes); d additive_w a [head_dim] float per (batch,
 * query head, key tile).  A second pass
 * over the key tiles per query block would need no per-worker dq but
 * recompute S and dP (7 tile products instead of 5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/memsize.h"
#include "cpu/sdpa_bwd.h"

/* The most bytes of dbias's slice buffers. */
#define DBIAS_PART_MAX ((size_t)512 << 20)
/* dbias entries per item of the slices' sum. */
#define DBIAS_SUM_CHUNK 16384

/* dbias += the slice buffers 1 .. slices - 1, in order. */
static void dbias_sum(void *arg, size_t item, int worker)
{
    const struct attn_sdpa_bwd_job *jb = arg;
    const size_t e0 = item * DBIAS_SUM_CHUNK;
    const size_t n = jb->bias_elems - e0 < DBIAS_SUM_CHUNK ? jb->bias_elems - e0
                                                           : DBIAS_SUM_CHUNK;
    float *out = jb->g->dbias + e0;
    (void)worker;
    for (int s = 1; s < jb->slices; s++) {
        const float *p = jb->dbias_part + (size_t)(s - 1) * jb->bias_elems + e0;
        for (size_t e = 0; e < n; e++)
            out[e] += p[e];
    }
}

/* d additive_w[h][c] = the sum of the (batch, key tile) partial sums, in
 * order. */
static void dw_sum(const struct attn_sdpa_bwd_job *jb)
{
    const attn_sdpa_desc *d = jb->d;
    const size_t dh = (size_t)d->head_dim, nkt = (size_t)jb->nkt;
    const size_t grp = (size_t)jb->group;
    for (size_t h = 0; h < (size_t)d->heads_q; h++)
        for (size_t c = 0; c < dh; c++) {
            const size_t hk = h / grp, e = h % grp;
            float acc = 0.0f;
            for (size_t b = 0; b < (size_t)d->batch; b++)
                for (size_t kt = 0; kt < nkt; kt++)
                    acc += jb->dw_part[(((b * (size_t)d->heads_kv + hk) * nkt +
                                         kt) *
                                            grp +
                                        e) *
                                           dh +
                                       c];
            jb->g->d_additive_w[h * dh + c] = acc;
        }
}

/* The dbias plan: which broadcast dimensions make (batch, kv head) pairs
 * share entries, and in how many slices their sums are made. */
static void dbias_plan(struct attn_sdpa_bwd_job *jb)
{
    const attn_sdpa_desc *d = jb->d;
    size_t base, members, s;
    jb->bb = jb->g->dbias && jb->bias_st[0] == 0 && d->batch > 1;
    jb->bh = jb->g->dbias && jb->bias_st[1] == 0 && d->heads_kv > 1;
    jb->members_b = jb->bb ? d->batch : 1;
    jb->members_h = jb->bh ? d->heads_kv : 1;
    jb->owners_b = jb->bb ? 1 : d->batch;
    jb->owners_h = jb->bh ? 1 : d->heads_kv;
    jb->slices = 1;
    if (!jb->g->dbias)
        return;
    attn_bias_elems(d, &jb->bias_elems);
    members = (size_t)jb->members_b * (size_t)jb->members_h;
    base = (size_t)jb->owners_b * (size_t)jb->owners_h * (size_t)jb->nkt;
    /* about two items per worker, at most one slice per member */
    s = (2 * (size_t)jb->workers + base - 1) / base;
    s = s < members ? s : members;
    if (s > 1 && (s - 1) > DBIAS_PART_MAX / sizeof(float) / jb->bias_elems)
        s = 1 + DBIAS_PART_MAX / sizeof(float) / jb->bias_elems;
    jb->slices = (int)(s ? s : 1);
}

attn_status attn_cpu_sdpa_backward(attn_cpu *c, const attn_sdpa_desc *d,
                                   const attn_sdpa_grad *g)
{
    struct attn_sdpa_bwd_job jb;
    const attn_cpu_kern *kern = attn_cpu_kerns(c);
    attn_pool *pool = attn_cpu_pool(c);
    size_t nq, nk, nv, ndo, rows, ws, total, npart = 0, ndw = 0;
    float *mem;

    memset(&jb, 0, sizeof jb);
    jb.d = d;
    jb.g = g;
    jb.f16 = d->dtype != ATTN_F32; /* F16 or BF16: float copies */
    jb.workers = attn_pool_threads(pool);
    jb.group = d->heads_q / d->heads_kv;
    jb.nkt = (d->seq_kv + SDPA_BWD_KTILE - 1) / SDPA_BWD_KTILE;
    jb.additive = d->score == ATTN_SCORE_ADDITIVE;
    jb.scale = jb.additive        ? 1.0f
               : d->scale != 0.0f ? d->scale
                                  : 1.0f / sqrtf((float)d->head_dim);
    jb.gscale = jb.scale;
    attn_bias_strides(d, jb.bias_st);
    attn_keep_strides(d, jb.keep_st);
    dbias_plan(&jb);

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
    /* one block: D, the rows' finite flags, the scratch, the dq buffers,
     * the F16 copies */
    total = rows + 16 + (rows + 3) / 4 + 16;
    if (nq > (SIZE_MAX - total) / (ws + 1))
        return ATTN_ERR_OUT_OF_MEMORY;
    total += ws * jb.scratch_floats + ws * nq;
    if (jb.f16) {
        if (nk > SIZE_MAX / 4 || nv > SIZE_MAX / 4 || ndo > SIZE_MAX / 4 ||
            nq + nk + nv + ndo > SIZE_MAX - total)
            return ATTN_ERR_OUT_OF_MEMORY;
        total += nq + nk + nv + ndo;
    }
    /* small next to the dq buffers: no overflow once those fitted */
    if (jb.slices > 1)
        npart = (size_t)(jb.slices - 1) * jb.bias_elems;
    if (g->d_additive_w)
        ndw = rows / (size_t)d->seq_q * (size_t)jb.nkt * (size_t)d->head_dim;
    if (npart + ndw > SIZE_MAX - total - 32)
        return ATTN_ERR_OUT_OF_MEMORY;
    total += npart + ndw + 32;
    if (attn_host_memory_bytes() != 0 &&
        (uint64_t)total > attn_host_memory_bytes() / sizeof(float))
        return ATTN_ERR_OUT_OF_MEMORY;
    mem = attn_cpu_bwd_take(c, total);
    if (!mem)
        return ATTN_ERR_OUT_OF_MEMORY;
    jb.drow = mem;
    jb.rowfin = (uint8_t *)(mem + (rows + 15) / 16 * 16);
    jb.scratch = mem + (rows + 15) / 16 * 16 + ((rows + 3) / 4 + 15) / 16 * 16;
    jb.dq_part = jb.scratch + ws * jb.scratch_floats;
    /* the scratch starts at 0, so that the lanes past a short tile's
     * keys, computed and never read, come from defined values; the dq
     * sums are zeroed by the prepare job, each (batch, head) by the worker
     * that takes it (in parallel, first touch there) */
    memset(jb.scratch, 0, ws * jb.scratch_floats * sizeof(float));
    jb.dbias_part = npart ? jb.dq_part + ws * nq : NULL;
    jb.dw_part = ndw ? jb.dq_part + ws * nq + (npart + 15) / 16 * 16 : NULL;
    if (ndw)
        memset(jb.dw_part, 0, ndw * sizeof(float));
    if (jb.f16) {
        jb.q32 = jb.dq_part + ws * nq + (npart + 15) / 16 * 16 +
                 (ndw + 15) / 16 * 16;
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
    attn_pool_run(pool,
                  (size_t)jb.owners_b * (size_t)jb.owners_h *
                      (size_t)jb.slices * (size_t)jb.nkt,
                  kern->sdpa_bwd_item, &jb);
    attn_pool_run(pool, (rows + SDPA_BWD_DQ_ROWS - 1) / SDPA_BWD_DQ_ROWS,
                  kern->sdpa_bwd_dq, &jb);
    if (jb.slices > 1)
        attn_pool_run(pool,
                      (jb.bias_elems + DBIAS_SUM_CHUNK - 1) / DBIAS_SUM_CHUNK,
                      dbias_sum, &jb);
    if (ndw)
        dw_sum(&jb);
    attn_cpu_bwd_give(c, mem, total);
    return ATTN_OK;
}
