/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Device failures of the OpenCL backward pass (attn_sdpa_backward on the
 * variants bwd_ref, bwd_fused and bwd_tiled), injected through the fault layer
 * (src/opencl/fault.h, built with ATTN_FAULT_INJECTION).  For every call
 * the backward makes at each point (alloc, write, enqueue, read; enqueue
 * also late, when the kernel runs), one fault in turn:
 *   - with fallback off the call fails with the driver failure's status,
 *     dq, dk and dv are bit for bit what they were, and the library holds
 *     no more OpenCL objects than before (cl_mem, cl_kernel, cl_program
 *     and cl_event references counted by link-time wrappers);
 *   - with fallback on the call completes natively, right against the
 *     double-precision reference (tests/ref_bwd.c), and says it fell back.
 * The same on the caller's buffers (attn_sdpa_backward_cl_buffers), the
 * tensors in place and at offsets (gathered and scattered by the
 * library), each alloc and enqueue failed in turn: the call fails with the
 * driver failure's status, *done untouched, nothing writes dq, dk and dv
 * (read back after the queue finished), no OpenCL object left behind.
 * Packed sequences (additive score, d_additive_w): a fault in any
 * sequence leaves every output as it was.
 * Also: a failed build (fresh contexts), and a shape no variant takes
 * (head size 300): refused with fallback off or when the variant is
 * forced, computed natively with fallback on.
 *
 * Without an OpenCL device the suite prints SKIP and exits 77.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_cl.h"
#include "opencl/fault.h"

#include "cl_count.h"
#include "harness.h"
#include "ref.h"

#define PATTERN 0xa5 /* what unwritten outputs hold */
#define TOL     1e-4 /* F32, as tests/test_backward.c */

/* ---- one call ------------------------------------------------------------ */

