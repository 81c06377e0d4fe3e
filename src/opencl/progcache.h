/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The programs of the kernel variants, built on first use for (variant,
 * dtype, build defines) and kept per runtime, with a pool of kernel
 * objects per program so that calls in flight never share one
 * (progcache.c).  Not installed.
 */
#ifndef ATTN_OPENCL_PROGCACHE_H
#define ATTN_OPENCL_PROGCACHE_H

#include "opencl/variant.h"

/* The cl/ files of variant v's program in build order (cl/common.cl
 * first) into names[cap]; returns how many. */
size_t attn_cl_variant_sources(const attn_cl_variant *v, const char **names,
                               size_t cap);
/* The build options of variant v's program (before program.c adds
 * -cl-std) for dtype, tuning t and the variant's extra defines (its
 * defines hook's).  Returns what snprintf returns. */
int attn_cl_variant_options(const attn_cl_variant *v, attn_dtype dtype,
                            const attn_cl_tuning *t, const char *extra,
                            char *buf, size_t cap);

/* The built program of variant v for dtype with tuning t (requested;
 * the result may be fitted down) and the extra defines: kept from an
 * earlier request, else built now.  A failed request is kept and fails
 * the same way again.  Errors: ATTN_ERR_BUILD_FAILED, ATTN_ERR_UNSUPPORTED
 * (the device's or the kernels' limits are too small), ATTN_ERR_DEVICE,
 * ATTN_ERR_OUT_OF_MEMORY.  Thread-safe (takes rt->lock). */
attn_status attn_cl_progcache_get(attn_cl_runtime *rt, int v,
                                  const attn_cl_tuning *t, const char *extra,
                                  attn_dtype dtype, const attn_cl_built **out,
                                  attn_err *err);
/* Kernel objects of b's program for one call (k[ATTN_CL_MAX_KERNELS]):
 * kept ones when free, else new.  Give them back when the call has
 * enqueued its launches. */
attn_status attn_cl_kernels_take(attn_cl_runtime *rt, const attn_cl_built *b,
                                 cl_kernel *k, attn_err *err);
void attn_cl_kernels_give(attn_cl_runtime *rt, const attn_cl_built *b,
                          cl_kernel *k);
/* Releases every program (runtime destruction). */
void attn_cl_progcache_free(attn_cl_runtime *rt);

#endif /* ATTN_OPENCL_PROGCACHE_H */
