/* SPDX-License-Identifier: Apache-2.0 */
/**
 * @file attn.h
 * @brief libattn: self-attention and multi-head attention on OpenCL devices
 * and on the CPU.
 *
 * This header is the whole public C API; it names no OpenCL type
 * (see attn_cl.h for the embedding API that takes the caller's OpenCL
 * objects).
 *
 * Conventions
 * - Every function that can fail returns an attn_status; ATTN_OK is 0 and
 *   every error is non-zero.  Objects are returned through out-parameters.
 * - The library never aborts, never exits and never prints unless a log
 *   level asks for it (the ATTN_LOG environment variable or a log callback).
 * - On any error the output buffers (o, lse, y, table) are left untouched.
 * - Tensors are row-major and contiguous unless a descriptor gives strides
 *   (attn_sdpa_desc.q_strides ...); sizes are counts of elements.
 * - The caller owns every buffer it passes; the library keeps no pointer to
 *   caller memory after a call returns.
 * - Thread safety: a context may be used by several threads at once.  The
 *   descriptors passed to a call must not be modified during that call.
 */
#ifndef ATTN_ATTN_H
#define ATTN_ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Compile-time version; attn_version() gives the version of the library
 * actually loaded. */
#define ATTN_VERSION_MAJOR  0       /**< release: major number */
#define ATTN_VERSION_MINOR  1       /**< release: minor number */
#define ATTN_VERSION_PATCH  0       /**< release: patch number */
#define ATTN_VERSION_STRING "0.1.0" /**< the release as text */

/** ABI version: the number in the shared library's SONAME
 * (libattn.so.ATTN_ABI_VERSION).  It changes only when a release breaks
 * binary compatibility (docs/ABI.md); adding functions, or members at the
 * end of a struct, keeps it. */
#define ATTN_ABI_VERSION 1

/** @def ATTN_API
 * Marks the exported symbols; everything else is hidden.  Define
 * ATTN_STATIC when linking the static library on Windows. */
#if defined(_WIN32) && !defined(ATTN_STATIC)
#ifdef ATTN_BUILDING
#define ATTN_API __declspec(dllexport)
#else
#define ATTN_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define ATTN_API __attribute__((visibility("default")))
#else
#define ATTN_API
#endif

/* ------------------------------------------------------------------------ */
/* Status                                                                   */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call.  ATTN_OK is 0; errors are positive. */
typedef enum attn_status {
    ATTN_OK = 0,
    ATTN_ERR_INVALID_ARGUMENT, /**< a pointer, size, enum or option is wrong */
    ATTN_ERR_OUT_OF_MEMORY,    /**< host or device allocation failed, or the
                                    sizes cannot be represented */
    ATTN_ERR_NO_DEVICE,        /**< the requested device does not exist */
    ATTN_ERR_BUILD_FAILED,     /**< a kernel program failed to build */
    ATTN_ERR_DEVICE,           /**< a device call failed (launch, transfer) */
    ATTN_ERR_UNSUPPORTED,      /**< valid request this build cannot serve */
    ATTN_ERR_IO                /**< a file could not be read or written */
} attn_status;

/** A static English name for s ("ATTN_OK", ...); never NULL, also for values
 * outside the enum ("unknown status"). */
ATTN_API const char *attn_status_string(attn_status s);

/** The loaded library's version, "MAJOR.MINOR.PATCH"; static storage. */
ATTN_API const char *attn_version(void);

/** A sentence about the last failure of any libattn call made by the calling
 * thread, or "" when none failed yet.  The string is thread-local and valid
 * until the thread's next libattn call.  Useful when attn_context_create
 * fails and there is no context to ask. */
ATTN_API const char *attn_last_error(void);

/* ------------------------------------------------------------------------ */
/* Devices                                                                  */
/* ------------------------------------------------------------------------ */

/** What kind of device runs the work. */
typedef enum attn_device_kind {
    ATTN_DEVICE_GPU,        /**< discrete OpenCL GPU */
    ATTN_DEVICE_IGPU,       /**< integrated GPU (memory shared with the host) */
    ATTN_DEVICE_FPGA,       /**< FPGA / accelerator with offline binaries */
    ATTN_DEVICE_CPU_OPENCL, /**< an OpenCL CPU device (PoCL, Intel CPU RT) */
    ATTN_DEVICE_OTHER,      /**< any other OpenCL device */
    ATTN_DEVICE_NATIVE      /**< the built-in C backend, no OpenCL */
} attn_device_kind;

/** Description of one device.  Strings are NUL-terminated and truncated to
 * fit.  A property that could not be queried is 0 / "".
 *
 * The caller says how large its attn_device_info is: set struct_size
 * (ATTN_DEVICE_INFO_INIT or attn_device_info_init) before passing one to
 * attn_context_device, or the first element of an array to attn_devices.
 * The library writes only the members that size covers (0 means the first
 * layout, which ends at rank) and no byte past them. */
typedef struct attn_device_info {
    size_t struct_size; /**< sizeof(attn_device_info) as the caller built */
    char name[256];     /**< the device's name (native: the CPU model) */
    char vendor[256];   /**< the device's vendor ("libattn" for native) */
    char platform[256]; /**< platform name; "" for native */
    char driver_version[128];   /**< driver version (native: libattn's) */
    char opencl_c_version[64];  /**< "" for native */
    attn_device_kind kind;      /**< what kind of device it is */
    int platform_index;         /**< -1 for native */
    int device_index;           /**< -1 for native */
    unsigned compute_units;     /**< compute units (native: threads) */
    unsigned max_clock_mhz;     /**< highest clock in MHz */
    uint64_t global_mem_bytes;  /**< device memory in bytes */
    uint64_t local_mem_bytes;   /**< local (shared) memory per work-group */
    uint64_t max_alloc_bytes;   /**< largest single buffer in bytes */
    size_t max_work_group_size; /**< work-items per work-group at most */
    int fp16;                   /**< 1 when half arithmetic is native */
    int fp64;                   /**< 1 when double arithmetic is supported */
    int unified_memory;         /**< 1 when device memory is host memory */
    int usable;                 /**< 1 when libattn can run on it */
    char reason[256];           /**< why it is (not) usable */
    double rank;                /**< higher ranks first under "auto" */
    char opencl_version[128];   /**< the device's "OpenCL M.N ..." version
                                    (CL_DEVICE_VERSION); "" for native */
} attn_device_info;

/** @def ATTN_SIZED_INIT_
 * The initializers below use designated initializers in C and, in C++, a
 * value-initialized copy with struct_size set: neither gives a
 * -Wmissing-field-initializers warning. */
/* clang-format off */
#ifdef __cplusplus
extern "C++" {
template <typename T> inline T attn_sized_init_(void)
{
    T t = T();
    t.struct_size = sizeof(T);
    return t;
}
}
#define ATTN_SIZED_INIT_(type) attn_sized_init_<type>()
#else
#define ATTN_SIZED_INIT_(type) {.struct_size = sizeof(type)}
#endif
/* clang-format on */

/** Initializer of an attn_device_info (or of the first element of an
 * array of them): `attn_device_info devs[8] = {ATTN_DEVICE_INFO_INIT};` */
#define ATTN_DEVICE_INFO_INIT ATTN_SIZED_INIT_(attn_device_info)

/** Zeroes size bytes at info and sets struct_size to size (the caller's
 * sizeof(attn_device_info)); attn_device_info_init(info) passes it.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (info NULL, a size no layout has). */
ATTN_API attn_status attn_device_info_init_sized(attn_device_info *info,
                                                 size_t size);
/** Prepares *info for attn_context_device / attn_devices. */
#define attn_device_info_init(info)                                            \
    ((void)attn_device_info_init_sized((info), sizeof *(info)))

/** Lists the OpenCL devices of the machine.  *count receives the number of
 * devices found; min(capacity, *count) entries are written to out (out may be
 * NULL when capacity is 0).  The array is walked by the caller's element
 * size, out[0].struct_size (set it with ATTN_DEVICE_INFO_INIT; 0 means the
 * first layout); every element written gets that struct_size.  A machine
 * with no OpenCL gives *count = 0 and ATTN_OK.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (count NULL, out NULL with capacity > 0, an
 * out[0].struct_size no layout has). */
ATTN_API attn_status attn_devices(attn_device_info *out, size_t capacity,
                                  size_t *count);

/* ------------------------------------------------------------------------ */
/* Context                                                                  */
/* ------------------------------------------------------------------------ */

