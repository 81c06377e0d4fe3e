/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tile loop of the native attention, compiled once per instruction set
 * (cmake/attnCpuIsa.cmake): one work item is (jb->qgroup query tiles,
 * batch, head), the tiles sharing each K/V tile.
 * A query tile of up to ATTN_QTILE queries is packed transposed (qt[c][i],
 * scaled by scale * log2(e), or by the scale alone with a bias: see nat in
 * sdpa_job.h) so that the queries sit in SIMD lanes; key
 * tiles of SDPA_KTILE rows are then scored in place, masked, folded into
 * the running max and sum per lane and multiplied into the transposed
 * output accumulator ot[c][i].  Key tiles that every query of the tile has
 * hidden (causal, window, kv_len) are never visited, and the per-element
 * mask is applied only on tiles that some query only partly sees.
 *
 * With the BF16 kernels (jb->bf16, the avx512 copy on a CPU with
 * AVX512_BF16) the packed queries, each key tile and each value tile are
 * also rounded into bfloat16 pairs (cpu_impl.h) and the two products run
 * on those; the softmax, the masks and the non-finite handling are the
 * same float code.  With AMX as well (jb->amx) the products run on tiles
 * (sdpa_kern_amx.c): the keys and values are packed once per key tile for
 * the item's query tiles, and each item loads the tile configuration on
 * its thread and releases the tiles at its end.
 */
#include <limits.h>
#include <math.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "cpu/cpu_impl.h"
#include "cpu/sdpa_job.h"
#include "cpu/tf32.h"

#define QT ATTN_QTILE

#ifdef ATTN_ISA_AMX
_Static_assert(SDPA_KTILE <= 2 * ATTN_AMX_VT,
               "the AMX kernels take key tiles of up to 2 * ATTN_AMX_VT keys");
#endif
#define LOG2E 1.4426950408889634f
#define LN2   0.6931471805599453f

static const void *elem(const struct attn_sdpa_job *jb, const void *base,
                        size_t off)
{
    return jb->f16 ? (const void *)((const uint16_t *)base + off)
                   : (const void *)((const float *)base + off);
}

/* rows x cols floats of src (rows ld apart) rounded to TF32 into dst (the
 * same layout; dst may be src). */
static const float *tf32_rows(const float *src, size_t ld, int rows, int cols,
                              float *dst)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)r * ld + (size_t)c] =
                attn_tf32_round(src[(size_t)r * ld + (size_t)c]);
    return dst;
}

/* qt[c][i] = q[i][c] * qscale for the tile's rows; lanes past qn are 0. */
static void pack_q(const struct attn_sdpa_job *jb, const struct attn_sdpa_ws *w,
                   size_t qoff, int qn, int lanes)
{
    int d = jb->d->head_dim, i, c;

    for (i = 0; i < qn; i++) {
        const void *row = elem(jb, jb->q, qoff + (size_t)i * jb->lay.q[2]);
        const float *qr = row;
        if (jb->f16) {
            attn_u16_to_float_n(jb->d->dtype, row, w->kc, (size_t)d);
            qr = w->kc;
        }
        for (c = 0; c < d; c++)
            w->qt[(size_t)c * QT + (size_t)i] = qr[c] * jb->qscale;
    }
    for (c = 0; c < d; c++)
        for (i = qn; i < lanes; i++)
            w->qt[(size_t)c * QT + (size_t)i] = 0.0f;
    /* TF32 emulation: q as a matrix unit takes it (with the scale: the
     * bound of attn.h counts the rounding of q, whatever it is scaled by) */
    if (jb->tf32 && jb->d->score == ATTN_SCORE_DOT)
        tf32_rows(w->qt, QT, d, qn, w->qt);
#ifdef ATTN_ISA_AMX
    if (jb->amx) {
        attn_kern_amx_pack_q(d, lanes, w->qt, w->qb);
        return;
    }
#endif
#ifdef ATTN_ISA_BF16
    if (jb->bf16)
        attn_kern_pack_q_bf16(d, lanes, w->qt, w->qb);
#endif
}

/* jn rows of a K or V head as packed floats: in place when the rows are
 * F32 and contiguous, else converted or copied into buf.  Strided rows
 * (token-major [B, S, H*d] tensors) are copied because a power-of-two row
 * stride maps a whole tile onto a few L1 sets.  *ld receives the row
 * stride in floats. */
