/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The persistent multi-head layer of attn.h (attn_mha_create,
 * attn_mha_forward_layer, attn_mha_destroy): the layer keeps its own
 * copies of the descriptor's arrays, and asks the backend to hold the
 * weights on each device once; a call converts F16 or BF16 activations
 * to float and back around the float layer, moves the positions by the KV
 * cache's length and runs the same validation, plan and scheduler as
 * attn_mha_forward (api.c).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/context.h"

struct attn_mha_layer {
    attn_context *ctx;
    attn_mha_desc m; /* its arrays point into host */
    float scale;
    float *host; /* one allocation: the copies of m's arrays */
    int n_held;
    void *held[ATTN_SCHED_MAX_DEVICES]; /* per device, or NULL */
};

#define INVALID(...) attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* ---- half precision (IEEE binary16), round to nearest even ------------ */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu,
             man = h & 0x3ffu, bits;
    float f;
    if (e == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112u) << 23) | (man << 13);
    } else {
        /* Zero or subnormal: man * 2^-24, exact in float. */
        f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_half(float f)
{
    uint32_t x, sign, ax;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN, kept quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* rounds to infinity (65520 and up) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: subnormal or zero */
        /* Scaled to units of 2^-24, rounded to nearest even by the float
         * addition (exact magnitude below 2^-14 is < 2^10 units). */
        float a, r;
        uint32_t u;
        memcpy(&a, &ax, sizeof a);
        r = a * 16777216.0f + 12582912.0f; /* 1.5 * 2^23 */
        memcpy(&u, &r, sizeof u);
        return (uint16_t)(sign | (u & 0x7ffu));
    }
    /* Normal: drop 13 mantissa bits, to nearest even. */
    ax += 0xfffu + ((ax >> 13) & 1u);
    return (uint16_t)(sign | ((ax - 0x38000000u) >> 13));
}

/* ---- bfloat16 (a float's top half) -------------------------------------
 * Round to nearest even, NaN kept (quieted), float subnormals to a signed
 * zero: the native backend's rounding (attn.h, ATTN_BF16). */

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    if ((x & 0x7f800000u) == 0)
        return (uint16_t)((x >> 16) & 0x8000u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- create and destroy ------------------------------------------------ */

/* Floats of each array of m the layer copies (0: absent). */
enum { W_Q, W_K, W_V, W_O, B_Q, B_K, B_V, B_O, A_W, P_T, N_ARRAYS };

/* pos_rows: the rows of a LEARNED table to copy. */
static void array_sizes(const attn_mha_desc *m, size_t pos_rows,
                        size_t n[N_ARRAYS], const float *src[N_ARRAYS])
{
    const size_t d = (size_t)m->d_model,
                 dq = (size_t)m->heads_q * (size_t)m->head_dim,
                 dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    const int learned = m->posenc == ATTN_POSENC_LEARNED,
              additive = m->score == ATTN_SCORE_ADDITIVE;
    n[W_Q] = dq * d;
    n[W_K] = n[W_V] = dkv * d;
    n[W_O] = d * dq;
    n[B_Q] = m->bq ? dq : 0;
    n[B_K] = m->bk ? dkv : 0;
    n[B_V] = m->bv ? dkv : 0;
    n[B_O] = m->bo ? d : 0;
    n[A_W] = additive ? dq : 0;
    n[P_T] = learned ? pos_rows * d : 0;
    src[W_Q] = m->wq;
    src[W_K] = m->wk;
    src[W_V] = m->wv;
    src[W_O] = m->wo;
    src[B_Q] = m->bq;
    src[B_K] = m->bk;
    src[B_V] = m->bv;
    src[B_O] = m->bo;
    src[A_W] = additive ? m->additive_w : NULL;
    src[P_T] = learned ? m->pos_table : NULL;
}

/* Points the layer's descriptor at its copies. */
static void point_at_copies(attn_mha_desc *m, float *const dst[N_ARRAYS])
{
    m->wq = dst[W_Q];
    m->wk = dst[W_K];
    m->wv = dst[W_V];
    m->wo = dst[W_O];
    m->bq = dst[B_Q];
    m->bk = dst[B_K];
    m->bv = dst[B_V];
    m->bo = dst[B_O];
    if (m->score == ATTN_SCORE_ADDITIVE)
        m->additive_w = dst[A_W];
    else
        m->additive_w = NULL;
    if (m->posenc == ATTN_POSENC_LEARNED)
        m->pos_table = dst[P_T];
    else
        m->pos_table = NULL;
}

/* n elements of dtype dt at src, as floats at dst. */
static void to_float(attn_dtype dt, const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    if (dt == ATTN_F32)
        memcpy(dst, src, n * sizeof(float));
    else if (dt == ATTN_BF16)
        for (size_t i = 0; i < n; i++)
            dst[i] = bf16_to_float(h[i]);
    else
        for (size_t i = 0; i < n; i++)
            dst[i] = half_to_float(h[i]);
}

attn_status attn_mha_weights_float(const attn_mha_desc *m, size_t pos_rows,
                                   attn_mha_desc *out, float **host,
                                   attn_err *err)
{
    size_t n[N_ARRAYS], total = 0;
    const float *src[N_ARRAYS];
    float *dst[N_ARRAYS];
    *host = NULL;
    array_sizes(m, pos_rows, n, src);
    for (int i = 0; i < N_ARRAYS; i++) {
        if (n[i] > SIZE_MAX / sizeof(float) - total)
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "the layer's weights overflow the address "
                             "space");
        total += n[i];
    }
    if (!(*host = malloc(total * sizeof(float))))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the float copy of the layer's "
                         "weights (%zu floats)",
                         total);
    total = 0;
    for (int i = 0; i < N_ARRAYS; i++) {
        dst[i] = n[i] ? *host + total : NULL;
        if (n[i])
            to_float(m->weight_dtype, src[i], dst[i], n[i]);
        total += n[i];
    }
    *out = *m;
    out->struct_size = sizeof *out;
    out->weight_dtype = ATTN_F32;
    point_at_copies(out, dst);
    return ATTN_OK;
}

