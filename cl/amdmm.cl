/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fused attention on AMD matrix cores, OpenCL C after common.cl, built for
 * one kind of unit (AM_UNIT):
 *   1: CDNA MFMA (gfx908, gfx90a, gfx94x), wave64:
 *      v_mfma_f32_16x16x16_f16 (F16 storage) and, on gfx94x only,
 *      v_mfma_f32_16x16x8_xf32 (F32 and BF16 storage at TF32);
 *   2: RDNA3 WMMA (gfx11), wave32: v_wmma_f32_16x16x16_f16 (F16 storage).
 * issued through clang's __builtin_amdgcn_* builtins; a compiler or target
 * without them fails the build (#error), which sends AUTO on to the next
 * variant.  AM_EMU=1 builds the same kernel with each matrix instruction
 * and each cross-lane read computed through local memory instead, in the
 * instructions' register layouts, so that the layouts, masks and softmax
 * run and are tested on any OpenCL device.
 *
 * Products (AM_MODE).  1: F16 storage, f16 x f16 + f32: Q K^T exact in
 * float, P rounded to f16 for P V.  2: F32 or BF16 storage, every input
 * of both products rounded to TF32 (to nearest, ties away; a bfloat16,
 * widened, is one already) before the xf32 instruction.  Sums in float
 * throughout.
 *
 * Layout.  Scores are computed transposed, S^T = K Q^T and O^T = V^T P^T,
 * so that a lane's accumulators all belong to one query: a work-group of
 * 4 waves takes 64 query rows of one (batch, query head), 16 per wave;
 * lane l of a wave holds query l % 16 of its wave and, of each 16 x 16
 * accumulator block, rows (keys, or head columns of O^T) AM_ROW(g, r),
 * g = l / 16: 4g + r on MFMA (r < 4), 2r + g on WMMA (r < 8).  A and B
 * operands: MFMA lane l holds row / column l % 16 at k = 4g + e (f16) or
 * 2g + e (xf32); WMMA lane l holds row / column l % 16 at every k, lanes
 * 16-31 the same as lanes 0-15.  On MFMA the accumulators of a 16-key
 * block of S^T are P^T's B operand as they stand (xf32: keys 4g + 2s + e
 * in step s, which V^T's A operand follows); on WMMA each lane takes the
 * other parity's keys from lane l ^ 16.  Row maxima and sums meet over
 * the lanes l ^ 16 (and l ^ 32 on MFMA) by ds_bpermute.  Per tile of
 * AM_BC keys, K [key][d] and V^T [d][key] are staged in local memory; Q^T
 * stays in registers as B operands.
 *
 * Scores, masks and the non-finite rules are the tiled kernel's
 * (tiled.cl): natural units with a bias (differences times log2(e)), base
 * 2 without; a visible key's p never reaches 0; a NaN or +inf score at a
 * visible key makes its row NaN; a row that sees nothing gives O = 0, lse
 * = -inf.  A tile whose V holds an inf or NaN takes P V on the SIMT units
 * from a local copy of P, skipping hidden keys (p = 0), since the matrix
 * cores would multiply 0 by it.
 */

#ifndef AM_D /* head_dim = head_dim_v, a multiple of 16 */
#define AM_D 64
#endif
#ifndef AM_BC /* keys per tile, a multiple of 16 */
#define AM_BC 64
#endif
#ifndef AM_UNIT
#define AM_UNIT 1
#endif
#ifndef AM_MODE
#define AM_MODE 1
#endif
#ifndef AM_EMU
#define AM_EMU 1
#endif

#if (AM_MODE == 1) != (ATTN_F16 == 1)
#error "AM_MODE 1 is for F16 storage, 2 for F32 and BF16"
#endif
#if AM_UNIT == 2 && AM_MODE != 1
#error "WMMA (AM_UNIT 2) has f16 products only"
#endif

#if AM_UNIT == 1
#define AM_W 64 /* wave size */
#define AM_NR 4 /* accumulators of a 16 x 16 block per lane */
#define AM_ROW(g, r) (4 * (g) + (r))
#else
#define AM_W 32
#define AM_NR 8
#define AM_ROW(g, r) (2 * (r) + (g))
#endif
#if AM_MODE == 1
#define AM_KS 16 /* k of one instruction */
#define AM_KE (AM_UNIT == 1 ? 4 : 16) /* A / B elements per lane */
#define AM_DP (AM_D + 8)   /* K row stride (halves) */
#define AM_BCP (AM_BC + 8) /* V^T row stride (halves) */
#define AM_ESZ 2
typedef ushort am_el; /* f16 bits */
typedef uint am_pk;   /* two f16 of an operand, the first in bits 0-15 */
#define AM_KP (AM_KE / 2)
#else
#define AM_KS 8
#define AM_KE 2
#define AM_DP (AM_D + 4)
#define AM_BCP (AM_BC + 4)
#define AM_ESZ 4
typedef float am_el; /* TF32-rounded */
typedef float am_pk;
#define AM_KP AM_KE
#endif
/* The k of element e of an A / B operand in lane group g. */
#define AM_K(g, e) (AM_UNIT == 1 ? AM_KE * (g) + (e) : (e))

#define AM_WG (4 * AM_W)
#define AM_BR 64 /* query rows per work-group */
#define AM_NB (AM_BC / 16)
#define AM_NO (AM_D / 16)
#define AM_KQ (AM_D / AM_KS)
#define AM_KF (AM_BC * AM_DP * AM_ESZ / 4)
#define AM_PF (AM_BR * AM_BC)
#define AM_KPF (AM_KF > AM_PF ? AM_KF : AM_PF)

#define AM_LOG2E 1.4426950408889634f
#define AM_LN2 0.6931471805599453f
#define AM_NONFINITE(x) ((as_uint(x) & 0x7f800000u) == 0x7f800000u)
#define AM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Emulated, the loops stay rolled: each of their steps holds barriers. */
#if AM_EMU
#define AM_UNROLL _Pragma("unroll 1")
#else
#define AM_UNROLL _Pragma("unroll")
#endif

#if !AM_EMU
/* The target must have the unit's builtins and wave size (clang defines
 * __AMDGCN_WAVEFRONT_SIZE and __gfxNNN__).  clang 15 declares the xf32
 * builtin for every MFMA target, though only gfx94x has the
 * instruction, hence the processor test. */
#ifndef __has_builtin
#error "no __has_builtin: not clang, no AMD matrix builtins"
#endif
#if !defined(__AMDGCN_WAVEFRONT_SIZE) || __AMDGCN_WAVEFRONT_SIZE != AM_W
#error "the target's wave size is not the unit's"
#endif
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#if AM_UNIT == 1 && !__has_builtin(__builtin_amdgcn_mfma_f32_16x16x16f16)
#error "no MFMA f16 on this target"
#endif
#if AM_UNIT == 1 && AM_MODE == 2 &&                                            \
    !(__has_builtin(__builtin_amdgcn_mfma_f32_16x16x8_xf32) &&                 \
      (defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__)))
