/* SPDX-License-Identifier: Apache-2.0 */
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
 *   - torch's scaled_dot_product_attention when torch is installed, on the
 *     CPU and (torch-cuda) on a CUDA device, timed with CUDA events;
 *   - OpenVINO's ScaledDotProductAttention and ONNX Runtime's
 *     MultiHeadAttention and Attention ops on the CPU, one-op models
 *     (bench/peer_runtimes.py), kept up for a case so that their calls
 *     alternate with libattn's.
 *
 * Shape: B=1, H=8, d=64, seq_q = seq_kv = N, f32, causal and not (--batch,
 * --heads, --kv-heads, --head-dim and --dtype change it); the decode case
 * adds seq_q = --seq-q rows against seq_kv = N, held against the memory
 * bandwidth of a STREAM triad (triad.c).  Each implementation gets
 * warm-up runs, then --reps timed runs (median and min); the in-process
 * runs are interleaved so that drift hits all alike.  --resident times the
 * OpenCL impls on device buffers by event profiling.  Every peer's output
 * is compared with libattn's (max abs diff), and libattn's with a
 * double-precision reference on sampled rows.
 */
#include "bench.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 16-bit copies of x (into h: binary16, or bfloat16 when kind is 2) and
 * x rounded to them (in place). */
static void to_f16(float *x, uint16_t *h, size_t n, int kind)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = kind == 2 ? util_to_bf16(x[i]) : util_to_half(x[i]);
        x[i] = kind == 2 ? util_from_bf16(h[i]) : util_from_half(h[i]);
    }
}

/* The inputs of one case (q of q_cnt, k and v of kv_cnt elements): float
 * values, binary16 copies when f16, and the python peers' file. */
typedef struct host_inputs {
    float *f[3];
    uint16_t *h[3];
} host_inputs;

static void host_inputs_free(host_inputs *hi)
{
    for (int i = 0; i < 3; i++) {
        free(hi->f[i]);
        free(hi->h[i]);
    }
    memset(hi, 0, sizeof *hi);
}

/* Fills q (seed sq) and, when with_kv, k and v; 0 or -1 (out of memory). */
static int host_inputs_make(host_inputs *hi, size_t q_cnt, size_t kv_cnt,
                            int with_kv, int f16, uint64_t seed_q)
{
    memset(hi, 0, sizeof *hi);
    size_t cnt[3] = {q_cnt, kv_cnt, kv_cnt};
    uint64_t seed[3] = {seed_q, 2, 3};
    for (int i = 0; i < (with_kv ? 3 : 1); i++) {
        hi->f[i] = malloc(cnt[i] * sizeof(float));
        if (f16)
            hi->h[i] = malloc(cnt[i] * sizeof(uint16_t));
        if (!hi->f[i] || (f16 && !hi->h[i]))
            return -1;
        util_fill(hi->f[i], cnt[i], seed[i]);
        if (f16)
            to_f16(hi->f[i], hi->h[i], cnt[i], f16);
    }
    return 0;
}

/* Case inputs over q of qi and k, v of kvi; the python file is written
 * when py is not NULL (NULL in ci->py_in when that fails). */
static void case_make(case_inputs *ci, const shape *s, int f16, int decode,
                      const host_inputs *qi, const host_inputs *kvi,
                      const char *py, const char *py_out)
{
    memset(ci, 0, sizeof *ci);
    ci->s = *s;
    ci->f16 = f16;
    ci->decode = decode;
    ci->q = qi->f[0];
    ci->k = kvi->f[1];
    ci->v = kvi->f[2];
    ci->lq = f16 ? (const void *)qi->h[0] : (const void *)qi->f[0];
    ci->lk = f16 ? (const void *)kvi->h[1] : (const void *)kvi->f[1];
    ci->lv = f16 ? (const void *)kvi->h[2] : (const void *)kvi->f[2];
    if (py) {
        const void *parts[3] = {ci->lq, ci->lk, ci->lv};
        size_t counts[3] = {shape_q_count(s), shape_kv_count(s),
                            shape_kv_count(s)};
        if (python_peer_write(py, parts, counts, 3, f16 ? 2 : 4) == 0) {
            ci->py_in = py;
            ci->py_out = py_out;
        } else {
            fprintf(stderr, "attn-bench: cannot write %s\n", py);
        }
    }
}

