/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-soak's backward path: a forward (with lse) and its
 * attn_sdpa_backward, dbias asked whenever the call has a bias and
 * d_additive_w for the additive score (grads 1; 0: neither, as for
 * bwd_fused; 2: not where keep or the starts would be merged into the
 * device's bias, as for bwd_ref), every output with guards.  A
 * checked call is compared with the double reference (tests/ref_bwd.c); the
 * others must give finite gradients.
 *
 * Tolerance per element of a gradient whose reference has the largest
 * magnitude M: TOL * (M + 1) * (1 + B / 64) + TOL * |want|, TOL as in
 * tests/test_bwd_grads.c (1e-4 F32, 3e-4 additive, 8e-3 F16) and
 * tests/test_backward.c (6.4e-2 BF16: 8 times F16's, bfloat16's unit
 * roundoff 2^-8 against binary16's 2^-11), and B the
 * largest |score| the inputs allow (scale * head_dim * qk_amp^2, or
 * 2 * head_dim for the additive score): float scores carry an error
 * about B times the unit roundoff into P = exp(S - lse).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "ref.h"
#include "soak_bwd.h"

#define G 16 /* guard floats either side of an output */

/* n bytes with guards, 0xff everywhere. */
static unsigned char *guarded(size_t n)
{
    unsigned char *p = malloc(n + 2 * G * 4);
    if (p)
        memset(p, 0xff, n + 2 * G * 4);
    return p;
}

static int guards_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < G * 4; i++)
        if (p[i] != 0xff || p[G * 4 + n + i] != 0xff)
            return 0;
    return 1;
}

/* Element i of x stored as dt (a gradient tensor, or a float one as F32). */
static double val(attn_dtype dt, const void *x, size_t i)
{
    return dt == ATTN_F16    ? (double)ref_f16_to_f32(((const uint16_t *)x)[i])
           : dt == ATTN_BF16 ? (double)ref_bf16_to_f32(((const uint16_t *)x)[i])
                             : (double)((const float *)x)[i];
}

/* Worst |got - want| / tol over n elements (infinity for a NaN). */
static double worst_ratio(attn_dtype dt, const void *got, const double *want,
                          size_t n, double tol, double widen)
{
    double m = 0.0, w = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs(val(dt, got, i) - want[i]) /
                   (tol * (m + 1.0) * widen + tol * fabs(want[i]));
        if (isnan(e))
            return INFINITY;
        w = fmax(w, e);
    }
    return w;
}

static double *to_f64(attn_dtype dt, const void *x, size_t n)
{
    double *y = malloc(n * sizeof *y + 8);
    for (size_t i = 0; y && i < n; i++)
        y[i] = val(dt, x, i);
    return y;
}

