/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The double-precision reference of the backward pass: the whole row of
 * probabilities at once (no tiles), straight from the definitions.  For
 * row i with P_j = softmax_j(S_ij) over its visible keys:
 *   dv_j += P_j dO_i,  dP_j = dO_i . v_j,  D_i = sum_j P_j dP_j,
 *   dS_j = P_j (dP_j - D_i),  dq_i = scale sum_j dS_j k_j,
 *   dk_j += scale dS_j q_i,  dbias(the entry of (i, j)) += dS_j.
 * For the additive score S_ij = sum_c w_c tanh(q_ic + k_jc), with
 * t = tanh(q_ic + k_jc): dq_ic and dk_jc get dS_j w_c (1 - t^2) and
 * d additive_w_c gets dS_j t.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

int ref_sdpa_backward_f64(const attn_sdpa_desc *d, const double *q,
                          const double *k, const double *v, const double *d_o,
                          double *dq, double *dk, double *dv)
{
    return ref_sdpa_backward_all_f64(d, q, k, v, d_o, dq, dk, dv, NULL, NULL);
}

int ref_sdpa_backward_all_f64(const attn_sdpa_desc *d, const double *q,
                              const double *k, const double *v,
                              const double *d_o, double *dq, double *dk,
                              double *dv, double *dbias, double *dw)
{
    const int additive = d->score == ATTN_SCORE_ADDITIVE;
    const size_t D = (size_t)d->head_dim, Dv = (size_t)d->head_dim_v;
    const size_t nkv = (size_t)d->seq_kv;
    const int group = d->heads_q / d->heads_kv;
    const double scale =
        d->scale == 0.0f ? 1.0 / sqrt((double)D) : (double)d->scale;
    double *p = malloc(nkv * sizeof *p), *dp = malloc(nkv * sizeof *dp);
    unsigned char *vis = malloc(nkv);
    size_t row = 0;
    if (!p || !dp || !vis) {
        free(p);
        free(dp);
        free(vis);
        return -1;
    }
    memset(dq, 0,
           (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q * D *
               sizeof *dq);
    memset(dk, 0,
           (size_t)d->batch * (size_t)d->heads_kv * nkv * D * sizeof *dk);
    memset(dv, 0,
           (size_t)d->batch * (size_t)d->heads_kv * nkv * Dv * sizeof *dv);
    if (dw)
        memset(dw, 0, (size_t)d->heads_q * D * sizeof *dw);
    if (dbias) {
        /* the largest index of the bias's shape, plus one */
        size_t nb = ref_bias_index(d, d->batch - 1, d->heads_q - 1,
                                   d->seq_q - 1, d->seq_kv - 1) +
                    1;
        memset(dbias, 0, nb * sizeof *dbias);
    }
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < d->seq_q; i++, row++) {
                const size_t kvh =
                    ((size_t)b * (size_t)d->heads_kv + (size_t)(h / group)) *
                    nkv;
                const double *qi = q + row * D, *gi = d_o + row * Dv;
                double m = -INFINITY, sum = 0.0, dd = 0.0;
                for (size_t j = 0; j < nkv; j++) {
                    vis[j] = (unsigned char)ref_score(d, q, k, b, h, i, (int)j,
                                                      &p[j]) &&
                             p[j] != -INFINITY;
                    if (vis[j] && p[j] > m)
                        m = p[j];
                }
                if (m == -INFINITY) /* no visible key: no gradient */
                    continue;
                for (size_t j = 0; j < nkv; j++)
                    if (vis[j]) {
                        p[j] = exp(p[j] - m);
                        sum += p[j];
                    }
                for (size_t j = 0; j < nkv; j++) {
                    const double *vj = v + (kvh + j) * Dv;
                    double acc = 0.0;
                    if (!vis[j])
                        continue;
                    p[j] /= sum;
                    for (size_t c = 0; c < Dv; c++)
                        acc += gi[c] * vj[c];
                    dp[j] = acc;
                    dd += p[j] * acc;
                }
                for (size_t j = 0; j < nkv; j++) {
                    const double *kj = k + (kvh + j) * D;
                    double ds;
                    if (!vis[j])
                        continue;
                    ds = p[j] * (dp[j] - dd);
                    if (dbias)
                        dbias[ref_bias_index(d, b, h, i, (int)j)] += ds;
                    for (size_t c = 0; c < Dv; c++)
                        dv[(kvh + j) * Dv + c] += p[j] * gi[c];
                    if (additive) {
                        const float *w = d->additive_w + (size_t)h * D;
                        for (size_t c = 0; c < D; c++) {
                            const double t = tanh(qi[c] + kj[c]);
                            const double u = ds * (double)w[c] * (1.0 - t * t);
                            dk[(kvh + j) * D + c] += u;
                            dq[row * D + c] += u;
                            if (dw)
                                dw[(size_t)h * D + c] += ds * t;
                        }
                        continue;
                    }
                    ds *= scale;
                    for (size_t c = 0; c < D; c++) {
                        dk[(kvh + j) * D + c] += ds * qi[c];
                        dq[row * D + c] += ds * kj[c];
                    }
                }
            }
    free(p);
    free(dp);
    free(vis);
    return 0;
}
