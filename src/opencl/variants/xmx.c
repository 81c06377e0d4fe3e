/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "xmx" (cl/xmx.cl): fused attention on Intel XMX matrix units
 * (DPAS through cl_intel_subgroup_matrix_multiply_accumulate, subgroups of
 * 8): 8 subgroups of 8 query rows, Q and O in registers, K and V tiles in
 * local memory, P passed from the scores' accumulators to the second
 * product in registers.  It computes at the context's precision (attn.h)
 * and never more exactly: it takes F16 storage when TF32 or BF16 is asked
 * (f16 products: Q K^T exact, P rounded to f16, 11 significant bits, TF32
 * class), and BF16 storage when BF16 is asked (bfloat16 products, the
 * same kernel built with ATTN_BF16: Q K^T exact, P rounded to bfloat16,
 * 8 significant bits, BF16 class; TF32 asked declines it, since rounding
 * P to 8 bits exceeds TF32's bound).  F32 storage is declined: the TF32
 * DPAS exists only on devices whose subgroups are 16 wide (Xe-HPC), which
 * this kernel is not written for.
 * Head sizes 16 to 128 in steps of 16 (head_dim_v the same), dot-product
 * scores, strided tensors (ATTN_ROW); every mask, GQA, kv_len, bias and
 * lse.
 *
 * Where it runs: AUTO takes it on devices that list the extension and
 * whose smallest subgroup is 8 wide (Xe-HPG: Arc, DG2), and a failed
 * build sends AUTO on to the next variant.  Forced by name on any other
 * device it builds with XM_EMU=1: the same kernel with the matrix
 * operation and the subgroup reductions computed through local memory, as
 * the extension defines them (slow; it is there to test the kernel's
 * logic).
 */
#include <limits.h>
#include <stdio.h>

#include "opencl/variant.h"

enum { P_BC, P_MIN_SEQ_KV, N_PARAMS };

#define WG 64 /* 8 subgroups of 8 */
#define BR 64 /* query rows per work-group */

static const attn_cl_param params[N_PARAMS] = {
    {"bc", NULL, 16, 64, 32, ATTN_CL_PARAM_POW2,
     "keys per tile, at most (halved while the tiles do not fit local "
     "memory)"},
    {"min_seq_kv", NULL, 0, 1 << 30, 0, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant from this many keys on"},
};

typedef struct geom {
    int bc; /* keys per tile, as built for the shape */
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "xmx geometry");

/* Whether the precision asked permits the kernel's products for d: f16
 * products with P rounded to f16 (F16 storage) are TF32 class, so TF32 or
 * BF16 asked; bfloat16 products with P rounded to bfloat16 (BF16 storage)
 * are BF16 class, so BF16 asked only. */
static int takes(const attn_cl_limits *lim, const attn_sdpa_desc *d)
{
    const attn_precision p = lim->precision;
    if (d->dtype == ATTN_F16)
        return p == ATTN_PRECISION_TF32 || p == ATTN_PRECISION_BF16;
    return d->dtype == ATTN_BF16 && p == ATTN_PRECISION_BF16;
}

/* The device runs the DPAS build (else the emulated one). */
static int native_xmx(const attn_cl_limits *lim)
{
    return lim->intel_xmx == 8;
}

/* Bytes of the kernel's local arrays (cl/xmx.cl) for one build. */
static uint64_t local_bytes(int hd, int bc, int emu)
{
    const uint64_t kw = (uint64_t)bc * ((uint64_t)hd / 2 + 1),
                   pw = (uint64_t)BR * (uint64_t)bc;
    /* Q's fragments above head size 64 (cl/xmx.cl XM_QL). */
    const uint64_t qw = hd > 64 ? (uint64_t)hd / 16 * 512 : 0;
    const uint64_t bytes =
        ((kw > pw ? kw : pw) + (uint64_t)bc / 16 * (uint64_t)hd * 8 + qw) * 4 +
        2 * sizeof(int);
    return bytes + (emu ? 3 * 8 * 64 * 4 : 0);
}

/* The largest tile (up to the tuning's) that fits local memory; 0 when
 * none does. */
static int tile_of(const attn_cl_limits *lim, const attn_cl_tuning *t,
                   const attn_sdpa_desc *d)
{
    for (int bc = t->v[P_BC]; bc >= 16; bc /= 2)
        if (local_bytes(d->head_dim, bc, !native_xmx(lim)) <= lim->local_mem)
            return bc;
    return 0;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    const int hd = d->head_dim;
    if (d->dtype != ATTN_F16 && d->dtype != ATTN_BF16)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the xmx kernel takes F16 and BF16 storage only (the "
                         "TF32 matrix operation needs subgroups of 16)");
    if (!takes(lim, d))
        return attn_fail(
            err, ATTN_ERR_UNSUPPORTED,
            "the xmx kernel computes %s products (%s class) and the context "
            "asks %s (attn_options.precision, ATTN_PRECISION)",
            d->dtype == ATTN_F16 ? "f16" : "bfloat16",
            d->dtype == ATTN_F16 ? "TF32" : "BF16",
            attn_precision_name(lim->precision));
    if (hd != d->head_dim_v || hd % 16 != 0 || hd < 16 || hd > 128)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the xmx kernel is built for head sizes 16 to 128 in "
                         "steps of 16 (head_dim_v the same), not %d / %d",
                         hd, d->head_dim_v);
    if (d->score != ATTN_SCORE_DOT)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the xmx kernel takes dot-product scores only (the "
                         "additive score runs on the other variants)");
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX ||
        d->seq_q > INT_MAX - 4096 || d->seq_kv > INT_MAX - 4096)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the xmx kernel's indices would overflow");
    if (!attn_cl_fits_wg(lim, WG))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the xmx kernel's work-group (%d items) exceeds the "
                         "device's %zu",
                         WG, lim->wg);
    if (!tile_of(lim, t, d))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d needs more local memory than the "
                         "device has for the xmx kernel (%llu bytes)",
                         hd, (unsigned long long)lim->local_mem);
    return ATTN_OK;
}

