/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device side of libattn_mpi (ring_cl.c): attn_sdpa_ring_cl's slices
 * in OpenCL buffers, and the entries the tests use to substitute the
 * block computation.
 */
#ifndef ATTN_RING_CL_H
#define ATTN_RING_CL_H

#include "attn/attn_mpi_cl.h"
#include "ring_call.h"

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

#endif /* ATTN_RING_CL_H */
