/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-probe: lists every OpenCL platform and device of the machine, what
 * libattn thinks of each (kind, usable or why not, rank) and the device
 * "auto" -- or -d SPEC / ATTN_DEVICE -- selects, with the native
 * backend's instruction set and threads, and a hint when no OpenCL driver
 * is registered.  --bench self-tests each
 * usable device (or the ones -d SPEC selects) through the public API
 * against the native backend and prints a GFLOP/s figure.
 *
 * Exit status: 0 when the listing and the selection worked (also on a
 * machine without OpenCL: the native backend is selected), 1 when asked-for
 * work failed (a device spec that names nothing, discovery failing, a
 * device that failed its --bench self-test), 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "cli/cli_options.h"
#include "cli/probe.h"

typedef struct probe_args {
    int json;
    int bench;
    int kernels;
    int verbose;
    const char *spec;   /* NULL: "auto" */
    const char *origin; /* where spec came from, for messages */
} probe_args;

/* clang-format off */
static const cli_option options[] = {
    {"device", 'd', "SPEC",
     "select like ATTN_DEVICE: auto, native, gpu, igpu, fpga,\n"
     "cpu, P:D (platform:device index), a device name\n"
     "substring, all, or a comma list of these; overrides\n"
     "ATTN_DEVICE"},
    {"json", 'j', NULL, "one JSON object instead of the table"},
    {"verbose", 'v', NULL,
     "also each device's OpenCL extensions (in the table and\n"
     "in the JSON)"},
    {"bench", 'b', NULL,
     "self-test each usable device (only the ones -d selects,\n"
     "when given) against the native backend: B=1 H=8 N=1024\n"
     "d=64 f32 attention, max abs difference (pass <= 1e-4)\n"
     "and GFLOP/s (4*N*N*d*H over the median of 5 calls after\n"
     "a warm-up), with the kernel variant and precision each\n"
     "ran (ATTN_PRECISION asks for one); not with --json"},
    {"kernels", 'k', NULL,
     "list the OpenCL kernel variants: the path each serves\n"
     "and its parameters (profile keys <variant>.<parameter>)"},
    {NULL, 0, NULL, NULL}};

static const cli_section sections[] = {
    {"Exit status",
     "0 on success (also when there is no OpenCL at all: the native backend\n"
     "is selected), 1 when the device spec matches nothing usable, discovery\n"
     "fails or a device fails its --bench self-test, 2 on a usage error."},
    {"Environment",
     "ATTN_DEVICE is the spec when -d is not given (a value that is no\n"
     "spec at all, such as \"native,cpu\", is a warning and ignored, as\n"
     "libattn ignores it); ATTN_CPU_ISA and\n"
     "ATTN_NUM_THREADS decide the native backend's kernels and threads;\n"
     "ATTN_PLATFORM_DIR adds device profiles; OCL_ICD_VENDORS is where the\n"
     "OpenCL ICD loader looks for drivers (default /etc/OpenCL/vendors)."},
    {"See also", "attn-bench(1), attn-tune(1)"},
    {NULL, NULL}};
/* clang-format on */

static int on_option(void *user, int key, const char *value)
{
    probe_args *a = user;
    switch (key) {
    case 'd':
        a->spec = value;
        a->origin = "--device";
        break;
    case 'j':
        a->json = 1;
        break;
    case 'v':
        a->verbose = 1;
        break;
    case 'b':
        a->bench = 1;
        break;
    case 'k':
        a->kernels = 1;
        break;
    default:
        return -1;
    }
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, probe_args *a)
{
    const cli_spec spec = {
        "attn-probe",
        "list the OpenCL devices and what libattn selects",
        attn_version(),
        "[options]",
        "Lists the OpenCL platforms and devices libattn sees, whether each is\n"
        "usable (or why not) and its rank, the native backend's instruction\n"
        "set and threads, then the device the selection picks and why.",
        options,
        sections};
    const char *env = getenv("ATTN_DEVICE");
    int rc;
    memset(a, 0, sizeof *a);
    if (env && *env) {
        char why[256];
        /* as attn_context_create: a value that is no spec is a warning and
         * the options' device ("auto") is used */
        if (attn_tool_check_spec(env, why, sizeof why) != ATTN_OK) {
            fprintf(stderr,
                    "attn-probe: ATTN_DEVICE=\"%.64s\" is not a device spec "
                    "(%s); ignored, as libattn ignores it: device \"auto\"\n",
                    env, why);
        } else {
            a->spec = env;
            a->origin = "ATTN_DEVICE";
        }
    }
    if ((rc = cli_parse(&spec, argc, argv, on_option, a)) >= 0)
        return rc;
    if (a->json && a->bench) {
        fprintf(stderr, "attn-probe: --bench and --json do not combine\n");
        return 2;
    }
    return -1;
}

