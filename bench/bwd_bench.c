/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bwd-bench: the backward pass (attn_sdpa_backward) against the
 * forward (attn_sdpa) it differentiates, B=1 H=8 d=64 (F32, non-causal,
 * seq_q = seq_kv = N) unless told otherwise, on the native backend or,
 * with --device (e.g. cpu: PoCL), on an OpenCL device with fallback off
 * (--kernel forces a variant by name, forward or backward: bwd_ref,
 * bwd_fused, bwd_tiled; --path fused|unfused).  Forward and backward calls
 * alternate, after one warm-up of each; the medians and their ratio are
 * printed per N.  When torch imports in --python, PyTorch's CPU SDPA
 * forward and backward (bench/peer_torch_bwd.py, a process kept up per
 * case, on as many threads) take their turn in the same loop, and their
 * medians are printed below.  --rss N runs one forward and one backward at
 * N and prints the process's peak resident set (getrusage ru_maxrss) and
 * the bytes of the tensors themselves (q, k, v, o, dO, dq, dk, dv, lse).
 * --resident (with --device) keeps the tensors in device buffers: the
 * forward through attn_sdpa_cl_buffers and the backward through
 * attn_sdpa_backward_cl_buffers on a queue of the bench's own, each timed
 * from its enqueue to its event's completion (no transfer in the times);
 * after the timed runs the gradients are read back and compared with
 * attn_sdpa_backward's on host memory (the largest difference printed).
 * --torch-cuda runs the torch peer on CUDA tensors instead, timed with CUDA
 * events (also with --resident: the GPU figures side by side).
 *
 *   attn-bwd-bench [--n N,N,...] [--reps R] [--threads T] [--heads H]
 *                  [--head-dim D] [--causal | --both] [--python PATH]
 *                  [--no-torch] [--cpu-time] [--dbias full|shared|key]
 *                  [--rss N] [--device SPEC] [--kernel NAME]
 *                  [--path fused|unfused] [--resident] [--torch-cuda]
 *
 * --dbias gives the calls a bias of that kind (FULL [1, H, N, N], SHARED
 * [N, N], KEY [1, N]) and asks the backward for its gradient (the torch
 * peer runs without one).
 * --cpu-time times the native calls by the process's CPU time instead of
 * the wall clock (with --threads 1, the work of the one thread).
 */
#define _DEFAULT_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef ATTN_BENCH_HAVE_CL
#include "attn/attn_cl.h"
#else
#include "attn/attn.h"
#endif
#include "bench.h"

#ifndef ATTN_BENCH_SOURCE_DIR
#define ATTN_BENCH_SOURCE_DIR "."
#endif

/* The torch peer of one case: its process, or why there is none. */
struct torch_peer {
    child_proc c;
    int up;
    char impl[128], why[512];
};

/* peer_torch_bwd.py beside the executable, else in the source tree. */
static const char *find_script(char *buf, size_t len)
{
    static const char name[] = "peer_torch_bwd.py";
    char exe[PATH_MAX];
    struct stat st;
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        char *slash;
        exe[l] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/%s", exe, name);
            if (stat(buf, &st) == 0)
                return buf;
        }
    }
    snprintf(buf, len, "%s/%s", ATTN_BENCH_SOURCE_DIR, name);
    return stat(buf, &st) == 0 ? buf : NULL;
}

/* Starts the peer for one case; on failure p->up is 0 and p->why says
 * why. */
static void torch_start(struct torch_peer *p, const char *python, int n,
                        int causal, int heads, int hd, int threads, int cuda)
{
    static const char *const ready[] = {"READY", "SKIP", "ERROR", NULL};
    char script[PATH_MAX + 32], sn[16], sc[4], sh[16], sd[16], st[16];
    char line[512], last[512] = "";
    const char *argv[13];
    int a = 0;

    memset(p, 0, sizeof *p);
    if (!find_script(script, sizeof script)) {
        snprintf(p->why, sizeof p->why, "peer_torch_bwd.py not found");
        return;
    }
    snprintf(sn, sizeof sn, "%d", n);
    snprintf(sc, sizeof sc, "%d", causal);
    snprintf(sh, sizeof sh, "%d", heads);
    snprintf(sd, sizeof sd, "%d", hd);
    snprintf(st, sizeof st, "%d", threads);
    argv[a++] = python;
    argv[a++] = script;
    argv[a++] = sn;
    argv[a++] = sc;
    argv[a++] = "--heads";
    argv[a++] = sh;
    argv[a++] = "--head-dim";
    argv[a++] = sd;
    argv[a++] = "--threads";
    argv[a++] = st;
    if (cuda)
        argv[a++] = "--cuda";
    argv[a] = NULL;
    if (child_start(&p->c, argv, NULL, 1, p->why, sizeof p->why) != 0)
        return;
    if (child_answer(&p->c, ready, line, sizeof line, last, sizeof last) != 0)
        snprintf(p->why, sizeof p->why, "the peer exited: %.400s", last);
    else if (strncmp(line, "READY", 5) != 0)
        snprintf(p->why, sizeof p->why, "%.500s", line);
    else {
        util_field(line, "impl=", p->impl, sizeof p->impl);
        p->up = 1;
        return;
    }
    child_wait(&p->c);
}

