/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel variants on the OpenCL CPU device: which variant a shape runs
 * (attn_sdpa_kernel) under AUTO, an explicit path, a profile's path.order
 * and thresholds, and a variant forced by name (options.kernel,
 * ATTN_KERNEL): unknown names refused, a forced variant that does not take
 * a shape refused with nothing written and no fallback, and results that
 * match the oracle.  Also: repeated calls of one shape on host pointers
 * allocate no device buffer after the first and plan once (clCreateBuffer
 * counted through a link-time wrapper), for attn_sdpa (one and two queues)
 * and attn_mha_forward.
 *
 * Without an OpenCL CPU device the suite prints SKIP and exits 77.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cases.h"
#include "harness.h"
#include "opencl/runtime.h"
#include "ref.h"

/* ---- device buffers, counted -------------------------------------------- */

static atomic_long n_created;

cl_mem __real_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);
cl_mem __wrap_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);

cl_mem __wrap_clCreateBuffer(cl_context c, cl_mem_flags f, size_t n, void *h,
                             cl_int *rc)
{
    cl_mem m = __real_clCreateBuffer(c, f, n, h, rc);
    if (m)
        atomic_fetch_add(&n_created, 1);
    return m;
}

/* ---- helpers ---------------------------------------------------------------
 */

static attn_context *ctx_with(attn_path path, const char *kernel, int queues,
                              int fallback)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_status s;
    attn_options_init(&o);
    o.device = "cpu";
    o.path = path;
    o.kernel = kernel;
    o.queues = queues;
    o.allow_fallback = fallback;
    s = attn_context_create(&o, &ctx);
    if (s != ATTN_OK)
        printf("\n  context (kernel %s): %s: %s\n", kernel ? kernel : "-",
               attn_status_string(s), attn_last_error());
    return ctx;
}

static attn_sdpa_desc shape(int seq_q, int seq_kv, int d)
{
    attn_sdpa_desc x;
    memset(&x, 0, sizeof x);
    x.batch = 2;
    x.heads_q = 4;
    x.heads_kv = 2;
    x.seq_q = seq_q;
    x.seq_kv = seq_kv;
    x.head_dim = x.head_dim_v = d;
    return x;
}

/* The kernel attn_sdpa_kernel names for d on ctx ("" on error). */
static const char *kernel_of(attn_context *ctx, const attn_sdpa_desc *d)
{
    static char name[64];
    if (attn_sdpa_kernel(ctx, d, name, sizeof name) != ATTN_OK)
        name[0] = '\0';
    return name;
}

/* ---- the choice -----------------------------------------------------------
 */

static void test_names(void)
{
    const char *want[] = {"unfused", "fused", "decode"};
    int n = 0;
    for (; attn_kernel_name(n); n++)
        ;
    CU_ASSERT_TRUE(n >= 3);
    for (size_t i = 0; i < 3; i++) {
        int found = 0;
        for (int k = 0; k < n; k++)
            found |= !strcmp(attn_kernel_name(k), want[i]);
        HARNESS_EXPECT(found, want[i]);
    }
    CU_ASSERT_PTR_NULL(attn_kernel_name(-1));
    CU_ASSERT_PTR_NULL(attn_kernel_name(n));
}