/* Every case of one size: square and decode, non-causal and causal. */
static int bench_size(const options *opt, attn_context *ctx, const cl_impls *ci,
                      peer_state *ps, const shape *sh, int square, int decode,
                      const char *in_path, const char *dec_path,
                      const char *out_path)
{
    int n = sh->seq_kv, rc = 0;
    shape dsh = *sh;
    dsh.seq_q = opt->seq_q;
    size_t q_cnt = shape_q_count(sh), dq_cnt = shape_q_count(&dsh);
    size_t kv_cnt = shape_kv_count(sh);
    if (decode && n < opt->seq_q) {
        printf("# N=%d: no decode rows (--seq-q %d > N)\n", n, opt->seq_q);
        decode = 0;
    }
    host_inputs sq, dq;
    memset(&dq, 0, sizeof dq);
    size_t o_cnt = square ? q_cnt : dq_cnt;
    float *o = malloc(o_cnt * sizeof *o), *op = malloc(o_cnt * sizeof *op);
    if (host_inputs_make(&sq, square ? q_cnt : 1, kv_cnt, 1, opt->f16, 1) !=
            0 ||
        (decode && host_inputs_make(&dq, dq_cnt, 0, 0, opt->f16, 4) != 0) ||
        !o || !op) {
        fprintf(stderr, "attn-bench: out of memory at N=%d\n", n);
        rc = 1;
        goto out;
    }
    case_inputs cs, cd;
    /* the python peers of the square case: numpy, torch, torch-cuda,
     * openvino, onnxruntime; of the decode case: the last three */
    int rt = 0;
    for (int i = 0; i < RT_COUNT; i++)
        rt |= ps->rt_ok[i];
    int py_sq = ps->numpy_ok || ps->torch_ok || ps->cuda_ok || rt;
    if (square)
        case_make(&cs, sh, opt->f16, 0, &sq, &sq, py_sq ? in_path : NULL,
                  out_path);
    if (decode)
        case_make(&cd, &dsh, opt->f16, 1, &dq, &sq,
                  ps->cuda_ok || rt ? dec_path : NULL, out_path);
    for (int causal = 0; causal < 2 && rc == 0; causal++) {
        if (opt->causal_mode != 2 && opt->causal_mode != causal)
            continue;
        if (square)
            rc = runner_case(opt, ctx, ci, ps, &cs, causal, o, op) ? 1 : 0;
        if (decode && rc == 0)
            rc = runner_case(opt, ctx, ci, ps, &cd, causal, o, op) ? 1 : 0;
    }
out:
    host_inputs_free(&sq);
    host_inputs_free(&dq);
    free(o);
    free(op);
    return rc;
}

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
        opt.plot_script = options_find("plot.py", plot_buf, sizeof plot_buf);
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

    char script_buf[PATH_MAX + 32], cuda_buf[PATH_MAX + 32];
    if (opt.numpy || opt.torch) {
        if (!opt.script)
            opt.script =
                options_find("peer_numpy.py", script_buf, sizeof script_buf);
        else if (!options_file_exists(opt.script))
            opt.script = NULL;
    }
    if (opt.torch_cuda)
        opt.cuda_script =
            options_find("peer_torch_cuda.py", cuda_buf, sizeof cuda_buf);
    char rt_buf[PATH_MAX + 32];
    if (opt_has(&opt, IMPL_OPENVINO) || opt_has(&opt, IMPL_ONNXRUNTIME))
        opt.rt_script = options_find("peer_runtimes.py", rt_buf, sizeof rt_buf);

    if (opt.csv && report_csv_open(opt.csv) != 0)
        return 2;

    peer_state ps;
    memset(&ps, 0, sizeof ps);

    /* Peers are loaded (and ggml self-tested in a child) before libattn
     * starts its threads. */
    char gwhy[1024] = "";
    int ggml_loaded = peers_setup(&opt, &ps, gwhy, sizeof gwhy);
    int square = !opt.decode_only;
    int decode = opt.decode_only || opt_has(&opt, IMPL_CL_DECODE);
    if (decode && opt.triad_mib != 0) {
        ps.triad_mib =
            opt.triad_mib > 0 ? (size_t)opt.triad_mib : triad_default_mib();
        if (triad_measure(opt.threads, ps.triad_mib, 7, &ps.triad_gbps,
                          &ps.triad_best_gbps, ps.triad_why,
                          sizeof ps.triad_why) != 0)
            ps.triad_gbps = 0;
    } else if (decode) {
        snprintf(ps.triad_why, sizeof ps.triad_why,
                 "not measured (--triad-mib 0)");
    }

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
    attn_device_info di = ATTN_DEVICE_INFO_INIT;
    memset(&di, 0, sizeof di);
    attn_context_device(ctx, &di);
    cl_impls ci;
    impls_open(&opt, &ci);
    if (ci.res)
        printf("# resident: %s, device buffers made once per case, "
               "attn_sdpa_cl_buffers timed by event profiling\n",
               resident_device(ci.res));
    for (int i = 0; i < IMPL_COUNT; i++)
        if (ci.ctx[i])
            printf("# %s\n", ci.desc[i]);
        else if (ci.why[i][0])
            printf("# %s: %s\n", impl_name((impl_id)i), ci.why[i]);
    for (int j = 0; j < opt.n_kernels; j++)
        if (ci.kctx[j])
            printf("# %s\n", ci.kdesc[j]);
        else
            printf("# cl:%s: %s\n", opt.kernels[j], ci.kwhy[j]);
    if (opt_has(&opt, IMPL_CLBLAST))
        printf("# clblast: S [B*H, N, N] on the device; cases over --max-mem "
               "%.0f MiB are skipped\n",
               opt.max_mem_mib);
    report_preamble(&opt, &ps, &di, ggml_loaded, gwhy);

    /* temp files for the python peers: inputs of the square and decode
     * cases, and the output */
    char in_path[96] = "", dec_path[96] = "", out_path[96] = "";
    int want_py = ps.numpy_ok || ps.torch_ok || ps.cuda_ok;
    for (int i = 0; i < RT_COUNT; i++)
        want_py |= ps.rt_ok[i];
    if (want_py && (python_peer_make_temp(out_path, sizeof out_path, "out") ||
                    python_peer_make_temp(in_path, sizeof in_path, "in") ||
                    python_peer_make_temp(dec_path, sizeof dec_path, "dec")))
        want_py = 0;

    int rc = 0;
    for (int hi = 0; hi < opt.n_head_dims && rc == 0; hi++) {
        shape sh = {opt.batch, opt.heads, opt.kv_heads,
                    0,         0,         opt.head_dims[hi]};
        report_section(&opt, &sh);
        for (int si = 0; si < opt.n_sizes && rc == 0; si++) {
            sh.seq_q = sh.seq_kv = opt.sizes[si];
            rc = bench_size(&opt, ctx, &ci, &ps, &sh, square, decode,
                            want_py ? in_path : NULL, want_py ? dec_path : NULL,
                            want_py ? out_path : NULL);
        }
    }
    const char *tmps[3] = {in_path, dec_path, out_path};
    for (int i = 0; i < 3; i++)
        if (tmps[i][0])
            unlink(tmps[i]);

    report_summary(&opt, &ps, rc);

    runner_cleanup(&ps);
    impls_close(&ci);
    attn_context_destroy(ctx);
    ggml_peer_close(ps.g);
    if (report_csv_close() != 0) {
        fprintf(stderr, "attn-bench: error writing %s\n", opt.csv);
        rc = 2;
    } else if (opt.plot && report_plot(&opt, opt.csv) != 0 && csv_tmp[0]) {
        csv_tmp[0] = '\0'; /* never changes rc; keep the CSV to plot later */
    }
    if (csv_tmp[0])
        unlink(csv_tmp);
    return rc;
}
