/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Register-tiled fused attention for GPUs: one pass over the keys with an
 * online softmax, no score matrix.  OpenCL C 1.2 after common.cl.
 *
 * Layout of the work.  A work-group of TL_TR x TL_TC items takes a block of
 * TL_BR = TL_TR * TL_RR query rows of one (batch, query head).  Item (tr,
 * tc) owns rows tr + i * TL_TR (i < TL_RR) and, per tile of TL_BC = TL_TC *
 * TL_CC keys, keys tc + x * TL_TC (x < TL_CC): its TL_RR x TL_CC scores
 * live in registers, and so do its TL_RR x TL_DC outputs (columns tc + y *
 * TL_TC of O, y < TL_DC = head_dim_v / TL_TC).  Local memory holds Q^T
 * [TL_HD][TL_BR] (staged once, scaled), K^T [TL_HD][TL_BC] and V
 * [TL_BC][TL_HDV] of the current tile, P [TL_BR][TL_BC + 1] between the
 * two products, and the row maxima of each item [TL_BR][TL_TC].  Strided
 * ownership makes the items of a row of the work-group read consecutive
 * local addresses (conflict-free) and those of a column the same one
 * (broadcast).  The next tile's K and V are loaded into registers while
 * the current one is computed.  With TL_KVS the K and V tiles share one
 * local buffer (for head sizes whose tiles do not fit side by side).
 *
 * Softmax.  Without a bias the scores are in base 2: Q is staged times
 * scale * log2(e), so P = 2^(S - m).  With a bias, or the additive score,
 * they stay natural (a bias near FLT_MAX would overflow times log2(e)) and
 * P = 2^((S - m) log2(e)).  The row maximum m is shared by the items of a
 * row once per tile; each item keeps a partial row sum, the running O is
 * rescaled only when the maximum grows, and the sums meet (and O is
 * divided by them) once, at the end.
 *
 * Reductions over a row's TL_TC items (consecutive local ids).  TL_SG
 * picks how: 0 through local memory (red, a barrier); else by butterfly
 * shuffles within the subgroup, no local memory and one barrier less per
 * tile: 1 NVIDIA's shfl.sync through inline PTX, 2 cl_intel_subgroups, 3
 * cl_khr_subgroup_shuffle, 4 emulated through local memory (the same
 * butterflies, for devices without subgroups: tests).  The shuffles are
 * taken only if the work-group's first act finds them exchanging the
 * values of local ids lid ^ m for every m < TL_TC (the partners a
 * butterfly needs: the rows whole and aligned in the subgroups); otherwise
 * the kernel reduces through local memory as TL_SG 0 does.  Both are
 * uniform over the work-group.
 *
 * Masks.  Row i sees key j iff lo(i) <= j <= hi(i) (causal, window,
 * kv_len), its bias is not -INFINITY and its score is not -INFINITY.  Tiles
 * outside the block's key range are never visited; a tile visible to every
 * row of the block (no bias) is computed without mask work.  A hidden key
 * gets p = 0 and, when the tile's V holds an inf or NaN, its product is
 * skipped (0 * NaN would reach the row); a visible key's p never reaches 0
 * (2^x is taken at x >= -126).  A NaN or +INFINITY score at a visible key
 * makes its row NaN (O and lse); a row that sees no key gives O = 0 and
 * lse = -INFINITY.  Bit patterns carry the tests, so finite-math options
 * cannot fold them.
 */

#ifndef TL_TR /* rows of items in a work-group */
#define TL_TR 16
#endif
#ifndef TL_TC /* columns of items */
#define TL_TC 8
#endif
#ifndef TL_RR /* query rows per item */
#define TL_RR 4
#endif
#ifndef TL_CC /* keys per item per tile */
#define TL_CC 4
#endif
#ifndef TL_HD /* head_dim, a compile-time constant */
#define TL_HD 64
#endif
#ifndef TL_HDV /* head_dim_v */
#define TL_HDV 64
#endif
#ifndef TL_KVS /* 1: K and V tiles share one local buffer */
#define TL_KVS 0
#endif
#ifndef TL_FMA
#define TL_FMA 0
#endif
#ifndef TL_SG /* row reductions: 0 local memory, 1-4 shuffles (above) */
#define TL_SG 0
#endif

