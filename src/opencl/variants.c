/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The table of kernel variants (variant.h) and what every variant's hooks
 * share: the schema's defaults, range checks and build defines, argument
 * setting and event chains.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "opencl/variant.h"

/* Every variant, one line each: X(name) stands for the record
 * attn_cl_variant_<name> of src/opencl/variants/<name>.c.  The order is
 * only the tie-break of an explicit path: which variant runs a shape under
 * AUTO is the profile's path.order (platforms/default.prof). */
#define ATTN_CL_VARIANT_TABLE(X)                                               \
    X(unfused)                                                                 \
    X(fused)                                                                   \
    X(decode)                                                                  \
    X(tiled)                                                                   \
    X(splitkv)                                                                 \
    X(mma)                                                                     \
    X(amdmm)                                                                   \
    X(xmx)

#define DECLARE(n) extern const attn_cl_variant attn_cl_variant_##n;
#define ENTRY(n)   &attn_cl_variant_##n,
ATTN_CL_VARIANT_TABLE(DECLARE)
const attn_cl_variant *const attn_cl_variants[] = {
    ATTN_CL_VARIANT_TABLE(ENTRY)};
const int attn_cl_n_variants =
    (int)(sizeof attn_cl_variants / sizeof attn_cl_variants[0]);

int attn_cl_variant_find(const char *name)
{
    for (int i = 0; name && i < attn_cl_n_variants; i++)
        if (!strcasecmp(name, attn_cl_variants[i]->name))
            return i;
    return -1;
}

int attn_cl_param_find(const attn_cl_variant *v, const char *name)
{
    for (int i = 0; name && i < v->n_params; i++)
        if (!strcmp(name, v->params[i].name))
            return i;
    return -1;
}

void attn_cl_variant_names(char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < attn_cl_n_variants && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "",
                         attn_cl_variants[i]->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

void attn_cl_tuning_default(const attn_cl_variant *v, attn_cl_tuning *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < v->n_params; i++)
        t->v[i] = v->params[i].def;
}

attn_status attn_cl_tuning_check(const attn_cl_variant *v,
                                 const attn_cl_tuning *t, attn_err *err)
{
    char why[256] = "";
    for (int i = 0; i < v->n_params; i++) {
        const attn_cl_param *p = &v->params[i];
        const int x = t->v[i];
        if (x < p->min || x > p->max)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "%s.%s must be in [%d, %d], not %d", v->name,
                             p->name, p->min, p->max, x);
        if ((p->flags & ATTN_CL_PARAM_POW2) && (x & (x - 1)) != 0)
            return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                             "%s.%s must be a power of two, not %d", v->name,
                             p->name, x);
    }
    if (!memchr(t->options, '\0', sizeof t->options))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "%s: build options not NUL-terminated", v->name);
    if (v->check && !v->check(t, why, sizeof why))
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT, "%s: %s", v->name,
                         why);
    return ATTN_OK;
}

void attn_cl_tuning_defines(const attn_cl_variant *v, const attn_cl_tuning *t,
                            char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < v->n_params && used < cap; i++) {
        int w;
        if (!v->params[i].define)
            continue;
        w = snprintf(buf + used, cap - used, " -D%s=%d", v->params[i].define,
                     t->v[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
    if (t->options[0] && used < cap)
        snprintf(buf + used, cap - used, " %s", t->options);
}

void attn_cl_limits_get(const attn_cl_runtime *rt, attn_cl_limits *out)
{
    memset(out, 0, sizeof *out);
    out->wg = rt->dev_wg;
    memcpy(out->items, rt->dev_items, sizeof out->items);
    out->local_mem = rt->local_mem;
    attn_cl_mem_limits(rt, &out->global_mem, &out->max_alloc);
    out->compute_units = rt->info.compute_units;
    out->fma = rt->fma;
    out->gpu =
        rt->info.kind == ATTN_DEVICE_GPU || rt->info.kind == ATTN_DEVICE_IGPU;
    out->cl_major = rt->cl_major;
    out->nv_sm = rt->nv_sm;
    out->amd_gfx = rt->amd_gfx;
    out->intel_xmx = rt->intel_xmx;
    out->shuffle = rt->shuffle;
    out->precision = rt->precision;
}

attn_status attn_cl_local_fits(const attn_cl_limits *lim,
                               const attn_cl_built *b, const char *kernel,
                               attn_err *err)
{
    if (b && b->klocal[0] > lim->local_mem)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the %s kernel needs %llu bytes of local memory, "
                         "the device has %llu",
                         kernel, (unsigned long long)b->klocal[0],
                         (unsigned long long)lim->local_mem);
    return ATTN_OK;
}

int attn_cl_fits_wg(const attn_cl_limits *lim, size_t wg)
{
    return lim->wg >= wg && (!lim->items[0] || lim->items[0] >= wg);
}

attn_status attn_cl_tile_fits(const attn_cl_limits *lim, const attn_cl_built *b,
                              const char *kernel, int tile, int head_dim,
                              attn_err *err)
{
    if (!tile)
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "the %s kernel does not fit the device's local "
                         "memory for head_dim %d",
                         kernel, head_dim);
    return attn_cl_local_fits(lim, b, kernel, err);
}

