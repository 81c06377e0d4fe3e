/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the scheduler (src/sched/run.c) drives on an OpenCL device: a call's
 * tensors and the groups' input copies, scratch and staging buffers from
 * the device's pool (pool.c), the uploads of each group's slices, its
 * kernels (driver.c), and the reads of its results behind a gate.  Devices
 * never share buffers: each has its own, filled from the host.
 *
 * Pinned staging (rt->pinned, the profile's `staging = pinned`): host
 * slices are copied into mapped host memory of the device
 * (CL_MEM_ALLOC_HOST_PTR) and uploaded from there, and results are read
 * into such memory and copied out once every read succeeded; discrete
 * GPUs move pinned memory faster than the caller's pageable memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/backend_impl.h"
#include "opencl/driver.h"
#include "opencl/launch_common.h"
#include "opencl/pool.h"

/* Buffers a call holds besides its tensors. */
typedef struct held {
    attn_cl_buf b;
    const attn_group *g; /* the group whose results it stages, or NULL */
    int what;            /* staged results: 1 o, 2 lse; else 0 */
} held;

struct attn_dev_call {
    attn_cl_runtime *rt;
    size_t elem;
    attn_cl_buf tens[5]; /* q, k, v, o, lse */
    /* q, k, v: the tensor whose buffer holds each (itself, or an earlier
     * one it overlaps in host memory) and where it starts there, in
     * elements */
    int home[3];
    size_t base[3];
    held *h;
    size_t n_h, cap_h;
};

#define EV(e)  ((cl_event)(void *)(e))
#define AEV(e) ((attn_event *)(void *)(e))

static attn_cl_runtime *rt_of(const attn_backend *b, int dev)
{
    return ((const cl_backend *)b->impl)->rt[dev];
}

static int n_devices(const attn_backend *b)
{
    return ((const cl_backend *)b->impl)->n_rt;
}

static int n_queues(const attn_backend *b, int dev)
{
    return rt_of(b, dev)->n_queues;
}

static double weight(const attn_backend *b, int dev)
{
    return ((const cl_backend *)b->impl)->weight[dev];
}

static const attn_device_info *info(const attn_backend *b, int dev)
{
    return &rt_of(b, dev)->info;
}

static unsigned epoch(const attn_backend *b)
{
    const cl_backend *cb = b->impl;
    unsigned e = 0;
    for (int i = 0; i < cb->n_rt; i++) {
        pthread_mutex_lock(&cb->rt[i]->lock);
        e += cb->rt[i]->epoch;
        pthread_mutex_unlock(&cb->rt[i]->lock);
    }
    return e;
}

static void ask(attn_backend *b, attn_precision asked)
{
    const cl_backend *cb = b->impl;
    for (int i = 0; i < cb->n_rt; i++)
        cb->rt[i]->precision = asked;
}

static attn_status prepare(attn_backend *b, int dev, const attn_sdpa_desc *d,
                           attn_prepared *out, attn_err *err)
{
    return attn_cl_prepare(rt_of(b, dev), d, out, err);
}

/* Keeps buffer x in dc's list; releases it and fails when the list cannot
 * grow. */
static attn_status hold(attn_dev_call *dc, attn_cl_buf *x, const attn_group *g,
                        int what, attn_err *err)
{
    if (dc->n_h == dc->cap_h) {
        size_t cap = dc->cap_h ? 2 * dc->cap_h : 16;
        held *h = realloc(dc->h, cap * sizeof *h);
        if (!h) {
            attn_cl_pool_give(dc->rt, x, 0);
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "cannot allocate the call's buffer list");
        }
        dc->h = h;
        dc->cap_h = cap;
    }
    dc->h[dc->n_h].b = *x;
    dc->h[dc->n_h].g = g;
    dc->h[dc->n_h].what = what;
    dc->n_h++;
    return ATTN_OK;
}