static const char *device(void)
{
    const char *d = getenv("ATTN_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

static attn_context *open_ctx(const char *kernel, int fallback)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    o.device = device();
    o.kernel = kernel;
    o.allow_fallback = fallback;
    o.cache_dir = ""; /* every fresh context builds from source */
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return NULL;
    return ctx;
}

/* A call's tensors, its forward computed natively, and the reference. */
typedef struct call {
    attn_sdpa_desc d;
    int32_t kv_len[2];
    float *bias;
    float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv;
    double *rq, *rk, *rv;
    size_t nq, nk, nv, no;
    attn_sdpa_grad g;
} call;

static double *f64(const float *x, size_t n)
{
    double *y = malloc(n * sizeof *y);
    for (size_t i = 0; y && i < n; i++)
        y[i] = x[i];
    return y;
}

static void call_free(call *c)
{
    free(c->bias), free(c->q), free(c->k), free(c->v), free(c->o);
    free(c->lse), free(c->dout), free(c->dq), free(c->dk), free(c->dv);
    free(c->rq), free(c->rk), free(c->rv);
}

static int call_make(call *c, int head_dim)
{
    attn_context *nat = NULL;
    attn_options o;
    ref_rng r;
    double *q8, *k8, *v8, *do8;
    int ok;
    memset(c, 0, sizeof *c);
    c->d = (attn_sdpa_desc)ATTN_SDPA_DESC_INIT;
    c->d.batch = 2;
    c->d.heads_q = 2;
    c->d.heads_kv = 1;
    c->d.seq_q = 19;
    c->d.seq_kv = 33;
    c->d.head_dim = c->d.head_dim_v = head_dim;
    c->d.mask.causal = 1;
    c->kv_len[0] = 30;
    c->kv_len[1] = 33;
    c->d.mask.kv_len = c->kv_len;
    c->d.mask.bias_kind = ATTN_BIAS_PER_HEAD;
    c->nq = (size_t)2 * 2 * 19 * (size_t)head_dim;
    c->no = c->nq;
    c->nk = (size_t)2 * 33 * (size_t)head_dim;
    c->nv = c->nk;
    c->bias = malloc((size_t)2 * 19 * 33 * sizeof(float));
    c->q = malloc(c->nq * 4), c->k = malloc(c->nk * 4);
    c->v = malloc(c->nv * 4), c->o = malloc(c->no * 4);
    c->dout = malloc(c->no * 4), c->lse = malloc((size_t)2 * 2 * 19 * 4);
    c->dq = malloc(c->nq * 4), c->dk = malloc(c->nk * 4);
    c->dv = malloc(c->nv * 4);
    c->rq = malloc(c->nq * 8), c->rk = malloc(c->nk * 8);
    c->rv = malloc(c->nv * 8);
    if (!c->bias || !c->q || !c->k || !c->v || !c->o || !c->dout || !c->lse ||
        !c->dq || !c->dk || !c->dv || !c->rq || !c->rk || !c->rv)
        return 0;
    ref_rng_seed(&r, 77);
    ref_fill_f32(&r, c->bias, (size_t)2 * 19 * 33, -1.0, 1.0);
    ref_fill_f32(&r, c->q, c->nq, -1.0, 1.0);
    ref_fill_f32(&r, c->k, c->nk, -1.0, 1.0);
    ref_fill_f32(&r, c->v, c->nv, -1.0, 1.0);
    ref_fill_f32(&r, c->dout, c->no, -1.0, 1.0);
    c->d.mask.bias = c->bias;
    attn_options_init(&o);
    o.device = "native";
    if (attn_context_create(&o, &nat) != ATTN_OK)
        return 0;
    ok = attn_sdpa(nat, &c->d, c->q, c->k, c->v, c->o, c->lse) == ATTN_OK;
    attn_context_destroy(nat);
    q8 = f64(c->q, c->nq), k8 = f64(c->k, c->nk), v8 = f64(c->v, c->nv);
    do8 = f64(c->dout, c->no);
    ok =
        ok && q8 && k8 && v8 && do8 &&
        ref_sdpa_backward_f64(&c->d, q8, k8, v8, do8, c->rq, c->rk, c->rv) == 0;
    free(q8), free(k8), free(v8), free(do8);
    c->g = (attn_sdpa_grad)ATTN_SDPA_GRAD_INIT;
    c->g.q = c->q, c->g.k = c->k, c->g.v = c->v, c->g.o = c->o;
    c->g.lse = c->lse, c->g.d_o = c->dout;
    c->g.dq = c->dq, c->g.dk = c->dk, c->g.dv = c->dv;
    return ok;
}

static void outputs_fill(call *c)
{
    memset(c->dq, PATTERN, c->nq * 4);
    memset(c->dk, PATTERN, c->nk * 4);
    memset(c->dv, PATTERN, c->nv * 4);
}

static int all_pattern(const void *x, size_t bytes)
{
    const unsigned char *b = x;
    for (size_t i = 0; i < bytes; i++)
        if (b[i] != PATTERN)
            return 0;
    return 1;
}

static int untouched(const call *c)
{
    return all_pattern(c->dq, c->nq * 4) && all_pattern(c->dk, c->nk * 4) &&
           all_pattern(c->dv, c->nv * 4);
}

static int close1(const float *got, const double *want, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabs(want[i]) > m ? fabs(want[i]) : m;
    for (size_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= TOL * (m + 1) + TOL * fabs(want[i])))
            return 0;
    return 1;
}

static int right(const call *c)
{
    return close1(c->dq, c->rq, c->nq) && close1(c->dk, c->rk, c->nk) &&
           close1(c->dv, c->rv, c->nv);
}

static int fell_back(attn_context *ctx)
{
    return strstr(attn_context_last_error(ctx), "fell back") != NULL;
}

static int recoverable(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_OUT_OF_MEMORY ||
           s == ATTN_ERR_BUILD_FAILED;
}

/* ---- the tests ----------------------------------------------------------- */

static const char *const variants[] = {"bwd_ref", "bwd_fused", "bwd_tiled"};

