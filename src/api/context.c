/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Context lifetime: options and environment resolved into a logger, a thread
 * count, the native backend (always there, as the fallback), the backend
 * the device spec selects, the forced kernel, the precision asked and the
 * plan cache.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/abi.h"
#include "api/context.h"
#include "cpu/backend_native.h"
#include "opencl/opencl_backend.h"

#define ATTN_MAX_THREADS 1024

/* A warning about an environment variable: logged, and kept as the
 * context's last error until something else happens. */
static void env_warning(attn_context *ctx, const char *fmt, ...)
    ATTN_PRINTF(2, 3);
static void env_warning(attn_context *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
    va_end(ap);
    attn_log(&ctx->log, ATTN_LOG_WARN, "%s", ctx->last_error);
}

int attn_threads_default(int *online_out)
{
    const char *env = getenv("ATTN_NUM_THREADS");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int online = n < 1 ? 1 : n > ATTN_MAX_THREADS ? ATTN_MAX_THREADS : (int)n;
    if (online_out)
        *online_out = online;
    if (env && *env) {
        char *end;
        errno = 0;
        n = strtol(env, &end, 10);
        if (errno || end == env || *end || n < 1 || n > ATTN_MAX_THREADS)
            return -online;
        return (int)n;
    }
    return online;
}

/* options.threads, else ATTN_NUM_THREADS, else the online CPUs.  A bad
 * options.threads is an error; a bad ATTN_NUM_THREADS a warning. */
static attn_status parse_threads(attn_context *ctx, const attn_options *o,
                                 attn_err *err)
{
    int online, t;
    if (o->threads < 0 || o->threads > ATTN_MAX_THREADS)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.threads must be in [0, %d] (got %d)",
                         ATTN_MAX_THREADS, o->threads);
    if (o->threads > 0) {
        ctx->threads = o->threads;
        return ATTN_OK;
    }
    t = attn_threads_default(&online);
    ctx->threads = t < 0 ? -t : t;
    if (t < 0)
        env_warning(ctx,
                    "ATTN_NUM_THREADS=\"%.32s\" is not a number in [1, "
                    "%d]; ignored: %d threads (the online CPUs)",
                    getenv("ATTN_NUM_THREADS"), ATTN_MAX_THREADS, online);
    return ATTN_OK;
}

#ifndef ATTN_HAVE_OPENCL
/* A device spec in a build without OpenCL: a comma list whose items
 * (spaces around them ignored, empty ones skipped) are "auto" or
 * "native".  ATTN_ERR_INVALID_ARGUMENT for what is no spec at all, as the
 * OpenCL build says it ("native" with other items, no item), else
 * ATTN_ERR_NO_DEVICE for an item that names a device. */
static attn_status native_spec(const char *spec, attn_err *err)
{
    size_t items = 0, natives = 0, devices = 0;
    for (const char *p = spec; p;) {
        const char *b = p, *e = strchr(p, ',');
        p = e ? e + 1 : NULL;
        if (!e)
            e = b + strlen(b);
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (b == e)
            continue;
        items++;
        if ((size_t)(e - b) == 6 && !strncasecmp(b, "native", 6))
            natives++;
        else if ((size_t)(e - b) != 4 || strncasecmp(b, "auto", 4))
            devices++;
    }
    if (natives > 0 && natives < items)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device \"%.64s\": \"native\" cannot be combined "
                         "with OpenCL devices",
                         spec);
    if (items == 0 && spec[0])
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "device \"%.64s\" is an empty list: it names no "
                         "device (use \"auto\", \"native\" or a device)",
                         spec);
    if (devices > 0)
        return attn_fail(err, ATTN_ERR_NO_DEVICE,
                         "device \"%.64s\" matches no device; this build has "
                         "only the native CPU backend (use \"auto\" or "
                         "\"native\")",
                         spec);
    return ATTN_OK;
}
#endif

/* Resolves the device spec into ctx->backend (NULL: native).  A device that
 * cannot be opened falls back to native when fallback is allowed. */
