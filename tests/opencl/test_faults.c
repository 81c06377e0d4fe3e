/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device failures injected through the fault layer (src/opencl/fault.h,
 * built with ATTN_FAULT_INJECTION) on every path of the OpenCL backend:
 * attn_sdpa on the three kernels, the fused and decode kernels, AUTO and
 * two queues; attn_mha_forward on the device (CLBlast); attn_sdpa_cl on
 * the caller's buffers.  For every call a path makes at every point
 * (build, alloc, enqueue, read, write; at once, or late: when the command
 * runs), one fault in turn:
 *   - with fallback off the call returns the driver failure's status, o
 *     and lse (y) are bit for bit what they were, and the library holds no
 *     more OpenCL objects than before (cl_mem, cl_kernel, cl_program and
 *     cl_event references are counted by link-time wrappers, -Wl,--wrap);
 *   - with fallback on the call completes natively, right against the
 *     double-precision oracle, and says that it fell back.
 * Also: sizes larger than the device refused before any allocation (device
 * limits lowered through a test hook, and one real shape whose inputs sit
 * in inaccessible memory), allocation failures of the native backend
 * (malloc and friends wrapped the same way), the spec grammar, ATTN_FAULTS.
 *
 * Run with "two" (POCL_DEVICES="pthread pthread"): a device failing in the
 * middle of a call on device "all" (one and two queues per device), whose
 * work the other device completes.
 *
 * Without an OpenCL device the suite prints SKIP and exits 77.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "opencl/fault.h"

#include "attn/attn_cl.h"
#include "call_bufs.h"
#include "cl_count.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

#define PATTERN 0xa5 /* what unwritten outputs hold */

/* ---- the library's OpenCL objects, counted (cl_count.h) ---------------- */

/* Whether the library holds as many OpenCL objects as at a, and every
 * late fault armed was delivered. */
static int live_same(cl_live a)
{
    if (attn_fault_pending() != 0) {
        printf("\n  %lu late faults were not delivered\n",
               attn_fault_pending());
        return 0;
    }
    return cl_live_same(a);
}

/* Device buffers are kept in a pool between calls (src/opencl/pool.h): a
 * call allocates only what the pool cannot give.  Before a call whose
 * allocations are to fail, the pool is emptied so that the call allocates
 * every buffer it uses, and each allocation can be failed in turn. */
static void cold(attn_context *ctx, const char *spec)
{
    if (strstr(spec, "alloc"))
        attn_fault_trim(ctx);
}

/* ---- host allocations of the library, failed on demand ------------------
 * malloc, calloc, realloc, posix_memalign and aligned_alloc are wrapped
 * too.  While armed, the fail_at-th allocation (from 1) fails; armed with
 * 0, they are only counted. */

static atomic_int alloc_armed;
static atomic_long alloc_seen, alloc_fail_at;

void *__real_malloc(size_t);
void *__wrap_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__wrap_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
void *__wrap_realloc(void *, size_t);
int __real_posix_memalign(void **, size_t, size_t);
int __wrap_posix_memalign(void **, size_t, size_t);
void *__real_aligned_alloc(size_t, size_t);
void *__wrap_aligned_alloc(size_t, size_t);

/* 1 when this allocation must fail. */
static int alloc_fails(void)
{
    long n;
    if (!atomic_load(&alloc_armed))
        return 0;
    n = atomic_fetch_add(&alloc_seen, 1) + 1;
    return n == atomic_load(&alloc_fail_at);
}

void *__wrap_malloc(size_t n)
{
    return alloc_fails() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t s)
{
    return alloc_fails() ? NULL : __real_calloc(n, s);
}

void *__wrap_realloc(void *p, size_t n)
{
    return alloc_fails() ? NULL : __real_realloc(p, n);
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    return alloc_fails() ? 12 /* ENOMEM */ : __real_posix_memalign(p, a, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return alloc_fails() ? NULL : __real_aligned_alloc(a, n);
}

static void alloc_arm(long fail_at)
{
    atomic_store(&alloc_seen, 0);
    atomic_store(&alloc_fail_at, fail_at);
    atomic_store(&alloc_armed, 1);
}

/* Disarms; returns the allocations seen while armed. */
static long alloc_disarm(void)
{
    atomic_store(&alloc_armed, 0);
    return atomic_load(&alloc_seen);
}

/* ---- log capture --------------------------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[32768];
static size_t log_used;

static void log_cb(int level, const char *msg, void *user)
{
    size_t n = strlen(msg);
    (void)level;
    (void)user;
    pthread_mutex_lock(&log_lock);
    if (log_used + n + 2 < sizeof log_text) {
        memcpy(log_text + log_used, msg, n);
        log_used += n;
        log_text[log_used++] = '\n';
        log_text[log_used] = '\0';
    }
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_used = 0;
    log_text[0] = '\0';
    pthread_mutex_unlock(&log_lock);
}

static int log_has(const char *s)
{
    int r;
    pthread_mutex_lock(&log_lock);
    r = strstr(log_text, s) != NULL;
    pthread_mutex_unlock(&log_lock);
    return r;
}

/* ---- helpers ------------------------------------------------------------- */

static const char *const point_name[ATTN_FAULT_POINTS] = {
    "build", "alloc", "enqueue", "read", "write"};

static void set_spec(const char *spec)
{
    attn_err e = {{0}};
    attn_status s = attn_fault_set(spec, &e);
    if (s != ATTN_OK)
        printf("\n  attn_fault_set(\"%s\"): %s\n", spec, e.msg);
    CU_ASSERT_EQUAL_FATAL(s, ATTN_OK);
}

static unsigned long fired_all(void)
{
    unsigned long n = 0;
    for (int p = 0; p < ATTN_FAULT_POINTS; p++)
        n += attn_fault_fired((attn_fault_point)p);
    return n;
}

/* The status an injected fault at p ends in. */
static attn_status want_status(attn_fault_point p, int late)
{
    if (late)
        return ATTN_ERR_DEVICE;
    return p == ATTN_FAULT_ALLOC   ? ATTN_ERR_OUT_OF_MEMORY
           : p == ATTN_FAULT_BUILD ? ATTN_ERR_BUILD_FAILED
                                   : ATTN_ERR_DEVICE;
}

/* A context on device spec with the library's log captured; NULL (after
 * saying why) when it did not land on an OpenCL device. */
static attn_context *ctx_new(const char *device, attn_path path, int queues,
                             int fallback)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_status s;
    attn_options_init(&o);
    o.device = device;
    o.path = path;
    o.queues = queues;
    o.allow_fallback = fallback;
    o.log = log_cb;
    o.log_level = ATTN_LOG_INFO;
    s = attn_context_create(&o, &ctx);
    if (s != ATTN_OK) {
        printf("\n  attn_context_create(%s): %s: %s\n", device,
               attn_status_string(s), attn_last_error());
        return NULL;
    }
    if (attn_context_device(ctx, &info) != ATTN_OK ||
        info.kind == ATTN_DEVICE_NATIVE) {
        printf("\n  device \"%s\" landed on the native backend\n", device);
        attn_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* Outputs of one attn_sdpa call filled with PATTERN, and their copies. */
typedef struct outs {
    unsigned char *o, *lse, *o0, *lse0;
    size_t ob, lb;
} outs;

static int outs_make(outs *u, const sdpa_case *c)
{
    const size_t es = c->d.dtype == ATTN_F16 ? 2 : 4;
    u->ob = c->no * es;
    u->lb = c->nlse * sizeof(float);
    u->o = malloc(u->ob);
    u->lse = malloc(u->lb);
    u->o0 = malloc(u->ob);
    u->lse0 = malloc(u->lb);
    if (!u->o || !u->lse || !u->o0 || !u->lse0)
        return -1;
    memset(u->o, PATTERN, u->ob);
    memset(u->lse, PATTERN, u->lb);
    memcpy(u->o0, u->o, u->ob);
    memcpy(u->lse0, u->lse, u->lb);
    return 0;
}

static int outs_untouched(const outs *u)
{
    return !memcmp(u->o, u->o0, u->ob) && !memcmp(u->lse, u->lse0, u->lb);
}

static void outs_free(outs *u)
{
    free(u->o);
    free(u->lse);
    free(u->o0);
    free(u->lse0);
    memset(u, 0, sizeof *u);
}

/* What the expect_ functions check besides the status or the result. */
enum {
    F_UNTOUCHED = 1, /* o and lse (y) bit for bit as they were */
    F_LIVE = 2,      /* no more OpenCL objects than before */
    F_FIRED = 4,     /* a fault was injected */
    F_ALL = 7
};

/* attn_sdpa under spec on a context without fallback: the status want,
 * and what flags ask. */
static void expect_failure(attn_context *ctx, const sdpa_case *c,
                           const char *spec, attn_status want, int flags,
                           const char *what)
{
    outs u;
    cl_live before;
    attn_status s;
    unsigned long fired;
    char label[256];
    snprintf(label, sizeof label, "%s, %s, fallback off", what, spec);
    CU_ASSERT_EQUAL_FATAL(outs_make(&u, c), 0);
    cold(ctx, spec);
    before = cl_live_now();
    set_spec(spec);
    s = attn_sdpa(ctx, &c->d, c->q, c->k, c->v, u.o, (float *)(void *)u.lse);
    fired = fired_all();
    set_spec("");
    if (flags & F_FIRED)
        HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(s == want, label);
    if (s != want)
        printf("\n  %s: got %s (%s)\n", label, attn_status_string(s),
               attn_context_last_error(ctx));
    HARNESS_EXPECT(attn_context_last_error(ctx)[0] != '\0', label);
    if (flags & F_UNTOUCHED)
        HARNESS_EXPECT(outs_untouched(&u), label);
    if (flags & F_LIVE)
        HARNESS_EXPECT(live_same(before), label);
    outs_free(&u);
}

/* attn_sdpa under spec on a context with fallback: right (oracle), and
 * the context says it fell back. */
static void expect_fallback(attn_context *ctx, const sdpa_case *c,
                            const ref_sdpa_result *ref, const char *spec,
                            int flags, const char *what)
{
    cl_live before;
    unsigned long fired;
    int ok;
    char label[256];
    snprintf(label, sizeof label, "%s, %s, fallback on", what, spec);
    log_clear();
    cold(ctx, spec);
    before = cl_live_now();
    set_spec(spec);
    ok = sdpa_case_check(ctx, c, ref, 1, NULL, label);
    fired = fired_all();
    set_spec("");
    HARNESS_EXPECT(ok, label);
    if (flags & F_FIRED)
        HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(strstr(attn_context_last_error(ctx),
                          "fell back to the native backend") != NULL,
                   label);
    HARNESS_EXPECT(log_has("fell back to the native backend"), label);
    if (flags & F_LIVE)
        HARNESS_EXPECT(live_same(before), label);
}

/* Calls at point p one clean attn_sdpa call makes on ctx. */
static unsigned long calls_at(attn_context *ctx, const sdpa_case *c,
                              const ref_sdpa_result *ref, attn_fault_point p)
{
    unsigned long n;
    set_spec("");
    cold(ctx, point_name[p]);
    CU_ASSERT(sdpa_case_check(ctx, c, ref, 1, NULL, "clean call"));
    n = attn_fault_calls(p);
    return n;
}

/* ---- attn_sdpa: every fault at every point -------------------------------
 */

typedef struct scenario {
    const char *name;
    attn_path path;
    int queues;
    int decode; /* seq_q 3 against a longer cache */
} scenario;

static void shape(attn_sdpa_desc *d, int decode)
{
    memset(d, 0, sizeof *d);
    d->batch = 2;
    d->heads_q = 4;
    d->heads_kv = 2;
    d->seq_q = decode ? 3 : 13;
    d->seq_kv = decode ? 70 : 29;
    d->head_dim = 16;
    d->head_dim_v = 24;
    d->mask.causal = 1;
    d->mask.bias_kind = ATTN_BIAS_PER_HEAD;
}

static void sweep(const scenario *sc)
{
    static const struct {
        attn_fault_point p;
        int late;
    } kinds[] = {{ATTN_FAULT_ALLOC, 0},   {ATTN_FAULT_ENQUEUE, 0},
                 {ATTN_FAULT_WRITE, 0},   {ATTN_FAULT_READ, 0},
                 {ATTN_FAULT_ENQUEUE, 1}, {ATTN_FAULT_WRITE, 1},
                 {ATTN_FAULT_READ, 1}};
    attn_context *off = ctx_new("cpu", sc->path, sc->queues, 0);
    attn_context *on = ctx_new("cpu", sc->path, sc->queues, 1);
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    char spec[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    shape(&d, sc->decode);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 11, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    /* Programs built and kept: what a call creates from now on is its
     * own. */
    CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, sc->name));
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, sc->name));
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const attn_fault_point p = kinds[k].p;
        const int late = kinds[k].late;
        const unsigned long n = calls_at(off, &c, &ref, p);
        HARNESS_EXPECT(n >= 1, point_name[p]);
        for (unsigned long i = 1; i <= n; i++) {
            snprintf(spec, sizeof spec, "%s%s@%lu", point_name[p],
                     late ? "!" : "", i);
            /* A read that fails while it runs may leave the slices other
             * reads wrote (fault.h, backend_cl.c). */
            expect_failure(off, &c, spec, want_status(p, late),
                           late && p == ATTN_FAULT_READ ? F_LIVE | F_FIRED
                                                        : F_ALL,
                           sc->name);
            expect_fallback(on, &c, &ref, spec, F_LIVE | F_FIRED, sc->name);
        }
    }
    /* After all that the contexts still work. */
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, sc->name));
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(off);
    attn_context_destroy(on);
}

