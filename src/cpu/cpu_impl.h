/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private interface of the native (no OpenCL) backend: the worker pool and
 * the tiled online-softmax attention.  Not installed.
 */
#ifndef ATTN_CPU_IMPL_H
#define ATTN_CPU_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "attn/attn.h"
#include "core/backend.h"

/* ---- worker pool ---------------------------------------------------------
 * A fixed set of threads that run one job at a time.  A job is a function
 * called once for every item in [0, n); items are handed out dynamically.
 * attn_pool_run may be called from several threads at once: jobs are
 * serialized by the pool's job lock, so a caller may wait for another
 * caller's job to finish.  attn_pool_run must not be called from inside a
 * job. */
typedef struct attn_pool attn_pool;

/* worker is in [0, attn_pool_threads(p)); the calling thread is worker 0. */
typedef void (*attn_pool_fn)(void *arg, size_t item, int worker);

/* threads >= 1 (1 = run everything on the caller).  Errors:
 * ATTN_ERR_INVALID_ARGUMENT, ATTN_ERR_OUT_OF_MEMORY (thread or allocation
 * failure; nothing is left behind). */
attn_status attn_pool_create(int threads, attn_pool **out);
void attn_pool_destroy(attn_pool *p); /* NULL is a no-op */
int attn_pool_threads(const attn_pool *p);
void attn_pool_run(attn_pool *p, size_t n, attn_pool_fn fn, void *arg);

/* ---- instruction sets ----------------------------------------------------
 * The hot code (sdpa_tile.c, mha.c, gemm.c, posenc.c, half.c, the
 * micro-kernels) is
 * compiled once per instruction set the build targets
 * (cmake/attnCpuIsa.cmake), each copy with ATTN_ISA_SUFFIX defined
 * (_generic, _avx2, _avx512) and its external names given that suffix
 * (below).  Each copy exports one table, attn_cpu_kern_<isa>; an
 * attn_cpu holds the table of the set chosen when it was created (isa.c).
 * Nothing outside these copies is compiled for more than the baseline. */
typedef enum attn_cpu_isa {
    ATTN_CPU_ISA_GENERIC = 0, /* the compiler's default target */
    ATTN_CPU_ISA_AVX2,        /* AVX2, FMA, F16C */
    ATTN_CPU_ISA_AVX512,      /* AVX-512 F, BW, DQ, VL, and AVX2's */
    ATTN_CPU_ISA_COUNT
} attn_cpu_isa;

struct attn_sdpa_job;             /* sdpa_job.h */
typedef struct attn_cpu attn_cpu; /* below */

typedef struct attn_cpu_kern {
    /* The pool job of attn_cpu_sdpa: arg is a struct attn_sdpa_job. */
    attn_pool_fn sdpa_item;
    /* The decode form's jobs (sdpa_dec.c): the items, then the merge of
     * their key splits. */
    attn_pool_fn sdpa_dec_item;
    attn_pool_fn sdpa_dec_combine;
    /* attn_cpu_mha's work (contract there). */
    attn_status (*mha)(attn_cpu *cpu, const attn_mha_call *c, attn_err *err);
    /* The backward pass's jobs (sdpa_bwd.h): prepare, key tiles, dq. */
    attn_pool_fn sdpa_bwd_prep;
    attn_pool_fn sdpa_bwd_item;
    attn_pool_fn sdpa_bwd_dq;
    /* The copy's attn_cpu_gemm_nt (the layer's backward, api/mha_bwd.c). */
    attn_status (*gemm_nt)(attn_pool *p, int m, int n, int k, const float *a,
                           size_t lda, const float *b, size_t ldb,
                           const float *bias, float *c, size_t ldc);
} attn_cpu_kern;

extern const attn_cpu_kern attn_cpu_kern_generic;
extern const attn_cpu_kern attn_cpu_kern_avx2;   /* ATTN_HAVE_ISA_AVX2 */
extern const attn_cpu_kern attn_cpu_kern_avx512; /* ATTN_HAVE_ISA_AVX512 */

