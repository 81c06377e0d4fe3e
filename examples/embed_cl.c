/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An application that owns its OpenCL objects: its own cl_context and
 * in-order queue, its own buffers (Q, K and V packed in one, read at
 * element offsets) and its own events.  libattn runs attention on them
 * with attn_sdpa_cl_buffers: after the uploads (a wait list), returning an
 * event that the read-back waits for; nothing blocks until the
 * application asks.  Then the backward pass on the same buffers
 * (attn_sdpa_backward_cl_buffers): dL/dO uploaded, dQ, dK and dV written
 * into one gradient buffer at the offsets of Q, K and V, enqueued behind
 * the forward's event: a training step that keeps its tensors on the
 * device.
 *
 * The results are checked against attn_sdpa and attn_sdpa_backward on
 * host memory.  Exits 77 (a
 * skip for ctest) on a machine without an OpenCL device.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <attn/attn_cl.h>

enum { B = 1, HQ = 8, HKV = 2, S = 64, D = 32 };
enum { NQ = B * HQ * S * D, NKV = B * HKV * S * D, NO = NQ };

#define CHECK_CL(call, what)                                                   \
    do {                                                                       \
        cl_int err_ = (call);                                                  \
        if (err_ != CL_SUCCESS) {                                              \
            fprintf(stderr, "embed_cl: %s failed (%d)\n", (what), err_);       \
            goto done;                                                         \
        }                                                                      \
    } while (0)

/* The application's device: a GPU when there is one, else any. */
static cl_device_id pick_device(void)
{
    cl_platform_id platforms[8];
    cl_uint np = 0;
    cl_device_id dev = NULL;
    if (clGetPlatformIDs(8, platforms, &np) != CL_SUCCESS)
        return NULL;
    for (cl_uint p = 0; p < np && p < 8 && !dev; p++)
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_GPU, 1, &dev, NULL) !=
            CL_SUCCESS)
            dev = NULL;
    for (cl_uint p = 0; p < np && p < 8 && !dev; p++)
        if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 1, &dev, NULL) !=
            CL_SUCCESS)
            dev = NULL;
    return dev;
}

