/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test hooks on a context (declared in src/opencl/fault.h): compiled only
 * into builds with ATTN_FAULT_INJECTION, for tests/opencl/test_faults.c
 * and test_pool.c.
 */
#include "api/context.h"
#include "opencl/fault.h"
#include "opencl/opencl_backend.h"

attn_status attn_fault_set_mem_limits(attn_context *ctx, int device,
                                      uint64_t global_mem, uint64_t max_alloc)
{
    if (!ctx)
        return ATTN_ERR_INVALID_ARGUMENT;
    return attn_opencl_set_mem_limits(ctx->backend, device, global_mem,
                                      max_alloc);
}

size_t attn_fault_trim(attn_context *ctx)
{
    return ctx ? attn_opencl_trim(ctx->backend) : 0;
}

void attn_fault_counts(attn_context *ctx, unsigned long *created,
                       unsigned long *reused, unsigned long *plans_made,
                       unsigned long *plans_hit)
{
    attn_opencl_pool_counts(ctx->backend, created, reused);
    attn_plan_stats(ctx->plans, plans_made, plans_hit);
}
