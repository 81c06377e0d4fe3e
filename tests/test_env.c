/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_env: the environment never makes attn_context_create fail (README,
 * "Environment"; only what the caller passes in attn_options can).  Every
 * bad value of every variable tried here gives ATTN_OK, a warning that
 * names the variable and what it accepts, and a context that computes the
 * right answer; ATTN_DEVICE naming no device stays an error.  The
 * variables that only an OpenCL device reads (cache and profile folders,
 * binaries) are tried on the OpenCL CPU device, and skipped (saying so)
 * without one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"

/* Every variable the library reads, cleared before each case. */
static const char *const vars[] = {
    "ATTN_LOG",          "ATTN_NUM_THREADS",       "ATTN_DEVICE",
    "ATTN_KERNEL",       "ATTN_CPU_ISA",           "ATTN_CACHE_DIR",
    "ATTN_PLATFORM_DIR", "ATTN_KERNEL_BINARY_DIR", "ATTN_PRECISION"};

typedef struct bad_value {
    const char *var, *value;
    const char *accepted; /* a word of the accepted values the warning
                             must name */
    int opencl;           /* 1: read by an OpenCL device only */
} bad_value;

static const bad_value cases[] = {
    {"ATTN_LOG", "verbose", "debug", 0},
    {"ATTN_LOG", "3", "debug", 0},
    {"ATTN_LOG", "info ", "debug", 0},
    {"ATTN_NUM_THREADS", "0", "[1, 1024]", 0},
    {"ATTN_NUM_THREADS", "abc", "[1, 1024]", 0},
    {"ATTN_NUM_THREADS", "-2", "[1, 1024]", 0},
    {"ATTN_NUM_THREADS", "99999", "[1, 1024]", 0},
    {"ATTN_NUM_THREADS", "4x", "[1, 1024]", 0},
    {"ATTN_NUM_THREADS", " ", "[1, 1024]", 0},
    {"ATTN_DEVICE", "native,cpu", "comma list", 0},
    {"ATTN_DEVICE", "gpu, native", "comma list", 0},
    {"ATTN_DEVICE", ",", "comma list", 0},
    {"ATTN_DEVICE", " , ,", "comma list", 0},
    {"ATTN_KERNEL", "no-such-kernel", "native", 0},
    {"ATTN_KERNEL", "native", "ignored", 1}, /* on an OpenCL device */
    {"ATTN_CPU_ISA", "sse9", "avx2", 0},
    {"ATTN_CPU_ISA", "", NULL, 0}, /* empty: unset, no warning */
    {"ATTN_PRECISION", "fp16", "3xtf32", 0},
    {"ATTN_PRECISION", "tf32 ", "3xtf32", 0},
    {"ATTN_PRECISION", "1", "exact", 0},
    {"ATTN_PRECISION", "", NULL, 0},
    {"ATTN_KERNEL_BINARY_DIR", "/nonexistent/attn-bins", "folder", 0},
    {"ATTN_CACHE_DIR", "relative/cache", "absolute", 1},
    {"ATTN_PLATFORM_DIR", "/nonexistent/attn-profiles", "built-in", 1},
};

static char warnings[8192];

static void capture(int level, const char *msg, void *user)
{
    size_t used = strlen(warnings);
    (void)user;
    if (level <= ATTN_LOG_WARN)
        snprintf(warnings + used, sizeof warnings - used, "%s\n", msg);
}

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* A context with the log captured on device (NULL: the default). */
static attn_status create(const char *device, attn_context **ctx)
{
    attn_options o = ATTN_OPTIONS_INIT;
    if (device)
        o.device = device;
    o.log = capture;
    warnings[0] = '\0';
    *ctx = NULL;
    return attn_context_create(&o, ctx);
}

static int computes(attn_context *ctx, const char *what)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    sdpa_case c;
    int ok;
    d.batch = 1;
    d.heads_q = d.heads_kv = 2;
    d.seq_q = 5;
    d.seq_kv = 9;
    d.head_dim = d.head_dim_v = 16;
    d.mask.causal = 1;
    if (sdpa_case_init(&c, &d, 11, 1.0, 0.0, 0) != 0)
        return 0;
    ok = sdpa_case_check(ctx, &c, NULL, 1, NULL, what);
    sdpa_case_free(&c);
    return ok;
}

static int have_cl_cpu;

static void try_case(const bad_value *b)
{
    char what[256];
    attn_context *ctx = NULL;
    attn_status s;
    snprintf(what, sizeof what, "%s=\"%s\"", b->var, b->value);
    if (b->opencl && !have_cl_cpu) {
        printf("\n  SKIP %s: no OpenCL CPU device", what);
        return;
    }
    clear_env();
    CU_ASSERT_EQUAL_FATAL(setenv(b->var, b->value, 1), 0);
    s = create(b->opencl ? "cpu" : NULL, &ctx);
    HARNESS_EXPECT(s == ATTN_OK, what);
    if (s != ATTN_OK) {
        printf("\n  %s: %s: %s\n", what, attn_status_string(s),
               attn_last_error());
        clear_env();
        return;
    }
    if (b->accepted) {
        int named = strstr(warnings, b->var) != NULL;
        int says = strstr(warnings, b->accepted) != NULL;
        if (!named || !says)
            printf("\n  %s: warnings were:\n%s", what, warnings);
        HARNESS_EXPECT(named, what);
        HARNESS_EXPECT(says, what);
        /* the warning is the context's last error too (README) */
        if (!strstr(attn_context_last_error(ctx), b->var))
            printf("\n  %s: last error \"%s\"", what,
                   attn_context_last_error(ctx));
        HARNESS_EXPECT(strstr(attn_context_last_error(ctx), b->var) != NULL,
                       what);
    } else {
        HARNESS_EXPECT(warnings[0] == '\0', what);
    }
    HARNESS_EXPECT(computes(ctx, what), what);
    attn_context_destroy(ctx);
    clear_env();
}

