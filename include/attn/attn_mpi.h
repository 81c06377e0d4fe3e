/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file attn_mpi.h
 * @brief libattn_mpi: sequence-parallel (ring) attention across the ranks
 * of an MPI communicator, on top of libattn's attn_sdpa.
 *
 * A separate library (libattn_mpi), built when CMake finds MPI; libattn
 * itself never needs MPI.  It uses only the public API of attn.h: every
 * rank runs attn_sdpa on its own context for its query rows against each
 * key/value slice in turn, while the next slice travels around the ring
 * (MPI_Isend / MPI_Irecv), and merges the partial outputs exactly through
 * their log-sum-exp.  docs/MPI.md says how to run it on a cluster, what
 * is sent and what each step costs.  attn_mpi_cl.h adds the same ring on
 * slices in OpenCL buffers (attn_sdpa_ring_cl), where libattn_mpi was
 * built with libattn's OpenCL backend.
 *
 * Conventions are those of attn.h: every function returns an attn_status,
 * nothing aborts, exits or prints; on error the outputs are untouched.
 */
#ifndef ATTN_ATTN_MPI_H
#define ATTN_ATTN_MPI_H

#include <mpi.h>

#include "attn/attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How the global sequence is cut into the ranks' slices. */
typedef enum attn_ring_layout {
    /** Rank r holds one contiguous block of rows: counts[r] rows when
     * counts is given, else seq / P rows with the first seq % P ranks one
     * row more.  Blocks follow each other in rank order. */
    ATTN_RING_CONTIGUOUS = 0,
    /** The sequence is cut into 2P chunks (seq / 2P rows each, the first
     * seq % 2P chunks one row more); rank r holds chunks r and 2P-1-r,
     * in that order.  Under a causal mask every rank then does the same
     * work (a rank's early chunk sees few keys, its late one many). */
    ATTN_RING_ZIGZAG
} attn_ring_layout;

/** What one attn_sdpa_ring call did on the calling rank (all times in
 * seconds of the rank's wall clock). */
typedef struct attn_ring_stats {
    size_t struct_size;    /**< sizeof(attn_ring_stats) as the caller built */
    int steps;             /**< ring steps: the number of ranks, fewer
                                where a causal window reaches no farther
                                (docs/MPI.md) */
    int blocks;            /**< attn_sdpa calls made (hidden blocks skipped) */
    double total_s;        /**< the whole call */
    double compute_s;      /**< attn_sdpa calls and the merges (on a
                                thread of the call's own while the step's
                                messages travel) */
    double wait_s;         /**< blocked on ring messages after computing:
                                the communication not hidden by compute */
    double agree_s;        /**< the two status agreements (collectives) */
    uint64_t bytes_sent;   /**< payload and headers this rank sent */
    uint64_t bytes_held;   /**< host memory the call allocated (peak) */
    uint64_t bytes_device; /**< device memory attn_sdpa_ring_cl allocated
                                (attn_mpi_cl.h; 0 for attn_sdpa_ring) */
    double merge_s;        /**< of compute_s, the merges of the blocks'
                                partial results (on the host, in float),
                                for attn_sdpa_ring_cl with their read back
                                from the device */
} attn_ring_stats;

/** Initializer: `attn_ring_stats s = ATTN_RING_STATS_INIT;` */
#define ATTN_RING_STATS_INIT ATTN_SIZED_INIT_(attn_ring_stats)

/** The ring: the global sequence, its cut over the ranks, the timeout.
 * struct_size first (docs/ABI.md): set it with ATTN_RING_DESC_INIT; the
 * library reads the members that size covers. */
typedef struct attn_ring_desc {
    size_t struct_size;      /**< sizeof(attn_ring_desc) as the caller built */
    int seq;                 /**< global rows of Q, K and V (> 0) */
    attn_ring_layout layout; /**< how rows are spread over the ranks */
    const int *counts;       /**< CONTIGUOUS only: [P] rows per rank (each
                                  >= 0, summing to seq), or NULL for the
                                  even split; must be NULL for ZIGZAG */
    int timeout_ms;          /**< limit of every wait of the call in
                                  milliseconds; 0 = 60000 */
    attn_ring_stats *stats;  /**< NULL, or filled on this rank (its
                                  struct_size set by the caller: the
                                  members it covers are written; 0 is the
                                  whole struct; a size of no layout, not a
                                  multiple of sizeof(size_t) in [16,
                                  65536], is ATTN_ERR_INVALID_ARGUMENT) */
} attn_ring_desc;

