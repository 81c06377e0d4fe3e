/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Causal self-attention over a sequence spread across MPI ranks
 * (libattn_mpi, docs/MPI.md), forward and backward.  Each rank makes only
 * its own rows of Q, K, V and dL/dO (the zig-zag layout: rank r holds
 * chunks r and 2P-1-r of 2P), runs attn_sdpa_ring, then
 * attn_sdpa_ring_backward, and checks its rows of O, dQ, dK and dV
 * against the single-process attn_sdpa and attn_sdpa_backward of the
 * whole sequence.
 *
 *   mpiexec -n 4 ./attn-ring-example
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <attn/attn_mpi.h>

enum { HEADS = 4, KV_HEADS = 2, DIM = 32, SEQ = 256 };

/* Element c of row `row` of head h of tensor `which`: any rank can make
 * any row without the others. */
static float value(int which, int h, int row, int c)
{
    unsigned x = (unsigned)(which * 7919 + h * 104729 + row * 613 + c * 31);
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x & 0xffff) / 32768.0f - 1.0f;
}

/* The largest |local - global| over this rank's rows of a [heads, rows,
 * DIM] tensor, global holding all SEQ rows. */
static double worst_rows(const float *local, const float *global, int heads,
                         const attn_ring_desc *r, int ranks, int rank, int rows)
{
    double worst = 0;
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < rows; i++) {
            int g = 0;
            attn_ring_global_row(r, ranks, rank, i, &g);
            for (int c = 0; c < DIM; c++) {
                double e = fabs(
                    local[((size_t)h * (size_t)rows + (size_t)i) * DIM +
                          (size_t)c] -
                    global[((size_t)h * SEQ + (size_t)g) * DIM + (size_t)c]);
                worst = e > worst ? e : worst;
            }
        }
    return worst;
}

/* [heads, rows, DIM] of tensor `which` for the rows this rank holds. */
static float *make(int which, int heads, const attn_ring_desc *r, int ranks,
                   int rank, int rows)
{
    float *t =
        malloc((size_t)heads * (size_t)(rows ? rows : 1) * DIM * sizeof *t);
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < rows; i++) {
            int g = 0;
            attn_ring_global_row(r, ranks, rank, i, &g);
            for (int c = 0; c < DIM; c++)
                t[((size_t)h * (size_t)rows + (size_t)i) * DIM + (size_t)c] =
                    value(which, h, g, c);
        }
    return t;
}

