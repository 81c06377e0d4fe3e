/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The driver of the kernel variants (variant.h): choosing a variant for a
 * shape, its programs (progcache.c), and one launch of it on device
 * buffers.  Used by the backend (backend_cl.c, exec_cl.c), the layer
 * (mha_cl.c) and the embedding API's path.  Not installed.
 */
#ifndef ATTN_OPENCL_DRIVER_H
#define ATTN_OPENCL_DRIVER_H

#include "core/backend.h"
#include "opencl/progcache.h"
#include "opencl/variant.h"

/* ---- the runtime's variants ------------------------------------------- */

/* Gives rt its per-variant tuning (the schemas' defaults) and the default
 * choice (AUTO over the table order).  Errors: ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_variants_init(attn_cl_runtime *rt, attn_err *err);
void attn_cl_variants_free(attn_cl_runtime *rt);

/* Sets the tuning of variant v on rt (checked first; epoch bumped: plans
 * made before are stale).  Errors: ATTN_ERR_INVALID_ARGUMENT.
 * Thread-safe. */
attn_status attn_cl_set_tuning(attn_cl_runtime *rt, int v,
                               const attn_cl_tuning *t, attn_err *err);
/* Copies the tuning of variant v. */
void attn_cl_get_tuning(attn_cl_runtime *rt, int v, attn_cl_tuning *out);
/* Sets how rt chooses (path, forced variant, order); epoch bumped. */
void attn_cl_set_choice(attn_cl_runtime *rt, const attn_cl_choice *c);

/* The buffer bound to absent optional arguments, made on first use.
 * Errors: the allocation's. */
attn_status attn_cl_dummy(attn_cl_runtime *rt, cl_mem *out, attn_err *err);

/* ---- one shape ----------------------------------------------------------- */

/* Chooses the variant for d on rt (the forced one, else the path's order;
 * under AUTO the first that prefers and supports the shape, then the
 * universal ones), builds it and plans the launch: *out says which and
 * what device memory it needs besides the tensors.  Nothing is allocated.
 * Errors: ATTN_ERR_UNSUPPORTED (no variant takes the shape; a forced one
 * that does not: a sentence naming it and why), ATTN_ERR_BUILD_FAILED,
 * ATTN_ERR_DEVICE, ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_prepare(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                            attn_prepared *out, attn_err *err);

/* Device buffers a launch gets from its caller instead of making them:
 * the copies of mask.bias, mask.kv_len and additive_w (already written,
 * or being written on the launch's queue ahead of it) and the scratch
 * buffer (at least p->scratch bytes). */
typedef struct attn_cl_inputs {
    cl_mem bias, kv_len, addw, scratch;
} attn_cl_inputs;

/* One launch of prepared p (made by attn_cl_prepare for d on rt) on the
 * tensors t, on `queue` after the wait list; *done (when done is not
 * NULL) receives the last command's event, for the caller to release.
 * in NULL: the launch makes its own input copies and scratch (released
 * once enqueued) after checking that they fit the device.  own: only the
 * library's own buffers are written (launch_common.h, gate).  Never
 * blocks; on failure nothing enqueued writes o or lse (unless own).
 * Errors: ATTN_ERR_INVALID_ARGUMENT (a NULL argument, a buffer smaller
 * than its tensor), ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_DEVICE,
 * ATTN_ERR_BUILD_FAILED.  Thread-safe. */
attn_status attn_cl_run(attn_cl_runtime *rt, const attn_prepared *p,
                        const attn_sdpa_desc *d, const attn_cl_tensors *t,
                        const attn_cl_inputs *in, int own,
                        cl_command_queue queue, cl_uint n_wait,
                        const cl_event *wait, cl_event *done, attn_err *err);

#endif /* ATTN_OPENCL_DRIVER_H */
