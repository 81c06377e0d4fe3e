/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the public API: random and hostile descriptors,
 * sizes, masks, enum values and option strings thrown at attn_sdpa,
 * attn_mha_forward, attn_context_create and the device selector.
 *
 * Every buffer is allocated separately at exactly the size the descriptor
 * implies, so AddressSanitizer catches any read or write past it.  The
 * harness keeps its own model of what the contract accepts:
 *
 * - a call the model rejects gets real buffers when they fit the caps below
 *   and 64-byte dummies otherwise; it must fail, with o / lse / y
 *   untouched (canary bytes) - a wrong acceptance reads past the dummies;
 * - a call the model accepts runs when it fits the caps and must succeed
 *   (OK, or UNSUPPORTED on an OpenCL device run with fallback off); its
 *   inputs must stay unchanged and its outputs must make sense: a row with
 *   every key hidden gives O = 0 and lse = -inf, any other row gives values
 *   inside the range of the V rows it sees and a finite lse, unless it sees
 *   a NaN / Inf planted in the inputs or its scores may overflow;
 * - a valid call too big to run is made with q = NULL instead and must be
 *   refused without touching anything.
 *
 * Every status must be an attn_status.  A failed expectation aborts, which
 * libFuzzer reports as a crash with the input saved.  See README.md.
 */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/attn.h"
#include "attn_gen.h"
#include "fuzz_common.h"
#include "ref.h"
#ifdef ATTN_HAVE_OPENCL
#include "opencl/discovery.h"
#endif

/* The harness's own loops over tensors run without coverage feedback or
 * sanitizer checks: they would slow every input down and teach the fuzzer
 * nothing about the library. */
#if defined(__clang__)
#define NO_COVERAGE                                                            \
    __attribute__((noinline, no_sanitize("coverage", "address", "undefined")))
#else
#define NO_COVERAGE
#endif

/* Most bytes of buffers one call allocates, and most multiply-adds it may
 * cost; bigger valid problems are not run. */
#define CAP_BYTES ((size_t)2 << 20)
#define CAP_WORK  1.5e6
#define DUMMY     64 /* bytes of a stand-in buffer */
#define CANARY    0xa5

/* ---- failures --------------------------------------------------------- */

char fuzz_current[1024];

void fuzz_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  in %s\n", fuzz_current[0] ? fuzz_current : "(setup)");
    abort();
}

int fuzz_is_status(attn_status s)
{
    return (int)s >= ATTN_OK && (int)s <= ATTN_ERR_IO;
}

static void describe_sdpa(const char *ctx, const attn_sdpa_desc *d,
                          const void *q, const void *k, const void *v,
                          const void *o, const float *lse)
{
    snprintf(fuzz_current, sizeof fuzz_current,
             "attn_sdpa on %s: batch %d heads_q %d heads_kv %d seq_q %d "
             "seq_kv %d head_dim %d head_dim_v %d scale %g score %d dtype %d "
             "causal %d window %d align %d offset %lld kv_len %s bias %s "
             "kind %d additive_w %s; q %p k %p v %p o %p lse %p",
             ctx, d->batch, d->heads_q, d->heads_kv, d->seq_q, d->seq_kv,
             d->head_dim, d->head_dim_v, (double)d->scale, (int)d->score,
             (int)d->dtype, d->mask.causal, d->mask.window,
             (int)d->causal_align, (long long)d->causal_offset,
             d->mask.kv_len ? "set" : "NULL", d->mask.bias ? "set" : "NULL",
             (int)d->mask.bias_kind, d->additive_w ? "set" : "NULL", q, k, v, o,
             (const void *)lse);
}

/* ---- counters (printed at exit when ATTN_FUZZ_STATS is set) ----------- */

enum {
    ST_SDPA_RUN,       /* valid attn_sdpa calls run and checked */
    ST_SDPA_CL,        /* of which on an OpenCL context */
    ST_SDPA_REDUCED,   /* of which with reduced-precision products (BF16) */
    ST_SDPA_REFUSED,   /* invalid calls refused */
    ST_SDPA_BIG,       /* valid but too big: run with q NULL */
    ST_SDPA_UNSUP,     /* valid, UNSUPPORTED on the device */
    ST_SDPA_BWD,       /* backward passes of those run */
    ST_PLACED_RUN,     /* strided or packed calls run and checked */
    ST_PLACED_REFUSED, /* spoiled strided or packed calls refused */
    ST_PLACED_BWD,     /* backward passes of strided calls, compared */
    ST_MHA_RUN,
    ST_MHA_CL,
    ST_MHA_REFUSED,
    ST_MHA_BIG,
    ST_LAYER_RUN,     /* the same call through a persistent layer, compared */
    ST_CLBUF_RUN,     /* attn_sdpa_cl_buffers run and checked */
    ST_CLBUF_REFUSED, /* refused as the model said */
    ST_SELECT_OK,
    ST_SELECT_ERR,
    ST_CTX_OK,
    ST_CTX_ERR,
    ST_MISC,
    ST_N
};
static const char *const stat_names[ST_N] = {"sdpa run",
                                             "sdpa run on OpenCL",
                                             "sdpa run with BF16 products",
                                             "sdpa refused",
                                             "sdpa too big",
                                             "sdpa unsupported on OpenCL",
                                             "sdpa backward run",
                                             "strided/packed sdpa run",
                                             "strided/packed sdpa refused",
                                             "strided sdpa backward run",
                                             "mha run",
                                             "mha run on OpenCL",
                                             "mha refused",
                                             "mha too big",
                                             "layer run",
                                             "cl buffers run",
                                             "cl buffers refused",
                                             "select ok",
                                             "select error",
                                             "context created",
                                             "context refused",
                                             "other calls"};
static unsigned long stats[ST_N];
static double op_seconds[16];
static unsigned long op_count[16];

static void print_stats(void)
{
    fprintf(stderr, "fuzz_attn: counts:");
    for (int i = 0; i < ST_N; i++)
        fprintf(stderr, "%s %s %lu", i ? "," : "", stat_names[i], stats[i]);
    {
        unsigned long bwd_auto = 0, bwd_tiled = 0;
        fuzz_cl_counts(&bwd_auto, &bwd_tiled);
        fprintf(stderr,
                ", cl buffers backward run %lu (AUTO's variant %lu, "
                "bwd_tiled %lu)",
                bwd_auto + bwd_tiled, bwd_auto, bwd_tiled);
    }
    fprintf(stderr, "\nfuzz_attn: ms per input by first byte %% 16:");
    for (int i = 0; i < 16; i++)
        fprintf(stderr, " %d:%.2f", i,
                op_count[i] ? 1e3 * op_seconds[i] / (double)op_count[i] : 0.0);
    fprintf(stderr, "\n");
}

/* ---- the buffers of one input ------------------------------------------ */

#define MAX_BLOCKS 64
static void *blocks[MAX_BLOCKS];
static int n_blocks;

static void *take(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    REQUIRE(p && n_blocks < MAX_BLOCKS, "out of memory (%zu bytes)", bytes);
    blocks[n_blocks++] = p;
    return p;
}

static void release_all(void)
{
    while (n_blocks > 0)
        free(blocks[--n_blocks]);
}

static void *copy_of(const void *p, size_t bytes)
{
    void *c;
    if (!p)
        return NULL;
    c = take(bytes);
    memcpy(c, p, bytes);
    return c;
}

NO_COVERAGE static int all_bytes(const void *p, size_t n, unsigned char v)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != v)
            return 0;
    return 1;
}

/* a * b, 0 on overflow. */
static int mul(size_t *r, size_t a, size_t b)
{
    return !__builtin_mul_overflow(a, b, r);
}

/* Bytes of a tensor of positive dims; 0 when it cannot be addressed. */
static int tensor_bytes(size_t *out, size_t elem, int n, const int *dims)
{
    size_t acc = elem;
    for (int i = 0; i < n; i++)
        if (dims[i] <= 0 || !mul(&acc, acc, (size_t)dims[i]))
            return 0;
    *out = acc;
    return acc <= PTRDIFF_MAX;
}

static int overlap(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return a && b && na && nb && x < y + nb && y < x + na;
}

/* ---- values ---------------------------------------------------------- */

/* Sizes and counts that break arithmetic: 46341 squared overflows int. */
static const int hostile_ints[] = {0,
                                   -1,
                                   1,
                                   2,
                                   3,
                                   INT32_MIN,
                                   INT32_MAX,
                                   INT32_MAX - 1,
                                   INT32_MAX / 2,
                                   46341,
                                   65536,
                                   1 << 20,
                                   1 << 24,
                                   1000,
                                   -1000};

static int hostile_int(gen_src *g)
{
    if (gen_chance(g, 20))
        return (int)gen_u32(g);
    return gen_pick(g, hostile_ints, sizeof hostile_ints / sizeof(int));
}

/* An enum field: in range, just out of it, or anything. */
static int hostile_enum(gen_src *g, int last)
{
    static const int outside[] = {-1, INT32_MIN, INT32_MAX, 1000};
    switch (gen_int(g, 0, 3)) {
    case 0:
        return gen_int(g, 0, last);
    case 1:
        return last + 1;
    case 2:
        return gen_pick(g, outside, 4);
    default:
        return (int)gen_u32(g);
    }
}

/* The first value past [0, n] (a kv_len entry one too big). */
static int past(int n)
{
    return n < INT32_MAX ? n + 1 : -1;
}

static float hostile_float(gen_src *g)
{
    static const float v[] = {0.0f,   -0.0f,    1.0f,      -1.0f, 0.125f,
                              NAN,    INFINITY, -INFINITY, 1e30f, -1e30f,
                              1e-45f, 3.4e38f,  65504.0f,  1e-8f};
    return v[gen_int(g, 0, (int)(sizeof v / sizeof v[0]) - 1)];
}

static float poison_value(gen_src *g)
{
    static const float v[] = {NAN, INFINITY, -INFINITY};
    return v[gen_int(g, 0, 2)];
}

