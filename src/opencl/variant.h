/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel variants of the OpenCL backend.  A variant is one record: its name,
 * its .cl sources and kernels, its parameter schema (ranges, defaults, the
 * -D define each becomes), and hooks that say whether it takes a shape,
 * fit it to a device, plan a launch and enqueue it.  The records are
 * listed in one table (variants.c); one driver (driver.c) runs every
 * variant the same way:
 *
 *   check   the call's arguments and tensors            (driver)
 *   choose  the first variant of the path order that supports the shape
 *           and, under AUTO, prefers it                   (driver, supports,
 *                                                          prefer)
 *   build   the program for (variant, dtype, defines), from the program
 *           cache (progcache.c), fitted to the device and to the built
 *           kernels' own limits                            (fit_device,
 *                                                          fit_kernels)
 *   plan    the launch geometry and the scratch bytes     (plan)
 *   fit     tensors + input copies + scratch against the device's memory
 *   copy    mask.bias, mask.kv_len, additive_w to the device
 *   gate    a user event that holds the launches back until all are
 *           enqueued, failed when something goes wrong
 *   launch  set the arguments, enqueue                     (launch)
 *
 * Adding a variant: docs/ADDING_A_KERNEL.md.  Not installed.
 */
#ifndef ATTN_OPENCL_VARIANT_H
#define ATTN_OPENCL_VARIANT_H

#include <stddef.h>
#include <stdint.h>

#include "opencl/sdpa_cl.h"

#define ATTN_CL_MAX_PARAMS  16 /* parameters of one variant */
#define ATTN_CL_MAX_KERNELS 4  /* kernels of one variant's program */
#define ATTN_CL_GEOM_BYTES  96 /* a variant's launch geometry */
#define ATTN_CL_OPTIONS_MAX 128

/* Flags of a parameter. */
enum {
    ATTN_CL_PARAM_POW2 = 1, /* a power of two */
    /* chooses among variants (AUTO) or shapes a launch; not a build
     * define: changing it keeps the built programs */
    ATTN_CL_PARAM_RUNTIME = 2,
    /* one of a few alternatives, not a size: a tuner tries each value of
     * the range rather than halving and doubling */
    ATTN_CL_PARAM_CHOICE = 4
};

/* One parameter: profile key "<variant>.<name>", -D<define>=value. */
typedef struct attn_cl_param {
    const char *name;
    const char *define; /* NULL for ATTN_CL_PARAM_RUNTIME parameters */
    int min, max, def;
    unsigned flags;
    const char *doc; /* one line for platforms/README.md and attn-tune */
} attn_cl_param;

/* A variant's parameter values, in schema order, and extra build options
 * (the profile's build_options). */
typedef struct attn_cl_tuning {
    int v[ATTN_CL_MAX_PARAMS];
    char options[ATTN_CL_OPTIONS_MAX];
} attn_cl_tuning;

/* What the hooks know of the device (read once per runtime). */
typedef struct attn_cl_limits {
    size_t wg;                      /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    size_t items[3];                /* CL_DEVICE_MAX_WORK_ITEM_SIZES */
    uint64_t local_mem;             /* CL_DEVICE_LOCAL_MEM_SIZE */
    uint64_t global_mem, max_alloc; /* as recorded (attn_cl_mem_limits) */
    unsigned compute_units;
    int fma;      /* CL_FP_FMA in CL_DEVICE_SINGLE_FP_CONFIG */
    int gpu;      /* a GPU (discrete or integrated) */
    int cl_major; /* OpenCL C version the device compiles */
    /* NVIDIA compute capability as 10 * major + minor (80: Ampere), 0 when
     * the device does not say (cl_nv_device_attribute_query). */
    int nv_sm;
    /* AMD gfx target as hexadecimal digits (0x90a: gfx90a), 0 when the
     * device is none (attn_cl_amd_gfx). */
    int amd_gfx;
    /* Intel's matrix units: the smallest subgroup size (8 or 16) of a
     * device that lists cl_intel_subgroup_matrix_multiply_accumulate, 0
     * elsewhere. */
    int intel_xmx;
    /* The subgroup shuffles its compiler takes (ATTN_CL_SHUFFLE_*,
     * opencl/discovery.h). */
    int shuffle;
    /* The precision the context permits its products (attn.h). */
    attn_precision precision;
} attn_cl_limits;