/* Every build fails: fresh contexts, whose programs are not built yet. */
static void build_faults(const scenario *sc)
{
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    attn_context *ctx;
    cl_live before;
    char what[128];
    shape(&d, sc->decode);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 12, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    snprintf(what, sizeof what, "%s, build", sc->name);

    before = cl_live_now();
    ctx = ctx_new("cpu", sc->path, sc->queues, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    /* Per call, objects are not compared: a first call may create the
     * context's kernel state. */
    expect_failure(ctx, &c, "build", ATTN_ERR_BUILD_FAILED,
                   F_UNTOUCHED | F_FIRED, what);
    /* A failed build is kept: the next call fails the same way without
     * building again. */
    expect_failure(ctx, &c, "", ATTN_ERR_BUILD_FAILED, F_UNTOUCHED | F_LIVE,
                   what);
    attn_context_destroy(ctx);
    HARNESS_EXPECT(live_same(before), what);

    ctx = ctx_new("cpu", sc->path, sc->queues, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    expect_fallback(ctx, &c, &ref, "build", F_FIRED, what);
    attn_context_destroy(ctx);
    HARNESS_EXPECT(live_same(before), what);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

static const scenario sc_unfused = {"three kernels", ATTN_PATH_UNFUSED, 1, 0};
static const scenario sc_fused = {"fused", ATTN_PATH_FUSED, 1, 0};
static const scenario sc_decode = {"decode", ATTN_PATH_AUTO, 1, 1};
static const scenario sc_auto = {"auto", ATTN_PATH_AUTO, 1, 0};
static const scenario sc_queues = {"two queues", ATTN_PATH_AUTO, 2, 0};

static void test_unfused(void)
{
    sweep(&sc_unfused);
    build_faults(&sc_unfused);
}

static void test_fused(void)
{
    sweep(&sc_fused);
    build_faults(&sc_fused);
}

static void test_decode(void)
{
    sweep(&sc_decode);
    build_faults(&sc_decode);
}

static void test_auto(void)
{
    sweep(&sc_auto);
    build_faults(&sc_auto);
}

static void test_two_queues(void)
{
    sweep(&sc_queues);
    build_faults(&sc_queues);
}

/* A context on the OpenCL CPU device, fallback off, logging everything
 * (the variants' builds are debug lines) into the log above, without a
 * program cache (ATTN_CACHE_DIR, set by valgrind.sh, would hand it
 * programs built before, and no build would fail). */
static attn_context *ctx_debug(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    o.device = "cpu";
    o.allow_fallback = 0;
    o.cache_dir = "";
    o.log = log_cb;
    o.log_level = ATTN_LOG_DEBUG;
    return attn_context_create(&o, &ctx) == ATTN_OK ? ctx : NULL;
}

/* AUTO with the register-tiled kernel first (a profile's path.order, as on
 * GPUs): when its program does not build, the three-kernel path runs the
 * call (fallback off: no native redo), a warning names tiled, and with
 * every build failing from then on the programs kept serve the call. */
static void test_auto_tiled_build(void)
{
    char dir[] = "/tmp/attn-faults-XXXXXX", file[64];
    const char *old = getenv("ATTN_PLATFORM_DIR");
    char *saved = old ? strdup(old) : NULL;
    const char *what = "AUTO past a tiled that does not build";
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    attn_context *ctx;
    cl_live before;
    FILE *f;
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/order.prof", dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f = fopen(file, "w"));
    fputs("[platform \"Portable Computing Language\" kind \"cpu\"]\n"
          "path.order = tiled unfused\n",
          f);
    fclose(f);
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_PLATFORM_DIR", dir, 1), 0);
    shape(&d, 0);
    d.head_dim = d.head_dim_v = 32; /* a head size tiled is built for */
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 14, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    before = cl_live_now();
    /* the clean call: tiled takes it (its build in the debug log) */
    log_clear();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = ctx_debug());
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, what));
    HARNESS_EXPECT(log_has("kernel variant tiled built"), what);
    attn_context_destroy(ctx);
    /* tiled's build fails: unfused runs it */
    log_clear();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx = ctx_debug());
    set_spec("build@1");
    HARNESS_EXPECT(sdpa_case_check(ctx, &c, &ref, 1, NULL, what), what);
    HARNESS_EXPECT(attn_fault_fired(ATTN_FAULT_BUILD) == 1, what);
    HARNESS_EXPECT(log_has("kernel variant tiled does not build"), what);
    HARNESS_EXPECT(log_has("kernel variant unfused built"), what);
    HARNESS_EXPECT(!log_has("fell back"), what);
    set_spec("build");
    HARNESS_EXPECT(sdpa_case_check(ctx, &c, &ref, 1, NULL, what), what);
    set_spec("");
    attn_context_destroy(ctx);
    HARNESS_EXPECT(live_same(before), what);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    remove(file);
    rmdir(dir);
    if (saved) {
        setenv("ATTN_PLATFORM_DIR", saved, 1);
        free(saved);
    } else {
        unsetenv("ATTN_PLATFORM_DIR");
    }
}

