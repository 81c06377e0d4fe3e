/*
 * The OpenCL backend behind the backend interface of attn_impl.h: device
 * selection for a new context, and attn_sdpa on host pointers.  A call is
 * cut into groups of (batch, kv head) units (src/sched) spread over every
 * queue of every selected device; each group uploads its slices and runs
 * the kernels on its own in-order queue, so the uploads of one group
 * overlap the kernels of another; the slices of o come back once every
 * kernel of the call succeeded (see "attn_sdpa on host pointers" below for
 * what happens when a device fails).  Devices never share buffers: each
 * has its own, filled from the host.  The embedding API (cl_api.c) drives
 * the launch code on the caller's buffers and queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/backend_cl.h"
#include "opencl/launch_common.h"
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

/* ---- attn_sdpa on host pointers ------------------------------------------
 * A call runs in rounds.  Each round enqueues, for every group not yet
 * computed, its uploads and kernels on its queue, and waits for them.
 * Only when every upload and kernel succeeded are the reads of o and lse
 * enqueued, each device's held back by a gate (a user event) until all
 * are enqueued: o and lse are written only by a call that succeeds, and a
 * failed allocation, upload, launch or kernel, or a read that cannot be
 * enqueued, leaves them untouched.
 *
 * A device that fails (its buffers do not fit or cannot be allocated, an
 * upload, launch or read fails, a kernel fails) is dropped for the rest of
 * the call, the failure is logged, and all its groups move to the queues of
 * the devices left, where the next round computes them; groups that other
 * devices computed are only read again.  When no device is left the call
 * fails with the first device's failure (the API then falls back to the
 * native backend when allowed).  Only a read that fails while it runs can
 * leave part of o written; that device's groups are then redone and read
 * again elsewhere.
 *
 * No command is ever enqueued behind an event that may have failed (some
 * drivers, PoCL 3.1 among them, never run nor fail such a command): the
 * kernels follow the uploads through the in-order queue, and the reads
 * are enqueued once the kernels are known to have succeeded.  The common
 * path thus costs one wait between the kernels and the reads, which also
 * keeps a group's reads from overlapping another group's kernels. */

/* Per-device state of one call. */
typedef struct dev_call {
    attn_cl_tensors t; /* whole tensors; each group fills its slices */
    int used;          /* buffers created (possibly in part) */
    int failed;        /* dropped for the rest of the call */
    cl_event gate;     /* this round's read gate, or NULL */
} dev_call;

/* One group and where it stands. */
typedef struct grp {
    attn_group g;     /* g.slot: the queue that runs it */
    uint64_t scratch; /* device bytes of its input copies and scratch */
    uint64_t largest; /* the largest of those buffers */
    cl_event w[3];    /* its uploads of q, k, v, once enqueued */
    cl_event kev;     /* its last kernel, once enqueued */
    cl_event rd[2];   /* this round's reads of o and lse */
} grp;

typedef struct sdpa_call {
    const cl_backend *cb;
    const void *q, *k, *v;
    void *o;
    float *lse;
    attn_sdpa_bytes sz;
    size_t elem;
    int n_slots;
    attn_cl_runtime *slot_rt[ATTN_SCHED_MAX_SLOTS];
    cl_command_queue slot_q[ATTN_SCHED_MAX_SLOTS];
    int slot_dev[ATTN_SCHED_MAX_SLOTS];
    grp *g;
    size_t n;
    dev_call dev[ATTN_CL_MAX_DEVICES];
    int n_failed;       /* devices dropped so far */
    attn_status first;  /* the first device failure ... */
    attn_err first_err; /* ... and its sentence */
    int next_slot;      /* where the next moved group goes */
} sdpa_call;

static attn_status alloc_bufs(attn_cl_runtime *rt, const attn_sdpa_bytes *sz,
                              int lse, attn_cl_tensors *t, attn_err *err)
{
    cl_int rc = CL_SUCCESS;
    const size_t bytes[5] = {sz->q, sz->k, sz->v, sz->o, sz->lse};
    cl_mem *mem[5] = {&t->q, &t->k, &t->v, &t->o, &t->lse};
    for (int i = 0; i < (lse ? 5 : 4) && rc == CL_SUCCESS; i++)
        *mem[i] = ATTN_CL(clCreateBuffer)(
            rt->context, i < 3 ? CL_MEM_READ_ONLY : CL_MEM_WRITE_ONLY, bytes[i],
            NULL, &rc);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "cannot allocate the tensors on %s: %s", rt->info.name,
                         attn_cl_error_name(rc));
    return ATTN_OK;
}