void attn_mha_destroy(attn_mha_layer *layer)
{
    attn_backend *b;
    if (!layer)
        return;
    b = layer->ctx->backend;
    for (int i = 0; i < layer->n_held; i++)
        if (layer->held[i] && b->ops->mha_drop)
            b->ops->mha_drop(b, i, layer->held[i]);
    free(layer->host);
    free(layer);
}

/* Holds the weights on every device of ctx's backend; a device that
 * cannot hold them is left out (its calls upload them) when fallback is
 * allowed. */
static attn_status hold_weights(attn_context *ctx, attn_mha_layer *l,
                                attn_err *err)
{
    attn_backend *b = ctx->backend;
    const attn_exec_ops *x = b->ops->exec;
    if (!x || !b->ops->mha_hold)
        return ATTN_OK;
    l->n_held = x->n_devices(b);
    if (l->n_held > ATTN_SCHED_MAX_DEVICES)
        l->n_held = ATTN_SCHED_MAX_DEVICES;
    for (int i = 0; i < l->n_held; i++) {
        attn_err e = {{0}};
        attn_status s = b->ops->mha_hold(b, i, &l->m, &l->held[i], &e);
        if (s == ATTN_OK)
            continue;
        l->held[i] = NULL;
        if (!ctx->allow_fallback)
            return attn_fail(err, s, "%s", e.msg);
        attn_log(&ctx->log, ATTN_LOG_WARN,
                 "the layer's weights stay on the host for device %d: %s", i,
                 e.msg);
    }
    return ATTN_OK;
}

