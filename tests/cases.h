/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test problems: random inputs for one attn_sdpa or attn_mha_forward call,
 * the call itself with guarded outputs, and the check against the oracle.
 * Thread-safe (no shared state); used by test_sdpa, test_mha and
 * test_threads.
 */
#ifndef ATTN_TEST_CASES_H
#define ATTN_TEST_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "ref.h"

/* One attn_sdpa problem; d's pointer members point into the buffers. */
typedef struct sdpa_case {
    attn_sdpa_desc d;
    void *q, *k, *v;   /* d.dtype values */
    float *additive_w; /* [heads_q, head_dim] when ADDITIVE, else NULL */
    float *bias;       /* shaped by d.mask.bias_kind, or NULL */
    int32_t *kv_len;   /* [batch] or NULL */
    uint8_t *keep;     /* shaped by d.keep_shape, or NULL */
    int32_t *starts;   /* q_start then kv_start, [batch] each, or NULL */
    size_t nq, nk, nv, no, nlse, nbias, nkeep; /* element counts */
} sdpa_case;

/* Bits of sdpa_case_init's with_kv_len: kv_len, kv_start and q_start
 * drawn (1 alone is kv_len, as before the starts). */
#define CASE_KV_LEN   1
#define CASE_KV_START 2
#define CASE_Q_START  4

/* Builds the problem of shape (its pointer members are ignored): q and k
 * uniform in [-qk_amp, qk_amp], v in [-1, 1], additive_w in [-1, 1] for
 * ADDITIVE, a bias in [-1, 1] with a fraction ninf of -INFINITY entries
 * when shape->mask.bias_kind is set, kv_len uniform in [0, seq_kv] when
 * with_kv_len has CASE_KV_LEN, left-padding starts when it has
 * CASE_KV_START / CASE_Q_START, and a boolean mask keep (about a quarter of
 * its entries 0) when shape->keep_shape[0] is not 0.  The caller may edit
 * the buffers afterwards.  Returns 0, or -1 when memory runs out. */
int sdpa_case_init(sdpa_case *c, const attn_sdpa_desc *shape, uint64_t seed,
                   double qk_amp, double ninf, int with_kv_len);
void sdpa_case_free(sdpa_case *c);

/* The precision a call of d on ctx runs at, for its tolerance (ref.h):
 * EXACT unless ATTN_PRECISION asks for another; then what
 * attn_sdpa_precision says (EXACT when that fails, the strictest). */
attn_precision sdpa_case_ran_at(attn_context *ctx, const attn_sdpa_desc *d);

/* Runs attn_sdpa(ctx, c) with NaN-filled outputs surrounded by guard
 * elements (lse NULL unless with_lse), then checks: ATTN_OK, the guards
 * and every input untouched, and O / lse against ref (computed here when
 * ref is NULL; rows with skip_rows[row] set are not compared).  Returns 1
 * when all holds; otherwise prints what failed, labelled what. */
int sdpa_case_check(attn_context *ctx, const sdpa_case *c,
                    const ref_sdpa_result *ref, int with_lse,
                    const unsigned char *skip_rows, const char *what);

/* Builds the programs of ctx's backward now, not inside a timed or
 * measured call: one tiny attn_sdpa_backward (zero inputs, dot score) in
 * F32 and F16 storage for each class of head sizes a backward program is
 * built for (32, 64, 96, 128 at compile time; run-time sizes up to 64 and
 * up to 128 for head_dim and head_dim_v).  Returns the first status that
 * is not ATTN_OK, or ATTN_OK. */
attn_status sdpa_backward_warm(attn_context *ctx);

/* Shape and features of one attn_mha_forward problem. */
typedef struct mha_spec {
    int d_model, heads_q, heads_kv, head_dim;
    int batch, seq_q, seq_kv; /* seq_kv is ignored when self */
    int self;                 /* 1: x_kv NULL */
    int with_bias;            /* bq, bk, bv, bo present */
    attn_score score;
    attn_posenc posenc;
    int pos_offset;
    int causal, window, with_kv_len;
    attn_bias_kind bias_kind; /* bias [.., heads_q, seq_q, seq_kv] */
} mha_spec;

typedef struct mha_case {
    attn_mha_desc m;
    int batch, seq_q, seq_kv;
    float *x_q, *x_kv;  /* x_kv NULL for self-attention */
    float *w[4], *b[4]; /* q, k, v, o */
    float *additive_w, *pos_table, *bias;
    int32_t *kv_len;
    attn_mask_desc mask;
    size_t nxq, nxkv, ny;
} mha_case;

/* x in [-1, 1], weights scaled so that every activation stays O(1), a
 * LEARNED table with rows to spare (pos_table_len set).  Returns 0 or -1. */
int mha_case_init(mha_case *c, const mha_spec *s, uint64_t seed);
void mha_case_free(mha_case *c);
/* The reference y for c (ny doubles, malloc'ed), or NULL on failure. */
double *mha_case_reference(const mha_case *c);
/* Rounds every array of c's layer (weights, biases, additive_w, the
 * LEARNED table) to the values of dt (ATTN_F16 or ATTN_BF16), in place,
 * so that c->m and the reference see them, and sets *m16 to c->m with
 * weight_dtype dt pointing at 16-bit copies, held in *mem (one
 * allocation; free it).  Returns 0 or -1. */
int mha_case_weights16(mha_case *c, attn_dtype dt, attn_mha_desc *m16,
                       uint16_t **mem);
/* The precision the layer's attention of c runs at on ctx: EXACT unless
 * ATTN_PRECISION asks another, then what attn_sdpa_precision says of the
 * attention's shape (sdpa_case_ran_at). */
attn_precision mha_case_ran_at(attn_context *ctx, const mha_case *c);
/* Runs attn_mha_forward with a guarded y and checks ATTN_OK, guards and
 * inputs untouched, and y against ref (computed when NULL), at the
 * tolerance of the precision the attention ran at (mha_case_ran_at:
 * ref_mha_at's extra terms).  A forced kernel variant (ATTN_TEST_KERNEL)
 * that declines the layer's attention must leave y untouched; one that
 * takes it is counted (harness_taken).  Returns 1 when all holds. */
int mha_case_check(attn_context *ctx, const mha_case *c, const double *ref,
                   const char *what);

#endif /* ATTN_TEST_CASES_H */
