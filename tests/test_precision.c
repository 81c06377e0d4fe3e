/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_precision: the precision option of attn.h (attn_precision).  The
 * option and ATTN_PRECISION reach the context (attn_sdpa_precision says
 * what was asked and what runs), a value outside the enum in the options
 * is refused, a kernel without a TF32 path runs EXACT and its results meet
 * the EXACT tolerance (a permission, not an obligation), on the native
 * backend and on the OpenCL CPU device when there is one.  The error terms
 * per product that tests/ref.h builds the tolerances of TF32 and 3XTF32
 * from (t = 2u + u^2 and 3u^2 + 4u^3 + u^4, u = 2^-11) are checked here
 * on the products themselves, with a rounding to TF32 of this file's own;
 * test_tf32 checks the whole TF32 bound on attention.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

static attn_status create(const char *device, attn_precision p,
                          attn_context **ctx)
{
    attn_options o = ATTN_OPTIONS_INIT;
    o.device = device;
    o.allow_fallback = 0;
    o.precision = p;
    *ctx = NULL;
    return attn_context_create(&o, ctx);
}

static void shape(attn_sdpa_desc *d)
{
    attn_sdpa_desc_init(d);
    d->batch = 1;
    d->heads_q = 4;
    d->heads_kv = 2;
    d->seq_q = 40;
    d->seq_kv = 70;
    d->head_dim = d->head_dim_v = 64;
    d->mask.causal = 1;
}

/* What a context on device asked with p (and ATTN_PRECISION as set)
 * reports; -1 when it could not be asked. */
static int asked_of(const char *device, attn_precision p, int *runs)
{
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    attn_precision asked = (attn_precision)-1, r = (attn_precision)-1;
    shape(&d);
    if (create(device, p, &ctx) != ATTN_OK)
        return -1;
    if (attn_sdpa_precision(ctx, &d, &asked, &r) != ATTN_OK)
        asked = (attn_precision)-1;
    *runs = (int)r;
    attn_context_destroy(ctx);
    return (int)asked;
}

static void test_names(void)
{
    CU_ASSERT_STRING_EQUAL(attn_precision_name(ATTN_PRECISION_EXACT), "exact");
    CU_ASSERT_STRING_EQUAL(attn_precision_name(ATTN_PRECISION_TF32), "tf32");
    CU_ASSERT_STRING_EQUAL(attn_precision_name(ATTN_PRECISION_3XTF32),
                           "3xtf32");
    CU_ASSERT_STRING_EQUAL(attn_precision_name(ATTN_PRECISION_BF16), "bf16");
    CU_ASSERT_EQUAL(ATTN_PRECISION_BF16, 3); /* appended: the ABI */
    CU_ASSERT_STRING_EQUAL(attn_precision_name((attn_precision)4), "unknown");
    CU_ASSERT_STRING_EQUAL(attn_precision_name((attn_precision)-1), "unknown");
    CU_ASSERT_EQUAL(ATTN_PRECISION_EXACT, 0);
}

/* options.precision outside the enum: ATTN_ERR_INVALID_ARGUMENT, naming
 * the member, whatever ATTN_PRECISION says. */
