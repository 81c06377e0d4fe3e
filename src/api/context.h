/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The context of the API layer: the options resolved, the backends, the
 * plans, the last error.  Not installed.
 */
#ifndef ATTN_API_CONTEXT_H
#define ATTN_API_CONTEXT_H

#include "plan/plan.h"

struct attn_context {
    attn_logger log;
    int allow_fallback;
    int threads;
    attn_path path;
    char kernel[32];          /* a kernel variant forced by name, or "" */
    int kernel_from_env;      /* ... by ATTN_KERNEL (only a suggestion) */
    attn_precision precision; /* asked: options.precision or ATTN_PRECISION */
    attn_backend *backend;    /* runs the work */
    attn_backend *native;     /* the fallback; == backend on the native path */
    attn_runner run;          /* backend, native and the rules, for sched */
    attn_plan_cache *plans;
    /* last_error is written by any thread; err_lock guards it. */
    pthread_mutex_t err_lock;
    char last_error[ATTN_MSG_MAX];
};

/* A context on the native backend from options checked on the way (NULL =
 * defaults); *resolved receives the options as the library's layout (the
 * members the caller's struct_size covers, the others at their defaults)
 * for the rest of the set-up.  The caller may then set ctx->backend and
 * call attn_context_ready. */
attn_status attn_context_new(const attn_options *o, attn_options *resolved,
                             attn_context **out, attn_err *err);
/* Fills ctx->run from the backends and checks that the forced kernel
 * exists on the backend that runs the work.  Errors:
 * ATTN_ERR_INVALID_ARGUMENT. */
attn_status attn_context_ready(attn_context *ctx, attn_err *err);
/* Records msg as the context's and the thread's last error and logs it. */
void attn_context_set_error(attn_context *ctx, attn_status s, const char *msg);
/* The worker threads of a context whose options.threads is 0:
 * ATTN_NUM_THREADS, else the online CPUs (*online, when not NULL); minus
 * the online CPUs when ATTN_NUM_THREADS is set but not a number in [1,
 * ATTN_MAX_THREADS] (the context warns and takes them). */
int attn_threads_default(int *online);
/* Records msg as the context's last error only (a note such as "fell
 * back"), logged at WARN by whoever made it. */
void attn_context_note(attn_context *ctx, const char *msg);

/* ---- the steps every entry point shares (steps.c) ---- */

/* Reports a failed call of fn: on the context when there is one, else on
 * the thread only.  Returns s. */
attn_status attn_api_report(attn_context *ctx, const char *fn, attn_status s,
                            const attn_err *err);
/* 1 (with a sentence in err) when the calling thread runs a log callback,
 * from which fn must not be called. */
int attn_api_from_callback(const char *fn, attn_err *err);
/* attn_sdpa on a descriptor read by its size (abi.c), without packed
 * sequences: checks, plan, run.  Errors are left in err. */
attn_status attn_sdpa_run(attn_context *ctx, const attn_sdpa_desc *d,
                          const void *q, const void *k, const void *v, void *o,
                          float *lse, attn_err *err);
/* attn_sdpa of packed variable-length sequences (cu_seqlens_q,
 * cu_seqlens_kv; attn.h): checks the whole call, then one attn_sdpa_run
 * per sequence (varlen.c). */
attn_status attn_sdpa_varlen(attn_context *ctx, const attn_sdpa_desc *d,
                             const void *q, const void *k, const void *v,
                             void *o, float *lse, attn_err *err);
/* The descriptor of sequence b of a packed call as attn_sdpa runs it
 * (batch 1); b = ATTN_VARLEN_LONGEST: the longest lengths (for the plan
 * queries), ATTN_VARLEN_WHOLE: all rows as one sequence (the checks of
 * the tensors).  d's packed arrays are checked. */
#define ATTN_VARLEN_LONGEST (-1)
#define ATTN_VARLEN_WHOLE   (-2)
attn_status attn_varlen_item(const attn_sdpa_desc *d, int b,
                             attn_sdpa_desc *item, attn_err *err);
/* Validates layer call c, plans its attention step and runs it (steps.c);
 * failures reported under fn. */
attn_status attn_api_mha(attn_context *ctx, const char *fn,
                         const attn_mha_call *c);
/* Copies every array of layer descriptor m (valid) into one float
 * allocation, *host (the caller frees it), converting from m's
 * weight_dtype, and sets *out to m pointing at the copies, weight_dtype
 * ATTN_F32; pos_rows rows of a LEARNED table are copied (layer.c).
 * Errors: ATTN_ERR_OUT_OF_MEMORY (*host is then NULL). */
attn_status attn_mha_weights_float(const attn_mha_desc *m, size_t pos_rows,
                                   attn_mha_desc *out, float **host,
                                   attn_err *err);

#endif /* ATTN_API_CONTEXT_H */
