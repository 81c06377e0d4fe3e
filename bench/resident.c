/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --resident: libattn's OpenCL impls on device buffers.  attn-bench opens
 * the device libattn selects for --device with a cl_context and an
 * in-order profiling queue of its own, creates every cl context on them
 * (attn_context_create_cl), makes the input buffers once per case
 * (attn_context_cl_objects + clCreateBuffer) and times each
 * attn_sdpa_cl_buffers call by event profiling: the call is held back by a
 * gate (bench_cl.h) until it is enqueued whole, so the time is the
 * device's, from the end of a marker fill to the end of the call's event.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef ATTN_BENCH_HAVE_CL
#include "bench_cl.h"

struct resident {
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue queue; /* in order, profiling */
    cl_mem mark;            /* 4 bytes: the gate's fill */
    char name[400];
};

struct res_buf {
    cl_mem m;
};

int bench_cl_device(const char *spec, cl_device_id *out, char *why,
                    size_t why_len)
{
    attn_options ao;
    attn_options_init(&ao);
    ao.device = spec;
    ao.allow_fallback = 0;
    attn_context *c = NULL;
    attn_status st = attn_context_create(&ao, &c);
    if (st != ATTN_OK) {
        snprintf(why, why_len, "attn_context_create(device=%s): %s: %.300s",
                 spec, attn_status_string(st), attn_last_error());
        return -1;
    }
    /* root devices outlive the context that found them */
    st = attn_context_cl_objects(c, NULL, out, NULL);
    attn_context_destroy(c);
    if (st != ATTN_OK) {
        snprintf(why, why_len, "device=%s runs on the native backend", spec);
        return -1;
    }
    return 0;
}

int bench_gate_open(cl_context ctx, cl_command_queue queue, cl_mem mark,
                    bench_gate *g, char *why, size_t why_len)
{
    static const cl_uint zero = 0;
    cl_int rc;
    memset(g, 0, sizeof *g);
    g->user = clCreateUserEvent(ctx, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateUserEvent: %d", (int)rc);
        g->user = NULL;
        return -1;
    }
    rc = clEnqueueFillBuffer(queue, mark, &zero, sizeof zero, 0, sizeof zero, 1,
                             &g->user, &g->start);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clEnqueueFillBuffer: %d", (int)rc);
        clSetUserEventStatus(g->user, CL_COMPLETE);
        clReleaseEvent(g->user);
        memset(g, 0, sizeof *g);
        return -1;
    }
    return 0;
}

void bench_gate_abort(bench_gate *g)
{
    if (g->user) {
        clSetUserEventStatus(g->user, CL_COMPLETE);
        clReleaseEvent(g->user);
    }
    if (g->start) {
        clWaitForEvents(1, &g->start);
        clReleaseEvent(g->start);
    }
    memset(g, 0, sizeof *g);
}

int bench_gate_close(bench_gate *g, cl_event last, double *ms, char *why,
                     size_t why_len)
{
    int ret = -1;
    cl_ulong t0 = 0, t1 = 0;
    cl_int rc = clSetUserEventStatus(g->user, CL_COMPLETE);
    if (rc != CL_SUCCESS)
        snprintf(why, why_len, "clSetUserEventStatus: %d", (int)rc);
    else if ((rc = clWaitForEvents(1, &last)) != CL_SUCCESS)
        snprintf(why, why_len, "the commands failed: clWaitForEvents: %d",
                 (int)rc);
    else if ((rc = clGetEventProfilingInfo(g->start, CL_PROFILING_COMMAND_END,
                                           sizeof t0, &t0, NULL)) !=
                 CL_SUCCESS ||
             (rc = clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END,
                                           sizeof t1, &t1, NULL)) != CL_SUCCESS)
        snprintf(why, why_len, "clGetEventProfilingInfo: %d", (int)rc);
    else if (t1 < t0)
        snprintf(why, why_len,
                 "event profiling: the run ended before its marker");
    else {
        *ms = (double)(t1 - t0) * 1e-6;
        ret = 0;
    }
    clReleaseEvent(last);
    if (rc != CL_SUCCESS)
        clSetUserEventStatus(g->user, CL_COMPLETE);
    clReleaseEvent(g->user);
    clWaitForEvents(1, &g->start);
    clReleaseEvent(g->start);
    memset(g, 0, sizeof *g);
    return ret;
}

int resident_open(const char *spec, resident **out, char *why, size_t why_len)
{
    *out = NULL;
    resident *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    cl_int rc;
    if (bench_cl_device(spec, &r->dev, why, why_len) != 0)
        goto fail;
    char dn[256] = "", pn[128] = "";
    cl_platform_id plat = NULL;
    clGetDeviceInfo(r->dev, CL_DEVICE_NAME, sizeof dn, dn, NULL);
    clGetDeviceInfo(r->dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
    if (plat)
        clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pn, pn, NULL);
    snprintf(r->name, sizeof r->name, "%s (%s)", dn, pn);
    r->ctx = clCreateContext(NULL, 1, &r->dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        r->ctx = NULL;
        snprintf(why, why_len, "clCreateContext: %d", (int)rc);
        goto fail;
    }
    r->queue =
        clCreateCommandQueue(r->ctx, r->dev, CL_QUEUE_PROFILING_ENABLE, &rc);
    if (rc != CL_SUCCESS) {
        r->queue = NULL;
        snprintf(why, why_len, "clCreateCommandQueue(profiling): %d", (int)rc);
        goto fail;
    }
    r->mark = clCreateBuffer(r->ctx, CL_MEM_READ_WRITE, 4, NULL, &rc);
    if (rc != CL_SUCCESS) {
        r->mark = NULL;
        snprintf(why, why_len, "clCreateBuffer: %d", (int)rc);
        goto fail;
    }
    *out = r;
    return 0;
fail:
    resident_close(r);
    return -1;
}

