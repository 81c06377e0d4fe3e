/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Native scaled dot-product attention: a tiled online softmax
 * (flash-attention style) that never holds more than one key tile of scores.
 * This file owns the attn_cpu (pool, kernels, working memory) and sets up a
 * call; the tile loop is sdpa_tile.c, in the copy of the instruction set
 * the attn_cpu was created with.
 *
 * Working memory is per worker, allocated once per attn_cpu and grown when
 * a larger head_dim needs it.  The attn_cpu lock is held for a whole call:
 * the pool runs one job at a time anyway, and the lock keeps a concurrent
 * call from growing the buffers under a running job.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_impl.h"
#include "core/memsize.h"
#include "cpu/sdpa_job.h"

#define QT    ATTN_QTILE
#define LOG2E 1.4426950408889634f
#ifndef SDPA_DEC_ROWS
#define SDPA_DEC_ROWS 16
#endif
#define SDPA_DEC_SEQ_Q     8
#define SDPA_DEC_MIN_SPLIT 512

struct attn_cpu {
    attn_pool *pool;
    int workers;
    attn_cpu_isa isa;
    const attn_cpu_kern *kern; /* isa's copy of the hot code */
    pthread_mutex_t lock;      /* held for a whole attn_cpu_sdpa */
    float *mem;                /* workers * per_worker floats */
    float *part;               /* the decode form's key splits (dec_plan) */
    size_t part_floats;
    size_t per_worker;
    int cap_d, cap_dv;
    attn_precision asked; /* attn_cpu_set_precision */
    int amx;              /* attn_cpu_amx_available(isa) when created */
    /* the backward's working block, kept between calls (guarded by
     * bwd_lock; NULL when none is kept or a call holds it) */
    pthread_mutex_t bwd_lock;
    float *bwd_mem;
    size_t bwd_floats;
};

static size_t round16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Per worker: a slot per query tile of an item (SDPA_QGROUP, or
 * SDPA_QGROUP_MAX for an attn_cpu with the AMX kernels) of one query tile's
 * queries, output accumulators and per-lane statistics, then the buffers the
 * slots share (scores, packed K and V, additive weights). */
/* The sizes below hold the padding of the AMX kernels too (cpu_impl.h):
 * head dimensions and keys rounded up to 32. */
static size_t slot_floats(size_t d, size_t dv)
{
    return round16(d * QT) + round16(ATTN_AMX_DV(dv) * QT) + 4 * round16(QT) +
           round16(ATTN_AMX_D2(d) * QT);
}

/* Rows of the score tile, pairs of a key row, pairs of value rows. */
#define KROWS ((size_t)ATTN_AMX_KEYS(SDPA_KTILE))

static size_t vb_floats(size_t dv)
{
    size_t bf = KROWS / 2 * dv, amx = ATTN_AMX_DV(dv) * ATTN_AMX_VT;
    return round16(bf > amx ? bf : amx);
}

static size_t ws_slots(const attn_cpu *c)
{
    return c->amx ? SDPA_QGROUP_MAX : SDPA_QGROUP;
}

static size_t ws_floats(const attn_cpu *c, int d, int dv)
{
    size_t ud = (size_t)d, udv = (size_t)dv;

    return ws_slots(c) * slot_floats(ud, udv) + round16(KROWS * QT) +
           round16((size_t)SDPA_KTILE * ud) +
           round16((size_t)SDPA_KTILE * udv) + round16(ud) +
           round16(KROWS * ATTN_AMX_D2(ud)) + vb_floats(udv) +
           round16(KROWS / 2 * QT);
}

void attn_sdpa_ws_of(const attn_cpu *c, int worker, int slot,
                     struct attn_sdpa_ws *w)
{
    float *p = c->mem + (size_t)worker * c->per_worker;
    size_t ud = (size_t)c->cap_d, udv = (size_t)c->cap_dv;
    float *sl = p + (size_t)slot * slot_floats(ud, udv);

