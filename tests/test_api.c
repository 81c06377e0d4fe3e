/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_api: version, status strings, options, context lifetime, device
 * reporting, last-error strings, the log callback, thread options and the
 * device list.  The suite clears ATTN_DEVICE, ATTN_LOG and ATTN_NUM_THREADS
 * first: it tests what they do itself.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/mman.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"

static attn_status create_on(const char *device, int threads,
                             attn_context **out)
{
    attn_options o;
    attn_options_init(&o);
    o.device = device;
    o.threads = threads;
    return attn_context_create(&o, out);
}

/* A small problem run on ctx and checked against the oracle. */
static int small_sdpa_ok(attn_context *ctx, const char *what)
{
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 2;
    d.heads_q = 4;
    d.heads_kv = 2;
    d.seq_q = 9;
    d.seq_kv = 13;
    d.head_dim = 8;
    d.head_dim_v = 8;
    d.mask.causal = 1;
    sdpa_case c;
    if (sdpa_case_init(&c, &d, 7, 1.0, 0.0, 0) != 0)
        return 0;
    int ok = sdpa_case_check(ctx, &c, NULL, 1, NULL, what);
    sdpa_case_free(&c);
    return ok;
}

static void test_version(void)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", ATTN_VERSION_MAJOR,
             ATTN_VERSION_MINOR, ATTN_VERSION_PATCH);
    CU_ASSERT_STRING_EQUAL(ATTN_VERSION_STRING, want);
    const char *v = attn_version();
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_STRING_EQUAL(v, ATTN_VERSION_STRING);
    int a = -1, b = -1, c = -1;
    CU_ASSERT_EQUAL(sscanf(v, "%d.%d.%d", &a, &b, &c), 3);
    CU_ASSERT_EQUAL(a, ATTN_VERSION_MAJOR);
    CU_ASSERT_EQUAL(b, ATTN_VERSION_MINOR);
    CU_ASSERT_EQUAL(c, ATTN_VERSION_PATCH);
    CU_ASSERT_PTR_EQUAL(attn_version(), v); /* static storage */
}

static void test_status_strings(void)
{
    static const struct {
        attn_status s;
        const char *name;
    } all[] = {
        {ATTN_OK, "ATTN_OK"},
        {ATTN_ERR_INVALID_ARGUMENT, "ATTN_ERR_INVALID_ARGUMENT"},
        {ATTN_ERR_OUT_OF_MEMORY, "ATTN_ERR_OUT_OF_MEMORY"},
        {ATTN_ERR_NO_DEVICE, "ATTN_ERR_NO_DEVICE"},
        {ATTN_ERR_BUILD_FAILED, "ATTN_ERR_BUILD_FAILED"},
        {ATTN_ERR_DEVICE, "ATTN_ERR_DEVICE"},
        {ATTN_ERR_UNSUPPORTED, "ATTN_ERR_UNSUPPORTED"},
        {ATTN_ERR_IO, "ATTN_ERR_IO"},
    };
    CU_ASSERT_EQUAL(ATTN_OK, 0);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = attn_status_string(all[i].s);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_EQUAL(s, all[i].name);
        if (i > 0)
            CU_ASSERT_NOT_EQUAL(all[i].s, ATTN_OK);
    }
    const attn_status outside[] = {(attn_status)(ATTN_ERR_IO + 1),
                                   (attn_status)1000, (attn_status)-1,
                                   (attn_status)INT_MAX};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        const char *s = attn_status_string(outside[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_EQUAL(s, "unknown status");
    }
}

static void test_options_init(void)
{
    attn_options o;
    memset(&o, 0xcd, sizeof o);
    attn_options_init(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o.device);
    CU_ASSERT_STRING_EQUAL(o.device, "auto");
    CU_ASSERT_EQUAL(o.queues, 0);
    CU_ASSERT_EQUAL(o.threads, 0);
    CU_ASSERT_PTR_NULL(o.cache_dir);
    CU_ASSERT_EQUAL(o.allow_fallback, 1);
    CU_ASSERT_EQUAL(o.path, ATTN_PATH_AUTO);
    CU_ASSERT_PTR_NULL(o.log);
    CU_ASSERT_PTR_NULL(o.log_user);
    CU_ASSERT_EQUAL(o.log_level, ATTN_LOG_DEFAULT);
    CU_ASSERT_PTR_NULL(o.kernel);
    CU_ASSERT_EQUAL(o.struct_size, sizeof o);
    (attn_options_init)(NULL); /* the function: a no-op, must not crash */
    CU_ASSERT_EQUAL(attn_options_init_sized(NULL, sizeof o),
                    ATTN_ERR_INVALID_ARGUMENT);
}