/* A buffer of bytes from the pool, held by the call. */
static attn_status take(attn_dev_call *dc, size_t bytes, attn_cl_buf_kind kind,
                        const char *what, const attn_group *g, int which,
                        attn_cl_buf *out, attn_err *err)
{
    attn_status s = attn_cl_pool_take(dc->rt, bytes, kind, what, out, err);
    if (s == ATTN_OK)
        s = hold(dc, out, g, which, err);
    return s;
}

static void call_close(attn_dev_call *dc, int ok)
{
    if (!dc)
        return;
    for (size_t i = 0; i < dc->n_h; i++)
        attn_cl_pool_give(dc->rt, &dc->h[i].b, ok);
    for (int i = 0; i < 5; i++)
        attn_cl_pool_give(dc->rt, &dc->tens[i], ok);
    free(dc->h);
    free(dc);
}

/* Which of q, k, v share a device buffer: those whose host extents
 * overlap (a fused QKV projection's [batch, seq, 3, heads, dim], K and V
 * interleaved in one cache) are uploaded once, into one buffer spanning
 * them all, at their distances apart (whole elements).  bytes[0..2] grow
 * to the spans of the buffers that hold them. */
static void share_inputs(attn_dev_call *dc, const attn_sdpa_call *c,
                         size_t elem, size_t bytes[3])
{
    const uintptr_t at[3] = {(uintptr_t)c->q, (uintptr_t)c->k, (uintptr_t)c->v};
    uintptr_t lo[3], hi[3];
    for (int i = 0; i < 3; i++) {
        dc->home[i] = i;
        dc->base[i] = 0;
        lo[i] = at[i];
        hi[i] = at[i] + bytes[i];
    }
    for (int i = 1; i < 3; i++)
        for (int j = 0; j < i; j++) {
            const int h = dc->home[j];
            if (dc->home[i] != i || h != j || !bytes[i] || !bytes[j] ||
                at[i] >= hi[h] || lo[h] >= at[i] + bytes[i] ||
                (at[i] > lo[h] ? at[i] - lo[h] : lo[h] - at[i]) % elem)
                continue;
            /* i joins j's buffer, which spans both from the lower start */
            if (at[i] < lo[h]) {
                const size_t shift = (size_t)(lo[h] - at[i]) / elem;
                for (int t = 0; t < i; t++)
                    if (dc->home[t] == h)
                        dc->base[t] += shift;
                lo[h] = at[i];
            }
            hi[h] = hi[h] > at[i] + bytes[i] ? hi[h] : at[i] + bytes[i];
            dc->home[i] = h;
            dc->base[i] = (size_t)(at[i] - lo[h]) / elem;
        }
    for (int i = 0; i < 3; i++)
        bytes[i] = dc->home[i] == i ? (size_t)(hi[i] - lo[i]) : 0;
}

