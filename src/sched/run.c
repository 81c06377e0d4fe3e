/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a call (sched.h).  On a device backend a call runs in rounds.
 * Each round enqueues, for every group not yet computed, its uploads and
 * kernels on its queue, and waits for them.  Only when every upload and
 * kernel succeeded are the reads of o and lse enqueued, each device's held
 * back by a gate until all are enqueued: o and lse are written only by a
 * call that succeeds, and a failed allocation, upload, launch or kernel,
 * or a read that cannot be enqueued, leaves them untouched.
 *
 * A device that fails (its buffers do not fit or cannot be allocated, an
 * upload, launch or read fails, a kernel fails, its variant cannot be
 * built) is dropped for the rest of the call, the failure is logged, and
 * all its groups move to the queues of the devices left (prepared anew
 * for them), where the next round computes them; groups that other
 * devices computed are only read again.  When no device is left the call
 * fails with the first device's failure, and the native backend redoes it
 * when fallback is allowed.  Only a read that fails while it runs can
 * leave part of o written; that device's groups are then redone and read
 * again elsewhere.
 *
 * No command is ever enqueued behind an event that may have failed (some
 * drivers, PoCL 3.1 among them, never run nor fail such a command): the
 * kernels follow the uploads through the in-order queue, and the reads
 * are enqueued once the kernels are known to have succeeded.  The common
 * path thus costs one wait between the kernels and the reads, which also
 * keeps a group's reads from overlapping another group's kernels.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sched.h"

/* Per-device state of one call. */
typedef struct dev_call {
    attn_dev_call *dc; /* the backend's, once opened */
    int opened;        /* call_open was tried */
    int failed;        /* dropped for the rest of the call */
    attn_event *gate;  /* this round's read gate, or NULL */
} dev_call;

/* One group and where it stands. */
typedef struct grp {
    attn_group g;     /* g.slot: the queue that runs it */
    attn_prepared p;  /* its variant on that queue's device */
    attn_status prep; /* ATTN_OK, or why p could not be made */
    char why[ATTN_MSG_MAX / 2];
    attn_event *w[ATTN_EXEC_UPLOADS]; /* its uploads, once enqueued */
    attn_event *kev;                  /* its last kernel, once enqueued */
    attn_event *rd[2];                /* this round's reads of o and lse */
} grp;

typedef struct run {
    attn_backend *b;
    const attn_exec_ops *x;
    const attn_sdpa_call *c;
    const attn_logger *log;
    attn_sdpa_bytes sz;
    int n_dev, n_slots;
    int slot_dev[ATTN_SCHED_MAX_SLOTS], slot_queue[ATTN_SCHED_MAX_SLOTS];
    grp *g;
    size_t n;
    dev_call dev[ATTN_SCHED_MAX_DEVICES];
    int n_failed;       /* devices dropped so far */
    attn_status first;  /* the first device failure ... */
    attn_err first_err; /* ... and its sentence */
    int next_slot;      /* where the next moved group goes */
} run;

static void release(run *r, attn_event **ev)
{
    if (*ev)
        r->x->event_release(*ev);
    *ev = NULL;
}

/* Statuses after which another device may redo a device's work. */
static int device_fault(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_OUT_OF_MEMORY ||
           s == ATTN_ERR_BUILD_FAILED;
}

/* Adds with saturation at UINT64_MAX. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int group_dev(const run *r, const grp *g)
{
    return r->slot_dev[g->g.slot];
}

/* Drops device i for the rest of the call; the first failure is kept. */
static void fail_device(run *r, int i, attn_status s, const attn_err *e)
{
    const attn_device_info *info = r->x->info(r->b, i);
    if (r->dev[i].failed)
        return;
    r->dev[i].failed = 1;
    if (r->n_failed++ == 0) {
        r->first = s;
        r->first_err = *e;
    }
    attn_log(r->log, ATTN_LOG_WARN, "OpenCL device %d:%d (%s) failed: %s; %s",
             info->platform_index, info->device_index, info->name, e->msg,
             r->n_failed < r->n_dev ? "its work moves to the other devices"
                                    : "no device is left for the call");
}

/* Opens the call on device i when it has groups to compute, after
 * checking that they fit.  Drops the device on failure. */