static void free_bufs(attn_cl_tensors *t)
{
    cl_mem mem[5] = {t->q, t->k, t->v, t->o, t->lse};
    for (int i = 0; i < 5; i++)
        if (mem[i])
            clReleaseMemObject(mem[i]);
}

static void release_event(cl_event *ev)
{
    if (*ev)
        clReleaseEvent(*ev);
    *ev = NULL;
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

/* The device memory one group needs besides the tensors: its input copies
 * and the scratch of the path launch_path picks first. */
static void group_scratch(const cl_backend *cb, attn_cl_runtime *rt, grp *g)
{
    const attn_sdpa_desc *d = &g->g.d;
    uint64_t largest = 0, in = attn_cl_input_bytes(d, &largest), path = 0;
    if (cb->path == ATTN_PATH_AUTO && d->seq_q <= cb->decode_max_seq_q &&
        d->seq_q <= ATTN_CL_DECODE_MAX_Q)
        path = attn_cl_decode_scratch(rt, d);
    else if (!(cb->path == ATTN_PATH_FUSED ||
               (cb->path == ATTN_PATH_AUTO && d->seq_kv >= cb->fused_min_seq)))
        path = attn_cl_unfused_scratch(rt, d);
    g->scratch = attn_cl_add_bytes(in, path);
    g->largest = path > largest ? path : largest;
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

/* Statuses after which another device may redo a device's work. */
static int device_fault(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_OUT_OF_MEMORY ||
           s == ATTN_ERR_BUILD_FAILED;
}

static int group_dev(const sdpa_call *c, const grp *g)
{
    return c->slot_dev[g->g.slot];
}

/* Drops device i for the rest of the call; the first failure is kept. */
static void fail_device(sdpa_call *c, int i, attn_status s, const attn_err *e)
{
    const attn_cl_runtime *rt = c->cb->rt[i];
    if (c->dev[i].failed)
        return;
    c->dev[i].failed = 1;
    if (c->n_failed++ == 0) {
        c->first = s;
        c->first_err = *e;
    }
    attn_log(rt->log, ATTN_LOG_WARN, "OpenCL device %d:%d (%s) failed: %s; %s",
             rt->info.platform_index, rt->info.device_index, rt->info.name,
             e->msg,
             c->n_failed < c->cb->n_rt ? "its work moves to the other devices"
                                       : "no device is left for the call");
}

/* Creates device i's tensors when it has groups to compute, after checking
 * that they and the groups' scratch fit.  Drops the device on failure. */
static void prepare_device(sdpa_call *c, int i)
{
    attn_cl_runtime *rt = c->cb->rt[i];
    const attn_sdpa_bytes *sz = &c->sz;
    uint64_t total = 0, largest = 0;
    attn_err e = {{0}};
    attn_status s;
    int pending = 0;
    const uint64_t t[5] = {sz->q, sz->k, sz->v, sz->o, c->lse ? sz->lse : 0};
    for (size_t j = 0; j < c->n; j++)
        if (group_dev(c, &c->g[j]) == i) {
            pending |= c->g[j].kev == NULL;
            total = attn_cl_add_bytes(total, c->g[j].scratch);
            largest = c->g[j].largest > largest ? c->g[j].largest : largest;
        }
    if (!pending)
        return;
    for (int j = 0; j < 5; j++) {
        total = attn_cl_add_bytes(total, t[j]);
        largest = t[j] > largest ? t[j] : largest;
    }
    s = attn_cl_check_fit(rt, "the call", total, largest, &e);
    if (s == ATTN_OK && !c->dev[i].used) {
        c->dev[i].used = 1;
        s = alloc_bufs(rt, sz, c->lse != NULL, &c->dev[i].t, &e);
    }
    if (s)
        fail_device(c, i, s, &e);
}

/* Enqueues group g's uploads (events in g->w) and kernels (the last one's
 * event in g->kev); the kernels follow the uploads on the in-order queue. */
static attn_status compute_group(sdpa_call *c, grp *g, attn_err *err)
{
    const attn_group *a = &g->g;
    const int sl = a->slot;
    const size_t e = c->elem;
    attn_cl_tensors t = c->dev[c->slot_dev[sl]].t;
    cl_command_queue q = c->slot_q[sl];
    const cl_mem dst[3] = {t.q, t.k, t.v};
    const size_t off[3] = {a->q_off, a->k_off, a->v_off};
    const size_t len[3] = {a->q_len, a->k_len, a->v_len};
    const char *const src[3] = {c->q, c->k, c->v};
    attn_status s;
    for (int i = 0; i < 3; i++) {
        cl_int rc = ATTN_CL(clEnqueueWriteBuffer)(
            q, dst[i], CL_FALSE, off[i] * e, len[i] * e, src[i] + off[i] * e, 0,
            NULL, &g->w[i]);
        if (rc != CL_SUCCESS) {
            g->w[i] = NULL;
            return attn_fail(err, attn_cl_status(rc),
                             "cannot copy the inputs to %s: %s",
                             c->slot_rt[sl]->info.name, attn_cl_error_name(rc));
        }
    }
    t.q_off = a->q_off;
    t.k_off = a->k_off;
    t.v_off = a->v_off;
    t.o_off = a->o_off;
    t.lse_off = a->lse_off;
    /* The kernels write the call's device buffers only (launch_common.h). */
    attn_cl_launch_own_buffers(1);
    s = launch_path(c->cb, c->slot_rt[sl], &a->d, &t, q, 0, NULL, &g->kev, err);
    attn_cl_launch_own_buffers(0);
    return s;
}

/* Enqueues a group's reads behind its device's gate (its kernels have
 * completed). */
static attn_status read_group(sdpa_call *c, grp *g, attn_err *err)
{
    const attn_group *a = &g->g;
    const int sl = a->slot;
    const dev_call *dv = &c->dev[c->slot_dev[sl]];
    cl_int rc = ATTN_CL(clEnqueueReadBuffer)(
        c->slot_q[sl], dv->t.o, CL_FALSE, a->o_off * c->elem,
        a->o_len * c->elem, (char *)c->o + a->o_off * c->elem, 1, &dv->gate,
        &g->rd[0]);
    if (rc == CL_SUCCESS && c->lse)
        rc = ATTN_CL(clEnqueueReadBuffer)(
            c->slot_q[sl], dv->t.lse, CL_FALSE, a->lse_off * sizeof(float),
            a->lse_len * sizeof(float), c->lse + a->lse_off, 1, &dv->gate,
            &g->rd[1]);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "cannot read the output from %s: %s",
                         c->slot_rt[sl]->info.name, attn_cl_error_name(rc));
    return ATTN_OK;
}

/* Waits for ev; its failure as a status and a sentence. */
static attn_status wait_event(cl_event ev, const attn_cl_runtime *rt,
                              const char *what, attn_err *err)
{
    cl_int rc, st = CL_COMPLETE;
    if (!ev)
        return ATTN_OK;
    ATTN_FAULT_DELIVER(1);
    rc = clWaitForEvents(1, &ev);
    if (rc == CL_SUCCESS)
        rc = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st,
                            &st, NULL);
    if (rc == CL_SUCCESS && st < 0)
        rc = st;
    if (rc == CL_SUCCESS)
        return ATTN_OK;
    return attn_fail(err, attn_cl_status(rc), "%s on %s failed: %s (%d)", what,
                     rt->info.name, attn_cl_error_name(rc), (int)rc);
}