static void test_auto_and_paths(void)
{
    attn_context *a = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
    attn_context *f = ctx_with(ATTN_PATH_FUSED, NULL, 1, 0);
    attn_context *u = ctx_with(ATTN_PATH_UNFUSED, NULL, 1, 0);
    attn_sdpa_desc dec = shape(3, 200, 16), full = shape(40, 40, 16);
    attn_sdpa_desc huge = shape(40, 40, 16);
    char small[4];
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    /* platforms/default.prof: decode for seq_q <= 4, else fused. */
    CU_ASSERT_STRING_EQUAL(kernel_of(a, &dec), "decode");
    CU_ASSERT_STRING_EQUAL(kernel_of(a, &full), "fused");
    /* An explicit path takes its own variants, decode being AUTO's. */
    CU_ASSERT_STRING_EQUAL(kernel_of(f, &dec), "fused");
    CU_ASSERT_STRING_EQUAL(kernel_of(u, &full), "unfused");
    /* A shape the fused kernel cannot hold goes to the three kernels. */
    huge.head_dim = huge.head_dim_v = 60000;
    CU_ASSERT_STRING_EQUAL(kernel_of(a, &huge), "unfused");
    CU_ASSERT_STRING_EQUAL(kernel_of(f, &huge), "unfused");
    /* The answer is cut to the room given, and refused without any. */
    CU_ASSERT_EQUAL(attn_sdpa_kernel(a, &full, small, sizeof small), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(small, "fus");
    CU_ASSERT_EQUAL(attn_sdpa_kernel(a, &full, small, 0),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(a, &full, NULL, 8),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(a, NULL, small, sizeof small),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(NULL, &full, small, sizeof small),
                    ATTN_ERR_INVALID_ARGUMENT);
    attn_context_destroy(a);
    attn_context_destroy(f);
    attn_context_destroy(u);
}

/* A profile folder with one file of body for every device. */
static void profile_dir(char *dir, size_t cap, const char *body)
{
    char path[600];
    FILE *f;
    snprintf(dir, cap, "/tmp/attn-kernelsXXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/z.prof", dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f = fopen(path, "w"));
    fputs(body, f);
    fclose(f);
    CU_ASSERT_EQUAL(setenv("ATTN_PLATFORM_DIR", dir, 1), 0);
}

static void profile_dir_done(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/z.prof", dir);
    unlink(path);
    rmdir(dir);
    unsetenv("ATTN_PLATFORM_DIR");
}

static void test_profile_order(void)
{
    char dir[64];
    attn_context *ctx;
    attn_sdpa_desc dec = shape(3, 200, 16), full = shape(40, 40, 16);
    /* path.order without fused, decode off: the three kernels always. */
    profile_dir(dir, sizeof dir,
                "[default]\npath.order = decode unfused\n"
                "decode.max_seq_q = 0\n");
    ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &dec), "unfused");
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &full), "unfused");
    attn_context_destroy(ctx);
    profile_dir_done(dir);
    /* A threshold: fused from 64 keys on, the three kernels below. */
    profile_dir(dir, sizeof dir, "[default]\nfused.min_seq_kv = 64\n");
    ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &full), "unfused");
    full.seq_kv = 64;
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &full), "fused");
    /* The decode settings take effect: up to 2 query rows only. */
    attn_context_destroy(ctx);
    profile_dir_done(dir);
    profile_dir(dir, sizeof dir, "[default]\ndecode.max_seq_q = 2\n");
    ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    dec.seq_q = 2;
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &dec), "decode");
    dec.seq_q = 3;
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &dec), "fused");
    attn_context_destroy(ctx);
    profile_dir_done(dir);
}

/* A profile's staging = pinned: host slices pass through mapped host
 * memory of the device, both ways; results as the oracle's. */
