/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "splitkv" (cl/splitkv.cl + cl/combine.cl): decode attention
 * shaped for GPUs.  One work-group per (batch, kv head, key split) takes
 * the rows of every query head that shares the kv head (grouped-query and
 * multi-query attention read each K/V row once for the whole group), walks
 * its keys in tiles staged in local memory, and writes the split's
 * maximum, sum and unnormalised O; the combine pass merges the splits of
 * each row by their log-sum-exp.  Head sizes, multiples of 8 up to 256,
 * are compile-time constants (one build per head size and row count).
 *
 * Takes seq_q * heads_q / heads_kv <= 64 query rows per kv head, at most
 * 32 outputs (row, column) per work-item.  `splits` fixes the key splits
 * per (batch, kv head); 0 picks them from the compute units (about
 * GROUPS_PER_CU work-groups per compute unit, at least MIN_TILES tiles of
 * keys per split, at most MAX_SPLITS).  The local memory a shape needs
 * decides its build: the K and V tiles share one buffer, then the tile
 * shrinks, until it fits (tk is the most keys per tile it gets).
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "opencl/variant.h"

#define MAX_SPLITS 256
#define MAX_ROWS   64  /* query rows per kv head (SK_ROWS) */
#define MAX_HEAD   256 /* head_dim, head_dim_v */
/* Head sizes are multiples of this (the models' are): rows load as
 * float4, and odd sizes, each a build of its own, go to other variants. */
#define HEAD_STEP     8
#define MAX_NPI       32 /* outputs per work-item */
#define GROUPS_PER_CU 4
#define MIN_TILES     2

#define LOG2E 1.44269504088896340736

enum { P_WG, P_TK, P_CWG, P_SPLITS, P_MAX_SEQ_Q, N_PARAMS };

static const attn_cl_param params[N_PARAMS] = {
    {"wg", "SK_WG", 32, 1024, 128, ATTN_CL_PARAM_POW2,
     "work-items per work-group of pass 1"},
    /* tk is built as local memory lets it (the defines hook). */
    {"tk", NULL, 1, 256, 32, ATTN_CL_PARAM_POW2,
     "keys per tile of pass 1, at most"},
    {"cwg", NULL, 1, 1024, 64, 0, "work-items per combined row (pass 2)"},
    {"splits", NULL, 0, MAX_SPLITS, 0, ATTN_CL_PARAM_RUNTIME,
     "key splits per (batch, kv head); 0: from the compute units"},
    {"max_seq_q", NULL, 0, 64, 16, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant up to this many query rows (0: never)"},
};

/* How a shape is built: rows per work-group (a power of two), keys per
 * tile, whether K and V share their local buffer. */
typedef struct build {
    int rows, tk, kvs;
} build;

typedef struct geom {
    build bd;
    cl_ulong po_off; /* floats before the partial O */
    cl_int key_lo, split_len, n_split;
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "splitkv geometry");

/* Query rows one work-group takes: every head of a kv head's group. */
static uint64_t group_rows(const attn_sdpa_desc *d)
{
    const int grp = d->heads_kv > 0 ? d->heads_q / d->heads_kv : 1;
    return (uint64_t)grp * (uint64_t)d->seq_q;
}

/* Bytes of the kernel's local arrays (cl/splitkv.cl) for one build. */
static uint64_t local_bytes(const build *bd, const attn_sdpa_desc *d)
{
    const uint64_t hd = (uint64_t)d->head_dim, hdv = (uint64_t)d->head_dim_v;
    const uint64_t r = (uint64_t)bd->rows, tk = (uint64_t)bd->tk;
    const uint64_t kt = hd * (tk + 1), vs = tk * hdv;
    const uint64_t floats =
        r * hd + (bd->kvs ? (kt > vs ? kt : vs) : kt + vs) + r * tk + 3 * r;
    return floats * sizeof(float) + sizeof(int);
}

/* The build of d with at most tk keys per tile in local_mem bytes; 0 when
 * none fits. */
static int shape_build(int tk, const attn_sdpa_desc *d, uint64_t local_mem,
                       build *bd)
{
    const uint64_t rows = group_rows(d);
    /* Rows come in four builds, 4, 16, 32, 64 (a row past the group's
     * costs a skipped branch, a build costs seconds). */
    bd->rows = rows <= 4 ? 4 : 16;
    while ((uint64_t)bd->rows < rows && bd->rows < MAX_ROWS)
        bd->rows *= 2;
    bd->tk = tk;
    bd->kvs = 0;
    while (local_bytes(bd, d) > local_mem) {
        if (!bd->kvs)
            bd->kvs = 1;
        else if (bd->tk > 1)
            bd->tk /= 2;
        else
            return 0;
    }
    return 1;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    build bd;
    const uint64_t rows = group_rows(d);
    if (d->head_dim > MAX_HEAD || d->head_dim_v > MAX_HEAD ||
        d->head_dim % HEAD_STEP != 0 || d->head_dim_v % HEAD_STEP != 0)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel takes head sizes that are "
                         "multiples of %d up to %d, not %d / %d",
                         HEAD_STEP, MAX_HEAD, d->head_dim, d->head_dim_v);
    if (rows > MAX_ROWS)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel takes at most %d query rows per "
                         "kv head (seq_q * heads_q / heads_kv), not %llu",
                         MAX_ROWS, (unsigned long long)rows);
    if (!shape_build(t->v[P_TK], d, lim->local_mem, &bd))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the splitkv kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)lim->local_mem);
    if ((uint64_t)bd.rows * (uint64_t)d->head_dim_v >
        (uint64_t)MAX_NPI * (uint64_t)t->v[P_WG])
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel keeps at most %d outputs per "
                         "work-item: %d rows x head_dim_v %d is too many for "
                         "%d items",
                         MAX_NPI, bd.rows, d->head_dim_v, t->v[P_WG]);
    if ((size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q > INT_MAX ||
        d->seq_kv > INT_MAX - MAX_HEAD * 4)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel's indices would overflow");
    return ATTN_OK;
}

