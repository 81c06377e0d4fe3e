/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BF16 micro-kernels of the tiled attention (contract in cpu_impl.h, "BF16
 * micro-kernels"), built only into the avx512 copy and only this file with
 * -mavx512bf16 (cmake/attnCpuIsa.cmake): the tile code calls them only
 * where CPUID reports AVX512_BF16.
 *
 * As in sdpa_kern_avx512.c the queries live in the lanes and both products
 * are outer-product updates, but each VDPBF16PS step takes two elements of
 * the reduction at once (a pair of head-dimension elements for the scores,
 * a pair of keys for P V): one 32-bit broadcast of a key (value) pair
 * against nq vectors of query (probability) pairs, two products into each
 * float lane.  The inputs are rounded to bfloat16 as they are packed
 * (VCVTNE2PS2BF16: to nearest even, NaN kept quiet).
 */
#include <math.h>
#include <stdint.h>

#include <immintrin.h>

#include "cpu/cpu_impl.h"

#if !defined(__AVX512BF16__) || !defined(__AVX512BW__)
#error "sdpa_kern_bf16.c is built only with the avx512 and bf16 flags"
#endif

#define KERN_INLINE static inline __attribute__((always_inline))
#define QT          ATTN_QTILE

/* Word indices that interleave two 16-element halves: (a0, b0, a1, b1..). */
KERN_INLINE __m512i zip_index(void)
{
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25,
                            9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2,
                            17, 1, 16, 0);
}

/* ---- packing --------------------------------------------------------------
 */

/* The first n lanes (none for n <= 0, all for n >= 16). */
KERN_INLINE __mmask16 mask_of(int n)
{
    return n >= 16  ? (__mmask16)0xffff
           : n <= 0 ? (__mmask16)0
                    : (__mmask16)((1u << n) - 1u);
}

/* Two rows of n floats (b may be NULL: zeros) as n pairs into out. */
KERN_INLINE void zip_rows(int n, const float *a, const float *b, uint32_t *out)
{
    const __m512i zip = zip_index();
    for (int c = 0; c < n; c += 16) {
        __mmask16 m = mask_of(n - c);
        __m512 va = _mm512_maskz_loadu_ps(m, a + c);
        __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + c) : _mm512_setzero_ps();
        __m512i pr =
            _mm512_permutexvar_epi16(zip, (__m512i)_mm512_cvtne2ps_pbh(vb, va));
        _mm512_mask_storeu_epi32(out + c, m, pr);
    }
}

void attn_kern_pack_q_bf16(int d, int lanes, const float *qt, uint32_t *qb)
{
    for (int c = 0; c < d; c += 2)
        zip_rows(lanes, qt + (size_t)c * QT,
                 c + 1 < d ? qt + (size_t)(c + 1) * QT : NULL,
                 qb + (size_t)(c / 2) * QT);
}

void attn_kern_pack_k_bf16(int jn, int d, const float *k, size_t ldk,
                           uint32_t *kb, size_t ldkb)
{
    for (int j = 0; j < jn; j++) {
        const float *kr = k + (size_t)j * ldk;
        uint32_t *out = kb + (size_t)j * ldkb;
        /* 32 floats become 32 bfloat16 in order: 16 pairs */
        for (int c = 0; c < d; c += 32) {
            int n = d - c < 32 ? d - c : 32;
            __m512 a = _mm512_maskz_loadu_ps(mask_of(n), kr + c);
            __m512 b = _mm512_maskz_loadu_ps(mask_of(n - 16), kr + c + 16);
            _mm512_mask_storeu_epi32(out + c / 2, mask_of((n + 1) / 2),
                                     (__m512i)_mm512_cvtne2ps_pbh(b, a));
        }
    }
}

void attn_kern_pack_v_bf16(int jn, int dv, const float *v, size_t ldv,
                           uint32_t *vb)
{
    for (int j = 0; j < jn; j += 2)
        zip_rows(dv, v + (size_t)j * ldv,
                 j + 1 < jn ? v + (size_t)(j + 1) * ldv : NULL,
                 vb + (size_t)(j / 2) * (size_t)dv);
}

/* ---- scores ---------------------------------------------------------------
 */

KERN_INLINE void qk_block(const int nq, const int nr, int d2,
                          const uint32_t *qb, const uint32_t *kb, size_t ldkb,
                          float *s, __m512 *mx)
{
    __m512 acc[32]; /* nr * nq <= 32; unused ones vanish */
    int c, r, u;

    for (r = 0; r < nr * nq; r++)
        acc[r] = _mm512_setzero_ps();
    for (c = 0; c < d2; c++) {
        __m512bh qv[4];
        for (u = 0; u < nq; u++)
            qv[u] = (__m512bh)_mm512_load_si512(
                (const void *)(qb + (size_t)c * QT + 16 * u));
        for (r = 0; r < nr; r++) {
            __m512bh b = (__m512bh)_mm512_set1_epi32(
                (int)kb[(size_t)r * ldkb + (size_t)c]);
            for (u = 0; u < nq; u++)
                acc[r * nq + u] = _mm512_dpbf16_ps(acc[r * nq + u], b, qv[u]);
        }
    }
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++) {
            _mm512_store_ps(s + (size_t)r * QT + 16 * u, acc[r * nq + u]);
            mx[u] = _mm512_max_ps(acc[r * nq + u], mx[u]);
        }
}

