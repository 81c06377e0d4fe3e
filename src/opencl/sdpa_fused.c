/*
 * Launcher of the fused path: builds cl/fused.cl (one program per dtype) on
 * first use, checks that the shape fits the device's local memory, and
 * enqueues one launch per block of at most GRID_MAX query heads, each
 * waiting on the previous one.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/sdpa_fused.h"

#define N_DTYPES 2
/* Grid limit some GPUs put on the second dimension (in work-groups). */
#define GRID_MAX 65535
#define N_ARGS   29
/* Bytes of the private score tile (tk x vw x nv floats) of one item. */
#define PRIVATE_MAX 65536
#define LOG2E       1.44269504088896340736

typedef struct fused_prog {
    cl_program prog;
    cl_kernel kernel;
    attn_cl_fused_tuning t; /* as built, after fitting to the device */
    cl_ulong static_local;  /* the kernel's own local memory */
    attn_status failed;     /* a failed build, kept until retuned */
    char why[ATTN_MSG_MAX];
} fused_prog;

/* rt->fused.  Guarded by rt->lock. */
typedef struct fused_state {
    attn_cl_fused_tuning tuning;
    fused_prog prog[N_DTYPES]; /* by attn_dtype */
    cl_mem dummy; /* bound to the optional arguments that are absent */
} fused_state;

void attn_cl_fused_tuning_default(attn_cl_fused_tuning *t)
{
    /* Keep in step with the #ifndef defaults of cl/fused.cl. */
    *t = (attn_cl_fused_tuning){
        .vw = 16, .nv = 4, .wg = 1, .tk = 64, .kb = 4, .cb = 8};
}

static void prog_release(fused_prog *p)
{
    if (p->kernel)
        clReleaseKernel(p->kernel);
    if (p->prog)
        clReleaseProgram(p->prog);
    memset(p, 0, sizeof *p);
}

static void state_free(void *fused)
{
    fused_state *st = fused;
    if (!st)
        return;
    for (int i = 0; i < N_DTYPES; i++)
        prog_release(&st->prog[i]);
    if (st->dummy)
        clReleaseMemObject(st->dummy);
    free(st);
}

/* The fused state of rt, created on first use.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, fused_state **out,
                             attn_err *err)
{
    fused_state *st = rt->fused;
    cl_int rc;
    if (st) {
        *out = st;
        return ATTN_OK;
    }
    if (!(st = calloc(1, sizeof *st)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the fused kernel state");
    attn_cl_fused_tuning_default(&st->tuning);
    st->dummy = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, 16, NULL, &rc);
    if (rc != CL_SUCCESS) {
        free(st);
        return attn_fail(err, attn_cl_status(rc), "clCreateBuffer failed: %s",
                         attn_cl_error_name(rc));
    }
    rt->fused = st;
    rt->fused_free = state_free;
    *out = st;
    return ATTN_OK;
}

static int tuning_ok(const attn_cl_fused_tuning *t)
{
    return (t->vw == 1 || t->vw == 2 || t->vw == 4 || t->vw == 8 ||
            t->vw == 16) &&
           t->nv >= 1 && t->nv <= 16 && t->wg >= 1 && t->wg <= 1024 &&
           t->tk >= 1 && t->tk <= 1024 && t->kb >= 1 && t->kb <= 64 &&
           t->tk % t->kb == 0 && t->cb >= 1 && t->cb <= 64 &&
           /* the private score tile of an item */
           t->tk * t->vw * t->nv * (int)sizeof(float) <= PRIVATE_MAX &&
           memchr(t->options, '\0', sizeof t->options) != NULL;
}

