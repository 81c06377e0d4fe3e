/*
 * The OpenCL backend behind the backend interface of attn_impl.h: device
 * selection for a new context, and attn_sdpa on host pointers.  A call is
 * cut into groups of (batch, kv head) units (src/sched) spread over every
 * queue of every selected device; each group uploads its slices, runs the
 * kernels and reads its slice of o back on its own in-order queue, so the
 * transfers of one group overlap the kernels of another and nothing waits
 * between groups.  Devices never share buffers: each has its own, filled
 * from the host.  The embedding API (cl_api.c) drives the launch code on
 * the caller's buffers and queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/backend_cl.h"
#include "opencl/mha_cl.h"
#include "opencl/profile.h"
#include "opencl/sdpa_cl.h"
#include "opencl/sdpa_decode.h"
#include "opencl/sdpa_fused.h"
#include "sched/sched.h"

#define ATTN_CL_MAX_DEVICES 16
/* The decode kernel's reach when no profile says (sdpa_decode.h). */
#define ATTN_CL_DECODE_MAX_SEQ_Q 4

typedef struct cl_backend {
    attn_cl_runtime *rt[ATTN_CL_MAX_DEVICES]; /* rt[0]: the primary device */
    double weight[ATTN_CL_MAX_DEVICES];       /* relative speed */
    int n_rt;
    attn_path path;       /* options.path, or the profile's for AUTO */
    int fused_min_seq;    /* AUTO: the fused kernel from this seq_kv on */
    int decode_max_seq_q; /* AUTO: the decode kernel up to this seq_q */
} cl_backend;

static void cl_destroy(attn_backend *b)
{
    cl_backend *cb = b->impl;
    for (int i = 0; i < cb->n_rt; i++)
        attn_cl_runtime_destroy(cb->rt[i]);
    free(cb);
    free(b);
}

static void cl_backend_info(const attn_backend *b, attn_device_info *out)
{
    const cl_backend *cb = b->impl;
    *out = cb->rt[0]->info;
}

/* Per-device buffers of one call (whole tensors; each group fills its
 * slices). */
typedef struct dev_bufs {
    attn_cl_tensors t;
    int used;
} dev_bufs;

static attn_status alloc_bufs(attn_cl_runtime *rt, const attn_sdpa_bytes *sz,
                              int lse, dev_bufs *db, attn_err *err)
{
    cl_int rc = CL_SUCCESS;
    const size_t bytes[5] = {sz->q, sz->k, sz->v, sz->o, sz->lse};
    cl_mem *mem[5] = {&db->t.q, &db->t.k, &db->t.v, &db->t.o, &db->t.lse};
    for (int i = 0; i < (lse ? 5 : 4) && rc == CL_SUCCESS; i++)
        *mem[i] = clCreateBuffer(rt->context,
                                 i < 3 ? CL_MEM_READ_ONLY : CL_MEM_WRITE_ONLY,
                                 bytes[i], NULL, &rc);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "cannot allocate the tensors on %s: %s", rt->info.name,
                         attn_cl_error_name(rc));
    return ATTN_OK;
}

static void free_bufs(dev_bufs *db)
{
    cl_mem mem[5] = {db->t.q, db->t.k, db->t.v, db->t.o, db->t.lse};
    for (int i = 0; i < 5; i++)
        if (mem[i])
            clReleaseMemObject(mem[i]);
}

/* The kernels of one call on one device.  AUTO: the decode kernel for a
 * few query rows, the fused kernel from fused_min_seq keys on, the three
 * kernels otherwise; a kernel that declines the shape (UNSUPPORTED) hands
 * it to the next. */
