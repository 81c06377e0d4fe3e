/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-soak: many attn_sdpa / attn_mha_forward calls with random shapes and
 * options over every path, on contexts created once as an application
 * would, checking a sample against the double-precision oracle and
 * watching the resident memory.
 *
 *   attn-soak [--calls N] [--seed S] [--check-every K] [--paths LIST]
 *             [--warmup W] [--rss-limit-mib M] [--recreate-every R]
 *
 * Paths (LIST is a comma list; default all): native, unfused, fused,
 * decode (OpenCL AUTO with seq_q <= 4), auto (OpenCL AUTO), 2queues (two
 * queues on one device), 2devices (device "all", two queues each: run with
 * POCL_DEVICES="pthread pthread" for two PoCL devices), mha (the layer,
 * in turn on the native, the OpenCL and the two-device contexts) and
 * backward (a forward and attn_sdpa_backward, in turn on the native
 * context, dbias and d_additive_w asked where they exist, BF16 storage
 * too, and on OpenCL
 * contexts forcing the backward variants bwd_fused and bwd_tiled
 * (dot-product scores, no dbias) and bwd_ref (dbias and d_additive_w too,
 * except with keep or the starts); soak_bwd.c).  OpenCL
 * contexts run with fallback off, so a device failure is a failure.
 *
 * Calls go round the paths in turn.  Every K-th call of a path (default
 * 10) is compared with the oracle (tolerances of tests/ref.h), the others
 * are checked for status and finite output; every output has guards.
 * The attn_sdpa calls take the generator's layouts (attn_gen.h: BHSD or
 * BSHD strides, padded rows, a fused QKV buffer; o in a layout of its
 * own), packed variable-length batches and f32, f16 or bf16 storage: the
 * inputs are placed from contiguous copies with NaN in the gaps, o's rows
 * are gathered back for the oracle (a packed batch: each sequence's own
 * problem) and o's gaps must stay untouched.
 * Every R calls (default 250) a context is created, used once and
 * destroyed (native and OpenCL in turn), and every 50 calls an invalid
 * call must be refused, so that those paths are soaked too.
 *
 * Reports the calls per path, the checked calls and their worst error as a
 * fraction of the tolerance, failures, and VmRSS (after malloc_trim) and
 * the malloc heap in use every tenth of the run, after the first W calls
 * (default: a fifth, at least 100) and at the end.  Exits 1 on any wrong
 * result or when RSS grew by more than M MiB (default 8; 0: report only)
 * after the warm-up, 2 on bad arguments or when a context cannot be
 * created.  OpenCL paths are skipped, saying so, on a machine without
 * OpenCL.
 */
#include <math.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h> /* malloc_trim, mallinfo2 */
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "attn_gen.h"
#include "attn_place.h"
#include "cases.h"
#include "ref.h"
#include "soak_bwd.h"

enum {
    P_NATIVE,
    P_UNFUSED,
    P_FUSED,
    P_DECODE,
    P_AUTO,
    P_2QUEUES,
    P_2DEVICES,
    P_MHA,
    P_BWD,
    P_COUNT
};

static const char *const path_names[P_COUNT] = {
    "native",  "unfused",  "fused", "decode",  "auto",
    "2queues", "2devices", "mha",   "backward"};

typedef struct path_stats {
    int enabled;
    attn_context *ctx;
    unsigned long calls, checked, failures;
    double flops;     /* 2 * multiply-adds of the attention, summed */
    double max_ratio; /* worst |err| / tol over the checked calls */
} path_stats;

static path_stats paths[P_COUNT];
static unsigned long n_cycles, n_refused;
/* attn_sdpa calls with strided tensors, packed batches, bf16 storage */
static unsigned long n_strided, n_packed, n_bf16;
static attn_context *mha_ctx[3]; /* native, OpenCL, two devices */
/* native, OpenCL with the backward variants bwd_fused, bwd_ref and
 * bwd_tiled forced */
#define N_BWD_CTX 4
static attn_context *bwd_ctx[N_BWD_CTX];
static unsigned long total_failures;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* VmRSS of this process in KiB (0 when unknown), after handing the free
 * pages of the malloc heap back to the system (glibc), so that it counts
 * memory in use rather than what the allocator keeps around. */
