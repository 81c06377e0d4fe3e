/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_hostile: NaN and infinity in the inputs of attn_sdpa and
 * attn_mha_forward follow the rules documented in attn.h ("Non-finite
 * inputs").  Each case poisons a few elements of an otherwise random
 * problem and checks every output element: the rows (or, for V, the
 * columns) the rule names hold NaN, +-inf or the fully-hidden values, and
 * everything else equals the double-precision oracle computed without the
 * poison.  Every case runs on F32 and F16, with no mask, causal, kv_len,
 * a -inf bias column, a sliding window and fully hidden batch items, and
 * on shapes that take each OpenCL kernel (seq_q <= 4: the decode kernel
 * under path AUTO).  Runs on the context harness_context() gives.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

static attn_context *ctx;

/* ---- expectations ------------------------------------------------------- */

/* What one output element (or one lse) must be. */
enum {
    X_REF = 0, /* the oracle's value, within the tolerances of ref.h */
    X_NAN,     /* NaN */
    X_PINF,    /* +inf */
    X_NINF,    /* -inf */
    X_NONFIN,  /* NaN or +-inf */
    X_ZERO     /* exactly 0 (O of a row that sees no key) */
};

typedef struct expect {
    size_t rows;
    int dv;
    unsigned char *o; /* [rows * dv] */
    unsigned char *l; /* [rows] */
} expect;

static int expect_init(expect *x, const sdpa_case *c)
{
    x->rows = c->nlse;
    x->dv = c->d.head_dim_v;
    x->o = calloc(c->no ? c->no : 1, 1);
    x->l = calloc(x->rows ? x->rows : 1, 1);
    return x->o && x->l ? 0 : -1;
}

static void expect_free(expect *x)
{
    free(x->o);
    free(x->l);
    memset(x, 0, sizeof *x);
}

/* The whole row NaN (O and lse). */
static void expect_nan_row(expect *x, size_t row)
{
    memset(x->o + row * (size_t)x->dv, X_NAN, (size_t)x->dv);
    x->l[row] = X_NAN;
}

/* The row of a query that sees no key: O = 0, lse = -inf. */
static void expect_hidden_row(expect *x, size_t row)
{
    memset(x->o + row * (size_t)x->dv, X_ZERO, (size_t)x->dv);
    x->l[row] = X_NINF;
}

/* Folds a non-finite V element reaching O[row][col]: NaN wins, opposite
 * infinities make NaN. */
static void expect_v(expect *x, size_t row, int col, unsigned char what)
{
    unsigned char *e = &x->o[row * (size_t)x->dv + (size_t)col];
    if (*e == X_NAN || what == X_NAN)
        *e = X_NAN;
    else if (*e == X_REF)
        *e = what;
    else if (*e != what)
        *e = *e == X_NONFIN || what == X_NONFIN ? X_NONFIN : X_NAN;
}

/* ---- the problem -------------------------------------------------------- */

static size_t row_of(const attn_sdpa_desc *d, int b, int h, int i)
{
    return ((size_t)b * (size_t)d->heads_q + (size_t)h) * (size_t)d->seq_q +
           (size_t)i;
}

static size_t k_at(const attn_sdpa_desc *d, int b, int g, int j, int c)
{
    return (((size_t)b * (size_t)d->heads_kv + (size_t)g) * (size_t)d->seq_kv +
            (size_t)j) *
               (size_t)d->head_dim +
           (size_t)c;
}

static size_t v_at(const attn_sdpa_desc *d, int b, int g, int j, int c)
{
    return (((size_t)b * (size_t)d->heads_kv + (size_t)g) * (size_t)d->seq_kv +
            (size_t)j) *
               (size_t)d->head_dim_v +
           (size_t)c;
}

static size_t q_at(const attn_sdpa_desc *d, size_t row, int c)
{
    return row * (size_t)d->head_dim + (size_t)c;
}

static size_t bias_index(const attn_sdpa_desc *d, int b, int h, int i, int j)
{
    size_t sq = (size_t)d->seq_q, skv = (size_t)d->seq_kv;
    switch (d->mask.bias_kind) {
    case ATTN_BIAS_SHARED:
        return (size_t)i * skv + (size_t)j;
    case ATTN_BIAS_PER_HEAD:
        return ((size_t)h * sq + (size_t)i) * skv + (size_t)j;
    default:
        return (((size_t)b * (size_t)d->heads_q + (size_t)h) * sq + (size_t)i) *
                   skv +
               (size_t)j;
    }
}

/* Element e of a q, k or v tensor of the case's dtype, as a double. */
static double get(const sdpa_case *c, const void *t, size_t e)
{
    return c->d.dtype == ATTN_F16
               ? (double)ref_f16_to_f32(((const uint16_t *)t)[e])
               : (double)((const float *)t)[e];
}

static void set(const sdpa_case *c, void *t, size_t e, double x)
{
    if (c->d.dtype == ATTN_F16)
        ((uint16_t *)t)[e] = ref_f32_to_f16((float)x);
    else
        ((float *)t)[e] = (float)x;
}

/* Key j is hidden from query (b, h, i) by causal, window, kv_len or a -inf
 * bias (DESIGN.md), before any poisoning. */
static int sees(const sdpa_case *c, int b, int h, int i, int j)
{
    const attn_sdpa_desc *d = &c->d;
    long off = (d->causal_align == ATTN_CAUSAL_TOP_LEFT
                    ? 0
                    : (long)d->seq_kv - (long)d->seq_q) +
               (long)d->causal_offset;
    if (d->mask.causal && (long)j > (long)i + off)
        return 0;
    if (d->mask.window > 0 && (long)j < (long)i + off - d->mask.window + 1)
        return 0;
    if (d->mask.kv_len && j >= d->mask.kv_len[b])
        return 0;
    if (d->mask.bias_kind != ATTN_BIAS_NONE &&
        d->mask.bias[bias_index(d, b, h, i, j)] == -INFINITY)
        return 0;
    return 1;
}

static int sees_any(const sdpa_case *c, int b, int h, int i)
{
    for (int j = 0; j < c->d.seq_kv; j++)
        if (sees(c, b, h, i, j))
            return 1;
    return 0;
}

/* The oracle with key j additionally hidden from the rows where
 * hide[row * seq_kv + j] is set: the problem without a key that a -inf
 * score removes.  A FULL bias carries the extra -inf entries. */
static int ref_hiding(const sdpa_case *c, const unsigned char *hide,
                      ref_sdpa_result *r)
{
    const attn_sdpa_desc *d = &c->d;
    size_t rows = c->nlse, skv = (size_t)d->seq_kv;
    float *bias = malloc(rows * skv * sizeof *bias);
    if (!bias)
        return -1;
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < d->seq_q; i++)
                for (int j = 0; j < d->seq_kv; j++) {
                    size_t row = row_of(d, b, h, i);
                    float x = d->mask.bias_kind != ATTN_BIAS_NONE
                                  ? d->mask.bias[bias_index(d, b, h, i, j)]
                                  : 0.0f;
                    bias[row * skv + (size_t)j] =
                        hide[row * skv + (size_t)j] ? -INFINITY : x;
                }
    attn_sdpa_desc d2 = *d;
    d2.mask.bias = bias;
    d2.mask.bias_kind = ATTN_BIAS_FULL;
    int rc = ref_sdpa(&d2, c->q, c->k, c->v, r);
    free(bias);
    return rc;
}