KERN_INLINE void qk_rows(const int nq, const int nr, int jn, int d2,
                         const uint32_t *qb, const uint32_t *kb, size_t ldkb,
                         float *s, float *smax)
{
    __m512 mx[4];
    int j = 0, u;

    for (u = 0; u < nq; u++)
        mx[u] = _mm512_set1_ps(-INFINITY);
    for (; j + nr <= jn; j += nr)
        qk_block(nq, nr, d2, qb, kb + (size_t)j * ldkb, ldkb,
                 s + (size_t)j * QT, mx);
    kb += (size_t)j * ldkb;
    s += (size_t)j * QT;
    switch (jn - j) {
    case 7:
        qk_block(nq, 7, d2, qb, kb, ldkb, s, mx);
        break;
    case 6:
        qk_block(nq, 6, d2, qb, kb, ldkb, s, mx);
        break;
    case 5:
        qk_block(nq, 5, d2, qb, kb, ldkb, s, mx);
        break;
    case 4:
        qk_block(nq, 4, d2, qb, kb, ldkb, s, mx);
        break;
    case 3:
        qk_block(nq, 3, d2, qb, kb, ldkb, s, mx);
        break;
    case 2:
        qk_block(nq, 2, d2, qb, kb, ldkb, s, mx);
        break;
    case 1:
        qk_block(nq, 1, d2, qb, kb, ldkb, s, mx);
        break;
    default:
        break;
    }
    for (u = 0; u < nq; u++)
        _mm512_store_ps(smax + 16 * u, mx[u]);
}

void attn_kern_qk_bf16(int nq, int jn, int d, const uint32_t *qb,
                       const uint32_t *kb, size_t ldkb, float *s, float *smax)
{
    int d2 = (d + 1) / 2;
    switch (nq) {
    case 1:
        qk_rows(1, 8, jn, d2, qb, kb, ldkb, s, smax);
        break;
    case 2:
        qk_rows(2, 6, jn, d2, qb, kb, ldkb, s, smax);
        break;
    case 3:
        qk_rows(3, 4, jn, d2, qb, kb, ldkb, s, smax);
        break;
    default:
        qk_rows(4, 4, jn, d2, qb, kb, ldkb, s, smax);
        break;
    }
}

/* ---- P V ------------------------------------------------------------------
 */

KERN_INLINE void pv_block(const int nq, const int nr, int j2n, int dv,
                          const uint32_t *pb, const uint32_t *vb,
                          const float *alpha, float *ot)
{
    __m512 acc[32], al[4]; /* nr * nq <= 32 */
    int j, r, u;

    for (u = 0; u < nq; u++)
        al[u] = _mm512_load_ps(alpha + 16 * u);
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++)
            acc[r * nq + u] = _mm512_mul_ps(
                _mm512_load_ps(ot + (size_t)r * QT + 16 * u), al[u]);
    for (j = 0; j < j2n; j++) {
        __m512bh pv[4];
        for (u = 0; u < nq; u++)
            pv[u] = (__m512bh)_mm512_load_si512(
                (const void *)(pb + (size_t)j * QT + 16 * u));
        for (r = 0; r < nr; r++) {
            __m512bh b = (__m512bh)_mm512_set1_epi32(
                (int)vb[(size_t)j * (size_t)dv + (size_t)r]);
            for (u = 0; u < nq; u++)
                acc[r * nq + u] = _mm512_dpbf16_ps(acc[r * nq + u], b, pv[u]);
        }
    }
    for (r = 0; r < nr; r++)
        for (u = 0; u < nq; u++)
            _mm512_store_ps(ot + (size_t)r * QT + 16 * u, acc[r * nq + u]);
}

KERN_INLINE void pv_cols(const int nq, const int nr, int j2n, int dv,
                         const uint32_t *pb, const uint32_t *vb,
                         const float *alpha, float *ot)
{
    int c = 0;

    for (; c + nr <= dv; c += nr)
        pv_block(nq, nr, j2n, dv, pb, vb + c, alpha, ot + (size_t)c * QT);
    vb += c;
    ot += (size_t)c * QT;
    switch (dv - c) {
    case 7:
        pv_block(nq, 7, j2n, dv, pb, vb, alpha, ot);
        break;
    case 6:
        pv_block(nq, 6, j2n, dv, pb, vb, alpha, ot);
        break;
    case 5:
        pv_block(nq, 5, j2n, dv, pb, vb, alpha, ot);
        break;
    case 4:
        pv_block(nq, 4, j2n, dv, pb, vb, alpha, ot);
        break;
    case 3:
        pv_block(nq, 3, j2n, dv, pb, vb, alpha, ot);
        break;
    case 2:
        pv_block(nq, 2, j2n, dv, pb, vb, alpha, ot);
        break;
    case 1:
        pv_block(nq, 1, j2n, dv, pb, vb, alpha, ot);
        break;
    default:
        break;
    }
}

void attn_kern_pv_bf16(int nq, int jn, int dv, const float *p, uint32_t *pb,
                       const uint32_t *vb, const float *alpha, float *ot)
{
    int j2n = (jn + 1) / 2;

    for (int j = 0; j < jn; j += 2)
        zip_rows(nq * 16, p + (size_t)j * QT,
                 j + 1 < jn ? p + (size_t)(j + 1) * QT : NULL,
                 pb + (size_t)(j / 2) * QT);
    switch (nq) {
    case 1:
        pv_cols(1, 8, j2n, dv, pb, vb, alpha, ot);
        break;
    case 2:
        pv_cols(2, 6, j2n, dv, pb, vb, alpha, ot);
        break;
    case 3:
        pv_cols(3, 4, j2n, dv, pb, vb, alpha, ot);
        break;
    default:
        pv_cols(4, 4, j2n, dv, pb, vb, alpha, ot);
        break;
    }
}

/* ---- storage --------------------------------------------------------------
 */

void attn_kern_float_to_bf16_n(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = mask_of(n - i >= 16 ? 16 : (int)(n - i));
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)h);
    }
}
