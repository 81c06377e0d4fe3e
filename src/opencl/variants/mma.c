/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "mma" (cl/mma.cl): fused attention on NVIDIA tensor cores
 * (mma.sync through inline PTX), FlashAttention-2's layout: 4 warps of 16
 * query rows, Q and O in registers, K and V^T tiles in local memory, P
 * passed from the scores' accumulators to the second product in registers.
 * It computes at the context's precision (attn.h) and never more exactly,
 * so it takes a shape only when the precision permits it: TF32 or BF16
 * asked (F16 storage: f16 products with P rounded to f16; F32: TF32
 * products) or 3XTF32 (F32 and BF16 storage).  BF16 storage takes the F32
 * products: a bfloat16 widens to a float exactly and its 8 significant
 * bits fit TF32's 11, so the inputs of both products are the stored values
 * and only P is rounded (to TF32; split in two at 3XTF32); f16 products
 * would not do, since a bfloat16 does not fit f16's range.  Head sizes 32,
 * 64, 96 and 128 (head_dim_v the same), dot-product scores, strided tensors
 * (ATTN_ROW); every mask, GQA, kv_len, bias and lse.
 *
 * Where it runs: AUTO takes it on NVIDIA devices of compute capability 8.0
 * or newer (cl_nv_device_attribute_query), and a failed build (a driver
 * that refuses the inline PTX), or a program whose PTX targets an older
 * GPU, sends AUTO on to the next variant.  Forced
 * by name on any other device it builds with MM_EMU=1: the same kernel
 * with each warp instruction computed through local memory, as the PTX ISA
 * defines it (slow; it is there to test the kernel's logic).
 */
#include <limits.h>
#include <stdio.h>

#include "opencl/discovery.h"
#include "opencl/variant.h"

enum { P_BC, P_MIN_SEQ_KV, N_PARAMS };

#define WG 128 /* 4 warps of 32 */
#define BR 64  /* query rows per work-group */

static const attn_cl_param params[N_PARAMS] = {
    {"bc", NULL, 16, 64, 64, ATTN_CL_PARAM_POW2,
     "keys per tile, at most (halved while the tiles do not fit local "
     "memory)"},
    {"min_seq_kv", NULL, 0, 1 << 30, 0, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant from this many keys on"},
};

typedef struct geom {
    int bc; /* keys per tile, as built for the shape */
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "mma geometry");

/* The products' mode (cl/mma.cl MM_MODE) for d at the precision asked: 1
 * f16 (F16 storage), 2 TF32, 3 3xTF32 (F32 storage, or BF16 widened
 * exactly); 0 when the precision does not permit any. */
static int mode_of(const attn_cl_limits *lim, const attn_sdpa_desc *d)
{
    const attn_precision p = lim->precision;
    if (p == ATTN_PRECISION_TF32 || p == ATTN_PRECISION_BF16)
        return d->dtype == ATTN_F16 ? 1 : 2;
    if (p == ATTN_PRECISION_3XTF32 && d->dtype != ATTN_F16)
        return 3;
    return 0;
}

/* The device runs the tensor-core build (else the emulated one). */
static int native_mma(const attn_cl_limits *lim)
{
    return lim->nv_sm >= 80;
}

/* Bytes of the kernel's local arrays (cl/mma.cl) for one build. */
static uint64_t local_bytes(int mode, int hd, int bc, int emu)
{
    const uint64_t esz = mode == 1 ? 2 : 4;
    const uint64_t dp = (uint64_t)hd + (mode == 1 ? 8 : 4);
    const uint64_t kf = (uint64_t)bc * dp * esz / 4, pf = (uint64_t)BR * bc;
    const uint64_t bytes = (kf > pf ? kf : pf) * 4 +
                           (uint64_t)hd * ((uint64_t)bc + 8) * esz +
                           2 * sizeof(int);
    return bytes + (emu ? (4 * 256 + 4 * 128 + WG) * 4 : 0);
}

/* The largest tile (up to the tuning's) that fits local memory; 0 when
 * none does. */
static int tile_of(const attn_cl_limits *lim, const attn_cl_tuning *t,
                   const attn_sdpa_desc *d)
{
    const int mode = mode_of(lim, d);
    for (int bc = t->v[P_BC]; bc >= 16; bc /= 2)
        if (local_bytes(mode ? mode : 2, d->head_dim, bc, !native_mma(lim)) <=
            lim->local_mem)
            return bc;
    return 0;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    const int hd = d->head_dim;
    if (!mode_of(lim, d))
        return attn_fail(
            err, ATTN_ERR_UNSUPPORTED,
            "the mma kernel computes at TF32 (F16 storage: f16 products) "
            "or 3XTF32 (F32 or BF16 storage), and the context asks %s "
            "(attn_options.precision, ATTN_PRECISION)",
            attn_precision_name(lim->precision));
    if (hd != d->head_dim_v || (hd != 32 && hd != 64 && hd != 96 && hd != 128))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the mma kernel is built for head sizes 32, 64, 96 "
                         "and 128 (head_dim_v the same), not %d / %d",
                         hd, d->head_dim_v);
    if (d->score != ATTN_SCORE_DOT)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the mma kernel takes dot-product scores only (the "
                         "additive score runs on the other variants)");
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX ||
        d->seq_q > INT_MAX - 4096 || d->seq_kv > INT_MAX - 4096)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the mma kernel's indices would overflow");
    if (!attn_cl_fits_wg(lim, WG))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the mma kernel's work-group (%d items) exceeds the "
                         "device's %zu",
                         WG, lim->wg);
    if (!tile_of(lim, t, d))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d needs more local memory than the "
                         "device has for the mma kernel (%llu bytes)",
                         hd, (unsigned long long)lim->local_mem);
    return ATTN_OK;
}

