/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's output: what runs and how, the table on stdout, the same
 * rows in the CSV file (--csv), and the closing lines.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static FILE *g_csv;
/* The decode rows' yardstick (GB/s, 0: none) and whether the table has
 * its column (when the decode case runs). */
static double g_triad;
static int g_triad_col;

/* Every timed row, for the summary. */
enum { MAX_SEEN = 2048 };
static row g_seen[MAX_SEEN];
static int g_n_seen;

static int same_shape(const row *a, const row *b)
{
    return memcmp(&a->s, &b->s, sizeof a->s) == 0 && a->causal == b->causal &&
           a->f16 == b->f16 && a->decode == b->decode;
}

/* The CPU targets' shape: B=1, H=8, d=64, f32, square. */
static int default_shape(const row *r)
{
    return r->s.batch == 1 && r->s.heads == 8 && r->s.kv_heads == 8 &&
           r->s.head_dim == 64 && !r->f16 && !r->decode;
}

static double seen_ms(int n, int causal, impl_id id, const char *label)
{
    for (int i = 0; i < g_n_seen; i++)
        if (g_seen[i].s.seq_kv == n && g_seen[i].causal == causal &&
            default_shape(&g_seen[i]) && g_seen[i].id == id &&
            (!label || strstr(g_seen[i].label, label)))
            return g_seen[i].median_ms;
    return 0;
}

