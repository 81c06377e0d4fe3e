/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward variants of the OpenCL backend (bwd_cl.h) and one call of
 * them: the program of cl/backward.cl (every variant's kernels), built
 * once per (dtype, head sizes) and kept on the runtime; the call copies q, k,
 * v, o, lse, d_o (and the bias and kv_len) to the device, runs the kernels one
 * after the other, each only once the one before is known to have
 * succeeded (a command behind a failed one may never run), and reads dq,
 * dk and dv into a host staging block copied out only when every read
 * succeeded: the outputs are untouched on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/memsize.h"
#include "opencl/bwd_cl.h"
#include "opencl/driver.h"
#include "opencl/launch_common.h"

/* Largest head size: the kernels keep a row of each tensor in private
 * arrays. */
#define BWD_MAX_DIM 256
/* The fused kernel's work-group (keys per block) and query tile. */
#define BWD_KB 32
#define BWD_QT 16
/* Local size of the one-row-per-item kernels. */
#define BWD_WG 64

enum { V_REF, V_FUSED, V_TILED };

const attn_cl_bwd_variant attn_cl_bwd_variants[] = {
    {"bwd_ref",
     "backward, three kernels (D = rowsum(dO*O); dq per query row; dk, dv "
     "per key row), P recomputed from lse",
     ATTN_PATH_UNFUSED, 1},
    {"bwd_fused",
     "backward, dk and dv per block of keys with the query rows staged in "
     "local memory and D computed there, then dq per query row (on CPU "
     "devices 16 keys or query rows in vector lanes)",
     ATTN_PATH_FUSED, 0},
    {"bwd_tiled",
     "backward shaped for GPUs: dk and dv per block of keys, dq per block "
     "of query rows, Q, dO, K and V tiles in local memory, register tiles "
     "of S and dP, P and dS through local memory (head sizes up to 128)",
     ATTN_PATH_FUSED, 0},
};
const int attn_cl_n_bwd_variants =
    (int)(sizeof attn_cl_bwd_variants / sizeof attn_cl_bwd_variants[0]);

const char *const attn_cl_bwd_sources[ATTN_CL_BWD_TILED_N_SOURCES] = {
    "common.cl", "backward.cl", "backward_tiled.cl"};

/* The head sizes a program is built for at compile time (the forward's
 * per-size kernels' sizes, head_dim = head_dim_v); the others run on
 * programs of capacity 64, 128 or 256 for each with the sizes at run time
 * (BWD_RT), so that a runtime keeps at most 14 backward programs per
 * storage type whatever head sizes come. */
static int bwd_exact(int x)
{
    return x == 32 || x == 64 || x == 96 || x == 128 || x == 256;
}

static int bwd_capacity(int x)
{
    return x <= 64 ? 64 : x <= 128 ? 128 : BWD_MAX_DIM;
}

/* The build of head sizes hd, hv: *rt, and the sizes it is built for. */
static void bwd_build(int hd, int hv, int *rt, int *bhd, int *bhv)
{
    *rt = hd != hv || !bwd_exact(hd);
    *bhd = *rt ? bwd_capacity(hd) : hd;
    *bhv = *rt ? bwd_capacity(hv) : hv;
}

/* bwd_tiled's tiling (cl/backward_tiled.cl) for local rows of bhd and bhv
 * floats: keys and query rows per tile, keys of a work-item's S tile, the
 * work-group they make and the local memory its kernels take.  Up to 64:
 * 32 x 32 tiles, 128 items; up to 128: 16 x 16 tiles, 64 items, so that
 * four tiles of 129 floats a row fit 48 KiB. */
typedef struct bwd_tiling {
    int kt, qt, sk;
    size_t items;   /* kt * qt / (2 sk) */
    uint64_t local; /* bytes */
} bwd_tiling;

static bwd_tiling bwd_tiles(int bhd, int bhv)
{
    const int small = bhd <= 64 && bhv <= 64;
    bwd_tiling t = {small ? 32 : 16, small ? 32 : 16, small ? 4 : 2, 0, 0};
    t.items = (size_t)(t.kt * t.qt / (2 * t.sk));
    t.local = 4u * ((uint64_t)(t.kt + t.qt) * (uint64_t)(bhd + bhv + 2) +
                    2u * (uint64_t)t.qt * (uint64_t)(t.kt + 1) +
                    2u * (uint64_t)t.qt + 1u);
    return t;
}

int attn_cl_bwd_options(attn_dtype dtype, int hd, int hv, int tiled, char *buf,
                        size_t cap)
{
    int rt, bhd, bhv;
    char tiles[48] = "";
    bwd_build(hd, hv, &rt, &bhd, &bhv);
    if (tiled) {
        const bwd_tiling t = bwd_tiles(bhd, bhv);
        snprintf(tiles, sizeof tiles, " -DBT_KT=%d -DBT_QT=%d -DBT_SK=%d", t.kt,
                 t.qt, t.sk);
    }
    return snprintf(buf, cap,
                    "-DATTN_F16=%d -DATTN_BF16=%d -DBWD_HD=%d -DBWD_HV=%d "
                    "-DBWD_RT=%d -DBWD_KB=%d -DBWD_QT=%d%s",
                    dtype == ATTN_F16, dtype == ATTN_BF16, bhd, bhv, rt, BWD_KB,
                    BWD_QT, tiles);
}

int attn_cl_bwd_find(const char *name)
{
    for (int i = 0; name && i < attn_cl_n_bwd_variants; i++)
        if (!strcasecmp(name, attn_cl_bwd_variants[i].name))
            return i;
    return -1;
}

/* A program of backward.cl for one (dtype, head sizes), with
 * backward_tiled.cl (tiled) or without. */
typedef struct bwd_prog {
    struct bwd_prog *next;
    attn_dtype dtype;
    int rt, hd, hv; /* as built (bwd_build) */
    int tiled;
    cl_program prog;
    attn_status failed; /* a failed build, kept (not retried) */
    char why[ATTN_MSG_MAX];
} bwd_prog;

/* rt->bwd: its programs, kept as long as the runtime (prepared states
 * point at them).  Guarded by rt->lock. */
typedef struct bwd_state {
    bwd_prog *first;
} bwd_state;

/* attn_prepared.data of a backward call. */
typedef struct bwd_prep {
    const bwd_prog *prog;
} bwd_prep;

_Static_assert(sizeof(bwd_prep) <= ATTN_PREP_BYTES, "prepared state");

static void state_free(void *arg)
{
    bwd_state *st = arg;
    if (!st)
        return;
    while (st->first) {
        bwd_prog *p = st->first;
        st->first = p->next;
        if (p->prog)
            clReleaseProgram(p->prog);
        free(p);
    }
    free(st);
}

/* Whether rt's device runs the GPU-shaped kernels: any but a CPU device
 * (PoCL's takes bwd_fused's keys-in-lanes kernels, and AUTO leaves
 * bwd_tiled out there).  A test build takes rt as a GPU under
 * ATTN_TEST_BWD_GPU_SHAPE=1, so that tests reach those paths on PoCL. */
static int gpu_shaped(const attn_cl_runtime *rt)
{
#ifdef ATTN_FAULT_INJECTION
    const char *e = getenv("ATTN_TEST_BWD_GPU_SHAPE");
    if (e && !strcmp(e, "1"))
        return 1;
#endif
    return rt->info.kind != ATTN_DEVICE_CPU_OPENCL;
}

int attn_cl_bwd_forced(attn_cl_runtime *rt)
{
    int f;
    pthread_mutex_lock(&rt->lock);
    f = rt->choice.bwd_forced >= 0;
    pthread_mutex_unlock(&rt->lock);
    return f;
}

/* Whether variant vi takes d on rt: ATTN_OK or UNSUPPORTED with why. */
static attn_status supports(const attn_cl_runtime *rt, int vi,
                            const attn_sdpa_desc *d, unsigned grads,
                            attn_err *err)
{
    const char *name = attn_cl_bwd_variants[vi].name;
    if (grads && vi != V_REF)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "kernel variant \"%s\" computes no %s", name,
                         grads & ATTN_BWD_DBIAS ? "dbias" : "d_additive_w");
    if (d->score != ATTN_SCORE_DOT && vi != V_REF)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "kernel variant \"%s\" takes the dot-product score "
                         "only",
                         name);
    if (d->head_dim > BWD_MAX_DIM || d->head_dim_v > BWD_MAX_DIM)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "kernel variant \"%s\" takes head sizes up to %d, "
                         "not %d and %d",
                         name, BWD_MAX_DIM, d->head_dim, d->head_dim_v);
    if (vi != V_REF) {
        int run_time, bhd, bhv; /* the local rows are as built */
        bwd_build(d->head_dim, d->head_dim_v, &run_time, &bhd, &bhv);
        size_t wg = BWD_KB; /* bwd_fused's */
        uint64_t local = (uint64_t)BWD_QT *
                         ((uint64_t)bhd + (uint64_t)bhv + 2) * sizeof(float);
        if (vi == V_TILED) {
            if (bhd > 128 || bhv > 128)
                return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                                 "kernel variant \"%s\" takes head sizes up "
                                 "to 128, not %d and %d",
                                 name, d->head_dim, d->head_dim_v);
            const bwd_tiling tl = bwd_tiles(bhd, bhv);
            wg = tl.items;
            local = tl.local;
        }
        if (rt->dev_wg < wg || rt->dev_items[0] < wg)
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "kernel variant \"%s\" needs work-groups of %zu "
                             "items, the device has %zu",
                             name, wg, rt->dev_wg);
        if (local > rt->local_mem)
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "kernel variant \"%s\" needs %llu bytes of local "
                             "memory, the device has %llu",
                             name, (unsigned long long)local,
                             (unsigned long long)rt->local_mem);
    }
    return ATTN_OK;
}