static int prefer(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d)
{
    (void)lim;
    return d->seq_q <= t->v[P_MAX_SEQ_Q];
}

static void defines(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap)
{
    build bd = {1, 1, 1};
    shape_build(t->v[P_TK], d, lim->local_mem, &bd);
    snprintf(buf, cap,
             " -DSK_HD=%d -DSK_HDV=%d -DSK_ROWS=%d -DSK_TK=%d -DSK_KVS=%d",
             d->head_dim, d->head_dim_v, bd.rows, bd.tk, bd.kvs);
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    const size_t side =
        lim->items[0] && lim->items[0] < lim->wg ? lim->items[0] : lim->wg;
    /* The work-group is fixed at compile time (reqd_work_group_size). */
    while ((size_t)t->v[P_WG] > side && t->v[P_WG] > 32)
        t->v[P_WG] /= 2;
    while ((size_t)t->v[P_CWG] > side && t->v[P_CWG] > 1)
        t->v[P_CWG] /= 2;
    return (size_t)t->v[P_WG] <= side;
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    const int split_ok = b->kwg[0] >= (size_t)t->v[P_WG];
    const int comb_ok = b->kwg[1] >= (size_t)t->v[P_CWG];
    (void)lim;
    if (split_ok && comb_ok)
        return 1;
    if (!split_ok && t->v[P_WG] <= 32)
        return -1;
    if (!split_ok)
        t->v[P_WG] /= 2;
    if (!comb_ok && t->v[P_CWG] > 1)
        t->v[P_CWG] /= 2;
    return 0;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    /* Every factor is below 2^31 and the tuning's below 2^11, so no
     * product here overflows 64 bits. */
    const uint64_t dv = (uint64_t)d->head_dim_v;
    const uint64_t pairs = (uint64_t)d->batch * (uint64_t)d->heads_kv;
    const uint64_t rows =
        (uint64_t)d->batch * (uint64_t)d->heads_q * (uint64_t)d->seq_q;
    const int window = attn_cl_window(d);
    const int off = (int)attn_causal_diag(d);
    const uint64_t max_alloc = lim->max_alloc ? lim->max_alloc : UINT64_MAX;
    const unsigned cus = lim->compute_units ? lim->compute_units : 1;
    uint64_t span, n_split, split_len, per_split, tk;
    geom *g = out;
    attn_status s;

    *scratch = 0;
    if (!shape_build(t->v[P_TK], d, lim->local_mem, &g->bd))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel does not fit the device's local "
                         "memory for head_dim %d",
                         d->head_dim);
    if ((s = attn_cl_local_fits(lim, b, "splitkv", err)))
        return s;
    tk = (uint64_t)g->bd.tk;

    /* Keys some row may see: [key_lo, seq_kv). */
    g->key_lo = window > 0 && off - window + 1 > 0 ? off - window + 1 : 0;
    span = (uint64_t)(d->seq_kv - g->key_lo);
    if (span < 1)
        span = 1;
    if (t->v[P_SPLITS] > 0) {
        n_split = (uint64_t)t->v[P_SPLITS];
    } else {
        const uint64_t target = (uint64_t)cus * GROUPS_PER_CU;
        const uint64_t most = (span + MIN_TILES * tk - 1) / (MIN_TILES * tk);
        n_split = (target + pairs - 1) / pairs;
        if (n_split > most)
            n_split = most;
    }
    if (n_split > MAX_SPLITS)
        n_split = MAX_SPLITS;
    /* The partial buffer fits one allocation. */
    per_split = rows * (2 + dv) * sizeof(float);
    if (per_split > max_alloc)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the splitkv kernel's partial results (%llu bytes) "
                         "exceed the device's largest allocation",
                         (unsigned long long)per_split);
    if (n_split > max_alloc / per_split)
        n_split = max_alloc / per_split;
    if (n_split > span)
        n_split = span;
    if (n_split < 1)
        n_split = 1;
    /* Whole tiles per split, then as many splits as that takes. */
    split_len = (span + n_split - 1) / n_split;
    split_len = (split_len + tk - 1) / tk * tk;
    n_split = (span + split_len - 1) / split_len;
    if (split_len > INT_MAX)
        split_len = INT_MAX;

    g->n_split = (cl_int)n_split;
    g->split_len = (cl_int)split_len;
    g->po_off = (cl_ulong)(2 * rows * n_split);
    *scratch = rows * n_split * (2 + dv) * sizeof(float);
    return ATTN_OK;
}

