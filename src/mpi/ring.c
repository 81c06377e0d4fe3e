/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_ring: every rank attends its query chunks to each rank's
 * key/value chunks in turn.  Step t holds the K/V message of rank
 * (rank - t) mod P; while the blocks of step t run, that message goes on
 * to the right neighbour and the next one arrives from the left.  Partial
 * results merge exactly through their log-sum-exp (ring_math.c).
 *
 * Failures never hang: the ranks agree on their arguments before the ring
 * and on the outcome after it (ring_agree), every message carries the
 * sender's status so that the others stop computing once one has failed,
 * and every wait has a deadline (ring_comm.c).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring_check.h"
#include "ring_impl.h"
#ifdef ATTN_MPI_HAVE_CL
#include "ring_cl.h"
#endif

void *ring_grab(ring_call *c, size_t n)
{
    c->held += n;
    return malloc(n ? n : 1);
}

size_t ring_msg_bytes_of(const ring_call *c, int sender, size_t elem)
{
    size_t rows = (size_t)ring_rank_rows(&c->lay, sender);
    return RING_HEADER + rows * c->bkv * (c->d + c->dv) * elem;
}

size_t ring_msg_bytes(const ring_call *c, int sender)
{
    return ring_msg_bytes_of(c, sender, c->elem);
}

void ring_chunk_offsets_of(const ring_call *c, int sender, int j, size_t elem,
                           size_t *k_off, size_t *v_off)
{
    size_t off = RING_HEADER;
    for (int i = 0; i < j; i++) {
        size_t n =
            (size_t)ring_chunk_rows(&c->lay, ring_chunk_of(&c->lay, sender, i));
        off += n * c->bkv * (c->d + c->dv) * elem;
    }
    size_t n =
        (size_t)ring_chunk_rows(&c->lay, ring_chunk_of(&c->lay, sender, j));
    *k_off = off;
    *v_off = off + n * c->bkv * c->d * elem;
}

void ring_chunk_offsets(const ring_call *c, int sender, int j, size_t *k_off,
                        size_t *v_off)
{
    ring_chunk_offsets_of(c, sender, j, c->elem, k_off, v_off);
}

size_t ring_chunk_row0(const ring_call *c, int i)
{
    size_t row0 = 0;
    for (int j = 0; j < i; j++)
        row0 += (size_t)ring_chunk_rows(&c->lay,
                                        ring_chunk_of(&c->lay, c->rank, j));
    return row0;
}

void ring_pack_float(const ring_call *c, float *dst, const void *src,
                     size_t outer, size_t row0, size_t n, size_t width)
{
    if (!c->f16) {
        ring_pack_rows(dst, src, outer, (int)c->local_rows, (int)row0, (int)n,
                       width, sizeof(float));
        return;
    }
    for (size_t o = 0; o < outer; o++)
        ring_halves_to_floats(dst + o * n * width,
                              (const uint16_t *)src +
                                  (o * c->local_rows + row0) * width,
                              n * width);
}

void ring_pack_own(ring_call *c, const void *k, const void *v)
{
    ring_header h = {RING_MAGIC, -1, c->rank, ATTN_OK, -1};
    memcpy(c->msg[0], &h, sizeof h);
    for (int i = 0; i < c->lay.per_rank && k; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t ko, vo, row0 = ring_chunk_row0(c, i);
        ring_chunk_offsets(c, c->rank, i, &ko, &vo);
        ring_pack_rows(c->msg[0] + ko, k, c->bkv, (int)c->local_rows, (int)row0,
                       (int)n, c->d, c->elem);
        ring_pack_rows(c->msg[0] + vo, v, c->bkv, (int)c->local_rows, (int)row0,
                       (int)n, c->dv, c->elem);
    }
}

