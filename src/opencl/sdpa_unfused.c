/*
 * Launcher of the three-kernel path: builds the programs (one per dtype) on
 * first use, plans query blocks that keep the score buffer within its
 * budget, and enqueues score -> softmax -> aggregate per block, each command
 * waiting on the previous one.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/sdpa_cl.h"

#define SCORE_BUDGET_MAX ((size_t)256 << 20)
/* Grid limits some GPUs put on the second and third dimension (in
 * work-groups); blocks never ask for more. */
#define GRID_MAX 65535
#define N_DTYPES 2

typedef struct unfused_prog {
    cl_program prog;
    cl_kernel score, softmax, aggregate;
    attn_cl_unfused_tuning t; /* as built, after fitting to the device */
    attn_status failed;       /* a failed build, kept until retuned */
    char why[ATTN_MSG_MAX];
} unfused_prog;

/* rt->launch.  Guarded by rt->lock. */
typedef struct unfused_state {
    attn_cl_unfused_tuning tuning;
    unfused_prog prog[N_DTYPES]; /* by attn_dtype */
    cl_mem dummy; /* bound to the optional arguments that are absent */
} unfused_state;

void attn_cl_unfused_tuning_default(attn_cl_unfused_tuning *t)
{
    /* Keep in step with the #ifndef defaults of the cl/ files. */
    *t = (attn_cl_unfused_tuning){.sc_tq = 32,
                                  .sc_tk = 64,
                                  .sc_td = 16,
                                  .sc_wq = 4,
                                  .sc_wk = 16,
                                  .sm_wg = 64,
                                  .ag_tq = 32,
                                  .ag_tv = 64,
                                  .ag_tj = 16,
                                  .ag_wq = 4,
                                  .ag_wv = 16};
}

static void prog_release(unfused_prog *p)
{
    if (p->aggregate)
        clReleaseKernel(p->aggregate);
    if (p->softmax)
        clReleaseKernel(p->softmax);
    if (p->score)
        clReleaseKernel(p->score);
    if (p->prog)
        clReleaseProgram(p->prog);
    memset(p, 0, sizeof *p);
}

static void state_free(void *launch)
{
    unfused_state *st = launch;
    if (!st)
        return;
    for (int i = 0; i < N_DTYPES; i++)
        prog_release(&st->prog[i]);
    if (st->dummy)
        clReleaseMemObject(st->dummy);
    free(st);
}

/* The launch state of rt, created on first use.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, unfused_state **out,
                             attn_err *err)
{
    unfused_state *st = rt->launch;
    cl_int rc;
    if (st) {
        *out = st;
        return ATTN_OK;
    }
    if (!(st = calloc(1, sizeof *st)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the kernel launch state");
    attn_cl_unfused_tuning_default(&st->tuning);
    st->dummy = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, 16, NULL, &rc);
    if (rc != CL_SUCCESS) {
        free(st);
        return attn_fail(err, attn_cl_status(rc), "clCreateBuffer failed: %s",
                         attn_cl_error_name(rc));
    }
    rt->launch = st;
    rt->launch_free = state_free;
    *out = st;
    return ATTN_OK;
}

static int tuning_ok(const attn_cl_unfused_tuning *t)
{
    const int v[] = {t->sc_tq, t->sc_tk, t->sc_td, t->sc_wq, t->sc_wk, t->sm_wg,
                     t->ag_tq, t->ag_tv, t->ag_tj, t->ag_wq, t->ag_wv};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 1 || v[i] > 1024)
            return 0;
    return t->sc_tq % t->sc_wq == 0 && t->sc_tk % t->sc_wk == 0 &&
           t->ag_tq % t->ag_wq == 0 && t->ag_tv % t->ag_wv == 0 &&
           (t->sm_wg & (t->sm_wg - 1)) == 0 &&
           memchr(t->options, '\0', sizeof t->options) != NULL;
}

attn_status attn_cl_unfused_set_tuning(attn_cl_runtime *rt,
                                       const attn_cl_unfused_tuning *t,
                                       attn_err *err)
{
    unfused_state *st = NULL;
    attn_status s;
    if (!rt || !t)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_unfused_set_tuning: NULL argument");
    if (!tuning_ok(t))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "invalid three-kernel tuning: sizes must be in "
                         "[1, 1024], tiles multiples of their work-groups "
                         "and the softmax work-group a power of two");
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

/* Halves a work-group side (keeping it a divisor of its tile); 0 when it
 * is 1 already. */
