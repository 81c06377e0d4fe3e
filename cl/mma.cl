/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fused attention on NVIDIA tensor cores: both products on mma.sync,
 * issued as inline PTX from OpenCL C 1.2 after common.cl (the f16 pairs
 * held in uint, no cl_khr_fp16).  MM_EMU=1 builds the same kernel with
 * each warp-level instruction computed through local memory instead, as
 * the PTX ISA defines it, so that the fragment layouts, masks and softmax
 * run and are tested on any OpenCL device.
 *
 * Products (MM_MODE).  1: F16 storage, mma m16n8k16 f16 x f16 + f32: Q K^T
 * exact in float, P rounded to f16 for P V (TF32 class: 11 bits).  2: F32
 * or BF16 storage, m16n8k8 tf32: every input of both products rounded to
 * TF32 (cvt.rna; a bfloat16, widened, is one already).  3: 3xTF32:
 * a = a_hi + a_lo, each product as a_lo b_hi + a_hi b_lo + a_hi b_hi (for
 * scores the low parts' products summed apart and added to a finite
 * a_hi b_hi only; a bfloat16's a_lo is 0).  Sums in float
 * throughout.  P and V enter P V finite (a tile whose V holds an inf or
 * NaN takes the SIMT path below; a NaN in P poisons its row anyway).
 *
 * Layout of the work (FlashAttention-2).  A work-group of 4 warps takes 64
 * query rows of one (batch, query head), 16 rows per warp; lane l of a warp
 * (group g = l / 4, t = l % 4) holds rows g and g + 8 of its warp.  Q stays
 * in registers as A fragments.  Per tile of MM_BC keys, K [key][d] and V^T
 * [d][key] are staged in local memory; S = Q K^T lands in C fragments
 * (lane: keys 2t, 2t + 1 of each block of 8), is scaled, masked and turned
 * into P in place, and P is the A fragment of P V without leaving the
 * registers: for m16n8k16 the C layout of two key blocks is the A layout;
 * for m16n8k8 the key order inside a block is permuted (A column t is key
 * 2t, column t + 4 key 2t + 1), which V's B fragment follows.  Row maxima
 * and sums meet over the 4 lanes of a row by shfl.sync.bfly; the running O
 * is rescaled when the maximum grows, divided by the row sum once.
 *
 * Scores, masks and the non-finite rules are the tiled kernel's (tiled.cl):
 * natural units with a bias (differences times log2(e)), base 2 without;
 * a visible key's p never reaches 0; a NaN or +inf score at a visible key
 * makes its row NaN; a row that sees nothing gives O = 0, lse = -inf.  A
 * tile whose V holds an inf or NaN takes P V on the SIMT units from a
 * local copy of P, skipping hidden keys (p = 0), since the tensor cores
 * would multiply 0 by it.
 */

#ifndef MM_D /* head_dim = head_dim_v, a multiple of 16 */
#define MM_D 64
#endif
#ifndef MM_BC /* keys per tile, a multiple of 16 */
#define MM_BC 64
#endif
#ifndef MM_MODE
#define MM_MODE 2
#endif
#ifndef MM_EMU
#define MM_EMU 1
#endif

#if (MM_MODE == 1) != (ATTN_F16 == 1)
#error "MM_MODE 1 is for F16 storage, 2 and 3 for F32 and BF16"
#endif
/* Emulated, the loops stay rolled: each of their steps holds barriers. */
#if MM_EMU
#define MM_UNROLL _Pragma("unroll 1")
#else
#define MM_UNROLL _Pragma("unroll")
#endif

#define MM_WG 128 /* 4 warps */
#define MM_BR 64  /* query rows per work-group */
#define MM_NB (MM_BC / 8)
#define MM_NO (MM_D / 8)
#if MM_MODE == 1
#define MM_KS 16
#define MM_DP (MM_D + 8)   /* K row stride (halves): conflict-free B loads */
#define MM_BCP (MM_BC + 8) /* V^T row stride (halves) */
#define MM_ESZ 2
typedef ushort mm_el;
#else
#define MM_KS 8
#define MM_DP (MM_D + 4)
#define MM_BCP (MM_BC + 8)
#define MM_ESZ 4
typedef float mm_el;
#endif
#define MM_KQ (MM_D / MM_KS) /* k steps over the head */
/* Floats of the local buffer that holds the K tile, or P in a tile with a
 * non-finite V. */
#define MM_KF (MM_BC * MM_DP * MM_ESZ / 4)
#define MM_PF (MM_BR * MM_BC)
#define MM_KPF (MM_KF > MM_PF ? MM_KF : MM_PF)

#define MM_LOG2E 1.4426950408889634f
#define MM_LN2 0.6931471805599453f
#define MM_NONFINITE(x) ((as_uint(x) & 0x7f800000u) == 0x7f800000u)
#define MM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* 2^x for a visible key (x <= 0): never 0; NaN stays NaN. */
static float mm_exp2(float x)
{
    if ((as_uint(x) & 0x7fffffffu) > 0x7f800000u)
        return x;
    return exp2(x > -126.0f ? x : -126.0f);
}

/* Two floats as an f16 pair (round to nearest even), lo in bits 0-15. */
static uint mm_pack_half(float lo, float hi)
{
    ushort h[2];
    vstore_half_rte(lo, 0, (__private half *)h);
    vstore_half_rte(hi, 1, (__private half *)h);
    return (uint)h[0] | ((uint)h[1] << 16);
}

/* x rounded to TF32 (nearest, ties away: cvt.rna), the low 13 bits 0. */
static uint mm_tf32(float x)
{
#if MM_EMU
    const uint u = as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return u;
    return (u + 0x1000u) & 0xffffe000u;
#else
    uint r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r & 0xffffe000u;
#endif
}

/* The low part of x = hi + lo for 3xTF32: 0 when hi is inf or NaN (x
 * - hi would be NaN). */
static uint mm_tf32_lo(float x, uint hi)
{
    return MM_NONFINITE(as_float(hi)) ? 0u : mm_tf32(x - as_float(hi));
}

#if MM_EMU
/* The warp instructions through local memory.  Every item of the
 * work-group calls them at the same point (uniform control flow), as the
 * barriers need; ea/eb are this warp's A [16][16] and B [16][8]. */
static float mm_half(uint bits)
{
    const ushort h = (ushort)bits;
    return vload_half(0, (const __private half *)&h);
}

static void mm_emu(float *c, __local float *ea, __local float *eb, int lane,
                   int k)
{
    const int g = lane >> 2, t = lane & 3;
    barrier(CLK_LOCAL_MEM_FENCE);
MM_UNROLL
    for (int i = 0; i < 4; i++) {
        const int r = g + (i >> 1) * 8, col = 2 * t + (i & 1);
        float acc = c[i];
        for (int x = 0; x < k; x++)
            acc = fma(ea[r * 16 + x], eb[x * 8 + col], acc);
        c[i] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* m16n8k16 f16: a0 {A[g][2t..]}, a1 {A[g+8][2t..]}, a2 {A[g][2t+8..]},
 * a3 {A[g+8][2t+8..]}; b0 {B[2t..][g]}, b1 {B[2t+8..][g]}. */
static void mm_f16(float *c, uint a0, uint a1, uint a2, uint a3, uint b0,
                   uint b1, __local float *ea, __local float *eb, int lane)
{
    const int g = lane >> 2, t = lane & 3;
    const uint a[4] = {a0, a1, a2, a3}, b[2] = {b0, b1};
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < 8; i++) {
        const int r = g + ((i >> 1) & 1) * 8, col = 2 * t + (i & 1) + (i >> 2) * 8;
        ea[r * 16 + col] = mm_half(a[i >> 1] >> ((i & 1) * 16));
    }
    for (int i = 0; i < 4; i++) {
        const int k = 2 * t + (i & 1) + (i >> 1) * 8;
        eb[k * 8 + g] = mm_half(b[i >> 1] >> ((i & 1) * 16));
    }
    mm_emu(c, ea, eb, lane, 16);
}

/* m16n8k8 tf32: a0 A[g][t], a1 A[g+8][t], a2 A[g][t+4], a3 A[g+8][t+4];
 * b0 B[t][g], b1 B[t+4][g]. */
static void mm_tf(float *c, uint a0, uint a1, uint a2, uint a3, uint b0,
                  uint b1, __local float *ea, __local float *eb, int lane)
{
    const int g = lane >> 2, t = lane & 3;
    barrier(CLK_LOCAL_MEM_FENCE);
    ea[g * 16 + t] = as_float(a0);
    ea[(g + 8) * 16 + t] = as_float(a1);
    ea[g * 16 + t + 4] = as_float(a2);
    ea[(g + 8) * 16 + t + 4] = as_float(a3);
    eb[t * 8 + g] = as_float(b0);
    eb[(t + 4) * 8 + g] = as_float(b1);
    mm_emu(c, ea, eb, lane, 8);
}

/* The value x of lane ^ m (m = 1, 2). */
static float mm_shfl(float x, int m, __local float *er, int lid)
{
    barrier(CLK_LOCAL_MEM_FENCE);
    er[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    return er[lid ^ m];
}

#define MM_F16(c, a0, a1, a2, a3, b0, b1)                                      \
    mm_f16((c), (a0), (a1), (a2), (a3), (b0), (b1), ea, eb, lane)
#define MM_TF(c, a0, a1, a2, a3, b0, b1)                                       \
    mm_tf((c), (a0), (a1), (a2), (a3), (b0), (b1), ea, eb, lane)
#define MM_SH(x, m) mm_shfl((x), (m), er, lid)
#else
#define MM_F16(c, a0, a1, a2, a3, b0, b1)                                      \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "          \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "              \
                 "{%0, %1, %2, %3};"                                           \
                 : "+f"((c)[0]), "+f"((c)[1]), "+f"((c)[2]), "+f"((c)[3])      \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
#define MM_TF(c, a0, a1, a2, a3, b0, b1)                                       \
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "         \
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "              \
                 "{%0, %1, %2, %3};"                                           \
                 : "+f"((c)[0]), "+f"((c)[1]), "+f"((c)[2]), "+f"((c)[3])      \
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1))
static float mm_shfl1(float x)
{
    float o;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;"
                 : "=f"(o)
                 : "f"(x));
    return o;
}
static float mm_shfl2(float x)
{
    float o;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 2, 0x1f, 0xffffffff;"
                 : "=f"(o)
                 : "f"(x));
    return o;
}
#define MM_SH(x, m) ((m) == 1 ? mm_shfl1(x) : mm_shfl2(x))
#endif

