/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The multi-head layer on an OpenCL device (mha_cl.h): uploads (staged by
 * mha_stage.c), CLBlast GEMMs and the kernels of cl/posenc.cl and
 * cl/heads.cl, all on the runtime's in-order queue; then, once every
 * command of the call is known to have succeeded, one blocking read.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/driver.h"
#include "opencl/launch_common.h"
#include "opencl/mha_cl.h"
#include "opencl/mha_impl.h"

#define MHA_WG 64 /* items per work-group (-DMHA_WG) */

int attn_cl_mha_options(char *buf, size_t cap)
{
    return snprintf(buf, cap, "-DMHA_WG=%d", MHA_WG);
}

#ifndef ATTN_HAVE_CLBLAST

attn_status attn_cl_mha(attn_cl_runtime *rt, const attn_prepared *p,
                        const attn_cl_mha_held *held, const attn_mha_call *c,
                        attn_err *err)
{
    (void)p;
    (void)held;
    (void)c;
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "the multi-head layer on %s needs CLBlast, and libattn "
                     "was built without it",
                     rt ? rt->info.name : "an OpenCL device");
}

#else /* ATTN_HAVE_CLBLAST */

/* clblast_c.h declares functions with () parameter lists. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <clblast_c.h>
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

#define MHA_GROUPS 8192 /* work-groups per grid-stride launch, at most */

enum { K_POSENC, K_ROPE, K_SPLIT, K_MERGE, K_BIAS, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "attn_posenc_add", "attn_rope_table", "attn_heads_split",
    "attn_heads_merge", "attn_bias_add"};

/* rt->mha.  Guarded by rt->lock. */
struct mha_state {
    cl_program prog;
    cl_kernel k[N_KERNELS];
    size_t wg[N_KERNELS]; /* local size of each kernel's launches */
    cl_mem dummy;         /* bound to the arguments that are absent */
    attn_status failed;   /* a failed build, kept */
    char why[ATTN_MSG_MAX];
};

static void state_release_prog(mha_state *st)
{
    for (int i = 0; i < N_KERNELS; i++) {
        if (st->k[i])
            clReleaseKernel(st->k[i]);
        st->k[i] = NULL;
    }
    if (st->prog)
        clReleaseProgram(st->prog);
    st->prog = NULL;
}

static void state_free(void *p)
{
    mha_state *st = p;
    if (!st)
        return;
    state_release_prog(st);
    if (st->dummy)
        clReleaseMemObject(st->dummy);
    free(st);
}

static attn_status build(attn_cl_runtime *rt, mha_state *st, attn_err *err)
{
    static const char *const names[] = {"posenc.cl", "heads.cl"};
    size_t items[16] = {0};
    char opts[64];
    attn_status s;
    cl_int rc;

    attn_cl_mha_options(opts, sizeof opts);
    if ((s = attn_cl_build(rt, names, 2, opts, &st->prog, err)))
        return s;
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                                  sizeof items, items, NULL),
                  fail_rc);
    for (int i = 0; i < N_KERNELS; i++) {
        size_t kwg = 0;
        st->k[i] = clCreateKernel(st->prog, kernel_names[i], &rc);
        if (rc != CL_SUCCESS) {
            st->k[i] = NULL;
            s = attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                          kernel_names[i], attn_cl_error_name(rc));
            goto fail;
        }
        ATTN_CL_CHECK(clGetKernelWorkGroupInfo(st->k[i], rt->device,
                                               CL_KERNEL_WORK_GROUP_SIZE,
                                               sizeof kwg, &kwg, NULL),
                      fail_rc);
        kwg = kwg < items[0] ? kwg : items[0];
        st->wg[i] = kwg < 1 ? 1 : kwg < MHA_WG ? kwg : MHA_WG;
    }
    return ATTN_OK;
fail_rc:
    s = attn_cl_status(rc);
fail:
    state_release_prog(st);
    return s;
}

