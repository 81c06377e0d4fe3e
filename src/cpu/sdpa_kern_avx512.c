/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AVX-512 micro-kernels of the tiled attention (contract in cpu_impl.h),
 * built only into the avx512 copy.
 *
 * Queries live in the lanes, so both products are outer-product updates with
 * no horizontal sums: a block of nr key rows (or value columns) times nq
 * 16-lane vectors of queries stays in nr * nq zmm accumulators, fed by one
 * broadcast per row and nq vector loads per step.  nr is chosen so that
 * there are at least 8 independent FMA chains (2 ports x 4 cycles latency)
 * and the loads stay below the FMA count.
 */
#include <math.h>

#include <immintrin.h>

#include "cpu/cpu_impl.h"
#include "cpu/exp2_avx512.h"

#ifndef __AVX512F__
#error "sdpa_kern_avx512.c is built only with the avx512 flags"
#endif

#define KERN_INLINE static inline __attribute__((always_inline))
#define QT          ATTN_QTILE

/* P's exponential: the one the backward's avx512 copy takes too */
#define exp2_ps attn_exp2_avx512

/* tanh(x) = sign(x) (1 - 2 / (2^(2 log2(e) |x|) + 1)); the absolute error
 * near 0 (~1e-7) is what matters in a weighted sum of tanh terms. */
KERN_INLINE __m512 tanh_ps(__m512 x)
{
    const __m512i sign_bit = _mm512_set1_epi32((int)0x80000000u);
    __m512i xi = _mm512_castps_si512(x);
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(sign_bit, xi));
    /* the clamp keeps +inf out of exp2_ps; 2^200 already makes t == 1 */
    __m512 e = exp2_ps(
        _mm512_min_ps(_mm512_set1_ps(200.0f),
                      _mm512_mul_ps(ax, _mm512_set1_ps(2.885390081777927f))));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_sub_ps(
        one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t),
                                               _mm512_and_si512(sign_bit, xi)));
}

/* ---- scores ---------------------------------------------------------------
 */

KERN_INLINE void qk_block(const int nq, const int nr, int d, const float *qt,
                          const float *k, size_t ldk, float *s, __m512 *mx)
{
    __m512 acc[32]; /* nr * nq <= 32; unused ones vanish */
    int c, r, u;

    for (r = 0; r < nr * nq; r++)
        acc[r] = _mm512_setzero_ps();
    for (c = 0; c < d; c++) {
        __m512 qv[4];
        for (u = 0; u < nq; u++)
            qv[u] = _mm512_load_ps(qt + (size_t)c * QT + 16 * u);
        for (r = 0; r < nr; r++) {
            __m512 b = _mm512_set1_ps(k[(size_t)r * ldk + (size_t)c]);
            for (u = 0; u < nq; u++)
                acc[r * nq + u] = _mm512_fmadd_ps(b, qv[u], acc[r * nq + u]);
        }
    }
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++) {
            _mm512_store_ps(s + (size_t)r * QT + 16 * u, acc[r * nq + u]);
            mx[u] = _mm512_max_ps(acc[r * nq + u], mx[u]);
        }
}

/* Full blocks of nr rows, then one block of the rest (< nr <= 8 rows). */
KERN_INLINE void qk_rows(const int nq, const int nr, int jn, int d,
                         const float *qt, const float *k, size_t ldk, float *s,
                         float *smax)
{
    __m512 mx[4];
    int j = 0, u;

    for (u = 0; u < nq; u++)
        mx[u] = _mm512_set1_ps(-INFINITY);
    for (; j + nr <= jn; j += nr)
        qk_block(nq, nr, d, qt, k + (size_t)j * ldk, ldk, s + (size_t)j * QT,
                 mx);
    k += (size_t)j * ldk;
    s += (size_t)j * QT;
    switch (jn - j) {
    case 7:
        qk_block(nq, 7, d, qt, k, ldk, s, mx);
        break;
    case 6:
        qk_block(nq, 6, d, qt, k, ldk, s, mx);
        break;
    case 5:
        qk_block(nq, 5, d, qt, k, ldk, s, mx);
        break;
    case 4:
        qk_block(nq, 4, d, qt, k, ldk, s, mx);
        break;
    case 3:
        qk_block(nq, 3, d, qt, k, ldk, s, mx);
        break;
    case 2:
        qk_block(nq, 2, d, qt, k, ldk, s, mx);
        break;
    case 1:
        qk_block(nq, 1, d, qt, k, ldk, s, mx);
        break;
    default:
        break;
    }
    for (u = 0; u < nq; u++)
        _mm512_store_ps(smax + 16 * u, mx[u]);
}

