/*
 * What the OpenCL launchers share (sdpa_unfused.c, unfused_prog.c,
 * sdpa_fused.c, sdpa_decode.c): tensor size checks, device copies of the
 * host-side inputs, the gate that holds a call's launches back until all
 * are enqueued, kernel arguments and event chains, and the pieces of the
 * lazily built programs.  Not installed.
 *
 * Locking (runtime.h): none of these take rt->lock.  attn_cl_set_args and
 * attn_cl_chain touch a kernel's arguments, so call them with rt->lock
 * held; the rest need no lock.
 */
#ifndef ATTN_OPENCL_LAUNCH_COMMON_H
#define ATTN_OPENCL_LAUNCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "opencl/sdpa_cl.h"

/* The checks every launcher starts with: clears *done (when not NULL),
 * fails with ATTN_ERR_INVALID_ARGUMENT ("FN: NULL argument") on a NULL
 * argument or tensor buffer and on a dtype that is not an attn_dtype. */
attn_status attn_cl_check_call(const char *fn, const attn_cl_runtime *rt,
                               const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue queue,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err);

/* Checks that the buffers of t hold the tensors of d at their offsets.
 * Errors: ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY (overflow). */
attn_status attn_cl_check_tensors(const attn_sdpa_desc *d,
                                  const attn_cl_tensors *t, attn_err *err);

/* Read-only device copies of the host-side inputs of d (mask.bias,
 * mask.kv_len, additive_w; NULL where absent).  On failure the copies
 * made so far are left in *bias, *kv_len, *addw for the caller to
 * release. */
attn_status attn_cl_copy_inputs(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                cl_mem *bias, cl_mem *kv_len, cl_mem *addw,
                                attn_err *err);

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

/* Scratch buffers the paths allocate for d on rt, besides the tensors and
 * the input copies (upper bounds, known before anything is built): the
 * score buffer of the three kernels (sdpa_unfused.c), the partial results
 * of the decode kernels (sdpa_decode.c); the fused kernel has none.  Each
 * path allocates one such buffer per call.  Saturate at UINT64_MAX. */
uint64_t attn_cl_unfused_scratch(const attn_cl_runtime *rt,
                                 const attn_sdpa_desc *d);
uint64_t attn_cl_decode_scratch(attn_cl_runtime *rt, const attn_sdpa_desc *d);

/* Releases m unless it is NULL. */
void attn_cl_release_mem(cl_mem m);

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

/* Opens the gate of a call: g->user and g->wl.  Whatever was made is left
 * for attn_cl_gate_close, also on failure. */
attn_status attn_cl_gate_open(attn_cl_runtime *rt, cl_uint n_wait,
                              const cl_event *wait, attn_cl_gate *g,
                              attn_err *err);
/* Ends a call: opens the gate when s is ATTN_OK (and fails if that fails);
 * otherwise terminates it, so that nothing enqueued writes o or lse, or,
 * when the launches write only the library's own buffers
 * (attn_cl_launch_own_buffers), opens it all the same: what was enqueued
 * runs and is waited for by the caller.  Hands last to *done (when done is
 * not NULL and the call succeeded) or releases it; releases what the gate
 * holds.  Returns the call's status.  Never blocks. */
attn_status attn_cl_gate_close(attn_status s, attn_cl_gate *g, cl_event last,
                               cl_event *done, attn_err *err);

/* Says whether the launches the calling thread makes from now on write
 * only buffers of the library's own (0 by default): the host-pointer path
 * of attn_sdpa and the multi-head layer, which read results back only
 * when every command succeeded and wait for their queues on failure.  A
 * failed launch of theirs then lets what it enqueued run instead of
 * failing it: failing a command while the one ahead of it on an in-order
 * queue still runs can crash some drivers (PoCL 3.1 asserts in
 * pocl_lock_events_inorder or pocl_update_event_running_unlocked).  The
 * embedding API writes the caller's buffers and keeps terminating. */
void attn_cl_launch_own_buffers(int on);

/* A kernel argument: its size and a pointer to its value. */
typedef struct attn_cl_karg {
    size_t size;
    const void *value;
} attn_cl_karg;
#define ATTN_CL_KARG(x)                                                        \
    {                                                                          \
        sizeof(x), &(x)                                                        \
    }

/* Sets arguments first .. first + n - 1 of k.  rt->lock held. */
cl_int attn_cl_set_args(cl_kernel k, cl_uint first, const attn_cl_karg *a,
                        size_t n);

/* Enqueues k after *prev (after wait[0 .. n_wait) when *prev is NULL),
 * releases *prev and puts the new event there.  rt->lock held. */
cl_int attn_cl_chain(cl_command_queue queue, cl_kernel k, cl_uint dims,
                     const size_t *global, const size_t *local, cl_uint n_wait,
                     const cl_event *wait, cl_event *prev);

/* ---- programs ---------------------------------------------------------- */

/* *state = a zeroed block of size bytes whose cl_mem at dummy_off holds a
 * 16-byte buffer (bound to the optional arguments that are absent).  what
 * names the state in the out-of-memory message ("the decode kernel
 * state"). */
attn_status attn_cl_state_new(attn_cl_runtime *rt, size_t size,
                              size_t dummy_off, const char *what, void **state,
                              attn_err *err);

/* Releases the n kernels (NULL ones skipped) and then prog (if any). */
void attn_cl_release_prog(cl_program prog, const cl_kernel *k, size_t n);

/* clCreateKernel with the library's error message; *out is NULL on
 * failure. */
attn_status attn_cl_create_kernel(cl_program prog, const char *name,
                                  cl_kernel *out, attn_err *err);

/* The device's work-group limits: its largest work-group and the item
 * limits of each dimension (items[16], zeroed first).  Errors:
 * ATTN_ERR_DEVICE. */
attn_status attn_cl_wg_limits(attn_cl_runtime *rt, size_t *dev_wg,
                              size_t items[16], attn_err *err);
/* The largest side of a one-dimensional work-group: the smaller of the two
 * limits above. */
attn_status attn_cl_wg_side(attn_cl_runtime *rt, size_t *dev_wg, attn_err *err);

/* A built kernel's work-group limit and its own local memory.  Errors:
 * ATTN_ERR_DEVICE. */
attn_status attn_cl_kernel_limits(attn_cl_runtime *rt, cl_kernel k, size_t *kwg,
                                  cl_ulong *klocal, attn_err *err);

/* Keeps the failed build s (message e) in *failed / why[ATTN_MSG_MAX] and
 * fails err with it. */
attn_status attn_cl_keep_failure(attn_status s, const attn_err *e,
                                 attn_status *failed, char *why, attn_err *err);

#endif /* ATTN_OPENCL_LAUNCH_COMMON_H */
