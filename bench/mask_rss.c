/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-mask-rss: the peak resident set of one attn_sdpa call over a
 * left-padded batch (a Hugging Face key-padding mask), the padding given
 * each way the API takes it and the tensors in each layout it reads in
 * place, and whether they all give the same output.
 *
 * Modes:
 *   full      a FULL bias [batch, heads, seq, seq] of 0 and -inf (what a
 *             caller without key masks has to build)
 *   key       a KEY bias [batch, seq] of 0 and -inf
 *   keep      a boolean mask keep [batch, 1, 1, seq]
 *   kv_start  the pad counts as kv_start [batch]
 *   bshd      kv_start, with q, k, v and o in [batch, seq, heads, dim]
 *             (strides)
 *   qkv       kv_start, with q, k and v in one fused projection [batch,
 *             seq, 3, heads, dim] and o in [batch, seq, heads, dim]
 * Every mode's tensors hold the same values (the layouts are filled from
 * the same [batch, heads, seq, dim] numbering), and O is written to the
 * file in [batch, heads, seq, dim] order.
 * Each mode runs in a fresh process (this executable started again with
 * --child through posix_spawn), which writes its output O to a file; the
 * parent reads the child's peak from wait4's rusage (ru_maxrss), the
 * child's own VmHWM steps from its report, and compares every O with the
 * first mode's.  Bench code: not part of the library.
 */
#define _DEFAULT_SOURCE /* wait4 */
#include <errno.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <attn/attn.h>

#include "cli/cli_options.h"

extern char **environ;

typedef struct config {
    const char *device, *modes, *child, *out, *dir;
    int threads, batch, heads, seq, head_dim;
} config;

enum {
    K_DEVICE = 'd',
    K_THREADS = 't',
    K_BATCH = CLI_LONG_ONLY,
    K_HEADS,
    K_SEQ,
    K_HEAD_DIM,
    K_MODES,
    K_DIR,
    K_CHILD,
    K_OUT
};

static const cli_option options[] = {
    {"device", K_DEVICE, "SPEC", "attn_options.device (default native)"},
    {"threads", K_THREADS, "N", "native worker threads (default: all)"},
    {"batch", K_BATCH, "N", "batch items (default 32)"},
    {"heads", K_HEADS, "N", "heads (default 12)"},
    {"seq", K_SEQ, "N", "tokens per item, padding included (default 512)"},
    {"head-dim", K_HEAD_DIM, "N", "elements per head (default 64)"},
    {"modes", K_MODES, "LIST",
     "comma-separated modes, the first the reference\n"
     "(default full,key,keep,kv_start,bshd,qkv)"},
    {"dir", K_DIR, "PATH", "where the outputs are written (default /tmp)"},
    {"child", K_CHILD, "MODE", NULL},
    {"out", K_OUT, "FILE", NULL},
    {NULL, 0, NULL, NULL}};

static int positive(const char *v, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n <= 0 || n > 1 << 20)
        return -1;
    *out = (int)n;
    return 0;
}

static int on_option(void *user, int key, const char *v)
{
    config *c = user;
    switch (key) {
    case K_DEVICE:
        c->device = v;
        return 0;
    case K_THREADS:
        return positive(v, &c->threads);
    case K_BATCH:
        return positive(v, &c->batch);
    case K_HEADS:
        return positive(v, &c->heads);
    case K_SEQ:
        return positive(v, &c->seq);
    case K_HEAD_DIM:
        return positive(v, &c->head_dim);
    case K_MODES:
        c->modes = v;
        return 0;
    case K_DIR:
        c->dir = v;
        return 0;
    case K_CHILD:
        c->child = v;
        return 0;
    case K_OUT:
        c->out = v;
        return 0;
    }
    return -1;
}

/* VmHWM of this process in KiB, or -1. */
static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The value of element e (in [batch, heads, seq, dim] numbering) of the
 * tensor seeded seed, the same whatever the layout. */
static float value_of(size_t e, unsigned seed)
{
    unsigned s = (unsigned)(e * 2654435761u) ^ (seed * 40503u + 1u);
    s = s * 1664525u + 1013904223u;
    s ^= s >> 13;
    s = s * 1664525u + 1013904223u;
    return (float)(s >> 8) / 8388608.0f - 1.0f;
}

/* A layout: the strides of (b, h, i), in elements. */
typedef struct layout {
    int64_t st[3];
} layout;

static size_t at_of(const layout *l, int b, int h, int i)
{
    return (size_t)(b * l->st[0] + h * l->st[1] + i * l->st[2]);
}