static int prefer(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d)
{
    return native_mma(lim) && d->seq_kv >= t->v[P_MIN_SEQ_KV];
}

static attn_precision precision(const attn_cl_limits *lim,
                                const attn_sdpa_desc *d)
{
    return mode_of(lim, d) == 3 ? ATTN_PRECISION_3XTF32 : ATTN_PRECISION_TF32;
}

static void defines(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap)
{
    snprintf(buf, cap, " -DMM_D=%d -DMM_BC=%d -DMM_MODE=%d -DMM_EMU=%d",
             d->head_dim, tile_of(lim, t, d), mode_of(lim, d),
             !native_mma(lim));
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

/* Built for tensor cores, the program must be PTX for sm_80 or newer (what
 * mma.sync needs); a binary that is not PTX says nothing and passes. */
static attn_status check_built(const attn_cl_limits *lim,
                               const attn_cl_built *b, attn_err *err)
{
    int target;
    if (!native_mma(lim))
        return ATTN_OK;
    target = attn_cl_ptx_target(b->prog);
    if (target > 0 && target < 80)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the mma program was built as PTX for sm_%d; its "
                         "mma.sync needs sm_80 or newer",
                         target);
    return ATTN_OK;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    geom *g = out;
    *scratch = 0;
    g->bc = tile_of(lim, t, d);
    /* The kernel's local arrays are its own: the device must hold them. */
    return attn_cl_tile_fits(lim, b, "mma", g->bc, d->head_dim, err);
}

/* One launch per block of at most ATTN_CL_GRID_MAX query heads, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    return attn_cl_launch_matrix(L, BR, WG, last);
}

static const char *const sources[] = {"mma.cl", NULL};
static const char *const kernels[] = {"attn_mma", NULL};

const attn_cl_variant attn_cl_variant_mma = {
    .name = "mma",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "one pass on NVIDIA tensor cores (mma.sync, inline PTX) at "
               "TF32 / 3XTF32 / f16 precision, FlashAttention-2 layout; "
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
    .check_built = check_built,
    .plan = plan,
    .launch = launch,
};
