/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_ring_backward: the gradients of attn_sdpa_ring.  Every rank
 * holds its rows of Q, K, V, the forward's O and lse, and dO.  K and V
 * travel the ring as in the forward; behind them, one step later, travel
 * float accumulators of dK and dV for the same chunks.  At each step a
 * rank runs attn_sdpa_backward of its query chunks against the key chunks
 * it holds: P is recomputed from the forward's global lse and D =
 * rowsum(dO * O) from the global O, so each block's gradients are exactly
 * its share of the sums.  dQ adds up on the rank; the block's dK and dV
 * go into the step's scratch, which is added to the accumulator arriving
 * from the left neighbour before it goes on to the right.  After the last
 * step each accumulator goes home to the rank that holds its keys.
 *
 * The checks, agreements and failure rules are the forward's (ring.c):
 * every message carries the sender's status, every wait is bounded.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring_call.h"
#include "ring_check.h"

#define RING_TAG_GRAD (RING_TAG + 1) /* accumulators along the ring */
#define RING_TAG_HOME (RING_TAG + 2) /* accumulators going home */

/* The backward's own state beside the forward's ring_call (whose msg,
 * q32, kf, vf, kvl and kbias it uses as the forward does). */
typedef struct ring_bwd {
    ring_call *c;
    ring_bwd_fn bwd;
    void *user;
    float *o32, *do32, *lse32; /* the local rows, chunk by chunk, in float */
    float *dq;                 /* dQ summed over the blocks, likewise */
    float *blk_dq, *blk_dk, *blk_dv;
    /* Asked for: dbias [batch, seq] (a key bias) and d additive_w
     * [heads_q, head_dim], summed on the rank in sums (dbias first, then
     * d additive_w), then over the ranks by one all-reduce; a block's own
     * in blk_dbias [batch, chunk] and blk_dw. */
    float *sums, *blk_dbias, *blk_dw;
    size_t n_dbias, n_dw;
    int keep_sums; /* an all-reduce that timed out may still write sums */
    void *do_copy; /* a strided d_o gathered, or NULL */
    unsigned char *scratch; /* the step's dK, dV, laid out as a message */
    unsigned char *gmsg[2]; /* accumulators: received, added to, sent */
    unsigned char *home;    /* this rank's own, back from the ring */
    size_t gcap;
} ring_bwd;

static attn_status default_bwd(attn_context *ctx, const attn_sdpa_desc *d,
                               const attn_sdpa_grad *g, void *user)
{
    (void)user;
    return attn_sdpa_backward(ctx, d, g);
}

/* The grad struct read by its struct_size: the first layout ends at dv;
 * members it does not know must be zero. */
static attn_status read_grad(const attn_sdpa_grad *g, attn_sdpa_grad *out,
                             char *why, size_t cap)
{
    /* 0 is the first layout here (docs/ABI.md, attn_sdpa_grad) */
    const size_t first = offsetof(attn_sdpa_grad, dbias);
    size_t size = ring_read_size(g->struct_size ? g->struct_size : first, first,
                                 sizeof *out);
    if (!size) {
        snprintf(why, cap,
                 "attn_sdpa_grad.struct_size %zu is the size of no layout",
                 g->struct_size);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!ring_tail_zero(g, size, sizeof *out)) {
        snprintf(why, cap,
                 "attn_sdpa_grad sets members this libattn_mpi does not know");
        return ATTN_ERR_UNSUPPORTED;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, g, size < sizeof *out ? size : sizeof *out);
    out->struct_size = sizeof *out;
    const void *p[9] = {out->q,   out->k,  out->v,  out->o, out->lse,
                        out->d_o, out->dq, out->dk, out->dv};
    static const char *const name[9] = {"q",   "k",  "v",  "o", "lse",
                                        "d_o", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++)
        if (!p[i]) {
            snprintf(why, cap, "g->%s is NULL", name[i]);
            return ATTN_ERR_INVALID_ARGUMENT;
        }
    return ATTN_OK;
}

