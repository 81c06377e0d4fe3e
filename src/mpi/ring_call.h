/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One ring call of libattn_mpi: its state (ring_call), the message
 * format, the steps every part shares (ring_call.c), the strided slices
 * (ring_strides.c), the hooks through which device slices join
 * (ring_cl.c), and the forward (ring.c) and backward (ring_bwd.c) rings.
 * Nothing here is exported.
 */
#ifndef ATTN_RING_CALL_H
#define ATTN_RING_CALL_H

#include "ring_impl.h"

/* The block computation attn_sdpa_ring calls; tests substitute one that
 * fails on a chosen rank and block (tests/mpi). */
typedef attn_status (*ring_sdpa_fn)(attn_context *ctx, const attn_sdpa_desc *d,
                                    const void *q, const void *k, const void *v,
                                    void *o, float *lse, void *user);

#define RING_TAG     0x6174 /* the ring's point-to-point tag */
#define RING_MAGIC   0x52696e67
#define RING_HEADER  64 /* bytes before the payload; keeps it aligned */
#define RING_GRACE_S 1.0

/* The first bytes of every ring message. */
typedef struct ring_header {
    int32_t magic;
    int32_t step;        /* the step it was sent at */
    int32_t origin;      /* the rank whose K/V it holds */
    int32_t status;      /* the worst status its senders knew */
    int32_t failed_rank; /* who had it, -1 when ATTN_OK */
} ring_header;

typedef struct ring_call ring_call;

/* Where the forward's slices live when they are not the caller's host
 * memory (attn_sdpa_ring_cl: ring_cl.c), as ring.c calls on them.  Each
 * hook returns a status with a sentence in c->why (arrived: in why).
 * check: the slices checked against the checked descriptors; prepare,
 * once the call's host memory is allocated: this rank's K/V read into
 * c->msg[0] and its queries made ready; arrived: the message of slot
 * passed on (to the device) while the blocks of the other slot may still
 * run; block: one block into c->blk_o and c->blk_lse; write, once every
 * rank agreed that the ring succeeded: the merged rows into the caller's
 * o and lse; release: everything freed (after any of them). */
typedef struct ring_fwd_io {
    attn_status (*check)(ring_call *c);
    attn_status (*prepare)(ring_call *c);
    attn_status (*arrived)(ring_call *c, int slot, char *why, size_t cap);
    attn_status (*block)(ring_call *c, const attn_sdpa_desc *bd, int slot,
                         size_t row0, size_t ko, size_t vo);
    attn_status (*write)(ring_call *c);
    void (*release)(ring_call *c);
    void *self;
} ring_fwd_io;

/* One call's state, shared by every part of the ring. */
struct ring_call {
    attn_context *ctx;
    MPI_Comm comm;
    ring_sdpa_fn sdpa;
    void *user;
    const ring_fwd_io *io; /* device-resident slices, or NULL */
    int ranks, rank;
    ring_layout lay;
    attn_ring_desc ring;
    attn_sdpa_desc g;
    size_t elem, bq, bkv, d, dv; /* batch*heads_q, batch*heads_kv */
    int f16;
    int threads_ok; /* MPI allows a thread beside the calling one */
    size_t local_rows, max_rows; /* this rank's; the largest chunk */
    size_t msg_cap;              /* the largest K/V message */
    unsigned char *msg[2];
    float *q32;     /* packed and widened Q, or NULL */
    float *kf, *vf; /* F16: one chunk's K and V widened */
    float *acc_o, *acc_lse;
    float *blk_o, *blk_lse;
    int32_t *kvl;
    float *kbias; /* a block's slice of the key bias [batch, chunk], or
                     NULL without one */
    /* Contiguous copies of strided q, k, v and o (ring_strides.c), or
     * NULL: the ring reads the inputs' copies and writes o's. */
    void *strided[4];
    /* The caller's strides of q, k, v, o (c->g's are cleared: the blocks
     * run on the contiguous copies). */
    int64_t strides[4][3];
    uint64_t held;
    attn_ring_stats st;
    char why[384];
};