static void test_pinned_staging(void)
{
    char dir[64];
    attn_sdpa_desc d = shape(37, 70, 32);
    sdpa_case c;
    ref_sdpa_result ref;
    d.mask.causal = 1;
    d.mask.bias_kind = ATTN_BIAS_FULL;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 61, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    profile_dir(dir, sizeof dir, "[default]\nstaging = pinned\n");
    for (int queues = 1; queues <= 2; queues++) {
        attn_context *ctx = ctx_with(ATTN_PATH_AUTO, NULL, queues, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        for (int i = 0; i < 3; i++) /* fresh, then reused staging buffers */
            CU_ASSERT(sdpa_case_check(ctx, &c, &ref, i != 1, NULL,
                                      queues == 1 ? "pinned, one queue"
                                                  : "pinned, two queues"));
        attn_context_destroy(ctx);
    }
    profile_dir_done(dir);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

/* The tensor-core variant with the smaller key tiles a 48 KiB local memory
 * leaves it (an NVIDIA GPU: head size 128 in F32 takes 32 keys per tile),
 * set here through mma.bc, at TF32 and 3XTF32, F32 and F16, with masks and
 * tails, against the oracle at the tolerance of the precision it ran at;
 * and AUTO never takes it on a device without tensor cores. */
static void test_mma_tiles(void)
{
    static const char *const precisions[] = {"tf32", "3xtf32"};
    const int bc = 32;
    char dir[64], body[96];
    {
        snprintf(body, sizeof body, "[default]\nmma.bc = %d\n", bc);
        profile_dir(dir, sizeof dir, body);
        for (int p = 0; p < 2; p++) {
            attn_context *ctx;
            setenv("ATTN_PRECISION", precisions[p], 1);
            ctx = ctx_with(ATTN_PATH_AUTO, "mma", 1, 0);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
            for (int dt = 0; dt < 2 - p; dt++) {
                attn_sdpa_desc d = shape(70, 45 + 32 * dt, 64 + 64 * p);
                sdpa_case c;
                char what[96];
                d.dtype = dt ? ATTN_F16 : ATTN_F32;
                d.mask.causal = dt;
                d.mask.window = dt ? 0 : 20;
                d.mask.bias_kind = dt ? ATTN_BIAS_PER_HEAD : ATTN_BIAS_NONE;
                snprintf(what, sizeof what, "mma bc %d %s %s", bc,
                         precisions[p], dt ? "f16" : "f32");
                CU_ASSERT_EQUAL_FATAL(
                    sdpa_case_init(&c, &d, 70 + (uint64_t)bc + (uint64_t)p, 1.0,
                                   0.05, 1),
                    0);
                HARNESS_EXPECT(sdpa_case_check(ctx, &c, NULL, 1, NULL, what),
                               what);
                CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &c.d), "mma");
                sdpa_case_free(&c);
            }
            attn_context_destroy(ctx);
            /* AUTO: not on this device, though the precision permits. */
            ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
            {
                attn_sdpa_desc d = shape(70, 300, 64);
                CU_ASSERT_STRING_NOT_EQUAL(kernel_of(ctx, &d), "mma");
            }
            attn_context_destroy(ctx);
            unsetenv("ATTN_PRECISION");
        }
        profile_dir_done(dir);
    }
}

/* The AMD matrix-core variant, emulated: the WMMA layout (wave32, F16
 * only: F32 declined with a sentence) and the MFMA one with the smallest
 * key tile, at TF32, with masks, bias, GQA and tails, against the oracle
 * at the tolerance of the precision it ran at; AUTO never takes it on a
 * device without AMD matrix units. */
static void test_amdmm_units(void)
{
    static const char *const bodies[] = {
        "[default]\namdmm.emulate = 2\n",
        "[default]\namdmm.emulate = 1\namdmm.bc = 16\n"};
    setenv("ATTN_PRECISION", "tf32", 1);
    for (int u = 0; u < 2; u++) {
        char dir[64];
        attn_context *ctx;
        profile_dir(dir, sizeof dir, bodies[u]);
        ctx = ctx_with(ATTN_PATH_AUTO, "amdmm", 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        for (int dt = 0; dt < 2; dt++) {
            attn_sdpa_desc d = shape(70, 45 + 32 * dt, 64 * (2 - dt));
            sdpa_case c;
            char what[96];
            d.dtype = dt ? ATTN_F16 : ATTN_F32;
            d.mask.causal = dt;
            d.mask.window = dt ? 0 : 20;
            d.mask.bias_kind = dt ? ATTN_BIAS_PER_HEAD : ATTN_BIAS_NONE;
            snprintf(what, sizeof what, "amdmm %s %s",
                     u ? "MFMA bc 16" : "WMMA", dt ? "f16" : "f32");
            if (u == 0 && dt == 0) {
                char name[32];
                CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &d, name, sizeof name),
                                ATTN_ERR_UNSUPPORTED);
                CU_ASSERT_PTR_NOT_NULL(
                    strstr(attn_context_last_error(ctx), "F32"));
                continue;
            }
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d,
                                                 90 + (uint64_t)(u * 2 + dt),
                                                 1.0, 0.05, 1),
                                  0);
            HARNESS_EXPECT(sdpa_case_check(ctx, &c, NULL, 1, NULL, what), what);
            CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &c.d), "amdmm");
            sdpa_case_free(&c);
        }
        attn_context_destroy(ctx);
        profile_dir_done(dir);
    }
    {
        attn_context *ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
        attn_sdpa_desc d = shape(70, 300, 64);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        CU_ASSERT_STRING_NOT_EQUAL(kernel_of(ctx, &d), "amdmm");
        attn_context_destroy(ctx);
    }
    unsetenv("ATTN_PRECISION");
}

