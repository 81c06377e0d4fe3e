/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The decode form of the native attention, compiled once per instruction
 * set like sdpa_tile.c: for few query rows per K/V head (seq_q 1 of a
 * decoder step, times the heads of a GQA group), the tiled form would hold
 * one or a few queries in 16 SIMD lanes and convert every K/V tile once per
 * query head.  Here one work item is (batch, kv head, key split): the
 * group's rows (rows = heads_q / heads_kv * seq_q) are computed together,
 * row-major, each K/V tile read and converted once for all of them, the
 * products vectorised along the head dimension.  The online softmax is the
 * tiled form's (attn_kern_softmax over vectors of 16 lanes whose lanes are
 * the rows), so the numerics and the rules for masks, biases and
 * non-finite values are the same.  Long caches with few (batch, kv head)
 * pairs are cut into key splits, merged by attn_sdpa_dec_combine.
 */
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "cpu/cpu_impl.h"
#include "cpu/sdpa_job.h"

#define QT  ATTN_QTILE
#define LN2 0.6931471805599453f

/* One SIMD vector of 16 floats in the compiler's vector extension (GCC and
 * clang): a zmm in the avx512 copy, two ymm in the avx2 copy, four xmm in
 * the generic one.  This file is built with -ffp-contract=fast, so a * b + c
 * is one FMA where the instruction set has it. */
typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

static inline v16 load16(const float *p)
{
    v16 x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void store16(float *p, v16 x)
{
    memcpy(p, &x, sizeof x);
}

/* 16 halves as floats: one vcvtph2ps where F16C is there. */
static inline v16 load16h(const uint16_t *p)
{
#if defined(__AVX512F__)
    return (v16)_mm512_cvtph_ps(
        _mm256_loadu_si256((const __m256i *)(const void *)p));
#elif defined(__F16C__)
    __m256 a =
        _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    __m256 b = _mm256_cvtph_ps(
        _mm_loadu_si128((const __m128i *)(const void *)(p + 8)));
    v16 x;
    memcpy(&x, &a, sizeof a);
    memcpy((char *)&x + sizeof a, &b, sizeof b);
    return x;
#else
    float t[16];
    attn_half_to_float_n(p, t, 16);
    return load16(t);
#endif
}

/* 16 bfloat16 as floats: each shifted into a float's top half. */
static inline v16 load16b(const uint16_t *p)
{
#if defined(__AVX512F__)
    return (v16)_mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                              (const __m256i *)(const void *)p)),
                          16));
#elif defined(__AVX2__)
    __m256 a = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                              (const __m128i *)(const void *)p)),
                          16));
    __m256 b = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                              (const __m128i *)(const void *)(p + 8))),
                          16));
    v16 x;
    memcpy(&x, &a, sizeof a);
    memcpy((char *)&x + sizeof a, &b, sizeof b);
    return x;
#else
    float t[16];
    attn_bf16_to_float_n(p, t, 16);
    return load16(t);
#endif
}

#define DEC_INLINE static inline __attribute__((always_inline))

/* Element i of a K or V row, F32 (h 0), F16 (1) or BF16 (2), as 16 floats
 * or one. */
DEC_INLINE v16 row16(const int h, const void *row, size_t i)
{
    return h == 2 ? load16b((const uint16_t *)row + i)
           : h    ? load16h((const uint16_t *)row + i)
                  : load16((const float *)row + i);
}

DEC_INLINE float row1(const int h, const void *row, size_t i)
{
    float f;
    if (!h)
        return ((const float *)row)[i];
    if (h == 2)
        attn_bf16_to_float_n((const uint16_t *)row + i, &f, 1);
    else
        attn_half_to_float_n((const uint16_t *)row + i, &f, 1);
    return f;
}

DEC_INLINE const void *row_at(const int h, const void *base, size_t i)
{
    return h ? (const void *)((const uint16_t *)base + i)
             : (const void *)((const float *)base + i);
}

static inline float hsum(v16 x)
{
#if defined(__clang__) || __GNUC__ >= 12
    v8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3) +
           __builtin_shufflevector(a, a, 4, 5, 6, 7);
