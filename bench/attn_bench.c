/*
 * attn-bench: times attn_sdpa on libattn's native backend against what a CPU
 * user would run instead, in one process, side by side:
 *
 *   - ggml's ggml_flash_attn_ext on ggml's CPU backend (loaded with dlopen at
 *     run time; never a build dependency), same thread count;
 *   - numpy (matmul + softmax, OpenBLAS), as a python subprocess
 *     (bench/peer_numpy.py), with the OPENBLAS_* variables as found and, when
 *     any is set, with them unset;
 *   - torch's scaled_dot_product_attention when torch is installed.
 *
 * Shape: B=1, H=8, d=64, seq_q = seq_kv = N, f32, causal and not.  Each
 * implementation gets warm-up runs, then --reps timed runs (median and min);
 * libattn and ggml runs are interleaved so that drift hits both alike.  Every
 * peer's output is compared with libattn's (max abs diff), and libattn's with
 * a double-precision reference on sampled rows.
 */
#include "bench.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    options opt;
    int pa = options_parse(argc, argv, &opt);
    if (pa != 0)
        return pa > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);

    char script_buf[PATH_MAX + 32];
    if (opt.numpy || opt.torch) {
        if (!opt.script)
            opt.script = options_find_script(script_buf, sizeof script_buf);
        else if (!options_file_exists(opt.script))
            opt.script = NULL;
    }

    if (opt.csv && report_csv_open(opt.csv) != 0)
        return 2;

    peer_state ps;
    memset(&ps, 0, sizeof ps);

    /* Peers are loaded (and ggml self-tested in a child) before libattn
     * starts its threads. */
    char gwhy[1024] = "";
    int ggml_loaded = peers_setup(&opt, &ps, gwhy, sizeof gwhy);

    attn_options ao;
    attn_options_init(&ao);
    ao.device = opt.device;
    ao.threads = opt.threads;
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ao, &ctx);
    if (st != ATTN_OK) {
        fprintf(stderr, "attn-bench: attn_context_create(device=%s): %s: %s\n",
                opt.device, attn_status_string(st), attn_last_error());
        ggml_peer_close(ps.g);
        report_csv_close();
        return 1;
    }
    attn_device_info di;
    memset(&di, 0, sizeof di);
    attn_context_device(ctx, &di);
    report_preamble(&opt, &ps, &di, ggml_loaded, gwhy);

    /* temp files for the python peers */
    char in_path[64] = "", out_path[64] = "";
    int have_tmp = 0;
    if (ps.numpy_ok || ps.torch_ok) {
        if (python_peer_make_temps(in_path, out_path, sizeof in_path) != 0)
            ps.numpy_ok = ps.torch_ok = 0;
        else
            have_tmp = 1;
    }

    int rc = 0;
    double lib2048[2] = {0, 0}, ggml2048[2][2] = {{0, 0}, {0, 0}};
    for (int si = 0; si < opt.n_sizes && rc == 0; si++) {
        int n = opt.sizes[si];
        size_t cnt = (size_t)HEADS * n * HEAD_DIM;
        float *q = malloc(cnt * sizeof *q), *k = malloc(cnt * sizeof *k),
              *v = malloc(cnt * sizeof *v), *o = malloc(cnt * sizeof *o),
              *op = malloc(cnt * sizeof *op);
        if (!q || !k || !v || !o || !op) {
            fprintf(stderr, "attn-bench: out of memory at N=%d\n", n);
            rc = 1;
        } else {
            util_fill(q, cnt, 1);
            util_fill(k, cnt, 2);
            util_fill(v, cnt, 3);
            int py = ps.numpy_ok || ps.torch_ok;
            if (py) {
                const float *parts[3] = {q, k, v};
                if (python_peer_write(in_path, parts, 3, cnt) != 0) {
                    fprintf(stderr, "attn-bench: cannot write %s\n", in_path);
                    py = 0;
                }
            }
            for (int causal = 0; causal < 2 && rc == 0; causal++) {
                if (opt.causal_mode != 2 && opt.causal_mode != causal)
                    continue;
                double lms = 0, gms[2] = {0, 0};
                if (!py) { /* keep the flags, just skip the python peers */
                    int nk = ps.numpy_ok, tk = ps.torch_ok;
                    ps.numpy_ok = ps.torch_ok = 0;
                    rc = runner_case(&opt, ctx, &ps, n, causal, q, k, v, o, op,
                                     NULL, NULL, &lms, gms)
                             ? 1
                             : 0;
                    ps.numpy_ok = nk;
                    ps.torch_ok = tk;
                } else {
                    rc = runner_case(&opt, ctx, &ps, n, causal, q, k, v, o, op,
                                     in_path, out_path, &lms, gms)
                             ? 1
                             : 0;
                }
                if (n == 2048) {
                    lib2048[causal] = lms;
                    ggml2048[causal][0] = gms[0];
                    ggml2048[causal][1] = gms[1];
                }
            }
        }
        free(q);
        free(k);
        free(v);
        free(o);
        free(op);
    }
    if (have_tmp) {
        unlink(in_path);
        unlink(out_path);
    }

    report_summary(&opt, &ps, rc, lib2048, ggml2048);

    attn_context_destroy(ctx);
    ggml_peer_close(ps.g);
    if (report_csv_close() != 0) {
        fprintf(stderr, "attn-bench: error writing %s\n", opt.csv);
        rc = 1;
    }
    return rc;
}