static attn_status launch_path(const cl_backend *cb, attn_cl_runtime *rt,
                               const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue q,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err)
{
    attn_status s;
    if (cb->path == ATTN_PATH_AUTO && d->seq_q <= cb->decode_max_seq_q) {
        s = attn_cl_sdpa_decode(rt, d, t, q, n_wait, wait, done, err);
        if (s != ATTN_ERR_UNSUPPORTED)
            return s;
        attn_log(rt->log, ATTN_LOG_DEBUG, "%s; trying the other kernels",
                 err->msg);
        err->msg[0] = '\0';
    }
    if (cb->path == ATTN_PATH_FUSED ||
        (cb->path == ATTN_PATH_AUTO && d->seq_kv >= cb->fused_min_seq)) {
        s = attn_cl_sdpa_fused(rt, d, t, q, n_wait, wait, done, err);
        if (s != ATTN_ERR_UNSUPPORTED)
            return s;
        attn_log(rt->log, ATTN_LOG_DEBUG, "%s; using the three kernels",
                 err->msg);
        err->msg[0] = '\0';
    }
    return attn_cl_sdpa_unfused(rt, d, t, q, n_wait, wait, done, err);
}

attn_status attn_backend_cl_launch(const attn_backend *b,
                                   const attn_sdpa_desc *d,
                                   const attn_cl_tensors *t, cl_command_queue q,
                                   cl_uint n_wait, const cl_event *wait,
                                   cl_event *done, attn_err *err)
{
    const cl_backend *cb = b->impl;
    return launch_path(cb, cb->rt[0], d, t, q, n_wait, wait, done, err);
}

/* Enqueues one group: slices up, kernels, slices down (events in rd). */
static attn_status run_group(const cl_backend *cb, attn_cl_runtime *rt,
                             cl_command_queue q, const attn_group *g,
                             size_t elem, const dev_bufs *db, const void *hq,
                             const void *hk, const void *hv, void *ho,
                             float *hlse, cl_event rd[2], attn_err *err)
{
    attn_cl_tensors t = db->t;
    cl_event ev = NULL;
    cl_int rc;
    attn_status s;
    ATTN_CL_CHECK(
        clEnqueueWriteBuffer(q, t.q, CL_FALSE, g->q_off * elem, g->q_len * elem,
                             (const char *)hq + g->q_off * elem, 0, NULL, NULL),
        fail);
    ATTN_CL_CHECK(
        clEnqueueWriteBuffer(q, t.k, CL_FALSE, g->k_off * elem, g->k_len * elem,
                             (const char *)hk + g->k_off * elem, 0, NULL, NULL),
        fail);
    ATTN_CL_CHECK(
        clEnqueueWriteBuffer(q, t.v, CL_FALSE, g->v_off * elem, g->v_len * elem,
                             (const char *)hv + g->v_off * elem, 0, NULL, NULL),
        fail);
    t.q_off = g->q_off;
    t.k_off = g->k_off;
    t.v_off = g->v_off;
    t.o_off = g->o_off;
    t.lse_off = g->lse_off;
    if ((s = launch_path(cb, rt, &g->d, &t, q, 0, NULL, &ev, err)))
        return s;
    rc = clEnqueueReadBuffer(q, t.o, CL_FALSE, g->o_off * elem, g->o_len * elem,
                             (char *)ho + g->o_off * elem, 1, &ev, &rd[0]);
    if (rc == CL_SUCCESS && hlse)
        rc = clEnqueueReadBuffer(q, t.lse, CL_FALSE, g->lse_off * sizeof(float),
                                 g->lse_len * sizeof(float), hlse + g->lse_off,
                                 1, &ev, &rd[1]);
    clReleaseEvent(ev);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "cannot read the output from %s: %s", rt->info.name,
                         attn_cl_error_name(rc));
    return ATTN_OK;
fail:
    return attn_cl_status(rc);
}

