/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The native backward pass's jobs (sdpa_bwd.h), compiled once per
 * instruction set.  FlashAttention-2's order: K/V tiles outside, query rows
 * inside, P recomputed from q, k and the forward's lse, so that nothing
 * seq_q x seq_kv is ever stored.  For a visible pair (i, j), with S the
 * score in natural units (scale * q.k + bias) and D_i = rowsum(dO_i * O_i):
 *   P = exp(S - lse_i), dP = dO_i . v_j, dS = P (dP - D_i),
 *   dv_j += P dO_i, dk_j += scale dS q_i, dq_i += scale dS k_j
 * (the sums of dS q and dS k are scaled once, as they are written), and
 * dbias gets dS itself.  For the additive score S = sum_c w_c t_c with
 * t = tanh(q_i + k_j): dq_i and dk_j get dS w (1 - t^2), d additive_w
 * gets dS t (computed pair by pair, tanh twice per pair and column).
 * The loops run over the keys of a tile (scores, dP) or a head's columns
 * (the updates), contiguous in both, for the compiler to vectorise (P's
 * exponential is written with AVX-512 intrinsics in that copy).
 */
#include <math.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "core/core.h"
#include "cpu/sdpa_bwd.h"
#if defined(__AVX512F__)
#include "cpu/exp2_avx512.h"
#endif

#define KT SDPA_BWD_KTILE
#define QB SDPA_BWD_QB
#define W  SDPA_BWD_W

/* Writes n floats of src to the output dst (F32 or F16) at element
 * offset off. */
static void put_row(const struct attn_sdpa_bwd_job *jb, void *dst, size_t off,
                    const float *src, size_t n)
{
    if (jb->f16)
        attn_float_to_u16_n(jb->d->dtype, src, (uint16_t *)dst + off, n);
    else
        memcpy((float *)dst + off, src, n * sizeof(float));
}

/* The rows [*lo, *hi) of the queries that may see keys [j0, j0 + jn): the
 * causal mask and the window cut them; each pair is checked again. */
static void row_range(const struct attn_sdpa_bwd_job *jb, long long diag,
                      long long j0, long long jn, long long *lo, long long *hi)
{
    const attn_sdpa_desc *d = jb->d;
    long long a = 0, b = d->seq_q;
    if (d->mask.causal && j0 - diag > a)
        a = j0 - diag;
    if (d->mask.window > 0) {
        long long last = j0 + jn - 1 - diag + d->mask.window;
        if (last < b)
            b = last;
    }
    *lo = a;
    *hi = b;
}

/* A worker's scratch for one item (attn_sdpa_bwd_scratch): rows of
 * padded widths dp (head_dim) and vp (head_dim_v), zero past the heads. */
struct tile {
    float *kT, *vT;   /* [dp][KT], [vp][KT]: the key tile transposed */
    float *kc;        /* [KT][dp]: its keys as rows */
    float *dkT, *dvT; /* [dp][KT], [vp][KT]: its dk and dv sums, transposed */
    float *qb, *gb;   /* [QB][dp], [QB][vp]: a block of q and dO rows */
    float *dq;        /* [QB][dp]: the block's dq from this tile */
    float *p, *ds;    /* [QB][KT]: P and dS; 0 where hidden */
};

/* One SIMD register of floats in the compiler's vector extension: 16 in
 * the avx512 copy, 8 in the avx2 copy, 4 in the generic one.  This file is
 * built with -ffp-contract=fast, so a * b + c is one FMA where the
 * instruction set has it. */
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX2__)
#define VW 8
#else
#define VW 4
#endif
typedef float vf __attribute__((vector_size(VW * 4)));
/* Keys per pass of rows_times_tile: with two rows, 8 sums in registers. */
#define KP (4 * VW)

