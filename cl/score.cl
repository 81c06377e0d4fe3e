/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attention scores of the three-kernel path: S = Q K^T (scaled) or the
 * additive score, plus bias and masks, for a block of query rows against all
 * keys.  OpenCL C 1.2 after common.cl; softmax.cl and aggregate.cl
 * follow it.
 *
 * S is a float block [n_bh][n_i][seq_kv] covering query heads bh0 ..
 * bh0+n_bh-1 (bh = b * heads_q + h) and query rows i0 .. i0+n_i-1 of each.
 * A hidden entry holds ATTN_MASKED (-FLT_MAX), never -INFINITY, so that the
 * kernels stay right under -cl-fast-relaxed-math / finite-math options.  A
 * score of -INFINITY (from inf in Q or K, or overflow) hides its key like
 * a -INFINITY bias (attn.h); NaN and +INFINITY scores are stored as they
 * are and spoil their row in softmax.cl.
 *
 * A work-group of SC_WK x SC_WQ items computes a SC_TQ x SC_TK tile of S,
 * SC_TQ/SC_WQ x SC_TK/SC_WK entries per item, staging SC_TD columns of Q and
 * K (and of the additive weights) at a time in local memory.
 */


#ifndef SC_TQ
#define SC_TQ 32
#endif
#ifndef SC_TK
#define SC_TK 64
#endif
#ifndef SC_TD
#define SC_TD 16
#endif
#ifndef SC_WQ
#define SC_WQ 4
#endif
#ifndef SC_WK
#define SC_WK 16
#endif
#define SC_RQ (SC_TQ / SC_WQ)
#define SC_RK (SC_TK / SC_WK)
#define SC_NT (SC_WQ * SC_WK)

#if SC_TQ % SC_WQ != 0 || SC_TK % SC_WK != 0
#error "SC_TQ must be a multiple of SC_WQ and SC_TK of SC_WK"
#endif

