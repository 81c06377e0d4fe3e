/*
 * The OpenCL backend behind the backend interface of attn_impl.h: device
 * selection for a new context, and attn_sdpa on host pointers (upload,
 * the kernels, download).  The embedding API (cl_api.c) drives the same
 * launch code on the caller's buffers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/backend_cl.h"
#include "opencl/mha_cl.h"
#include "opencl/sdpa_cl.h"

static void cl_destroy(attn_backend *b)
{
    attn_cl_runtime_destroy(b->impl);
    free(b);
}

static void cl_backend_info(const attn_backend *b, attn_device_info *out)
{
    const attn_cl_runtime *rt = b->impl;
    *out = rt->info;
}

/* Waits for ev and reports a failed command as a device error. */
static attn_status wait_ok(cl_event ev, attn_err *err)
{
    cl_int rc, st = CL_COMPLETE;
    rc = clWaitForEvents(1, &ev);
    if (rc == CL_SUCCESS)
        rc = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st,
                            &st, NULL);
    if (rc == CL_SUCCESS && st < 0)
        rc = st;
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "a device command failed: %s (%d)",
                         attn_cl_error_name(rc), (int)rc);
    return ATTN_OK;
}

static cl_mem upload(attn_cl_runtime *rt, const void *host, size_t bytes,
                     const char *name, attn_status *s, attn_err *err)
{
    cl_int rc;
    cl_mem m =
        clCreateBuffer(rt->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                       bytes, (void *)host, &rc);
    if (rc != CL_SUCCESS) {
        *s = attn_fail(err, attn_cl_status(rc),
                       "cannot allocate %zu bytes for %s on %s: %s", bytes,
                       name, rt->info.name, attn_cl_error_name(rc));
        return NULL;
    }
    return m;
}

static attn_status cl_sdpa(attn_backend *b, const attn_sdpa_desc *d,
                           const void *q, const void *k, const void *v, void *o,
                           float *lse, attn_err *err)
{
    attn_cl_runtime *rt = b->impl;
    attn_cl_tensors t;
    attn_sdpa_bytes sz;
    cl_event ev = NULL, rd = NULL, rd_lse = NULL;
    attn_status s = ATTN_OK;
    cl_int rc;

    memset(&t, 0, sizeof t);
    if ((s = attn_validate_sdpa_desc(d, &sz, err)))
        return s;
    if (!(t.q = upload(rt, q, sz.q, "q", &s, err)) ||
        !(t.k = upload(rt, k, sz.k, "k", &s, err)) ||
        !(t.v = upload(rt, v, sz.v, "v", &s, err)))
        goto done;
    t.o = clCreateBuffer(rt->context, CL_MEM_WRITE_ONLY, sz.o, NULL, &rc);
    if (rc == CL_SUCCESS && lse)
        t.lse =
            clCreateBuffer(rt->context, CL_MEM_WRITE_ONLY, sz.lse, NULL, &rc);
    if (rc != CL_SUCCESS) {
        s = attn_fail(err, attn_cl_status(rc),
                      "cannot allocate the outputs on %s: %s", rt->info.name,
                      attn_cl_error_name(rc));
        goto done;
    }
    if ((s = attn_cl_sdpa_unfused(rt, d, &t, rt->queue, 0, NULL, &ev, err)))
        goto done;
    ATTN_CL_CHECK(
        clEnqueueReadBuffer(rt->queue, t.o, CL_FALSE, 0, sz.o, o, 1, &ev, &rd),
        device);
    if (lse)
        ATTN_CL_CHECK(clEnqueueReadBuffer(rt->queue, t.lse, CL_FALSE, 0, sz.lse,
                                          lse, 1, &ev, &rd_lse),
                      device);
    if ((s = wait_ok(rd, err)) || (lse && (s = wait_ok(rd_lse, err))))
        goto done;
    goto done;
device:
    s = attn_cl_status(rc);
    /* Reads may be in flight into o: let them land before returning. */
    clFinish(rt->queue);
done:
    if (rd)
        clReleaseEvent(rd);
    if (rd_lse)
        clReleaseEvent(rd_lse);
    if (ev)
        clReleaseEvent(ev);
    if (t.lse)
        clReleaseMemObject(t.lse);
    if (t.o)
        clReleaseMemObject(t.o);
    if (t.v)
        clReleaseMemObject(t.v);
    if (t.k)
        clReleaseMemObject(t.k);
    if (t.q)
        clReleaseMemObject(t.q);
    return s;
}

#ifdef ATTN_HAVE_CLBLAST
static attn_status cl_mha(attn_backend *b, const attn_mha_call *c,
                          attn_err *err)
{
    return attn_cl_mha(b->impl, c, err);
}
#define CL_MHA cl_mha
#else
/* Without CLBlast for the projections the native backend runs the layer. */
#define CL_MHA NULL
#endif

static const attn_backend_ops cl_ops = {
    "opencl", cl_destroy, cl_backend_info, cl_sdpa, CL_MHA,
};

attn_cl_runtime *attn_backend_cl_runtime(const attn_backend *b)
{
    return b && b->ops == &cl_ops ? b->impl : NULL;
}

attn_status attn_backend_cl_wrap(attn_cl_runtime *rt, attn_backend **out,
                                 attn_err *err)
{
    attn_backend *b = calloc(1, sizeof *b);
    if (!b)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the OpenCL backend");
    b->ops = &cl_ops;
    b->impl = rt;
    *out = b;
    return ATTN_OK;
}

attn_status attn_opencl_devices(attn_device_info *out, size_t cap,
                                size_t *count, attn_err *err)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    attn_status s = attn_cl_discover(&devs, &n, err);
    if (s)
        return s;
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = devs[i].info;
    *count = n;
    free(devs);
    return ATTN_OK;
}

attn_status attn_opencl_open(const char *spec, const char *cache_dir,
                             const attn_logger *log, attn_backend **out,
                             char *why, size_t why_cap, attn_err *err)
{
    attn_cl_device *devs = NULL;
    attn_device_info *infos = NULL;
    attn_selection sel;
    attn_cl_runtime *rt = NULL;
    size_t n = 0;
    attn_status s;

    *out = NULL;
    s = attn_cl_discover(&devs, &n, err);
    if (s) {
        /* A broken ICD is no reason to refuse the native backend. */
        attn_log(log, ATTN_LOG_WARN, "OpenCL discovery failed: %s", err->msg);
        n = 0;
        err->msg[0] = '\0';
    }
    if (n && !(infos = calloc(n, sizeof *infos))) {
        free(devs);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        infos[i] = devs[i].info;
    s = attn_cl_select(infos, n, spec, ATTN_CL_NATIVE_BEATS_CPU, &sel, err);
    if (s == ATTN_OK) {
        snprintf(why, why_cap, "%s", sel.why);
        if (!sel.native) {
            s = attn_cl_runtime_create(&devs[sel.index[0]], cache_dir, log, &rt,
                                       err);
            if (s == ATTN_OK && (s = attn_backend_cl_wrap(rt, out, err)))
                attn_cl_runtime_destroy(rt);
        }
    }
    free(infos);
    free(devs);
    return s;
}
