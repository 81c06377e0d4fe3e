/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The multi-head layer's backward pass (attn_mha_backward): the output
 * projection's gradients, the attention's through attn_sdpa_backward,
 * RoPE's transpose, the input projections' gradients and the positional
 * encoding's.  Every gradient is computed into the call's own memory and
 * written to the caller's outputs at the end, so that an error leaves
 * them untouched.  docs/DESIGN.md, "The layer's backward", has the math.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/mha_train.h"

static const attn_abi_layout grad_layout = {
    "attn_mha_grad", ATTN_ABI_MHA_GRAD_FIRST, sizeof(attn_mha_grad)};

#define INVALID(...) attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* The gradients asked for: the caller's output, its size in floats and
 * the call's own copy. */
enum {
    G_XQ,
    G_XKV,
    G_WQ,
    G_WK,
    G_WV,
    G_WO,
    G_BQ,
    G_BK,
    G_BV,
    G_BO,
    G_POS,
    G_ADDW,
    N_G
};

typedef struct grads {
    float *out[N_G];
    size_t n[N_G];
    float *t[N_G];
} grads;

/* [a, a + na) and [b, b + nb) (floats) share a byte. */
static int overlaps(const float *a, size_t na, const float *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a && b && na && nb && x < y + nb * sizeof(float) &&
           y < x + na * sizeof(float);
}

/* Column sums of a [rows, n] into out [n]. */
static void col_sums(const float *a, size_t rows, size_t n, float *out)
{
    memset(out, 0, n * sizeof *out);
    for (size_t r = 0; r < rows; r++)
        for (size_t x = 0; x < n; x++)
            out[x] += a[r * n + x];
}

/* The gradients of one input projection P = x' W^T + b from dP
 * (token-major [rows, n], RoPE's transpose applied): dW = dP^T x' and
 * db when asked, dx' = dP W written or added into dx [rows, d_model].
 * The GEMM takes B transposed: dP, x' and W are transposed first. */
static attn_status proj_backward(attn_context *ctx, int rows, int n,
                                 int d_model, const float *dp, const float *x,
                                 const float *w, float *dw, float *db,
                                 float *dx, int add)
{
    const size_t r = (size_t)rows, nn = (size_t)n, d = (size_t)d_model;
    float *dpt = malloc((nn * r + d * r + d * nn + r * d) * sizeof(float));
    attn_status st = ATTN_OK;
    if (!dpt)
        return ATTN_ERR_OUT_OF_MEMORY;
    float *xt = dpt + nn * r, *wt = xt + d * r, *tmp = wt + d * nn;
    if (dw) {
        attn_mha_transpose(dp, r, nn, dpt);
        attn_mha_transpose(x, r, d, xt);
        if ((st = attn_mha_gemm(ctx, n, d_model, rows, dpt, r, xt, r, NULL, dw,
                                d)))
            goto done;
    }
    if (db)
        col_sums(dp, r, nn, db);
    attn_mha_transpose(w, nn, d, wt);
    if ((st = attn_mha_gemm(ctx, rows, d_model, n, dp, nn, wt, nn, NULL,
                            add ? tmp : dx, d)))
        goto done;
    if (add)
        for (size_t i = 0; i < r * d; i++)
            dx[i] += tmp[i];
done:
    free(dpt);
    return st;
}

