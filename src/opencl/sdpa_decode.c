/*
 * Launcher of the decode path: builds cl/decode.cl (one program per dtype,
 * two kernels) on first use, checks that the shape fits the device, picks
 * the number of key splits and enqueues pass 1 (one launch per block of at
 * most GRID_MAX query heads) and pass 2 (one launch per block of at most
 * GRID_MAX rows), each launch waiting on the previous one.
 */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/launch_common.h"
#include "opencl/sdpa_decode.h"

#define N_DTYPES 2
/* Grid limit some GPUs put on the second dimension (in work-groups). */
#define GRID_MAX       65535
#define N_SPLIT_ARGS   28
#define N_COMBINE_ARGS 10
#define MAX_SPLITS     256
/* Work-groups per compute unit the automatic split count aims at. */
#define GROUPS_PER_CU 4
#define LOG2E         1.44269504088896340736

typedef struct decode_prog {
    cl_program prog;
    cl_kernel split, combine;
    attn_cl_decode_tuning t; /* as built, after fitting to the device */
    cl_ulong static_local;   /* the split kernel's own local memory */
    attn_status failed;      /* a failed build, kept until retuned */
    char why[ATTN_MSG_MAX];
} decode_prog;

/* rt->decode.  Guarded by rt->lock. */
typedef struct decode_state {
    attn_cl_decode_tuning tuning;
    decode_prog prog[N_DTYPES]; /* by attn_dtype */
    cl_mem dummy; /* bound to the optional arguments that are absent */
} decode_state;

void attn_cl_decode_tuning_default(attn_cl_decode_tuning *t)
{
    /* Keep in step with the #ifndef defaults of cl/decode.cl. */
    memset(t, 0, sizeof *t);
    t->wg = 16;
    t->tk = 256;
    t->cwg = 64;
    t->splits = 0;
}

static void prog_release(decode_prog *p)
{
    const cl_kernel k[] = {p->split, p->combine};
    attn_cl_release_prog(p->prog, k, 2);
    memset(p, 0, sizeof *p);
}

static void state_free(void *decode)
{
    decode_state *st = decode;
    if (!st)
        return;
    for (int i = 0; i < N_DTYPES; i++)
        prog_release(&st->prog[i]);
    attn_cl_release_mem(st->dummy);
    free(st);
}

/* The decode state of rt, created on first use.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, decode_state **out,
                             attn_err *err)
{
    void *st = rt->decode;
    attn_status s;
    if (!st) {
        if ((s = attn_cl_state_new(rt, sizeof(decode_state),
                                   offsetof(decode_state, dummy),
                                   "the decode kernel state", &st, err)))
            return s;
        attn_cl_decode_tuning_default(&((decode_state *)st)->tuning);
        rt->decode = st;
        rt->decode_free = state_free;
    }
    *out = st;
    return ATTN_OK;
}

static int tuning_ok(const attn_cl_decode_tuning *t)
{
    return t->wg >= 1 && t->wg <= 1024 && t->tk >= 1 && t->tk <= 4096 &&
           t->tk % t->wg == 0 && t->cwg >= 1 && t->cwg <= 1024 &&
           t->splits >= 0 && t->splits <= MAX_SPLITS &&
           memchr(t->options, '\0', sizeof t->options) != NULL;
}

attn_status attn_cl_decode_set_tuning(attn_cl_runtime *rt,
                                      const attn_cl_decode_tuning *t,
                                      attn_err *err)
{
    decode_state *st = NULL;
    attn_status s;
    if (!rt || !t)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_decode_set_tuning: NULL argument");
    if (!tuning_ok(t))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "invalid decode tuning: wg and cwg must be in "
                         "[1, 1024], tk in [1, 4096] and a multiple of wg, "
                         "splits in [0, %d]",
                         MAX_SPLITS);
    pthread_mutex_lock(&rt->lock);
    if ((s = state_get(rt, &st, err)) == ATTN_OK) {
        /* The split count is a launch parameter: the programs stay. */
        const int rebuild = t->wg != st->tuning.wg || t->tk != st->tuning.tk ||
                            t->cwg != st->tuning.cwg ||
                            strcmp(t->options, st->tuning.options) != 0;
        st->tuning = *t;
        for (int i = 0; rebuild && i < N_DTYPES; i++)
            prog_release(&st->prog[i]);
    }
    pthread_mutex_unlock(&rt->lock);
    return s;
}

