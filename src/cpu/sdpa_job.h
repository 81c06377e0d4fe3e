/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One call of the native attention, as sdpa.c (which builds it and owns the
 * working memory) hands it to the per-instruction-set tile code
 * (sdpa_tile.c) or, for few query rows per K/V head, to the decode code
 * (sdpa_dec.c).  Private to those files.
 */
#ifndef ATTN_CPU_SDPA_JOB_H
#define ATTN_CPU_SDPA_JOB_H

#include "cpu/cpu_impl.h"

#ifndef SDPA_KTILE
#define SDPA_KTILE 64
#endif
#define SDPA_ALIGN 64
/* Query tiles of one tiled-form item: each K/V tile is read once for all
 * of them (a head's K and V outgrow L2 at long sequences). */
#ifndef SDPA_QGROUP
#define SDPA_QGROUP 2
#endif
/* The same with the AMX kernels, whose products are short next to the
 * packing of K and V, which more query tiles then share. */
#ifndef SDPA_QGROUP_AMX
#define SDPA_QGROUP_AMX 4
#endif
#define SDPA_QGROUP_MAX                                                        \
    (SDPA_QGROUP > SDPA_QGROUP_AMX ? SDPA_QGROUP : SDPA_QGROUP_AMX)

/* Buffers of one worker, each a multiple of 16 floats, all 64-byte aligned. */
struct attn_sdpa_ws {
    float *qt; /* [cap_d][QT]     queries, transposed and scaled */
    float *s;  /* [KTILE][QT]     scores, then probabilities */
    float *ot; /* [cap_dv][QT]    output accumulators, transposed */
    float *kc; /* [KTILE][cap_d]  keys packed / converted; scratch row */
    float *vc; /* [KTILE][cap_dv] values packed / converted; scratch */
    float *m, *l, *alpha, *smax; /* [QT] running max, sum, rescale, tile max */
    float *w; /* [cap_d]         additive weights (* log2(e) unless nat) */
    /* bfloat16 pairs of the BF16 kernels (cpu_impl.h), d2 = (cap_d + 1) / 2 */
    uint32_t *qb; /* [d2][QT]             queries */
    uint32_t *kb; /* [KTILE][d2]          keys */
    uint32_t *vb; /* [KTILE / 2][cap_dv]  values, pairs of keys */
    uint32_t *pb; /* [KTILE / 2][QT]      probabilities, pairs of keys */
    /* The AMX kernels (cpu_impl.h) use qb, kb, pb in their padded sizes,
     * vb as vt[c][j2] and ot, s up to the padded head and key counts. */
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
    /* the bias's strides over batch, head and query (attn_bias_strides):
     * bias_st[2] is the distance between its query rows, 0 when broadcast */
    size_t bias_st[3];
    size_t keep_st[3]; /* the same for keep (attn_keep_strides) */
    int f16;    /* the storage: 0 F32, 1 F16, 2 BF16 (16 bits when nonzero) */
    int tf32;   /* products of TF32-rounded inputs (attn_cpu_sdpa, emulate) */
    int bf16;   /* the BF16 kernels (attn_cpu_sdpa_precision says BF16) */
    int amx;    /* with bf16: the AMX kernels (attn_cpu_amx_available) */
    int group;  /* heads_q / heads_kv */
    int nqt;    /* query tiles per head */
    int qgroup; /* query tiles per item: SDPA_QGROUP or SDPA_QGROUP_AMX */
    /* The decode form (sdpa_dec.c): rows = heads_q / heads_kv * seq_q
     * query rows share one K/V head and are computed together, row-major;
     * 0 for the tiled form.  The keys are cut into nsplit splits of
     * split_len keys; with more than one, each split leaves its rows'
     * running max, sum and unnormalised output in part and a second pass
     * merges them. */
    int rows;
    int nsplit;
    long long split_len;
    float *part; /* [batch][heads_kv][nsplit][rows][head_dim_v + 2] */
};

/* Helpers of the tile code shared with the decode code (sdpa_tile.c, one
 * copy per instruction set). */
#ifdef ATTN_ISA_SUFFIX
#define attn_sdpa_rows_f32      ATTN_ISA_FN(attn_sdpa_rows_f32)
#define attn_sdpa_tile_finite   ATTN_ISA_FN(attn_sdpa_tile_finite)
#define attn_sdpa_tile_has_zero ATTN_ISA_FN(attn_sdpa_tile_has_zero)
#define attn_sdpa_bias_base     ATTN_ISA_FN(attn_sdpa_bias_base)
#define attn_sdpa_keep_base     ATTN_ISA_FN(attn_sdpa_keep_base)
#define attn_sdpa_dec_item      ATTN_ISA_FN(attn_sdpa_dec_item)
#define attn_sdpa_dec_combine   ATTN_ISA_FN(attn_sdpa_dec_combine)
/* jn rows of a K or V head as packed F32 rows (in place or in buf); *ld
 * receives their stride in floats. */
const float *attn_sdpa_rows_f32(const struct attn_sdpa_job *jb,
                                const void *base, size_t off, size_t row_stride,
                                int width, int jn, float *buf, size_t *ld);
/* 1 when every value of the jn x dv tile (rows ldv apart) is finite. */
int attn_sdpa_tile_finite(const float *v, size_t ldv, int jn, int dv);
/* 1 when some probability of the jn x lanes tile (rows QT apart) is 0. */
int attn_sdpa_tile_has_zero(const float *p, int jn, int lanes);
/* The bias of (batch b, head h) at query 0 (its query rows jb->bias_st[2]
 * apart), or NULL without a bias. */
const float *attn_sdpa_bias_base(const struct attn_sdpa_job *jb, int b, int h);
/* keep of (batch b, head h) at query 0 (its query rows jb->keep_st[2]
 * apart), or NULL without one. */
const uint8_t *attn_sdpa_keep_base(const struct attn_sdpa_job *jb, int b,
                                   int h);
/* The decode job (sdpa_dec.c): one item per (batch, kv head, key split). */
void attn_sdpa_dec_item(void *arg, size_t item, int worker);
/* Merges the key splits of one (batch, kv head). */
void attn_sdpa_dec_combine(void *arg, size_t item, int worker);
#endif

/* The working memory of one worker of the job's attn_cpu (sdpa.c): slot
 * (< the job's qgroup) picks the query-tile buffers (qt, ot, m, l, alpha,
 * smax); the others are shared. */
void attn_sdpa_ws_of(const attn_cpu *c, int worker, int slot,
                     struct attn_sdpa_ws *w);

#endif /* ATTN_CPU_SDPA_JOB_H */