static attn_status alloc_all(ring_call *c, const void *q, const void *k,
                             const void *v)
{
    /* Sizes fit: seq and the dims are ints, and their products are
     * checked against what MPI counts and size_t hold. */
    double biggest = (double)c->max_rows * 2.0 * (double)c->bkv *
                     ((double)c->d + (double)c->dv) * (double)c->elem;
    double accs = (double)c->local_rows * (double)c->bq *
                  ((double)c->dv + (double)c->d + 1.0) * 4.0;
    if (biggest + RING_HEADER > 2147483647.0 || accs > (double)SIZE_MAX / 4) {
        snprintf(c->why, sizeof c->why,
                 "a slice's message exceeds 2 GiB: use more ranks");
        return ATTN_ERR_UNSUPPORTED;
    }
    size_t rows = c->local_rows;
    c->msg[0] = ring_grab(c, c->msg_cap);
    c->msg[1] = c->ranks > 1 ? ring_grab(c, c->msg_cap) : NULL;
    int host_q = c->cl ? c->f16 : (c->lay.per_rank > 1 || c->f16);
    if (host_q)
        c->q32 = ring_grab(c, rows * c->bq * c->d * sizeof(float));
    if (c->f16 && !c->cl) {
        c->kf = ring_grab(c, c->max_rows * c->bkv * c->d * sizeof(float));
        c->vf = ring_grab(c, c->max_rows * c->bkv * c->dv * sizeof(float));
    }
    c->acc_o = ring_grab(c, rows * c->bq * c->dv * sizeof(float));
    c->acc_lse = ring_grab(c, rows * c->bq * sizeof(float));
    c->blk_o = ring_grab(c, c->max_rows * c->bq * c->dv * sizeof(float));
    c->blk_lse = ring_grab(c, c->max_rows * c->bq * sizeof(float));
    c->kvl = ring_grab(c, (size_t)c->g.batch * sizeof(int32_t));
    if (c->g.mask.bias)
        c->kbias =
            ring_grab(c, (size_t)c->g.batch * c->max_rows * sizeof(float));
    if (!c->msg[0] || (c->ranks > 1 && !c->msg[1]) || (host_q && !c->q32) ||
        (c->f16 && !c->cl && (!c->kf || !c->vf)) || !c->acc_o || !c->acc_lse ||
        !c->blk_o || !c->blk_lse || !c->kvl || (c->g.mask.bias && !c->kbias)) {
        snprintf(c->why, sizeof c->why, "no memory for the ring's %llu bytes",
                 (unsigned long long)c->held);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    ring_pack_own(c, c->cl ? NULL : k, v); /* the device packs its own */
    for (int i = 0; i < c->lay.per_rank && c->q32 && !c->cl; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i);
        ring_pack_float(c, c->q32 + row0 * c->bq * c->d, q, c->bq, row0, n,
                        c->d);
    }
    /* acc_o is not cleared: a row's first visible block is copied in
     * (ring_merge), and rows no block sees are zeroed by write_out. */
    for (size_t i = 0; i < rows * c->bq; i++)
        c->acc_lse[i] = -INFINITY;
    return ATTN_OK;
}

void ring_free_all(ring_call *c, int keep_msgs)
{
    if (!keep_msgs) {
        free(c->msg[0]);
        free(c->msg[1]);
    }
    free(c->q32);
    free(c->kf);
    free(c->vf);
    free(c->acc_o);
    free(c->acc_lse);
    free(c->blk_o);
    free(c->blk_lse);
    free(c->kvl);
    free(c->kbias);
    for (int t = 0; t < 4; t++)
        free(c->strided[t]);
    ring_layout_free(&c->lay);
}

void ring_widen_kv(ring_call *c, const void **kb, const void **vb, size_t nb,
                   int j, int *widened)
{
    if (!c->f16)
        return;
    if (*widened != j) {
        ring_halves_to_floats(c->kf, (const uint16_t *)*kb, nb * c->bkv * c->d);
        ring_halves_to_floats(c->vf, (const uint16_t *)*vb,
                              nb * c->bkv * c->dv);
        *widened = j;
    }
    *kb = c->kf;
    *vb = c->vf;
}

/* A block on host slices: attn_sdpa of the rows of Q at row0 against
 * message chunk j's K and V (kb, vb), F16 chunks widened once per step. */
static attn_status host_block(ring_call *c, const attn_sdpa_desc *bd,
                              const void *q_local, size_t row0, const void *kb,
                              const void *vb, int j, int *widened)
{
    ring_widen_kv(c, &kb, &vb, (size_t)bd->seq_kv, j, widened);
    const void *qa =
        c->q32 ? (const void *)(c->q32 + row0 * c->bq * c->d) : q_local;
    return c->sdpa(c->ctx, bd, qa, kb, vb, c->blk_o, c->blk_lse, c->user);
}