#error "no MFMA xf32 on this target"
#endif
#if AM_UNIT == 2 && !__has_builtin(__builtin_amdgcn_wmma_f32_16x16x16_f16_w32)
#error "no WMMA f16 on this target"
#endif
#if !__has_builtin(__builtin_amdgcn_ds_bpermute)
#error "no ds_bpermute"
#endif
#endif

/* 2^x for a visible key (x <= 0): never 0; NaN stays NaN. */
static float am_exp2(float x)
{
    if ((as_uint(x) & 0x7fffffffu) > 0x7f800000u)
        return x;
    return exp2(x > -126.0f ? x : -126.0f);
}

/* Two floats as an f16 pair (round to nearest even), lo in bits 0-15. */
static uint am_pack(float lo, float hi)
{
    ushort h[2];
    vstore_half_rte(lo, 0, (__private half *)h);
    vstore_half_rte(hi, 1, (__private half *)h);
    return (uint)h[0] | ((uint)h[1] << 16);
}

/* x rounded to TF32 (nearest, ties away), the low 13 bits 0; inf and NaN
 * as they are. */
static float am_tf32(float x)
{
    const uint u = as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return x;
    return as_float((u + 0x1000u) & 0xffffe000u);
}

/* Word p of an operand whose k runs along row (local memory), in lane
 * group g: a pair of halves read as one uint (4-byte aligned: rows and
 * AM_K(g, 2p) are even), or one float rounded to TF32. */
#if AM_MODE == 1
#define AM_LDS(row, p) (*(__local const uint *)((row) + AM_K(g, 2 * (p))))
#else
#define AM_LDS(row, p) am_tf32((row)[AM_K(g, (p))])
#endif

#if AM_EMU
/* Element e of an operand as the unit reads it. */
static float am_val(const am_pk *a, int e)
{
#if AM_MODE == 1
    const ushort h = (ushort)(a[e >> 1] >> ((e & 1) * 16));
    return vload_half(0, (const __private half *)&h);
#else
    return a[e];
#endif
}