/* A built program of a variant: its kernels' limits and the tuning as
 * built (after fitting).  Owned by the program cache; lives as long as
 * the runtime. */
typedef struct attn_cl_built attn_cl_built;
struct attn_cl_built {
    cl_program prog;
    attn_cl_tuning t;                     /* as built */
    size_t kwg[ATTN_CL_MAX_KERNELS];      /* CL_KERNEL_WORK_GROUP_SIZE */
    uint64_t klocal[ATTN_CL_MAX_KERNELS]; /* CL_KERNEL_LOCAL_MEM_SIZE */
};

/* The window of d as the kernels take it: 0, or clamped to seq_q + the
 * causal diagonal (seq_kv bottom-right, seq_q top-left), past which it
 * hides nothing, so that their window arithmetic stays inside int. */
static inline cl_int attn_cl_window(const attn_sdpa_desc *d)
{
    const long long most = (long long)d->seq_q + attn_causal_diag(d);
    return d->mask.window > most ? (cl_int)most : (cl_int)d->mask.window;
}

/* Everything a launch hook needs.  Absent optional buffers (bias, kv_len,
 * addw, lse, scratch) are bound to a small dummy buffer. */
typedef struct attn_cl_launch {
    attn_cl_runtime *rt;
    const attn_sdpa_desc *d;
    const attn_cl_tensors *t;
    const attn_cl_built *b;
    const void *geom;                 /* the plan hook's geometry */
    cl_kernel k[ATTN_CL_MAX_KERNELS]; /* this call's own kernel objects */
    cl_mem bias, kv_len, addw, lse, scratch;
    /* The scalars every kernel takes. */
    cl_int has_lse, bias_kind, has_kv_len, additive, causal, window;
    cl_int diag; /* the causal diagonal's offset (attn_causal_diag) */
    /* the bias's strides over batch, head and query (attn_bias_strides) */
    cl_ulong bias_sb, bias_sh, bias_sq;
    cl_int heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    cl_float scale;  /* 1/sqrt(head_dim) when the descriptor says 0 */
    cl_float scale2; /* scale * log2(e) (additive: log2(e)) */
    cl_ulong q_off, k_off, v_off, o_off, lse_off;
    /* the tensors' strides over batch, head and row in .s[0 .. 2]
     * (attn_tensor_strides: the descriptor's, or contiguous) */
    cl_ulong4 q_st, k_st, v_st, o_st;
    cl_command_queue queue;
    cl_uint n_wait;
    const cl_event *wait;
} attn_cl_launch;

