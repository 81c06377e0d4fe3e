/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_layer: the persistent multi-head layer (attn_mha_create,
 * attn_mha_forward_layer, attn_mha_destroy) against the double-precision
 * reference: its scale, F16 and BF16 activations, a KV cache filled step by
 * step (prefill, single tokens, several tokens at once) against the full causal
 * sequence, a decoder loop against the layer's own full-sequence forward,
 * the weights held by the layer after the caller's copies are gone, and
 * every argument it refuses.
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

static attn_context *ctx;

/* d_model 20, 4 query heads of 6 over 2 kv heads, 2 batch items. */
static mha_spec base_spec(int seq, attn_posenc posenc)
{
    mha_spec s;
    memset(&s, 0, sizeof s);
    s.d_model = 20;
    s.heads_q = 4;
    s.heads_kv = 2;
    s.head_dim = 6;
    s.batch = 2;
    s.seq_q = seq;
    s.seq_kv = seq;
    s.self = 1;
    s.with_bias = 1;
    s.posenc = posenc;
    return s;
}

/* ---- IEEE half, for the F16 activations ---------------------------------- */

static uint16_t to_half(float f)
{
    /* Exact for the values the tests make: |f| < 8, kept to 10 bits. */
    double a = fabs((double)f);
    uint16_t sign = f < 0 ? 0x8000u : 0;
    int e;
    if (a == 0.0)
        return sign;
    (void)frexp(a, &e); /* a = m 2^e, m in [0.5, 1) */
    if (e - 1 < -14) {  /* subnormal: units of 2^-24 */
        return (uint16_t)(sign | (uint16_t)lrint(ldexp(a, 24)));
    }
    long man = lrint(ldexp(a, 11 - e)); /* 11 bits with the leading one */
    if (man == 2048) {
        man = 1024;
        e++;
    }
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) |
                      (uint16_t)(man - 1024));
}

static float from_half(uint16_t h)
{
    int e = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v = e ? ldexp(1024 + man, e - 25) : ldexp(man, -24);
    if (e == 0x1f)
        v = man ? NAN : INFINITY;
    return (float)((h & 0x8000u) ? -v : v);
}

/* ---- the layer against the reference ---------------------------------------
 */

/* The layer of c with scale, run on x_q (F32 or, rounded, F16) against
 * ref_mha_scaled on the same inputs; the layer is created from make
 * (c's descriptor with other arrays, 16-bit ones) or, NULL, from c->m. */
static int check_layer_from(const mha_case *c, const attn_mha_desc *make,
                            float scale, attn_dtype dtype, const char *what)
{
    attn_mha_layer *layer = NULL;
    size_t nq = c->nxq, nkv = c->nxkv, ny = c->ny;
    float *xq = malloc(nq * sizeof *xq), *xkv = malloc((nkv + 1) * sizeof *xkv);
    float *y = malloc(ny * sizeof *y);
    uint16_t *hq = malloc(nq * 2), *hkv = malloc((nkv + 1) * 2),
             *hy = malloc(ny * 2);
    double *want = malloc(ny * sizeof *want);
    int ok = 0;
    attn_status st;
    if (!xq || !xkv || !y || !hq || !hkv || !hy || !want)
        goto out;
    /* x as the layer sees it: rounded to the 16-bit dtype */
    for (size_t i = 0; i < nq; i++) {
        hq[i] = dtype == ATTN_BF16 ? ref_f32_to_bf16(c->x_q[i])
                                   : to_half(c->x_q[i]);
        xq[i] = dtype == ATTN_F32 ? c->x_q[i] : (float)ref_elem(dtype, hq, i);
    }
    for (size_t i = 0; i < nkv; i++) {
        hkv[i] = dtype == ATTN_BF16 ? ref_f32_to_bf16(c->x_kv[i])
                                    : to_half(c->x_kv[i]);
        xkv[i] =
            dtype == ATTN_F32 ? c->x_kv[i] : (float)ref_elem(dtype, hkv, i);
    }
    if (ref_mha_scaled(&c->m, scale, c->batch, c->seq_q, c->seq_kv, xq,
                       c->x_kv ? xkv : NULL, &c->mask, want) != 0)
        goto out;
    if ((st = attn_mha_create(ctx, make ? make : &c->m, scale, &layer)) !=
        ATTN_OK) {
        printf("\nFAIL %s: attn_mha_create: %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        goto out;
    }
    if (dtype == ATTN_F32)
        st = attn_mha_forward_layer(ctx, layer, c->batch, c->seq_q, c->seq_kv,
                                    ATTN_F32, xq, c->x_kv ? xkv : NULL,
                                    &c->mask, NULL, y);
    else
        st = attn_mha_forward_layer(ctx, layer, c->batch, c->seq_q, c->seq_kv,
                                    dtype, hq, c->x_kv ? hkv : NULL, &c->mask,
                                    NULL, hy);
    if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_mha_forward_layer: %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        goto out;
    }
    if (dtype == ATTN_F16) {
        /* y rounded to half: 2^-11 relative on top of the float bound. */
        for (size_t i = 0; i < ny; i++)
            y[i] = from_half(hy[i]);
        ok = ref_check_f32(what, y, want, ny, REF_MHA_ABS,
                           REF_MHA_REL + 1.0 / 2048);
    } else if (dtype == ATTN_BF16) {
        /* y rounded to bfloat16: half an ulp, 2^-8 relative (REF_BF16_REL),
         * on top of the float bound; the activations are O(1), far from
         * the flushed range */
        for (size_t i = 0; i < ny; i++)
            y[i] = ref_bf16_to_f32(hy[i]);
        ok = ref_check_f32(what, y, want, ny, REF_MHA_ABS,
                           REF_MHA_REL + REF_BF16_REL);
    } else {
        ok = ref_check_f32(what, y, want, ny, REF_MHA_ABS, REF_MHA_REL);
    }
out:
    attn_mha_destroy(layer);
    free(xq);
    free(xkv);
    free(y);
    free(hq);
    free(hkv);
    free(hy);
    free(want);
    return ok;
}