/* "generic", "avx2", "avx512" ("unknown" out of range). */
const char *attn_cpu_isa_name(attn_cpu_isa isa);
/* 1 when the build has the set's copy and this CPU (and its OS) runs it. */
int attn_cpu_isa_available(attn_cpu_isa isa);
/* The widest available set. */
attn_cpu_isa attn_cpu_isa_best(void);
/* The set a context uses: the one the environment variable ATTN_CPU_ISA
 * names (generic, avx2 or avx512, any case) when it is available, else the
 * best; an unknown or unavailable name is a warning, never an error: its
 * sentence in warn (cap bytes; NULL: none), else warn is "". */
attn_cpu_isa attn_cpu_isa_select(char *warn, size_t cap);
/* The table of an available set. */
const attn_cpu_kern *attn_cpu_isa_kern(attn_cpu_isa isa);
/* 1 when isa's copy has the BF16 micro-kernels (VDPBF16PS; only the avx512
 * copy, when the compiler targets AVX512_BF16) and this CPU reports
 * AVX512_BF16: the condition of every call into them. */
int attn_cpu_bf16_available(attn_cpu_isa isa);
/* 1 when isa's copy also has the AMX micro-kernels (only the avx512 copy,
 * when the compiler targets AMX-TILE and AMX-BF16), the BF16 kernels are
 * available, CPUID reports AMX-TILE and AMX-BF16, the OS enables the tile
 * state and (Linux) granted this process the tile data: asked once per
 * process (arch_prctl ARCH_REQ_XCOMP_PERM), thread-safe.  The environment
 * variable ATTN_CPU_AMX=0 (or off, no) turns them off (the VDPBF16PS
 * kernels run instead). */
int attn_cpu_amx_available(attn_cpu_isa isa);

#ifdef ATTN_ISA_SUFFIX
#define ATTN_ISA_CAT2(a, b) a##b
#define ATTN_ISA_CAT(a, b)  ATTN_ISA_CAT2(a, b)
#define ATTN_ISA_FN(name)   ATTN_ISA_CAT(name, ATTN_ISA_SUFFIX)
/* Inside a copy the hot code spells its external names plainly; these
 * give them the copy's suffix (attn_kern_qk is attn_kern_qk_avx2 in the
 * avx2 copy), so that the copies live side by side in one library and
 * each calls only its own functions. */
#define attn_half_to_float_n       ATTN_ISA_FN(attn_half_to_float_n)
#define attn_float_to_half_n       ATTN_ISA_FN(attn_float_to_half_n)
#define attn_bf16_to_float_n       ATTN_ISA_FN(attn_bf16_to_float_n)
#define attn_float_to_bf16_n       ATTN_ISA_FN(attn_float_to_bf16_n)
#define attn_kern_float_to_bf16_n  ATTN_ISA_FN(attn_kern_float_to_bf16_n)
#define attn_kern_qk               ATTN_ISA_FN(attn_kern_qk)
#define attn_kern_additive         ATTN_ISA_FN(attn_kern_additive)
#define attn_kern_softmax          ATTN_ISA_FN(attn_kern_softmax)
#define attn_kern_pv               ATTN_ISA_FN(attn_kern_pv)
#define attn_kern_pack_q_bf16      ATTN_ISA_FN(attn_kern_pack_q_bf16)
#define attn_kern_pack_k_bf16      ATTN_ISA_FN(attn_kern_pack_k_bf16)
#define attn_kern_pack_v_bf16      ATTN_ISA_FN(attn_kern_pack_v_bf16)
#define attn_kern_qk_bf16          ATTN_ISA_FN(attn_kern_qk_bf16)
#define attn_kern_pv_bf16          ATTN_ISA_FN(attn_kern_pv_bf16)
#define attn_kern_amx_begin        ATTN_ISA_FN(attn_kern_amx_begin)
#define attn_kern_amx_end          ATTN_ISA_FN(attn_kern_amx_end)
#define attn_kern_amx_pack_q       ATTN_ISA_FN(attn_kern_amx_pack_q)
#define attn_kern_amx_pack_k       ATTN_ISA_FN(attn_kern_amx_pack_k)
#define attn_kern_amx_pack_v       ATTN_ISA_FN(attn_kern_amx_pack_v)
#define attn_kern_amx_qk           ATTN_ISA_FN(attn_kern_amx_qk)
#define attn_kern_amx_pv           ATTN_ISA_FN(attn_kern_amx_pv)
#define attn_sdpa_item             ATTN_ISA_FN(attn_sdpa_item)
#define attn_cpu_gemm_nt           ATTN_ISA_FN(attn_cpu_gemm_nt)
#define attn_cpu_posenc_sinusoidal ATTN_ISA_FN(attn_cpu_posenc_sinusoidal)
#define attn_cpu_add_posenc        ATTN_ISA_FN(attn_cpu_add_posenc)
#define attn_cpu_rope              ATTN_ISA_FN(attn_cpu_rope)
#define attn_cpu_mha               ATTN_ISA_FN(attn_cpu_mha)
#endif

