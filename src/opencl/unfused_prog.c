/*
 * The programs of the three-kernel path (one per dtype): the tuning, fitted
 * to the device's work-group and local-memory limits, turned into -D
 * options, built on first use and kept in rt->launch until the tuning
 * changes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/launch_common.h"
#include "opencl/unfused_impl.h"

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
    const cl_kernel k[] = {p->aggregate, p->softmax, p->score};
    attn_cl_release_prog(p->prog, k, 3);
    memset(p, 0, sizeof *p);
}

static void state_free(void *launch)
{
    unfused_state *st = launch;
    if (!st)
        return;
    for (int i = 0; i < UNFUSED_N_DTYPES; i++)
        prog_release(&st->prog[i]);
    attn_cl_release_mem(st->dummy);
    free(st);
}

/* The launch state of rt, created on first use.  Call with rt->lock held. */
static attn_status state_get(attn_cl_runtime *rt, unfused_state **out,
                             attn_err *err)
{
    void *st = rt->launch;
    attn_status s;
    if (!st) {
        if ((s = attn_cl_state_new(rt, sizeof(unfused_state),
                                   offsetof(unfused_state, dummy),
                                   "the kernel launch state", &st, err)))
            return s;
        attn_cl_unfused_tuning_default(&((unfused_state *)st)->tuning);
        rt->launch = st;
        rt->launch_free = state_free;
    }
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
        for (int i = 0; i < UNFUSED_N_DTYPES; i++)
            prog_release(&st->prog[i]);
    }
    pthread_mutex_unlock(&rt->lock);
    return s;
}

/* ---- building -------------------------------------------------------- */

int attn_cl_unfused_options(const attn_cl_unfused_tuning *t, int f16, char *buf,
                            size_t cap)
{
    return snprintf(buf, cap,
                    "-DATTN_F16=%d -DSC_TQ=%d -DSC_TK=%d -DSC_TD=%d "
                    "-DSC_WQ=%d -DSC_WK=%d -DSM_WG=%d -DAG_TQ=%d -DAG_TV=%d "
                    "-DAG_TJ=%d -DAG_WQ=%d -DAG_WV=%d %s",
                    f16, t->sc_tq, t->sc_tk, t->sc_td, t->sc_wq, t->sc_wk,
                    t->sm_wg, t->ag_tq, t->ag_tv, t->ag_tj, t->ag_wq, t->ag_wv,
                    t->options);
}

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

    if ((s = attn_cl_wg_limits(rt, &dev_wg, items, err)))
        goto fail;
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
        attn_cl_unfused_options(&t, f16, opts, sizeof opts);
        if ((s = attn_cl_build_tagged(rt, f16 ? "unfused_f16" : "unfused_f32",
                                      names, 3, opts, &p->prog, err)))
            return s;
        if ((s = attn_cl_create_kernel(p->prog, "attn_score", &p->score,
                                       err)) ||
            (s = attn_cl_create_kernel(p->prog, "attn_softmax", &p->softmax,
                                       err)) ||
            (s = attn_cl_create_kernel(p->prog, "attn_aggregate", &p->aggregate,
                                       err)))
            goto fail;
        ks[0] = p->score;
        ks[1] = p->softmax;
        ks[2] = p->aggregate;
        /* A kernel may allow fewer items than the device (registers) or
         * need more local memory than the tiles (the compiler's own). */
        for (int i = 0; i < 3; i++) {
            size_t kwg;
            cl_ulong klocal;
            if ((s = attn_cl_kernel_limits(rt, ks[i], &kwg, &klocal, err)))
                goto fail;
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

attn_status attn_cl_unfused_prog_get(attn_cl_runtime *rt, attn_dtype dtype,
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
        if ((s = build_prog(rt, st->tuning, dtype == ATTN_F16, p, &e)))
            return attn_cl_keep_failure(s, &e, &p->failed, p->why, err);
    }
    *out = p;
    *st_out = st;
    return ATTN_OK;
}