/* The variable x becomes the maximum / sum of x over the 4 lanes of its
 * row (each lane's x evaluated once: the shuffles are in every lane). */
#define MM_ROW_MAX(x)                                                          \
    do {                                                                       \
        float y_ = MM_SH((x), 1);                                              \
        (x) = MM_MAX((x), y_);                                                 \
        y_ = MM_SH((x), 2);                                                    \
        (x) = MM_MAX((x), y_);                                                 \
    } while (0)
#define MM_ROW_SUM(x)                                                          \
    do {                                                                       \
        float y_ = MM_SH((x), 1);                                              \
        (x) += y_;                                                             \
        y_ = MM_SH((x), 2);                                                    \
        (x) += y_;                                                             \
    } while (0)

/* q, k, v, o: the caller's tensors at element offsets q_off ... o_off.
 * lse: floats at lse_off when has_lse.  bias: kind bias_kind (0: none).
 * kv_len: [batch] when has_kv_len.  qscale: what Q K^T is multiplied by
 * (the scale, times log2(e) unless nat); nat: scores in natural units (a
 * bias).  window: 0, or the window clamped to seq_q + diag; diag: the causal
 * diagonal's offset (seq_kv - seq_q, or 0 top-left).  Launch: global
 * (ceil(seq_q / 64) * 128, heads in this launch), local (128, 1); query
 * head bh0 + get_group_id(1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st ... o_st:
 * the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel __attribute__((reqd_work_group_size(MM_WG, 1, 1))) void
attn_mma(__global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
         ulong k_off, __global const ATTN_T *v, ulong v_off,
         __global ATTN_T *o, ulong o_off, __global float *lse, ulong lse_off,
         int has_lse, __global const float *bias, int bias_kind,
         ulong bias_sb, ulong bias_sh, ulong bias_sq,
         __global const int *kv_len, int has_kv_len, float qscale, int nat,
         int heads_q, int heads_kv, int seq_q, int seq_kv, int causal,
         int window, int diag, ulong4 q_st, ulong4 k_st, ulong4 v_st,
         ulong4 o_st, int bh0)
{
    /* Both as floats, so that the f16 pairs read as one uint are 4-byte
     * aligned (a ushort array need not be). */
    __local float kp[MM_KPF]; /* the K tile [key][MM_DP], or P */
    __local float vtf[(MM_D * MM_BCP * MM_ESZ + 3) / 4]; /* V^T [d][MM_BCP] */
    __local int vbad[2];
