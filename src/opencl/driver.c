/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The driver of the kernel variants (driver.h): the runtime's tuning and
 * choice, the choice of a variant for a shape, and one launch of it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl/driver.h"
#include "opencl/launch_common.h"

#define LOG2E 1.44269504088896340736

/* attn_prepared.data of the OpenCL backend. */
typedef struct cl_prep {
    const attn_cl_built *b;
    _Alignas(8) unsigned char geom[ATTN_CL_GEOM_BYTES];
} cl_prep;

_Static_assert(sizeof(cl_prep) <= ATTN_PREP_BYTES, "prepared state");

attn_status attn_cl_variants_init(attn_cl_runtime *rt, attn_err *err)
{
    rt->tuning = calloc((size_t)attn_cl_n_variants, sizeof *rt->tuning);
    if (!rt->tuning)
        return attn_fail(err, ATTN_ERR_OUT_OF_MEMORY,
                         "cannot allocate the kernel tuning");
    for (int v = 0; v < attn_cl_n_variants; v++)
        attn_cl_tuning_default(attn_cl_variants[v], &rt->tuning[v]);
    memset(&rt->choice, 0, sizeof rt->choice);
    rt->choice.path = ATTN_PATH_AUTO;
    rt->choice.forced = -1;
    rt->choice.bwd_forced = -1;
    for (int v = 0; v < attn_cl_n_variants && v < ATTN_CL_MAX_VARIANTS; v++)
        rt->choice.order[rt->choice.n_order++] = v;
    return ATTN_OK;
}

void attn_cl_variants_free(attn_cl_runtime *rt)
{
    attn_cl_progcache_free(rt);
    if (rt->dummy)
        clReleaseMemObject(rt->dummy);
    rt->dummy = NULL;
    free(rt->tuning);
    rt->tuning = NULL;
}

attn_status attn_cl_set_tuning(attn_cl_runtime *rt, int v,
                               const attn_cl_tuning *t, attn_err *err)
{
    attn_status s;
    if (!rt || !t || v < 0 || v >= attn_cl_n_variants)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_set_tuning: bad argument");
    if ((s = attn_cl_tuning_check(attn_cl_variants[v], t, err)))
        return s;
    pthread_mutex_lock(&rt->lock);
    rt->tuning[v] = *t;
    rt->epoch++;
    pthread_mutex_unlock(&rt->lock);
    return ATTN_OK;
}

void attn_cl_get_tuning(attn_cl_runtime *rt, int v, attn_cl_tuning *out)
{
    pthread_mutex_lock(&rt->lock);
    *out = rt->tuning[v];
    pthread_mutex_unlock(&rt->lock);
}

void attn_cl_set_choice(attn_cl_runtime *rt, const attn_cl_choice *c)
{
    pthread_mutex_lock(&rt->lock);
    rt->choice = *c;
    rt->epoch++;
    pthread_mutex_unlock(&rt->lock);
}

attn_status attn_cl_dummy(attn_cl_runtime *rt, cl_mem *out, attn_err *err)
{
    cl_int rc = CL_SUCCESS;
    pthread_mutex_lock(&rt->lock);
    if (!rt->dummy) {
        rt->dummy = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE, 16,
                                            NULL, &rc);
        if (rc != CL_SUCCESS)
            rt->dummy = NULL;
    }
    *out = rt->dummy;
    pthread_mutex_unlock(&rt->lock);
    if (rc != CL_SUCCESS)
        return attn_fail(err, attn_cl_status(rc), "clCreateBuffer failed: %s",
                         attn_cl_error_name(rc));
    return ATTN_OK;
}

/* ---- choosing ------------------------------------------------------------ */

typedef struct candidate {
    int v;
    int prefer; /* its prefer hook must agree (AUTO's order) */
} candidate;

static int listed(const candidate *c, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (c[i].v == v)
            return 1;
    return 0;
}

/* The variants to try for choice ch, in order. */
static int candidates(const attn_cl_choice *ch, candidate *c)
{
    int n = 0;
    if (ch->forced >= 0) {
        c[n++] = (candidate){ch->forced, 0};
        return n;
    }
    for (int i = 0; i < ch->n_order; i++) {
        const attn_cl_variant *v = attn_cl_variants[ch->order[i]];
        if (ch->path == ATTN_PATH_AUTO || v->path == ch->path)
            c[n++] = (candidate){ch->order[i], ch->path == ATTN_PATH_AUTO};
    }
    /* An explicit path takes its variants the order leaves out too. */
    for (int v = 0; ch->path != ATTN_PATH_AUTO && v < attn_cl_n_variants; v++)
        if (attn_cl_variants[v]->path == ch->path && !listed(c, n, v))
            c[n++] = (candidate){v, 0};
    for (int v = 0; v < attn_cl_n_variants; v++)
        if (attn_cl_variants[v]->universal && !listed(c, n, v))
            c[n++] = (candidate){v, 0};
    return n;
}

