/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_varlen: packed variable-length batches (attn_sdpa_desc.cu_seqlens_q,
 * cu_seqlens_kv): sequences of different lengths (some without queries,
 * one without keys) packed without padding, F32 and F16, GQA, causal
 * bottom-right and top-left, a window, strided packed rows; each sequence
 * against the double-precision oracle of its own contiguous problem, lse
 * in [heads_q, total_q].  Then the checks of the arrays.  Runs on the
 * context ATTN_DEVICE picks; a forced kernel variant may decline.
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

#define NSEQ 4

/* One packed problem: lengths lq[b], lk[b], rows of width `pad` extra
 * elements past heads * dim when pad > 0 (strided rows). */
static int run(const attn_sdpa_desc *shape, const int *lq, const int *lk,
               int pad, const char *what)
{
    const int B = shape->batch, HQ = shape->heads_q, HK = shape->heads_kv;
    const int D = shape->head_dim, DV = shape->head_dim_v;
    const size_t elem = shape->dtype == ATTN_F16 ? 2 : 4;
    int32_t cq[NSEQ + 1] = {0}, ck[NSEQ + 1] = {0};
    attn_sdpa_desc d = *shape;
    sdpa_case c[NSEQ];
    int ok = 1;
    for (int b = 0; b < B; b++) {
        cq[b + 1] = cq[b] + lq[b];
        ck[b + 1] = ck[b] + lk[b];
    }
    const size_t tq = (size_t)cq[B], tk = (size_t)ck[B];
    const size_t rq = (size_t)(HQ * D + pad), rk = (size_t)(HK * D + pad),
                 rv = (size_t)(HK * DV + pad), ro = (size_t)(HQ * DV + pad);
    char *q = calloc(tq * rq, elem), *k = calloc(tk * rk, elem),
         *v = calloc(tk * rv, elem), *o = malloc(tq * ro * elem);
    float *lse = malloc(tq * (size_t)HQ * sizeof *lse);
    CU_ASSERT_FATAL(q && k && v && o && lse);
    memset(o, 0x7f, tq * ro * elem);
    d.cu_seqlens_q = cq;
    d.cu_seqlens_kv = ck;
    if (pad) {
        d.q_strides[1] = D;
        d.q_strides[2] = (int64_t)rq;
        d.k_strides[1] = D;
        d.k_strides[2] = (int64_t)rk;
        d.v_strides[1] = DV;
        d.v_strides[2] = (int64_t)rv;
        d.o_strides[1] = DV;
        d.o_strides[2] = (int64_t)ro;
    }
    /* each sequence's own problem, scattered into the packed rows */
    for (int b = 0; b < B; b++) {
        attn_sdpa_desc one = *shape;
        one.batch = 1;
        one.seq_q = lq[b] ? lq[b] : 1;
        one.seq_kv = lk[b] ? lk[b] : 1;
        CU_ASSERT_FATAL(
            sdpa_case_init(&c[b], &one, 100 + (uint64_t)b, 2.0, 0, 0) == 0);
        for (int h = 0; h < HQ; h++)
            for (int i = 0; i < lq[b]; i++)
                memcpy(q + ((size_t)(cq[b] + i) * rq + (size_t)(h * D)) * elem,
                       (char *)c[b].q + ((size_t)h * one.seq_q + i) * D * elem,
                       (size_t)D * elem);
        for (int h = 0; h < HK; h++)
            for (int j = 0; j < lk[b]; j++) {
                memcpy(k + ((size_t)(ck[b] + j) * rk + (size_t)(h * D)) * elem,
                       (char *)c[b].k + ((size_t)h * one.seq_kv + j) * D * elem,
                       (size_t)D * elem);
                memcpy(v + ((size_t)(ck[b] + j) * rv + (size_t)(h * DV)) * elem,
                       (char *)c[b].v +
                           ((size_t)h * one.seq_kv + j) * DV * elem,
                       (size_t)DV * elem);
            }
    }
    attn_status st = attn_sdpa(ctx, &d, q, k, v, o, lse);
    if (st != ATTN_OK && harness_declined(ctx, &d, st, what)) {
        ok = 1;
    } else if (st != ATTN_OK) {
        printf("\n%s: %s: %s\n", what, attn_status_string(st),
               attn_last_error());
        ok = 0;
    } else {
        harness_taken();
        for (int b = 0; b < B; b++) {
            if (lq[b] == 0)
                continue;
            attn_sdpa_desc one = c[b].d;
            char *ob = malloc((size_t)HQ * lq[b] * DV * elem);
            float *lb = malloc((size_t)HQ * lq[b] * sizeof *lb);
            CU_ASSERT_FATAL(ob && lb);
            for (int h = 0; h < HQ; h++)
                for (int i = 0; i < lq[b]; i++) {
                    memcpy(ob + ((size_t)h * lq[b] + i) * DV * elem,
                           o + ((size_t)(cq[b] + i) * ro + (size_t)(h * DV)) *
                                   elem,
                           (size_t)DV * elem);
                    lb[h * lq[b] + i] = lse[(size_t)h * tq + cq[b] + i];
                }
            if (lk[b] == 0) {
                int bad = 0;
                for (size_t e = 0; e < (size_t)HQ * lq[b] * DV * elem; e++)
                    bad |= ob[e] != 0;
                for (int r = 0; r < HQ * lq[b]; r++)
                    bad |= !(isinf(lb[r]) && lb[r] < 0);
                HARNESS_EXPECT(!bad, what);
                ok &= !bad;
            } else {
                ref_sdpa_result r;
                CU_ASSERT_FATAL(ref_sdpa(&one, c[b].q, c[b].k, c[b].v, &r) ==
                                0);
                ok &= ref_check_sdpa(what, &one, &r, ob, lb, NULL);
                ref_sdpa_free(&r);
            }
            free(ob);
            free(lb);
        }
        /* the padding of o's rows is the caller's */
        if (pad) {
            int bad = 0;
            for (size_t i = 0; i < tq; i++)
                for (size_t e = (size_t)(HQ * DV) * elem; e < ro * elem; e++)
                    bad |= (unsigned char)o[i * ro * elem + e] != 0x7f;
            HARNESS_EXPECT(!bad, what);
            ok &= !bad;
        }
    }
    for (int b = 0; b < B; b++)
        sdpa_case_free(&c[b]);
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse);
    return ok;
}