static int prefer(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d)
{
    return native_xmx(lim) && d->seq_kv >= t->v[P_MIN_SEQ_KV];
}

static attn_precision precision(const attn_cl_limits *lim,
                                const attn_sdpa_desc *d)
{
    (void)lim;
    return d->dtype == ATTN_BF16 ? ATTN_PRECISION_BF16 : ATTN_PRECISION_TF32;
}

static void defines(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap)
{
    /* Natively, 256 registers per thread (Intel's large register file):
     * O, S and the fragments need more than 128 at subgroup size 8.  The
     * storage type (ATTN_F16 / ATTN_BF16, which picks the f16 or the
     * bfloat16 DPAS) comes with every program's options. */
    snprintf(buf, cap, " -DXM_D=%d -DXM_BC=%d -DXM_EMU=%d%s", d->head_dim,
             tile_of(lim, t, d), !native_xmx(lim),
             native_xmx(lim) ? " -cl-intel-256-GRF-per-thread" : "");
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    (void)t;
    return attn_cl_fits_wg(lim, WG);
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    (void)lim;
    (void)t;
    return b->kwg[0] >= WG ? 1 : -1;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    geom *g = out;
    *scratch = 0;
    g->bc = tile_of(lim, t, d);
    return attn_cl_tile_fits(lim, b, "xmx", g->bc, d->head_dim, err);
}

/* One launch per block of at most ATTN_CL_GRID_MAX query heads, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    return attn_cl_launch_matrix(L, BR, WG, last);
}

static const char *const sources[] = {"xmx.cl", NULL};
static const char *const kernels[] = {"attn_xmx", NULL};

const attn_cl_variant attn_cl_variant_xmx = {
    .name = "xmx",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "one pass on Intel XMX matrix units (DPAS, "
               "cl_intel_subgroup_matrix_multiply_accumulate, subgroups of "
               "8) at f16 precision for F16 storage, bfloat16 for BF16; "
               "emulated elsewhere when forced",
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
    .precision = precision,
    .defines = defines,
    .fit_device = fit_device,
    .fit_kernels = fit_kernels,
    .plan = plan,
    .launch = launch,
};
