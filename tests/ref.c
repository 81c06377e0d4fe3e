/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reference oracle: half conversion, PRNG, naive attention and the naive
 * multi-head layer in double precision.  Written from DESIGN.md, never from
 * the library's sources; slow and obvious on purpose.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- IEEE binary16 ------------------------------------------------------- */

uint16_t ref_f32_to_f16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    double a = fabs((double)f);

    if (isnan(f))
        return (uint16_t)(sign | 0x7e00u);
    if (isinf(f))
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x1p-14) {
        /* Subnormal range: a multiple of 2^-24; 1024 becomes the smallest
         * normal, whose encoding is the same integer. */
        double r = nearbyint(a * 0x1p24);
        return (uint16_t)(sign | (uint16_t)r);
    }
    int e;
    (void)frexp(a, &e);   /* a = m * 2^e, m in [0.5, 1) */
    int exp_half = e - 1; /* a = 1.f * 2^exp_half */
    double r = nearbyint(ldexp(a, 10 - exp_half)); /* in [1024, 2048] */
    if (r >= 2048.0) {
        r = 1024.0;
        exp_half++;
    }
    if (exp_half > 15)
        return (uint16_t)(sign | 0x7c00u);
    return (uint16_t)(sign | (uint16_t)((exp_half + 15) << 10) |
                      (uint16_t)((int)r - 1024));
}

float ref_f16_to_f32(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(1024 + m), e - 25);
    return (float)((h & 0x8000u) ? -v : v);
}

/* ---- bfloat16 ------------------------------------------------------------ */

uint16_t ref_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const double a = fabs((double)f);

    if (isnan(f))
        return (uint16_t)(sign | 0x7fc0u);
    if (isinf(f))
        return (uint16_t)(sign | 0x7f80u);
    if (a < 0x1p-126)
        return sign;
    int e;
    (void)frexp(a, &e);                    /* a = m * 2^e, m in [0.5, 1) */
    double r = nearbyint(ldexp(a, 8 - e)); /* in [128, 256] */
    double v = ldexp(r, e - 8);            /* the rounded magnitude */
    if (v >= 0x1p128)
        return (uint16_t)(sign | 0x7f80u);
    float fv = (float)v;
    uint32_t vb;
    memcpy(&vb, &fv, sizeof vb);
    return (uint16_t)(sign | (vb >> 16));
}

float ref_bf16_to_f32(uint16_t h)
{
    const int e = (h >> 7) & 0xff, m = h & 0x7f;
    double v;
    if (e == 0)
        v = ldexp((double)m, -133);
    else if (e == 255)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(128 + m), e - 134);
    return (float)((h & 0x8000u) ? -v : v);
}

double ref_elem(attn_dtype dt, const void *x, size_t i)
{
    switch (dt) {
    case ATTN_F16:
        return (double)ref_f16_to_f32(((const uint16_t *)x)[i]);
    case ATTN_BF16:
        return (double)ref_bf16_to_f32(((const uint16_t *)x)[i]);
    default:
        return (double)((const float *)x)[i];
    }
}

/* ---- PRNG -----------------------------------------------------------------
 */

void ref_rng_seed(ref_rng *r, uint64_t seed)
{
    r->state = seed * 0x2545f4914f6cdd1dULL + 0x1234567u;
}

uint64_t ref_rng_next(ref_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double ref_rng_uniform(ref_rng *r, double lo, double hi)
{
    double u = (double)(ref_rng_next(r) >> 11) * 0x1p-53;
    return lo + (hi - lo) * u;
}

int ref_rng_int(ref_rng *r, int lo, int hi)
{
    uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo + 1);
    return (int)((int64_t)lo + (int64_t)(ref_rng_next(r) % span));
}

void ref_fill_f32(ref_rng *r, float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)ref_rng_uniform(r, lo, hi);
}

void ref_fill_f16(ref_rng *r, uint16_t *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ref_f32_to_f16((float)ref_rng_uniform(r, lo, hi));
}

