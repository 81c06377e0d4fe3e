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
#include <attn/attn.h>

#include "peer_ggml.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef ATTN_BENCH_SOURCE_DIR
#define ATTN_BENCH_SOURCE_DIR "."
#endif

extern char **environ;

enum { HEADS = 8, HEAD_DIM = 64, MAX_SIZES = 32, MAX_REPS = 1000 };

typedef struct options {
    int threads;
    int sizes[MAX_SIZES];
    int n_sizes;
    int reps; /* 0: by size */
    int warmup;
    int causal_mode; /* 0 no, 1 yes, 2 both */
    int peers;
    int ggml;
    int numpy;
    int torch;
    int ggml_kv; /* 1 f16, 2 f32, 3 both */
    const char *ggml_lib;
    const char *python;
    const char *script;
    const char *csv;
    const char *device;
} options;

/* ---- small helpers -------------------------------------------------------- */

/* Copies src into dst (size len), truncating; always NUL-terminated. */
static void scopy(char *dst, size_t len, const char *src)
{
    size_t n = strlen(src);
    if (n >= len)
        n = len - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* "0.52 0.61 0.70" from /proc/loadavg, or "?" */
static void loadavg(char *out, size_t len)
{
    scopy(out, len, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f)
        return;
    double a = 0, b = 0, c = 0;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double min_of(const double *t, int n)
{
    double m = t[0];
    for (int i = 1; i < n; i++)
        if (t[i] < m)
            m = t[i];
    return m;
}

static double flops_of(int n, int causal)
{
    double f = 4.0 * (double)n * (double)n * HEAD_DIM * HEADS;
    return causal ? f / 2 : f;
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) /* also catches NaN */
            m = d;
    }
    return m;
}

/* Deterministic inputs in [-1, 1). */
static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
    }
}

/* Max abs error of libattn's o against a double-precision reference on up to
 * rows_per_head evenly spread rows of every head. */
static double check_rows(const float *q, const float *k, const float *v,
                         const float *o, int n, int causal, int rows_per_head)
{
    double worst = 0.0;
    double scale = 1.0 / sqrt((double)HEAD_DIM);
    double *p = malloc((size_t)n * sizeof *p);
    if (!p)
        return NAN;
    int step = n / rows_per_head > 0 ? n / rows_per_head : 1;
    for (int h = 0; h < HEADS; h++) {
        const float *qh = q + (size_t)h * n * HEAD_DIM;
        const float *kh = k + (size_t)h * n * HEAD_DIM;
        const float *vh = v + (size_t)h * n * HEAD_DIM;
        for (int i = (h * 7) % step; i < n; i += step) {
            int last = causal ? i : n - 1;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j <= last; j++) {
                double s = 0.0;
                for (int c = 0; c < HEAD_DIM; c++)
                    s += (double)qh[(size_t)i * HEAD_DIM + c] *
                         (double)kh[(size_t)j * HEAD_DIM + c];
                p[j] = s * scale;
                if (p[j] > mx)
                    mx = p[j];
            }
            for (int j = 0; j <= last; j++) {
                p[j] = exp(p[j] - mx);
                sum += p[j];
            }
            for (int c = 0; c < HEAD_DIM; c++) {
                double acc = 0.0;
                for (int j = 0; j <= last; j++)
                    acc += p[j] * (double)vh[(size_t)j * HEAD_DIM + c];
                double e = fabs(acc / sum -
                                (double)o[((size_t)h * n + i) * HEAD_DIM + c]);
                if (!(e <= worst))
                    worst = e;
            }
        }
    }
    free(p);
    return worst;
}

/* ---- python subprocess ---------------------------------------------------- */