/** Which kernels run on an OpenCL device.  AUTO chooses per shape. */
typedef enum attn_path {
    ATTN_PATH_AUTO = 0,
    ATTN_PATH_FUSED,  /**< one pass, online softmax, O(seq) memory */
    ATTN_PATH_UNFUSED /**< score, softmax and aggregate kernels */
} attn_path;

/** Log levels for attn_options.log_level and ATTN_LOG. */
typedef enum attn_log_level {
    ATTN_LOG_DEFAULT = 0, /**< ATTN_LOG if set, else WARN with a callback
                               and nothing without one */
    ATTN_LOG_ERROR = 1,
    ATTN_LOG_WARN = 2,
    ATTN_LOG_INFO = 3,
    ATTN_LOG_DEBUG = 4,
    ATTN_LOG_OFF = 5 /**< no messages at all */
} attn_log_level;

/** How the products of attention are computed, S = scale Q K^T and
 * O = P V (attn_options.precision, or ATTN_PRECISION).  A permission, not
 * an obligation: a kernel may compute more exactly than asked, never less;
 * attn_sdpa_precision says which precision a shape runs at.  Sums are in
 * float at every precision, F16 and BF16 storage included.  The native
 * backend runs BF16 on CPUs with AVX512_BF16 (VDPBF16PS, or AMX TDPBF16PS
 * where the CPU has AMX-BF16), for dot scores outside its decode form (few
 * query rows per K/V head).  The OpenCL variant
 * "mma" (NVIDIA tensor cores, compute capability 8.0 or newer) runs TF32
 * when TF32 or BF16 is asked (F32 storage: TF32 products; F16 storage: f16
 * products, Q K^T exact and P rounded to f16 for P V) and 3XTF32 when it
 * is asked (F32 storage); "amdmm" (AMD matrix cores: MFMA on gfx908,
 * gfx90a, gfx940-942, WMMA on RDNA3) runs TF32 when TF32 or BF16 is asked
 * (F16 storage as mma; F32 storage through xf32 with inputs rounded to
 * TF32, on gfx940-942 only) and declines 3XTF32; "xmx" (Intel XMX
 * matrix units, subgroups of 8) runs TF32 when TF32 or BF16 is asked,
 * for F16 storage (f16 products, Q K^T exact and P rounded to f16
 * for P V).  mma and amdmm take BF16 storage through their F32 products
 * (a bfloat16 widens to a float exactly and fits TF32, so only P is
 * rounded; amdmm on gfx940-942 only, as for F32); xmx takes it through
 * bfloat16 products and runs BF16 when BF16 is asked (Q K^T exact, P
 * rounded to bfloat16 for P V; declined at TF32).  Everything else
 * computes as EXACT, which is within every bound.  With BF16 storage, BF16
 * products leave k and v as they are (bfloat16 already) and round the
 * scaled q and p as for any storage.
 *
 * Error bounds, against exact arithmetic on the same inputs, for a row
 * with visible keys: M is the largest scale * sum_c |q_c k_c| (+ |bias|)
 * over its keys, V the largest |v| they hold, g about (head_dim + 8) 2^-24
 * (float's dot product) and t the error per product: 0 (EXACT), 2u + u^2
 * (TF32, u = 2^-11; BF16, u = 2^-8: both round to nearest even),
 * 3u^2 + 4u^3 + u^4 (3XTF32, u = 2^-11).  With e = (g + t) M, scores and
 * lse are off by at most e and each element of O by at most
 * (exp(2e) - 1 + t exp(2e)) V, beyond a few float ulps of the result.  So
 * TF32 adds about 2^-10 M to a score, BF16 about 2^-7 M; 3XTF32 about 12
 * float ulps, within the library's float tolerances.  BF16 also flushes
 * subnormal inputs and sums to 0 (an absolute error below 2^-126 per
 * term).  Sums over the keys add their rounding: the row's sum of weights
 * (so lse) and O's weighted sum are float sums of n terms for n visible
 * keys, off by up to a relative n 2^-24 in the worst case, a row where
 * one key dominates and very many weigh under 2^-24 of it each (the
 * kernels sum in blocks and partial sums, far within that on ordinary
 * rows).  Where P is rounded to f16 (mma, amdmm, xmx with F16 storage)
 * a weight under 2^-14 is off by up to 2^-25, which adds up to n 2^-25 V
 * to O: within the TF32 bound for rows of up to 2^15 keys, beyond it
 * past.  docs/DESIGN.md, "Precision", derives them. */
typedef enum attn_precision {
    ATTN_PRECISION_EXACT = 0, /**< IEEE float products and sums (default) */
    ATTN_PRECISION_TF32,      /**< the inputs of each product (q, k; p, v)
                                   rounded to TF32 (10-bit mantissa), sums in
                                   float */
    ATTN_PRECISION_3XTF32,    /**< split products: a = a_hi + a_lo in TF32,
                                   a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi, sums
                                   in float: float-accurate */
    ATTN_PRECISION_BF16       /**< the inputs of each product (q, k; p, v)
                                   rounded to bfloat16 (8-bit mantissa, round
                                   to nearest even), sums in float */
} attn_precision;

/** "exact", "tf32", "3xtf32" or "bf16" (the names ATTN_PRECISION takes);
 * "unknown" for a value outside the enum.  Static storage. */
ATTN_API const char *attn_precision_name(attn_precision p);

/** Receives one message (no trailing newline) at the given attn_log_level.
 * Called from the thread that made the libattn call; msg is valid only for
 * the duration of the call.  The callback may run while the library holds
 * locks of the context (a program build, say), so it must not call back
 * into libattn to run work: from inside a callback, attn_sdpa,
 * attn_sdpa_kernel, attn_mha_forward, attn_mha_create,
 * attn_mha_forward_layer, attn_sdpa_backward, attn_mha_forward_train,
 * attn_mha_backward, attn_sdpa_cl and
 * attn_sdpa_cl_buffers (on any context) return ATTN_ERR_INVALID_ARGUMENT
 * and do nothing, and messages the library logs meanwhile are dropped.
 * Nor may it destroy the context that logs, or wait for another thread
 * that uses that context.  attn_status_string, attn_version,
 * attn_last_error, attn_context_last_error and attn_context_device may be
 * called. */
typedef void (*attn_log_fn)(int level, const char *msg, void *user);

/** Options for attn_context_create.  Always start from attn_options_init()
 * (or ATTN_OPTIONS_INIT), which sets struct_size and the defaults.
 * Strings are copied; they need not outlive the call.  The library reads
 * only the members struct_size covers; a struct_size of 0 means the first
 * layout, which ends at log_level (kernel and precision are then not read:
 * NULL and EXACT). */
typedef struct attn_options {
    size_t struct_size;    /**< sizeof(attn_options) as the caller built */
    const char *device;    /**< "auto" (default), "native", "gpu", "igpu",
                                "fpga", "cpu", "P:D", a device name substring,
                                "all" or a comma list (one with no item, ",",
                                is ATTN_ERR_INVALID_ARGUMENT); ATTN_DEVICE
                                overrides.  "native" never loads the OpenCL
                                driver */
    int queues;            /**< command queues per device, 0..8; 0 =
                                the device's profile */
    int threads;           /**< native worker threads; 0 = ATTN_NUM_THREADS
                                or the number of online CPUs */
    const char *cache_dir; /**< program cache; NULL = ATTN_CACHE_DIR or the
                                XDG default (not on PoCL, whose driver
                                caches compiled kernels itself), "" disables
                                the cache; read only when the folder is the
                                user's own and writable by no one else
                                (docs/SECURITY.md) */
    int allow_fallback;    /**< 1 (default): failed device work runs natively */
    attn_path path;        /**< OpenCL kernel path */
    attn_log_fn log;    /**< NULL: messages go to stderr when ATTN_LOG asks */
    void *log_user;     /**< passed to log */
    int log_level;      /**< an attn_log_level; ATTN_LOG_DEFAULT by default */
    const char *kernel; /**< NULL or "" (default): the library chooses the
                             kernel per shape; else the name of one kernel
                             variant (attn_kernel_name) that every call on
                             the context must run; ATTN_KERNEL overrides */
    attn_precision precision; /**< EXACT (default; ATTN_PRECISION may ask
                                   another), TF32, 3XTF32 or BF16, which
                                   ATTN_PRECISION does not override */
} attn_options;

/** Initializer with the defaults: `attn_options o = ATTN_OPTIONS_INIT;` */
/* clang-format off */
#ifdef __cplusplus
extern "C++" {
inline attn_options attn_options_init_(void)
{
    attn_options o = attn_sized_init_<attn_options>();
    o.device = "auto";
    o.allow_fallback = 1;
    return o;
}
}
#define ATTN_OPTIONS_INIT attn_options_init_()
#else
#define ATTN_OPTIONS_INIT \
    {.struct_size = sizeof(attn_options), .device = "auto", .allow_fallback = 1}
