/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_backward_cl_buffers (attn_cl.h) on OpenCL objects the test
 * owns: a cl_context and an in-order queue on the first OpenCL device
 * (PoCL's CPU device here), attn contexts made on them with
 * attn_context_create_cl (fallback off), buffers holding the tensors.
 * The forward's o and lse come from attn_sdpa on the same context.
 *
 *  - Against the double reference (tests/ref_bwd.c): dq, dk, dv and, when
 *    asked, dbias and d_additive_w; F32, F16 and BF16, GQA (4 query heads,
 *    2 kv heads), causal, a window, kv_len, a key bias (ATTN_BIAS_KEY)
 *    with dbias, the additive score with d_additive_w, head sizes 32, 40
 *    and 64 (and 40 with 32 for V), 1 to 70 query rows.
 *  - Bit for bit equal to attn_sdpa_backward on the same context (the
 *    same kernels): every gradient of every call that runs, in place
 *    (contiguous tensors at offset 0) and gathered (offsets, strides).
 *  - Tensors at non-zero offsets between guards; q and dq in BSHD with
 *    spare elements after each row, k and v interleaved in one buffer
 *    ([batch, seq_kv, 2 * heads_kv, dim]; dk and dv in those strides in
 *    buffers of their own), o and dO in BSHD with spare elements after each
 *    head; dq, dk and dv back to back in one buffer.  The guards, the gaps
 *    between strided rows of dq, dk and dv, and every byte of the inputs'
 *    buffers are as they were.
 *  - The backward variants forced by name (options.kernel "bwd_ref",
 *    "bwd_fused", "bwd_tiled"): each right where it takes the call;
 *    bwd_fused and bwd_tiled refuse dbias and the additive score with
 *    ATTN_ERR_UNSUPPORTED (as
 *    attn_sdpa_backward does), leaving every output byte and *done as
 *    they were.
 *  - An out-of-order queue (PoCL has them): strided and offset cases
 *    right, the library's commands ordered by their events.
 *  - Events: behind a user event (and a marker of another queue) the call
 *    returns at once, done is not complete and nothing is written until
 *    the user event is set; the descriptor's host arrays (bias, kv_len)
 *    may change once the call returns; after clWaitForEvents(done) the
 *    gradients are right.  done NULL with clFinish.
 *  - Refusals, each with its status, a message, nothing written and *done
 *    untouched: NULL ctx, d, g, buffers (each) or queue; a native context;
 *    n_wait > 0 with wait NULL; a queue or buffer of another cl_context; a
 *    buffer too small for its tensor at its offset; dq on q; dq and dk
 *    overlapping in one buffer (the message names both); dbias without a
 *    bias; d_additive_w with the dot score; an invalid descriptor;
 *    dbias with keep or kv_start (ATTN_ERR_UNSUPPORTED); a struct_size no
 *    layout has.
 *  - Left padding (q_start with kv_start, q_start alone, top-left causal
 *    diagonals the starts move) in place, at offsets, strided and with
 *    each variant forced: a padding row's dq exactly 0 (the reference's),
 *    the rest as above; the caller's lse left as it was.
 *  - Packed sequences (cu_seqlens_q, cu_seqlens_kv) at offsets, one
 *    without queries and one without keys: bit for bit attn_sdpa_backward
 *    (which tests/test_varlen.c and test_backward.c check), their zero
 *    rows zero, the bytes around the gradients untouched; F32, F16, BF16,
 *    causal or not, AUTO and both variants forced; the additive score
 *    with d additive_w (summed over the sequences) bit for bit too.
 *  - attn_cl_grad_buffers_init_sized (NULL, a size no layout has, sizeof)
 *    and a call with struct_size 0 (the first layout).
 *
 * Tolerances, those of tests/test_backward.c and tests/test_bwd_grads.c:
 * per element e of a gradient whose reference has the largest magnitude
 * M, |got - want| <= TOL * (M + 1) + TOL * |want|, with TOL 1e-4 for F32
 * (float sums, P recomputed from a float lse), 3e-4 for the additive score
 * in F32 (tanhf within a few ulps, summed over head_dim per pair), 8e-3
 * for F16 (O and the gradients stored as binary16, unit roundoff 2^-11)
 * and 8 times that, 6.4e-2, for BF16 (bfloat16's unit roundoff is 2^-8);
 * dbias and d_additive_w (float) take the call's TOL, being computed from
 * the same rounded inputs and O.  A dbias entry that no visible score
 * reads must be exactly 0.
 *
 * Without an OpenCL platform the suite prints SKIP and exits 77.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn_cl.h"
#include "harness.h"
#include "ref.h"

#define TOL_F32 1e-4
#define TOL_ADD 3e-4
#define TOL_F16 8e-3
/* TOL_F16 with bfloat16's rounding unit (2^-8) in place of binary16's */
#define TOL_BF16 (TOL_F16 * 8.0)

#define GUARD 64 /* bytes after the tensors of each guarded buffer */

/* USE_STARTS: left padding, q_start and kv_start; USE_Q_START: q_start
 * alone (prob_make sets them) */
enum {
    WANT_DBIAS = 1,
    WANT_DW = 2,
    USE_KV_LEN = 4,
    USE_STARTS = 8,
    USE_Q_START = 16
};

/* Stands for an event the caller keeps in *done: an error must leave it. */
static char sentinel_storage;
#define SENTINEL ((cl_event)(void *)&sentinel_storage)

static cl_device_id device;
static cl_context clctx;
static cl_command_queue queue;
/* AUTO, and the backward variants forced by name; fallback off */
static attn_context *ctx_auto, *ctx_ref, *ctx_fused, *ctx_tiled;

static int event_complete(cl_event ev)
{
    cl_int st = -1;
    if (clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st,
                       NULL) != CL_SUCCESS)
        return 0;
    return st == CL_COMPLETE;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static attn_sdpa_desc shape(int b, int hq, int hkv, int sq, int skv, int dh,
                            int dv, attn_dtype dt)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    d.batch = b;
    d.heads_q = hq;
    d.heads_kv = hkv;
    d.seq_q = sq;
    d.seq_kv = skv;
    d.head_dim = dh;
    d.head_dim_v = dv;
    d.dtype = dt;
    return d;
}

/* ---- one problem: inputs, forward, reference, attn_sdpa_backward -------- */

typedef struct prob {
    attn_sdpa_desc d; /* contiguous; its host arrays below */
    size_t es;        /* bytes of an element of d.dtype */
    size_t n[4];      /* elements of q, k, v and o (dO as o) */
    size_t rows;      /* batch * heads_q * seq_q (lse) */
    size_t nbias;     /* elements of the bias */
    size_t nb, nw;    /* dbias, d_additive_w floats; 0: not asked */
    void *x[4];       /* q, k, v, dO */
    void *o;
    float *lse, *bias, *w;
    int32_t kv_len[4], q_start[4], kv_start[4];
    attn_status host;       /* attn_sdpa_backward's status */
    void *h[3];             /* its dq, dk, dv */
    float *hb, *hw;         /* its dbias, d_additive_w */
    double *r[3], *rb, *rw; /* the reference's */
    unsigned char *reached; /* [nb]: a visible score reads the entry */
} prob;

static void *fill(ref_rng *r, attn_dtype dt, size_t n)
{
    void *x = malloc(n * (dt == ATTN_F32 ? 4 : 2) + 4);
    if (x && dt == ATTN_BF16)
        ref_fill_bf16(r, x, n, -1.0, 1.0);
    else if (x && dt == ATTN_F16)
        ref_fill_f16(r, x, n, -1.0, 1.0);
    else if (x)
        ref_fill_f32(r, x, n, -1.0, 1.0);
    return x;
}

static double *to_f64(attn_dtype dt, const void *x, size_t n)
{
    double *y = malloc(n * sizeof *y + 8);
    for (size_t i = 0; y && i < n; i++)
        y[i] = ref_elem(dt, x, i);
    return y;
}

static void prob_free(prob *p)
{
    for (int t = 0; t < 4; t++)
        free(p->x[t]);
    for (int t = 0; t < 3; t++)
        free(p->h[t]), free(p->r[t]);
    free(p->o), free(p->lse), free(p->bias), free(p->w), free(p->hb);
    free(p->hw), free(p->rb), free(p->rw), free(p->reached);
    memset(p, 0, sizeof *p);
}

/* Random inputs for shape s (a bias of s's kind with -INFINITY at every
 * 9th entry, additive_w for the additive score, kv_len with USE_KV_LEN),
 * the forward on ctx, the reference's gradients and attn_sdpa_backward's
 * on ctx (its status kept: a forced variant may refuse).  1 on success. */