int attn_cl_halve(int *w)
{
    if (*w <= 1)
        return 0;
    *w = *w % 2 == 0 ? *w / 2 : 1;
    return 1;
}

cl_int attn_cl_set_args(cl_kernel k, cl_uint first, const attn_cl_karg *a,
                        size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cl_int rc =
            clSetKernelArg(k, first + (cl_uint)i, a[i].size, a[i].value);
        if (rc != CL_SUCCESS)
            return rc;
    }
    return CL_SUCCESS;
}

cl_int attn_cl_launch_blocks(cl_command_queue queue, cl_kernel k,
                             cl_uint first_arg, size_t total, size_t groups,
                             size_t local, cl_uint n_wait, const cl_event *wait,
                             cl_event *prev)
{
    cl_int rc = CL_SUCCESS;
    for (size_t i0 = 0; rc == CL_SUCCESS && i0 < total;
         i0 += ATTN_CL_GRID_MAX) {
        const size_t n =
            total - i0 < ATTN_CL_GRID_MAX ? total - i0 : ATTN_CL_GRID_MAX;
        const cl_int first = (cl_int)i0;
        const size_t global[2] = {groups * local, n}, lsz[2] = {local, 1};
        rc = clSetKernelArg(k, first_arg, sizeof first, &first);
        if (rc == CL_SUCCESS)
            rc = attn_cl_chain(queue, k, 2, global, lsz, n_wait, wait, prev);
    }
    return rc;
}

cl_int attn_cl_launch_heads(const attn_cl_launch *L, cl_kernel k,
                            cl_uint bh_arg, size_t blocks, size_t local,
                            cl_event *last)
{
    cl_event prev = NULL;
    cl_int rc = attn_cl_launch_blocks(L->queue, k, bh_arg,
                                      (size_t)L->d->batch * (size_t)L->heads_q,
                                      blocks, local, L->n_wait, L->wait, &prev);
    if (rc != CL_SUCCESS && prev) {
        clReleaseEvent(prev);
        prev = NULL;
    }
    *last = prev;
    return rc;
}

cl_int attn_cl_launch_matrix(const attn_cl_launch *L, size_t rows, size_t local,
                             cl_event *last)
{
    /* Without a bias the kernel works in base 2. */
    const cl_int nat = L->bias_kind != 0;
    const cl_float qscale =
        nat ? L->scale : (cl_float)((double)L->scale * 1.44269504088896340736);
#define KARG ATTN_CL_KARG
    const attn_cl_karg args[] = {
        KARG(L->t->q),      KARG(L->q_off),   KARG(L->t->k),
        KARG(L->k_off),     KARG(L->t->v),    KARG(L->v_off),
        KARG(L->t->o),      KARG(L->o_off),   KARG(L->lse),
        KARG(L->lse_off),   KARG(L->has_lse), KARG(L->bias),
        KARG(L->bias_kind), KARG(L->bias_sb), KARG(L->bias_sh),
        KARG(L->bias_sq),   KARG(L->kv_len),  KARG(L->has_kv_len),
        KARG(qscale),       KARG(nat),        KARG(L->heads_q),
        KARG(L->heads_kv),  KARG(L->seq_q),   KARG(L->seq_kv),
        KARG(L->causal),    KARG(L->window),  KARG(L->diag),
        KARG(L->q_st),      KARG(L->k_st),    KARG(L->v_st),
        KARG(L->o_st)};
#undef KARG
    const cl_uint n = (cl_uint)(sizeof args / sizeof args[0]);
    const size_t blocks = ((size_t)L->seq_q + rows - 1) / rows;
    cl_kernel k = L->k[0];
    cl_int rc = attn_cl_set_args(k, 0, args, n);
    if (rc != CL_SUCCESS) {
        *last = NULL;
        return rc;
    }
    return attn_cl_launch_heads(L, k, n, blocks, local, last);
}

cl_int attn_cl_chain(cl_command_queue queue, cl_kernel k, cl_uint dims,
                     const size_t *global, const size_t *local, cl_uint n_wait,
                     const cl_event *wait, cl_event *prev)
{
    cl_event ev = NULL;
    cl_int rc = ATTN_CL(clEnqueueNDRangeKernel)(queue, k, dims, NULL, global,
                                                local, *prev ? 1 : n_wait,
                                                *prev ? prev : wait, &ev);
    if (rc != CL_SUCCESS)
        return rc;
    if (*prev)
        clReleaseEvent(*prev);
    *prev = ev;
    return CL_SUCCESS;
}