static void test_context_lifetime(void)
{
    attn_context *ctx = NULL;
    CU_ASSERT_EQUAL(attn_context_create(NULL, &ctx), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(ctx);
    CU_ASSERT_STRING_EQUAL(attn_context_last_error(ctx), "");
    CU_ASSERT_TRUE(small_sdpa_ok(ctx, "context from NULL options"));
    attn_context_destroy(ctx);
    attn_context_destroy(NULL); /* a no-op */

    ctx = NULL;
    CU_ASSERT_EQUAL(create_on("auto", 0, &ctx), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    memset(&info, 0xcd, sizeof info);
    info.struct_size = sizeof info;
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    CU_ASSERT(info.kind >= ATTN_DEVICE_GPU && info.kind <= ATTN_DEVICE_NATIVE);
    CU_ASSERT_PTR_NOT_NULL(memchr(info.name, '\0', sizeof info.name));
    CU_ASSERT_TRUE(small_sdpa_ok(ctx, "auto context"));
    attn_context_destroy(ctx);

    CU_ASSERT_EQUAL(attn_context_create(NULL, NULL), ATTN_ERR_INVALID_ARGUMENT);
}

static void test_native_device(void)
{
    attn_context *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(create_on("native", 0, &ctx), ATTN_OK);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    memset(&info, 0xcd, sizeof info);
    info.struct_size = sizeof info;
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    CU_ASSERT_EQUAL(info.kind, ATTN_DEVICE_NATIVE);
    CU_ASSERT_EQUAL(info.platform_index, -1);
    CU_ASSERT_EQUAL(info.device_index, -1);
    CU_ASSERT_STRING_EQUAL(info.platform, "");
    CU_ASSERT_STRING_EQUAL(info.opencl_c_version, "");
    CU_ASSERT_PTR_NOT_NULL(memchr(info.name, '\0', sizeof info.name));
    CU_ASSERT_PTR_NOT_NULL(memchr(info.vendor, '\0', sizeof info.vendor));
    CU_ASSERT_PTR_NOT_NULL(memchr(info.reason, '\0', sizeof info.reason));
    CU_ASSERT_EQUAL(attn_context_device(ctx, NULL), ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_context_device(NULL, &info),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(small_sdpa_ok(ctx, "native context"));
    attn_context_destroy(ctx);
}

static void test_unknown_device(void)
{
    attn_context *ctx = (attn_context *)&ctx; /* must be reset to NULL */
    CU_ASSERT_EQUAL(create_on("no-such-device-xyzzy", 0, &ctx),
                    ATTN_ERR_NO_DEVICE);
    CU_ASSERT_PTR_NULL(ctx);
    const char *msg = attn_last_error();
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT(strlen(msg) > 0);

    /* ATTN_DEVICE overrides options.device, in both directions. */
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_DEVICE", "native", 1), 0);
    ctx = NULL;
    CU_ASSERT_EQUAL(create_on("no-such-device-xyzzy", 0, &ctx), ATTN_OK);
    if (ctx) {
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
        CU_ASSERT_EQUAL(info.kind, ATTN_DEVICE_NATIVE);
    }
    attn_context_destroy(ctx);
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_DEVICE", "no-such-device-xyzzy", 1), 0);
    ctx = (attn_context *)&ctx;
    CU_ASSERT_EQUAL(create_on("native", 0, &ctx), ATTN_ERR_NO_DEVICE);
    CU_ASSERT_PTR_NULL(ctx);
    unsetenv("ATTN_DEVICE");
}

/* ---- last error ------------------------------------------------------------
 */

typedef struct thread_errors {
    char before[256], after[256];
    attn_status st;
} thread_errors;

/* A fresh thread has no error yet; a failed call sets one. */
static void *fail_once(void *arg)
{
    thread_errors *t = arg;
    snprintf(t->before, sizeof t->before, "%s", attn_last_error());
    t->st = attn_sdpa(NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    snprintf(t->after, sizeof t->after, "%s", attn_last_error());
    return NULL;
}

static void *read_only(void *arg)
{
    thread_errors *t = arg;
    snprintf(t->before, sizeof t->before, "%s", attn_last_error());
    return NULL;
}

typedef struct ctx_fail {
    attn_context *ctx;
    attn_status st;
} ctx_fail;

static void *fail_on_ctx(void *arg)
{
    ctx_fail *f = arg;
    float o[4] = {0};
    f->st = attn_sdpa(f->ctx, NULL, o, o, o, o, NULL);
    return NULL;
}

static void test_last_error(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(attn_context_last_error(NULL));
    CU_ASSERT_STRING_EQUAL(attn_context_last_error(NULL), "invalid context");

    attn_context *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(create_on("native", 1, &ctx), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(attn_context_last_error(ctx), "");
    float o[4] = {0};
    CU_ASSERT_EQUAL(attn_sdpa(ctx, NULL, o, o, o, o, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    const char *msg = attn_context_last_error(ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT(strlen(msg) > 0);
    CU_ASSERT(strlen(attn_last_error()) > 0);
    attn_context_destroy(ctx);

    /* The context's error is seen from every thread. */
    ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(create_on("native", 1, &ctx), ATTN_OK);
    ctx_fail f = {ctx, ATTN_OK};
    pthread_t ft;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&ft, NULL, fail_on_ctx, &f), 0);
    pthread_join(ft, NULL);
    CU_ASSERT_EQUAL(f.st, ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strlen(attn_context_last_error(ctx)) > 0);
    attn_context_destroy(ctx);

    /* attn_last_error is per thread. */
    thread_errors a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, fail_once, &a), 0);
    pthread_join(t, NULL);
    CU_ASSERT_STRING_EQUAL(a.before, "");
    CU_ASSERT_EQUAL(a.st, ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strlen(a.after) > 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, read_only, &b), 0);
    pthread_join(t, NULL);
    CU_ASSERT_STRING_EQUAL(b.before, "");
}

/* ---- log callback
 * ------------------------------------------------------------ */

typedef struct log_rec {
    int count, bad_level, max_level, newline, wrong_user, wrong_thread;
    pthread_t thread;
} log_rec;

static void log_cb(int level, const char *msg, void *user)
{
    log_rec *r = user;
    if (!r)
        return;
    r->count++;
    if (level < ATTN_LOG_ERROR || level > ATTN_LOG_DEBUG)
        r->bad_level++;
    if (level > r->max_level)
        r->max_level = level;
    size_t n = msg ? strlen(msg) : 0;
    if (!msg || (n > 0 && msg[n - 1] == '\n'))
        r->newline++;
    if (!pthread_equal(pthread_self(), r->thread))
        r->wrong_thread++;
}

static attn_status create_logged(int level, log_rec *r, attn_context **out)
{
    attn_options o;
    attn_options_init(&o);
    o.log = log_cb;
    o.log_user = r;
    o.log_level = level;
    memset(r, 0, sizeof *r);
    r->thread = pthread_self();
    return attn_context_create(&o, out);
}

static void test_log_callback(void)
{
    log_rec r;
    attn_context *ctx = NULL;
    float buf[4] = {0};

    CU_ASSERT_EQUAL_FATAL(create_logged(ATTN_LOG_DEBUG, &r, &ctx), ATTN_OK);
    CU_ASSERT(r.count > 0);
    CU_ASSERT_EQUAL(r.bad_level, 0);
    CU_ASSERT_EQUAL(r.newline, 0);
    CU_ASSERT_EQUAL(r.wrong_thread, 0);
    attn_context_destroy(ctx);

    ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(create_logged(ATTN_LOG_OFF, &r, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa(ctx, NULL, buf, buf, buf, buf, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(small_sdpa_ok(ctx, "log off"));
    attn_context_destroy(ctx);
    CU_ASSERT_EQUAL(r.count, 0);

    ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(create_logged(ATTN_LOG_WARN, &r, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa(ctx, NULL, buf, buf, buf, buf, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(small_sdpa_ok(ctx, "log warn"));
    attn_context_destroy(ctx);
    CU_ASSERT(r.max_level <= ATTN_LOG_WARN);
    CU_ASSERT_EQUAL(r.bad_level, 0);
    CU_ASSERT_EQUAL(r.wrong_thread, 0);
}

/* Runs a create, a failing call and a destroy with fd 2 sent to a file;
 * returns how many bytes reached it, or -1. */
static long stderr_bytes_during_calls(void)
{
    FILE *tmp = tmpfile();
    if (!tmp)
        return -1;
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(fileno(tmp), 2) < 0) {
        fclose(tmp);
        return -1;
    }
    attn_context *ctx = NULL;
    float buf[4] = {0};
    if (create_on("auto", 0, &ctx) == ATTN_OK) {
        (void)attn_sdpa(ctx, NULL, buf, buf, buf, buf, NULL);
        attn_context_destroy(ctx);
    }
    ctx = NULL;
    (void)create_on("no-such-device-xyzzy", 0, &ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat st;
    long n = fstat(fileno(tmp), &st) == 0 ? (long)st.st_size : -1;
    fclose(tmp);
    return n;
}

static void test_silent_unless_asked(void)
{
    /* No ATTN_LOG, no callback: nothing is printed, even on errors. */
    CU_ASSERT_EQUAL(stderr_bytes_during_calls(), 0);
    /* ATTN_LOG asks and there is no callback: messages go to stderr. */
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_LOG", "debug", 1), 0);
    CU_ASSERT(stderr_bytes_during_calls() > 0);
    unsetenv("ATTN_LOG");
}

/* ---- threads and other options ----------------------------------------------
 */

static void test_thread_options(void)
{
    for (int threads = 1; threads <= 3; threads++) {
        attn_context *ctx = NULL;
        CU_ASSERT_EQUAL(create_on("native", threads, &ctx), ATTN_OK);
        if (ctx)
            CU_ASSERT_TRUE(small_sdpa_ok(ctx, "options.threads"));
        attn_context_destroy(ctx);
    }
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_NUM_THREADS", "3", 1), 0);
    attn_context *ctx = NULL;
    CU_ASSERT_EQUAL(create_on("native", 0, &ctx), ATTN_OK);
    if (ctx)
        CU_ASSERT_TRUE(small_sdpa_ok(ctx, "ATTN_NUM_THREADS=3"));
    attn_context_destroy(ctx);
    unsetenv("ATTN_NUM_THREADS");
}

static void test_other_options(void)
{
    attn_options o;
    attn_options_init(&o);
    o.device = "native";
    o.queues = 2;
    o.cache_dir = "";
    o.allow_fallback = 0;
    const attn_path paths[] = {ATTN_PATH_AUTO, ATTN_PATH_FUSED,
                               ATTN_PATH_UNFUSED};
    for (size_t i = 0; i < 3; i++) {
        attn_context *ctx = NULL;
        o.path = paths[i];
        CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
        if (ctx)
            CU_ASSERT_TRUE(small_sdpa_ok(ctx, "path option"));
        attn_context_destroy(ctx);
    }
    /* Strings are copied: the options may die right after create. */
    char dev[16];
    strcpy(dev, "native");
    attn_options_init(&o);
    o.device = dev;
    attn_context *ctx = NULL;
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_OK);
    memset(dev, 'x', sizeof dev - 1);
    memset(&o, 0xcd, sizeof o);
    if (ctx)
        CU_ASSERT_TRUE(small_sdpa_ok(ctx, "options copied"));
    attn_context_destroy(ctx);
}

/* options.kernel on the native backend: "native" is its only kernel; an
 * OpenCL variant or an unknown name is refused; attn_sdpa_kernel says
 * "native". */
static void test_kernel_option(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    char name[32];
    memset(&d, 0, sizeof d);
    d.batch = d.heads_q = d.heads_kv = 1;
    d.seq_q = d.seq_kv = 4;
    d.head_dim = d.head_dim_v = 8;
    unsetenv("ATTN_KERNEL");
    attn_options_init(&o);
    o.device = "native";
    o.kernel = "native";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &d, name, sizeof name), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(name, "native");
    CU_ASSERT(small_sdpa_ok(ctx, "kernel native"));
    d.head_dim = 0; /* an invalid descriptor */
    CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &d, name, sizeof name),
                    ATTN_ERR_INVALID_ARGUMENT);
    attn_context_destroy(ctx);
    o.kernel = "no-such-kernel";
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "no-such-kernel"));
    if (attn_kernel_name(0)) {
        /* An OpenCL variant asked of the native backend. */
        o.kernel = attn_kernel_name(0);
        CU_ASSERT_EQUAL(attn_context_create(&o, &ctx),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "native backend"));
        /* From ATTN_KERNEL it is only a suggestion: warned, ignored. */
        o.kernel = NULL;
        setenv("ATTN_KERNEL", attn_kernel_name(0), 1);
        CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
        CU_ASSERT_PTR_NOT_NULL(
            strstr(attn_context_last_error(ctx), "ATTN_KERNEL"));
        CU_ASSERT(small_sdpa_ok(ctx, "ATTN_KERNEL ignored on native"));
        attn_context_destroy(ctx);
        unsetenv("ATTN_KERNEL");
    }
}

/* ---- device list
 * -------------------------------------------------------------- */

/* A head size whose working memory exceeds the host's is refused before
 * anything is allocated, read or written, with ATTN_ERR_OUT_OF_MEMORY and
 * a message that names the size.  The tensors are address space only
 * (PROT_NONE): any access would crash the test. */
static void test_native_too_big(void)
{
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    const size_t bytes = (size_t)4 << 30; /* head_dim 2^30 floats */
    void *q, *k, *v, *o;
    CU_ASSERT_EQUAL_FATAL(create_on("native", 2, &ctx), ATTN_OK);
    memset(&d, 0, sizeof d);
    d.batch = d.heads_q = d.heads_kv = d.seq_q = d.seq_kv = 1;
    d.head_dim = d.head_dim_v = 1 << 30;
    q = mmap(NULL, bytes, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    k = mmap(NULL, bytes, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    v = mmap(NULL, bytes, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    o = mmap(NULL, bytes, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (q == MAP_FAILED || k == MAP_FAILED || v == MAP_FAILED ||
        o == MAP_FAILED) {
        CU_FAIL("cannot reserve 16 GiB of address space");
    } else {
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &d, q, k, v, o, NULL),
                        ATTN_ERR_OUT_OF_MEMORY);
        const char *msg = attn_context_last_error(ctx);
        CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "bytes ("));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "GiB"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "the host has"));
    }
    void *maps[4] = {q, k, v, o};
    for (int i = 0; i < 4; i++)
        if (maps[i] != MAP_FAILED)
            munmap(maps[i], bytes);
    /* The context still works afterwards. */
    CU_ASSERT(small_sdpa_ok(ctx, "after a refused call"));
    attn_context_destroy(ctx);
}