    w->qt = sl;
    sl += round16(ud * QT);
    w->ot = sl;
    sl += round16(ATTN_AMX_DV(udv) * QT);
    w->m = sl;
    w->l = sl + QT;
    w->alpha = sl + 2 * QT;
    w->smax = sl + 3 * QT;
    sl += 4 * round16(QT);
    /* 32-bit pairs in float-sized slots, 64-byte aligned like the rest */
    w->qb = (uint32_t *)(void *)sl;
    p += ws_slots(c) * slot_floats(ud, udv);
    w->s = p;
    p += round16(KROWS * QT);
    w->kc = p;
    p += round16((size_t)SDPA_KTILE * ud);
    w->vc = p;
    p += round16((size_t)SDPA_KTILE * udv);
    w->w = p;
    p += round16(ud);
    w->kb = (uint32_t *)(void *)p;
    p += round16(KROWS * ATTN_AMX_D2(ud));
    w->vb = (uint32_t *)(void *)p;
    p += vb_floats(udv);
    w->pb = (uint32_t *)(void *)p;
}

size_t attn_cpu_ws_bytes(const attn_cpu *c, int d, int dv)
{
    size_t per = ws_floats(c, d, dv);
    if (per > SIZE_MAX / sizeof(float) / (size_t)c->workers)
        return 0;
    return per * sizeof(float) * (size_t)c->workers;
}

int attn_cpu_workers(const attn_cpu *c)
{
    return c->workers;
}

const attn_cpu_kern *attn_cpu_kerns(const attn_cpu *c)
{
    return c->kern;
}

attn_cpu_isa attn_cpu_get_isa(const attn_cpu *c)
{
    return c->isa;
}

void attn_cpu_set_precision(attn_cpu *c, attn_precision asked)
{
    c->asked = asked;
}

attn_precision attn_cpu_precision(const attn_cpu *c)
{
    return c->asked;
}

/* Whether a call takes the decode form (dec_plan says why), unless TF32
 * is emulated. */
static int dec_form(const attn_sdpa_desc *d, int tf32)
{
    long long rows = (long long)(d->heads_q / d->heads_kv) * d->seq_q;

    return d->score == ATTN_SCORE_DOT && !tf32 && rows <= QT &&
           (rows <= SDPA_DEC_ROWS || d->seq_q <= SDPA_DEC_SEQ_Q);
}

attn_precision attn_cpu_sdpa_precision(const attn_cpu *c,
                                       const attn_sdpa_desc *d,
                                       attn_precision asked)
{
    /* The BF16 kernels take the tiled form's dot scores; the decode form
     * (few query rows, memory-bound) stays EXACT. */
    if (asked == ATTN_PRECISION_BF16 && d->score == ATTN_SCORE_DOT &&
        !dec_form(d, 0) && attn_cpu_bf16_available(c->isa))
        return ATTN_PRECISION_BF16;
    return ATTN_PRECISION_EXACT;
}

/* Makes the working memory fit head sizes d, dv; called with c->lock held.
 * The memory is touched here so that page faults stay out of the kernels. */
static attn_status ws_reserve(attn_cpu *c, int d, int dv)
{
    int nd = d > c->cap_d ? d : c->cap_d;
    int ndv = dv > c->cap_dv ? dv : c->cap_dv;
    size_t per, bytes;
    void *mem = NULL;

    if (c->mem && nd == c->cap_d && ndv == c->cap_dv)
        return ATTN_OK;
    bytes = attn_cpu_ws_bytes(c, nd, ndv);
    per = ws_floats(c, nd, ndv);
    /* More than the host has is refused before it is allocated (the memory
     * is touched below, so overcommit would not save it). */
    if (!bytes || (attn_host_memory_bytes() != 0 &&
                   (uint64_t)bytes > attn_host_memory_bytes()))
        return ATTN_ERR_OUT_OF_MEMORY;
    if (posix_memalign(&mem, SDPA_ALIGN, bytes) != 0)
        return ATTN_ERR_OUT_OF_MEMORY;
    memset(mem, 0, bytes);
    free(c->mem);
    c->mem = mem;
    c->per_worker = per;
    c->cap_d = nd;
    c->cap_dv = ndv;
    return ATTN_OK;
}

