/*
 * C = A B^T (+ bias) for the projections of the multi-head layer.  B (the
 * nn.Linear weight, [n, k]) is transposed once into [k, n] so that the inner
 * loop is a broadcast-FMA over a contiguous panel of columns, which the
 * compiler vectorizes without reassociating any sum.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_impl.h"

#define GEMM_NR 64 /* columns per panel: four 16-float vectors */
#define GEMM_MR 4  /* rows sharing each panel load */
#define GEMM_MB 32 /* rows per work item */

typedef struct gemm_job {
    int m, n, k, panels;
    const float *a;
    size_t lda;
    const float *bt; /* [k][n] */
    const float *bias;
    float *c;
    size_t ldc;
} gemm_job;

/* rows x nr block of C; nr == GEMM_NR lets the compiler fix the trip count. */
static inline void block(const gemm_job *g, int i0, int rows, int j0, int nr)
{
    float acc[GEMM_MR][GEMM_NR];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nr; j++)
            acc[r][j] = g->bias ? g->bias[j0 + j] : 0.0f;
    for (int p = 0; p < g->k; p++) {
        const float *bp = g->bt + (size_t)p * (size_t)g->n + j0;
        for (int r = 0; r < rows; r++) {
            float av = g->a[(size_t)(i0 + r) * g->lda + (size_t)p];
            for (int j = 0; j < nr; j++)
                acc[r][j] += av * bp[j];
        }
    }
    for (int r = 0; r < rows; r++)
        memcpy(g->c + (size_t)(i0 + r) * g->ldc + (size_t)j0, acc[r],
               (size_t)nr * sizeof(float));
}

static void gemm_item(void *arg, size_t item, int worker)
{
    const gemm_job *g = arg;
    int i_end, j0 = (int)(item % (size_t)g->panels) * GEMM_NR;
    int i0 = (int)(item / (size_t)g->panels) * GEMM_MB;
    int nr = g->n - j0 < GEMM_NR ? g->n - j0 : GEMM_NR;
    (void)worker;
    i_end = i0 + GEMM_MB < g->m ? i0 + GEMM_MB : g->m;
    for (int i = i0; i < i_end; i += GEMM_MR) {
        int rows = i_end - i < GEMM_MR ? i_end - i : GEMM_MR;
        if (rows == GEMM_MR && nr == GEMM_NR)
            block(g, i, GEMM_MR, j0, GEMM_NR);
        else
            block(g, i, rows, j0, nr);
    }
}

attn_status attn_cpu_gemm_nt(attn_pool *p, int m, int n, int k,
                             const float *a, size_t lda, const float *b,
                             size_t ldb, const float *bias, float *c,
                             size_t ldc)
{
    gemm_job g;
    float *bt = malloc((size_t)k * (size_t)n * sizeof(float));
    if (!bt)
        return ATTN_ERR_OUT_OF_MEMORY;
    for (int j = 0; j < n; j++)
        for (int q = 0; q < k; q++)
            bt[(size_t)q * (size_t)n + (size_t)j] = b[(size_t)j * ldb + q];
    g.m = m;
    g.n = n;
    g.k = k;
    g.panels = (n + GEMM_NR - 1) / GEMM_NR;
    g.a = a;
    g.lda = lda;
    g.bt = bt;
    g.bias = bias;
    g.c = c;
    g.ldc = ldc;
    attn_pool_run(p, (size_t)((m + GEMM_MB - 1) / GEMM_MB) * (size_t)g.panels,
                  gemm_item, &g);
    free(bt);
    return ATTN_OK;
}