static void test_devices(void)
{
    size_t n = (size_t)-1;
    CU_ASSERT_EQUAL_FATAL(attn_devices(NULL, 0, &n), ATTN_OK);
    CU_ASSERT(n != (size_t)-1);
    CU_ASSERT_EQUAL(attn_devices(NULL, 1, &n), ATTN_ERR_INVALID_ARGUMENT);
    attn_device_info one = ATTN_DEVICE_INFO_INIT;
    CU_ASSERT_EQUAL(attn_devices(&one, 1, NULL), ATTN_ERR_INVALID_ARGUMENT);
    if (n > 64)
        return;

    attn_device_info *all = malloc((n + 1) * sizeof *all);
    CU_ASSERT_PTR_NOT_NULL_FATAL(all);
    memset(all, 0xcd, (n + 1) * sizeof *all);
    all[0].struct_size = sizeof *all;
    size_t n2 = 0;
    CU_ASSERT_EQUAL(attn_devices(all, n + 1, &n2), ATTN_OK);
    CU_ASSERT_EQUAL(n2, n);
    for (size_t i = 0; i < n2 && i < n; i++) {
        CU_ASSERT(all[i].kind >= ATTN_DEVICE_GPU &&
                  all[i].kind <= ATTN_DEVICE_OTHER);
        CU_ASSERT_PTR_NOT_NULL(memchr(all[i].name, '\0', sizeof all[i].name));
        CU_ASSERT_PTR_NOT_NULL(
            memchr(all[i].reason, '\0', sizeof all[i].reason));
        CU_ASSERT(all[i].platform_index >= 0);
        CU_ASSERT(all[i].device_index >= 0);
    }
    /* Nothing past *count is written (element 0 of none keeps the
     * struct_size the caller put there). */
    unsigned char pat[sizeof(attn_device_info)];
    memset(pat, 0xcd, sizeof pat);
    if (n == 0)
        memcpy(pat, &all[0].struct_size, sizeof all[0].struct_size);
    CU_ASSERT_EQUAL(memcmp(&all[n], pat, sizeof pat), 0);
    memset(pat, 0xcd, sizeof pat);
    if (n >= 2) {
        memset(all, 0xcd, (n + 1) * sizeof *all);
        all[0].struct_size = sizeof *all;
        CU_ASSERT_EQUAL(attn_devices(all, 1, &n2), ATTN_OK);
        CU_ASSERT_EQUAL(n2, n);
        CU_ASSERT_EQUAL(memcmp(&all[1], pat, sizeof pat), 0);
    }
    free(all);
}

int main(void)
{
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_LOG");
    unsetenv("ATTN_NUM_THREADS");
    static const harness_test tests[] = {
        {"version", test_version},
        {"status strings", test_status_strings},
        {"options_init defaults", test_options_init},
        {"context lifetime", test_context_lifetime},
        {"native device", test_native_device},
        {"unknown device and ATTN_DEVICE", test_unknown_device},
        {"last error", test_last_error},
        {"log callback", test_log_callback},
        {"silent unless a log level asks", test_silent_unless_asked},
        {"threads option and ATTN_NUM_THREADS", test_thread_options},
        {"queues, cache_dir, fallback, path options", test_other_options},
        {"device list", test_devices},
        {"kernel option on the native backend", test_kernel_option},
        {"native: too big for the host, refused", test_native_too_big},
        {NULL, NULL},
    };
    return harness_main("api", NULL, NULL, tests);
}