/* ---- building -------------------------------------------------------- */

int attn_cl_decode_options(const attn_cl_decode_tuning *t, int f16, char *buf,
                           size_t cap)
{
    return snprintf(buf, cap,
                    "-DATTN_F16=%d -DDC_WG=%d -DDC_TK=%d -DDC_CWG=%d "
                    "-DDC_MAXQ=%d %s",
                    f16, t->wg, t->tk, t->cwg, ATTN_CL_DECODE_MAX_Q,
                    t->options);
}

/* Builds the program of one dtype with tuning t; the kernels' own limits
 * on work-group size (registers) may halve t.wg / t.cwg, which costs a
 * rebuild. */
static attn_status build_prog(attn_cl_runtime *rt, attn_cl_decode_tuning t,
                              int f16, decode_prog *p, attn_err *err)
{
    static const char *const names[] = {"decode.cl"};
    size_t dev_wg = 0;
    attn_status s;
    char opts[512];

    if ((s = attn_cl_wg_side(rt, &dev_wg, err)))
        goto fail;
    while ((size_t)t.wg > dev_wg && t.wg > 1)
        t.wg /= 2;
    while ((size_t)t.cwg > dev_wg && t.cwg > 1)
        t.cwg /= 2;
    for (int attempt = 0; attempt < 22; attempt++) {
        size_t kwg = 0, cwg = 0;
        cl_ulong klocal = 0, clocal = 0;
        /* tk stays a multiple of wg (and at least wg). */
        t.tk = t.tk / t.wg * t.wg;
        attn_cl_decode_options(&t, f16, opts, sizeof opts);
        if ((s = attn_cl_build_tagged(rt, f16 ? "decode_f16" : "decode_f32",
                                      names, 1, opts, &p->prog, err)))
            return s;
        if ((s = attn_cl_create_kernel(p->prog, "attn_decode_split", &p->split,
                                       err)) ||
            (s = attn_cl_create_kernel(p->prog, "attn_decode_combine",
                                       &p->combine, err)) ||
            (s = attn_cl_kernel_limits(rt, p->split, &kwg, &klocal, err)) ||
            (s = attn_cl_kernel_limits(rt, p->combine, &cwg, &clocal, err)))
            goto fail;
        if (kwg >= (size_t)t.wg && cwg >= (size_t)t.cwg) {
            p->t = t;
            p->static_local = klocal;
            return ATTN_OK;
        }
        prog_release(p);
        if ((kwg >= (size_t)t.wg || t.wg == 1) &&
            (cwg >= (size_t)t.cwg || t.cwg == 1))
            break;
        if (kwg < (size_t)t.wg && t.wg > 1)
            t.wg /= 2;
        if (cwg < (size_t)t.cwg && t.cwg > 1)
            t.cwg /= 2;
    }
    prog_release(p);
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "%s cannot run the decode attention kernels: its "
                     "work-group limit is too small",
                     rt->info.name);
fail:
    prog_release(p);
    return s != ATTN_OK ? s : ATTN_ERR_DEVICE;
}

/* The built program of dtype, built now if needed.  Call with rt->lock
 * held. */
