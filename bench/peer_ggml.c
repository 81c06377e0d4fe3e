/* SPDX-License-Identifier: Apache-2.0 */
/*
 * peer_ggml: ggml_flash_attn_ext on ggml's CPU backend, loaded with dlopen().
 *
 * Only the handful of ggml functions used here are declared, with the
 * signatures of ggml.h / ggml-backend.h / ggml-cpu.h.  Every type crossing
 * the boundary is a pointer, an integer, a float or the small
 * ggml_init_params struct, all of which have been stable across ggml
 * versions.  Nothing here is needed at build time.
 */
#include "peer_ggml.h"

#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the part of ggml's ABI that is used --------------------------------- */

struct ggml_context;
struct ggml_tensor;
struct ggml_cgraph;

struct ggml_init_params_abi {
    size_t mem_size;
    void *mem_buffer;
    bool no_alloc;
};

enum { GGML_TYPE_F32_ABI = 0, GGML_TYPE_F16_ABI = 1 };
enum { GGML_LOG_LEVEL_ERROR_ABI = 4 };
enum { GGML_KQ_MASK_PAD_ABI = 64 }; /* older ggml asserted this row padding */

typedef struct ggml_context *(*fn_init)(struct ggml_init_params_abi);
typedef void (*fn_free)(struct ggml_context *);
typedef size_t (*fn_size)(void);
typedef struct ggml_tensor *(*fn_new_tensor_4d)(struct ggml_context *, int,
                                                int64_t, int64_t, int64_t,
                                                int64_t);
typedef void *(*fn_get_data)(const struct ggml_tensor *);
typedef struct ggml_tensor *(*fn_flash_attn_ext)(
    struct ggml_context *, struct ggml_tensor *, struct ggml_tensor *,
    struct ggml_tensor *, struct ggml_tensor *, float, float, float);
typedef struct ggml_cgraph *(*fn_new_graph)(struct ggml_context *);
typedef void (*fn_build_forward_expand)(struct ggml_cgraph *,
                                        struct ggml_tensor *);
typedef void *(*fn_backend_init)(void);
typedef void (*fn_backend_set_n_threads)(void *, int);
typedef int (*fn_backend_graph_compute)(void *, struct ggml_cgraph *);
typedef void (*fn_backend_free)(void *);
typedef int (*fn_graph_compute_with_ctx)(struct ggml_context *,
                                         struct ggml_cgraph *, int);
typedef void (*fn_void)(void);
typedef const char *(*fn_str)(void);
typedef void (*ggml_log_cb)(int level, const char *text, void *user);
typedef void (*fn_log_set)(ggml_log_cb, void *);

struct ggml_peer {
    void *handle;
    char path[4096];
    char api[160];
    fn_init init;
    fn_free free;
    fn_size tensor_overhead;
    fn_size graph_overhead;
    fn_new_tensor_4d new_tensor_4d;
    fn_get_data get_data;
    fn_flash_attn_ext flash_attn_ext;
    fn_new_graph new_graph;
    fn_build_forward_expand build_forward_expand;
    fn_backend_init backend_cpu_init;
    fn_backend_set_n_threads backend_cpu_set_n_threads;
    fn_backend_graph_compute backend_graph_compute;
    fn_backend_free backend_free;
    fn_graph_compute_with_ctx graph_compute_with_ctx;
    fn_void cpu_init;
};

struct ggml_peer_case {
    ggml_peer *g;
    struct ggml_context *ctx;
    struct ggml_cgraph *graph;
    struct ggml_tensor *out;
    void *backend; /* NULL: ggml_graph_compute_with_ctx */
    int heads, n, d, threads;
};

/* dlsym into a function pointer without a data/function pointer cast. */
static int sym(void *h, const char *name, void *fp, size_t fp_size)
{
    void *p = dlsym(h, name);
    if (!p)
        return 0;
    memcpy(fp, &p, fp_size);
    return 1;
}
#define SYM(h, name, field) sym((h), (name), &(field), sizeof(field))

static void quiet_log(int level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR_ABI && text)
        fputs(text, stderr);
}

