/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steps of a launch that the driver (driver.c) and the multi-head
 * layer (mha_cl.c) share: argument and tensor size checks, the device
 * memory a call needs against the device's, device copies of the
 * host-side inputs, and the gate that holds a call's launches back until
 * all are enqueued.  None of them takes a lock.  Not installed.
 */
#ifndef ATTN_OPENCL_LAUNCH_COMMON_H
#define ATTN_OPENCL_LAUNCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "opencl/sdpa_cl.h"

/* The checks every launch starts with (*done untouched): fails with
 * ATTN_ERR_INVALID_ARGUMENT ("FN: NULL argument") on a NULL argument or tensor
 * buffer and on a dtype that is not an attn_dtype. */
attn_status attn_cl_check_call(const char *fn, const attn_cl_runtime *rt,
                               const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue queue,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err);

/* Checks that the buffers of t hold the tensors of d at their offsets.
 * Errors: ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY (overflow). */
attn_status attn_cl_check_tensors(const attn_sdpa_desc *d,
                                  const attn_cl_tensors *t, attn_err *err);

/* Checks, for tensors t that passed attn_cl_check_tensors, that every
 * buffer belongs to rt's context (CL_MEM_CONTEXT) and that o and lse share
 * no byte with another tensor: within one buffer, across sub-buffers of
 * one parent (CL_MEM_ASSOCIATED_MEMOBJECT, CL_MEM_OFFSET) and across
 * buffers on the same host memory (CL_MEM_USE_HOST_PTR).  q, k and v may
 * share memory.  Errors: ATTN_ERR_INVALID_ARGUMENT with a sentence naming
 * the two tensors. */
attn_status attn_cl_check_aliasing(const attn_cl_runtime *rt,
                                   const attn_sdpa_desc *d,
                                   const attn_cl_tensors *t, attn_err *err);

/* Checks that each of the n spans' buffers is a valid cl_mem of rt's
 * context that holds its tensor at its offset, and that no written span
 * shares a byte with another span (attn_cl_check_aliasing's rules).
 * Errors: ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY (overflow). */
attn_status attn_cl_check_spans(const attn_cl_runtime *rt,
                                const attn_cl_span *sp, int n, attn_err *err);

/* Read-only device copies of the host-side inputs of d (mask.bias,
 * mask.kv_len, additive_w; NULL where absent).  On failure the copies
 * made so far are left in *bias, *kv_len, *addw for the caller to
 * release. */
attn_status attn_cl_copy_inputs(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                cl_mem *bias, cl_mem *kv_len, cl_mem *addw,
                                attn_err *err);

/* Bytes of each device copy of d's host-side inputs: [0] mask.bias,
 * [1] mask.kv_len, [2] additive_w (0 where absent).  0 when a size
 * overflows (the caller has validated d, so it does not). */
int attn_cl_input_sizes(const attn_sdpa_desc *d, size_t bytes[3]);

/* Bytes of the device copies attn_cl_copy_inputs makes for d; *largest
 * receives the largest of them (largest may be NULL).  Saturates at
 * UINT64_MAX. */
uint64_t attn_cl_input_bytes(const attn_sdpa_desc *d, uint64_t *largest);

/* Checks, before anything is allocated, that work needing `total` bytes of
 * device memory, `largest` of them in one buffer, fits rt's device (its
 * recorded global memory and largest allocation, attn_cl_mem_limits).
 * what names the work in the message ("the call").  Errors:
 * ATTN_ERR_OUT_OF_MEMORY, with a sentence that names both sizes in bytes
 * (and KiB / MiB / GiB) and the device. */
attn_status attn_cl_check_fit(const attn_cl_runtime *rt, const char *what,
                              uint64_t total, uint64_t largest, attn_err *err);

/* attn_cl_check_fit for a launch on device buffers: the input copies of
 * d plus one scratch buffer of `scratch` bytes (an upper bound, from the
 * functions below).  Called before anything is built or allocated. */
attn_status attn_cl_check_launch_fit(const attn_cl_runtime *rt,
                                     const attn_sdpa_desc *d, uint64_t scratch,
                                     const char *what, attn_err *err);

/* Adds with saturation at UINT64_MAX. */
uint64_t attn_cl_add_bytes(uint64_t a, uint64_t b);

/* Releases m unless it is NULL. */
void attn_cl_release_mem(cl_mem m);

/* The padding rows of q_start (left padding: attn.h, attn_sdpa_desc) on
 * device tensors: o's rows i < q_start[b] of every head zeroed, lse's set
 * to -INFINITY (o or lse NULL: left alone).  o starts at element offset
 * o_off and lies in d's strides; lse is [batch, heads_q] rows of seq_q
 * floats from float offset lse_off, lse_pitch floats apart (0: seq_q,
 * dense; a packed sequence's rows lie total_q apart).  A q_start[b] at or
 * past seq_q pads every row.  One fill per run of contiguous padding (a
 * head's rows, a row's heads or a single row, as the strides allow), each
 * behind wl[0 .. n_wl) and no other fill (they may run at once on an
 * out-of-order queue); *done receives a marker behind them all.
 * Errors: the enqueue's status (ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY),
 * *done NULL; the fills enqueued still wait for wl. */
attn_status attn_cl_pad_rows(attn_cl_runtime *rt, cl_command_queue q,
                             const attn_sdpa_desc *d, const int32_t *q_start,
                             cl_mem o, size_t o_off, cl_mem lse, size_t lse_off,
                             size_t lse_pitch, cl_uint n_wl, const cl_event *wl,
                             cl_event *last, attn_err *err);

/* The gate of a call: a user event that holds its launches back until all
 * are enqueued, and the wait list of its first launches. */
typedef struct attn_cl_gate {
    cl_event user; /* the gate */
    cl_event *wl;  /* wait[0 .. n_wait) + user, malloc'd */
    int own;       /* the launches write only the library's own buffers */
} attn_cl_gate;
#define ATTN_CL_GATE_INIT                                                      \
    {                                                                          \
        NULL, NULL, 0                                                          \
    }

/* Opens the gate of a call: g->user and g->wl.  own: the launches write
 * only buffers of the library's own (the host-pointer path of attn_sdpa
 * and the multi-head layer, which read results back only when every
 * command succeeded and wait for their queues on failure); a failed call
 * then lets what it enqueued run instead of failing it, since failing a
 * command while the one ahead of it on an in-order queue still runs can
 * crash some drivers (PoCL 3.1 asserts in pocl_lock_events_inorder or
 * pocl_update_event_running_unlocked).  The embedding API writes the
 * caller's buffers and fails them.  Whatever was made is left for
 * attn_cl_gate_close, also on failure. */
attn_status attn_cl_gate_open(attn_cl_runtime *rt, int own, cl_uint n_wait,
                              const cl_event *wait, attn_cl_gate *g,
                              attn_err *err);
/* Ends a call: opens the gate when s is ATTN_OK (and fails if that fails);
 * otherwise terminates it, so that nothing enqueued writes o or lse, or,
 * when the launches write only the library's own buffers (own), opens it
 * all the same: what was enqueued runs and is waited for by the caller.  Hands
 * last to *done (when done is not NULL and the call succeeded) or releases it;
 * releases what the gate holds.  Returns the call's status.  Never blocks. */
attn_status attn_cl_gate_close(attn_status s, attn_cl_gate *g, cl_event last,
                               cl_event *done, attn_err *err);

#endif /* ATTN_OPENCL_LAUNCH_COMMON_H */