#endif
/* clang-format on */

/** Fills o with the defaults: struct_size = size (the caller's
 * sizeof(attn_options)), device "auto", fallback on, everything else
 * 0/NULL; exactly size bytes are written.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (o NULL, a size no layout has; o untouched). */
ATTN_API attn_status attn_options_init_sized(attn_options *o, size_t size);

/** Fills o with the defaults: device "auto", fallback on, everything else
 * 0/NULL.  Does nothing when o is NULL.  The macro of the same name passes
 * the caller's sizeof(attn_options) to attn_options_init_sized; the
 * function itself (for callers that cannot use the macro, such as other
 * languages' bindings) fills the first layout only. */
ATTN_API void attn_options_init(attn_options *o);
/** Fills *o with the defaults for the caller's sizeof(attn_options). */
#define attn_options_init(o) ((void)attn_options_init_sized((o), sizeof *(o)))

/** Opaque handle: a selected device, its compiled kernels, queues, a worker
 * thread pool and reusable working memory. */
typedef struct attn_context attn_context;

/** Creates a context.  o may be NULL (defaults).  Environment variables
 * ATTN_DEVICE, ATTN_NUM_THREADS, ATTN_CACHE_DIR, ATTN_LOG, ATTN_KERNEL and
 * ATTN_PRECISION override or fill in the options.  On success *out owns
 * the context; release it with attn_context_destroy.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (out NULL, a bad option: options.kernel naming
 * no kernel variant, or an OpenCL kernel for a context on the native
 * backend, options.precision outside attn_precision, a struct_size no
 * layout has), ATTN_ERR_UNSUPPORTED (members of a newer attn_options set),
 * ATTN_ERR_NO_DEVICE (the device spec matches nothing; the message lists
 * what exists), ATTN_ERR_OUT_OF_MEMORY; *out is then NULL.  A value an
 * environment variable does not accept never fails the call: it is a
 * warning naming the variable and what it accepts (logged, and the
 * context's last error), and the default applies; only an ATTN_DEVICE
 * that matches no device fails, as options.device would. */
ATTN_API attn_status attn_context_create(const attn_options *o,
                                         attn_context **out);

/** Releases everything the context holds.  NULL is a no-op.  No call on the
 * context may be running. */
ATTN_API void attn_context_destroy(attn_context *ctx);

/** Describes the device that runs the context's work (kind
 * ATTN_DEVICE_NATIVE for the built-in backend).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT when ctx or out is NULL. */
ATTN_API attn_status attn_context_device(const attn_context *ctx,
                                         attn_device_info *out);

/** A sentence about the last failure or fallback seen by ctx (from any
 * thread), or "" when none.  The returned string belongs to the calling
 * thread and stays valid until its next call of this function.  NULL ctx
 * gives "invalid context". */
ATTN_API const char *attn_context_last_error(const attn_context *ctx);

/* ------------------------------------------------------------------------ */
/* Scaled dot-product attention                                             */
/* ------------------------------------------------------------------------ */

/** How a query row and a key row make a score. */
typedef enum attn_score {
    ATTN_SCORE_DOT = 0, /**< S = scale * q . k */
    ATTN_SCORE_ADDITIVE /**< S = sum_c w[h][c] tanh(q_c + k_c) */
} attn_score;

/** The element type of q, k, v and o. */
typedef enum attn_dtype {
    ATTN_F32 = 0, /**< float */
    ATTN_F16,     /**< IEEE binary16 stored as uint16_t; math in float */
    ATTN_BF16     /**< bfloat16 (a float's top 16 bits) stored as uint16_t;
                       math in float.  Loads are exact; stores round to
                       nearest even, keep NaN a NaN, turn a value past the
                       largest bfloat16 into an infinity and one below
                       2^-126 in magnitude into a zero of its sign (as
                       VCVTNEPS2BF16 does, on every backend).  8
                       significant bits: a stored output is within 2^-8
                       of its float value, relatively */
} attn_dtype;

/** The shape of an additive bias.  Each is [B, H, Q, seq_kv], row-major,
 * with B either batch or 1, H heads_q or 1, Q seq_q or 1: a dimension of 1
 * is broadcast (the same values for every batch item, head or query), and
 * the element of (b, h, i, j) is read in place, never copied out to the
 * full [batch, heads_q, seq_q, seq_kv]. */
typedef enum attn_bias_kind {
    ATTN_BIAS_NONE = 0, /**< no bias */
    ATTN_BIAS_SHARED,   /**< bias [seq_q, seq_kv], same for all b, h */
    ATTN_BIAS_PER_HEAD, /**< bias [heads_q, seq_q, seq_kv] */
    ATTN_BIAS_FULL,     /**< bias [batch, heads_q, seq_q, seq_kv] */
    ATTN_BIAS_KEY,      /**< bias [batch, seq_kv]: one value per key of each
                             batch item, for every head and query (a
                             key-padding mask of 0 and -INFINITY) */
    ATTN_BIAS_BROADCAST /**< bias [B, H, Q, seq_kv] with (B, H, Q) =
                             attn_sdpa_desc.bias_shape; attn_sdpa only (an
                             attn_mask_desc alone has no bias_shape) */
} attn_bias_kind;

/** Where the causal mask's diagonal (and the window) sits when seq_q and
 * seq_kv differ (attn_sdpa_desc.causal_align).  With d the diagonal's
 * offset, query i sees key j iff j <= i + d under the causal mask, and
 * the window hides j < i + d - window + 1.  The two agree when
 * seq_q == seq_kv.  attn_sdpa_desc.causal_offset moves d further. */
typedef enum attn_causal_align {
    ATTN_CAUSAL_BOTTOM_RIGHT = 0, /**< d = seq_kv - seq_q (default): the last
                                       query sees every key, as a decoder
                                       step against a KV cache needs
                                       (FlashAttention's alignment); a
                                       query i < seq_q - seq_kv sees none */
    ATTN_CAUSAL_TOP_LEFT          /**< d = 0: query i sees keys 0 .. i
                                       (PyTorch's is_causal) */
} attn_causal_align;

/** Masks applied to the scores.  All zero means no mask.  struct_size is
 * the caller's sizeof(attn_mask_desc) (ATTN_MASK_DESC_INIT); 0 means the
 * first layout.  Inside an attn_sdpa_desc the descriptor's own struct_size
 * covers the mask and this one is not read. */
typedef struct attn_mask_desc {
    size_t struct_size;       /**< sizeof(attn_mask_desc) as the caller built */
    int causal;               /**< 0 or 1 (anything else is
                                   ATTN_ERR_INVALID_ARGUMENT); 1: query i
                                   sees key j iff j <= i + (seq_kv - seq_q),
                                   or j <= i with attn_sdpa_desc's
                                   causal_align TOP_LEFT */
    int window;               /**< > 0: also hide j < i + (seq_kv - seq_q)
                                   - window + 1 (TOP_LEFT: j < i - window +
                                   1); 0 = no window */
    const int32_t *kv_len;    /**< [batch] or NULL: keys j >= kv_len[b] are
                                   hidden; each value in [0, seq_kv] */
    const float *bias;        /**< additive bias (float, may hold -INFINITY),
                                   shaped by bias_kind */
    attn_bias_kind bias_kind; /**< the shape of bias; NONE without one */
} attn_mask_desc;

/** Initializer of a mask without masking: `attn_mask_desc m =
 * ATTN_MASK_DESC_INIT;` */
#define ATTN_MASK_DESC_INIT ATTN_SIZED_INIT_(attn_mask_desc)

/** One attention call.  Q [batch, heads_q, seq_q, head_dim],
 * K [batch, heads_kv, seq_kv, head_dim], V [batch, heads_kv, seq_kv,
 * head_dim_v], O [batch, heads_q, seq_q, head_dim_v]; query head h reads kv
 * head h / (heads_q / heads_kv).  All sizes must be positive and
 * heads_q % heads_kv == 0.  struct_size is the caller's
 * sizeof(attn_sdpa_desc) (ATTN_SDPA_DESC_INIT); 0 means the first layout,
 * so a descriptor zeroed or written with designated initializers means
 * "defaults" as before. */
