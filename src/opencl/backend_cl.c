/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL backend behind the backend interface of core/backend.h:
 * opening the devices a spec selects, each with its profile applied
 * (queues, the kernel variants' tuning and order, staging, its share of
 * the work), and the layer on a device.  What the scheduler drives on a
 * device is exec_cl.c.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/backend_cl.h"
#include "opencl/backend_impl.h"
#include "opencl/bwd_cl.h"
#include "opencl/driver.h"
#include "opencl/launch_common.h"
#include "opencl/mha_cl.h"
#include "opencl/opencl_backend.h"
#include "opencl/pool.h"
#include "opencl/profile.h"

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

#ifdef ATTN_HAVE_CLBLAST
static attn_status cl_mha(attn_backend *b, int dev, const attn_prepared *p,
                          const attn_mha_call *c, attn_err *err)
{
    cl_backend *cb = b->impl;
    return attn_cl_mha(cb->rt[dev], p,
                       c->resident ? (const attn_cl_mha_held *)c->resident[dev]
                                   : NULL,
                       c, err);
}

static attn_status cl_mha_hold(attn_backend *b, int dev, const attn_mha_desc *m,
                               void **out, attn_err *err)
{
    cl_backend *cb = b->impl;
    attn_cl_mha_held *h = NULL;
    attn_status s = attn_cl_mha_hold(cb->rt[dev], m, &h, err);
    *out = h;
    return s;
}

static void cl_mha_drop(attn_backend *b, int dev, void *held)
{
    (void)b;
    (void)dev;
    attn_cl_mha_drop(held);
}
#define CL_MHA      cl_mha
#define CL_MHA_HOLD cl_mha_hold
#define CL_MHA_DROP cl_mha_drop
#else
/* Without CLBlast for the projections the native backend runs the layer. */
#define CL_MHA      NULL
#define CL_MHA_HOLD NULL
#define CL_MHA_DROP NULL
#endif

static attn_status cl_prepare_bwd(attn_backend *b, int dev,
                                  const attn_sdpa_desc *d, unsigned grads,
                                  attn_prepared *out, attn_err *err)
{
    cl_backend *cb = b->impl;
    return attn_cl_bwd_prepare(cb->rt[dev], d, grads, out, err);
}

static attn_status cl_sdpa_bwd(attn_backend *b, int dev, const attn_prepared *p,
                               const attn_sdpa_desc *d, const attn_sdpa_grad *g,
                               attn_err *err)
{
    cl_backend *cb = b->impl;
    return attn_cl_bwd_run(cb->rt[dev], p, d, g, err);
}

static int cl_bwd_forced(const attn_backend *b)
{
    const cl_backend *cb = b->impl;
    return attn_cl_bwd_forced(cb->rt[0]);
}

static const attn_backend_ops cl_ops = {
    .name = "opencl",
    .destroy = cl_destroy,
    .device_info = cl_backend_info,
    .sdpa = NULL,
    .mha = CL_MHA,
    .exec = &attn_cl_exec_ops,
    .mha_hold = CL_MHA_HOLD,
    .mha_drop = CL_MHA_DROP,
    .prepare_bwd = cl_prepare_bwd,
    .sdpa_bwd = cl_sdpa_bwd,
    .bwd_forced = cl_bwd_forced,
};

attn_cl_runtime *attn_backend_cl_runtime(const attn_backend *b)
{
    return b && b->ops == &cl_ops ? ((cl_backend *)b->impl)->rt[0] : NULL;
}

attn_status attn_backend_cl_check_buffers(const attn_backend *b,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_tensors *t,
                                          attn_err *err)
{
    const cl_backend *cb = b->impl;
    attn_status s = attn_cl_check_tensors(d, t, err);
    return s ? s : attn_cl_check_aliasing(cb->rt[0], d, t, err);
}