static inline vf loadv(const float *p)
{
    vf x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void storev(float *p, vf x)
{
    memcpy(p, &x, sizeof x);
}

/* out0[w] = sum_i a0[i * sa] * B[i][w] (plus out0[w] with add), and the
 * same for a1 and out1, for w < width (a multiple of VW), over the n rows
 * of B (ldb floats apart): two rows of a product at once, the sums in
 * registers, each vector of B loaded once for both. */
static void rows_times(const float *a0, const float *a1, size_t sa, size_t n,
                       const float *B, size_t ldb, size_t width, int add,
                       float *out0, float *out1)
{
    size_t w0 = 0;
    for (; w0 + KP <= width; w0 += KP) {
        vf s[KP / VW], u[KP / VW];
#pragma GCC unroll 4
        for (int t = 0; t < KP / VW; t++) {
            s[t] = add ? loadv(out0 + w0 + t * VW) : (vf){0};
            u[t] = add ? loadv(out1 + w0 + t * VW) : (vf){0};
        }
        for (size_t i = 0; i < n; i++) {
            const float *b = B + i * ldb + w0;
            const float x = a0[i * sa], y = a1[i * sa];
#pragma GCC unroll 4
            for (int t = 0; t < KP / VW; t++) {
                const vf bv = loadv(b + t * VW);
                s[t] += x * bv;
                u[t] += y * bv;
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < KP / VW; t++) {
            storev(out0 + w0 + t * VW, s[t]);
            storev(out1 + w0 + t * VW, u[t]);
        }
    }
    for (; w0 < width; w0 += VW) {
        vf s = add ? loadv(out0 + w0) : (vf){0};
        vf u = add ? loadv(out1 + w0) : (vf){0};
        for (size_t i = 0; i < n; i++) {
            const vf bv = loadv(B + i * ldb + w0);
            s += a0[i * sa] * bv;
            u += a1[i * sa] * bv;
        }
        storev(out0 + w0, s);
        storev(out1 + w0, u);
    }
}

/* Four rows of a product at once (rows_times' contract for a0 .. a3 and
 * out0 .. out3, width a multiple of VW): with 16 sums in registers, where
 * the copy has 32 (avx512); elsewhere two calls of rows_times. */
static void rows_times4(const float *const a[4], size_t sa, size_t n,
                        const float *B, size_t ldb, size_t width, int add,
                        float *const out[4])
{
#if VW == 16
    size_t w0 = 0;
    for (; w0 + KP <= width; w0 += KP) {
        vf s[4][KP / VW];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
            for (int t = 0; t < KP / VW; t++)
                s[r][t] = add ? loadv(out[r] + w0 + t * VW) : (vf){0};
        for (size_t i = 0; i < n; i++) {
            const float *b = B + i * ldb + w0;
            vf bv[KP / VW];
#pragma GCC unroll 4
            for (int t = 0; t < KP / VW; t++)
                bv[t] = loadv(b + t * VW);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const float x = a[r][i * sa];
#pragma GCC unroll 4
                for (int t = 0; t < KP / VW; t++)
                    s[r][t] += x * bv[t];
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
            for (int t = 0; t < KP / VW; t++)
                storev(out[r] + w0 + t * VW, s[r][t]);
    }
    if (w0 < width) {
        rows_times(a[0], a[1], sa, n, B + w0, ldb, width - w0, add, out[0] + w0,
                   out[1] + w0);
        rows_times(a[2], a[3], sa, n, B + w0, ldb, width - w0, add, out[2] + w0,
                   out[3] + w0);
    }
#else
    rows_times(a[0], a[1], sa, n, B, ldb, width, add, out[0], out[1]);
    rows_times(a[2], a[3], sa, n, B, ldb, width, add, out[2], out[3]);
#endif
}

/* acc[c][j] += sum_i w[i][j] * x[i][c] (acc transposed, KT apart) over the
 * n rows of x (ldx apart, width wd) and the jv keys, leaving out the pairs
 * whose p[i][j] is 0: the path for an x holding NaN or infinity. */
static void sums_nonfinite(const float *p, const float *w, const float *x,
                           size_t ldx, int n, int jv, size_t wd, float *acc)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < jv; j++) {
            const float f = w[(size_t)i * KT + (size_t)j];
            if (p[(size_t)i * KT + (size_t)j] == 0.0f)
                continue;
            for (size_t c = 0; c < wd; c++)
                acc[c * KT + (size_t)j] += f * x[(size_t)i * ldx + c];
        }
}

/* out[:] += sum_i w[i * ws] * x[i][:] over the n rows of x (padded width
 * wd, a multiple of 16; rows ld apart), leaving out the rows whose
 * p[i * ws] is 0 (so that 0 * NaN adds nothing).  finite: every row of x
 * is finite, so that adding 0 * x[i] is the same (and faster, four
 * independent sums). */
static void weighted_rows(const float *p, const float *w, size_t ws,
                          const float *x, size_t ld, int n, size_t wd,
                          int finite, float *out)
{
    size_t c0 = 0;
    /* four registers of columns at once: one broadcast, four sums */
    for (; c0 + 4 * VW <= wd; c0 += 4 * VW) {
        const float *xc = x + c0;
        vf a0 = loadv(out + c0), a1 = loadv(out + c0 + VW),
           a2 = loadv(out + c0 + 2 * VW), a3 = loadv(out + c0 + 3 * VW);
        for (int i = 0; i < n; i++) {
            const float *xr = xc + (size_t)i * ld;
            const float f = w[(size_t)i * ws];
            if (!finite && p[(size_t)i * ws] == 0.0f)
                continue;
            a0 += f * loadv(xr);
            a1 += f * loadv(xr + VW);
            a2 += f * loadv(xr + 2 * VW);
            a3 += f * loadv(xr + 3 * VW);
        }
        storev(out + c0, a0);
        storev(out + c0 + VW, a1);
        storev(out + c0 + 2 * VW, a2);
        storev(out + c0 + 3 * VW, a3);
    }
    for (; c0 < wd; c0 += VW) {
        const float *xc = x + c0;
        vf acc = loadv(out + c0);
        for (int i = 0; i < n; i++) {
            if (!finite && p[(size_t)i * ws] == 0.0f)
                continue;
            acc += w[(size_t)i * ws] * loadv(xc + (size_t)i * ld);
        }
        storev(out + c0, acc);
    }
}

/* 1 when the n floats at x are all finite. */
static int all_finite(const float *x, size_t n)
{
    vf acc = {0};
    float tail = 0.0f;
    size_t c = 0;
    for (; c + VW <= n; c += VW)
        acc += loadv(x + c) * 0.0f; /* NaN for an infinity or a NaN */
    for (; c < n; c++)
        tail += x[c] * 0.0f;
    for (int t = 0; t < VW; t++)
        tail += acc[t];
    return tail == 0.0f;
}

/* D_i = rowsum(dO_i * O_i) and the finite flags of each query row of
 * an item (batch, query head); the items past those convert the F16 keys
 * and values of a (batch, kv head). */
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
            attn_u16_to_float_n(d->dtype,
                                (const uint16_t *)jb->g->k + kv * nk * dh,
                                jb->k32 + kv * nk * dh, nk * dh);
            attn_u16_to_float_n(d->dtype,
                                (const uint16_t *)jb->g->v + kv * nk * dv,
                                jb->v32 + kv * nk * dv, nk * dv);
        }
        return;
    }
    /* this (batch, head)'s rows of every worker's dq sums start at 0 */
    for (int w = 0; w < jb->workers; w++)
        memset(jb->dq_part + (size_t)w * jb->dq_elems + item * sq * dh, 0,
               sq * dh * sizeof(float));
    if (jb->f16) {
        attn_u16_to_float_n(d->dtype,
                            (const uint16_t *)jb->g->q + item * sq * dh,
                            jb->q32 + item * sq * dh, sq * dh);
        attn_u16_to_float_n(d->dtype,
                            (const uint16_t *)jb->g->d_o + item * sq * dv,
                            jb->dout32 + item * sq * dv, sq * dv);
    }
    float *orow = jb->scratch + (size_t)worker * jb->scratch_floats;
    for (size_t i = 0; i < sq; i++) {
        size_t row = item * sq + i;
        const float *o, *g = jb->dout + row * dv;
        float acc = 0.0f;
        if (jb->f16) {
            attn_u16_to_float_n(d->dtype, (const uint16_t *)jb->g->o + row * dv,
                                orow, dv);
            o = orow;
        } else {
            o = (const float *)jb->g->o + row * dv;
        }
        for (size_t c = 0; c < dv; c++)
            acc += g[c] * o[c];
        jb->drow[row] = acc;
        jb->rowfin[row] = (uint8_t)(all_finite(jb->q + row * dh, dh) |
                                    all_finite(g, dv) << 1);
    }
}

