/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_ring against the single-process attn_sdpa, run by ctest
 * under mpiexec with 1 to 4 ranks.  Every rank builds the same global
 * Q, K, V from a seed, computes the whole attention on its own context,
 * runs the ring on its slice and compares its rows of O and lse.
 *
 * Tolerance: F32 |ring - single| <= 1e-5 (1 + |single|), O and lse (both
 * are float sums of the same terms in another order and grouping);
 * F16 O within 1e-3 (one half ulp is 2^-10 below 1, and the two round
 * float values that differ in their last bits), lse as F32.
 *
 * Failures: an invalid argument on one rank, descriptors that differ
 * between ranks and a block that fails on one rank mid-ring make every
 * rank return an error and leave the outputs untouched; a rank that stalls
 * past the timeout makes the ranks waiting for it return an error.
 * Nothing hangs (ctest's timeout would say so).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "harness.h"
#include "mpi/ring_call.h"
#include "ref.h"

static attn_context *ctx;
static int rank, ranks;

typedef struct ring_case {
    const char *name;
    int batch, hq, hkv, d, dv, seq, causal, f16, additive;
    attn_ring_layout layout;
    int uneven; /* CONTIGUOUS: counts given, uneven (some 0) */
    const int32_t *kv_len;
    int window;            /* mask.window */
    int64_t causal_offset; /* the global diagonal */
    const float *key_bias; /* ATTN_BIAS_KEY [batch, seq], or NULL */
} ring_case;

static float lcg(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Global [outer, seq, w] values from a seed; halves when f16. */
static void *fill(size_t n, unsigned seed, int f16)
{
    void *p = malloc(n * (f16 ? 2 : 4));
    for (size_t i = 0; i < n; i++) {
        float x = lcg(&seed);
        if (f16)
            ((uint16_t *)p)[i] = ring_float_to_half(x);
        else
            ((float *)p)[i] = x;
    }
    return p;
}

static float val(const void *p, size_t i, int f16)
{
    return f16 ? ring_half_to_float(((const uint16_t *)p)[i])
               : ((const float *)p)[i];
}

/* The local rows of a global [outer, seq, w] tensor. */
static void *slice(const attn_ring_desc *r, const void *g, size_t outer,
                   size_t w, size_t elem, int *rows)
{
    int first;
    CU_ASSERT_FATAL(attn_ring_rows(r, ranks, rank, rows, &first) == ATTN_OK);
    void *p = malloc((size_t)(*rows ? *rows : 1) * outer * w * elem);
    for (int i = 0; i < *rows; i++) {
        int gi;
        CU_ASSERT_FATAL(attn_ring_global_row(r, ranks, rank, i, &gi) ==
                        ATTN_OK);
        for (size_t o = 0; o < outer; o++)
            memcpy((char *)p + ((o * (size_t)*rows) + (size_t)i) * w * elem,
                   (const char *)g +
                       ((o * (size_t)r->seq) + (size_t)gi) * w * elem,
                   w * elem);
    }
    return p;
}

/* Uneven counts: rank r gets (r + 1) parts, rank 1 none when P >= 3. */
static void uneven_counts(int *counts, int seq)
{
    int parts = 0;
    for (int r = 0; r < ranks; r++)
        parts += (ranks >= 3 && r == 1) ? 0 : r + 1;
    int left = seq;
    for (int r = 0; r < ranks; r++) {
        int share = (ranks >= 3 && r == 1) ? 0 : seq * (r + 1) / parts;
        counts[r] = r == ranks - 1 ? left : share;
        left -= counts[r];
    }
}

/* Strided local slices: 1 BSHD for q, k, v and o; 2 rows padded by 3
 * elements for q, k, v, and o BSHD with rows padded by 2.  The strides
 * are each rank's own (its batch stride counts its rows). */
static void strides_of(int mode, int t, size_t heads, size_t rows, size_t w,
                       int64_t st[3])
{
    size_t row = w + (mode == 2 ? (t == 3 ? 2 : 3) : 0);
    if (mode == 1 || t == 3) { /* [batch, rows, heads, row] */
        st[0] = (int64_t)(rows * heads * row);
        st[1] = (int64_t)row;
        st[2] = (int64_t)(heads * row);
    } else { /* [batch, heads, rows, row] */
        st[0] = (int64_t)(heads * rows * row);
        st[1] = (int64_t)(rows * row);
        st[2] = (int64_t)row;
    }
}

#define GAP 0x7e /* bytes of the gaps between strided rows */

/* The rows of a contiguous [outer = batch * heads, rows, w] slice moved
 * to (to 1) or from (to 0) a strided buffer of n elements. */
static void move_strided(void *contig, unsigned char *strided, size_t heads,
                         size_t outer, size_t rows, size_t w, size_t elem,
                         const int64_t st[3], int to)
{
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < rows; i++) {
            unsigned char *s =
                strided + ((o / heads) * (size_t)st[0] +
                           (o % heads) * (size_t)st[1] + i * (size_t)st[2]) *
                              elem;
            unsigned char *c =
                (unsigned char *)contig + (o * rows + i) * w * elem;
            if (to)
                memcpy(s, c, w * elem);
            else
                memcpy(c, s, w * elem);
        }
}

/* A buffer of the extent strides st span over [batch, heads, rows, w],
 * filled with GAP; its size in bytes. */
static unsigned char *strided_buf(size_t batch, size_t heads, size_t rows,
                                  size_t w, size_t elem, const int64_t st[3],
                                  size_t *bytes)
{
    size_t n = rows
                   ? (batch - 1) * (size_t)st[0] + (heads - 1) * (size_t)st[1] +
                         (rows - 1) * (size_t)st[2] + w
                   : 1;
    unsigned char *p = malloc(n * elem);
    memset(p, GAP, n * elem);
    *bytes = n * elem;
    return p;
}

/* The ring's steps for case k, from the global positions: 1 + the
 * farthest step t at which a row of some rank sees a key of the rank t
 * before it (causal: j <= i + offset; window: j >= i + offset - window +
 * 1; kv_len not counted). */
/* The blocks this rank computes in the first `steps` steps, from the
 * global positions: a pair of chunks with rows, where some row sees some
 * key through the causal mask and the window, and some batch item's
 * kv_len reaches the key chunk. */
static int blocks_expected(const ring_case *k, const attn_ring_desc *r,
                           int steps)
{
    ring_layout l;
    char why[128];
    int n = 0;
    CU_ASSERT_FATAL(ring_layout_make(r, ranks, &l, why, sizeof why) == ATTN_OK);
    for (int t = 0; t < steps; t++)
        for (int i = 0; i < l.per_rank; i++)
            for (int j = 0; j < l.per_rank; j++) {
                const int ca = ring_chunk_of(&l, rank, i);
                const int cb = ring_chunk_of(&l, (rank - t + ranks) % ranks, j);
                int seen = 0, reach = !k->kv_len;
                for (int b = 0; k->kv_len && b < k->batch; b++)
                    reach |= k->kv_len[b] > l.start[cb];
                for (int gi = l.start[ca]; gi < l.start[ca + 1]; gi++)
                    for (int gj = l.start[cb]; gj < l.start[cb + 1]; gj++) {
                        const long long off = (long long)gi + k->causal_offset;
                        seen |= (!k->causal || gj <= off) &&
                                (k->window <= 0 || gj >= off - k->window + 1);
                    }
                n += seen && reach;
            }
    ring_layout_free(&l);
    return n;
}

static int steps_expected(const ring_case *k, const attn_ring_desc *r)
{
    for (int t = ranks - 1; t > 0; t--)
        for (int a = 0; a < ranks; a++) {
            int src = (a - t + ranks) % ranks, na, nb, first;
            CU_ASSERT_FATAL(
                attn_ring_rows(r, ranks, a, &na, &first) == ATTN_OK &&
                attn_ring_rows(r, ranks, src, &nb, &first) == ATTN_OK);
            for (int x = 0; x < na; x++)
                for (int y = 0; y < nb; y++) {
                    int gi, gj;
                    attn_ring_global_row(r, ranks, a, x, &gi);
                    attn_ring_global_row(r, ranks, src, y, &gj);
                    const long long off = (long long)gi + k->causal_offset;
                    if ((!k->causal || gj <= off) &&
                        (k->window <= 0 || gj >= off - k->window + 1))
                        return t + 1;
                }
        }
    return 1;
}

/* The global descriptor of case k; *w receives the additive score's
 * weights (free them), or NULL. */
static attn_sdpa_desc case_desc(const ring_case *k, float **w)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    d.batch = k->batch;
    d.heads_q = k->hq;
    d.heads_kv = k->hkv;
    d.seq_q = d.seq_kv = k->seq;
    d.head_dim = k->d;
    d.head_dim_v = k->dv;
    d.mask.causal = k->causal;
    d.mask.kv_len = k->kv_len;
    d.mask.window = k->window;
    d.causal_offset = k->causal_offset;
    d.mask.bias = k->key_bias;
    d.mask.bias_kind = k->key_bias ? ATTN_BIAS_KEY : ATTN_BIAS_NONE;
    d.dtype = k->f16 ? ATTN_F16 : ATTN_F32;
    *w = NULL;
    if (k->additive) {
        d.score = ATTN_SCORE_ADDITIVE;
        *w = fill((size_t)k->hq * (size_t)k->d, 99, 0);
        d.additive_w = *w;
    }
    return d;
}