/* Every call at each point of one variant's backward, failed in turn. */
static void faults_of(const char *variant)
{
    static const struct {
        const char *point;
        attn_fault_point p;
    } points[] = {{"alloc", ATTN_FAULT_ALLOC},
                  {"write", ATTN_FAULT_WRITE},
                  {"enqueue", ATTN_FAULT_ENQUEUE},
                  {"enqueue!", ATTN_FAULT_ENQUEUE},
                  {"read", ATTN_FAULT_READ}};
    attn_context *off = open_ctx(variant, 0), *on = open_ctx(variant, 1);
    call c;
    CU_ASSERT_FATAL(off && on);
    CU_ASSERT_FATAL(call_make(&c, 16));
    /* warm: the program built, the plan made, the dummy buffer */
    CU_ASSERT_EQUAL(attn_sdpa_backward(off, &c.d, &c.g), ATTN_OK);
    CU_ASSERT(right(&c));
    CU_ASSERT_EQUAL(attn_sdpa_backward(on, &c.d, &c.g), ATTN_OK);
    for (size_t t = 0; t < sizeof points / sizeof points[0]; t++) {
        int failed = 0;
        for (int n = 1; n < 64; n++) {
            char spec[32], what[96];
            attn_status s;
            cl_live before;
            snprintf(spec, sizeof spec, "%s@%d", points[t].point, n);
            snprintf(what, sizeof what, "%s, %s", variant, spec);
            CU_ASSERT_FATAL(attn_fault_set(spec, NULL) == ATTN_OK);
            outputs_fill(&c);
            before = cl_live_now();
            s = attn_sdpa_backward(off, &c.d, &c.g);
            attn_fault_deliver(1);
            if (attn_fault_fired(points[t].p) == 0) {
                HARNESS_EXPECT(s == ATTN_OK && right(&c), what);
                break;
            }
            failed++;
            HARNESS_EXPECT(recoverable(s), what);
            HARNESS_EXPECT(untouched(&c), what);
            HARNESS_EXPECT(cl_live_same(before), what);
            /* the same fault with fallback on */
            CU_ASSERT_FATAL(attn_fault_set(spec, NULL) == ATTN_OK);
            outputs_fill(&c);
            s = attn_sdpa_backward(on, &c.d, &c.g);
            attn_fault_deliver(1);
            HARNESS_EXPECT(s == ATTN_OK && right(&c) && fell_back(on), what);
        }
        /* every point is reached at least once */
        HARNESS_EXPECT(failed > 0, points[t].point);
    }
    attn_fault_set(NULL, NULL);
    attn_context_destroy(off);
    attn_context_destroy(on);
    call_free(&c);
}

static void test_faults(void)
{
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
        faults_of(variants[i]);
}

/* Packed sequences (cu_seqlens) with the additive score: the sequences run
 * one after the other, so a fault in any of them, the last included, must
 * leave dq, dk, dv and d_additive_w as they were (fallback off). */
