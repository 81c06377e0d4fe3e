/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLBlast unfused attention path, written as a user would write it
 * (see peer_clblast.h): two strided-batched SGEMMs around a simple
 * row-softmax kernel, the whole [H, N, N] score matrix on the device.
 */
#include "peer_clblast.h"

#include "bench.h"
#include "bench_cl.h"

#include <clblast_c.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SOFTMAX_WG = 64 };

/* One work-group per row of S: max, exp and sum, scale; keys past the
 * diagonal are zeroed when causal. */
static const char *SOFTMAX_SRC =
    "__kernel void row_softmax(__global float *s, int n, int causal)\n"
    "{\n"
    "    __local float red[64];\n"
    "    size_t row = get_group_id(0);\n"
    "    int i = (int)(row % (size_t)n);\n"
    "    int lid = (int)get_local_id(0), ls = (int)get_local_size(0);\n"
    "    __global float *r = s + row * (size_t)n;\n"
    "    int last = causal ? i : n - 1;\n"
    "    float m = -INFINITY;\n"
    "    for (int j = lid; j <= last; j += ls) m = fmax(m, r[j]);\n"
    "    red[lid] = m;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (int w = ls / 2; w > 0; w /= 2) {\n"
    "        if (lid < w) red[lid] = fmax(red[lid], red[lid + w]);\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    m = red[0];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    float sum = 0.0f;\n"
    "    for (int j = lid; j <= last; j += ls) {\n"
    "        float e = exp(r[j] - m);\n"
    "        r[j] = e;\n"
    "        sum += e;\n"
    "    }\n"
    "    red[lid] = sum;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (int w = ls / 2; w > 0; w /= 2) {\n"
    "        if (lid < w) red[lid] += red[lid + w];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    float inv = 1.0f / red[0];\n"
    "    for (int j = lid; j < n; j += ls) r[j] = j <= last ? r[j] * inv : "
    "0.0f;\n"
    "}\n";

struct clblast_peer {
    cl_device_id dev;
    cl_context ctx;
    cl_command_queue queue;
    cl_program prog;
    cl_kernel softmax;
    cl_mem mark; /* resident: the gate's fill */
    cl_ulong max_alloc;
    int resident;
    char name[600];
};

struct clblast_case {
    clblast_peer *p;
    int heads, n, d, causal;
    const float *hq, *hk, *hv;
    float *ho;
    cl_mem q, k, v, s, o;
};

static int pick_device(cl_device_id *out, char *why, size_t why_len)
{
    cl_platform_id plats[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, plats, &np) != CL_SUCCESS || np == 0) {
        snprintf(why, why_len, "no OpenCL platform");
        return -1;
    }
    if (np > 16)
        np = 16;
    static const cl_device_type types[2] = {CL_DEVICE_TYPE_CPU,
                                            CL_DEVICE_TYPE_ALL};
    for (int t = 0; t < 2; t++)
        for (cl_uint i = 0; i < np; i++) {
            cl_uint nd = 0;
            if (clGetDeviceIDs(plats[i], types[t], 1, out, &nd) == CL_SUCCESS &&
                nd > 0)
                return 0;
        }
    snprintf(why, why_len, "no OpenCL device");
    return -1;
}