#if MM_EMU
    __local float ea_all[4 * 256], eb_all[4 * 128], er[MM_WG];
#endif
    __local mm_el *ks = (__local mm_el *)kp, *vt = (__local mm_el *)vtf;

    const int lid = (int)get_local_id(0);
    const int w = lid >> 5, lane = lid & 31, g = lane >> 2, t = lane & 3;
#if MM_EMU
    __local float *ea = ea_all + w * 256, *eb = eb_all + w * 128;
#endif
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int kvh = h / (heads_q / heads_kv);
    const int off = diag; /* the causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int row0 = (int)get_group_id(0) * MM_BR;
    const int nrows = min(seq_q - row0, MM_BR);

    /* Keys some row of the block sees: [j_start, j_end); keys every row
     * sees: [lo_all, hi_all]. */
    const int i_last = row0 + nrows - 1;
    const int j_start = window > 0 ? max(row0 + off - window + 1, 0) : 0;
    const int j_end = min(causal ? i_last + off + 1 : seq_kv, klen);
    const int lo_all = window > 0 ? i_last + off - window + 1 : 0;
    const int hi_all = min(causal ? row0 + off : seq_kv - 1, klen - 1);

    /* The lane's two rows (u = 0: g, u = 1: g + 8 of the warp). */
    int lo[2], hi[2], rr[2];
    float m[2], l[2], poison[2];
    size_t brow[2];
    float acc[MM_NO][4];