void ref_fill_bf16(ref_rng *r, uint16_t *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ref_f32_to_bf16((float)ref_rng_uniform(r, lo, hi));
}

/* ---- attention ------------------------------------------------------------
 */

/* Whether row i of batch item b sees key j (attn.h): the causal diagonal
 * sits at seq_kv - seq_q bottom-right (the default) and, top-left, at
 * kv_start[b] - q_start[b], each moved by causal_offset; rows before
 * q_start and keys before kv_start are padding. */
static int key_visible(const attn_sdpa_desc *d, int b, int i, int j)
{
    const attn_mask_desc *mk = &d->mask;
    const long qs = d->q_start ? (long)d->q_start[b] : 0;
    const long ks = d->kv_start ? (long)d->kv_start[b] : 0;
    const long off = (d->causal_align == ATTN_CAUSAL_TOP_LEFT
                          ? ks - qs
                          : (long)d->seq_kv - (long)d->seq_q) +
                     (long)d->causal_offset;
    if ((long)i < qs || (long)j < ks)
        return 0;
    if (mk->causal && (long)j > (long)i + off)
        return 0;
    if (mk->window > 0 && (long)j < (long)i + off - (long)mk->window + 1)
        return 0;
    if (mk->kv_len && j >= mk->kv_len[b])
        return 0;
    return 1;
}

size_t ref_bias_index(const attn_sdpa_desc *d, int b, int h, int i, int j)
{
    const attn_mask_desc *mk = &d->mask;
    size_t ext[3] = {1, 1, 1}, at;
    switch (mk->bias_kind) {
    case ATTN_BIAS_NONE:
        return 0;
    case ATTN_BIAS_FULL:
        ext[0] = (size_t)d->batch;
        /* fall through */
    case ATTN_BIAS_PER_HEAD:
        ext[1] = (size_t)d->heads_q;
        /* fall through */
    case ATTN_BIAS_SHARED:
        ext[2] = (size_t)d->seq_q;
        break;
    case ATTN_BIAS_KEY:
        ext[0] = (size_t)d->batch;
        break;
    case ATTN_BIAS_BROADCAST:
        for (int k = 0; k < 3; k++)
            ext[k] = (size_t)d->bias_shape[k];
        break;
    }
    at = ext[0] > 1 ? (size_t)b : 0;
    at = at * ext[1] + (ext[1] > 1 ? (size_t)h : 0);
    at = at * ext[2] + (ext[2] > 1 ? (size_t)i : 0);
    return at * (size_t)d->seq_kv + (size_t)j;
}

/* The bias of (b, h, i, j): the tensor [B, H, Q, seq_kv] of its kind
 * (attn.h), indexed at 0 over a dimension of extent 1. */
static double bias_at(const attn_sdpa_desc *d, int b, int h, int i, int j)
{
    if (d->mask.bias_kind == ATTN_BIAS_NONE)
        return 0.0;
    return d->mask.bias[ref_bias_index(d, b, h, i, j)];
}

/* Whether d's boolean mask keeps key j for (b, h, i): keep [B, H, Q,
 * seq_kv] of extents keep_shape, indexed at 0 over an extent of 1; 1
 * without a mask. */
static int keep_at(const attn_sdpa_desc *d, int b, int h, int i, int j)
{
    const int *e = d->keep_shape;
    size_t at;
    if (!d->keep)
        return 1;
    at = (size_t)(e[0] > 1 ? b : 0);
    at = at * (size_t)e[1] + (size_t)(e[1] > 1 ? h : 0);
    at = at * (size_t)e[2] + (size_t)(e[2] > 1 ? i : 0);
    return d->keep[at * (size_t)d->seq_kv + (size_t)j] != 0;
}

