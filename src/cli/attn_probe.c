/*
 * attn-probe: lists every OpenCL platform and device of the machine, what
 * libattn thinks of each (kind, usable or why not, rank) and the device
 * "auto" -- or -d SPEC / ATTN_DEVICE -- selects.  --bench self-tests each
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
#include "cli/probe.h"

typedef struct probe_args {
    int json;
    int bench;
    int kernels;
    const char *spec;   /* NULL: "auto" */
    const char *origin; /* where spec came from, for messages */
} probe_args;

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [--json] [-d SPEC | --device SPEC] [--bench] "
            "[--kernels]\n"
            "       [--help] [--version]\n"
            "\n"
            "Lists the OpenCL platforms and devices libattn sees, whether "
            "each is usable\n"
            "(or why not) and its rank, then the device the selection "
            "picks and why.\n"
            "\n"
            "  --json           one JSON object instead of the table\n"
            "  -d, --device S   select like ATTN_DEVICE: auto, native, gpu, "
            "igpu, fpga,\n"
            "                   cpu, P:D (platform:device index), a device "
            "name substring,\n"
            "                   all, or a comma list of these; overrides "
            "ATTN_DEVICE\n"
            "  --bench          self-test each usable device (only the ones "
            "-d selects,\n"
            "                   when given) against the native backend: "
            "B=1 H=8 N=1024\n"
            "                   d=64 f32 attention, max abs difference "
            "(pass <= 1e-4)\n"
            "                   and GFLOP/s (4*N*N*d*H over the median of 5 "
            "calls after\n"
            "                   a warm-up); not with --json\n"
            "  --kernels        list the OpenCL kernel variants: the path "
            "each serves and\n"
            "                   its parameters (profile keys "
            "<variant>.<parameter>)\n"
            "  --version        print the libattn version\n"
            "  -h, --help       this text\n"
            "\n"
            "Exit status: 0 on success (also when there is no OpenCL at "
            "all), 1 when the\n"
            "device spec matches nothing usable, discovery fails or a "
            "device fails its\n"
            "--bench self-test, 2 on a usage error.\n",
            argv0);
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, probe_args *a)
{
    const char *env = getenv("ATTN_DEVICE");
    memset(a, 0, sizeof *a);
    if (env && *env) {
        a->spec = env;
        a->origin = "ATTN_DEVICE";
    }
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--bench")) {
            a->bench = 1;
        } else if (!strcmp(s, "--kernels")) {
            a->kernels = 1;
        } else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            usage(stdout, argv[0]);
            return 0;
        } else if (!strcmp(s, "--version")) {
            printf("attn-probe (libattn) %s\n", attn_version());
            return 0;
        } else if (!strcmp(s, "-d") || !strcmp(s, "--device")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a device spec\n", argv[0], s);
                return 2;
            }
            a->spec = argv[++i];
            a->origin = s;
        } else if (!strncmp(s, "--device=", 9)) {
            a->spec = s + 9;
            a->origin = "--device";
        } else {
            fprintf(stderr, "%s: unknown argument \"%s\"\n\n", argv[0], s);
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (a->json && a->bench) {
        fprintf(stderr, "%s: --bench and --json do not combine\n", argv[0]);
        return 2;
    }
    return -1;
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
    {"Usable", 0, f_usable},
    {"Rank", 0, f_rank},
};

static void print_table(const attn_tool_device *devs, size_t n)
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

/* ---- JSON -----------------------------------------------------------------
 */

/* Length of the valid UTF-8 sequence at p, 0 when it is not one. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    /* No overlong forms, no surrogates, nothing above U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

/* A JSON string; bytes that are not UTF-8 (a driver's Latin-1, a name cut
 * by truncation) become U+FFFD so the output always parses. */
static void json_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    while (*p) {
        size_t len;
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p++);
        } else if (*p == '\n') {
            printf("\\n");
            p++;
        } else if (*p == '\t') {
            printf("\\t");
            p++;
        } else if (*p < 0x20) {
            printf("\\u%04x", (unsigned)*p++);
        } else if (*p < 0x80) {
            putchar(*p++);
        } else if ((len = utf8_len(p)) > 0) {
            fwrite(p, 1, len, stdout);
            p += len;
        } else {
            printf("\\ufffd");
            p++;
        }
    }
    putchar('"');
}

static const char *bool_str(int v)
{
    return v ? "true" : "false";
}