NO_COVERAGE static void fill(ref_rng *r, void *x, size_t n, int f16, double amp)
{
    if (f16 == 2)
        ref_fill_bf16(r, x, n, -amp, amp);
    else if (f16)
        ref_fill_f16(r, x, n, -amp, amp);
    else
        ref_fill_f32(r, x, n, -amp, amp);
}

static float half_table[65536];

NO_COVERAGE static void half_table_init(void)
{
    for (uint32_t h = 0; h < 65536; h++)
        half_table[h] = ref_f16_to_f32((uint16_t)h);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((always_inline))
#endif
static inline float
elem(const void *x, size_t i, int f16)
{
    return f16 == 2 ? ref_bf16_to_f32(((const uint16_t *)x)[i])
           : f16    ? half_table[((const uint16_t *)x)[i]]
                    : ((const float *)x)[i];
}

NO_COVERAGE static void set_elem(void *x, size_t i, int f16, float v)
{
    if (f16 == 2)
        ((uint16_t *)x)[i] = ref_f32_to_bf16(v);
    else if (f16)
        ((uint16_t *)x)[i] = ref_f32_to_f16(v);
    else
        ((float *)x)[i] = v;
}

/* ---- contexts ---------------------------------------------------------- */

/* Log callback: every message must be a short NUL-terminated string at a
 * real level. */
static void check_log(int level, const char *msg, void *user)
{
    (void)user;
    REQUIRE(level >= ATTN_LOG_ERROR && level <= ATTN_LOG_DEBUG, "log level %d",
            level);
    REQUIRE(msg && strlen(msg) < 4096, "log message missing or too long");
}

/* native: one thread, two threads, two threads with BF16 products asked
 * (they run where the CPU has AVX512_BF16) */
enum { N_NATIVE = 3, N_CL = 5 };
static attn_context *native_ctx[N_NATIVE];
/* AUTO, FUSED, UNFUSED, AUTO with 2 queues; AUTO over every usable device
 * ("all": two with POCL_DEVICES="pthread pthread", scripts/fuzz.sh), NULL
 * when there is only one. */
static attn_context *cl_ctx[N_CL];
static int have_cl, have_cl_buffers;
static double cl_share = 0.2; /* most of the time spent on OpenCL runs */
static double t_start, t_cl;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static attn_context *make_context_at(const char *device, int threads,
                                     attn_path path, int queues, int log_level,
                                     attn_precision precision)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    o.precision = precision;
    o.device = device;
    o.threads = threads;
    o.path = path;
    o.queues = queues;
    o.allow_fallback = 0;
    o.log = check_log;
    o.log_level = log_level;
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return NULL;
    return ctx;
}

static attn_context *make_context(const char *device, int threads,
                                  attn_path path, int queues, int log_level)
{
    return make_context_at(device, threads, path, queues, log_level,
                           ATTN_PRECISION_EXACT);
}

static void run_sdpa_once(attn_context *ctx, int seq_q, int seq_kv,
                          attn_dtype dt);
static void run_mha_once(attn_context *ctx);

/* PoCL loads LLVM, which installs its own handlers for crash signals when
 * the first OpenCL context is made.  libFuzzer then leaves those signals
 * alone, and an abort() of a failed check would end the run without the
 * input being saved.  The handlers from before OpenCL came are put back
 * (PoCL's SIGFPE handler stays: its kernels need it). */
static const int crash_signals[] = {SIGABRT, SIGSEGV, SIGILL,  SIGBUS, SIGINT,
                                    SIGTERM, SIGUSR1, SIGUSR2, SIGXFSZ};
#define N_CRASH_SIGNALS (sizeof crash_signals / sizeof crash_signals[0])

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sigaction saved[N_CRASH_SIGNALS];
    const char *share = getenv("ATTN_FUZZ_OPENCL_SHARE");
    const char *dev = getenv("ATTN_FUZZ_DEVICE");
    (void)argc;
    (void)argv;
    t_start = now();
    half_table_init();
    for (size_t i = 0; i < N_CRASH_SIGNALS; i++)
        sigaction(crash_signals[i], NULL, &saved[i]);
    if (getenv("ATTN_FUZZ_STATS"))
        atexit(print_stats);
    native_ctx[0] =
        make_context("native", 1, ATTN_PATH_AUTO, 0, ATTN_LOG_DEBUG);
    native_ctx[1] = make_context("native", 2, ATTN_PATH_AUTO, 0, ATTN_LOG_OFF);
    native_ctx[2] = make_context_at("native", 2, ATTN_PATH_AUTO, 0,
                                    ATTN_LOG_OFF, ATTN_PRECISION_BF16);
    if (!native_ctx[0] || !native_ctx[1] || !native_ctx[2]) {
        fprintf(stderr, "fuzz_attn: no native context: %s\n",
                attn_last_error());
        abort();
    }
    if (share && *share)
        cl_share = atof(share) / 100.0;
    if (!dev || !*dev)
        dev = "cpu";
    if (cl_share > 0.0) {
        cl_ctx[0] = make_context(dev, 0, ATTN_PATH_AUTO, 1, ATTN_LOG_OFF);
        cl_ctx[1] = make_context(dev, 0, ATTN_PATH_FUSED, 1, ATTN_LOG_OFF);
        cl_ctx[2] = make_context(dev, 0, ATTN_PATH_UNFUSED, 1, ATTN_LOG_OFF);
        cl_ctx[3] = make_context(dev, 0, ATTN_PATH_AUTO, 2, ATTN_LOG_OFF);
        have_cl = cl_ctx[0] && cl_ctx[1] && cl_ctx[2] && cl_ctx[3];
        if (have_cl) {
            attn_device_info all[2] = {ATTN_DEVICE_INFO_INIT};
            size_t n = 0;
            if (attn_devices(all, 2, &n) == ATTN_OK && n >= 2)
                cl_ctx[4] =
                    make_context("all", 0, ATTN_PATH_AUTO, 1, ATTN_LOG_OFF);
        }
    }
    if (have_cl) {
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        double t0 = now();
        attn_context_device(cl_ctx[0], &info);
        /* Build every program now, not inside a timed input. */
        for (int c = 0; c < N_CL && cl_ctx[c]; c++) {
            for (int dt = 0; dt < 2; dt++) {
                run_sdpa_once(cl_ctx[c], 1, 9, (attn_dtype)dt);
                run_sdpa_once(cl_ctx[c], 7, 9, (attn_dtype)dt);
            }
            run_mha_once(cl_ctx[c]);
        }
#ifdef ATTN_HAVE_OPENCL
        have_cl_buffers = fuzz_cl_init(cl_ctx[0]) == 0;
#endif
        fprintf(stderr,
                "fuzz_attn: OpenCL runs on \"%s\" (device \"%s\"), at most "
                "%.0f%% of the time; %s; caller buffers %s; kernels ready in "
                "%.1f s\n",
                info.name, dev, 100.0 * cl_share,
                cl_ctx[4] ? "a context on two devices" : "one device",
                have_cl_buffers ? "on" : "off", now() - t0);
    } else {
        fprintf(stderr, "fuzz_attn: no OpenCL runs (device \"%s\": %s)\n", dev,
                cl_share > 0.0 ? attn_last_error() : "disabled");
    }
    {
        /* Bring OpenCL up now in any case (inputs create contexts). */
        size_t n;
        attn_devices(NULL, 0, &n);
        attn_context_destroy(
            make_context(dev, 0, ATTN_PATH_AUTO, 0, ATTN_LOG_OFF));
    }
    for (size_t i = 0; i < N_CRASH_SIGNALS; i++)
        sigaction(crash_signals[i], &saved[i], NULL);
    return 0;
}

/* An OpenCL context for this input, or NULL when the time budget says
 * native. */
static attn_context *pick_cl(gen_src *g)
{
    int which = gen_u8(g) % N_CL;
    double total = now() - t_start;
    if (!have_cl || t_cl > cl_share * total)
        return NULL;
    return cl_ctx[which] ? cl_ctx[which] : cl_ctx[0];
}

/* ---- attn_sdpa --------------------------------------------------------- */

typedef struct sdpa_bytes {
    int ok; /* every size addressable */
    size_t q, k, v, o, lse, bias, addw, kv_len, keep;
} sdpa_bytes;

/* The extents over batch, heads and queries of a bias of kind k (shape:
 * attn_sdpa_desc.bias_shape, NULL for a mask alone), as attn.h defines
 * them; 0 when the kind is not one or takes no shape there. */
static int bias_extents(attn_bias_kind k, const int *shape, int batch,
                        int heads_q, int seq_q, int ext[3])
{
    ext[0] = k == ATTN_BIAS_FULL || k == ATTN_BIAS_KEY ? batch : 1;
    ext[1] = k == ATTN_BIAS_FULL || k == ATTN_BIAS_PER_HEAD ? heads_q : 1;
    ext[2] = k >= ATTN_BIAS_SHARED && k <= ATTN_BIAS_FULL ? seq_q : 1;
    if (k == ATTN_BIAS_BROADCAST) {
        if (!shape)
            return 0;
        for (int i = 0; i < 3; i++)
            ext[i] = shape[i];
    }
    return k >= ATTN_BIAS_SHARED && k <= ATTN_BIAS_BROADCAST;
}

/* Index of bias entry (b, h, i, j) in a bias of extents ext. */
static size_t bias_index(const attn_sdpa_desc *d, const int ext[3], int b,
                         int h, int i, int j)
{
    size_t at = (size_t)(ext[0] > 1 ? b : 0);
    at = at * (size_t)ext[1] + (size_t)(ext[1] > 1 ? h : 0);
    at = at * (size_t)ext[2] + (size_t)(ext[2] > 1 ? i : 0);
    return at * (size_t)d->seq_kv + (size_t)j;
}

