/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The private interface of libattn_mpi: the cut of the sequence into chunks
 * (ring_layout.c), the float merge and the half conversions (ring_math.c),
 * bounded waits and agreements on MPI (ring_comm.c), the thread's last
 * error; one call's state and the rings themselves are ring_call.h's.
 * Nothing here is exported.
 */
#ifndef ATTN_RING_IMPL_H
#define ATTN_RING_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "attn/attn_mpi.h"

/* ---- layout ------------------------------------------------------------ */

/* The sequence cut into chunks: CONTIGUOUS has P chunks (chunk r is rank
 * r's), ZIGZAG 2P (rank r holds r and 2P-1-r).  Chunk c covers global rows
 * [start[c], start[c + 1]); chunk ids grow with position in both. */
typedef struct ring_layout {
    int ranks;    /* P */
    int per_rank; /* chunks a rank holds: 1 or 2 */
    int nchunks;  /* P or 2P */
    int *start;   /* [nchunks + 1], owned */
} ring_layout;

/* Checks ring against a communicator of `ranks` ranks and fills *l
 * (ring_layout_free releases it).  Returns ATTN_ERR_INVALID_ARGUMENT with
 * a sentence in why (cap bytes) when the ring is not valid. */
attn_status ring_layout_make(const attn_ring_desc *ring, int ranks,
                             ring_layout *l, char *why, size_t cap);
void ring_layout_free(ring_layout *l);
/* The i-th chunk (i < per_rank) of rank r. */
int ring_chunk_of(const ring_layout *l, int r, int i);
int ring_chunk_rows(const ring_layout *l, int c);
/* Rows rank r holds (the sum of its chunks). */
int ring_rank_rows(const ring_layout *l, int r);

/* Copies rows [row0, row0 + n) of each of the `outer` [rows, width]
 * blocks of src (elements of elem bytes) into the dense [outer, n, width]
 * dst; ring_unpack_rows does the reverse. */
void ring_pack_rows(void *dst, const void *src, size_t outer, int rows,
                    int row0, int n, size_t width, size_t elem);
void ring_unpack_rows(void *dst, const void *src, size_t outer, int rows,
                      int row0, int n, size_t width, size_t elem);

/* ---- math -------------------------------------------------------------- */

/* IEEE binary16 <-> float, round to nearest even, NaN and infinities kept. */
float ring_half_to_float(uint16_t h);
uint16_t ring_float_to_half(float f);
void ring_halves_to_floats(float *dst, const uint16_t *src, size_t n);
void ring_floats_to_halves(uint16_t *dst, const float *src, size_t n);

/* The masks of the block of global query rows from q0 against global keys
 * from k0 (bd's seq_q and seq_kv set, the rest copied from g): the causal
 * mask and the window of g as bd's TOP_LEFT diagonal (causal_offset),
 * each left out where it hides nothing.  Returns 0 when they hide every
 * key of the block from every row (nothing to compute), else 1. */
int ring_block_mask(const attn_sdpa_desc *g, long long q0, long long k0,
                    attn_sdpa_desc *bd);
/* The steps of the ring on P ranks of layout l under g's masks: 1 + the
 * farthest step t (a rank's blocks against the slice of the rank t
 * before it) at which some rank has a block the masks do not hide whole;
 * P unless g has both the causal mask and a window.  The same on every
 * rank. */
int ring_steps_needed(const ring_layout *l, int P, const attn_sdpa_desc *g);
/* Folds one block's partial result (o_b [rows, dv], lse_b [rows]) into the
 * running one (o, lse) exactly: lse' = log(e^lse + e^lse_b), o' = o
 * e^(lse - lse') + o_b e^(lse_b - lse').  A row with lse_b = -INFINITY (no
 * visible key in the block) leaves the running row as it is; NaN spreads
 * as in attn_sdpa. */
void ring_merge(float *o, float *lse, const float *o_b, const float *lse_b,
                size_t rows, size_t dv);

/* ---- communication ----------------------------------------------------- */

/* Seconds of a monotonic clock. */
double ring_now(void);

/* Completes the n requests (MPI_REQUEST_NULL entries are skipped) within
 * tmo seconds, a limit that starts again as long as *busy (when busy is
 * not NULL) is nonzero: the blocks of the step still run on another
 * thread, and a neighbour's message may wait for its own.  Returns
 * ATTN_OK, or ATTN_ERR_DEVICE with a sentence in why after an MPI error
 * or at the limit; the requests not completed are then left in reqs. */
attn_status ring_wait(MPI_Request *reqs, int n, double tmo,
                      const atomic_int *busy, char *why, size_t cap,
                      const char *what);

/* After a failed ring_wait: cancels the point-to-point requests still
 * open and waits for them a short while.  Returns 1 when every request
 * completed (their buffers may be freed), 0 when MPI may still write one
 * of them (the buffers must be kept). */
int ring_cancel(MPI_Request *reqs, int n, double grace_s);

/* The ranks' agreement: every rank contributes (status, a hash of its
 * arguments); *agreed receives the largest status and *failed_rank the
 * highest rank that had it (-1 when all are ATTN_OK), *same 1 when every
 * hash is equal.  A non-blocking all-reduce bounded by tmo seconds;
 * ATTN_ERR_DEVICE (why says so) when it fails or times out. */
attn_status ring_agree(MPI_Comm comm, int rank, attn_status mine, uint32_t hash,
                       double deadline, attn_status *agreed, int *failed_rank,
                       int *same, char *why, size_t cap);

/* Sets the thread's last error (printf-style); "" clears it. */
void ring_set_error(const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif /* ATTN_RING_IMPL_H */
