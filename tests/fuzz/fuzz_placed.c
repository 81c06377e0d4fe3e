/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn_sdpa with strided tensors and packed variable-length batches (see
 * fuzz_common.h): the generated layouts run and checked against the
 * oracle, or, for a hostile input, one spoiled field (a negative stride,
 * strides whose extent overflows, o strides that make rows of o alias,
 * cu_seqlens that decrease, start past 0 or exceed seq_q / seq_kv, a
 * packed call with a mask or a batch stride) that attn.h's rules refuse;
 * half the strided calls that ran also run their backward, compared with
 * the contiguous problem's (check_backward).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "attn_gen.h"
#include "attn_place.h"
#include "cases.h"
#include "fuzz_common.h"
#include "ref.h"

#define FILL  0xa5 /* o's bytes before the call */
#define GUARD 64   /* bytes either side of o and lse */

/* o's rows apart (attn.h): the dimensions of more than one index, sorted
 * by stride, each at least the extent spanned by the smaller ones. */
static int rows_apart(const size_t n[3], size_t w, const int64_t st[3])
{
    size_t inner = w;
    int done[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        int m = -1;
        for (int i = 0; i < 3; i++)
            if (!done[i] && n[i] > 1 && (m < 0 || st[i] < st[m]))
                m = i;
        if (m < 0)
            break;
        done[m] = 1;
        if ((size_t)st[m] < inner)
            return 0;
        inner += (size_t)st[m] * (n[m] - 1);
    }
    return 1;
}

/* Extent of [n0, n1, n2, w] at st in bytes of elem, or 0 when a stride
 * is negative or the bytes pass PTRDIFF_MAX. */
static size_t extent_bytes(const size_t n[3], size_t w, const int64_t st[3],
                           size_t elem)
{
    size_t e = w, span;
    for (int i = 0; i < 3; i++) {
        if (st[i] < 0 ||
            __builtin_mul_overflow((size_t)st[i], n[i] - 1, &span) ||
            __builtin_add_overflow(e, span, &e))
            return 0;
    }
    if (__builtin_mul_overflow(e, elem, &e) || e > PTRDIFF_MAX)
        return 0;
    return e;
}

static int64_t *strides_of(attn_sdpa_desc *d, int t)
{
    return t == 0   ? d->q_strides
           : t == 1 ? d->k_strides
           : t == 2 ? d->v_strides
                    : d->o_strides;
}

/* Spoils one field of call (an input's or o's strides, or a packed
 * batch's arrays, copied to cu): returns the status attn.h asks for, or
 * ATTN_OK when the spoiled o strides still keep the rows apart. */
