/*
 * Private declarations shared by the API layer and the backends: the backend
 * interface, the context, error reporting and logging.  Not installed.
 */
#ifndef ATTN_IMPL_H
#define ATTN_IMPL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#include "attn/attn.h"

#define ATTN_MSG_MAX 512

/* A sentence about a failure, filled by whoever detects it. */
typedef struct attn_err {
    char msg[ATTN_MSG_MAX];
} attn_err;

#if defined(__GNUC__) || defined(__clang__)
#define ATTN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ATTN_PRINTF(f, a)
#endif

/* Writes a formatted message into e (when e is not NULL) and returns s, so
 * that a check reads `return attn_fail(err, ATTN_ERR_..., "...", ...)`. */
attn_status attn_fail(attn_err *e, attn_status s, const char *fmt, ...)
    ATTN_PRINTF(3, 4);

/* ---- logging -------------------------------------------------------------
 * A logger is a level and a sink: the caller's callback, or stderr when
 * ATTN_LOG asked for messages and no callback was given. */
typedef struct attn_logger {
    int level; /* messages at or below this attn_log_level are delivered */
    attn_log_fn fn;
    void *user;
} attn_logger;

/* Resolves the options' level and callback against ATTN_LOG.  Returns
 * ATTN_ERR_INVALID_ARGUMENT for an unknown ATTN_LOG value or level. */
attn_status attn_logger_init(attn_logger *lg, const attn_options *o,
                             attn_err *err);
void attn_log(const attn_logger *lg, int level, const char *fmt, ...)
    ATTN_PRINTF(3, 4);

/* ---- backend interface ---------------------------------------------------
 * One struct of function pointers per backend (native, OpenCL).  The API
 * validates every argument before calling a hook, so hooks see only valid
 * descriptors.  Every hook may be called from several threads at once; a
 * backend guards its own shared state.  On failure a hook writes a sentence
 * into err and leaves the outputs untouched. */
typedef struct attn_mha_call {
    const attn_mha_desc *m;
    int batch, seq_q, seq_kv;
    const float *x_q, *x_kv;    /* x_kv NULL: self-attention */
    const attn_mask_desc *mask; /* never NULL (a zeroed mask when none) */
    float *y;
} attn_mha_call;

typedef struct attn_backend attn_backend;
typedef struct attn_backend_ops {
    const char *name;
    void (*destroy)(attn_backend *b);
    void (*device_info)(const attn_backend *b, attn_device_info *out);
    attn_status (*sdpa)(attn_backend *b, const attn_sdpa_desc *d, const void *q,
                        const void *k, const void *v, void *o, float *lse,
                        attn_err *err);
    attn_status (*mha)(attn_backend *b, const attn_mha_call *c, attn_err *err);
} attn_backend_ops;

struct attn_backend {
    const attn_backend_ops *ops;
    void *impl;
};

/* The native backend: threads >= 1.  Its kernels are those of the
 * instruction set ATTN_CPU_ISA and the CPU select (src/cpu/isa.c); lg
 * receives a warning about a bad ATTN_CPU_ISA and the choice at info
 * level. */
attn_status attn_backend_native_create(int threads, const attn_logger *lg,
                                       attn_backend **out, attn_err *err);
/* Whether the native backend, with the kernels a context created now would
 * get, outruns an OpenCL CPU runtime on the same cores: 1 with the avx2 or
 * avx512 kernels, 0 with the generic ones, which PoCL's fused path
 * outruns (figures in src/cpu/isa.c).  "auto" prefers native to an OpenCL
 * CPU device only when this holds (and the device's profile allows it). */
int attn_native_beats_opencl_cpu(void);
/* The instruction set whose kernels a native context created now would run
 * ("generic", "avx2" or "avx512"; ATTN_CPU_ISA and the CPU decide), for
 * tools such as attn-probe.  Static storage. */
const char *attn_native_isa_name(void);

/* ---- OpenCL backend entry points free of OpenCL types (backend_cl.c) ----
 * Present when the library is built with ATTN_HAVE_OPENCL. */

/* Every OpenCL device (attn_devices). */
attn_status attn_opencl_devices(attn_device_info *out, size_t cap,
                                size_t *count, attn_err *err);
/* Resolves a device spec: *out is an OpenCL backend on every selected
 * device (options.queues queues each), or NULL when the spec selects the
 * native backend; why receives the reason of the choice.
 * Errors: ATTN_ERR_NO_DEVICE (nothing matches; err lists the devices),
 * ATTN_ERR_INVALID_ARGUMENT, and device errors creating the runtime. */
attn_status attn_opencl_open(const char *spec, const attn_options *o,
                             const attn_logger *log, attn_backend **out,
                             char *why, size_t why_cap, attn_err *err);

/* ---- context ------------------------------------------------------------- */
struct attn_context {
    attn_logger log;
    int allow_fallback;
    int threads;
    attn_path path;
    attn_backend *backend; /* runs the work */
    attn_backend *native;  /* the fallback; == backend on the native path */
    /* last_error is written by any thread; err_lock guards it. */
    pthread_mutex_t err_lock;
    char last_error[ATTN_MSG_MAX];
};

/* A context on the native backend from validated-on-the-way options (NULL
 * = defaults); the caller may then replace ctx->backend. */
attn_status attn_context_new(const attn_options *o, attn_context **out,
                             attn_err *err);
/* Records msg as the context's and the thread's last error and logs it. */
void attn_context_set_error(attn_context *ctx, attn_status s, const char *msg);
/* Sets the calling thread's last error (attn_last_error). */
void attn_thread_set_error(const char *msg);

/* ---- validation (validate.c) ---------------------------------------------
 * Each returns ATTN_OK or an error with a sentence in err. */

/* Byte sizes of the tensors of a valid descriptor. */
typedef struct attn_sdpa_bytes {
    size_t q, k, v, o, lse;
} attn_sdpa_bytes;

/* Everything about d but the tensor pointers. */
attn_status attn_validate_sdpa_desc(const attn_sdpa_desc *d, attn_sdpa_bytes *b,
                                    attn_err *err);
/* d plus host pointers: non-NULL q, k, v, o; o and lse apart from the
 * inputs. */
attn_status attn_validate_sdpa(const attn_sdpa_desc *d, const void *q,
                               const void *k, const void *v, const void *o,
                               const float *lse, attn_err *err);
attn_status attn_validate_mask(const attn_mask_desc *m, int batch, int heads_q,
                               int seq_q, int seq_kv, attn_err *err);
attn_status attn_validate_mha(const attn_mha_call *c, attn_err *err);

/* Overflow-checked size_t products; return 0 on overflow. */
int attn_mul_size(size_t *r, size_t a, size_t b);
int attn_mul_sizes(size_t *r, int n, const size_t *f);

#endif /* ATTN_IMPL_H */