int ring_block_desc(ring_call *c, int ca, int cb, attn_sdpa_desc *bd)
{
    size_t na = (size_t)ring_chunk_rows(&c->lay, ca);
    size_t nb = (size_t)ring_chunk_rows(&c->lay, cb);
    if (!na || !nb)
        return 0;
    *bd = c->g;
    bd->seq_q = (int)na;
    bd->seq_kv = (int)nb;
    bd->dtype = ATTN_F32;
    if (!ring_block_mask(&c->g, c->lay.start[ca], c->lay.start[cb], bd))
        return 0;
    bd->mask.kv_len = NULL;
    if (c->g.mask.kv_len) {
        int any = 0;
        for (int b = 0; b < c->g.batch; b++) {
            long long n = (long long)c->g.mask.kv_len[b] - c->lay.start[cb];
            c->kvl[b] = (int32_t)(n < 0               ? 0
                                  : n > (long long)nb ? (long long)nb
                                                      : n);
            any |= c->kvl[b] > 0;
        }
        if (!any)
            return 0;
        bd->mask.kv_len = c->kvl;
    }
    if (c->g.mask.bias) {
        /* the key bias of chunk cb's keys, [batch, nb] */
        for (size_t b = 0; b < (size_t)c->g.batch; b++)
            memcpy(c->kbias + b * nb,
                   c->g.mask.bias + b * (size_t)c->ring.seq +
                       (size_t)c->lay.start[cb],
                   nb * sizeof(float));
        bd->mask.bias = c->kbias;
    }
    return 1;
}

/* One block: local chunk i's queries against chunk j of src's message m.
 * Returns ATTN_OK also for a block the masks hide (skipped). */
static attn_status run_block(ring_call *c, const void *q_local, int i,
                             const unsigned char *m, int slot, int src, int j,
                             int *widened)
{
    int ca = ring_chunk_of(&c->lay, c->rank, i);
    int cb = ring_chunk_of(&c->lay, src, j);
    size_t na = (size_t)ring_chunk_rows(&c->lay, ca);
    attn_sdpa_desc bd;
    if (!ring_block_desc(c, ca, cb, &bd))
        return ATTN_OK;
    size_t ko, vo;
    ring_chunk_offsets(c, src, j, &ko, &vo);
    size_t row0 = ring_chunk_row0(c, i);
    attn_status st;
#ifdef ATTN_MPI_HAVE_CL
    if (c->cl)
        st = ring_cl_block(c, &bd, slot, row0, ko, vo);
    else
#else
    (void)slot;
#endif
        st = host_block(c, &bd, q_local, row0, m + ko, m + vo, j, widened);
    if (st != ATTN_OK) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: attn_sdpa of its chunk %d against chunk %d: %s",
                 c->rank, ca, cb, attn_status_string(st));
        return st;
    }
    double t0 = ring_now();
    ring_merge(c->acc_o + row0 * c->bq * c->dv, c->acc_lse + row0 * c->bq,
               c->blk_o, c->blk_lse, na * c->bq, c->dv);
    c->st.merge_s += ring_now() - t0;
    c->st.blocks++;
    return ATTN_OK;
}

static attn_status default_sdpa(attn_context *ctx, const attn_sdpa_desc *d,
                                const void *q, const void *k, const void *v,
                                void *o, float *lse, void *user)
{
    (void)user;
    return attn_sdpa(ctx, d, q, k, v, o, lse);
}

/* The blocks of one step, on the calling thread (reqs given: MPI moves the
 * transfer between blocks) or on a thread of their own (reqs NULL: no MPI
 * call, the calling thread polls meanwhile). */
typedef struct step_job {
    ring_call *c;
    const void *q_local;
    const unsigned char *m;
    int slot, src;
    attn_status local; /* in: this rank's status so far; out: after */
    MPI_Request *reqs;
    atomic_int running; /* 1 until the blocks are done */
    double end;         /* when they were done (ring_now) */
} step_job;

static void compute_step(step_job *j)
{
    int widened = -1;
    for (int i = 0; i < j->c->lay.per_rank; i++)
        for (int k = 0; k < j->c->lay.per_rank && j->local == ATTN_OK; k++) {
            j->local = run_block(j->c, j->q_local, i, j->m, j->slot, j->src, k,
                                 &widened);
            int done;
            if (j->reqs)
                MPI_Testall(2, j->reqs, &done, MPI_STATUSES_IGNORE);
        }
    j->end = ring_now();
    atomic_store_explicit(&j->running, 0, memory_order_release);
}