/* ---- half precision ------------------------------------------------------ */
#ifdef ATTN_ISA_SUFFIX
/* n conversions (half.c), round to nearest even, F16C-vectorized in the
 * copies that have it (same results). */
void attn_half_to_float_n(const uint16_t *src, float *dst, size_t n);
void attn_float_to_half_n(const float *src, uint16_t *dst, size_t n);
/* bfloat16 (the top 16 bits of a float) to float: exact, a shift.  Float
 * to bfloat16: round to nearest even, NaN kept NaN (quieted, sign and top
 * payload kept), a finite value that rounds past the largest bfloat16
 * becomes infinite, and a value below 2^-126 in magnitude (float
 * subnormal) becomes a zero of its sign, as VCVTNEPS2BF16 does: the avx512
 * copy runs that instruction where the CPU has AVX512_BF16, the others the
 * same rounding in integers, so every copy gives the same bits. */
void attn_bf16_to_float_n(const uint16_t *src, float *dst, size_t n);
void attn_float_to_bf16_n(const float *src, uint16_t *dst, size_t n);
/* 16-bit storage of dtype (ATTN_F16 or ATTN_BF16) to float and back. */
static inline void attn_u16_to_float_n(attn_dtype dt, const uint16_t *src,
                                       float *dst, size_t n)
{
    if (dt == ATTN_BF16)
        attn_bf16_to_float_n(src, dst, n);
    else
        attn_half_to_float_n(src, dst, n);
}
static inline void attn_float_to_u16_n(attn_dtype dt, const float *src,
                                       uint16_t *dst, size_t n)
{
    if (dt == ATTN_BF16)
        attn_float_to_bf16_n(src, dst, n);
    else
        attn_float_to_half_n(src, dst, n);
}
#endif

/* ---- native attention ----------------------------------------------------
 * attn_cpu owns the pool and the per-worker working memory, allocated once
 * and grown when a larger head_dim needs it; no call allocates seq_q x
 * seq_kv.  Safe to call from several threads at once. */

/* Element strides (in elements of the dtype) of batch, head and row for each
 * tensor; the last dimension is always contiguous.  NULL layout means the
 * layouts of attn_sdpa_desc (its strides, or contiguous). */
typedef struct attn_cpu_layout {
    size_t q[3], k[3], v[3], o[3];
} attn_cpu_layout;

/* isa must be available (attn_cpu_isa_available). */
attn_status attn_cpu_create(int threads, attn_cpu_isa isa, attn_cpu **out);
void attn_cpu_destroy(attn_cpu *c); /* NULL is a no-op */
attn_pool *attn_cpu_pool(attn_cpu *c);
/* The backward's working block of at least floats floats (64-byte
 * aligned, contents undefined): the one the last call gave back when it
 * is large enough, else a new one; NULL when out of memory.  Give it back
 * with attn_cpu_bwd_give, which keeps one block (up to 64 MiB) for the
 * next call and frees the rest; attn_cpu_destroy frees the kept one. */
float *attn_cpu_bwd_take(attn_cpu *c, size_t floats);
void attn_cpu_bwd_give(attn_cpu *c, float *mem, size_t floats);
int attn_cpu_workers(const attn_cpu *c);
attn_cpu_isa attn_cpu_get_isa(const attn_cpu *c);
/* The precision asked of c's attention (EXACT when created): what the
 * native backend passes to attn_cpu_sdpa for attn_sdpa (the multi-head
 * layer's attention stays EXACT).  Set before c is shared. */
void attn_cpu_set_precision(attn_cpu *c, attn_precision asked);
attn_precision attn_cpu_precision(const attn_cpu *c);
/* What attn_cpu_sdpa(c, d, ..., asked) computes the products of d at:
 * BF16 when BF16 is asked, d has dot scores, its query rows per K/V head
 * exceed the decode form's and c's copy has the BF16 kernels on this CPU
 * (attn_cpu_bf16_available); else EXACT (TF32 emulation is a test switch,
 * not a kernel path: reported as EXACT).  d is valid. */
