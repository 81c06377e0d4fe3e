/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device discovery and selection of the OpenCL backend.  Not installed.
 *
 * Discovery enumerates every platform and device, sorts them
 * deterministically (ICD order is not stable), probes capabilities,
 * classifies each (GPU, IGPU, FPGA, CPU_OPENCL, OTHER), admits or refuses it
 * by capability (never by vendor name, the reason is kept) and ranks it.
 * Selection is a pure function over the resulting descriptions so that it
 * can be tested on synthetic machines.
 */
#ifndef ATTN_OPENCL_DISCOVERY_H
#define ATTN_OPENCL_DISCOVERY_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "core/core.h"

/* One OpenCL device: its public description plus the handles.  The handles
 * stay valid as long as the ICD loader is loaded (for the process). */
typedef struct attn_cl_device {
    attn_device_info info;
    cl_platform_id platform;
    cl_device_id device;
    int has_binary;        /* FPGA: an offline binary was found for it */
    unsigned query_failed; /* ATTN_CL_Q_* bits: properties whose query
                              failed (left 0 / "" in info) */
    int nv_sm;             /* attn_cl_nv_sm of the device */
    int amd_gfx;           /* attn_cl_amd_gfx of the device */
    int intel_xmx;         /* attn_cl_intel_xmx of the device */
    int shuffle;           /* attn_cl_shuffle of the device */
} attn_cl_device;

/* The NVIDIA compute capability of device as 10 * major + minor (80:
 * Ampere, 90: Hopper), through cl_nv_device_attribute_query; 0 on devices
 * without it.  From compute capability 8.0 on, the tensor-core kernel
 * variant mma runs there (src/opencl/variants/mma.c). */
int attn_cl_nv_sm(cl_device_id device);

/* The gfx target of an AMD GPU as the hexadecimal number its name spells
 * (0x90a: gfx90a, MI200; 0x942: MI300; 0x1100: RDNA3), from the device
 * name AMD's OpenCL reports ("gfx90a:sramecc+:xnack-"); 0 on other devices
 * (src/opencl/amd_gfx.c). */
int attn_cl_amd_gfx(cl_device_id device);
/* The same from a device name alone: "gfx" and 3 to 5 hexadecimal digits,
 * then the end or ':'; 0 otherwise.  Pure. */
int attn_cl_gfx_of(const char *name);
/* The matrix units of gfx target gfx that the kernel variant amdmm uses:
 * ATTN_CL_AMD_MFMA (CDNA: gfx908, gfx90a, gfx940-942; wave64),
 * ATTN_CL_AMD_WMMA (RDNA3: gfx11xx; wave32) or 0.  Pure. */
enum { ATTN_CL_AMD_MFMA = 1, ATTN_CL_AMD_WMMA = 2 };
int attn_cl_amd_matrix_unit(int gfx);
/* 1 when gfx has MFMA xf32 (TF32-class F32 products: gfx940-942).  Pure. */
int attn_cl_amd_xf32(int gfx);
/* Intel's XMX matrix units: the device's smallest subgroup size
 * (CL_DEVICE_SUB_GROUP_SIZES_INTEL; 8 on Xe-HPG, 16 on Xe-HPC) when it
 * lists cl_intel_subgroup_matrix_multiply_accumulate, else 0.  Where it
 * is 8 the matrix-unit kernel variant xmx runs there
 * (src/opencl/variants/xmx.c). */
int attn_cl_intel_xmx(cl_device_id device);

/* Subgroup shuffles a device's compiler takes, for reductions over the
 * work-items of a row (cl/tiled.cl TL_SG): NVIDIA's shfl.sync as inline
 * PTX, cl_intel_subgroups' intel_sub_group_shuffle_xor,
 * cl_khr_subgroup_shuffle's sub_group_shuffle_xor (the first and the last
 * only once attn_cl_shuffle_builds built them), or none; EMU is no device's:
 * the shuffles computed through local memory, which a kernel variant builds
 * when told to (tests). */
enum {
    ATTN_CL_SHUFFLE_NONE = 0,
    ATTN_CL_SHUFFLE_PTX = 1,
    ATTN_CL_SHUFFLE_INTEL = 2,
    ATTN_CL_SHUFFLE_KHR = 3,
    ATTN_CL_SHUFFLE_EMU = 4
};
/* The shuffle the device's extensions offer: ATTN_CL_SHUFFLE_INTEL (it
 * lists cl_intel_subgroups), _KHR (cl_khr_subgroups and
 * cl_khr_subgroup_shuffle) or _NONE; NVIDIA's has no extension for it
 * (attn_cl_shuffle_builds). */