/* ---- the check ---------------------------------------------------------- */

#define GUARD 16

static int expect_holds(unsigned char code, double got, double want, double tol,
                        int hidden)
{
    switch (code) {
    case X_NAN:
        return isnan(got);
    case X_PINF:
        return got == INFINITY;
    case X_NINF:
        return got == -INFINITY;
    case X_NONFIN:
        return !isfinite(got);
    case X_ZERO:
        return got == 0.0;
    default:
        if (hidden) /* the oracle's fully hidden row: exact */
            return want == -INFINITY ? got == -INFINITY : got == 0.0;
        if (isnan(got) || isnan(want) || isinf(got) || isinf(want))
            return got == want;
        return fabs(got - want) <= tol;
    }
}

static const char *code_name(unsigned char code)
{
    static const char *const names[] = {"the oracle", "NaN",        "+inf",
                                        "-inf",       "non-finite", "0"};
    return code < 6 ? names[code] : "?";
}

/* Runs attn_sdpa on c (lse on or off) and checks every element against x
 * and the oracle r.  Also checks the guards around o and lse. */
static int run_check(const sdpa_case *c, const ref_sdpa_result *r,
                     const expect *x, int with_lse, const char *what)
{
    const attn_sdpa_desc *d = &c->d;
    const int f16 = d->dtype == ATTN_F16;
    const size_t es = f16 ? sizeof(uint16_t) : sizeof(float);
    unsigned char *ob = malloc((c->no + 2 * GUARD) * es);
    float *lb = malloc((c->nlse + 2 * GUARD) * sizeof(float));
    int ok = 1;
    if (!ob || !lb) {
        printf("\nFAIL %s: out of memory in the test\n", what);
        free(ob);
        free(lb);
        return 0;
    }
    memset(ob, 0x5a, (c->no + 2 * GUARD) * es);
    memset(lb, 0x5a, (c->nlse + 2 * GUARD) * sizeof(float));
    void *o = ob + GUARD * es;
    float *lse = lb + GUARD;
    attn_status st =
        attn_sdpa(ctx, d, c->q, c->k, c->v, o, with_lse ? lse : NULL);
    if (st != ATTN_OK && harness_declined(ctx, d, st, what)) {
        /* A forced kernel that does not take the shape: nothing written. */
        const unsigned char *lbytes = (const unsigned char *)lb;
        for (size_t e = 0; e < (c->no + 2 * GUARD) * es; e++)
            ok &= ob[e] == 0x5a;
        for (size_t e = 0; e < (c->nlse + 2 * GUARD) * sizeof(float); e++)
            ok &= lbytes[e] == 0x5a;
        if (!ok)
            printf("\nFAIL %s: a declined call wrote its outputs\n", what);
        free(ob);
        free(lb);
        return ok;
    }
    if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_sdpa returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        free(ob);
        free(lb);
        return 0;
    }
    harness_taken();
    for (size_t e = 0; e < GUARD * es; e++)
        if (ob[e] != 0x5a || ob[(GUARD + c->no) * es + e] != 0x5a)
            ok = 0;
    const unsigned char *lbytes = (const unsigned char *)lb;
    for (size_t e = 0; e < GUARD * sizeof(float); e++)
        if (lbytes[e] != 0x5a ||
            lbytes[(GUARD + c->nlse) * sizeof(float) + e] != 0x5a ||
            (!with_lse && lbytes[GUARD * sizeof(float) + e] != 0x5a))
            ok = 0;
    if (!ok)
        printf("\nFAIL %s: attn_sdpa wrote outside o / lse\n", what);

    size_t bad = 0, first = 0;
    double fgot = 0, fwant = 0;
    unsigned char fcode = 0;
    int flse = 0;
    const size_t dv = (size_t)d->head_dim_v;
    /* the tolerances of the precision the call ran at (ATTN_PRECISION) */
    const attn_precision prec = sdpa_case_ran_at(ctx, d);
    for (size_t row = 0; row < c->nlse; row++) {
        double tol_o, tol_lse;
        ref_row_tol(r, row, prec, &tol_o, &tol_lse);
        for (size_t col = 0; col < dv; col++) {
            size_t e = row * dv + col;
            double got = f16 ? (double)ref_f16_to_f32(((uint16_t *)o)[e])
                             : (double)((float *)o)[e];
            double want = r->o[e];
            double tol = REF_F32_ABS + REF_F32_REL * fabs(want) + tol_o;
            if (f16)
                tol += REF_F16_ABS + REF_F16_REL * fabs(want);
            if (!expect_holds(x->o[e], got, want, tol, r->hidden[row])) {
                if (bad++ == 0) {
                    first = e;
                    fgot = got;
                    fwant = want;
                    fcode = x->o[e];
                    flse = 0;
                }
            }
        }
        if (with_lse) {
            double want = r->lse[row];
            double tol = REF_LSE_ABS + REF_LSE_REL * fabs(want) + tol_lse;
            if (!expect_holds(x->l[row], (double)lse[row], want, tol,
                              r->hidden[row])) {
                if (bad++ == 0) {
                    first = row;
                    fgot = lse[row];
                    fwant = want;
                    fcode = x->l[row];
                    flse = 1;
                }
            }
        }
    }
    if (bad) {
        size_t row = flse ? first : first / dv;
        size_t i = row % (size_t)d->seq_q;
        size_t h = row / (size_t)d->seq_q % (size_t)d->heads_q;
        size_t b = row / ((size_t)d->seq_q * (size_t)d->heads_q);
        printf("\nFAIL %s%s: %s at b=%zu h=%zu i=%zu", what,
               with_lse ? "" : " (no lse)", flse ? "lse" : "O", b, h, i);
        if (!flse)
            printf(" c=%zu", first % dv);
        printf(": got %.9g, want %s", fgot, code_name(fcode));
        if (fcode == X_REF)
            printf(" %.9g", fwant);
        printf("; %zu elements wrong\n", bad);
        ok = 0;
    }
    free(ob);
    free(lb);
    return ok;
}