int clblast_peer_open(clblast_peer **out, const char *device_spec,
                      int on_device, char *why, size_t why_len)
{
    *out = NULL;
    clblast_peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    cl_int rc;
    char spec_why[400];
    p->resident = on_device;
    if ((!device_spec || bench_cl_device(device_spec, &p->dev, spec_why,
                                         sizeof spec_why) != 0) &&
        pick_device(&p->dev, why, why_len) != 0)
        goto fail;
    char dn[256] = "", pn[256] = "";
    cl_platform_id plat;
    clGetDeviceInfo(p->dev, CL_DEVICE_NAME, sizeof dn, dn, NULL);
    clGetDeviceInfo(p->dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
    clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pn, pn, NULL);
    clGetDeviceInfo(p->dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof p->max_alloc,
                    &p->max_alloc, NULL);
    snprintf(p->name, sizeof p->name, "%s (%s)", dn, pn);
    size_t max_wg = 0;
    clGetDeviceInfo(p->dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg,
                    &max_wg, NULL);
    if (max_wg < SOFTMAX_WG) {
        snprintf(why, why_len, "%s: work-groups of %d not supported", p->name,
                 SOFTMAX_WG);
        goto fail;
    }
    p->ctx = clCreateContext(NULL, 1, &p->dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateContext: %d", (int)rc);
        goto fail;
    }
    p->queue = clCreateCommandQueue(
        p->ctx, p->dev, on_device ? CL_QUEUE_PROFILING_ENABLE : 0, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateCommandQueue: %d", (int)rc);
        goto fail;
    }
    if (on_device) {
        p->mark = clCreateBuffer(p->ctx, CL_MEM_READ_WRITE, 4, NULL, &rc);
        if (rc != CL_SUCCESS) {
            p->mark = NULL;
            snprintf(why, why_len, "clCreateBuffer: %d", (int)rc);
            goto fail;
        }
    }
    p->prog = clCreateProgramWithSource(p->ctx, 1, &SOFTMAX_SRC, NULL, &rc);
    if (rc == CL_SUCCESS)
        rc = clBuildProgram(p->prog, 1, &p->dev, "", NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "softmax kernel build failed: %d", (int)rc);
        goto fail;
    }
    p->softmax = clCreateKernel(p->prog, "row_softmax", &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateKernel: %d", (int)rc);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    clblast_peer_close(p);
    return -1;
}

void clblast_peer_close(clblast_peer *p)
{
    if (!p)
        return;
    if (p->mark)
        clReleaseMemObject(p->mark);
    if (p->softmax)
        clReleaseKernel(p->softmax);
    if (p->prog)
        clReleaseProgram(p->prog);
    if (p->queue)
        clReleaseCommandQueue(p->queue);
    if (p->ctx)
        clReleaseContext(p->ctx);
    free(p);
}

const char *clblast_peer_device(const clblast_peer *p)
{
    return p->name;
}

int clblast_case_prepare(clblast_peer *p, int heads, int n, int d, int causal,
                         const float *q, const float *k, const float *v,
                         float *o, clblast_case **out, char *why,
                         size_t why_len)
{
    *out = NULL;
    size_t in_bytes = (size_t)heads * n * d * sizeof(float);
    size_t s_bytes = (size_t)heads * n * n * sizeof(float);
    if (s_bytes > p->max_alloc) {
        snprintf(why, why_len,
                 "S [%d, %d, %d] is %.0f MiB, over the device's largest "
                 "buffer (%.0f MiB)",
                 heads, n, n, s_bytes / 1048576.0, p->max_alloc / 1048576.0);
        return -1;
    }
    clblast_case *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    c->p = p;
    c->heads = heads;
    c->n = n;
    c->d = d;
    c->causal = causal;
    c->hq = q;
    c->hk = k;
    c->hv = v;
    c->ho = o;
    cl_int rc = CL_SUCCESS;
    cl_mem *m[5] = {&c->q, &c->k, &c->v, &c->s, &c->o};
    for (int i = 0; i < 5 && rc == CL_SUCCESS; i++)
        *m[i] = clCreateBuffer(p->ctx,
                               i < 3    ? CL_MEM_READ_ONLY
                               : i == 3 ? CL_MEM_READ_WRITE
                                        : CL_MEM_WRITE_ONLY,
                               i == 3 ? s_bytes : in_bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clCreateBuffer: %d", (int)rc);
        clblast_case_free(c);
        return -1;
    }
    if (p->resident) { /* the inputs stay on the device */
        const float *h[3] = {q, k, v};
        for (int i = 0; i < 3 && rc == CL_SUCCESS; i++)
            rc = clEnqueueWriteBuffer(p->queue, *m[i], CL_TRUE, 0, in_bytes,
                                      h[i], 0, NULL, NULL);
        if (rc != CL_SUCCESS) {
            snprintf(why, why_len, "clEnqueueWriteBuffer: %d", (int)rc);
            clblast_case_free(c);
            return -1;
        }
    }
    *out = c;
    return 0;
}

/* GEMM, softmax, GEMM on the device buffers; *last (when not NULL)
 * receives the event of the second GEMM. */