static long rss_kib(void)
{
    char line[256];
    long kib = 0;
    FILE *f;
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
    f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Built with AddressSanitizer: its quarantine keeps freed memory resident,
 * so RSS grows by design and the allocator's count of bytes in use is
 * judged instead. */
#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifdef SOAK_ASAN
/* From the sanitizer runtime (sanitizer/allocator_interface.h, which gcc
 * does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* KiB of malloc'ed memory in use, or -1 when unknown: tells a leak on the
 * heap apart from pages that allocators or drivers keep. */
static long heap_kib(void)
{
#if defined(SOAK_ASAN)
    return (long)(__sanitizer_get_current_allocated_bytes() / 1024);
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
#else
    return -1;
#endif
}

/* A context on device (kernel: a variant forced by name, or NULL). */
static attn_context *open_context_kernel(const char *device, attn_path path,
                                         int queues, const char *kernel)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_status s;
    attn_options_init(&o);
    o.device = device;
    o.path = path;
    o.queues = queues;
    o.kernel = kernel;
    o.allow_fallback = 0;
    s = attn_context_create(&o, &ctx);
    if (s != ATTN_OK) {
        printf("attn-soak: context on \"%s\": %s (%s)\n", device,
               attn_status_string(s), attn_last_error());
        return NULL;
    }
    return ctx;
}

static attn_context *open_context(const char *device, attn_path path,
                                  int queues)
{
    return open_context_kernel(device, path, queues, NULL);
}

/* ---- one attn_sdpa call ---------------------------------------------- */

/* Shape limits per path: most calls small, about one in seven long (many
 * key tiles), decode with a few query rows over a long KV cache.  The first
 * call of a path takes the largest shape of all (every size at its
 * largest, f32, a full bias and keep, kv_len, lse), so that the working
 * memory the library keeps reaches its high-water mark during the
 * warm-up. */
static void draw_sdpa(gen_src *g, int path, int largest, gen_sdpa *out)
{
    static const gen_limits small = {2, 3, 3, 48, 96, 96, 0, 0};
    static const gen_limits longer = {2, 2, 4, 128, 512, 128, 0, 0};
    static const gen_limits decode = {2, 4, 4, 4, 512, 128, 0, 0};
    static const gen_limits top = {2, 3, 4, 128, 512, 128, 0, 0};
    const gen_limits *lim = path == P_DECODE    ? &decode
                            : gen_chance(g, 15) ? &longer
                                                : &small;
    gen_sdpa_shape(g, lim, out);
    if (largest) {
        attn_sdpa_desc *d = &out->d;
        lim = path == P_DECODE ? &decode : &top;
        d->batch = lim->batch;
        d->heads_kv = lim->heads_kv;
        d->heads_q = lim->heads_kv * lim->group;
        d->seq_q = lim->seq_q;
        d->seq_kv = lim->seq_kv;
        d->head_dim = d->head_dim_v = lim->head_dim;
        d->dtype = ATTN_F32;
        d->mask.bias_kind = ATTN_BIAS_FULL;
        /* with a full boolean mask too */
        d->keep_shape[0] = d->batch;
        d->keep_shape[1] = d->heads_q;
        d->keep_shape[2] = d->seq_q;
        out->with_kv_len = out->with_lse = 1;
        out->varlen = 0; /* it excludes the masks above */
    }
    if (path == P_BWD) /* soak_bwd.c models dense tensors only */
        gen_sdpa_plain(out);
    gen_sdpa_place(out); /* the sizes may have changed */
}

static void print_desc(const char *what, const gen_sdpa *shape,
                       const attn_sdpa_desc *d)
{
    printf("  %s: batch %d heads %d/%d seq %d/%d dims %d/%d scale %g "
           "score %d dtype %d causal %d window %d align %d kv_len %s bias "
           "kind %d keep %d/%d/%d layout %d/%d starts:",
           what, d->batch, d->heads_q, d->heads_kv, d->seq_q, d->seq_kv,
           d->head_dim, d->head_dim_v, (double)d->scale, (int)d->score,
           (int)d->dtype, d->mask.causal, d->mask.window, (int)d->causal_align,
           d->mask.kv_len ? "yes" : "no", (int)d->mask.bias_kind,
           d->keep_shape[0], d->keep_shape[1], d->keep_shape[2], shape->layout,
           shape->o_layout);
    for (int b = 0; b < d->batch; b++)
        printf(" %d/%d", d->q_start ? (int)d->q_start[b] : 0,
               d->kv_start ? (int)d->kv_start[b] : 0);
    if (shape->varlen) {
        printf(" packed:");
        for (int b = 0; b <= d->batch; b++)
            printf(" %d/%d", (int)shape->cu_q[b], (int)shape->cu_kv[b]);
    }
    printf("\n");
}

#define GUARD 16 /* floats either side of an output */

/* Runs one call of shape g on ctx; checks it fully when check is set.
 * The inputs lie in the shape's layout, o in its own; o's extent has
 * guards either side and its gaps must stay as they were.  Returns 1
 * when everything held. */