static sdpa_bytes sdpa_sizes(const attn_sdpa_desc *d)
{
    int ext[3];
    sdpa_bytes z;
    size_t es = d->dtype == ATTN_F32 ? 4 : 2;
    int dq[4] = {d->batch, d->heads_q, d->seq_q, d->head_dim};
    int dk[4] = {d->batch, d->heads_kv, d->seq_kv, d->head_dim};
    int dv[4] = {d->batch, d->heads_kv, d->seq_kv, d->head_dim_v};
    int dout[4] = {d->batch, d->heads_q, d->seq_q, d->head_dim_v};
    int dw[2] = {d->heads_q, d->head_dim};
    memset(&z, 0, sizeof z);
    z.ok = tensor_bytes(&z.q, es, 4, dq) && tensor_bytes(&z.k, es, 4, dk) &&
           tensor_bytes(&z.v, es, 4, dv) && tensor_bytes(&z.o, es, 4, dout) &&
           tensor_bytes(&z.lse, 4, 3, dout);
    if (bias_extents(d->mask.bias_kind, d->bias_shape, d->batch, d->heads_q,
                     d->seq_q, ext)) {
        int dbias[4] = {ext[0], ext[1], ext[2], d->seq_kv};
        z.ok &= tensor_bytes(&z.bias, 4, 4, dbias);
    }
    if (d->score == ATTN_SCORE_ADDITIVE)
        z.ok &= tensor_bytes(&z.addw, 4, 2, dw);
    if (d->keep_shape[0] || d->keep_shape[1] || d->keep_shape[2]) {
        int dkeep[4] = {d->keep_shape[0], d->keep_shape[1], d->keep_shape[2],
                        d->seq_kv};
        z.ok &= tensor_bytes(&z.keep, 1, 4, dkeep);
    }
    if (d->batch > 0)
        z.kv_len = (size_t)d->batch * sizeof(int32_t);
    return z;
}

/* What the contract says of the call: 1 when it must be accepted. */
static int sdpa_valid(const attn_sdpa_desc *d, const sdpa_bytes *z,
                      const void *q, const void *k, const void *v,
                      const void *o, const float *lse)
{
    const attn_mask_desc *m = &d->mask;
    if (d->batch <= 0 || d->heads_q <= 0 || d->heads_kv <= 0 || d->seq_q <= 0 ||
        d->seq_kv <= 0 || d->head_dim <= 0 || d->head_dim_v <= 0 ||
        d->heads_q % d->heads_kv != 0)
        return 0;
    if ((unsigned)d->score > ATTN_SCORE_ADDITIVE ||
        (unsigned)d->dtype > ATTN_BF16 || !isfinite(d->scale))
        return 0;
    if (d->score == ATTN_SCORE_ADDITIVE && !d->additive_w)
        return 0;
    if (d->keep)
        for (int i = 0; i < 3; i++)
            if (d->keep_shape[i] != 1 &&
                d->keep_shape[i] != (i == 0   ? d->batch
                                     : i == 1 ? d->heads_q
                                              : d->seq_q))
                return 0;
    if (m->bias_kind == ATTN_BIAS_BROADCAST)
        for (int i = 0; i < 3; i++)
            if (d->bias_shape[i] != 1 &&
                d->bias_shape[i] != (i == 0   ? d->batch
                                     : i == 1 ? d->heads_q
                                              : d->seq_q))
                return 0;
    if (m->window < 0 || (unsigned)m->bias_kind > ATTN_BIAS_BROADCAST ||
        (m->bias_kind != ATTN_BIAS_NONE) != (m->bias != NULL) ||
        (m->causal != 0 && m->causal != 1) ||
        (unsigned)d->causal_align > ATTN_CAUSAL_TOP_LEFT)
        return 0;
    {
        /* the diagonal, in int64 (a hostile offset may be anywhere) */
        const long double diag =
            (long double)(d->causal_align == ATTN_CAUSAL_TOP_LEFT
                              ? 0
                              : (long long)d->seq_kv - d->seq_q) +
            (long double)d->causal_offset;
        if (diag < 1 - (long double)d->seq_q ||
            diag > (long double)d->seq_kv - 1)
            return 0;
    }
    if (m->kv_len)
        for (int b = 0; b < d->batch; b++)
            if (m->kv_len[b] < 0 || m->kv_len[b] > d->seq_kv)
                return 0;
    if (!q || !k || !v || !o || !z->ok)
        return 0;
    if (overlap(o, z->o, q, z->q) || overlap(o, z->o, k, z->k) ||
        overlap(o, z->o, v, z->v) || overlap(lse, z->lse, q, z->q) ||
        overlap(lse, z->lse, k, z->k) || overlap(lse, z->lse, v, z->v) ||
        overlap(lse, z->lse, o, z->o))
        return 0;
    return 1;
}

/* Key j is visible to query row (b, h, i) through the masks. */
NO_COVERAGE static int visible(const attn_sdpa_desc *d, int b, int h, int i,
                               int j)
{
    const attn_mask_desc *m = &d->mask;
    const long qs = d->q_start ? (long)d->q_start[b] : 0;
    const long ks = d->kv_start ? (long)d->kv_start[b] : 0;
    long off =
        (d->causal_align == ATTN_CAUSAL_TOP_LEFT ? ks - qs
                                                 : (long)d->seq_kv - d->seq_q) +
        (long)d->causal_offset;
    if (i < qs || j < ks) /* left padding */
        return 0;
    if (m->causal && j > i + off)
        return 0;
    if (m->window > 0 && j < i + off - m->window + 1)
        return 0;
    if (m->kv_len && j >= m->kv_len[b])
        return 0;
    if (d->keep && !d->keep[bias_index(d, d->keep_shape, b, h, i, j)])
        return 0;
    if (m->bias) {
        int ext[3];
        bias_extents(m->bias_kind, d->bias_shape, d->batch, d->heads_q,
                     d->seq_q, ext);
        if (m->bias[bias_index(d, ext, b, h, i, j)] == -INFINITY)
            return 0;
    }
    return 1;
}

/* Whether a tensor row of n elements holds a non-finite value. */
NO_COVERAGE static int row_poisoned(const void *x, size_t row, size_t n,
                                    int f16)
{
    for (size_t c = 0; c < n; c++)
        if (!isfinite(elem(x, row * n + c, f16)))
            return 1;
    return 0;
}

/* Bias entry of (b, h, i, j) is not finite (NaN or +inf; -inf hides). */
NO_COVERAGE static int bias_poisoned(const attn_sdpa_desc *d, int b, int h,
                                     int i, int j)
{
    const attn_mask_desc *m = &d->mask;
    int ext[3];
    float x;
    if (!m->bias)
        return 0;
    bias_extents(m->bias_kind, d->bias_shape, d->batch, d->heads_q, d->seq_q,
                 ext);
    x = m->bias[bias_index(d, ext, b, h, i, j)];
    return isnan(x) || x == INFINITY;
}

/* The checks on a successful call (see the top of the file).  bounded: no
 * score can overflow float. */
NO_COVERAGE static void check_sdpa_result(const attn_sdpa_desc *d,
                                          const void *q, const void *k,
                                          const void *v, const void *o,
                                          const float *lse, int bounded,
                                          int poison)
{
    /* the storage: 0 F32, 1 F16, 2 BF16 */
    const int f16 = d->dtype == ATTN_BF16 ? 2 : d->dtype == ATTN_F16;
    const int group = d->heads_q / d->heads_kv;
    const size_t hd = (size_t)d->head_dim, dv = (size_t)d->head_dim_v;
    const size_t rows =
        (size_t)d->batch * (size_t)d->heads_q * (size_t)d->seq_q;
    const size_t kv_rows =
        (size_t)d->batch * (size_t)d->heads_kv * (size_t)d->seq_kv;
    unsigned char *vis = malloc((size_t)d->seq_kv);
    /* Rows of q, and of k or v, holding a planted NaN / Inf. */
    unsigned char *qp = calloc(rows, 1), *kvp = calloc(kv_rows, 1);
    float *lo = malloc(dv * sizeof *lo), *hi = malloc(dv * sizeof *hi);
    REQUIRE(vis && qp && kvp && lo && hi, "out of memory");
    for (size_t r = 0; poison && r < rows; r++)
        qp[r] = (unsigned char)row_poisoned(q, r, hd, f16);
    for (size_t r = 0; poison && r < kv_rows; r++)
        kvp[r] = (unsigned char)(row_poisoned(k, r, hd, f16) ||
                                 row_poisoned(v, r, dv, f16));
    for (int b = 0; b < d->batch; b++)
        for (int h = 0; h < d->heads_q; h++)
            for (int i = 0; i < d->seq_q; i++) {
                size_t row = ((size_t)b * (size_t)d->heads_q + (size_t)h) *
                                 (size_t)d->seq_q +
                             (size_t)i;
                size_t kv0 =
                    ((size_t)b * (size_t)d->heads_kv + (size_t)(h / group)) *
                    (size_t)d->seq_kv;
                int any = 0, spoiled = 0;
                for (int j = 0; j < d->seq_kv; j++) {
                    vis[j] = (unsigned char)visible(d, b, h, i, j);
                    if (!vis[j])
                        continue;
                    any = 1;
                    spoiled = spoiled || kvp[kv0 + (size_t)j] ||
                              (poison && bias_poisoned(d, b, h, i, j));
                }
                if (!any) {
                    for (size_t c = 0; c < dv; c++)
                        REQUIRE(elem(o, row * dv + c, f16) == 0.0f,
                                "row b=%d h=%d i=%d sees no key but O[%zu] = "
                                "%g",
                                b, h, i, c, (double)elem(o, row * dv + c, f16));
                    REQUIRE(!lse || lse[row] == -INFINITY,
                            "row b=%d h=%d i=%d sees no key but lse = %g", b, h,
                            i, (double)lse[row]);
                    continue;
                }
                spoiled = spoiled || qp[row];
                if (spoiled || !bounded)
                    continue;
                REQUIRE(!lse || isfinite(lse[row]),
                        "row b=%d h=%d i=%d: lse = %g", b, h, i,
                        (double)lse[row]);
                for (size_t c = 0; c < dv; c++) {
                    lo[c] = INFINITY;
                    hi[c] = -INFINITY;
                }
                for (int j = 0; j < d->seq_kv; j++) {
                    size_t at = (kv0 + (size_t)j) * dv;
                    if (!vis[j])
                        continue;
                    for (size_t c = 0; c < dv; c++) {
                        float x = elem(v, at + c, f16);
                        lo[c] = x < lo[c] ? x : lo[c];
                        hi[c] = x > hi[c] ? x : hi[c];
                    }
                }
                for (size_t c = 0; c < dv; c++) {
                    float got = elem(o, row * dv + c, f16);
                    float tol =
                        2e-3f * fmaxf(fabsf(lo[c]), fabsf(hi[c])) + 1e-30f;
                    REQUIRE(got >= lo[c] - tol && got <= hi[c] + tol,
                            "row b=%d h=%d i=%d: O[%zu] = %g outside the "
                            "visible V range [%g, %g]",
                            b, h, i, c, (double)got, (double)lo[c],
                            (double)hi[c]);
                }
            }
    free(vis);
    free(lo);
    free(hi);
    free(qp);
    free(kvp);
}