/* Fills tensor x laid out as l with the [batch, heads, seq, dim] values of
 * seed. */
static void fill(const config *c, float *x, const layout *l, unsigned seed)
{
    const size_t dm = (size_t)c->head_dim;
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->heads; h++)
            for (int i = 0; i < c->seq; i++) {
                size_t e = (((size_t)b * (size_t)c->heads + (size_t)h) *
                                (size_t)c->seq +
                            (size_t)i) *
                           dm;
                for (size_t x0 = 0; x0 < dm; x0++)
                    x[at_of(l, b, h, i) + x0] = value_of(e + x0, seed);
            }
}

/* The left padding of batch item b: 0 to seq / 2 - 1 keys. */
static int pad_of(const config *c, int b)
{
    return (int)(((unsigned)b * 37u) % (unsigned)(c->seq / 2 + 1));
}

/* One mode in this process: the call, O written to c->out, the report on
 * stdout ("CHILD start inputs call mask_bytes ms"). */
static int child_main(const config *c)
{
    const size_t n = (size_t)c->batch * (size_t)c->heads * (size_t)c->seq *
                     (size_t)c->head_dim;
    const size_t s = (size_t)c->seq;
    long start = vm_hwm_kib(), inputs;
    attn_options ao = ATTN_OPTIONS_INIT;
    attn_context *ctx = NULL;
    attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;
    float *q, *k, *v, *o, *qkv = NULL, *bias = NULL;
    const long long H = c->heads, S = c->seq, D = c->head_dim;
    layout lq = {{H * S * D, S * D, D}}, lo;
    uint8_t *keep = NULL;
    int32_t *starts = NULL;
    size_t mask_bytes = 0;
    attn_status st;
    double ms;
    FILE *f;

    ao.device = c->device;
    ao.threads = c->threads;
    if ((st = attn_context_create(&ao, &ctx)) != ATTN_OK) {
        printf("ERROR attn_context_create: %s: %.300s\n",
               attn_status_string(st), attn_last_error());
        return 1;
    }
    if (strcmp(c->child, "qkv") == 0) {
        /* one [batch, seq, 3, heads, dim] buffer; o [batch, seq, heads,
         * dim] */
        qkv = malloc(3 * n * sizeof *qkv);
        o = malloc(n * sizeof *o);
        if (!qkv || !o) {
            printf("ERROR out of memory\n");
            return 1;
        }
        q = qkv;
        k = qkv + H * D;
        v = qkv + 2 * H * D;
        lq.st[0] = S * 3 * H * D;
        lq.st[1] = D;
        lq.st[2] = 3 * H * D;
        lo.st[0] = S * H * D;
        lo.st[1] = D;
        lo.st[2] = H * D;
    } else {
        q = malloc(n * sizeof *q);
        k = malloc(n * sizeof *k);
        v = malloc(n * sizeof *v);
        o = malloc(n * sizeof *o);
        if (!q || !k || !v || !o) {
            printf("ERROR out of memory\n");
            return 1;
        }
        if (strcmp(c->child, "bshd") == 0) {
            lq.st[0] = S * H * D;
            lq.st[1] = D;
            lq.st[2] = H * D;
        }
        lo = lq;
    }
    fill(c, q, &lq, 1);
    fill(c, k, &lq, 2);
    fill(c, v, &lq, 3);
    memset(o, 0, n * sizeof *o);
    d.batch = c->batch;
    d.heads_q = d.heads_kv = c->heads;
    d.seq_q = d.seq_kv = c->seq;
    d.head_dim = d.head_dim_v = c->head_dim;
    if (strcmp(c->child, "full") == 0) {
        mask_bytes = (size_t)c->batch * (size_t)c->heads * s * s * 4;
        if (!(bias = malloc(mask_bytes)))
            goto oom;
        for (size_t bh = 0; bh < (size_t)c->batch * (size_t)c->heads; bh++)
            for (size_t i = 0; i < s; i++)
                for (size_t j = 0; j < s; j++)
                    bias[(bh * s + i) * s + j] =
                        (int)j < pad_of(c, (int)(bh / (size_t)c->heads))
                            ? -INFINITY
                            : 0.0f;
        d.mask.bias = bias;
        d.mask.bias_kind = ATTN_BIAS_FULL;
    } else if (strcmp(c->child, "key") == 0) {
        mask_bytes = (size_t)c->batch * s * 4;
        if (!(bias = malloc(mask_bytes)))
            goto oom;
        for (int b = 0; b < c->batch; b++)
            for (size_t j = 0; j < s; j++)
                bias[(size_t)b * s + j] =
                    (int)j < pad_of(c, b) ? -INFINITY : 0.0f;
        d.mask.bias = bias;
        d.mask.bias_kind = ATTN_BIAS_KEY;
    } else if (strcmp(c->child, "keep") == 0) {
        mask_bytes = (size_t)c->batch * s;
        if (!(keep = malloc(mask_bytes)))
            goto oom;
        for (int b = 0; b < c->batch; b++)
            for (size_t j = 0; j < s; j++)
                keep[(size_t)b * s + j] = (int)j >= pad_of(c, b);
        d.keep = keep;
        d.keep_shape[0] = c->batch;
        d.keep_shape[1] = d.keep_shape[2] = 1;
    } else if (strcmp(c->child, "kv_start") == 0 ||
               strcmp(c->child, "bshd") == 0 || strcmp(c->child, "qkv") == 0) {
        mask_bytes = (size_t)c->batch * sizeof(int32_t);
        if (!(starts = malloc(mask_bytes)))
            goto oom;
        for (int b = 0; b < c->batch; b++)
            starts[b] = pad_of(c, b);
        d.kv_start = starts;
    } else {
        printf("ERROR unknown mode %s\n", c->child);
        return 2;
    }
    if (strcmp(c->child, "bshd") == 0 || strcmp(c->child, "qkv") == 0)
        for (int t = 0; t < 3; t++) {
            d.q_strides[t] = d.k_strides[t] = d.v_strides[t] = lq.st[t];
            d.o_strides[t] = lo.st[t];
        }
    inputs = vm_hwm_kib();
    ms = now_ms();
    st = attn_sdpa(ctx, &d, q, k, v, o, NULL);
    ms = now_ms() - ms;
    if (st != ATTN_OK) {
        printf("ERROR attn_sdpa: %s: %.300s\n", attn_status_string(st),
               attn_context_last_error(ctx));
        return 1;
    }
    /* O in [batch, heads, seq, dim] order, a row at a time */
    if (!(f = fopen(c->out, "wb"))) {
        printf("ERROR cannot write %s\n", c->out);
        return 1;
    }
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->heads; h++)
            for (int i = 0; i < c->seq; i++)
                if (fwrite(o + at_of(&lo, b, h, i), sizeof *o, (size_t)D, f) !=
                    (size_t)D) {
                    printf("ERROR cannot write %s\n", c->out);
                    return 1;
                }
    if (fclose(f) != 0) {
        printf("ERROR cannot write %s\n", c->out);
        return 1;
    }
    printf("CHILD %ld %ld %ld %zu %.1f\n", start, inputs, vm_hwm_kib(),
           mask_bytes, ms);
    attn_context_destroy(ctx);
    if (qkv) {
        free(qkv);
    } else {
        free(q);
        free(k);
        free(v);
    }
    free(o);
    free(bias);
    free(keep);
    free(starts);
    return 0;
