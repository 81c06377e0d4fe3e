/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The inputs of one call of the OpenCL multi-head layer: tensor sizes,
 * device buffers, the frequency tables, and the uploads on the runtime's
 * queue, each recorded in the call's event list.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/launch_common.h"
#include "opencl/mha_impl.h"

#define TWO_PI 6.283185307179586476925

attn_status attn_cl_mha_stage_sizes(const attn_mha_call *c, mha_sizes *z,
                                    attn_err *err)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL;
    size_t rows_pe;
    memset(z, 0, sizeof *z);
    z->d = (size_t)m->d_model;
    z->dq = (size_t)m->heads_q * (size_t)m->head_dim;
    z->dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    z->dall = z->dq + 2 * z->dkv;
    z->nq = (size_t)c->batch * (size_t)c->seq_q;
    z->nkv = (size_t)c->batch * (size_t)c->seq_kv;
    z->pairs = (z->d + 1) / 2;
    z->half = (size_t)m->head_dim / 2;
    rows_pe = (size_t)c->seq_q + (self ? 0 : (size_t)c->seq_kv);
    if (z->dall > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the q, k and v projections together are %zu wide; "
                         "the device kernels take at most INT_MAX",
                         z->dall);
    if (!attn_mul_size(&z->xq, z->nq, z->d) ||
        !attn_mul_size(&z->xkv, self ? 0 : z->nkv, z->d) ||
        !attn_mul_size(&z->wqkv, z->dall, z->d) ||
        !attn_mul_size(&z->wo, z->d, z->dq) ||
        !attn_mul_size(&z->pe, rows_pe, z->d) ||
        !attn_mul_size(&z->hq, z->nq, z->dq) ||
        !attn_mul_size(&z->hkv, z->nkv, z->dkv) ||
        !attn_mul_size(&z->hkc,
                       c->cache_k ? (size_t)c->batch * (size_t)attn_mha_keys(c)
                                  : 0,
                       z->dkv) ||
        !attn_mul_size(&z->proj, z->nq, self ? z->dall : z->dq) ||
        (!self && z->proj > SIZE_MAX - 2 * z->hkv))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the sizes of the layer's device buffers overflow");
    if (!self)
        z->proj += 2 * z->hkv;
    z->bias = z->dall + z->d;
    if (m->posenc != ATTN_POSENC_LEARNED)
        z->pe = 0;
    return ATTN_OK;
}

attn_status attn_cl_mha_stage_event(mha_run *r, cl_event ev, const char *what)
{
    if (r->n_ev == MHA_MAX_EVENTS) {
        clReleaseEvent(ev);
        return attn_fail(r->err, ATTN_ERR_DEVICE,
                         "internal error: too many commands (%s)", what);
    }
    r->ev[r->n_ev++] = ev;
    return ATTN_OK;
}

_Static_assert(N_BUFS <= 20, "mha_run.pb holds every buffer");

