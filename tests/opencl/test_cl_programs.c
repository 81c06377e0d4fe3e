/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The program list of the offline compile checks (tests/tools/
 * cl_programs.c, which attn-cl-dump writes out) against the builds the
 * library really makes: clCreateProgramWithSource and clBuildProgram are
 * wrapped at link time (-Wl,--wrap) to see the sources and options the
 * library hands to the driver while attn_sdpa runs every kernel variant of
 * the library's table, forced by name (F32, F16 and BF16, at each
 * precision where a variant declines EXACT), attn_sdpa_backward (F32, F16
 * and BF16; as AUTO chooses and bwd_tiled forced) and attn_mha_forward
 * runs the layer on the OpenCL CPU device, the program cache off.  Every such
 * build must be one that cl_programs_for_device lists for that device, byte for
 * byte, and every program family of the list must have been built.
 *
 * Without an OpenCL CPU device the suite prints SKIP and exits 77.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "cases.h"
#include "cl_programs.h"
#include "harness.h"
#include "opencl/runtime.h" /* the OpenCL headers, attn_cl_load_sources */

#define MAX_BUILDS 64
#define MAX_TAGS   64 /* program families (tags) of the list */

/* ---- what the library hands to the driver ------------------------------ */

typedef struct seen_build {
    cl_program prog;
    char *src; /* the program's source, as one string */
    size_t len;
    int built; /* clBuildProgram was called on it */
    char options[CL_PROGRAM_OPTIONS_MAX];
    int fma; /* the device's CL_FP_FMA for floats */
} seen_build;

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static seen_build seen[MAX_BUILDS];
static size_t n_seen;
static int seen_overflow;

cl_program __real_clCreateProgramWithSource(cl_context context, cl_uint count,
                                            const char **strings,
                                            const size_t *lengths,
                                            cl_int *errcode_ret);
cl_program __wrap_clCreateProgramWithSource(cl_context context, cl_uint count,
                                            const char **strings,
                                            const size_t *lengths,
                                            cl_int *errcode_ret);
cl_int __real_clBuildProgram(cl_program program, cl_uint num_devices,
                             const cl_device_id *device_list,
                             const char *options,
                             void(CL_CALLBACK *notify)(cl_program, void *),
                             void *user_data);
cl_int __wrap_clBuildProgram(cl_program program, cl_uint num_devices,
                             const cl_device_id *device_list,
                             const char *options,
                             void(CL_CALLBACK *notify)(cl_program, void *),
                             void *user_data);

cl_program __wrap_clCreateProgramWithSource(cl_context context, cl_uint count,
                                            const char **strings,
                                            const size_t *lengths,
                                            cl_int *errcode_ret)
{
    cl_program prog = __real_clCreateProgramWithSource(context, count, strings,
                                                       lengths, errcode_ret);
    size_t len = 0, used = 0;
    char *src;
    if (!prog || !strings)
        return prog;
    for (cl_uint i = 0; i < count; i++)
        len += lengths && lengths[i] ? lengths[i] : strlen(strings[i]);
    pthread_mutex_lock(&seen_lock);
    if (n_seen == MAX_BUILDS || !(src = malloc(len + 1))) {
        seen_overflow = 1;
    } else {
        for (cl_uint i = 0; i < count; i++) {
            size_t n = lengths && lengths[i] ? lengths[i] : strlen(strings[i]);
            memcpy(src + used, strings[i], n);
            used += n;
        }
        src[len] = '\0';
        seen[n_seen++] = (seen_build){.prog = prog, .src = src, .len = len};
    }
    pthread_mutex_unlock(&seen_lock);
    return prog;
}

cl_int __wrap_clBuildProgram(cl_program program, cl_uint num_devices,
                             const cl_device_id *device_list,
                             const char *options,
                             void(CL_CALLBACK *notify)(cl_program, void *),
                             void *user_data)
{
    cl_device_fp_config fp = 0;
    if (num_devices > 0 && device_list)
        clGetDeviceInfo(device_list[0], CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp,
                        &fp, NULL);
    pthread_mutex_lock(&seen_lock);
    for (size_t i = 0; i < n_seen; i++)
        if (seen[i].prog == program && !seen[i].built) {
            seen[i].built = 1;
            seen[i].fma = (fp & CL_FP_FMA) != 0;
            snprintf(seen[i].options, sizeof seen[i].options, "%s",
                     options ? options : "");
        }
    pthread_mutex_unlock(&seen_lock);
    return __real_clBuildProgram(program, num_devices, device_list, options,
                                 notify, user_data);
}

static void seen_clear(void)
{
    for (size_t i = 0; i < n_seen; i++)
        free(seen[i].src);
    memset(seen, 0, sizeof seen);
    n_seen = 0;
    seen_overflow = 0;
}

