/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_strides: attn_sdpa on strided tensors (attn_sdpa_desc.q_strides
 * ...): BHSD given explicitly, BSHD, a fused QKV buffer, o in BSHD and in
 * a padded layout, F16, BF16, GQA, masks and the decode shapes, against the
 * double-precision oracle (computed on the contiguous copies) and equal
 * to the contiguous call; the gaps between rows are neither read (they
 * hold NaN) nor written.  Then the strides' validation.  Runs on the
 * context ATTN_DEVICE picks; a forced kernel variant (ATTN_TEST_KERNEL)
 * may decline a call, as harness_declined checks.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

static attn_context *ctx;

enum { L_BHSD, L_BSHD, L_PADDED, L_FUSED };

/* Strides of one tensor [n0, n1, n2, w] in layout lay (L_FUSED: slot
 * `at` of `width` heads of w per row). */
static void layout_strides(int lay, const size_t n[3], size_t w, size_t width,
                           int64_t st[3])
{
    switch (lay) {
    case L_BHSD:
        st[2] = (int64_t)w;
        st[1] = (int64_t)(n[2] * w);
        st[0] = (int64_t)(n[1] * n[2] * w);
        break;
    case L_BSHD:
        st[1] = (int64_t)w;
        st[2] = (int64_t)(n[1] * w);
        st[0] = (int64_t)(n[2] * n[1] * w);
        break;
    case L_PADDED: /* BSHD with 3 spare elements per row and head */
        st[1] = (int64_t)(w + 3);
        st[2] = (int64_t)(n[1] * (w + 3) + 5);
        st[0] = (int64_t)(n[2] * (size_t)st[2] + 7);
        break;
    default: /* L_FUSED: [n0, n2, width, w] */
        st[1] = (int64_t)w;
        st[2] = (int64_t)(width * w);
        st[0] = (int64_t)(n[2] * width * w);
        break;
    }
}

static size_t extent(const size_t n[3], size_t w, const int64_t st[3])
{
    size_t e = w;
    for (int i = 0; i < 3; i++)
        e += (size_t)st[i] * (n[i] - 1);
    return e;
}

/* Copies contiguous src [n0, n1, n2, w] to dst at strides st, or back
 * (to_strided 0). */
static void move(void *strided, void *contig, size_t elem, const size_t n[3],
                 size_t w, const int64_t st[3], int to_strided)
{
    size_t r = 0;
    for (size_t a = 0; a < n[0]; a++)
        for (size_t b = 0; b < n[1]; b++)
            for (size_t c = 0; c < n[2]; c++, r++) {
                char *s =
                    (char *)strided + ((size_t)st[0] * a + (size_t)st[1] * b +
                                       (size_t)st[2] * c) *
                                          elem;
                char *t = (char *)contig + r * w * elem;
                if (to_strided)
                    memcpy(s, t, w * elem);
                else
                    memcpy(t, s, w * elem);
            }
}

/* n elements of type dt, all NaN (inputs: a read of a gap spoils O). */
static void fill_nan(void *p, size_t n, attn_dtype dt)
{
    for (size_t i = 0; i < n; i++)
        if (dt == ATTN_F16)
            ((uint16_t *)p)[i] = 0x7e00u;
        else if (dt == ATTN_BF16)
            ((uint16_t *)p)[i] = 0x7fc0u;
        else
            ((float *)p)[i] = NAN;
}

/* 1 when ctx runs a and b with the same kernel. */
static int same_kernel(const attn_sdpa_desc *a, const attn_sdpa_desc *b)
{
    char na[64], nb[64];
    return attn_sdpa_kernel(ctx, a, na, sizeof na) == ATTN_OK &&
           attn_sdpa_kernel(ctx, b, nb, sizeof nb) == ATTN_OK &&
           strcmp(na, nb) == 0;
}

/* Runs c's problem with q, k, v in layout in_lay and o in o_lay (L_FUSED
 * for the inputs puts q, k, v in one buffer) and checks it against the
 * oracle, the contiguous call (bit for bit) and o's gaps. */