typedef struct py_result {
    int ok;
    double median_ms, min_ms;
    char impl[128];
    char blas[512];
    char env[256];
    char error[512]; /* when !ok */
    int fatal;       /* the peer cannot run at all (no python, no numpy) */
} py_result;

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
static void run_python(const options *opt, int n, int causal, int reps,
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
            if (strncmp(line, "RESULT ", 7) == 0 || strncmp(line, "ERROR ", 6) == 0)
                scopy(result, sizeof result, line);
            else if (line[0])
                scopy(last, sizeof last, line);
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
            snprintf(r->error, sizeof r->error, "unreadable result: %.400s", result);
        return;
    }
    if (strncmp(result, "ERROR ", 6) == 0) {
        scopy(r->error, sizeof r->error, result + 6);
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

static int write_all(const char *path, const float *const *parts, size_t n_parts,
                     size_t count)
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

static int read_all(const char *path, float *x, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t got = fread(x, sizeof(float), count, f);
    fclose(f);
    return got == count ? 0 : -1;
}

/* ---- output --------------------------------------------------------------- */

typedef struct row {
    const char *impl;
    char label[96];
    int ok;
    double median_ms, min_ms;
    double diff;       /* vs libattn (peers) or vs the f64 reference (libattn) */
    const char *note;  /* shown when !ok */
} row;

static FILE *g_csv;

static void print_row(int n, int causal, int first, const row *r, double lib_ms)
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
    double gf = flops_of(n, causal) / (r->median_ms * 1e6);
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

/* ---- options -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: attn-bench [options]\n"
        "Times attn_sdpa (libattn native backend) for B=1, H=8, d=64,\n"
        "seq_q = seq_kv = N, f32, causal and not, against ggml_flash_attn_ext\n"
        "(ggml CPU backend), numpy matmul+softmax and torch sdpa (if installed).\n"
        "\n"
        "  --threads N       threads for libattn, ggml and BLAS (default: online CPUs)\n"
        "  --sizes LIST      comma list of N (default 512,1024,2048,4096,8192)\n"
        "  --reps R          timed runs per case; median and min are shown\n"
        "                    (default: 15 for N <= 1024, 9 for N <= 2048, else 5)\n"
        "  --warmup W        untimed runs before timing (default 1)\n"
        "  --causal MODE     no, yes or both (default both)\n"
        "  --no-peers        time libattn only\n"
        "  --no-ggml, --no-numpy, --no-torch   leave out one peer\n"
        "  --ggml-lib PATH   libggml.so or its folder (default: $ATTN_BENCH_GGML, then\n"
        "                    the lib/ folder of python's llama_cpp or ggml package)\n"
        "  --ggml-kv TYPE    K/V type handed to ggml: f16, f32 or both (default)\n"
        "  --python PATH     interpreter for the numpy/torch peer (default python3)\n"
        "  --peer-script P   peer_numpy.py (default: beside attn-bench, else the\n"
        "                    source tree)\n"
        "  --device SPEC     libattn device (default native)\n"
        "  --csv FILE        also write every row to FILE as CSV\n"
        "  --help            this text\n"
        "\n"
        "Columns: median ms and min ms of the timed runs; GFLOP/s = 4*N*N*d*H\n"
        "(halved when causal) / median; 'libattn x faster' = peer median /\n"
        "libattn median (above 1: libattn is faster); max|diff| = largest\n"
        "absolute difference from libattn's output (for libattn itself: from a\n"
        "double-precision reference on sampled rows).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_sizes(const char *s, options *o)
{
    o->n_sizes = 0;
    char buf[512];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (o->n_sizes == MAX_SIZES ||
            parse_int(t, 1, 1 << 20, &o->sizes[o->n_sizes]) != 0)
            return -1;
        o->n_sizes++;
    }
    return o->n_sizes > 0 ? 0 : -1;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* peer_numpy.py beside the executable, else in the source tree. */
static const char *find_script(char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/peer_numpy.py", exe);
            if (file_exists(buf))
                return buf;
        }
    }
    snprintf(buf, len, "%s/peer_numpy.py", ATTN_BENCH_SOURCE_DIR);
    if (file_exists(buf))
        return buf;
    return NULL;
}