static int sdpa_call(attn_context *ctx, path_stats *ps, const gen_sdpa *shape,
                     uint64_t seed, int check, const char *what)
{
    sdpa_case c;
    attn_sdpa_desc sd, call;
    const attn_sdpa_desc *d;
    size_t es, ob, i, nq[3], nk[3], eo;
    int64_t so[3];
    unsigned char *obuf = NULL, *oc = NULL;
    float *lbuf = NULL, *lse = NULL;
    gen_placed in;
    void *o;
    attn_status s;
    int ok = 1;

    memset(&in, 0, sizeof in);
    gen_sdpa_storage(shape, &sd);
    if (sdpa_case_init(&c, &sd, seed, shape->qk_amp, shape->ninf,
                       shape->with_kv_len) != 0) {
        printf("FAIL %s: out of memory building the inputs\n", what);
        return 0;
    }
    d = &c.d;
    /* the call: the storage's data, the shape's strides and sequences */
    call = c.d;
    call.batch = shape->d.batch;
    call.seq_q = shape->d.seq_q;
    call.seq_kv = shape->d.seq_kv;
    call.mask.causal = shape->d.mask.causal;
    call.mask.window = shape->d.mask.window;
    call.cu_seqlens_q = shape->d.cu_seqlens_q;
    call.cu_seqlens_kv = shape->d.cu_seqlens_kv;
    memcpy(call.q_strides, shape->d.q_strides, sizeof call.q_strides);
    memcpy(call.k_strides, shape->d.k_strides, sizeof call.k_strides);
    memcpy(call.v_strides, shape->d.v_strides, sizeof call.v_strides);
    memcpy(call.o_strides, shape->d.o_strides, sizeof call.o_strides);
    es = d->dtype == ATTN_F32 ? 4 : 2;
    nq[0] = nk[0] = (size_t)d->batch;
    nq[1] = (size_t)d->heads_q;
    nk[1] = (size_t)d->heads_kv;
    nq[2] = (size_t)d->seq_q;
    nk[2] = (size_t)d->seq_kv;
    gen_strides(call.o_strides, nq, (size_t)d->head_dim_v, shape->varlen, so);
    eo = gen_extent(nq, (size_t)d->head_dim_v, so);
    ob = eo * es;
    obuf = malloc(ob + 2 * GUARD * 4);
    oc = malloc(c.no * es);
    if (shape->with_lse)
        lbuf = malloc((c.nlse + 2 * GUARD) * sizeof(float));
    if (!obuf || !oc || (shape->with_lse && !lbuf) ||
        !gen_place_inputs(shape, &call, &c, nq, nk, &in)) {
        printf("FAIL %s: out of memory\n", what);
        ok = 0;
        goto out;
    }
    memset(obuf, 0xff, ob + 2 * GUARD * 4);
    o = obuf + GUARD * 4;
    if (lbuf) {
        memset(lbuf, 0xff, (c.nlse + 2 * GUARD) * sizeof(float));
        lse = lbuf + GUARD;
    }
    s = attn_sdpa(ctx, &call, in.q, in.k, in.v, o, lse);
    ps->calls++;
    n_strided += shape->layout != GEN_CONTIG || shape->o_layout != GEN_CONTIG;
    n_packed += shape->varlen != 0;
    n_bf16 += d->dtype == ATTN_BF16;
    ps->flops += 2.0 * d->batch * d->heads_q * d->seq_q * (double)d->seq_kv *
                 (d->head_dim + d->head_dim_v);
    if (s != ATTN_OK) {
        printf("FAIL %s: attn_sdpa returned %s (%s)\n", what,
               attn_status_string(s), attn_context_last_error(ctx));
        ok = 0;
        goto out;
    }
    for (i = 0; i < GUARD * 4; i++)
        if (obuf[i] != 0xff || obuf[GUARD * 4 + ob + i] != 0xff)
            break;
    if (i < GUARD * 4) {
        printf("FAIL %s: attn_sdpa wrote outside o\n", what);
        ok = 0;
    }
    for (i = 0; lbuf && i < GUARD * sizeof(float); i++) {
        const unsigned char *head = (const unsigned char *)lbuf;
        const unsigned char *tail = (const unsigned char *)(lse + c.nlse);
        if (head[i] != 0xff || tail[i] != 0xff) {
            printf("FAIL %s: attn_sdpa wrote outside lse\n", what);
            ok = 0;
            break;
        }
    }
    /* o's rows to contiguous, then the gaps between them: untouched
     * (0xff bytes) */
    gen_move(o, oc, es, nq, (size_t)d->head_dim_v, so, 0);
    if (eo != c.no) {
        unsigned char *ff = malloc(c.no * es);
        if (!ff) {
            printf("FAIL %s: out of memory\n", what);
            ok = 0;
            goto out;
        }
        memset(ff, 0xff, c.no * es);
        gen_move(o, ff, es, nq, (size_t)d->head_dim_v, so, 1);
        free(ff);
        for (i = 0; i < ob && ((unsigned char *)o)[i] == 0xff; i++)
            ;
        if (i < ob) {
            printf("FAIL %s: attn_sdpa wrote a gap of o (byte %zu)\n", what, i);
            ok = 0;
        }
    }
    if (!check) {
        /* Cheap sanity: inputs are finite, so is every O. */
        for (i = 0; i < c.no && ok; i++) {
            double x = gen_out_at(d->dtype, oc, i);
            if (!isfinite(x)) {
                printf("FAIL %s: O[%zu] = %g\n", what, i, x);
                ok = 0;
            }
        }
        goto out;
    }
    ps->checked++;
    if (shape->varlen)
        ok &= gen_check_packed(&ps->max_ratio, ATTN_PRECISION_EXACT, shape, &c,
                               oc, lse, what);
    else
        ok &= gen_check_one(&ps->max_ratio, ATTN_PRECISION_EXACT, d, c.q, c.k,
                            c.v, oc, lse, what);
out:
    if (!ok)
        print_desc("shape", shape, &call);
    free(obuf);
    free(oc);
    free(lbuf);
    for (i = 0; i < 3; i++)
        free(in.buf[i]);
    sdpa_case_free(&c);
    return ok;
}