/* Both with and without lse (the kernels take other branches). */
static int check_both(const sdpa_case *c, const ref_sdpa_result *r,
                      const expect *x, const char *what)
{
    int ok = run_check(c, r, x, 1, what);
    return run_check(c, r, x, 0, what) && ok;
}

/* ---- shapes and mask variants ------------------------------------------- */

/* Shapes: several key tiles (64 keys) and query tiles, and seq_q <= 4 for
 * the decode kernel (path AUTO), one of them long enough for several key
 * splits; the last at a head size the GPU-shaped kernel is built for
 * (query and key tiles that end inside a block). */
typedef struct shape {
    int batch, hq, hkv, sq, skv, d, dv;
} shape;

static const shape shapes[] = {
    {2, 4, 2, 9, 150, 8, 8},    {2, 2, 1, 3, 300, 16, 12},
    {2, 2, 2, 70, 70, 8, 5},    {2, 1, 1, 1, 2100, 8, 4},
    {2, 2, 1, 37, 130, 32, 32},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

enum {
    V_PLAIN,
    V_CAUSAL,
    V_KV_LEN, /* batch 0 sees fewer keys than the poison positions */
    V_BIAS,   /* a -inf bias column and random finite entries */
    V_WINDOW, /* causal, window 5 */
    V_HIDDEN, /* batch 0 sees nothing (kv_len 0) */
    V_ALL,    /* bias, top-left causal and kv_len together */
    N_VARIANTS
};
static const char *const variant_names[N_VARIANTS] = {
    "no mask",
    "causal",
    "kv_len",
    "bias",
    "causal window 5",
    "kv_len 0",
    "bias, top-left causal, kv_len"};

/* The key positions the cases poison: one late (hidden from the first rows
 * under causal and past kv_len in batch 0), one early (outside a sliding
 * window of the last rows). */
static int key_late(const attn_sdpa_desc *d)
{
    return d->seq_kv - 2 > 0 ? d->seq_kv - 2 : 0;
}

static int key_early(const attn_sdpa_desc *d)
{
    return d->seq_kv > 1 ? 1 : 0;
}

/* Builds the problem of shape s in variant v and dtype dt (score as
 * given).  Returns 0 or -1. */
static int build(sdpa_case *c, const shape *s, int v, attn_dtype dt,
                 attn_score score, uint64_t seed, double amp)
{
    attn_sdpa_desc d;
    attn_sdpa_desc_init(&d);
    d.batch = s->batch;
    d.heads_q = s->hq;
    d.heads_kv = s->hkv;
    d.seq_q = s->sq;
    d.seq_kv = s->skv;
    d.head_dim = s->d;
    d.head_dim_v = s->dv;
    d.dtype = dt;
    d.score = score;
    d.mask.causal = v == V_CAUSAL || v == V_WINDOW || v == V_ALL;
    d.mask.window = v == V_WINDOW ? 5 : 0;
    d.causal_align =
        v == V_ALL ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_BOTTOM_RIGHT;
    d.mask.bias_kind =
        v == V_BIAS || v == V_ALL ? ATTN_BIAS_SHARED : ATTN_BIAS_NONE;
    if (sdpa_case_init(c, &d, seed, amp, 0.0,
                       v == V_KV_LEN || v == V_HIDDEN || v == V_ALL))
        return -1;
    if (v == V_KV_LEN || v == V_ALL) {
        c->kv_len[0] = key_late(&c->d) > 4 ? key_late(&c->d) - 3 : 0;
        for (int b = 1; b < c->d.batch; b++)
            c->kv_len[b] = c->d.seq_kv;
    } else if (v == V_HIDDEN) {
        c->kv_len[0] = 0;
        for (int b = 1; b < c->d.batch; b++)
            c->kv_len[b] = c->d.seq_kv;
    }
    if (v == V_BIAS || v == V_ALL) {
        /* Key key_late hidden from the even query rows. */
        for (int i = 0; i < c->d.seq_q; i += 2)
            c->bias[(size_t)i * (size_t)c->d.seq_kv + (size_t)key_late(&c->d)] =
                -INFINITY;
    }
    return 0;
}

/* ---- the sweep ---------------------------------------------------------- */

/* One case: the problem, a clean copy of it for the oracle, the
 * expectations, and the (row, key) pairs the oracle must hide (NULL:
 * none). */
typedef struct hcase {
    sdpa_case c;     /* poisoned: what the library sees */
    sdpa_case clean; /* what the oracle sees */
    expect x;
    unsigned char *hide; /* [rows * seq_kv] or NULL */
} hcase;

static void *dup_n(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *r = malloc(n ? n : 1);
    if (r)
        memcpy(r, p, n);
    return r;
}

/* A deep copy of src (the descriptor points into the copy's buffers). */
static int case_copy(sdpa_case *dst, const sdpa_case *src)
{
    size_t es = src->d.dtype == ATTN_F16 ? sizeof(uint16_t) : sizeof(float);
    *dst = *src;
    dst->q = dup_n(src->q, src->nq * es);
    dst->k = dup_n(src->k, src->nk * es);
    dst->v = dup_n(src->v, src->nv * es);
    dst->additive_w =
        dup_n(src->additive_w,
              (size_t)src->d.heads_q * (size_t)src->d.head_dim * sizeof(float));
    dst->bias = dup_n(src->bias, src->nbias * sizeof(float));
    dst->kv_len = dup_n(src->kv_len, (size_t)src->d.batch * sizeof(int32_t));
    dst->d.additive_w = dst->additive_w;
    dst->d.mask.bias = dst->bias;
    dst->d.mask.kv_len = dst->kv_len;
    if (!dst->q || !dst->k || !dst->v ||
        (src->additive_w && !dst->additive_w) || (src->bias && !dst->bias) ||
        (src->kv_len && !dst->kv_len)) {
        sdpa_case_free(dst);
        return -1;
    }
    return 0;
}

/* Rows, as (b, h, i), that see key j of kv head g in batch item b. */
#define FOR_ROWS_SEEING(t, b, g, j, row)                                       \
    for (int h_ = 0; h_ < (t)->c.d.heads_q; h_++)                              \
        for (int i_ = 0; i_ < (t)->c.d.seq_q; i_++)                            \
            if (h_ / ((t)->c.d.heads_q / (t)->c.d.heads_kv) == (g) &&          \
                sees(&(t)->clean, (b), h_, i_, (j)) &&                         \
                ((row) = row_of(&(t)->c.d, (b), h_, i_), 1))

typedef void (*case_fn)(hcase *t);

/* Runs a case on every shape, variant and dtype (variants without a bias
 * are left out when needs_bias). */
static void sweep(const char *name, attn_score score, double amp,
                  int needs_bias, case_fn prepare, case_fn poison,
                  uint64_t seed)
{
    for (int si = 0; si < N_SHAPES; si++)
        for (int v = 0; v < N_VARIANTS; v++)
            for (int dt = 0; dt < 2; dt++) {
                if (needs_bias && v != V_BIAS && v != V_ALL)
                    continue;
                char what[160];
                snprintf(what, sizeof what, "%s, shape %d, %s, %s", name, si,
                         variant_names[v], dt ? "F16" : "F32");
                hcase t;
                memset(&t, 0, sizeof t);
                if (build(&t.c, &shapes[si], v, dt ? ATTN_F16 : ATTN_F32, score,
                          seed + (uint64_t)(si * 100 + v * 10 + dt),
                          amp) != 0) {
                    CU_FAIL("out of memory");
                    continue;
                }
                if (prepare)
                    prepare(&t);
                ref_sdpa_result r;
                int ok = case_copy(&t.clean, &t.c) == 0 &&
                         expect_init(&t.x, &t.c) == 0;
                if (ok) {
                    poison(&t);
                    ok = (t.hide ? ref_hiding(&t.clean, t.hide, &r)
                                 : ref_sdpa(&t.clean.d, t.clean.q, t.clean.k,
                                            t.clean.v, &r)) == 0;
                    if (ok) {
                        CU_ASSERT_TRUE(check_both(&t.c, &r, &t.x, what));
                        ref_sdpa_free(&r);
                    }
                }
                if (!ok)
                    CU_FAIL("out of memory");
                free(t.hide);
                expect_free(&t.x);
                sdpa_case_free(&t.clean);
                sdpa_case_free(&t.c);
            }
}

/* ---- NaN and infinity in Q ---------------------------------------------- */

/* A row that sees some key: NaN; one that sees none: O = 0, lse = -inf. */
static void expect_spoilt_row(hcase *t, int b, int h, int i)
{
    size_t row = row_of(&t->c.d, b, h, i);
    if (sees_any(&t->clean, b, h, i))
        expect_nan_row(&t->x, row);
    else
        expect_hidden_row(&t->x, row);
}

static void poison_q_nan(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    int b = d->batch - 1, h = d->heads_q - 1, i = d->seq_q - 1;
    set(&t->c, t->c.q, q_at(d, row_of(d, b, h, i), d->head_dim - 1), NAN);
    expect_spoilt_row(t, b, h, i);
    /* Row 0 of batch 0 (fully hidden in variant "kv_len 0"). */
    set(&t->c, t->c.q, q_at(d, row_of(d, 0, 0, 0), 0), NAN);
    expect_spoilt_row(t, 0, 0, 0);
}

static void test_q_nan(void)
{
    sweep("NaN in Q", ATTN_SCORE_DOT, 1.0, 0, NULL, poison_q_nan, 100);
    sweep("NaN in Q, additive", ATTN_SCORE_ADDITIVE, 1.0, 0, NULL, poison_q_nan,
          200);
}

/* K[:, 0] > 0 everywhere, so that Q[i][0] = +inf makes every score of row
 * i +inf and Q[i][0] = -inf makes every score -inf. */
static void prepare_k_positive(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    for (int b = 0; b < d->batch; b++)
        for (int g = 0; g < d->heads_kv; g++)
            for (int j = 0; j < d->seq_kv; j++) {
                size_t e = k_at(d, b, g, j, 0);
                set(&t->c, t->c.k, e, fabs(get(&t->c, t->c.k, e)) + 0.25);
            }
}

static void poison_q_inf(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    /* +inf scores: the row is NaN. */
    int b = d->batch - 1, i = d->seq_q - 1;
    set(&t->c, t->c.q, q_at(d, row_of(d, b, 0, i), 0), INFINITY);
    expect_spoilt_row(t, b, 0, i);
    /* -inf scores hide every key: the row is as if fully masked. */
    size_t row = row_of(d, 0, d->heads_q - 1, 0);
    if (row != row_of(d, b, 0, i)) {
        set(&t->c, t->c.q, q_at(d, row, 0), -INFINITY);
        expect_hidden_row(&t->x, row);
    }
}

static void test_q_inf(void)
{
    sweep("+-inf in Q", ATTN_SCORE_DOT, 1.0, 0, prepare_k_positive,
          poison_q_inf, 300);
}

/* ---- NaN and infinity in K ---------------------------------------------- */

static void poison_k_nan(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    struct {
        int b, g, j, c;
    } at[2] = {{d->batch - 1, d->heads_kv - 1, key_late(d), 0},
               {0, 0, key_early(d), d->head_dim - 1}};
    for (int n = 0; n < 2; n++) {
        size_t e = k_at(d, at[n].b, at[n].g, at[n].j, at[n].c);
        if (d->dtype == ATTN_F16) /* signalling NaN with the sign bit */
            ((uint16_t *)t->c.k)[e] = n ? 0xfc01u : 0x7e00u;
        else
            set(&t->c, t->c.k, e, NAN);
        size_t row;
        FOR_ROWS_SEEING(t, at[n].b, at[n].g, at[n].j, row)
        expect_nan_row(&t->x, row);
    }
}

static void test_k_nan(void)
{
    sweep("NaN in K", ATTN_SCORE_DOT, 1.0, 0, NULL, poison_k_nan, 400);
    sweep("NaN in K, additive", ATTN_SCORE_ADDITIVE, 1.0, 0, NULL, poison_k_nan,
          500);
}

/* Q[:, 0] at least 0.25 away from 0, so that K[j][0] = +inf gives every
 * row a score of +inf (q > 0) or -inf (q < 0) at key j. */
static void prepare_q_signed(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    for (size_t row = 0; row < t->c.nlse; row++) {
        size_t e = q_at(d, row, 0);
        double q = get(&t->c, t->c.q, e);
        set(&t->c, t->c.q, e, q >= 0 ? q + 0.25 : q - 0.25);
    }
}

/* K[j][0] = +inf and V[j][:] = NaN: rows with q > 0 turn NaN, rows with
 * q < 0 lose key j (a -inf score hides it) and must not see its NaN V. */
static void poison_k_inf(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    int b = d->batch - 1, g = 0, j = key_late(d);
    size_t rows = t->c.nlse, skv = (size_t)d->seq_kv, row;
    set(&t->c, t->c.k, k_at(d, b, g, j, 0), INFINITY);
    for (int c = 0; c < d->head_dim_v; c++)
        set(&t->c, t->c.v, v_at(d, b, g, j, c), NAN);
    t->hide = calloc(rows * skv, 1);
    if (!t->hide)
        return;
    FOR_ROWS_SEEING(t, b, g, j, row)
    {
        if (get(&t->c, t->c.q, q_at(d, row, 0)) > 0)
            expect_nan_row(&t->x, row);
        else
            t->hide[row * skv + (size_t)j] = 1;
    }
}

static void test_k_inf(void)
{
    sweep("+inf in K, NaN in its V", ATTN_SCORE_DOT, 1.0, 0, prepare_q_signed,
          poison_k_inf, 600);
}

/* ---- NaN and infinity in V ---------------------------------------------- */

static void poison_v(hcase *t, int b, int g, int j, int c, double x,
                     unsigned char code)
{
    const attn_sdpa_desc *d = &t->c.d;
    size_t row;
    set(&t->c, t->c.v, v_at(d, b, g, j, c), x);
    FOR_ROWS_SEEING(t, b, g, j, row)
    expect_v(&t->x, row, c, code);
}

static void poison_v_nonfinite(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    int b = d->batch - 1, g = d->heads_kv - 1, dv = d->head_dim_v;
    poison_v(t, b, g, key_late(d), 1 % dv, NAN, X_NAN);
    poison_v(t, b, g, key_early(d), 2 % dv, INFINITY, X_PINF);
    /* Both infinities in one column: NaN where a row sees both. */
    poison_v(t, 0, 0, key_early(d), 3 % dv, -INFINITY, X_NINF);
    poison_v(t, 0, 0, key_late(d), 3 % dv, INFINITY, X_PINF);
}

static void test_v(void)
{
    sweep("NaN and +-inf in V", ATTN_SCORE_DOT, 1.0, 0, NULL,
          poison_v_nonfinite, 700);
    sweep("NaN and +-inf in V, additive", ATTN_SCORE_ADDITIVE, 1.0, 0, NULL,
          poison_v_nonfinite, 800);
}

/* The key the last query row of (b, h) sees first (last 0) or last (last
 * 1), or -1. */
static int seen_key(const sdpa_case *c, int b, int h, int last)
{
    for (int n = 0; n < c->d.seq_kv; n++) {
        int j = last ? c->d.seq_kv - 1 - n : n;
        if (sees(c, b, h, c->d.seq_q - 1, j))
            return j;
    }
    return -1;
}

/* A visible key whose weight underflows (its score some 200 below the
 * row's maximum: e^-200 is 0 in float, not in double) still brings its
 * NaN into the row; an infinity there gives +inf or NaN.  Two such keys:
 * the first and the last the row sees (a full key tile and a partial
 * one). */
static void poison_v_underflow(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    int b = d->batch - 1, g = 0;
    size_t row = row_of(d, b, 0, d->seq_q - 1), e;
    double qq = 0.0, scale = 1.0 / sqrt((double)d->head_dim);
    double T = 200.0 / scale;
    for (int c = 0; c < d->head_dim; c++) {
        double q = get(&t->c, t->c.q, q_at(d, row, c));
        qq += q * q;
    }
    for (int last = 0; last < 2; last++) {
        int j = seen_key(&t->c, b, 0, last);
        if (j < 0)
            return;
        /* k = -T q / |q|^2 for the row's q: q . k = -T. */
        for (int c = 0; c < d->head_dim; c++) {
            e = k_at(d, b, g, j, c);
            double k = -T * get(&t->c, t->c.q, q_at(d, row, c)) / qq;
            set(&t->c, t->c.k, e, k);
            set(&t->clean, t->clean.k, e, k);
        }
        poison_v(t, b, g, j, 0, NAN, X_NAN);
        poison_v(t, b, g, j, 1 % d->head_dim_v, INFINITY, X_NONFIN);
    }
}

static void test_v_underflow(void)
{
    sweep("NaN V at a key of weight ~e^-200", ATTN_SCORE_DOT, 1.0, 0, NULL,
          poison_v_underflow, 900);
}

/* ---- bias and additive weights ------------------------------------------ */

/* Key j is hidden from query (b, h, i) by causal, window or kv_len. */
static int sees_struct(const sdpa_case *c, int b, int i, int j)
{
    const attn_sdpa_desc *d = &c->d;
    long off = (d->causal_align == ATTN_CAUSAL_TOP_LEFT
                    ? 0
                    : (long)d->seq_kv - (long)d->seq_q) +
               (long)d->causal_offset;
    if (d->mask.causal && (long)j > (long)i + off)
        return 0;
    if (d->mask.window > 0 && (long)j < (long)i + off - d->mask.window + 1)
        return 0;
    return !(d->mask.kv_len && j >= d->mask.kv_len[b]);
}

/* A NaN or +inf bias entry (SHARED: every (b, h) of query i) spoils the
 * row when a mask does not hide the key; a hidden one is harmless. */
static void poison_bias(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    struct {
        int i, j;
        float x;
    } at[3] = {{d->seq_q - 1, key_early(d), NAN},
               {0, key_late(d), INFINITY},
               {d->seq_q / 2, d->seq_kv - 1, NAN}};
    for (int n = 0; n < 3; n++) {
        t->c.bias[(size_t)at[n].i * (size_t)d->seq_kv + (size_t)at[n].j] =
            at[n].x;
        for (int b = 0; b < d->batch; b++)
            for (int h = 0; h < d->heads_q; h++)
                if (sees_struct(&t->c, b, at[n].i, at[n].j))
                    expect_nan_row(&t->x, row_of(d, b, h, at[n].i));
    }
}

static void test_bias(void)
{
    sweep("NaN and +inf in the bias", ATTN_SCORE_DOT, 1.0, 1, NULL, poison_bias,
          1000);
}

/* A NaN additive weight spoils every row of its head that sees a key. */
static void poison_additive_w(hcase *t)
{
    const attn_sdpa_desc *d = &t->c.d;
    int h = d->heads_q - 1;
    t->c.additive_w[(size_t)h * (size_t)d->head_dim] = NAN;
    for (int b = 0; b < d->batch; b++)
        for (int i = 0; i < d->seq_q; i++)
            expect_spoilt_row(t, b, h, i);
}

static void test_additive_w(void)
{
    sweep("NaN in additive_w", ATTN_SCORE_ADDITIVE, 1.0, 0, NULL,
          poison_additive_w, 1100);
}

/* ---- scores that overflow ----------------------------------------------- */

static void fill_range(hcase *t, void *x, size_t n, double lo, double hi)
{
    ref_rng r;
    ref_rng_seed(&r, n);
    for (size_t e = 0; e < n; e++)
        set(&t->c, x, e, ref_rng_uniform(&r, lo, hi));
}

/* Finite inputs whose scores overflow: scale FLT_MAX / 2 with q, k in
 * [1, 2] gives +inf everywhere (NaN rows), with k in [-2, -1] -inf
 * everywhere (rows as if fully masked). */
static void poison_overflow_pos(hcase *t)
{
    t->c.d.scale = FLT_MAX / 2;
    fill_range(t, t->c.q, t->c.nq, 1.0, 2.0);
    fill_range(t, t->c.k, t->c.nk, 1.0, 2.0);
    for (int b = 0; b < t->c.d.batch; b++)
        for (int h = 0; h < t->c.d.heads_q; h++)
            for (int i = 0; i < t->c.d.seq_q; i++)
                expect_spoilt_row(t, b, h, i);
}

static void poison_overflow_neg(hcase *t)
{
    t->c.d.scale = FLT_MAX / 2;
    fill_range(t, t->c.q, t->c.nq, 1.0, 2.0);
    fill_range(t, t->c.k, t->c.nk, -2.0, -1.0);
    for (size_t row = 0; row < t->c.nlse; row++)
        expect_hidden_row(&t->x, row);
}

static void test_overflow(void)
{
    sweep("scores overflow to +inf", ATTN_SCORE_DOT, 1.0, 0, NULL,
          poison_overflow_pos, 1200);
    sweep("scores overflow to -inf", ATTN_SCORE_DOT, 1.0, 0, NULL,
          poison_overflow_neg, 1300);
}

/* A non-finite scale is an invalid argument; the outputs stay untouched. */
static void test_scale(void)
{
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int n = 0; n < 3; n++) {
        sdpa_case c;
        CU_ASSERT_EQUAL_FATAL(
            build(&c, &shapes[0], V_PLAIN, ATTN_F32, ATTN_SCORE_DOT, 1400, 1.0),
            0);
        c.d.scale = bad[n];
        float *o = malloc(c.no * sizeof *o);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        memset(o, 0x5a, c.no * sizeof *o);
        float *lsev = malloc(c.nlse * sizeof *lsev);
        CU_ASSERT_PTR_NOT_NULL_FATAL(lsev);
        memset(lsev, 0x5a, c.nlse * sizeof *lsev);
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, lsev),
                        ATTN_ERR_INVALID_ARGUMENT);
        int same = 1;
        for (size_t e = 0; e < c.no * sizeof *o; e++)
            same &= ((unsigned char *)o)[e] == 0x5a;
        for (size_t e = 0; e < c.nlse * sizeof *lsev; e++)
            same &= ((unsigned char *)lsev)[e] == 0x5a;
        CU_ASSERT_TRUE(same);
        free(o);
        free(lsev);
        sdpa_case_free(&c);
    }
}