static void test_bad_option(void)
{
    static const int bad[] = {4, 5, -1, 0x7fffffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        attn_context *ctx = NULL;
        setenv("ATTN_PRECISION", "tf32", 1);
        CU_ASSERT_EQUAL(create("native", (attn_precision)bad[i], &ctx),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_PTR_NULL(ctx);
        CU_ASSERT_PTR_NOT_NULL(strstr(attn_last_error(), "options.precision"));
        unsetenv("ATTN_PRECISION");
    }
}

/* The option, ATTN_PRECISION where the option is left at EXACT, and the
 * native backend running EXACT whatever is asked but BF16, which it runs
 * where the CPU has AVX512_BF16 (test_bf16 says where that must be). */
static void test_asked_native(void)
{
    static const struct {
        const char *env; /* NULL: unset */
        attn_precision opt, asked;
    } rows[] = {
        {NULL, ATTN_PRECISION_EXACT, ATTN_PRECISION_EXACT},
        {NULL, ATTN_PRECISION_TF32, ATTN_PRECISION_TF32},
        {NULL, ATTN_PRECISION_3XTF32, ATTN_PRECISION_3XTF32},
        {"tf32", ATTN_PRECISION_EXACT, ATTN_PRECISION_TF32},
        {"3XTF32", ATTN_PRECISION_EXACT, ATTN_PRECISION_3XTF32},
        {"Exact", ATTN_PRECISION_EXACT, ATTN_PRECISION_EXACT},
        {"", ATTN_PRECISION_EXACT, ATTN_PRECISION_EXACT},
        {"exact", ATTN_PRECISION_TF32, ATTN_PRECISION_TF32},
        {"tf32", ATTN_PRECISION_3XTF32, ATTN_PRECISION_3XTF32},
        {"fp8", ATTN_PRECISION_EXACT, ATTN_PRECISION_EXACT},
        {NULL, ATTN_PRECISION_BF16, ATTN_PRECISION_BF16},
        {"BF16", ATTN_PRECISION_EXACT, ATTN_PRECISION_BF16},
        {"bf16", ATTN_PRECISION_TF32, ATTN_PRECISION_TF32},
        {"tf32", ATTN_PRECISION_BF16, ATTN_PRECISION_BF16},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char what[96];
        int runs = -2, asked;
        snprintf(what, sizeof what, "ATTN_PRECISION=%s, options %s",
                 rows[i].env ? rows[i].env : "(unset)",
                 attn_precision_name(rows[i].opt));
        if (rows[i].env)
            setenv("ATTN_PRECISION", rows[i].env, 1);
        else
            unsetenv("ATTN_PRECISION");
        asked = asked_of("native", rows[i].opt, &runs);
        HARNESS_EXPECT(asked == (int)rows[i].asked, what);
        HARNESS_EXPECT(runs == ATTN_PRECISION_EXACT ||
                           (rows[i].asked == ATTN_PRECISION_BF16 &&
                            runs == ATTN_PRECISION_BF16),
                       what);
    }
    unsetenv("ATTN_PRECISION");
}

/* attn_sdpa_precision checks what it is given and writes nothing then. */
static void test_query_errors(void)
{
    attn_context *ctx = NULL;
    attn_sdpa_desc d, bad;
    attn_precision a = (attn_precision)7, r = (attn_precision)7;
    CU_ASSERT_EQUAL_FATAL(create("native", ATTN_PRECISION_TF32, &ctx), ATTN_OK);
    shape(&d);
    bad = d;
    bad.heads_kv = 3;
    CU_ASSERT_EQUAL(attn_sdpa_precision(NULL, &d, &a, &r),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, &a, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, NULL, &a, &r),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &bad, &a, &r),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(attn_context_last_error(ctx), "attn_sdpa_precision"));
    CU_ASSERT_EQUAL(a, 7);
    CU_ASSERT_EQUAL(r, 7);
    /* asked may be NULL */
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &d, NULL, &r), ATTN_OK);
    CU_ASSERT_EQUAL(r, ATTN_PRECISION_EXACT);
    attn_context_destroy(ctx);
}

/* A context asked for TF32 or 3XTF32 whose kernels run EXACT gives results
 * within the EXACT tolerance, F32 and F16, on device (NULL: native). */
static void check_results(const char *device)
{
    static const attn_dtype types[] = {ATTN_F32, ATTN_F16};
    for (int p = ATTN_PRECISION_TF32; p <= ATTN_PRECISION_3XTF32; p++)
        for (size_t t = 0; t < 2; t++) {
            attn_context *ctx = NULL;
            attn_sdpa_desc d;
            attn_precision a, r = (attn_precision)-1;
            sdpa_case c;
            ref_sdpa_result ref;
            char what[128];
            snprintf(what, sizeof what, "%s on %s, %s",
                     attn_precision_name((attn_precision)p),
                     device ? device : "native", types[t] ? "f16" : "f32");
            CU_ASSERT_EQUAL_FATAL(
                create(device ? device : "native", (attn_precision)p, &ctx),
                ATTN_OK);
            shape(&d);
            d.dtype = types[t];
            CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 31 + t, 1.5, 0.0, 0),
                                  0);
            CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &c.d, &a, &r), ATTN_OK);
            HARNESS_EXPECT((int)a == p, what);
            /* no kernel of this release has a TF32 path */
            HARNESS_EXPECT(r == ATTN_PRECISION_EXACT, what);
            CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
            HARNESS_EXPECT(sdpa_case_check(ctx, &c, &ref, 1, NULL, what), what);
            ref_sdpa_free(&ref);
            sdpa_case_free(&c);
            attn_context_destroy(ctx);
        }
}