/* Whether bwd_tiled's kernels, as built into p, run in work-groups of its
 * size on rt (the compiler may allow fewer items, e.g. for their
 * registers): ATTN_OK, else ATTN_ERR_UNSUPPORTED with why (or the error
 * of a query). */
static attn_status tiled_fits(attn_cl_runtime *rt, const bwd_prog *p,
                              attn_err *err)
{
    static const char *const names[2] = {"attn_bwd_tiled_kv",
                                         "attn_bwd_tiled_q"};
    const size_t wg = bwd_tiles(p->hd, p->hv).items;
    for (int i = 0; i < 2; i++) {
        cl_int rc;
        size_t kwg = 0;
        cl_kernel k = clCreateKernel(p->prog, names[i], &rc);
        if (rc != CL_SUCCESS)
            return attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                             names[i], attn_cl_error_name(rc));
        rc = clGetKernelWorkGroupInfo(k, rt->device, CL_KERNEL_WORK_GROUP_SIZE,
                                      sizeof kwg, &kwg, NULL);
        clReleaseKernel(k);
        if (rc != CL_SUCCESS)
            return attn_fail(err, ATTN_ERR_DEVICE,
                             "clGetKernelWorkGroupInfo(%s): %s", names[i],
                             attn_cl_error_name(rc));
        if (kwg < wg)
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "kernel variant \"bwd_tiled\" needs work-groups "
                             "of %zu items, its kernel %s takes %zu on %s",
                             wg, names[i], kwg, rt->info.name);
    }
    return ATTN_OK;
}

/* The program for d (bwd_tiled's when tiled), built now or kept; call
 * with rt->lock held. */
static attn_status prog_get(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                            int tiled, const bwd_prog **out, attn_err *err)
{
    bwd_state *st = rt->bwd;
    bwd_prog *p = NULL;
    char opts[200], tag[64];
    attn_err e = {{0}};
    int run_time, bhd, bhv;
    bwd_build(d->head_dim, d->head_dim_v, &run_time, &bhd, &bhv);
    if (!st) {
        if (!(st = calloc(1, sizeof *st)))
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "cannot allocate the backward state");
        rt->bwd = st;
        rt->bwd_free = state_free;
    }
    for (p = st->first; p; p = p->next)
        if (p->dtype == d->dtype && p->rt == run_time && p->hd == bhd &&
            p->hv == bhv && p->tiled == tiled)
            break;
    if (!p) {
        attn_status s;
        if (!(p = calloc(1, sizeof *p)))
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "cannot allocate a backward program");
        p->dtype = d->dtype;
        p->rt = run_time;
        p->hd = bhd;
        p->hv = bhv;
        p->tiled = tiled;
        attn_cl_bwd_options(d->dtype, d->head_dim, d->head_dim_v, tiled, opts,
                            sizeof opts);
        snprintf(tag, sizeof tag, "backward%s_%s_%s%d_%d",
                 tiled ? "_tiled" : "",
                 d->dtype == ATTN_F16    ? "f16"
                 : d->dtype == ATTN_BF16 ? "bf16"
                                         : "f32",
                 run_time ? "rt" : "", bhd, bhv);
        s = attn_cl_build_tagged(rt, tag, attn_cl_bwd_sources,
                                 tiled ? ATTN_CL_BWD_TILED_N_SOURCES
                                       : ATTN_CL_BWD_N_SOURCES,
                                 opts, &p->prog, &e);
        if (s == ATTN_OK && tiled)
            s = tiled_fits(rt, p, &e);
        if (s == ATTN_ERR_UNSUPPORTED) { /* built, but not for this device */
            clReleaseProgram(p->prog);
            p->prog = NULL;
            p->failed = s;
            memcpy(p->why, e.msg, sizeof p->why);
        } else if (s == ATTN_ERR_BUILD_FAILED) { /* retrying will not help */
            p->prog = NULL;
            p->failed = s;
            memcpy(p->why, e.msg, sizeof p->why);
        } else if (s) {
            if (p->prog) /* built, then a query of its kernels failed */
                clReleaseProgram(p->prog);
            free(p);
            return attn_fail(err, s, "%s", e.msg); /* not kept */
        }
        p->next = st->first;
        st->first = p;
    }
    if (p->failed)
        return attn_fail(err, p->failed, "%s", p->why);
    *out = p;
    return ATTN_OK;
}