attn_status attn_cpu_create(int threads, attn_cpu_isa isa, attn_cpu **out)
{
    attn_cpu *c;
    attn_status st;

    if (!out)
        return ATTN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (threads < 1 || !attn_cpu_isa_available(isa))
        return ATTN_ERR_INVALID_ARGUMENT;
    c = calloc(1, sizeof *c);
    if (!c)
        return ATTN_ERR_OUT_OF_MEMORY;
    c->isa = isa;
    c->kern = attn_cpu_isa_kern(isa);
    c->amx = attn_cpu_amx_available(isa);
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    if (pthread_mutex_init(&c->bwd_lock, NULL) != 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    st = attn_pool_create(threads, &c->pool);
    if (st != ATTN_OK)
        goto fail_pool;
    c->workers = attn_pool_threads(c->pool);
    /* head sizes up to 128 need no growth later */
    st = ws_reserve(c, 128, 128);
    if (st != ATTN_OK)
        goto fail_ws;
    *out = c;
    return ATTN_OK;

fail_ws:
    attn_pool_destroy(c->pool);
fail_pool:
    pthread_mutex_destroy(&c->bwd_lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return st;
}

void attn_cpu_destroy(attn_cpu *c)
{
    if (!c)
        return;
    attn_pool_destroy(c->pool);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->bwd_lock);
    free(c->bwd_mem);
    free(c->mem);
    free(c->part);
    free(c);
}

attn_pool *attn_cpu_pool(attn_cpu *c)
{
    return c ? c->pool : NULL;
}

/* The largest working block kept between backward calls (64 MiB): past
 * it the first-touch cost is small next to the call's work. */
#define BWD_KEEP_FLOATS ((size_t)16 << 20)

float *attn_cpu_bwd_take(attn_cpu *c, size_t floats)
{
    float *p = NULL, *old = NULL;
    void *fresh = NULL;
    pthread_mutex_lock(&c->bwd_lock);
    if (c->bwd_mem && c->bwd_floats >= floats)
        p = c->bwd_mem;
    else
        old = c->bwd_mem; /* too small: not kept */
    c->bwd_mem = NULL;
    pthread_mutex_unlock(&c->bwd_lock);
    free(old);
    if (p)
        return p;
    if (floats > SIZE_MAX / sizeof(float) ||
        posix_memalign(&fresh, 64, (floats ? floats : 1) * sizeof(float)) != 0)
        return NULL;
    return fresh;
}

void attn_cpu_bwd_give(attn_cpu *c, float *mem, size_t floats)
{
    pthread_mutex_lock(&c->bwd_lock);
    if (!c->bwd_mem && floats <= BWD_KEEP_FLOATS) {
        c->bwd_mem = mem;
        c->bwd_floats = floats;
        mem = NULL;
    }
    pthread_mutex_unlock(&c->bwd_lock);
    free(mem);
}

/* The layouts d gives (its strides, or contiguous). */
static void default_layout(const attn_sdpa_desc *d, attn_cpu_layout *l)
{
    attn_tensor_strides(d, ATTN_T_Q, l->q);
    attn_tensor_strides(d, ATTN_T_K, l->k);
    attn_tensor_strides(d, ATTN_T_V, l->v);
    attn_tensor_strides(d, ATTN_T_O, l->o);
}

/* The decode form (sdpa_dec.c) for dot scores whose query rows per K/V
 * head (the GQA group times seq_q) are at most SDPA_DEC_ROWS, or at most
 * ATTN_QTILE with seq_q at most SDPA_DEC_SEQ_Q: there the tiled form,
 * which puts one head's queries in its lanes, leaves most of them empty.  The
 * keys are split when the (batch, kv head) pairs are too few to keep every
 * worker busy, into splits of at least SDPA_DEC_MIN_SPLIT keys.  The
 * merge's memory is the attn_cpu's, grown here and never shrunk (no
 * allocation per call); without it the keys are not split.  Called with
 * c->lock held. */
static void dec_plan(attn_cpu *c, const attn_sdpa_desc *d,
                     struct attn_sdpa_job *jb)
{
    long long units = (long long)d->batch * d->heads_kv;
    long long want = 4LL * c->workers, ns = 1;
    int rows = jb->group * d->seq_q;

    if (!dec_form(d, jb->tf32))
        return;
    jb->rows = rows;
    if (units < want)
        ns = (want + units - 1) / units;
    if (ns > d->seq_kv / SDPA_DEC_MIN_SPLIT)
        ns = d->seq_kv / SDPA_DEC_MIN_SPLIT;
    if (ns > 1) {
        long long len = (d->seq_kv + ns - 1) / ns;
        len = (len + SDPA_KTILE - 1) / SDPA_KTILE * SDPA_KTILE;
        ns = (d->seq_kv + len - 1) / len;
        size_t need = (size_t)(units * ns * rows) * ((size_t)d->head_dim_v + 2);
        /* grown, never shrunk: no allocation per call */
        if (need > c->part_floats) {
            free(c->part);
            c->part = malloc(need * sizeof(float));
            c->part_floats = c->part ? need : 0;
        }
        jb->part = c->part;
        if (jb->part) {
            jb->nsplit = (int)ns;
            jb->split_len = len;
            return;
        }
    }
    jb->nsplit = 1;
    jb->split_len = d->seq_kv;
}

attn_status attn_cpu_sdpa(attn_cpu *c, const attn_sdpa_desc *d, const void *q,
                          const void *k, const void *v, void *o, float *lse,
                          const attn_cpu_layout *layout, attn_precision emulate)
{
    struct attn_sdpa_job jb;
    attn_status st;
    size_t items;

    if (!c || !d)
        return ATTN_ERR_INVALID_ARGUMENT;
    memset(&jb, 0, sizeof jb);
    jb.cpu = c;
    jb.d = d;
    jb.q = q;
    jb.k = k;
    jb.v = v;
    jb.o = o;
    jb.lse = lse;
    if (layout)
        jb.lay = *layout;
    else
        default_layout(d, &jb.lay);
    jb.f16 = d->dtype == ATTN_BF16 ? 2 : d->dtype == ATTN_F16;
    jb.group = d->heads_q / d->heads_kv;
    jb.nqt = (d->seq_q + QT - 1) / QT;
    jb.tf32 = emulate == ATTN_PRECISION_TF32;
    jb.bf16 = attn_cpu_sdpa_precision(c, d, emulate) == ATTN_PRECISION_BF16;
    jb.amx = jb.bf16 && c->amx;
    jb.qgroup = jb.amx ? SDPA_QGROUP_AMX : SDPA_QGROUP;
    jb.nat = d->mask.bias_kind != ATTN_BIAS_NONE;
    attn_bias_strides(d, jb.bias_st);
    attn_keep_strides(d, jb.keep_st);
    jb.unit = jb.nat ? LOG2E : 1.0f;
    if (d->score == ATTN_SCORE_ADDITIVE)
        jb.qscale = 1.0f;
    else
        jb.qscale =
            (d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim)) *
            (jb.nat ? 1.0f : LOG2E);
    items = (size_t)((jb.nqt + jb.qgroup - 1) / jb.qgroup) * (size_t)d->batch *
            (size_t)d->heads_q;
    pthread_mutex_lock(&c->lock);
    dec_plan(c, d, &jb);
    st = ws_reserve(c, d->head_dim, d->head_dim_v);
    if (st == ATTN_OK && jb.rows) {
        size_t units = (size_t)d->batch * (size_t)d->heads_kv;
        attn_pool_run(c->pool, units * (size_t)jb.nsplit,
                      c->kern->sdpa_dec_item, &jb);
        if (jb.nsplit > 1)
            attn_pool_run(c->pool, units, c->kern->sdpa_dec_combine, &jb);
    } else if (st == ATTN_OK) {
        attn_pool_run(c->pool, items, c->kern->sdpa_item, &jb);
    }
    pthread_mutex_unlock(&c->lock);
    if (st == ATTN_OK) /* the padding rows of q_start */
        attn_pad_rows_zero(d, jb.lay.o, o, lse);
    return st;
}

attn_status attn_cpu_mha(attn_cpu *c, const attn_mha_call *call, attn_err *err)
{
    return c->kern->mha(c, call, err);
}
