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
 * (half an ulp, including the subnormal range).  lse is float for every
 * dtype.  A fully hidden row must give O exactly 0 and lse exactly -inf;
 * any NaN fails. */
#define REF_F32_ABS              3e-5
#define REF_F32_REL              1e-4
#define REF_F16_ABS              2.98023223876953125e-08 /* 2^-25 */
#define REF_F16_REL              4.8828125e-04           /* 2^-11 */
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

/* ---- IEEE binary16 ------------------------------------------------------- */
/* Round to nearest even; overflow gives infinity, NaN stays NaN. */
uint16_t ref_f32_to_f16(float f);
/* Exact. */
float ref_f16_to_f32(uint16_t h);

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
/* |got[e] - want[e]| <= abs_tol + rel_tol * |want[e]| for every e; an
 * infinite want must be matched exactly; NaN in got or want fails.  Prints
 * the worst element on failure.  Returns 1 when everything matches. */
int ref_check_f32(const char *what, const float *got, const double *want,
                  size_t n, double abs_tol, double rel_tol);

#endif /* ATTN_TEST_REF_H */