/* ---- finite biases near FLT_MAX ------------------------------------------ */

/* The keys every batch item's query row i sees under c's causal mask and
 * kv_len: [0, n). */
static int seen_by_all(const sdpa_case *c, int i)
{
    const attn_sdpa_desc *d = &c->d;
    int n = d->mask.causal ? i + d->seq_kv - d->seq_q + 1 : d->seq_kv;
    for (int b = 0; c->kv_len && b < d->batch; b++)
        n = c->kv_len[b] < n ? c->kv_len[b] : n;
    return n;
}

/* A bias between 2.4e38 and 3.4e38 is finite and so are the scores it
 * makes; times log2(e) it would not be.  Row i's key key_of(i) gets
 * 3.3e38, the other visible keys 2.4e38 .. 2.9e38, so in float and in
 * double every weight but key_of(i)'s is 0: O[row] = V[key_of(i)] exactly
 * and lse[row] = 3.3e38, checked against the double-precision oracle with
 * the plain tolerances (its own grow with the bias and would accept any
 * finite value). */
static void bias_near_max(const shape *sh, int v, attn_dtype dt,
                          attn_score score, uint64_t seed, const char *what)
{
    sdpa_case c;
    ref_sdpa_result r;
    ref_rng rng;
    const int f16 = dt == ATTN_F16;
    const size_t es = f16 ? sizeof(uint16_t) : sizeof(float);
    CU_ASSERT_EQUAL_FATAL(build(&c, sh, v, dt, score, seed, 1.0), 0);
    ref_rng_seed(&rng, seed);
    for (int i = 0; i < c.d.seq_q; i++) {
        int n = seen_by_all(&c, i), star = n > 0 ? (i * 5) % n : -1;
        if (star == key_late(&c.d) && (i % 2) == 0)
            star = 0; /* that key's bias is -inf in the even rows */
        for (int j = 0; j < c.d.seq_kv; j++) {
            float *b = &c.bias[(size_t)i * (size_t)c.d.seq_kv + (size_t)j];
            if (*b != -INFINITY)
                *b = j == star ? 3.3e38f
                               : (float)ref_rng_uniform(&rng, 2.4e38, 2.9e38);
        }
    }
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
    void *o = malloc(c.no * es);
    float *lse = malloc(c.nlse * sizeof *lse);
    CU_ASSERT_FATAL(o && lse);
    memset(o, 0x5a, c.no * es);
    attn_status st = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, lse);
    if (st != ATTN_OK && harness_declined(ctx, &c.d, st, what)) {
        /* the forced kernel does not take the shape */
    } else if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_sdpa returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        CU_FAIL("attn_sdpa failed");
    } else {
        size_t bad = 0, first = 0;
        /* p = 1 for key_of(i): only the rounding of V, at most t |v|, at
         * a precision other than EXACT (ATTN_PRECISION) */
        double t = ref_precision_t(sdpa_case_ran_at(ctx, &c.d));
        harness_taken();
        for (size_t row = 0; row < c.nlse; row++) {
            const size_t dv = (size_t)c.d.head_dim_v;
            for (size_t col = 0; col < dv; col++) {
                size_t e = row * dv + col;
                double got = f16 ? (double)ref_f16_to_f32(((uint16_t *)o)[e])
                                 : (double)((float *)o)[e];
                double want = r.o[e];
                double tol = REF_F32_ABS + (REF_F32_REL + t) * fabs(want) +
                             (f16 ? REF_F16_ABS + REF_F16_REL * fabs(want) : 0);
                if (!(fabs(got - want) <= tol) && bad++ == 0)
                    first = e;
            }
            double want = r.lse[row], got = lse[row];
            if (!(r.hidden[row] ? got == want
                                : fabs(got - want) <= 1e-6 * fabs(want)) &&
                bad++ == 0)
                first = row * dv;
        }
        if (bad) {
            size_t row = first / (size_t)c.d.head_dim_v;
            printf("\nFAIL %s: row %zu: O %.9g (want %.9g), lse %.9g (want "
                   "%.9g); %zu elements wrong\n",
                   what, row,
                   f16 ? (double)ref_f16_to_f32(((uint16_t *)o)[first])
                       : (double)((float *)o)[first],
                   r.o[first], (double)lse[row], r.lse[row], bad);
            CU_FAIL("bias near FLT_MAX");
        }
    }
    free(o);
    free(lse);
    ref_sdpa_free(&r);
    sdpa_case_free(&c);
}

