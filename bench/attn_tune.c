/*
 * attn-tune: searches the blocking of the fused OpenCL kernel (cl/fused.cl)
 * on one device, checks every candidate against the native backend and
 * writes a platform profile (src/opencl/profile.h) that the library loads
 * from ATTN_PLATFORM_DIR.
 *
 *     attn-tune [-d SPEC] [-o DIR] [--quick] [--help]
 *
 * Exit status: 0 a profile was written, 1 no OpenCL device, no candidate
 * passed or the file could not be written, 2 usage errors.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "opencl/discovery.h"
#include "opencl/runtime.h"
#include "opencl/sdpa_fused.h"

#define TUNE_B   1
#define TUNE_H   8
#define TUNE_N   1024
#define TUNE_D   64
#define TUNE_TOL 1e-4
#define TUNE_REP 3
#define MAX_CAND 128

typedef struct cand {
    attn_cl_fused_tuning t;
    int ok;        /* 1: ran and matched the native result */
    double gflops; /* median of TUNE_REP runs */
} cand;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: attn-tune [-d SPEC] [-o DIR] [--quick] [--help]\n"
            "  -d SPEC   OpenCL device as ATTN_DEVICE names it (\"P:D\", "
            "\"cpu\", \"gpu\",\n"
            "            a name substring); default ATTN_DEVICE, else the "
            "best usable device\n"
            "  -o DIR    where <device>.prof is written (default .)\n"
            "  --quick   a few candidates only\n"
            "Times the fused kernel at B=%d H=%d N=%d d=%d f32 for each "
            "candidate blocking,\nchecks it against the native backend and "
            "writes the fastest as a profile\n(use it with "
            "ATTN_PLATFORM_DIR=DIR).\n",
            TUNE_B, TUNE_H, TUNE_N, TUNE_D);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void describe(const attn_cl_fused_tuning *t, char *buf, size_t cap)
{
    snprintf(buf, cap, "vw=%-2d nv=%d wg=%-2d tk=%-3d kb=%d cb=%d", t->vw,
             t->nv, t->wg, t->tk, t->kb, t->cb);
}

static int same_tuning(const attn_cl_fused_tuning *a,
                       const attn_cl_fused_tuning *b)
{
    return a->vw == b->vw && a->nv == b->nv && a->wg == b->wg &&
           a->tk == b->tk && a->kb == b->kb && a->cb == b->cb;
}

/* The search space: one row per parameter, tried one parameter at a
 * time (coordinate descent from the default, in this order), which keeps a
 * full run to about 8 kernel builds instead of the 36..72 of the grid. */
enum { P_VW, P_NV, P_TK, P_KB, P_CB, P_WG, N_PARAM };
/* CPU devices: rows in wide vectors, one item per work-group. */
static const int cpu_space[N_PARAM][4] = {{8, 16, 0, 0},    {1, 2, 4, 0},
                                          {32, 64, 128, 0}, {4, 8, 0, 0},
                                          {8, 0, 0, 0},     {0, 0, 0, 0}};
/* GPUs: SIMT lanes do the vectorising (narrow vectors), many items per
 * work-group, short key tiles (Q, O and the K/V tile share 48-64 KiB of
 * local memory on most GPUs). */
static const int gpu_space[N_PARAM][4] = {{1, 2, 4, 0},    {1, 2, 4, 0},
                                          {16, 32, 64, 0}, {4, 8, 0, 0},
                                          {4, 8, 0, 0},    {32, 64, 128, 256}};
/* The starting point on a GPU (the blocking platforms/nvidia.prof uses). */
static const attn_cl_fused_tuning gpu_start = {
    .vw = 1, .nv = 1, .wg = 32, .tk = 32, .kb = 8, .cb = 8};

static int *field(attn_cl_fused_tuning *t, int p)
{
    switch (p) {
    case P_VW:
        return &t->vw;
    case P_NV:
        return &t->nv;
    case P_TK:
        return &t->tk;
    case P_KB:
        return &t->kb;
    case P_CB:
        return &t->cb;
    default:
        return &t->wg;
    }
}

/* The device name as a profile's device condition sees it: PoCL's driver
 * prefix dropped (profile.c drops it from the name, not from patterns),
 * no double quote. */
