/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The OpenCL runtime of one device: context, queue, cache folder, locks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/runtime.h"

const char *attn_cl_error_name(cl_int rc)
{
    switch (rc) {
#define NAME(x)                                                                \
    case x:                                                                    \
        return #x
        NAME(CL_SUCCESS);
        NAME(CL_DEVICE_NOT_FOUND);
        NAME(CL_DEVICE_NOT_AVAILABLE);
        NAME(CL_COMPILER_NOT_AVAILABLE);
        NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        NAME(CL_OUT_OF_RESOURCES);
        NAME(CL_OUT_OF_HOST_MEMORY);
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE);
        NAME(CL_MEM_COPY_OVERLAP);
        NAME(CL_IMAGE_FORMAT_MISMATCH);
        NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED);
        NAME(CL_BUILD_PROGRAM_FAILURE);
        NAME(CL_MAP_FAILURE);
        NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        NAME(CL_COMPILE_PROGRAM_FAILURE);
        NAME(CL_LINKER_NOT_AVAILABLE);
        NAME(CL_LINK_PROGRAM_FAILURE);
        NAME(CL_DEVICE_PARTITION_FAILED);
        NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
        NAME(CL_INVALID_VALUE);
        NAME(CL_INVALID_DEVICE_TYPE);
        NAME(CL_INVALID_PLATFORM);
        NAME(CL_INVALID_DEVICE);
        NAME(CL_INVALID_CONTEXT);
        NAME(CL_INVALID_QUEUE_PROPERTIES);
        NAME(CL_INVALID_COMMAND_QUEUE);
        NAME(CL_INVALID_HOST_PTR);
        NAME(CL_INVALID_MEM_OBJECT);
        NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
        NAME(CL_INVALID_IMAGE_SIZE);
        NAME(CL_INVALID_SAMPLER);
        NAME(CL_INVALID_BINARY);
        NAME(CL_INVALID_BUILD_OPTIONS);
        NAME(CL_INVALID_PROGRAM);
        NAME(CL_INVALID_PROGRAM_EXECUTABLE);
        NAME(CL_INVALID_KERNEL_NAME);
        NAME(CL_INVALID_KERNEL_DEFINITION);
        NAME(CL_INVALID_KERNEL);
        NAME(CL_INVALID_ARG_INDEX);
        NAME(CL_INVALID_ARG_VALUE);
        NAME(CL_INVALID_ARG_SIZE);
        NAME(CL_INVALID_KERNEL_ARGS);
        NAME(CL_INVALID_WORK_DIMENSION);
        NAME(CL_INVALID_WORK_GROUP_SIZE);
        NAME(CL_INVALID_WORK_ITEM_SIZE);
        NAME(CL_INVALID_GLOBAL_OFFSET);
        NAME(CL_INVALID_EVENT_WAIT_LIST);
        NAME(CL_INVALID_EVENT);
        NAME(CL_INVALID_OPERATION);
        NAME(CL_INVALID_GL_OBJECT);
        NAME(CL_INVALID_BUFFER_SIZE);
        NAME(CL_INVALID_MIP_LEVEL);
        NAME(CL_INVALID_GLOBAL_WORK_SIZE);
        NAME(CL_INVALID_PROPERTY);
        NAME(CL_INVALID_IMAGE_DESCRIPTOR);
        NAME(CL_INVALID_COMPILER_OPTIONS);
        NAME(CL_INVALID_LINKER_OPTIONS);
        NAME(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef NAME
    }
    return "unknown OpenCL error";
}

attn_status attn_cl_status(cl_int rc)
{
    switch (rc) {
    case CL_SUCCESS:
        return ATTN_OK;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE:
        return ATTN_ERR_OUT_OF_MEMORY;
    case CL_BUILD_PROGRAM_FAILURE:
    case CL_COMPILER_NOT_AVAILABLE:
    case CL_INVALID_BINARY:
    case CL_INVALID_BUILD_OPTIONS:
        return ATTN_ERR_BUILD_FAILED;
    default:
        return ATTN_ERR_DEVICE;
    }
}

/* Whether the device's driver keeps a cache of compiled kernels of its own
 * and compiles again to hand a program's binary out: PoCL (its kernel
 * cache holds each program's code, keyed by source and options; a binary
 * asks it for a generic work-group function of every kernel besides the
 * ones it compiles per launch shape, which nearly tripled the time of a
 * first build on the CPU device).  The library's cache would only add that
 * compile there.  Test builds: ATTN_TEST_DRIVER_CACHE=0 says no, so that
 * the default folder's rules can be tested on PoCL. */
