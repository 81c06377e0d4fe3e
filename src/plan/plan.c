/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Plans and their cache (plan.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan/plan.h"

/* The shape class of a call: its descriptor without the pointers. */
typedef struct shape_key {
    int kind;  /* 0 attention, 1 the layer's attention step, 2 backward */
    int grads; /* kind 2: what is asked beyond dq, dk, dv */
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    int score, dtype, causal, window, bias_kind, causal_align;
    int64_t causal_offset;
    int bias_shape[3]; /* BROADCAST only (0 otherwise) */
    int has_keep, keep_shape[3];
    int has_kv_len, has_bias, has_addw;
    int64_t strides[4][3]; /* q, k, v, o as given (0s: contiguous) */
} shape_key;

struct attn_plan {
    shape_key key;
    unsigned epoch;
    const attn_backend *b;
    unsigned long used; /* last use, for eviction */
    int refs;
    int cached; /* in the cache (else freed when released) */
    attn_work work;
    attn_dev_work mha;
    char variant[32];
};

struct attn_plan_cache {
    pthread_mutex_t lock;
    attn_plan *p[ATTN_PLAN_CACHE_MAX];
    unsigned long clock, made, hits;
};

static void key_of(const attn_sdpa_desc *d, int kind, shape_key *k)
{
    memset(k, 0, sizeof *k);
    k->kind = kind;
    k->batch = d->batch;
    k->heads_q = d->heads_q;
    k->heads_kv = d->heads_kv;
    k->seq_q = d->seq_q;
    k->seq_kv = d->seq_kv;
    k->head_dim = d->head_dim;
    k->head_dim_v = d->head_dim_v;
    k->score = (int)d->score;
    k->dtype = (int)d->dtype;
    k->causal = d->mask.causal;
    k->window = d->mask.window;
    k->causal_align = (int)d->causal_align;
    k->causal_offset = d->causal_offset;
    k->bias_kind = (int)d->mask.bias_kind;
    k->has_keep = d->keep != NULL;
    if (d->keep)
        memcpy(k->keep_shape, d->keep_shape, sizeof k->keep_shape);
    if (d->mask.bias_kind == ATTN_BIAS_BROADCAST)
        memcpy(k->bias_shape, d->bias_shape, sizeof k->bias_shape);
    k->has_kv_len = d->mask.kv_len != NULL;
    k->has_bias = d->mask.bias != NULL;
    k->has_addw = d->additive_w != NULL;
    memcpy(k->strides[0], d->q_strides, sizeof k->strides[0]);
    memcpy(k->strides[1], d->k_strides, sizeof k->strides[1]);
    memcpy(k->strides[2], d->v_strides, sizeof k->strides[2]);
    memcpy(k->strides[3], d->o_strides, sizeof k->strides[3]);
}

attn_status attn_plan_cache_new(attn_plan_cache **out, attn_err *err)
{
    attn_plan_cache *pc = calloc(1, sizeof *pc);
    if (!pc || pthread_mutex_init(&pc->lock, NULL) != 0) {
        free(pc);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the plan cache");
    }
    *out = pc;
    return ATTN_OK;
}

static void plan_free(attn_plan *p)
{
    if (!p)
        return;
    free(p->work.g);
    free(p);
}

void attn_plan_cache_free(attn_plan_cache *pc)
{
    if (!pc)
        return;
    for (int i = 0; i < ATTN_PLAN_CACHE_MAX; i++)
        plan_free(pc->p[i]);
    pthread_mutex_destroy(&pc->lock);
    free(pc);
}

/* A cached plan of key k on b at epoch e, taken (refs + 1); NULL. */
static attn_plan *lookup(attn_plan_cache *pc, const attn_backend *b,
                         const shape_key *k, unsigned e)
{
    attn_plan *found = NULL;
    pthread_mutex_lock(&pc->lock);
    for (int i = 0; i < ATTN_PLAN_CACHE_MAX && !found; i++) {
        attn_plan *p = pc->p[i];
        if (p && p->b == b && p->epoch == e && !memcmp(&p->key, k, sizeof *k))
            found = p;
    }
    if (found) {
        found->refs++;
        found->used = ++pc->clock;
        pc->hits++;
    }
    pthread_mutex_unlock(&pc->lock);
    return found;
}

/* Keeps new plan p (taken by the caller) in the cache when a slot is free
 * or holds an unused plan (the least recently used goes). */
static void insert(attn_plan_cache *pc, attn_plan *p)
{
    int slot = -1;
    pthread_mutex_lock(&pc->lock);
    pc->made++;
    p->refs = 1;
    p->used = ++pc->clock;
    for (int i = 0; i < ATTN_PLAN_CACHE_MAX && slot < 0; i++)
        if (!pc->p[i])
            slot = i;
    /* Full: the least recently used plan no call holds goes. */
    if (slot < 0)
        for (int i = 0; i < ATTN_PLAN_CACHE_MAX; i++) {
            attn_plan *q = pc->p[i];
            if (q->refs == 0 && (slot < 0 || q->used < pc->p[slot]->used))
                slot = i;
        }
    if (slot >= 0) {
        if (pc->p[slot])
            plan_free(pc->p[slot]);
        pc->p[slot] = p;
        p->cached = 1;
    }
    pthread_mutex_unlock(&pc->lock);
}

void attn_plan_release(attn_plan_cache *pc, attn_plan *p)
{
    int drop;
    if (!p)
        return;
    pthread_mutex_lock(&pc->lock);
    drop = --p->refs == 0 && !p->cached;
    pthread_mutex_unlock(&pc->lock);
    if (drop)
        plan_free(p);
}

/* A new plan of b for shape k at epoch e, its work still to be made;
 * NULL with err set when out of memory. */
static attn_plan *plan_new(attn_backend *b, const shape_key *k, unsigned e,
                           attn_err *err)
{
    attn_plan *p = calloc(1, sizeof *p);
    if (!p) {
        attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "cannot allocate a plan");
        return NULL;
    }
    p->key = *k;
    p->epoch = e;
    p->b = b;
    return p;
}

