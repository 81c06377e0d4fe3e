/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's command line: the options, their defaults and --help.
 */
#include "bench.h"
#include "cli/cli_options.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef ATTN_BENCH_SOURCE_DIR
#define ATTN_BENCH_SOURCE_DIR "."
#endif

/* The options, as --help and the manual page show them. */
enum {
    K_IMPL = 'i',
    K_DEVICE = 'd',
    K_THREADS = 't',
    K_SIZES = 's',
    K_REPS = 'r',
    K_WARMUP = 'w',
    K_CAUSAL = 'c',
    K_KERNEL = CLI_LONG_ONLY,
    K_RESIDENT,
    K_HEAD_DIM,
    K_HEADS,
    K_KV_HEADS,
    K_BATCH,
    K_SEQ_Q,
    K_DECODE_ONLY,
    K_MAX_MEM,
    K_PLOT,
    K_RSS,
    K_NATIVE_REPS,
    K_DTYPE,
    K_NO_PEERS,
    K_NO_GGML,
    K_NO_NUMPY,
    K_NO_TORCH,
    K_GGML_LIB,
    K_GGML_KV,
    K_PYTHON,
    K_PEER_SCRIPT,
    K_CSV,
    K_TRIAD_MIB,
    K_RSS_CHILD
};

/* clang-format off */
static const cli_option option_table[] = {
    {"impl", K_IMPL, "LIST",
     "comma list (default native,cl-fused,clblast,ggml,numpy,\n"
     "torch,openvino,onnxruntime;\n"
     "'all' = every one; native always runs, as the reference):\n"
     "  native      libattn, device \"native\"\n"
     "  cl-unfused  libattn OpenCL, path UNFUSED, 1 queue\n"
     "  cl-fused    libattn OpenCL, path FUSED, 1 queue\n"
     "  cl-decode   libattn OpenCL, path AUTO, seq_q=--seq-q,\n"
     "              seq_kv=N (extra rows against native)\n"
     "  cl-q2, cl-q4  as cl-fused with 2 / 4 queues\n"
     "  cl-2dev     as cl-fused on device \"all\" (needs 2 devices;\n"
     "              PoCL: POCL_DEVICES=\"pthread pthread\")\n"
     "  cl-auto     libattn OpenCL, path AUTO (the library's\n"
     "              choice per shape), 1 queue\n"
     "  cl:VARIANT  libattn OpenCL, that kernel variant forced\n"
     "              (options.kernel; as --kernel VARIANT)\n"
     "  clblast     CLBlast batched GEMM + softmax kernel + GEMM\n"
     "  ggml, numpy, torch   the CPU peers\n"
     "  openvino    OpenVINO's ScaledDotProductAttention op (CPU)\n"
     "  onnxruntime ONNX Runtime's MultiHeadAttention and\n"
     "              opset-23 Attention ops (CPU)\n"
     "  torch-cuda  torch sdpa on CUDA tensors, CUDA events"},
    {"kernel", K_KERNEL, "LIST",
     "kernel variants to force, one cl:VARIANT impl each\n"
     "('all' = every variant; attn-probe --kernels lists them)"},
    {"device", K_DEVICE, "SPEC",
     "OpenCL device of the cl-* impls and of clblast (default:\n"
     "$ATTN_DEVICE when it names an OpenCL device, else cpu)"},
    {"resident", K_RESIDENT, NULL,
     "cl-* impls and clblast on device buffers made once per\n"
     "case (attn_sdpa_cl_buffers), timed by OpenCL event\n"
     "profiling (kernels only); host wall time per call in\n"
     "its own column.  Default: host pointers, host clock"},
    {"head-dim", K_HEAD_DIM, "LIST", "comma list of head sizes (default 64)"},
    {"heads", K_HEADS, "H", "query heads (default 8)"},
    {"kv-heads", K_KV_HEADS, "K",
     "key/value heads, dividing H (default H; fewer: GQA)"},
    {"batch", K_BATCH, "B", "batch items (default 1)"},
    {"seq-q", K_SEQ_Q, "S",
     "query rows of the decode case, 1..16 (default 1)"},
    {"decode-only", K_DECODE_ONLY, NULL,
     "only the decode case (seq_q = --seq-q, seq_kv = N):\n"
     "native, cl-decode, cl:VARIANT and torch-cuda rows"},
    {"max-mem", K_MAX_MEM, "MIB",
     "skip cl-unfused / clblast / numpy cases whose score\n"
     "matrix would exceed MIB MiB (default 1024)"},
    {"plot", K_PLOT, "FILE.png",
     "time and TFLOP/s against N (python3 + matplotlib,\n"
     "plot.py reads the CSV)"},
    {"rss", K_RSS, NULL,
     "instead of timing: peak RSS of one call of native and\n"
     "cl-fused at the largest --sizes, each in a fresh child"},
    {"threads", K_THREADS, "N",
     "threads for libattn, ggml and BLAS (default: online CPUs)"},
    {"sizes", K_SIZES, "LIST", "comma list of N (default 512,1024,2048,4096,8192)"},
    {"reps", K_REPS, "R",
     "timed runs per case; median and min are shown\n"
     "(default: 15 for N <= 1024, 9 for N <= 2048, else 5;\n"
     "decode case 31)"},
    {"native-reps", K_NATIVE_REPS, "R",
     "timed runs of native (default: as the others)"},
    {"warmup", K_WARMUP, "W", "untimed runs before timing (default 1)"},
    {"causal", K_CAUSAL, "MODE", "no, yes or both (default both)"},
    {"dtype", K_DTYPE, "TYPE",
     "f32 (default), f16 (Q, K, V and O in binary16) or bf16\n"
     "(bfloat16); f16 leaves out clblast, ggml, numpy and torch\n"
     "(f32 only), bf16 every peer"},
    {"no-peers", K_NO_PEERS, NULL, "time libattn only"},
    {"no-ggml", K_NO_GGML, NULL, "leave out the ggml peer"},
    {"no-numpy", K_NO_NUMPY, NULL, "leave out the numpy peer"},
    {"no-torch", K_NO_TORCH, NULL, "leave out the torch peer"},
    {"ggml-lib", K_GGML_LIB, "PATH",
     "libggml.so or its folder (default: $ATTN_BENCH_GGML, then\n"
     "the lib/ folder of python's llama_cpp or ggml package)"},
    {"ggml-kv", K_GGML_KV, "TYPE", "K/V type handed to ggml: f16, f32 or both (default)"},
    {"python", K_PYTHON, "PATH", "interpreter for the python peers (default python3)"},
    {"peer-script", K_PEER_SCRIPT, "P",
     "peer_numpy.py (default: beside attn-bench, then\n"
     "../share/attn/ from it, else the source tree;\n"
     "peer_torch_cuda.py is looked up the same way)"},
    {"csv", K_CSV, "FILE", "also write every row to FILE as CSV"},
    {"triad-mib", K_TRIAD_MIB, "MIB",
     "size of each of the three arrays of the memory bandwidth\n"
     "(STREAM triad) the decode rows are held against (default:\n"
     "4 x the last-level cache, at least 64; 0: not measured)"},
    {"rss-child", K_RSS_CHILD, "IMPL", NULL}, /* internal: --rss's child */
    {NULL, 0, NULL, NULL}};

