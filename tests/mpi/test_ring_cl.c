/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_ring_cl on the OpenCL CPU device (PoCL) against the
 * single-process attn_sdpa, run by ctest under mpiexec with 2 and 3 ranks.
 * Every rank builds the same global Q, K, V from a seed, computes the
 * whole attention with attn_sdpa on its context, writes its slices into
 * OpenCL buffers (at element offsets, Q, K and V in one buffer), runs the
 * ring on them with a queue of its own and compares the rows it reads
 * back.  Tolerances as tests/mpi/test_ring.c: F32 1e-5 (1 + |x|), F16 O
 * 1e-3.
 *
 * Failures: a block that fails on one rank mid-ring and a NULL b or an
 * overlapping o on one rank make every rank return the error with o and
 * lse untouched; a rank that stalls past the timeout makes the ranks
 * waiting for it return an error.
 *
 * attn_sdpa_ring_cl_backward against the single-process
 * attn_sdpa_backward of the global problem on the same context: the
 * rank's slices of Q, K, V, O, dO in one buffer at offsets, lse at an
 * offset in its own, dQ, dK, dV at offsets in one output buffer between
 * sentinel values (checked untouched around them); dbias of a key bias
 * and d additive_w on every rank.  Tolerance as tests/test_backward.c:
 * TOL (M + 1) + TOL |want| with M the largest gradient, TOL 1e-4 (F32),
 * 8e-3 (F16).  Failures as the forward's: g NULL, dq over q, a
 * struct_size of no layout, strides on one rank, a block failing
 * mid-ring: every rank returns the error with the outputs untouched.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "harness.h"
#include "mpi/ring_cl.h"

static attn_context *ctx;
static cl_context clctx;
static cl_command_queue queue;
static int rank, ranks;

typedef struct cl_case {
    const char *name;
    int batch, hq, hkv, d, dv, seq, causal, f16;
    attn_ring_layout layout;
    int uneven; /* CONTIGUOUS: counts with rank 1 empty on 3 ranks */
    const int32_t *kv_len;
    int window;            /* mask.window */
    int one_step;          /* the window reaches one slice back: min(2, ranks)
                              steps (else every rank's) */
    const float *key_bias; /* ATTN_BIAS_KEY [batch, seq], or NULL */
} cl_case;