static void pattern_name(const char *name, char *out, size_t cap)
{
    static const char *const prefix[] = {"pthread-", "cpu-minimal-", "cpu-",
                                         "basic-", "tbb-"};
    size_t o = 0;
    while (*name == ' ')
        name++;
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (!strncasecmp(name, prefix[i], strlen(prefix[i]))) {
            name += strlen(prefix[i]);
            break;
        }
    for (; *name && *name != '"' && o + 1 < cap; name++)
        out[o++] = *name;
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

typedef struct bench {
    attn_cl_runtime *rt;
    attn_sdpa_desc d;
    attn_cl_tensors t;
    size_t n_o;
    float *o;         /* device result, read back */
    const float *ref; /* native result */
} bench;

/* One call, waited for; ATTN_OK or the error (err says why). */
static attn_status run_once(bench *b, attn_err *err)
{
    cl_event done = NULL;
    attn_status s = attn_cl_sdpa_fused(b->rt, &b->d, &b->t, b->rt->queue, 0,
                                       NULL, &done, err);
    if (s)
        return s;
    if (clWaitForEvents(1, &done) != CL_SUCCESS) {
        clReleaseEvent(done);
        snprintf(err->msg, sizeof err->msg, "the kernel failed");
        return ATTN_ERR_DEVICE;
    }
    clReleaseEvent(done);
    return ATTN_OK;
}

/* Runs candidate c: set, warm-up and check, then TUNE_REP timed runs. */
static void try_candidate(bench *b, cand *c, double flop)
{
    attn_err err = {{0}};
    double times[TUNE_REP], diff = 0.0;
    char what[96];
    attn_status s;
    describe(&c->t, what, sizeof what);
    printf("  %s  ", what);
    fflush(stdout);
    c->ok = 0;
    if ((s = attn_cl_fused_set_tuning(b->rt, &c->t, &err)) ||
        (s = run_once(b, &err))) {
        printf("skipped: %s: %s\n",
               s == ATTN_ERR_UNSUPPORTED ? "unsupported" : "failed", err.msg);
        return;
    }
    memset(b->o, 0xff, b->n_o * sizeof(float)); /* NaN: nothing stale */
    if (clEnqueueReadBuffer(b->rt->queue, b->t.o, CL_TRUE, 0,
                            b->n_o * sizeof(float), b->o, 0, NULL,
                            NULL) != CL_SUCCESS) {
        printf("skipped: failed: reading O\n");
        return;
    }
    for (size_t i = 0; i < b->n_o; i++) {
        double e = fabs((double)b->o[i] - (double)b->ref[i]);
        if (!(e <= diff)) /* NaN too */
            diff = isnan(e) ? INFINITY : e;
    }
    if (!(diff <= TUNE_TOL)) {
        printf("skipped: wrong: max |diff| %.3g > %.0e\n", diff, TUNE_TOL);
        return;
    }
    for (int r = 0; r < TUNE_REP; r++) {
        double t0 = now_s();
        if (run_once(b, &err) != ATTN_OK) {
            printf("skipped: failed: %s\n", err.msg);
            return;
        }
        times[r] = now_s() - t0;
    }
    qsort(times, TUNE_REP, sizeof times[0], cmp_double);
    c->gflops = flop / times[TUNE_REP / 2] * 1e-9;
    c->ok = 1;
    printf("%8.2f GFLOP/s  (max |diff| %.2g)\n", c->gflops, diff);
}

/* The native backend's O for the same inputs. */
static int native_reference(const attn_sdpa_desc *d, const float *q,
                            const float *k, const float *v, float *o)
{
    attn_options opt;
    attn_context *ctx = NULL;
    attn_status s;
    attn_options_init(&opt);
    opt.device = "native";
    unsetenv("ATTN_DEVICE"); /* it would override the option */
    if ((s = attn_context_create(&opt, &ctx)) == ATTN_OK)
        s = attn_sdpa(ctx, d, q, k, v, o, NULL);
    if (s)
        fprintf(stderr, "attn-tune: native backend: %s\n", attn_last_error());
    attn_context_destroy(ctx);
    return s == ATTN_OK ? 0 : -1;
}

static int write_profile(const char *dir, const attn_cl_device *dev,
                         const cand *def, const cand *best, char *path,
                         size_t cap)
{
    char norm[256], pat[256], tmp[4200], what[96];
    FILE *f;
    time_t t = time(NULL);
    struct tm tmv;
    pattern_name(dev->info.name, pat, sizeof pat);
    attn_cl_binary_name(pat, norm, sizeof norm);
    if (!norm[0])
        snprintf(norm, sizeof norm, "device");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "attn-tune: cannot create %s: %s\n", dir,
                strerror(errno));
        return -1;
    }
    if ((size_t)snprintf(path, cap, "%s/%s.prof", dir, norm) >= cap ||
        (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        fprintf(stderr, "attn-tune: path too long\n");
        return -1;
    }
    if (!(f = fopen(tmp, "w"))) {
        fprintf(stderr, "attn-tune: cannot write %s: %s\n", tmp,
                strerror(errno));
        return -1;
    }
    gmtime_r(&t, &tmv);
    fprintf(f,
            "# Written by attn-tune %s on %04d-%02d-%02d: cl/fused.cl "
            "blocking for\n",
            attn_version(), tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday);
    fprintf(f, "# %s (%s, driver %s).\n", dev->info.name, dev->info.platform,
            dev->info.driver_version);
    fprintf(f, "# B=%d H=%d N=%d d=%d f32, median of %d runs:\n", TUNE_B,
            TUNE_H, TUNE_N, TUNE_D, TUNE_REP);
    describe(&def->t, what, sizeof what);
    if (def->ok)
        fprintf(f, "#   default %s: %.2f GFLOP/s\n", what, def->gflops);
    else
        fprintf(f, "#   default %s: failed\n", what);
    describe(&best->t, what, sizeof what);
    fprintf(f, "#   best    %s: %.2f GFLOP/s\n", what, best->gflops);
    fprintf(f, "# Use: ATTN_PLATFORM_DIR=%s\n", dir);
    fprintf(f, "[device \"%s\"]\n", pat);
    fprintf(f, "fused.vw = %d\nfused.nv = %d\nfused.wg = %d\n", best->t.vw,
            best->t.nv, best->t.wg);
    fprintf(f, "fused.tk = %d\nfused.kb = %d\nfused.cb = %d\n", best->t.tk,
            best->t.kb, best->t.cb);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "attn-tune: cannot write %s: %s\n", path,
                strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

static void fill(float *x, size_t n, unsigned long long seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((double)(seed >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
    }
}

static int tune(const attn_cl_device *dev, const char *dir, int quick)
{
    static cand c[MAX_CAND];
    attn_logger log = {ATTN_LOG_WARN, NULL, NULL};
    attn_err err = {{0}};
    bench b;
    const size_t n = (size_t)TUNE_B * TUNE_H * TUNE_N * TUNE_D;
    const double flop =
        4.0 * TUNE_B * TUNE_H * (double)TUNE_N * TUNE_N * TUNE_D;
    float *q = malloc(n * sizeof(float)), *k = malloc(n * sizeof(float)),
          *v = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float)),
          *o = malloc(n * sizeof(float));
    cl_mem m[4] = {NULL, NULL, NULL, NULL};
    int gpu =
        dev->info.kind == ATTN_DEVICE_GPU || dev->info.kind == ATTN_DEVICE_IGPU;
    size_t n_c = 0, best = 0, passed = 0;
    int rc = 1;
    char path[4096];
    double t0 = now_s();
    memset(&b, 0, sizeof b);
    if (!q || !k || !v || !ref || !o) {
        fprintf(stderr, "attn-tune: out of memory\n");
        goto out;
    }
    b.d.batch = TUNE_B;
    b.d.heads_q = b.d.heads_kv = TUNE_H;
    b.d.seq_q = b.d.seq_kv = TUNE_N;
    b.d.head_dim = b.d.head_dim_v = TUNE_D;
    b.d.dtype = ATTN_F32;
    fill(q, n, 1);
    fill(k, n, 2);
    fill(v, n, 3);
    if (native_reference(&b.d, q, k, v, ref))
        goto out;
    if (attn_cl_runtime_create(dev, NULL, &log, &b.rt, &err)) {
        fprintf(stderr, "attn-tune: %s: %s\n", dev->info.name, err.msg);
        goto out;
    }
    for (int i = 0; i < 4; i++) {
        cl_int e;
        m[i] = clCreateBuffer(b.rt->context,
                              i < 3 ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR
                                    : CL_MEM_WRITE_ONLY,
                              n * sizeof(float),
                              i == 0   ? q
                              : i == 1 ? k
                              : i == 2 ? v
                                       : NULL,
                              &e);
        if (e != CL_SUCCESS) {
            fprintf(stderr, "attn-tune: clCreateBuffer: %s\n",
                    attn_cl_error_name(e));
            goto out;
        }
    }
    b.t.q = m[0];
    b.t.k = m[1];
    b.t.v = m[2];
    b.t.o = m[3];
    b.n_o = n;
    b.o = o;
    b.ref = ref;
    printf("attn-tune: %s (%s), B=%d H=%d N=%d d=%d f32%s\n", dev->info.name,
           dev->info.platform, TUNE_B, TUNE_H, TUNE_N, TUNE_D,
           quick ? ", quick" : "");
    attn_cl_fused_tuning_default(&c[0].t);
    if (gpu) {
        attn_cl_fused_tuning t = c[0].t;
        t.vw = gpu_start.vw;
        t.nv = gpu_start.nv;
        t.wg = gpu_start.wg;
        t.tk = gpu_start.tk;
        t.kb = gpu_start.kb;
        t.cb = gpu_start.cb;
        c[0].t = t;
    }
    try_candidate(&b, &c[n_c++], flop);
    if (quick) { /* two fixed neighbours of the default */
        static const int cpu_alt[2][4] = {{16, 2, 64, 4}, {16, 4, 128, 8}};
        static const int gpu_alt[2][4] = {{1, 2, 32, 8}, {2, 1, 16, 8}};
        const int(*alt)[4] = gpu ? gpu_alt : cpu_alt;
        for (int i = 0; i < 2; i++) {
            c[n_c].t = c[0].t;
            c[n_c].t.vw = alt[i][0];
            c[n_c].t.nv = alt[i][1];
            c[n_c].t.tk = alt[i][2];
            c[n_c].t.kb = alt[i][3];
            try_candidate(&b, &c[n_c++], flop);
        }
    } else {
        /* Coordinate descent from the best so far (the default first, or
         * the first candidate that passes). */
        const int(*space)[4] = gpu ? gpu_space : cpu_space;
        for (int p = 0; p < N_PARAM; p++) {
            for (int j = 0; j < 4 && space[p][j]; j++) {
                attn_cl_fused_tuning t = c[best].t;
                int dup = 0;
                *field(&t, p) = space[p][j];
                for (size_t i = 0; i < n_c; i++)
                    dup |= same_tuning(&t, &c[i].t);
                if (dup || n_c >= MAX_CAND)
                    continue;
                c[n_c].t = t;
                try_candidate(&b, &c[n_c++], flop);
                if (c[n_c - 1].ok &&
                    (!c[best].ok || c[n_c - 1].gflops > c[best].gflops))
                    best = n_c - 1;
            }
        }
    }
    best = 0;
    for (size_t i = 0; i < n_c; i++) {
        if (c[i].ok) {
            passed++;
            if (!c[best].ok || c[i].gflops > c[best].gflops)
                best = i;
        }
    }
    if (!passed) {
        fprintf(stderr, "attn-tune: no candidate passed\n");
        goto out;
    }
    if (write_profile(dir, dev, &c[0], &c[best], path, sizeof path))
        goto out;
    {
        char what[96];
        describe(&c[best].t, what, sizeof what);
        printf("%zu of %zu passed in %.1f s; default %.2f GFLOP/s, best "
               "%.2f GFLOP/s (%s)\nwrote %s\n",
               passed, n_c, now_s() - t0, c[0].ok ? c[0].gflops : 0.0,
               c[best].gflops, what, path);
    }
    rc = 0;
out:
    for (int i = 0; i < 4; i++)
        if (m[i])
            clReleaseMemObject(m[i]);
    attn_cl_runtime_destroy(b.rt);
    free(q);
    free(k);
    free(v);
    free(ref);
    free(o);
    return rc;
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *dir = ".";
    int quick = 0, rc;
    attn_cl_device *devs = NULL;
    attn_device_info *infos = NULL;
    attn_selection sel;
    attn_err err = {{0}};
    size_t n = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "-o")) &&
                   i + 1 < argc) {
            if (argv[i][1] == 'd')
                spec = argv[++i];
            else
                dir = argv[++i];
        } else {
            fprintf(stderr, "attn-tune: unknown or incomplete argument '%s'\n",
                    argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!spec)
        spec = getenv("ATTN_DEVICE");
    if (!spec || !*spec)
        spec = "auto";
    if (!strcasecmp(spec, "native")) {
        fprintf(stderr, "attn-tune: tunes OpenCL devices; \"native\" is not "
                        "one\n");
        return 2;
    }
    if (!*dir) {
        fprintf(stderr, "attn-tune: -o needs a folder\n");
        return 2;
    }
    if (attn_cl_discover(&devs, &n, &err) != ATTN_OK || n == 0) {
        fprintf(stderr, "attn-tune: no OpenCL device on this machine%s%s\n",
                err.msg[0] ? ": " : "", err.msg);
        free(devs);
        return 1;
    }
    if (!(infos = calloc(n, sizeof *infos))) {
        free(devs);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        infos[i] = devs[i].info;
    /* native_beats_cpu 0: "auto" means the best usable OpenCL device. */
    if (attn_cl_select(infos, n, spec, 0, &sel, &err) != ATTN_OK ||
        sel.native || sel.count == 0) {
        fprintf(stderr, "attn-tune: no usable OpenCL device for \"%s\"%s%s\n",
                spec, err.msg[0] ? ": " : "", err.msg);
        free(infos);
        free(devs);
        return 1;
    }
    if (sel.count > 1)
        printf("attn-tune: \"%s\" names %zu devices; tuning the first\n", spec,
               sel.count);
    rc = tune(&devs[sel.index[0]], dir, quick);
    free(infos);
    free(devs);
    return rc;
}
