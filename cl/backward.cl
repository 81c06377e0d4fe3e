/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward pass of the attention (attn_sdpa_backward) on a device.
 * OpenCL C 1.2 after common.cl.  P is recomputed from q, k and the
 * forward's lse (P = exp(S - lse)); nothing of size seq_q x seq_kv is ever
 * stored.  Two variants share this file:
 *
 *   bwd_ref    three kernels, one work-item per row: attn_bwd_rowsum
 *              (D = rowsum(dO * O)), attn_bwd_dq (a query row's dq over
 *              every key) and attn_bwd_dkdv (a key row's dk and dv over
 *              every query row of its GQA group);
 *   bwd_fused  attn_bwd_fused: a work-group per block of BWD_KB keys,
 *              each item owning one key's dk and dv in registers, the
 *              query rows streamed through local memory a tile at a time
 *              with their D computed there (no rowsum pass), then
 *              attn_bwd_dq for dq: no float atomics (not core 1.2);
 *              on CPU devices attn_bwd_fused_v and attn_bwd_dq_v, the same
 *              sums with 16 keys or 16 query rows in vector lanes.
 *
 * Masks as the forward's kernels take them (score.cl): key j of query row
 * i is visible when lo(i) <= j <= hi(i), hi(i) = min(causal ? i + diag :
 * seq_kv - 1, kv_len[b] - 1), lo(i) = window > 0 ? i + diag - window + 1
 * : 0, its bias entry is not -INFINITY and its score is not -INFINITY.  A
 * pair whose probability is 0 adds nothing; a row whose lse is -INFINITY
 * (no visible key) gets dq = 0 and adds nothing.
 *
 * bwd_ref also computes the additive score (addw, unscaled), dbias
 * (attn_bwd_dbias: each entry summed over what it broadcasts over) and
 * d additive_w (attn_bwd_dq's per-row parts summed by attn_bwd_dw).
 *
 * BWD_HD, BWD_HV: head_dim and head_dim_v (build defines, a program per
 * head size) when BWD_RT is 0; when BWD_RT is 1, the capacity of the
 * private and local rows, the head sizes coming at run time (hd_, hv_,
 * at most the capacities), so that a few programs serve every other head
 * size.  Tensors are dense [batch, heads, seq, dim].
 */

#ifndef BWD_HD
#define BWD_HD 64
#endif
#ifndef BWD_HV
#define BWD_HV BWD_HD
#endif
#ifndef BWD_RT
#define BWD_RT 0
#endif
#if BWD_RT
#define HD hd_
#define HV hv_
#else
#define HD BWD_HD
#define HV BWD_HV
#endif
#ifndef BWD_KB
#define BWD_KB 32
#endif
#ifndef BWD_QT
#define BWD_QT 16
#endif

#define BWD_NEG_INF as_float(ATTN_NEG_INF_BITS)

/* The arguments every kernel takes after its tensors, as one list. */
#define BWD_MASK_ARGS                                                          \
    __global const float *bias, int bias_kind, ulong bias_sb, ulong bias_sh,   \
        ulong bias_sq, __global const int *kv_len, int has_kv_len,             \
        float scale, int heads_q, int heads_kv, int seq_q, int seq_kv,         \
        int causal, int window, int diag, int hd_, int hv_,                    \
        __global const float *addw, int additive, __global float *dwp,         \
        int has_dwp

/* The score of (b, h, i, j) with its bias, given the scaled dot product
 * s; sets *vis to 0 when the pair is hidden. */
static inline float bwd_score(float s, int i, int j, int b, int h,
                              __global const float *bias, int bias_kind,
                              ulong bias_sb, ulong bias_sh, ulong bias_sq,
                              int klen, int seq_kv, int causal, int window,
                              int diag, int *vis)
{
    const long hi =
        min(causal ? (long)i + diag : (long)seq_kv - 1, (long)klen - 1);
    const long lo = window > 0 ? (long)i + diag - window + 1 : 0;
    int v = (long)j >= lo && (long)j <= hi;
    if (v && bias_kind != 0) {
        const float bv = bias[(size_t)b * bias_sb + (size_t)h * bias_sh +
                              (size_t)i * bias_sq + (size_t)j];
        if (as_uint(bv) == ATTN_NEG_INF_BITS)
            v = 0;
        else
            s += bv;
    }
    if (as_uint(s) == ATTN_NEG_INF_BITS)
        v = 0;
    *vis = v;
    return s;
}

/* P of (b, h, i, j) from its scaled dot product s and the row's lse l,
 * without a branch (work-items of a group stay in step, so that a
 * compiler vectorising across them keeps the loop): 0 when the pair is
 * hidden or the row sees no key.  j < seq_kv, i < seq_q. */
static inline float bwd_p(float s, float l, int i, int j, int b, int h,
                          __global const float *bias, int bias_kind,
                          ulong bias_sb, ulong bias_sh, ulong bias_sq, int klen,
                          int seq_kv, int causal, int window, int diag)
{
    const long hi =
        min(causal ? (long)i + diag : (long)seq_kv - 1, (long)klen - 1);
    const long lo = window > 0 ? (long)i + diag - window + 1 : 0;
    int vis = (long)j >= lo && (long)j <= hi && as_uint(l) != ATTN_NEG_INF_BITS;
    if (bias_kind != 0) { /* uniform */
        const float bv = bias[(size_t)b * bias_sb + (size_t)h * bias_sh +
                              (size_t)i * bias_sq + (size_t)j];
        vis = vis && as_uint(bv) != ATTN_NEG_INF_BITS;
        s += bv;
    }
    vis = vis && as_uint(s) != ATTN_NEG_INF_BITS;
    return vis ? exp(s - l) : 0.0f;
}

/* The score of a pair before its bias, in s: with the additive score the
 * unscaled sum_c w_c tanh(q_c + k_c) over the row WR of addw, else scale *
 * sum_c q_c k_c.  QC and KC are element c_ of the query and key rows (a
 * macro: the rows are in private or in global memory). */
#define BWD_RAW_SCORE(s, QC, KC, WR)                                           \
    do {                                                                       \
        (s) = 0.0f;                                                            \
        if (additive)                                                          \
            for (int c_ = 0; c_ < HD; c_++)                                    \
                (s) += addw[(WR) + c_] * tanh((QC) + (KC));                    \
        else {                                                                 \
            for (int c_ = 0; c_ < HD; c_++)                                    \
                (s) += (QC) * (KC);                                            \
            (s) *= scale;                                                      \
        }                                                                      \
    } while (0)

/* Element c of the n (<= 16) rows of width w from row r0 of x, in the
 * lanes of a float16 (0 in the lanes past n). */
static inline float16 bwd_lanes(__global const ATTN_T *x, size_t r0, int n,
                                int w, int c)
{
    float lane[16];
    for (int t = 0; t < 16; t++)
        lane[t] = t < n ? ATTN_LOAD(x, (r0 + t) * (size_t)w + c) : 0.0f;
    return vload16(0, lane);
}

/* Lanes t < n of v stored as element c of rows r0 + t of x (width w). */
static inline void bwd_store_lanes(__global ATTN_T *x, size_t r0, int n, int w,
                                   int c, float16 v)
{
    float lane[16];
    vstore16(v, 0, lane);
    for (int t = 0; t < n; t++)
        ATTN_STORE(x, (r0 + t) * (size_t)w + c, lane[t]);
}

/* D[r] = sum_c dO[r, c] * O[r, c] for rows r < rows.  Launch: global
 * >= rows, any local. */
__kernel void attn_bwd_rowsum(__global const ATTN_T *o,
                              __global const ATTN_T *dout, __global float *drow,
                              int rows, int hv_)
{
    const int r = (int)get_global_id(0);
    float acc = 0.0f;
    if (r >= rows)
        return;
    for (int c = 0; c < HV; c++)
        acc += ATTN_LOAD(dout, (size_t)r * HV + c) *
               ATTN_LOAD(o, (size_t)r * HV + c);
    drow[r] = acc;
}

/* dq of query row r = (b, h, i), r < batch * heads_q * seq_q: scale *
 * sum_j P_ij (dO_i . v_j - D_i) k_j.  Launch: global >= rows. */
__kernel void attn_bwd_dq(__global const ATTN_T *q, __global const ATTN_T *k,
                          __global const ATTN_T *v, __global const ATTN_T *dout,
                          __global const float *lse, __global const float *drow,
                          __global ATTN_T *dq, BWD_MASK_ARGS, int rows)
{
    const int r = (int)get_global_id(0);
    float qr[BWD_HD], dor[BWD_HV], acc[BWD_HD], dw[BWD_HD];
    if (r >= rows)
        return;
    const int i = r % seq_q, bh = r / seq_q;
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const float l = lse[r], dd = drow[r];
    const size_t kb = ((size_t)b * heads_kv + g) * (size_t)seq_kv;
    const size_t wr = (size_t)h * HD; /* additive_w's row */
    for (int c = 0; c < HD; c++) {
        qr[c] = ATTN_LOAD(q, (size_t)r * HD + c);
        acc[c] = dw[c] = 0.0f;
    }
    for (int c = 0; c < HV; c++)
        dor[c] = ATTN_LOAD(dout, (size_t)r * HV + c);
    for (int j = 0; j < seq_kv; j++) {
        float s, dp = 0.0f;
        const size_t kr = (kb + (size_t)j) * HD;
        const size_t vr = (kb + (size_t)j) * HV;
        BWD_RAW_SCORE(s, qr[c_], ATTN_LOAD(k, kr + c_), wr);
        const float p =
            bwd_p(s, l, i, j, b, h, bias, bias_kind, bias_sb, bias_sh, bias_sq,
                  klen, seq_kv, causal, window, diag);
        /* a pair with p = 0 adds nothing, whatever k and v hold */
        const int add = p != 0.0f;
        for (int c = 0; c < HV; c++)
            dp += dor[c] * ATTN_LOAD(v, vr + c);
        const float ds = p * (dp - dd);
        if (additive && add)
            for (int c = 0; c < HD; c++) {
                const float t = tanh(qr[c] + ATTN_LOAD(k, kr + c));
                acc[c] += ds * addw[wr + c] * (1.0f - t * t);
                dw[c] += ds * t;
            }
        else if (!additive)
            for (int c = 0; c < HD; c++)
                acc[c] += add ? ds * ATTN_LOAD(k, kr + c) : 0.0f;
    }
    for (int c = 0; c < HD; c++)
        ATTN_STORE(dq, (size_t)r * HD + c, additive ? acc[c] : acc[c] * scale);
    /* the row's part of d additive_w, summed by attn_bwd_dw */
    for (int c = 0; has_dwp && c < HD; c++)
        dwp[(size_t)r * HD + c] = dw[c];
}

/* dk and dv of key row r = (b, g, j), r < batch * heads_kv * seq_kv, over
 * every query row of the query heads that read kv head g.  Launch: global
 * >= rows. */
__kernel void attn_bwd_dkdv(__global const ATTN_T *q, __global const ATTN_T *k,
                            __global const ATTN_T *v,
                            __global const ATTN_T *dout,
                            __global const float *lse,
                            __global const float *drow, __global ATTN_T *dk,
                            __global ATTN_T *dv, BWD_MASK_ARGS, int rows)
{
    const int r = (int)get_global_id(0);
    float kr[BWD_HD], vr[BWD_HV], ak[BWD_HD], av[BWD_HV];
    if (r >= rows)
        return;
    const int j = r % seq_kv, bg = r / seq_kv;
    const int b = bg / heads_kv, g = bg % heads_kv;
    const int group = heads_q / heads_kv;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    for (int c = 0; c < HD; c++) {
        kr[c] = ATTN_LOAD(k, (size_t)r * HD + c);
        ak[c] = 0.0f;
    }
    for (int c = 0; c < HV; c++) {
        vr[c] = ATTN_LOAD(v, (size_t)r * HV + c);
        av[c] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const size_t rb = ((size_t)b * heads_q + h) * (size_t)seq_q;
        for (int i = 0; i < seq_q; i++) {
            int vis;
            float s, dp = 0.0f;
            const size_t qr = (rb + (size_t)i) * HD;
            const size_t orow = (rb + (size_t)i) * HV;
            const float l = lse[rb + (size_t)i];
            const long hi =
                min(causal ? (long)i + diag : (long)seq_kv - 1, (long)klen - 1);
            const long lo = window > 0 ? (long)i + diag - window + 1 : 0;
            if ((long)j < lo || (long)j > hi || as_uint(l) == ATTN_NEG_INF_BITS)
                continue;
            BWD_RAW_SCORE(s, ATTN_LOAD(q, qr + c_), kr[c_], (size_t)h * HD);
            s = bwd_score(s, i, j, b, h, bias, bias_kind, bias_sb, bias_sh,
                          bias_sq, klen, seq_kv, causal, window, diag, &vis);
            if (!vis)
                continue;
            const float p = exp(s - l);
            if (p == 0.0f)
                continue;
            for (int c = 0; c < HV; c++) {
                const float x = ATTN_LOAD(dout, orow + c);
                av[c] += p * x;
                dp += x * vr[c];
            }
            const float ds = p * (dp - drow[rb + (size_t)i]);
            if (additive)
                for (int c = 0; c < HD; c++) {
                    const float t = tanh(ATTN_LOAD(q, qr + c) + kr[c]);
                    ak[c] += ds * addw[(size_t)h * HD + c] * (1.0f - t * t);
                }
            else
                for (int c = 0; c < HD; c++)
                    ak[c] += ds * ATTN_LOAD(q, qr + c);
        }
    }
    for (int c = 0; c < HD; c++)
        ATTN_STORE(dk, (size_t)r * HD + c, additive ? ak[c] : ak[c] * scale);
    for (int c = 0; c < HV; c++)
        ATTN_STORE(dv, (size_t)r * HV + c, av[c]);
}

/* dbias entry e of a bias of extents (nb, nh, nq, seq_kv) (1 where it
 * broadcasts): the sum of dS over the (b, h, i) it is added to, in a fixed
 * order; 0 where only hidden pairs read it.  Launch: global >= entries. */
__kernel void attn_bwd_dbias(__global const ATTN_T *q, __global const ATTN_T *k,
                             __global const ATTN_T *v,
                             __global const ATTN_T *dout,
                             __global const float *lse,
                             __global const float *drow, __global float *dbias,
                             BWD_MASK_ARGS, int nb, int nh, int nq, int batch)
{
    const size_t e = get_global_id(0);
    if (e >= (size_t)nb * nh * nq * seq_kv)
        return;
    const int j = (int)(e % (size_t)seq_kv);
    const size_t rest = e / (size_t)seq_kv;
    const int ei = (int)(rest % (size_t)nq), eh = (int)(rest / nq % nh),
              eb = (int)(rest / nq / nh);
    float sum = 0.0f;
    for (int b = nb > 1 ? eb : 0; b < (nb > 1 ? eb + 1 : batch); b++) {
        const int klen = has_kv_len ? kv_len[b] : seq_kv;
        for (int h = nh > 1 ? eh : 0; h < (nh > 1 ? eh + 1 : heads_q); h++) {
            const int g = h / (heads_q / heads_kv);
            const size_t kr = (((size_t)b * heads_kv + g) * seq_kv + j) * HD;
            const size_t vr = (((size_t)b * heads_kv + g) * seq_kv + j) * HV;
            for (int i = nq > 1 ? ei : 0; i < (nq > 1 ? ei + 1 : seq_q); i++) {
                const size_t row = ((size_t)b * heads_q + h) * seq_q + i;
                float s, dp = 0.0f;
                BWD_RAW_SCORE(s, ATTN_LOAD(q, row * HD + c_),
                              ATTN_LOAD(k, kr + c_), (size_t)h * HD);
                const float p = bwd_p(s, lse[row], i, j, b, h, bias, bias_kind,
                                      bias_sb, bias_sh, bias_sq, klen, seq_kv,
                                      causal, window, diag);
                if (p == 0.0f)
                    continue;
                for (int c = 0; c < HV; c++)
                    dp += ATTN_LOAD(dout, row * HV + c) * ATTN_LOAD(v, vr + c);
                sum += p * (dp - drow[row]);
            }
        }
    }
    dbias[e] = sum;
}

/* d additive_w [heads_q, hd_]: entry (h, c) the sum over the batch and the
 * query rows of attn_bwd_dq's parts dwp [batch, heads_q, seq_q, hd_], in
 * a fixed order.  Launch: global >= heads_q * hd_. */
__kernel void attn_bwd_dw(__global const float *dwp, __global float *dw,
                          int batch, int heads_q, int seq_q, int hd_)
{
    const int e = (int)get_global_id(0);
    if (e >= heads_q * hd_)
        return;
    const int h = e / hd_, c = e % hd_;
    float sum = 0.0f;
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < seq_q; i++)
            sum += dwp[(((size_t)b * heads_q + h) * seq_q + i) * hd_ + c];
    dw[e] = sum;
}

