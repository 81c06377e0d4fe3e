/* SPDX-License-Identifier: Apache-2.0 */
/* Cutting a call into groups of (batch, kv head) units: see sched.h. */
#include <string.h>

#include "sched/sched.h"

void attn_sched_rebase(attn_group *g, const attn_sdpa_desc *d)
{
    g->d.scale = d->scale;
    g->d.mask.bias = d->mask.bias ? d->mask.bias + g->bias_off : NULL;
    g->d.mask.kv_len = d->mask.kv_len ? d->mask.kv_len + g->kv_len_off : NULL;
    g->d.additive_w = d->additive_w ? d->additive_w + g->addw_off : NULL;
}

void attn_sched_slots(const attn_backend *b, attn_work *w, double *weights)
{
    const attn_exec_ops *x = b->ops->exec;
    const int n_dev = x->n_devices(b);
    /* Every device gets a slot: past ATTN_SCHED_MAX_SLOTS in all, each
     * uses at most its share of them (its first queues). */
    int total = 0, cap;
    for (int i = 0; i < n_dev; i++)
        total += x->n_queues(b, i);
    cap = total > ATTN_SCHED_MAX_SLOTS && n_dev > 0
              ? ATTN_SCHED_MAX_SLOTS / n_dev
              : ATTN_SCHED_MAX_SLOTS;
    if (cap < 1)
        cap = 1;
    w->n_slots = 0;
    for (int i = 0; i < n_dev; i++) {
        const int nq = x->n_queues(b, i) < cap ? x->n_queues(b, i) : cap;
        for (int j = 0; j < nq && w->n_slots < ATTN_SCHED_MAX_SLOTS; j++) {
            w->slot_dev[w->n_slots] = i;
            w->slot_queue[w->n_slots] = j;
            weights[w->n_slots] = x->weight(b, i) / nq;
            w->n_slots++;
        }
    }
}

size_t attn_sched_max_groups(const attn_sdpa_desc *d, int n_slots)
{
    /* A slot's run is at most a partial batch item, whole items and a
     * partial item. */
    (void)d;
    return (size_t)n_slots * 3;
}

/* One group: units [u0, u1), within one batch item or whole items. */
static void make_group(const attn_sdpa_desc *d, size_t u0, size_t u1, int slot,
                       attn_group *g)
{
    size_t hkv = (size_t)d->heads_kv, r = (size_t)(d->heads_q / d->heads_kv);
    size_t sq = (size_t)d->seq_q, dk = (size_t)d->head_dim;
    size_t b0 = u0 / hkv, g0 = u0 % hkv, units = u1 - u0;
    size_t h0 = g0 * r; /* first query head */
    size_t bst[3], qst[3], kst[3], vst[3], ost[3];
    attn_bias_strides(d, bst);
    g->d = *d;
    g->slot = slot;
    g->bias_off = g->kv_len_off = g->addw_off = 0;
    if (g0 == 0 && units % hkv == 0) { /* whole batch items */
        g->d.batch = (int)(units / hkv);
        g->bias_off = b0 * bst[0];
    } else { /* kv heads [g0, g0 + units) of batch item b0 */
        g->d.batch = 1;
        g->d.heads_kv = (int)units;
        g->d.heads_q = (int)(units * r);
        g->bias_off = b0 * bst[0] + h0 * bst[1];
        g->addw_off = h0 * dk;
    }
    g->kv_len_off = b0;
    attn_sched_rebase(g, d);
    /* the tensors at their strides (contiguous by default): the group
     * starts at its first (batch, head) and spans its own extent */
    attn_tensor_strides(d, ATTN_T_Q, qst);
    attn_tensor_strides(d, ATTN_T_K, kst);
    attn_tensor_strides(d, ATTN_T_V, vst);
    attn_tensor_strides(d, ATTN_T_O, ost);
    g->q_off = b0 * qst[0] + h0 * qst[1];
    g->o_off = b0 * ost[0] + h0 * ost[1];
    g->lse_off = u0 * r * sq;
    g->k_off = b0 * kst[0] + g0 * kst[1];
    g->v_off = b0 * vst[0] + g0 * vst[1];
    g->q_len = attn_tensor_extent(&g->d, ATTN_T_Q);
    g->o_len = attn_tensor_extent(&g->d, ATTN_T_O);
    g->lse_len = units * r * sq;
    g->k_len = attn_tensor_extent(&g->d, ATTN_T_K);
    g->v_len = attn_tensor_extent(&g->d, ATTN_T_V);
}

attn_status attn_sched_split(const attn_sdpa_desc *d, int n_slots,
                             const double *weights, attn_group *out,
                             size_t max_groups, size_t *n, attn_err *err)
{
    size_t hkv = (size_t)d->heads_kv, total = (size_t)d->batch * hkv;
    size_t count = 0, u = 0;
    double sum = 0, acc = 0;
    if (n_slots < 1 || n_slots > ATTN_SCHED_MAX_SLOTS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "%d queues: must be in [1, %d]", n_slots,
                         ATTN_SCHED_MAX_SLOTS);
    for (int s = 0; s < n_slots; s++) {
        double w = weights ? weights[s] : 1.0;
        if (!(w > 0))
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "queue weight %d is not positive", s);
        sum += w;
    }
    for (int s = 0; s < n_slots && u < total; s++) {
        size_t end;
        acc += weights ? weights[s] : 1.0;
        end = s == n_slots - 1 ? total
                               : (size_t)((double)total * (acc / sum) + 0.5);
        if (end > total)
            end = total;
        while (u < end) {
            /* Whole batch items when the run covers them, else up to the
             * end of this batch item. */
            size_t stop;
            if (u % hkv == 0 && end - u >= hkv)
                stop = u + (end - u) / hkv * hkv;
            else
                stop = (u / hkv + 1) * hkv < end ? (u / hkv + 1) * hkv : end;
            if (count == max_groups)
                return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                                 "more than %zu groups", max_groups);
            make_group(d, u, stop, s, &out[count++]);
            u = stop;
        }
    }
    *n = count;
    return ATTN_OK;
}
