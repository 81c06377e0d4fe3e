/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every kernel variant of the OpenCL backend, forced by name, over the
 * shapes the GPU-shaped variants are built for: head sizes 32, 64, 96 and
 * 128 (head_dim_v equal or not), F32, F16 and BF16, every mask (causal and
 * window aligned bottom-right and top-left, kv_len, every bias kind with
 * -inf entries, broadcast shapes and the key bias among them, the boolean
 * mask keep), grouped-query heads, the additive score, lse, and sequences
 * that end inside a tile, on the OpenCL CPU device, against the
 * double-precision oracle.  A variant that does not take a shape must
 * refuse it (ATTN_ERR_UNSUPPORTED, nothing written, attn_sdpa_kernel
 * agreeing); each variant must run at least an eighth of the cases of each
 * storage type it takes (xmx takes F16, and BF16 at bf16; a variant without
 * mask_shapes must decline the top-left causal mask and window, the bias
 * kinds KEY and BROADCAST and keep, and runs an eighth of the others).
 * Every case runs at each precision a context may ask (exact, tf32, 3xtf32,
 * bf16), checked at the tolerance of the precision the kernel says it ran
 * at.  The list of variants is the library's (attn_kernel_name), so a new
 * variant is checked without changing this suite.
 *
 * ATTN_TEST_VARIANTS, ATTN_TEST_PRECISIONS and ATTN_TEST_HEAD_DIMS (comma
 * lists) narrow it to those variants, precisions and head sizes: the runs
 * with a GPU's local memory (ATTN_TEST_LOCAL_MEM, a test build's) take the
 * variants whose builds depend on it, at exact, at the head sizes whose
 * tiles do not fit that memory side by side.
 *
 * Without an OpenCL CPU device the suite prints SKIP and exits 77.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "opencl/variant.h"
#include "harness.h"
#include "ref.h"

/* Mask and score features of one case. */
typedef struct feature {
    const char *name;
    int causal, window, kv_len, additive, gqa;
    attn_bias_kind bias;
    /* causal_align TOP_LEFT for the head sizes and dtypes with
     * (dims + dtype) % 2 == top_left - 1 (0: never), so that the case
     * count stays and both alignments meet every sequence shape */
    int top_left;
    /* the bias kind of the other half ((dims + dtype) odd; NONE: bias),
     * and for BROADCAST the dimensions it spans (1 batch, 2 heads, 4
     * queries) */
    attn_bias_kind bias_odd;
    int spans;
    /* a boolean mask keep on the even half, spanning these dimensions (as
     * spans; 0: none) */
    int keep_spans;
} feature;

static const feature FEATURES[] = {
    {"plain", 0, 0, 0, 0, 0, ATTN_BIAS_NONE, 0, ATTN_BIAS_NONE, 0, 1},
    {"causal", 1, 0, 0, 0, 0, ATTN_BIAS_NONE, 0, ATTN_BIAS_NONE, 0, 0},
    {"causal window kv_len", 1, 17, 1, 0, 1, ATTN_BIAS_NONE, 1, ATTN_BIAS_NONE,
     0, 0},
    {"shared bias", 0, 0, 0, 0, 1, ATTN_BIAS_SHARED, 0, ATTN_BIAS_BROADCAST, 2,
     7},
    {"per-head bias causal", 1, 0, 0, 0, 0, ATTN_BIAS_PER_HEAD, 2,
     ATTN_BIAS_BROADCAST, 5, 0},
    {"full bias kv_len", 0, 0, 1, 0, 1, ATTN_BIAS_FULL, 0, ATTN_BIAS_KEY, 0, 0},
    {"additive causal", 1, 0, 0, 1, 1, ATTN_BIAS_NONE, 1, ATTN_BIAS_NONE, 0, 0},
};

/* (seq_q, seq_kv): a few rows against a cache, square, cross both ways;
 * none a multiple of a tile. */
static const int SEQS[][2] = {{3, 77}, {37, 37}, {70, 131}, {131, 45}};
static const int DIMS[][2] = {{32, 32}, {64, 64}, {96, 64}, {128, 128}};