static attn_status select_backend(attn_context *ctx, const char *spec,
                                  const attn_options *o, attn_err *err)
{
#ifdef ATTN_HAVE_OPENCL
    char why[256] = "";
    attn_status s = attn_opencl_open(
        spec, o,
        ctx->kernel[0] && strcmp(ctx->kernel, "native") ? ctx->kernel : NULL,
        attn_native_beats_opencl_cpu(), &ctx->log, &ctx->backend, why,
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
    (void)ctx;
    return native_spec(spec, err);
#endif
}

/* The name of kernel variant i, NULL past the end (and without OpenCL):
 * the forward's, then the backward pass's. */
static const char *kernel_name(int i)
{
#ifdef ATTN_HAVE_OPENCL
    const char *n = attn_opencl_kernel_name(i);
    int f = 0;
    while (n == NULL && attn_opencl_kernel_name(f))
        f++;
    return n ? n : attn_opencl_bwd_kernel_name(i - f);
#else
    (void)i;
    return NULL;
#endif
}

/* Whether name is a kernel: an OpenCL variant, or "native". */
static int kernel_known(const char *name)
{
    if (!strcasecmp(name, "native"))
        return 1;
    for (int i = 0; kernel_name(i); i++)
        if (!strcasecmp(name, kernel_name(i)))
            return 1;
    return 0;
}

/* "unfused, fused, decode, native": the names, for messages. */
static void kernel_names(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; kernel_name(i) && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s, ", kernel_name(i));
        if (w < 0)
            return;
        used += (size_t)w;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, "native");
}

/* The kernel forced by ATTN_KERNEL or options.kernel into ctx->kernel
 * ("" when none).  An unknown name in the options is an error; in the
 * environment a warning, and the options' choice stands. */
static attn_status parse_kernel(attn_context *ctx, const attn_options *o,
                                attn_err *err)
{
    const char *env = getenv("ATTN_KERNEL");
    const char *name = o->kernel;
    char names[256];
    ctx->kernel[0] = '\0';
    ctx->kernel_from_env = 0;
    kernel_names(names, sizeof names);
    if (env && *env && strcasecmp(env, "auto") != 0) {
        if (kernel_known(env)) {
            name = env;
            ctx->kernel_from_env = 1;
        } else {
            env_warning(ctx,
                        "ATTN_KERNEL=\"%.32s\" names no kernel variant (%s); "
                        "ignored",
                        env, names);
        }
    } else if (env && *env) {
        name = NULL;
    }
    if (!name || !*name || !strcasecmp(name, "auto"))
        return ATTN_OK;
    if (!kernel_known(name))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.kernel \"%.32s\" names no kernel variant "
                         "(%s, or \"auto\")",
                         name, names);
    snprintf(ctx->kernel, sizeof ctx->kernel, "%s", name);
    for (char *c = ctx->kernel; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return ATTN_OK;
}

/* The precision asked: options.precision when it is not EXACT (the
 * default), else ATTN_PRECISION's, else EXACT.  A word ATTN_PRECISION
 * does not know is a warning, and EXACT applies. */
static void parse_precision(attn_context *ctx, const attn_options *o)
{
    const char *env = getenv("ATTN_PRECISION");
    ctx->precision = o->precision;
    if (o->precision != ATTN_PRECISION_EXACT || !env || !*env)
        return;
    for (int p = ATTN_PRECISION_EXACT; p <= ATTN_PRECISION_BF16; p++)
        if (!strcasecmp(env, attn_precision_name((attn_precision)p))) {
            ctx->precision = (attn_precision)p;
            return;
        }
    env_warning(ctx,
                "ATTN_PRECISION=\"%.32s\" is not a precision (accepted: "
                "exact, tf32, 3xtf32, bf16); ignored: exact",
                env);
}

static attn_status check_options(const attn_options *o, attn_err *err)
{
    /* 8: the OpenCL backend's most queues a device (ATTN_CL_MAX_QUEUES),
     * checked here so that every backend takes the same values */
    if (o->queues < 0 || o->queues > 8)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.queues must be in [0, 8] (got %d)",
                         o->queues);
    if ((unsigned)o->path > ATTN_PATH_UNFUSED)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.path %d is not an attn_path", (int)o->path);
    if ((unsigned)o->precision > ATTN_PRECISION_BF16)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.precision %d is not an attn_precision "
                         "(exact %d, tf32 %d, 3xtf32 %d, bf16 %d)",
                         (int)o->precision, ATTN_PRECISION_EXACT,
                         ATTN_PRECISION_TF32, ATTN_PRECISION_3XTF32,
                         ATTN_PRECISION_BF16);
    if (o->allow_fallback != 0 && o->allow_fallback != 1)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.allow_fallback must be 0 or 1 (got %d)",
                         o->allow_fallback);
    return ATTN_OK;
}