typedef struct attn_sdpa_desc {
    size_t struct_size;      /**< sizeof(attn_sdpa_desc) as the caller built */
    int batch;               /**< batch items */
    int heads_q;             /**< query heads */
    int heads_kv;            /**< key / value heads; divides heads_q */
    int seq_q;               /**< query rows per head */
    int seq_kv;              /**< keys (and values) per head */
    int head_dim;            /**< elements of a query or key row */
    int head_dim_v;          /**< elements of a value (and output) row */
    float scale;             /**< 0 = 1/sqrt(head_dim); dot score only */
    attn_score score;        /**< how a query and a key make a score */
    const float *additive_w; /**< [heads_q, head_dim] for ADDITIVE */
    attn_mask_desc mask;     /**< masks and bias (all zero: none) */
    attn_dtype dtype;        /**< element type of q, k, v and o */
    /* Members added since the first layout (docs/ABI.md). */
    int pad0_; /**< explicit padding (the first layout's tail); not read */
    attn_causal_align causal_align; /**< where the causal diagonal and the
                                         window sit; BOTTOM_RIGHT (0) by
                                         default.  Read only when
                                         struct_size covers it (start from
                                         ATTN_SDPA_DESC_INIT): a struct_size
                                         of 0 means the first layout */
    int bias_shape[3];       /**< ATTN_BIAS_BROADCAST: the bias's extents over
                                  batch, heads_q and seq_q, each that size or 1
                                  (broadcast); read only for that kind */
    const uint8_t *keep;     /**< boolean mask or NULL: bytes [B, H, Q, seq_kv]
                                  with (B, H, Q) = keep_shape; 0 hides key j
                                  from query i (as a -INFINITY bias entry
                                  would, whatever the bias holds there), any
                                  other value keeps it.  With a bias too, both
                                  apply.  The native backend reads it in place;
                                  an OpenCL context merges it and the bias into
                                  one float bias of the shape spanning both for
                                  the device (4 bytes per entry of that shape) */
    int keep_shape[3];       /**< keep's extents over batch, heads_q and seq_q,
                                  each that size or 1 (broadcast) */
    const int32_t *q_start;  /**< [batch] or NULL (all 0): left padding of
                                  the queries; query rows i < q_start[b]
                                  are padding and see no key (O = 0, lse =
                                  -INFINITY); each value in [0, seq_q] */
    const int32_t *kv_start; /**< [batch] or NULL (all 0): left padding of
                                  the keys; keys j < kv_start[b] are hidden
                                  from every query; each value in [0,
                                  seq_kv].  With TOP_LEFT the causal
                                  diagonal and the window are measured from
                                  the starts (query q_start[b] + t sees key
                                  kv_start[b] + t); BOTTOM_RIGHT, which
                                  aligns the ends, needs no change.  The
                                  native backend applies both in place; an
                                  OpenCL context folds kv_start (and, under
                                  TOP_LEFT, a causal or window mask whose
                                  diagonal the starts move) into
                                  the float bias it gives the device, as it
                                  does keep, and zeroes the padding rows */
    /* Strides (in elements of dtype) over batch, head and row of each
     * tensor; the last dimension (head_dim, head_dim_v) is always
     * contiguous.  All three 0 (the default) means the contiguous layout
     * above: {heads * seq * dim, seq * dim, dim}.  Otherwise element
     * (b, h, i, c) of q sits at q[b * q_strides[0] + h * q_strides[1] +
     * i * q_strides[2] + c], and likewise for k, v (with kv heads and
     * seq_kv) and o.  BSHD activations [batch, seq, heads, dim] are
     * {seq * heads * dim, dim, heads * dim}; a fused QKV projection
     * [batch, seq, 3, heads, dim] is q, k, v pointing at slots 0, 1, 2 of
     * one buffer with {seq * 3 * heads * dim, dim, 3 * heads * dim} each.
     * Strides must not be negative and the extent they span (the last
     * element's offset + 1) must fit the address space; an input's
     * strides may be anything else (0 repeats a row or head).  o's must
     * keep its rows apart: sorted by stride, the (batch, head, row)
     * dimensions of more than one index must nest (each stride at least
     * the extent spanned by the smaller ones, the smallest at least
     * head_dim_v).  The overlap rules of attn_sdpa apply to the extents
     * spanned.  lse stays contiguous [batch, heads_q, seq_q].
     * The native backend and every OpenCL kernel variant read and write
     * them in place (attn_sdpa on an OpenCL context uploads each tensor's
     * spanned extent as it lies; attn_sdpa_cl_buffers takes them at the
     * buffers' offsets).  attn_sdpa_backward takes them (d_o in o's
     * strides, dq, dk and dv in q's, k's and v's) through contiguous
     * copies of the rows.  The ring (libattn_mpi) takes them over each
     * rank's host slices (attn_mpi.h). */
    int64_t q_strides[3]; /**< q's batch, head, row strides; 0s: contiguous */
    int64_t k_strides[3]; /**< k's batch, kv head, key strides */
    int64_t v_strides[3]; /**< v's batch, kv head, key strides */
    int64_t o_strides[3]; /**< o's batch, head, row strides */
    /* Packed variable-length batches: cu_seqlens_q and cu_seqlens_kv, both
     * [batch + 1] or both NULL.  Sequence b owns query rows cu_seqlens_q[b]
     * .. cu_seqlens_q[b + 1] - 1 and keys cu_seqlens_kv[b] .. of the packed
     * tensors q [total_q, heads_q, head_dim], k [total_kv, heads_kv,
     * head_dim], v [total_kv, heads_kv, head_dim_v] and o [total_q,
     * heads_q, head_dim_v] (total = the array's last entry), with no
     * padding; lse, when asked, is [heads_q, total_q].  Each array starts
     * at 0 and never decreases; seq_q and seq_kv bound the lengths (the
     * longest sequence).  The strides' head and row entries place the
     * packed rows ({0, dim, heads * dim} when all three are 0; the batch
     * entry must be 0).  Causal masks and windows apply per sequence, with
     * its own lengths.  A sequence without keys gives O = 0 and lse =
     * -INFINITY for its rows.  Not with kv_len, a bias, keep, q_start or
     * kv_start (ATTN_ERR_UNSUPPORTED).  attn_sdpa computes the sequences
     * one after the other, on every path; a failure after the checks (a
     * device error) may leave the sequences before it written.
     * attn_sdpa_cl_buffers takes them too (every sequence enqueued, held
     * back until all are, and failed together on an error).
     * attn_sdpa_backward takes them (each sequence on its own, lse as
     * the forward's; a sequence without keys gets dq = 0, one without
     * queries dk = dv = 0); the ring refuses them (ATTN_ERR_UNSUPPORTED)
     * for now. */
    const int32_t *cu_seqlens_q;  /**< [batch + 1] query row offsets */
    const int32_t *cu_seqlens_kv; /**< [batch + 1] key row offsets */
    int64_t causal_offset;        /**< added to the diagonal causal_align places
                                       (0 by default): query i sees key j iff
                                       j <= i + d under the causal mask, and the
                                       window hides j < i + d - window + 1, with
                                       d = (seq_kv - seq_q or 0) + causal_offset.
                                       A block of a longer sequence (query rows
                                       from position p, keys from position r) is
                                       TOP_LEFT with causal_offset = p - r.  d must
                                       lie in [1 - seq_q, seq_kv - 1], the range
                                       the two alignments give (outside it the
                                       causal mask hides every key or none; else
                                       ATTN_ERR_INVALID_ARGUMENT); with q_start and
                                       kv_start (TOP_LEFT) the starts move it per
                                       batch item as they move the alignment's.
                                       Not with packed sequences (cu_seqlens_q:
                                       ATTN_ERR_UNSUPPORTED) */
} attn_sdpa_desc;

/** Initializer of a descriptor with every member at its default (sizes
 * still to be set): `attn_sdpa_desc d = ATTN_SDPA_DESC_INIT;` */
#define ATTN_SDPA_DESC_INIT ATTN_SIZED_INIT_(attn_sdpa_desc)

/** Zeroes size bytes at d and sets d->struct_size to size (the caller's
 * sizeof(attn_sdpa_desc)); attn_sdpa_desc_init(d) passes it.  The same
 * for attn_mask_desc and attn_mha_desc.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL, a size no layout has; untouched). */
ATTN_API attn_status attn_sdpa_desc_init_sized(attn_sdpa_desc *d, size_t size);
/** As attn_sdpa_desc_init_sized, for attn_mask_desc. */
ATTN_API attn_status attn_mask_desc_init_sized(attn_mask_desc *m, size_t size);
/** Prepares *d: every member at its default, struct_size = sizeof *d. */
#define attn_sdpa_desc_init(d)                                                 \
    ((void)attn_sdpa_desc_init_sized((d), sizeof *(d)))
