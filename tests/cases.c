/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test problems and the guarded call + oracle check (see cases.h).
 */
#include "cases.h"
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GUARD      64 /* elements on each side of an output */
#define GUARD_BYTE 0x5a
#define UNSET_BYTE 0xff /* 0xffff / 0xffffffff: NaN in half and float */

static void *dup_bytes(const void *p, size_t n)
{
    if (!p)
        return NULL;
    void *r = malloc(n ? n : 1);
    if (r)
        memcpy(r, p, n);
    return r;
}

static int same_bytes(const void *a, const void *b, size_t n)
{
    if (!a || !b)
        return a == b;
    return memcmp(a, b, n) == 0;
}

/* An output buffer of n elements of es bytes with guards both sides; the
 * returned pointer is the start of the guarded region. */
static unsigned char *guarded_alloc(size_t n, size_t es)
{
    unsigned char *p = malloc((n + 2 * GUARD) * es);
    if (!p)
        return NULL;
    memset(p, GUARD_BYTE, GUARD * es);
    memset(p + GUARD * es, UNSET_BYTE, n * es);
    memset(p + (GUARD + n) * es, GUARD_BYTE, GUARD * es);
    return p;
}

static int guards_intact(const unsigned char *p, size_t n, size_t es)
{
    const unsigned char *tail = p + (GUARD + n) * es;
    for (size_t i = 0; i < GUARD * es; i++)
        if (p[i] != GUARD_BYTE || tail[i] != GUARD_BYTE)
            return 0;
    return 1;
}

/* Whether n bytes at p still hold UNSET_BYTE (nothing was written). */
static int untouched(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != UNSET_BYTE)
            return 0;
    return 1;
}

static size_t bias_elems(const attn_sdpa_desc *d)
{
    size_t plane = (size_t)d->seq_q * (size_t)d->seq_kv;
    switch (d->mask.bias_kind) {
    case ATTN_BIAS_SHARED:
        return plane;
    case ATTN_BIAS_PER_HEAD:
        return (size_t)d->heads_q * plane;
    case ATTN_BIAS_FULL:
        return (size_t)d->batch * (size_t)d->heads_q * plane;
    case ATTN_BIAS_KEY:
        return (size_t)d->batch * (size_t)d->seq_kv;
    case ATTN_BIAS_BROADCAST:
        return (size_t)d->bias_shape[0] * (size_t)d->bias_shape[1] *
               (size_t)d->bias_shape[2] * (size_t)d->seq_kv;
    default:
        return 0;
    }
}

static void fill_bias(ref_rng *r, float *bias, size_t n, double ninf)
{
    for (size_t i = 0; i < n; i++)
        bias[i] = ref_rng_uniform(r, 0.0, 1.0) < ninf
                      ? -INFINITY
                      : (float)ref_rng_uniform(r, -1.0, 1.0);
}

/* ---- attn_sdpa --------------------------------------------------------------
 */

void sdpa_case_free(sdpa_case *c)
{
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->additive_w);
    free(c->bias);
    free(c->kv_len);
    free(c->keep);
    free(c->starts);
    memset(c, 0, sizeof *c);
}

