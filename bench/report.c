/*
 * attn-bench's output: what runs and how, the table on stdout, the same
 * rows in the CSV file (--csv), and the closing lines.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static FILE *g_csv;

int report_csv_open(const char *path)
{
    g_csv = fopen(path, "w");
    if (!g_csv) {
        fprintf(stderr, "attn-bench: cannot write %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    fprintf(g_csv, "n,causal,impl,median_ms,min_ms,gflops,"
                   "libattn_x_faster,max_abs_diff,note\n");
    return 0;
}

int report_csv_close(void)
{
    int rc = g_csv && fclose(g_csv) != 0 ? -1 : 0;
    g_csv = NULL;
    return rc;
}

void report_row(int n, int causal, int first, const row *r, double lib_ms)
{
    char head[32];
    if (first)
        snprintf(head, sizeof head, "%6d  %-6s", n, causal ? "yes" : "no");
    else
        snprintf(head, sizeof head, "%6s  %-6s", "", "");
    if (!r->ok) {
        printf("%s  %-40s  %s\n", head, r->label, r->note ? r->note : "n/a");
        if (g_csv)
            fprintf(g_csv, "%d,%d,\"%s\",,,,,,\"%s\"\n", n, causal, r->label,
                    r->note ? r->note : "n/a");
        return;
    }
    double gf = util_flops(n, causal) / (r->median_ms * 1e6);
    char ratio[32] = "", ratio_csv[32] = "", diff[48];
    if (r->impl && strcmp(r->impl, "libattn") != 0 && lib_ms > 0) {
        snprintf(ratio, sizeof ratio, "%.2fx", r->median_ms / lib_ms);
        snprintf(ratio_csv, sizeof ratio_csv, "%.4f", r->median_ms / lib_ms);
    }
    if (r->impl && strcmp(r->impl, "libattn") == 0)
        snprintf(diff, sizeof diff, "%.1e (vs f64 ref)", r->diff);
    else
        snprintf(diff, sizeof diff, "%.1e", r->diff);
    printf("%s  %-40s %10.3f %10.3f %9.1f %10s  %s\n", head, r->label,
           r->median_ms, r->min_ms, gf, ratio, diff);
    if (g_csv)
        fprintf(g_csv, "%d,%d,\"%s\",%.6f,%.6f,%.3f,%s,%.3e,\n", n, causal,
                r->label, r->median_ms, r->min_ms, gf, ratio_csv, r->diff);
}

void report_preamble(const options *opt, const peer_state *ps,
                     const attn_device_info *di, int ggml_loaded,
                     const char *gwhy)
{
    printf("attn-bench: libattn %s on '%s' (%s), %d thread%s; B=1 H=%d d=%d "
           "seq_q=seq_kv=N f32, scale 1/sqrt(d)\n",
           attn_version(), di->name,
           di->kind == ATTN_DEVICE_NATIVE ? "native" : "OpenCL", opt->threads,
           opt->threads == 1 ? "" : "s", HEADS, HEAD_DIM);
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
           "implementation", "median ms", "min ms", "GFLOP/s", "libattn",
           "max|diff|");
    printf("%6s  %-6s  %-40s %10s %10s %9s %10s  %s\n", "", "", "", "", "", "",
           "x faster", "vs libattn");
    printf(
        "------  ------  ---------------------------------------- ---------- "
        "---------- --------- ----------  ------------------\n");
    fflush(stdout);
}

void report_summary(const options *opt, const peer_state *ps, int rc,
                    const double lib2048[2], double ggml2048[2][2])
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
    if (rc == 0 && (lib2048[0] > 0 || lib2048[1] > 0)) {
        printf("target: libattn >= 1.5x ggml flash_attn_ext at N=2048, same "
               "%d thread%s (libattn x faster, by medians):\n",
               opt->threads, opt->threads == 1 ? "" : "s");
        for (int c = 0; c < 2; c++) {
            if (lib2048[c] <= 0)
                continue;
            printf("  %-10s", c ? "causal" : "non-causal");
            int any = 0;
            for (int t = 0; t < 2; t++) {
                if (ggml2048[c][t] <= 0)
                    continue;
                double x = ggml2048[c][t] / lib2048[c];
                printf("%s vs K/V %s: %.2fx %s", any ? ";" : "",
                       t ? "f32" : "f16", x, x >= 1.5 ? "(met)" : "(not met)");
                any = 1;
            }
            printf("%s\n", any ? "" : " no ggml figure");
        }
    }
}
