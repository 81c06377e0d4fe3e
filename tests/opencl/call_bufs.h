/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Buffers of one embedding-API call for tests/opencl/test_embed.c: each
 * tensor at its offset inside a device buffer between guard regions, and
 * the checks that read them back (inputs unchanged, guards intact, O and
 * lse right against the reference oracle).
 */
#ifndef ATTN_TEST_CALL_BUFS_H
#define ATTN_TEST_CALL_BUFS_H

#include "attn/attn_cl.h"
#include "cases.h"

/* A device buffer of off + n + guard elements of es bytes: a guard byte
 * everywhere except the n elements at off, which hold data (or 0xff, NaN in
 * float and half, when there is none). */
typedef struct guarded {
    cl_mem mem;
    unsigned char *image; /* what was written, to compare against */
    size_t off, n, es, bytes;
} guarded;

/* The buffers of one call on case c. */
typedef struct call_bufs {
    guarded q, k, v, o, lse;
    attn_cl_buffers b;
} call_bufs;

/* Releases the buffers of cb, also when call_bufs_make failed half-way. */
void call_bufs_free(call_bufs *cb);

/* Creates the buffers of case c on context: off holds the element offsets
 * of q, k, v, o, lse; guard the elements after each; lse only with
 * with_lse.  Fills cb->b for the call.  Returns 0, or -1 with nothing
 * left allocated. */
int call_bufs_make(call_bufs *cb, cl_context context, const sdpa_case *c,
                   const size_t off[5], size_t guard, int with_lse);

/* Reads everything back on q and checks: inputs unchanged, guards intact,
 * O and lse right (ref; what names the case in messages).  Returns 1 when
 * all holds. */
int call_bufs_check(const call_bufs *cb, const sdpa_case *c,
                    const ref_sdpa_result *ref, cl_command_queue q,
                    const char *what);

/* 1 when o still holds what call_bufs_make wrote (read on q). */
int call_bufs_untouched(const call_bufs *cb, cl_command_queue q);

#endif /* ATTN_TEST_CALL_BUFS_H */
