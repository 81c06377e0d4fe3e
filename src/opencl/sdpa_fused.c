/*
 * Launcher of the fused path: builds cl/fused.cl (one program per dtype) on
 * first use, checks that the shape fits the device's local memory, and
 * enqueues one launch per block of at most GRID_MAX query heads, each
 * waiting on the previous one.
 */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/launch_common.h"
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
    attn_cl_release_prog(p->prog, &p->kernel, 1);
    memset(p, 0, sizeof *p);
}

static void state_free(void *fused)
{
    fused_state *st = fused;
    if (!st)
        return;
    for (int i = 0; i < N_DTYPES; i++)
        prog_release(&st->prog[i]);
    attn_cl_release_mem(st->dummy);
    free(st);
}

/* The fused state of rt, created on first use.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, fused_state **out,
                             attn_err *err)
{
    void *st = rt->fused;
    attn_status s;
    if (!st) {
        if ((s = attn_cl_state_new(rt, sizeof(fused_state),
                                   offsetof(fused_state, dummy),
                                   "the fused kernel state", &st, err)))
            return s;
        attn_cl_fused_tuning_default(&((fused_state *)st)->tuning);
        rt->fused = st;
        rt->fused_free = state_free;
    }
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

int attn_cl_fused_options(const attn_cl_fused_tuning *t, int f16, int fma,
                          char *buf, size_t cap)
{
    return snprintf(buf, cap,
                    "-DATTN_F16=%d -DFA_VW=%d -DFA_NV=%d -DFA_WG=%d "
                    "-DFA_TK=%d -DFA_KB=%d -DFA_CB=%d -DFA_FMA=%d %s",
                    f16, t->vw, t->nv, t->wg, t->tk, t->kb, t->cb, fma,
                    t->options);
}

/* Builds the program of one dtype with tuning t; the kernel's own limit on
 * work-group size (registers) may halve t.wg, which costs a rebuild. */
static attn_status build_prog(attn_cl_runtime *rt, attn_cl_fused_tuning t,
                              int f16, fused_prog *p, attn_err *err)
{
    static const char *const names[] = {"fused.cl"};
    size_t dev_wg = 0;
    cl_device_fp_config fp = 0;
    cl_int rc;
    attn_status s;
    char opts[512];

    if ((s = attn_cl_wg_side(rt, &dev_wg, err)))
        goto fail;
    /* fma() is one instruction where the device has it; mad() elsewhere
     * (PoCL does not contract mad into an FMA). */
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_SINGLE_FP_CONFIG,
                                  sizeof fp, &fp, NULL),
                  fail);
    while ((size_t)t.wg > dev_wg && t.wg > 1)
        t.wg /= 2;
    for (int attempt = 0; attempt < 11; attempt++) {
        size_t kwg = 0;
        cl_ulong klocal = 0;
        attn_cl_fused_options(&t, f16, (fp & CL_FP_FMA) != 0, opts,
                              sizeof opts);
        if ((s = attn_cl_build_tagged(rt, f16 ? "fused_f16" : "fused_f32",
                                      names, 1, opts, &p->prog, err)))
            return s;
        if ((s = attn_cl_create_kernel(p->prog, "attn_fused", &p->kernel,
                                       err)) ||
            (s = attn_cl_kernel_limits(rt, p->kernel, &kwg, &klocal, err)))
            goto fail;
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
        if ((s = build_prog(rt, st->tuning, dtype == ATTN_F16, p, &e)))
            return attn_cl_keep_failure(s, &e, &p->failed, p->why, err);
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

#define KARG ATTN_CL_KARG

/* Sets the arguments and enqueues one launch per block of at most GRID_MAX
 * query heads, chained by events; *last receives the event of the final
 * launch.  rt->lock held. */
static attn_status enqueue(const fused_prog *p, const attn_sdpa_desc *d,
                           const attn_cl_tensors *t, const call_args *c,
                           size_t local_bytes, cl_command_queue queue,
                           cl_uint n_wait, const cl_event *wait, cl_event *last,
                           attn_err *err)
{
    const attn_cl_karg args[N_ARGS - 2] = {
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
    cl_event prev = NULL;
    cl_int rc;
    ATTN_CL_CHECK(attn_cl_set_args(p->kernel, 0, args, N_ARGS - 2), fail);
    ATTN_CL_CHECK(clSetKernelArg(p->kernel, N_ARGS - 1, local_bytes, NULL),
                  fail);
    for (size_t bh0 = 0; bh0 < bh_total; bh0 += GRID_MAX) {
        const size_t nb = bh_total - bh0 < GRID_MAX ? bh_total - bh0 : GRID_MAX;
        const cl_int b0 = (cl_int)bh0;
        const size_t global[2] = {blocks * (size_t)p->t.wg, nb};
        const size_t local[2] = {(size_t)p->t.wg, 1};
        ATTN_CL_CHECK(clSetKernelArg(p->kernel, N_ARGS - 2, sizeof b0, &b0),
                      fail);
        ATTN_CL_CHECK(attn_cl_chain(queue, p->kernel, 2, global, local, n_wait,
                                    wait, &prev),
                      fail);
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
    cl_event last = NULL;
    attn_cl_gate gate = ATTN_CL_GATE_INIT;
    fused_state *st = NULL;
    fused_prog *p = NULL;
    size_t local_bytes = 0;
    int dvp = 0;
    attn_status s;
    cl_int rc;

    if ((s = attn_cl_check_call("attn_cl_sdpa_fused", rt, d, t, queue, n_wait,
                                wait, done, err)))
        return s;
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q exceeds the fused kernel's range");
    if ((s = attn_cl_check_tensors(d, t, err)))
        return s;
    rc = clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem,
                         &local_mem, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE,
                         "clGetDeviceInfo(LOCAL_MEM_SIZE) failed: %s",
                         attn_cl_error_name(rc));

    /* No scratch: only the input copies must fit the device (checked
     * before anything is built or allocated). */
    if ((s = attn_cl_check_launch_fit(rt, d, 0, "the fused path", err)))
        return s;

    /* Build first (under the lock), so that a device or shape the kernel
     * cannot take fails before anything is copied. */
    pthread_mutex_lock(&rt->lock);
    if ((s = prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK)
        s = shape_fits(d, &p->t, local_mem, p->static_local, &local_bytes, &dvp,
                       err);
    pthread_mutex_unlock(&rt->lock);
    if (s)
        return s;

    /* The gate holds the launches back until all are enqueued. */
    if ((s = attn_cl_copy_inputs(rt, d, &bias, &kv_len, &addw, err)) ||
        (s = attn_cl_gate_open(rt, n_wait, wait, &gate, err)))
        goto out;

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
        s = enqueue(p, d, t, &c, local_bytes, queue, n_wait + 1, gate.wl, &last,
                    err);
    }
    pthread_mutex_unlock(&rt->lock);

out:
    s = attn_cl_gate_close(s, &gate, last, done, err);
    attn_cl_release_mem(addw);
    attn_cl_release_mem(kv_len);
    attn_cl_release_mem(bias);
    return s;
}
