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

/* Every timed row's median, for the summary. */
enum { MAX_SEEN = 1024 };
static struct seen {
    int n, causal, seq_q;
    impl_id id;
    char label[96];
    double ms;
} g_seen[MAX_SEEN];
static int g_n_seen;

static double seen_ms(int n, int causal, impl_id id, const char *label)
{
    for (int i = 0; i < g_n_seen; i++)
        if (g_seen[i].n == n && g_seen[i].causal == causal &&
            g_seen[i].seq_q == n && g_seen[i].id == id &&
            (!label || strstr(g_seen[i].label, label)))
            return g_seen[i].ms;
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
                   "libattn_x_faster,max_abs_diff,note,key,seq_q\n");
    return 0;
}

int report_csv_close(void)
{
    int rc = g_csv && fclose(g_csv) != 0 ? -1 : 0;
    g_csv = NULL;
    return rc;
}

void report_row(int n, int causal, int first, const row *r, double lib_ms,
                int seq_q)
{
    char head[32];
    if (first)
        snprintf(head, sizeof head, "%6d  %-6s", n, causal ? "yes" : "no");
    else
        snprintf(head, sizeof head, "%6s  %-6s", "", "");
    const char *key = impl_name(r->id);
    if (!r->ok) {
        printf("%s  %-40s  %s\n", head, r->label, r->note ? r->note : "n/a");
        if (g_csv)
            fprintf(g_csv, "%d,%d,\"%s\",,,,,,\"%s\",%s,%d\n", n, causal,
                    r->label, r->note ? r->note : "n/a", key, seq_q);
        return;
    }
    if (g_n_seen < MAX_SEEN) {
        struct seen *sn = &g_seen[g_n_seen++];
        sn->n = n;
        sn->causal = causal;
        sn->seq_q = seq_q;
        sn->id = r->id;
        util_scopy(sn->label, sizeof sn->label, r->label);
        sn->ms = r->median_ms;
    }
    /* decode rows: seq_q queries each see (nearly) all n keys */
    double fl = seq_q == n ? util_flops(n, causal)
                           : util_flops(n, 0) * ((double)seq_q / n);
    double gf = fl / (r->median_ms * 1e6);
    char ratio[32] = "", ratio_csv[32] = "", diff[48];
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
    printf("%s  %-40s %10.3f %10.3f %9.1f %10s  %s\n", head, r->label,
           r->median_ms, r->min_ms, gf, ratio, diff);
    if (g_csv)
        fprintf(g_csv, "%d,%d,\"%s\",%.6f,%.6f,%.3f,%s,%.3e,,%s,%d\n", n,
                causal, r->label, r->median_ms, r->min_ms, gf, ratio_csv,
                r->diff, key, seq_q);
}

void report_preamble(const options *opt, const peer_state *ps,
                     const attn_device_info *di, int ggml_loaded,
                     const char *gwhy)
{
    printf("attn-bench: libattn %s on '%s' (%s), %d thread%s; B=1 H=%d d=%d "
           "seq_q=seq_kv=N %s, scale 1/sqrt(d)\n",
           attn_version(), di->name,
           di->kind == ATTN_DEVICE_NATIVE ? "native" : "OpenCL", opt->threads,
           opt->threads == 1 ? "" : "s", HEADS, HEAD_DIM,
           opt->f16 ? "f16" : "f32");
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
    char load[64];
    util_loadavg(load, sizeof load);
    printf("machine: %ld online CPUs, load average %s at start\n",
           sysconf(_SC_NPROCESSORS_ONLN), load);
    printf("\n%6s  %-6s  %-40s %10s %10s %9s %10s  %s\n", "N", "causal",
           "implementation", "median ms", "min ms", "GFLOP/s", "native",
           "max|diff|");
    printf("%6s  %-6s  %-40s %10s %10s %9s %10s  %s\n", "", "", "", "", "", "",
           "x faster", "vs native");
    printf(
        "------  ------  ---------------------------------------- ---------- "
        "---------- --------- ----------  ------------------\n");
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
