/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa_cl_buffers on strided tensors in the caller's buffers: q in
 * BSHD, k and v interleaved in one buffer ([batch, seq_kv, 2 * heads_kv,
 * dim], v at an offset into k's buffer), o in BSHD between guards, all at
 * non-zero offsets; F32 and F16, each kernel variant forced by name
 * (those that decline strided descriptors must refuse and write nothing).
 * Checked against the oracle on the contiguous copies; o's gaps and guards
 * untouched.  A buffer too small for a strided extent is refused.  Then
 * packed variable-length sequences (cu_seqlens_q, cu_seqlens_kv) on the
 * caller's buffers, each variant forced, lse at a pitch of total_q; left
 * padding (q_start) with o strided, its padding rows filled on the
 * device.
 *
 * Without an OpenCL platform the suite prints SKIP and exits 77.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn_cl.h"
#include "cases.h"
#include "harness.h"

#define OFF 11 /* elements before each tensor */

static cl_device_id device;
static cl_context clctx;
static cl_command_queue queue;

/* Element offset of row (b, h, i) at strides st. */
static size_t at(const int64_t st[3], size_t b, size_t h, size_t i)
{
    return (size_t)st[0] * b + (size_t)st[1] * h + (size_t)st[2] * i;
}

static void put_rows(char *dst, const char *src, size_t elem, const size_t n[3],
                     size_t w, const int64_t st[3], int to_strided)
{
    size_t r = 0;
    for (size_t b = 0; b < n[0]; b++)
        for (size_t h = 0; h < n[1]; h++)
            for (size_t i = 0; i < n[2]; i++, r++) {
                char *s = dst + at(st, b, h, i) * elem;
                const char *c = src + r * w * elem;
                if (to_strided)
                    memcpy(s, c, w * elem);
                else
                    memcpy((char *)c, s, w * elem);
            }
}

static cl_mem buffer(const void *host, size_t bytes)
{
    cl_int rc;
    cl_mem m = clCreateBuffer(clctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              bytes, (void *)host, &rc);
    return rc == CL_SUCCESS ? m : NULL;
}

/* Runs shape sh with kernel variant kernel (NULL: AUTO), o's rows spare
 * elements apart (0: o in plain BSHD), q_start (NULL: none; [batch]) as
 * the left padding of the queries; 1 when the variant took it and the
 * checks hold, 0 when it declined (checked), -1 on a failure. */
static int run_with(const attn_sdpa_desc *sh, const char *kernel, size_t spare,
                    const int32_t *q_start, const char *what)
{
    const size_t B = (size_t)sh->batch, HQ = (size_t)sh->heads_q,
                 HK = (size_t)sh->heads_kv, SQ = (size_t)sh->seq_q,
                 SK = (size_t)sh->seq_kv, D = (size_t)sh->head_dim,
                 DV = (size_t)sh->head_dim_v;
    const size_t elem = sh->dtype == ATTN_F16 ? 2 : 4;
    const size_t wkv = D > DV ? D : DV; /* k and v rows share a width */
    const size_t nq[3] = {B, HQ, SQ}, nk[3] = {B, HK, SK};
    attn_options o;
    attn_context *ctx = NULL;
    attn_cl_buffers cb = ATTN_CL_BUFFERS_INIT;
    sdpa_case c;
    ref_sdpa_result ref;
    attn_sdpa_desc s;
    size_t qn, kvn, on;
    char *hq, *hkv, *ho, *back, *oc;
    int result = -1;

    attn_options_init(&o);
    o.cache_dir = "";
    o.kernel = kernel;
    if (attn_context_create_cl(clctx, device, &o, &ctx) != ATTN_OK)
        return -1;
    if (sdpa_case_init(&c, sh, 9, 1.5, 0.05, 1) != 0 ||
        !(c.d.q_start = q_start, 1) ||
        ref_sdpa(&c.d, c.q, c.k, c.v, &ref) != 0) {
        attn_context_destroy(ctx);
        return -1;
    }
    s = c.d;
    /* q BSHD; k, v in [B, SK, 2 * HK, wkv]; o BSHD with spare elements
     * after each head's row */
    s.q_strides[0] = (int64_t)(SQ * HQ * D);
    s.q_strides[1] = (int64_t)D;
    s.q_strides[2] = (int64_t)(HQ * D);
    s.k_strides[0] = s.v_strides[0] = (int64_t)(SK * 2 * HK * wkv);
    s.k_strides[1] = s.v_strides[1] = (int64_t)wkv;
    s.k_strides[2] = s.v_strides[2] = (int64_t)(2 * HK * wkv);
    s.o_strides[1] = (int64_t)(DV + spare);
    s.o_strides[2] = (int64_t)(HQ * (DV + spare));
    s.o_strides[0] = (int64_t)(SQ * HQ * (DV + spare));
    qn = OFF + B * SQ * HQ * D;
    kvn = OFF + B * SK * 2 * HK * wkv;
    on = OFF + B * SQ * HQ * (DV + spare) + OFF;
    hq = calloc(qn, elem);
    hkv = calloc(kvn, elem);
    ho = malloc(on * elem);
    back = malloc(on * elem);
    oc = malloc(c.no * elem);
    CU_ASSERT_FATAL(hq && hkv && ho && back && oc);
    put_rows(hq + OFF * elem, c.q, elem, nq, D, s.q_strides, 1);
    put_rows(hkv + OFF * elem, c.k, elem, nk, D, s.k_strides, 1);
    put_rows(hkv + (OFF + HK * wkv) * elem, c.v, elem, nk, DV, s.v_strides, 1);
    for (size_t i = 0; i < on * elem; i++)
        ho[i] = (char)(0x5a ^ i);
    cb.q = buffer(hq, qn * elem);
    cb.k = buffer(hkv, kvn * elem);
    cb.v = cb.k;
    cb.o = buffer(ho, on * elem);
    cb.q_offset = OFF;
    cb.k_offset = OFF;
    cb.v_offset = OFF + HK * wkv;
    cb.o_offset = OFF;
    CU_ASSERT_FATAL(cb.q && cb.k && cb.o);
    {
        attn_status st =
            attn_sdpa_cl_buffers(ctx, &s, &cb, queue, 0, NULL, NULL);
        CU_ASSERT_FATAL(clFinish(queue) == CL_SUCCESS);
        CU_ASSERT_FATAL(clEnqueueReadBuffer(queue, cb.o, CL_TRUE, 0, on * elem,
                                            back, 0, NULL, NULL) == CL_SUCCESS);
        if (st == ATTN_ERR_UNSUPPORTED && kernel &&
            strstr(attn_context_last_error(ctx), kernel)) {
            HARNESS_EXPECT(memcmp(back, ho, on * elem) == 0, what);
            result = 0;
        } else if (st != ATTN_OK) {
            printf("\n  %s: %s: %s\n", what, attn_status_string(st),
                   attn_context_last_error(ctx));
        } else {
            size_t bad = 0;
            unsigned char *mark = calloc(on, 1);
            CU_ASSERT_FATAL(mark != NULL);
            put_rows(back + OFF * elem, oc, elem, nq, DV, s.o_strides, 0);
            result = ref_check_sdpa(what, &c.d, &ref, oc, NULL, NULL) ? 1 : -1;
            for (size_t b = 0; b < B; b++)
                for (size_t h = 0; h < HQ; h++)
                    for (size_t i = 0; i < SQ; i++)
                        memset(mark + OFF + at(s.o_strides, b, h, i), 1, DV);
            for (size_t e = 0; e < on; e++)
                if (!mark[e] &&
                    memcmp(back + e * elem, ho + e * elem, elem) != 0)
                    bad++;
            free(mark);
            HARNESS_EXPECT(bad == 0, what);
            if (bad)
                result = -1;
        }
    }
    /* a q buffer one element short of the strided extent */
    if (result == 1) {
        cl_mem small = buffer(hq, (qn - 1) * elem);
        attn_cl_buffers b2 = cb;
        b2.q = small;
        CU_ASSERT_FATAL(small != NULL);
        HARNESS_EXPECT(attn_sdpa_cl_buffers(ctx, &s, &b2, queue, 0, NULL,
                                            NULL) == ATTN_ERR_INVALID_ARGUMENT,
                       what);
        clReleaseMemObject(small);
    }
    clReleaseMemObject(cb.q);
    clReleaseMemObject(cb.k);
    clReleaseMemObject(cb.o);
    free(hq);
    free(hkv);
    free(ho);
    free(back);
    free(oc);
    ref_sdpa_free(&ref);
    sdpa_case_free(&c);
    attn_context_destroy(ctx);
    return result;
}

static int run(const attn_sdpa_desc *sh, const char *kernel, const char *what)
{
    return run_with(sh, kernel, 2, NULL, what);
}

static attn_sdpa_desc shape(int hq, int hkv, int sq, int skv, int d, int dv,
                            attn_dtype dt)
{
    attn_sdpa_desc s;
    attn_sdpa_desc_init(&s);
    s.batch = 2;
    s.heads_q = hq;
    s.heads_kv = hkv;
    s.seq_q = sq;
    s.seq_kv = skv;
    s.head_dim = d;
    s.head_dim_v = dv;
    s.dtype = dt;
    return s;
}

static void test_variants(void)
{
    const attn_sdpa_desc shapes[] = {shape(4, 2, 37, 37, 32, 32, ATTN_F32),
                                     shape(4, 2, 37, 53, 32, 32, ATTN_F16),
                                     shape(8, 2, 1, 300, 64, 64, ATTN_F32),
                                     shape(4, 4, 3, 150, 32, 32, ATTN_F16),
                                     shape(2, 2, 19, 23, 16, 24, ATTN_F32)};
    for (int k = -1; attn_kernel_name(k < 0 ? 0 : k) || k < 0; k++) {
        const char *name = k < 0 ? NULL : attn_kernel_name(k);
        int took = 0;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            char what[96];
            snprintf(what, sizeof what, "%s, shape %zu", name ? name : "auto",
                     i);
            int r = run(&shapes[i], name, what);
            HARNESS_EXPECT(r >= 0, what);
            took += r == 1;
        }
        /* every variant that takes strides ran some shape; AUTO all */
        if (!name || (strcmp(name, "mma") && strcmp(name, "amdmm") &&
                      strcmp(name, "xmx")))
            HARNESS_EXPECT(took > 0, name ? name : "auto");
        if (!name)
            HARNESS_EXPECT(took == 5, "auto takes every shape");
    }
}