attn_status attn_cl_bwd_prepare(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                                unsigned grads, attn_prepared *out,
                                attn_err *err)
{
    bwd_prep *pr = (bwd_prep *)(void *)out->data;
    attn_cl_choice ch;
    int order[3], n = 0;
    attn_err why = {{0}};
    attn_status s = ATTN_ERR_UNSUPPORTED;
    memset(out, 0, sizeof *out);
    out->variant = -1;
    pthread_mutex_lock(&rt->lock);
    ch = rt->choice;
    pthread_mutex_unlock(&rt->lock);
    if (ch.bwd_forced >= 0) {
        order[n++] = ch.bwd_forced;
    } else {
        /* AUTO: on a GPU (any device but a CPU) the tiled variant, then
         * the fused one, then the universal one; a path takes its own
         * first */
        if (ch.path != ATTN_PATH_UNFUSED && gpu_shaped(rt))
            order[n++] = V_TILED;
        if (ch.path != ATTN_PATH_UNFUSED)
            order[n++] = V_FUSED;
        order[n++] = V_REF;
    }
    for (int i = 0; i < n; i++) {
        const attn_cl_bwd_variant *v = &attn_cl_bwd_variants[order[i]];
        why.msg[0] = '\0';
        s = supports(rt, order[i], d, grads, &why);
        if (s == ATTN_OK) {
            pthread_mutex_lock(&rt->lock);
            s = prog_get(rt, d, order[i] == V_TILED, &pr->prog, &why);
            pthread_mutex_unlock(&rt->lock);
        }
        if (s == ATTN_OK) {
            out->variant = order[i];
            out->name = v->name;
            out->precision = ATTN_PRECISION_EXACT;
            attn_log(rt->log, ATTN_LOG_DEBUG,
                     "backward kernel variant %s takes the call on %s", v->name,
                     rt->info.name);
            return ATTN_OK;
        }
        if (ch.bwd_forced >= 0)
            return attn_fail(err, s,
                             "kernel variant \"%s\" (forced) cannot run this "
                             "call on %s: %.300s",
                             v->name, rt->info.name, why.msg);
        if (s == ATTN_ERR_BUILD_FAILED && order[i] == V_TILED) {
            /* a driver that cannot build it: the next variant runs (the
             * failed build is kept, not retried) */
            attn_log(rt->log, ATTN_LOG_WARN,
                     "kernel variant %s does not build on %s, the next one "
                     "runs: %.300s",
                     v->name, rt->info.name, why.msg);
            s = ATTN_ERR_UNSUPPORTED;
            continue;
        }
        if (s != ATTN_ERR_UNSUPPORTED)
            return attn_fail(err, s, "%s", why.msg);
        attn_log(rt->log, ATTN_LOG_DEBUG, "kernel variant %s declines: %s",
                 v->name, why.msg);
    }
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "no backward kernel variant takes this call on %s: "
                     "%.300s",
                     rt->info.name, why.msg);
}

/* ---- one call ------------------------------------------------------------ */

/* The call's buffers: the inputs, D, the gradients, then (when asked)
 * dbias, the rows' parts of d additive_w and d additive_w. */
enum {
    B_Q,
    B_K,
    B_V,
    B_O,
    B_DO,
    B_LSE,
    B_D,
    B_DQ,
    B_DK,
    B_DV,
    B_DBIAS,
    B_DWP,
    B_DW,
    N_BUF
};
_Static_assert(N_BUF == sizeof(((attn_cl_bwd_bufs *)0)->mem) / sizeof(cl_mem),
               "attn_cl_bwd_bufs holds a buffer per index");

_Static_assert((int)B_DWP == (int)ATTN_CL_BWD_DWP &&
                   (int)B_DW == (int)ATTN_CL_BWD_DW,
               "the indices bwd_cl.h gives");

/* The tensor whose shape and strides each buffer has (attn_tensor_dims). */
static const int bwd_kind[N_BUF] = {
    [B_Q] = ATTN_T_Q,  [B_K] = ATTN_T_K,  [B_V] = ATTN_T_V,  [B_O] = ATTN_T_O,
    [B_DO] = ATTN_T_O, [B_DQ] = ATTN_T_Q, [B_DK] = ATTN_T_K, [B_DV] = ATTN_T_V};

typedef struct bwd_run {
    attn_cl_runtime *rt;
    cl_command_queue queue; /* where the commands go */
    /* chain: the commands are enqueued one behind the other (the first
     * behind wl), nothing waited for (attn_cl_bwd_enqueue); else each
     * kernel is waited for before the next (attn_cl_bwd_run) */
    int chain;
    const cl_event *wl;
    cl_uint n_wl;
    cl_event last; /* chain: the last command enqueued */
    cl_mem m[N_BUF];
    unsigned char borrowed[N_BUF]; /* m[i] is the caller's: not released */
    cl_mem bias, kv_len, addw;
    size_t bytes[N_BUF];
    size_t bias_ext[3]; /* the bias's batch, head, row extents (1: none) */
    cl_kernel k[6];     /* rowsum, dq, dk/dv, dbias, d additive_w, move */
} bwd_run;

/* Chain: the wait list of the next command, which then becomes the last
 * (push). */
static const cl_event *chain_wait(const bwd_run *r, cl_uint *n)
{
    *n = r->last ? 1 : r->n_wl;
    return r->last ? &r->last : r->wl;
}

static void chain_push(bwd_run *r, cl_event ev)
{
    if (r->last)
        clReleaseEvent(r->last);
    r->last = ev;
}

/* Enqueues k over global (local) items and waits for it: a failure as
 * ATTN_ERR_DEVICE (or the enqueue's own status). */
static attn_status run_kernel(bwd_run *r, cl_kernel k, const char *name,
                              cl_uint dims, const size_t *global,
                              const size_t *local, attn_err *err)
{
    cl_event ev = NULL;
    cl_int st = CL_COMPLETE;
    cl_uint n = 0;
    const cl_event *wl = r->chain ? chain_wait(r, &n) : NULL;
    cl_int rc = ATTN_CL(clEnqueueNDRangeKernel)(r->queue, k, dims, NULL, global,
                                                local, n, wl, &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "enqueueing %s on %s failed: %s (%d)", name,
                         r->rt->info.name, attn_cl_error_name(rc), (int)rc);
    if (r->chain) {
        chain_push(r, ev);
        return ATTN_OK;
    }
    ATTN_FAULT_DELIVER(1);
    rc = clWaitForEvents(1, &ev);
    if (rc == CL_SUCCESS)
        rc = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st,
                            &st, NULL);
    clReleaseEvent(ev);
    if (rc == CL_SUCCESS && st < 0)
        rc = st;
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE, "%s failed on %s: %s (%d)", name,
                         r->rt->info.name, attn_cl_error_name(rc), (int)rc);
    return ATTN_OK;
}

static attn_status set_args(cl_kernel k, cl_uint first, const attn_cl_karg *a,
                            size_t n, attn_err *err)
{
    cl_int rc = attn_cl_set_args(k, first, a, n);
    if (rc != CL_SUCCESS)
        return attn_fail(err, ATTN_ERR_DEVICE, "clSetKernelArg failed: %s",
                         attn_cl_error_name(rc));
    return ATTN_OK;
}

/* bwd_tiled's kernels: D (attn_bwd_rowsum over gq items in groups of wg),
 * then dk and dv per block of keys, then dq per block of query rows, each
 * over at most ATTN_CL_GRID_MAX (batch, head) pairs a launch; mask: the
 * nm arguments every kernel takes after its tensors. */