static void json_device(const attn_tool_device *d)
{
    static const struct {
        unsigned bit;
        const char *name;
    } qnames[] = {{ATTN_TOOL_Q_NAME, "name"},
                  {ATTN_TOOL_Q_VENDOR, "vendor"},
                  {ATTN_TOOL_Q_PLATFORM, "platform"},
                  {ATTN_TOOL_Q_DRIVER, "driver_version"},
                  {ATTN_TOOL_Q_CLC_VERSION, "opencl_c_version"},
                  {ATTN_TOOL_Q_COMPUTE_UNITS, "compute_units"},
                  {ATTN_TOOL_Q_CLOCK, "max_clock_mhz"},
                  {ATTN_TOOL_Q_GLOBAL_MEM, "global_mem_bytes"},
                  {ATTN_TOOL_Q_LOCAL_MEM, "local_mem_bytes"},
                  {ATTN_TOOL_Q_MAX_ALLOC, "max_alloc_bytes"},
                  {ATTN_TOOL_Q_WORK_GROUP, "max_work_group_size"},
                  {ATTN_TOOL_Q_FP16, "fp16"},
                  {ATTN_TOOL_Q_FP64, "fp64"},
                  {ATTN_TOOL_Q_UNIFIED, "unified_memory"},
                  {ATTN_TOOL_Q_TYPE, "kind"}};
    const attn_device_info *i = &d->info;
    int first = 1;
    printf("{\"platform\": ");
    json_string(i->platform);
    printf(", \"platform_index\": %d, \"device_index\": %d, \"name\": ",
           i->platform_index, i->device_index);
    json_string(i->name);
    printf(", \"vendor\": ");
    json_string(i->vendor);
    printf(", \"driver_version\": ");
    json_string(i->driver_version);
    printf(", \"opencl_c_version\": ");
    json_string(i->opencl_c_version);
    printf(", \"kind\": \"%s\", \"compute_units\": %u, \"max_clock_mhz\": %u, "
           "\"global_mem_bytes\": %llu, \"local_mem_bytes\": %llu, "
           "\"max_alloc_bytes\": %llu, \"max_work_group_size\": %zu, "
           "\"fp16\": %s, \"fp64\": %s, \"unified_memory\": %s, "
           "\"has_binary\": %s, \"usable\": %s, \"reason\": ",
           attn_tool_kind_name(i->kind), i->compute_units, i->max_clock_mhz,
           (unsigned long long)i->global_mem_bytes,
           (unsigned long long)i->local_mem_bytes,
           (unsigned long long)i->max_alloc_bytes, i->max_work_group_size,
           bool_str(i->fp16), bool_str(i->fp64), bool_str(i->unified_memory),
           bool_str(d->has_binary), bool_str(i->usable));
    json_string(i->reason);
    printf(", \"rank\": %.3f, \"failed_queries\": [", i->rank);
    for (size_t k = 0; k < sizeof qnames / sizeof qnames[0]; k++) {
        if (d->query_failed & qnames[k].bit) {
            printf("%s\"%s\"", first ? "" : ", ", qnames[k].name);
            first = 0;
        }
    }
    printf("]}");
}

static void json_selected(const attn_tool_device *devs, size_t k,
                          const attn_tool_selection *sel)
{
    if (sel->native) {
        printf("{\"kind\": \"native\", \"name\": \"native\", "
               "\"platform_index\": -1, \"device_index\": -1}");
        return;
    }
    const attn_device_info *d = &devs[sel->index[k]].info;
    printf("{\"kind\": \"%s\", \"name\": ", attn_tool_kind_name(d->kind));
    json_string(d->name);
    printf(", \"platform_index\": %d, \"device_index\": %d}", d->platform_index,
           d->device_index);
}

static void print_json(const attn_tool_device *devs, size_t n, const char *spec,
                       const attn_tool_selection *sel, const char *error)
{
    printf("{\"version\": ");
    json_string(attn_version());
    printf(", \"opencl\": %s, \"devices\": [", bool_str(n > 0));
    for (size_t i = 0; i < n; i++) {
        printf("%s\n  ", i ? "," : "");
        json_device(&devs[i]);
    }
    printf("],\n \"spec\": ");
    json_string(spec);
    if (error) {
        printf(", \"selected\": null, \"selected_devices\": [], \"why\": "
               "\"\", \"error\": ");
        json_string(error);
        printf("}\n");
        return;
    }
    printf(", \"selected\": ");
    json_selected(devs, 0, sel);
    printf(", \"selected_devices\": [");
    for (size_t k = 0; k < (sel->native ? 1 : sel->count); k++) {
        printf("%s", k ? ", " : "");
        json_selected(devs, k, sel);
    }
    printf("], \"why\": ");
    json_string(sel->why);
    printf("}\n");
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
            printf("  %-12s %6d  [%d, %d]%s%s  %s\n", p->name, p->def, p->min,
                   p->max, p->pow2 ? " power of two" : "",
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
    if (a.json) {
        print_json(devs, n, spec, &sel, ss ? serr.msg : NULL);
    } else {
        printf("attn-probe (libattn %s)\n", attn_version());
        if (n == 0 && ds == ATTN_OK)
            printf("No OpenCL platform (or device) found: libattn runs on "
                   "the native "
                   "backend.\n");
        else
            print_table(devs, n);
        if (!ss)
            print_selection(devs, spec, &sel);
    }
    if (ss)
        fprintf(stderr, "attn-probe: %s%s%s: %s\n", attn_status_string(ss),
                a.origin ? " from " : "", a.origin ? a.origin : "", serr.msg);
    free(devs);
    return ds != ATTN_OK || ss != ATTN_OK ? 1 : 0;
}
