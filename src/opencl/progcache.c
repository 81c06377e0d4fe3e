/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The programs of the kernel variants, built on first use and kept for the
 * runtime's life: one entry per (variant, dtype, build defines) on the
 * runtime's device, with the tuning as built (fitted to the device and to
 * the built kernels' own limits) and a pool of kernel objects, so that
 * calls on several threads each set the arguments of kernels of their own
 * and enqueue without a lock.  A failed build is kept too: the same
 * request fails at once with the same sentence (a new tuning is a new
 * request).  Programs come from program.c (embedded sources, offline
 * binaries, the on-disk cache).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/progcache.h"

/* Kernel sets an entry keeps for reuse; more are released when returned. */
#define FREE_SETS_MAX 8
/* Builds of one request at most (each retry shrinks the tuning). */
#define ATTEMPTS_MAX 24

typedef struct kernel_set {
    cl_kernel k[ATTN_CL_MAX_KERNELS];
} kernel_set;

struct attn_cl_prog_entry {
    attn_cl_built b; /* first: an attn_cl_built * is its entry */
    int variant;
    attn_dtype dtype;
    char *key; /* the requested build options */
    attn_status failed;
    char why[ATTN_MSG_MAX];
    kernel_set free_sets[FREE_SETS_MAX];
    int n_free;
    struct attn_cl_prog_entry *next;
};

typedef struct attn_cl_prog_entry entry;

static int n_kernels(const attn_cl_variant *v)
{
    int n = 0;
    while (v->kernels[n])
        n++;
    return n;
}

static void release_set(kernel_set *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s->k[i])
            clReleaseKernel(s->k[i]);
    memset(s, 0, sizeof *s);
}

static attn_status create_set(cl_program prog, const attn_cl_variant *v,
                              kernel_set *s, attn_err *err)
{
    const int n = n_kernels(v);
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        cl_int rc;
        s->k[i] = clCreateKernel(prog, v->kernels[i], &rc);
        if (rc != CL_SUCCESS) {
            s->k[i] = NULL;
            release_set(s, n);
            return attn_fail(err, attn_cl_status(rc), "clCreateKernel(%s): %s",
                             v->kernels[i], attn_cl_error_name(rc));
        }
    }
    return ATTN_OK;
}

/* The built entry's program and kernels released (not the entry). */
static void entry_clear(entry *e)
{
    const int n = n_kernels(attn_cl_variants[e->variant]);
    for (int i = 0; i < e->n_free; i++)
        release_set(&e->free_sets[i], n);
    e->n_free = 0;
    if (e->b.prog)
        clReleaseProgram(e->b.prog);
    e->b.prog = NULL;
}

/* "unfused_f32": the tag offline binaries are named by; "" (no binary)
 * for a variant built per shape. */
static void tag_of(const attn_cl_variant *v, attn_dtype dtype, char *tag,
                   size_t cap)
{
    if (v->per_shape)
        tag[0] = '\0';
    else
        snprintf(tag, cap, "%s_%s", v->name,
                 dtype == ATTN_BF16  ? "bf16"
                 : dtype == ATTN_F16 ? "f16"
                                     : "f32");
}

size_t attn_cl_variant_sources(const attn_cl_variant *v, const char **names,
                               size_t cap)
{
    size_t n = 0;
    if (n < cap)
        names[n++] = "common.cl";
    for (int i = 0; v->sources[i] && n < cap; i++)
        names[n++] = v->sources[i];
    return n;
}

int attn_cl_variant_options(const attn_cl_variant *v, attn_dtype dtype,
                            const attn_cl_tuning *t, const char *extra,
                            char *buf, size_t cap)
{
    char defs[512];
    attn_cl_tuning_defines(v, t, defs, sizeof defs);
    return snprintf(buf, cap, "-DATTN_F16=%d -DATTN_BF16=%d%s%s",
                    dtype == ATTN_F16, dtype == ATTN_BF16, defs,
                    extra ? extra : "");
}

/* Builds e's program with tuning t: the device's limits first, then the
 * kernels' own (registers, the compiler's local memory), rebuilding with
 * a smaller tuning until they fit. */
