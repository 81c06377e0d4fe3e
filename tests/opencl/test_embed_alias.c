/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedding API (attn_cl.h) on buffers that share memory.  The inputs
 * q, k and v may overlap (they are only read): such calls run and their
 * results match the oracle.  An output (o, lse) that overlaps any other
 * tensor is ATTN_ERR_INVALID_ARGUMENT with a sentence naming both, and
 * nothing is enqueued or written: within one cl_mem, across sub-buffers
 * of one parent, between a parent and its sub-buffer, across buffers on
 * the same host memory (CL_MEM_USE_HOST_PTR).  A buffer of another
 * cl_context is refused too.  On every error *done keeps what the caller
 * put there.
 *
 * Without an OpenCL platform the suite prints SKIP and exits 77.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_cl.h"
#include "cases.h"
#include "harness.h"

static cl_device_id device;
static cl_context clctx;
static cl_command_queue queue;
static attn_context *ctx;
static size_t align; /* sub-buffer origin alignment, bytes */

/* Stands for an event the caller keeps in *done: an error must leave it. */
static char sentinel_storage;
#define SENTINEL ((cl_event)(void *)&sentinel_storage)

#define FILL 0x5a /* bytes of the arena that hold no input */

/* One shape for every case: q and k of equal size, k and v too. */
static void shape(attn_sdpa_desc *d, attn_dtype dt)
{
    memset(d, 0, sizeof *d);
    d->batch = 2;
    d->heads_q = 2;
    d->heads_kv = 2;
    d->seq_q = 9;
    d->seq_kv = 9;
    d->head_dim = 16;
    d->head_dim_v = 16;
    d->mask.causal = 1;
    d->dtype = dt;
}

/* Every tensor as a byte range of one host image (the arena) that goes
 * into one buffer.  Offsets in bytes; inputs written where they lie. */
typedef struct arena {
    unsigned char *image;
    size_t bytes;
    size_t off[5]; /* q, k, v, o, lse */
} arena;

static int arena_make(arena *a, const sdpa_case *c, const size_t off[5],
                      size_t bytes)
{
    const size_t es = c->d.dtype == ATTN_F16 ? 2 : 4;
    a->bytes = bytes;
    memcpy(a->off, off, sizeof a->off);
    if (!(a->image = malloc(bytes)))
        return -1;
    memset(a->image, FILL, bytes);
    /* The last written input wins where inputs overlap: the oracle reads
     * them back from the image. */
    memcpy(a->image + off[0], c->q, c->nq * es);
    memcpy(a->image + off[1], c->k, c->nk * es);
    memcpy(a->image + off[2], c->v, c->nv * es);
    return 0;
}

static cl_mem buffer_of(const arena *a, cl_context context)
{
    cl_int rc;
    cl_mem m = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              a->bytes, a->image, &rc);
    return rc == CL_SUCCESS ? m : NULL;
}

/* The call's buffers: every tensor in m at the arena's offsets. */
static attn_cl_buffers buffers_in(cl_mem m, const arena *a, attn_dtype dt)
{
    const size_t es = dt == ATTN_F16 ? 2 : 4;
    attn_cl_buffers b = ATTN_CL_BUFFERS_INIT;
    b.q = b.k = b.v = b.o = b.lse = m;
    b.q_offset = a->off[0] / es;
    b.k_offset = a->off[1] / es;
    b.v_offset = a->off[2] / es;
    b.o_offset = a->off[3] / es;
    b.lse_offset = a->off[4] / 4;
    return b;
}

static unsigned char *read_back(cl_mem m, size_t bytes)
{
    unsigned char *p = malloc(bytes);
    if (p && clEnqueueReadBuffer(queue, m, CL_TRUE, 0, bytes, p, 0, NULL,
                                 NULL) != CL_SUCCESS) {
        free(p);
        p = NULL;
    }
    return p;
}

/* Runs the call on b and checks O and lse against the oracle of the inputs
 * as the arena holds them, and that nothing else of the arena changed;
 * the arena's image then holds the buffer as it is now. */