attn_precision attn_cpu_sdpa_precision(const attn_cpu *c,
                                       const attn_sdpa_desc *d,
                                       attn_precision asked);
/* The table of the instruction set c was created with. */
const attn_cpu_kern *attn_cpu_kerns(const attn_cpu *c);
/* The gradients of attn_cpu_sdpa (attn_sdpa_backward, attn.h): d and g
 * validated, dot score, contiguous layouts.  Allocates its memory per call
 * (sdpa_bwd.c says how much).  Returns ATTN_OK or ATTN_ERR_OUT_OF_MEMORY
 * (outputs untouched then). */
attn_status attn_cpu_sdpa_backward(attn_cpu *c, const attn_sdpa_desc *d,
                                   const attn_sdpa_grad *g);
/* Bytes of working memory attn_cpu_sdpa needs for head sizes d, dv over
 * every worker; 0 when that overflows size_t.  More than the host's
 * memory is refused (ATTN_ERR_OUT_OF_MEMORY) before it is allocated. */
size_t attn_cpu_ws_bytes(const attn_cpu *c, int d, int dv);

/* d has been validated by the API (sizes positive, pointers present, enums
 * known, kv_len in range, size arithmetic fits in size_t).  lse may be NULL;
 * it is always [batch, heads_q, seq_q] contiguous.  emulate is
 * ATTN_PRECISION_EXACT for the backend's calls; ATTN_PRECISION_TF32 rounds
 * the inputs of each product to TF32 first, as a TF32 matrix unit takes
 * them (q and k of the dot score, p and v; sums stay float): the model
 * against which the TF32 error bound of attn.h is tested (tests/
 * test_tf32.c) while no kernel has a TF32 path.  BF16 runs the BF16
 * kernels (VDPBF16PS, or AMX where attn_cpu_amx_available holds at
 * creation: q and k, p and v rounded to bfloat16 to nearest
 * even, subnormals flushed, sums in float) where attn_cpu_sdpa_precision
 * says so, else EXACT.  3XTF32 computes as EXACT.  Returns ATTN_OK or
 * ATTN_ERR_OUT_OF_MEMORY (outputs untouched then). */
attn_status attn_cpu_sdpa(attn_cpu *c, const attn_sdpa_desc *d, const void *q,
                          const void *k, const void *v, void *o, float *lse,
                          const attn_cpu_layout *layout,
                          attn_precision emulate);

/* ---- attention micro-kernels (sdpa_kern_{avx512,avx2,generic}.c) ------
 * Called by sdpa_tile.c of the same copy (the softmax by sdpa_dec.c too,
 * its lanes holding rows).  A query tile keeps its queries
 * in the lanes: tiles are [rows][ATTN_QTILE] floats, 64-byte aligned, and
 * only the first nq * 16 lanes are used (nq in 1..4).  Scores are in log2
 * units (scaled by log2(e)) so that the softmax uses exp2, except with a
 * bias: then they stay natural and the softmax scales their differences
 * from the running max by log2(e) (its `unit`).  Keys and values
 * are read in place, rows ldk / ldv floats apart. */
#define ATTN_QTILE 64

#ifdef ATTN_ISA_SUFFIX
/* s[j][i] = sum_c qt[c][i] * k[j][c] for j < jn, and smax[i] = max over j
 * of s[j][i] (jn >= 1). */
void attn_kern_qk(int nq, int jn, int d, const float *qt, const float *k,
                  size_t ldk, float *s, float *smax);
/* s[j][i] = sum_c w[c] * tanh(qt[c][i] + k[j][c]) for j < jn. */
void attn_kern_additive(int nq, int jn, int d, const float *qt, const float *k,
                        size_t ldk, const float *w, float *s);
/* Online-softmax step over a score tile s[jn][lanes]: updates the running
 * max m and sum l per lane, writes the rescale factor of the old
 * accumulators to alpha and replaces s by exp2((s - m) * unit) (unit 1 for
 * scores in log2 units, log2(e) for natural ones; the difference is taken
 * first, so scores near FLT_MAX do not overflow).  smax is the tile's max
 * per lane when known (from attn_kern_qk), NULL to compute it.  A lane
 * that has seen only -inf keeps l = 0 and gets p = 0, never NaN. */
