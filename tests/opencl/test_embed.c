/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedding API of attn_cl.h on OpenCL objects the test owns: a
 * cl_context and queue it created, buffers holding the tensors at non-zero
 * offsets between guard regions, wait lists (a user event, events of
 * another queue), the returned event, and the results checked against the
 * reference oracle; left padding (q_start's rows written behind the
 * kernels, also behind a user event).  Error cases: NULL handles and buffers, a
 * queue of another context, buffers too small for their offsets, a native
 * context.
 *
 * Without an OpenCL platform the suite prints SKIP and exits 77.  The
 * guarded buffers and their checks are in call_bufs.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn_cl.h"
#include "call_bufs.h"
#include "cases.h"
#include "harness.h"

#define GUARD 37 /* elements after each tensor */

/* Stands for an event the caller keeps in *done: an error must leave it. */
static char sentinel_storage;
#define SENTINEL ((cl_event)(void *)&sentinel_storage)

static cl_device_id device;
static cl_context clctx;
static cl_command_queue queue;
static attn_context *ctx;

static int event_complete(cl_event ev)
{
    cl_int st = -1;
    if (clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st,
                       NULL) != CL_SUCCESS)
        return 0;
    return st == CL_COMPLETE;
}

/* ---- problems --------------------------------------------------------- */

static void shape(attn_sdpa_desc *d, attn_dtype dtype)
{
    attn_sdpa_desc_init(d); /* the whole layout: q_start and kv_start */
    d->batch = 2;
    d->heads_q = 4;
    d->heads_kv = 2;
    d->seq_q = 13;
    d->seq_kv = 29;
    d->head_dim = 16;
    d->head_dim_v = 24;
    d->dtype = dtype;
}

/* Runs one call through attn_sdpa_cl (offsets all 0, buffers exactly the
 * tensors' size) or attn_sdpa_cl_buffers, waits on the returned event and
 * checks everything. */
static void run_case_with(const attn_sdpa_desc *sh, const size_t off[5],
                          int with_lse, int with_kv_len, const int32_t *q_start,
                          const char *what)
{
    sdpa_case c;
    ref_sdpa_result ref;
    call_bufs cb;
    cl_event done = NULL;
    attn_status s;
    int plain = off == NULL;
    static const size_t zero[5] = {0, 0, 0, 0, 0};
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, sh, 5, 1.0, 0.05, with_kv_len), 0);
    if (q_start) /* in place of the drawn ones */
        c.d.q_start = q_start;
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, clctx, &c, plain ? zero : off,
                                         plain ? 0 : GUARD, with_lse),
                          0);
    if (plain)
        s = attn_sdpa_cl(ctx, &c.d, cb.b.q, cb.b.k, cb.b.v, cb.b.o, cb.b.lse,
                         queue, 0, NULL, &done);
    else
        s = attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 0, NULL, &done);
    HARNESS_EXPECT(s == ATTN_OK, what);
    if (s != ATTN_OK)
        printf("\n  %s: %s: %s\n", what, attn_status_string(s),
               attn_context_last_error(ctx));
    HARNESS_EXPECT(done != NULL, what);
    if (done) {
        HARNESS_EXPECT(clWaitForEvents(1, &done) == CL_SUCCESS, what);
        HARNESS_EXPECT(event_complete(done), what);
        clReleaseEvent(done);
    }
    HARNESS_EXPECT(call_bufs_check(&cb, &c, &ref, queue, what), what);
    call_bufs_free(&cb);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

/* run_case_with, kv_len on. */
static void run_case(const attn_sdpa_desc *sh, const size_t off[5],
                     int with_lse, const char *what)
{
    run_case_with(sh, off, with_lse, CASE_KV_LEN, NULL, what);
}

/* ---- suite ------------------------------------------------------------ */