/* ---- the runs ------------------------------------------------------------ */

static attn_context *cpu_context(attn_path path, const char *kernel)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_options_init(&o);
    o.device = "cpu";
    o.cache_dir = ""; /* every program built from source */
    o.allow_fallback = 0;
    o.path = path;
    o.kernel = kernel;
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return NULL;
    if (attn_context_device(ctx, &info) != ATTN_OK ||
        info.kind != ATTN_DEVICE_CPU_OPENCL) {
        attn_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* The shape of the runs: seq_q rows in dtype, causal. */
static attn_sdpa_desc run_shape(int seq_q, attn_dtype dtype)
{
    attn_sdpa_desc d = {.batch = 1,
                        .heads_q = 2,
                        .heads_kv = 1,
                        .seq_q = seq_q,
                        .seq_kv = 40,
                        .head_dim = 32,
                        .head_dim_v = 32,
                        .dtype = dtype};
    d.mask.causal = 1;
    return d;
}

/* One attn_sdpa call of seq_q rows in dtype, checked against the oracle;
 * 0 when the context's kernel does not take the shape (not run). */
static int run_sdpa(attn_context *ctx, int seq_q, attn_dtype dtype,
                    const char *what)
{
    attn_sdpa_desc d = run_shape(seq_q, dtype);
    char name[32];
    sdpa_case c;
    if (attn_sdpa_kernel(ctx, &d, name, sizeof name) == ATTN_ERR_UNSUPPORTED)
        return 0;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 3, 1.0, 0.0, 0), 0);
    HARNESS_EXPECT(sdpa_case_check(ctx, &c, NULL, 1, NULL, what), what);
    sdpa_case_free(&c);
    return 1;
}

/* One forward and one backward call of seq_q rows in dtype: both must run
 * on the device. */
static void run_backward(attn_context *ctx, attn_dtype dtype, const char *what)
{
    attn_sdpa_desc d = run_shape(3, dtype);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    const size_t es = dtype == ATTN_F32 ? 4 : 2;
    sdpa_case c;
    float *lse;
    char *buf;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 5, 1.0, 0.0, 0), 0);
    lse = malloc(c.nlse * sizeof *lse);
    buf = calloc(c.no + c.nq + c.nk + c.nv, es);
    CU_ASSERT_FATAL(lse && buf);
    g.q = c.q;
    g.k = c.k;
    g.v = c.v;
    g.o = buf;
    g.lse = lse;
    g.d_o = c.v; /* any values: v holds more elements than o */
    g.dq = buf + c.no * es;
    g.dk = buf + (c.no + c.nq) * es;
    g.dv = buf + (c.no + c.nq + c.nk) * es;
    HARNESS_EXPECT(attn_sdpa(ctx, &d, c.q, c.k, c.v, buf, lse) == ATTN_OK,
                   what);
    HARNESS_EXPECT(attn_sdpa_backward(ctx, &d, &g) == ATTN_OK, what);
    free(buf);
    free(lse);
    sdpa_case_free(&c);
}

static void run_mha(attn_context *ctx)
{
    const mha_spec s = {.d_model = 16,
                        .heads_q = 2,
                        .heads_kv = 2,
                        .head_dim = 8,
                        .batch = 1,
                        .seq_q = 6,
                        .self = 1,
                        .with_bias = 1,
                        .posenc = ATTN_POSENC_SINUSOIDAL,
                        .causal = 1};
    mha_case c;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 4), 0);
    HARNESS_EXPECT(mha_case_check(ctx, &c, NULL, "the layer"), "the layer");
    mha_case_free(&c);
}

/* ---- the comparison --------------------------------------------------------
 */

typedef struct match {
    const seen_build *b;
    const char *tag; /* of the listed program it equals, or NULL */
} match;

static int match_one(const cl_program_desc *p, void *user)
{
    match *m = user;
    char *src = NULL;
    size_t len = 0;
    attn_err err = {{0}};
    int same;
    if (strcmp(p->options, m->b->options) != 0)
        return 0;
    if (attn_cl_load_sources(p->sources, p->n_sources, &src, &len, &err))
        return -1;
    same = len == m->b->len && memcmp(src, m->b->src, len) == 0;
    free(src);
    if (same)
        m->tag = p->tag;
    return same;
}

static int tag_seen(const cl_program_desc *p, void *user)
{
    const char **tags = user;
    int i = 0;
    while (tags[i] && strcmp(tags[i], p->tag) != 0)
        i++;
    if (!tags[i] && i < MAX_TAGS - 1)
        tags[i] = p->tag;
    return 0;
}