static attn_status launch_tiled(bwd_run *r, const attn_sdpa_desc *d,
                                const attn_cl_karg *mask, cl_uint nm,
                                const size_t *gq, const size_t *wg,
                                attn_err *err)
{
    const int rows_q = d->batch * d->heads_q * d->seq_q;
    int run_time, bhd, bhv;
    attn_status s;
    bwd_build(d->head_dim, d->head_dim_v, &run_time, &bhd, &bhv);
    const bwd_tiling tl = bwd_tiles(bhd, bhv);
    const int kt = tl.kt, qt = tl.qt;
    const size_t items = tl.items;
    const attn_cl_karg rs[] = {ATTN_CL_KARG(r->m[B_O]),
                               ATTN_CL_KARG(r->m[B_DO]),
                               ATTN_CL_KARG(r->m[B_D]), ATTN_CL_KARG(rows_q),
                               ATTN_CL_KARG(d->head_dim_v)};
    const attn_cl_karg ten[] = {
        ATTN_CL_KARG(r->m[B_Q]),   ATTN_CL_KARG(r->m[B_K]),
        ATTN_CL_KARG(r->m[B_V]),   ATTN_CL_KARG(r->m[B_DO]),
        ATTN_CL_KARG(r->m[B_LSE]), ATTN_CL_KARG(r->m[B_D]),
        ATTN_CL_KARG(r->m[B_DK]),  ATTN_CL_KARG(r->m[B_DV])};
    /* k[2] (dk, dv) takes both outputs; k[1] (dq) dq in dk's place */
    const attn_cl_karg dq_out = ATTN_CL_KARG(r->m[B_DQ]);
    const struct {
        cl_kernel k;
        const char *name;
        size_t pairs; /* (batch, head) pairs */
        int rows;     /* keys or query rows */
        int tile;
        cl_uint n_ten;
    } pass[2] = {{r->k[2], "attn_bwd_tiled_kv",
                  (size_t)d->batch * (size_t)d->heads_kv, d->seq_kv, kt, 8},
                 {r->k[1], "attn_bwd_tiled_q",
                  (size_t)d->batch * (size_t)d->heads_q, d->seq_q, qt, 7}};
    if ((s = set_args(r->k[0], 0, rs, 5, err)) ||
        (s = run_kernel(r, r->k[0], "attn_bwd_rowsum", 1, gq, wg, err)) ||
        (s = set_args(r->k[2], 0, ten, 8, err)) ||
        (s = set_args(r->k[1], 0, ten, 6, err)) ||
        (s = set_args(r->k[1], 6, &dq_out, 1, err)))
        return s;
    for (int i = 0; i < 2; i++) {
        const size_t lk[2] = {items, 1};
        if ((s = set_args(pass[i].k, pass[i].n_ten, mask, nm, err)))
            return s;
        for (size_t b0 = 0; b0 < pass[i].pairs; b0 += ATTN_CL_GRID_MAX) {
            const cl_int first = (cl_int)b0;
            const size_t nb = pass[i].pairs - b0 < ATTN_CL_GRID_MAX
                                  ? pass[i].pairs - b0
                                  : ATTN_CL_GRID_MAX;
            const size_t gt[2] = {
                ((size_t)pass[i].rows + (size_t)pass[i].tile - 1) /
                    (size_t)pass[i].tile * items,
                nb};
            if ((s = set_args(pass[i].k, pass[i].n_ten + nm,
                              &(attn_cl_karg)ATTN_CL_KARG(first), 1, err)) ||
                (s = run_kernel(r, pass[i].k, pass[i].name, 2, gt, lk, err)))
                return s;
        }
    }
    return ATTN_OK;
}

