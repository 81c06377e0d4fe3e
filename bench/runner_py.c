/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The python peers of one attn-bench case, run after the in-process ones
 * as subprocesses: numpy (as-is, and with OPENBLAS_* unset when set) and
 * torch on the CPU (peer_numpy.py, square case, f32), and torch-cuda
 * (peer_torch_cuda.py, square and decode cases, f32 and f16).  Each reads
 * the case's inputs from a file, times itself, writes O back, and O is
 * compared with native's.
 */
#include "runner.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { PY_NUMPY, PY_TORCH, PY_CUDA };

void runner_python(const options *opt, peer_state *ps, const case_inputs *in,
                   int causal, int reps, const float *o_lib, float *o_peer,
                   case_rows *cr)
{
    size_t cnt = shape_q_count(&in->s);
    struct {
        int kind, unset;
    } jobs[4];
    int n_jobs = 0;
    if (!in->decode && ps->numpy_ok && in->py_in) {
        jobs[n_jobs].kind = PY_NUMPY;
        jobs[n_jobs++].unset = 0;
        if (ps->numpy_variants == 2) {
            jobs[n_jobs].kind = PY_NUMPY;
            jobs[n_jobs++].unset = 1;
        }
    }
    if (!in->decode && ps->torch_ok && in->py_in) {
        jobs[n_jobs].kind = PY_TORCH;
        jobs[n_jobs++].unset = 0;
    }
    if (opt->torch_cuda) {
        jobs[n_jobs].kind = PY_CUDA;
        jobs[n_jobs++].unset = 0;
    }
    /* numpy holds one head's S and exp(S) at a time */
    double py_mib =
        2.0 * in->s.seq_q * (double)in->s.seq_kv * sizeof(float) / 1048576.0;
    for (int j = 0; j < n_jobs; j++) {
        int kind = jobs[j].kind;
        if ((kind == PY_TORCH && !ps->torch_ok) ||
            (kind == PY_NUMPY && !ps->numpy_ok))
            continue;
        const char *impl = kind == PY_NUMPY   ? "numpy"
                           : kind == PY_TORCH ? "torch"
                                              : "torch-cuda";
        impl_id id = kind == PY_NUMPY   ? IMPL_NUMPY
                     : kind == PY_TORCH ? IMPL_TORCH
                                        : IMPL_TORCH_CUDA;
        char lab[96];
        if (kind == PY_CUDA && in->decode)
            snprintf(lab, sizeof lab, "torch-cuda sdpa seq_q=%d", in->s.seq_q);
        else if (kind == PY_CUDA)
            snprintf(lab, sizeof lab, "torch-cuda sdpa");
        else if (kind == PY_TORCH)
            snprintf(lab, sizeof lab, "torch sdpa");
        else if (ps->numpy_variants == 2)
            snprintf(lab, sizeof lab, "numpy matmul+softmax (OPENBLAS_* %s)",
                     jobs[j].unset ? "unset" : "as-is");
        else
            snprintf(lab, sizeof lab, "numpy matmul+softmax");
        if (kind == PY_CUDA && !ps->cuda_ok) {
            row *r = case_row_add(cr, in, causal, id, impl, lab);
            if (r)
                case_row_note(cr, r, "skipped: %s", ps->cuda_why);
            continue;
        }
        if (kind == PY_CUDA && !in->py_in) {
            row *r = case_row_add(cr, in, causal, id, impl, lab);
            if (r)
                r->note = "skipped: the inputs could not be written to a "
                          "temp file";
            continue;
        }
        if (kind == PY_NUMPY && py_mib > opt->max_mem_mib) {
            row *r = case_row_add(cr, in, causal, id, impl, lab);
            if (r)
                case_row_note(cr, r,
                              "skipped: S and exp(S) of one head = %.0f MiB > "
                              "--max-mem %.0f MiB",
                              py_mib, opt->max_mem_mib);
            continue;
        }
        py_job job;
        memset(&job, 0, sizeof job);
        job.script = kind == PY_CUDA ? opt->cuda_script : opt->script;
        job.backend = kind == PY_NUMPY   ? "numpy"
                      : kind == PY_TORCH ? "torch"
                                         : NULL;
        job.s = in->s;
        job.causal = causal;
        job.reps = reps;
        job.f16 = in->f16;
        job.in_path = in->py_in;
        job.out_path = in->py_out;
        job.unset_openblas = jobs[j].unset;
        py_result pr;
        python_peer_run(opt, &job, &pr);
        if (kind == PY_TORCH && !pr.ok && pr.fatal) {
            ps->torch_ok = 0; /* not installed: leave torch out quietly */
            continue;
        }
        if (kind == PY_TORCH && pr.ok)
            util_scopy(lab, sizeof lab, pr.impl);
        if (kind == PY_CUDA && pr.ok && pr.how[0] && strcmp(pr.how, "-")) {
            size_t l = strlen(lab);
            snprintf(lab + l, sizeof lab - l, " (%.60s)", pr.how);
        }
        row *r = case_row_add(cr, in, causal, id, impl, lab);
        if (!r)
            continue;
        r->timing = kind == PY_CUDA ? "cuda-event" : "python";
        util_scopy(r->device, sizeof r->device,
                   kind == PY_CUDA ? pr.device : "CPU");
        if (!pr.ok) {
            case_row_note(cr, r, "failed: %s", pr.error);
            if (pr.fatal && kind == PY_NUMPY) {
                ps->numpy_ok = 0;
                util_scopy(ps->numpy_why, sizeof ps->numpy_why, pr.error);
            }
            continue;
        }
        if (kind == PY_NUMPY) {
            util_scopy(ps->blas_seen[jobs[j].unset], sizeof ps->blas_seen[0],
                       pr.blas);
            util_scopy(ps->numpy_impl, sizeof ps->numpy_impl, pr.impl);
        }
        r->ok = 1;
        r->median_ms = pr.median_ms;
        r->min_ms = pr.min_ms;
        if (in->py_out && python_peer_read(in->py_out, o_peer, cnt) == 0)
            r->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        else
            r->diff = NAN;
    }
}
