/*
 * The fused attention path (cl/fused.cl): one kernel, one pass over the
 * keys with an online softmax, no score matrix (O(seq) extra memory).
 * Used by the OpenCL backend and the embedding API.  Not installed.
 *
 * Programs: one per dtype (tags "fused_f32", "fused_f16"), built lazily on
 * first use under rt->lock and kept in rt->fused (released by
 * rt->fused_free).  A build failure is kept too: later calls fail fast with
 * the same sentence until the tuning changes.
 */
#ifndef ATTN_OPENCL_SDPA_FUSED_H
#define ATTN_OPENCL_SDPA_FUSED_H

#include "opencl/sdpa_cl.h"

/* Blocking of cl/fused.cl (its -D values).  A work-group of `wg` items
 * takes wg * vw * nv query rows; each item holds its rows in nv vectors of
 * vw lanes (one row per lane).  Keys are visited in tiles of `tk`, scored
 * `kb` at a time; O is accumulated `cb` columns at a time.  Local memory
 * per work-group: 4 * (tk * (head_dim + head_dim_v') + head_dim + wg * vw *
 * nv * (head_dim + head_dim_v')) bytes (head_dim_v' = head_dim_v rounded up
 * to cb, every part to 16 floats) plus 4 * tk. */
typedef struct attn_cl_fused_tuning {
    int vw; /* lanes per vector: 1, 2, 4, 8 or 16 */
    int nv; /* row vectors per item, [1, 16] */
    int wg; /* items per work-group, [1, 1024] */
    int tk; /* keys per tile, [1, 1024], a multiple of kb; tk * vw * nv
               (the private scores of an item) at most 16384 */
    int kb; /* keys per score step, [1, 64] */
    int cb; /* columns of O per aggregation step, [1, 64] */
    char options[128]; /* extra build options, "" or e.g. "-cl-mad-enable",
                          NUL-terminated; the kernel stays right under
                          -cl-fast-relaxed-math */
} attn_cl_fused_tuning;

/* The defaults (tuned on PoCL's CPU device): 16 lanes x 4 vectors per item,
 * one item per work-group, tiles of 64 keys scored 4 at a time, 8 columns
 * of O per step; no extra options. */
void attn_cl_fused_tuning_default(attn_cl_fused_tuning *t);

/* The build options of cl/fused.cl (before attn_cl_build adds -cl-std)
 * for tuning t as fitted to the device, F16 storage when f16 is 1, and
 * fma() for the multiply-adds when fma is 1 (the device has CL_FP_FMA).
 * Returns what snprintf returns. */
int attn_cl_fused_options(const attn_cl_fused_tuning *t, int f16, int fma,
                          char *buf, size_t cap);

/* Sets the tuning of rt's fused programs (for instance from a platform
 * profile) and drops the programs built so far, so that the next call
 * rebuilds them.  Commands already enqueued are not affected.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL, a value outside its range, tk not a
 * multiple of kb, options not NUL-terminated), ATTN_ERR_OUT_OF_MEMORY.
 * Thread-safe (takes rt->lock). */
attn_status attn_cl_fused_set_tuning(attn_cl_runtime *rt,
                                     const attn_cl_fused_tuning *t,
                                     attn_err *err);

/* The fused path on device buffers, with the contract of
 * attn_cl_sdpa_unfused (sdpa_cl.h): d validated by the caller, every
 * feature of DESIGN.md, enqueued on `queue` after the wait list behind a
 * user event, *done = the last command's event (done may be NULL), never
 * blocks; host-side inputs copied at once, temporaries released after
 * enqueueing; on failure nothing enqueued writes o or lse.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_BUILD_FAILED,
 * ATTN_ERR_DEVICE, and ATTN_ERR_UNSUPPORTED when the shape does not fit the
 * device (head_dim / head_dim_v too large for its local memory, sequences
 * within a work-group of INT_MAX) or the device cannot run the kernel at all;
 * the caller may then use the three-kernel path.  Thread-safe. */
attn_status attn_cl_sdpa_fused(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue queue,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err);

#endif /* ATTN_OPENCL_SDPA_FUSED_H */