static attn_status spoil(gen_src *g, const gen_sdpa *shape,
                         attn_sdpa_desc *call, const size_t nq[3],
                         const size_t nk[3], int32_t cu[2][GEN_MAX_SEQS + 1],
                         int32_t *kv_len)
{
    const size_t es = call->dtype == ATTN_F32 ? 4 : 2;
    int what = gen_int(g, 0, shape->varlen ? 5 : 2);
    int t = gen_int(g, 0, 3), i = gen_int(g, 0, 2);
    const size_t *n = t == 1 || t == 2 ? nk : nq;
    const size_t w =
        (size_t)(t == 0 || t == 1 ? call->head_dim : call->head_dim_v);
    int64_t *st = strides_of(call, t), eff[3];
    gen_strides(st, n, w, shape->varlen, eff);
    switch (what) {
    case 0: /* negative */
        st[i] = gen_chance(g, 50) ? -1 : INT64_MIN + gen_int(g, 0, 9);
        return ATTN_ERR_INVALID_ARGUMENT;
    case 1: /* an extent past the address space, on a dimension of more
               than one index (a stride of one index is never used) */
        for (int j = 0; j < 3 && n[i] < 2; j++)
            i = (i + 1) % 3;
        if (n[i] < 2) {
            st[i] = -1;
            return ATTN_ERR_INVALID_ARGUMENT;
        }
        memcpy(st, eff, sizeof eff);
        st[i] = gen_chance(g, 50)
                    ? INT64_MAX - gen_int(g, 0, 9)
                    : (int64_t)((uint64_t)INT64_MAX / (n[i] - 1) / es + 1 +
                                (uint64_t)gen_int(g, 0, 99));
        return ATTN_ERR_INVALID_ARGUMENT;
    case 2: { /* o's rows brought together */
        int64_t *so = call->o_strides;
        gen_strides(so, nq, (size_t)call->head_dim_v, shape->varlen, eff);
        memcpy(so, eff, sizeof eff);
        if (gen_chance(g, 50))
            so[i] = gen_int(g, 0, call->head_dim_v);
        else
            so[i] = so[gen_int(g, 0, 2)];
        if (shape->varlen && so[0] != 0)
            return ATTN_ERR_INVALID_ARGUMENT;
        if (so[0] == 0 && so[1] == 0 && so[2] == 0)
            return ATTN_OK; /* the default layout again */
        return rows_apart(nq, (size_t)call->head_dim_v, so)
                   ? ATTN_OK
                   : ATTN_ERR_INVALID_ARGUMENT;
    }
    case 3: { /* cu_seqlens spoiled */
        const int B = call->batch, which = gen_int(g, 0, 1);
        const int most = which ? call->seq_kv : call->seq_q;
        int32_t *a = cu[which];
        int b = gen_int(g, 0, B);
        switch (gen_int(g, 0, 2)) {
        case 0: /* a sequence of negative length */
            if (b == 0)
                b = 1;
            a[b] = a[b - 1] - gen_int(g, 1, 5);
            break;
        case 1: /* one longer than seq_q / seq_kv */
            if (b == 0)
                b = 1;
            for (int j = b; j <= B; j++)
                a[j] += most + 1 - (a[b] - a[b - 1]) + gen_int(g, 0, 3);
            break;
        default: /* not starting at 0 */
            for (int j = 0; j <= B; j++)
                a[j] += gen_int(g, 1, 3);
            break;
        }
        return ATTN_ERR_INVALID_ARGUMENT;
    }
    case 4: /* a batch stride, or one array alone */
        if (gen_chance(g, 50)) {
            st[0] = gen_int(g, 1, 1000);
        } else if (gen_chance(g, 50)) {
            call->cu_seqlens_q = NULL;
        } else {
            call->cu_seqlens_kv = NULL;
        }
        return ATTN_ERR_INVALID_ARGUMENT;
    default: /* kv_len with packed sequences */
        for (int b = 0; b < call->batch; b++)
            kv_len[b] = 1;
        call->mask.kv_len = kv_len;
        return ATTN_ERR_UNSUPPORTED;
    }
}

/* The backward of a strided call (attn_sdpa_backward with d_o in o's
 * strides and dq, dk, dv in q's, k's and v's; for the fused QKV layout dq,
 * dk and dv are views of one block, as q, k and v are) against the same
 * context's backward of the contiguous problem, from the same o and lse:
 * the same gradients bit for bit (the strided call gathers its rows and
 * runs the contiguous backward), and nothing written but the gradients'
 * elements.  Returns 1 when it ran (0: unsupported on the device). */