/* Spoils one field of d (and of the buffer plan) on purpose. */
typedef struct sdpa_plan {
    int null_ptr;  /* 1..4: q, k, v or o NULL */
    int o_in;      /* 1..3: o placed inside (or right after) q, k or v */
    int lse_in;    /* 1..4: lse inside (or right after) q, k, v or o */
    int share_kv;  /* k = q and v = k when the sizes allow */
    int bias_flip; /* bias pointer without kind, or kind without bias */
    int addw_null; /* ADDITIVE without additive_w */
    int kv_bad;    /* a kv_len entry outside [0, seq_kv] */
    int poison;    /* NaN / Inf planted in q, k, v or bias */
    double amp;    /* q and k amplitude */
} sdpa_plan;

static void spoil_sdpa(gen_src *g, attn_sdpa_desc *d, sdpa_plan *p)
{
    int n = gen_int(g, 1, 3);
    for (int t = 0; t < n; t++) {
        switch (gen_int(g, 0, 20)) {
        case 0:
            d->batch = hostile_int(g);
            break;
        case 1:
            d->heads_q = hostile_int(g);
            break;
        case 2:
            d->heads_kv = hostile_int(g);
            break;
        case 3:
            d->seq_q = hostile_int(g);
            break;
        case 4:
            d->seq_kv = hostile_int(g);
            break;
        case 5:
            d->head_dim = hostile_int(g);
            break;
        case 6:
            d->head_dim_v = hostile_int(g);
            break;
        case 7:
            d->score = (attn_score)hostile_enum(g, ATTN_SCORE_ADDITIVE);
            break;
        case 8:
            d->dtype = (attn_dtype)hostile_enum(g, ATTN_BF16);
            break;
        case 9:
            d->mask.bias_kind =
                (attn_bias_kind)hostile_enum(g, ATTN_BIAS_BROADCAST);
            d->bias_shape[gen_int(g, 0, 2)] = hostile_int(g);
            break;
        case 10:
            d->mask.window = hostile_int(g);
            break;
        case 11:
            d->mask.causal = hostile_int(g);
            break;
        case 12:
            d->scale = hostile_float(g);
            break;
        case 13:
            p->null_ptr = gen_int(g, 1, 4);
            break;
        case 14:
            p->o_in = gen_int(g, 1, 3);
            break;
        case 15:
            p->lse_in = gen_int(g, 1, 4);
            break;
        case 16:
            p->bias_flip = 1;
            break;
        case 17:
            p->addw_null = 1;
            break;
        case 18:
            p->kv_bad = 1;
            break;
        case 19:
            if (gen_chance(g, 40))
                d->causal_align =
                    (attn_causal_align)hostile_enum(g, ATTN_CAUSAL_TOP_LEFT);
            else if (gen_chance(g, 50))
                d->causal_offset = gen_chance(g, 50)
                                       ? (int64_t)gen_u64(g)
                                       : (int64_t)d->seq_kv + gen_int(g, -2, 2);
            else
                d->keep_shape[gen_int(g, 0, 2)] = hostile_int(g);
            break;
        default:
            p->amp = gen_pick(g, (const int[]){30, 1000, 60000}, 3);
            break;
        }
    }
}

/* A float tensor of n bytes filled from r (dummy when too big). */
static float *float_tensor(ref_rng *r, size_t bytes, int real, double amp)
{
    float *x = take(real ? bytes : DUMMY);
    fill(r, x, (real ? bytes : DUMMY) / 4, 0, amp);
    return x;
}

/* Places a tensor of `bytes` inside (or right after) host, a block of
 * host_bytes: host moves to a new block (*block, filled with fill_byte past
 * host's copy) that holds both.  Returns the tensor, or NULL when it does
 * not fit the caps. */
static void *inside(gen_src *g, unsigned char *host, size_t host_bytes,
                    size_t bytes, size_t align, unsigned char **block)
{
    size_t off = (size_t)gen_int(g, 0, (int)(host_bytes / align)) * align;
    size_t need = off + bytes, size;
    if (need > CAP_BYTES)
        return NULL;
    size = need > host_bytes ? need : host_bytes;
    *block = take(size);
    memset(*block, CANARY, size);
    memcpy(*block, host, host_bytes);
    return *block + off;
}