static int parse_args(int argc, char **argv, options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof *o);
    o->threads = cpus > 0 ? (int)cpus : 1;
    o->warmup = 1;
    o->causal_mode = 2;
    o->peers = o->ggml = o->numpy = o->torch = 1;
    o->ggml_kv = 3;
    o->python = "python3";
    o->device = "native";
    parse_sizes("512,1024,2048,4096,8192", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int takes = strcmp(a, "--threads") == 0 || strcmp(a, "--sizes") == 0 ||
                    strcmp(a, "--reps") == 0 || strcmp(a, "--warmup") == 0 ||
                    strcmp(a, "--causal") == 0 || strcmp(a, "--ggml-lib") == 0 ||
                    strcmp(a, "--ggml-kv") == 0 || strcmp(a, "--python") == 0 ||
                    strcmp(a, "--peer-script") == 0 || strcmp(a, "--csv") == 0 ||
                    strcmp(a, "--device") == 0;
        if (takes) {
            if (i + 1 >= argc) {
                fprintf(stderr, "attn-bench: %s needs a value (see --help)\n", a);
                return -1;
            }
            val = argv[++i];
        }
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "--threads") == 0) {
            bad = parse_int(val, 1, 4096, &o->threads);
        } else if (strcmp(a, "--sizes") == 0) {
            bad = parse_sizes(val, o);
        } else if (strcmp(a, "--reps") == 0) {
            bad = parse_int(val, 1, MAX_REPS, &o->reps);
        } else if (strcmp(a, "--warmup") == 0) {
            bad = parse_int(val, 0, 100, &o->warmup);
        } else if (strcmp(a, "--causal") == 0) {
            if (strcmp(val, "no") == 0)
                o->causal_mode = 0;
            else if (strcmp(val, "yes") == 0)
                o->causal_mode = 1;
            else if (strcmp(val, "both") == 0)
                o->causal_mode = 2;
            else
                bad = 1;
        } else if (strcmp(a, "--ggml-kv") == 0) {
            if (strcmp(val, "f16") == 0)
                o->ggml_kv = 1;
            else if (strcmp(val, "f32") == 0)
                o->ggml_kv = 2;
            else if (strcmp(val, "both") == 0)
                o->ggml_kv = 3;
            else
                bad = 1;
        } else if (strcmp(a, "--no-peers") == 0) {
            o->peers = 0;
        } else if (strcmp(a, "--no-ggml") == 0) {
            o->ggml = 0;
        } else if (strcmp(a, "--no-numpy") == 0) {
            o->numpy = 0;
        } else if (strcmp(a, "--no-torch") == 0) {
            o->torch = 0;
        } else if (strcmp(a, "--ggml-lib") == 0) {
            o->ggml_lib = val;
        } else if (strcmp(a, "--python") == 0) {
            o->python = val;
        } else if (strcmp(a, "--peer-script") == 0) {
            o->script = val;
        } else if (strcmp(a, "--csv") == 0) {
            o->csv = val;
        } else if (strcmp(a, "--device") == 0) {
            o->device = val;
        } else {
            fprintf(stderr, "attn-bench: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "attn-bench: bad value '%s' for %s (see --help)\n",
                    val ? val : "", a);
            return -1;
        }
    }
    if (!o->peers)
        o->ggml = o->numpy = o->torch = 0;
    return 0;
}

static int reps_for(const options *o, int n)
{
    if (o->reps)
        return o->reps;
    return n <= 1024 ? 15 : n <= 2048 ? 9 : 5;
}

/* ---- ggml self-test in a child process ------------------------------------ */

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
        enum { N = 96, H = HEADS, D = HEAD_DIM };
        size_t cnt = (size_t)H * N * D;
        float *q = malloc(cnt * sizeof *q), *k = malloc(cnt * sizeof *k),
              *v = malloc(cnt * sizeof *v), *o = malloc(cnt * sizeof *o);
        if (!q || !k || !v || !o)
            _exit(3);
        fill(q, cnt, 11);
        fill(k, cnt, 12);
        fill(v, cnt, 13);
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
            if (check_rows(q, k, v, o, N, causal, N) > 2e-2)
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

/* ---- main ----------------------------------------------------------------- */

typedef struct peer_state {
    /* ggml */
    ggml_peer *g;
    int ggml_ok[2];   /* per K/V type: [0] f16, [1] f32 */
    char ggml_why[2][512];
    /* python peers */
    int numpy_ok, torch_ok;
    char numpy_why[512];
    int numpy_variants; /* 1: as-is only (no OPENBLAS_* set), 2: as-is + unset */
    char openblas_env[256];
    char blas_seen[2][512];
    char numpy_impl[128];
} peer_state;