attn_status attn_cl_fused_set_tuning(attn_cl_runtime *rt,
                                     const attn_cl_fused_tuning *t,
                                     attn_err *err)
{
    fused_state *st = NULL;
    attn_status s;
    if (!rt || !t)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_fused_set_tuning: NULL argument");
    if (!tuning_ok(t))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "invalid fused tuning: vw must be 1, 2, 4, 8 or 16, "
                         "nv in [1, 16], wg and tk in [1, 1024], kb and cb "
                         "in [1, 64], tk a multiple of kb, tk * vw * nv "
                         "at most 16384");
    pthread_mutex_lock(&rt->lock);
    if ((s = state_get(rt, &st, err)) == ATTN_OK) {
        st->tuning = *t;
        for (int i = 0; i < N_DTYPES; i++)
            prog_release(&st->prog[i]);
    }
    pthread_mutex_unlock(&rt->lock);
    return s;
}

/* ---- building -------------------------------------------------------- */

/* Builds the program of one dtype with tuning t; the kernel's own limit on
 * work-group size (registers) may halve t.wg, which costs a rebuild. */
static attn_status build_prog(attn_cl_runtime *rt, attn_cl_fused_tuning t,
                              int f16, fused_prog *p, attn_err *err)
{
    static const char *const names[] = {"fused.cl"};
    size_t dev_wg = 0, items[16] = {0};
    cl_device_fp_config fp = 0;
    cl_int rc;
    attn_status s = ATTN_ERR_DEVICE;
    char opts[512];

    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                  sizeof dev_wg, &dev_wg, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                                  sizeof items, items, NULL),
                  fail);
    /* fma() is one instruction where the device has it; mad() elsewhere
     * (PoCL does not contract mad into an FMA). */
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_SINGLE_FP_CONFIG,
                                  sizeof fp, &fp, NULL),
                  fail);
    if (items[0] > 0 && items[0] < dev_wg)
        dev_wg = items[0];
    while ((size_t)t.wg > dev_wg && t.wg > 1)
        t.wg /= 2;
    for (int attempt = 0; attempt < 11; attempt++) {
        size_t kwg = 0;
        cl_ulong klocal = 0;
        snprintf(opts, sizeof opts,
                 "-DATTN_F16=%d -DFA_VW=%d -DFA_NV=%d -DFA_WG=%d -DFA_TK=%d "
                 "-DFA_KB=%d -DFA_CB=%d -DFA_FMA=%d %s",
                 f16, t.vw, t.nv, t.wg, t.tk, t.kb, t.cb, (fp & CL_FP_FMA) != 0,
                 t.options);
        if ((s = attn_cl_build_tagged(rt, f16 ? "fused_f16" : "fused_f32",
                                      names, 1, opts, &p->prog, err)))
            return s;
        p->kernel = clCreateKernel(p->prog, "attn_fused", &rc);
        if (rc != CL_SUCCESS) {
            p->kernel = NULL;
            s = attn_fail(err, attn_cl_status(rc),
                          "clCreateKernel(attn_fused): %s",
                          attn_cl_error_name(rc));
            goto fail;
        }
        ATTN_CL_CHECK(clGetKernelWorkGroupInfo(p->kernel, rt->device,
                                               CL_KERNEL_WORK_GROUP_SIZE,
                                               sizeof kwg, &kwg, NULL),
                      fail);
        ATTN_CL_CHECK(clGetKernelWorkGroupInfo(p->kernel, rt->device,
                                               CL_KERNEL_LOCAL_MEM_SIZE,
                                               sizeof klocal, &klocal, NULL),
                      fail);
        if (kwg >= (size_t)t.wg) {
            p->t = t;
            p->static_local = klocal;
            return ATTN_OK;
        }
        prog_release(p);
        if (t.wg == 1)
            break;
        t.wg /= 2;
    }
    prog_release(p);
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "%s cannot run the fused attention kernel: its "
                     "work-group limit is too small",
                     rt->info.name);
fail:
    prog_release(p);
    return s != ATTN_OK ? s : ATTN_ERR_DEVICE;
}

/* The built program of dtype, built now if needed.  Call with rt->lock
 * held. */
