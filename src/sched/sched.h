/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler: runs a call on the backend a context chose, over every
 * command queue of every device of a device backend, moving the work of a
 * device that fails to the devices left, and to the native backend when
 * no device is left and fallback is allowed.  It drives a device backend
 * through the interface of core/backend.h (attn_exec_ops) and never
 * branches on vendor.  Not installed.
 *
 * The unit of work is one batch item and one kv head with the query heads
 * that read it (heads_q / heads_kv of them).  Units in (batch, kv head)
 * order are contiguous in every tensor of the DESIGN.md layouts (q, k, v,
 * o and lse), so a run of units is one slice of each tensor.  A group is a
 * run of units that a descriptor can express: whole batch items, or kv
 * heads of one batch item.  The plan (src/plan) cuts a call into groups
 * (attn_sched_split) and prepares each on its device once per shape.
 */
#ifndef ATTN_SCHED_H
#define ATTN_SCHED_H

#include "core/backend.h"

#define ATTN_SCHED_MAX_SLOTS 64

/* ---- cutting a call into groups (split.c) -------------------------------- */

/* Cuts d (validated) over n_slots slots whose speeds are in weights (any
 * positive scale; NULL = equal): slot s gets a run of units in proportion
 * to its weight, cut into groups at batch boundaries.  Writes at most
 * max_groups groups into out and their count into *n.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (n_slots outside [1, ATTN_SCHED_MAX_SLOTS], a
 * weight that is not positive), ATTN_ERR_OUT_OF_MEMORY (max_groups too
 * small: attn_sched_max_groups tells the size needed). */
attn_status attn_sched_split(const attn_sdpa_desc *d, int n_slots,
                             const double *weights, attn_group *out,
                             size_t max_groups, size_t *n, attn_err *err);

/* An upper bound of the groups attn_sched_split makes. */
size_t attn_sched_max_groups(const attn_sdpa_desc *d, int n_slots);

/* Points g's descriptor at the arrays of call d and takes its scale: a
 * group kept in a plan was cut from another call of the same shape, whose
 * arrays may be gone (the shape of a call is everything but its pointers
 * and its scale). */
void attn_sched_rebase(attn_group *g, const attn_sdpa_desc *d);

/* ---- what the scheduler runs (made by the plan) -------------------------- */

/* One group and the variant prepared for it on its slot's device. */
typedef struct attn_sched_group {
    attn_group g;
    attn_prepared p;
    attn_status prep;           /* ATTN_OK, or why p could not be made */
    char why[ATTN_MSG_MAX / 2]; /* ... in a sentence */
} attn_sched_group;

/* The work of one shape on a device backend: its slots (queues of
 * devices) and groups. */
typedef struct attn_work {
    int n_slots;
    int slot_dev[ATTN_SCHED_MAX_SLOTS];
    int slot_queue[ATTN_SCHED_MAX_SLOTS];
    size_t n;
    attn_sched_group *g;
} attn_work;

/* The slots of device backend b: every queue of every device, with the
 * share of work each gets (weights[ATTN_SCHED_MAX_SLOTS]). */
void attn_sched_slots(const attn_backend *b, attn_work *w, double *weights);

/* The variant of a whole (unsplit) call on each device of a device
 * backend: the multi-head layer's attention step, attn_sdpa_cl. */
#define ATTN_SCHED_MAX_DEVICES 16
typedef struct attn_dev_work {
    int n_dev;
    attn_prepared p[ATTN_SCHED_MAX_DEVICES];
    attn_status prep[ATTN_SCHED_MAX_DEVICES];
    char why[ATTN_SCHED_MAX_DEVICES][ATTN_MSG_MAX / 2];
} attn_dev_work;

/* ---- running (run.c) ---------------------------------------------------- */

/* Who runs a context's calls. */
typedef struct attn_runner {
    attn_backend *backend; /* runs the work */
    attn_backend *native;  /* the fallback; == backend on the native path */
    int allow_fallback;
    int forced; /* a kernel variant is forced by name (options.kernel) */
    const attn_logger *log;
} attn_runner;

/* Runs call c: on a device backend the work w of its shape (w NULL: the
 * backend runs the call whole), else natively.  o and lse are written only
 * by a call that succeeds.  When the call fell back to the native backend
 * (logged), or completed on the devices left after some failed,
 * fell_back (fell_cap bytes) receives the sentence that says so; else it
 * is "".  Errors: the backend's (the first device failure when
 * every device failed and fallback is off or not allowed for it). */
attn_status attn_sched_sdpa(const attn_runner *r, const attn_work *w,
                            const attn_sdpa_call *c, char *fell_back,
                            size_t fell_cap, attn_err *err);

/* The multi-head layer c: on the first device of the backend's that
 * completes it (w gives each device's attention variant), else natively
 * under the same rules as attn_sched_sdpa. */
attn_status attn_sched_mha(const attn_runner *r, const attn_dev_work *w,
                           const attn_mha_call *c, char *fell_back,
                           size_t fell_cap, attn_err *err);

#endif /* ATTN_SCHED_H */