#define KARG           ATTN_CL_KARG
#define N_SPLIT_ARGS   33
#define N_COMBINE_ARGS 14

/* Pass 1 in blocks of at most ATTN_CL_GRID_MAX (batch, kv head) pairs,
 * then pass 2 in blocks of at most ATTN_CL_GRID_MAX rows, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    const attn_cl_tuning *t = &L->b->t;
    /* Without a bias (and for dot scores) the kernels work in base 2: a
     * bias near FLT_MAX times log2(e) would overflow. */
    const cl_int nat = L->additive || L->bias_kind != 0;
    const cl_float qscale =
        nat ? L->scale : (cl_float)((double)L->scale * LOG2E);
    const attn_cl_karg sargs[N_SPLIT_ARGS - 1] = {
        KARG(L->t->q),      KARG(L->q_off),    KARG(L->t->k),
        KARG(L->k_off),     KARG(L->t->v),     KARG(L->v_off),
        KARG(L->scratch),   KARG(g->po_off),   KARG(L->bias),
        KARG(L->bias_kind), KARG(L->bias_sb),  KARG(L->bias_sh),
        KARG(L->bias_sq),   KARG(L->kv_len),   KARG(L->has_kv_len),
        KARG(L->addw),      KARG(L->additive), KARG(qscale),
        KARG(nat),          KARG(L->heads_q),  KARG(L->heads_kv),
        KARG(L->seq_q),     KARG(L->seq_kv),   KARG(L->causal),
        KARG(L->window),    KARG(L->diag),     KARG(g->key_lo),
        KARG(g->split_len), KARG(g->n_split),  KARG(L->q_st),
        KARG(L->k_st),      KARG(L->v_st)};
    const attn_cl_karg cargs[N_COMBINE_ARGS - 1] = {
        KARG(L->scratch), KARG(g->po_off),     KARG(L->t->o),
        KARG(L->o_off),   KARG(L->lse),        KARG(L->lse_off),
        KARG(L->has_lse), KARG(L->head_dim_v), KARG(g->n_split),
        KARG(nat),        KARG(L->heads_q),    KARG(L->seq_q),
        KARG(L->o_st)};
    const size_t pairs = (size_t)L->d->batch * (size_t)L->heads_kv;
    const size_t rows =
        (size_t)L->d->batch * (size_t)L->heads_q * (size_t)L->seq_q;
    const size_t wg = (size_t)t->v[P_WG], cwg = (size_t)t->v[P_CWG];
    cl_kernel split = L->k[0], combine = L->k[1];
    cl_event prev = NULL;
    cl_int rc = attn_cl_set_args(split, 0, sargs, N_SPLIT_ARGS - 1);
    if (rc == CL_SUCCESS)
        rc = attn_cl_set_args(combine, 0, cargs, N_COMBINE_ARGS - 1);
    if (rc == CL_SUCCESS)
        rc = attn_cl_launch_blocks(L->queue, split, N_SPLIT_ARGS - 1, pairs,
                                   (size_t)g->n_split, wg, L->n_wait, L->wait,
                                   &prev);
    if (rc == CL_SUCCESS)
        rc = attn_cl_launch_blocks(L->queue, combine, N_COMBINE_ARGS - 1, rows,
                                   1, cwg, 0, NULL, &prev);
    if (rc != CL_SUCCESS && prev) {
        clReleaseEvent(prev);
        prev = NULL;
    }
    *last = prev;
    return rc;
}

static const char *const sources[] = {"splitkv.cl", "combine.cl", NULL};
static const char *const kernels[] = {"attn_splitkv", "attn_combine", NULL};

const attn_cl_variant attn_cl_variant_splitkv = {
    .name = "splitkv",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "decode for GPUs: each K/V row read once for every query "
               "head of its group, keys split over work-groups, partials "
               "merged by their log-sum-exp",
    .path = ATTN_PATH_AUTO,
    .universal = 0,
    .per_shape = 1,
    .build_probe = 1,
    .sources = sources,
    .kernels = kernels,
    .params = params,
    .n_params = N_PARAMS,
    .check = NULL,
    .supports = supports,
    .prefer = prefer,
    .defines = defines,
    .fit_device = fit_device,
    .fit_kernels = fit_kernels,
    .plan = plan,
    .launch = launch,
};