/* q, k: the caller's tensors at element offsets q_off, k_off.  bias: the
 * bias tensor of kind bias_kind (0: none).  kv_len: [batch] when has_kv_len.
 * diag: the causal diagonal's offset (seq_kv - seq_q, or 0 top-left).
 * addw: [heads_q, head_dim] when additive.  Launch: global (ceil(seq_kv /
 * SC_TK) * SC_WK, ceil(n_i / SC_TQ) * SC_WQ, n_bh), local (SC_WK, SC_WQ,
 * 1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st, k_st:
 * the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel void attn_score(__global const ATTN_T *q, ulong q_off,
                         __global const ATTN_T *k, ulong k_off,
                         __global float *s, __global const float *bias,
                         int bias_kind, ulong bias_sb, ulong bias_sh,
                         ulong bias_sq, __global const int *kv_len,
                         int has_kv_len, __global const float *addw,
                         int additive, float scale, int heads_q, int heads_kv,
                         int seq_q, int seq_kv, int head_dim, int causal,
                         int window, int diag, ulong4 q_st, ulong4 k_st,
                         int bh0, int i0, int n_i)
{
    __local float qs[SC_TQ][SC_TD + 1];
    __local float ks[SC_TK][SC_TD + 1];
    __local float ws[SC_TD];

    const int tk = (int)get_local_id(0), tq = (int)get_local_id(1);
    const int lid = tq * SC_WK + tk;
    const int j0 = (int)get_group_id(0) * SC_TK;
    const int r0 = (int)get_group_id(1) * SC_TQ; /* row within the block */
    const int gbh = (int)get_group_id(2);
    const int bh = bh0 + gbh;
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int rows = min(SC_TQ, n_i - r0);
    const int keys = min(SC_TK, seq_kv - j0);
    const long off = diag; /* causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;

    /* Visible keys of query row i: lo(i) <= j <= hi(i); lo and hi grow with
     * i, so the tile is all hidden when it lies right of hi(last row) or
     * left of lo(first row).  Uniform over the work-group. */
    const long i_first = (long)i0 + r0, i_last = i_first + rows - 1;
    const long hi_last = min(causal ? i_last + off : (long)seq_kv - 1,
                             (long)klen - 1);
    const long lo_first = window > 0 ? i_first + off - window + 1 : 0;
    const int skip = (long)j0 > hi_last || (long)(j0 + keys - 1) < lo_first;

    float acc[SC_RQ][SC_RK];
    for (int x = 0; x < SC_RQ; x++)
        for (int y = 0; y < SC_RK; y++)
            acc[x][y] = 0.0f;

    if (!skip) {
        const size_t qbase = ATTN_ROW(q_off, q_st, b, h, i_first);
        const size_t kbase = ATTN_ROW(k_off, k_st, b, g, j0);
        for (int d0 = 0; d0 < head_dim; d0 += SC_TD) {
            /* Stage the tiles; zero padding beyond the edges adds 0 to the
             * dot product and w = 0 to the additive sum. */
            for (int e = lid; e < SC_TQ * SC_TD; e += SC_NT) {
                int r = e / SC_TD, c = e % SC_TD, dd = d0 + c;
                qs[r][c] = r < rows && dd < head_dim
                               ? ATTN_LOAD(q, qbase + (size_t)r * q_st.z +
                                                  (size_t)dd)
                               : 0.0f;
            }
            for (int e = lid; e < SC_TK * SC_TD; e += SC_NT) {
                int r = e / SC_TD, c = e % SC_TD, dd = d0 + c;
                ks[r][c] = r < keys && dd < head_dim
                               ? ATTN_LOAD(k, kbase + (size_t)r * k_st.z +
                                                  (size_t)dd)
                               : 0.0f;
            }
            for (int e = lid; additive && e < SC_TD; e += SC_NT)
                ws[e] = d0 + e < head_dim
                            ? addw[(size_t)h * head_dim + (size_t)(d0 + e)]
                            : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            if (additive) {
                for (int c = 0; c < SC_TD; c++) {
                    float kv[SC_RK];
                    float w = ws[c];
                    for (int y = 0; y < SC_RK; y++)
                        kv[y] = ks[tk + y * SC_WK][c];
                    for (int x = 0; x < SC_RQ; x++) {
                        float qv = qs[tq + x * SC_WQ][c];
                        for (int y = 0; y < SC_RK; y++)
                            acc[x][y] += w * tanh(qv + kv[y]);
                    }
                }
            } else {
                for (int c = 0; c < SC_TD; c++) {
                    float kv[SC_RK];
                    for (int y = 0; y < SC_RK; y++)
                        kv[y] = ks[tk + y * SC_WK][c];
                    for (int x = 0; x < SC_RQ; x++) {
                        float qv = qs[tq + x * SC_WQ][c];
                        for (int y = 0; y < SC_RK; y++)
                            acc[x][y] += qv * kv[y];
                    }
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }

    for (int x = 0; x < SC_RQ; x++) {
        const int r = tq + x * SC_WQ;
        if (r >= rows)
            continue;
        const long i = i_first + r;
        const long hi = min(causal ? i + off : (long)seq_kv - 1,
                            (long)klen - 1);
        const long lo = window > 0 ? i + off - window + 1 : 0;
        __global float *srow =
            s + ((size_t)gbh * (size_t)n_i + (size_t)(r0 + r)) *
                    (size_t)seq_kv;
        const size_t brow =
            (size_t)b * bias_sb + (size_t)h * bias_sh + (size_t)i * bias_sq;
        for (int y = 0; y < SC_RK; y++) {
            const int jj = tk + y * SC_WK;
            if (jj >= keys)
                continue;
            const int j = j0 + jj;
            float v = additive ? acc[x][y] : acc[x][y] * scale;
            int vis = !skip && (long)j >= lo && (long)j <= hi;
            if (vis && bias_kind != 0) {
                /* A -INFINITY bias hides the key; it is never added. */
                float bv = bias[brow + (size_t)j];
                if (as_uint(bv) == ATTN_NEG_INF_BITS)
                    vis = 0;
                else
                    v += bv;
            }
            if (as_uint(v) == ATTN_NEG_INF_BITS)
                vis = 0;
            srow[j] = vis ? v : as_float(ATTN_MASKED_BITS);
        }
    }
}