/* The state of rt with its program built.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, mha_state **out,
                             attn_err *err)
{
    mha_state *st = rt->mha;
    attn_status s;
    cl_int rc;
    if (!st) {
        if (!(st = calloc(1, sizeof *st)))
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "cannot allocate the multi-head layer state");
        st->dummy = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE, 16,
                                            NULL, &rc);
        if (rc != CL_SUCCESS) {
            free(st);
            return attn_fail(err, attn_cl_status(rc),
                             "clCreateBuffer failed: %s",
                             attn_cl_error_name(rc));
        }
        rt->mha = st;
        rt->mha_free = state_free;
    }
    if (st->failed)
        return attn_fail(err, st->failed, "%s", st->why);
    if (!st->prog) {
        attn_err e = {{0}};
        if ((s = build(rt, st, &e))) {
            if (s == ATTN_ERR_BUILD_FAILED) { /* retrying will not help */
                st->failed = s;
                memcpy(st->why, e.msg, sizeof st->why);
            }
            return attn_fail(err, s, "%s", e.msg);
        }
    }
    *out = st;
    return ATTN_OK;
}

/* ---- one call ---------------------------------------------------------- */

typedef struct karg {
    size_t size;
    const void *value;
} karg;
#define KARG(x)                                                                \
    {                                                                          \
        sizeof(x), &(x)                                                        \
    }

/* Launches kernel kid with the n_args arguments a over cols x rows
 * elements (the kernels are 2-D grid-stride loops: dimension 0 over the
 * columns of a row, 1 over the rows). */
static attn_status launch(mha_run *r, int kid, const karg *a, size_t n_args,
                          size_t cols, size_t rows)
{
    attn_cl_runtime *rt = r->rt;
    /* The work-group width is the power of two covering cols (capped at the
     * kernel's): each distinct local size is another compiled variant on
     * some drivers (PoCL keeps one per size), so widths come from a set of
     * at most log2(wg) + 1 values rather than one per column count. */
    size_t wg = 1;
    while (wg < cols && wg < r->st->wg[kid])
        wg <<= 1;
    if (wg > r->st->wg[kid])
        wg = r->st->wg[kid];
    size_t groups = (cols + wg - 1) / wg, global[2], local[2];
    cl_event ev = NULL;
    const char *call = "clSetKernelArg";
    cl_int rc = CL_SUCCESS;
    if (groups > MHA_GROUPS)
        groups = MHA_GROUPS;
    local[0] = wg;
    local[1] = 1;
    global[0] = groups * wg;
    global[1] = rows < MHA_GROUPS / groups ? rows : MHA_GROUPS / groups;
    /* cl_kernel arguments are shared state: hold the lock from the first
     * clSetKernelArg to the enqueue. */
    pthread_mutex_lock(&rt->lock);
    for (size_t i = 0; i < n_args && rc == CL_SUCCESS; i++)
        rc = clSetKernelArg(r->st->k[kid], (cl_uint)i, a[i].size, a[i].value);
    if (rc == CL_SUCCESS) {
        call = "clEnqueueNDRangeKernel";
        rc = ATTN_CL(clEnqueueNDRangeKernel)(rt->queue, r->st->k[kid], 2, NULL,
                                             global, local, 0, NULL, &ev);
    }
    pthread_mutex_unlock(&rt->lock);
    if (rc != CL_SUCCESS)
        return attn_fail(r->err, attn_cl_status(rc), "%s(%s) failed: %s (%d)",
                         call, kernel_names[kid], attn_cl_error_name(rc),
                         (int)rc);
    return attn_cl_mha_stage_event(r, ev, kernel_names[kid]);
}
#define LAUNCH(r, kid, a, cols, rows)                                          \
    launch((r), (kid), (a), sizeof(a) / sizeof *(a), (cols), (rows))

/* CLBlast before 1.6 (Debian bookworm ships 1.5.3) races on its global
 * kernel and database caches when called from several threads at once
 * (heap-use-after-free in Database's constructor under ASan; fixed
 * upstream in 2023).  Its calls only enqueue work, so one process-wide
 * lock around them costs little.  Lock order: never held while taking
 * rt->lock. */
static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;

/* C [m, n] (ldc) = A [m, k] (lda) B^T, B [n, k] (ldb); row-major, offsets
 * in elements. */