static int prob_make(prob *p, attn_context *ctx, const attn_sdpa_desc *s,
                     int want, uint64_t seed)
{
    const size_t B = (size_t)s->batch, HQ = (size_t)s->heads_q,
                 HK = (size_t)s->heads_kv, SQ = (size_t)s->seq_q,
                 SK = (size_t)s->seq_kv, D = (size_t)s->head_dim,
                 DV = (size_t)s->head_dim_v;
    double *x8[4] = {NULL, NULL, NULL, NULL};
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    attn_status st;
    ref_rng r;
    int ok = 0;

    memset(p, 0, sizeof *p);
    if (B > 4)
        return 0;
    p->d = *s;
    p->es = s->dtype == ATTN_F32 ? 4 : 2;
    p->rows = B * HQ * SQ;
    p->n[0] = p->rows * D;
    p->n[1] = B * HK * SK * D;
    p->n[2] = B * HK * SK * DV;
    p->n[3] = p->rows * DV;
    ref_rng_seed(&r, seed);
    if (s->mask.bias_kind != ATTN_BIAS_NONE) {
        p->nbias = ref_bias_index(s, s->batch - 1, s->heads_q - 1, s->seq_q - 1,
                                  s->seq_kv - 1) +
                   1;
        p->bias = malloc(p->nbias * sizeof *p->bias);
        if (!p->bias)
            return 0;
        ref_fill_f32(&r, p->bias, p->nbias, -2.0, 2.0);
        for (size_t i = 4; i < p->nbias; i += 9)
            p->bias[i] = -INFINITY;
        p->d.mask.bias = p->bias;
        if (want & WANT_DBIAS)
            p->nb = p->nbias;
    }
    if (s->score == ATTN_SCORE_ADDITIVE) {
        p->w = malloc(HQ * D * sizeof *p->w);
        if (!p->w)
            return 0;
        ref_fill_f32(&r, p->w, HQ * D, -1.0, 1.0);
        p->d.additive_w = p->w;
        if (want & WANT_DW)
            p->nw = HQ * D;
    }
    if (want & USE_KV_LEN) {
        for (size_t b = 0; b < B; b++)
            p->kv_len[b] = (int32_t)(b % 2 ? SK * 2 / 3 + 1 : SK);
        p->d.mask.kv_len = p->kv_len;
    }
    if (want & (USE_STARTS | USE_Q_START)) { /* some rows and keys padding */
        for (size_t b = 0; b < B; b++) {
            p->q_start[b] = (int32_t)(b % 2 ? SQ / 2 + 1 : SQ / 3);
            p->kv_start[b] = (int32_t)(b % 2 ? SK / 4 : SK / 3);
        }
        p->d.q_start = p->q_start;
        if (want & USE_STARTS)
            p->d.kv_start = p->kv_start;
    }
    for (int t = 0; t < 4; t++) {
        p->x[t] = fill(&r, s->dtype, p->n[t]);
        x8[t] = p->x[t] ? to_f64(s->dtype, p->x[t], p->n[t]) : NULL;
        if (!x8[t])
            goto out;
    }
    for (int t = 0; t < 3; t++) {
        p->h[t] = malloc(p->n[t] * p->es + 4);
        p->r[t] = malloc(p->n[t] * sizeof(double) + 8);
        if (!p->h[t] || !p->r[t])
            goto out;
    }
    p->o = malloc(p->n[3] * p->es + 4);
    p->lse = malloc(p->rows * sizeof *p->lse);
    p->hb = malloc(p->nb * sizeof *p->hb + 4);
    p->hw = malloc(p->nw * sizeof *p->hw + 4);
    p->rb = malloc(p->nb * sizeof *p->rb + 8);
    p->rw = malloc(p->nw * sizeof *p->rw + 8);
    p->reached = malloc(p->nb + 1);
    if (!p->o || !p->lse || !p->hb || !p->hw || !p->rb || !p->rw || !p->reached)
        goto out;
    st = attn_sdpa(ctx, &p->d, p->x[0], p->x[1], p->x[2], p->o, p->lse);
    if (st != ATTN_OK) {
        printf("\n  the forward: %s: %s\n", attn_status_string(st),
               attn_context_last_error(ctx));
        goto out;
    }
    /* the padding rows' lse (-INFINITY from the forward) as a finite
     * number: the backward must not take them from the caller */
    for (size_t b = 0; p->d.q_start && b < B; b++)
        for (size_t h = 0; h < HQ; h++)
            for (size_t i = 0; i < (size_t)p->d.q_start[b] && i < SQ; i++)
                p->lse[(b * HQ + h) * SQ + i] = 0.25f;
    if (ref_sdpa_backward_all_f64(&p->d, x8[0], x8[1], x8[2], x8[3], p->r[0],
                                  p->r[1], p->r[2], p->nb ? p->rb : NULL,
                                  p->nw ? p->rw : NULL) != 0)
        goto out;
    memset(p->reached, 0, p->nb + 1);
    for (int b = 0; p->nb && b < s->batch; b++)
        for (int h = 0; h < s->heads_q; h++)
            for (int i = 0; i < s->seq_q; i++)
                for (int j = 0; j < s->seq_kv; j++) {
                    double sc;
                    if (ref_score(&p->d, x8[0], x8[1], b, h, i, j, &sc) &&
                        sc != -INFINITY)
                        p->reached[ref_bias_index(&p->d, b, h, i, j)] = 1;
                }
    g.q = p->x[0], g.k = p->x[1], g.v = p->x[2], g.d_o = p->x[3];
    g.o = p->o, g.lse = p->lse;
    g.dq = p->h[0], g.dk = p->h[1], g.dv = p->h[2];
    g.dbias = p->nb ? p->hb : NULL;
    g.d_additive_w = p->nw ? p->hw : NULL;
    p->host = attn_sdpa_backward(ctx, &p->d, &g);
    ok = 1;
out:
    for (int t = 0; t < 4; t++)
        free(x8[t]);
    return ok;
}

static double tol_of(const attn_sdpa_desc *d)
{
    return d->dtype == ATTN_F16              ? TOL_F16
           : d->dtype == ATTN_BF16           ? TOL_BF16
           : d->score == ATTN_SCORE_ADDITIVE ? TOL_ADD
                                             : TOL_F32;
}

/* Every element of got (dtype dt) within tol of want; where reached (NULL:
 * everywhere) is 0, the entry must be exactly 0. */
static int close_to(const char *what, const char *name, attn_dtype dt,
                    const void *got, const double *want, size_t n, double tol,
                    const unsigned char *reached)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double g = ref_elem(dt, got, i);
        const int ok =
            reached && !reached[i]
                ? g == 0.0
                : fabs(g - want[i]) <= tol * (m + 1.0) + tol * fabs(want[i]);
        if (!ok) {
            printf("\n  %s: %s[%zu] is %.9g, want %.9g (max %.3g)\n", what,
                   name, i, g, want[i], m);
            return 0;
        }
    }
    return 1;
}

/* ---- the tensors in the caller's buffers -------------------------------- */

enum { T_Q, T_K, T_V, T_O, T_DO, T_DQ, T_DK, T_DV, T_LSE, T_DB, T_DW, NT };

static const char *const tname[NT] = {
    "q", "k", "v", "o", "dO", "dq", "dk", "dv", "lse", "dbias", "d_additive_w"};

enum {
    LAY_IN_PLACE, /* each tensor a buffer of its own size, offset 0 */
    LAY_OFFSETS,  /* each in a buffer of its own at an offset, guards after */
    LAY_STRIDED,  /* strides (the file's comment), offsets, guards */
    LAY_ONE_OUT,  /* dq, dk, dv back to back in one buffer, guards after */
    LAY_MODE = 0xff,
    RUN_SIZE0 = 0x100 /* the call with struct_size 0 */
};

typedef struct lay {
    attn_sdpa_desc d; /* the problem's, with the layout's strides */
    attn_cl_grad_buffers g;
    int used[NT];
    int buf[NT];       /* the buffer the tensor lies in */
    size_t off[NT];    /* its offset, in its elements */
    size_t esz[NT];    /* bytes of its element */
    size_t cnt[NT][4]; /* batch, heads, rows, row width */
    int64_t st[NT][3]; /* batch, head, row strides */
    cl_mem mem[NT];    /* by buffer */
    unsigned char *img[NT];
    size_t bytes[NT];
    int has_out[NT]; /* the buffer holds an output */
} lay;