attn_status attn_context_new(const attn_options *opt, attn_options *resolved,
                             attn_context **out, attn_err *err)
{
    attn_context *ctx;
    attn_err warn = {{0}};
    char isa_warn[ATTN_MSG_MAX];
    attn_status s;

    /* Only the members the caller's struct_size covers (abi.c). */
    if ((s = attn_abi_options(opt, resolved, err)))
        return s;
    opt = resolved;
    if (!(ctx = calloc(1, sizeof *ctx)))
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the context");
    if ((s = check_options(opt, err)) ||
        (s = attn_logger_init(&ctx->log, opt, &warn, err)))
        goto fail_ctx;
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", warn.msg);
    if ((s = parse_threads(ctx, opt, err)))
        goto fail_ctx;
    ctx->allow_fallback = opt->allow_fallback;
    ctx->path = opt->path;
    if ((s = parse_kernel(ctx, opt, err)))
        goto fail_ctx;
    /* The backends opened from *resolved see the precision asked. */
    parse_precision(ctx, opt);
    resolved->precision = ctx->precision;
    if (pthread_mutex_init(&ctx->err_lock, NULL) != 0) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                      "cannot create the context lock");
        goto fail_ctx;
    }
    if ((s = attn_plan_cache_new(&ctx->plans, err)))
        goto fail_lock;
    s = attn_backend_native_create(ctx->threads, &ctx->log, isa_warn,
                                   sizeof isa_warn, &ctx->native, err);
    if (s)
        goto fail_plans;
    if (isa_warn[0])
        env_warning(ctx, "%s", isa_warn);
    ctx->backend = ctx->native;
    *out = ctx;
    return ATTN_OK;

fail_plans:
    attn_plan_cache_free(ctx->plans);
fail_lock:
    pthread_mutex_destroy(&ctx->err_lock);
fail_ctx:
    attn_log(&ctx->log, ATTN_LOG_ERROR, "%s", err->msg);
    free(ctx);
    return s;
}

/* The device spec: ATTN_DEVICE, else options.device, else "auto".  An
 * ATTN_DEVICE that is no spec at all ("native" in a list) is a warning and
 * the options' spec is used; one that matches no device stays an error
 * (selection then says which devices exist). */
static const char *device_spec(attn_context *ctx, const attn_options *o)
{
    const char *env = getenv("ATTN_DEVICE");
    const char *opt = o->device && *o->device ? o->device : "auto";
    attn_err e = {{0}};
    attn_status s;
    if (!env || !*env)
        return opt;
#ifdef ATTN_HAVE_OPENCL
    s = attn_opencl_check_spec(env, &e);
#else
    s = native_spec(env, &e);
#endif
    if (s == ATTN_ERR_INVALID_ARGUMENT) {
        env_warning(ctx,
                    "ATTN_DEVICE=\"%.64s\" is not a device spec (%s; "
                    "accepted: auto, native, gpu, igpu, fpga, cpu, P:D, a "
                    "device name substring, all, or a comma list of these "
                    "without native); ignored: device \"%.64s\"",
                    env, e.msg, opt);
        return opt;
    }
    return env;
}

/* An ATTN_KERNEL_BINARY_DIR that names no folder holds no binary, as if
 * it were unset (this build has no folder of its own): say so. */