static attn_status gemm(mha_run *r, const char *what, size_t m, size_t n,
                        size_t k, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                        size_t b_off, size_t ldb, cl_mem c, size_t c_off,
                        size_t ldc)
{
    cl_event ev = NULL;
    CLBlastStatusCode st;
#ifdef ATTN_FAULT_INJECTION
    /* A GEMM is a launch: CLBlast returns OpenCL's error codes as they
     * are. */
    st = (CLBlastStatusCode)attn_fault_code(ATTN_FAULT_ENQUEUE, r->rt->device);
    if (st == CLBlastSuccess)
#endif
    {
        pthread_mutex_lock(&clblast_lock);
        st = CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                          CLBlastTransposeYes, m, n, k, 1.0f, a, a_off, lda, b,
                          b_off, ldb, 0.0f, c, c_off, ldc, &r->rt->queue, &ev);
        pthread_mutex_unlock(&clblast_lock);
    }
    if (st != CLBlastSuccess) {
        /* Codes above -1000 are OpenCL's own; the others CLBlast's (see
         * clblast_c.h). */
        const int cl = (int)st > -1000;
        if (ev)
            clReleaseEvent(ev);
        return attn_fail(
            r->err, cl ? attn_cl_status((cl_int)st) : ATTN_ERR_DEVICE,
            "CLBlastSgemm (%s, %zu x %zu x %zu) failed: %s (%d)", what, m, n, k,
            cl ? attn_cl_error_name((cl_int)st) : "CLBlast status", (int)st);
    }
    return attn_cl_mha_stage_event(r, ev, what);
}

/* Adds the positional table to x (SINUSOIDAL, LEARNED) and computes the
 * RoPE tables. */
static attn_status enqueue_posenc(mha_run *r, const attn_mha_call *c,
                                  const mha_sizes *z, cl_mem *b)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL;
    const cl_int learned = m->posenc == ATTN_POSENC_LEARNED;
    const cl_int d = m->d_model, sq = c->seq_q, skv = c->seq_kv,
                 nq = (cl_int)z->nq, nkv = (cl_int)z->nkv,
                 pos_q = m->pos_offset, zero = 0, half = (cl_int)z->half;
    const cl_ulong off0 = 0, t_kv = (cl_ulong)z->d * (cl_ulong)sq;
    attn_status s;

    if (learned || m->posenc == ATTN_POSENC_SINUSOIDAL) {
        const cl_mem table = learned ? b[B_PE] : r->st->dummy;
        const cl_mem freq = learned ? r->st->dummy : b[B_FPE];
        const karg aq[] = {
            KARG(b[B_XQ]), KARG(off0),    KARG(nq),    KARG(d),    KARG(sq),
            KARG(pos_q),   KARG(learned), KARG(table), KARG(off0), KARG(freq)};
        const karg akv[] = {
            KARG(b[B_XKV]), KARG(off0),    KARG(nkv),   KARG(d),    KARG(skv),
            KARG(zero),     KARG(learned), KARG(table), KARG(t_kv), KARG(freq)};
        if ((s = LAUNCH(r, K_POSENC, aq, z->pairs, z->nq)) ||
            (!self && (s = LAUNCH(r, K_POSENC, akv, z->pairs, z->nkv))))
            return s;
    }
    if (b[B_CSQ]) {
        const karg aq[] = {KARG(b[B_CSQ]), KARG(sq), KARG(pos_q), KARG(half),
                           KARG(b[B_FROPE])};
        const karg akv[] = {KARG(b[B_CSKV]), KARG(skv), KARG(zero), KARG(half),
                            KARG(b[B_FROPE])};
        if ((s = LAUNCH(r, K_ROPE, aq, z->half, (size_t)sq)) ||
            (!self && (s = LAUNCH(r, K_ROPE, akv, z->half, (size_t)skv))))
            return s;
    }
    return ATTN_OK;
}

/* One head split: the columns at src_off (row stride ld) of the
 * projections into dst [batch, heads, seq, head_dim]. */