static void run_sdpa(gen_src *g, attn_context *ctx, int on_device, int hostile)
{
    static const gen_limits lim = {2, 2, 3, 40, 80, 72, 0, 0};
    gen_sdpa shape;
    sdpa_plan p;
    attn_sdpa_desc d;
    sdpa_bytes z;
    ref_rng r;
    unsigned char *q, *k, *v, *o;
    float *lse = NULL, *bias = NULL, *addw = NULL;
    int32_t *kv_len = NULL;
    uint8_t *keep = NULL;
    int real, valid, f16;
    size_t total, es;
    double work;

    gen_sdpa_shape(g, &lim, &shape);
    if ((shape.layout || shape.o_layout || shape.varlen) && gen_chance(g, 40)) {
        /* strided tensors, packed batches: fuzz_placed.c */
        double t_placed = now();
        int rc = fuzz_sdpa_placed(g, ctx, &shape, hostile, on_device);
        if (on_device)
            t_cl += now() - t_placed;
        stats[rc > 0    ? ST_PLACED_RUN
              : rc == 0 ? ST_PLACED_REFUSED
                        : ST_SDPA_UNSUP]++;
        stats[ST_PLACED_BWD] += rc == 2;
        return;
    }
    gen_sdpa_plain(&shape); /* the rest takes contiguous tensors */
    d = shape.d;
    memset(&p, 0, sizeof p);
    p.amp = shape.qk_amp;
    p.share_kv = gen_chance(g, 15);
    p.poison = gen_chance(g, 10);
    if (hostile)
        spoil_sdpa(g, &d, &p);
    ref_rng_seed(&r, gen_u64(g));
    z = sdpa_sizes(&d);
    f16 = d.dtype == ATTN_BF16 ? 2 : d.dtype == ATTN_F16;
    es = f16 ? 2 : 4;

    total = 0;
    real = z.ok;
    if (real) {
        size_t parts[] = {z.q, z.k, z.v, z.o, z.lse, z.bias, z.addw, z.keep};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
            if (parts[i] > CAP_BYTES || total + parts[i] > CAP_BYTES)
                real = 0;
            total += parts[i] > CAP_BYTES ? 0 : parts[i];
        }
    }
    work = (double)(d.batch > 0 ? d.batch : 0) *
           (d.heads_q > 0 ? d.heads_q : 0) * (d.seq_q > 0 ? d.seq_q : 0) *
           (d.seq_kv > 0 ? d.seq_kv : 0) *
           ((double)(d.head_dim > 0 ? d.head_dim : 0) +
            (d.head_dim_v > 0 ? d.head_dim_v : 0));
    if (work > CAP_WORK)
        real = 0;

    /* The inputs. */
    q = take(real ? z.q : DUMMY);
    fill(&r, q, (real ? z.q : DUMMY) / es, f16, p.amp);
    if (p.share_kv && real && z.k == z.q)
        k = q;
    else {
        k = take(real ? z.k : DUMMY);
        fill(&r, k, (real ? z.k : DUMMY) / es, f16, p.amp);
    }
    if (p.share_kv && real && z.v == z.k)
        v = k;
    else {
        v = take(real ? z.v : DUMMY);
        fill(&r, v, (real ? z.v : DUMMY) / es, f16, 1.0);
    }
    if (d.score == ATTN_SCORE_ADDITIVE && !p.addw_null)
        addw = float_tensor(&r, z.addw, real, 1.0);
    if ((d.mask.bias_kind != ATTN_BIAS_NONE) != p.bias_flip) {
        bias = float_tensor(&r, z.bias, real && z.bias, 4.0);
        if (real && z.bias)
            for (size_t i = 0; i < z.bias / 4; i++)
                if (ref_rng_uniform(&r, 0, 1) < shape.ninf)
                    bias[i] = -INFINITY;
    }
    /* kv_len must hold batch entries whenever it is given: validation
     * reads them. */
    if (((shape.with_kv_len & CASE_KV_LEN) || p.kv_bad) && z.kv_len &&
        z.kv_len <= CAP_BYTES) {
        kv_len = take(z.kv_len);
        for (int b = 0; b < d.batch; b++)
            kv_len[b] = ref_rng_int(&r, 0, d.seq_kv > 0 ? d.seq_kv : 0);
        if (p.kv_bad)
            kv_len[gen_int(g, 0, d.batch - 1)] =
                gen_chance(g, 50) ? hostile_int(g) : past(d.seq_kv);
    }
    if (d.keep_shape[0] || d.keep_shape[1] || d.keep_shape[2]) {
        keep = take(real && z.keep ? z.keep : DUMMY);
        for (size_t i = 0; real && i < z.keep; i++)
            keep[i] = ref_rng_uniform(&r, 0, 1) < 0.3 ? 0 : 1;
    }
    d.additive_w = addw;
    d.mask.bias = bias;
    d.mask.kv_len = kv_len;
    d.keep = keep;
    /* left padding, in range (batch entries, like kv_len) */
    if ((shape.with_kv_len & (CASE_KV_START | CASE_Q_START)) && z.kv_len &&
        z.kv_len <= CAP_BYTES) {
        int32_t *st[2] = {take(z.kv_len), take(z.kv_len)};
        for (int b = 0; b < d.batch; b++) {
            st[0][b] = ref_rng_int(&r, 0, d.seq_q > 0 ? d.seq_q : 0);
            st[1][b] = ref_rng_int(&r, 0, d.seq_kv > 0 ? d.seq_kv : 0);
        }
        d.q_start = shape.with_kv_len & CASE_Q_START ? st[0] : NULL;
        d.kv_start = shape.with_kv_len & CASE_KV_START ? st[1] : NULL;
    }

    /* The outputs, possibly inside an input. */
    o = NULL;
    if (p.o_in && real) {
        unsigned char **host = p.o_in == 1 ? &q : p.o_in == 2 ? &k : &v;
        size_t hb = p.o_in == 1 ? z.q : p.o_in == 2 ? z.k : z.v;
        unsigned char *block;
        if (!(*host == q && (k == q || v == q)) && !(*host == k && v == k))
            o = inside(g, *host, hb, z.o, es, &block);
        if (o)
            *host = block;
    }
    if (!o)
        o = take(real ? z.o : DUMMY);
    memset(o, CANARY, real ? z.o : DUMMY);
    if (shape.with_lse || p.lse_in) {
        if (p.lse_in && real && p.lse_in == 4) {
            /* Inside o: o keeps its own block; lse shares it. */
            unsigned char *block;
            lse = inside(g, o, z.o, z.lse, 4, &block);
            if (lse)
                o = block;
        } else if (p.lse_in && real) {
            unsigned char **host = p.lse_in == 1 ? &q : p.lse_in == 2 ? &k : &v;
            size_t hb = p.lse_in == 1 ? z.q : p.lse_in == 2 ? z.k : z.v;
            unsigned char *block;
            if (*host != o && !(*host == q && (k == q || v == q)) &&
                !(*host == k && v == k) && !overlap(o, z.o, *host, hb)) {
                lse = inside(g, *host, hb, z.lse, 4, &block);
                if (lse)
                    *host = block;
            }
        }
        if (!lse)
            lse = take(real ? z.lse : DUMMY);
    }
    if (p.poison && real) {
        int n = gen_int(g, 1, 3);
        for (int t = 0; t < n; t++) {
            int which = gen_int(g, 0, bias ? 3 : 2);
            if (which == 3)
                bias[(size_t)gen_int(g, 0, (int)(z.bias / 4) - 1)] =
                    poison_value(g);
            else {
                unsigned char *x = which == 0 ? q : which == 1 ? k : v;
                size_t xb = which == 0 ? z.q : which == 1 ? z.k : z.v;
                set_elem(x, (size_t)gen_int(g, 0, (int)(xb / es) - 1), f16,
                         poison_value(g));
            }
        }
    }
    switch (p.null_ptr) {
    case 1:
        q = NULL;
        break;
    case 2:
        k = NULL;
        break;
    case 3:
        v = NULL;
        break;
    case 4:
        o = NULL;
        break;
    }

    valid = sdpa_valid(&d, &z, q, k, v, o, lse);
    describe_sdpa(on_device ? "OpenCL" : "native", &d, q, k, v, o, lse);
    if (valid && !real) {
        /* Too big to run: the same call without q must be refused. */
        attn_status s = attn_sdpa(ctx, &d, NULL, k, v, o, lse);
        REQUIRE_STATUS(s, "attn_sdpa");
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa with q NULL returned %s", attn_status_string(s));
        REQUIRE(all_bytes(o, DUMMY, CANARY), "attn_sdpa wrote o on error");
        stats[ST_SDPA_BIG]++;
        return;
    }
    {
        size_t ob = real ? z.o : DUMMY, lb = real ? z.lse : DUMMY;
        int lse_canary;
        /* Canaries last (o may sit in an input the poison went into); lse
         * inside an input keeps that input's bytes. */
        if (o)
            memset(o, CANARY, ob);
        if (lse && !overlap(lse, lb, q, z.q) && !overlap(lse, lb, k, z.k) &&
            !overlap(lse, lb, v, z.v) && !overlap(lse, lb, o, z.o))
            memset(lse, CANARY, lb);
        lse_canary = lse && all_bytes(lse, lb, CANARY);
        void *q0 = real ? copy_of(q, z.q) : NULL;
        void *k0 = real ? copy_of(k, z.k) : NULL;
        void *v0 = real ? copy_of(v, z.v) : NULL;
        void *b0 = real ? copy_of(bias, z.bias) : NULL;
        double t0 = now();
        attn_status s = attn_sdpa(ctx, &d, q, k, v, o, lse);
        if (on_device)
            t_cl += now() - t0;
        REQUIRE_STATUS(s, "attn_sdpa");
        if (!valid) {
            REQUIRE(s != ATTN_OK, "attn_sdpa accepted an invalid call");
        } else {
            REQUIRE(s == ATTN_OK || (on_device && s == ATTN_ERR_UNSUPPORTED),
                    "attn_sdpa refused a valid call: %s (%s)",
                    attn_status_string(s), attn_context_last_error(ctx));
        }
        REQUIRE((!q0 || !memcmp(q0, q, z.q)) && (!k0 || !memcmp(k0, k, z.k)) &&
                    (!v0 || !memcmp(v0, v, z.v)) &&
                    (!b0 || !memcmp(b0, bias, z.bias)),
                "attn_sdpa modified an input");
        if (s != ATTN_OK) {
            REQUIRE(!o || all_bytes(o, ob, CANARY), "attn_sdpa wrote o on "
                                                    "error");
            REQUIRE(!lse_canary || all_bytes(lse, lb, CANARY),
                    "attn_sdpa wrote lse on error");
            REQUIRE(strlen(attn_context_last_error(ctx)) > 0,
                    "attn_sdpa failed without a message");
            stats[valid ? ST_SDPA_UNSUP : ST_SDPA_REFUSED]++;
            return;
        }
        stats[ST_SDPA_RUN]++;
        stats[ST_SDPA_CL] += on_device;
        {
            double scale = d.scale != 0.0f ? fabs((double)d.scale)
                                           : 1.0 / sqrt((double)d.head_dim);
            double bound = d.score == ATTN_SCORE_ADDITIVE
                               ? (double)d.head_dim * 2.0
                               : scale * (double)d.head_dim * p.amp * p.amp;
            /* the convex-hull check holds float products; a call that
             * ran reduced-precision products is held to the rest */
            attn_precision asked, runs = ATTN_PRECISION_EXACT;
            REQUIRE(attn_sdpa_precision(ctx, &d, &asked, &runs) == ATTN_OK,
                    "attn_sdpa_precision refused a shape attn_sdpa ran");
            stats[ST_SDPA_REDUCED] += runs != ATTN_PRECISION_EXACT;
            check_sdpa_result(
                &d, q, k, v, o, lse,
                bound + 8.0 < 1e30 && runs == ATTN_PRECISION_EXACT, p.poison);
            /* the backward of this forward, half the time (lse needed) */
            if (real && lse && gen_chance(g, 50)) {
                const fuzz_bwd_in in = {
                    q,
                    k,
                    v,
                    o,
                    lse,
                    z.q,
                    z.k,
                    z.v,
                    z.o,
                    bias ? z.bias : 0,
                    z.addw,
                    !f16 && !p.poison && !p.o_in && !p.lse_in && bound < 1e3,
                    on_device};
                fuzz_backward(g, ctx, &d, &in);
                stats[ST_SDPA_BWD]++;
            }
        }
    }
}

/* Small valid problem used to build the OpenCL programs up front. */
static void run_sdpa_once(attn_context *ctx, int seq_q, int seq_kv,
                          attn_dtype dt)
{
    attn_sdpa_desc d;
    size_t es = dt == ATTN_F32 ? 4 : 2;
    unsigned char q[2 * 7 * 16 * 4], k[2 * 9 * 16 * 4], v[2 * 9 * 16 * 4],
        o[2 * 7 * 16 * 4];
    float lse[2 * 7];
    memset(&d, 0, sizeof d);
    d.batch = 1;
    d.heads_q = d.heads_kv = 2;
    d.seq_q = seq_q;
    d.seq_kv = seq_kv;
    d.head_dim = d.head_dim_v = 16;
    d.dtype = dt;
    d.mask.causal = 1;
    memset(q, 0, sizeof q);
    memset(k, 0, sizeof k);
    memset(v, 0, sizeof v);
    (void)es;
    attn_status s = attn_sdpa(ctx, &d, q, k, v, o, lse);
    if (s != ATTN_OK)
        fprintf(stderr, "fuzz_attn: warm-up call: %s (%s)\n",
                attn_status_string(s), attn_context_last_error(ctx));
}

/* ---- attn_mha_forward ------------------------------------------------- */

/* Small valid layer used to build the OpenCL programs up front. */
static void run_mha_once(attn_context *ctx)
{
    static float w[16 * 16], x[2 * 5 * 16], y[2 * 5 * 16];
    attn_mha_desc m;
    attn_status s;
    memset(&m, 0, sizeof m);
    m.d_model = 16;
    m.heads_q = m.heads_kv = 2;
    m.head_dim = 8;
    m.wq = m.wk = m.wv = m.wo = w;
    m.posenc = ATTN_POSENC_ROPE;
    s = attn_mha_forward(ctx, &m, 2, 5, 5, x, NULL, NULL, y);
    if (s != ATTN_OK)
        fprintf(stderr, "fuzz_attn: warm-up layer: %s (%s)\n",
                attn_status_string(s), attn_context_last_error(ctx));
}