/* The kernels of variant vi on the uploaded tensors. */
static attn_status launch(bwd_run *r, int vi, int lanes,
                          const attn_sdpa_desc *d, attn_err *err)
{
    const int rows_q = d->batch * d->heads_q * d->seq_q;
    const int rows_k = d->batch * d->heads_kv * d->seq_kv;
    const cl_float scale =
        d->scale != 0.0f ? d->scale : (cl_float)(1.0 / sqrt(d->head_dim));
    const cl_int bias_kind = (cl_int)d->mask.bias_kind;
    const cl_int has_kv_len = d->mask.kv_len != NULL;
    const cl_int causal = d->mask.causal != 0, window = attn_cl_window(d);
    const cl_int diag = (cl_int)attn_causal_diag(d);
    const cl_int additive = d->score == ATTN_SCORE_ADDITIVE;
    const cl_int has_dwp = r->m[B_DWP] != NULL;
    const cl_mem dwp = has_dwp ? r->m[B_DWP] : r->addw;
    size_t st[3];
    cl_ulong sb, sh, sq;
    attn_status s;
    attn_bias_strides(d, st);
    sb = st[0];
    sh = st[1];
    sq = st[2];
#define KARG ATTN_CL_KARG
    const attn_cl_karg mask[] = {KARG(r->bias),
                                 KARG(bias_kind),
                                 KARG(sb),
                                 KARG(sh),
                                 KARG(sq),
                                 KARG(r->kv_len),
                                 KARG(has_kv_len),
                                 KARG(scale),
                                 KARG(d->heads_q),
                                 KARG(d->heads_kv),
                                 KARG(d->seq_q),
                                 KARG(d->seq_kv),
                                 KARG(causal),
                                 KARG(window),
                                 KARG(diag),
                                 KARG(d->head_dim),
                                 KARG(d->head_dim_v),
                                 KARG(r->addw),
                                 KARG(additive),
                                 KARG(dwp),
                                 KARG(has_dwp)};
    const cl_uint nm = (cl_uint)(sizeof mask / sizeof mask[0]);
    const attn_cl_karg dq_t[] = {
        KARG(r->m[B_Q]),   KARG(r->m[B_K]), KARG(r->m[B_V]), KARG(r->m[B_DO]),
        KARG(r->m[B_LSE]), KARG(r->m[B_D]), KARG(r->m[B_DQ])};
    /* the one-row-per-item kernels: BWD_WG items per work-group, fewer
     * where a kernel's own limit is lower (a power of two) */
    size_t w = BWD_WG, kwg;
    for (int i = 0; i < 5; i++)
        if (r->k[i] && (vi == V_REF || i == 0 || (vi == V_FUSED && i == 1)) &&
            clGetKernelWorkGroupInfo(r->k[i], r->rt->device,
                                     CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg,
                                     &kwg, NULL) == CL_SUCCESS &&
            kwg > 0)
            while (w > kwg && w > 1)
                w /= 2;
    const size_t gq[1] = {((size_t)rows_q + w - 1) / w * w};
    const size_t gk[1] = {((size_t)rows_k + w - 1) / w * w};
    const size_t wg[1] = {w};
    if (vi == V_TILED)
        return launch_tiled(r, d, mask, nm, gq, wg, err);
    if (vi == V_REF) {
        const attn_cl_karg rs[] = {KARG(r->m[B_O]), KARG(r->m[B_DO]),
                                   KARG(r->m[B_D]), KARG(rows_q),
                                   KARG(d->head_dim_v)};
        const attn_cl_karg kv_t[] = {KARG(r->m[B_Q]),   KARG(r->m[B_K]),
                                     KARG(r->m[B_V]),   KARG(r->m[B_DO]),
                                     KARG(r->m[B_LSE]), KARG(r->m[B_D]),
                                     KARG(r->m[B_DK]),  KARG(r->m[B_DV])};
        if ((s = set_args(r->k[0], 0, rs, 5, err)) ||
            (s = run_kernel(r, r->k[0], "attn_bwd_rowsum", 1, gq, wg, err)) ||
            (s = set_args(r->k[2], 0, kv_t, 8, err)) ||
            (s = set_args(r->k[2], 8, mask, nm, err)) ||
            (s = set_args(r->k[2], 8 + nm, &(attn_cl_karg)KARG(rows_k), 1,
                          err)) ||
            (s = run_kernel(r, r->k[2], "attn_bwd_dkdv", 1, gk, wg, err)))
            return s;
    } else {
        const attn_cl_karg kv_t[] = {KARG(r->m[B_Q]),  KARG(r->m[B_K]),
                                     KARG(r->m[B_V]),  KARG(r->m[B_O]),
                                     KARG(r->m[B_DO]), KARG(r->m[B_LSE]),
                                     KARG(r->m[B_DK]), KARG(r->m[B_DV])};
        const attn_cl_karg rs[] = {KARG(r->m[B_O]), KARG(r->m[B_DO]),
                                   KARG(r->m[B_D]), KARG(rows_q),
                                   KARG(d->head_dim_v)};
        const size_t total = (size_t)d->batch * (size_t)d->heads_kv;
        /* keys per item and per work-group: 1 and BWD_KB, or 16 lanes
         * of one item (attn_bwd_fused_v) */
        const size_t per = lanes ? 16 : 1, lk[2] = {lanes ? 1 : BWD_KB, 1};
        if ((s = set_args(r->k[2], 0, kv_t, 8, err)) ||
            (s = set_args(r->k[2], 8, mask, nm, err)))
            return s;
        for (size_t b0 = 0; b0 < total; b0 += ATTN_CL_GRID_MAX) {
            const cl_int first = (cl_int)b0;
            const size_t nb =
                total - b0 < ATTN_CL_GRID_MAX ? total - b0 : ATTN_CL_GRID_MAX;
            const size_t items = ((size_t)d->seq_kv + per - 1) / per;
            const size_t gf[2] = {(items + lk[0] - 1) / lk[0] * lk[0], nb};
            if ((s = set_args(r->k[2], 8 + nm, &(attn_cl_karg)KARG(first), 1,
                              err)) ||
                (s = run_kernel(r, r->k[2], "attn_bwd_fused", 2, gf, lk, err)))
                return s;
        }
        /* D for the dq pass */
        if ((s = set_args(r->k[0], 0, rs, 5, err)) ||
            (s = run_kernel(r, r->k[0], "attn_bwd_rowsum", 1, gq, wg, err)))
            return s;
    }
#undef KARG
    if (lanes) { /* attn_bwd_dq_v: 16 rows per item, per (batch, head) */
        const size_t total = (size_t)d->batch * (size_t)d->heads_q;
        const size_t l1[2] = {1, 1};
        if ((s = set_args(r->k[1], 0, dq_t, 7, err)) ||
            (s = set_args(r->k[1], 7, mask, nm, err)))
            return s;
        for (size_t b0 = 0; b0 < total; b0 += ATTN_CL_GRID_MAX) {
            const cl_int first = (cl_int)b0;
            const size_t g2[2] = {
                ((size_t)d->seq_q + 15) / 16,
                total - b0 < ATTN_CL_GRID_MAX ? total - b0 : ATTN_CL_GRID_MAX};
            if ((s = set_args(r->k[1], 7 + nm,
                              &(attn_cl_karg)ATTN_CL_KARG(first), 1, err)) ||
                (s = run_kernel(r, r->k[1], "attn_bwd_dq", 2, g2, l1, err)))
                return s;
        }
        return ATTN_OK;
    }
    if ((s = set_args(r->k[1], 0, dq_t, 7, err)) ||
        (s = set_args(r->k[1], 7, mask, nm, err)) ||
        (s = set_args(r->k[1], 7 + nm, &(attn_cl_karg)ATTN_CL_KARG(rows_q), 1,
                      err)) ||
        (s = run_kernel(r, r->k[1], "attn_bwd_dq", 1, gq, wg, err)))
        return s;
    if (r->m[B_DBIAS]) { /* bwd_ref: dbias entry by entry */
        const cl_int ext[4] = {(cl_int)r->bias_ext[0], (cl_int)r->bias_ext[1],
                               (cl_int)r->bias_ext[2], d->batch};
        const size_t n = r->bias_ext[0] * r->bias_ext[1] * r->bias_ext[2] *
                         (size_t)d->seq_kv;
        const size_t gb[1] = {(n + w - 1) / w * w};
        const attn_cl_karg db_t[] = {
            ATTN_CL_KARG(r->m[B_Q]),    ATTN_CL_KARG(r->m[B_K]),
            ATTN_CL_KARG(r->m[B_V]),    ATTN_CL_KARG(r->m[B_DO]),
            ATTN_CL_KARG(r->m[B_LSE]),  ATTN_CL_KARG(r->m[B_D]),
            ATTN_CL_KARG(r->m[B_DBIAS])};
        const attn_cl_karg tail[] = {ATTN_CL_KARG(ext[0]), ATTN_CL_KARG(ext[1]),
                                     ATTN_CL_KARG(ext[2]),
                                     ATTN_CL_KARG(ext[3])};
        if ((s = set_args(r->k[3], 0, db_t, 7, err)) ||
            (s = set_args(r->k[3], 7, mask, nm, err)) ||
            (s = set_args(r->k[3], 7 + nm, tail, 4, err)) ||
            (s = run_kernel(r, r->k[3], "attn_bwd_dbias", 1, gb, wg, err)))
            return s;
    }
    if (has_dwp) { /* bwd_ref: d additive_w from the rows' parts */
        const cl_int dims[4] = {d->batch, d->heads_q, d->seq_q, d->head_dim};
        const size_t n = (size_t)d->heads_q * (size_t)d->head_dim;
        const size_t gw[1] = {(n + w - 1) / w * w};
        const attn_cl_karg dw_t[] = {
            ATTN_CL_KARG(r->m[B_DWP]), ATTN_CL_KARG(r->m[B_DW]),
            ATTN_CL_KARG(dims[0]),     ATTN_CL_KARG(dims[1]),
            ATTN_CL_KARG(dims[2]),     ATTN_CL_KARG(dims[3])};
        if ((s = set_args(r->k[4], 0, dw_t, 6, err)) ||
            (s = run_kernel(r, r->k[4], "attn_bwd_dw", 1, gw, wg, err)))
            return s;
    }
    return ATTN_OK;
}

/* The bytes of the call's buffers (r->bytes, 0 for a gradient not asked)
 * and of the bias's extents; checks that the buffers not borrowed from the
 * caller fit the device. */