static attn_status prog_get(attn_cl_runtime *rt, attn_dtype dtype,
                            fused_prog **out, fused_state **st_out,
                            attn_err *err)
{
    fused_state *st = NULL;
    fused_prog *p = NULL;
    attn_status s;
    if ((s = state_get(rt, &st, err)))
        return s;
    p = &st->prog[dtype];
    if (p->failed)
        return attn_fail(err, p->failed, "%s", p->why);
    if (!p->prog) {
        attn_err e = {{0}};
        if ((s = build_prog(rt, st->tuning, dtype == ATTN_F16, p, &e))) {
            p->failed = s;
            memcpy(p->why, e.msg, sizeof p->why);
            return attn_fail(err, s, "%s", e.msg);
        }
    }
    *out = p;
    *st_out = st;
    return ATTN_OK;
}

/* ---- shapes ---------------------------------------------------------- */

static uint64_t r16(uint64_t x)
{
    return (x + 15) / 16 * 16;
}

/* The local scratch of one work-group for d on tuning t (the layout of
 * cl/fused.cl), in bytes; *dvp receives head_dim_v rounded up to t->cb.
 * Fails with ATTN_ERR_UNSUPPORTED when the shape does not fit the device
 * (local_mem bytes, of which the kernel uses static_local itself) or the
 * kernel's int indexing. */
static attn_status shape_fits(const attn_sdpa_desc *d,
                              const attn_cl_fused_tuning *t, cl_ulong local_mem,
                              cl_ulong static_local, size_t *bytes, int *dvp,
                              attn_err *err)
{
    /* Every factor is below 2^31 and the tuning's below 2^11, so no
     * product here overflows 64 bits. */
    const uint64_t br = (uint64_t)t->vw * (uint64_t)t->nv;
    const uint64_t tk = (uint64_t)t->tk, wg = (uint64_t)t->wg;
    const uint64_t hd = (uint64_t)d->head_dim;
    const uint64_t dv = ((uint64_t)d->head_dim_v + (uint64_t)t->cb - 1) /
                        (uint64_t)t->cb * (uint64_t)t->cb;
    const uint64_t floats = r16(tk * hd) + r16(tk * dv) + r16(hd) +
                            wg * (r16(hd * br) + r16(dv * br));
    /* The kernel's row and key indices (rounded up to whole work-groups
     * and tiles, shifted by seq_kv - seq_q) stay below INT_MAX. */
    const int seq_max = INT_MAX - t->wg * t->vw * t->nv - t->tk;
    if (d->seq_q > seq_max || d->seq_kv > seq_max)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the fused kernel takes sequences of at most %d",
                         seq_max);
    if (tk * hd > INT_MAX || tk * dv > INT_MAX || hd * br > INT_MAX ||
        dv * br > INT_MAX || floats > SIZE_MAX / sizeof(float) ||
        floats * sizeof(float) > local_mem ||
        local_mem - floats * sizeof(float) < static_local)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the fused kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)local_mem);
    *bytes = (size_t)(floats * sizeof(float));
    *dvp = (int)dv;
    return ATTN_OK;
}

/* ---- enqueueing ------------------------------------------------------ */

/* Checks that buffer m holds count elements of elem bytes at offset off. */
static attn_status check_buffer(cl_mem m, const char *name, size_t off,
                                size_t count, size_t elem, attn_err *err)
{
    size_t size = 0, need;
    cl_int rc = clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof size, &size, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s is not a valid cl_mem: %s", name,
                         attn_cl_error_name(rc));
    if (count > SIZE_MAX - off || !attn_mul_size(&need, off + count, elem))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    if (need > size)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "buffer %s holds %zu bytes; the tensor at offset %zu "
                         "needs %zu",
                         name, size, off, need);
    return ATTN_OK;
}