const float *attn_sdpa_rows_f32(const struct attn_sdpa_job *jb,
                                const void *base, size_t off, size_t row_stride,
                                int width, int jn, float *buf, size_t *ld)
{
    size_t w = (size_t)width;
    int r;

    *ld = w;
    if (!jb->f16 && (row_stride == w || jn == 1))
        return (const float *)base + off;
    for (r = 0; r < jn; r++) {
        size_t at = off + (size_t)r * row_stride;
        if (jb->f16)
            attn_u16_to_float_n(jb->d->dtype, (const uint16_t *)base + at,
                                buf + (size_t)r * w, w);
        else
            memcpy(buf + (size_t)r * w, (const float *)base + at,
                   w * sizeof(float));
    }
    return buf;
}

/* Hides, in a score tile of keys j0.., the lanes of queries i0.. that the
 * causal mask or the window hide: lane i sees key j iff lo <= i <= hi with
 * lo = j - off - i0 (causal) and hi = j - off + window - 1 - i0 (window). */
static void mask_tile(const attn_sdpa_desc *d, float *s, long long i0,
                      long long j0, int jn, int lanes, long long off)
{
    int r, i;

    for (r = 0; r < jn; r++) {
        long long j = j0 + r;
        long long lo = d->mask.causal ? j - off - i0 : (long long)-1;
        long long hi = d->mask.window > 0 ? j - off + d->mask.window - 1 - i0
                                          : (long long)lanes;
        float *sr = s + (size_t)r * QT;
        for (i = 0; i < lanes; i++)
            if (i < lo || i > hi)
                sr[i] = -INFINITY;
    }
}

/* Adds the bias for the tile's real queries (rows of the bias are ld floats
 * apart, 0 when it is broadcast over the queries; bp points at query i0,
 * key j0), in the natural units the
 * scores have when there is a bias.  A -inf entry hides the key whatever
 * its score (a NaN key must not turn it into NaN). */
static void add_bias(float *s, const float *bp, size_t ld, int qn, int jn)
{
    int i, r;

    for (i = 0; i < qn; i++)
        for (r = 0; r < jn; r++) {
            float b = bp[(size_t)i * ld + (size_t)r];
            float *e = &s[(size_t)r * QT + (size_t)i];
            *e = b == -INFINITY ? -INFINITY : *e + b;
        }
}

/* 1 when every value of the jn x dv tile is finite. */
int attn_sdpa_tile_finite(const float *v, size_t ldv, int jn, int dv)
{
    for (int j = 0; j < jn; j++)
        for (int c = 0; c < dv; c++)
            if (!isfinite(v[(size_t)j * ldv + (size_t)c]))
                return 0;
    return 1;
}

/* 1 when some probability of the tile is 0: a hidden key, a -inf score or
 * a weight that underflowed.  p >= 0 or NaN, so +0 has the smallest bit
 * pattern: an unsigned minimum per lane over the keys, tested across the
 * lanes once at the end (not per key, which would chain a horizontal
 * reduction through every row). */
int attn_sdpa_tile_has_zero(const float *p, int jn, int lanes)
{
#ifdef __AVX512F__
    __m512i mn = _mm512_set1_epi32(-1);
    for (int u = 0; u < lanes; u += 16)
        for (int j = 0; j < jn; j++)
            mn = _mm512_min_epu32(
                mn, _mm512_load_si512(
                        (const void *)(p + (size_t)j * QT + (size_t)u)));
    return _mm512_testn_epi32_mask(mn, mn) != 0;
#else
    int zero = 0;
    for (int u = 0; u < lanes; u += 16) {
        uint32_t mn[16];
        for (int i = 0; i < 16; i++)
            mn[i] = UINT32_MAX;
        for (int j = 0; j < jn; j++)
            for (int i = 0; i < 16; i++) {
                uint32_t b;
                memcpy(&b, p + (size_t)j * QT + (size_t)(u + i), sizeof b);
                mn[i] = b < mn[i] ? b : mn[i];
            }
        for (int i = 0; i < 16; i++)
            zero |= mn[i] == 0;
    }
    return zero;
#endif
}

const uint8_t *attn_sdpa_keep_base(const struct attn_sdpa_job *jb, int b, int h)
{
    const attn_sdpa_desc *d = jb->d;

    if (!d->keep)
        return NULL;
    return d->keep + (size_t)b * jb->keep_st[0] + (size_t)h * jb->keep_st[1];
}

const float *attn_sdpa_bias_base(const struct attn_sdpa_job *jb, int b, int h)
{
    const attn_sdpa_desc *d = jb->d;

    if (d->mask.bias_kind == ATTN_BIAS_NONE)
        return NULL;
    return d->mask.bias + (size_t)b * jb->bias_st[0] +
           (size_t)h * jb->bias_st[1];
}