static void expect_right(const sdpa_case *c, arena *a, cl_mem m,
                         const attn_cl_buffers *b, const char *what)
{
    const size_t es = c->d.dtype == ATTN_F16 ? 2 : 4;
    ref_sdpa_result ref;
    cl_event done = NULL;
    attn_status s = attn_sdpa_cl_buffers(ctx, &c->d, b, queue, 0, NULL, &done);
    HARNESS_EXPECT(s == ATTN_OK, what);
    if (s != ATTN_OK) {
        printf("\n  %s: %s: %s\n", what, attn_status_string(s),
               attn_context_last_error(ctx));
        return;
    }
    HARNESS_EXPECT(done && clWaitForEvents(1, &done) == CL_SUCCESS, what);
    if (done)
        clReleaseEvent(done);
    unsigned char *now = read_back(m, a->bytes);
    HARNESS_EXPECT(now != NULL, what);
    if (!now)
        return;
    HARNESS_EXPECT(ref_sdpa(&c->d, a->image + a->off[0], a->image + a->off[1],
                            a->image + a->off[2], &ref) == 0,
                   what);
    HARNESS_EXPECT(
        ref_check_sdpa(what, &c->d, &ref, now + a->off[3],
                       (const float *)(const void *)(now + a->off[4]), NULL),
        what);
    /* Outside o and lse the arena is as written. */
    int same = 1;
    for (size_t i = 0; i < a->bytes; i++) {
        int in_o = i >= a->off[3] && i < a->off[3] + c->no * es;
        int in_l = i >= a->off[4] && i < a->off[4] + c->nlse * 4;
        if (!in_o && !in_l)
            same &= now[i] == a->image[i];
    }
    HARNESS_EXPECT(same, what);
    memcpy(a->image, now, a->bytes);
    ref_sdpa_free(&ref);
    free(now);
}

/* The call on b must fail with ATTN_ERR_INVALID_ARGUMENT and a sentence
 * holding frag1 and frag2, and leave *done and every byte of the buffers
 * (mems[0..n), as images[0..n) hold them) as they were. */
static void expect_refused(const sdpa_case *c, const attn_cl_buffers *b,
                           const cl_mem *mems, const arena *const *images,
                           int n, const char *frag1, const char *frag2,
                           const char *what)
{
    cl_event done = SENTINEL;
    attn_status s = attn_sdpa_cl_buffers(ctx, &c->d, b, queue, 0, NULL, &done);
    const char *msg = attn_context_last_error(ctx);
    HARNESS_EXPECT(s == ATTN_ERR_INVALID_ARGUMENT, what);
    HARNESS_EXPECT(done == SENTINEL, what);
    HARNESS_EXPECT(strstr(msg, frag1) && strstr(msg, frag2), what);
    if (s != ATTN_ERR_INVALID_ARGUMENT || !strstr(msg, frag1) ||
        !strstr(msg, frag2))
        printf("\n  %s: %s: %s\n", what, attn_status_string(s), msg);
    HARNESS_EXPECT(clFinish(queue) == CL_SUCCESS, what);
    for (int i = 0; i < n; i++) {
        unsigned char *now = read_back(mems[i], images[i]->bytes);
        HARNESS_EXPECT(now && !memcmp(now, images[i]->image, images[i]->bytes),
                       what);
        free(now);
    }
}

static size_t round_up(size_t x, size_t to)
{
    return (x + to - 1) / to * to;
}

/* ---- one buffer --------------------------------------------------------- */

static void one_buffer(attn_dtype dt)
{
    const size_t es = dt == ATTN_F16 ? 2 : 4;
    attn_sdpa_desc d;
    sdpa_case c;
    arena a;
    cl_mem m;
    char what[96];
    shape(&d, dt);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 31, 1.0, 0.0, 0), 0);
    const size_t nq = c.nq * es, no = c.no * es, nl = c.nlse * 4;
    /* q | k | v | o | lse back to back: nothing overlaps. */
    const size_t packed[5] = {0, nq, 2 * nq, 3 * nq, 3 * nq + no};
    const size_t total = 3 * nq + no + nl + 64;
    const char *dts = dt == ATTN_F16 ? "F16" : "F32";

    CU_ASSERT_EQUAL_FATAL(arena_make(&a, &c, packed, total), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m = buffer_of(&a, clctx));
    attn_cl_buffers b = buffers_in(m, &a, dt);
    snprintf(what, sizeof what, "%s: five tensors back to back", dts);
    expect_right(&c, &a, m, &b, what);
    clReleaseMemObject(m);
    free(a.image);

    /* The inputs share memory: k and v are one tensor, q starts inside
     * k.  Allowed, and computed on what the memory holds. */
    {
        const size_t shared[5] = {nq / 2, nq, nq, 2 * nq, 2 * nq + no};
        CU_ASSERT_EQUAL_FATAL(arena_make(&a, &c, shared, total), 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m = buffer_of(&a, clctx));
        b = buffers_in(m, &a, dt);
        snprintf(what, sizeof what, "%s: q, k and v overlap", dts);
        expect_right(&c, &a, m, &b, what);
        clReleaseMemObject(m);
        free(a.image);
    }

    /* An output over anything else. */
    static const struct {
        const char *what, *pair;
        int out;        /* 3: o moves, 4: lse moves */
        int onto;       /* the tensor it lands on */
        long long rows; /* by this many rows of the tensor it lands on */
    } bad[] = {
        {"o one row after q's start", "q and o overlap", 3, 0, 1},
        {"o on q's last row", "q and o overlap", 3, 0, 2 * 2 * 9 - 1},
        {"o over k", "k and o overlap", 3, 1, 0},
        {"o over v's second half", "v and o overlap", 3, 2, 18},
        {"lse inside o", "o and lse overlap", 4, 3, 3},
        {"lse over q", "q and lse overlap", 4, 0, 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t off[5];
        memcpy(off, packed, sizeof off);
        off[bad[i].out] =
            packed[bad[i].onto] + (size_t)bad[i].rows * (size_t)d.head_dim * es;
        /* lse is in floats: keep its offset a multiple of 4 bytes */
        off[bad[i].out] = round_up(off[bad[i].out], 4);
        CU_ASSERT_EQUAL_FATAL(arena_make(&a, &c, off, total + no), 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m = buffer_of(&a, clctx));
        b = buffers_in(m, &a, dt);
        const arena *imgs[1] = {&a};
        snprintf(what, sizeof what, "%s: %s", dts, bad[i].what);
        expect_refused(&c, &b, &m, imgs, 1, bad[i].pair, "one OpenCL buffer",
                       what);
        clReleaseMemObject(m);
        free(a.image);
    }
    sdpa_case_free(&c);
}