static attn_status check_tensors(const attn_sdpa_desc *d,
                                 const attn_cl_tensors *t, attn_err *err)
{
    const size_t elem = d->dtype == ATTN_F16 ? 2 : sizeof(float);
    const size_t bq = (size_t)d->batch * (size_t)d->heads_q,
                 bkv = (size_t)d->batch * (size_t)d->heads_kv;
    const size_t fq[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim};
    const size_t fk[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim};
    const size_t fv[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim_v};
    const size_t fo[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim_v};
    size_t n[5];
    attn_status s;
    if (!attn_mul_sizes(&n[0], 3, fq) || !attn_mul_sizes(&n[1], 3, fk) ||
        !attn_mul_sizes(&n[2], 3, fv) || !attn_mul_sizes(&n[3], 3, fo) ||
        !attn_mul_size(&n[4], bq, (size_t)d->seq_q))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the tensor sizes overflow");
    if ((s = check_buffer(t->q, "q", t->q_off, n[0], elem, err)) ||
        (s = check_buffer(t->k, "k", t->k_off, n[1], elem, err)) ||
        (s = check_buffer(t->v, "v", t->v_off, n[2], elem, err)) ||
        (s = check_buffer(t->o, "o", t->o_off, n[3], elem, err)))
        return s;
    if (t->lse)
        return check_buffer(t->lse, "lse", t->lse_off, n[4], sizeof(float),
                            err);
    return ATTN_OK;
}

/* A read-only device copy of host data; *out stays NULL when p is NULL. */
static attn_status host_copy(attn_cl_runtime *rt, const void *p, size_t n,
                             size_t elem, const char *name, cl_mem *out,
                             attn_err *err)
{
    size_t bytes;
    cl_int rc;
    *out = NULL;
    if (!p)
        return ATTN_OK;
    if (!attn_mul_size(&bytes, n, elem))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "the size of %s overflows", name);
    *out = clCreateBuffer(rt->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                          bytes, (void *)p, &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        return attn_fail(err, attn_cl_status(rc),
                         "cannot copy %s to the device (%zu bytes): %s", name,
                         bytes, attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

/* Device copies of the host-side inputs of d (NULL where absent). */
static attn_status copy_inputs(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                               cl_mem *bias, cl_mem *kv_len, cl_mem *addw,
                               attn_err *err)
{
    size_t n_bias = 0;
    attn_status s;
    if (d->mask.bias_kind != ATTN_BIAS_NONE) {
        const size_t f[4] = {(size_t)d->batch, (size_t)d->heads_q,
                             (size_t)d->seq_q, (size_t)d->seq_kv};
        const int skip = d->mask.bias_kind == ATTN_BIAS_FULL       ? 0
                         : d->mask.bias_kind == ATTN_BIAS_PER_HEAD ? 1
                                                                   : 2;
        if (!attn_mul_sizes(&n_bias, 4 - skip, f + skip))
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "the size of mask.bias overflows");
    }
    if ((s = host_copy(rt, d->mask.bias, n_bias, sizeof(float), "mask.bias",
                       bias, err)) ||
        (s = host_copy(rt, d->mask.kv_len, (size_t)d->batch, sizeof(int32_t),
                       "mask.kv_len", kv_len, err)) ||
        (s = host_copy(rt,
                       d->score == ATTN_SCORE_ADDITIVE ? d->additive_w : NULL,
                       (size_t)d->heads_q * (size_t)d->head_dim, sizeof(float),
                       "additive_w", addw, err)))
        return s;
    return ATTN_OK;
}

/* The scalar arguments of a call. */
typedef struct call_args {
    cl_mem bias, kv_len, addw, lse;
    cl_ulong q_off, k_off, v_off, o_off, lse_off;
    cl_int has_lse, bias_kind, has_kv_len, additive;
    cl_float scale2;
    cl_int heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v, dvp, causal,
        window;
} call_args;

static void fill_args(const attn_sdpa_desc *d, const attn_cl_tensors *t,
                      call_args *c)
{
    const double scale =
        d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)d->head_dim);
    memset(c, 0, sizeof *c);
    c->q_off = t->q_off;
    c->k_off = t->k_off;
    c->v_off = t->v_off;
    c->o_off = t->o_off;
    c->lse_off = t->lse_off;
    c->has_lse = t->lse != NULL;
    c->bias_kind = (cl_int)d->mask.bias_kind;
    c->has_kv_len = d->mask.kv_len != NULL;
    c->additive = d->score == ATTN_SCORE_ADDITIVE;
    c->scale2 = (cl_float)(c->additive ? LOG2E : scale * LOG2E);
    c->heads_q = d->heads_q;
    c->heads_kv = d->heads_kv;
    c->seq_q = d->seq_q;
    c->seq_kv = d->seq_kv;
    c->head_dim = d->head_dim;
    c->head_dim_v = d->head_dim_v;
    c->causal = d->mask.causal != 0;
    /* A window of seq_kv or more hides nothing; the clamp keeps the
     * kernel's window arithmetic inside int. */
    c->window = d->mask.window > d->seq_kv ? d->seq_kv : d->mask.window;
}

