/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's private declarations, shared by its files:
 *
 *   attn_bench.c   main: sets up, loops over head sizes and sizes, cleans up
 *   options.c      command line and usage
 *   util.c         clocks, statistics, shapes, inputs and the f64 reference
 *                  check
 *   peers.c        finding, self-testing and loading the peers
 *   peer_python.c  the python peers (bench/peer_numpy.py: numpy, torch;
 *                  bench/peer_torch_cuda.py: torch-cuda) as subprocesses
 *   child.c        the python peers' child processes and their pipes
 *   peer_serve.c   python peers kept up for a case, one call per request
 *                  (bench/peer_runtimes.py: openvino, onnxruntime)
 *   runner.c       one case: libattn and the in-process peers, timed
 *   entries.c      the timed loop of a case (runner.h)
 *   runner_rt.c    one case's openvino and onnxruntime rows (runner.h)
 *   runner_py.c    one case's python peers (runner.h)
 *   triad.c        the memory bandwidth the decode rows are held against
 *   report.c       the table on stdout, the CSV file and the summary
 *   peer_ggml.c    ggml through dlopen (peer_ggml.h)
 *   impls.c        the --impl / --kernel lists and libattn's OpenCL contexts
 *   resident.c     --resident: device buffers and event timing (bench_cl.h)
 *   rss.c          --rss: peak RSS of one call in a fresh child process
 *   peer_clblast.c the CLBlast unfused path (peer_clblast.h; built only
 *                  when CLBlast and OpenCL are found)
 */
#ifndef ATTN_BENCH_BENCH_H
#define ATTN_BENCH_BENCH_H

#include <attn/attn.h>

#include "peer_ggml.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum {
    MAX_SIZES = 32,
    MAX_REPS = 1000,
    MAX_KERNELS = 16, /* --kernel: cl:<variant> impls */
    MAX_SEQ_Q = 16    /* --seq-q: query rows of the decode case */
};

/* What --impl can name.  Native is always run: it is the reference every
 * other output is compared with. */
typedef enum impl_id {
    IMPL_NATIVE = 0,
    IMPL_CL_UNFUSED, /* OpenCL, ATTN_PATH_UNFUSED, 1 queue */
    IMPL_CL_FUSED,   /* OpenCL, ATTN_PATH_FUSED, 1 queue */
    IMPL_CL_DECODE,  /* OpenCL, ATTN_PATH_AUTO, seq_q = --seq-q */
    IMPL_CL_Q2,      /* OpenCL, ATTN_PATH_FUSED, 2 queues */
    IMPL_CL_Q4,      /* OpenCL, ATTN_PATH_FUSED, 4 queues */
    IMPL_CL_2DEV,    /* OpenCL, ATTN_PATH_FUSED, device "all" (>= 2) */
    IMPL_CL_AUTO,    /* OpenCL, ATTN_PATH_AUTO: the variant the library picks */
    IMPL_CLBLAST,    /* peer_clblast.c */
    IMPL_GGML,
    IMPL_NUMPY,
    IMPL_TORCH,       /* torch sdpa on the CPU (peer_numpy.py) */
    IMPL_TORCH_CUDA,  /* torch sdpa on a CUDA device (peer_torch_cuda.py) */
    IMPL_OPENVINO,    /* OpenVINO SDPA op on the CPU (peer_runtimes.py) */
    IMPL_ONNXRUNTIME, /* ONNX Runtime attention ops on the CPU (same) */
    IMPL_CL_KERNEL,   /* cl:<variant>: one kernel variant forced by name */
    IMPL_COUNT
} impl_id;

/* "native", "cl-fused", ... ("cl:<variant>" for IMPL_CL_KERNEL) */
const char *impl_name(impl_id id);

/* One attention shape: Q [batch, heads, seq_q, head_dim], K and V [batch,
 * kv_heads, seq_kv, head_dim], O as Q. */
typedef struct shape {
    int batch, heads, kv_heads, seq_q, seq_kv, head_dim;
} shape;

