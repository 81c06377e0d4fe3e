/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The programs libattn builds (cl_programs.h): every kernel variant of the
 * table (src/opencl/variants.c) for each dtype and head size, with the
 * tuning a device's profile gives it, as the program cache builds it
 * (attn_cl_variant_sources / attn_cl_variant_options), and the layer's
 * helper kernels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_programs.h"
#include "opencl/bwd_cl.h"
#include "opencl/discovery.h"
#include "opencl/driver.h"
#include "opencl/mha_cl.h"
#include "opencl/profile.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The head sizes a variant may be built for (those of its defines hook
 * that change the program; the others are built once), with eight query
 * rows per kv head. */
static const int HEAD_DIMS[] = {32, 64, 96, 128, 256};

static const char *const MHA_SOURCES[] = {"posenc.cl", "heads.cl"};

/* The limits the variants' defines hooks see for dev (only fma and the
 * kind matter for the options; the sizes are those the hooks would fit
 * down from, which the offline checks leave as profiled). */
static void limits(const attn_device_info *dev, int fma, attn_cl_limits *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->wg = 1024;
    lim->items[0] = lim->items[1] = 1024;
    lim->items[2] = 64;
    lim->local_mem = dev->local_mem_bytes ? dev->local_mem_bytes : 49152;
    lim->global_mem = lim->max_alloc = (uint64_t)1 << 32;
    lim->compute_units = 64;
    lim->fma = fma;
    lim->gpu = dev->kind == ATTN_DEVICE_GPU || dev->kind == ATTN_DEVICE_IGPU;
    lim->cl_major = 1;
    /* NVIDIA's section is an H100's (compute capability 9.0): the
     * tensor-core kernel builds with its inline PTX there. */
    lim->nv_sm = strstr(dev->vendor, "NVIDIA") ? 90 : 0;
    /* AMD's sections are named by their gfx target, as ROCm names the
     * device: the matrix-core kernel builds for that unit there. */
    lim->amd_gfx = strstr(dev->vendor, "Advanced Micro Devices")
                       ? attn_cl_gfx_of(dev->name)
                       : 0;
    /* Intel's section for Arc is an Xe-HPG GPU's (matrix units, subgroups
     * of 8): the XMX kernel builds with its DPAS there. */
    lim->intel_xmx =
        strstr(dev->vendor, "Intel") && strstr(dev->name, "Arc") ? 8 : 0;
    /* Subgroup shuffles: shfl.sync as inline PTX on NVIDIA's (its probe
     * builds there), cl_intel_subgroups on Intel's GPUs; none on the
     * default device (the local-memory reductions). */
    lim->shuffle = lim->nv_sm ? ATTN_CL_SHUFFLE_PTX
                   : strstr(dev->vendor, "Intel") && lim->gpu
                       ? ATTN_CL_SHUFFLE_INTEL
                       : ATTN_CL_SHUFFLE_NONE;
    lim->precision = ATTN_PRECISION_TF32;
}

/* The shape the programs are built for: one decode row of eight query
 * heads that share a kv head (the splitkv variant's build for 5 to 16
 * rows). */
static attn_sdpa_desc shape_for(attn_dtype dtype, int hd)
{
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = d.heads_kv = 1;
    d.heads_q = 8;
    d.seq_q = d.seq_kv = 1;
    d.head_dim = d.head_dim_v = hd;
    d.dtype = dtype;
    return d;
}

/* Whether variant v (one with a precision hook) runs emulated on the
 * device of lim: no tensor cores for mma, no AMD matrix unit for amdmm,
 * no XMX with subgroups of 8 for xmx. */
static int emulated(const attn_cl_variant *v, const attn_cl_limits *lim)
{
    if (!strcmp(v->name, "amdmm"))
        return !attn_cl_amd_matrix_unit(lim->amd_gfx);
    if (!strcmp(v->name, "xmx"))
        return lim->intel_xmx != 8;
    return !lim->nv_sm;
}