static void test_one_buffer(void)
{
    one_buffer(ATTN_F32);
    one_buffer(ATTN_F16);
}

/* ---- sub-buffers -------------------------------------------------------- */

static cl_mem sub(cl_mem parent, size_t origin, size_t bytes)
{
    cl_buffer_region r = {origin, bytes};
    cl_int rc;
    cl_mem m = clCreateSubBuffer(parent, CL_MEM_READ_WRITE,
                                 CL_BUFFER_CREATE_TYPE_REGION, &r, &rc);
    return rc == CL_SUCCESS ? m : NULL;
}

static void test_sub_buffers(void)
{
    attn_sdpa_desc d;
    sdpa_case c;
    arena a;
    shape(&d, ATTN_F32);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 32, 1.0, 0.0, 0), 0);
    const size_t nq = c.nq * 4, no = c.no * 4, nl = c.nlse * 4;
    /* Each tensor in a sub-buffer of its own, at aligned origins. */
    const size_t slot = round_up(nq > no ? nq : no, align);
    const size_t origin[5] = {0, slot, 2 * slot, 3 * slot, 4 * slot};
    CU_ASSERT_EQUAL_FATAL(
        arena_make(&a, &c, origin, 4 * slot + round_up(nl, align)), 0);
    cl_mem parent = buffer_of(&a, clctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(parent);
    cl_mem s[5];
    const size_t bytes[5] = {nq, nq, nq, no, nl};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_PTR_NOT_NULL_FATAL(s[i] = sub(parent, origin[i], bytes[i]));
    attn_cl_buffers b;
    memset(&b, 0, sizeof b);
    b.q = s[0];
    b.k = s[1];
    b.v = s[2];
    b.o = s[3];
    b.lse = s[4];
    expect_right(&c, &a, parent, &b, "disjoint sub-buffers of one parent");

    /* o's sub-buffer starts inside q's. */
    const arena *imgs[1] = {&a};
    cl_mem over = sub(parent, align, no);
    CU_ASSERT_PTR_NOT_NULL_FATAL(over);
    attn_cl_buffers ov = b;
    ov.o = over;
    expect_refused(&c, &ov, &parent, imgs, 1, "q and o overlap",
                   "one OpenCL buffer", "o's sub-buffer overlaps q's");
    /* lse as the parent at an offset inside k's sub-buffer. */
    ov = b;
    ov.lse = parent;
    ov.lse_offset = (slot + align) / 4;
    expect_refused(&c, &ov, &parent, imgs, 1, "k and lse overlap",
                   "one OpenCL buffer",
                   "lse in the parent, over k's sub-buffer");
    /* o as the parent itself: it holds q's bytes. */
    ov = b;
    ov.o = parent;
    ov.o_offset = 0;
    expect_refused(&c, &ov, &parent, imgs, 1, "q and o overlap",
                   "one OpenCL buffer", "o the parent of q's sub-buffer");
    /* Two sub-buffers of one region are one memory: q, k, v may share. */
    cl_mem k2 = sub(parent, origin[1], nq);
    CU_ASSERT_PTR_NOT_NULL_FATAL(k2);
    ov = b;
    ov.v = k2;
    {
        arena kv = a;
        unsigned char *img = malloc(a.bytes);
        CU_ASSERT_PTR_NOT_NULL_FATAL(img);
        memcpy(img, a.image, a.bytes);
        kv.image = img;
        kv.off[2] = kv.off[1]; /* v reads k's bytes */
        expect_right(&c, &kv, parent, &ov,
                     "v and k on two sub-buffers of "
                     "one region");
        free(img);
    }
    clReleaseMemObject(k2);
    clReleaseMemObject(over);
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(s[i]);
    clReleaseMemObject(parent);
    free(a.image);
    sdpa_case_free(&c);
}

