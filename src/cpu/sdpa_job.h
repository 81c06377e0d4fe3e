/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One call of the native attention, as sdpa.c (which builds it and owns the
 * working memory) hands it to the per-instruction-set tile code
 * (sdpa_tile.c).  Private to those two files.
 */
#ifndef ATTN_CPU_SDPA_JOB_H
#define ATTN_CPU_SDPA_JOB_H

#include "cpu/cpu_impl.h"

#ifndef SDPA_KTILE
#define SDPA_KTILE 64
#endif
#define SDPA_ALIGN 64

/* Buffers of one worker, each a multiple of 16 floats, all 64-byte aligned. */
struct attn_sdpa_ws {
    float *qt; /* [cap_d][QT]     queries, transposed and scaled */
    float *s;  /* [KTILE][QT]     scores, then probabilities */
    float *ot; /* [cap_dv][QT]    output accumulators, transposed */
    float *kc; /* [KTILE][cap_d]  keys packed / converted; scratch row */
    float *vc; /* [KTILE][cap_dv] values packed / converted; scratch */
    float *m, *l, *alpha, *smax; /* [QT] running max, sum, rescale, tile max */
    float *w; /* [cap_d]         additive weights (* log2(e) unless nat) */
};

struct attn_sdpa_job {
    const attn_cpu *cpu;
    const attn_sdpa_desc *d;
    const void *q, *k, *v;
    void *o;
    float *lse;
    attn_cpu_layout lay;
    float qscale; /* applied to q while packing: the scale, times log2(e)
                     unless nat */
    /* With a bias the scores stay in natural units (a bias near FLT_MAX
     * times log2(e) would overflow) and the softmax scales differences
     * from the running max instead: nat = 1, unit = log2(e).  Else the
     * scores are in log2 units from the start: nat = 0, unit = 1. */
    int nat;
    float unit;
    int f16;
    int tf32;  /* products of TF32-rounded inputs (attn_cpu_sdpa, emulate) */
    int group; /* heads_q / heads_kv */
    int nqt;   /* query tiles per head */
};

/* The working memory of one worker of the job's attn_cpu (sdpa.c). */
void attn_sdpa_ws_of(const attn_cpu *c, int worker, struct attn_sdpa_ws *w);

#endif /* ATTN_CPU_SDPA_JOB_H */