int main(int argc, char **argv)
{
    /* FUNNELED: the ring computes on a thread of its own while this one
     * moves the messages (attn_mpi.h). */
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    /* A communicator of the ring's own. */
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);

    attn_options o = ATTN_OPTIONS_INIT;
    o.device = "native";
    o.threads = 1;
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&o, &ctx);

    attn_ring_desc ring = ATTN_RING_DESC_INIT;
    ring.seq = SEQ;
    ring.layout = ATTN_RING_ZIGZAG;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    d.batch = 1;
    d.heads_q = HEADS;
    d.heads_kv = KV_HEADS;
    d.seq_q = d.seq_kv = SEQ;
    d.head_dim = d.head_dim_v = DIM;
    d.mask.causal = 1;

    int rows = 0, first = 0;
    attn_ring_rows(&ring, ranks, rank, &rows, &first);
    float *q = make(0, HEADS, &ring, ranks, rank, rows);
    float *k = make(1, KV_HEADS, &ring, ranks, rank, rows);
    float *v = make(2, KV_HEADS, &ring, ranks, rank, rows);
    const size_t nq = (size_t)HEADS * (size_t)(rows ? rows : 1) * DIM,
                 nkv = (size_t)KV_HEADS * (size_t)(rows ? rows : 1) * DIM;
    float *out = malloc(nq * sizeof *out);
    float *lse =
        malloc((size_t)HEADS * (size_t)(rows ? rows : 1) * sizeof *lse);
    /* Every rank calls, also one whose context failed (ctx NULL): the
     * ranks then agree on the failure instead of waiting for it. */
    attn_status rs = attn_sdpa_ring(ctx, comm, &ring, &d, q, k, v, out, lse);
    if (rs != ATTN_OK)
        fprintf(stderr, "rank %d: %s\n", rank, attn_ring_last_error());

    /* The backward of a loss whose dL/dO is tensor 3: each rank its rows
     * of dQ, dK and dV (the forward's o and lse are its input). */
    float *d_o = make(3, HEADS, &ring, ranks, rank, rows);
    float *dq = malloc(nq * sizeof *dq), *dk = malloc(nkv * sizeof *dk),
          *dv = malloc(nkv * sizeof *dv);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    g.q = q;
    g.k = k;
    g.v = v;
    g.o = out;
    g.lse = lse;
    g.d_o = d_o;
    g.dq = dq;
    g.dk = dk;
    g.dv = dv;
    if (rs == ATTN_OK) {
        rs = attn_sdpa_ring_backward(ctx, comm, &ring, &d, &g);
        if (rs != ATTN_OK)
            fprintf(stderr, "rank %d: %s\n", rank, attn_ring_last_error());
    }

    /* The check: the whole sequence on one process, this rank's rows. */
    double worst = 0, worst_grad = 0;
    if (st == ATTN_OK && rs == ATTN_OK) {
        attn_ring_desc all = ATTN_RING_DESC_INIT;
        all.seq = SEQ;
        const size_t gq_n = (size_t)HEADS * SEQ * DIM,
                     gkv_n = (size_t)KV_HEADS * SEQ * DIM;
        float *gq = make(0, HEADS, &all, 1, 0, SEQ);
        float *gk = make(1, KV_HEADS, &all, 1, 0, SEQ);
        float *gv = make(2, KV_HEADS, &all, 1, 0, SEQ);
        float *gdo = make(3, HEADS, &all, 1, 0, SEQ);
        float *go = malloc(gq_n * sizeof *go),
              *glse = malloc((size_t)HEADS * SEQ * sizeof *glse);
        float *gdq = malloc(gq_n * sizeof *gdq),
              *gdk = malloc(gkv_n * sizeof *gdk),
              *gdv = malloc(gkv_n * sizeof *gdv);
        attn_sdpa_grad gg = ATTN_SDPA_GRAD_INIT;
        gg.q = gq;
        gg.k = gk;
        gg.v = gv;
        gg.o = go;
        gg.lse = glse;
        gg.d_o = gdo;
        gg.dq = gdq;
        gg.dk = gdk;
        gg.dv = gdv;
        st = attn_sdpa(ctx, &d, gq, gk, gv, go, glse);
        if (st == ATTN_OK)
            st = attn_sdpa_backward(ctx, &d, &gg);
        if (st == ATTN_OK) {
            worst = worst_rows(out, go, HEADS, &ring, ranks, rank, rows);
            double e[3] = {
                worst_rows(dq, gdq, HEADS, &ring, ranks, rank, rows),
                worst_rows(dk, gdk, KV_HEADS, &ring, ranks, rank, rows),
                worst_rows(dv, gdv, KV_HEADS, &ring, ranks, rank, rows)};
            for (int i = 0; i < 3; i++)
                worst_grad = e[i] > worst_grad ? e[i] : worst_grad;
        }
        free(gq);
        free(gk);
        free(gv);
        free(gdo);
        free(go);
        free(glse);
        free(gdq);
        free(gdk);
        free(gdv);
    }
    /* float sums of the same terms in another order: within 1e-5 for O,
     * 1e-4 for the gradients */
    int ok = st == ATTN_OK && rs == ATTN_OK && worst <= 1e-5 &&
             worst_grad <= 1e-4,
        all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    printf("rank %d of %d: rows %d (first %d), max |O - single process| "
           "%.2g, of dQ, dK, dV %.2g: %s\n",
           rank, ranks, rows, first, worst, worst_grad, ok ? "ok" : "FAILED");
    free(q);
    free(k);
    free(v);
    free(out);
    free(lse);
    free(d_o);
    free(dq);
    free(dk);
    free(dv);
    attn_context_destroy(ctx);
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return all_ok ? 0 : 1;
}
