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

enum { V_REF, V_FUSED };

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
};
const int attn_cl_n_bwd_variants =
    (int)(sizeof attn_cl_bwd_variants / sizeof attn_cl_bwd_variants[0]);

const char *const attn_cl_bwd_sources[ATTN_CL_BWD_N_SOURCES] = {"common.cl",
                                                                "backward.cl"};

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

int attn_cl_bwd_options(attn_dtype dtype, int hd, int hv, char *buf, size_t cap)
{
    int rt, bhd, bhv;
    bwd_build(hd, hv, &rt, &bhd, &bhv);
    return snprintf(buf, cap,
                    "-DATTN_F16=%d -DATTN_BF16=%d -DBWD_HD=%d -DBWD_HV=%d "
                    "-DBWD_RT=%d -DBWD_KB=%d -DBWD_QT=%d",
                    dtype == ATTN_F16, dtype == ATTN_BF16, bhd, bhv, rt, BWD_KB,
                    BWD_QT);
}

int attn_cl_bwd_find(const char *name)
{
    for (int i = 0; name && i < attn_cl_n_bwd_variants; i++)
        if (!strcasecmp(name, attn_cl_bwd_variants[i].name))
            return i;
    return -1;
}

/* A program of backward.cl for one (dtype, head sizes). */
typedef struct bwd_prog {
    struct bwd_prog *next;
    attn_dtype dtype;
    int rt, hd, hv; /* as built (bwd_build) */
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
    if (vi == V_FUSED) {
        int run_time, bhd, bhv; /* the local rows are as built */
        bwd_build(d->head_dim, d->head_dim_v, &run_time, &bhd, &bhv);
        const uint64_t local = (uint64_t)BWD_QT *
                               ((uint64_t)bhd + (uint64_t)bhv + 2) *
                               sizeof(float);
        if (rt->dev_wg < BWD_KB || rt->dev_items[0] < BWD_KB)
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "kernel variant \"%s\" needs work-groups of %d "
                             "items, the device has %zu",
                             name, BWD_KB, rt->dev_wg);
        if (local > rt->local_mem)
            return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                             "kernel variant \"%s\" needs %llu bytes of local "
                             "memory, the device has %llu",
                             name, (unsigned long long)local,
                             (unsigned long long)rt->local_mem);
    }
    return ATTN_OK;
}