typedef struct options {
    int threads;
    int sizes[MAX_SIZES];
    int n_sizes;
    int head_dims[MAX_SIZES]; /* --head-dim (default 64) */
    int n_head_dims;
    int batch, heads, kv_heads; /* --batch, --heads, --kv-heads */
    int reps;                   /* 0: by size */
    int native_reps;            /* 0: as reps */
    int warmup;
    int causal_mode; /* 0 no, 1 yes, 2 both */
    int peers;
    int ggml;
    int numpy;
    int torch;
    int torch_cuda;
    int ggml_kv; /* 1 f16, 2 f32, 3 both */
    const char *ggml_lib;
    const char *python;
    const char *script;      /* peer_numpy.py */
    const char *cuda_script; /* peer_torch_cuda.py */
    const char *rt_script;   /* peer_runtimes.py */
    const char *csv;
    const char *device; /* OpenCL device of the cl-* impls (default "cpu") */
    unsigned impls;     /* bit (1u << impl_id) per impl asked for */
    char kernels[MAX_KERNELS][32]; /* cl:<variant> impls, in order */
    int n_kernels;
    int seq_q;          /* decode case: seq_q (1..MAX_SEQ_Q), seq_kv = N */
    int decode_only;    /* --decode-only: no square case */
    int resident;       /* --resident: device buffers, event timing */
    double max_mem_mib; /* skip cases whose S matrix would exceed this */
    const char *plot;   /* PNG to write (through bench/plot.py) */
    const char *plot_script;
    int f16;       /* --dtype: 0 f32, 1 f16 (binary16), 2 bf16 (bfloat16) */
    int rss;       /* --rss: measure peak RSS instead of timing */
    int triad_mib; /* --triad-mib: per array; 0: no triad; -1: auto */
    const char *rss_child; /* internal: impl measured in this child */
} options;

static inline int opt_has(const options *o, impl_id id)
{
    return (o->impls >> id) & 1u;
}

/* The peers of peer_runtimes.py, one row each. */
typedef enum rt_peer {
    RT_OPENVINO, /* openvino: opset-13 ScaledDotProductAttention */
    RT_ORT_MHA,  /* onnxruntime: com.microsoft MultiHeadAttention */
    RT_ORT_ATTN, /* onnxruntime: opset-23 Attention */
    RT_COUNT
} rt_peer;

/* peer_runtimes.py's name of a peer ("openvino", "ort-mha", ...). */
const char *rt_backend(rt_peer p);

typedef struct peer_state {
    /* ggml */
    ggml_peer *g;
    int ggml_ok[2]; /* per K/V type: [0] f16, [1] f32 */
    char ggml_why[2][512];
    /* python peers */
    int numpy_ok, torch_ok;
    char numpy_why[512];
    int numpy_variants; /* 1: as-is only (no OPENBLAS_* set), 2: as-is + unset
                         */
    char openblas_env[256];
    char blas_seen[2][512];
    char numpy_impl[128];
    /* torch-cuda: checked once (peer_torch_cuda.py --check) */
    int cuda_ok;
    char cuda_why[512];    /* why it is skipped */
    char cuda_device[256]; /* the CUDA device and torch version */
    /* openvino, onnxruntime: checked once (peer_runtimes.py --check) */
    int rt_ok[RT_COUNT];
    char rt_why[RT_COUNT][512];  /* why skipped */
    char rt_impl[RT_COUNT][128]; /* the runtime, its version and op */
    /* the decode rows' measure: STREAM triad, GB/s (0: not measured) */
    double triad_gbps, triad_best_gbps;
    size_t triad_mib;
    char triad_why[256];
    /* CLBlast (opened at the first case that runs it) */
    void *clblast; /* clblast_peer * */
    int clblast_tried;
    char clblast_why[512];
} peer_state;

