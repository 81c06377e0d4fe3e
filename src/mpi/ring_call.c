/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One ring call's state (ring_call.h) and the steps the forward ring
 * (ring.c), its backward (ring_bwd.c), the strided slices
 * (ring_strides.c) and the device slices (ring_cl.c) share: the messages'
 * sizes and offsets, packing and unpacking a rank's rows, a block's
 * descriptor, the communicator's set-up and the ranks' agreements before
 * and after the ring.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring_call.h"
#include "ring_check.h"

void *ring_grab(ring_call *c, size_t n)
{
    c->held += n;
    return malloc(n ? n : 1);
}

size_t ring_msg_bytes_of(const ring_call *c, int sender, size_t elem)
{
    size_t rows = (size_t)ring_rank_rows(&c->lay, sender);
    return RING_HEADER + rows * c->bkv * (c->d + c->dv) * elem;
}

size_t ring_msg_bytes(const ring_call *c, int sender)
{
    return ring_msg_bytes_of(c, sender, c->elem);
}

void ring_chunk_offsets_of(const ring_call *c, int sender, int j, size_t elem,
                           size_t *k_off, size_t *v_off)
{
    size_t off = RING_HEADER;
    for (int i = 0; i < j; i++) {
        size_t n =
            (size_t)ring_chunk_rows(&c->lay, ring_chunk_of(&c->lay, sender, i));
        off += n * c->bkv * (c->d + c->dv) * elem;
    }
    size_t n =
        (size_t)ring_chunk_rows(&c->lay, ring_chunk_of(&c->lay, sender, j));
    *k_off = off;
    *v_off = off + n * c->bkv * c->d * elem;
}

void ring_chunk_offsets(const ring_call *c, int sender, int j, size_t *k_off,
                        size_t *v_off)
{
    ring_chunk_offsets_of(c, sender, j, c->elem, k_off, v_off);
}

size_t ring_chunk_row0(const ring_call *c, int i)
{
    size_t row0 = 0;
    for (int j = 0; j < i; j++)
        row0 += (size_t)ring_chunk_rows(&c->lay,
                                        ring_chunk_of(&c->lay, c->rank, j));
    return row0;
}

void ring_pack_float(const ring_call *c, float *dst, const void *src,
                     size_t outer, size_t row0, size_t n, size_t width)
{
    if (!c->f16) {
        ring_pack_rows(dst, src, outer, (int)c->local_rows, (int)row0, (int)n,
                       width, sizeof(float));
        return;
    }
    for (size_t o = 0; o < outer; o++)
        ring_halves_to_floats(dst + o * n * width,
                              (const uint16_t *)src +
                                  (o * c->local_rows + row0) * width,
                              n * width);
}

void ring_pack_own(ring_call *c, const void *k, const void *v)
{
    ring_header h = {RING_MAGIC, -1, c->rank, ATTN_OK, -1};
    memcpy(c->msg[0], &h, sizeof h);
    for (int i = 0; i < c->lay.per_rank && k; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t ko, vo, row0 = ring_chunk_row0(c, i);
        ring_chunk_offsets(c, c->rank, i, &ko, &vo);
        ring_pack_rows(c->msg[0] + ko, k, c->bkv, (int)c->local_rows, (int)row0,
                       (int)n, c->d, c->elem);
        ring_pack_rows(c->msg[0] + vo, v, c->bkv, (int)c->local_rows, (int)row0,
                       (int)n, c->dv, c->elem);
    }
}

void ring_free_all(ring_call *c, int keep_msgs)
{
    if (!keep_msgs) {
        free(c->msg[0]);
        free(c->msg[1]);
    }
    free(c->q32);
    free(c->kf);
    free(c->vf);
    free(c->acc_o);
    free(c->acc_lse);
    free(c->blk_o);
    free(c->blk_lse);
    free(c->kvl);
    free(c->kbias);
    for (int t = 0; t < 4; t++)
        free(c->strided[t]);
    ring_layout_free(&c->lay);
}

void ring_widen_kv(ring_call *c, const void **kb, const void **vb, size_t nb,
                   int j, int *widened)
{
    if (!c->f16)
        return;
    if (*widened != j) {
        ring_halves_to_floats(c->kf, (const uint16_t *)*kb, nb * c->bkv * c->d);
        ring_halves_to_floats(c->vf, (const uint16_t *)*vb,
                              nb * c->bkv * c->dv);
        *widened = j;
    }
    *kb = c->kf;
    *vb = c->vf;
}