typedef struct attn_cl_variant {
    const char *name;           /* ATTN_KERNEL, options.kernel, profile keys */
    const char *summary;        /* one line for attn-probe and the docs */
    attn_path path;             /* the options.path that may take it: FUSED,
                                   UNFUSED, or AUTO for AUTO only */
    int universal;              /* takes every shape a device can run: AUTO's
                                   last resort */
    int per_shape;              /* its defines hook depends on the shape
                                   (head size, rows): one program per shape
                                   class, built from source only (never an
                                   offline binary, which is one build) */
    int build_probe;            /* its build may fail where the others
                                   build: it asks for what the device's
                                   compiler may lack (matrix builtins,
                                   inline PTX, subgroup shuffles) or is
                                   GPU-shaped code (large register tiles)
                                   that a vendor's own compiler may reject:
                                   under AUTO a failed build declines the
                                   shape with a warning and AUTO goes on
                                   (the failure is kept: tried once per
                                   program); forced, it is the caller's
                                   error */
    int mask_shapes;            /* its kernels take the causal diagonal
                                   (diag) and the bias's strides (bias_sb,
                                   bias_sh, bias_sq): a top-left causal mask
                                   or window and the bias kinds KEY and
                                   BROADCAST (keep among them, merged into
                                   the bias); without it the variant
                                   declines those and AUTO goes on */
    int strides;                /* its kernels take the tensors' strides
                                   (q_st ... o_st): strided descriptors
                                   (attn_sdpa_desc.q_strides ...); without
                                   it the variant declines them and AUTO
                                   goes on */
    const char *const *sources; /* cl/ files after common.cl, NULL-ended */
    const char *const *kernels; /* kernel names, NULL-ended */
    const attn_cl_param *params;
    int n_params;

    /* Rules across parameters; 0 with a sentence in why when broken. */
    int (*check)(const attn_cl_tuning *t, char *why, size_t cap);
    /* Whether the variant takes d at all (quick, before any build):
     * ATTN_OK or ATTN_ERR_UNSUPPORTED with a sentence. */
    attn_status (*supports)(const attn_cl_limits *lim, const attn_cl_tuning *t,
                            const attn_sdpa_desc *d, attn_err *err);
    /* Whether AUTO should take it for d (its thresholds, the device);
     * NULL: always. */
    int (*prefer)(const attn_cl_limits *lim, const attn_cl_tuning *t,
                  const attn_sdpa_desc *d);
    /* The precision its products compute d at (attn.h), for a d it
     * supports; NULL: EXACT. */
    attn_precision (*precision)(const attn_cl_limits *lim,
                                const attn_sdpa_desc *d);
    /* Defines that depend on the device or the shape (beyond the
     * schema's), e.g. " -DFA_FMA=1"; NULL: none. */
    void (*defines)(const attn_cl_limits *lim, const attn_cl_tuning *t,
                    const attn_sdpa_desc *d, char *buf, size_t cap);
    /* Shrinks t to the device's work-group limits before a build; 0 when
     * it cannot fit. */
    int (*fit_device)(const attn_cl_limits *lim, attn_cl_tuning *t);
    /* After a build, against the kernels' own limits: 1 fits, 0 retry
     * with t changed, -1 cannot fit. */
    int (*fit_kernels)(const attn_cl_limits *lim, const attn_cl_built *b,
                       attn_cl_tuning *t);
    /* Optional, after a build: what the program must be beyond its
     * kernels' limits (mma: PTX for sm_80 or newer).  ATTN_ERR_UNSUPPORTED
     * with a sentence declines the variant for that program, kept as a
     * failed build is (AUTO goes on). */
    attn_status (*check_built)(const attn_cl_limits *lim,
                               const attn_cl_built *b, attn_err *err);
    /* The geometry of a launch of d (at most ATTN_CL_GEOM_BYTES) and the
     * bytes of its scratch buffer (0: none), with t the tuning as built.
     * b NULL: an estimate before the program is built (local memory
     * unchecked).  Errors: ATTN_ERR_UNSUPPORTED with a sentence. */
    attn_status (*plan)(const attn_cl_limits *lim, const attn_cl_built *b,
                        const attn_cl_tuning *t, const attn_sdpa_desc *d,
                        void *geom, uint64_t *scratch, attn_err *err);
    /* Enqueues the kernels after L->wait; *last = the final command's
     * event.  The arguments go on L->k, the call's own kernel objects. */
    cl_int (*launch)(const attn_cl_launch *L, cl_event *last);
} attn_cl_variant;

/* ---- the table (variants.c) ------------------------------------------- */

extern const attn_cl_variant *const attn_cl_variants[];
extern const int attn_cl_n_variants;

/* The index of the variant called name (case-insensitive), or -1. */
int attn_cl_variant_find(const char *name);
/* The index of parameter name of variant v, or -1. */
int attn_cl_param_find(const attn_cl_variant *v, const char *name);
/* "unfused, fused, decode": the names, for messages. */
void attn_cl_variant_names(char *buf, size_t cap);

/* The schema's defaults. */
void attn_cl_tuning_default(const attn_cl_variant *v, attn_cl_tuning *t);
/* Checks every value against its range and flags, then the variant's
 * rules.  ATTN_ERR_INVALID_ARGUMENT with a sentence naming the first
 * broken rule. */
attn_status attn_cl_tuning_check(const attn_cl_variant *v,
                                 const attn_cl_tuning *t, attn_err *err);