/* novel: the cases with a mask feature (a top-left causal mask or window,
 * the bias kinds KEY and BROADCAST, keep) that a variant without
 * mask_shapes (src/opencl/variant.h) must decline */
typedef struct tally {
    unsigned long cases, taken, declined, novel;
    /* per storage type: cases, those run, those it must decline (novel) */
    unsigned long dt_cases[3], dt_taken[3], dt_novel[3];
    int failed;
} tally;

/* The precisions a context may ask (ATTN_PRECISION): a variant that runs
 * only where the precision permits its products (mma, amdmm, xmx) is
 * checked at each, at the tolerance of the precision it says it ran at
 * (cases.c). */
static const char *const PRECISIONS[] = {"exact", "tf32", "3xtf32", "bf16"};

/* Whether the comma list in environment variable var (unset: every one)
 * names k. */
static int selected(const char *var, const char *k)
{
    const char *list = getenv(var);
    const size_t n = strlen(k);
    if (!list || !*list)
        return 1;
    for (const char *p = list; *p;) {
        const size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, k, n))
            return 1;
        p += len + (p[len] == ',');
    }
    return 0;
}

static void run_variant(const char *kernel, const char *precision, tally *t)
{
    attn_options o;
    attn_context *ctx = NULL;
    unsigned long taken0, declined0, taken1, declined1;
    uint64_t seed = 1000;
    attn_options_init(&o);
    o.device = "cpu";
    o.allow_fallback = 0;
    o.kernel = kernel;
    setenv("ATTN_PRECISION", precision, 1);
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
    /* harness_declined accepts the refusals of this kernel only. */
    setenv("ATTN_TEST_KERNEL", kernel, 1);
    const int vi = attn_cl_variant_find(kernel);
    const int mask_shapes = vi >= 0 && attn_cl_variants[vi]->mask_shapes;
    harness_kernel_counts(&taken0, &declined0);
    for (size_t di = 0; di < sizeof DIMS / sizeof DIMS[0]; di++) {
        char hd[16];
        snprintf(hd, sizeof hd, "%d", DIMS[di][0]);
        if (!selected("ATTN_TEST_HEAD_DIMS", hd))
            continue;
        for (int dt = 0; dt < 3; dt++)
            for (size_t fi = 0; fi < sizeof FEATURES / sizeof FEATURES[0];
                 fi++) {
                const feature *f = &FEATURES[fi];
                const int *sq = SEQS[(di + fi + (size_t)dt) %
                                     (sizeof SEQS / sizeof SEQS[0])];
                const int top_left = f->top_left && (int)((di + (size_t)dt) %
                                                          2) == f->top_left - 1;
                attn_sdpa_desc d;
                sdpa_case c;
                char what[160];
                attn_sdpa_desc_init(&d);
                d.batch = 2;
                d.heads_q = 4;
                d.heads_kv = f->gqa ? 2 : 4;
                d.seq_q = sq[0];
                d.seq_kv = sq[1];
                d.head_dim = DIMS[di][0];
                d.head_dim_v = DIMS[di][1];
                d.dtype = (attn_dtype)dt; /* F32, F16, BF16 */
                d.score = f->additive ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
                d.scale = f->additive ? 0.0f : 0.3f;
                d.mask.causal = f->causal;
                d.mask.window = f->window;
                d.mask.bias_kind = f->bias;
                if (f->keep_spans && (di + (size_t)dt) % 2 == 0) {
                    d.keep_shape[0] = f->keep_spans & 1 ? d.batch : 1;
                    d.keep_shape[1] = f->keep_spans & 2 ? d.heads_q : 1;
                    d.keep_shape[2] = f->keep_spans & 4 ? d.seq_q : 1;
                }
                if (f->bias_odd != ATTN_BIAS_NONE && (di + (size_t)dt) % 2) {
                    d.mask.bias_kind = f->bias_odd;
                    d.bias_shape[0] = f->spans & 1 ? d.batch : 1;
                    d.bias_shape[1] = f->spans & 2 ? d.heads_q : 1;
                    d.bias_shape[2] = f->spans & 4 ? d.seq_q : 1;
                }
                d.causal_align =
                    top_left ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_BOTTOM_RIGHT;
                snprintf(what, sizeof what,
                         "%s (%s): d %d/%d %s %s%s bias kind %d%s, seq %d x "
                         "%d",
                         kernel, precision, d.head_dim, d.head_dim_v,
                         dt == 2 ? "BF16"
                         : dt    ? "F16"
                                 : "F32",
                         f->name, top_left ? " top-left" : "",
                         (int)d.mask.bias_kind, d.keep_shape[0] ? " keep" : "",
                         d.seq_q, d.seq_kv);
                CU_ASSERT_EQUAL_FATAL(
                    sdpa_case_init(&c, &d, seed++, 1.5, 0.1, f->kv_len), 0);
                const int novel =
                    (top_left && (d.mask.causal || d.mask.window > 0)) ||
                    d.mask.bias_kind > ATTN_BIAS_FULL || d.keep_shape[0];
                unsigned long tk0, dc0, tk1, dc1;
                t->cases++;
                t->dt_cases[dt]++;
                harness_kernel_counts(&tk0, &dc0);
                if (!sdpa_case_check(ctx, &c, NULL, 1, NULL, what))
                    t->failed = 1;
                harness_kernel_counts(&tk1, &dc1);
                t->dt_taken[dt] += tk1 - tk0;
                if (novel && !mask_shapes) {
                    t->novel++;
                    t->dt_novel[dt]++;
                    if (tk1 != tk0) {
                        printf("\nFAIL %s: ran without mask_shapes\n", what);
                        t->failed = 1;
                    }
                }
                sdpa_case_free(&c);
            }
    }
    harness_kernel_counts(&taken1, &declined1);
    t->taken += taken1 - taken0;
    t->declined += declined1 - declined0;
    unsetenv("ATTN_TEST_KERNEL");
    unsetenv("ATTN_PRECISION");
    attn_context_destroy(ctx);
}