static void prepare_device(run *r, int i)
{
    const attn_sdpa_bytes *sz = &r->sz;
    uint64_t total = 0, largest = 0;
    attn_err e = {{0}};
    attn_status s = ATTN_OK;
    int pending = 0;
    const uint64_t t[5] = {sz->q, sz->k, sz->v, sz->o, r->c->lse ? sz->lse : 0};
    for (size_t j = 0; j < r->n && s == ATTN_OK; j++) {
        const grp *g = &r->g[j];
        if (group_dev(r, g) != i || g->kev)
            continue;
        pending = 1;
        /* A group whose variant could not be made fails its device. */
        if (g->prep != ATTN_OK)
            s = attn_fail(&e, g->prep, "%s", g->why);
    }
    for (size_t j = 0; j < r->n; j++)
        if (group_dev(r, &r->g[j]) == i) {
            const attn_prepared *p = &r->g[j].p;
            total = add_sat(total, add_sat(p->scratch, p->inputs));
            largest = p->largest > largest ? p->largest : largest;
        }
    if (!pending)
        return;
    for (int j = 0; j < 5; j++) {
        total = add_sat(total, t[j]);
        largest = t[j] > largest ? t[j] : largest;
    }
    if (s == ATTN_OK && !r->dev[i].opened) {
        r->dev[i].opened = 1;
        s = r->x->call_open(r->b, i, sz, r->c, total, largest, &r->dev[i].dc,
                            &e);
    }
    if (s)
        fail_device(r, i, s, &e);
}

/* Gives the groups of dropped devices to the queues of the devices left
 * (round robin), prepared for their new device; returns 0 when no device
 * is left. */
static int move_groups(run *r)
{
    for (size_t j = 0; j < r->n; j++) {
        grp *g = &r->g[j];
        attn_err e = {{0}};
        if (!r->dev[group_dev(r, g)].failed)
            continue;
        for (int i = 0; i < ATTN_EXEC_UPLOADS; i++)
            release(r, &g->w[i]);
        release(r, &g->kev);
        for (int tries = 0; tries < r->n_slots; tries++) {
            const int sl = r->next_slot++ % r->n_slots;
            if (!r->dev[r->slot_dev[sl]].failed) {
                g->g.slot = sl;
                break;
            }
        }
        if (r->dev[group_dev(r, g)].failed)
            return 0;
        g->prep = r->x->prepare(r->b, group_dev(r, g), &g->g.d, &g->p, &e);
        snprintf(g->why, sizeof g->why, "%.250s", e.msg);
    }
    return r->n_failed < r->n_dev;
}

/* Sets this round's gates: opened (ok) or failed; returns the device whose
 * gate would not open, or -1. */
static int close_gates(run *r, int ok)
{
    int bad = -1;
    for (int i = 0; i < r->n_dev; i++) {
        if (!r->dev[i].gate)
            continue;
        if (!r->x->gate_set(r->dev[i].gate, ok))
            bad = bad < 0 ? i : bad;
        release(r, &r->dev[i].gate);
    }
    return bad;
}

/* Finishes every queue of every device of the call. */
static void finish_all(run *r)
{
    for (int i = 0; i < r->n_dev; i++)
        if (r->dev[i].dc)
            r->x->finish(r->dev[i].dc);
}

/* Enqueues group g's uploads and kernels. */
static attn_status compute_group(run *r, grp *g, attn_err *err)
{
    dev_call *dv = &r->dev[group_dev(r, g)];
    return r->x->compute(dv->dc, r->slot_queue[g->g.slot], &g->g, &g->p, r->c,
                         g->w, &g->kev, err);
}

/* Waits for this round's uploads and kernels; drops the devices whose
 * commands failed. */
static void wait_compute(run *r)
{
    attn_err e = {{0}};
    attn_status s;
    for (size_t j = 0; j < r->n; j++) {
        grp *g = &r->g[j];
        const int dv = group_dev(r, g);
        attn_dev_call *dc = r->dev[dv].dc;
        for (int i = 0; i < ATTN_EXEC_UPLOADS; i++) {
            if (!r->dev[dv].failed &&
                (s = r->x->wait(dc, g->w[i], "an upload", &e)))
                fail_device(r, dv, s, &e);
            release(r, &g->w[i]);
        }
        if (!r->dev[dv].failed && (s = r->x->wait(dc, g->kev, "a kernel", &e)))
            fail_device(r, dv, s, &e);
    }
}

/* Every kernel succeeded: the reads, behind the gates, and their outcome.
 */