/* ---- host memory and other contexts ------------------------------------ */

static void test_host_memory_and_contexts(void)
{
    attn_sdpa_desc d;
    sdpa_case c;
    arena a;
    cl_int rc;
    shape(&d, ATTN_F32);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 33, 1.0, 0.0, 0), 0);
    const size_t nq = c.nq * 4, no = c.no * 4;
    const size_t packed[5] = {0, nq, 2 * nq, 3 * nq, 3 * nq + no};
    CU_ASSERT_EQUAL_FATAL(
        arena_make(&a, &c, packed, 3 * nq + no + c.nlse * 4 + 64), 0);
    cl_mem m = buffer_of(&a, clctx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    attn_cl_buffers b = buffers_in(m, &a, ATTN_F32);
    const arena *imgs[1] = {&a};

    /* Two buffers on one host allocation: q through one, o through the
     * other, over q's bytes. */
    unsigned char *host = malloc(a.bytes + 4096);
    CU_ASSERT_PTR_NOT_NULL_FATAL(host);
    unsigned char *h = host + (4096 - (uintptr_t)host % 4096) % 4096;
    memcpy(h, a.image, a.bytes);
    cl_mem h1 = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
                               a.bytes, h, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    cl_mem h2 = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
                               a.bytes, h, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    attn_cl_buffers hb = buffers_in(h1, &a, ATTN_F32);
    hb.o = h2;
    hb.o_offset = 8;
    {
        const cl_mem both[2] = {h1, h2};
        const arena *two[2] = {&a, &a};
        expect_refused(&c, &hb, both, two, 2, "q and o overlap", "host memory",
                       "o over q through another buffer on the same host "
                       "memory");
    }
    clReleaseMemObject(h2);
    clReleaseMemObject(h1);
    free(host);

    /* Buffers of another cl_context, one at a time. */
    cl_context other = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
    cl_mem foreign = buffer_of(&a, other);
    CU_ASSERT_PTR_NOT_NULL_FATAL(foreign);
    static const char *const names[5] = {"q", "k", "v", "o", "lse"};
    for (int i = 0; i < 5; i++) {
        attn_cl_buffers fb = b;
        cl_mem *slot[5] = {&fb.q, &fb.k, &fb.v, &fb.o, &fb.lse};
        char what[64], frag[32];
        *slot[i] = foreign;
        snprintf(what, sizeof what, "%s of another cl_context", names[i]);
        snprintf(frag, sizeof frag, "buffer %s belongs", names[i]);
        expect_refused(&c, &fb, &m, imgs, 1, frag, "another OpenCL context",
                       what);
    }
    clReleaseMemObject(foreign);
    clReleaseContext(other);
    clReleaseMemObject(m);
    free(a.image);
    sdpa_case_free(&c);
}

/* ---- suite ------------------------------------------------------------- */

static int suite_init(void)
{
    cl_int rc;
    cl_uint bits = 0;
    attn_options o;
    attn_options_init(&o);
    o.cache_dir = "";
    clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    queue = clCreateCommandQueue(clctx, device, 0, &rc);
    if (rc != CL_SUCCESS ||
        clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof bits,
                        &bits, NULL) != CL_SUCCESS)
        return 1;
    align = bits / 8 ? bits / 8 : 1;
    return attn_context_create_cl(clctx, device, &o, &ctx) != ATTN_OK;
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

static int find_device(void)
{
    cl_platform_id ps[16];
    cl_uint np = 0;
    if (clGetPlatformIDs(16, ps, &np) != CL_SUCCESS)
        return 0;
    for (cl_uint i = 0; i < np && i < 16; i++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(ps[i], CL_DEVICE_TYPE_ALL, 1, &device, &nd) ==
                CL_SUCCESS &&
            nd > 0)
            return 1;
    }
    return 0;
}

int main(void)
{
    static const harness_test tests[] = {
        {"one buffer: inputs may share, outputs may not", test_one_buffer},
        {"sub-buffers of one parent", test_sub_buffers},
        {"shared host memory, buffers of another context",
         test_host_memory_and_contexts},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (!find_device()) {
        printf("SKIP: embedding API aliasing: no OpenCL platform (or "
               "device) on this machine\n");
        return HARNESS_SKIP;
    }
    return harness_main("embedding API aliasing", suite_init, suite_clean,
                        tests);
}
