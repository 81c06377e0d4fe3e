/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AMX micro-kernels of the BF16 tiled attention (contract in cpu_impl.h,
 * "AMX micro-kernels"), built only into the avx512 copy and only this file
 * with -mavx512bf16 -mamx-tile -mamx-bf16 (cmake/attnCpuIsa.cmake): the
 * tile code calls them only where attn_cpu_amx_available holds (CPUID
 * reports AMX-TILE and AMX-BF16 and the OS granted the tile data).
 *
 * Both products keep the queries in the columns of the result, so that the
 * scores come out as the float code's s[key][query] and the accumulators
 * as its ot[dim][query]:
 *   S^T[j][i] = sum_c K[j][c] Q[i][c]: A = K's rows in bfloat16 (kb, as
 *     read), B = the query pairs qb[c2][i];
 *   O^T[c][i] += sum_j V^T[c][j] P[j][i]: A = V transposed into rows of
 *     key pairs (vt[c][j2], a 32-bit transpose of the key-pair rows), B =
 *     the probability pairs pb[j2][i].
 * Every tile is 16 rows of 64 bytes (16 floats or 16 bfloat16 pairs); each
 * product runs 2 x 2 result tiles against 2 A and 2 B tiles, the eight
 * tile registers.  Sizes are padded with zeros to whole tile pairs.
 */
#include <stdint.h>

#include <immintrin.h>

#include "cpu/cpu_impl.h"

/* GCC spells the AMX macros __AMX_TILE__ / __AMX_BF16__, clang __AMXTILE__ /
 * __AMXBF16__. */
#if !defined(__AVX512BF16__) ||                                                \
    !(defined(__AMX_TILE__) || defined(__AMXTILE__)) ||                        \
    !(defined(__AMX_BF16__) || defined(__AMXBF16__))
#error "sdpa_kern_amx.c is built only with the avx512, bf16 and amx flags"
#endif

#define KERN_INLINE static inline __attribute__((always_inline))
#define QT          ATTN_QTILE
#define VT          ATTN_AMX_VT

/* The tile configuration: palette 1, eight tiles of 16 rows x 64 bytes. */
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

/* A constant in memory: GCC's _tile_loadconfig tells the compiler it reads
 * only the first 8 bytes, so a configuration built on the stack could
 * lose its other stores. */
static const struct tile_config tile_cfg = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

void attn_kern_amx_begin(void)
{
    _tile_loadconfig(&tile_cfg);
}

void attn_kern_amx_end(void)
{
    _tile_release();
}

/* The first n lanes (none for n <= 0, all for n >= 16). */
KERN_INLINE __mmask16 mask_of(int n)
{
    return n >= 16  ? (__mmask16)0xffff
           : n <= 0 ? (__mmask16)0
                    : (__mmask16)((1u << n) - 1u);
}

/* Two rows of 16 floats (masked to m) as 16 bfloat16 pairs (a_i, b_i). */
KERN_INLINE __m512i zip16(__mmask16 m, const float *a, const float *b)
{
    const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11,
                                         26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                         5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 va = _mm512_maskz_loadu_ps(m, a);
    __m512 vb = b ? _mm512_maskz_loadu_ps(m, b) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(zip, (__m512i)_mm512_cvtne2ps_pbh(vb, va));
}

/* Pairs of rows (rows ld floats apart, n of them, the rest zero) for
 * lanes < lanes (the rest of lanes_p zero) into out[r2][.], rows ldo
 * pairs apart, up to rows_p pairs (those past the data zero). */
KERN_INLINE void zip_pairs(const float *src, size_t ld, int n, int lanes,
                           int lanes_p, int rows_p, uint32_t *out, size_t ldo)
{
    for (int r2 = 0; r2 < rows_p; r2++) {
        int r = 2 * r2;
        uint32_t *o = out + (size_t)r2 * ldo;
        for (int u = 0; u < lanes_p; u += 16) {
            __m512i pr = _mm512_setzero_si512();
            if (r < n)
                pr = zip16(mask_of(lanes - u), src + (size_t)r * ld + u,
                           r + 1 < n ? src + (size_t)(r + 1) * ld + u : NULL);
            _mm512_storeu_si512((void *)(o + u), pr);
        }
    }
}

void attn_kern_amx_pack_q(int d, int lanes, const float *qt, uint32_t *qb)
{
    zip_pairs(qt, QT, d, lanes, ATTN_AMX_LANES(lanes), ATTN_AMX_D2(d), qb, QT);
}

void attn_kern_amx_pack_k(int jn, int d, const float *k, size_t ldk,
                          uint32_t *kb)
{
    int d2p = ATTN_AMX_D2(d), jp = ATTN_AMX_KEYS(jn);

    for (int j = 0; j < jp; j++) {
        uint32_t *out = kb + (size_t)j * (size_t)d2p;
        for (int c = 0; c < 2 * d2p; c += 32) {
            __m512i pr = _mm512_setzero_si512();
            if (j < jn) {
                const float *kr = k + (size_t)j * ldk;
                int n = d - c;
                __m512 a = _mm512_maskz_loadu_ps(mask_of(n), kr + c);
                __m512 b = _mm512_maskz_loadu_ps(mask_of(n - 16), kr + c + 16);
                pr = (__m512i)_mm512_cvtne2ps_pbh(b, a);
            }
            _mm512_storeu_si512((void *)(out + c / 2), pr);
        }
    }
}

