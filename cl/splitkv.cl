/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decode attention for GPUs: a few query rows (seq_q 1..16) of every query
 * head of a group against a long K/V cache, the keys split across
 * work-groups.  OpenCL C 1.2 after common.cl; the combine pass is
 * combine.cl.
 *
 * Pass 1, attn_splitkv.  One work-group of SK_WG items per (batch, kv
 * head, key split) takes the rows of every query head that reads that kv
 * head (heads_q / heads_kv heads x seq_q rows, at most SK_ROWS), so each
 * K/V row is read from global memory once for all of them (GQA, MQA).
 * Per tile of SK_TK keys the items load K^T [SK_HD][SK_TK + 1] and V
 * [SK_TK][SK_HDV] into local memory (coalesced, four elements a load,
 * halves converted), score every (row, key) pair (Q staged once,
 * pre-scaled), bring each row's
 * scores to p = 2^(s - m) with a running maximum, and accumulate O += P V,
 * each item owning fixed (row, column) outputs in registers.  With SK_KVS
 * the K and V tiles share one local buffer.  The split's m, l and
 * unnormalised O of every row go to the partial buffer, in the layout
 * combine.cl reads:
 *   ml [rows][n_split][2] (m, l), then o [rows][n_split][head_dim_v],
 * rows = (batch * heads_q) * seq_q in the order of O.
 *
 * Softmax units: base 2 (Q scaled by scale * log2(e)) without a bias and
 * for dot scores; natural with a bias or the additive score (nat), so
 * that a bias near FLT_MAX cannot overflow; combine.cl takes the same flag.
 *
 * Masks and non-finite inputs as in decode.cl: row i sees key j iff lo(i)
 * <= j <= hi(i), its bias is not -INFINITY and its score not -INFINITY;
 * hidden keys are skipped in P V (their V may hold inf / NaN); a visible
 * key's weight is at least FLT_MIN (never skipped); a NaN or +INFINITY
 * score makes the row's l NaN, which the combine carries to O and lse; a
 * row that sees no key gives O = 0 and lse = -INFINITY.
 */

#ifndef SK_WG /* items per work-group */
#define SK_WG 128
#endif
#ifndef SK_TK /* keys per tile */
#define SK_TK 32
#endif
#ifndef SK_HD /* head_dim, a compile-time constant */
#define SK_HD 64
#endif
#ifndef SK_HDV
#define SK_HDV 64
#endif
#ifndef SK_ROWS /* rows per work-group at most (a power of two) */
#define SK_ROWS 4
#endif
#ifndef SK_KVS /* 1: K and V tiles share one local buffer */
#define SK_KVS 0
#endif

#if SK_HD % 4 != 0 || SK_HDV % 4 != 0
#error "head sizes must be multiples of 4 (src/opencl/variants/splitkv.c)"
#endif
/* Groups of four elements in a K row. */
#define SK_HD4 (SK_HD / 4)
/* Row stride of K^T in local memory: odd, so that the transposing
 * stores do not all land in one bank. */
#define SK_KTS (SK_TK + 1)
#define SK_LOG2E 1.4426950408889634f
#define SK_FLT_MIN_BITS 0x00800000u
/* Outputs (row, column) per item. */
#define SK_NPI ((SK_ROWS * SK_HDV + SK_WG - 1) / SK_WG)
#define SK_MAX(a, b) ((a) > (b) ? (a) : (b))
#define SK_IS_MASKED(x) (as_uint(x) == ATTN_MASKED_BITS)

