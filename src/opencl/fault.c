/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fault injection (fault.h): the spec parser, the rules' counters and the
 * wrappers that fail OpenCL calls the way a driver does.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "opencl/fault.h"

#define MAX_RULES   32
#define MAX_DEVICES 64
#define SPEC_MAX    1024

static const char *const point_names[ATTN_FAULT_POINTS] = {
    "build", "alloc", "enqueue", "read", "write"};

/* What an injected fault returns at each point. */
static const cl_int point_codes[ATTN_FAULT_POINTS] = {
    CL_BUILD_PROGRAM_FAILURE, CL_MEM_OBJECT_ALLOCATION_FAILURE,
    CL_OUT_OF_RESOURCES, CL_OUT_OF_RESOURCES, CL_OUT_OF_RESOURCES};

typedef struct rule {
    attn_fault_point point;
    unsigned long nth; /* 0: every call */
    int from;          /* 1: the nth and later */
    double prob;       /* 1: always */
    int dev;           /* -1: any device */
    int late;
    unsigned long seen; /* calls this rule counted */
    uint64_t rng;
} rule;

typedef struct spec {
    rule r[MAX_RULES];
    int n;
    uint64_t seed;
} spec;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static spec active; /* guarded by lock */
static unsigned long calls[ATTN_FAULT_POINTS], fired[ATTN_FAULT_POINTS];

/* ---- the spec ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int parse_ulong(const char **p, unsigned long *out)
{
    char *end;
    unsigned long v;
    if (**p < '0' || **p > '9')
        return -1;
    errno = 0;
    v = strtoul(*p, &end, 10);
    if (errno)
        return -1;
    *p = end;
    *out = v;
    return 0;
}

/* One rule from text[0 .. len). */
static attn_status parse_rule(const char *text, size_t len, rule *r,
                              attn_err *err)
{
    char buf[128];
    const char *p;
    size_t name = 0;
    int k;
    if (len >= sizeof buf)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "fault rule \"%.*s...\" is too long", 32, text);
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(r, 0, sizeof *r);
    r->prob = 1.0;
    r->dev = -1;
    while (buf[name] >= 'a' && buf[name] <= 'z')
        name++;
    for (k = 0; k < ATTN_FAULT_POINTS; k++)
        if (strlen(point_names[k]) == name &&
            !strncmp(buf, point_names[k], name))
            break;
    if (k == ATTN_FAULT_POINTS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "fault rule \"%s\": the point must be build, alloc, "
                         "enqueue, read or write",
                         buf);
    r->point = (attn_fault_point)k;
    p = buf + name;
    while (*p) {
        if (*p == '@') {
            p++;
            if (parse_ulong(&p, &r->nth) || r->nth == 0)
                goto bad;
            if (*p == '+') {
                r->from = 1;
                p++;
            }
        } else if (*p == '%') {
            char *end;
            p++;
            errno = 0;
            r->prob = strtod(p, &end);
            if (end == p || errno || !(r->prob >= 0.0 && r->prob <= 1.0))
                goto bad;
            p = end;
        } else if (!strncmp(p, ":dev", 4)) {
            unsigned long d;
            p += 4;
            if (parse_ulong(&p, &d) || d >= MAX_DEVICES)
                goto bad;
            r->dev = (int)d;
        } else if (*p == '!') {
            r->late = 1;
            p++;
        } else {
            goto bad;
        }
    }
    return ATTN_OK;
bad:
    return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                     "fault rule \"%s\": bad modifier at \"%s\" (expected "
                     "@N, @N+, %%P with P in [0, 1], :devD or !)",
                     buf, p);
}

static attn_status parse(const char *text, spec *out, attn_err *err)
{
    const char *p = text ? text : "";
    memset(out, 0, sizeof *out);
    out->seed = 1;
    while (*p) {
        size_t len;
        attn_status s;
        while (*p == ' ' || *p == ',')
            p++;
        len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 0)
            break;
        if (!strncmp(p, "seed=", 5)) {
            const char *q = p + 5;
            unsigned long v;
            if (parse_ulong(&q, &v) || q != p + len)
                return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                                 "fault spec: seed=%.*s is not a number",
                                 (int)(len - 5), p + 5);
            out->seed = v;
        } else {
            if (out->n == MAX_RULES)
                return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                                 "fault spec: more than %d rules", MAX_RULES);
            if ((s = parse_rule(p, len, &out->r[out->n], err)))
                return s;
            out->n++;
        }
        p += len;
        while (*p == ' ')
            p++;
    }
    for (int i = 0; i < out->n; i++)
        out->r[i].rng = out->seed * 0x100000001b3ull + (uint64_t)i;
    return ATTN_OK;
}

/* Installs s and clears the counts.  lock held. */
static void install(const spec *s)
{
    active = *s;
    memset(calls, 0, sizeof calls);
    memset(fired, 0, sizeof fired);
}