/* ---- attn_mha_forward on the device ------------------------------------ */

static const mha_spec mha_shape = {.d_model = 32,
                                   .heads_q = 4,
                                   .heads_kv = 2,
                                   .head_dim = 8,
                                   .batch = 2,
                                   .seq_q = 7,
                                   .self = 1,
                                   .with_bias = 1,
                                   .posenc = ATTN_POSENC_ROPE,
                                   .causal = 1};

/* attn_mha_forward under spec without fallback: status, y untouched, no
 * object left. */
static void mha_expect_failure(attn_context *ctx, const mha_case *c,
                               const char *spec, attn_status want, int flags,
                               const char *what)
{
    float *y = malloc(c->ny * sizeof *y), *y0 = malloc(c->ny * sizeof *y);
    cl_live before;
    attn_status s;
    unsigned long fired;
    char label[256];
    snprintf(label, sizeof label, "%s, %s, fallback off", what, spec);
    CU_ASSERT_FATAL(y && y0);
    memset(y, PATTERN, c->ny * sizeof *y);
    memcpy(y0, y, c->ny * sizeof *y);
    cold(ctx, spec);
    before = cl_live_now();
    set_spec(spec);
    s = attn_mha_forward(ctx, &c->m, c->batch, c->seq_q, c->seq_kv, c->x_q,
                         c->x_kv, &c->mask, y);
    fired = fired_all();
    set_spec("");
    if (flags & F_FIRED)
        HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(s == want, label);
    if (s != want)
        printf("\n  %s: got %s (%s)\n", label, attn_status_string(s),
               attn_context_last_error(ctx));
    if (flags & F_UNTOUCHED)
        HARNESS_EXPECT(!memcmp(y, y0, c->ny * sizeof *y), label);
    if (flags & F_LIVE)
        HARNESS_EXPECT(live_same(before), label);
    free(y);
    free(y0);
}

static void mha_expect_fallback(attn_context *ctx, const mha_case *c,
                                const double *ref, const char *spec, int flags,
                                const char *what)
{
    cl_live before;
    unsigned long fired;
    int ok;
    char label[256];
    snprintf(label, sizeof label, "%s, %s, fallback on", what, spec);
    log_clear();
    cold(ctx, spec);
    before = cl_live_now();
    set_spec(spec);
    ok = mha_case_check(ctx, c, ref, label);
    fired = fired_all();
    set_spec("");
    HARNESS_EXPECT(ok, label);
    if (flags & F_FIRED)
        HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(strstr(attn_context_last_error(ctx),
                          "fell back to the native backend") != NULL,
                   label);
    HARNESS_EXPECT(log_has("fell back"), label);
    if (flags & F_LIVE)
        HARNESS_EXPECT(live_same(before), label);
}