/* ---- the OpenCL drivers (ICDs) and the native backend --------------------
 */

/* What to do when discovery found no platform. */
static void print_no_platform(void)
{
    char dir[512];
    int n = probe_icd_files(dir, sizeof dir);
    printf("No OpenCL platform (or device) found: libattn runs on the native "
           "backend.\n");
    if (getenv("OCL_ICD_FILENAMES"))
        printf("Hint: OCL_ICD_FILENAMES is set; the ICD loader reads only "
               "the drivers it names.\n");
    else if (n == 0)
        printf("Hint: no OpenCL driver (ICD) is registered: %s holds no "
               ".icd file.\n"
               "  Install one (Debian: pocl-opencl-icd for the CPU, "
               "mesa-opencl-icd or\n"
               "  intel-opencl-icd for GPUs, or the GPU vendor's driver) and "
               "run attn-probe\n"
               "  again.\n",
               dir);
    else
        printf("Hint: %d OpenCL driver%s (ICD) %s registered in %s, but "
               "none gave a platform:\n"
               "  the driver failed to load or found no device (see "
               "OCL_ICD_DEBUG=7 attn-probe).\n",
               n, n == 1 ? "" : "s", n == 1 ? "is" : "are", dir);
}

/* The instruction set and thread count a native context gets now. */
/* What a native context created now would run (ATTN_DEVICE, which would
 * override a context's options.device, plays no part). */
static void native_info(probe_native *nv)
{
    nv->isa = attn_tool_native_isa();
    nv->threads = attn_tool_native_threads();
}

static void print_native(const probe_native *nv)
{
    printf("\nNative backend  %s kernels, %d worker thread%s\n", nv->isa,
           nv->threads, nv->threads == 1 ? "" : "s");
    printf("  (ATTN_CPU_ISA=generic|avx2|avx512 and ATTN_NUM_THREADS "
           "override; options.threads too)\n");
}

/* ---- the table ------------------------------------------------------------
 * One row per property, driven by this table (as clinfo does), so adding a
 * property is one line; a property whose query failed reads as such. */

typedef void (*fmt_fn)(const attn_tool_device *d, char *buf, size_t cap);

static void fmt_bytes(char *buf, size_t cap, uint64_t v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (u < 4 && x >= 1024.0) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)v);
    else
        snprintf(buf, cap, "%.1f %s (%llu B)", x, units[u],
                 (unsigned long long)v);
}

static const char *yes_no(int v)
{
    return v ? "yes" : "no";
}