#define TL_WG (TL_TR * TL_TC)
#define TL_BR (TL_TR * TL_RR)
#define TL_BC (TL_TC * TL_CC)
#define TL_DC ((TL_HDV + TL_TC - 1) / TL_TC) /* O columns per item */
#define TL_HDVP (TL_DC * TL_TC)              /* head_dim_v, padded */
#define TL_PS (TL_BC + 1)                    /* row stride of P */
/* Elements of a K / V tile each item loads. */
#define TL_KL ((TL_BC * TL_HD + TL_WG - 1) / TL_WG)
#define TL_VL ((TL_BC * TL_HDV + TL_WG - 1) / TL_WG)

#if TL_FMA
#define TL_MAD(a, b, c) fma((a), (b), (c))
#else
#define TL_MAD(a, b, c) mad((a), (b), (c))
#endif

#define TL_LOG2E 1.4426950408889634f
#define TL_LN2 0.6931471805599453f
/* x is inf or NaN. */
#define TL_NONFINITE(x) ((as_uint(x) & 0x7f800000u) == 0x7f800000u)
/* Larger of a and b without fmax's NaN rules. */
#define TL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* 2^x for a visible key (x <= 0): never 0, however far below the maximum
 * (also when the difference overflowed to -inf); NaN stays NaN. */
static float tl_exp2(float x)
{
    if ((as_uint(x) & 0x7fffffffu) > 0x7f800000u)
        return x;
    return exp2(x > -126.0f ? x : -126.0f);
}

/* The value x of the item whose local id is this one's ^ m (TL_SG). */
#if TL_SG == 1
static uint tl_xor(uint x, int m)
{
    uint y;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;"
                 : "=r"(y)
                 : "r"(x), "r"(m));
    return y;
}
#define TL_XOR(x, m) tl_xor((x), (m))
#elif TL_SG == 2
#pragma OPENCL EXTENSION cl_intel_subgroups : enable
#define TL_XOR(x, m) intel_sub_group_shuffle_xor((uint)(x), (uint)(m))
#elif TL_SG == 3
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#pragma OPENCL EXTENSION cl_khr_subgroup_shuffle : enable
#define TL_XOR(x, m) sub_group_shuffle_xor((uint)(x), (uint)(m))
#endif
/* y[u] = x[u] of the item lid ^ m, u < n: one exchange for all of them
 * when emulated (two barriers, not 2 n). */
#if TL_SG == 4
#define TL_XOR_N(y, x, n, m)                                                   \
    do {                                                                       \
        barrier(CLK_LOCAL_MEM_FENCE);                                          \
        _Pragma("unroll") for (int u_ = 0; u_ < (n); u_++)                     \
            ex[u_ * TL_WG + lid] = (x)[u_];                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                          \
        _Pragma("unroll") for (int u_ = 0; u_ < (n); u_++)                     \
            (y)[u_] = ex[u_ * TL_WG + (lid ^ (m))];                            \
    } while (0)
#elif TL_SG
#define TL_XOR_N(y, x, n, m)                                                   \
    do {                                                                       \
        _Pragma("unroll") for (int u_ = 0; u_ < (n); u_++)                     \
            (y)[u_] = TL_XOR((x)[u_], (m));                                    \
    } while (0)
#endif

/* Stores an item's share of the V tile (vr) into vs [TL_BC][TL_HDVP],
 * the padding columns 0; returns non-zero when a value is inf or NaN. */
static int tl_store_v(__local float *vs, const float *vr, int lid)
{
    int bad = 0;
#pragma unroll
    for (int u = 0; u < TL_VL; u++) {
        const int e = lid + u * TL_WG;
        if (e < TL_BC * TL_HDV) {
            vs[(e / TL_HDV) * TL_HDVP + e % TL_HDV] = vr[u];
            bad |= TL_NONFINITE(vr[u]);
        }
    }
#if TL_HDVP > TL_HDV
    for (int e = lid; e < TL_BC * (TL_HDVP - TL_HDV); e += TL_WG)
        vs[(e / (TL_HDVP - TL_HDV)) * TL_HDVP + TL_HDV +
           e % (TL_HDVP - TL_HDV)] = 0.0f;
#endif
    return bad;
}