/* C += A B of one wave through local memory: ea, eb are this wave's A
 * [16][16] and B [16 (k)][16].  Every item of the work-group calls it at
 * the same point (uniform control flow), as the barriers need.  On WMMA
 * the operands come from lanes 0-15; lanes 16-31 must hold the same, and
 * an entry where one does not becomes NaN. */
static void am_op(float *c, const am_pk *a, const am_pk *b, __local float *ea,
                  __local float *eb, int lane)
{
    const int col = lane & 15, g = lane >> 4;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (AM_UNIT == 1 || g == 0)
        for (int e = 0; e < AM_KE; e++) {
            ea[col * 16 + AM_K(g, e)] = am_val(a, e);
            eb[AM_K(g, e) * 16 + col] = am_val(b, e);
        }
#if AM_UNIT == 2
    barrier(CLK_LOCAL_MEM_FENCE);
    if (g == 1)
        for (int e = 0; e < AM_KE; e++) {
            const float nan = as_float(0x7fc00000u);
            if (as_uint(ea[col * 16 + e]) != as_uint(am_val(a, e)))
                ea[col * 16 + e] = nan;
            if (as_uint(eb[e * 16 + col]) != as_uint(am_val(b, e)))
                eb[e * 16 + col] = nan;
        }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < AM_NR; r++) {
        const int row = AM_ROW(g, r);
        float acc = c[r];
        for (int x = 0; x < AM_KS; x++)
            acc = fma(ea[row * 16 + x], eb[x * 16 + col], acc);
        c[r] = acc;
    }
}