/* Gives the groups of dropped devices to the queues of the devices left
 * (round robin); returns 0 when no device is left. */
static int move_groups(sdpa_call *c)
{
    for (size_t j = 0; j < c->n; j++) {
        grp *g = &c->g[j];
        if (!c->dev[group_dev(c, g)].failed)
            continue;
        for (int i = 0; i < 3; i++)
            release_event(&g->w[i]);
        release_event(&g->kev);
        for (int tries = 0; tries < c->n_slots; tries++) {
            const int sl = c->next_slot++ % c->n_slots;
            if (!c->dev[c->slot_dev[sl]].failed) {
                g->g.slot = sl;
                break;
            }
        }
        if (c->dev[group_dev(c, g)].failed)
            return 0;
    }
    return c->n_failed < c->cb->n_rt;
}

/* Closes this round's gates: opened (status CL_COMPLETE) or terminated;
 * returns the device whose gate would not open, or -1. */
static int close_gates(sdpa_call *c, int open)
{
    int bad = -1;
    for (int i = 0; i < c->cb->n_rt; i++) {
        cl_event gate = c->dev[i].gate;
        if (!gate)
            continue;
        if (open && clSetUserEventStatus(gate, CL_COMPLETE) != CL_SUCCESS) {
            bad = bad < 0 ? i : bad;
            clSetUserEventStatus(gate, -1);
        } else if (!open) {
            clSetUserEventStatus(gate, -1);
        }
        release_event(&c->dev[i].gate);
    }
    return bad;
}

