/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AVX2 + FMA micro-kernels of the tiled attention (contract in
 * cpu_impl.h), built only into the avx2 copy; sdpa_kern_avx512.c with
 * 8-lane vectors.
 *
 * A group of 16 query lanes is two ymm vectors.  With 16 ymm registers a
 * block of 6 key rows (or value columns) times one group keeps 12
 * accumulators, fed per step by 2 vector loads and 6 broadcasts: 12
 * independent FMA chains, enough for 2 ports x 4 cycles of latency, and
 * fewer loads than FMAs.  Groups are walked one after the other; the key
 * and value rows they share stay in L1.
 */
#include <math.h>

#include <immintrin.h>

#include "cpu/cpu_impl.h"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "sdpa_kern_avx2.c is built only with the avx2 flags"
#endif

#define KERN_INLINE static inline __attribute__((always_inline))
#define QT          ATTN_QTILE
#define NR          6 /* rows or columns per block */

/* 2^x with a degree-6 polynomial on [-0.5, 0.5] (about 1 ulp), for finite
 * x or -inf.  x is clamped to [-126, 127] so that 2^n is a normal float
 * built from its bits; below -126 the result is 0 (so -inf gives 0 and the
 * accumulators never see denormals).  NaN stays NaN: max_ps and min_ps
 * return their second operand when one is NaN, and the polynomial carries
 * it. */
KERN_INLINE __m256 exp2_ps(__m256 x)
{
    __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-126.0f), _CMP_NLT_UQ);
    __m256 xc = _mm256_min_ps(_mm256_set1_ps(127.0f),
                              _mm256_max_ps(_mm256_set1_ps(-126.0f), x));
    __m256 n =
        _mm256_round_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_sub_ps(xc, n), p;
    __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);

    p = _mm256_set1_ps(1.5337580407503992e-04f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339986571110785e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618519805371761e-03f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550329014658928e-02f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022646248340607e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471824645996e-01f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(p, keep);
}

/* tanh(x) = sign(x) (1 - 2 / (2^(2 log2(e) |x|) + 1)); the absolute error
 * near 0 (~1e-7) is what matters in a weighted sum of tanh terms. */
KERN_INLINE __m256 tanh_ps(__m256 x)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign_bit, x);
    /* 2^126 already makes t == 1; the clamp keeps exp2_ps finite */
    __m256 e = exp2_ps(
        _mm256_min_ps(_mm256_set1_ps(126.0f),
                      _mm256_mul_ps(ax, _mm256_set1_ps(2.885390081777927f))));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_sub_ps(
        one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
    return _mm256_or_ps(t, _mm256_and_ps(sign_bit, x));
}

/* ---- scores --------------------------------------------------------------
 * qt, s and mx are those of one 16-lane group. */

KERN_INLINE void qk_block(const int nr, int d, const float *qt, const float *k,
                          size_t ldk, float *s, __m256 mx[2])
{
    __m256 acc[2 * NR]; /* unused ones vanish */
    int c, r;

    for (r = 0; r < 2 * nr; r++)
        acc[r] = _mm256_setzero_ps();
    for (c = 0; c < d; c++) {
        __m256 q0 = _mm256_load_ps(qt + (size_t)c * QT);
        __m256 q1 = _mm256_load_ps(qt + (size_t)c * QT + 8);
        for (r = 0; r < nr; r++) {
            __m256 b = _mm256_broadcast_ss(k + (size_t)r * ldk + (size_t)c);
            acc[2 * r] = _mm256_fmadd_ps(b, q0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(b, q1, acc[2 * r + 1]);
        }
    }
    for (r = 0; r < nr; r++) {
        _mm256_store_ps(s + (size_t)r * QT, acc[2 * r]);
        _mm256_store_ps(s + (size_t)r * QT + 8, acc[2 * r + 1]);
        mx[0] = _mm256_max_ps(acc[2 * r], mx[0]);
        mx[1] = _mm256_max_ps(acc[2 * r + 1], mx[1]);
    }
}

/* Full blocks of NR rows, then one block of the rest. */
static void qk_group(int jn, int d, const float *qt, const float *k, size_t ldk,
                     float *s, float *smax)
{
    __m256 mx[2] = {_mm256_set1_ps(-INFINITY), _mm256_set1_ps(-INFINITY)};
    int j = 0;

    for (; j + NR <= jn; j += NR)
        qk_block(NR, d, qt, k + (size_t)j * ldk, ldk, s + (size_t)j * QT, mx);
    k += (size_t)j * ldk;
    s += (size_t)j * QT;
    switch (jn - j) {
    case 5:
        qk_block(5, d, qt, k, ldk, s, mx);
        break;
    case 4:
        qk_block(4, d, qt, k, ldk, s, mx);
        break;
    case 3:
        qk_block(3, d, qt, k, ldk, s, mx);
        break;
    case 2:
        qk_block(2, d, qt, k, ldk, s, mx);
        break;
    case 1:
        qk_block(1, d, qt, k, ldk, s, mx);
        break;
    default:
        break;
    }
    _mm256_store_ps(smax, mx[0]);
    _mm256_store_ps(smax + 8, mx[1]);
}

void attn_kern_qk(int nq, int jn, int d, const float *qt, const float *k,
                  size_t ldk, float *s, float *smax)
{
    for (int u = 0; u < nq; u++)
        qk_group(jn, d, qt + 16 * u, k, ldk, s + 16 * u, smax + 16 * u);
}

void attn_kern_additive(int nq, int jn, int d, const float *qt, const float *k,
                        size_t ldk, const float *w, float *s)
{
    int j, c, u;

    for (j = 0; j < jn; j++) {
        const float *kr = k + (size_t)j * ldk;
        for (u = 0; u < 2 * nq; u++) {
            __m256 acc = _mm256_setzero_ps();
            for (c = 0; c < d; c++) {
                __m256 x =
                    _mm256_add_ps(_mm256_load_ps(qt + (size_t)c * QT + 8 * u),
                                  _mm256_broadcast_ss(kr + c));
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(w + c), tanh_ps(x),
                                      acc);
            }
            _mm256_store_ps(s + (size_t)j * QT + 8 * u, acc);
        }
    }
}