/* The tensors' byte ranges; an output that meets another tensor is
 * refused (attn_sdpa_backward's rule). */
static attn_status check_overlap(ring_call *c, const attn_sdpa_grad *g)
{
    const size_t rows = c->local_rows, f = sizeof(float);
    const size_t seq = (size_t)c->ring.seq, batch = (size_t)c->g.batch;
    const size_t w = (size_t)c->g.heads_q * c->d;
    const void *p[13] = {
        g->dq, g->dk, g->dv,  g->dbias, g->d_additive_w, g->q,           g->k,
        g->v,  g->o,  g->d_o, g->lse,   c->g.mask.bias,  c->g.additive_w};
    /* q, k, v, o, the span of their strides (dq, dk, dv and d_o in those) */
    const size_t sq = ring_strides_bytes(c, 0), sk = ring_strides_bytes(c, 1),
                 sv = ring_strides_bytes(c, 2), so = ring_strides_bytes(c, 3);
    const size_t n[13] = {
        sq, sk, sv, batch * seq * f,  w * f,           sq,   sk,
        sv, so, so, rows * c->bq * f, batch * seq * f, w * f};
    static const char *const name[13] = {
        "dq", "dk", "dv",  "dbias", "d_additive_w", "q",         "k",
        "v",  "o",  "d_o", "lse",   "mask.bias",    "additive_w"};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 13; j++) {
            if (i == j || !p[i] || !p[j] || !n[i] || !n[j])
                continue;
            uintptr_t a = (uintptr_t)p[i], b = (uintptr_t)p[j];
            if (a < b + n[j] && b < a + n[i]) {
                snprintf(c->why, sizeof c->why, "rank %d: g->%s overlaps %s%s",
                         c->rank, name[i], j < 11 ? "g->" : "d->", name[j]);
                return ATTN_ERR_INVALID_ARGUMENT;
            }
        }
    return ATTN_OK;
}

/* Strided inputs gathered once into contiguous copies (q, k, v by the
 * forward's ring_strides_gather, o into the room it keeps for o, d_o into
 * one of its own), which in then points to. */
static attn_status gather_inputs(ring_bwd *b, attn_sdpa_grad *in)
{
    ring_call *c = b->c;
    attn_status st = ring_strides_gather(c, &in->q, &in->k, &in->v);
    if (st != ATTN_OK || !ring_strides_given(c, 3))
        return st;
    b->do_copy = ring_grab(c, c->local_rows * c->bq * c->dv * c->elem);
    if (!b->do_copy) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: no memory for the contiguous copy of d_o", c->rank);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    ring_strides_move(c, 3, c->strided[3], (void *)(uintptr_t)in->o, 1);
    ring_strides_move(c, 3, b->do_copy, (void *)(uintptr_t)in->d_o, 1);
    in->o = c->strided[3];
    in->d_o = b->do_copy;
    return ATTN_OK;
}

