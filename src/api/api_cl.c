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

/* The caller's queue must run on the runtime's context and device. */
static attn_status check_queue(const attn_cl_runtime *rt,
                               cl_command_queue queue, attn_err *err)
{
    cl_context qc = NULL;
    cl_device_id qd = NULL;
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
        (s = check_queue(rt, queue, err)) ||
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
    attn_sdpa_bytes sz;
    attn_plan *plan = NULL;
    const attn_dev_work *w = NULL;
    attn_err err = {{0}};
    attn_status s;

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
    if (!(rt = attn_backend_cl_runtime(ctx->backend)))
        return report(ctx, fn, ATTN_ERR_UNSUPPORTED,
                      &(attn_err){"the context runs on the native backend; "
                                  "create it with attn_context_create_cl or "
                                  "on an OpenCL device"});
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
        (s = check_queue(rt, queue, &err)))
        return report(ctx, fn, s, &err);
    if (d->q_start)
        return report(ctx, fn, ATTN_ERR_UNSUPPORTED,
                      &(attn_err){"q_start is not taken with device buffers: "
                                  "its padding rows would be left as the "
                                  "kernel wrote them (kv_start is taken)"});
    tensors_of(b, &t);
    if ((s = attn_backend_cl_check_buffers(ctx->backend, d, &t, &err)))
        return report(ctx, fn, s, &err);
    /* the device takes the boolean mask merged into the bias, copied
     * (like every host array of d) before the call returns; freed below */
    if ((s = attn_keep_merge(d, &merged, &merged_bias, &err)))
        return report(ctx, fn, s, &err);
    d = &merged;
    if ((s = attn_plan_devices(ctx->plans, ctx->backend, d, &plan, &w, &err)) ==
        ATTN_OK) {
        if (w->prep[0] != ATTN_OK)
            s = attn_fail(&err, w->prep[0], "%s", w->why[0]);
        else
            s = attn_backend_cl_launch(ctx->backend, &w->p[0], d, &t, queue,
                                       n_wait, wait, done, &err);
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
