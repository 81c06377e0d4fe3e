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
        "d=64, seq_q = seq_kv = N, f32, causal and not, against a CLBlast\n"
        "gemm+softmax+gemm path, ggml_flash_attn_ext (ggml CPU backend), numpy\n"
        "matmul+softmax and torch sdpa (if installed).\n"
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
        "                    clblast     CLBlast batched GEMM + softmax kernel + GEMM\n"
        "                    ggml, numpy, torch   the CPU peers\n"
        "  --device SPEC     OpenCL device of the cl-* impls (default: $ATTN_DEVICE\n"
        "                    when it names an OpenCL device, else cpu)\n"
        "  --seq-q S         query rows of the cl-decode case, 1..4 (default 1)\n"
        "  --max-mem MIB     skip cl-unfused / clblast / numpy cases whose score\n"
        "                    matrix would exceed MIB MiB (default 1024)\n"
        "  --plot FILE.png   time against N, log-log (python3 + matplotlib,\n"
        "                    bench/plot.py reads the CSV)\n"
        "  --rss             instead of timing: peak RSS of one call of native and\n"
        "                    cl-fused at the largest --sizes, each in a fresh child\n"
        "\n"
        "  --threads N       threads for libattn, ggml and BLAS (default: online CPUs)\n"
        "  --sizes LIST      comma list of N (default 512,1024,2048,4096,8192)\n"
        "  --reps R          timed runs per case; median and min are shown\n"
        "                    (default: 15 for N <= 1024, 9 for N <= 2048, else 5)\n"
        "  --warmup W        untimed runs before timing (default 1)\n"
        "  --causal MODE     no, yes or both (default both)\n"
        "  --dtype TYPE      f32 (default) or f16: Q, K, V and O in binary16; f16\n"
        "                    times the libattn rows only (native and the square\n"
        "                    cl-* ones: no peers, no cl-decode)\n"
        "  --no-peers        time libattn only\n"
        "  --no-ggml, --no-numpy, --no-torch   leave out one peer\n"
        "  --ggml-lib PATH   libggml.so or its folder (default: $ATTN_BENCH_GGML, then\n"
        "                    the lib/ folder of python's llama_cpp or ggml package)\n"
        "  --ggml-kv TYPE    K/V type handed to ggml: f16, f32 or both (default)\n"
        "  --python PATH     interpreter for the numpy/torch peer (default python3)\n"
        "  --peer-script P   peer_numpy.py (default: beside attn-bench, else the\n"
        "                    source tree)\n"
        "  --csv FILE        also write every row to FILE as CSV\n"
        "  --help            this text\n"
        "\n"
        "Columns: median ms and min ms of the timed runs; GFLOP/s = 4*N*N*d*H\n"
        "(halved when causal) / median; 'native x faster' = row median /\n"
        "native median (above 1: native is faster); max|diff| = largest\n"
        "absolute difference from native's output (for native itself: from a\n"
        "double-precision reference on sampled rows).\n");
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

static const char *find_named(const char *name, char *buf, size_t len)
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

const char *options_find_script(char *buf, size_t len)
{
    return find_named("peer_numpy.py", buf, len);
}

const char *options_find_plot(char *buf, size_t len)
{
    return find_named("plot.py", buf, len);
}

int options_parse(int argc, char **argv, options *o)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof *o);
    o->threads = cpus > 0 ? (int)cpus : 1;
    o->warmup = 1;
    o->causal_mode = 2;
    o->peers = o->ggml = o->numpy = o->torch = 1;
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
    o->max_mem_mib = 1024;
    impls_parse("native,cl-fused,clblast,ggml,numpy,torch", &o->impls);
    parse_sizes("512,1024,2048,4096,8192", o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int takes = strcmp(a, "--threads") == 0 || strcmp(a, "--sizes") == 0 ||
                    strcmp(a, "--reps") == 0 || strcmp(a, "--warmup") == 0 ||
                    strcmp(a, "--causal") == 0 ||
                    strcmp(a, "--ggml-lib") == 0 ||
                    strcmp(a, "--ggml-kv") == 0 || strcmp(a, "--python") == 0 ||
                    strcmp(a, "--peer-script") == 0 ||
                    strcmp(a, "--csv") == 0 || strcmp(a, "--device") == 0 ||
                    strcmp(a, "--impl") == 0 || strcmp(a, "--seq-q") == 0 ||
                    strcmp(a, "--max-mem") == 0 || strcmp(a, "--plot") == 0 ||
                    strcmp(a, "--rss-child") == 0 || strcmp(a, "--dtype") == 0;
        if (takes) {
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
        } else if (strcmp(a, "--reps") == 0) {
            bad = parse_int(val, 1, MAX_REPS, &o->reps);
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
            if (impls_parse(val, &o->impls) != 0)
                return -1;
        } else if (strcmp(a, "--seq-q") == 0) {
            bad = parse_int(val, 1, 4, &o->seq_q);
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
    if (o->f16) { /* the peers and the decode rows take f32 */
        o->peers = 0;
        o->impls &= ~(1u << IMPL_CL_DECODE);
    }
    if (!o->peers) {
        o->ggml = o->numpy = o->torch = 0;
        o->impls &= ~(1u << IMPL_CLBLAST);
    }
    o->ggml = o->ggml && opt_has(o, IMPL_GGML);
    o->numpy = o->numpy && opt_has(o, IMPL_NUMPY);
    o->torch = o->torch && opt_has(o, IMPL_TORCH);
    return 0;
}

int options_reps(const options *o, int n)
{
    if (o->reps)
        return o->reps;
    return n <= 1024 ? 15 : n <= 2048 ? 9 : 5;
}