typedef struct karg {
    size_t size;
    const void *value;
} karg;
#define KARG(x)                                                                \
    {                                                                          \
        sizeof(x), &(x)                                                        \
    }

/* Sets the arguments and enqueues one launch per block of at most GRID_MAX
 * query heads, chained by events; *last receives the event of the final
 * launch.  rt->lock held. */
static attn_status enqueue(const fused_prog *p, const attn_sdpa_desc *d,
                           const attn_cl_tensors *t, const call_args *c,
                           size_t local_bytes, cl_command_queue queue,
                           cl_uint n_wait, const cl_event *wait, cl_event *last,
                           attn_err *err)
{
    const karg args[N_ARGS - 2] = {
        KARG(t->q),         KARG(c->q_off),    KARG(t->k),
        KARG(c->k_off),     KARG(t->v),        KARG(c->v_off),
        KARG(t->o),         KARG(c->o_off),    KARG(c->lse),
        KARG(c->lse_off),   KARG(c->has_lse),  KARG(c->bias),
        KARG(c->bias_kind), KARG(c->kv_len),   KARG(c->has_kv_len),
        KARG(c->addw),      KARG(c->additive), KARG(c->scale2),
        KARG(c->heads_q),   KARG(c->heads_kv), KARG(c->seq_q),
        KARG(c->seq_kv),    KARG(c->head_dim), KARG(c->head_dim_v),
        KARG(c->dvp),       KARG(c->causal),   KARG(c->window)};
    const size_t rows = (size_t)p->t.wg * (size_t)p->t.vw * (size_t)p->t.nv;
    const size_t blocks = ((size_t)d->seq_q + rows - 1) / rows;
    const size_t bh_total = (size_t)d->batch * (size_t)d->heads_q;
    cl_event prev = NULL, ev = NULL;
    cl_int rc;
    for (cl_uint i = 0; i < N_ARGS - 2; i++)
        ATTN_CL_CHECK(clSetKernelArg(p->kernel, i, args[i].size, args[i].value),
                      fail);
    ATTN_CL_CHECK(clSetKernelArg(p->kernel, N_ARGS - 1, local_bytes, NULL),
                  fail);
    for (size_t bh0 = 0; bh0 < bh_total; bh0 += GRID_MAX) {
        const size_t nb = bh_total - bh0 < GRID_MAX ? bh_total - bh0 : GRID_MAX;
        const cl_int b0 = (cl_int)bh0;
        const size_t global[2] = {blocks * (size_t)p->t.wg, nb};
        const size_t local[2] = {(size_t)p->t.wg, 1};
        ATTN_CL_CHECK(clSetKernelArg(p->kernel, N_ARGS - 2, sizeof b0, &b0),
                      fail);
        ATTN_CL_CHECK(clEnqueueNDRangeKernel(queue, p->kernel, 2, NULL, global,
                                             local, prev ? 1 : n_wait,
                                             prev ? &prev : wait, &ev),
                      fail);
        if (prev)
            clReleaseEvent(prev);
        prev = ev;
    }
    *last = prev;
    return ATTN_OK;
fail:
    if (prev)
        clReleaseEvent(prev);
    return attn_cl_status(rc);
}

