/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bwd_tiled: the backward pass shaped for GPUs.  OpenCL C 1.2 after
 * common.cl and backward.cl (its mask helpers, arguments and
 * attn_bwd_rowsum, which computes D = rowsum(dO * O) first).  Two kernels:
 *
 *   attn_bwd_tiled_kv  dk and dv of a block of BT_KT keys of kv head
 *                      (b, g) per work-group, over the query rows of its
 *                      GQA group a tile of BT_QT rows at a time;
 *   attn_bwd_tiled_q   dq of a block of BT_QT query rows of (b, h) per
 *                      work-group, over the keys a tile of BT_KT at a time.
 *
 * Q, dO, K and V tiles are staged in local memory (rows padded by one
 * float against bank conflicts, zeros past the head size and the
 * sequence); each of the BT_WG work-items computes 2 rows x BT_SK keys of S =
 * Q K^T and of dP = dO V^T in registers; P and dS = P (dP - D) pass
 * through local memory; each item accumulates 2 keys (rows) x a few
 * columns of dk and dv (dq) in registers.  A block's loop runs only over
 * the rows (keys) that the causal mask, the window and kv_len can let it
 * see, so that tiles the masks hide whole cost nothing.
 *
 * A pair whose P is 0 adds nothing, whatever q, k, v and dO hold (the
 * other variants' rule): while every staged operand of the products is
 * finite they run unguarded (a hidden pair's P and dS are 0); once a
 * non-finite one is staged, each product is taken only where P is not 0.
 *
 * BT_KT, BT_QT: the tiles, BT_SK the keys of an item's S tile (build
 * defines; BT_KT a multiple of BT_SK, BT_QT of 2); the work-group has
 * BT_WG = BT_KT * BT_QT / (2 BT_SK) items.  BWD_HD and BWD_HV (multiples
 * of BT_QT / BT_SK and BT_KT / BT_SK) size the local rows; with
 * BWD_RT the head sizes come at run time (hd_, hv_ <= those).
 */

#ifndef BT_KT
#define BT_KT 32
#endif
#ifndef BT_QT
#define BT_QT 32
#endif
#ifndef BT_SK
#define BT_SK 4
#endif
#define BT_WG (BT_KT * BT_QT / (2 * BT_SK))
#define BT_HDP (BWD_HD + 1)
#define BT_HVP (BWD_HV + 1)
/* S and dP: item t owns rows rg + BT_RG a (a < 2) and keys kg + BT_KG u
 * (u < BT_SK), rg = t / BT_KG, kg = t % BT_KG. */
#define BT_KG (BT_KT / BT_SK)
#define BT_RG (BT_QT / 2)
/* dk, dv: item t owns keys ka + BT_KA x (x < 2) and columns ca + BT_CA y,
 * ka = t % BT_KA, ca = t / BT_KA; dq likewise rows and columns, with
 * BT_QA row groups and BT_CQ column groups. */
#define BT_KA (BT_KT / 2)
#define BT_CA (BT_WG / BT_KA)
#define BT_QA (BT_QT / 2)
#define BT_CQ (BT_WG / BT_QA)

/* Whether x is infinite or NaN (bits: finite-math options cannot fold
 * it). */
#define BT_NONFINITE(x) ((as_uint(x) & 0x7f800000u) == 0x7f800000u)

/* Rows [r0, r0 + n) of the dense [*, w] tensor x at local rows of width
 * cap (padded stride cap + 1), zeros past n rows and w columns; *bad |=
 * a non-finite value staged. */
#define BT_STAGE(dst, x, r0, n, rows, w, cap, bad)                             \
    do {                                                                       \
        for (int e_ = t; e_ < (rows) * (cap); e_ += BT_WG) {                   \
            const int x_ = e_ / (cap), c_ = e_ % (cap);                        \
            const float v_ =                                                   \
                x_ < (n) && c_ < (w)                                           \
                    ? ATTN_LOAD(x, ((size_t)(r0) + (size_t)x_) * (size_t)(w) + \
                                       (size_t)c_)                             \
                    : 0.0f;                                                    \
            (bad) |= BT_NONFINITE(v_);                                         \
            (dst)[x_][c_] = v_;                                                \
        }                                                                      \
    } while (0)

/* The item's 2 x BT_SK tile of S and dP from the staged tiles, then P and dS
 * into pt and st: row i of the tile is query row i0 + i, key j key j0 + j
 * (query head h of batch b).  Rows past seq_q and keys past seq_kv get
 * P = dS = 0. */
static inline void bt_tile(__local float (*qs)[BT_HDP],
                           __local float (*os)[BT_HVP],
                           __local float (*ks)[BT_HDP],
                           __local float (*vs)[BT_HVP], __local const float *ls,
                           __local const float *dd,
                           __local float (*pt)[BT_KT + 1],
                           __local float (*st)[BT_KT + 1], int t, int i0,
                           int j0, int b, int h, __global const float *bias,
                           int bias_kind, ulong bias_sb, ulong bias_sh,
                           ulong bias_sq, int klen, float scale, int seq_q,
                           int seq_kv, int causal, int window, int diag)
{
    const int rg = t / BT_KG, kg = t % BT_KG;
    float s[2][BT_SK], dp[2][BT_SK];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int u = 0; u < BT_SK; u++)
            s[a][u] = dp[a][u] = 0.0f;
#pragma unroll 4
    for (int c = 0; c < BWD_HD; c++) {
        const float q0 = qs[rg][c], q1 = qs[rg + BT_RG][c];
#pragma unroll
        for (int u = 0; u < BT_SK; u++) {
            const float kx = ks[kg + BT_KG * u][c];
            s[0][u] += q0 * kx;
            s[1][u] += q1 * kx;
        }
    }
#pragma unroll 4
    for (int c = 0; c < BWD_HV; c++) {
        const float o0 = os[rg][c], o1 = os[rg + BT_RG][c];
#pragma unroll
        for (int u = 0; u < BT_SK; u++) {
            const float vx = vs[kg + BT_KG * u][c];
            dp[0][u] += o0 * vx;
            dp[1][u] += o1 * vx;
        }
    }
#pragma unroll
    for (int a = 0; a < 2; a++) {
        const int i = rg + BT_RG * a, gi = i0 + i;
#pragma unroll
        for (int u = 0; u < BT_SK; u++) {
            const int j = kg + BT_KG * u, gj = j0 + j;
            /* a dead row or key reads the bias at a live one, adds
             * nothing */
            const float p =
                gi < seq_q && gj < seq_kv
                    ? bwd_p(s[a][u] * scale, ls[i], gi, gj, b, h, bias,
                            bias_kind, bias_sb, bias_sh, bias_sq, klen, seq_kv,
                            causal, window, diag)
                    : 0.0f;
            pt[i][j] = p;
            st[i][j] = p != 0.0f ? p * (dp[a][u] - dd[i]) : 0.0f;
        }
    }
}

