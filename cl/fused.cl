/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fused attention: one pass over the keys with an online softmax, O(seq)
 * extra memory (no score matrix).  OpenCL C 1.2 after common.cl.
 *
 * Layout of the work.  A work-group of FA_WG items takes FA_WG * FA_BR
 * consecutive query rows of one (batch, query head); each item owns FA_BR =
 * FA_VW * FA_NV rows held "rows in lanes": FA_NV vectors of FA_VW floats,
 * lane l of vector n being row n * FA_VW + l.  The keys the rows can see
 * are visited in tiles of FA_TK keys; each tile of K and V is staged once
 * in local memory (converted to float) by the whole work-group.  Per tile
 * an item
 *   - computes the scores of its rows against FA_KB keys at a time: for
 *     each column c a vector of Q^T (its rows' c-th element) times the
 *     broadcast K[j][c] - plain multiply-adds, no horizontal reduction;
 *   - applies scale, bias and masks, and updates the running maximum m and
 *     the running sum l of every row (vertical max / add over the keys),
 *     in base 2: scores are multiplied by log2(e) so that a short exp2
 *     polynomial does the exponentials.  With a bias they stay natural (a
 *     bias near FLT_MAX would overflow times log2(e)) and the differences
 *     from m are multiplied by log2(e) instead (`nat`);
 *   - accumulates O^T += P V, FA_CB columns of O at a time against
 *     broadcast V[j][col], rescaling the accumulators by 2^(m_old -
 *     m_new) as they are loaded.
 * Q^T and the O^T accumulators of every item live in local memory (the
 * `lm` scratch argument); the scores of one tile in private memory.
 * On CPU devices (PoCL) one item per work-group with FA_VW = 16 keeps each
 * row vector in one 512-bit register and the inner loops branch-free; GPUs
 * want FA_VW = 1 and many items per work-group.
 *
 * Masks.  Query row i sees key j iff lo(i) <= j <= hi(i) with hi(i) =
 * min(causal ? i + diag : seq_kv - 1, kv_len - 1) and lo(i) =
 * window > 0 ? i + diag - window + 1 : 0, and its bias is not
 * -INFINITY.  lo and hi grow with i, so the tiles outside [lo(first row),
 * hi(last row)] are never visited and a tile inside [lo(last), hi(first)]
 * of an item is visible to all of its rows (no mask work).  Hidden scores
 * are tested on their bits (never with isinf / -INFINITY literals) so that
 * -cl-fast-relaxed-math cannot fold the tests.  Hidden keys never reach O:
 * V rows past kv_len are not read, and a tile whose V holds a non-finite
 * value is accumulated with p = 0 entries skipped rather than multiplied.
 * A row with no visible key gives O = 0 and lse = -INFINITY (bit pattern).
 *
 * Non-finite inputs (attn.h).  A score of -INFINITY hides its key like a
 * -INFINITY bias; a NaN or +INFINITY score makes the row NaN (O and lse);
 * a visible key's weight never underflows to 0 (fa_exp2 stops at 2^-126),
 * so NaN in its V always reaches the row.  The no-mask branch takes only
 * tiles whose scores are all finite (checked as they are stored: the sum
 * of 0 * s stays +0 exactly until a score is inf or NaN); any other tile
 * takes the masked branch, which tests for -INFINITY and lets NaN through
 * the exponentials.
 */

/* ---- tuning ------------------------------------------------------------ */
#ifndef FA_VW /* lanes per vector: 1, 2, 4, 8 or 16 */
#define FA_VW 16
#endif
#ifndef FA_NV /* row vectors per item */
#define FA_NV 4
#endif
#ifndef FA_WG /* items per work-group */
#define FA_WG 1
#endif
#ifndef FA_TK /* keys per tile */
#define FA_TK 64
#endif
#ifndef FA_KB /* keys per step of the score loop */
#define FA_KB 4
#endif
#ifndef FA_CB /* columns of O per step of the P V loop */
#define FA_CB 8
#endif

#ifndef FA_FMA /* 1: the device has fused multiply-add in hardware */
#define FA_FMA 0
#endif

#define FA_BR (FA_VW * FA_NV) /* rows per item */
/* a * b + c: fma() where it is one instruction (some compilers do not
 * contract mad), mad() elsewhere. */
#if FA_FMA
#define FA_MAD(a, b, c) fma((a), (b), (c))
#else
#define FA_MAD(a, b, c) mad((a), (b), (c))
#endif
#if FA_TK % FA_KB != 0
#error "FA_TK must be a multiple of FA_KB"
#endif

/* Vector types of FA_VW lanes.  Comparisons give -1 / 0 lanes for vectors
 * and 1 / 0 for scalars; select() takes either. */
#define FA_CAT_(a, b) a##b
#define FA_CAT(a, b) FA_CAT_(a, b)
#if FA_VW == 1
#define VF float
#define VI int
#define VU uint
#define VLOAD(i, p) ((p)[i])
#define VSTORE(x, i, p) ((p)[i] = (x))
#define AS_VU(x) as_uint(x)
#define FA_AS_VF(x) as_float(x)
#define FA_CONVERT_VI(x) convert_int(x)
#define LANES 0
#elif FA_VW == 2 || FA_VW == 4 || FA_VW == 8 || FA_VW == 16
#define VF FA_CAT(float, FA_VW)
#define VI FA_CAT(int, FA_VW)
#define VU FA_CAT(uint, FA_VW)
#define VLOAD(i, p) FA_CAT(vload, FA_VW)((i), (p))
#define VSTORE(x, i, p) FA_CAT(vstore, FA_VW)((x), (i), (p))
#define AS_VU(x) FA_CAT(as_uint, FA_VW)(x)
#define FA_AS_VF(x) FA_CAT(as_float, FA_VW)(x)
#define FA_CONVERT_VI(x) FA_CAT(convert_int, FA_VW)(x)
#if FA_VW == 2
#define LANES (VI)(0, 1)
#elif FA_VW == 4
#define LANES (VI)(0, 1, 2, 3)
#elif FA_VW == 8
#define LANES (VI)(0, 1, 2, 3, 4, 5, 6, 7)
#else
#define LANES (VI)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#endif
#else
#error "FA_VW must be 1, 2, 4, 8 or 16"
#endif

/* Larger of a and b without fmax's NaN rules (one instruction on CPUs). */
#define FA_MAX(a, b) select((b), (a), (a) > (b))
/* Some lane of a comparison result is true. */
#if FA_VW == 1
#define FA_ANY(c) (c)
#else
#define FA_ANY(c) any(c)
#endif

#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f

/* The floats of the local scratch `lm` (see the host): K tile [FA_TK][d],
 * V tile [FA_TK][dvp], additive weights [d], then per item Q^T [d][FA_BR]
 * and O^T [dvp][FA_BR]; every part starts at a multiple of 16 floats. */
#define FA_R16(x) (((x) + 15) / 16 * 16)

/* Copies n floats of a global row into local memory, converting halves;
 * returns non-zero when one of them is inf or NaN. */
static int fa_copy_row(__local float *dst, __global const ATTN_T *src,
                       size_t base, int n)
{
    const uint16 expo = (uint16)0x7f800000u;
    int16 bad = (int16)0;
    int c = 0, tail = 0;
    for (; c + 16 <= n; c += 16) {
        const float16 x = ATTN_LOAD16(src, base + (size_t)c);
        vstore16(x, 0, dst + c);
        bad |= (as_uint16(x) & expo) == expo;
    }
    for (; c < n; c++) {
        const float x = ATTN_LOAD(src, base + (size_t)c);
        dst[c] = x;
        tail |= (as_uint(x) & 0x7f800000u) == 0x7f800000u;
    }
    return tail | any(bad);
}

/* 2^x for x <= 0 (NaN gives a finite value), relative error below 2^-22:
 * 2^round(x) times a degree-6 Taylor polynomial of 2^f on [-1/2, 1/2].
 * Arguments below -126 give 2^-126, a weight too small to matter next to
 * the maximum's 1, so no denormal or infinite value is ever formed. */
static VF fa_exp2(VF x)
{
    x = FA_MAX(x, (VF)-126.0f);
    const VF r = rint(x);
    const VF f = (x - r) * FA_LN2;
    VF p = (VF)1.3888889e-3f; /* 1/720 */
    p = FA_MAD(p, f, (VF)8.3333333e-3f);
    p = FA_MAD(p, f, (VF)4.1666667e-2f);
    p = FA_MAD(p, f, (VF)1.6666667e-1f);
    p = FA_MAD(p, f, (VF)0.5f);
    p = FA_MAD(p, f, (VF)1.0f);
    p = FA_MAD(p, f, (VF)1.0f);
    return p * FA_AS_VF((FA_CONVERT_VI(r) + 127) << 23);
}

/* q, k, v, o: the caller's tensors at element offsets q_off ... o_off.
 * lse: floats at lse_off when has_lse.  bias: kind bias_kind (0: none).
 * kv_len: [batch] when has_kv_len.  addw: [heads_q, head_dim] when
 * additive.  scale2: what the dot products (additive sums) are multiplied
 * by: the score scale (1 for additive scores), times log2(e) when there
 * is no bias.  window: 0, or the window clamped to seq_q + diag; diag:
 * the causal diagonal's offset (seq_kv - seq_q, or 0 top-left).  dvp:
 * head_dim_v rounded up to FA_CB.  Launch: global (ceil(seq_q / (FA_WG *
 * FA_BR)) * FA_WG, heads in this launch), local (FA_WG, 1); query head bh0 +
 * get_group_id(1).
 * The bias element (b, h, i, j) is bias[b * bias_sb + h * bias_sh + i *
 * bias_sq + j] (a stride is 0 where the bias is broadcast).  q_st ... o_st:
 * the tensors' strides over batch, head and row (ATTN_ROW). */
__kernel void attn_fused(__global const ATTN_T *q, ulong q_off,
                         __global const ATTN_T *k, ulong k_off,
                         __global const ATTN_T *v, ulong v_off,
                         __global ATTN_T *o, ulong o_off, __global float *lse,
                         ulong lse_off, int has_lse, __global const float *bias,
                         int bias_kind, ulong bias_sb, ulong bias_sh,
                         ulong bias_sq, __global const int *kv_len,
                         int has_kv_len, __global const float *addw,
                         int additive, float scale2, int heads_q, int heads_kv,
                         int seq_q, int seq_kv, int head_dim, int head_dim_v,
                         int dvp, int causal, int window, int diag,
                         ulong4 q_st, ulong4 k_st, ulong4 v_st, ulong4 o_st,
                         int bh0, __local float *lm)
{
    __local int vbad[FA_TK]; /* key row of the V tile holds inf / NaN */

    const int d = head_dim;
    const int lid = (int)get_local_id(0);
    const int bh = bh0 + (int)get_group_id(1);
    const int b = bh / heads_q, h = bh % heads_q;
    const int g = h / (heads_q / heads_kv);
    const int off = diag; /* causal diagonal */
    const int klen = has_kv_len ? kv_len[b] : seq_kv;
    /* Natural units with a bias: exponents are (s - m) log2(e). */
    const int nat = bias_kind != 0;
    const float unit = nat ? FA_LOG2E : 1.0f;
    const int wrow0 = (int)get_group_id(0) * (FA_WG * FA_BR);
    const int row0 = wrow0 + lid * FA_BR;
    const int nrows = clamp(seq_q - row0, 0, FA_BR);
    const int wrows = min(seq_q - wrow0, FA_WG * FA_BR);

    __local float *ks = lm;
    __local float *vs = ks + FA_R16(FA_TK * d);
    __local float *ws = vs + FA_R16(FA_TK * dvp);
    __local float *qt = ws + FA_R16(d) +
                        (size_t)lid * (size_t)(FA_R16(d * FA_BR) +
                                               FA_R16(dvp * FA_BR));
    __local float *ot = qt + FA_R16(d * FA_BR);

    /* Keys seen by some row of the work-group: [j_start, j_end). */
    const int i_last_wg = wrow0 + wrows - 1;
    const int j_start = window > 0 ? max(wrow0 + off - window + 1, 0) : 0;
    const int j_end = min(causal ? i_last_wg + off + 1 : seq_kv, klen);

    /* The same for this item's rows, and the keys all of them see. */
    const int i_first = row0, i_last = row0 + nrows - 1;
    const int hi_first = min(causal ? i_first + off : seq_kv - 1, klen - 1);
    const int hi_last = min(causal ? i_last + off : seq_kv - 1, klen - 1);
    const int lo_first = window > 0 ? i_first + off - window + 1 : 0;
    const int lo_last = window > 0 ? i_last + off - window + 1 : 0;

    /* Per row vector: the visible range of every lane. */
    VI lo_v[FA_NV], hi_v[FA_NV];
    VF m[FA_NV], l[FA_NV];
    for (int n = 0; n < FA_NV; n++) {
        const VI iv = (VI)(row0 + n * FA_VW) + LANES;
        hi_v[n] = min(causal ? iv + off : (VI)(seq_kv - 1), (VI)(klen - 1));
        lo_v[n] = window > 0 ? iv + (off - window + 1) : (VI)0;
        m[n] = (VF)as_float(ATTN_MASKED_BITS);
        l[n] = (VF)0.0f;
    }

    /* Q^T of the item's rows (0 past seq_q), O^T = 0, the weights. */
    {
        const size_t qbase = ATTN_ROW(q_off, q_st, b, h, row0);
        for (int r = 0; r < FA_BR; r++)
            for (int c = 0; c < d; c++)
                qt[c * FA_BR + r] =
                    r < nrows ? ATTN_LOAD(q, qbase + (size_t)r * q_st.z +
                                                 (size_t)c)
                              : 0.0f;
        for (int e = 0; e < dvp * FA_BR; e++)
            ot[e] = 0.0f;
        for (int c = lid; additive && c < d; c += FA_WG)
            ws[c] = addw[(size_t)h * (size_t)d + (size_t)c];
    }

    const size_t brow_step = (size_t)bias_sq;
    /* bias row of the item's first row */
    const size_t brow0 = (size_t)b * bias_sb + (size_t)h * bias_sh +
                         (size_t)row0 * brow_step;

    for (int jt = j_start; jt < j_end; jt += FA_TK) {
        const int nk = min(FA_TK, j_end - jt);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed */
        for (int jj = lid; jj < FA_TK; jj += FA_WG) {
            __local float *kd = ks + jj * d;
            __local float *vd = vs + jj * dvp;
            int bad = 0;
            if (jj < nk) {
                fa_copy_row(kd, k, ATTN_ROW(k_off, k_st, b, g, jt + jj), d);
                bad = fa_copy_row(vd, v, ATTN_ROW(v_off, v_st, b, g, jt + jj),
                                  head_dim_v);
                for (int c = head_dim_v; c < dvp; c++)
                    vd[c] = 0.0f;
            } else {
                for (int c = 0; c < d; c++)
                    kd[c] = 0.0f;
                for (int c = 0; c < dvp; c++)
                    vd[c] = 0.0f;
            }
            vbad[jj] = bad;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Does this tile hold a key some row of the item sees? */
        if (nrows == 0 || jt > hi_last || jt + nk - 1 < lo_first)
            continue;
        int full = bias_kind == 0 && nk == FA_TK && jt >= lo_last &&
                   jt + FA_TK - 1 <= hi_first;
        VF chk[FA_NV]; /* sum of 0 * s: +0 while every score is finite */
#pragma unroll
        for (int n = 0; n < FA_NV; n++)
            chk[n] = (VF)0.0f;
        const int jn = (nk + FA_KB - 1) / FA_KB * FA_KB;
        VF sc[FA_TK][FA_NV];

        /* ---- scores, times log2(e) unless nat ---- */
        for (int jb = 0; jb < jn; jb += FA_KB) {
            VF acc[FA_KB][FA_NV];
#pragma unroll
            for (int x = 0; x < FA_KB; x++)
#pragma unroll
                for (int n = 0; n < FA_NV; n++)
                    acc[x][n] = (VF)0.0f;
            __local const float *kr = ks + jb * d;
            if (!additive) {
                for (int c = 0; c < d; c++) {
                    VF qv[FA_NV];
#pragma unroll
                    for (int n = 0; n < FA_NV; n++)
                        qv[n] = VLOAD(0, qt + c * FA_BR + n * FA_VW);
#pragma unroll
                    for (int x = 0; x < FA_KB; x++) {
                        const VF kc = (VF)kr[x * d + c];
#pragma unroll
                        for (int n = 0; n < FA_NV; n++)
                            acc[x][n] = FA_MAD(qv[n], kc, acc[x][n]);
                    }
                }
            } else {
                for (int c = 0; c < d; c++) {
                    const VF w = (VF)ws[c];
                    VF qv[FA_NV];
#pragma unroll
                    for (int n = 0; n < FA_NV; n++)
                        qv[n] = VLOAD(0, qt + c * FA_BR + n * FA_VW);
#pragma unroll
                    for (int x = 0; x < FA_KB; x++) {
                        const VF kc = (VF)kr[x * d + c];
#pragma unroll
                        for (int n = 0; n < FA_NV; n++)
                            acc[x][n] = FA_MAD(w, tanh(qv[n] + kc), acc[x][n]);
                    }
                }
            }
#pragma unroll
            for (int x = 0; x < FA_KB; x++)
#pragma unroll
                for (int n = 0; n < FA_NV; n++) {
                    sc[jb + x][n] = acc[x][n] * scale2;
                    chk[n] = FA_MAD(sc[jb + x][n], (VF)0.0f, chk[n]);
                }
        }
        /* An inf or NaN score (from the inputs, or overflow) sends the
         * tile to the masked branch. */
#pragma unroll
        for (int n = 0; n < FA_NV; n++)
            full = full && !FA_ANY(AS_VU(chk[n]) != (VU)0u);

        /* ---- online softmax: sc becomes P ---- */
        VF corr[FA_NV];
        if (full) {
#pragma unroll
            for (int n = 0; n < FA_NV; n++) {
                VF mt = sc[0][n];
                for (int j = 1; j < FA_TK; j++)
                    mt = FA_MAX(sc[j][n], mt);
                const VF mn = FA_MAX(mt, m[n]);
                VF sum = (VF)0.0f;
                for (int j = 0; j < FA_TK; j++) {
                    const VF p = fa_exp2(sc[j][n] - mn);
                    sc[j][n] = p;
                    sum += p;
                }
                corr[n] = fa_exp2(m[n] - mn);
                l[n] = FA_MAD(l[n], corr[n], sum);
                m[n] = mn;
            }
        } else {
            /* the masked branch: masks, bias, non-finite scores */
            for (int n = 0; n < FA_NV; n++) {
                VF mt = (VF)as_float(ATTN_MASKED_BITS);
                for (int j = 0; j < jn; j++) {
                    const int jg = jt + j;
                    VI vis = (jg >= lo_v[n]) & (jg <= hi_v[n]);
                    VF s = sc[j][n];
                    if (bias_kind != 0) {
                        float bl[FA_VW];
                        for (int x = 0; x < FA_VW; x++) {
                            const int r = n * FA_VW + x;
                            bl[x] = r < nrows && j < nk
                                        ? bias[brow0 + (size_t)r * brow_step +
                                               (size_t)jg]
                                        : 0.0f;
                        }
                        const VF bv = VLOAD(0, bl);
                        /* A -INFINITY bias hides the key; it is never
                         * added. */
                        vis &= AS_VU(bv) != (VU)ATTN_NEG_INF_BITS;
                        s = s + bv;
                    }
                    /* So does a -INFINITY score. */
                    vis &= AS_VU(s) != (VU)ATTN_NEG_INF_BITS;
                    s = select((VF)as_float(ATTN_MASKED_BITS), s, vis);
                    sc[j][n] = s;
                    mt = FA_MAX(s, mt);
                }
                const VF mn = FA_MAX(mt, m[n]);
                VF sum = (VF)0.0f;
                for (int j = 0; j < jn; j++) {
                    const VF s = sc[j][n];
                    const VI vis = AS_VU(s) != (VU)ATTN_MASKED_BITS;
                    /* + (e - e): NaN (a NaN score, or +inf - +inf) stays
                     * NaN, which fa_exp2 alone would make finite. */
                    const VF e = (s - mn) * unit;
                    const VF p = select((VF)0.0f, fa_exp2(e) + (e - e), vis);
                    sc[j][n] = p;
                    sum += p;
                }
                corr[n] = fa_exp2((m[n] - mn) * unit);
                l[n] = FA_MAD(l[n], corr[n], sum);
                m[n] = mn;
            }
        }

        /* ---- O^T = O^T * corr + P V ---- */
        int bad = 0;
        for (int j = 0; j < nk; j++)
            bad |= vbad[j];
        for (int cb = 0; cb < dvp; cb += FA_CB) {
            VF acc[FA_CB][FA_NV];
#pragma unroll
            for (int x = 0; x < FA_CB; x++)
#pragma unroll
                for (int n = 0; n < FA_NV; n++)
                    acc[x][n] = VLOAD(0, ot + (cb + x) * FA_BR + n * FA_VW) *
                                corr[n];
            __local const float *vc = vs + cb;
            if (!bad) {
                for (int j = 0; j < jn; j++) {
#pragma unroll
                    for (int x = 0; x < FA_CB; x++) {
                        const VF vv = (VF)vc[j * dvp + x];
#pragma unroll
                        for (int n = 0; n < FA_NV; n++)
                            acc[x][n] = FA_MAD(sc[j][n], vv, acc[x][n]);
                    }
                }
            } else {
                /* inf / NaN in V: a hidden key (p = 0) must not turn the
                 * sum into NaN, so its product is skipped. */
                for (int j = 0; j < jn; j++) {
#pragma unroll
                    for (int x = 0; x < FA_CB; x++) {
                        const VF vv = (VF)vc[j * dvp + x];
#pragma unroll
                        for (int n = 0; n < FA_NV; n++)
                            acc[x][n] = select(acc[x][n],
                                               FA_MAD(sc[j][n], vv, acc[x][n]),
                                               sc[j][n] != (VF)0.0f);
                    }
                }
            }
#pragma unroll
            for (int x = 0; x < FA_CB; x++)
#pragma unroll
                for (int n = 0; n < FA_NV; n++)
                    VSTORE(acc[x][n], 0, ot + (cb + x) * FA_BR + n * FA_VW);
        }
    }

    /* ---- O = O^T / l, lse = (m + log2 l) ln 2 (m + log2(l) ln 2 when
     * nat) ---- */
    float lf[FA_BR], mf[FA_BR];
    for (int n = 0; n < FA_NV; n++) {
        VSTORE(l[n], n, lf);
        VSTORE(m[n], n, mf);
    }
    const size_t obase = ATTN_ROW(o_off, o_st, b, h, row0);
    for (int r = 0; r < nrows; r++) {
        /* l is 0 when nothing was visible, NaN after a NaN score */
        const int any = as_uint(lf[r]) != 0u;
        const float inv = any ? 1.0f / lf[r] : 0.0f;
        for (int c = 0; c < head_dim_v; c++) {
            const float x = ot[c * FA_BR + r] * inv;
            ATTN_STORE(o, obase + (size_t)r * o_st.z + (size_t)c,
                       any ? x : 0.0f);
        }
        /* The choice is made on bits: a float select may carry no-inf
         * flags. */
        if (has_lse)
            ((__global uint *)lse)[(size_t)lse_off +
                                   (size_t)bh * (size_t)seq_q +
                                   (size_t)(row0 + r)] =
                any ? as_uint(nat ? mf[r] + log2(lf[r]) * FA_LN2
                                  : (mf[r] + log2(lf[r])) * FA_LN2)
                    : ATTN_NEG_INF_BITS;
    }
}