/* The ring of case k (counts: room for the uneven ones), stats set. */
static attn_ring_desc case_ring(const ring_case *k, int *counts,
                                attn_ring_stats *stats)
{
    attn_ring_desc r = ATTN_RING_DESC_INIT;
    r.seq = k->seq;
    r.layout = k->layout;
    if (k->uneven) {
        uneven_counts(counts, k->seq);
        r.counts = counts;
    }
    r.stats = stats;
    return r;
}

/* The steps and blocks stats reports for case k, against the counts from
 * global positions. */
static void check_stats(const ring_case *k, const attn_ring_desc *r,
                        const attn_ring_stats *stats)
{
    char what[200];
    const int steps = steps_expected(k, r);
    const int blocks = blocks_expected(k, r, steps);
    snprintf(what, sizeof what,
             "%s on rank %d of %d: %d steps and %d blocks, %d and %d "
             "expected",
             k->name, rank, ranks, stats->steps, stats->blocks, steps, blocks);
    HARNESS_EXPECT(stats->steps == steps && stats->blocks == blocks &&
                       stats->bytes_held > 0,
                   what);
    if (rank == ranks - 1 && steps < ranks)
        printf(" (%d of %d steps)", steps, ranks);
}

static void run_case_in(const ring_case *k, int strided)
{
    float *w;
    attn_sdpa_desc d = case_desc(k, &w);
    size_t bq = (size_t)k->batch * (size_t)k->hq;
    size_t bkv = (size_t)k->batch * (size_t)k->hkv;
    size_t seq = (size_t)k->seq, elem = k->f16 ? 2 : 4;
    void *q = fill(bq * seq * (size_t)k->d, 1, k->f16);
    void *kk = fill(bkv * seq * (size_t)k->d, 2, k->f16);
    void *v = fill(bkv * seq * (size_t)k->dv, 3, k->f16);
    void *o_ref = malloc(bq * seq * (size_t)k->dv * elem);
    float *lse_ref = malloc(bq * seq * sizeof(float));
    CU_ASSERT_FATAL(attn_sdpa(ctx, &d, q, kk, v, o_ref, lse_ref) == ATTN_OK);

    int counts[8];
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    attn_ring_desc r = case_ring(k, counts, &stats);
    int rows;
    void *ql = slice(&r, q, bq, (size_t)k->d, elem, &rows);
    void *kl = slice(&r, kk, bkv, (size_t)k->d, elem, &rows);
    void *vl = slice(&r, v, bkv, (size_t)k->dv, elem, &rows);
    void *ol_ref = slice(&r, o_ref, bq, (size_t)k->dv, elem, &rows);
    float *lsel_ref = slice(&r, lse_ref, bq, 1, 4, &rows);
    size_t no = (size_t)rows * bq * (size_t)k->dv;
    void *ol = malloc((no ? no : 1) * elem);
    float *lsel = malloc((rows ? (size_t)rows : 1) * bq * sizeof(float));
    attn_status st;
    if (strided) {
        /* The same slices strided; o's gaps must stay as they were. */
        const size_t hs[4] = {(size_t)k->hq, (size_t)k->hkv, (size_t)k->hkv,
                              (size_t)k->hq};
        const size_t ws[4] = {(size_t)k->d, (size_t)k->d, (size_t)k->dv,
                              (size_t)k->dv};
        int64_t *sts[4] = {d.q_strides, d.k_strides, d.v_strides, d.o_strides};
        void *contig[3] = {ql, kl, vl};
        unsigned char *buf[4];
        size_t bytes[4];
        for (int t = 0; t < 4; t++) {
            size_t outer = (size_t)k->batch * hs[t];
            strides_of(strided, t, hs[t], (size_t)rows, ws[t], sts[t]);
            buf[t] = strided_buf((size_t)k->batch, hs[t], (size_t)rows, ws[t],
                                 elem, sts[t], &bytes[t]);
            if (t < 3)
                move_strided(contig[t], buf[t], hs[t], outer, (size_t)rows,
                             ws[t], elem, sts[t], 1);
        }
        unsigned char *before = malloc(bytes[3]);
        memcpy(before, buf[3], bytes[3]);
        st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &r, &d, buf[0], buf[1], buf[2],
                            buf[3], lsel);
        /* o's rows back to contiguous, and its gaps compared. */
        move_strided(ol, buf[3], hs[3], bq, (size_t)rows, ws[3], elem, sts[3],
                     0);
        move_strided(ol, before, hs[3], bq, (size_t)rows, ws[3], elem, sts[3],
                     1);
        HARNESS_EXPECT(memcmp(before, buf[3], bytes[3]) == 0,
                       "strided o: only its rows are written");
        free(before);
        for (int t = 0; t < 4; t++)
            free(buf[t]);
    } else {
        st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &r, &d, ql, kl, vl, ol, lsel);
    }
    char what[160];
    snprintf(what, sizeof what, "%s on rank %d of %d: %s", k->name, rank, ranks,
             attn_ring_last_error());
    HARNESS_EXPECT(st == ATTN_OK, what);
    double worst = 0, worst_lse = 0;
    int bad = 0;
    for (size_t i = 0; st == ATTN_OK && i < no; i++) {
        double a = val(ol, i, k->f16), b = val(ol_ref, i, k->f16);
        double tol = k->f16 ? 1e-3 : 1e-5 * (1 + fabs(b));
        if (!(fabs(a - b) <= tol))
            bad++;
        worst = fmax(worst, fabs(a - b));
    }
    for (size_t i = 0; st == ATTN_OK && i < (size_t)rows * bq; i++) {
        double a = lsel[i], b = lsel_ref[i];
        if (a == b) /* also -INFINITY for rows that see no key */
            continue;
        if (!(fabs(a - b) <= 1e-5 * (1 + fabs(b))))
            bad++;
        worst_lse = fmax(worst_lse, fabs(a - b));
    }
    snprintf(what, sizeof what,
             "%s on rank %d of %d: %d values off (max |dO| %g, |dlse| %g)",
             k->name, rank, ranks, bad, worst, worst_lse);
    HARNESS_EXPECT(bad == 0, what);
    if (rank == ranks - 1)
        printf("\n  %s, %d ranks: max |dO| %.3g, max |dlse| %.3g", k->name,
               ranks, worst, worst_lse);
    if (st == ATTN_OK)
        check_stats(k, &r, &stats);
    free(w);
    free(q);
    free(kk);
    free(v);
    free(o_ref);
    free(lse_ref);
    free(ql);
    free(kl);
    free(vl);
    free(ol_ref);
    free(lsel_ref);
    free(ol);
    free(lsel);
}