static void test_bias_near_max(void)
{
    static const int variants[] = {V_BIAS, V_ALL};
    for (int si = 0; si < N_SHAPES; si++)
        for (int vi = 0; vi < 2; vi++)
            for (int dt = 0; dt < 2; dt++)
                for (int sc = 0; sc < 2; sc++) {
                    char what[160];
                    snprintf(what, sizeof what,
                             "bias near FLT_MAX, shape %d, %s, %s, %s", si,
                             variant_names[variants[vi]], dt ? "F16" : "F32",
                             sc ? "additive" : "dot");
                    bias_near_max(
                        &shapes[si], variants[vi], dt ? ATTN_F16 : ATTN_F32,
                        sc ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT,
                        1700 + (uint64_t)(si * 100 + vi * 10 + dt * 2 + sc),
                        what);
                }
}

/* ---- finite V near FLT_MAX ----------------------------------------------- */

/* attn.h (after rule 7): O's undivided sum, sum_j p_j V[j] with p_j <= 1,
 * overflows only past FLT_MAX, which needs |V| above FLT_MAX / n for n
 * visible keys.  V scaled to at most FLT_MAX / (2 seq_kv) stays below it
 * on every path: O is the oracle's finite average, within the tolerances
 * that grow with max |v| (ref.h), and lse is unchanged by V. */
