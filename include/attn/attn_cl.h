/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file attn_cl.h
 * @brief libattn's embedding API for applications that own OpenCL objects.
 *
 * The embedding API for applications that already own OpenCL objects:
 * a context on the caller's cl_context / cl_device_id, and attention on the
 * caller's buffers and queue, CLBlast style (buffers with offsets, an event
 * wait list, an event back, nothing blocking).
 *
 * Available when libattn was built with its OpenCL backend.
 */
#ifndef ATTN_ATTN_CL_H
#define ATTN_ATTN_CL_H

#include "attn/attn.h"

#ifndef CL_TARGET_OPENCL_VERSION
/** The OpenCL API version this header asks of CL/cl.h (1.2) unless the
 * application chose one. */
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Creates a context that runs on the caller's OpenCL context and device.
 * libattn retains the cl_context (released by attn_context_destroy) and
 * creates its own in-order queue on it for attn_sdpa / attn_mha_forward; the
 * kernels are built (or loaded from the program cache) on first use.
 * options.device is ignored; the other options apply (o may be NULL).
 * Errors: ATTN_ERR_INVALID_ARGUMENT (NULL handle, device not usable),
 * ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY. */
ATTN_API attn_status attn_context_create_cl(cl_context context,
                                            cl_device_id device,
                                            const attn_options *o,
                                            attn_context **out);

/** The OpenCL objects a context runs on (any may be NULL when not wanted):
 * not retained for the caller.  Errors: ATTN_ERR_INVALID_ARGUMENT (ctx
 * NULL), ATTN_ERR_UNSUPPORTED (the context runs on the native backend). */
ATTN_API attn_status attn_context_cl_objects(const attn_context *ctx,
                                             cl_context *context,
                                             cl_device_id *device,
                                             cl_command_queue *queue);

/** Buffers of one attention call with offsets in elements of the dtype
 * (lse: in floats).  lse may be NULL.  struct_size is the caller's
 * sizeof(attn_cl_buffers) (ATTN_CL_BUFFERS_INIT); 0 means the first
 * layout. */
typedef struct attn_cl_buffers {
    size_t struct_size; /**< sizeof(attn_cl_buffers) as the caller built */
    cl_mem q;           /**< Q [batch, heads_q, seq_q, head_dim] */
    cl_mem k;           /**< K [batch, heads_kv, seq_kv, head_dim] */
    cl_mem v;           /**< V [batch, heads_kv, seq_kv, head_dim_v] */
    cl_mem o;           /**< O [batch, heads_q, seq_q, head_dim_v] */
    cl_mem lse;         /**< float [batch, heads_q, seq_q], or NULL */
    size_t q_offset;    /**< where Q starts in q, in elements */
    size_t k_offset;    /**< where K starts in k, in elements */
    size_t v_offset;    /**< where V starts in v, in elements */
    size_t o_offset;    /**< where O starts in o, in elements */
    size_t lse_offset;  /**< where lse starts in lse, in floats */
} attn_cl_buffers;

/** Initializer of an attn_cl_buffers with no buffers and offsets 0:
 * `attn_cl_buffers b = ATTN_CL_BUFFERS_INIT;` */
#define ATTN_CL_BUFFERS_INIT ATTN_SIZED_INIT_(attn_cl_buffers)

/** Zeroes size bytes at b and sets b->struct_size to size (the caller's
 * sizeof(attn_cl_buffers)); attn_cl_buffers_init(b) passes it.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (b NULL, a size no layout has; untouched). */
ATTN_API attn_status attn_cl_buffers_init_sized(attn_cl_buffers *b,
                                                size_t size);
/** Prepares *b: no buffers, offsets 0, struct_size = sizeof *b. */
#define attn_cl_buffers_init(b)                                                \
    ((void)attn_cl_buffers_init_sized((b), sizeof *(b)))

/** attn_sdpa on device buffers in the layouts of attn_sdpa_desc, enqueued on
 * the caller's queue (which must belong to the context's cl_context and
 * device) after the n_wait events of wait.  When done is not NULL it
 * receives an event that completes when o and lse are written; the caller
 * releases it.  Nothing blocks: the call returns once the work is enqueued.
 * Host arrays of the descriptor (mask.bias, mask.kv_len, additive_w, keep) are
 * copied before the call returns.  There is no fallback: a device failure
 * returns its status.  q, k and v may share memory; o and lse may share
 * none with any other tensor: not within one cl_mem, not across
 * sub-buffers of one parent (or a parent and its sub-buffer), not through
 * buffers on the same host memory (CL_MEM_USE_HOST_PTR).  Errors: as
 * attn_sdpa, plus ATTN_ERR_INVALID_ARGUMENT (a NULL buffer or queue,
 * n_wait > 0 with wait NULL, a buffer smaller than its tensor at its
 * offset, a buffer or queue of another cl_context, a queue of another
 * device, o or lse overlapping another tensor: the message names both),
 * ATTN_ERR_OUT_OF_MEMORY (an offset plus its tensor overflows, a device
 * allocation failed) and ATTN_ERR_UNSUPPORTED (the context runs on the
 * native backend).  On error nothing is enqueued and *done is untouched. */
ATTN_API attn_status attn_sdpa_cl(attn_context *ctx, const attn_sdpa_desc *d,
                                  cl_mem q, cl_mem k, cl_mem v, cl_mem o,
                                  cl_mem lse, cl_command_queue queue,
                                  cl_uint n_wait, const cl_event *wait,
                                  cl_event *done);

/** attn_sdpa_cl with buffer offsets. */
ATTN_API attn_status attn_sdpa_cl_buffers(attn_context *ctx,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_buffers *b,
                                          cl_command_queue queue,
                                          cl_uint n_wait, const cl_event *wait,
                                          cl_event *done);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_CL_H */