/** Prepares *m: no mask, struct_size = sizeof *m. */
#define attn_mask_desc_init(m)                                                 \
    ((void)attn_mask_desc_init_sized((m), sizeof *(m)))

/* Non-finite inputs.  NaN and +-INFINITY in q, k, v, the bias or
 * additive_w follow these rules on every backend and kernel path (native,
 * OpenCL three-kernel, fused and decode).  "Row i" is one query row
 * (b, h, i); "visible" means not hidden by causal, window, kv_len,
 * kv_start, a 0 in keep or a -INFINITY bias entry (a padding row of
 * q_start sees no key).
 *  1. A hidden key never contributes: whatever its K and V rows (and its
 *     bias entry, when a mask hides it) hold, row i is computed as if the
 *     key did not exist.  An uninitialised KV cache behind kv_len is safe.
 *  2. Scores are float arithmetic, S = scale * (q . k) + bias (or the
 *     additive sum + bias): NaN in q, k, additive_w or the bias gives a NaN
 *     score; infinities give +-INFINITY or NaN (inf * 0, inf - inf); finite
 *     inputs large enough to overflow give +-INFINITY (near the edge of the
 *     float range the paths, which order the products differently, may
 *     disagree on whether a score overflows).  tanh(+-inf) = +-1, so in the
 *     additive score an infinite q or k alone stays finite.
 *  3. A score of -INFINITY hides its key, exactly like a -INFINITY bias
 *     (rule 1: its V is not read into the row).
 *  4. A NaN or +INFINITY score at a visible key makes row i NaN: every
 *     element of O[i] and lse[i].
 *  5. A row with no visible key (after rule 3) gives O = 0 and
 *     lse = -INFINITY, even when its q holds NaN.
 *  6. A non-finite V[j][c] of a key visible to row i reaches O[i][c] and
 *     nothing else: NaN gives NaN; +-INFINITY gives +-INFINITY, or NaN
 *     where both infinities meet in column c or where the key's weight
 *     underflows to 0 (0 * inf).  However small its weight, a visible key's
 *     NaN is never dropped.  lse[i] and the other columns are unaffected.
 *  7. Every element these rules do not name is what the call gives
 *     without the non-finite values (up to float rounding).
 * Finite V near the top of the float range: O[i] is accumulated as
 * sum_j p_j V[j] with p_j = exp(S[i][j] - max_j S[i][j]) <= 1 and divided
 * by sum_j p_j once, at the end, so that sum may overflow (O[i][c] +-INFINITY,
 * or NaN where an overflowed sum is rescaled by an underflowed factor)
 * when sum_j p_j |V[j][c]| exceeds FLT_MAX, which needs |V[j][c]|
 * above FLT_MAX / n for a row with n visible keys (rule 2's counterpart
 * for V; lse is unaffected).  The OpenCL three-kernel path (unfused),
 * which divides P before its product with V, gives the finite average.
 * F16 and BF16 NaN and +-inf become float NaN and +-inf, and back (a
 * stored NaN stays a NaN).  scale
 * must be finite (ATTN_ERR_INVALID_ARGUMENT otherwise); the values of the
 * bias and additive_w are data and are not checked.  The rules assume IEEE
 * arithmetic: an OpenCL device profile whose build options include
 * -cl-finite-math-only or -cl-fast-relaxed-math keeps rule 1 only.
 * attn_mha_forward follows from them: see there. */

/** Computes O = softmax(S + bias, masked) V for every batch item and query
 * head, and optionally lse[b,h,i] = log(sum_j exp(S[i][j])) (float, layout
 * [batch, heads_q, seq_q]; may be NULL).  A query row whose keys are all
 * hidden gives O = 0 and lse = -INFINITY.  q, k, v, o point at dtype values
 * in the layouts of attn_sdpa_desc; o and lse must not overlap the inputs
 * (q, k, v and the descriptor's arrays: bias, keep, additive_w, kv_len,
 * the starts, the packed offsets) nor each other.
 * Hidden keys (masks, kv_len) never reach O: NaN or Inf stored there is
 * harmless.  NaN or Inf in a visible input spoils only the query rows (or,
 * in V, the output columns) that see it: see "Non-finite inputs" above.
 * Errors: ATTN_ERR_INVALID_ARGUMENT (NULL pointer, non-positive size,
 * heads_q % heads_kv != 0, unknown enum, ADDITIVE without additive_w, a bias
 * kind without bias or a bias without kind, a bias_shape entry (or, with
 * keep, a keep_shape entry) other than 1 and its dimension's size, causal not 0
 * or 1, negative window, causal_align outside attn_causal_align, kv_len outside
 * [0, seq_kv], non-finite scale, a negative stride, strides whose extent
 * overflows, o strides that make rows of o alias, o or lse overlapping
 * another tensor, a call from inside the log callback), ATTN_ERR_OUT_OF_MEMORY
 * (sizes overflow or allocation failed), ATTN_ERR_DEVICE /
 * ATTN_ERR_BUILD_FAILED (device failure with fallback off).  Outputs are
 * untouched on error, but for one case: with fallback off, a device's
 * read of o that fails while it runs (a transfer failing midway) may
 * leave part of o written (lse untouched); with fallback on the call is
 * redone natively and o is whole. */
ATTN_API attn_status attn_sdpa(attn_context *ctx, const attn_sdpa_desc *d,
                               const void *q, const void *k, const void *v,
                               void *o, float *lse);

/** The tensors of one backward call (attn_sdpa_backward).  struct_size is
 * the caller's sizeof(attn_sdpa_grad) (ATTN_SDPA_GRAD_INIT; 0 means the
 * first layout); members added later (dbias, d_additive_w) default to
 * "not asked". */
typedef struct attn_sdpa_grad {
    size_t struct_size; /**< sizeof(attn_sdpa_grad) as the caller built */
    const void *q;      /**< the forward's q (dtype, attn_sdpa_desc layout) */
    const void *k;      /**< the forward's k */
    const void *v;      /**< the forward's v */
    const void *o;      /**< the forward's output o */
    const float *lse;   /**< the forward's lse [batch, heads_q, seq_q] */
    const void *d_o;    /**< dL/dO, shaped as o, in dtype */
    void *dq;           /**< out: dL/dQ, shaped as q, in dtype */
    void *dk;           /**< out: dL/dK, shaped as k (summed over the query
                             heads that read each kv head) */
    void *dv;           /**< out: dL/dV, shaped as v (summed likewise) */
    /* Members added since the first layout (docs/ABI.md). */
    float *dbias;        /**< out or NULL: dL/dbias, float, in the bias's
                              own shape (mask.bias_kind, bias_shape): each
                              entry the sum of dL/dS over the scores it is
                              added to; NULL: not asked.  Requires a bias */
    float *d_additive_w; /**< out or NULL: dL/d additive_w [heads_q,
                              head_dim] for the ADDITIVE score; NULL: not
                              asked.  Requires the additive score */
} attn_sdpa_grad;

/** Initializer of an attn_sdpa_grad with no tensor set yet:
 * `attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;` */
#define ATTN_SDPA_GRAD_INIT ATTN_SIZED_INIT_(attn_sdpa_grad)