int soak_backward(attn_context *ctx, const gen_sdpa *shape, uint64_t seed,
                  int check, int grads, const char *what, double *ratio)
{
    sdpa_case c;
    const attn_sdpa_desc *d;
    unsigned char *buf[7] = {NULL};
    double *in8[4] = {NULL}, *ref[5] = {NULL};
    void *o, *dout, *gq, *gk, *gv;
    float *lse, *dbias = NULL, *dw = NULL;
    size_t es, nb = 0, nw = 0, n[7];
    attn_sdpa_grad g = ATTN_SDPA_GRAD_INIT;
    attn_status s;
    int ok = 1;
    attn_dtype dt;

    *ratio = -1.0;
    if (sdpa_case_init(&c, &shape->d, seed, shape->qk_amp, shape->ninf,
                       shape->with_kv_len) != 0) {
        printf("FAIL %s: out of memory building the inputs\n", what);
        return 0;
    }
    d = &c.d;
    if (grads == 2 && (d->keep || d->kv_start || d->q_start))
        grads = 0; /* merged into a device's bias: no dbias there */
    dt = d->dtype;
    es = dt == ATTN_F32 ? 4 : 2;
    if (c.bias && grads)
        nb = c.nbias;
    if (d->score == ATTN_SCORE_ADDITIVE && grads)
        nw = (size_t)d->heads_q * (size_t)d->head_dim;
    /* o, dO, lse, dq, dk, dv, dbias, d additive_w */
    n[0] = c.no * es, n[1] = c.nlse * 4, n[2] = c.nq * es, n[3] = c.nk * es;
    n[4] = c.nv * es, n[5] = nb * 4, n[6] = nw * 4;
    for (int i = 0; i < 7; i++)
        if (!(buf[i] = guarded(n[i])))
            ok = 0;
    dout = malloc(c.no * es + 4);
    if (!ok || !dout) {
        printf("FAIL %s: out of memory\n", what);
        ok = 0;
        goto out;
    }
    o = buf[0] + G * 4;
    lse = (float *)(buf[1] + G * 4);
    gq = buf[2] + G * 4, gk = buf[3] + G * 4, gv = buf[4] + G * 4;
    if (nb)
        dbias = (float *)(buf[5] + G * 4);
    if (nw)
        dw = (float *)(buf[6] + G * 4);
    {
        ref_rng r;
        ref_rng_seed(&r, seed ^ 0x2545f4914f6cdd1dull);
        if (dt == ATTN_F16)
            ref_fill_f16(&r, dout, c.no, -1.0, 1.0);
        else if (dt == ATTN_BF16)
            ref_fill_bf16(&r, dout, c.no, -1.0, 1.0);
        else
            ref_fill_f32(&r, dout, c.no, -1.0, 1.0);
    }
    s = attn_sdpa(ctx, d, c.q, c.k, c.v, o, lse);
    g.q = c.q, g.k = c.k, g.v = c.v, g.o = o, g.lse = lse, g.d_o = dout;
    g.dq = gq, g.dk = gk, g.dv = gv, g.dbias = dbias, g.d_additive_w = dw;
    if (s == ATTN_OK)
        s = attn_sdpa_backward(ctx, d, &g);
    if (s != ATTN_OK) {
        printf("FAIL %s: %s (%s)\n", what, attn_status_string(s),
               attn_context_last_error(ctx));
        ok = 0;
        goto out;
    }
    for (int i = 0; i < 7; i++)
        if (!guards_ok(buf[i], n[i])) {
            printf("FAIL %s: the backward wrote outside an output (%d)\n", what,
                   i);
            ok = 0;
        }
    if (!check) {
        const void *outs[5] = {gq, gk, gv, dbias, dw};
        const size_t cnt[5] = {c.nq, c.nk, c.nv, nb, nw};
        for (int t = 0; t < 5 && ok; t++)
            for (size_t i = 0; i < cnt[t] && ok; i++)
                if (!isfinite(val(t < 3 ? dt : ATTN_F32, outs[t], i))) {
                    printf("FAIL %s: gradient %d [%zu] is not finite\n", what,
                           t, i);
                    ok = 0;
                }
        goto out;
    }
    in8[0] = to_f64(dt, c.q, c.nq), in8[1] = to_f64(dt, c.k, c.nk);
    in8[2] = to_f64(dt, c.v, c.nv), in8[3] = to_f64(dt, dout, c.no);
    ref[0] = malloc(c.nq * 8 + 8), ref[1] = malloc(c.nk * 8 + 8);
    ref[2] = malloc(c.nv * 8 + 8), ref[3] = malloc(nb * 8 + 8);
    ref[4] = malloc(nw * 8 + 8);
    if (!in8[0] || !in8[1] || !in8[2] || !in8[3] || !ref[0] || !ref[1] ||
        !ref[2] || !ref[3] || !ref[4] ||
        ref_sdpa_backward_all_f64(d, in8[0], in8[1], in8[2], in8[3], ref[0],
                                  ref[1], ref[2], dbias ? ref[3] : NULL,
                                  dw ? ref[4] : NULL) != 0) {
        printf("FAIL %s: out of memory in the oracle\n", what);
        ok = 0;
        goto out;
    }
    {
        const double scale = d->scale != 0.0f ? fabs((double)d->scale)
                                              : 1.0 / sqrt((double)d->head_dim);
        const double bound =
            d->score == ATTN_SCORE_ADDITIVE
                ? 2.0 * d->head_dim
                : scale * d->head_dim * shape->qk_amp * shape->qk_amp;
        const double tol = dt == ATTN_F16                    ? 8e-3
                           : dt == ATTN_BF16                 ? 6.4e-2
                           : d->score == ATTN_SCORE_ADDITIVE ? 3e-4
                                                             : 1e-4;
        const double widen = 1.0 + bound / 64.0;
        const void *outs[5] = {gq, gk, gv, dbias, dw};
        const size_t cnt[5] = {c.nq, c.nk, c.nv, nb, nw};
        double w = 0.0;
        for (int t = 0; t < 5; t++)
            if (outs[t])
                w = fmax(w, worst_ratio(t < 3 ? dt : ATTN_F32, outs[t], ref[t],
                                        cnt[t], tol, widen));
        *ratio = w;
        if (!(w <= 1.0)) {
            printf("FAIL %s: gradients off the reference by %.3g x the "
                   "tolerance\n",
                   what, w);
            ok = 0;
        }
    }
out:
    for (int i = 0; i < 7; i++)
        free(buf[i]);
    for (int i = 0; i < 4; i++)
        free(in8[i]);
    for (int i = 0; i < 5; i++)
        free(ref[i]);
    free(dout);
    sdpa_case_free(&c);
    return ok;
}