static void read_all(run *r, int failed0)
{
    attn_err e = {{0}};
    attn_status s;
    for (int i = 0; i < r->n_dev && r->n_failed == failed0; i++) {
        if (r->dev[i].failed || !r->dev[i].dc)
            continue;
        if (!(r->dev[i].gate = r->x->gate_new(r->dev[i].dc, &e)))
            fail_device(r, i, ATTN_ERR_DEVICE, &e);
    }
    for (size_t j = 0; j < r->n && r->n_failed == failed0; j++) {
        grp *g = &r->g[j];
        dev_call *dv = &r->dev[group_dev(r, g)];
        if ((s = r->x->read(dv->dc, r->slot_queue[g->g.slot], &g->g, r->c,
                            dv->gate, g->rd, &e)))
            fail_device(r, group_dev(r, g), s, &e);
    }
    if (r->n_failed != failed0) {
        /* Nothing was read: the reads enqueued so far never run. */
        close_gates(r, 0);
        return;
    }
    {
        const int bad = close_gates(r, 1);
        if (bad >= 0) {
            attn_fail(&e, ATTN_ERR_DEVICE, "cannot open the read gate");
            fail_device(r, bad, ATTN_ERR_DEVICE, &e);
        }
    }
    for (size_t j = 0; j < r->n; j++) {
        grp *g = &r->g[j];
        const int dv = group_dev(r, g);
        for (int k = 0; k < 2; k++)
            if ((s = r->x->wait(r->dev[dv].dc, g->rd[k], "a read", &e)))
                fail_device(r, dv, s, &e);
    }
}

/* One round (see above): ATTN_OK with *again = 0 when the call is
 * complete, *again = 1 when a device failed and its groups moved; an error
 * ends the call. */
static attn_status round_run(run *r, int *again, attn_err *err)
{
    const int failed0 = r->n_failed;
    attn_err e = {{0}};
    attn_status s;
    *again = 0;
    for (int i = 0; i < r->n_dev; i++)
        if (!r->dev[i].failed)
            prepare_device(r, i);
    for (size_t j = 0; j < r->n; j++) {
        grp *g = &r->g[j];
        const int dv = group_dev(r, g);
        if (g->kev || r->dev[dv].failed)
            continue;
        if ((s = compute_group(r, g, &e))) {
            if (!device_fault(s))
                return attn_fail(err, s, "%s", e.msg);
            fail_device(r, dv, s, &e);
        }
    }
    wait_compute(r);
    read_all(r, failed0);
    for (size_t j = 0; j < r->n; j++) {
        release(r, &r->g[j].rd[0]);
        release(r, &r->g[j].rd[1]);
    }
    if (r->n_failed == failed0) {
        if (r->x->collect)
            for (size_t j = 0; j < r->n; j++)
                r->x->collect(r->dev[group_dev(r, &r->g[j])].dc, &r->g[j].g,
                              r->c);
        return ATTN_OK;
    }
    /* The dropped devices' commands end before their groups move. */
    finish_all(r);
    if (!move_groups(r)) {
        if (r->n_dev > 1)
            return attn_fail(err, r->first,
                             "%.400s (and no other device could take the "
                             "work)",
                             r->first_err.msg);
        return attn_fail(err, r->first, "%s", r->first_err.msg);
    }
    *again = 1;
    return ATTN_OK;
}

/* The call on a device backend. */
static attn_status run_device(attn_backend *b, const attn_work *w,
                              const attn_sdpa_call *c, const attn_logger *log,
                              attn_err *err)
{
    run *r = calloc(1, sizeof *r);
    attn_status s;
    int again = 1;
    if (!r || (w->n && !(r->g = calloc(w->n, sizeof *r->g)))) {
        free(r);
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the call's state");
    }
    r->b = b;
    r->x = b->ops->exec;
    r->c = c;
    r->log = log;
    r->n_dev = r->x->n_devices(b);
    if (r->n_dev > ATTN_SCHED_MAX_DEVICES)
        r->n_dev = ATTN_SCHED_MAX_DEVICES;
    r->n_slots = w->n_slots;
    memcpy(r->slot_dev, w->slot_dev, sizeof r->slot_dev);
    memcpy(r->slot_queue, w->slot_queue, sizeof r->slot_queue);
    r->n = w->n;
    for (size_t j = 0; j < w->n; j++) {
        r->g[j].g = w->g[j].g;
        r->g[j].p = w->g[j].p;
        r->g[j].prep = w->g[j].prep;
        memcpy(r->g[j].why, w->g[j].why, sizeof r->g[j].why);
        attn_sched_rebase(&r->g[j].g, c->d);
    }
    if ((s = attn_validate_sdpa_desc(c->d, &r->sz, err)) == ATTN_OK)
        while (again && (s = round_run(r, &again, err)) == ATTN_OK)
            ;
    /* Nothing may still read the caller's memory or write o: after a
     * failure every queue finishes first. */
    if (r->n_failed || s)
        finish_all(r);
    for (size_t j = 0; j < r->n; j++) {
        for (int i = 0; i < ATTN_EXEC_UPLOADS; i++)
            release(r, &r->g[j].w[i]);
        release(r, &r->g[j].kev);
    }
    for (int i = 0; i < r->n_dev; i++)
        if (r->dev[i].dc)
            r->x->call_close(r->dev[i].dc, s == ATTN_OK && !r->dev[i].failed);
    if (s == ATTN_OK && r->n_failed) {
        attn_log(log, ATTN_LOG_INFO,
                 "the call completed on the devices left after %d failed",
                 r->n_failed);
        /* a failure the call survived: the caller keeps it as the
         * context's last (attn_context_last_error) */
        snprintf(err->msg, sizeof err->msg,
                 "%d OpenCL device(s) failed (%.300s); the call completed on "
                 "the devices left",
                 r->n_failed, r->first_err.msg);
    }
    free(r->g);
    free(r);
    return s;
}