static void *step_thread(void *arg)
{
    compute_step(arg);
    return NULL;
}

/* The ring proper.  *local receives a failure of this rank's blocks (the
 * ring then goes on forwarding), *seen the worst status a message
 * brought; the return value is ATTN_OK or a communication failure.  While
 * the step's transfers run, its blocks compute on a thread of their own,
 * so that MPI progresses them (on one node: copies them) on the calling
 * thread meanwhile; only the calling thread calls MPI. */
static attn_status ring_steps(ring_call *c, const void *q_local, double tmo,
                              attn_status *local, attn_status *seen,
                              int *seen_rank, int *keep_msgs)
{
    int P = c->ranks, right = (c->rank + 1) % P, left = (c->rank + P - 1) % P;
    int cur = 0;
    for (int t = 0; t < c->st.steps; t++) {
        int src = (c->rank - t + P) % P;
        unsigned char *m = c->msg[cur];
        ring_header h;
        memcpy(&h, m, sizeof h);
        if (h.magic != RING_MAGIC || h.origin != src || h.step != t - 1) {
            snprintf(c->why, sizeof c->why,
                     "rank %d: step %d received a message that is not the "
                     "ring's (another call on the communicator?)",
                     c->rank, t);
            return ATTN_ERR_DEVICE;
        }
        if (h.status != ATTN_OK && *seen == ATTN_OK) {
            *seen = (attn_status)h.status;
            *seen_rank = h.failed_rank;
        }
        MPI_Request reqs[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
        int last = t == c->st.steps - 1;
        if (!last) {
            int from = (src + P - 1) % P;
            h.step = t;
            if (*local != ATTN_OK && h.status == ATTN_OK) {
                h.status = (int32_t)*local;
                h.failed_rank = c->rank;
            }
            memcpy(m, &h, sizeof h);
            int rc = MPI_Irecv(c->msg[1 - cur], (int)ring_msg_bytes(c, from),
                               MPI_BYTE, left, RING_TAG, c->comm, &reqs[0]);
            if (rc == MPI_SUCCESS)
                rc = MPI_Isend(m, (int)ring_msg_bytes(c, src), MPI_BYTE, right,
                               RING_TAG, c->comm, &reqs[1]);
            if (rc != MPI_SUCCESS) {
                snprintf(c->why, sizeof c->why,
                         "rank %d: MPI_Irecv / MPI_Isend failed", c->rank);
                *keep_msgs = !ring_cancel(reqs, 2, RING_GRACE_S);
                return ATTN_ERR_DEVICE;
            }
            c->st.bytes_sent += ring_msg_bytes(c, src);
        }
        step_job job = {c, q_local, m, cur, src, *local, NULL, 1, 0};
        double t0 = ring_now();
        pthread_t th;
        int threaded = 0;
        if (*local != ATTN_OK || *seen != ATTN_OK) {
            job.end = t0; /* failed: forward only */
            atomic_store(&job.running, 0);
        } else if (!last && c->threads_ok &&
                   pthread_create(&th, NULL, step_thread, &job) == 0) {
            threaded = 1;
        } else {
            job.reqs = last ? NULL : reqs;
            compute_step(&job);
        }
        attn_status st = ATTN_OK;
        char why[256] = "";
        double t_xfer = t0;
        if (!last) {
            st = ring_wait(reqs, 2, tmo, threaded ? &job.running : NULL, why,
                           sizeof why, "a ring step");
            t_xfer = ring_now();
        }
        attn_status up = ATTN_OK;
        char up_why[256] = "";
#ifdef ATTN_MPI_HAVE_CL
        /* The next message goes to the device while these blocks may
         * still compute (on the device, from another queue). */
        if (c->cl && st == ATTN_OK && !last && *local == ATTN_OK &&
            *seen == ATTN_OK)
            up = ring_cl_arrived(c, 1 - cur, up_why, sizeof up_why);
#endif
        if (threaded)
            pthread_join(th, NULL);
        *local = job.local;
        if (*local == ATTN_OK && up != ATTN_OK) {
            *local = up;
            snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank, up_why);
        }
        c->st.compute_s += job.end - t0;
        if (t_xfer > job.end)
            c->st.wait_s += t_xfer - job.end;
        if (st != ATTN_OK) {
            snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank, why);
            *keep_msgs = !ring_cancel(reqs, 2, RING_GRACE_S);
            return st;
        }
        cur = 1 - cur;
    }
    return ATTN_OK;
}

