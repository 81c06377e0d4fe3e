/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IEEE binary16 <-> binary32 conversion of the hot code, compiled once per
 * instruction set.  The scalar conversions are portable bit manipulation
 * (exact, round to nearest even, subnormals, inf and NaN); the bulk ones use
 * F16C in the copies that have it, which gives the same results.
 */
#include <string.h>

#include "cpu/cpu_impl.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (uint32_t)(h >> 10) & 0x1fu;
    uint32_t man = (uint32_t)h & 0x3ffu;

    if (exp == 0x1f) /* inf; NaN keeps its payload and is quieted (F16C) */
        return bits_float(sign | 0x7f800000u | (man << 13) |
                          (man ? 0x400000u : 0u));
    if (exp != 0)
        return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
    /* zero or subnormal: man * 2^-24 is exact in float */
    return bits_float(sign | float_bits((float)man * 0x1p-24f));
}

static uint16_t float_to_half(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);

    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: keep it a (quiet) NaN with the top payload */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    /* 65520 is halfway between 65504 (odd mantissa) and 2^16: ties go up */
    if (x >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) { /* normal half: rebias, round off 13 bits */
        uint32_t r = x - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (x <= 0x33000000u) /* <= 2^-25: the tie at 2^-25 goes to even 0 */
        return sign;
    {
        /* subnormal half: round m * 2^(e-126) to an integer, even ties; a
         * carry to 0x400 is the smallest normal, encoded correctly */
        uint32_t e = x >> 23;
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14 .. 24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);

        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
}

void attn_half_to_float_n(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++)
        dst[i] = half_to_float(src[i]);
}

void attn_float_to_half_n(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                    _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(void *)(dst + i), h);
    }
#endif
    for (; i < n; i++)
        dst[i] = float_to_half(src[i]);
}

/* ---- bfloat16 -------------------------------------------------------------
 */

static uint16_t float_to_bf16(float f)
{
    uint32_t x = float_bits(f);

    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: quieted, payload's top */
        return (uint16_t)((x >> 16) | 0x40u);
    if ((x & 0x7f800000u) == 0) /* zero or float subnormal: signed zero */
        return (uint16_t)((x >> 16) & 0x8000u);
    /* to nearest even; past the largest finite the carry makes inf */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#if defined(ATTN_ISA_BF16) && defined(ATTN_ISA_SUFFIX)
#include <stdatomic.h>

/* Whether this CPU has VCVTNEPS2BF16: asked once (0 unknown, 1 no, 2 yes). */
static int have_cvtneps2bf16(void)
{
    static atomic_int known;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (!k) {
        k = attn_cpu_bf16_available(ATTN_CPU_ISA_AVX512) ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}
#endif

void attn_bf16_to_float_n(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        __m256i h =
            _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
        __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
    }
#endif
#if defined(__AVX2__)
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
#endif
    for (; i < n; i++)
        dst[i] = bits_float((uint32_t)src[i] << 16);
}

/* Only the outputs are stored (a row of O per query row), so the
 * integer rounding stays scalar where the instruction is missing. */
void attn_float_to_bf16_n(const float *src, uint16_t *dst, size_t n)
{
#if defined(ATTN_ISA_BF16) && defined(ATTN_ISA_SUFFIX)
    if (have_cvtneps2bf16()) {
        attn_kern_float_to_bf16_n(src, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = float_to_bf16(src[i]);
}
