/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Double-precision reference oracle for the libattn tests: naive attention
 * and a naive multi-head layer written straight from DESIGN.md "What is
 * computed", its own IEEE half conversion, a seeded PRNG for inputs and
 * comparison helpers that report the worst element.  Nothing here calls the
 * library; only the descriptor types of attn.h are shared.
 */
#ifndef ATTN_TEST_REF_H
#define ATTN_TEST_REF_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"

/* ---- tolerances: the one place ------------------------------------------
 * The reference is exact (double) for the very inputs the library saw (F16
 * inputs are converted from their half values), so a tolerance only covers
 * what float arithmetic and output rounding may add:
 *
 *   |got - ref| <= ABS + REL * |ref| + extra(row)
 *
 * extra(row) is the effect of float rounding of the scores: a score whose
 * terms have magnitude M (scale * sum_c |q_c k_c| + |bias|, or
 * sum_c |w_c| (1 + |q_c + k_c|) + |bias| for ADDITIVE) is off by at most
 * REF_LOGIT_ULPS(head_dim) * 2^-24 * M; a shift dS of the scores moves
 * lse by at most max|dS| and O by at most 2 * max|dS| * max|V| (over the
 * visible keys of the row).
 *
 * F16 outputs are rounded to half: add REF_F16_REL * |ref| + REF_F16_ABS
 * (half an ulp, including the subnormal range).  BF16 outputs are rounded
 * to bfloat16 (8 significant bits): add REF_BF16_REL * |ref| +
 * REF_BF16_ABS, half an ulp (2^-8 relatively) and, for an output below
 * 2^-126 that the store flushes to zero, that output's size.  lse is float for
 * every dtype.  A fully hidden row must give O exactly 0 and lse exactly -inf;
 * any NaN fails. */
#define REF_F32_ABS              3e-5
#define REF_F32_REL              1e-4
#define REF_F16_ABS              2.98023223876953125e-08 /* 2^-25 */
#define REF_F16_REL              4.8828125e-04           /* 2^-11 */
#define REF_BF16_ABS             0x1p-126
#define REF_BF16_REL             0x1p-8
#define REF_LSE_ABS              3e-5
#define REF_LSE_REL              3e-5
#define REF_LOGIT_ULPS(head_dim) ((double)(head_dim) + 8.0)
/* The multi-head layer chains three float GEMMs, positional encodings and
 * attention; activations are O(1) by construction of the test weights. */
#define REF_MHA_ABS 2e-4
#define REF_MHA_REL 2e-4
/* Sinusoidal table at position p: the angle p / 10000^(2i/d) computed in
 * float carries a relative error of a few ulps, i.e. an absolute error that
 * grows with p. */
#define REF_PE_ABS(p) (2e-6 + (double)(p)*32.0 * 5.9604644775390625e-08)

/* ---- precision (attn.h, attn_precision) ----------------------------------
 * The tolerance of a call that runs at a precision other than EXACT
 * follows from the rounding of the inputs of each product, nothing else.
 * u = 2^-11 is TF32's rounding unit (10 stored mantissa bits, round to
 * nearest): a TF32 input is a (1 + d), |d| <= u.
 * - TF32: a product of two rounded inputs is a b (1 + d1)(1 + d2), off by
 *   at most t = 2u + u^2 of |a b|.
 * - BF16: as TF32 with bfloat16's rounding unit u = 2^-8 (7 stored
 *   mantissa bits, round to nearest even): t = 2u + u^2 (about 2^-7).  The
 *   instruction (VDPBF16PS) also treats subnormal inputs as 0 and flushes
 *   subnormal sums to 0: an absolute error below 2^-126 per term, far
 *   inside REF_F32_ABS and REF_LSE_ABS.
 * - 3XTF32: a_hi = TF32(a), a_lo = TF32(a - a_hi) (a - a_hi is exact in
 *   float), a_r = a - a_hi - a_lo, so |a_lo| <= u |a|, |a_r| <= u^2 |a|,
 *   |a_hi| <= (1 + u) |a|; a_hi b_hi + a_hi b_lo + a_lo b_hi leaves out
 *   a_lo b_lo + a_hi b_r + a_r b_hi + a_lo b_r + a_r b_lo + a_r b_r, at
 *   most t = 3u^2 + 4u^3 + u^4 of |a b| (about 12 float ulps).
 * A score is a sum of such products whose magnitudes add up to at most M
 * (the row's magnitude above), so it moves by t M on top of float's
 * g M (g = REF_LOGIT_ULPS(head_dim) 2^-24): at most e = (g + t) M.  Then
 * lse moves by at most e (log-sum-exp is 1-Lipschitz in the max norm);
 * every probability by a factor within exp(-2e) .. exp(2e) (numerator and
 * sum each within exp(+-e)), so O = sum_j p_j v_j by at most
 * (exp(2e) - 1) V, V = max |v| over the row's visible keys; and the
 * products p v, p and v rounded too, add t exp(2e) V.  So at precision p:
 *   O:   tol_o(row) becomes (exp(2e) - 1) V + t exp(2e) V
 *   lse: tol_lse(row) becomes e
 * which at EXACT (t = 0) is the float model above (2 g M V to first
 * order; EXACT keeps that one).  F16 storage adds the output rounding as
 * before; its q, k, v are halves, exact in TF32, so the bound holds with
 * room (at BF16 the halves are rounded too, which t counts). */
