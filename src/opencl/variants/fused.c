/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "fused" (cl/fused.cl): one kernel, one pass over the keys with an
 * online softmax, no score matrix (O(seq) extra memory).  A work-group of
 * wg items takes wg * vw * nv query rows; each item holds its rows in nv
 * vectors of vw lanes (one row per lane).  Keys are visited in tiles of tk,
 * scored kb at a time; O is accumulated cb columns at a time.  Local memory
 * per work-group: 4 * (tk * (head_dim + head_dim_v') + head_dim + wg * vw *
 * nv * (head_dim + head_dim_v')) bytes (head_dim_v' = head_dim_v rounded up
 * to cb, every part to 16 floats), plus the kernel's own.  The defaults
 * were tuned on PoCL's CPU device (16 lanes x 4 vectors, one item per
 * work-group); GPUs want vw 1 and many items.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "opencl/variant.h"

enum { P_VW, P_NV, P_WG, P_TK, P_KB, P_CB, P_MIN_SEQ_KV, N_PARAMS };

/* Bytes of the private score tile (tk x vw x nv floats) of one item. */
#define PRIVATE_MAX 65536

static const attn_cl_param params[N_PARAMS] = {
    {"vw", "FA_VW", 1, 16, 16, ATTN_CL_PARAM_POW2,
     "rows per vector (lanes): 1, 2, 4, 8 or 16"},
    {"nv", "FA_NV", 1, 16, 4, 0, "row vectors per work-item"},
    {"wg", "FA_WG", 1, 1024, 1, 0, "work-items per work-group"},
    {"tk", "FA_TK", 1, 1024, 64, 0, "keys per tile, a multiple of kb"},
    {"kb", "FA_KB", 1, 64, 4, 0, "keys per score step"},
    {"cb", "FA_CB", 1, 64, 8, 0, "columns of O per aggregation step"},
    {"min_seq_kv", NULL, 0, 1 << 30, 0, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant from this many keys on"},
};

typedef struct geom {
    size_t local_bytes; /* the lm scratch argument */
    cl_int dvp;         /* head_dim_v rounded up to cb */
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "fused geometry");

static int check(const attn_cl_tuning *t, char *why, size_t cap)
{
    if (t->v[P_TK] % t->v[P_KB] != 0) {
        snprintf(why, cap, "tk (%d) must be a multiple of kb (%d)", t->v[P_TK],
                 t->v[P_KB]);
        return 0;
    }
    if ((long)t->v[P_TK] * t->v[P_VW] * t->v[P_NV] * (long)sizeof(float) >
        PRIVATE_MAX) {
        snprintf(why, cap, "tk * vw * nv must be at most %d",
                 PRIVATE_MAX / (int)sizeof(float));
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
                         "batch * heads_q exceeds the fused kernel's range");
    return ATTN_OK;
}

static int prefer(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d)
{
    (void)lim;
    return d->seq_kv >= t->v[P_MIN_SEQ_KV];
}

static void defines(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap)
{
    (void)t;
    (void)d;
    /* fma() is one instruction where the device has it; mad() elsewhere
     * (PoCL does not contract mad into an FMA). */
    snprintf(buf, cap, " -DFA_FMA=%d", lim->fma);
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    size_t side =
        lim->items[0] && lim->items[0] < lim->wg ? lim->items[0] : lim->wg;
    while ((size_t)t->v[P_WG] > side && t->v[P_WG] > 1)
        t->v[P_WG] /= 2;
    return 1;
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    (void)lim;
    if (b->kwg[0] >= (size_t)t->v[P_WG])
        return 1;
    if (t->v[P_WG] == 1)
        return -1;
    t->v[P_WG] /= 2;
    return 0;
}

static uint64_t r16(uint64_t x)
{
    return (x + 15) / 16 * 16;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    /* Every factor is below 2^31 and the tuning's below 2^11, so no
     * product here overflows 64 bits. */
    const uint64_t br = (uint64_t)t->v[P_VW] * (uint64_t)t->v[P_NV];
    const uint64_t tk = (uint64_t)t->v[P_TK], wg = (uint64_t)t->v[P_WG];
    const uint64_t cb = (uint64_t)t->v[P_CB];
    const uint64_t hd = (uint64_t)d->head_dim;
    const uint64_t dv = ((uint64_t)d->head_dim_v + cb - 1) / cb * cb;
    const uint64_t floats = r16(tk * hd) + r16(tk * dv) + r16(hd) +
                            wg * (r16(hd * br) + r16(dv * br));
    /* The kernel's row and key indices (rounded up to whole work-groups
     * and tiles, shifted by the causal diagonal) stay below INT_MAX. */
    const int seq_max =
        INT_MAX - t->v[P_WG] * t->v[P_VW] * t->v[P_NV] - t->v[P_TK];
    geom *g = out;
    *scratch = 0;
    if (d->seq_q > seq_max || d->seq_kv > seq_max)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the fused kernel takes sequences of at most %d",
                         seq_max);
    if (tk * hd > INT_MAX || tk * dv > INT_MAX || hd * br > INT_MAX ||
        dv * br > INT_MAX || floats > SIZE_MAX / sizeof(float))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d exceed the fused "
                         "kernel's range",
                         d->head_dim, d->head_dim_v);
    if (b && (floats * sizeof(float) > lim->local_mem ||
              lim->local_mem - floats * sizeof(float) < b->klocal[0]))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the fused kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)lim->local_mem);
    g->local_bytes = (size_t)(floats * sizeof(float));
    g->dvp = (cl_int)dv;
    return ATTN_OK;
}