static int run_layout(const sdpa_case *c, int in_lay, int o_lay,
                      const char *what)
{
    const attn_sdpa_desc *d = &c->d;
    const size_t elem = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t nq[3] = {(size_t)d->batch, (size_t)d->heads_q,
                          (size_t)d->seq_q};
    const size_t nk[3] = {(size_t)d->batch, (size_t)d->heads_kv,
                          (size_t)d->seq_kv};
    const size_t hd = (size_t)d->head_dim, hdv = (size_t)d->head_dim_v;
    const size_t width = nq[1] + 2 * nk[1];
    attn_sdpa_desc s = *d;
    size_t eq, ek, ev, eo;
    void *bq = NULL, *bk = NULL, *bv = NULL;
    unsigned char *bo, *oc, *o_ref, *sentinel;
    float *lse = malloc(nq[0] * nq[1] * nq[2] * sizeof(float));
    int ok = 1;

    if (in_lay == L_FUSED) {
        layout_strides(L_FUSED, nq, hd, width, s.q_strides);
        layout_strides(L_FUSED, nk, hd, width, s.k_strides);
        layout_strides(L_FUSED, nk, hdv, width, s.v_strides);
    } else {
        layout_strides(in_lay, nq, hd, 0, s.q_strides);
        layout_strides(in_lay, nk, hd, 0, s.k_strides);
        layout_strides(in_lay, nk, hdv, 0, s.v_strides);
    }
    layout_strides(o_lay, nq, hdv, 0, s.o_strides);
    eq = extent(nq, hd, s.q_strides);
    ek = extent(nk, hd, s.k_strides);
    ev = extent(nk, hdv, s.v_strides);
    eo = extent(nq, hdv, s.o_strides);
    if (in_lay == L_FUSED) {
        /* one buffer; k and v start at their slots */
        size_t all = eq > ek + nq[1] * hd ? eq : ek + nq[1] * hd;
        if (ev + (nq[1] + nk[1]) * hd > all)
            all = ev + (nq[1] + nk[1]) * hd;
        bq = malloc(all * elem);
        if (bq) {
            fill_nan(bq, all, d->dtype);
            bk = (char *)bq + nq[1] * hd * elem;
            bv = (char *)bq + (nq[1] + nk[1]) * hd * elem;
        }
    } else {
        bq = malloc(eq * elem);
        bk = malloc(ek * elem);
        bv = malloc(ev * elem);
        if (bq && bk && bv) {
            fill_nan(bq, eq, d->dtype);
            fill_nan(bk, ek, d->dtype);
            fill_nan(bv, ev, d->dtype);
        }
    }
    bo = malloc(eo * elem);
    sentinel = malloc(eo * elem);
    oc = malloc(c->no * elem);
    o_ref = malloc(c->no * elem);
    CU_ASSERT_FATAL(bq && bk && bv && bo && sentinel && oc && o_ref && lse);
    move(bq, c->q, elem, nq, hd, s.q_strides, 1);
    move(bk, c->k, elem, nk, hd, s.k_strides, 1);
    move(bv, c->v, elem, nk, hdv, s.v_strides, 1);
    for (size_t i = 0; i < eo * elem; i++)
        sentinel[i] = (unsigned char)(0xa5 ^ i);
    memcpy(bo, sentinel, eo * elem);

    attn_status st = attn_sdpa(ctx, &s, bq, bk, bv, bo, lse);
    if (st != ATTN_OK && harness_declined(ctx, &s, st, what)) {
        /* a forced kernel variant that does not take the call */
        HARNESS_EXPECT(memcmp(bo, sentinel, eo * elem) == 0, what);
        ok = memcmp(bo, sentinel, eo * elem) == 0;
    } else if (st != ATTN_OK) {
        printf("\n%s: %s: %s\n", what, attn_status_string(st),
               attn_last_error());
        ok = 0;
    } else {
        ref_sdpa_result r;
        size_t bad = 0;
        harness_taken();
        move(bo, oc, elem, nq, hdv, s.o_strides, 0);
        if (ref_sdpa(d, c->q, c->k, c->v, &r) == 0) {
            ok &= ref_check_sdpa_at(what, d, &r, oc, lse, NULL,
                                    sdpa_case_ran_at(ctx, &s));
            ref_sdpa_free(&r);
        } else {
            ok = 0;
        }
        /* the gaps of o are the caller's: untouched */
        {
            unsigned char *mark = calloc(eo, 1);
            CU_ASSERT_FATAL(mark != NULL);
            for (size_t a = 0; a < nq[0]; a++)
                for (size_t b = 0; b < nq[1]; b++)
                    for (size_t i = 0; i < nq[2]; i++)
                        memset(mark + (size_t)s.o_strides[0] * a +
                                   (size_t)s.o_strides[1] * b +
                                   (size_t)s.o_strides[2] * i,
                               1, hdv);
            for (size_t e = 0; e < eo; e++)
                if (!mark[e] &&
                    memcmp(bo + e * elem, sentinel + e * elem, elem) != 0)
                    bad++;
            free(mark);
        }
        HARNESS_EXPECT(bad == 0, what);
        ok &= bad == 0;
        /* the same bits as the contiguous call, when the same kernel
         * runs both (a variant that takes no strides may run the
         * contiguous one) */
        st = attn_sdpa(ctx, d, c->q, c->k, c->v, o_ref, NULL);
        HARNESS_EXPECT(st == ATTN_OK || harness_declined(ctx, d, st, what),
                       what);
        if (st == ATTN_OK && same_kernel(d, &s)) {
            HARNESS_EXPECT(memcmp(o_ref, oc, c->no * elem) == 0, what);
            ok &= memcmp(o_ref, oc, c->no * elem) == 0;
        }
    }
    if (in_lay == L_FUSED) {
        free(bq);
    } else {
        free(bq);
        free(bk);
        free(bv);
    }
    free(bo);
    free(sentinel);
    free(oc);
    free(o_ref);
    free(lse);
    return ok;
}