/* Cuts d into groups over b's slots and prepares each on its device. */
static attn_status make_work(attn_backend *b, const attn_sdpa_desc *d,
                             attn_work *w, attn_err *err)
{
    const attn_exec_ops *x = b->ops->exec;
    double weights[ATTN_SCHED_MAX_SLOTS];
    attn_group *groups;
    size_t max;
    attn_status s;
    attn_sched_slots(b, w, weights);
    max = attn_sched_max_groups(d, w->n_slots);
    if (!(groups = calloc(max, sizeof *groups)) ||
        !(w->g = calloc(max, sizeof *w->g))) {
        free(groups);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate %zu groups", max);
    }
    s = attn_sched_split(d, w->n_slots, weights, groups, max, &w->n, err);
    for (size_t j = 0; s == ATTN_OK && j < w->n; j++) {
        attn_sched_group *g = &w->g[j];
        attn_err e = {{0}};
        g->g = groups[j];
        g->prep = x->prepare(b, w->slot_dev[g->g.slot], &g->g.d, &g->p, &e);
        snprintf(g->why, sizeof g->why, "%.250s", e.msg);
    }
    free(groups);
    return s;
}

attn_status attn_plan_sdpa(attn_plan_cache *pc, attn_backend *b,
                           const attn_sdpa_desc *d, attn_plan **out,
                           const attn_work **work, attn_err *err)
{
    shape_key k;
    attn_plan *p;
    unsigned e;
    attn_status s;
    *out = NULL;
    *work = NULL;
    if (!b->ops->exec)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the %s backend has no plans", b->ops->name);
    key_of(d, 0, &k);
    e = b->ops->exec->epoch(b);
    if (!(p = lookup(pc, b, &k, e))) {
        if (!(p = plan_new(b, &k, e, err)))
            return ATTN_ERR_OUT_OF_MEMORY;
        if ((s = make_work(b, d, &p->work, err))) {
            plan_free(p);
            return s;
        }
        if (p->work.n > 0)
            snprintf(p->variant, sizeof p->variant, "%s",
                     p->work.g[0].prep == ATTN_OK ? p->work.g[0].p.name : "");
        insert(pc, p);
    }
    *out = p;
    *work = &p->work;
    return ATTN_OK;
}