static void f_kind(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", attn_tool_kind_name(d->info.kind));
}
static void f_vendor(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", d->info.vendor);
}
static void f_driver(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", d->info.driver_version);
}
static void f_clver(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", d->info.opencl_version);
}
static void f_clc(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", d->info.opencl_c_version);
}
static void f_cu(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%u", d->info.compute_units);
}
static void f_clock(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%u MHz", d->info.max_clock_mhz);
}
static void f_gmem(const attn_tool_device *d, char *b, size_t n)
{
    fmt_bytes(b, n, d->info.global_mem_bytes);
}
static void f_lmem(const attn_tool_device *d, char *b, size_t n)
{
    fmt_bytes(b, n, d->info.local_mem_bytes);
}
static void f_alloc(const attn_tool_device *d, char *b, size_t n)
{
    fmt_bytes(b, n, d->info.max_alloc_bytes);
}
static void f_wg(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%zu", d->info.max_work_group_size);
}
static void f_fp16(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", yes_no(d->info.fp16));
}
static void f_fp64(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", yes_no(d->info.fp64));
}
static void f_unified(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%s", yes_no(d->info.unified_memory));
}
static void f_binary(const attn_tool_device *d, char *b, size_t n)
{
    if (d->info.kind != ATTN_DEVICE_FPGA)
        snprintf(b, n, "not needed (compiled at run time)");
    else
        snprintf(b, n, "%s", d->has_binary ? "found" : "none");
}
static void f_usable(const attn_tool_device *d, char *b, size_t n)
{
    static const char prefix[] = "usable: ";
    const char *r = d->info.reason;
    if (!strncmp(r, prefix, sizeof prefix - 1))
        r += sizeof prefix - 1;
    snprintf(b, n, "%s (%s)", d->info.usable ? "yes" : "no", r);
}
/* The matrix units a kernel variant of the library uses. */
static void f_matrix(const attn_tool_device *d, char *b, size_t n)
{
    if (d->nv_sm >= 80)
        snprintf(b, n,
                 "NVIDIA tensor cores (compute capability %d.%d): variant mma "
                 "when the precision permits (tf32, 3xtf32, bf16)",
                 d->nv_sm / 10, d->nv_sm % 10);
    else if (d->nv_sm > 0)
        snprintf(b, n,
                 "none used (compute capability %d.%d < 8.0: no mma.sync "
                 "for the mma variant)",
                 d->nv_sm / 10, d->nv_sm % 10);
    else if (d->amd_unit)
        snprintf(b, n,
                 "AMD %s (gfx%x): variant amdmm when the precision permits "
                 "(tf32, bf16; F16 storage%s)",
                 d->amd_unit == 1 ? "MFMA matrix cores" : "WMMA (RDNA3)",
                 (unsigned)d->amd_gfx,
                 d->amd_xf32 ? ", and F32 through xf32" : " only");
    else if (d->amd_gfx)
        snprintf(b, n,
                 "none used (gfx%x: no MFMA / WMMA for the amdmm variant)",
                 (unsigned)d->amd_gfx);
    else if (d->intel_xmx == 8)
        snprintf(b, n,
                 "Intel XMX (DPAS, subgroups of 8): variant xmx for F16 "
                 "storage when the precision permits (tf32, bf16)");
    else if (d->intel_xmx > 0)
        snprintf(b, n,
                 "none used (Intel XMX with subgroups of %d: the xmx variant "
                 "is written for subgroups of 8)",
                 d->intel_xmx);
    else
        snprintf(b, n, "none used (SIMT variants)");
}
/* The subgroup shuffles the tiled variant reduces its rows with. */
static void f_shuffle(const attn_tool_device *d, char *b, size_t n)
{
    static const char use[] = "the tiled variant's row reductions";
    if (d->shuffle == 2)
        snprintf(b, n, "cl_intel_subgroups: %s", use);
    else if (d->shuffle == 3)
        snprintf(b, n, "cl_khr_subgroup_shuffle: %s", use);
    else if (d->nv_sm >= 30)
        snprintf(b, n,
                 "shfl.sync as inline PTX where the driver builds it (a "
                 "probe kernel per context): %s",
                 use);
    else
        snprintf(b, n,
                 "none (the tiled variant reduces through local "
                 "memory)");
}
static void f_rank(const attn_tool_device *d, char *b, size_t n)
{
    snprintf(b, n, "%.1f", d->info.rank);
}

