/*
 * The scheduler's pure part: a call's (batch, head) work cut into groups
 * for several command queues and devices.  Not installed; no OpenCL types.
 *
 * The unit of work is one batch item and one kv head with the query heads
 * that read it (heads_q / heads_kv of them).  Units in (batch, kv head)
 * order are contiguous in every tensor of the DESIGN.md layouts (q, k, v,
 * o and lse), so a run of units is one slice of each tensor.  A group is a
 * run of units that a descriptor can express: whole batch items, or kv
 * heads of one batch item.
 */
#ifndef ATTN_SCHED_H
#define ATTN_SCHED_H

#include "attn_impl.h"

#define ATTN_SCHED_MAX_SLOTS 64

typedef struct attn_group {
    attn_sdpa_desc d; /* the sub-call; mask and weight pointers shifted */
    int slot;         /* which queue (of which device) runs it */
    size_t q_off, k_off, v_off, o_off, lse_off; /* element offsets */
    size_t q_len, k_len, v_len, o_len, lse_len; /* elements */
} attn_group;

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

#endif /* ATTN_SCHED_H */