int attn_cl_shuffle(cl_device_id device);
/* 1 when device's compiler builds, in context and as OpenCL C 1.2 (the
 * kernels' version), a probe kernel with shuffle (ATTN_CL_SHUFFLE_PTX:
 * shfl.sync.bfly as inline PTX, which NVIDIA's compiler takes from PTX ISA
 * 6.0 on and others refuse; _KHR: sub_group_shuffle_xor; _INTEL:
 * intel_sub_group_shuffle_xor), else 0.  The program is released either
 * way. */
int attn_cl_shuffle_builds(cl_context context, cl_device_id device,
                           int shuffle);

/* The target of PTX text bin (n bytes): NN of its first ".target sm_NN"
 * directive ("sm_90a": 90), 0 when bin holds none (the binary of a driver
 * that does not hand out PTX).  Pure. */
int attn_cl_ptx_target_of(const char *bin, size_t n);
/* The same for program p built for one device (NVIDIA's binaries are PTX);
 * -1 when its binary cannot be read. */
int attn_cl_ptx_target(cl_program p);

/* Bits of attn_cl_device.query_failed.  A property that fails to query is
 * not fatal: discovery goes on and attn-probe shows it as failed. */
enum {
    ATTN_CL_Q_NAME = 1u << 0,
    ATTN_CL_Q_VENDOR = 1u << 1,
    ATTN_CL_Q_PLATFORM = 1u << 2,
    ATTN_CL_Q_DRIVER = 1u << 3,
    ATTN_CL_Q_CLC_VERSION = 1u << 4,
    ATTN_CL_Q_COMPUTE_UNITS = 1u << 5,
    ATTN_CL_Q_CLOCK = 1u << 6,
    ATTN_CL_Q_GLOBAL_MEM = 1u << 7,
    ATTN_CL_Q_LOCAL_MEM = 1u << 8,
    ATTN_CL_Q_MAX_ALLOC = 1u << 9,
    ATTN_CL_Q_WORK_GROUP = 1u << 10,
    ATTN_CL_Q_FP16 = 1u << 11,    /* CL_DEVICE_EXTENSIONS */
    ATTN_CL_Q_FP64 = 1u << 12,    /* extensions and DOUBLE_FP_CONFIG */
    ATTN_CL_Q_UNIFIED = 1u << 13, /* CL_DEVICE_HOST_UNIFIED_MEMORY */
    ATTN_CL_Q_TYPE = 1u << 14,
    ATTN_CL_Q_VERSION = 1u << 15 /* CL_DEVICE_VERSION */
};

/* Enumerates every device.  *out is an array of *count entries owned by
 * the caller (free with free()); a machine with no OpenCL platform gives
 * *count = 0, *out = NULL and ATTN_OK.  Errors: ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_discover(attn_cl_device **out, size_t *count,
                             attn_err *err);

/* Probes one device handle (for a device the caller created a context
 * on); platform_index and device_index are -1.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (not a device), ATTN_ERR_OUT_OF_MEMORY. */
attn_status attn_cl_probe(cl_device_id device, attn_cl_device *out,
                          attn_err *err);

/* Fills info->kind, usable, reason and rank from the probed capabilities in
 * info (pure; used by discovery and by the synthetic-machine tests).
 * has_binary matters for FPGAs only. */
void attn_cl_classify(attn_device_info *info, unsigned long long cl_type,
                      int fpga_platform, int has_binary);

/* The result of selection: indices into the device array, or native. */
typedef struct attn_selection {
    int native;       /* 1: the native backend runs the work */
    size_t count;     /* devices chosen (0 when native) */
    size_t index[16]; /* into the device array, best first */
    char why[256];    /* a sentence: why this choice */
} attn_selection;

/* "auto" prefers the native backend to OpenCL CPU devices: it is far
 * faster on the same cores (attn-probe --bench on a 2-core AVX-512 machine,
 * B=1 H=8 N=1024 d=64 f32: native about 178 GFLOP/s, PoCL 3.1 about 6-8).
 * OpenCL CPU devices stay available through explicit specs ("cpu", "P:D",
 * a name). */
#define ATTN_CL_NATIVE_BEATS_CPU 1

/* Selects devices for spec (auto, native, gpu, igpu, fpga, cpu, "P:D", a
 * device-name substring, all, or a comma list of these; NULL and "" mean
 * auto).  "auto" picks the best-ranked usable device, or native when none
 * is usable or when native_beats_cpu is set and the best is an OpenCL CPU
 * device.  An unknown or unmatched spec gives ATTN_ERR_NO_DEVICE and a
 * message listing the devices; a list with no item ("," or " , ") or
 * "native" with other items ATTN_ERR_INVALID_ARGUMENT.  Pure. */