static void run_case(const ring_case *k)
{
    run_case_in(k, 0);
}

static const int32_t kv_lens[2] = {29, 0};

/* The strided cases of the forward and the backward: strides_of's mode
 * 1 (BSHD) on the first, mode 2 (padded rows) on both. */
static const ring_case strided_cases[] = {
    {"BSHD zigzag causal GQA", 2, 4, 2, 16, 12, 48, 1, 0, 0, ATTN_RING_ZIGZAG,
     0, NULL, 0, 0, NULL},
    {"padded rows f16 uneven kv_len", 2, 2, 1, 8, 16, 40, 1, 1, 0,
     ATTN_RING_CONTIGUOUS, 1, kv_lens, 0, 0, NULL},
};

static void run_strided_cases(void (*run)(const ring_case *, int))
{
    run(&strided_cases[0], 1);
    run(&strided_cases[1], 2);
    run(&strided_cases[0], 2);
}

/* Strided slices (each rank's own strides), gathered and o written back
 * through its strides, its gaps untouched. */
static void test_strided(void)
{
    run_strided_cases(run_case_in);
}
static const int32_t kv_lens2[3] = {40, 7, 48};
static const int32_t kv_lens3[3] = {64, 20, 50};

static void test_contiguous(void)
{
    ring_case c[] = {
        {"contiguous", 2, 4, 2, 16, 12, 48, 0, 0, 0, ATTN_RING_CONTIGUOUS, 0,
         NULL, 0, 0, NULL},
        {"contiguous causal", 2, 4, 2, 16, 12, 48, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 0, 0, NULL},
        {"contiguous causal seq 37", 1, 2, 2, 8, 8, 37, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 0, 0, NULL},
        {"contiguous uneven counts", 2, 2, 1, 8, 16, 41, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, NULL},
        {"contiguous uneven counts causal", 2, 2, 1, 8, 16, 41, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

static void test_zigzag(void)
{
    ring_case c[] = {
        {"zigzag causal", 2, 4, 2, 16, 12, 48, 1, 0, 0, ATTN_RING_ZIGZAG, 0,
         NULL, 0, 0, NULL},
        {"zigzag", 1, 4, 4, 16, 16, 48, 0, 0, 0, ATTN_RING_ZIGZAG, 0, NULL, 0,
         0, NULL},
        {"zigzag causal seq 37", 1, 6, 2, 8, 8, 37, 1, 0, 0, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

static void test_kv_len(void)
{
    ring_case c[] = {
        {"kv_len (one batch item sees nothing)", 2, 2, 1, 8, 8, 40, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, kv_lens, 0, 0, NULL},
        {"kv_len causal zigzag", 3, 2, 2, 8, 8, 48, 1, 0, 0, ATTN_RING_ZIGZAG,
         0, kv_lens2, 0, 0, NULL},
        {"kv_len uneven counts", 2, 2, 2, 8, 8, 40, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, kv_lens, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

/* Sliding windows (each block's diagonal through causal_offset): windows
 * shorter than a chunk, spanning several and longer than the sequence,
 * with and without the causal mask, with kv_len, F16, and a moved global
 * diagonal (-1: no row sees itself). */
static void test_window(void)
{
    ring_case c[] = {
        {"contiguous causal window 7", 2, 4, 2, 16, 12, 48, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 7, 0, NULL},
        {"contiguous causal window 1 (each row itself)", 1, 2, 1, 8, 8, 40, 1,
         0, 0, ATTN_RING_CONTIGUOUS, 0, NULL, 1, 0, NULL},
        {"uneven counts causal window 12", 2, 2, 2, 8, 8, 41, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 12, 0, NULL},
        {"zigzag causal window 20", 1, 2, 2, 8, 8, 48, 1, 0, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 20, 0, NULL},
        {"uneven counts window 9 (not causal)", 2, 2, 1, 8, 16, 41, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 9, 0, NULL},
        {"f16 zigzag causal window 30 kv_len", 3, 2, 2, 8, 8, 48, 1, 1, 0,
         ATTN_RING_ZIGZAG, 0, kv_lens2, 30, 0, NULL},
        {"zigzag causal window 100 > seq 37", 1, 2, 1, 8, 8, 37, 1, 0, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 100, 0, NULL},
        {"contiguous causal_offset -1 window 5", 1, 2, 2, 8, 8, 45, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 5, -1, NULL},
        {"zigzag causal_offset 3 window 6 (not causal)", 1, 2, 2, 8, 8, 44, 0,
         0, 0, ATTN_RING_ZIGZAG, 0, NULL, 6, 3, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

/* A key bias [batch, seq] (each block takes its slice): values in
 * [-2, 2], every 5th key -inf, and in batch item 1 the keys 8 .. 31 all
 * -inf (whole chunks of some rows' keys hidden by the bias alone). */
static float key_bias[3 * 64];

static void fill_key_bias(void)
{
    unsigned s = 77;
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 64; j++)
            key_bias[b * 64 + j] = j % 5 == 3 || (b == 1 && j >= 8 && j < 32)
                                       ? -INFINITY
                                       : 2.0f * lcg(&s);
}

static void test_key_bias(void)
{
    fill_key_bias();
    /* the bias is [batch, seq]: seq 64 reads it as laid out above */
    ring_case c[] = {
        {"key bias zigzag causal", 3, 2, 1, 8, 8, 64, 1, 0, 0, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, key_bias},
        {"key bias contiguous (not causal) uneven", 2, 2, 2, 8, 12, 64, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, key_bias},
        {"f16 key bias contiguous causal window 9 kv_len", 3, 2, 2, 16, 16, 64,
         1, 1, 0, ATTN_RING_CONTIGUOUS, 0, kv_lens3, 9, 0, key_bias},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

static void test_f16_additive(void)
{
    ring_case c[] = {
        {"f16 zigzag causal GQA", 2, 4, 2, 16, 16, 48, 1, 1, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 0, 0, NULL},
        {"f16 contiguous uneven", 1, 2, 1, 32, 8, 45, 0, 1, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, NULL},
        {"additive score causal", 1, 2, 1, 8, 8, 30, 1, 0, 1, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

/* ---- failures ----------------------------------------------------------- */

/* A small problem every failure test runs: outputs preset to a sentinel
 * that must survive a failed call. */
typedef struct small {
    attn_sdpa_desc d;
    attn_ring_desc r;
    float *q, *k, *v, *o, *lse;
    int rows;
} small;

static void small_make(small *s, int causal)
{
    memset(s, 0, sizeof *s);
    attn_sdpa_desc_init(&s->d);
    s->d.batch = 1;
    s->d.heads_q = s->d.heads_kv = 2;
    s->d.seq_q = s->d.seq_kv = 24;
    s->d.head_dim = s->d.head_dim_v = 4;
    s->d.mask.causal = causal;
    s->r = (attn_ring_desc)ATTN_RING_DESC_INIT;
    s->r.seq = 24;
    s->r.layout = ATTN_RING_ZIGZAG;
    s->r.timeout_ms = 10000;
    int first;
    CU_ASSERT_FATAL(attn_ring_rows(&s->r, ranks, rank, &s->rows, &first) ==
                    ATTN_OK);
    size_t n = (size_t)s->rows * 2 * 4 + 1;
    s->q = fill(n, 5, 0);
    s->k = fill(n, 6, 0);
    s->v = fill(n, 7, 0);
    s->o = malloc(n * sizeof(float));
    s->lse = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        s->o[i] = s->lse[i] = 1234.5f;
}

static int small_untouched(const small *s)
{
    for (size_t i = 0; i < (size_t)s->rows * 2 * 4; i++)
        if (s->o[i] != 1234.5f || s->lse[i] != 1234.5f)
            return 0;
    return 1;
}

static void small_free(small *s)
{
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->o);
    free(s->lse);
}

static void expect_failed(const small *s, attn_status st, attn_status want,
                          const char *test)
{
    char what[600];
    snprintf(what, sizeof what, "%s, rank %d of %d: status %s (%s)", test, rank,
             ranks, attn_status_string(st), attn_ring_last_error());
    HARNESS_EXPECT(st == want, what);
    HARNESS_EXPECT(attn_ring_last_error()[0] != '\0', what);
    HARNESS_EXPECT(small_untouched(s), what);
}

/* The last rank passes q NULL; every rank returns its status. */
static void test_bad_input_on_one_rank(void)
{
    small s;
    small_make(&s, 1);
    const float *q = rank == ranks - 1 ? NULL : s.q;
    attn_status st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, q, s.k,
                                    s.v, s.o, s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "q NULL on the last rank");
    small_free(&s);
    /* The ring itself NULL on the last rank: refused through the same
     * agreement (the others learn it at once, not after timeout_ms) */
    small_make(&s, 1);
    double t0 = MPI_Wtime();
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, rank == ranks - 1 ? NULL : &s.r,
                        &s.d, s.q, s.k, s.v, s.o, s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT,
                  "ring NULL on the last rank");
    HARNESS_EXPECT(MPI_Wtime() - t0 < 5.0, "ring NULL: no rank waits it out");
    small_free(&s);
    /* A negative timeout_ms on the last rank: an invalid argument there
     * too (not a wait that ends at once) */
    small_make(&s, 1);
    if (rank == ranks - 1)
        s.r.timeout_ms = -5;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "timeout_ms negative");
    small_free(&s);
    /* causal_align no attn_causal_align, as attn_sdpa refuses it */
    small_make(&s, 1);
    if (rank == ranks - 1)
        s.d.causal_align = (attn_causal_align)7;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "causal_align 7");
    small_free(&s);
}

/* Rank 0 asks for causal, the others not: the descriptors differ. */
static void test_descriptors_differ(void)
{
    small s;
    small_make(&s, rank == 0);
    attn_status st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k,
                                    s.v, s.o, s.lse);
    if (ranks > 1)
        expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "causal differs");
    else
        CU_ASSERT(st == ATTN_OK);
    /* A window on one rank only: the descriptors differ. */
    small_free(&s);
    small_make(&s, 0);
    if (rank == ranks - 1)
        s.d.mask.window = 3;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    if (ranks > 1)
        expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "window differs");
    else
        CU_ASSERT(st == ATTN_OK);
    small_free(&s);
    /* An unsupported mask (a [seq_q, seq_kv] bias) on one rank only. */
    small_make(&s, 0);
    static const float shared_bias[24 * 24];
    if (rank == ranks - 1) {
        s.d.mask.bias = shared_bias;
        s.d.mask.bias_kind = ATTN_BIAS_SHARED;
    }
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_UNSUPPORTED, "a bias on the last rank");
    small_free(&s);
    /* A key bias on every rank, one value different on the last. */
    small_make(&s, 1);
    float kb[24] = {0};
    if (rank == ranks - 1)
        kb[23] = -1.0f;
    s.d.mask.bias = kb;
    s.d.mask.bias_kind = ATTN_BIAS_KEY;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    if (ranks > 1)
        expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "key bias differs");
    else
        CU_ASSERT(st == ATTN_OK);
    small_free(&s);
    /* A descriptor of the layout before causal_offset: the bytes where it
     * now stands are not read (12345 would be out of range). */
    small_make(&s, 1);
    s.d.struct_size = offsetof(attn_sdpa_desc, causal_offset);
    s.d.causal_offset = 12345;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    CU_ASSERT(st == ATTN_OK);
    small_free(&s);
    /* causal_offset out of [1 - seq, seq - 1] on every rank */
    small_make(&s, 1);
    s.d.causal_offset = s.r.seq;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "causal_offset seq");
    small_free(&s);
    /* BF16 storage on every rank: refused, not read as float */
    small_make(&s, 0);
    s.d.dtype = ATTN_BF16;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_UNSUPPORTED, "BF16 storage");
    small_free(&s);
}

/* The descriptors by their struct_size (docs/ABI.md): an attn_sdpa_desc
 * with struct_size 0 is its first layout (the bytes past it, whatever
 * they hold, not read: the same rows as a clean descriptor); ring and
 * stats sizes of no layout are refused, also by attn_ring_rows. */
static void test_struct_sizes(void)
{
    small s, t;
    attn_status st;
    int rows, first;
    small_make(&s, 1);
    small_make(&t, 1);
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &t.r, &t.d, t.q, t.k, t.v, t.o,
                        t.lse);
    CU_ASSERT(st == ATTN_OK);
    s.d.struct_size = 0;
    /* past the first layout: garbage a caller of it never set */
    memset((char *)&s.d + offsetof(attn_sdpa_desc, causal_align), 0xab,
           sizeof s.d - offsetof(attn_sdpa_desc, causal_align));
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    HARNESS_EXPECT(st == ATTN_OK, attn_ring_last_error());
    HARNESS_EXPECT(!memcmp(s.o, t.o, (size_t)s.rows * 2 * 4 * sizeof(float)),
                   "struct_size 0: the first layout's rows");
    small_free(&s);
    small_free(&t);
    /* attn_ring_rows reads the ring by its size too */
    small_make(&s, 0);
    s.r.struct_size = 41;
    CU_ASSERT(attn_ring_rows(&s.r, ranks, rank, &rows, &first) ==
              ATTN_ERR_INVALID_ARGUMENT);
    {
        unsigned char big[sizeof(attn_ring_desc) + 8] = {0};
        attn_ring_desc *r = (attn_ring_desc *)(void *)big;
        memcpy(big, &s.r, sizeof s.r);
        r->struct_size = sizeof big;
        CU_ASSERT(attn_ring_rows(r, ranks, rank, &rows, &first) == ATTN_OK);
        big[sizeof big - 1] = 1; /* a member this library does not know */
        CU_ASSERT(attn_ring_rows(r, ranks, rank, &rows, &first) ==
                  ATTN_ERR_UNSUPPORTED);
    }
    small_free(&s);
    /* stats of a size of no layout, on every rank */
    small_make(&s, 0);
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    stats.struct_size = 7;
    s.r.stats = &stats;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "stats struct_size 7");
    small_free(&s);
}

/* Strides the ring refuses, on one rank only: every rank returns
 * ATTN_ERR_INVALID_ARGUMENT, the outputs untouched. */
static void test_bad_strides(void)
{
    small s;
    small_make(&s, 1);
    /* The two heads of o on the same rows. */
    if (rank == ranks - 1) {
        s.d.o_strides[0] = s.rows * 4;
        s.d.o_strides[1] = 0;
        s.d.o_strides[2] = 4;
    }
    attn_status st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k,
                                    s.v, s.o, s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT,
                  "o's heads share rows on the last rank");
    HARNESS_EXPECT(rank != ranks - 1 ||
                       strstr(attn_ring_last_error(), "share elements"),
                   attn_ring_last_error());
    /* Rows of o closer than head_dim_v. */
    if (rank == ranks - 1) {
        s.d.o_strides[1] = s.rows * 3;
        s.d.o_strides[2] = 3;
    }
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT,
                  "o's rows overlap on the last rank");
    /* A negative stride on rank 0. */
    memset(s.d.o_strides, 0, sizeof s.d.o_strides);
    if (rank == 0)
        s.d.v_strides[2] = -4;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "negative v stride");
    /* An extent past the address space (the second head's rows). */
    s.d.v_strides[2] = 0;
    if (rank == 0) {
        s.d.q_strides[1] = INT64_MAX;
        s.d.q_strides[2] = 4;
    }
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    expect_failed(&s, st, ATTN_ERR_INVALID_ARGUMENT, "q's extent too large");
    small_free(&s);
}