/* r[0..15] transposed as a 16 x 16 matrix of 32-bit elements. */
KERN_INLINE void transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
    int k, m;

    for (k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    /* u[4k + m], 128-bit lane L: column 4L + m of rows 4k .. 4k + 3 */
    for (k = 0; k < 4; k++) {
        u[4 * k] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    for (m = 0; m < 4; m++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x44);
        __m512i v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xee);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x44);
        __m512i v3 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xee);
        r[m] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + m] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + m] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + m] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

void attn_kern_amx_pack_v(int jn, int dv, const float *v, size_t ldv,
                          uint32_t *vt)
{
    int dvp = ATTN_AMX_DV(dv), j2p = ATTN_AMX_KEYS(jn) / 2;

    for (int c = 0; c < dvp; c += 16) {
        __mmask16 m = mask_of(dv - c);
        for (int j2 = 0; j2 < j2p; j2 += 16) {
            __m512i r[16];
            for (int k = 0; k < 16; k++) {
                int j = 2 * (j2 + k);
                r[k] = j < jn ? zip16(m, v + (size_t)j * ldv + c,
                                      j + 1 < jn ? v + (size_t)(j + 1) * ldv + c
                                                 : NULL)
                              : _mm512_setzero_si512();
            }
            transpose16(r);
            for (int k = 0; k < 16; k++)
                _mm512_storeu_si512((void *)(vt + (size_t)(c + k) * VT + j2),
                                    r[k]);
        }
    }
}

/* Tiles 0-3 = the 32 x 32 block A B: A's 32 rows of pairs at a (row
 * stride lda pairs: tile 0/1 rows 0-15, 2/3 rows 16-31), B's pair rows
 * at b (row stride QT: tile 0/2 lanes 0-15, 1/3 lanes 16-31), over k2
 * pairs (a multiple of 16). */
KERN_INLINE void block_2x2(const uint32_t *a, size_t lda, const uint32_t *b,
                           int k2)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int x = 0; x < k2; x += 16) {
        _tile_loadd(4, a + x, lda * 4);
        _tile_loadd(5, a + 16 * lda + x, lda * 4);
        _tile_loadd(6, b + (size_t)x * QT, QT * 4);
        _tile_loadd(7, b + (size_t)x * QT + 16, QT * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

void attn_kern_amx_qk(int nq, int jn, int d, const uint32_t *qb,
                      const uint32_t *kb, float *s)
{
    int d2p = ATTN_AMX_D2(d), jp = ATTN_AMX_KEYS(jn);
    int lanes_p = ATTN_AMX_LANES(nq * 16);

    for (int j = 0; j < jp; j += 32)
        for (int i = 0; i < lanes_p; i += 32) {
            const uint32_t *a = kb + (size_t)j * (size_t)d2p;
            float *out = s + (size_t)j * QT + i;
            block_2x2(a, (size_t)d2p, qb + i, d2p);
            _tile_stored(0, out, QT * 4);
            _tile_stored(1, out + 16, QT * 4);
            _tile_stored(2, out + 16 * QT, QT * 4);
            _tile_stored(3, out + 16 * QT + 16, QT * 4);
        }
}

/* ot[c][i] = alpha[i] * ot[c][i] + acc for a block of 32 dims x 32 lanes
 * whose products the four result tiles left in acc (tile t: dims 16 (t /
 * 2), lanes 16 (t % 2), rows of 16 floats). */
KERN_INLINE void fold_block(const float *acc, const float *alpha, float *ot)
{
    __m512 a0 = _mm512_load_ps(alpha), a1 = _mm512_load_ps(alpha + 16);

    for (int r = 0; r < 32; r++) {
        const float *x = acc + (r / 16) * 512 + (r % 16) * 16;
        float *o = ot + (size_t)r * QT;
        _mm512_store_ps(
            o, _mm512_fmadd_ps(_mm512_load_ps(o), a0, _mm512_load_ps(x)));
        _mm512_store_ps(o + 16, _mm512_fmadd_ps(_mm512_load_ps(o + 16), a1,
                                                _mm512_load_ps(x + 256)));
    }
}

void attn_kern_amx_pv(int nq, int jn, int dv, const float *p, uint32_t *pb,
                      const uint32_t *vt, const float *alpha, float *ot)
{
    /* the products of one block, two blocks apart: a block is folded
     * while the tiles compute the next */
    _Alignas(64) float acc[2][4 * 256];
    int lanes = nq * 16, lanes_p = ATTN_AMX_LANES(lanes);
    int dvp = ATTN_AMX_DV(dv), j2p = ATTN_AMX_KEYS(jn) / 2;
    int n = 0, pc = 0, pi = 0;

    zip_pairs(p, QT, jn, lanes, lanes_p, j2p, pb, QT);
    for (int c = 0; c < dvp; c += 32)
        for (int i = 0; i < lanes_p; i += 32, n++) {
            const uint32_t *a = vt + (size_t)c * VT;
            float *x = acc[n & 1];
            block_2x2(a, VT, pb + i, j2p);
            if (n > 0)
                fold_block(acc[(n - 1) & 1], alpha + pi,
                           ot + (size_t)pc * QT + pi);
            _tile_stored(0, x, 64);
            _tile_stored(1, x + 256, 64);
            _tile_stored(2, x + 512, 64);
            _tile_stored(3, x + 768, 64);
            pc = c;
            pi = i;
        }
    fold_block(acc[(n - 1) & 1], alpha + pi, ot + (size_t)pc * QT + pi);
}