/* 2^x by rounding to an integer n and a degree-6 polynomial for the rest
 * (about 1 ulp), with selects rather than branches so that the loops over
 * a tile vectorize.  Below 2^-126 the result is 0 (-inf gives 0); NaN
 * stays NaN. */
static inline float exp2_lane(float x)
{
    float xc = x >= -126.0f ? (x > 127.0f ? 127.0f : x) : -126.0f;
    float t = xc + 12582912.0f, n = t - 12582912.0f, f = xc - n, p, scale;
    uint32_t bits;

    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4b400000u + 127u) << 23; /* 2^n, n in -126 .. 127 */
    memcpy(&scale, &bits, sizeof scale);
    p = 1.5337580407503992e-04f;
    p = p * f + 1.339986571110785e-03f;
    p = p * f + 9.618519805371761e-03f;
    p = p * f + 5.550329014658928e-02f;
    p = p * f + 2.4022646248340607e-01f;
    p = p * f + 6.931471824645996e-01f;
    p = p * f + 1.0f;
    p *= scale;
    p = x >= -126.0f ? p : 0.0f;
    return x != x ? x : p;
}

/* *pr = P = exp(*pr * sc - lse) and *dr = dS = P (*dr - di), 0 where P
 * is 0 (a -inf score: 0, not 0 * NaN). */