/* One line of the table (and of the CSV file). */
typedef struct row {
    const char *impl; /* "libattn" for the native reference row */
    impl_id id;
    char key[48]; /* the --impl name ("cl:tiled" for a forced variant) */
    char label[96];
    char kernel[48]; /* libattn rows: the variant that ran (attn_sdpa_kernel) */
    char precision[8]; /* libattn rows: what it ran at (attn_sdpa_precision) */
    char device[128];
    const char *timing; /* host, event, cuda-event, python */
    shape s;
    int causal, f16;
    int decode; /* a row of the decode case */
    int ok;
    double median_ms, min_ms;
    double wall_ms;   /* event-timed rows: host time per call; else NAN */
    double diff;      /* vs libattn (peers) or vs the f64 reference (libattn) */
    const char *note; /* shown when !ok */
} row;

/* ---- options.c ---- */

/* Fills o from the command line (defaults first).  Returns 0 to go on, 1
 * after printing --help, -1 after printing why the line is wrong. */
int options_parse(int argc, char **argv, options *o);
/* Timed runs per case of size n: --reps, else by size. */
int options_reps(const options *o, int n);
/* 1 when p names a regular file. */
int options_file_exists(const char *p);
/* A file of attn-bench's (peer_numpy.py, peer_torch_cuda.py, plot.py)
 * beside the executable, else in the source tree (written to buf); NULL
 * when neither exists. */
const char *options_find(const char *name, char *buf, size_t len);

/* ---- util.c ---- */

/* Copies src into dst (size len), truncating; always NUL-terminated. */
void util_scopy(char *dst, size_t len, const char *src);
/* The value after key in a line of "key=value" words (up to the next
 * blank) into out; "" when key is not there. */
void util_field(const char *line, const char *key, char *out, size_t len);
/* CLOCK_MONOTONIC in milliseconds. */
double util_now_ms(void);
/* Sleeps ms milliseconds (resumed after signals). */
void util_pause_ms(int ms);
/* "0.52 0.61 0.70" from /proc/loadavg, or "?" */
void util_loadavg(char *out, size_t len);
/* Median of t[0..n) (sorts t). */
double util_median(double *t, int n);
/* Smallest of t[0..n). */
double util_min(const double *t, int n);
/* Elements of Q (= of O) and of K (= of V) of shape s. */
size_t shape_q_count(const shape *s);
size_t shape_kv_count(const shape *s);
/* The descriptor of shape s (scale 1/sqrt(d), head_dim_v = head_dim). */
void shape_desc(const shape *s, int causal, int f16, attn_sdpa_desc *d);
/* Floating-point operations of one call: 4 * B * H * seq_q * seq_kv * d,
 * halved when causal and seq_q == seq_kv (the convention of the GPU
 * libraries); when seq_q < seq_kv, causal counts the keys each query row
 * sees (bottom-right aligned). */
double util_flops(const shape *s, int causal);
/* Bytes of K and V read by one call (each element once). */
double util_kv_bytes(const shape *s, int f16);
/* Largest |a[i] - b[i]|; NaN wins. */
float util_max_abs_diff(const float *a, const float *b, size_t n);
/* Deterministic inputs in [-1, 1). */
void util_fill(float *x, size_t n, uint64_t seed);
/* IEEE binary16 <-> binary32, round to nearest even (finite inputs). */
uint16_t util_to_half(float f);
float util_from_half(uint16_t h);
uint16_t util_to_bf16(float f);
float util_from_bf16(uint16_t h);
/* "f32", "f16" or "bf16" for the storage kind of options.f16 (0, 1, 2). */
const char *util_dtype_name(int kind);
/* Max abs error of o against a double-precision reference on up to
 * rows_per_head evenly spread query rows of every (batch, head); when that
 * would take more than about 2^28 multiply-adds per product, on every
 * k-th (batch, head) only.  q, k, v, o in the layouts of shape s, causal
 * bottom-right aligned.  NaN when out of memory. */
double util_check_rows(const shape *s, const float *q, const float *k,
                       const float *v, const float *o, int causal,
                       int rows_per_head);

/* ---- peers.c ---- */

/* Finds, self-tests (in a child process) and loads the peers opt asks for,
 * filling ps; gwhy receives why ggml is not loaded.  Call before libattn
 * starts its threads.  Returns 1 when ggml is loaded. */