/** The gradients of attn_sdpa: given the forward's descriptor d, its
 * inputs q, k, v, its output o and lse (as attn_sdpa returned them) and
 * d_o = dL/dO, writes dq, dk and dv (dtype, the shapes of q, k and v; math
 * in float).  With G = heads_q / heads_kv, dk and dv of a kv head are the
 * sums over its G query heads.  Every mask of d applies as in the forward
 * (causal with either causal_align, window, kv_len, every bias kind, keep,
 * q_start and kv_start), and both scores: for the additive score, with
 * t = tanh(q_c + k_c), dq_c and dk_c get dS w_c (1 - t^2).  When asked
 * (attn_sdpa_grad's dbias, d_additive_w): dbias, float in the bias's own
 * shape, each entry the sum of dS = P (dP - D) over the scores it is added
 * to (over the dimensions the bias broadcasts over); d additive_w
 * [heads_q, head_dim], the sum of dS t.  Both are the same on every call
 * of a context (sums in a fixed order, no atomics).
 * P is recomputed from q, k and
 * lse (exp(S - lse)), so o and lse must be those of the same forward.
 * Non-finite rules: a (query, key) pair whose probability is 0 (hidden by
 * a mask, kv_len, keep or a -INFINITY score, or underflowed) adds nothing
 * to any gradient, whatever q, k, v and d_o hold there, so a key hidden
 * from every query gets exactly zero dk and dv, and a bias entry that only
 * hidden pairs read gets exactly zero dbias; a query row with no
 * visible key (lse = -INFINITY) gets zero dq; NaN or infinity elsewhere
 * spreads through the sums as float arithmetic does.  Working memory: O(seq)
 * per worker, no seq_q x seq_kv matrix (one [batch, heads_q, seq_q, head_dim]
 * float buffer per worker for dq's partial sums, the F32 copies of F16
 * or BF16 inputs); with dbias of a bias broadcast over the batch or the kv
 * heads, up to min(2 x workers, the pairs that share an entry) - 1 more float
 * copies of the bias's shape, at most 512 MiB (none for the other
 * shapes); with d_additive_w, head_dim floats per (batch, query head, 128
 * keys); with strides (or packed sequences, per sequence), contiguous
 * copies of q, k, v, o, d_o, dq, dk and dv.  The native backend keeps its
 * working block for the next call (one per context, when at most 64 MiB)
 * until attn_context_destroy.  A context on an OpenCL
 * device computes it on its first device with a backward kernel variant
 * (bwd_tiled on GPUs, bwd_fused, or bwd_ref; attn-probe --kernels lists
 * them after the forward's, which attn_kernel_name names), chosen as the
 * forward's are (options.path, options.kernel; no
 * seq_q x seq_kv matrix there either; F32, F16 and BF16; bwd_tiled (head
 * sizes up to 128) and bwd_fused the dot score without dbias or
 * d_additive_w, bwd_ref also the additive score, dbias
 * and d_additive_w, except dbias with keep, kv_start or a moved causal
 * diagonal), and natively when no variant takes the call or the
 * device fails and options.allow_fallback is on.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL ctx, d or g, a NULL tensor, an invalid
 * d as attn_sdpa checks it, an output overlapping an input (the
 * descriptor's arrays included: bias, keep, additive_w, kv_len, the starts,
 * the packed offsets) or another output (dq, dk and dv may be views of
 * one fused block, [batch, seq, heads_q + 2 heads_kv, head_dim] say, whose
 * elements do not meet: checked exactly for such layouts), strides of q, k
 * or v that make rows share elements (dq, dk, dv, in those strides, would
 * too), a call from inside the log
 * callback, dbias set without a bias, d_additive_w set without the
 * additive score), ATTN_ERR_UNSUPPORTED (a struct_size of a newer
 * attn_sdpa_grad whose new members are set; what attn_sdpa refuses with it,
 * e.g. packed sequences with a bias),
 * ATTN_ERR_OUT_OF_MEMORY; on an OpenCL context with fallback off also
 * ATTN_ERR_BUILD_FAILED, ATTN_ERR_DEVICE and ATTN_ERR_UNSUPPORTED (no
 * backward variant takes the call, or the forced one does not).
 * Outputs are untouched on error. */
ATTN_API attn_status attn_sdpa_backward(attn_context *ctx,
                                        const attn_sdpa_desc *d,
                                        const attn_sdpa_grad *g);

/** The kernel variants of the OpenCL backend, by index: "unfused" (score,
 * softmax and aggregate kernels), "fused" (one pass, online softmax),
 * "decode" (a few query rows against many keys), and those added since;
 * NULL past the last one (and for every index in a build without the
 * OpenCL backend).  attn-probe --kernels describes each. */
ATTN_API const char *attn_kernel_name(int index);

/** Says which kernel attn_sdpa runs for descriptor d on ctx, without
 * running it: writes the variant's name (or "native" on the native
 * backend) into name (cap bytes, NUL-terminated, cut when short).  It may
 * build the kernel (as the first attn_sdpa of the shape would).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (NULL arguments, cap 0, an invalid d),
 * ATTN_ERR_UNSUPPORTED (the kernel forced by options.kernel / ATTN_KERNEL
 * does not take d: the message says why), ATTN_ERR_BUILD_FAILED,
 * ATTN_ERR_DEVICE. */
ATTN_API attn_status attn_sdpa_kernel(attn_context *ctx,
                                      const attn_sdpa_desc *d, char *name,
                                      size_t cap);

/** The precision attn_sdpa computes d at on ctx, without running it:
 * *runs receives that of the kernel attn_sdpa_kernel names (the one asked
 * where the kernel has it, else a more exact one: BF16 on the native
 * backend, TF32 / 3XTF32 on the OpenCL variant mma, TF32 on amdmm and
 * xmx, and BF16 on xmx for BF16 storage, as attn_precision says, EXACT
 * everywhere else; EXACT too for a call that falls back to the native
 * backend), *asked (when not NULL) the
 * context's.  attn_sdpa_cl and the
 * attention of attn_mha_forward run as said for their descriptor, except
 * that the native multi-head layer's attention computes EXACT.  It may
 * build the kernel.  Errors: ATTN_ERR_INVALID_ARGUMENT (ctx, d or runs
 * NULL, an invalid d), and those of attn_sdpa_kernel; *asked and *runs
 * are then untouched. */
ATTN_API attn_status attn_sdpa_precision(attn_context *ctx,
                                         const attn_sdpa_desc *d,
                                         attn_precision *asked,
                                         attn_precision *runs);

/* ------------------------------------------------------------------------ */
/* Multi-head attention layer                                               */
/* ------------------------------------------------------------------------ */

/** Positional encodings of the multi-head layer. */
typedef enum attn_posenc {
    ATTN_POSENC_NONE = 0,   /**< none */
    ATTN_POSENC_SINUSOIDAL, /**< PE(p) added to x before projection */
    ATTN_POSENC_LEARNED,    /**< pos_table[p] added to x */
    ATTN_POSENC_ROPE        /**< rotary, applied to every q and k head */
} attn_posenc;

/** A multi-head attention layer with nn.Linear weights: y = x W^T + b.
 * wq [heads_q*head_dim, d_model], wk and wv [heads_kv*head_dim, d_model],
 * wo [d_model, heads_q*head_dim]; biases bq [heads_q*head_dim],
 * bk and bv [heads_kv*head_dim], bo [d_model], each may be NULL (zero).
 * Scores use scale 1/sqrt(head_dim).  The caller owns every array.
 * weight_dtype is the element type of every array of the descriptor (the
 * weights, biases, additive_w and pos_table): ATTN_F32 (the default) or,
 * for checkpoints stored in 16 bits, ATTN_F16 or ATTN_BF16, whose arrays
 * are uint16_t (cast to const float * for these members, which keep their
 * type so that existing code compiles unchanged; the library reads them
 * back as uint16_t, each array aligned as malloc aligns).  The math is
 * float's either way: attn_mha_create converts the arrays once, when it
 * copies them; attn_mha_forward converts them on every call (see there).
 * struct_size is the caller's sizeof(attn_mha_desc) (ATTN_MHA_DESC_INIT);
 * 0 means the first layout. */
typedef struct attn_mha_desc {
    size_t struct_size;      /**< sizeof(attn_mha_desc) as the caller built */
    int d_model;             /**< model width: the size of a token's x and y */
    int heads_q;             /**< query heads */
    int heads_kv;            /**< key / value heads; divides heads_q */
    int head_dim;            /**< elements per head */
    const float *wq;         /**< [heads_q*head_dim, d_model] */
    const float *wk;         /**< [heads_kv*head_dim, d_model] */
    const float *wv;         /**< [heads_kv*head_dim, d_model] */
    const float *wo;         /**< [d_model, heads_q*head_dim] */
    const float *bq;         /**< [heads_q*head_dim] or NULL */
    const float *bk;         /**< [heads_kv*head_dim] or NULL */
    const float *bv;         /**< [heads_kv*head_dim] or NULL */
    const float *bo;         /**< [d_model] or NULL */
    attn_score score;        /**< how a query and a key make a score */
    const float *additive_w; /**< [heads_q, head_dim] for ADDITIVE */
    attn_posenc posenc;      /**< the positional encoding */
    const float *pos_table;  /**< LEARNED: [rows, d_model] */
    int pos_offset;          /**< position of the first query (>= 0;
                                  pos_offset + seq_q <= INT_MAX) */
    int pos_table_len;       /**< LEARNED: rows in pos_table, checked
                                  against the positions used; 0 = unknown */
    attn_dtype weight_dtype; /**< element type of every array above
                                  (ATTN_F32 = float, the default); read
                                  only when struct_size covers it (start
                                  from ATTN_MHA_DESC_INIT): struct_size 0
                                  reads the arrays as float */
    int pad0_;               /**< explicit padding; not read */
} attn_mha_desc;