static void check_binary_dir(attn_context *ctx)
{
    const char *dir = getenv("ATTN_KERNEL_BINARY_DIR");
    struct stat st;
    if (dir && *dir && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        env_warning(ctx,
                    "ATTN_KERNEL_BINARY_DIR=\"%.200s\" is not a folder (of "
                    "offline-compiled program binaries); no binary is "
                    "loaded from it",
                    dir);
}

attn_status attn_context_create(const attn_options *opt, attn_context **out)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_err err = {{0}};
    attn_status s;
    const char *spec;

    if (!out) {
        attn_thread_set_error("attn_context_create: out is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    *out = NULL;
    if ((s = attn_context_new(opt, &o, &ctx, &err)))
        goto fail;
    spec = device_spec(ctx, &o);
    check_binary_dir(ctx);
    ctx->backend = NULL;
    /* Warnings about the environment the backend gives while it opens
     * (a cache folder, profile files) stay as the last error. */
    ctx->log.note = ctx->last_error;
    ctx->log.note_cap = sizeof ctx->last_error;
    s = select_backend(ctx, spec, &o, &err);
    if (!ctx->backend)
        ctx->backend = ctx->native;
    if (s == ATTN_OK)
        s = attn_context_ready(ctx, &err);
    ctx->log.note = NULL;
    if (s) {
        attn_log(&ctx->log, ATTN_LOG_ERROR, "attn_context_create: %s", err.msg);
        attn_context_destroy(ctx);
        goto fail;
    }
    attn_log(&ctx->log, ATTN_LOG_INFO,
             "context on the %s backend with %d threads (device \"%s\"%s%s, "
             "precision %s asked)",
             ctx->backend->ops->name, ctx->threads, spec,
             ctx->kernel[0] ? ", kernel " : "", ctx->kernel,
             attn_precision_name(ctx->precision));
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
    /* Plans hold the backends' prepared kernels: they go first. */
    attn_plan_cache_free(ctx->plans);
    if (ctx->backend != ctx->native)
        ctx->backend->ops->destroy(ctx->backend);
    ctx->native->ops->destroy(ctx->native);
    pthread_mutex_destroy(&ctx->err_lock);
    free(ctx);
}

attn_status attn_context_ready(attn_context *ctx, attn_err *err)
{
    /* The native backend computes at the precision asked only when it runs
     * the context's work; as a fallback it computes EXACT (attn.h). */
    if (ctx->backend == ctx->native)
        attn_backend_native_ask(ctx->native, ctx->precision);
    else if (ctx->backend->ops->exec && ctx->backend->ops->exec->ask)
        ctx->backend->ops->exec->ask(ctx->backend, ctx->precision);
    ctx->run.backend = ctx->backend;
    ctx->run.native = ctx->native;
    ctx->run.allow_fallback = ctx->allow_fallback;
    ctx->run.forced = ctx->kernel[0] != '\0';
    ctx->run.log = &ctx->log;
    if (ctx->kernel[0] &&
        (ctx->backend == ctx->native) != !strcmp(ctx->kernel, "native")) {
        const int on_native = ctx->backend == ctx->native;
        /* The environment only suggests; the options insist. */
        if (ctx->kernel_from_env) {
            attn_fail(err, ATTN_OK,
                      "ATTN_KERNEL=%s: the context runs on %s, which has no "
                      "such kernel; ignored",
                      ctx->kernel,
                      on_native ? "the native backend" : "an OpenCL device");
            attn_log(&ctx->log, ATTN_LOG_WARN, "%s", err->msg);
            attn_context_note(ctx, err->msg);
            err->msg[0] = '\0';
            ctx->kernel[0] = '\0';
            ctx->run.forced = 0;
            return ATTN_OK;
        }
        if (on_native)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "options.kernel \"%s\" is a kernel of the "
                             "OpenCL backend, and the context runs on the "
                             "native backend (pick an OpenCL device, or "
                             "\"native\")",
                             ctx->kernel);
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "kernel \"native\" asks for the native backend, and "
                         "the context runs on an OpenCL device");
    }
    return ATTN_OK;
}

void attn_context_note(attn_context *ctx, const char *msg)
{
    pthread_mutex_lock(&ctx->err_lock);
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", msg);
    pthread_mutex_unlock(&ctx->err_lock);
}

attn_status attn_context_device(const attn_context *ctx, attn_device_info *out)
{
    if (!ctx || !out) {
        attn_thread_set_error(!ctx ? "attn_context_device: ctx is NULL"
                                   : "attn_context_device: out is NULL");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    {
        attn_device_info info;
        attn_err err = {{0}};
        size_t size, raw;
        if (attn_abi_info_size(out, &size, &err)) {
            attn_thread_set_error(err.msg);
            return ATTN_ERR_INVALID_ARGUMENT;
        }
        memcpy(&raw, out, sizeof raw);
        memset(&info, 0, sizeof info);
        ctx->backend->ops->device_info(ctx->backend, &info);
        attn_abi_info_put(out, size, raw, &info);
    }
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
