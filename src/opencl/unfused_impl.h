/*
 * What the two halves of the three-kernel path share (not installed):
 * unfused_prog.c builds the programs (tuning fitted to the device) and
 * keeps them in rt->launch; sdpa_unfused.c plans the blocks and enqueues
 * the kernels.
 */
#ifndef ATTN_OPENCL_UNFUSED_IMPL_H
#define ATTN_OPENCL_UNFUSED_IMPL_H

#include "opencl/sdpa_cl.h"

/* Programs kept per attn_dtype (ATTN_F32, ATTN_F16). */
#define UNFUSED_N_DTYPES 2

typedef struct unfused_prog {
    cl_program prog;
    cl_kernel score, softmax, aggregate;
    attn_cl_unfused_tuning t; /* as built, after fitting to the device */
    attn_status failed;       /* a failed build, kept until retuned */
    char why[ATTN_MSG_MAX];
} unfused_prog;

/* rt->launch.  Guarded by rt->lock. */
typedef struct unfused_state {
    attn_cl_unfused_tuning tuning;
    unfused_prog prog[UNFUSED_N_DTYPES]; /* by attn_dtype */
    cl_mem dummy; /* bound to the optional arguments that are absent */
} unfused_state;

/* The built program of dtype (< UNFUSED_N_DTYPES) and the launch state it
 * lives in, both created now if needed.  A failed build is kept: later
 * calls fail with the same sentence until the tuning changes.  Errors:
 * ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_BUILD_FAILED, ATTN_ERR_UNSUPPORTED (the
 * device's limits are too small), ATTN_ERR_DEVICE.  Call with rt->lock
 * held. */
attn_status attn_cl_unfused_prog_get(attn_cl_runtime *rt, attn_dtype dtype,
                                     unfused_prog **out, unfused_state **st_out,
                                     attn_err *err);

#endif /* ATTN_OPENCL_UNFUSED_IMPL_H */