/* q, k, v, o: the caller's tensors at element offsets q_off ... o_off.
 * lse: floats at lse_off when has_lse.  bias: kind bias_kind (0: none).
 * kv_len: [batch] when has_kv_len.  addw: [heads_q, head_dim] when
 * additive.  qscale: what Q is multiplied by (the scale, times log2(e)
 * unless nat); nat: scores in natural units (a bias or the additive score).
 * window: 0, or the window clamped to seq_q + diag; diag: the causal
 * diagonal's offset (seq_kv - seq_q, or 0 top-left).  Launch: global
 * (ceil(seq_q / TL_BR) * TL_WG, heads in this launch), local (TL_WG, 1);
 * query head bh0 + get_group_id(1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st ... o_st:
 * the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel __attribute__((reqd_work_group_size(TL_WG, 1, 1))) void
attn_tiled(__global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
           ulong k_off, __global const ATTN_T *v, ulong v_off,
           __global ATTN_T *o, ulong o_off, __global float *lse, ulong lse_off,
           int has_lse, __global const float *bias, int bias_kind,
           ulong bias_sb, ulong bias_sh, ulong bias_sq,
           __global const int *kv_len, int has_kv_len,
           __global const float *addw, int additive, float qscale, int nat,
           int heads_q, int heads_kv, int seq_q, int seq_kv, int causal,
           int window, int diag, ulong4 q_st, ulong4 k_st, ulong4 v_st,
           ulong4 o_st, int bh0)
{
    __local float qt[TL_HD * TL_BR];
#if TL_KVS
    __local float kv[(TL_HD * TL_BC > TL_BC * TL_HDVP) ? TL_HD * TL_BC
                                                       : TL_BC * TL_HDVP];
#define KT kv
#define VS kv
#else
    __local float kt[TL_HD * TL_BC];
    __local float vs[TL_BC * TL_HDVP];
#define KT kt
#define VS vs
#endif
    __local float ps[TL_BR * TL_PS];
    __local float red[TL_BR * TL_TC];
    __local float ws[TL_HD];
    __local int vbad[2];
#if TL_SG == 4
    __local uint ex[2 * TL_RR * TL_WG];
#endif

    const int lid = (int)get_local_id(0);
    const int tr = lid / TL_TC, tc = lid % TL_TC;
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int off = diag; /* the causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int row0 = (int)get_group_id(0) * TL_BR;
    const int nrows = min(seq_q - row0, TL_BR);

    /* Whether the shuffles pair the items of a row (above); emulated, they
     * do by construction, and the choice is left to the compiler (a
     * barrier under a run-time condition costs a CPU device's work-group
     * compiler dearly). */
#if TL_SG == 4
    const int sg = 1;
