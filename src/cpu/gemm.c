/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C = A B^T (+ bias) for the projections of the multi-head layer, blocked in
 * the GotoBLAS / BLIS way; compiled once per instruction set, and the
 * copy's own (AVX-512, AVX2 + FMA or plain C) micro-kernel and packing are
 * chosen below by what its flags enable.
 *
 * The vector dimension is n (the columns of C, contiguous in memory), so B
 * (the nn.Linear weight, [n, k]) is packed once per call into panels of
 * GEMM_NR columns stored [k][GEMM_NR]: one aligned row of a panel is the
 * GEMM_NR / lanes vectors a k-step of the micro-kernel needs.  A is copied
 * per work item and depth block into rows of a fixed stride (GEMM_AST), from
 * which the micro-kernel broadcasts GEMM_MR values per k-step.  It keeps its
 * GEMM_MR x GEMM_NR tile of C in registers for a whole depth block:
 * GEMM_MR * GEMM_NR / lanes independent FMA chains, enough to cover the FMA
 * latency on both ports, with fewer loads than FMAs.
 *
 * Cache use: a sliver of GEMM_MR rows of packed A (14 KiB for AVX-512) stays
 * in L1 while the micro-kernel walks along the KC x NC block of packed B,
 * which stays in L2 (1 MiB) for all the slivers of the row block; measured
 * a few per cent faster than keeping the B panel in L1 and walking down A.
 * Work items are (row block, column block) pairs; the column blocks are cut
 * finer only when there are too few row blocks to keep every worker busy
 * (cheap: the copy of A is all that is repeated).
 *
 * Padding rows of packed A and padding columns of packed B are zero, so
 * edge tiles run the same kernel; only their loads and stores of C are
 * masked.  The first depth block starts from the bias (added exactly once),
 * later ones from the partial sums already in C.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_impl.h"

#if defined(__AVX512F__)
#include <immintrin.h>
/* 14 x 2 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32 regs. */
#define GEMM_MR 14
#define GEMM_NR 32
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* 6 x 2 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16 regs. */
#define GEMM_MR 6
#define GEMM_NR 16
#else
/* Plain C for the auto-vectorizer: 12 accumulator vectors of 4 fit the 16
 * SSE registers of baseline x86-64 (and the 32 of NEON). */
#define GEMM_MR 6
#define GEMM_NR 8
#endif

#define GEMM_KC    256            /* depth block */
#define GEMM_MC    (GEMM_MR * 12) /* most rows per block */
#define GEMM_NC    1024 /* most columns per block: KC x NC of B fits in L2 */
#define GEMM_AST   (GEMM_KC + 16) /* row stride of packed A, in floats */
#define GEMM_ALIGN 64

typedef struct gemm_job {
    int m, n, k;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    const float *bias;
    float *c;
    size_t ldc;
    float *bp;      /* packed B: ceil(n / NR) panels of [k][NR] */
    float *ap;      /* packed A: mc rows of GEMM_AST floats per worker */
    int kc;         /* depth block */
    int mc, nc;     /* rows and columns per work item (nc % NR == 0) */
    int nblocks;    /* column blocks per row block */
    int pack_group; /* B panels packed per packing item */
} gemm_job;

static inline int imin(int x, int y)
{
    return x < y ? x : y;
}

static inline int round_up(int x, int to)
{
    return (x + to - 1) / to * to;
}

/* ---- micro-kernels -------------------------------------------------------
 * C[mr, nr] = init + sum_p ap[r][p] * bp[p][j] over kc steps, where init is
 * C itself when load_c, else bias[j] (0 when bias is NULL).  ap holds
 * GEMM_MR packed rows GEMM_AST floats apart, bp a packed panel
 * [kc][GEMM_NR] (64-byte aligned); rows >= mr and columns >= nr are
 * computed but never touch C. */

#if defined(__AVX512F__)

#define GEMM_NV (GEMM_NR / 16)