static int halve(int *w)
{
    if (*w <= 1)
        return 0;
    *w = *w % 2 == 0 ? *w / 2 : 1;
    return 1;
}

static size_t score_local(const attn_cl_unfused_tuning *t)
{
    return ((size_t)(t->sc_tq + t->sc_tk) * (size_t)(t->sc_td + 1) +
            (size_t)t->sc_td) *
           sizeof(float);
}

static size_t aggregate_local(const attn_cl_unfused_tuning *t)
{
    return ((size_t)t->ag_tq * (size_t)(t->ag_tj + 1) +
            (size_t)t->ag_tj * (size_t)t->ag_tv) *
           sizeof(float);
}

/* Shrinks t until the work-groups fit wg[k] items (k: score, softmax,
 * aggregate), the sides fit the device's item limits and the local tiles
 * fit local_mem.  Returns 0 when that is impossible. */
static int fit(attn_cl_unfused_tuning *t, const size_t wg[3],
               const size_t items[2], cl_ulong local_mem)
{
    while ((size_t)t->sc_wk > items[0])
        if (!halve(&t->sc_wk))
            return 0;
    while ((size_t)t->sc_wq > items[1])
        if (!halve(&t->sc_wq))
            return 0;
    while ((size_t)t->sc_wq * (size_t)t->sc_wk > wg[0])
        if (!halve(t->sc_wq >= t->sc_wk ? &t->sc_wq : &t->sc_wk))
            return 0;
    while ((size_t)t->sm_wg > wg[1] || (size_t)t->sm_wg > items[0] ||
           (size_t)t->sm_wg * sizeof(float) > local_mem)
        if (!halve(&t->sm_wg))
            return 0;
    while ((size_t)t->ag_wv > items[0])
        if (!halve(&t->ag_wv))
            return 0;
    while ((size_t)t->ag_wq > items[1])
        if (!halve(&t->ag_wq))
            return 0;
    while ((size_t)t->ag_wq * (size_t)t->ag_wv > wg[2])
        if (!halve(t->ag_wq >= t->ag_wv ? &t->ag_wq : &t->ag_wv))
            return 0;
    while (score_local(t) > local_mem)
        if (!halve(&t->sc_td))
            return 0;
    while (aggregate_local(t) > local_mem)
        if (!halve(&t->ag_tj))
            return 0;
    return 1;
}