/** Initializer: `attn_ring_desc r = ATTN_RING_DESC_INIT;` (contiguous
 * even split, 60 s timeout). */
#define ATTN_RING_DESC_INIT ATTN_SIZED_INIT_(attn_ring_desc)

/** Rows the calling layout gives rank `rank` of `ranks`: *rows (its
 * local_rows), *first (its first global row; for ZIGZAG that of its first
 * chunk).  Errors: ATTN_ERR_INVALID_ARGUMENT (NULL, ranks < 1, rank
 * outside [0, ranks), an invalid ring). */
ATTN_API attn_status attn_ring_rows(const attn_ring_desc *ring, int ranks,
                                    int rank, int *rows, int *first);

/** Global row of this rank's local row `row` (for ZIGZAG, rows of its
 * second chunk follow those of its first).  Errors as attn_ring_rows,
 * and row outside [0, local rows). */
ATTN_API attn_status attn_ring_global_row(const attn_ring_desc *ring, int ranks,
                                          int rank, int row, int *global_row);

/** Self-attention of a sequence spread over the ranks of comm.  A
 * collective call: every rank of comm makes it, with the same ring and
 * the same global descriptor d (seq_q == seq_kv == ring->seq; batch,
 * heads_q, heads_kv for GQA, head_dim, head_dim_v, scale, score, causal,
 * window, causal_offset, kv_len, a key bias, dtype F32 or F16; the dot or
 * the additive score).  kv_len, when given, holds [batch] global key
 * counts, and a key bias (mask.bias with bias_kind ATTN_BIAS_KEY) [batch,
 * seq] global floats; each must be the same on every rank.  The causal mask and
 * the window apply to global positions (causal_offset moves their diagonal,
 * within [1 - seq, seq - 1]); each block gets them as a TOP_LEFT diagonal of
 * its own (causal_offset), and a block they hide whole is not computed; with
 * both, the ring stops after the farthest step a rank's window reaches
 * (attn_ring_stats.steps; 2 for ATTN_RING_CONTIGUOUS slices of at least window
 * - 1 rows with causal_offset 0, docs/MPI.md).  The other bias kinds, keep,
 * q_start, kv_start, packed sequences and BF16 storage are not supported
 * (ATTN_ERR_UNSUPPORTED). d is read by its struct_size as attn_sdpa reads it
 * (docs/ABI.md): 0 is the first layout, and the members a caller's layout lacks
 * (causal_offset for one built before it, ...) take their defaults.
 *
 * Each rank passes its slice (attn_ring_rows gives local_rows): q_local
 * [batch, heads_q, local_rows, head_dim], k_local [batch, heads_kv,
 * local_rows, head_dim], v_local [batch, heads_kv, local_rows, head_dim_v]
 * and receives o_local [batch, heads_q, local_rows, head_dim_v] and, when
 * lse_local is not NULL, lse_local [batch, heads_q, local_rows] (float):
 * contiguous, or laid out by d's q_strides .. o_strides over the local
 * rows (each rank its own strides; gathered once into contiguous copies,
 * o written back through its strides, gaps untouched; lse contiguous);
 * the rows of the single-process attn_sdpa of the global problem.  F16
 * inputs are widened to float on the rank that computes with them, the
 * partial outputs merged in float and O rounded to F16 once.  A rank with
 * 0 rows passes pointers all the same (they are not read).
 *
 * ctx is the rank's own context (any device; the buffers are host memory
 * and attn_sdpa moves them to and from the device for every block;
 * attn_sdpa_ring_cl of attn_mpi_cl.h keeps them on an OpenCL device).  Where
 * MPI was initialised with MPI_THREAD_FUNNELED or more, each step's attn_sdpa
 * calls run on a thread the call creates (ctx's log callback is called from it)
 * while the calling thread moves the step's messages; only the calling thread
 * calls MPI.  Under MPI_THREAD_SINGLE they run on the calling thread,
 * with MPI polled between them, and overlap less.  comm should be a
 * communicator the caller does not use at the same time (an MPI_Comm_dup of its
 * own): the call sends on it and sets its error handler to MPI_ERRORS_RETURN
 * for the duration of the call.
 *
 * Failures: the ranks first agree on their arguments (a non-blocking
 * all-reduce), so an invalid argument on one rank makes every rank return
 * that rank's status; a failure while the ring runs travels with the next
 * messages and a last agreement, so every rank returns an error; every
 * wait on another rank is bounded by timeout_ms (the rank's own blocks,
 * which compute while it waits for a step's messages, do not count).  A
 * rank that waited in vain returns ATTN_ERR_DEVICE; the ranks it no longer
 * answers learn so, or time out in turn; a late rank that found
 * everything it needed may still return ATTN_OK, its result complete.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (on
 * any rank: NULL pointers, sizes, a ring that does not fit the
 * communicator, descriptors that differ between ranks, a negative stride,
 * an extent past the address space, rows of o sharing elements),
 * ATTN_ERR_UNSUPPORTED (a mask the ring does not take),
 * ATTN_ERR_OUT_OF_MEMORY, errors of attn_sdpa, ATTN_ERR_DEVICE (an MPI
 * call failed or a wait passed timeout_ms; after a timeout the
 * communicator may hold requests that never complete, and the buffers
 * MPI may still use are left to them, not freed: free the communicator
 * or abort).
 * attn_ring_last_error says why. */