MM_UNROLL
    for (int u = 0; u < 2; u++) {
        const int r = row0 + w * 16 + g + u * 8;
        rr[u] = r;
        hi[u] = r < seq_q ? min(causal ? r + off : seq_kv - 1, klen - 1) : -1;
        lo[u] = window > 0 ? r + off - window + 1 : 0;
        m[u] = as_float(ATTN_MASKED_BITS);
        l[u] = 0.0f;
        poison[u] = 0.0f;
        brow[u] = (size_t)b * bias_sb + (size_t)h * bias_sh +
                  (size_t)r * bias_sq;
    }
MM_UNROLL
    for (int y = 0; y < MM_NO; y++)
MM_UNROLL
        for (int i = 0; i < 4; i++)
            acc[y][i] = 0.0f;

    /* Q as A fragments (0 past seq_q). */
    const size_t qbase = ATTN_ROW(q_off, q_st, b, h, 0);
#define MM_Q(r, c)                                                             \
    ((r) < seq_q ? ATTN_LOAD(q, qbase + (size_t)(r) * q_st.z + (size_t)(c))    \
                 : 0.0f)
    uint qa[MM_KQ][4];
#if MM_MODE == 3
    uint ql[MM_KQ][4];
#endif
MM_UNROLL
    for (int kk = 0; kk < MM_KQ; kk++) {
#if MM_MODE == 1
        const int c0 = kk * 16 + 2 * t;
        qa[kk][0] = mm_pack_half(MM_Q(rr[0], c0), MM_Q(rr[0], c0 + 1));
        qa[kk][1] = mm_pack_half(MM_Q(rr[1], c0), MM_Q(rr[1], c0 + 1));
        qa[kk][2] = mm_pack_half(MM_Q(rr[0], c0 + 8), MM_Q(rr[0], c0 + 9));
        qa[kk][3] = mm_pack_half(MM_Q(rr[1], c0 + 8), MM_Q(rr[1], c0 + 9));
#else
        const int c0 = kk * 8 + t;
        const float x[4] = {MM_Q(rr[0], c0), MM_Q(rr[1], c0),
                            MM_Q(rr[0], c0 + 4), MM_Q(rr[1], c0 + 4)};
MM_UNROLL
        for (int i = 0; i < 4; i++) {
            qa[kk][i] = mm_tf32(x[i]);
#if MM_MODE == 3
            ql[kk][i] = mm_tf32_lo(x[i], qa[kk][i]);
#endif
        }
#endif
    }
    if (lid < 2)
        vbad[lid] = 0;

    for (int jt = j_start, tn = 0; jt < j_end; jt += MM_BC, tn++) {
        const int nk = min(MM_BC, j_end - jt);
        const int full = bias_kind == 0 && nk == MM_BC && jt >= lo_all &&
                         jt + MM_BC - 1 <= hi_all;
        float s[MM_NB][4];

        /* ---- K [key][d] and V^T [d][key] of the tile (0 past nk) ---- */
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        {
            int bad = 0;
#pragma unroll 2
            for (int e = lid; e < MM_BC * MM_D; e += MM_WG) {
                const int j = e / MM_D, c = e % MM_D;
                const size_t ka = ATTN_ROW(k_off, k_st, b, kvh, jt + j) + c,
                             va = ATTN_ROW(v_off, v_st, b, kvh, jt + j) + c;
#if MM_MODE == 1
                const ushort kx = j < nk ? ((__global const ushort *)k)[ka] : 0;
                const ushort vx = j < nk ? ((__global const ushort *)v)[va] : 0;
                bad |= (vx & 0x7c00) == 0x7c00;
#else
                /* F32, or BF16 widened exactly */
                const float kx = j < nk ? ATTN_LOAD(k, ka) : 0.0f;
                const float vx = j < nk ? ATTN_LOAD(v, va) : 0.0f;
                bad |= MM_NONFINITE(vx);
#endif
                ks[j * MM_DP + c] = kx;
                vt[c * MM_BCP + j] = vx;
            }
            if (bad)
                vbad[tn & 1] = 1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0)
            vbad[(tn + 1) & 1] = 0; /* read last in the previous tile */

        /* ---- S = Q K^T ---- */
#if MM_MODE == 3
        /* The low parts' products apart: where an inf meets a low part of
         * 0 they give NaN, and a score whose high part is inf or NaN is
         * that already. */
        float sl[MM_NB][4];
#endif
MM_UNROLL
        for (int nb = 0; nb < MM_NB; nb++) {
MM_UNROLL
            for (int i = 0; i < 4; i++) {
                s[nb][i] = 0.0f;
#if MM_MODE == 3
                sl[nb][i] = 0.0f;
#endif
            }
            __local const mm_el *kr = ks + (nb * 8 + g) * MM_DP;
MM_UNROLL
            for (int kk = 0; kk < MM_KQ; kk++) {
#if MM_MODE == 1
                const uint b0 = *(__local const uint *)(kr + kk * 16 + 2 * t);
                const uint b1 =
                    *(__local const uint *)(kr + kk * 16 + 2 * t + 8);
                MM_F16(s[nb], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0,
                       b1);
#else
                const float x0 = kr[kk * 8 + t], x1 = kr[kk * 8 + t + 4];
                const uint b0 = mm_tf32(x0), b1 = mm_tf32(x1);
#if MM_MODE == 3
                const uint l0 = mm_tf32_lo(x0, b0),
                           l1 = mm_tf32_lo(x1, b1);
                MM_TF(sl[nb], ql[kk][0], ql[kk][1], ql[kk][2], ql[kk][3], b0,
                      b1);
                MM_TF(sl[nb], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], l0,
                      l1);
#endif
                MM_TF(s[nb], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0,
                      b1);
#endif
            }
#if MM_MODE == 3
MM_UNROLL
            for (int i = 0; i < 4; i++)
                if (!MM_NONFINITE(s[nb][i]))
                    s[nb][i] += sl[nb][i];
#endif
        }

        /* ---- scale, masks, bias; hidden scores become ATTN_MASKED ---- */
        float mt[2] = {as_float(ATTN_MASKED_BITS), as_float(ATTN_MASKED_BITS)};