static attn_status prog_get(attn_cl_runtime *rt, attn_dtype dtype,
                            decode_prog **out, decode_state **st_out,
                            attn_err *err)
{
    decode_state *st = NULL;
    decode_prog *p = NULL;
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

static uint64_t r4(uint64_t x)
{
    return (x + 3) / 4 * 4;
}

/* The launch geometry of one call. */
typedef struct plan {
    size_t local_bytes; /* the split kernel's scratch */
    size_t part_bytes;  /* the partial buffer */
    cl_ulong po_off;    /* floats before the partial O */
    cl_int key_lo, split_len, n_split;
} plan;

/* Checks that d fits the kernels and the device, and picks the splits.
 * Fails with ATTN_ERR_UNSUPPORTED for a shape the kernels do not take. */
static attn_status make_plan(const attn_sdpa_desc *d,
                             const attn_cl_decode_tuning *t, cl_ulong local_mem,
                             cl_ulong static_local, cl_ulong max_alloc,
                             unsigned compute_units, plan *pl, attn_err *err)
{
    /* Every factor is below 2^31 and the tuning's below 2^13, so no
     * product here overflows 64 bits. */
    const uint64_t nq = (uint64_t)d->seq_q, hd = (uint64_t)d->head_dim,
                   dv = (uint64_t)d->head_dim_v;
    const uint64_t floats = r4(nq * hd) + r4(hd) +
                            nq * ((uint64_t)t->tk + (uint64_t)t->wg + r4(dv));
    const uint64_t bh = (uint64_t)d->batch * (uint64_t)d->heads_q;
    const uint64_t rows = bh * nq;
    const int window = d->mask.window > d->seq_kv ? d->seq_kv : d->mask.window;
    const int off = d->seq_kv - d->seq_q;
    uint64_t span, n_split, split_len, per_split;

    if (d->seq_q > ATTN_CL_DECODE_MAX_Q)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel takes at most %d query rows, "
                         "not %d",
                         ATTN_CL_DECODE_MAX_Q, d->seq_q);
    /* The kernel's key indices (plus one chunk) stay below INT_MAX. */
    if (d->seq_kv > INT_MAX - t->tk || rows > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel takes at most %d keys and %d "
                         "query rows in all",
                         INT_MAX - t->tk, INT_MAX);
    if (nq * hd > INT_MAX || nq * r4(dv) > INT_MAX ||
        floats * sizeof(float) > local_mem ||
        local_mem - floats * sizeof(float) < static_local)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "head_dim %d / head_dim_v %d need more local memory "
                         "than the device has for the decode kernel (%llu "
                         "bytes)",
                         d->head_dim, d->head_dim_v,
                         (unsigned long long)local_mem);

    /* Keys some row may see: [key_lo, seq_kv). */
    pl->key_lo = window > 0 && off - window + 1 > 0 ? off - window + 1 : 0;
    span = (uint64_t)(d->seq_kv - pl->key_lo);
    if (t->splits > 0) {
        n_split = (uint64_t)t->splits;
    } else {
        const uint64_t target =
            (uint64_t)(compute_units ? compute_units : 1) * GROUPS_PER_CU;
        const uint64_t chunks = (span + (uint64_t)t->tk - 1) / (uint64_t)t->tk;
        n_split = (target + bh - 1) / bh;
        if (n_split > chunks)
            n_split = chunks;
    }
    if (n_split > MAX_SPLITS)
        n_split = MAX_SPLITS;
    /* The partial buffer fits one allocation. */
    per_split = rows * (2 + dv) * sizeof(float);
    if (per_split > max_alloc)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel's partial results (%llu bytes) "
                         "exceed the device's largest allocation",
                         (unsigned long long)per_split);
    if (n_split > max_alloc / per_split)
        n_split = max_alloc / per_split;
    if (n_split < 1)
        n_split = 1;
    if (n_split > span)
        n_split = span;
    /* Whole chunks per split, then as many splits as that takes. */
    split_len = (span + n_split - 1) / n_split;
    split_len =
        (split_len + (uint64_t)t->tk - 1) / (uint64_t)t->tk * (uint64_t)t->tk;
    n_split = (span + split_len - 1) / split_len;
    if (split_len > INT_MAX)
        split_len = INT_MAX;

    pl->n_split = (cl_int)n_split;
    pl->split_len = (cl_int)split_len;
    pl->po_off = (cl_ulong)(2 * rows * n_split);
    pl->part_bytes = (size_t)(rows * n_split * (2 + dv) * sizeof(float));
    pl->local_bytes = (size_t)(floats * sizeof(float));
    return ATTN_OK;
}

uint64_t attn_cl_decode_scratch(attn_cl_runtime *rt, const attn_sdpa_desc *d)
{
    attn_cl_decode_tuning t;
    uint64_t global_mem = 0, max_alloc = 0;
    plan pl = {0};
    attn_cl_decode_tuning_default(&t);
    pthread_mutex_lock(&rt->lock);
    if (rt->decode)
        t = ((decode_state *)rt->decode)->tuning;
    pthread_mutex_unlock(&rt->lock);
    attn_cl_mem_limits(rt, &global_mem, &max_alloc);
    /* Local memory is the kernels' concern, not this estimate's. */
    if (make_plan(d, &t, UINT64_MAX, 0, max_alloc, rt->info.compute_units, &pl,
                  NULL) != ATTN_OK)
        return 0;
    return pl.part_bytes;
}