static inline void prob_lane(float *pr, float *dr, float sc, float lse,
                             float di)
{
    const float p = exp2_lane((*pr * sc - lse) * 1.4426950408889634f);
    const float g = p * (*dr - di);
    *pr = p;
    *dr = p != 0.0f ? g : 0.0f;
}

/* prob_lane over the KT lanes of a row.  The avx512 copy rounds and
 * scales by 2^n with VRNDSCALEPS and VSCALEFPS (the forward's exp2): the
 * same n, the same polynomial and an exact scaling, so the same bits as
 * exp2_lane for x <= 127 (x is clamped there as in exp2_lane), in fewer
 * instructions. */
static inline void prob_row(float *pr, float *dr, float sc, float lse, float di)
{
#if defined(__AVX512F__)
    const __m512 vs = _mm512_set1_ps(sc), vl = _mm512_set1_ps(lse),
                 vd = _mm512_set1_ps(di), zero = _mm512_setzero_ps();
    for (int j = 0; j < KT; j += 16) {
        __m512 x =
            _mm512_mul_ps(_mm512_fmsub_ps(_mm512_loadu_ps(pr + j), vs, vl),
                          _mm512_set1_ps(1.4426950408889634f));
        __m512 p, g;
        /* VMINPS returns its second operand where one is NaN: x */
        p = attn_exp2_avx512(_mm512_min_ps(_mm512_set1_ps(127.0f), x));
        g = _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(dr + j), vd));
        _mm512_storeu_ps(pr + j, p);
        _mm512_storeu_ps(
            dr + j,
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(p, zero, _CMP_NEQ_UQ), g));
    }
#else
    for (int j = 0; j < KT; j++)
        prob_lane(pr + j, dr + j, sc, lse, di);
#endif
}

/* One query row against a key tile: pr holds its scores (q.k, or the
 * additive sum), dr its dO.v; they become P = exp(scale q.k + bias - lse)
 * and dS = P (dP - di), both 0 for the keys the row does not see: those
 * outside [first, last] (tile indices, from the causal mask and the
 * window), past jv, 0 in keep, or whose score is -INFINITY (P = 0).
 * bias and keep (NULL: none) are the row's, at the tile's first key;
 * dbias (NULL: not asked) is the row of dbias's sums there, which gets dS. */
static void probs(const struct attn_sdpa_bwd_job *jb, float *pr, float *dr,
                  const float *bias, const uint8_t *keep, float *dbias,
                  long long first, long long last, int jv, float lse, float di)
{
    const float sc = jb->scale;
    int a = first <= 0 ? 0 : first < jv ? (int)first : jv;
    int b = last + 1 < jv ? (int)(last + 1) : jv;

    if (b < a) /* a <= jv <= KT: nothing is written past the row */
        b = a;
    if (bias) {
        /* a -INFINITY bias hides its key whatever the score (NaN + -inf
         * would not) */
        for (int j = 0; j < jv; j++)
            pr[j] = bias[j] == -INFINITY ? -INFINITY : pr[j] * sc + bias[j];
    }
    if (lse != lse) {
        /* a NaN row (a NaN or +inf score, attn.h rule 4): P and dS NaN at
         * every visible key, 0 at a -INFINITY score (rule 3), which
         * -inf - NaN would not give */
        const float s1 = bias ? 1.0f : sc;
        for (int j = 0; j < KT; j++) {
            const int hidden = pr[j] * s1 == -INFINITY;
            pr[j] = hidden ? 0.0f : lse;
            dr[j] = hidden ? 0.0f : lse;
        }
    } else if (bias) {
        prob_row(pr, dr, 1.0f, lse, di);
    } else {
        /* the scale in the same pass (one FMA with lse's subtraction) */
        prob_row(pr, dr, sc, lse, di);
    }
    for (int j = 0; j < a; j++)
        pr[j] = dr[j] = 0.0f;
    for (int j = b; j < KT; j++)
        pr[j] = dr[j] = 0.0f;
    if (keep)
        for (int j = a; j < b; j++) {
            pr[j] = keep[j] ? pr[j] : 0.0f;
            dr[j] = keep[j] ? dr[j] : 0.0f;
        }
    if (dbias)
        for (int j = a; j < b; j++)
            dbias[j] += dr[j];
}

