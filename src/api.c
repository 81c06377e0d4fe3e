/*
 * The public entry points: argument checks, then the context's backend.
 * Nothing here knows how the work is done.
 */
#include <stdio.h>
#include <string.h>

#include "attn_impl.h"
#include "cpu/cpu_impl.h"

static _Thread_local char thread_error[ATTN_MSG_MAX];

void attn_thread_set_error(const char *msg)
{
    snprintf(thread_error, sizeof thread_error, "%s", msg);
}

const char *attn_last_error(void)
{
    return thread_error;
}

const char *attn_status_string(attn_status s)
{
    switch (s) {
    case ATTN_OK:
        return "ATTN_OK";
    case ATTN_ERR_INVALID_ARGUMENT:
        return "ATTN_ERR_INVALID_ARGUMENT";
    case ATTN_ERR_OUT_OF_MEMORY:
        return "ATTN_ERR_OUT_OF_MEMORY";
    case ATTN_ERR_NO_DEVICE:
        return "ATTN_ERR_NO_DEVICE";
    case ATTN_ERR_BUILD_FAILED:
        return "ATTN_ERR_BUILD_FAILED";
    case ATTN_ERR_DEVICE:
        return "ATTN_ERR_DEVICE";
    case ATTN_ERR_UNSUPPORTED:
        return "ATTN_ERR_UNSUPPORTED";
    case ATTN_ERR_IO:
        return "ATTN_ERR_IO";
    }
    return "unknown status";
}

const char *attn_version(void)
{
    return ATTN_VERSION_STRING;
}

attn_status attn_devices(attn_device_info *out, size_t capacity, size_t *count)
{
    if (!count || (!out && capacity > 0)) {
        attn_thread_set_error(!count ? "attn_devices: count is NULL"
                                     : "attn_devices: out is NULL but "
                                       "capacity > 0");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
#ifdef ATTN_HAVE_OPENCL
    {
        attn_err err = {{0}};
        attn_status s = attn_opencl_devices(out, capacity, count, &err);
        if (s)
            attn_thread_set_error(err.msg);
        return s;
    }
#else
    /* Built without the OpenCL backend: there are no OpenCL devices. */
    *count = 0;
    return ATTN_OK;
#endif
}

/* Reports a failed call: on the context when there is one, else on the
 * thread only. */
static attn_status report(attn_context *ctx, const char *fn, attn_status s,
                          const attn_err *err)
{
    char msg[ATTN_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "%s: %s", fn, err->msg);
    msg[ATTN_MSG_MAX - 1] = '\0';
    attn_context_set_error(ctx, s, msg);
    return s;
}

/* Statuses after which the native backend may redo a device's work. */
static int recoverable(attn_status s)
{
    return s == ATTN_ERR_DEVICE || s == ATTN_ERR_BUILD_FAILED ||
           s == ATTN_ERR_OUT_OF_MEMORY || s == ATTN_ERR_UNSUPPORTED;
}

/* After a device failure: with fallback allowed, says so (log and
 * last_error) and returns 1 so that the caller reruns natively. */
static int fall_back(attn_context *ctx, const char *fn, attn_status s,
                     attn_err *err)
{
    char msg[ATTN_MSG_MAX];
    if (ctx->backend == ctx->native || !ctx->allow_fallback || !recoverable(s))
        return 0;
    snprintf(msg, sizeof msg, "%s fell back to the native backend: %.400s", fn,
             err->msg);
    attn_log(&ctx->log, ATTN_LOG_WARN, "%s", msg);
    pthread_mutex_lock(&ctx->err_lock);
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
    pthread_mutex_unlock(&ctx->err_lock);
    err->msg[0] = '\0';
    return 1;
}

attn_status attn_sdpa(attn_context *ctx, const attn_sdpa_desc *d, const void *q,
                      const void *k, const void *v, void *o, float *lse)
{
    attn_err err = {{0}};
    attn_status s;
    if (!ctx) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "ctx is NULL");
        return report(NULL, "attn_sdpa", ATTN_ERR_INVALID_ARGUMENT, &err);
    }
    s = attn_validate_sdpa(d, q, k, v, o, lse, &err);
    if (s == ATTN_OK)
        s = ctx->backend->ops->sdpa(ctx->backend, d, q, k, v, o, lse, &err);
    if (s != ATTN_OK && fall_back(ctx, "attn_sdpa", s, &err))
        s = ctx->native->ops->sdpa(ctx->native, d, q, k, v, o, lse, &err);
    return s == ATTN_OK ? s : report(ctx, "attn_sdpa", s, &err);
}

attn_status attn_mha_forward(attn_context *ctx, const attn_mha_desc *m,
                             int batch, int seq_q, int seq_kv, const float *x_q,
                             const float *x_kv, const attn_mask_desc *mask,
                             float *y)
{
    static const attn_mask_desc no_mask;
    attn_mha_call c;
    attn_err err = {{0}};
    attn_status s;
    if (!ctx) {
        attn_fail(&err, ATTN_ERR_INVALID_ARGUMENT, "ctx is NULL");
        return report(NULL, "attn_mha_forward", ATTN_ERR_INVALID_ARGUMENT,
                      &err);
    }
    c.m = m;
    c.batch = batch;
    c.seq_q = seq_q;
    c.seq_kv = seq_kv;
    c.x_q = x_q;
    c.x_kv = x_kv;
    c.mask = mask ? mask : &no_mask;
    c.y = y;
    s = attn_validate_mha(&c, &err);
    if (s == ATTN_OK && ctx->backend->ops->mha) {
        s = ctx->backend->ops->mha(ctx->backend, &c, &err);
        if (s != ATTN_OK && fall_back(ctx, "attn_mha_forward", s, &err))
            s = ctx->native->ops->mha(ctx->native, &c, &err);
    } else if (s == ATTN_OK) {
        /* A backend without a layer of its own: the native one runs it. */
        s = ctx->native->ops->mha(ctx->native, &c, &err);
    }
    return s == ATTN_OK ? s : report(ctx, "attn_mha_forward", s, &err);
}

attn_status attn_posenc_sinusoidal(int seq, int d_model, int offset,
                                   float *table)
{
    attn_err err = {{0}};
    size_t n;
    attn_status s = ATTN_ERR_INVALID_ARGUMENT;
    if (!table)
        attn_fail(&err, s, "table is NULL");
    else if (seq <= 0 || d_model <= 0)
        attn_fail(&err, s, "seq and d_model must be positive (got %d, %d)", seq,
                  d_model);
    else if (offset < 0 || offset > INT32_MAX - seq)
        attn_fail(&err, s, "offset must be in [0, INT_MAX - seq] (got %d)",
                  offset);
    else if (!attn_mul_size(&n, (size_t)seq, (size_t)d_model) ||
             n > PTRDIFF_MAX / sizeof(float))
        s = attn_fail(&err, ATTN_ERR_OUT_OF_MEMORY,
                      "seq * d_model overflows the address space");
    else {
        attn_cpu_posenc_sinusoidal_generic(seq, d_model, offset, table);
        return ATTN_OK;
    }
    return report(NULL, "attn_posenc_sinusoidal", s, &err);
}