#define KARG   ATTN_CL_KARG
#define N_ARGS 37

/* One launch per block of at most ATTN_CL_GRID_MAX query heads, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    const attn_cl_tuning *t = &L->b->t;
    /* With a bias the scores stay natural (fused.cl). */
    const cl_float scale2 = !L->bias_kind ? L->scale2
                            : L->additive ? 1.0f
                                          : L->scale;
    const attn_cl_karg args[N_ARGS - 2] = {
        KARG(L->t->q),      KARG(L->q_off),    KARG(L->t->k),
        KARG(L->k_off),     KARG(L->t->v),     KARG(L->v_off),
        KARG(L->t->o),      KARG(L->o_off),    KARG(L->lse),
        KARG(L->lse_off),   KARG(L->has_lse),  KARG(L->bias),
        KARG(L->bias_kind), KARG(L->bias_sb),  KARG(L->bias_sh),
        KARG(L->bias_sq),   KARG(L->kv_len),   KARG(L->has_kv_len),
        KARG(L->addw),      KARG(L->additive), KARG(scale2),
        KARG(L->heads_q),   KARG(L->heads_kv), KARG(L->seq_q),
        KARG(L->seq_kv),    KARG(L->head_dim), KARG(L->head_dim_v),
        KARG(g->dvp),       KARG(L->causal),   KARG(L->window),
        KARG(L->diag),      KARG(L->q_st),     KARG(L->k_st),
        KARG(L->v_st),      KARG(L->o_st)};
    const size_t rows =
        (size_t)t->v[P_WG] * (size_t)t->v[P_VW] * (size_t)t->v[P_NV];
    const size_t blocks = ((size_t)L->seq_q + rows - 1) / rows;
    cl_kernel k = L->k[0];
    cl_int rc = attn_cl_set_args(k, 0, args, N_ARGS - 2);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(k, N_ARGS - 1, g->local_bytes, NULL);
    if (rc != CL_SUCCESS) {
        *last = NULL;
        return rc;
    }
    return attn_cl_launch_heads(L, k, N_ARGS - 2, blocks, (size_t)t->v[P_WG],
                                last);
}

static const char *const sources[] = {"fused.cl", NULL};
static const char *const kernels[] = {"attn_fused", NULL};

const attn_cl_variant attn_cl_variant_fused = {
    .name = "fused",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "one pass over K/V tiles with an online softmax; rows in "
               "vector lanes (CPU-shaped)",
    .path = ATTN_PATH_FUSED,
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