/* Statuses after which the native backend may redo a device's work. */
static int recoverable(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_BUILD_FAILED ||
           s == ATTN_ERR_OUT_OF_MEMORY || s == ATTN_ERR_UNSUPPORTED;
}

/* After a device failure: with fallback allowed, says so (log and
 * fell_back) and returns 1 so that the caller reruns natively.  A kernel
 * variant forced by name that does not take the call is the caller's
 * error, never redone elsewhere. */
static int fall_back(const attn_runner *r, const char *fn, attn_status s,
                     attn_err *err, char *fell_back, size_t cap)
{
    if (r->backend == r->native || !r->allow_fallback || !recoverable(s) ||
        (r->forced && s == ATTN_ERR_UNSUPPORTED))
        return 0;
    snprintf(fell_back, cap, "%s fell back to the native backend: %.400s", fn,
             err->msg);
    attn_log(r->log, ATTN_LOG_WARN, "%s", fell_back);
    err->msg[0] = '\0';
    return 1;
}

attn_status attn_sched_sdpa(const attn_runner *r, const attn_work *w,
                            const attn_sdpa_call *c, char *fell_back,
                            size_t fell_cap, attn_err *err)
{
    attn_backend *b = r->backend;
    attn_status s;
    fell_back[0] = '\0';
    if (b->ops->exec && w) {
        err->msg[0] = '\0';
        s = run_device(b, w, c, r->log, err);
        if (s == ATTN_OK && err->msg[0]) { /* devices failed, others did it */
            snprintf(fell_back, fell_cap, "attn_sdpa: %s", err->msg);
            err->msg[0] = '\0';
        }
    } else {
        s = b->ops->sdpa(b, c, err);
    }
    if (s != ATTN_OK && fall_back(r, "attn_sdpa", s, err, fell_back, fell_cap))
        s = r->native->ops->sdpa(r->native, c, err);
    return s;
}

attn_status attn_sched_mha(const attn_runner *r, const attn_dev_work *w,
                           const attn_mha_call *c, char *fell_back,
                           size_t fell_cap, attn_err *err)
{
    attn_backend *b = r->backend;
    attn_status s = ATTN_OK, first = ATTN_OK;
    attn_err e, first_err = {{0}};
    fell_back[0] = '\0';
    if (!b->ops->mha || !w) /* a backend without a layer: natively */
        return r->native->ops->mha(r->native, 0, NULL, c, err);
    /* On the first device that completes it; the layer writes y only once
     * it is complete. */
    for (int i = 0; i < w->n_dev; i++) {
        const attn_device_info *info;
        memset(&e, 0, sizeof e);
        if (w->prep[i] != ATTN_OK)
            s = attn_fail(&e, w->prep[i], "%s", w->why[i]);
        else if ((s = b->ops->mha(b, i, &w->p[i], c, &e)) == ATTN_OK)
            return ATTN_OK;
        if (first == ATTN_OK) {
            first = s;
            first_err = e;
        }
        if (!device_fault(s))
            break;
        info = b->ops->exec->info(b, i);
        attn_log(r->log, ATTN_LOG_WARN,
                 "OpenCL device %d:%d (%s) failed: %s; %s",
                 info->platform_index, info->device_index, info->name, e.msg,
                 i + 1 < w->n_dev ? "the layer moves to the next device"
                                  : "no device is left for the layer");
    }
    s = attn_fail(err, first, "%s", first_err.msg);
    if (fall_back(r, "attn_mha_forward", s, err, fell_back, fell_cap))
        s = r->native->ops->mha(r->native, 0, NULL, c, err);
    return s;
}
