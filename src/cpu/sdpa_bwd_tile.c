/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The native backward pass's jobs (sdpa_bwd.h), compiled once per
 * instruction set.  FlashAttention-2's order: K/V tiles outside, query rows
 * inside, P recomputed from q, k and the forward's lse, so that nothing
 * seq_q x seq_kv is ever stored.  For a visible pair (i, j), with S the
 * score in natural units (scale * q.k + bias) and D_i = rowsum(dO_i * O_i):
 *   P = exp(S - lse_i), dP = dO_i . v_j, dS = P (dP - D_i),
 *   dv_j += P dO_i, dk_j += scale dS q_i, dq_i += scale dS k_j.
 * The loops run over the keys of a tile (scores, dP) or a head's columns
 * (the updates), contiguous in both, for the compiler to vectorise.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "cpu/sdpa_bwd.h"

#define KT SDPA_BWD_KTILE

void attn_sdpa_bwd_prep(void *arg, size_t item, int worker)
{
    struct attn_sdpa_bwd_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    const size_t sq = (size_t)d->seq_q, dh = (size_t)d->head_dim,
                 dv = (size_t)d->head_dim_v;
    const size_t nbh = (size_t)d->batch * (size_t)d->heads_q;

    if (item >= nbh) {
        if (jb->f16) {
            size_t nk = (size_t)d->seq_kv, kv = item - nbh;
            attn_half_to_float_n((const uint16_t *)jb->g->k + kv * nk * dh,
                                 jb->k32 + kv * nk * dh, nk * dh);
            attn_half_to_float_n((const uint16_t *)jb->g->v + kv * nk * dv,
                                 jb->v32 + kv * nk * dv, nk * dv);
        }
        return;
    }
    if (jb->f16) {
        attn_half_to_float_n((const uint16_t *)jb->g->q + item * sq * dh,
                             jb->q32 + item * sq * dh, sq * dh);
        attn_half_to_float_n((const uint16_t *)jb->g->d_o + item * sq * dv,
                             jb->dout32 + item * sq * dv, sq * dv);
    }
    float *orow = jb->scratch + (size_t)worker * jb->scratch_floats;
    for (size_t i = 0; i < sq; i++) {
        size_t row = item * sq + i;
        const float *o, *g = jb->dout + row * dv;
        float acc = 0.0f;
        if (jb->f16) {
            attn_half_to_float_n((const uint16_t *)jb->g->o + row * dv, orow,
                                 dv);
            o = orow;
        } else {
            o = (const float *)jb->g->o + row * dv;
        }
        for (size_t c = 0; c < dv; c++)
            acc += g[c] * o[c];
        jb->drow[row] = acc;
    }
}

/* Writes n floats of src times s to the output dst (F32 or F16) at
 * element offset off; src is scratch and may be overwritten. */
static void put_row(const struct attn_sdpa_bwd_job *jb, void *dst, size_t off,
                    float *src, size_t n, float s)
{
    for (size_t c = 0; c < n; c++)
        src[c] *= s;
    if (jb->f16)
        attn_float_to_half_n(src, (uint16_t *)dst + off, n);
    else
        memcpy((float *)dst + off, src, n * sizeof(float));
}

/* The rows [*lo, *hi) of the queries that may see keys [j0, j0 + jn): the
 * causal mask and the window cut them; each pair is checked again. */
static void row_range(const struct attn_sdpa_bwd_job *jb, long long j0,
                      long long jn, long long *lo, long long *hi)
{
    const attn_sdpa_desc *d = jb->d;
    long long a = 0, b = d->seq_q;
    if (d->mask.causal && j0 - jb->diag > a)
        a = j0 - jb->diag;
    if (d->mask.window > 0) {
        long long last = j0 + jn - 1 - jb->diag + d->mask.window;
        if (last < b)
            b = last;
    }
    *lo = a;
    *hi = b;
}