/* A block computation that fails on one rank at its n-th call, or stalls
 * there for a while. */
typedef struct fault {
    int rank, call, calls;
    double stall_s;
} fault;

static attn_status faulty_sdpa(attn_context *c, const attn_sdpa_desc *d,
                               const void *q, const void *k, const void *v,
                               void *o, float *lse, void *user)
{
    fault *f = user;
    if (rank == f->rank && ++f->calls == f->call) {
        if (f->stall_s <= 0)
            return ATTN_ERR_DEVICE;
        struct timespec ts = {
            (time_t)f->stall_s,
            (long)((f->stall_s - (double)(time_t)f->stall_s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return attn_sdpa(c, d, q, k, v, o, lse);
}

/* The last rank's second block fails (its first with one rank): every
 * rank returns an error, nobody waits for the timeout. */
static void test_failure_mid_ring(void)
{
    small s;
    small_make(&s, 0);
    fault f = {ranks - 1, ranks > 1 ? 2 : 1, 0, 0};
    attn_status st = ring_run(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v,
                              s.o, s.lse, faulty_sdpa, &f);
    expect_failed(&s, st, ATTN_ERR_DEVICE, "block failing mid-ring");
    HARNESS_EXPECT(!strstr(attn_ring_last_error(), "timeout"),
                   attn_ring_last_error());
    /* The communicator works for the next call. */
    for (size_t i = 0; i < (size_t)s.rows * 8; i++)
        s.o[i] = 0;
    st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &s.r, &s.d, s.q, s.k, s.v, s.o,
                        s.lse);
    CU_ASSERT(st == ATTN_OK);
    small_free(&s);
}

/* The last rank stalls for twice the timeout in its first block: the
 * others' waits time out (or the last agreement tells them that another
 * one's did).  On a communicator of its own, freed after: a timed-out
 * call may leave messages and requests behind (attn_mpi.h). */
static void test_stalled_rank_times_out(void)
{
    if (ranks < 2) {
        printf("(stall: needs two ranks) ");
        return;
    }
    MPI_Comm comm;
    CU_ASSERT_FATAL(MPI_Comm_dup(MPI_COMM_WORLD, &comm) == MPI_SUCCESS);
    small s;
    small_make(&s, 0);
    s.r.timeout_ms = 300;
    fault f = {ranks - 1, 1, 0, 0.6};
    attn_status st = ring_run(ctx, comm, &s.r, &s.d, s.q, s.k, s.v, s.o, s.lse,
                              faulty_sdpa, &f);
    /* The ranks that waited for it time out.  The late rank itself waits
     * only on others, and may find everything it needed arrived (its
     * result is then complete and correct, checked against a run
     * without the stall) or time out in turn. */
    if (rank != ranks - 1 || st != ATTN_OK) {
        expect_failed(&s, st, ATTN_ERR_DEVICE,
                      "a rank stalling past the timeout");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    small t;
    small_make(&t, 0);
    CU_ASSERT(attn_sdpa_ring(ctx, MPI_COMM_WORLD, &t.r, &t.d, t.q, t.k, t.v,
                             t.o, t.lse) == ATTN_OK);
    if (st == ATTN_OK)
        CU_ASSERT(memcmp(s.o, t.o, (size_t)s.rows * 8 * sizeof *s.o) == 0);
    small_free(&t);
    /* Lets every rank's leftover requests complete before the free. */
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Comm_free(&comm);
    small_free(&s);
}

/* ---- the backward ------------------------------------------------------ */

/* attn_sdpa_ring_backward after attn_sdpa_ring, each rank's dq, dk and dv
 * against its rows of the double reference backward of the global problem
 * (tests/ref_bwd.c), with test_backward's tolerance: per element,
 * |got - want| <= TOL (M + 1) + TOL |want|, M the largest magnitude of the
 * reference tensor, TOL 1e-4 for F32 and 8e-3 for F16 (O, the inputs and
 * the gradients stored as binary16). */
#define BWD_TOL_F32 1e-4
#define BWD_TOL_F16 8e-3

static double *to_f64(const void *p, size_t n, int f16)
{
    double *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = val(p, i, f16);
    return x;
}

/* Elements of got (n, the local rows; halves when f16) off the reference
 * rows want; m the global reference's largest magnitude. */
static int grads_off(const void *got, const double *want, size_t n, double m,
                     int f16, double tol, double *worst)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(val(got, i, f16) - want[i]);
        if (!(e <= tol * (m + 1.0) + tol * fabs(want[i])))
            bad++;
        *worst = fmax(*worst, e);
    }
    return bad;
}

static double max_abs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* The backward's eight slices moved into strided buffers (strides_of's
 * mode: 1 BSHD, 2 padded rows; d_o in o's strides, dq, dk and dv in q's,
 * k's and v's); *g then points to them.  After the call, strided_back
 * moves dq, dk and dv back to their contiguous buffers and checks that
 * no gap byte of theirs changed. */
typedef struct bwd_strided {
    unsigned char *buf[8];
    size_t bytes[8];
} bwd_strided;

static const int BWD_T[8] = {0, 1, 2, 3, 3, 0, 1, 2}; /* q k v o d_o dq dk dv */

static void strided_make(bwd_strided *sb, int mode, const ring_case *k,
                         int rows, attn_sdpa_desc *d, attn_sdpa_grad *g)
{
    const size_t hs[4] = {(size_t)k->hq, (size_t)k->hkv, (size_t)k->hkv,
                          (size_t)k->hq};
    const size_t ws[4] = {(size_t)k->d, (size_t)k->d, (size_t)k->dv,
                          (size_t)k->dv};
    const size_t elem = k->f16 ? 2 : 4;
    int64_t *sts[4] = {d->q_strides, d->k_strides, d->v_strides, d->o_strides};
    const void *in[5] = {g->q, g->k, g->v, g->o, g->d_o};
    for (int t = 0; t < 4; t++)
        strides_of(mode, t, hs[t], (size_t)rows, ws[t], sts[t]);
    for (int i = 0; i < 8; i++) {
        const int t = BWD_T[i];
        sb->buf[i] = strided_buf((size_t)k->batch, hs[t], (size_t)rows, ws[t],
                                 elem, sts[t], &sb->bytes[i]);
        if (i < 5)
            move_strided((void *)(uintptr_t)in[i], sb->buf[i], hs[t],
                         (size_t)k->batch * hs[t], (size_t)rows, ws[t], elem,
                         sts[t], 1);
    }
    g->q = sb->buf[0];
    g->k = sb->buf[1];
    g->v = sb->buf[2];
    g->o = sb->buf[3];
    g->d_o = sb->buf[4];
    g->dq = sb->buf[5];
    g->dk = sb->buf[6];
    g->dv = sb->buf[7];
}

static int strided_back(bwd_strided *sb, const ring_case *k, int rows,
                        const attn_sdpa_desc *d, void *out[3])
{
    const size_t hs[4] = {(size_t)k->hq, (size_t)k->hkv, (size_t)k->hkv,
                          (size_t)k->hq};
    const size_t ws[4] = {(size_t)k->d, (size_t)k->d, (size_t)k->dv,
                          (size_t)k->dv};
    const size_t elem = k->f16 ? 2 : 4;
    const int64_t *sts[4] = {d->q_strides, d->k_strides, d->v_strides,
                             d->o_strides};
    int gaps_ok = 1;
    for (int i = 5; i < 8; i++) {
        const int t = BWD_T[i];
        const size_t outer = (size_t)k->batch * hs[t];
        move_strided(out[i - 5], sb->buf[i], hs[t], outer, (size_t)rows, ws[t],
                     elem, sts[t], 0);
        /* the rows GAP again: then the whole buffer must be GAP */
        unsigned char *gap =
            malloc(outer * (size_t)(rows ? rows : 1) * ws[t] * elem);
        memset(gap, GAP, outer * (size_t)(rows ? rows : 1) * ws[t] * elem);
        move_strided(gap, sb->buf[i], hs[t], outer, (size_t)rows, ws[t], elem,
                     sts[t], 1);
        for (size_t b = 0; b < sb->bytes[i]; b++)
            gaps_ok &= sb->buf[i][b] == GAP;
        free(gap);
    }
    for (int i = 0; i < 8; i++)
        free(sb->buf[i]);
    return gaps_ok;
}

static void run_bwd_case_in(const ring_case *k, int strided)
{
    float *w;
    attn_sdpa_desc d = case_desc(k, &w);
    const size_t bq = (size_t)k->batch * (size_t)k->hq,
                 bkv = (size_t)k->batch * (size_t)k->hkv, seq = (size_t)k->seq,
                 elem = k->f16 ? 2 : 4, D = (size_t)k->d, DV = (size_t)k->dv;
    void *q = fill(bq * seq * D, 1, k->f16);
    void *kk = fill(bkv * seq * D, 2, k->f16);
    void *v = fill(bkv * seq * DV, 3, k->f16);
    void *dout = fill(bq * seq * DV, 4, k->f16);
    int counts[8], rows;
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    attn_ring_desc r = case_ring(k, counts, &stats);
    void *ql = slice(&r, q, bq, D, elem, &rows);
    void *kl = slice(&r, kk, bkv, D, elem, &rows);
    void *vl = slice(&r, v, bkv, DV, elem, &rows);
    void *dol = slice(&r, dout, bq, DV, elem, &rows);
    const size_t R = rows ? (size_t)rows : 1;
    void *ol = malloc(R * bq * DV * elem);
    float *lsel = malloc(R * bq * sizeof(float));
    void *dql = malloc(R * bq * D * elem), *dkl = malloc(R * bkv * D * elem),
         *dvl = malloc(R * bkv * DV * elem);
    char what[400];
    attn_status st =
        attn_sdpa_ring(ctx, MPI_COMM_WORLD, &r, &d, ql, kl, vl, ol, lsel);
    snprintf(what, sizeof what, "%s (forward) on rank %d of %d: %s", k->name,
             rank, ranks, attn_ring_last_error());
    HARNESS_EXPECT(st == ATTN_OK, what);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    g.q = ql;
    g.k = kl;
    g.v = vl;
    g.o = ol;
    g.lse = lsel;
    g.d_o = dol;
    g.dq = dql;
    g.dk = dkl;
    g.dv = dvl;
    /* a key bias's gradient [batch, seq] and the additive score's weights'
     * [heads_q, head_dim], the whole of each on every rank */
    const size_t ndb = k->key_bias ? (size_t)k->batch * seq : 0,
                 ndw = k->additive ? (size_t)k->hq * D : 0;
    g.dbias = ndb ? malloc(ndb * sizeof(float)) : NULL;
    g.d_additive_w = ndw ? malloc(ndw * sizeof(float)) : NULL;
    stats = (attn_ring_stats)ATTN_RING_STATS_INIT;
    bwd_strided sb;
    attn_sdpa_desc ds = d;
    if (strided)
        strided_make(&sb, strided, k, rows, &ds, &g);
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &r, &ds, &g);
    snprintf(what, sizeof what, "%s (backward%s) on rank %d of %d: %s", k->name,
             strided ? ", strided" : "", rank, ranks, attn_ring_last_error());
    HARNESS_EXPECT(st == ATTN_OK, what);
    if (strided) {
        void *out[3] = {dql, dkl, dvl};
        HARNESS_EXPECT(strided_back(&sb, k, rows, &ds, out),
                       "strided dq, dk, dv: only their rows are written");
    }
    /* The reference of the global problem, its rows of this rank. */
    double *q8 = to_f64(q, bq * seq * D, k->f16),
           *k8 = to_f64(kk, bkv * seq * D, k->f16),
           *v8 = to_f64(v, bkv * seq * DV, k->f16),
           *do8 = to_f64(dout, bq * seq * DV, k->f16);
    double *rq = malloc(bq * seq * D * 8), *rk = malloc(bkv * seq * D * 8),
           *rv = malloc(bkv * seq * DV * 8);
    double *rdb = malloc((ndb + 1) * 8), *rdw = malloc((ndw + 1) * 8);
    CU_ASSERT_FATAL(ref_sdpa_backward_all_f64(&d, q8, k8, v8, do8, rq, rk, rv,
                                              ndb ? rdb : NULL,
                                              ndw ? rdw : NULL) == 0);
    double *rql = slice(&r, rq, bq, D, 8, &rows);
    double *rkl = slice(&r, rk, bkv, D, 8, &rows);
    double *rvl = slice(&r, rv, bkv, DV, 8, &rows);
    double wq = 0, wk = 0, wv = 0, wx = 0; /* wx: dbias, d additive_w */
    const double tol = k->f16 ? BWD_TOL_F16 : BWD_TOL_F32;
    int bad = 0;
    if (st == ATTN_OK) {
        bad += grads_off(dql, rql, (size_t)rows * bq * D,
                         max_abs(rq, bq * seq * D), k->f16, tol, &wq);
        bad += grads_off(dkl, rkl, (size_t)rows * bkv * D,
                         max_abs(rk, bkv * seq * D), k->f16, tol, &wk);
        bad += grads_off(dvl, rvl, (size_t)rows * bkv * DV,
                         max_abs(rv, bkv * seq * DV), k->f16, tol, &wv);
        /* float outputs from the same (for F16, rounded) O and inputs:
         * the storage's tolerance */
        if (ndb)
            bad += grads_off(g.dbias, rdb, ndb, max_abs(rdb, ndb), 0, tol, &wx);
        if (ndw)
            bad += grads_off(g.d_additive_w, rdw, ndw, max_abs(rdw, ndw), 0,
                             tol, &wx);
    }
    snprintf(what, sizeof what,
             "%s (backward) on rank %d of %d: %d values off (max |e| dq %g, "
             "dk %g, dv %g, dbias / d additive_w %g)",
             k->name, rank, ranks, bad, wq, wk, wv, wx);
    HARNESS_EXPECT(bad == 0, what);
    if (rank == ranks - 1) {
        printf("\n  backward %s, %d ranks: max |e| dq %.3g dk %.3g dv %.3g",
               k->name, ranks, wq, wk, wv);
        if (ndb + ndw)
            printf(" dbias / d additive_w %.3g", wx);
    }
    if (st == ATTN_OK)
        check_stats(k, &r, &stats);
    void *bufs[] = {w,   q,   kk,  v,    dout, ql,      kl,
                    vl,  dol, ol,  lsel, dql,  dkl,     dvl,
                    q8,  k8,  v8,  do8,  rq,   rk,      rv,
                    rql, rkl, rvl, rdb,  rdw,  g.dbias, g.d_additive_w};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static void run_bwd_case(const ring_case *k)
{
    run_bwd_case_in(k, 0);
}

/* Strided slices (each rank's own): BSHD, and rows padded, every tensor
 * of the backward in them; the gaps of dq, dk and dv untouched. */
static void test_backward_strided(void)
{
    run_strided_cases(run_bwd_case_in);
}

/* The forward's cases (contiguous, uneven with an empty rank, zig-zag,
 * GQA, kv_len, windows with a moved diagonal, key biases, F16, the
 * additive score) through the backward; dbias with each key bias and
 * d additive_w with each additive score. */
static void test_backward(void)
{
    static const ring_case c[] = {
        {"contiguous GQA", 2, 4, 2, 16, 12, 48, 0, 0, 0, ATTN_RING_CONTIGUOUS,
         0, NULL, 0, 0, NULL},
        {"contiguous causal seq 37", 1, 2, 2, 8, 8, 37, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 0, 0, NULL},
        {"uneven counts causal", 2, 2, 1, 8, 16, 41, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, NULL},
        {"zigzag causal GQA", 2, 4, 2, 16, 12, 48, 1, 0, 0, ATTN_RING_ZIGZAG, 0,
         NULL, 0, 0, NULL},
        {"zigzag (not causal)", 1, 4, 4, 16, 16, 48, 0, 0, 0, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
        {"kv_len (one batch item sees nothing)", 2, 2, 1, 8, 8, 40, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, kv_lens, 0, 0, NULL},
        {"kv_len causal zigzag", 3, 2, 2, 8, 8, 48, 1, 0, 0, ATTN_RING_ZIGZAG,
         0, kv_lens2, 0, 0, NULL},
        {"contiguous causal window 7", 2, 4, 2, 16, 12, 48, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 7, 0, NULL},
        {"contiguous causal window 1 (one step)", 1, 2, 1, 8, 8, 40, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 1, 0, NULL},
        {"uneven counts window 9 (not causal)", 2, 2, 1, 8, 16, 41, 0, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 9, 0, NULL},
        {"contiguous causal_offset -1 window 5", 1, 2, 2, 8, 8, 45, 1, 0, 0,
         ATTN_RING_CONTIGUOUS, 0, NULL, 5, -1, NULL},
        {"key bias zigzag causal", 3, 2, 1, 8, 8, 64, 1, 0, 0, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, key_bias},
        {"f16 zigzag causal GQA", 2, 4, 2, 16, 16, 48, 1, 1, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 0, 0, NULL},
        {"f16 key bias contiguous causal window 9 kv_len", 3, 2, 2, 16, 16, 64,
         1, 1, 0, ATTN_RING_CONTIGUOUS, 0, kv_lens3, 9, 0, key_bias},
        {"additive score causal", 1, 2, 1, 8, 8, 30, 1, 0, 1, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
        {"additive score key bias uneven (not causal)", 2, 2, 1, 8, 8, 64, 0, 0,
         1, ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, key_bias},
    };
    fill_key_bias();
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_bwd_case(&c[i]);
}

/* A small backward problem: the forward's slices of small_make, its o and
 * lse from attn_sdpa_ring, d_o, and dq, dk, dv preset to a sentinel. */
typedef struct small_bwd {
    small s;
    float *d_o, *dq, *dk, *dv;
    attn_sdpa_grad g;
} small_bwd;

static void small_bwd_make(small_bwd *b)
{
    small_make(&b->s, 1);
    CU_ASSERT_FATAL(attn_sdpa_ring(ctx, MPI_COMM_WORLD, &b->s.r, &b->s.d,
                                   b->s.q, b->s.k, b->s.v, b->s.o,
                                   b->s.lse) == ATTN_OK);
    size_t n = (size_t)b->s.rows * 2 * 4 + 1;
    b->d_o = fill(n, 8, 0);
    b->dq = malloc(n * sizeof(float));
    b->dk = malloc(n * sizeof(float));
    b->dv = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        b->dq[i] = b->dk[i] = b->dv[i] = 1234.5f;
    b->g = (attn_sdpa_grad)ATTN_SDPA_GRAD_INIT;
    b->g.q = b->s.q;
    b->g.k = b->s.k;
    b->g.v = b->s.v;
    b->g.o = b->s.o;
    b->g.lse = b->s.lse;
    b->g.d_o = b->d_o;
    b->g.dq = b->dq;
    b->g.dk = b->dk;
    b->g.dv = b->dv;
}

static void small_bwd_free(small_bwd *b)
{
    small_free(&b->s);
    free(b->d_o);
    free(b->dq);
    free(b->dk);
    free(b->dv);
}

static void expect_bwd_failed(const small_bwd *b, attn_status st,
                              attn_status want, const char *test)
{
    char what[600];
    snprintf(what, sizeof what, "%s, rank %d of %d: status %s (%s)", test, rank,
             ranks, attn_status_string(st), attn_ring_last_error());
    HARNESS_EXPECT(st == want, what);
    HARNESS_EXPECT(attn_ring_last_error()[0] != '\0', what);
    int same = 1;
    for (size_t i = 0; i < (size_t)b->s.rows * 8; i++)
        same &=
            b->dq[i] == 1234.5f && b->dk[i] == 1234.5f && b->dv[i] == 1234.5f;
    HARNESS_EXPECT(same, what);
}

static attn_status faulty_bwd(attn_context *c, const attn_sdpa_desc *d,
                              const attn_sdpa_grad *g, void *user)
{
    fault *f = user;
    if (rank == f->rank && ++f->calls == f->call)
        return ATTN_ERR_DEVICE;
    return attn_sdpa_backward(c, d, g);
}

/* What the backward refuses, on one rank or on all, and a block failing
 * mid-ring: every rank returns the status, dq, dk and dv untouched. */
static void test_backward_failures(void)
{
    small_bwd b;
    small_bwd_make(&b);
    /* g NULL on the last rank */
    attn_status st = attn_sdpa_ring_backward(
        ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, rank == ranks - 1 ? NULL : &b.g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "g NULL on one rank");
    /* the ring NULL on the last rank: through the agreement, at once */
    double t0 = MPI_Wtime();
    st = attn_sdpa_ring_backward(
        ctx, MPI_COMM_WORLD, rank == ranks - 1 ? NULL : &b.s.r, &b.s.d, &b.g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT,
                      "ring NULL on one rank");
    HARNESS_EXPECT(MPI_Wtime() - t0 < 5.0, "backward, ring NULL: no wait");
    /* lse NULL on rank 0 */
    attn_sdpa_grad g = b.g;
    if (rank == 0)
        g.lse = NULL;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "lse NULL on rank 0");
    /* dq over q on the last rank (where it has rows) */
    g = b.g;
    if (rank == ranks - 1 && b.s.rows > 0)
        g.dq = b.s.q;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &g);
    if (b.s.rows > 0 || ranks > 1)
        expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "dq over q");
    /* dbias without a bias; asked on one rank only; over the key bias */
    float dbias[24], key_bias0[24] = {0};
    g = b.g;
    g.dbias = dbias;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "dbias, no bias");
    attn_sdpa_desc d = b.s.d;
    d.mask.bias = key_bias0;
    d.mask.bias_kind = ATTN_BIAS_KEY;
    g.dbias = rank == 0 ? dbias : NULL;
    if (ranks > 1) { /* (one rank: a valid call, which writes) */
        st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &d, &g);
        expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT,
                          "dbias asked on rank 0 only");
    }
    g.dbias = key_bias0;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &d, &g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "dbias over the bias");
    /* d_additive_w without the additive score */
    g = b.g;
    g.d_additive_w = dbias;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT,
                      "d_additive_w, dot score");
    g = b.g;
    /* q's strides put two heads on the same rows: dq, written through
     * them, would share elements (on the last rank) */
    d = b.s.d;
    if (rank == ranks - 1) {
        d.q_strides[0] = (int64_t)b.s.rows * 4;
        d.q_strides[1] = 0;
        d.q_strides[2] = 4;
    }
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &d, &b.g);
    if (b.s.rows > 0 || ranks > 1)
        expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT,
                          "dq's rows would share elements");
    /* a struct_size of no layout */
    g = b.g;
    g.struct_size = 12;
    st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &g);
    expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT, "struct_size 12");
    /* the forward on rank 0, the backward on the others */
    if (ranks > 1) {
        float *o2 = malloc(((size_t)b.s.rows * 8 + 1) * sizeof *o2);
        if (rank == 0)
            st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, b.s.q,
                                b.s.k, b.s.v, o2, NULL);
        else
            st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d,
                                         &b.g);
        expect_bwd_failed(&b, st, ATTN_ERR_INVALID_ARGUMENT,
                          "a forward on rank 0, backwards elsewhere");
        free(o2);
    }
    /* the last rank's second block fails (its first with one rank) */
    fault f = {ranks - 1, ranks > 1 ? 2 : 1, 0, 0};
    st = ring_run_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d, &b.g,
                           faulty_bwd, &f, NULL);
    expect_bwd_failed(&b, st, ATTN_ERR_DEVICE, "block failing mid-ring");
    HARNESS_EXPECT(!strstr(attn_ring_last_error(), "timeout"),
                   attn_ring_last_error());
    /* and the communicator works for the next call, here one built with
     * attn_sdpa_grad's first layout: the bytes where dbias now stands are
     * not read */
    g = b.g;
    g.struct_size = offsetof(attn_sdpa_grad, dbias);
    g.dbias = dbias;
    CU_ASSERT(attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &b.s.r, &b.s.d,
                                      &g) == ATTN_OK);
    small_bwd_free(&b);
}