/* ---- forced by name -------------------------------------------------------
 */

static void test_forced(void)
{
    attn_context *ctx;
    attn_options o;
    attn_sdpa_desc d = shape(9, 33, 32), dec = shape(2, 33, 32);
    attn_sdpa_desc d16 = d, dec16 = dec;
    sdpa_case c, cd, c16, cd16;
    ref_sdpa_result ref, refd, ref16, refd16;
    float *o_buf;
    char name[32];

    /* Unknown names: refused when given, warned about from ATTN_KERNEL. */
    attn_options_init(&o);
    o.device = "cpu";
    o.kernel = "turbo";
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "turbo"));
    CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "fused"));
    o.kernel = "native"; /* only for the native backend */
    CU_ASSERT_EQUAL(attn_context_create(&o, &ctx), ATTN_ERR_INVALID_ARGUMENT);
    setenv("ATTN_KERNEL", "turbo", 1);
    o.kernel = NULL;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(attn_context_last_error(ctx), "ATTN_KERNEL=\"turbo\""));
    attn_context_destroy(ctx);
    /* ATTN_KERNEL overrides the options (case does not matter). */
    setenv("ATTN_KERNEL", "UNFUSED", 1);
    o.kernel = "fused";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &d), "unfused");
    attn_context_destroy(ctx);
    unsetenv("ATTN_KERNEL");

    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 31, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&cd, &dec, 32, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&cd.d, cd.q, cd.k, cd.v, &refd), 0);
    d16.dtype = dec16.dtype = ATTN_F16;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c16, &d16, 33, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c16.d, c16.q, c16.k, c16.v, &ref16), 0);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&cd16, &dec16, 34, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&cd16.d, cd16.q, cd16.k, cd16.v, &refd16),
                          0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o_buf = malloc(c.no * sizeof *o_buf));
    for (int i = 0; attn_kernel_name(i); i++) {
        const char *k = attn_kernel_name(i);
        sdpa_case *pc = &c, *pcd = &cd;
        ref_sdpa_result *pref = &ref, *prefd = &refd;
        /* Fallback on: a forced kernel that declines is still an error. */
        ctx = ctx_with(ATTN_PATH_AUTO, k, 1, 1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        /* A variant that runs only where the precision permits its
         * products (mma, xmx) runs at TF32 (the tolerance follows it); one
         * that takes no F32 storage (xmx) on the F16 cases. */
        if (attn_sdpa_kernel(ctx, &cd.d, name, sizeof name) ==
            ATTN_ERR_UNSUPPORTED) {
            attn_context_destroy(ctx);
            setenv("ATTN_PRECISION", "tf32", 1);
            ctx = ctx_with(ATTN_PATH_AUTO, k, 1, 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
            if (attn_sdpa_kernel(ctx, &cd.d, name, sizeof name) ==
                ATTN_ERR_UNSUPPORTED) {
                pc = &c16;
                pcd = &cd16;
                pref = &ref16;
                prefd = &refd16;
            }
        }
        HARNESS_EXPECT(sdpa_case_check(ctx, pcd, prefd, 1, NULL, k), k);
        HARNESS_EXPECT(!strcmp(kernel_of(ctx, &pcd->d), k), k);
        if (!strcmp(k, "decode")) {
            attn_status s;
            for (size_t e = 0; e < c.no; e++)
                o_buf[e] = 42.0f;
            s = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o_buf, NULL);
            CU_ASSERT_EQUAL(s, ATTN_ERR_UNSUPPORTED);
            CU_ASSERT_PTR_NOT_NULL(
                strstr(attn_context_last_error(ctx), "\"decode\" (forced)"));
            CU_ASSERT_PTR_NULL(strstr(attn_context_last_error(ctx), "fell"));
            for (size_t e = 0; e < c.no; e++)
                CU_ASSERT_EQUAL_FATAL(o_buf[e], 42.0f);
            CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &c.d, name, sizeof name),
                            ATTN_ERR_UNSUPPORTED);
        } else {
            HARNESS_EXPECT(sdpa_case_check(ctx, pc, pref, 1, NULL, k), k);
            HARNESS_EXPECT(!strcmp(kernel_of(ctx, &pc->d), k), k);
        }
        attn_context_destroy(ctx);
        unsetenv("ATTN_PRECISION");
    }
    free(o_buf);
    ref_sdpa_free(&ref);
    ref_sdpa_free(&refd);
    ref_sdpa_free(&ref16);
    ref_sdpa_free(&refd16);
    sdpa_case_free(&c);
    sdpa_case_free(&cd);
    sdpa_case_free(&c16);
    sdpa_case_free(&cd16);
}