static attn_status make_kernel(cl_program prog, const char *name,
                               cl_kernel *out, attn_err *err)
{
    cl_int rc;
    *out = clCreateKernel(prog, name, &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        return attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                         name, attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

/* Builds the program of one dtype with tuning t; the kernels' own limits
 * (registers) may shrink t further, which costs a rebuild. */
static attn_status build_prog(attn_cl_runtime *rt, attn_cl_unfused_tuning t,
                              int f16, unfused_prog *p, attn_err *err)
{
    static const char *const names[] = {"score.cl", "softmax.cl",
                                        "aggregate.cl"};
    size_t dev_wg = 0, items[16] = {0}, wg[3];
    cl_ulong local_mem = 0;
    cl_int rc;
    attn_status s = ATTN_ERR_DEVICE;
    char opts[512];

    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                  sizeof dev_wg, &dev_wg, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                                  sizeof items, items, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE,
                                  sizeof local_mem, &local_mem, NULL),
                  fail);
    wg[0] = wg[1] = wg[2] = dev_wg;
    for (int attempt = 0; attempt < 16; attempt++) {
        size_t need[3];
        cl_kernel ks[3];
        int fits = 1;
        if (!fit(&t, wg, items, local_mem))
            break;
        need[0] = (size_t)t.sc_wq * (size_t)t.sc_wk;
        need[1] = (size_t)t.sm_wg;
        need[2] = (size_t)t.ag_wq * (size_t)t.ag_wv;
        snprintf(opts, sizeof opts,
                 "-DATTN_F16=%d -DSC_TQ=%d -DSC_TK=%d -DSC_TD=%d -DSC_WQ=%d "
                 "-DSC_WK=%d -DSM_WG=%d -DAG_TQ=%d -DAG_TV=%d -DAG_TJ=%d "
                 "-DAG_WQ=%d -DAG_WV=%d %s",
                 f16, t.sc_tq, t.sc_tk, t.sc_td, t.sc_wq, t.sc_wk, t.sm_wg,
                 t.ag_tq, t.ag_tv, t.ag_tj, t.ag_wq, t.ag_wv, t.options);
        if ((s = attn_cl_build_tagged(rt, f16 ? "unfused_f16" : "unfused_f32",
                                      names, 3, opts, &p->prog, err)))
            return s;
        if ((s = make_kernel(p->prog, "attn_score", &p->score, err)) ||
            (s = make_kernel(p->prog, "attn_softmax", &p->softmax, err)) ||
            (s = make_kernel(p->prog, "attn_aggregate", &p->aggregate, err)))
            goto fail;
        ks[0] = p->score;
        ks[1] = p->softmax;
        ks[2] = p->aggregate;
        /* A kernel may allow fewer items than the device (registers) or
         * need more local memory than the tiles (the compiler's own). */
        for (int i = 0; i < 3; i++) {
            size_t kwg;
            cl_ulong klocal;
            ATTN_CL_CHECK(clGetKernelWorkGroupInfo(ks[i], rt->device,
                                                   CL_KERNEL_WORK_GROUP_SIZE,
                                                   sizeof kwg, &kwg, NULL),
                          fail);
            ATTN_CL_CHECK(clGetKernelWorkGroupInfo(
                              ks[i], rt->device, CL_KERNEL_LOCAL_MEM_SIZE,
                              sizeof klocal, &klocal, NULL),
                          fail);
            if (kwg < need[i]) {
                wg[i] = kwg;
                fits = 0;
            }
            if (klocal > local_mem) {
                int *depth = i == 0 ? &t.sc_td : i == 1 ? &t.sm_wg : &t.ag_tj;
                if (!halve(depth))
                    goto too_small;
                fits = 0;
            }
        }
        if (fits) {
            p->t = t;
            return ATTN_OK;
        }
        prog_release(p);
    }
too_small:
    prog_release(p);
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "%s cannot run the attention kernels: work-group or "
                     "local memory limits too small",
                     rt->info.name);
fail:
    prog_release(p);
    return s != ATTN_OK ? s : ATTN_ERR_DEVICE;
}

/* The built program of dtype, built now if needed.  Call with rt->lock
 * held. */
static attn_status prog_get(attn_cl_runtime *rt, attn_dtype dtype,
                            unfused_prog **out, unfused_state **st_out,
                            attn_err *err)
{
    unfused_state *st = NULL;
    unfused_prog *p = NULL;
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

/* ---- planning -------------------------------------------------------- */

/* Query blocks: n_bh whole heads of n_i rows, or n_i rows of one head. */
typedef struct plan {
    size_t bh_total; /* batch * heads_q */
    size_t n_bh, n_i;
    size_t s_bytes; /* the score buffer */
} plan;

static size_t score_budget(cl_ulong max_alloc)
{
    const char *env = getenv("ATTN_CL_SCORE_BUDGET");
    size_t b = max_alloc / 2 < SCORE_BUDGET_MAX ? (size_t)(max_alloc / 2)
                                                : SCORE_BUDGET_MAX;
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        if (*end == '\0' && v > 0)
            b = v > SIZE_MAX ? SIZE_MAX : (size_t)v;
    }
    return b > max_alloc ? (size_t)max_alloc : b;
}