static int check_layer(const mha_case *c, float scale, attn_dtype dtype,
                       const char *what)
{
    return check_layer_from(c, NULL, scale, dtype, what);
}

static void test_layer_like_forward(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_NONE, ATTN_POSENC_SINUSOIDAL,
                                 ATTN_POSENC_LEARNED, ATTN_POSENC_ROPE};
    for (int k = 0; k < 4; k++)
        for (int self = 0; self < 2; self++) {
            mha_spec s = base_spec(5, kinds[k]);
            mha_case c;
            char what[96];
            s.self = self;
            s.seq_kv = 7;
            s.causal = self;
            CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 300 + 2 * k + self), 0);
            snprintf(what, sizeof what, "layer, posenc %d, %s", k,
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(check_layer(&c, 0.0f, ATTN_F32, what));
            snprintf(what, sizeof what, "layer, posenc %d, %s, scale 0.7", k,
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(check_layer(&c, 0.7f, ATTN_F32, what));
            snprintf(what, sizeof what, "layer F16, posenc %d, %s", k,
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(check_layer(&c, 0.0f, ATTN_F16, what));
            snprintf(what, sizeof what, "layer BF16, posenc %d, %s", k,
                     self ? "self" : "cross");
            CU_ASSERT_TRUE(check_layer(&c, 0.0f, ATTN_BF16, what));
            mha_case_free(&c);
        }
}

/* A layer created from F16 or BF16 weights (weight_dtype) against the
 * reference given the same weights as floats, with F32 and BF16
 * activations. */
static void test_layer_weights16(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_NONE, ATTN_POSENC_LEARNED,
                                 ATTN_POSENC_ROPE};
    const attn_dtype dts[] = {ATTN_F16, ATTN_BF16};
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 3; k++)
            for (int self = 0; self < 2; self++) {
                mha_spec s = base_spec(5, kinds[k]);
                mha_case c;
                attn_mha_desc m16;
                uint16_t *mem = NULL;
                const char *wname = dts[d] == ATTN_BF16 ? "BF16" : "F16";
                char what[96];
                s.self = self;
                s.seq_kv = 7;
                s.causal = self;
                s.score =
                    k == 2 && !self ? ATTN_SCORE_ADDITIVE : ATTN_SCORE_DOT;
                CU_ASSERT_EQUAL_FATAL(
                    mha_case_init(&c, &s,
                                  500 + (uint64_t)(d * 6 + k * 2 + self)),
                    0);
                CU_ASSERT_EQUAL_FATAL(
                    mha_case_weights16(&c, dts[d], &m16, &mem), 0);
                snprintf(what, sizeof what, "layer %s weights, posenc %d, %s",
                         wname, k, self ? "self" : "cross");
                CU_ASSERT_TRUE(
                    check_layer_from(&c, &m16, 0.0f, ATTN_F32, what));
                snprintf(what, sizeof what,
                         "layer %s weights, BF16 x, posenc %d, %s", wname, k,
                         self ? "self" : "cross");
                CU_ASSERT_TRUE(
                    check_layer_from(&c, &m16, 0.0f, ATTN_BF16, what));
                /* An unknown weight_dtype is refused. */
                m16.weight_dtype = (attn_dtype)9;
                {
                    attn_mha_layer *layer = NULL;
                    CU_ASSERT_EQUAL(attn_mha_create(ctx, &m16, 0.0f, &layer),
                                    ATTN_ERR_INVALID_ARGUMENT);
                    CU_ASSERT_PTR_NULL(layer);
                }
                free(mem);
                mha_case_free(&c);
            }
}