static void test_packed_faults(void)
{
    static const int32_t cq[3] = {0, 3, 8}, ck[3] = {0, 4, 10};
    enum { H = 2, E = 16, TQ = 8, TK = 10 };
    static const char *const points[] = {"read", "enqueue"};
    float q[TQ * H * E], k[TK * E], v[TK * E], o[TQ * H * E], dout[TQ * H * E];
    float w[H * E], lse[H * TQ], dq[TQ * H * E], dk[TK * E], dv[TK * E];
    float dw[H * E];
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    attn_options no;
    attn_context *nat = NULL, *off = open_ctx("bwd_ref", 0);
    ref_rng r;
    CU_ASSERT_PTR_NOT_NULL_FATAL(off);
    ref_rng_seed(&r, 91);
    ref_fill_f32(&r, q, sizeof q / 4, -1.0, 1.0);
    ref_fill_f32(&r, k, sizeof k / 4, -1.0, 1.0);
    ref_fill_f32(&r, v, sizeof v / 4, -1.0, 1.0);
    ref_fill_f32(&r, dout, sizeof dout / 4, -1.0, 1.0);
    ref_fill_f32(&r, w, sizeof w / 4, -0.5, 0.5);
    d.batch = 2;
    d.heads_q = H;
    d.heads_kv = 1;
    d.seq_q = 5; /* the longest */
    d.seq_kv = 6;
    d.head_dim = d.head_dim_v = E;
    d.score = ATTN_SCORE_ADDITIVE;
    d.additive_w = w;
    d.cu_seqlens_q = cq;
    d.cu_seqlens_kv = ck;
    attn_options_init(&no);
    no.device = "native";
    CU_ASSERT_EQUAL_FATAL(attn_context_create(&no, &nat), ATTN_OK);
    CU_ASSERT_EQUAL_FATAL(attn_sdpa(nat, &d, q, k, v, o, lse), ATTN_OK);
    attn_context_destroy(nat);
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv, g.d_additive_w = dw;
    CU_ASSERT_EQUAL(attn_sdpa_backward(off, &d, &g), ATTN_OK);
    for (size_t t = 0; t < sizeof points / sizeof points[0]; t++) {
        int failed = 0;
        for (int n = 1; n < 64; n++) {
            char spec[32];
            attn_status s;
            snprintf(spec, sizeof spec, "%s@%d", points[t], n);
            CU_ASSERT_FATAL(attn_fault_set(spec, NULL) == ATTN_OK);
            memset(dq, PATTERN, sizeof dq);
            memset(dk, PATTERN, sizeof dk);
            memset(dv, PATTERN, sizeof dv);
            memset(dw, PATTERN, sizeof dw);
            s = attn_sdpa_backward(off, &d, &g);
            attn_fault_deliver(1);
            if (attn_fault_fired(t ? ATTN_FAULT_ENQUEUE : ATTN_FAULT_READ) ==
                0) {
                HARNESS_EXPECT(s == ATTN_OK, spec);
                break;
            }
            failed++;
            HARNESS_EXPECT(recoverable(s), spec);
            HARNESS_EXPECT(all_pattern(dq, sizeof dq) &&
                               all_pattern(dk, sizeof dk) &&
                               all_pattern(dv, sizeof dv),
                           spec);
            HARNESS_EXPECT(all_pattern(dw, sizeof dw), spec);
        }
        /* both sequences fail in turn */
        HARNESS_EXPECT(failed >= 2, points[t]);
    }
    attn_fault_set(NULL, NULL);
    attn_context_destroy(off);
}

/* ---- on the caller's buffers -------------------------------------------- */

#define OFF 5 /* elements before q and dq in the offset layout */

typedef struct bufs {
    cl_command_queue queue;
    attn_cl_grad_buffers g;
    size_t off; /* q's and dq's offset */
} bufs;

static cl_mem buffer(cl_context cx, const void *host, size_t bytes)
{
    cl_int rc;
    cl_mem m = clCreateBuffer(cx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              bytes, (void *)host, &rc);
    return rc == CL_SUCCESS ? m : NULL;
}

/* The call's tensors in buffers of ctx's cl_context, q and dq at offset
 * off (the others at 0), and a queue of the caller's own. */
static int bufs_make(bufs *b, attn_context *ctx, const call *c, size_t off)
{
    cl_context cx = NULL;
    cl_device_id dev = NULL;
    cl_int rc;
    float *q = calloc(c->nq + off, sizeof *q);
    memset(b, 0, sizeof *b);
    if (!q || attn_context_cl_objects(ctx, &cx, &dev, NULL) != ATTN_OK) {
        free(q);
        return 0;
    }
    memcpy(q + off, c->q, c->nq * sizeof *q);
    b->off = off;
    b->queue = clCreateCommandQueue(cx, dev, 0, &rc);
    attn_cl_grad_buffers_init(&b->g);
    b->g.q = buffer(cx, q, (c->nq + off) * 4);
    b->g.k = buffer(cx, c->k, c->nk * 4);
    b->g.v = buffer(cx, c->v, c->nv * 4);
    b->g.o = buffer(cx, c->o, c->no * 4);
    b->g.lse = buffer(cx, c->lse, (size_t)2 * 2 * 19 * 4);
    b->g.d_o = buffer(cx, c->dout, c->no * 4);
    b->g.dq = buffer(cx, q, (c->nq + off) * 4);
    b->g.dk = buffer(cx, c->k, c->nk * 4);
    b->g.dv = buffer(cx, c->v, c->nv * 4);
    b->g.q_offset = b->g.dq_offset = off;
    free(q);
    return rc == CL_SUCCESS && b->g.q && b->g.k && b->g.v && b->g.o &&
           b->g.lse && b->g.d_o && b->g.dq && b->g.dk && b->g.dv;
}

