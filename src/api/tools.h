/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one internal header of libattn's tools (attn-probe, attn-bench,
 * attn-tune): what they need beyond attn.h and attn_cl.h, without a
 * backend's own headers or types.  Implemented by the API layer
 * (src/api/tools.c) in builds with the OpenCL backend; the tools link the
 * static library.  Not installed: these calls may change with any
 * release.
 */
#ifndef ATTN_API_TOOLS_H
#define ATTN_API_TOOLS_H

#include <stddef.h>

#include "attn/attn.h"

/* ---- devices (attn-probe) ------------------------------------------------ */

/* Bits of attn_tool_device.query_failed: properties whose query failed
 * (left 0 / "" in info). */
enum {
    ATTN_TOOL_Q_NAME = 1u << 0,
    ATTN_TOOL_Q_VENDOR = 1u << 1,
    ATTN_TOOL_Q_PLATFORM = 1u << 2,
    ATTN_TOOL_Q_DRIVER = 1u << 3,
    ATTN_TOOL_Q_CLC_VERSION = 1u << 4,
    ATTN_TOOL_Q_COMPUTE_UNITS = 1u << 5,
    ATTN_TOOL_Q_CLOCK = 1u << 6,
    ATTN_TOOL_Q_GLOBAL_MEM = 1u << 7,
    ATTN_TOOL_Q_LOCAL_MEM = 1u << 8,
    ATTN_TOOL_Q_MAX_ALLOC = 1u << 9,
    ATTN_TOOL_Q_WORK_GROUP = 1u << 10,
    ATTN_TOOL_Q_FP16 = 1u << 11,
    ATTN_TOOL_Q_FP64 = 1u << 12,
    ATTN_TOOL_Q_UNIFIED = 1u << 13,
    ATTN_TOOL_Q_TYPE = 1u << 14,
    ATTN_TOOL_Q_VERSION = 1u << 15
};

/* One OpenCL device as discovery saw it. */
typedef struct attn_tool_device {
    attn_device_info info;
    int has_binary;        /* FPGA: an offline binary was found for it */
    unsigned query_failed; /* ATTN_TOOL_Q_* bits */
    const void *handle;    /* the driver's device, valid for the process */
    int nv_sm; /* NVIDIA compute capability, 10 * major + minor; 0: none */
    /* AMD gfx target as hexadecimal digits (0x90a: gfx90a), 0: none; its
     * matrix units for the amdmm variant: 1 MFMA, 2 WMMA, 0 none; amd_xf32
     * 1 where MFMA has TF32-class products (gfx940-942). */
    int amd_gfx, amd_unit, amd_xf32;
    int intel_xmx; /* Intel matrix units: smallest subgroup size; 0: none */
    /* Subgroup shuffles its extensions offer: 2 cl_intel_subgroups, 3
     * cl_khr_subgroup_shuffle, 0 none (NVIDIA's shfl.sync is probed per
     * context: nv_sm says where it may be). */
    int shuffle;
} attn_tool_device;

/* The devices the library would pick for a spec. */
typedef struct attn_tool_selection {
    int native;       /* 1: the native backend runs the work */
    size_t count;     /* devices chosen (0 when native) */
    size_t index[16]; /* into the device array, best first */
    char why[256];    /* a sentence: why this choice */
} attn_tool_selection;

/* Every OpenCL device, in attn-probe's order (*out: malloc'd, free()).
 * No OpenCL: *n 0.  Errors: ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_DEVICE (the
 * ICD failed), with a sentence in msg. */
attn_status attn_tool_discover(attn_tool_device **out, size_t *n, char *msg,
                               size_t cap);
/* What `spec` selects among devs, as attn_context_create would (profiles
 * decide whether the native backend beats an OpenCL CPU device, unless
 * native_beats_cpu is 0 or 1).  Errors: those of device selection. */
attn_status attn_tool_select(const attn_tool_device *devs, size_t n,
                             const char *spec, int native_beats_cpu,
                             attn_tool_selection *sel, char *msg, size_t cap);
/* The device's OpenCL extensions, as the driver lists them (names
 * separated by spaces) in *out (malloc'd, free()).  Errors:
 * ATTN_ERR_DEVICE (the query failed), ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_tool_device_extensions(const attn_tool_device *d, char **out);
/* "gpu", "igpu", "fpga", "cpu", "other" or "native". */
const char *attn_tool_kind_name(attn_device_kind kind);
/* ATTN_KERNEL_BINARY_DIR (or the build's), NULL when none. */
const char *attn_tool_binary_dir(void);
/* The device name as profile patterns and binary names see it: PoCL's
 * driver prefix dropped (pattern), or normalised to [a-z0-9_] (file). */
void attn_tool_device_pattern(const char *name, char *out, size_t cap);
void attn_tool_file_name(const char *name, char *out, size_t cap);

/* The instruction set of the native kernels a context created now would
 * run: "generic", "avx2" or "avx512" (ATTN_CPU_ISA and the CPU decide). */
const char *attn_tool_native_isa(void);
/* Whether spec is a device spec at all (attn_context_create ignores an
 * ATTN_DEVICE that is not, with a warning): ATTN_OK, or
 * ATTN_ERR_INVALID_ARGUMENT with the reason in msg. */
attn_status attn_tool_check_spec(const char *spec, char *msg, size_t cap);
/* The worker threads a native context created now with options.threads 0
 * would run: ATTN_NUM_THREADS (when valid), else the online CPUs. */
int attn_tool_native_threads(void);

/* ---- kernel variants (attn-tune, attn-probe --kernels) ------------------- */

typedef struct attn_tool_param {
    const char *name; /* profile key "<variant>.<name>" */
    int min, max, def;
    int pow2;    /* must be a power of two */
    int runtime; /* a choice or launch setting, not a build define */
    int choice;  /* one of a few alternatives: tuners try each value */
    const char *doc;
} attn_tool_param;

typedef struct attn_tool_variant {
    const char *name, *summary;
    const char *path; /* "fused", "unfused" or "auto" (AUTO only) */
    int n_params;
    attn_tool_param params[16];
} attn_tool_variant;

/* Variant i of the tables: the forward's (attn_kernel_name(i) names
 * them), then the backward pass's (no parameters).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT past the end. */
attn_status attn_tool_variant_info(int i, attn_tool_variant *out);

/* The tuning of kernel `variant` on ctx's primary device (values in
 * schema order, n_params of them) and its replacement (checked; later
 * calls use it).  Errors: ATTN_ERR_INVALID_ARGUMENT (not an OpenCL
 * context, unknown variant, a value breaking the schema: msg says which),
 * ATTN_ERR_UNSUPPORTED (the native backend). */
attn_status attn_tool_get_tuning(attn_context *ctx, const char *variant,
                                 int *values, char *msg, size_t cap);
attn_status attn_tool_set_tuning(attn_context *ctx, const char *variant,
                                 const int *values, char *msg, size_t cap);

#endif /* ATTN_API_TOOLS_H */