int ring_block_desc(ring_call *c, int ca, int cb, attn_sdpa_desc *bd)
{
    size_t na = (size_t)ring_chunk_rows(&c->lay, ca);
    size_t nb = (size_t)ring_chunk_rows(&c->lay, cb);
    if (!na || !nb)
        return 0;
    *bd = c->g;
    bd->seq_q = (int)na;
    bd->seq_kv = (int)nb;
    bd->dtype = ATTN_F32;
    if (!ring_block_mask(&c->g, c->lay.start[ca], c->lay.start[cb], bd))
        return 0;
    bd->mask.kv_len = NULL;
    if (c->g.mask.kv_len) {
        int any = 0;
        for (int b = 0; b < c->g.batch; b++) {
            long long n = (long long)c->g.mask.kv_len[b] - c->lay.start[cb];
            c->kvl[b] = (int32_t)(n < 0               ? 0
                                  : n > (long long)nb ? (long long)nb
                                                      : n);
            any |= c->kvl[b] > 0;
        }
        if (!any)
            return 0;
        bd->mask.kv_len = c->kvl;
    }
    if (c->g.mask.bias) {
        /* the key bias of chunk cb's keys, [batch, nb] */
        for (size_t b = 0; b < (size_t)c->g.batch; b++)
            memcpy(c->kbias + b * nb,
                   c->g.mask.bias + b * (size_t)c->ring.seq +
                       (size_t)c->lay.start[cb],
                   nb * sizeof(float));
        bd->mask.bias = c->kbias;
    }
    return 1;
}

void ring_put_rows(const ring_call *c, void *dst, const float *src,
                   size_t outer, size_t row0, size_t n, size_t width)
{
    if (!c->f16) {
        ring_unpack_rows(dst, src, outer, (int)c->local_rows, (int)row0, (int)n,
                         width, sizeof(float));
        return;
    }
    for (size_t b = 0; b < outer; b++)
        ring_floats_to_halves((uint16_t *)dst +
                                  (b * c->local_rows + row0) * width,
                              src + b * n * width, n * width);
}

/* Writes the merged rows into the caller's o and lse; a row that saw no
 * key gets O = 0 (its lse is -INFINITY already). */
void ring_write_out(ring_call *c, void *o, float *lse)
{
    for (size_t r = 0; r < c->local_rows * c->bq; r++)
        if (c->acc_lse[r] == -INFINITY)
            memset(c->acc_o + r * c->dv, 0, c->dv * sizeof(float));
    for (int i = 0; i < c->lay.per_rank; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i);
        ring_put_rows(c, o, c->acc_o + row0 * c->bq * c->dv, c->bq, row0, n,
                      c->dv);
        if (lse)
            ring_unpack_rows(lse, c->acc_lse + row0 * c->bq, c->bq,
                             (int)c->local_rows, (int)row0, (int)n, 1,
                             sizeof(float));
    }
}

void ring_put_stats(const ring_call *c, attn_ring_stats *out)
{
    if (!out)
        return;
    size_t size = out->struct_size ? out->struct_size : sizeof *out;
    if (size > sizeof *out)
        size = sizeof *out;
    attn_ring_stats s = c->st;
    s.struct_size = out->struct_size;
    memcpy(out, &s, size);
}

attn_status ring_call_open(ring_call *c, MPI_Comm comm,
                           MPI_Errhandler *old_handler)
{
    c->comm = comm;
    c->st.struct_size = sizeof c->st;
    *old_handler = MPI_ERRHANDLER_NULL;
    if (MPI_Comm_get_errhandler(comm, old_handler) != MPI_SUCCESS ||
        MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
        MPI_Comm_size(comm, &c->ranks) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &c->rank) != MPI_SUCCESS) {
        if (*old_handler != MPI_ERRHANDLER_NULL) {
            MPI_Comm_set_errhandler(comm, *old_handler);
            MPI_Errhandler_free(old_handler);
        }
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    /* Under MPI_THREAD_SINGLE the process may hold no other thread that
     * runs while MPI is called: the blocks then run on this thread. */
    int level = MPI_THREAD_SINGLE;
    c->threads_ok =
        MPI_Query_thread(&level) == MPI_SUCCESS && level >= MPI_THREAD_FUNNELED;
    return ATTN_OK;
}