/* The weights are the layer's: the caller's arrays may change or go. */
static void test_layer_owns_weights(void)
{
    mha_spec s = base_spec(6, ATTN_POSENC_ROPE);
    mha_case c;
    attn_mha_layer *layer = NULL;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 41), 0);
    double *want = mha_case_reference(&c);
    float *y = malloc(c.ny * sizeof *y);
    CU_ASSERT_FATAL(want && y);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &c.m, 0.0f, &layer), ATTN_OK);
    for (int i = 0; i < 4; i++) {
        size_t n = i == 0 ? (size_t)s.heads_q * s.head_dim * s.d_model
                          : (size_t)s.d_model * s.heads_kv * s.head_dim;
        if (i == 3)
            n = (size_t)s.d_model * s.heads_q * s.head_dim;
        for (size_t j = 0; j < n; j++)
            c.w[i][j] = NAN;
    }
    CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, c.batch, c.seq_q,
                                           c.seq_kv, ATTN_F32, c.x_q, NULL,
                                           &c.mask, NULL, y),
                    ATTN_OK);
    CU_ASSERT_TRUE(ref_check_f32("the layer's own weights", y, want, c.ny,
                                 REF_MHA_ABS, REF_MHA_REL));
    /* Twice: the held weights are used again, unchanged. */
    CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, c.batch, c.seq_q,
                                           c.seq_kv, ATTN_F32, c.x_q, NULL,
                                           &c.mask, NULL, y),
                    ATTN_OK);
    CU_ASSERT_TRUE(ref_check_f32("the layer's own weights, again", y, want,
                                 c.ny, REF_MHA_ABS, REF_MHA_REL));
    attn_mha_destroy(layer);
    free(want);
    free(y);
    mha_case_free(&c);
}

/* ---- the KV cache ----------------------------------------------------------
 */

/* Rows t0 .. t0+n-1 of every batch item of x [batch, seq, d] into out
 * [batch, n, d]. */
static void take_rows(const float *x, int batch, int seq, int d, int t0, int n,
                      float *out)
{
    for (int b = 0; b < batch; b++)
        memcpy(out + (size_t)b * n * d, x + ((size_t)b * seq + t0) * d,
               (size_t)n * d * sizeof *out);
}

/* Feeds the sequence of c (self, causal, seq_q tokens) through the layer
 * in steps of the sizes in steps[] (summing to seq_q) with a KV cache of
 * capacity cap, and puts each step's y rows where the full sequence's
 * would be: y [batch, seq_q, d_model]. */
static int run_steps(attn_mha_layer *layer, const mha_case *c, const int *steps,
                     int n_steps, int cap, float *y, const char *what)
{
    const int d = c->m.d_model, batch = c->batch, seq = c->seq_q;
    const size_t cache_n =
        (size_t)batch * c->m.heads_kv * (size_t)cap * c->m.head_dim;
    float *k = malloc(cache_n * sizeof *k), *v = malloc(cache_n * sizeof *v);
    float *xs = malloc((size_t)batch * seq * d * sizeof *xs);
    float *ys = malloc((size_t)batch * seq * d * sizeof *ys);
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    int ok = k && v && xs && ys, t = 0;
    mask.causal = 1;
    kv.k = k;
    kv.v = v;
    kv.capacity = cap;
    /* What lies past len must never be read: NaN would show. */
    for (size_t i = 0; ok && i < cache_n; i++)
        k[i] = v[i] = NAN;
    for (int i = 0; ok && i < n_steps; i++) {
        const int n = steps[i];
        attn_status st;
        take_rows(c->x_q, batch, seq, d, t, n, xs);
        st = attn_mha_forward_layer(ctx, layer, batch, n, n, ATTN_F32, xs, NULL,
                                    &mask, &kv, ys);
        if (st != ATTN_OK || kv.len != t + n) {
            printf("\nFAIL %s: step %d (%d tokens at %d): %s, len %d (%s)\n",
                   what, i, n, t, attn_status_string(st), kv.len,
                   attn_context_last_error(ctx));
            ok = 0;
            break;
        }
        for (int b = 0; b < batch; b++)
            memcpy(y + ((size_t)b * seq + t) * d, ys + (size_t)b * n * d,
                   (size_t)n * d * sizeof *y);
        t += n;
    }
    free(k);
    free(v);
    free(xs);
    free(ys);
    return ok;
}

