/*
 * Native scaled dot-product attention: a tiled online softmax
 * (flash-attention style) that never holds more than one key tile of scores.
 *
 * One work item is (query tile, batch, head).  A query tile of up to
 * ATTN_QTILE queries is packed transposed (qt[c][i], scaled by
 * scale * log2(e)) so that the queries sit in SIMD lanes; key tiles of
 * SDPA_KTILE rows are then scored in place, masked, folded into the running
 * max and sum per lane and multiplied into the transposed output
 * accumulator ot[c][i].  Key tiles that every query of the tile has hidden
 * (causal, window, kv_len) are never visited, and the per-element mask is
 * applied only on tiles that some query only partly sees.
 *
 * Working memory is per worker, allocated once per attn_cpu and grown when
 * a larger head_dim needs it.  The attn_cpu lock is held for a whole call:
 * the pool runs one job at a time anyway, and the lock keeps a concurrent
 * call from growing the buffers under a running job.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "cpu/cpu_impl.h"
#include "core/memsize.h"

#define QT ATTN_QTILE
#ifndef SDPA_KTILE
#define SDPA_KTILE 64
#endif
#define SDPA_ALIGN 64
#define LOG2E      1.4426950408889634f
#define LN2        0.6931471805599453f

/* Buffers of one worker, each a multiple of 16 floats, all 64-byte aligned. */
struct sdpa_ws {
    float *qt; /* [cap_d][QT]     queries, transposed and scaled */
    float *s;  /* [KTILE][QT]     scores, then probabilities */
    float *ot; /* [cap_dv][QT]    output accumulators, transposed */
    float *kc; /* [KTILE][cap_d]  keys packed / converted; scratch row */
    float *vc; /* [KTILE][cap_dv] values packed / converted; scratch */
    float *m, *l, *alpha, *smax; /* [QT] running max, sum, rescale, tile max */
    float *w; /* [cap_d]         additive weights * log2(e) */
};

struct attn_cpu {
    attn_pool *pool;
    int workers;
    pthread_mutex_t lock; /* held for a whole attn_cpu_sdpa */
    float *mem;           /* workers * per_worker floats */
    size_t per_worker;
    int cap_d, cap_dv;
};

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

static size_t ws_floats(int d, int dv)
{
    size_t ud = (size_t)d, udv = (size_t)dv;

    return round16(ud * QT) + round16((size_t)SDPA_KTILE * QT) +
           round16(udv * QT) + round16((size_t)SDPA_KTILE * ud) +
           round16((size_t)SDPA_KTILE * udv) + 4 * round16(QT) + round16(ud);
}

static struct sdpa_ws ws_of(const attn_cpu *c, int worker)
{
    struct sdpa_ws w;
    float *p = c->mem + (size_t)worker * c->per_worker;
    size_t ud = (size_t)c->cap_d, udv = (size_t)c->cap_dv;

    w.qt = p;
    p += round16(ud * QT);
    w.s = p;
    p += round16((size_t)SDPA_KTILE * QT);
    w.ot = p;
    p += round16(udv * QT);
    w.kc = p;
    p += round16((size_t)SDPA_KTILE * ud);
    w.vc = p;
    p += round16((size_t)SDPA_KTILE * udv);
    w.m = p;
    w.l = p + QT;
    w.alpha = p + 2 * QT;
    w.smax = p + 3 * QT;
    p += 4 * round16(QT);
    w.w = p;
    return w;
}

size_t attn_cpu_ws_bytes(const attn_cpu *c, int d, int dv)
{
    size_t per = ws_floats(d, dv);
    if (per > SIZE_MAX / sizeof(float) / (size_t)c->workers)
        return 0;
    return per * sizeof(float) * (size_t)c->workers;
}

int attn_cpu_workers(const attn_cpu *c)
{
    return c->workers;
}