/* Finishes every queue of the call. */
static void finish_all(sdpa_call *c)
{
    ATTN_FAULT_DELIVER(1);
    for (int sl = 0; sl < c->n_slots; sl++)
        clFinish(c->slot_q[sl]);
}

/* One round (see above): ATTN_OK with *again = 0 when the call is
 * complete, *again = 1 when a device failed and its groups moved; an error
 * ends the call. */
static attn_status round_run(sdpa_call *c, int *again, attn_err *err)
{
    const int failed0 = c->n_failed;
    attn_err e = {{0}};
    attn_status s;
    *again = 0;
    for (int i = 0; i < c->cb->n_rt; i++)
        if (!c->dev[i].failed)
            prepare_device(c, i);
    /* Uploads and kernels of the groups not yet computed... */
    for (size_t j = 0; j < c->n; j++) {
        grp *g = &c->g[j];
        const int dv = group_dev(c, g);
        if (g->kev || c->dev[dv].failed)
            continue;
        if ((s = compute_group(c, g, &e))) {
            if (!device_fault(s))
                return attn_fail(err, s, "%s", e.msg);
            fail_device(c, dv, s, &e);
        }
    }
    /* ... and their outcome. */
    for (size_t j = 0; j < c->n; j++) {
        grp *g = &c->g[j];
        const int dv = group_dev(c, g);
        const attn_cl_runtime *rt = c->cb->rt[dv];
        for (int i = 0; i < 3; i++) {
            if (!c->dev[dv].failed &&
                (s = wait_event(g->w[i], rt, "an upload", &e)))
                fail_device(c, dv, s, &e);
            release_event(&g->w[i]);
        }
        if (!c->dev[dv].failed && (s = wait_event(g->kev, rt, "a kernel", &e)))
            fail_device(c, dv, s, &e);
    }
    /* Every kernel succeeded: the reads, behind the gates. */
    for (int i = 0; i < c->cb->n_rt && c->n_failed == failed0; i++) {
        cl_int rc;
        if (c->dev[i].failed || !c->dev[i].used)
            continue;
        c->dev[i].gate = clCreateUserEvent(c->cb->rt[i]->context, &rc);
        if (rc != CL_SUCCESS) {
            c->dev[i].gate = NULL;
            attn_fail(&e, attn_cl_status(rc), "clCreateUserEvent failed: %s",
                      attn_cl_error_name(rc));
            fail_device(c, i, attn_cl_status(rc), &e);
        }
    }
    for (size_t j = 0; j < c->n && c->n_failed == failed0; j++) {
        grp *g = &c->g[j];
        if ((s = read_group(c, g, &e)))
            fail_device(c, group_dev(c, g), s, &e);
    }
    if (c->n_failed == failed0) {
        int bad = close_gates(c, 1);
        if (bad >= 0) {
            attn_fail(&e, ATTN_ERR_DEVICE, "cannot open the read gate");
            fail_device(c, bad, ATTN_ERR_DEVICE, &e);
        }
        for (size_t j = 0; j < c->n; j++) {
            grp *g = &c->g[j];
            const int dv = group_dev(c, g);
            for (int r = 0; r < 2; r++)
                if ((s = wait_event(g->rd[r], c->cb->rt[dv], "a read", &e)))
                    fail_device(c, dv, s, &e);
        }
    } else {
        /* Nothing was read: the reads enqueued so far never run. */
        close_gates(c, 0);
    }
    for (size_t j = 0; j < c->n; j++) {
        release_event(&c->g[j].rd[0]);
        release_event(&c->g[j].rd[1]);
    }
    if (c->n_failed == failed0)
        return ATTN_OK;
    /* The dropped devices' commands end before their groups move. */
    finish_all(c);
    if (!move_groups(c)) {
        if (c->cb->n_rt > 1)
            return attn_fail(err, c->first,
                             "%.400s (and no other device could take the "
                             "work)",
                             c->first_err.msg);
        return attn_fail(err, c->first, "%s", c->first_err.msg);
    }
    *again = 1;
    return ATTN_OK;
}