static void test_cache_against_reference(void)
{
    const attn_posenc kinds[] = {ATTN_POSENC_NONE, ATTN_POSENC_SINUSOIDAL,
                                 ATTN_POSENC_LEARNED, ATTN_POSENC_ROPE};
    static const int steps[] = {5, 1, 1, 3, 1, 2, 1};
    const int seq = 14;
    for (int k = 0; k < 4; k++)
        for (int off = 0; off < 2; off++) {
            mha_spec s = base_spec(seq, kinds[k]);
            mha_case c;
            attn_mha_layer *layer = NULL;
            char what[96];
            s.causal = 1;
            s.pos_offset = off ? 3 : 0;
            CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 500 + 2 * k + off), 0);
            double *want = malloc(c.ny * sizeof *want);
            float *y = malloc(c.ny * sizeof *y);
            CU_ASSERT_FATAL(want && y);
            CU_ASSERT_EQUAL_FATAL(ref_mha_scaled(&c.m, 0.5f, c.batch, seq, seq,
                                                 c.x_q, NULL, &c.mask, want),
                                  0);
            CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &c.m, 0.5f, &layer),
                                  ATTN_OK);
            snprintf(what, sizeof what, "KV cache, posenc %d, pos_offset %d", k,
                     s.pos_offset);
            CU_ASSERT_TRUE(
                run_steps(layer, &c, steps, 7, seq + 3, y, what) &&
                ref_check_f32(what, y, want, c.ny, REF_MHA_ABS, REF_MHA_REL));
            attn_mha_destroy(layer);
            free(want);
            free(y);
            mha_case_free(&c);
        }
}

/* F16 activations with a cache (which holds floats): steps of 3, 1 and 2
 * tokens against the reference on the same halves. */
static void test_cache_f16(void)
{
    static const int steps[] = {3, 1, 2};
    mha_spec s = base_spec(6, ATTN_POSENC_ROPE);
    mha_case c;
    attn_mha_layer *layer = NULL;
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    s.causal = 1;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 88), 0);
    const int d = c.m.d_model, batch = c.batch, seq = c.seq_q;
    const size_t nkv =
        (size_t)batch * c.m.heads_kv * (size_t)seq * (size_t)c.m.head_dim;
    float *xr = malloc(c.nxq * sizeof *xr), *y = malloc(c.ny * sizeof *y),
          *k = malloc(nkv * sizeof *k), *v = malloc(nkv * sizeof *v),
          *xs = malloc(c.nxq * sizeof *xs);
    uint16_t *hx = malloc(c.nxq * 2), *hy = malloc(c.ny * 2);
    double *want = malloc(c.ny * sizeof *want);
    CU_ASSERT_FATAL(xr && y && k && v && xs && hx && hy && want);
    for (size_t i = 0; i < c.nxq; i++)
        xr[i] = from_half(to_half(c.x_q[i]));
    CU_ASSERT_EQUAL_FATAL(
        ref_mha_scaled(&c.m, 0.0f, batch, seq, seq, xr, NULL, &c.mask, want),
        0);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &c.m, 0.0f, &layer), ATTN_OK);
    mask.causal = 1;
    kv.k = k;
    kv.v = v;
    kv.capacity = seq;
    for (int i = 0, t = 0; i < 3; t += steps[i++]) {
        const int n = steps[i];
        take_rows(xr, batch, seq, d, t, n, xs);
        for (size_t j = 0; j < (size_t)batch * n * d; j++)
            hx[j] = to_half(xs[j]);
        CU_ASSERT_EQUAL_FATAL(attn_mha_forward_layer(ctx, layer, batch, n, n,
                                                     ATTN_F16, hx, NULL, &mask,
                                                     &kv, hy),
                              ATTN_OK);
        for (int b = 0; b < batch; b++)
            for (size_t j = 0; j < (size_t)n * d; j++)
                y[((size_t)b * seq + t) * d + j] =
                    from_half(hy[(size_t)b * n * d + j]);
    }
    CU_ASSERT_EQUAL(kv.len, seq);
    CU_ASSERT_TRUE(ref_check_f32("KV cache, F16", y, want, c.ny, REF_MHA_ABS,
                                 REF_MHA_REL + 1.0 / 2048));
    attn_mha_destroy(layer);
    free(xr);
    free(y);
    free(k);
    free(v);
    free(xs);
    free(hx);
    free(hy);
    free(want);
    mha_case_free(&c);
}