void resident_close(resident *r)
{
    if (!r)
        return;
    if (r->mark)
        clReleaseMemObject(r->mark);
    if (r->queue)
        clReleaseCommandQueue(r->queue);
    if (r->ctx)
        clReleaseContext(r->ctx);
    free(r);
}

const char *resident_device(const resident *r)
{
    return r->name;
}

attn_status resident_context(resident *r, const attn_options *ao,
                             attn_context **out)
{
    return attn_context_create_cl(r->ctx, r->dev, ao, out);
}

int res_buf_create(attn_context *ctx, size_t bytes, const void *host,
                   res_buf **out, char *why, size_t why_len)
{
    *out = NULL;
    cl_context clc = NULL;
    attn_status st = attn_context_cl_objects(ctx, &clc, NULL, NULL);
    if (st != ATTN_OK) {
        snprintf(why, why_len, "attn_context_cl_objects: %s",
                 attn_status_string(st));
        return -1;
    }
    res_buf *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    cl_int rc;
    b->m = clCreateBuffer(clc,
                          CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                          bytes, (void *)host, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateBuffer(%.1f MiB): %d",
                 (double)bytes / 1048576.0, (int)rc);
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

void res_buf_free(res_buf *b)
{
    if (!b)
        return;
    clReleaseMemObject(b->m);
    free(b);
}

int res_buf_read(resident *r, const res_buf *b, void *host, size_t bytes,
                 char *why, size_t why_len)
{
    cl_int rc = clEnqueueReadBuffer(r->queue, b->m, CL_TRUE, 0, bytes, host, 0,
                                    NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clEnqueueReadBuffer: %d", (int)rc);
        return -1;
    }
    return 0;
}

int res_call(resident *r, attn_context *ctx, const attn_sdpa_desc *d,
             const res_buf *q, const res_buf *k, const res_buf *v,
             const res_buf *o, double *kernel_ms, double *wall_ms, char *why,
             size_t why_len)
{
    bench_gate g;
    cl_event done = NULL;
    attn_cl_buffers b;
    memset(&b, 0, sizeof b);
    b.q = q->m;
    b.k = k->m;
    b.v = v->m;
    b.o = o->m;
    double t0 = util_now_ms();
    if (bench_gate_open(r->ctx, r->queue, r->mark, &g, why, why_len) != 0)
        return -1;
    attn_status st = attn_sdpa_cl_buffers(ctx, d, &b, r->queue, 0, NULL, &done);
    if (st != ATTN_OK) {
        bench_gate_abort(&g);
        snprintf(why, why_len, "attn_sdpa_cl_buffers: %s: %.300s",
                 attn_status_string(st), attn_context_last_error(ctx));
        return -1;
    }
    if (bench_gate_close(&g, done, kernel_ms, why, why_len) != 0)
        return -1;
    *wall_ms = util_now_ms() - t0;
    return 0;
}

#else /* without OpenCL: --resident says so */

int resident_open(const char *spec, resident **out, char *why, size_t why_len)
{
    (void)spec;
    *out = NULL;
    snprintf(why, why_len, "attn-bench was built without OpenCL");
    return -1;
}

void resident_close(resident *r)
{
    (void)r;
}

const char *resident_device(const resident *r)
{
    (void)r;
    return "none";
}

attn_status resident_context(resident *r, const attn_options *ao,
                             attn_context **out)
{
    (void)r;
    (void)ao;
    *out = NULL;
    return ATTN_ERR_UNSUPPORTED;
}

int res_buf_create(attn_context *ctx, size_t bytes, const void *host,
                   res_buf **out, char *why, size_t why_len)
{
    (void)ctx;
    (void)bytes;
    (void)host;
    *out = NULL;
    snprintf(why, why_len, "built without OpenCL");
    return -1;
}

void res_buf_free(res_buf *b)
{
    (void)b;
}

int res_buf_read(resident *r, const res_buf *b, void *host, size_t bytes,
                 char *why, size_t why_len)
{
    (void)r;
    (void)b;
    (void)host;
    (void)bytes;
    snprintf(why, why_len, "built without OpenCL");
    return -1;
}

int res_call(resident *r, attn_context *ctx, const attn_sdpa_desc *d,
             const res_buf *q, const res_buf *k, const res_buf *v,
             const res_buf *o, double *kernel_ms, double *wall_ms, char *why,
             size_t why_len)
{
    (void)r;
    (void)ctx;
    (void)d;
    (void)q;
    (void)k;
    (void)v;
    (void)o;
    (void)kernel_ms;
    (void)wall_ms;
    snprintf(why, why_len, "built without OpenCL");
    return -1;
}

#endif
