/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_ring_cl: the ring of ring.c on slices in OpenCL buffers.  The
 * blocks run through attn_sdpa_cl_buffers on device buffers; the K/V
 * messages travel through host memory (MPI need not be device-aware) and
 * are written to the device from a queue of the call's own; each block's
 * partial O and lse come back to the host, where ring.c merges them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ring_check.h"
#include "ring_cl.h"

typedef struct ring_cl {
    const attn_cl_buffers *ub; /* the caller's */
    attn_cl_buffers b;         /* *ub read by its struct_size */
    cl_command_queue queue;
    cl_uint n_wait;
    const cl_event *wait;
    ring_sdpa_cl_fn sdpa;
    void *user;
    cl_context clctx;
    cl_device_id dev;
    cl_command_queue xq; /* the messages' writes */
    cl_mem q;            /* the queries in float, per chunk, or NULL: b.q */
    cl_mem kv[2];        /* one message's K and V each (float for F16) */
    cl_mem bo, blse;     /* one block's O and lse */
    float *stage;        /* F16: a message's payload widened */
} ring_cl;

static attn_status cl_status(cl_int err)
{
    return err == CL_OUT_OF_HOST_MEMORY || err == CL_OUT_OF_RESOURCES ||
                   err == CL_MEM_OBJECT_ALLOCATION_FAILURE
               ? ATTN_ERR_OUT_OF_MEMORY
               : ATTN_ERR_DEVICE;
}

static attn_status cl_fail(ring_call *c, cl_int err, const char *what)
{
    snprintf(c->why, sizeof c->why, "rank %d: %s failed (OpenCL error %d)",
             c->rank, what, (int)err);
    return cl_status(err);
}

/* The buffer a cl_mem lives in (its parent for a sub-buffer) and where it
 * starts there, in bytes. */
static cl_mem mem_root(cl_mem m, size_t *base)
{
    cl_mem parent = NULL;
    size_t off = 0;
    *base = 0;
    if (clGetMemObjectInfo(m, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent,
                           &parent, NULL) == CL_SUCCESS &&
        parent &&
        clGetMemObjectInfo(m, CL_MEM_OFFSET, sizeof off, &off, NULL) ==
            CL_SUCCESS) {
        *base = off;
        return parent;
    }
    return m;
}

/* The caller's struct u (struct_size given: its size, 0 the first layout,
 * the only one of this struct so far) into out (known bytes): a size of no
 * layout is ATTN_ERR_INVALID_ARGUMENT, members set past the known ones
 * ATTN_ERR_UNSUPPORTED (docs/ABI.md); name says which struct. */
static attn_status read_sized(ring_call *c, const void *u, size_t given,
                              void *out, size_t known, const char *name)
{
    const size_t size = ring_read_size(given, known, known);
    if (!size) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: %s->struct_size %zu is the size of no layout",
                 c->rank, name, given);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!ring_tail_zero(u, size, known)) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: %s sets members this libattn_mpi does not know: a "
                 "newer libattn_mpi is needed",
                 c->rank, name);
        return ATTN_ERR_UNSUPPORTED;
    }
    memcpy(out, u, known);
    return ATTN_OK;
}

typedef struct slice_buf {
    const char *name;
    cl_mem mem;
    size_t offset, count, elem; /* offset and count in elements */
} slice_buf;

/* Checks that s's buffer is one of clctx's and holds the slice at its
 * offset (s->name says which, "b->q" say). */
