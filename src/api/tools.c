/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tools' internal interface (tools.h) over the API layer's context and
 * the OpenCL backend's discovery and variant table.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/context.h"
#include "api/tools.h"
#include "cpu/backend_native.h"
#include "opencl/backend_cl.h"
#include "opencl/bwd_cl.h"
#include "opencl/discovery.h"
#include "opencl/driver.h"
#include "opencl/opencl_backend.h"

_Static_assert((unsigned)ATTN_TOOL_Q_TYPE == (unsigned)ATTN_CL_Q_TYPE &&
                   (unsigned)ATTN_TOOL_Q_VERSION ==
                       (unsigned)ATTN_CL_Q_VERSION &&
                   (unsigned)ATTN_TOOL_Q_NAME == (unsigned)ATTN_CL_Q_NAME,
               "tools.h and discovery.h number the queries alike");
_Static_assert(sizeof(((attn_tool_selection *)0)->index) ==
                   sizeof(((attn_selection *)0)->index),
               "selections hold as many devices");

attn_status attn_tool_discover(attn_tool_device **out, size_t *n, char *msg,
                               size_t cap)
{
    attn_cl_device *devs = NULL;
    attn_err err = {{0}};
    attn_status s = attn_cl_discover(&devs, n, &err);
    *out = NULL;
    if (s) {
        snprintf(msg, cap, "%s", err.msg);
        return s;
    }
    if (*n && !(*out = calloc(*n, sizeof **out))) {
        free(devs);
        snprintf(msg, cap, "out of memory");
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < *n; i++) {
        (*out)[i].info = devs[i].info;
        (*out)[i].has_binary = devs[i].has_binary;
        (*out)[i].query_failed = devs[i].query_failed;
        (*out)[i].handle = devs[i].device;
        (*out)[i].nv_sm = devs[i].nv_sm;
        (*out)[i].amd_gfx = devs[i].amd_gfx;
        (*out)[i].amd_unit = attn_cl_amd_matrix_unit(devs[i].amd_gfx);
        (*out)[i].amd_xf32 = attn_cl_amd_xf32(devs[i].amd_gfx);
        (*out)[i].intel_xmx = devs[i].intel_xmx;
        (*out)[i].shuffle = devs[i].shuffle;
    }
    free(devs);
    return ATTN_OK;
}

attn_status attn_tool_select(const attn_tool_device *devs, size_t n,
                             const char *spec, int native_beats_cpu,
                             attn_tool_selection *sel, char *msg, size_t cap)
{
    attn_device_info *infos = n ? calloc(n, sizeof *infos) : NULL;
    attn_selection s_cl;
    attn_err err = {{0}};
    attn_status s;
    if (n && !infos) {
        snprintf(msg, cap, "out of memory");
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < n; i++)
        infos[i] = devs[i].info;
    if (native_beats_cpu != 0 && native_beats_cpu != 1)
        native_beats_cpu = attn_opencl_native_beats_cpu(
            infos, n, attn_native_beats_opencl_cpu());
    s = attn_cl_select(infos, n, spec, native_beats_cpu, &s_cl, &err);
    free(infos);
    memset(sel, 0, sizeof *sel);
    if (s) {
        snprintf(msg, cap, "%s", err.msg);
        return s;
    }
    sel->native = s_cl.native;
    sel->count = s_cl.count;
    memcpy(sel->index, s_cl.index, sizeof sel->index);
    memcpy(sel->why, s_cl.why, sizeof sel->why);
    return ATTN_OK;
}

attn_status attn_tool_device_extensions(const attn_tool_device *d, char **out)
{
    cl_device_id dev = (cl_device_id)(uintptr_t)d->handle;
    size_t len = 0;
    *out = NULL;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &len) !=
            CL_SUCCESS ||
        len == 0)
        return ATTN_ERR_DEVICE;
    if (!(*out = calloc(1, len + 1)))
        return ATTN_ERR_OUT_OF_MEMORY;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, len, *out, NULL) !=
        CL_SUCCESS) {
        free(*out);
        *out = NULL;
        return ATTN_ERR_DEVICE;
    }
    return ATTN_OK;
}

const char *attn_tool_kind_name(attn_device_kind kind)
{
    return attn_cl_kind_name(kind);
}

const char *attn_tool_binary_dir(void)
{
    return attn_cl_binary_dir();
}