static void load_env(void)
{
    const char *env = getenv("ATTN_FAULTS");
    attn_err err = {{0}};
    spec s;
    if (parse(env, &s, &err) != ATTN_OK) {
        fprintf(stderr, "libattn: ATTN_FAULTS ignored: %s\n", err.msg);
        parse(NULL, &s, NULL);
    }
    install(&s);
}

static void init_once(void)
{
    pthread_mutex_lock(&lock);
    load_env();
    pthread_mutex_unlock(&lock);
}

attn_status attn_fault_set(const char *text, attn_err *err)
{
    spec s;
    attn_status st = parse(text, &s, err);
    pthread_once(&once, init_once);
    if (st)
        return st;
    pthread_mutex_lock(&lock);
    install(&s);
    pthread_mutex_unlock(&lock);
    return ATTN_OK;
}

void attn_fault_reset(void)
{
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
    load_env();
    pthread_mutex_unlock(&lock);
}

unsigned long attn_fault_calls(attn_fault_point p)
{
    unsigned long n;
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
    n = (unsigned)p < ATTN_FAULT_POINTS ? calls[p] : 0;
    pthread_mutex_unlock(&lock);
    return n;
}

unsigned long attn_fault_fired(attn_fault_point p)
{
    unsigned long n;
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
    n = (unsigned)p < ATTN_FAULT_POINTS ? fired[p] : 0;
    pthread_mutex_unlock(&lock);
    return n;
}

/* ---- deciding ------------------------------------------------------------ */

/* dev's position in its platform's device list, or -1. */
static int device_index(cl_device_id dev)
{
    cl_platform_id plat;
    cl_device_id ids[MAX_DEVICES];
    cl_uint n = 0;
    if (!dev ||
        clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL) !=
            CL_SUCCESS ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, MAX_DEVICES, ids, &n) !=
            CL_SUCCESS)
        return -1;
    for (cl_uint i = 0; i < n && i < MAX_DEVICES; i++)
        if (ids[i] == dev)
            return (int)i;
    return -1;
}

/* Whether the call at p on dev fails: 0 no, 1 at once, 2 late. */
static int decide(attn_fault_point p, cl_device_id dev)
{
    int hit = 0, index = -2;
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
    calls[p]++;
    for (int i = 0; i < active.n; i++) {
        rule *r = &active.r[i];
        int selected;
        if (r->point != p)
            continue;
        if (r->dev >= 0) {
            if (index == -2)
                index = device_index(dev);
            if (index != r->dev)
                continue;
        }
        r->seen++;
        selected =
            r->nth == 0 || r->seen == r->nth || (r->from && r->seen > r->nth);
        if (!selected)
            continue;
        if (r->prob < 1.0 &&
            (double)(splitmix(&r->rng) >> 11) * 0x1.0p-53 >= r->prob)
            continue;
        if (hit != 1)
            hit = r->late ? 2 : 1;
    }
    if (hit)
        fired[p]++;
    pthread_mutex_unlock(&lock);
    return hit;
}

static cl_device_id queue_device(cl_command_queue q)
{
    cl_device_id dev = NULL;
    if (clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL) !=
        CL_SUCCESS)
        return NULL;
    return dev;
}

cl_int attn_fault_code(attn_fault_point p, cl_device_id dev)
{
    return decide(p, dev) ? point_codes[p] : CL_SUCCESS;
}

cl_int attn_fault_clBuildProgram(cl_program prog, cl_uint n_dev,
                                 const cl_device_id *devs, const char *options,
                                 void(CL_CALLBACK *notify)(cl_program, void *),
                                 void *user)
{
    if (decide(ATTN_FAULT_BUILD, n_dev && devs ? devs[0] : NULL))
        return point_codes[ATTN_FAULT_BUILD];
    return clBuildProgram(prog, n_dev, devs, options, notify, user);
}

cl_mem attn_fault_clCreateBuffer(cl_context context, cl_mem_flags flags,
                                 size_t size, void *host, cl_int *rc)
{
    cl_device_id devs[MAX_DEVICES] = {NULL};
    /* The context's first device (the library's contexts have one). */
    clGetContextInfo(context, CL_CONTEXT_DEVICES, sizeof devs, devs, NULL);
    if (decide(ATTN_FAULT_ALLOC, devs[0])) {
        if (rc)
            *rc = point_codes[ATTN_FAULT_ALLOC];
        return NULL;
    }
    return clCreateBuffer(context, flags, size, host, rc);
}

/* ---- late faults ----------------------------------------------------------
 * The command also waits on a user event of its own, and a marker with
 * the command's wait list (on an in-order queue: also after every earlier
 * command) tells when everything before it is done.  The user event is set
 * to an error status from the library's own thread (attn_fault_deliver)
 * once the marker has completed: the command is enqueued and fails when it
 * would run, with nothing before it still running, as a device fault
 * during execution looks to the library.  A blocking call fails at once
 * instead. */