static attn_status call_open(attn_backend *b, int dev,
                             const attn_sdpa_bytes *sz, const attn_sdpa_call *c,
                             uint64_t total, uint64_t largest,
                             attn_dev_call **out, attn_err *err)
{
    static const char *const names[5] = {"q", "k", "v", "o", "lse"};
    attn_cl_runtime *rt = rt_of(b, dev);
    size_t bytes[5] = {sz->q, sz->k, sz->v, sz->o, sz->lse};
    attn_dev_call *dc;
    attn_status s;
    *out = NULL;
    if ((s = attn_cl_check_fit(rt, "the call", total, largest, err)))
        return s;
    if (!(dc = calloc(1, sizeof *dc)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the call's state");
    dc->rt = rt;
    *out = dc;
    share_inputs(dc, c, c->d->dtype == ATTN_F32 ? 4 : 2, bytes);
    for (int i = 0; i < (c->lse ? 5 : 4); i++)
        if ((i >= 3 || dc->home[i] == i) &&
            (s = attn_cl_pool_take(rt, bytes[i], ATTN_CL_BUF_DEVICE, names[i],
                                   &dc->tens[i], err)))
            return s;
    return ATTN_OK;
}

/* Enqueues a write of n bytes of src into m at byte offset off, through a
 * pinned staging buffer when the device asks for it. */
static attn_status upload(attn_dev_call *dc, cl_command_queue q, cl_mem m,
                          size_t off, const void *src, size_t n,
                          const char *what, cl_event *ev, attn_err *err)
{
    attn_cl_runtime *rt = dc->rt;
    cl_int rc;
    if (rt->pinned) {
        attn_cl_buf st;
        attn_status s = take(dc, n, ATTN_CL_BUF_PINNED, "a staging buffer",
                             NULL, 0, &st, err);
        if (s)
            return s;
        memcpy(st.host, src, n);
        src = st.host;
    }
    rc =
        ATTN_CL(clEnqueueWriteBuffer)(q, m, CL_FALSE, off, n, src, 0, NULL, ev);
    if (rc != CL_SUCCESS) {
        *ev = NULL;
        return attn_fail(err, attn_cl_status(rc), "cannot copy %s to %s: %s",
                         what, rt->info.name, attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

static attn_status compute(attn_dev_call *dc, int queue, const attn_group *g,
                           const attn_prepared *p, const attn_sdpa_call *c,
                           attn_event **up, attn_event **done, attn_err *err)
{
    static const char *const in_names[3] = {"mask.bias", "mask.kv_len",
                                            "additive_w"};
    attn_cl_runtime *rt = dc->rt;
    cl_command_queue q = rt->queues[queue];
    const size_t e = c->d->dtype == ATTN_F32 ? 4 : 2;
    const size_t off[3] = {g->q_off, g->k_off, g->v_off};
    const size_t len[3] = {g->q_len, g->k_len, g->v_len};
    const char *const src[3] = {c->q, c->k, c->v};
    size_t from[3], to[3]; /* each buffer's rows to upload, in elements */
    const void *in_src[3] = {g->d.mask.bias, g->d.mask.kv_len, g->d.additive_w};
    size_t in_bytes[3];
    attn_cl_buf in_buf[3], scratch;
    attn_cl_inputs in;
    attn_cl_tensors t;
    cl_event ev[ATTN_EXEC_UPLOADS] = {NULL}, kev = NULL;
    attn_status s = ATTN_OK;

    memset(in_buf, 0, sizeof in_buf);
    memset(&scratch, 0, sizeof scratch);
    /* a shared buffer: the union of its tensors' slices, once */
    for (int i = 0; i < 3; i++)
        from[i] = SIZE_MAX, to[i] = 0;
    for (int i = 0; i < 3; i++) {
        const int h = dc->home[i];
        const size_t a = dc->base[i] + off[i], z = a + len[i];
        if (len[i]) {
            from[h] = a < from[h] ? a : from[h];
            to[h] = z > to[h] ? z : to[h];
        }
    }
    for (int i = 0; i < 3 && s == ATTN_OK; i++) {
        /* the buffer's first element: the tensor it holds at offset 0 */
        int first = i;
        for (int u = 0; u < 3; u++)
            if (dc->home[u] == i && dc->base[u] == 0)
                first = u;
        if (dc->home[i] == i && to[i] > from[i])
            s = upload(dc, q, dc->tens[i].mem, from[i] * e,
                       src[first] + from[i] * e, (to[i] - from[i]) * e,
                       i == 0   ? "q"
                       : i == 1 ? "k"
                                : "v",
                       &ev[i], err);
    }
    if (s == ATTN_OK && !attn_cl_input_sizes(&g->d, in_bytes))
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "the size of the mask overflows");
    for (int i = 0; i < 3 && s == ATTN_OK; i++)
        if (in_bytes[i] &&
            (s = take(dc, in_bytes[i], ATTN_CL_BUF_DEVICE, in_names[i], NULL, 0,
                      &in_buf[i], err)) == ATTN_OK)
            s = upload(dc, q, in_buf[i].mem, 0, in_src[i], in_bytes[i],
                       in_names[i], &ev[3 + i], err);
    if (s == ATTN_OK && p->scratch)
        s = take(dc, (size_t)p->scratch, ATTN_CL_BUF_DEVICE,
                 "the kernels' scratch", NULL, 0, &scratch, err);
    if (s == ATTN_OK) {
        memset(&t, 0, sizeof t);
        t.q = dc->tens[dc->home[0]].mem;
        t.k = dc->tens[dc->home[1]].mem;
        t.v = dc->tens[dc->home[2]].mem;
        t.o = dc->tens[3].mem;
        t.lse = dc->tens[4].mem;
        t.q_off = dc->base[0] + g->q_off;
        t.k_off = dc->base[1] + g->k_off;
        t.v_off = dc->base[2] + g->v_off;
        t.o_off = g->o_off;
        t.lse_off = g->lse_off;
        in.bias = in_buf[0].mem;
        in.kv_len = in_buf[1].mem;
        in.addw = in_buf[2].mem;
        in.scratch = scratch.mem;
        /* The kernels follow the uploads through the in-order queue. */
        s = attn_cl_run(rt, p, &g->d, &t, &in, 1, q, 0, NULL, &kev, err);
    }
    for (int i = 0; i < ATTN_EXEC_UPLOADS; i++)
        up[i] = AEV(ev[i]);
    *done = AEV(kev);
    return s;
}

static attn_event *gate_new(attn_dev_call *dc, attn_err *err)
{
    cl_int rc;
    cl_event gate = clCreateUserEvent(dc->rt->context, &rc);
    if (rc != CL_SUCCESS) {
        attn_fail(err, attn_cl_status(rc), "clCreateUserEvent failed: %s",
                  attn_cl_error_name(rc));
        return NULL;
    }
    return AEV(gate);
}

static int gate_set(attn_event *gate, int ok)
{
    if (ok && clSetUserEventStatus(EV(gate), CL_COMPLETE) == CL_SUCCESS)
        return 1;
    clSetUserEventStatus(EV(gate), -1);
    return !ok;
}

/* A read of n bytes at byte offset off of m into dst behind gate, staged
 * through pinned memory when the device asks for it or stage says so
 * (collect copies it out). */
static attn_status read_one(attn_dev_call *dc, cl_command_queue q, cl_mem m,
                            size_t off, size_t n, void *dst, cl_event gate,
                            const attn_group *g, int what, int stage,
                            cl_event *ev, attn_err *err)
{
    attn_cl_runtime *rt = dc->rt;
    cl_int rc;
    if (rt->pinned || stage) {
        attn_cl_buf st;
        attn_status s = take(dc, n, ATTN_CL_BUF_PINNED, "a staging buffer", g,
                             what + 1, &st, err);
        if (s)
            return s;
        dst = st.host;
    }
    rc =
        ATTN_CL(clEnqueueReadBuffer)(q, m, CL_FALSE, off, n, dst, 1, &gate, ev);
    if (rc != CL_SUCCESS) {
        *ev = NULL;
        return attn_fail(err, attn_cl_status(rc),
                         "cannot read the output from %s: %s", rt->info.name,
                         attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

static int o_strided(const attn_sdpa_desc *d)
{
    return d->o_strides[0] != 0 || d->o_strides[1] != 0 || d->o_strides[2] != 0;
}

/* The rows of group g's o from its staged extent src to the caller's o. */
static void scatter_o(const attn_group *g, const attn_sdpa_call *c,
                      const char *src, size_t e)
{
    const attn_sdpa_desc *d = &g->d;
    const size_t w = (size_t)d->head_dim_v * e;
    size_t st[3];
    attn_tensor_strides(d, ATTN_T_O, st);
    for (size_t b = 0; b < (size_t)d->batch; b++)
        for (size_t h = 0; h < (size_t)d->heads_q; h++)
            for (size_t i = 0; i < (size_t)d->seq_q; i++) {
                const size_t at = (b * st[0] + h * st[1] + i * st[2]) * e;
                memcpy((char *)c->o + g->o_off * e + at, src + at, w);
            }
}

static attn_status read_group(attn_dev_call *dc, int queue, const attn_group *g,
                              const attn_sdpa_call *c, attn_event *gate,
                              attn_event **rd, attn_err *err)
{
    cl_command_queue q = dc->rt->queues[queue];
    const size_t e = c->d->dtype == ATTN_F32 ? 4 : 2;
    cl_event ev[2] = {NULL, NULL};
    /* Strided o: the extent read holds gaps (and rows of other groups)
     * that are not this group's to write; collect copies its rows out. */
    attn_status s = read_one(dc, q, dc->tens[3].mem, g->o_off * e, g->o_len * e,
                             (char *)c->o + g->o_off * e, EV(gate), g, 0,
                             o_strided(c->d), &ev[0], err);
    if (s == ATTN_OK && c->lse)
        s = read_one(dc, q, dc->tens[4].mem, g->lse_off * sizeof(float),
                     g->lse_len * sizeof(float), c->lse + g->lse_off, EV(gate),
                     g, 1, 0, &ev[1], err);
    rd[0] = AEV(ev[0]);
    rd[1] = AEV(ev[1]);
    return s;
}

static void collect(attn_dev_call *dc, const attn_group *g,
                    const attn_sdpa_call *c)
{
    const size_t e = c->d->dtype == ATTN_F32 ? 4 : 2;
    for (size_t i = 0; i < dc->n_h; i++) {
        const held *h = &dc->h[i];
        if (h->g != g || !h->what)
            continue;
        if (h->what == 1 && o_strided(c->d))
            scatter_o(g, c, h->b.host, e);
        else if (h->what == 1)
            memcpy((char *)c->o + g->o_off * e, h->b.host, g->o_len * e);
        else
            memcpy(c->lse + g->lse_off, h->b.host, g->lse_len * sizeof(float));
    }
}

static attn_status wait_event(attn_dev_call *dc, attn_event *ev,
                              const char *what, attn_err *err)
{
    cl_int rc, st = CL_COMPLETE;
    if (!ev)
        return ATTN_OK;
    ATTN_FAULT_DELIVER(1);
    rc = clWaitForEvents(1, &(cl_event){EV(ev)});
    if (rc == CL_SUCCESS)
        rc = clGetEventInfo(EV(ev), CL_EVENT_COMMAND_EXECUTION_STATUS,
                            sizeof st, &st, NULL);
    if (rc == CL_SUCCESS && st < 0)
        rc = st;
    if (rc == CL_SUCCESS)
        return ATTN_OK;
    return attn_fail(err, attn_cl_status(rc), "%s on %s failed: %s (%d)", what,
                     dc->rt->info.name, attn_cl_error_name(rc), (int)rc);
}

static void event_release(attn_event *ev)
{
    if (ev)
        clReleaseEvent(EV(ev));
}

static void finish(attn_dev_call *dc)
{
    ATTN_FAULT_DELIVER(1);
    for (int i = 0; i < dc->rt->n_queues; i++)
        clFinish(dc->rt->queues[i]);
}

const attn_exec_ops attn_cl_exec_ops = {
    .n_devices = n_devices,
    .n_queues = n_queues,
    .weight = weight,
    .info = info,
    .epoch = epoch,
    .ask = ask,
    .prepare = prepare,
    .call_open = call_open,
    .compute = compute,
    .gate_new = gate_new,
    .gate_set = gate_set,
    .read = read_group,
    .collect = collect,
    .wait = wait_event,
    .event_release = event_release,
    .finish = finish,
    .call_close = call_close,
};