/* ---- one attn_mha_forward call ---------------------------------------- */

/* The call of c through a persistent layer (attn_mha_create), whole
 * (steps 0) or, for a causal self-attention layer without bias or kv_len,
 * in two steps through a KV cache: y is then what the whole causal call
 * gives.  Returns the first failing status. */
static attn_status layer_call(attn_context *ctx, const mha_case *c, int steps,
                              float *y)
{
    const int dm = c->m.d_model, n = c->seq_q;
    const size_t kvn = (size_t)c->batch * (size_t)c->m.heads_kv * (size_t)n *
                       (size_t)c->m.head_dim;
    attn_mha_layer *layer = NULL;
    attn_kv_cache kv = ATTN_KV_CACHE_INIT;
    float *xs = NULL, *ys = NULL;
    attn_status s = attn_mha_create(ctx, &c->m, 0.0f, &layer);
    if (s != ATTN_OK)
        return s;
    if (!steps) {
        s = attn_mha_forward_layer(ctx, layer, c->batch, c->seq_q, c->seq_kv,
                                   ATTN_F32, c->x_q, c->x_kv, &c->mask, NULL,
                                   y);
        attn_mha_destroy(layer);
        return s;
    }
    kv.k = malloc(kvn * sizeof(float));
    kv.v = malloc(kvn * sizeof(float));
    xs = malloc((size_t)c->batch * (size_t)n * (size_t)dm * sizeof(float));
    ys = malloc((size_t)c->batch * (size_t)n * (size_t)dm * sizeof(float));
    kv.capacity = n;
    s = kv.k && kv.v && xs && ys ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY;
    for (int a = 0; s == ATTN_OK && a < n;) {
        /* steps of about half the sequence, then the rest */
        const int len = a == 0 && n > 1 ? n / 2 : n - a;
        const size_t row = (size_t)dm * sizeof(float);
        for (int b = 0; b < c->batch; b++)
            memcpy(xs + (size_t)b * (size_t)len * (size_t)dm,
                   c->x_q + ((size_t)b * (size_t)n + (size_t)a) * (size_t)dm,
                   (size_t)len * row);
        s = attn_mha_forward_layer(ctx, layer, c->batch, len, len, ATTN_F32, xs,
                                   NULL, &c->mask, &kv, ys);
        for (int b = 0; s == ATTN_OK && b < c->batch; b++)
            memcpy(y + ((size_t)b * (size_t)n + (size_t)a) * (size_t)dm,
                   ys + (size_t)b * (size_t)len * (size_t)dm,
                   (size_t)len * row);
        a += len;
    }
    free(kv.k);
    free(kv.v);
    free(xs);
    free(ys);
    attn_mha_destroy(layer);
    return s;
}

