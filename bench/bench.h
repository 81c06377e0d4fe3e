/*
 * attn-bench's private declarations, shared by its files:
 *
 *   attn_bench.c   main: sets up, loops over the sizes, cleans up
 *   options.c      command line and usage
 *   util.c         clocks, statistics, inputs and the f64 reference check
 *   peers.c        finding, self-testing and loading the peers
 *   peer_python.c  the numpy / torch peer (bench/peer_numpy.py) as a
 *                  subprocess
 *   runner.c       one case: libattn and the peers, timed
 *   report.c       the table on stdout and the CSV file
 *   peer_ggml.c    ggml through dlopen (peer_ggml.h)
 *   impls.c        the --impl list and libattn's OpenCL contexts
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

enum { HEADS = 8, HEAD_DIM = 64, MAX_SIZES = 32, MAX_REPS = 1000 };

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
    IMPL_CLBLAST,    /* peer_clblast.c */
    IMPL_GGML,
    IMPL_NUMPY,
    IMPL_TORCH,
    IMPL_COUNT
} impl_id;

/* "native", "cl-fused", ... */
const char *impl_name(impl_id id);

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
    const char *device; /* OpenCL device of the cl-* impls (default "cpu") */
    unsigned impls;     /* bit (1u << impl_id) per impl asked for */
    int seq_q;          /* decode case: seq_q (1..4), seq_kv = N */
    double max_mem_mib; /* skip cases whose S matrix would exceed this */
    const char *plot;   /* PNG to write (through bench/plot.py) */
    const char *plot_script;
    int f16;               /* --dtype f16: Q, K, V and O in binary16 */
    int rss;               /* --rss: measure peak RSS instead of timing */
    const char *rss_child; /* internal: impl measured in this child */
} options;

static inline int opt_has(const options *o, impl_id id)
{
    return (o->impls >> id) & 1u;
}

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
    /* CLBlast (opened at the first case that runs it) */
    void *clblast; /* clblast_peer * */
    int clblast_tried;
    char clblast_why[512];
} peer_state;

/* One line of the table (and of the CSV file). */
typedef struct row {
    const char *impl; /* "libattn" for the native reference row */
    impl_id id;
    char label[96];
    int ok;
    double median_ms, min_ms;
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
/* peer_numpy.py beside the executable, else in the source tree (written to
 * buf); NULL when neither exists. */
const char *options_find_script(char *buf, size_t len);
/* plot.py, found the same way. */
const char *options_find_plot(char *buf, size_t len);

/* ---- util.c ---- */

/* Copies src into dst (size len), truncating; always NUL-terminated. */
void util_scopy(char *dst, size_t len, const char *src);
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
/* Floating-point operations of one case of size n. */
double util_flops(int n, int causal);
/* Largest |a[i] - b[i]|; NaN wins. */
float util_max_abs_diff(const float *a, const float *b, size_t n);
/* Deterministic inputs in [-1, 1). */
void util_fill(float *x, size_t n, uint64_t seed);
/* IEEE binary16 <-> binary32, round to nearest even (finite inputs). */
uint16_t util_to_half(float f);
float util_from_half(uint16_t h);
/* Max abs error of o against a double-precision reference on up to
 * rows_per_head evenly spread rows of every head; NaN when out of memory. */
double util_check_rows(const float *q, const float *k, const float *v,
                       const float *o, int n, int causal, int rows_per_head);

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
    char blas[512];
    char env[256];
    char error[512]; /* when !ok */
    int fatal;       /* the peer cannot run at all (no python, no numpy) */
} py_result;

/* Runs: python script N causal reps --threads T --backend B [--in in_path]
 * [--out out_path] with the BLAS thread variables set (and OPENBLAS_CORETYPE
 * / OPENBLAS_L2_SIZE dropped when unset_openblas); parses its RESULT /
 * ERROR line into r. */
void python_peer_run(const options *opt, int n, int causal, int reps,
                     const char *in_path, const char *out_path,
                     const char *backend, int unset_openblas, py_result *r);
/* Creates the input and output temp files of the python peers (paths of
 * len bytes).  Returns 0, or -1 after saying why on stderr. */
int python_peer_make_temps(char *in_path, char *out_path, size_t len);
/* Writes n_parts arrays of count floats to path.  0 or -1. */
int python_peer_write(const char *path, const float *const *parts,
                      size_t n_parts, size_t count);
/* Reads count floats from path into x.  0 or -1. */
int python_peer_read(const char *path, float *x, size_t count);

/* ---- impls.c ---- */

/* libattn contexts of the cl-* impls (NULL where unavailable, with why). */
typedef struct cl_impls {
    attn_context *ctx[IMPL_COUNT];
    char why[IMPL_COUNT][512];
    char desc[IMPL_COUNT][160]; /* device names, queues, path */
} cl_impls;

/* Parses a comma list of impl names ("all" for every one) into a bit set.
 * Returns 0, or -1 naming the bad word on stderr. */
int impls_parse(const char *list, unsigned *out);
/* Creates the libattn contexts of the cl-* impls opt asks for; an impl
 * that cannot run gets NULL and a reason. */
void impls_open(const options *opt, cl_impls *ci);
void impls_close(cl_impls *ci);
/* The context options of an impl (device, queues, path, threads). */
void impls_attn_options(const options *opt, impl_id id, attn_options *ao);
/* Bytes of one seq x seq score matrix over all heads (float). */
double impls_s_bytes(int seq_q, int seq_kv);

/* ---- runner.c ---- */

/* Times one case (size n, causal or not) on libattn and every usable peer
 * and prints its rows.  q, k, v: the inputs; o_lib, o_peer: outputs of
 * HEADS * n * HEAD_DIM floats; in_path / out_path: the python peers' files
 * (NULL: no python peer).  *lib_out_ms receives libattn's median,
 * ggml_out_ms[t] ggml's per K/V type when it ran.  Returns 0, or -1 when
 * libattn failed. */
int runner_case(const options *opt, attn_context *ctx, const cl_impls *ci,
                peer_state *ps, int n, int causal, const float *q,
                const float *k, const float *v, float *o_lib, float *o_peer,
                const char *in_path, const char *out_path);

/* ---- rss.c ---- */

/* --rss: runs native and cl-fused once each at size n (non-causal) in a
 * fresh child process (this executable, --rss-child) and prints the peak
 * RSS.  Returns 0, or 1 when a child failed. */
int rss_run(const options *opt, int n, const char *argv0);
/* The child's side: one call, then prints VmHWM.  Returns the exit code. */
int rss_child_main(const options *opt);

/* ---- plot ---- */

/* Runs python3 plot.py CSV PNG.  Never fails the bench: a missing
 * matplotlib is reported with the command that installs it.  Returns 0
 * when the PNG was written, else -1 (then the CSV is worth keeping). */
int report_plot(const options *opt, const char *csv_path);

/* Releases what runner_case opened (the CLBlast peer). */
void runner_cleanup(peer_state *ps);

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
/* Prints one row (first: the row that names N and causal) to stdout and
 * the CSV file; lib_ms: libattn's median, for the ratio; seq_q: the
 * query length (N, or --seq-q for the decode rows).  Also remembers the
 * median for report_summary. */
void report_row(int n, int causal, int first, const row *r, double lib_ms,
                int seq_q);
/* Prints the closing lines: load average, numpy's BLAS, and the targets
 * at N=2048 (libattn vs ggml, cl-fused vs CLBlast, 2 queues vs 1). */
void report_summary(const options *opt, const peer_state *ps, int rc);

#endif /* ATTN_BENCH_BENCH_H */