ATTN_API attn_status attn_sdpa_ring(attn_context *ctx, MPI_Comm comm,
                                    const attn_ring_desc *ring,
                                    const attn_sdpa_desc *d,
                                    const void *q_local, const void *k_local,
                                    const void *v_local, void *o_local,
                                    float *lse_local);

/** The gradients of attn_sdpa_ring (training a sequence spread over the
 * ranks): a collective call, every rank of comm with the same ring and
 * global descriptor d as its forward call, and in g_local its own slices
 * (the layouts of attn_sdpa_ring): q, k, v, the forward's o_local and
 * lse_local (lse is required, contiguous), d_o = dL/dO of its rows, and
 * out dq [batch, heads_q, local_rows, head_dim], dk and dv [batch,
 * heads_kv, local_rows, head_dim / head_dim_v] (dtype), the rows of the
 * single-process attn_sdpa_backward of the global problem.  With d's
 * strides (each rank its own, over its local rows) d_o is read in o's,
 * dq, dk and dv written in q's, k's and v's (their gaps untouched):
 * the inputs are gathered once into contiguous copies, the outputs
 * scattered from them at the end.  K and V
 * travel the ring as in the forward; float accumulators of dK and dV
 * follow them one step behind (each rank adds its blocks' share, then
 * sends them on), and after the last step go back to the rank that
 * holds their keys: 2 (K, V) + 2 x 4-byte (dK, dV) elements per key row
 * and step (docs/MPI.md).  Every block is attn_sdpa_backward on the
 * rank's context, with P recomputed from the global lse and D =
 * rowsum(dO * O) from the global O, in float (F16 slices widened, the
 * gradients summed in float and rounded once); its masks as the
 * forward's (causal, window, causal_offset, kv_len, a key bias: hidden
 * blocks are not computed, and the ring stops after the same step).
 * When asked, dbias (a key bias's: float [batch, seq], the whole global
 * gradient) and d_additive_w (float [heads_q, head_dim]) are written on
 * every rank: each rank sums its blocks' shares, then one all-reduce
 * (MPI_SUM, bounded by the timeout) sums the ranks' (its order is
 * MPI's; every rank must ask for the same ones).
 * Threads, the communicator, the agreements, timeouts and failures are as
 * for attn_sdpa_ring; on error the outputs are untouched.  Errors: those of
 * attn_sdpa_ring, and ATTN_ERR_INVALID_ARGUMENT for a NULL g_local or
 * tensor, an attn_sdpa_grad.struct_size of no layout, dbias without a
 * bias, d_additive_w without the additive score, strides that make rows
 * of dq, dk or dv share elements, or an output whose span overlaps that
 * of another tensor (of g_local, the bias, additive_w); ranks of
 * which some call the forward and others the backward, or some ask for
 * dbias or d_additive_w and others not, disagree
 * (ATTN_ERR_INVALID_ARGUMENT).
 * attn_ring_last_error says why. */
ATTN_API attn_status attn_sdpa_ring_backward(attn_context *ctx, MPI_Comm comm,
                                             const attn_ring_desc *ring,
                                             const attn_sdpa_desc *d,
                                             const attn_sdpa_grad *g_local);

/** A sentence about the last failure of an attn_sdpa_ring call on the
 * calling thread, or "" when none failed.  Thread-local; valid until the
 * thread's next attn_sdpa_ring call. */
ATTN_API const char *attn_ring_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_MPI_H */