static int compute(clblast_case *c, cl_event *last, char *why, size_t why_len)
{
    clblast_peer *p = c->p;
    cl_command_queue qu = p->queue;
    size_t n = (size_t)c->n, d = (size_t)c->d;
    /* S[h] = scale * Q[h] K[h]^T: [n, d] x [d, n] */
    float scale = 1.0f / sqrtf((float)c->d);
    CLBlastStatusCode bs = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, n, n, d,
        scale, c->q, 0, d, n * d, c->k, 0, d, n * d, 0.0f, c->s, 0, n, n * n,
        (size_t)c->heads, &qu, NULL);
    if (bs != CLBlastSuccess) {
        snprintf(why, why_len, "CLBlastSgemmStridedBatched (Q K^T): %d",
                 (int)bs);
        return -1;
    }
    cl_int ni = c->n, ca = c->causal;
    cl_int rc = clSetKernelArg(p->softmax, 0, sizeof c->s, &c->s);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(p->softmax, 1, sizeof ni, &ni);
    if (rc == CL_SUCCESS)
        rc = clSetKernelArg(p->softmax, 2, sizeof ca, &ca);
    size_t lws = SOFTMAX_WG, gws = (size_t)c->heads * n * SOFTMAX_WG;
    if (rc == CL_SUCCESS)
        rc = clEnqueueNDRangeKernel(qu, p->softmax, 1, NULL, &gws, &lws, 0,
                                    NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "softmax kernel: %d", (int)rc);
        return -1;
    }
    /* O[h] = P[h] V[h]: [n, n] x [n, d] */
    bs = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                    CLBlastTransposeNo, n, d, n, 1.0f, c->s, 0,
                                    n, n * n, c->v, 0, d, n * d, 0.0f, c->o, 0,
                                    d, n * d, (size_t)c->heads, &qu, last);
    if (bs != CLBlastSuccess) {
        snprintf(why, why_len, "CLBlastSgemmStridedBatched (P V): %d", (int)bs);
        return -1;
    }
    return 0;
}

int clblast_case_exec(clblast_case *c, char *why, size_t why_len)
{
    clblast_peer *p = c->p;
    cl_command_queue qu = p->queue;
    size_t hnd = (size_t)c->heads * c->n * c->d;
    cl_int rc = clEnqueueWriteBuffer(qu, c->q, CL_FALSE, 0, hnd * 4, c->hq, 0,
                                     NULL, NULL);
    if (rc == CL_SUCCESS)
        rc = clEnqueueWriteBuffer(qu, c->k, CL_FALSE, 0, hnd * 4, c->hk, 0,
                                  NULL, NULL);
    if (rc == CL_SUCCESS)
        rc = clEnqueueWriteBuffer(qu, c->v, CL_FALSE, 0, hnd * 4, c->hv, 0,
                                  NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clEnqueueWriteBuffer: %d", (int)rc);
        return -1;
    }
    if (compute(c, NULL, why, why_len) != 0)
        return -1;
    return clblast_case_read(c, why, why_len);
}

int clblast_case_exec_resident(clblast_case *c, double *kernel_ms,
                               double *wall_ms, char *why, size_t why_len)
{
    clblast_peer *p = c->p;
    bench_gate g;
    cl_event last = NULL;
    if (!p->resident) {
        snprintf(why, why_len, "the peer was not opened resident");
        return -1;
    }
    double t0 = util_now_ms();
    if (bench_gate_open(p->ctx, p->queue, p->mark, &g, why, why_len) != 0)
        return -1;
    if (compute(c, &last, why, why_len) != 0) {
        bench_gate_abort(&g);
        if (last)
            clReleaseEvent(last);
        clFinish(p->queue);
        return -1;
    }
    if (bench_gate_close(&g, last, kernel_ms, why, why_len) != 0)
        return -1;
    *wall_ms = util_now_ms() - t0;
    return 0;
}

int clblast_case_read(clblast_case *c, char *why, size_t why_len)
{
    size_t hnd = (size_t)c->heads * c->n * c->d;
    cl_int rc = clEnqueueReadBuffer(c->p->queue, c->o, CL_TRUE, 0, hnd * 4,
                                    c->ho, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        snprintf(why, why_len, "clEnqueueReadBuffer: %d", (int)rc);
        return -1;
    }
    return 0;
}

void clblast_case_free(clblast_case *c)
{
    if (!c)
        return;
    cl_mem m[5] = {c->q, c->k, c->v, c->s, c->o};
    for (int i = 0; i < 5; i++)
        if (m[i])
            clReleaseMemObject(m[i]);
    free(c);
}