static attn_sdpa_desc shape(int batch, int hq, int hkv, int sq, int skv, int d,
                            int dv, attn_dtype dt)
{
    attn_sdpa_desc s;
    attn_sdpa_desc_init(&s);
    s.batch = batch;
    s.heads_q = hq;
    s.heads_kv = hkv;
    s.seq_q = sq;
    s.seq_kv = skv;
    s.head_dim = d;
    s.head_dim_v = dv;
    s.dtype = dt;
    return s;
}

/* Every layout pair for one shape; fused QKV when head_dim == head_dim_v
 * and seq_q == seq_kv. */
static void run_shape(const attn_sdpa_desc *shp, int kv_len, const char *name)
{
    static const struct {
        int in, o;
        const char *what;
    } lays[] = {{L_BHSD, L_BHSD, "BHSD given"},
                {L_BSHD, L_BHSD, "BSHD in"},
                {L_BSHD, L_BSHD, "BSHD in and out"},
                {L_BHSD, L_BSHD, "o BSHD"},
                {L_PADDED, L_PADDED, "padded rows and heads"},
                {L_FUSED, L_BSHD, "fused QKV, o BSHD"}};
    sdpa_case c;
    CU_ASSERT_FATAL(
        sdpa_case_init(&c, shp, 11, 2.0, 0.1, kv_len ? CASE_KV_LEN : 0) == 0);
    for (size_t i = 0; i < sizeof lays / sizeof lays[0]; i++) {
        char what[160];
        if (lays[i].in == L_FUSED &&
            (shp->head_dim != shp->head_dim_v || shp->seq_q != shp->seq_kv))
            continue;
        snprintf(what, sizeof what, "%s: %s", name, lays[i].what);
        CU_ASSERT(run_layout(&c, lays[i].in, lays[i].o, what));
    }
    sdpa_case_free(&c);
}

static void test_plain(void)
{
    attn_sdpa_desc s = shape(2, 4, 4, 37, 37, 32, 32, ATTN_F32);
    run_shape(&s, 0, "F32 MHA");
    s = shape(1, 3, 3, 130, 130, 64, 64, ATTN_F32);
    run_shape(&s, 0, "F32 two query tiles");
    s = shape(2, 2, 2, 19, 45, 24, 40, ATTN_F32);
    run_shape(&s, 0, "cross, head_dim_v");
}

static void test_f16(void)
{
    attn_sdpa_desc s = shape(2, 4, 2, 33, 33, 32, 32, ATTN_F16);
    run_shape(&s, 0, "F16 GQA");
    s.mask.causal = 1;
    run_shape(&s, 0, "F16 GQA causal");
}

static void test_bf16(void)
{
    attn_sdpa_desc s = shape(2, 4, 2, 33, 33, 32, 32, ATTN_BF16);
    run_shape(&s, 0, "BF16 GQA");
    s.mask.causal = 1;
    run_shape(&s, 0, "BF16 GQA causal");
    s = shape(1, 2, 2, 70, 70, 64, 64, ATTN_BF16);
    run_shape(&s, 1, "BF16 two query tiles kv_len");
}

static void test_gqa_masks(void)
{
    attn_sdpa_desc s = shape(2, 8, 2, 41, 41, 32, 32, ATTN_F32);
    s.mask.causal = 1;
    run_shape(&s, 0, "GQA causal");
    s.mask.window = 9;
    run_shape(&s, 1, "GQA causal window kv_len");
    s = shape(2, 4, 4, 23, 23, 16, 16, ATTN_F32);
    s.mask.bias_kind = ATTN_BIAS_FULL;
    run_shape(&s, 0, "full bias");
    s = shape(2, 4, 4, 23, 29, 16, 16, ATTN_F32);
    s.causal_align = ATTN_CAUSAL_TOP_LEFT;
    s.mask.causal = 1;
    run_shape(&s, 0, "top-left causal");
}

static void test_decode(void)
{
    /* few query rows per kv head: the decode form */
    attn_sdpa_desc s = shape(2, 8, 2, 1, 300, 64, 64, ATTN_F32);
    run_shape(&s, 1, "decode GQA kv_len");
    s = shape(1, 4, 4, 3, 200, 32, 32, ATTN_F16);
    run_shape(&s, 0, "decode F16");
}