static int check_backward(attn_context *ctx, const gen_sdpa *shape,
                          const attn_sdpa_desc *call, const sdpa_case *c,
                          const gen_placed *in, const size_t nq[3],
                          const size_t nk[3], const void *oc,
                          const int64_t so[3], size_t ob, const float *lse,
                          uint64_t seed, int on_device)
{
    const attn_dtype dt = call->dtype;
    const size_t es = dt == ATTN_F32 ? 4 : 2;
    const size_t w[3] = {(size_t)call->head_dim, (size_t)call->head_dim,
                         (size_t)call->head_dim_v};
    const size_t cnt[3] = {c->nq, c->nk, c->nv};
    const size_t *n[3] = {nq, nk, nk};
    int64_t st[3][3];
    size_t ext[3], at[3] = {0, 0, 0}, blk[3], all = 0;
    unsigned char *dos = malloc(ob + 1), *dc = malloc(c->no * es + 1);
    unsigned char *os = malloc(ob + 1); /* o at its strides again */
    unsigned char *buf[3] = {NULL, NULL, NULL}, *gs[3], *gc[3], *tmp;
    attn_sdpa_grad gr = ATTN_SDPA_GRAD_INIT, gcn = ATTN_SDPA_GRAD_INIT;
    attn_sdpa_desc dense = *call;
    attn_status s;
    ref_rng r;
    int ran;
    REQUIRE(dos && dc && os, "out of memory");
    memset(os, FILL, ob);
    gen_move(os, (void *)oc, es, nq, w[2], so, 1);
    ref_rng_seed(&r, seed ^ 0x9e3779b97f4a7c15ull);
    if (dt == ATTN_F16)
        ref_fill_f16(&r, (uint16_t *)dc, c->no, -1.0, 1.0);
    else if (dt == ATTN_BF16)
        ref_fill_bf16(&r, (uint16_t *)dc, c->no, -1.0, 1.0);
    else
        ref_fill_f32(&r, (float *)dc, c->no, -1.0, 1.0);
    memset(dos, FILL, ob);
    gen_move(dos, dc, es, nq, w[2], so, 1);
    gen_strides(call->q_strides, nq, w[0], 0, st[0]);
    gen_strides(call->k_strides, nk, w[1], 0, st[1]);
    gen_strides(call->v_strides, nk, w[2], 0, st[2]);
    for (int t = 0; t < 3; t++)
        ext[t] = gen_extent(n[t], w[t], st[t]);
    if (shape->layout == GEN_FUSED) { /* one block, as the inputs' */
        at[1] = nq[1] * w[0];
        at[2] = at[1] + nk[1] * w[1];
        for (int t = 0; t < 3; t++)
            all = at[t] + ext[t] > all ? at[t] + ext[t] : all;
        REQUIRE((buf[0] = malloc(all * es + 1)) != NULL, "out of memory");
        memset(buf[0], FILL, all * es);
        for (int t = 0; t < 3; t++)
            gs[t] = buf[0] + at[t] * es;
        blk[0] = all;
    } else {
        for (int t = 0; t < 3; t++) {
            REQUIRE((buf[t] = gs[t] = malloc(ext[t] * es + 1)) != NULL,
                    "out of memory");
            memset(buf[t], FILL, ext[t] * es);
            blk[t] = ext[t];
        }
    }
    gr.q = in->q, gr.k = in->k, gr.v = in->v, gr.o = os, gr.lse = lse;
    gr.d_o = dos, gr.dq = gs[0], gr.dk = gs[1], gr.dv = gs[2];
    s = attn_sdpa_backward(ctx, call, &gr);
    REQUIRE_STATUS(s, "attn_sdpa_backward");
    REQUIRE(s == ATTN_OK || (on_device && s == ATTN_ERR_UNSUPPORTED),
            "attn_sdpa_backward refused a strided call: %s (%s)",
            attn_status_string(s), attn_context_last_error(ctx));
    ran = s == ATTN_OK;
    if (ran) {
        memset(dense.q_strides, 0, sizeof dense.q_strides);
        memset(dense.k_strides, 0, sizeof dense.k_strides);
        memset(dense.v_strides, 0, sizeof dense.v_strides);
        memset(dense.o_strides, 0, sizeof dense.o_strides);
        for (int t = 0; t < 3; t++)
            REQUIRE((gc[t] = malloc(cnt[t] * es + 1)) != NULL, "out of memory");
        gcn.q = c->q, gcn.k = c->k, gcn.v = c->v, gcn.o = oc, gcn.lse = lse;
        gcn.d_o = dc, gcn.dq = gc[0], gcn.dk = gc[1], gcn.dv = gc[2];
        s = attn_sdpa_backward(ctx, &dense, &gcn);
        REQUIRE(s == ATTN_OK,
                "attn_sdpa_backward refused the contiguous problem of a "
                "strided call it ran: %s (%s)",
                attn_status_string(s), attn_context_last_error(ctx));
        REQUIRE((tmp = malloc(cnt[0] * es + cnt[1] * es + cnt[2] * es + 1)) !=
                    NULL,
                "out of memory");
        for (int t = 0; t < 3; t++) {
            gen_move(gs[t], tmp, es, n[t], w[t], st[t], 0);
            REQUIRE(memcmp(tmp, gc[t], cnt[t] * es) == 0,
                    "the strided backward's %s differs from the contiguous "
                    "one's",
                    t == 0   ? "dq"
                    : t == 1 ? "dk"
                             : "dv");
            /* the gradient's elements back to FILL: the rest must be */
            memset(tmp, FILL, cnt[t] * es);
            gen_move(gs[t], tmp, es, n[t], w[t], st[t], 1);
            free(gc[t]);
        }
        free(tmp);
    }
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; buf[t] && i < blk[t] * es; i++)
            REQUIRE(buf[t][i] == FILL,
                    "attn_sdpa_backward wrote outside the gradients' "
                    "elements (block %d, byte %zu)",
                    t, i);
    for (int t = 0; t < 3; t++)
        free(buf[t]);
    free(os);
    free(dos);
    free(dc);
    return ran;
}