/* Left padding (q_start) with o strided: a fill per row of a head (2
 * spare elements after each), per row of all heads (plain BSHD); F32 and
 * F16, causal top-left (the starts move the diagonal, which then hides
 * every key from a padding row) or not, on AUTO; the F32 shape (whose
 * padding rows only the fills zero) with the spare elements on each
 * variant forced by name (the fills are the same host code for every
 * variant).  The padding rows 0, o's gaps untouched. */
static void test_left_padding(void)
{
    static const int32_t qs[2] = {5, 2};
    attn_sdpa_desc shapes[2] = {shape(4, 2, 19, 23, 32, 32, ATTN_F32),
                                shape(4, 2, 9, 40, 32, 32, ATTN_F16)};
    shapes[1].mask.causal = 1;
    shapes[1].causal_align = ATTN_CAUSAL_TOP_LEFT;
    for (size_t i = 0; i < 2; i++)
        for (size_t spare = 0; spare <= 2; spare += 2) {
            char what[96];
            snprintf(what, sizeof what, "auto, q_start, shape %zu, spare %zu",
                     i, spare);
            HARNESS_EXPECT(run_with(&shapes[i], NULL, spare, qs, what) == 1,
                           what);
        }
    for (int k = 0; attn_kernel_name(k); k++) {
        char what[96];
        snprintf(what, sizeof what, "%s, q_start", attn_kernel_name(k));
        HARNESS_EXPECT(
            run_with(&shapes[0], attn_kernel_name(k), 2, qs, what) >= 0, what);
    }
}