MM_UNROLL
        for (int nb = 0; nb < MM_NB; nb++)
MM_UNROLL
            for (int i = 0; i < 4; i++) {
                const int u = i >> 1, j = jt + nb * 8 + 2 * t + (i & 1);
                float sv = s[nb][i] * qscale;
                int vis = full || (j < jt + nk && j >= lo[u] && j <= hi[u]);
                if (!full && vis && bias_kind != 0) {
                    const float bv = bias[brow[u] + (size_t)j];
                    /* A -INFINITY bias hides the key; never added. */
                    vis = as_uint(bv) != ATTN_NEG_INF_BITS;
                    sv += bv;
                }
                vis = vis && as_uint(sv) != ATTN_NEG_INF_BITS;
                if (vis && (isnan(sv) || as_uint(sv) == 0x7f800000u))
                    poison[u] = 1.0f;
                sv = vis ? sv : as_float(ATTN_MASKED_BITS);
                s[nb][i] = sv;
                mt[u] = MM_MAX(sv, mt[u]);
            }

        /* ---- the rows' new maxima, P in place, partial sums ---- */
        float corr[2];
        const float f = nat ? MM_LOG2E : 1.0f;
MM_UNROLL
        for (int u = 0; u < 2; u++) {
            float mn = mt[u];
            MM_ROW_MAX(mn);
            mn = MM_MAX(mn, m[u]);
            corr[u] = as_uint(mn) != ATTN_MASKED_BITS &&
                              as_uint(m[u]) != ATTN_MASKED_BITS
                          ? mm_exp2((m[u] - mn) * f)
                          : 1.0f;
            m[u] = mn;
        }
        float sum[2] = {0.0f, 0.0f};
