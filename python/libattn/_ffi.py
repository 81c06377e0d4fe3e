# SPDX-License-Identifier: Apache-2.0
"""The C declarations of attn.h that the package calls, and the library.

cffi in ABI mode: the declarations below are a copy of include/attn/attn.h's
types and functions (kept in the same order; every struct is sized by its
struct_size member, so the library reads only what these layouts hold), and
the shared library is opened from the package folder, where the build puts
it, or from LIBATTN_LIBRARY when that names a file.
"""

import os

import cffi

CDEF = r"""
typedef enum attn_status {
    ATTN_OK = 0,
    ATTN_ERR_INVALID_ARGUMENT,
    ATTN_ERR_OUT_OF_MEMORY,
    ATTN_ERR_NO_DEVICE,
    ATTN_ERR_BUILD_FAILED,
    ATTN_ERR_DEVICE,
    ATTN_ERR_UNSUPPORTED,
    ATTN_ERR_IO
} attn_status;
const char *attn_status_string(attn_status s);
const char *attn_version(void);
const char *attn_last_error(void);

typedef enum attn_device_kind {
    ATTN_DEVICE_GPU,
    ATTN_DEVICE_IGPU,
    ATTN_DEVICE_FPGA,
    ATTN_DEVICE_CPU_OPENCL,
    ATTN_DEVICE_OTHER,
    ATTN_DEVICE_NATIVE
} attn_device_kind;

typedef struct attn_device_info {
    size_t struct_size;
    char name[256];
    char vendor[256];
    char platform[256];
    char driver_version[128];
    char opencl_c_version[64];
    attn_device_kind kind;
    int platform_index;
    int device_index;
    unsigned compute_units;
    unsigned max_clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    size_t max_work_group_size;
    int fp16;
    int fp64;
    int unified_memory;
    int usable;
    char reason[256];
    double rank;
    char opencl_version[128];
} attn_device_info;
attn_status attn_devices(attn_device_info *out, size_t capacity,
                         size_t *count);

typedef enum attn_path {
    ATTN_PATH_AUTO = 0,
    ATTN_PATH_FUSED,
    ATTN_PATH_UNFUSED
} attn_path;
typedef enum attn_precision {
    ATTN_PRECISION_EXACT = 0,
    ATTN_PRECISION_TF32,
    ATTN_PRECISION_3XTF32,
    ATTN_PRECISION_BF16
} attn_precision;
const char *attn_precision_name(attn_precision p);
typedef void (*attn_log_fn)(int level, const char *msg, void *user);
typedef struct attn_options {
    size_t struct_size;
    const char *device;
    int queues;
    int threads;
    const char *cache_dir;
    int allow_fallback;
    attn_path path;
    attn_log_fn log;
    void *log_user;
    int log_level;
    const char *kernel;
    attn_precision precision;
} attn_options;
attn_status attn_options_init_sized(attn_options *o, size_t size);

typedef struct attn_context attn_context;
attn_status attn_context_create(const attn_options *o, attn_context **out);
void attn_context_destroy(attn_context *ctx);
attn_status attn_context_device(const attn_context *ctx,
                                attn_device_info *out);
const char *attn_context_last_error(const attn_context *ctx);

typedef enum attn_score {
    ATTN_SCORE_DOT = 0,
    ATTN_SCORE_ADDITIVE
} attn_score;
typedef enum attn_dtype {
    ATTN_F32 = 0,
    ATTN_F16,
    ATTN_BF16
} attn_dtype;
typedef enum attn_bias_kind {
    ATTN_BIAS_NONE = 0,
    ATTN_BIAS_SHARED,
    ATTN_BIAS_PER_HEAD,
    ATTN_BIAS_FULL,
    ATTN_BIAS_KEY,
    ATTN_BIAS_BROADCAST
} attn_bias_kind;
typedef enum attn_causal_align {
    ATTN_CAUSAL_BOTTOM_RIGHT = 0,
    ATTN_CAUSAL_TOP_LEFT
} attn_causal_align;
typedef struct attn_mask_desc {
    size_t struct_size;
    int causal;
    int window;
    const int32_t *kv_len;
    const float *bias;
    attn_bias_kind bias_kind;
} attn_mask_desc;
typedef struct attn_sdpa_desc {
    size_t struct_size;
    int batch;
    int heads_q;
    int heads_kv;
    int seq_q;
    int seq_kv;
    int head_dim;
    int head_dim_v;
    float scale;
    attn_score score;
    const float *additive_w;
    attn_mask_desc mask;
    attn_dtype dtype;
    int pad0_;
    attn_causal_align causal_align;
    int bias_shape[3];
    const uint8_t *keep;
    int keep_shape[3];
    const int32_t *q_start;
    const int32_t *kv_start;
    int64_t q_strides[3];
    int64_t k_strides[3];
    int64_t v_strides[3];
    int64_t o_strides[3];
    const int32_t *cu_seqlens_q;
    const int32_t *cu_seqlens_kv;
    int64_t causal_offset;
} attn_sdpa_desc;
attn_status attn_sdpa(attn_context *ctx, const attn_sdpa_desc *d,
                      const void *q, const void *k, const void *v,
                      void *o, float *lse);
typedef struct attn_sdpa_grad {
    size_t struct_size;
    const void *q;
    const void *k;
    const void *v;
    const void *o;
    const float *lse;
    const void *d_o;
    void *dq;
    void *dk;
    void *dv;
    float *dbias;
    float *d_additive_w;
} attn_sdpa_grad;
attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa_desc *d,
                               const attn_sdpa_grad *g);
const char *attn_kernel_name(int index);
attn_status attn_sdpa_kernel(attn_context *ctx, const attn_sdpa_desc *d,
                             char *name, size_t cap);
attn_status attn_sdpa_precision(attn_context *ctx, const attn_sdpa_desc *d,
                                attn_precision *asked, attn_precision *runs);

typedef enum attn_posenc {
    ATTN_POSENC_NONE = 0,
    ATTN_POSENC_SINUSOIDAL,
    ATTN_POSENC_LEARNED,
    ATTN_POSENC_ROPE
} attn_posenc;
typedef struct attn_mha_desc {
    size_t struct_size;
    int d_model;
    int heads_q;
    int heads_kv;
    int head_dim;
    const float *wq;
    const float *wk;
    const float *wv;
    const float *wo;
    const float *bq;
    const float *bk;
    const float *bv;
    const float *bo;
    attn_score score;
    const float *additive_w;
    attn_posenc posenc;
    const float *pos_table;
    int pos_offset;
    int pos_table_len;
    attn_dtype weight_dtype;
    int pad0_;
} attn_mha_desc;
attn_status attn_mha_forward(attn_context *ctx, const attn_mha_desc *m,
                             int batch, int seq_q, int seq_kv,
                             const float *x_q, const float *x_kv,
                             const attn_mask_desc *mask, float *y);
"""

ffi = cffi.FFI()
ffi.cdef(CDEF)


def _library_path():
    env = os.environ.get("LIBATTN_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("libattn.so.1", "libattn.so", "libattn.dylib", "attn.dll"):
        path = os.path.join(here, name)
        if os.path.exists(path):
            return path
    raise ImportError(
        "libattn: the shared library is not in the package folder " + here +
        " (build the package with `pip install ./python`, or set "
        "LIBATTN_LIBRARY to the path of libattn.so)")


lib = ffi.dlopen(_library_path())
