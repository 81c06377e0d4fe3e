/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The library's live OpenCL objects, counted by link-time wrappers: see
 * cl_count.h.  Built with ATTN_HAVE_CLBLAST, CLBlastSgemm's events count
 * too (and the test links with --wrap=CLBlastSgemm).
 */
#include <stdatomic.h>
#include <stdio.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#ifdef ATTN_HAVE_CLBLAST
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <clblast_c.h>
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

#include "cl_count.h"

static atomic_long n_mem, n_kernel, n_program, n_event;

cl_live cl_live_now(void)
{
    cl_live l = {atomic_load(&n_mem), atomic_load(&n_kernel),
                 atomic_load(&n_program), atomic_load(&n_event)};
    return l;
}

int cl_live_same(cl_live a)
{
    cl_live b = cl_live_now();
    if (a.mem == b.mem && a.kernel == b.kernel && a.program == b.program &&
        a.event == b.event)
        return 1;
    printf("\n  live OpenCL objects: mem %ld -> %ld, kernel %ld -> %ld, "
           "program %ld -> %ld, event %ld -> %ld\n",
           a.mem, b.mem, a.kernel, b.kernel, a.program, b.program, a.event,
           b.event);
    return 0;
}

#define COUNT(var, obj)                                                        \
    do {                                                                       \
        if (obj)                                                               \
            atomic_fetch_add(&(var), 1);                                       \
    } while (0)
#define UNCOUNT(var, rc)                                                       \
    do {                                                                       \
        if ((rc) == CL_SUCCESS)                                                \
            atomic_fetch_sub(&(var), 1);                                       \
    } while (0)

cl_mem __real_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);
cl_mem __wrap_clCreateBuffer(cl_context, cl_mem_flags, size_t, void *,
                             cl_int *);
cl_int __real_clRetainMemObject(cl_mem);
cl_int __wrap_clRetainMemObject(cl_mem);
cl_int __real_clReleaseMemObject(cl_mem);
cl_int __wrap_clReleaseMemObject(cl_mem);
cl_kernel __real_clCreateKernel(cl_program, const char *, cl_int *);
cl_kernel __wrap_clCreateKernel(cl_program, const char *, cl_int *);
cl_int __real_clRetainKernel(cl_kernel);
cl_int __wrap_clRetainKernel(cl_kernel);
cl_int __real_clReleaseKernel(cl_kernel);
cl_int __wrap_clReleaseKernel(cl_kernel);
cl_program __real_clCreateProgramWithSource(cl_context, cl_uint, const char **,
                                            const size_t *, cl_int *);
cl_program __wrap_clCreateProgramWithSource(cl_context, cl_uint, const char **,
                                            const size_t *, cl_int *);
cl_program __real_clCreateProgramWithBinary(cl_context, cl_uint,
                                            const cl_device_id *,
                                            const size_t *,
                                            const unsigned char **, cl_int *,
                                            cl_int *);
cl_program __wrap_clCreateProgramWithBinary(cl_context, cl_uint,
                                            const cl_device_id *,
                                            const size_t *,
                                            const unsigned char **, cl_int *,
                                            cl_int *);
cl_int __real_clRetainProgram(cl_program);
cl_int __wrap_clRetainProgram(cl_program);
cl_int __real_clReleaseProgram(cl_program);
cl_int __wrap_clReleaseProgram(cl_program);
cl_event __real_clCreateUserEvent(cl_context, cl_int *);
cl_event __wrap_clCreateUserEvent(cl_context, cl_int *);
cl_int __real_clRetainEvent(cl_event);
cl_int __wrap_clRetainEvent(cl_event);
cl_int __real_clReleaseEvent(cl_event);
cl_int __wrap_clReleaseEvent(cl_event);
cl_int __real_clEnqueueNDRangeKernel(cl_command_queue, cl_kernel, cl_uint,
                                     const size_t *, const size_t *,
                                     const size_t *, cl_uint, const cl_event *,
                                     cl_event *);
cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue, cl_kernel, cl_uint,
                                     const size_t *, const size_t *,
                                     const size_t *, cl_uint, const cl_event *,
                                     cl_event *);
cl_int __real_clEnqueueReadBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                  size_t, void *, cl_uint, const cl_event *,
                                  cl_event *);
cl_int __wrap_clEnqueueReadBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                  size_t, void *, cl_uint, const cl_event *,
                                  cl_event *);
cl_int __real_clEnqueueMarkerWithWaitList(cl_command_queue, cl_uint,
                                          const cl_event *, cl_event *);
cl_int __wrap_clEnqueueMarkerWithWaitList(cl_command_queue, cl_uint,
                                          const cl_event *, cl_event *);
