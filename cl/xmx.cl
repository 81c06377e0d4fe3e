/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fused attention on Intel XMX matrix units: both products on DPAS through
 * cl_intel_subgroup_matrix_multiply_accumulate, subgroups of 8 (Xe-HPG:
 * Arc, DG2), F16 or BF16 storage.  XM_EMU=1 builds the same kernel with
 * the matrix operation and the subgroup reductions computed through local
 * memory instead, as the extension defines them, so that the data layout,
 * masks and softmax run and are tested on any OpenCL device.
 *
 * Products: intel_sub_group_f16_f16_matrix_mad_k16 (M 8, N 8, K 16), f16
 * x f16 + f32, for F16 storage (ATTN_F16); for BF16 storage (ATTN_BF16)
 * intel_sub_group_bf16_bf16_matrix_mad_k16, bfloat16 x bfloat16 + f32,
 * with the same layout.  Q and K enter as stored, so Q K^T is exact in
 * float (16-bit products are); P is rounded to the storage's 16-bit type
 * for P V, to nearest even (f16: TF32 class, 11 bits; bfloat16: BF16
 * class, 8 bits).  Sums in float throughout.  The extension's layout at
 * subgroup size 8: A (8 x 16) is int8, lane i's component m the pair of
 * 16-bit values A[m][2i], A[m][2i + 1] (lower index in the low 16 bits);
 * B (16 x 8) is int8, lane n's component j the pair B[2j][n], B[2j +
 * 1][n]; the result is float8, lane n's component m C[m][n].
 *
 * Layout of the work.  A work-group of 8 subgroups takes 64 query rows of
 * one (batch, query head), 8 rows per subgroup (the DPAS's M).  Q stays
 * in registers as A fragments (int8 per 16 columns of the head; above
 * head size 64 in local memory, each lane's own, so that O and S keep
 * the registers).  Per
 * tile of XM_BC keys, K [key][d] and V are staged in local memory; S = Q
 * K^T lands in one float8 per 8 keys (lane n: key n of the block, one
 * component per row), is scaled, masked and turned into P in place, and P
 * becomes the A fragment of P V without leaving the registers: lane i
 * packs the p of its keys i and i + 8 of each 16 (logical k 2i and 2i +
 * 1), and V is staged packed in that key order, so that lane n's B
 * fragment is 8 consecutive words.  Row maxima and sums meet over the 8
 * lanes by subgroup reductions; the running O is rescaled when the
 * maximum grows, divided by the row sum once.
 *
 * Scores, masks and the non-finite rules are the tiled kernel's (tiled.cl)
 * and mma.cl's: natural units with a bias, base 2 without; a visible key's
 * p never reaches 0; a NaN or +inf score at a visible key makes its row
 * NaN; a row that sees nothing gives O = 0, lse = -inf.  A tile whose V
 * holds an inf or NaN takes P V on the SIMT units from a local copy of P,
 * skipping hidden keys (p = 0), since the matrix units would multiply 0
 * by it.
 */

#ifndef XM_D /* head_dim = head_dim_v, a multiple of 16 */
#define XM_D 64
#endif
#ifndef XM_BC /* keys per tile, a multiple of 16 */
#define XM_BC 32
#endif
#ifndef XM_EMU
#define XM_EMU 1
#endif

#if !ATTN_F16 && !ATTN_BF16
#error "the xmx kernel takes F16 or BF16 storage"
#endif
/* XM_NONFINITE(u): whether the 16-bit element of bits u is an inf or a
 * NaN; XM_LOADL(p, i): element i of local 16-bit storage p as a float. */
#if ATTN_BF16
#define XM_NONFINITE(u) (((u) & 0x7f80) == 0x7f80)
#define XM_LOADL(p, i) as_float((uint)(p)[i] << 16)
#else
#define XM_NONFINITE(u) (((u) & 0x7c00) == 0x7c00)
#define XM_LOADL(p, i) vload_half((i), (__local const half *)(p))
#endif
/* XM_FOR(i, n, body): body for i = 0 .. n - 1 (n <= 16, a constant).
 * Emulated, a loop: each step holds barriers.  Otherwise unrolled by the
 * preprocessor: Intel's compiler leaves this kernel's loops rolled in
 * spite of #pragma unroll (its size), which would put the fragment arrays
 * (Q, S, O) in private memory; each step here is a constant index. */
#if XM_EMU
#define XM_FOR(i, n, ...)                                                      \
    for (int i = 0; i < (n); i++) {                                            \
        __VA_ARGS__                                                            \
    }
#else
#define XM_STEP(i, k, n, ...)                                                  \
    if ((k) < (n)) {                                                           \
        const int i = (k);                                                     \
        __VA_ARGS__                                                            \
    }
#define XM_FOR(i, n, ...)                                                      \
    XM_STEP(i, 0, n, __VA_ARGS__) XM_STEP(i, 1, n, __VA_ARGS__)                \
    XM_STEP(i, 2, n, __VA_ARGS__) XM_STEP(i, 3, n, __VA_ARGS__)                \
    XM_STEP(i, 4, n, __VA_ARGS__) XM_STEP(i, 5, n, __VA_ARGS__)                \
    XM_STEP(i, 6, n, __VA_ARGS__) XM_STEP(i, 7, n, __VA_ARGS__)                \
    XM_STEP(i, 8, n, __VA_ARGS__) XM_STEP(i, 9, n, __VA_ARGS__)                \
    XM_STEP(i, 10, n, __VA_ARGS__) XM_STEP(i, 11, n, __VA_ARGS__)              \
    XM_STEP(i, 12, n, __VA_ARGS__) XM_STEP(i, 13, n, __VA_ARGS__)              \
    XM_STEP(i, 14, n, __VA_ARGS__) XM_STEP(i, 15, n, __VA_ARGS__)
#endif

#define XM_WG 64           /* 8 subgroups of 8 */
#define XM_BR 64           /* query rows per work-group */
#define XM_NB (XM_BC / 8)  /* key blocks of 8 per tile */
#define XM_KV (XM_BC / 16) /* k steps of P V per tile */
#define XM_NO (XM_D / 8)   /* column blocks of O */
#define XM_KQ (XM_D / 16)  /* k steps of Q K^T */
#define XM_KS (XM_D / 2 + 1) /* K row stride (words of two halves) */
/* Q's fragments in local memory (each lane its own) rather than in
 * registers, for the larger heads: registers hold O and S. */
#define XM_QL (XM_D > 64)
#if XM_NO > 16 || XM_NB > 16 || XM_D % 16 != 0 || XM_BC % 16 != 0
#error "XM_D: 16 to 128, XM_BC: 16 to 128, multiples of 16"
#endif
/* Words of the local buffer that holds the K tile, or P in a tile with a
 * non-finite V. */
#define XM_KW (XM_BC * XM_KS)
#define XM_PW (XM_BR * XM_BC)
#define XM_KPW (XM_KW > XM_PW ? XM_KW : XM_PW)

#define XM_LOG2E 1.4426950408889634f
#define XM_LN2 0.6931471805599453f

/* 2^x for visible keys (x <= 0): never 0; NaN stays NaN. */
static float8 xm_exp2(float8 x)
{
    return select(exp2(fmax(x, (float8)(-126.0f))), x, isnan(x));
}

/* Lane i's A fragment of P V from the p of its keys i (lo) and i + 8 (hi)
 * of 16: each row's pair in the storage's 16-bit type, rounded to nearest
 * even (bfloat16 as ATTN_STORE rounds it; p >= 2^-126 or 0, or NaN). */
static int8 xm_pack_p(float8 lo, float8 hi)
{
#if ATTN_BF16
    const uint8 a = as_uint8(lo), b = as_uint8(hi);
    const uint8 ra = (a + (uint8)(0x7fffu) + ((a >> 16) & (uint8)(1u))) >> 16,
                rb = (b + (uint8)(0x7fffu) + ((b >> 16) & (uint8)(1u))) >> 16;
    /* NaN kept a quiet NaN (rounding could carry it to inf). */
    const uint8 qa = select(ra, (a >> 16) | (uint8)(0x40u), isnan(lo)),
                qb = select(rb, (b >> 16) | (uint8)(0x40u), isnan(hi));
    return as_int8(qa | (qb << 16));
#else
    ushort h0[8], h1[8];
    vstore_half8_rte(lo, 0, (__private half *)h0);
    vstore_half8_rte(hi, 0, (__private half *)h1);
    return as_int8(convert_uint8(vload8(0, h0)) |
                   (convert_uint8(vload8(0, h1)) << 16));
#endif
}

/* The component-wise maximum: a where b is not greater (b NaN too). */
static float8 xm_max8(float8 a, float8 b)
{
    return select(a, b, isgreater(b, a));
}

#if XM_EMU
/* The subgroup operations through local memory.  Every item of the
 * work-group calls them at the same point (uniform control flow), as the
 * barriers need; ea, eb and er are this subgroup's own (64 words each).
 * xm_half: the float of the 16-bit element in the low half of bits. */
static float xm_half(uint bits)
{
#if ATTN_BF16
    return as_float(bits << 16);
#else
    const ushort h = (ushort)bits;
    return vload_half(0, (const __private half *)&h);
#endif
}

/* acc + A B as intel_sub_group_f16_f16_matrix_mad_k16 (F16) or
 * intel_sub_group_bf16_bf16_matrix_mad_k16 (BF16) at subgroup size 8
 * defines it: row m of A is component m of the lanes' a, lane i holding
 * columns 2i and 2i + 1; column n of B is lane n's b. */
static float8 xm_dpas(float8 acc, int8 a, int8 b, __local uint *ea,
                      __local uint *eb, int lane)
{
    float r[8];
    barrier(CLK_LOCAL_MEM_FENCE);
    vstore8(as_uint8(a), lane, ea);
    vstore8(as_uint8(b), lane, eb);
    barrier(CLK_LOCAL_MEM_FENCE);
    vstore8(acc, 0, r);
    for (int m = 0; m < 8; m++) {
        float x = r[m];
        for (int i = 0; i < 8; i++) {
            const uint av = ea[i * 8 + m], bv = eb[lane * 8 + i];
            x = fma(xm_half(av), xm_half(bv), x);
            x = fma(xm_half(av >> 16), xm_half(bv >> 16), x);
        }
        r[m] = x;
    }
    return vload8(0, r);
}

/* Each component's maximum (op 0) or sum (op 1) over the 8 lanes. */
static float8 xm_reduce(float8 x, int op, __local float *er, int lane)
{
    barrier(CLK_LOCAL_MEM_FENCE);
    vstore8(x, lane, er);
    barrier(CLK_LOCAL_MEM_FENCE);
    float8 r = vload8(0, er);
    for (int i = 1; i < 8; i++)
        r = op ? r + vload8(i, er) : xm_max8(r, vload8(i, er));
    return r;
}

#define XM_DPAS(acc, a, b) ((acc) = xm_dpas((acc), (a), (b), ea, eb, lane))
#define XM_RMAX(x) xm_reduce((x), 0, er, lane)
#define XM_RSUM(x) xm_reduce((x), 1, er, lane)
#else
#if ATTN_BF16
#define XM_MAD intel_sub_group_bf16_bf16_matrix_mad_k16
#else
#define XM_MAD intel_sub_group_f16_f16_matrix_mad_k16
#endif
#ifndef cl_intel_subgroup_matrix_multiply_accumulate
/* Some compilers define the built-in without declaring it. */
float8 __attribute__((overloadable)) XM_MAD(int8 a, int8 b, float8 acc);
#endif
static float8 xm_rmax(float8 x)
{
    return (float8)(sub_group_reduce_max(x.s0), sub_group_reduce_max(x.s1),
                    sub_group_reduce_max(x.s2), sub_group_reduce_max(x.s3),
                    sub_group_reduce_max(x.s4), sub_group_reduce_max(x.s5),
                    sub_group_reduce_max(x.s6), sub_group_reduce_max(x.s7));
}
static float8 xm_rsum(float8 x)
{
    return (float8)(sub_group_reduce_add(x.s0), sub_group_reduce_add(x.s1),
                    sub_group_reduce_add(x.s2), sub_group_reduce_add(x.s3),
                    sub_group_reduce_add(x.s4), sub_group_reduce_add(x.s5),
                    sub_group_reduce_add(x.s6), sub_group_reduce_add(x.s7));
}
#define XM_DPAS(acc, a, b) ((acc) = XM_MAD((a), (b), (acc)))
#define XM_RMAX(x) xm_rmax(x)
#define XM_RSUM(x) xm_rsum(x)
#endif

/* M(m, c) for each row m of a subgroup's 8, c its vector component. */
#define XM_ROWS(M)                                                             \
    M(0, s0) M(1, s1) M(2, s2) M(3, s3) M(4, s4) M(5, s5) M(6, s6) M(7, s7)

/* The kernel's per-row steps (for XM_ROWS, inside attn_xmx). */
#define XM_BIAS(mm, c)                                                         \
    if (vis.c) {                                                               \
        const float bv =                                                       \
            bias[bb + (size_t)(rs + (mm)) * bias_sq + (size_t)j];              \
        if (as_uint(bv) == ATTN_NEG_INF_BITS)                                  \
            vis.c = 0;                                                         \
        else                                                                   \
            x.c += bv;                                                         \
    }
#define XM_STORE_O(mm, c)                                                      \
    if (rs + (mm) < seq_q)                                                     \
        ATTN_STORE(o, obase + (size_t)(mm) * o_st.z + (size_t)(y * 8 + lane),  \
                   out.c);
#define XM_STORE_L(mm, c)                                                      \
    if (rs + (mm) < seq_q)                                                     \
        lo_[mm] = bits.c;

/* One element of 16-bit storage at element index i, as its bits. */
#define XM_H(p, i) (((__global const ushort *)(p))[i])

/* q, k, v, o: the caller's tensors at element offsets q_off ... o_off.
 * lse: floats at lse_off when has_lse.  bias: kind bias_kind (0: none).
 * kv_len: [batch] when has_kv_len.  qscale: what Q K^T is multiplied by
 * (the scale, times log2(e) unless nat); nat: scores in natural units (a
 * bias).  window: 0, or the window clamped to seq_q + diag; diag: the
 * causal diagonal's offset (seq_kv - seq_q, or 0 top-left).  The bias
 * element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i * bias_sq +
 * j] (a stride is 0 where the bias is broadcast).  q_st ... o_st: the
 * tensors' strides over batch, head and row (ATTN_ROW).  Launch: global
 * (ceil(seq_q / 64) * 64, heads in this launch), local (64, 1); query
 * head bh0 + get_group_id(1). */
__kernel __attribute__((reqd_work_group_size(XM_WG, 1, 1)))
#if !XM_EMU
__attribute__((intel_reqd_sub_group_size(8)))
#endif
void attn_xmx(__global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
              ulong k_off, __global const ATTN_T *v, ulong v_off,
              __global ATTN_T *o, ulong o_off, __global float *lse,
              ulong lse_off, int has_lse, __global const float *bias,
              int bias_kind, ulong bias_sb, ulong bias_sh, ulong bias_sq,
              __global const int *kv_len, int has_kv_len, float qscale,
              int nat, int heads_q, int heads_kv, int seq_q, int seq_kv,
              int causal, int window, int diag, ulong4 q_st, ulong4 k_st,
              ulong4 v_st, ulong4 o_st, int bh0)
{
    __local uint kp[XM_KPW];            /* K [key][XM_KS], or P as floats */
    __local uint vp[XM_KV * XM_D * 8];  /* V packed: [k step][d][8] */
    __local int vbad[2];
#if XM_QL
    __local uint qs[8 * XM_KQ * 64]; /* [subgroup][k step][lane][row] */
#endif
#if XM_EMU
    __local uint ea_all[8 * 64], eb_all[8 * 64];
    __local float er_all[8 * 64];
#endif
    __local ushort *ks = (__local ushort *)kp, *vs = (__local ushort *)vp;
    __local float *pf = (__local float *)kp;

    const int lid = (int)get_local_id(0);
    const int sg = lid >> 3, lane = lid & 7;
#if XM_EMU
    __local uint *ea = ea_all + sg * 64, *eb = eb_all + sg * 64;
    __local float *er = er_all + sg * 64;
#endif
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int kvh = h / (heads_q / heads_kv);
    const int off = diag; /* the causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int row0 = (int)get_group_id(0) * XM_BR;
    const int nrows = min(seq_q - row0, XM_BR);

    /* Keys some row of the block sees: [j_start, j_end); keys every row
     * sees: [lo_all, hi_all]. */
    const int i_last = row0 + nrows - 1;
    const int j_start = window > 0 ? max(row0 + off - window + 1, 0) : 0;
    const int j_end = min(causal ? i_last + off + 1 : seq_kv, klen);
    const int lo_all = window > 0 ? i_last + off - window + 1 : 0;
    const int hi_all = min(causal ? row0 + off : seq_kv - 1, klen - 1);

    /* The subgroup's 8 rows: component m of the vectors is row rs + m.
     * Their first and last visible keys, lo8 and hi8. */
    const int rs = row0 + sg * 8;
    const int8 r8 = (int8)(rs) + (int8)(0, 1, 2, 3, 4, 5, 6, 7);
    const int8 hi8 = select((int8)(-1),
                            min(causal ? r8 + off : (int8)(seq_kv - 1),
                                (int8)(klen - 1)),
                            r8 < (int8)(seq_q));
    const int8 lo8 = window > 0 ? r8 + (off - window + 1) : (int8)(0);
    /* The bias row of query r: bb + r * bias_sq. */
    const size_t bb = (size_t)b * bias_sb + (size_t)h * bias_sh;
    float8 m8 = (float8)(as_float(ATTN_MASKED_BITS)), l8 = (float8)(0.0f);
    float8 poison = (float8)(0.0f);
    float8 acc[XM_NO];
    XM_FOR(y, XM_NO, acc[y] = (float8)(0.0f);)

    /* Q as A fragments: lane i, component m: Q[rs + m][16 kk + 2i ..]
     * (0 past seq_q). */
    const size_t qbase = ATTN_ROW(q_off, q_st, b, h, rs);
#if XM_QL
    __local uint *qsg = qs + (sg * XM_KQ * 8 + lane) * 8;
#define XM_QA(kk) as_int8(vload8(0, qsg + (kk) * 64))
#else
    int8 qa[XM_KQ];
#define XM_QA(kk) qa[kk]
#endif
#define XM_QW(mm, c)                                                           \
    qw.c = rs + (mm) < seq_q                                                   \
               ? (uint)XM_H(q, at + (size_t)(mm) * q_st.z) |                   \
                     ((uint)XM_H(q, at + (size_t)(mm) * q_st.z + 1) << 16)     \
               : 0u;
    XM_FOR(kk, XM_KQ, {
        const size_t at = qbase + (size_t)(kk * 16 + 2 * lane);
        uint8 qw;
        XM_ROWS(XM_QW)
#if XM_QL
        vstore8(qw, 0, qsg + kk * 64);
#else
        qa[kk] = as_int8(qw);
#endif
    })
    if (lid < 2)
        vbad[lid] = 0;

    for (int jt = j_start, tn = 0; jt < j_end; jt += XM_BC, tn++) {
        const int nk = min(XM_BC, j_end - jt);
        const int full = bias_kind == 0 && nk == XM_BC && jt >= lo_all &&
                         jt + XM_BC - 1 <= hi_all;
        float8 s[XM_NB];

        /* ---- K [key][d] and V packed (0 past nk) ---- */
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        {
            int bad = 0;
#pragma unroll 2
            for (int e = lid; e < XM_BC * XM_D; e += XM_WG) {
                const int j = e / XM_D, c = e % XM_D;
                const ushort kx =
                    j < nk ? XM_H(k, ATTN_ROW(k_off, k_st, b, kvh, jt + j) + c)
                           : 0;
                const ushort vx =
                    j < nk ? XM_H(v, ATTN_ROW(v_off, v_st, b, kvh, jt + j) + c)
                           : 0;
                bad |= XM_NONFINITE(vx);
                ks[j * 2 * XM_KS + c] = kx;
                /* Key 16 kb + 8 e2 + j8 at half e2 of word j8. */
                vs[(((j >> 4) * XM_D + c) * 8 + (j & 7)) * 2 + ((j >> 3) & 1)] =
                    vx;
            }
            if (bad)
                vbad[tn & 1] = 1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid == 0)
            vbad[(tn + 1) & 1] = 0; /* read last in the previous tile */

        /* ---- S = Q K^T: lane n of block nb is key nb * 8 + n ---- */
        XM_FOR(nb, XM_NB, {
            __local const uint *kr = kp + (nb * 8 + lane) * XM_KS;
            s[nb] = (float8)(0.0f);
            XM_FOR(kk, XM_KQ,
                   XM_DPAS(s[nb], XM_QA(kk), as_int8(vload8(0, kr + kk * 8)));)
        })

        /* ---- scale, masks, bias; hidden scores become ATTN_MASKED ---- */
        float8 mt = (float8)(as_float(ATTN_MASKED_BITS));
        XM_FOR(nb, XM_NB, {
            const int j = jt + nb * 8 + lane;
            float8 x = s[nb] * qscale;
            int8 vis = full || j < jt + nk ? (int8)(-1) : (int8)(0);
            if (!full)
                vis &= ((int8)(j) >= lo8) & ((int8)(j) <= hi8);
            if (!full && bias_kind != 0) {
                /* A -INFINITY bias hides the key; never added. */
                XM_ROWS(XM_BIAS)
            }
            vis &= as_uint8(x) != (uint8)(ATTN_NEG_INF_BITS);
            poison = select(poison, (float8)(1.0f),
                            vis & (isnan(x) |
                                   (as_uint8(x) == (uint8)(0x7f800000u))));
            s[nb] = select((float8)(as_float(ATTN_MASKED_BITS)), x, vis);
            mt = xm_max8(mt, s[nb]);
        })

        /* ---- the rows' new maxima, P in place, partial sums ---- */
        const float f = nat ? XM_LOG2E : 1.0f;
        const float8 mn = xm_max8(XM_RMAX(mt), m8);
        const float8 corr =
            select((float8)(1.0f), xm_exp2((m8 - mn) * f),
                   (as_uint8(mn) != (uint8)(ATTN_MASKED_BITS)) &
                       (as_uint8(m8) != (uint8)(ATTN_MASKED_BITS)));
        float8 sum = (float8)(0.0f);
        m8 = mn;
        XM_FOR(nb, XM_NB, {
            s[nb] = select((float8)(0.0f), xm_exp2((s[nb] - mn) * f),
                           as_uint8(s[nb]) != (uint8)(ATTN_MASKED_BITS));
            sum += s[nb];
        })
        l8 = l8 * corr + sum;
        XM_FOR(y, XM_NO, acc[y] *= corr;)

        /* ---- O += P V ---- */
        if (!vbad[tn & 1]) {
            XM_FOR(kb, XM_KV, {
                const int8 pa = xm_pack_p(s[2 * kb], s[2 * kb + 1]);
                __local const uint *vr = vp + (kb * XM_D + lane) * 8;
                XM_FOR(y, XM_NO,
                       XM_DPAS(acc[y], pa,
                               as_int8(vload8(0, vr + y * 64)));)
            })
        } else {
            /* inf / NaN in V: P through local memory (over the K tile, the
             * subgroup's [key][row]), hidden keys (p = 0) skipped. */
            __local float *ps = pf + sg * XM_BC * 8;
            barrier(CLK_LOCAL_MEM_FENCE);
            XM_FOR(nb, XM_NB, vstore8(s[nb], nb * 8 + lane, ps);)
            barrier(CLK_LOCAL_MEM_FENCE);
            XM_FOR(y, XM_NO, {
                const int c = y * 8 + lane;
                float8 a = acc[y];
                for (int j = 0; j < nk; j++) {
                    const float8 p = vload8(j, ps);
                    const float vj = XM_LOADL(
                        vs, (((j >> 4) * XM_D + c) * 8 + (j & 7)) * 2 +
                                ((j >> 3) & 1));
                    a = select(a, fma(p, (float8)(vj), a), p != (float8)(0.0f));
                }
                acc[y] = a;
            })
        }
    }

    /* ---- the row sums meet; O = O / l, lse ---- */
    const float8 lt = XM_RSUM(l8), bad8 = XM_RMAX(poison);
    const int8 any = as_uint8(m8) != (uint8)(ATTN_MASKED_BITS);
    const int8 isbad = bad8 != (float8)(0.0f);
    const float8 inv = select((float8)(0.0f), 1.0f / lt, any);
    const size_t obase = ATTN_ROW(o_off, o_st, b, h, rs);
    XM_FOR(y, XM_NO, {
        const float8 out = select(select((float8)(0.0f), acc[y] * inv, any),
                                  (float8)(as_float(0x7fc00000u)), isbad);
        XM_ROWS(XM_STORE_O)
    })
    if (has_lse && lane == 0) {
        const float8 lg =
            nat ? m8 + log(lt) : (m8 + log2(lt)) * XM_LN2;
        const uint8 bits =
            select(select((uint8)(ATTN_NEG_INF_BITS), as_uint8(lg), any),
                   (uint8)(0x7fc00000u), isbad);
        __global uint *lo_ =
            (__global uint *)lse + (size_t)lse_off +
            (size_t)bh * (size_t)seq_q + (size_t)rs;
        XM_ROWS(XM_STORE_L)
    }
}