void attn_kern_qk(int nq, int jn, int d, const float *qt, const float *k,
                  size_t ldk, float *s, float *smax)
{
    switch (nq) {
    case 1:
        qk_rows(1, 8, jn, d, qt, k, ldk, s, smax);
        break;
    case 2:
        qk_rows(2, 6, jn, d, qt, k, ldk, s, smax);
        break;
    case 3:
        qk_rows(3, 4, jn, d, qt, k, ldk, s, smax);
        break;
    default:
        qk_rows(4, 4, jn, d, qt, k, ldk, s, smax);
        break;
    }
}

void attn_kern_additive(int nq, int jn, int d, const float *qt, const float *k,
                        size_t ldk, const float *w, float *s)
{
    int j, c, u;

    for (j = 0; j < jn; j++) {
        const float *kr = k + (size_t)j * ldk;
        for (u = 0; u < nq; u++) {
            __m512 acc = _mm512_setzero_ps();
            for (c = 0; c < d; c++) {
                __m512 x =
                    _mm512_add_ps(_mm512_load_ps(qt + (size_t)c * QT + 16 * u),
                                  _mm512_set1_ps(kr[c]));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(w[c]), tanh_ps(x), acc);
            }
            _mm512_store_ps(s + (size_t)j * QT + 16 * u, acc);
        }
    }
}

/* ---- softmax --------------------------------------------------------------
 */

void attn_kern_softmax(int nq, int jn, float *s, const float *smax, float unit,
                       float *m, float *l, float *alpha)
{
    const __m512 un = _mm512_set1_ps(unit);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    int u, j;

    for (u = 0; u < nq; u++) {
        float *su = s + 16 * u;
        __m512 mx = ninf, mo, mn, mu, a, sum = _mm512_setzero_ps();
        __mmask16 dead;

        if (smax) {
            mx = _mm512_load_ps(smax + 16 * u);
        } else {
            /* four independent chains (a NaN score never enters one: the
             * second operand is what VMAXPS returns for a NaN) */
            __m512 m1 = ninf, m2 = ninf, m3 = ninf;
            for (j = 0; j + 4 <= jn; j += 4) {
                mx = _mm512_max_ps(_mm512_load_ps(su + (size_t)j * QT), mx);
                m1 = _mm512_max_ps(_mm512_load_ps(su + (size_t)(j + 1) * QT),
                                   m1);
                m2 = _mm512_max_ps(_mm512_load_ps(su + (size_t)(j + 2) * QT),
                                   m2);
                m3 = _mm512_max_ps(_mm512_load_ps(su + (size_t)(j + 3) * QT),
                                   m3);
            }
            for (; j < jn; j++)
                mx = _mm512_max_ps(_mm512_load_ps(su + (size_t)j * QT), mx);
            mx = _mm512_max_ps(_mm512_max_ps(m1, mx), _mm512_max_ps(m3, m2));
        }
        mo = _mm512_load_ps(m + 16 * u);
        mn = _mm512_max_ps(mo, mx);
        /* a lane with nothing visible yet subtracts 0, not -inf */
        dead = _mm512_cmp_ps_mask(mn, ninf, _CMP_EQ_OQ);
        mu = _mm512_mask_blend_ps(dead, mn, _mm512_setzero_ps());
        a = exp2_ps(_mm512_mul_ps(_mm512_sub_ps(mo, mu), un));
        for (j = 0; j < jn; j++) {
            __m512 p = exp2_ps(_mm512_mul_ps(
                _mm512_sub_ps(_mm512_load_ps(su + (size_t)j * QT), mu), un));
            _mm512_store_ps(su + (size_t)j * QT, p);
            sum = _mm512_add_ps(sum, p);
        }
        _mm512_store_ps(l + 16 * u,
                        _mm512_fmadd_ps(_mm512_load_ps(l + 16 * u), a, sum));
        _mm512_store_ps(m + 16 * u, mn);
        _mm512_store_ps(alpha + 16 * u, a);
    }
}

