/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plan layer: what a call of a given shape runs as, fixed once per
 * shape and kept per context.  For a device backend a plan is the call cut
 * into groups over every queue of every device (the scheduler's split, in
 * proportion to the devices' speed) with the kernel variant each group
 * runs prepared on its device (chosen, built, fitted, its launch geometry
 * and device memory known); the layer's plan is the attention step's
 * variant on each device, and a call on the caller's buffers the variant on
 * the primary device.  A repeated shape finds its plan in the cache
 * and does no planning: no variant choice, no split, no program lookup.
 *
 * Shapes are told apart by everything in the descriptor but the tensor
 * pointers (sizes, score, dtype, mask kind, and whether kv_len / bias /
 * additive weights are given); a plan is made again when the backend's
 * tuning changed since (its epoch).  The cache keeps the most recently
 * used plans (ATTN_PLAN_CACHE_MAX).  Thread-safe: calls on several
 * threads share it.  Not installed.
 */
#ifndef ATTN_PLAN_H
#define ATTN_PLAN_H

#include "sched/sched.h"

#define ATTN_PLAN_CACHE_MAX 32

typedef struct attn_plan_cache attn_plan_cache;

/* A plan in use: hand it back with attn_plan_release. */
typedef struct attn_plan attn_plan;

attn_status attn_plan_cache_new(attn_plan_cache **out, attn_err *err);
/* Frees the cache and its plans; none may be in use.  NULL is a no-op. */
void attn_plan_cache_free(attn_plan_cache *pc);

/* The work of d (validated) on device backend b, from the cache or made
 * now.  *work points into *out, valid until attn_plan_release.  A group
 * whose variant could not be made is in the plan with its status (the
 * scheduler then fails its device).  Errors: ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_INVALID_ARGUMENT. */
attn_status attn_plan_sdpa(attn_plan_cache *pc, attn_backend *b,
                           const attn_sdpa_desc *d, attn_plan **out,
                           const attn_work **work, attn_err *err);

/* The variant of the whole call sd on each device of device backend b
 * (no split): the multi-head layer's attention step, attn_sdpa_cl. */
attn_status attn_plan_devices(attn_plan_cache *pc, attn_backend *b,
                              const attn_sdpa_desc *sd, attn_plan **out,
                              const attn_dev_work **work, attn_err *err);

/* The backward variant of call d (validated; keep and kv_start merged
 * into the bias) on the first device of device backend b, asking grads
 * (ATTN_BWD_* flags): *work->p[0] and its status *work->prep[0] (why in
 * work->why[0]), from the cache or made now (attn_backward_sdpa's
 * plan).  Errors: ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_INVALID_ARGUMENT (b
 * has no backward on a device). */
attn_status attn_plan_backward(attn_plan_cache *pc, attn_backend *b,
                               const attn_sdpa_desc *d, unsigned grads,
                               attn_plan **out, const attn_dev_work **work,
                               attn_err *err);

/* The name of the variant the plan of d gives its first group (what runs
 * the call) into name (cap bytes; NULL: not asked) and the precision it
 * computes at into *precision (NULL: not asked; written only on success).
 * Errors as attn_plan_sdpa, and the first group's when its variant could
 * not be made. */
attn_status attn_plan_variant(attn_plan_cache *pc, attn_backend *b,
                              const attn_sdpa_desc *d, char *name, size_t cap,
                              attn_precision *precision, attn_err *err);

void attn_plan_release(attn_plan_cache *pc, attn_plan *p);

/* Counters for tests: plans made, and calls that found theirs. */
void attn_plan_stats(attn_plan_cache *pc, unsigned long *made,
                     unsigned long *hits);

#endif /* ATTN_PLAN_H */
