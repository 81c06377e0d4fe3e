/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The multi-head attention layer on the native backend, compiled once per
 * instruction set (with its projections and positional encodings from the
 * same copy).  Activations stay token-major ([batch, seq, heads * head_dim])
 * from projection to output projection: the attention kernel reads the
 * heads through strides, so no head split or merge is ever copied.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_impl.h"
#include "core/memsize.h"

/* Copies the step's keys and values (token-major [batch, seq_q, heads_kv *
 * head_dim]) into rows cache_len .. of the cache. */
static void append_cache(const attn_mha_call *c, const float *pk,
                         const float *pv)
{
    const attn_mha_desc *m = c->m;
    const size_t hd = (size_t)m->head_dim, dkv = (size_t)m->heads_kv * hd,
                 cap = (size_t)c->cache_cap;
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < m->heads_kv; h++) {
            size_t at = (((size_t)b * (size_t)m->heads_kv + (size_t)h) * cap +
                         (size_t)c->cache_len) *
                        hd;
            for (int t = 0; t < c->seq_q; t++) {
                size_t from = ((size_t)b * (size_t)c->seq_q + (size_t)t) * dkv +
                              (size_t)h * hd;
                memcpy(c->cache_k + at + (size_t)t * hd, pk + from,
                       hd * sizeof(float));
                memcpy(c->cache_v + at + (size_t)t * hd, pv + from,
                       hd * sizeof(float));
            }
        }
}

attn_status attn_cpu_mha(attn_cpu *cpu, const attn_mha_call *c, attn_err *err)
{
    const attn_mha_desc *m = c->m;
    attn_pool *pool = attn_cpu_pool(cpu);
    int self = c->x_kv == NULL, pe = m->posenc == ATTN_POSENC_SINUSOIDAL ||
                                     m->posenc == ATTN_POSENC_LEARNED;
    size_t d = (size_t)m->d_model, nq = (size_t)c->batch * c->seq_q,
           nkv = (size_t)c->batch * c->seq_kv;
    size_t dq = (size_t)m->heads_q * m->head_dim,
           dkv = (size_t)m->heads_kv * m->head_dim;
    size_t n_xq = pe ? nq * d : 0, n_xkv = pe && !self ? nkv * d : 0;
    size_t total = n_xq + n_xkv + 2 * nq * dq + 2 * nkv * dkv;
    const float *xq = c->x_q, *xkv = self ? c->x_q : c->x_kv;
    float *buf, *pq, *pk, *pv, *po;
    const float *ak, *av; /* the keys and values attended over */
    attn_sdpa_desc sd;
    attn_cpu_layout lay;
    attn_status s;

    if (total > SIZE_MAX / sizeof(float) ||
        (attn_host_memory_bytes() != 0 &&
         (uint64_t)total * sizeof(float) > attn_host_memory_bytes()) ||
        !(buf = malloc(total * sizeof(float)))) {
        char need[ATTN_BYTES_TEXT_MAX], have[ATTN_BYTES_TEXT_MAX];
        return attn_fail(
            err, ATTN_ERR_OUT_OF_MEMORY,
            "the layer's activations need %s on the native backend; the "
            "host has %s",
            total > SIZE_MAX / sizeof(float)
                ? "more than the address space"
                : attn_bytes_text(need, sizeof need, total * sizeof(float)),
            attn_bytes_text(have, sizeof have, attn_host_memory_bytes()));
    }
    pq = buf + n_xq + n_xkv;
    pk = pq + nq * dq;
    pv = pk + nkv * dkv;
    po = pv + nkv * dkv;
    if (pe) {
        attn_cpu_add_posenc(m, c->batch, c->seq_q, m->pos_offset, c->x_q, buf);
        xq = buf;
        if (self) {
            xkv = buf;
        } else {
            attn_cpu_add_posenc(m, c->batch, c->seq_kv, 0, c->x_kv, buf + n_xq);
            xkv = buf + n_xq;
        }
    }
    if ((s = attn_cpu_gemm_nt(pool, (int)nq, (int)dq, m->d_model, xq, d, m->wq,
                              d, m->bq, pq, dq)) ||
        (s = attn_cpu_gemm_nt(pool, (int)nkv, (int)dkv, m->d_model, xkv, d,
                              m->wk, d, m->bk, pk, dkv)) ||
        (s = attn_cpu_gemm_nt(pool, (int)nkv, (int)dkv, m->d_model, xkv, d,
                              m->wv, d, m->bv, pv, dkv)))
        goto done;
    if (m->posenc == ATTN_POSENC_ROPE) {
        attn_cpu_rope(pq, nq, dq, m->heads_q, m->head_dim, c->seq_q,
                      m->pos_offset);
        attn_cpu_rope(pk, nkv, dkv, m->heads_kv, m->head_dim, c->seq_kv,
                      self ? m->pos_offset : 0);
    }

    attn_mha_sdpa_desc(c, &sd);
    /* Token-major strides: batch, head, row. */
    lay.q[0] = lay.o[0] = (size_t)c->seq_q * dq;
    lay.k[0] = lay.v[0] = (size_t)c->seq_kv * dkv;
    lay.q[1] = lay.o[1] = lay.k[1] = lay.v[1] = (size_t)m->head_dim;
    lay.q[2] = lay.o[2] = dq;
    lay.k[2] = lay.v[2] = dkv;
    ak = pk;
    av = pv;
    if (c->cache_k) {
        append_cache(c, pk, pv);
        /* The cache's own strides: [batch, heads_kv, capacity, head_dim]. */
        lay.k[1] = lay.v[1] = (size_t)c->cache_cap * (size_t)m->head_dim;
        lay.k[0] = lay.v[0] = (size_t)m->heads_kv * lay.k[1];
        lay.k[2] = lay.v[2] = (size_t)m->head_dim;
        ak = c->cache_k;
        av = c->cache_v;
    }
    if ((s = attn_cpu_sdpa(cpu, &sd, pq, ak, av, po, NULL, &lay,
                           ATTN_PRECISION_EXACT)))
        goto done;
    s = attn_cpu_gemm_nt(pool, (int)nq, m->d_model, (int)dq, po, dq, m->wo, dq,
                         m->bo, c->y, d);
done:
    free(buf);
    if (s)
        attn_fail(err, s, "the native multi-head layer ran out of memory");
    return s;
}