/* ---- validation ---------------------------------------------------------*/

static attn_status call(const attn_sdpa_desc *s, const void *q, const void *k,
                        const void *v, void *o)
{
    return attn_sdpa(ctx, s, q, k, v, o, NULL);
}

static void test_invalid(void)
{
    attn_sdpa_desc s = shape(2, 2, 2, 4, 4, 8, 8, ATTN_F32);
    static float q[1024], k[1024], v[1024], o[1024];
    attn_sdpa_desc t;

    t = s;
    t.q_strides[2] = -8;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    t = s;
    t.k_strides[0] = -1;
    t.k_strides[1] = 32;
    t.k_strides[2] = 8;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    /* strides whose extent overflows */
    t = s;
    t.v_strides[0] = INT64_MAX / 2;
    t.v_strides[1] = 32;
    t.v_strides[2] = 8;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    t = s;
    t.o_strides[0] = INT64_MAX;
    t.o_strides[1] = 1;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    /* rows of o on each other: row stride below head_dim_v, a head
     * stride of 0, heads interleaved with rows */
    t = s;
    t.o_strides[0] = 64;
    t.o_strides[1] = 32;
    t.o_strides[2] = 4;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    t = s;
    t.o_strides[0] = 64;
    t.o_strides[1] = 0;
    t.o_strides[2] = 8;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    t = s;
    t.o_strides[0] = 64;
    t.o_strides[1] = 16;
    t.o_strides[2] = 8;
    CU_ASSERT_EQUAL(call(&t, q, k, v, o), ATTN_ERR_INVALID_ARGUMENT);
    /* inputs may repeat rows (stride 0): valid */
    t = s;
    t.k_strides[0] = 0;
    t.k_strides[1] = 0;
    t.k_strides[2] = 8;
    {
        attn_status st = call(&t, q, k, v, o);
        CU_ASSERT(st == ATTN_OK || harness_declined(ctx, &t, st, "k repeated"));
    }
    /* o inside the extent q's strides span, though apart from q's rows */
    t = s;
    t.q_strides[0] = 128;
    t.q_strides[1] = 16;
    t.q_strides[2] = 32;
    CU_ASSERT_EQUAL(call(&t, q, k, v, q + 8), ATTN_ERR_INVALID_ARGUMENT);
    /* and past it: valid */
    {
        attn_status st = call(&t, q, k, v, q + 256);
        CU_ASSERT(st == ATTN_OK || harness_declined(ctx, &t, st, "o past q"));
    }
}

/* The backward takes strides: the same gradients as the contiguous call
 * (bit for bit: it runs on contiguous copies); tests/test_backward.c checks
 * strided and packed backward calls against the oracle. */
static void test_backward_strided(void)
{
    attn_sdpa_desc s = shape(1, 2, 2, 4, 4, 8, 8, ATTN_F32);
    static float q[64], k[64], v[64], o[64], d_o[64], dq[64], dk[64], dv[64];
    static float lse[8];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    g.q = q;
    g.k = k;
    g.v = v;
    g.o = o;
    g.lse = lse;
    g.d_o = d_o;
    g.dq = dq;
    g.dk = dk;
    g.dv = dv;
    static float dq2[64], dk2[64], dv2[64];
    for (int i = 0; i < 64; i++) {
        q[i] = (float)(i % 7) * 0.25f - 0.5f;
        k[i] = (float)(i % 5) * 0.25f - 0.5f;
        v[i] = (float)(i % 3) - 1.0f;
        d_o[i] = (float)(i % 4) * 0.5f - 0.75f;
    }
    {
        attn_status st = attn_sdpa(ctx, &s, q, k, v, o, lse);
        if (st != ATTN_OK && harness_declined(ctx, &s, st, "backward forward"))
            return; /* a forced forward variant that declines */
        CU_ASSERT_EQUAL_FATAL(st, ATTN_OK);
    }
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &s, &g), ATTN_OK);
    s.q_strides[0] = 64; /* the contiguous layout, spelled out */
    s.q_strides[1] = 32;
    s.q_strides[2] = 8;
    g.dq = dq2;
    g.dk = dk2;
    g.dv = dv2;
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &s, &g), ATTN_OK);
    CU_ASSERT(!memcmp(dq, dq2, sizeof dq) && !memcmp(dk, dk2, sizeof dk) &&
              !memcmp(dv, dv2, sizeof dv));
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
        {"F32 layouts", test_plain},
        {"F16 layouts", test_f16},
        {"BF16 layouts", test_bf16},
        {"GQA and masks", test_gqa_masks},
        {"decode shapes", test_decode},
        {"invalid strides", test_invalid},
        {"backward takes strides", test_backward_strided},
        {NULL, NULL}};
    return harness_main("test_strides", suite_init, suite_clean, tests);
}