/* A packed variable-length call (cu_seqlens_q, cu_seqlens_kv) on the
 * caller's buffers with kernel variant kernel (NULL: AUTO): four sequences
 * (one without queries, one without keys), GQA, rows in [total, heads,
 * dim] at non-zero offsets, lse [heads_q, total_q] between guards.  Each
 * sequence against the oracle of its own problem; the guards untouched.
 * 1 when it ran and matched, 0 when the forced variant declined (nothing
 * written), -1 on a failure. */
static int run_packed(const char *kernel, int causal, const char *what)
{
    enum { NS = 4, HQ = 4, HK = 2, D = 32, G = 5 };
    static const int lq[NS] = {13, 0, 40, 3}, lk[NS] = {21, 7, 40, 0};
    int32_t cq[NS + 1] = {0}, ck[NS + 1] = {0};
    attn_options o;
    attn_context *ctx = NULL;
    attn_cl_buffers cb = ATTN_CL_BUFFERS_INIT;
    attn_sdpa_desc d;
    float *hq, *hk, *hv, *ho, *hl, *bo, *bl;
    size_t tq, tk, on, ln;
    int result = 1;
    attn_status st;
    for (int b = 0; b < NS; b++) {
        cq[b + 1] = cq[b] + lq[b];
        ck[b + 1] = ck[b] + lk[b];
    }
    tq = (size_t)cq[NS];
    tk = (size_t)ck[NS];
    on = G + tq * HQ * D + G;
    ln = G + HQ * tq + G;
    hq = malloc((G + tq * HQ * D) * sizeof *hq);
    hk = malloc((G + tk * HK * D) * sizeof *hk);
    hv = malloc((G + tk * HK * D) * sizeof *hv);
    ho = malloc(on * sizeof *ho);
    bo = malloc(on * sizeof *bo);
    hl = malloc(ln * sizeof *hl);
    bl = malloc(ln * sizeof *bl);
    CU_ASSERT_FATAL(hq && hk && hv && ho && bo && hl && bl);
    {
        uint32_t x = 12345u;
        float *const arr[3] = {hq, hk, hv};
        const size_t n[3] = {G + tq * HQ * D, G + tk * HK * D, G + tk * HK * D};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < n[a]; i++) {
                x = x * 1664525u + 1013904223u;
                arr[a][i] = (float)(x >> 8) / 16777216.0f * 2.0f - 1.0f;
            }
    }
    for (size_t i = 0; i < on; i++)
        ho[i] = 7.5f;
    for (size_t i = 0; i < ln; i++)
        hl[i] = 9.25f;
    attn_sdpa_desc_init(&d);
    d.batch = NS;
    d.heads_q = HQ;
    d.heads_kv = HK;
    d.seq_q = 40;
    d.seq_kv = 40;
    d.head_dim = d.head_dim_v = D;
    d.mask.causal = causal;
    d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    d.cu_seqlens_q = cq;
    d.cu_seqlens_kv = ck;
    attn_options_init(&o);
    o.cache_dir = "";
    o.kernel = kernel;
    CU_ASSERT_FATAL(attn_context_create_cl(clctx, device, &o, &ctx) == ATTN_OK);
    cb.q = buffer(hq, (G + tq * HQ * D) * sizeof *hq);
    cb.k = buffer(hk, (G + tk * HK * D) * sizeof *hk);
    cb.v = buffer(hv, (G + tk * HK * D) * sizeof *hv);
    cb.o = buffer(ho, on * sizeof *ho);
    cb.lse = buffer(hl, ln * sizeof *hl);
    CU_ASSERT_FATAL(cb.q && cb.k && cb.v && cb.o && cb.lse);
    cb.q_offset = cb.k_offset = cb.v_offset = cb.o_offset = cb.lse_offset = G;
    {
        cl_event done = NULL;
        st = attn_sdpa_cl_buffers(ctx, &d, &cb, queue, 0, NULL, &done);
        if (st == ATTN_OK) {
            CU_ASSERT(clWaitForEvents(1, &done) == CL_SUCCESS);
            clReleaseEvent(done);
        }
    }
    CU_ASSERT_FATAL(clFinish(queue) == CL_SUCCESS);
    CU_ASSERT_FATAL(clEnqueueReadBuffer(queue, cb.o, CL_TRUE, 0,
                                        on * sizeof *bo, bo, 0, NULL,
                                        NULL) == CL_SUCCESS);
    CU_ASSERT_FATAL(clEnqueueReadBuffer(queue, cb.lse, CL_TRUE, 0,
                                        ln * sizeof *bl, bl, 0, NULL,
                                        NULL) == CL_SUCCESS);
    if (st == ATTN_ERR_UNSUPPORTED && kernel &&
        strstr(attn_context_last_error(ctx), kernel)) {
        HARNESS_EXPECT(!memcmp(bo, ho, on * sizeof *bo) &&
                           !memcmp(bl, hl, ln * sizeof *bl),
                       what);
        result = 0;
    } else if (st != ATTN_OK) {
        printf("\n  %s: %s: %s\n", what, attn_status_string(st),
               attn_context_last_error(ctx));
        result = -1;
    } else {
        for (int b = 0; b < NS; b++) {
            attn_sdpa_desc one = d;
            const size_t nq = (size_t)lq[b], nk = (size_t)lk[b];
            float *q1 = malloc((nq ? nq : 1) * HQ * D * sizeof *q1);
            float *k1 = malloc((nk ? nk : 1) * HK * D * sizeof *k1);
            float *v1 = malloc((nk ? nk : 1) * HK * D * sizeof *v1);
            float *o1 = malloc((nq ? nq : 1) * HQ * D * sizeof *o1);
            float *l1 = malloc((nq ? nq : 1) * HQ * sizeof *l1);
            int bad = 0;
            CU_ASSERT_FATAL(q1 && k1 && v1 && o1 && l1);
            /* BHSD copies of the sequence's rows */
            for (size_t h = 0; h < HQ; h++)
                for (size_t i = 0; i < nq; i++) {
                    const size_t r = (size_t)cq[b] + i;
                    memcpy(q1 + (h * nq + i) * D, hq + G + (r * HQ + h) * D,
                           D * sizeof *q1);
                    memcpy(o1 + (h * nq + i) * D, bo + G + (r * HQ + h) * D,
                           D * sizeof *o1);
                    l1[h * nq + i] = bl[G + h * tq + r];
                }
            for (size_t h = 0; h < HK; h++)
                for (size_t j = 0; j < nk; j++) {
                    const size_t r = (size_t)ck[b] + j;
                    memcpy(k1 + (h * nk + j) * D, hk + G + (r * HK + h) * D,
                           D * sizeof *k1);
                    memcpy(v1 + (h * nk + j) * D, hv + G + (r * HK + h) * D,
                           D * sizeof *v1);
                }
            one.batch = 1;
            one.cu_seqlens_q = one.cu_seqlens_kv = NULL;
            one.seq_q = (int)nq;
            one.seq_kv = (int)nk;
            if (nq && !nk) { /* no key: O = 0, lse = -inf */
                for (size_t e = 0; e < nq * HQ * D; e++)
                    bad |= o1[e] != 0.0f;
                for (size_t e = 0; e < nq * HQ; e++)
                    bad |= !(isinf(l1[e]) && l1[e] < 0);
            } else if (nq) {
                ref_sdpa_result r;
                CU_ASSERT_FATAL(ref_sdpa(&one, q1, k1, v1, &r) == 0);
                bad |= !ref_check_sdpa(what, &one, &r, o1, l1, NULL);
                ref_sdpa_free(&r);
            }
            HARNESS_EXPECT(!bad, what);
            result = bad ? -1 : result;
            free(q1), free(k1), free(v1), free(o1), free(l1);
        }
        /* the guards around o and lse */
        for (size_t e = 0; e < G; e++) {
            HARNESS_EXPECT(bo[e] == 7.5f && bo[on - 1 - e] == 7.5f &&
                               bl[e] == 9.25f && bl[ln - 1 - e] == 9.25f,
                           what);
        }
    }
    clReleaseMemObject(cb.q);
    clReleaseMemObject(cb.k);
    clReleaseMemObject(cb.v);
    clReleaseMemObject(cb.o);
    clReleaseMemObject(cb.lse);
    free(hq), free(hk), free(hv), free(ho), free(bo), free(hl), free(bl);
    attn_context_destroy(ctx);
    return result;
}

