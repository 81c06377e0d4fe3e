/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public entry points of attn_cl.h: contexts on the caller's OpenCL
 * objects, attention on the caller's buffers and queue.  Argument checks
 * here; the variant comes from the plan of the call's shape (on the
 * context's primary device) and the OpenCL backend enqueues it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/abi.h"
#include "api/context.h"
#include "attn/attn_cl.h"
#include "opencl/backend_cl.h"

static attn_status report(attn_context *ctx, const char *fn, attn_status s,
                          const attn_err *err)
{
    char msg[ATTN_MSG_MAX];
    snprintf(msg, sizeof msg, "%s: %.400s", fn, err->msg);
    attn_context_set_error(ctx, s, msg);
    return s;
}

attn_status attn_context_create_cl(cl_context context, cl_device_id device,
                                   const attn_options *o, attn_context **out)
{
    static const char fn[] = "attn_context_create_cl";
    attn_options resolved;
    attn_context *ctx = NULL;
    attn_err err = {{0}};
    attn_status s;

    if (!out)
        return report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"out is NULL"});
    *out = NULL;
    if (!context || !device)
        return report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"context and device must not be NULL"});
    if ((s = attn_context_new(o, &resolved, &ctx, &err)))
        return report(NULL, fn, s, &err);
    s = attn_backend_cl_from_objects(context, device, &resolved,
                                     ctx->kernel[0] ? ctx->kernel : NULL,
                                     &ctx->log, &ctx->backend, &err);
    if (s == ATTN_OK)
        s = attn_context_ready(ctx, &err);
    if (s) {
        if (!ctx->backend)
            ctx->backend = ctx->native;
        attn_context_destroy(ctx);
        return report(NULL, fn, s, &err);
    }
    *out = ctx;
    return ATTN_OK;
}

attn_status attn_context_cl_objects(const attn_context *ctx,
                                    cl_context *context, cl_device_id *device,
                                    cl_command_queue *queue)
{
    const attn_cl_runtime *rt;
    if (!ctx)
        return report(NULL, "attn_context_cl_objects",
                      ATTN_ERR_INVALID_ARGUMENT, &(attn_err){"ctx is NULL"});
    if (!(rt = attn_backend_cl_runtime(ctx->backend)))
        return report(NULL, "attn_context_cl_objects", ATTN_ERR_UNSUPPORTED,
                      &(attn_err){"the context runs on the native backend"});
    if (context)
        *context = rt->context;
    if (device)
        *device = rt->device;
    if (queue)
        *queue = rt->queue;
    return ATTN_OK;
}

/* The caller's queue must run on the runtime's context and device, and
 * the events it waits for belong to that context (OpenCL's
 * CL_INVALID_CONTEXT, which not every driver checks). */
static attn_status check_queue(const attn_cl_runtime *rt,
                               cl_command_queue queue, cl_uint n_wait,
                               const cl_event *wait, attn_err *err)
{
    cl_context qc = NULL;
    cl_device_id qd = NULL;
    for (cl_uint i = 0; i < n_wait; i++) {
        cl_context ec = NULL;
        if (!wait[i] || clGetEventInfo(wait[i], CL_EVENT_CONTEXT, sizeof ec,
                                       &ec, NULL) != CL_SUCCESS)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "wait[%u] is not a valid event", (unsigned)i);
        if (ec != rt->context)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "wait[%u] belongs to another OpenCL context",
                             (unsigned)i);
    }
    if (!queue)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, "queue is NULL");
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qc, &qc, NULL) !=
            CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qd, &qd, NULL) !=
            CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "queue is not a valid command queue");
    if (qc != rt->context || qd != rt->device)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "queue belongs to another OpenCL context or device");
    return ATTN_OK;
}

static void tensors_of(const attn_cl_buffers *b, attn_cl_tensors *t)
{
    t->q = b->q;
    t->k = b->k;
    t->v = b->v;
    t->o = b->o;
    t->lse = b->lse;
    t->q_off = b->q_offset;
    t->k_off = b->k_offset;
    t->v_off = b->v_offset;
    t->o_off = b->o_offset;
    t->lse_off = b->lse_offset;
}