unsigned short bench_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) /* inf or nan */
        return (unsigned short)(sign | 0x7c00u |
                                (mag > 0x7f800000u ? 0x200u : 0u));
    if (mag >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (unsigned short)(sign | 0x7c00u);
    if (mag < 0x38800000u) { /* subnormal half or zero */
        if (mag < 0x33000000u)
            return (unsigned short)sign;
        uint32_t e = mag >> 23;
        uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14 .. 24 */
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (h & 1u)))
            h++;
        return (unsigned short)(sign | h);
    }
    uint32_t h = ((mag - 0x38000000u) >> 13);
    uint32_t rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (unsigned short)(sign | h);
}

/* ---- finding the library --------------------------------------------------
 */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* In a directory, the libggml to open: libggml.so (it pulls in ggml-base and
 * ggml-cpu), else libggml-base.so next to a libggml-cpu*.so. */
static int pick_in_dir(const char *dir, char *out, size_t out_len)
{
    static const char *const names[] = {"libggml.so", "lib/libggml.so",
                                        "libggml.so.0", "lib/libggml.so.0"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[4096];
        int w = snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (w > 0 && (size_t)w < sizeof p && is_file(p)) {
            snprintf(out, out_len, "%s", p);
            return 1;
        }
    }
    return 0;
}

/* Asks python where a package lives; writes its directory into out. */
static int python_pkg_dir(const char *python, const char *pkg, char *out,
                          size_t out_len)
{
    char cmd[1024];
    int w =
        snprintf(cmd, sizeof cmd,
                 "'%s' -c 'import %s,os;print(os.path.dirname(%s.__file__))'"
                 " 2>/dev/null",
                 python, pkg, pkg);
    if (w <= 0 || (size_t)w >= sizeof cmd || strchr(python, '\''))
        return 0;
    FILE *f = popen(cmd, "r");
    if (!f)
        return 0;
    char line[4096] = {0};
    char *got = fgets(line, sizeof line, f);
    int rc = pclose(f);
    if (!got || rc != 0)
        return 0;
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0] || !is_dir(line))
        return 0;
    snprintf(out, out_len, "%s", line);
    return 1;
}

static int try_load(ggml_peer *g, const char *path, char *why, size_t why_len)
{
    /* RTLD_LOCAL: ggml's symbols stay out of the global namespace. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, why_len, "dlopen(%s): %s", path, e ? e : "failed");
        return 0;
    }
    ggml_peer t;
    memset(&t, 0, sizeof t);
    t.handle = h;
    int ok = SYM(h, "ggml_init", t.init) && SYM(h, "ggml_free", t.free) &&
             SYM(h, "ggml_tensor_overhead", t.tensor_overhead) &&
             SYM(h, "ggml_graph_overhead", t.graph_overhead) &&
             SYM(h, "ggml_new_tensor_4d", t.new_tensor_4d) &&
             SYM(h, "ggml_get_data", t.get_data) &&
             SYM(h, "ggml_flash_attn_ext", t.flash_attn_ext) &&
             SYM(h, "ggml_new_graph", t.new_graph) &&
             SYM(h, "ggml_build_forward_expand", t.build_forward_expand);
    if (!ok) {
        snprintf(why, why_len,
                 "%s lacks the ggml core functions (ggml_init, "
                 "ggml_flash_attn_ext, ...)",
                 path);
        dlclose(h);
        return 0;
    }
    int backend =
        SYM(h, "ggml_backend_cpu_init", t.backend_cpu_init) &&
        SYM(h, "ggml_backend_cpu_set_n_threads", t.backend_cpu_set_n_threads) &&
        SYM(h, "ggml_backend_graph_compute", t.backend_graph_compute) &&
        SYM(h, "ggml_backend_free", t.backend_free);
    SYM(h, "ggml_graph_compute_with_ctx", t.graph_compute_with_ctx);
    SYM(h, "ggml_cpu_init", t.cpu_init);
    if (!backend) {
        t.backend_cpu_init = NULL;
        if (!t.graph_compute_with_ctx) {
            snprintf(why, why_len,
                     "%s has neither ggml_backend_cpu_init nor "
                     "ggml_graph_compute_with_ctx (a build with dynamically "
                     "loaded backends?)",
                     path);
            dlclose(h);
            return 0;
        }
    }
    fn_log_set log_set = NULL;
    if (SYM(h, "ggml_log_set", log_set))
        log_set(quiet_log, NULL);
    fn_str version = NULL, commit = NULL;
    SYM(h, "ggml_version", version);
    SYM(h, "ggml_commit", commit);
    const char *ver = version ? version() : NULL;
    const char *com = commit ? commit() : NULL;
    /* libattn does not use OpenMP, so libgomp in the process means ggml's
     * CPU backend runs its threads with OpenMP. */
    void *gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (gomp)
        dlclose(gomp);
    snprintf(t.api, sizeof t.api, "%s%s%s%s%s%s",
             backend ? "CPU backend, ggml_backend_cpu_set_n_threads"
                     : "ggml_graph_compute_with_ctx(n_threads)",
             gomp ? " (OpenMP threads)" : "", ver ? ", ggml " : "",
             ver ? ver : "", com ? " " : "", com ? com : "");
    snprintf(t.path, sizeof t.path, "%s", path);
    if (t.cpu_init)
        t.cpu_init();
    *g = t;
    return 1;
}

