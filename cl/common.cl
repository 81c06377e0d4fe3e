/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every attention kernel shares: the storage type of the tensors and
 * the bit patterns of hidden and -inf scores.  Prepended to each variant's
 * sources when its program is built (src/opencl/progcache.c), once.
 * OpenCL C 1.2.
 */

#ifndef ATTN_F16
#define ATTN_F16 0
#endif
#ifndef ATTN_BF16
#define ATTN_BF16 0
#endif
/* F16 stores IEEE halves; vload_half / vstore_half need no cl_khr_fp16.
 * BF16 stores bfloat16 as ushort, a float's top 16 bits: a load shifts
 * them back, a store rounds to nearest even in integers (NaN kept a quiet
 * NaN, a float subnormal to a zero of its sign: the native backend's
 * rounding), so no extension is needed either. */
/* ATTN_LOAD4: four elements from element index i as a float4 (vloadn
 * needs only the element's alignment); ATTN_LOAD16 sixteen. */
#if ATTN_F16
#define ATTN_T half
#define ATTN_LOAD(p, i) vload_half((i), (p))
#define ATTN_LOAD4(p, i) vload_half4(0, (p) + (i))
#define ATTN_LOAD16(p, i) vload_half16(0, (p) + (i))
#define ATTN_STORE(p, i, x) vstore_half_rte((x), (i), (p))
#elif ATTN_BF16
#define ATTN_T ushort
#define ATTN_LOAD(p, i) as_float((uint)(p)[i] << 16)
#define ATTN_LOAD4(p, i) as_float4(convert_uint4(vload4(0, (p) + (i))) << 16)
#define ATTN_LOAD16(p, i)                                                      \
    as_float16(convert_uint16(vload16(0, (p) + (i))) << 16)
#define ATTN_STORE(p, i, x) ((p)[i] = attn_bf16_bits(x))
static ushort attn_bf16_bits(float f)
{
    const uint x = as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (ushort)((x >> 16) | 0x40u);
    if ((x & 0x7f800000u) == 0u)
        return (ushort)((x >> 16) & 0x8000u);
    return (ushort)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
#else
#define ATTN_T float
#define ATTN_LOAD(p, i) ((p)[i])
#define ATTN_LOAD4(p, i) vload4(0, (p) + (i))
#define ATTN_LOAD16(p, i) vload16(0, (p) + (i))
#define ATTN_STORE(p, i, x) ((p)[i] = (x))
#endif
/* The element offset of row (b, h, r) of a tensor at element offset off
 * whose strides over batch, head and row are st.x, st.y, st.z (ulong4):
 * attn_sdpa_desc's q_strides ..., or the contiguous layout's. */
#define ATTN_ROW(off, st, b, h, r)                                            \
    ((size_t)(off) + (size_t)(b) * (size_t)(st).x +                         \
     (size_t)(h) * (size_t)(st).y + (size_t)(r) * (size_t)(st).z)
/* Bit patterns, so that finite-math options cannot fold the tests. */
#define ATTN_MASKED_BITS 0xff7fffffu  /* -FLT_MAX: a hidden score */
#define ATTN_NEG_INF_BITS 0xff800000u /* -INFINITY */