static attn_status make_plan(const attn_sdpa_desc *d, cl_ulong max_alloc,
                             int row_tile, plan *pl, attn_err *err)
{
    const size_t seq_q = (size_t)d->seq_q;
    const size_t row_bytes = (size_t)d->seq_kv * sizeof(float);
    size_t rows;
    pl->bh_total = (size_t)d->batch * (size_t)d->heads_q;
    if (pl->bh_total > INT_MAX)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "batch * heads_q = %zu exceeds the kernels' range",
                         pl->bh_total);
    if (row_bytes > max_alloc)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "one row of scores (%zu bytes) exceeds the device's "
                         "largest allocation (%llu bytes)",
                         row_bytes, (unsigned long long)max_alloc);
    rows = score_budget(max_alloc) / row_bytes;
    if (rows < 1)
        rows = 1;
    if (rows >= seq_q) {
        pl->n_i = seq_q;
        pl->n_bh = rows / seq_q;
        if (pl->n_bh > pl->bh_total)
            pl->n_bh = pl->bh_total;
        if (pl->n_bh > GRID_MAX)
            pl->n_bh = GRID_MAX;
    } else {
        pl->n_bh = 1;
        pl->n_i =
            rows > (size_t)row_tile ? rows - rows % (size_t)row_tile : rows;
    }
    if (pl->n_i > GRID_MAX)
        pl->n_i = GRID_MAX;
    pl->s_bytes = pl->n_bh * pl->n_i * row_bytes; /* <= budget */
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
    size_t n[5];
    attn_status s;
    const size_t fq[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim};
    const size_t fk[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim};
    const size_t fv[] = {bkv, (size_t)d->seq_kv, (size_t)d->head_dim_v};
    const size_t fo[] = {bq, (size_t)d->seq_q, (size_t)d->head_dim_v};
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

/* A read-only copy of host data, or the dummy buffer when p is NULL. */
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

typedef struct karg {
    size_t size;
    const void *value;
} karg;
#define KARG(x)                                                                \
    {                                                                          \
        sizeof(x), &(x)                                                        \
    }

static cl_int set_args(cl_kernel k, cl_uint first, const karg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cl_int rc =
            clSetKernelArg(k, first + (cl_uint)i, a[i].size, a[i].value);
        if (rc != CL_SUCCESS)
            return rc;
    }
    return CL_SUCCESS;
}

static size_t round_up(size_t n, size_t tile, size_t wg)
{
    return (n + tile - 1) / tile * wg;
}

/* Inputs of one call, as kernel arguments. */
typedef struct call_args {
    cl_mem bias, kv_len, addw, lse, s;
    cl_int bias_kind, has_kv_len, additive, has_lse;
    cl_float scale;
    cl_int heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v, causal,
        window;
    cl_ulong q_off, k_off, v_off, o_off, lse_off;
} call_args;

/* Sets the arguments every block shares.  rt->lock held. */
static attn_status set_call_args(const unfused_prog *p,
                                 const attn_cl_tensors *t, call_args *c,
                                 attn_err *err)
{
    cl_int rc;
    const karg score[] = {
        KARG(t->q),         KARG(c->q_off),    KARG(t->k),
        KARG(c->k_off),     KARG(c->s),        KARG(c->bias),
        KARG(c->bias_kind), KARG(c->kv_len),   KARG(c->has_kv_len),
        KARG(c->addw),      KARG(c->additive), KARG(c->scale),
        KARG(c->heads_q),   KARG(c->heads_kv), KARG(c->seq_q),
        KARG(c->seq_kv),    KARG(c->head_dim), KARG(c->causal),
        KARG(c->window)};
    const karg softmax[] = {KARG(c->s),       KARG(c->lse),   KARG(c->lse_off),
                            KARG(c->has_lse), KARG(c->seq_q), KARG(c->seq_kv)};
    const karg aggregate[] = {
        KARG(c->s),          KARG(t->v),       KARG(c->v_off),
        KARG(t->o),          KARG(c->o_off),   KARG(c->kv_len),
        KARG(c->has_kv_len), KARG(c->heads_q), KARG(c->heads_kv),
        KARG(c->seq_q),      KARG(c->seq_kv),  KARG(c->head_dim_v),
        KARG(c->causal),     KARG(c->window)};
    ATTN_CL_CHECK(set_args(p->score, 0, score, sizeof score / sizeof *score),
                  fail);
    ATTN_CL_CHECK(
        set_args(p->softmax, 0, softmax, sizeof softmax / sizeof *softmax),
        fail);
    ATTN_CL_CHECK(set_args(p->aggregate, 0, aggregate,
                           sizeof aggregate / sizeof *aggregate),
                  fail);
    return ATTN_OK;
fail:
    return attn_cl_status(rc);
}

