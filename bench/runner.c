/*
 * One case of attn-bench: libattn warmed up and timed, interleaved with the
 * ggml runs, then the python peers as subprocesses; every peer's output
 * compared with libattn's and libattn's with the f64 reference.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int runner_case(const options *opt, attn_context *ctx, peer_state *ps, int n,
                int causal, const float *q, const float *k, const float *v,
                float *o_lib, float *o_peer, const char *in_path,
                const char *out_path, double *lib_out_ms,
                double *ggml_out_ms /* [2] */)
{
    int reps = options_reps(opt, n);
    size_t cnt = (size_t)HEADS * n * HEAD_DIM;
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = HEADS;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = HEAD_DIM;
    d.mask.causal = causal;
    d.dtype = ATTN_F32;

    row rows[8];
    int n_rows = 0;
    memset(rows, 0, sizeof rows);

    /* libattn warm-up */
    for (int w = 0; w < opt->warmup; w++) {
        attn_status st = attn_sdpa(ctx, &d, q, k, v, o_lib, NULL);
        if (st != ATTN_OK) {
            fprintf(stderr, "attn-bench: attn_sdpa(N=%d): %s: %s\n", n,
                    attn_status_string(st), attn_context_last_error(ctx));
            return -1;
        }
    }

    /* ggml cases, prepared (and warmed) before timing */
    ggml_peer_case *gc[2] = {NULL, NULL};
    char gwhy[2][256] = {"", ""};
    for (int t = 0; t < 2; t++) {
        if (!ps->g || !ps->ggml_ok[t])
            continue;
        if (ggml_peer_prepare(ps->g, HEADS, n, HEAD_DIM, causal, t == 0,
                              opt->threads, q, k, v, &gc[t], gwhy[t],
                              sizeof gwhy[t]) != 0) {
            gc[t] = NULL;
            continue;
        }
        for (int w = 0; w < opt->warmup; w++)
            if (ggml_peer_exec(gc[t]) != 0) {
                snprintf(gwhy[t], sizeof gwhy[t], "graph compute failed");
                ggml_peer_case_free(gc[t]);
                gc[t] = NULL;
                break;
            }
    }

    /* timed runs, libattn and ggml interleaved */
    double *tl = calloc((size_t)reps, sizeof *tl);
    double *tg[2] = {calloc((size_t)reps, sizeof(double)),
                     calloc((size_t)reps, sizeof(double))};
    if (!tl || !tg[0] || !tg[1]) {
        free(tl);
        free(tg[0]);
        free(tg[1]);
        ggml_peer_case_free(gc[0]);
        ggml_peer_case_free(gc[1]);
        fprintf(stderr, "attn-bench: out of memory\n");
        return -1;
    }
    int interleaved = gc[0] || gc[1];
    for (int r = 0; r < reps; r++) {
        if (interleaved)
            util_pause_ms(5); /* let the other pool's spinning workers sleep */
        double t0 = util_now_ms();
        attn_status st = attn_sdpa(ctx, &d, q, k, v, o_lib, NULL);
        tl[r] = util_now_ms() - t0;
        if (st != ATTN_OK) {
            fprintf(stderr, "attn-bench: attn_sdpa(N=%d): %s: %s\n", n,
                    attn_status_string(st), attn_context_last_error(ctx));
            free(tl);
            free(tg[0]);
            free(tg[1]);
            ggml_peer_case_free(gc[0]);
            ggml_peer_case_free(gc[1]);
            return -1;
        }
        for (int t = 0; t < 2; t++) {
            if (!gc[t])
                continue;
            util_pause_ms(5);
            t0 = util_now_ms();
            int rc = ggml_peer_exec(gc[t]);
            tg[t][r] = util_now_ms() - t0;
            if (rc != 0) {
                snprintf(gwhy[t], sizeof gwhy[t], "graph compute failed");
                ggml_peer_case_free(gc[t]);
                gc[t] = NULL;
            }
        }
    }

    row *lr = &rows[n_rows++];
    lr->impl = "libattn";
    snprintf(lr->label, sizeof lr->label, "libattn %s", opt->device);
    lr->ok = 1;
    lr->min_ms = util_min(tl, reps);
    lr->median_ms = util_median(tl, reps);
    lr->diff = util_check_rows(q, k, v, o_lib, n, causal, n >= 4096 ? 8 : 16);
    *lib_out_ms = lr->median_ms;

    for (int t = 0; t < 2; t++) {
        if (!ps->g || !(opt->ggml_kv & (1 << t)))
            continue;
        row *gr = &rows[n_rows++];
        gr->impl = "ggml";
        snprintf(gr->label, sizeof gr->label, "ggml flash_attn_ext (K/V %s)",
                 t == 0 ? "f16" : "f32");
        if (!gc[t]) {
            gr->note = ps->ggml_ok[t] ? gwhy[t] : ps->ggml_why[t];
            continue;
        }
        gr->ok = 1;
        gr->min_ms = util_min(tg[t], reps);
        gr->median_ms = util_median(tg[t], reps);
        ggml_peer_output(gc[t], o_peer);
        gr->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        if (ggml_out_ms)
            ggml_out_ms[t] = gr->median_ms;
        ggml_peer_case_free(gc[t]);
        gc[t] = NULL;
    }
    free(tl);
    free(tg[0]);
    free(tg[1]);

    /* numpy, then torch: subprocesses */
    static char notes[4][600];
    int py_jobs = 0;
    struct {
        const char *backend;
        int unset;
    } jobs[3];
    if (ps->numpy_ok) {
        jobs[py_jobs].backend = "numpy";
        jobs[py_jobs++].unset = 0;
        if (ps->numpy_variants == 2) {
            jobs[py_jobs].backend = "numpy";
            jobs[py_jobs++].unset = 1;
        }
    }
    if (ps->torch_ok) {
        jobs[py_jobs].backend = "torch";
        jobs[py_jobs++].unset = 0;
    }
    for (int j = 0; j < py_jobs; j++) {
        int is_torch = strcmp(jobs[j].backend, "torch") == 0;
        if ((is_torch && !ps->torch_ok) || (!is_torch && !ps->numpy_ok))
            continue;
        py_result pr;
        python_peer_run(opt, n, causal, reps, in_path, out_path,
                        jobs[j].backend, jobs[j].unset, &pr);
        if (is_torch && !pr.ok && pr.fatal) {
            ps->torch_ok = 0; /* not installed: leave torch out quietly */
            continue;
        }
        row *pr_row = &rows[n_rows++];
        pr_row->impl = jobs[j].backend;
        if (is_torch)
            util_scopy(pr_row->label, sizeof pr_row->label,
                       pr.ok ? pr.impl : "torch sdpa");
        else if (ps->numpy_variants == 2)
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax (OPENBLAS_* %s)",
                     jobs[j].unset ? "unset" : "as-is");
        else
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax");
        if (!pr.ok) {
            snprintf(notes[j], sizeof notes[j], "failed: %s", pr.error);
            pr_row->note = notes[j];
            if (pr.fatal && !is_torch) {
                ps->numpy_ok = 0;
                util_scopy(ps->numpy_why, sizeof ps->numpy_why, pr.error);
            }
            continue;
        }
        if (!is_torch) {
            util_scopy(ps->blas_seen[jobs[j].unset], sizeof ps->blas_seen[0],
                       pr.blas);
            util_scopy(ps->numpy_impl, sizeof ps->numpy_impl, pr.impl);
        }
        pr_row->ok = 1;
        pr_row->median_ms = pr.median_ms;
        pr_row->min_ms = pr.min_ms;
        if (out_path && python_peer_read(out_path, o_peer, cnt) == 0)
            pr_row->diff = util_max_abs_diff(o_lib, o_peer, cnt);
        else
            pr_row->diff = NAN;
    }

    for (int i = 0; i < n_rows; i++)
        report_row(n, causal, i == 0, &rows[i], *lib_out_ms);
    fflush(stdout);
    return 0;
}
