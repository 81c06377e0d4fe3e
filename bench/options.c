/*
 * attn-bench's command line: the options, their defaults and --help.
 */
#include "bench.h"

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

/* Kept as one column of text, as --help prints it. */
/* clang-format off */
static void usage(FILE *f)
{
    fprintf(f,
        "usage: attn-bench [options]\n"
        "Times attn_sdpa (libattn native backend and OpenCL paths) for B=1, H=8,\n"
        "d=64, seq_q = seq_kv = N, f32, causal and not (other shapes: --batch,\n"
        "--heads, --kv-heads, --head-dim), against a CLBlast gemm+softmax+gemm\n"
        "path, ggml_flash_attn_ext (ggml CPU backend), numpy matmul+softmax,\n"
        "torch sdpa (if installed) and torch sdpa on CUDA (torch-cuda).\n"
        "\n"
        "  --impl LIST       comma list (default native,cl-fused,clblast,ggml,numpy,torch;\n"
        "                    'all' = every one; native always runs, as the reference):\n"
        "                    native      libattn, device \"native\"\n"
        "                    cl-unfused  libattn OpenCL, path UNFUSED, 1 queue\n"
        "                    cl-fused    libattn OpenCL, path FUSED, 1 queue\n"
        "                    cl-decode   libattn OpenCL, path AUTO, seq_q=--seq-q,\n"
        "                                seq_kv=N (extra rows against native)\n"
        "                    cl-q2, cl-q4  as cl-fused with 2 / 4 queues\n"
        "                    cl-2dev     as cl-fused on device \"all\" (needs 2 devices;\n"
        "                                PoCL: POCL_DEVICES=\"pthread pthread\")\n"
        "                    cl-auto     libattn OpenCL, path AUTO (the library's\n"
        "                                choice per shape), 1 queue\n"
        "                    cl:VARIANT  libattn OpenCL, that kernel variant forced\n"
        "                                (options.kernel; as --kernel VARIANT)\n"
        "                    clblast     CLBlast batched GEMM + softmax kernel + GEMM\n"
        "                    ggml, numpy, torch   the CPU peers\n"
        "                    torch-cuda  torch sdpa on CUDA tensors, CUDA events\n"
        "  --kernel LIST     kernel variants to force, one cl:VARIANT impl each\n"
        "                    ('all' = every variant; attn-probe --kernels lists them)\n"
        "  --device SPEC     OpenCL device of the cl-* impls and of clblast (default:\n"
        "                    $ATTN_DEVICE when it names an OpenCL device, else cpu)\n"
        "  --resident        cl-* impls and clblast on device buffers made once per\n"
        "                    case (attn_sdpa_cl_buffers), timed by OpenCL event\n"
        "                    profiling (kernels only); host wall time per call in\n"
        "                    its own column.  Default: host pointers, host clock\n"
        "  --head-dim LIST   comma list of head sizes (default 64)\n"
        "  --heads H         query heads (default 8)\n"
        "  --kv-heads K      key/value heads, dividing H (default H; fewer: GQA)\n"
        "  --batch B         batch items (default 1)\n"
        "  --seq-q S         query rows of the decode case, 1..16 (default 1)\n"
        "  --decode-only     only the decode case (seq_q = --seq-q, seq_kv = N):\n"
        "                    native, cl-decode, cl:VARIANT and torch-cuda rows\n"
        "  --max-mem MIB     skip cl-unfused / clblast / numpy cases whose score\n"
        "                    matrix would exceed MIB MiB (default 1024)\n"
        "  --plot FILE.png   time and TFLOP/s against N (python3 + matplotlib,\n"
        "                    bench/plot.py reads the CSV)\n"
        "  --rss             instead of timing: peak RSS of one call of native and\n"
        "                    cl-fused at the largest --sizes, each in a fresh child\n"
        "\n"
        "  --threads N       threads for libattn, ggml and BLAS (default: online CPUs)\n"
        "  --sizes LIST      comma list of N (default 512,1024,2048,4096,8192)\n"
        "  --reps R          timed runs per case; median and min are shown\n"
        "                    (default: 15 for N <= 1024, 9 for N <= 2048, else 5;\n"
        "                    decode case 31)\n"
        "  --native-reps R   timed runs of native (default: as the others)\n"
        "  --warmup W        untimed runs before timing (default 1)\n"
        "  --causal MODE     no, yes or both (default both)\n"
        "  --dtype TYPE      f32 (default) or f16: Q, K, V and O in binary16; f16\n"
        "                    leaves out clblast, ggml, numpy and torch (f32 only)\n"
        "  --no-peers        time libattn only\n"
        "  --no-ggml, --no-numpy, --no-torch   leave out one peer\n"
        "  --ggml-lib PATH   libggml.so or its folder (default: $ATTN_BENCH_GGML, then\n"
        "                    the lib/ folder of python's llama_cpp or ggml package)\n"
        "  --ggml-kv TYPE    K/V type handed to ggml: f16, f32 or both (default)\n"
        "  --python PATH     interpreter for the python peers (default python3)\n"
        "  --peer-script P   peer_numpy.py (default: beside attn-bench, else the\n"
        "                    source tree; peer_torch_cuda.py is looked up the same way)\n"
        "  --csv FILE        also write every row to FILE as CSV\n"
        "  --help            this text\n"
        "\n"
        "Columns: kernel = the variant a libattn row ran (attn_sdpa_kernel);\n"
        "median ms and min ms of the timed runs; TFLOP/s = 4*B*H*seq_q*seq_kv*d\n"
        "(halved when causal) / median; GB/s = K and V bytes read / median\n"
        "(decode rows); 'native x faster' = row median / native median (above 1:\n"
        "native is faster); max|diff| = largest absolute difference from native's\n"
        "output (for native itself: from a double-precision reference on sampled\n"
        "rows).  --resident adds 'wall ms': host time per call.\n");
}
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

