/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_validation: every bad input of every entry point.  Each bad call runs
 * on a fresh thread with a fresh context, so that both error strings start
 * empty; it must return the documented status, leave every output byte as
 * it was and leave a sentence in attn_context_last_error(ctx) and in
 * attn_last_error().
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "harness.h"
#include "vcall.h"

/* ---- attn_sdpa
 * ---------------------------------------------------------------- */

static void test_sdpa_base_valid(void)
{
    call c;
    sdpa_base(&c);
    c.d.mask.causal = 1;
    c.d.mask.window = 2;
    c.d.mask.kv_len = c.kv_len;
    c.d.mask.bias = in_bias;
    c.d.mask.bias_kind = ATTN_BIAS_FULL;
    c.d.score = ATTN_SCORE_ADDITIVE;
    c.d.additive_w = in_w;
    attn_context *ctx = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, c.lse), ATTN_OK);
    c.d.dtype = ATTN_F16;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, NULL), ATTN_OK);
    c.d.struct_size = sizeof c.d;
    c.d.causal_align = ATTN_CAUSAL_TOP_LEFT;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, NULL), ATTN_OK);
    c.d.mask.bias_kind = ATTN_BIAS_KEY;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, NULL), ATTN_OK);
    c.d.mask.bias_kind = ATTN_BIAS_BROADCAST;
    c.d.bias_shape[0] = 2;
    c.d.bias_shape[1] = 1;
    c.d.bias_shape[2] = 5;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, NULL), ATTN_OK);
    static const uint8_t keep[2 * 7] = {1, 0, 1, 1, 0, 1, 1};
    c.d.keep = keep;
    c.d.keep_shape[0] = 2;
    c.d.keep_shape[1] = c.d.keep_shape[2] = 1;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, c.dp, c.q, c.k, c.v, c.o, NULL), ATTN_OK);
    attn_context_destroy(ctx);
}

