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

/* Releases m unless it is NULL. */
void attn_cl_release_mem(cl_mem m);

/* Creates the gate (a user event that holds a call's launches back until
 * all are enqueued) in *gate and the wait list wait[0 .. n_wait) + gate in
 * *wl (malloc'd).  Whatever was made is left for attn_cl_gate_close, also
 * on failure. */
attn_status attn_cl_gate_open(attn_cl_runtime *rt, cl_uint n_wait,
                              const cl_event *wait, cl_event *gate,
                              cl_event **wl, attn_err *err);
/* Ends a call: opens the gate when s is ATTN_OK (and fails if that fails),
 * terminates it otherwise; hands last to *done (when done is not NULL and
 * the call succeeded) or releases it; frees wl and the gate.  Returns the
 * call's status.  Never blocks. */
attn_status attn_cl_gate_close(attn_status s, cl_event gate, cl_event *wl,
                               cl_event last, cl_event *done, attn_err *err);

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