/* bwd_fused: dk and dv of BWD_KB keys of kv head (b, g) per work-group of
 * BWD_KB items, one key each, the group's query rows staged BWD_QT at a
 * time in local memory with their D = rowsum(dO * O) computed there.
 * Launch: global (ceil(seq_kv / BWD_KB) * BWD_KB, n_bg), local (BWD_KB,
 * 1); bg0 the first (batch, kv head) of the launch. */
__kernel __attribute__((reqd_work_group_size(BWD_KB, 1, 1))) void
attn_bwd_fused(__global const ATTN_T *q, __global const ATTN_T *k,
               __global const ATTN_T *v, __global const ATTN_T *o,
               __global const ATTN_T *dout, __global const float *lse,
               __global ATTN_T *dk, __global ATTN_T *dv, BWD_MASK_ARGS, int bg0)
{
    __local float qs[BWD_QT][BWD_HD];
    __local float ds_[BWD_QT][BWD_HV];
    __local float ls[BWD_QT], dd[BWD_QT];
    const int t = (int)get_local_id(0);
    const int j = (int)get_group_id(0) * BWD_KB + t;
    const int bg = bg0 + (int)get_global_id(1);
    const int b = bg / heads_kv, g = bg % heads_kv;
    const int group = heads_q / heads_kv;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int live = j < seq_kv;
    const size_t r = ((size_t)bg * (size_t)seq_kv + (size_t)(live ? j : 0));
    float kr[BWD_HD], vr[BWD_HV], ak[BWD_HD], av[BWD_HV];
    for (int c = 0; c < HD; c++) {
        kr[c] = live ? ATTN_LOAD(k, r * HD + c) : 0.0f;
        ak[c] = 0.0f;
    }
    for (int c = 0; c < HV; c++) {
        vr[c] = live ? ATTN_LOAD(v, r * HV + c) : 0.0f;
        av[c] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const size_t rb = ((size_t)b * heads_q + h) * (size_t)seq_q;
        for (int i0 = 0; i0 < seq_q; i0 += BWD_QT) {
            const int n = min(BWD_QT, seq_q - i0);
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int e = t; e < BWD_QT * HD; e += BWD_KB) {
                const int x = e / HD, c = e % HD;
                qs[x][c] =
                    x < n ? ATTN_LOAD(q, (rb + (size_t)(i0 + x)) * HD + c)
                          : 0.0f;
            }
            for (int e = t; e < BWD_QT * HV; e += BWD_KB) {
                const int x = e / HV, c = e % HV;
                ds_[x][c] =
                    x < n
                        ? ATTN_LOAD(dout, (rb + (size_t)(i0 + x)) * HV + c)
                        : 0.0f;
            }
            for (int x = t; x < BWD_QT; x += BWD_KB) {
                float acc = 0.0f;
                const size_t orow = (rb + (size_t)(i0 + x)) * HV;
                for (int c = 0; x < n && c < HV; c++)
                    acc += ATTN_LOAD(dout, orow + c) * ATTN_LOAD(o, orow + c);
                dd[x] = acc;
                ls[x] = x < n ? lse[rb + (size_t)(i0 + x)] : BWD_NEG_INF;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int x = 0; x < n; x++) {
                const int i = i0 + x;
                float s = 0.0f, dp = 0.0f;
                for (int c = 0; c < HD; c++)
                    s += qs[x][c] * kr[c];
                /* a dead item (j past seq_kv) computes on key seq_kv - 1 and
                 * writes nothing */
                const float p =
                    bwd_p(s * scale, ls[x], i, live ? j : seq_kv - 1, b, h,
                          bias, bias_kind, bias_sb, bias_sh, bias_sq, klen,
                          seq_kv, causal, window, diag);
                const int add = p != 0.0f;
                for (int c = 0; c < HV; c++) {
                    av[c] += add ? p * ds_[x][c] : 0.0f;
                    dp += ds_[x][c] * vr[c];
                }
                const float dsv = p * (dp - dd[x]);
                for (int c = 0; c < HD; c++)
                    ak[c] += add ? dsv * qs[x][c] : 0.0f;
            }
        }
    }
    if (!live)
        return;
    for (int c = 0; c < HD; c++)
        ATTN_STORE(dk, r * HD + c, ak[c] * scale);
    for (int c = 0; c < HV; c++)
        ATTN_STORE(dv, r * HV + c, av[c]);
}