/* Enqueues the three kernels of every block, chained by events; *last
 * receives the event of the final command.  rt->lock held. */
static attn_status enqueue_blocks(const unfused_prog *p, const plan *pl,
                                  const attn_sdpa_desc *d,
                                  cl_command_queue queue, cl_uint n_wait,
                                  const cl_event *wait, cl_event *last,
                                  attn_err *err)
{
    const attn_cl_unfused_tuning *tu = &p->t;
    cl_event prev = NULL, ev = NULL;
    cl_int rc;
    for (size_t bh0 = 0; bh0 < pl->bh_total; bh0 += pl->n_bh) {
        for (size_t i0 = 0; i0 < (size_t)d->seq_q; i0 += pl->n_i) {
            const size_t nb =
                pl->bh_total - bh0 < pl->n_bh ? pl->bh_total - bh0 : pl->n_bh;
            const size_t ni = (size_t)d->seq_q - i0 < pl->n_i
                                  ? (size_t)d->seq_q - i0
                                  : pl->n_i;
            const cl_int b0 = (cl_int)bh0, r0 = (cl_int)i0, n = (cl_int)ni;
            const karg blk[] = {KARG(b0), KARG(r0), KARG(n)};
            const size_t sc_g[3] = {
                round_up((size_t)d->seq_kv, (size_t)tu->sc_tk,
                         (size_t)tu->sc_wk),
                round_up(ni, (size_t)tu->sc_tq, (size_t)tu->sc_wq), nb};
            const size_t sc_l[3] = {(size_t)tu->sc_wk, (size_t)tu->sc_wq, 1};
            const size_t sm_g[2] = {(size_t)tu->sm_wg * ni, nb};
            const size_t sm_l[2] = {(size_t)tu->sm_wg, 1};
            const size_t ag_g[3] = {
                round_up((size_t)d->head_dim_v, (size_t)tu->ag_tv,
                         (size_t)tu->ag_wv),
                round_up(ni, (size_t)tu->ag_tq, (size_t)tu->ag_wq), nb};
            const size_t ag_l[3] = {(size_t)tu->ag_wv, (size_t)tu->ag_wq, 1};
            ATTN_CL_CHECK(set_args(p->score, 19, blk, 3), fail);
            ATTN_CL_CHECK(set_args(p->softmax, 6, blk, 3), fail);
            ATTN_CL_CHECK(set_args(p->aggregate, 14, blk, 3), fail);
            ATTN_CL_CHECK(clEnqueueNDRangeKernel(queue, p->score, 3, NULL, sc_g,
                                                 sc_l, prev ? 1 : n_wait,
                                                 prev ? &prev : wait, &ev),
                          fail);
            if (prev)
                clReleaseEvent(prev);
            prev = ev;
            ATTN_CL_CHECK(clEnqueueNDRangeKernel(queue, p->softmax, 2, NULL,
                                                 sm_g, sm_l, 1, &prev, &ev),
                          fail);
            clReleaseEvent(prev);
            prev = ev;
            ATTN_CL_CHECK(clEnqueueNDRangeKernel(queue, p->aggregate, 3, NULL,
                                                 ag_g, ag_l, 1, &prev, &ev),
                          fail);
            clReleaseEvent(prev);
            prev = ev;
        }
    }
    *last = prev;
    return ATTN_OK;
fail:
    if (prev)
        clReleaseEvent(prev);
    return attn_cl_status(rc);
}