static attn_status size_buffers(bwd_run *r, const attn_sdpa_desc *d, int dbias,
                                int dw, attn_err *err)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t rows = (size_t)d->batch * d->heads_q * d->seq_q;
    const size_t krows = (size_t)d->batch * d->heads_kv * d->seq_kv;
    uint64_t total = attn_cl_input_bytes(d, NULL), largest = 0;
    r->bytes[B_Q] = r->bytes[B_DQ] = rows * d->head_dim * es;
    r->bytes[B_O] = r->bytes[B_DO] = rows * d->head_dim_v * es;
    r->bytes[B_K] = r->bytes[B_DK] = krows * d->head_dim * es;
    r->bytes[B_V] = r->bytes[B_DV] = krows * d->head_dim_v * es;
    r->bytes[B_LSE] = r->bytes[B_D] = rows * sizeof(float);
    r->bias_ext[0] = r->bias_ext[1] = r->bias_ext[2] = 1;
    if (dbias) { /* the bias's extents: 1 where it broadcasts */
        size_t st[3];
        attn_bias_strides(d, st);
        r->bias_ext[0] = st[0] ? (size_t)d->batch : 1;
        r->bias_ext[1] = st[1] ? (size_t)d->heads_q : 1;
        r->bias_ext[2] = st[2] ? (size_t)d->seq_q : 1;
        r->bytes[B_DBIAS] = r->bias_ext[0] * r->bias_ext[1] * r->bias_ext[2] *
                            (size_t)d->seq_kv * sizeof(float);
    }
    if (dw) {
        r->bytes[B_DWP] = rows * (size_t)d->head_dim * sizeof(float);
        r->bytes[B_DW] = (size_t)d->heads_q * d->head_dim * sizeof(float);
    }
    for (int i = 0; i < N_BUF; i++) {
        if (r->borrowed[i])
            continue;
        total = attn_cl_add_bytes(total, r->bytes[i]);
        largest = r->bytes[i] > largest ? r->bytes[i] : largest;
    }
    return attn_cl_check_fit(r->rt, "the backward pass", total, largest, err);
}

/* Allocates the buffers of r that are not the caller's (a gradient not
 * asked has none), and the device copies of d's host inputs. */
static attn_status alloc_buffers(bwd_run *r, const attn_sdpa_desc *d,
                                 attn_err *err)
{
    for (int i = 0; i < N_BUF; i++) {
        cl_int rc;
        if (!r->bytes[i] || r->borrowed[i])
            continue;
        r->m[i] = ATTN_CL(clCreateBuffer)(r->rt->context, CL_MEM_READ_WRITE,
                                          r->bytes[i], NULL, &rc);
        if (rc != CL_SUCCESS) {
            r->m[i] = NULL;
            return attn_fail(err, attn_cl_status(rc),
                             "cannot allocate %zu bytes on %s for the "
                             "backward pass: %s",
                             r->bytes[i], r->rt->info.name,
                             attn_cl_error_name(rc));
        }
    }
    return attn_cl_copy_inputs(r->rt, d, &r->bias, &r->kv_len, &r->addw, err);
}

/* Allocates the call's buffers (after checking that they fit) and uploads
 * the inputs. */
static attn_status upload(bwd_run *r, const attn_sdpa_desc *d,
                          const attn_sdpa_grad *g, attn_err *err)
{
    const void *src[N_BUF] = {g->q, g->k, g->v, g->o, g->d_o, g->lse};
    attn_status s;
    if ((s = size_buffers(r, d, g->dbias != NULL, g->d_additive_w != NULL,
                          err)) ||
        (s = alloc_buffers(r, d, err)))
        return s;
    for (int i = 0; i <= B_LSE; i++) {
        cl_int rc = ATTN_CL(clEnqueueWriteBuffer)(
            r->queue, r->m[i], CL_TRUE, 0, r->bytes[i], src[i], 0, NULL, NULL);
        if (rc != CL_SUCCESS)
            return attn_fail(err, attn_cl_status(rc),
                             "copying the backward pass's inputs to %s "
                             "failed: %s",
                             r->rt->info.name, attn_cl_error_name(rc));
    }
    return ATTN_OK;
}

/* Reads dq, dk, dv (and dbias, d additive_w when asked) into one host
 * block, then into g's outputs. */
static attn_status download(bwd_run *r, const attn_sdpa_grad *g, attn_err *err)
{
    void *dst[5] = {g->dq, g->dk, g->dv, g->dbias, g->d_additive_w};
    const int id[5] = {B_DQ, B_DK, B_DV, B_DBIAS, B_DW};
    size_t off[6] = {0};
    unsigned char *stage;
    for (int i = 0; i < 5; i++)
        off[i + 1] = off[i] + (dst[i] ? r->bytes[id[i]] : 0);
    if (!(stage = malloc(off[5] ? off[5] : 1)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate %zu bytes to read the gradients "
                         "into",
                         off[5]);
    for (int i = 0; i < 5; i++) {
        if (!dst[i])
            continue;
        cl_int rc = ATTN_CL(clEnqueueReadBuffer)(r->rt->queue, r->m[id[i]],
                                                 CL_TRUE, 0, r->bytes[id[i]],
                                                 stage + off[i], 0, NULL, NULL);
        if (rc != CL_SUCCESS) {
            free(stage);
            return attn_fail(err, attn_cl_status(rc),
                             "reading the gradients from %s failed: %s",
                             r->rt->info.name, attn_cl_error_name(rc));
        }
    }
    for (int i = 0; i < 5; i++)
        if (dst[i])
            memcpy(dst[i], stage + off[i], r->bytes[id[i]]);
    free(stage);
    return ATTN_OK;
}

/* Creates the kernels of prepared variant p that the call runs (dbias,
 * dw: the optional gradients asked; move: attn_bwd_move) into r->k; sets
 * *lanes.  On failure the kernels made are left for run_free. */
static attn_status kernels_create(bwd_run *r, const attn_prepared *p, int dbias,
                                  int dw, int move, int *lanes, attn_err *err)
{
    static const char *const kern[3][3] = {
        {"attn_bwd_rowsum", "attn_bwd_dq", "attn_bwd_dkdv"},
        {"attn_bwd_rowsum", "attn_bwd_dq", "attn_bwd_fused"},
        {"attn_bwd_rowsum", "attn_bwd_tiled_q", "attn_bwd_tiled_kv"}};
    const bwd_prep *pr = (const bwd_prep *)(const void *)p->data;
    /* a CPU device takes the fused variant's keys-in-lanes kernels */
    *lanes = p->variant == V_FUSED && !gpu_shaped(r->rt);
    for (int i = 0; i < 6; i++) {
        cl_int rc;
        if ((i == 3 && !dbias) || (i == 4 && !dw) || (i == 5 && !move))
            continue;
        const char *name = i == 3    ? "attn_bwd_dbias"
                           : i == 4  ? "attn_bwd_dw"
                           : i == 5  ? "attn_bwd_move"
                           : !*lanes ? kern[p->variant][i]
                           : i == 2  ? "attn_bwd_fused_v"
                           : i == 1  ? "attn_bwd_dq_v"
                                     : kern[p->variant][i];
        r->k[i] = clCreateKernel(pr->prog->prog, name, &rc);
        if (rc != CL_SUCCESS) {
            r->k[i] = NULL;
            return attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                             name, attn_cl_error_name(rc));
        }
    }
    return ATTN_OK;
}

/* Runs the variant's kernels on r's buffers, the runtime's dummy buffer
 * standing in for the absent host inputs. */
static attn_status launch_on(bwd_run *r, int vi, int lanes,
                             const attn_sdpa_desc *d, cl_mem dummy,
                             attn_err *err)
{
    cl_mem *const opt[3] = {&r->bias, &r->kv_len, &r->addw};
    int stood[3];
    attn_status s;
    for (int i = 0; i < 3; i++)
        if ((stood[i] = !*opt[i]) != 0)
            *opt[i] = dummy;
    s = launch(r, vi, lanes, d, err);
    for (int i = 0; i < 3; i++)
        if (stood[i])
            *opt[i] = NULL;
    return s;
}

