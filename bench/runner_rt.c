/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The openvino and onnxruntime rows of one attn-bench case: each peer
 * (bench/peer_runtimes.py) is started for the case with the case's inputs
 * and kept up (peer_serve.c), so that its calls are timed in the same
 * interleaved rounds as libattn's (entries.c); before it is timed, its
 * output is compared with native's and a wrong one is not timed.
 */
#include "runner.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest difference from native's output a peer may show and still
 * be timed: f32 peers compute in f32 (about 1e-7 here); f16 outputs are
 * rounded to binary16 (2^-12 near 1) on both sides. */
#define RT_TOL_F32 1e-4
#define RT_TOL_F16 2e-3

static const struct {
    impl_id id;
    const char *impl, *label;
} RT[RT_COUNT] = {
    {IMPL_OPENVINO, "openvino", "openvino SDPA"},
    {IMPL_ONNXRUNTIME, "onnxruntime", "ort MHA"},
    {IMPL_ONNXRUNTIME, "onnxruntime", "ort Attention"},
};

void runner_runtimes_add(const options *opt, const peer_state *ps,
                         timed_entry *es, int *n_es, case_rows *cr,
                         const case_inputs *in, int causal, int reps)
{
    for (int i = 0; i < RT_COUNT; i++) {
        if (!opt_has(opt, RT[i].id))
            continue;
        char lab[96];
        if (in->decode)
            snprintf(lab, sizeof lab, "%s seq_q=%d", RT[i].label, in->s.seq_q);
        else
            snprintf(lab, sizeof lab, "%s", RT[i].label);
        row *r = case_row_add(cr, in, causal, RT[i].id, RT[i].impl, lab);
        if (!r)
            return;
        r->timing = "python";
        util_scopy(r->device, sizeof r->device, "CPU");
        if (!ps->rt_ok[i]) {
            r->note = ps->rt_why[i];
            continue;
        }
        if (!in->py_in) {
            r->note = "skipped: the inputs could not be written to a temp "
                      "file";
            continue;
        }
        serve_job job;
        memset(&job, 0, sizeof job);
        job.script = opt->rt_script;
        job.backend = rt_backend((rt_peer)i);
        job.s = in->s;
        job.causal = causal;
        job.f16 = in->f16;
        job.in_path = in->py_in;
        job.out_path = in->py_out;
        timed_entry *e = &es[*n_es];
        memset(e, 0, sizeof *e);
        char impl[128], how[128], why[512];
        int rc = serve_start(opt, &job, &e->sp, impl, sizeof impl, how,
                             sizeof how, why, sizeof why);
        if (rc != 0) {
            case_row_note(cr, r, "%s: %s", rc > 0 ? "skipped" : "failed", why);
            continue;
        }
        if (how[0]) {
            size_t l = strlen(r->label);
            snprintf(r->label + l, sizeof r->label - l, " (%.60s)", how);
        }
        e->kind = EX_SERVE;
        e->r = r;
        e->reps = reps;
        (*n_es)++;
    }
}

void runner_runtimes_check(const case_inputs *in, timed_entry *es, int n_es,
                           const float *ref)
{
    size_t cnt = shape_q_count(&in->s);
    double tol = in->f16 ? RT_TOL_F16 : RT_TOL_F32;
    float *o = NULL;
    for (int i = 0; i < n_es; i++) {
        timed_entry *e = &es[i];
        if (e->kind != EX_SERVE || !e->alive)
            continue;
        if (!o && !(o = malloc(cnt * sizeof *o))) {
            snprintf(e->why, sizeof e->why, "not timed: out of memory");
            e->alive = 0;
            continue;
        }
        if (serve_output(e->sp, e->why, sizeof e->why) != 0) {
            e->alive = 0;
            continue;
        }
        if (python_peer_read(in->py_out, o, cnt) != 0) {
            snprintf(e->why, sizeof e->why,
                     "not timed: its output could not be read back");
            e->alive = 0;
            continue;
        }
        float d = util_max_abs_diff(ref, o, cnt);
        e->r->diff = d;
        if (!(d <= tol)) {
            snprintf(e->why, sizeof e->why,
                     "wrong result: max|diff| vs native %.1e > %.0e, not "
                     "timed",
                     d, tol);
            e->alive = 0;
        }
    }
    free(o);
}