/* One call of the peer: 0 with its forward and backward times (s). */
static int torch_run(struct torch_peer *p, double *fwd, double *bwd)
{
    static const char *const answers[] = {"TIME", "ERROR", NULL};
    char line[512], last[512] = "", f[64], b[64];
    if (!p->up)
        return -1;
    if (fputs("run\n", p->c.to) < 0 || fflush(p->c.to) != 0 ||
        child_answer(&p->c, answers, line, sizeof line, last, sizeof last) !=
            0 ||
        strncmp(line, "TIME", 4) != 0) {
        snprintf(p->why, sizeof p->why, "%.500s", last[0] ? last : line);
        p->up = 0;
        child_wait(&p->c);
        return -1;
    }
    util_field(line, "fwd_ms=", f, sizeof f);
    util_field(line, "bwd_ms=", b, sizeof b);
    *fwd = 1e-3 * atof(f);
    *bwd = 1e-3 * atof(b);
    return 0;
}

static void torch_stop(struct torch_peer *p)
{
    if (p->up) {
        fputs("quit\n", p->c.to);
        child_wait(&p->c);
    }
    p->up = 0;
}

/* The clock of the native timings: wall (CLOCK_MONOTONIC) or, with
 * --cpu-time, the process's CPU time (all its threads), which other
 * work on a shared machine disturbs less. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, cmp);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static float *rnd(size_t n, unsigned *seed)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; x && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        x[i] = (float)(*seed >> 8) / 16777216.0f - 0.5f;
    }
    return x;
}

/* What one case runs with. */
struct bench_cfg {
    int heads, hd, reps, rss, threads, resident;
    int cuda;            /* the torch peer on CUDA tensors (--torch-cuda) */
    const char *python;  /* NULL: no torch peer */
    attn_bias_kind bias; /* with --dbias: a bias, and its gradient asked */
};

#ifdef ATTN_BENCH_HAVE_CL
/* The forward's and the backward's tensors in device buffers of ctx's
 * cl_context; NULL members where creating one failed. */
struct dev_bufs {
    cl_command_queue queue;
    cl_mem m[9]; /* q, k, v, o, lse, dO, dq, dk, dv */
    cl_mem dbias;
};

static void dev_free(struct dev_bufs *b)
{
    for (int i = 0; i < 9; i++)
        if (b->m[i])
            clReleaseMemObject(b->m[i]);
    if (b->dbias)
        clReleaseMemObject(b->dbias);
    if (b->queue)
        clReleaseCommandQueue(b->queue);
}

/* Waits for ev, releases it: 0, or 1 when it failed. */
static int ev_wait(cl_event ev)
{
    cl_int st = -1;
    int bad = clWaitForEvents(1, &ev) != CL_SUCCESS ||
              clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st,
                             &st, NULL) != CL_SUCCESS ||
              st != CL_COMPLETE;
    clReleaseEvent(ev);
    return bad;
}

/* --resident: the calls of run() on device buffers; tf, tb get the
 * times.  host: the tensors as run() made them (g's gradients are
 * attn_sdpa_backward's on host memory afterwards); *diff the largest
 * difference of the device's gradients from those.  0, or 1 on failure. */