/* q, k, v: the caller's tensors at element offsets.  part: the partial buffer
 * (o at po_off).  bias: kind bias_kind (0: none).  kv_len: [batch] when
 * has_kv_len.  addw: [heads_q, head_dim] when additive.  qscale: what Q is
 * multiplied by; nat: scores in natural units.  window: 0, or the window
 * clamped to seq_q + diag; diag: the causal diagonal's offset
 * (seq_kv - seq_q, or 0 top-left).  Split s covers the keys [key_lo + s *
 * split_len, + split_len).
 * Launch: global (n_split * SK_WG, (batch, kv head) pairs in this launch),
 * local (SK_WG, 1); pair bg0 + get_group_id(1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st, k_st,
 * v_st: the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel __attribute__((reqd_work_group_size(SK_WG, 1, 1))) void
attn_splitkv(__global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
             ulong k_off, __global const ATTN_T *v, ulong v_off,
             __global float *part, ulong po_off, __global const float *bias,
             int bias_kind, ulong bias_sb, ulong bias_sh, ulong bias_sq,
             __global const int *kv_len, int has_kv_len,
             __global const float *addw, int additive, float qscale, int nat,
             int heads_q, int heads_kv, int seq_q, int seq_kv, int causal,
             int window, int diag, int key_lo, int split_len, int n_split,
             ulong4 q_st, ulong4 k_st, ulong4 v_st, int bg0)
{
    __local float qs[SK_ROWS * SK_HD];
#if SK_KVS
    __local float kvb[(SK_HD * SK_KTS > SK_TK * SK_HDV) ? SK_HD * SK_KTS
                                                        : SK_TK * SK_HDV];
#define KT kvb
#define VS kvb
#else
    __local float kt[SK_HD * SK_KTS];
    __local float vs[SK_TK * SK_HDV];
#define KT kt
#define VS vs
#endif
    __local float sc[SK_ROWS * SK_TK];
    __local float rm[SK_ROWS], rl[SK_ROWS], rc[SK_ROWS];
    __local int vbad;

    const int lid = (int)get_local_id(0);
    const int split = (int)get_group_id(0);
    const int bg = bg0 + (int)get_group_id(1);
    const int b = bg / heads_kv, g = bg % heads_kv;
    const int grp = heads_q / heads_kv;
    const int rows = grp * seq_q; /* row r: head g*grp + r / seq_q, i = r % seq_q */
    const int off = diag;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    /* Output row (of [batch * heads_q * seq_q]) of local row 0. */
    const size_t orow0 = ((size_t)b * (size_t)heads_q + (size_t)g * grp) *
                         (size_t)seq_q;

    /* Keys some row sees (rows differ in i only: lo and hi grow with i). */
    const int i_last = seq_q - 1;
    const int lo_first = window > 0 ? off - window + 1 : 0;
    const int hi_last = min(causal ? i_last + off : seq_kv - 1, klen - 1);
    const int s0 = key_lo + split * split_len;
    const int s1 = min(s0 + split_len, seq_kv);
    const int js = max(s0, max(lo_first, 0));
    const int je = min(s1, hi_last + 1);

    /* Q of the rows, scaled (0 past the rows), the row state. */
    for (int e = lid; e < SK_ROWS * SK_HD; e += SK_WG) {
        const int r = e / SK_HD, c = e % SK_HD;
        qs[e] = r < rows ? ATTN_LOAD(q, ATTN_ROW(q_off, q_st, b,
                                                 g * grp + r / seq_q,
                                                 r % seq_q) +
                                            (size_t)c) *
                               (additive ? 1.0f : qscale)
                         : 0.0f;
    }
    for (int r = lid; r < SK_ROWS; r += SK_WG) {
        rm[r] = as_float(ATTN_MASKED_BITS);
        rl[r] = 0.0f;
        rc[r] = 1.0f;
    }
    float acc[SK_NPI];