#else
    v8 a, b;
    v4 c, e;
    memcpy(&a, &x, sizeof a);
    memcpy(&b, (const char *)&x + sizeof a, sizeof b);
    a += b;
    memcpy(&c, &a, sizeof c);
    memcpy(&e, (const char *)&a + sizeof c, sizeof e);
    c += e;
#endif
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* The decode form reads every K/V byte once, from memory: two rows
 * DEC_AHEAD rows ahead (past the tile too, up to avail rows from its
 * start) are asked for while these are computed. */
#ifndef DEC_AHEAD
#define DEC_AHEAD 16
#endif
DEC_INLINE void prefetch_rows(const int h, const void *base, size_t at,
                              size_t ld, int width)
{
    const char *p = (const char *)row_at(h, base, at);
    size_t bytes = (size_t)width * (h ? 2 : 4), step = ld * (h ? 2 : 4);

    for (size_t x = 0; x < bytes; x += 64) {
        __builtin_prefetch(p + x, 0, 3);
        __builtin_prefetch(p + step + x, 0, 3);
    }
}

/* Scores of nr (a constant after inlining) rows at q for keys k0, k1. */
DEC_INLINE void qk_block(const int h, const int nr, int d, const float *q,
                         const void *k0, const void *k1, float *s0, float *s1)
{
    v16 a0[4] = {{0}}, a1[4] = {{0}};
    float t0[4] = {0}, t1[4] = {0};
    int c = 0, u;

    for (; c + 16 <= d; c += 16) {
        v16 x0 = row16(h, k0, (size_t)c), x1 = row16(h, k1, (size_t)c);
        for (u = 0; u < nr; u++) {
            v16 y = load16(q + (size_t)u * (size_t)d + (size_t)c);
            a0[u] += y * x0;
            a1[u] += y * x1;
        }
    }
    for (; c < d; c++)
        for (u = 0; u < nr; u++) {
            float y = q[(size_t)u * (size_t)d + (size_t)c];
            t0[u] += y * row1(h, k0, (size_t)c);
            t1[u] += y * row1(h, k1, (size_t)c);
        }
    for (u = 0; u < nr; u++) {
        s0[u] = hsum(a0[u]) + t0[u];
        s1[u] = hsum(a1[u]) + t1[u];
    }
}

/* s[j][r] = q[r] . k[j] for the tile's keys (rows ldk elements apart) and
 * the job's rows (q rows d apart, the scores in the lanes of the tiled
 * form's layout): two keys and up to four rows at a time, so that each K
 * load feeds up to eight FMAs.  An odd last key is scored twice. */
DEC_INLINE void qk_tile(const int h, int rows, int jn, long long avail, int d,
                        const float *q, const void *k, size_t ldk, float *s)
{
    float dump[4];

    for (int j = 0; j < jn; j += 2) {
        const void *k0 = row_at(h, k, (size_t)j * ldk);
        const void *k1 = j + 1 < jn ? row_at(h, k0, ldk) : k0;
        if (j + DEC_AHEAD + 1 < avail)
            prefetch_rows(h, k, (size_t)(j + DEC_AHEAD) * ldk, ldk, d);
        for (int r0 = 0; r0 < rows; r0 += 4) {
            const float *qr = q + (size_t)r0 * (size_t)d;
            float *s0 = s + (size_t)j * QT + (size_t)r0;
            float *s1 = j + 1 < jn ? s0 + QT : dump;
            switch (rows - r0 < 4 ? rows - r0 : 4) {
            case 1:
                qk_block(h, 1, d, qr, k0, k1, s0, s1);
                break;
            case 2:
                qk_block(h, 2, d, qr, k0, k1, s0, s1);
                break;
            case 3:
                qk_block(h, 3, d, qr, k0, k1, s0, s1);
                break;
            default:
                qk_block(h, 4, d, qr, k0, k1, s0, s1);
                break;
            }
        }
    }
}