/** Initializer of a layer descriptor with every member at its default:
 * `attn_mha_desc m = ATTN_MHA_DESC_INIT;` */
#define ATTN_MHA_DESC_INIT ATTN_SIZED_INIT_(attn_mha_desc)

/** As attn_sdpa_desc_init_sized, for attn_mha_desc. */
ATTN_API attn_status attn_mha_desc_init_sized(attn_mha_desc *m, size_t size);
/** Prepares *m: every member at its default, struct_size = sizeof *m. */
#define attn_mha_desc_init(m) ((void)attn_mha_desc_init_sized((m), sizeof *(m)))

/** Runs the layer: q = x_q Wq^T + bq, k = x_kv Wk^T + bk, v = x_kv Wv^T + bv,
 * attention per head (head h owns columns h*head_dim ..), heads concatenated,
 * y = concat Wo^T + bo.  x_q [batch, seq_q, d_model]; x_kv [batch, seq_kv,
 * d_model] or NULL for self-attention (then seq_kv must equal seq_q);
 * y [batch, seq_q, d_model].  Query positions are pos_offset + i; in
 * self-attention keys share them, in cross-attention keys count from 0.
 * mask may be NULL; its bias shapes use heads_q (ATTN_BIAS_BROADCAST, which
 * needs attn_sdpa_desc.bias_shape, is ATTN_ERR_INVALID_ARGUMENT here).
 * ROPE with an odd head_dim
 * leaves the last element of each head unrotated.  Non-finite values (see
 * attn_sdpa) spread through the projections: a NaN in token t of x_q makes
 * q of row t NaN in every head, so y row t is NaN (or bo, 0 without it,
 * when row t sees no key); a NaN in token t of the key input (x_kv, or x_q
 * in self-attention) makes k and v of key t NaN in every kv head, so every
 * y row that sees key t (causal: rows i >= t of that batch item) is NaN in
 * full, the output projection mixing all heads; other rows are unaffected.
 * An infinity in a token usually ends the same way.  A NaN in wq, wk, wv
 * or their biases reaches every row that sees a key, one in wo or bo every
 * row.  The layer does not work in place: y must not overlap x_q, x_kv,
 * a weight, a bias, additive_w, pos_table or the mask's arrays.  Errors as
 * attn_sdpa, plus ATTN_ERR_INVALID_ARGUMENT for a missing weight, a bad
 * posenc, a LEARNED table too short for the positions used or y
 * overlapping an input.  With m->weight_dtype F16 or BF16 each call first
 * converts every array of m to float in working memory held for the call
 * (4 bytes per element: 4 (dq + 2 dkv) d_model + 4 d_model dq bytes for
 * the weights, dq = heads_q head_dim, dkv = heads_kv head_dim, plus the
 * biases, additive_w and the pos_table rows used), then runs as with F32
 * arrays holding the converted values: a layer used more than once is
 * cheaper through attn_mha_create, which converts once.  An unknown
 * weight_dtype is ATTN_ERR_INVALID_ARGUMENT. */
ATTN_API attn_status attn_mha_forward(attn_context *ctx, const attn_mha_desc *m,
                                      int batch, int seq_q, int seq_kv,
                                      const float *x_q, const float *x_kv,
                                      const attn_mask_desc *mask, float *y);

/* ---- the persistent layer ------------------------------------------------ */

/** A multi-head layer whose weights the library holds (attn_mha_create):
 * copies of the descriptor's arrays on the host and, on an OpenCL
 * context, [Wq; Wk; Wv], Wo and the biases resident in each device's
 * memory, uploaded once.  Opaque. */
typedef struct attn_mha_layer attn_mha_layer;

/** A key/value cache owned by the caller, for a decoder that runs its
 * layer one step (a few tokens) at a time.  k and v are float arrays
 * [batch, heads_kv, capacity, head_dim] (the heads' layout of attention,
 * rows 0 .. len-1 of each (batch, head) filled); every batch item holds
 * the same len.  attn_mha_forward_layer appends the step's keys and
 * values (after the bias and RoPE) at rows len .. len+seq_q-1, attends
 * over rows 0 .. len+seq_q-1 and, on success only, adds seq_q to len.
 * Rows at and past len are the library's to write during a call, even
 * one that fails; rows before len are only read.  struct_size is the
 * caller's sizeof(attn_kv_cache) (ATTN_KV_CACHE_INIT); 0 means the first
 * layout. */
typedef struct attn_kv_cache {
    size_t struct_size; /**< sizeof(attn_kv_cache) as the caller built */
    float *k;           /**< [batch, heads_kv, capacity, head_dim] */
    float *v;           /**< [batch, heads_kv, capacity, head_dim] */
    int capacity;       /**< rows per (batch item, kv head), > 0 */
    int len;            /**< rows filled, 0 .. capacity; advanced by calls */
} attn_kv_cache;

/** Initializer of an empty cache (pointers and capacity still to be set):
 * `attn_kv_cache kv = ATTN_KV_CACHE_INIT;` */
#define ATTN_KV_CACHE_INIT ATTN_SIZED_INIT_(attn_kv_cache)

/** As attn_sdpa_desc_init_sized, for attn_kv_cache. */
ATTN_API attn_status attn_kv_cache_init_sized(attn_kv_cache *kv, size_t size);
/** Prepares *kv: empty, struct_size = sizeof *kv. */
#define attn_kv_cache_init(kv)                                                 \
    ((void)attn_kv_cache_init_sized((kv), sizeof *(kv)))

/** Creates a layer on ctx from m: checks m as attn_mha_forward does (a
 * LEARNED table needs pos_table_len > 0, the rows it copies), copies every
 * array m points at (the caller may free them on return) and, on an
 * OpenCL context, uploads the weights and biases to every device of ctx.
 * Arrays of weight_dtype F16 or BF16 are converted to float as they are
 * copied (exactly: every such value is a float), so the layer holds
 * float weights, 4 bytes per element, and its calls cost what an F32
 * layer's do.  scale multiplies the dot scores (0 = 1/sqrt(head_dim); finite;
 * the additive score takes none).  The layer belongs to ctx: destroy it before
 * ctx.  Errors: ATTN_ERR_INVALID_ARGUMENT (ctx, m or out NULL, an invalid
 * m, a non-finite scale), ATTN_ERR_OUT_OF_MEMORY,
 * ATTN_ERR_DEVICE (an upload failed with fallback off); *out is NULL on
 * error. */
ATTN_API attn_status attn_mha_create(attn_context *ctx, const attn_mha_desc *m,
                                     float scale, attn_mha_layer **out);

/** Destroys a layer and its device copies; NULL is a no-op. */
ATTN_API void attn_mha_destroy(attn_mha_layer *layer);

/** Runs layer (created on ctx) as attn_mha_forward runs its descriptor,
 * with the layer's scale, on activations of dtype: x_q [batch, seq_q,
 * d_model], x_kv [batch, seq_kv, d_model] or NULL, y [batch, seq_q,
 * d_model], each ATTN_F32 (float), ATTN_F16 (uint16_t halves) or
 * ATTN_BF16 (uint16_t bfloat16), converted to float on the way in and
 * rounded on the way out as attn_dtype says; the math is float's either
 * way (the weights, biases and KV cache stay float, whatever weight_dtype
 * the layer was created from).  The attention runs the
 * kernel variant attn_sdpa would run for the step's descriptor (options.path,
 * options.kernel).
 *
 * With cache NULL the call is attn_mha_forward's: query positions
 * pos_offset + i.  With a cache (self-attention: x_kv NULL, seq_kv ==
 * seq_q) the step's seq_q tokens sit at positions pos_offset + len + i:
 * their keys and values are projected, rotated (ROPE) and appended to the
 * cache, and the queries attend over all len + seq_q cached keys; the
 * mask's sizes are then seq_q x (len + seq_q), so causal (bottom-right)
 * lets token i see the past and the step's tokens up to itself.  A step
 * costs O(seq_q d_model^2 + seq_q (len + seq_q) head_dim heads_q): the
 * past is never projected again.  On an OpenCL context the cache's rows
 * are copied to the device every step (the cache is the caller's host
 * memory).  Non-finite values follow attn_mha_forward's rules, the cached
 * rows before len being keys like any other (a NaN there reaches every
 * later row that sees it).  Thread-safe: several threads may run one
 * layer at once, each with its own cache.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (ctx, layer, x_q or y NULL,
 * a layer of another context, an unknown dtype, a size <= 0, x_kv or
 * seq_kv != seq_q with a cache, a cache without k or v, len outside
 * [0, capacity], len + seq_q > capacity, a mask that does not fit,
 * y overlapping an input or the cache), and those of attn_mha_forward.
 * On error y and len are untouched. */