static attn_status alloc_bwd(ring_bwd *b, const attn_sdpa_grad *g)
{
    ring_call *c = b->c;
    /* The largest message (two chunks' float dK and dV) must fit MPI's
     * int count; the local buffers size_t. */
    double biggest = (double)c->max_rows * 2.0 * (double)c->bkv *
                     ((double)c->d + (double)c->dv) * 4.0;
    double locals = (double)c->local_rows * (double)c->bq *
                    (2.0 * (double)c->d + 2.0 * (double)c->dv + 1.0) * 4.0;
    if (biggest + RING_HEADER > 2147483647.0 || locals > (double)SIZE_MAX / 4) {
        snprintf(c->why, sizeof c->why,
                 "a slice's gradient message exceeds 2 GiB: use more ranks");
        return ATTN_ERR_UNSUPPORTED;
    }
    /* the largest K/V message's rows as float accumulators */
    b->gcap = RING_HEADER + (c->msg_cap - RING_HEADER) / c->elem * 4;
    const size_t rows = c->local_rows, m = c->max_rows;
    c->msg[0] = ring_grab(c, c->msg_cap);
    c->msg[1] = c->ranks > 1 ? ring_grab(c, c->msg_cap) : NULL;
    c->q32 = ring_grab(c, rows * c->bq * c->d * sizeof(float));
    b->o32 = ring_grab(c, rows * c->bq * c->dv * sizeof(float));
    b->do32 = ring_grab(c, rows * c->bq * c->dv * sizeof(float));
    b->lse32 = ring_grab(c, rows * c->bq * sizeof(float));
    b->dq = ring_grab(c, rows * c->bq * c->d * sizeof(float));
    if (c->f16) {
        c->kf = ring_grab(c, m * c->bkv * c->d * sizeof(float));
        c->vf = ring_grab(c, m * c->bkv * c->dv * sizeof(float));
    }
    b->blk_dq = ring_grab(c, m * c->bq * c->d * sizeof(float));
    b->blk_dk = ring_grab(c, m * c->bkv * c->d * sizeof(float));
    b->blk_dv = ring_grab(c, m * c->bkv * c->dv * sizeof(float));
    b->scratch = ring_grab(c, b->gcap);
    b->gmsg[0] = ring_grab(c, b->gcap);
    b->gmsg[1] = ring_grab(c, b->gcap);
    b->home = ring_grab(c, b->gcap);
    c->kvl = ring_grab(c, (size_t)c->g.batch * sizeof(int32_t));
    if (c->g.mask.bias)
        c->kbias = ring_grab(c, (size_t)c->g.batch * m * sizeof(float));
    b->n_dbias = g->dbias ? (size_t)c->g.batch * (size_t)c->ring.seq : 0;
    b->n_dw = g->d_additive_w ? (size_t)c->g.heads_q * c->d : 0;
    if (b->n_dbias + b->n_dw > 2147483647u) {
        snprintf(c->why, sizeof c->why,
                 "dbias and d_additive_w exceed MPI's int count");
        return ATTN_ERR_UNSUPPORTED;
    }
    if (b->n_dbias + b->n_dw) {
        b->sums = ring_grab(c, (b->n_dbias + b->n_dw) * sizeof(float));
        if (b->sums)
            memset(b->sums, 0, (b->n_dbias + b->n_dw) * sizeof(float));
    }
    if (b->n_dbias)
        b->blk_dbias = ring_grab(c, (size_t)c->g.batch * m * sizeof(float));
    if (b->n_dw)
        b->blk_dw = ring_grab(c, b->n_dw * sizeof(float));
    if (!c->msg[0] || (c->ranks > 1 && !c->msg[1]) || !c->q32 || !b->o32 ||
        !b->do32 || !b->lse32 || !b->dq || (c->f16 && (!c->kf || !c->vf)) ||
        !b->blk_dq || !b->blk_dk || !b->blk_dv || !b->scratch || !b->gmsg[0] ||
        !b->gmsg[1] || !b->home || !c->kvl || (c->g.mask.bias && !c->kbias) ||
        ((b->n_dbias + b->n_dw) && !b->sums) || (b->n_dbias && !b->blk_dbias) ||
        (b->n_dw && !b->blk_dw)) {
        snprintf(c->why, sizeof c->why, "no memory for the ring's %llu bytes",
                 (unsigned long long)c->held);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    ring_pack_own(c, g->k, g->v);
    for (int i = 0; i < c->lay.per_rank; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i);
        ring_pack_float(c, c->q32 + row0 * c->bq * c->d, g->q, c->bq, row0, n,
                        c->d);
        ring_pack_float(c, b->o32 + row0 * c->bq * c->dv, g->o, c->bq, row0, n,
                        c->dv);
        ring_pack_float(c, b->do32 + row0 * c->bq * c->dv, g->d_o, c->bq, row0,
                        n, c->dv);
        ring_pack_rows(b->lse32 + row0 * c->bq, g->lse, c->bq, (int)rows,
                       (int)row0, (int)n, 1, sizeof(float));
    }
    memset(b->dq, 0, rows * c->bq * c->d * sizeof(float));
    return ATTN_OK;
}

