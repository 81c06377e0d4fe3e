/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cut of the global sequence into chunks and the ranks' slices of it
 * (attn_ring_rows, attn_ring_global_row), and the row packing that turns a
 * chunk's rows inside [outer, rows, width] tensors into dense blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring_check.h"
#include "ring_impl.h"

attn_status ring_layout_make(const attn_ring_desc *ring, int ranks,
                             ring_layout *l, char *why, size_t cap)
{
    memset(l, 0, sizeof *l);
    if (ring->struct_size != 0 && ring->struct_size < sizeof(size_t)) {
        snprintf(why, cap, "attn_ring_desc.struct_size %zu is no layout",
                 ring->struct_size);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (ranks < 1 || ring->seq < 1) {
        snprintf(why, cap, "ring seq %d over %d ranks: both must be > 0",
                 ring->seq, ranks);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (ring->timeout_ms < 0) {
        snprintf(why, cap, "ring timeout_ms %d is negative", ring->timeout_ms);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    int zigzag;
    if (ring->layout == ATTN_RING_CONTIGUOUS)
        zigzag = 0;
    else if (ring->layout == ATTN_RING_ZIGZAG)
        zigzag = 1;
    else {
        snprintf(why, cap, "ring layout %d is no attn_ring_layout",
                 (int)ring->layout);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (zigzag && ring->counts) {
        snprintf(why, cap, "ring counts are for the contiguous layout only");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    int n = zigzag ? 2 * ranks : ranks;
    if (zigzag && ranks > (1 << 29)) {
        snprintf(why, cap, "too many ranks for the zig-zag layout");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    int *start = malloc(((size_t)n + 1) * sizeof *start);
    if (!start) {
        snprintf(why, cap, "no memory for the ring layout");
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    start[0] = 0;
    long long sum = 0;
    for (int c = 0; c < n; c++) {
        long long rows;
        if (ring->counts) {
            rows = ring->counts[c];
            if (rows < 0) {
                snprintf(why, cap, "ring counts[%d] = %lld is negative", c,
                         rows);
                free(start);
                return ATTN_ERR_INVALID_ARGUMENT;
            }
        } else {
            rows = ring->seq / n + (c < ring->seq % n ? 1 : 0);
        }
        sum += rows;
        if (sum > ring->seq)
            break;
        start[c + 1] = (int)sum;
    }
    if (sum != ring->seq) {
        snprintf(why, cap, "ring counts sum to %s%lld, not seq %d",
                 sum > ring->seq ? "at least " : "", sum, ring->seq);
        free(start);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    l->ranks = ranks;
    l->per_rank = zigzag ? 2 : 1;
    l->nchunks = n;
    l->start = start;
    return ATTN_OK;
}

void ring_layout_free(ring_layout *l)
{
    free(l->start);
    memset(l, 0, sizeof *l);
}

int ring_chunk_of(const ring_layout *l, int r, int i)
{
    return i == 0 ? r : l->nchunks - 1 - r;
}

int ring_chunk_rows(const ring_layout *l, int c)
{
    return l->start[c + 1] - l->start[c];
}

int ring_rank_rows(const ring_layout *l, int r)
{
    int rows = 0;
    for (int i = 0; i < l->per_rank; i++)
        rows += ring_chunk_rows(l, ring_chunk_of(l, r, i));
    return rows;
}

static attn_status layout_for(const attn_ring_desc *ring, int ranks, int rank,
                              ring_layout *l)
{
    char why[160];
    if (!ring || rank < 0 || rank >= ranks) {
        ring_set_error("attn_ring_rows: %s",
                       ring ? "rank outside [0, ranks)" : "ring is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    /* the caller's struct read by its struct_size (docs/ABI.md): the one
     * layout so far, or a newer one whose unknown members are 0 */
    const size_t size =
        ring_read_size(ring->struct_size, sizeof *ring, sizeof *ring);
    if (!size) {
        ring_set_error("attn_ring_rows: attn_ring_desc.struct_size %zu is "
                       "the size of no layout",
                       ring->struct_size);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!ring_tail_zero(ring, size, sizeof *ring)) {
        ring_set_error("attn_ring_rows: attn_ring_desc sets members this "
                       "libattn_mpi does not know: a newer libattn_mpi is "
                       "needed");
        return ATTN_ERR_UNSUPPORTED;
    }
    attn_status st = ring_layout_make(ring, ranks, l, why, sizeof why);
    if (st != ATTN_OK)
        ring_set_error("attn_ring_rows: %s", why);
    return st;
}

attn_status attn_ring_rows(const attn_ring_desc *ring, int ranks, int rank,
                           int *rows, int *first)
{
    if (!rows || !first) {
        ring_set_error("attn_ring_rows: rows or first is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    ring_layout l;
    attn_status st = layout_for(ring, ranks, rank, &l);
    if (st != ATTN_OK)
        return st;
    *rows = ring_rank_rows(&l, rank);
    *first = l.start[ring_chunk_of(&l, rank, 0)];
    ring_layout_free(&l);
    return ATTN_OK;
}

attn_status attn_ring_global_row(const attn_ring_desc *ring, int ranks,
                                 int rank, int row, int *global_row)
{
    if (!global_row) {
        ring_set_error("attn_ring_global_row: global_row is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    ring_layout l;
    attn_status st = layout_for(ring, ranks, rank, &l);
    if (st != ATTN_OK)
        return st;
    st = ATTN_ERR_INVALID_ARGUMENT;
    for (int i = 0; i < l.per_rank && row >= 0; i++) {
        int c = ring_chunk_of(&l, rank, i);
        if (row < ring_chunk_rows(&l, c)) {
            *global_row = l.start[c] + row;
            st = ATTN_OK;
            break;
        }
        row -= ring_chunk_rows(&l, c);
    }
    if (st != ATTN_OK)
        ring_set_error("attn_ring_global_row: row outside the rank's rows");
    ring_layout_free(&l);
    return st;
}

void ring_pack_rows(void *dst, const void *src, size_t outer, int rows,
                    int row0, int n, size_t width, size_t elem)
{
    size_t line = width * elem, take = (size_t)n * line;
    for (size_t o = 0; o < outer; o++)
        memcpy((char *)dst + o * take,
               (const char *)src + (o * (size_t)rows + (size_t)row0) * line,
               take);
}

void ring_unpack_rows(void *dst, const void *src, size_t outer, int rows,
                      int row0, int n, size_t width, size_t elem)
{
    size_t line = width * elem, take = (size_t)n * line;
    for (size_t o = 0; o < outer; o++)
        memcpy((char *)dst + (o * (size_t)rows + (size_t)row0) * line,
               (const char *)src + o * take, take);
}