/* Waits for every read; reports the first failed command. */
static attn_status wait_all(cl_event *ev, size_t n, attn_err *err)
{
    attn_status s = ATTN_OK;
    for (size_t i = 0; i < n; i++) {
        cl_int rc, st = CL_COMPLETE;
        if (!ev[i])
            continue;
        rc = clWaitForEvents(1, &ev[i]);
        if (rc == CL_SUCCESS)
            rc = clGetEventInfo(ev[i], CL_EVENT_COMMAND_EXECUTION_STATUS,
                                sizeof st, &st, NULL);
        if (rc == CL_SUCCESS && st < 0)
            rc = st;
        if (rc != CL_SUCCESS && s == ATTN_OK)
            s = attn_fail(err, attn_cl_status(rc),
                          "a device command failed: %s (%d)",
                          attn_cl_error_name(rc), (int)rc);
    }
    return s;
}

static attn_status cl_sdpa(attn_backend *b, const attn_sdpa_desc *d,
                           const void *q, const void *k, const void *v, void *o,
                           float *lse, attn_err *err)
{
    cl_backend *cb = b->impl;
    attn_cl_runtime *slot_rt[ATTN_SCHED_MAX_SLOTS];
    cl_command_queue slot_q[ATTN_SCHED_MAX_SLOTS];
    double weight[ATTN_SCHED_MAX_SLOTS];
    dev_bufs db[ATTN_CL_MAX_DEVICES];
    int slot_dev[ATTN_SCHED_MAX_SLOTS], n_slots = 0;
    attn_group *groups = NULL;
    cl_event *rd = NULL;
    size_t n_groups = 0, max_groups, elem = d->dtype == ATTN_F16 ? 2 : 4;
    attn_sdpa_bytes sz;
    attn_status s;

    memset(db, 0, sizeof db);
    if ((s = attn_validate_sdpa_desc(d, &sz, err)))
        return s;
    for (int i = 0; i < cb->n_rt; i++)
        for (int j = 0;
             j < cb->rt[i]->n_queues && n_slots < ATTN_SCHED_MAX_SLOTS;
             j++, n_slots++) {
            slot_rt[n_slots] = cb->rt[i];
            slot_q[n_slots] = cb->rt[i]->queues[j];
            slot_dev[n_slots] = i;
            weight[n_slots] = cb->weight[i] / cb->rt[i]->n_queues;
        }
    max_groups = attn_sched_max_groups(d, n_slots);
    groups = calloc(max_groups, sizeof *groups);
    rd = calloc(2 * max_groups, sizeof *rd);
    if (!groups || !rd) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if ((s = attn_sched_split(d, n_slots, weight, groups, max_groups, &n_groups,
                              err)))
        goto done;
    for (size_t i = 0; i < n_groups; i++)
        db[slot_dev[groups[i].slot]].used = 1;
    for (int i = 0; i < cb->n_rt; i++)
        if (db[i].used &&
            (s = alloc_bufs(cb->rt[i], &sz, lse != NULL, &db[i], err)))
            goto drain;
    for (size_t i = 0; i < n_groups; i++) {
        int sl = groups[i].slot;
        if ((s = run_group(cb, slot_rt[sl], slot_q[sl], &groups[i], elem,
                           &db[slot_dev[sl]], q, k, v, o, lse, &rd[2 * i],
                           err)))
            goto drain;
    }
    s = wait_all(rd, 2 * n_groups, err);
drain:
    /* Reads may still be landing in o: let every queue finish first. */
    if (s)
        for (int i = 0; i < n_slots; i++)
            clFinish(slot_q[i]);
done:
    for (size_t i = 0; rd && i < 2 * n_groups; i++)
        if (rd[i])
            clReleaseEvent(rd[i]);
    for (int i = 0; i < cb->n_rt; i++)
        free_bufs(&db[i]);
    free(rd);
    free(groups);
    return s;
}

#ifdef ATTN_HAVE_CLBLAST
/* The layer runs on the primary device. */
static attn_status cl_mha(attn_backend *b, const attn_mha_call *c,
                          attn_err *err)
{
    cl_backend *cb = b->impl;
    return attn_cl_mha(cb->rt[0], c, err);
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
    return b && b->ops == &cl_ops ? ((cl_backend *)b->impl)->rt[0] : NULL;
}