attn_status attn_backend_cl_check_spans(const attn_backend *b,
                                        const attn_cl_span *sp, int n,
                                        attn_err *err)
{
    const cl_backend *cb = b->impl;
    return attn_cl_check_spans(cb->rt[0], sp, n, err);
}

void attn_backend_cl_bwd_bufs_at(attn_cl_bwd_bufs *b,
                                 const attn_sdpa_desc *item, size_t q0,
                                 size_t k0, size_t total_q)
{
    attn_cl_bwd_bufs_at(b, item, q0, k0, total_q);
}

attn_status attn_backend_cl_backward(const attn_backend *b, int n,
                                     const attn_cl_bwd_item *items,
                                     cl_command_queue queue, cl_uint n_wait,
                                     const cl_event *wait, cl_event *done,
                                     attn_err *err)
{
    const cl_backend *cb = b->impl;
    return attn_cl_bwd_enqueue(cb->rt[0], n, items, queue, n_wait, wait, done,
                               err);
}

attn_status attn_backend_cl_launch(
    const attn_backend *b, const attn_prepared *p, const attn_sdpa_desc *d,
    const int32_t *q_start, const attn_cl_tensors *t, cl_command_queue q,
    cl_uint n_wait, const cl_event *wait, cl_event *done, attn_err *err)
{
    attn_cl_runtime *rt = ((const cl_backend *)b->impl)->rt[0];
    attn_cl_gate g = ATTN_CL_GATE_INIT;
    cl_event ran = NULL, last = NULL;
    attn_status s;
    if (!q_start)
        return attn_cl_run(rt, p, d, t, NULL, 0, q, n_wait, wait, done, err);
    /* the kernels, then the fills of the padding rows behind them, held
     * back by one gate: on a failure nothing enqueued writes o or lse
     * (own = 1 inside, as packed_item below) */
    s = attn_cl_gate_open(rt, 0, n_wait, wait, &g, err);
    if (s == ATTN_OK)
        s = attn_cl_run(rt, p, d, t, NULL, 1, q, n_wait + 1, g.wl, &ran, err);
    if (s == ATTN_OK)
        s = attn_cl_pad_rows(rt, q, d, q_start, t->o, t->o_off, t->lse,
                             t->lse_off, 0, 1, &ran, &last, err);
    if (ran)
        clReleaseEvent(ran);
    return attn_cl_gate_close(s, &g, last, done, err);
}

/* Sequence i of a packed call without keys: every row padding (its o
 * rows zeroed, its lse rows -inf), the fills after the gate; their
 * marker appended to ev. */
static attn_status packed_empty(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                const attn_cl_tensors *t, size_t lse_pitch,
                                cl_command_queue q, const attn_cl_gate *g,
                                cl_uint n_wl, cl_event *ev, size_t *n_ev,
                                attn_err *err)
{
    const int32_t all = d->seq_q;
    cl_event last = NULL;
    attn_status s =
        attn_cl_pad_rows(rt, q, d, &all, t->o, t->o_off, t->lse, t->lse_off,
                         lse_pitch, n_wl, g->wl, &last, err);
    if (s == ATTN_OK)
        ev[(*n_ev)++] = last;
    return s;
}

/* Sequence i of a packed call with keys: its variant's kernels after the
 * gate; its lse, when its heads lie apart by lse_pitch rather than its own
 * length, through a buffer of its own copied into place. */
