/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file attn_mpi_cl.h
 * @brief libattn_mpi on device-resident slices: ring attention across MPI
 * ranks whose Q, K, V, O and lse live in OpenCL buffers.
 *
 * Available when libattn_mpi was built with libattn's OpenCL backend.
 * docs/MPI.md ("Device-resident slices") says what moves where.
 */
#ifndef ATTN_ATTN_MPI_CL_H
#define ATTN_ATTN_MPI_CL_H

#include "attn/attn_cl.h"
#include "attn/attn_mpi.h"

#ifdef __cplusplus
extern "C" {
#endif

/** attn_sdpa_ring on device buffers: the same collective, ring, global
 * descriptor, results and failure rules, with this rank's slices in the
 * buffers of b (offsets in elements, as attn_sdpa_cl_buffers; shapes those
 * of attn_sdpa_ring's q_local, k_local, v_local, o_local and lse_local
 * with local_rows rows; b->lse may be NULL).  ctx must run on an OpenCL
 * device (attn_context_create with an OpenCL device, or
 * attn_context_create_cl); the buffers and queue belong to its cl_context,
 * the queue to its device.
 *
 * The call waits for the n_wait events of wait, enqueues its work on
 * queue (the messages' writes on a queue of its own), and returns once o
 * and lse are written: it blocks, the ring being a collective.  As in
 * attn_sdpa_ring, each step's blocks run on a thread the call creates
 * (MPI_THREAD_FUNNELED or more) while the calling thread moves the
 * messages.  Each block's attention runs through attn_sdpa_cl_buffers on
 * device buffers: the rank's queries stay on the device (F32 zig-zag:
 * copied on the device, chunk by chunk, into a buffer of the call's own;
 * F16: widened to float once through host memory).  The K/V slices that
 * travel the ring pass through host memory (MPI need not be
 * device-aware): this rank's are read once at the start, and each message
 * received is written to the device while the current step's blocks
 * still compute.  Each block's partial O and lse are read back and merged
 * on the host in float (docs/MPI.md says why and what it costs); the
 * merged rows are written into o and lse once, after every rank agreed
 * that the ring succeeded.  The device memory the call allocates is
 * reported in attn_ring_stats.bytes_device.
 *
 * Errors: those of attn_sdpa_ring, on every rank when one rank has them
 * before or during the ring, plus ATTN_ERR_INVALID_ARGUMENT (b or queue
 * NULL, n_wait > 0 with wait NULL, a NULL buffer, a buffer smaller than
 * its slice at its offset, a buffer or queue of another cl_context, a
 * queue of another device, o or lse overlapping another slice),
 * ATTN_ERR_UNSUPPORTED (ctx runs on the native backend, or d gives strides:
 * the slices are contiguous) and the OpenCL
 * failures (ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY).  A failure to write
 * o and lse after the ring is the failing rank's alone; the other ranks
 * return ATTN_OK.  Every OpenCL object the call creates is released on
 * every path; on error o and lse are untouched, except after such a late
 * write failure, when o and lse of that rank are undefined. */
ATTN_API attn_status attn_sdpa_ring_cl(attn_context *ctx, MPI_Comm comm,
                                       const attn_ring_desc *ring,
                                       const attn_sdpa_desc *d,
                                       const attn_cl_buffers *b,
                                       cl_command_queue queue, cl_uint n_wait,
                                       const cl_event *wait);

/** attn_sdpa_ring_backward on device buffers: the same collective, ring,
 * global descriptor, results, masks, checks, agreements and failure rules,
 * with this rank's slices in the buffers of g (attn_cl_grad_buffers of
 * attn_cl.h, offsets in elements): q, k, v, the forward's o and lse (lse
 * required), d_o, and out dq, dk, dv in the shapes of attn_sdpa_ring's
 * slices with local_rows rows; dbias (float [batch, seq]) and
 * d_additive_w (float [heads_q, head_dim]) when asked, written on every
 * rank as attn_sdpa_ring_backward writes them.  ctx must run on an OpenCL
 * device; the buffers and queue belong to its cl_context, the queue to
 * its device.  The slices are contiguous (d's strides: ATTN_ERR_UNSUPPORTED).
 *
 * The call waits for the n_wait events of wait, reads this rank's input
 * slices into host memory once (blocking reads on queue), runs the ring
 * backward of attn_sdpa_ring_backward on them (each block attn_sdpa_backward
 * on ctx's device, its tensors staged through host memory; the K/V and
 * gradient messages travel through host memory, MPI need not be
 * device-aware), and, once every rank agreed that the ring succeeded,
 * writes the gradients into dq, dk, dv (dbias, d_additive_w) with blocking
 * writes on queue: it blocks, the ring being a collective.  Host memory
 * held besides the ring's own: one copy of each slice (reported in
 * attn_ring_stats.bytes_held); no device memory of its own.
 *
 * Errors: those of attn_sdpa_ring_backward, on every rank when one rank
 * has them before or during the ring, plus ATTN_ERR_INVALID_ARGUMENT (g or
 * queue NULL, n_wait > 0 with wait NULL, a NULL buffer (dbias and
 * d_additive_w excepted), a buffer smaller than its slice at its offset,
 * a buffer or queue of another cl_context, a queue of another device, an
 * output overlapping another slice, a struct_size no layout has),
 * ATTN_ERR_UNSUPPORTED (ctx runs on the native backend, d gives strides,
 * g sets members this libattn_mpi does not know) and the OpenCL failures
 * (ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY).  A failure to write the
 * gradients after the ring is the failing rank's alone (its outputs are
 * then undefined); the other ranks return ATTN_OK.  On any other error the
 * outputs are untouched. */
ATTN_API attn_status attn_sdpa_ring_cl_backward(
    attn_context *ctx, MPI_Comm comm, const attn_ring_desc *ring,
    const attn_sdpa_desc *d, const attn_cl_grad_buffers *g,
    cl_command_queue queue, cl_uint n_wait, const cl_event *wait);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_MPI_CL_H */