static float lcg(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void *fill(size_t n, unsigned seed, int f16)
{
    void *p = malloc((n ? n : 1) * (f16 ? 2 : 4));
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

static cl_mem buffer(size_t bytes)
{
    cl_int err;
    cl_mem m =
        clCreateBuffer(clctx, CL_MEM_READ_WRITE, bytes ? bytes : 4, NULL, &err);
    CU_ASSERT_FATAL(m != NULL);
    return m;
}

static void put(cl_mem m, size_t off, size_t bytes, const void *src)
{
    if (bytes)
        CU_ASSERT_FATAL(clEnqueueWriteBuffer(queue, m, CL_TRUE, off, bytes, src,
                                             0, NULL, NULL) == CL_SUCCESS);
}

static void get(cl_mem m, size_t off, size_t bytes, void *dst)
{
    if (bytes)
        CU_ASSERT_FATAL(clEnqueueReadBuffer(queue, m, CL_TRUE, off, bytes, dst,
                                            0, NULL, NULL) == CL_SUCCESS);
}

/* This rank's slices on the device: Q, K, V in one buffer at offsets, O
 * and lse in buffers of their own at offsets; O and lse preset to 1234.5
 * (F32) so that an untouched output can be told. */
typedef struct dev_slices {
    cl_mem in, o, lse;
    attn_cl_buffers b;
    size_t nq, nk, nv, no, nl, elem;
} dev_slices;

static void dev_make(dev_slices *s, const void *q, const void *k, const void *v,
                     size_t nq, size_t nk, size_t nv, size_t no, size_t nl,
                     size_t elem)
{
    s->nq = nq, s->nk = nk, s->nv = nv, s->no = no, s->nl = nl;
    s->elem = elem;
    attn_cl_buffers_init(&s->b);
    s->b.q_offset = 5;
    s->b.k_offset = 5 + nq + 3;
    s->b.v_offset = s->b.k_offset + nk + 7;
    s->b.o_offset = 9;
    s->b.lse_offset = 2;
    s->in = buffer((s->b.v_offset + nv) * elem);
    s->o = buffer((9 + no) * elem);
    s->lse = buffer((2 + nl) * sizeof(float));
    put(s->in, s->b.q_offset * elem, nq * elem, q);
    put(s->in, s->b.k_offset * elem, nk * elem, k);
    put(s->in, s->b.v_offset * elem, nv * elem, v);
    void *sent = malloc((no + nl + 1) * 4);
    for (size_t i = 0; i < no + nl + 1; i++)
        ((float *)sent)[i] = 1234.5f;
    put(s->o, 9 * elem, no * elem, sent);
    put(s->lse, 2 * sizeof(float), nl * sizeof(float), sent);
    free(sent);
    s->b.q = s->b.k = s->b.v = s->in;
    s->b.o = s->o;
    s->b.lse = s->lse;
}

static void dev_free(dev_slices *s)
{
    clReleaseMemObject(s->in);
    clReleaseMemObject(s->o);
    clReleaseMemObject(s->lse);
}

static void run_case(const cl_case *k)
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
    d.mask.bias = k->key_bias;
    d.mask.bias_kind = k->key_bias ? ATTN_BIAS_KEY : ATTN_BIAS_NONE;
    d.dtype = k->f16 ? ATTN_F16 : ATTN_F32;
    size_t bq = (size_t)k->batch * (size_t)k->hq;
    size_t bkv = (size_t)k->batch * (size_t)k->hkv;
    size_t seq = (size_t)k->seq, elem = k->f16 ? 2 : 4;
    void *q = fill(bq * seq * (size_t)k->d, 1, k->f16);
    void *kk = fill(bkv * seq * (size_t)k->d, 2, k->f16);
    void *v = fill(bkv * seq * (size_t)k->dv, 3, k->f16);
    void *o_ref = malloc(bq * seq * (size_t)k->dv * elem);
    float *lse_ref = malloc(bq * seq * sizeof(float));
    CU_ASSERT_FATAL(attn_sdpa(ctx, &d, q, kk, v, o_ref, lse_ref) == ATTN_OK);

    int counts[3] = {20, 0, 21};
    attn_ring_desc r = ATTN_RING_DESC_INIT;
    r.seq = k->seq;
    r.layout = k->layout;
    if (k->uneven && ranks == 3 && k->seq == 41)
        r.counts = counts;
    attn_ring_stats stats = ATTN_RING_STATS_INIT;
    r.stats = &stats;
    int rows;
    void *ql = slice(&r, q, bq, (size_t)k->d, elem, &rows);
    void *kl = slice(&r, kk, bkv, (size_t)k->d, elem, &rows);
    void *vl = slice(&r, v, bkv, (size_t)k->dv, elem, &rows);
    void *ol_ref = slice(&r, o_ref, bq, (size_t)k->dv, elem, &rows);
    float *lsel_ref = slice(&r, lse_ref, bq, 1, 4, &rows);
    size_t n = (size_t)rows, no = n * bq * (size_t)k->dv;
    dev_slices s;
    dev_make(&s, ql, kl, vl, n * bq * (size_t)k->d, n * bkv * (size_t)k->d,
             n * bkv * (size_t)k->dv, no, n * bq, elem);
    attn_status st =
        attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, &r, &d, &s.b, queue, 0, NULL);
    char what[200];
    snprintf(what, sizeof what, "%s on rank %d of %d: %s", k->name, rank, ranks,
             attn_ring_last_error());
    HARNESS_EXPECT(st == ATTN_OK, what);
    void *ol = malloc((no ? no : 1) * elem);
    float *lsel = malloc((n ? n : 1) * bq * sizeof(float));
    get(s.o, 9 * elem, no * elem, ol);
    get(s.lse, 2 * sizeof(float), n * bq * sizeof(float), lsel);
    double worst = 0, worst_lse = 0;
    int bad = 0;
    for (size_t i = 0; st == ATTN_OK && i < no; i++) {
        double a = val(ol, i, k->f16), b = val(ol_ref, i, k->f16);
        double tol = k->f16 ? 1e-3 : 1e-5 * (1 + fabs(b));
        if (!(fabs(a - b) <= tol))
            bad++;
        worst = fmax(worst, fabs(a - b));
    }
    for (size_t i = 0; st == ATTN_OK && i < n * bq; i++) {
        double a = lsel[i], b = lsel_ref[i];
        if (a == b)
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
        HARNESS_EXPECT(stats.steps == (k->one_step && ranks > 2 ? 2 : ranks) &&
                           stats.bytes_device > 0,
                       what);
    dev_free(&s);
    void *bufs[] = {q,  kk, v,      o_ref,    lse_ref, ql,
                    kl, vl, ol_ref, lsel_ref, ol,      lsel};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static const int32_t kv_lens[3] = {40, 7, 48};

/* A key bias [2, 48]: values in [-1, 1], every 4th key -inf. */
static float key_bias[2 * 48];

static void test_f32(void)
{
    unsigned seed = 5;
    for (int j = 0; j < 2 * 48; j++)
        key_bias[j] = j % 4 == 1 ? -INFINITY : lcg(&seed);
    cl_case c[] = {
        {"f32 zigzag causal GQA", 2, 4, 2, 16, 12, 48, 1, 0, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
        {"f32 contiguous", 2, 4, 2, 16, 12, 48, 0, 0, ATTN_RING_CONTIGUOUS, 0,
         NULL, 0, 0, NULL},
        {"f32 contiguous causal seq 41 (uneven)", 1, 2, 1, 8, 16, 41, 1, 0,
         ATTN_RING_CONTIGUOUS, 1, NULL, 0, 0, NULL},
        {"f32 zigzag causal kv_len", 3, 2, 2, 8, 8, 48, 1, 0, ATTN_RING_ZIGZAG,
         0, kv_lens, 0, 0, NULL},
        {"f32 zigzag causal window 11", 1, 2, 1, 8, 8, 48, 1, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 11, 0, NULL},
        {"f32 contiguous window 30 (not causal, uneven)", 1, 2, 2, 8, 8, 41, 0,
         0, ATTN_RING_CONTIGUOUS, 1, NULL, 30, 0, NULL},
        {"f32 contiguous causal window 5 (the ring stops early)", 2, 2, 1, 8, 8,
         48, 1, 0, ATTN_RING_CONTIGUOUS, 0, NULL, 5, 1, NULL},
        {"f32 zigzag causal key bias", 2, 2, 1, 8, 8, 48, 1, 0,
         ATTN_RING_ZIGZAG, 0, NULL, 0, 0, key_bias},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

static void test_f16(void)
{
    cl_case c[] = {
        {"f16 zigzag causal GQA", 2, 4, 2, 16, 16, 48, 1, 1, ATTN_RING_ZIGZAG,
         0, NULL, 0, 0, NULL},
        {"f16 contiguous causal", 1, 2, 1, 32, 8, 45, 1, 1,
         ATTN_RING_CONTIGUOUS, 0, NULL, 0, 0, NULL},
        {"f16 contiguous", 1, 2, 2, 16, 16, 40, 0, 1, ATTN_RING_CONTIGUOUS, 0,
         NULL, 0, 0, NULL},
        {"f16 zigzag causal window 9", 1, 2, 2, 16, 16, 40, 1, 1,
         ATTN_RING_ZIGZAG, 0, NULL, 9, 0, NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_case(&c[i]);
}

/* ---- the backward ------------------------------------------------------- */

#define BWD_SENT 0x5a /* bytes of the gradients' buffer outside dq, dk, dv */

/* This rank's slices for the backward: q, k, v, o, dO in `in` (offsets 3,
 * then 5 apart), lse in its own at 2, dq, dk, dv in `out` (offsets 1, then
 * 4 apart) which holds BWD_SENT elsewhere and, before a call, in them. */
typedef struct bwd_slices {
    cl_mem in, lse, out, dbias, dw;
    attn_cl_grad_buffers g;
    size_t n[5], elem, out_bytes;
} bwd_slices;

static void bwd_make(bwd_slices *s, void *const t[5], const float *lse,
                     const size_t n[5], size_t nl, size_t elem, size_t nbias,
                     size_t nw)
{
    size_t at = 3, in_at[5], out_at[3];
    memset(s, 0, sizeof *s);
    memcpy(s->n, n, sizeof s->n);
    s->elem = elem;
    for (int i = 0; i < 5; i++) {
        in_at[i] = at;
        at += n[i] + 5;
    }
    s->in = buffer(at * elem);
    for (int i = 0; i < 5; i++)
        put(s->in, in_at[i] * elem, n[i] * elem, t[i]);
    s->lse = buffer((2 + nl) * sizeof(float));
    put(s->lse, 2 * sizeof(float), nl * sizeof(float), lse);
    at = 1;
    for (int i = 0; i < 3; i++) {
        out_at[i] = at;
        at += n[i] + 4;
    }
    s->out_bytes = at * elem;
    s->out = buffer(s->out_bytes);
    unsigned char *sent = malloc(s->out_bytes);
    memset(sent, BWD_SENT, s->out_bytes);
    put(s->out, 0, s->out_bytes, sent);
    free(sent);
    attn_cl_grad_buffers_init(&s->g);
    s->g.q = s->g.k = s->g.v = s->g.o = s->g.d_o = s->in;
    s->g.q_offset = in_at[0], s->g.k_offset = in_at[1];
    s->g.v_offset = in_at[2], s->g.o_offset = in_at[3];
    s->g.d_o_offset = in_at[4];
    s->g.lse = s->lse;
    s->g.lse_offset = 2;
    s->g.dq = s->g.dk = s->g.dv = s->out;
    s->g.dq_offset = out_at[0], s->g.dk_offset = out_at[1];
    s->g.dv_offset = out_at[2];
    if (nbias) {
        s->dbias = buffer((7 + nbias) * sizeof(float));
        s->g.dbias = s->dbias;
        s->g.dbias_offset = 7;
    }
    if (nw) {
        s->dw = buffer(nw * sizeof(float));
        s->g.d_additive_w = s->dw;
    }
}

static void bwd_free(bwd_slices *s)
{
    cl_mem m[5] = {s->in, s->lse, s->out, s->dbias, s->dw};
    for (int i = 0; i < 5; i++)
        if (m[i])
            clReleaseMemObject(m[i]);
}

/* The gradients' buffer holds BWD_SENT outside dq, dk and dv (everywhere
 * when all is set). */
static int bwd_sentinels(const bwd_slices *s, int all)
{
    unsigned char *b = malloc(s->out_bytes);
    const size_t at[3] = {s->g.dq_offset, s->g.dk_offset, s->g.dv_offset};
    int ok = 1;
    get(s->out, 0, s->out_bytes, b);
    for (size_t e = 0; e < s->out_bytes; e++) {
        int inside = 0;
        for (int i = 0; i < 3 && !all; i++)
            inside |= e >= at[i] * s->elem && e < (at[i] + s->n[i]) * s->elem;
        ok &= inside || b[e] == BWD_SENT;
    }
    free(b);
    return ok;
}

/* Largest |x| of n values. */
static double largest(const void *x, size_t n, int f16)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(val(x, i, f16)));
    return m;
}

/* got vs want within TOL (M + 1) + TOL |want|: the number of values off,
 * *worst the largest difference. */
static int off_by(const void *got, const void *want, size_t n, int f16,
                  double m, double *worst)
{
    const double tol = f16 ? 8e-3 : 1e-4;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double a = val(got, i, f16), b = val(want, i, f16);
        if (!(fabs(a - b) <= tol * (m + 1) + tol * fabs(b)))
            bad++;
        *worst = fmax(*worst, fabs(a - b));
    }
    return bad;
}

typedef struct bwd_case {
    const char *name;
    int batch, hq, hkv, d, dv, seq, causal, f16;
    attn_ring_layout layout;
    int uneven, window;
    const float *key_bias; /* with dbias asked */
    int additive;          /* with d additive_w asked */
} bwd_case;

static void run_bwd_case(const bwd_case *k)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    float addw[4 * 16];
    for (int i = 0; i < 4 * 16; i++)
        addw[i] = 0.25f * (float)((i % 7) - 3);
    d.batch = k->batch;
    d.heads_q = k->hq;
    d.heads_kv = k->hkv;
    d.seq_q = d.seq_kv = k->seq;
    d.head_dim = k->d;
    d.head_dim_v = k->dv;
    d.mask.causal = k->causal;
    d.mask.window = k->window;
    d.mask.bias = k->key_bias;
    d.mask.bias_kind = k->key_bias ? ATTN_BIAS_KEY : ATTN_BIAS_NONE;
    d.dtype = k->f16 ? ATTN_F16 : ATTN_F32;
    if (k->additive) {
        d.score = ATTN_SCORE_ADDITIVE;
        d.additive_w = addw;
    }
    const size_t bq = (size_t)k->batch * (size_t)k->hq;
    const size_t bkv = (size_t)k->batch * (size_t)k->hkv;
    const size_t seq = (size_t)k->seq, elem = k->f16 ? 2 : 4;
    const size_t gn[5] = {bq * seq * (size_t)k->d, bkv * seq * (size_t)k->d,
                          bkv * seq * (size_t)k->dv, bq * seq * (size_t)k->dv,
                          bq * seq * (size_t)k->dv};
    void *q = fill(gn[0], 11, k->f16), *kk = fill(gn[1], 12, k->f16);
    void *v = fill(gn[2], 13, k->f16), *dout = fill(gn[4], 14, k->f16);
    void *o = malloc(gn[3] * elem), *dq = malloc(gn[0] * elem);
    void *dk = malloc(gn[1] * elem), *dv = malloc(gn[2] * elem);
    float *lse = malloc(bq * seq * sizeof(float));
    const size_t nbias = k->key_bias ? (size_t)k->batch * seq : 0;
    const size_t nw = k->additive ? (size_t)k->hq * (size_t)k->d : 0;
    float *dbias = malloc((nbias + 1) * 4), *dw = malloc((nw + 1) * 4);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    CU_ASSERT_FATAL(attn_sdpa(ctx, &d, q, kk, v, o, lse) == ATTN_OK);
    g.q = q, g.k = kk, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    g.dbias = nbias ? dbias : NULL;
    g.d_additive_w = nw ? dw : NULL;
    CU_ASSERT_FATAL(attn_sdpa_backward(ctx, &d, &g) == ATTN_OK);

    int counts[3] = {20, 0, 21};
    attn_ring_desc r = ATTN_RING_DESC_INIT;
    r.seq = k->seq;
    r.layout = k->layout;
    if (k->uneven && ranks == 3 && k->seq == 41)
        r.counts = counts;
    int rows;
    const size_t outer[5] = {bq, bkv, bkv, bq, bq};
    const size_t width[5] = {(size_t)k->d, (size_t)k->d, (size_t)k->dv,
                             (size_t)k->dv, (size_t)k->dv};
    void *const glob[5] = {q, kk, v, o, dout};
    void *loc[5];
    size_t n[5];
    for (int i = 0; i < 5; i++)
        loc[i] = slice(&r, glob[i], outer[i], width[i], elem, &rows);
    for (int i = 0; i < 5; i++)
        n[i] = (size_t)rows * outer[i] * width[i];
    float *lsel = slice(&r, lse, bq, 1, 4, &rows);
    void *const gglob[3] = {dq, dk, dv};
    void *want[3];
    for (int i = 0; i < 3; i++)
        want[i] = slice(&r, gglob[i], outer[i], width[i], elem, &rows);
    bwd_slices s;
    bwd_make(&s, loc, lsel, n, (size_t)rows * bq, elem, nbias, nw);
    attn_status st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &r, &d,
                                                &s.g, queue, 0, NULL);
    char what[300];
    snprintf(what, sizeof what, "%s (backward) on rank %d of %d: %s", k->name,
             rank, ranks, attn_ring_last_error());
    HARNESS_EXPECT(st == ATTN_OK, what);
    int bad = 0;
    double worst[3] = {0, 0, 0}, worst_db = 0;
    const size_t at[3] = {s.g.dq_offset, s.g.dk_offset, s.g.dv_offset};
    for (int i = 0; i < 3 && st == ATTN_OK; i++) {
        void *got = malloc((n[i] ? n[i] : 1) * elem);
        get(s.out, at[i] * elem, n[i] * elem, got);
        bad += off_by(got, want[i], n[i], k->f16,
                      largest(gglob[i], gn[i], k->f16), &worst[i]);
        free(got);
    }
    if (st == ATTN_OK && nbias + nw) {
        float *got = malloc((nbias + nw + 1) * 4);
        if (nbias) {
            get(s.dbias, 7 * 4, nbias * 4, got);
            bad += off_by(got, dbias, nbias, 0, largest(dbias, nbias, 0),
                          &worst_db);
        }
        if (nw) {
            get(s.dw, 0, nw * 4, got);
            bad += off_by(got, dw, nw, 0, largest(dw, nw, 0), &worst_db);
        }
        free(got);
    }
    HARNESS_EXPECT(st != ATTN_OK || bwd_sentinels(&s, 0), what);
    snprintf(what, sizeof what,
             "%s (backward) on rank %d of %d: %d values off (max |d dq| %g, "
             "|d dk| %g, |d dv| %g, |d dbias, d dw| %g)",
             k->name, rank, ranks, bad, worst[0], worst[1], worst[2], worst_db);
    HARNESS_EXPECT(bad == 0, what);
    if (rank == ranks - 1)
        printf("\n  %s (backward), %d ranks: max |d dq| %.3g, |d dk| %.3g, "
               "|d dv| %.3g, |d dbias, d dw| %.3g",
               k->name, ranks, worst[0], worst[1], worst[2], worst_db);
    bwd_free(&s);
    for (int i = 0; i < 5; i++)
        free(loc[i]);
    for (int i = 0; i < 3; i++)
        free(want[i]);
    void *bufs[] = {q, kk, v, dout, o, dq, dk, dv, lse, dbias, dw, lsel};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static void test_backward(void)
{
    unsigned seed = 9;
    for (int j = 0; j < 2 * 48; j++)
        key_bias[j] = j % 4 == 1 ? -INFINITY : lcg(&seed);
    bwd_case c[] = {
        {"f32 zigzag causal GQA", 2, 4, 2, 16, 12, 48, 1, 0, ATTN_RING_ZIGZAG,
         0, 0, NULL, 0},
        {"f32 contiguous seq 41 (uneven)", 1, 2, 1, 8, 16, 41, 0, 0,
         ATTN_RING_CONTIGUOUS, 1, 0, NULL, 0},
        {"f32 zigzag causal key bias, dbias", 2, 2, 1, 8, 8, 48, 1, 0,
         ATTN_RING_ZIGZAG, 0, 0, key_bias, 0},
        {"f32 contiguous causal window 5 (early stop)", 2, 2, 1, 8, 8, 48, 1, 0,
         ATTN_RING_CONTIGUOUS, 0, 5, NULL, 0},
        {"f32 contiguous additive, d additive_w", 1, 4, 2, 16, 16, 40, 1, 0,
         ATTN_RING_CONTIGUOUS, 0, 0, NULL, 1},
        {"f16 zigzag causal GQA", 2, 4, 2, 16, 16, 48, 1, 1, ATTN_RING_ZIGZAG,
         0, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        run_bwd_case(&c[i]);
}

/* A small backward problem: the forward's o and lse from the ring. */
typedef struct bwd_small {
    attn_sdpa_desc d;
    attn_ring_desc r;
    bwd_slices s;
} bwd_small;

static void bwd_small_make(bwd_small *m)
{
    attn_sdpa_desc_init(&m->d);
    m->d.batch = 1;
    m->d.heads_q = m->d.heads_kv = 2;
    m->d.seq_q = m->d.seq_kv = 24;
    m->d.head_dim = m->d.head_dim_v = 4;
    m->d.mask.causal = 1;
    m->r = (attn_ring_desc)ATTN_RING_DESC_INIT;
    m->r.seq = 24;
    m->r.layout = ATTN_RING_ZIGZAG;
    m->r.timeout_ms = 10000;
    int rows, first;
    CU_ASSERT_FATAL(attn_ring_rows(&m->r, ranks, rank, &rows, &first) ==
                    ATTN_OK);
    size_t n1 = (size_t)rows * 8;
    const size_t n[5] = {n1, n1, n1, n1, n1};
    void *t[5];
    for (int i = 0; i < 5; i++)
        t[i] = fill(n1, 20 + (unsigned)i, 0);
    float *lse = malloc(((size_t)rows * 2 + 1) * 4);
    CU_ASSERT_FATAL(attn_sdpa_ring(ctx, MPI_COMM_WORLD, &m->r, &m->d, t[0],
                                   t[1], t[2], t[3], lse) == ATTN_OK);
    bwd_make(&m->s, t, lse, n, (size_t)rows * 2, 4, 0, 0);
    for (int i = 0; i < 5; i++)
        free(t[i]);
    free(lse);
}

static void expect_bwd_failed(bwd_small *m, attn_status st, attn_status want,
                              const char *test)
{
    char what[600];
    snprintf(what, sizeof what, "%s, rank %d of %d: status %s (%s)", test, rank,
             ranks, attn_status_string(st), attn_ring_last_error());
    HARNESS_EXPECT(st == want, what);
    HARNESS_EXPECT(attn_ring_last_error()[0] != '\0', what);
    HARNESS_EXPECT(bwd_sentinels(&m->s, 1), what);
}

static attn_status faulty_bwd(attn_context *c, const attn_sdpa_desc *d,
                              const attn_sdpa_grad *g, void *user)
{
    int *calls = user;
    if (rank == ranks - 1 && ++*calls == 2)
        return ATTN_ERR_DEVICE;
    return attn_sdpa_backward(c, d, g);
}

/* g NULL on the last rank, dq over q on rank 0, strides on the last rank,
 * a block failing mid-ring on the last rank: every rank returns the
 * error, dq, dk and dv untouched; then a call that succeeds. */
static void test_backward_failures(void)
{
    bwd_small m;
    bwd_small_make(&m);
    attn_status st = attn_sdpa_ring_cl_backward(
        ctx, MPI_COMM_WORLD, &m.r, &m.d, rank == ranks - 1 ? NULL : &m.s.g,
        queue, 0, NULL);
    expect_bwd_failed(&m, st, ATTN_ERR_INVALID_ARGUMENT,
                      "g NULL on the last rank");
    attn_cl_grad_buffers g = m.s.g;
    if (rank == 0) {
        g.dq = m.s.in;
        g.dq_offset = g.q_offset;
    }
    st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &m.r, &m.d, &g, queue,
                                    0, NULL);
    expect_bwd_failed(&m, st, ATTN_ERR_INVALID_ARGUMENT, "dq over q on rank 0");
    HARNESS_EXPECT(rank != 0 || strstr(attn_ring_last_error(), "g->dq"),
                   attn_ring_last_error());
    g = m.s.g;
    if (rank == 0)
        g.struct_size = 12; /* the size of no layout */
    st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &m.r, &m.d, &g, queue,
                                    0, NULL);
    expect_bwd_failed(&m, st, ATTN_ERR_INVALID_ARGUMENT,
                      "struct_size 12 on rank 0");
    attn_sdpa_desc d = m.d;
    if (rank == ranks - 1)
        d.q_strides[2] = d.head_dim;
    st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &m.r, &d, &m.s.g,
                                    queue, 0, NULL);
    expect_bwd_failed(&m, st, ATTN_ERR_UNSUPPORTED, "strides on the last rank");
    int calls = 0;
    st = ring_run_cl_backward(ctx, MPI_COMM_WORLD, &m.r, &m.d, &m.s.g, queue, 0,
                              NULL, faulty_bwd, &calls);
    expect_bwd_failed(&m, st, ATTN_ERR_DEVICE, "a block failing mid-ring");
    st = attn_sdpa_ring_cl_backward(ctx, MPI_COMM_WORLD, &m.r, &m.d, &m.s.g,
                                    queue, 0, NULL);
    CU_ASSERT(st == ATTN_OK);
    CU_ASSERT(bwd_sentinels(&m.s, 0));
    bwd_free(&m.s);
}

/* ---- failures ----------------------------------------------------------- */

typedef struct small {
    attn_sdpa_desc d;
    attn_ring_desc r;
    dev_slices s;
    int rows;
} small;

static void small_make(small *m)
{
    attn_sdpa_desc_init(&m->d);
    m->d.batch = 1;
    m->d.heads_q = m->d.heads_kv = 2;
    m->d.seq_q = m->d.seq_kv = 24;
    m->d.head_dim = m->d.head_dim_v = 4;
    m->d.mask.causal = 1;
    m->r = (attn_ring_desc)ATTN_RING_DESC_INIT;
    m->r.seq = 24;
    m->r.layout = ATTN_RING_ZIGZAG;
    m->r.timeout_ms = 10000;
    int first;
    CU_ASSERT_FATAL(attn_ring_rows(&m->r, ranks, rank, &m->rows, &first) ==
                    ATTN_OK);
    size_t n = (size_t)m->rows * 8;
    void *q = fill(n, 5, 0), *k = fill(n, 6, 0), *v = fill(n, 7, 0);
    dev_make(&m->s, q, k, v, n, n, n, n, (size_t)m->rows * 2, 4);
    free(q);
    free(k);
    free(v);
}

/* O and lse still hold the sentinel. */
static int small_untouched(small *m)
{
    size_t n = (size_t)m->rows * 8;
    float *o = malloc((n + 1) * 4), *l = malloc((n + 1) * 4);
    get(m->s.o, 9 * 4, n * 4, o);
    get(m->s.lse, 2 * 4, (size_t)m->rows * 2 * 4, l);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= o[i] == 1234.5f && (i >= (size_t)m->rows * 2 || l[i] == 1234.5f);
    free(o);
    free(l);
    return ok;
}

static void expect_failed(small *m, attn_status st, attn_status want,
                          const char *test)
{
    char what[600];
    snprintf(what, sizeof what, "%s, rank %d of %d: status %s (%s)", test, rank,
             ranks, attn_status_string(st), attn_ring_last_error());
    HARNESS_EXPECT(st == want, what);
    HARNESS_EXPECT(attn_ring_last_error()[0] != '\0', what);
    HARNESS_EXPECT(small_untouched(m), what);
}

typedef struct fault {
    int rank, call, calls;
    double stall_s; /* > 0: that call sleeps this long, then computes */
} fault;

static attn_status faulty_sdpa_cl(attn_context *c, const attn_sdpa_desc *d,
                                  const attn_cl_buffers *b, cl_command_queue q,
                                  cl_uint n_wait, const cl_event *wait,
                                  cl_event *done, void *user)
{
    fault *f = user;
    if (rank == f->rank && ++f->calls == f->call) {
        if (f->stall_s <= 0)
            return ATTN_ERR_DEVICE;
        struct timespec ts = {0, (long)(f->stall_s * 1e9)};
        nanosleep(&ts, NULL);
    }
    return attn_sdpa_cl_buffers(c, d, b, q, n_wait, wait, done);
}

/* The last rank's second block fails: every rank returns an error, the
 * outputs stay untouched, and the next call succeeds. */
static void test_failure_mid_ring(void)
{
    small m;
    small_make(&m);
    fault f = {ranks - 1, 2, 0, 0};
    attn_status st = ring_run_cl(ctx, MPI_COMM_WORLD, &m.r, &m.d, &m.s.b, queue,
                                 0, NULL, faulty_sdpa_cl, &f);
    expect_failed(&m, st, ATTN_ERR_DEVICE, "block failing mid-ring");
    HARNESS_EXPECT(!strstr(attn_ring_last_error(), "timeout"),
                   attn_ring_last_error());
    st = attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, &m.r, &m.d, &m.s.b, queue, 0,
                           NULL);
    CU_ASSERT(st == ATTN_OK);
    dev_free(&m.s);
}

/* The last rank stalls for twice the timeout in its first block: the
 * ranks that wait for it return ATTN_ERR_DEVICE with o and lse untouched
 * (the late rank itself may find everything it needed and succeed).  On a
 * communicator of its own, freed after (attn_mpi.h). */
static void test_stalled_rank_times_out(void)
{
    MPI_Comm comm;
    CU_ASSERT_FATAL(MPI_Comm_dup(MPI_COMM_WORLD, &comm) == MPI_SUCCESS);
    small m;
    small_make(&m);
    m.r.timeout_ms = 300;
    fault f = {ranks - 1, 1, 0, 0.6};
    attn_status st = ring_run_cl(ctx, comm, &m.r, &m.d, &m.s.b, queue, 0, NULL,
                                 faulty_sdpa_cl, &f);
    if (rank != ranks - 1 || st != ATTN_OK)
        expect_failed(&m, st, ATTN_ERR_DEVICE,
                      "a rank stalling past the "
                      "timeout");
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Comm_free(&comm);
    dev_free(&m.s);
}

/* b NULL on the last rank, then an o that overlaps k on rank 0: every
 * rank returns ATTN_ERR_INVALID_ARGUMENT. */
static void test_bad_buffers_on_one_rank(void)
{
    small m;
    small_make(&m);
    attn_status st =
        attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, &m.r, &m.d,
                          rank == ranks - 1 ? NULL : &m.s.b, queue, 0, NULL);
    expect_failed(&m, st, ATTN_ERR_INVALID_ARGUMENT, "b NULL on the last rank");
    attn_cl_buffers b = m.s.b;
    if (rank == 0) {
        b.o = m.s.in;
        b.o_offset = b.k_offset + 1;
    }
    st = attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, &m.r, &m.d, &b, queue, 0, NULL);
    expect_failed(&m, st, ATTN_ERR_INVALID_ARGUMENT, "o overlaps k on rank 0");
    /* Strides (attn_sdpa_ring takes them on host slices) on the last
     * rank: the device ring takes contiguous buffers only. */
    if (rank == ranks - 1)
        m.d.k_strides[2] = m.d.head_dim;
    st = attn_sdpa_ring_cl(ctx, MPI_COMM_WORLD, &m.r, &m.d, &m.s.b, queue, 0,
                           NULL);
    expect_failed(&m, st, ATTN_ERR_UNSUPPORTED, "k_strides on the last rank");
    HARNESS_EXPECT(rank != ranks - 1 ||
                       strstr(attn_ring_last_error(), "contiguous buffers"),
                   attn_ring_last_error());
    dev_free(&m.s);
}