/* Releases what r made (not the caller's buffers). */
static void run_free(bwd_run *r)
{
    for (int i = 0; i < 6; i++)
        if (r->k[i])
            clReleaseKernel(r->k[i]);
    for (int i = 0; i < N_BUF; i++)
        if (!r->borrowed[i])
            attn_cl_release_mem(r->m[i]);
    attn_cl_release_mem(r->bias);
    attn_cl_release_mem(r->kv_len);
    attn_cl_release_mem(r->addw);
}

static int prepared_ok(const attn_prepared *p)
{
    return p && p->variant >= 0 && p->variant < attn_cl_n_bwd_variants &&
           ((const bwd_prep *)(const void *)p->data)->prog;
}

attn_status attn_cl_bwd_run(attn_cl_runtime *rt, const attn_prepared *p,
                            const attn_sdpa_desc *d, const attn_sdpa_grad *g,
                            attn_err *err)
{
    bwd_run r;
    attn_status s;
    cl_mem dummy;
    int lanes = 0;
    if (!prepared_ok(p))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_bwd_run: no prepared variant");
    memset(&r, 0, sizeof r);
    r.rt = rt;
    r.queue = rt->queue;
    if ((s = attn_cl_dummy(rt, &dummy, err)))
        return s;
    if ((s = kernels_create(&r, p, g->dbias != NULL, g->d_additive_w != NULL, 0,
                            &lanes, err)) == ATTN_OK &&
        (s = upload(&r, d, g, err)) == ATTN_OK)
        s = launch_on(&r, p->variant, lanes, d, dummy, err);
    if (s == ATTN_OK)
        s = download(&r, g, err);
    if (s != ATTN_OK)
        clFinish(rt->queue);
    run_free(&r);
    return s;
}

/* ---- on the caller's buffers ------------------------------------------- */

/* Whether tensor t of d lies dense ([batch, heads, rows, width] in a row)
 * at element offset off 0. */
static int dense_at_zero(const attn_sdpa_desc *d, int t, size_t off)
{
    size_t n[3], w, st[3];
    attn_tensor_dims(d, t, n, &w);
    attn_tensor_strides(d, t, st);
    return off == 0 && st[2] == w && st[1] == n[2] * w &&
           st[0] == n[1] * n[2] * w;
}

/* Enqueues attn_bwd_move between tensor t of d in the caller's buffer
 * user (element offset off, d's strides) and its dense copy dense. */
static attn_status move(bwd_run *r, const attn_sdpa_desc *d, int t, cl_mem user,
                        size_t off, cl_mem dense, int to_dense, attn_err *err)
{
    size_t n[3], w, st[3];
    attn_tensor_dims(d, t, n, &w);
    attn_tensor_strides(d, t, st);
    const cl_ulong total = (cl_ulong)(n[0] * n[1] * n[2] * w);
    const cl_ulong o = off, sb = st[0], sh = st[1], sr = st[2];
    const cl_int n1 = (cl_int)n[1], n2 = (cl_int)n[2], wi = (cl_int)w,
                 dir = to_dense;
    const size_t g[1] = {((size_t)total + 63) / 64 * 64};
    const attn_cl_karg a[] = {
        ATTN_CL_KARG(user),  ATTN_CL_KARG(o),  ATTN_CL_KARG(sb),
        ATTN_CL_KARG(sh),    ATTN_CL_KARG(sr), ATTN_CL_KARG(dense),
        ATTN_CL_KARG(n1),    ATTN_CL_KARG(n2), ATTN_CL_KARG(wi),
        ATTN_CL_KARG(total), ATTN_CL_KARG(dir)};
    attn_status s;
    if (!total)
        return ATTN_OK;
    if ((s = set_args(r->k[5], 0, a, sizeof a / sizeof a[0], err)))
        return s;
    return run_kernel(r, r->k[5], "attn_bwd_move", 1, g, NULL, err);
}

/* Enqueues a copy of bytes bytes between two buffers. */
static attn_status copy(bwd_run *r, cl_mem src, size_t src_off, cl_mem dst,
                        size_t dst_off, size_t bytes, attn_err *err)
{
    cl_uint n;
    const cl_event *wl = chain_wait(r, &n);
    cl_event ev = NULL;
    cl_int rc;
    if (!bytes)
        return ATTN_OK;
    rc = clEnqueueCopyBuffer(r->queue, src, dst, src_off, dst_off, bytes, n, wl,
                             &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "enqueueing a copy on %s failed: %s", r->rt->info.name,
                         attn_cl_error_name(rc));
    chain_push(r, ev);
    return ATTN_OK;
}

void attn_cl_bwd_bufs_at(attn_cl_bwd_bufs *b, const attn_sdpa_desc *item,
                         size_t q0, size_t k0, size_t total_q)
{
    const size_t rq = q0 * (size_t)item->q_strides[2],
                 rk = k0 * (size_t)item->k_strides[2],
                 rv = k0 * (size_t)item->v_strides[2],
                 ro = q0 * (size_t)item->o_strides[2];
    b->off[B_Q] += rq;
    b->off[B_DQ] += rq;
    b->off[B_K] += rk;
    b->off[B_DK] += rk;
    b->off[B_V] += rv;
    b->off[B_DV] += rv;
    b->off[B_O] += ro;
    b->off[B_DO] += ro;
    b->off[B_LSE] += q0;
    b->lse_pitch = total_q;
}

/* Enqueues a copy of lse rows of a packed sequence, heads_q rows of seq_q
 * floats each pitch floats apart from float offset off in src, into the
 * dense [heads_q, seq_q] dst. */
static attn_status copy_rows(bwd_run *r, const attn_sdpa_desc *d, cl_mem src,
                             size_t off, size_t pitch, cl_mem dst,
                             attn_err *err)
{
    const size_t f = sizeof(float);
    const size_t so[3] = {off * f, 0, 0}, dor[3] = {0, 0, 0};
    const size_t region[3] = {(size_t)d->seq_q * f,
                              (size_t)d->batch * (size_t)d->heads_q, 1};
    cl_uint n;
    const cl_event *wl = chain_wait(r, &n);
    cl_event ev = NULL;
    cl_int rc = ATTN_CL(clEnqueueCopyBufferRect)(r->queue, src, dst, so, dor,
                                                 region, pitch * f, 0,
                                                 region[0], 0, n, wl, &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "enqueueing a copy of lse on %s failed: %s",
                         r->rt->info.name, attn_cl_error_name(rc));
    chain_push(r, ev);
    return ATTN_OK;
}

/* The moves and copies of the call: the caller's tensors to their dense
 * copies (in), or the gradients back (out). */
static attn_status moves(bwd_run *r, const attn_sdpa_desc *d,
                         const attn_cl_bwd_bufs *b, int in, attn_err *err)
{
    attn_status s = ATTN_OK;
    for (int i = 0; i < N_BUF && s == ATTN_OK; i++) {
        const int input = i <= B_LSE;
        if (!b->mem[i] || r->borrowed[i] || input != in)
            continue;
        if (i == B_LSE && b->lse_pitch) /* [heads_q, rows at a pitch] */
            s = copy_rows(r, d, b->mem[i], b->off[i], b->lse_pitch, r->m[i],
                          err);
        else if (i == B_LSE || i == B_DBIAS || i == B_DW) /* floats, dense */
            s = in ? copy(r, b->mem[i], b->off[i] * sizeof(float), r->m[i], 0,
                          r->bytes[i], err)
                   : copy(r, r->m[i], 0, b->mem[i], b->off[i] * sizeof(float),
                          r->bytes[i], err);
        else
            s = move(r, d, bwd_kind[i], b->mem[i], b->off[i], r->m[i], in, err);
    }
    return s;
}