/* ---- softmax -------------------------------------------------------------
 */

void attn_kern_softmax(int nq, int jn, float *s, const float *smax, float unit,
                       float *m, float *l, float *alpha)
{
    const __m256 un = _mm256_set1_ps(unit);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    int u, j;

    for (u = 0; u < 2 * nq; u++) {
        float *su = s + 8 * u;
        __m256 mx = ninf, mo, mn, mu, a, dead, sum = _mm256_setzero_ps();

        if (smax)
            mx = _mm256_load_ps(smax + 8 * u);
        else
            for (j = 0; j < jn; j++)
                mx = _mm256_max_ps(_mm256_load_ps(su + (size_t)j * QT), mx);
        mo = _mm256_load_ps(m + 8 * u);
        mn = _mm256_max_ps(mo, mx);
        /* a lane with nothing visible yet subtracts 0, not -inf */
        dead = _mm256_cmp_ps(mn, ninf, _CMP_EQ_OQ);
        mu = _mm256_andnot_ps(dead, mn);
        a = exp2_ps(_mm256_mul_ps(_mm256_sub_ps(mo, mu), un));
        for (j = 0; j < jn; j++) {
            __m256 p = exp2_ps(_mm256_mul_ps(
                _mm256_sub_ps(_mm256_load_ps(su + (size_t)j * QT), mu), un));
            _mm256_store_ps(su + (size_t)j * QT, p);
            sum = _mm256_add_ps(sum, p);
        }
        _mm256_store_ps(l + 8 * u,
                        _mm256_fmadd_ps(_mm256_load_ps(l + 8 * u), a, sum));
        _mm256_store_ps(m + 8 * u, mn);
        _mm256_store_ps(alpha + 8 * u, a);
    }
}

/* ---- P V -----------------------------------------------------------------
 * p, alpha and ot are those of one 16-lane group. */

KERN_INLINE void pv_block(const int nr, int jn, const float *p, const float *v,
                          size_t ldv, const float *alpha, float *ot)
{
    __m256 acc[2 * NR];
    __m256 al0 = _mm256_load_ps(alpha), al1 = _mm256_load_ps(alpha + 8);
    int j, r;

    for (r = 0; r < nr; r++) {
        acc[2 * r] = _mm256_mul_ps(_mm256_load_ps(ot + (size_t)r * QT), al0);
        acc[2 * r + 1] =
            _mm256_mul_ps(_mm256_load_ps(ot + (size_t)r * QT + 8), al1);
    }
    for (j = 0; j < jn; j++) {
        __m256 p0 = _mm256_load_ps(p + (size_t)j * QT);
        __m256 p1 = _mm256_load_ps(p + (size_t)j * QT + 8);
        for (r = 0; r < nr; r++) {
            __m256 b = _mm256_broadcast_ss(v + (size_t)j * ldv + (size_t)r);
            acc[2 * r] = _mm256_fmadd_ps(b, p0, acc[2 * r]);
            acc[2 * r + 1] = _mm256_fmadd_ps(b, p1, acc[2 * r + 1]);
        }
    }
    for (r = 0; r < nr; r++) {
        _mm256_store_ps(ot + (size_t)r * QT, acc[2 * r]);
        _mm256_store_ps(ot + (size_t)r * QT + 8, acc[2 * r + 1]);
    }
}

/* As qk_group, over blocks of NR value columns. */
static void pv_group(int jn, int dv, const float *p, const float *v, size_t ldv,
                     const float *alpha, float *ot)
{
    int c = 0;

    for (; c + NR <= dv; c += NR)
        pv_block(NR, jn, p, v + c, ldv, alpha, ot + (size_t)c * QT);
    v += c;
    ot += (size_t)c * QT;
    switch (dv - c) {
    case 5:
        pv_block(5, jn, p, v, ldv, alpha, ot);
        break;
    case 4:
        pv_block(4, jn, p, v, ldv, alpha, ot);
        break;
    case 3:
        pv_block(3, jn, p, v, ldv, alpha, ot);
        break;
    case 2:
        pv_block(2, jn, p, v, ldv, alpha, ot);
        break;
    case 1:
        pv_block(1, jn, p, v, ldv, alpha, ot);
        break;
    default:
        break;
    }
}

void attn_kern_pv(int nq, int jn, int dv, const float *p, const float *v,
                  size_t ldv, const float *alpha, float *ot)
{
    for (int u = 0; u < nq; u++)
        pv_group(jn, dv, p + 16 * u, v, ldv, alpha + 16 * u, ot + 16 * u);
}