/* What every call on device buffers checks first (reported): a context,
 * not called from the log callback, on an OpenCL device (*rt). */
static attn_status opening(attn_context *ctx, const char *fn,
                           attn_cl_runtime **rt)
{
    if (!ctx)
        return report(NULL, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"ctx is NULL"});
    if (attn_log_in_callback())
        /* The log callback may run under the context's locks (attn.h). */
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"called from inside the log callback, "
                                  "which may run while the library holds "
                                  "the context's locks; call it after the "
                                  "callback returns"});
    if (!(*rt = attn_backend_cl_runtime(ctx->backend)))
        return report(ctx, fn, ATTN_ERR_UNSUPPORTED,
                      &(attn_err){"the context runs on the native backend; "
                                  "create it with attn_context_create_cl or "
                                  "on an OpenCL device"});
    return ATTN_OK;
}

/* A packed call (cu_seqlens_q, cu_seqlens_kv) on device buffers: checked
 * whole (all rows as one sequence, as attn_sdpa checks it), every
 * sequence planned before anything is enqueued, then the sequences
 * launched behind one gate (attn_backend_cl_launch_packed). */
static attn_status packed(attn_context *ctx, const attn_sdpa_desc *d,
                          const attn_cl_buffers *b, cl_command_queue queue,
                          cl_uint n_wait, const cl_event *wait, cl_event *done,
                          attn_err *err)
{
    attn_cl_runtime *rt = attn_backend_cl_runtime(ctx->backend);
    const int n = d->batch;
    attn_sdpa_desc whole, *item = NULL;
    attn_cl_tensors all, *t = NULL;
    attn_plan **plan = NULL;
    const attn_prepared **prep = NULL;
    attn_sdpa_bytes sz;
    int m = 0;
    attn_status s;
    tensors_of(b, &all);
    if ((s = attn_varlen_item(d, ATTN_VARLEN_WHOLE, &whole, err)) ||
        (s = attn_validate_sdpa_desc(&whole, &sz, err)) ||
        (s = check_queue(rt, queue, n_wait, wait, err)) ||
        (s = attn_backend_cl_check_buffers(ctx->backend, &whole, &all, err)))
        return s;
    item = calloc((size_t)n, sizeof *item);
    t = calloc((size_t)n, sizeof *t);
    plan = calloc((size_t)n, sizeof *plan);
    prep = calloc((size_t)n, sizeof *prep);
    if (!item || !t || !plan || !prep)
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate the plan of %d packed sequences", n);
    for (int i = 0; i < n && s == ATTN_OK; i++) {
        const size_t q0 = (size_t)d->cu_seqlens_q[i],
                     k0 = (size_t)d->cu_seqlens_kv[i];
        const attn_dev_work *w = NULL;
        if ((s = attn_varlen_item(d, i, &item[m], err)) || item[m].seq_q == 0)
            continue; /* no query: nothing to write */
        t[m] = all;
        t[m].q_off += q0 * (size_t)item[m].q_strides[2];
        t[m].k_off += k0 * (size_t)item[m].k_strides[2];
        t[m].v_off += k0 * (size_t)item[m].v_strides[2];
        t[m].o_off += q0 * (size_t)item[m].o_strides[2];
        t[m].lse_off += q0;
        if (item[m].seq_kv > 0 &&
            (s = attn_plan_devices(ctx->plans, ctx->backend, &item[m], &plan[m],
                                   &w, err)) == ATTN_OK) {
            if (w->prep[0] != ATTN_OK)
                s = attn_fail(err, w->prep[0], "%s", w->why[0]);
            prep[m] = &w->p[0];
        }
        m++;
    }
    if (s == ATTN_OK)
        s = attn_backend_cl_launch_packed(ctx->backend, m, prep, item, t,
                                          (size_t)d->cu_seqlens_q[d->batch],
                                          queue, n_wait, wait, done, err);
    for (int i = 0; plan && i < m; i++)
        attn_plan_release(ctx->plans, plan[i]);
    free(prep);
    free(plan);
    free(t);
    free(item);
    return s;
}