cl_int __real_clEnqueueWriteBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                   size_t, const void *, cl_uint,
                                   const cl_event *, cl_event *);
cl_int __wrap_clEnqueueWriteBuffer(cl_command_queue, cl_mem, cl_bool, size_t,
                                   size_t, const void *, cl_uint,
                                   const cl_event *, cl_event *);

cl_int __real_clEnqueueWriteBufferRect(cl_command_queue, cl_mem, cl_bool,
                                       const size_t *, const size_t *,
                                       const size_t *, size_t, size_t, size_t,
                                       size_t, const void *, cl_uint,
                                       const cl_event *, cl_event *);
cl_int __wrap_clEnqueueWriteBufferRect(cl_command_queue, cl_mem, cl_bool,
                                       const size_t *, const size_t *,
                                       const size_t *, size_t, size_t, size_t,
                                       size_t, const void *, cl_uint,
                                       const cl_event *, cl_event *);
cl_int __real_clEnqueueCopyBufferRect(cl_command_queue, cl_mem, cl_mem,
                                      const size_t *, const size_t *,
                                      const size_t *, size_t, size_t, size_t,
                                      size_t, cl_uint, const cl_event *,
                                      cl_event *);
cl_int __wrap_clEnqueueCopyBufferRect(cl_command_queue, cl_mem, cl_mem,
                                      const size_t *, const size_t *,
                                      const size_t *, size_t, size_t, size_t,
                                      size_t, cl_uint, const cl_event *,
                                      cl_event *);

/* The KV cache's rectangle copies (the layer's read back is blocking and
 * makes no event). */