/* The program for d, built now or kept; call with rt->lock held. */
static attn_status prog_get(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                            const bwd_prog **out, attn_err *err)
{
    bwd_state *st = rt->bwd;
    bwd_prog *p = NULL;
    char opts[160], tag[64];
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
            p->hv == bhv)
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
        attn_cl_bwd_options(d->dtype, d->head_dim, d->head_dim_v, opts,
                            sizeof opts);
        snprintf(tag, sizeof tag, "backward_%s_%s%d_%d",
                 d->dtype == ATTN_F16    ? "f16"
                 : d->dtype == ATTN_BF16 ? "bf16"
                                         : "f32",
                 run_time ? "rt" : "", bhd, bhv);
        s = attn_cl_build_tagged(rt, tag, attn_cl_bwd_sources,
                                 ATTN_CL_BWD_N_SOURCES, opts, &p->prog, &e);
        if (s == ATTN_ERR_BUILD_FAILED) { /* retrying will not help */
            p->prog = NULL;
            p->failed = s;
            memcpy(p->why, e.msg, sizeof p->why);
        } else if (s) {
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
    int order[2], n = 0;
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
        /* AUTO: the fused variant, then the universal one; a path takes
         * its own first */
        order[n++] = ch.path == ATTN_PATH_UNFUSED ? V_REF : V_FUSED;
        if (order[0] != V_REF)
            order[n++] = V_REF;
    }
    for (int i = 0; i < n; i++) {
        const attn_cl_bwd_variant *v = &attn_cl_bwd_variants[order[i]];
        why.msg[0] = '\0';
        s = supports(rt, order[i], d, grads, &why);
        if (s == ATTN_OK) {
            pthread_mutex_lock(&rt->lock);
            s = prog_get(rt, d, &pr->prog, &why);
            pthread_mutex_unlock(&rt->lock);
        }
        if (s == ATTN_OK) {
            out->variant = order[i];
            out->name = v->name;
            out->precision = ATTN_PRECISION_EXACT;
            return ATTN_OK;
        }
        if (ch.bwd_forced >= 0)
            return attn_fail(err, s,
                             "kernel variant \"%s\" (forced) cannot run this "
                             "call on %s: %.300s",
                             v->name, rt->info.name, why.msg);
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

typedef struct bwd_run {
    attn_cl_runtime *rt;
    cl_mem m[N_BUF];
    cl_mem bias, kv_len, addw;
    size_t bytes[N_BUF];
    size_t bias_ext[3]; /* the bias's batch, head, row extents (1: none) */
    cl_kernel k[5];     /* rowsum, dq, dk/dv, and dbias, d additive_w */
} bwd_run;

/* Enqueues k over global (local) items and waits for it: a failure as
 * ATTN_ERR_DEVICE (or the enqueue's own status). */
static attn_status run_kernel(bwd_run *r, cl_kernel k, const char *name,
                              cl_uint dims, const size_t *global,
                              const size_t *local, attn_err *err)
{
    cl_event ev = NULL;
    cl_int st = CL_COMPLETE;
    cl_int rc = ATTN_CL(clEnqueueNDRangeKernel)(r->rt->queue, k, dims, NULL,
                                                global, local, 0, NULL, &ev);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "enqueueing %s on %s failed: %s (%d)", name,
                         r->rt->info.name, attn_cl_error_name(rc), (int)rc);
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
        if (r->k[i] && (vi == V_REF || i < 2) &&
            clGetKernelWorkGroupInfo(r->k[i], r->rt->device,
                                     CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg,
                                     &kwg, NULL) == CL_SUCCESS &&
            kwg > 0)
            while (w > kwg && w > 1)
                w /= 2;
    const size_t gq[1] = {((size_t)rows_q + w - 1) / w * w};
    const size_t gk[1] = {((size_t)rows_k + w - 1) / w * w};
    const size_t wg[1] = {w};
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

/* Allocates the call's buffers (after checking that they fit) and uploads
 * the inputs. */
static attn_status upload(bwd_run *r, const attn_sdpa_desc *d,
                          const attn_sdpa_grad *g, attn_err *err)
{
    const size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    const size_t rows = (size_t)d->batch * d->heads_q * d->seq_q;
    const size_t krows = (size_t)d->batch * d->heads_kv * d->seq_kv;
    const void *src[N_BUF] = {g->q, g->k, g->v, g->o, g->d_o, g->lse};
    uint64_t total = attn_cl_input_bytes(d, NULL), largest = 0;
    attn_status s;
    cl_int rc;
    r->bytes[B_Q] = r->bytes[B_DQ] = rows * d->head_dim * es;
    r->bytes[B_O] = r->bytes[B_DO] = rows * d->head_dim_v * es;
    r->bytes[B_K] = r->bytes[B_DK] = krows * d->head_dim * es;
    r->bytes[B_V] = r->bytes[B_DV] = krows * d->head_dim_v * es;
    r->bytes[B_LSE] = r->bytes[B_D] = rows * sizeof(float);
    r->bias_ext[0] = r->bias_ext[1] = r->bias_ext[2] = 1;
    if (g->dbias) { /* the bias's extents: 1 where it broadcasts */
        size_t st[3];
        attn_bias_strides(d, st);
        r->bias_ext[0] = st[0] ? (size_t)d->batch : 1;
        r->bias_ext[1] = st[1] ? (size_t)d->heads_q : 1;
        r->bias_ext[2] = st[2] ? (size_t)d->seq_q : 1;
        r->bytes[B_DBIAS] = r->bias_ext[0] * r->bias_ext[1] * r->bias_ext[2] *
                            (size_t)d->seq_kv * sizeof(float);
    }
    if (g->d_additive_w) {
        r->bytes[B_DWP] = rows * (size_t)d->head_dim * sizeof(float);
        r->bytes[B_DW] = (size_t)d->heads_q * d->head_dim * sizeof(float);
    }
    for (int i = 0; i < N_BUF; i++) {
        total = attn_cl_add_bytes(total, r->bytes[i]);
        largest = r->bytes[i] > largest ? r->bytes[i] : largest;
    }
    if ((s = attn_cl_check_fit(r->rt, "the backward pass", total, largest,
                               err)))
        return s;
    for (int i = 0; i < N_BUF; i++) {
        if (!r->bytes[i])
            continue; /* a gradient not asked */
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
        if (i > B_LSE)
            continue;
        rc = ATTN_CL(clEnqueueWriteBuffer)(r->rt->queue, r->m[i], CL_TRUE, 0,
                                           r->bytes[i], src[i], 0, NULL, NULL);
        if (rc != CL_SUCCESS)
            return attn_fail(err, attn_cl_status(rc),
                             "copying the backward pass's inputs to %s "
                             "failed: %s",
                             r->rt->info.name, attn_cl_error_name(rc));
    }
    return attn_cl_copy_inputs(r->rt, d, &r->bias, &r->kv_len, &r->addw, err);
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

attn_status attn_cl_bwd_run(attn_cl_runtime *rt, const attn_prepared *p,
                            const attn_sdpa_desc *d, const attn_sdpa_grad *g,
                            attn_err *err)
{
    static const char *const kern[2][3] = {
        {"attn_bwd_rowsum", "attn_bwd_dq", "attn_bwd_dkdv"},
        {"attn_bwd_rowsum", "attn_bwd_dq", "attn_bwd_fused"}};
    /* a CPU device takes the fused variant's keys-in-lanes kernels (a
     * test build runs the GPU-shaped ones there too under
     * ATTN_TEST_BWD_GPU_SHAPE=1, so that tests reach them on PoCL) */
    int lanes =
        p && p->variant == V_FUSED && rt->info.kind == ATTN_DEVICE_CPU_OPENCL;
#ifdef ATTN_FAULT_INJECTION
    {
        const char *e = getenv("ATTN_TEST_BWD_GPU_SHAPE");
        if (e && !strcmp(e, "1"))
            lanes = 0;
    }
#endif
    const bwd_prep *pr = (const bwd_prep *)(const void *)p->data;
    bwd_run r;
    attn_status s = ATTN_OK;
    cl_mem dummy;
    if (!p || p->variant < 0 || p->variant >= attn_cl_n_bwd_variants ||
        !pr->prog)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_bwd_run: no prepared variant");
    memset(&r, 0, sizeof r);
    r.rt = rt;
    if ((s = attn_cl_dummy(rt, &dummy, err)))
        return s;
    for (int i = 0; i < 5 && s == ATTN_OK; i++) {
        cl_int rc;
        if (i == 3 && !g->dbias)
            continue;
        if (i == 4 && !g->d_additive_w)
            continue;
        const char *name = i == 3   ? "attn_bwd_dbias"
                           : i == 4 ? "attn_bwd_dw"
                           : !lanes ? kern[p->variant][i]
                           : i == 2 ? "attn_bwd_fused_v"
                           : i == 1 ? "attn_bwd_dq_v"
                                    : kern[p->variant][i];
        r.k[i] = clCreateKernel(pr->prog->prog, name, &rc);
        if (rc != CL_SUCCESS) {
            r.k[i] = NULL;
            s = attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                          name, attn_cl_error_name(rc));
        }
    }
    if (s == ATTN_OK && (s = upload(&r, d, g, err)) == ATTN_OK) {
        if (!r.bias)
            r.bias = dummy;
        if (!r.kv_len)
            r.kv_len = dummy;
        if (!r.addw)
            r.addw = dummy;
        s = launch(&r, p->variant, lanes, d, err);
        if (r.bias == dummy)
            r.bias = NULL;
        if (r.kv_len == dummy)
            r.kv_len = NULL;
        if (r.addw == dummy)
            r.addw = NULL;
    }
    if (s == ATTN_OK)
        s = download(&r, g, err);
    if (s != ATTN_OK)
        clFinish(rt->queue);
    for (int i = 0; i < 5; i++)
        if (r.k[i])
            clReleaseKernel(r.k[i]);
    for (int i = 0; i < N_BUF; i++)
        attn_cl_release_mem(r.m[i]);
    attn_cl_release_mem(r.bias);
    attn_cl_release_mem(r.kv_len);
    attn_cl_release_mem(r.addw);
    return s;
}
