/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's peers before the first case: ggml found, self-tested in a
 * child process and loaded; the python peers' script and OPENBLAS_*
 * environment noted; torch-cuda asked whether torch sees a CUDA device,
 * openvino and onnxruntime whether they import and run a small case.
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A libggml built for another CPU dies of SIGILL when loaded, and ggml
 * reports misuse with abort(); so a forked child first loads the library
 * and runs a small case, checked against a double-precision reference,
 * before the library is loaded here.  Returns 0 when the child succeeded;
 * otherwise -1 and the reason in why, with *load_failed set when the
 * library could not even be loaded. */
static int ggml_self_test(const char *path, int kv_f16, int threads,
                          int *load_failed, char *why, size_t why_len)
{
    *load_failed = 0;
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fd[0]);
        char w[512] = "";
        ggml_peer *g = NULL;
        if (ggml_peer_load(path, &g, w, sizeof w) != 0) {
            if (write(fd[1], w, strlen(w)) < 0)
                _exit(11);
            _exit(10);
        }
        enum { N = 96, H = 8, D = 64 };
        const shape sh = {1, H, H, N, N, D};
        size_t cnt = (size_t)H * N * D;
        float *q = malloc(cnt * sizeof *q), *k = malloc(cnt * sizeof *k),
              *v = malloc(cnt * sizeof *v), *o = malloc(cnt * sizeof *o);
        if (!q || !k || !v || !o)
            _exit(3);
        util_fill(q, cnt, 11);
        util_fill(k, cnt, 12);
        util_fill(v, cnt, 13);
        for (int causal = 0; causal < 2; causal++) {
            ggml_peer_case *c = NULL;
            if (ggml_peer_prepare(g, H, N, D, causal, kv_f16, threads, q, k, v,
                                  &c, w, sizeof w) != 0) {
                if (write(fd[1], w, strlen(w)) < 0)
                    _exit(11);
                _exit(4);
            }
            if (ggml_peer_exec(c) != 0)
                _exit(5);
            ggml_peer_output(c, o);
            ggml_peer_case_free(c);
            if (util_check_rows(&sh, q, k, v, o, causal, N) > 2e-2)
                _exit(6);
        }
        _exit(0);
    }
    close(fd[1]);
    char msg[512];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd[0], msg + got, sizeof msg - 1 - got);
        if (r > 0) {
            got += (size_t)r;
            if (got == sizeof msg - 1)
                break;
        } else if (r == 0 || errno != EINTR) {
            break;
        }
    }
    msg[got] = '\0';
    close(fd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        snprintf(why, why_len,
                 "loading it and running a small case in a child process "
                 "died of signal %d (%s)",
                 WTERMSIG(status),
                 WTERMSIG(status) == SIGILL
                     ? "illegal instruction: built for another CPU?"
                 : WTERMSIG(status) == SIGABRT ? "a GGML_ASSERT failed?"
                                               : "crash");
    else if (WEXITSTATUS(status) == 10) {
        *load_failed = 1;
        snprintf(why, why_len, "%s", msg);
    } else if (WEXITSTATUS(status) == 6)
        snprintf(why, why_len, "self-test gave wrong results");
    else if (WEXITSTATUS(status) == 5)
        snprintf(why, why_len, "self-test: graph compute failed");
    else
        snprintf(why, why_len, "self-test failed (exit %d)%s%.400s",
                 WEXITSTATUS(status), msg[0] ? ": " : "", msg);
    return -1;
}

int peers_setup(const options *opt, peer_state *ps, char *gwhy, size_t gwhy_len)
{
    char gpath[4096] = "";
    int ggml_loaded = 0;
    if (opt->ggml) {
        int found = ggml_peer_find(opt->ggml_lib, opt->python, gpath,
                                   sizeof gpath, gwhy, gwhy_len);
        int tested_ok = 0, load_failed = 0;
        for (int t = 0; t < 2 && found >= 0 && !load_failed; t++) {
            if (!(opt->ggml_kv & (1 << t)))
                continue;
            ps->ggml_ok[t] =
                ggml_self_test(gpath, t == 0, opt->threads, &load_failed,
                               ps->ggml_why[t], sizeof ps->ggml_why[t]) == 0;
            tested_ok |= ps->ggml_ok[t];
            if (load_failed)
                util_scopy(gwhy, gwhy_len, ps->ggml_why[t]);
        }
        if (found == 1 && load_failed)
            snprintf(gwhy, gwhy_len,
                     "not found (get it with: pip install llama-cpp-python, "
                     "then attn-bench finds it through python3; or point "
                     "--ggml-lib / ATTN_BENCH_GGML at libggml.so)");
        else if (found < 0 || load_failed)
            ; /* gwhy says why */
        else if (!tested_ok)
            snprintf(gwhy, gwhy_len, "%.400s: unusable: %.400s", gpath,
                     ps->ggml_why[(opt->ggml_kv & 1) ? 0 : 1]);
        else
            ggml_loaded = ggml_peer_load(gpath, &ps->g, gwhy, gwhy_len) == 0;
        if (!ggml_loaded)
            ps->ggml_ok[0] = ps->ggml_ok[1] = 0;
    }
    if (opt->numpy) {
        if (!opt->script) {
            snprintf(ps->numpy_why, sizeof ps->numpy_why,
                     "peer_numpy.py not found (give --peer-script)");
        } else {
            ps->numpy_ok = 1;
        }
    }
    ps->torch_ok = opt->torch && opt->script != NULL;
    serve_check(opt, ps);
    if (opt->torch_cuda)
        ps->cuda_ok =
            python_cuda_check(opt, ps->cuda_device, sizeof ps->cuda_device,
                              ps->cuda_why, sizeof ps->cuda_why) == 0;
    const char *ct = getenv("OPENBLAS_CORETYPE"),
               *l2 = getenv("OPENBLAS_L2_SIZE");
    ps->numpy_variants = (ct || l2) ? 2 : 1;
    snprintf(ps->openblas_env, sizeof ps->openblas_env, "%s%s%s%s%s%s",
             ct ? "OPENBLAS_CORETYPE=" : "", ct ? ct : "",
             (ct && l2) ? " " : "", l2 ? "OPENBLAS_L2_SIZE=" : "", l2 ? l2 : "",
             (ct || l2)
                 ? ""
                 : "neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set");
    return ggml_loaded;
}