int sdpa_case_init(sdpa_case *c, const attn_sdpa_desc *shape, uint64_t seed,
                   double qk_amp, double ninf, int with_kv_len)
{
    memset(c, 0, sizeof *c);
    c->d = *shape;
    attn_sdpa_desc *d = &c->d;
    d->additive_w = NULL;
    d->mask.bias = NULL;
    d->mask.kv_len = NULL;
    d->keep = NULL;
    d->q_start = d->kv_start = NULL;
    size_t es = d->dtype == ATTN_F32 ? sizeof(float) : sizeof(uint16_t);
    size_t bhq = (size_t)d->batch * (size_t)d->heads_q;
    size_t bhkv = (size_t)d->batch * (size_t)d->heads_kv;
    c->nq = bhq * (size_t)d->seq_q * (size_t)d->head_dim;
    c->nk = bhkv * (size_t)d->seq_kv * (size_t)d->head_dim;
    c->nv = bhkv * (size_t)d->seq_kv * (size_t)d->head_dim_v;
    c->no = bhq * (size_t)d->seq_q * (size_t)d->head_dim_v;
    c->nlse = bhq * (size_t)d->seq_q;
    c->nbias = bias_elems(d);
    c->q = malloc(c->nq * es);
    c->k = malloc(c->nk * es);
    c->v = malloc(c->nv * es);
    if (!c->q || !c->k || !c->v)
        goto fail;
    ref_rng r;
    ref_rng_seed(&r, seed);
    if (d->dtype == ATTN_F16) {
        ref_fill_f16(&r, c->q, c->nq, -qk_amp, qk_amp);
        ref_fill_f16(&r, c->k, c->nk, -qk_amp, qk_amp);
        ref_fill_f16(&r, c->v, c->nv, -1.0, 1.0);
    } else if (d->dtype == ATTN_BF16) {
        ref_fill_bf16(&r, c->q, c->nq, -qk_amp, qk_amp);
        ref_fill_bf16(&r, c->k, c->nk, -qk_amp, qk_amp);
        ref_fill_bf16(&r, c->v, c->nv, -1.0, 1.0);
    } else {
        ref_fill_f32(&r, c->q, c->nq, -qk_amp, qk_amp);
        ref_fill_f32(&r, c->k, c->nk, -qk_amp, qk_amp);
        ref_fill_f32(&r, c->v, c->nv, -1.0, 1.0);
    }
    if (d->score == ATTN_SCORE_ADDITIVE) {
        size_t n = (size_t)d->heads_q * (size_t)d->head_dim;
        if (!(c->additive_w = malloc(n * sizeof(float))))
            goto fail;
        ref_fill_f32(&r, c->additive_w, n, -1.0, 1.0);
        d->additive_w = c->additive_w;
    }
    if (c->nbias) {
        if (!(c->bias = malloc(c->nbias * sizeof(float))))
            goto fail;
        fill_bias(&r, c->bias, c->nbias, ninf);
        d->mask.bias = c->bias;
    }
    if (with_kv_len & CASE_KV_LEN) {
        if (!(c->kv_len = malloc((size_t)d->batch * sizeof(int32_t))))
            goto fail;
        for (int b = 0; b < d->batch; b++)
            c->kv_len[b] = ref_rng_int(&r, 0, d->seq_kv);
        d->mask.kv_len = c->kv_len;
    }
    if (d->keep_shape[0] != 0) {
        c->nkeep = (size_t)d->keep_shape[0] * (size_t)d->keep_shape[1] *
                   (size_t)d->keep_shape[2] * (size_t)d->seq_kv;
        if (!(c->keep = malloc(c->nkeep ? c->nkeep : 1)))
            goto fail;
        for (size_t i = 0; i < c->nkeep; i++)
            c->keep[i] = ref_rng_uniform(&r, 0.0, 1.0) < 0.25
                             ? 0
                             : (uint8_t)ref_rng_int(&r, 1, 255);
        d->keep = c->keep;
    }
    if (with_kv_len & (CASE_Q_START | CASE_KV_START)) {
        /* left padding: starts mostly small, sometimes the whole length */
        if (!(c->starts = malloc(2 * (size_t)d->batch * sizeof(int32_t))))
            goto fail;
        for (int b = 0; b < d->batch; b++) {
            int most = ref_rng_uniform(&r, 0.0, 1.0) < 0.2 ? 1 : 3;
            c->starts[b] = ref_rng_int(&r, 0, d->seq_q / most);
            c->starts[d->batch + b] = ref_rng_int(&r, 0, d->seq_kv / most);
        }
        if (with_kv_len & CASE_Q_START)
            d->q_start = c->starts;
        if (with_kv_len & CASE_KV_START)
            d->kv_start = c->starts + d->batch;
    }
    return 0;
fail:
    sdpa_case_free(c);
    return -1;
}

/* The precision a call on ctx ran at, for its tolerance (ref.h): EXACT,
 * unless ATTN_PRECISION asks for another; then what attn_sdpa_precision
 * says (a failed query counts as EXACT, the strictest).  Only then is the
 * question asked, so that runs without the variable call nothing more. */
attn_precision sdpa_case_ran_at(attn_context *ctx, const attn_sdpa_desc *d)
{
    const char *env = getenv("ATTN_PRECISION");
    attn_precision p = ATTN_PRECISION_EXACT;
    if (!env || !*env || !strcasecmp(env, "exact") ||
        attn_sdpa_precision(ctx, d, NULL, &p) != ATTN_OK)
        return ATTN_PRECISION_EXACT;
    return p;
}

