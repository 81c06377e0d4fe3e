/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The combine pass of the split-K kernels (decode.cl, splitkv.cl): merges
 * the key splits of every query row through their log-sum-exp.  OpenCL C
 * 1.2 after common.cl.
 *
 * Pass 1 leaves, per row and split, the running maximum m, the sum l and
 * the unnormalised O in the partial buffer:
 *   ml [rows][n_split][2] (m, l), then o [rows][n_split][head_dim_v]
 * at po_off, rows = (batch * heads_q) * seq_q in the order of O.  With
 * nat = 0, m is in base-2 units (p = 2^(s - m)); with nat = 1 in natural
 * units (p = e^(s - m)).
 *
 * attn_combine: M = max m over the splits with l != 0, L = sum l e^(m - M),
 * O = sum o e^(m - M) / L, lse = M + ln L (base 2 converted).  A split
 * whose l is 0 saw no visible key and is left out; a NaN l counts, so a
 * NaN reaches O and lse.  A row with no split left gives O = 0 and lse =
 * -INFINITY (bit pattern).
 */

#define CB_LN2 0.6931471805599453f
#define CB_LOG2E 1.4426950408889634f
#define CB_MAX(a, b) select((b), (a), (a) > (b))
/* A split's sum l is 0 when it saw no visible key (never -0); NaN counts. */
#define CB_HAS_SUM(x) (as_uint(x) != 0u)

/* part: the partial buffer (o at po_off).  o, lse: the caller's outputs at
 * element offsets (lse when has_lse); o_st: o's strides over batch, head
 * and row (ATTN_ROW).  Launch: global (any work-group size, rows in this
 * launch), local (the same, 1); row (of [batch * heads_q * seq_q])
 * row0 + get_group_id(1). */
__kernel void attn_combine(__global const float *part, ulong po_off,
                           __global ATTN_T *o, ulong o_off,
                           __global float *lse, ulong lse_off, int has_lse,
                           int head_dim_v, int n_split, int nat, int heads_q,
                           int seq_q, ulong4 o_st, int row0)
{
    const int lid = (int)get_local_id(0);
    const int nl = (int)get_local_size(0);
    const size_t row = (size_t)row0 + (size_t)get_group_id(1);
    const size_t p0 = row * (size_t)n_split;
    const int dv = head_dim_v;
    /* exp2 of (m - M) f is e^(m - M) in natural units. */
    const float f = nat ? CB_LOG2E : 1.0f;

    float mm = as_float(ATTN_MASKED_BITS);
    for (int s = 0; s < n_split; s++)
        if (CB_HAS_SUM(part[2 * (p0 + (size_t)s) + 1]))
            mm = CB_MAX(part[2 * (p0 + (size_t)s)], mm);
    float lt = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float ls = part[2 * (p0 + (size_t)s) + 1];
        if (CB_HAS_SUM(ls))
            lt = mad(ls, exp2((part[2 * (p0 + (size_t)s)] - mm) * f), lt);
    }
    const int any = CB_HAS_SUM(lt);
    const float inv = any ? 1.0f / lt : 0.0f;
    const size_t hs = (size_t)heads_q * (size_t)seq_q;
    const size_t obase = ATTN_ROW(o_off, o_st, row / hs,
                                  (row % hs) / (size_t)seq_q,
                                  row % (size_t)seq_q);
    for (int c = lid; c < dv; c += nl) {
        float x = 0.0f;
        for (int s = 0; s < n_split; s++) {
            const float ls = part[2 * (p0 + (size_t)s) + 1];
            if (CB_HAS_SUM(ls))
                x = mad(part[po_off + (p0 + (size_t)s) * (size_t)dv +
                             (size_t)c],
                        exp2((part[2 * (p0 + (size_t)s)] - mm) * f), x);
        }
        ATTN_STORE(o, obase + (size_t)c, any ? x * inv : 0.0f);
    }
    if (has_lse && lid == 0) {
        const float ln = nat ? mm + log(lt) : (mm + log2(lt)) * CB_LN2;
        ((__global uint *)lse)[(size_t)lse_off + row] =
            any ? as_uint(ln) : ATTN_NEG_INF_BITS;
    }
}