int peers_setup(const options *opt, peer_state *ps, char *gwhy,
                size_t gwhy_len);

/* ---- peer_python.c ---- */

typedef struct py_result {
    int ok;
    double median_ms, min_ms;
    char impl[128];
    char device[128]; /* torch-cuda: the CUDA device */
    char how[128];    /* torch-cuda: how the call runs (gqa, bool-mask..) */
    char blas[512];
    char env[256];
    char error[512]; /* when !ok */
    int fatal;       /* the peer cannot run at all (no python, no numpy) */
} py_result;

/* One run of a python peer. */
typedef struct py_job {
    const char *script;  /* peer_numpy.py or peer_torch_cuda.py */
    const char *backend; /* peer_numpy.py: "numpy" or "torch"; NULL for the
                            torch-cuda script */
    shape s;
    int causal, reps, f16;
    const char *in_path, *out_path; /* may be NULL */
    int unset_openblas; /* drop OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE */
} py_job;

/* Runs: python script N causal reps --threads T --batch B --heads H
 * --kv-heads K --dim D [--backend B | --seq-q S --dtype T --warmup W]
 * [--in in_path] [--out out_path] with the BLAS thread variables set;
 * parses its RESULT / ERROR line into r. */
void python_peer_run(const options *opt, const py_job *job, py_result *r);
/* Runs the torch-cuda script with --check: 0 and the device in dev when
 * torch imports and CUDA is available, else -1 and why. */
int python_cuda_check(const options *opt, char *dev, size_t dev_len, char *why,
                      size_t why_len);
/* Creates a temp file (path of len bytes) named after what.  Returns 0, or
 * -1 after saying why on stderr. */
int python_peer_make_temp(char *path, size_t len, const char *what);
/* Writes n_parts arrays (counts[i] elements of elem bytes) to path.  0 or
 * -1. */
int python_peer_write(const char *path, const void *const *parts,
                      const size_t *counts, size_t n_parts, size_t elem);
/* Reads count floats from path into x.  0 or -1. */
int python_peer_read(const char *path, float *x, size_t count);

/* ---- child.c ---- */

/* A child process: its stdin (NULL: /dev/null), its stdout and stderr. */
typedef struct child_proc {
    pid_t pid;
    FILE *to, *from;
} child_proc;

/* Starts argv[0] (looked up in PATH) with argv and env (NULL: attn-bench's
 * own), its stdout and stderr on c->from and, with with_stdin, its stdin
 * on c->to.  A child that cannot exec says "ERROR cannot run ...".  0, or
 * -1 and why. */
int child_start(child_proc *c, const char *const *argv, char **env,
                int with_stdin, char *why, size_t why_len);
/* Reads the child's lines until one starts with one of answers (a
 * NULL-terminated list) and returns 0 with it in line; the other non-empty
 * lines go to last (when not NULL).  -1 at the end of its output. */
int child_answer(child_proc *c, const char *const *answers, char *line,
                 size_t len, char *last, size_t last_len);
/* Closes the pipes (EOF on its stdin) and waits for the child: its wait
 * status, -1 when there was none. */
int child_wait(child_proc *c);

/* ---- peer_serve.c ---- */

typedef struct serve_peer serve_peer; /* a python peer kept up for a case */

/* What a kept-up peer runs: script BACKEND N CAUSAL 0 --serve --threads T
 * --batch B --heads H --kv-heads K --dim D --seq-q S --dtype T --in F
 * --out G. */
typedef struct serve_job {
    const char *script, *backend;
    shape s;
    int causal, f16;
    const char *in_path, *out_path;
} serve_job;

/* Starts the peer and waits for its first line: 0 when it is READY (impl
 * and how filled, *out set), 1 when it says it does not take the case
 * (why), -1 when it failed (why). */
int serve_start(const options *opt, const serve_job *job, serve_peer **out,
                char *impl, size_t impl_len, char *how, size_t how_len,
                char *why, size_t why_len);