static const cli_section section_table[] = {
    {"Columns",
     "kernel = the variant a libattn row ran (attn_sdpa_kernel), then\n"
     "/tf32, /3xtf32 or /bf16 when it ran at that precision\n"
     "(attn_sdpa_precision; ATTN_PRECISION asks for one; CSV column\n"
     "precision); median ms and min ms of the timed runs; TFLOP/s =\n"
     "4*B*H*seq_q*seq_kv*d (halved when causal) / median; GB/s = K and\n"
     "V bytes read / median (decode rows); 'native x faster' = row median / native median (above 1:\n"
     "native is faster); max|diff| = largest absolute difference from\n"
     "native's output (for native itself: from a double-precision reference\n"
     "on sampled rows).  --resident adds 'wall ms': host time per call.\n"
     "With the decode case, '% triad' = the row's GB/s against the triad's."},
    {"Exit status",
     "0 on success; 1 when libattn's native row failed (the reference of\n"
     "the others), libattn could not start or the output could not be\n"
     "written; 2 on a usage error or when the CSV could not be written. A\n"
     "row of another implementation that fails says why in its note."},
    {"See also", "attn-probe(1), attn-tune(1)"},
    {NULL, NULL}};
/* clang-format on */

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

int options_file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

const char *options_find(const char *name, char *buf, size_t len)
{
    char exe[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (l > 0) {
        exe[l] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, len, "%s/%s", exe, name);
            if (options_file_exists(buf))
                return buf;
            /* Installed: <prefix>/bin/attn-bench and the scripts in
             * <prefix>/share/attn. */
            snprintf(buf, len, "%s/../share/attn/%s", exe, name);
            if (options_file_exists(buf))
                return buf;
        }
    }
    snprintf(buf, len, "%s/%s", ATTN_BENCH_SOURCE_DIR, name);
    if (options_file_exists(buf))
        return buf;
    return NULL;
}