attn_status attn_mha_create(attn_context *ctx, const attn_mha_desc *m,
                            float scale, attn_mha_layer **out)
{
    static const char fn[] = "attn_mha_create";
    attn_err err = {{0}};
    attn_mha_desc ml;
    attn_mha_layer *l;
    attn_status s;

    if (out)
        *out = NULL;
    if (!ctx || !out) {
        INVALID(!ctx ? "ctx is NULL" : "out is NULL: nowhere to write");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if ((s = attn_abi_mha_desc(m, &ml, &m, &err)))
        return attn_api_report(ctx, fn, s, &err);
    if (!isfinite(scale)) {
        INVALID("scale must be finite (0 = 1/sqrt(head_dim))");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if ((s = attn_validate_mha_desc(m, &err)))
        return attn_api_report(ctx, fn, s, &err);
    if (m->posenc == ATTN_POSENC_LEARNED && m->pos_table_len <= 0) {
        INVALID("a layer with a LEARNED table needs pos_table_len (the rows "
                "it copies)");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (!(l = calloc(1, sizeof *l))) {
        attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY, "cannot allocate the layer");
        return attn_api_report(ctx, fn, ATTN_ERR_OUT_OF_MEMORY, &err);
    }
    /* The copies are float whatever weight_dtype is: converted once. */
    if ((s = attn_mha_weights_float(m, (size_t)m->pos_table_len, &l->m,
                                    &l->host, &err))) {
        free(l);
        return attn_api_report(ctx, fn, s, &err);
    }
    l->ctx = ctx;
    l->scale = scale;
    if ((s = hold_weights(ctx, l, &err))) {
        attn_mha_destroy(l);
        return attn_api_report(ctx, fn, s, &err);
    }
    *out = l;
    return ATTN_OK;
}

/* ---- one call ------------------------------------------------------------ */

/* The call with 16-bit activations (F16 or BF16, dt): validates c on the
 * caller's arrays (x_q, x_kv and y of two bytes an element), converts x
 * into float copies, runs c on them and rounds y back. */
static attn_status run_16(attn_context *ctx, attn_mha_call *c, attn_dtype dt,
                          const uint16_t *x_q, const uint16_t *x_kv,
                          uint16_t *y)
{
    float (*load)(uint16_t) = dt == ATTN_BF16 ? bf16_to_float : half_to_float;
    uint16_t (*store)(float) = dt == ATTN_BF16 ? float_to_bf16 : float_to_half;
    static const char fn[] = "attn_mha_forward_layer";
    attn_err err = {{0}};
    size_t nxq, nxkv = 0, total;
    const size_t d = (size_t)c->m->d_model;
    float *buf;
    attn_status s;
    c->act_size = sizeof *y;
    s = attn_validate_mha(c, &err);
    c->act_size = 0;
    if (s)
        return attn_api_report(ctx, fn, s, &err);
    /* Validated: the products are those of arrays that can be addressed. */
    nxq = (size_t)c->batch * (size_t)c->seq_q * d;
    if (x_kv)
        nxkv = (size_t)c->batch * (size_t)c->seq_kv * d;
    if (nxq > SIZE_MAX / sizeof(float) / 3 ||
        nxkv > SIZE_MAX / sizeof(float) / 3) {
        attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                  "the float copies of the activations cannot be addressed");
        return attn_api_report(ctx, fn, ATTN_ERR_OUT_OF_MEMORY, &err);
    }
    total = 2 * nxq + nxkv;
    if (!(buf = malloc(total * sizeof(float)))) {
        attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                  "cannot allocate the float copies of the %s activations "
                  "(%zu floats)",
                  dt == ATTN_BF16 ? "BF16" : "F16", total);
        return attn_api_report(ctx, fn, ATTN_ERR_OUT_OF_MEMORY, &err);
    }
    for (size_t i = 0; i < nxq; i++)
        buf[i] = load(x_q[i]);
    for (size_t i = 0; i < nxkv; i++)
        buf[nxq + i] = load(x_kv[i]);
    c->x_q = buf;
    c->x_kv = x_kv ? buf + nxq : NULL;
    c->y = buf + nxq + nxkv;
    if ((s = attn_api_mha(ctx, fn, c)) == ATTN_OK)
        for (size_t i = 0; i < nxq; i++)
            y[i] = store(c->y[i]);
    free(buf);
    return s;
}

attn_status attn_mha_forward_layer(attn_context *ctx, attn_mha_layer *layer,
                                   int batch, int seq_q, int seq_kv,
                                   attn_dtype dtype, const void *x_q,
                                   const void *x_kv, const attn_mask_desc *mask,
                                   attn_kv_cache *cache, void *y)
{
    static const char fn[] = "attn_mha_forward_layer";
    static const attn_mask_desc no_mask = ATTN_MASK_DESC_INIT;
    attn_err err = {{0}};
    attn_mask_desc kl;
    attn_kv_cache cl;
    const attn_kv_cache *kv = NULL;
    attn_mha_desc md;
    attn_mha_call c;
    attn_status s;

    if (!ctx) {
        INVALID("ctx is NULL");
        return attn_api_report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if (!layer || layer->ctx != ctx) {
        INVALID(!layer ? "layer is NULL"
                       : "the layer was created on another context");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if ((unsigned)dtype > ATTN_BF16) {
        INVALID("dtype %d is not an attn_dtype", (int)dtype);
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if ((s = attn_abi_mask_desc(mask, &kl, &mask, &err)) ||
        (s = attn_abi_kv_cache(cache, &cl, &kv, &err)))
        return attn_api_report(ctx, fn, s, &err);
    md = layer->m;
    memset(&c, 0, sizeof c);
    c.m = &md;
    c.batch = batch;
    c.seq_q = seq_q;
    c.seq_kv = seq_kv;
    c.x_q = x_q;
    c.x_kv = x_kv;
    c.mask = mask ? mask : &no_mask;
    c.y = y;
    c.scale = layer->scale;
    if (kv) {
        if (!kv->k) {
            INVALID("the KV cache's k is NULL");
            return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
        }
        c.cache_k = kv->k;
        c.cache_v = kv->v;
        c.cache_cap = kv->capacity;
        c.cache_len = kv->len;
        /* The step's tokens follow the cached ones. */
        if (kv->len > 0 && kv->len > INT32_MAX - md.pos_offset) {
            INVALID("pos_offset + the cache's len overflows int");
            return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
        }
        if (kv->len > 0)
            md.pos_offset += kv->len;
    }
    /* The devices of a context stay for its life, and so do the buffers
     * they hold (a device without them uploads the layer's copies). */
    if (layer->n_held > 0)
        c.resident = layer->held;
    if (dtype == ATTN_F32)
        s = attn_api_mha(ctx, fn, &c);
    else
        s = run_16(ctx, &c, dtype, x_q, x_kv, y);
    if (s == ATTN_OK && kv)
        cache->len = kv->len + seq_q;
    return s;
}