/* A decoder loop of one token per step gives the layer's full-sequence
 * causal forward, MHA and MQA. */
static void test_decoder_loop(void)
{
    const int seq = 40;
    int steps[40];
    for (int i = 0; i < seq; i++)
        steps[i] = 1;
    for (int mqa = 0; mqa < 2; mqa++) {
        mha_spec s = base_spec(seq, ATTN_POSENC_ROPE);
        mha_case c;
        attn_mha_layer *layer = NULL;
        s.causal = 1;
        s.heads_kv = mqa ? 1 : 4;
        s.batch = 1;
        CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 77 + mqa), 0);
        float *full = malloc(c.ny * sizeof *full),
              *y = malloc(c.ny * sizeof *y);
        double *fd = malloc(c.ny * sizeof *fd);
        CU_ASSERT_FATAL(full && y && fd);
        CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &c.m, 0.0f, &layer),
                              ATTN_OK);
        CU_ASSERT_EQUAL_FATAL(attn_mha_forward_layer(ctx, layer, 1, seq, seq,
                                                     ATTN_F32, c.x_q, NULL,
                                                     &c.mask, NULL, full),
                              ATTN_OK);
        for (size_t i = 0; i < c.ny; i++)
            fd[i] = full[i];
        CU_ASSERT_TRUE(run_steps(layer, &c, steps, seq, seq, y,
                                 mqa ? "decoder loop, MQA" : "decoder loop") &&
                       ref_check_f32(mqa ? "decoder loop, MQA" : "decoder loop",
                                     y, fd, c.ny, REF_MHA_ABS, REF_MHA_REL));
        attn_mha_destroy(layer);
        free(full);
        free(y);
        free(fd);
        mha_case_free(&c);
    }
}

/* ---- what the layer refuses -----------------------------------------------
 */

/* st is an error with a sentence, and y still holds its sentinel. */
static int refused(attn_status st, attn_status want, const float *y,
                   const char *what)
{
    const char *msg = attn_context_last_error(ctx);
    if (st != want || !msg || !*msg || y[0] != 123.0f) {
        printf("\nFAIL %s: got %s (\"%s\"), y[0] %g\n", what,
               attn_status_string(st), msg ? msg : "(null)", (double)y[0]);
        return 0;
    }
    return 1;
}

/* A LEARNED table of known length is the caller's whole table: an output
 * over a row past the ones the call reads is refused too, the table
 * untouched (forward y, backward d_bo). */
static void test_pos_table_overlap(void)
{
    const float w[4] = {1.0f, 0.0f, 0.0f, 1.0f}, x[4] = {0.5f, -0.5f, 1, 2};
    float table[8 * 2], was[8 * 2], dy[4] = {1, 1, 1, 1};
    attn_mha_desc m = ATTN_MHA_DESC_INIT;
    attn_mha_grad g = ATTN_MHA_GRAD_INIT;
    for (int i = 0; i < 16; i++)
        table[i] = was[i] = 0.25f * (float)i;
    m.d_model = 2;
    m.heads_q = m.heads_kv = 1;
    m.head_dim = 2;
    m.wq = m.wk = m.wv = m.wo = w;
    m.posenc = ATTN_POSENC_LEARNED;
    m.pos_table = table;
    m.pos_table_len = 8; /* rows 0 and 1 are read */
    CU_ASSERT_EQUAL(
        attn_mha_forward(ctx, &m, 1, 2, 2, x, NULL, NULL, table + 6 * 2),
        ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "pos_table") != NULL);
    g.d_y = dy;
    g.d_bo = table + 7 * 2;
    CU_ASSERT_EQUAL(
        attn_mha_backward(ctx, &m, 1, 2, 2, x, NULL, NULL, NULL, &g),
        ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(memcmp(table, was, sizeof table), 0);
}

/* 16-bit activations are checked as the caller passes them (two bytes an
 * element) before the layer converts them: y over the mask's arrays or one
 * half into x_q is refused with nothing written, y just past x_q runs, and
 * sizes past INT_MAX tokens are refused before a conversion reads x_q. */