#define REF_TF32_U 0x1p-11
#define REF_BF16_U 0x1p-8
/* t of a precision (0 for EXACT). */
double ref_precision_t(attn_precision p);
/* A row's tolerances at precision p from its EXACT ones (*tol_o, *tol_lse,
 * in and out), its magnitude M (mag) and max |v| (vmax), by the formulas
 * above; unchanged at EXACT. */
void ref_tol_at(attn_precision p, double mag, double vmax, double *tol_o,
                double *tol_lse);

/* ---- IEEE binary16 ------------------------------------------------------- */
/* Round to nearest even; overflow gives infinity, NaN stays NaN. */
uint16_t ref_f32_to_f16(float f);
/* Exact. */
float ref_f16_to_f32(uint16_t h);

/* ---- bfloat16 ------------------------------------------------------------ */
/* Round to nearest even to 8 significant bits; overflow gives infinity,
 * NaN stays NaN, a float below 2^-126 in magnitude gives a zero of its
 * sign (attn.h, ATTN_BF16). */
uint16_t ref_f32_to_bf16(float f);
/* Exact. */
float ref_bf16_to_f32(uint16_t h);
/* Element i of an array of dtype dt, as a double. */
double ref_elem(attn_dtype dt, const void *x, size_t i);

/* ---- seeded PRNG (splitmix64) -------------------------------------------- */
typedef struct ref_rng {
    uint64_t state;
} ref_rng;

void ref_rng_seed(ref_rng *r, uint64_t seed);
uint64_t ref_rng_next(ref_rng *r);
/* Uniform in [lo, hi). */
double ref_rng_uniform(ref_rng *r, double lo, double hi);
/* Uniform integer in [lo, hi] (inclusive). */
int ref_rng_int(ref_rng *r, int lo, int hi);
void ref_fill_f32(ref_rng *r, float *x, size_t n, double lo, double hi);
/* Values drawn in float, then rounded to half. */
void ref_fill_f16(ref_rng *r, uint16_t *x, size_t n, double lo, double hi);
/* Values drawn in float, then rounded to bfloat16. */
void ref_fill_bf16(ref_rng *r, uint16_t *x, size_t n, double lo, double hi);

/* ---- attention ------------------------------------------------------------
 */
/* Result of ref_sdpa; rows = batch * heads_q * seq_q, row-major as O. */
typedef struct ref_sdpa_result {
    size_t rows;
    int dv;
    double *o;             /* [rows, dv] */
    double *lse;           /* [rows] */
    double *tol_o;         /* [rows] extra(row) for O (see above) */
    double *tol_lse;       /* [rows] extra(row) for lse */
    double *mag;           /* [rows] M, the row's magnitude (above) */
    double *vmax;          /* [rows] max |v| over the row's visible keys */
    unsigned char *hidden; /* [rows] 1 when every key of the row is hidden */
} ref_sdpa_result;

/* Attention on inputs of d->dtype (the pointer members of d - additive_w,
 * kv_len, bias - are read as given; sizes are trusted).  Returns 0, or -1
 * when memory runs out.  Free the result with ref_sdpa_free. */
int ref_sdpa(const attn_sdpa_desc *d, const void *q, const void *k,
             const void *v, ref_sdpa_result *r);
/* The same on double inputs; lse, tol_o, tol_lse and hidden may be NULL.
 * Returns 0, or -1 when memory runs out. */
int ref_sdpa_f64(const attn_sdpa_desc *d, const double *q, const double *k,
                 const double *v, double *o, double *lse, double *tol_o,
                 double *tol_lse, unsigned char *hidden);
void ref_sdpa_free(ref_sdpa_result *r);

/* The score of (b, h, i, j) in double (dot or additive), bias included,
 * into *score: 1, or 0 when a mask (causal, window, kv_len, keep) hides
 * the key. */
int ref_score(const attn_sdpa_desc *d, const double *q, const double *k, int b,
              int h, int i, int j, double *score);
/* The element of d's bias (its kind's own shape, attn.h) that is added to
 * the score (b, h, i, j). */