static void test_layout_queries(void)
{
    attn_ring_desc r = ATTN_RING_DESC_INIT;
    r.seq = 10;
    r.layout = ATTN_RING_ZIGZAG;
    int rows, first, g;
    /* 10 rows over 2 ranks in 4 chunks of 3, 3, 2, 2: rank 0 holds chunks
     * 0 and 3 (rows 0-2 and 8-9), rank 1 chunks 1 and 2 (rows 3-7). */
    CU_ASSERT(attn_ring_rows(&r, 2, 0, &rows, &first) == ATTN_OK);
    CU_ASSERT(rows == 5 && first == 0);
    CU_ASSERT(attn_ring_global_row(&r, 2, 0, 3, &g) == ATTN_OK && g == 8);
    CU_ASSERT(attn_ring_rows(&r, 2, 1, &rows, &first) == ATTN_OK);
    CU_ASSERT(rows == 5 && first == 3);
    CU_ASSERT(attn_ring_global_row(&r, 2, 1, 4, &g) == ATTN_OK && g == 7);
    CU_ASSERT(attn_ring_global_row(&r, 2, 1, 5, &g) ==
              ATTN_ERR_INVALID_ARGUMENT);
    int counts[3] = {4, 0, 5};
    r.layout = ATTN_RING_ZIGZAG;
    r.counts = counts;
    CU_ASSERT(attn_ring_rows(&r, 3, 0, &rows, &first) ==
              ATTN_ERR_INVALID_ARGUMENT);
    r.layout = ATTN_RING_CONTIGUOUS;
    CU_ASSERT(attn_ring_rows(&r, 3, 0, &rows, &first) ==
              ATTN_ERR_INVALID_ARGUMENT); /* sums to 9, not 10 */
    counts[1] = 1;
    CU_ASSERT(attn_ring_rows(&r, 3, 2, &rows, &first) == ATTN_OK);
    CU_ASSERT(rows == 5 && first == 5);
    CU_ASSERT(attn_ring_rows(&r, 3, 3, &rows, &first) ==
              ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_ring_rows(NULL, 3, 0, &rows, &first) ==
              ATTN_ERR_INVALID_ARGUMENT);
}