static int run_resident(attn_context *ctx, const attn_sdpa_desc *d,
                        attn_sdpa_grad *g, size_t e, size_t nb, int reps,
                        double *tf, double *tb, double *diff)
{
    const size_t rows = (size_t)d->heads_q * (size_t)d->seq_q;
    const size_t bytes[9] = {e * 4, e * 4, e * 4, e * 4, rows * 4,
                             e * 4, e * 4, e * 4, e * 4};
    const void *host[9] = {g->q,   g->k, g->v, NULL, NULL,
                           g->d_o, NULL, NULL, NULL};
    attn_cl_buffers fb = ATTN_CL_BUFFERS_INIT;
    attn_cl_grad_buffers gb = ATTN_CL_GRAD_BUFFERS_INIT;
    struct dev_bufs b;
    cl_context cx = NULL;
    cl_device_id dev = NULL;
    cl_int rc = CL_SUCCESS;
    float *got = malloc(e * 4);
    int bad = !got;
    memset(&b, 0, sizeof b);
    if (bad || attn_context_cl_objects(ctx, &cx, &dev, NULL) != ATTN_OK) {
        fprintf(stderr, "--resident: the context runs on no OpenCL device\n");
        free(got);
        return 1;
    }
    b.queue = clCreateCommandQueue(cx, dev, 0, &rc);
    for (int i = 0; i < 9 && rc == CL_SUCCESS; i++)
        b.m[i] = clCreateBuffer(
            cx, CL_MEM_READ_WRITE | (host[i] ? CL_MEM_COPY_HOST_PTR : 0),
            bytes[i], (void *)host[i], &rc);
    if (rc == CL_SUCCESS && nb)
        b.dbias = clCreateBuffer(cx, CL_MEM_READ_WRITE, nb * 4, NULL, &rc);
    bad = rc != CL_SUCCESS;
    fb.q = b.m[0], fb.k = b.m[1], fb.v = b.m[2], fb.o = b.m[3];
    fb.lse = b.m[4];
    gb.q = b.m[0], gb.k = b.m[1], gb.v = b.m[2], gb.o = b.m[3];
    gb.lse = b.m[4], gb.d_o = b.m[5];
    gb.dq = b.m[6], gb.dk = b.m[7], gb.dv = b.m[8], gb.dbias = b.dbias;
    for (int r = -1; !bad && r < reps; r++) {
        cl_event ev = NULL;
        double t0 = now(), t1, t2;
        bad |=
            attn_sdpa_cl_buffers(ctx, d, &fb, b.queue, 0, NULL, &ev) != ATTN_OK;
        bad |= !bad && ev_wait(ev);
        t1 = now();
        bad |= !bad && attn_sdpa_backward_cl_buffers(ctx, d, &gb, b.queue, 0,
                                                     NULL, &ev) != ATTN_OK;
        bad |= !bad && ev_wait(ev);
        t2 = now();
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t1;
        }
    }
    /* the gradients against attn_sdpa_backward on host memory */
    *diff = 0.0;
    if (!bad && (attn_sdpa(ctx, d, g->q, g->k, g->v, (void *)g->o,
                           (float *)g->lse) != ATTN_OK ||
                 attn_sdpa_backward(ctx, d, g) != ATTN_OK))
        bad = 1;
    for (int i = 6; i < 9 && !bad; i++) {
        const float *want = i == 6 ? g->dq : i == 7 ? g->dk : g->dv;
        bad = clEnqueueReadBuffer(b.queue, b.m[i], CL_TRUE, 0, e * 4, got, 0,
                                  NULL, NULL) != CL_SUCCESS;
        for (size_t j = 0; !bad && j < e; j++) {
            double x = got[j] - want[j];
            x = x < 0 ? -x : x;
            *diff = x > *diff || x != x ? x : *diff;
        }
    }
    if (bad && rc != CL_SUCCESS)
        fprintf(stderr, "--resident: OpenCL error %d\n", (int)rc);
    dev_free(&b);
    free(got);
    return bad;
}
#endif