static void dec_qk(int f16, int rows, int jn, long long avail, int d,
                   const float *q, const void *k, size_t ldk, float *s)
{
    if (f16 == 2)
        qk_tile(2, rows, jn, avail, d, q, k, ldk, s);
    else if (f16)
        qk_tile(1, rows, jn, avail, d, q, k, ldk, s);
    else
        qk_tile(0, rows, jn, avail, d, q, k, ldk, s);
}

/* o[r][c0 .. c0+63] = alpha[r] o[r] + sum_j p[j][r] v[j] for nr (a
 * constant after inlining) rows: 4 nr accumulators over the tile's keys
 * (V rows ldv elements apart, from column c0). */
DEC_INLINE void pv_block(const int h, const int nr, int jn, long long avail,
                         int dv, const float *p, const void *v, size_t ldv,
                         int c0, const float *alpha, float *o)
{
    v16 acc[4][4];
    int j, u, t;

    for (u = 0; u < nr; u++)
        for (t = 0; t < 4; t++)
            acc[u][t] = load16(o + (size_t)u * (size_t)dv + (size_t)c0 +
                               16 * (size_t)t) *
                        alpha[u];
    for (j = 0; j < jn; j++) {
        const void *vr = row_at(h, v, (size_t)j * ldv + (size_t)c0);
        if (c0 == 0 && (j & 1) == 0 && j + DEC_AHEAD + 1 < avail)
            prefetch_rows(h, v, (size_t)(j + DEC_AHEAD) * ldv, ldv, dv);
        v16 x[4];
        for (t = 0; t < 4; t++)
            x[t] = row16(h, vr, 16 * (size_t)t);
        for (u = 0; u < nr; u++) {
            float pj = p[(size_t)j * QT + (size_t)u];
            for (t = 0; t < 4; t++)
                acc[u][t] += pj * x[t];
        }
    }
    for (u = 0; u < nr; u++)
        for (t = 0; t < 4; t++)
            store16(o + (size_t)u * (size_t)dv + (size_t)c0 + 16 * (size_t)t,
                    acc[u][t]);
}

/* o[r] = alpha[r] o[r] + sum_j p[j][r] v[j] (o rows dv apart): blocks of
 * 64 columns times up to four rows stay in registers over the tile's keys,
 * each V load feeding up to four FMAs. */
DEC_INLINE void pv_tile(const int h, int rows, int jn, long long avail, int dv,
                        const float *p, const void *v, size_t ldv,
                        const float *alpha, float *o)
{
    int c0 = 0, j;

    for (; c0 + 64 <= dv; c0 += 64)
        for (int r0 = 0; r0 < rows; r0 += 4) {
            const float *pr = p + r0;
            const float *al = alpha + r0;
            float *orow = o + (size_t)r0 * (size_t)dv;
            switch (rows - r0 < 4 ? rows - r0 : 4) {
            case 1:
                pv_block(h, 1, jn, avail, dv, pr, v, ldv, c0, al, orow);
                break;
            case 2:
                pv_block(h, 2, jn, avail, dv, pr, v, ldv, c0, al, orow);
                break;
            case 3:
                pv_block(h, 3, jn, avail, dv, pr, v, ldv, c0, al, orow);
                break;
            default:
                pv_block(h, 4, jn, avail, dv, pr, v, ldv, c0, al, orow);
                break;
            }
        }
    /* the columns past the last block of 64 */
    for (int r = 0; r < rows && c0 < dv; r++) {
        float *orow = o + (size_t)r * (size_t)dv;
        for (int c = c0; c < dv; c++)
            orow[c] *= alpha[r];
        for (j = 0; j < jn; j++) {
            float pj = p[(size_t)j * QT + (size_t)r];
            const void *vr = row_at(h, v, (size_t)j * ldv);
            for (int c = c0; c < dv; c++)
                orow[c] += pj * row1(h, vr, (size_t)c);
        }
    }
}

static void dec_pv(int f16, int rows, int jn, long long avail, int dv,
                   const float *p, const void *v, size_t ldv,
                   const float *alpha, float *o)
{
    if (f16 == 2)
        pv_tile(2, rows, jn, avail, dv, p, v, ldv, alpha, o);
    else if (f16)
        pv_tile(1, rows, jn, avail, dv, p, v, ldv, alpha, o);
    else
        pv_tile(0, rows, jn, avail, dv, p, v, ldv, alpha, o);
}