static void test_packed(void)
{
    for (int k = -1; attn_kernel_name(k < 0 ? 0 : k) || k < 0; k++) {
        const char *name = k < 0 ? NULL : attn_kernel_name(k);
        char what[96];
        snprintf(what, sizeof what, "packed, %s", name ? name : "auto");
        int r = run_packed(name, 0, what);
        HARNESS_EXPECT(r >= 0, what);
        if (!name)
            HARNESS_EXPECT(r == 1, "auto takes packed sequences");
    }
    HARNESS_EXPECT(run_packed(NULL, 1, "packed, causal top-left") == 1,
                   "packed, causal top-left");
}

static int suite_init(void)
{
    cl_int rc;
    clctx = clCreateContext(NULL, 1, &device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        return 1;
    queue = clCreateCommandQueue(clctx, device, 0, &rc);
    return rc != CL_SUCCESS;
}

static int suite_clean(void)
{
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
        {"strided tensors on the caller's buffers, each variant",
         test_variants},
        {"packed sequences on the caller's buffers, each variant", test_packed},
        {"left padding with o strided, each variant", test_left_padding},
        {NULL, NULL}};
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (!find_device()) {
        printf("SKIP: strided embedding: no OpenCL platform (or device) on "
               "this machine\n");
        return HARNESS_SKIP;
    }
    return harness_main("strided embedding", suite_init, suite_clean, tests);
}