void ring_call_close(ring_call *c, MPI_Errhandler *old_handler)
{
    MPI_Comm_set_errhandler(c->comm, *old_handler);
    MPI_Errhandler_free(old_handler);
}

attn_status ring_call_setup(ring_call *c, const attn_ring_desc *ring,
                            const attn_sdpa_desc *d, double *tmo,
                            uint32_t *hash)
{
    attn_status mine =
        ring_check_descs(ring, d, &c->ring, &c->g, c->why, sizeof c->why);
    if (mine != ATTN_OK) {
        if (ring->timeout_ms > 0)
            *tmo = ring->timeout_ms / 1000.0;
        return mine;
    }
    /* a negative timeout is refused below (ring_layout_make): the
     * agreement that tells every rank so waits the default */
    *tmo = c->ring.timeout_ms > 0 ? c->ring.timeout_ms / 1000.0 : 60.0;
    mine = ring_layout_make(&c->ring, c->ranks, &c->lay, c->why, sizeof c->why);
    if (mine != ATTN_OK)
        return mine;
    c->f16 = c->g.dtype == ATTN_F16;
    c->elem = c->f16 ? 2 : 4;
    c->bq = (size_t)c->g.batch * (size_t)c->g.heads_q;
    c->bkv = (size_t)c->g.batch * (size_t)c->g.heads_kv;
    c->d = (size_t)c->g.head_dim;
    c->dv = (size_t)c->g.head_dim_v;
    c->local_rows = (size_t)ring_rank_rows(&c->lay, c->rank);
    c->max_rows = 0;
    for (int ch = 0; ch < c->lay.nchunks; ch++)
        if ((size_t)ring_chunk_rows(&c->lay, ch) > c->max_rows)
            c->max_rows = (size_t)ring_chunk_rows(&c->lay, ch);
    c->msg_cap = 0;
    for (int r = 0; r < c->ranks; r++)
        if (ring_msg_bytes(c, r) > c->msg_cap)
            c->msg_cap = ring_msg_bytes(c, r);
    *hash = ring_hash(&c->ring, &c->lay, &c->g);
    return ATTN_OK;
}

/* The message of a failure another rank had. */
static void peer_failed(ring_call *c, attn_status st, int rank)
{
    snprintf(c->why, sizeof c->why, "rank %d failed: %s", rank,
             attn_status_string(st));
}

attn_status ring_agree_start(ring_call *c, attn_status mine, uint32_t hash,
                             double tmo)
{
    attn_status agreed = ATTN_OK;
    int failed_rank = -1, same = 1;
    double t0 = ring_now();
    attn_status comm_st =
        ring_agree(c->comm, c->rank, mine, hash, tmo, &agreed, &failed_rank,
                   &same, c->why, sizeof c->why);
    c->st.agree_s += ring_now() - t0;
    if (comm_st != ATTN_OK)
        return comm_st;
    if (mine != ATTN_OK)
        return mine;
    if (agreed != ATTN_OK) {
        peer_failed(c, agreed, failed_rank);
        return agreed;
    }
    if (!same) {
        snprintf(c->why, sizeof c->why,
                 "the ranks passed different descriptors (shape, mask, "
                 "kv_len, key bias, scale or ring)");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    return ATTN_OK;
}

attn_status ring_agree_end(ring_call *c, attn_status comm_st, attn_status local,
                           attn_status seen, int seen_rank, double tmo)
{
    attn_status end = comm_st != ATTN_OK ? comm_st : local, agreed = ATTN_OK;
    int failed_rank = -1, same = 1;
    double t0 = ring_now();
    char why2[sizeof c->why];
    attn_status st2 = ring_agree(c->comm, c->rank, end, 0, tmo, &agreed,
                                 &failed_rank, &same, why2, sizeof why2);
    c->st.agree_s += ring_now() - t0;
    if (end != ATTN_OK)
        return end;
    if (st2 != ATTN_OK) {
        memcpy(c->why, why2, sizeof why2);
        return st2;
    }
    if (agreed != ATTN_OK) {
        peer_failed(c, agreed, failed_rank);
        return agreed;
    }
    if (seen != ATTN_OK) { /* cannot happen without agreed */
        peer_failed(c, seen, seen_rank);
        return seen;
    }
    return ATTN_OK;
}
