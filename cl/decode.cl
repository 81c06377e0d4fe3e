/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Decode attention (seq_q <= DC_MAXQ query rows against a long K/V):
 * split-K with a log-sum-exp combine.  OpenCL C 1.2 after common.cl.
 *
 * Pass 1, attn_decode_split.  One work-group of DC_WG items per (batch,
 * query head, key split) takes all seq_q rows of that head against the
 * keys of its split, in chunks of DC_TK keys:
 *   - each item scores the keys lid, lid + DC_WG, ... of the chunk for
 *     every row (Q staged in local memory, K read from global, float4 at a
 *     time), applies scale, bias and masks and keeps the scores (times
 *     log2(e); natural with a bias, which near FLT_MAX would overflow
 *     times log2(e): the differences from m are scaled instead) in local
 *     memory;
 *   - the chunk maximum of every row comes from the items' maxima; the
 *     scores become p = 2^(s - m) in place, the running m of every row and
 *     each item's share of the running sum l are rescaled;
 *   - O^T += P V: each item owns columns 4 lid, 4 lid + 1 ... (float4
 *     steps of 4 DC_WG columns), its accumulators in local memory.
 * It writes the split's m (base 2, or natural), l and unnormalised O of
 * every row into the partial buffer `part`:
 *   ml [rows][n_split][2] (m, l), then o [rows][n_split][head_dim_v],
 * rows = (batch * heads_q) * seq_q.
 *
 * Pass 2 is attn_combine (combine.cl; nat = 1 when pass 1 kept natural
 * units, with a bias), DC_CWG items per query row.
 *
 * Masks.  Row i sees key j iff lo(i) <= j <= hi(i) with hi(i) =
 * min(causal ? i + diag : seq_kv - 1, kv_len - 1) and lo(i) =
 * window > 0 ? i + diag - window + 1 : 0, and its bias is not
 * -INFINITY.  Hidden scores are tested on their bits (never with isinf /
 * -INFINITY literals) so that -cl-fast-relaxed-math cannot fold the
 * tests.  Hidden keys never reach O: K/V rows outside the rows' union of
 * ranges are not read and a p = 0 entry is skipped rather than multiplied
 * (inf / NaN in a hidden V row stays out).  A row with no visible key gives
 * O = 0 and lse = -INFINITY (bit pattern).
 *
 * Non-finite inputs (attn.h).  A score of -INFINITY hides its key like a
 * -INFINITY bias.  A visible key's weight is at least FLT_MIN, never 0, so
 * that it is multiplied (NaN in its V reaches the row) while only hidden
 * keys are skipped.  A NaN or +INFINITY score makes p, the split's l and
 * so the row NaN; pass 2 keeps every split whose l is not 0 (NaN
 * included), so the NaN reaches O and lse.
 */

/* ---- tuning ------------------------------------------------------------ */
#ifndef DC_WG /* items per work-group of pass 1 */
#define DC_WG 16
#endif
#ifndef DC_TK /* keys per chunk of pass 1, a multiple of DC_WG */
#define DC_TK 256
#endif
#ifndef DC_MAXQ /* most query rows per head */
#define DC_MAXQ 4
#endif
#if DC_TK % DC_WG != 0
#error "DC_TK must be a multiple of DC_WG"
#endif

#define DC_LOG2E 1.4426950408889634f

#define DC_R4(x) (((x) + 3) / 4 * 4)
#define DC_MAX(a, b) select((b), (a), (a) > (b))
#define DC_IS_MASKED(x) (as_uint(x) == ATTN_MASKED_BITS)
#define DC_FLT_MIN_BITS 0x00800000u /* FLT_MIN */

/* Four elements of a global row at element index i (n valid, 0 after). */
static float4 dc_load4(__global const ATTN_T *p, size_t i, int n)
{
    if (n >= 4) {
        return ATTN_LOAD4(p, i);
    }
    float4 x = (float4)0.0f;
    x.s0 = ATTN_LOAD(p, i);
    if (n > 1)
        x.s1 = ATTN_LOAD(p, i + 1);
    if (n > 2)
        x.s2 = ATTN_LOAD(p, i + 2);
    return x;
}

