/*
 * The numpy / torch peer: bench/peer_numpy.py run as a python subprocess,
 * with its inputs and output passed through temp files.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void field(const char *line, const char *key, char *out, size_t len)
{
    out[0] = '\0';
    const char *p = strstr(line, key);
    if (!p)
        return;
    p += strlen(key);
    size_t n = strcspn(p, " \r\n");
    if (n >= len)
        n = len - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static int env_drop(const char *entry, const char *const *names, int n_names)
{
    for (int i = 0; i < n_names; i++) {
        size_t l = strlen(names[i]);
        if (strncmp(entry, names[i], l) == 0 && entry[l] == '=')
            return 1;
    }
    return 0;
}

/* Runs: python script N causal reps --threads T [extra...] with the
 * environment minus `drop` and with the BLAS thread variables set; parses
 * its RESULT / ERROR line. */
void python_peer_run(const options *opt, int n, int causal, int reps,
                     const char *in_path, const char *out_path,
                     const char *backend, int unset_openblas, py_result *r)
{
    memset(r, 0, sizeof *r);
    char sn[32], sc[16], sr[32], st[32];
    snprintf(sn, sizeof sn, "%d", n);
    snprintf(sc, sizeof sc, "%d", causal);
    snprintf(sr, sizeof sr, "%d", reps);
    snprintf(st, sizeof st, "%d", opt->threads);
    const char *argv[16];
    int a = 0;
    argv[a++] = opt->python;
    argv[a++] = opt->script;
    argv[a++] = sn;
    argv[a++] = sc;
    argv[a++] = sr;
    argv[a++] = "--threads";
    argv[a++] = st;
    argv[a++] = "--backend";
    argv[a++] = backend;
    if (in_path) {
        argv[a++] = "--in";
        argv[a++] = in_path;
    }
    if (out_path) {
        argv[a++] = "--out";
        argv[a++] = out_path;
    }
    argv[a] = NULL;

    /* The child's environment, built before fork. */
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

    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r->error, sizeof r->error, "pipe: %s", strerror(errno));
        free(env);
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->error, sizeof r->error, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        free(env);
        return;
    }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        dup2(fd[1], STDERR_FILENO);
        if (fd[1] > STDERR_FILENO)
            close(fd[1]);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            if (devnull > STDERR_FILENO)
                close(devnull);
        }
        environ = env;
        execvp(argv[0], (char *const *)argv);
        char msg[600];
        int len = snprintf(msg, sizeof msg, "ERROR cannot run %s: %s\n",
                           argv[0], strerror(errno));
        if (len > 0 && write(STDOUT_FILENO, msg, (size_t)len) < 0)
            _exit(126);
        _exit(127);
    }
    close(fd[1]);
    free(env);

    /* Read everything; keep the RESULT/ERROR line and the last line. */
    char result[2048] = "", last[512] = "";
    FILE *f = fdopen(fd[0], "r");
    if (!f) {
        close(fd[0]);
    } else {
        char line[2048];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            if (strncmp(line, "RESULT ", 7) == 0 ||
                strncmp(line, "ERROR ", 6) == 0)
                util_scopy(result, sizeof result, line);
            else if (line[0])
                util_scopy(last, sizeof last, line);
        }
        fclose(f);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (strncmp(result, "RESULT ", 7) == 0 && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
        char v[64];
        field(result, "median_ms=", v, sizeof v);
        r->median_ms = strtod(v, NULL);
        field(result, "min_ms=", v, sizeof v);
        r->min_ms = strtod(v, NULL);
        field(result, "impl=", r->impl, sizeof r->impl);
        field(result, "blas=", r->blas, sizeof r->blas);
        field(result, "env=", r->env, sizeof r->env);
        r->ok = r->median_ms > 0;
        if (!r->ok)
            snprintf(r->error, sizeof r->error, "unreadable result: %.400s",
                     result);
        return;
    }
    if (strncmp(result, "ERROR ", 6) == 0) {
        util_scopy(r->error, sizeof r->error, result + 6);
        r->fatal = strstr(result, "cannot run") != NULL ||
                   strstr(result, "not installed") != NULL;
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

int python_peer_write(const char *path, const float *const *parts,
                      size_t n_parts, size_t count)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = 1;
    for (size_t i = 0; i < n_parts && ok; i++)
        ok = fwrite(parts[i], sizeof(float), count, f) == count;
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

int python_peer_make_temps(char *in_path, char *out_path, size_t len)
{
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !tmpdir[0] || strlen(tmpdir) > 20)
        tmpdir = "/tmp";
    snprintf(in_path, len, "%s/attn-bench-in-XXXXXX", tmpdir);
    snprintf(out_path, len, "%s/attn-bench-out-XXXXXX", tmpdir);
    int f1 = mkstemp(in_path);
    int f2 = f1 >= 0 ? mkstemp(out_path) : -1;
    if (f1 >= 0)
        close(f1);
    if (f2 >= 0)
        close(f2);
    if (f1 < 0 || f2 < 0) {
        if (f1 >= 0)
            unlink(in_path);
        fprintf(stderr,
                "attn-bench: cannot create temp files in %s: %s; "
                "python peers left out\n",
                tmpdir, strerror(errno));
        return -1;
    }
    return 0;
}
