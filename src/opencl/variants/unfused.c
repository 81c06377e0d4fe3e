/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "unfused" (cl/score.cl, cl/softmax.cl, cl/aggregate.cl): the
 * three-kernel path.  score: SC_TQ x SC_TK tile of S per work-group of
 * SC_WQ x SC_WK items, SC_TD columns of Q/K staged at a time; softmax:
 * SM_WG items per row (a power of two); aggregate: AG_TQ x AG_TV tile of O
 * per AG_WQ x AG_WV items, AG_TJ keys staged at a time.  Each tile is a
 * multiple of its work-group side; a device whose limits are smaller gets
 * the work-groups (then the staged depth) halved until they fit.  Takes
 * every shape: AUTO's last resort.
 *
 * Memory: the scores of a block of query rows live in the scratch buffer
 * [heads in the block, rows, seq_kv] floats, bounded by the score budget
 * min(CL_DEVICE_MAX_MEM_ALLOC_SIZE / 2, 256 MiB) (tests reach the
 * blocked path by lowering the device's limits: attn_fault_set_mem_limits,
 * src/opencl/fault.h).  When all query rows
 * do not fit, the launch works through blocks of whole heads, or of rows
 * of one head, in turn; at least one row at a time.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/variant.h"

enum {
    P_SC_TQ,
    P_SC_TK,
    P_SC_TD,
    P_SC_WQ,
    P_SC_WK,
    P_SM_WG,
    P_AG_TQ,
    P_AG_TV,
    P_AG_TJ,
    P_AG_WQ,
    P_AG_WV,
    N_PARAMS
};

#define SCORE_BUDGET_MAX ((size_t)256 << 20)

static const attn_cl_param params[N_PARAMS] = {
    {"sc_tq", "SC_TQ", 1, 1024, 32, 0, "score tile: query rows"},
    {"sc_tk", "SC_TK", 1, 1024, 64, 0, "score tile: keys"},
    {"sc_td", "SC_TD", 1, 1024, 16, 0, "score: columns of Q/K staged"},
    {"sc_wq", "SC_WQ", 1, 1024, 4, 0, "score work-group: rows of items"},
    {"sc_wk", "SC_WK", 1, 1024, 16, 0, "score work-group: columns of items"},
    {"sm_wg", "SM_WG", 1, 1024, 64, ATTN_CL_PARAM_POW2,
     "softmax: work-items per row"},
    {"ag_tq", "AG_TQ", 1, 1024, 32, 0, "aggregate tile: query rows"},
    {"ag_tv", "AG_TV", 1, 1024, 64, 0, "aggregate tile: columns of O"},
    {"ag_tj", "AG_TJ", 1, 1024, 16, 0, "aggregate: keys staged"},
    {"ag_wq", "AG_WQ", 1, 1024, 4, 0, "aggregate work-group: rows of items"},
    {"ag_wv", "AG_WV", 1, 1024, 16, 0,
     "aggregate work-group: columns of items"},
};

/* Query blocks: n_bh whole heads of n_i rows, or n_i rows of one head. */
typedef struct geom {
    size_t bh_total; /* batch * heads_q */
    size_t n_bh, n_i;
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "unfused geometry");

static int check(const attn_cl_tuning *t, char *why, size_t cap)
{
    const int *v = t->v;
    if (v[P_SC_TQ] % v[P_SC_WQ] || v[P_SC_TK] % v[P_SC_WK] ||
        v[P_AG_TQ] % v[P_AG_WQ] || v[P_AG_TV] % v[P_AG_WV]) {
        snprintf(why, cap,
                 "each tile must be a multiple of its work-group "
                 "side (sc_tq of sc_wq, sc_tk of sc_wk, ag_tq of "
                 "ag_wq, ag_tv of ag_wv)");
        return 0;
    }
    return 1;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    (void)lim;
    (void)t;
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q = %zu exceeds the kernels' range",
                         (size_t)d->batch * (size_t)d->heads_q);
    return ATTN_OK;
}

