/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Positional encodings of the multi-head layer: the sinusoidal or learned
 * table added to x before the projections, and the (cos, sin) table of the
 * RoPE rotation that the head split (heads.cl) applies.  Standalone OpenCL
 * C 1.2; needs no fp64.
 *
 * Angles.  A position p reaches INT_MAX and a float phase p * w would keep
 * no digit of the angle there, so the host hands each frequency w in turns
 * (w / 2 pi) as a float pair hi + lo (hi = (float)t, lo = (float)(t - hi),
 * from double), and the phase is reduced modulo one turn exactly: p is split
 * into parts of at most 19 bits, each product part * hi is split into its
 * rounded value and its exact error (fma), every piece is reduced to
 * [-1/2, 1/2] (x - rint(x) is exact) and the pieces are summed.  The angle
 * handed to sin/cos is then within a few 2^-24 turns of the exact one for
 * every position, as the double arithmetic of the native backend gives.
 *
 * Work: each kernel is a 2-D grid-stride loop, dimension 0 over the
 * columns of a row (contiguous in memory), dimension 1 over the rows; any
 * 2-D launch is right, work-groups of (MHA_WG, 1) are the intended ones.
 */

#ifndef MHA_WG
#define MHA_WG 64
#endif

/* The error terms below must stay exact: no a * b + c contraction. */
#pragma OPENCL FP_CONTRACT OFF

/* (p * (hi + lo)) mod 1, in [-1/2, 1/2]. */
float attn_mha_turns(uint p, float2 f)
{
    const float ph = (float)(p & 0xfffff000u), pl = (float)(p & 0xfffu);
    const float a = ph * f.x, ea = fma(ph, f.x, -a);
    const float b = pl * f.x, eb = fma(pl, f.x, -b);
    const float c = (float)p * f.y;
    float t = (a - rint(a)) + (b - rint(b));
    t = (t - rint(t)) + ((ea - rint(ea)) + (eb - rint(eb)));
    t = (t - rint(t)) + (c - rint(c));
    return t - rint(t);
}

/* sin and cos of the angle p * w, w given in turns as hi + lo. */
float2 attn_mha_sincos(uint p, float2 f)
{
    const float angle = attn_mha_turns(p, f) * 6.28318530717958647692f;
    return (float2)(sin(angle), cos(angle));
}

/* x [rows, d_model] (at element offset x_off) += the encoding of the
 * position of each row: row r is item r / seq at position pos0 + r % seq.
 * learned: table (at element offset table_off) holds seq rows of d_model
 * values, the rows of positions pos0 .. pos0 + seq - 1; otherwise the
 * sinusoidal table of DESIGN.md: columns (2i, 2i + 1) get (sin, cos) of
 * p / 10000^(2i / d_model), freq[i] holding that frequency in turns; with an
 * odd d_model the last even column gets the sine only.  Dimension 0 walks
 * the column pairs, dimension 1 the rows. */
__kernel __attribute__((work_group_size_hint(MHA_WG, 1, 1))) void
attn_posenc_add(__global float *x, ulong x_off, int rows, int d_model, int seq,
                int pos0, int learned, __global const float *table,
                ulong table_off, __global const float2 *freq)
{
    const uint d = (uint)d_model, pairs = (d + 1) / 2;
    for (uint r = get_global_id(1); r < (uint)rows; r += get_global_size(1)) {
        const uint s = r % (uint)seq;
        __global float *row = x + x_off + (size_t)r * d;
        for (uint i = get_global_id(0); i < pairs; i += get_global_size(0)) {
            const uint c = 2 * i;
            const int two = c + 1 < d;
            float2 add;
            if (learned) {
                __global const float *t = table + table_off + (size_t)s * d;
                add = (float2)(t[c], two ? t[c + 1] : 0.0f);
            } else {
                add = attn_mha_sincos((uint)pos0 + s, freq[i]);
            }
            row[c] += add.x;
            if (two)
                row[c + 1] += add.y;
        }
    }
}

/* cs [seq, head_dim / 2] = (cos, sin) of theta = (pos0 + s) * w_i for row
 * position s and pair i, w_i = 10000^(-2i / head_dim) held in turns by
 * freq[i] (RoPE; an odd head_dim leaves its last element unrotated, so it
 * has no entry).  Dimension 0 walks the pairs, dimension 1 the positions. */
__kernel __attribute__((work_group_size_hint(MHA_WG, 1, 1))) void
attn_rope_table(__global float2 *cs, int seq, int pos0, int half_dim,
                __global const float2 *freq)
{
    for (uint s = get_global_id(1); s < (uint)seq; s += get_global_size(1))
        for (uint i = get_global_id(0); i < (uint)half_dim;
             i += get_global_size(0)) {
            const float2 sc = attn_mha_sincos((uint)pos0 + s, freq[i]);
            cs[(size_t)s * (uint)half_dim + i] = (float2)(sc.y, sc.x);
        }
}