static void test_mha(void)
{
#ifdef ATTN_HAVE_CLBLAST
    static const struct {
        attn_fault_point p;
        int late;
    } kinds[] = {{ATTN_FAULT_ALLOC, 0},   {ATTN_FAULT_ENQUEUE, 0},
                 {ATTN_FAULT_WRITE, 0},   {ATTN_FAULT_READ, 0},
                 {ATTN_FAULT_ENQUEUE, 1}, {ATTN_FAULT_READ, 1}};
    attn_context *off = ctx_new("cpu", ATTN_PATH_AUTO, 1, 0);
    attn_context *on = ctx_new("cpu", ATTN_PATH_AUTO, 1, 1);
    mha_case c;
    double *ref;
    cl_live before;
    char spec[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &mha_shape, 21), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref = mha_case_reference(&c));
    CU_ASSERT(mha_case_check(on, &c, ref, "mha warm-up"));
    CU_ASSERT(mha_case_check(off, &c, ref, "mha warm-up"));
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const attn_fault_point p = kinds[k].p;
        const int late = kinds[k].late;
        unsigned long n;
        set_spec("");
        cold(off, point_name[p]);
        CU_ASSERT(mha_case_check(off, &c, ref, "mha clean call"));
        n = attn_fault_calls(p);
        HARNESS_EXPECT(n >= 1, point_name[p]);
        /* Late: only the last launch.  PoCL 3.1 aborts
         * (pocl_update_event_failed) when a failure runs down the long
         * in-order chain of the layer's commands queued behind it.  The
         * layer's one read is blocking: a late fault on it fails at
         * once. */
        for (unsigned long i = late ? n : 1; i <= n; i++) {
            snprintf(spec, sizeof spec, "%s%s@%lu", point_name[p],
                     late ? "!" : "", i);
            mha_expect_failure(off, &c, spec, want_status(p, late), F_ALL,
                               "mha");
            mha_expect_fallback(on, &c, ref, spec, F_LIVE | F_FIRED, "mha");
        }
    }
    CU_ASSERT(mha_case_check(off, &c, ref, "mha after the faults"));
    attn_context_destroy(off);
    attn_context_destroy(on);

    /* Every build fails, on fresh contexts. */
    before = cl_live_now();
    off = ctx_new("cpu", ATTN_PATH_AUTO, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    mha_expect_failure(off, &c, "build", ATTN_ERR_BUILD_FAILED,
                       F_UNTOUCHED | F_FIRED, "mha build");
    attn_context_destroy(off);
    on = ctx_new("cpu", ATTN_PATH_AUTO, 1, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    mha_expect_fallback(on, &c, ref, "build", F_FIRED, "mha build");
    attn_context_destroy(on);
    HARNESS_EXPECT(live_same(before), "mha build");
    free(ref);
    mha_case_free(&c);
#else
    printf("\n  (built without CLBlast: the layer runs natively, nothing to "
           "inject)\n");
    CU_PASS("no device layer");
#endif
}

/* ---- the persistent layer on the device ---------------------------------- */

#ifdef ATTN_HAVE_CLBLAST
/* Rows t0 .. t0+n-1 of every batch item of x [batch, seq, d] into out. */
static void layer_rows(const float *x, int batch, int seq, int d, int t0, int n,
                       float *out)
{
    for (int b = 0; b < batch; b++)
        memcpy(out + (size_t)b * n * d, x + ((size_t)b * seq + t0) * d,
               (size_t)n * d * sizeof *out);
}

/* A cache step of 3 tokens after a prefill of 4 on layer l (cache k, v
 * reset to the prefill): status, and on success y against rows 4 .. 6 of
 * ref. */
static attn_status layer_step(attn_context *ctx, attn_mha_layer *l,
                              const mha_case *c, attn_kv_cache *kv,
                              const float *k4, const float *v4, size_t nkv,
                              float *x3, float *y)
{
    kv->len = 4;
    memcpy(kv->k, k4, nkv * sizeof(float));
    memcpy(kv->v, v4, nkv * sizeof(float));
    layer_rows(c->x_q, c->batch, c->seq_q, c->m.d_model, 4, 3, x3);
    return attn_mha_forward_layer(ctx, l, c->batch, 3, 3, ATTN_F32, x3, NULL,
                                  &c->mask, kv, y);
}
#endif

/* The layer holds its weights on the device (created once, uploaded once,
 * released by attn_mha_destroy), and a KV cache step under every fault
 * fails cleanly (status, y untouched, len kept, nothing left) without
 * fallback and gives the right rows with it. */
static void test_layer(void)
{
#ifdef ATTN_HAVE_CLBLAST
    static const attn_fault_point points[] = {
        ATTN_FAULT_ALLOC, ATTN_FAULT_ENQUEUE, ATTN_FAULT_WRITE,
        ATTN_FAULT_READ};
    attn_context *off = ctx_new("cpu", ATTN_PATH_AUTO, 1, 0);
    attn_context *on = ctx_new("cpu", ATTN_PATH_AUTO, 1, 1);
    attn_mha_layer *lo = NULL, *ln = NULL;
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    mha_case c;
    cl_live before;
    double *ref, *want;
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &mha_shape, 23), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref = mha_case_reference(&c));
    const size_t d = (size_t)c.m.d_model, ny = c.ny,
                 nkv = (size_t)c.batch * c.m.heads_kv * 7 * c.m.head_dim;
    float *y = malloc(ny * sizeof *y), *y0 = malloc(ny * sizeof *y0),
          *x3 = malloc((size_t)c.batch * 3 * d * sizeof *x3),
          *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v),
          *k4 = malloc(nkv * sizeof *k4), *v4 = malloc(nkv * sizeof *v4);
    want = malloc((size_t)c.batch * 3 * d * sizeof *want);
    CU_ASSERT_FATAL(y && y0 && x3 && k && v && k4 && v4 && want);
    for (int b = 0; b < c.batch; b++)
        for (size_t i = 0; i < 3 * d; i++)
            want[(size_t)b * 3 * d + i] =
                ref[((size_t)b * c.seq_q + 4) * d + i];

    /* Three read-only buffers per device ([Wq; Wk; Wv], Wo, the biases),
     * gone with the layer. */
    before = cl_live_now();
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(off, &c.m, 0.0f, &lo), ATTN_OK);
    HARNESS_EXPECT(cl_live_now().mem == before.mem + 3, "the layer's buffers");
    attn_mha_destroy(lo);
    HARNESS_EXPECT(live_same(before), "the layer's buffers released");
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(off, &c.m, 0.0f, &lo), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(on, &c.m, 0.0f, &ln), ATTN_OK);

    /* A call of the layer uploads no weight and no bias: 8 copies fewer
     * than attn_mha_forward's (wq, wk, wv, wo, bq, bk, bv, bo). */
    {
        unsigned long n_fwd, n_layer;
        CU_ASSERT(mha_case_check(off, &c, ref, "layer warm-up"));
        CU_ASSERT_EQUAL(attn_mha_forward_layer(off, lo, c.batch, c.seq_q,
                                               c.seq_kv, ATTN_F32, c.x_q, NULL,
                                               &c.mask, NULL, y),
                        ATTN_OK);
        set_spec("");
        CU_ASSERT_EQUAL(attn_mha_forward(off, &c.m, c.batch, c.seq_q, c.seq_kv,
                                         c.x_q, NULL, &c.mask, y),
                        ATTN_OK);
        n_fwd = attn_fault_calls(ATTN_FAULT_WRITE);
        set_spec("");
        CU_ASSERT_EQUAL(attn_mha_forward_layer(off, lo, c.batch, c.seq_q,
                                               c.seq_kv, ATTN_F32, c.x_q, NULL,
                                               &c.mask, NULL, y),
                        ATTN_OK);
        n_layer = attn_fault_calls(ATTN_FAULT_WRITE);
        if (n_layer + 8 != n_fwd)
            printf("\n  uploads: attn_mha_forward %lu, the layer %lu\n", n_fwd,
                   n_layer);
        HARNESS_EXPECT(n_layer + 8 == n_fwd, "the layer's uploads");
        CU_ASSERT(ref_check_f32("the layer, held weights", y, ref, ny,
                                REF_MHA_ABS, REF_MHA_REL));
    }

    /* The prefill (tokens 0 .. 3), kept to start every step from. */
    kv.k = k;
    kv.v = v;
    kv.capacity = 7;
    layer_rows(c.x_q, c.batch, c.seq_q, (int)d, 0, 4, y0);
    CU_ASSERT_EQUAL_FATAL(attn_mha_forward_layer(off, lo, c.batch, 4, 4,
                                                 ATTN_F32, y0, NULL, &c.mask,
                                                 &kv, y),
                          ATTN_OK);
    memcpy(k4, k, nkv * sizeof *k);
    memcpy(v4, v, nkv * sizeof *v);
    for (size_t q = 0; q < sizeof points / sizeof *points; q++) {
        const attn_fault_point p = points[q];
        unsigned long n;
        char spec[64];
        set_spec("");
        cold(off, point_name[p]);
        CU_ASSERT_EQUAL(layer_step(off, lo, &c, &kv, k4, v4, nkv, x3, y),
                        ATTN_OK);
        n = attn_fault_calls(p);
        HARNESS_EXPECT(n >= 1, point_name[p]);
        HARNESS_EXPECT(ref_check_f32("cache step, clean", y, want,
                                     (size_t)c.batch * 3 * d, REF_MHA_ABS,
                                     REF_MHA_REL),
                       point_name[p]);
        for (unsigned long i = 1; i <= n; i++) {
            attn_status st;
            snprintf(spec, sizeof spec, "%s@%lu", point_name[p], i);
            memset(y, PATTERN, ny * sizeof *y);
            memcpy(y0, y, ny * sizeof *y);
            cold(off, spec);
            before = cl_live_now();
            set_spec(spec);
            st = layer_step(off, lo, &c, &kv, k4, v4, nkv, x3, y);
            HARNESS_EXPECT(fired_all() >= 1, spec);
            set_spec("");
            HARNESS_EXPECT(st == want_status(p, 0), spec);
            HARNESS_EXPECT(kv.len == 4, spec);
            HARNESS_EXPECT(!memcmp(y, y0, ny * sizeof *y), spec);
            HARNESS_EXPECT(live_same(before), spec);
            /* With fallback: the native backend finishes the step. */
            cold(on, spec);
            set_spec(spec);
            st = layer_step(on, ln, &c, &kv, k4, v4, nkv, x3, y);
            set_spec("");
            HARNESS_EXPECT(st == ATTN_OK && kv.len == 7, spec);
            HARNESS_EXPECT(ref_check_f32(spec, y, want, (size_t)c.batch * 3 * d,
                                         REF_MHA_ABS, REF_MHA_REL),
                           spec);
        }
    }
    attn_mha_destroy(lo);
    attn_mha_destroy(ln);
    attn_context_destroy(off);
    attn_context_destroy(on);
    free(y);
    free(y0);
    free(x3);
    free(k);
    free(v);
    free(k4);
    free(v4);
    free(want);
    free(ref);
    mha_case_free(&c);
#else
    printf("\n  (built without CLBlast: the layer runs natively) ");
#endif
}

/* ---- attn_sdpa_cl: the caller's buffers, no fallback --------------------
 */

static cl_device_id emb_dev;
static cl_context emb_ctx;
static cl_command_queue emb_q;

static int event_status(cl_event ev)
{
    cl_int st = 1;
    clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
    return st;
}

static cl_uint event_refs(cl_event ev)
{
    cl_uint n = 0;
    clGetEventInfo(ev, CL_EVENT_REFERENCE_COUNT, sizeof n, &n, NULL);
    return n;
}

/* One attn_sdpa_cl call under spec after a user event of the caller's.
 * late = 0: the status want comes back, *done stays NULL, nothing
 * enqueued writes o or lse, the caller's event keeps its references, no
 * object is left.  late = 1: the call is enqueued (ATTN_OK) while the
 * caller's event is still pending, and its event reports the failure; o
 * and lse stay untouched.  (With late = 0 the caller's event is complete
 * before the call: PoCL 3.1 sometimes asserts, in
 * pocl_update_event_finished, when a command that also waits for a
 * pending event is failed.) */
static void emb_expect(attn_context *ctx, const sdpa_case *c,
                       const attn_sdpa_desc *call, const char *spec,
                       attn_status want, int late, int flags, const char *what)
{
    static const size_t off[5] = {3, 5, 7, 9, 11};
    call_bufs cb;
    cl_event user, done = NULL;
    cl_uint refs;
    cl_live before;
    attn_status s;
    unsigned long fired;
    cl_int rc;
    char label[256];
    snprintf(label, sizeof label, "%s, %s", what, spec);
    before = cl_live_now();
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, emb_ctx, c, off, 13, 1), 0);
    user = clCreateUserEvent(emb_ctx, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    refs = event_refs(user);
    if (!late)
        clSetUserEventStatus(user, CL_COMPLETE);
    set_spec(spec);
    s = attn_sdpa_cl_buffers(ctx, call ? call : &c->d, &cb.b, emb_q, 1, &user,
                             &done);
    fired = fired_all();
    set_spec("");
    HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(event_refs(user) == refs, label);
    if (late)
        clSetUserEventStatus(user, CL_COMPLETE);
    /* What the call waits for is complete: its late faults can fire. */
    attn_fault_deliver(1);
    if (!late) {
        HARNESS_EXPECT(s == want, label);
        if (s != want)
            printf("\n  %s: got %s (%s)\n", label, attn_status_string(s),
                   attn_context_last_error(ctx));
        HARNESS_EXPECT(done == NULL, label);
        HARNESS_EXPECT(attn_context_last_error(ctx)[0] != '\0', label);
    } else {
        HARNESS_EXPECT(s == ATTN_OK, label);
        HARNESS_EXPECT(done != NULL, label);
        if (done) {
            clWaitForEvents(1, &done);
            HARNESS_EXPECT(event_status(done) < 0, label);
            clReleaseEvent(done);
        }
    }
    clFinish(emb_q);
    HARNESS_EXPECT(call_bufs_untouched(&cb, emb_q), label);
    clReleaseEvent(user);
    call_bufs_free(&cb);
    if (flags & F_LIVE)
        HARNESS_EXPECT(live_same(before), label);
}

