/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-ring-bench: attn_sdpa_ring on P ranks against one process running
 * attn_sdpa on the same total size, the communication the ring hides
 * behind compute, and the memory each rank holds (bench/README.md).
 *
 *   mpiexec -n P attn-ring-bench [--seq N] [--heads H] [--kv-heads K]
 *       [--head-dim D] [--causal 0|1] [--window W]
 *       [--layout zigzag|contiguous] [--dtype f32|f16] [--reps R]
 *       [--threads T] [--base-threads T] [--device SPEC] [--backward 0|1]
 *
 * Times are medians over R calls; a ring call's time is the slowest
 * rank's.  Overlap: the same messages passed around the ring with no
 * compute take comm_alone; the ring call waits wait_s after its compute
 * (its blocks run on a thread of their own while the calling thread moves
 * the messages); hidden = 1 - wait_s / comm_alone.  One line "csv,..." per
 * run: ranks, threads, seq, heads, kv_heads, head_dim, mask (causal,
 * full, or either with "-wW" for a window of W), layout,
 * single ms, ring ms, compute ms, wait ms, messages-alone ms,
 * hidden %, bytes held per rank (max), bytes of a rank's slices, merge
 * ms, device bytes per rank (max), device, ring steps.
 *
 * --device SPEC (an OpenCL device, as ATTN_DEVICE takes it; built with
 * OpenCL): the single process runs attn_sdpa on that device, each rank
 * attn_sdpa_ring_cl with its slices in that device's buffers.
 *
 * --backward 1: then attn_sdpa_ring_backward against one process running
 * attn_sdpa_backward on the same total size (host slices, also with
 * --device: the blocks then run on that device; with --device the same
 * slices in that device's buffers through attn_sdpa_ring_cl_backward,
 * timed in turn with the host slices' calls), medians over R calls,
 * the slowest rank's time; one line "csv_bwd,..." with ranks, threads,
 * seq, heads, kv_heads, head_dim, mask, layout, single ms, ring ms,
 * compute ms, wait ms (means over the ranks), bytes held per rank (max),
 * ring steps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <attn/attn_mpi.h>
#ifdef ATTN_RING_BENCH_CL
#include <attn/attn_mpi_cl.h>
#endif

typedef struct bench_opts {
    int seq, heads, kv_heads, dim, causal, window, reps, threads, base_threads;
    int backward; /* 1: time the backward too */
    attn_ring_layout layout;
    attn_dtype dtype;
    const char *device; /* "native", or an OpenCL device */
} bench_opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A barrier that sleeps while it waits, so that a rank waiting for
 * another does not take the core that one computes on. */
static void quiet_barrier(MPI_Comm comm)
{
    MPI_Request req;
    MPI_Ibarrier(comm, &req);
    for (int done = 0; !done;) {
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
}

static void *filled(size_t n, size_t elem)
{
    unsigned char *p = malloc(n * elem != 0 ? n * elem : 1);
    unsigned s = 12345;
    for (size_t i = 0; p && i < n * elem; i++) {
        s = s * 1664525u + 1013904223u;
        /* f32: small floats; f16: small halves (exponent byte kept low) */
        p[i] = (unsigned char)(i % elem == elem - 1 ? 0x3a : (s >> 24));
    }
    return p;
}

static int parse(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i += 2) { /* each option and its value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = !strcmp(a, "--seq")            ? &o->seq
                  : !strcmp(a, "--heads")        ? &o->heads
                  : !strcmp(a, "--kv-heads")     ? &o->kv_heads
                  : !strcmp(a, "--head-dim")     ? &o->dim
                  : !strcmp(a, "--causal")       ? &o->causal
                  : !strcmp(a, "--window")       ? &o->window
                  : !strcmp(a, "--reps")         ? &o->reps
                  : !strcmp(a, "--threads")      ? &o->threads
                  : !strcmp(a, "--base-threads") ? &o->base_threads
                  : !strcmp(a, "--backward")     ? &o->backward
                                                 : NULL;
        if (!v)
            return 0;
        if (ip)
            *ip = atoi(v);
        else if (!strcmp(a, "--layout"))
            o->layout = !strcmp(v, "contiguous") ? ATTN_RING_CONTIGUOUS
                                                 : ATTN_RING_ZIGZAG;
        else if (!strcmp(a, "--dtype"))
            o->dtype = !strcmp(v, "f16") ? ATTN_F16 : ATTN_F32;
        else if (!strcmp(a, "--device"))
            o->device = v;
        else
            return 0;
    }
    return o->seq > 0 && o->heads > 0 && o->kv_heads > 0 && o->dim > 0 &&
           o->window >= 0 && o->reps > 0 && o->threads > 0;
}

/* The ring's messages alone: the exchange attn_sdpa_ring makes at its
 * steps but the last (P - 1 of them, fewer where a causal window stops the
 * ring sooner), each message its sender's K and V slices plus the 64-byte
 * header. */
static double comm_alone(const bench_opts *o, const attn_ring_desc *r,
                         int ranks, int rank, int steps, size_t row_bytes)
{
    size_t cap = 0;
    for (int s = 0; s < ranks; s++) {
        int rows, first;
        attn_ring_rows(r, ranks, s, &rows, &first);
        if (64 + (size_t)rows * row_bytes > cap)
            cap = 64 + (size_t)rows * row_bytes;
    }
    unsigned char *b[2] = {calloc(cap, 1), calloc(cap, 1)};
    double *t = malloc((size_t)o->reps * sizeof *t);
    int right = (rank + 1) % ranks, left = (rank + ranks - 1) % ranks;
    for (int rep = 0; rep < o->reps; rep++) {
        quiet_barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        for (int s = 0; s < steps - 1; s++) {
            int src = (rank - s + ranks) % ranks,
                from = (src + ranks - 1) % ranks;
            int ns, nf, first;
            attn_ring_rows(r, ranks, src, &ns, &first);
            attn_ring_rows(r, ranks, from, &nf, &first);
            MPI_Request q[2];
            MPI_Irecv(b[(s + 1) % 2], (int)(64 + (size_t)nf * row_bytes),
                      MPI_BYTE, left, 1, MPI_COMM_WORLD, &q[0]);
            MPI_Isend(b[s % 2], (int)(64 + (size_t)ns * row_bytes), MPI_BYTE,
                      right, 1, MPI_COMM_WORLD, &q[1]);
            MPI_Waitall(2, q, MPI_STATUSES_IGNORE);
        }
        t[rep] = now_s() - t0;
    }
    double m = median(t, o->reps);
    free(t);
    free(b[0]);
    free(b[1]);
    return m;
}

/* The slices in device buffers (--device), written once; o and lse are
 * read back after each call, as an application would not, so that the
 * call's time is that of attn_sdpa_ring_cl alone. */
typedef struct ring_dev {
#ifdef ATTN_RING_BENCH_CL
    cl_command_queue queue;
    cl_mem q, k, v, o, lse;
#endif
    int unused;
} ring_dev;

#ifdef ATTN_RING_BENCH_CL
static cl_mem dev_buf(cl_context c, cl_command_queue q, size_t bytes,
                      const void *src)
{
    cl_int err;
    cl_mem m =
        clCreateBuffer(c, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    if (m && src && bytes &&
        clEnqueueWriteBuffer(q, m, CL_TRUE, 0, bytes, src, 0, NULL, NULL)) {
        clReleaseMemObject(m);
        return NULL;
    }
    return m;
}
#endif

static int dev_slices(ring_dev *r, attn_context *ctx, const void *q,
                      const void *k, const void *v, size_t q_bytes,
                      size_t kv_bytes, size_t lse_bytes)
{
    memset(r, 0, sizeof *r);
#ifdef ATTN_RING_BENCH_CL
    cl_context c;
    cl_device_id dev;
    cl_int err;
    if (attn_context_cl_objects(ctx, &c, &dev, NULL) != ATTN_OK)
        return 0;
    r->queue = clCreateCommandQueue(c, dev, 0, &err);
    if (!r->queue)
        return 0;
    r->q = dev_buf(c, r->queue, q_bytes, q);
    r->k = dev_buf(c, r->queue, kv_bytes, k);
    r->v = dev_buf(c, r->queue, kv_bytes, v);
    r->o = dev_buf(c, r->queue, q_bytes, NULL);
    r->lse = dev_buf(c, r->queue, lse_bytes, NULL);
    return r->q && r->k && r->v && r->o && r->lse;
#else
    (void)ctx, (void)q, (void)k, (void)v;
    (void)q_bytes, (void)kv_bytes, (void)lse_bytes;
    return 0;
#endif
}

static void dev_release(ring_dev *r)
{
#ifdef ATTN_RING_BENCH_CL
    cl_mem m[5] = {r->q, r->k, r->v, r->o, r->lse};
    for (int i = 0; i < 5; i++)
        if (m[i])
            clReleaseMemObject(m[i]);
    if (r->queue)
        clReleaseCommandQueue(r->queue);
#else
    (void)r;
#endif
}

/* One ring call: host slices (dev NULL) or device slices. */
static attn_status ring_call(ring_dev *dev, attn_context *ctx,
                             const attn_ring_desc *ring,
                             const attn_sdpa_desc *desc, const void *q,
                             const void *k, const void *v, void *out,
                             float *lse)
{
#ifdef ATTN_RING_BENCH_CL
    if (dev) {
        attn_cl_buffers b = ATTN_CL_BUFFERS_INIT;
        b.q = dev->q;
        b.k = dev->k;
        b.v = dev->v;
        b.o = dev->o;
        b.lse = dev->lse;
        return attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, ring, desc, &b,
                                 dev->queue, 0, NULL);
    }
#else
    (void)dev;
#endif
    return attn_sdpa_ring(ctx, MPI_COMM_WORLD, ring, desc, q, k, v, out, lse);
}

/* The backward: one process (rank 0, base_threads threads) and the ring
 * (every rank its slices, threads threads), each after a forward that
 * gives its o and lse.  Returns 0, or 1 after a failure. */
static int bench_backward(const bench_opts *o, const attn_sdpa_desc *desc,
                          int rank, int ranks)
{
    const size_t elem = o->dtype == ATTN_F16 ? 2 : 4, seq = (size_t)o->seq;
    const size_t hq = (size_t)o->heads, hkv = (size_t)o->kv_heads,
                 d = (size_t)o->dim;
    double *t = malloc((size_t)o->reps * sizeof *t);
    double single = 0;
    int rc = !t;
    if (rank == 0 && !rc) {
        attn_options opt = ATTN_OPTIONS_INIT;
        opt.device = o->device;
        opt.allow_fallback = 0;
        opt.threads = o->base_threads;
        attn_context *ctx = NULL;
        attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
        void *p[8] = {
            filled(seq * hq * d, elem),   filled(seq * hkv * d, elem),
            filled(seq * hkv * d, elem),  malloc(seq * hq * d * elem),
            filled(seq * hq * d, elem),   malloc(seq * hq * d * elem),
            malloc(seq * hkv * d * elem), malloc(seq * hkv * d * elem)};
        float *lse = malloc(seq * hq * sizeof *lse);
        g.q = p[0], g.k = p[1], g.v = p[2], g.o = p[3], g.d_o = p[4];
        g.dq = p[5], g.dk = p[6], g.dv = p[7], g.lse = lse;
        for (int i = 0; i < 8; i++)
            rc |= !p[i];
        if (rc || !lse || attn_context_create(&opt, &ctx) != ATTN_OK ||
            attn_sdpa(ctx, desc, p[0], p[1], p[2], p[3], lse) != ATTN_OK ||
            attn_sdpa_backward(ctx, desc, &g) != ATTN_OK) {
            fprintf(stderr, "single process backward failed\n");
            rc = 1;
        }
        for (int r = 0; r < o->reps && !rc; r++) {
            double t0 = now_s();
            attn_sdpa_backward(ctx, desc, &g);
            t[r] = now_s() - t0;
        }
        single = rc ? 0 : median(t, o->reps);
        attn_context_destroy(ctx);
        for (int i = 0; i < 8; i++)
            free(p[i]);
        free(lse);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    quiet_barrier(MPI_COMM_WORLD);
    if (rc) {
        free(t);
        return 1;
    }
    attn_ring_desc ring = ATTN_RING_DESC_INIT;
    ring.seq = o->seq;
    ring.layout = o->layout;
    ring.timeout_ms = 600000;
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    int rows = 0, first = 0;
    attn_ring_rows(&ring, ranks, rank, &rows, &first);
    const size_t n = (size_t)rows;
    attn_options opt = ATTN_OPTIONS_INIT;
    opt.device = o->device;
    opt.allow_fallback = 0;
    opt.threads = o->threads;
    attn_context *ctx = NULL;
    if (attn_context_create(&opt, &ctx) != ATTN_OK) {
        fprintf(stderr, "rank %d: no context on %s\n", rank, o->device);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    void *p[8] = {filled(n * hq * d, elem),  filled(n * hkv * d, elem),
                  filled(n * hkv * d, elem), filled(n * hq * d, elem),
                  filled(n * hq * d, elem),  filled(n * hq * d, elem),
                  filled(n * hkv * d, elem), filled(n * hkv * d, elem)};
    float *lse = malloc((n ? n : 1) * hq * sizeof *lse);
    double *wait = malloc((size_t)o->reps * sizeof *wait);
    double *comp = malloc((size_t)o->reps * sizeof *comp);
    double *agree = malloc((size_t)o->reps * sizeof *agree);
    g.q = p[0], g.k = p[1], g.v = p[2], g.o = p[3], g.d_o = p[4];
    g.dq = p[5], g.dk = p[6], g.dv = p[7], g.lse = lse;
    double *t_cl = malloc((size_t)o->reps * sizeof *t_cl);
    attn_status st = attn_sdpa_ring(ctx, MPI_COMM_WORLD, &ring, desc, p[0],
                                    p[1], p[2], p[3], lse);
#ifdef ATTN_RING_BENCH_CL
    /* --device: the same slices in device buffers for
     * attn_sdpa_ring_cl_backward, timed in turn with the host slices' */
    ring_dev dv;
    memset(&dv, 0, sizeof dv);
    const size_t qb = n * hq * d * elem, kb = n * hkv * d * elem;
    attn_cl_grad_buffers gb = ATTN_CL_GRAD_BUFFERS_INIT;
    int on_dev = strcmp(o->device, "native") != 0 && st == ATTN_OK &&
                 dev_slices(&dv, ctx, p[0], p[1], p[2], qb, kb, n * hq * 4);
    cl_mem extra[5] = {NULL, NULL, NULL, NULL, NULL};
    if (on_dev) {
        cl_context c;
        attn_context_cl_objects(ctx, &c, NULL, NULL);
        extra[0] = dev_buf(c, dv.queue, qb, p[4]); /* dO */
        extra[1] = dev_buf(c, dv.queue, qb, NULL); /* dQ */
        extra[2] = dev_buf(c, dv.queue, kb, NULL); /* dK */
        extra[3] = dev_buf(c, dv.queue, kb, NULL); /* dV */
        on_dev = extra[0] && extra[1] && extra[2] && extra[3] &&
                 !clEnqueueWriteBuffer(dv.queue, dv.o, CL_TRUE, 0, qb, p[3], 0,
                                       NULL, NULL) &&
                 !clEnqueueWriteBuffer(dv.queue, dv.lse, CL_TRUE, 0, n * hq * 4,
                                       lse, 0, NULL, NULL);
        gb.q = dv.q, gb.k = dv.k, gb.v = dv.v, gb.o = dv.o, gb.lse = dv.lse;
        gb.d_o = extra[0], gb.dq = extra[1], gb.dk = extra[2];
        gb.dv = extra[3];
    }
#else
    const int on_dev = 0;
#endif
    ring.stats = &stats;
    if (st == ATTN_OK) /* warm-up */
        st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &ring, desc, &g);
#ifdef ATTN_RING_BENCH_CL
    if (st == ATTN_OK && on_dev) {
        ring.stats = NULL;
        st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &ring, desc, &gb,
                                        dv.queue, 0, NULL);
        ring.stats = &stats;
    }
#endif
    for (int r = 0; r < o->reps && st == ATTN_OK; r++) {
        quiet_barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        st = attn_sdpa_ring_backward(ctx, MPI_COMM_WORLD, &ring, desc, &g);
        double mine = now_s() - t0;
        MPI_Allreduce(&mine, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        wait[r] = stats.wait_s;
        comp[r] = stats.compute_s;
        agree[r] = stats.agree_s;
#ifdef ATTN_RING_BENCH_CL
        if (on_dev && st == ATTN_OK) {
            quiet_barrier(MPI_COMM_WORLD);
            ring.stats = NULL; /* stats: the host slices' calls */
            t0 = now_s();
            st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &ring, desc,
                                            &gb, dv.queue, 0, NULL);
            mine = now_s() - t0;
            ring.stats = &stats;
            MPI_Allreduce(&mine, &t_cl[r], 1, MPI_DOUBLE, MPI_MAX,
                          MPI_COMM_WORLD);
        }
#endif
    }
    if (st != ATTN_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, attn_ring_last_error());
        rc = 1;
    }
    double ring_t = rc ? 0 : median(t, o->reps);
    double my[3] = {median(wait, o->reps), median(comp, o->reps),
                    median(agree, o->reps)},
           sum[3];
    unsigned long long held = stats.bytes_held, held_max = 0;
    MPI_Reduce(my, sum, 3, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&held, &held_max, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0,
               MPI_COMM_WORLD);
    if (rank == 0 && !rc) {
        char mask[48];
        snprintf(mask, sizeof mask, "%s%s%.0d", o->causal ? "causal" : "full",
                 o->window ? "-w" : "", o->window);
        printf("  backward: single process (%d threads) %.2f ms; ring call "
               "%.2f ms (%.2fx the single process), %d of %d steps\n",
               o->base_threads, 1e3 * single, 1e3 * ring_t,
               ring_t > 0 ? single / ring_t : 0, stats.steps, ranks);
        if (on_dev) {
            double cl_t = median(t_cl, o->reps);
            printf("  backward on device buffers (attn_sdpa_ring_cl_backward, "
                   "in turn with the host slices'): %.2f ms (%.2fx the host "
                   "slices')\n",
                   1e3 * cl_t, cl_t > 0 ? ring_t / cl_t : 0);
        }
        printf("  backward per rank (mean): compute %.2f ms, wait after "
               "compute %.3f ms, agreements %.3f ms; %llu bytes held by the "
               "call (max)\n",
               1e3 * sum[1] / ranks, 1e3 * sum[0] / ranks, 1e3 * sum[2] / ranks,
               held_max);
        printf("csv_bwd,%d,%d,%d,%d,%d,%d,%s,%s,%.4f,%.4f,%.4f,%.4f,%llu,%d\n",
               ranks, o->threads, o->seq, o->heads, o->kv_heads, o->dim, mask,
               o->layout == ATTN_RING_ZIGZAG ? "zigzag" : "contiguous",
               1e3 * single, 1e3 * ring_t, 1e3 * sum[1] / ranks,
               1e3 * sum[0] / ranks, held_max, stats.steps);
    }
#ifdef ATTN_RING_BENCH_CL
    if (strcmp(o->device, "native") != 0) {
        for (int i = 0; i < 5; i++)
            if (extra[i])
                clReleaseMemObject(extra[i]);
        dev_release(&dv);
    }
#endif
    for (int i = 0; i < 8; i++)
        free(p[i]);
    free(lse);
    free(t);
    free(t_cl);
    free(wait);
    free(comp);
    free(agree);
    attn_context_destroy(ctx);
    return rc;
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
    bench_opts o = {
        4096, 8, 8, 64, 1, 0, 5, 1, 0, 0, ATTN_RING_ZIGZAG, ATTN_F32, "native"};
    if (!parse(argc, argv, &o)) {
        if (rank == 0)
            fprintf(stderr, "usage: attn-ring-bench [--seq N] [--heads H] "
                            "[--kv-heads K] [--head-dim D] [--causal 0|1] "
                            "[--window W] "
                            "[--layout zigzag|contiguous] [--dtype f32|f16] "
                            "[--reps R] [--threads T] [--base-threads T] "
                            "[--device SPEC] [--backward 0|1]\n");
        MPI_Finalize();
        return 2;
    }
    if (o.base_threads <= 0)
        o.base_threads = ranks * o.threads;
    int on_device = strcmp(o.device, "native") != 0;
#ifndef ATTN_RING_BENCH_CL
    if (on_device) {
        if (rank == 0)
            fprintf(stderr, "attn-ring-bench: built without OpenCL\n");
        MPI_Finalize();
        return 2;
    }
#endif
    size_t elem = o.dtype == ATTN_F16 ? 2 : 4, seq = (size_t)o.seq;
    size_t hq = (size_t)o.heads, hkv = (size_t)o.kv_heads, d = (size_t)o.dim;
    attn_sdpa_desc desc = ATTN_SDPA_DESC_INIT;
    desc.batch = 1;
    desc.heads_q = o.heads;
    desc.heads_kv = o.kv_heads;
    desc.seq_q = desc.seq_kv = o.seq;
    desc.head_dim = desc.head_dim_v = o.dim;
    desc.mask.causal = o.causal;
    desc.mask.window = o.window;
    desc.dtype = o.dtype;
    int rc = 0;

    /* One process, the whole sequence, base_threads threads (by default
     * as many as the ranks have together); the other ranks sleep. */
    double single = 0;
    size_t single_bytes = seq * (2 * hq + 2 * hkv) * d * elem + seq * hq * 4;
    if (rank == 0) {
        attn_options opt = ATTN_OPTIONS_INIT;
        opt.device = o.device;
        opt.allow_fallback = 0;
        opt.threads = o.base_threads;
        attn_context *ctx = NULL;
        void *q = filled(seq * hq * d, elem), *k = filled(seq * hkv * d, elem);
        void *v = filled(seq * hkv * d, elem),
             *out = malloc(seq * hq * d * elem);
        float *lse = malloc(seq * hq * sizeof *lse);
        double *t = malloc((size_t)o.reps * sizeof *t);
        if (attn_context_create(&opt, &ctx) != ATTN_OK || !q || !k || !v ||
            !out || !lse || attn_sdpa(ctx, &desc, q, k, v, out, lse)) {
            fprintf(stderr, "single process failed\n");
            rc = 1;
        }
        for (int r = 0; r < o.reps && !rc; r++) {
            double t0 = now_s();
            attn_sdpa(ctx, &desc, q, k, v, out, lse);
            t[r] = now_s() - t0;
        }
        single = rc ? 0 : median(t, o.reps);
        attn_context_destroy(ctx);
        free(q);
        free(k);
        free(v);
        free(out);
        free(lse);
        free(t);
    }
    quiet_barrier(MPI_COMM_WORLD);

    /* The ring: every rank its slice, threads threads each. */
    attn_ring_desc ring = ATTN_RING_DESC_INIT;
    ring.seq = o.seq;
    ring.layout = o.layout;
    ring.timeout_ms = 600000;
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    ring.stats = &stats;
    int rows = 0, first = 0;
    attn_ring_rows(&ring, ranks, rank, &rows, &first);
    size_t n = (size_t)rows;
    attn_options opt = ATTN_OPTIONS_INIT;
    opt.device = o.device;
    opt.allow_fallback = 0;
    opt.threads = o.threads;
    attn_context *ctx = NULL;
    if (attn_context_create(&opt, &ctx) != ATTN_OK) {
        fprintf(stderr, "rank %d: no context on %s\n", rank, o.device);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    void *q = filled(n * hq * d, elem), *k = filled(n * hkv * d, elem);
    void *v = filled(n * hkv * d, elem), *out = filled(n * hq * d, elem);
    float *lse = malloc((n ? n : 1) * hq * sizeof *lse);
    double *t = malloc((size_t)o.reps * sizeof *t);
    double *wait = malloc((size_t)o.reps * sizeof *wait);
    double *comp = malloc((size_t)o.reps * sizeof *comp);
    double *merge = malloc((size_t)o.reps * sizeof *merge);
    ring_dev dev;
    if (on_device && !dev_slices(&dev, ctx, q, k, v, n * hq * d * elem,
                                 n * hkv * d * elem, n * hq * 4)) {
        fprintf(stderr, "rank %d: no device buffers\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    attn_status st = ring_call(on_device ? &dev : NULL, ctx, &ring, &desc, q, k,
                               v, out, lse); /* warm-up */
    for (int r = 0; r < o.reps && st == ATTN_OK; r++) {
        quiet_barrier(MPI_COMM_WORLD);
        double t0 = now_s();
        st = ring_call(on_device ? &dev : NULL, ctx, &ring, &desc, q, k, v, out,
                       lse);
        double mine = now_s() - t0;
        MPI_Allreduce(&mine, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        wait[r] = stats.wait_s;
        comp[r] = stats.compute_s;
        merge[r] = stats.merge_s;
    }
    if (on_device)
        dev_release(&dev);
    if (st != ATTN_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, attn_ring_last_error());
        rc = 1;
    }
    double ring_t = rc ? 0 : median(t, o.reps);
    double my_wait = median(wait, o.reps), my_comp = median(comp, o.reps);
    double my_merge = median(merge, o.reps);
    double alone = ranks > 1 ? comm_alone(&o, &ring, ranks, rank, stats.steps,
                                          hkv * 2 * d * elem)
                             : 0;
    double waits[64] = {0}, comps[64] = {0}, alones[64] = {0}, merges[64] = {0};
    unsigned long long held = stats.bytes_held, held_max = 0;
    unsigned long long dheld = stats.bytes_device, dheld_max = 0;
    MPI_Gather(&my_wait, 1, MPI_DOUBLE, waits, 1, MPI_DOUBLE, 0,
               MPI_COMM_WORLD);
    MPI_Gather(&my_comp, 1, MPI_DOUBLE, comps, 1, MPI_DOUBLE, 0,
               MPI_COMM_WORLD);
    MPI_Gather(&alone, 1, MPI_DOUBLE, alones, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Gather(&my_merge, 1, MPI_DOUBLE, merges, 1, MPI_DOUBLE, 0,
               MPI_COMM_WORLD);
    MPI_Reduce(&dheld, &dheld_max, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0,
               MPI_COMM_WORLD);
    MPI_Reduce(&held, &held_max, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, 0,
               MPI_COMM_WORLD);
    if (rank == 0 && !rc && ranks <= 64) {
        double w = 0, c = 0, a = 0, mg = 0;
        for (int r = 0; r < ranks; r++) {
            mg += merges[r] / ranks;
            w += waits[r] / ranks;
            c += comps[r] / ranks;
            a += alones[r] / ranks;
        }
        /* Exposed: the wait after compute; the rest ran beside it. */
        double hidden = a > 0 ? 100.0 * (a - (w < a ? w : a)) / a : 0;
        size_t slice = n * (2 * hq + 2 * hkv) * d * elem + n * hq * 4;
        char mask[48];
        snprintf(mask, sizeof mask, "%s%s%.0d", o.causal ? "causal" : "full",
                 o.window ? "-w" : "", o.window);
        printf("attn-ring-bench: %d ranks x %d threads, seq %d, heads %d/%d, "
               "head_dim %d, %s%s%.0d, %s, %s, %s\n",
               ranks, o.threads, o.seq, o.heads, o.kv_heads, o.dim,
               o.causal ? "causal" : "non-causal", o.window ? ", window " : "",
               o.window, o.layout == ATTN_RING_ZIGZAG ? "zigzag" : "contiguous",
               o.dtype == ATTN_F16 ? "f16" : "f32",
               on_device ? "device slices (attn_sdpa_ring_cl)" : "native");
        printf("  single process (%d threads): %.2f ms\n", o.base_threads,
               1e3 * single);
        printf("  ring call: %.2f ms (%.2fx the single process), %d of %d "
               "steps\n",
               1e3 * ring_t, ring_t > 0 ? single / ring_t : 0, stats.steps,
               ranks);
        printf("  per rank (mean): compute %.2f ms; communication exposed "
               "(wait after compute) %.3f ms of %.3f ms for the messages "
               "alone: %.0f%% hidden\n",
               1e3 * c, 1e3 * w, 1e3 * a, hidden);
        printf("  of the compute, merging the partial results%s: %.2f ms\n",
               on_device ? " (with their read back)" : "", 1e3 * mg);
        printf("  memory per rank: %llu bytes held by the call, %zu bytes of "
               "slices (q, k, v, o, lse); one process: %zu bytes of tensors\n",
               held_max, slice, single_bytes);
        if (on_device)
            printf("  device memory per rank: %llu bytes allocated by the "
                   "call\n",
                   dheld_max);
        printf("csv,%d,%d,%d,%d,%d,%d,%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f,"
               "%llu,%zu,%.4f,%llu,%s,%d\n",
               ranks, o.threads, o.seq, o.heads, o.kv_heads, o.dim, mask,
               o.layout == ATTN_RING_ZIGZAG ? "zigzag" : "contiguous",
               1e3 * single, 1e3 * ring_t, 1e3 * c, 1e3 * w, 1e3 * a, hidden,
               held_max, slice, 1e3 * mg, dheld_max, o.device, stats.steps);
    }
    free(q);
    free(k);
    free(v);
    free(out);
    free(lse);
    free(t);
    free(wait);
    free(comp);
    free(merge);
    attn_context_destroy(ctx);
    if (!rc && o.backward)
        rc = bench_backward(&o, &desc, rank, ranks);
    MPI_Finalize();
    return rc;
}
