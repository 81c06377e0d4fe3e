/* The OpenCL backend object (private). */
#ifndef ATTN_OPENCL_BACKEND_CL_H
#define ATTN_OPENCL_BACKEND_CL_H

#include "opencl/runtime.h"

/* Wraps rt (owned from then on) into a backend. */
attn_status attn_backend_cl_wrap(attn_cl_runtime *rt, attn_backend **out,
                                 attn_err *err);
/* The same over n runtimes (rt[0] the primary device), all owned. */
attn_status attn_backend_cl_wrap_n(attn_cl_runtime *const *rt, int n,
                                   attn_backend **out, attn_err *err);
/* The primary runtime of an OpenCL backend, or NULL for any other
 * backend. */
attn_cl_runtime *attn_backend_cl_runtime(const attn_backend *b);

#endif /* ATTN_OPENCL_BACKEND_CL_H */
