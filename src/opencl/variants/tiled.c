/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "tiled" (cl/tiled.cl): fused attention shaped for GPUs.  A
 * work-group of tr x tc items takes tr * rr query rows and walks the keys
 * in tiles of tc * cc; each item keeps rr x cc scores and rr x
 * head_dim_v / tc outputs in registers, Q^T, the K/V tile and P in local
 * memory, and loads the next tile while it computes this one.  Head sizes
 * are compile-time constants (32, 64, 96, 128, 256; the other variants
 * take the others).  The local memory a head size needs decides the
 * build: the K and V tiles share one buffer, then cc and then rr are
 * halved, until the work-group fits the device (rows and keys per item as
 * the profile says are the most it gets).  The reductions over a row's tc
 * items (its maximum per tile, its sum at the end) go through subgroup
 * shuffles where the device's compiler has them (parameter sg; NVIDIA's
 * shfl.sync only on work-groups of whole warps), else through local
 * memory.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "opencl/discovery.h"
#include "opencl/variant.h"

enum { P_TR, P_TC, P_RR, P_CC, P_SG, P_MIN_SEQ_KV, N_PARAMS };

/* Values of parameter sg. */
enum { SG_LOCAL, SG_DEVICE, SG_EMULATE };

#define LOG2E 1.44269504088896340736

static const attn_cl_param params[N_PARAMS] = {
    {"tr", "TL_TR", 1, 64, 16, ATTN_CL_PARAM_POW2,
     "rows of work-items in a work-group"},
    {"tc", "TL_TC", 1, 64, 8, ATTN_CL_PARAM_POW2,
     "columns of work-items (keys and O columns are shared among them)"},
    /* rr and cc are built as the head size lets them (the defines hook). */
    {"rr", NULL, 1, 16, 4, ATTN_CL_PARAM_POW2,
     "query rows per work-item, at most"},
    {"cc", NULL, 1, 16, 4, ATTN_CL_PARAM_POW2,
     "keys per work-item and tile, at most"},
    {"sg", NULL, 0, 2, SG_DEVICE, ATTN_CL_PARAM_CHOICE,
     "row reductions: 0 through local memory, 1 by subgroup shuffles where "
     "the device has them (else local memory), 2 by shuffles emulated "
     "through local memory (tests)"},
    {"min_seq_kv", NULL, 0, 1 << 30, 0, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant from this many keys on"},
};

/* The head sizes built in. */
static const int HEAD_DIMS[] = {32, 64, 96, 128, 256};

typedef struct geom {
    int rr, cc, kvs; /* as built for the shape */
    int br;          /* query rows per work-group */
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "tiled geometry");

static int head_dim_ok(int x)
{
    for (size_t i = 0; i < sizeof HEAD_DIMS / sizeof HEAD_DIMS[0]; i++)
        if (x == HEAD_DIMS[i])
            return 1;
    return 0;
}

/* How the kernel reduces over a row's items (cl/tiled.cl TL_SG): 0 local
 * memory, else the ATTN_CL_SHUFFLE_* it is built with. */
static int sg_of(const attn_cl_limits *lim, const int *v)
{
    const int wg = v[P_TR] * v[P_TC];
    if (v[P_TC] == 1 || v[P_SG] == SG_LOCAL)
        return 0;
    if (v[P_SG] == SG_EMULATE)
        return ATTN_CL_SHUFFLE_EMU;
    /* shfl.sync names every lane of a warp: whole warps only. */
    if (lim->shuffle == ATTN_CL_SHUFFLE_PTX)
        return wg % 32 == 0 && v[P_TC] <= 32 ? ATTN_CL_SHUFFLE_PTX : 0;
    return lim->shuffle == ATTN_CL_SHUFFLE_INTEL ||
                   lim->shuffle == ATTN_CL_SHUFFLE_KHR
               ? lim->shuffle
               : 0;
}

/* Bytes of the kernel's local arrays (cl/tiled.cl) for one build. */
static uint64_t local_bytes(const int *v, int rr, int cc, int kvs, int hd,
                            int hdv, int sg)
{
    const uint64_t tr = (uint64_t)v[P_TR], tc = (uint64_t)v[P_TC];
    const uint64_t br = tr * (uint64_t)rr, bc = tc * (uint64_t)cc;
    const uint64_t dc = ((uint64_t)hdv + tc - 1) / tc, hdvp = dc * tc;
    const uint64_t kt = (uint64_t)hd * bc, vs = bc * hdvp;
    const uint64_t floats = (uint64_t)hd * br +
                            (kvs ? (kt > vs ? kt : vs) : kt + vs) +
                            br * (bc + 1) + br * tc + (uint64_t)hd;
    return floats * sizeof(float) + 2 * sizeof(int) + (sg ? sizeof(int) : 0) +
           (sg == ATTN_CL_SHUFFLE_EMU ? 2 * (uint64_t)rr * tr * tc * 4 : 0);
}

/* The build for d on a device with local_mem bytes: the largest rows and
 * keys per item (up to the tuning's) whose work-group fits; 0 when none
 * does. */
static int shape_build(const attn_cl_limits *lim, const int *v,
                       const attn_sdpa_desc *d, geom *g)
{
    int rr = v[P_RR], cc = v[P_CC], kvs = 0;
    for (;;) {
        if (local_bytes(v, rr, cc, kvs, d->head_dim, d->head_dim_v,
                        sg_of(lim, v)) <= lim->local_mem)
            break;
        if (!kvs)
            kvs = 1;
        else if (cc > 1)
            cc /= 2;
        else if (rr > 1)
            rr /= 2;
        else
            return 0;
    }
    g->rr = rr;
    g->cc = cc;
    g->kvs = kvs;
    g->br = v[P_TR] * rr;
    return 1;
}

static int check(const attn_cl_tuning *t, char *why, size_t cap)
{
    if (t->v[P_TR] * t->v[P_TC] > 1024) {
        snprintf(why, cap, "tr * tc (%d) must be at most 1024",
                 t->v[P_TR] * t->v[P_TC]);
        return 0;
    }
    return 1;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    geom g;
    if (!head_dim_ok(d->head_dim) || !head_dim_ok(d->head_dim_v))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the tiled kernel is built for head sizes 32, 64, "
                         "96, 128 and 256, not %d / %d",
                         d->head_dim, d->head_dim_v);
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX ||
        d->seq_q > INT_MAX - 4096 || d->seq_kv > INT_MAX - 4096)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the tiled kernel's indices would overflow");
    if ((size_t)t->v[P_TR] * (size_t)t->v[P_TC] > lim->wg)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the tiled kernel's work-group (%d items) exceeds the "
                         "device's %zu",
                         t->v[P_TR] * t->v[P_TC], lim->wg);
    if (!shape_build(lim, t->v, d, &g))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the tiled kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)lim->local_mem);
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
    geom g = {1, 1, 1, 1};
    shape_build(lim, t->v, d, &g);
    snprintf(buf, cap,
             " -DTL_HD=%d -DTL_HDV=%d -DTL_RR=%d -DTL_CC=%d -DTL_KVS=%d "
             "-DTL_FMA=%d -DTL_SG=%d",
             d->head_dim, d->head_dim_v, g.rr, g.cc, g.kvs, lim->fma,
             sg_of(lim, t->v));
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    /* The work-group is fixed at compile time (reqd_work_group_size). */
    const size_t side = lim->items[0] ? lim->items[0] : lim->wg;
    return (size_t)t->v[P_TR] * (size_t)t->v[P_TC] <= lim->wg &&
           (size_t)t->v[P_TR] * (size_t)t->v[P_TC] <= side;
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    (void)lim;
    return b->kwg[0] >= (size_t)t->v[P_TR] * (size_t)t->v[P_TC] ? 1 : -1;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    geom *g = out;
    *scratch = 0;
    if (!shape_build(lim, t->v, d, g))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the tiled kernel does not fit the device's local "
                         "memory for head_dim %d",
                         d->head_dim);
    /* The kernel's local arrays are its own: the device must hold them. */
    return attn_cl_local_fits(lim, b, "tiled", err);
}