/* A device buffer of n floats from the pool, held by r as r->pb[i]. */
static attn_status new_buffer(mha_run *r, int i, size_t n, const char *name,
                              cl_mem *out)
{
    size_t bytes;
    attn_status s;
    *out = NULL;
    if (!attn_mul_size(&bytes, n, sizeof(float)))
        return attn_fail(r->err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    s = attn_cl_pool_take(r->rt, bytes, ATTN_CL_BUF_DEVICE, name, &r->pb[i],
                          r->err);
    if (s == ATTN_OK)
        *out = r->pb[i].mem;
    return s;
}

/* Enqueues a non-blocking copy of n floats from host to buf at element
 * offset off (the caller's memory stays valid until attn_cl_mha returns,
 * and it returns only after the copy finished). */
static attn_status upload(mha_run *r, cl_mem buf, size_t off, const float *src,
                          size_t n, const char *name)
{
    cl_event ev = NULL;
    cl_int rc = ATTN_CL(clEnqueueWriteBuffer)(
        r->rt->queue, buf, CL_FALSE, off * sizeof(float), n * sizeof(float),
        src, 0, NULL, &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(r->err, attn_cl_status(rc), "cannot copy %s to %s: %s",
                         name, r->rt->info.name, attn_cl_error_name(rc));
    return attn_cl_mha_stage_event(r, ev, name);
}

/* Frequencies in turns (w / 2 pi) as float pairs hi + lo, w_i =
 * 10000^(-2i / den) for i < n, computed in double as the native backend
 * does.  Returns NULL when memory runs out. */
static float *freq_table(size_t n, size_t den)
{
    float *f = malloc(2 * (n ? n : 1) * sizeof *f);
    if (!f)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        double t = 1.0 / pow(10000.0, 2.0 * (double)i / (double)den) / TWO_PI;
        f[2 * i] = (float)t;
        f[2 * i + 1] = (float)(t - (double)f[2 * i]);
    }
    return f;
}

/* Floats of each of the call's buffers (0: not created), and their
 * names. */
static void buffer_floats(const attn_mha_call *c, const mha_sizes *z,
                          const attn_cl_mha_held *held, size_t n[N_BUFS])
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL;
    const int rope = m->posenc == ATTN_POSENC_ROPE && z->half > 0;
    const size_t sq = (size_t)c->seq_q, skv = (size_t)c->seq_kv;
    memset(n, 0, N_BUFS * sizeof *n);
    n[B_XQ] = z->xq;
    n[B_XKV] = self ? 0 : z->xkv;
    n[B_WQKV] = z->wqkv;
    n[B_WO] = z->wo;
    n[B_BIAS] = m->bq || m->bk || m->bv || m->bo ? z->bias : 0;
    n[B_PE] = z->pe;
    n[B_FPE] = m->posenc == ATTN_POSENC_SINUSOIDAL ? 2 * z->pairs : 0;
    n[B_FROPE] = rope ? 2 * z->half : 0;
    n[B_CSQ] = rope ? 2 * sq * z->half : 0;
    n[B_CSKV] = rope && !self ? 2 * skv * z->half : 0;
    n[B_PROJ] = z->proj;
    n[B_HQ] = z->hq;
    n[B_HK] = z->hkv;
    n[B_HV] = z->hkv;
    n[B_HO] = z->hq;
    n[B_HKC] = n[B_HVC] = z->hkc;
    if (held) /* the layer's, on the device already */
        n[B_WQKV] = n[B_WO] = n[B_BIAS] = 0;
}

static const char *const buffer_names[N_BUFS] = {"x_q",
                                                 "x_kv",
                                                 "[Wq; Wk; Wv]",
                                                 "Wo",
                                                 "the biases",
                                                 "pos_table",
                                                 "the sinusoidal frequencies",
                                                 "the RoPE frequencies",
                                                 "the RoPE table",
                                                 "the RoPE table",
                                                 "the projections",
                                                 "the query heads",
                                                 "the key heads",
                                                 "the value heads",
                                                 "the attention output",
                                                 "the cached key heads",
                                                 "the cached value heads"};

attn_status attn_cl_mha_stage_fit(mha_run *r, const attn_mha_call *c,
                                  const mha_sizes *z, attn_err *err)
{
    size_t n[N_BUFS];
    /* The attention step: its input copies and scratch. */
    uint64_t total = attn_cl_add_bytes(r->p->inputs, r->p->scratch);
    uint64_t largest = r->p->largest;
    buffer_floats(c, z, r->held, n);
    for (int i = 0; i < N_BUFS; i++) {
        const uint64_t bytes = n[i] > UINT64_MAX / sizeof(float)
                                   ? UINT64_MAX
                                   : (uint64_t)n[i] * sizeof(float);
        total = attn_cl_add_bytes(total, bytes);
        largest = bytes > largest ? bytes : largest;
    }
    return attn_cl_check_fit(r->rt, "the multi-head layer", total, largest,
                             err);
}