/* bwd_fused on CPU devices: attn_bwd_fused_v, the same sums with 16 keys
 * in the lanes of a float16 ("keys in lanes"): one item per 16 keys of kv
 * head (b, g), K and V transposed into private vectors, so that every
 * product over the head dimension is a vector multiply-add against a
 * broadcast element of the query row (no horizontal sums), as fused.cl
 * does for the forward.  D of each query row is computed where it is
 * used.  Launch: global (ceil(seq_kv / 16), n_bg), local (1, 1); bg0 the
 * first (batch, kv head) of the launch. */
__kernel void attn_bwd_fused_v(__global const ATTN_T *q,
                               __global const ATTN_T *k,
                               __global const ATTN_T *v,
                               __global const ATTN_T *o,
                               __global const ATTN_T *dout,
                               __global const float *lse, __global ATTN_T *dk,
                               __global ATTN_T *dv, BWD_MASK_ARGS, int bg0)
{
    const int j0 = (int)get_global_id(0) * 16;
    const int bg = bg0 + (int)get_global_id(1);
    const int b = bg / heads_kv, g = bg % heads_kv;
    const int group = heads_q / heads_kv;
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int nk = min(16, seq_kv - j0);
    const size_t r0 = (size_t)bg * (size_t)seq_kv + (size_t)j0;
    const int16 jv = (int16)(j0) + (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                           12, 13, 14, 15);
    const int16 live = jv < (int16)(seq_kv);
    float16 kt[BWD_HD], vt[BWD_HV], ak[BWD_HD], av[BWD_HV];
    float lane[16];
    for (int c = 0; c < HD; c++) {
        kt[c] = bwd_lanes(k, r0, nk, HD, c);
        ak[c] = (float16)(0.0f);
    }
    for (int c = 0; c < HV; c++) {
        vt[c] = bwd_lanes(v, r0, nk, HV, c);
        av[c] = (float16)(0.0f);
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const size_t rb = ((size_t)b * heads_q + h) * (size_t)seq_q;
        for (int i = 0; i < seq_q; i++) {
            const size_t qr = (rb + (size_t)i) * HD;
            const size_t orow = (rb + (size_t)i) * HV;
            const float l = lse[rb + (size_t)i];
            const long hi =
                min(causal ? (long)i + diag : (long)seq_kv - 1, (long)klen - 1);
            const long lo = window > 0 ? (long)i + diag - window + 1 : 0;
            /* keys of this item the row cannot see at all: skip it */
            if (as_uint(l) == ATTN_NEG_INF_BITS || (long)j0 > hi ||
                (long)(j0 + nk - 1) < lo)
                continue;
            float16 s = (float16)(0.0f), dp = (float16)(0.0f);
            float dd = 0.0f;
            for (int c = 0; c < HD; c++)
                s += ATTN_LOAD(q, qr + c) * kt[c];
            s *= scale;
            const int lo_i = (int)min(max(lo, -1L), (long)seq_kv);
            const int hi_i = (int)max(hi, -1L);
            int16 vis = live & (jv >= (int16)(lo_i)) & (jv <= (int16)(hi_i));
            if (bias_kind != 0) {
                const size_t brow = (size_t)b * bias_sb + (size_t)h * bias_sh +
                                    (size_t)i * bias_sq;
                for (int t = 0; t < 16; t++)
                    lane[t] = bias[brow + (size_t)min(j0 + t, seq_kv - 1)];
                const float16 bv = vload16(0, lane);
                vis = vis & (as_uint16(bv) != (uint16)(ATTN_NEG_INF_BITS));
                s += bv;
            }
            vis = vis & (as_uint16(s) != (uint16)(ATTN_NEG_INF_BITS));
            const float16 p = select((float16)(0.0f), exp(s - l), vis);
            const int16 add = p != (float16)(0.0f);
            for (int c = 0; c < HV; c++) {
                const float x = ATTN_LOAD(dout, orow + c);
                dd += x * ATTN_LOAD(o, orow + c);
                av[c] += select((float16)(0.0f), p * x, add);
                dp += x * vt[c];
            }
            const float16 ds = p * (dp - dd);
            for (int c = 0; c < HD; c++)
                ak[c] +=
                    select((float16)(0.0f), ds * ATTN_LOAD(q, qr + c), add);
        }
    }
    for (int c = 0; c < HD; c++)
        bwd_store_lanes(dk, r0, nk, HD, c, ak[c] * scale);
    for (int c = 0; c < HV; c++)
        bwd_store_lanes(dv, r0, nk, HV, c, av[c]);
}