void attn_tool_device_pattern(const char *name, char *out, size_t cap)
{
    static const char *const prefix[] = {"pthread-", "cpu-minimal-", "cpu-",
                                         "basic-", "tbb-"};
    size_t o = 0;
    while (*name == ' ')
        name++;
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (!strncasecmp(name, prefix[i], strlen(prefix[i]))) {
            name += strlen(prefix[i]);
            break;
        }
    for (; *name && *name != '"' && o + 1 < cap; name++)
        out[o++] = *name;
    while (o > 0 && out[o - 1] == ' ')
        o--;
    if (cap)
        out[o] = '\0';
}

void attn_tool_file_name(const char *name, char *out, size_t cap)
{
    attn_cl_binary_name(name, out, cap);
}

attn_status attn_tool_variant_info(int i, attn_tool_variant *out)
{
    static const char *const paths[] = {"auto", "fused", "unfused"};
    const attn_cl_variant *v;
    memset(out, 0, sizeof *out);
    if (i >= attn_cl_n_variants &&
        i - attn_cl_n_variants < attn_cl_n_bwd_variants) {
        /* the backward pass's, after the forward's (no parameters) */
        const attn_cl_bwd_variant *bv =
            &attn_cl_bwd_variants[i - attn_cl_n_variants];
        out->name = bv->name;
        out->summary = bv->summary;
        out->path = paths[bv->path];
        return ATTN_OK;
    }
    if (i < 0 || i >= attn_cl_n_variants)
        return ATTN_ERR_INVALID_ARGUMENT;
    v = attn_cl_variants[i];
    out->name = v->name;
    out->summary = v->summary;
    out->path = paths[v->path];
    out->n_params = v->n_params < 16 ? v->n_params : 16;
    for (int k = 0; k < out->n_params; k++) {
        const attn_cl_param *p = &v->params[k];
        out->params[k] =
            (attn_tool_param){p->name,
                              p->min,
                              p->max,
                              p->def,
                              (p->flags & ATTN_CL_PARAM_POW2) != 0,
                              (p->flags & ATTN_CL_PARAM_RUNTIME) != 0,
                              (p->flags & ATTN_CL_PARAM_CHOICE) != 0,
                              p->doc};
    }
    return ATTN_OK;
}

/* The primary runtime of ctx and the index of variant; a sentence in msg
 * when there is none. */
static attn_status variant_of(attn_context *ctx, const char *variant,
                              attn_cl_runtime **rt, int *vi, char *msg,
                              size_t cap)
{
    if (!ctx || !variant) {
        snprintf(msg, cap, "NULL argument");
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    if (!(*rt = attn_backend_cl_runtime(ctx->backend))) {
        snprintf(msg, cap, "the context runs on the native backend");
        return ATTN_ERR_UNSUPPORTED;
    }
    if ((*vi = attn_cl_variant_find(variant)) < 0) {
        snprintf(msg, cap, "\"%s\" is not a kernel variant", variant);
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    return ATTN_OK;
}

attn_status attn_tool_get_tuning(attn_context *ctx, const char *variant,
                                 int *values, char *msg, size_t cap)
{
    attn_cl_runtime *rt;
    attn_cl_tuning t;
    int vi;
    attn_status s = variant_of(ctx, variant, &rt, &vi, msg, cap);
    if (s)
        return s;
    attn_cl_get_tuning(rt, vi, &t);
    memcpy(values, t.v,
           (size_t)attn_cl_variants[vi]->n_params * sizeof *values);
    return ATTN_OK;
}

attn_status attn_tool_set_tuning(attn_context *ctx, const char *variant,
                                 const int *values, char *msg, size_t cap)
{
    attn_cl_runtime *rt;
    attn_cl_tuning t;
    attn_err err = {{0}};
    int vi;
    attn_status s = variant_of(ctx, variant, &rt, &vi, msg, cap);
    if (s)
        return s;
    attn_cl_get_tuning(rt, vi, &t); /* keeps the build options */
    memcpy(t.v, values,
           (size_t)attn_cl_variants[vi]->n_params * sizeof *values);
    if ((s = attn_cl_set_tuning(rt, vi, &t, &err)))
        snprintf(msg, cap, "%s", err.msg);
    return s;
}

const char *attn_tool_native_isa(void)
{
    return attn_native_isa_name();
}

attn_status attn_tool_check_spec(const char *spec, char *msg, size_t cap)
{
    attn_err err = {{0}};
    attn_status s = attn_opencl_check_spec(spec, &err);
    if (s)
        snprintf(msg, cap, "%s", err.msg);
    return s;
}

int attn_tool_native_threads(void)
{
    const int t = attn_threads_default(NULL);
    return t < 0 ? -t : t;
}
