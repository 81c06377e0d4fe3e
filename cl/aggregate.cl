/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Aggregation of the three-kernel path: O = P V for a block of query rows,
 * P being the softmax block of softmax.cl ([n_bh][n_i][seq_kv] floats).
 * OpenCL C 1.2 after common.cl.
 *
 * A work-group of AG_WV x AG_WQ items computes an AG_TQ x AG_TV tile of O,
 * AG_TQ/AG_WQ x AG_TV/AG_WV outputs per item, staging AG_TJ keys of P and V
 * at a time in local memory.  Only the keys that some row of the tile can
 * see are visited (causal, window and kv_len bound them); P is -0 at every
 * other hidden key of the range (softmax.cl), and those are skipped: a
 * hidden key's V never reaches O, even when it holds inf or NaN, while a
 * visible key whose weight underflowed (+0) is multiplied.
 */


#ifndef AG_TQ
#define AG_TQ 32
#endif
#ifndef AG_TV
#define AG_TV 64
#endif
#ifndef AG_TJ
#define AG_TJ 16
#endif
#ifndef AG_WQ
#define AG_WQ 4
#endif
#ifndef AG_WV
#define AG_WV 16
#endif
#define AG_RQ (AG_TQ / AG_WQ)
#define AG_RV (AG_TV / AG_WV)
#define AG_NT (AG_WQ * AG_WV)

#if AG_TQ % AG_WQ != 0 || AG_TV % AG_WV != 0
#error "AG_TQ must be a multiple of AG_WQ and AG_TV of AG_WV"
#endif

/* p: the softmax block; v, o: the caller's tensors at element offsets v_off,
 * o_off; kv_len: [batch] when has_kv_len.  diag: the causal diagonal's offset
 * (seq_kv - seq_q, or 0 top-left).  Launch: global (ceil(head_dim_v / AG_TV) *
 * AG_WV, ceil(n_i / AG_TQ) * AG_WQ, n_bh), local (AG_WV, AG_WQ, 1).
 * v_st, o_st: the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel void attn_aggregate(__global const float *p,
                             __global const ATTN_T *v, ulong v_off,
                             __global ATTN_T *o, ulong o_off,
                             __global const int *kv_len, int has_kv_len,
                             int heads_q, int heads_kv, int seq_q, int seq_kv,
                             int head_dim_v, int causal, int window, int diag,
                             ulong4 v_st, ulong4 o_st, int bh0, int i0,
                             int n_i)
{
    __local float ps[AG_TQ][AG_TJ + 1];
    __local float vs[AG_TJ][AG_TV];

    const int tv = (int)get_local_id(0), tq = (int)get_local_id(1);
    const int lid = tq * AG_WV + tv;
    const int c0 = (int)get_group_id(0) * AG_TV;
    const int r0 = (int)get_group_id(1) * AG_TQ;
    const int gbh = (int)get_group_id(2);
    const int bh = bh0 + gbh;
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int rows = min(AG_TQ, n_i - r0);
    const int cols = min(AG_TV, head_dim_v - c0);
    const long off = diag;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const long i_first = (long)i0 + r0, i_last = i_first + rows - 1;

    /* Keys some row of the tile sees: [j_start, j_end). */
    long j_start = window > 0 ? max(i_first + off - window + 1, 0L) : 0L;
    long j_end = min(causal ? i_last + off + 1 : (long)seq_kv, (long)klen);

    const __global float *pbase =
        p + ((size_t)gbh * (size_t)n_i + (size_t)r0) * (size_t)seq_kv;
    const size_t vbase = ATTN_ROW(v_off, v_st, b, g, 0);

    float acc[AG_RQ][AG_RV];
    for (int x = 0; x < AG_RQ; x++)
        for (int y = 0; y < AG_RV; y++)
            acc[x][y] = 0.0f;

    for (long jb = j_start; jb < j_end; jb += AG_TJ) {
        const int n = (int)min((long)AG_TJ, j_end - jb);
        for (int e = lid; e < AG_TQ * AG_TJ; e += AG_NT) {
            int r = e / AG_TJ, c = e % AG_TJ;
            ps[r][c] = r < rows && c < n
                           ? pbase[(size_t)r * (size_t)seq_kv +
                                   (size_t)(jb + c)]
                           : 0.0f;
        }
        for (int e = lid; e < AG_TJ * AG_TV; e += AG_NT) {
            int r = e / AG_TV, c = e % AG_TV;
            vs[r][c] = r < n && c < cols
                           ? ATTN_LOAD(v, vbase + (size_t)(jb + r) * v_st.z +
                                              (size_t)(c0 + c))
                           : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < AG_TJ; jj++) {
            float vv[AG_RV];
            for (int y = 0; y < AG_RV; y++)
                vv[y] = vs[jj][tv + y * AG_WV];
            for (int x = 0; x < AG_RQ; x++) {
                float pv = ps[tq + x * AG_WQ][jj];
                /* A hidden key has p = -0 and must not bring its V in:
                 * 0 * inf would be NaN. */
                if (as_uint(pv) == 0x80000000u)
                    continue;
                for (int y = 0; y < AG_RV; y++)
                    acc[x][y] += pv * vv[y];
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const size_t obase = ATTN_ROW(o_off, o_st, b, h, i_first);
    for (int x = 0; x < AG_RQ; x++) {
        const int r = tq + x * AG_WQ;
        if (r >= rows)
            continue;
        for (int y = 0; y < AG_RV; y++) {
            const int c = tv + y * AG_WV;
            if (c < cols)
                ATTN_STORE(o,
                           obase + (size_t)r * o_st.z + (size_t)(c0 + c),
                           acc[x][y]);
        }
    }
}