static void test_results_native(void)
{
    check_results(NULL);
}

static void test_results_opencl(void)
{
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    if (create("cpu", ATTN_PRECISION_EXACT, &ctx) != ATTN_OK ||
        attn_context_device(ctx, &info) != ATTN_OK ||
        info.kind == ATTN_DEVICE_NATIVE) {
        printf("\n  SKIP: no OpenCL CPU device");
        attn_context_destroy(ctx);
        return;
    }
    attn_context_destroy(ctx);
    check_results("cpu");
}

/* ---- sums over many keys -------------------------------------------------
 * attn.h's bound adds the rounding of the float sums over a row's n
 * visible keys, up to a relative n 2^-24, whose worst case is one key
 * dominating and very many far below it: one query row against 2^16 keys,
 * key 0 at score 8 (v 0) and the others at -9.25 (v 1; weights of about
 * 2^-25 each).  In exact arithmetic l = 1 + (n - 1) e^-17.25, lse = 8 +
 * log l and O = (n - 1) e^-17.25 / l; each path (native; on the OpenCL CPU
 * device every variant forced by name that takes the shape) stays within
 * e + n 2^-24 for lse and (e + n 2^-24) V for O, e a few float ulps. */
static void long_row(const char *device, const char *kernel)
{
    enum { N = 1 << 16, D = 32 };
    attn_options o = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    float *q = calloc(D, sizeof *q), *k = calloc((size_t)N * D, sizeof *k),
          *v = calloc((size_t)N * D, sizeof *v), out[D], lse;
    const double w = (N - 1) * exp(-17.25), l = 1.0 + w,
                 want_lse = 8.0 + log(l), want_o = w / l,
                 slack = N * ldexp(1.0, -24) + 1e-6;
    char what[96];
    attn_status st;
    snprintf(what, sizeof what, "2^16 keys, one dominant: %s%s%s", device,
             kernel ? ", " : "", kernel ? kernel : "");
    CU_ASSERT_FATAL(q && k && v);
    q[0] = 1.0f;
    for (size_t j = 0; j < N; j++) {
        k[j * D] = j ? -9.25f : 8.0f;
        for (size_t c = 0; c < D; c++)
            v[j * D + c] = j ? 1.0f : 0.0f;
    }
    attn_sdpa_desc_init(&d);
    d.batch = d.heads_q = d.heads_kv = d.seq_q = 1;
    d.seq_kv = N;
    d.head_dim = d.head_dim_v = D;
    d.scale = 1.0f;
    o.device = device;
    o.kernel = kernel;
    o.allow_fallback = 0;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    st = attn_sdpa(ctx, &d, q, k, v, out, &lse);
    if (st == ATTN_ERR_UNSUPPORTED && kernel) {
        /* the forced variant does not take the shape */
    } else {
        int ok = st == ATTN_OK && fabs(lse - want_lse) <= slack;
        for (int c = 0; c < D; c++)
            ok &= fabs(out[c] - want_o) <= slack;
        if (!ok)
            printf("\n  %s: %s, lse %.9g (want %.9g), O %.9g (want %.9g), "
                   "slack %.3g\n",
                   what, attn_status_string(st), (double)lse, want_lse,
                   (double)out[0], want_o, slack);
        HARNESS_EXPECT(ok, what);
    }
    attn_context_destroy(ctx);
    free(q), free(k), free(v);
}

