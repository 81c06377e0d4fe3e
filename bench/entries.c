/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The timed loop of one attn-bench case (runner.h): every entry's warm-up,
 * the check of the python peers kept up for the case against native
 * before they are timed, then interleaved rounds (native, cl-*, CLBlast,
 * ggml, openvino, onnxruntime, native, ...) with a pause before each run,
 * so that load changes on a shared machine hit all of them alike and one
 * library's spinning workers do not take the next one's time.
 */
#include "runner.h"

#ifdef ATTN_BENCH_HAVE_CLBLAST
#include "peer_clblast.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int f16_widen(void *o, size_t cnt, int kind)
{
    uint16_t *tmp = malloc(cnt * sizeof *tmp);
    if (!tmp)
        return -1;
    memcpy(tmp, o, cnt * sizeof *tmp);
    float *f = o;
    for (size_t j = 0; j < cnt; j++)
        f[j] = kind == 2 ? util_from_bf16(tmp[j]) : util_from_half(tmp[j]);
    free(tmp);
    return 0;
}

/* One run; *ms receives the time shown when the run times itself
 * (events), else it stays NAN and the caller's clock counts. */
static int entry_exec(timed_entry *e, const res_inputs *ri, const void *q,
                      const void *k, const void *v, double *ms, double *wall)
{
    switch (e->kind) {
    case EX_ATTN: {
        attn_status st = attn_sdpa(e->ctx, e->d, q, k, v, e->o, NULL);
        if (st != ATTN_OK) {
            snprintf(e->why, sizeof e->why, "attn_sdpa: %s: %.300s",
                     attn_status_string(st), attn_context_last_error(e->ctx));
            return -1;
        }
        return 0;
    }
    case EX_RESIDENT:
        return res_call(ri->res, e->ctx, e->d, ri->q, ri->k, ri->v, e->dev_o,
                        ms, wall, e->why, sizeof e->why);
    case EX_GGML:
        if (ggml_peer_exec(e->gc) != 0) {
            snprintf(e->why, sizeof e->why, "graph compute failed");
            return -1;
        }
        return 0;
    case EX_SERVE:
        return serve_run(e->sp, ms, e->why, sizeof e->why);
    case EX_CLBLAST:
#ifdef ATTN_BENCH_HAVE_CLBLAST
        if (e->resident_cb)
            return clblast_case_exec_resident(e->cc, ms, wall, e->why,
                                              sizeof e->why);
        return clblast_case_exec(e->cc, e->why, sizeof e->why);
#else
        return -1;
#endif
    }
    return -1;
}

void entry_free(timed_entry *e)
{
    if (e->gc)
        ggml_peer_case_free(e->gc);
#ifdef ATTN_BENCH_HAVE_CLBLAST
    if (e->cc)
        clblast_case_free(e->cc);
#endif
    serve_stop(e->sp);
    res_buf_free(e->dev_o);
    if (e->own_o)
        free(e->o);
    free(e->t);
    free(e->w);
    memset(e, 0, sizeof *e);
}

/* Native's output (es[0]) as floats, for the python peers' check; runs
 * native once when the warm-up did not.  NULL when out of memory or when
 * native failed. */
static float *native_output(const options *opt, timed_entry *es,
                            const res_inputs *ri, const case_inputs *in)
{
    double ms, wall;
    const void *q = in->lq, *k = in->lk, *v = in->lv;
    size_t cnt = shape_q_count(&in->s);
    if (!es[0].alive ||
        (opt->warmup == 0 && entry_exec(&es[0], ri, q, k, v, &ms, &wall)))
        return NULL;
    float *ref = malloc(cnt * sizeof *ref * (in->f16 ? 2 : 1));
    if (!ref)
        return NULL;
    memcpy(ref, es[0].o, cnt * (in->f16 ? 2 : 4));
    if (in->f16 && f16_widen(ref, cnt, in->f16) != 0) {
        free(ref);
        return NULL;
    }
    return ref;
}

void time_entries(const options *opt, timed_entry *es, int n_es,
                  const res_inputs *ri, const case_inputs *in)
{
    const void *q = in->lq, *k = in->lk, *v = in->lv;
    int rounds = 0;
    double ms, wall;
    for (int i = 0; i < n_es; i++) {
        timed_entry *e = &es[i];
        e->t = calloc((size_t)e->reps, sizeof *e->t);
        e->w = calloc((size_t)e->reps, sizeof *e->w);
        e->alive = e->t && e->w;
        if (!e->alive)
            snprintf(e->why, sizeof e->why, "out of memory");
        for (int w = 0; w < opt->warmup && e->alive; w++)
            if (entry_exec(e, ri, q, k, v, &ms, &wall) != 0)
                e->alive = 0;
        if (e->reps > rounds)
            rounds = e->reps;
    }
    int served = 0;
    for (int i = 1; i < n_es; i++)
        served |= es[i].kind == EX_SERVE && es[i].alive;
    if (served) {
        float *ref = native_output(opt, es, ri, in);
        for (int i = 1; i < n_es; i++) {
            timed_entry *e = &es[i];
            if (e->kind != EX_SERVE || !e->alive || opt->warmup > 0)
                continue;
            if (entry_exec(e, ri, q, k, v, &ms, &wall) != 0)
                e->alive = 0;
        }
        if (ref)
            runner_runtimes_check(in, es, n_es, ref);
        for (int i = 1; i < n_es && !ref; i++)
            if (es[i].kind == EX_SERVE && es[i].alive) {
                es[i].alive = 0;
                snprintf(es[i].why, sizeof es[i].why,
                         "not timed: native's output to check it against is "
                         "missing (out of memory?)");
            }
        free(ref);
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n_es; i++) {
            timed_entry *e = &es[i];
            if (!e->alive || r >= e->reps)
                continue;
            if (n_es > 1)
                util_pause_ms(5); /* let the other pools' workers sleep */
            ms = wall = NAN;
            double t0 = util_now_ms();
            int rc = entry_exec(e, ri, q, k, v, &ms, &wall);
            double host = util_now_ms() - t0;
            e->t[r] = isnan(ms) ? host : ms;
            e->w[r] = isnan(wall) ? host : wall;
            if (rc != 0)
                e->alive = 0;
        }
    for (int i = 0; i < n_es; i++) {
        timed_entry *e = &es[i];
        if (!e->alive) {
            e->r->ok = 0;
            e->r->note = e->why;
            continue;
        }
        e->r->ok = 1;
        e->r->min_ms = util_min(e->t, e->reps);
        e->r->median_ms = util_median(e->t, e->reps);
        if (e->kind == EX_RESIDENT || e->resident_cb)
            e->r->wall_ms = util_median(e->w, e->reps);
    }
}
