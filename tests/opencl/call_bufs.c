/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guarded device buffers for the embedding-API suite (call_bufs.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call_bufs.h"

#define GUARD_BYTE 0x5a
#define UNSET_BYTE 0xff /* NaN in float and half */

static int guarded_make(guarded *g, cl_context context, const void *data,
                        size_t off, size_t n, size_t es, size_t guard)
{
    cl_int rc;
    memset(g, 0, sizeof *g);
    g->off = off;
    g->n = n;
    g->es = es;
    g->bytes = (off + n + guard) * es;
    if (!(g->image = malloc(g->bytes)))
        return -1;
    memset(g->image, GUARD_BYTE, g->bytes);
    if (data)
        memcpy(g->image + off * es, data, n * es);
    else
        memset(g->image + off * es, UNSET_BYTE, n * es);
    g->mem = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                            g->bytes, g->image, &rc);
    if (rc != CL_SUCCESS) {
        free(g->image);
        g->image = NULL;
        g->mem = NULL;
        return -1;
    }
    return 0;
}

static void guarded_free(guarded *g)
{
    if (g->mem)
        clReleaseMemObject(g->mem);
    free(g->image);
    memset(g, 0, sizeof *g);
}

/* The buffer's contents now (malloc'd), read on q. */
static unsigned char *guarded_read(const guarded *g, cl_command_queue q)
{
    unsigned char *p = malloc(g->bytes);
    if (p && clEnqueueReadBuffer(q, g->mem, CL_TRUE, 0, g->bytes, p, 0, NULL,
                                 NULL) != CL_SUCCESS) {
        free(p);
        p = NULL;
    }
    return p;
}

/* 1 when everything outside the tensor (and, with whole, the tensor too)
 * is as written. */
static int guarded_intact(const guarded *g, const unsigned char *now, int whole)
{
    size_t a = g->off * g->es, b = (g->off + g->n) * g->es;
    if (whole)
        return memcmp(now, g->image, g->bytes) == 0;
    return memcmp(now, g->image, a) == 0 &&
           memcmp(now + b, g->image + b, g->bytes - b) == 0;
}

void call_bufs_free(call_bufs *cb)
{
    guarded_free(&cb->q);
    guarded_free(&cb->k);
    guarded_free(&cb->v);
    guarded_free(&cb->o);
    guarded_free(&cb->lse);
}

/* off: element offsets of q, k, v, o, lse; guard: elements after each. */
int call_bufs_make(call_bufs *cb, cl_context context, const sdpa_case *c,
                   const size_t off[5], size_t guard, int with_lse)
{
    size_t es = c->d.dtype == ATTN_F32 ? 4 : 2;
    memset(cb, 0, sizeof *cb);
    if (guarded_make(&cb->q, context, c->q, off[0], c->nq, es, guard) ||
        guarded_make(&cb->k, context, c->k, off[1], c->nk, es, guard) ||
        guarded_make(&cb->v, context, c->v, off[2], c->nv, es, guard) ||
        guarded_make(&cb->o, context, NULL, off[3], c->no, es, guard) ||
        (with_lse && guarded_make(&cb->lse, context, NULL, off[4], c->nlse,
                                  sizeof(float), guard))) {
        call_bufs_free(cb);
        return -1;
    }
    cb->b.q = cb->q.mem;
    cb->b.k = cb->k.mem;
    cb->b.v = cb->v.mem;
    cb->b.o = cb->o.mem;
    cb->b.lse = cb->lse.mem;
    cb->b.q_offset = off[0];
    cb->b.k_offset = off[1];
    cb->b.v_offset = off[2];
    cb->b.o_offset = off[3];
    cb->b.lse_offset = off[4];
    return 0;
}

/* Reads everything back on q and checks: inputs unchanged, guards intact,
 * O and lse right.  Returns 1 when all holds. */
int call_bufs_check(const call_bufs *cb, const sdpa_case *c,
                    const ref_sdpa_result *ref, cl_command_queue q,
                    const char *what)
{
    unsigned char *qq = guarded_read(&cb->q, q), *kk = guarded_read(&cb->k, q);
    unsigned char *vv = guarded_read(&cb->v, q), *oo = guarded_read(&cb->o, q);
    unsigned char *ll = cb->lse.mem ? guarded_read(&cb->lse, q) : NULL;
    int ok = qq && kk && vv && oo && (ll || !cb->lse.mem);
    if (!ok) {
        printf("\n  %s: cannot read the buffers back\n", what);
    } else {
        if (!guarded_intact(&cb->q, qq, 1) || !guarded_intact(&cb->k, kk, 1) ||
            !guarded_intact(&cb->v, vv, 1)) {
            printf("\n  %s: an input buffer changed\n", what);
            ok = 0;
        }
        if (!guarded_intact(&cb->o, oo, 0) ||
            (ll && !guarded_intact(&cb->lse, ll, 0))) {
            printf("\n  %s: written outside o or lse\n", what);
            ok = 0;
        }
        if (!ref_check_sdpa(
                what, &c->d, ref, oo + cb->o.off * cb->o.es,
                ll ? (const float *)(const void *)(ll + cb->lse.off * 4) : NULL,
                NULL))
            ok = 0;
    }
    free(qq);
    free(kk);
    free(vv);
    free(oo);
    free(ll);
    return ok;
}

int call_bufs_untouched(const call_bufs *cb, cl_command_queue q)
{
    unsigned char *oo = guarded_read(&cb->o, q);
    int ok = oo && guarded_intact(&cb->o, oo, 1);
    free(oo);
    return ok;
}