/* The additive scores of rows [0, rn) of the block against keys [0, jn)
 * of the tile into t->p (0 past jn): sum_c w[c] tanh(q[c] + k[c]). */
static void additive_scores(const struct tile *t, const float *w, size_t dh,
                            size_t dp, int rn, int jn)
{
    for (int r = 0; r < rn; r++) {
        const float *qr = t->qb + (size_t)r * dp;
        float *pr = t->p + (size_t)r * KT;
        for (int j = 0; j < jn; j++) {
            const float *kr = t->kc + (size_t)j * dp;
            float acc = 0.0f;
            for (size_t c = 0; c < dh; c++)
                acc += w[c] * tanhf(qr[c] + kr[c]);
            pr[j] = acc;
        }
        for (int j = jn; j < KT; j++)
            pr[j] = 0.0f;
    }
}

/* The additive score's dq (into t->dq rows), dk (into t->dkT) and, when
 * dw is not NULL, d additive_w (into dw) from the block's dS: through
 * t = tanh(q + k), dS w (1 - t^2) for q and k, dS t for w.  Pairs whose P
 * is 0 add nothing. */
static void additive_grads(const struct tile *t, const float *w, size_t dh,
                           size_t dp, int rn, int jn, float *dw)
{
    for (int r = 0; r < rn; r++) {
        const float *qr = t->qb + (size_t)r * dp;
        const float *pr = t->p + (size_t)r * KT, *dr = t->ds + (size_t)r * KT;
        float *dq = t->dq + (size_t)r * dp;
        memset(dq, 0, dp * sizeof(float));
        for (int j = 0; j < jn; j++) {
            const float *kr = t->kc + (size_t)j * dp;
            const float ds = dr[j];
            if (pr[j] == 0.0f)
                continue;
            for (size_t c = 0; c < dh; c++) {
                const float th = tanhf(qr[c] + kr[c]);
                const float u = ds * w[c] * (1.0f - th * th);
                dq[c] += u;
                t->dkT[c * KT + (size_t)j] += u;
                if (dw)
                    dw[c] += ds * th;
            }
        }
    }
}

/* The key tile kt of batch item b and kv head hk: its dk and dv rows, the
 * worker's partial dq of every query row that sees it, dS added into the
 * dbias sums dbt (NULL: not asked) and the tile's d additive_w sums into
 * dwp ([group][head_dim], NULL: not asked). */
