/* SPDX-License-Identifier: Apache-2.0 */
/* Positional encodings of the native backend: sinusoidal table and RoPE,
 * compiled once per instruction set. */
#include <math.h>

#include "cpu/cpu_impl.h"

void attn_cpu_posenc_sinusoidal(int seq, int d_model, int offset, float *table)
{
    /* Frequencies in double: positions reach millions and float phases
     * would lose every digit there. */
    for (int p = 0; p < seq; p++) {
        double pos = (double)offset + p;
        float *row = table + (size_t)p * (size_t)d_model;
        for (int c = 0; c < d_model; c += 2) {
            double angle = pos / pow(10000.0, (double)c / d_model);
            row[c] = (float)sin(angle);
            if (c + 1 < d_model)
                row[c + 1] = (float)cos(angle);
        }
    }
}

void attn_cpu_add_posenc(const attn_mha_desc *m, int batch, int seq, int pos0,
                         const float *x, float *out)
{
    size_t d = (size_t)m->d_model, n = (size_t)seq * d;
    const float *table;
    if (m->posenc == ATTN_POSENC_SINUSOIDAL) {
        attn_cpu_posenc_sinusoidal(seq, m->d_model, pos0, out);
        table = out;
    } else {
        table = m->pos_table + (size_t)pos0 * d;
    }
    /* The first batch item last: `out` may hold the sinusoidal table. */
    for (int b = batch - 1; b >= 0; b--)
        for (size_t i = 0; i < n; i++)
            out[(size_t)b * n + i] = x[(size_t)b * n + i] + table[i];
}

void attn_cpu_rope(float *x, size_t rows, size_t ld, int heads, int head_dim,
                   int seq, int pos0)
{
    for (int i = 0; i < head_dim / 2; i++) {
        double freq = pow(10000.0, -2.0 * i / head_dim);
        for (size_t r = 0; r < rows; r++) {
            double theta = ((double)pos0 + (double)(r % (size_t)seq)) * freq;
            float cs = (float)cos(theta), sn = (float)sin(theta);
            float *e = x + r * ld + 2 * (size_t)i;
            for (int h = 0; h < heads; h++, e += head_dim) {
                float x0 = e[0], x1 = e[1];
                e[0] = x0 * cs - x1 * sn;
                e[1] = x0 * sn + x1 * cs;
            }
        }
    }
}