static void free_bwd(ring_bwd *b, int keep_msgs)
{
    free(b->o32);
    free(b->do32);
    free(b->lse32);
    free(b->dq);
    free(b->blk_dq);
    free(b->blk_dk);
    free(b->blk_dv);
    free(b->scratch);
    if (!b->keep_sums)
        free(b->sums);
    free(b->do_copy);
    free(b->blk_dbias);
    free(b->blk_dw);
    if (!keep_msgs) {
        free(b->gmsg[0]);
        free(b->gmsg[1]);
        free(b->home);
    }
}

static void add_floats(float *acc, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

/* One block: local chunk i's rows against chunk j of src's message m, its
 * dQ added to b->dq and its dK, dV to the step's scratch. */
static attn_status bwd_block(ring_bwd *b, int i, const unsigned char *m,
                             int src, int j, int *widened)
{
    ring_call *c = b->c;
    int ca = ring_chunk_of(&c->lay, c->rank, i);
    int cb = ring_chunk_of(&c->lay, src, j);
    attn_sdpa_desc bd;
    if (!ring_block_desc(c, ca, cb, &bd))
        return ATTN_OK;
    const size_t na = (size_t)bd.seq_q, nb = (size_t)bd.seq_kv;
    size_t ko, vo, gko, gvo, row0 = ring_chunk_row0(c, i);
    ring_chunk_offsets(c, src, j, &ko, &vo);
    ring_chunk_offsets_of(c, src, j, sizeof(float), &gko, &gvo);
    const void *kb = m + ko, *vb = m + vo;
    ring_widen_kv(c, &kb, &vb, nb, j, widened);
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    g.q = c->q32 + row0 * c->bq * c->d;
    g.k = kb;
    g.v = vb;
    g.o = b->o32 + row0 * c->bq * c->dv;
    g.lse = b->lse32 + row0 * c->bq;
    g.d_o = b->do32 + row0 * c->bq * c->dv;
    g.dq = b->blk_dq;
    g.dk = b->blk_dk;
    g.dv = b->blk_dv;
    g.dbias = b->blk_dbias;
    g.d_additive_w = b->blk_dw;
    attn_status st = b->bwd(c->ctx, &bd, &g, b->user);
    if (st != ATTN_OK) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: attn_sdpa_backward of its chunk %d against chunk "
                 "%d: %s",
                 c->rank, ca, cb, attn_status_string(st));
        return st;
    }
    double t0 = ring_now();
    add_floats(b->dq + row0 * c->bq * c->d, b->blk_dq, na * c->bq * c->d);
    add_floats((float *)(b->scratch + gko), b->blk_dk, nb * c->bkv * c->d);
    add_floats((float *)(b->scratch + gvo), b->blk_dv, nb * c->bkv * c->dv);
    for (size_t bi = 0; b->n_dbias && bi < (size_t)c->g.batch; bi++)
        add_floats(b->sums + bi * (size_t)c->ring.seq +
                       (size_t)c->lay.start[cb],
                   b->blk_dbias + bi * nb, nb);
    if (b->n_dw)
        add_floats(b->sums + b->n_dbias, b->blk_dw, b->n_dw);
    c->st.merge_s += ring_now() - t0;
    c->st.blocks++;
    return ATTN_OK;
}

/* The blocks of one step, on a thread of their own or on the calling one
 * (reqs given: MPI moves the transfers between blocks). */
typedef struct bwd_job {
    ring_bwd *b;
    const unsigned char *m;
    int src;
    attn_status local;
    MPI_Request *reqs;
    int nreqs;
    atomic_int running;
    double end;
} bwd_job;