static attn_sdpa_desc shape(int hq, int hkv, int d, int dv, attn_dtype dt)
{
    attn_sdpa_desc s;
    attn_sdpa_desc_init(&s);
    s.batch = NSEQ;
    s.heads_q = hq;
    s.heads_kv = hkv;
    s.seq_q = 70;
    s.seq_kv = 90;
    s.head_dim = d;
    s.head_dim_v = dv;
    s.dtype = dt;
    return s;
}

static void test_packed(void)
{
    static const int lq[NSEQ] = {17, 0, 70, 5}, lk[NSEQ] = {29, 3, 90, 0};
    static const int lq2[NSEQ] = {1, 1, 1, 1}, lk2[NSEQ] = {90, 7, 33, 64};
    attn_sdpa_desc s = shape(4, 2, 32, 32, ATTN_F32);
    CU_ASSERT(run(&s, lq, lk, 0, "F32 GQA"));
    CU_ASSERT(run(&s, lq, lk, 5, "F32 GQA strided rows"));
    s.mask.causal = 1;
    CU_ASSERT(run(&s, lq, lk, 0, "causal bottom-right"));
    s.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT(run(&s, lq, lk, 3, "causal top-left"));
    s.mask.window = 6;
    CU_ASSERT(run(&s, lq, lk, 0, "top-left window"));
    s = shape(2, 2, 16, 24, ATTN_F16);
    CU_ASSERT(run(&s, lq, lk, 0, "F16 head_dim_v"));
    s = shape(8, 2, 64, 64, ATTN_F32);
    CU_ASSERT(run(&s, lq2, lk2, 0, "decode rows"));
}

