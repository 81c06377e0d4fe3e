/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rounding to TF32, the input format of float matrix units: the sign, the
 * 8 exponent bits and the top 10 mantissa bits of a float.  The native
 * attention core uses it to compute as a TF32 matrix unit would
 * (attn_cpu_sdpa, emulate); tests/test_tf32.c holds it to round to
 * nearest, ties to even.
 */
#ifndef ATTN_CPU_TF32_H
#define ATTN_CPU_TF32_H

#include <stdint.h>
#include <string.h>

/* x rounded to TF32 to nearest, ties to even: relative error at most
 * 2^-11.  NaN and infinities stay; a value that rounds past the largest
 * TF32 becomes infinite, as in any rounding to nearest. */
static inline float attn_tf32_round(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    if ((b & 0x7f800000u) != 0x7f800000u)
        b = (b + 0xfffu + ((b >> 13) & 1u)) & 0xffffe000u;
    memcpy(&x, &b, sizeof x);
    return x;
}

#endif
