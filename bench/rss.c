/* SPDX-License-Identifier: Apache-2.0 */
/*
 * --rss: the peak resident set of one attn_sdpa call (B=1, H=8, d=64 or the
 * --batch, --heads, --kv-heads and first --head-dim given; seq_q = seq_kv =
 * N, non-causal, f32) on native and on cl-fused, each in
 * a fresh process: this executable started again with --rss-child through
 * posix_spawn (vfork-like, so the child's peak is its own), its peak read
 * by the parent from wait4's rusage (ru_maxrss) and by the child itself
 * from /proc/self/status VmHWM at each step.
 */
#define _DEFAULT_SOURCE /* wait4 */
#include "bench.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* VmHWM of this process in KiB, or -1. */
static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

int rss_child_main(const options *opt)
{
    impl_id id = IMPL_COUNT;
    for (int i = 0; i < IMPL_COUNT; i++)
        if (strcmp(opt->rss_child, impl_name((impl_id)i)) == 0)
            id = (impl_id)i;
    int n = opt->sizes[opt->n_sizes - 1];
    const shape sh = {opt->batch, opt->heads, opt->kv_heads,
                      n,          n,          opt->head_dims[0]};
    if (id == IMPL_COUNT || id == IMPL_CLBLAST || id >= IMPL_GGML) {
        printf("RSS-ERROR unsupported impl %s\n", opt->rss_child);
        return 2;
    }
    long start = vm_hwm_kib();
    attn_options ao;
    impls_attn_options(opt, id, NULL, &ao);
    attn_context *ctx = NULL;
    attn_status st = attn_context_create(&ao, &ctx);
    if (st != ATTN_OK) {
        printf("RSS-ERROR attn_context_create(device=%s): %s: %.300s\n",
               ao.device, attn_status_string(st), attn_last_error());
        return 1;
    }
    long after_ctx = vm_hwm_kib();
    size_t cnt = shape_q_count(&sh), kv_cnt = shape_kv_count(&sh);
    float *q = malloc(cnt * sizeof *q), *k = malloc(kv_cnt * sizeof *k),
          *v = malloc(kv_cnt * sizeof *v), *o = malloc(cnt * sizeof *o);
    if (!q || !k || !v || !o) {
        printf("RSS-ERROR out of memory\n");
        return 1;
    }
    util_fill(q, cnt, 1);
    util_fill(k, kv_cnt, 2);
    util_fill(v, kv_cnt, 3);
    memset(o, 0, cnt * sizeof *o);
    long after_inputs = vm_hwm_kib();
    attn_sdpa_desc d;
    shape_desc(&sh, 0, 0, &d);
    double t0 = util_now_ms();
    st = attn_sdpa(ctx, &d, q, k, v, o, NULL);
    double ms = util_now_ms() - t0;
    if (st != ATTN_OK) {
        printf("RSS-ERROR attn_sdpa: %s: %.300s\n", attn_status_string(st),
               attn_context_last_error(ctx));
        return 1;
    }
    long after_call = vm_hwm_kib();
    double err = util_check_rows(&sh, q, k, v, o, 0, 2);
    printf("RSS-CHILD %ld %ld %ld %ld %.1f %.2e\n", start, after_ctx,
           after_inputs, after_call, ms, err);
    attn_context_destroy(ctx);
    return 0;
}

int rss_run(const options *opt, int n, const char *argv0)
{
    (void)argv0;
    static const impl_id which[2] = {IMPL_NATIVE, IMPL_CL_FUSED};
    int rc = 0;
    const shape sh = {opt->batch, opt->heads, opt->kv_heads,
                      n,          n,          opt->head_dims[0]};
    double io_mib = (2.0 * shape_q_count(&sh) + 2.0 * shape_kv_count(&sh)) *
                    sizeof(float) / 1048576.0;
    printf("peak RSS of one call, B=%d H=%d kv_heads=%d N=%d d=%d f32 "
           "non-causal, each in a fresh process (%d threads; cl-fused "
           "device=%s); Q, K, V and O alone are %.0f MiB; goal < 512 MiB\n",
           opt->batch, opt->heads, opt->kv_heads, n, opt->head_dims[0],
           opt->threads, opt->device, io_mib);
    printf("%-10s %12s %12s %12s %12s %12s %9s %9s\n", "impl", "ru_maxrss",
           "VmHWM start", "+context", "+inputs", "+call", "call ms", "max err");
    for (int i = 0; i < 2; i++) {
        char sz[32], th[32], b[32], h[32], kv[32], hd[32];
        snprintf(sz, sizeof sz, "%d", n);
        snprintf(th, sizeof th, "%d", opt->threads);
        snprintf(b, sizeof b, "%d", opt->batch);
        snprintf(h, sizeof h, "%d", opt->heads);
        snprintf(kv, sizeof kv, "%d", opt->kv_heads);
        snprintf(hd, sizeof hd, "%d", opt->head_dims[0]);
        char *args[] = {"/proc/self/exe",
                        "--rss-child",
                        (char *)impl_name(which[i]),
                        "--sizes",
                        sz,
                        "--threads",
                        th,
                        "--device",
                        (char *)opt->device,
                        "--batch",
                        b,
                        "--heads",
                        h,
                        "--kv-heads",
                        kv,
                        "--head-dim",
                        hd,
                        NULL};
        int fd[2];
        if (pipe(fd) != 0)
            return 1;
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
        posix_spawn_file_actions_addclose(&fa, fd[0]);
        fflush(NULL);
        pid_t pid;
        int e = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(fd[1]);
        if (e != 0) {
            printf("%-10s cannot start a child: %s\n", impl_name(which[i]),
                   strerror(e));
            close(fd[0]);
            rc = 1;
            continue;
        }
        char out[1024];
        size_t got = 0;
        for (;;) {
            ssize_t r = read(fd[0], out + got, sizeof out - 1 - got);
            if (r > 0 && got + (size_t)r < sizeof out - 1)
                got += (size_t)r;
            else if (r > 0)
                break;
            else if (r == 0 || errno != EINTR)
                break;
        }
        out[got] = '\0';
        close(fd[0]);
        int status = 0;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
            ;
        long s0, s1, s2, s3;
        double ms, err;
        const char *line = strstr(out, "RSS-CHILD ");
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && line &&
            sscanf(line, "RSS-CHILD %ld %ld %ld %ld %lf %lf", &s0, &s1, &s2,
                   &s3, &ms, &err) == 6) {
            double peak = ru.ru_maxrss / 1024.0;
            printf("%-10s %8.1f MiB %8.1f MiB %8.1f MiB %8.1f MiB %8.1f MiB "
                   "%9.1f %9.1e  %s\n",
                   impl_name(which[i]), peak, s0 / 1024.0, s1 / 1024.0,
                   s2 / 1024.0, s3 / 1024.0, ms, err,
                   peak < 512 ? "(< 512 MiB: met)" : "(>= 512 MiB: not met)");
        } else {
            const char *er = strstr(out, "RSS-ERROR ");
            printf("%-10s failed (status 0x%x): %s", impl_name(which[i]),
                   status, er ? er + 10 : "no output\n");
            rc = 1;
        }
        fflush(stdout);
    }
    printf("ru_maxrss: wait4() of the child; VmHWM: the child's own high-water "
           "mark at start, after attn_context_create, after filling Q/K/V/O, "
           "after the call\n");
    return rc;
}