attn_status attn_sdpa_cl_buffers(attn_context *ctx, const attn_sdpa_desc *d,
                                 const attn_cl_buffers *b,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, cl_event *done)
{
    static const char fn[] = "attn_sdpa_cl";
    attn_cl_runtime *rt;
    attn_cl_tensors t;
    attn_cl_buffers bl;
    attn_sdpa_desc dl, merged;
    float *merged_bias = NULL;
    const int32_t *q_start;
    attn_sdpa_bytes sz;
    attn_plan *plan = NULL;
    const attn_dev_work *w = NULL;
    attn_err err = {{0}};
    attn_status s;

    if ((s = opening(ctx, fn, &rt)))
        return s;
    /* Only the members the caller's struct_size covers (abi.c). */
    if (b && (s = attn_abi_read(&bl, b, &attn_abi_cl_buffers_layout, &err)))
        return report(ctx, fn, s, &err);
    b = b ? &bl : NULL;
    if ((s = attn_abi_sdpa_desc(d, &dl, &d, &err)))
        return report(ctx, fn, s, &err);
    if (!b || !b->q || !b->k || !b->v || !b->o)
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"a q, k, v or o buffer is NULL"});
    if (n_wait > 0 && !wait)
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"n_wait > 0 but wait is NULL"});
    if (d && (d->cu_seqlens_q || d->cu_seqlens_kv)) {
        s = packed(ctx, d, b, queue, n_wait, wait, done, &err);
        return s == ATTN_OK ? s : report(ctx, fn, s, &err);
    }
    if ((s = attn_validate_sdpa_desc(d, &sz, &err)) ||
        (s = check_queue(rt, queue, n_wait, wait, &err)))
        return report(ctx, fn, s, &err);
    q_start = d->q_start; /* out of the merged descriptor: rows, not keys */
    tensors_of(b, &t);
    if ((s = attn_backend_cl_check_buffers(ctx->backend, d, &t, &err)))
        return report(ctx, fn, s, &err);
    /* the device takes the boolean mask and kv_start merged into the bias
     * (and a causal diagonal the starts move), copied (like every host
     * array of d) before the call returns; freed below.  The padding rows
     * of q_start are written after the kernels (attn_backend_cl_launch). */
    if ((s = attn_keep_merge(d, &merged, &merged_bias, &err)))
        return report(ctx, fn, s, &err);
    d = &merged;
    if ((s = attn_plan_devices(ctx->plans, ctx->backend, d, &plan, &w, &err)) ==
        ATTN_OK) {
        if (w->prep[0] != ATTN_OK)
            s = attn_fail(&err, w->prep[0], "%s", w->why[0]);
        else
            s = attn_backend_cl_launch(ctx->backend, &w->p[0], d, q_start, &t,
                                       queue, n_wait, wait, done, &err);
    }
    attn_plan_release(ctx->plans, plan);
    free(merged_bias);
    return s == ATTN_OK ? s : report(ctx, fn, s, &err);
}

attn_status attn_sdpa_cl(attn_context *ctx, const attn_sdpa_desc *d, cl_mem q,
                         cl_mem k, cl_mem v, cl_mem o, cl_mem lse,
                         cl_command_queue queue, cl_uint n_wait,
                         const cl_event *wait, cl_event *done)
{
    attn_cl_buffers b = ATTN_CL_BUFFERS_INIT;
    b.q = q;
    b.k = k;
    b.v = v;
    b.o = o;
    b.lse = lse;
    return attn_sdpa_cl_buffers(ctx, d, &b, queue, n_wait, wait, done);
}

/* The checks of a backward call on the caller's buffers: the descriptor as
 * attn_sdpa_backward checks it (what the devices do not take refused),
 * the queue, then each buffer (size at its offset, context, overlaps). */