static void test_16bit_checks(void)
{
    const float w[4] = {1.0f, 0.0f, 0.0f, 1.0f}, w1 = 1.0f;
    attn_mha_desc m = ATTN_MHA_DESC_INIT, m1 = ATTN_MHA_DESC_INIT;
    attn_mha_layer *layer = NULL, *tiny = NULL;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    float bias[16], bias_was[16];
    int32_t lens[8] = {4, 4, 4, 4, 4, 4, 4, 4};
    uint16_t buf[16], x1[64];
    const attn_dtype dts[] = {ATTN_F16, ATTN_BF16};
    attn_status st;
    m.d_model = 2;
    m.heads_q = m.heads_kv = 1;
    m.head_dim = 2;
    m.wq = m.wk = m.wv = m.wo = w;
    m1 = m;
    m1.d_model = m1.head_dim = 1;
    m1.wq = m1.wk = m1.wv = m1.wo = &w1;
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &m, 0.0f, &layer), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &m1, 0.0f, &tiny), ATTN_OK);
    for (int i = 0; i < 16; i++) {
        bias[i] = bias_was[i] = 0.25f * (float)(i % 5);
        buf[i] = to_half(0.5f);
    }
    memset(x1, 0, sizeof x1);
    for (int t = 0; t < 2; t++) {
        const attn_dtype dt = dts[t];
        /* y (4 rows of 2 halves, 16 bytes) over the bias [4, 4] */
        mask.bias_kind = ATTN_BIAS_SHARED;
        mask.bias = bias;
        st = attn_mha_forward_layer(ctx, layer, 1, 4, 4, dt, buf, NULL, &mask,
                                    NULL, (uint16_t *)(void *)bias);
        CU_ASSERT_EQUAL(st, ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "mask.bias") !=
                       NULL);
        CU_ASSERT_EQUAL(memcmp(bias, bias_was, sizeof bias), 0);
        /* y over kv_len */
        mask.bias_kind = ATTN_BIAS_NONE;
        mask.bias = NULL;
        mask.kv_len = lens;
        st = attn_mha_forward_layer(ctx, layer, 1, 4, 4, dt, buf, NULL, &mask,
                                    NULL, (uint16_t *)(void *)lens);
        CU_ASSERT_EQUAL(st, ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "mask.kv_len") !=
                       NULL);
        CU_ASSERT_EQUAL(lens[0], 4);
        mask.kv_len = NULL;
        /* x_q is buf[0..7]: y from buf[7] overlaps it, from buf[8] not */
        CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 1, 4, 4, dt, buf,
                                               NULL, NULL, NULL, buf + 7),
                        ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT_EQUAL(buf[7], to_half(0.5f));
        CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 1, 4, 4, dt, buf,
                                               NULL, NULL, NULL, buf + 8),
                        ATTN_OK);
        for (int i = 0; i < 16; i++)
            buf[i] = dt == ATTN_BF16 ? ref_f32_to_bf16(0.5f) : to_half(0.5f);
        /* 2^31 tokens: refused as the F32 call refuses them, x1 unread */
        st = attn_mha_forward_layer(ctx, tiny, 65536, 32768, 32768, dt, x1,
                                    NULL, NULL, NULL, buf);
        CU_ASSERT_EQUAL(st, ATTN_ERR_OUT_OF_MEMORY);
        CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "INT_MAX") != NULL);
        for (int i = 0; i < 16; i++)
            buf[i] = to_half(0.5f);
    }
    attn_mha_destroy(tiny);
    attn_mha_destroy(layer);
}