static int driver_keeps_kernels(const attn_cl_runtime *rt)
{
    char name[128] = "", version[128] = "";
#ifdef ATTN_FAULT_INJECTION
    const char *e = getenv("ATTN_TEST_DRIVER_CACHE");
    if (e && strcmp(e, "0") == 0)
        return 0;
#endif
    if (clGetPlatformInfo(rt->platform, CL_PLATFORM_NAME, sizeof name, name,
                          NULL) != CL_SUCCESS)
        name[0] = '\0';
    if (clGetPlatformInfo(rt->platform, CL_PLATFORM_VERSION, sizeof version,
                          version, NULL) != CL_SUCCESS)
        version[0] = '\0';
    name[sizeof name - 1] = version[sizeof version - 1] = '\0';
    return strstr(name, "Portable Computing Language") != NULL ||
           strstr(version, "PoCL") != NULL;
}

/* options.cache_dir, else ATTN_CACHE_DIR, else the XDG cache folder, into
 * rt->cache_dir without trailing '/'; "" (no cache) when none applies or
 * the path is too long.  ATTN_CACHE_DIR, XDG_CACHE_HOME and HOME count
 * only when they are absolute paths (the XDG rule; each refusal a
 * warning): a relative one would put the cache wherever the process
 * happens to run.  The default folder is not used on a driver that keeps
 * compiled kernels itself (driver_keeps_kernels); a folder named by
 * options.cache_dir or ATTN_CACHE_DIR still is. */
static void resolve_cache_dir(attn_cl_runtime *rt, const char *opt)
{
    const char *env = getenv("ATTN_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME"), *base = NULL, *suffix = "", *from;
    size_t n;
    rt->cache_dir[0] = '\0';
    if (!opt && env && *env && env[0] != '/') {
        /* As XDG_CACHE_HOME: a relative folder would move with the
         * process's working directory. */
        attn_log_env(rt->log,
                     "ATTN_CACHE_DIR=\"%.200s\" is not an absolute path (an "
                     "absolute folder, or empty for no cache); ignored: the "
                     "default folder is used",
                     env);
        env = NULL;
    }
    if (opt) {
        base = opt;
        from = "options.cache_dir";
    } else if (env) {
        base = env;
        from = "ATTN_CACHE_DIR";
    } else if (driver_keeps_kernels(rt)) {
        attn_log(rt->log, ATTN_LOG_INFO,
                 "no program cache on %.200s: its driver keeps compiled "
                 "kernels itself, and a program's binary would cost it "
                 "another compile (options.cache_dir or ATTN_CACHE_DIR "
                 "name a folder to cache in anyway)",
                 rt->info.name);
        return;
    } else {
        from = "XDG_CACHE_HOME";
        if (xdg && *xdg && xdg[0] != '/') {
            attn_log_env(rt->log,
                         "XDG_CACHE_HOME \"%.200s\" is not an absolute path; "
                         "ignored",
                         xdg);
            xdg = NULL;
        }
        if (xdg && *xdg) {
            base = xdg;
            suffix = "/libattn";
        } else if (home && *home) {
            from = "HOME";
            if (home[0] == '/') {
                base = home;
                suffix = "/.cache/libattn";
            } else {
                attn_log_env(rt->log,
                             "HOME \"%.200s\" is not an absolute path; no "
                             "program cache",
                             home);
            }
        }
    }
    if (!base || !*base)
        return;
    /* The folder is opened without following a link as its last part:
     * "dir/" or "dir/." would follow a link named dir, so trailing "/"
     * and "/." go (before the length is measured); a last part ".." names
     * a folder whose link the check would not see, so it is refused. */
    size_t bl = strlen(base);
    for (;;) {
        if (bl > 1 && base[bl - 1] == '/')
            bl--;
        else if (bl > 2 && base[bl - 1] == '.' && base[bl - 2] == '/')
            bl -= 2;
        else
            break;
    }
    if (!*suffix && ((bl == 2 && !strncmp(base, "..", 2)) ||
                     (bl >= 3 && !strncmp(base + bl - 3, "/..", 3)) ||
                     (bl == 1 && base[0] == '.'))) {
        attn_log_env(rt->log,
                     "program cache folder %.200s (from %s) ends in \".\" or "
                     "\"..\": name the folder itself; caching off",
                     base, from);
        return;
    }
    n = bl + strlen(suffix);
    if (n > ATTN_CL_CACHE_DIR_MAX) {
        /* Cut, it would name another folder, which the cache would then
         * create. */
        attn_log_env(
            rt->log,
            "program cache folder %.60s... (from %s) is %zu bytes long, "
            "more than %d: caching off",
            base, from, n, ATTN_CL_CACHE_DIR_MAX);
        return;
    }
    memcpy(rt->cache_dir, base, bl);
    memcpy(rt->cache_dir + bl, suffix, strlen(suffix) + 1);
}

