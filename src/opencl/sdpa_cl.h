/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The device tensors of one attention call, as every kernel variant and
 * the layer see them.  Not installed.
 */
#ifndef ATTN_OPENCL_SDPA_CL_H
#define ATTN_OPENCL_SDPA_CL_H

#include "opencl/runtime.h"

/* Device tensors of one call.  q, k, v, o hold d->dtype values (float or
 * IEEE half), lse floats; each starts at its offset (in elements) inside its
 * buffer and is laid out as DESIGN.md says, contiguous. */
typedef struct attn_cl_tensors {
    cl_mem q, k, v, o, lse;                     /* lse may be NULL */
    size_t q_off, k_off, v_off, o_off, lse_off; /* offsets in elements */
} attn_cl_tensors;

#endif /* ATTN_OPENCL_SDPA_CL_H */