static void bufs_free(bufs *b)
{
    const cl_mem m[] = {b->g.q,   b->g.k,  b->g.v,  b->g.o, b->g.lse,
                        b->g.d_o, b->g.dq, b->g.dk, b->g.dv};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (m[i])
            clReleaseMemObject(m[i]);
    if (b->queue)
        clReleaseCommandQueue(b->queue);
}

/* Writes (put) the host outputs of c into the gradient buffers, or reads
 * them back. */
static int bufs_io(const bufs *b, call *c, int put)
{
    const cl_mem m[3] = {b->g.dq, b->g.dk, b->g.dv};
    void *h[3] = {c->dq, c->dk, c->dv};
    const size_t n[3] = {c->nq, c->nk, c->nv}, at[3] = {b->off, 0, 0};
    for (int i = 0; i < 3; i++) {
        cl_int rc =
            put ? clEnqueueWriteBuffer(b->queue, m[i], CL_TRUE, at[i] * 4,
                                       n[i] * 4, h[i], 0, NULL, NULL)
                : clEnqueueReadBuffer(b->queue, m[i], CL_TRUE, at[i] * 4,
                                      n[i] * 4, h[i], 0, NULL, NULL);
        if (rc != CL_SUCCESS)
            return 0;
    }
    return 1;
}

/* Every alloc and enqueue of one variant's call on the caller's buffers
 * (in place, off 0, or gathered and scattered, off OFF), failed in turn. */
static void buffer_faults_of(const char *variant, size_t off)
{
    static const struct {
        const char *point;
        attn_fault_point p;
    } points[] = {{"alloc", ATTN_FAULT_ALLOC}, {"enqueue", ATTN_FAULT_ENQUEUE}};
    cl_event const sentinel = (cl_event)(uintptr_t)0x5a5a;
    attn_context *ctx = open_ctx(variant, 0);
    call c;
    bufs b;
    cl_event done = NULL;
    CU_ASSERT_FATAL(ctx != NULL);
    CU_ASSERT_FATAL(call_make(&c, 16));
    CU_ASSERT_FATAL(bufs_make(&b, ctx, &c, off));
    /* warm, and right */
    CU_ASSERT_EQUAL(
        attn_sdpa_backward_cl_buffers(ctx, &c.d, &b.g, b.queue, 0, NULL, &done),
        ATTN_OK);
    CU_ASSERT_FATAL(done != NULL);
    CU_ASSERT(clWaitForEvents(1, &done) == CL_SUCCESS);
    clReleaseEvent(done);
    CU_ASSERT(bufs_io(&b, &c, 0) && right(&c));
    for (size_t t = 0; t < sizeof points / sizeof points[0]; t++) {
        int failed = 0;
        for (int n = 1; n < 64; n++) {
            char spec[32], what[96];
            attn_status s;
            cl_live before;
            snprintf(spec, sizeof spec, "%s@%d", points[t].point, n);
            snprintf(what, sizeof what, "%s on buffers at %zu, %s", variant,
                     off, spec);
            outputs_fill(&c);
            CU_ASSERT_FATAL(bufs_io(&b, &c, 1));
            CU_ASSERT_FATAL(attn_fault_set(spec, NULL) == ATTN_OK);
            before = cl_live_now();
            done = sentinel;
            s = attn_sdpa_backward_cl_buffers(ctx, &c.d, &b.g, b.queue, 0, NULL,
                                              &done);
            if (attn_fault_fired(points[t].p) == 0) {
                attn_fault_set(NULL, NULL);
                HARNESS_EXPECT(s == ATTN_OK && done != sentinel, what);
                if (s == ATTN_OK && done != sentinel) {
                    clWaitForEvents(1, &done);
                    clReleaseEvent(done);
                }
                HARNESS_EXPECT(bufs_io(&b, &c, 0) && right(&c), what);
                break;
            }
            attn_fault_set(NULL, NULL);
            failed++;
            HARNESS_EXPECT(recoverable(s), what);
            HARNESS_EXPECT(done == sentinel, what);
            HARNESS_EXPECT(clFinish(b.queue) == CL_SUCCESS, what);
            HARNESS_EXPECT(bufs_io(&b, &c, 0) && untouched(&c), what);
            HARNESS_EXPECT(cl_live_same(before), what);
        }
        HARNESS_EXPECT(failed > 0, points[t].point);
    }
    bufs_free(&b);
    attn_context_destroy(ctx);
    call_free(&c);
}