/* Scores of keys j0 .. j0+jn-1 for the tile's lanes into s, with the bias
 * when bias is not NULL (bias points at query i0, key j0) and the causal /
 * window mask when masked.  The keys are kt's float rows, or kb's bfloat16
 * pairs (rows (head_dim + 1) / 2 pairs apart) with the BF16 kernels.
 * Returns the per-lane maximum when the dot kernel gave it and nothing
 * moved it, else NULL. */
static const float *score_tile(const struct attn_sdpa_job *jb,
                               const struct attn_sdpa_ws *w, const float *kt,
                               size_t ldk, const uint32_t *kb, float *s,
                               float *smax, int i0, int qn, long long j0,
                               int jn, int lanes, long long off, int masked,
                               const float *bias, const uint8_t *keep)
{
    const attn_sdpa_desc *d = jb->d;
    int nq = lanes / 16;

    (void)kb;
    if (d->score == ATTN_SCORE_ADDITIVE) {
        attn_kern_additive(nq, jn, d->head_dim, w->qt, kt, ldk, w->w, s);
        smax = NULL;
    }
#ifdef ATTN_ISA_AMX
    else if (jb->amx) {
        attn_kern_amx_qk(nq, jn, d->head_dim, w->qb, kb, s);
        smax = NULL;
    }
#endif
#ifdef ATTN_ISA_BF16
    else if (jb->bf16) {
        attn_kern_qk_bf16(nq, jn, d->head_dim, w->qb, kb,
                          (size_t)(d->head_dim + 1) / 2, s, smax);
    }
#endif
    else {
        attn_kern_qk(nq, jn, d->head_dim, w->qt, kt, ldk, s, smax);
    }
    /* the bias first: a hidden key stays -inf whatever its bias holds */
    if (bias) {
        add_bias(s, bias, jb->bias_st[2], qn, jn);
        smax = NULL;
    }
    /* then keep: a 0 hides the key whatever its bias holds */
    if (keep) {
        for (int i = 0; i < qn; i++)
            for (int r = 0; r < jn; r++)
                if (!keep[(size_t)i * jb->keep_st[2] + (size_t)r])
                    s[(size_t)r * QT + (size_t)i] = -INFINITY;
        smax = NULL;
    }
    if (masked) {
        mask_tile(d, s, i0, j0, jn, lanes, off);
        smax = NULL;
    }
    return smax;
}

/* attn_kern_pv for a tile whose V holds inf or NaN and whose P holds
 * zeros.  A key hidden from a row (mask, -inf bias, -inf score) must not
 * bring its V into the row (0 * inf is NaN), while a visible key whose
 * weight underflowed to 0 must (its NaN spoils the column, as it would
 * with any weight).  P cannot tell the two apart, so the scores of the
 * tile are computed again, one key at a time, to find the hidden ones
 * (with the same kernels, so that a score that overflowed there does here).
 * Rare (a KV cache with garbage behind a mask), so plain C, and in float
 * even with the BF16 kernels (more exact than asked, which is allowed). */
static void pv_nonfinite(const struct attn_sdpa_job *jb,
                         const struct attn_sdpa_ws *w, const float *kt,
                         size_t ldk, const float *v, size_t ldv, int i0, int qn,
                         long long j0, int jn, int lanes, long long off,
                         int masked, const float *bias, const uint8_t *keep)
{
    _Alignas(64) float s1[QT], mx1[QT];
    uint64_t hidden[SDPA_KTILE]; /* bit i: lane i hides the key */
    int dv = jb->d->head_dim_v;
    size_t ldkb = (size_t)(jb->d->head_dim + 1) / 2;

#ifdef ATTN_ISA_AMX
    if (jb->amx) {
        /* the AMX kernel takes whole tiles: the tile's scores again, as
         * the step computed them */
        _Alignas(64) float sa[ATTN_AMX_KEYS(SDPA_KTILE) * QT];
        score_tile(jb, w, kt, ldk, w->kb, sa, mx1, i0, qn, j0, jn, lanes, off,
                   masked, bias, keep);
        for (int j = 0; j < jn; j++) {
            hidden[j] = 0;
            for (int i = 0; i < lanes; i++)
                if (sa[(size_t)j * QT + (size_t)i] == -INFINITY)
                    hidden[j] |= (uint64_t)1 << i;
        }
    }
#endif
    for (int j = 0; j < jn && !jb->amx; j++) {
        score_tile(jb, w, kt + (size_t)j * ldk, ldk, w->kb + (size_t)j * ldkb,
                   s1, mx1, i0, qn, j0 + j, 1, lanes, off, masked,
                   bias ? bias + j : NULL, keep ? keep + j : NULL);
        hidden[j] = 0;
        for (int i = 0; i < lanes; i++)
            if (s1[i] == -INFINITY)
                hidden[j] |= (uint64_t)1 << i;
    }
    for (int c = 0; c < dv; c++) {
        float *o = w->ot + (size_t)c * QT;
        for (int i = 0; i < lanes; i++)
            o[i] *= w->alpha[i];
        for (int j = 0; j < jn; j++) {
            float vj = v[(size_t)j * ldv + (size_t)c];
            const float *pj = w->s + (size_t)j * QT;
            for (int i = 0; i < lanes; i++)
                if (!(hidden[j] >> i & 1))
                    o[i] += vj * pj[i];
        }
    }
}

