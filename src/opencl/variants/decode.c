/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "decode" (cl/decode.cl): for a few query rows per head (token by
 * token generation against a KV cache) the keys are split across
 * work-groups; pass 1 writes each split's partial maximum, sum and
 * unnormalised O into a scratch buffer, pass 2 combines the splits of every
 * row through their log-sum-exp.  Pass 1 runs work-groups of wg items over
 * chunks of tk keys, pass 2 work-groups of cwg items.  `splits` fixes the
 * number of key splits per (batch, query head); 0 picks it from the keys
 * and the compute units (about 4 work-groups per compute unit, at least one
 * chunk of keys per split, at most 256 splits).  Local memory of pass 1:
 * 4 * (R4(seq_q * head_dim) + R4(head_dim) + seq_q * (tk + wg +
 * R4(head_dim_v))) bytes (R4: rounded up to 4).  The defaults were tuned on
 * PoCL's CPU device (16 items beat 32 - 128 there); GPUs likely want 64 or
 * more.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "opencl/variant.h"

/* Most query rows per head the kernels take (DC_MAXQ). */
#define MAX_Q      4
#define MAX_SPLITS 256
/* Work-groups per compute unit the automatic split count aims at. */
#define GROUPS_PER_CU 4

enum { P_WG, P_TK, P_CWG, P_SPLITS, P_MAX_SEQ_Q, N_PARAMS };

static const attn_cl_param params[N_PARAMS] = {
    {"wg", "DC_WG", 1, 1024, 16, 0, "work-items per work-group of pass 1"},
    {"tk", "DC_TK", 1, 4096, 256, 0,
     "keys per chunk of pass 1, a multiple "
     "of wg"},
    {"cwg", NULL, 1, 1024, 64, 0, "work-items per combined row (pass 2)"},
    {"splits", NULL, 0, MAX_SPLITS, 0, ATTN_CL_PARAM_RUNTIME,
     "key splits per (batch, query head); 0: from the compute units"},
    {"max_seq_q", NULL, 0, 64, MAX_Q, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant up to this many query rows (0: never)"},
};

typedef struct geom {
    size_t local_bytes; /* pass 1's scratch argument */
    cl_ulong po_off;    /* floats before the partial O */
    cl_int key_lo, split_len, n_split;
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "decode geometry");

static int check(const attn_cl_tuning *t, char *why, size_t cap)
{
    if (t->v[P_TK] % t->v[P_WG] != 0) {
        snprintf(why, cap, "tk (%d) must be a multiple of wg (%d)", t->v[P_TK],
                 t->v[P_WG]);
        return 0;
    }
    return 1;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    (void)lim;
    (void)t;
    if (d->seq_q > MAX_Q)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel takes at most %d query rows, "
                         "not %d",
                         MAX_Q, d->seq_q);
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q exceeds the decode kernel's range");
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
    (void)lim;
    (void)t;
    (void)d;
    snprintf(buf, cap, " -DDC_MAXQ=%d", MAX_Q);
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    size_t side =
        lim->items[0] && lim->items[0] < lim->wg ? lim->items[0] : lim->wg;
    while ((size_t)t->v[P_WG] > side && t->v[P_WG] > 1)
        t->v[P_WG] /= 2;
    while ((size_t)t->v[P_CWG] > side && t->v[P_CWG] > 1)
        t->v[P_CWG] /= 2;
    /* tk stays a multiple of wg (and at least wg). */
    t->v[P_TK] = t->v[P_TK] / t->v[P_WG] * t->v[P_WG];
    return 1;
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    const int split_ok = b->kwg[0] >= (size_t)t->v[P_WG];
    const int comb_ok = b->kwg[1] >= (size_t)t->v[P_CWG];
    (void)lim;
    if (split_ok && comb_ok)
        return 1;
    if ((split_ok || t->v[P_WG] == 1) && (comb_ok || t->v[P_CWG] == 1))
        return -1;
    if (!split_ok && t->v[P_WG] > 1)
        t->v[P_WG] /= 2;
    if (!comb_ok && t->v[P_CWG] > 1)
        t->v[P_CWG] /= 2;
    t->v[P_TK] = t->v[P_TK] / t->v[P_WG] * t->v[P_WG];
    return 0;
}

