/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every OpenCL program libattn builds, as the library hands it to the
 * driver: the kernel sources it concatenates and the build options its
 * launchers pass (with the "-cl-std=CL1.2" program.c adds).  Used by
 * attn-cl-dump (the offline compile checks of scripts/offline_compile.sh)
 * and by the suite that checks the list against the builds the library
 * really makes.
 */
#ifndef ATTN_TEST_CL_PROGRAMS_H
#define ATTN_TEST_CL_PROGRAMS_H

#include <stddef.h>

#include "attn/attn.h"

#define CL_PROGRAM_NAME_MAX    96
#define CL_PROGRAM_OPTIONS_MAX 1024

/* One program: tag is the launcher's (attn_cl_build_tagged: "fused_f32",
 * "unfused_f16", "decode_f32", "posenc_heads"); sources are cl/ file names
 * in the order they are concatenated. */
typedef struct cl_program_desc {
    const char *tag;
    /* the head size the program is built for; 0 when its variant builds
     * one program for every head size */
    int head_dim;
    /* valid during the callback only */
    const char *const *sources;
    size_t n_sources;
    char options[CL_PROGRAM_OPTIONS_MAX];
} cl_program_desc;

/* Receives one program; a non-zero return stops the enumeration and is
 * returned by it. */
typedef int (*cl_program_fn)(const cl_program_desc *p, void *user);

/* Calls fn for each program libattn builds on dev: its platform profile
 * resolved from the built-in platforms/ files only (ATTN_PLATFORM_DIR is
 * not read), fma 1 when the device reports CL_FP_FMA for floats.  The
 * tunings are taken as the launchers take them before fitting them to the
 * device's work-group and local-memory limits (every GPU the profiles name
 * has room for them).  Returns 0, fn's non-zero value, or -1 when an
 * option string does not fit (or the profile cannot be resolved). */
int cl_programs_for_device(const attn_device_info *dev, int fma,
                           cl_program_fn fn, void *user);

/* A device whose programs the offline checks compile: label names it in
 * file names ("nvidia"), info is a device description for the profile. */
typedef struct cl_program_device {
    const char *label;
    attn_device_info info;
} cl_program_device;

/* The devices of the offline checks: "default" (no profile section but
 * [default] applies), then one per vendor section and per architecture
 * section that changes a tuning.  n receives their number. */
const cl_program_device *cl_program_devices(size_t *n);

#endif /* ATTN_TEST_CL_PROGRAMS_H */