static void test_bad_values(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        try_case(&cases[i]);
}

/* A bad ATTN_NUM_THREADS falls back to the online CPUs, and the context
 * says how many it runs (the native device's compute units). */
static void test_threads_default(void)
{
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    clear_env();
    setenv("ATTN_NUM_THREADS", "0", 1);
    CU_ASSERT_EQUAL_FATAL(create("native", &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    CU_ASSERT_EQUAL((long)info.compute_units, online);
    /* The warning is also the context's last message. */
    CU_ASSERT_PTR_NOT_NULL(
        strstr(attn_context_last_error(ctx), "ATTN_NUM_THREADS"));
    attn_context_destroy(ctx);
    setenv("ATTN_NUM_THREADS", "3", 1);
    CU_ASSERT_EQUAL_FATAL(create("native", &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    CU_ASSERT_EQUAL(info.compute_units, 3);
    CU_ASSERT_STRING_EQUAL(warnings, "");
    attn_context_destroy(ctx);
    clear_env();
}

/* What the caller passes still fails, and so does a device spec that
 * matches nothing (the message names the devices there are). */
static void test_still_errors(void)
{
    attn_options o = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    clear_env();
    o.threads = -1;
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_ERR_INVALID_ARGUMENT);
    o.threads = 0;
    o.log_level = 9;
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_ERR_INVALID_ARGUMENT);
    setenv("ATTN_DEVICE", "no-such-device-xyzzy", 1);
    CU_ASSERT_EQUAL(create(NULL, &ctx), ATTN_ERR_NO_DEVICE);
    CU_ASSERT_PTR_NULL(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "native"));
    clear_env();
}

/* Without a callback, a bad ATTN_LOG still says so on stderr (whoever
 * set the variable asked for messages), once, and nothing else is
 * printed at the default level. */
static void test_log_without_callback(void)
{
    char path[] = "/tmp/attn-env-stderrXXXXXX", buf[1024] = "";
    attn_options o = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    int fd = mkstemp(path), saved = dup(2);
    FILE *f;
    CU_ASSERT_FATAL(fd >= 0 && saved >= 0);
    clear_env();
    setenv("ATTN_LOG", "chatty", 1);
    fflush(stderr);
    dup2(fd, 2);
    o.device = "native";
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    attn_context_destroy(ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    f = fopen(path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    buf[fread(buf, 1, sizeof buf - 1, f)] = '\0';
    fclose(f);
    remove(path);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "ATTN_LOG=\"chatty\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "error, warn, info, debug, off"));
    CU_ASSERT_PTR_NULL(
        strchr(strchr(buf, '\n') ? strchr(buf, '\n') + 1 : buf, '\n'));
    clear_env();
}

/* A profile folder whose file is no profile: reported, the built-in
 * profiles apply. */
static void test_bad_profile(void)
{
    char dir[] = "/tmp/attn-env-profXXXXXX", file[64];
    attn_context *ctx = NULL;
    FILE *f;
    if (!have_cl_cpu) {
        printf("\n  SKIP bad profile: no OpenCL CPU device");
        return;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/bad.prof", dir);
    f = fopen(file, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("no profile at all\n[device]\nfused.nope = 3\n", f);
    fclose(f);
    clear_env();
    setenv("ATTN_PLATFORM_DIR", dir, 1);
    CU_ASSERT_EQUAL(create("cpu", &ctx), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(warnings, "ATTN_PLATFORM_DIR="));
    CU_ASSERT_PTR_NOT_NULL(strstr(warnings, "bad.prof"));
    if (ctx)
        CU_ASSERT_TRUE(computes(ctx, "bad profile"));
    attn_context_destroy(ctx);
    clear_env();
    remove(file);
    rmdir(dir);
}

int main(void)
{
    static const harness_test tests[] = {
        {"every bad value: a warning and a working context", test_bad_values},
        {"bad ATTN_NUM_THREADS: the online CPUs", test_threads_default},
        {"a profile folder with a bad profile", test_bad_profile},
        {"what still fails", test_still_errors},
        {"bad ATTN_LOG without a callback", test_log_without_callback},
        {NULL, NULL}};
    attn_context *ctx = NULL;
    /* The OpenCL cases use the default program cache, as the other
     * suites do (a fresh one would have PoCL compile every kernel anew,
     * which takes seconds and minutes under the sanitizers). */
    clear_env();
    have_cl_cpu = create("cpu", &ctx) == ATTN_OK;
    attn_context_destroy(ctx);
    return harness_main("environment", NULL, NULL, tests);
}
