/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backward pass of a forward the harness just ran (fuzz_attn.c): a
 * random dO, dbias when the call has a bias and d_additive_w for the
 * additive score, each asked or not; then, half the time, the same call
 * with one of its gradient fields spoiled (a NULL tensor, an output over
 * an input, dbias without a bias, d_additive_w without the additive
 * score), which must be refused with every output untouched.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#define BWD_CANARY 0x5a

static unsigned char *canaried(size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    REQUIRE(p, "out of memory (%zu bytes)", n);
    memset(p, BWD_CANARY, n ? n : 1);
    return p;
}

static int all_canary(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != BWD_CANARY)
            return 0;
    return 1;
}

static int all_finite(const attn_sdpa_desc *d, const void *x, size_t bytes)
{
    const size_t n = bytes / (d->dtype == ATTN_F32 ? 4 : 2);
    if (d->dtype != ATTN_F32) {
        /* all exponent bits set: infinite or NaN */
        const uint16_t *h = x, e = d->dtype == ATTN_F16 ? 0x7c00 : 0x7f80;
        for (size_t i = 0; i < n; i++)
            if ((h[i] & e) == e)
                return 0;
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(((const float *)x)[i]))
            return 0;
    return 1;
}

void fuzz_backward(gen_src *g, attn_context *ctx, const attn_sdpa_desc *d,
                   const fuzz_bwd_in *in)
{
    const int f16 = d->dtype == ATTN_F16, bf16 = d->dtype == ATTN_BF16;
    unsigned char *d_o = canaried(in->o_bytes), *dq = canaried(in->q_bytes),
                  *dk = canaried(in->k_bytes), *dv = canaried(in->v_bytes);
    unsigned char *dbias = NULL, *dw = NULL;
    attn_sdpa_grad gr = ATTN_SDPA_GRAD_INIT;
    attn_status s;

    /* dO: small values (half- and bfloat16-exact), or zero */
    for (size_t i = 0; i < in->o_bytes / (f16 || bf16 ? 2 : 4); i++) {
        const int x = gen_int(g, -8, 8);
        if (bf16) {
            const float f = (float)x * 0.125f;
            uint32_t u;
            memcpy(&u, &f, sizeof u);
            ((uint16_t *)d_o)[i] = (uint16_t)(u >> 16);
        } else if (f16)
            ((uint16_t *)d_o)[i] =
                x == 0 ? 0
                       : (uint16_t)((x < 0 ? 0xb000 : 0x3000) | (abs(x) << 6));
        else
            ((float *)d_o)[i] = (float)x * 0.125f;
    }
    if (d->mask.bias_kind != ATTN_BIAS_NONE && in->bias_bytes &&
        gen_chance(g, 70))
        dbias = canaried(in->bias_bytes);
    if (d->score == ATTN_SCORE_ADDITIVE && in->addw_bytes && gen_chance(g, 70))
        dw = canaried(in->addw_bytes);
    gr.q = in->q, gr.k = in->k, gr.v = in->v, gr.o = in->o, gr.lse = in->lse;
    gr.d_o = d_o, gr.dq = dq, gr.dk = dk, gr.dv = dv;
    gr.dbias = (float *)dbias;
    gr.d_additive_w = (float *)dw;
    s = attn_sdpa_backward(ctx, d, &gr);
    REQUIRE_STATUS(s, "attn_sdpa_backward");
    REQUIRE(s == ATTN_OK || (in->on_device && s == ATTN_ERR_UNSUPPORTED),
            "attn_sdpa_backward refused a valid call: %s (%s)",
            attn_status_string(s), attn_context_last_error(ctx));
    if (s != ATTN_OK) {
        /* a device without fallback declining (e.g. the additive score,
         * or dbias, which its backward variants do not compute) */
        REQUIRE(all_canary(dq, in->q_bytes) && all_canary(dk, in->k_bytes) &&
                    all_canary(dv, in->v_bytes) &&
                    (!dbias || all_canary(dbias, in->bias_bytes)) &&
                    (!dw || all_canary(dw, in->addw_bytes)),
                "attn_sdpa_backward wrote an output on error");
        REQUIRE(strlen(attn_context_last_error(ctx)) > 0,
                "attn_sdpa_backward declined without a message");
        free(d_o), free(dq), free(dk), free(dv), free(dbias), free(dw);
        return;
    }
    /* every output written (a canary pattern left whole means not) */
    REQUIRE(!all_canary(dq, in->q_bytes) && !all_canary(dk, in->k_bytes) &&
                !all_canary(dv, in->v_bytes) &&
                (!dbias || !all_canary(dbias, in->bias_bytes)) &&
                (!dw || !all_canary(dw, in->addw_bytes)),
            "attn_sdpa_backward left an output unwritten");
    if (in->finite) {
        REQUIRE(all_finite(d, dq, in->q_bytes) &&
                    all_finite(d, dk, in->k_bytes) &&
                    all_finite(d, dv, in->v_bytes),
                "attn_sdpa_backward: a non-finite gradient from finite "
                "inputs");
        REQUIRE(!dbias || all_finite(&(attn_sdpa_desc){.dtype = ATTN_F32},
                                     dbias, in->bias_bytes),
                "attn_sdpa_backward: a non-finite dbias from finite inputs");
        REQUIRE(!dw || all_finite(&(attn_sdpa_desc){.dtype = ATTN_F32}, dw,
                                  in->addw_bytes),
                "attn_sdpa_backward: a non-finite d_additive_w");
    }
    if (gen_chance(g, 50)) {
        /* a spoiled call: refused, outputs untouched */
        attn_sdpa_grad bad = gr;
        unsigned char *fresh = canaried(in->q_bytes);
        float stray[4];
        int pick = gen_int(g, 0, 4);
        bad.dq = fresh;
        switch (pick) {
        case 0:
            bad.lse = NULL;
            break;
        case 1:
            bad.dk = (void *)in->k; /* over an input */
            break;
        case 2:
            bad.dq = dk; /* over another output */
            break;
        case 3:
            if (d->mask.bias_kind == ATTN_BIAS_NONE)
                bad.dbias = stray;
            else
                bad.d_o = NULL;
            break;
        default:
            if (d->score != ATTN_SCORE_ADDITIVE)
                bad.d_additive_w = stray;
            else
                bad.q = NULL;
            break;
        }
        s = attn_sdpa_backward(ctx, d, &bad);
        REQUIRE(s == ATTN_ERR_INVALID_ARGUMENT,
                "attn_sdpa_backward accepted a spoiled call (%d): %s", pick,
                attn_status_string(s));
        REQUIRE(pick == 2 || all_canary(fresh, in->q_bytes),
                "attn_sdpa_backward wrote dq on error");
        free(fresh);
    }
    free(d_o), free(dq), free(dk), free(dv), free(dbias), free(dw);
}