static void v_near_max(const shape *sh, int v, uint64_t seed, const char *what)
{
    sdpa_case c;
    ref_sdpa_result r;
    CU_ASSERT_EQUAL_FATAL(build(&c, sh, v, ATTN_F32, ATTN_SCORE_DOT, seed, 1.0),
                          0);
    const float f = FLT_MAX / (2.0f * (float)c.d.seq_kv);
    for (size_t e = 0; e < c.nv; e++)
        ((float *)c.v)[e] *= f;
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &r), 0);
    float *o = malloc(c.no * sizeof *o), *lse = malloc(c.nlse * sizeof *lse);
    CU_ASSERT_FATAL(o && lse);
    attn_status st = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o, lse);
    if (st != ATTN_OK && harness_declined(ctx, &c.d, st, what)) {
        /* the forced kernel does not take the shape */
    } else if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_sdpa returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        CU_FAIL("attn_sdpa failed");
    } else {
        harness_taken();
        CU_ASSERT_TRUE(ref_check_sdpa_at(what, &c.d, &r, o, lse, NULL,
                                         sdpa_case_ran_at(ctx, &c.d)));
    }
    free(o);
    free(lse);
    ref_sdpa_free(&r);
    sdpa_case_free(&c);
}

static void test_v_near_max(void)
{
    static const int variants[] = {V_PLAIN, V_ALL};
    for (int si = 0; si < N_SHAPES; si++)
        for (int vi = 0; vi < 2; vi++) {
            char what[160];
            snprintf(what, sizeof what,
                     "V near FLT_MAX / (2 seq_kv), shape %d, %s", si,
                     variant_names[variants[vi]]);
            v_near_max(&shapes[si], variants[vi],
                       1800 + (uint64_t)(si * 10 + vi), what);
        }
}