static void test_half_conversion(void)
{
    /* Every half survives the round trip (NaN stays NaN). */
    int bad = 0;
    for (unsigned h = 0; h < 65536; h++) {
        float f = ring_half_to_float((uint16_t)h);
        uint16_t back = ring_float_to_half(f);
        if (f != f ? (back & 0x7c00u) != 0x7c00u || !(back & 0x3ffu)
                   : back != h)
            bad++;
    }
    CU_ASSERT(bad == 0);
    CU_ASSERT(ring_float_to_half(1.0f + 0x1p-11f) == 0x3c00); /* tie: even */
    CU_ASSERT(ring_float_to_half(1.0f + 0x1.8p-11f) == 0x3c01);
    CU_ASSERT(ring_float_to_half(65520.0f) == 0x7c00);
    CU_ASSERT(ring_float_to_half(0x1p-25f) == 0x0000); /* tie: even, 0 */
    CU_ASSERT(ring_float_to_half(0x1.8p-25f) == 0x0001);
}

static int suite_init(void)
{
    attn_options o = ATTN_OPTIONS_INIT;
    harness_options(&o);
    if (!getenv("ATTN_TEST_DEVICE"))
        o.device = "native";
    o.threads = 1; /* ranks share this machine's cores */
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return 1;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    if (rank == 0 && attn_context_device(ctx, &info) == ATTN_OK)
        printf("ring suite on %s (%s)\n", info.name,
               info.kind == ATTN_DEVICE_NATIVE ? "native" : "OpenCL");
    return 0;
}

