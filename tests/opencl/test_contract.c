/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What contexts promise about the OpenCL driver and the platform profiles:
 *   - a context on device "native" never loads or starts the OpenCL
 *     driver: no clGetPlatformIDs (counted by a link-time wrapper), no ICD
 *     library mapped, no thread left behind;
 *   - a device list with no item ("," or " , ") is an error in the
 *     options; in ATTN_DEVICE it is a warning naming the variable, and the
 *     options' device is used (the environment never fails a context);
 *   - a profile's build options pass an allowlist: others (-D, -I, ...)
 *     are reported with file:line and dropped, the rest of the file
 *     applies, and a profile that tries to turn the kernels into F16 ones
 *     leaves F32 results right;
 *   - each profile warning reaches the log once per context.
 *
 * The native case runs first, before anything else of the process touches
 * OpenCL.  The other cases skip, saying so, without an OpenCL device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn/attn_cl.h"
#include "cases.h"
#include "harness.h"
#include "opencl/profile.h"

cl_int __real_clGetPlatformIDs(cl_uint, cl_platform_id *, cl_uint *);
cl_int __wrap_clGetPlatformIDs(cl_uint, cl_platform_id *, cl_uint *);

static unsigned long platform_calls;

cl_int __wrap_clGetPlatformIDs(cl_uint n, cl_platform_id *ids, cl_uint *count)
{
    platform_calls++;
    return __real_clGetPlatformIDs(n, ids, count);
}

static int have_device; /* an OpenCL CPU device ("cpu") opens */

/* ---- helpers ------------------------------------------------------------- */

/* 1 when a file whose path holds needle is mapped into this process. */
static int mapped(const char *needle)
{
    char line[1024];
    int found = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* The process's thread count (/proc/self/status), -1 when unknown. */
static int threads_now(void)
{
    char line[256];
    int n = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Threads:", 8))
            n = atoi(line + 8);
    fclose(f);
    return n;
}

/* Messages a context logged, for counting. */
#define MAX_MSGS 64
typedef struct log_book {
    int n;
    char msg[MAX_MSGS][512];
} log_book;

static void record(int level, const char *msg, void *user)
{
    log_book *b = user;
    (void)level;
    if (b->n < MAX_MSGS)
        snprintf(b->msg[b->n++], sizeof b->msg[0], "%s", msg);
}

static int count_with(const log_book *b, const char *frag)
{
    int n = 0;
    for (int i = 0; i < b->n; i++)
        n += strstr(b->msg[i], frag) != NULL;
    return n;
}

static char profile_dir[64];
static const char *const *profile_files;

/* A fresh profile folder holding the given files (name, text pairs, NULL
 * ended), set as ATTN_PLATFORM_DIR. */
static int profile_folder(const char *const *files)
{
    snprintf(profile_dir, sizeof profile_dir, "/tmp/attn-contract-XXXXXX");
    if (!mkdtemp(profile_dir))
        return -1;
    profile_files = files;
    for (int i = 0; files[i]; i += 2) {
        char path[160];
        FILE *f;
        snprintf(path, sizeof path, "%s/%.64s", profile_dir, files[i]);
        if (!(f = fopen(path, "w")))
            return -1;
        fputs(files[i + 1], f);
        fclose(f);
    }
    return setenv("ATTN_PLATFORM_DIR", profile_dir, 1);
}

static void profile_folder_remove(void)
{
    unsetenv("ATTN_PLATFORM_DIR");
    for (int i = 0; profile_files && profile_files[i]; i += 2) {
        char path[160];
        snprintf(path, sizeof path, "%s/%.64s", profile_dir, profile_files[i]);
        unlink(path);
    }
    rmdir(profile_dir);
    profile_files = NULL;
}

/* ---- native: no OpenCL at all ------------------------------------------- */

static void test_native_no_opencl(void)
{
    const int pocl_before = mapped("libpocl");
    const int threads_before = threads_now();
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;

    attn_options_init(&o);
    o.device = "native";
    platform_calls = 0;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = 2;
    d.seq_q = d.seq_kv = 7;
    d.head_dim = d.head_dim_v = 8;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 3, 1.0, 0.0, 0), 0);
    CU_ASSERT(sdpa_case_check(ctx, &c, NULL, 1, NULL, "native context"));
    attn_context_destroy(ctx);
    /* The environment's way to ask for it, options left at auto. */
    attn_options_init(&o);
    setenv("ATTN_DEVICE", " Native ", 1);
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    unsetenv("ATTN_DEVICE");
    attn_context_destroy(ctx);

    CU_ASSERT_EQUAL(platform_calls, 0);
    if (pocl_before == 0)
        CU_ASSERT_EQUAL(mapped("libpocl"), 0);
    if (threads_before > 0)
        CU_ASSERT_EQUAL(threads_now(), threads_before);
    if (platform_calls || (pocl_before == 0 && mapped("libpocl")))
        printf("\n  native contexts called clGetPlatformIDs %lu times; PoCL "
               "mapped: %d\n",
               platform_calls, mapped("libpocl"));

    /* The wrapper does count: an OpenCL device asks for the platforms. */
    attn_options_init(&o);
    o.device = "cpu";
    o.cache_dir = "";
    if (attn_context_create(&o, &ctx) == ATTN_OK) {
        have_device = 1;
        CU_ASSERT(platform_calls > 0);
        attn_context_destroy(ctx);
    }
    sdpa_case_free(&c);
}