/* Checks g against call c and m; fills the sizes and outputs of gr. */
static attn_status check_grads(const attn_mha_call *c, const attn_mha_grad *g,
                               grads *gr, attn_err *e)
{
    const attn_mha_desc *m = c->m;
    const size_t d = (size_t)m->d_model,
                 nq = (size_t)c->batch * (size_t)c->seq_q,
                 nkv = (size_t)c->batch * (size_t)c->seq_kv,
                 dq = (size_t)m->heads_q * (size_t)m->head_dim,
                 dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    static const char *const names[N_G] = {
        "d_x_q", "d_x_kv", "d_wq", "d_wk", "d_wv",        "d_wo",
        "d_bq",  "d_bk",   "d_bv", "d_bo", "d_pos_table", "d_additive_w"};

    if (!g->d_y)
        return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT, "g->d_y is NULL");
    if ((unsigned)g->accumulate > 1)
        return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT,
                         "g->accumulate must be 0 or 1 (got %d)",
                         g->accumulate);
    if (g->d_x_kv && !c->x_kv)
        return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT,
                         "d_x_kv is set in self-attention (x_kv NULL): x_q's "
                         "gradient sums both uses, in d_x_q");
    if (g->d_pos_table &&
        (m->posenc != ATTN_POSENC_LEARNED || m->pos_table_len <= 0))
        return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT,
                         "d_pos_table needs a LEARNED table with its "
                         "pos_table_len");
    if (g->d_additive_w && m->score != ATTN_SCORE_ADDITIVE)
        return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT,
                         "d_additive_w is set but the score is not ADDITIVE");
    gr->out[G_XQ] = g->d_x_q;
    gr->out[G_XKV] = g->d_x_kv;
    gr->out[G_WQ] = g->d_wq;
    gr->out[G_WK] = g->d_wk;
    gr->out[G_WV] = g->d_wv;
    gr->out[G_WO] = g->d_wo;
    gr->out[G_BQ] = g->d_bq;
    gr->out[G_BK] = g->d_bk;
    gr->out[G_BV] = g->d_bv;
    gr->out[G_BO] = g->d_bo;
    gr->out[G_POS] = g->d_pos_table;
    gr->out[G_ADDW] = g->d_additive_w;
    gr->n[G_XQ] = nq * d;
    gr->n[G_XKV] = nkv * d;
    gr->n[G_WQ] = dq * d;
    gr->n[G_WK] = gr->n[G_WV] = dkv * d;
    gr->n[G_WO] = d * dq;
    gr->n[G_BQ] = dq;
    gr->n[G_BK] = gr->n[G_BV] = dkv;
    gr->n[G_BO] = d;
    gr->n[G_ADDW] = dq;
    gr->n[G_POS] = m->posenc == ATTN_POSENC_LEARNED && m->pos_table_len > 0
                       ? (size_t)m->pos_table_len * d
                       : 0;
    for (int i = 0; i < N_G; i++) {
        /* every array the call reads: the layer's inputs and d_y */
        const char *in =
            attn_mha_input_overlap(c, gr->out[i], gr->n[i] * sizeof(float));
        if (!in && overlaps(gr->out[i], gr->n[i], g->d_y, nq * d))
            in = "d_y";
        if (in)
            return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT, "%s overlaps %s",
                             names[i], in);
        for (int j = 0; j < i; j++)
            if (overlaps(gr->out[i], gr->n[i], gr->out[j], gr->n[j]))
                return attn_fail(e, ATTN_ERR_INVALID_ARGUMENT, "%s overlaps %s",
                                 names[i], names[j]);
    }
    return ATTN_OK;
}

static int same_shape(const attn_mha_saved *s, const attn_mha_call *c)
{
    return s->batch == c->batch && s->seq_q == c->seq_q &&
           s->seq_kv == c->seq_kv && s->heads_q == c->m->heads_q &&
           s->heads_kv == c->m->heads_kv && s->head_dim == c->m->head_dim;
}

/* The backward pass of validated call c from saved activations s into the
 * call's copies gr->t (every one allocated by the caller). */