/* The value x of lane ^ m (m = 16, 32) of this wave. */
static float am_xor(float x, int m, __local float *er, int lid)
{
    barrier(CLK_LOCAL_MEM_FENCE);
    er[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    return er[lid ^ m];
}

#define AM_OP(c, a, b) am_op((c), (a), (b), ea, eb, lane)
#define AM_XOR(x, m) am_xor((x), (m), er, lid)
#else
static void am_op(float *c, const am_pk *a, const am_pk *b)
{
#if AM_UNIT == 1
    float4 t = (float4)(c[0], c[1], c[2], c[3]);
#if AM_MODE == 1
    t = __builtin_amdgcn_mfma_f32_16x16x16f16(as_half4(vload2(0, a)),
                                              as_half4(vload2(0, b)), t, 0, 0,
                                              0);
#else
    t = __builtin_amdgcn_mfma_f32_16x16x8_xf32(vload2(0, a), vload2(0, b), t,
                                               0, 0, 0);
#endif
    c[0] = t.s0;
    c[1] = t.s1;
    c[2] = t.s2;
    c[3] = t.s3;
#else
    float8 t = vload8(0, c);
    t = __builtin_amdgcn_wmma_f32_16x16x16_f16_w32(as_half16(vload8(0, a)),
                                                   as_half16(vload8(0, b)), t);
    vstore8(t, 0, c);
#endif
}

/* ds_bpermute addresses lanes in bytes, within the wave. */
#define AM_OP(c, a, b) am_op((c), (a), (b))
#define AM_XOR(x, m)                                                           \
    as_float(__builtin_amdgcn_ds_bpermute((lane ^ (m)) << 2, as_int(x)))
#endif

/* The variable x becomes the maximum / sum of x over the lanes of its
 * query (each lane's x evaluated once: the reads are in every lane). */
#if AM_UNIT == 1
#define AM_ROW_MAX(x)                                                          \
    do {                                                                       \
        float y_ = AM_XOR((x), 16);                                            \
        (x) = AM_MAX((x), y_);                                                 \
        y_ = AM_XOR((x), 32);                                                  \
        (x) = AM_MAX((x), y_);                                                 \
    } while (0)
#define AM_ROW_SUM(x)                                                          \
    do {                                                                       \
        float y_ = AM_XOR((x), 16);                                            \
        (x) += y_;                                                             \
        y_ = AM_XOR((x), 32);                                                  \
        (x) += y_;                                                             \
    } while (0)
#else
#define AM_ROW_MAX(x)                                                          \
    do {                                                                       \
        float y_ = AM_XOR((x), 16);                                            \
        (x) = AM_MAX((x), y_);                                                 \
    } while (0)
#define AM_ROW_SUM(x)                                                          \
    do {                                                                       \
        float y_ = AM_XOR((x), 16);                                            \
        (x) += y_;                                                             \
    } while (0)
#endif

/* Arguments as attn_mma's (mma.cl).  Launch: global (ceil(seq_q / 64) *
 * AM_WG, heads in this launch), local (AM_WG, 1); query head bh0 +
 * get_group_id(1). */
__kernel __attribute__((reqd_work_group_size(AM_WG, 1, 1))) void
attn_amdmm(__global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
           ulong k_off, __global const ATTN_T *v, ulong v_off,
           __global ATTN_T *o, ulong o_off, __global float *lse, ulong lse_off,
           int has_lse, __global const float *bias, int bias_kind,
           ulong bias_sb, ulong bias_sh, ulong bias_sq,
           __global const int *kv_len, int has_kv_len, float qscale, int nat,
           int heads_q, int heads_kv, int seq_q, int seq_kv, int causal,
           int window, int diag, ulong4 q_st, ulong4 k_st, ulong4 v_st,
           ulong4 o_st, int bh0)
{
    /* Both as floats: 4-byte aligned for every element type. */
    __local float kp[AM_KPF]; /* the K tile [key][AM_DP], or P */
    __local float vtf[(AM_D * AM_BCP * AM_ESZ + 3) / 4]; /* V^T [d][AM_BCP] */
    __local int vbad[2];
#if AM_EMU
    __local float ea_all[4 * 256], eb_all[4 * 256], er[AM_WG];
#endif
    __local am_el *ks = (__local am_el *)kp, *vt = (__local am_el *)vtf;

    const int lid = (int)get_local_id(0);
    const int w = lid / AM_W, lane = lid % AM_W, col = lane & 15,
              g = lane >> 4;
#if AM_EMU
    __local float *ea = ea_all + w * 256, *eb = eb_all + w * 256;
#endif
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int kvh = h / (heads_q / heads_kv);
    const int off = diag; /* the causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int row0 = (int)get_group_id(0) * AM_BR;
    const int nrows = min(seq_q - row0, AM_BR);

    /* Keys some row of the block sees: [j_start, j_end); keys every row
     * sees: [lo_all, hi_all]. */
    const int i_last = row0 + nrows - 1;
    const int j_start = window > 0 ? max(row0 + off - window + 1, 0) : 0;
    const int j_end = min(causal ? i_last + off + 1 : seq_kv, klen);
    const int lo_all = window > 0 ? i_last + off - window + 1 : 0;
    const int hi_all = min(causal ? row0 + off : seq_kv - 1, klen - 1);

    /* The lane's query row and the keys it sees, [lo, hi]. */
    const int r = row0 + w * 16 + col;
    const int hi = r < seq_q ? min(causal ? r + off : seq_kv - 1, klen - 1) : -1;
    const int lo = window > 0 ? r + off - window + 1 : 0;
    float m = as_float(ATTN_MASKED_BITS), l = 0.0f, poison = 0.0f;
    const size_t brow =
        (size_t)b * bias_sb + (size_t)h * bias_sh + (size_t)r * bias_sq;
    float acc[AM_NO][AM_NR];
AM_UNROLL
    for (int y = 0; y < AM_NO; y++)
AM_UNROLL
        for (int i = 0; i < AM_NR; i++)
            acc[y][i] = 0.0f;

    /* Q^T as B operands (0 past seq_q): element e of step kk is Q[r][kk
     * AM_KS + AM_K(g, e)]. */
    const size_t qrow = ATTN_ROW(q_off, q_st, b, h, r);
    am_pk qb[AM_KQ][AM_KP];
AM_UNROLL
    for (int kk = 0; kk < AM_KQ; kk++)
AM_UNROLL
        for (int p = 0; p < AM_KP; p++) {
#if AM_MODE == 1
            const size_t at = qrow + (size_t)(kk * AM_KS + AM_K(g, 2 * p));
            __global const ushort *qh = (__global const ushort *)q;
            qb[kk][p] = r < seq_q ? (uint)qh[at] | ((uint)qh[at + 1] << 16)
                                  : 0u;
#else
            const size_t at = qrow + (size_t)(kk * AM_KS + AM_K(g, p));
            qb[kk][p] = am_tf32(r < seq_q ? ATTN_LOAD(q, at) : 0.0f);
#endif
        }
    if (lid < 2)
        vbad[lid] = 0;

    for (int jt = j_start, tn = 0; jt < j_end; jt += AM_BC, tn++) {
        const int nk = min(AM_BC, j_end - jt);
        const int full = bias_kind == 0 && nk == AM_BC && jt >= lo_all &&
                         jt + AM_BC - 1 <= hi_all;
        float s[AM_NB][AM_NR];

        /* ---- K [key][d] and V^T [d][key] of the tile (0 past nk) ---- */
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        {
            int bad = 0;
#pragma unroll 2
            for (int e = lid; e < AM_BC * AM_D; e += AM_WG) {
                const int j = e / AM_D, c = e % AM_D;
                const size_t ka = ATTN_ROW(k_off, k_st, b, kvh, jt + j) + c,
                             va = ATTN_ROW(v_off, v_st, b, kvh, jt + j) + c;
#if AM_MODE == 1
                const ushort kx = j < nk ? ((__global const ushort *)k)[ka] : 0;
                const ushort vx = j < nk ? ((__global const ushort *)v)[va] : 0;
                bad |= (vx & 0x7c00) == 0x7c00;
#else
                /* F32, or BF16 widened exactly */
                const float kx = j < nk ? ATTN_LOAD(k, ka) : 0.0f;
                const float vx = j < nk ? ATTN_LOAD(v, va) : 0.0f;
                bad |= AM_NONFINITE(vx);
#endif
                ks[j * AM_DP + c] = kx;
                vt[c * AM_BCP + j] = vx;
            }
            if (bad)
                vbad[tn & 1] = 1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0)
            vbad[(tn + 1) & 1] = 0; /* read last in the previous tile */

        /* ---- S^T = K Q^T: rows keys, this lane's column its query ---- */
AM_UNROLL
        for (int nb = 0; nb < AM_NB; nb++) {
AM_UNROLL
            for (int i = 0; i < AM_NR; i++)
                s[nb][i] = 0.0f;
            __local const am_el *kr = ks + (nb * 16 + col) * AM_DP;
AM_UNROLL
            for (int kk = 0; kk < AM_KQ; kk++) {
                am_pk a[AM_KP];
AM_UNROLL
                for (int p = 0; p < AM_KP; p++)
                    a[p] = AM_LDS(kr + kk * AM_KS, p);
                AM_OP(s[nb], a, qb[kk]);
            }
        }

        /* ---- scale, masks, bias; hidden scores become ATTN_MASKED ---- */
        float mt = as_float(ATTN_MASKED_BITS);
AM_UNROLL
        for (int nb = 0; nb < AM_NB; nb++)
AM_UNROLL
            for (int i = 0; i < AM_NR; i++) {
                const int j = jt + nb * 16 + AM_ROW(g, i);
                float sv = s[nb][i] * qscale;
                int vis = full || (j < jt + nk && j >= lo && j <= hi);
                if (!full && vis && bias_kind != 0) {
                    const float bv = bias[brow + (size_t)j];
                    /* A -INFINITY bias hides the key; never added. */
                    vis = as_uint(bv) != ATTN_NEG_INF_BITS;
                    sv += bv;
                }
                vis = vis && as_uint(sv) != ATTN_NEG_INF_BITS;
                if (vis && (isnan(sv) || as_uint(sv) == 0x7f800000u))
                    poison = 1.0f;
                sv = vis ? sv : as_float(ATTN_MASKED_BITS);
                s[nb][i] = sv;
                mt = AM_MAX(sv, mt);
            }

        /* ---- the query's new maximum, P in place, partial sums ---- */
        const float f = nat ? AM_LOG2E : 1.0f;
        AM_ROW_MAX(mt);
        mt = AM_MAX(mt, m);
        const float corr =
            as_uint(mt) != ATTN_MASKED_BITS && as_uint(m) != ATTN_MASKED_BITS
                ? am_exp2((m - mt) * f)
                : 1.0f;
        m = mt;
        float sum = 0.0f;
AM_UNROLL
        for (int nb = 0; nb < AM_NB; nb++)
AM_UNROLL
            for (int i = 0; i < AM_NR; i++) {
                const float sv = s[nb][i];
                const float p = as_uint(sv) != ATTN_MASKED_BITS
                                    ? am_exp2((sv - m) * f)
                                    : 0.0f;
                s[nb][i] = p;
                sum += p;
            }
        l = l * corr + sum;
AM_UNROLL
        for (int y = 0; y < AM_NO; y++)
AM_UNROLL
            for (int i = 0; i < AM_NR; i++)
                acc[y][i] *= corr;

        /* ---- O^T += V^T P^T ---- */
        if (!vbad[tn & 1]) {
AM_UNROLL
            for (int nb = 0; nb < AM_NB; nb++) {
#if AM_MODE == 1
                /* P^T's B operand: this lane's query at keys AM_K(g, e)
                 * of the block. */
                am_pk pb[AM_KP];
#if AM_UNIT == 1
                pb[0] = am_pack(s[nb][0], s[nb][1]);
                pb[1] = am_pack(s[nb][2], s[nb][3]);
#else
                /* Keys 2i + g are this lane's, 2i + 1 - g lane l ^ 16's. */
AM_UNROLL
                for (int i = 0; i < 8; i++) {
                    const float other = AM_XOR(s[nb][i], 16);
                    pb[i] = g ? am_pack(other, s[nb][i])
                              : am_pack(s[nb][i], other);
                }
#endif
AM_UNROLL
                for (int y = 0; y < AM_NO; y++) {
                    __local const am_el *vr =
                        vt + (y * 16 + col) * AM_BCP + nb * 16;
                    am_pk a[AM_KP];
AM_UNROLL
                    for (int p = 0; p < AM_KP; p++)
                        a[p] = AM_LDS(vr, p);
                    AM_OP(acc[y], a, pb);
                }
#else
                /* Two k = 8 steps: step st takes keys 4g + 2st + e. */
AM_UNROLL
                for (int st = 0; st < 2; st++) {
                    am_pk pb[2];
                    pb[0] = am_tf32(s[nb][2 * st]);
                    pb[1] = am_tf32(s[nb][2 * st + 1]);
AM_UNROLL
                    for (int y = 0; y < AM_NO; y++) {
                        __local const am_el *vr = vt + (y * 16 + col) * AM_BCP +
                                                  nb * 16 + 4 * g + 2 * st;
                        am_pk a[2];
                        a[0] = am_tf32(vr[0]);
                        a[1] = am_tf32(vr[1]);
                        AM_OP(acc[y], a, pb);
                    }
                }
#endif
            }
        } else {
            /* inf / NaN in V: P through local memory (over the K tile),
             * hidden keys (p = 0) skipped. */
            __local float *pr = kp + (w * 16 + col) * AM_BC;
            barrier(CLK_LOCAL_MEM_FENCE);
AM_UNROLL
            for (int nb = 0; nb < AM_NB; nb++)
AM_UNROLL
                for (int i = 0; i < AM_NR; i++)
                    pr[nb * 16 + AM_ROW(g, i)] = s[nb][i];
            barrier(CLK_LOCAL_MEM_FENCE);
AM_UNROLL
            for (int y = 0; y < AM_NO; y++)
AM_UNROLL
                for (int i = 0; i < AM_NR; i++) {
                    const int c = y * 16 + AM_ROW(g, i);
                    float a = acc[y][i];
                    for (int j = 0; j < nk; j++) {
                        const float p = pr[j];
#if AM_MODE == 1
                        if (p != 0.0f)
                            a = fma(p,
                                    vload_half(0, (__local const half *)(
                                                      vt + c * AM_BCP + j)),
                                    a);
#else
                        if (p != 0.0f)
                            a = fma(p, vt[c * AM_BCP + j], a);
#endif
                    }
                    acc[y][i] = a;
                }
        }
    }

    /* ---- the query's sums meet; O = O / l, lse ---- */
    float lt = l, bad = poison;
    AM_ROW_SUM(lt);
    AM_ROW_MAX(bad);
    if (r >= seq_q)
        return;
    const float nan = as_float(0x7fc00000u);
    const int any = as_uint(m) != ATTN_MASKED_BITS;
    const float inv = any ? 1.0f / lt : 0.0f;
    const size_t obase = ATTN_ROW(o_off, o_st, b, h, r);
AM_UNROLL
    for (int y = 0; y < AM_NO; y++)
AM_UNROLL
        for (int i = 0; i < AM_NR; i++)
            ATTN_STORE(o, obase + (size_t)(y * 16 + AM_ROW(g, i)),
                       bad != 0.0f ? nan
                       : any       ? acc[y][i] * inv
                                   : 0.0f);
    if (has_lse && g == 0) {
        const float lg = nat ? m + log(lt) : (m + log2(lt)) * AM_LN2;
        ((__global uint *)lse)[(size_t)lse_off + (size_t)bh * (size_t)seq_q +
                               (size_t)r] = bad != 0.0f ? 0x7fc00000u
                                            : any       ? as_uint(lg)
                                                        : ATTN_NEG_INF_BITS;
    }
}