static int suite_init(void)
{
    attn_options o = ATTN_OPTIONS_INIT;
    harness_options(&o);
    o.threads = 1;
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return 1;
    cl_device_id dev;
    if (attn_context_cl_objects(ctx, &clctx, &dev, NULL) != ATTN_OK)
        return 1;
    cl_int err;
    queue = clCreateCommandQueue(clctx, dev, 0, &err);
    if (!queue)
        return 1;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    if (rank == 0 && attn_context_device(ctx, &info) == ATTN_OK)
        printf("device ring suite on %s\n", info.name);
    return 0;
}

static int suite_clean(void)
{
    if (queue)
        clReleaseCommandQueue(queue);
    attn_context_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    /* --single: MPI_THREAD_SINGLE, the blocks on the calling thread. */
    int single = argc > 1 && strcmp(argv[1], "--single") == 0, provided;
    if (MPI_Init_thread(&argc, &argv,
                        single ? MPI_THREAD_SINGLE : MPI_THREAD_FUNNELED,
                        &provided) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (!getenv("ATTN_TEST_DEVICE")) {
        printf("test_ring_cl: needs ATTN_TEST_DEVICE (an OpenCL device)\n");
        MPI_Finalize();
        return HARNESS_SKIP;
    }
    static const harness_test tests[] = {
        {"f32 on device buffers", test_f32},
        {"f16 on device buffers", test_f16},
        {"failure mid-ring", test_failure_mid_ring},
        {"stalled rank times out", test_stalled_rank_times_out},
        {"bad buffers on one rank", test_bad_buffers_on_one_rank},
        {"the backward on device buffers", test_backward},
        {"the backward's failures", test_backward_failures},
        {NULL, NULL}};
    int rc = harness_main("ring_cl", suite_init, suite_clean, tests);
    MPI_Finalize();
    return rc;
}