/* What emb_sweep's call is besides its path: plain, packed sequences or
 * left padding. */
enum { EMB_PLAIN, EMB_PACKED, EMB_Q_START };

/* The fault points of attn_sdpa_cl_buffers on path; decode: few query
 * rows; EMB_PACKED: the case's rows ([1, heads, seq, dim]) as two packed
 * sequences addressed through head-major strides, the second without keys
 * (its o and lse rows filled, not computed); EMB_Q_START: left padding,
 * the padding rows filled behind the kernels (with packed sequences the
 * write point too: the fills); each fault refused with o and lse
 * untouched and nothing left. */
static void emb_sweep(attn_path path, int decode, int mode, const char *what)
{
    static const struct {
        attn_fault_point p;
        int late;
    } kinds[] = {{ATTN_FAULT_ALLOC, 0},
                 {ATTN_FAULT_ENQUEUE, 0},
                 {ATTN_FAULT_ENQUEUE, 1},
                 {ATTN_FAULT_WRITE, 0}};
    static const int32_t q_start[2] = {3, 6};
    const int packed = mode == EMB_PACKED;
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    static const size_t off[5] = {3, 5, 7, 9, 11};
    call_bufs cb;
    char spec[64];
    attn_options_init(&o);
    o.path = path;
    o.log = log_cb;
    CU_ASSERT_EQUAL_FATAL(attn_context_create_cl(emb_ctx, emb_dev, &o, &ctx),
                          ATTN_OK);
    attn_sdpa_desc pd;
    const int32_t cu_q[3] = {0, 5, 13}, cu_kv[3] = {0, 29, 29};
    const attn_sdpa_desc *call = NULL;
    shape(&d, decode);
    if (mode == EMB_Q_START)
        d.struct_size = sizeof d; /* the layout with q_start */
    if (packed) {
        d.batch = 1;
        d.mask.bias_kind = ATTN_BIAS_NONE;
        d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    }
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 31, 1.0, 0.05, 1), 0);
    if (mode == EMB_Q_START)
        c.d.q_start = q_start;
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    if (packed) {
        pd = c.d;
        pd.struct_size = sizeof pd; /* the layout with cu_seqlens */
        pd.batch = 2;
        pd.mask.kv_len = NULL; /* packed sequences take none */
        pd.mask.bias = NULL;
        pd.keep = NULL;
        pd.cu_seqlens_q = cu_q;
        pd.cu_seqlens_kv = cu_kv;
        pd.q_strides[1] = (int64_t)d.seq_q * d.head_dim;
        pd.q_strides[2] = d.head_dim;
        pd.k_strides[1] = (int64_t)d.seq_kv * d.head_dim;
        pd.k_strides[2] = d.head_dim;
        pd.v_strides[1] = (int64_t)d.seq_kv * d.head_dim_v;
        pd.v_strides[2] = d.head_dim_v;
        pd.o_strides[1] = (int64_t)d.seq_q * d.head_dim_v;
        pd.o_strides[2] = d.head_dim_v;
        call = &pd;
    }
    /* The first call creates the kernel state: what a call creates from
     * then on is its own. */
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, emb_ctx, &c, off, 13, 1), 0);
    CU_ASSERT_EQUAL(attn_sdpa_cl_buffers(ctx, call ? call : &c.d, &cb.b, emb_q,
                                         0, NULL, NULL),
                    ATTN_OK);
    clFinish(emb_q);
    /* the packed results: test_embed_strides against the oracle */
    CU_ASSERT(packed || call_bufs_check(&cb, &c, &ref, emb_q, what));
    call_bufs_free(&cb);
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        const attn_fault_point p = kinds[k].p;
        unsigned long n;
        /* A late fault in a packed call fails a command that the lse copy
         * and the call's end marker wait for, in a left-padded call one
         * that the fills wait for: PoCL 3.1 then stops the process
         * (pocl_update_event_failed, EINVAL) */
        if (mode != EMB_PLAIN && kinds[k].late)
            continue;
        if (p == ATTN_FAULT_WRITE && mode == EMB_PLAIN) /* no fills */
            continue;
        /* A clean call: right, and how many calls it makes at p. */
        CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, emb_ctx, &c, off, 13, 1), 0);
        set_spec("");
        CU_ASSERT_EQUAL(attn_sdpa_cl_buffers(ctx, call ? call : &c.d, &cb.b,
                                             emb_q, 0, NULL, NULL),
                        ATTN_OK);
        n = attn_fault_calls(p);
        clFinish(emb_q);
        CU_ASSERT(packed || call_bufs_check(&cb, &c, &ref, emb_q, what));
        call_bufs_free(&cb);
        HARNESS_EXPECT(n >= 1, point_name[p]);
        /* The fills (the call's only writes: the padding rows, or the
         * rows of the packed sequence without keys): the first and the
         * second fail (the second with the first enqueued).  PoCL 3.1
         * aborts (pocl_update_event_failed) when the gate's failure runs
         * down from a kernel to two commands behind it, as it would from
         * the third left-padding fill on. */
        if (p == ATTN_FAULT_WRITE && n > 2)
            n = 2;
        for (unsigned long i = 1; i <= n; i++) {
            snprintf(spec, sizeof spec, "%s%s@%lu", point_name[p],
                     kinds[k].late ? "!" : "", i);
            emb_expect(ctx, &c, call, spec, want_status(p, 0), kinds[k].late,
                       F_LIVE, what);
        }
    }
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(ctx);
}

static void test_embed(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    cl_live before;
    char what[64];
    emb_sweep(ATTN_PATH_UNFUSED, 0, EMB_PLAIN, "attn_sdpa_cl, three kernels");
    emb_sweep(ATTN_PATH_FUSED, 0, EMB_PLAIN, "attn_sdpa_cl, fused");
    emb_sweep(ATTN_PATH_AUTO, 1, EMB_PLAIN, "attn_sdpa_cl, decode");
    emb_sweep(ATTN_PATH_AUTO, 0, EMB_PACKED, "attn_sdpa_cl, packed sequences");
    emb_sweep(ATTN_PATH_AUTO, 0, EMB_Q_START, "attn_sdpa_cl, q_start");
    /* Builds fail: a fresh context per path. */
    shape(&d, 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 32, 1.0, 0.05, 1), 0);
    for (int path = ATTN_PATH_AUTO; path <= ATTN_PATH_UNFUSED; path++) {
        snprintf(what, sizeof what, "attn_sdpa_cl, path %d", path);
        attn_options_init(&o);
        o.path = (attn_path)path;
        before = cl_live_now();
        CU_ASSERT_EQUAL_FATAL(
            attn_context_create_cl(emb_ctx, emb_dev, &o, &ctx), ATTN_OK);
        /* Per call, objects are not compared: a first call may create the
         * context's kernel state. */
        emb_expect(ctx, &c, NULL, "build", ATTN_ERR_BUILD_FAILED, 0, 0, what);
        attn_context_destroy(ctx);
        HARNESS_EXPECT(live_same(before), what);
    }
    sdpa_case_free(&c);
}

/* ---- sizes larger than the device --------------------------------------- */

/* No call at any point was made since the spec was set. */
static int nothing_made(void)
{
    return attn_fault_calls(ATTN_FAULT_ALLOC) == 0 &&
           attn_fault_calls(ATTN_FAULT_WRITE) == 0 &&
           attn_fault_calls(ATTN_FAULT_ENQUEUE) == 0 &&
           attn_fault_calls(ATTN_FAULT_READ) == 0;
}

/* attn_sdpa refused for size on ctx (fallback off): ATTN_ERR_OUT_OF_MEMORY
 * before anything was allocated, a message naming `needle` (a size), o
 * and lse untouched. */
static void expect_too_big(attn_context *ctx, const sdpa_case *c,
                           const char *needle, const char *what)
{
    outs u;
    attn_status s;
    const char *msg;
    CU_ASSERT_EQUAL_FATAL(outs_make(&u, c), 0);
    set_spec("");
    s = attn_sdpa(ctx, &c->d, c->q, c->k, c->v, u.o, (float *)(void *)u.lse);
    msg = attn_context_last_error(ctx);
    HARNESS_EXPECT(s == ATTN_ERR_OUT_OF_MEMORY, what);
    HARNESS_EXPECT(strstr(msg, needle) != NULL, what);
    HARNESS_EXPECT(strstr(msg, "bytes (") != NULL, what);
    if (!strstr(msg, needle))
        printf("\n  %s: \"%s\" does not name %s\n", what, msg, needle);
    HARNESS_EXPECT(nothing_made(), what);
    HARNESS_EXPECT(outs_untouched(&u), what);
    outs_free(&u);
}