attn_status attn_cl_mha_stage_inputs(mha_run *r, const attn_mha_call *c,
                                     const mha_sizes *z, cl_mem *b)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL;
    const size_t sq = (size_t)c->seq_q, skv = (size_t)c->seq_kv;
    size_t n[N_BUFS];
    attn_status s = ATTN_OK;

    buffer_floats(c, z, r->held, n);
    /* The tables live until the call ends (their uploads do not block). */
    if ((n[B_FPE] && !(r->fpe = freq_table(z->pairs, z->d))) ||
        (n[B_FROPE] && !(r->frope = freq_table(z->half, (size_t)m->head_dim))))
        return attn_fail(r->err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the frequency table");
    for (int i = 0; i < N_BUFS; i++)
        if (n[i] && (s = new_buffer(r, i, n[i], buffer_names[i], &b[i])))
            return s;
    if ((n[B_FPE] &&
         (s = upload(r, b[B_FPE], 0, r->fpe, n[B_FPE], buffer_names[B_FPE]))) ||
        (n[B_FROPE] && (s = upload(r, b[B_FROPE], 0, r->frope, n[B_FROPE],
                                   buffer_names[B_FROPE]))))
        return s;

    if ((s = upload(r, b[B_XQ], 0, c->x_q, z->xq, "x_q")) ||
        (!self && (s = upload(r, b[B_XKV], 0, c->x_kv, z->xkv, "x_kv"))))
        return s;
    if (r->held) {
        b[B_WQKV] = r->held->wqkv;
        b[B_WO] = r->held->wo;
        b[B_BIAS] = r->held->bias;
    } else if ((s = upload(r, b[B_WQKV], 0, m->wq, z->dq * z->d, "wq")) ||
               (s = upload(r, b[B_WQKV], z->dq * z->d, m->wk, z->dkv * z->d,
                           "wk")) ||
               (s = upload(r, b[B_WQKV], (z->dq + z->dkv) * z->d, m->wv,
                           z->dkv * z->d, "wv")) ||
               (s = upload(r, b[B_WO], 0, m->wo, z->wo, "wo")) ||
               (m->bq && (s = upload(r, b[B_BIAS], 0, m->bq, z->dq, "bq"))) ||
               (m->bk &&
                (s = upload(r, b[B_BIAS], z->dq, m->bk, z->dkv, "bk"))) ||
               (m->bv && (s = upload(r, b[B_BIAS], z->dq + z->dkv, m->bv,
                                     z->dkv, "bv"))) ||
               (m->bo &&
                (s = upload(r, b[B_BIAS], z->dall, m->bo, z->d, "bo")))) {
        return s;
    }
    if ((z->pe &&
         (s = upload(r, b[B_PE], 0, m->pos_table + (size_t)m->pos_offset * z->d,
                     sq * z->d, "pos_table"))) ||
        (z->pe && !self &&
         (s = upload(r, b[B_PE], sq * z->d, m->pos_table, skv * z->d,
                     "pos_table"))))
        return s;
    return ATTN_OK;
}