static int suite_init(void)
{
    cl_int rc;
    attn_options o;
    attn_status s;
    attn_options_init(&o);
    o.cache_dir = ""; /* the program cache has its own suite */
    clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    queue = clCreateCommandQueue(clctx, device, 0, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    s = attn_context_create_cl(clctx, device, &o, &ctx);
    if (s != ATTN_OK)
        printf("\nattn_context_create_cl: %s: %s\n", attn_status_string(s),
               attn_last_error());
    return s != ATTN_OK;
}

static int suite_clean(void)
{
    attn_context_destroy(ctx);
    if (queue)
        clReleaseCommandQueue(queue);
    if (clctx)
        clReleaseContext(clctx);
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void test_create_and_objects(void)
{
    cl_uint refs0 = 0, refs1 = 0;
    cl_context c = NULL, qc = NULL;
    cl_device_id d = NULL;
    cl_command_queue q = NULL;
    attn_context *mine = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    char name[256] = "";

    CU_ASSERT_EQUAL(attn_context_cl_objects(ctx, &c, &d, &q), ATTN_OK);
    CU_ASSERT_PTR_EQUAL(c, clctx);
    CU_ASSERT_PTR_EQUAL(d, device);
    CU_ASSERT_PTR_NOT_NULL_FATAL(q);
    CU_ASSERT(q != queue); /* the library's own queue */
    CU_ASSERT_EQUAL(
        clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof qc, &qc, NULL),
        CL_SUCCESS);
    CU_ASSERT_PTR_EQUAL(qc, clctx);
    CU_ASSERT_EQUAL(attn_context_cl_objects(ctx, NULL, NULL, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(attn_context_cl_objects(NULL, &c, &d, &q),
                    ATTN_ERR_INVALID_ARGUMENT);

    CU_ASSERT_EQUAL(attn_context_device(ctx, &info), ATTN_OK);
    CU_ASSERT(info.kind != ATTN_DEVICE_NATIVE);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof name, name, NULL);
    name[sizeof name - 1] = '\0';
    CU_ASSERT_STRING_EQUAL(info.name, name);

    /* The context is retained for the attn context's life, then given
     * back. */
    CU_ASSERT_EQUAL(clGetContextInfo(clctx, CL_CONTEXT_REFERENCE_COUNT,
                                     sizeof refs0, &refs0, NULL),
                    CL_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(attn_context_create_cl(clctx, device, NULL, &mine),
                          ATTN_OK);
    attn_context_destroy(mine);
    CU_ASSERT_EQUAL(clGetContextInfo(clctx, CL_CONTEXT_REFERENCE_COUNT,
                                     sizeof refs1, &refs1, NULL),
                    CL_SUCCESS);
    CU_ASSERT_EQUAL(refs1, refs0);

    /* Bad handles. */
    mine = (attn_context *)&mine;
    CU_ASSERT_EQUAL(attn_context_create_cl(NULL, device, NULL, &mine),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_PTR_NULL(mine);
    CU_ASSERT_EQUAL(attn_context_create_cl(clctx, NULL, NULL, &mine),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_context_create_cl(clctx, device, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(attn_last_error()[0] != '\0');
    {
        /* A device that is not one of the context's (with two devices,
         * as POCL_DEVICES="pthread pthread" gives) */
        cl_platform_id pf = NULL;
        cl_device_id devs[2];
        cl_uint nd = 0;
        clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof pf, &pf, NULL);
        if (clGetDeviceIDs(pf, CL_DEVICE_TYPE_ALL, 2, devs, &nd) ==
                CL_SUCCESS &&
            nd == 2) {
            cl_device_id other = devs[0] == device ? devs[1] : devs[0];
            CU_ASSERT_EQUAL(attn_context_create_cl(clctx, other, NULL, &mine),
                            ATTN_ERR_INVALID_ARGUMENT);
            CU_ASSERT_PTR_NULL(mine);
            CU_ASSERT(strstr(attn_last_error(), "not a device of") != NULL);
        }
    }
}

static void test_f32(void)
{
    attn_sdpa_desc d;
    static const size_t off[5] = {5, 17, 3, 11, 7};
    shape(&d, ATTN_F32);
    run_case(&d, NULL, 1, "f32, lse");
    run_case(&d, NULL, 0, "f32");
    run_case(&d, off, 1, "f32, offsets, lse");
    run_case(&d, off, 0, "f32, offsets");
    d.mask.causal = 1;
    d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    run_case(&d, off, 1, "f32, offsets, causal, bias, kv_len");
}

static void test_f16(void)
{
    attn_sdpa_desc d;
    static const size_t off[5] = {1, 9, 33, 3, 2};
    shape(&d, ATTN_F16);
    run_case(&d, NULL, 1, "f16, lse");
    run_case(&d, NULL, 0, "f16");
    run_case(&d, off, 1, "f16, odd offsets, lse");
    run_case(&d, off, 0, "f16, odd offsets");
    d.mask.causal = 1;
    d.mask.window = 5;
    d.score = ATTN_SCORE_ADDITIVE;
    run_case(&d, off, 1, "f16, offsets, additive, causal, window");
}

static void test_bf16(void)
{
    attn_sdpa_desc d;
    static const size_t off[5] = {3, 7, 21, 5, 1};
    shape(&d, ATTN_BF16);
    run_case(&d, NULL, 1, "bf16, lse");
    run_case(&d, off, 1, "bf16, odd offsets, lse");
    d.mask.causal = 1;
    d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    run_case(&d, off, 0, "bf16, offsets, causal, bias, kv_len");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Left padding (q_start, kv_start) on the caller's buffers: the padding
 * rows of O are 0 and of lse -INFINITY as the oracle has them (the
 * buffers start as NaN, and the kernels write every row), a batch item
 * of padding rows only, the starts moving a top-left causal diagonal,
 * q_start alone, GQA, offsets, a bias and kv_len.  q_start is set here
 * (batch 2, seq_q 13); kv_start is drawn by sdpa_case_init. */
static void test_left_padding(void)
{
    static const size_t off[5] = {5, 17, 3, 11, 7};
    static const int32_t some[2] = {4, 1}, all[2] = {13, 6}, one[2] = {0, 7};
    const int starts = CASE_KV_LEN | CASE_Q_START | CASE_KV_START;
    attn_sdpa_desc d;
    shape(&d, ATTN_F32);
    run_case_with(&d, NULL, 1, starts, some, "f32, starts, lse");
    run_case_with(&d, off, 0, starts, all, "f32, starts, offsets");
    d.mask.causal = 1;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    run_case_with(&d, off, 1, starts, one,
                  "f32, starts, offsets, top-left causal, bias, lse");
    run_case_with(&d, off, 1, CASE_Q_START, some,
                  "f32, q_start alone, top-left causal, bias, lse");
    shape(&d, ATTN_F16);
    d.mask.causal = 1;
    run_case_with(&d, off, 1, starts, all, "f16, starts, causal, lse");
    shape(&d, ATTN_BF16);
    d.mask.window = 4;
    run_case_with(&d, NULL, 1, starts, some, "bf16, starts, window, lse");
}

/* The work waits for a user event; the call does not block, the host
 * arrays of the descriptor may change once it returns.  with_kv_len: as
 * sdpa_case_init takes it (with CASE_Q_START, the fills of the padding
 * rows wait too). */
static void user_event_case(int with_kv_len)
{
    static const size_t off[5] = {4, 4, 4, 4, 4};
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    call_bufs cb;
    cl_event user, done = NULL;
    cl_command_queue other;
    cl_int rc;
    attn_status s;
    shape(&d, ATTN_F32);
    d.mask.causal = 1;
    d.mask.bias_kind = ATTN_BIAS_FULL;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 9, 1.0, 0.1, with_kv_len), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, clctx, &c, off, GUARD, 1), 0);
    user = clCreateUserEvent(clctx, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    other = clCreateCommandQueue(clctx, device, 0, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);

    s = attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 1, &user, &done);
    CU_ASSERT_EQUAL(s, ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(done);
    /* The host arrays were copied: scribbling on them changes nothing. */
    for (size_t i = 0; i < c.nbias; i++)
        c.bias[i] = 1e4f;
    for (int b = 0; b < c.d.batch; b++)
        c.kv_len[b] = 1;
    sleep_ms(150);
    if (done)
        CU_ASSERT(!event_complete(done));
    /* Read through another queue: the work has not started. */
    CU_ASSERT(call_bufs_untouched(&cb, other));

    CU_ASSERT_EQUAL(clSetUserEventStatus(user, CL_COMPLETE), CL_SUCCESS);
    if (done) {
        CU_ASSERT_EQUAL(clWaitForEvents(1, &done), CL_SUCCESS);
        CU_ASSERT(event_complete(done));
        clReleaseEvent(done);
    }
    CU_ASSERT(call_bufs_check(&cb, &c, &ref, queue, "after the user event"));
    clReleaseEvent(user);
    clReleaseCommandQueue(other);
    call_bufs_free(&cb);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

static void test_user_event(void)
{
    user_event_case(CASE_KV_LEN);
    user_event_case(CASE_KV_LEN | CASE_Q_START);
}

/* Inputs written by another queue without blocking; their events are the
 * wait list.  Also runs on the context's own queue. */
static void test_event_chain(void)
{
    static const size_t off[5] = {2, 6, 10, 14, 18};
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    call_bufs cb;
    cl_event writes[3] = {NULL, NULL, NULL}, done = NULL;
    cl_command_queue other, own = NULL;
    cl_int rc;
    shape(&d, ATTN_F32);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 11, 1.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
    /* The inputs start as garbage; the writes bring the real values. */
    {
        sdpa_case junk;
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&junk, &d, 12, 3.0, 0.0, 0), 0);
        CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, clctx, &junk, off, GUARD, 1),
                              0);
        sdpa_case_free(&junk);
    }
    memcpy(cb.q.image + cb.q.off * 4, c.q, c.nq * 4);
    memcpy(cb.k.image + cb.k.off * 4, c.k, c.nk * 4);
    memcpy(cb.v.image + cb.v.off * 4, c.v, c.nv * 4);
    other = clCreateCommandQueue(clctx, device, 0, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    CU_ASSERT_EQUAL(clEnqueueWriteBuffer(other, cb.q.mem, CL_FALSE, 0,
                                         cb.q.bytes, cb.q.image, 0, NULL,
                                         &writes[0]),
                    CL_SUCCESS);
    CU_ASSERT_EQUAL(clEnqueueWriteBuffer(other, cb.k.mem, CL_FALSE, 0,
                                         cb.k.bytes, cb.k.image, 0, NULL,
                                         &writes[1]),
                    CL_SUCCESS);
    CU_ASSERT_EQUAL(clEnqueueWriteBuffer(other, cb.v.mem, CL_FALSE, 0,
                                         cb.v.bytes, cb.v.image, 0, NULL,
                                         &writes[2]),
                    CL_SUCCESS);
    clFlush(other);
    CU_ASSERT_EQUAL(attn_context_cl_objects(ctx, NULL, NULL, &own), ATTN_OK);
    CU_ASSERT_EQUAL(
        attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, own, 3, writes, &done), ATTN_OK);
    CU_ASSERT_PTR_NOT_NULL(done);
    if (done) {
        CU_ASSERT_EQUAL(clWaitForEvents(1, &done), CL_SUCCESS);
        clReleaseEvent(done);
    }
    CU_ASSERT(call_bufs_check(&cb, &c, &ref, queue, "after the writes"));

    /* done NULL: nothing comes back; clFinish is the caller's way. */
    CU_ASSERT_EQUAL(
        attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 0, NULL, NULL), ATTN_OK);
    CU_ASSERT_EQUAL(clFinish(queue), CL_SUCCESS);
    CU_ASSERT(call_bufs_check(&cb, &c, &ref, queue, "done NULL"));
    for (int i = 0; i < 3; i++)
        if (writes[i])
            clReleaseEvent(writes[i]);
    clReleaseCommandQueue(other);
    call_bufs_free(&cb);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
}

