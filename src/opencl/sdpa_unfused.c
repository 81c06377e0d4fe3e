/*
 * Launcher of the three-kernel path: gets the programs (unfused_prog.c
 * builds them on first use), plans query blocks that keep the score buffer
 * within its budget, and enqueues score -> softmax -> aggregate per block,
 * each command waiting on the previous one.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/launch_common.h"
#include "opencl/unfused_impl.h"

#define SCORE_BUDGET_MAX ((size_t)256 << 20)
/* Grid limits some GPUs put on the second and third dimension (in
 * work-groups); blocks never ask for more. */
#define GRID_MAX 65535

/* ---- planning -------------------------------------------------------- */

/* Query blocks: n_bh whole heads of n_i rows, or n_i rows of one head. */
typedef struct plan {
    size_t bh_total; /* batch * heads_q */
    size_t n_bh, n_i;
    size_t s_bytes; /* the score buffer */
} plan;

static size_t score_budget(cl_ulong max_alloc)
{
    const char *env = getenv("ATTN_CL_SCORE_BUDGET");
    size_t b = max_alloc / 2 < SCORE_BUDGET_MAX ? (size_t)(max_alloc / 2)
                                                : SCORE_BUDGET_MAX;
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v > 0)
            b = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
    }
    return b > max_alloc ? (size_t)max_alloc : b;
}

static attn_status make_plan(const attn_sdpa_desc *d, cl_ulong max_alloc,
                             int row_tile, plan *pl, attn_err *err)
{
    const size_t seq_q = (size_t)d->seq_q;
    const size_t row_bytes = (size_t)d->seq_kv * sizeof(float);
    size_t rows;
    pl->bh_total = (size_t)d->batch * (size_t)d->heads_q;
    if (pl->bh_total > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q = %zu exceeds the kernels' range",
                         pl->bh_total);
    if (row_bytes > max_alloc)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "one row of scores (%zu bytes) exceeds the device's "
                         "largest allocation (%llu bytes)",
                         row_bytes, (unsigned long long)max_alloc);
    rows = score_budget(max_alloc) / row_bytes;
    if (rows < 1)
        rows = 1;
    if (rows >= seq_q) {
        pl->n_i = seq_q;
        pl->n_bh = rows / seq_q;
        if (pl->n_bh > pl->bh_total)
            pl->n_bh = pl->bh_total;
        if (pl->n_bh > GRID_MAX)
            pl->n_bh = GRID_MAX;
    } else {
        pl->n_bh = 1;
        pl->n_i =
            rows > (size_t)row_tile ? rows - rows % (size_t)row_tile : rows;
    }
    if (pl->n_i > GRID_MAX)
        pl->n_i = GRID_MAX;
    pl->s_bytes = pl->n_bh * pl->n_i * row_bytes; /* <= budget */
    return ATTN_OK;
}

uint64_t attn_cl_unfused_scratch(const attn_cl_runtime *rt,
                                 const attn_sdpa_desc *d)
{
    uint64_t global_mem = 0, max_alloc = 0;
    plan pl = {0};
    attn_cl_mem_limits(rt, &global_mem, &max_alloc);
    /* Rows in tiles of one: the largest buffer any tuning plans. */
    if (make_plan(d, max_alloc, 1, &pl, NULL) != ATTN_OK)
        return (uint64_t)d->seq_kv * sizeof(float);
    return pl.s_bytes;
}

/* ---- enqueueing ------------------------------------------------------ */

#define KARG ATTN_CL_KARG

static size_t round_up(size_t n, size_t tile, size_t wg)
{
    return (n + tile - 1) / tile * wg;
}

/* Inputs of one call, as kernel arguments. */
typedef struct call_args {
    cl_mem bias, kv_len, addw, lse, s;
    cl_int bias_kind, has_kv_len, additive, has_lse;
    cl_float scale;
    cl_int heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v, causal,
        window;
    cl_ulong q_off, k_off, v_off, o_off, lse_off;
} call_args;

