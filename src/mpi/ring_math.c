/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The arithmetic of the ring: the exact merge of two partial softmax
 * results through their log-sum-exp, and the IEEE half conversions that
 * let F16 slices travel as halves while every rank computes in float.
 */
#include <math.h>
#include <string.h>

#include "ring_impl.h"

float ring_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf, NaN (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t ring_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN (kept quiet, never turned to inf) */
        return (uint16_t)(sign | 0x7c00u |
                          (ax > 0x7f800000u ? 0x200u | (ax >> 13) : 0u));
    if (ax >= 0x477ff000u) /* rounds past the largest half, 65504 */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {   /* below 2^-14: a half subnormal or zero */
        if (ax < 0x33000000u) /* below half the smallest subnormal */
            return sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))
        q++; /* may carry into the exponent, as it should */
    return (uint16_t)(sign | q);
}

void ring_halves_to_floats(float *dst, const uint16_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ring_half_to_float(src[i]);
}

void ring_floats_to_halves(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ring_float_to_half(src[i]);
}

int ring_block_mask(const attn_sdpa_desc *g, long long q0, long long k0,
                    attn_sdpa_desc *bd)
{
    /* The block's diagonal: global row q0 + i sees key k0 + j iff
     * j <= i + diag (causal) and j >= i + diag - window + 1 (window). */
    const long long na = bd->seq_q, nb = bd->seq_kv, w = g->mask.window;
    long long diag = q0 - k0 + g->causal_offset;
    int causal = g->mask.causal, window = w > 0;
    if ((causal && diag < 1 - na) || (window && diag - w + 1 > nb - 1))
        return 0;                     /* every key hidden from every row */
    causal = causal && diag < nb - 1; /* else every key is at or
                                         before every row */
    window = window && na - 1 + diag - w + 1 > 0; /* else it hides none */
    bd->causal_align = ATTN_CAUSAL_TOP_LEFT;
    bd->mask.causal = causal;
    bd->mask.window = 0;
    bd->causal_offset = 0;
    if (!causal && !window)
        return 1;
    if (window) {
        /* Keys before the rows (diag past nb - 1, the causal mask then
         * hides none): the diagonal moves back to nb - 1 and the window
         * shrinks as much, which keeps its lower edge where it was. */
        long long shift = diag > nb - 1 ? diag - (nb - 1) : 0;
        diag -= shift;
        bd->mask.window = (int)(w - shift);
    }
    bd->causal_offset = diag;
    return 1;
}

int ring_steps_needed(const ring_layout *l, int P, const attn_sdpa_desc *g)
{
    /* Without both masks some rank needs every step: the causal mask
     * alone lets the last rows see every earlier key, a window alone every
     * later one. */
    if (!g->mask.causal || g->mask.window <= 0)
        return P;
    const long long w = g->mask.window, off = g->causal_offset;
    const long long seq = l->start[l->nchunks];
    int need = 1;
    for (int r = 0; r < P && need < P; r++)
        for (int i = 0; i < l->per_rank; i++) {
            const int ca = ring_chunk_of(l, r, i);
            const long long na = ring_chunk_rows(l, ca);
            /* The keys some row of chunk ca sees: the union of the rows'
             * windows [row + off - w + 1, row + off], one interval. */
            long long lo = l->start[ca] + off - w + 1;
            long long hi = l->start[ca] + na - 1 + off;
            lo = lo < 0 ? 0 : lo;
            hi = hi > seq - 1 ? seq - 1 : hi;
            if (!na || lo > hi)
                continue;
            /* the first chunk ending past lo (start[] never decreases) */
            int a = 0, b = l->nchunks - 1;
            while (a < b) {
                const int m = (a + b) / 2;
                if (l->start[m + 1] > lo)
                    b = m;
                else
                    a = m + 1;
            }
            for (int cb = a; cb < l->nchunks && l->start[cb] <= hi; cb++) {
                const int owner = cb < P ? cb : 2 * P - 1 - cb;
                const int t = (r - owner + P) % P;
                if (ring_chunk_rows(l, cb) > 0 && t + 1 > need)
                    need = t + 1;
            }
        }
    return need;
}

void ring_merge(float *o, float *lse, const float *o_b, const float *lse_b,
                size_t rows, size_t dv)
{
    for (size_t i = 0; i < rows; i++) {
        float lb = lse_b[i], la = lse[i];
        float *oi = o + i * dv;
        const float *bi = o_b + i * dv;
        if (lb == -INFINITY) /* nothing visible in the block */
            continue;
        if (la == -INFINITY) { /* nothing visible before it */
            memcpy(oi, bi, dv * sizeof *oi);
            lse[i] = lb;
            continue;
        }
        /* NaN in either lse gives NaN weights, so the row turns NaN. */
        float m = la > lb ? la : lb;
        float l = m + log1pf(expf(-fabsf(la - lb)));
        if (la != la || lb != lb)
            l = NAN;
        float wa = expf(la - l), wb = expf(lb - l);
        for (size_t c = 0; c < dv; c++)
            oi[c] = oi[c] * wa + bi[c] * wb;
        lse[i] = l;
    }
}