static size_t score_local(const int *v)
{
    return ((size_t)(v[P_SC_TQ] + v[P_SC_TK]) * (size_t)(v[P_SC_TD] + 1) +
            (size_t)v[P_SC_TD]) *
           sizeof(float);
}

static size_t aggregate_local(const int *v)
{
    return ((size_t)v[P_AG_TQ] * (size_t)(v[P_AG_TJ] + 1) +
            (size_t)v[P_AG_TJ] * (size_t)v[P_AG_TV]) *
           sizeof(float);
}

/* Shrinks t until the work-groups fit wg[k] items (k: score, softmax,
 * aggregate), the sides fit the item limits and the local tiles fit.
 * Returns 0 when that is impossible. */
static int fit(int *v, const size_t wg[3], const attn_cl_limits *lim)
{
    const size_t i0 = lim->items[0] ? lim->items[0] : lim->wg;
    const size_t i1 = lim->items[1] ? lim->items[1] : lim->wg;
    while ((size_t)v[P_SC_WK] > i0)
        if (!attn_cl_halve(&v[P_SC_WK]))
            return 0;
    while ((size_t)v[P_SC_WQ] > i1)
        if (!attn_cl_halve(&v[P_SC_WQ]))
            return 0;
    while ((size_t)v[P_SC_WQ] * (size_t)v[P_SC_WK] > wg[0])
        if (!attn_cl_halve(v[P_SC_WQ] >= v[P_SC_WK] ? &v[P_SC_WQ]
                                                    : &v[P_SC_WK]))
            return 0;
    while ((size_t)v[P_SM_WG] > wg[1] || (size_t)v[P_SM_WG] > i0 ||
           (size_t)v[P_SM_WG] * sizeof(float) > lim->local_mem)
        if (!attn_cl_halve(&v[P_SM_WG]))
            return 0;
    while ((size_t)v[P_AG_WV] > i0)
        if (!attn_cl_halve(&v[P_AG_WV]))
            return 0;
    while ((size_t)v[P_AG_WQ] > i1)
        if (!attn_cl_halve(&v[P_AG_WQ]))
            return 0;
    while ((size_t)v[P_AG_WQ] * (size_t)v[P_AG_WV] > wg[2])
        if (!attn_cl_halve(v[P_AG_WQ] >= v[P_AG_WV] ? &v[P_AG_WQ]
                                                    : &v[P_AG_WV]))
            return 0;
    while (score_local(v) > lim->local_mem)
        if (!attn_cl_halve(&v[P_SC_TD]))
            return 0;
    while (aggregate_local(v) > lim->local_mem)
        if (!attn_cl_halve(&v[P_AG_TJ]))
            return 0;
    return 1;
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    const size_t wg[3] = {lim->wg, lim->wg, lim->wg};
    return fit(t->v, wg, lim);
}

/* A kernel may allow fewer items than the device (registers) or need more
 * local memory than the tiles (the compiler's own). */
static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    int *v = t->v;
    const size_t need[3] = {(size_t)v[P_SC_WQ] * (size_t)v[P_SC_WK],
                            (size_t)v[P_SM_WG],
                            (size_t)v[P_AG_WQ] * (size_t)v[P_AG_WV]};
    size_t wg[3];
    int fits = 1;
    for (int i = 0; i < 3; i++) {
        wg[i] = b->kwg[i] < lim->wg ? b->kwg[i] : lim->wg;
        if (b->kwg[i] < need[i])
            fits = 0;
        if (b->klocal[i] > lim->local_mem) {
            int *depth = i == 0   ? &v[P_SC_TD]
                         : i == 1 ? &v[P_SM_WG]
                                  : &v[P_AG_TJ];
            if (!attn_cl_halve(depth))
                return -1;
            fits = 0;
        }
    }
    if (fits)
        return 1;
    return fit(v, wg, lim) ? 0 : -1;
}