/* Makes the working memory fit head sizes d, dv; called with c->lock held.
 * The memory is touched here so that page faults stay out of the kernels. */
static attn_status ws_reserve(attn_cpu *c, int d, int dv)
{
    int nd = d > c->cap_d ? d : c->cap_d;
    int ndv = dv > c->cap_dv ? dv : c->cap_dv;
    size_t per, bytes;
    void *mem = NULL;

    if (c->mem && nd == c->cap_d && ndv == c->cap_dv)
        return ATTN_OK;
    bytes = attn_cpu_ws_bytes(c, nd, ndv);
    per = ws_floats(nd, ndv);
    /* More than the host has is refused before it is allocated (the memory
     * is touched below, so overcommit would not save it). */
    if (!bytes || (attn_host_memory_bytes() != 0 &&
                   (uint64_t)bytes > attn_host_memory_bytes()))
        return ATTN_ERR_OUT_OF_MEMORY;
    if (posix_memalign(&mem, SDPA_ALIGN, bytes) != 0)
        return ATTN_ERR_OUT_OF_MEMORY;
    memset(mem, 0, bytes);
    free(c->mem);
    c->mem = mem;
    c->per_worker = per;
    c->cap_d = nd;
    c->cap_dv = ndv;
    return ATTN_OK;
}

attn_status attn_cpu_create(int threads, attn_cpu **out)
{
    attn_cpu *c;
    attn_status st;

    if (!out)
        return ATTN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (threads < 1)
        return ATTN_ERR_INVALID_ARGUMENT;
    c = calloc(1, sizeof *c);
    if (!c)
        return ATTN_ERR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    st = attn_pool_create(threads, &c->pool);
    if (st != ATTN_OK)
        goto fail_pool;
    c->workers = attn_pool_threads(c->pool);
    /* head sizes up to 128 need no growth later */
    st = ws_reserve(c, 128, 128);
    if (st != ATTN_OK)
        goto fail_ws;
    *out = c;
    return ATTN_OK;

fail_ws:
    attn_pool_destroy(c->pool);
fail_pool:
    pthread_mutex_destroy(&c->lock);
    free(c);
    return st;
}

void attn_cpu_destroy(attn_cpu *c)
{
    if (!c)
        return;
    attn_pool_destroy(c->pool);
    pthread_mutex_destroy(&c->lock);
    free(c->mem);
    free(c);
}

attn_pool *attn_cpu_pool(attn_cpu *c)
{
    return c ? c->pool : NULL;
}

/* ---- one call ------------------------------------------------------------ */

struct sdpa_job {
    const attn_cpu *cpu;
    const attn_sdpa_desc *d;
    const void *q, *k, *v;
    void *o;
    float *lse;
    attn_cpu_layout lay;
    float qscale; /* applied to q while packing: log2 units */
    int f16;
    int group; /* heads_q / heads_kv */
    int nqt;   /* query tiles per head */
};

/* Address of element off of a tensor of the job's dtype. */
static const void *elem(const struct sdpa_job *jb, const void *base, size_t off)
{
    return jb->f16 ? (const void *)((const uint16_t *)base + off)
                   : (const void *)((const float *)base + off);
}

/* qt[c][i] = q[i][c] * qscale for the tile's rows; lanes past qn are 0. */
static void pack_q(const struct sdpa_job *jb, const struct sdpa_ws *w,
                   size_t qoff, int qn, int lanes)
{
    int d = jb->d->head_dim, i, c;

    for (i = 0; i < qn; i++) {
        const void *row = elem(jb, jb->q, qoff + (size_t)i * jb->lay.q[2]);
        const float *qr = row;
        if (jb->f16) {
            attn_half_to_float_n(row, w->kc, (size_t)d);
            qr = w->kc;
        }
        for (c = 0; c < d; c++)
            w->qt[(size_t)c * QT + (size_t)i] = qr[c] * jb->qscale;
    }
    for (c = 0; c < d; c++)
        for (i = qn; i < lanes; i++)
            w->qt[(size_t)c * QT + (size_t)i] = 0.0f;
}