void attn_kern_softmax(int nq, int jn, float *s, const float *smax, float unit,
                       float *m, float *l, float *alpha);
/* ot[c][i] = alpha[i] * ot[c][i] + sum_j v[j][c] * p[j][i] for c < dv. */
void attn_kern_pv(int nq, int jn, int dv, const float *p, const float *v,
                  size_t ldv, const float *alpha, float *ot);
/* The copy's pool job of attn_cpu_sdpa (sdpa_tile.c). */
void attn_sdpa_item(void *arg, size_t item, int worker);
#endif

/* ---- BF16 micro-kernels (sdpa_kern_bf16.c, the avx512 copy) ------------
 * VDPBF16PS multiplies pairs of bfloat16 and adds both products to a float
 * lane, so each product's inputs are packed as pairs along the reduction:
 * qb[c2][i] holds (qt[2 c2][i], qt[2 c2 + 1][i]) for lane i, [d2][QT]
 * 32-bit pairs (d2 = (d + 1) / 2); a key row of kb holds its d values as
 * d2 pairs (ldkb pairs apart); pb[j2][i] holds (p[2 j2][i], p[2 j2 + 1][i])
 * and vb[j2][c] (v[2 j2][c], v[2 j2 + 1][c]), [(jn + 1) / 2][dv] pairs.
 * An odd last element is paired with 0.  Rounding is to nearest even;
 * NaN stays NaN, a finite value that rounds past the largest bfloat16
 * becomes infinite, and the instruction treats subnormal inputs as 0 and
 * flushes subnormal sums to 0.  Called only where attn_cpu_bf16_available
 * holds. */
#if defined(ATTN_ISA_SUFFIX) && defined(ATTN_ISA_BF16)
void attn_kern_pack_q_bf16(int d, int lanes, const float *qt, uint32_t *qb);
void attn_kern_pack_k_bf16(int jn, int d, const float *k, size_t ldk,
                           uint32_t *kb, size_t ldkb);
void attn_kern_pack_v_bf16(int jn, int dv, const float *v, size_t ldv,
                           uint32_t *vb);
/* attn_kern_qk on packed pairs. */
void attn_kern_qk_bf16(int nq, int jn, int d, const uint32_t *qb,
                       const uint32_t *kb, size_t ldkb, float *s, float *smax);
/* attn_kern_pv with p rounded into pb (scratch, [(jn + 1) / 2][QT]) and
 * packed values vb. */
void attn_kern_pv_bf16(int nq, int jn, int dv, const float *p, uint32_t *pb,
                       const uint32_t *vb, const float *alpha, float *ot);
/* attn_float_to_bf16_n with VCVTNEPS2BF16. */
void attn_kern_float_to_bf16_n(const float *src, uint16_t *dst, size_t n);
#endif

/* ---- AMX micro-kernels (sdpa_kern_amx.c, the avx512 copy) -------------
 * TDPBF16PS for the two products of the BF16 tiled form, with the rounding
 * of the BF16 micro-kernels (inputs to nearest even, subnormal inputs read
 * as 0, subnormal sums flushed, sums in float).  Sizes are padded with
 * zeros to whole pairs of 16 x 64-byte tiles: head dimensions to 32
 * (pairs: ATTN_AMX_D2, values: ATTN_AMX_DV), keys to 32 (ATTN_AMX_KEYS,
 * at most 2 * ATTN_AMX_VT), lanes to 32 (ATTN_AMX_LANES).  Layouts:
 * qb[c2][i] the query pairs as for the BF16 kernels ([ATTN_AMX_D2(d)][QT]);
 * kb[j][c2] a key row in bfloat16, [ATTN_AMX_KEYS(jn)][ATTN_AMX_D2(d)];
 * vt[c][j2] the value pairs of keys (v[2 j2][c], v[2 j2 + 1][c]),
 * [ATTN_AMX_DV(dv)][ATTN_AMX_VT]; pb[j2][i] the probability pairs,
 * [ATTN_AMX_KEYS(jn) / 2][QT].  The calling thread must have run
 * attn_kern_amx_begin (loads the tile configuration) and not yet
 * attn_kern_amx_end (releases the tiles); called only where
 * attn_cpu_amx_available holds. */