/* attn_bwd_dq on CPU devices: attn_bwd_dq_v, 16 query rows of one (batch,
 * query head) in the lanes of a float16, Q and dO transposed into private
 * vectors, each key's row broadcast.  Launch: global (ceil(seq_q / 16),
 * n_bh), local (1, 1); bh0 the first (batch, query head) of the launch. */
__kernel void attn_bwd_dq_v(__global const ATTN_T *q, __global const ATTN_T *k,
                            __global const ATTN_T *v,
                            __global const ATTN_T *dout,
                            __global const float *lse,
                            __global const float *drow, __global ATTN_T *dq,
                            BWD_MASK_ARGS, int bh0)
{
    const int i0 = (int)get_global_id(0) * 16;
    const int bh = bh0 + (int)get_global_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    const int nq = min(16, seq_q - i0);
    const size_t r0 = (size_t)bh * (size_t)seq_q + (size_t)i0;
    const size_t kb = ((size_t)b * heads_kv + g) * (size_t)seq_kv;
    const int16 iv = (int16)(i0) + (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                           12, 13, 14, 15);
    float16 qt[BWD_HD], dot_[BWD_HV], acc[BWD_HD];
    float lane[16];
    float16 l, dd;
    for (int t = 0; t < 16; t++)
        lane[t] = t < nq ? lse[r0 + t] : BWD_NEG_INF;
    l = vload16(0, lane);
    for (int t = 0; t < 16; t++)
        lane[t] = t < nq ? drow[r0 + t] : 0.0f;
    dd = vload16(0, lane);
    for (int c = 0; c < HD; c++) {
        qt[c] = bwd_lanes(q, r0, nq, HD, c);
        acc[c] = (float16)(0.0f);
    }
    for (int c = 0; c < HV; c++)
        dot_[c] = bwd_lanes(dout, r0, nq, HV, c);
    /* the keys some row of the item may see */
    const long last = i0 + nq - 1;
    const long hi =
        min(causal ? last + diag : (long)seq_kv - 1, (long)klen - 1);
    const long lo = window > 0 ? (long)i0 + diag - window + 1 : 0;
    const int16 row_ok =
        (iv < (int16)(seq_q)) & (as_uint16(l) != (uint16)(ATTN_NEG_INF_BITS));
    const long16 ivl = convert_long16(iv);
    const long16 hiv = min(causal ? ivl + (long16)(diag) : (long16)(seq_kv - 1),
                           (long16)(klen - 1));
    const long16 lov =
        window > 0 ? ivl + (long16)(diag - window + 1) : (long16)(0);
    for (int j = (int)max(lo, 0L); j <= hi; j++) {
        const size_t kr = (kb + (size_t)j) * HD;
        const size_t vr = (kb + (size_t)j) * HV;
        float16 s = (float16)(0.0f), dp = (float16)(0.0f);
        for (int c = 0; c < HD; c++)
            s += qt[c] * ATTN_LOAD(k, kr + c);
        s *= scale;
        const long16 jl = (long16)(j);
        int16 vis = row_ok & convert_int16((jl >= lov) & (jl <= hiv));
        if (bias_kind != 0) {
            const size_t base =
                (size_t)b * bias_sb + (size_t)h * bias_sh + (size_t)j;
            for (int t = 0; t < 16; t++)
                lane[t] = bias[base + (size_t)min(i0 + t, seq_q - 1) * bias_sq];
            const float16 bv = vload16(0, lane);
            vis = vis & (as_uint16(bv) != (uint16)(ATTN_NEG_INF_BITS));
            s += bv;
        }
        vis = vis & (as_uint16(s) != (uint16)(ATTN_NEG_INF_BITS));
        const float16 p = select((float16)(0.0f), exp(s - l), vis);
        const int16 add = p != (float16)(0.0f);
        for (int c = 0; c < HV; c++)
            dp += dot_[c] * ATTN_LOAD(v, vr + c);
        const float16 ds = p * (dp - dd);
        for (int c = 0; c < HD; c++)
            acc[c] += select((float16)(0.0f), ds * ATTN_LOAD(k, kr + c), add);
    }
    for (int c = 0; c < HD; c++)
        bwd_store_lanes(dq, r0, nq, HD, c, acc[c] * scale);
}

