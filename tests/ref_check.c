/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Comparison of library outputs with the reference: the tolerance model of
 * ref.h, exact treatment of hidden rows (O = 0, lse = -inf), NaN always
 * fails, and a one-line report of the worst element on failure.
 */
#include "ref.h"

#include <math.h>
#include <stdio.h>

/* The worst offender seen so far; excess = err / tol, infinite for an
 * element that must match exactly or is not finite. */
typedef struct worst {
    size_t bad, index;
    double excess, got, want, tol;
} worst;

static void note(worst *w, size_t index, double got, double want, double tol,
                 double excess)
{
    w->bad++;
    if (w->bad == 1 || excess > w->excess) {
        w->excess = excess;
        w->index = index;
        w->got = got;
        w->want = want;
        w->tol = tol;
    }
}

/* One element: exact when want is infinite, else within tol. */
static void compare(worst *w, size_t index, double got, double want, double tol)
{
    if (isnan(got) || isnan(want)) {
        note(w, index, got, want, tol, INFINITY);
        return;
    }
    if (isinf(want) || isinf(got)) {
        if (got != want)
            note(w, index, got, want, tol, INFINITY);
        return;
    }
    double err = fabs(got - want);
    if (err > tol)
        note(w, index, got, want, tol, err / tol);
}

static void report_sdpa(const char *what, const char *name,
                        const attn_sdpa_desc *d, const worst *w, size_t n,
                        size_t inner)
{
    size_t row = w->index / inner, c = w->index % inner;
    size_t i = row % (size_t)d->seq_q;
    size_t h = row / (size_t)d->seq_q % (size_t)d->heads_q;
    size_t b = row / ((size_t)d->seq_q * (size_t)d->heads_q);
    char at[96];
    if (inner > 1)
        snprintf(at, sizeof at, "b=%zu h=%zu i=%zu c=%zu", b, h, i, c);
    else
        snprintf(at, sizeof at, "b=%zu h=%zu i=%zu", b, h, i);
    printf("\nFAIL %s: %s[%zu] (%s): got %.9g expected %.9g tol %.3g; %zu of "
           "%zu elements wrong\n",
           what, name, w->index, at, w->got, w->want, w->tol, w->bad, n);
}

/* The extra tolerances of row at precision p (ref.h): *tol_o for each
 * element of O, *tol_lse for lse. */
void ref_row_tol(const ref_sdpa_result *r, size_t row, attn_precision p,
                 double *tol_o, double *tol_lse)
{
    *tol_o = r->tol_o[row];
    *tol_lse = r->tol_lse[row];
    ref_tol_at(p, r->mag[row], r->vmax[row], tol_o, tol_lse);
}

double ref_o_excess_f32(const ref_sdpa_result *r, const float *o,
                        attn_precision p)
{
    double most = 0.0, tol_o, tol_lse;
    for (size_t row = 0; row < r->rows; row++) {
        if (r->hidden[row])
            continue;
        ref_row_tol(r, row, p, &tol_o, &tol_lse);
        for (size_t c = 0; c < (size_t)r->dv; c++) {
            double want = r->o[row * (size_t)r->dv + c];
            double tol = REF_F32_ABS + REF_F32_REL * fabs(want) + tol_o;
            double x = fabs((double)o[row * (size_t)r->dv + c] - want) / tol;
            most = x > most ? x : most;
        }
    }
    return most;
}

int ref_check_sdpa(const char *what, const attn_sdpa_desc *d,
                   const ref_sdpa_result *r, const void *o, const float *lse,
                   const unsigned char *skip_rows)
{
    return ref_check_sdpa_at(what, d, r, o, lse, skip_rows,
                             ATTN_PRECISION_EXACT);
}

int ref_check_sdpa_at(const char *what, const attn_sdpa_desc *d,
                      const ref_sdpa_result *r, const void *o, const float *lse,
                      const unsigned char *skip_rows, attn_precision p)
{
    const attn_dtype dt = d->dtype;
    const size_t dv = (size_t)r->dv;
    worst wo = {0, 0, 0.0, 0.0, 0.0, 0.0};
    worst wl = wo;
    for (size_t row = 0; row < r->rows; row++) {
        double tol_o, tol_lse;
        if (skip_rows && skip_rows[row])
            continue;
        ref_row_tol(r, row, p, &tol_o, &tol_lse);
        for (size_t c = 0; c < dv; c++) {
            size_t e = row * dv + c;
            double got = ref_elem(dt, o, e);
            double want = r->o[e];
            if (r->hidden[row]) {
                if (got != 0.0)
                    note(&wo, e, got, 0.0, 0.0, INFINITY);
                continue;
            }
            double tol = REF_F32_ABS + REF_F32_REL * fabs(want) + tol_o;
            if (dt == ATTN_F16)
                tol += REF_F16_ABS + REF_F16_REL * fabs(want);
            else if (dt == ATTN_BF16)
                tol += REF_BF16_ABS + REF_BF16_REL * fabs(want);
            compare(&wo, e, got, want, tol);
        }
        if (lse) {
            double want = r->lse[row];
            double tol = REF_LSE_ABS + REF_LSE_REL * fabs(want) + tol_lse;
            compare(&wl, row, (double)lse[row], want, tol);
        }
    }
    if (wo.bad)
        report_sdpa(what, "O", d, &wo, r->rows * dv, dv);
    if (wl.bad)
        report_sdpa(what, "lse", d, &wl, r->rows, 1);
    return wo.bad == 0 && wl.bad == 0;
}

int ref_check_f32(const char *what, const float *got, const double *want,
                  size_t n, double abs_tol, double rel_tol)
{
    return ref_check_f32_tol(what, got, want, NULL, n, abs_tol, rel_tol);
}

int ref_check_f32_tol(const char *what, const float *got, const double *want,
                      const double *extra, size_t n, double abs_tol,
                      double rel_tol)
{
    worst w = {0, 0, 0.0, 0.0, 0.0, 0.0};
    for (size_t e = 0; e < n; e++)
        compare(&w, e, (double)got[e], want[e],
                abs_tol + rel_tol * fabs(want[e]) + (extra ? extra[e] : 0.0));
    if (w.bad)
        printf("\nFAIL %s: [%zu]: got %.9g expected %.9g tol %.3g; %zu of %zu "
               "elements wrong\n",
               what, w.index, w.got, w.want, w.tol, w.bad, n);
    return w.bad == 0;
}
