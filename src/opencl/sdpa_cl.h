/*
 * The three-kernel attention path (cl/score.cl, cl/softmax.cl,
 * cl/aggregate.cl) on device buffers.  Used by the OpenCL backend and the
 * embedding API.  Not installed.
 *
 * Memory: the scores of a block of query rows live in one temporary float
 * buffer [heads in the block, rows, seq_kv].  Its size is bounded by the
 * score budget: min(CL_DEVICE_MAX_MEM_ALLOC_SIZE / 2, 256 MiB), or the
 * environment variable ATTN_CL_SCORE_BUDGET (a byte count, capped at
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE; meant for tests of the blocked path).  When
 * all query rows do not fit, the call works through blocks of whole heads,
 * or of rows of one head, in turn; at least one row is always processed at
 * a time.
 *
 * Programs: one per dtype, built lazily on first use under rt->lock and kept
 * in rt->launch (released by rt->launch_free).  A build failure is kept too:
 * later calls fail fast with the same sentence until the tuning changes.
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

/* Tile and work-group sizes of the three kernels (the -D values of the
 * cl/ files).  score: SC_TQ x SC_TK tile of S per work-group of SC_WQ x
 * SC_WK items, SC_TD columns of Q/K staged at a time; softmax: SM_WG items
 * per row (a power of two); aggregate: AG_TQ x AG_TV tile of O per
 * AG_WQ x AG_WV items, AG_TJ keys staged at a time.  Each tile must be a
 * multiple of its work-group side.  A device whose limits are smaller gets
 * the work-groups (then the staged depth) halved until they fit. */
typedef struct attn_cl_unfused_tuning {
    int sc_tq, sc_tk, sc_td, sc_wq, sc_wk;
    int sm_wg;
    int ag_tq, ag_tv, ag_tj, ag_wq, ag_wv;
    char options[128]; /* extra build options ("-cl-mad-enable"), may be
                          "", NUL-terminated; the kernels stay right under
                          -cl-fast-relaxed-math */
} attn_cl_unfused_tuning;

/* The defaults: score and aggregate tiles 32 rows x 64 keys / columns on
 * 4 x 16 work-items, depth 16; softmax 64 items; no extra options. */
void attn_cl_unfused_tuning_default(attn_cl_unfused_tuning *t);

/* The build options of score.cl + softmax.cl + aggregate.cl (before
 * attn_cl_build adds -cl-std) for tuning t as fitted to the device, F16
 * storage when f16 is 1.  Returns what snprintf returns. */
int attn_cl_unfused_options(const attn_cl_unfused_tuning *t, int f16, char *buf,
                            size_t cap);

/* Sets the tuning of rt's three-kernel programs (for instance from a
 * platform profile) and drops the programs built so far, so that the next
 * call rebuilds them.  Commands already enqueued are not affected.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL, a size < 1 or > 1024, a tile that is not
 * a multiple of its work-group side, SM_WG not a power of two, options not
 * NUL-terminated),
 * ATTN_ERR_OUT_OF_MEMORY.  Thread-safe (takes rt->lock). */
attn_status attn_cl_unfused_set_tuning(attn_cl_runtime *rt,
                                       const attn_cl_unfused_tuning *t,
                                       attn_err *err);

/* The three-kernel path on device buffers, DESIGN.md layouts (contiguous).
 * d is validated by the caller (its host pointers q/k/v/o are not used).
 * Enqueues on `queue` (in-order or out-of-order: the commands are chained by
 * events) after the wait list and returns the event of the last command in
 * *done (done may be NULL; the caller releases it); never blocks.  Host-side
 * inputs of d (mask.bias, mask.kv_len, additive_w) are copied into device
 * buffers created with CL_MEM_COPY_HOST_PTR, so the caller may free them on
 * return; temporaries are released right after enqueueing (OpenCL keeps
 * them alive until the commands finish).  The commands are held back by a
 * user event until everything is enqueued; on a failure that event is set
 * to an error status, so nothing that was enqueued writes o or lse.
 * Errors (err gets a sentence, *done is NULL): ATTN_ERR_INVALID_ARGUMENT
 * (NULL argument, a buffer too small for its tensor at its offset),
 * ATTN_ERR_OUT_OF_MEMORY (sizes overflow, allocation failed),
 * ATTN_ERR_BUILD_FAILED, ATTN_ERR_UNSUPPORTED (the device cannot run the
 * kernels: work-group or local memory too small, more than INT_MAX rows),
 * ATTN_ERR_DEVICE.  Thread-safe. */
attn_status attn_cl_sdpa_unfused(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                 const attn_cl_tensors *t,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, cl_event *done,
                                 attn_err *err);

#endif /* ATTN_OPENCL_SDPA_CL_H */