static attn_status bwd_check(attn_context *ctx, const attn_sdpa_desc *d,
                             const attn_cl_grad_buffers *g,
                             cl_command_queue queue, cl_uint n_wait,
                             const cl_event *wait, attn_err *err)
{
    const attn_cl_runtime *rt = attn_backend_cl_runtime(ctx->backend);
    const size_t e = d->dtype == ATTN_F32 ? 4 : 2, f = sizeof(float);
    size_t nb = 0;
    attn_sdpa_bytes sz;
    attn_status s;
    if (!g->q || !g->k || !g->v || !g->o || !g->lse || !g->d_o || !g->dq ||
        !g->dk || !g->dv)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "a q, k, v, o, lse, d_o, dq, dk or dv buffer is "
                         "NULL");
    if ((s = attn_validate_sdpa_desc(d, &sz, err)))
        return s;
    if (g->dbias && d->mask.bias_kind == ATTN_BIAS_NONE)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "dbias is set but the descriptor has no bias");
    if (g->d_additive_w && d->score != ATTN_SCORE_ADDITIVE)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "d_additive_w is set but the score is not additive");
    /* dq, dk and dv are written in q's, k's and v's strides */
    for (int i = 0; i < 3; i++)
        if (!attn_tensor_rows_apart(d, ATTN_T_Q + i))
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "the strides of %s make its rows share "
                             "elements, so would %s's: a gradient needs rows "
                             "apart (sorted, each stride at least the extent "
                             "of the smaller ones)",
                             i == 0   ? "q"
                             : i == 1 ? "k"
                                      : "v",
                             i == 0   ? "dq"
                             : i == 1 ? "dk"
                                      : "dv");
    if ((s = check_queue(rt, queue, n_wait, wait, err)))
        return s;
    attn_bias_elems(d, &nb); /* the descriptor's check sized it */
    {
        const size_t nq = attn_tensor_extent(d, ATTN_T_Q),
                     nk = attn_tensor_extent(d, ATTN_T_K),
                     nv = attn_tensor_extent(d, ATTN_T_V),
                     no = attn_tensor_extent(d, ATTN_T_O);
        const size_t rows =
            (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
        const attn_cl_span sp[] = {
            {g->q, "q", g->q_offset, nq, e, 0},
            {g->k, "k", g->k_offset, nk, e, 0},
            {g->v, "v", g->v_offset, nv, e, 0},
            {g->o, "o", g->o_offset, no, e, 0},
            {g->lse, "lse", g->lse_offset, rows, f, 0},
            {g->d_o, "d_o", g->d_o_offset, no, e, 0},
            {g->dq, "dq", g->dq_offset, nq, e, 1},
            {g->dk, "dk", g->dk_offset, nk, e, 1},
            {g->dv, "dv", g->dv_offset, nv, e, 1},
            {g->dbias, "dbias", g->dbias_offset, nb, f, 1},
            {g->d_additive_w, "d_additive_w", g->d_additive_w_offset,
             (size_t)d->heads_q * (size_t)d->head_dim, f, 1}};
        attn_cl_span all[11];
        int m = 0;
        for (int i = 0; i < 11; i++)
            if (i < 9 || (i == 9 && g->dbias) || (i == 10 && g->d_additive_w))
                all[m++] = sp[i];
        return attn_backend_cl_check_spans(ctx->backend, all, m, err);
    }
}

/* A packed call (cu_seqlens_q, cu_seqlens_kv) on the caller's buffers:
 * an item per sequence over its rows (each planned; one with no key zeroes
 * its dq rows, one with no query its dk and dv rows), all enqueued behind
 * one gate (attn_backend_cl_backward).  With d additive_w, each sequence writes
 * its part into a row of a working buffer, and a last item sums the rows
 * into the caller's.  d was checked whole. */
