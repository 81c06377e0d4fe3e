/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward pass of the attention on an OpenCL device (bwd_cl.c): its
 * kernel variants, their choice for a shape and one call on host memory.
 * The backward variants have a table of their own beside the forward's
 * (variants.c): they take other tensors and launch other kernels, and
 * neither table's choice ever sees the other's records.  attn_kernel_name
 * names the forward's only (what attn_sdpa_kernel answers from);
 * attn-probe --kernels lists both; either may be named by options.kernel /
 * ATTN_KERNEL: a name forces its own direction only.
 * Not installed.
 */
#ifndef ATTN_OPENCL_BWD_CL_H
#define ATTN_OPENCL_BWD_CL_H

#include "core/backend.h"
#include "opencl/runtime.h"
#include "opencl/sdpa_cl.h"

typedef struct attn_cl_bwd_variant {
    const char *name;    /* options.kernel, ATTN_KERNEL */
    const char *summary; /* one line for attn-probe and the docs */
    attn_path path;      /* the options.path that takes it first */
    int universal;       /* takes every shape the others take: last resort */
} attn_cl_bwd_variant;

extern const attn_cl_bwd_variant attn_cl_bwd_variants[];
extern const int attn_cl_n_bwd_variants;

/* The index of the backward variant called name (case-insensitive), or
 * -1. */
int attn_cl_bwd_find(const char *name);

/* Chooses the backward variant for d (validated, keep and kv_start merged
 * into the bias, no q_start) on rt as rt->choice says (bwd_forced, path;
 * the universal one last) and builds its program; grads: ATTN_BWD_* flags
 * (core/backend.h; no variant takes one yet).  The prepared state stays valid
 * while rt lives.  Errors: ATTN_ERR_UNSUPPORTED (no variant takes d; the forced
 * one does not), ATTN_ERR_BUILD_FAILED, ATTN_ERR_DEVICE,
 * ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_bwd_prepare(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                unsigned grads, attn_prepared *out,
                                attn_err *err);

/* One backward call of d on host memory g (lse as the kernels take it: a
 * row that must add nothing holds -INFINITY) with prepared state p: the
 * tensors are copied to the device, the variant's kernels run, and dq, dk
 * and dv are written only when every command succeeded.  Errors:
 * ATTN_ERR_OUT_OF_MEMORY (device or host memory), ATTN_ERR_DEVICE. */
attn_status attn_cl_bwd_run(attn_cl_runtime *rt, const attn_prepared *p,
                            const attn_sdpa_desc *d, const attn_sdpa_grad *g,
                            attn_err *err);

/* Moves b, the buffers of a packed call, to its sequence item (one
 * sequence of it, attn_varlen_item) whose rows start at packed row q0 of
 * the queries and k0 of the keys: each offset past those rows in the
 * item's strides, lse at row q0 of [heads_q, total_q]. */
void attn_cl_bwd_bufs_at(attn_cl_bwd_bufs *b, const attn_sdpa_desc *item,
                         size_t q0, size_t k0, size_t total_q);

/* The n items of one backward call on the caller's buffers, enqueued on
 * queue after the n_wait events of wait, one after the other behind one
 * gate (launch_common.h): tensors that are not dense at offset 0 are
 * gathered into dense device copies first and the gradients scattered
 * back; *done (when not NULL) receives the last command's event.  Never
 * blocks.  The buffers were checked (sizes, context, overlaps).  On error
 * nothing that was enqueued writes the outputs and *done is untouched.
 * Errors: ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_DEVICE. */
attn_status attn_cl_bwd_enqueue(attn_cl_runtime *rt, int n,
                                const attn_cl_bwd_item *items,
                                cl_command_queue queue, cl_uint n_wait,
                                const cl_event *wait, cl_event *done,
                                attn_err *err);

/* The cl/ files of the backward programs, in build order: the first
 * ATTN_CL_BWD_N_SOURCES make bwd_ref's and bwd_fused's program, all
 * ATTN_CL_BWD_TILED_N_SOURCES bwd_tiled's (its kernels after theirs). */
extern const char *const attn_cl_bwd_sources[];
#define ATTN_CL_BWD_N_SOURCES       2
#define ATTN_CL_BWD_TILED_N_SOURCES 3
/* The build options of the backward program for dtype and head sizes hd,
 * hv, bwd_tiled's (tiled 1: its tiles added) or the others' (0), before
 * program.c adds -cl-std; returns what snprintf returns. */
int attn_cl_bwd_options(attn_dtype dtype, int hd, int hv, int tiled, char *buf,
                        size_t cap);

/* Whether rt forces a backward variant by name. */
int attn_cl_bwd_forced(attn_cl_runtime *rt);

#endif /* ATTN_OPENCL_BWD_CL_H */
