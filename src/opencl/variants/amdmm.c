/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Variant "amdmm" (cl/amdmm.cl): fused attention on AMD matrix cores
 * through clang's builtins: MFMA on CDNA (gfx908, gfx90a, gfx940-942;
 * wave64) and WMMA on RDNA3 (gfx11xx; wave32).  4 waves of 16 query rows,
 * scores transposed (S^T = K Q^T, O^T = V^T P^T) so that a lane's
 * accumulators belong to one query; K and V^T tiles in local memory.  It
 * computes at the context's precision and never more exactly, so it takes
 * a shape only when the precision permits it: TF32 or BF16 asked (F16
 * storage: f16 products with P rounded to f16; F32 storage: xf32 products,
 * inputs rounded to TF32, on gfx940-942 only: gfx908 / gfx90a MFMA and
 * RDNA3 WMMA have no TF32-class instruction, so F32 is declined there).
 * BF16 storage takes the F32 path: a bfloat16 widens to a float exactly
 * and its 8 significant bits fit TF32's 11, so the products' inputs are
 * the stored values (only P is rounded to TF32); it needs xf32 too, since
 * a bfloat16 does not fit f16's range (the units' BF16 products are not
 * used).  3XTF32 is declined (the mma variant's).  Head sizes 32, 64, 96
 * and 128 (head_dim_v the same), dot-product scores, strided tensors
 * (ATTN_ROW); every mask, GQA, kv_len, bias and lse.
 *
 * Where it runs: AUTO takes it on AMD GPUs whose gfx target (the device
 * name under AMD's OpenCL, attn_cl_amd_gfx) has the unit, built for that
 * unit and wave size; the kernel refuses to compile (#error) where the
 * compiler lacks the builtins or the wave size differs, which sends AUTO
 * on to the next variant.  Forced by name on any other device it builds
 * with AM_EMU=1: the same kernel with each matrix instruction and
 * cross-lane read computed through local memory, in the instructions'
 * register layouts, for the unit the parameter `emulate` names (slow; it
 * is there to test the kernel's logic).
 */
#include <limits.h>
#include <stdio.h>

#include "opencl/discovery.h"
#include "opencl/variant.h"

enum { P_BC, P_EMULATE, P_MIN_SEQ_KV, N_PARAMS };

#define BR 64 /* query rows per work-group: 4 waves of 16 */

static const attn_cl_param params[N_PARAMS] = {
    {"bc", NULL, 16, 64, 64, ATTN_CL_PARAM_POW2,
     "keys per tile, at most (halved while the tiles do not fit local "
     "memory)"},
    {"emulate", NULL, 1, 2, 1, 0,
     "the unit emulated on a device without one (forced by name): 1 MFMA "
     "(wave64), 2 WMMA (wave32)"},
    {"min_seq_kv", NULL, 0, 1 << 30, 0, ATTN_CL_PARAM_RUNTIME,
     "AUTO takes this variant from this many keys on"},
};

typedef struct geom {
    int bc; /* keys per tile, as built for the shape */
    int wg; /* work-items per work-group: 4 waves of the unit's size */
} geom;

_Static_assert(sizeof(geom) <= ATTN_CL_GEOM_BYTES, "amdmm geometry");

/* The device's own unit (ATTN_CL_AMD_MFMA / _WMMA), 0 when it has none
 * and the kernel runs emulated. */
static int native_unit(const attn_cl_limits *lim)
{
    return attn_cl_amd_matrix_unit(lim->amd_gfx);
}

/* The unit the kernel is built for (cl/amdmm.cl AM_UNIT). */
static int unit_of(const attn_cl_limits *lim, const attn_cl_tuning *t)
{
    const int u = native_unit(lim);
    return u ? u : t->v[P_EMULATE];
}

/* Work-items of a work-group: 4 waves. */
static int wg_of(int unit)
{
    return unit == ATTN_CL_AMD_WMMA ? 4 * 32 : 4 * 64;
}

/* The products' mode (cl/amdmm.cl AM_MODE) for d: 1 f16 (F16 storage), 2
 * TF32 (xf32; F32 storage, or BF16 widened exactly); 0 when the precision
 * does not permit them. */
static int mode_of(const attn_cl_limits *lim, const attn_sdpa_desc *d)
{
    const attn_precision p = lim->precision;
    if (p != ATTN_PRECISION_TF32 && p != ATTN_PRECISION_BF16)
        return 0;
    return d->dtype == ATTN_F16 ? 1 : 2;
}

/* Whether the unit has F32 products (xf32): gfx940-942, or the MFMA
 * emulation. */
static int has_xf32(const attn_cl_limits *lim, const attn_cl_tuning *t)
{
    if (native_unit(lim))
        return attn_cl_amd_xf32(lim->amd_gfx);
    return t->v[P_EMULATE] == ATTN_CL_AMD_MFMA;
}

/* Bytes of the kernel's local arrays (cl/amdmm.cl) for one build. */
static uint64_t local_bytes(int mode, int hd, int bc, int unit, int emu)
{
    const uint64_t esz = mode == 1 ? 2 : 4;
    const uint64_t dp = (uint64_t)hd + (mode == 1 ? 8 : 4);
    const uint64_t bcp = (uint64_t)bc + (mode == 1 ? 8 : 4);
    const uint64_t kf = (uint64_t)bc * dp * esz / 4, pf = (uint64_t)BR * bc;
    const uint64_t bytes = (kf > pf ? kf : pf) * 4 +
                           ((uint64_t)hd * bcp * esz + 3) / 4 * 4 +
                           2 * sizeof(int);
    return bytes + (emu ? (4 * 256 + 4 * 256 + (uint64_t)wg_of(unit)) * 4 : 0);
}

/* The largest tile (up to the tuning's) that fits local memory; 0 when
 * none does. */
static int tile_of(const attn_cl_limits *lim, const attn_cl_tuning *t,
                   const attn_sdpa_desc *d)
{
    const int mode = mode_of(lim, d);
    for (int bc = t->v[P_BC]; bc >= 16; bc /= 2)
        if (local_bytes(mode ? mode : 2, d->head_dim, bc, unit_of(lim, t),
                        !native_unit(lim)) <= lim->local_mem)
            return bc;
    return 0;
}

static attn_status supports(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err)
{
    const int hd = d->head_dim, wg = wg_of(unit_of(lim, t));
    if (!mode_of(lim, d))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel computes at TF32 (F16 storage: f16 "
                         "products; F32, BF16: xf32) and the context asks %s "
                         "(attn_options.precision, ATTN_PRECISION)",
                         attn_precision_name(lim->precision));
    if (d->dtype != ATTN_F16 && !has_xf32(lim, t))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel takes F32 and BF16 storage only on "
                         "MFMA with xf32 (gfx940-942); this %s has f16 "
                         "products only",
                         unit_of(lim, t) == ATTN_CL_AMD_WMMA ? "WMMA unit"
                                                             : "MFMA unit");
    if (hd != d->head_dim_v || (hd != 32 && hd != 64 && hd != 96 && hd != 128))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel is built for head sizes 32, 64, 96 "
                         "and 128 (head_dim_v the same), not %d / %d",
                         hd, d->head_dim_v);
    if (d->score != ATTN_SCORE_DOT)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel takes dot-product scores only (the "
                         "additive score runs on the other variants)");
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX ||
        d->seq_q > INT_MAX - 4096 || d->seq_kv > INT_MAX - 4096)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel's indices would overflow");
    if (!attn_cl_fits_wg(lim, (size_t)wg))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the amdmm kernel's work-group (%d items) exceeds "
                         "the device's %zu",
                         wg, lim->wg);
    if (!tile_of(lim, t, d))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d needs more local memory than the "
                         "device has for the amdmm kernel (%llu bytes)",
                         hd, (unsigned long long)lim->local_mem);
    return ATTN_OK;
}