static void test_buffer_faults(void)
{
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        buffer_faults_of(variants[i], 0);
        buffer_faults_of(variants[i], OFF);
    }
}

/* Every build fails: refused (fallback off, nothing leaked), computed
 * natively (fallback on). */
static void test_build(void)
{
    call c;
    CU_ASSERT_FATAL(call_make(&c, 24));
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        const cl_live before = cl_live_now();
        attn_context *off = open_ctx(variants[i], 0);
        attn_context *on = open_ctx(variants[i], 1);
        CU_ASSERT_FATAL(off && on);
        CU_ASSERT_FATAL(attn_fault_set("build", NULL) == ATTN_OK);
        outputs_fill(&c);
        HARNESS_EXPECT(attn_sdpa_backward(off, &c.d, &c.g) ==
                           ATTN_ERR_BUILD_FAILED,
                       variants[i]);
        HARNESS_EXPECT(untouched(&c), variants[i]);
        HARNESS_EXPECT(attn_sdpa_backward(on, &c.d, &c.g) == ATTN_OK &&
                           right(&c) && fell_back(on),
                       variants[i]);
        attn_fault_set(NULL, NULL);
        attn_context_destroy(off);
        attn_context_destroy(on);
        HARNESS_EXPECT(cl_live_same(before), variants[i]);
    }
    call_free(&c);
}

/* The warnings a context logged, for test_auto_tiled_build. */
static char warned[1024];

static void keep_warning(int level, const char *msg, void *user)
{
    (void)user;
    if (level == ATTN_LOG_WARN &&
        strlen(warned) + strlen(msg) + 2 < sizeof warned) {
        strcat(warned, msg);
        strcat(warned, "\n");
    }
}

/* AUTO on a device taken as a GPU (a test build's
 * ATTN_TEST_BWD_GPU_SHAPE=1) tries bwd_tiled first: when its program does
 * not build, bwd_fused runs the call (fallback off, no native redo), a
 * warning says so, and the failed build is not tried again. */