static size_t row_at(const int64_t st[3], size_t b, size_t h, size_t i)
{
    return (size_t)st[0] * b + (size_t)st[1] * h + (size_t)st[2] * i;
}

static size_t extent_of(const lay *L, int t)
{
    size_t e = L->cnt[t][3];
    for (int k = 0; k < 3; k++)
        e += (size_t)L->st[t][k] * (L->cnt[t][k] - 1);
    return e;
}

/* Tensor t between contiguous host memory and the image of its buffer. */
static void move_rows(const lay *L, int t, unsigned char *image, void *contig,
                      int to_image)
{
    const size_t es = L->esz[t], w = L->cnt[t][3];
    size_t r = 0;
    for (size_t b = 0; b < L->cnt[t][0]; b++)
        for (size_t h = 0; h < L->cnt[t][1]; h++)
            for (size_t i = 0; i < L->cnt[t][2]; i++, r++) {
                unsigned char *s =
                    image + (L->off[t] + row_at(L->st[t], b, h, i)) * es;
                unsigned char *c = (unsigned char *)contig + r * w * es;
                if (to_image)
                    memcpy(s, c, w * es);
                else
                    memcpy(c, s, w * es);
            }
}

static cl_mem buffer_of(const void *image, size_t bytes)
{
    cl_int rc;
    cl_mem m = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              bytes, (void *)image, &rc);
    return rc == CL_SUCCESS ? m : NULL;
}

static unsigned char *read_back(cl_command_queue q, cl_mem m, size_t bytes)
{
    unsigned char *x = malloc(bytes);
    if (x && clEnqueueReadBuffer(q, m, CL_TRUE, 0, bytes, x, 0, NULL, NULL) !=
                 CL_SUCCESS) {
        free(x);
        x = NULL;
    }
    return x;
}

/* Whether buffer m still holds image (bytes). */
static int same_as(cl_command_queue q, cl_mem m, const unsigned char *image,
                   size_t bytes)
{
    unsigned char *now = read_back(q, m, bytes);
    int same = now && memcmp(now, image, bytes) == 0;
    free(now);
    return same;
}

static void lay_free(lay *L)
{
    for (int b = 0; b < NT; b++) {
        if (L->mem[b])
            clReleaseMemObject(L->mem[b]);
        free(L->img[b]);
    }
    memset(L, 0, sizeof *L);
}

/* Places p's tensors (outputs: the pattern) in buffers of layout mode. */
static int lay_make(lay *L, const prob *p, int mode)
{
    const size_t B = (size_t)p->d.batch, HQ = (size_t)p->d.heads_q,
                 HK = (size_t)p->d.heads_kv, SQ = (size_t)p->d.seq_q,
                 SK = (size_t)p->d.seq_kv, D = (size_t)p->d.head_dim,
                 DV = (size_t)p->d.head_dim_v, wkv = D > DV ? D : DV;
    static const size_t offsets[NT] = {5, 17, 3, 11, 7, 9, 13, 1, 6, 2, 4};
    const size_t guard = mode == LAY_IN_PLACE ? 0 : GUARD;
    void *src[NT] = {p->x[0], p->x[1], p->x[2], p->o, p->x[3], NULL,
                     NULL,    NULL,    p->lse,  NULL, NULL};
    memset(L, 0, sizeof *L);
    L->d = p->d;
    for (int t = 0; t < NT; t++) {
        const int qs = t == T_Q || t == T_O || t == T_DO || t == T_DQ;
        const int wide = t == T_Q || t == T_K || t == T_DQ || t == T_DK;
        L->used[t] = t <= T_LSE || (t == T_DB && p->nb) || (t == T_DW && p->nw);
        L->buf[t] = t;
        L->esz[t] = t < T_LSE ? p->es : 4;
        if (t < T_LSE) {
            L->cnt[t][0] = B;
            L->cnt[t][1] = qs ? HQ : HK;
            L->cnt[t][2] = qs ? SQ : SK;
            L->cnt[t][3] = wide ? D : DV;
        } else {
            L->cnt[t][0] = L->cnt[t][1] = L->cnt[t][2] = 1;
            L->cnt[t][3] = t == T_LSE ? p->rows : t == T_DB ? p->nb : p->nw;
        }
        L->st[t][2] = (int64_t)L->cnt[t][3];
        L->st[t][1] = (int64_t)(L->cnt[t][2] * L->cnt[t][3]);
        L->st[t][0] = (int64_t)(L->cnt[t][1] * L->cnt[t][2] * L->cnt[t][3]);
        if (mode != LAY_IN_PLACE && mode != LAY_ONE_OUT)
            L->off[t] = offsets[t];
    }
    if (mode == LAY_STRIDED) {
        /* q, dq: BSHD with 3 spare elements after each row */
        const int64_t sq[3] = {(int64_t)(SQ * (HQ * D + 3)), (int64_t)D,
                               (int64_t)(HQ * D + 3)};
        /* k, v, dk, dv: [B, SK, 2 * HK, wkv], v in the second half */
        const int64_t skv[3] = {(int64_t)(SK * 2 * HK * wkv), (int64_t)wkv,
                                (int64_t)(2 * HK * wkv)};
        /* o, dO: BSHD with 2 spare elements after each head's row */
        const int64_t so[3] = {(int64_t)(SQ * HQ * (DV + 2)), (int64_t)(DV + 2),
                               (int64_t)(HQ * (DV + 2))};
        for (int k = 0; k < 3; k++) {
            L->st[T_Q][k] = L->st[T_DQ][k] = L->d.q_strides[k] = sq[k];
            L->st[T_K][k] = L->st[T_DK][k] = L->d.k_strides[k] = skv[k];
            L->st[T_V][k] = L->st[T_DV][k] = L->d.v_strides[k] = skv[k];
            L->st[T_O][k] = L->st[T_DO][k] = L->d.o_strides[k] = so[k];
        }
        L->buf[T_V] = T_K;
        L->off[T_V] = L->off[T_K] + HK * wkv;
        /* dv's buffer: the k slots of each row are its gaps */
        L->off[T_DV] = 3 + HK * wkv;
    }
    if (mode == LAY_ONE_OUT) {
        L->buf[T_DK] = L->buf[T_DV] = T_DQ;
        L->off[T_DQ] = 3;
        L->off[T_DK] = 3 + p->n[0];
        L->off[T_DV] = 3 + p->n[0] + p->n[1];
    }
    for (int t = 0; t < NT; t++) {
        const int b = L->buf[t];
        size_t end;
        if (!L->used[t])
            continue;
        end = (L->off[t] + extent_of(L, t)) * L->esz[t] + guard;
        L->bytes[b] = end > L->bytes[b] ? end : L->bytes[b];
        L->has_out[b] |= t >= T_DQ && t != T_LSE;
    }
    for (int b = 0; b < NT; b++) {
        if (!L->bytes[b])
            continue;
        L->img[b] = malloc(L->bytes[b]);
        if (!L->img[b])
            return 0;
        for (size_t i = 0; i < L->bytes[b]; i++)
            L->img[b][i] = (unsigned char)(0xa5 ^ (i * 13) ^ ((size_t)b << 4));
    }
    for (int t = 0; t < NT; t++)
        if (L->used[t] && src[t])
            move_rows(L, t, L->img[L->buf[t]], src[t], 1);
    for (int b = 0; b < NT; b++)
        if (L->bytes[b] && !(L->mem[b] = buffer_of(L->img[b], L->bytes[b])))
            return 0;
    L->g = (attn_cl_grad_buffers)ATTN_CL_GRAD_BUFFERS_INIT;
    {
        cl_mem *const m[NT] = {&L->g.q,     &L->g.k,           &L->g.v,
                               &L->g.o,     &L->g.d_o,         &L->g.dq,
                               &L->g.dk,    &L->g.dv,          &L->g.lse,
                               &L->g.dbias, &L->g.d_additive_w};
        size_t *const o[NT] = {
            &L->g.q_offset,     &L->g.k_offset,           &L->g.v_offset,
            &L->g.o_offset,     &L->g.d_o_offset,         &L->g.dq_offset,
            &L->g.dk_offset,    &L->g.dv_offset,          &L->g.lse_offset,
            &L->g.dbias_offset, &L->g.d_additive_w_offset};
        for (int t = 0; t < NT; t++)
            if (L->used[t]) {
                *m[t] = L->mem[L->buf[t]];
                *o[t] = L->off[t];
            }
    }
    return 1;
}

