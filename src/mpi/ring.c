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

#include "ring_call.h"

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
    int host_q = c->io ? c->f16 : (c->lay.per_rank > 1 || c->f16);
    if (host_q)
        c->q32 = ring_grab(c, rows * c->bq * c->d * sizeof(float));
    if (c->f16 && !c->io) {
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
        (c->f16 && !c->io && (!c->kf || !c->vf)) || !c->acc_o || !c->acc_lse ||
        !c->blk_o || !c->blk_lse || !c->kvl || (c->g.mask.bias && !c->kbias)) {
        snprintf(c->why, sizeof c->why, "no memory for the ring's %llu bytes",
                 (unsigned long long)c->held);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    ring_pack_own(c, c->io ? NULL : k, v); /* the device packs its own */
    for (int i = 0; i < c->lay.per_rank && c->q32 && !c->io; i++) {
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
    if (c->io)
        st = c->io->block(c, &bd, slot, row0, ko, vo);
    else
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
        /* The next message goes to the device while these blocks may
         * still compute (on the device, from another queue). */
        if (c->io && st == ATTN_OK && !last && *local == ATTN_OK &&
            *seen == ATTN_OK)
            up = c->io->arrived(c, 1 - cur, up_why, sizeof up_why);
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

/* The outputs, once every rank agreed: a device write that fails then is
 * this rank's failure alone. */
static attn_status write_result(ring_call *c, void *o, float *lse)
{
    if (c->io)
        return c->io->write(c);
    if (c->strided[3]) {
        ring_write_out(c, c->strided[3], lse);
        ring_strides_write_o(c, o);
    } else {
        ring_write_out(c, o, lse);
    }
    return ATTN_OK;
}

attn_status ring_run_any(attn_context *ctx, MPI_Comm comm,
                         const attn_ring_desc *ring, const attn_sdpa_desc *d,
                         const void *q_local, const void *k_local,
                         const void *v_local, void *o_local, float *lse_local,
                         ring_sdpa_fn sdpa, void *user, const ring_fwd_io *io)
{
    const char *fn = io ? "attn_sdpa_ring_cl" : "attn_sdpa_ring";
    /* A NULL ring is refused like the other NULL arguments, through the
     * agreement on comm, so that the other ranks learn it at once; a NULL
     * comm, which reaches no other rank, here alone. */
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
    if (!c) {
        ring_set_error("%s: no memory", fn);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    c->io = io;
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
    if (ring_null || !d || !ctx ||
        (!io && (!q_local || !k_local || !v_local || !o_local))) {
        snprintf(c->why, sizeof c->why, "rank %d: %s is NULL", c->rank,
                 ring_null  ? "ring"
                 : !d       ? "d"
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
        if (io && mine == ATTN_OK)
            mine = io->check(c);
        if (mine == ATTN_OK)
            mine = ring_strides_gather(c, &q_local, &k_local, &v_local);
        if (mine == ATTN_OK)
            mine = alloc_all(c, q_local, k_local, v_local);
        if (io && mine == ATTN_OK)
            mine = io->prepare(c);
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
    if (io)
        io->release(c);
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