cl_int __wrap_clEnqueueWriteBufferRect(cl_command_queue q, cl_mem m, cl_bool b,
                                       const size_t *bo, const size_t *ho,
                                       const size_t *r, size_t br, size_t bs,
                                       size_t hr, size_t hs, const void *p,
                                       cl_uint nw, const cl_event *w,
                                       cl_event *ev)
{
    cl_int rc = __real_clEnqueueWriteBufferRect(q, m, b, bo, ho, r, br, bs, hr,
                                                hs, p, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_int __wrap_clEnqueueCopyBufferRect(cl_command_queue q, cl_mem src,
                                      cl_mem dst, const size_t *so,
                                      const size_t *dso, const size_t *r,
                                      size_t sr, size_t ss, size_t dr,
                                      size_t ds, cl_uint nw, const cl_event *w,
                                      cl_event *ev)
{
    cl_int rc = __real_clEnqueueCopyBufferRect(q, src, dst, so, dso, r, sr, ss,
                                               dr, ds, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_int __real_clEnqueueFillBuffer(cl_command_queue, cl_mem, const void *,
                                  size_t, size_t, size_t, cl_uint,
                                  const cl_event *, cl_event *);
cl_int __wrap_clEnqueueFillBuffer(cl_command_queue, cl_mem, const void *,
                                  size_t, size_t, size_t, cl_uint,
                                  const cl_event *, cl_event *);

/* The fills of q_start's padding rows and of packed sequences without
 * keys. */
cl_int __wrap_clEnqueueFillBuffer(cl_command_queue q, cl_mem m, const void *p,
                                  size_t ps, size_t off, size_t n, cl_uint nw,
                                  const cl_event *w, cl_event *ev)
{
    cl_int rc = __real_clEnqueueFillBuffer(q, m, p, ps, off, n, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_mem __wrap_clCreateBuffer(cl_context c, cl_mem_flags f, size_t n, void *h,
                             cl_int *rc)
{
    cl_mem m = __real_clCreateBuffer(c, f, n, h, rc);
    COUNT(n_mem, m);
    return m;
}

cl_int __wrap_clRetainMemObject(cl_mem m)
{
    cl_int rc = __real_clRetainMemObject(m);
    COUNT(n_mem, rc == CL_SUCCESS);
    return rc;
}

cl_int __wrap_clReleaseMemObject(cl_mem m)
{
    cl_int rc = __real_clReleaseMemObject(m);
    UNCOUNT(n_mem, rc);
    return rc;
}

cl_kernel __wrap_clCreateKernel(cl_program p, const char *name, cl_int *rc)
{
    cl_kernel k = __real_clCreateKernel(p, name, rc);
    COUNT(n_kernel, k);
    return k;
}

cl_int __wrap_clRetainKernel(cl_kernel k)
{
    cl_int rc = __real_clRetainKernel(k);
    COUNT(n_kernel, rc == CL_SUCCESS);
    return rc;
}

cl_int __wrap_clReleaseKernel(cl_kernel k)
{
    cl_int rc = __real_clReleaseKernel(k);
    UNCOUNT(n_kernel, rc);
    return rc;
}

cl_program __wrap_clCreateProgramWithSource(cl_context c, cl_uint n,
                                            const char **src, const size_t *len,
                                            cl_int *rc)
{
    cl_program p = __real_clCreateProgramWithSource(c, n, src, len, rc);
    COUNT(n_program, p);
    return p;
}

cl_program __wrap_clCreateProgramWithBinary(cl_context c, cl_uint n,
                                            const cl_device_id *d,
                                            const size_t *len,
                                            const unsigned char **bin,
                                            cl_int *st, cl_int *rc)
{
    cl_program p = __real_clCreateProgramWithBinary(c, n, d, len, bin, st, rc);
    COUNT(n_program, p);
    return p;
}

cl_int __wrap_clRetainProgram(cl_program p)
{
    cl_int rc = __real_clRetainProgram(p);
    COUNT(n_program, rc == CL_SUCCESS);
    return rc;
}

cl_int __wrap_clReleaseProgram(cl_program p)
{
    cl_int rc = __real_clReleaseProgram(p);
    UNCOUNT(n_program, rc);
    return rc;
}

cl_event __wrap_clCreateUserEvent(cl_context c, cl_int *rc)
{
    cl_event e = __real_clCreateUserEvent(c, rc);
    COUNT(n_event, e);
    return e;
}

cl_int __wrap_clRetainEvent(cl_event e)
{
    cl_int rc = __real_clRetainEvent(e);
    COUNT(n_event, rc == CL_SUCCESS);
    return rc;
}

cl_int __wrap_clReleaseEvent(cl_event e)
{
    cl_int rc = __real_clReleaseEvent(e);
    UNCOUNT(n_event, rc);
    return rc;
}

cl_int __wrap_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                     cl_uint dims, const size_t *off,
                                     const size_t *g, const size_t *l,
                                     cl_uint n, const cl_event *w, cl_event *ev)
{
    cl_int rc = __real_clEnqueueNDRangeKernel(q, k, dims, off, g, l, n, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_int __wrap_clEnqueueReadBuffer(cl_command_queue q, cl_mem m, cl_bool b,
                                  size_t off, size_t n, void *p, cl_uint nw,
                                  const cl_event *w, cl_event *ev)
{
    cl_int rc = __real_clEnqueueReadBuffer(q, m, b, off, n, p, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_int __wrap_clEnqueueWriteBuffer(cl_command_queue q, cl_mem m, cl_bool b,
                                   size_t off, size_t n, const void *p,
                                   cl_uint nw, const cl_event *w, cl_event *ev)
{
    cl_int rc = __real_clEnqueueWriteBuffer(q, m, b, off, n, p, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

cl_int __wrap_clEnqueueMarkerWithWaitList(cl_command_queue q, cl_uint nw,
                                          const cl_event *w, cl_event *ev)
{
    cl_int rc = __real_clEnqueueMarkerWithWaitList(q, nw, w, ev);
    COUNT(n_event, rc == CL_SUCCESS && ev && *ev);
    return rc;
}

#ifdef ATTN_HAVE_CLBLAST
/* The GEMMs hand their events to the library. */
CLBlastStatusCode
__real_CLBlastSgemm(const CLBlastLayout, const CLBlastTranspose,
                    const CLBlastTranspose, const size_t, const size_t,
                    const size_t, const float, const cl_mem, const size_t,
                    const size_t, const cl_mem, const size_t, const size_t,
                    const float, cl_mem, const size_t, const size_t,
                    cl_command_queue *, cl_event *);
CLBlastStatusCode
__wrap_CLBlastSgemm(const CLBlastLayout, const CLBlastTranspose,
                    const CLBlastTranspose, const size_t, const size_t,
                    const size_t, const float, const cl_mem, const size_t,
                    const size_t, const cl_mem, const size_t, const size_t,
                    const float, cl_mem, const size_t, const size_t,
                    cl_command_queue *, cl_event *);
CLBlastStatusCode
__wrap_CLBlastSgemm(const CLBlastLayout layout, const CLBlastTranspose ta,
                    const CLBlastTranspose tb, const size_t m, const size_t n,
                    const size_t k, const float alpha, const cl_mem a,
                    const size_t a_off, const size_t lda, const cl_mem b,
                    const size_t b_off, const size_t ldb, const float beta,
                    cl_mem c, const size_t c_off, const size_t ldc,
                    cl_command_queue *q, cl_event *ev)
{
    CLBlastStatusCode st =
        __real_CLBlastSgemm(layout, ta, tb, m, n, k, alpha, a, a_off, lda, b,
                            b_off, ldb, beta, c, c_off, ldc, q, ev);
    COUNT(n_event, ev && *ev);
    return st;
}
#endif
