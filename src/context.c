/*
 * Context lifetime: options and environment resolved into a logger, a thread
 * count, the native backend (always there, as the fallback) and the backend
 * the device spec selects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "attn_impl.h"

#define ATTN_MAX_THREADS 1024

void attn_options_init(attn_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->device = "auto";
    o->allow_fallback = 1;
}

static attn_status parse_threads(const attn_options *o, int *threads,
                                 attn_err *err)
{
    const char *env = getenv("ATTN_NUM_THREADS");
    long n;
    if (o->threads < 0 || o->threads > ATTN_MAX_THREADS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.threads must be in [0, %d] (got %d)",
                         ATTN_MAX_THREADS, o->threads);
    if (o->threads > 0) {
        *threads = o->threads;
        return ATTN_OK;
    }
    if (env && *env) {
        char *end;
        errno = 0;
        n = strtol(env, &end, 10);
        if (errno || *end || n < 1 || n > ATTN_MAX_THREADS)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "ATTN_NUM_THREADS=\"%.32s\" is not a number in "
                             "[1, %d]",
                             env, ATTN_MAX_THREADS);
        *threads = (int)n;
        return ATTN_OK;
    }
    n = sysconf(_SC_NPROCESSORS_ONLN);
    *threads = n < 1 ? 1 : n > ATTN_MAX_THREADS ? ATTN_MAX_THREADS : (int)n;
    return ATTN_OK;
}

/* Resolves the device spec into ctx->backend (NULL: native).  A device that
 * cannot be opened falls back to native when fallback is allowed. */
static attn_status select_backend(attn_context *ctx, const char *spec,
                                  const attn_options *o, attn_err *err)
{
#ifdef ATTN_HAVE_OPENCL
    char why[256] = "";
    attn_status s = attn_opencl_open(spec, o, &ctx->log, &ctx->backend, why,
                                     sizeof why, err);
    if (s == ATTN_ERR_DEVICE || s == ATTN_ERR_OUT_OF_MEMORY) {
        if (!o->allow_fallback)
            return s;
        attn_log(&ctx->log, ATTN_LOG_WARN,
                 "%s; the native backend runs this context", err->msg);
        snprintf(ctx->last_error, sizeof ctx->last_error,
                 "fell back to the native backend: %.400s", err->msg);
        return ATTN_OK;
    }
    if (s == ATTN_OK)
        attn_log(&ctx->log, ATTN_LOG_INFO, "device \"%s\": %s", spec, why);
    return s;
#else
    (void)o;
    if (!strcasecmp(spec, "auto") || !strcasecmp(spec, "native"))
        return ATTN_OK;
    (void)ctx;
    return attn_fail(err, ATTN_ERR_NO_DEVICE,
                     "device \"%.64s\" matches no device; this build has "
                     "only the native CPU backend (use \"auto\" or "
                     "\"native\")",
                     spec);
#endif
}

static attn_status check_options(const attn_options *o, attn_err *err)
{
    if (o->queues < 0)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.queues must be >= 0 (got %d)", o->queues);
    if ((unsigned)o->path > ATTN_PATH_UNFUSED)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.path %d is not an attn_path", (int)o->path);
    if (o->allow_fallback != 0 && o->allow_fallback != 1)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.allow_fallback must be 0 or 1 (got %d)",
                         o->allow_fallback);
    return ATTN_OK;
}

attn_status attn_context_new(const attn_options *opt, attn_context **out,
                             attn_err *err)
{
    attn_options defaults;
    attn_context *ctx;
    attn_status s;

    if (!opt) {
        attn_options_init(&defaults);
        opt = &defaults;
    }
    if (!(ctx = calloc(1, sizeof *ctx)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the context");
    if ((s = check_options(opt, err)) ||
        (s = attn_logger_init(&ctx->log, opt, err)) ||
        (s = parse_threads(opt, &ctx->threads, err)))
        goto fail_ctx;
    ctx->allow_fallback = opt->allow_fallback;
    ctx->path = opt->path;
    if (pthread_mutex_init(&ctx->err_lock, NULL) != 0) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot create the context lock");
        goto fail_ctx;
    }
    s = attn_backend_native_create(ctx->threads, &ctx->log, &ctx->native, err);
    if (s)
        goto fail_lock;
    ctx->backend = ctx->native;
    *out = ctx;
    return ATTN_OK;

fail_lock:
    pthread_mutex_destroy(&ctx->err_lock);
fail_ctx:
    attn_log(&ctx->log, ATTN_LOG_ERROR, "%s", err->msg);
    free(ctx);
    return s;
}

attn_status attn_context_create(const attn_options *opt, attn_context **out)
{
    attn_options defaults;
    attn_context *ctx = NULL;
    attn_err err = {{0}};
    attn_status s;
    const char *spec;

    if (!out) {
        attn_thread_set_error("attn_context_create: out is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if (!opt) {
        attn_options_init(&defaults);
        opt = &defaults;
    }
    if ((s = attn_context_new(opt, &ctx, &err)))
        goto fail;
    spec = getenv("ATTN_DEVICE");
    if (!spec || !*spec)
        spec = opt->device && *opt->device ? opt->device : "auto";
    ctx->backend = NULL;
    s = select_backend(ctx, spec, opt, &err);
    if (!ctx->backend)
        ctx->backend = ctx->native;
    if (s) {
        attn_log(&ctx->log, ATTN_LOG_ERROR, "attn_context_create: %s", err.msg);
        attn_context_destroy(ctx);
        goto fail;
    }
    attn_log(&ctx->log, ATTN_LOG_INFO,
             "context on the %s backend with %d threads (device \"%s\")",
             ctx->backend->ops->name, ctx->threads, spec);
    *out = ctx;
    return ATTN_OK;
fail:
    attn_thread_set_error(err.msg);
    return s;
}

void attn_context_destroy(attn_context *ctx)
{
    if (!ctx)
        return;
    if (ctx->backend != ctx->native)
        ctx->backend->ops->destroy(ctx->backend);
    ctx->native->ops->destroy(ctx->native);
    pthread_mutex_destroy(&ctx->err_lock);
    free(ctx);
}

attn_status attn_context_device(const attn_context *ctx, attn_device_info *out)
{
    if (!ctx || !out) {
        attn_thread_set_error(!ctx ? "attn_context_device: ctx is NULL"
                                   : "attn_context_device: out is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    memset(out, 0, sizeof *out);
    ctx->backend->ops->device_info(ctx->backend, out);
    return ATTN_OK;
}

void attn_context_set_error(attn_context *ctx, attn_status s, const char *msg)
{
    attn_thread_set_error(msg);
    if (!ctx)
        return;
    pthread_mutex_lock(&ctx->err_lock);
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
    pthread_mutex_unlock(&ctx->err_lock);
    attn_log(&ctx->log, ATTN_LOG_ERROR, "%s (%s)", msg, attn_status_string(s));
}

const char *attn_context_last_error(const attn_context *ctx)
{
    static _Thread_local char copy[ATTN_MSG_MAX];
    if (!ctx)
        return "invalid context";
    /* The lock is logically const: reading never changes the context. */
    pthread_mutex_lock((pthread_mutex_t *)&ctx->err_lock);
    memcpy(copy, ctx->last_error, sizeof copy);
    pthread_mutex_unlock((pthread_mutex_t *)&ctx->err_lock);
    return copy;
}