static void test_too_big(void)
{
    attn_context *off = ctx_new("cpu", ATTN_PATH_UNFUSED, 1, 0);
    attn_context *on = ctx_new("cpu", ATTN_PATH_UNFUSED, 1, 1);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    CU_ASSERT_EQUAL(attn_context_device(off, &info), ATTN_OK);
    shape(&d, 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 41, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);

    /* Global memory smaller than the call. */
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 0, 16384, 0), ATTN_OK);
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(on, 0, 16384, 0), ATTN_OK);
    expect_too_big(off, &c, "which has 16384 bytes (16.0 KiB)",
                   "global memory");
    HARNESS_EXPECT(strstr(attn_context_last_error(off), info.name) != NULL,
                   "the message names the device");
    log_clear();
    CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, "global, fallback"));
    HARNESS_EXPECT(strstr(attn_context_last_error(on),
                          "fell back to the native backend") != NULL,
                   "global memory, fallback");
    HARNESS_EXPECT(log_has("16384 bytes (16.0 KiB)"), "logged");

    /* Buffers larger than the largest allocation. */
    CU_ASSERT_EQUAL(
        attn_fault_set_mem_limits(off, 0, info.global_mem_bytes, 4096),
        ATTN_OK);
    expect_too_big(off, &c, "largest allocation is 4096 bytes (4.0 KiB)",
                   "largest allocation");
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 0, info.global_mem_bytes,
                                              info.max_alloc_bytes),
                    ATTN_OK);
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, "limits restored"));
    /* The three-kernel path's scores in blocks: a largest allocation of
     * 12 KiB leaves a score budget of 6 KiB, under the 12 KiB that all
     * the call's scores take, so its launch works through blocks of whole
     * heads; and, below, through blocks of one head's rows. */
    CU_ASSERT_EQUAL(
        attn_fault_set_mem_limits(off, 0, info.global_mem_bytes, 12288),
        ATTN_OK);
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, "blocks of heads"));
    {
        attn_sdpa_desc r;
        sdpa_case rc;
        ref_sdpa_result rr;
        attn_sdpa_desc_init(&r);
        r.batch = r.heads_q = r.heads_kv = 1;
        r.seq_q = 64; /* 2 KiB of scores a row: 10 rows in 20 KiB */
        r.seq_kv = 512;
        r.head_dim = r.head_dim_v = 16;
        r.mask.causal = 1;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&rc, &r, 43, 1.0, 0.0, 0), 0);
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&rc.d, rc.q, rc.k, rc.v, &rr), 0);
        CU_ASSERT_EQUAL(
            attn_fault_set_mem_limits(off, 0, info.global_mem_bytes, 40960),
            ATTN_OK);
        CU_ASSERT(sdpa_case_check(off, &rc, &rr, 1, NULL, "blocks of rows"));
        ref_sdpa_free(&rr);
        sdpa_case_free(&rc);
    }
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 0, info.global_mem_bytes,
                                              info.max_alloc_bytes),
                    ATTN_OK);
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 1, 1, 1),
                    ATTN_ERR_INVALID_ARGUMENT);

#ifdef ATTN_HAVE_CLBLAST
    {
        mha_case m;
        float *y;
        CU_ASSERT_EQUAL_FATAL(mha_case_init(&m, &mha_shape, 42), 0);
        y = malloc(m.ny * sizeof *y);
        CU_ASSERT_PTR_NOT_NULL_FATAL(y);
        memset(y, PATTERN, m.ny * sizeof *y);
        CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 0, 8192, 0), ATTN_OK);
        set_spec("");
        HARNESS_EXPECT(attn_mha_forward(off, &m.m, m.batch, m.seq_q, m.seq_kv,
                                        m.x_q, m.x_kv, &m.mask,
                                        y) == ATTN_ERR_OUT_OF_MEMORY,
                       "mha too big");
        HARNESS_EXPECT(strstr(attn_context_last_error(off),
                              "which has 8192 bytes (8.0 KiB)") != NULL,
                       "mha too big: message");
        HARNESS_EXPECT(nothing_made(), "mha too big: nothing made");
        for (size_t i = 0; i < m.ny; i++)
            if (((unsigned char *)y)[i * sizeof *y] != PATTERN) {
                HARNESS_EXPECT(0, "mha too big: y untouched");
                break;
            }
        CU_ASSERT_EQUAL(attn_fault_set_mem_limits(on, 0, 8192, 0), ATTN_OK);
        CU_ASSERT(mha_case_check(on, &m, NULL, "mha too big, fallback"));
        HARNESS_EXPECT(strstr(attn_context_last_error(on),
                              "which has 8192 bytes (8.0 KiB)") != NULL,
                       "mha too big, fallback: said so");
        free(y);
        mha_case_free(&m);
    }
#endif
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(off);
    attn_context_destroy(on);
}

/* The scratch of attn_sdpa_cl against a device with 1 KiB. */
static void test_too_big_embed(void)
{
    static const size_t off[5] = {0, 0, 0, 0, 0};
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    call_bufs cb;
    cl_event done = NULL;
    attn_status s;
    attn_options_init(&o);
    o.path = ATTN_PATH_UNFUSED;
    CU_ASSERT_EQUAL_FATAL(attn_context_create_cl(emb_ctx, emb_dev, &o, &ctx),
                          ATTN_OK);
    shape(&d, 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 43, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, emb_ctx, &c, off, 0, 1), 0);
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(ctx, 0, 1024, 0), ATTN_OK);
    set_spec("");
    s = attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, emb_q, 0, NULL, &done);
    HARNESS_EXPECT(s == ATTN_ERR_OUT_OF_MEMORY, "attn_sdpa_cl too big");
    HARNESS_EXPECT(done == NULL, "attn_sdpa_cl too big: no event");
    HARNESS_EXPECT(strstr(attn_context_last_error(ctx),
                          "which has 1024 bytes (1.0 KiB)") != NULL,
                   "attn_sdpa_cl too big: message");
    HARNESS_EXPECT(attn_fault_calls(ATTN_FAULT_ALLOC) == 0 &&
                       attn_fault_calls(ATTN_FAULT_ENQUEUE) == 0,
                   "attn_sdpa_cl too big: nothing made");
    clFinish(emb_q);
    HARNESS_EXPECT(call_bufs_untouched(&cb, emb_q),
                   "attn_sdpa_cl too big: o untouched");
    call_bufs_free(&cb);
    sdpa_case_free(&c);
    attn_context_destroy(ctx);
}

/* A shape larger than the device really is, its inputs in memory that
 * cannot be read (PROT_NONE): refused before anything touches them. */
