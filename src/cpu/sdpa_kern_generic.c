/*
 * Portable micro-kernels of the tiled attention (contract in cpu_impl.h),
 * used when the build has no AVX-512.  The loops run over the query lanes
 * innermost with no dependence between lanes, so compilers vectorize them
 * for whatever SIMD the target has (SSE2, AVX2, NEON).
 */
#include "cpu/cpu_impl.h"

#ifndef __AVX512F__
#include <math.h>
#include <string.h>

#define QT ATTN_QTILE

/* 2^x by rounding to an integer n and a degree-6 polynomial for the rest
 * (about 1 ulp).  Below 2^-126 the result is 0 (so -inf gives 0 and no
 * denormals reach the accumulators); NaN stays NaN. */
static inline float exp2_lane(float x)
{
    /* selects instead of branches so that the softmax loop vectorizes; NaN
     * and -inf take the -126 side so the integer conversion stays defined */
    float xc = x >= -126.0f ? (x > 127.0f ? 127.0f : x) : -126.0f;
    float n = floorf(xc + 0.5f), f = xc - n, p, scale;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* 1 .. 254 */

    p = 1.5337580407503992e-04f;
    p = p * f + 1.339986571110785e-03f;
    p = p * f + 9.618519805371761e-03f;
    p = p * f + 5.550329014658928e-02f;
    p = p * f + 2.4022646248340607e-01f;
    p = p * f + 6.931471824645996e-01f;
    p = p * f + 1.0f;
    memcpy(&scale, &bits, sizeof scale);
    p *= scale;
    p = x >= -126.0f ? p : 0.0f;
    return x != x ? x : p;
}

/* Blocks of 4 key rows x 16 lanes: the 64 accumulators fit the vector
 * registers of SSE/AVX2/NEON targets once the constant loops unroll. */
static inline void qk_block4(int d, const float *qt, const float *k, size_t ldk,
                             float *s, float *smax)
{
    float acc[4][16];
    int c, r, i;

    for (r = 0; r < 4; r++)
        for (i = 0; i < 16; i++)
            acc[r][i] = 0.0f;
    for (c = 0; c < d; c++) {
        const float *qc = qt + (size_t)c * QT;
        for (r = 0; r < 4; r++) {
            float kv = k[(size_t)r * ldk + (size_t)c];
            for (i = 0; i < 16; i++)
                acc[r][i] += kv * qc[i];
        }
    }
    for (r = 0; r < 4; r++)
        for (i = 0; i < 16; i++) {
            s[(size_t)r * QT + (size_t)i] = acc[r][i];
            smax[i] = acc[r][i] > smax[i] ? acc[r][i] : smax[i];
        }
}

static inline void qk_block1(int d, const float *qt, const float *k, float *s,
                             float *smax)
{
    float acc[16];
    int c, i;

    for (i = 0; i < 16; i++)
        acc[i] = 0.0f;
    for (c = 0; c < d; c++)
        for (i = 0; i < 16; i++)
            acc[i] += k[c] * qt[(size_t)c * QT + (size_t)i];
    for (i = 0; i < 16; i++) {
        s[i] = acc[i];
        smax[i] = acc[i] > smax[i] ? acc[i] : smax[i];
    }
}

void attn_kern_qk(int nq, int jn, int d, const float *qt, const float *k,
                  size_t ldk, float *s, float *smax)
{
    int u, j, i;

    for (i = 0; i < nq * 16; i++)
        smax[i] = -INFINITY;
    for (u = 0; u < nq; u++) {
        for (j = 0; j + 4 <= jn; j += 4)
            qk_block4(d, qt + 16 * u, k + (size_t)j * ldk, ldk,
                      s + (size_t)j * QT + 16 * u, smax + 16 * u);
        for (; j < jn; j++)
            qk_block1(d, qt + 16 * u, k + (size_t)j * ldk,
                      s + (size_t)j * QT + 16 * u, smax + 16 * u);
    }
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

void attn_kern_softmax(int nq, int jn, float *s, const float *smax, float *m,
                       float *l, float *alpha)
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
        alpha[i] = exp2_lane(m[i] - mu[i]);
        m[i] = mn;
        sum[i] = 0.0f;
    }
    for (j = 0; j < jn; j++) {
        float *sr = s + (size_t)j * QT;
        for (i = 0; i < lanes; i++) {
            float p = exp2_lane(sr[i] - mu[i]);
            sr[i] = p;
            sum[i] += p;
        }
    }
    for (i = 0; i < lanes; i++)
        l[i] = l[i] * alpha[i] + sum[i];
}

/* Blocks of 4 value columns x 16 lanes, as qk_block4. */
static inline void pv_block4(int jn, const float *p, const float *v, size_t ldv,
                             const float *alpha, float *ot)
{
    float acc[4][16];
    int j, r, i;

    for (r = 0; r < 4; r++)
        for (i = 0; i < 16; i++)
            acc[r][i] = ot[(size_t)r * QT + (size_t)i] * alpha[i];
    for (j = 0; j < jn; j++) {
        const float *pj = p + (size_t)j * QT;
        for (r = 0; r < 4; r++) {
            float vv = v[(size_t)j * ldv + (size_t)r];
            for (i = 0; i < 16; i++)
                acc[r][i] += vv * pj[i];
        }
    }
    for (r = 0; r < 4; r++)
        for (i = 0; i < 16; i++)
            ot[(size_t)r * QT + (size_t)i] = acc[r][i];
}

static inline void pv_block1(int jn, const float *p, const float *v, size_t ldv,
                             const float *alpha, float *ot)
{
    float acc[16];
    int j, i;

    for (i = 0; i < 16; i++)
        acc[i] = ot[i] * alpha[i];
    for (j = 0; j < jn; j++)
        for (i = 0; i < 16; i++)
            acc[i] += v[(size_t)j * ldv] * p[(size_t)j * QT + (size_t)i];
    for (i = 0; i < 16; i++)
        ot[i] = acc[i];
}

void attn_kern_pv(int nq, int jn, int dv, const float *p, const float *v,
                  size_t ldv, const float *alpha, float *ot)
{
    int u, c;

    for (u = 0; u < nq; u++) {
        for (c = 0; c + 4 <= dv; c += 4)
            pv_block4(jn, p + 16 * u, v + c, ldv, alpha + 16 * u,
                      ot + (size_t)c * QT + 16 * u);
        for (; c < dv; c++)
            pv_block1(jn, p + 16 * u, v + c, ldv, alpha + 16 * u,
                      ot + (size_t)c * QT + 16 * u);
    }
}

#else
/* The AVX-512 kernels (sdpa_kern_avx512.c) serve this build. */
typedef int attn_sdpa_kern_generic_unused;
#endif /* __AVX512F__ */
