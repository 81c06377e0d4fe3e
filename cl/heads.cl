/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Head split and merge of the multi-head layer, with the projection biases
 * and the RoPE rotation folded into the split.  Standalone OpenCL C 1.2.
 *
 * Layouts: projections are token-major, row t = b * seq + s of ld floats
 * with head h in columns h * head_dim .. h * head_dim + head_dim - 1 (from
 * a column offset); heads are [batch, heads, seq, head_dim], contiguous.
 * Offsets are in elements.
 *
 * Work: each kernel is a 2-D grid-stride loop, dimension 0 over the
 * columns of a row (contiguous in memory), dimension 1 over the rows; any
 * 2-D launch is right, work-groups of (MHA_WG, 1) are the intended ones.
 */

#ifndef MHA_WG
#define MHA_WG 64
#endif

/* dst [batch, heads, seq, head_dim] = the head columns of src (+ bias
 * [heads * head_dim] when has_bias), each pair (2i, 2i + 1) of every head
 * rotated by cs[s * (head_dim / 2) + i] = (cos, sin) when rope; with an odd
 * head_dim the last element is not rotated.  Dimension 0 walks the element
 * pairs of a row (heads * ceil(head_dim / 2)), dimension 1 the rows. */
__kernel __attribute__((work_group_size_hint(MHA_WG, 1, 1))) void
attn_heads_split(__global const float *src, ulong src_off, int ld,
                 __global float *dst, ulong dst_off, __global const float *bias,
                 ulong bias_off, int has_bias, __global const float2 *cs,
                 int rope, int rows, int heads, int seq, int head_dim)
{
    const uint hd = (uint)head_dim, pairs = (hd + 1) / 2;
    const uint per_row = (uint)heads * pairs;
    for (uint t = get_global_id(1); t < (uint)rows; t += get_global_size(1)) {
        const uint b = t / (uint)seq, s = t - b * (uint)seq;
        __global const float *in = src + src_off + (size_t)t * (size_t)ld;
        for (uint e = get_global_id(0); e < per_row; e += get_global_size(0)) {
            const uint h = e / pairs, c = 2 * (e - h * pairs);
            const uint col = h * hd + c;
            const int two = c + 1 < hd;
            __global float *out =
                dst + dst_off +
                (((size_t)b * (size_t)heads + h) * (size_t)seq + s) * hd + c;
            float x0 = in[col], x1 = two ? in[col + 1] : 0.0f;
            if (has_bias) {
                x0 += bias[bias_off + col];
                if (two)
                    x1 += bias[bias_off + col + 1];
            }
            if (rope && two) {
                const float2 r = cs[(size_t)s * (hd / 2) + c / 2];
                const float y0 = x0 * r.x - x1 * r.y;
                x1 = x0 * r.y + x1 * r.x;
                x0 = y0;
            }
            out[0] = x0;
            if (two)
                out[1] = x1;
        }
    }
}

/* dst [rows, heads * head_dim] (token-major, row t = b * seq + s) = src
 * [batch, heads, seq, head_dim].  Dimension 0 walks the columns,
 * dimension 1 the rows. */
__kernel __attribute__((work_group_size_hint(MHA_WG, 1, 1))) void
attn_heads_merge(__global const float *src, ulong src_off, __global float *dst,
                 ulong dst_off, int rows, int heads, int seq, int head_dim)
{
    const uint hd = (uint)head_dim, width = (uint)heads * hd;
    for (uint t = get_global_id(1); t < (uint)rows; t += get_global_size(1)) {
        const uint b = t / (uint)seq, s = t - b * (uint)seq;
        __global float *out = dst + dst_off + (size_t)t * width;
        __global const float *in =
            src + src_off + ((size_t)b * (size_t)heads * (size_t)seq + s) * hd;
        for (uint col = get_global_id(0); col < width;
             col += get_global_size(0)) {
            const uint h = col / hd, d = col - h * hd;
            out[col] = in[(size_t)h * (size_t)seq * hd + d];
        }
    }
}

/* y [rows, cols] (at y_off) += bias [cols] (at bias_off) on every row.
 * Dimension 0 walks the columns, dimension 1 the rows. */
__kernel __attribute__((work_group_size_hint(MHA_WG, 1, 1))) void
attn_bias_add(__global float *y, ulong y_off, __global const float *bias,
              ulong bias_off, int rows, int cols)
{
    for (uint r = get_global_id(1); r < (uint)rows; r += get_global_size(1)) {
        __global float *row = y + y_off + (size_t)r * (size_t)cols;
        for (uint c = get_global_id(0); c < (uint)cols; c += get_global_size(0))
            row[c] += bias[bias_off + c];
    }
}
