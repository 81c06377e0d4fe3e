/* The OpenCL backend object (private). */
#ifndef ATTN_OPENCL_BACKEND_CL_H
#define ATTN_OPENCL_BACKEND_CL_H

#include "opencl/sdpa_cl.h"

/* Wraps rt (owned from then on) into a backend. */
attn_status attn_backend_cl_wrap(attn_cl_runtime *rt, attn_backend **out,
                                 attn_err *err);
/* The same over n runtimes (rt[0] the primary device), all owned. */
attn_status attn_backend_cl_wrap_n(attn_cl_runtime *const *rt, int n,
                                   attn_backend **out, attn_err *err);
/* The primary runtime of an OpenCL backend, or NULL for any other
 * backend. */
attn_cl_runtime *attn_backend_cl_runtime(const attn_backend *b);

/* Sets the kernel path (options.path) of an OpenCL backend. */
void attn_backend_cl_set_path(attn_backend *b, attn_path path);

/* The kernels of one call on the primary device and the caller's queue,
 * on the path the context chose (the fused kernel where the shape fits,
 * else the three kernels); the contract of attn_cl_sdpa_unfused. */
attn_status attn_backend_cl_launch(const attn_backend *b,
                                   const attn_sdpa_desc *d,
                                   const attn_cl_tensors *t, cl_command_queue q,
                                   cl_uint n_wait, const cl_event *wait,
                                   cl_event *done, attn_err *err);

#endif /* ATTN_OPENCL_BACKEND_CL_H */