static attn_status cl_sdpa(attn_backend *b, const attn_sdpa_desc *d,
                           const void *q, const void *k, const void *v, void *o,
                           float *lse, attn_err *err)
{
    const cl_backend *cb = b->impl;
    sdpa_call *c = calloc(1, sizeof *c);
    attn_group *groups = NULL;
    size_t max_groups;
    double weight[ATTN_SCHED_MAX_SLOTS];
    attn_status s;
    int again = 1;

    if (!c)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate %zu bytes for the call's state",
                         sizeof *c);
    c->cb = cb;
    c->q = q;
    c->k = k;
    c->v = v;
    c->o = o;
    c->lse = lse;
    c->elem = d->dtype == ATTN_F16 ? 2 : 4;
    if ((s = attn_validate_sdpa_desc(d, &c->sz, err)))
        goto done;
    for (int i = 0; i < cb->n_rt; i++)
        for (int j = 0;
             j < cb->rt[i]->n_queues && c->n_slots < ATTN_SCHED_MAX_SLOTS;
             j++, c->n_slots++) {
            c->slot_rt[c->n_slots] = cb->rt[i];
            c->slot_q[c->n_slots] = cb->rt[i]->queues[j];
            c->slot_dev[c->n_slots] = i;
            weight[c->n_slots] = cb->weight[i] / cb->rt[i]->n_queues;
        }
    max_groups = attn_sched_max_groups(d, c->n_slots);
    groups = calloc(max_groups, sizeof *groups);
    c->g = calloc(max_groups, sizeof *c->g);
    if (!groups || !c->g) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "cannot allocate %zu groups",
                      max_groups);
        goto done;
    }
    if ((s = attn_sched_split(d, c->n_slots, weight, groups, max_groups, &c->n,
                              err)))
        goto done;
    for (size_t j = 0; j < c->n; j++) {
        c->g[j].g = groups[j];
        group_scratch(cb, c->slot_rt[groups[j].slot], &c->g[j]);
    }
    while (again && (s = round_run(c, &again, err)) == ATTN_OK)
        ;
done:
    /* Nothing may still read the caller's memory or write o: after a
     * failure every queue finishes first. */
    if (c->n_failed || s)
        finish_all(c);
    for (size_t j = 0; c->g && j < c->n; j++) {
        for (int i = 0; i < 3; i++)
            release_event(&c->g[j].w[i]);
        release_event(&c->g[j].kev);
    }
    for (int i = 0; i < cb->n_rt; i++)
        free_bufs(&c->dev[i].t);
    if (s == ATTN_OK && c->n_failed)
        attn_log(cb->rt[0]->log, ATTN_LOG_INFO,
                 "the call completed on the devices left after %d failed",
                 c->n_failed);
    free(c->g);
    free(c);
    free(groups);
    return s;
}

#ifdef ATTN_HAVE_CLBLAST
/* The layer runs on the primary device; when a device fails, on the next
 * one (the layer writes y only once it is complete). */
static attn_status cl_mha(attn_backend *b, const attn_mha_call *c,
                          attn_err *err)
{
    cl_backend *cb = b->impl;
    attn_status s = ATTN_OK, first = ATTN_OK;
    attn_err e, first_err = {{0}};
    for (int i = 0; i < cb->n_rt; i++) {
        attn_cl_runtime *rt = cb->rt[i];
        memset(&e, 0, sizeof e);
        if ((s = attn_cl_mha(rt, c, &e)) == ATTN_OK)
            return ATTN_OK;
        if (first == ATTN_OK) {
            first = s;
            first_err = e;
        }
        if (!device_fault(s))
            break;
        attn_log(rt->log, ATTN_LOG_WARN,
                 "OpenCL device %d:%d (%s) failed: %s; %s",
                 rt->info.platform_index, rt->info.device_index, rt->info.name,
                 e.msg,
                 i + 1 < cb->n_rt ? "the layer moves to the next device"
                                  : "no device is left for the layer");
    }
    return attn_fail(err, first, "%s", first_err.msg);
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
    return beats && attn_native_beats_opencl_cpu();
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

#ifdef ATTN_FAULT_INJECTION
attn_status attn_fault_set_mem_limits(attn_context *ctx, int device,
                                      uint64_t global_mem, uint64_t max_alloc)
{
    cl_backend *cb;
    if (!ctx || !ctx->backend || ctx->backend->ops != &cl_ops)
        return ATTN_ERR_INVALID_ARGUMENT;
    cb = ctx->backend->impl;
    if (device < 0 || device >= cb->n_rt)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (global_mem)
        cb->rt[device]->info.global_mem_bytes = global_mem;
    if (max_alloc)
        cb->rt[device]->info.max_alloc_bytes = max_alloc;
    return ATTN_OK;
}
#endif