/* q, k, v: the caller's tensors at element offsets.  part: the partial
 * buffer (see above).  bias: kind bias_kind (0: none).  kv_len: [batch]
 * when has_kv_len.  addw: [heads_q, head_dim] when additive.  scale2: what
 * the dot products (additive sums) are multiplied by: the score scale (1
 * for additive scores), times log2(e) when there is no bias.  window: 0,
 * or the window clamped to seq_q + diag.  diag: the causal diagonal's
 * offset (seq_kv - seq_q, or 0 top-left).  Split s covers the keys [key_lo
 * + s * split_len, + split_len) of [key_lo, seq_kv).  lm: local scratch of
 * 4 * (R4(nq * d) + R4(d) + nq * (DC_TK + DC_WG + R4(head_dim_v))) bytes.
 * Launch: global (n_split * DC_WG, heads in this launch), local (DC_WG, 1);
 * (batch, query head) bh0 + get_group_id(1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st, k_st,
 * v_st: the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel void attn_decode_split(
    __global const ATTN_T *q, ulong q_off, __global const ATTN_T *k,
    ulong k_off, __global const ATTN_T *v, ulong v_off, __global float *part,
    __global const float *bias, int bias_kind, ulong bias_sb, ulong bias_sh,
    ulong bias_sq, __global const int *kv_len, int has_kv_len,
    __global const float *addw, int additive, float scale2,
    int heads_q, int heads_kv, int seq_q, int seq_kv, int head_dim,
    int head_dim_v, int causal, int window, int diag, int key_lo,
    int split_len, int n_split, ulong po_off, ulong4 q_st, ulong4 k_st,
    ulong4 v_st, int bh0, __local float *lm)
{
    const int d = head_dim, dv = head_dim_v, nq = seq_q;
    const int dvp = DC_R4(dv);
    const int lid = (int)get_local_id(0);
    const int split = (int)get_group_id(0);
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int off = diag; /* causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    /* Natural units with a bias: exponents are (s - m) log2(e). */
    const float unit = bias_kind != 0 ? DC_LOG2E : 1.0f;

    __local float *qs = lm;                  /* [nq][d] */
    __local float *ws = qs + DC_R4(nq * d);  /* [d] */
    __local float *sc = ws + DC_R4(d);       /* [nq][DC_TK] */
    __local float *mx = sc + nq * DC_TK;     /* [nq][DC_WG] */
    __local float *acc = mx + nq * DC_WG;    /* [nq][dvp] */

    /* Visible range of every row. */
    int lo[DC_MAXQ], hi[DC_MAXQ];
    float m[DC_MAXQ], l[DC_MAXQ];