/* dec_pv for a tile whose V holds inf or NaN and whose P holds zeros: a key
 * hidden from a row (bit j of hid[r]) brings nothing into it, while a
 * visible key whose weight underflowed still brings its NaN (sdpa_tile.c's
 * pv_nonfinite, with the hidden keys known from the scores). */
static void dec_pv_nonfinite(int rows, int jn, int dv, const float *p,
                             const float *v, size_t ldv, const float *alpha,
                             const uint64_t *hid, float *o)
{
    for (int r = 0; r < rows; r++) {
        float *orow = o + (size_t)r * (size_t)dv;
        for (int c = 0; c < dv; c++)
            orow[c] *= alpha[r];
        for (int j = 0; j < jn; j++) {
            float pj = p[(size_t)j * QT + (size_t)r];
            if (hid[r] >> j & 1)
                continue;
            for (int c = 0; c < dv; c++)
                orow[c] += pj * v[(size_t)j * ldv + (size_t)c];
        }
    }
}

/* The (head, query) of row r of kv head g: the group's heads outermost. */
static void row_of(const struct attn_sdpa_job *jb, int g, int r, int *h,
                   int *qi)
{
    *h = g * jb->group + r / jb->d->seq_q;
    *qi = r % jb->d->seq_q;
}

/* Writes row r's output o / l and its lse (lse NULL: none); a row with
 * nothing visible gets O = 0 and lse = -inf, one whose sum is NaN O = NaN
 * and lse = NaN (sdpa_tile.c's finish_tile, one row).  scratch holds dv
 * floats for an F16 output. */
static void finish_row(const struct attn_sdpa_job *jb, int b, int h, int qi,
                       const float *orow, float m, float l, float *scratch)
{
    const attn_sdpa_desc *d = jb->d;
    int dv = d->head_dim_v, any = l != 0.0f; /* also NaN */
    float inv = any ? 1.0f / l : 0.0f;
    size_t at = (size_t)b * jb->lay.o[0] + (size_t)h * jb->lay.o[1] +
                (size_t)qi * jb->lay.o[2];
    float *row = jb->f16 ? scratch : (float *)jb->o + at;

    for (int c = 0; c < dv; c++)
        row[c] = any ? orow[c] * inv : 0.0f;
    if (jb->f16)
        attn_float_to_u16_n(jb->d->dtype, row, (uint16_t *)jb->o + at,
                            (size_t)dv);
    if (jb->lse)
        jb->lse[((size_t)b * (size_t)d->heads_q + (size_t)h) *
                    (size_t)d->seq_q +
                (size_t)qi] = !any      ? -INFINITY
                              : jb->nat ? m + log2f(l) * LN2
                                        : (m + log2f(l)) * LN2;
}

/* The rows' queries, scaled, into q (rows d apart). */
static void pack_rows(const struct attn_sdpa_job *jb, int b, int g, float *q)
{
    const attn_sdpa_desc *d = jb->d;
    int hd = d->head_dim;

    for (int r = 0; r < jb->rows; r++) {
        int h, qi;
        row_of(jb, g, r, &h, &qi);
        size_t at = (size_t)b * jb->lay.q[0] + (size_t)h * jb->lay.q[1] +
                    (size_t)qi * jb->lay.q[2];
        float *qr = q + (size_t)r * (size_t)hd;
        if (jb->f16)
            attn_u16_to_float_n(jb->d->dtype, (const uint16_t *)jb->q + at, qr,
                                (size_t)hd);
        else
            memcpy(qr, (const float *)jb->q + at, (size_t)hd * sizeof(float));
        for (int c = 0; c < hd; c++)
            qr[c] *= jb->qscale;
    }
}