static void test_auto_tiled_build(void)
{
    call c;
    attn_options o;
    attn_context *ctx = NULL;
    const cl_live before = cl_live_now();
    CU_ASSERT_FATAL(call_make(&c, 24));
    setenv("ATTN_TEST_BWD_GPU_SHAPE", "1", 1);
    attn_options_init(&o);
    o.device = device();
    o.allow_fallback = 0;
    o.cache_dir = "";
    o.log = keep_warning;
    o.log_level = ATTN_LOG_WARN;
    warned[0] = '\0';
    CU_ASSERT_FATAL(attn_context_create(&o, &ctx) == ATTN_OK);
    CU_ASSERT_FATAL(attn_fault_set("build@1", NULL) == ATTN_OK);
    outputs_fill(&c);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &c.d, &c.g), ATTN_OK);
    CU_ASSERT(right(&c) && !fell_back(ctx));
    CU_ASSERT(strstr(warned, "bwd_tiled does not build") != NULL);
    /* every build fails now: the programs kept serve the call, the failed
     * one is not built again */
    CU_ASSERT_FATAL(attn_fault_set("build", NULL) == ATTN_OK);
    outputs_fill(&c);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &c.d, &c.g), ATTN_OK);
    CU_ASSERT(right(&c) && !fell_back(ctx));
    attn_fault_set(NULL, NULL);
    attn_context_destroy(ctx);
    unsetenv("ATTN_TEST_BWD_GPU_SHAPE");
    CU_ASSERT(cl_live_same(before));
    call_free(&c);
}

/* Head size 300: no backward variant takes it. */
static void test_declined(void)
{
    call c;
    attn_context *auto_off = open_ctx(NULL, 0), *auto_on = open_ctx(NULL, 1);
    attn_context *forced_on = open_ctx("bwd_ref", 1);
    CU_ASSERT_FATAL(auto_off && auto_on && forced_on);
    CU_ASSERT_FATAL(call_make(&c, 300));
    outputs_fill(&c);
    CU_ASSERT_EQUAL(attn_sdpa_backward(auto_off, &c.d, &c.g),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT(untouched(&c));
    /* a forced variant that does not take the call is the caller's error */
    CU_ASSERT_EQUAL(attn_sdpa_backward(forced_on, &c.d, &c.g),
                    ATTN_ERR_UNSUPPORTED);
    CU_ASSERT(strstr(attn_context_last_error(forced_on), "bwd_ref") != NULL);
    CU_ASSERT(untouched(&c));
    CU_ASSERT_EQUAL(attn_sdpa_backward(auto_on, &c.d, &c.g), ATTN_OK);
    CU_ASSERT(right(&c) && fell_back(auto_on));
    attn_context_destroy(auto_off);
    attn_context_destroy(auto_on);
    attn_context_destroy(forced_on);
    call_free(&c);
}

/* The names: attn_kernel_name names the forward's variants only; a
 * backward name forces the backward only (the forward still runs). */
static void test_names(void)
{
    call c;
    attn_context *ctx = open_ctx("bwd_ref", 0);
    CU_ASSERT_FATAL(ctx != NULL);
    for (int i = 0; attn_kernel_name(i); i++)
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++)
            CU_ASSERT(strcmp(attn_kernel_name(i), variants[v]) != 0);
    CU_ASSERT_FATAL(call_make(&c, 16));
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &c.d, c.q, c.k, c.v, c.o, c.lse), ATTN_OK);
    CU_ASSERT_EQUAL(attn_sdpa_backward(ctx, &c.d, &c.g), ATTN_OK);
    CU_ASSERT(right(&c));
    attn_context_destroy(ctx);
    call_free(&c);
}

static int init(void)
{
    attn_context *ctx = open_ctx(NULL, 0);
    if (!ctx)
        return -1;
    attn_context_destroy(ctx);
    return 0;
}

static int clean(void)
{
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"a fault at every call of each variant", test_faults},
        {"the same on the caller's buffers", test_buffer_faults},
        {"packed sequences: a fault in any writes nothing", test_packed_faults},
        {"failed builds", test_build},
        {"AUTO past a bwd_tiled that does not build", test_auto_tiled_build},
        {"a shape no variant takes", test_declined},
        {"kernel names", test_names},
        {NULL, NULL}};
    attn_context *ctx = NULL;
    attn_options o;
    attn_options_init(&o);
    o.device = device();
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        printf("SKIP: no OpenCL device \"%s\": %s\n", device(),
               attn_last_error());
        return 77;
    }
    attn_context_destroy(ctx);
    return harness_main("OpenCL backward faults", init, clean, tests);
}