static int mha_call(attn_context *ctx, path_stats *ps, gen_src *g,
                    uint64_t seed, int check, const char *what)
{
    static const gen_limits lim = {2, 4, 2, 40, 48, 32, 96, 64};
    mha_spec spec;
    mha_case c;
    double *ref = NULL;
    float *y;
    attn_status s;
    int ok = 1;

    gen_mha_spec(g, &lim, &spec);
    /* 0: attn_mha_forward; 1: a persistent layer; 2: the layer in steps
     * through a KV cache (causal self-attention, no bias, no kv_len) */
    int via = ps->calls == 0 ? 0 : gen_int(g, 0, 2);
    if (via == 2) {
        spec.self = 1;
        spec.seq_kv = spec.seq_q;
        spec.causal = 1;
        spec.with_kv_len = 0;
        spec.bias_kind = ATTN_BIAS_NONE;
    }
    if (ps->calls == 0) {
        /* The largest layer first (see draw_sdpa). */
        spec.d_model = lim.d_model;
        spec.heads_kv = lim.heads_kv;
        spec.heads_q = lim.heads_kv * lim.group;
        spec.head_dim = lim.head_dim;
        spec.batch = lim.batch;
        spec.seq_q = lim.seq_q;
        spec.seq_kv = lim.seq_kv;
        spec.self = 0;
        spec.with_bias = spec.with_kv_len = 1;
        spec.posenc = ATTN_POSENC_LEARNED;
        spec.pos_offset = lim.pos_offset;
        spec.bias_kind = ATTN_BIAS_FULL;
    }
    if (mha_case_init(&c, &spec, seed) != 0) {
        printf("FAIL %s: out of memory building the layer\n", what);
        return 0;
    }
    y = malloc(c.ny * sizeof *y);
    if (!y) {
        printf("FAIL %s: out of memory\n", what);
        mha_case_free(&c);
        return 0;
    }
    if (via == 0)
        s = attn_mha_forward(ctx, &c.m, c.batch, c.seq_q, c.seq_kv, c.x_q,
                             c.x_kv, &c.mask, y);
    else
        s = layer_call(ctx, &c, via == 2, y);
    ps->calls++;
    {
        /* Projections q, k, v, o, then the attention. */
        double inq = (double)spec.heads_q * spec.head_dim;
        double inkv = (double)spec.heads_kv * spec.head_dim;
        ps->flops += 2.0 * c.batch *
                     ((double)c.seq_q * spec.d_model * inq * 2.0 +
                      (double)c.seq_kv * spec.d_model * inkv * 2.0 +
                      2.0 * c.seq_q * (double)c.seq_kv * inq);
    }
    if (s != ATTN_OK) {
        printf("FAIL %s: %s returned %s (%s)\n", what,
               via == 0   ? "attn_mha_forward"
               : via == 1 ? "attn_mha_forward_layer"
                          : "attn_mha_forward_layer with a KV cache",
               attn_status_string(s), attn_context_last_error(ctx));
        ok = 0;
    } else if (!check) {
        for (size_t i = 0; i < c.ny && ok; i++)
            if (!isfinite(y[i])) {
                printf("FAIL %s: y[%zu] = %g\n", what, i, (double)y[i]);
                ok = 0;
            }
    } else if (!(ref = mha_case_reference(&c))) {
        printf("FAIL %s: out of memory in the oracle\n", what);
        ok = 0;
    } else {
        ps->checked++;
        for (size_t i = 0; i < c.ny; i++) {
            double r = fabs((double)y[i] - ref[i]) /
                       (REF_MHA_ABS + REF_MHA_REL * fabs(ref[i]));
            if (isnan(r))
                r = INFINITY;
            if (r > ps->max_ratio)
                ps->max_ratio = r;
        }
        if (!ref_check_f32(what, y, ref, c.ny, REF_MHA_ABS, REF_MHA_REL))
            ok = 0;
    }
    if (!ok)
        printf("  layer: d_model %d heads %d/%d head_dim %d batch %d seq "
               "%d/%d self %d bias %d score %d posenc %d offset %d causal %d "
               "window %d kv_len %d bias kind %d via %d\n",
               spec.d_model, spec.heads_q, spec.heads_kv, spec.head_dim,
               spec.batch, spec.seq_q, spec.seq_kv, spec.self, spec.with_bias,
               (int)spec.score, (int)spec.posenc, spec.pos_offset, spec.causal,
               spec.window, spec.with_kv_len, (int)spec.bias_kind, via);
    free(ref);
    free(y);
    mha_case_free(&c);
    return ok;
}

/* ---- the periodic extras ---------------------------------------------- */