/* Bytes of sender's message (header and its chunks' K and V). */
size_t ring_msg_bytes(const ring_call *c, int sender);
/* Byte offsets of chunk j's K and V inside sender's message. */
void ring_chunk_offsets(const ring_call *c, int sender, int j, size_t *k_off,
                        size_t *v_off);
/* The same for elements of elem bytes (the backward's float gradients
 * travel in messages of the same layout). */
size_t ring_msg_bytes_of(const ring_call *c, int sender, size_t elem);
void ring_chunk_offsets_of(const ring_call *c, int sender, int j, size_t elem,
                           size_t *k_off, size_t *v_off);
/* Rows before local chunk i in this rank's tensors. */
size_t ring_chunk_row0(const ring_call *c, int i);
/* [outer, n, width] floats from rows [row0, row0 + n) of the local src. */
void ring_pack_float(const ring_call *c, float *dst, const void *src,
                     size_t outer, size_t row0, size_t n, size_t width);
/* The merged rows in the caller's layout: o [bq, local_rows, dv] of the
 * dtype, lse (may be NULL) [bq, local_rows]. */
void ring_write_out(ring_call *c, void *o, float *lse);
/* This rank's message in c->msg[0]: the header (step -1), then, when k
 * is not NULL, its chunks' K and V from the caller's k and v. */
void ring_pack_own(ring_call *c, const void *k, const void *v);
/* F16: the K and V of message chunk j (*kb, *vb: nb rows) widened into
 * c->kf and c->vf, which *kb and *vb then point to (once per chunk:
 * *widened holds the chunk they hold); F32: nothing to do. */
void ring_widen_kv(ring_call *c, const void **kb, const void **vb, size_t nb,
                   int j, int *widened);
/* n rows (row0 on) of the [outer, n, width] floats src into the caller's
 * [outer, local_rows, width] dst of the call's dtype. */
void ring_put_rows(const ring_call *c, void *dst, const float *src,
                   size_t outer, size_t row0, size_t n, size_t width);
/* malloc that counts into c->held. */
void *ring_grab(ring_call *c, size_t n);
/* Frees what the call allocated (the messages only when keep_msgs is 0:
 * MPI may still write them after a timeout) and its layout. */
void ring_free_all(ring_call *c, int keep_msgs);
/* The statistics of the call into the caller's out (by its struct_size). */
void ring_put_stats(const ring_call *c, attn_ring_stats *out);

/* The steps of a call, shared by the forward (ring.c) and the backward
 * (ring_bwd.c).  ring_call_open: c's comm, ranks, rank and threads_ok, the
 * communicator's error handler set to MPI_ERRORS_RETURN (the old one in
 * *old; ring_call_close puts it back); ATTN_ERR_INVALID_ARGUMENT when the
 * communicator cannot be used. */
attn_status ring_call_open(ring_call *c, MPI_Comm comm, MPI_Errhandler *old);
void ring_call_close(ring_call *c, MPI_Errhandler *old);
/* The descriptors checked and read into c (ring, g, lay, the sizes,
 * local_rows, max_rows and msg_cap), *tmo the wait limit in seconds (also on
 * failure), *hash what the ranks must agree on.  ATTN_OK or a status, c->why
 * set. */
attn_status ring_call_setup(ring_call *c, const attn_ring_desc *ring,
                            const attn_sdpa_desc *d, double *tmo,
                            uint32_t *hash);
/* The agreement before the ring (every rank's status and arguments) and
 * the one after it (comm_st: the ring's communication, local: this
 * rank's blocks, seen: the worst status a message brought, from
 * seen_rank).  Each returns the call's status, c->why set. */
attn_status ring_agree_start(ring_call *c, attn_status mine, uint32_t hash,
                             double tmo);
attn_status ring_agree_end(ring_call *c, attn_status comm_st, attn_status local,
                           attn_status seen, int seen_rank, double tmo);
/* The block of global chunks ca (query rows) and cb (keys): *bd is c->g
 * cut to the chunks (F32) with their masks (ring_block_mask), kv_len
 * (c->kvl) and key bias (c->kbias) moved to the block.  0 when nothing
 * is to be computed (an empty chunk, every key hidden). */