#pragma unroll
    for (int u = 0; u < SK_NPI; u++)
        acc[u] = 0.0f;

    for (int jt = js; jt < je; jt += SK_TK) {
        const int nk = min(SK_TK, je - jt);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        /* K^T of the tile, four elements of a K row per load. */
        for (int e = lid; e < SK_TK * SK_HD4; e += SK_WG) {
            const int j = e / SK_HD4, c = (e % SK_HD4) * 4;
            const size_t at =
                ATTN_ROW(k_off, k_st, b, g, jt + j) + (size_t)c;
            const float4 x = j < nk ? ATTN_LOAD4(k, at) : (float4)0.0f;
            KT[c * SK_KTS + j] = x.s0;
            KT[(c + 1) * SK_KTS + j] = x.s1;
            KT[(c + 2) * SK_KTS + j] = x.s2;
            KT[(c + 3) * SK_KTS + j] = x.s3;
        }
        if (lid == 0)
            vbad = 0;
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- scores of every (row, key) pair ---- */
        for (int pr = lid; pr < SK_ROWS * SK_TK; pr += SK_WG) {
            const int r = pr / SK_TK, j = pr % SK_TK, jg = jt + j;
            const int i = r % seq_q, h = g * grp + r / seq_q;
            float s = as_float(ATTN_MASKED_BITS);
            const int lo = window > 0 ? i + off - window + 1 : 0;
            const int hi = min(causal ? i + off : seq_kv - 1, klen - 1);
            if (r < rows && j < nk && jg >= lo && jg <= hi) {
                float a = 0.0f;
                if (!additive) {
#pragma unroll 8
                    for (int c = 0; c < SK_HD; c++)
                        a = mad(qs[r * SK_HD + c], KT[c * SK_KTS + j], a);
                } else {
                    for (int c = 0; c < SK_HD; c++)
                        a = mad(addw[(size_t)h * SK_HD + (size_t)c],
                                tanh(qs[r * SK_HD + c] + KT[c * SK_KTS + j]),
                                a);
                }
                s = a;
                if (bias_kind != 0) {
                    const size_t bi = (size_t)b * bias_sb +
                                      (size_t)h * bias_sh +
                                      (size_t)i * bias_sq + (size_t)jg;
                    const float bv = bias[bi];
                    /* A -INFINITY bias hides the key; never added. */
                    s = as_uint(bv) == ATTN_NEG_INF_BITS
                            ? as_float(ATTN_MASKED_BITS)
                            : s + bv;
                }
                /* So does a -INFINITY score. */
                if (as_uint(s) == ATTN_NEG_INF_BITS)
                    s = as_float(ATTN_MASKED_BITS);
            }
            sc[pr] = s;
        }
#if SK_KVS
        barrier(CLK_LOCAL_MEM_FENCE); /* K is consumed: V replaces it */
#endif
        /* V of the tile (rows past nk: 0). */
        {
            const size_t at0 = ATTN_ROW(v_off, v_st, b, g, jt);
            int bad = 0;
            /* Four elements of a V row per load. */
            for (int e = lid * 4; e < SK_TK * SK_HDV; e += SK_WG * 4) {
                const float4 x = e / SK_HDV < nk
                                     ? ATTN_LOAD4(v, at0 +
                                                         (size_t)(e / SK_HDV) *
                                                             v_st.z +
                                                         (size_t)(e % SK_HDV))
                                     : (float4)0.0f;
                const uint4 ex = as_uint4(x) & (uint4)0x7f800000u;
                vstore4(x, 0, VS + e);
                bad |= any(ex == (uint4)0x7f800000u);
            }
            if (bad)
                vbad = 1;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- each row: new maximum, p, rescaled sum ---- */
        for (int r = lid; r < rows; r += SK_WG) {
            const float f = nat ? SK_LOG2E : 1.0f;
            float mt = as_float(ATTN_MASKED_BITS);
            for (int j = 0; j < nk; j++)
                mt = SK_MAX(sc[r * SK_TK + j], mt);
            const float mo = rm[r], mn = SK_MAX(mt, mo);
            const float corr = SK_IS_MASKED(mo) ? 1.0f : exp2((mo - mn) * f);
            float sum = 0.0f;
            for (int j = 0; j < SK_TK; j++) {
                const float s = sc[r * SK_TK + j];
                /* a visible key weighs at least FLT_MIN; NaN stays NaN */
                float p = 0.0f;
                if (!SK_IS_MASKED(s)) {
                    const float x = (s - mn) * f;
                    p = isnan(x) ? x
                                 : SK_MAX(as_float(SK_FLT_MIN_BITS), exp2(x));
                }
                sc[r * SK_TK + j] = p;
                sum += p;
            }
            rl[r] = mad(rl[r], corr, sum);
            rm[r] = mn;
            rc[r] = corr;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- O = O corr + P V, the item's (row, column) outputs ---- */
        const int skip = vbad; /* inf / NaN in V: hidden keys skipped */
#pragma unroll
        for (int u = 0; u < SK_NPI; u++) {
            const int o = lid + u * SK_WG, r = o / SK_HDV, c = o % SK_HDV;
            if (r >= rows)
                continue;
            float a = acc[u] * rc[r];
            if (!skip) {
#pragma unroll 8
                for (int j = 0; j < SK_TK; j++)
                    a = mad(sc[r * SK_TK + j], VS[j * SK_HDV + c], a);
            } else {
                for (int j = 0; j < nk; j++) {
                    const float p = sc[r * SK_TK + j];
                    if (p != 0.0f)
                        a = mad(p, VS[j * SK_HDV + c], a);
                }
            }
            acc[u] = a;
        }
    }

    /* ---- the split's partials ---- */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = lid; r < rows; r += SK_WG) {
        const size_t pi = (orow0 + (size_t)r) * (size_t)n_split + (size_t)split;
        part[2 * pi] = rm[r];
        part[2 * pi + 1] = rl[r];
    }
#pragma unroll
    for (int u = 0; u < SK_NPI; u++) {
        const int o = lid + u * SK_WG, r = o / SK_HDV, c = o % SK_HDV;
        if (r < rows) {
            const size_t pi =
                (orow0 + (size_t)r) * (size_t)n_split + (size_t)split;
            part[po_off + pi * SK_HDV + (size_t)c] = acc[u];
        }
    }
}