int sdpa_case_check(attn_context *ctx, const sdpa_case *c,
                    const ref_sdpa_result *ref, int with_lse,
                    const unsigned char *skip_rows, const char *what)
{
    const attn_sdpa_desc *d = &c->d;
    size_t es = d->dtype == ATTN_F32 ? sizeof(float) : sizeof(uint16_t);
    ref_sdpa_result own;
    int ok = 1;
    if (!ref) {
        if (ref_sdpa(d, c->q, c->k, c->v, &own) != 0) {
            printf("\nFAIL %s: out of memory in the reference\n", what);
            return 0;
        }
        ref = &own;
    }
    unsigned char *ob = guarded_alloc(c->no, es);
    unsigned char *lb = with_lse ? guarded_alloc(c->nlse, sizeof(float)) : NULL;
    void *q0 = dup_bytes(c->q, c->nq * es), *k0 = dup_bytes(c->k, c->nk * es);
    void *v0 = dup_bytes(c->v, c->nv * es);
    void *w0 = dup_bytes(c->additive_w,
                         c->additive_w ? (size_t)d->heads_q *
                                             (size_t)d->head_dim * sizeof(float)
                                       : 0);
    void *b0 = dup_bytes(c->bias, c->nbias * sizeof(float));
    void *l0 = dup_bytes(c->kv_len,
                         c->kv_len ? (size_t)d->batch * sizeof(int32_t) : 0);
    void *m0 = dup_bytes(c->keep, c->nkeep);
    if (!ob || (with_lse && !lb) || !q0 || !k0 || !v0 ||
        (c->additive_w && !w0) || (c->bias && !b0) || (c->kv_len && !l0) ||
        (c->keep && !m0)) {
        printf("\nFAIL %s: out of memory in the test\n", what);
        ok = 0;
        goto out;
    }
    void *o = ob + GUARD * es;
    float *lse = lb ? (float *)(void *)(lb + GUARD * sizeof(float)) : NULL;
    attn_status st = attn_sdpa(ctx, d, c->q, c->k, c->v, o, lse);
    if (st != ATTN_OK && harness_declined(ctx, d, st, what)) {
        /* A forced kernel that does not take the shape: nothing written. */
        if (!guards_intact(ob, c->no, es) ||
            (lb && !guards_intact(lb, c->nlse, sizeof(float))) ||
            !untouched(o, c->no * es) ||
            (lse && !untouched(lse, c->nlse * sizeof(float)))) {
            printf("\nFAIL %s: a declined call wrote its outputs\n", what);
            ok = 0;
        }
        goto out;
    }
    if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_sdpa returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        ok = 0;
        goto out;
    }
    harness_taken();
    if (!guards_intact(ob, c->no, es) ||
        (lb && !guards_intact(lb, c->nlse, sizeof(float)))) {
        printf("\nFAIL %s: attn_sdpa wrote outside o or lse\n", what);
        ok = 0;
    }
    if (!same_bytes(q0, c->q, c->nq * es) ||
        !same_bytes(k0, c->k, c->nk * es) ||
        !same_bytes(v0, c->v, c->nv * es) ||
        !same_bytes(w0, c->additive_w,
                    c->additive_w ? (size_t)d->heads_q * (size_t)d->head_dim *
                                        sizeof(float)
                                  : 0) ||
        !same_bytes(b0, c->bias, c->nbias * sizeof(float)) ||
        !same_bytes(l0, c->kv_len,
                    c->kv_len ? (size_t)d->batch * sizeof(int32_t) : 0) ||
        !same_bytes(m0, c->keep, c->nkeep)) {
        printf("\nFAIL %s: attn_sdpa modified an input\n", what);
        ok = 0;
    }
    if (!ref_check_sdpa_at(what, d, ref, o, lse, skip_rows,
                           sdpa_case_ran_at(ctx, d)))
        ok = 0;
out:
    free(ob);
    free(lb);
    free(q0);
    free(k0);
    free(v0);
    free(w0);
    free(b0);
    free(l0);
    free(m0);
    if (ref == &own)
        ref_sdpa_free(&own);
    return ok;
}