static attn_status
bwd_packed(attn_context *ctx, attn_cl_runtime *rt, const attn_sdpa_desc *d,
           const attn_cl_bwd_bufs *base, cl_command_queue queue, cl_uint n_wait,
           const cl_event *wait, cl_event *done, attn_err *err)
{
    const int n = d->batch;
    const size_t nw = (size_t)d->heads_q * (size_t)d->head_dim;
    const cl_mem dw = base->mem[ATTN_CL_BWD_DW];
    attn_cl_bwd_item *it = calloc((size_t)n + 1, sizeof *it);
    attn_plan **plan = calloc((size_t)n, sizeof *plan);
    cl_mem parts = NULL;
    attn_status s = ATTN_OK;
    int m = 0, slots = 0;
    if (!it || !plan)
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot allocate the plan of %d packed sequences", n);
    if (s == ATTN_OK && dw) { /* a row of parts per sequence */
        cl_int rc;
        parts = clCreateBuffer(rt->context, CL_MEM_READ_WRITE,
                               (size_t)n * nw * sizeof(float), NULL, &rc);
        if (rc != CL_SUCCESS) {
            parts = NULL;
            s = attn_fail(err,
                          rc == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                                  rc == CL_OUT_OF_RESOURCES ||
                                  rc == CL_OUT_OF_HOST_MEMORY
                              ? ATTN_ERR_OUT_OF_MEMORY
                              : ATTN_ERR_DEVICE,
                          "cannot allocate %zu bytes for the parts of d "
                          "additive_w (OpenCL error %d)",
                          (size_t)n * nw * sizeof(float), (int)rc);
        }
    }
    for (int b = 0; b < n && s == ATTN_OK; b++) {
        const attn_dev_work *w = NULL;
        attn_cl_bwd_item *x = &it[m];
        if ((s = attn_varlen_item(d, b, &x->d, err)))
            break;
        if (x->d.seq_q == 0 && x->d.seq_kv == 0)
            continue;
        x->zero = x->d.seq_kv == 0  ? ATTN_CL_BWD_ZERO_DQ
                  : x->d.seq_q == 0 ? ATTN_CL_BWD_ZERO_DKDV
                                    : ATTN_CL_BWD_GRADS;
        /* a zeroing item runs on the program of its dtype and head sizes:
         * planned with one row where it has none */
        x->d.seq_q = x->d.seq_q ? x->d.seq_q : 1;
        x->d.seq_kv = x->d.seq_kv ? x->d.seq_kv : 1;
        x->b = *base;
        attn_backend_cl_bwd_bufs_at(&x->b, &x->d, (size_t)d->cu_seqlens_q[b],
                                    (size_t)d->cu_seqlens_kv[b],
                                    (size_t)d->cu_seqlens_q[n]);
        x->b.mem[ATTN_CL_BWD_DW] = NULL;
        if (dw && x->zero == ATTN_CL_BWD_GRADS) {
            x->b.mem[ATTN_CL_BWD_DW] = parts;
            x->b.off[ATTN_CL_BWD_DW] = (size_t)slots++ * nw;
        }
        s = attn_plan_backward(ctx->plans, ctx->backend, &x->d,
                               x->b.mem[ATTN_CL_BWD_DW] ? ATTN_BWD_DADDW : 0u,
                               &plan[m], &w, err);
        if (s == ATTN_OK && w->prep[0] != ATTN_OK)
            s = attn_fail(err, w->prep[0], "%s", w->why[0]);
        if (s == ATTN_OK)
            x->p = &w->p[0];
        if (plan[m])
            m++;
    }
    if (s == ATTN_OK && dw && m > 0) { /* the sum of the parts */
        attn_cl_bwd_item *x = &it[m];
        x->zero = ATTN_CL_BWD_SUM_DW;
        x->p = it[0].p; /* the program of the call's dtype and head sizes */
        x->d = it[0].d;
        x->d.batch = slots;
        x->b.mem[ATTN_CL_BWD_DWP] = parts;
        x->b.mem[ATTN_CL_BWD_DW] = dw;
        x->b.off[ATTN_CL_BWD_DW] = base->off[ATTN_CL_BWD_DW];
    }
    if (s == ATTN_OK)
        s = attn_backend_cl_backward(ctx->backend, m + (dw && m > 0), it, queue,
                                     n_wait, wait, done, err);
    for (int i = 0; i < m; i++)
        attn_plan_release(ctx->plans, plan[i]);
    if (parts)
        clReleaseMemObject(parts); /* once the commands are done */
    free(plan);
    free(it);
    return s;
}