static uint64_t r4(uint64_t x)
{
    return (x + 3) / 4 * 4;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    /* Every factor is below 2^31 and the tuning's below 2^13, so no
     * product here overflows 64 bits. */
    const uint64_t nq = (uint64_t)d->seq_q, hd = (uint64_t)d->head_dim,
                   dv = (uint64_t)d->head_dim_v;
    const uint64_t tk = (uint64_t)t->v[P_TK];
    const uint64_t floats =
        r4(nq * hd) + r4(hd) + nq * (tk + (uint64_t)t->v[P_WG] + r4(dv));
    const uint64_t bh = (uint64_t)d->batch * (uint64_t)d->heads_q;
    const uint64_t rows = bh * nq;
    const int window = attn_cl_window(d);
    const int off = (int)attn_causal_diag(d);
    const uint64_t max_alloc = lim->max_alloc ? lim->max_alloc : UINT64_MAX;
    const unsigned cus = lim->compute_units ? lim->compute_units : 1;
    uint64_t span, n_split, split_len, per_split;
    geom *g = out;

    *scratch = 0;
    /* The kernel's key indices (plus one chunk) stay below INT_MAX. */
    if (d->seq_kv > INT_MAX - t->v[P_TK] || rows > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel takes at most %d keys and %d "
                         "query rows in all",
                         INT_MAX - t->v[P_TK], INT_MAX);
    if (nq * hd > INT_MAX || nq * r4(dv) > INT_MAX ||
        (b && (floats * sizeof(float) > lim->local_mem ||
               lim->local_mem - floats * sizeof(float) < b->klocal[0])))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the decode kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)lim->local_mem);

    /* Keys some row may see: [key_lo, seq_kv). */
    g->key_lo = window > 0 && off - window + 1 > 0 ? off - window + 1 : 0;
    span = (uint64_t)(d->seq_kv - g->key_lo);
    if (t->v[P_SPLITS] > 0) {
        n_split = (uint64_t)t->v[P_SPLITS];
    } else {
        const uint64_t target = (uint64_t)cus * GROUPS_PER_CU;
        const uint64_t chunks = (span + tk - 1) / tk;
        n_split = (target + bh - 1) / bh;
        if (n_split > chunks)
            n_split = chunks;
    }
    if (n_split > MAX_SPLITS)
        n_split = MAX_SPLITS;
    /* The partial buffer fits one allocation. */
    per_split = rows * (2 + dv) * sizeof(float);
    if (per_split > max_alloc)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel's partial results (%llu bytes) "
                         "exceed the device's largest allocation",
                         (unsigned long long)per_split);
    if (n_split > max_alloc / per_split)
        n_split = max_alloc / per_split;
    if (n_split < 1)
        n_split = 1;
    if (n_split > span)
        n_split = span;
    /* Whole chunks per split, then as many splits as that takes. */
    split_len = (span + n_split - 1) / n_split;
    split_len = (split_len + tk - 1) / tk * tk;
    n_split = (span + split_len - 1) / split_len;
    if (split_len > INT_MAX)
        split_len = INT_MAX;

    g->n_split = (cl_int)n_split;
    g->split_len = (cl_int)split_len;
    g->po_off = (cl_ulong)(2 * rows * n_split);
    g->local_bytes = (size_t)(floats * sizeof(float));
    *scratch = rows * n_split * (2 + dv) * sizeof(float);
    return ATTN_OK;
}

#define KARG           ATTN_CL_KARG
#define N_SPLIT_ARGS   35
#define N_COMBINE_ARGS 14

/* Pass 1 in blocks of at most ATTN_CL_GRID_MAX query heads, then pass 2 in
 * blocks of at most ATTN_CL_GRID_MAX rows, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    const attn_cl_tuning *t = &L->b->t;
    /* With a bias the scores stay natural (decode.cl), and so do the
     * maxima pass 2 combines. */
    const cl_int nat = L->bias_kind != 0;
    const cl_float scale2 = !nat ? L->scale2 : L->additive ? 1.0f : L->scale;
    const attn_cl_karg sargs[N_SPLIT_ARGS - 2] = {
        KARG(L->t->q),      KARG(L->q_off),      KARG(L->t->k),
        KARG(L->k_off),     KARG(L->t->v),       KARG(L->v_off),
        KARG(L->scratch),   KARG(L->bias),       KARG(L->bias_kind),
        KARG(L->bias_sb),   KARG(L->bias_sh),    KARG(L->bias_sq),
        KARG(L->kv_len),    KARG(L->has_kv_len), KARG(L->addw),
        KARG(L->additive),  KARG(scale2),        KARG(L->heads_q),
        KARG(L->heads_kv),  KARG(L->seq_q),      KARG(L->seq_kv),
        KARG(L->head_dim),  KARG(L->head_dim_v), KARG(L->causal),
        KARG(L->window),    KARG(L->diag),       KARG(g->key_lo),
        KARG(g->split_len), KARG(g->n_split),    KARG(g->po_off),
        KARG(L->q_st),      KARG(L->k_st),       KARG(L->v_st)};
    const attn_cl_karg cargs[N_COMBINE_ARGS - 1] = {
        KARG(L->scratch), KARG(g->po_off),     KARG(L->t->o),
        KARG(L->o_off),   KARG(L->lse),        KARG(L->lse_off),
        KARG(L->has_lse), KARG(L->head_dim_v), KARG(g->n_split),
        KARG(nat),        KARG(L->heads_q),    KARG(L->seq_q),
        KARG(L->o_st)};
    const size_t bh_total = (size_t)L->d->batch * (size_t)L->heads_q;
    const size_t rows = bh_total * (size_t)L->seq_q;
    const size_t wg = (size_t)t->v[P_WG], cwg = (size_t)t->v[P_CWG];
    cl_kernel split = L->k[0], combine = L->k[1];
    cl_event prev = NULL;
    cl_int rc = attn_cl_set_args(split, 0, sargs, N_SPLIT_ARGS - 2);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(split, N_SPLIT_ARGS - 1, g->local_bytes, NULL);
    if (rc == CL_SUCCESS)
        rc = attn_cl_set_args(combine, 0, cargs, N_COMBINE_ARGS - 1);
    if (rc == CL_SUCCESS)
        rc = attn_cl_launch_blocks(L->queue, split, N_SPLIT_ARGS - 2, bh_total,
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

static const char *const sources[] = {"decode.cl", "combine.cl", NULL};
static const char *const kernels[] = {"attn_decode_split", "attn_combine",
                                      NULL};

const attn_cl_variant attn_cl_variant_decode = {
    .name = "decode",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "a few query rows against many keys: keys split over "
               "work-groups, partials merged by their log-sum-exp",
    .path = ATTN_PATH_AUTO,
    .universal = 0,
    .sources = sources,
    .kernels = kernels,
    .params = params,
    .n_params = N_PARAMS,
    .check = check,
    .supports = supports,
    .prefer = prefer,
    .defines = defines,
    .fit_device = fit_device,
    .fit_kernels = fit_kernels,
    .plan = plan,
    .launch = launch,
};