/* One N: returns 0 or 1 on failure. */
static int run(attn_context *ctx, const struct bench_cfg *cf, int n, int causal)
{
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    const int heads = cf->heads, hd = cf->hd, reps = cf->rss ? 1 : cf->reps;
    size_t e = (size_t)heads * (size_t)n * (size_t)hd;
    unsigned seed = 1;
    float *q = rnd(e, &seed), *k = rnd(e, &seed), *v = rnd(e, &seed);
    float *dout = rnd(e, &seed), *o = malloc(e * 4), *dq = malloc(e * 4);
    float *dk = malloc(e * 4), *dv = malloc(e * 4);
    float *lse = malloc((size_t)heads * (size_t)n * 4);
    float *bias = NULL, *dbias = NULL;
    double *t = malloc(4 * (size_t)reps * sizeof *t);
    double *tf = t, *tb = t + reps, *pf = t + 2 * reps, *pb = t + 3 * reps;
    double diff = -1.0; /* --resident: from the host run's gradients */
    size_t nbias = 0;
    struct torch_peer tp;
    int bad = !q || !k || !v || !dout || !o || !dq || !dk || !dv || !lse || !t;

    memset(&tp, 0, sizeof tp);
    if (!bad && !cf->rss && cf->python)
        torch_start(&tp, cf->python, n, causal, heads, hd, cf->threads,
                    cf->cuda);
    d.batch = 1;
    d.heads_q = d.heads_kv = heads;
    d.seq_q = d.seq_kv = n;
    d.head_dim = d.head_dim_v = hd;
    d.mask.causal = causal;
    g.q = q, g.k = k, g.v = v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = dq, g.dk = dk, g.dv = dv;
    if (!bad && cf->bias != ATTN_BIAS_NONE) {
        /* FULL [1, H, N, N], SHARED [N, N] or KEY [1, N]; dbias alike */
        size_t nb = cf->bias == ATTN_BIAS_KEY      ? (size_t)n
                    : cf->bias == ATTN_BIAS_SHARED ? (size_t)n * (size_t)n
                                                   : (size_t)n * e / hd;
        nbias = nb;
        bias = rnd(nb, &seed);
        dbias = malloc(nb * sizeof *dbias);
        bad = !bias || !dbias;
        d.mask.bias = bias;
        d.mask.bias_kind = cf->bias;
        g.dbias = dbias;
    }
#ifdef ATTN_BENCH_HAVE_CL
    if (!bad && cf->resident)
        bad = run_resident(ctx, &d, &g, e, nbias, reps, tf, tb, &diff);
#else
    (void)nbias;
#endif
    for (int r = -1; !bad && !cf->resident && r < reps; r++) {
        double t0 = now(), f = 0.0, b = 0.0;
        bad |= attn_sdpa(ctx, &d, q, k, v, o, lse) != ATTN_OK;
        double t1 = now();
        bad |= attn_sdpa_backward(ctx, &d, &g) != ATTN_OK;
        double t2 = now();
        if (tp.up && torch_run(&tp, &f, &b) != 0)
            fprintf(stderr, "N=%d: the torch peer failed: %s\n", n, tp.why);
        if (r >= 0) {
            tf[r] = t1 - t0;
            tb[r] = t2 - t1;
            pf[r] = f;
            pb[r] = b;
        }
        if (cf->rss)
            break;
    }
    if (bad) {
        fprintf(stderr, "N=%d: %s\n", n, attn_context_last_error(ctx));
    } else if (cf->rss) {
        struct rusage u;
        getrusage(RUSAGE_SELF, &u);
        printf("N=%d H=%d d=%d: peak RSS %.1f MiB (tensors %.1f MiB)\n", n,
               heads, hd, (double)u.ru_maxrss / 1024.0,
               (double)(9 * e * 4) / 1048576.0);
    } else {
        double f = median(tf, reps), b = median(tb, reps);
        static const char *const bn[] = {"", ", bias shared", ", bias head",
                                         ", bias full", ", bias key"};
        printf("N=%-6d %-7s forward %9.3f ms  backward %9.3f ms  ratio %.2f  "
               "(medians of %d alternating runs%s%s)\n",
               n, causal ? "causal" : "full", 1e3 * f, 1e3 * b, b / f, reps,
               cf->bias <= ATTN_BIAS_KEY ? bn[cf->bias] : "",
               cf->resident ? ", device buffers" : "");
        if (cf->resident)
            printf("         gradients on device buffers against "
                   "attn_sdpa_backward on host memory: max |diff| %.3g\n",
                   diff);
        if (tp.up) {
            double tf2 = median(pf, reps), tb2 = median(pb, reps);
            printf("         %-7s forward %9.3f ms  backward %9.3f ms  ratio "
                   "%.2f  (%s; libattn backward / torch backward %.2f)\n",
                   "torch", 1e3 * tf2, 1e3 * tb2, tb2 / tf2, tp.impl, b / tb2);
        } else if (cf->python) {
            printf("         torch: no peer (%s)\n", tp.why);
        }
    }
    torch_stop(&tp);
    free(q), free(k), free(v), free(dout), free(o), free(dq), free(dk);
    free(dv), free(lse), free(t), free(bias), free(dbias);
    return bad;
}