#define KARG   ATTN_CL_KARG
#define N_ARGS 34

/* One launch per block of at most ATTN_CL_GRID_MAX query heads, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    const attn_cl_tuning *t = &L->b->t;
    /* Without a bias (and for dot scores) the kernel works in base 2. */
    const cl_int nat = L->additive || L->bias_kind != 0;
    const cl_float qscale =
        nat ? L->scale : (cl_float)((double)L->scale * LOG2E);
    const attn_cl_karg args[N_ARGS - 1] = {
        KARG(L->t->q),      KARG(L->q_off),    KARG(L->t->k),
        KARG(L->k_off),     KARG(L->t->v),     KARG(L->v_off),
        KARG(L->t->o),      KARG(L->o_off),    KARG(L->lse),
        KARG(L->lse_off),   KARG(L->has_lse),  KARG(L->bias),
        KARG(L->bias_kind), KARG(L->bias_sb),  KARG(L->bias_sh),
        KARG(L->bias_sq),   KARG(L->kv_len),   KARG(L->has_kv_len),
        KARG(L->addw),      KARG(L->additive), KARG(qscale),
        KARG(nat),          KARG(L->heads_q),  KARG(L->heads_kv),
        KARG(L->seq_q),     KARG(L->seq_kv),   KARG(L->causal),
        KARG(L->window),    KARG(L->diag),     KARG(L->q_st),
        KARG(L->k_st),      KARG(L->v_st),     KARG(L->o_st)};
    const size_t wg = (size_t)t->v[P_TR] * (size_t)t->v[P_TC];
    const size_t blocks = ((size_t)L->seq_q + (size_t)g->br - 1) / g->br;
    cl_kernel k = L->k[0];
    cl_int rc = attn_cl_set_args(k, 0, args, N_ARGS - 1);
    if (rc != CL_SUCCESS) {
        *last = NULL;
        return rc;
    }
    return attn_cl_launch_heads(L, k, N_ARGS - 1, blocks, wg, last);
}

static const char *const sources[] = {"tiled.cl", NULL};
static const char *const kernels[] = {"attn_tiled", NULL};

const attn_cl_variant attn_cl_variant_tiled = {
    .name = "tiled",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "one pass, register-tiled for GPUs: scores and outputs in "
               "registers, Q, K/V and P tiles in local memory",
    .path = ATTN_PATH_FUSED,
    .universal = 0,
    .per_shape = 1,
    .build_probe = 1,
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