static void kernel(int kc, const float *ap, const float *bp, float *c,
                   size_t ldc, int mr, int nr, const float *bias, int load_c)
{
    __m512 acc[GEMM_MR][GEMM_NV];
    __mmask16 mask[GEMM_NV];

#pragma GCC unroll 8
    for (int v = 0; v < GEMM_NV; v++) {
        int left = nr - 16 * v;
        mask[v] = left >= 16  ? (__mmask16)0xffff
                  : left <= 0 ? (__mmask16)0
                              : (__mmask16)((1u << left) - 1);
    }
    if (load_c) {
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++)
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                acc[r][v] = r < mr ? _mm512_maskz_loadu_ps(mask[v],
                                                           c + r * ldc + 16 * v)
                                   : _mm512_setzero_ps();
    } else {
#pragma GCC unroll 8
        for (int v = 0; v < GEMM_NV; v++) {
            __m512 init = bias ? _mm512_maskz_loadu_ps(mask[v], bias + 16 * v)
                               : _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int r = 0; r < GEMM_MR; r++)
                acc[r][v] = init;
        }
    }
    for (int p = 0; p < kc; p++) {
        __m512 bv[GEMM_NV];
#pragma GCC unroll 8
        for (int v = 0; v < GEMM_NV; v++)
            bv[v] = _mm512_load_ps(bp + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++) {
            __m512 av = _mm512_set1_ps(ap[r * GEMM_AST]);
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
        ap++;
        bp += GEMM_NR;
    }
#pragma GCC unroll 16
    for (int r = 0; r < GEMM_MR; r++)
        if (r < mr)
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask[v], acc[r][v]);
}

#elif defined(__AVX2__) && defined(__FMA__)

#define GEMM_NV (GEMM_NR / 8)

static void kernel(int kc, const float *ap, const float *bp, float *c,
                   size_t ldc, int mr, int nr, const float *bias, int load_c)
{
    __m256 acc[GEMM_MR][GEMM_NV];
    __m256i mask[GEMM_NV];
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

    /* Lane j of vector v is live when 8 v + j < nr. */
#pragma GCC unroll 8
    for (int v = 0; v < GEMM_NV; v++)
        mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8 * v), lane);
    if (load_c) {
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++)
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                acc[r][v] =
                    r < mr ? _mm256_maskload_ps(c + r * ldc + 8 * v, mask[v])
                           : _mm256_setzero_ps();
    } else {
#pragma GCC unroll 8
        for (int v = 0; v < GEMM_NV; v++) {
            __m256 init = bias ? _mm256_maskload_ps(bias + 8 * v, mask[v])
                               : _mm256_setzero_ps();
#pragma GCC unroll 16
            for (int r = 0; r < GEMM_MR; r++)
                acc[r][v] = init;
        }
    }
    for (int p = 0; p < kc; p++) {
        __m256 bv[GEMM_NV];
#pragma GCC unroll 8
        for (int v = 0; v < GEMM_NV; v++)
            bv[v] = _mm256_load_ps(bp + 8 * v);
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++) {
            __m256 av = _mm256_broadcast_ss(ap + r * GEMM_AST);
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
        }
        ap++;
        bp += GEMM_NR;
    }
#pragma GCC unroll 16
    for (int r = 0; r < GEMM_MR; r++)
        if (r < mr)
#pragma GCC unroll 8
            for (int v = 0; v < GEMM_NV; v++)
                _mm256_maskstore_ps(c + r * ldc + 8 * v, mask[v], acc[r][v]);
}

#else

static void kernel(int kc, const float *ap, const float *bp, float *c,
                   size_t ldc, int mr, int nr, const float *bias, int load_c)
{
    float acc[GEMM_MR][GEMM_NR];

    for (int r = 0; r < GEMM_MR; r++)
        for (int j = 0; j < GEMM_NR; j++)
            acc[r][j] = r >= mr || j >= nr ? 0.0f
                        : load_c           ? c[r * ldc + j]
                        : bias             ? bias[j]
                                           : 0.0f;
    for (int p = 0; p < kc; p++) {
#pragma GCC unroll 16
        for (int r = 0; r < GEMM_MR; r++) {
            float av = ap[r * GEMM_AST];
#pragma GCC unroll 16
            for (int j = 0; j < GEMM_NR; j++)
                acc[r][j] += av * bp[j];
        }
        ap++;
        bp += GEMM_NR;
    }
    for (int r = 0; r < mr; r++)
        memcpy(c + r * ldc, acc[r], (size_t)nr * sizeof(float));
}