static const struct {
    const char *label;
    unsigned failed; /* ATTN_TOOL_Q_* bit that voids the value, or 0 */
    fmt_fn fmt;
} props[] = {
    {"Kind", ATTN_TOOL_Q_TYPE, f_kind},
    {"Vendor", ATTN_TOOL_Q_VENDOR, f_vendor},
    {"Driver version", ATTN_TOOL_Q_DRIVER, f_driver},
    {"OpenCL version", ATTN_TOOL_Q_VERSION, f_clver},
    {"OpenCL C version", ATTN_TOOL_Q_CLC_VERSION, f_clc},
    {"Compute units", ATTN_TOOL_Q_COMPUTE_UNITS, f_cu},
    {"Max clock", ATTN_TOOL_Q_CLOCK, f_clock},
    {"Global memory", ATTN_TOOL_Q_GLOBAL_MEM, f_gmem},
    {"Local memory", ATTN_TOOL_Q_LOCAL_MEM, f_lmem},
    {"Max allocation", ATTN_TOOL_Q_MAX_ALLOC, f_alloc},
    {"Max work-group size", ATTN_TOOL_Q_WORK_GROUP, f_wg},
    {"fp16 (cl_khr_fp16)", ATTN_TOOL_Q_FP16, f_fp16},
    {"fp64", ATTN_TOOL_Q_FP64, f_fp64},
    {"Host-unified memory", ATTN_TOOL_Q_UNIFIED, f_unified},
    {"Offline binary", 0, f_binary},
    {"Matrix units", 0, f_matrix},
    {"Subgroup shuffles", 0, f_shuffle},
    {"Usable", 0, f_usable},
    {"Rank", 0, f_rank},
};

/* The extension list, wrapped under its label. */
static void print_extensions(const attn_tool_device *d)
{
    char *ext = NULL;
    size_t col = 0;
    printf("    %-22s", "Extensions");
    if (attn_tool_device_extensions(d, &ext) != ATTN_OK) {
        printf(" (query failed)\n");
        return;
    }
    for (const char *p = ext; *p;) {
        size_t len = strcspn(p, " ");
        if (len) {
            if (col && col + len + 1 > 50) {
                printf("\n    %-22s", "");
                col = 0;
            }
            printf(" %.*s", (int)len, p);
            col += len + 1;
        }
        p += len + (p[len] == ' ');
    }
    printf("%s\n", col ? "" : " (none)");
    free(ext);
}

static void print_table(const attn_tool_device *devs, size_t n, int verbose)
{
    char val[512];
    int last_platform = -1;
    size_t platforms = 0;
    for (size_t i = 0; i < n; i++)
        platforms += i == 0 || devs[i].info.platform_index !=
                                   devs[i - 1].info.platform_index;
    printf("%zu OpenCL platform%s with devices, %zu device%s\n", platforms,
           platforms == 1 ? "" : "s", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const attn_tool_device *d = &devs[i];
        if (d->info.platform_index != last_platform) {
            last_platform = d->info.platform_index;
            printf("\nPlatform %d  %s\n", last_platform,
                   d->query_failed & ATTN_TOOL_Q_PLATFORM ? "(query failed)"
                                                          : d->info.platform);
        }
        printf("  Device %d:%d  %s\n", d->info.platform_index,
               d->info.device_index,
               d->query_failed & ATTN_TOOL_Q_NAME ? "(name query failed)"
                                                  : d->info.name);
        for (size_t k = 0; k < sizeof props / sizeof props[0]; k++) {
            if (props[k].failed && (d->query_failed & props[k].failed))
                snprintf(val, sizeof val, "(query failed)");
            else
                props[k].fmt(d, val, sizeof val);
            printf("    %-22s %s\n", props[k].label, val);
        }
        if (verbose)
            print_extensions(d);
    }
    printf("\n%-6s %-6s %-6s %-9s %s\n", "P:D", "kind", "usable", "rank",
           "name");
    for (size_t i = 0; i < n; i++) {
        char pd[24];
        snprintf(pd, sizeof pd, "%d:%d", devs[i].info.platform_index,
                 devs[i].info.device_index);
        printf("%-6s %-6s %-6s %-9.1f %s\n", pd,
               attn_tool_kind_name(devs[i].info.kind),
               yes_no(devs[i].info.usable), devs[i].info.rank,
               devs[i].info.name);
    }
}

