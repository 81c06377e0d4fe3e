/*
 * attn-bench: times attn_sdpa on libattn's native backend and its OpenCL
 * paths (unfused, fused, decode, 1/2/4 queues, two devices) against what a
 * user would run instead, in one process, side by side:
 *
 *   - CLBlast: batched SGEMM, a row-softmax kernel, batched SGEMM
 *     (peer_clblast.c), on the same OpenCL device;
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
#include <math.h>
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
    if (opt.rss_child)
        return rss_child_main(&opt);
    if (opt.rss) {
        int big = 0;
        for (int i = 0; i < opt.n_sizes; i++)
            if (opt.sizes[i] > big)
                big = opt.sizes[i];
        return rss_run(&opt, big, argv[0]);
    }

    char plot_buf[PATH_MAX + 32], csv_tmp[64] = "";
    if (opt.plot) {
        opt.plot_script = options_find_plot(plot_buf, sizeof plot_buf);
        if (!opt.csv) { /* the plot reads a CSV: a temporary one */
            snprintf(csv_tmp, sizeof csv_tmp, "/tmp/attn-bench-csv-XXXXXX");
            int fd = mkstemp(csv_tmp);
            if (fd < 0) {
                fprintf(stderr, "attn-bench: cannot create a temp CSV\n");
                return 2;
            }
            close(fd);
            opt.csv = csv_tmp;
        }
    }

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
    ao.device = "native";
    ao.threads = opt.threads;
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ao, &ctx);
    if (st != ATTN_OK) {
        fprintf(stderr,
                "attn-bench: attn_context_create(device=native): "
                "%s: %s\n",
                attn_status_string(st), attn_last_error());
        ggml_peer_close(ps.g);
        report_csv_close();
        return 1;
    }
    attn_device_info di;
    memset(&di, 0, sizeof di);
    attn_context_device(ctx, &di);
    cl_impls ci;
    impls_open(&opt, &ci);
    for (int i = 0; i < IMPL_COUNT; i++)
        if (ci.ctx[i])
            printf("# %s\n", ci.desc[i]);
        else if (ci.why[i][0])
            printf("# %s: %s\n", impl_name((impl_id)i), ci.why[i]);
    if (opt_has(&opt, IMPL_CLBLAST))
        printf("# clblast: S [8, N, N] on the device; cases over --max-mem "
               "%.0f MiB are skipped\n",
               opt.max_mem_mib);
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
                rc = runner_case(&opt, ctx, &ci, &ps, n, causal, q, k, v, o, op,
                                 py ? in_path : NULL, py ? out_path : NULL)
                         ? 1
                         : 0;
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

    report_summary(&opt, &ps, rc);

    runner_cleanup(&ps);
    impls_close(&ci);
    attn_context_destroy(ctx);
    ggml_peer_close(ps.g);
    if (report_csv_close() != 0) {
        fprintf(stderr, "attn-bench: error writing %s\n", opt.csv);
        rc = 1;
    } else if (opt.plot && report_plot(&opt, opt.csv) != 0 && csv_tmp[0]) {
        csv_tmp[0] = '\0'; /* never changes rc; keep the CSV to plot later */
    }
    if (csv_tmp[0])
        unlink(csv_tmp);
    return rc;
}