/* One call; *ms receives the peer's own time of it.  0, or -1 and why. */
int serve_run(serve_peer *p, double *ms, char *why, size_t why_len);
/* Has the peer write its last output to the job's out_path.  0 or -1. */
int serve_output(serve_peer *p, char *why, size_t why_len);
/* Ends the peer and waits for it (NULL: nothing). */
void serve_stop(serve_peer *p);
/* peer_runtimes.py --check: fills ps->rt_ok, rt_impl and rt_why for the
 * peers opt asks for. */
void serve_check(const options *opt, peer_state *ps);

/* ---- triad.c ---- */

/* Per-array size of the triad by default: 4 x the last-level cache, at
 * least 64 MiB, at most an eighth of the memory. */
size_t triad_default_mib(void);
/* The last-level cache in bytes (0: unknown). */
size_t triad_llc_bytes(void);
/* STREAM triad a[i] = b[i] + s * c[i] over three arrays of mib MiB of
 * doubles on `threads` threads, each its own part (first touched by it):
 * median and best of `runs` runs in GB/s, counting 24 bytes per element
 * (two reads and a write, as STREAM does: the write-allocate read is not
 * counted).  Returns 0, or -1 and why. */
int triad_measure(int threads, size_t mib, int runs, double *median_gbps,
                  double *best_gbps, char *why, size_t why_len);

/* ---- resident.c: --resident, on device buffers ---- */

typedef struct resident resident; /* a cl_context and a profiling queue */
typedef struct res_buf res_buf;   /* one device buffer */

/* Opens the OpenCL device that libattn selects for spec (its first one):
 * a cl_context of its own and an in-order queue with profiling.  Returns
 * 0, or -1 and a sentence in why (also when built without OpenCL). */
int resident_open(const char *spec, resident **out, char *why, size_t why_len);
void resident_close(resident *r);
/* "device name (platform)" */
const char *resident_device(const resident *r);
/* attn_context_create_cl on r's cl_context and device. */
attn_status resident_context(resident *r, const attn_options *ao,
                             attn_context **out);
/* A device buffer of bytes on ctx's cl_context (attn_context_cl_objects),
 * filled from host when host is not NULL.  Returns 0, or -1 and why. */
int res_buf_create(attn_context *ctx, size_t bytes, const void *host,
                   res_buf **out, char *why, size_t why_len);
void res_buf_free(res_buf *b);
/* Reads the buffer (bytes) into host, blocking.  0, or -1 and why. */
int res_buf_read(resident *r, const res_buf *b, void *host, size_t bytes,
                 char *why, size_t why_len);
/* One attn_sdpa_cl_buffers call on r's queue, held back until enqueued
 * whole: kernel_ms from event profiling (end of the call's event minus
 * the end of a marker enqueued just before), wall_ms the host time from
 * the call to its completion.  Returns 0, or -1 and why. */
int res_call(resident *r, attn_context *ctx, const attn_sdpa_desc *d,
             const res_buf *q, const res_buf *k, const res_buf *v,
             const res_buf *o, double *kernel_ms, double *wall_ms, char *why,
             size_t why_len);

/* ---- impls.c ---- */

/* libattn contexts of the cl-* impls (NULL where unavailable, with why). */
typedef struct cl_impls {
    attn_context *ctx[IMPL_COUNT];
    char why[IMPL_COUNT][512];
    char desc[IMPL_COUNT][200]; /* device names, queues, path */
    /* cl:<variant> (opt->kernels[i]) */
    attn_context *kctx[MAX_KERNELS];
    char kwhy[MAX_KERNELS][512];
    char kdesc[MAX_KERNELS][200];
    resident *res; /* --resident: every cl context runs on it */
    char res_why[512];
} cl_impls;

/* Parses a comma list of impl names ("all" for every one but cl:<variant>)
 * into a bit set; "cl:<variant>" words are added to o's kernels.  Returns
 * 0, or -1 naming the bad word on stderr. */