/* The host-pointer API on the same context. */
static void test_host_api(void)
{
    attn_sdpa_desc d;
    sdpa_case c;
    shape(&d, ATTN_F32);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 13, 1.0, 0.0, 0), 0);
    CU_ASSERT(sdpa_case_check(ctx, &c, NULL, 1, NULL, "attn_sdpa"));
    sdpa_case_free(&c);
}

/* A library-made context on an OpenCL device takes the embedding calls
 * on buffers of its cl_context. */
static void test_library_context(void)
{
    attn_options o;
    attn_context *lib = NULL;
    cl_context lc = NULL;
    cl_device_id ld = NULL;
    cl_command_queue lq = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    ref_sdpa_result ref;
    call_bufs cb;
    static const size_t off[5] = {1, 2, 3, 4, 5};
    attn_device_info devs[16] = {ATTN_DEVICE_INFO_INIT};
    size_t n = 0;
    char spec[32] = "";
    /* "P:D" of the first usable device. */
    CU_ASSERT_EQUAL_FATAL(attn_devices(devs, 16, &n), ATTN_OK);
    for (size_t i = 0; i < n && i < 16 && !spec[0]; i++)
        if (devs[i].usable)
            snprintf(spec, sizeof spec, "%d:%d", devs[i].platform_index,
                     devs[i].device_index);
    CU_ASSERT_FATAL(spec[0] != '\0');
    attn_options_init(&o);
    o.device = spec;
    o.cache_dir = "";
    o.allow_fallback = 0;
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &lib), ATTN_OK);
    CU_ASSERT_EQUAL(attn_context_cl_objects(lib, &lc, &ld, &lq), ATTN_OK);
    CU_ASSERT(lc && ld && lq && lc != clctx);
    if (lc && lq) {
        shape(&d, ATTN_F32);
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 14, 1.0, 0.0, 0), 0);
        CU_ASSERT_EQUAL_FATAL(ref_sdpa(&c.d, c.q, c.k, c.v, &ref), 0);
        CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, lc, &c, off, GUARD, 1), 0);
        CU_ASSERT_EQUAL(
            attn_sdpa_cl_buffers(lib, &c.d, &cb.b, lq, 0, NULL, NULL), ATTN_OK);
        CU_ASSERT_EQUAL(clFinish(lq), CL_SUCCESS);
        CU_ASSERT(call_bufs_check(&cb, &c, &ref, lq, "library context"));
        /* Our queue belongs to another context. */
        CU_ASSERT_EQUAL(
            attn_sdpa_cl_buffers(lib, &c.d, &cb.b, queue, 0, NULL, NULL),
            ATTN_ERR_INVALID_ARGUMENT);
        call_bufs_free(&cb);
        ref_sdpa_free(&ref);
        sdpa_case_free(&c);
    }
    attn_context_destroy(lib);
}