/* A call the contract refuses must fail and leave o alone. */
static int refused_call(attn_context *ctx)
{
    float q[8] = {0}, o[8];
    attn_sdpa_desc d;
    attn_status s;
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = 3;
    d.heads_kv = 2; /* not a divisor */
    d.seq_q = d.seq_kv = 1;
    d.head_dim = d.head_dim_v = 4;
    memset(o, 0x5a, sizeof o);
    s = attn_sdpa(ctx, &d, q, q, q, o, NULL);
    for (size_t i = 0; i < sizeof o; i++)
        if (((unsigned char *)o)[i] != 0x5a)
            s = ATTN_OK;
    if (s != ATTN_ERR_INVALID_ARGUMENT) {
        printf("FAIL: an invalid call was not refused cleanly (%s)\n",
               attn_status_string(s));
        return 0;
    }
    return 1;
}

/* Creates a context, runs one checked call on it and destroys it. */
static int context_cycle(gen_src *g, int opencl, uint64_t seed)
{
    path_stats scratch;
    gen_sdpa shape;
    attn_context *ctx =
        open_context(opencl ? "cpu" : "native", ATTN_PATH_AUTO, 0);
    int ok;
    if (!ctx)
        return 0;
    memset(&scratch, 0, sizeof scratch);
    draw_sdpa(g, P_NATIVE, 0, &shape);
    ok = sdpa_call(ctx, &scratch, &shape, seed, 1, "context cycle");
    attn_context_destroy(ctx);
    return ok;
}

/* ---- main -------------------------------------------------------------- */

static int usage(void)
{
    printf("usage: attn-soak [--calls N] [--seed S] [--check-every K] "
           "[--paths LIST] [--warmup W] [--rss-limit-mib M] "
           "[--recreate-every R]\npaths: native,unfused,fused,decode,auto,"
           "2queues,2devices,mha,backward (default: all)\n");
    return 2;
}

static int parse_paths(const char *list)
{
    char buf[256], *tok, *save = NULL;
    snprintf(buf, sizeof buf, "%s", list);
    for (tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int p;
        if (!strcmp(tok, "all")) {
            for (p = 0; p < P_COUNT; p++)
                paths[p].enabled = 1;
            continue;
        }
        for (p = 0; p < P_COUNT && strcmp(tok, path_names[p]); p++)
            ;
        if (p == P_COUNT) {
            printf("attn-soak: unknown path \"%s\"\n", tok);
            return 0;
        }
        paths[p].enabled = 1;
    }
    return 1;
}