static int run_case(const options *opt, attn_context *ctx, peer_state *ps,
                    int n, int causal, const float *q, const float *k,
                    const float *v, float *o_lib, float *o_peer,
                    const char *in_path, const char *out_path,
                    double *lib_out_ms, double *ggml_out_ms /* [2] */)
{
    int reps = reps_for(opt, n);
    size_t cnt = (size_t)HEADS * n * HEAD_DIM;
    attn_sdpa_desc d;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = HEADS;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = HEAD_DIM;
    d.mask.causal = causal;
    d.dtype = ATTN_F32;

    row rows[8];
    int n_rows = 0;
    memset(rows, 0, sizeof rows);

    /* libattn warm-up */
    for (int w = 0; w < opt->warmup; w++) {
        attn_status st = attn_sdpa(ctx, &d, q, k, v, o_lib, NULL);
        if (st != ATTN_OK) {
            fprintf(stderr, "attn-bench: attn_sdpa(N=%d): %s: %s\n", n,
                    attn_status_string(st), attn_context_last_error(ctx));
            return -1;
        }
    }

    /* ggml cases, prepared (and warmed) before timing */
    ggml_peer_case *gc[2] = {NULL, NULL};
    char gwhy[2][256] = {"", ""};
    for (int t = 0; t < 2; t++) {
        if (!ps->g || !ps->ggml_ok[t])
            continue;
        if (ggml_peer_prepare(ps->g, HEADS, n, HEAD_DIM, causal, t == 0,
                              opt->threads, q, k, v, &gc[t], gwhy[t],
                              sizeof gwhy[t]) != 0) {
            gc[t] = NULL;
            continue;
        }
        for (int w = 0; w < opt->warmup; w++)
            if (ggml_peer_exec(gc[t]) != 0) {
                snprintf(gwhy[t], sizeof gwhy[t], "graph compute failed");
                ggml_peer_case_free(gc[t]);
                gc[t] = NULL;
                break;
            }
    }

    /* timed runs, libattn and ggml interleaved */
    double *tl = calloc((size_t)reps, sizeof *tl);
    double *tg[2] = {calloc((size_t)reps, sizeof(double)),
                     calloc((size_t)reps, sizeof(double))};
    if (!tl || !tg[0] || !tg[1]) {
        free(tl);
        free(tg[0]);
        free(tg[1]);
        ggml_peer_case_free(gc[0]);
        ggml_peer_case_free(gc[1]);
        fprintf(stderr, "attn-bench: out of memory\n");
        return -1;
    }
    int interleaved = gc[0] || gc[1];
    for (int r = 0; r < reps; r++) {
        if (interleaved)
            pause_ms(5); /* let the other pool's spinning workers sleep */
        double t0 = now_ms();
        attn_status st = attn_sdpa(ctx, &d, q, k, v, o_lib, NULL);
        tl[r] = now_ms() - t0;
        if (st != ATTN_OK) {
            fprintf(stderr, "attn-bench: attn_sdpa(N=%d): %s: %s\n", n,
                    attn_status_string(st), attn_context_last_error(ctx));
            free(tl);
            free(tg[0]);
            free(tg[1]);
            ggml_peer_case_free(gc[0]);
            ggml_peer_case_free(gc[1]);
            return -1;
        }
        for (int t = 0; t < 2; t++) {
            if (!gc[t])
                continue;
            pause_ms(5);
            t0 = now_ms();
            int rc = ggml_peer_exec(gc[t]);
            tg[t][r] = now_ms() - t0;
            if (rc != 0) {
                snprintf(gwhy[t], sizeof gwhy[t], "graph compute failed");
                ggml_peer_case_free(gc[t]);
                gc[t] = NULL;
            }
        }
    }

    row *lr = &rows[n_rows++];
    lr->impl = "libattn";
    snprintf(lr->label, sizeof lr->label, "libattn %s", opt->device);
    lr->ok = 1;
    lr->min_ms = min_of(tl, reps);
    lr->median_ms = median_of(tl, reps);
    lr->diff = check_rows(q, k, v, o_lib, n, causal, n >= 4096 ? 8 : 16);
    *lib_out_ms = lr->median_ms;

    for (int t = 0; t < 2; t++) {
        if (!ps->g || !(opt->ggml_kv & (1 << t)))
            continue;
        row *gr = &rows[n_rows++];
        gr->impl = "ggml";
        snprintf(gr->label, sizeof gr->label, "ggml flash_attn_ext (K/V %s)",
                 t == 0 ? "f16" : "f32");
        if (!gc[t]) {
            gr->note = ps->ggml_ok[t] ? gwhy[t] : ps->ggml_why[t];
            continue;
        }
        gr->ok = 1;
        gr->min_ms = min_of(tg[t], reps);
        gr->median_ms = median_of(tg[t], reps);
        ggml_peer_output(gc[t], o_peer);
        gr->diff = max_abs_diff(o_lib, o_peer, cnt);
        if (ggml_out_ms)
            ggml_out_ms[t] = gr->median_ms;
        ggml_peer_case_free(gc[t]);
        gc[t] = NULL;
    }
    free(tl);
    free(tg[0]);
    free(tg[1]);

    /* numpy, then torch: subprocesses */
    static char notes[4][600];
    int py_jobs = 0;
    struct {
        const char *backend;
        int unset;
    } jobs[3];
    if (ps->numpy_ok) {
        jobs[py_jobs].backend = "numpy";
        jobs[py_jobs++].unset = 0;
        if (ps->numpy_variants == 2) {
            jobs[py_jobs].backend = "numpy";
            jobs[py_jobs++].unset = 1;
        }
    }
    if (ps->torch_ok) {
        jobs[py_jobs].backend = "torch";
        jobs[py_jobs++].unset = 0;
    }
    for (int j = 0; j < py_jobs; j++) {
        int is_torch = strcmp(jobs[j].backend, "torch") == 0;
        if ((is_torch && !ps->torch_ok) || (!is_torch && !ps->numpy_ok))
            continue;
        py_result pr;
        run_python(opt, n, causal, reps, in_path, out_path, jobs[j].backend,
                   jobs[j].unset, &pr);
        if (is_torch && !pr.ok && pr.fatal) {
            ps->torch_ok = 0; /* not installed: leave torch out quietly */
            continue;
        }
        row *pr_row = &rows[n_rows++];
        pr_row->impl = jobs[j].backend;
        if (is_torch)
            scopy(pr_row->label, sizeof pr_row->label, pr.ok ? pr.impl : "torch sdpa");
        else if (ps->numpy_variants == 2)
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax (OPENBLAS_* %s)",
                     jobs[j].unset ? "unset" : "as-is");
        else
            snprintf(pr_row->label, sizeof pr_row->label,
                     "numpy matmul+softmax");
        if (!pr.ok) {
            snprintf(notes[j], sizeof notes[j], "failed: %s", pr.error);
            pr_row->note = notes[j];
            if (pr.fatal && !is_torch) {
                ps->numpy_ok = 0;
                scopy(ps->numpy_why, sizeof ps->numpy_why, pr.error);
            }
            continue;
        }
        if (!is_torch) {
            scopy(ps->blas_seen[jobs[j].unset], sizeof ps->blas_seen[0], pr.blas);
            scopy(ps->numpy_impl, sizeof ps->numpy_impl, pr.impl);
        }
        pr_row->ok = 1;
        pr_row->median_ms = pr.median_ms;
        pr_row->min_ms = pr.min_ms;
        if (out_path && read_all(out_path, o_peer, cnt) == 0)
            pr_row->diff = max_abs_diff(o_lib, o_peer, cnt);
        else
            pr_row->diff = NAN;
    }

    for (int i = 0; i < n_rows; i++)
        print_row(n, causal, i == 0, &rows[i], *lib_out_ms);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    options opt;
    int pa = parse_args(argc, argv, &opt);
    if (pa != 0)
        return pa > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);

    char script_buf[PATH_MAX + 32];
    if (opt.numpy || opt.torch) {
        if (!opt.script)
            opt.script = find_script(script_buf, sizeof script_buf);
        else if (!file_exists(opt.script))
            opt.script = NULL;
    }

    if (opt.csv) {
        g_csv = fopen(opt.csv, "w");
        if (!g_csv) {
            fprintf(stderr, "attn-bench: cannot write %s: %s\n", opt.csv,
                    strerror(errno));
            return 2;
        }
        fprintf(g_csv, "n,causal,impl,median_ms,min_ms,gflops,"
                       "libattn_x_faster,max_abs_diff,note\n");
    }

    peer_state ps;
    memset(&ps, 0, sizeof ps);

    /* Peers are loaded (and ggml self-tested in a child) before libattn
     * starts its threads. */
    char gwhy[1024] = "", gpath[4096] = "";
    int ggml_loaded = 0;
    if (opt.ggml) {
        int found = ggml_peer_find(opt.ggml_lib, opt.python, gpath,
                                   sizeof gpath, gwhy, sizeof gwhy);
        int tested_ok = 0, load_failed = 0;
        for (int t = 0; t < 2 && found >= 0 && !load_failed; t++) {
            if (!(opt.ggml_kv & (1 << t)))
                continue;
            ps.ggml_ok[t] = ggml_self_test(gpath, t == 0, opt.threads,
                                           &load_failed, ps.ggml_why[t],
                                           sizeof ps.ggml_why[t]) == 0;
            tested_ok |= ps.ggml_ok[t];
            if (load_failed)
                scopy(gwhy, sizeof gwhy, ps.ggml_why[t]);
        }
        if (found == 1 && load_failed)
            snprintf(gwhy, sizeof gwhy,
                     "not found (get it with: pip install llama-cpp-python, "
                     "then attn-bench finds it through python3; or point "
                     "--ggml-lib / ATTN_BENCH_GGML at libggml.so)");
        else if (found < 0 || load_failed)
            ; /* gwhy says why */
        else if (!tested_ok)
            snprintf(gwhy, sizeof gwhy, "%.400s: unusable: %.400s", gpath,
                     ps.ggml_why[(opt.ggml_kv & 1) ? 0 : 1]);
        else
            ggml_loaded = ggml_peer_load(gpath, &ps.g, gwhy, sizeof gwhy) == 0;
        if (!ggml_loaded)
            ps.ggml_ok[0] = ps.ggml_ok[1] = 0;
    }
    if (opt.numpy) {
        if (!opt.script) {
            snprintf(ps.numpy_why, sizeof ps.numpy_why,
                     "peer_numpy.py not found (give --peer-script)");
        } else {
            ps.numpy_ok = 1;
        }
    }
    ps.torch_ok = opt.torch && opt.script != NULL;
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    ps.numpy_variants = (ct || l2) ? 2 : 1;
    snprintf(ps.openblas_env, sizeof ps.openblas_env, "%s%s%s%s%s%s",
             ct ? "OPENBLAS_CORETYPE=" : "", ct ? ct : "", (ct && l2) ? " " : "",
             l2 ? "OPENBLAS_L2_SIZE=" : "", l2 ? l2 : "",
             (ct || l2) ? "" : "neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE is set");

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
        if (g_csv)
            fclose(g_csv);
        return 1;
    }
    attn_device_info di;
    memset(&di, 0, sizeof di);
    attn_context_device(ctx, &di);

    printf("attn-bench: libattn %s on '%s' (%s), %d thread%s; B=1 H=%d d=%d "
           "seq_q=seq_kv=N f32, scale 1/sqrt(d)\n",
           attn_version(), di.name, di.kind == ATTN_DEVICE_NATIVE ? "native" : "OpenCL",
           opt.threads, opt.threads == 1 ? "" : "s", HEADS, HEAD_DIM);
    if (opt.reps)
        printf("timing: %d warm-up + %d timed runs per case, median and min\n",
               opt.warmup, opt.reps);
    else
        printf("timing: %d warm-up + 15 (N<=1024) / 9 (N<=2048) / 5 timed runs "
               "per case, median and min\n", opt.warmup);
    if (opt.ggml) {
        if (!ggml_loaded)
            printf("ggml: %s\n", gwhy);
        else {
            printf("ggml: %s\n      ggml_flash_attn_ext on the CPU: Q f32, K/V "
                   "%s (converted before timing), mask NULL / causal f16 "
                   "[N, pad64(N)] of 0 and -inf, F32 accumulation; %s, "
                   "%d thread%s; runs interleaved with libattn's\n",
                   ggml_peer_path(ps.g),
                   opt.ggml_kv == 1 ? "f16" : opt.ggml_kv == 2 ? "f32" : "f16 and f32",
                   ggml_peer_compute_api(ps.g), opt.threads,
                   opt.threads == 1 ? "" : "s");
            for (int t = 0; t < 2; t++)
                if ((opt.ggml_kv & (1 << t)) && !ps.ggml_ok[t])
                    printf("      K/V %s: unusable: %s\n", t == 0 ? "f16" : "f32",
                           ps.ggml_why[t]);
        }
    } else {
        printf("ggml: not run (%s)\n", opt.peers ? "--no-ggml" : "--no-peers");
    }
    if (opt.numpy) {
        if (!ps.numpy_ok)
            printf("numpy: %s\n", ps.numpy_why);
        else
            printf("numpy: %s %s, BLAS threads %d; OPENBLAS env: %s%s\n",
                   opt.python, opt.script, opt.threads, ps.openblas_env,
                   ps.numpy_variants == 2
                       ? " (rows 'as-is' keep it, rows 'unset' drop both for the "
                         "subprocess)"
                       : " (so as-is = unset: one run)");
    }
    char load[64];
    loadavg(load, sizeof load);
    printf("machine: %ld online CPUs, load average %s at start\n",
           sysconf(_SC_NPROCESSORS_ONLN), load);
    printf("\n%6s  %-6s  %-40s %10s %10s %9s %10s  %s\n", "N", "causal",
           "implementation", "median ms", "min ms", "GFLOP/s", "libattn",
           "max|diff|");
    printf("%6s  %-6s  %-40s %10s %10s %9s %10s  %s\n", "", "", "", "", "", "",
           "x faster", "vs libattn");
    printf("------  ------  ---------------------------------------- ---------- "
           "---------- --------- ----------  ------------------\n");
    fflush(stdout);

    /* temp files for the python peers */
    char in_path[64] = "", out_path[64] = "";
    int have_tmp = 0;
    if (ps.numpy_ok || ps.torch_ok) {
        const char *tmpdir = getenv("TMPDIR");
        if (!tmpdir || !tmpdir[0] || strlen(tmpdir) > 20)
            tmpdir = "/tmp";
        snprintf(in_path, sizeof in_path, "%s/attn-bench-in-XXXXXX", tmpdir);
        snprintf(out_path, sizeof out_path, "%s/attn-bench-out-XXXXXX", tmpdir);
        int f1 = mkstemp(in_path);
        int f2 = f1 >= 0 ? mkstemp(out_path) : -1;
        if (f1 >= 0)
            close(f1);
        if (f2 >= 0)
            close(f2);
        if (f1 < 0 || f2 < 0) {
            if (f1 >= 0)
                unlink(in_path);
            fprintf(stderr, "attn-bench: cannot create temp files in %s: %s; "
                            "python peers left out\n", tmpdir, strerror(errno));
            ps.numpy_ok = ps.torch_ok = 0;
        } else {
            have_tmp = 1;
        }
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
            fill(q, cnt, 1);
            fill(k, cnt, 2);
            fill(v, cnt, 3);
            int py = ps.numpy_ok || ps.torch_ok;
            if (py) {
                const float *parts[3] = {q, k, v};
                if (write_all(in_path, parts, 3, cnt) != 0) {
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
                    rc = run_case(&opt, ctx, &ps, n, causal, q, k, v, o, op, NULL,
                                  NULL, &lms, gms) ? 1 : 0;
                    ps.numpy_ok = nk;
                    ps.torch_ok = tk;
                } else {
                    rc = run_case(&opt, ctx, &ps, n, causal, q, k, v, o, op,
                                  in_path, out_path, &lms, gms) ? 1 : 0;
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

    loadavg(load, sizeof load);
    printf("\nload average %s at the end\n", load);
    if (rc == 0 && ps.numpy_ok && ps.blas_seen[0][0]) {
        printf("numpy BLAS (threadpoolctl): as-is: %s", ps.blas_seen[0]);
        if (ps.numpy_variants == 2 && ps.blas_seen[1][0])
            printf("; unset: %s", ps.blas_seen[1]);
        printf("\n");
    }
    if (rc == 0 && (lib2048[0] > 0 || lib2048[1] > 0)) {
        printf("target: libattn >= 1.5x ggml flash_attn_ext at N=2048, same "
               "%d thread%s (libattn x faster, by medians):\n", opt.threads,
               opt.threads == 1 ? "" : "s");
        for (int c = 0; c < 2; c++) {
            if (lib2048[c] <= 0)
                continue;
            printf("  %-10s", c ? "causal" : "non-causal");
            int any = 0;
            for (int t = 0; t < 2; t++) {
                if (ggml2048[c][t] <= 0)
                    continue;
                double x = ggml2048[c][t] / lib2048[c];
                printf("%s vs K/V %s: %.2fx %s", any ? ";" : "", t ? "f32" : "f16",
                       x, x >= 1.5 ? "(met)" : "(not met)");
                any = 1;
            }
            printf("%s\n", any ? "" : " no ggml figure");
        }
    }

    attn_context_destroy(ctx);
    ggml_peer_close(ps.g);
    if (g_csv && fclose(g_csv) != 0) {
        fprintf(stderr, "attn-bench: error writing %s\n", opt.csv);
        rc = 1;
    }
    return rc;
}