typedef struct mha_plan {
    int null_w;  /* 1..4: wq, wk, wv or wo NULL */
    int null_io; /* 1: x_q NULL, 2: y NULL */
    int table;   /* pos_table: 0 as stated, 1 NULL, 2 stated one row short */
    int bias_flip, kv_bad, mask_null, seq_kv_free;
    int causal;   /* mask.causal when not 0 (a value other than 0 and 1) */
    int in_place; /* y is x_q */
} mha_plan;

static void spoil_mha(gen_src *g, mha_spec *s, attn_mha_desc *m, mha_plan *p)
{
    int n = gen_int(g, 1, 3);
    for (int t = 0; t < n; t++) {
        switch (gen_int(g, 0, 19)) {
        case 18:
            p->causal = gen_chance(g, 50) ? hostile_int(g) : gen_int(g, 2, 9);
            if (p->causal == 0 || p->causal == 1)
                p->causal = -1;
            break;
        case 19:
            p->in_place = 1;
            break;
        case 0:
            s->d_model = hostile_int(g);
            break;
        case 1:
            s->heads_q = hostile_int(g);
            break;
        case 2:
            s->heads_kv = hostile_int(g);
            break;
        case 3:
            s->head_dim = hostile_int(g);
            break;
        case 4:
            s->batch = hostile_int(g);
            break;
        case 5:
            s->seq_q = hostile_int(g);
            break;
        case 6:
            s->seq_kv = hostile_int(g);
            p->seq_kv_free = 1;
            break;
        case 7:
            s->score = (attn_score)hostile_enum(g, ATTN_SCORE_ADDITIVE);
            break;
        case 8:
            s->posenc = (attn_posenc)hostile_enum(g, ATTN_POSENC_ROPE);
            break;
        case 9:
            /* Around the largest offset seq_q allows. */
            s->pos_offset = gen_chance(g, 50) || s->seq_q <= 0
                                ? hostile_int(g)
                                : INT32_MAX - s->seq_q + gen_int(g, -1, 1);
            break;
        case 10:
            m->pos_table_len = gen_chance(g, 50) ? hostile_int(g) : -1;
            break;
        case 11:
            p->table = gen_int(g, 1, 2);
            break;
        case 12:
            p->null_w = gen_int(g, 1, 4);
            break;
        case 13:
            p->null_io = gen_int(g, 1, 2);
            break;
        case 14:
            p->bias_flip = 1;
            break;
        case 15:
            p->kv_bad = 1;
            break;
        case 16:
            s->window = hostile_int(g);
            break;
        default:
            s->bias_kind = (attn_bias_kind)hostile_enum(g, ATTN_BIAS_BROADCAST);
            break;
        }
    }
}

static void run_mha(gen_src *g, attn_context *ctx, int on_device, int hostile)
{
    static const gen_limits lim = {2, 3, 3, 10, 12, 16, 32, 200};
    mha_spec s;
    mha_plan p;
    attn_mha_desc m;
    attn_mask_desc mask;
    ref_rng r;
    size_t xq = 0, xkv = 0, wq = 0, wkv = 0, wo = 0, bq = 0, bkv = 0, bo = 0,
           addw = 0, table = 0, biasb = 0;
    int ok, real, valid, seq_kv, table_rows = 0;
    float *x_q, *x_kv = NULL, *y, *w[4], *b[4] = {NULL, NULL, NULL, NULL};
    float *bias = NULL;
    int32_t *kv_len = NULL;
    long need;
    double work;

    gen_mha_spec(g, &lim, &s);
    memset(&p, 0, sizeof p);
    memset(&m, 0, sizeof m);
    p.mask_null = gen_chance(g, 20);
    if (hostile)
        spoil_mha(g, &s, &m, &p);
    seq_kv = s.self && !p.seq_kv_free ? s.seq_q : s.seq_kv;
    ref_rng_seed(&r, gen_u64(g));

    /* Sizes (ok: all addressable). */
    {
        int dx[3] = {s.batch, s.seq_q, s.d_model};
        int dkv[3] = {s.batch, seq_kv, s.d_model};
        size_t inq, inkv;
        ok = s.heads_q > 0 && s.head_dim > 0 && s.heads_kv > 0 &&
             mul(&inq, (size_t)s.heads_q, (size_t)s.head_dim) &&
             mul(&inkv, (size_t)s.heads_kv, (size_t)s.head_dim) &&
             inq <= INT32_MAX && inkv <= INT32_MAX;
        if (ok) {
            int dwq[2] = {(int)inq, s.d_model},
                dwkv[2] = {(int)inkv, s.d_model};
            int dbq[1] = {(int)inq}, dbkv[1] = {(int)inkv},
                dbo[1] = {s.d_model};
            ok = tensor_bytes(&xq, 4, 3, dx) &&
                 (s.self || tensor_bytes(&xkv, 4, 3, dkv)) &&
                 tensor_bytes(&wq, 4, 2, dwq) &&
                 tensor_bytes(&wkv, 4, 2, dwkv) &&
                 tensor_bytes(&wo, 4, 2, dwq) && tensor_bytes(&bq, 4, 1, dbq) &&
                 tensor_bytes(&bkv, 4, 1, dbkv) &&
                 tensor_bytes(&bo, 4, 1, dbo) && tensor_bytes(&addw, 4, 1, dbq);
        }
        int ext[3];
        if (ok &&
            bias_extents(s.bias_kind, NULL, s.batch, s.heads_q, s.seq_q, ext)) {
            int db[4] = {ext[0], ext[1], ext[2], seq_kv};
            ok = tensor_bytes(&biasb, 4, 4, db);
        }
    }
    /* Rows of the learned table: as stated, or as needed when unknown. */
    need = (long)s.pos_offset + s.seq_q;
    if (!s.self && seq_kv > need)
        need = seq_kv;
    if (s.posenc == ATTN_POSENC_LEARNED) {
        if (p.table == 2 && need > 1 && need - 1 <= INT32_MAX)
            m.pos_table_len = (int)(need - 1); /* one row short */
        table_rows = m.pos_table_len > 0             ? m.pos_table_len
                     : need > 0 && need <= INT32_MAX ? (int)need
                                                     : 0;
    }
    real = ok;
    if (real) {
        double sum = 2.0 * xq + (double)xkv + (double)wq + 2.0 * wkv +
                     (double)wo + (double)bq + 2.0 * bkv + (double)bo +
                     (double)addw + (double)biasb;
        int dt[2] = {table_rows, s.d_model};
        if (s.posenc == ATTN_POSENC_LEARNED &&
            !(table_rows > 0 && tensor_bytes(&table, 4, 2, dt)))
            real = 0;
        sum += (double)table;
        if (sum > (double)CAP_BYTES)
            real = 0;
        work = (double)s.batch * ((double)s.seq_q + seq_kv) * s.d_model *
                   ((double)s.heads_q + s.heads_kv) * s.head_dim * 2.0 +
               (double)s.batch * s.heads_q * s.seq_q * (double)seq_kv *
                   s.head_dim * 2.0;
        if (work > CAP_WORK)
            real = 0;
    }

    x_q = float_tensor(&r, xq, real, 1.0);
    if (!s.self)
        x_kv = float_tensor(&r, xkv, real, 1.0);
    y = take(real ? xq : DUMMY);
    memset(y, CANARY, real ? xq : DUMMY);
    {
        double a = s.d_model > 0 ? 1.0 / sqrt((double)s.d_model) : 1.0;
        double ao = s.heads_q > 0 && s.head_dim > 0 && s.heads_q < 65536 &&
                            s.head_dim < 65536
                        ? 1.0 / sqrt((double)s.heads_q * s.head_dim)
                        : 1.0;
        w[0] = float_tensor(&r, wq, real, a);
        w[1] = float_tensor(&r, wkv, real, a);
        w[2] = float_tensor(&r, wkv, real, a);
        w[3] = float_tensor(&r, wo, real, ao);
        if (s.with_bias) {
            b[0] = float_tensor(&r, bq, real, 0.5);
            b[1] = float_tensor(&r, bkv, real, 0.5);
            b[2] = float_tensor(&r, bkv, real, 0.5);
            b[3] = float_tensor(&r, bo, real, 0.5);
        }
    }
    m.d_model = s.d_model;
    m.heads_q = s.heads_q;
    m.heads_kv = s.heads_kv;
    m.head_dim = s.head_dim;
    m.wq = w[0];
    m.wk = w[1];
    m.wv = w[2];
    m.wo = w[3];
    m.bq = b[0];
    m.bk = b[1];
    m.bv = b[2];
    m.bo = b[3];
    m.score = s.score;
    if (s.score == ATTN_SCORE_ADDITIVE)
        m.additive_w = float_tensor(&r, addw, real, 1.0);
    m.posenc = s.posenc;
    m.pos_offset = s.pos_offset;
    if (s.posenc == ATTN_POSENC_LEARNED && p.table != 1)
        m.pos_table = float_tensor(&r, table, real && table, 1.0);
    if (p.null_w)
        (&m.wq)[p.null_w - 1] = NULL;

    memset(&mask, 0, sizeof mask);
    mask.causal = p.causal ? p.causal : s.causal;
    mask.window = s.window;
    mask.bias_kind = s.bias_kind;
    if ((s.bias_kind != ATTN_BIAS_NONE) != p.bias_flip)
        bias = float_tensor(&r, biasb, real && biasb, 2.0);
    mask.bias = bias;
    if ((s.with_kv_len || p.kv_bad) && s.batch > 0 &&
        (size_t)s.batch * 4 <= CAP_BYTES) {
        kv_len = take((size_t)s.batch * 4);
        for (int i = 0; i < s.batch; i++)
            kv_len[i] = ref_rng_int(&r, 0, seq_kv > 0 ? seq_kv : 0);
        if (p.kv_bad)
            kv_len[gen_int(g, 0, s.batch - 1)] =
                gen_chance(g, 50) ? hostile_int(g) : past(seq_kv);
    }
    mask.kv_len = kv_len;
    if (p.null_io == 1)
        x_q = NULL;
    if (p.null_io == 2)
        y = NULL;
    if (p.in_place && x_q && y)
        y = x_q; /* the layer does not work in place */

    /* The contract's verdict. */
    valid = ok && x_q && y && m.wq && m.wk && m.wv && m.wo && s.d_model > 0 &&
            s.heads_q > 0 && s.heads_kv > 0 && s.head_dim > 0 && s.batch > 0 &&
            s.seq_q > 0 && seq_kv > 0 && s.heads_q % s.heads_kv == 0 &&
            (!s.self || seq_kv == s.seq_q) &&
            (unsigned)s.score <= ATTN_SCORE_ADDITIVE &&
            (s.score != ATTN_SCORE_ADDITIVE || m.additive_w) &&
            (unsigned)s.posenc <= ATTN_POSENC_ROPE && s.pos_offset >= 0 &&
            s.pos_offset <= INT32_MAX - s.seq_q;
    if (valid && s.posenc == ATTN_POSENC_LEARNED)
        valid = m.pos_table && m.pos_table_len >= 0 &&
                (m.pos_table_len == 0 || need <= m.pos_table_len);
    if (valid)
        valid = (double)s.batch * (s.seq_q > seq_kv ? s.seq_q : seq_kv) <=
                INT32_MAX;
    if (valid)
        valid = !(p.in_place && x_q);
    if (valid && !p.mask_null) {
        /* a mask alone takes every kind but BROADCAST */
        valid = s.window >= 0 && (unsigned)s.bias_kind <= ATTN_BIAS_KEY &&
                (s.bias_kind != ATTN_BIAS_NONE) == (bias != NULL) &&
                (mask.causal == 0 || mask.causal == 1);
        for (int i = 0; valid && kv_len && i < s.batch; i++)
            valid = kv_len[i] >= 0 && kv_len[i] <= seq_kv;
    }
    /* A LEARNED table of unknown length is read as far as the positions
     * go: only run it when the harness allocated that much. */
    if (valid && s.posenc == ATTN_POSENC_LEARNED && m.pos_table_len == 0 &&
        table_rows < need)
        real = 0;

    if (valid && !real) {
        attn_status st =
            attn_mha_forward(ctx, &m, s.batch, s.seq_q, seq_kv, NULL, x_kv,
                             p.mask_null ? NULL : &mask, y);
        REQUIRE_STATUS(st, "attn_mha_forward");
        REQUIRE(st == ATTN_ERR_INVALID_ARGUMENT,
                "attn_mha_forward with x_q NULL returned %s",
                attn_status_string(st));
        REQUIRE(y == x_q || all_bytes(y, DUMMY, CANARY),
                "attn_mha_forward wrote y");
        stats[ST_MHA_BIG]++;
        return;
    }
    {
        size_t yb = real ? xq : DUMMY;
        void *xq0 = real ? copy_of(x_q, xq) : NULL;
        double t0 = now();
        attn_status st =
            attn_mha_forward(ctx, &m, s.batch, s.seq_q, seq_kv, x_q, x_kv,
                             p.mask_null ? NULL : &mask, y);
        if (on_device)
            t_cl += now() - t0;
        REQUIRE_STATUS(st, "attn_mha_forward");
        if (!valid)
            REQUIRE(st != ATTN_OK, "attn_mha_forward accepted an invalid call");
        else
            REQUIRE(st == ATTN_OK || (on_device && st == ATTN_ERR_UNSUPPORTED),
                    "attn_mha_forward refused a valid call: %s (%s)",
                    attn_status_string(st), attn_context_last_error(ctx));
        if (st != ATTN_OK) {
            if (y == x_q)
                REQUIRE(!xq0 || !memcmp(xq0, x_q, xq),
                        "attn_mha_forward wrote y (x_q) on error");
            else
                REQUIRE(!y || all_bytes(y, yb, CANARY),
                        "attn_mha_forward wrote y on error");
            stats[ST_MHA_REFUSED]++;
            return;
        }
        stats[ST_MHA_RUN]++;
        stats[ST_MHA_CL] += on_device;
        REQUIRE(!xq0 || !memcmp(xq0, x_q, xq), "attn_mha_forward modified x_q");
        for (size_t i = 0; i < xq / 4; i++)
            REQUIRE(isfinite(y[i]), "attn_mha_forward: y[%zu] = %g", i,
                    (double)y[i]);
        /* The same call through a persistent layer (attn_mha_create:
         * a LEARNED table needs its length) gives the same y, to the
         * oracle's tolerance twice over (both are checked against it). */
        if (real && gen_chance(g, 30) &&
            !(s.posenc == ATTN_POSENC_LEARNED && m.pos_table_len == 0)) {
            attn_mha_layer *layer = NULL;
            float *y2 = take(xq);
            st = attn_mha_create(ctx, &m, 0.0f, &layer);
            REQUIRE_STATUS(st, "attn_mha_create");
            REQUIRE(st == ATTN_OK || st == ATTN_ERR_OUT_OF_MEMORY ||
                        (on_device && st == ATTN_ERR_DEVICE),
                    "attn_mha_create refused a valid layer: %s (%s)",
                    attn_status_string(st), attn_context_last_error(ctx));
            if (st == ATTN_OK) {
                st = attn_mha_forward_layer(
                    ctx, layer, s.batch, s.seq_q, seq_kv, ATTN_F32, x_q, x_kv,
                    p.mask_null ? NULL : &mask, NULL, y2);
                REQUIRE(st == ATTN_OK ||
                            (on_device && st == ATTN_ERR_UNSUPPORTED),
                        "attn_mha_forward_layer refused what "
                        "attn_mha_forward ran: %s (%s)",
                        attn_status_string(st), attn_context_last_error(ctx));
                for (size_t i = 0; st == ATTN_OK && i < xq / 4; i++)
                    REQUIRE(fabsf(y2[i] - y[i]) <=
                                2.0f * (float)(REF_MHA_ABS +
                                               REF_MHA_REL * fabsf(y[i])),
                            "the layer's y[%zu] = %g, attn_mha_forward's %g", i,
                            (double)y2[i], (double)y[i]);
                stats[ST_LAYER_RUN] += st == ATTN_OK;
                attn_mha_destroy(layer);
            }
        }
    }
}