/* jn rows of a K or V head as packed floats: in place when the rows are
 * F32 and contiguous, else converted or copied into buf.  Strided rows
 * (token-major [B, S, H*d] tensors) are copied because a power-of-two row
 * stride maps a whole tile onto a few L1 sets.  *ld receives the row
 * stride in floats. */
static const float *rows_f32(const struct sdpa_job *jb, const void *base,
                             size_t off, size_t row_stride, int width, int jn,
                             float *buf, size_t *ld)
{
    size_t w = (size_t)width;
    int r;

    *ld = w;
    if (!jb->f16 && (row_stride == w || jn == 1))
        return (const float *)base + off;
    for (r = 0; r < jn; r++) {
        size_t at = off + (size_t)r * row_stride;
        if (jb->f16)
            attn_half_to_float_n((const uint16_t *)base + at,
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

/* Adds bias * log2(e) for the tile's real queries (rows of the bias are
 * seq_kv floats apart; bp points at query i0, key j0).  A -inf entry hides
 * the key whatever its score (a NaN key must not turn it into NaN). */
static void add_bias(float *s, const float *bp, size_t ld, int qn, int jn)
{
    int i, r;

    for (i = 0; i < qn; i++)
        for (r = 0; r < jn; r++) {
            float b = bp[(size_t)i * ld + (size_t)r];
            float *e = &s[(size_t)r * QT + (size_t)i];
            *e = b == -INFINITY ? -INFINITY : *e + b * LOG2E;
        }
}

/* 1 when every value of the jn x dv tile is finite. */
static int tile_finite(const float *v, size_t ldv, int jn, int dv)
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
static int tile_has_zero(const float *p, int jn, int lanes)
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

static const float *bias_base(const attn_sdpa_desc *d, int b, int h)
{
    size_t plane = (size_t)d->seq_q * (size_t)d->seq_kv;

    switch (d->mask.bias_kind) {
    case ATTN_BIAS_SHARED:
        return d->mask.bias;
    case ATTN_BIAS_PER_HEAD:
        return d->mask.bias + (size_t)h * plane;
    case ATTN_BIAS_FULL:
        return d->mask.bias +
               ((size_t)b * (size_t)d->heads_q + (size_t)h) * plane;
    default:
        return NULL;
    }
}

/* Scores of keys j0 .. j0+jn-1 for the tile's lanes into s, with the bias
 * when bias is not NULL (bias points at query i0, key j0) and the causal /
 * window mask when masked.  Returns the per-lane maximum when
 * the dot kernel gave it and nothing moved it, else NULL. */
static const float *score_tile(const struct sdpa_job *jb,
                               const struct sdpa_ws *w, const float *kt,
                               size_t ldk, float *s, float *smax, int i0,
                               int qn, long long j0, int jn, int lanes,
                               long long off, int masked, const float *bias)
{
    const attn_sdpa_desc *d = jb->d;
    int nq = lanes / 16;

    if (d->score == ATTN_SCORE_ADDITIVE) {
        attn_kern_additive(nq, jn, d->head_dim, w->qt, kt, ldk, w->w, s);
        smax = NULL;
    } else {
        attn_kern_qk(nq, jn, d->head_dim, w->qt, kt, ldk, s, smax);
    }
    /* the bias first: a hidden key stays -inf whatever its bias holds */
    if (bias) {
        add_bias(s, bias, (size_t)d->seq_kv, qn, jn);
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
 * tile are computed again, one key at a time, to find the hidden ones.
 * Rare (a KV cache with garbage behind a mask), so plain C. */
static void pv_nonfinite(const struct sdpa_job *jb, const struct sdpa_ws *w,
                         const float *kt, size_t ldk, const float *v,
                         size_t ldv, int i0, int qn, long long j0, int jn,
                         int lanes, long long off, int masked,
                         const float *bias)
{
    _Alignas(64) float s1[QT], mx1[QT];
    uint64_t hidden[SDPA_KTILE]; /* bit i: lane i hides the key */
    int dv = jb->d->head_dim_v;

    for (int j = 0; j < jn; j++) {
        score_tile(jb, w, kt + (size_t)j * ldk, ldk, s1, mx1, i0, qn, j0 + j, 1,
                   lanes, off, masked, bias ? bias + j : NULL);
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
static void finish_tile(const struct sdpa_job *jb, const struct sdpa_ws *w,
                        size_t ooff, float *lse, int qn)
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
            attn_float_to_half_n(row, (uint16_t *)jb->o + at, (size_t)dv);
        if (lse)
            lse[i] = any ? (w->m[i] + log2f(l)) * LN2 : -INFINITY;
    }
}

static void sdpa_item(void *arg, size_t item, int worker)
{
    const struct sdpa_job *jb = arg;
    const attn_sdpa_desc *d = jb->d;
    struct sdpa_ws w = ws_of(jb->cpu, worker);
    size_t bh_count = (size_t)d->batch * (size_t)d->heads_q;
    /* last query tiles first: under a causal mask they are the longest */
    int qti = jb->nqt - 1 - (int)(item / bh_count);
    int b = (int)(item % bh_count / (size_t)d->heads_q);
    int h = (int)(item % bh_count % (size_t)d->heads_q);
    int g = h / jb->group;
    int i0 = qti * QT;
    int qn = d->seq_q - i0 < QT ? d->seq_q - i0 : QT;
    int nq = (qn + 15) / 16, lanes = nq * 16, i;
    long long off = (long long)d->seq_kv - d->seq_q;
    long long jlo = 0, jhi = d->mask.kv_len ? d->mask.kv_len[b] : d->seq_kv;
    long long full_lo = 0, full_hi = jhi, j0;
    size_t koff = (size_t)b * jb->lay.k[0] + (size_t)g * jb->lay.k[1];
    size_t voff = (size_t)b * jb->lay.v[0] + (size_t)g * jb->lay.v[1];
    const float *bias = bias_base(d, b, h);

    /* [jlo, jhi): keys some query of the tile sees; [full_lo, full_hi]:
     * keys every query of the tile sees */
    if (d->mask.causal) {
        long long last = (long long)i0 + qn - 1 + off;
        if (last + 1 < jhi)
            jhi = last + 1;
        if (i0 + off + 1 < full_hi)
            full_hi = i0 + off + 1;
    }
    if (d->mask.window > 0) {
        long long first = (long long)i0 + off - d->mask.window + 1;
        if (first > jlo)
            jlo = first;
        full_lo = first + qn - 1;
    }

    pack_q(jb, &w,
           (size_t)b * jb->lay.q[0] + (size_t)h * jb->lay.q[1] +
               (size_t)i0 * jb->lay.q[2],
           qn, lanes);
    if (d->score == ATTN_SCORE_ADDITIVE)
        for (i = 0; i < d->head_dim; i++)
            w.w[i] =
                d->additive_w[(size_t)h * (size_t)d->head_dim + (size_t)i] *
                LOG2E;
    for (i = 0; i < lanes; i++) {
        w.m[i] = -INFINITY;
        w.l[i] = 0.0f;
    }
    memset(w.ot, 0, (size_t)d->head_dim_v * QT * sizeof(float));

    for (j0 = jlo; j0 < jhi; j0 += SDPA_KTILE) {
        int jn = (int)(jhi - j0 < SDPA_KTILE ? jhi - j0 : SDPA_KTILE);
        size_t ldk, ldv;
        const float *kt = rows_f32(jb, jb->k, koff + (size_t)j0 * jb->lay.k[2],
                                   jb->lay.k[2], d->head_dim, jn, w.kc, &ldk);
        const float *vt;

        const float *bt =
            bias ? bias + (size_t)i0 * (size_t)d->seq_kv + (size_t)j0 : NULL;
        int masked = j0 < full_lo || j0 + jn > full_hi;
        /* the max from the score kernel holds until a mask or bias moves it */
        const float *smax = score_tile(jb, &w, kt, ldk, w.s, w.smax, i0, qn, j0,
                                       jn, lanes, off, masked, bt);

        attn_kern_softmax(nq, jn, w.s, smax, w.m, w.l, w.alpha);
        vt = rows_f32(jb, jb->v, voff + (size_t)j0 * jb->lay.v[2], jb->lay.v[2],
                      d->head_dim_v, jn, w.vc, &ldv);
        if (tile_has_zero(w.s, jn, lanes) &&
            !tile_finite(vt, ldv, jn, d->head_dim_v))
            pv_nonfinite(jb, &w, kt, ldk, vt, ldv, i0, qn, j0, jn, lanes, off,
                         masked, bt);
        else
            attn_kern_pv(nq, jn, d->head_dim_v, w.s, vt, ldv, w.alpha, w.ot);
    }

    finish_tile(jb, &w,
                (size_t)b * jb->lay.o[0] + (size_t)h * jb->lay.o[1] +
                    (size_t)i0 * jb->lay.o[2],
                jb->lse ? jb->lse +
                              ((size_t)b * (size_t)d->heads_q + (size_t)h) *
                                  (size_t)d->seq_q +
                              (size_t)i0
                        : NULL,
                qn);
}

static void default_layout(const attn_sdpa_desc *d, attn_cpu_layout *l)
{
    size_t sq = (size_t)d->seq_q, skv = (size_t)d->seq_kv;
    size_t hd = (size_t)d->head_dim, hdv = (size_t)d->head_dim_v;
    size_t hq = (size_t)d->heads_q, hkv = (size_t)d->heads_kv;

    l->q[2] = hd;
    l->q[1] = sq * hd;
    l->q[0] = hq * sq * hd;
    l->k[2] = hd;
    l->k[1] = skv * hd;
    l->k[0] = hkv * skv * hd;
    l->v[2] = hdv;
    l->v[1] = skv * hdv;
    l->v[0] = hkv * skv * hdv;
    l->o[2] = hdv;
    l->o[1] = sq * hdv;
    l->o[0] = hq * sq * hdv;
}

attn_status attn_cpu_sdpa(attn_cpu *c, const attn_sdpa_desc *d, const void *q,
                          const void *k, const void *v, void *o, float *lse,
                          const attn_cpu_layout *layout)
{
    struct sdpa_job jb;
    attn_status st;
    size_t items;

    if (!c || !d)
        return ATTN_ERR_INVALID_ARGUMENT;
    memset(&jb, 0, sizeof jb);
    jb.cpu = c;
    jb.d = d;
    jb.q = q;
    jb.k = k;
    jb.v = v;
    jb.o = o;
    jb.lse = lse;
    if (layout)
        jb.lay = *layout;
    else
        default_layout(d, &jb.lay);
    jb.f16 = d->dtype == ATTN_F16;
    jb.group = d->heads_q / d->heads_kv;
    jb.nqt = (d->seq_q + QT - 1) / QT;
    if (d->score == ATTN_SCORE_ADDITIVE)
        jb.qscale = 1.0f;
    else
        jb.qscale =
            (d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim)) *
            LOG2E;
    items = (size_t)jb.nqt * (size_t)d->batch * (size_t)d->heads_q;

    pthread_mutex_lock(&c->lock);
    st = ws_reserve(c, d->head_dim, d->head_dim_v);
    if (st == ATTN_OK)
        attn_pool_run(c->pool, items, sdpa_item, &jb);
    pthread_mutex_unlock(&c->lock);
    return st;
}