/* Every buffer of L as lay_make wrote it, read through q. */
static int lay_untouched(const lay *L, cl_command_queue q)
{
    int ok = 1;
    for (int b = 0; b < NT; b++)
        if (L->bytes[b])
            ok &= same_as(q, L->mem[b], L->img[b], L->bytes[b]);
    return ok;
}

/* After a call: the inputs' buffers untouched, the outputs' guards and
 * gaps untouched, the gradients within the tolerance of the reference and
 * equal to attn_sdpa_backward's bit for bit. */
static int lay_check(const lay *L, const prob *p, const char *what)
{
    unsigned char *now[NT] = {NULL};
    void *got[NT] = {NULL};
    const double *want[NT] = {NULL};
    const void *host[NT] = {NULL};
    const double tol = tol_of(&p->d);
    int ok = 1;
    want[T_DQ] = p->r[0], want[T_DK] = p->r[1], want[T_DV] = p->r[2];
    want[T_DB] = p->rb, want[T_DW] = p->rw;
    host[T_DQ] = p->h[0], host[T_DK] = p->h[1], host[T_DV] = p->h[2];
    host[T_DB] = p->hb, host[T_DW] = p->hw;
    if (clFinish(queue) != CL_SUCCESS)
        return 0;
    for (int b = 0; b < NT; b++) {
        if (!L->bytes[b])
            continue;
        now[b] = read_back(queue, L->mem[b], L->bytes[b]);
        if (!now[b]) {
            ok = 0;
            goto out;
        }
        if (!L->has_out[b] && memcmp(now[b], L->img[b], L->bytes[b]) != 0) {
            printf("\n  %s: the buffer of %s was written\n", what, tname[b]);
            ok = 0;
        }
    }
    /* guards and gaps: the bytes no output covers */
    for (int b = 0; b < NT; b++) {
        unsigned char *mark;
        if (!L->has_out[b])
            continue;
        mark = calloc(L->bytes[b], 1);
        if (!mark) {
            ok = 0;
            goto out;
        }
        for (int t = T_DQ; t < NT; t++) {
            if (!L->used[t] || t == T_LSE || L->buf[t] != b)
                continue;
            for (size_t x = 0; x < L->cnt[t][0]; x++)
                for (size_t h = 0; h < L->cnt[t][1]; h++)
                    for (size_t i = 0; i < L->cnt[t][2]; i++)
                        memset(mark + (L->off[t] + row_at(L->st[t], x, h, i)) *
                                          L->esz[t],
                               1, L->cnt[t][3] * L->esz[t]);
        }
        for (size_t i = 0; i < L->bytes[b]; i++)
            if (!mark[i] && now[b][i] != L->img[b][i]) {
                printf("\n  %s: byte %zu of %s's buffer (a guard or gap) was "
                       "written\n",
                       what, i, tname[b]);
                ok = 0;
                break;
            }
        free(mark);
    }
    for (int t = T_DQ; t < NT; t++) {
        const size_t n =
            L->cnt[t][0] * L->cnt[t][1] * L->cnt[t][2] * L->cnt[t][3];
        if (!L->used[t] || t == T_LSE)
            continue;
        got[t] = malloc(n * L->esz[t] + 4);
        if (!got[t]) {
            ok = 0;
            goto out;
        }
        move_rows(L, t, now[L->buf[t]], got[t], 0);
        if (!close_to(what, tname[t], t < T_LSE ? p->d.dtype : ATTN_F32, got[t],
                      want[t], n, tol, t == T_DB ? p->reached : NULL))
            ok = 0;
        if (p->host == ATTN_OK && memcmp(got[t], host[t], n * L->esz[t])) {
            printf("\n  %s: %s differs from attn_sdpa_backward's\n", what,
                   tname[t]);
            ok = 0;
        }
    }
out:
    for (int t = 0; t < NT; t++)
        free(now[t]), free(got[t]);
    return ok;
}

/* One call of p on ctx in layout mode (| RUN_SIZE0); expect ATTN_OK (then
 * checked with lay_check) or the status of a refusal (nothing written,
 * *done untouched, attn_sdpa_backward refusing alike). */
static int run(attn_context *ctx, const prob *p, int mode, attn_status expect,
               const char *what)
{
    lay L;
    cl_event done = SENTINEL;
    attn_status st;
    int ok;
    if (!lay_make(&L, p, mode & LAY_MODE)) {
        lay_free(&L);
        HARNESS_EXPECT(0, what);
        return 0;
    }
    if (mode & RUN_SIZE0)
        L.g.struct_size = 0;
    st = attn_sdpa_backward_cl_buffers(ctx, &L.d, &L.g, queue, 0, NULL, &done);
    if (st != expect)
        printf("\n  %s: %s, want %s: %s\n", what, attn_status_string(st),
               attn_status_string(expect), attn_context_last_error(ctx));
    if (expect != ATTN_OK) {
        ok = st == expect && done == SENTINEL &&
             attn_context_last_error(ctx)[0] != '\0';
        HARNESS_EXPECT(p->host == expect, what);
        HARNESS_EXPECT(clFinish(queue) == CL_SUCCESS, what);
        ok &= lay_untouched(&L, queue);
    } else {
        ok = st == ATTN_OK && done != NULL && done != SENTINEL;
        if (ok) {
            ok =
                clWaitForEvents(1, &done) == CL_SUCCESS && event_complete(done);
            clReleaseEvent(done);
        }
        if (p->host != ATTN_OK)
            printf("\n  %s: attn_sdpa_backward: %s\n", what,
                   attn_status_string(p->host));
        ok &= p->host == ATTN_OK;
        ok &= lay_check(&L, p, what);
    }
    HARNESS_EXPECT(ok, what);
    lay_free(&L);
    return ok;
}

/* ---- the cases ------------------------------------------------------- */

typedef struct bcase {
    const char *what;
    attn_sdpa_desc s;
    int want;
} bcase;

static attn_sdpa_desc masked(attn_sdpa_desc d, int causal, int window,
                             attn_bias_kind bias, attn_score score)
{
    d.mask.causal = causal;
    d.mask.window = window;
    d.mask.bias_kind = bias;
    d.score = score;
    return d;
}

/* d with its causal diagonal measured from the starts */
static attn_sdpa_desc top_left(attn_sdpa_desc d)
{
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    return d;
}

#define DOT ATTN_SCORE_DOT
#define ADD ATTN_SCORE_ADDITIVE
#define NOB ATTN_BIAS_NONE
#define KEY ATTN_BIAS_KEY

/* Runs each case in each of the modes (0-terminated after the first). */
static void run_cases(attn_context *ctx, const bcase *cs, size_t n,
                      const int *modes, size_t nmodes, const char *prefix,
                      uint64_t seed)
{
    static const char *const mname[] = {"in place", "offsets", "strided",
                                        "one output buffer"};
    for (size_t i = 0; i < n; i++) {
        prob p;
        char what[160];
        snprintf(what, sizeof what, "%s%s", prefix, cs[i].what);
        if (!prob_make(&p, ctx, &cs[i].s, cs[i].want, seed + i)) {
            HARNESS_EXPECT(0, what);
            prob_free(&p);
            continue;
        }
        for (size_t m = 0; m < nmodes; m++) {
            snprintf(what, sizeof what, "%s%s, %s", prefix, cs[i].what,
                     mname[modes[m] & LAY_MODE]);
            run(ctx, &p, modes[m], ATTN_OK, what);
        }
        prob_free(&p);
    }
}

/* 1 and 2: against the reference and attn_sdpa_backward, in place and at
 * offsets. */