/* ---- the multi-head layer ----------------------------------------------- */

/* Runs attn_mha_forward on c and checks y: rows with nan_row[b*seq_q+i]
 * set are NaN in every element, the others match the oracle ref. */
static int mha_check(const mha_case *c, const double *ref,
                     const unsigned char *nan_row, const char *what)
{
    size_t dm = (size_t)c->m.d_model;
    float *y = malloc(c->ny * sizeof *y);
    if (!y)
        return 0;
    for (size_t e = 0; e < c->ny; e++)
        y[e] = 42.0f;
    attn_status st = attn_mha_forward(ctx, &c->m, c->batch, c->seq_q, c->seq_kv,
                                      c->x_q, c->x_kv, &c->mask, y);
    if (st != ATTN_OK && harness_declined(ctx, NULL, st, what)) {
        /* The forced kernel does not take the layer's attention step. */
        int ok = 1;
        for (size_t e = 0; e < c->ny; e++)
            ok &= y[e] == 42.0f;
        if (!ok)
            printf("\nFAIL %s: a declined call wrote y\n", what);
        free(y);
        return ok;
    }
    if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_mha_forward returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        free(y);
        return 0;
    }
    size_t bad = 0, first = 0;
    for (size_t e = 0; e < c->ny; e++) {
        double got = y[e], want = ref[e];
        int ok =
            nan_row[e / dm]
                ? isnan(got)
                : isfinite(got) && fabs(got - want) <=
                                       REF_MHA_ABS + REF_MHA_REL * fabs(want);
        if (!ok && bad++ == 0)
            first = e;
    }
    if (bad)
        printf("\nFAIL %s: y row %zu col %zu: got %.9g, want %s %.9g; %zu "
               "elements wrong\n",
               what, first / dm, first % dm, (double)y[first],
               nan_row[first / dm] ? "NaN, not" : "", ref[first], bad);
    free(y);
    return bad == 0;
}