static size_t score_budget(uint64_t max_alloc)
{
    return max_alloc / 2 < SCORE_BUDGET_MAX ? (size_t)(max_alloc / 2)
                                            : SCORE_BUDGET_MAX;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    const size_t seq_q = (size_t)d->seq_q;
    const size_t row_bytes = (size_t)d->seq_kv * sizeof(float);
    const uint64_t max_alloc = lim->max_alloc ? lim->max_alloc : UINT64_MAX;
    /* Before the build: rows in tiles of one, the largest buffer any
     * tuning plans. */
    const size_t row_tile = b ? (size_t)t->v[P_SC_TQ] : 1;
    geom *g = out;
    size_t rows;
    *scratch = 0;
    g->bh_total = (size_t)d->batch * (size_t)d->heads_q;
    if (row_bytes > max_alloc)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "one row of scores (%zu bytes) exceeds the device's "
                         "largest allocation (%llu bytes)",
                         row_bytes, (unsigned long long)max_alloc);
    rows = score_budget(max_alloc) / row_bytes;
    if (rows < 1)
        rows = 1;
    if (rows >= seq_q) {
        g->n_i = seq_q;
        g->n_bh = rows / seq_q;
        if (g->n_bh > g->bh_total)
            g->n_bh = g->bh_total;
        if (g->n_bh > ATTN_CL_GRID_MAX)
            g->n_bh = ATTN_CL_GRID_MAX;
    } else {
        g->n_bh = 1;
        g->n_i = rows > row_tile ? rows - rows % row_tile : rows;
    }
    if (g->n_i > ATTN_CL_GRID_MAX)
        g->n_i = ATTN_CL_GRID_MAX;
    *scratch = (uint64_t)g->n_bh * g->n_i * row_bytes; /* <= budget */
    return ATTN_OK;
}

#define KARG ATTN_CL_KARG

static size_t round_up(size_t n, size_t tile, size_t wg)
{
    return (n + tile - 1) / tile * wg;
}

/* The arguments every block shares. */
static cl_int set_call_args(const attn_cl_launch *L)
{
    const attn_cl_karg score[] = {
        KARG(L->t->q),      KARG(L->q_off),    KARG(L->t->k),
        KARG(L->k_off),     KARG(L->scratch),  KARG(L->bias),
        KARG(L->bias_kind), KARG(L->bias_sb),  KARG(L->bias_sh),
        KARG(L->bias_sq),   KARG(L->kv_len),   KARG(L->has_kv_len),
        KARG(L->addw),      KARG(L->additive), KARG(L->scale),
        KARG(L->heads_q),   KARG(L->heads_kv), KARG(L->seq_q),
        KARG(L->seq_kv),    KARG(L->head_dim), KARG(L->causal),
        KARG(L->window),    KARG(L->diag),     KARG(L->q_st),
        KARG(L->k_st)};
    const attn_cl_karg softmax[] = {KARG(L->scratch), KARG(L->lse),
                                    KARG(L->lse_off), KARG(L->has_lse),
                                    KARG(L->seq_q),   KARG(L->seq_kv)};
    const attn_cl_karg aggregate[] = {
        KARG(L->scratch),    KARG(L->t->v),    KARG(L->v_off),
        KARG(L->t->o),       KARG(L->o_off),   KARG(L->kv_len),
        KARG(L->has_kv_len), KARG(L->heads_q), KARG(L->heads_kv),
        KARG(L->seq_q),      KARG(L->seq_kv),  KARG(L->head_dim_v),
        KARG(L->causal),     KARG(L->window),  KARG(L->diag),
        KARG(L->v_st),       KARG(L->o_st)};
    cl_int rc =
        attn_cl_set_args(L->k[0], 0, score, sizeof score / sizeof *score);
    if (rc == CL_SUCCESS)
        rc = attn_cl_set_args(L->k[1], 0, softmax,
                              sizeof softmax / sizeof *softmax);
    if (rc == CL_SUCCESS)
        rc = attn_cl_set_args(L->k[2], 0, aggregate,
                              sizeof aggregate / sizeof *aggregate);
    return rc;
}