static attn_status check_buf(ring_call *c, cl_context clctx, const slice_buf *s)
{
    if (!s->mem) {
        snprintf(c->why, sizeof c->why, "rank %d: %s is NULL", c->rank,
                 s->name);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    cl_context owner = NULL;
    size_t size = 0;
    if (clGetMemObjectInfo(s->mem, CL_MEM_CONTEXT, sizeof owner, &owner,
                           NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(s->mem, CL_MEM_SIZE, sizeof size, &size, NULL) !=
            CL_SUCCESS ||
        owner != clctx) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: %s is no buffer of the context's cl_context",
                 c->rank, s->name);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (s->offset > SIZE_MAX / s->elem - s->count) {
        snprintf(c->why, sizeof c->why, "rank %d: %s's offset overflows",
                 c->rank, s->name);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    if ((s->offset + s->count) * s->elem > size) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: %s holds %zu bytes, its slice needs %zu from "
                 "byte %zu",
                 c->rank, s->name, size, s->count * s->elem,
                 s->offset * s->elem);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    return ATTN_OK;
}

static int overlap(const slice_buf *a, const slice_buf *b)
{
    if (!a->count || !b->count)
        return 0;
    size_t ba, bb;
    cl_mem ra = mem_root(a->mem, &ba), rb = mem_root(b->mem, &bb);
    if (ra != rb)
        return 0;
    size_t a0 = ba + a->offset * a->elem, a1 = a0 + a->count * a->elem;
    size_t b0 = bb + b->offset * b->elem, b1 = b0 + b->count * b->elem;
    return a0 < b1 && b0 < a1;
}

static attn_status ring_cl_check(ring_call *c)
{
    ring_cl *cl = c->io->self;
    attn_status st =
        attn_context_cl_objects(c->ctx, &cl->clctx, &cl->dev, NULL);
    if (st != ATTN_OK) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: the context runs on no OpenCL device", c->rank);
        return st;
    }
    if (!cl->ub || !cl->queue || (cl->n_wait && !cl->wait)) {
        snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank,
                 !cl->ub      ? "b is NULL"
                 : !cl->queue ? "queue is NULL"
                              : "n_wait > 0 with wait NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if ((st = read_sized(c, cl->ub, cl->ub->struct_size, &cl->b, sizeof cl->b,
                         "b")) != ATTN_OK)
        return st;
    cl->b.struct_size = sizeof cl->b;
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    if (clGetCommandQueueInfo(cl->queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx,
                              NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(cl->queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev,
                              NULL) != CL_SUCCESS ||
        qctx != cl->clctx || qdev != cl->dev) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: the queue is not one of the context's cl_context "
                 "and device",
                 c->rank);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    size_t n = c->local_rows;
    slice_buf s[5] = {
        {"b->q", cl->b.q, cl->b.q_offset, c->bq * n * c->d, c->elem},
        {"b->k", cl->b.k, cl->b.k_offset, c->bkv * n * c->d, c->elem},
        {"b->v", cl->b.v, cl->b.v_offset, c->bkv * n * c->dv, c->elem},
        {"b->o", cl->b.o, cl->b.o_offset, c->bq * n * c->dv, c->elem},
        {"b->lse", cl->b.lse, cl->b.lse_offset, c->bq * n, sizeof(float)}};
    int nbuf = cl->b.lse ? 5 : 4;
    for (int i = 0; i < nbuf; i++)
        if ((st = check_buf(c, cl->clctx, &s[i])) != ATTN_OK)
            return st;
    for (int out = 3; out < nbuf; out++)
        for (int i = 0; i < nbuf; i++)
            if (i != out && (i < out || i >= 3) && overlap(&s[out], &s[i])) {
                snprintf(c->why, sizeof c->why, "rank %d: %s overlaps %s",
                         c->rank, s[out].name, s[i].name);
                return ATTN_ERR_INVALID_ARGUMENT;
            }
    return ATTN_OK;
}

static cl_mem dev_alloc(ring_call *c, size_t bytes, cl_int *err)
{
    if (bytes == 0)
        bytes = 4;
    ring_cl *cl = c->io->self;
    c->st.bytes_device += bytes;
    return clCreateBuffer(cl->clctx, CL_MEM_READ_WRITE, bytes, NULL, err);
}