/* A device's relative speed for splitting work: compute units x clock. */
static double device_weight(const attn_device_info *info)
{
    double w = (double)info->compute_units *
               (double)(info->max_clock_mhz ? info->max_clock_mhz : 1000);
    return w > 0 ? w : 1.0;
}

attn_status attn_backend_cl_wrap_n(attn_cl_runtime *const *rt, int n,
                                   attn_backend **out, attn_err *err)
{
    attn_backend *b = calloc(1, sizeof *b);
    cl_backend *cb = calloc(1, sizeof *cb);
    if (!b || !cb || n < 1 || n > ATTN_CL_MAX_DEVICES) {
        free(b);
        free(cb);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the OpenCL backend");
    }
    for (int i = 0; i < n; i++) {
        cb->rt[i] = rt[i];
        cb->weight[i] = device_weight(&rt[i]->info);
    }
    cb->n_rt = n;
    cb->decode_max_seq_q = ATTN_CL_DECODE_MAX_SEQ_Q;
    b->ops = &cl_ops;
    b->impl = cb;
    *out = b;
    return ATTN_OK;
}

void attn_backend_cl_set_path(attn_backend *b, attn_path path)
{
    ((cl_backend *)b->impl)->path = path;
}

attn_status attn_backend_cl_wrap(attn_cl_runtime *rt, attn_backend **out,
                                 attn_err *err)
{
    return attn_backend_cl_wrap_n(&rt, 1, out, err);
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

static void report_profile(void *user, const char *msg)
{
    attn_log(user, ATTN_LOG_WARN, "platform profile: %s", msg);
}

/* Applies a device's profile to its new runtime: kernel tuning, queues
 * (when options.queues is 0) and the weight for splitting work. */
static attn_status apply_profile(attn_cl_runtime *rt, const attn_profile *p,
                                 const attn_options *o, const attn_logger *log,
                                 double *weight, attn_err *err)
{
    attn_cl_unfused_tuning t;
    attn_cl_fused_tuning ft;
    int queues = o->queues > 0 ? o->queues : p->queues > 0 ? p->queues : 1;
    attn_status s;
    if (queues > ATTN_CL_MAX_QUEUES)
        queues = ATTN_CL_MAX_QUEUES;
    if (attn_profile_unfused_tuning(p, &t) != ATTN_OK)
        attn_log(log, ATTN_LOG_WARN,
                 "platform profile for %s: unfused tiles rejected, using "
                 "the defaults",
                 rt->info.name);
    attn_cl_fused_tuning_default(&ft);
    ft.vw = attn_profile_get_int(p, "fused.vw", 1, 16, ft.vw);
    ft.nv = attn_profile_get_int(p, "fused.nv", 1, 16, ft.nv);
    ft.wg = attn_profile_get_int(p, "fused.wg", 1, 1024, ft.wg);
    ft.tk = attn_profile_get_int(p, "fused.tk", 1, 1024, ft.tk);
    ft.kb = attn_profile_get_int(p, "fused.kb", 1, 64, ft.kb);
    ft.cb = attn_profile_get_int(p, "fused.cb", 1, 64, ft.cb);
    if (attn_cl_fused_set_tuning(rt, &ft, err) != ATTN_OK) {
        attn_log(log, ATTN_LOG_WARN,
                 "platform profile for %s: fused tuning rejected (%s), "
                 "using the defaults",
                 rt->info.name, err->msg);
        err->msg[0] = '\0';
    }
    if ((s = attn_cl_unfused_set_tuning(rt, &t, err)) ||
        (s = attn_cl_runtime_set_queues(rt, queues, err)))
        return s;
    *weight = p->weight > 0 ? (double)p->weight : device_weight(&rt->info);
    attn_log(log, ATTN_LOG_DEBUG, "%s: profile %s, %d queue(s)", rt->info.name,
             p->sources[0] ? p->sources : "(none)", queues);
    return ATTN_OK;
}

/* Runtimes on the selected devices, each with its profile and queues. */
static attn_status open_devices(const attn_cl_device *devs,
                                const attn_selection *sel,
                                const attn_options *o, const attn_logger *log,
                                attn_backend **out, attn_err *err)
{
    attn_cl_runtime *rt[ATTN_CL_MAX_DEVICES];
    double weight[ATTN_CL_MAX_DEVICES];
    attn_profile *p = malloc(sizeof *p);
    int n = 0, path = -1, fused_min_seq = -1, decode_max_seq_q = -1;
    attn_status s = ATTN_OK;
    if (!p)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    if (o->queues > ATTN_CL_MAX_QUEUES) {
        free(p);
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.queues %d exceeds %d", o->queues,
                         ATTN_CL_MAX_QUEUES);
    }
    for (size_t i = 0; i < sel->count && n < ATTN_CL_MAX_DEVICES; i++) {
        const attn_cl_device *dev = &devs[sel->index[i]];
        if ((s = attn_profile_resolve(&dev->info, NULL, p, report_profile,
                                      (void *)log)) ||
            (s = attn_cl_runtime_create(dev, o->cache_dir, log, &rt[n], err)))
            break;
        n++;
        if (n == 1) { /* the primary device's choice of kernels */
            path = p->path;
            fused_min_seq = p->fused_min_seq;
            decode_max_seq_q = p->decode_max_seq_q;
        }
        if ((s = apply_profile(rt[n - 1], p, o, log, &weight[n - 1], err)))
            break;
    }
    if (s == ATTN_OK)
        s = attn_backend_cl_wrap_n(rt, n, out, err);
    if (s == ATTN_OK) {
        cl_backend *cb = (*out)->impl;
        for (int i = 0; i < n; i++)
            cb->weight[i] = weight[i];
        cb->path = o->path != ATTN_PATH_AUTO ? o->path
                   : path >= 0               ? (attn_path)path
                                             : ATTN_PATH_AUTO;
        cb->fused_min_seq = fused_min_seq > 0 ? fused_min_seq : 0;
        cb->decode_max_seq_q =
            decode_max_seq_q >= 0 ? decode_max_seq_q : ATTN_CL_DECODE_MAX_SEQ_Q;
    }
    if (s)
        while (n > 0)
            attn_cl_runtime_destroy(rt[--n]);
    free(p);
    return s;
}

