/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Row softmax of the three-kernel path, in place on the score block of
 * score.cl ([n_bh][n_i][seq_kv] floats, hidden entries ATTN_MASKED), and the
 * log-sum-exp of each row.  OpenCL C 1.2 after common.cl.
 *
 * One work-group of SM_WG items (a power of two) per row: the maximum over
 * the visible entries, then e = exp(s - max) written back with its sum,
 * then e / sum.  A hidden entry becomes -0 (SM_HIDDEN_BITS), which
 * aggregate.cl skips, while a visible one whose weight underflows is +0,
 * which it multiplies (NaN in that key's V reaches the row, attn.h).  A
 * row with no visible entry gets lse -INFINITY, written as a bit pattern
 * so that finite-math options cannot fold it.  A NaN or +INFINITY score
 * makes e, the sum and so the whole row and its lse NaN.
 */

#define SM_HIDDEN_BITS 0x80000000u /* -0.0f: P of a hidden key */


#ifndef SM_WG
#define SM_WG 64
#endif

#if (SM_WG & (SM_WG - 1)) != 0
#error "SM_WG must be a power of two"
#endif

/* s: the score block; lse: [batch * heads_q * seq_q] floats at element
 * offset lse_off when has_lse.  Launch: global (SM_WG * n_i, n_bh), local
 * (SM_WG, 1). */
__kernel void attn_softmax(__global float *s, __global float *lse,
                           ulong lse_off, int has_lse, int seq_q, int seq_kv,
                           int bh0, int i0, int n_i)
{
    __local float red[SM_WG];

    const int lid = (int)get_local_id(0);
    const int r = (int)get_group_id(0), gbh = (int)get_group_id(1);
    __global float *row =
        s + ((size_t)gbh * (size_t)n_i + (size_t)r) * (size_t)seq_kv;

    /* Visible entries are >= -FLT_MAX, so the maximum stays ATTN_MASKED
     * exactly when nothing is visible. */
    float m = as_float(ATTN_MASKED_BITS);
    for (int j = lid; j < seq_kv; j += SM_WG) {
        float x = row[j];
        if (as_uint(x) != ATTN_MASKED_BITS)
            m = fmax(m, x);
    }
    red[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int st = SM_WG / 2; st > 0; st >>= 1) {
        if (lid < st)
            red[lid] = fmax(red[lid], red[lid + st]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);

    float sum = 0.0f;
    for (int j = lid; j < seq_kv; j += SM_WG) {
        float x = row[j];
        if (as_uint(x) != ATTN_MASKED_BITS) {
            float e = exp(x - m);
            row[j] = e;
            sum += e;
        } else {
            ((__global uint *)row)[j] = SM_HIDDEN_BITS;
        }
    }
    red[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int st = SM_WG / 2; st > 0; st >>= 1) {
        if (lid < st)
            red[lid] += red[lid + st];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    sum = red[0];

    /* sum >= 1 when anything is visible (the maximum contributes exp(0)),
     * NaN after a NaN or +INFINITY score, 0 when nothing is visible. */
    const int any = as_uint(sum) != 0u;
    if (any) {
        const float inv = 1.0f / sum;
        for (int j = lid; j < seq_kv; j += SM_WG) {
            const uint x = ((__global uint *)row)[j];
            if (x != SM_HIDDEN_BITS)
                row[j] = as_float(x) * inv;
        }
    }
    /* The choice is made on bits: a float select may carry no-inf flags. */
    if (lid == 0 && has_lse)
        ((__global uint *)lse)[(size_t)lse_off +
                               ((size_t)(bh0 + gbh) * (size_t)seq_q +
                                (size_t)(i0 + r))] =
            any ? as_uint(m + log(sum)) : ATTN_NEG_INF_BITS;
}