/* NaN in one token of x: in self-attention (causal) the query rows that
 * attend to it (i >= t, same batch item) turn NaN in every output column;
 * rows before it and other batch items are exact.  In cross-attention a
 * NaN key token spoils every query row of its batch item that sees it, a
 * NaN query token only its own row; a key token past kv_len is harmless,
 * and a query row that sees no key gives y = bo. */
static void test_mha(void)
{
    const attn_posenc pes[2] = {ATTN_POSENC_NONE, ATTN_POSENC_ROPE};
    for (int p = 0; p < 2; p++)
        for (int cross = 0; cross < 2; cross++)
            for (int kv = 0; kv < 2; kv++) {
                mha_spec s;
                memset(&s, 0, sizeof s);
                s.d_model = 16;
                s.heads_q = 4;
                s.heads_kv = 2;
                s.head_dim = 4;
                s.batch = 2;
                s.seq_q = 9;
                s.seq_kv = cross ? 12 : 9;
                s.self = !cross;
                s.with_bias = 1;
                s.posenc = pes[p];
                s.causal = !cross;
                s.with_kv_len = kv;
                char what[128];
                snprintf(what, sizeof what, "layer, %s, %s%s",
                         p ? "rope" : "no posenc",
                         cross ? "cross" : "self causal", kv ? ", kv_len" : "");
                mha_case c;
                CU_ASSERT_EQUAL_FATAL(
                    mha_case_init(&c, &s,
                                  1500 + (uint64_t)(p * 4 + cross * 2 + kv)),
                    0);
                if (kv) {
                    c.kv_len[0] = 3; /* key token 4 is past it */
                    c.kv_len[1] = 0; /* batch 1 sees nothing */
                }
                double *ref = mha_case_reference(&c);
                CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
                unsigned char nan_row[2 * 9];
                memset(nan_row, 0, sizeof nan_row);
                int t = 4, dm = s.d_model;
                if (!cross) {
                    /* x[b 0, t] NaN: q, k and v of token t.  Rows i >= t
                     * see key t, unless kv_len (3) hides it; then only
                     * row t itself (its query) is NaN. */
                    c.x_q[(size_t)t * (size_t)dm + 5] = NAN;
                    for (int i = t; i < 9; i++)
                        nan_row[i] = !kv || i == t;
                } else {
                    /* x_kv[b 0, t] NaN: every row of batch 0 sees it unless
                     * kv_len hides it; x_q[b 1, 2] NaN: row 2 of batch 1
                     * (which sees nothing when kv_len is on: y = bo). */
                    c.x_kv[((size_t)0 * 12 + (size_t)t) * (size_t)dm + 1] = NAN;
                    c.x_q[((size_t)1 * 9 + 2) * (size_t)dm + 7] = NAN;
                    for (int i = 0; i < 9; i++)
                        nan_row[i] = !kv;
                    nan_row[9 + 2] = !kv;
                }
                CU_ASSERT_TRUE(mha_check(&c, ref, nan_row, what));
                free(ref);
                mha_case_free(&c);
            }
}

/* A NaN in a projection bias reaches every row that sees a key. */
static void test_mha_weights(void)
{
    mha_spec s;
    memset(&s, 0, sizeof s);
    s.d_model = 16;
    s.heads_q = 4;
    s.heads_kv = 2;
    s.head_dim = 4;
    s.batch = 2;
    s.seq_q = 9;
    s.self = 1;
    s.with_bias = 1;
    s.causal = 1;
    s.with_kv_len = 1;
    mha_case c;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 1600), 0);
    c.kv_len[0] = 9;
    c.kv_len[1] = 0; /* batch 1 sees nothing: y = bo */
    double *ref = mha_case_reference(&c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    c.b[2][3] = NAN; /* bv */
    unsigned char nan_row[2 * 9];
    for (int r = 0; r < 18; r++)
        nan_row[r] = r < 9;
    CU_ASSERT_TRUE(mha_check(&c, ref, nan_row, "layer, NaN in bv"));
    free(ref);
    mha_case_free(&c);
}

static int suite_init(void)
{
    ctx = harness_context();
    return ctx ? 0 : 1;
}

static int suite_clean(void)
{
    attn_context_destroy(ctx);
    ctx = NULL;
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"NaN in Q: its row only", test_q_nan},
        {"+-inf in Q: NaN row / no key", test_q_inf},
        {"NaN in K: the rows that see it", test_k_nan},
        {"+inf in K: NaN or the key hidden", test_k_inf},
        {"NaN and +-inf in V: the rows and column", test_v},
        {"NaN in V behind an underflowing weight", test_v_underflow},
        {"NaN and +inf in the bias", test_bias},
        {"NaN in additive_w: its head", test_additive_w},
        {"scores that overflow", test_overflow},
        {"finite biases near FLT_MAX", test_bias_near_max},
        {"finite V up to FLT_MAX / (2 seq_kv)", test_v_near_max},
        {"non-finite scale is rejected", test_scale},
        {"layer: NaN in a token", test_mha},
        {"layer: NaN in a bias", test_mha_weights},
        {NULL, NULL},
    };
    return harness_main("hostile", suite_init, suite_clean, tests);
}