int ring_block_desc(ring_call *c, int ca, int cb, attn_sdpa_desc *bd);

/* Strided slices (ring_strides.c).  Takes the strides out of c->g into
 * c->strides and checks this rank's, once local_rows is known: extents
 * that fit, rows of o apart; the device ring refuses them.  ATTN_OK or a
 * status, why set. */
attn_status ring_strides_check(ring_call *c);
/* Contiguous copies of the strided inputs (and room for o), which *q, *k
 * and *v then point to. */
attn_status ring_strides_gather(ring_call *c, const void **q, const void **k,
                                const void **v);
/* o's copy written through its strides into the caller's o. */
void ring_strides_write_o(const ring_call *c, void *o);
/* Whether tensor t (0 q, 1 k, 2 v, 3 o) has strides of its own. */
int ring_strides_given(const ring_call *c, int t);
/* The bytes tensor t spans through its strides (or contiguous). */
size_t ring_strides_bytes(ring_call *c, int t);
/* ATTN_OK when no two rows of tensor t (in its strides) share an
 * element, else ATTN_ERR_INVALID_ARGUMENT with why set. */
attn_status ring_strides_rows_apart(ring_call *c, int t);
/* The rows of tensor t between contig ([batch, heads, local_rows, width]
 * contiguous) and strided (the caller's, in t's strides): gathered into
 * contig (to_contig 1) or scattered from it (0). */
void ring_strides_move(const ring_call *c, int t, void *contig, void *strided,
                       int to_contig);

/* attn_sdpa_ring's body: host slices (io NULL), or the slices io moves. */
attn_status ring_run_any(attn_context *ctx, MPI_Comm comm,
                         const attn_ring_desc *ring, const attn_sdpa_desc *d,
                         const void *q_local, const void *k_local,
                         const void *v_local, void *o_local, float *lse_local,
                         ring_sdpa_fn sdpa, void *user, const ring_fwd_io *io);

/* attn_sdpa_ring with the block computation given (NULL: attn_sdpa). */
attn_status ring_run(attn_context *ctx, MPI_Comm comm,
                     const attn_ring_desc *ring, const attn_sdpa_desc *d,
                     const void *q_local, const void *k_local,
                     const void *v_local, void *o_local, float *lse_local,
                     ring_sdpa_fn sdpa, void *user);

/* The block computation of attn_sdpa_ring_backward (ring_bwd.c); tests
 * substitute one that fails on a chosen rank and block. */
typedef attn_status (*ring_bwd_fn)(attn_context *ctx, const attn_sdpa_desc *d,
                                   const attn_sdpa_grad *g, void *user);

/* Where the backward's slices live when they are not the caller's host
 * memory (attn_sdpa_ring_cl_backward, ring_cl.c): load, once the
 * descriptors are checked (c's sizes known) and before the ranks agree,
 * checks the slices and fills *g with host copies of the inputs and host
 * room for the outputs; store, once every rank agreed that the ring
 * succeeded and the outputs of *g are written, puts them where the caller
 * wants them (a failure there is this rank's alone); release frees what
 * load made (after store, or on any failure).  Each returns a status with
 * a sentence in c->why. */
typedef struct ring_bwd_io {
    attn_status (*load)(ring_call *c, void *self, attn_sdpa_grad *g);
    attn_status (*store)(ring_call *c, void *self, const attn_sdpa_grad *g);
    void (*release)(void *self);
    void *self;
} ring_bwd_io;

/* attn_sdpa_ring_backward with the block computation given (NULL:
 * attn_sdpa_backward), on the caller's host slices g_local or (io not
 * NULL, g_local unused) on those io loads. */
attn_status ring_run_backward(attn_context *ctx, MPI_Comm comm,
                              const attn_ring_desc *ring,
                              const attn_sdpa_desc *d,
                              const attn_sdpa_grad *g_local, ring_bwd_fn bwd,
                              void *user, const ring_bwd_io *io);

#endif /* ATTN_RING_CALL_H */