/* ---- P V ------------------------------------------------------------------
 */

KERN_INLINE void pv_block(const int nq, const int nr, int jn, const float *p,
                          const float *v, size_t ldv, const float *alpha,
                          float *ot)
{
    __m512 acc[32], al[4]; /* nr * nq <= 32 */
    int j, r, u;

    for (u = 0; u < nq; u++)
        al[u] = _mm512_load_ps(alpha + 16 * u);
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++)
            acc[r * nq + u] = _mm512_mul_ps(
                _mm512_load_ps(ot + (size_t)r * QT + 16 * u), al[u]);
    for (j = 0; j < jn; j++) {
        __m512 pv[4];
        for (u = 0; u < nq; u++)
            pv[u] = _mm512_load_ps(p + (size_t)j * QT + 16 * u);
        for (r = 0; r < nr; r++) {
            __m512 b = _mm512_set1_ps(v[(size_t)j * ldv + (size_t)r]);
            for (u = 0; u < nq; u++)
                acc[r * nq + u] = _mm512_fmadd_ps(b, pv[u], acc[r * nq + u]);
        }
    }
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++)
            _mm512_store_ps(ot + (size_t)r * QT + 16 * u, acc[r * nq + u]);
}

/* As qk_rows, over blocks of nr value columns. */
KERN_INLINE void pv_cols(const int nq, const int nr, int jn, int dv,
                         const float *p, const float *v, size_t ldv,
                         const float *alpha, float *ot)
{
    int c = 0;

    for (; c + nr <= dv; c += nr)
        pv_block(nq, nr, jn, p, v + c, ldv, alpha, ot + (size_t)c * QT);
    v += c;
    ot += (size_t)c * QT;
    switch (dv - c) {
    case 7:
        pv_block(nq, 7, jn, p, v, ldv, alpha, ot);
        break;
    case 6:
        pv_block(nq, 6, jn, p, v, ldv, alpha, ot);
        break;
    case 5:
        pv_block(nq, 5, jn, p, v, ldv, alpha, ot);
        break;
    case 4:
        pv_block(nq, 4, jn, p, v, ldv, alpha, ot);
        break;
    case 3:
        pv_block(nq, 3, jn, p, v, ldv, alpha, ot);
        break;
    case 2:
        pv_block(nq, 2, jn, p, v, ldv, alpha, ot);
        break;
    case 1:
        pv_block(nq, 1, jn, p, v, ldv, alpha, ot);
        break;
    default:
        break;
    }
}

void attn_kern_pv(int nq, int jn, int dv, const float *p, const float *v,
                  size_t ldv, const float *alpha, float *ot)
{
    switch (nq) {
    case 1:
        pv_cols(1, 8, jn, dv, p, v, ldv, alpha, ot);
        break;
    case 2:
        pv_cols(2, 6, jn, dv, p, v, ldv, alpha, ot);
        break;
    case 3:
        pv_cols(3, 4, jn, dv, p, v, ldv, alpha, ot);
        break;
    default:
        pv_cols(4, 4, jn, dv, p, v, ldv, alpha, ot);
        break;
    }
}