static int suite_clean(void)
{
    attn_context_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    /* --single: MPI_THREAD_SINGLE, so the ring computes on the calling
     * thread; else FUNNELED, each step's blocks on a thread of their own. */
    int single = argc > 1 && strcmp(argv[1], "--single") == 0, provided;
    if (MPI_Init_thread(&argc, &argv,
                        single ? MPI_THREAD_SINGLE : MPI_THREAD_FUNNELED,
                        &provided) != MPI_SUCCESS)
        return 1;
    if (!single && provided < MPI_THREAD_FUNNELED)
        printf("test_ring: MPI gives no MPI_THREAD_FUNNELED (%d)\n", provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (ranks > 8) {
        printf("test_ring: at most 8 ranks\n");
        MPI_Finalize();
        return 1;
    }
    static const harness_test tests[] = {
        {"layout queries", test_layout_queries},
        {"half conversion", test_half_conversion},
        {"contiguous slices", test_contiguous},
        {"zig-zag slices", test_zigzag},
        {"kv_len", test_kv_len},
        {"sliding windows", test_window},
        {"key bias", test_key_bias},
        {"f16 and the additive score", test_f16_additive},
        {"strided slices", test_strided},
        {"bad input on one rank", test_bad_input_on_one_rank},
        {"descriptors differ", test_descriptors_differ},
        {"struct sizes", test_struct_sizes},
        {"strides refused", test_bad_strides},
        {"failure mid-ring", test_failure_mid_ring},
        {"stalled rank times out", test_stalled_rank_times_out},
        {"backward", test_backward},
        {"backward failures", test_backward_failures},
        {"backward, strided slices", test_backward_strided},
        {NULL, NULL}};
    int rc = harness_main("ring", suite_init, suite_clean, tests);
    MPI_Finalize();
    return rc;
}