attn_status sdpa_backward_warm(attn_context *ctx)
{
    /* head_dim = head_dim_v at each size built at compile time, and the
     * run-time programs of capacity 64 and 128 for each of the two */
    static const int dims[][2] = {{32, 32}, {64, 64},  {96, 96},  {128, 128},
                                  {40, 40}, {40, 100}, {100, 40}, {100, 100}};
    static const attn_dtype dts[2] = {ATTN_F32, ATTN_F16};
    const size_t n = 2 * 128;
    unsigned char *z = calloc(n, sizeof(float));
    unsigned char *out[3] = {malloc(n * sizeof(float)),
                             malloc(n * sizeof(float)),
                             malloc(n * sizeof(float))};
    float lse[2] = {0.0f, 0.0f};
    attn_status s =
        z && out[0] && out[1] && out[2] ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY;
    for (int t = 0; s == ATTN_OK && t < 2; t++)
        for (size_t i = 0; s == ATTN_OK && i < sizeof dims / sizeof dims[0];
             i++) {
            attn_sdpa_desc d;
            attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
            memset(&d, 0, sizeof d);
            d.batch = d.heads_q = d.heads_kv = 1;
            d.seq_q = d.seq_kv = 2;
            d.head_dim = dims[i][0];
            d.head_dim_v = dims[i][1];
            d.dtype = dts[t];
            g.q = g.k = g.v = g.o = g.d_o = z;
            g.lse = lse;
            g.dq = out[0], g.dk = out[1], g.dv = out[2];
            s = attn_sdpa_backward(ctx, &d, &g);
        }
    free(z);
    for (int i = 0; i < 3; i++)
        free(out[i]);
    return s;
}

/* ---- attn_mha_forward -------------------------------------------------------
 */

void mha_case_free(mha_case *c)
{
    free(c->x_q);
    free(c->x_kv);
    for (int i = 0; i < 4; i++) {
        free(c->w[i]);
        free(c->b[i]);
    }
    free(c->additive_w);
    free(c->pos_table);
    free(c->bias);
    free(c->kv_len);
    memset(c, 0, sizeof *c);
}

static float *random_f32(ref_rng *r, size_t n, double amp)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (x)
        ref_fill_f32(r, x, n, -amp, amp);
    return x;
}

int mha_case_init(mha_case *c, const mha_spec *s, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    ref_rng r;
    ref_rng_seed(&r, seed);
    size_t dm = (size_t)s->d_model;
    size_t inq = (size_t)s->heads_q * (size_t)s->head_dim;
    size_t inkv = (size_t)s->heads_kv * (size_t)s->head_dim;
    int seq_kv = s->self ? s->seq_q : s->seq_kv;
    c->batch = s->batch;
    c->seq_q = s->seq_q;
    c->seq_kv = seq_kv;
    c->nxq = (size_t)s->batch * (size_t)s->seq_q * dm;
    c->nxkv = s->self ? 0 : (size_t)s->batch * (size_t)seq_kv * dm;
    c->ny = c->nxq;

    attn_mha_desc *m = &c->m;
    m->d_model = s->d_model;
    m->heads_q = s->heads_q;
    m->heads_kv = s->heads_kv;
    m->head_dim = s->head_dim;
    m->score = s->score;
    m->posenc = s->posenc;
    m->pos_offset = s->pos_offset;

    int ok = (c->x_q = random_f32(&r, c->nxq, 1.0)) != NULL;
    if (ok && !s->self)
        ok = (c->x_kv = random_f32(&r, c->nxkv, 1.0)) != NULL;
    /* Uniform in [-a, a] with a = sqrt(3 / fan_in) keeps var(out) = var(in). */
    size_t wn[4] = {inq * dm, inkv * dm, inkv * dm, dm * inq};
    size_t bn[4] = {inq, inkv, inkv, dm};
    double amp[4] = {sqrt(3.0 / (double)dm), sqrt(3.0 / (double)dm),
                     sqrt(3.0 / (double)dm), sqrt(3.0 / (double)inq)};
    for (int i = 0; ok && i < 4; i++) {
        ok = (c->w[i] = random_f32(&r, wn[i], amp[i])) != NULL;
        if (ok && s->with_bias)
            ok = (c->b[i] = random_f32(&r, bn[i], 0.5)) != NULL;
    }
    if (ok && s->score == ATTN_SCORE_ADDITIVE)
        ok = (c->additive_w = random_f32(&r, inq, 1.0)) != NULL;
    if (ok && s->posenc == ATTN_POSENC_LEARNED) {
        int rows = s->pos_offset + (s->seq_q > seq_kv ? s->seq_q : seq_kv) + 3;
        ok = (c->pos_table = random_f32(&r, (size_t)rows * dm, 1.0)) != NULL;
        m->pos_table_len = rows;
    }
    c->mask.causal = s->causal;
    c->mask.window = s->window;
    c->mask.bias_kind = s->bias_kind;
    if (ok && s->bias_kind != ATTN_BIAS_NONE) {
        attn_sdpa_desc shape;
        memset(&shape, 0, sizeof shape);
        shape.batch = s->batch;
        shape.heads_q = s->heads_q;
        shape.seq_q = s->seq_q;
        shape.seq_kv = seq_kv;
        shape.mask.bias_kind = s->bias_kind;
        size_t n = bias_elems(&shape);
        ok = (c->bias = malloc(n * sizeof(float))) != NULL;
        if (ok)
            fill_bias(&r, c->bias, n, 0.1);
    }
    if (ok && s->with_kv_len) {
        ok = (c->kv_len = malloc((size_t)s->batch * sizeof(int32_t))) != NULL;
        for (int b = 0; ok && b < s->batch; b++)
            c->kv_len[b] = ref_rng_int(&r, 0, seq_kv);
    }
    if (!ok) {
        mha_case_free(c);
        return -1;
    }
    m->wq = c->w[0];
    m->wk = c->w[1];
    m->wv = c->w[2];
    m->wo = c->w[3];
    m->bq = c->b[0];
    m->bk = c->b[1];
    m->bv = c->b[2];
    m->bo = c->b[3];
    m->additive_w = c->additive_w;
    m->pos_table = c->pos_table;
    c->mask.bias = c->bias;
    c->mask.kv_len = c->kv_len;
    return 0;
}