static void test_reference(void)
{
    const bcase cs[] = {
        {"F32, GQA", shape(2, 4, 2, 37, 53, 32, 32, ATTN_F32), 0},
        {"F32, head size 64, causal",
         masked(shape(1, 2, 1, 70, 45, 64, 64, ATTN_F32), 1, 0, NOB, DOT), 0},
        {"F32, head size 40, causal, window, kv_len, key bias, dbias",
         masked(shape(2, 4, 2, 21, 70, 40, 40, ATTN_F32), 1, 16, KEY, DOT),
         WANT_DBIAS | USE_KV_LEN},
        {"F32, one query row, kv_len", shape(2, 4, 2, 1, 70, 32, 32, ATTN_F32),
         USE_KV_LEN},
        {"F32, additive, d_additive_w",
         masked(shape(2, 4, 2, 19, 33, 32, 32, ATTN_F32), 0, 0, NOB, ADD),
         WANT_DW},
        {"F32, additive, causal, kv_len, key bias, dbias, d_additive_w",
         masked(shape(2, 4, 2, 19, 33, 32, 32, ATTN_F32), 1, 0, KEY, ADD),
         WANT_DW | WANT_DBIAS | USE_KV_LEN},
        {"F16, GQA, causal",
         masked(shape(2, 4, 2, 13, 29, 32, 32, ATTN_F16), 1, 0, NOB, DOT), 0},
        {"F16, head size 64, window, kv_len, key bias, dbias",
         masked(shape(2, 4, 2, 23, 41, 64, 64, ATTN_F16), 0, 8, KEY, DOT),
         WANT_DBIAS | USE_KV_LEN},
        {"F16, head size 40, additive, d_additive_w",
         masked(shape(1, 4, 2, 17, 30, 40, 40, ATTN_F16), 0, 0, NOB, ADD),
         WANT_DW},
        {"BF16, GQA, causal, kv_len",
         masked(shape(2, 4, 2, 13, 29, 32, 32, ATTN_BF16), 1, 0, NOB, DOT),
         USE_KV_LEN},
        {"BF16, head size 40, key bias, dbias",
         masked(shape(2, 4, 2, 9, 31, 40, 40, ATTN_BF16), 0, 0, KEY, DOT),
         WANT_DBIAS},
        {"F32, GQA, left padding (q_start, kv_start), kv_len",
         shape(2, 4, 2, 21, 37, 32, 32, ATTN_F32), USE_STARTS | USE_KV_LEN},
        {"F32, left padding, top-left causal",
         top_left(
             masked(shape(2, 4, 2, 25, 33, 64, 64, ATTN_F32), 1, 0, NOB, DOT)),
         USE_STARTS},
        {"F32, q_start alone, key bias, dbias",
         masked(shape(2, 4, 2, 17, 29, 32, 32, ATTN_F32), 0, 0, KEY, DOT),
         USE_Q_START | WANT_DBIAS},
        {"F16, left padding, causal, window",
         masked(shape(2, 4, 2, 19, 41, 32, 32, ATTN_F16), 1, 9, NOB, DOT),
         USE_STARTS},
        {"BF16, q_start alone, top-left causal",
         top_left(
             masked(shape(2, 4, 2, 13, 29, 40, 40, ATTN_BF16), 1, 0, NOB, DOT)),
         USE_Q_START},
    };
    static const int modes[] = {LAY_IN_PLACE, LAY_OFFSETS};
    run_cases(ctx_auto, cs, sizeof cs / sizeof cs[0], modes, 2, "", 100);
}

/* 3: strides, k and v in one buffer, dq, dk and dv in one buffer. */
static void test_strided(void)
{
    const bcase cs[] = {
        {"F32, GQA, kv_len, key bias, dbias",
         masked(shape(2, 4, 2, 21, 37, 32, 32, ATTN_F32), 0, 0, KEY, DOT),
         WANT_DBIAS | USE_KV_LEN},
        {"F32, head sizes 40 and 32, causal",
         masked(shape(2, 4, 2, 19, 23, 40, 32, ATTN_F32), 1, 0, NOB, DOT), 0},
        {"F32, additive, d_additive_w",
         masked(shape(1, 4, 2, 15, 27, 32, 32, ATTN_F32), 0, 0, NOB, ADD),
         WANT_DW},
        {"F16, head size 64, causal, window",
         masked(shape(2, 4, 2, 17, 33, 64, 64, ATTN_F16), 1, 9, NOB, DOT), 0},
        {"BF16, GQA",
         masked(shape(2, 4, 2, 11, 19, 32, 32, ATTN_BF16), 0, 0, NOB, DOT), 0},
        {"F32, left padding, top-left causal, kv_len",
         top_left(
             masked(shape(2, 4, 2, 21, 37, 32, 32, ATTN_F32), 1, 0, NOB, DOT)),
         USE_STARTS | USE_KV_LEN},
    };
    static const int modes[] = {LAY_STRIDED, LAY_ONE_OUT};
    run_cases(ctx_auto, cs, sizeof cs / sizeof cs[0], modes, 2, "", 200);
}

/* The strided cases on an out-of-order queue (where the device offers
 * one): the library's commands (gathers, kernels, scatters) must wait
 * for each other through their events, not through the queue's order. */
static void test_out_of_order(void)
{
    const bcase cs[] = {
        {"out of order: F32, GQA, kv_len, key bias, dbias",
         masked(shape(2, 4, 2, 21, 37, 32, 32, ATTN_F32), 0, 0, KEY, DOT),
         WANT_DBIAS | USE_KV_LEN},
        {"out of order: F32, additive, d_additive_w",
         masked(shape(1, 4, 2, 15, 27, 32, 32, ATTN_F32), 0, 0, NOB, ADD),
         WANT_DW},
        {"out of order: F16, causal, window",
         masked(shape(2, 4, 2, 17, 33, 64, 64, ATTN_F16), 1, 9, NOB, DOT), 0},
    };
    static const int modes[] = {LAY_STRIDED, LAY_OFFSETS};
    cl_command_queue_properties props = 0;
    cl_command_queue in_order = queue, ooo;
    cl_int rc;
    if (clGetDeviceInfo(device, CL_DEVICE_QUEUE_PROPERTIES, sizeof props,
                        &props, NULL) != CL_SUCCESS ||
        !(props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)) {
        printf("\n  out-of-order queues: the device has none, not run");
        return;
    }
    ooo = clCreateCommandQueue(clctx, device,
                               CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &rc);
    CU_ASSERT_FATAL(rc == CL_SUCCESS && ooo != NULL);
    queue = ooo; /* run() enqueues on the global queue */
    run_cases(ctx_auto, cs, sizeof cs / sizeof cs[0], modes, 2, "", 300);
    queue = in_order;
    clReleaseCommandQueue(ooo);
}

/* 4: the backward variants forced by name. */
static void test_forced(void)
{
    const bcase both[] = {
        {"F32, GQA, causal",
         masked(shape(2, 4, 2, 25, 31, 32, 32, ATTN_F32), 1, 0, NOB, DOT), 0},
        {"F32, key bias (no dbias), kv_len",
         masked(shape(2, 4, 2, 13, 40, 40, 40, ATTN_F32), 0, 0, KEY, DOT),
         USE_KV_LEN},
        {"F16, window, kv_len",
         masked(shape(2, 4, 2, 19, 29, 64, 64, ATTN_F16), 0, 7, NOB, DOT),
         USE_KV_LEN},
        {"BF16, causal",
         masked(shape(1, 4, 2, 9, 21, 32, 32, ATTN_BF16), 1, 0, NOB, DOT), 0},
        {"F32, left padding, top-left causal",
         top_left(
             masked(shape(2, 4, 2, 23, 31, 32, 32, ATTN_F32), 1, 0, NOB, DOT)),
         USE_STARTS},
        {"F16, q_start alone, kv_len",
         masked(shape(2, 4, 2, 15, 26, 64, 64, ATTN_F16), 0, 0, NOB, DOT),
         USE_Q_START | USE_KV_LEN},
    };
    /* bwd_ref takes these; bwd_fused and bwd_tiled refuse them */
    const bcase ref_only[] = {
        {"F32, key bias, dbias",
         masked(shape(2, 4, 2, 13, 40, 32, 32, ATTN_F32), 1, 0, KEY, DOT),
         WANT_DBIAS},
        {"F32, additive, d_additive_w",
         masked(shape(2, 4, 2, 11, 22, 32, 32, ATTN_F32), 0, 0, NOB, ADD),
         WANT_DW},
        {"F16, additive",
         masked(shape(1, 4, 2, 11, 22, 32, 32, ATTN_F16), 0, 0, NOB, ADD), 0},
    };
    static const int modes[] = {LAY_OFFSETS, LAY_STRIDED};
    run_cases(ctx_ref, both, sizeof both / sizeof both[0], modes, 2,
              "bwd_ref: ", 300);
    run_cases(ctx_fused, both, sizeof both / sizeof both[0], modes, 2,
              "bwd_fused: ", 300);
    run_cases(ctx_tiled, both, sizeof both / sizeof both[0], modes, 2,
              "bwd_tiled: ", 300);
    run_cases(ctx_ref, ref_only, sizeof ref_only / sizeof ref_only[0], modes, 2,
              "bwd_ref: ", 310);
    for (int v = 0; v < 2; v++)
        for (size_t i = 0; i < sizeof ref_only / sizeof ref_only[0]; i++) {
            attn_context *ctx = v ? ctx_tiled : ctx_fused;
            prob p;
            char what[160];
            snprintf(what, sizeof what, "%s refuses: %s",
                     v ? "bwd_tiled" : "bwd_fused", ref_only[i].what);
            if (!prob_make(&p, ctx, &ref_only[i].s, ref_only[i].want,
                           310 + i)) {
                HARNESS_EXPECT(0, what);
                prob_free(&p);
                continue;
            }
            run(ctx, &p, LAY_OFFSETS, ATTN_ERR_UNSUPPORTED, what);
            run(ctx, &p, LAY_IN_PLACE, ATTN_ERR_UNSUPPORTED, what);
            prob_free(&p);
        }
}