/* Writes O = ot / l and lse for the tile's queries; a query whose sum is 0
 * (nothing visible) gets O = 0 and lse = -inf, one whose sum is NaN (a NaN
 * or +inf score) O = NaN and lse = NaN. */
static void finish_tile(const struct attn_sdpa_job *jb,
                        const struct attn_sdpa_ws *w, size_t ooff, float *lse,
                        int qn)
{
    int dv = jb->d->head_dim_v, i, c;

    for (i = 0; i < qn; i++) {
        float l = w->l[i];
        int any = l != 0.0f; /* also NaN */
        float inv = any ? 1.0f / l : 0.0f;
        float *row = w->vc; /* scratch: F32 row before F16 rounding */
        size_t at = ooff + (size_t)i * jb->lay.o[2];

        if (!jb->f16)
            row = (float *)jb->o + at;
        for (c = 0; c < dv; c++)
            row[c] = any ? w->ot[(size_t)c * QT + (size_t)i] * inv : 0.0f;
        if (jb->f16)
            attn_float_to_u16_n(jb->d->dtype, row, (uint16_t *)jb->o + at,
                                (size_t)dv);
        if (lse)
            lse[i] = !any      ? -INFINITY
                     : jb->nat ? w->m[i] + log2f(l) * LN2
                               : (w->m[i] + log2f(l)) * LN2;
    }
}

/* One query tile of an item: its rows, the keys it sees, its own slot of
 * the working memory (queries, accumulators, running max and sum). */
struct qtile {
    int i0, qn, nq, lanes;
    /* [jlo, jhi): keys some query of the tile sees; [full_lo, full_hi):
     * keys every query of the tile sees */
    long long jlo, jhi, full_lo, full_hi;
    long long off; /* the causal diagonal of the tile's batch item */
    struct attn_sdpa_ws w;
};

static void qtile_init(const struct attn_sdpa_job *jb, int b, int h, int qti,
                       int worker, int slot, struct qtile *t)
{
    const attn_sdpa_desc *d = jb->d;
    long long off = attn_causal_diag_b(d, b);
    int i;

    attn_sdpa_ws_of(jb->cpu, worker, slot, &t->w);
    t->off = off;
    t->i0 = qti * QT;
    t->qn = d->seq_q - t->i0 < QT ? d->seq_q - t->i0 : QT;
    t->nq = (t->qn + 15) / 16;
    t->lanes = t->nq * 16;
    t->jlo = 0;
    t->jhi = d->mask.kv_len ? d->mask.kv_len[b] : d->seq_kv;
    t->full_lo = 0;
    t->full_hi = t->jhi;
    if (d->mask.causal) {
        long long last = (long long)t->i0 + t->qn - 1 + off;
        if (last + 1 < t->jhi)
            t->jhi = last + 1;
        if (t->i0 + off + 1 < t->full_hi)
            t->full_hi = t->i0 + off + 1;
    }
    if (d->mask.window > 0) {
        long long first = (long long)t->i0 + off - d->mask.window + 1;
        if (first > t->jlo)
            t->jlo = first;
        t->full_lo = first + t->qn - 1;
    }
    if (attn_kv_first(d, b) > t->jlo) /* left padding hides the keys */
        t->jlo = attn_kv_first(d, b);
    pack_q(jb, &t->w,
           (size_t)b * jb->lay.q[0] + (size_t)h * jb->lay.q[1] +
               (size_t)t->i0 * jb->lay.q[2],
           t->qn, t->lanes);
    for (i = 0; i < t->lanes; i++) {
        t->w.m[i] = -INFINITY;
        t->w.l[i] = 0.0f;
    }
    /* the AMX kernels also run the padded rows (cpu_impl.h) */
    memset(t->w.ot, 0,
           (size_t)(jb->amx ? ATTN_AMX_DV(d->head_dim_v) : d->head_dim_v) * QT *
               sizeof(float));
}