int ref_score(const attn_sdpa_desc *d, const double *q, const double *k, int b,
              int h, int i, int j, double *score)
{
    const int D = d->head_dim, g = h / (d->heads_q / d->heads_kv);
    const double scale =
        d->scale == 0.0f ? 1.0 / sqrt((double)D) : (double)d->scale;
    const double *qr, *kr;
    double acc = 0.0;
    if (!key_visible(d, b, i, j) || !keep_at(d, b, h, i, j))
        return 0;
    qr = q + (((size_t)b * (size_t)d->heads_q + (size_t)h) * (size_t)d->seq_q +
              (size_t)i) *
                 (size_t)D;
    kr =
        k + (((size_t)b * (size_t)d->heads_kv + (size_t)g) * (size_t)d->seq_kv +
             (size_t)j) *
                (size_t)D;
    if (d->score == ATTN_SCORE_ADDITIVE) {
        const float *w = d->additive_w + (size_t)h * (size_t)D;
        for (int c = 0; c < D; c++)
            acc += (double)w[c] * tanh(qr[c] + kr[c]);
    } else {
        for (int c = 0; c < D; c++)
            acc += qr[c] * kr[c];
        acc *= scale;
    }
    if (d->mask.bias_kind != ATTN_BIAS_NONE)
        acc += bias_at(d, b, h, i, j);
    *score = acc;
    return 1;
}

/* ref_sdpa_f64, and each row's magnitude M and max|v| (mag, vmax: may be
 * NULL) for the precision terms of ref.h. */
static int sdpa_rows(const attn_sdpa_desc *d, const double *q, const double *k,
                     const double *v, double *o, double *lse, double *tol_o,
                     double *tol_lse, double *row_mag, double *row_vmax,
                     unsigned char *hidden)
{
    const int D = d->head_dim, Dv = d->head_dim_v;
    const int group = d->heads_q / d->heads_kv;
    const double scale =
        d->scale == 0.0f ? 1.0 / sqrt((double)D) : (double)d->scale;
    const double gamma = REF_LOGIT_ULPS(D) * 0x1p-24;
    double *s = malloc((size_t)d->seq_kv * sizeof *s);
    double *mag = malloc((size_t)d->seq_kv * sizeof *mag);
    if (!s || !mag) {
        free(s);
        free(mag);
        return -1;
    }
    size_t row = 0;
    for (int b = 0; b < d->batch; b++) {
        for (int h = 0; h < d->heads_q; h++) {
            int g = h / group;
            for (int i = 0; i < d->seq_q; i++, row++) {
                const double *qr = q + row * (size_t)D;
                double m = -INFINITY;
                int nan_row = 0;
                for (int j = 0; j < d->seq_kv; j++) {
                    s[j] = -INFINITY;
                    mag[j] = 0.0;
                    if (!key_visible(d, b, i, j) || !keep_at(d, b, h, i, j))
                        continue;
                    const double *kr =
                        k + (((size_t)b * (size_t)d->heads_kv + (size_t)g) *
                                 (size_t)d->seq_kv +
                             (size_t)j) *
                                (size_t)D;
                    double acc = 0.0, am = 0.0;
                    if (d->score == ATTN_SCORE_ADDITIVE) {
                        const float *w = d->additive_w + (size_t)h * (size_t)D;
                        for (int c = 0; c < D; c++) {
                            double t = qr[c] + kr[c];
                            acc += (double)w[c] * tanh(t);
                            am += fabs((double)w[c]) * (1.0 + fabs(t));
                        }
                    } else {
                        for (int c = 0; c < D; c++) {
                            acc += qr[c] * kr[c];
                            am += fabs(qr[c] * kr[c]);
                        }
                        acc *= scale;
                        am *= fabs(scale);
                    }
                    if (d->mask.bias_kind != ATTN_BIAS_NONE) {
                        double bv = bias_at(d, b, h, i, j);
                        acc += bv;
                        if (isfinite(bv))
                            am += fabs(bv);
                    }
                    s[j] = acc;
                    mag[j] = am;
                    if (isnan(acc))
                        nan_row = 1;
                    else if (acc > m)
                        m = acc;
                }
                double *orow = o + row * (size_t)Dv;
                if (nan_row) {
                    for (int c = 0; c < Dv; c++)
                        orow[c] = NAN;
                    if (lse)
                        lse[row] = NAN;
                    if (tol_o)
                        tol_o[row] = 0.0;
                    if (tol_lse)
                        tol_lse[row] = 0.0;
                    if (row_mag)
                        row_mag[row] = row_vmax[row] = 0.0;
                    if (hidden)
                        hidden[row] = 0;
                    continue;
                }
                if (m == -INFINITY) {
                    for (int c = 0; c < Dv; c++)
                        orow[c] = 0.0;
                    if (lse)
                        lse[row] = -INFINITY;
                    if (tol_o)
                        tol_o[row] = 0.0;
                    if (tol_lse)
                        tol_lse[row] = 0.0;
                    if (row_mag)
                        row_mag[row] = row_vmax[row] = 0.0;
                    if (hidden)
                        hidden[row] = 1;
                    continue;
                }
                double l = 0.0, maxmag = 0.0, vmax = 0.0;
                for (int c = 0; c < Dv; c++)
                    orow[c] = 0.0;
                for (int j = 0; j < d->seq_kv; j++) {
                    if (s[j] == -INFINITY)
                        continue;
                    const double *vr =
                        v + (((size_t)b * (size_t)d->heads_kv + (size_t)g) *
                                 (size_t)d->seq_kv +
                             (size_t)j) *
                                (size_t)Dv;
                    double p = exp(s[j] - m);
                    l += p;
                    for (int c = 0; c < Dv; c++) {
                        orow[c] += p * vr[c];
                        if (fabs(vr[c]) > vmax)
                            vmax = fabs(vr[c]);
                    }
                    if (mag[j] > maxmag)
                        maxmag = mag[j];
                }
                for (int c = 0; c < Dv; c++)
                    orow[c] /= l;
                if (lse)
                    lse[row] = m + log(l);
                if (tol_o)
                    tol_o[row] = 2.0 * gamma * maxmag * vmax;
                if (tol_lse)
                    tol_lse[row] = gamma * maxmag;
                if (row_mag) {
                    row_mag[row] = maxmag;
                    row_vmax[row] = vmax;
                }
                if (hidden)
                    hidden[row] = 0;
            }
        }
    }
    free(s);
    free(mag);
    return 0;
}

