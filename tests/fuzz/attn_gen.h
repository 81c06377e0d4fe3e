/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Random problems shared by the fuzzer (tests/fuzz/fuzz_attn.c) and the
 * soak program (tests/soak/attn_soak.c): a source of numbers, either the
 * fuzzer's input bytes or a seeded PRNG, and valid attn_sdpa / multi-head
 * shapes drawn from it.  The fuzzer then spoils fields on purpose; the soak
 * program runs the shapes as they are.
 *
 * A byte source that runs dry answers 0, so that every choice falls on its
 * first (simplest) option: short fuzzer inputs give small valid problems.
 */
#ifndef ATTN_TEST_GEN_H
#define ATTN_TEST_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "cases.h"

typedef struct gen_src {
    const uint8_t *data; /* fuzzer bytes, or NULL for the PRNG */
    size_t size, pos;
    uint64_t state; /* splitmix64 */
} gen_src;

void gen_from_bytes(gen_src *g, const uint8_t *data, size_t size);
void gen_from_seed(gen_src *g, uint64_t seed);
/* Bytes left in a byte source (SIZE_MAX for the PRNG). */
size_t gen_left(const gen_src *g);

uint8_t gen_u8(gen_src *g);
uint32_t gen_u32(gen_src *g);
uint64_t gen_u64(gen_src *g);
/* In [lo, hi] (inclusive; lo when hi <= lo). */
int gen_int(gen_src *g, int lo, int hi);
/* 1 with about percent % probability (never for a dry byte source). */
int gen_chance(gen_src *g, int percent);
/* One of the n values. */
int gen_pick(gen_src *g, const int *values, size_t n);
/* Uniform in [lo, hi). */
double gen_uniform(gen_src *g, double lo, double hi);

/* Largest sizes of the shapes drawn (each at least 1). */
typedef struct gen_limits {
    int batch, heads_kv, group; /* heads_q = heads_kv * group */
    int seq_q, seq_kv, head_dim;
    int d_model; /* multi-head layer */
    int pos_offset;
} gen_limits;

/* One valid attn_sdpa problem without its buffers (pointer members NULL):
 * what sdpa_case_init needs. */
/* Layouts of the strided tensors: the default (all strides 0), BHSD and
 * BSHD given explicitly, BSHD with spare elements past each head, row and
 * batch item, and (q, k and v only) one fused QKV buffer whose rows hold
 * the heads of q, then of k, then of v. */
enum { GEN_CONTIG, GEN_BHSD, GEN_BSHD, GEN_PADDED, GEN_FUSED };

/* Largest batch drawn as a packed variable-length batch. */
#define GEN_MAX_SEQS 8

typedef struct gen_sdpa {
    attn_sdpa_desc d; /* bias_kind set, bias / kv_len / additive_w NULL;
                         strides set; cu_seqlens_q / cu_seqlens_kv point
                         at cu_q / cu_kv below (so the struct must not be
                         copied while d is used) */
    int with_kv_len, with_lse; /* with_kv_len: CASE_* bits (cases.h) */
    double qk_amp;             /* q and k in [-qk_amp, qk_amp] */
    double ninf;               /* fraction of -INFINITY bias entries */
    int layout, o_layout;      /* GEN_*: of q, k, v and of o */
    int varlen;                /* packed: cu_q, cu_kv hold the offsets */
    int32_t cu_q[GEN_MAX_SEQS + 1], cu_kv[GEN_MAX_SEQS + 1];
} gen_sdpa;

/* Draws a valid shape within lim: dot or additive score, f32, f16 or
 * bf16, causal, window, bias of any kind, kv_len, lse, a layout of q, k,
 * v and one of o, a packed variable-length batch. */
void gen_sdpa_shape(gen_src *g, const gen_limits *lim, gen_sdpa *out);

/* The problem s's tensors hold, as contiguous tensors: s->d without
 * strides and, for a packed batch, one batch item of total_q query rows
 * and total_kv keys, no causal mask or window (the sequences' own
 * problems are cut out of it).  sdpa_case_init builds its data. */
void gen_sdpa_storage(const gen_sdpa *s, attn_sdpa_desc *out);

/* Sets s->d's strides for s->layout and s->o_layout (0s for GEN_CONTIG)
 * and, for a packed batch, its cu_seqlens; call again after changing the
 * sizes, the layouts or varlen. */
void gen_sdpa_place(gen_sdpa *s);

/* Drops what a path without strides or packed batches cannot take:
 * contiguous tensors, no packed batch. */
void gen_sdpa_plain(gen_sdpa *s);

/* Elements spanned by a tensor [n0, n1, n2, w] at strides st. */
size_t gen_extent(const size_t n[3], size_t w, const int64_t st[3]);

/* st, or where st is all 0 the default strides it means: contiguous
 * [n0, n1, n2, w], or packed rows (packed set) {0, w, n1 * w}. */
void gen_strides(const int64_t st[3], const size_t n[3], size_t w, int packed,
                 int64_t out[3]);

/* Copies the contiguous tensor contig [n0, n1, n2, w] of elem-byte
 * elements into strided at strides st (to_strided), or back. */
void gen_move(void *strided, void *contig, size_t elem, const size_t n[3],
              size_t w, const int64_t st[3], int to_strided);

/* Draws a valid multi-head layer within lim: self or cross attention,
 * biases, every score and positional encoding, masks. */
void gen_mha_spec(gen_src *g, const gen_limits *lim, mha_spec *out);

/* A NUL-terminated device spec of at most cap - 1 characters: keywords,
 * indices, device-name pieces, separators and raw bytes mixed. */
void gen_device_spec(gen_src *g, char *out, size_t cap);

#endif /* ATTN_TEST_GEN_H */