int ggml_peer_find(const char *explicit_path, const char *python, char *path,
                   size_t path_len, char *why, size_t why_len)
{
    if (!python)
        python = "python3";
    const char *given = explicit_path && explicit_path[0]
                            ? explicit_path
                            : getenv("ATTN_BENCH_GGML");
    if (given && given[0]) {
        /* Only what the user named: no silent fallback to another copy. */
        if (is_dir(given)) {
            if (!pick_in_dir(given, path, path_len)) {
                snprintf(why, why_len, "no libggml.so in %s", given);
                return -1;
            }
            return 0;
        }
        if (!is_file(given)) {
            snprintf(why, why_len, "%s: no such file", given);
            return -1;
        }
        snprintf(path, path_len, "%s", given);
        return 0;
    }
    static const char *const pkgs[] = {"llama_cpp", "ggml"};
    for (size_t i = 0; i < sizeof pkgs / sizeof pkgs[0]; i++) {
        char dir[4096];
        if (python_pkg_dir(python, pkgs[i], dir, sizeof dir) &&
            pick_in_dir(dir, path, path_len))
            return 0;
    }
    snprintf(path, path_len, "libggml.so"); /* the loader's own search */
    return 1;
}

int ggml_peer_load(const char *path, ggml_peer **out, char *why, size_t why_len)
{
    if (!out || !path)
        return -1;
    *out = NULL;
    ggml_peer *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (!try_load(g, path, why, why_len)) {
        free(g);
        return -1;
    }
    *out = g;
    return 0;
}

void ggml_peer_close(ggml_peer *g)
{
    if (!g)
        return;
    /* ggml's CPU backend may leave OpenMP worker threads behind; unloading
     * the code under them is unsafe, so the library stays mapped. */
    free(g);
}

const char *ggml_peer_path(const ggml_peer *g)
{
    return g ? g->path : "";
}
const char *ggml_peer_compute_api(const ggml_peer *g)
{
    return g ? g->api : "";
}

/* ---- one case -------------------------------------------------------------
 */