static void describe(attn_cl_runtime *rt)
{
    char buf[256];
    snprintf(rt->info.name, sizeof rt->info.name, "unknown device");
    if (clGetDeviceInfo(rt->device, CL_DEVICE_NAME, sizeof buf, buf, NULL) ==
        CL_SUCCESS) {
        buf[sizeof buf - 1] = '\0';
        snprintf(rt->info.name, sizeof rt->info.name, "%s", buf);
    }
    if (clGetDeviceInfo(rt->device, CL_DRIVER_VERSION, sizeof buf, buf, NULL) ==
        CL_SUCCESS) {
        buf[sizeof buf - 1] = '\0';
        snprintf(rt->info.driver_version, sizeof rt->info.driver_version,
                 "%.127s", buf);
    }
}

/* What the kernel variants fit themselves to, read once. */
static attn_status read_limits(attn_cl_runtime *rt, attn_err *err)
{
    cl_device_fp_config fp = 0;
    cl_ulong local = 0;
    size_t items[16] = {0};
    char ver[64] = "";
    cl_int rc;
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                  sizeof rt->dev_wg, &rt->dev_wg, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_ITEM_SIZES,
                                  sizeof items, items, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_LOCAL_MEM_SIZE,
                                  sizeof local, &local, NULL),
                  fail);
    ATTN_CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_SINGLE_FP_CONFIG,
                                  sizeof fp, &fp, NULL),
                  fail);
    memcpy(rt->dev_items, items, sizeof rt->dev_items);
    rt->local_mem = local;
#ifdef ATTN_FAULT_INJECTION
    {
        /* Tests: less local memory than the device has (a GPU's, e.g.
         * NVIDIA's 49152), so that the variants' builds for it run on the
         * CPU device. */
        const char *e = getenv("ATTN_TEST_LOCAL_MEM");
        const unsigned long long cap = e ? strtoull(e, NULL, 10) : 0;
        if (cap >= 16384 && cap < local)
            rt->local_mem = cap;
    }
#endif
    rt->fma = (fp & CL_FP_FMA) != 0;
    /* "OpenCL C 1.2 ..." */
    if (clGetDeviceInfo(rt->device, CL_DEVICE_OPENCL_C_VERSION, sizeof ver, ver,
                        NULL) == CL_SUCCESS) {
        ver[sizeof ver - 1] = '\0';
        rt->cl_major = atoi(ver + strcspn(ver, "0123456789"));
    }
    rt->nv_sm = attn_cl_nv_sm(rt->device);
    rt->amd_gfx = attn_cl_amd_gfx(rt->device);
    rt->intel_xmx = attn_cl_intel_xmx(rt->device);
    rt->shuffle = attn_cl_shuffle(rt->device);
    /* Khronos' shuffles are taken once a probe kernel with them builds as
     * OpenCL C 1.2 (one small build; the extension asks for 2.0 or
     * cl_khr_subgroups); NVIDIA's OpenCL lists no subgroup extension, and
     * its shfl.sync is taken once a probe kernel with it builds. */
    if (rt->shuffle == ATTN_CL_SHUFFLE_KHR &&
        !attn_cl_shuffle_builds(rt->context, rt->device, ATTN_CL_SHUFFLE_KHR))
        rt->shuffle = ATTN_CL_SHUFFLE_NONE;
    if (!rt->shuffle && rt->nv_sm >= 30 &&
        attn_cl_shuffle_builds(rt->context, rt->device, ATTN_CL_SHUFFLE_PTX))
        rt->shuffle = ATTN_CL_SHUFFLE_PTX;
    return ATTN_OK;
fail:
    return ATTN_ERR_DEVICE;
}