static void test_bad_input(void)
{
    mha_spec s = base_spec(4, ATTN_POSENC_ROPE);
    mha_case c;
    attn_mha_layer *layer = NULL, *other_layer = NULL;
    attn_context *other = NULL;
    attn_options o;
    attn_mask_desc mask = ATTN_MASK_DESC_INIT;
    const attn_status bad = ATTN_ERR_INVALID_ARGUMENT;
    /* The cache's rows: zeros, so that a step that succeeds over a cached
     * row reads defined values. */
    float y[2 * 4 * 20], k[2 * 2 * 4 * 6] = {0}, v[2 * 2 * 4 * 6] = {0};
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 9), 0);
    y[0] = 123.0f;
    mask.causal = 1;
    kv.k = k;
    kv.v = v;
    kv.capacity = 4;

    /* attn_mha_create */
    CU_ASSERT_EQUAL(attn_mha_create(NULL, &c.m, 0.0f, &layer), bad);
    CU_ASSERT_PTR_NULL(layer);
    CU_ASSERT_EQUAL(attn_mha_create(ctx, NULL, 0.0f, &layer), bad);
    CU_ASSERT_EQUAL(attn_mha_create(ctx, &c.m, 0.0f, NULL), bad);
    CU_ASSERT_EQUAL(attn_mha_create(ctx, &c.m, INFINITY, &layer), bad);
    CU_ASSERT_PTR_NULL(layer);
    {
        attn_mha_desc m = c.m;
        m.wk = NULL;
        CU_ASSERT_EQUAL(attn_mha_create(ctx, &m, 0.0f, &layer), bad);
        m = c.m;
        m.heads_kv = 3;
        CU_ASSERT_EQUAL(attn_mha_create(ctx, &m, 0.0f, &layer), bad);
        m = c.m;
        m.posenc = ATTN_POSENC_LEARNED;
        m.pos_table = c.x_q;
        m.pos_table_len = 0;
        CU_ASSERT_EQUAL(attn_mha_create(ctx, &m, 0.0f, &layer), bad);
        CU_ASSERT_PTR_NULL(layer);
    }
    attn_mha_destroy(NULL); /* a no-op */
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(ctx, &c.m, 0.0f, &layer), ATTN_OK);

    /* attn_mha_forward_layer */
    CU_ASSERT_EQUAL(attn_mha_forward_layer(NULL, layer, 2, 4, 4, ATTN_F32,
                                           c.x_q, NULL, &mask, NULL, y),
                    bad);
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, NULL, 2, 4, 4, ATTN_F32,
                                                  c.x_q, NULL, &mask, NULL, y),
                           bad, y, "NULL layer"));
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 4, 4, ATTN_F32,
                                                  NULL, NULL, &mask, NULL, y),
                           bad, y, "NULL x_q"));
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 4, 4, ATTN_F16,
                                                  NULL, NULL, &mask, NULL, y),
                           bad, y, "NULL x_q, F16"));
    CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 2, 4, 4, ATTN_F32, c.x_q,
                                           NULL, &mask, NULL, NULL),
                    bad);
    CU_ASSERT_TRUE(
        refused(attn_mha_forward_layer(ctx, layer, 2, 4, 4, (attn_dtype)7,
                                       c.x_q, NULL, &mask, NULL, y),
                bad, y, "unknown dtype"));
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 0, 4, 4, ATTN_F32,
                                                  c.x_q, NULL, &mask, NULL, y),
                           bad, y, "batch 0"));
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 4, 3, ATTN_F32,
                                                  c.x_q, NULL, &mask, NULL, y),
                           bad, y, "self-attention, seq_kv != seq_q"));
    CU_ASSERT_TRUE(
        refused(attn_mha_forward_layer(ctx, layer, 2, 4, 4, ATTN_F32, c.x_q,
                                       NULL, &mask, NULL, (float *)c.x_q),
                bad, (const float *)y, "y on x_q"));

    /* The cache: overflow, sizes, pointers, len; len untouched. */
    kv.len = 2;
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 3, 3, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "cache overflow"));
    CU_ASSERT_EQUAL(kv.len, 2);
    CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "do not fit") != NULL);
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 2, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "cache step, seq_kv != seq_q"));
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, c.x_q, &mask, &kv, y),
                           bad, y, "cache step with x_kv"));
    kv.len = 5;
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "len > capacity"));
    kv.len = -1;
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "negative len"));
    kv.len = 0;
    kv.v = NULL;
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "cache without v"));
    kv.v = k; /* the same array as k */
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "cache k and v overlap"));
    kv.v = v;
    kv.capacity = 0;
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "capacity 0"));
    kv.capacity = 4;
    kv.struct_size = 3; /* the size of no layout */
    CU_ASSERT_TRUE(refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                                  c.x_q, NULL, &mask, &kv, y),
                           bad, y, "cache struct_size"));
    kv.struct_size = sizeof kv;
    CU_ASSERT_EQUAL(kv.len, 0);
    {
        /* A mask sized for the step alone, not for cache + step. */
        attn_mask_desc bm = ATTN_MASK_DESC_INIT;
        int32_t lens[2] = {3, 3};
        bm.kv_len = lens;
        kv.len = 1;
        CU_ASSERT_TRUE(
            refused(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32, c.x_q,
                                           NULL, &bm, &kv, y),
                    bad, y, "kv_len past the cache's keys"));
        lens[0] = lens[1] = 2;
        CU_ASSERT_EQUAL(attn_mha_forward_layer(ctx, layer, 2, 1, 1, ATTN_F32,
                                               c.x_q, NULL, &bm, &kv, y),
                        ATTN_OK);
        CU_ASSERT_EQUAL(kv.len, 2);
        y[0] = 123.0f;
        kv.len = 0;
    }

    /* A layer of another context. */
    harness_options(&o);
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &other), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(other, &c.m, 0.0f, &other_layer),
                          ATTN_OK);
    CU_ASSERT_TRUE(
        refused(attn_mha_forward_layer(ctx, other_layer, 2, 4, 4, ATTN_F32,
                                       c.x_q, NULL, &mask, NULL, y),
                bad, y, "another context's layer"));
    CU_ASSERT_TRUE(strstr(attn_context_last_error(ctx), "another context") !=
                   NULL);
    attn_mha_destroy(other_layer);
    attn_context_destroy(other);

    /* attn_kv_cache_init_sized */
    CU_ASSERT_EQUAL(attn_kv_cache_init_sized(NULL, sizeof kv), bad);
    CU_ASSERT_EQUAL(attn_kv_cache_init_sized(&kv, 3), bad);
    kv.len = 7;
    attn_kv_cache_init(&kv);
    CU_ASSERT_EQUAL(kv.struct_size, sizeof kv);
    CU_ASSERT_EQUAL(kv.len, 0);
    CU_ASSERT_PTR_NULL(kv.k);

    attn_mha_destroy(layer);
    mha_case_free(&c);
}