static attn_status packed_item(attn_cl_runtime *rt, const attn_prepared *p,
                               const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, size_t lse_pitch,
                               cl_command_queue q, const attn_cl_gate *g,
                               cl_uint n_wl, cl_event *ev, size_t *n_ev,
                               attn_err *err)
{
    attn_cl_tensors ti = *t;
    const size_t rows = (size_t)d->seq_q, heads = (size_t)d->heads_q;
    cl_event ran = NULL;
    cl_mem own = NULL;
    attn_status s;
    cl_int rc;
    if (t->lse && heads > 1 && lse_pitch != rows) {
        own = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE,
                                      heads * rows * sizeof(float), NULL, &rc);
        if (rc != CL_SUCCESS)
            return attn_fail(err, attn_cl_status(rc),
                             "cannot allocate the lse of one packed sequence "
                             "on %s: %s",
                             rt->info.name, attn_cl_error_name(rc));
        ti.lse = own;
        ti.lse_off = 0;
    }
    /* own = 1: a failure inside lets what it enqueued stand, held back by
     * the packed call's gate, which fails it all (failing a command that
     * also waits for a pending event can crash drivers: launch_common.h) */
    s = attn_cl_run(rt, p, d, &ti, NULL, 1, q, n_wl, g->wl, &ran, err);
    if (s == ATTN_OK && own) {
        const size_t from[3] = {0, 0, 0},
                     to[3] = {t->lse_off * sizeof(float), 0, 0},
                     region[3] = {rows * sizeof(float), heads, 1};
        rc = ATTN_CL(clEnqueueCopyBufferRect)(
            q, own, t->lse, from, to, region, rows * sizeof(float), 0,
            lse_pitch * sizeof(float), 0, 1, &ran, &ev[*n_ev]);
        clReleaseEvent(ran);
        if (rc == CL_SUCCESS)
            (*n_ev)++;
        else
            s = attn_fail(err, attn_cl_status(rc),
                          "enqueueing the copy of a packed sequence's lse on "
                          "%s failed: %s (%d)",
                          rt->info.name, attn_cl_error_name(rc), (int)rc);
    } else if (s == ATTN_OK) {
        ev[(*n_ev)++] = ran;
    }
    attn_cl_release_mem(own); /* freed once its commands are done */
    return s;
}

attn_status attn_backend_cl_launch_packed(const attn_backend *b, int n,
                                          const attn_prepared *const *p,
                                          const attn_sdpa_desc *d,
                                          const attn_cl_tensors *t,
                                          size_t lse_pitch, cl_command_queue q,
                                          cl_uint n_wait, const cl_event *wait,
                                          cl_event *done, attn_err *err)
{
    attn_cl_runtime *rt = ((const cl_backend *)b->impl)->rt[0];
    attn_cl_gate g = ATTN_CL_GATE_INIT;
    size_t n_ev = 0;
    cl_event *ev = NULL, last = NULL;
    attn_status s;
    if (!(ev = malloc((n ? (size_t)n : 1) * sizeof *ev))) /* one a sequence */
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the events of a packed call");
    /* nothing runs before every sequence is enqueued (the gate), and
     * nothing writes o or lse when one fails */
    s = attn_cl_gate_open(rt, 0, n_wait, wait, &g, err);
    for (int i = 0; i < n && s == ATTN_OK; i++)
        s = p[i] ? packed_item(rt, p[i], &d[i], &t[i], lse_pitch, q, &g,
                               n_wait + 1, ev, &n_ev, err)
                 : packed_empty(rt, &d[i], &t[i], lse_pitch, q, &g, n_wait + 1,
                                ev, &n_ev, err);
    if (s == ATTN_OK) {
        cl_int rc =
            n_ev ? clEnqueueMarkerWithWaitList(q, (cl_uint)n_ev, ev, &last)
                 : clEnqueueMarkerWithWaitList(q, n_wait + 1, g.wl, &last);
        if (rc != CL_SUCCESS) {
            last = NULL;
            s = attn_fail(err, attn_cl_status(rc),
                          "enqueueing the end of a packed call on %s failed: "
                          "%s (%d)",
                          rt->info.name, attn_cl_error_name(rc), (int)rc);
        }
    }
    s = attn_cl_gate_close(s, &g, last, done, err);
    for (size_t i = 0; i < n_ev; i++)
        clReleaseEvent(ev[i]);
    free(ev);
    return s;
}

const char *attn_opencl_kernel_name(int i)
{
    return i >= 0 && i < attn_cl_n_variants ? attn_cl_variants[i]->name : NULL;
}