int ref_sdpa_f64(const attn_sdpa_desc *d, const double *q, const double *k,
                 const double *v, double *o, double *lse, double *tol_o,
                 double *tol_lse, unsigned char *hidden)
{
    return sdpa_rows(d, q, k, v, o, lse, tol_o, tol_lse, NULL, NULL, hidden);
}

void ref_tol_at(attn_precision p, double mag, double vmax, double *tol_o,
                double *tol_lse)
{
    double t = ref_precision_t(p), e;
    if (t == 0.0)
        return;
    e = *tol_lse + t * mag; /* *tol_lse is g M */
    *tol_o = (expm1(2.0 * e) + t * exp(2.0 * e)) * vmax;
    *tol_lse = e;
}

double ref_precision_t(attn_precision p)
{
    const double u = REF_TF32_U;
    switch (p) {
    case ATTN_PRECISION_TF32:
        return 2.0 * u + u * u;
    case ATTN_PRECISION_3XTF32:
        return 3.0 * u * u + 4.0 * u * u * u + u * u * u * u;
    case ATTN_PRECISION_BF16:
        return 2.0 * REF_BF16_U + REF_BF16_U * REF_BF16_U;
    default:
        return 0.0;
    }
}

static double *to_f64(const void *x, size_t n, attn_dtype dt)
{
    double *y = malloc((n ? n : 1) * sizeof *y);
    if (!y)
        return NULL;
    for (size_t i = 0; i < n; i++)
        y[i] = ref_elem(dt, x, i);
    return y;
}