/* ---- device selection ------------------------------------------------- */

/* A string field of n bytes: random text, NUL-terminated somewhere. */
static void random_text(gen_src *g, char *s, size_t n)
{
    size_t len = (size_t)gen_int(g, 0, (int)n - 1);
    static const char *const names[] = {"pthread-AMD EPYC", "NVIDIA GeForce",
                                        "Intel(R) UHD Graphics", "cpu",
                                        "gfx1100"};
    if (gen_chance(g, 50)) {
        snprintf(s, n, "%s", names[gen_int(g, 0, 4)]);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        uint8_t c = gen_u8(g);
        s[i] = (char)(c ? c : ',');
    }
    s[len] = '\0';
}

#ifdef ATTN_HAVE_OPENCL
static void run_select(gen_src *g)
{
    size_t n = (size_t)gen_int(g, 0, 20);
    attn_device_info *devs = n ? take(n * sizeof *devs) : NULL;
    attn_selection sel, *selp = gen_chance(g, 3) ? NULL : &sel;
    attn_err err;
    char spec[200];
    const char *specp = spec;
    attn_status s;
    for (size_t i = 0; i < n; i++) {
        attn_device_info *d = &devs[i];
        memset(d, 0, sizeof *d);
        random_text(g, d->name, gen_chance(g, 10) ? sizeof d->name : 24);
        random_text(g, d->reason, 16);
        d->kind = (attn_device_kind)(gen_chance(g, 5)
                                         ? hostile_int(g)
                                         : gen_int(g, 0, ATTN_DEVICE_NATIVE));
        d->platform_index =
            gen_chance(g, 10) ? hostile_int(g) : gen_int(g, 0, 2);
        d->device_index = gen_chance(g, 10) ? hostile_int(g) : gen_int(g, 0, 3);
        d->usable = gen_chance(g, 75);
        d->compute_units = gen_u8(g);
        d->rank = gen_chance(g, 30) ? 1.0 : gen_uniform(g, -10.0, 1e6);
    }
    gen_device_spec(g, spec, sizeof spec);
    if (gen_chance(g, 3))
        specp = NULL;
    memset(&err, 0x7f, sizeof err);
    err.msg[0] = '\0';
    s = attn_cl_select(gen_chance(g, 3) ? NULL : devs, n, specp,
                       gen_chance(g, 50), selp, &err);
    REQUIRE(s == ATTN_OK || s == ATTN_ERR_INVALID_ARGUMENT ||
                s == ATTN_ERR_NO_DEVICE,
            "attn_cl_select returned %d", (int)s);
    REQUIRE(memchr(err.msg, '\0', sizeof err.msg), "err.msg not terminated");
    stats[s == ATTN_OK ? ST_SELECT_OK : ST_SELECT_ERR]++;
    if (!selp)
        return;
    if (s != ATTN_OK) {
        REQUIRE(err.msg[0], "attn_cl_select failed without a message");
        REQUIRE(all_bytes(&sel, sizeof sel, 0), "sel not zeroed on error");
        return;
    }
    REQUIRE(memchr(sel.why, '\0', sizeof sel.why) && sel.why[0],
            "sel.why not a sentence");
    REQUIRE(sel.native ? sel.count == 0 : sel.count >= 1 && sel.count <= 16,
            "native %d with %zu devices", sel.native, sel.count);
    for (size_t i = 0; i < sel.count; i++) {
        REQUIRE(sel.index[i] < n && devs[sel.index[i]].usable,
                "selected index %zu (of %zu) not a usable device", sel.index[i],
                n);
        for (size_t j = 0; j < i; j++)
            REQUIRE(sel.index[i] != sel.index[j], "device selected twice");
    }
}
#endif

static void check_info(const attn_device_info *i)
{
    REQUIRE(memchr(i->name, '\0', sizeof i->name) &&
                memchr(i->vendor, '\0', sizeof i->vendor) &&
                memchr(i->platform, '\0', sizeof i->platform) &&
                memchr(i->driver_version, '\0', sizeof i->driver_version) &&
                memchr(i->opencl_c_version, '\0', sizeof i->opencl_c_version) &&
                memchr(i->reason, '\0', sizeof i->reason),
            "attn_device_info string not terminated");
}

