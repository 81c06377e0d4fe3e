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
 * Errors: ATTN_ERR_INVALID_ARGUMENT (NULL handle, device not usable, a
 * device that is not one of the context's), ATTN_ERR_DEVICE,
 * ATTN_ERR_OUT_OF_MEMORY. */
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
 * copied before the call returns.  Left padding is taken as attn_sdpa
 * takes it: kv_start (and a causal diagonal the starts move) through the
 * bias given to the device, and the rows of q_start (O = 0, lse =
 * -INFINITY) written by fills enqueued behind the kernels, which done
 * covers.  There is no fallback: a device failure
 * returns its status.  q, k and v may share memory; o and lse may share
 * none with any other tensor: not within one cl_mem, not across
 * sub-buffers of one parent (or a parent and its sub-buffer), not through
 * buffers on the same host memory (CL_MEM_USE_HOST_PTR).  Errors: as
 * attn_sdpa, plus ATTN_ERR_INVALID_ARGUMENT (a NULL buffer or queue,
 * n_wait > 0 with wait NULL, a NULL event in wait or one of another
 * cl_context, a buffer smaller than its tensor at its offset, a buffer or
 * queue of another cl_context, a queue of another device, o or lse
 * overlapping another tensor: the message names both),
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

/** Buffers of one backward call (attn_sdpa_backward_cl_buffers): the
 * forward's tensors, dL/dO and the gradients, each at an offset in
 * elements of the dtype (lse, dbias and d_additive_w: in floats).  dbias
 * and d_additive_w may be NULL (not asked), as in attn_sdpa_grad.
 * struct_size is the caller's sizeof(attn_cl_grad_buffers)
 * (ATTN_CL_GRAD_BUFFERS_INIT); 0 means the first layout. */
typedef struct attn_cl_grad_buffers {
    size_t struct_size; /**< sizeof(attn_cl_grad_buffers) as the caller built */
    cl_mem q;           /**< the forward's Q (attn_sdpa_desc layout) */
    cl_mem k;           /**< the forward's K */
    cl_mem v;           /**< the forward's V */
    cl_mem o;           /**< the forward's output O */
    cl_mem lse;         /**< the forward's lse, float [batch, heads_q, seq_q] */
    cl_mem d_o;         /**< dL/dO, shaped and strided as O */
    cl_mem dq;          /**< out: dL/dQ, shaped and strided as Q */
    cl_mem dk;          /**< out: dL/dK, shaped and strided as K */
    cl_mem dv;          /**< out: dL/dV, shaped and strided as V */
    cl_mem dbias;       /**< out or NULL: dL/dbias, float, the bias's shape */
    cl_mem d_additive_w;        /**< out or NULL: float [heads_q, head_dim] */
    size_t q_offset;            /**< where Q starts in q, in elements */
    size_t k_offset;            /**< where K starts in k, in elements */
    size_t v_offset;            /**< where V starts in v, in elements */
    size_t o_offset;            /**< where O starts in o, in elements */
    size_t lse_offset;          /**< where lse starts in lse, in floats */
    size_t d_o_offset;          /**< where dO starts in d_o, in elements */
    size_t dq_offset;           /**< where dQ starts in dq, in elements */
    size_t dk_offset;           /**< where dK starts in dk, in elements */
    size_t dv_offset;           /**< where dV starts in dv, in elements */
    size_t dbias_offset;        /**< where dbias starts in dbias, in floats */
    size_t d_additive_w_offset; /**< where it starts, in floats */
} attn_cl_grad_buffers;

/** Initializer of an attn_cl_grad_buffers with no buffers and offsets 0:
 * `attn_cl_grad_buffers g = ATTN_CL_GRAD_BUFFERS_INIT;` */
#define ATTN_CL_GRAD_BUFFERS_INIT ATTN_SIZED_INIT_(attn_cl_grad_buffers)

/** Zeroes size bytes at g and sets g->struct_size to size (the caller's
 * sizeof(attn_cl_grad_buffers)); attn_cl_grad_buffers_init(g) passes it.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (g NULL, a size no layout has;
 * untouched). */
ATTN_API attn_status attn_cl_grad_buffers_init_sized(attn_cl_grad_buffers *g,
                                                     size_t size);
/** Prepares *g: no buffers, offsets 0, struct_size = sizeof *g. */
#define attn_cl_grad_buffers_init(g)                                           \
    ((void)attn_cl_grad_buffers_init_sized((g), sizeof *(g)))

/** attn_sdpa_backward on device buffers: the gradients of the forward
 * described by d (attn_sdpa_backward's math, masks, scores and rules, the
 * same kernels: the results equal attn_sdpa_backward's on the same
 * context), enqueued on the caller's queue (of the context's cl_context
 * and device) after the n_wait events of wait.  When done is not NULL it
 * receives an event that completes when dq, dk, dv (and dbias,
 * d_additive_w when asked) are written; the caller releases it.  Nothing
 * blocks: the call returns once the work is enqueued (the device's
 * working buffers are released when the work completes).  Host arrays of
 * the descriptor (mask.bias, mask.kv_len, additive_w, keep) are copied
 * before the call returns.  Strided tensors (d's q_strides ... o_strides;
 * dq, dk, dv in the strides of q, k, v, d_o in o's) and tensors at a
 * non-zero offset are gathered into contiguous device copies and the
 * gradients scattered back, device to device (working memory: those
 * copies); contiguous tensors at offset 0 are read and written in place.
 * Working memory besides: D = rowsum(dO * O), one float per query row
 * (with d_additive_w, head_dim floats per query row).  Gaps between
 * strided rows of dq, dk and dv are not written.  There is no fallback:
 * a device failure returns its status.  Inputs may share memory; an
 * output may share none with any other tensor (the rules of
 * attn_sdpa_cl_buffers: one cl_mem, sub-buffers of one parent, buffers on
 * the same host memory).  Packed sequences (cu_seqlens_q, cu_seqlens_kv;
 * lse [heads_q, total_q], as attn_sdpa_cl_buffers writes it) are taken:
 * each sequence runs over its rows, all behind the one wait list and
 * event; a sequence with no key gets dq = 0, one with no query dk = dv =
 * 0; d_additive_w is the sum over the sequences (working memory: a
 * heads_q x head_dim float row per sequence).  Left padding as
 * attn_sdpa_backward takes it: a padding row of q_start gets dq = 0 and
 * adds nothing to dk and dv (lse is gathered into working memory, batch x
 * heads_q x seq_q floats, with those rows at -INFINITY; the caller's lse
 * is only read).  Not taken (ATTN_ERR_UNSUPPORTED): dbias with keep,
 * kv_start or a moved causal diagonal (as attn_sdpa_backward on a
 * device).
 * Errors: as attn_sdpa_backward, plus ATTN_ERR_INVALID_ARGUMENT (a NULL
 * buffer (dbias, d_additive_w excepted) or queue, n_wait > 0 with wait
 * NULL, a NULL event in wait or one of another cl_context, a buffer
 * smaller than its tensor at its offset, a buffer or queue
 * of another cl_context, a queue of another device, an output
 * overlapping another tensor: the message names both), and
 * ATTN_ERR_UNSUPPORTED (the context runs on the native backend, what is
 * not taken above, no backward variant takes the call or the forced one
 * does not).  On error nothing writes the outputs and *done is
 * untouched. */
ATTN_API attn_status attn_sdpa_backward_cl_buffers(
    attn_context *ctx, const attn_sdpa_desc *d, const attn_cl_grad_buffers *g,
    cl_command_queue queue, cl_uint n_wait, const cl_event *wait,
    cl_event *done);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_CL_H */