attn_status attn_plan_devices(attn_plan_cache *pc, attn_backend *b,
                              const attn_sdpa_desc *sd, attn_plan **out,
                              const attn_dev_work **work, attn_err *err)
{
    const attn_exec_ops *x = b->ops->exec;
    shape_key k;
    attn_plan *p;
    unsigned e;
    *out = NULL;
    *work = NULL;
    if (!x)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the %s backend has no plans", b->ops->name);
    key_of(sd, 1, &k);
    e = x->epoch(b);
    if (!(p = lookup(pc, b, &k, e))) {
        if (!(p = plan_new(b, &k, e, err)))
            return ATTN_ERR_OUT_OF_MEMORY;
        p->mha.n_dev = x->n_devices(b);
        if (p->mha.n_dev > ATTN_SCHED_MAX_DEVICES)
            p->mha.n_dev = ATTN_SCHED_MAX_DEVICES;
        for (int i = 0; i < p->mha.n_dev; i++) {
            attn_err e2 = {{0}};
            p->mha.prep[i] = x->prepare(b, i, sd, &p->mha.p[i], &e2);
            snprintf(p->mha.why[i], sizeof p->mha.why[i], "%.250s", e2.msg);
        }
        insert(pc, p);
    }
    *out = p;
    *work = &p->mha;
    return ATTN_OK;
}

attn_status attn_plan_backward(attn_plan_cache *pc, attn_backend *b,
                               const attn_sdpa_desc *d, unsigned grads,
                               attn_plan **out, const attn_dev_work **work,
                               attn_err *err)
{
    const attn_exec_ops *x = b->ops->exec;
    shape_key k;
    attn_plan *p;
    unsigned e;
    *out = NULL;
    *work = NULL;
    if (!x || !b->ops->prepare_bwd)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the %s backend has no backward plans", b->ops->name);
    key_of(d, 2, &k);
    k.grads = (int)grads;
    e = x->epoch(b);
    if (!(p = lookup(pc, b, &k, e))) {
        attn_err e2 = {{0}};
        if (!(p = plan_new(b, &k, e, err)))
            return ATTN_ERR_OUT_OF_MEMORY;
        p->mha.n_dev = 1; /* the call runs on the first device */
        p->mha.prep[0] = b->ops->prepare_bwd(b, 0, d, grads, &p->mha.p[0], &e2);
        snprintf(p->mha.why[0], sizeof p->mha.why[0], "%.250s", e2.msg);
        insert(pc, p);
    }
    *out = p;
    *work = &p->mha;
    return ATTN_OK;
}

attn_status attn_plan_variant(attn_plan_cache *pc, attn_backend *b,
                              const attn_sdpa_desc *d, char *name, size_t cap,
                              attn_precision *precision, attn_err *err)
{
    attn_plan *p;
    const attn_work *w;
    attn_status s = attn_plan_sdpa(pc, b, d, &p, &w, err);
    if (s)
        return s;
    if (name)
        snprintf(name, cap, "%s", p->variant);
    if (w->n > 0 && w->g[0].prep != ATTN_OK)
        s = attn_fail(err, w->g[0].prep, "%s", w->g[0].why);
    else if (precision)
        *precision = w->n > 0 ? w->g[0].p.precision : ATTN_PRECISION_EXACT;
    attn_plan_release(pc, p);
    return s;
}

void attn_plan_stats(attn_plan_cache *pc, unsigned long *made,
                     unsigned long *hits)
{
    pthread_mutex_lock(&pc->lock);
    *made = pc->made;
    *hits = pc->hits;
    pthread_mutex_unlock(&pc->lock);
}