static int arg_long(const char *s, long lo, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo)
        return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv)
{
    long calls = 10000, seed = 1, check_every = 10, warmup = -1, rss_limit = 8,
         recreate = 250;
    const char *list = "all";
    size_t n_devices = 0;
    int order[P_COUNT], n_order = 0, have_opencl;
    long rss_start, rss_warm = 0, rss_end, heap_warm = 0, heap_end;
    double t0;
    gen_src g;

    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (!strcmp(a, "--calls"))
            ok = ok && arg_long(v, 1, &calls);
        else if (!strcmp(a, "--seed"))
            ok = ok && arg_long(v, 0, &seed);
        else if (!strcmp(a, "--check-every"))
            ok = ok && arg_long(v, 1, &check_every);
        else if (!strcmp(a, "--warmup"))
            ok = ok && arg_long(v, 0, &warmup);
        else if (!strcmp(a, "--rss-limit-mib"))
            ok = ok && arg_long(v, 0, &rss_limit);
        else if (!strcmp(a, "--recreate-every"))
            ok = ok && arg_long(v, 1, &recreate);
        else if (!strcmp(a, "--paths"))
            list = v;
        else
            return usage();
        if (!ok)
            return usage();
    }
    if (!parse_paths(list))
        return usage();
    if (warmup < 0)
        warmup = calls / 5 > 100 ? calls / 5 : 100;
    if (warmup >= calls)
        warmup = calls / 2;

    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines as they come */
    rss_start = rss_kib();
    t0 = now();
    attn_devices(NULL, 0, &n_devices);
    have_opencl = n_devices > 0;
    printf("attn-soak: %ld calls, seed %ld, oracle every %ld calls, warm-up "
           "%ld calls, %zu OpenCL device%s\n",
           calls, seed, check_every, warmup, n_devices,
           n_devices == 1 ? "" : "s");

    /* One context per path configuration, created once. */
    for (int p = 0; p < P_COUNT; p++) {
        path_stats *ps = &paths[p];
        if (!ps->enabled)
            continue;
        if (p != P_NATIVE && p != P_MHA && p != P_BWD && !have_opencl) {
            printf("attn-soak: path %s skipped: no OpenCL device\n",
                   path_names[p]);
            ps->enabled = 0;
            continue;
        }
        switch (p) {
        case P_NATIVE:
            ps->ctx = open_context("native", ATTN_PATH_AUTO, 0);
            break;
        case P_BWD:
            bwd_ctx[0] = open_context("native", ATTN_PATH_AUTO, 0);
            if (have_opencl) {
                bwd_ctx[1] =
                    open_context_kernel("cpu", ATTN_PATH_AUTO, 1, "bwd_fused");
                bwd_ctx[2] =
                    open_context_kernel("cpu", ATTN_PATH_AUTO, 1, "bwd_ref");
                bwd_ctx[3] =
                    open_context_kernel("cpu", ATTN_PATH_AUTO, 1, "bwd_tiled");
                /* bwd_tiled's programs, every class of head sizes, built
                 * now: drawn shapes reach the rarer classes only after the
                 * warm-up (+5.5 MiB of heap over the last 8,000 calls) */
                if (bwd_ctx[3] && sdpa_backward_warm(bwd_ctx[3]) != ATTN_OK) {
                    printf("FAIL building bwd_tiled's programs: %s\n",
                           attn_context_last_error(bwd_ctx[3]));
                    attn_context_destroy(bwd_ctx[3]);
                    bwd_ctx[3] = NULL;
                }
            }
            ps->ctx = bwd_ctx[0];
            if (have_opencl && (!bwd_ctx[1] || !bwd_ctx[2] || !bwd_ctx[3]))
                ps->ctx = NULL;
            break;
        case P_UNFUSED:
            ps->ctx = open_context("cpu", ATTN_PATH_UNFUSED, 1);
            break;
        case P_FUSED:
            ps->ctx = open_context("cpu", ATTN_PATH_FUSED, 1);
            break;
        case P_DECODE:
        case P_AUTO:
            ps->ctx = open_context("cpu", ATTN_PATH_AUTO, 1);
            break;
        case P_2QUEUES:
            ps->ctx = open_context("cpu", ATTN_PATH_AUTO, 2);
            break;
        case P_2DEVICES:
            ps->ctx = open_context("all", ATTN_PATH_AUTO, 2);
            if (n_devices < 2)
                printf("attn-soak: path 2devices has %zu device (set "
                       "POCL_DEVICES=\"pthread pthread\" for two)\n",
                       n_devices);
            break;
        case P_MHA:
            mha_ctx[0] = open_context("native", ATTN_PATH_AUTO, 0);
            if (have_opencl) {
                mha_ctx[1] = open_context("cpu", ATTN_PATH_AUTO, 1);
                mha_ctx[2] = open_context("all", ATTN_PATH_AUTO, 2);
            }
            ps->ctx = mha_ctx[0];
            if (have_opencl && (!mha_ctx[1] || !mha_ctx[2]))
                ps->ctx = NULL;
            break;
        }
        if (!ps->ctx) {
            printf("attn-soak: cannot create the context of path %s\n",
                   path_names[p]);
            return 2;
        }
        order[n_order++] = p;
    }
    if (n_order == 0) {
        printf("attn-soak: no path to run\n");
        return 2;
    }

    gen_from_seed(&g, (uint64_t)seed * 0x9e3779b97f4a7c15ull + 17);
    for (long i = 0; i < calls; i++) {
        int p = order[i % n_order];
        path_stats *ps = &paths[p];
        int check = ps->calls % (unsigned long)check_every == 0;
        uint64_t call_seed = (uint64_t)seed << 32 ^ (uint64_t)i;
        char what[96];
        int ok;
        snprintf(what, sizeof what, "call %ld (path %s, seed %ld)", i,
                 path_names[p], seed);
        if (p == P_MHA) {
            attn_context *ctx = mha_ctx[have_opencl ? ps->calls % 3 : 0];
            ok = mha_call(ctx, ps, &g, call_seed, check, what);
        } else if (p == P_BWD) {
            gen_sdpa shape;
            double r;
            const int k = have_opencl ? (int)(ps->calls % N_BWD_CTX) : 0;
            draw_sdpa(&g, p, ps->calls == 0, &shape);
            /* BF16 on the native context only: with BF16 calls on the
             * OpenCL contexts as well, PoCL maps kernel objects for them
             * for thousands of calls (the process's mappings grew from
             * 737 to 836 over the first 6,400 backward calls, 844 by
             * 16,000, the malloc heap flat), past the warm-up this soak
             * can afford */
            if (k != 0 && shape.d.dtype == ATTN_BF16)
                shape.d.dtype = ATTN_F32;
            if (k == 1 || k == 3) {
                /* bwd_fused, bwd_tiled: dot-product scores, no dbias */
                shape.d.score = ATTN_SCORE_DOT;
                shape.d.additive_w = NULL;
            }
            /* bwd_ref computes dbias and d additive_w, except for a bias
             * merged with keep or the starts on the device */
            ok = soak_backward(bwd_ctx[k], &shape, call_seed, check,
                               k == 0   ? 1
                               : k == 2 ? 2
                                        : 0,
                               what, &r);
            ps->calls++;
            ps->checked += r >= 0.0;
            ps->max_ratio = r > ps->max_ratio ? r : ps->max_ratio;
            ps->flops += 5.0 * shape.d.batch * shape.d.heads_q * shape.d.seq_q *
                         (double)shape.d.seq_kv *
                         (shape.d.head_dim + shape.d.head_dim_v);
        } else {
            gen_sdpa shape;
            draw_sdpa(&g, p, ps->calls == 0, &shape);
            ok = sdpa_call(ps->ctx, ps, &shape, call_seed, check, what);
        }
        if (!ok) {
            ps->failures++;
            total_failures++;
        }
        if (i % 50 == 49) {
            n_refused++;
            if (!refused_call(ps->ctx))
                total_failures++;
        }
        if (i % recreate == recreate - 1) {
            n_cycles++;
            if (!context_cycle(&g, have_opencl && (i / recreate) % 2,
                               call_seed ^ 0x5bd1e995))
                total_failures++;
        }
        if (i + 1 == warmup) {
            rss_warm = rss_kib();
            heap_warm = heap_kib();
        }
        if ((i + 1) % (calls / 10 > 0 ? calls / 10 : 1) == 0)
            printf("  %6ld calls, %6.1f s, RSS %.1f MiB, heap %.1f MiB\n",
                   i + 1, now() - t0, rss_kib() / 1024.0, heap_kib() / 1024.0);
        if (total_failures >= 20) {
            printf("attn-soak: stopping after 20 failures\n");
            break;
        }
    }
    rss_end = rss_kib();
    heap_end = heap_kib();

    printf("\n%-9s %8s %8s %12s %9s %9s\n", "path", "calls", "checked",
           "max err/tol", "failures", "GFLOP");
    for (int k = 0; k < n_order; k++) {
        path_stats *ps = &paths[order[k]];
        printf("%-9s %8lu %8lu %12.4f %9lu %9.2f\n", path_names[order[k]],
               ps->calls, ps->checked, ps->max_ratio, ps->failures,
               ps->flops * 1e-9);
    }
    {
        unsigned long total = 0;
        for (int k = 0; k < n_order; k++)
            total += paths[order[k]].calls;
        printf("total     %8lu calls in %.1f s; also %lu context cycles "
               "(create, call, destroy) and %lu invalid calls refused\n",
               total, now() - t0, n_cycles, n_refused);
        printf("attn_sdpa calls with strided tensors %lu, packed batches "
               "%lu, bf16 storage %lu\n",
               n_strided, n_packed, n_bf16);
    }
    printf("RSS: start %.1f MiB, after warm-up (%ld calls) %.1f MiB, end "
           "%.1f MiB, growth %+.1f MiB (limit %ld MiB)\n",
           rss_start / 1024.0, warmup, rss_warm / 1024.0, rss_end / 1024.0,
           (rss_end - rss_warm) / 1024.0, rss_limit);