int main(void)
{
    static float qkv[NQ + 2 * NKV], o[NO], want[NO], lse[B * HQ * S];
    static float d_o[NO], dqkv[NQ + 2 * NKV], want_d[NQ + 2 * NKV],
        want_lse[B * HQ * S];
    cl_device_id dev = pick_device();
    cl_context clctx = NULL;
    cl_command_queue queue = NULL;
    cl_mem qkv_buf = NULL, o_buf = NULL, lse_buf = NULL, do_buf = NULL,
           dqkv_buf = NULL;
    cl_event uploads[2] = {NULL, NULL}, done = NULL, read = NULL;
    cl_event bwd_wait[2] = {NULL, NULL}, bwd_done = NULL;
    attn_context *ctx = NULL, *host = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_cl_buffers bufs = ATTN_CL_BUFFERS_INIT;
    attn_cl_grad_buffers grads = ATTN_CL_GRAD_BUFFERS_INIT;
    attn_sdpa_grad hg = ATTN_SDPA_GRAD_INIT;
    attn_options opt = ATTN_OPTIONS_INIT;
    attn_status s;
    cl_int err;
    double worst = 0.0, worst_d = 0.0;
    int rc = 1;

    if (!dev) {
        printf("embed_cl: no OpenCL device: skipped\n");
        return 77;
    }
    clctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CHECK_CL(err, "clCreateContext");
    queue = clCreateCommandQueue(clctx, dev, 0, &err);
    CHECK_CL(err, "clCreateCommandQueue");
    for (int i = 0; i < NQ + 2 * NKV; i++)
        qkv[i] = sinf(0.37f * (float)i) * 0.5f;
    for (int i = 0; i < NO; i++)
        d_o[i] = cosf(0.11f * (float)i);

    /* One buffer for Q, K and V; O and lse apart. */
    qkv_buf = clCreateBuffer(clctx, CL_MEM_READ_ONLY, sizeof qkv, NULL, &err);
    CHECK_CL(err, "clCreateBuffer(qkv)");
    o_buf = clCreateBuffer(clctx, CL_MEM_WRITE_ONLY, sizeof o, NULL, &err);
    CHECK_CL(err, "clCreateBuffer(o)");
    lse_buf = clCreateBuffer(clctx, CL_MEM_WRITE_ONLY, sizeof lse, NULL, &err);
    CHECK_CL(err, "clCreateBuffer(lse)");
    /* Two non-blocking uploads: Q, then K and V. */
    CHECK_CL(clEnqueueWriteBuffer(queue, qkv_buf, CL_FALSE, 0,
                                  NQ * sizeof(float), qkv, 0, NULL,
                                  &uploads[0]),
             "clEnqueueWriteBuffer(q)");
    CHECK_CL(clEnqueueWriteBuffer(queue, qkv_buf, CL_FALSE, NQ * sizeof(float),
                                  2 * NKV * sizeof(float), qkv + NQ, 0, NULL,
                                  &uploads[1]),
             "clEnqueueWriteBuffer(k, v)");

    /* libattn on the application's context and device. */
    if ((s = attn_context_create_cl(clctx, dev, &opt, &ctx)) != ATTN_OK) {
        fprintf(stderr, "embed_cl: %s: %s\n", attn_status_string(s),
                attn_last_error());
        goto done;
    }
    d.batch = B;
    d.heads_q = HQ;
    d.heads_kv = HKV; /* grouped-query: 4 query heads per kv head */
    d.seq_q = d.seq_kv = S;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = 1;
    bufs.q = bufs.k = bufs.v = qkv_buf;
    bufs.q_offset = 0;
    bufs.k_offset = NQ;
    bufs.v_offset = NQ + NKV;
    bufs.o = o_buf;
    bufs.lse = lse_buf;
    s = attn_sdpa_cl_buffers(ctx, &d, &bufs, queue, 2, uploads, &done);
    if (s != ATTN_OK) {
        fprintf(stderr, "embed_cl: %s: %s\n", attn_status_string(s),
                attn_context_last_error(ctx));
        goto done;
    }
    /* The read-back waits for libattn's event; then the host waits. */
    CHECK_CL(clEnqueueReadBuffer(queue, o_buf, CL_FALSE, 0, sizeof o, o, 1,
                                 &done, &read),
             "clEnqueueReadBuffer(o)");

    /* The backward pass on the same buffers, behind the forward (its
     * event) and dL/dO's upload: dQ, dK, dV into one buffer at the
     * offsets of Q, K, V. */
    do_buf = clCreateBuffer(clctx, CL_MEM_READ_ONLY, sizeof d_o, NULL, &err);
    CHECK_CL(err, "clCreateBuffer(d_o)");
    dqkv_buf =
        clCreateBuffer(clctx, CL_MEM_WRITE_ONLY, sizeof dqkv, NULL, &err);
    CHECK_CL(err, "clCreateBuffer(dqkv)");
    CHECK_CL(clEnqueueWriteBuffer(queue, do_buf, CL_FALSE, 0, sizeof d_o, d_o,
                                  0, NULL, &bwd_wait[0]),
             "clEnqueueWriteBuffer(d_o)");
    bwd_wait[1] = done;
    clRetainEvent(done);
    grads.q = grads.k = grads.v = qkv_buf;
    grads.k_offset = NQ;
    grads.v_offset = NQ + NKV;
    grads.o = o_buf;
    grads.lse = lse_buf;
    grads.d_o = do_buf;
    grads.dq = grads.dk = grads.dv = dqkv_buf;
    grads.dk_offset = NQ;
    grads.dv_offset = NQ + NKV;
    s = attn_sdpa_backward_cl_buffers(ctx, &d, &grads, queue, 2, bwd_wait,
                                      &bwd_done);
    if (s != ATTN_OK) {
        fprintf(stderr, "embed_cl: %s: %s\n", attn_status_string(s),
                attn_context_last_error(ctx));
        goto done;
    }
    CHECK_CL(clEnqueueReadBuffer(queue, dqkv_buf, CL_TRUE, 0, sizeof dqkv, dqkv,
                                 1, &bwd_done, NULL),
             "clEnqueueReadBuffer(dqkv)");
    CHECK_CL(clWaitForEvents(1, &read), "clWaitForEvents");

    /* The same call on host memory. */
    hg.q = qkv;
    hg.k = qkv + NQ;
    hg.v = qkv + NQ + NKV;
    hg.o = want;
    hg.lse = want_lse;
    hg.d_o = d_o;
    hg.dq = want_d;
    hg.dk = want_d + NQ;
    hg.dv = want_d + NQ + NKV;
    if (attn_context_create(NULL, &host) != ATTN_OK ||
        attn_sdpa(host, &d, qkv, qkv + NQ, qkv + NQ + NKV, want, want_lse) !=
            ATTN_OK ||
        attn_sdpa_backward(host, &d, &hg) != ATTN_OK) {
        fprintf(stderr, "embed_cl: host run: %s\n", attn_last_error());
        goto done;
    }
    for (int i = 0; i < NO; i++) {
        double e = fabs((double)o[i] - (double)want[i]);
        worst = e > worst || isnan(e) ? e : worst;
    }
    for (int i = 0; i < NQ + 2 * NKV; i++) {
        double e = fabs((double)dqkv[i] - (double)want_d[i]);
        worst_d = e > worst_d || isnan(e) ? e : worst_d;
    }
    rc = worst <= 1e-4 && worst_d <= 1e-4 ? 0 : 1;
    printf("embed_cl: attn_sdpa_cl_buffers on the application's queue: max "
           "|diff| from the host run %.2g (%s)\n",
           worst, worst <= 1e-4 ? "ok" : "FAILED");
    printf("embed_cl: attn_sdpa_backward_cl_buffers behind it: max |diff| of "
           "dQ, dK, dV from the host run %.2g (%s)\n",
           worst_d, worst_d <= 1e-4 ? "ok" : "FAILED");
done:
    attn_context_destroy(host);
    attn_context_destroy(ctx);
    if (read)
        clReleaseEvent(read);
    if (bwd_done)
        clReleaseEvent(bwd_done);
    for (int i = 0; i < 2; i++)
        if (bwd_wait[i])
            clReleaseEvent(bwd_wait[i]);
    if (dqkv_buf)
        clReleaseMemObject(dqkv_buf);
    if (do_buf)
        clReleaseMemObject(do_buf);
    if (done)
        clReleaseEvent(done);
    for (int i = 0; i < 2; i++)
        if (uploads[i])
            clReleaseEvent(uploads[i]);
    if (lse_buf)
        clReleaseMemObject(lse_buf);
    if (o_buf)
        clReleaseMemObject(o_buf);
    if (qkv_buf)
        clReleaseMemObject(qkv_buf);
    if (queue)
        clReleaseCommandQueue(queue);
    if (clctx)
        clReleaseContext(clctx);
    return rc;
}