/* ---- device buffers reused ------------------------------------------------
 */

#define REPEATS 10000

/* REPEATS calls of one small shape on ctx: the first may allocate, the
 * others must not. */
static void repeat(attn_context *ctx, const char *what)
{
    attn_sdpa_desc d = shape(8, 16, 8);
    sdpa_case c;
    ref_sdpa_result ref;
    long after_first, after_all;
    float *o, *lse;
    char label[96];
    int ok = 1;
    d.mask.causal = 1;
    d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 41, 1.0, 0.05, 1), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o = malloc(c.no * sizeof *o));
    CU_ASSERT_PTR_NOT_NULL_FATAL(lse = malloc(c.nlse * sizeof *lse));
    snprintf(label, sizeof label, "%s: first call", what);
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, label));
    after_first = atomic_load(&n_created);
    for (int i = 1; i < REPEATS && ok; i++)
        ok = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, lse) == ATTN_OK;
    CU_ASSERT(ok);
    after_all = atomic_load(&n_created);
    snprintf(label, sizeof label, "%s: after %d calls", what, REPEATS);
    HARNESS_EXPECT(after_all == after_first, label);
    if (after_all != after_first)
        printf("\n  %s: %ld device buffers created after the first call\n",
               what, after_all - after_first);
    /* Still right after all that reuse. */
    CU_ASSERT(sdpa_case_check(ctx, &c, &ref, 1, NULL, label));
    free(o);
    free(lse);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

