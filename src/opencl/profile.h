/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Platform profiles: tuned parameters of the OpenCL backend kept as data
 * (the .prof files of platforms/), layered default -> vendor -> architecture ->
 * device in the manner of CLBlast's database.  Not installed.
 *
 * Format (platforms/README.md has the full grammar), one item a line:
 *
 *     # a comment (also after a value or a header, outside quotes)
 *     [default]
 *     [vendor "NVIDIA"]                      vendor level
 *     [platform "Portable Computing Language" kind "cpu"]   vendor level
 *     [arch "gfx90a" vendor "Advanced Micro Devices"]      architecture
 *     [device "H100"]                        device level
 *     unfused.sc_tq = 64                     <variant>.<parameter>
 *     path.order = decode fused unfused      AUTO's order of variants
 *     quirk.spin_wait = clFinish busy-waits a CPU core
 *
 * A section header is `[default]` or one or more conditions `word
 * "pattern"`, all of which must hold; the most specific condition sets the
 * section's level (device > arch > vendor, platform, kind, driver).  Text
 * is compared after normalisation: lower case, "(r)", "(tm)" and "(c)"
 * dropped, runs of white space made one space, no space at either end; a
 * device name also loses PoCL's "pthread-", "cpu-" or "basic-" prefix.
 *     vendor   substring of CL_DEVICE_VENDOR
 *     platform substring of the platform name
 *     kind     gpu (discrete or integrated), igpu, fpga, cpu, other
 *     driver   substring of the driver version
 *     arch     substring of the device name, the driver version or the
 *              OpenCL C version (AMD names are the arch, "gfx90a:..."; PoCL
 *              names carry the LLVM CPU, "skylake-avx512"; NVIDIA and Intel
 *              families are name substrings such as "H100", "Arc")
 *     device   substring of the device name
 *
 * Resolution: every section whose conditions hold is applied, level by
 * level (default, vendor, arch, device) and within a level in file order
 * (embedded files by name, then ATTN_PLATFORM_DIR files by name), so that a
 * later section overrides an earlier one key by key.  A file with any
 * malformed line is reported (one message per error, "platforms/x.prof:12:
 * ...", then one saying the file is ignored) and contributes nothing; the
 * other files still apply.
 *
 * Thread-safety: no global state; every function may be called from
 * several threads at once (resolve reads the environment and the files of
 * the profile folder).
 */
#ifndef ATTN_OPENCL_PROFILE_H
#define ATTN_OPENCL_PROFILE_H

#include <stddef.h>

#include "attn/attn.h"

#define ATTN_PROFILE_MAX_EXTRA 128 /* <variant>.* and quirk.* keys */
#define ATTN_PROFILE_KEY_MAX   64  /* bytes of such a key, with the NUL */
#define ATTN_PROFILE_VALUE_MAX 128 /* bytes of a value, with the NUL */

/* Receives one message (no trailing newline); valid during the call. */
typedef void (*attn_profile_report_fn)(void *user, const char *msg);

/* A <variant>.<parameter> key (checked against the variant's schema when
 * read: src/opencl/variant.h) or a quirk.* key with its text, as written
 * (trimmed, quotes removed). */
typedef struct attn_profile_entry {
    char key[ATTN_PROFILE_KEY_MAX];
    char value[ATTN_PROFILE_VALUE_MAX];
} attn_profile_entry;

/* A resolved profile.  Every int field is -1 when no applied section set
 * it; the runtime then keeps its built-in default (given in brackets). */
typedef struct attn_profile {
    int queues;              /* command queues per device, 1..64 [1] */
    int path;                /* attn_path for options.path AUTO:
                                auto|fused|unfused [auto] */
    int native_beats_opencl; /* 0|1: "auto" prefers the native backend to
                                this device [ATTN_CL_NATIVE_BEATS_CPU for
                                OpenCL CPU devices] */
    int weight;  /* relative throughput when work is split over devices,
                    1..1000000 (GFLOP/s, say) [equal shares] */
    int staging; /* 0 direct, 1 pinned: how host memory reaches the device
                    [direct] */
    char order[ATTN_PROFILE_VALUE_MAX]; /* path.order: variant names, ""
                                           when unset [the table order] */
    int build_options_set;
    char build_options[ATTN_PROFILE_VALUE_MAX]; /* extra build options, only
                                                   those of the allowlist
                                                   (attn_profile_build_
                                                   option_ok) */
    size_t n_extra;
    attn_profile_entry extra[ATTN_PROFILE_MAX_EXTRA]; /* in order of first
                                                         setting */
    char sources[512]; /* "file:line" of each applied section, "; "
                          between them, "..." when cut: for logs */
} attn_profile;

/* One profile text: name is what messages call it ("platforms/amd.prof"),
 * data holds len bytes (need not be NUL-terminated). */
typedef struct attn_profile_text {
    const char *name;
    const char *data;
    size_t len;
} attn_profile_text;

/* 1 when the len bytes at opt are one build option a profile may give:
 * -cl-mad-enable, -cl-no-signed-zeros, -cl-unsafe-math-optimizations,
 * -cl-finite-math-only, -cl-fast-relaxed-math, -cl-denorms-are-zero,
 * -cl-nv-verbose or -cl-nv-maxrregcount=N (N in 1..999).  A profile's
 * other options are reported with file:line and dropped; the rest of the
 * file applies.  Pure. */
int attn_profile_build_option_ok(const char *opt, size_t len);

/* Sets every field unset (-1, empty). */
void attn_profile_init(attn_profile *p);

/* The profile of dev: the built-in files (embedded, or platforms/ of the
 * source tree when the build reads kernels from disk), then every *.prof
 * file of extra_dir in name order.  extra_dir NULL means the environment
 * variable ATTN_PLATFORM_DIR; NULL or "" there means no extra folder.  A
 * folder or file that cannot be read is reported and skipped; so is a
 * malformed file.  report may be NULL.  Errors: ATTN_ERR_INVALID_ARGUMENT
 * (dev or out NULL), ATTN_ERR_OUT_OF_MEMORY (out is then initialised). */
attn_status attn_profile_resolve(const attn_device_info *dev,
                                 const char *extra_dir, attn_profile *out,
                                 attn_profile_report_fn report, void *user);

/* The same layering over the given texts only, in the given order (no
 * built-in file, no folder): the parse-from-memory entry point.  Pure.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (dev or out NULL, texts NULL with
 * n > 0, a text with a NULL name, or NULL data with len > 0). */
attn_status attn_profile_resolve_texts(const attn_device_info *dev,
                                       const attn_profile_text *texts, size_t n,
                                       attn_profile *out,
                                       attn_profile_report_fn report,
                                       void *user);

/* Checks one text; returns its number of errors (each reported), 0 when
 * it is well-formed.  Pure. */
int attn_profile_check(const attn_profile_text *text,
                       attn_profile_report_fn report, void *user);

/* Checks every built-in file: *files receives how many there are, *bad how
 * many are malformed (each error reported).  Errors: ATTN_ERR_INVALID_
 * ARGUMENT (NULL count), ATTN_ERR_OUT_OF_MEMORY, ATTN_ERR_IO (the source
 * tree's platforms/ cannot be read, non-embedded builds only). */
attn_status attn_profile_check_builtin(size_t *files, size_t *bad,
                                       attn_profile_report_fn report,
                                       void *user);

/* The value of a <variant>.* or quirk.* key, or NULL when unset.  Points
 * into p. */
const char *attn_profile_get(const attn_profile *p, const char *key);

/* The value of such a key as an int, or fallback when it is unset or not
 * an integer in [min, max]. */
int attn_profile_get_int(const attn_profile *p, const char *key, int min,
                         int max, int fallback);

/* 1 when quirk.<name> is set to anything but "", "0", "off" or "no". */
int attn_profile_quirk(const attn_profile *p, const char *name);

/* Fills t with the schema's defaults of kernel variant `variant` (an index
 * of the table of src/opencl/variant.h), then the <variant>.* values p
 * sets and its build options.  ATTN_ERR_INVALID_ARGUMENT when the result
 * breaks a rule across parameters (a tile not a multiple of its
 * work-group side; t then holds it for the message), or for a NULL
 * argument. */
struct attn_cl_tuning;
attn_status attn_profile_tuning(const attn_profile *p, int variant,
                                struct attn_cl_tuning *t);

/* The variants path.order names, as indices into order[cap]; returns how
 * many (0 when unset). */
int attn_profile_order(const attn_profile *p, int *order, int cap);

/* Writes the set keys of p as "key = value" lines (no section header), the
 * body of a file a tuner or a user can put under [device "..."].
 * Returns the length the full text needs (as snprintf); buf is always
 * NUL-terminated when cap > 0. */
size_t attn_profile_format(const attn_profile *p, char *buf, size_t cap);

#endif /* ATTN_OPENCL_PROFILE_H */