void ring_put_rows(const ring_call *c, void *dst, const float *src,
                   size_t outer, size_t row0, size_t n, size_t width)
{
    if (!c->f16) {
        ring_unpack_rows(dst, src, outer, (int)c->local_rows, (int)row0, (int)n,
                         width, sizeof(float));
        return;
    }
    for (size_t b = 0; b < outer; b++)
        ring_floats_to_halves((uint16_t *)dst +
                                  (b * c->local_rows + row0) * width,
                              src + b * n * width, n * width);
}

/* Writes the merged rows into the caller's o and lse; a row that saw no
 * key gets O = 0 (its lse is -INFINITY already). */
void ring_write_out(ring_call *c, void *o, float *lse)
{
    for (size_t r = 0; r < c->local_rows * c->bq; r++)
        if (c->acc_lse[r] == -INFINITY)
            memset(c->acc_o + r * c->dv, 0, c->dv * sizeof(float));
    for (int i = 0; i < c->lay.per_rank; i++) {
        size_t n = (size_t)ring_chunk_rows(&c->lay,
                                           ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i);
        ring_put_rows(c, o, c->acc_o + row0 * c->bq * c->dv, c->bq, row0, n,
                      c->dv);
        if (lse)
            ring_unpack_rows(lse, c->acc_lse + row0 * c->bq, c->bq,
                             (int)c->local_rows, (int)row0, (int)n, 1,
                             sizeof(float));
    }
}

/* The outputs, once every rank agreed: a device write that fails then is
 * this rank's failure alone. */
static attn_status write_result(ring_call *c, void *o, float *lse)
{
#ifdef ATTN_MPI_HAVE_CL
    if (c->cl)
        return ring_cl_write(c);
#endif
    if (c->strided[3]) {
        ring_write_out(c, c->strided[3], lse);
        ring_strides_write_o(c, o);
    } else {
        ring_write_out(c, o, lse);
    }
    return ATTN_OK;
}

void ring_put_stats(const ring_call *c, attn_ring_stats *out)
{
    if (!out)
        return;
    size_t size = out->struct_size ? out->struct_size : sizeof *out;
    if (size > sizeof *out)
        size = sizeof *out;
    attn_ring_stats s = c->st;
    s.struct_size = out->struct_size;
    memcpy(out, &s, size);
}

attn_status ring_call_open(ring_call *c, MPI_Comm comm,
                           MPI_Errhandler *old_handler)
{
    c->comm = comm;
    c->st.struct_size = sizeof c->st;
    *old_handler = MPI_ERRHANDLER_NULL;
    if (MPI_Comm_get_errhandler(comm, old_handler) != MPI_SUCCESS ||
        MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN) != MPI_SUCCESS ||
        MPI_Comm_size(comm, &c->ranks) != MPI_SUCCESS ||
        MPI_Comm_rank(comm, &c->rank) != MPI_SUCCESS) {
        if (*old_handler != MPI_ERRHANDLER_NULL) {
            MPI_Comm_set_errhandler(comm, *old_handler);
            MPI_Errhandler_free(old_handler);
        }
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    /* Under MPI_THREAD_SINGLE the process may hold no other thread that
     * runs while MPI is called: the blocks then run on this thread. */
    int level = MPI_THREAD_SINGLE;
    c->threads_ok =
        MPI_Query_thread(&level) == MPI_SUCCESS && level >= MPI_THREAD_FUNNELED;
    return ATTN_OK;
}

void ring_call_close(ring_call *c, MPI_Errhandler *old_handler)
{
    MPI_Comm_set_errhandler(c->comm, *old_handler);
    MPI_Errhandler_free(old_handler);
}

