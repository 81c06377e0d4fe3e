/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A device's pool of reusable buffers: the host-pointer calls (attn_sdpa,
 * attn_mha_forward) take their tensors, input copies, scratch and staging
 * buffers from it and give them back when the call ends, so that repeated
 * calls of a shape allocate nothing on the device after the first.
 *
 * A buffer is reused for a request of n bytes when it holds n to 2n bytes
 * (and has the same kind).  Idle buffers are kept up to a budget (a
 * quarter of the device's memory, at most 1 GiB; 32 MiB on devices whose
 * memory is the host's, whose allocations cost little), the least
 * recently used released first; all are released when an allocation
 * fails (then the allocation is tried once more), by attn_cl_pool_trim and
 * when the runtime is destroyed.  Thread-safe (a lock of its own).  Not
 * installed.
 */
#ifndef ATTN_OPENCL_POOL_H
#define ATTN_OPENCL_POOL_H

#include "opencl/runtime.h"

/* Buffer kinds. */
typedef enum attn_cl_buf_kind {
    ATTN_CL_BUF_DEVICE, /* plain device memory */
    ATTN_CL_BUF_PINNED  /* host memory the device reads and writes fast
                           (CL_MEM_ALLOC_HOST_PTR), mapped for the host */
} attn_cl_buf_kind;

typedef struct attn_cl_buf {
    cl_mem mem;
    void *host;   /* PINNED: the mapped host pointer */
    size_t bytes; /* its size (at least what was asked) */
    attn_cl_buf_kind kind;
    int fresh; /* allocated by this request, not taken from the pool */
} attn_cl_buf;

/* Creates rt->pool.  Errors: ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_pool_create(attn_cl_runtime *rt, attn_err *err);
/* Releases every buffer and the pool; NULL pool is a no-op. */
void attn_cl_pool_destroy(attn_cl_runtime *rt);

/* A buffer of at least `bytes` (> 0) bytes of that kind: an idle one, or a
 * new one.  Errors: the allocation's (ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_DEVICE) with a sentence naming what (the tensor). */
attn_status attn_cl_pool_take(attn_cl_runtime *rt, size_t bytes,
                              attn_cl_buf_kind kind, const char *what,
                              attn_cl_buf *out, attn_err *err);
/* Ends a call's use of b (zeroed on return).  keep: back to the pool;
 * otherwise released when it was allocated for this call (b->fresh), and
 * back to the pool when it came from there. */
void attn_cl_pool_give(attn_cl_runtime *rt, attn_cl_buf *b, int keep);

/* Releases every idle buffer; returns how many. */
size_t attn_cl_pool_trim(attn_cl_runtime *rt);

/* Counters for tests and tools: buffers created since the runtime
 * started, and idle now with their bytes. */
typedef struct attn_cl_pool_stats {
    unsigned long created, reused;
    size_t idle, idle_bytes;
} attn_cl_pool_stats;
void attn_cl_pool_stats_get(attn_cl_runtime *rt, attn_cl_pool_stats *out);

#endif /* ATTN_OPENCL_POOL_H */
