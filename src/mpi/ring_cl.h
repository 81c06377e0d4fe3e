/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device side of libattn_mpi (ring_cl.c): attn_sdpa_ring_cl's slices
 * in OpenCL buffers, the hooks ring.c calls for them, and the entry the
 * tests use to substitute the block computation.
 */
#ifndef ATTN_RING_CL_H
#define ATTN_RING_CL_H

#include "attn/attn_mpi_cl.h"
#include "ring_impl.h"

/* The block computation attn_sdpa_ring_cl calls (attn_sdpa_cl_buffers);
 * tests substitute one that fails on a chosen rank. */
typedef attn_status (*ring_sdpa_cl_fn)(attn_context *ctx,
                                       const attn_sdpa_desc *d,
                                       const attn_cl_buffers *b,
                                       cl_command_queue queue, cl_uint n_wait,
                                       const cl_event *wait, cl_event *done,
                                       void *user);

/* attn_sdpa_ring_cl with the block computation given (NULL:
 * attn_sdpa_cl_buffers). */
attn_status ring_run_cl(attn_context *ctx, MPI_Comm comm,
                        const attn_ring_desc *ring, const attn_sdpa_desc *d,
                        const attn_cl_buffers *b, cl_command_queue queue,
                        cl_uint n_wait, const cl_event *wait,
                        ring_sdpa_cl_fn sdpa, void *user);

/* attn_sdpa_ring_cl_backward with the block computation given (NULL:
 * attn_sdpa_backward). */
attn_status ring_run_cl_backward(attn_context *ctx, MPI_Comm comm,
                                 const attn_ring_desc *ring,
                                 const attn_sdpa_desc *d,
                                 const attn_cl_grad_buffers *g,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, ring_bwd_fn bwd,
                                 void *user);

/* Hooks of ring.c, each returning a status with a sentence in c->why
 * (ring_cl_arrived: in why): the buffers, queue and context checked
 * against the checked descriptors; this rank's K/V read into c->msg[0]
 * and its queries made ready on the device; the message of slot written
 * to the device; one block (c->blk_o, c->blk_lse filled); the merged rows
 * written into the caller's o and lse; everything released. */
attn_status ring_cl_check(ring_call *c);
attn_status ring_cl_prepare(ring_call *c);
attn_status ring_cl_arrived(ring_call *c, int slot, char *why, size_t cap);
attn_status ring_cl_block(ring_call *c, const attn_sdpa_desc *bd, int slot,
                          size_t row0, size_t ko, size_t vo);
attn_status ring_cl_write(ring_call *c);
void ring_cl_release(ring_call *c);

#endif /* ATTN_RING_CL_H */
