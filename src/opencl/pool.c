/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A device's pool of reusable buffers (pool.h).
 */
#include <stdlib.h>
#include <string.h>

#include "opencl/pool.h"

#define BUDGET_MAX     ((uint64_t)1 << 30)
#define BUDGET_UNIFIED ((uint64_t)32 << 20)
#define IDLE_MAX       64 /* idle buffers kept, at most */

struct attn_cl_pool {
    pthread_mutex_t lock;
    /* Maps and unmaps pinned buffers: a queue of its own, so that a map
     * never waits behind the calls' commands (reads held back by a gate
     * until every read is enqueued would never let it through). */
    cl_command_queue maps;
    attn_cl_buf idle[IDLE_MAX]; /* oldest first */
    size_t n_idle, idle_bytes;
    uint64_t budget;
    attn_cl_pool_stats stats;
};

attn_status attn_cl_pool_create(attn_cl_runtime *rt, attn_err *err)
{
    struct attn_cl_pool *p = calloc(1, sizeof *p);
    uint64_t global_mem = 0, max_alloc = 0;
    if (!p || pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the buffer pool");
    }
    attn_cl_mem_limits(rt, &global_mem, &max_alloc);
    p->budget = global_mem / 4 < BUDGET_MAX ? global_mem / 4 : BUDGET_MAX;
    p->maps = NULL;
    if (rt->info.unified_memory && p->budget > BUDGET_UNIFIED)
        p->budget = BUDGET_UNIFIED;
    rt->pool = p;
    return ATTN_OK;
}

static void release(attn_cl_runtime *rt, attn_cl_buf *b)
{
    if (b->host)
        clEnqueueUnmapMemObject(rt->pool->maps, b->mem, b->host, 0, NULL, NULL);
    if (b->mem)
        clReleaseMemObject(b->mem);
    memset(b, 0, sizeof *b);
}

/* Releases idle buffers, oldest first, until `keep` bytes or fewer stay.
 * pool->lock held; returns how many went. */
static size_t shrink(attn_cl_runtime *rt, struct attn_cl_pool *p, size_t keep)
{
    size_t n = 0;
    while (p->n_idle > 0 && p->idle_bytes > keep) {
        attn_cl_buf b = p->idle[0];
        memmove(&p->idle[0], &p->idle[1], (p->n_idle - 1) * sizeof b);
        p->n_idle--;
        p->idle_bytes -= b.bytes;
        release(rt, &b);
        n++;
    }
    return n;
}

void attn_cl_pool_destroy(attn_cl_runtime *rt)
{
    struct attn_cl_pool *p = rt->pool;
    if (!p)
        return;
    shrink(rt, p, 0);
    if (p->maps) {
        clFinish(p->maps);
        clReleaseCommandQueue(p->maps);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
    rt->pool = NULL;
}

size_t attn_cl_pool_trim(attn_cl_runtime *rt)
{
    struct attn_cl_pool *p = rt->pool;
    size_t n;
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    n = shrink(rt, p, 0);
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* A new buffer; *rc its status. */
static void create(attn_cl_runtime *rt, size_t bytes, attn_cl_buf_kind kind,
                   attn_cl_buf *b, cl_int *rc)
{
    memset(b, 0, sizeof *b);
    b->mem = ATTN_CL(clCreateBuffer)(
        rt->context,
        kind == ATTN_CL_BUF_PINNED ? CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR
                                   : CL_MEM_READ_WRITE,
        bytes, NULL, rc);
    if (*rc != CL_SUCCESS) {
        b->mem = NULL;
        return;
    }
    b->bytes = bytes;
    b->kind = kind;
    b->fresh = 1;
    if (kind == ATTN_CL_BUF_PINNED) {
        struct attn_cl_pool *p = rt->pool;
        pthread_mutex_lock(&p->lock);
        if (!p->maps)
            p->maps = clCreateCommandQueue(rt->context, rt->device, 0, rc);
        pthread_mutex_unlock(&p->lock);
        if (!p->maps) {
            release(rt, b);
            return;
        }
        b->host = clEnqueueMapBuffer(p->maps, b->mem, CL_TRUE,
                                     CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0,
                                     NULL, NULL, rc);
        if (*rc != CL_SUCCESS) {
            b->host = NULL;
            release(rt, b);
        }
    }
}

attn_status attn_cl_pool_take(attn_cl_runtime *rt, size_t bytes,
                              attn_cl_buf_kind kind, const char *what,
                              attn_cl_buf *out, attn_err *err)
{
    struct attn_cl_pool *p = rt->pool;
    size_t best = (size_t)-1;
    cl_int rc;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&p->lock);
    /* The smallest idle buffer of the kind that holds bytes, within 2x. */
    for (size_t i = 0; i < p->n_idle; i++) {
        const attn_cl_buf *b = &p->idle[i];
        if (b->kind == kind && b->bytes >= bytes && b->bytes / 2 <= bytes &&
            (best == (size_t)-1 || b->bytes < p->idle[best].bytes))
            best = i;
    }
    if (best != (size_t)-1) {
        *out = p->idle[best];
        memmove(&p->idle[best], &p->idle[best + 1],
                (p->n_idle - best - 1) * sizeof *out);
        p->n_idle--;
        p->idle_bytes -= out->bytes;
        p->stats.reused++;
        pthread_mutex_unlock(&p->lock);
        out->fresh = 0;
        return ATTN_OK;
    }
    pthread_mutex_unlock(&p->lock);
    create(rt, bytes, kind, out, &rc);
    /* Memory pressure: the idle buffers go, then one more try. */
    if (rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_RESOURCES) {
        if (attn_cl_pool_trim(rt) > 0)
            create(rt, bytes, kind, out, &rc);
    }
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "cannot allocate %s on %s (%zu bytes): %s", what,
                         rt->info.name, bytes, attn_cl_error_name(rc));
    pthread_mutex_lock(&p->lock);
    p->stats.created++;
    pthread_mutex_unlock(&p->lock);
    return ATTN_OK;
}

void attn_cl_pool_give(attn_cl_runtime *rt, attn_cl_buf *b, int keep)
{
    struct attn_cl_pool *p = rt->pool;
    if (!b->mem)
        return;
    if (!keep && b->fresh) {
        release(rt, b);
        return;
    }
    pthread_mutex_lock(&p->lock);
    if (p->n_idle == IDLE_MAX)
        shrink(rt, p, p->idle_bytes - p->idle[0].bytes);
    b->fresh = 0;
    p->idle[p->n_idle++] = *b;
    p->idle_bytes += b->bytes;
    if (p->idle_bytes > p->budget)
        shrink(rt, p, (size_t)p->budget);
    pthread_mutex_unlock(&p->lock);
    memset(b, 0, sizeof *b);
}

void attn_cl_pool_stats_get(attn_cl_runtime *rt, attn_cl_pool_stats *out)
{
    struct attn_cl_pool *p = rt->pool;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    *out = p->stats;
    out->idle = p->n_idle;
    out->idle_bytes = p->idle_bytes;
    pthread_mutex_unlock(&p->lock);
}