static void bwd_step(bwd_job *j)
{
    ring_call *c = j->b->c;
    int widened = -1;
    memset(j->b->scratch, 0, ring_msg_bytes_of(c, j->src, sizeof(float)));
    for (int i = 0; i < c->lay.per_rank; i++)
        for (int k = 0; k < c->lay.per_rank && j->local == ATTN_OK; k++) {
            j->local = bwd_block(j->b, i, j->m, j->src, k, &widened);
            int done;
            if (j->reqs)
                MPI_Testall(j->nreqs, j->reqs, &done, MPI_STATUSES_IGNORE);
        }
    j->end = ring_now();
    atomic_store_explicit(&j->running, 0, memory_order_release);
}

static void *bwd_thread(void *arg)
{
    bwd_step(arg);
    return NULL;
}

/* A received message's header: the ring's, of the expected origin and
 * step; its status noted in *seen. */
static int header_ok(ring_call *c, const unsigned char *m, int origin, int step,
                     attn_status *seen, int *seen_rank, const char *what)
{
    ring_header h;
    memcpy(&h, m, sizeof h);
    if (h.magic != RING_MAGIC || h.origin != origin || h.step != step) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: %s is not the ring's (another call on the "
                 "communicator?)",
                 c->rank, what);
        return 0;
    }
    if (h.status != ATTN_OK && *seen == ATTN_OK) {
        *seen = (attn_status)h.status;
        *seen_rank = h.failed_rank;
    }
    return 1;
}

static void set_header(unsigned char *m, int step, int origin,
                       attn_status status, int failed_rank)
{
    ring_header h = {RING_MAGIC, step, origin, (int32_t)status, failed_rank};
    memcpy(m, &h, sizeof h);
}

/* After a failed wait: the requests cancelled; *keep set when MPI may
 * still write a buffer. */
static attn_status comm_failed(ring_call *c, MPI_Request *reqs, int n,
                               const char *why, int *keep)
{
    snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank, why);
    *keep = !ring_cancel(reqs, n, RING_GRACE_S);
    return ATTN_ERR_DEVICE;
}

/* The ring of the backward.  Requests: 0, 1 the K/V message received
 * and sent; 2 the accumulator received; 3, 4 the accumulators sent from
 * gmsg[0] and gmsg[1] (each completes before its buffer receives again);
 * 5 this rank's own accumulator coming home. */