size_t ref_bias_index(const attn_sdpa_desc *d, int b, int h, int i, int j);
/* The gradients of attn_sdpa's O (ref_bwd.c), all in double, laid out as
 * q, k, v and O: given dO, writes dq, dk and dv (which it zeroes first).
 * Returns 0, or -1 when memory runs out. */
int ref_sdpa_backward_f64(const attn_sdpa_desc *d, const double *q,
                          const double *k, const double *v, const double *d_o,
                          double *dq, double *dk, double *dv);
/* The same, and (each may be NULL) dbias in the bias's own shape and
 * d additive_w [heads_q, head_dim], zeroed first. */
int ref_sdpa_backward_all_f64(const attn_sdpa_desc *d, const double *q,
                              const double *k, const double *v,
                              const double *d_o, double *dq, double *dk,
                              double *dv, double *dbias, double *dw);

/* ---- multi-head layer and positional encodings --------------------------- */
/* PE[p][col] of DESIGN.md for a d_model-wide table. */
double ref_sinusoidal(double p, int col, int d_model);
/* y [batch, seq_q, d_model] of attn_mha_forward; x_kv NULL = self-attention
 * (seq_kv is then taken as seq_q); mask may be NULL.  In cross-attention the
 * additive encodings (SINUSOIDAL, LEARNED) are added to x_kv at key
 * positions 0 .. seq_kv-1, the same positions ROPE uses for the keys.
 * Returns 0 or -1 (memory). */
int ref_mha(const attn_mha_desc *m, int batch, int seq_q, int seq_kv,
            const float *x_q, const float *x_kv, const attn_mask_desc *mask,
            double *y);
/* The same with the dot score's scale (0 = 1/sqrt(head_dim)), as a layer
 * of attn_mha_create computes. */
int ref_mha_scaled(const attn_mha_desc *m, float scale, int batch, int seq_q,
                   int seq_kv, const float *x_q, const float *x_kv,
                   const attn_mask_desc *mask, double *y);
/* ref_mha, and in y_tol (batch x seq_q x d_model) each element's extra
 * tolerance when the layer's attention runs at precision p: O's row
 * tolerance at p (the precision block above, from the row's M and max |v|)
 * carried through the output projection by |wo| (0 at EXACT, where
 * REF_MHA_ABS and REF_MHA_REL cover float).  Returns 0 or -1 (memory). */
int ref_mha_at(const attn_mha_desc *m, attn_precision p, int batch, int seq_q,
               int seq_kv, const float *x_q, const float *x_kv,
               const attn_mask_desc *mask, double *y, double *y_tol);

/* ---- comparison ------------------------------------------------------------
 */
/* Compares O (d->dtype) and lse (float, may be NULL) with r using the
 * tolerances above.  Rows with skip_rows[row] != 0 are not compared
 * (skip_rows may be NULL).  Returns 1 when everything matches; otherwise
 * prints the worst element (index, got, expected) under the label what and
 * returns 0. */
int ref_check_sdpa(const char *what, const attn_sdpa_desc *d,
                   const ref_sdpa_result *r, const void *o, const float *lse,
                   const unsigned char *skip_rows);
/* The extra tolerances of row at precision p (the precision block above):
 * *tol_o for each element of O, *tol_lse for lse (r->tol_o[row] and
 * r->tol_lse[row] at EXACT). */
void ref_row_tol(const ref_sdpa_result *r, size_t row, attn_precision p,
                 double *tol_o, double *tol_lse);
/* The largest |got - ref| / tolerance over an F32 O at precision p's
 * tolerances (hidden rows left out): below 1 the check passes; how much of
 * the tolerance the results use. */
double ref_o_excess_f32(const ref_sdpa_result *r, const float *o,
                        attn_precision p);
/* The same for a call that ran at precision p: the tolerances of the
 * precision block above (ref_check_sdpa is this at EXACT). */
int ref_check_sdpa_at(const char *what, const attn_sdpa_desc *d,
                      const ref_sdpa_result *r, const void *o, const float *lse,
                      const unsigned char *skip_rows, attn_precision p);
/* |got[e] - want[e]| <= abs_tol + rel_tol * |want[e]| for every e; an
 * infinite want must be matched exactly; NaN in got or want fails.  Prints
 * the worst element on failure.  Returns 1 when everything matches. */
int ref_check_f32(const char *what, const float *got, const double *want,
                  size_t n, double abs_tol, double rel_tol);
/* The same with extra[e] added to element e's tolerance (extra may be
 * NULL). */
int ref_check_f32_tol(const char *what, const float *got, const double *want,
                      const double *extra, size_t n, double abs_tol,
                      double rel_tol);

#endif /* ATTN_TEST_REF_H */