MM_UNROLL
        for (int nb = 0; nb < MM_NB; nb++)
MM_UNROLL
            for (int i = 0; i < 4; i++) {
                const int u = i >> 1;
                const float sv = s[nb][i];
                const float p = as_uint(sv) != ATTN_MASKED_BITS
                                    ? mm_exp2((sv - m[u]) * f)
                                    : 0.0f;
                s[nb][i] = p;
                sum[u] += p;
            }
MM_UNROLL
        for (int u = 0; u < 2; u++)
            l[u] = l[u] * corr[u] + sum[u];
MM_UNROLL
        for (int y = 0; y < MM_NO; y++)
MM_UNROLL
            for (int i = 0; i < 4; i++)
                acc[y][i] *= corr[i >> 1];

        /* ---- O += P V ---- */
        if (!vbad[tn & 1]) {
#if MM_MODE == 1
MM_UNROLL
            for (int kb = 0; kb < MM_NB / 2; kb++) {
                const uint a0 = mm_pack_half(s[2 * kb][0], s[2 * kb][1]);
                const uint a1 = mm_pack_half(s[2 * kb][2], s[2 * kb][3]);
                const uint a2 =
                    mm_pack_half(s[2 * kb + 1][0], s[2 * kb + 1][1]);
                const uint a3 =
                    mm_pack_half(s[2 * kb + 1][2], s[2 * kb + 1][3]);
MM_UNROLL
                for (int y = 0; y < MM_NO; y++) {
                    __local const mm_el *vr =
                        vt + (y * 8 + g) * MM_BCP + kb * 16 + 2 * t;
                    const uint b0 = *(__local const uint *)vr;
                    const uint b1 = *(__local const uint *)(vr + 8);
                    MM_F16(acc[y], a0, a1, a2, a3, b0, b1);
                }
            }
#else
MM_UNROLL
            for (int nb = 0; nb < MM_NB; nb++) {
                /* Column t of A is key 2t, column t + 4 key 2t + 1. */
                const uint a0 = mm_tf32(s[nb][0]), a1 = mm_tf32(s[nb][2]);
                const uint a2 = mm_tf32(s[nb][1]), a3 = mm_tf32(s[nb][3]);
#if MM_MODE == 3
                const uint p0 = mm_tf32_lo(s[nb][0], a0);
                const uint p1 = mm_tf32_lo(s[nb][2], a1);
                const uint p2 = mm_tf32_lo(s[nb][1], a2);
                const uint p3 = mm_tf32_lo(s[nb][3], a3);
#endif
MM_UNROLL
                for (int y = 0; y < MM_NO; y++) {
                    __local const mm_el *vr =
                        vt + (y * 8 + g) * MM_BCP + nb * 8 + 2 * t;
                    const uint b0 = mm_tf32(vr[0]), b1 = mm_tf32(vr[1]);
#if MM_MODE == 3
                    const uint l0 = mm_tf32_lo(vr[0], b0),
                               l1 = mm_tf32_lo(vr[1], b1);
                    MM_TF(acc[y], p0, p1, p2, p3, b0, b1);
                    MM_TF(acc[y], a0, a1, a2, a3, l0, l1);
#endif
                    MM_TF(acc[y], a0, a1, a2, a3, b0, b1);
                }
            }
#endif
        } else {
            /* inf / NaN in V: P through local memory (over the K tile),
             * hidden keys (p = 0) skipped. */
            barrier(CLK_LOCAL_MEM_FENCE);
MM_UNROLL
            for (int nb = 0; nb < MM_NB; nb++)
MM_UNROLL
                for (int i = 0; i < 4; i++)
                    kp[(w * 16 + g + (i >> 1) * 8) * MM_BC + nb * 8 + 2 * t +
                       (i & 1)] = s[nb][i];
            barrier(CLK_LOCAL_MEM_FENCE);
MM_UNROLL
            for (int y = 0; y < MM_NO; y++)
MM_UNROLL
                for (int i = 0; i < 4; i++) {
                    const int row = w * 16 + g + (i >> 1) * 8;
                    const int c = y * 8 + 2 * t + (i & 1);
                    float a = acc[y][i];
                    for (int j = 0; j < nk; j++) {
                        const float p = kp[row * MM_BC + j];
#if MM_MODE == 1
                        if (p != 0.0f)
                            a = fma(p,
                                    vload_half(0, (__local const half *)(
                                                      vt + c * MM_BCP + j)),
                                    a);
#else
                        if (p != 0.0f)
                            a = fma(p, vt[c * MM_BCP + j], a);
#endif
                    }
                    acc[y][i] = a;
                }
        }
    }

    /* ---- the row sums meet; O = O / l, lse ---- */
    float lt[2], bad[2];