static attn_status bwd_steps(ring_bwd *b, double tmo, attn_status *local,
                             attn_status *seen, int *seen_rank, int *keep)
{
    ring_call *c = b->c;
    const int P = c->ranks, S = c->st.steps;
    const int right = (c->rank + 1) % P, left = (c->rank + P - 1) % P;
    MPI_Request r[6];
    char why[256];
    for (int i = 0; i < 6; i++)
        r[i] = MPI_REQUEST_NULL;
    /* The last step holds the chunks of rank - (S - 1), whose accumulator
     * then goes home; this rank's comes from rank + S - 1. */
    const int home_from = (c->rank + S - 1) % P;
    if (home_from != c->rank &&
        MPI_Irecv(b->home, (int)ring_msg_bytes_of(c, c->rank, 4), MPI_BYTE,
                  home_from, RING_TAG_HOME, c->comm, &r[5]) != MPI_SUCCESS)
        return comm_failed(c, r, 6, "MPI_Irecv failed", keep);
    int cur = 0;
    for (int t = 0; t < S; t++) {
        const int src = (c->rank - t + P) % P, last = t == S - 1;
        unsigned char *m = c->msg[cur], *gm = b->gmsg[t % 2];
        if (!header_ok(c, m, src, t - 1, seen, seen_rank,
                       "a K/V message of the backward"))
            return comm_failed(c, r, 6, "a foreign message", keep);
        const attn_status mine = *local != ATTN_OK ? *local : *seen;
        const int mine_rank = *local != ATTN_OK ? c->rank : *seen_rank;
        int rc = MPI_SUCCESS;
        if (!last) {
            const int from = (src + P - 1) % P;
            set_header(m, t, src, mine, mine_rank);
            rc = MPI_Irecv(c->msg[1 - cur], (int)ring_msg_bytes(c, from),
                           MPI_BYTE, left, RING_TAG, c->comm, &r[0]);
            if (rc == MPI_SUCCESS)
                rc = MPI_Isend(m, (int)ring_msg_bytes(c, src), MPI_BYTE, right,
                               RING_TAG, c->comm, &r[1]);
            c->st.bytes_sent += ring_msg_bytes(c, src);
        }
        if (rc == MPI_SUCCESS && t > 0) {
            /* gm's last send (step t - 2) must be done before it receives */
            if (ring_wait(&r[3 + t % 2], 1, tmo, NULL, why, sizeof why,
                          "an accumulator's send") != ATTN_OK)
                return comm_failed(c, r, 6, why, keep);
            rc = MPI_Irecv(gm, (int)ring_msg_bytes_of(c, src, 4), MPI_BYTE,
                           left, RING_TAG_GRAD, c->comm, &r[2]);
        }
        if (rc != MPI_SUCCESS)
            return comm_failed(c, r, 6, "MPI_Irecv / MPI_Isend failed", keep);
        bwd_job job = {b, m, src, *local, NULL, 0, 1, 0};
        double t0 = ring_now();
        pthread_t th;
        int threaded = 0;
        if (*local != ATTN_OK || *seen != ATTN_OK) {
            /* failed: forward only (zeros, not stale sums) */
            memset(b->scratch, 0, ring_msg_bytes_of(c, src, sizeof(float)));
            job.end = t0;
            atomic_store(&job.running, 0);
        } else if (P > 1 && c->threads_ok &&
                   pthread_create(&th, NULL, bwd_thread, &job) == 0) {
            threaded = 1;
        } else {
            job.reqs = r;
            job.nreqs = 6;
            bwd_step(&job);
        }
        attn_status st = ring_wait(r, 3, tmo, threaded ? &job.running : NULL,
                                   why, sizeof why, "a backward step");
        double t_xfer = ring_now();
        if (threaded)
            pthread_join(th, NULL);
        *local = job.local;
        c->st.compute_s += job.end - t0;
        if (t_xfer > job.end)
            c->st.wait_s += t_xfer - job.end;
        if (st != ATTN_OK)
            return comm_failed(c, r, 6, why, keep);
        /* The accumulator of src's chunks: this step's share added. */
        const size_t payload = ring_msg_bytes_of(c, src, 4) - RING_HEADER;
        if (t == 0) {
            memcpy(gm + RING_HEADER, b->scratch + RING_HEADER, payload);
        } else {
            if (!header_ok(c, gm, src, t - 1, seen, seen_rank,
                           "an accumulator of the backward"))
                return comm_failed(c, r, 6, "a foreign message", keep);
            if (*local == ATTN_OK && *seen == ATTN_OK) {
                double t1 = ring_now();
                add_floats((float *)(gm + RING_HEADER),
                           (const float *)(b->scratch + RING_HEADER),
                           payload / sizeof(float));
                c->st.merge_s += ring_now() - t1;
                c->st.compute_s += ring_now() - t1;
            }
        }
        const attn_status now = *local != ATTN_OK ? *local : *seen;
        set_header(gm, t, src, now, *local != ATTN_OK ? c->rank : *seen_rank);
        const int to = last ? src : right;
        if (to == c->rank) { /* home already (a single step) */
            memcpy(b->home, gm, payload + RING_HEADER);
        } else {
            if (MPI_Isend(gm, (int)(payload + RING_HEADER), MPI_BYTE, to,
                          last ? RING_TAG_HOME : RING_TAG_GRAD, c->comm,
                          &r[3 + t % 2]) != MPI_SUCCESS)
                return comm_failed(c, r, 6, "MPI_Isend failed", keep);
            c->st.bytes_sent += payload + RING_HEADER;
        }
        cur = 1 - cur;
    }
    double t0 = ring_now();
    attn_status st =
        ring_wait(r, 6, tmo, NULL, why, sizeof why, "the accumulators' return");
    c->st.wait_s += ring_now() - t0;
    if (st != ATTN_OK)
        return comm_failed(c, r, 6, why, keep);
    if (!header_ok(c, b->home, c->rank, S - 1, seen, seen_rank,
                   "the returning accumulator"))
        return ATTN_ERR_DEVICE;
    return ATTN_OK;
}

