/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The training forward of the multi-head layer (attn_mha_forward_train):
 * the projections on the host's worker pool, the attention through
 * attn_sdpa (so on the context's device), and the activations the
 * backward pass needs kept in an attn_mha_saved.  Also the host
 * arithmetic attn_mha_backward (mha_bwd.c) shares with it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/mha_train.h"

/* ---- host arithmetic ----------------------------------------------------- */

attn_status attn_mha_gemm(attn_context *ctx, int m, int n, int k,
                          const float *a, size_t lda, const float *b,
                          size_t ldb, const float *bias, float *c, size_t ldc)
{
    return attn_backend_native_gemm_nt(ctx->native, m, n, k, a, lda, b, ldb,
                                       bias, c, ldc);
}

void attn_mha_transpose(const float *in, size_t rows, size_t cols, float *out)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
            out[c * rows + r] = in[r * cols + c];
}

void attn_mha_rope(float *x, size_t rows, int heads, int head_dim, int seq,
                   int pos0, int inverse)
{
    const size_t ld = (size_t)heads * (size_t)head_dim;
    /* The angles as the native forward computes them (posenc.c). */
    for (int i = 0; i < head_dim / 2; i++) {
        double freq = pow(10000.0, -2.0 * i / head_dim);
        for (size_t r = 0; r < rows; r++) {
            double theta = ((double)pos0 + (double)(r % (size_t)seq)) * freq;
            float cs = (float)cos(theta), sn = (float)sin(theta);
            float *e = x + r * ld + 2 * (size_t)i;
            if (inverse)
                sn = -sn;
            for (int h = 0; h < heads; h++, e += head_dim) {
                float x0 = e[0], x1 = e[1];
                e[0] = x0 * cs - x1 * sn;
                e[1] = x0 * sn + x1 * cs;
            }
        }
    }
}

void attn_mha_heads(float *t, float *h, int batch, int seq, int heads, int hd,
                    int to_heads)
{
    const size_t row = (size_t)hd * sizeof(float);
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < seq; i++)
            for (int x = 0; x < heads; x++) {
                float *pt =
                    t + (((size_t)b * (size_t)seq + (size_t)i) * (size_t)heads +
                         (size_t)x) *
                            (size_t)hd;
                float *ph =
                    h + (((size_t)b * (size_t)heads + (size_t)x) * (size_t)seq +
                         (size_t)i) *
                            (size_t)hd;
                if (to_heads)
                    memcpy(ph, pt, row);
                else
                    memcpy(pt, ph, row);
            }
}

/* ---- the saved activations ------------------------------------------------
 */

size_t attn_mha_saved_floats(const attn_mha_call *c)
{
    const attn_mha_desc *m = c->m;
    size_t nq = (size_t)c->batch * (size_t)c->seq_q,
           nkv = (size_t)c->batch * (size_t)c->seq_kv,
           dq = (size_t)m->heads_q * (size_t)m->head_dim,
           dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    return 2 * nq * dq + 2 * nkv * dkv + nq * (size_t)m->heads_q;
}

void attn_mha_saved_shape(attn_mha_saved *s, const attn_mha_call *c)
{
    const attn_mha_desc *m = c->m;
    size_t nq = (size_t)c->batch * (size_t)c->seq_q,
           nkv = (size_t)c->batch * (size_t)c->seq_kv,
           dq = (size_t)m->heads_q * (size_t)m->head_dim,
           dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    s->batch = c->batch;
    s->seq_q = c->seq_q;
    s->seq_kv = c->seq_kv;
    s->heads_q = m->heads_q;
    s->heads_kv = m->heads_kv;
    s->head_dim = m->head_dim;
    s->q = s->buf;
    s->k = s->q + nq * dq;
    s->v = s->k + nkv * dkv;
    s->o = s->v + nkv * dkv;
    s->lse = s->o + nq * dq;
}

void attn_mha_saved_destroy(attn_mha_saved *saved)
{
    if (!saved)
        return;
    free(saved->buf);
    free(saved);
}

/* ---- the forward ------------------------------------------------------- */

/* P = x W^T + b for rows x [rows, d_model] into p [rows, n]. */
static attn_status project(attn_context *ctx, int rows, int n, int d_model,
                           const float *x, const float *w, const float *b,
                           float *p)
{
    return attn_mha_gemm(ctx, rows, n, d_model, x, (size_t)d_model, w,
                         (size_t)d_model, b, p, (size_t)n);
}