static attn_status split(mha_run *r, const attn_mha_call *c, cl_mem *b,
                         size_t src_off, size_t ld, cl_mem dst, size_t bias_off,
                         const float *bias, cl_mem cs, int rows, int heads,
                         int seq)
{
    const cl_ulong so = src_off, zero = 0, bo = bias_off;
    const cl_int l = (cl_int)ld, has_bias = bias != NULL, rope = cs != NULL,
                 hd = c->m->head_dim;
    const cl_mem bb = bias ? b[B_BIAS] : r->st->dummy;
    const cl_mem cc = cs ? cs : r->st->dummy;
    const karg a[] = {KARG(b[B_PROJ]), KARG(so),   KARG(l),    KARG(dst),
                      KARG(zero),      KARG(bb),   KARG(bo),   KARG(has_bias),
                      KARG(cc),        KARG(rope), KARG(rows), KARG(heads),
                      KARG(seq),       KARG(hd)};
    return LAUNCH(r, K_SPLIT, a, (size_t)heads * (((size_t)hd + 1) / 2),
                  (size_t)rows);
}

/* The rectangles of a KV cache step, in bytes: a row is one head_dim;
 * rows of (batch item, kv head) k stand k rows apart.  Slices run over
 * batch * heads_kv. */
static void cache_region(const attn_mha_call *c, size_t rows, size_t region[3])
{
    region[0] = (size_t)c->m->head_dim * sizeof(float);
    region[1] = rows;
    region[2] = (size_t)c->batch * (size_t)c->m->heads_kv;
}

/* The keys (or values) the attention of a cache step sees, in all [B, H,
 * L, D] with L = cache_len + seq_q: the cached rows from the caller's
 * cache (host), then the step's rows from step [B, H, seq_q, D]. */