static void test_sdpa_null_pointers(void)
{
    static const char *names[] = {"NULL ctx", "NULL desc", "NULL q",
                                  "NULL k",   "NULL v",    "NULL o"};
    for (int i = 0; i < 6; i++) {
        call c;
        sdpa_base(&c);
        switch (i) {
        case 0:
            c.null_ctx = 1;
            break;
        case 1:
            c.dp = NULL;
            break;
        case 2:
            c.q = NULL;
            break;
        case 3:
            c.k = NULL;
            break;
        case 4:
            c.v = NULL;
            break;
        case 5:
            c.o = NULL;
            break;
        }
        expect_fail(&c, names[i], ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

static int *sdpa_size_field(attn_sdpa_desc *d, int f)
{
    int *fields[] = {&d->batch,  &d->heads_q,  &d->heads_kv,  &d->seq_q,
                     &d->seq_kv, &d->head_dim, &d->head_dim_v};
    return fields[f];
}

static void test_sdpa_sizes(void)
{
    static const char *names[] = {"batch",  "heads_q",  "heads_kv",  "seq_q",
                                  "seq_kv", "head_dim", "head_dim_v"};
    const int bad[] = {0, -1, INT_MIN};
    for (int f = 0; f < 7; f++)
        for (int b = 0; b < 3; b++) {
            call c;
            char what[64];
            sdpa_base(&c);
            *sdpa_size_field(&c.d, f) = bad[b];
            snprintf(what, sizeof what, "sdpa %s = %d", names[f], bad[b]);
            expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
        }
}

static void test_sdpa_heads_ratio(void)
{
    const int kv[] = {3, 8, 5};
    for (int i = 0; i < 3; i++) {
        call c;
        char what[64];
        sdpa_base(&c);
        c.d.heads_kv = kv[i];
        snprintf(what, sizeof what, "heads_q 4, heads_kv %d", kv[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

static void test_sdpa_enums(void)
{
    const int bad[] = {-1, 2, 99};
    for (int i = 0; i < 3; i++) {
        call c;
        char what[64];
        sdpa_base(&c);
        c.d.score = (attn_score)bad[i];
        c.d.additive_w = in_w;
        snprintf(what, sizeof what, "score %d", bad[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);

        /* ATTN_BF16 (2) is the last attn_dtype */
        const int bad_dtype = bad[i] == 2 ? 3 : bad[i];
        sdpa_base(&c);
        c.d.dtype = (attn_dtype)bad_dtype;
        snprintf(what, sizeof what, "dtype %d", bad_dtype);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);

        sdpa_base(&c);
        c.d.struct_size = sizeof c.d; /* covering causal_align */
        c.d.mask.causal = 1;
        c.d.causal_align = (attn_causal_align)bad[i];
        snprintf(what, sizeof what, "causal_align %d", bad[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);

        sdpa_base(&c);
        c.d.mask.bias_kind = (attn_bias_kind)(bad[i] == 2 ? 6 : bad[i]);
        c.d.mask.bias = in_bias;
        snprintf(what, sizeof what, "bias_kind %d", (int)c.d.mask.bias_kind);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

static void test_sdpa_score_and_scale(void)
{
    call c;
    sdpa_base(&c);
    c.d.score = ATTN_SCORE_ADDITIVE;
    expect_fail(&c, "ADDITIVE without additive_w", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        char what[64];
        sdpa_base(&c);
        c.d.scale = bad[i];
        snprintf(what, sizeof what, "scale %g", (double)bad[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

static void test_sdpa_masks(void)
{
    const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                    ATTN_BIAS_FULL};
    char what[64];
    call c;
    for (int i = 0; i < 3; i++) {
        sdpa_base(&c);
        c.d.mask.bias_kind = kinds[i];
        snprintf(what, sizeof what, "bias kind %d without bias", (int)kinds[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    /* a broadcast shape: each extent 1 or its dimension's size (2, 4, 5) */
    const int shapes[][3] = {{3, 1, 1}, {1, 2, 1},  {1, 1, 4},
                             {0, 4, 5}, {2, -1, 5}, {1, 1, INT_MIN}};
    for (int i = 0; i < 6; i++) {
        sdpa_base(&c);
        c.d.struct_size = sizeof c.d; /* covering bias_shape */
        c.d.mask.bias_kind = ATTN_BIAS_BROADCAST;
        c.d.mask.bias = in_bias;
        memcpy(c.d.bias_shape, shapes[i], sizeof shapes[i]);
        snprintf(what, sizeof what, "bias_shape {%d, %d, %d}", shapes[i][0],
                 shapes[i][1], shapes[i][2]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    /* keep's shape: the same rule */
    static const uint8_t keep[512] = {1};
    for (int i = 0; i < 6; i++) {
        sdpa_base(&c);
        c.d.struct_size = sizeof c.d; /* covering keep */
        c.d.keep = keep;
        memcpy(c.d.keep_shape, shapes[i], sizeof shapes[i]);
        snprintf(what, sizeof what, "keep_shape {%d, %d, %d}", shapes[i][0],
                 shapes[i][1], shapes[i][2]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    /* the first layout has no bias_shape: BROADCAST then reads {0, 0, 0} */
    sdpa_base(&c);
    c.d.mask.bias_kind = ATTN_BIAS_BROADCAST;
    c.d.mask.bias = in_bias;
    expect_fail(&c, "BROADCAST with struct_size 0", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    const int windows[] = {-1, INT_MIN};
    for (int i = 0; i < 2; i++) {
        sdpa_base(&c);
        c.d.mask.window = windows[i];
        c.d.mask.causal = 1;
        snprintf(what, sizeof what, "window %d", windows[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    const int causal[] = {7, 2, -1, INT_MIN};
    for (int i = 0; i < 4; i++) {
        sdpa_base(&c);
        c.d.mask.causal = causal[i];
        snprintf(what, sizeof what, "causal %d (0 or 1)", causal[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    const int32_t lens[] = {-1, 8, INT32_MIN, INT32_MAX};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < 2; b++) {
            sdpa_base(&c);
            c.kv_len[b] = lens[i];
            c.d.mask.kv_len = c.kv_len;
            snprintf(what, sizeof what, "kv_len[%d] = %ld (seq_kv 7)", b,
                     (long)lens[i]);
            expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
        }
}

/* "o and lse must not overlap the inputs", and every entry point validates
 * what it is given: an overlap is an invalid argument, and no input byte
 * changes. */
static void test_sdpa_overlap(void)
{
    static float q_copy[512], v_copy[512];
    memcpy(q_copy, in_q, sizeof q_copy);
    memcpy(v_copy, in_v, sizeof v_copy);
    call c;
    sdpa_base(&c);
    c.o = in_q;
    expect_fail(&c, "o == q", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    sdpa_base(&c);
    c.o = in_v + 100; /* v holds 168 floats, o 240 */
    expect_fail(&c, "o overlaps the end of v", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    sdpa_base(&c);
    c.lse = in_k + 200; /* k holds 224 floats, lse 40 */
    expect_fail(&c, "lse overlaps k", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    sdpa_base(&c);
    c.lse = (float *)c.o + 10;
    expect_fail(&c, "lse overlaps o", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    /* the descriptor's own arrays are inputs too: the message names both */
    sdpa_base(&c);
    c.d.mask.bias = (const float *)c.o + 5; /* [batch, seq_kv] = 14 floats */
    c.d.mask.bias_kind = ATTN_BIAS_KEY;
    expect_fail(&c, "o overlaps the key bias", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    CU_ASSERT(strstr(c.tls_after, "o overlaps the input mask.bias") != NULL);
    sdpa_base(&c);
    c.d.mask.bias = c.lse + 20;
    c.d.mask.bias_kind = ATTN_BIAS_KEY;
    expect_fail(&c, "lse overlaps the key bias", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    CU_ASSERT(strstr(c.tls_after, "lse overlaps the input mask.bias") != NULL);
    sdpa_base(&c);
    c.d.struct_size = sizeof c.d; /* keep is past the first layout */
    c.d.keep = (const uint8_t *)c.o + 1;
    c.d.keep_shape[0] = c.d.keep_shape[1] = c.d.keep_shape[2] = 1;
    expect_fail(&c, "o overlaps keep", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    CU_ASSERT(strstr(c.tls_after, "overlaps the input keep") != NULL);
    sdpa_base(&c);
    c.d.score = ATTN_SCORE_ADDITIVE;
    c.d.additive_w = (const float *)c.o + 30;
    expect_fail(&c, "o overlaps additive_w", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    CU_ASSERT(strstr(c.tls_after, "overlaps the input additive_w") != NULL);
    CU_ASSERT_EQUAL(memcmp(q_copy, in_q, sizeof q_copy), 0);
    CU_ASSERT_EQUAL(memcmp(v_copy, in_v, sizeof v_copy), 0);
}

static void test_sdpa_overflow(void)
{
    call c;
    sdpa_base(&c);
    c.d.batch = c.d.heads_q = c.d.heads_kv = INT_MAX;
    c.d.seq_q = c.d.seq_kv = c.d.head_dim = c.d.head_dim_v = INT_MAX;
    expect_fail(&c, "every size INT_MAX", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_ERR_OUT_OF_MEMORY);
    sdpa_base(&c);
    c.d.batch = c.d.heads_q = c.d.seq_q = c.d.head_dim = INT_MAX;
    c.d.heads_kv = 1;
    expect_fail(&c, "q elements overflow", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_ERR_OUT_OF_MEMORY);
    sdpa_base(&c);
    c.d.batch = c.d.seq_kv = c.d.head_dim_v = INT_MAX;
    c.d.heads_q = c.d.heads_kv = INT_MAX;
    expect_fail(&c, "v elements overflow", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_ERR_OUT_OF_MEMORY);
}

/* The header does not say whether a bias with kind NONE is an error; either
 * it is rejected, or it is ignored. */
static void test_sdpa_bias_without_kind(void)
{
    attn_context *ctx = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    call c;
    sdpa_base(&c);
    for (size_t i = 0; i < 512; i++)
        in_bias[i] = -INFINITY; /* would hide everything if it were used */
    c.d.mask.bias = in_bias;
    float *o1 = malloc(240 * sizeof *o1), *o2 = malloc(240 * sizeof *o2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o2);
    attn_status st = attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o1, NULL);
    CU_ASSERT(st == ATTN_OK || st == ATTN_ERR_INVALID_ARGUMENT);
    if (st == ATTN_OK) {
        c.d.mask.bias = NULL;
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &c.d, c.q, c.k, c.v, o2, NULL), ATTN_OK);
        CU_ASSERT_EQUAL(memcmp(o1, o2, 240 * sizeof *o1), 0);
    }
    for (size_t i = 0; i < 512; i++)
        in_bias[i] = 0.25f;
    free(o1);
    free(o2);
    attn_context_destroy(ctx);
}

/* ---- attn_mha_forward ------------------------------------------------------
 */

static void test_mha_base_valid(void)
{
    attn_context *ctx = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    call c;
    for (int cross = 0; cross < 2; cross++) {
        mha_base(&c);
        if (cross)
            mha_cross(&c);
        c.m.posenc = ATTN_POSENC_LEARNED;
        c.m.pos_table = in_table;
        c.m.pos_table_len = 16;
        c.m.pos_offset = 4;
        c.mask.causal = 1;
        c.mask.kv_len = c.kv_len;
        c.mask.bias = in_bias;
        c.mask.bias_kind = ATTN_BIAS_FULL;
        CU_ASSERT_EQUAL(attn_mha_forward(ctx, c.mp, c.batch, c.seq_q, c.seq_kv,
                                         c.x_q, c.x_kv, &c.mask, c.y),
                        ATTN_OK);
        CU_ASSERT_EQUAL(attn_mha_forward(ctx, c.mp, c.batch, c.seq_q, c.seq_kv,
                                         c.x_q, c.x_kv, NULL, c.y),
                        ATTN_OK);
    }
    attn_context_destroy(ctx);
}

static void test_mha_null_pointers(void)
{
    static const char *names[] = {
        "mha NULL ctx", "mha NULL desc", "mha NULL x_q", "mha NULL y",
        "mha NULL wq",  "mha NULL wk",   "mha NULL wv",  "mha NULL wo"};
    for (int i = 0; i < 8; i++) {
        call c;
        mha_base(&c);
        switch (i) {
        case 0:
            c.null_ctx = 1;
            break;
        case 1:
            c.mp = NULL;
            break;
        case 2:
            c.x_q = NULL;
            break;
        case 3:
            c.y = NULL;
            break;
        case 4:
            c.m.wq = NULL;
            break;
        case 5:
            c.m.wk = NULL;
            break;
        case 6:
            c.m.wv = NULL;
            break;
        case 7:
            c.m.wo = NULL;
            break;
        }
        expect_fail(&c, names[i], ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

static void test_mha_sizes(void)
{
    static const char *names[] = {"d_model",       "heads_q", "heads_kv",
                                  "head_dim",      "batch",   "seq_q",
                                  "seq_kv (cross)"};
    const int bad[] = {0, -1, INT_MIN};
    for (int f = 0; f < 7; f++)
        for (int b = 0; b < 3; b++) {
            call c;
            char what[64];
            mha_base(&c);
            switch (f) {
            case 0:
                c.m.d_model = bad[b];
                break;
            case 1:
                c.m.heads_q = bad[b];
                break;
            case 2:
                c.m.heads_kv = bad[b];
                break;
            case 3:
                c.m.head_dim = bad[b];
                break;
            case 4:
                c.batch = bad[b];
                break;
            case 5:
                c.seq_q = c.seq_kv = bad[b];
                break;
            case 6:
                mha_cross(&c);
                c.seq_kv = bad[b];
                break;
            }
            snprintf(what, sizeof what, "mha %s = %d", names[f], bad[b]);
            expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
        }
    call c;
    mha_base(&c);
    c.m.heads_q = 3;
    c.m.heads_kv = 2;
    expect_fail(&c, "mha heads_q 3, heads_kv 2", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    mha_base(&c);
    c.seq_kv = 4; /* x_kv NULL: self-attention needs seq_kv == seq_q */
    expect_fail(&c, "mha self-attention with seq_kv != seq_q",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.m.d_model = c.m.heads_q = c.m.head_dim = INT_MAX;
    c.m.heads_kv = 1;
    c.batch = c.seq_q = c.seq_kv = INT_MAX;
    expect_fail(&c, "mha sizes INT_MAX", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_ERR_OUT_OF_MEMORY);
    mha_base(&c);
    c.batch = c.seq_q = c.seq_kv = INT_MAX;
    c.m.d_model = INT_MAX;
    expect_fail(&c, "mha x elements overflow", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_ERR_OUT_OF_MEMORY);
}

static void test_mha_enums(void)
{
    const int bad[] = {-1, 2, 99};
    char what[64];
    call c;
    for (int i = 0; i < 3; i++) {
        mha_base(&c);
        c.m.score = (attn_score)bad[i];
        c.m.additive_w = in_w;
        snprintf(what, sizeof what, "mha score %d", bad[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);

        mha_base(&c);
        c.m.posenc = (attn_posenc)(bad[i] == 2 ? 4 : bad[i]);
        c.m.pos_table = in_table;
        snprintf(what, sizeof what, "mha posenc %d", (int)c.m.posenc);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);

        mha_base(&c);
        c.mask.bias_kind = (attn_bias_kind)(bad[i] == 2 ? 6 : bad[i]);
        c.mask.bias = in_bias;
        snprintf(what, sizeof what, "mha bias_kind %d", (int)c.mask.bias_kind);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    mha_base(&c);
    c.m.score = ATTN_SCORE_ADDITIVE;
    expect_fail(&c, "mha ADDITIVE without additive_w",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
}

static void test_mha_positions(void)
{
    char what[96];
    call c;
    mha_base(&c);
    c.m.posenc = ATTN_POSENC_LEARNED;
    expect_fail(&c, "LEARNED without pos_table", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    const attn_posenc kinds[] = {ATTN_POSENC_SINUSOIDAL, ATTN_POSENC_LEARNED,
                                 ATTN_POSENC_ROPE};
    for (int i = 0; i < 3; i++) {
        mha_base(&c);
        c.m.posenc = kinds[i];
        c.m.pos_table = in_table;
        c.m.pos_table_len = 16;
        c.m.pos_offset = -1;
        snprintf(what, sizeof what, "posenc %d with pos_offset -1",
                 (int)kinds[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    /* Self-attention uses positions pos_offset .. pos_offset + seq_q - 1. */
    mha_base(&c);
    c.m.posenc = ATTN_POSENC_LEARNED;
    c.m.pos_table = in_table;
    c.m.pos_offset = 4;
    c.m.pos_table_len = 4 + 3 - 1;
    expect_fail(&c, "LEARNED table one row short (self)",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    c.m.pos_offset = 0;
    c.m.pos_table_len = 2;
    expect_fail(&c, "LEARNED table of 2 rows for seq 3",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    /* Cross-attention: queries at pos_offset + i, keys at 0 .. seq_kv - 1. */
    mha_base(&c);
    mha_cross(&c);
    c.m.posenc = ATTN_POSENC_LEARNED;
    c.m.pos_table = in_table;
    c.m.pos_offset = 0;
    c.m.pos_table_len = 5 - 1;
    expect_fail(&c, "LEARNED table one row short for the keys (cross)",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    c.m.pos_offset = 10;
    c.m.pos_table_len = 12;
    expect_fail(&c, "LEARNED table one row short for the queries (cross)",
                ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
}

static void test_mha_masks(void)
{
    const attn_bias_kind kinds[] = {ATTN_BIAS_SHARED, ATTN_BIAS_PER_HEAD,
                                    ATTN_BIAS_FULL};
    char what[64];
    call c;
    for (int i = 0; i < 3; i++) {
        mha_base(&c);
        c.mask.bias_kind = kinds[i];
        snprintf(what, sizeof what, "mha bias kind %d without bias",
                 (int)kinds[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    /* a mask alone has no bias_shape */
    mha_base(&c);
    c.mask.bias_kind = ATTN_BIAS_BROADCAST;
    c.mask.bias = in_bias;
    expect_fail(&c, "mha BROADCAST bias", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.mask.window = -1;
    expect_fail(&c, "mha window -1", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.mask.causal = 7;
    expect_fail(&c, "mha causal 7", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    const int32_t lens[] = {-1, 4};
    for (int i = 0; i < 2; i++) {
        mha_base(&c);
        c.kv_len[1] = lens[i];
        c.mask.kv_len = c.kv_len;
        snprintf(what, sizeof what, "mha kv_len %ld (seq_kv 3)", (long)lens[i]);
        expect_fail(&c, what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    mha_base(&c);
    mha_cross(&c);
    c.kv_len[0] = 6;
    c.mask.kv_len = c.kv_len;
    expect_fail(&c, "mha cross kv_len 6 (seq_kv 5)", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
}

/* attn_mha_forward does not work in place: y (48 floats here) may overlap
 * no array the layer reads; right next to one is fine. */
static void test_mha_in_place(void)
{
    float *y = OUT_Y;
    call c;
    mha_base(&c);
    c.x_q = y;
    expect_fail(&c, "mha y == x_q", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    mha_cross(&c);
    c.x_kv = y + 40;
    expect_fail(&c, "mha y overlaps x_kv", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.m.wq = y - 60; /* wq: 64 floats, its last 4 in y */
    expect_fail(&c, "mha y overlaps wq", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.m.wo = y + 8;
    expect_fail(&c, "mha y overlaps wo", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.m.bo = y + 47;
    expect_fail(&c, "mha y overlaps bo", ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    mha_base(&c);
    c.mask.bias = y;
    c.mask.bias_kind = ATTN_BIAS_SHARED;
    expect_fail(&c, "mha y overlaps mask.bias", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    mha_base(&c);
    c.m.posenc = ATTN_POSENC_LEARNED;
    c.m.pos_table = y + 20;
    expect_fail(&c, "mha y overlaps pos_table", ATTN_ERR_INVALID_ARGUMENT,
                ATTN_OK);
    CU_ASSERT(strstr(c.tls_after, "in place") != NULL);

    /* Adjacent is not overlapping: bo right after y. */
    attn_context *ctx = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    static float mem[8 + 48 + 8];
    for (size_t i = 0; i < 8; i++)
        mem[i] = mem[56 + i] = 0.125f;
    mha_base(&c);
    c.m.bo = mem + 56;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, c.mp, c.batch, c.seq_q, c.seq_kv,
                                     in_xq, NULL, NULL, mem + 8),
                    ATTN_OK);

    /* A LEARNED table is read only as far as the positions go: with
     * cross-attention the queries use rows pos_offset .. pos_offset+2 and
     * the keys rows 0 .. 4, five rows in all, so y may start at row 5. */
    static float tab[5 * 8 + 48];
    for (size_t i = 0; i < 5 * 8; i++)
        tab[i] = 0.01f * (float)i;
    mha_base(&c);
    mha_cross(&c);
    c.m.posenc = ATTN_POSENC_LEARNED;
    c.m.pos_table = tab;
    c.m.pos_offset = 1;
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, c.mp, c.batch, c.seq_q, c.seq_kv,
                                     in_xq, in_xkv, NULL, tab + 5 * 8),
                    ATTN_OK);
    c.m.pos_table = tab + 1; /* now its fifth row reaches into y */
    CU_ASSERT_EQUAL(attn_mha_forward(ctx, c.mp, c.batch, c.seq_q, c.seq_kv,
                                     in_xq, in_xkv, NULL, tab + 5 * 8),
                    ATTN_ERR_INVALID_ARGUMENT);
    attn_context_destroy(ctx);
}

/* ---- attn_posenc_sinusoidal
 * -------------------------------------------------- */

static void test_posenc_args(void)
{
    struct {
        const char *what;
        int seq, d_model, offset, null_table;
    } bad[] = {
        {"posenc NULL table", 4, 8, 0, 1},
        {"posenc seq 0", 0, 8, 0, 0},
        {"posenc seq -1", -1, 8, 0, 0},
        {"posenc d_model 0", 4, 0, 0, 0},
        {"posenc d_model -1", 4, -1, 0, 0},
        {"posenc offset -1", 4, 8, -1, 0},
        {"posenc offset INT_MIN", 4, 8, INT_MIN, 0},
        {"posenc seq INT_MIN", INT_MIN, 8, 0, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call c;
        memset(&c, 0, sizeof c);
        c.kind = CALL_POSENC;
        c.seq = bad[i].seq;
        c.d_model = bad[i].d_model;
        c.offset = bad[i].offset;
        c.table = bad[i].null_table ? NULL : OUT_TABLE;
        expect_fail(&c, bad[i].what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
    pool_reset();
    CU_ASSERT_EQUAL(attn_posenc_sinusoidal(4, 8, 3, OUT_TABLE), ATTN_OK);
    CU_ASSERT_FALSE(pool_untouched());
}

/* ---- attn_context_create
 * --------------------------------------------------------- */

static void test_bad_options(void)
{
    struct {
        const char *what;
        int threads, queues, log_level, path, null_out;
    } bad[] = {
        {"options.threads -1", -1, 0, 0, 0, 0},
        {"options.threads INT_MIN", INT_MIN, 0, 0, 0, 0},
        {"options.queues -1", 0, -1, 0, 0, 0},
        {"options.queues 9 (native too)", 0, 9, 0, 0, 0},
        {"options.log_level -1", 0, 0, -1, 0, 0},
        {"options.log_level 6", 0, 0, 6, 0, 0},
        {"options.path -1", 0, 0, 0, -1, 0},
        {"options.path 3", 0, 0, 0, 3, 0},
        {"create with out NULL", 0, 0, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call c;
        memset(&c, 0, sizeof c);
        c.kind = CALL_CREATE;
        attn_options_init(&c.opt);
        c.opt.device = "native";
        c.opt.threads = bad[i].threads;
        c.opt.queues = bad[i].queues;
        c.opt.log_level = bad[i].log_level;
        c.opt.path = (attn_path)bad[i].path;
        c.null_out = bad[i].null_out;
        expect_fail(&c, bad[i].what, ATTN_ERR_INVALID_ARGUMENT, ATTN_OK);
    }
}

int main(void)
{
    static const harness_test tests[] = {
        {"sdpa base calls are valid", test_sdpa_base_valid},
        {"sdpa NULL pointers", test_sdpa_null_pointers},
        {"sdpa non-positive sizes", test_sdpa_sizes},
        {"sdpa heads_q % heads_kv", test_sdpa_heads_ratio},
        {"sdpa unknown enums", test_sdpa_enums},
        {"sdpa score and scale", test_sdpa_score_and_scale},
        {"sdpa masks", test_sdpa_masks},
        {"sdpa outputs overlapping inputs", test_sdpa_overlap},
        {"sdpa size overflow", test_sdpa_overflow},
        {"sdpa bias with kind NONE", test_sdpa_bias_without_kind},
        {"mha base calls are valid", test_mha_base_valid},
        {"mha NULL pointers", test_mha_null_pointers},
        {"mha sizes", test_mha_sizes},
        {"mha in place", test_mha_in_place},
        {"mha enums", test_mha_enums},
        {"mha positions", test_mha_positions},
        {"mha masks", test_mha_masks},
        {"posenc_sinusoidal arguments", test_posenc_args},
        {"context options", test_bad_options},
        {NULL, NULL},
    };
    return harness_main("validation", vcall_init_inputs, NULL, tests);
}
