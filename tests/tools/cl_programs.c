/*
 * The programs libattn builds (cl_programs.h): one table of program
 * families, each with its sources and the function that turns a device's
 * profile into the launcher's build options.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_programs.h"
#include "opencl/mha_cl.h"
#include "opencl/profile.h"
#include "opencl/runtime.h"
#include "opencl/sdpa_decode.h"
#include "opencl/sdpa_fused.h"

/* Writes the launcher's options of one program (before -cl-std) into buf;
 * returns what snprintf returns. */
typedef int (*family_options_fn)(const attn_profile *p, int f16, int fma,
                                 char *buf, size_t cap);

/* The fused tuning as backend_cl.c's apply_profile makes it from the
 * fused.* keys (build_options do not reach the fused kernel). */
static int fused_options(const attn_profile *p, int f16, int fma, char *buf,
                         size_t cap)
{
    attn_cl_fused_tuning t;
    attn_cl_fused_tuning_default(&t);
    t.vw = attn_profile_get_int(p, "fused.vw", 1, 16, t.vw);
    t.nv = attn_profile_get_int(p, "fused.nv", 1, 16, t.nv);
    t.wg = attn_profile_get_int(p, "fused.wg", 1, 1024, t.wg);
    t.tk = attn_profile_get_int(p, "fused.tk", 1, 1024, t.tk);
    t.kb = attn_profile_get_int(p, "fused.kb", 1, 64, t.kb);
    t.cb = attn_profile_get_int(p, "fused.cb", 1, 64, t.cb);
    return attn_cl_fused_options(&t, f16, fma, buf, cap);
}

/* A rejected unfused.* set leaves the default tiles, as in apply_profile. */
static int unfused_options(const attn_profile *p, int f16, int fma, char *buf,
                           size_t cap)
{
    attn_cl_unfused_tuning t;
    (void)fma;
    (void)attn_profile_unfused_tuning(p, &t);
    return attn_cl_unfused_options(&t, f16, buf, cap);
}

/* No profile key reaches the decode tuning. */
static int decode_options(const attn_profile *p, int f16, int fma, char *buf,
                          size_t cap)
{
    attn_cl_decode_tuning t;
    (void)p;
    (void)fma;
    attn_cl_decode_tuning_default(&t);
    return attn_cl_decode_options(&t, f16, buf, cap);
}

static int mha_options(const attn_profile *p, int f16, int fma, char *buf,
                       size_t cap)
{
    (void)p;
    (void)f16;
    (void)fma;
    return attn_cl_mha_options(buf, cap);
}

/* The source lists of the launchers' build_prog / build functions. */
static const char *const FUSED_SOURCES[] = {"fused.cl"};
static const char *const UNFUSED_SOURCES[] = {"score.cl", "softmax.cl",
                                              "aggregate.cl"};
static const char *const DECODE_SOURCES[] = {"decode.cl"};
static const char *const MHA_SOURCES[] = {"posenc.cl", "heads.cl"};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Every program family: its tags (one per dtype, F32 then F16; a family
 * without dtypes has one), sources and options. */
static const struct family {
    const char *tags[2];
    const char *const *sources;
    size_t n_sources;
    family_options_fn options;
} FAMILIES[] = {
    {{"fused_f32", "fused_f16"},
     FUSED_SOURCES,
     N_OF(FUSED_SOURCES),
     fused_options},
    {{"unfused_f32", "unfused_f16"},
     UNFUSED_SOURCES,
     N_OF(UNFUSED_SOURCES),
     unfused_options},
    {{"decode_f32", "decode_f16"},
     DECODE_SOURCES,
     N_OF(DECODE_SOURCES),
     decode_options},
    {{"posenc_heads", NULL}, MHA_SOURCES, N_OF(MHA_SOURCES), mha_options},
};

int cl_programs_for_device(const attn_device_info *dev, int fma,
                           cl_program_fn fn, void *user)
{
    attn_profile *prof = malloc(sizeof *prof);
    int rc = 0;
    if (!prof || attn_profile_resolve(dev, "", prof, NULL, NULL) != ATTN_OK) {
        free(prof);
        return -1;
    }
    for (size_t f = 0; f < N_OF(FAMILIES) && rc == 0; f++) {
        const struct family *fam = &FAMILIES[f];
        for (int d = 0; d < 2 && fam->tags[d] && rc == 0; d++) {
            cl_program_desc p = {.tag = fam->tags[d],
                                 .sources = fam->sources,
                                 .n_sources = fam->n_sources};
            char opts[CL_PROGRAM_OPTIONS_MAX];
            int w = fam->options(prof, d, fma, opts, sizeof opts);
            if (w < 0 || (size_t)w >= sizeof opts ||
                (w = attn_cl_program_options(opts, p.options,
                                             sizeof p.options)) < 0 ||
                (size_t)w >= sizeof p.options) {
                rc = -1;
                break;
            }
            rc = fn(&p, user);
        }
    }
    free(prof);
    return rc;
}

/* Device descriptions that select each section of the platforms/ profiles that
 * changes a tuning (the strings the vendors' drivers report). */
static const cl_program_device DEVICES[] = {
    {"default", {.kind = ATTN_DEVICE_OTHER}},
    {"nvidia",
     {.name = "NVIDIA H100 80GB HBM3",
      .vendor = "NVIDIA Corporation",
      .platform = "NVIDIA CUDA",
      .kind = ATTN_DEVICE_GPU}},
    {"amd-cdna",
     {.name = "gfx90a:sramecc+:xnack-",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .kind = ATTN_DEVICE_GPU}},
    {"amd-rdna",
     {.name = "gfx1030",
      .vendor = "Advanced Micro Devices, Inc.",
      .platform = "AMD Accelerated Parallel Processing",
      .kind = ATTN_DEVICE_GPU}},
    {"intel",
     {.name = "Intel(R) Iris(R) Xe Graphics",
      .vendor = "Intel(R) Corporation",
      .platform = "Intel(R) OpenCL Graphics",
      .kind = ATTN_DEVICE_IGPU}},
    {"intel-max",
     {.name = "Intel(R) Data Center GPU Max 1550",
      .vendor = "Intel(R) Corporation",
      .platform = "Intel(R) OpenCL Graphics",
      .kind = ATTN_DEVICE_GPU}},
};

const cl_program_device *cl_program_devices(size_t *n)
{
    *n = N_OF(DEVICES);
    return DEVICES;
}
