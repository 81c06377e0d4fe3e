/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL backend object, shared by its halves: backend_cl.c (the
 * backend interface, opening devices, profiles) and exec_cl.c (what the
 * scheduler drives: a call's buffers, uploads, launches, reads).  Not
 * installed.
 */
#ifndef ATTN_OPENCL_BACKEND_IMPL_H
#define ATTN_OPENCL_BACKEND_IMPL_H

#include "core/backend.h"
#include "opencl/runtime.h"

#define ATTN_CL_MAX_DEVICES 16

typedef struct cl_backend {
    attn_cl_runtime *rt[ATTN_CL_MAX_DEVICES]; /* rt[0]: the primary device */
    double weight[ATTN_CL_MAX_DEVICES];       /* relative speed */
    int n_rt;
} cl_backend;

/* The scheduler's interface of the OpenCL backend (exec_cl.c). */
extern const attn_exec_ops attn_cl_exec_ops;

#endif /* ATTN_OPENCL_BACKEND_IMPL_H */