#pragma unroll
    for (int r = 0; r < DC_MAXQ; r++) {
        const int i = min(r, nq - 1);
        hi[r] = min(causal ? i + off : seq_kv - 1, klen - 1);
        lo[r] = window > 0 ? i + off - window + 1 : 0;
        m[r] = as_float(ATTN_MASKED_BITS);
        l[r] = 0.0f; /* this item's share of the sum */
    }

    /* The split's keys, cut to the union of the rows' ranges. */
    const int s0 = key_lo + split * split_len;
    const int s1 = s0 + min(split_len, seq_kv - s0);
    const int js = max(s0, max(lo[0], 0));
    const int je = min(s1, hi[nq - 1] + 1);

    {
        const size_t qbase = ATTN_ROW(q_off, q_st, b, h, 0);
        for (int e = lid; e < nq * d; e += DC_WG)
            qs[e] = ATTN_LOAD(q, qbase + (size_t)(e / d) * q_st.z +
                                     (size_t)(e % d));
        for (int c = lid; additive && c < d; c += DC_WG)
            ws[c] = addw[(size_t)h * (size_t)d + (size_t)c];
        for (int e = lid; e < nq * dvp; e += DC_WG)
            acc[e] = 0.0f;
    }

    /* bias row of row 0 */
    const size_t brow0 = (size_t)b * bias_sb + (size_t)h * bias_sh;

    for (int jt = js; jt < je; jt += DC_TK) {
        const int nk = min(DC_TK, je - jt);
        barrier(CLK_LOCAL_MEM_FENCE); /* Q staged / previous chunk used */

        /* ---- scores, times log2(e) without a bias; the item's maxima ---- */
        float tmax[DC_MAXQ];
#pragma unroll
        for (int r = 0; r < DC_MAXQ; r++)
            tmax[r] = as_float(ATTN_MASKED_BITS);
        for (int kk = lid; kk < DC_TK; kk += DC_WG) {
            const int j = jt + kk;
            float4 a4[DC_MAXQ];
#pragma unroll
            for (int r = 0; r < DC_MAXQ; r++)
                a4[r] = (float4)0.0f;
            if (kk < nk) {
                const size_t kbase = ATTN_ROW(k_off, k_st, b, g, j);
                int c = 0;
                for (; c + 4 <= d; c += 4) {
                    const float4 kc = ATTN_LOAD4(k, kbase + (size_t)c);
                    if (!additive) {
#pragma unroll
                        for (int r = 0; r < DC_MAXQ; r++)
                            if (r < nq)
                                a4[r] = mad(vload4(0, qs + r * d + c), kc,
                                            a4[r]);
                    } else {
                        const float4 w = vload4(0, ws + c);
#pragma unroll
                        for (int r = 0; r < DC_MAXQ; r++)
                            if (r < nq)
                                a4[r] = mad(
                                    w, tanh(vload4(0, qs + r * d + c) + kc),
                                    a4[r]);
                    }
                }
                for (; c < d; c++) {
                    const float kc = ATTN_LOAD(k, kbase + (size_t)c);
#pragma unroll
                    for (int r = 0; r < DC_MAXQ; r++)
                        if (r < nq)
                            a4[r].s0 += additive
                                            ? ws[c] * tanh(qs[r * d + c] + kc)
                                            : qs[r * d + c] * kc;
                }
            }
            /* continue, not break: LLVM (AMD's compiler) leaves a loop
             * with a second exit rolled, and a4, lo, hi, tmax with it in
             * private memory. */
#pragma unroll
            for (int r = 0; r < DC_MAXQ; r++) {
                if (r >= nq)
                    continue;
                float s = as_float(ATTN_MASKED_BITS);
                if (kk < nk && j >= lo[r] && j <= hi[r]) {
                    s = (a4[r].s0 + a4[r].s1 + a4[r].s2 + a4[r].s3) * scale2;
                    if (bias_kind != 0) {
                        const float bv =
                            bias[brow0 + (size_t)r * bias_sq + (size_t)j];
                        /* A -INFINITY bias hides the key. */
                        s = as_uint(bv) == ATTN_NEG_INF_BITS
                                ? as_float(ATTN_MASKED_BITS)
                                : s + bv;
                    }
                    /* So does a -INFINITY score. */
                    if (as_uint(s) == ATTN_NEG_INF_BITS)
                        s = as_float(ATTN_MASKED_BITS);
                }
                sc[r * DC_TK + kk] = s;
                tmax[r] = DC_MAX(s, tmax[r]);
            }
        }
        for (int r = 0; r < nq; r++)
            mx[r * DC_WG + lid] = tmax[r];
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- chunk maximum, p = 2^((s - m) unit), rescaled sums ---- */
        float corr[DC_MAXQ];
#pragma unroll
        for (int r = 0; r < DC_MAXQ; r++) {
            corr[r] = 1.0f;
            if (r >= nq)
                break;
            float mt = as_float(ATTN_MASKED_BITS);
            for (int x = 0; x < DC_WG; x++)
                mt = DC_MAX(mx[r * DC_WG + x], mt);
            const float mn = DC_MAX(mt, m[r]);
            corr[r] = DC_IS_MASKED(m[r]) ? 0.0f : exp2((m[r] - mn) * unit);
            float sum = 0.0f;
            for (int kk = lid; kk < DC_TK; kk += DC_WG) {
                const float s = sc[r * DC_TK + kk];
                /* a visible key weighs at least FLT_MIN; NaN stays */
                const float p =
                    DC_IS_MASKED(s)
                        ? 0.0f
                        : DC_MAX(as_float(DC_FLT_MIN_BITS),
                                 exp2((s - mn) * unit));
                sc[r * DC_TK + kk] = p;
                sum += p;
            }
            l[r] = mad(l[r], corr[r], sum);
            m[r] = mn;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* ---- O^T = O^T corr + P V over the item's columns ---- */
        for (int c = 4 * lid; c < dv; c += 4 * DC_WG) {
            float4 o4[DC_MAXQ];
#pragma unroll
            for (int r = 0; r < DC_MAXQ; r++)
                o4[r] = r < nq ? vload4(0, acc + r * dvp + c) * corr[r]
                               : (float4)0.0f;
            const size_t vbase = ATTN_ROW(v_off, v_st, b, g, jt) + (size_t)c;
            for (int kk = 0; kk < nk; kk++) {
                const float4 vv =
                    dc_load4(v, vbase + (size_t)kk * v_st.z, dv - c);
#pragma unroll
                for (int r = 0; r < DC_MAXQ; r++) {
                    if (r < nq) {
                        const float p = sc[r * DC_TK + kk];
                        /* p = 0: a hidden key, whose V may be inf / NaN */
                        if (p != 0.0f)
                            o4[r] = mad((float4)p, vv, o4[r]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < DC_MAXQ; r++)
                if (r < nq)
                    vstore4(o4[r], 0, acc + r * dvp + c);
        }
    }

    /* ---- the split's partials: m, l (sum of the items' shares), O ---- */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < nq; r++)
        mx[r * DC_WG + lid] = l[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < nq; r++) {
        const size_t pi = ((size_t)bh * (size_t)nq + (size_t)r) *
                              (size_t)n_split +
                          (size_t)split;
        if (lid == 0) {
            float lt = 0.0f;
            for (int x = 0; x < DC_WG; x++)
                lt += mx[r * DC_WG + x];
            part[2 * pi] = m[r];
            part[2 * pi + 1] = lt;
        }
        for (int c = lid; c < dv; c += DC_WG)
            part[po_off + pi * (size_t)dv + (size_t)c] = acc[r * dvp + c];
    }
}