/* d additive_w of a packed call: the sequences' parts, float [batch (the
 * sequences), heads_q, head_dim] in b->mem[B_DWP], summed by attn_bwd_dw
 * into b->mem[B_DW] (at its offset: through a dense copy). */
static attn_status sum_dw(bwd_run *r, const attn_sdpa_desc *d,
                          const attn_cl_bwd_bufs *b, attn_err *err)
{
    const size_t nw = (size_t)d->heads_q * (size_t)d->head_dim;
    const cl_int dims[4] = {d->batch, d->heads_q, 1, d->head_dim};
    const size_t g[1] = {(nw + 63) / 64 * 64};
    attn_status s;
    cl_int rc = CL_SUCCESS;
    if (b->off[B_DW] == 0) {
        r->borrowed[B_DW] = 1;
        r->m[B_DW] = b->mem[B_DW];
    } else if (!(r->m[B_DW] =
                     ATTN_CL(clCreateBuffer)(r->rt->context, CL_MEM_READ_WRITE,
                                             nw * sizeof(float), NULL, &rc))) {
        return attn_fail(err, attn_cl_status(rc),
                         "cannot allocate %zu bytes on %s for d additive_w: %s",
                         nw * sizeof(float), r->rt->info.name,
                         attn_cl_error_name(rc));
    }
    const attn_cl_karg a[] = {
        ATTN_CL_KARG(b->mem[B_DWP]), ATTN_CL_KARG(r->m[B_DW]),
        ATTN_CL_KARG(dims[0]),       ATTN_CL_KARG(dims[1]),
        ATTN_CL_KARG(dims[2]),       ATTN_CL_KARG(dims[3])};
    if ((s = set_args(r->k[4], 0, a, 6, err)) ||
        (s = run_kernel(r, r->k[4], "attn_bwd_dw", 1, g, NULL, err)))
        return s;
    return r->borrowed[B_DW]
               ? ATTN_OK
               : copy(r, r->m[B_DW], 0, b->mem[B_DW],
                      b->off[B_DW] * sizeof(float), nw * sizeof(float), err);
}

/* The padding rows of q_start in r's copy of lse at -INFINITY, behind
 * the chain's last command (the copy); their marker then the last. */
static attn_status pad_lse(bwd_run *r, const attn_sdpa_desc *d,
                           const int32_t *q_start, attn_err *err)
{
    cl_uint n;
    const cl_event *wl = chain_wait(r, &n);
    cl_event ev = NULL;
    attn_status s = attn_cl_pad_rows(r->rt, r->queue, d, q_start, NULL, 0,
                                     r->m[B_LSE], 0, 0, n, wl, &ev, err);
    if (s == ATTN_OK)
        chain_push(r, ev);
    return s;
}

/* One item's commands on r (a fresh run carrying the chain's last event):
 * the caller's buffers taken where they lie dense at offset 0, the others
 * gathered (lse always with it->q_start: its padding rows then set to
 * -INFINITY in the copy), the kernels, the gradients scattered; or, for
 * an item with no key or no query (it->zero), its dq or dk and dv rows
 * zeroed. */
static attn_status item_enqueue(bwd_run *r, const attn_cl_bwd_item *it,
                                cl_mem dummy, attn_err *err)
{
    const attn_sdpa_desc *d = &it->d;
    const attn_cl_bwd_bufs *b = &it->b;
    int lanes = 0, moved = it->zero != 0;
    attn_status s;
    if (!prepared_ok(it->p))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_bwd_enqueue: no prepared variant");
    for (int i = 0; i < N_BUF && !it->zero; i++) {
        if (!b->mem[i])
            continue;
        if (i == B_LSE || i == B_DBIAS || i == B_DW)
            r->borrowed[i] = b->off[i] == 0 &&
                             !(i == B_LSE && (b->lse_pitch || it->q_start));
        else
            r->borrowed[i] = dense_at_zero(d, bwd_kind[i], b->off[i]);
        if (r->borrowed[i])
            r->m[i] = b->mem[i];
        else if (i != B_LSE && i != B_DBIAS && i != B_DW)
            moved = 1;
    }
    const int sum = it->zero == ATTN_CL_BWD_SUM_DW;
    if ((s = kernels_create(r, it->p, !it->zero && b->mem[B_DBIAS],
                            (!it->zero || sum) && b->mem[B_DW], moved && !sum,
                            &lanes, err)))
        return s;
    if (sum)
        return sum_dw(r, d, b, err);
    if (it->zero) { /* dq (no key), or dk and dv (no query) */
        for (int i = B_DQ; i <= B_DV && s == ATTN_OK; i++)
            if ((i == B_DQ) == (it->zero == ATTN_CL_BWD_ZERO_DQ))
                s = move(r, d, bwd_kind[i], b->mem[i], b->off[i], dummy, 2,
                         err);
        return s;
    }
    if ((s = size_buffers(r, d, b->mem[B_DBIAS] != NULL, b->mem[B_DW] != NULL,
                          err)) ||
        (s = alloc_buffers(r, d, err)) || (s = moves(r, d, b, 1, err)) ||
        (it->q_start && b->mem[B_LSE] &&
         (s = pad_lse(r, d, it->q_start, err))) ||
        (s = launch_on(r, it->p->variant, lanes, d, dummy, err)))
        return s;
    return moves(r, d, b, 0, err);
}

attn_status attn_cl_bwd_enqueue(attn_cl_runtime *rt, int n,
                                const attn_cl_bwd_item *items,
                                cl_command_queue queue, cl_uint n_wait,
                                const cl_event *wait, cl_event *done,
                                attn_err *err)
{
    attn_cl_gate gate = ATTN_CL_GATE_INIT;
    cl_event last = NULL;
    attn_status s;
    cl_mem dummy;
    if ((s = attn_cl_dummy(rt, &dummy, err)) ||
        (s = attn_cl_gate_open(rt, 0, n_wait, wait, &gate, err)))
        return attn_cl_gate_close(s, &gate, NULL, done, err);
    for (int i = 0; i < n && s == ATTN_OK; i++) {
        bwd_run r;
        memset(&r, 0, sizeof r);
        r.rt = rt;
        r.queue = queue;
        r.chain = 1;
        r.wl = gate.wl;
        r.n_wl = n_wait + 1;
        r.last = last;
        s = item_enqueue(&r, &items[i], dummy, err);
        last = r.last;
        run_free(&r); /* released once the commands are done */
    }
    if (s == ATTN_OK && !last) { /* nothing to do: a marker for *done */
        cl_int rc =
            clEnqueueMarkerWithWaitList(queue, n_wait + 1, gate.wl, &last);
        if (rc != CL_SUCCESS) {
            last = NULL;
            s = attn_fail(err, attn_cl_status(rc),
                          "clEnqueueMarkerWithWaitList failed: %s",
                          attn_cl_error_name(rc));
        }
    }
    return attn_cl_gate_close(s, &gate, last, done, err);
}