attn_status attn_cl_mha_stage_attention(mha_run *r, const attn_sdpa_desc *sd)
{
    static const char *const names[3] = {"mask.bias", "mask.kv_len",
                                         "additive_w"};
    const void *src[3] = {sd->mask.bias, sd->mask.kv_len,
                          sd->score == ATTN_SCORE_ADDITIVE ? sd->additive_w
                                                           : NULL};
    size_t bytes[3];
    attn_status s;
    if (!attn_cl_input_sizes(sd, bytes))
        return attn_fail(r->err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of the mask overflows");
    for (int i = 0; i < 3; i++) {
        cl_event ev = NULL;
        cl_int rc;
        if (!bytes[i] || !src[i])
            continue;
        if ((s = attn_cl_pool_take(r->rt, bytes[i], ATTN_CL_BUF_DEVICE,
                                   names[i], &r->ab[i], r->err)))
            return s;
        rc = ATTN_CL(clEnqueueWriteBuffer)(r->rt->queue, r->ab[i].mem, CL_FALSE,
                                           0, bytes[i], src[i], 0, NULL, &ev);
        if (rc != CL_SUCCESS)
            return attn_fail(r->err, attn_cl_status(rc),
                             "cannot copy %s to %s: %s", names[i],
                             r->rt->info.name, attn_cl_error_name(rc));
        if ((s = attn_cl_mha_stage_event(r, ev, names[i])))
            return s;
    }
    if (r->p->scratch)
        return attn_cl_pool_take(r->rt, (size_t)r->p->scratch,
                                 ATTN_CL_BUF_DEVICE, "the attention scratch",
                                 &r->ab[A_SCRATCH], r->err);
    return ATTN_OK;
}

void attn_cl_mha_stage_release(mha_run *r, int ok)
{
    for (int i = 0; i < N_BUFS; i++)
        attn_cl_pool_give(r->rt, &r->pb[i], ok);
    for (int i = 0; i < N_ABUFS; i++)
        attn_cl_pool_give(r->rt, &r->ab[i], ok);
    free(r->frope);
    free(r->fpe);
    r->frope = r->fpe = NULL;
}

/* ---- a persistent layer's weights ---------------------------------------- */

void attn_cl_mha_drop(attn_cl_mha_held *h)
{
    if (!h)
        return;
    if (h->bias)
        clReleaseMemObject(h->bias);
    if (h->wo)
        clReleaseMemObject(h->wo);
    if (h->wqkv)
        clReleaseMemObject(h->wqkv);
    free(h);
}

/* A read-only buffer of n floats on rt's device holding the pieces src[i]
 * (n_i floats each, NULL: left unwritten) one after the other. */
static attn_status held_buffer(attn_cl_runtime *rt, size_t n, int pieces,
                               const float *const *src, const size_t *len,
                               const char *name, cl_mem *out, attn_err *err)
{
    size_t bytes, at = 0;
    cl_int rc;
    if (!attn_mul_size(&bytes, n, sizeof(float)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    *out = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_ONLY, bytes, NULL,
                                   &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        return attn_fail(err, attn_cl_status(rc),
                         "cannot create %s (%zu bytes) on %s: %s", name, bytes,
                         rt->info.name, attn_cl_error_name(rc));
    }
    for (int i = 0; i < pieces; i++) {
        if (src[i]) {
            rc = ATTN_CL(clEnqueueWriteBuffer)(
                rt->queue, *out, CL_TRUE, at * sizeof(float),
                len[i] * sizeof(float), src[i], 0, NULL, NULL);
            if (rc != CL_SUCCESS)
                return attn_fail(err, attn_cl_status(rc),
                                 "cannot copy %s to %s: %s", name,
                                 rt->info.name, attn_cl_error_name(rc));
        }
        at += len[i];
    }
    return ATTN_OK;
}

attn_status attn_cl_mha_hold(attn_cl_runtime *rt, const attn_mha_desc *m,
                             attn_cl_mha_held **out, attn_err *err)
{
    const size_t d = (size_t)m->d_model,
                 dq = (size_t)m->heads_q * (size_t)m->head_dim,
                 dkv = (size_t)m->heads_kv * (size_t)m->head_dim;
    const float *const w[3] = {m->wq, m->wk, m->wv};
    const float *const bias[4] = {m->bq, m->bk, m->bv, m->bo};
    const size_t wn[3] = {dq * d, dkv * d, dkv * d};
    const size_t bn[4] = {dq, dkv, dkv, d};
    attn_cl_mha_held *h = calloc(1, sizeof *h);
    attn_status s;
    *out = NULL;
    if (!h)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the layer's device weights");
    if ((s = held_buffer(rt, wn[0] + wn[1] + wn[2], 3, w, wn, "[Wq; Wk; Wv]",
                         &h->wqkv, err)) ||
        (s = held_buffer(rt, d * dq, 1, &m->wo, &wn[0], "Wo", &h->wo, err)) ||
        ((m->bq || m->bk || m->bv || m->bo) &&
         (s = held_buffer(rt, dq + 2 * dkv + d, 4, bias, bn, "the biases",
                          &h->bias, err)))) {
        attn_cl_mha_drop(h);
        return s;
    }
    *out = h;
    return ATTN_OK;
}