#endif

/* ---- packing -------------------------------------------------------------
 * Both packings are transposes: B rows and A rows are contiguous in k, the
 * packed panels are contiguous across columns (rows) for each k. */

#if defined(__AVX512F__)

/* out[c] = column c of the 16 x 16 block in rows in[0..15]: unpacks pair
 * the rows, shuffle_ps gathers 4 rows per 128-bit lane, and two rounds of
 * shuffle_f32x4 put the lanes of the 4 row groups together. */
static inline void transpose16(const __m512 in[16], __m512 out[16])
{
    __m512 t[16], u[16];

    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(in[i], in[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(in[i], in[i + 1]);
    }
    /* u[4 g + c], lane l = column 4 l + c of rows 4 g .. 4 g + 3. */
    for (int g = 0; g < 16; g += 4) {
        u[g] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[g + 2] =
            _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[g + 3] =
            _mm512_shuffle_ps(t[g + 1], t[g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) {
        __m512 x0 =
            _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 x1 =
            _mm512_shuffle_f32x4(u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
        __m512 y0 =
            _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
        __m512 y1 =
            _mm512_shuffle_f32x4(u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
        out[c] = _mm512_shuffle_f32x4(x0, y0, _MM_SHUFFLE(2, 0, 2, 0));
        out[8 + c] = _mm512_shuffle_f32x4(x0, y0, _MM_SHUFFLE(3, 1, 3, 1));
        out[4 + c] = _mm512_shuffle_f32x4(x1, y1, _MM_SHUFFLE(2, 0, 2, 0));
        out[12 + c] = _mm512_shuffle_f32x4(x1, y1, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* Loads depths p0 .. p0 + 15 (masked by pm) of the first `rows` of 16 rows
 * of src, zero past them, and transposes them. */
static inline void load_transposed(const float *src, size_t ld, int rows,
                                   __mmask16 pm, __m512 out[16])
{
    __m512 in[16];

    for (int i = 0; i < 16; i++)
        in[i] = i < rows ? _mm512_maskz_loadu_ps(pm, src + (size_t)i * ld)
                         : _mm512_setzero_ps();
    transpose16(in, out);
}

static inline __mmask16 depth_mask(int pl)
{
    return pl >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << pl) - 1);
}

/* dst[p][j] = b[j][p] for the nr <= GEMM_NR rows of b, zero for j >= nr. */
static void pack_b_panel(const float *b, size_t ldb, int nr, int k, float *dst)
{
    for (int p0 = 0; p0 < k; p0 += 16) {
        int pl = imin(16, k - p0);
        for (int h = 0; h < GEMM_NR; h += 16) {
            __m512 col[16];
            load_transposed(b + (size_t)h * ldb + (size_t)p0, ldb, nr - h,
                            depth_mask(pl), col);
            for (int q = 0; q < pl; q++)
                _mm512_store_ps(dst + (size_t)(p0 + q) * GEMM_NR + h, col[q]);
        }
    }
}

#else

/* dst[p][j] = b[j][p] for the nr <= GEMM_NR rows of b, zero for j >= nr.
 * Blocks of 8 depths keep the reads sequential per row and the writes
 * within a few lines. */
static void pack_b_panel(const float *b, size_t ldb, int nr, int k, float *dst)
{
    for (int p0 = 0; p0 < k; p0 += 8) {
        int pl = imin(8, k - p0);
        float *d = dst + (size_t)p0 * GEMM_NR;
        for (int j = 0; j < nr; j++) {
            const float *s = b + (size_t)j * ldb + (size_t)p0;
            for (int q = 0; q < pl; q++)
                d[q * GEMM_NR + j] = s[q];
        }
        for (int q = 0; q < pl; q++)
            for (int j = nr; j < GEMM_NR; j++)
                d[q * GEMM_NR + j] = 0.0f;
    }
}

#endif

/* Copies rows x kc of a into micro-panels of GEMM_MR rows GEMM_AST floats
 * apart; the rows past the end of the last micro-panel are zero.  A plain
 * copy is enough because the kernel broadcasts from the rows in place: the
 * fixed row stride makes each row a constant offset from one pointer, and
 * its odd number of cache lines spreads the rows over the L1 sets (rows of
 * a itself may be 4 KiB apart and all fall into one set). */
static void pack_a_block(const float *a, size_t lda, int rows, int kc,
                         float *dst)
{
    int padded = round_up(rows, GEMM_MR);

    for (int r = 0; r < padded; r++, dst += GEMM_AST) {
        if (r < rows)
            memcpy(dst, a + (size_t)r * lda, (size_t)kc * sizeof(float));
        else
            memset(dst, 0, (size_t)kc * sizeof(float));
    }
}

static void pack_b_item(void *arg, size_t item, int worker)
{
    const gemm_job *g = arg;
    int panels = (g->n + GEMM_NR - 1) / GEMM_NR;
    int first = (int)item * g->pack_group;
    int last = imin(first + g->pack_group, panels);
    (void)worker;
    for (int jp = first; jp < last; jp++) {
        int j0 = jp * GEMM_NR;
        pack_b_panel(g->b + (size_t)j0 * g->ldb, g->ldb,
                     imin(GEMM_NR, g->n - j0), g->k,
                     g->bp + (size_t)jp * GEMM_NR * (size_t)g->k);
    }
}

/* ---- blocked product ----------------------------------------------------- */

static void gemm_item(void *arg, size_t item, int worker)
{
    const gemm_job *g = arg;
    int i0 = (int)(item / (size_t)g->nblocks) * g->mc;
    int j0 = (int)(item % (size_t)g->nblocks) * g->nc;
    int rows = imin(g->mc, g->m - i0), cols = imin(g->nc, g->n - j0);
    float *ap = g->ap + (size_t)worker * (size_t)g->mc * GEMM_AST;
    const float *bias = g->bias ? g->bias + j0 : NULL;
    const float *bp0 = g->bp + (size_t)(j0 / GEMM_NR) * GEMM_NR * (size_t)g->k;

    for (int p0 = 0; p0 < g->k; p0 += g->kc) {
        int kc = imin(g->kc, g->k - p0);
        pack_a_block(g->a + (size_t)i0 * g->lda + (size_t)p0, g->lda, rows, kc,
                     ap);
        for (int i = 0; i < rows; i += GEMM_MR) {
            float *ci = g->c + (size_t)(i0 + i) * g->ldc + (size_t)j0;
            const float *bpan = bp0 + (size_t)p0 * GEMM_NR;
            for (int j = 0; j < cols; j += GEMM_NR) {
                kernel(kc, ap + (size_t)i * GEMM_AST, bpan, ci + j, g->ldc,
                       imin(GEMM_MR, rows - i), imin(GEMM_NR, cols - j),
                       bias ? bias + j : NULL, p0 > 0);
                bpan += (size_t)GEMM_NR * (size_t)g->k;
            }
        }
    }
}

/* ---- few rows ------------------------------------------------------------
 * With a handful of rows (one token at a time) packing B would cost as much
 * as the product, so each entry is a dot product of two rows, which are
 * contiguous in k.  The 32 partial sums are spelled out because the
 * vectorizer may not reassociate a single sum on its own, and they give it
 * independent chains to hide the add latency. */

#define GEMM_FEW_ROWS 4
#define GEMM_FEW_COLS 32 /* columns per work item */

static float dot(const float *x, const float *y, int k)
{
    float s[32] = {0};
    int p = 0;

    for (; p + 32 <= k; p += 32)
        for (int q = 0; q < 32; q++)
            s[q] += x[p + q] * y[p + q];
    for (int q = 0; p < k; p++, q++)
        s[q] += x[p] * y[p];
    for (int w = 16; w > 0; w /= 2)
        for (int q = 0; q < w; q++)
            s[q] += s[q + w];
    return s[0];
}

static void few_rows_item(void *arg, size_t item, int worker)
{
    const gemm_job *g = arg;
    int j0 = (int)item * GEMM_FEW_COLS;
    int j1 = imin(j0 + GEMM_FEW_COLS, g->n);
    (void)worker;
    for (int j = j0; j < j1; j++) {
        const float *bj = g->b + (size_t)j * g->ldb;
        for (int i = 0; i < g->m; i++)
            g->c[(size_t)i * g->ldc + (size_t)j] =
                (g->bias ? g->bias[j] : 0.0f) +
                dot(g->a + (size_t)i * g->lda, bj, g->k);
    }
}

/* k == 0: the empty sums leave only the bias. */
static void fill_bias(int m, int n, const float *bias, float *c, size_t ldc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[(size_t)i * ldc + (size_t)j] = bias ? bias[j] : 0.0f;
}

attn_status attn_cpu_gemm_nt(attn_pool *p, int m, int n, int k, const float *a,
                             size_t lda, const float *b, size_t ldb,
                             const float *bias, float *c, size_t ldc)
{
    int threads = attn_pool_threads(p);
    int panels, mblocks, npanels_blk;
    size_t bp_len, ap_len, bytes;
    float *buf;
    gemm_job g;

    if (m <= 0 || n <= 0)
        return ATTN_OK;
    if (k <= 0) {
        fill_bias(m, n, bias, c, ldc);
        return ATTN_OK;
    }
    g.m = m;
    g.n = n;
    g.k = k;
    g.a = a;
    g.lda = lda;
    g.b = b;
    g.ldb = ldb;
    g.bias = bias;
    g.c = c;
    g.ldc = ldc;
    if (m <= GEMM_FEW_ROWS) {
        attn_pool_run(p, (size_t)((n + GEMM_FEW_COLS - 1) / GEMM_FEW_COLS),
                      few_rows_item, &g);
        return ATTN_OK;
    }

    /* Depth blocks of equal size, so that the last one is not a sliver. */
    g.kc = (k + GEMM_KC - 1) / GEMM_KC;
    g.kc = (k + g.kc - 1) / g.kc;
    /* Row blocks of equal size, rounded to whole micro-panels. */
    mblocks = (m + GEMM_MC - 1) / GEMM_MC;
    g.mc = round_up((m + mblocks - 1) / mblocks, GEMM_MR);
    mblocks = (m + g.mc - 1) / g.mc;
    /* Split the columns until there are about 4 items per worker, so that
     * the dynamic hand-out evens out uneven blocks. */
    panels = (n + GEMM_NR - 1) / GEMM_NR;
    npanels_blk = imin(panels, GEMM_NC / GEMM_NR);
    while (npanels_blk > 1 &&
           (size_t)mblocks *
                   (size_t)((panels + npanels_blk - 1) / npanels_blk) <
               4 * (size_t)threads)
        npanels_blk = (npanels_blk + 1) / 2;
    g.nc = npanels_blk * GEMM_NR;
    g.nblocks = (panels + npanels_blk - 1) / npanels_blk;
    g.pack_group = imin(4, panels);

    bp_len = (size_t)panels * GEMM_NR * (size_t)k;
    ap_len = (size_t)g.mc * GEMM_AST;
    bytes = (bp_len + ap_len * (size_t)threads) * sizeof(float);
    bytes = (bytes + GEMM_ALIGN - 1) / GEMM_ALIGN * GEMM_ALIGN;
    buf = aligned_alloc(GEMM_ALIGN, bytes);
    if (!buf)
        return ATTN_ERR_OUT_OF_MEMORY;

    g.bp = buf;
    g.ap = buf + bp_len; /* only broadcast from: needs no alignment */
    attn_pool_run(p, (size_t)((panels + g.pack_group - 1) / g.pack_group),
                  pack_b_item, &g);
    attn_pool_run(p, (size_t)mblocks * (size_t)g.nblocks, gemm_item, &g);
    free(buf);
    return ATTN_OK;
}