const char *attn_opencl_bwd_kernel_name(int i)
{
    return i >= 0 && i < attn_cl_n_bwd_variants ? attn_cl_bwd_variants[i].name
                                                : NULL;
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
    b->ops = &cl_ops;
    b->impl = cb;
    *out = b;
    return ATTN_OK;
}

attn_status attn_opencl_devices(attn_device_info **out, size_t *count,
                                attn_err *err)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    attn_status s = attn_cl_discover(&devs, &n, err);
    *out = NULL;
    *count = 0;
    if (s)
        return s;
    if (n && !(*out = malloc(n * sizeof **out))) {
        free(devs);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        (*out)[i] = devs[i].info;
    *count = n;
    free(devs);
    return ATTN_OK;
}

/* The profile messages of one context: the same files are resolved for
 * every device it opens and for the choice of "auto", and each message is
 * said once. */
#define PROFILE_SEEN_MAX 64
typedef struct profile_log {
    const attn_logger *log;
    size_t n;
    uint64_t seen[PROFILE_SEEN_MAX]; /* FNV-1a of the messages said */
} profile_log;

static void profile_warn(profile_log *pl, const char *fmt, ...)
    ATTN_PRINTF(2, 3);
static void profile_warn(profile_log *pl, const char *fmt, ...)
{
    char msg[ATTN_MSG_MAX];
    uint64_t h = 0xcbf29ce484222325u;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++)
        h = (h ^ *c) * 0x100000001b3u;
    for (size_t i = 0; i < pl->n; i++)
        if (pl->seen[i] == h)
            return;
    if (pl->n < PROFILE_SEEN_MAX)
        pl->seen[pl->n++] = h;
    attn_log_env(pl->log, "%s", msg);
}

static void report_profile(void *user, const char *msg)
{
    profile_warn(user, "platform profile: %s", msg);
}

/* The kernel variants of rt as profile p and the options say: each
 * variant's tuning (a rejected one keeps the defaults, with a warning),
 * the path, the forced variant and AUTO's order. */
static void apply_kernels(attn_cl_runtime *rt, const attn_profile *p,
                          const attn_options *o, int forced, profile_log *pl)
{
    attn_cl_choice ch;
    for (int v = 0; v < attn_cl_n_variants; v++) {
        attn_cl_tuning t;
        attn_err e = {{0}};
        if (attn_profile_tuning(p, v, &t) != ATTN_OK ||
            attn_cl_set_tuning(rt, v, &t, &e) != ATTN_OK) {
            attn_cl_tuning_check(attn_cl_variants[v], &t, &e);
            profile_warn(pl,
                         "platform profile for %s: %s tuning rejected (%s), "
                         "using the defaults",
                         rt->info.name, attn_cl_variants[v]->name, e.msg);
            attn_cl_tuning_default(attn_cl_variants[v], &t);
            if (p->build_options_set)
                snprintf(t.options, sizeof t.options, "%s", p->build_options);
            attn_cl_set_tuning(rt, v, &t, NULL);
        }
    }
    memset(&ch, 0, sizeof ch);
    ch.path = o->path != ATTN_PATH_AUTO ? o->path
              : p->path >= 0            ? (attn_path)p->path
                                        : ATTN_PATH_AUTO;
    /* a name forces its own direction: forward or backward */
    ch.forced = forced >= 0 ? forced : -1;
    ch.bwd_forced = forced <= -2 ? -2 - forced : -1;
    ch.n_order = attn_profile_order(p, ch.order, ATTN_CL_MAX_VARIANTS);
    for (int v = 0; ch.n_order == 0 && v < attn_cl_n_variants; v++)
        ch.order[v] = v;
    if (ch.n_order == 0)
        ch.n_order = attn_cl_n_variants;
    attn_cl_set_choice(rt, &ch);
}

/* Applies a device's profile to its new runtime: the kernels, queues (when
 * options.queues is 0), staging and the weight for splitting work. */