/* A comma list of head sizes. */
static int parse_head_dims(const char *s, options *o)
{
    o->n_head_dims = 0;
    char buf[512];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        if (o->n_head_dims == MAX_SIZES ||
            parse_int(t, 1, 1024, &o->head_dims[o->n_head_dims]) != 0)
            return -1;
        o->n_head_dims++;
    }
    return o->n_head_dims > 0 ? 0 : -1;
}

static int parse_kernels(const char *s, options *o)
{
    char buf[512];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save))
        if (impls_add_kernel(t, o) != 0)
            return -1;
    return 0;
}

static int parse_choice(const char *v, const char *const *names, int n,
                        int *out)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

static int on_option(void *user, int key, const char *val)
{
    static const char *const causal[] = {"no", "yes", "both"};
    static const char *const kv[] = {"", "f16", "f32", "both"};
    static const char *const dtype[] = {"f32", "f16", "bf16"};
    options *o = user;
    int mib = 0;
    switch (key) {
    case K_THREADS:
        return parse_int(val, 1, 4096, &o->threads);
    case K_SIZES:
        return parse_sizes(val, o);
    case K_HEAD_DIM:
        return parse_head_dims(val, o);
    case K_HEADS:
        return parse_int(val, 1, 4096, &o->heads);
    case K_KV_HEADS:
        return parse_int(val, 1, 4096, &o->kv_heads);
    case K_BATCH:
        return parse_int(val, 1, 65536, &o->batch);
    case K_REPS:
        return parse_int(val, 1, MAX_REPS, &o->reps);
    case K_NATIVE_REPS:
        return parse_int(val, 1, MAX_REPS, &o->native_reps);
    case K_WARMUP:
        return parse_int(val, 0, 100, &o->warmup);
    case K_CAUSAL:
        return parse_choice(val, causal, 3, &o->causal_mode);
    case K_GGML_KV:
        return parse_choice(val, kv, 4, &o->ggml_kv) || o->ggml_kv == 0 ? -1
                                                                        : 0;
    case K_DTYPE:
        return parse_choice(val, dtype, 3, &o->f16);
    case K_NO_PEERS:
        o->peers = 0;
        return 0;
    case K_NO_GGML:
        o->ggml = 0;
        return 0;
    case K_NO_NUMPY:
        o->numpy = 0;
        return 0;
    case K_NO_TORCH:
        o->torch = 0;
        return 0;
    case K_GGML_LIB:
        o->ggml_lib = val;
        return 0;
    case K_PYTHON:
        o->python = val;
        return 0;
    case K_PEER_SCRIPT:
        o->script = val;
        return 0;
    case K_CSV:
        o->csv = val;
        return 0;
    case K_DEVICE:
        o->device = val;
        return 0;
    case K_IMPL:
        return impls_parse(val, o);
    case K_KERNEL:
        return parse_kernels(val, o);
    case K_SEQ_Q:
        return parse_int(val, 1, MAX_SEQ_Q, &o->seq_q);
    case K_DECODE_ONLY:
        o->decode_only = 1;
        return 0;
    case K_RESIDENT:
        o->resident = 1;
        return 0;
    case K_MAX_MEM:
        if (parse_int(val, 1, 1 << 30, &mib) != 0)
            return -1;
        o->max_mem_mib = mib;
        return 0;
    case K_PLOT:
        o->plot = val;
        return 0;
    case K_RSS:
        o->rss = 1;
        return 0;
    case K_TRIAD_MIB:
        return parse_int(val, 0, 1 << 20, &o->triad_mib);
    case K_RSS_CHILD:
        o->rss_child = val;
        return 0;
    default:
        return -1;
    }
}

