/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The python peers as subprocesses: bench/peer_numpy.py (numpy, torch on
 * the CPU) and bench/peer_torch_cuda.py (torch on a CUDA device), with
 * their inputs and output passed through temp files.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int env_drop(const char *entry, const char *const *names, int n_names)
{
    for (int i = 0; i < n_names; i++) {
        size_t l = strlen(names[i]);
        if (strncmp(entry, names[i], l) == 0 && entry[l] == '=')
            return 1;
    }
    return 0;
}

/* Runs one job (bench.h) and parses its RESULT / ERROR line. */
void python_peer_run(const options *opt, const py_job *job, py_result *r)
{
    memset(r, 0, sizeof *r);
    const shape *sh = &job->s;
    char sn[32], sc[16], sr[32], st[32], sb[32], shd[32], skv[32], sd[32],
        ssq[32], sw[32];
    snprintf(sn, sizeof sn, "%d", sh->seq_kv);
    snprintf(sc, sizeof sc, "%d", job->causal);
    snprintf(sr, sizeof sr, "%d", job->reps);
    snprintf(st, sizeof st, "%d", opt->threads);
    snprintf(sb, sizeof sb, "%d", sh->batch);
    snprintf(shd, sizeof shd, "%d", sh->heads);
    snprintf(skv, sizeof skv, "%d", sh->kv_heads);
    snprintf(sd, sizeof sd, "%d", sh->head_dim);
    snprintf(ssq, sizeof ssq, "%d", sh->seq_q);
    snprintf(sw, sizeof sw, "%d", opt->warmup);
    if (!job->script) {
        snprintf(r->error, sizeof r->error, "the peer's script was not found");
        r->fatal = 1;
        return;
    }
    const char *argv[40];
    int a = 0;
    argv[a++] = opt->python;
    argv[a++] = job->script;
    argv[a++] = sn;
    argv[a++] = sc;
    argv[a++] = sr;
    argv[a++] = "--threads";
    argv[a++] = st;
    argv[a++] = "--batch";
    argv[a++] = sb;
    argv[a++] = "--heads";
    argv[a++] = shd;
    argv[a++] = "--kv-heads";
    argv[a++] = skv;
    argv[a++] = "--dim";
    argv[a++] = sd;
    if (job->backend) {
        argv[a++] = "--backend";
        argv[a++] = job->backend;
    } else {
        argv[a++] = "--seq-q";
        argv[a++] = ssq;
        argv[a++] = "--dtype";
        argv[a++] = util_dtype_name(job->f16);
        argv[a++] = "--warmup";
        argv[a++] = sw;
    }
    if (job->in_path) {
        argv[a++] = "--in";
        argv[a++] = job->in_path;
    }
    if (job->out_path) {
        argv[a++] = "--out";
        argv[a++] = job->out_path;
    }
    argv[a] = NULL;
    int unset_openblas = job->unset_openblas;

    /* The child's environment. */
    static const char *const threads_vars[] = {"OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS"};
    static const char *const blas_vars[] = {"OPENBLAS_CORETYPE",
                                            "OPENBLAS_L2_SIZE"};
    size_t n_env = 0;
    while (environ && environ[n_env])
        n_env++;
    char **env = calloc(n_env + 3, sizeof *env);
    char thr1[64], thr2[64];
    snprintf(thr1, sizeof thr1, "OPENBLAS_NUM_THREADS=%d", opt->threads);
    snprintf(thr2, sizeof thr2, "OMP_NUM_THREADS=%d", opt->threads);
    if (!env) {
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    size_t e = 0;
    for (size_t i = 0; i < n_env; i++) {
        if (env_drop(environ[i], threads_vars, 2))
            continue;
        if (unset_openblas && env_drop(environ[i], blas_vars, 2))
            continue;
        env[e++] = environ[i];
    }
    env[e++] = thr1;
    env[e++] = thr2;
    env[e] = NULL;

    child_proc c;
    int started = child_start(&c, argv, env, 0, r->error, sizeof r->error);
    free(env);
    if (started != 0)
        return;

    /* Read everything; keep the RESULT/ERROR line and the last line. */
    static const char *const got[] = {"RESULT ", "ERROR ", NULL};
    char result[2048] = "", last[512] = "", line[2048];
    while (child_answer(&c, got, line, sizeof line, last, sizeof last) == 0)
        util_scopy(result, sizeof result, line);
    int status = child_wait(&c);
    if (strncmp(result, "RESULT ", 7) == 0 && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
        char v[64];
        util_field(result, "median_ms=", v, sizeof v);
        r->median_ms = strtod(v, NULL);
        util_field(result, "min_ms=", v, sizeof v);
        r->min_ms = strtod(v, NULL);
        util_field(result, "impl=", r->impl, sizeof r->impl);
        util_field(result, "device=", r->device, sizeof r->device);
        util_field(result, "how=", r->how, sizeof r->how);
        for (char *ch = r->device; *ch; ch++)
            if (*ch == '_')
                *ch = ' ';
        util_field(result, "blas=", r->blas, sizeof r->blas);
        util_field(result, "env=", r->env, sizeof r->env);
        r->ok = r->median_ms > 0;
        if (!r->ok)
            snprintf(r->error, sizeof r->error, "unreadable result: %.400s",
                     result);
        return;
    }
    if (strncmp(result, "ERROR ", 6) == 0) {
        util_scopy(r->error, sizeof r->error, result + 6);
        r->fatal = strstr(result, "cannot run") != NULL ||
                   strstr(result, "not installed") != NULL ||
                   strstr(result, "CUDA is not available") != NULL;
    } else if (WIFSIGNALED(status)) {
        snprintf(r->error, sizeof r->error, "killed by signal %d%s%.400s",
                 WTERMSIG(status), last[0] ? ": " : "", last);
    } else {
        snprintf(r->error, sizeof r->error, "exit status %d%s%.400s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 last[0] ? ": " : "", last);
        r->fatal = strstr(last, "can't open file") != NULL ||
                   strstr(last, "No such file") != NULL;
    }
}

int python_cuda_check(const options *opt, char *dev, size_t dev_len, char *why,
                      size_t why_len)
{
    dev[0] = '\0';
    if (!opt->cuda_script) {
        snprintf(why, why_len,
                 "peer_torch_cuda.py not found (beside attn-bench or in the "
                 "source tree)");
        return -1;
    }
    const char *const argv[] = {opt->python, opt->cuda_script, "--check", NULL};
    child_proc c;
    if (child_start(&c, argv, NULL, 0, why, why_len) != 0)
        return -1;
    static const char *const got[] = {"OK ", "ERROR ", NULL};
    char line[1024], ok[1024] = "", err[1024] = "", last[512] = "";
    while (child_answer(&c, got, line, sizeof line, last, sizeof last) == 0)
        if (line[0] == 'O')
            util_scopy(ok, sizeof ok, line + 3);
        else
            util_scopy(err, sizeof err, line + 6);
    int status = child_wait(&c);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok[0]) {
        util_scopy(dev, dev_len, ok);
        return 0;
    }
    if (err[0])
        util_scopy(why, why_len, err);
    else
        snprintf(why, why_len, "%s %s --check failed (status 0x%x)%s%.400s",
                 opt->python, opt->cuda_script, status, last[0] ? ": " : "",
                 last);
    return -1;
}

int python_peer_write(const char *path, const void *const *parts,
                      const size_t *counts, size_t n_parts, size_t elem)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n_parts && ok; i++)
        ok = fwrite(parts[i], elem, counts[i], f) == counts[i];
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int python_peer_read(const char *path, float *x, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t got = fread(x, sizeof(float), count, f);
    fclose(f);
    return got == count ? 0 : -1;
}

int python_peer_make_temp(char *path, size_t len, const char *what)
{
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !tmpdir[0] || strlen(tmpdir) > 20)
        tmpdir = "/tmp";
    snprintf(path, len, "%s/attn-bench-%s-XXXXXX", tmpdir, what);
    int fd = mkstemp(path);
    if (fd < 0) {
        fprintf(stderr,
                "attn-bench: cannot create a temp file in %s: %s; "
                "python peers left out\n",
                tmpdir, strerror(errno));
        path[0] = '\0';
        return -1;
    }
    close(fd);
    return 0;
}
