/* SPDX-License-Identifier: Apache-2.0 */
/* The smallest complete use of libattn: one causal attention call. */
#include <stdio.h>
#include <attn/attn.h>

int main(void)
{
    enum { B = 1, H = 2, N = 4, D = 8 };
    static float q[B * H * N * D], k[B * H * N * D], v[B * H * N * D],
        o[B * H * N * D];
    for (int i = 0; i < B * H * N * D; i++)
        q[i] = k[i] = v[i] = (float)(i % 7) / 7.0f;

    attn_context *ctx;
    if (attn_context_create(NULL, &ctx) != ATTN_OK) {
        fprintf(stderr, "libattn: %s\n", attn_last_error());
        return 1;
    }
    attn_sdpa_desc d = {.batch = B,
                        .heads_q = H,
                        .heads_kv = H,
                        .seq_q = N,
                        .seq_kv = N,
                        .head_dim = D,
                        .head_dim_v = D};
    d.mask.causal = 1;
    attn_status s = attn_sdpa(ctx, &d, q, k, v, o, NULL);
    if (s != ATTN_OK)
        fprintf(stderr, "libattn: %s\n", attn_context_last_error(ctx));
    else
        printf("libattn %s: o[0] = %f\n", attn_version(), o[0]);
    attn_context_destroy(ctx);
    return s == ATTN_OK ? 0 : 1;
}