attn_status attn_cl_sdpa_fused(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                               const attn_cl_tensors *t, cl_command_queue queue,
                               cl_uint n_wait, const cl_event *wait,
                               cl_event *done, attn_err *err)
{
    call_args c;
    cl_ulong local_mem = 0;
    cl_mem bias = NULL, kv_len = NULL, addw = NULL;
    cl_event gate = NULL, last = NULL, *wl = NULL;
    fused_state *st = NULL;
    fused_prog *p = NULL;
    size_t local_bytes = 0;
    int dvp = 0;
    attn_status s;
    cl_int rc;

    if (done)
        *done = NULL;
    if (!rt || !d || !t || !queue || !t->q || !t->k || !t->v || !t->o ||
        (n_wait > 0 && !wait))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_sdpa_fused: NULL argument");
    if ((unsigned)d->dtype >= N_DTYPES)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "dtype %d is not an attn_dtype", (int)d->dtype);
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q exceeds the fused kernel's range");
    if ((s = check_tensors(d, t, err)))
        return s;
    rc = clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem,
                         &local_mem, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE,
                         "clGetDeviceInfo(LOCAL_MEM_SIZE) failed: %s",
                         attn_cl_error_name(rc));

    /* Build first (under the lock), so that a device or shape the kernel
     * cannot take fails before anything is copied. */
    pthread_mutex_lock(&rt->lock);
    if ((s = prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK)
        s = shape_fits(d, &p->t, local_mem, p->static_local, &local_bytes, &dvp,
                       err);
    pthread_mutex_unlock(&rt->lock);
    if (s)
        return s;

    if ((s = copy_inputs(rt, d, &bias, &kv_len, &addw, err)))
        goto out;
    /* The gate holds the launches back until all are enqueued. */
    gate = clCreateUserEvent(rt->context, &rc);
    if (rc != CL_SUCCESS) {
        gate = NULL;
        s = attn_fail(err, attn_cl_status(rc), "clCreateUserEvent failed: %s",
                      attn_cl_error_name(rc));
        goto out;
    }
    if (!(wl = malloc(((size_t)n_wait + 1) * sizeof *wl))) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    if (n_wait)
        memcpy(wl, wait, (size_t)n_wait * sizeof *wl);
    wl[n_wait] = gate;

    fill_args(d, t, &c);
    pthread_mutex_lock(&rt->lock);
    /* Again: the tuning may have been reset while the lock was free. */
    if ((s = prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK &&
        (s = shape_fits(d, &p->t, local_mem, p->static_local, &local_bytes,
                        &dvp, err)) == ATTN_OK) {
        c.dvp = dvp;
        c.bias = bias ? bias : st->dummy;
        c.kv_len = kv_len ? kv_len : st->dummy;
        c.addw = addw ? addw : st->dummy;
        c.lse = t->lse ? t->lse : st->dummy;
        s = enqueue(p, d, t, &c, local_bytes, queue, n_wait + 1, wl, &last,
                    err);
    }
    pthread_mutex_unlock(&rt->lock);
    if (s == ATTN_OK &&
        (rc = clSetUserEventStatus(gate, CL_COMPLETE)) != CL_SUCCESS)
        s = attn_fail(err, ATTN_ERR_DEVICE, "clSetUserEventStatus failed: %s",
                      attn_cl_error_name(rc));

out:
    if (gate && s != ATTN_OK)
        clSetUserEventStatus(gate, -1); /* terminates what was enqueued */
    if (s == ATTN_OK && done)
        *done = last;
    else if (last)
        clReleaseEvent(last);
    free(wl);
    if (gate)
        clReleaseEvent(gate);
    if (addw)
        clReleaseMemObject(addw);
    if (kv_len)
        clReleaseMemObject(kv_len);
    if (bias)
        clReleaseMemObject(bias);
    return s;
}