static void test_every_variant(void)
{
    int ran = 0;
    for (int i = 0; attn_kernel_name(i); i++) {
        const char *k = attn_kernel_name(i);
        tally t = {0, 0, 0, 0, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, 0};
        unsigned long typed = 0; /* cases of the storage types it takes */
        if (!selected("ATTN_TEST_VARIANTS", k))
            continue;
        for (size_t p = 0; p < sizeof PRECISIONS / sizeof PRECISIONS[0]; p++)
            if (selected("ATTN_TEST_PRECISIONS", PRECISIONS[p])) {
                run_variant(k, PRECISIONS[p], &t);
                ran++;
            }
        printf("\n  %-8s %lu cases: %lu run and checked, %lu declined", k,
               t.cases, t.taken, t.declined);
        HARNESS_EXPECT(!t.failed, k);
        HARNESS_EXPECT(t.taken + t.declined == t.cases, k);
        for (int dt = 0; dt < 3; dt++)
            typed += t.dt_taken[dt] ? t.dt_cases[dt] - t.dt_novel[dt] : 0;
        HARNESS_EXPECT(typed > 0 && t.taken * 8 >= typed, k);
    }
    HARNESS_EXPECT(ran > 0, "ATTN_TEST_VARIANTS / ATTN_TEST_PRECISIONS name "
                            "no variant or precision");
}

int main(void)
{
    static const harness_test tests[] = {
        {"each variant forced, every feature and head size",
         test_every_variant},
        {NULL, NULL}};
    attn_options o;
    attn_context *ctx = NULL;
    unsetenv("ATTN_KERNEL");
    unsetenv("ATTN_TEST_KERNEL");
    unsetenv("ATTN_PRECISION");
    attn_options_init(&o);
    o.device = "cpu";
    o.allow_fallback = 0;
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        printf("SKIP: kernel variants: no OpenCL CPU device (%s)\n",
               attn_last_error());
        return HARNESS_SKIP;
    }
    attn_context_destroy(ctx);
    return harness_main("variants", NULL, NULL, tests);
}