static void kv_tile(const struct attn_sdpa_bwd_job *jb, int b, int hk, int kt,
                    int worker, float *dbt, float *dwp)
{
    const attn_sdpa_desc *d = jb->d;
    const size_t dh = (size_t)d->head_dim, dvw = (size_t)d->head_dim_v;
    const size_t dp = attn_sdpa_bwd_pad(d->head_dim),
                 vp = attn_sdpa_bwd_pad(d->head_dim_v);
    const long long j0 = (long long)kt * KT;
    const int jn = (int)(d->seq_kv - j0 < KT ? d->seq_kv - j0 : KT);
    const int kvlen = d->mask.kv_len ? d->mask.kv_len[b] : d->seq_kv;
    /* the diagonal of this batch item, and its first key (left padding):
     * a tile wholly before it has nothing to do */
    const long long diag = attn_causal_diag_b(d, b), kv0 = attn_kv_first(d, b);
    const int jv = kvlen <= j0 || kv0 >= j0 + jn
                       ? 0
                       : (int)(kvlen - j0 < jn ? kvlen - j0 : jn);
    const size_t kvh = (size_t)b * (size_t)d->heads_kv + (size_t)hk;
    const float *kh = jb->k + (kvh * (size_t)d->seq_kv + (size_t)j0) * dh;
    const float *vh = jb->v + (kvh * (size_t)d->seq_kv + (size_t)j0) * dvw;
    float *ws = jb->scratch + (size_t)worker * jb->scratch_floats;
    struct tile t;
    long long lo, hi;

    t.kT = ws;
    t.vT = t.kT + dp * KT;
    t.kc = t.vT + vp * KT;
    t.dkT = t.kc + KT * dp;
    t.dvT = t.dkT + KT * dp;
    t.qb = t.dvT + KT * vp;
    t.gb = t.qb + QB * dp;
    t.dq = t.gb + QB * vp;
    t.p = t.dq + QB * dp;
    t.ds = t.p + QB * KT;
    memset(t.dkT, 0, KT * (dp + vp) * sizeof(float));
    /* the padding stays 0: the rows are copied over it below */
    memset(t.kc, 0, KT * dp * sizeof(float));
    int kfin = all_finite(kh, (size_t)jv * dh);
    memset(t.qb, 0, QB * (dp + vp) * sizeof(float));
    for (int j = 0; j < jv; j++)
        memcpy(t.kc + (size_t)j * dp, kh + (size_t)j * dh, dh * sizeof(float));
    /* the transposes by rows of the result: contiguous stores */
    for (size_t c = 0; c < dh; c++)
        for (int j = 0; j < jv; j++)
            t.kT[c * KT + (size_t)j] = kh[(size_t)j * dh + c];
    for (size_t c = 0; c < dvw; c++)
        for (int j = 0; j < jv; j++)
            t.vT[c * KT + (size_t)j] = vh[(size_t)j * dvw + c];
    row_range(jb, diag, j0, jv, &lo, &hi);
    for (int hq = hk * jb->group; jv > 0 && hq < (hk + 1) * jb->group; hq++) {
        const size_t bh = (size_t)b * (size_t)d->heads_q + (size_t)hq;
        const float *bias = NULL,
                    *aw = jb->additive ? d->additive_w + (size_t)hq * dh : NULL;
        const uint8_t *keep = NULL;
        float *dbias = NULL,
              *dw = dwp ? dwp + (size_t)(hq - hk * jb->group) * dh : NULL;
        if (d->mask.bias)
            bias = d->mask.bias + (size_t)b * jb->bias_st[0] +
                   (size_t)hq * jb->bias_st[1] + (size_t)j0;
        if (dbt)
            dbias = dbt + (size_t)b * jb->bias_st[0] +
                    (size_t)hq * jb->bias_st[1] + (size_t)j0;
        if (d->keep)
            keep = d->keep + (size_t)b * jb->keep_st[0] +
                   (size_t)hq * jb->keep_st[1] + (size_t)j0;
        for (long long i0 = lo; i0 < hi; i0 += QB) {
            const int rn = (int)(hi - i0 < QB ? hi - i0 : QB);
            /* the keys the block's last row may see under the causal mask
             * (jlim, of the tile) and the products' width over them (wk) */
            const long long lim = i0 + rn + diag - j0;
            const int jlim = d->mask.causal && lim < jv ? (int)lim : jv;
            const size_t wk = ((size_t)jlim + KP - 1) / KP * KP;
            const size_t row0 = bh * (size_t)d->seq_q + (size_t)i0;
            /* a whole block of rows as wide as their padding is read in
             * place; another is copied, its last row repeated */
            const int direct = !aw && rn == QB && dh == dp && dvw == vp;
            const float *qb = direct ? jb->q + row0 * dh : t.qb;
            const float *gb = direct ? jb->dout + row0 * dvw : t.gb;
            int any = 0, qfin = 1, gfin = 1;
            for (int r = 0; !direct && r < QB; r++) {
                memcpy(t.qb + (size_t)r * dp,
                       jb->q + (row0 + (size_t)(r < rn ? r : rn - 1)) * dh,
                       dh * sizeof(float));
                memcpy(t.gb + (size_t)r * vp,
                       jb->dout + (row0 + (size_t)(r < rn ? r : rn - 1)) * dvw,
                       dvw * sizeof(float));
            }
            for (int r = 0; r < rn; r++) {
                qfin &= jb->rowfin[row0 + (size_t)r] & 1;
                gfin &= jb->rowfin[row0 + (size_t)r] >> 1;
            }
            if (aw)
                additive_scores(&t, aw, dh, dp, rn, jlim);
            for (int r = 0; r < rn; r += 4) {
                const float *const qa[4] = {
                    qb + (size_t)r * dp, qb + (size_t)(r + 1) * dp,
                    qb + (size_t)(r + 2) * dp, qb + (size_t)(r + 3) * dp};
                const float *const ga[4] = {
                    gb + (size_t)r * vp, gb + (size_t)(r + 1) * vp,
                    gb + (size_t)(r + 2) * vp, gb + (size_t)(r + 3) * vp};
                float *const po[4] = {
                    t.p + (size_t)r * KT, t.p + (size_t)(r + 1) * KT,
                    t.p + (size_t)(r + 2) * KT, t.p + (size_t)(r + 3) * KT};
                float *const so[4] = {
                    t.ds + (size_t)r * KT, t.ds + (size_t)(r + 1) * KT,
                    t.ds + (size_t)(r + 2) * KT, t.ds + (size_t)(r + 3) * KT};
                if (!aw)
                    rows_times4(qa, 1, dh, t.kT, KT, wk, 0, po);
                rows_times4(ga, 1, dvw, t.vT, KT, wk, 0, so);
            }
            for (int r = 0; r < rn; r++) {
                const size_t row = row0 + (size_t)r;
                const long long i = i0 + r;
                const float lse = jb->g->lse[row], di = jb->drow[row];
                const long long win0 = d->mask.window > 0
                                           ? i + diag - d->mask.window + 1
                                           : j0,
                                first = win0 > kv0 ? win0 : kv0,
                                last = d->mask.causal ? i + diag : j0 + jv;
                float *pr = t.p + (size_t)r * KT, *dr = t.ds + (size_t)r * KT;

                if (lse == -INFINITY) { /* no visible key: dq stays 0 */
                    memset(pr, 0, KT * sizeof(float));
                    memset(dr, 0, KT * sizeof(float));
                    continue;
                }
                probs(jb, pr, dr,
                      bias ? bias + (size_t)i * jb->bias_st[2] : NULL,
                      keep ? keep + (size_t)i * jb->keep_st[2] : NULL,
                      dbias ? dbias + (size_t)i * jb->bias_st[2] : NULL,
                      first - j0, last - j0, jv, lse, di);
                any = 1;
            }
            if (!any)
                continue;
            /* dv^T += dO^T P, dk^T += q^T dS: four columns at a time, the
             * columns of dO and q read down the rows (no transposed copy) */
            if (gfin)
                for (size_t c = 0; c < vp; c += 4) {
                    const float *const a4[4] = {gb + c, gb + c + 1, gb + c + 2,
                                                gb + c + 3};
                    float *const o4[4] = {t.dvT + c * KT, t.dvT + (c + 1) * KT,
                                          t.dvT + (c + 2) * KT,
                                          t.dvT + (c + 3) * KT};
                    rows_times4(a4, vp, (size_t)rn, t.p, KT, wk, 1, o4);
                }
            else
                sums_nonfinite(t.p, t.p, gb, vp, rn, jlim, dvw, t.dvT);
            if (aw) {
                additive_grads(&t, aw, dh, dp, rn, jlim, dw);
                for (int r = 0; r < rn; r++) {
                    float *dst = jb->dq_part + (size_t)worker * jb->dq_elems +
                                 (row0 + (size_t)r) * dh;
                    for (size_t c = 0; c < dh; c++)
                        dst[c] += t.dq[(size_t)r * dp + c];
                }
                continue;
            }
            if (qfin)
                for (size_t c = 0; c < dp; c += 4) {
                    const float *const a4[4] = {qb + c, qb + c + 1, qb + c + 2,
                                                qb + c + 3};
                    float *const o4[4] = {t.dkT + c * KT, t.dkT + (c + 1) * KT,
                                          t.dkT + (c + 2) * KT,
                                          t.dkT + (c + 3) * KT};
                    rows_times4(a4, dp, (size_t)rn, t.ds, KT, wk, 1, o4);
                }
            else
                sums_nonfinite(t.p, t.ds, qb, dp, rn, jlim, dh, t.dkT);
            /* dq += dS k, into the worker's partial sums */
            for (int r = 0; r < rn; r += 4) {
                float *dq0 = t.dq + (size_t)r * dp;
                float *dst0 = jb->dq_part + (size_t)worker * jb->dq_elems +
                              (row0 + (size_t)r) * dh;
                const float *const da[4] = {
                    t.ds + (size_t)r * KT, t.ds + (size_t)(r + 1) * KT,
                    t.ds + (size_t)(r + 2) * KT, t.ds + (size_t)(r + 3) * KT};
                if (kfin && direct) {
                    /* a whole block (rows as wide as their padding): the
                     * sums go on in the partial dq rows themselves */
                    float *const qo[4] = {dst0, dst0 + dh, dst0 + 2 * dh,
                                          dst0 + 3 * dh};
                    rows_times4(da, 1, (size_t)jlim, t.kc, dp, dp, 1, qo);
                    continue;
                }
                if (kfin) {
                    float *const qo[4] = {dq0, dq0 + dp, dq0 + 2 * dp,
                                          dq0 + 3 * dp};
                    rows_times4(da, 1, (size_t)jlim, t.kc, dp, dp, 0, qo);
                } else {
                    for (int e = 0; e < 4 && r + e < rn; e++) {
                        memset(dq0 + (size_t)e * dp, 0, dp * sizeof(float));
                        weighted_rows(t.p + (size_t)(r + e) * KT,
                                      t.ds + (size_t)(r + e) * KT, 1, t.kc, dp,
                                      jlim, dp, 0, dq0 + (size_t)e * dp);
                    }
                }
                for (int e = 0; e < 4 && r + e < rn; e++)
                    for (size_t c = 0; c < dh; c++)
                        dst0[(size_t)e * dh + c] += dq0[(size_t)e * dp + c];
            }
        }
    }
    for (int j = 0; j < jn; j++) {
        size_t r = kvh * (size_t)d->seq_kv + (size_t)j0 + (size_t)j;
        for (size_t c = 0; c < dh; c++)
            t.qb[c] = t.dkT[c * KT + (size_t)j] * jb->gscale;
        for (size_t c = 0; c < dvw; c++)
            t.gb[c] = t.dvT[c * KT + (size_t)j];
        put_row(jb, jb->g->dk, r * dh, t.qb, dh);
        put_row(jb, jb->g->dv, r * dvw, t.gb, dvw);
    }
}