/* Sets the arguments every block shares.  rt->lock held. */
static attn_status set_call_args(const unfused_prog *p,
                                 const attn_cl_tensors *t, call_args *c,
                                 attn_err *err)
{
    cl_int rc;
    const attn_cl_karg score[] = {
        KARG(t->q),         KARG(c->q_off),    KARG(t->k),
        KARG(c->k_off),     KARG(c->s),        KARG(c->bias),
        KARG(c->bias_kind), KARG(c->kv_len),   KARG(c->has_kv_len),
        KARG(c->addw),      KARG(c->additive), KARG(c->scale),
        KARG(c->heads_q),   KARG(c->heads_kv), KARG(c->seq_q),
        KARG(c->seq_kv),    KARG(c->head_dim), KARG(c->causal),
        KARG(c->window)};
    const attn_cl_karg softmax[] = {KARG(c->s),       KARG(c->lse),
                                    KARG(c->lse_off), KARG(c->has_lse),
                                    KARG(c->seq_q),   KARG(c->seq_kv)};
    const attn_cl_karg aggregate[] = {
        KARG(c->s),          KARG(t->v),       KARG(c->v_off),
        KARG(t->o),          KARG(c->o_off),   KARG(c->kv_len),
        KARG(c->has_kv_len), KARG(c->heads_q), KARG(c->heads_kv),
        KARG(c->seq_q),      KARG(c->seq_kv),  KARG(c->head_dim_v),
        KARG(c->causal),     KARG(c->window)};
    ATTN_CL_CHECK(
        attn_cl_set_args(p->score, 0, score, sizeof score / sizeof *score),
        fail);
    ATTN_CL_CHECK(attn_cl_set_args(p->softmax, 0, softmax,
                                   sizeof softmax / sizeof *softmax),
                  fail);
    ATTN_CL_CHECK(attn_cl_set_args(p->aggregate, 0, aggregate,
                                   sizeof aggregate / sizeof *aggregate),
                  fail);
    return ATTN_OK;
fail:
    return attn_cl_status(rc);
}

/* Enqueues the three kernels of every block, chained by events; *last
 * receives the event of the final command.  rt->lock held. */
static attn_status enqueue_blocks(const unfused_prog *p, const plan *pl,
                                  const attn_sdpa_desc *d,
                                  cl_command_queue queue, cl_uint n_wait,
                                  const cl_event *wait, cl_event *last,
                                  attn_err *err)
{
    const attn_cl_unfused_tuning *tu = &p->t;
    cl_event prev = NULL;
    cl_int rc;
    for (size_t bh0 = 0; bh0 < pl->bh_total; bh0 += pl->n_bh) {
        for (size_t i0 = 0; i0 < (size_t)d->seq_q; i0 += pl->n_i) {
            const size_t nb =
                pl->bh_total - bh0 < pl->n_bh ? pl->bh_total - bh0 : pl->n_bh;
            const size_t ni = (size_t)d->seq_q - i0 < pl->n_i
                                  ? (size_t)d->seq_q - i0
                                  : pl->n_i;
            const cl_int b0 = (cl_int)bh0, r0 = (cl_int)i0, n = (cl_int)ni;
            const attn_cl_karg blk[] = {KARG(b0), KARG(r0), KARG(n)};
            const size_t sc_g[3] = {
                round_up((size_t)d->seq_kv, (size_t)tu->sc_tk,
                         (size_t)tu->sc_wk),
                round_up(ni, (size_t)tu->sc_tq, (size_t)tu->sc_wq), nb};
            const size_t sc_l[3] = {(size_t)tu->sc_wk, (size_t)tu->sc_wq, 1};
            const size_t sm_g[2] = {(size_t)tu->sm_wg * ni, nb};
            const size_t sm_l[2] = {(size_t)tu->sm_wg, 1};
            const size_t ag_g[3] = {
                round_up((size_t)d->head_dim_v, (size_t)tu->ag_tv,
                         (size_t)tu->ag_wv),
                round_up(ni, (size_t)tu->ag_tq, (size_t)tu->ag_wq), nb};
            const size_t ag_l[3] = {(size_t)tu->ag_wv, (size_t)tu->ag_wq, 1};
            ATTN_CL_CHECK(attn_cl_set_args(p->score, 19, blk, 3), fail);
            ATTN_CL_CHECK(attn_cl_set_args(p->softmax, 6, blk, 3), fail);
            ATTN_CL_CHECK(attn_cl_set_args(p->aggregate, 14, blk, 3), fail);
            ATTN_CL_CHECK(attn_cl_chain(queue, p->score, 3, sc_g, sc_l, n_wait,
                                        wait, &prev),
                          fail);
            ATTN_CL_CHECK(
                attn_cl_chain(queue, p->softmax, 2, sm_g, sm_l, 0, NULL, &prev),
                fail);
            ATTN_CL_CHECK(attn_cl_chain(queue, p->aggregate, 3, ag_g, ag_l, 0,
                                        NULL, &prev),
                          fail);
        }
    }
    *last = prev;
    return ATTN_OK;
fail:
    if (prev)
        clReleaseEvent(prev);
    return attn_cl_status(rc);
}