#ifdef SOAK_ASAN
    printf("AddressSanitizer build: RSS holds its quarantine; the limit "
           "applies to the memory in use below\n");
#endif
    if (heap_end >= 0)
        printf("heap in use (malloc): after warm-up %.1f MiB, end %.1f MiB, "
               "growth %+.2f MiB\n",
               heap_warm / 1024.0, heap_end / 1024.0,
               (heap_end - heap_warm) / 1024.0);

    for (int p = 0; p < P_COUNT; p++)
        if (p != P_MHA && p != P_BWD)
            attn_context_destroy(paths[p].ctx);
    for (int k = 0; k < 3; k++)
        attn_context_destroy(mha_ctx[k]);
    for (int k = 0; k < N_BWD_CTX; k++)
        attn_context_destroy(bwd_ctx[k]);

    if (total_failures) {
        printf("attn-soak: FAIL (%lu failures)\n", total_failures);
        return 1;
    }
#ifdef SOAK_ASAN
    if (rss_limit > 0 && heap_end - heap_warm > rss_limit * 1024) {
        printf("attn-soak: FAIL (memory in use grew by more than %ld MiB "
               "after the warm-up)\n",
               rss_limit);
        return 1;
    }
#else
    if (rss_limit > 0 && rss_end - rss_warm > rss_limit * 1024) {
        printf("attn-soak: FAIL (RSS grew by more than %ld MiB after the "
               "warm-up)\n",
               rss_limit);
        return 1;
    }
#endif
    printf("attn-soak: PASS\n");
    return 0;
}