oom:
    printf("ERROR out of memory for the mask\n");
    return 1;
}

/* Runs mode in a child writing O to out; its report into line (cap bytes)
 * and its peak (ru_maxrss, KiB) into *peak.  Returns 0 when it succeeded. */
static int spawn_child(const config *c, const char *mode, const char *out,
                       char *line, size_t cap, long *peak)
{
    char th[16], b[16], h[16], sq[16], hd[16];
    char *args[20];
    posix_spawn_file_actions_t fa;
    struct rusage ru;
    int fd[2], status = 0, e, a = 0;
    size_t got = 0;
    pid_t pid;

    snprintf(th, sizeof th, "%d", c->threads);
    snprintf(b, sizeof b, "%d", c->batch);
    snprintf(h, sizeof h, "%d", c->heads);
    snprintf(sq, sizeof sq, "%d", c->seq);
    snprintf(hd, sizeof hd, "%d", c->head_dim);
    args[a++] = "/proc/self/exe";
    args[a++] = "--child";
    args[a++] = (char *)mode;
    args[a++] = "--out";
    args[a++] = (char *)out;
    args[a++] = "--device";
    args[a++] = (char *)c->device;
    if (c->threads > 0) { /* 0: all, the default */
        args[a++] = "--threads";
        args[a++] = th;
    }
    args[a++] = "--batch";
    args[a++] = b;
    args[a++] = "--heads";
    args[a++] = h;
    args[a++] = "--seq";
    args[a++] = sq;
    args[a++] = "--head-dim";
    args[a++] = hd;
    args[a] = NULL;
    if (pipe(fd) != 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    fflush(NULL);
    e = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (e != 0) {
        snprintf(line, cap, "cannot start a child: %s", strerror(e));
        close(fd[0]);
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd[0], line + got, cap - 1 - got);
        if (r > 0 && got + (size_t)r < cap - 1)
            got += (size_t)r;
        else if (r > 0 || r == 0 || errno != EINTR)
            break;
    }
    line[got] = '\0';
    close(fd[0]);
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    *peak = ru.ru_maxrss;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* max |a - b| over the floats of two files of n floats; -1 on error. */
static double max_diff(const char *pa, const char *pb, size_t n)
{
    FILE *fa = fopen(pa, "rb"), *fb = fopen(pb, "rb");
    float x[4096], y[4096];
    double m = 0.0;
    size_t left = n;
    if (!fa || !fb) {
        if (fa)
            fclose(fa);
        if (fb)
            fclose(fb);
        return -1.0;
    }
    while (left > 0) {
        size_t want = left < 4096 ? left : 4096;
        if (fread(x, sizeof *x, want, fa) != want ||
            fread(y, sizeof *y, want, fb) != want) {
            m = -1.0;
            break;
        }
        for (size_t i = 0; i < want; i++) {
            double d = fabs((double)x[i] - (double)y[i]);
            if (!(d <= m))
                m = isnan(d) ? INFINITY : d;
        }
        left -= want;
    }
    fclose(fa);
    fclose(fb);
    return m;
}

int main(int argc, char **argv)
{
    static const cli_spec spec = {
        "attn-mask-rss",
        "peak memory of a key-padding mask given each way attn_sdpa takes it",
        ATTN_VERSION_STRING,
        "[options]",
        "Runs one attn_sdpa call over a left-padded batch once per mode, "
        "each in a fresh process, and prints the process's peak resident "
        "set, the mask's own bytes, the call's time and the largest "
        "difference of its output from the first mode's.",
        options,
        NULL};
    config c = {"native", "full,key,keep,kv_start,bshd,qkv",
                NULL,     NULL,
                "/tmp",   0,
                32,       12,
                512,      64};
    char modes[256], first[512] = "", path[512];
    size_t n;
    int rc = cli_parse(&spec, argc, argv, on_option, &c);

    if (rc >= 0)
        return rc;
    if (c.child)
        return c.out ? child_main(&c) : 2;
    n = (size_t)c.batch * (size_t)c.heads * (size_t)c.seq * (size_t)c.head_dim;
    printf("attn-mask-rss: B=%d H=%d seq=%d d=%d f32, device %s, left "
           "padding 0..%d keys; Q, K, V and O alone are %.0f MiB\n",
           c.batch, c.heads, c.seq, c.head_dim, c.device, c.seq / 2,
           4.0 * (double)n * sizeof(float) / 1048576.0);
    printf("%-10s %12s %12s %12s %12s %9s %12s\n", "mode", "ru_maxrss",
           "+inputs", "+call", "mask", "call ms", "max |diff|");
    snprintf(modes, sizeof modes, "%s", c.modes);
    rc = 0;
    for (char *save = NULL, *m = strtok_r(modes, ",", &save); m;
         m = strtok_r(NULL, ",", &save)) {
        char line[1024];
        long peak = 0, s0, s1, s2;
        size_t mb;
        double ms, diff = 0.0;
        snprintf(path, sizeof path, "%s/attn-mask-rss-%d-%s.f32", c.dir,
                 (int)getpid(), m);
        if (spawn_child(&c, m, path, line, sizeof line, &peak) != 0 ||
            sscanf(line, "CHILD %ld %ld %ld %zu %lf", &s0, &s1, &s2, &mb,
                   &ms) != 5) {
            printf("%-10s failed: %s", m, line[0] ? line : "no output\n");
            rc = 1;
            continue;
        }
        if (!first[0])
            snprintf(first, sizeof first, "%s", path);
        else
            diff = max_diff(first, path, n);
        printf("%-10s %8.1f MiB %8.1f MiB %8.1f MiB %8.3f MiB %9.1f %12.2e\n",
               m, peak / 1024.0, s1 / 1024.0, s2 / 1024.0,
               (double)mb / 1048576.0, ms, diff);
        if (diff < 0.0 || diff > 1e-5)
            rc = 1;
        if (strcmp(path, first) != 0)
            remove(path);
    }
    if (first[0])
        remove(first);
    printf("ru_maxrss: wait4() of the child; +inputs / +call: the child's "
           "VmHWM with its inputs and mask built, and after the call\n");
    return rc;
}
