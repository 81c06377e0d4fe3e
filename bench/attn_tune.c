/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-tune: searches the parameters of one OpenCL kernel variant on one
 * device, checks every candidate against the native backend and writes a
 * platform profile (platforms/README.md) that the library loads from
 * ATTN_PLATFORM_DIR.
 *
 *     attn-tune [-d SPEC] [-k VARIANT] [-o DIR] [--quick] [--help]
 *
 * (the options and --help: the table below, through src/cli/cli_options.c)
 *
 * The search is the same for every variant: it reads the variant's
 * parameter schema (attn-probe --kernels lists it), starts from the
 * device's current values (its profile's, or the defaults) and changes one
 * build parameter at a time to a quarter, half, double or four times its
 * value (within the schema's range), keeping a change when the kernel gets
 * faster (coordinate descent).  Each candidate runs through the public API
 * with the variant forced (options.kernel) on device buffers
 * (attn_sdpa_cl), is checked against the native result and timed.
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

#include "api/tools.h"
#include "attn/attn_cl.h"
#include "cli/cli_options.h"

#define TUNE_B   1
#define TUNE_H   8
#define TUNE_N   1024
#define TUNE_D   64
#define TUNE_TOL 1e-4
/* The matrix-unit variants (mma, amdmm) run at TF32, which the context
 * must ask: 10 mantissa bits on the products of d = 64 */
#define TUNE_TOL_TF32 4e-3
/* splitkv takes at most 64 query rows per kv head: a decode-sized block */
#define TUNE_SPLIT_ROWS 16
#define TUNE_REP        3
#define MAX_CAND        128

typedef struct cand {
    int v[16];
    int ok;        /* 1: ran and matched the native result */
    double gflops; /* median of TUNE_REP runs */
} cand;

/* clang-format off */
static const cli_option options[] = {
    {"device", 'd', "SPEC",
     "OpenCL device as ATTN_DEVICE names it (\"P:D\", \"cpu\", \"gpu\",\n"
     "a name substring); default ATTN_DEVICE, else the best\n"
     "usable device"},
    {"kernel", 'k', "VARIANT",
     "the kernel variant to tune (attn-probe --kernels lists\n"
     "them); default \"fused\""},
    {"output", 'o', "DIR", "where <device>.prof is written (default .)"},
    {"quick", 'q', NULL, "a few candidates only"},
    {NULL, 0, NULL, NULL}};

static const cli_section sections[] = {
    {"Exit status",
     "0 a profile was written; 1 no OpenCL device, no candidate passed or\n"
     "the file could not be written; 2 on a usage error."},
    {"Environment",
     "ATTN_DEVICE is the device when -d is not given; ATTN_PLATFORM_DIR=DIR\n"
     "makes the library load the profile written."},
    {"See also", "attn-probe(1), attn-bench(1)"},
    {NULL, NULL}};
/* clang-format on */

typedef struct tune_args {
    const char *spec, *dir, *kernel;
    int quick;
} tune_args;

static int on_option(void *user, int key, const char *value)
{
    tune_args *a = user;
    if (key == 'd')
        a->spec = value;
    else if (key == 'k')
        a->kernel = value;
    else if (key == 'o')
        a->dir = value;
    else if (key == 'q')
        a->quick = 1;
    else
        return -1;
    return 0;
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

/* "vw=16 nv=4 ..." over the build parameters. */
static void describe(const attn_tool_variant *v, const int *x, char *buf,
                     size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < v->n_params && used < cap; i++) {
        int w;
        if (v->params[i].runtime)
            continue;
        w = snprintf(buf + used, cap - used, "%s%s=%d", used ? " " : "",
                     v->params[i].name, x[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* One problem on the device's buffers and its native result. */
typedef struct bench {
    attn_context *ctx;
    const attn_tool_variant *var;
    attn_sdpa_desc d;
    cl_command_queue queue;
    cl_mem m[4]; /* q, k, v, o */
    size_t n_o;
    float *o;         /* device result, read back */
    const float *ref; /* native result */
    double tol;       /* the largest |o - ref| a candidate may have */
} bench;

/* Query rows the variant is timed at: 1 for decode, a block splitkv
 * takes, else TUNE_N. */
static int tune_rows(const attn_tool_variant *var)
{
    return !strcmp(var->name, "decode")    ? 1
           : !strcmp(var->name, "splitkv") ? TUNE_SPLIT_ROWS
                                           : TUNE_N;
}

/* 1 for the matrix-unit variants of F32 storage, which run at TF32 only
 * (attn.h: at EXACT they decline every call). */
static int tune_tf32(const attn_tool_variant *var)
{
    return !strcmp(var->name, "mma") || !strcmp(var->name, "amdmm");
}

/* One call, waited for; ATTN_OK or the error (why says it). */
static attn_status run_once(bench *b, char *why, size_t cap)
{
    cl_event done = NULL;
    attn_status s = attn_sdpa_cl(b->ctx, &b->d, b->m[0], b->m[1], b->m[2],
                                 b->m[3], NULL, b->queue, 0, NULL, &done);
    if (s) {
        snprintf(why, cap, "%s", attn_context_last_error(b->ctx));
        return s;
    }
    if (clWaitForEvents(1, &done) != CL_SUCCESS) {
        clReleaseEvent(done);
        snprintf(why, cap, "the kernel failed");
        return ATTN_ERR_DEVICE;
    }
    clReleaseEvent(done);
    return ATTN_OK;
}

/* Runs candidate c: set, warm-up and check, then TUNE_REP timed runs. */
static void try_candidate(bench *b, cand *c, double flop)
{
    double times[TUNE_REP], diff = 0.0;
    char what[256], why[512] = "";
    attn_status s;
    describe(b->var, c->v, what, sizeof what);
    printf("  %s  ", what);
    fflush(stdout);
    c->ok = 0;
    if ((s = attn_tool_set_tuning(b->ctx, b->var->name, c->v, why,
                                  sizeof why)) ||
        (s = run_once(b, why, sizeof why))) {
        printf("skipped: %s: %s\n",
               s == ATTN_ERR_UNSUPPORTED        ? "unsupported"
               : s == ATTN_ERR_INVALID_ARGUMENT ? "invalid"
                                                : "failed",
               why);
        return;
    }
    memset(b->o, 0xff, b->n_o * sizeof(float)); /* NaN: nothing stale */
    if (clEnqueueReadBuffer(b->queue, b->m[3], CL_TRUE, 0,
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
    if (!(diff <= b->tol)) {
        printf("skipped: wrong: max |diff| %.3g > %.0e\n", diff, b->tol);
        return;
    }
    for (int r = 0; r < TUNE_REP; r++) {
        double t0 = now_s();
        if (run_once(b, why, sizeof why) != ATTN_OK) {
            printf("skipped: failed: %s\n", why);
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
    if ((s = attn_context_create(&opt, &ctx)) == ATTN_OK)
        s = attn_sdpa(ctx, d, q, k, v, o, NULL);
    if (s)
        fprintf(stderr, "attn-tune: native backend: %s\n", attn_last_error());
    attn_context_destroy(ctx);
    return s == ATTN_OK ? 0 : -1;
}

/* The "<variant>.<param> = value" lines of another variant in the
 * profile an earlier run wrote at path (none when there is none), copied
 * to f: tuning one variant keeps the others' values. */
static void keep_others(const char *path, const char *variant, FILE *f)
{
    char line[512];
    const size_t vl = strlen(variant);
    int first = 1;
    FILE *old = fopen(path, "r");
    if (!old)
        return;
    while (fgets(line, sizeof line, old)) {
        const char *dot = strchr(line, '.');
        size_t n = strspn(line, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (n == 0 || line + n != dot || !strchr(dot, '=') ||
            (n == vl && !strncmp(line, variant, vl)))
            continue;
        if (first)
            fprintf(f, "# kept from the earlier profile:\n");
        first = 0;
        fputs(line, f);
        if (!strchr(line, '\n'))
            fputc('\n', f);
    }
    fclose(old);
}

static int write_profile(const char *dir, const attn_device_info *dev,
                         const attn_tool_variant *var, const cand *def,
                         const cand *best, char *path, size_t cap)
{
    char norm[256], pat[256], tmp[4200], what[256];
    FILE *f;
    time_t t = time(NULL);
    struct tm tmv;
    attn_tool_device_pattern(dev->name, pat, sizeof pat);
    attn_tool_file_name(pat, norm, sizeof norm);
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
            "# Written by attn-tune %s on %04d-%02d-%02d: kernel variant %s "
            "for\n",
            attn_version(), tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
            var->name);
    fprintf(f, "# %s (%s, driver %s).\n", dev->name, dev->platform,
            dev->driver_version);
    fprintf(f, "# B=%d H=%d N=%d seq_q=%d d=%d f32%s, median of %d runs:\n",
            TUNE_B, TUNE_H, TUNE_N, tune_rows(var), TUNE_D,
            tune_tf32(var) ? " at TF32" : "", TUNE_REP);
    describe(var, def->v, what, sizeof what);
    if (def->ok)
        fprintf(f, "#   start %s: %.2f GFLOP/s\n", what, def->gflops);
    else
        fprintf(f, "#   start %s: failed\n", what);
    describe(var, best->v, what, sizeof what);
    fprintf(f, "#   best  %s: %.2f GFLOP/s\n", what, best->gflops);
    fprintf(f, "# Use: ATTN_PLATFORM_DIR=%s\n", dir);
    fprintf(f, "[device \"%s\"]\n", pat);
    for (int i = 0; i < var->n_params; i++)
        if (!var->params[i].runtime)
            fprintf(f, "%s.%s = %d\n", var->name, var->params[i].name,
                    best->v[i]);
    keep_others(path, var->name, f);
    if (fflush(f) != 0 || ferror(f) || fclose(f) != 0 ||
        rename(tmp, path) != 0) {
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

static int same(const attn_tool_variant *v, const int *a, const int *b)
{
    for (int i = 0; i < v->n_params; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

/* Candidate values of parameter p around x: x/4, x/2, 2x, 4x in range
 * (quick: x/2 and 2x); for one of a few alternatives, every other value
 * of its range (at most 4). */
static int neighbours(const attn_tool_param *p, int x, int quick, int *out)
{
    static const int num[4] = {1, 1, 2, 4}, den[4] = {4, 2, 1, 1};
    int n = 0;
    if (p->choice) {
        for (int y = p->min; y <= p->max && n < 4; y++)
            if (y != x)
                out[n++] = y;
        return n;
    }
    for (int i = quick ? 1 : 0; i < (quick ? 3 : 4); i++) {
        const long y = (long)x * num[i] / den[i];
        if (y != x && y >= p->min && y <= p->max &&
            (long)x * num[i] % den[i] == 0)
            out[n++] = (int)y;
    }
    return n;
}

/* The buffers of b on its context, with q, k, v written. */
static int make_buffers(bench *b, const float *q, const float *k,
                        const float *v)
{
    cl_context cl_ctx;
    const float *src[3] = {q, k, v};
    const size_t n_in[3] = {
        (size_t)b->d.batch * b->d.heads_q * b->d.seq_q * b->d.head_dim,
        (size_t)b->d.batch * b->d.heads_kv * b->d.seq_kv * b->d.head_dim,
        (size_t)b->d.batch * b->d.heads_kv * b->d.seq_kv * b->d.head_dim_v};
    if (attn_context_cl_objects(b->ctx, &cl_ctx, NULL, &b->queue) != ATTN_OK)
        return -1;
    for (int i = 0; i < 4; i++) {
        cl_int e;
        const size_t n = i < 3 ? n_in[i] : b->n_o;
        b->m[i] = clCreateBuffer(
            cl_ctx,
            i < 3 ? CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR : CL_MEM_WRITE_ONLY,
            n * sizeof(float), i < 3 ? (void *)src[i] : NULL, &e);
        if (e != CL_SUCCESS) {
            b->m[i] = NULL;
            fprintf(stderr, "attn-tune: clCreateBuffer failed (%d)\n", e);
            return -1;
        }
    }
    return 0;
}

static int tune(const char *spec, const attn_device_info *dev,
                const attn_tool_variant *var, const char *dir, int quick)
{
    static cand c[MAX_CAND];
    attn_options opt;
    bench b;
    const int rows = tune_rows(var);
    const size_t nq = (size_t)TUNE_B * TUNE_H * (size_t)rows * TUNE_D;
    const size_t nkv = (size_t)TUNE_B * TUNE_H * TUNE_N * TUNE_D;
    const double flop = 4.0 * TUNE_B * TUNE_H * (double)rows * TUNE_N * TUNE_D;
    float *q = malloc(nq * sizeof(float)), *k = malloc(nkv * sizeof(float)),
          *v = malloc(nkv * sizeof(float)), *ref = malloc(nq * sizeof(float)),
          *o = malloc(nq * sizeof(float));
    size_t n_c = 0, best = 0, passed = 0;
    int rc = 1;
    char path[4096], why[512];
    double t0 = now_s();
    memset(&b, 0, sizeof b);
    if (!q || !k || !v || !ref || !o) {
        fprintf(stderr, "attn-tune: out of memory\n");
        goto out;
    }
    b.var = var;
    b.d.batch = TUNE_B;
    b.d.heads_q = b.d.heads_kv = TUNE_H;
    b.d.seq_q = rows;
    b.d.seq_kv = TUNE_N;
    b.d.head_dim = b.d.head_dim_v = TUNE_D;
    b.d.dtype = ATTN_F32;
    fill(q, nq, 1);
    fill(k, nkv, 2);
    fill(v, nkv, 3);
    if (native_reference(&b.d, q, k, v, ref))
        goto out;
    attn_options_init(&opt);
    opt.device = spec;
    opt.kernel = var->name;
    opt.allow_fallback = 0;
    if (tune_tf32(var)) {
        opt.precision = ATTN_PRECISION_TF32;
        b.tol = TUNE_TOL_TF32;
    } else {
        b.tol = TUNE_TOL;
    }
    if (attn_context_create(&opt, &b.ctx) != ATTN_OK) {
        fprintf(stderr, "attn-tune: %s: %s\n", dev->name, attn_last_error());
        goto out;
    }
    b.n_o = nq;
    b.o = o;
    b.ref = ref;
    if (make_buffers(&b, q, k, v))
        goto out;
    printf("attn-tune: %s (%s), variant %s, B=%d H=%d N=%d (seq_q %d) d=%d "
           "f32%s%s\n",
           dev->name, dev->platform, var->name, TUNE_B, TUNE_H, TUNE_N, rows,
           TUNE_D, tune_tf32(var) ? " at TF32" : "", quick ? ", quick" : "");
    /* The start: the device's current values (profile or defaults). */
    if (attn_tool_get_tuning(b.ctx, var->name, c[0].v, why, sizeof why)) {
        fprintf(stderr, "attn-tune: %s\n", why);
        goto out;
    }
    try_candidate(&b, &c[n_c++], flop);
    /* Coordinate descent from the best so far, one build parameter at a
     * time (quick: the first three, x/2 and 2x). */
    for (int p = 0, tried = 0; p < var->n_params && (!quick || tried < 3);
         p++) {
        int vals[4], nv;
        if (var->params[p].runtime)
            continue;
        tried++;
        nv = neighbours(&var->params[p], c[best].v[p], quick, vals);
        for (int j = 0; j < nv && n_c < MAX_CAND; j++) {
            int dup = 0;
            c[n_c] = c[best];
            c[n_c].v[p] = vals[j];
            for (size_t i = 0; i < n_c; i++)
                dup |= same(var, c[n_c].v, c[i].v);
            if (dup)
                continue;
            try_candidate(&b, &c[n_c++], flop);
            if (c[n_c - 1].ok &&
                (!c[best].ok || c[n_c - 1].gflops > c[best].gflops))
                best = n_c - 1;
        }
    }
    for (size_t i = 0; i < n_c; i++)
        passed += c[i].ok != 0;
    if (!passed || !c[best].ok) {
        fprintf(stderr, "attn-tune: no candidate passed\n");
        goto out;
    }
    if (write_profile(dir, dev, var, &c[0], &c[best], path, sizeof path))
        goto out;
    {
        char what[256];
        describe(var, c[best].v, what, sizeof what);
        printf("%zu of %zu passed in %.1f s; start %.2f GFLOP/s, best "
               "%.2f GFLOP/s (%s)\nwrote %s\n",
               passed, n_c, now_s() - t0, c[0].ok ? c[0].gflops : 0.0,
               c[best].gflops, what, path);
    }
    rc = 0;
out:
    for (int i = 0; i < 4; i++)
        if (b.m[i])
            clReleaseMemObject(b.m[i]);
    attn_context_destroy(b.ctx);
    free(q);
    free(k);
    free(v);
    free(ref);
    free(o);
    return rc;
}

int main(int argc, char **argv)
{
    char about[512];
    const cli_spec cli = {"attn-tune",
                          "search a kernel variant's parameters for one "
                          "OpenCL device",
                          attn_version(),
                          "[options]",
                          about,
                          options,
                          sections};
    tune_args a = {NULL, ".", "fused", 0};
    const char *spec, *dir, *kernel;
    int quick, rc, vi = -1;
    attn_tool_device *devs = NULL;
    attn_tool_selection sel;
    attn_tool_variant var;
    char msg[512] = "", one[32];
    size_t n = 0;

    snprintf(about, sizeof about,
             "Times the variant at B=%d H=%d N=%d d=%d f32 (seq_q 1 for "
             "\"decode\", %d for\n\"splitkv\"; mma and amdmm at TF32) for "
             "each candidate, checks it against the\nnative backend and "
             "writes the fastest as a profile (use it with\n"
             "ATTN_PLATFORM_DIR=DIR). The profile keeps the values of the "
             "other variants\nan earlier run wrote for the device.",
             TUNE_B, TUNE_H, TUNE_N, TUNE_D, TUNE_SPLIT_ROWS);
    if ((rc = cli_parse(&cli, argc, argv, on_option, &a)) >= 0)
        return rc;
    spec = a.spec;
    dir = a.dir;
    kernel = a.kernel;
    quick = a.quick;
    for (int i = 0; attn_kernel_name(i); i++)
        if (!strcasecmp(attn_kernel_name(i), kernel))
            vi = i;
    if (vi < 0 || attn_tool_variant_info(vi, &var) != ATTN_OK) {
        fprintf(stderr,
                "attn-tune: \"%s\" is not a forward kernel variant "
                "(attn-probe --kernels lists them; the backward's bwd_* have "
                "no parameters to tune)\n",
                kernel);
        return 2;
    }
    if (!strcmp(var.name, "xmx")) {
        fprintf(stderr, "attn-tune: xmx takes F16 and BF16 storage only, and "
                        "attn-tune times F32: set its values in a profile "
                        "by hand\n");
        return 2;
    }
    if (!spec) {
        const char *env = getenv("ATTN_DEVICE");
        char why[256];
        /* as attn_context_create: a value that is no spec is a warning and
         * the default device is used */
        if (env && *env && attn_tool_check_spec(env, why, sizeof why)) {
            fprintf(stderr,
                    "attn-tune: ATTN_DEVICE=\"%.64s\" is not a device spec "
                    "(%s); ignored, as libattn ignores it: device \"auto\"\n",
                    env, why);
            env = NULL;
        }
        spec = env;
    }
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
    if (attn_tool_discover(&devs, &n, msg, sizeof msg) != ATTN_OK || n == 0) {
        fprintf(stderr, "attn-tune: no OpenCL device on this machine%s%s\n",
                msg[0] ? ": " : "", msg);
        free(devs);
        return 1;
    }
    /* native_beats_cpu 0: "auto" means the best usable OpenCL device. */
    if (attn_tool_select(devs, n, spec, 0, &sel, msg, sizeof msg) != ATTN_OK ||
        sel.native || sel.count == 0) {
        fprintf(stderr, "attn-tune: no usable OpenCL device for \"%s\"%s%s\n",
                spec, msg[0] ? ": " : "", msg);
        free(devs);
        return 1;
    }
    if (sel.count > 1)
        printf("attn-tune: \"%s\" names %zu devices; tuning the first\n", spec,
               sel.count);
    /* The one device, by index, and the variant asked for: the environment
     * would override the options. */
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_KERNEL");
    snprintf(one, sizeof one, "%d:%d", devs[sel.index[0]].info.platform_index,
             devs[sel.index[0]].info.device_index);
    rc = tune(one, &devs[sel.index[0]].info, &var, dir, quick);
    free(devs);
    return rc;
}
