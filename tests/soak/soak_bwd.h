/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-soak's backward path (soak_bwd.c).
 */
#ifndef ATTN_SOAK_BWD_H
#define ATTN_SOAK_BWD_H

#include <stdint.h>

#include "attn/attn.h"
#include "attn_gen.h"

/* One forward and attn_sdpa_backward of shape on ctx (dbias and
 * d_additive_w asked where the call has them: grads 1 always, 2 unless
 * the call has keep or starts, 0 never), outputs guarded; with
 * check, compared with the double reference and *ratio set to the worst
 * error as a fraction of the tolerance (else -1, and every gradient must
 * be finite).  Returns 1 when everything held; otherwise prints what
 * failed, labelled what. */
int soak_backward(attn_context *ctx, const gen_sdpa *shape, uint64_t seed,
                  int check, int grads, const char *what, double *ratio);

#endif /* ATTN_SOAK_BWD_H */