static int prefer(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d)
{
    return native_unit(lim) && d->seq_kv >= t->v[P_MIN_SEQ_KV];
}

static attn_precision precision(const attn_cl_limits *lim,
                                const attn_sdpa_desc *d)
{
    (void)lim;
    (void)d;
    return ATTN_PRECISION_TF32;
}

static void defines(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap)
{
    snprintf(buf, cap,
             " -DAM_D=%d -DAM_BC=%d -DAM_UNIT=%d -DAM_MODE=%d -DAM_EMU=%d",
             d->head_dim, tile_of(lim, t, d), unit_of(lim, t), mode_of(lim, d),
             !native_unit(lim));
}

static int fit_device(const attn_cl_limits *lim, attn_cl_tuning *t)
{
    return attn_cl_fits_wg(lim, (size_t)wg_of(unit_of(lim, t)));
}

static int fit_kernels(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t)
{
    return b->kwg[0] >= (size_t)wg_of(unit_of(lim, t)) ? 1 : -1;
}

static attn_status plan(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *out, uint64_t *scratch, attn_err *err)
{
    geom *g = out;
    *scratch = 0;
    g->bc = tile_of(lim, t, d);
    g->wg = wg_of(unit_of(lim, t));
    /* The kernel's local arrays are its own: the device must hold them. */
    return attn_cl_tile_fits(lim, b, "amdmm", g->bc, d->head_dim, err);
}

/* One launch per block of at most ATTN_CL_GRID_MAX query heads, chained. */
static cl_int launch(const attn_cl_launch *L, cl_event *last)
{
    const geom *g = L->geom;
    return attn_cl_launch_matrix(L, BR, (size_t)g->wg, last);
}

static const char *const sources[] = {"amdmm.cl", NULL};
static const char *const kernels[] = {"attn_amdmm", NULL};

const attn_cl_variant attn_cl_variant_amdmm = {
    .name = "amdmm",
    .mask_shapes = 1,
    .strides = 1,
    .summary = "one pass on AMD matrix cores (MFMA on CDNA, WMMA on RDNA3, "
               "clang builtins) at TF32-class / f16 precision; emulated "
               "elsewhere when forced",
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