attn_status attn_sdpa_backward_cl_buffers(attn_context *ctx,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_grad_buffers *g,
                                          cl_command_queue queue,
                                          cl_uint n_wait, const cl_event *wait,
                                          cl_event *done)
{
    static const char fn[] = "attn_sdpa_backward_cl_buffers";
    attn_cl_runtime *rt;
    attn_cl_grad_buffers gl;
    attn_cl_bwd_item item;
    attn_sdpa_desc dl, whole;
    float *merged_bias = NULL;
    attn_plan *plan = NULL;
    const attn_dev_work *w = NULL;
    attn_err err = {{0}};
    attn_status s;

    if ((s = opening(ctx, fn, &rt)))
        return s;
    if (!g)
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"the gradient buffers "
                                  "(attn_cl_grad_buffers) are NULL"});
    /* Only the members the caller's struct_size covers (abi.c). */
    if ((s = attn_abi_read(&gl, g, &attn_abi_cl_grad_buffers_layout, &err)) ||
        (s = attn_abi_sdpa_desc(d, &dl, &d, &err)))
        return report(ctx, fn, s, &err);
    g = &gl;
    if (!d)
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"the attention descriptor is NULL"});
    if (n_wait > 0 && !wait)
        return report(ctx, fn, ATTN_ERR_INVALID_ARGUMENT,
                      &(attn_err){"n_wait > 0 but wait is NULL"});
    memset(&item, 0, sizeof item);
    {
        const cl_mem mem[13] = {g->q,     g->k, g->v,           g->o,  g->d_o,
                                g->lse,   NULL, g->dq,          g->dk, g->dv,
                                g->dbias, NULL, g->d_additive_w};
        const size_t off[13] = {g->q_offset,
                                g->k_offset,
                                g->v_offset,
                                g->o_offset,
                                g->d_o_offset,
                                g->lse_offset,
                                0,
                                g->dq_offset,
                                g->dk_offset,
                                g->dv_offset,
                                g->dbias_offset,
                                0,
                                g->d_additive_w_offset};
        memcpy(item.b.mem, mem, sizeof mem);
        memcpy(item.b.off, off, sizeof off);
    }
    if (d->cu_seqlens_q || d->cu_seqlens_kv) {
        /* checked whole: all rows as one sequence, as attn_sdpa does */
        if ((s = attn_varlen_item(d, ATTN_VARLEN_WHOLE, &whole, &err)) ||
            (s = bwd_check(ctx, &whole, g, queue, n_wait, wait, &err)) ||
            (s = bwd_packed(ctx, rt, d, &item.b, queue, n_wait, wait, done,
                            &err)))
            return report(ctx, fn, s, &err);
        return ATTN_OK;
    }
    if ((s = bwd_check(ctx, d, g, queue, n_wait, wait, &err)))
        return report(ctx, fn, s, &err);
    /* the device takes keep, kv_start and a per-item causal diagonal merged
     * into the bias (copied before the call returns, as every host array
     * of d; freed below) */
    if ((s = attn_keep_merge(d, &item.d, &merged_bias, &err)))
        return report(ctx, fn, s, &err);
    item.q_start = d->q_start; /* the padding rows, through a copy of lse */
    if (g->dbias && merged_bias) {
        free(merged_bias);
        return report(ctx, fn, ATTN_ERR_UNSUPPORTED,
                      &(attn_err){"the backward kernel variants compute no "
                                  "dbias with keep, kv_start or a moved "
                                  "causal diagonal, which the device's bias "
                                  "holds merged"});
    }
    s = attn_plan_backward(ctx->plans, ctx->backend, &item.d,
                           (g->dbias ? ATTN_BWD_DBIAS : 0u) |
                               (g->d_additive_w ? ATTN_BWD_DADDW : 0u),
                           &plan, &w, &err);
    if (s == ATTN_OK && w->prep[0] != ATTN_OK)
        s = attn_fail(&err, w->prep[0], "%s", w->why[0]);
    else if (s == ATTN_OK) {
        item.p = &w->p[0];
        s = attn_backend_cl_backward(ctx->backend, 1, &item, queue, n_wait,
                                     wait, done, &err);
    }
    attn_plan_release(ctx->plans, plan);
    free(merged_bias);
    return s == ATTN_OK ? s : report(ctx, fn, s, &err);
}