static attn_status apply_profile(attn_cl_runtime *rt, const attn_profile *p,
                                 const attn_options *o, int forced,
                                 profile_log *pl, double *weight, attn_err *err)
{
    int queues = o->queues > 0 ? o->queues : p->queues > 0 ? p->queues : 1;
    attn_status s;
    if (queues > ATTN_CL_MAX_QUEUES)
        queues = ATTN_CL_MAX_QUEUES;
    apply_kernels(rt, p, o, forced, pl);
    if ((s = attn_cl_runtime_set_queues(rt, queues, err)))
        return s;
    rt->pinned = p->staging == 1;
    *weight = p->weight > 0 ? (double)p->weight : device_weight(&rt->info);
    attn_log(pl->log, ATTN_LOG_DEBUG, "%s: profile %s, %d queue(s)%s",
             rt->info.name, p->sources[0] ? p->sources : "(none)", queues,
             rt->pinned ? ", pinned staging" : "");
    return ATTN_OK;
}

/* The index of kernel name (NULL: -1), a backward variant's as -2 - its
 * index; ATTN_ERR_INVALID_ARGUMENT when it names no variant. */
static attn_status forced_index(const char *kernel, int *out, attn_err *err)
{
    char names[256];
    size_t used;
    *out = -1;
    if (!kernel || !*kernel)
        return ATTN_OK;
    if ((*out = attn_cl_variant_find(kernel)) >= 0)
        return ATTN_OK;
    if ((*out = attn_cl_bwd_find(kernel)) >= 0) {
        *out = -2 - *out;
        return ATTN_OK;
    }
    attn_cl_variant_names(names, sizeof names);
    used = strlen(names);
    for (int i = 0; i < attn_cl_n_bwd_variants && used < sizeof names; i++) {
        int w = snprintf(names + used, sizeof names - used, ", %s",
                         attn_cl_bwd_variants[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                     "kernel \"%.32s\" is not a kernel variant of the OpenCL "
                     "backend (%s)",
                     kernel, names);
}

static void parts_free(attn_cl_runtime *rt)
{
    attn_cl_variants_free(rt);
    attn_cl_pool_destroy(rt);
}

/* What the backend keeps on a new runtime: the variants' tuning, choice
 * and programs, and the buffer pool. */
static attn_status add_parts(attn_cl_runtime *rt, attn_err *err)
{
    attn_status s = attn_cl_variants_init(rt, err);
    if (s == ATTN_OK && (s = attn_cl_pool_create(rt, err)))
        attn_cl_variants_free(rt);
    if (s == ATTN_OK)
        rt->parts_free = parts_free;
    return s;
}

/* Runtimes on the selected devices, each with its profile and queues. */
static attn_status open_devices(const attn_cl_device *devs,
                                const attn_selection *sel,
                                const attn_options *o, const char *kernel,
                                profile_log *pl, attn_backend **out,
                                attn_err *err)
{
    attn_cl_runtime *rt[ATTN_CL_MAX_DEVICES];
    double weight[ATTN_CL_MAX_DEVICES];
    attn_profile *p = malloc(sizeof *p);
    int n = 0, forced = -1;
    attn_status s = ATTN_OK;
    if (!p)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    if (o->queues > ATTN_CL_MAX_QUEUES) {
        free(p);
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.queues %d exceeds %d", o->queues,
                         ATTN_CL_MAX_QUEUES);
    }
    if ((s = forced_index(kernel, &forced, err))) {
        free(p);
        return s;
    }
    for (size_t i = 0; i < sel->count && n < ATTN_CL_MAX_DEVICES; i++) {
        const attn_cl_device *dev = &devs[sel->index[i]];
        if ((s = attn_profile_resolve(&dev->info, NULL, p, report_profile,
                                      pl)) ||
            (s = attn_cl_runtime_create(dev, o->cache_dir, pl->log, &rt[n],
                                        err)))
            break;
        n++;
        if ((s = add_parts(rt[n - 1], err)))
            break;
        if ((s = apply_profile(rt[n - 1], p, o, forced, pl, &weight[n - 1],
                               err)))
            break;
    }
    if (s == ATTN_OK)
        s = attn_backend_cl_wrap_n(rt, n, out, err);
    if (s == ATTN_OK) {
        cl_backend *cb = (*out)->impl;
        for (int i = 0; i < n; i++)
            cb->weight[i] = weight[i];
    }
    if (s)
        while (n > 0)
            attn_cl_runtime_destroy(rt[--n]);
    free(p);
    return s;
}

/* The caller's device is one of the caller's context's devices (else
 * ATTN_ERR_INVALID_ARGUMENT, as attn_cl.h says, not the queue's failure
 * later). */
static attn_status device_in_context(cl_context context, cl_device_id device,
                                     const char *name, attn_err *err)
{
    cl_uint n = 0;
    cl_device_id *devs;
    int found = 0;
    cl_int rc =
        clGetContextInfo(context, CL_CONTEXT_NUM_DEVICES, sizeof n, &n, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the cl_context cannot be queried: %s (%d)",
                         attn_cl_error_name(rc), (int)rc);
    if (!(devs = malloc((n ? n : 1) * sizeof *devs)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    rc = clGetContextInfo(context, CL_CONTEXT_DEVICES, n * sizeof *devs, devs,
                          NULL);
    for (cl_uint i = 0; rc == CL_SUCCESS && i < n; i++)
        found |= devs[i] == device;
    free(devs);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "the cl_context's devices cannot be queried: %s (%d)",
                         attn_cl_error_name(rc), (int)rc);
    if (!found)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device %s is not a device of the cl_context", name);
    return ATTN_OK;
}

_Static_assert(ATTN_CL_MAX_QUEUES == 8,
               "options.queues' range, 0..8 (attn.h, src/api/context.c), is "
               "the most queues a device takes");

attn_status attn_backend_cl_from_objects(cl_context context,
                                         cl_device_id device,
                                         const attn_options *o,
                                         const char *kernel,
                                         const attn_logger *log,
                                         attn_backend **out, attn_err *err)
{
    attn_cl_runtime *rt = NULL;
    attn_cl_device probe;
    attn_profile *p;
    profile_log pl = {log, 0, {0}};
    double weight = 1.0;
    int forced = -1;
    attn_status s;
    if ((s = attn_cl_probe(device, &probe, err)))
        return s;
    if (!probe.info.usable)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device %s is not usable: %s", probe.info.name,
                         probe.info.reason);
    if ((s = device_in_context(context, device, probe.info.name, err)))
        return s;
    if ((s = forced_index(kernel, &forced, err)))
        return s;
    if (!(p = malloc(sizeof *p)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
    if ((s = attn_profile_resolve(&probe.info, NULL, p, report_profile, &pl)) ==
            ATTN_OK &&
        (s = attn_cl_runtime_create_from(context, device, o->cache_dir, log,
                                         &rt, err)) == ATTN_OK &&
        (s = add_parts(rt, err)) == ATTN_OK) {
        rt->info = probe.info;
        s = apply_profile(rt, p, o, forced, &pl, &weight, err);
    }
    if (s == ATTN_OK)
        s = attn_backend_cl_wrap_n(&rt, 1, out, err);
    if (s)
        attn_cl_runtime_destroy(rt);
    free(p);
    return s;
}

/* Whether "auto" should prefer the native backend to the best usable
 * OpenCL CPU device: its profile says, else ATTN_CL_NATIVE_BEATS_CPU. */
static int native_beats_cpu(const attn_device_info *devs, size_t n,
                            int native_fast, profile_log *pl)
{
    const attn_device_info *best = NULL;
    attn_profile *p;
    int beats = ATTN_CL_NATIVE_BEATS_CPU;
    for (size_t i = 0; i < n; i++)
        if (devs[i].usable && devs[i].kind == ATTN_DEVICE_CPU_OPENCL &&
            (!best || devs[i].rank > best->rank))
            best = &devs[i];
    if (best && (p = malloc(sizeof *p))) {
        if (attn_profile_resolve(best, NULL, p, pl ? report_profile : NULL,
                                 pl) == ATTN_OK &&
            p->native_beats_opencl >= 0)
            beats = p->native_beats_opencl;
        free(p);
    }
    return beats && native_fast;
}

int attn_opencl_native_beats_cpu(const attn_device_info *devs, size_t n,
                                 int native_fast)
{
    return native_beats_cpu(devs, n, native_fast, NULL);
}

attn_status attn_opencl_check_spec(const char *spec, attn_err *err)
{
    attn_selection sel;
    /* With no device to match, selection fails only on the spec's form
     * ("native" in a list) with ATTN_ERR_INVALID_ARGUMENT; every other
     * answer is about matching. */
    attn_status s = attn_cl_select(NULL, 0, spec, 0, &sel, err);
    return s == ATTN_ERR_INVALID_ARGUMENT ? s : ATTN_OK;
}

attn_status attn_opencl_open(const char *spec, const attn_options *o,
                             const char *kernel, int native_fast,
                             const attn_logger *log, attn_backend **out,
                             char *why, size_t why_cap, attn_err *err)
{
    attn_cl_device *devs = NULL;
    attn_device_info *infos = NULL;
    attn_selection sel;
    profile_log pl = {log, 0, {0}};
    size_t n = 0;
    attn_status s;

    *out = NULL;
    if (attn_cl_spec_native(spec)) {
        /* The native backend alone: the OpenCL driver is not loaded. */
        if ((s = attn_cl_select(NULL, 0, spec, 0, &sel, err)) == ATTN_OK)
            snprintf(why, why_cap, "%s", sel.why);
        return s;
    }
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
    s = attn_cl_select(infos, n, spec,
                       native_beats_cpu(infos, n, native_fast, &pl), &sel, err);
    if (s == ATTN_OK) {
        snprintf(why, why_cap, "%s", sel.why);
        if (!sel.native)
            s = open_devices(devs, &sel, o, kernel, &pl, out, err);
    }
    free(infos);
    free(devs);
    return s;
}

attn_status attn_opencl_set_mem_limits(attn_backend *b, int device,
                                       uint64_t global_mem, uint64_t max_alloc)
{
    cl_backend *cb;
    if (!b || b->ops != &cl_ops)
        return ATTN_ERR_INVALID_ARGUMENT;
    cb = b->impl;
    if (device < 0 || device >= cb->n_rt)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (global_mem)
        cb->rt[device]->info.global_mem_bytes = global_mem;
    if (max_alloc)
        cb->rt[device]->info.max_alloc_bytes = max_alloc;
    /* Plans made before knew other limits. */
    pthread_mutex_lock(&cb->rt[device]->lock);
    cb->rt[device]->epoch++;
    pthread_mutex_unlock(&cb->rt[device]->lock);
    return ATTN_OK;
}

size_t attn_opencl_trim(attn_backend *b)
{
    size_t n = 0;
    if (!b || b->ops != &cl_ops)
        return 0;
    for (int i = 0; i < ((cl_backend *)b->impl)->n_rt; i++)
        n += attn_cl_pool_trim(((cl_backend *)b->impl)->rt[i]);
    return n;
}

void attn_opencl_pool_counts(attn_backend *b, unsigned long *created,
                             unsigned long *reused)
{
    *created = *reused = 0;
    if (!b || b->ops != &cl_ops)
        return;
    for (int i = 0; i < ((cl_backend *)b->impl)->n_rt; i++) {
        attn_cl_pool_stats st;
        attn_cl_pool_stats_get(((cl_backend *)b->impl)->rt[i], &st);
        *created += st.created;
        *reused += st.reused;
    }
}