/* Row r's keys [lo[r], hi[r]) (causal, window, kv_len) within [s0, s1). */
static void row_ranges(const struct attn_sdpa_job *jb, int b, long long s0,
                       long long s1, long long *lo, long long *hi)
{
    const attn_sdpa_desc *d = jb->d;
    long long off = attn_causal_diag_b(d, b);
    long long kvn = d->mask.kv_len ? d->mask.kv_len[b] : d->seq_kv;
    long long kv0 = attn_kv_first(d, b);

    for (int r = 0; r < jb->rows; r++) {
        long long qi = r % d->seq_q, a = s0 > kv0 ? s0 : kv0,
                  e = s1 < kvn ? s1 : kvn;
        if (d->mask.causal && qi + off + 1 < e)
            e = qi + off + 1;
        if (d->mask.window > 0 && qi + off - d->mask.window + 1 > a)
            a = qi + off - d->mask.window + 1;
        lo[r] = a;
        hi[r] = e > a ? e : a;
    }
}

/* The lanes of the softmax: the rows (at most ATTN_QTILE) rounded up to a
 * vector of 16. */
static int dec_lanes(const struct attn_sdpa_job *jb)
{
    return (jb->rows + 15) / 16 * 16;
}

/* Masks and biases the tile's scores (keys j0 .. j0+jn-1), pads the lanes
 * past the rows with 0 and records in hid[r] the keys row r hides (a -inf
 * score: masked, a -inf bias or a -inf product). */
static void mask_rows(const struct attn_sdpa_job *jb, int b, int g,
                      const long long *lo, const long long *hi, long long j0,
                      int jn, float *s, uint64_t *hid)
{
    for (int r = 0; r < jb->rows; r++) {
        int h, qi;
        uint64_t bits = 0;
        row_of(jb, g, r, &h, &qi);
        const float *bias = attn_sdpa_bias_base(jb, b, h);
        const uint8_t *keep = attn_sdpa_keep_base(jb, b, h);
        if (bias)
            bias += (size_t)qi * jb->bias_st[2] + (size_t)j0;
        if (keep)
            keep += (size_t)qi * jb->keep_st[2] + (size_t)j0;
        if (bias || keep || j0 < lo[r] || j0 + jn > hi[r])
            for (int j = 0; j < jn; j++) {
                float *e = &s[(size_t)j * QT + (size_t)r];
                if (j0 + j < lo[r] || j0 + j >= hi[r] || (keep && !keep[j]) ||
                    (bias && bias[j] == -INFINITY))
                    *e = -INFINITY;
                else if (bias)
                    *e += bias[j];
            }
        for (int j = 0; j < jn; j++)
            bits |= (uint64_t)(s[(size_t)j * QT + (size_t)r] == -INFINITY) << j;
        hid[r] = bits;
    }
    for (int j = 0; j < jn; j++)
        for (int r = jb->rows; r < dec_lanes(jb); r++)
            s[(size_t)j * QT + (size_t)r] = 0.0f;
}