attn_status ring_call_setup(ring_call *c, const attn_ring_desc *ring,
                            const attn_sdpa_desc *d, double *tmo,
                            uint32_t *hash)
{
    attn_status mine =
        ring_check_descs(ring, d, &c->ring, &c->g, c->why, sizeof c->why);
    if (mine != ATTN_OK) {
        if (ring->timeout_ms > 0)
            *tmo = ring->timeout_ms / 1000.0;
        return mine;
    }
    *tmo = c->ring.timeout_ms ? c->ring.timeout_ms / 1000.0 : 60.0;
    mine = ring_layout_make(&c->ring, c->ranks, &c->lay, c->why, sizeof c->why);
    if (mine != ATTN_OK)
        return mine;
    c->f16 = c->g.dtype == ATTN_F16;
    c->elem = c->f16 ? 2 : 4;
    c->bq = (size_t)c->g.batch * (size_t)c->g.heads_q;
    c->bkv = (size_t)c->g.batch * (size_t)c->g.heads_kv;
    c->d = (size_t)c->g.head_dim;
    c->dv = (size_t)c->g.head_dim_v;
    c->local_rows = (size_t)ring_rank_rows(&c->lay, c->rank);
    c->max_rows = 0;
    for (int ch = 0; ch < c->lay.nchunks; ch++)
        if ((size_t)ring_chunk_rows(&c->lay, ch) > c->max_rows)
            c->max_rows = (size_t)ring_chunk_rows(&c->lay, ch);
    c->msg_cap = 0;
    for (int r = 0; r < c->ranks; r++)
        if (ring_msg_bytes(c, r) > c->msg_cap)
            c->msg_cap = ring_msg_bytes(c, r);
    *hash = ring_hash(&c->ring, &c->lay, &c->g);
    return ATTN_OK;
}

/* The message of a failure another rank had. */
static void peer_failed(ring_call *c, attn_status st, int rank)
{
    snprintf(c->why, sizeof c->why, "rank %d failed: %s", rank,
             attn_status_string(st));
}