void ref_sdpa_free(ref_sdpa_result *r)
{
    free(r->o);
    free(r->lse);
    free(r->tol_o);
    free(r->tol_lse);
    free(r->mag);
    free(r->vmax);
    free(r->hidden);
    memset(r, 0, sizeof *r);
}

int ref_sdpa(const attn_sdpa_desc *d, const void *q, const void *k,
             const void *v, ref_sdpa_result *r)
{
    size_t bh = (size_t)d->batch * (size_t)d->heads_q;
    size_t bhkv = (size_t)d->batch * (size_t)d->heads_kv;
    size_t nq = bh * (size_t)d->seq_q * (size_t)d->head_dim;
    size_t nk = bhkv * (size_t)d->seq_kv * (size_t)d->head_dim;
    size_t nv = bhkv * (size_t)d->seq_kv * (size_t)d->head_dim_v;
    memset(r, 0, sizeof *r);
    r->rows = bh * (size_t)d->seq_q;
    r->dv = d->head_dim_v;
    r->o = malloc(r->rows * (size_t)d->head_dim_v * sizeof *r->o);
    r->lse = malloc(r->rows * sizeof *r->lse);
    r->tol_o = malloc(r->rows * sizeof *r->tol_o);
    r->tol_lse = malloc(r->rows * sizeof *r->tol_lse);
    r->mag = malloc(r->rows * sizeof *r->mag);
    r->vmax = malloc(r->rows * sizeof *r->vmax);
    r->hidden = malloc(r->rows);
    double *qd = to_f64(q, nq, d->dtype);
    double *kd = to_f64(k, nk, d->dtype);
    double *vd = to_f64(v, nv, d->dtype);
    int rc = -1;
    if (r->o && r->lse && r->tol_o && r->tol_lse && r->mag && r->vmax &&
        r->hidden && qd && kd && vd)
        rc = sdpa_rows(d, qd, kd, vd, r->o, r->lse, r->tol_o, r->tol_lse,
                       r->mag, r->vmax, r->hidden);
    free(qd);
    free(kd);
    free(vd);
    if (rc != 0)
        ref_sdpa_free(r);
    return rc;
}

/* ---- multi-head layer ------------------------------------------------------
 */

double ref_sinusoidal(double p, int col, int d_model)
{
    int two_i = col - (col & 1);
    double angle = p / pow(10000.0, (double)two_i / (double)d_model);
    return (col & 1) ? cos(angle) : sin(angle);
}

/* x [batch, seq, d_model] + positional encoding at positions first + t. */
static void add_posenc(const attn_mha_desc *m, double *x, int batch, int seq,
                       int first)
{
    size_t dm = (size_t)m->d_model;
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq; t++) {
            double *row = x + ((size_t)b * (size_t)seq + (size_t)t) * dm;
            int p = first + t;
            for (size_t c = 0; c < dm; c++) {
                if (m->posenc == ATTN_POSENC_SINUSOIDAL)
                    row[c] += ref_sinusoidal((double)p, (int)c, m->d_model);
                else if (m->posenc == ATTN_POSENC_LEARNED)
                    row[c] += (double)m->pos_table[(size_t)p * dm + c];
            }
        }
}

/* out [batch, heads, seq, hd] = per head: x [batch, seq, d_model] W^T + b. */
static void project_heads(const double *x, const float *w, const float *bias,
                          int batch, int seq, int d_model, int heads, int hd,
                          double *out)
{
    for (int b = 0; b < batch; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < seq; t++) {
                const double *xr =
                    x + ((size_t)b * (size_t)seq + (size_t)t) * (size_t)d_model;
                double *orow = out + (((size_t)b * (size_t)heads + (size_t)h) *
                                          (size_t)seq +
                                      (size_t)t) *
                                         (size_t)hd;
                for (int e = 0; e < hd; e++) {
                    size_t n = (size_t)h * (size_t)hd + (size_t)e;
                    const float *wr = w + n * (size_t)d_model;
                    double acc = bias ? (double)bias[n] : 0.0;
                    for (int c = 0; c < d_model; c++)
                        acc += xr[c] * (double)wr[c];
                    orow[e] = acc;
                }
            }
}