/* 5: a user event holds the work back; done NULL. */
static void test_events(void)
{
    attn_sdpa_desc s =
        masked(shape(2, 4, 2, 21, 37, 32, 32, ATTN_F32), 1, 0, KEY, DOT);
    prob p;
    lay L;
    cl_event user, marker = NULL, wait[2], done = NULL;
    cl_command_queue other;
    cl_int rc;
    attn_status st;
    CU_ASSERT_FATAL(prob_make(&p, ctx_auto, &s, WANT_DBIAS | USE_KV_LEN, 400) ==
                    1);
    CU_ASSERT_FATAL(p.host == ATTN_OK);

    /* done NULL: nothing comes back; clFinish is the caller's way */
    CU_ASSERT_FATAL(lay_make(&L, &p, LAY_OFFSETS) == 1);
    st = attn_sdpa_backward_cl_buffers(ctx_auto, &L.d, &L.g, queue, 0, NULL,
                                       NULL);
    CU_ASSERT_EQUAL(st, ATTN_OK);
    CU_ASSERT_EQUAL(clFinish(queue), CL_SUCCESS);
    CU_ASSERT(lay_check(&L, &p, "done NULL"));
    lay_free(&L);

    CU_ASSERT_FATAL(lay_make(&L, &p, LAY_OFFSETS) == 1);
    user = clCreateUserEvent(clctx, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    other = clCreateCommandQueue(clctx, device, 0, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(clEnqueueMarkerWithWaitList(other, 0, NULL, &marker),
                          CL_SUCCESS);
    clFlush(other);
    wait[0] = marker;
    wait[1] = user;
    st = attn_sdpa_backward_cl_buffers(ctx_auto, &L.d, &L.g, queue, 2, wait,
                                       &done);
    CU_ASSERT_EQUAL(st, ATTN_OK);
    if (st != ATTN_OK)
        printf("\n  user event: %s: %s\n", attn_status_string(st),
               attn_context_last_error(ctx_auto));
    CU_ASSERT_PTR_NOT_NULL(done);
    /* the host arrays were copied: scribbling on them changes nothing */
    for (size_t i = 0; i < p.nbias; i++)
        p.bias[i] = 1e4f;
    for (int b = 0; b < p.d.batch; b++)
        p.kv_len[b] = 1;
    sleep_ms(150);
    if (done)
        CU_ASSERT(!event_complete(done));
    /* read through another queue: nothing written yet */
    CU_ASSERT(lay_untouched(&L, other));
    CU_ASSERT_EQUAL(clSetUserEventStatus(user, CL_COMPLETE), CL_SUCCESS);
    if (done) {
        CU_ASSERT_EQUAL(clWaitForEvents(1, &done), CL_SUCCESS);
        CU_ASSERT(event_complete(done));
        clReleaseEvent(done);
    }
    CU_ASSERT(lay_check(&L, &p, "after the user event"));
    clReleaseEvent(user);
    clReleaseEvent(marker);
    clReleaseCommandQueue(other);
    lay_free(&L);
    prob_free(&p);
}

/* 6: refusals. */
static void test_refusals(void)
{
    attn_sdpa_desc s =
        masked(shape(2, 4, 2, 13, 29, 32, 32, ATTN_F32), 0, 0, KEY, DOT);
    const int32_t ks[2] = {0, 3};
    uint8_t keep[29];
    prob p;
    lay L;
    attn_cl_grad_buffers g;
    attn_sdpa_desc d;
    attn_context *native = NULL;
    attn_options o;
    cl_event done;
    cl_context other_ctx;
    cl_command_queue other_q;
    cl_mem both, wbuf, foreign;
    unsigned char *both_img, *w_img;
    size_t both_bytes, w_bytes;
    cl_int rc;

    memset(keep, 1, sizeof keep);
    CU_ASSERT_FATAL(prob_make(&p, ctx_auto, &s, WANT_DBIAS, 500) == 1);
    CU_ASSERT_FATAL(p.host == ATTN_OK);
    CU_ASSERT_FATAL(lay_make(&L, &p, LAY_OFFSETS) == 1);
    other_ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    other_q = clCreateCommandQueue(other_ctx, device, 0, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    foreign =
        clCreateBuffer(other_ctx, CL_MEM_READ_WRITE, L.bytes[T_Q], NULL, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    /* dq and dk in one buffer, dk's first element on dq's last */
    both_bytes = (p.n[0] + p.n[1]) * 4 + GUARD;
    both_img = malloc(both_bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(both_img);
    memset(both_img, 0x3c, both_bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(both = buffer_of(both_img, both_bytes));
    /* a d_additive_w buffer for the dot score */
    w_bytes = (size_t)s.heads_q * (size_t)s.head_dim * 4 + GUARD;
    w_img = malloc(w_bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w_img);
    memset(w_img, 0x6b, w_bytes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(wbuf = buffer_of(w_img, w_bytes));

    /* Names `done`: set to the sentinel before, checked untouched after. */
#define EXPECT_REFUSED(what, c, dd, gg, qq, nw, wl, want)                      \
    do {                                                                       \
        done = SENTINEL;                                                       \
        attn_status got_ =                                                     \
            attn_sdpa_backward_cl_buffers(c, dd, gg, qq, nw, wl, &done);       \
        const char *msg_ =                                                     \
            (c) ? attn_context_last_error(c) : attn_last_error();              \
        HARNESS_EXPECT(got_ == (want), what);                                  \
        if (got_ != (want))                                                    \
            printf("\n  %s: %s, want %s (%s)\n", what,                         \
                   attn_status_string(got_), attn_status_string(want), msg_);  \
        HARNESS_EXPECT(done == SENTINEL, what);                                \
        HARNESS_EXPECT(msg_[0] != '\0', what);                                 \
    } while (0)

    EXPECT_REFUSED("ctx NULL", NULL, &L.d, &L.g, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED("d NULL", ctx_auto, NULL, &L.g, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED("g NULL", ctx_auto, &L.d, NULL, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED("queue NULL", ctx_auto, &L.d, &L.g, NULL, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED("n_wait 2, wait NULL", ctx_auto, &L.d, &L.g, queue, 2, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_REFUSED("a queue of another cl_context", ctx_auto, &L.d, &L.g,
                   other_q, 0, NULL, ATTN_ERR_INVALID_ARGUMENT);
    {
        cl_mem *const m[9] = {&g.q,   &g.k,  &g.v,  &g.o, &g.lse,
                              &g.d_o, &g.dq, &g.dk, &g.dv};
        static const char *const nm[9] = {"q NULL",  "k NULL",   "v NULL",
                                          "o NULL",  "lse NULL", "d_o NULL",
                                          "dq NULL", "dk NULL",  "dv NULL"};
        for (int i = 0; i < 9; i++) {
            g = L.g;
            *m[i] = NULL;
            EXPECT_REFUSED(nm[i], ctx_auto, &L.d, &g, queue, 0, NULL,
                           ATTN_ERR_INVALID_ARGUMENT);
        }
    }
    g = L.g;
    g.q = foreign;
    EXPECT_REFUSED("q of another cl_context", ctx_auto, &L.d, &g, queue, 0,
                   NULL, ATTN_ERR_INVALID_ARGUMENT);
    /* buffers too small for their tensor at its offset */
    {
        size_t *const at[6] = {&g.q_offset,   &g.k_offset,  &g.lse_offset,
                               &g.d_o_offset, &g.dq_offset, &g.dbias_offset};
        static const char *const nm[6] = {
            "q past its buffer",   "k past its buffer",
            "lse past its buffer", "dO past its buffer",
            "dq past its buffer",  "dbias past its buffer"};
        for (int i = 0; i < 6; i++) {
            g = L.g;
            *at[i] += GUARD / 4 + 1;
            EXPECT_REFUSED(nm[i], ctx_auto, &L.d, &g, queue, 0, NULL,
                           ATTN_ERR_INVALID_ARGUMENT);
        }
    }
    /* outputs overlapping */
    g = L.g;
    g.dq = g.q;
    g.dq_offset = g.q_offset;
    EXPECT_REFUSED("dq on q", ctx_auto, &L.d, &g, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    g = L.g;
    g.dq = both;
    g.dq_offset = 0;
    g.dk = both;
    g.dk_offset = p.n[0] - 1;
    EXPECT_REFUSED("dq and dk overlap in one buffer", ctx_auto, &L.d, &g, queue,
                   0, NULL, ATTN_ERR_INVALID_ARGUMENT);
    {
        const char *msg = attn_context_last_error(ctx_auto);
        HARNESS_EXPECT(strstr(msg, "dq") && strstr(msg, "dk"),
                       "the overlap's message names dq and dk");
    }
    /* gradients not to be asked */
    d = L.d;
    d.mask.bias = NULL;
    d.mask.bias_kind = ATTN_BIAS_NONE;
    EXPECT_REFUSED("dbias without a bias", ctx_auto, &d, &L.g, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    g = L.g;
    g.d_additive_w = wbuf;
    EXPECT_REFUSED("d_additive_w with the dot score", ctx_auto, &L.d, &g, queue,
                   0, NULL, ATTN_ERR_INVALID_ARGUMENT);
    d = L.d;
    d.heads_kv = 3; /* 4 % 3 != 0 */
    EXPECT_REFUSED("heads_q % heads_kv != 0", ctx_auto, &d, &L.g, queue, 0,
                   NULL, ATTN_ERR_INVALID_ARGUMENT);
    /* not taken */
    d = L.d;
    d.keep = keep;
    d.keep_shape[0] = d.keep_shape[1] = d.keep_shape[2] = 1;
    EXPECT_REFUSED("dbias with keep", ctx_auto, &d, &L.g, queue, 0, NULL,
                   ATTN_ERR_UNSUPPORTED);
    d = L.d;
    d.kv_start = ks;
    EXPECT_REFUSED("dbias with kv_start", ctx_auto, &d, &L.g, queue, 0, NULL,
                   ATTN_ERR_UNSUPPORTED);
    g = L.g;
    g.struct_size = 3;
    EXPECT_REFUSED("struct_size 3", ctx_auto, &L.d, &g, queue, 0, NULL,
                   ATTN_ERR_INVALID_ARGUMENT);
    /* a context on the native backend */
    attn_options_init(&o);
    o.device = "native";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &native), ATTN_OK);
    EXPECT_REFUSED("a native context", native, &L.d, &L.g, queue, 0, NULL,
                   ATTN_ERR_UNSUPPORTED);
    attn_context_destroy(native);
#undef EXPECT_REFUSED

    /* None of that wrote anything. */
    CU_ASSERT_EQUAL(clFinish(queue), CL_SUCCESS);
    CU_ASSERT(lay_untouched(&L, queue));
    CU_ASSERT(same_as(queue, both, both_img, both_bytes));
    CU_ASSERT(same_as(queue, wbuf, w_img, w_bytes));
    /* and the same call, refused nothing, is right */
    run(ctx_auto, &p, LAY_OFFSETS, ATTN_OK, "refusals: the call");

    clReleaseMemObject(both);
    clReleaseMemObject(wbuf);
    clReleaseMemObject(foreign);
    free(both_img);
    free(w_img);
    clReleaseCommandQueue(other_q);
    clReleaseContext(other_ctx);
    lay_free(&L);
    prob_free(&p);
}

/* 7: the struct's layouts. */
/* ---- packed sequences ---------------------------------------------------- */

#define PK_PAT 0xa5 /* what the gradient buffers hold before a call */

/* Bytes of buffer image x, n elements of es bytes at element offset off
 * with `tail` bytes after them, all PK_PAT except the n elements of src. */
static unsigned char *pk_image(const void *src, size_t n, size_t es, size_t off,
                               size_t tail, size_t *bytes)
{
    unsigned char *x;
    *bytes = (off + n) * es + tail;
    if (!(x = malloc(*bytes)))
        return NULL;
    memset(x, PK_PAT, *bytes);
    if (src)
        memcpy(x + off * es, src, n * es);
    return x;
}

/* Whether the bytes of x outside [off, off + n) elements are PK_PAT. */
static int pk_guards(const unsigned char *x, size_t n, size_t es, size_t off,
                     size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        if ((i < off * es || i >= (off + n) * es) && x[i] != PK_PAT)
            return 0;
    return 1;
}

/* Packed sequences (cu_seqlens_q, cu_seqlens_kv; rows [total, heads, dim],
 * lse [heads_q, total_q]) on the caller's buffers at offsets: four
 * sequences, one with no query (its dk, dv rows zero), one with no key
 * (its dq rows zero); bit for bit attn_sdpa_backward's on the same
 * context, the bytes around each gradient untouched. */
static void packed_case(attn_context *ctx, attn_dtype dt, int causal,
                        int additive, const char *what)
{
    enum { NB = 4, HQ = 4, HKV = 2, DH = 32, TQ = 24, TK = 29 };
    static const int32_t cq[NB + 1] = {0, 7, 7, 20, 24},
                                 ck[NB + 1] = {0, 11, 16, 29, 29};
    /* element offsets of q, k, v, o, dO, lse, dq, dk, dv in their buffers */
    static const size_t off[9] = {3, 0, 2, 1, 4, 2, 5, 0, 7};
    const size_t es = dt == ATTN_F32 ? 4 : 2;
    const size_t n[9] = {TQ * HQ * DH, TK * HKV * DH, TK * HKV * DH,
                         TQ * HQ * DH, TQ * HQ * DH,  HQ * TQ,
                         TQ * HQ * DH, TK * HKV * DH, TK * HKV * DH};
    attn_sdpa_desc d = shape(NB, HQ, HKV, 13, 13, DH, DH, dt);
    attn_sdpa_grad hg = ATTN_SDPA_GRAD_INIT;
    attn_cl_grad_buffers g = ATTN_CL_GRAD_BUFFERS_INIT;
    unsigned char *img[9] = {NULL}, *got = NULL;
    void *x[9] = {NULL};
    cl_mem m[9] = {NULL};
    size_t bytes[9];
    cl_event done = NULL;
    ref_rng r;
    attn_status st;
    int ok = 1;
    /* the additive score: additive_w, and d additive_w asked, at float
     * offset 3 of its buffer (PK_PAT around it) */
    float addw[HQ * DH], hdw[HQ * DH];
    unsigned char *wimg = NULL;
    size_t wbytes = 0;
    cl_mem wm = NULL;
    d.cu_seqlens_q = cq;
    d.cu_seqlens_kv = ck;
    d.mask.causal = causal;
    if (additive) {
        for (int i = 0; i < HQ * DH; i++)
            addw[i] = 0.1f * (float)((i % 9) - 4);
        d.score = ATTN_SCORE_ADDITIVE;
        d.additive_w = addw;
        hg.d_additive_w = hdw;
        wimg = pk_image(NULL, HQ * DH, sizeof(float), 3, GUARD, &wbytes);
        CU_ASSERT_FATAL(wimg != NULL);
        wm = buffer_of(wimg, wbytes);
        CU_ASSERT_FATAL(wm != NULL);
        g.d_additive_w = wm;
        g.d_additive_w_offset = 3;
    }
    ref_rng_seed(&r, 1234 + (uint64_t)dt * 7 + (uint64_t)causal);
    x[0] = fill(&r, dt, n[0]);
    x[1] = fill(&r, dt, n[1]);
    x[2] = fill(&r, dt, n[2]);
    x[4] = fill(&r, dt, n[4]);
    x[3] = malloc(n[3] * es);
    x[5] = malloc(n[5] * sizeof(float));
    for (int i = 6; i < 9; i++)
        x[i] = malloc(n[i] * es);
    for (int i = 0; i < 9; i++)
        CU_ASSERT_FATAL(x[i] != NULL);
    /* the forward and attn_sdpa_backward on host memory, same context */
    CU_ASSERT_FATAL(attn_sdpa(ctx, &d, x[0], x[1], x[2], x[3], x[5]) ==
                    ATTN_OK);
    hg.q = x[0], hg.k = x[1], hg.v = x[2], hg.o = x[3], hg.d_o = x[4];
    hg.lse = x[5], hg.dq = x[6], hg.dk = x[7], hg.dv = x[8];
    CU_ASSERT_FATAL(attn_sdpa_backward(ctx, &d, &hg) == ATTN_OK);
    /* the caller's buffers: each tensor at its offset, PK_PAT around it
     * and in the gradients */
    for (int i = 0; i < 9; i++) {
        const size_t e = i == 5 ? sizeof(float) : es;
        img[i] =
            pk_image(i < 6 ? x[i] : NULL, n[i], e, off[i], GUARD, &bytes[i]);
        CU_ASSERT_FATAL(img[i] != NULL);
        m[i] = buffer_of(img[i], bytes[i]);
        CU_ASSERT_FATAL(m[i] != NULL);
    }
    g.q = m[0], g.k = m[1], g.v = m[2], g.o = m[3], g.d_o = m[4];
    g.lse = m[5], g.dq = m[6], g.dk = m[7], g.dv = m[8];
    g.q_offset = off[0], g.k_offset = off[1], g.v_offset = off[2];
    g.o_offset = off[3], g.d_o_offset = off[4], g.lse_offset = off[5];
    g.dq_offset = off[6], g.dk_offset = off[7], g.dv_offset = off[8];
    st = attn_sdpa_backward_cl_buffers(ctx, &d, &g, queue, 0, NULL, &done);
    HARNESS_EXPECT(st == ATTN_OK && done != NULL, what);
    if (st == ATTN_OK && done) {
        CU_ASSERT(clWaitForEvents(1, &done) == CL_SUCCESS);
        clReleaseEvent(done);
    }
    for (int i = 6; i < 9 && st == ATTN_OK; i++) {
        got = read_back(queue, m[i], bytes[i]);
        CU_ASSERT_FATAL(got != NULL);
        ok = ok && memcmp(got + off[i] * es, x[i], n[i] * es) == 0;
        ok = ok && pk_guards(got, n[i], es, off[i], bytes[i]);
        if (i == 6) { /* the sequence with no key: rows 20..23, all zero */
            for (size_t b = (size_t)20 * HQ * DH * es; b < n[6] * es; b++)
                ok = ok && got[off[6] * es + b] == 0;
        } else { /* the sequence with no query: key rows 11..15 */
            for (size_t b = (size_t)11 * HKV * DH * es;
                 b < (size_t)16 * HKV * DH * es; b++)
                ok = ok && got[off[i] * es + b] == 0;
        }
        free(got);
    }
    if (additive && st == ATTN_OK) { /* the sum over the sequences */
        got = read_back(queue, wm, wbytes);
        CU_ASSERT_FATAL(got != NULL);
        ok = ok && memcmp(got + 3 * sizeof(float), hdw, sizeof hdw) == 0;
        ok = ok && pk_guards(got, HQ * DH, sizeof(float), 3, wbytes);
        free(got);
    }
    HARNESS_EXPECT(ok, what);
    if (wm)
        clReleaseMemObject(wm);
    free(wimg);
    /* the inputs are as they were */
    for (int i = 0; i < 6; i++)
        HARNESS_EXPECT(same_as(queue, m[i], img[i], bytes[i]), what);
    for (int i = 0; i < 9; i++) {
        clReleaseMemObject(m[i]);
        free(img[i]);
        free(x[i]);
    }
}

static void test_packed(void)
{
    packed_case(ctx_auto, ATTN_F32, 0, 0, "packed, F32");
    packed_case(ctx_auto, ATTN_F32, 1, 0, "packed, F32 causal");
    packed_case(ctx_auto, ATTN_F16, 1, 0, "packed, F16 causal");
    packed_case(ctx_ref, ATTN_F32, 1, 0, "packed, F32 causal, bwd_ref");
    packed_case(ctx_fused, ATTN_BF16, 0, 0, "packed, BF16, bwd_fused");
    packed_case(ctx_tiled, ATTN_F16, 1, 0, "packed, F16 causal, bwd_tiled");
    packed_case(ctx_auto, ATTN_F32, 1, 1,
                "packed, F32 causal, additive, d additive_w");
    packed_case(ctx_auto, ATTN_F16, 0, 1,
                "packed, F16, additive, d additive_w");
}

static void test_abi(void)
{
    attn_cl_grad_buffers g, before, zero;
    const attn_cl_grad_buffers init = ATTN_CL_GRAD_BUFFERS_INIT;
    attn_sdpa_desc s =
        masked(shape(2, 4, 2, 13, 29, 32, 32, ATTN_F32), 1, 0, KEY, DOT);
    prob p;

    CU_ASSERT_EQUAL(init.struct_size, sizeof init);
    CU_ASSERT(init.q == NULL && init.dq == NULL && init.dbias == NULL &&
              init.d_additive_w == NULL && init.q_offset == 0 &&
              init.d_additive_w_offset == 0);
    memset(&zero, 0, sizeof zero);
    zero.struct_size = sizeof zero;

    CU_ASSERT_EQUAL(attn_cl_grad_buffers_init_sized(NULL, sizeof g),
                    ATTN_ERR_INVALID_ARGUMENT);
    memset(&g, 0x5a, sizeof g);
    memcpy(&before, &g, sizeof g);
    CU_ASSERT_EQUAL(attn_cl_grad_buffers_init_sized(&g, 3),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(memcmp(&g, &before, sizeof g) == 0);
    CU_ASSERT_EQUAL(attn_cl_grad_buffers_init_sized(&g, sizeof g), ATTN_OK);
    CU_ASSERT(memcmp(&g, &zero, sizeof g) == 0);
    memset(&g, 0x5a, sizeof g);
    attn_cl_grad_buffers_init(&g);
    CU_ASSERT(memcmp(&g, &zero, sizeof g) == 0);

    /* a caller of the first layout: struct_size 0 */
    CU_ASSERT_FATAL(prob_make(&p, ctx_auto, &s, WANT_DBIAS, 600) == 1);
    run(ctx_auto, &p, LAY_OFFSETS | RUN_SIZE0, ATTN_OK, "struct_size 0");
    run(ctx_auto, &p, LAY_IN_PLACE | RUN_SIZE0, ATTN_OK,
        "struct_size 0, in place");
    prob_free(&p);
}

/* ---- suite ------------------------------------------------------------ */

static int make_ctx(const char *kernel, attn_context **out)
{
    attn_options o;
    attn_status s;
    attn_options_init(&o);
    o.cache_dir = ""; /* the program cache has its own suite */
    o.allow_fallback = 0;
    o.kernel = kernel;
    s = attn_context_create_cl(clctx, device, &o, out);
    if (s != ATTN_OK)
        printf("\nattn_context_create_cl (%s): %s: %s\n",
               kernel ? kernel : "auto", attn_status_string(s),
               attn_last_error());
    return s == ATTN_OK;
}

static int suite_init(void)
{
    cl_int rc;
    clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    queue = clCreateCommandQueue(clctx, device, 0, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    return !make_ctx(NULL, &ctx_auto) || !make_ctx("bwd_ref", &ctx_ref) ||
           !make_ctx("bwd_fused", &ctx_fused) ||
           !make_ctx("bwd_tiled", &ctx_tiled);
}

static int suite_clean(void)
{
    attn_context_destroy(ctx_auto);
    attn_context_destroy(ctx_ref);
    attn_context_destroy(ctx_fused);
    attn_context_destroy(ctx_tiled);
    if (queue)
        clReleaseCommandQueue(queue);
    if (clctx)
        clReleaseContext(clctx);
    return 0;
}

/* The first device of the first platform that has one. */
static int find_device(void)
{
    cl_platform_id ps[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, ps, &np) != CL_SUCCESS)
        return 0;
    for (cl_uint i = 0; i < np && i < 16; i++) {
        cl_device_id d;
        cl_uint nd = 0;
        if (clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, 1, &d, &nd) ==
                CL_SUCCESS &&
            nd > 0) {
            device = d;
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"against the reference and attn_sdpa_backward, in place and at "
         "offsets",
         test_reference},
        {"strides, k and v in one buffer, outputs in one buffer", test_strided},
        {"the backward variants forced by name", test_forced},
        {"an out-of-order queue", test_out_of_order},
        {"a user event holds the work back; done NULL", test_events},
        {"packed sequences", test_packed},
        {"refusals", test_refusals},
        {"attn_cl_grad_buffers layouts", test_abi},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL");
    unsetenv("ATTN_PRECISION");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (!find_device()) {
        printf("SKIP: backward embedding: no OpenCL platform (or device) on "
               "this machine\n");
        return HARNESS_SKIP;
    }
    return harness_main("backward embedding", suite_init, suite_clean, tests);
}