attn_status attn_cl_select(const attn_device_info *devs, size_t n,
                           const char *spec, int native_beats_cpu,
                           attn_selection *sel, attn_err *err);

/* 1 when spec names the native backend and nothing else ("native",
 * " NATIVE ,"): it needs no OpenCL device, so no OpenCL call is made.
 * Pure. */
int attn_cl_spec_native(const char *spec);

/* ---- helpers shared with the program loader and attn-probe -------------- */

/* Offline kernel binaries (FPGA).  The directory is the environment
 * variable ATTN_KERNEL_BINARY_DIR, else the compile-time macro of the same
 * name when the build defines one (a string), else there is none.  A device
 * program has a binary when <dir>/<normalised "<device name> <program>">
 * <ext> is a regular file, ext being tried in the order ".aocx" (Intel
 * FPGA), ".xclbin" (Xilinx / AMD), ".bin" (anything else, e.g. a binary
 * PoCL produced).  The normalised name is the text in lower case with every
 * run of characters other than [a-z0-9] turned into one '_' and no '_' at
 * either end: "Intel(R) FPGA Emulation Device unfused_f32" ->
 * "intel_r_fpga_emulation_device_unfused_f32".  Programs: unfused_f32,
 * unfused_f16, posenc_heads (attn_cl_build_tagged).  An FPGA counts as
 * having a binary when ATTN_CL_REQUIRED_PROGRAM has one.  Only presence is
 * checked here; the loader validates the contents. */
#define ATTN_CL_REQUIRED_PROGRAM "unfused_f32"

/* The directory above, or NULL when none is configured.  The string
 * belongs to the environment (do not free; valid until setenv). */
const char *attn_cl_binary_dir(void);

/* Writes the normalised name of device_name into out (always
 * NUL-terminated when cap > 0) and returns its length. */
size_t attn_cl_binary_name(const char *device_name, char *out, size_t cap);

/* 1 when dir holds a binary for device_name (path receives the file's path
 * when path is not NULL), else 0.  dir NULL or "" gives 0. */
int attn_cl_find_binary(const char *dir, const char *device_name, char *path,
                        size_t cap);

/* 1 when a platform of this name serves FPGAs ("FPGA" in the name, as in
 * "Intel(R) FPGA SDK for OpenCL(TM)", or a Xilinx platform).  It tells the
 * platform's kind (offline-compiled programs), not a vendor preference. */
int attn_cl_is_fpga_platform(const char *platform_name);

/* "gpu", "igpu", "fpga", "cpu", "other" or "native": the spelling used by
 * device specs and attn-probe --json.  Static storage; never NULL. */
const char *attn_cl_kind_name(attn_device_kind kind);

/* Notes on attn_cl_discover: clGetPlatformIDs answering
 * CL_PLATFORM_NOT_FOUND_KHR or zero platforms means "no OpenCL" (ATTN_OK,
 * *count 0).  Any other failure of clGetPlatformIDs gives ATTN_ERR_DEVICE
 * with the OpenCL error in err, so that a caller can still fall back to the
 * native backend.  A platform whose device list cannot be read contributes
 * no device.  Order: platforms by name, vendor, version, then ICD order;
 * devices within a platform by name, then ICD order; platform_index and
 * device_index are positions in that order (every platform is numbered,
 * also one without devices).  A device that reports itself unavailable, or
 * (FPGA excepted) without a compiler, is refused with that reason.
 *
 * Notes on attn_cl_select: keywords are case-insensitive and each item of
 * a comma list is trimmed of spaces; empty items are ignored and an empty
 * spec means "auto".  Each item names one device (the best-ranked usable
 * match) except "all"; "gpu" matches discrete and integrated GPUs
 * (discrete rank first), "igpu" only integrated ones, "cpu" OpenCL CPU
 * devices (not the native backend).  A token of the form digits:digits is
 * a "P:D" index; any other token that is not a keyword is a device-name
 * substring.  A list is the union of its items, duplicates dropped, order
 * kept, at most 16 devices.  "auto" inside a list adds its device, or
 * nothing when it would choose native.  "native" must stand alone
 * (repeating it is allowed); combined with anything else it gives
 * ATTN_ERR_INVALID_ARGUMENT.  An item that matches only unusable devices
 * gives ATTN_ERR_NO_DEVICE with the device's reason; "all" with no usable
 * device gives ATTN_ERR_NO_DEVICE.  sel is zeroed on error.  Errors also
 * ATTN_ERR_INVALID_ARGUMENT for sel NULL or devs NULL with n > 0. */

#endif /* ATTN_OPENCL_DISCOVERY_H */
