/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The arguments of attn_sdpa_ring: the caller's descriptors read by their
 * struct_size, checked, and hashed so that the ranks can tell whether they
 * all describe the same problem.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ring_check.h"

int ring_tail_zero(const void *p, size_t size, size_t known)
{
    for (size_t i = known; i < size; i++)
        if (((const unsigned char *)p)[i] != 0)
            return 0;
    return 1;
}

size_t ring_read_size(size_t given, size_t first, size_t known)
{
    if (given == 0)
        return known;
    if (given < first || given > 65536 || given % sizeof(size_t) != 0)
        return 0;
    return given;
}

/* attn_sdpa_desc's first layout (docs/ABI.md): up to dtype and its tail
 * padding (pad0_), what struct_size 0 means and the smallest size taken;
 * every member added since (causal_align, ..., causal_offset) is 0, its
 * default, for a caller built before it, as libattn reads it. */
#define RING_SDPA_FIRST offsetof(attn_sdpa_desc, causal_align)
_Static_assert(offsetof(attn_sdpa_desc, causal_align) ==
                   offsetof(attn_sdpa_desc, pad0_) +
                       sizeof(((attn_sdpa_desc *)0)->pad0_),
               "attn_sdpa_desc's first layout ends at pad0_");

attn_status ring_check_descs(const attn_ring_desc *ring,
                             const attn_sdpa_desc *d, attn_ring_desc *r_out,
                             attn_sdpa_desc *d_out, char *why, size_t cap)
{
    size_t rs = ring_read_size(ring->struct_size, sizeof *ring, sizeof *ring);
    size_t ds =
        ring_read_size(d->struct_size ? d->struct_size : RING_SDPA_FIRST,
                       RING_SDPA_FIRST, sizeof *d);
    if (!rs || !ds) {
        snprintf(why, cap, "%s.struct_size %zu is the size of no layout",
                 rs ? "attn_sdpa_desc" : "attn_ring_desc",
                 rs ? d->struct_size : ring->struct_size);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!ring_tail_zero(ring, rs, sizeof *ring) ||
        !ring_tail_zero(d, ds, sizeof *d)) {
        snprintf(why, cap,
                 "a descriptor sets members this libattn_mpi does "
                 "not know: a newer libattn_mpi is needed");
        return ATTN_ERR_UNSUPPORTED;
    }
    *r_out = *ring;
    if (ring->stats && ring->stats->struct_size != 0 &&
        (ring->stats->struct_size < 2 * sizeof(size_t) ||
         ring->stats->struct_size > 65536 ||
         ring->stats->struct_size % sizeof(size_t) != 0)) {
        /* written back by its size (the members it covers): one that is
         * no layout is refused, as for the structs read (docs/ABI.md) */
        snprintf(why, cap,
                 "attn_ring_stats.struct_size %zu is the size of "
                 "no layout",
                 ring->stats->struct_size);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    memset(d_out, 0, sizeof *d_out);
    memcpy(d_out, d, ds < sizeof *d_out ? ds : sizeof *d_out);
    r_out->struct_size = sizeof *r_out;
    d_out->struct_size = sizeof *d_out;
    const attn_sdpa_desc *g = d_out;
    if (g->batch < 1 || g->heads_q < 1 || g->heads_kv < 1 || g->head_dim < 1 ||
        g->head_dim_v < 1) {
        snprintf(why, cap, "batch, heads and head dims must be positive");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->heads_q % g->heads_kv != 0) {
        snprintf(why, cap, "heads_q %d is no multiple of heads_kv %d",
                 g->heads_q, g->heads_kv);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->seq_q != ring->seq || g->seq_kv != ring->seq) {
        snprintf(why, cap,
                 "seq_q %d and seq_kv %d must both be the ring's "
                 "seq %d",
                 g->seq_q, g->seq_kv, ring->seq);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->dtype == ATTN_BF16) {
        snprintf(why, cap, "the ring takes F32 or F16 storage, not BF16");
        return ATTN_ERR_UNSUPPORTED;
    }
    if (g->dtype != ATTN_F32 && g->dtype != ATTN_F16) {
        snprintf(why, cap, "dtype %d is no attn_dtype", (int)g->dtype);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->score != ATTN_SCORE_DOT && g->score != ATTN_SCORE_ADDITIVE) {
        snprintf(why, cap, "score %d is no attn_score", (int)g->score);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->score == ATTN_SCORE_ADDITIVE && !g->additive_w) {
        snprintf(why, cap, "the additive score needs additive_w");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!isfinite(g->scale)) {
        snprintf(why, cap, "scale is not finite");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->mask.causal != 0 && g->mask.causal != 1) {
        snprintf(why, cap, "causal is %d, not 0 or 1", g->mask.causal);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    /* seq_q == seq_kv: both alignments place the same diagonal */
    if ((unsigned)g->causal_align > ATTN_CAUSAL_TOP_LEFT) {
        snprintf(why, cap, "causal_align %d is no attn_causal_align",
                 (int)g->causal_align);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->mask.window < 0) {
        snprintf(why, cap, "window %d is negative", g->mask.window);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if ((unsigned)g->mask.bias_kind > ATTN_BIAS_BROADCAST) {
        snprintf(why, cap, "bias_kind %d is no attn_bias_kind",
                 (int)g->mask.bias_kind);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if ((g->mask.bias_kind != ATTN_BIAS_NONE) != (g->mask.bias != NULL)) {
        snprintf(why, cap, "%s",
                 g->mask.bias ? "a bias without a bias_kind"
                              : "a bias_kind without a bias");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if ((g->mask.bias && g->mask.bias_kind != ATTN_BIAS_KEY) || g->keep ||
        g->q_start || g->kv_start) {
        snprintf(why, cap,
                 "the ring takes a key bias (ATTN_BIAS_KEY) only, no keep "
                 "and no q_start or kv_start");
        return ATTN_ERR_UNSUPPORTED;
    }
    if (g->cu_seqlens_q || g->cu_seqlens_kv) {
        snprintf(why, cap,
                 "the ring takes no packed sequences "
                 "(cu_seqlens_q, cu_seqlens_kv)");
        return ATTN_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < 3; i++)
        if (g->q_strides[i] < 0 || g->k_strides[i] < 0 || g->v_strides[i] < 0 ||
            g->o_strides[i] < 0) {
            snprintf(why, cap, "a stride is negative");
            return ATTN_ERR_INVALID_ARGUMENT;
        }
    if (g->causal_offset < 1 - (long long)ring->seq ||
        g->causal_offset > (long long)ring->seq - 1) {
        snprintf(why, cap,
                 "causal_offset %lld puts the causal diagonal outside "
                 "[1 - seq, seq - 1] = [%d, %d]",
                 (long long)g->causal_offset, 1 - ring->seq, ring->seq - 1);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (g->mask.kv_len)
        for (int b = 0; b < g->batch; b++)
            if (g->mask.kv_len[b] < 0 || g->mask.kv_len[b] > ring->seq) {
                snprintf(why, cap, "kv_len[%d] = %d is outside [0, %d]", b,
                         (int)g->mask.kv_len[b], ring->seq);
                return ATTN_ERR_INVALID_ARGUMENT;
            }
    return ATTN_OK;
}

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 16777619u;
    return h;
}

uint32_t ring_hash(const attn_ring_desc *ring, const ring_layout *l,
                   const attn_sdpa_desc *g)
{
    int v[13] = {ring->seq,     (int)ring->layout, l->nchunks,
                 g->batch,      g->heads_q,        g->heads_kv,
                 g->head_dim,   g->head_dim_v,     (int)g->dtype,
                 (int)g->score, g->mask.causal,    g->mask.kv_len != NULL,
                 g->mask.window};
    uint32_t h = fnv(2166136261u, v, sizeof v);
    h = fnv(h, &g->scale, sizeof g->scale);
    h = fnv(h, &g->causal_offset, sizeof g->causal_offset);
    h = fnv(h, l->start, ((size_t)l->nchunks + 1) * sizeof *l->start);
    if (g->mask.kv_len)
        h = fnv(h, g->mask.kv_len, (size_t)g->batch * sizeof *g->mask.kv_len);
    h = fnv(h, &g->mask.bias_kind, sizeof g->mask.bias_kind);
    if (g->mask.bias) /* [batch, seq]: every rank must pass the same */
        h = fnv(h, g->mask.bias,
                (size_t)g->batch * (size_t)ring->seq * sizeof *g->mask.bias);
    return h;
}