attn_status ring_agree_start(ring_call *c, attn_status mine, uint32_t hash,
                             double tmo)
{
    attn_status agreed = ATTN_OK;
    int failed_rank = -1, same = 1;
    double t0 = ring_now();
    attn_status comm_st =
        ring_agree(c->comm, c->rank, mine, hash, tmo, &agreed, &failed_rank,
                   &same, c->why, sizeof c->why);
    c->st.agree_s += ring_now() - t0;
    if (comm_st != ATTN_OK)
        return comm_st;
    if (mine != ATTN_OK)
        return mine;
    if (agreed != ATTN_OK) {
        peer_failed(c, agreed, failed_rank);
        return agreed;
    }
    if (!same) {
        snprintf(c->why, sizeof c->why,
                 "the ranks passed different descriptors (shape, mask, "
                 "kv_len, key bias, scale or ring)");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    return ATTN_OK;
}

attn_status ring_agree_end(ring_call *c, attn_status comm_st, attn_status local,
                           attn_status seen, int seen_rank, double tmo)
{
    attn_status end = comm_st != ATTN_OK ? comm_st : local, agreed = ATTN_OK;
    int failed_rank = -1, same = 1;
    double t0 = ring_now();
    char why2[sizeof c->why];
    attn_status st2 = ring_agree(c->comm, c->rank, end, 0, tmo, &agreed,
                                 &failed_rank, &same, why2, sizeof why2);
    c->st.agree_s += ring_now() - t0;
    if (end != ATTN_OK)
        return end;
    if (st2 != ATTN_OK) {
        memcpy(c->why, why2, sizeof why2);
        return st2;
    }
    if (agreed != ATTN_OK) {
        peer_failed(c, agreed, failed_rank);
        return agreed;
    }
    if (seen != ATTN_OK) { /* cannot happen without agreed */
        peer_failed(c, seen, seen_rank);
        return seen;
    }
    return ATTN_OK;
}

attn_status ring_run_any(attn_context *ctx, MPI_Comm comm,
                         const attn_ring_desc *ring, const attn_sdpa_desc *d,
                         const void *q_local, const void *k_local,
                         const void *v_local, void *o_local, float *lse_local,
                         ring_sdpa_fn sdpa, void *user, ring_cl *cl)
{
    const char *fn = cl ? "attn_sdpa_ring_cl" : "attn_sdpa_ring";
    ring_set_error("%s", "");
    if (comm == MPI_COMM_NULL || !ring) {
        ring_set_error("%s: %s is NULL", fn, ring ? "comm" : "ring");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    ring_call *c = calloc(1, sizeof *c);
    if (!c) {
        ring_set_error("%s: no memory", fn);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    c->cl = cl;
    double t_start = ring_now();
    c->ctx = ctx;
    c->sdpa = sdpa ? sdpa : default_sdpa;
    c->user = user;
    MPI_Errhandler old_handler;
    if (ring_call_open(c, comm, &old_handler) != ATTN_OK) {
        ring_set_error("%s: the communicator cannot be used", fn);
        free(c);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    double tmo = 60.0;
    attn_status mine = ATTN_OK;
    if (!d || !ctx || (!cl && (!q_local || !k_local || !v_local || !o_local))) {
        snprintf(c->why, sizeof c->why, "rank %d: %s is NULL", c->rank,
                 !d         ? "d"
                 : !ctx     ? "ctx"
                 : !q_local ? "q_local"
                 : !k_local ? "k_local"
                 : !v_local ? "v_local"
                            : "o_local");
        mine = ATTN_ERR_INVALID_ARGUMENT;
        if (ring->timeout_ms > 0)
            tmo = ring->timeout_ms / 1000.0;
    }
    uint32_t hash = 0;
    if (mine == ATTN_OK)
        mine = ring_call_setup(c, ring, d, &tmo, &hash);
    if (mine == ATTN_OK) {
        mine = ring_strides_check(c);
#ifdef ATTN_MPI_HAVE_CL
        if (cl && mine == ATTN_OK)
            mine = ring_cl_check(c);
#endif
        if (mine == ATTN_OK)
            mine = ring_strides_gather(c, &q_local, &k_local, &v_local);
        if (mine == ATTN_OK)
            mine = alloc_all(c, q_local, k_local, v_local);
#ifdef ATTN_MPI_HAVE_CL
        if (cl && mine == ATTN_OK)
            mine = ring_cl_prepare(c);
#endif
    }
    /* The first agreement: every rank's arguments and allocations. */
    int keep_msgs = 0;
    attn_status result = ring_agree_start(c, mine, hash, tmo);
    if (result == ATTN_OK) {
        attn_status local = ATTN_OK, seen = ATTN_OK;
        int seen_rank = -1;
        /* The masks may hide every block past some step from every rank
         * (a causal window): the ring stops there. */
        c->st.steps = ring_steps_needed(&c->lay, c->ranks, &c->g);
        attn_status comm_st =
            ring_steps(c, q_local, tmo, &local, &seen, &seen_rank, &keep_msgs);
        /* The last agreement: a failure of the ring's last steps has had
         * no message left to travel with. */
        result = ring_agree_end(c, comm_st, local, seen, seen_rank, tmo);
        if (result == ATTN_OK)
            result = write_result(c, o_local, lse_local);
    }
    c->st.bytes_held = c->held;
    c->st.total_s = ring_now() - t_start;
    if (result != ATTN_OK)
        ring_set_error("%s: %s", fn, c->why);
    else if (mine == ATTN_OK)
        ring_put_stats(c, c->ring.stats);
#ifdef ATTN_MPI_HAVE_CL
    if (cl)
        ring_cl_release(c);
#endif
    ring_free_all(c, keep_msgs);
    ring_call_close(c, &old_handler);
    free(c);
    return result;
}

attn_status attn_sdpa_ring(attn_context *ctx, MPI_Comm comm,
                           const attn_ring_desc *ring, const attn_sdpa_desc *d,
                           const void *q_local, const void *k_local,
                           const void *v_local, void *o_local, float *lse_local)
{
    return ring_run_any(ctx, comm, ring, d, q_local, k_local, v_local, o_local,
                        lse_local, NULL, NULL, NULL);
}

attn_status ring_run(attn_context *ctx, MPI_Comm comm,
                     const attn_ring_desc *ring, const attn_sdpa_desc *d,
                     const void *q_local, const void *k_local,
                     const void *v_local, void *o_local, float *lse_local,
                     ring_sdpa_fn sdpa, void *user)
{
    return ring_run_any(ctx, comm, ring, d, q_local, k_local, v_local, o_local,
                        lse_local, sdpa, user, NULL);
}