#ifndef ATTN_AMX_VT
#define ATTN_AMX_VT 32
#endif
#define ATTN_AMX_D2(d)    (((d) + 31) / 32 * 16)
#define ATTN_AMX_DV(dv)   (((dv) + 31) / 32 * 32)
#define ATTN_AMX_KEYS(jn) (((jn) + 31) / 32 * 32)
#define ATTN_AMX_LANES(n) (((n) + 31) / 32 * 32)
#if defined(ATTN_ISA_SUFFIX) && defined(ATTN_ISA_AMX)
void attn_kern_amx_begin(void);
void attn_kern_amx_end(void);
/* qt's first d rows, lanes < lanes (zero past them), into qb. */
void attn_kern_amx_pack_q(int d, int lanes, const float *qt, uint32_t *qb);
/* jn key rows (ldk floats apart) into kb. */
void attn_kern_amx_pack_k(int jn, int d, const float *k, size_t ldk,
                          uint32_t *kb);
/* jn value rows (ldv floats apart) into vt. */
void attn_kern_amx_pack_v(int jn, int dv, const float *v, size_t ldv,
                          uint32_t *vt);
/* s[j][i] = sum_c qt[c][i] * k[j][c] for j < ATTN_AMX_KEYS(jn) (zero keys
 * past jn), i < ATTN_AMX_LANES(nq * 16). */
void attn_kern_amx_qk(int nq, int jn, int d, const uint32_t *qb,
                      const uint32_t *kb, float *s);
/* attn_kern_pv with p rounded into pb (scratch) and packed values vt; the
 * rows of ot up to ATTN_AMX_DV(dv), the lanes up to ATTN_AMX_LANES(nq *
 * 16) are written (past dv and nq * 16 they hold no result). */
void attn_kern_amx_pv(int nq, int jn, int dv, const float *p, uint32_t *pb,
                      const uint32_t *vt, const float *alpha, float *ot);
#endif

/* ---- projections and positional encodings (gemm.c, posenc.c, mha.c) ---- */

#ifdef ATTN_ISA_SUFFIX
/* C[m, n] = A[m, k] * B[n, k]^T (+ bias[n] when bias != NULL), row-major with
 * leading dimensions lda, ldb, ldc (in floats).  Runs on the pool.  Returns
 * ATTN_OK or ATTN_ERR_OUT_OF_MEMORY (C untouched then). */
attn_status attn_cpu_gemm_nt(attn_pool *p, int m, int n, int k, const float *a,
                             size_t lda, const float *b, size_t ldb,
                             const float *bias, float *c, size_t ldc);

/* table[seq, d_model] for positions offset .. offset+seq-1 (DESIGN.md). */
void attn_cpu_posenc_sinusoidal(int seq, int d_model, int offset, float *table);
/* x + m's positional encoding (sinusoidal, or its LEARNED table) for rows
 * at positions pos0 .. pos0+seq-1 of every batch item, into out
 * [batch*seq, d_model] (out may not be x). */
void attn_cpu_add_posenc(const attn_mha_desc *m, int batch, int seq, int pos0,
                         const float *x, float *out);

/* Rotates every head of x [rows, heads*head_dim] (row stride ld floats) in
 * place; row r has position pos0 + (r % seq). */
void attn_cpu_rope(float *x, size_t rows, size_t ld, int heads, int head_dim,
                   int seq, int pos0);

/* The copy's attn_cpu_mha (mha.c). */
attn_status attn_cpu_mha(attn_cpu *cpu, const attn_mha_call *c, attn_err *err);
#endif

/* The table of attn_posenc_sinusoidal (api.c): the generic copy's, which
 * every build has (the table is sin and cos of each position, not SIMD
 * work). */
void attn_cpu_posenc_sinusoidal_generic(int seq, int d_model, int offset,
                                        float *table);
/* attn_cpu_add_posenc of the generic copy (the training layer's). */
void attn_cpu_add_posenc_generic(const attn_mha_desc *m, int batch, int seq,
                                 int pos0, const float *x, float *out);

/* The multi-head layer on the native backend, with c's kernels; call is
 * validated. */
attn_status attn_cpu_mha(attn_cpu *c, const attn_mha_call *call, attn_err *err);

#endif /* ATTN_CPU_IMPL_H */