static void test_invalid(void)
{
    attn_sdpa_desc s = shape(2, 2, 8, 8, ATTN_F32);
    static float q[4096], k[4096], v[4096], o[4096], lse[512];
    int32_t cq[NSEQ + 1] = {0, 2, 4, 6, 8}, ck[NSEQ + 1] = {0, 3, 6, 9, 12};
    attn_sdpa_desc t;
#define CALL(d) attn_sdpa(ctx, &(d), q, k, v, o, lse)
    t = s;
    t.cu_seqlens_q = cq;
    t.cu_seqlens_kv = ck;
    {
        attn_status st = CALL(t);
        CU_ASSERT(st == ATTN_OK || harness_declined(ctx, &t, st, "valid"));
    }
    t.cu_seqlens_kv = NULL; /* one alone */
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    t.cu_seqlens_kv = ck;
    cq[0] = 1; /* not from 0 */
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    cq[0] = 0;
    cq[2] = 1; /* decreasing */
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    cq[2] = 4;
    t.seq_kv = 2; /* a sequence longer than seq_kv */
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    t.seq_kv = s.seq_kv;
    t.q_strides[0] = 16; /* a batch stride */
    t.q_strides[1] = 8;
    t.q_strides[2] = 16;
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    t.q_strides[0] = 0;
    t.o_strides[1] = 8; /* o's rows on each other */
    t.o_strides[2] = 8;
    CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_INVALID_ARGUMENT);
    t.o_strides[1] = t.o_strides[2] = 0;
    /* o on the packed k */
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &t, q, k, v, k + 16, lse),
                    ATTN_ERR_INVALID_ARGUMENT);
    /* masks packed sequences do not take */
    {
        int32_t kl[NSEQ] = {1, 1, 1, 1};
        t.mask.kv_len = kl;
        CU_ASSERT_EQUAL(CALL(t), ATTN_ERR_UNSUPPORTED);
        t.mask.kv_len = NULL;
    }
    /* the backward pass takes them (tests/test_backward.c checks them
     * against the oracle); a packed dq on the packed k is refused */
    {
        attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
        g.q = q;
        g.k = k;
        g.v = v;
        g.o = o;
        g.lse = lse;
        g.d_o = o;
        g.dq = q + 2048;
        g.dk = k + 2048;
        g.dv = v + 2048;
        {
            attn_status st = attn_sdpa_backward(ctx, &t, &g);
            CU_ASSERT(st == ATTN_OK ||
                      harness_declined(ctx, &t, st, "packed backward"));
        }
        g.dq = k + 8;
        CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &t, &g),
                        ATTN_ERR_INVALID_ARGUMENT);
    }
#undef CALL
}

/* The plan queries (attn_sdpa_kernel, attn_sdpa_precision) take a packed
 * call exactly when attn_sdpa does: checked at the totals, as attn_sdpa
 * checks it, even where the bounds seq_q / seq_kv exceed the totals and
 * o is head-major ([heads, total_q, dim]: its heads apart only by the
 * totals). */
static void test_queries(void)
{
    attn_sdpa_desc t = shape(2, 2, 8, 8, ATTN_F32);
    static float q[4096], k[4096], v[4096], o[4096];
    int32_t cq[NSEQ + 1] = {0, 2, 3, 6, 8}, ck[NSEQ + 1] = {0, 3, 6, 9, 12};
    attn_precision asked, runs;
    char name[64];
    attn_status st;
    t.seq_q = 20; /* bounds past the totals (8 and 12 rows) */
    t.seq_kv = 30;
    t.cu_seqlens_q = cq;
    t.cu_seqlens_kv = ck;
    t.o_strides[0] = 0;
    t.o_strides[1] = 8 * 8; /* head-major o */
    t.o_strides[2] = 8;
    for (int i = 0; i < 4096; i++)
        q[i] = k[i] = v[i] = (float)(i % 7) * 0.25f;
    st = attn_sdpa(ctx, &t, q, k, v, o, NULL);
    if (st != ATTN_OK && harness_declined(ctx, &t, st, "head-major o"))
        return;
    CU_ASSERT_EQUAL(st, ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &t, name, sizeof name), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &t, &asked, &runs), ATTN_OK);
    /* and both refuse what attn_sdpa refuses: o's heads on each other */
    t.o_strides[1] = 8;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &t, q, k, v, o, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_kernel(ctx, &t, name, sizeof name),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sdpa_precision(ctx, &t, &asked, &runs),
                    ATTN_ERR_INVALID_ARGUMENT);
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
        {"packed sequences against the oracle", test_packed},
        {"checks of the packed arrays", test_invalid},
        {"plan queries of packed calls", test_queries},
        {NULL, NULL}};
    return harness_main("test_varlen", suite_init, suite_clean, tests);
}