int fuzz_sdpa_placed(gen_src *g, attn_context *ctx, const gen_sdpa *shape,
                     int hostile, int on_device)
{
    const uint64_t seed = gen_u64(g);
    int32_t cu[2][GEN_MAX_SEQS + 1], kv_len[GEN_MAX_SEQS];
    attn_sdpa_desc sd, call;
    attn_status want = ATTN_OK, s;
    attn_precision asked, runs = ATTN_PRECISION_EXACT;
    size_t es, nq[3], nk[3], ob = 0, i;
    int64_t so[3];
    unsigned char *obuf = NULL, *oc = NULL, *o;
    float *lbuf = NULL, *lse = NULL;
    gen_placed in;
    sdpa_case c;
    int ok = 1;

    gen_sdpa_storage(shape, &sd);
    REQUIRE(sdpa_case_init(&c, &sd, seed, shape->qk_amp, shape->ninf,
                           shape->with_kv_len) == 0,
            "out of memory");
    call = c.d;
    call.batch = shape->d.batch;
    call.seq_q = shape->d.seq_q;
    call.seq_kv = shape->d.seq_kv;
    call.mask.causal = shape->d.mask.causal;
    call.mask.window = shape->d.mask.window;
    memcpy(call.q_strides, shape->d.q_strides, sizeof call.q_strides);
    memcpy(call.k_strides, shape->d.k_strides, sizeof call.k_strides);
    memcpy(call.v_strides, shape->d.v_strides, sizeof call.v_strides);
    memcpy(call.o_strides, shape->d.o_strides, sizeof call.o_strides);
    if (shape->varlen) {
        memcpy(cu[0], shape->cu_q, sizeof cu[0]);
        memcpy(cu[1], shape->cu_kv, sizeof cu[1]);
        call.cu_seqlens_q = cu[0];
        call.cu_seqlens_kv = cu[1];
    }
    es = sd.dtype == ATTN_F32 ? 4 : 2;
    nq[0] = nk[0] = (size_t)sd.batch;
    nq[1] = (size_t)sd.heads_q;
    nk[1] = (size_t)sd.heads_kv;
    nq[2] = (size_t)sd.seq_q;
    nk[2] = (size_t)sd.seq_kv;
    REQUIRE(gen_place_inputs(shape, &call, &c, nq, nk, &in), "out of memory");
    if (hostile)
        want = spoil(g, shape, &call, nq, nk, cu, kv_len);
    /* o spans what its (maybe spoiled) strides span, or a few bytes when
     * they pass the address space (the call is then refused) */
    gen_strides(call.o_strides, nq, (size_t)sd.head_dim_v, shape->varlen, so);
    ob = extent_bytes(nq, (size_t)sd.head_dim_v, so, es);
    REQUIRE(want != ATTN_OK || ob > 0, "a valid o spanning nothing");
    if (ob > ((size_t)1 << 26))
        ob = 0; /* refused anyway: a spoiled stride */
    obuf = malloc(ob + 2 * GUARD);
    oc = malloc(c.no * es);
    if (shape->with_lse)
        lbuf = malloc(c.nlse * sizeof(float) + 2 * GUARD);
    REQUIRE(obuf && oc && (!shape->with_lse || lbuf), "out of memory");
    memset(obuf, FILL, ob + 2 * GUARD);
    o = obuf + GUARD;
    if (lbuf) {
        memset(lbuf, FILL, c.nlse * sizeof(float) + 2 * GUARD);
        lse = (float *)((unsigned char *)lbuf + GUARD);
    }
    snprintf(fuzz_current, sizeof fuzz_current,
             "placed attn_sdpa (%s): batch %d heads %d/%d seq %d/%d dims "
             "%d/%d dtype %d causal %d window %d layout %d/%d packed %d "
             "strides q {%lld %lld %lld} k {%lld %lld %lld} v {%lld %lld "
             "%lld} o {%lld %lld %lld} expected %s",
             on_device ? "OpenCL" : "native", call.batch, call.heads_q,
             call.heads_kv, call.seq_q, call.seq_kv, call.head_dim,
             call.head_dim_v, (int)call.dtype, call.mask.causal,
             call.mask.window, shape->layout, shape->o_layout, shape->varlen,
             (long long)call.q_strides[0], (long long)call.q_strides[1],
             (long long)call.q_strides[2], (long long)call.k_strides[0],
             (long long)call.k_strides[1], (long long)call.k_strides[2],
             (long long)call.v_strides[0], (long long)call.v_strides[1],
             (long long)call.v_strides[2], (long long)call.o_strides[0],
             (long long)call.o_strides[1], (long long)call.o_strides[2],
             attn_status_string(want));
    s = attn_sdpa(ctx, &call, in.q, in.k, in.v, o, lse);
    REQUIRE_STATUS(s, "attn_sdpa");
    for (i = 0; i < ob + 2 * GUARD && s != ATTN_OK; i++)
        REQUIRE(obuf[i] == FILL, "attn_sdpa wrote o on error (byte %zu)", i);
    if (want != ATTN_OK) {
        REQUIRE(s == want, "attn_sdpa returned %s, not %s (%s)",
                attn_status_string(s), attn_status_string(want),
                attn_context_last_error(ctx));
        ok = 0;
        goto out;
    }
    if (s == ATTN_ERR_UNSUPPORTED && on_device) {
        ok = -1;
        goto out;
    }
    REQUIRE(s == ATTN_OK, "attn_sdpa refused a valid call: %s (%s)",
            attn_status_string(s), attn_context_last_error(ctx));
    for (i = 0; i < GUARD; i++)
        REQUIRE(obuf[i] == FILL && obuf[GUARD + ob + i] == FILL,
                "attn_sdpa wrote outside o");
    for (i = 0; lbuf && i < GUARD; i++)
        REQUIRE(((unsigned char *)lbuf)[i] == FILL &&
                    ((unsigned char *)lse)[c.nlse * sizeof(float) + i] == FILL,
                "attn_sdpa wrote outside lse");
    /* the rows back, then the gaps: as they were */
    gen_move(o, oc, es, nq, (size_t)sd.head_dim_v, so, 0);
    {
        unsigned char *fill = malloc(c.no * es);
        REQUIRE(fill != NULL, "out of memory");
        memset(fill, FILL, c.no * es);
        gen_move(o, fill, es, nq, (size_t)sd.head_dim_v, so, 1);
        free(fill);
        for (i = 0; i < ob; i++)
            REQUIRE(o[i] == FILL, "attn_sdpa wrote a gap of o (byte %zu)", i);
    }
    /* inputs finite: so is every output */
    for (i = 0; i < c.no; i++)
        REQUIRE(isfinite(gen_out_at(sd.dtype, oc, i)), "O[%zu] is not finite",
                i);
    /* the plan query takes what attn_sdpa ran (a packed call is checked
     * at its totals by both) */
    s = attn_sdpa_precision(ctx, &call, &asked, &runs);
    REQUIRE(s == ATTN_OK,
            "attn_sdpa_precision refused a call attn_sdpa ran: %s (%s)",
            attn_status_string(s), attn_context_last_error(ctx));
    if (shape->varlen)
        REQUIRE(gen_check_packed(NULL, runs, shape, &c, oc, lse, "placed"),
                "a packed call differs from the oracle");
    else
        REQUIRE(
            gen_check_one(NULL, runs, &c.d, c.q, c.k, c.v, oc, lse, "placed"),
            "a strided call differs from the oracle");
    /* the backward of a strided (unpacked) call, half the time */
    if (!shape->varlen && lse && gen_chance(g, 50) &&
        check_backward(ctx, shape, &call, &c, &in, nq, nk, oc, so, ob, lse,
                       seed, on_device))
        ok = 2;
out:
    free(obuf);
    free(oc);
    free(lbuf);
    for (i = 0; i < 3; i++)
        free(in.buf[i]);
    sdpa_case_free(&c);
    return ok;
}