int impls_parse(const char *list, options *o);
/* Adds a kernel variant name (or "all": every variant) to o's kernels.
 * Returns 0, or -1 naming the bad word on stderr. */
int impls_add_kernel(const char *name, options *o);
/* 1 for the libattn OpenCL impls (cl-*, cl:<variant>). */
int impls_is_cl(impl_id id);
/* Creates the libattn contexts of the cl-* impls opt asks for; an impl
 * that cannot run gets NULL and a reason. */
void impls_open(const options *opt, cl_impls *ci);
void impls_close(cl_impls *ci);
/* The context options of an impl (device, queues, path, threads); kernel:
 * the forced variant of IMPL_CL_KERNEL. */
void impls_attn_options(const options *opt, impl_id id, const char *kernel,
                        attn_options *ao);
/* Bytes of one seq_q x seq_kv score matrix over all heads of s (float). */
double impls_s_bytes(const shape *s);

/* ---- runner.c ---- */

/* The inputs of one case.  q, k, v hold the values every output is checked
 * against (rounded to binary16 when f16); lq, lk, lv what libattn gets
 * (the same arrays, or their binary16 copies). */
typedef struct case_inputs {
    shape s;
    int f16;
    int decode; /* the decode case: seq_q = --seq-q, seq_kv = N */
    const float *q, *k, *v;
    const void *lq, *lk, *lv;
    const char *py_in;  /* lq, lk, lv in one file for the python peers */
    const char *py_out; /* where they write O (as float) */
} case_inputs;

/* Times one case (causal or not) on libattn and every usable peer and
 * prints its rows: the square case (seq_q = seq_kv = N) or the decode case
 * (native, cl-decode, cl:<variant>, torch-cuda).  o_lib, o_peer: outputs
 * of shape_q_count floats.  Returns 0, or -1 when native failed. */
int runner_case(const options *opt, attn_context *ctx, const cl_impls *ci,
                peer_state *ps, const case_inputs *in, int causal, float *o_lib,
                float *o_peer);
/* Releases what runner_case opened (the CLBlast peer). */
void runner_cleanup(peer_state *ps);

/* ---- rss.c ---- */

/* --rss: runs native and cl-fused once each at size n (non-causal) in a
 * fresh child process (this executable, --rss-child) and prints the peak
 * RSS.  Returns 0, or 1 when a child failed. */
int rss_run(const options *opt, int n, const char *argv0);
/* The child's side: one call, then prints VmHWM.  Returns the exit code. */
int rss_child_main(const options *opt);

/* ---- report.c ---- */

/* Opens the CSV file and writes its header.  Returns 0, or -1 after saying
 * why on stderr. */
int report_csv_open(const char *path);
/* Closes the CSV file (if open).  Returns 0, or -1 when writing failed. */
int report_csv_close(void);
/* Prints what runs and how, then the table's header. */
void report_preamble(const options *opt, const peer_state *ps,
                     const attn_device_info *di, int ggml_loaded,
                     const char *gwhy);
/* Prints a line naming the shape of the rows that follow (head size,
 * heads, batch, dtype). */
void report_section(const options *opt, const shape *s);
/* Prints one row (first: the row that names N and causal) to stdout and
 * the CSV file; lib_ms: native's median, for the ratio.  Also remembers
 * the median for report_summary. */
void report_row(const options *opt, int first, const row *r, double lib_ms);
/* Prints the closing lines: load average, numpy's BLAS, the CPU targets at
 * N=2048 (libattn vs ggml, cl-fused vs CLBlast, 2 queues vs 1) and, per
 * case with a GPU peer, the fastest libattn row against CLBlast and
 * torch-cuda. */
void report_summary(const options *opt, const peer_state *ps, int rc);
/* Runs python3 plot.py CSV PNG.  Never fails the bench: a missing
 * matplotlib is reported with the command that installs it.  Returns 0
 * when the PNG was written, else -1 (then the CSV is worth keeping). */
int report_plot(const options *opt, const char *csv_path);

#endif /* ATTN_BENCH_BENCH_H */