/* dq, dk and dv in the caller's layout and dtype. */
static void write_grads(const ring_bwd *b, const attn_sdpa_grad *g)
{
    const ring_call *c = b->c;
    /* strided ones through the contiguous copies of q, k and v (done
     * with: packed at the start) */
    void *out[3] = {g->dq, g->dk, g->dv};
    void *dst[3];
    for (int t = 0; t < 3; t++)
        dst[t] = ring_strides_given(c, t) ? c->strided[t] : out[t];
    for (int i = 0; i < c->lay.per_rank; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i), ko, vo;
        ring_chunk_offsets_of(c, c->rank, i, sizeof(float), &ko, &vo);
        ring_put_rows(c, dst[0], b->dq + row0 * c->bq * c->d, c->bq, row0, n,
                      c->d);
        ring_put_rows(c, dst[1], (const float *)(b->home + ko), c->bkv, row0, n,
                      c->d);
        ring_put_rows(c, dst[2], (const float *)(b->home + vo), c->bkv, row0, n,
                      c->dv);
    }
    for (int t = 0; t < 3; t++)
        if (dst[t] != out[t])
            ring_strides_move(c, t, dst[t], out[t], 0);
    if (b->n_dbias)
        memcpy(g->dbias, b->sums, b->n_dbias * sizeof(float));
    if (b->n_dw)
        memcpy(g->d_additive_w, b->sums + b->n_dbias, b->n_dw * sizeof(float));
}

/* dbias and d additive_w summed over the ranks: one all-reduce, bounded
 * by tmo like every wait of the call. */
static attn_status sum_over_ranks(ring_bwd *b, double tmo)
{
    ring_call *c = b->c;
    MPI_Request req = MPI_REQUEST_NULL;
    char why[256];
    double t0 = ring_now();
    if (MPI_Iallreduce(MPI_IN_PLACE, b->sums, (int)(b->n_dbias + b->n_dw),
                       MPI_FLOAT, MPI_SUM, c->comm, &req) != MPI_SUCCESS) {
        snprintf(c->why, sizeof c->why, "rank %d: MPI_Iallreduce failed",
                 c->rank);
        return ATTN_ERR_DEVICE;
    }
    attn_status st = ring_wait(&req, 1, tmo, NULL, why, sizeof why,
                               "the sums of dbias and d_additive_w");
    c->st.agree_s += ring_now() - t0;
    if (st != ATTN_OK) {
        snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank, why);
        b->keep_sums = 1;
    }
    return st;
}