static void test_builds_are_listed(void)
{
    attn_context *unfused = cpu_context(ATTN_PATH_UNFUSED, NULL);
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    const char *listed[MAX_TAGS] = {NULL}, *built[MAX_TAGS] = {NULL};
    size_t n_listed = 0, n_built = 0, n_programs = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(unfused);
    CU_ASSERT_EQUAL_FATAL(attn_context_device(unfused, &info), ATTN_OK);
    seen_clear();
    /* Every kernel variant of the library's table, forced by name, in both
     * dtypes, on a shape every variant takes (3 rows: decode too), at
     * EXACT; a variant that declines it there (it runs only where the
     * precision permits its products: mma) at each other precision. */
    for (int i = 0; attn_kernel_name(i); i++) {
        static const char *const precisions[] = {"exact", "tf32", "3xtf32",
                                                 "bf16"};
        for (int p = 0; p < 4; p++) {
            attn_context *ctx;
            char what[64];
            int ran = 0;
            setenv("ATTN_PRECISION", precisions[p], 1);
            ctx = cpu_context(ATTN_PATH_AUTO, attn_kernel_name(i));
            CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
            for (int dt = 0; dt < 3; dt++) {
                snprintf(what, sizeof what, "%s %s %s", attn_kernel_name(i),
                         precisions[p],
                         dt == 2 ? "bf16"
                         : dt    ? "f16"
                                 : "f32");
                ran |= run_sdpa(ctx, 3, (attn_dtype)dt, what);
            }
            attn_context_destroy(ctx);
            unsetenv("ATTN_PRECISION"); /* read for the tolerance too */
            if (ran && p == 0)
                break;
        }
    }
    run_backward(unfused, ATTN_F32, "backward f32");
    run_backward(unfused, ATTN_F16, "backward f16");
    run_backward(unfused, ATTN_BF16, "backward bf16");
    {
        /* bwd_tiled's program, which AUTO takes on GPUs only */
        attn_context *tiled = cpu_context(ATTN_PATH_AUTO, "bwd_tiled");
        CU_ASSERT_PTR_NOT_NULL_FATAL(tiled);
        run_backward(tiled, ATTN_F32, "bwd_tiled f32");
        run_backward(tiled, ATTN_F16, "bwd_tiled f16");
        run_backward(tiled, ATTN_BF16, "bwd_tiled bf16");
        attn_context_destroy(tiled);
    }
    run_mha(unfused);
    attn_context_destroy(unfused);

    CU_ASSERT_FALSE(seen_overflow);
    for (size_t i = 0; i < n_seen; i++) {
        match m = {.b = &seen[i]};
        int k = 0;
        if (!seen[i].built)
            continue;
        n_programs++;
        CU_ASSERT_EQUAL(
            cl_programs_for_device(&info, seen[i].fma, match_one, &m), 1);
        HARNESS_EXPECT(m.tag != NULL, seen[i].options);
        if (!m.tag) {
            printf("\n  built but not listed: %zu bytes of source, options "
                   "\"%s\"\n",
                   seen[i].len, seen[i].options);
            continue;
        }
        while (built[k] && strcmp(built[k], m.tag) != 0)
            k++;
        if (!built[k] && k < MAX_TAGS - 1)
            built[k] = m.tag;
    }
    /* Every family of the list was built (the layer's program only where
     * the layer runs on the device, with CLBlast). */
    CU_ASSERT_EQUAL(cl_programs_for_device(&info, 1, tag_seen, listed), 0);
    while (listed[n_listed])
        n_listed++;
    while (built[n_built])
        n_built++;
    for (size_t i = 0; i < n_listed; i++) {
        size_t k = 0;
        while (built[k] && strcmp(built[k], listed[i]) != 0)
            k++;
        if (!built[k])
            printf("\n  listed, never built: %s", listed[i]);
    }
#ifdef ATTN_HAVE_CLBLAST
    CU_ASSERT_EQUAL(n_built, n_listed);
#else
    CU_ASSERT_EQUAL(n_built + 1, n_listed);
#endif
    CU_ASSERT(n_programs >= n_built);
    seen_clear();
}

int main(void)
{
    static const harness_test tests[] = {
        {"every program built is listed, every family built",
         test_builds_are_listed},
        {NULL, NULL}};
    attn_context *ctx;
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    unsetenv("ATTN_PLATFORM_DIR");
    unsetenv("ATTN_KERNEL");
    unsetenv("ATTN_PRECISION");
    if (!(ctx = cpu_context(ATTN_PATH_AUTO, NULL))) {
        printf("SKIP: program list: no OpenCL CPU device on this machine\n");
        return HARNESS_SKIP;
    }
    attn_context_destroy(ctx);
    return harness_main("program list", NULL, NULL, tests);
}