int report_csv_open(const char *path)
{
    g_csv = fopen(path, "w");
    if (!g_csv) {
        fprintf(stderr, "attn-bench: cannot write %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    fprintf(g_csv, "n,causal,impl,median_ms,min_ms,gflops,"
                   "libattn_x_faster,max_abs_diff,note,key,seq_q,"
                   "kernel,tflops,head_dim,batch,heads,kv_heads,dtype,timing,"
                   "wall_ms,kv_bytes,kv_gbps,device,precision,triad_gbps,"
                   "triad_pct\n");
    return 0;
}

int report_csv_close(void)
{
    int rc = g_csv && fclose(g_csv) != 0 ? -1 : 0;
    g_csv = NULL;
    return rc;
}

/* s with double quotes doubled (CSV), cut to fit out. */
static void csv_quote(const char *s, char *out, size_t len)
{
    size_t j = 0;
    for (; *s && j + 2 < len; s++) {
        if (*s == '"')
            out[j++] = '"';
        out[j++] = *s;
    }
    out[j] = '\0';
}

/* 3 significant digits, never in exponent form for figures >= 0.001. */
static void fmt3(char *out, size_t len, double v)
{
    if (!(v == v))
        snprintf(out, len, "-");
    else if (v >= 100)
        snprintf(out, len, "%.0f", v);
    else if (v >= 10)
        snprintf(out, len, "%.1f", v);
    else if (v >= 1)
        snprintf(out, len, "%.2f", v);
    else if (v >= 0.001)
        snprintf(out, len, "%.3g", v);
    else
        snprintf(out, len, "%.1e", v);
}

void report_row(const options *opt, int first, const row *r, double lib_ms)
{
    int n = r->s.seq_kv, causal = r->causal;
    char head[32];
    if (first)
        snprintf(head, sizeof head, "%6d  %-6s", n, causal ? "yes" : "no");
    else
        snprintf(head, sizeof head, "%6s  %-6s", "", "");
    char label[300], note[700], dev[300];
    csv_quote(r->label, label, sizeof label);
    csv_quote(r->note ? r->note : "n/a", note, sizeof note);
    csv_quote(r->device, dev, sizeof dev);
    const char *dtype = util_dtype_name(r->f16);
    if (!r->ok) {
        printf("%s  %-40s %-10s  %s\n", head, r->label,
               r->kernel[0] ? r->kernel : "", r->note ? r->note : "n/a");
        if (g_csv)
            fprintf(g_csv,
                    "%d,%d,\"%s\",,,,,,\"%s\",%s,%d,%s,,%d,%d,%d,%d,%s,,,,,"
                    "\"%s\",%s,,\n",
                    n, causal, label, note, r->key, r->s.seq_q, r->kernel,
                    r->s.head_dim, r->s.batch, r->s.heads, r->s.kv_heads, dtype,
                    dev, r->precision);
        return;
    }
    if (g_n_seen < MAX_SEEN)
        g_seen[g_n_seen++] = *r;
    double tf = util_flops(&r->s, causal) / (r->median_ms * 1e9);
    double kvb = util_kv_bytes(&r->s, r->f16);
    double gbs = kvb / (r->median_ms * 1e6);
    char ratio[32] = "", ratio_csv[32] = "", diff[48], tfs[16], gb[16] = "",
         wall[16] = "", wall_csv[32] = "", kvb_csv[32] = "", gbs_csv[32] = "",
         pct[16] = "", triad_csv[32] = "", pct_csv[32] = "", wall_col[32] = "",
         pct_col[32] = "";
    if (r->id != IMPL_NATIVE && lib_ms > 0) {
        snprintf(ratio, sizeof ratio, "%.2fx", r->median_ms / lib_ms);
        snprintf(ratio_csv, sizeof ratio_csv, "%.4f", r->median_ms / lib_ms);
    }
    if (r->id == IMPL_NATIVE && isnan(r->diff))
        snprintf(diff, sizeof diff, "(reference)");
    else if (r->id == IMPL_NATIVE)
        snprintf(diff, sizeof diff, "%.1e (vs f64 ref)", r->diff);
    else
        snprintf(diff, sizeof diff, "%.1e", r->diff);
    fmt3(tfs, sizeof tfs, tf);
    if (r->decode) {
        fmt3(gb, sizeof gb, gbs);
        snprintf(kvb_csv, sizeof kvb_csv, "%.0f", kvb);
        snprintf(gbs_csv, sizeof gbs_csv, "%.3f", gbs);
        if (g_triad > 0) {
            snprintf(pct, sizeof pct, "%.0f%%", 100.0 * gbs / g_triad);
            snprintf(triad_csv, sizeof triad_csv, "%.3f", g_triad);
            snprintf(pct_csv, sizeof pct_csv, "%.2f", 100.0 * gbs / g_triad);
        }
    }
    if (!isnan(r->wall_ms)) {
        snprintf(wall, sizeof wall, "%.3f", r->wall_ms);
        snprintf(wall_csv, sizeof wall_csv, "%.6f", r->wall_ms);
    }
    /* the kernel column: the variant, and the precision when not exact */
    char kcol[64];
    snprintf(kcol, sizeof kcol, "%s%s%s", r->kernel,
             r->precision[0] && strcmp(r->precision, "exact") ? "/" : "",
             r->precision[0] && strcmp(r->precision, "exact") ? r->precision
                                                              : "");
    if (opt->resident)
        snprintf(wall_col, sizeof wall_col, "%10s ", wall);
    if (g_triad_col)
        snprintf(pct_col, sizeof pct_col, " %7s", pct);
    printf("%s  %-40s %-10s %10.3f %10.3f %s%8s %7s%s %10s  %s\n", head,
           r->label, kcol, r->median_ms, r->min_ms, wall_col, tfs, gb, pct_col,
           ratio, diff);
    if (g_csv)
        fprintf(g_csv,
                "%d,%d,\"%s\",%.6f,%.6f,%.3f,%s,%.3e,,%s,%d,%s,%.6f,%d,%d,%d,"
                "%d,%s,%s,%s,%s,%s,\"%s\",%s,%s,%s\n",
                n, causal, label, r->median_ms, r->min_ms, tf * 1e3, ratio_csv,
                r->diff, r->key, r->s.seq_q, r->kernel, tf, r->s.head_dim,
                r->s.batch, r->s.heads, r->s.kv_heads, dtype,
                r->timing ? r->timing : "", wall_csv, kvb_csv, gbs_csv, dev,
                r->precision, triad_csv, pct_csv);
}

void report_section(const options *opt, const shape *s)
{
    printf("--- B=%d H=%d kv_heads=%d d=%d %s%s ---\n", s->batch, s->heads,
           s->kv_heads, s->head_dim, util_dtype_name(opt->f16),
           opt->resident ? ", OpenCL rows: kernel time (events)" : "");
}

void report_preamble(const options *opt, const peer_state *ps,
                     const attn_device_info *di, int ggml_loaded,
                     const char *gwhy)
{
    char dims[128] = "";
    for (int i = 0, used = 0; i < opt->n_head_dims && used < 100; i++)
        used += snprintf(dims + used, sizeof dims - (size_t)used, "%s%d",
                         i ? "," : "", opt->head_dims[i]);
    printf("attn-bench: libattn %s on '%s' (%s), %d thread%s; B=%d H=%d "
           "kv_heads=%d d=%s seq_q=seq_kv=N %s, scale 1/sqrt(d)\n",
           attn_version(), di->name,
           di->kind == ATTN_DEVICE_NATIVE ? "native" : "OpenCL", opt->threads,
           opt->threads == 1 ? "" : "s", opt->batch, opt->heads, opt->kv_heads,
           dims, util_dtype_name(opt->f16));
    if (opt->decode_only || opt_has(opt, IMPL_CL_DECODE))
        printf("decode case: seq_q=%d against seq_kv=N%s\n", opt->seq_q,
               opt->decode_only ? " (only)" : "");
    if (opt->resident)
        printf("--resident: OpenCL rows (cl-*, clblast) time the kernels by "
               "event profiling on device buffers; 'wall ms' is the host time "
               "per call; native, ggml and python rows as usual\n");
    if (opt->f16 == 2)
        printf("bf16: the peers are not handed bfloat16 and are left out\n");
    else if (opt->f16)
        printf("f16: clblast, ggml, numpy and torch take f32 only and are "
               "left out\n");
    if (opt->torch_cuda)
        printf("torch-cuda: %s%s\n", ps->cuda_ok ? "" : "skipped: ",
               ps->cuda_ok ? ps->cuda_device : ps->cuda_why);
    if (opt->reps)
        printf("timing: %d warm-up + %d timed runs per case, median and min\n",
               opt->warmup, opt->reps);
    else
        printf("timing: %d warm-up + 15 (N<=1024) / 9 (N<=2048) / 5 timed runs "
               "per case, median and min\n",
               opt->warmup);
    if (opt->ggml) {
        if (!ggml_loaded)
            printf("ggml: %s\n", gwhy);
        else {
            printf("ggml: %s\n      ggml_flash_attn_ext on the CPU: Q f32, K/V "
                   "%s (converted before timing), mask NULL / causal f16 "
                   "[N, pad64(N)] of 0 and -inf, F32 accumulation; %s, "
                   "%d thread%s; runs interleaved with libattn's\n",
                   ggml_peer_path(ps->g),
                   opt->ggml_kv == 1   ? "f16"
                   : opt->ggml_kv == 2 ? "f32"
                                       : "f16 and f32",
                   ggml_peer_compute_api(ps->g), opt->threads,
                   opt->threads == 1 ? "" : "s");
            for (int t = 0; t < 2; t++)
                if ((opt->ggml_kv & (1 << t)) && !ps->ggml_ok[t])
                    printf("      K/V %s: unusable: %s\n",
                           t == 0 ? "f16" : "f32", ps->ggml_why[t]);
        }
    } else {
        printf("ggml: not run (%s)\n", opt->peers ? "--no-ggml" : "--no-peers");
    }
    if (opt->numpy) {
        if (!ps->numpy_ok)
            printf("numpy: %s\n", ps->numpy_why);
        else
            printf(
                "numpy: %s %s, BLAS threads %d; OPENBLAS env: %s%s\n",
                opt->python, opt->script, opt->threads, ps->openblas_env,
                ps->numpy_variants == 2
                    ? " (rows 'as-is' keep it, rows 'unset' drop both for the "
                      "subprocess)"
                    : " (so as-is = unset: one run)");
    }
    for (int i = 0; i < RT_COUNT; i++) {
        impl_id id = i == RT_OPENVINO ? IMPL_OPENVINO : IMPL_ONNXRUNTIME;
        if (!opt_has(opt, id))
            continue;
        if (ps->rt_ok[i])
            printf("%s: %s, %s %d; one process per case, its calls "
                   "interleaved with libattn's\n",
                   rt_backend((rt_peer)i), ps->rt_impl[i],
                   i == RT_OPENVINO ? "INFERENCE_PRECISION_HINT f32, "
                                      "INFERENCE_NUM_THREADS"
                                    : "io-binding, intra_op_num_threads",
                   opt->threads);
        else
            printf("%s: %s\n", rt_backend((rt_peer)i), ps->rt_why[i]);
    }
    g_triad = ps->triad_gbps;
    g_triad_col = opt->decode_only || opt_has(opt, IMPL_CL_DECODE);
    if (g_triad > 0) {
        size_t llc = triad_llc_bytes();
        printf("memory: STREAM triad %.1f GB/s (median of 7; best %.1f), %d "
               "thread%s, 3 arrays of %zu MiB (last-level cache %zu MiB); "
               "24 B per element; decode rows: %% triad = GB/s K/V / %.1f\n",
               g_triad, ps->triad_best_gbps, opt->threads,
               opt->threads == 1 ? "" : "s", ps->triad_mib, llc >> 20, g_triad);
    } else if (g_triad_col) {
        printf("memory: triad %s\n", ps->triad_why);
    }
    char load[64];
    util_loadavg(load, sizeof load);
    printf("machine: %ld online CPUs, load average %s at start\n",
           sysconf(_SC_NPROCESSORS_ONLN), load);
    {
        const char *prec = getenv("ATTN_PRECISION");
        printf("precision: %s asked (ATTN_PRECISION); libattn rows run at "
               "what attn_sdpa_precision says: the kernel column names it "
               "when not exact\n",
               prec && *prec ? prec : "exact");
    }
    const char *wall_h[2] = {"", ""}, *pct_h[2] = {"", ""};
    const char *wall_d = "", *pct_d = "";
    if (opt->resident) {
        wall_h[0] = "   wall ms ";
        wall_h[1] = "           ";
        wall_d = "---------- ";
    }
    if (g_triad_col) {
        pct_h[0] = "       %";
        pct_h[1] = "   triad";
        pct_d = " -------";
    }
    printf("\n%6s  %-6s  %-40s %-10s %10s %10s %s%8s %7s%s %10s  %s\n", "N",
           "causal", "implementation", "kernel", "median ms", "min ms",
           wall_h[0], "TFLOP/s", "GB/s", pct_h[0], "native", "max|diff|");
    printf("%6s  %-6s  %-40s %-10s %10s %10s %s%8s %7s%s %10s  %s\n", "", "",
           "", "", "", "", wall_h[1], "", "K/V", pct_h[1], "x faster",
           "vs native");
    printf("------  ------  ---------------------------------------- "
           "---------- ---------- ---------- %s-------- -------%s "
           "----------  ------------------\n",
           wall_d, pct_d);
    fflush(stdout);
}

static void ratio_line(const char *what, double slow, double fast, double goal)
{
    if (slow <= 0 || fast <= 0) {
        printf("  %-34s no figure\n", what);
        return;
    }
    double x = slow / fast;
    printf("  %-34s %.2fx (goal >= %.2fx: %s)\n", what, x, goal,
           x >= goal ? "met" : "not met");
}

/* Per case with a clblast or torch-cuda row: the fastest libattn OpenCL
 * row against them. */
static void peer_summary(void)
{
    int printed = 0;
    for (int i = 0; i < g_n_seen; i++) {
        const row *p = &g_seen[i];
        if (p->id != IMPL_CLBLAST && p->id != IMPL_TORCH_CUDA)
            continue;
        const row *best = NULL;
        for (int j = 0; j < g_n_seen; j++) {
            const row *c = &g_seen[j];
            if (impls_is_cl(c->id) && same_shape(c, p) &&
                (!best || c->median_ms < best->median_ms))
                best = c;
        }
        if (!best)
            continue;
        if (!printed++)
            printf("fastest libattn OpenCL row per case against the GPU peers "
                   "(TFLOP/s; x = peer time / libattn time, above 1: libattn "
                   "is faster):\n");
        double fl = util_flops(&p->s, p->causal) / 1e9;
        printf("  B=%d H=%d/%d d=%d %s seq_q=%d N=%d %s: %s (%s, %s) %.3g vs "
               "%s (%s) %.3g: %.2fx\n",
               p->s.batch, p->s.heads, p->s.kv_heads, p->s.head_dim,
               util_dtype_name(p->f16), p->s.seq_q, p->s.seq_kv,
               p->causal ? "causal" : "non-causal", best->key, best->kernel,
               best->timing, fl / best->median_ms, p->key, p->timing,
               fl / p->median_ms, p->median_ms / best->median_ms);
    }
}

/* Per case with openvino or onnxruntime rows: native against the fastest
 * of them, the CPU inference runtimes. */
static void runtime_summary(void)
{
    int printed = 0;
    for (int i = 0; i < g_n_seen; i++) {
        const row *nat = &g_seen[i];
        if (nat->id != IMPL_NATIVE)
            continue;
        const row *best = NULL;
        for (int j = 0; j < g_n_seen; j++) {
            const row *c = &g_seen[j];
            if ((c->id == IMPL_OPENVINO || c->id == IMPL_ONNXRUNTIME) &&
                same_shape(c, nat) && (!best || c->median_ms < best->median_ms))
                best = c;
        }
        if (!best)
            continue;
        if (!printed++)
            printf("native against the fastest CPU runtime per case (x = its "
                   "time / native's; above 1: native is faster):\n");
        double x = best->median_ms / nat->median_ms;
        double goal = nat->decode ? 0 : nat->causal ? 1.5 : 1.2;
        printf("  B=%d H=%d/%d d=%d %s seq_q=%d N=%d %s: native %.3f ms vs "
               "%s %.3f ms: %.2fx",
               nat->s.batch, nat->s.heads, nat->s.kv_heads, nat->s.head_dim,
               util_dtype_name(nat->f16), nat->s.seq_q, nat->s.seq_kv,
               nat->causal ? "causal" : "non-causal", nat->median_ms,
               best->label, best->median_ms, x);
        if (goal > 0)
            printf(" (goal >= %.2fx: %s)", goal, x >= goal ? "met" : "not met");
        printf("\n");
    }
}

void report_summary(const options *opt, const peer_state *ps, int rc)
{
    char load[64];
    util_loadavg(load, sizeof load);
    printf("\nload average %s at the end\n", load);
    if (rc == 0 && ps->numpy_ok && ps->blas_seen[0][0]) {
        printf("numpy BLAS (threadpoolctl): as-is: %s", ps->blas_seen[0]);
        if (ps->numpy_variants == 2 && ps->blas_seen[1][0])
            printf("; unset: %s", ps->blas_seen[1]);
        printf("\n");
    }
    if (rc != 0)
        return;
    peer_summary();
    runtime_summary();
    for (int c = 0; c < 2; c++) {
        double nat = seen_ms(2048, c, IMPL_NATIVE, NULL);
        if (nat <= 0)
            continue;
        printf("targets at N=2048, %s (ratios of medians; %d thread%s):\n",
               c ? "causal" : "non-causal", opt->threads,
               opt->threads == 1 ? "" : "s");
        for (int t = 0; t < 2; t++) {
            double g = seen_ms(2048, c, IMPL_GGML, t ? "K/V f32" : "K/V f16");
            if (g > 0)
                ratio_line(t ? "native vs ggml (K/V f32)"
                             : "native vs ggml (K/V f16)",
                           g, nat, 1.5);
        }
        double fu = seen_ms(2048, c, IMPL_CL_FUSED, NULL);
        double cb = seen_ms(2048, c, IMPL_CLBLAST, NULL);
        if (opt_has(opt, IMPL_CL_FUSED) && opt_has(opt, IMPL_CLBLAST))
            ratio_line("cl-fused vs CLBlast", cb, fu, 8.0);
        double q2 = seen_ms(2048, c, IMPL_CL_Q2, NULL);
        if (opt_has(opt, IMPL_CL_FUSED) && opt_has(opt, IMPL_CL_Q2))
            ratio_line("cl-q2 vs cl-fused (1 queue)", fu, q2, 1.0);
        double q4 = seen_ms(2048, c, IMPL_CL_Q4, NULL);
        if (opt_has(opt, IMPL_CL_FUSED) && opt_has(opt, IMPL_CL_Q4) && q4 > 0)
            printf("  %-34s %.2fx (no goal)\n", "cl-q4 vs cl-fused (1 queue)",
                   fu / q4);
        double d2 = seen_ms(2048, c, IMPL_CL_2DEV, NULL);
        if (opt_has(opt, IMPL_CL_FUSED) && opt_has(opt, IMPL_CL_2DEV) && d2 > 0)
            printf("  %-34s %.2fx (no goal; both PoCL devices share the same "
                   "cores)\n",
                   "cl-2dev vs cl-fused (1 device)", fu / d2);
    }
}

int report_plot(const options *opt, const char *csv_path)
{
    if (!opt->plot_script) {
        printf("plot: bench/plot.py not found; run it yourself: python3 "
               "bench/plot.py %s %s\n",
               csv_path, opt->plot);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execlp(opt->python, opt->python, opt->plot_script, csv_path, opt->plot,
               (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        printf("plot: cannot run %s\n", opt->python);
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("plot: wrote %s (%s %s)\n", opt->plot, opt->python,
               opt->plot_script);
        return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        printf("plot: not written: matplotlib is missing (pip install "
               "matplotlib), then: %s %s %s %s\n",
               opt->python, opt->plot_script, csv_path, opt->plot);
    else
        printf("plot: %s %s failed (status %d); the CSV is %s\n", opt->python,
               opt->plot_script, status, csv_path);
    return -1;
}