/* The keys and values the AMX kernels hold packed (kb, vb of the shared
 * buffers): keys a .. a+jn-1, none while jn is 0.  The query tiles of an
 * item usually step through the same keys, which are then packed once. */
struct kv_packed {
    long long a;
    int jn;
};

/* Keys a .. a+jn-1 (kt, vt: their rows) packed for the BF16 kernels, in
 * the shared buffers of w; with AMX, only when pk does not already hold
 * them. */
static void pack_kv(const struct attn_sdpa_job *jb, struct attn_sdpa_ws *w,
                    struct kv_packed *pk, const float *kt, size_t ldk,
                    const float *vt, size_t ldv, long long a, int jn)
{
    int d = jb->d->head_dim;

    (void)pk;
    (void)vt;
    (void)ldv;
    (void)a;
#ifdef ATTN_ISA_AMX
    if (jb->amx) {
        if (pk->a != a || pk->jn != jn) {
            attn_kern_amx_pack_k(jn, d, kt, ldk, w->kb);
            attn_kern_amx_pack_v(jn, jb->d->head_dim_v, vt, ldv, w->vb);
            pk->a = a;
            pk->jn = jn;
        }
        return;
    }
#endif
#ifdef ATTN_ISA_BF16
    if (jb->bf16)
        attn_kern_pack_k_bf16(jn, d, kt, ldk, w->kb, (size_t)(d + 1) / 2);
#else
    (void)jb;
    (void)w;
    (void)kt;
    (void)ldk;
    (void)jn;
    (void)d;
#endif
}

/* Keys a .. a+jn-1 (kt, vt: their rows) for tile t. */
static void qtile_step(const struct attn_sdpa_job *jb, struct qtile *t,
                       struct kv_packed *pk, const float *bias,
                       const uint8_t *keep, const float *kt, size_t ldk,
                       const float *vt, size_t ldv, long long a, int jn)
{
    const attn_sdpa_desc *d = jb->d;
    struct attn_sdpa_ws *w = &t->w;
    long long off = t->off;
    const float *bt =
        bias ? bias + (size_t)t->i0 * jb->bias_st[2] + (size_t)a : NULL;
    const uint8_t *kp =
        keep ? keep + (size_t)t->i0 * jb->keep_st[2] + (size_t)a : NULL;
    int masked = a < t->full_lo || a + jn > t->full_hi;
    const float *smax;

    pack_kv(jb, w, pk, kt, ldk, vt, ldv, a, jn);
    /* the max from the score kernel holds until a mask or bias moves it */
    smax = score_tile(jb, w, kt, ldk, w->kb, w->s, w->smax, t->i0, t->qn, a, jn,
                      t->lanes, off, masked, bt, kp);

    attn_kern_softmax(t->nq, jn, w->s, smax, jb->unit, w->m, w->l, w->alpha);
    if (jb->tf32) /* p after the sum l took it, as a matrix unit does */
        tf32_rows(w->s, QT, jn, t->lanes, w->s);
    if (attn_sdpa_tile_has_zero(w->s, jn, t->lanes) &&
        !attn_sdpa_tile_finite(vt, ldv, jn, d->head_dim_v))
        pv_nonfinite(jb, w, kt, ldk, vt, ldv, t->i0, t->qn, a, jn, t->lanes,
                     off, masked, bt, kp);
#ifdef ATTN_ISA_AMX
    else if (jb->amx)
        attn_kern_amx_pv(t->nq, jn, d->head_dim_v, w->s, w->pb, w->vb, w->alpha,
                         w->ot);
#endif
#ifdef ATTN_ISA_BF16
    else if (jb->bf16) {
        attn_kern_pack_v_bf16(jn, d->head_dim_v, vt, ldv, w->vb);
        attn_kern_pv_bf16(t->nq, jn, d->head_dim_v, w->s, w->pb, w->vb,
                          w->alpha, w->ot);
    }
#endif
    else
        attn_kern_pv(t->nq, jn, d->head_dim_v, w->s, vt, ldv, w->alpha, w->ot);
}