/* Zeroes the entries of the dbias sums dbt that the key tile kt of
 * (b, hk) adds to: every query row's (one row when the bias has no query
 * dimension), for each query head of hk's group that has its own. */
static void zero_dbias(const struct attn_sdpa_bwd_job *jb, float *dbt, int b,
                       int hk, int kt)
{
    const attn_sdpa_desc *d = jb->d;
    const size_t j0 = (size_t)kt * KT;
    const size_t jn = (size_t)d->seq_kv - j0 < KT ? (size_t)d->seq_kv - j0 : KT;
    const int rows = jb->bias_st[2] ? d->seq_q : 1;
    const int heads = jb->bias_st[1] ? jb->group : 1;

    for (int e = 0; e < heads; e++) {
        const size_t hq = (size_t)hk * (size_t)jb->group + (size_t)e;
        for (int i = 0; i < rows; i++)
            memset(dbt + (size_t)b * jb->bias_st[0] + hq * jb->bias_st[1] +
                       (size_t)i * jb->bias_st[2] + j0,
                   0, jn * sizeof(float));
    }
}

void attn_sdpa_bwd_item(void *arg, size_t item, int worker)
{
    struct attn_sdpa_bwd_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    const size_t owners = (size_t)jb->owners_b * (size_t)jb->owners_h;
    const int kt = (int)(item % (size_t)jb->nkt);
    const size_t o = item / (size_t)jb->nkt % owners;
    const int s = (int)(item / (size_t)jb->nkt / owners);
    const int ob = (int)(o / (size_t)jb->owners_h),
              oh = (int)(o % (size_t)jb->owners_h);
    const long long members = (long long)jb->members_b * jb->members_h;
    const int m0 = (int)(s * members / jb->slices),
              m1 = (int)((s + 1) * members / jb->slices);
    const size_t dwn = (size_t)jb->group * (size_t)d->head_dim;
    float *dbt = NULL;

    for (int m = m0; m < m1; m++) {
        const int b = jb->bb ? m / jb->members_h : ob;
        const int hk = jb->bh ? m % jb->members_h : oh;
        float *dwp = NULL;
        if (jb->g->dbias && m == m0) {
            /* the slice's members share these entries: zeroed once */
            dbt = s == 0 ? jb->g->dbias
                         : jb->dbias_part + (size_t)(s - 1) * jb->bias_elems;
            zero_dbias(jb, dbt, b, hk, kt);
        }
        if (jb->dw_part)
            dwp =
                jb->dw_part + (((size_t)b * (size_t)d->heads_kv + (size_t)hk) *
                                   (size_t)jb->nkt +
                               (size_t)kt) *
                                  dwn;
        kv_tile(jb, b, hk, kt, worker, dbt, dwp);
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
        for (size_t c = 0; c < dh; c++)
            acc[c] *= jb->gscale;
        put_row(jb, jb->g->dq, r * dh, acc, dh);
    }
}