/* score -> softmax -> aggregate for every block, chained by events. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    const int *v = L->b->t.v;
    const size_t seq_q = (size_t)L->seq_q;
    cl_event prev = NULL;
    cl_int rc = set_call_args(L);
    for (size_t bh0 = 0; rc == CL_SUCCESS && bh0 < g->bh_total;
         bh0 += g->n_bh) {
        for (size_t i0 = 0; rc == CL_SUCCESS && i0 < seq_q; i0 += g->n_i) {
            const size_t nb =
                g->bh_total - bh0 < g->n_bh ? g->bh_total - bh0 : g->n_bh;
            const size_t ni = seq_q - i0 < g->n_i ? seq_q - i0 : g->n_i;
            const cl_int b0 = (cl_int)bh0, r0 = (cl_int)i0, n = (cl_int)ni;
            const attn_cl_karg blk[] = {KARG(b0), KARG(r0), KARG(n)};
            const size_t sc_g[3] = {
                round_up((size_t)L->seq_kv, (size_t)v[P_SC_TK],
                         (size_t)v[P_SC_WK]),
                round_up(ni, (size_t)v[P_SC_TQ], (size_t)v[P_SC_WQ]), nb};
            const size_t sc_l[3] = {(size_t)v[P_SC_WK], (size_t)v[P_SC_WQ], 1};
            const size_t sm_g[2] = {(size_t)v[P_SM_WG] * ni, nb};
            const size_t sm_l[2] = {(size_t)v[P_SM_WG], 1};
            const size_t ag_g[3] = {
                round_up((size_t)L->head_dim_v, (size_t)v[P_AG_TV],
                         (size_t)v[P_AG_WV]),
                round_up(ni, (size_t)v[P_AG_TQ], (size_t)v[P_AG_WQ]), nb};
            const size_t ag_l[3] = {(size_t)v[P_AG_WV], (size_t)v[P_AG_WQ], 1};
            if ((rc = attn_cl_set_args(L->k[0], 25, blk, 3)) != CL_SUCCESS ||
                (rc = attn_cl_set_args(L->k[1], 6, blk, 3)) != CL_SUCCESS ||
                (rc = attn_cl_set_args(L->k[2], 17, blk, 3)) != CL_SUCCESS ||
                (rc = attn_cl_chain(L->queue, L->k[0], 3, sc_g, sc_l, L->n_wait,
                                    L->wait, &prev)) != CL_SUCCESS ||
                (rc = attn_cl_chain(L->queue, L->k[1], 2, sm_g, sm_l, 0, NULL,
                                    &prev)) != CL_SUCCESS)
                break;
            rc =
                attn_cl_chain(L->queue, L->k[2], 3, ag_g, ag_l, 0, NULL, &prev);
        }
    }
    if (rc != CL_SUCCESS && prev) {
        clReleaseEvent(prev);
        prev = NULL;
    }
    *last = prev;
    return rc;
}

static const char *const sources[] = {"score.cl", "softmax.cl", "aggregate.cl",
                                      NULL};
static const char *const kernels[] = {"attn_score", "attn_softmax",
                                      "attn_aggregate", NULL};

const attn_cl_variant attn_cl_variant_unfused = {
    .name = "unfused",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "score, softmax and aggregate kernels over a score buffer; "
               "takes every shape",
    .path = ATTN_PATH_UNFUSED,
    .universal = 1,
    .sources = sources,
    .kernels = kernels,
    .params = params,
    .n_params = N_PARAMS,
    .check = check,
    .supports = supports,
    .prefer = NULL,
    .defines = NULL,
    .fit_device = fit_device,
    .fit_kernels = fit_kernels,
    .plan = plan,
    .launch = launch,
};