#define MAX_LATE 256

typedef struct late {
    cl_event user, marker;
    cl_event *wl;
    cl_uint n;
} late;

static late late_list[MAX_LATE]; /* armed; guarded by lock */
static int n_late;

static cl_int late_begin(cl_command_queue q, cl_uint n_wait,
                         const cl_event *wait, late *l)
{
    cl_context ctx = NULL;
    cl_int rc;
    memset(l, 0, sizeof *l);
    rc = clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof ctx, &ctx, NULL);
    if (rc != CL_SUCCESS)
        return rc;
    if (!(l->wl = malloc(((size_t)n_wait + 1) * sizeof *l->wl)))
        return CL_OUT_OF_HOST_MEMORY;
    l->user = clCreateUserEvent(ctx, &rc);
    if (rc == CL_SUCCESS)
        rc = clEnqueueMarkerWithWaitList(q, n_wait, wait, &l->marker);
    if (rc != CL_SUCCESS) {
        if (l->user) {
            clSetUserEventStatus(l->user, -1);
            clReleaseEvent(l->user);
        }
        free(l->wl);
        return rc;
    }
    if (n_wait)
        memcpy(l->wl, wait, n_wait * sizeof *wait);
    l->wl[n_wait] = l->user;
    l->n = n_wait + 1;
    return CL_SUCCESS;
}

/* Fails l's command (see above) and releases l.  Between the marker's
 * completion and the failure the driver gets a moment to hand the
 * completion on to the command: PoCL 3.1 otherwise may start the command
 * and fail it at once (an assertion in pocl_update_event_running_unlocked,
 * once in a few hundred).  The user event is set also when the marker
 * failed (the command has failed already): a user event never set keeps
 * driver memory (PoCL 3.1). */
static void late_fire(late *l)
{
    const struct timespec settle = {0, 2000000}; /* 2 ms */
    clWaitForEvents(1, &l->marker);
    nanosleep(&settle, NULL);
    clSetUserEventStatus(l->user, -1);
    clReleaseEvent(l->user);
    clReleaseEvent(l->marker);
}

/* After the command was enqueued (rc its result): arms the failure. */
static void late_end(late *l, cl_int rc)
{
    free(l->wl);
    l->wl = NULL;
    if (rc == CL_SUCCESS) {
        pthread_mutex_lock(&lock);
        if (n_late < MAX_LATE) {
            late_list[n_late++] = *l;
            l->user = NULL;
        }
        pthread_mutex_unlock(&lock);
        if (!l->user)
            return;
    }
    /* Not enqueued (or no room): nothing waits for the user event. */
    clSetUserEventStatus(l->user, -1);
    clReleaseEvent(l->user);
    clReleaseEvent(l->marker);
}

/* Whether a marker has completed or failed. */
static int marker_done(cl_event m)
{
    cl_int st = CL_QUEUED;
    return clGetEventInfo(m, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st,
                          NULL) != CL_SUCCESS ||
           st <= CL_COMPLETE;
}

void attn_fault_deliver(int wait)
{
    late todo[MAX_LATE];
    int n = 0, kept = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_late; i++)
        if (wait || marker_done(late_list[i].marker))
            todo[n++] = late_list[i];
        else
            late_list[kept++] = late_list[i];
    n_late = kept;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        late_fire(&todo[i]);
}

unsigned long attn_fault_pending(void)
{
    unsigned long n;
    pthread_mutex_lock(&lock);
    n = (unsigned long)n_late;
    pthread_mutex_unlock(&lock);
    return n;
}

cl_int attn_fault_clEnqueueNDRangeKernel(cl_command_queue q, cl_kernel k,
                                         cl_uint dims, const size_t *offset,
                                         const size_t *global,
                                         const size_t *local, cl_uint n_wait,
                                         const cl_event *wait, cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_ENQUEUE, queue_device(q))) {
    case 0:
        return clEnqueueNDRangeKernel(q, k, dims, offset, global, local, n_wait,
                                      wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_ENQUEUE];
    }
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueNDRangeKernel(q, k, dims, offset, global, local, l.n, l.wl,
                                ev);
    late_end(&l, rc);
    return rc;
}

cl_int attn_fault_clEnqueueReadBuffer(cl_command_queue q, cl_mem buf,
                                      cl_bool blocking, size_t offset,
                                      size_t size, void *ptr, cl_uint n_wait,
                                      const cl_event *wait, cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_READ, queue_device(q))) {
    case 0:
        return clEnqueueReadBuffer(q, buf, blocking, offset, size, ptr, n_wait,
                                   wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_READ];
    }
    if (blocking)
        return point_codes[ATTN_FAULT_READ];
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc =
        clEnqueueReadBuffer(q, buf, blocking, offset, size, ptr, l.n, l.wl, ev);
    late_end(&l, rc);
    return rc;
}