/* Whether "auto" should prefer the native backend to the best usable
 * OpenCL CPU device: its profile says, else ATTN_CL_NATIVE_BEATS_CPU. */
static int native_beats_cpu(const attn_cl_device *devs, size_t n,
                            const attn_logger *log)
{
    const attn_cl_device *best = NULL;
    attn_profile *p;
    int beats = ATTN_CL_NATIVE_BEATS_CPU;
    for (size_t i = 0; i < n; i++)
        if (devs[i].info.usable &&
            devs[i].info.kind == ATTN_DEVICE_CPU_OPENCL &&
            (!best || devs[i].info.rank > best->info.rank))
            best = &devs[i];
    if (best && (p = malloc(sizeof *p))) {
        if (attn_profile_resolve(&best->info, NULL, p, report_profile,
                                 (void *)log) == ATTN_OK &&
            p->native_beats_opencl >= 0)
            beats = p->native_beats_opencl;
        free(p);
    }
    return beats;
}

attn_status attn_opencl_open(const char *spec, const attn_options *o,
                             const attn_logger *log, attn_backend **out,
                             char *why, size_t why_cap, attn_err *err)
{
    attn_cl_device *devs = NULL;
    attn_device_info *infos = NULL;
    attn_selection sel;
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
    s = attn_cl_select(infos, n, spec, native_beats_cpu(devs, n, log), &sel,
                       err);
    if (s == ATTN_OK) {
        snprintf(why, why_cap, "%s", sel.why);
        if (!sel.native)
            s = open_devices(devs, &sel, o, log, out, err);
    }
    free(infos);
    free(devs);
    return s;
}