static void test_long_row(void)
{
    static const char *const kernels[] = {"unfused", "fused",   "decode",
                                          "tiled",   "splitkv", NULL};
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    long_row("native", NULL);
    if (create("cpu", ATTN_PRECISION_EXACT, &ctx) != ATTN_OK ||
        attn_context_device(ctx, &info) != ATTN_OK ||
        info.kind == ATTN_DEVICE_NATIVE) {
        printf("\n  SKIP: no OpenCL CPU device");
        attn_context_destroy(ctx);
        return;
    }
    attn_context_destroy(ctx);
    for (int i = 0; kernels[i]; i++)
        long_row("cpu", kernels[i]);
}

/* ---- the error per product behind the tolerances -------------------------
 * TF32 rounding of this file's own, by scaling: to nearest, ties to even,
 * as the library rounds (test_tf32 compares the two). */
static double tf32(double x)
{
    int e;
    double m;
    if (x == 0.0 || !isfinite(x))
        return x;
    m = frexp(x, &e); /* x = m 2^e, 0.5 <= |m| < 1: 11 significant bits */
    return ldexp(nearbyint(ldexp(m, 11)), e - 11);
}

static void test_product_errors(void)
{
    const double u = REF_TF32_U;
    const double t1 = ref_precision_t(ATTN_PRECISION_TF32);
    const double t3 = ref_precision_t(ATTN_PRECISION_3XTF32);
    double worst1 = 0.0, worst3 = 0.0;
    ref_rng r;
    CU_ASSERT_DOUBLE_EQUAL(t1, 2 * u + u * u, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(t3, 3 * u * u + 4 * u * u * u + u * u * u * u, 0.0);
    CU_ASSERT_DOUBLE_EQUAL(ref_precision_t(ATTN_PRECISION_EXACT), 0.0, 0.0);
    ref_rng_seed(&r, 2024);
    for (int i = 0; i < 200000; i++) {
        /* floats over a wide range of exponents and every mantissa */
        float a = (float)ldexp(ref_rng_uniform(&r, -1.0, 1.0),
                               ref_rng_int(&r, -40, 40));
        float b = (float)ldexp(ref_rng_uniform(&r, -1.0, 1.0),
                               ref_rng_int(&r, -40, 40));
        double ab = (double)a * (double)b; /* exact: 48 bits */
        double ah = tf32(a), bh = tf32(b);
        double al = tf32((double)a - ah), bl = tf32((double)b - bh);
        /* TF32 x TF32 products are exact in float (22 bits) and double */
        double e1 = fabs(ab - ah * bh),
               e3 = fabs(ab - (ah * bh + ah * bl + al * bh));
        if (ab == 0.0)
            continue;
        /* a - a_hi is exact in float: 13 bits at most */
        CU_ASSERT((double)(float)((double)a - ah) == (double)a - ah);
        worst1 = e1 / fabs(ab) > worst1 ? e1 / fabs(ab) : worst1;
        worst3 = e3 / fabs(ab) > worst3 ? e3 / fabs(ab) : worst3;
    }
    printf("\n  worst relative error per product: TF32 %.3g (t %.3g), "
           "3XTF32 %.3g (t %.3g)",
           worst1, t1, worst3, t3);
    CU_ASSERT(worst1 <= t1);
    CU_ASSERT(worst3 <= t3);
    /* and the terms are not vacuous: rounding reaches half of each */
    CU_ASSERT(worst1 > 0.5 * t1);
    CU_ASSERT(worst3 > 0.1 * t3);
}

int main(void)
{
    static const harness_test tests[] = {
        {"names", test_names},
        {"a precision outside the enum", test_bad_option},
        {"asked and run, native", test_asked_native},
        {"attn_sdpa_precision's arguments", test_query_errors},
        {"results at the precision run, native", test_results_native},
        {"results at the precision run, OpenCL CPU device",
         test_results_opencl},
        {"the error of one product", test_product_errors},
        {"sums over 2^16 keys, one dominant", test_long_row},
        {NULL, NULL}};
    unsetenv("ATTN_PRECISION");
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL");
    return harness_main("precision", NULL, NULL, tests);
}
