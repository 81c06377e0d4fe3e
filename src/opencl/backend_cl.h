/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL backend's entry points that take OpenCL objects: for the
 * embedding API of attn_cl.h (src/api/api_cl.c) and for tools and tests.
 * Not installed.
 */
#ifndef ATTN_OPENCL_BACKEND_CL_H
#define ATTN_OPENCL_BACKEND_CL_H

#include "core/backend.h"
#include "opencl/sdpa_cl.h"

/* A backend on the caller's context and device (retained, not owned),
 * with the device's profile applied, path `path`, forced kernel `kernel`
 * (NULL: none).  Errors: ATTN_ERR_INVALID_ARGUMENT (a device libattn
 * cannot use: err says why), ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_backend_cl_from_objects(cl_context context,
                                         cl_device_id device,
                                         const attn_options *o,
                                         const char *kernel,
                                         const attn_logger *log,
                                         attn_backend **out, attn_err *err);

/* Wraps runtimes (owned from then on; rt[0] the primary device) into a
 * backend with their profiles' weights left at compute units x clock. */
attn_status attn_backend_cl_wrap_n(attn_cl_runtime *const *rt, int n,
                                   attn_backend **out, attn_err *err);

/* The primary runtime of an OpenCL backend, or NULL for any other
 * backend. */
attn_cl_runtime *attn_backend_cl_runtime(const attn_backend *b);

/* The caller's buffers of one call, before anything is planned or built:
 * each holds its tensor at its offset (attn_cl_check_tensors), belongs to
 * the primary device's context and, for o and lse, shares no memory with
 * another tensor (attn_cl_check_aliasing).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY (sizes overflow). */
attn_status attn_backend_cl_check_buffers(const attn_backend *b,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_tensors *t,
                                          attn_err *err);

/* The kernels of one call on the primary device and the caller's queue:
 * the variant p prepared (attn_plan_devices) on the tensors t; then, with
 * q_start (the caller's, taken out of d when its masks were merged), o's
 * padding rows zeroed and lse's set to -INFINITY (attn_cl_pad_rows), all
 * behind one gate; the contract of attn_sdpa_cl_buffers (no fallback,
 * never blocks, nothing written on failure). */
attn_status attn_backend_cl_launch(
    const attn_backend *b, const attn_prepared *p, const attn_sdpa_desc *d,
    const int32_t *q_start, const attn_cl_tensors *t, cl_command_queue q,
    cl_uint n_wait, const cl_event *wait, cl_event *done, attn_err *err);

/* A packed call (cu_seqlens_q, cu_seqlens_kv) on the caller's queue: its
 * n sequences d[i] (batch 1, with keys when p[i] is its prepared variant;
 * without keys when p[i] is NULL: its o rows zeroed and its lse -inf) on
 * the tensors t[i] (offsets at the sequence's first rows; its lse rows
 * lse_pitch floats apart per head), all held back until every one is
 * enqueued; done completes when all are written.  The contract of
 * attn_sdpa_cl_buffers: on error nothing enqueued writes o or lse. */
attn_status attn_backend_cl_launch_packed(const attn_backend *b, int n,
                                          const attn_prepared *const *p,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_tensors *t,
                                          size_t lse_pitch, cl_command_queue q,
                                          cl_uint n_wait, const cl_event *wait,
                                          cl_event *done, attn_err *err);

/* attn_cl_check_spans on the primary device's runtime: the caller's
 * buffers of the n spans (launch_common.h). */
attn_status attn_backend_cl_check_spans(const attn_backend *b,
                                        const attn_cl_span *sp, int n,
                                        attn_err *err);

/* attn_cl_bwd_bufs_at (bwd_cl.h): b moved to the sequence item whose rows
 * start at packed rows q0 and k0. */
void attn_backend_cl_bwd_bufs_at(attn_cl_bwd_bufs *b,
                                 const attn_sdpa_desc *item, size_t q0,
                                 size_t k0, size_t total_q);

/* attn_cl_bwd_enqueue (bwd_cl.h) on the primary device's runtime: the n
 * items of one backward call on the caller's buffers. */
attn_status attn_backend_cl_backward(const attn_backend *b, int n,
                                     const attn_cl_bwd_item *items,
                                     cl_command_queue queue, cl_uint n_wait,
                                     const cl_event *wait, cl_event *done,
                                     attn_err *err);

#endif /* ATTN_OPENCL_BACKEND_CL_H */