/* Reads the caller's [outer, local_rows, width] tensor into host memory. */
static attn_status read_slice(ring_call *c, cl_mem m, size_t offset,
                              size_t bytes, void **out, const char *what)
{
    *out = malloc(bytes ? bytes : 1);
    if (!*out) {
        snprintf(c->why, sizeof c->why, "rank %d: no memory to read %s",
                 c->rank, what);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    if (!bytes)
        return ATTN_OK;
    ring_cl *cl = c->io->self;
    cl_int err = clEnqueueReadBuffer(cl->queue, m, CL_TRUE, offset, bytes, *out,
                                     0, NULL, NULL);
    return err == CL_SUCCESS ? ATTN_OK : cl_fail(c, err, what);
}

/* The queries as the blocks read them: the caller's buffer (F32, one
 * chunk), or per chunk [bq, rows, d] floats in cl->q. */
static attn_status prepare_q(ring_call *c)
{
    ring_cl *cl = c->io->self;
    size_t n = c->local_rows, qn = c->bq * n * c->d;
    if (!c->f16 && c->lay.per_rank == 1)
        return ATTN_OK;
    cl_int err;
    cl->q = dev_alloc(c, qn * sizeof(float), &err);
    if (!cl->q)
        return cl_fail(c, err, "clCreateBuffer of the queries");
    if (!qn)
        return ATTN_OK;
    if (!c->f16) { /* F32 zig-zag: device copies, chunk by chunk */
        for (int i = 0; i < c->lay.per_rank; i++) {
            size_t rows = (size_t)ring_chunk_rows(
                &c->lay, ring_chunk_of(&c->lay, c->rank, i));
            size_t row0 = ring_chunk_row0(c, i);
            for (size_t o = 0; o < c->bq && rows; o++) {
                err = clEnqueueCopyBuffer(
                    cl->queue, cl->b.q, cl->q,
                    (cl->b.q_offset + (o * n + row0) * c->d) * sizeof(float),
                    (row0 * c->bq + o * rows) * c->d * sizeof(float),
                    rows * c->d * sizeof(float), 0, NULL, NULL);
                if (err != CL_SUCCESS)
                    return cl_fail(c, err, "clEnqueueCopyBuffer of Q");
            }
        }
        err = clFinish(cl->queue);
        return err == CL_SUCCESS ? ATTN_OK : cl_fail(c, err, "clFinish");
    }
    /* F16: widened once on the host (no kernel of this library's own) */
    void *h;
    attn_status st =
        read_slice(c, cl->b.q, cl->b.q_offset * 2, qn * 2, &h, "reading Q");
    for (int i = 0; st == ATTN_OK && i < c->lay.per_rank; i++) {
        size_t rows = (size_t)ring_chunk_rows(
            &c->lay, ring_chunk_of(&c->lay, c->rank, i));
        size_t row0 = ring_chunk_row0(c, i);
        ring_pack_float(c, c->q32 + row0 * c->bq * c->d, h, c->bq, row0, rows,
                        c->d);
    }
    free(h);
    if (st != ATTN_OK)
        return st;
    err = clEnqueueWriteBuffer(cl->queue, cl->q, CL_TRUE, 0, qn * sizeof(float),
                               c->q32, 0, NULL, NULL);
    return err == CL_SUCCESS ? ATTN_OK : cl_fail(c, err, "writing Q");
}

static attn_status ring_cl_arrived(ring_call *c, int slot, char *why,
                                   size_t cap);

static attn_status ring_cl_prepare(ring_call *c)
{
    ring_cl *cl = c->io->self;
    cl_int err;
    if (cl->n_wait && (err = clWaitForEvents(cl->n_wait, cl->wait)) != 0)
        return cl_fail(c, err, "clWaitForEvents of the wait list");
    cl->xq = clCreateCommandQueue(cl->clctx, cl->dev, 0, &err);
    if (!cl->xq)
        return cl_fail(c, err, "clCreateCommandQueue");
    size_t payload = (c->msg_cap - RING_HEADER) / c->elem;
    for (int s = 0; s < (c->ranks > 1 ? 2 : 1); s++)
        if (!(cl->kv[s] = dev_alloc(c, payload * sizeof(float), &err)))
            return cl_fail(c, err, "clCreateBuffer of K/V");
    if (!(cl->bo = dev_alloc(c, c->max_rows * c->bq * c->dv * 4, &err)) ||
        !(cl->blse = dev_alloc(c, c->max_rows * c->bq * 4, &err)))
        return cl_fail(c, err, "clCreateBuffer of a block's output");
    if (c->f16 && !(cl->stage = ring_grab(c, payload * sizeof(float)))) {
        snprintf(c->why, sizeof c->why, "rank %d: no memory", c->rank);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    attn_status st = prepare_q(c);
    if (st != ATTN_OK)
        return st;
    /* This rank's message: its chunks' K then V, read once. */
    size_t n = c->local_rows;
    void *k = NULL, *v = NULL;
    st = read_slice(c, cl->b.k, cl->b.k_offset * c->elem,
                    c->bkv * n * c->d * c->elem, &k, "reading K");
    if (st == ATTN_OK)
        st = read_slice(c, cl->b.v, cl->b.v_offset * c->elem,
                        c->bkv * n * c->dv * c->elem, &v, "reading V");
    for (int i = 0; st == ATTN_OK && i < c->lay.per_rank; i++) {
        int rows = ring_chunk_rows(&c->lay, ring_chunk_of(&c->lay, c->rank, i));
        size_t ko, vo, row0 = ring_chunk_row0(c, i);
        ring_chunk_offsets(c, c->rank, i, &ko, &vo);
        ring_pack_rows(c->msg[0] + ko, k, c->bkv, (int)n, (int)row0, rows, c->d,
                       c->elem);
        ring_pack_rows(c->msg[0] + vo, v, c->bkv, (int)n, (int)row0, rows,
                       c->dv, c->elem);
    }
    free(k);
    free(v);
    if (st == ATTN_OK)
        st = ring_cl_arrived(c, 0, c->why, sizeof c->why);
    return st;
}

static attn_status ring_cl_arrived(ring_call *c, int slot, char *why,
                                   size_t cap)
{
    ring_cl *cl = c->io->self;
    ring_header h;
    memcpy(&h, c->msg[slot], sizeof h);
    if (h.origin < 0 || h.origin >= c->ranks)
        return ATTN_OK; /* not the ring's: ring_steps says so */
    size_t bytes = ring_msg_bytes(c, h.origin) - RING_HEADER;
    size_t count = bytes / c->elem;
    if (!count)
        return ATTN_OK;
    const void *src = c->msg[slot] + RING_HEADER;
    if (c->f16) {
        ring_halves_to_floats(cl->stage, src, count);
        src = cl->stage;
    }
    cl_int err =
        clEnqueueWriteBuffer(cl->xq, cl->kv[slot], CL_TRUE, 0,
                             count * sizeof(float), src, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        snprintf(why, cap, "writing K/V to the device failed (OpenCL error %d)",
                 (int)err);
        return cl_status(err);
    }
    return ATTN_OK;
}

static attn_status ring_cl_block(ring_call *c, const attn_sdpa_desc *bd,
                                 int slot, size_t row0, size_t ko, size_t vo)
{
    ring_cl *cl = c->io->self;
    attn_cl_buffers bb = ATTN_CL_BUFFERS_INIT;
    bb.q = cl->q ? cl->q : cl->b.q;
    bb.q_offset = cl->q ? row0 * c->bq * c->d : cl->b.q_offset;
    bb.k = bb.v = cl->kv[slot];
    bb.k_offset = (ko - RING_HEADER) / c->elem;
    bb.v_offset = (vo - RING_HEADER) / c->elem;
    bb.o = cl->bo;
    bb.lse = cl->blse;
    cl_event done = NULL, got[2] = {NULL, NULL};
    attn_status st =
        cl->sdpa(c->ctx, bd, &bb, cl->queue, 0, NULL, &done, cl->user);
    if (st != ATTN_OK)
        return st;
    /* The block first, so that merge_s counts the read back alone. */
    size_t rows = (size_t)bd->seq_q * c->bq;
    cl_int err = clWaitForEvents(1, &done);
    clReleaseEvent(done);
    double t0 = ring_now();
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(cl->queue, cl->bo, CL_FALSE, 0,
                                  rows * c->dv * sizeof(float), c->blk_o, 0,
                                  NULL, &got[0]);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(cl->queue, cl->blse, CL_FALSE, 0,
                                  rows * sizeof(float), c->blk_lse, 0, NULL,
                                  &got[1]);
    cl_int werr = got[0] ? clWaitForEvents(got[1] ? 2 : 1, got) : CL_SUCCESS;
    if (err == CL_SUCCESS)
        err = werr;
    for (int i = 0; i < 2; i++)
        if (got[i])
            clReleaseEvent(got[i]);
    c->st.merge_s += ring_now() - t0;
    return err == CL_SUCCESS ? ATTN_OK : cl_status(err);
}

static attn_status ring_cl_write(ring_call *c)
{
    ring_cl *cl = c->io->self;
    size_t n = c->bq * c->local_rows;
    if (!n)
        return ATTN_OK;
    void *o = malloc(n * c->dv * c->elem);
    float *lse = cl->b.lse ? malloc(n * sizeof(float)) : NULL;
    if (!o || (cl->b.lse && !lse)) {
        free(o);
        free(lse);
        snprintf(c->why, sizeof c->why,
                 "rank %d: no memory for the output rows", c->rank);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    ring_write_out(c, o, lse);
    cl_int err = clEnqueueWriteBuffer(cl->queue, cl->b.o, CL_FALSE,
                                      cl->b.o_offset * c->elem,
                                      n * c->dv * c->elem, o, 0, NULL, NULL);
    if (err == CL_SUCCESS && lse)
        err = clEnqueueWriteBuffer(cl->queue, cl->b.lse, CL_FALSE,
                                   cl->b.lse_offset * sizeof(float),
                                   n * sizeof(float), lse, 0, NULL, NULL);
    cl_int ferr = clFinish(cl->queue); /* the host rows are freed next */
    free(o);
    free(lse);
    if (err == CL_SUCCESS)
        err = ferr;
    return err == CL_SUCCESS ? ATTN_OK : cl_fail(c, err, "writing O and lse");
}

static void ring_cl_release(ring_call *c)
{
    ring_cl *cl = c->io->self;
    if (cl->xq) {
        clFinish(cl->xq);
        clReleaseCommandQueue(cl->xq);
    }
    cl_mem *mems[5] = {&cl->q, &cl->kv[0], &cl->kv[1], &cl->bo, &cl->blse};
    for (int i = 0; i < 5; i++)
        if (*mems[i]) {
            clReleaseMemObject(*mems[i]);
            *mems[i] = NULL;
        }
    free(cl->stage);
    cl->stage = NULL;
    cl->xq = NULL;
}

static attn_status default_sdpa_cl(attn_context *ctx, const attn_sdpa_desc *d,
                                   const attn_cl_buffers *b,
                                   cl_command_queue queue, cl_uint n_wait,
                                   const cl_event *wait, cl_event *done,
                                   void *user)
{
    (void)user;
    return attn_sdpa_cl_buffers(ctx, d, b, queue, n_wait, wait, done);
}

attn_status ring_run_cl(attn_context *ctx, MPI_Comm comm,
                        const attn_ring_desc *ring, const attn_sdpa_desc *d,
                        const attn_cl_buffers *b, cl_command_queue queue,
                        cl_uint n_wait, const cl_event *wait,
                        ring_sdpa_cl_fn sdpa, void *user)
{
    ring_cl cl;
    ring_fwd_io io = {ring_cl_check,
                      ring_cl_prepare,
                      ring_cl_arrived,
                      ring_cl_block,
                      ring_cl_write,
                      ring_cl_release,
                      &cl};
    memset(&cl, 0, sizeof cl);
    cl.ub = b;
    cl.queue = queue;
    cl.n_wait = n_wait;
    cl.wait = wait;
    cl.sdpa = sdpa ? sdpa : default_sdpa_cl;
    cl.user = user;
    return ring_run_any(ctx, comm, ring, d, NULL, NULL, NULL, NULL, NULL, NULL,
                        NULL, &io);
}

attn_status attn_sdpa_ring_cl(attn_context *ctx, MPI_Comm comm,
                              const attn_ring_desc *ring,
                              const attn_sdpa_desc *d, const attn_cl_buffers *b,
                              cl_command_queue queue, cl_uint n_wait,
                              const cl_event *wait)
{
    return ring_run_cl(ctx, comm, ring, d, b, queue, n_wait, wait, NULL, NULL);
}

/* ---- the backward on device buffers ------------------------------------ */

/* The slices of attn_sdpa_ring_cl_backward: the caller's buffers, and
 * their host copies (inputs) and host room (outputs) that the ring
 * backward of ring_bwd.c works on. */
enum { G_Q, G_K, G_V, G_O, G_LSE, G_DO, G_DQ, G_DK, G_DV, G_DBIAS, G_DW, G_N };

typedef struct ring_cl_bwd {
    const attn_sdpa_desc *d; /* the caller's (its strides) */
    const attn_cl_grad_buffers *ug;
    attn_cl_grad_buffers b; /* *ug read by its struct_size */
    cl_command_queue queue;
    cl_uint n_wait;
    const cl_event *wait;
    slice_buf s[G_N];
    void *host[G_N];
} ring_cl_bwd;

static attn_status bwd_fail(ring_call *c, const char *what)
{
    snprintf(c->why, sizeof c->why, "rank %d: %s", c->rank, what);
    return ATTN_ERR_INVALID_ARGUMENT;
}

/* The buffers checked (as attn_sdpa_ring_cl's, with the gradients'), the
 * wait list waited for, the inputs read into host copies. */
static attn_status bwd_load(ring_call *c, void *self, attn_sdpa_grad *g)
{
    ring_cl_bwd *x = self;
    cl_context clctx = NULL;
    cl_device_id dev = NULL;
    attn_status st = attn_context_cl_objects(c->ctx, &clctx, &dev, NULL);
    if (st != ATTN_OK) {
        snprintf(c->why, sizeof c->why,
                 "rank %d: the context runs on no OpenCL device", c->rank);
        return st;
    }
    if (!x->ug || !x->queue || (x->n_wait && !x->wait))
        return bwd_fail(c, !x->ug      ? "g is NULL"
                           : !x->queue ? "queue is NULL"
                                       : "n_wait > 0 with wait NULL");
    if ((st = read_sized(c, x->ug, x->ug->struct_size, &x->b, sizeof x->b,
                         "g")) != ATTN_OK)
        return st;
    for (int t = 0; t < 4; t++) {
        const int64_t *st3 = t == 0   ? x->d->q_strides
                             : t == 1 ? x->d->k_strides
                             : t == 2 ? x->d->v_strides
                                      : x->d->o_strides;
        if (st3[0] || st3[1] || st3[2]) {
            snprintf(c->why, sizeof c->why,
                     "rank %d: attn_sdpa_ring_cl_backward takes contiguous "
                     "buffers only (no strides in d)",
                     c->rank);
            return ATTN_ERR_UNSUPPORTED;
        }
    }
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    if (clGetCommandQueueInfo(x->queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx,
                              NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(x->queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev,
                              NULL) != CL_SUCCESS ||
        qctx != clctx || qdev != dev)
        return bwd_fail(c, "the queue is not one of the context's cl_context "
                           "and device");
    const size_t n = c->local_rows, f = sizeof(float);
    const size_t nq = c->bq * n * c->d, nk = c->bkv * n * c->d,
                 nv = c->bkv * n * c->dv, no = c->bq * n * c->dv;
    const slice_buf s[G_N] = {
        {"g->q", x->b.q, x->b.q_offset, nq, c->elem},
        {"g->k", x->b.k, x->b.k_offset, nk, c->elem},
        {"g->v", x->b.v, x->b.v_offset, nv, c->elem},
        {"g->o", x->b.o, x->b.o_offset, no, c->elem},
        {"g->lse", x->b.lse, x->b.lse_offset, c->bq * n, f},
        {"g->d_o", x->b.d_o, x->b.d_o_offset, no, c->elem},
        {"g->dq", x->b.dq, x->b.dq_offset, nq, c->elem},
        {"g->dk", x->b.dk, x->b.dk_offset, nk, c->elem},
        {"g->dv", x->b.dv, x->b.dv_offset, nv, c->elem},
        {"g->dbias", x->b.dbias, x->b.dbias_offset,
         (size_t)c->g.batch * (size_t)c->ring.seq, f},
        {"g->d_additive_w", x->b.d_additive_w, x->b.d_additive_w_offset,
         (size_t)c->g.heads_q * c->d, f}};
    memcpy(x->s, s, sizeof s);
    for (int i = 0; i < G_N; i++)
        if ((i < G_DBIAS || x->s[i].mem) &&
            (st = check_buf(c, clctx, &x->s[i])) != ATTN_OK)
            return st;
    /* an output may share memory with no other slice */
    for (int out = G_DQ; out < G_N; out++)
        for (int i = 0; i < G_N; i++)
            if (i != out && x->s[out].mem && x->s[i].mem &&
                overlap(&x->s[out], &x->s[i])) {
                snprintf(c->why, sizeof c->why, "rank %d: %s overlaps %s",
                         c->rank, x->s[out].name, x->s[i].name);
                return ATTN_ERR_INVALID_ARGUMENT;
            }
    cl_int err;
    if (x->n_wait && (err = clWaitForEvents(x->n_wait, x->wait)) != 0)
        return cl_fail(c, err, "clWaitForEvents of the wait list");
    for (int i = 0; i < G_N; i++) {
        const size_t bytes = x->s[i].count * x->s[i].elem;
        if (!x->s[i].mem)
            continue;
        if (!(x->host[i] = ring_grab(c, bytes))) {
            snprintf(c->why, sizeof c->why, "rank %d: no memory", c->rank);
            return ATTN_ERR_OUT_OF_MEMORY;
        }
        if (i > G_DO || !bytes)
            continue;
        err = clEnqueueReadBuffer(x->queue, x->s[i].mem, CL_TRUE,
                                  x->s[i].offset * x->s[i].elem, bytes,
                                  x->host[i], 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return cl_fail(c, err, "reading a slice");
    }
    memset(g, 0, sizeof *g);
    g->struct_size = sizeof *g;
    g->q = x->host[G_Q], g->k = x->host[G_K], g->v = x->host[G_V];
    g->o = x->host[G_O], g->lse = x->host[G_LSE], g->d_o = x->host[G_DO];
    g->dq = x->host[G_DQ], g->dk = x->host[G_DK], g->dv = x->host[G_DV];
    g->dbias = x->host[G_DBIAS], g->d_additive_w = x->host[G_DW];
    return ATTN_OK;
}

/* The gradients written into the caller's buffers. */
static attn_status bwd_store(ring_call *c, void *self, const attn_sdpa_grad *g)
{
    ring_cl_bwd *x = self;
    (void)g;
    for (int i = G_DQ; i < G_N; i++) {
        const size_t bytes = x->s[i].count * x->s[i].elem;
        if (!x->s[i].mem || !bytes)
            continue;
        cl_int err = clEnqueueWriteBuffer(x->queue, x->s[i].mem, CL_TRUE,
                                          x->s[i].offset * x->s[i].elem, bytes,
                                          x->host[i], 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return cl_fail(c, err, "writing the gradients");
    }
    return ATTN_OK;
}

static void bwd_release(void *self)
{
    ring_cl_bwd *x = self;
    for (int i = 0; i < G_N; i++) {
        free(x->host[i]);
        x->host[i] = NULL;
    }
}

attn_status ring_run_cl_backward(attn_context *ctx, MPI_Comm comm,
                                 const attn_ring_desc *ring,
                                 const attn_sdpa_desc *d,
                                 const attn_cl_grad_buffers *g,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, ring_bwd_fn bwd,
                                 void *user)
{
    ring_cl_bwd x;
    ring_bwd_io io = {bwd_load, bwd_store, bwd_release, &x};
    memset(&x, 0, sizeof x);
    x.d = d;
    x.ug = g;
    x.queue = queue;
    x.n_wait = n_wait;
    x.wait = wait;
    return ring_run_backward(ctx, comm, ring, d, NULL, bwd, user, &io);
}

attn_status attn_sdpa_ring_cl_backward(attn_context *ctx, MPI_Comm comm,
                                       const attn_ring_desc *ring,
                                       const attn_sdpa_desc *d,
                                       const attn_cl_grad_buffers *g,
                                       cl_command_queue queue, cl_uint n_wait,
                                       const cl_event *wait)
{
    return ring_run_cl_backward(ctx, comm, ring, d, g, queue, n_wait, wait,
                                NULL, NULL);
}