/* Options that take a value. */
static int takes_value(const char *a)
{
    static const char *const with_value[] = {
        "--threads",   "--sizes",   "--reps",       "--warmup",      "--causal",
        "--ggml-lib",  "--ggml-kv", "--python",     "--peer-script", "--csv",
        "--device",    "--impl",    "--seq-q",      "--max-mem",     "--plot",
        "--rss-child", "--dtype",   "--kernel",     "--head-dim",    "--heads",
        "--kv-heads",  "--batch",   "--native-reps"};
    for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
        if (strcmp(a, with_value[i]) == 0)
            return 1;
    return 0;
}

int options_parse(int argc, char **argv, options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
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
        const char *env = getenv("ATTN_DEVICE");
        if (env && *env && strcmp(env, "auto") != 0 &&
            strcmp(env, "native") != 0)
            o->device = env;
    }
    o->seq_q = 1;
    o->batch = 1;
    o->heads = 8;
    o->max_mem_mib = 1024;
    impls_parse("native,cl-fused,clblast,ggml,numpy,torch", o);
    parse_sizes("512,1024,2048,4096,8192", o);
    parse_head_dims("64", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (takes_value(a)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "attn-bench: %s needs a value (see --help)\n",
                        a);
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
        } else if (strcmp(a, "--head-dim") == 0) {
            bad = parse_head_dims(val, o);
        } else if (strcmp(a, "--heads") == 0) {
            bad = parse_int(val, 1, 4096, &o->heads);
        } else if (strcmp(a, "--kv-heads") == 0) {
            bad = parse_int(val, 1, 4096, &o->kv_heads);
        } else if (strcmp(a, "--batch") == 0) {
            bad = parse_int(val, 1, 65536, &o->batch);
        } else if (strcmp(a, "--reps") == 0) {
            bad = parse_int(val, 1, MAX_REPS, &o->reps);
        } else if (strcmp(a, "--native-reps") == 0) {
            bad = parse_int(val, 1, MAX_REPS, &o->native_reps);
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
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(val, "f32") == 0)
                o->f16 = 0;
            else if (strcmp(val, "f16") == 0)
                o->f16 = 1;
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
        } else if (strcmp(a, "--impl") == 0) {
            if (impls_parse(val, o) != 0)
                return -1;
        } else if (strcmp(a, "--kernel") == 0) {
            if (parse_kernels(val, o) != 0)
                return -1;
        } else if (strcmp(a, "--seq-q") == 0) {
            bad = parse_int(val, 1, MAX_SEQ_Q, &o->seq_q);
        } else if (strcmp(a, "--decode-only") == 0) {
            o->decode_only = 1;
        } else if (strcmp(a, "--resident") == 0) {
            o->resident = 1;
        } else if (strcmp(a, "--max-mem") == 0) {
            int mib = 0;
            bad = parse_int(val, 1, 1 << 30, &mib);
            o->max_mem_mib = mib;
        } else if (strcmp(a, "--plot") == 0) {
            o->plot = val;
        } else if (strcmp(a, "--rss") == 0) {
            o->rss = 1;
        } else if (strcmp(a, "--rss-child") == 0) {
            o->rss_child = val;
        } else {
            fprintf(stderr, "attn-bench: unknown option '%s' (see --help)\n",
                    a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "attn-bench: bad value '%s' for %s (see --help)\n",
                    val ? val : "", a);
            return -1;
        }
    }
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
    if (o->f16) { /* clblast and the CPU peers take f32 only */
        o->ggml = o->numpy = o->torch = 0;
        o->impls &= ~(1u << IMPL_CLBLAST);
    }
    if (!o->peers) {
        o->ggml = o->numpy = o->torch = o->torch_cuda = 0;
        o->impls &= ~(1u << IMPL_CLBLAST);
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