static void test_too_big_real(void)
{
    attn_context *ctx = ctx_new("cpu", ATTN_PATH_AUTO, 1, 0);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_sdpa_desc d;
    size_t bytes[4];
    void *p[4];
    const char *msg;
    char have[2][64];
    attn_status s;
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    /* k and v each hold more than half the device's global memory. */
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = 1;
    d.seq_q = 64;
    d.head_dim = d.head_dim_v = 1024;
    d.seq_kv = (int)(info.global_mem_bytes / 2 / (1024 * sizeof(float)) + 1);
    CU_ASSERT_FATAL(d.seq_kv > 0);
    bytes[0] = (size_t)d.seq_q * 1024 * sizeof(float);
    bytes[1] = bytes[2] = (size_t)d.seq_kv * 1024 * sizeof(float);
    bytes[3] = bytes[0];
    for (int i = 0; i < 4; i++) {
        p[i] = mmap(NULL, bytes[i], PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        CU_ASSERT_FATAL(p[i] != MAP_FAILED);
    }
    set_spec("");
    s = attn_sdpa(ctx, &d, p[0], p[1], p[2], p[3], NULL);
    msg = attn_context_last_error(ctx);
    HARNESS_EXPECT(s == ATTN_ERR_OUT_OF_MEMORY, "real: refused");
    /* Either limit may trip first: one buffer beyond the largest
     * allocation, or all of them beyond the global memory. */
    snprintf(have[0], sizeof have[0], "%llu bytes",
             (unsigned long long)info.global_mem_bytes);
    snprintf(have[1], sizeof have[1], "%llu bytes",
             (unsigned long long)info.max_alloc_bytes);
    HARNESS_EXPECT(strstr(msg, have[0]) || strstr(msg, have[1]),
                   "real: the device's limit");
    HARNESS_EXPECT(strstr(msg, info.name) != NULL, "real: the device");
    HARNESS_EXPECT(strstr(msg, "GiB)") != NULL, "real: in GiB");
    HARNESS_EXPECT(nothing_made(), "real: nothing made");
    if (s != ATTN_ERR_OUT_OF_MEMORY)
        printf("\n  real: %s: %s\n", attn_status_string(s), msg);
    for (int i = 0; i < 4; i++)
        munmap(p[i], bytes[i]);
    attn_context_destroy(ctx);
}

/* ---- allocation failures of the native backend -------------------------
 */

static void test_native_alloc(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    mha_case m;
    double *ref;
    float *y, *y0;
    long n;
    int named = 0;
    size_t act;
    char act_txt[32];
    char *env = getenv("ATTN_DEVICE") ? strdup(getenv("ATTN_DEVICE")) : NULL;
    attn_options_init(&o);
    o.device = "native";
    o.threads = 2;
    /* ATTN_DEVICE would override the device asked for (attn.h); this test
     * is about the native backend whatever the run's device. */
    unsetenv("ATTN_DEVICE");

    /* Every allocation of context creation in turn. */
    alloc_arm(0);
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    n = alloc_disarm();
    attn_context_destroy(ctx);
    HARNESS_EXPECT(n >= 1, "context creation allocates");
    for (long i = 1; i <= n; i++) {
        attn_status s;
        ctx = (attn_context *)&ctx;
        alloc_arm(i);
        s = attn_context_create(&o, &ctx);
        alloc_disarm();
        /* A failed device probe may still leave the native backend. */
        HARNESS_EXPECT(s == ATTN_OK || s == ATTN_ERR_OUT_OF_MEMORY,
                       "context creation out of memory");
        if (s == ATTN_OK) {
            attn_context_destroy(ctx);
        } else {
            HARNESS_EXPECT(ctx == NULL, "no context");
            HARNESS_EXPECT(attn_last_error()[0] != '\0', "said why");
        }
    }

    /* Every allocation of the native multi-head layer in turn. */
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&m, &mha_shape, 51), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref = mha_case_reference(&m));
    y = malloc(m.ny * sizeof *y);
    y0 = malloc(m.ny * sizeof *y);
    CU_ASSERT_FATAL(y && y0);
    memset(y, PATTERN, m.ny * sizeof *y);
    memcpy(y0, y, m.ny * sizeof *y);
    alloc_arm(0);
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, &m.m, m.batch, m.seq_q, m.seq_kv,
                                     m.x_q, m.x_kv, &m.mask, y),
                    ATTN_OK);
    n = alloc_disarm();
    HARNESS_EXPECT(n >= 1, "the layer allocates");
    /* The activations: q, k, v, o of every token (ROPE adds no x). */
    act = (size_t)m.batch * (size_t)m.seq_q *
          (2 * (size_t)mha_shape.heads_q + 2 * (size_t)mha_shape.heads_kv) *
          (size_t)mha_shape.head_dim;
    snprintf(act_txt, sizeof act_txt, "%zu bytes", act * sizeof(float));
    memset(y, PATTERN, m.ny * sizeof *y);
    for (long i = 1; i <= n; i++) {
        attn_status s;
        alloc_arm(i);
        s = attn_mha_forward(ctx, &m.m, m.batch, m.seq_q, m.seq_kv, m.x_q,
                             m.x_kv, &m.mask, y);
        alloc_disarm();
        HARNESS_EXPECT(s == ATTN_ERR_OUT_OF_MEMORY, "layer out of memory");
        HARNESS_EXPECT(!memcmp(y, y0, m.ny * sizeof *y), "y untouched");
        HARNESS_EXPECT(attn_context_last_error(ctx)[0] != '\0', "said why");
        if (strstr(attn_context_last_error(ctx), act_txt))
            named = 1;
    }
    HARNESS_EXPECT(named, "the activations' failure names their size");
    CU_ASSERT(mha_case_check(ctx, &m, ref, "native layer after the faults"));
    free(y);
    free(y0);
    free(ref);
    mha_case_free(&m);
    attn_context_destroy(ctx);
    if (env) {
        setenv("ATTN_DEVICE", env, 1);
        free(env);
    }
}

/* ---- the spec ------------------------------------------------------------ */

static void test_spec(void)
{
    static const char *const bad[] = {
        "bogus",     "alloc@0",       "alloc@",    "alloc%1.5", "alloc%x",
        "alloc:dev", "alloc:gpu1",    "alloc@2+3", "alloc?",    "seed=x",
        "seed=",     "build,read@-1", "alloc @1"};
    static const char *const good[] = {"",
                                       "build",
                                       "alloc@3",
                                       "enqueue%0.2",
                                       "enqueue:dev1",
                                       "read!@2+,build",
                                       " alloc@1 , write%0 ",
                                       "seed=7,enqueue%0.5:dev0!@3+",
                                       "alloc,enqueue,read,write,build"};
    attn_context *ctx = ctx_new("cpu", ATTN_PATH_UNFUSED, 1, 0);
    attn_context *on = ctx_new("cpu", ATTN_PATH_UNFUSED, 1, 1);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    char spec[64];
    unsigned long f1, f2, calls;
    attn_err e = {{0}};
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.msg[0] = '\0';
        HARNESS_EXPECT(attn_fault_set(bad[i], &e) == ATTN_ERR_INVALID_ARGUMENT,
                       bad[i]);
        HARNESS_EXPECT(e.msg[0] != '\0', bad[i]);
    }
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        HARNESS_EXPECT(attn_fault_set(good[i], &e) == ATTN_OK, good[i]);
    set_spec("");

    shape(&d, 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 61, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, "spec warm-up"));
    CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, "spec warm-up"));

    /* Another device's faults never fire here; this one's do. */
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    snprintf(spec, sizeof spec, "alloc:dev%d", info.device_index + 1);
    cold(ctx, spec);
    set_spec(spec);
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, "other device"));
    HARNESS_EXPECT(attn_fault_fired(ATTN_FAULT_ALLOC) == 0, spec);
    HARNESS_EXPECT(attn_fault_calls(ATTN_FAULT_ALLOC) >= 1, spec);
    snprintf(spec, sizeof spec, "alloc:dev%d@2", info.device_index);
    expect_failure(ctx, &c, spec, ATTN_ERR_OUT_OF_MEMORY, F_ALL, "this device");

    /* From the n-th on: every later call fails too. */
    expect_failure(ctx, &c, "enqueue@2+", ATTN_ERR_DEVICE, F_ALL,
                   "from the 2nd");
    set_spec("enqueue@2+");
    attn_sdpa(ctx, &c.d, c.q, c.k, c.v, NULL, NULL); /* invalid: no call */
    HARNESS_EXPECT(attn_fault_calls(ATTN_FAULT_ENQUEUE) == 0,
                   "validated first");

    /* Probabilities: the same seed fails the same calls. */
    set_spec("seed=3,enqueue%0.5");
    for (int i = 0; i < 6; i++)
        CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, "p = 0.5"));
    f1 = attn_fault_fired(ATTN_FAULT_ENQUEUE);
    calls = attn_fault_calls(ATTN_FAULT_ENQUEUE);
    set_spec("seed=3,enqueue%0.5");
    for (int i = 0; i < 6; i++)
        CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, "p = 0.5 again"));
    f2 = attn_fault_fired(ATTN_FAULT_ENQUEUE);
    HARNESS_EXPECT(f1 == f2, "the same seed, the same faults");
    HARNESS_EXPECT(f1 > 0 && f1 < calls, "some calls fail, not all");
    set_spec("enqueue%0");
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, "p = 0"));
    HARNESS_EXPECT(attn_fault_fired(ATTN_FAULT_ENQUEUE) == 0, "p = 0");

    /* ATTN_FAULTS. */
    setenv("ATTN_FAULTS", "alloc@1", 1);
    attn_fault_reset();
    cold(ctx, "alloc");
    {
        outs u;
        CU_ASSERT_EQUAL_FATAL(outs_make(&u, &c), 0);
        HARNESS_EXPECT(
            attn_sdpa(ctx, &c.d, c.q, c.k, c.v, u.o, (float *)(void *)u.lse) ==
                ATTN_ERR_OUT_OF_MEMORY,
            "ATTN_FAULTS=alloc@1");
        HARNESS_EXPECT(outs_untouched(&u), "ATTN_FAULTS=alloc@1");
        outs_free(&u);
    }
    setenv("ATTN_FAULTS", "alloc@", 1); /* reported and ignored */
    attn_fault_reset();
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, "bad ATTN_FAULTS"));
    HARNESS_EXPECT(fired_all() == 0, "bad ATTN_FAULTS injects nothing");
    unsetenv("ATTN_FAULTS");
    attn_fault_reset();
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(ctx);
    attn_context_destroy(on);
}

/* ---- two devices ---------------------------------------------------------
 */

static int n_devices(void)
{
    size_t n = 0;
    return attn_devices(NULL, 0, &n) == ATTN_OK ? (int)n : 0;
}

/* The device index ("devN") of device i of a context on "all". */
static int dev_index(attn_context *ctx, int i)
{
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    /* The primary first; with two devices the other is the other index. */
    return i == 0 ? info.device_index : 1 - info.device_index;
}