#elif TL_SG
    __local int sg_bad;
    if (lid == 0)
        sg_bad = 0;
    barrier(CLK_LOCAL_MEM_FENCE);
    {
        uint bad = 0u;
#pragma unroll
        for (int m = 1; m < TL_TC; m <<= 1)
            bad |= TL_XOR((uint)lid, m) ^ (uint)(lid ^ m);
        if (bad)
            sg_bad = 1;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const int sg = !sg_bad;
#else
    const int sg = 0;
#endif

    /* Keys some row of the block sees: [j_start, j_end); keys every row
     * sees: [lo_all, hi_all]. */
    const int i_last = row0 + nrows - 1;
    const int j_start = window > 0 ? max(row0 + off - window + 1, 0) : 0;
    const int j_end = min(causal ? i_last + off + 1 : seq_kv, klen);
    const int lo_all = window > 0 ? i_last + off - window + 1 : 0;
    const int hi_all = min(causal ? row0 + off : seq_kv - 1, klen - 1);

    /* The item's rows: visible ranges, running maximum and partial sum. */
    int lo[TL_RR], hi[TL_RR];
    float m[TL_RR], l[TL_RR], acc[TL_RR][TL_DC];
    uint poison[TL_RR]; /* a NaN or +inf score at a visible key */
    size_t brow[TL_RR];
#pragma unroll
    for (int i = 0; i < TL_RR; i++) {
        const int r = row0 + tr + i * TL_TR;
        const int live = r < seq_q;
        hi[i] = live ? min(causal ? r + off : seq_kv - 1, klen - 1) : -1;
        lo[i] = window > 0 ? r + off - window + 1 : 0;
        m[i] = as_float(ATTN_MASKED_BITS);
        l[i] = 0.0f;
        poison[i] = 0u;
#pragma unroll
        for (int y = 0; y < TL_DC; y++)
            acc[i][y] = 0.0f;
        brow[i] = (size_t)b * bias_sb + (size_t)h * bias_sh +
                  (size_t)r * bias_sq;
    }

    /* Q^T of the block, scaled (0 past seq_q), and the weights. */
    {
        const size_t qbase = ATTN_ROW(q_off, q_st, b, h, row0);
        const float qs = additive ? 1.0f : qscale;
        for (int e = lid; e < TL_BR * TL_HD; e += TL_WG) {
            const int r = e / TL_HD, c = e % TL_HD;
            qt[c * TL_BR + r] =
                r < nrows ? ATTN_LOAD(q, qbase + (size_t)r * q_st.z +
                                             (size_t)c) *
                                qs
                          : 0.0f;
        }
        for (int c = lid; c < TL_HD; c += TL_WG)
            ws[c] = additive ? addw[(size_t)h * TL_HD + (size_t)c] : 0.0f;
        if (lid < 2)
            vbad[lid] = 0;
    }

    /* The first tile's K and V into registers. */
    float kr[TL_KL], vr[TL_VL];
#define TL_FETCH(jt)                                                           \
    do {                                                                       \
        const int nk_ = min(TL_BC, j_end - (jt));                              \
        _Pragma("unroll") for (int u = 0; u < TL_KL; u++)                      \
        {                                                                      \
            const int e = lid + u * TL_WG, j = e / TL_HD;                      \
            kr[u] = e < TL_BC * TL_HD && j < nk_                               \
                        ? ATTN_LOAD(k, ATTN_ROW(k_off, k_st, b, g, (jt) + j) + \
                                           (size_t)(e % TL_HD))                \
                        : 0.0f;                                                \
        }                                                                      \
        _Pragma("unroll") for (int u = 0; u < TL_VL; u++)                      \
        {                                                                      \
            const int e = lid + u * TL_WG, j = e / TL_HDV;                     \
            vr[u] = e < TL_BC * TL_HDV && j < nk_                              \
                        ? ATTN_LOAD(v, ATTN_ROW(v_off, v_st, b, g, (jt) + j) + \
                                           (size_t)(e % TL_HDV))               \
                        : 0.0f;                                                \
        }                                                                      \
    } while (0)
    if (j_start < j_end)
        TL_FETCH(j_start);

    for (int jt = j_start, t = 0; jt < j_end; jt += TL_BC, t++) {
        const int nk = min(TL_BC, j_end - jt);
        const int full = bias_kind == 0 && nk == TL_BC && jt >= lo_all &&
                         jt + TL_BC - 1 <= hi_all;
        float s[TL_RR][TL_CC];

        /* K^T of the tile from the registers. */
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
#pragma unroll
        for (int u = 0; u < TL_KL; u++) {
            const int e = lid + u * TL_WG;
            if (e < TL_BC * TL_HD)
                KT[(e % TL_HD) * TL_BC + e / TL_HD] = kr[u];
        }
#if !TL_KVS
        if (tl_store_v(VS, vr, lid))
            vbad[t & 1] = 1;
        barrier(CLK_LOCAL_MEM_FENCE);
        /* The next tile's loads go out while this one is computed. */
        if (jt + TL_BC < j_end)
            TL_FETCH(jt + TL_BC);
#else
        barrier(CLK_LOCAL_MEM_FENCE);
#endif
        if (lid == 0)
            vbad[(t + 1) & 1] = 0; /* read last in the previous tile */

        /* ---- S = Q K^T (or the additive score) ---- */
#pragma unroll
        for (int i = 0; i < TL_RR; i++)
#pragma unroll
            for (int x = 0; x < TL_CC; x++)
                s[i][x] = 0.0f;
        if (!additive) {
#pragma unroll 4
            for (int c = 0; c < TL_HD; c++) {
                float qv[TL_RR], kc[TL_CC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
                    qv[i] = qt[c * TL_BR + tr + i * TL_TR];
#pragma unroll
                for (int x = 0; x < TL_CC; x++)
                    kc[x] = KT[c * TL_BC + tc + x * TL_TC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
#pragma unroll
                    for (int x = 0; x < TL_CC; x++)
                        s[i][x] = TL_MAD(qv[i], kc[x], s[i][x]);
            }
        } else {
            for (int c = 0; c < TL_HD; c++) {
                const float w = ws[c];
                float qv[TL_RR], kc[TL_CC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
                    qv[i] = qt[c * TL_BR + tr + i * TL_TR];
#pragma unroll
                for (int x = 0; x < TL_CC; x++)
                    kc[x] = KT[c * TL_BC + tc + x * TL_TC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
#pragma unroll
                    for (int x = 0; x < TL_CC; x++)
                        s[i][x] = TL_MAD(w, tanh(qv[i] + kc[x]), s[i][x]);
            }
        }

        /* ---- masks and bias; hidden scores become ATTN_MASKED ---- */
        float mt[TL_RR];
#pragma unroll
        for (int i = 0; i < TL_RR; i++) {
            mt[i] = as_float(ATTN_MASKED_BITS);
#pragma unroll
            for (int x = 0; x < TL_CC; x++) {
                const int j = jt + tc + x * TL_TC;
                float sv = s[i][x];
                int vis = full || (j < jt + nk && j >= lo[i] && j <= hi[i]);
                if (!full && vis && bias_kind != 0) {
                    const float bv = bias[brow[i] + (size_t)j];
                    /* A -INFINITY bias hides the key; never added. */
                    vis = as_uint(bv) != ATTN_NEG_INF_BITS;
                    sv += bv;
                }
                /* So does a -INFINITY score. */
                vis = vis && as_uint(sv) != ATTN_NEG_INF_BITS;
                if (vis && (isnan(sv) || as_uint(sv) == 0x7f800000u))
                    poison[i] = 1u;
                sv = vis ? sv : as_float(ATTN_MASKED_BITS);
                s[i][x] = sv;
                mt[i] = TL_MAX(sv, mt[i]);
            }
        }
        /* The row maxima over the row's items: butterflies, or red. */
#if TL_SG
        if (sg) {
#pragma unroll
            for (int z = TL_TC / 2; z > 0; z /= 2) {
                uint x[TL_RR], y[TL_RR];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
                    x[i] = as_uint(mt[i]);
                TL_XOR_N(y, x, TL_RR, z);
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
                    mt[i] = TL_MAX(as_float(y[i]), mt[i]);
            }
        } else
#endif
#pragma unroll
            for (int i = 0; i < TL_RR; i++)
                red[(tr + i * TL_TR) * TL_TC + tc] = mt[i];
#if TL_KVS
        /* The V tile replaces K once every item has its scores. */
        barrier(CLK_LOCAL_MEM_FENCE);
        if (tl_store_v(VS, vr, lid))
            vbad[t & 1] = 1;
#endif
        /* The row maxima in red; with shuffles the barrier before P V
         * (below) is the one the V tile needs. */
        if (!sg)
            barrier(CLK_LOCAL_MEM_FENCE);
#if TL_KVS
        if (jt + TL_BC < j_end)
            TL_FETCH(jt + TL_BC);
#endif

        /* ---- the rows' new maxima, P, partial sums ---- */
        float corr[TL_RR];
#pragma unroll
        for (int i = 0; i < TL_RR; i++) {
            const int r = tr + i * TL_TR;
            float mn = m[i];
            if (sg)
                mn = TL_MAX(mt[i], mn);
            else
#pragma unroll
                for (int z = 0; z < TL_TC; z++)
                    mn = TL_MAX(red[r * TL_TC + z], mn);
            const int any = as_uint(mn) != ATTN_MASKED_BITS;
            const float f = nat ? TL_LOG2E : 1.0f;
            corr[i] = any && as_uint(m[i]) != ATTN_MASKED_BITS
                          ? tl_exp2((m[i] - mn) * f)
                          : 1.0f;
            float sum = 0.0f;
#pragma unroll
            for (int x = 0; x < TL_CC; x++) {
                const float sv = s[i][x];
                const float p = as_uint(sv) != ATTN_MASKED_BITS
                                    ? tl_exp2((sv - mn) * f)
                                    : 0.0f;
                ps[r * TL_PS + tc + x * TL_TC] = p;
                sum += p;
            }
            l[i] = TL_MAD(l[i], corr[i], sum);
            m[i] = mn;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- O = O * corr + P V ---- */
#pragma unroll
        for (int i = 0; i < TL_RR; i++)
            if (corr[i] != 1.0f)
#pragma unroll
                for (int y = 0; y < TL_DC; y++)
                    acc[i][y] *= corr[i];
        if (!vbad[t & 1]) {
#pragma unroll 2
            for (int j = 0; j < TL_BC; j++) {
                float pv[TL_RR], vv[TL_DC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
                    pv[i] = ps[(tr + i * TL_TR) * TL_PS + j];
#pragma unroll
                for (int y = 0; y < TL_DC; y++)
                    vv[y] = VS[j * TL_HDVP + tc + y * TL_TC];
#pragma unroll
                for (int i = 0; i < TL_RR; i++)
#pragma unroll
                    for (int y = 0; y < TL_DC; y++)
                        acc[i][y] = TL_MAD(pv[i], vv[y], acc[i][y]);
            }
        } else {
            /* inf / NaN in V: a hidden key (p = 0) is skipped. */
            for (int j = 0; j < nk; j++) {
#pragma unroll
                for (int i = 0; i < TL_RR; i++) {
                    const float p = ps[(tr + i * TL_TR) * TL_PS + j];
                    if (p != 0.0f)
#pragma unroll
                        for (int y = 0; y < TL_DC; y++)
                            acc[i][y] = TL_MAD(
                                p, VS[j * TL_HDVP + tc + y * TL_TC], acc[i][y]);
                }
            }
        }
    }

    /* ---- the row sums meet (and a poisoned row's flags); O = O / l, lse
     * ---- */
    float lt[TL_RR];
#if TL_SG
    if (sg) {
#pragma unroll
        for (int i = 0; i < TL_RR; i++)
            lt[i] = l[i];
#pragma unroll
        for (int z = TL_TC / 2; z > 0; z /= 2) {
            uint x[2 * TL_RR], y[2 * TL_RR];
#pragma unroll
            for (int i = 0; i < TL_RR; i++) {
                x[i] = as_uint(lt[i]);
                x[TL_RR + i] = poison[i];
            }
            TL_XOR_N(y, x, 2 * TL_RR, z);
#pragma unroll
            for (int i = 0; i < TL_RR; i++) {
                lt[i] += as_float(y[i]);
                poison[i] |= y[TL_RR + i];
            }
        }
    } else
#endif
    {
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (int i = 0; i < TL_RR; i++) {
            const int r = tr + i * TL_TR;
            red[r * TL_TC + tc] = l[i];
            ps[r * TL_PS + tc] = poison[i] ? 1.0f : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
#pragma unroll
    for (int i = 0; i < TL_RR; i++) {
        const int r = tr + i * TL_TR;
        if (r >= nrows)
            continue;
        if (!sg) {
            lt[i] = 0.0f;
#pragma unroll
            for (int z = 0; z < TL_TC; z++) {
                lt[i] += red[r * TL_TC + z];
                poison[i] |= ps[r * TL_PS + z] != 0.0f;
            }
        }
        const int bad = poison[i] != 0u;
        const int any = as_uint(m[i]) != ATTN_MASKED_BITS;
        const float inv = any ? 1.0f / lt[i] : 0.0f;
        const float nan = as_float(0x7fc00000u);
        const size_t obase = ATTN_ROW(o_off, o_st, b, h, row0 + r);
#pragma unroll
        for (int y = 0; y < TL_DC; y++) {
            const int c = tc + y * TL_TC;
            if (c < TL_HDV)
                ATTN_STORE(o, obase + (size_t)c,
                           bad ? nan : any ? acc[i][y] * inv : 0.0f);
        }
        if (has_lse && tc == 0) {
            const float lg =
                nat ? m[i] + log(lt[i]) : (m[i] + log2(lt[i])) * TL_LN2;
            ((__global uint *)lse)[(size_t)lse_off +
                                   (size_t)bh * (size_t)seq_q +
                                   (size_t)(row0 + r)] =
                bad ? 0x7fc00000u : any ? as_uint(lg) : ATTN_NEG_INF_BITS;
        }
    }
}