/* Readies variant vi for d: UNSUPPORTED when it does not take d. */
static attn_status try_variant(attn_cl_runtime *rt, int vi,
                               const attn_cl_tuning *t,
                               const attn_cl_limits *lim,
                               const attn_sdpa_desc *d, attn_prepared *out,
                               attn_err *err)
{
    const attn_cl_variant *v = attn_cl_variants[vi];
    cl_prep *pr = (cl_prep *)(void *)out->data;
    attn_cl_tuning eff;
    char extra[256] = "";
    uint64_t scratch = 0, largest = 0;
    attn_status s;
    if (!v->mask_shapes &&
        (d->mask.bias_kind > ATTN_BIAS_FULL ||
         (attn_causal_diag(d) != (long long)d->seq_kv - d->seq_q &&
          (d->mask.causal || d->mask.window > 0))))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "kernel variant \"%s\" takes neither a causal "
                         "mask or window off the bottom-right diagonal "
                         "(top-left, causal_offset) nor the bias kinds KEY and "
                         "BROADCAST (nor keep, which a device takes as one)",
                         v->name);
    if (!v->strides && attn_sdpa_strided(d))
        return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                         "kernel variant \"%s\" takes no strided tensors "
                         "(q_strides, k_strides, v_strides, o_strides)",
                         v->name);
    if ((s = v->supports(lim, t, d, err)))
        return s;
    if (v->defines)
        v->defines(lim, t, d, extra, sizeof extra);
    if ((s = attn_cl_progcache_get(rt, vi, t, extra, d->dtype, &pr->b, err)))
        return s;
    /* The build parameters as built, the others as asked now. */
    eff = pr->b->t;
    for (int i = 0; i < v->n_params; i++)
        if (v->params[i].flags & ATTN_CL_PARAM_RUNTIME)
            eff.v[i] = t->v[i];
    if ((s = v->plan(lim, pr->b, &eff, d, pr->geom, &scratch, err)))
        return s;
    out->variant = vi;
    out->name = v->name;
    /* What the variant computes at (a permission, attn.h): IEEE float
     * unless it says otherwise. */
    out->precision = v->precision ? v->precision(lim, d) : ATTN_PRECISION_EXACT;
    out->scratch = scratch;
    out->inputs = attn_cl_input_bytes(d, &largest);
    out->largest = scratch > largest ? scratch : largest;
    return ATTN_OK;
}

attn_status attn_cl_prepare(attn_cl_runtime *rt, const attn_sdpa_desc *d,
                            attn_prepared *out, attn_err *err)
{
    candidate c[2 * ATTN_CL_MAX_VARIANTS];
    attn_cl_choice ch;
    attn_cl_limits lim;
    attn_err why = {{0}};
    attn_status s = ATTN_ERR_UNSUPPORTED;
    int n;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&rt->lock);
    ch = rt->choice;
    pthread_mutex_unlock(&rt->lock);
    attn_cl_limits_get(rt, &lim);
    n = candidates(&ch, c);
    for (int i = 0; i < n; i++) {
        const attn_cl_variant *v = attn_cl_variants[c[i].v];
        attn_cl_tuning t;
        attn_cl_get_tuning(rt, c[i].v, &t);
        if (c[i].prefer && v->prefer && !v->prefer(&lim, &t, d))
            continue;
        why.msg[0] = '\0';
        s = try_variant(rt, c[i].v, &t, &lim, d, out, &why);
        if (s == ATTN_OK)
            return ATTN_OK;
        if (ch.forced >= 0)
            return attn_fail(err, s,
                             "kernel variant \"%s\" (forced) cannot run this "
                             "call on %s: %.300s",
                             v->name, rt->info.name, why.msg);
        if (s == ATTN_ERR_BUILD_FAILED && v->build_probe) {
            /* a compiler that cannot build it: the next variant runs (the
             * failed build is kept, not retried) */
            attn_log(rt->log, ATTN_LOG_WARN,
                     "kernel variant %s does not build on %s, the next one "
                     "runs: %.300s",
                     v->name, rt->info.name, why.msg);
            s = ATTN_ERR_UNSUPPORTED;
        }
        if (s != ATTN_ERR_UNSUPPORTED)
            return attn_fail(err, s, "%s", why.msg);
        attn_log(rt->log, ATTN_LOG_DEBUG, "kernel variant %s declines: %s",
                 v->name, why.msg);
    }
    return attn_fail(err, ATTN_ERR_UNSUPPORTED,
                     "no kernel variant takes this call on %s%s%.300s",
                     rt->info.name, why.msg[0] ? ": " : "", why.msg);
}

/* ---- one launch ---------------------------------------------------------- */