/* ---- device lists without an item --------------------------------------- */

static void test_empty_device_list(void)
{
    static const char *const specs[] = {",", " , ,", " "};
    attn_options o;
    attn_context *ctx;
    for (int i = 0; i < 3; i++) {
        attn_options_init(&o);
        o.device = specs[i];
        ctx = (attn_context *)&ctx;
        CU_ASSERT_EQUAL(attn_context_create(&o, &ctx),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NULL(ctx);
        CU_ASSERT(strstr(attn_last_error(), "empty list") != NULL);
        /* ATTN_DEVICE: no spec at all, so a warning and the options'
         * device, as for every bad environment value. */
        attn_options_init(&o);
        o.device = "native";
        setenv("ATTN_DEVICE", specs[i], 1);
        CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
        CU_ASSERT(strstr(attn_context_last_error(ctx), "ATTN_DEVICE") != NULL);
        CU_ASSERT(strstr(attn_context_last_error(ctx), "empty list") != NULL);
        attn_context_destroy(ctx);
        unsetenv("ATTN_DEVICE");
    }
    /* "" is not a list: the default, auto. */
    attn_options_init(&o);
    o.device = "";
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    attn_context_destroy(ctx);
}

/* ---- build options ------------------------------------------------------ */

static void say(void *user, const char *msg)
{
    log_book *b = user;
    record(ATTN_LOG_WARN, msg, b);
}

static void test_build_option_allowlist(void)
{
    static const char text[] =
        "[default]\n"
        "build_options = -cl-mad-enable -DATTN_F16=1 -I/tmp "
        "-cl-nv-maxrregcount=64 -cl-std=CL2.0 -cl-fast-relaxed-math -D X\n"
        "queues = 2\n";
    attn_profile_text t = {"t.prof", text, sizeof text - 1};
    attn_device_info dev;
    attn_profile *p = malloc(sizeof *p);
    log_book *b = calloc(1, sizeof *b);
    CU_ASSERT_FATAL(p && b);
    memset(&dev, 0, sizeof dev);
    snprintf(dev.name, sizeof dev.name, "some device");
    CU_ASSERT_EQUAL(attn_profile_resolve_texts(&dev, &t, 1, p, say, b),
                    ATTN_OK);
    CU_ASSERT_STRING_EQUAL(p->build_options, "-cl-mad-enable "
                                             "-cl-nv-maxrregcount=64 "
                                             "-cl-fast-relaxed-math");
    CU_ASSERT_EQUAL(p->queues, 2); /* the rest of the file applies */
    CU_ASSERT_EQUAL(count_with(b, "t.prof:2: build option '-DATTN_F16=1' is "
                                  "not allowed"),
                    1);
    CU_ASSERT_EQUAL(count_with(b, "'-I/tmp'"), 1);
    CU_ASSERT_EQUAL(count_with(b, "'-cl-std=CL2.0'"), 1);
    CU_ASSERT_EQUAL(count_with(b, "'-D'"), 1);
    CU_ASSERT_EQUAL(count_with(b, "'X'"), 1);
    CU_ASSERT_EQUAL(count_with(b, "ignored"), 0);
    CU_ASSERT_EQUAL(b->n, 5);

    static const struct {
        const char *opt;
        int ok;
    } cases[] = {{"-cl-mad-enable", 1},
                 {"-cl-no-signed-zeros", 1},
                 {"-cl-denorms-are-zero", 1},
                 {"-cl-finite-math-only", 1},
                 {"-cl-nv-maxrregcount=1", 1},
                 {"-cl-nv-maxrregcount=999", 1},
                 {"-cl-nv-maxrregcount=0", 0},
                 {"-cl-nv-maxrregcount=1000", 0},
                 {"-cl-nv-maxrregcount=", 0},
                 {"-cl-nv-maxrregcount=6x", 0},
                 {"-cl-mad-enable2", 0},
                 {"-cl-mad", 0},
                 {"-DATTN_F16", 0},
                 {"-cl-kernel-arg-info", 0},
                 {"-cl-opt-disable", 0},
                 {"-x", 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got =
            attn_profile_build_option_ok(cases[i].opt, strlen(cases[i].opt));
        HARNESS_EXPECT(got == cases[i].ok, cases[i].opt);
    }
    free(b);
    free(p);
}

/* The profile of the review that found it: F16 kernels on F32 data gave
 * errors of 0.15-0.23 on the three-kernel path with ATTN_OK. */
static void test_build_option_cannot_change_kernels(void)
{
    static const char *const files[] = {
        "zz.prof", "[default]\nbuild_options = -DATTN_F16=1 -cl-mad-enable\n",
        NULL};
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    log_book *b = calloc(1, sizeof *b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    if (!have_device) {
        printf("\n  SKIP: no OpenCL CPU device\n");
        free(b);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(profile_folder(files), 0);
    attn_options_init(&o);
    o.device = "cpu";
    o.cache_dir = "";
    o.allow_fallback = 0;
    o.kernel = "unfused";
    o.log = record;
    o.log_user = b;
    o.log_level = ATTN_LOG_WARN;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    memset(&d, 0, sizeof d);
    d.batch = 2;
    d.heads_q = 4;
    d.heads_kv = 2;
    d.seq_q = 19;
    d.seq_kv = 33;
    d.head_dim = d.head_dim_v = 16;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 5, 1.0, 0.0, 0), 0);
    CU_ASSERT(sdpa_case_check(ctx, &c, NULL, 1, NULL,
                              "F32 under a profile with -DATTN_F16=1"));
    CU_ASSERT_EQUAL(count_with(b, "zz.prof:2: build option '-DATTN_F16=1'"), 1);
    attn_context_destroy(ctx);
    sdpa_case_free(&c);
    profile_folder_remove();
    free(b);
}

/* ---- profile warnings, once --------------------------------------------- */

static void test_profile_warnings_once(void)
{
    static const char *const files[] = {
        "bad.prof", "[default]\nqueues = 1\nno_such_key = 3\n", "opts.prof",
        "[default]\nbuild_options = -I/etc\n", NULL};
    attn_options o;
    attn_context *ctx = NULL;
    log_book *b = calloc(1, sizeof *b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    if (!have_device) {
        printf("\n  SKIP: no OpenCL CPU device\n");
        free(b);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(profile_folder(files), 0);
    attn_options_init(&o);
    o.device = "cpu";
    o.cache_dir = "";
    o.log = record;
    o.log_user = b;
    o.log_level = ATTN_LOG_WARN;
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    attn_context_destroy(ctx);
    CU_ASSERT_EQUAL(count_with(b, "bad.prof:3: unknown key 'no_such_key'"), 1);
    CU_ASSERT_EQUAL(count_with(b, "bad.prof: ignored (1 error)"), 1);
    CU_ASSERT_EQUAL(count_with(b, "opts.prof:2: build option '-I/etc'"), 1);
    for (int i = 0; i < b->n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(b->msg[i], b->msg[j])) {
                printf("\n  said twice: %s\n", b->msg[i]);
                CU_FAIL("a profile warning was said twice");
            }
    profile_folder_remove();
    free(b);
}

int main(void)
{
    static const harness_test tests[] = {
        /* first: nothing has touched OpenCL yet */
        {"native contexts leave OpenCL alone", test_native_no_opencl},
        {"an empty device list is an error", test_empty_device_list},
        {"profile build options: the allowlist", test_build_option_allowlist},
        {"a profile cannot change what the kernels compute",
         test_build_option_cannot_change_kernels},
        {"profile warnings once per context", test_profile_warnings_once},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_PLATFORM_DIR");
    unsetenv("ATTN_KERNEL");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    return harness_main("context contract", NULL, NULL, tests);
}