/* dk and dv of keys j0 .. j0 + BT_KT - 1 of kv head (b, g) = bg0 +
 * global id 1.  Launch: global (ceil(seq_kv / BT_KT) * BT_WG, n_bg),
 * local (BT_WG, 1). */
__kernel __attribute__((reqd_work_group_size(BT_WG, 1, 1))) void
attn_bwd_tiled_kv(__global const ATTN_T *q, __global const ATTN_T *k,
                  __global const ATTN_T *v, __global const ATTN_T *dout,
                  __global const float *lse, __global const float *drow,
                  __global ATTN_T *dk, __global ATTN_T *dv, BWD_MASK_ARGS,
                  int bg0)
{
    __local float ks[BT_KT][BT_HDP], vs[BT_KT][BT_HVP];
    __local float qs[BT_QT][BT_HDP], os[BT_QT][BT_HVP];
    __local float pt[BT_QT][BT_KT + 1], st[BT_QT][BT_KT + 1];
    __local float ls[BT_QT], dd[BT_QT];
    __local int nf;
    const int t = (int)get_local_id(0);
    const int j0 = (int)get_group_id(0) * BT_KT;
    const int bg = bg0 + (int)get_global_id(1);
    const int b = bg / heads_kv, g = bg % heads_kv;
    const int group = heads_q / heads_kv;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const size_t kb = (size_t)bg * (size_t)seq_kv;
    const int nk = min(BT_KT, seq_kv - j0);
    const int ka = t % BT_KA, ca = t / BT_KA;
    int bad = 0;
    float ak[2][BWD_HD / BT_CA], av[2][BWD_HV / BT_CA];
    if (t == 0)
        nf = 0;
    BT_STAGE(ks, k, kb + (size_t)j0, nk, BT_KT, HD, BWD_HD, bad);
    BT_STAGE(vs, v, kb + (size_t)j0, nk, BT_KT, HV, BWD_HV, bad);
    bad = 0; /* the products take q and dO, not k and v */
#pragma unroll
    for (int x = 0; x < 2; x++) {
#pragma unroll
        for (int y = 0; y < BWD_HD / BT_CA; y++)
            ak[x][y] = 0.0f;
#pragma unroll
        for (int y = 0; y < BWD_HV / BT_CA; y++)
            av[x][y] = 0.0f;
    }
    /* the query rows that may see a key of the block: [ilo, ihi] */
    long ilo = 0, ihi = (long)seq_q - 1;
    if (causal)
        ilo = max(ilo, (long)j0 - diag);
    if (window > 0)
        ihi = min(ihi, (long)j0 + BT_KT - 2 - diag + window);
    if (j0 >= klen)
        ihi = -1;
    const int istart = ilo <= ihi ? (int)(ilo / BT_QT) * BT_QT : 0;
    const int iend = ilo <= ihi ? (int)ihi + 1 : 0;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const size_t rb = ((size_t)b * heads_q + h) * (size_t)seq_q;
        for (int i0 = istart; i0 < iend; i0 += BT_QT) {
            const int n = min(BT_QT, seq_q - i0);
            barrier(CLK_LOCAL_MEM_FENCE);
            BT_STAGE(qs, q, rb + (size_t)i0, n, BT_QT, HD, BWD_HD, bad);
            BT_STAGE(os, dout, rb + (size_t)i0, n, BT_QT, HV, BWD_HV, bad);
            for (int x = t; x < BT_QT; x += BT_WG) {
                ls[x] = x < n ? lse[rb + (size_t)(i0 + x)] : BWD_NEG_INF;
                dd[x] = x < n ? drow[rb + (size_t)(i0 + x)] : 0.0f;
            }
            if (bad)
                atomic_or(&nf, 1);
            barrier(CLK_LOCAL_MEM_FENCE);
            bt_tile(qs, os, ks, vs, ls, dd, pt, st, t, i0, j0, b, h, bias,
                    bias_kind, bias_sb, bias_sh, bias_sq, klen, scale, seq_q,
                    seq_kv, causal, window, diag);
            barrier(CLK_LOCAL_MEM_FENCE);
            const int guard = nf;
#pragma unroll 2
            for (int i = 0; i < BT_QT; i++)
#pragma unroll
                for (int x = 0; x < 2; x++) {
                    const int j = ka + BT_KA * x;
                    const float p = pt[i][j], ds = st[i][j];
                    if (guard) {
#pragma unroll
                        for (int y = 0; y < BWD_HV / BT_CA; y++)
                            av[x][y] += p != 0.0f ? p * os[i][ca + BT_CA * y]
                                                  : 0.0f;
#pragma unroll
                        for (int y = 0; y < BWD_HD / BT_CA; y++)
                            ak[x][y] += p != 0.0f ? ds * qs[i][ca + BT_CA * y]
                                                  : 0.0f;
                    } else {
#pragma unroll
                        for (int y = 0; y < BWD_HV / BT_CA; y++)
                            av[x][y] += p * os[i][ca + BT_CA * y];
#pragma unroll
                        for (int y = 0; y < BWD_HD / BT_CA; y++)
                            ak[x][y] += ds * qs[i][ca + BT_CA * y];
                    }
                }
        }
    }