/* The scalar arguments of a call. */
static void fill_args(const attn_sdpa_desc *d, const attn_cl_tensors *t,
                      call_args *c)
{
    memset(c, 0, sizeof *c);
    c->bias_kind = (cl_int)d->mask.bias_kind;
    c->has_kv_len = d->mask.kv_len != NULL;
    c->additive = d->score == ATTN_SCORE_ADDITIVE;
    c->has_lse = t->lse != NULL;
    c->scale = d->scale != 0.0f ? d->scale
                                : (cl_float)(1.0 / sqrt((double)d->head_dim));
    c->heads_q = d->heads_q;
    c->heads_kv = d->heads_kv;
    c->seq_q = d->seq_q;
    c->seq_kv = d->seq_kv;
    c->head_dim = d->head_dim;
    c->head_dim_v = d->head_dim_v;
    c->causal = d->mask.causal != 0;
    c->window = d->mask.window;
    c->q_off = t->q_off;
    c->k_off = t->k_off;
    c->v_off = t->v_off;
    c->o_off = t->o_off;
    c->lse_off = t->lse_off;
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
        int skip = d->mask.bias_kind == ATTN_BIAS_FULL       ? 0
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

attn_status attn_cl_sdpa_unfused(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                 const attn_cl_tensors *t,
                                 cl_command_queue queue, cl_uint n_wait,
                                 const cl_event *wait, cl_event *done,
                                 attn_err *err)
{
    call_args c;
    plan pl = {0};
    cl_ulong max_alloc = 0;
    cl_mem bias = NULL, kv_len = NULL, addw = NULL, sbuf = NULL;
    cl_event gate = NULL, last = NULL, *wl = NULL;
    unfused_state *st = NULL;
    unfused_prog *p = NULL;
    attn_status s;
    cl_int rc;
    int row_tile;

    if (done)
        *done = NULL;
    if (!rt || !d || !t || !queue || !t->q || !t->k || !t->v || !t->o ||
        (n_wait > 0 && !wait))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_sdpa_unfused: NULL argument");
    if ((unsigned)d->dtype >= N_DTYPES)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "dtype %d is not an attn_dtype", (int)d->dtype);
    if ((s = check_tensors(d, t, err)))
        return s;
    rc = clGetDeviceInfo(rt->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                         sizeof max_alloc, &max_alloc, NULL);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE,
                         "clGetDeviceInfo(MAX_MEM_ALLOC_SIZE) failed: %s",
                         attn_cl_error_name(rc));

    /* Build first (under the lock), so that a device that cannot run the
     * kernels fails before anything is copied. */
    pthread_mutex_lock(&rt->lock);
    s = prog_get(rt, d->dtype, &p, &st, err);
    row_tile = s == ATTN_OK ? p->t.sc_tq : 1;
    pthread_mutex_unlock(&rt->lock);
    if (s || (s = make_plan(d, max_alloc, row_tile, &pl, err)))
        return s;

    if ((s = copy_inputs(rt, d, &bias, &kv_len, &addw, err)))
        goto out;
    sbuf =
        clCreateBuffer(rt->context, CL_MEM_READ_WRITE, pl.s_bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        sbuf = NULL;
        s = attn_fail(err, attn_cl_status(rc),
                      "cannot allocate the score buffer (%zu bytes): %s",
                      pl.s_bytes, attn_cl_error_name(rc));
        goto out;
    }
    /* The gate holds every command back until all are enqueued. */
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
    c.s = sbuf;
    pthread_mutex_lock(&rt->lock);
    /* Again: the tuning may have been reset while the lock was free. */
    if ((s = prog_get(rt, d->dtype, &p, &st, err)) == ATTN_OK) {
        c.bias = bias ? bias : st->dummy;
        c.kv_len = kv_len ? kv_len : st->dummy;
        c.addw = addw ? addw : st->dummy;
        c.lse = t->lse ? t->lse : st->dummy;
        if ((s = set_call_args(p, t, &c, err)) == ATTN_OK)
            s = enqueue_blocks(p, &pl, d, queue, n_wait + 1, wl, &last, err);
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
    if (sbuf)
        clReleaseMemObject(sbuf);
    if (addw)
        clReleaseMemObject(addw);
    if (kv_len)
        clReleaseMemObject(kv_len);
    if (bias)
        clReleaseMemObject(bias);
    return s;
}