/* The scalar arguments of a call. */
static void fill_args(const attn_sdpa_desc *d, const attn_cl_tensors *t,
                      call_args *c)
{
    memset(c, 0, sizeof *c);
    c->bias_kind = (cl_int)d->mask.bias_kind;
    c->has_kv_len = d->mask.kv_len != NULL;
    c->additive = d->score == ATTN_SCORE_ADDITIVE;
    c->has_lse = t->lse != NULL;
    c->scale = d->scale != 0.0f ? d->scale
                                : (cl_float)(1.0 / sqrt((double)d->head_dim));
    c->heads_q = d->heads_q;
    c->heads_kv = d->heads_kv;
    c->seq_q = d->seq_q;
    c->seq_kv = d->seq_kv;
    c->head_dim = d->head_dim;
    c->head_dim_v = d->head_dim_v;
    c->causal = d->mask.causal != 0;
    c->window = d->mask.window;
    c->q_off = t->q_off;
    c->k_off = t->k_off;
    c->v_off = t->v_off;
    c->o_off = t->o_off;
    c->lse_off = t->lse_off;
}

attn_status attn_cl_sdpa_unfused(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                 const attn_cl_tensors *t,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, cl_event *done,
                                 attn_err *err)
{
    call_args c;
    plan pl = {0};
    uint64_t max_alloc = 0, global_mem = 0;
    cl_mem bias = NULL, kv_len = NULL, addw = NULL, sbuf = NULL;
    cl_event last = NULL;
    attn_cl_gate gate = ATTN_CL_GATE_INIT;
    unfused_state *st = NULL;
    unfused_prog *p = NULL;
    attn_status s;
    cl_int rc;
    int row_tile;

    if ((s = attn_cl_check_call("attn_cl_sdpa_unfused", rt, d, t, queue, n_wait,
                                wait, done, err)))
        return s;
    if ((s = attn_cl_check_tensors(d, t, err)))
        return s;
    attn_cl_mem_limits(rt, &global_mem, &max_alloc);
    /* The score buffer and the input copies must fit the device: checked
     * before anything is built or allocated. */
    if ((s = attn_cl_check_launch_fit(rt, d, attn_cl_unfused_scratch(rt, d),
                                      "the three-kernel path", err)))
        return s;

    /* Build first (under the lock), so that a device that cannot run the
     * kernels fails before anything is copied. */
    pthread_mutex_lock(&rt->lock);
    s = attn_cl_unfused_prog_get(rt, d->dtype, &p, &st, err);
    row_tile = s == ATTN_OK ? p->t.sc_tq : 1;
    pthread_mutex_unlock(&rt->lock);
    if (s || (s = make_plan(d, max_alloc, row_tile, &pl, err)))
        return s;

    if ((s = attn_cl_copy_inputs(rt, d, &bias, &kv_len, &addw, err)))
        goto out;
    sbuf = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE, pl.s_bytes,
                                   NULL, &rc);
    if (rc != CL_SUCCESS) {
        sbuf = NULL;
        s = attn_fail(err, attn_cl_status(rc),
                      "cannot allocate the score buffer (%zu bytes): %s",
                      pl.s_bytes, attn_cl_error_name(rc));
        goto out;
    }
    /* The gate holds every command back until all are enqueued. */
    if ((s = attn_cl_gate_open(rt, n_wait, wait, &gate, err)))
        goto out;

    fill_args(d, t, &c);
    c.s = sbuf;
    pthread_mutex_lock(&rt->lock);
    /* Again: the tuning may have been reset while the lock was free. */
    if ((s = attn_cl_unfused_prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK) {
        c.bias = bias ? bias : st->dummy;
        c.kv_len = kv_len ? kv_len : st->dummy;
        c.addw = addw ? addw : st->dummy;
        c.lse = t->lse ? t->lse : st->dummy;
        if ((s = set_call_args(p, t, &c, err)) == ATTN_OK)
            s = enqueue_blocks(p, &pl, d, queue, n_wait + 1, gate.wl, &last,
                               err);
    }
    pthread_mutex_unlock(&rt->lock);

out:
    s = attn_cl_gate_close(s, &gate, last, done, err);
    attn_cl_release_mem(sbuf);
    attn_cl_release_mem(addw);
    attn_cl_release_mem(kv_len);
    attn_cl_release_mem(bias);
    return s;
}