attn_status attn_mha_train_forward(attn_context *ctx, const attn_mha_call *c,
                                   attn_mha_saved *s, float *y, attn_err *err)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL,
              pe = m->posenc == ATTN_POSENC_SINUSOIDAL ||
                   m->posenc == ATTN_POSENC_LEARNED;
    const size_t d = (size_t)m->d_model,
                 nq = (size_t)c->batch * (size_t)c->seq_q,
                 nkv = (size_t)c->batch * (size_t)c->seq_kv,
                 dq = (size_t)m->heads_q * (size_t)m->head_dim,
                 dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    const int nqi = (int)nq, nkvi = (int)nkv;
    size_t n_xq = pe ? nq * d : 0, n_xkv = pe && !self ? nkv * d : 0;
    size_t big = nq * dq > nkv * dkv ? nq * dq : nkv * dkv;
    const float *xq = c->x_q, *xkv = self ? c->x_q : c->x_kv;
    float *buf, *tok;
    attn_sdpa_desc sd;
    attn_status st;

    if (n_xq + n_xkv + big > SIZE_MAX / sizeof(float) ||
        !(buf = malloc((n_xq + n_xkv + big) * sizeof(float))))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the training forward's scratch "
                         "(%zu floats)",
                         n_xq + n_xkv + big);
    tok = buf + n_xq + n_xkv;
    if (pe) {
        attn_native_add_posenc(m, c->batch, c->seq_q, m->pos_offset, c->x_q,
                               buf);
        xq = buf;
        if (self) {
            xkv = buf;
        } else {
            attn_native_add_posenc(m, c->batch, c->seq_kv, 0, c->x_kv,
                                   buf + n_xq);
            xkv = buf + n_xq;
        }
    }
    if ((st = project(ctx, nqi, (int)dq, m->d_model, xq, m->wq, m->bq, tok)))
        goto fail;
    if (m->posenc == ATTN_POSENC_ROPE)
        attn_mha_rope(tok, nq, m->heads_q, m->head_dim, c->seq_q, m->pos_offset,
                      0);
    attn_mha_heads(tok, s->q, c->batch, c->seq_q, m->heads_q, m->head_dim, 1);
    if ((st = project(ctx, nkvi, (int)dkv, m->d_model, xkv, m->wk, m->bk, tok)))
        goto fail;
    if (m->posenc == ATTN_POSENC_ROPE)
        attn_mha_rope(tok, nkv, m->heads_kv, m->head_dim, c->seq_kv,
                      self ? m->pos_offset : 0, 0);
    attn_mha_heads(tok, s->k, c->batch, c->seq_kv, m->heads_kv, m->head_dim, 1);
    if ((st = project(ctx, nkvi, (int)dkv, m->d_model, xkv, m->wv, m->bv, tok)))
        goto fail;
    attn_mha_heads(tok, s->v, c->batch, c->seq_kv, m->heads_kv, m->head_dim, 1);

    attn_mha_sdpa_desc(c, &sd);
    sd.struct_size = sizeof sd;
    /* Reported under attn_sdpa's name by attn_sdpa itself. */
    if ((st = attn_sdpa(ctx, &sd, s->q, s->k, s->v, s->o, s->lse))) {
        free(buf);
        return attn_fail(err, st, "%s", attn_context_last_error(ctx));
    }
    if (y) {
        attn_mha_heads(tok, s->o, c->batch, c->seq_q, m->heads_q, m->head_dim,
                       0);
        if ((st = project(ctx, nqi, m->d_model, (int)dq, tok, m->wo, m->bo, y)))
            goto fail;
    }
    free(buf);
    return ATTN_OK;
fail:
    free(buf);
    return attn_fail(err, st, "the training forward ran out of memory");
}

/* ---- attn_mha_forward_train ------------------------------------------------
 */

attn_status attn_mha_forward_train(attn_context *ctx, const attn_mha_desc *m,
                                   int batch, int seq_q, int seq_kv,
                                   const float *x_q, const float *x_kv,
                                   const attn_mask_desc *mask, float *y,
                                   attn_mha_saved **saved)
{
    static const char fn[] = "attn_mha_forward_train";
    static const attn_mask_desc no_mask = ATTN_MASK_DESC_INIT;
    attn_mha_desc ml;
    attn_mask_desc kl;
    attn_mha_call c;
    attn_err err = {{0}};
    attn_mha_saved *s, *fresh = NULL;
    size_t need;
    attn_status st;

    if (!ctx || !saved) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT,
                  !ctx ? "ctx is NULL"
                       : "saved is NULL: nowhere to keep the "
                         "activations");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    /* A reused object holds nothing from here until this call succeeds:
     * whatever refuses the call below, attn_mha_backward then refuses it
     * (attn.h). */
    if (*saved)
        (*saved)->batch = 0;
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if ((st = attn_abi_mha_desc(m, &ml, &m, &err)) ||
        (st = attn_abi_mask_desc(mask, &kl, &mask, &err)))
        return attn_api_report(ctx, fn, st, &err);
    memset(&c, 0, sizeof c);
    c.m = m;
    c.batch = batch;
    c.seq_q = seq_q;
    c.seq_kv = seq_kv;
    c.x_q = x_q;
    c.x_kv = x_kv;
    c.mask = mask ? mask : &no_mask;
    c.y = y;
    if ((st = attn_validate_mha(&c, &err)))
        return attn_api_report(ctx, fn, st, &err);
    if (m->weight_dtype != ATTN_F32) {
        attn_fail(&err, ATTN_ERR_UNSUPPORTED,
                  "training needs float weights (weight_dtype ATTN_F32)");
        return attn_api_report(ctx, fn, ATTN_ERR_UNSUPPORTED, &err);
    }
    need = attn_mha_saved_floats(&c);
    s = *saved;
    if (!s || s->cap < need) {
        if (need > SIZE_MAX / sizeof(float) ||
            !(fresh = calloc(1, sizeof *fresh)) ||
            !(fresh->buf = malloc(need * sizeof(float)))) {
            free(fresh);
            attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate the saved activations (%zu floats)",
                      need);
            return attn_api_report(ctx, fn, ATTN_ERR_OUT_OF_MEMORY, &err);
        }
        fresh->cap = need;
        s = fresh;
    }
    attn_mha_saved_shape(s, &c);
    if ((st = attn_mha_train_forward(ctx, &c, s, y, &err))) {
        attn_mha_saved_destroy(fresh);
        /* A reused object's shape (set above) no longer says what it
         * holds. */
        if (!fresh)
            s->batch = 0;
        return attn_api_report(ctx, fn, st, &err);
    }
    if (fresh) {
        attn_mha_saved_destroy(*saved);
        *saved = fresh;
    }
    return ATTN_OK;
}