static attn_status run_backward(attn_context *ctx, const attn_mha_call *c,
                                const attn_mha_saved *s, const float *d_y,
                                const grads *gr, float *ws, attn_err *err)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL,
              pe = m->posenc == ATTN_POSENC_SINUSOIDAL ||
                   m->posenc == ATTN_POSENC_LEARNED,
              rope = m->posenc == ATTN_POSENC_ROPE;
    const size_t d = (size_t)m->d_model,
                 nq = (size_t)c->batch * (size_t)c->seq_q,
                 nkv = (size_t)c->batch * (size_t)c->seq_kv,
                 dq = (size_t)m->heads_q * (size_t)m->head_dim,
                 dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    const int nqi = (int)nq, nkvi = (int)nkv, dm = m->d_model;
    float *xq = pe ? ws : NULL, *xkv = pe && !self ? ws + nq * d : NULL;
    float *tok = ws + (pe ? nq * d : 0) + (pe && !self ? nkv * d : 0);
    float *dqh = tok + (nq * dq > nkv * dkv ? nq * dq : nkv * dkv);
    float *dkh = dqh + nq * dq, *dvh = dkh + nkv * dkv;
    float *gx = gr->t[G_XQ], *gkv = self ? gx : gr->t[G_XKV];
    const float *xq_in = c->x_q, *xkv_in = self ? c->x_q : c->x_kv;
    attn_sdpa_desc sd;
    attn_sdpa_grad sg = ATTN_SDPA_GRAD_INIT;
    attn_status st;

    /* The output projection y = O Wo^T + bo, a projection of O whose
     * input gradient is dO: token-major in dqh, then in the heads' layout
     * in tok for the attention's backward. */
    attn_mha_heads(tok, s->o, c->batch, c->seq_q, m->heads_q, m->head_dim, 0);
    if ((st = proj_backward(ctx, nqi, dm, (int)dq, d_y, tok, m->wo, gr->t[G_WO],
                            gr->t[G_BO], dqh, 0)))
        return attn_fail(err, st, "the layer's backward ran out of memory");
    attn_mha_heads(dqh, tok, c->batch, c->seq_q, m->heads_q, m->head_dim, 1);

    /* The attention. */
    attn_mha_sdpa_desc(c, &sd);
    sd.struct_size = sizeof sd;
    sg.q = s->q;
    sg.k = s->k;
    sg.v = s->v;
    sg.o = s->o;
    sg.lse = s->lse;
    sg.d_o = tok;
    sg.dq = dqh;
    sg.dk = dkh;
    sg.dv = dvh;
    sg.d_additive_w = gr->t[G_ADDW];
    if ((st = attn_sdpa_backward(ctx, &sd, &sg)))
        return attn_fail(err, st, "%s", attn_context_last_error(ctx));

    /* The inputs of the projections: x plus the positional encoding. */
    if (pe) {
        attn_native_add_posenc(m, c->batch, c->seq_q, m->pos_offset, c->x_q,
                               xq);
        xq_in = xq;
        if (self) {
            xkv_in = xq;
        } else {
            attn_native_add_posenc(m, c->batch, c->seq_kv, 0, c->x_kv, xkv);
            xkv_in = xkv;
        }
    }
    attn_mha_heads(tok, dqh, c->batch, c->seq_q, m->heads_q, m->head_dim, 0);
    if (rope)
        attn_mha_rope(tok, nq, m->heads_q, m->head_dim, c->seq_q, m->pos_offset,
                      1);
    if ((st = proj_backward(ctx, nqi, (int)dq, dm, tok, xq_in, m->wq,
                            gr->t[G_WQ], gr->t[G_BQ], gx, 0)))
        return attn_fail(err, st, "the layer's backward ran out of memory");
    attn_mha_heads(tok, dkh, c->batch, c->seq_kv, m->heads_kv, m->head_dim, 0);
    if (rope)
        attn_mha_rope(tok, nkv, m->heads_kv, m->head_dim, c->seq_kv,
                      self ? m->pos_offset : 0, 1);
    if ((st = proj_backward(ctx, nkvi, (int)dkv, dm, tok, xkv_in, m->wk,
                            gr->t[G_WK], gr->t[G_BK], gkv, self)))
        return attn_fail(err, st, "the layer's backward ran out of memory");
    attn_mha_heads(tok, dvh, c->batch, c->seq_kv, m->heads_kv, m->head_dim, 0);
    if ((st = proj_backward(ctx, nkvi, (int)dkv, dm, tok, xkv_in, m->wv,
                            gr->t[G_WV], gr->t[G_BV], gkv, 1)))
        return attn_fail(err, st, "the layer's backward ran out of memory");

    /* A learned table's row p gets the input gradients at position p. */
    if (gr->t[G_POS]) {
        float *tp = gr->t[G_POS];
        memset(tp, 0, gr->n[G_POS] * sizeof *tp);
        for (int b = 0; b < c->batch; b++) {
            for (size_t i = 0; i < (size_t)c->seq_q; i++)
                for (size_t x = 0; x < d; x++)
                    tp[((size_t)m->pos_offset + i) * d + x] +=
                        gx[((size_t)b * (size_t)c->seq_q + i) * d + x];
            if (!self)
                for (size_t j = 0; j < (size_t)c->seq_kv; j++)
                    for (size_t x = 0; x < d; x++)
                        tp[j * d + x] +=
                            gkv[((size_t)b * (size_t)c->seq_kv + j) * d + x];
        }
    }
    return ATTN_OK;
}