void attn_sdpa_bwd_item(void *arg, size_t item, int worker)
{
    struct attn_sdpa_bwd_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    const size_t dh = (size_t)d->head_dim, dvw = (size_t)d->head_dim_v;
    const int kt = (int)(item % (size_t)jb->nkt);
    const int hk = (int)(item / (size_t)jb->nkt % (size_t)d->heads_kv);
    const int b = (int)(item / (size_t)jb->nkt / (size_t)d->heads_kv);
    const long long j0 = (long long)kt * KT;
    const int jn = (int)(d->seq_kv - j0 < KT ? d->seq_kv - j0 : KT);
    const int kvlen = d->mask.kv_len ? d->mask.kv_len[b] : d->seq_kv;
    const int jv = kvlen <= j0 ? 0 : (int)(kvlen - j0 < jn ? kvlen - j0 : jn);
    const size_t kvh = (size_t)b * (size_t)d->heads_kv + (size_t)hk;
    const float *kh = jb->k + (kvh * (size_t)d->seq_kv + (size_t)j0) * dh;
    const float *vh = jb->v + (kvh * (size_t)d->seq_kv + (size_t)j0) * dvw;
    float *ws = jb->scratch + (size_t)worker * jb->scratch_floats;
    float *kT = ws, *vT = kT + dh * KT, *dk = vT + dvw * KT;
    float *dvv = dk + (size_t)KT * dh, *s = dvv + (size_t)KT * dvw;
    float *dp = s + KT, *vis = dp + KT;
    float *dqp = jb->dq_part + (size_t)worker * jb->dq_elems;
    long long lo, hi;

    memset(dk, 0, (size_t)KT * dh * sizeof(float));
    memset(dvv, 0, (size_t)KT * dvw * sizeof(float));
    for (int j = 0; j < jv; j++) {
        for (size_t c = 0; c < dh; c++)
            kT[c * KT + (size_t)j] = kh[(size_t)j * dh + c];
        for (size_t c = 0; c < dvw; c++)
            vT[c * KT + (size_t)j] = vh[(size_t)j * dvw + c];
    }
    row_range(jb, j0, jv, &lo, &hi);
    for (int hq = hk * jb->group; jv > 0 && hq < (hk + 1) * jb->group; hq++) {
        const size_t bh = (size_t)b * (size_t)d->heads_q + (size_t)hq;
        const float *bias = NULL;
        const uint8_t *keep = NULL;
        if (d->mask.bias)
            bias = d->mask.bias + (size_t)b * jb->bias_st[0] +
                   (size_t)hq * jb->bias_st[1] + (size_t)j0;
        if (d->keep)
            keep = d->keep + (size_t)b * jb->keep_st[0] +
                   (size_t)hq * jb->keep_st[1] + (size_t)j0;
        for (long long i = lo; i < hi; i++) {
            const size_t row = bh * (size_t)d->seq_q + (size_t)i;
            const float lse = jb->g->lse[row], di = jb->drow[row];
            const float *qi = jb->q + row * dh, *gi = jb->dout + row * dvw;
            float *dqi = dqp + row * dh;
            const long long first = d->mask.window > 0
                                        ? i + jb->diag - d->mask.window + 1
                                        : j0,
                            last = d->mask.causal ? i + jb->diag : j0 + jv;
            int any = 0;

            if (lse == -INFINITY) /* no visible key: dq stays 0 */
                continue;
            for (int j = 0; j < jv; j++)
                s[j] = dp[j] = 0.0f;
            for (size_t c = 0; c < dh; c++) {
                const float x = qi[c], *kc = kT + c * KT;
                for (int j = 0; j < jv; j++)
                    s[j] += x * kc[j];
            }
            for (size_t c = 0; c < dvw; c++) {
                const float x = gi[c], *vc = vT + c * KT;
                for (int j = 0; j < jv; j++)
                    dp[j] += x * vc[j];
            }
            for (int j = 0; j < jv; j++) {
                const long long jj = j0 + j;
                const size_t qo = (size_t)i;
                float sc = s[j] * jb->scale;
                if (bias)
                    sc += bias[qo * jb->bias_st[2] + (size_t)j];
                if (jj < first || jj > last ||
                    (keep && !keep[qo * jb->keep_st[2] + (size_t)j]) ||
                    sc == -INFINITY) {
                    vis[j] = 0.0f;
                    continue;
                }
                vis[j] = 1.0f;
                any = 1;
                s[j] = expf(sc - lse);                   /* P */
                dp[j] = s[j] * (dp[j] - di) * jb->scale; /* scale dS */
            }
            if (!any)
                continue;
            for (int j = 0; j < jv; j++) {
                if (vis[j] == 0.0f)
                    continue;
                const float p = s[j], ds = dp[j];
                const float *kj = kh + (size_t)j * dh;
                float *dkj = dk + (size_t)j * dh, *dvj = dvv + (size_t)j * dvw;
                for (size_t c = 0; c < dvw; c++)
                    dvj[c] += p * gi[c];
                for (size_t c = 0; c < dh; c++) {
                    dkj[c] += ds * qi[c];
                    dqi[c] += ds * kj[c];
                }
            }
        }
    }
    for (int j = 0; j < jn; j++) {
        size_t r = kvh * (size_t)d->seq_kv + (size_t)j0 + (size_t)j;
        put_row(jb, jb->g->dk, r * dh, dk + (size_t)j * dh, dh, 1.0f);
        put_row(jb, jb->g->dv, r * dvw, dvv + (size_t)j * dvw, dvw, 1.0f);
    }
}

void attn_sdpa_bwd_dq(void *arg, size_t item, int worker)
{
    struct attn_sdpa_bwd_job *jb = arg;
    const size_t dh = (size_t)jb->d->head_dim;
    const size_t rows = jb->dq_elems / dh;
    const size_t r0 = item * SDPA_BWD_DQ_ROWS;
    const size_t rn =
        rows - r0 < SDPA_BWD_DQ_ROWS ? rows - r0 : SDPA_BWD_DQ_ROWS;
    float *acc = jb->scratch + (size_t)worker * jb->scratch_floats;

    for (size_t r = r0; r < r0 + rn; r++) {
        memcpy(acc, jb->dq_part + r * dh, dh * sizeof(float));
        for (int w = 1; w < jb->workers; w++) {
            const float *p = jb->dq_part + (size_t)w * jb->dq_elems + r * dh;
            for (size_t c = 0; c < dh; c++)
                acc[c] += p[c];
        }
        put_row(jb, jb->g->dq, r * dh, acc, dh, 1.0f);
    }
}