static void fill_launch(attn_cl_launch *L, const attn_sdpa_desc *d,
                        const attn_cl_tensors *t)
{
    const double scale =
        d->scale != 0.0f ? (double)d->scale : 1.0 / sqrt((double)d->head_dim);
    size_t st[3];
    L->d = d;
    L->t = t;
    L->has_lse = t->lse != NULL;
    L->bias_kind = (cl_int)d->mask.bias_kind;
    attn_bias_strides(d, st);
    L->bias_sb = (cl_ulong)st[0];
    L->bias_sh = (cl_ulong)st[1];
    L->bias_sq = (cl_ulong)st[2];
    L->has_kv_len = d->mask.kv_len != NULL;
    L->additive = d->score == ATTN_SCORE_ADDITIVE;
    L->causal = d->mask.causal != 0;
    L->window = attn_cl_window(d);
    L->diag = (cl_int)attn_causal_diag(d);
    L->heads_q = d->heads_q;
    L->heads_kv = d->heads_kv;
    L->seq_q = d->seq_q;
    L->seq_kv = d->seq_kv;
    L->head_dim = d->head_dim;
    L->head_dim_v = d->head_dim_v;
    L->scale = (cl_float)scale;
    L->scale2 = (cl_float)(L->additive ? LOG2E : scale * LOG2E);
    L->q_off = t->q_off;
    L->k_off = t->k_off;
    L->v_off = t->v_off;
    L->o_off = t->o_off;
    L->lse_off = t->lse_off;
    {
        cl_ulong4 *const dst[4] = {&L->q_st, &L->k_st, &L->v_st, &L->o_st};
        for (int i = 0; i < 4; i++) {
            attn_tensor_strides(d, ATTN_T_Q + i, st);
            memset(dst[i], 0, sizeof *dst[i]);
            for (int j = 0; j < 3; j++)
                dst[i]->s[j] = (cl_ulong)st[j];
        }
    }
}

attn_status attn_cl_run(attn_cl_runtime *rt, const attn_prepared *p,
                        const attn_sdpa_desc *d, const attn_cl_tensors *t,
                        const attn_cl_inputs *in, int own,
                        cl_command_queue queue, cl_uint n_wait,
                        const cl_event *wait, cl_event *done, attn_err *err)
{
    const cl_prep *pr = (const cl_prep *)(const void *)p->data;
    const attn_cl_variant *v;
    attn_cl_launch L;
    attn_cl_gate gate = ATTN_CL_GATE_INIT;
    cl_mem bias = NULL, kv_len = NULL, addw = NULL, scratch = NULL, dummy;
    cl_event last = NULL;
    int took = 0;
    attn_status s;
    cl_int rc;

    if ((s = attn_cl_check_call("attn_sdpa", rt, d, t, queue, n_wait, wait,
                                done, err)))
        return s;
    if (!p || p->variant < 0 || p->variant >= attn_cl_n_variants || !pr->b)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "attn_cl_run: no prepared variant");
    v = attn_cl_variants[p->variant];
    if ((s = attn_cl_check_tensors(d, t, err)))
        return s;
    memset(&L, 0, sizeof L);
    if (!in) {
        char what[64];
        snprintf(what, sizeof what, "the %s kernels", v->name);
        /* The scratch and the input copies fit the device: checked before
         * anything is allocated. */
        if ((s = attn_cl_check_launch_fit(rt, d, p->scratch, what, err)))
            return s;
    }
    if ((s = attn_cl_dummy(rt, &dummy, err)))
        return s;
    if (in) {
        bias = in->bias;
        kv_len = in->kv_len;
        addw = in->addw;
        scratch = in->scratch;
    } else {
        if ((s = attn_cl_copy_inputs(rt, d, &bias, &kv_len, &addw, err)))
            goto out;
        if (p->scratch) {
            scratch = ATTN_CL(clCreateBuffer)(rt->context, CL_MEM_READ_WRITE,
                                              (size_t)p->scratch, NULL, &rc);
            if (rc != CL_SUCCESS) {
                scratch = NULL;
                s = attn_fail(err, attn_cl_status(rc),
                              "cannot allocate the scratch of the %s kernels "
                              "(%llu bytes): %s",
                              v->name, (unsigned long long)p->scratch,
                              attn_cl_error_name(rc));
                goto out;
            }
        }
    }
    /* The gate holds every launch back until all are enqueued. */
    if ((s = attn_cl_gate_open(rt, own, n_wait, wait, &gate, err)) ||
        (s = attn_cl_kernels_take(rt, pr->b, L.k, err)))
        goto out;
    took = 1;
    fill_launch(&L, d, t);
    L.rt = rt;
    L.b = pr->b;
    L.geom = pr->geom;
    L.bias = bias ? bias : dummy;
    L.kv_len = kv_len ? kv_len : dummy;
    L.addw = addw ? addw : dummy;
    L.lse = t->lse ? t->lse : dummy;
    L.scratch = scratch ? scratch : dummy;
    L.queue = queue;
    L.n_wait = n_wait + 1;
    L.wait = gate.wl;
    rc = v->launch(&L, &last);
    if (rc != CL_SUCCESS)
        s = attn_fail(err, attn_cl_status(rc),
                      "enqueueing the %s kernels on %s failed: %s (%d)",
                      v->name, rt->info.name, attn_cl_error_name(rc), (int)rc);
out:
    if (took)
        attn_cl_kernels_give(rt, pr->b, L.k);
    s = attn_cl_gate_close(s, &gate, last, done, err);
    if (!in) {
        attn_cl_release_mem(scratch);
        attn_cl_release_mem(addw);
        attn_cl_release_mem(kv_len);
        attn_cl_release_mem(bias);
    }
    return s;
}