/* Rotates every head vector of x [batch, heads, seq, hd] at positions
 * first + t. */
static void rope(double *x, int batch, int heads, int seq, int hd, int first)
{
    for (size_t bh = 0; bh < (size_t)batch * (size_t)heads; bh++)
        for (int t = 0; t < seq; t++) {
            double *r = x + (bh * (size_t)seq + (size_t)t) * (size_t)hd;
            double p = (double)(first + t);
            for (int i = 0; 2 * i + 1 < hd; i++) {
                double theta = p * pow(10000.0, -2.0 * i / (double)hd);
                double x0 = r[2 * i], x1 = r[2 * i + 1];
                r[2 * i] = x0 * cos(theta) - x1 * sin(theta);
                r[2 * i + 1] = x0 * sin(theta) + x1 * cos(theta);
            }
        }
}

static int mha_rows(const attn_mha_desc *m, float scale, attn_precision p,
                    int batch, int seq_q, int seq_kv, const float *x_q,
                    const float *x_kv, const attn_mask_desc *mask, double *y,
                    double *y_tol);

int ref_mha(const attn_mha_desc *m, int batch, int seq_q, int seq_kv,
            const float *x_q, const float *x_kv, const attn_mask_desc *mask,
            double *y)
{
    return mha_rows(m, 0.0f, ATTN_PRECISION_EXACT, batch, seq_q, seq_kv, x_q,
                    x_kv, mask, y, NULL);
}

int ref_mha_scaled(const attn_mha_desc *m, float scale, int batch, int seq_q,
                   int seq_kv, const float *x_q, const float *x_kv,
                   const attn_mask_desc *mask, double *y)
{
    return mha_rows(m, scale, ATTN_PRECISION_EXACT, batch, seq_q, seq_kv, x_q,
                    x_kv, mask, y, NULL);
}

int ref_mha_at(const attn_mha_desc *m, attn_precision p, int batch, int seq_q,
               int seq_kv, const float *x_q, const float *x_kv,
               const attn_mask_desc *mask, double *y, double *y_tol)
{
    return mha_rows(m, 0.0f, p, batch, seq_q, seq_kv, x_q, x_kv, mask, y,
                    y_tol);
}

/* The layer's y, and with y_tol each element's extra tolerance when the
 * attention runs at precision p: row (b, h, i) of O may move by tol_o at p
 * (ref.h), and y[b, i, c] = sum over h, e of O[b, h, i, e] wo[c, h hd + e]
 * then by at most sum over h of tol_o(b, h, i) sum over e of
 * |wo[c, h hd + e]| (the projections are float, the REF_MHA terms). */