/* " -DNAME=value" for each build parameter, then the options. */
void attn_cl_tuning_defines(const attn_cl_variant *v, const attn_cl_tuning *t,
                            char *buf, size_t cap);

/* ---- helpers for the variants' hooks (variants.c) ------------------------ */

/* rt's device limits for the hooks (memory as attn_cl_mem_limits says). */
void attn_cl_limits_get(const attn_cl_runtime *rt, attn_cl_limits *out);

/* ATTN_ERR_UNSUPPORTED with a sentence naming kernel when its built
 * program's own local arrays (b->klocal[0]) exceed the device's local
 * memory; ATTN_OK otherwise, and for b NULL (an estimate before the
 * build). */
attn_status attn_cl_local_fits(const attn_cl_limits *lim,
                               const attn_cl_built *b, const char *kernel,
                               attn_err *err);
/* 1 when the device takes work-groups of wg items (in all and along the
 * first dimension). */
int attn_cl_fits_wg(const attn_cl_limits *lim, size_t wg);
/* A variant's plan of a key tile of `tile` keys (0: none fits the
 * device's local memory at head_dim): ATTN_ERR_UNSUPPORTED with a sentence
 * naming kernel when there is none or its built program's local arrays do
 * not fit (attn_cl_local_fits), else ATTN_OK. */
attn_status attn_cl_tile_fits(const attn_cl_limits *lim, const attn_cl_built *b,
                              const char *kernel, int tile, int head_dim,
                              attn_err *err);
/* Halves a work-group side, keeping it a divisor of an even tile; 0 when
 * it is 1 already. */
int attn_cl_halve(int *w);
/* Enqueues k after *prev (after wait[0 .. n_wait) when *prev is NULL),
 * releases *prev and puts the new event there. */
cl_int attn_cl_chain(cl_command_queue queue, cl_kernel k, cl_uint dims,
                     const size_t *global, const size_t *local, cl_uint n_wait,
                     const cl_event *wait, cl_event *prev);
/* Launches k over `total` items (heads, pairs, rows) in blocks of at most
 * ATTN_CL_GRID_MAX: global (groups * local, items of the block), local
 * (local, 1); argument first_arg is the block's first item.  The launches
 * chain after *prev (after wait[0 .. n_wait) when *prev is NULL), which
 * ends as the last one's event; on failure the caller releases *prev. */
cl_int attn_cl_launch_blocks(cl_command_queue queue, cl_kernel k,
                             cl_uint first_arg, size_t total, size_t groups,
                             size_t local, cl_uint n_wait, const cl_event *wait,
                             cl_event *prev);
/* Launches k over every (batch, query head) of L's call in blocks of at
 * most ATTN_CL_GRID_MAX heads, chained after L->wait: global (blocks *
 * local, heads of the block), local (local, 1); argument bh_arg is the
 * block's first head.  *last: the final launch's event (NULL on
 * failure). */
cl_int attn_cl_launch_heads(const attn_cl_launch *L, cl_kernel k,
                            cl_uint bh_arg, size_t blocks, size_t local,
                            cl_event *last);
/* Launches a matrix-unit kernel (mma.cl, amdmm.cl, xmx.cl: attn_mma's
 * argument list, in base 2 unless a bias puts the scores in natural
 * units) over blocks of rows query rows, work-groups of local items, as
 * attn_cl_launch_heads. */
cl_int attn_cl_launch_matrix(const attn_cl_launch *L, size_t rows, size_t local,
                             cl_event *last);
/* Sets arguments first .. first + n - 1 of k. */
typedef struct attn_cl_karg {
    size_t size;
    const void *value;
} attn_cl_karg;
#define ATTN_CL_KARG(x)                                                        \
    {                                                                          \
        sizeof(x), &(x)                                                        \
    }
cl_int attn_cl_set_args(cl_kernel k, cl_uint first, const attn_cl_karg *a,
                        size_t n);

/* Grid limit some GPUs put on the second and third dimension (in
 * work-groups): launches never ask for more. */
#define ATTN_CL_GRID_MAX 65535

#endif /* ATTN_OPENCL_VARIANT_H */