attn_status ring_run_backward(attn_context *ctx, MPI_Comm comm,
                              const attn_ring_desc *ring,
                              const attn_sdpa_desc *d,
                              const attn_sdpa_grad *g_local, ring_bwd_fn bwd,
                              void *user, const ring_bwd_io *io)
{
    const char *fn = "attn_sdpa_ring_backward";
    /* a NULL ring through the agreement, as in ring.c */
    static const attn_ring_desc no_ring = ATTN_RING_DESC_INIT;
    const int ring_null = !ring;
    ring_set_error("%s", "");
    if (comm == MPI_COMM_NULL) {
        ring_set_error("%s: comm is NULL", fn);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (ring_null)
        ring = &no_ring;
    ring_call *c = calloc(1, sizeof *c);
    ring_bwd *b = calloc(1, sizeof *b);
    if (!c || !b) {
        free(c);
        free(b);
        ring_set_error("%s: no memory", fn);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    double t_start = ring_now();
    b->c = c;
    b->bwd = bwd ? bwd : default_bwd;
    b->user = user;
    c->ctx = ctx;
    MPI_Errhandler old_handler;
    if (ring_call_open(c, comm, &old_handler) != ATTN_OK) {
        ring_set_error("%s: the communicator cannot be used", fn);
        free(c);
        free(b);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    double tmo = ring->timeout_ms > 0 ? ring->timeout_ms / 1000.0 : 60.0;
    attn_status mine = ATTN_OK;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    if (ring_null || !d || !ctx || (!g_local && !io)) {
        snprintf(c->why, sizeof c->why, "rank %d: %s is NULL", c->rank,
                 ring_null ? "ring"
                 : !d      ? "d"
                 : !ctx    ? "ctx"
                           : "g");
        mine = ATTN_ERR_INVALID_ARGUMENT;
    }
    if (mine == ATTN_OK && !io)
        mine = read_grad(g_local, &g, c->why, sizeof c->why);
    uint32_t hash = 0;
    if (mine == ATTN_OK)
        mine = ring_call_setup(c, ring, d, &tmo, &hash);
    if (mine == ATTN_OK && io)
        mine = io->load(c, io->self, &g);
    /* strides: extents that fit, and rows apart in o and in dq, dk and
     * dv, which are written through q's, k's and v's strides */
    if (mine == ATTN_OK)
        mine = ring_strides_check(c);
    for (int t = 0; t < 3 && mine == ATTN_OK; t++)
        if (ring_strides_given(c, t))
            mine = ring_strides_rows_apart(c, t);
    if (mine == ATTN_OK && g.dbias && !c->g.mask.bias) {
        snprintf(c->why, sizeof c->why, "g->dbias is set, d has no bias");
        mine = ATTN_ERR_INVALID_ARGUMENT;
    }
    if (mine == ATTN_OK && g.d_additive_w &&
        c->g.score != ATTN_SCORE_ADDITIVE) {
        snprintf(c->why, sizeof c->why,
                 "g->d_additive_w is set, the score is not additive");
        mine = ATTN_ERR_INVALID_ARGUMENT;
    }
    if (mine == ATTN_OK)
        mine = check_overlap(c, &g);
    attn_sdpa_grad in = g; /* the inputs, contiguous copies where strided */
    if (mine == ATTN_OK)
        mine = gather_inputs(b, &in);
    if (mine == ATTN_OK)
        mine = alloc_bwd(b, &in);
    /* a forward and a backward on the ranks of one communicator disagree */
    hash ^= 0x62776421u + (mine == ATTN_OK && g.dbias ? 0x100u : 0u) +
            (mine == ATTN_OK && g.d_additive_w ? 0x200u : 0u);
    int keep = 0;
    attn_status result = ring_agree_start(c, mine, hash, tmo);
    if (result == ATTN_OK) {
        attn_status local = ATTN_OK, seen = ATTN_OK;
        int seen_rank = -1;
        c->st.steps = ring_steps_needed(&c->lay, c->ranks, &c->g);
        attn_status comm_st =
            bwd_steps(b, tmo, &local, &seen, &seen_rank, &keep);
        result = ring_agree_end(c, comm_st, local, seen, seen_rank, tmo);
        if (result == ATTN_OK && b->n_dbias + b->n_dw)
            result = sum_over_ranks(b, tmo);
        if (result == ATTN_OK)
            write_grads(b, &g);
        if (result == ATTN_OK && io)
            result = io->store(c, io->self, &g); /* this rank's alone */
    }
    c->st.bytes_held = c->held;
    c->st.total_s = ring_now() - t_start;
    if (result != ATTN_OK)
        ring_set_error("%s: %s", fn, c->why);
    else
        ring_put_stats(c, c->ring.stats);
    free_bwd(b, keep);
    ring_free_all(c, keep);
    if (io)
        io->release(io->self);
    ring_call_close(c, &old_handler);
    free(c);
    free(b);
    return result;
}

attn_status attn_sdpa_ring_backward(attn_context *ctx, MPI_Comm comm,
                                    const attn_ring_desc *ring,
                                    const attn_sdpa_desc *d,
                                    const attn_sdpa_grad *g_local)
{
    return ring_run_backward(ctx, comm, ring, d, g_local, NULL, NULL, NULL);
}