/* c's layer on its float arrays: c->m, or the float layer behind c->m's
 * 16-bit copies (mha_case_weights16 rounds c's arrays to their values). */
static attn_mha_desc float_layer(const mha_case *c)
{
    attn_mha_desc m = c->m;
    m.wq = c->w[0];
    m.wk = c->w[1];
    m.wv = c->w[2];
    m.wo = c->w[3];
    m.bq = c->b[0];
    m.bk = c->b[1];
    m.bv = c->b[2];
    m.bo = c->b[3];
    m.additive_w = c->additive_w;
    m.pos_table = c->pos_table;
    return m;
}

double *mha_case_reference(const mha_case *c)
{
    const attn_mha_desc m = float_layer(c);
    double *y = malloc(c->ny * sizeof *y);
    if (y && ref_mha(&m, c->batch, c->seq_q, c->seq_kv, c->x_q, c->x_kv,
                     &c->mask, y) != 0) {
        free(y);
        y = NULL;
    }
    return y;
}

attn_precision mha_case_ran_at(attn_context *ctx, const mha_case *c)
{
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = c->batch;
    d.heads_q = c->m.heads_q;
    d.heads_kv = c->m.heads_kv;
    d.seq_q = c->seq_q;
    d.seq_kv = c->seq_kv;
    d.head_dim = d.head_dim_v = c->m.head_dim;
    d.score = c->m.score;
    d.additive_w = c->additive_w;
    d.mask = c->mask;
    d.dtype = ATTN_F32;
    return sdpa_case_ran_at(ctx, &d);
}

int mha_case_weights16(mha_case *c, attn_dtype dt, attn_mha_desc *m16,
                       uint16_t **mem)
{
    const attn_mha_desc *m = &c->m;
    const size_t dm = (size_t)m->d_model,
                 inq = (size_t)m->heads_q * (size_t)m->head_dim,
                 inkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    float *arr[10] = {c->w[0], c->w[1], c->w[2], c->w[3],       c->b[0],
                      c->b[1], c->b[2], c->b[3], c->additive_w, c->pos_table};
    const size_t n[10] = {inq * dm,  inkv * dm,
                          inkv * dm, dm * inq,
                          inq,       inkv,
                          inkv,      dm,
                          inq,       (size_t)m->pos_table_len * dm};
    const uint16_t *p[10] = {NULL};
    size_t total = 0;
    uint16_t *h;
    for (int i = 0; i < 10; i++)
        total += arr[i] ? n[i] : 0;
    if (!(*mem = h = malloc(total * sizeof *h)))
        return -1;
    *m16 = *m;
    /* weight_dtype is past the first layout (struct_size 0) */
    m16->struct_size = sizeof *m16;
    m16->weight_dtype = dt;
    for (int i = 0; i < 10; i++) {
        if (!arr[i])
            continue;
        for (size_t j = 0; j < n[i]; j++) {
            h[j] = dt == ATTN_BF16 ? ref_f32_to_bf16(arr[i][j])
                                   : ref_f32_to_f16(arr[i][j]);
            arr[i][j] = (float)ref_elem(dt, h, j);
        }
        p[i] = h;
        h += n[i];
    }
    /* The members keep their float type: 16-bit arrays are passed cast
     * (attn.h, attn_mha_desc). */
    m16->wq = (const float *)(const void *)p[0];
    m16->wk = (const float *)(const void *)p[1];
    m16->wv = (const float *)(const void *)p[2];
    m16->wo = (const float *)(const void *)p[3];
    m16->bq = (const float *)(const void *)p[4];
    m16->bk = (const float *)(const void *)p[5];
    m16->bv = (const float *)(const void *)p[6];
    m16->bo = (const float *)(const void *)p[7];
    m16->additive_w = (const float *)(const void *)p[8];
    m16->pos_table = (const float *)(const void *)p[9];
    return 0;
}