static int mha_rows(const attn_mha_desc *m, float scale, attn_precision p,
                    int batch, int seq_q, int seq_kv, const float *x_q,
                    const float *x_kv, const attn_mask_desc *mask, double *y,
                    double *y_tol)
{
    const int self = x_kv == NULL;
    if (self)
        seq_kv = seq_q;
    const size_t dm = (size_t)m->d_model, hd = (size_t)m->head_dim;
    const size_t inner = (size_t)m->heads_q * hd;
    size_t nxq = (size_t)batch * (size_t)seq_q * dm;
    size_t nxk = (size_t)batch * (size_t)seq_kv * dm;
    size_t nq = (size_t)batch * inner * (size_t)seq_q;
    size_t nk = (size_t)batch * (size_t)m->heads_kv * hd * (size_t)seq_kv;
    double *xq = malloc(nxq * sizeof *xq);
    double *xk = malloc(nxk * sizeof *xk);
    double *q = malloc(nq * sizeof *q);
    double *k = malloc(nk * sizeof *k);
    double *v = malloc(nk * sizeof *v);
    double *o = malloc(nq * sizeof *o);
    /* Per attention row: tol_o, tol_lse, M, max |v| (y_tol only). */
    const size_t rows = (size_t)batch * (size_t)m->heads_q * (size_t)seq_q;
    double *rt = y_tol ? malloc((4 * rows + 1) * sizeof *rt) : NULL;
    int rc = -1;
    if (!xq || !xk || !q || !k || !v || !o || (y_tol && !rt))
        goto out;

    for (size_t i = 0; i < nxq; i++)
        xq[i] = (double)x_q[i];
    add_posenc(m, xq, batch, seq_q, m->pos_offset);
    if (self) {
        memcpy(xk, xq, nxq * sizeof *xq);
    } else {
        for (size_t i = 0; i < nxk; i++)
            xk[i] = (double)x_kv[i];
        add_posenc(m, xk, batch, seq_kv, 0);
    }
    project_heads(xq, m->wq, m->bq, batch, seq_q, m->d_model, m->heads_q,
                  m->head_dim, q);
    project_heads(xk, m->wk, m->bk, batch, seq_kv, m->d_model, m->heads_kv,
                  m->head_dim, k);
    project_heads(xk, m->wv, m->bv, batch, seq_kv, m->d_model, m->heads_kv,
                  m->head_dim, v);
    if (m->posenc == ATTN_POSENC_ROPE) {
        rope(q, batch, m->heads_q, seq_q, m->head_dim, m->pos_offset);
        rope(k, batch, m->heads_kv, seq_kv, m->head_dim,
             self ? m->pos_offset : 0);
    }

    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = batch;
    d.heads_q = m->heads_q;
    d.heads_kv = m->heads_kv;
    d.seq_q = seq_q;
    d.seq_kv = seq_kv;
    d.head_dim = m->head_dim;
    d.head_dim_v = m->head_dim;
    d.scale = scale;
    d.score = m->score;
    d.additive_w = m->additive_w;
    if (mask)
        d.mask = *mask;
    d.dtype = ATTN_F32;
    if (sdpa_rows(&d, q, k, v, o, NULL, rt, rt ? rt + rows : NULL,
                  rt ? rt + 2 * rows : NULL, rt ? rt + 3 * rows : NULL,
                  NULL) != 0)
        goto out;
    for (size_t r = 0; rt && r < rows; r++)
        ref_tol_at(p, rt[2 * rows + r], rt[3 * rows + r], &rt[r],
                   &rt[rows + r]);

    /* y[b, i, c] = sum_n concat[b, i, n] wo[c, n] + bo[c] with
     * concat[b, i, h*hd + e] = o[b, h, i, e]. */
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < seq_q; i++)
            for (size_t c = 0; c < dm; c++) {
                const float *wr = m->wo + c * inner;
                double acc = m->bo ? (double)m->bo[c] : 0.0, tol = 0.0;
                for (int h = 0; h < m->heads_q; h++) {
                    const size_t row =
                        ((size_t)b * (size_t)m->heads_q + (size_t)h) *
                            (size_t)seq_q +
                        (size_t)i;
                    const double *orow = o + row * hd;
                    double wsum = 0.0;
                    for (size_t e = 0; e < hd; e++) {
                        acc += orow[e] * (double)wr[(size_t)h * hd + e];
                        wsum += fabs((double)wr[(size_t)h * hd + e]);
                    }
                    if (rt)
                        tol += rt[row] * wsum;
                }
                y[((size_t)b * (size_t)seq_q + (size_t)i) * dm + c] = acc;
                if (y_tol)
                    y_tol[((size_t)b * (size_t)seq_q + (size_t)i) * dm + c] =
                        p == ATTN_PRECISION_EXACT ? 0.0 : tol;
            }
    rc = 0;
out:
    free(xq);
    free(xk);
    free(q);
    free(k);
    free(v);
    free(o);
    free(rt);
    return rc;
}