/* The elements of a tensor as they are stored (2 or 4 bytes), copied
 * unchanged. */
#if ATTN_F16 || ATTN_BF16
#define BWD_RAW ushort
#else
#define BWD_RAW uint
#endif

/* attn_sdpa_backward_cl_buffers: the rows of a tensor at element offset
 * off with strides sb, sh, sr over batch, head and row (n1 heads, n2 rows
 * of w elements) to the dense copy [batch, n1, n2, w] (to_dense 1) or
 * back (0), or zeroes them (2: dense unused); `total` elements, one per
 * item.  Gaps between the strided rows are not touched. */
__kernel void attn_bwd_move(__global BWD_RAW *strided, ulong off, ulong sb,
                            ulong sh, ulong sr, __global BWD_RAW *dense,
                            int n1, int n2, int w, ulong total, int to_dense)
{
    const size_t e = get_global_id(0);
    if (e >= total)
        return;
    const size_t c = e % (size_t)w, r = e / (size_t)w;
    const size_t i = r % (size_t)n2, bh = r / (size_t)n2;
    const size_t h = bh % (size_t)n1, b = bh / (size_t)n1;
    const size_t at = off + b * sb + h * sh + i * sr + c;
    if (to_dense == 1)
        dense[e] = strided[at];
    else
        strided[at] = to_dense == 2 ? (BWD_RAW)0 : dense[e];
}