static void test_reuse(void)
{
    const attn_path paths[] = {ATTN_PATH_UNFUSED, ATTN_PATH_FUSED,
                               ATTN_PATH_AUTO};
    const char *names[] = {"three kernels", "fused", "auto"};
    for (int i = 0; i < 3; i++) {
        attn_context *ctx = ctx_with(paths[i], NULL, 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        repeat(ctx, names[i]);
        attn_context_destroy(ctx);
    }
    {
        attn_context *ctx = ctx_with(ATTN_PATH_AUTO, NULL, 2, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        repeat(ctx, "two queues");
        attn_context_destroy(ctx);
    }
}

#ifdef ATTN_HAVE_CLBLAST
static void test_reuse_layer(void)
{
    static const mha_spec s = {.d_model = 32,
                               .heads_q = 4,
                               .heads_kv = 2,
                               .head_dim = 8,
                               .batch = 2,
                               .seq_q = 6,
                               .self = 1,
                               .with_bias = 1,
                               .posenc = ATTN_POSENC_ROPE,
                               .causal = 1};
    attn_context *ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
    mha_case c;
    double *ref;
    long first;
    float *y;
    int ok = 1;
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 51), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref = mha_case_reference(&c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(y = malloc(c.ny * sizeof *y));
    CU_ASSERT(mha_case_check(ctx, &c, ref, "layer: first call"));
    first = atomic_load(&n_created);
    for (int i = 1; i < 1000 && ok; i++)
        ok = attn_mha_forward(ctx, &c.m, c.batch, c.seq_q, c.seq_kv, c.x_q,
                              c.x_kv, &c.mask, y) == ATTN_OK;
    CU_ASSERT(ok);
    HARNESS_EXPECT(atomic_load(&n_created) == first,
                   "layer: no device buffer after the first call");
    CU_ASSERT(mha_case_check(ctx, &c, ref, "layer: after 1000 calls"));
    free(y);
    free(ref);
    mha_case_free(&c);
    attn_context_destroy(ctx);
}
#endif

/* The XMX variant with key tiles of 16 and 64 (xmx.bc; the suites run
 * its default, 32), F16 at TF32, head sizes 64 and 128, with masks and
 * tails, against the oracle; and AUTO never takes it on a device without
 * XMX units, first in path.order though it is. */
static void test_xmx_tiles(void)
{
    static const int tiles[] = {16, 64};
    char dir[64], body[128];
    setenv("ATTN_PRECISION", "tf32", 1);
    for (int ti = 0; ti < 2; ti++) {
        const int bc = tiles[ti];
        attn_context *ctx;
        attn_sdpa_desc d = shape(70, 45 + 32 * ti, 64 + 64 * ti);
        sdpa_case c;
        char what[64];
        snprintf(body, sizeof body,
                 "[default]\nxmx.bc = %d\npath.order = xmx unfused\n", bc);
        profile_dir(dir, sizeof dir, body);
        ctx = ctx_with(ATTN_PATH_AUTO, "xmx", 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        d.dtype = ATTN_F16;
        d.mask.causal = ti;
        d.mask.window = ti ? 0 : 20;
        d.mask.bias_kind = ti ? ATTN_BIAS_PER_HEAD : ATTN_BIAS_NONE;
        snprintf(what, sizeof what, "xmx bc %d d %d", bc, d.head_dim);
        CU_ASSERT_EQUAL_FATAL(
            sdpa_case_init(&c, &d, 170 + (uint64_t)bc, 1.0, 0.05, 1), 0);
        HARNESS_EXPECT(sdpa_case_check(ctx, &c, NULL, 1, NULL, what), what);
        CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &c.d), "xmx");
        attn_context_destroy(ctx);
        ctx = ctx_with(ATTN_PATH_AUTO, NULL, 1, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
        CU_ASSERT_STRING_EQUAL(kernel_of(ctx, &c.d), "unfused");
        attn_context_destroy(ctx);
        sdpa_case_free(&c);
        profile_dir_done(dir);
    }
    unsetenv("ATTN_PRECISION");
}

static int init(void)
{
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"kernel names", test_names},
        {"AUTO and the paths", test_auto_and_paths},
        {"path.order and thresholds from a profile", test_profile_order},
        {"a kernel forced by name", test_forced},
        {"pinned staging from a profile", test_pinned_staging},
        {"the tensor-core variant's smaller key tiles", test_mma_tiles},
        {"the AMD matrix-core variant's units, emulated", test_amdmm_units},
        {"the XMX variant's key tiles", test_xmx_tiles},
        {"no device buffer after the first call", test_reuse},
#ifdef ATTN_HAVE_CLBLAST
        {"the layer reuses its device buffers", test_reuse_layer},
#endif
        {NULL, NULL}};
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    o.device = "cpu";
    o.allow_fallback = 0;
    unsetenv("ATTN_KERNEL");
    unsetenv("ATTN_PRECISION");
    unsetenv("ATTN_PLATFORM_DIR");
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        printf("SKIP: kernel variants: no OpenCL CPU device (%s)\n",
               attn_last_error());
        return HARNESS_SKIP;
    }
    attn_context_destroy(ctx);
    return harness_main("kernels", init, NULL, tests);
}