void attn_sdpa_item(void *arg, size_t item, int worker)
{
    const struct attn_sdpa_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    struct qtile tiles[SDPA_QGROUP_MAX];
    /* one (batch, head) after the other, so that the workers share its K
     * and V while they are in cache; within it the last query tiles first:
     * under a causal mask they are the longest, so the short ones end the
     * job.  The item's jb->qgroup query tiles share each K/V tile, which
     * is read (and converted) once for all of them. */
    int ngrp = (jb->nqt + jb->qgroup - 1) / jb->qgroup;
    size_t bh = item / (size_t)ngrp;
    int top = jb->nqt - 1 - (int)(item % (size_t)ngrp) * jb->qgroup;
    int b = (int)(bh / (size_t)d->heads_q);
    int h = (int)(bh % (size_t)d->heads_q);
    int g = h / jb->group, nt = 0, t, i;
    long long jlo = LLONG_MAX, jhi = 0, j0;
    size_t koff = (size_t)b * jb->lay.k[0] + (size_t)g * jb->lay.k[1];
    size_t voff = (size_t)b * jb->lay.v[0] + (size_t)g * jb->lay.v[1];
    const float *bias = attn_sdpa_bias_base(jb, b, h);
    const uint8_t *keep = attn_sdpa_keep_base(jb, b, h);
    /* TF32 emulation (attn_cpu_sdpa): halves are TF32 values already */
    int round_kv = jb->tf32 && !jb->f16;
    struct kv_packed pk = {-1, 0};

#ifdef ATTN_ISA_AMX
    /* this thread's tile configuration, for this item (released below) */
    if (jb->amx)
        attn_kern_amx_begin();
#endif
    for (t = 0; t < jb->qgroup && top - t >= 0; t++, nt++) {
        qtile_init(jb, b, h, top - t, worker, t, &tiles[t]);
        if (tiles[t].jlo < tiles[t].jhi) {
            jlo = tiles[t].jlo < jlo ? tiles[t].jlo : jlo;
            jhi = tiles[t].jhi > jhi ? tiles[t].jhi : jhi;
        }
    }
    if (d->score == ATTN_SCORE_ADDITIVE)
        for (i = 0; i < d->head_dim; i++)
            tiles[0].w.w[i] =
                d->additive_w[(size_t)h * (size_t)d->head_dim + (size_t)i] *
                (jb->nat ? 1.0f : LOG2E);

    for (j0 = jlo; j0 < jhi; j0 += SDPA_KTILE) {
        int jn = (int)(jhi - j0 < SDPA_KTILE ? jhi - j0 : SDPA_KTILE);
        size_t ldk, ldv;
        struct attn_sdpa_ws *w = &tiles[0].w; /* the shared buffers */
        const float *kt =
            attn_sdpa_rows_f32(jb, jb->k, koff + (size_t)j0 * jb->lay.k[2],
                               jb->lay.k[2], d->head_dim, jn, w->kc, &ldk);
        const float *vt =
            attn_sdpa_rows_f32(jb, jb->v, voff + (size_t)j0 * jb->lay.v[2],
                               jb->lay.v[2], d->head_dim_v, jn, w->vc, &ldv);

        if (round_kv && d->score == ATTN_SCORE_DOT)
            kt = tf32_rows(kt, ldk, jn, d->head_dim, w->kc);
        if (round_kv)
            vt = tf32_rows(vt, ldv, jn, d->head_dim_v, w->vc);
        for (t = 0; t < nt; t++) {
            long long a = j0 > tiles[t].jlo ? j0 : tiles[t].jlo;
            long long e = j0 + jn < tiles[t].jhi ? j0 + jn : tiles[t].jhi;
            if (a < e)
                qtile_step(jb, &tiles[t], &pk, bias, keep,
                           kt + (size_t)(a - j0) * ldk, ldk,
                           vt + (size_t)(a - j0) * ldv, ldv, a, (int)(e - a));
        }
    }

    for (t = 0; t < nt; t++) {
        int i0 = tiles[t].i0;
        finish_tile(jb, &tiles[t].w,
                    (size_t)b * jb->lay.o[0] + (size_t)h * jb->lay.o[1] +
                        (size_t)i0 * jb->lay.o[2],
                    jb->lse ? jb->lse +
                                  ((size_t)b * (size_t)d->heads_q + (size_t)h) *
                                      (size_t)d->seq_q +
                                  (size_t)i0
                            : NULL,
                    tiles[t].qn);
    }
#ifdef ATTN_ISA_AMX
    if (jb->amx)
        attn_kern_amx_end();
#endif
}