static attn_status build_entry(attn_cl_runtime *rt, entry *e, attn_cl_tuning t,
                               const char *extra, attn_err *err)
{
    const attn_cl_variant *v = attn_cl_variants[e->variant];
    const char *names[16];
    const int nk = n_kernels(v);
    const size_t n_names = attn_cl_variant_sources(v, names, 16);
    attn_cl_limits lim;
    char tag[64], opts[1024];
    attn_status s;

    tag_of(v, e->dtype, tag, sizeof tag);
    attn_cl_limits_get(rt, &lim);
    if (v->fit_device && !v->fit_device(&lim, &t))
        goto too_small;
    for (int attempt = 0; attempt < ATTEMPTS_MAX; attempt++) {
        kernel_set set;
        int fits;
        attn_cl_variant_options(v, e->dtype, &t, extra, opts, sizeof opts);
        if ((s = attn_cl_build_tagged(rt, tag, names, n_names, opts, &e->b.prog,
                                      err)))
            return s;
        if (v->check_built && (s = v->check_built(&lim, &e->b, err))) {
            entry_clear(e);
            return s;
        }
        if ((s = create_set(e->b.prog, v, &set, err))) {
            entry_clear(e);
            return s;
        }
        for (int i = 0; i < nk; i++) {
            cl_ulong local = 0;
            cl_int rc = clGetKernelWorkGroupInfo(
                set.k[i], rt->device, CL_KERNEL_WORK_GROUP_SIZE,
                sizeof e->b.kwg[i], &e->b.kwg[i], NULL);
            if (rc == CL_SUCCESS)
                rc = clGetKernelWorkGroupInfo(set.k[i], rt->device,
                                              CL_KERNEL_LOCAL_MEM_SIZE,
                                              sizeof local, &local, NULL);
            if (rc != CL_SUCCESS) {
                release_set(&set, nk);
                entry_clear(e);
                return attn_fail(err, ATTN_ERR_DEVICE,
                                 "clGetKernelWorkGroupInfo(%s) failed: %s",
                                 v->kernels[i], attn_cl_error_name(rc));
            }
            e->b.klocal[i] = local;
        }
        fits = v->fit_kernels ? v->fit_kernels(&lim, &e->b, &t) : 1;
        if (fits == 1) {
            e->b.t = t;
            e->free_sets[e->n_free++] = set;
            attn_log(rt->log, ATTN_LOG_DEBUG,
                     "kernel variant %s built on %s: %s", v->name,
                     rt->info.name, opts);
            return ATTN_OK;
        }
        release_set(&set, nk);
        entry_clear(e);
        if (fits < 0)
            break;
    }
too_small:
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "%s cannot run the %s kernels: its work-group or local "
                     "memory limits are too small",
                     rt->info.name, v->name);
}

attn_status attn_cl_progcache_get(attn_cl_runtime *rt, int variant,
                                  const attn_cl_tuning *t, const char *extra,
                                  attn_dtype dtype, const attn_cl_built **out,
                                  attn_err *err)
{
    const attn_cl_variant *v = attn_cl_variants[variant];
    char key[1024], defs[512];
    entry *e;
    attn_status s = ATTN_OK;
    attn_cl_tuning_defines(v, t, defs, sizeof defs);
    snprintf(key, sizeof key, "%d|%s|%s", (int)dtype, defs, extra);
    pthread_mutex_lock(&rt->lock);
    for (e = rt->progs; e; e = e->next)
        if (e->variant == variant && e->dtype == dtype && !strcmp(e->key, key))
            break;
    if (!e) {
        attn_err e2 = {{0}};
        if (!(e = calloc(1, sizeof *e)) || !(e->key = strdup(key))) {
            free(e);
            pthread_mutex_unlock(&rt->lock);
            return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                             "cannot allocate a program entry");
        }
        e->variant = variant;
        e->dtype = dtype;
        if ((s = build_entry(rt, e, *t, extra, &e2))) {
            e->failed = s;
            memcpy(e->why, e2.msg, sizeof e->why);
        }
        e->next = rt->progs;
        rt->progs = e;
    }
    if (e->failed)
        s = attn_fail(err, e->failed, "%s", e->why);
    else
        *out = &e->b;
    pthread_mutex_unlock(&rt->lock);
    return s;
}

attn_status attn_cl_kernels_take(attn_cl_runtime *rt, const attn_cl_built *b,
                                 cl_kernel *k, attn_err *err)
{
    entry *e = (entry *)b;
    const attn_cl_variant *v = attn_cl_variants[e->variant];
    kernel_set set;
    attn_status s;
    pthread_mutex_lock(&rt->lock);
    if (e->n_free > 0) {
        set = e->free_sets[--e->n_free];
        pthread_mutex_unlock(&rt->lock);
        memcpy(k, set.k, sizeof set.k);
        return ATTN_OK;
    }
    pthread_mutex_unlock(&rt->lock);
    /* Another call holds the kept kernels: this one gets its own. */
    if ((s = create_set(b->prog, v, &set, err)))
        return s;
    memcpy(k, set.k, sizeof set.k);
    return ATTN_OK;
}

void attn_cl_kernels_give(attn_cl_runtime *rt, const attn_cl_built *b,
                          cl_kernel *k)
{
    entry *e = (entry *)b;
    kernel_set set;
    memcpy(set.k, k, sizeof set.k);
    pthread_mutex_lock(&rt->lock);
    if (e->n_free < FREE_SETS_MAX) {
        e->free_sets[e->n_free++] = set;
        set.k[0] = NULL;
    }
    pthread_mutex_unlock(&rt->lock);
    if (set.k[0])
        release_set(&set, n_kernels(attn_cl_variants[e->variant]));
    memset(k, 0, sizeof set.k);
}

void attn_cl_progcache_free(attn_cl_runtime *rt)
{
    entry *e = rt->progs;
    while (e) {
        entry *next = e->next;
        entry_clear(e);
        free(e->key);
        free(e);
        e = next;
    }
    rt->progs = NULL;
}