/* Precisions whose products change a variant's program: those a variant
 * with a precision hook builds for (mma: TF32, 3XTF32; xmx: BF16 for BF16
 * storage), else one. */
static const attn_precision PRECISIONS[] = {
    ATTN_PRECISION_TF32, ATTN_PRECISION_3XTF32, ATTN_PRECISION_BF16};

/* The build options of v for dtype and head size hd (-1: do not fit). */
static int options_for(const attn_cl_variant *v, const attn_cl_tuning *t,
                       const attn_cl_limits *lim, attn_dtype dtype, int hd,
                       char *opts, size_t cap)
{
    attn_sdpa_desc d = shape_for(dtype, hd);
    char extra[256] = "";
    int w;
    if (v->defines)
        v->defines(lim, t, &d, extra, sizeof extra);
    w = attn_cl_variant_options(v, dtype, t, extra, opts, cap);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

/* Whether v takes dtype at head size hd at a precision before PRECISIONS[pi]
 * with the same build options as at lim's: that program is listed there
 * (mma, amdmm and xmx for F16 build the same program at BF16 as at
 * TF32). */
static int listed_before(const attn_cl_variant *v, const attn_cl_tuning *t,
                         const attn_cl_limits *lim, attn_dtype dtype, int hd,
                         size_t pi)
{
    char a[CL_PROGRAM_OPTIONS_MAX], b[CL_PROGRAM_OPTIONS_MAX];
    if (options_for(v, t, lim, dtype, hd, a, sizeof a))
        return 0;
    for (size_t pj = 0; pj < pi; pj++) {
        attn_cl_limits l = *lim;
        attn_sdpa_desc d = shape_for(dtype, hd);
        attn_err err = {{0}};
        l.precision = PRECISIONS[pj];
        if (v->supports(&l, t, &d, &err) == ATTN_OK &&
            !options_for(v, t, &l, dtype, hd, b, sizeof b) && !strcmp(a, b))
            return 1;
    }
    return 0;
}

/* One variant's program for dtype and head size hd on dev (per_head_dim:
 * the variant builds one per head size): fn's value, or -1 when the
 * options do not fit. */
static int one(const attn_cl_variant *v, const attn_cl_tuning *t,
               const attn_cl_limits *lim, attn_dtype dtype, int hd,
               int per_head_dim, const char *prev, char *out, cl_program_fn fn,
               void *user)
{
    /* Tags outlive the call: the callback may keep them. */
    static char tags[6 * 64][CL_PROGRAM_NAME_MAX];
    static const char *names[16];
    const int vi = attn_cl_variant_find(v->name);
    const int x3 = v->precision && lim->precision == ATTN_PRECISION_3XTF32;
    char *tag =
        tags[((vi < 0 || vi >= 64 ? 0 : vi) * 3 + (int)dtype % 3) * 2 + x3];
    cl_program_desc p;
    char opts[CL_PROGRAM_OPTIONS_MAX];
    int w;
    if (options_for(v, t, lim, dtype, hd, opts, sizeof opts))
        return -1;
    /* A head size that changes nothing gives the same program again. */
    if (prev && !strcmp(prev, opts))
        return 0;
    snprintf(out, CL_PROGRAM_OPTIONS_MAX, "%s", opts);
    snprintf(tag, CL_PROGRAM_NAME_MAX, "%s%s_%s", v->name, x3 ? "_3xtf32" : "",
             dtype == ATTN_BF16  ? "bf16"
             : dtype == ATTN_F16 ? "f16"
                                 : "f32");
    memset(&p, 0, sizeof p);
    p.tag = tag;
    p.head_dim = per_head_dim ? hd : 0;
    p.sources = names;
    p.n_sources = attn_cl_variant_sources(v, names, N_OF(names));
    w = attn_cl_program_options(opts, p.options, sizeof p.options);
    if (w < 0 || (size_t)w >= sizeof p.options)
        return -1;
    return fn(&p, user);
}

int cl_programs_for_device(const attn_device_info *dev, int fma,
                           cl_program_fn fn, void *user)
{
    attn_profile *prof = malloc(sizeof *prof);
    attn_cl_limits lim;
    int rc = 0;
    if (!prof || attn_profile_resolve(dev, "", prof, NULL, NULL) != ATTN_OK) {
        free(prof);
        return -1;
    }
    limits(dev, fma, &lim);
    for (int vi = 0; vi < attn_cl_n_variants && rc == 0; vi++) {
        const attn_cl_variant *v = attn_cl_variants[vi];
        attn_cl_tuning t;
        /* A rejected profile tuning leaves the defaults with the profile's
         * build options, as backend_cl.c applies it. */
        if (attn_profile_tuning(prof, vi, &t) != ATTN_OK) {
            attn_cl_tuning_default(v, &t);
            if (prof->build_options_set)
                snprintf(t.options, sizeof t.options, "%s",
                         prof->build_options);
        }
        for (size_t pi = 0;
             pi < (v->precision ? N_OF(PRECISIONS) : 1) && rc == 0; pi++) {
            lim.precision = PRECISIONS[pi];
            for (int dt = 0; dt <= (int)ATTN_BF16 && rc == 0; dt++) {
                char prev[CL_PROGRAM_OPTIONS_MAX] = "";
                char a[CL_PROGRAM_OPTIONS_MAX], b[CL_PROGRAM_OPTIONS_MAX];
                /* Whether the variant builds a program per head size. */
                const int per_hd =
                    options_for(v, &t, &lim, (attn_dtype)dt, HEAD_DIMS[0], a,
                                sizeof a) == 0 &&
                    options_for(v, &t, &lim, (attn_dtype)dt, HEAD_DIMS[1], b,
                                sizeof b) == 0 &&
                    strcmp(a, b) != 0;
                for (size_t h = 0; h < N_OF(HEAD_DIMS) && rc == 0; h++) {
                    /* A variant with a precision hook lists only what it
                     * takes (mma: no head size 256, no F16 at 3XTF32;
                     * amdmm: TF32 only, F32 only with xf32; xmx: F16,
                     * and BF16 at BF16; a program listed at an earlier
                     * precision not again); where it would run
                     * emulated (no matrix unit: AUTO would not prefer it), the
                     * first head size it takes only: the emulation is a test
                     * vehicle, one build per mode shows it compiles. */
                    attn_sdpa_desc d = shape_for((attn_dtype)dt, HEAD_DIMS[h]);
                    attn_err err = {{0}};
                    if (v->precision && v->supports(&lim, &t, &d, &err))
                        continue;
                    if (v->precision &&
                        listed_before(v, &t, &lim, (attn_dtype)dt, HEAD_DIMS[h],
                                      pi))
                        continue;
                    if (v->precision && prev[0] && emulated(v, &lim))
                        continue;
                    rc = one(v, &t, &lim, (attn_dtype)dt, HEAD_DIMS[h], per_hd,
                             prev[0] ? prev : NULL, prev, fn, user);
                }
            }
        }
    }
    /* the backward pass's programs (bwd_cl.c), per dtype and head size:
     * the sizes built at compile time, then one of each run-time build
     * (capacities 64, 128 and 256); bwd_tiled's (head sizes up to 128)
     * after the others' */
    static const int BWD_DIMS[] = {32, 64, 96, 128, 256, 40, 100, 200};
    static const char *const BWD_TAGS[2][3] = {
        {"backward_f32", "backward_f16", "backward_bf16"},
        {"backward_tiled_f32", "backward_tiled_f16", "backward_tiled_bf16"}};
    for (int tiled = 0; tiled < 2 && rc == 0; tiled++)
        for (int dt = 0; dt < 3 && rc == 0; dt++) /* F32, F16, BF16 */
            for (size_t h = 0; h < N_OF(BWD_DIMS) && rc == 0; h++) {
                cl_program_desc p;
                char opts[CL_PROGRAM_OPTIONS_MAX];
                if (tiled && BWD_DIMS[h] > 128)
                    continue;
                int w =
                    attn_cl_bwd_options((attn_dtype)dt, BWD_DIMS[h],
                                        BWD_DIMS[h], tiled, opts, sizeof opts);
                memset(&p, 0, sizeof p);
                p.tag = BWD_TAGS[tiled][dt];
                p.head_dim = BWD_DIMS[h];
                p.sources = attn_cl_bwd_sources;
                p.n_sources =
                    tiled ? ATTN_CL_BWD_TILED_N_SOURCES : ATTN_CL_BWD_N_SOURCES;
                if (w < 0 || (size_t)w >= sizeof opts ||
                    (w = attn_cl_program_options(opts, p.options,
                                                 sizeof p.options)) < 0 ||
                    (size_t)w >= sizeof p.options)
                    rc = -1;
                else
                    rc = fn(&p, user);
            }
    if (rc == 0) { /* the layer's helper kernels (mha_cl.c) */
        cl_program_desc p;
        char opts[64];
        int w = attn_cl_mha_options(opts, sizeof opts);
        memset(&p, 0, sizeof p);
        p.tag = "posenc_heads";
        p.sources = MHA_SOURCES;
        p.n_sources = N_OF(MHA_SOURCES);
        if (w < 0 || (size_t)w >= sizeof opts ||
            (w = attn_cl_program_options(opts, p.options, sizeof p.options)) <
                0 ||
            (size_t)w >= sizeof p.options)
            rc = -1;
        else
            rc = fn(&p, user);
    }
    free(prof);
    return rc;
}

/* Device descriptions that select each section of the platforms/ profiles
 * that changes a tuning (the strings the vendors' drivers report). */
static const cl_program_device DEVICES[] = {
    {"default", {.kind = ATTN_DEVICE_OTHER}},
    {"nvidia",
     {.name = "NVIDIA H100 80GB HBM3",
      .vendor = "NVIDIA Corporation",
      .platform = "NVIDIA CUDA",
      .local_mem_bytes = 49152,
      .kind = ATTN_DEVICE_GPU}},
    {"amd-cdna",
     {.name = "gfx90a:sramecc+:xnack-",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_GPU}},
    {"amd-rdna",
     {.name = "gfx1030",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_GPU}},
    /* The matrix-core kernel's other units: MFMA with xf32 (MI300; clang
     * 15 knows gfx940, the ISA of gfx942 for these instructions) and RDNA3
     * WMMA. */
    {"amd-cdna3",
     {.name = "gfx940:sramecc+:xnack-",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_GPU}},
    {"amd-rdna3",
     {.name = "gfx1100",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_GPU}},
    {"intel",
     {.name = "Intel(R) Iris(R) Xe Graphics",
      .vendor = "Intel(R) Corporation",
      .platform = "Intel(R) OpenCL Graphics",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_IGPU}},
    {"intel-arc",
     {.name = "Intel(R) Arc(TM) A770 Graphics",
      .vendor = "Intel(R) Corporation",
      .platform = "Intel(R) OpenCL Graphics",
      .local_mem_bytes = 65536,
      .kind = ATTN_DEVICE_GPU}},
    {"intel-max",
     {.name = "Intel(R) Data Center GPU Max 1550",
      .vendor = "Intel(R) Corporation",
      .platform = "Intel(R) OpenCL Graphics",
      .local_mem_bytes = 131072,
      .kind = ATTN_DEVICE_GPU}},
};

const cl_program_device *cl_program_devices(size_t *n)
{
    *n = N_OF(DEVICES);
    return DEVICES;
}
