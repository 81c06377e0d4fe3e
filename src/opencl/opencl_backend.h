/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL backend's entry points for the API layer, free of OpenCL
 * types (backend_cl.c).  Present when the library is built with
 * ATTN_HAVE_OPENCL.  Not installed.
 */
#ifndef ATTN_OPENCL_OPENCL_BACKEND_H
#define ATTN_OPENCL_OPENCL_BACKEND_H

#include "core/backend.h"

/* Every OpenCL device (attn_devices): *out is an array of *count entries
 * (NULL when there is none) that the caller frees.  Errors:
 * ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_DEVICE (the ICD failed). */
attn_status attn_opencl_devices(attn_device_info **out, size_t *count,
                                attn_err *err);

/* Resolves a device spec: *out is an OpenCL backend on every selected
 * device (options.queues queues each, each tuned by its profile), or NULL
 * when the spec selects the native backend; why receives the reason of
 * the choice.  kernel (NULL: none) forces a kernel variant by name.
 * native_fast: the native backend runs vectorised kernels here (so "auto"
 * may prefer it to an OpenCL CPU device; its profile decides).
 * Errors: ATTN_ERR_NO_DEVICE (nothing matches; err lists the devices),
 * ATTN_ERR_INVALID_ARGUMENT, and device errors creating the runtime. */
attn_status attn_opencl_open(const char *spec, const attn_options *o,
                             const char *kernel, int native_fast,
                             const attn_logger *log, attn_backend **out,
                             char *why, size_t why_cap, attn_err *err);

/* Whether spec is a device spec at all, matched against nothing.
 * Errors: ATTN_ERR_INVALID_ARGUMENT ("native" combined with devices), with
 * the reason in err. */
attn_status attn_opencl_check_spec(const char *spec, attn_err *err);

/* Whether device spec "auto" prefers the native backend to the best
 * usable OpenCL CPU device of devs: its profile says so and native_fast
 * (attn_opencl_open). */
int attn_opencl_native_beats_cpu(const attn_device_info *devs, size_t n,
                                 int native_fast);

/* The name of kernel variant i of the table, NULL past the end. */
const char *attn_opencl_kernel_name(int i);
/* The name of backward variant i (bwd_cl.h), NULL past the end. */
const char *attn_opencl_bwd_kernel_name(int i);

/* Test hooks (built with ATTN_FAULT_INJECTION): the device limits the
 * size checks use, and the idle buffers of every device's pool. */
attn_status attn_opencl_set_mem_limits(attn_backend *b, int device,
                                       uint64_t global_mem, uint64_t max_alloc);
/* Releases the idle pooled buffers of every device of b (0 for any other
 * backend); returns how many. */
size_t attn_opencl_trim(attn_backend *b);
/* Device buffers created and reused by b's pools so far. */
void attn_opencl_pool_counts(attn_backend *b, unsigned long *created,
                             unsigned long *reused);

#endif /* ATTN_OPENCL_OPENCL_BACKEND_H */