int options_parse(int argc, char **argv, options *o)
{
    const cli_spec spec = {
        "attn-bench",
        "time libattn's attention against its peers",
        attn_version(),
        "[options]",
        "Times attn_sdpa (libattn native backend and OpenCL paths) for B=1,\n"
        "H=8, d=64, seq_q = seq_kv = N, f32, causal and not (other shapes:\n"
        "--batch, --heads, --kv-heads, --head-dim), against a CLBlast\n"
        "gemm+softmax+gemm path, ggml_flash_attn_ext (ggml CPU backend), "
        "numpy\n"
        "matmul+softmax, torch sdpa (if installed), torch sdpa on CUDA\n"
        "(torch-cuda) and the attention ops of OpenVINO and ONNX Runtime.",
        option_table,
        section_table};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int rc;
    memset(o, 0, sizeof *o);
    o->threads = cpus > 0 ? (int)cpus : 1;
    o->warmup = 1;
    o->causal_mode = 2;
    o->peers = o->ggml = o->numpy = o->torch = o->torch_cuda = 1;
    o->ggml_kv = 3;
    o->python = "python3";
    o->device = "cpu";
    {
        /* ATTN_DEVICE=gpu attn-bench: the cl-* impls on the GPU. */
        static char env_device[512];
        const char *env = getenv("ATTN_DEVICE");
        if (env && *env && strcmp(env, "auto") != 0 &&
            strcmp(env, "native") != 0) {
            snprintf(env_device, sizeof env_device, "%s", env);
            o->device = env_device;
        }
        /* ... and no further: the library would put every context on it,
         * native's and cl-2dev's too, and over --device. */
        if (env)
            unsetenv("ATTN_DEVICE");
    }
    o->seq_q = 1;
    o->batch = 1;
    o->heads = 8;
    o->max_mem_mib = 1024;
    o->triad_mib = -1;
    impls_parse("native,cl-fused,clblast,ggml,numpy,torch,openvino,"
                "onnxruntime",
                o);
    parse_sizes("512,1024,2048,4096,8192", o);
    parse_head_dims("64", o);
    if ((rc = cli_parse(&spec, argc, argv, on_option, o)) >= 0)
        return rc == 0 ? 1 : -1;
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    if (o->heads % o->kv_heads != 0) {
        fprintf(stderr,
                "attn-bench: --kv-heads %d does not divide --heads %d\n",
                o->kv_heads, o->heads);
        return -1;
    }
    if (o->n_kernels > 0)
        o->impls |= 1u << IMPL_CL_KERNEL;
    if (o->f16) { /* clblast, ggml, numpy and torch take f32 only */
        o->ggml = o->numpy = o->torch = 0;
        o->impls &= ~(1u << IMPL_CLBLAST);
    }
    if (o->f16 == 2) /* the peers are not handed bfloat16 */
        o->peers = 0;
    if (!o->peers) {
        o->ggml = o->numpy = o->torch = o->torch_cuda = 0;
        o->impls &= ~((1u << IMPL_CLBLAST) | (1u << IMPL_OPENVINO) |
                      (1u << IMPL_ONNXRUNTIME));
    }
    o->ggml = o->ggml && opt_has(o, IMPL_GGML);
    o->numpy = o->numpy && opt_has(o, IMPL_NUMPY);
    o->torch = o->torch && opt_has(o, IMPL_TORCH);
    o->torch_cuda = o->torch_cuda && opt_has(o, IMPL_TORCH_CUDA);
    return 0;
}

int options_reps(const options *o, int n)
{
    if (o->reps)
        return o->reps;
    return n <= 1024 ? 15 : n <= 2048 ? 9 : 5;
}
