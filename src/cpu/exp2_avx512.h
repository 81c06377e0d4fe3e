/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 2^x on 16 float lanes, shared by the avx512 forward kernels
 * (sdpa_kern_avx512.c) and the backward's avx512 copy (sdpa_bwd_tile.c),
 * so that both take P's exponential with the same bits.  Include only in
 * code compiled for AVX-512F.  Not installed.
 */
#ifndef ATTN_CPU_EXP2_AVX512_H
#define ATTN_CPU_EXP2_AVX512_H

#include <immintrin.h>

/* 2^x with a degree-6 polynomial on [-0.5, 0.5] (about 1 ulp), for finite
 * x or -inf (the softmax only feeds x <= 0; a caller that may pass more
 * clamps first).  Results below 2^-126 are flushed to 0 so that -inf
 * gives 0 and the accumulators never see denormals (microcode assists);
 * NaN stays NaN. */
static inline __attribute__((always_inline)) __m512 attn_exp2_avx512(__m512 x)
{
    __mmask16 keep =
        _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
    __m512 n, f, p;

    n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm512_sub_ps(x, n);
    p = _mm512_set1_ps(1.5337580407503992e-04f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339986571110785e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618519805371761e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550329014658928e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022646248340607e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471824645996e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

#endif /* ATTN_CPU_EXP2_AVX512_H */