void attn_sdpa_dec_item(void *arg, size_t item, int worker)
{
    const struct attn_sdpa_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    struct attn_sdpa_ws w;
    int sp = (int)(item % (size_t)jb->nsplit);
    int g = (int)(item / (size_t)jb->nsplit % (size_t)d->heads_kv);
    int b = (int)(item / (size_t)jb->nsplit / (size_t)d->heads_kv);
    int rows = jb->rows, dv = d->head_dim_v, r;
    long long lo[QT], hi[QT], jlo = LLONG_MAX, jhi = 0, j0;
    long long s0 = sp * jb->split_len, s1 = s0 + jb->split_len;
    uint64_t hid[QT];
    int lanes = dec_lanes(jb);
    size_t koff = (size_t)b * jb->lay.k[0] + (size_t)g * jb->lay.k[1];
    size_t voff = (size_t)b * jb->lay.v[0] + (size_t)g * jb->lay.v[1];

    attn_sdpa_ws_of(jb->cpu, worker, 0, &w);
    row_ranges(jb, b, s0, s1 < d->seq_kv ? s1 : d->seq_kv, lo, hi);
    for (r = 0; r < rows; r++)
        if (lo[r] < hi[r]) {
            jlo = lo[r] < jlo ? lo[r] : jlo;
            jhi = hi[r] > jhi ? hi[r] : jhi;
        }
    pack_rows(jb, b, g, w.qt);
    for (r = 0; r < lanes; r++) {
        w.m[r] = -INFINITY;
        w.l[r] = 0.0f;
    }
    memset(w.ot, 0, (size_t)rows * (size_t)dv * sizeof(float));

    for (j0 = jlo; j0 < jhi; j0 += SDPA_KTILE) {
        int jn = (int)(jhi - j0 < SDPA_KTILE ? jhi - j0 : SDPA_KTILE);
        size_t ldv, vat = voff + (size_t)j0 * jb->lay.v[2];
        const void *vraw = row_at(jb->f16, jb->v, vat);
        const float *vt;

        dec_qk(jb->f16, rows, jn, jhi - j0, d->head_dim, w.qt,
               row_at(jb->f16, jb->k, koff + (size_t)j0 * jb->lay.k[2]),
               jb->lay.k[2], w.s);
        mask_rows(jb, b, g, lo, hi, j0, jn, w.s, hid);
        attn_kern_softmax(lanes / 16, jn, w.s, NULL, jb->unit, w.m, w.l,
                          w.alpha);
        /* V with inf or NaN behind a zero weight: the rare exact path */
        if (attn_sdpa_tile_has_zero(w.s, jn, lanes)) {
            vt = attn_sdpa_rows_f32(jb, jb->v, vat, jb->lay.v[2], dv, jn, w.vc,
                                    &ldv);
            if (!attn_sdpa_tile_finite(vt, ldv, jn, dv)) {
                dec_pv_nonfinite(rows, jn, dv, w.s, vt, ldv, w.alpha, hid,
                                 w.ot);
                continue;
            }
        }
        dec_pv(jb->f16, rows, jn, jhi - j0, dv, w.s, vraw, jb->lay.v[2],
               w.alpha, w.ot);
    }

    if (jb->nsplit == 1) {
        for (r = 0; r < rows; r++) {
            int h, qi;
            row_of(jb, g, r, &h, &qi);
            finish_row(jb, b, h, qi, w.ot + (size_t)r * (size_t)dv, w.m[r],
                       w.l[r], w.vc);
        }
        return;
    }
    for (r = 0; r < rows; r++) {
        float *part =
            jb->part + (item * (size_t)rows + (size_t)r) * ((size_t)dv + 2);
        part[0] = w.m[r];
        part[1] = w.l[r];
        memcpy(part + 2, w.ot + (size_t)r * (size_t)dv,
               (size_t)dv * sizeof(float));
    }
}

void attn_sdpa_dec_combine(void *arg, size_t item, int worker)
{
    const struct attn_sdpa_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    struct attn_sdpa_ws w;
    int b = (int)(item / (size_t)d->heads_kv);
    int g = (int)(item % (size_t)d->heads_kv);
    int rows = jb->rows, dv = d->head_dim_v, ns = jb->nsplit;
    size_t stride = (size_t)rows * ((size_t)dv + 2);
    const float *base = jb->part + item * (size_t)ns * stride;

    attn_sdpa_ws_of(jb->cpu, worker, 0, &w);
    for (int r = 0; r < rows; r++) {
        float m = -INFINITY, l = 0.0f, *o = w.ot;
        int nan = 0, h, qi;

        /* the largest max of the splits that saw something; a NaN sum (a
         * NaN or +inf score) makes the row NaN, as in one pass */
        for (int s = 0; s < ns; s++) {
            const float *p = base + (size_t)s * stride + (size_t)r * (dv + 2);
            if (isnan(p[1]))
                nan = 1;
            else if (p[1] != 0.0f && p[0] > m)
                m = p[0];
        }
        memset(o, 0, (size_t)dv * sizeof(float));
        for (int s = 0; s < ns && !nan; s++) {
            const float *p = base + (size_t)s * stride + (size_t)r * (dv + 2);
            if (p[1] == 0.0f)
                continue;
            float a = exp2f((p[0] - m) * jb->unit);
            l += p[1] * a;
            for (int c = 0; c < dv; c++)
                o[c] += p[2 + c] * a;
        }
        if (nan)
            l = NAN;
        row_of(jb, g, r, &h, &qi);
        finish_row(jb, b, h, qi, o, m, l, w.vc);
    }
}