/* On an OpenCL device the layer's attention runs the variant the context
 * asks for: a forced "decode" takes the cache's one-token steps and
 * refuses, naming itself, a step of more query rows than it takes. */
static void test_forced_kernel(void)
{
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    attn_options o;
    attn_context *dc = NULL;
    attn_mha_layer *layer = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    char name[32] = "";
    mha_spec s = base_spec(6, ATTN_POSENC_ROPE);
    mha_case c;
    int steps[6] = {1, 1, 1, 1, 1, 1};
    CU_ASSERT_EQUAL_FATAL(attn_context_device(ctx, &info), ATTN_OK);
    if (info.kind == ATTN_DEVICE_NATIVE) {
        printf("(native backend: no kernel variants) ");
        return;
    }
    harness_options(&o);
    o.kernel = "decode";
    o.path = ATTN_PATH_AUTO;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &dc), ATTN_OK);
    s.causal = 1;
    s.batch = 1;
    CU_ASSERT_EQUAL_FATAL(mha_case_init(&c, &s, 61), 0);
    double *want = mha_case_reference(&c);
    float *y = malloc(c.ny * sizeof *y);
    CU_ASSERT_FATAL(want && y);
    CU_ASSERT_EQUAL_FATAL(attn_mha_create(dc, &c.m, 0.0f, &layer), ATTN_OK);
    /* The step's attention: one query row against the cache. */
    d.batch = 1;
    d.heads_q = s.heads_q;
    d.heads_kv = s.heads_kv;
    d.seq_q = 1;
    d.seq_kv = 3;
    d.head_dim = d.head_dim_v = s.head_dim;
    d.mask.causal = 1;
    CU_ASSERT_EQUAL(attn_sdpa_kernel(dc, &d, name, sizeof name), ATTN_OK);
    CU_ASSERT_STRING_EQUAL(name, "decode");
    attn_context *suite_ctx = ctx;
    ctx = dc; /* run_steps runs on ctx */
    CU_ASSERT_TRUE(run_steps(layer, &c, steps, 6, 6, y, "forced decode") &&
                   ref_check_f32("forced decode", y, want, c.ny, REF_MHA_ABS,
                                 REF_MHA_REL));
    ctx = suite_ctx;
    CU_ASSERT_EQUAL(attn_mha_forward_layer(dc, layer, 1, 6, 6, ATTN_F32, c.x_q,
                                           NULL, &c.mask, NULL, y),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_TRUE(strstr(attn_context_last_error(dc), "\"decode\"") != NULL);
    attn_mha_destroy(layer);
    attn_context_destroy(dc);
    free(want);
    free(y);
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
        {"layer = reference (posenc, self/cross, scale, F16)",
         test_layer_like_forward},
        {"the layer holds its weights", test_layer_owns_weights},
        {"a layer from F16 and BF16 weights", test_layer_weights16},
        {"KV cache steps = full causal reference",
         test_cache_against_reference},
        {"KV cache with F16 activations", test_cache_f16},
        {"decoder loop = full-sequence forward", test_decoder_loop},
        {"bad input", test_bad_input},
        {"16-bit activations checked before they are converted",
         test_16bit_checks},
        {"outputs over a learned table's unread rows", test_pos_table_overlap},
        {"the forced kernel runs the layer's attention", test_forced_kernel},
        {NULL, NULL},
    };
    return harness_main("layer", suite_init, suite_clean, tests);
}