ATTN_API attn_status attn_mha_forward_layer(
    attn_context *ctx, attn_mha_layer *layer, int batch, int seq_q, int seq_kv,
    attn_dtype dtype, const void *x_q, const void *x_kv,
    const attn_mask_desc *mask, attn_kv_cache *cache, void *y);

/* ---- training the layer ------------------------------------------------- */

/** The activations a training forward keeps for attn_mha_backward
 * (attn_mha_forward_train): Q and K after projection, bias and RoPE, V,
 * the attention's output before Wo, in the heads' layout of attention,
 * and its lse.  Opaque; owned by the caller (attn_mha_saved_destroy). */
typedef struct attn_mha_saved attn_mha_saved;

/** The gradients of one attn_mha_backward call.  d_y is the input; every
 * other member is an output the caller asks for by setting it (NULL: not
 * computed).  Shapes are those of the tensor each is the gradient of:
 * d_x_q [batch, seq_q, d_model]; d_x_kv [batch, seq_kv, d_model]
 * (cross-attention only: in self-attention x_q's gradient is the sum of
 * both uses, in d_x_q); d_wq and d_bq as wq and bq, d_wk, d_wv, d_bk,
 * d_bv, d_wo and d_bo likewise (a bias's gradient may be asked for when
 * the descriptor has no bias: it is the gradient of a zero bias);
 * d_pos_table [pos_table_len, d_model] (LEARNED only; rows no position
 * used get 0).  With accumulate 0 the outputs are overwritten; with 1 the
 * gradients are added to what they hold (gradient accumulation over
 * micro-batches, or a weight shared by several calls).  struct_size is
 * the caller's sizeof(attn_mha_grad) (ATTN_MHA_GRAD_INIT); 0 means the
 * first layout. */
typedef struct attn_mha_grad {
    size_t struct_size;  /**< sizeof(attn_mha_grad) as the caller built */
    const float *d_y;    /**< dL/dy [batch, seq_q, d_model] (input) */
    float *d_x_q;        /**< out or NULL: dL/dx_q */
    float *d_x_kv;       /**< out or NULL: dL/dx_kv (cross-attention) */
    float *d_wq;         /**< out or NULL: dL/dWq */
    float *d_wk;         /**< out or NULL: dL/dWk */
    float *d_wv;         /**< out or NULL: dL/dWv */
    float *d_wo;         /**< out or NULL: dL/dWo */
    float *d_bq;         /**< out or NULL: dL/dbq */
    float *d_bk;         /**< out or NULL: dL/dbk */
    float *d_bv;         /**< out or NULL: dL/dbv */
    float *d_bo;         /**< out or NULL: dL/dbo */
    float *d_pos_table;  /**< out or NULL: dL/dpos_table (LEARNED) */
    float *d_additive_w; /**< out or NULL: dL/dadditive_w [heads_q,
                              head_dim] (the ADDITIVE score only) */
    int accumulate;      /**< 0: write the outputs; 1: add to them */
    int pad0_;           /**< explicit padding (the first layout's tail);
                              not read */
} attn_mha_grad;

/** Initializer of an attn_mha_grad asking for nothing yet:
 * `attn_mha_grad g = ATTN_MHA_GRAD_INIT;` */
#define ATTN_MHA_GRAD_INIT ATTN_SIZED_INIT_(attn_mha_grad)

/** Runs the layer as attn_mha_forward does (same arguments, same checks,
 * y the same function of the inputs) and keeps the activations the
 * backward pass needs in *saved.  *saved must be NULL or an object an
 * earlier call returned: one whose buffers are large enough is reused,
 * any other is destroyed and a new one allocated, so a training loop
 * passes the same pointer every step.  The saved memory is 4 (2 nq dq +
 * 2 nkv dkv + batch heads_q seq_q) bytes, with nq = batch seq_q,
 * nkv = batch seq_kv, dq = heads_q head_dim and dkv = heads_kv head_dim:
 * Q, K, V, the attention output and lse, in float.  The projections run
 * on the host (the worker pool); the attention runs as attn_sdpa would
 * for the layer's descriptor on ctx (an OpenCL device's kernel, ctx's
 * precision).  Errors as attn_mha_forward, plus
 * ATTN_ERR_INVALID_ARGUMENT (saved NULL) and ATTN_ERR_UNSUPPORTED (a
 * weight_dtype other than ATTN_F32: training keeps float weights).  On error y
 * is untouched and *saved still points where it did; an object being reused
 * then holds no activations (attn_mha_backward refuses it until a forward
 * succeeds). */
ATTN_API attn_status attn_mha_forward_train(attn_context *ctx,
                                            const attn_mha_desc *m, int batch,
                                            int seq_q, int seq_kv,
                                            const float *x_q, const float *x_kv,
                                            const attn_mask_desc *mask,
                                            float *y, attn_mha_saved **saved);

/** Frees what attn_mha_forward_train saved; NULL is a no-op. */
ATTN_API void attn_mha_saved_destroy(attn_mha_saved *saved);

/** The gradients of the layer (attn_mha_forward with the same m, sizes,
 * x_q, x_kv and mask) for the d_y of g: with respect to x_q and x_kv,
 * every weight and bias, and the LEARNED position table, through RoPE
 * (the rotation's transpose) and the sinusoidal encoding (no parameters:
 * its input gradient passes through).  saved is what
 * attn_mha_forward_train kept for these inputs, or NULL: the forward is
 * then run again first (its memory, as said there, is held for the
 * call).  Math (docs/DESIGN.md, "The layer's backward"): dbo = sum of
 * d_y's rows, dWo = d_y^T O, dO = d_y Wo; the attention's dq, dk, dv by
 * attn_sdpa_backward (GQA: dk, dv summed over the query heads of a kv
 * head; masks as the forward's; the mask's bias gets no gradient); RoPE's
 * transpose on dq and dk; then per projection dW = dP^T x', db = sum of
 * dP's rows, dx' = dP W, where x' is x plus the positional encoding;
 * d_pos_table[p] sums dx' over the batch items' rows at position p; with
 * the ADDITIVE score, d_additive_w is the attention's (attn_sdpa_grad).
 * The attention's gradients run as attn_sdpa_backward runs them on ctx
 * (on its OpenCL device with the backward's kernel variants, a forced one
 * included, falling back as options.allow_fallback says), the rest on the
 * host's worker pool (the native GEMM); math in float.
 * Working memory, held for the call: the saved activations when saved is
 * NULL, the gradients asked for (written out at the end), and at most
 * about 4 (3 (nq + nkv) d_model + 4 nq dq + 3 nkv dkv + d_model
 * max(dq, dkv, d_model)) bytes besides (the last term a transposed copy
 * of one weight), with nq, nkv, dq, dkv as in attn_mha_forward_train, and
 * the native GEMM's packing buffers; no seq_q x seq_kv matrix.  Errors:
 * those of attn_mha_forward, plus ATTN_ERR_UNSUPPORTED (a weight_dtype
 * other than ATTN_F32) and ATTN_ERR_INVALID_ARGUMENT (g or g->d_y NULL, a
 * saved of other sizes, d_pos_table without a LEARNED table of known
 * pos_table_len, d_x_kv in self-attention, an output overlapping an input
 * or another output, d_additive_w without the ADDITIVE score), and
 * attn_sdpa_backward's on an OpenCL context with fallback off
 * (ATTN_ERR_DEVICE, ATTN_ERR_BUILD_FAILED, ATTN_ERR_UNSUPPORTED when a
 * forced backward variant does not take the call).  Outputs are untouched
 * on error. */
ATTN_API attn_status attn_mha_backward(
    attn_context *ctx, const attn_mha_desc *m, int batch, int seq_q, int seq_kv,
    const float *x_q, const float *x_kv, const attn_mask_desc *mask,
    const attn_mha_saved *saved, const attn_mha_grad *g);

/** Writes the sinusoidal table [seq, d_model] for the positions offset to
 * offset + seq - 1: PE[p][2i] = sin(p / 10000^(2i/d_model)),
 * PE[p][2i+1] = cos(p / 10000^(2i/d_model)).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT (table NULL, seq or d_model <= 0, offset < 0,
 * offset + seq > INT_MAX), ATTN_ERR_OUT_OF_MEMORY (seq * d_model
 * overflows). */
ATTN_API attn_status attn_posenc_sinusoidal(int seq, int d_model, int offset,
                                            float *table);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ATTN_H */
