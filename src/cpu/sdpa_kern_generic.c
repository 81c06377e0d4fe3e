/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Portable micro-kernels of the tiled attention (contract in cpu_impl.h),
 * built into the generic copy.  The loops run over the query lanes
 * innermost with no dependence between lanes, so compilers vectorize them
 * for whatever SIMD the target has (SSE2, NEON; AVX2 with
 * -DATTN_NATIVE_ARCH=ON).
 */
#include <math.h>
#include <string.h>

#include "cpu/cpu_impl.h"

#define QT ATTN_QTILE

/* 2^x by rounding to an integer n and a degree-6 polynomial for the rest
 * (about 1 ulp).  Below 2^-126 the result is 0 (so -inf gives 0 and no
 * denormals reach the accumulators); NaN stays NaN. */
static inline float exp2_lane(float x)
{
    /* Selects, not branches, and rounding by adding 1.5 * 2^23 (whose low
     * mantissa bits then hold n) instead of floorf, so that the softmax
     * loops vectorize on any target.  NaN and -inf take the -126 side. */
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

#if defined(__GNUC__) || defined(__clang__)
/* 16 lanes as NV GNU C vectors of the target's native width, which the
 * compiler maps onto registers (plain loops over the lanes are vectorized
 * along the wrong dimension, and wider-than-native vectors spill). */
#ifdef __AVX__
#define VB 32
#else
#define VB 16
#endif
#define NV (64 / VB)
typedef float vecf __attribute__((vector_size(VB)));

/* Loads and stores through memcpy: no alignment assumed, no aliasing
 * trouble, and no vector passed by value (whose ABI depends on the ISA). */
#define LDV(v, p) memcpy(&(v), (p), sizeof(vecf))
#define STV(p, v) memcpy((p), &(v), sizeof(vecf))

/* The lanes' running max, from the tile rows just stored. */
static void max_rows(const float *s, int rows, float *smax)
{
    int r, i;

    for (r = 0; r < rows; r++)
        for (i = 0; i < 16; i++)
            smax[i] = s[(size_t)r * QT + (size_t)i] > smax[i]
                          ? s[(size_t)r * QT + (size_t)i]
                          : smax[i];
}

/* 4 key rows x 16 lanes per block (one row at a time for the rest). */
static void qk_lanes(int jn, int d, const float *qt, const float *k, size_t ldk,
                     float *s, float *smax)
{
    int j = 0, c, r, x, nr;

    for (; j < jn; j += nr) {
        const float *kj = k + (size_t)j * ldk;
        vecf acc[4][NV], q[NV];
        nr = jn - j >= 4 ? 4 : 1;
        for (r = 0; r < 4; r++)
            for (x = 0; x < NV; x++)
                acc[r][x] = (vecf){0};
        if (nr == 4) {
            for (c = 0; c < d; c++) {
                for (x = 0; x < NV; x++)
                    LDV(q[x], qt + (size_t)c * QT + (size_t)x * (VB / 4));
                for (r = 0; r < 4; r++)
                    for (x = 0; x < NV; x++)
                        acc[r][x] += kj[(size_t)r * ldk + (size_t)c] * q[x];
            }
        } else {
            for (c = 0; c < d; c++)
                for (x = 0; x < NV; x++) {
                    LDV(q[x], qt + (size_t)c * QT + (size_t)x * (VB / 4));
                    acc[0][x] += kj[c] * q[x];
                }
        }
        for (r = 0; r < nr; r++)
            for (x = 0; x < NV; x++)
                STV(s + (size_t)(j + r) * QT + (size_t)x * (VB / 4), acc[r][x]);
    }
    max_rows(s, jn, smax);
}

/* 4 value columns x 16 lanes per block (one column at a time for the
 * rest). */
static void pv_lanes(int jn, int dv, const float *p, const float *v, size_t ldv,
                     const float *alpha, float *ot)
{
    vecf al[NV], pj[NV], acc[4][NV];
    int c = 0, j, r, x, nr;

    for (x = 0; x < NV; x++)
        LDV(al[x], alpha + (size_t)x * (VB / 4));
    for (; c < dv; c += nr) {
        float *o = ot + (size_t)c * QT;
        nr = dv - c >= 4 ? 4 : 1;
        for (r = 0; r < 4; r++)
            for (x = 0; x < NV; x++) {
                acc[r][x] = (vecf){0};
                if (r < nr) {
                    LDV(acc[r][x], o + (size_t)r * QT + (size_t)x * (VB / 4));
                    acc[r][x] *= al[x];
                }
            }
        if (nr == 4) {
            for (j = 0; j < jn; j++) {
                const float *vj = v + (size_t)j * ldv + (size_t)c;
                for (x = 0; x < NV; x++)
                    LDV(pj[x], p + (size_t)j * QT + (size_t)x * (VB / 4));
                for (r = 0; r < 4; r++)
                    for (x = 0; x < NV; x++)
                        acc[r][x] += vj[r] * pj[x];
            }
        } else {
            for (j = 0; j < jn; j++)
                for (x = 0; x < NV; x++) {
                    LDV(pj[x], p + (size_t)j * QT + (size_t)x * (VB / 4));
                    acc[0][x] += v[(size_t)j * ldv + (size_t)c] * pj[x];
                }
        }
        for (r = 0; r < nr; r++)
            for (x = 0; x < NV; x++)
                STV(o + (size_t)r * QT + (size_t)x * (VB / 4), acc[r][x]);
    }
}

#else
/* ISO C: one lane at a time, 16 per block. */
static void qk_lanes(int jn, int d, const float *qt, const float *k, size_t ldk,
                     float *s, float *smax)
{
    int j, c, i;

    for (j = 0; j < jn; j++) {
        float acc[16] = {0};
        for (c = 0; c < d; c++)
            for (i = 0; i < 16; i++)
                acc[i] += k[(size_t)j * ldk + (size_t)c] *
                          qt[(size_t)c * QT + (size_t)i];
        for (i = 0; i < 16; i++) {
            s[(size_t)j * QT + (size_t)i] = acc[i];
            smax[i] = acc[i] > smax[i] ? acc[i] : smax[i];
        }
    }
}

static void pv_lanes(int jn, int dv, const float *p, const float *v, size_t ldv,
                     const float *alpha, float *ot)
{
    int j, c, i;

    for (c = 0; c < dv; c++) {
        float acc[16];
        for (i = 0; i < 16; i++)
            acc[i] = ot[(size_t)c * QT + (size_t)i] * alpha[i];
        for (j = 0; j < jn; j++)
            for (i = 0; i < 16; i++)
                acc[i] += v[(size_t)j * ldv + (size_t)c] *
                          p[(size_t)j * QT + (size_t)i];
        for (i = 0; i < 16; i++)
            ot[(size_t)c * QT + (size_t)i] = acc[i];
    }
}
#endif

void attn_kern_qk(int nq, int jn, int d, const float *qt, const float *k,
                  size_t ldk, float *s, float *smax)
{
    int u, i;

    for (i = 0; i < nq * 16; i++)
        smax[i] = -INFINITY;
    for (u = 0; u < nq; u++)
        qk_lanes(jn, d, qt + 16 * u, k, ldk, s + 16 * u, smax + 16 * u);
}

void attn_kern_additive(int nq, int jn, int d, const float *qt, const float *k,
                        size_t ldk, const float *w, float *s)
{
    int lanes = nq * 16, j, c, i;

    for (j = 0; j < jn; j++) {
        const float *kr = k + (size_t)j * ldk;
        float acc[QT];

        for (i = 0; i < lanes; i++)
            acc[i] = 0.0f;
        for (c = 0; c < d; c++) {
            const float *qr = qt + (size_t)c * QT;
            for (i = 0; i < lanes; i++)
                acc[i] += w[c] * tanhf(qr[i] + kr[c]);
        }
        for (i = 0; i < lanes; i++)
            s[(size_t)j * QT + (size_t)i] = acc[i];
    }
}

void attn_kern_softmax(int nq, int jn, float *s, const float *smax, float unit,
                       float *m, float *l, float *alpha)
{
    int lanes = nq * 16, j, i;
    float mu[QT], sum[QT];

    for (i = 0; i < lanes; i++) {
        float mn = m[i];
        if (smax)
            mn = smax[i] > mn ? smax[i] : mn;
        else
            for (j = 0; j < jn; j++) {
                float x = s[(size_t)j * QT + (size_t)i];
                mn = x > mn ? x : mn;
            }
        /* a lane with nothing visible yet subtracts 0, not -inf */
        mu[i] = mn == -INFINITY ? 0.0f : mn;
        alpha[i] = exp2_lane((m[i] - mu[i]) * unit);
        m[i] = mn;
        sum[i] = 0.0f;
    }
    for (j = 0; j < jn; j++) {
        float *sr = s + (size_t)j * QT;
        for (i = 0; i < lanes; i++) {
            float p = exp2_lane((sr[i] - mu[i]) * unit);
            sr[i] = p;
            sum[i] += p;
        }
    }
    for (i = 0; i < lanes; i++)
        l[i] = l[i] * alpha[i] + sum[i];
}

void attn_kern_pv(int nq, int jn, int dv, const float *p, const float *v,
                  size_t ldv, const float *alpha, float *ot)
{
    int u;

    for (u = 0; u < nq; u++)
        pv_lanes(jn, dv, p + 16 * u, v, ldv, alpha + 16 * u, ot + 16 * u);
}