/* ---- enqueueing ------------------------------------------------------ */

/* The scalar arguments of a call. */
typedef struct call_args {
    cl_mem bias, kv_len, addw, lse, part;
    cl_ulong q_off, k_off, v_off, o_off, lse_off;
    cl_int has_lse, bias_kind, has_kv_len, additive;
    cl_float scale2;
    cl_int heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v, causal,
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

/* Sets the arguments of both kernels and enqueues pass 1 (blocks of at
 * most GRID_MAX query heads) and pass 2 (blocks of at most GRID_MAX rows),
 * chained by events; *last receives the event of the final launch.
 * rt->lock held. */
static attn_status enqueue(const decode_prog *p, const attn_sdpa_desc *d,
                           const attn_cl_tensors *t, const call_args *c,
                           const plan *pl, cl_command_queue queue,
                           cl_uint n_wait, const cl_event *wait, cl_event *last,
                           attn_err *err)
{
    const attn_cl_karg sargs[N_SPLIT_ARGS - 2] = {
        KARG(t->q),        KARG(c->q_off),      KARG(t->k),
        KARG(c->k_off),    KARG(t->v),          KARG(c->v_off),
        KARG(c->part),     KARG(c->bias),       KARG(c->bias_kind),
        KARG(c->kv_len),   KARG(c->has_kv_len), KARG(c->addw),
        KARG(c->additive), KARG(c->scale2),     KARG(c->heads_q),
        KARG(c->heads_kv), KARG(c->seq_q),      KARG(c->seq_kv),
        KARG(c->head_dim), KARG(c->head_dim_v), KARG(c->causal),
        KARG(c->window),   KARG(pl->key_lo),    KARG(pl->split_len),
        KARG(pl->n_split), KARG(pl->po_off)};
    const attn_cl_karg cargs[N_COMBINE_ARGS - 1] = {
        KARG(c->part),    KARG(pl->po_off),    KARG(t->o),
        KARG(c->o_off),   KARG(c->lse),        KARG(c->lse_off),
        KARG(c->has_lse), KARG(c->head_dim_v), KARG(pl->n_split)};
    const size_t bh_total = (size_t)d->batch * (size_t)d->heads_q;
    const size_t rows = bh_total * (size_t)d->seq_q;
    cl_event prev = NULL;
    cl_int rc;
    ATTN_CL_CHECK(attn_cl_set_args(p->split, 0, sargs, N_SPLIT_ARGS - 2), fail);
    ATTN_CL_CHECK(
        clSetKernelArg(p->split, N_SPLIT_ARGS - 1, pl->local_bytes, NULL),
        fail);
    ATTN_CL_CHECK(attn_cl_set_args(p->combine, 0, cargs, N_COMBINE_ARGS - 1),
                  fail);
    for (size_t bh0 = 0; bh0 < bh_total; bh0 += GRID_MAX) {
        const size_t nb = bh_total - bh0 < GRID_MAX ? bh_total - bh0 : GRID_MAX;
        const cl_int b0 = (cl_int)bh0;
        const size_t global[2] = {(size_t)pl->n_split * (size_t)p->t.wg, nb};
        const size_t local[2] = {(size_t)p->t.wg, 1};
        ATTN_CL_CHECK(
            clSetKernelArg(p->split, N_SPLIT_ARGS - 2, sizeof b0, &b0), fail);
        ATTN_CL_CHECK(attn_cl_chain(queue, p->split, 2, global, local, n_wait,
                                    wait, &prev),
                      fail);
    }
    for (size_t r0 = 0; r0 < rows; r0 += GRID_MAX) {
        const size_t nr = rows - r0 < GRID_MAX ? rows - r0 : GRID_MAX;
        const cl_int row0 = (cl_int)r0;
        const size_t global[2] = {(size_t)p->t.cwg, nr};
        const size_t local[2] = {(size_t)p->t.cwg, 1};
        ATTN_CL_CHECK(
            clSetKernelArg(p->combine, N_COMBINE_ARGS - 1, sizeof row0, &row0),
            fail);
        ATTN_CL_CHECK(
            attn_cl_chain(queue, p->combine, 2, global, local, 0, NULL, &prev),
            fail);
    }
    *last = prev;
    return ATTN_OK;
fail:
    if (prev)
        clReleaseEvent(prev);
    return attn_cl_status(rc);
}

/* The device's limits the plan needs. */
static attn_status device_limits(attn_cl_runtime *rt, cl_ulong *local_mem,
                                 cl_ulong *max_alloc, cl_uint *cus,
                                 attn_err *err)
{
    uint64_t global_mem = 0;
    cl_int rc;
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE,
                                  sizeof *local_mem, local_mem, NULL),
                  fail);
    /* As recorded: the size checks and the plan agree. */
    attn_cl_mem_limits(rt, &global_mem, max_alloc);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_COMPUTE_UNITS,
                                  sizeof *cus, cus, NULL),
                  fail);
    return ATTN_OK;