MM_UNROLL
    for (int u = 0; u < 2; u++) {
        lt[u] = l[u];
        MM_ROW_SUM(lt[u]);
        bad[u] = poison[u];
        MM_ROW_MAX(bad[u]);
    }
    const float nan = as_float(0x7fc00000u);
MM_UNROLL
    for (int u = 0; u < 2; u++) {
        const int r = rr[u];
        if (r >= seq_q)
            continue;
        const int any = as_uint(m[u]) != ATTN_MASKED_BITS;
        const float inv = any ? 1.0f / lt[u] : 0.0f;
        const size_t obase = ATTN_ROW(o_off, o_st, b, h, r);
MM_UNROLL
        for (int y = 0; y < MM_NO; y++)
MM_UNROLL
            for (int e = 0; e < 2; e++)
                ATTN_STORE(o, obase + (size_t)(y * 8 + 2 * t + e),
                           bad[u] != 0.0f ? nan
                           : any          ? acc[y][u * 2 + e] * inv
                                          : 0.0f);
        if (has_lse && t == 0) {
            const float lg =
                nat ? m[u] + log(lt[u]) : (m[u] + log2(lt[u])) * MM_LN2;
            ((__global uint *)lse)[(size_t)lse_off +
                                   (size_t)bh * (size_t)seq_q + (size_t)r] =
                bad[u] != 0.0f ? 0x7fc00000u
                : any          ? as_uint(lg)
                               : ATTN_NEG_INF_BITS;
        }
    }
}