int ggml_peer_prepare(ggml_peer *g, int heads, int n, int d, int causal,
                      int kv_f16, int threads, const float *q, const float *k,
                      const float *v, ggml_peer_case **out, char *why,
                      size_t why_len)
{
    *out = NULL;
    if (!g || heads <= 0 || n <= 0 || d <= 0 || threads <= 0) {
        snprintf(why, why_len, "bad arguments");
        return -1;
    }
    size_t elems = (size_t)heads * (size_t)n * (size_t)d;
    size_t kv_size = kv_f16 ? 2 : 4;
    int64_t n_pad = ((int64_t)n + GGML_KQ_MASK_PAD_ABI - 1) /
                    GGML_KQ_MASK_PAD_ABI * GGML_KQ_MASK_PAD_ABI;
    size_t mask_bytes = causal ? (size_t)n * (size_t)n_pad * 2 : 0;
    size_t mem = elems * 4 * 2 + elems * kv_size * 2 + mask_bytes +
                 8 * g->tensor_overhead() + g->graph_overhead() +
                 ((size_t)1 << 20);
    if (!g->backend_cpu_init)
        mem += (size_t)64 << 20; /* work buffer, carved from ctx per call */
    ggml_peer_case *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    c->g = g;
    c->heads = heads;
    c->n = n;
    c->d = d;
    c->threads = threads;
    struct ggml_init_params_abi ip = {mem, NULL, false};
    c->ctx = g->init(ip);
    if (!c->ctx) {
        snprintf(why, why_len, "ggml_init(%zu bytes) failed", mem);
        free(c);
        return -1;
    }
    /* ggml's ne[] lists the fastest dimension first: [d, n, heads, 1] is
     * the row-major [heads][n][d] libattn uses. */
    int kv_type = kv_f16 ? GGML_TYPE_F16_ABI : GGML_TYPE_F32_ABI;
    struct ggml_tensor *tq =
        g->new_tensor_4d(c->ctx, GGML_TYPE_F32_ABI, d, n, heads, 1);
    struct ggml_tensor *tk = g->new_tensor_4d(c->ctx, kv_type, d, n, heads, 1);
    struct ggml_tensor *tv = g->new_tensor_4d(c->ctx, kv_type, d, n, heads, 1);
    struct ggml_tensor *tm = NULL;
    if (causal)
        tm = g->new_tensor_4d(c->ctx, GGML_TYPE_F16_ABI, n, n_pad, 1, 1);
    if (!tq || !tk || !tv || (causal && !tm)) {
        snprintf(why, why_len, "ggml_new_tensor_4d failed");
        ggml_peer_case_free(c);
        return -1;
    }
    memcpy(g->get_data(tq), q, elems * sizeof(float));
    if (kv_f16) {
        unsigned short *kh = g->get_data(tk), *vh = g->get_data(tv);
        for (size_t i = 0; i < elems; i++) {
            kh[i] = bench_f32_to_f16(k[i]);
            vh[i] = bench_f32_to_f16(v[i]);
        }
    } else {
        memcpy(g->get_data(tk), k, elems * sizeof(float));
        memcpy(g->get_data(tv), v, elems * sizeof(float));
    }
    if (causal) {
        unsigned short *m = g->get_data(tm);
        for (int64_t i = 0; i < n_pad; i++)
            for (int64_t j = 0; j < n; j++)
                m[i * n + j] = (j <= i) ? 0x0000u : 0xfc00u; /* 0 / -inf */
    }
    float scale = 1.0f / sqrtf((float)d);
    c->out = g->flash_attn_ext(c->ctx, tq, tk, tv, tm, scale, 0.0f, 0.0f);
    if (!c->out) {
        snprintf(why, why_len, "ggml_flash_attn_ext failed");
        ggml_peer_case_free(c);
        return -1;
    }
    c->graph = g->new_graph(c->ctx);
    if (!c->graph) {
        snprintf(why, why_len, "ggml_new_graph failed");
        ggml_peer_case_free(c);
        return -1;
    }
    g->build_forward_expand(c->graph, c->out);
    if (g->backend_cpu_init) {
        c->backend = g->backend_cpu_init();
        if (!c->backend) {
            snprintf(why, why_len, "ggml_backend_cpu_init failed");
            ggml_peer_case_free(c);
            return -1;
        }
        g->backend_cpu_set_n_threads(c->backend, threads);
    }
    *out = c;
    return 0;
}

int ggml_peer_exec(ggml_peer_case *c)
{
    if (!c)
        return -1;
    int st;
    if (c->backend)
        st = c->g->backend_graph_compute(c->backend, c->graph);
    else
        st = c->g->graph_compute_with_ctx(c->ctx, c->graph, c->threads);
    return st == 0 ? 0 : -1;
}

void ggml_peer_output(const ggml_peer_case *c, float *o)
{
    const float *r = c->g->get_data(c->out); /* [n][heads][d] */
    for (int h = 0; h < c->heads; h++)
        for (int i = 0; i < c->n; i++)
            memcpy(o + ((size_t)h * c->n + i) * c->d,
                   r + ((size_t)i * c->heads + h) * c->d,
                   (size_t)c->d * sizeof(float));
}

void ggml_peer_case_free(ggml_peer_case *c)
{
    if (!c)
        return;
    if (c->backend)
        c->g->backend_free(c->backend);
    if (c->ctx)
        c->g->free(c->ctx);
    free(c);
}