static attn_status cache_rows(mha_run *r, const attn_mha_call *c,
                              const float *cache, cl_mem step, cl_mem all,
                              const char *what)
{
    const size_t row = (size_t)c->m->head_dim * sizeof(float),
                 keys = (size_t)attn_mha_keys(c);
    const size_t zero[3] = {0, 0, 0}, at[3] = {0, (size_t)c->cache_len, 0};
    size_t region[3];
    cl_event ev = NULL;
    cl_int rc;
    attn_status s;
    if (c->cache_len > 0) {
        cache_region(c, (size_t)c->cache_len, region);
        rc = ATTN_CL(clEnqueueWriteBufferRect)(
            r->rt->queue, all, CL_FALSE, zero, zero, region, row, keys * row,
            row, (size_t)c->cache_cap * row, cache, 0, NULL, &ev);
        if (rc != CL_SUCCESS)
            return attn_fail(r->err, attn_cl_status(rc),
                             "cannot copy the cache's %s to %s: %s (%d)", what,
                             r->rt->info.name, attn_cl_error_name(rc), (int)rc);
        if ((s = attn_cl_mha_stage_event(r, ev, "the cached rows")))
            return s;
    }
    cache_region(c, (size_t)c->seq_q, region);
    rc = ATTN_CL(clEnqueueCopyBufferRect)(r->rt->queue, step, all, zero, at,
                                          region, row, (size_t)c->seq_q * row,
                                          row, keys * row, 0, NULL, &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(r->err, attn_cl_status(rc),
                         "cannot append the step's %s on %s: %s (%d)", what,
                         r->rt->info.name, attn_cl_error_name(rc), (int)rc);
    return attn_cl_mha_stage_event(r, ev, "the step's rows");
}

/* Reads the step's keys or values (step [B, H, seq_q, D]) into rows
 * cache_len .. of the caller's cache.  Blocking. */
static attn_status cache_read(attn_cl_runtime *rt, const attn_mha_call *c,
                              cl_mem step, float *cache, attn_err *err)
{
    const size_t row = (size_t)c->m->head_dim * sizeof(float);
    const size_t zero[3] = {0, 0, 0}, at[3] = {0, (size_t)c->cache_len, 0};
    size_t region[3];
    cl_int rc;
    cache_region(c, (size_t)c->seq_q, region);
    rc = ATTN_CL(clEnqueueReadBufferRect)(
        rt->queue, step, CL_TRUE, zero, at, region, row, (size_t)c->seq_q * row,
        row, (size_t)c->cache_cap * row, cache, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "reading the step's keys and values from %s failed: "
                         "%s (%d)",
                         rt->info.name, attn_cl_error_name(rc), (int)rc);
    return ATTN_OK;
}

/* Projections, head split, attention, merge and output projection. */
static attn_status enqueue_layer(mha_run *r, const attn_mha_call *c,
                                 const mha_sizes *z, cl_mem *b)
{
    const attn_mha_desc *m = c->m;
    const int self = c->x_kv == NULL;
    const size_t d = z->d, dq = z->dq, dkv = z->dkv;
    /* Self-attention: one GEMM gives [q | k | v] rows of dall; cross: q
     * rows of dq, then [k | v] rows of 2 dkv. */
    const size_t ld_kv = self ? z->dall : 2 * dkv;
    const size_t k_off = self ? dq : z->nq * dq;
    const cl_mem cs_kv = b[B_CSKV] ? b[B_CSKV] : b[B_CSQ];
    const cl_int nq = (cl_int)z->nq, hq = m->heads_q, sq = c->seq_q,
                 hd = m->head_dim, dm = m->d_model;
    const cl_ulong off0 = 0, bo_off = z->dall;
    attn_sdpa_desc sd;
    attn_cl_tensors t;
    cl_event ev = NULL;
    attn_status s;

    if (self) {
        if ((s = gemm(r, "q, k, v projection", z->nq, z->dall, d, b[B_XQ], 0, d,
                      b[B_WQKV], 0, d, b[B_PROJ], 0, z->dall)))
            return s;
    } else if ((s = gemm(r, "q projection", z->nq, dq, d, b[B_XQ], 0, d,
                         b[B_WQKV], 0, d, b[B_PROJ], 0, dq)) ||
               (s = gemm(r, "k, v projection", z->nkv, 2 * dkv, d, b[B_XKV], 0,
                         d, b[B_WQKV], dq * d, d, b[B_PROJ], z->nq * dq,
                         2 * dkv))) {
        return s;
    }
    if ((s = split(r, c, b, 0, self ? z->dall : dq, b[B_HQ], 0, m->bq, b[B_CSQ],
                   nq, hq, sq)) ||
        (s = split(r, c, b, k_off, ld_kv, b[B_HK], dq, m->bk, cs_kv,
                   (cl_int)z->nkv, m->heads_kv, c->seq_kv)) ||
        (s = split(r, c, b, k_off + dkv, ld_kv, b[B_HV], dq + dkv, m->bv, NULL,
                   (cl_int)z->nkv, m->heads_kv, c->seq_kv)))
        return s;

    attn_mha_sdpa_desc(c, &sd);
    if ((s = attn_cl_mha_stage_attention(r, &sd)))
        return s;
    memset(&t, 0, sizeof t);
    t.q = b[B_HQ];
    t.k = b[B_HK];
    t.v = b[B_HV];
    t.o = b[B_HO];
    if (c->cache_k) {
        if ((s = cache_rows(r, c, c->cache_k, b[B_HK], b[B_HKC], "k")) ||
            (s = cache_rows(r, c, c->cache_v, b[B_HV], b[B_HVC], "v")))
            return s;
        t.k = b[B_HKC];
        t.v = b[B_HVC];
    }
    {
        const attn_cl_inputs in = {r->ab[A_BIAS].mem, r->ab[A_KV_LEN].mem,
                                   r->ab[A_ADDW].mem, r->ab[A_SCRATCH].mem};
        /* The attention writes the layer's device buffers only. */
        s = attn_cl_run(r->rt, r->p, &sd, &t, &in, 1, r->rt->queue, 0, NULL,
                        &ev, r->err);
    }
    if (s || (s = attn_cl_mha_stage_event(r, ev, "attention")))
        return s;

    {
        const karg a[] = {KARG(b[B_HO]), KARG(off0), KARG(b[B_PROJ]),
                          KARG(off0),    KARG(nq),   KARG(hq),
                          KARG(sq),      KARG(hd)};
        if ((s = LAUNCH(r, K_MERGE, a, z->dq, z->nq)))
            return s;
    }
    if ((s = gemm(r, "output projection", z->nq, d, dq, b[B_PROJ], 0, dq,
                  b[B_WO], 0, dq, b[B_XQ], 0, d)))
        return s;
    if (m->bo) {
        const karg a[] = {KARG(b[B_XQ]), KARG(off0), KARG(b[B_BIAS]),
                          KARG(bo_off),  KARG(nq),   KARG(dm)};
        if ((s = LAUNCH(r, K_BIAS, a, z->d, z->nq)))
            return s;
    }
    return ATTN_OK;
}

attn_status attn_cl_mha(attn_cl_runtime *rt, const attn_prepared *p,
                        const attn_cl_mha_held *held, const attn_mha_call *c,
                        attn_err *err)
{
    mha_run r;
    mha_sizes z;
    cl_mem b[N_BUFS] = {NULL};
    attn_status s;
    cl_int rc;

    if (!rt || !p || !c)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_mha: NULL argument");
    memset(&r, 0, sizeof r);
    r.rt = rt;
    r.p = p;
    r.held = held;
    r.err = err;
    /* Sizes first: a call the device cannot hold is refused before
     * anything is built, created or copied. */
    if ((s = attn_validate_mha(c, err)) ||
        (s = attn_cl_mha_stage_sizes(c, &z, err)) ||
        (s = attn_cl_mha_stage_fit(&r, c, &z, err)))
        return s;
    pthread_mutex_lock(&rt->lock);
    s = state_get(rt, &r.st, err);
    pthread_mutex_unlock(&rt->lock);
    if (s)
        return s;

    if ((s = attn_cl_mha_stage_inputs(&r, c, &z, b)) ||
        (s = enqueue_posenc(&r, c, &z, b)) || (s = enqueue_layer(&r, c, &z, b)))
        goto out;
    /* Every command of the call must have succeeded before y is written.
     * The read is not enqueued behind their events: some drivers (PoCL
     * 3.1) never run nor fail a command enqueued behind a failed event. */
    ATTN_FAULT_DELIVER(1);
    for (cl_uint i = 0; i < r.n_ev && s == ATTN_OK; i++) {
        cl_int st = CL_COMPLETE;
        rc = clWaitForEvents(1, &r.ev[i]);
        if (rc == CL_SUCCESS)
            rc = clGetEventInfo(r.ev[i], CL_EVENT_COMMAND_EXECUTION_STATUS,
                                sizeof st, &st, NULL);
        if (rc == CL_SUCCESS && st < 0)
            rc = st;
        if (rc != CL_SUCCESS)
            s = attn_fail(err, ATTN_ERR_DEVICE,
                          "a command of the multi-head layer failed on %s: "
                          "%s (%d)",
                          rt->info.name, attn_cl_error_name(rc), (int)rc);
    }
    if (s == ATTN_OK && c->cache_k &&
        ((s = cache_read(rt, c, b[B_HK], c->cache_k, err)) == ATTN_OK))
        s = cache_read(rt, c, b[B_HV], c->cache_v, err);
    if (s != ATTN_OK)
        goto out;
    rc =
        ATTN_CL(clEnqueueReadBuffer)(rt->queue, b[B_XQ], CL_TRUE, 0,
                                     z.xq * sizeof(float), c->y, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        s = attn_fail(err, attn_cl_status(rc),
                      "reading y from %s failed: %s (%d)", rt->info.name,
                      attn_cl_error_name(rc), (int)rc);

out:
    /* Nothing enqueued may still read the caller's memory. */
    if (s != ATTN_OK && r.n_ev > 0) {
        ATTN_FAULT_DELIVER(1);
        clFinish(rt->queue);
    }
    for (cl_uint i = 0; i < r.n_ev; i++)
        clReleaseEvent(r.ev[i]);
    attn_cl_mha_stage_release(&r, s == ATTN_OK);
    return s;
}

#endif /* ATTN_HAVE_CLBLAST */