static void print_selection(const attn_tool_device *devs, const char *spec,
                            const attn_tool_selection *sel)
{
    printf("\nSelected (%s): ", spec);
    if (sel->native) {
        printf("native (the built-in C backend)\n");
    } else {
        for (size_t k = 0; k < sel->count; k++) {
            const attn_device_info *d = &devs[sel->index[k]].info;
            printf("%s%d:%d %s (%s)", k ? ", " : "", d->platform_index,
                   d->device_index, d->name, attn_tool_kind_name(d->kind));
        }
        printf("\n");
    }
    printf("  %s\n", sel->why);
}

/* ---- kernel variants -------------------------------------------------------
 */

/* The kernel variants, their paths and parameters (--kernels). */
static int print_kernels(void)
{
    attn_tool_variant v;
    printf("attn-probe (libattn %s): OpenCL kernel variants (force one with "
           "ATTN_KERNEL\nor options.kernel; tune one with profile keys "
           "<variant>.<parameter>)\n",
           attn_version());
    if (!attn_kernel_name(0))
        printf("\nnone: this build has no OpenCL backend\n");
    for (int i = 0; attn_tool_variant_info(i, &v) == ATTN_OK; i++) {
        printf("\n%s (path %s): %s\n", v.name, v.path, v.summary);
        for (int k = 0; k < v.n_params; k++) {
            const attn_tool_param *p = &v.params[k];
            printf("  %-12s %6d  [%d, %d]%s%s%s  %s\n", p->name, p->def, p->min,
                   p->max, p->pow2 ? " power of two" : "",
                   p->choice ? " one of" : "",
                   p->runtime ? " (not built in)" : "", p->doc);
        }
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------
 */

int main(int argc, char **argv)
{
    probe_args a;
    attn_tool_device *devs = NULL;
    size_t n = 0;
    attn_tool_selection sel;
    probe_native native;
    struct {
        char msg[512];
    } derr = {""}, serr = {""};
    attn_status ds, ss;
    const char *spec;
    int rc = parse_args(argc, argv, &a);

    if (rc >= 0)
        return rc;
    if (a.kernels)
        return print_kernels();
    spec = a.spec ? a.spec : "auto";

    ds = attn_tool_discover(&devs, &n, derr.msg, sizeof derr.msg);
    if (ds != ATTN_OK)
        fprintf(stderr, "attn-probe: OpenCL discovery failed: %s: %s\n",
                attn_status_string(ds), derr.msg);
    /* The same choice attn_context_create makes (profiles included). */
    ss = attn_tool_select(devs, n, spec, -1, &sel, serr.msg, sizeof serr.msg);

    if (a.bench) {
        int failed = 0;
        if (!ss) {
            /* The bench names devices itself ("P:D"); ATTN_DEVICE would
             * override them. */
            unsetenv("ATTN_DEVICE");
            failed = probe_bench(devs, n, a.spec ? &sel : NULL);
        }
        if (ss)
            fprintf(stderr, "attn-probe: %s%s%s: %s\n", attn_status_string(ss),
                    a.origin ? " from " : "", a.origin ? a.origin : "",
                    serr.msg);
        free(devs);
        return ds != ATTN_OK || ss != ATTN_OK || failed ? 1 : 0;
    }
    native_info(&native);
    if (a.json) {
        probe_json(devs, n, spec, &sel, ss ? serr.msg : NULL, &native,
                   a.verbose);
    } else {
        printf("attn-probe (libattn %s)\n", attn_version());
        if (n == 0 && ds == ATTN_OK)
            print_no_platform();
        else
            print_table(devs, n, a.verbose);
        print_native(&native);
        if (!ss)
            print_selection(devs, spec, &sel);
    }
    if (ss)
        fprintf(stderr, "attn-probe: %s%s%s: %s\n", attn_status_string(ss),
                a.origin ? " from " : "", a.origin ? a.origin : "", serr.msg);
    free(devs);
    return ds != ATTN_OK || ss != ATTN_OK ? 1 : 0;
}