cl_int attn_fault_clEnqueueWriteBuffer(cl_command_queue q, cl_mem buf,
                                       cl_bool blocking, size_t offset,
                                       size_t size, const void *ptr,
                                       cl_uint n_wait, const cl_event *wait,
                                       cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_WRITE, queue_device(q))) {
    case 0:
        return clEnqueueWriteBuffer(q, buf, blocking, offset, size, ptr, n_wait,
                                    wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_WRITE];
    }
    if (blocking)
        return point_codes[ATTN_FAULT_WRITE];
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueWriteBuffer(q, buf, blocking, offset, size, ptr, l.n, l.wl,
                              ev);
    late_end(&l, rc);
    return rc;
}

/* The rectangle copies of a KV cache step (mha_cl.c): the cache's rows to
 * the device and the step's rows into them are writes, the step's rows
 * back into the cache a (blocking) read. */
cl_int attn_fault_clEnqueueWriteBufferRect(
    cl_command_queue q, cl_mem buf, cl_bool blocking, const size_t *buf_origin,
    const size_t *host_origin, const size_t *region, size_t buf_row,
    size_t buf_slice, size_t host_row, size_t host_slice, const void *ptr,
    cl_uint n_wait, const cl_event *wait, cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_WRITE, queue_device(q))) {
    case 0:
        return clEnqueueWriteBufferRect(
            q, buf, blocking, buf_origin, host_origin, region, buf_row,
            buf_slice, host_row, host_slice, ptr, n_wait, wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_WRITE];
    }
    if (blocking)
        return point_codes[ATTN_FAULT_WRITE];
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueWriteBufferRect(q, buf, blocking, buf_origin, host_origin,
                                  region, buf_row, buf_slice, host_row,
                                  host_slice, ptr, l.n, l.wl, ev);
    late_end(&l, rc);
    return rc;
}

cl_int attn_fault_clEnqueueCopyBufferRect(cl_command_queue q, cl_mem src,
                                          cl_mem dst, const size_t *src_origin,
                                          const size_t *dst_origin,
                                          const size_t *region, size_t src_row,
                                          size_t src_slice, size_t dst_row,
                                          size_t dst_slice, cl_uint n_wait,
                                          const cl_event *wait, cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_WRITE, queue_device(q))) {
    case 0:
        return clEnqueueCopyBufferRect(q, src, dst, src_origin, dst_origin,
                                       region, src_row, src_slice, dst_row,
                                       dst_slice, n_wait, wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_WRITE];
    }
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueCopyBufferRect(q, src, dst, src_origin, dst_origin, region,
                                 src_row, src_slice, dst_row, dst_slice, l.n,
                                 l.wl, ev);
    late_end(&l, rc);
    return rc;
}

cl_int attn_fault_clEnqueueFillBuffer(cl_command_queue q, cl_mem buf,
                                      const void *pattern, size_t pattern_size,
                                      size_t offset, size_t size,
                                      cl_uint n_wait, const cl_event *wait,
                                      cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_WRITE, queue_device(q))) {
    case 0:
        return clEnqueueFillBuffer(q, buf, pattern, pattern_size, offset, size,
                                   n_wait, wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_WRITE];
    }
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueFillBuffer(q, buf, pattern, pattern_size, offset, size, l.n,
                             l.wl, ev);
    late_end(&l, rc);
    return rc;
}

cl_int attn_fault_clEnqueueReadBufferRect(
    cl_command_queue q, cl_mem buf, cl_bool blocking, const size_t *buf_origin,
    const size_t *host_origin, const size_t *region, size_t buf_row,
    size_t buf_slice, size_t host_row, size_t host_slice, void *ptr,
    cl_uint n_wait, const cl_event *wait, cl_event *ev)
{
    late l;
    cl_int rc;
    switch (decide(ATTN_FAULT_READ, queue_device(q))) {
    case 0:
        return clEnqueueReadBufferRect(
            q, buf, blocking, buf_origin, host_origin, region, buf_row,
            buf_slice, host_row, host_slice, ptr, n_wait, wait, ev);
    case 1:
        return point_codes[ATTN_FAULT_READ];
    }
    if (blocking)
        return point_codes[ATTN_FAULT_READ];
    if ((rc = late_begin(q, n_wait, wait, &l)) != CL_SUCCESS)
        return rc;
    rc = clEnqueueReadBufferRect(q, buf, blocking, buf_origin, host_origin,
                                 region, buf_row, buf_slice, host_row,
                                 host_slice, ptr, l.n, l.wl, ev);
    late_end(&l, rc);
    return rc;
}
