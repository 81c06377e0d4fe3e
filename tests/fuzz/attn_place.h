/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strided and packed attn_sdpa calls for the soak program and the fuzzer:
 * a generated shape's inputs (attn_gen.h) placed at its strides from the
 * contiguous copies sdpa_case_init makes of gen_sdpa_storage's problem,
 * and the checks of a call's outputs, gathered back to contiguous,
 * against the double-precision oracle.
 */
#ifndef ATTN_TEST_PLACE_H
#define ATTN_TEST_PLACE_H

#include <stddef.h>

#include "attn/attn.h"
#include "attn_gen.h"
#include "cases.h"
#include "ref.h"

/* The strided copies of a call's inputs: q, k, v in their layout (one
 * buffer for a fused QKV layout), the gaps between rows NaN, so that a
 * read of a gap shows in O; buf NULL where no copy was needed. */
typedef struct gen_placed {
    void *buf[3];
    void *q, *k, *v;
} gen_placed;

/* n elements of dtype dt, all NaN. */
void gen_fill_nan(void *p, size_t n, attn_dtype dt);

/* Places the contiguous c's inputs at the strides of d (nq, nk: the
 * storage's sizes over batch, heads and rows), or points at c's own
 * tensors for contiguous unpacked ones; 0 when out of memory.  Free
 * p->buf[0 .. 2]. */
int gen_place_inputs(const gen_sdpa *shape, const attn_sdpa_desc *d,
                     const sdpa_case *c, const size_t nq[3], const size_t nk[3],
                     gen_placed *p);

/* Output element e of o (dtype dt) as a double. */
double gen_out_at(attn_dtype dt, const void *o, size_t e);

/* Worst |got - want| / tol of O and lse with the tolerances of ref.h;
 * infinity for a NaN or a hidden row that is not exactly 0 / -inf. */
double gen_sdpa_ratio(const attn_sdpa_desc *d, const ref_sdpa_result *r,
                      const void *o, const float *lse);

/* Compares o (contiguous) and lse of the problem d (inputs q, k, v,
 * contiguous) with the oracle at precision prec (ref_check_sdpa_at); a
 * problem without keys (seq_kv 0) must give O = 0 and lse = -inf.  worst
 * (NULL: not asked), at EXACT, takes the worst error / tolerance. */
int gen_check_one(double *worst, attn_precision prec, const attn_sdpa_desc *d,
                  const void *q, const void *k, const void *v, const void *o,
                  const float *lse, const char *what);

/* The same for a packed batch: each sequence's own problem, cut out of
 * the contiguous storage c (gen_sdpa_storage) and of o and lse
 * (contiguous [1, heads_q, total_q, head_dim_v] and [heads_q, total_q]). */
int gen_check_packed(double *worst, attn_precision prec, const gen_sdpa *shape,
                     const sdpa_case *c, const void *o, const float *lse,
                     const char *what);

#endif /* ATTN_TEST_PLACE_H */