fail:
    return ATTN_ERR_DEVICE;
}

attn_status attn_cl_sdpa_decode(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                const attn_cl_tensors *t,
                                cl_command_queue queue, cl_uint n_wait,
                                const cl_event *wait, cl_event *done,
                                attn_err *err)
{
    call_args c;
    plan pl;
    cl_ulong local_mem = 0, max_alloc = 0;
    cl_uint cus = 0;
    cl_mem bias = NULL, kv_len = NULL, addw = NULL, part = NULL;
    cl_event last = NULL;
    attn_cl_gate gate = ATTN_CL_GATE_INIT;
    decode_state *st = NULL;
    decode_prog *p = NULL;
    attn_status s;
    cl_int rc;

    if ((s = attn_cl_check_call("attn_cl_sdpa_decode", rt, d, t, queue, n_wait,
                                wait, done, err)))
        return s;
    if (d->seq_q > ATTN_CL_DECODE_MAX_Q)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the decode kernel takes at most %d query rows, "
                         "not %d",
                         ATTN_CL_DECODE_MAX_Q, d->seq_q);
    if ((size_t)d->batch * (size_t)d->heads_q > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q exceeds the decode kernel's range");
    if ((s = attn_cl_check_tensors(d, t, err)))
        return s;
    if ((s = device_limits(rt, &local_mem, &max_alloc, &cus, err)))
        return s;
    /* The partial results and the input copies must fit the device:
     * checked before anything is built or allocated. */
    if ((s = attn_cl_check_launch_fit(rt, d, attn_cl_decode_scratch(rt, d),
                                      "the decode path", err)))
        return s;

    /* Build first (under the lock), so that a device or shape the kernels
     * cannot take fails before anything is copied. */
    pthread_mutex_lock(&rt->lock);
    if ((s = prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK)
        s = make_plan(d, &p->t, local_mem, p->static_local, max_alloc, cus, &pl,
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
        (s = make_plan(d, &p->t, local_mem, p->static_local, max_alloc, cus,
                       &pl, err)) == ATTN_OK) {
        part = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE,
                                       pl.part_bytes, NULL, &rc);
        if (rc != CL_SUCCESS) {
            part = NULL;
            s = attn_fail(err, attn_cl_status(rc),
                          "cannot allocate the decode partials (%zu bytes): "
                          "%s",
                          pl.part_bytes, attn_cl_error_name(rc));
        } else {
            c.part = part;
            c.bias = bias ? bias : st->dummy;
            c.kv_len = kv_len ? kv_len : st->dummy;
            c.addw = addw ? addw : st->dummy;
            c.lse = t->lse ? t->lse : st->dummy;
            s = enqueue(p, d, t, &c, &pl, queue, n_wait + 1, gate.wl, &last,
                        err);
        }
    }
    pthread_mutex_unlock(&rt->lock);

out:
    s = attn_cl_gate_close(s, &gate, last, done, err);
    attn_cl_release_mem(part);
    attn_cl_release_mem(addw);
    attn_cl_release_mem(kv_len);
    attn_cl_release_mem(bias);
    return s;
}