/* attn_context_create with random options; the context is destroyed at
 * once (OpenCL runtimes are created but no kernel is built). */
static void run_context(gen_src *g)
{
    static const int threads[] = {0, 1, 2, -1, 1025, INT32_MIN, INT32_MAX};
    static const int queues[] = {0, 1, 2, -1, 17, 1000, INT32_MAX, INT32_MIN};
    static const char *const caches[] = {"", "/nonexistent/libattn-cache",
                                         "/tmp/libattn-fuzz-cache"};
    attn_options o;
    attn_context *ctx = (attn_context *)&o; /* must be overwritten */
    char spec[160];
    attn_status s;
    int null_o = gen_chance(g, 5), null_out = gen_chance(g, 3);
    attn_options_init(&o);
    gen_device_spec(g, spec, sizeof spec);
    o.device = gen_chance(g, 5) ? NULL : spec;
    o.threads = gen_pick(g, threads, sizeof threads / sizeof(int));
    o.queues = gen_pick(g, queues, sizeof queues / sizeof(int));
    o.cache_dir = caches[gen_int(g, 0, 2)];
    o.allow_fallback =
        gen_chance(g, 20) ? hostile_enum(g, 1) : gen_int(g, 0, 1);
    o.path = (attn_path)(gen_chance(g, 20) ? hostile_enum(g, ATTN_PATH_UNFUSED)
                                           : gen_int(g, 0, 2));
    o.log = gen_chance(g, 50) ? check_log : NULL;
    o.log_level = gen_chance(g, 20)   ? hostile_enum(g, ATTN_LOG_OFF)
                  : gen_chance(g, 50) ? ATTN_LOG_OFF
                                      : gen_int(g, 1, 4);
    if (!o.log && o.log_level != ATTN_LOG_OFF)
        o.log_level = ATTN_LOG_OFF; /* nothing on stderr */
    s = attn_context_create(null_o ? NULL : &o, null_out ? NULL : &ctx);
    REQUIRE_STATUS(s, "attn_context_create");
    REQUIRE(memchr(attn_last_error(), '\0', 4096), "last error");
    stats[s == ATTN_OK ? ST_CTX_OK : ST_CTX_ERR]++;
    if (null_out) {
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT, "out NULL accepted");
        return;
    }
    if (s != ATTN_OK) {
        REQUIRE(ctx == NULL, "*out not NULL after a failure");
        REQUIRE(attn_last_error()[0], "attn_context_create failed silently");
        return;
    }
    REQUIRE(ctx != NULL, "no context");
    {
        attn_device_info info = ATTN_DEVICE_INFO_INIT;
        REQUIRE(attn_context_device(ctx, &info) == ATTN_OK, "device info");
        check_info(&info);
        REQUIRE(attn_context_device(ctx, NULL) == ATTN_ERR_INVALID_ARGUMENT,
                "attn_context_device(ctx, NULL)");
        REQUIRE(strlen(attn_context_last_error(ctx)) < 4096, "last error");
        /* A native context is cheap to use: run one small call on it. */
        if (info.kind == ATTN_DEVICE_NATIVE && gen_chance(g, 50))
            run_sdpa(g, ctx, 0, 0);
    }
    attn_context_destroy(ctx);
}

/* ---- the rest of the surface ------------------------------------------ */

static void run_misc(gen_src *g)
{
    stats[ST_MISC]++;
    switch (gen_int(g, 0, 4)) {
    case 0: {
        int seq = gen_chance(g, 70) ? gen_int(g, 1, 64) : hostile_int(g);
        int dm = gen_chance(g, 70) ? gen_int(g, 1, 64) : hostile_int(g);
        int off = gen_chance(g, 70) ? gen_int(g, 0, 1 << 20) : hostile_int(g);
        size_t bytes;
        int dims[2] = {seq, dm};
        int fits = tensor_bytes(&bytes, 4, 2, dims) && bytes <= CAP_BYTES;
        int valid = seq > 0 && dm > 0 && off >= 0 && off <= INT32_MAX - seq;
        float *t = take(fits ? bytes : DUMMY);
        attn_status s;
        if (valid && !fits)
            return;
        memset(t, CANARY, fits ? bytes : DUMMY);
        s = attn_posenc_sinusoidal(seq, dm, off, gen_chance(g, 5) ? NULL : t);
        REQUIRE_STATUS(s, "attn_posenc_sinusoidal");
        if (s != ATTN_OK) {
            REQUIRE(all_bytes(t, fits ? bytes : DUMMY, CANARY),
                    "attn_posenc_sinusoidal wrote on error");
            return;
        }
        REQUIRE(valid, "attn_posenc_sinusoidal accepted %d %d %d", seq, dm,
                off);
        for (size_t i = 0; i < bytes / 4; i++)
            REQUIRE(t[i] >= -1.0f && t[i] <= 1.0f, "PE[%zu] = %g", i,
                    (double)t[i]);
        break;
    }
    case 1: {
        const char *str = attn_status_string((attn_status)hostile_int(g));
        REQUIRE(str && *str, "attn_status_string");
        REQUIRE(!strcmp(attn_version(), ATTN_VERSION_STRING), "version");
        break;
    }
    case 2: {
        size_t cap = (size_t)gen_int(g, 0, 3), count = 12345;
        attn_device_info *out = cap ? take(cap * sizeof *out) : NULL;
        int null_out = gen_chance(g, 10), null_count = gen_chance(g, 10);
        attn_status s = attn_devices(null_out ? NULL : out, cap,
                                     null_count ? NULL : &count);
        REQUIRE_STATUS(s, "attn_devices");
        if (null_count || (null_out && cap)) {
            REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT, "attn_devices accepted");
            break;
        }
        if (s == ATTN_OK)
            for (size_t i = 0; i < cap && i < count; i++)
                check_info(&out[i]);
        break;
    }
    case 3: {
        float x[4];
        attn_sdpa_desc d;
        attn_mha_desc m;
        memset(&d, 0, sizeof d);
        memset(&m, 0, sizeof m);
        REQUIRE(attn_sdpa(NULL, &d, x, x, x, x, NULL) ==
                    ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa(NULL ctx)");
        REQUIRE(attn_sdpa(native_ctx[0], NULL, x, x, x, x, NULL) ==
                    ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa(NULL desc)");
        REQUIRE(attn_mha_forward(NULL, &m, 1, 1, 1, x, NULL, NULL, x) ==
                    ATTN_ERR_INVALID_ARGUMENT,
                "attn_mha_forward(NULL ctx)");
        REQUIRE(attn_mha_forward(native_ctx[0], NULL, 1, 1, 1, x, NULL, NULL,
                                 x) == ATTN_ERR_INVALID_ARGUMENT,
                "attn_mha_forward(NULL desc)");
        REQUIRE(!strcmp(attn_context_last_error(NULL), "invalid context"),
                "attn_context_last_error(NULL)");
        attn_context_destroy(NULL);
        (attn_options_init)(NULL);
        break;
    }
    default:
#ifdef ATTN_HAVE_OPENCL
        run_select(g);
#endif
        break;
    }
}

/* ---- entry ------------------------------------------------------------ */

/* The first byte (mod 16) picks what an input exercises: 0-1 a valid
 * attn_sdpa on a native context, 2 the same on an OpenCL one, 3-5 a spoiled
 * attn_sdpa (native), 6 (OpenCL), 7 a valid attn_mha_forward (native), 8 a
 * spoiled one, 9 either on OpenCL, 10 the device selector, 11
 * attn_sdpa_cl_buffers on the harness's buffers (fuzz_cl.c), 12
 * attn_context_create with random options, 13 the same under
 * ATTN_DEVICE, ATTN_PLATFORM_DIR and cache folders (fuzz_cl.c), 14-15 the
 * other entry points.  OpenCL inputs run natively (11: the selector) once
 * they have used their share of the time. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gen_src g;
    int op;
    attn_context *cl;
    double t0 = now();
    gen_from_bytes(&g, data, size);
    op = gen_u8(&g) % 16;
    snprintf(fuzz_current, sizeof fuzz_current, "input of kind %d (see below)",
             op);
    if (op < 10) {
        /* attn_sdpa (op < 7) or attn_mha_forward, mostly native; some
         * inputs on an OpenCL context.  The bytes read do not depend on
         * whether the time budget allows OpenCL. */
        attn_context *native = native_ctx[gen_u8(&g) % N_NATIVE];
        cl = pick_cl(&g);
        if (op != 2 && op != 6 && op != 9)
            cl = NULL;
        int hostile = op == 9 ? gen_chance(&g, 50) : op >= 3 && op != 7;
        if (op < 7)
            run_sdpa(&g, cl ? cl : native, cl != NULL, hostile);
        else
            run_mha(&g, cl ? cl : native, cl != NULL, hostile);
    } else if (op == 10) {
#ifdef ATTN_HAVE_OPENCL
        run_select(&g);
#else
        run_misc(&g);
#endif
    } else if (op == 11) {
#ifdef ATTN_HAVE_OPENCL
        int r = -1;
        if (have_cl_buffers && t_cl <= cl_share * (now() - t_start)) {
            double t1 = now();
            r = fuzz_cl_buffers(&g);
            t_cl += now() - t1;
        }
        if (r < 0)
            run_select(&g);
        else
            stats[r ? ST_CLBUF_RUN : ST_CLBUF_REFUSED]++;
#else
        run_misc(&g);
#endif
    } else if (op == 12) {
        run_context(&g);
    } else if (op == 13) {
#ifdef ATTN_HAVE_OPENCL
        attn_status s = fuzz_env_context(&g, check_log);
        stats[s == ATTN_OK ? ST_CTX_OK : ST_CTX_ERR]++;
#else
        run_context(&g);
#endif
    } else {
        run_misc(&g);
    }
    release_all();
    op_seconds[op] += now() - t0;
    op_count[op]++;
    return 0;
}