int mha_case_check(attn_context *ctx, const mha_case *c, const double *ref,
                   const char *what)
{
    /* At a precision other than EXACT the attention's rounding widens each
     * element's tolerance by tol[e] (ref_mha_at, which gives the reference
     * y with it); at EXACT the float terms alone. */
    const attn_precision p = mha_case_ran_at(ctx, c);
    const attn_mha_desc m = float_layer(c);
    double *own = NULL, *tol = NULL;
    int ok = 1;
    if (p != ATTN_PRECISION_EXACT) {
        own = malloc(c->ny * sizeof *own);
        tol = malloc(c->ny * sizeof *tol);
        if (!own || !tol ||
            ref_mha_at(&m, p, c->batch, c->seq_q, c->seq_kv, c->x_q, c->x_kv,
                       &c->mask, own, tol)) {
            printf("\nFAIL %s: out of memory in the reference\n", what);
            free(own);
            free(tol);
            return 0;
        }
        if (!ref)
            ref = own;
    } else if (!ref && !(ref = own = mha_case_reference(c))) {
        printf("\nFAIL %s: out of memory in the reference\n", what);
        return 0;
    }
    unsigned char *yb = guarded_alloc(c->ny, sizeof(float));
    void *xq0 = dup_bytes(c->x_q, c->nxq * sizeof(float));
    void *xk0 = dup_bytes(c->x_kv, c->nxkv * sizeof(float));
    if (!yb || !xq0 || (c->x_kv && !xk0)) {
        printf("\nFAIL %s: out of memory in the test\n", what);
        ok = 0;
        goto out;
    }
    float *y = (float *)(void *)(yb + GUARD * sizeof(float));
    attn_status st = attn_mha_forward(ctx, &c->m, c->batch, c->seq_q, c->seq_kv,
                                      c->x_q, c->x_kv, &c->mask, y);
    if (st != ATTN_OK && harness_declined(ctx, NULL, st, what)) {
        /* A forced kernel that does not take the layer's attention:
         * nothing written. */
        if (!guards_intact(yb, c->ny, sizeof(float)) ||
            !untouched(y, c->ny * sizeof(float))) {
            printf("\nFAIL %s: a declined call wrote y\n", what);
            ok = 0;
        }
        goto out;
    }
    if (st != ATTN_OK) {
        printf("\nFAIL %s: attn_mha_forward returned %s (%s)\n", what,
               attn_status_string(st), attn_context_last_error(ctx));
        ok = 0;
        goto out;
    }
    harness_taken();
    if (!guards_intact(yb, c->ny, sizeof(float))) {
        printf("\nFAIL %s: attn_mha_forward wrote outside y\n", what);
        ok = 0;
    }
    if (!same_bytes(xq0, c->x_q, c->nxq * sizeof(float)) ||
        !same_bytes(xk0, c->x_kv, c->nxkv * sizeof(float))) {
        printf("\nFAIL %s: attn_mha_forward modified x\n", what);
        ok = 0;
    }
    if (!ref_check_f32_tol(what, y, ref, tol, c->ny, REF_MHA_ABS, REF_MHA_REL))
        ok = 0;
out:
    free(yb);
    free(xq0);
    free(xk0);
    free(own);
    free(tol);
    return ok;
}