static void test_errors(void)
{
    static const size_t off[5] = {3, 3, 3, 3, 3};
    attn_sdpa_desc d, bad;
    sdpa_case c;
    call_bufs cb;
    attn_cl_buffers b;
    cl_context other_ctx;
    cl_command_queue other_q;
    cl_event done = NULL;
    cl_int rc;
    attn_options o;
    attn_context *native = NULL;
    shape(&d, ATTN_F32);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 15, 1.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(call_bufs_make(&cb, clctx, &c, off, GUARD, 1), 0);
    other_ctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    other_q = clCreateCommandQueue(other_ctx, device, 0, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);

    /* Names `done` (set to a sentinel before, checked untouched after:
     * attn_cl.h) and `ctx`. */
#define EXPECT_ERR(call, want)                                                 \
    do {                                                                       \
        done = SENTINEL;                                                       \
        attn_status got_ = (call);                                             \
        HARNESS_EXPECT(got_ == (want), #call);                                 \
        if (got_ != (want))                                                    \
            printf("\n  %s: %s (%s)\n", #call, attn_status_string(got_),       \
                   attn_context_last_error(ctx));                              \
        HARNESS_EXPECT(done == SENTINEL, #call);                               \
    } while (0)

    /* NULL buffers, one at a time. */
    EXPECT_ERR(attn_sdpa_cl(ctx, &c.d, NULL, cb.b.k, cb.b.v, cb.b.o, NULL,
                            queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl(ctx, &c.d, cb.b.q, NULL, cb.b.v, cb.b.o, NULL,
                            queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl(ctx, &c.d, cb.b.q, cb.b.k, NULL, cb.b.o, NULL,
                            queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl(ctx, &c.d, cb.b.q, cb.b.k, cb.b.v, NULL, NULL,
                            queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, NULL, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx), "attn_sdpa_cl") != NULL);
    /* Handles, descriptor, wait list. */
    EXPECT_ERR(attn_sdpa_cl_buffers(NULL, &c.d, &cb.b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, NULL, &cb.b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, NULL, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 2, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    bad = c.d;
    bad.heads_kv = 3; /* 4 % 3 != 0 */
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &bad, &cb.b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    /* A queue of another cl_context. */
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, other_q, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT(strstr(attn_context_last_error(ctx), "another") != NULL);
    {
        /* An event of another cl_context in the wait list (OpenCL's
         * CL_INVALID_CONTEXT), and a NULL one; the backward alike. */
        cl_event foreign = clCreateUserEvent(other_ctx, &rc), none = NULL;
        attn_cl_grad_buffers gb = ATTN_CL_GRAD_BUFFERS_INIT;
        CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
        EXPECT_ERR(
            attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 1, &foreign, &done),
            ATTN_ERR_INVALID_ARGUMENT);
        CU_ASSERT(strstr(attn_context_last_error(ctx), "wait[0]") != NULL);
        EXPECT_ERR(
            attn_sdpa_cl_buffers(ctx, &c.d, &cb.b, queue, 1, &none, &done),
            ATTN_ERR_INVALID_ARGUMENT);
        gb.q = gb.o = gb.d_o = gb.dq = cb.b.q;
        gb.k = gb.dk = cb.b.k;
        gb.v = gb.dv = cb.b.v;
        gb.lse = cb.b.lse;
        EXPECT_ERR(attn_sdpa_backward_cl_buffers(ctx, &c.d, &gb, queue, 1,
                                                 &foreign, &done),
                   ATTN_ERR_INVALID_ARGUMENT);
        clSetUserEventStatus(foreign, CL_COMPLETE);
        clReleaseEvent(foreign);
    }
    /* Buffers too small for their tensor at its offset. */
    b = cb.b;
    b.q_offset = off[0] + GUARD + 1;
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    b = cb.b;
    b.o_offset = off[3] + GUARD + 1;
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    b = cb.b;
    b.lse_offset = off[4] + GUARD + 1;
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &b, queue, 0, NULL, &done),
               ATTN_ERR_INVALID_ARGUMENT);
    b = cb.b;
    b.k_offset = SIZE_MAX / 2; /* offset + size overflows */
    EXPECT_ERR(attn_sdpa_cl_buffers(ctx, &c.d, &b, queue, 0, NULL, &done),
               ATTN_ERR_OUT_OF_MEMORY);
    /* None of that wrote anything. */
    CU_ASSERT(call_bufs_untouched(&cb, queue));

    /* A context on the native backend has no OpenCL objects. */
    attn_options_init(&o);
    o.device = "native";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &native), ATTN_OK);
    done = SENTINEL;
    CU_ASSERT_EQUAL(
        attn_sdpa_cl_buffers(native, &c.d, &cb.b, queue, 0, NULL, &done),
        ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_PTR_EQUAL(done, SENTINEL);
    CU_ASSERT(attn_context_last_error(native)[0] != '\0');
    CU_ASSERT_EQUAL(attn_sdpa_cl(native, &c.d, cb.b.q, cb.b.k, cb.b.v, cb.b.o,
                                 NULL, queue, 0, NULL, NULL),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT_EQUAL(attn_context_cl_objects(native, NULL, NULL, NULL),
                    ATTN_ERR_UNSUPPORTED);
    attn_context_destroy(native);
    CU_ASSERT(call_bufs_untouched(&cb, queue));
#undef EXPECT_ERR

    clReleaseCommandQueue(other_q);
    clReleaseContext(other_ctx);
    call_bufs_free(&cb);
    sdpa_case_free(&c);
}

/* The first device of the first platform that has one. */
static int find_device(void)
{
    cl_platform_id ps[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, ps, &np) != CL_SUCCESS)
        return 0;
    for (cl_uint i = 0; i < np && i < 16; i++) {
        cl_device_id d;
        cl_uint nd = 0;
        if (clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, 1, &d, &nd) ==
                CL_SUCCESS &&
            nd > 0) {
            device = d;
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"create on the caller's context; objects", test_create_and_objects},
        {"f32 on the caller's buffers, offsets, lse", test_f32},
        {"f16 on the caller's buffers, offsets, lse", test_f16},
        {"bf16 on the caller's buffers, offsets, lse", test_bf16},
        {"left padding (q_start, kv_start)", test_left_padding},
        {"a user event holds the work back", test_user_event},
        {"events of another queue as the wait list", test_event_chain},
        {"attn_sdpa on an embedded context", test_host_api},
        {"a library context's OpenCL objects", test_library_context},
        {"errors", test_errors},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (!find_device()) {
        printf("SKIP: embedding API: no OpenCL platform (or device) on this "
               "machine\n");
        return HARNESS_SKIP;
    }
    return harness_main("embedding API", suite_init, suite_clean, tests);
}