attn_status attn_mha_backward(attn_context *ctx, const attn_mha_desc *m,
                              int batch, int seq_q, int seq_kv,
                              const float *x_q, const float *x_kv,
                              const attn_mask_desc *mask,
                              const attn_mha_saved *saved,
                              const attn_mha_grad *g)
{
    static const char fn[] = "attn_mha_backward";
    static const attn_mask_desc no_mask = ATTN_MASK_DESC_INIT;
    attn_mha_desc ml;
    attn_mask_desc kl;
    attn_mha_grad gl;
    attn_mha_call c;
    attn_err err = {{0}};
    attn_mha_saved own = {0};
    grads gr;
    size_t total = 0, n_ws, nq, nkv, dq, dkv, d, n_saved = 0;
    float *mem, *at;
    attn_status st;

    if (!ctx) {
        INVALID("ctx is NULL");
        return attn_api_report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if (attn_api_from_callback(fn, &err))
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    if (!g) {
        INVALID("g is NULL: no gradient to start from");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    if ((st = attn_abi_mha_desc(m, &ml, &m, &err)) ||
        (st = attn_abi_mask_desc(mask, &kl, &mask, &err)) ||
        (st = attn_abi_read(&gl, g, &grad_layout, &err)))
        return attn_api_report(ctx, fn, st, &err);
    g = &gl;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.batch = batch;
    c.seq_q = seq_q;
    c.seq_kv = seq_kv;
    c.x_q = x_q;
    c.x_kv = x_kv;
    c.mask = mask ? mask : &no_mask;
    /* Validation wants a y; the backward writes none, and reads d_y in
     * its place (an input: it may share memory with the others). */
    c.y = (float *)g->d_y;
    c.y_is_input = 1;
    if ((st = attn_validate_mha(&c, &err)) ||
        (st = check_grads(&c, g, &gr, &err)))
        return attn_api_report(ctx, fn, st, &err);
    if (m->weight_dtype != ATTN_F32) {
        attn_fail(&err, ATTN_ERR_UNSUPPORTED,
                  "the backward needs float weights (weight_dtype ATTN_F32)");
        return attn_api_report(ctx, fn, ATTN_ERR_UNSUPPORTED, &err);
    }
    if (saved && (saved->batch == 0 || !same_shape(saved, &c))) {
        INVALID("saved holds the activations of other sizes (or of a "
                "forward that failed)");
        return attn_api_report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT, &err);
    }

    d = (size_t)m->d_model;
    nq = (size_t)batch * (size_t)seq_q;
    nkv = (size_t)batch * (size_t)seq_kv;
    dq = (size_t)m->heads_q * (size_t)m->head_dim;
    dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    /* The call's copies: x's gradient always (the table's comes from it),
     * x_kv's in cross-attention, the others when asked. */
    for (int i = 0; i < N_G; i++)
        if (gr.out[i] || i == G_XQ || (i == G_XKV && x_kv))
            total += gr.n[i];
    n_ws = nq * d + nkv * d + (nq * dq > nkv * dkv ? nq * dq : nkv * dkv) +
           nq * dq + 2 * nkv * dkv;
    if (!saved)
        n_saved = attn_mha_saved_floats(&c);
    if (n_ws > SIZE_MAX / sizeof(float) / 4 ||
        n_saved > SIZE_MAX / sizeof(float) / 4 ||
        total > SIZE_MAX / sizeof(float) / 2 ||
        !(mem = malloc((total + n_ws + n_saved) * sizeof(float)))) {
        attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                  "cannot allocate the layer's backward memory (%zu floats)",
                  total + n_ws + n_saved);
        return attn_api_report(ctx, fn, ATTN_ERR_OUT_OF_MEMORY, &err);
    }
    at = mem + n_ws + n_saved;
    for (int i = 0; i < N_G; i++) {
        gr.t[i] = NULL;
        if (gr.out[i] || i == G_XQ || (i == G_XKV && x_kv)) {
            gr.t[i] = at;
            at += gr.n[i];
        }
    }
    if (!saved) {
        own.buf = mem + n_ws;
        own.cap = n_saved;
        attn_mha_saved_shape(&own, &c);
        if ((st = attn_mha_train_forward(ctx, &c, &own, NULL, &err))) {
            free(mem);
            return attn_api_report(ctx, fn, st, &err);
        }
        saved = &own;
    }
    if ((st = run_backward(ctx, &c, saved, g->d_y, &gr, mem, &err))) {
        free(mem);
        return attn_api_report(ctx, fn, st, &err);
    }
    for (int i = 0; i < N_G; i++) {
        if (!gr.out[i])
            continue;
        if (g->accumulate)
            for (size_t x = 0; x < gr.n[i]; x++)
                gr.out[i][x] += gr.t[i][x];
        else
            memcpy(gr.out[i], gr.t[i], gr.n[i] * sizeof(float));
    }
    free(mem);
    return ATTN_OK;
}