static attn_status create(cl_context context, cl_device_id device,
                          const attn_device_info *info, int owns,
                          const char *cache_dir, const attn_logger *log,
                          attn_cl_runtime **out, attn_err *err)
{
    attn_cl_runtime *rt = calloc(1, sizeof *rt);
    attn_status s = ATTN_ERR_DEVICE;
    cl_int rc;
    if (!rt)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the OpenCL runtime");
    rt->context = context;
    rt->device = device;
    rt->owns_context = owns;
    rt->log = log;
    if (info)
        rt->info = *info;
    else
        describe(rt);
    ATTN_CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_PLATFORM,
                                  sizeof rt->platform, &rt->platform, NULL),
                  fail);
    rt->queue = clCreateCommandQueue(context, device, 0, &rc);
    if (rc != CL_SUCCESS) {
        s = attn_fail(err, attn_cl_status(rc),
                      "clCreateCommandQueue failed: %s",
                      attn_cl_error_name(rc));
        goto fail;
    }
    rt->queues[0] = rt->queue;
    rt->n_queues = 1;
    if (pthread_mutex_init(&rt->lock, NULL) != 0) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "cannot create a lock");
        goto fail_queue;
    }
    if (pthread_mutex_init(&rt->build_lock, NULL) != 0) {
        s = attn_fail(err, ATTN_ERR_OUT_OF_MEMORY, "cannot create a lock");
        goto fail_lock;
    }
    resolve_cache_dir(rt, cache_dir);
    if ((s = read_limits(rt, err)))
        goto fail_build_lock;
    if (!owns)
        clRetainContext(context);
    *out = rt;
    return ATTN_OK;

fail_build_lock:
    pthread_mutex_destroy(&rt->build_lock);
fail_lock:
    pthread_mutex_destroy(&rt->lock);
fail_queue:
    clReleaseCommandQueue(rt->queue);
fail:
    free(rt);
    return s;
}

attn_status attn_cl_runtime_create(const attn_cl_device *dev,
                                   const char *cache_dir,
                                   const attn_logger *log,
                                   attn_cl_runtime **out, attn_err *err)
{
    cl_int rc;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                     (cl_context_properties)dev->platform, 0};
    cl_context context =
        clCreateContext(props, 1, &dev->device, NULL, NULL, &rc);
    attn_status s;
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc),
                         "clCreateContext on %s failed: %s", dev->info.name,
                         attn_cl_error_name(rc));
    s = create(context, dev->device, &dev->info, 1, cache_dir, log, out, err);
    if (s)
        clReleaseContext(context);
    return s;
}

attn_status attn_cl_runtime_create_from(cl_context context, cl_device_id device,
                                        const char *cache_dir,
                                        const attn_logger *log,
                                        attn_cl_runtime **out, attn_err *err)
{
    return create(context, device, NULL, 0, cache_dir, log, out, err);
}

attn_status attn_cl_runtime_set_queues(attn_cl_runtime *rt, int n,
                                       attn_err *err)
{
    cl_int rc;
    if (n < 1 || n > ATTN_CL_MAX_QUEUES)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "%d queues: must be in [1, %d]", n,
                         ATTN_CL_MAX_QUEUES);
    while (rt->n_queues < n) {
        cl_command_queue q =
            clCreateCommandQueue(rt->context, rt->device, 0, &rc);
        if (rc != CL_SUCCESS)
            return attn_fail(err, attn_cl_status(rc),
                             "cannot create command queue %d on %s: %s",
                             rt->n_queues + 1, rt->info.name,
                             attn_cl_error_name(rc));
        rt->queues[rt->n_queues++] = q;
    }
    return ATTN_OK;
}

void attn_cl_runtime_destroy(attn_cl_runtime *rt)
{
    if (!rt)
        return;
    ATTN_FAULT_DELIVER(1);
    for (int i = 0; i < rt->n_queues; i++)
        clFinish(rt->queues[i]);
    if (rt->mha_free)
        rt->mha_free(rt->mha);
    if (rt->bwd_free)
        rt->bwd_free(rt->bwd);
    if (rt->parts_free)
        rt->parts_free(rt);
    for (int i = 0; i < rt->n_queues; i++)
        clReleaseCommandQueue(rt->queues[i]);
    pthread_mutex_destroy(&rt->build_lock);
    pthread_mutex_destroy(&rt->lock);
    clReleaseContext(rt->context);
    free(rt);
}

void attn_cl_mem_limits(const attn_cl_runtime *rt, uint64_t *global_mem,
                        uint64_t *max_alloc)
{
    cl_ulong v;
    *global_mem = rt->info.global_mem_bytes;
    *max_alloc = rt->info.max_alloc_bytes;
    if (!*global_mem && clGetDeviceInfo(rt->device, CL_DEVICE_GLOBAL_MEM_SIZE,
                                        sizeof v, &v, NULL) == CL_SUCCESS)
        *global_mem = v;
    if (!*max_alloc && clGetDeviceInfo(rt->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                                       sizeof v, &v, NULL) == CL_SUCCESS)
        *max_alloc = v;
}