/* A call on "all" under spec completes on the device left: right, and the
 * failed device is named in the log. */
static void expect_moved(attn_context *ctx, const sdpa_case *c,
                         const ref_sdpa_result *ref, const char *spec,
                         int failed_index, int flags, const char *what)
{
    cl_live before;
    int ok;
    unsigned long fired;
    char label[256], name[32];
    snprintf(label, sizeof label, "%s, %s", what, spec);
    snprintf(name, sizeof name, "OpenCL device 0:%d (", failed_index);
    log_clear();
    cold(ctx, spec);
    before = cl_live_now();
    set_spec(spec);
    ok = sdpa_case_check(ctx, c, ref, 1, NULL, label);
    fired = fired_all();
    set_spec("");
    HARNESS_EXPECT(ok, label);
    HARNESS_EXPECT(fired >= 1, label);
    HARNESS_EXPECT(log_has(name), label);
    HARNESS_EXPECT(log_has("its work moves to the other devices"), label);
    HARNESS_EXPECT(!log_has("fell back"), label);
    /* the failure the call survived is the context's last */
    HARNESS_EXPECT(strstr(attn_context_last_error(ctx),
                          "completed on the devices left") != NULL,
                   label);
    /* The call succeeded: the buffers it allocated wait in the pool for
     * the next call; emptied, it holds no more than before. */
    if (flags & F_LIVE) {
        cold(ctx, spec);
        HARNESS_EXPECT(live_same(before), label);
    }
}

static void two_devices(int queues)
{
    static const char *const kinds[] = {"alloc",    "enqueue", "write", "read",
                                        "enqueue!", "write!",  "read!"};
    attn_context *off = ctx_new("all", ATTN_PATH_AUTO, queues, 0);
    attn_context *on = ctx_new("all", ATTN_PATH_AUTO, queues, 1);
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    char spec[64], what[64];
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    CU_ASSERT_PTR_NOT_NULL_FATAL(on);
    snprintf(what, sizeof what, "two devices, %d queue(s)", queues);
    shape(&d, 0);
    d.batch = 3; /* units for every queue */
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 71, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, what));
    CU_ASSERT(sdpa_case_check(on, &c, &ref, 1, NULL, what));
    for (int dv = 0; dv < 2; dv++) {
        const int index = dev_index(off, dv);
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            /* Every call at the point on that device fails. */
            snprintf(spec, sizeof spec, "%s:dev%d", kinds[k], index);
            expect_moved(off, &c, &ref, spec, index, F_LIVE, what);
            /* One call in turn: the first few of the device's. */
            for (int i = 1; i <= 3; i++) {
                snprintf(spec, sizeof spec, "%s:dev%d@%d", kinds[k], index, i);
                log_clear();
                set_spec(spec);
                CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, spec));
                HARNESS_EXPECT(fired_all() <= 1, spec);
                set_spec("");
            }
        }
    }
    /* Both devices fail: the status without fallback, the native backend
     * with it. */
    expect_failure(off, &c, "enqueue", ATTN_ERR_DEVICE, F_ALL, what);
    expect_failure(off, &c, "alloc", ATTN_ERR_OUT_OF_MEMORY, F_ALL, what);
    expect_failure(off, &c, "write!", ATTN_ERR_DEVICE, F_ALL, what);
    expect_fallback(on, &c, &ref, "enqueue", F_LIVE | F_FIRED, what);
    expect_fallback(on, &c, &ref, "read!", F_LIVE | F_FIRED, what);
    /* One device too small for the call: the other runs it. */
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 1, 4096, 0), ATTN_OK);
    log_clear();
    set_spec("");
    CU_ASSERT(sdpa_case_check(off, &c, &ref, 1, NULL, "device 1 too small"));
    HARNESS_EXPECT(log_has("which has 4096 bytes (4.0 KiB)"),
                   "device 1 too small: logged");
    CU_ASSERT_EQUAL(attn_fault_set_mem_limits(off, 0, 4096, 0), ATTN_OK);
    expect_too_big(off, &c, "which has 4096 bytes (4.0 KiB)", "both too small");
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(off);
    attn_context_destroy(on);
}

static void test_two_devices_one_queue(void)
{
    two_devices(1);
}

static void test_two_devices_two_queues(void)
{
    two_devices(2);
}

/* Builds fail on one device (fresh contexts); the layer moves too. */
static void test_two_devices_build_and_mha(void)
{
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    attn_context *ctx;
    cl_live before;
    char spec[64];
    shape(&d, 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 72, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    for (int dv = 0; dv < 2; dv++) {
        before = cl_live_now();
        ctx = ctx_new("all", ATTN_PATH_AUTO, 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        snprintf(spec, sizeof spec, "build:dev%d", dev_index(ctx, dv));
        /* The device left builds its programs in this call: objects are
         * compared over the context's life. */
        expect_moved(ctx, &c, &ref, spec, dev_index(ctx, dv), 0, "build");
        attn_context_destroy(ctx);
        HARNESS_EXPECT(live_same(before), spec);
    }
#ifdef ATTN_HAVE_CLBLAST
    {
        mha_case m;
        double *y_ref;
        ctx = ctx_new("all", ATTN_PATH_AUTO, 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        CU_ASSERT_EQUAL_FATAL(mha_case_init(&m, &mha_shape, 73), 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(y_ref = mha_case_reference(&m));
        CU_ASSERT(mha_case_check(ctx, &m, y_ref, "mha on all"));
        snprintf(spec, sizeof spec, "enqueue:dev%d", dev_index(ctx, 0));
        log_clear();
        set_spec(spec);
        CU_ASSERT(mha_case_check(ctx, &m, y_ref, "mha, primary fails"));
        HARNESS_EXPECT(fired_all() >= 1, "mha, primary fails");
        set_spec("");
        HARNESS_EXPECT(log_has("the layer moves to the next device"),
                       "mha, primary fails: logged");
        free(y_ref);
        mha_case_free(&m);
        attn_context_destroy(ctx);
    }
#endif
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

/* ---- suite --------------------------------------------------------------- */

static int embed_init(void)
{
    cl_platform_id plat;
    cl_int rc;
    if (clGetPlatformIDs(1, &plat, NULL) != CL_SUCCESS ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &emb_dev, NULL) !=
            CL_SUCCESS)
        return 1;
    emb_ctx = clCreateContext(NULL, 1, &emb_dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    emb_q = clCreateCommandQueue(emb_ctx, emb_dev, 0, &rc);
    return rc != CL_SUCCESS;
}

static int embed_clean(void)
{
    if (emb_q)
        clReleaseCommandQueue(emb_q);
    if (emb_ctx)
        clReleaseContext(emb_ctx);
    return 0;
}

int main(int argc, char **argv)
{
    static const harness_test one[] = {
        {"spec grammar, targets, probabilities, ATTN_FAULTS", test_spec},
        {"attn_sdpa, three kernels", test_unfused},
        {"attn_sdpa, fused", test_fused},
        {"attn_sdpa, decode", test_decode},
        {"attn_sdpa, auto", test_auto},
        {"attn_sdpa, two queues", test_two_queues},
        {"attn_sdpa, AUTO past a tiled that does not build",
         test_auto_tiled_build},
        {"attn_mha_forward on the device", test_mha},
        {"the persistent layer and its KV cache on the device", test_layer},
        {"attn_sdpa_cl", test_embed},
        {"too big for the device", test_too_big},
        {"too big for the device, attn_sdpa_cl", test_too_big_embed},
        {"too big for the device, real sizes", test_too_big_real},
        {"native backend out of memory", test_native_alloc},
        {NULL, NULL}};
    static const harness_test two[] = {
        {"a device fails, one queue each", test_two_devices_one_queue},
        {"a device fails, two queues each", test_two_devices_two_queues},
        {"builds fail on a device; the layer moves",
         test_two_devices_build_and_mha},
        {NULL, NULL}};
    /* ATTN_TEST_FILTER=text runs only the tests whose name holds text. */
    static harness_test picked[16];
    const char *filter = getenv("ATTN_TEST_FILTER");
    const int want_two = argc > 1 && !strcmp(argv[1], "two");
    const harness_test *list = want_two ? two : one;
    if (n_devices() < (want_two ? 2 : 1)) {
        printf("SKIP: fault injection needs %d OpenCL device(s)\n",
               want_two ? 2 : 1);
        return HARNESS_SKIP;
    }
    if (filter && *filter) {
        size_t n = 0;
        for (const harness_test *t = list; t->name && n + 1 < 16; t++)
            if (strstr(t->name, filter))
                picked[n++] = *t;
        list = picked;
    }
    return harness_main(want_two ? "faults, two devices" : "faults",
                        want_two ? NULL : embed_init,
                        want_two ? NULL : embed_clean, list);
}