#pragma unroll
    for (int x = 0; x < 2; x++) {
        const int gj = j0 + ka + BT_KA * x;
        if (gj >= seq_kv)
            continue;
#pragma unroll
        for (int y = 0; y < BWD_HD / BT_CA; y++) {
            const int c = ca + BT_CA * y;
            if (c < HD)
                ATTN_STORE(dk, (kb + (size_t)gj) * HD + c, ak[x][y] * scale);
        }
#pragma unroll
        for (int y = 0; y < BWD_HV / BT_CA; y++) {
            const int c = ca + BT_CA * y;
            if (c < HV)
                ATTN_STORE(dv, (kb + (size_t)gj) * HV + c, av[x][y]);
        }
    }
}

/* dq of query rows i0 .. i0 + BT_QT - 1 of (b, h) = bh0 + global id 1.
 * Launch: global (ceil(seq_q / BT_QT) * BT_WG, n_bh), local (BT_WG, 1). */
__kernel __attribute__((reqd_work_group_size(BT_WG, 1, 1))) void
attn_bwd_tiled_q(__global const ATTN_T *q, __global const ATTN_T *k,
                 __global const ATTN_T *v, __global const ATTN_T *dout,
                 __global const float *lse, __global const float *drow,
                 __global ATTN_T *dq, BWD_MASK_ARGS, int bh0)
{
    __local float qs[BT_QT][BT_HDP], os[BT_QT][BT_HVP];
    __local float ks[BT_KT][BT_HDP], vs[BT_KT][BT_HVP];
    __local float pt[BT_QT][BT_KT + 1], st[BT_QT][BT_KT + 1];
    __local float ls[BT_QT], dd[BT_QT];
    __local int nf;
    const int t = (int)get_local_id(0);
    const int i0 = (int)get_group_id(0) * BT_QT;
    const int bh = bh0 + (int)get_global_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const size_t rb = (size_t)bh * (size_t)seq_q;
    const size_t kb = ((size_t)b * heads_kv + g) * (size_t)seq_kv;
    const int n = min(BT_QT, seq_q - i0);
    const int qa = t % BT_QA, cq = t / BT_QA;
    int bad = 0, v_bad = 0; /* v is no operand of dq's product */
    float aq[2][BWD_HD / BT_CQ];
    if (t == 0)
        nf = 0;
    BT_STAGE(qs, q, rb + (size_t)i0, n, BT_QT, HD, BWD_HD, bad);
    BT_STAGE(os, dout, rb + (size_t)i0, n, BT_QT, HV, BWD_HV, bad);
    bad = 0; /* the products take k, not q and dO */
    for (int x = t; x < BT_QT; x += BT_WG) {
        ls[x] = x < n ? lse[rb + (size_t)(i0 + x)] : BWD_NEG_INF;
        dd[x] = x < n ? drow[rb + (size_t)(i0 + x)] : 0.0f;
    }
#pragma unroll
    for (int x = 0; x < 2; x++)
#pragma unroll
        for (int y = 0; y < BWD_HD / BT_CQ; y++)
            aq[x][y] = 0.0f;
    /* the keys a row of the block may see: [jlo, jhi] */
    const long last = (long)i0 + n - 1;
    long jlo = 0, jhi = (long)min(seq_kv, klen) - 1;
    if (causal)
        jhi = min(jhi, last + diag);
    if (window > 0)
        jlo = max(jlo, (long)i0 + diag - window + 1);
    const int jstart = jlo <= jhi ? (int)(jlo / BT_KT) * BT_KT : 0;
    const int jend = jlo <= jhi ? (int)jhi + 1 : 0;
    for (int j0 = jstart; j0 < jend; j0 += BT_KT) {
        const int nk = min(BT_KT, seq_kv - j0);
        barrier(CLK_LOCAL_MEM_FENCE);
        BT_STAGE(ks, k, kb + (size_t)j0, nk, BT_KT, HD, BWD_HD, bad);
        BT_STAGE(vs, v, kb + (size_t)j0, nk, BT_KT, HV, BWD_HV, v_bad);
        (void)v_bad;
        if (bad)
            atomic_or(&nf, 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        bt_tile(qs, os, ks, vs, ls, dd, pt, st, t, i0, j0, b, h, bias,
                bias_kind, bias_sb, bias_sh, bias_sq, klen, scale, seq_q,
                seq_kv, causal, window, diag);
        barrier(CLK_LOCAL_MEM_FENCE);
        const int guard = nf;
#pragma unroll 2
        for (int j = 0; j < BT_KT; j++)
#pragma unroll
            for (int x = 0; x < 2; x++) {
                const int i = qa + BT_QA * x;
                const float p = pt[i][j], ds = st[i][j];
                if (guard)
#pragma unroll
                    for (int y = 0; y < BWD_HD / BT_CQ; y++)
                        aq[x][y] +=
                            p != 0.0f ? ds * ks[j][cq + BT_CQ * y] : 0.0f;
                else
#pragma unroll
                    for (int y = 0; y < BWD_HD / BT_CQ; y++)
                        aq[x][y] += ds * ks[j][cq + BT_CQ * y];
            }
    }
#pragma unroll
    for (int x = 0; x < 2; x++) {
        const int i = qa + BT_QA * x;
        if (i >= n)
            continue;
#pragma unroll
        for (int y = 0; y < BWD_HD / BT_CQ; y++) {
            const int c = cq + BT_CQ * y;
            if (c < HD)
                ATTN_STORE(dq, (rb + (size_t)(i0 + i)) * HD + c,
                           aq[x][y] * scale);
        }
    }
}