int main(int argc, char **argv)
{
    attn_options opt = ATTN_OPTIONS_INIT;
    attn_context *ctx;
    struct bench_cfg cf = {8, 64, 9, 0, 0, 0, 0, "python3", ATTN_BIAS_NONE};
    const char *ns = "512,2048";
    int masks = 1, bad = 0; /* bit 0: full, bit 1: causal */

    opt.device = "native";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--causal") || !strcmp(a, "--both")) {
            masks = a[2] == 'c' ? 2 : 3;
            continue;
        }
        if (!strcmp(a, "--cpu-time")) {
            bench_clock = CLOCK_PROCESS_CPUTIME_ID;
            continue;
        }
        if (!strcmp(a, "--no-torch")) {
            cf.python = NULL;
            continue;
        }
        if (!strcmp(a, "--torch-cuda")) {
            cf.cuda = 1;
            continue;
        }
        if (!strcmp(a, "--resident")) {
#ifdef ATTN_BENCH_HAVE_CL
            cf.resident = 1;
            continue;
#else
            fprintf(stderr, "attn-bwd-bench: --resident needs the OpenCL "
                            "backend\n");
            return 2;
#endif
        }
        if (!val) {
            fprintf(stderr, "attn-bwd-bench: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--n"))
            ns = val;
        else if (!strcmp(a, "--reps"))
            cf.reps = atoi(val);
        else if (!strcmp(a, "--threads"))
            opt.threads = atoi(val);
        else if (!strcmp(a, "--heads"))
            cf.heads = atoi(val);
        else if (!strcmp(a, "--head-dim"))
            cf.hd = atoi(val);
        else if (!strcmp(a, "--rss"))
            cf.rss = atoi(val);
        else if (!strcmp(a, "--python"))
            cf.python = val;
        else if (!strcmp(a, "--dbias") &&
                 (!strcmp(val, "full") || !strcmp(val, "shared") ||
                  !strcmp(val, "key")))
            cf.bias = val[0] == 'f'   ? ATTN_BIAS_FULL
                      : val[0] == 's' ? ATTN_BIAS_SHARED
                                      : ATTN_BIAS_KEY;
        else if (!strcmp(a, "--device"))
            opt.device = val;
        else if (!strcmp(a, "--kernel"))
            opt.kernel = val;
        else if (!strcmp(a, "--path") && !strcmp(val, "fused"))
            opt.path = ATTN_PATH_FUSED;
        else if (!strcmp(a, "--path") && !strcmp(val, "unfused"))
            opt.path = ATTN_PATH_UNFUSED;
        else {
            fprintf(stderr, "attn-bwd-bench: unknown option %s\n", a);
            return 2;
        }
    }
    if (cf.reps < 1 || cf.heads < 1 || cf.hd < 1) {
        fprintf(stderr, "attn-bwd-bench: --reps, --heads and --head-dim "
                        "must be positive\n");
        return 2;
    }
    if (cf.resident && (!strcmp(opt.device, "native") || cf.rss)) {
        fprintf(stderr, "attn-bwd-bench: --resident needs --device (an "
                        "OpenCL device) and no --rss\n");
        return 2;
    }
    if (cf.resident && !cf.cuda)
        cf.python = NULL; /* the CPU torch peer times host tensors */
    /* a device's figures are the device's own: no native redo */
    opt.allow_fallback = strcmp(opt.device, "native") == 0;
    if (attn_context_create(&opt, &ctx) != ATTN_OK) {
        fprintf(stderr, "attn-bwd-bench: %s\n", attn_last_error());
        return 1;
    }
    {
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        if (attn_context_device(ctx, &info) == ATTN_OK)
            printf("device: %s%s%s\n", info.name, opt.kernel ? ", kernel " : "",
                   opt.kernel ? opt.kernel : "");
    }
    /* the peer on as many threads as the context runs */
    cf.threads =
        opt.threads > 0 ? opt.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cf.threads < 1)
        cf.threads = 1;
    if (cf.rss > 0) {
        bad = run(ctx, &cf, cf.rss, masks == 2);
    } else {
        for (const char *p = ns; *p;) {
            char *end;
            long n = strtol(p, &end, 10);
            if (n < 1 || end == p) {
                fprintf(stderr, "attn-bwd-bench: bad --n %s\n", ns);
                bad = 1;
                break;
            }
            for (int c = 0; c < 2; c++)
                if (masks >> c & 1)
                    bad |= run(ctx, &cf, (int)n, c);
            p = *end == ',' ? end + 1 : end;
        }
    }
    attn_context_destroy(ctx);
    return bad;
}
