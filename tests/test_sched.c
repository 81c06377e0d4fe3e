/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler's split of a call into (batch, kv head) groups: every unit
 * once, in order, slices that match the tensors, sub-descriptors that
 * validate and point at the right part of the bias and weights, work in
 * proportion to the slot weights.
 */
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "core/backend.h"
#include "harness.h"
#include "sched/sched.h"

static attn_sdpa_desc desc(int b, int hq, int hkv, int sq, int skv, int d,
                           int dv)
{
    attn_sdpa_desc x;
    memset(&x, 0, sizeof x);
    x.batch = b;
    x.heads_q = hq;
    x.heads_kv = hkv;
    x.seq_q = sq;
    x.seq_kv = skv;
    x.head_dim = d;
    x.head_dim_v = dv;
    return x;
}

/* Splits d over the weights and checks the groups; returns the units each
 * slot got through units_per_slot. */
static void check_split(const attn_sdpa_desc *d, int n_slots, const double *w,
                        size_t *units_per_slot)
{
    size_t max = attn_sched_max_groups(d, n_slots), n = 0;
    attn_group *g = calloc(max, sizeof *g);
    attn_err err = {{0}};
    size_t r = (size_t)(d->heads_q / d->heads_kv), unit = 0;
    size_t sq = (size_t)d->seq_q, skv = (size_t)d->seq_kv;
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL_FATAL(attn_sched_split(d, n_slots, w, g, max, &n, &err),
                          ATTN_OK);
    memset(units_per_slot, 0, sizeof(size_t) * (size_t)n_slots);
    for (size_t i = 0; i < n; i++) {
        attn_sdpa_bytes by;
        size_t units = (size_t)g[i].d.batch * (size_t)g[i].d.heads_kv;
        size_t b0 = unit / (size_t)d->heads_kv;
        size_t h0 = unit % (size_t)d->heads_kv * r;
        HARNESS_EXPECT(attn_validate_sdpa_desc(&g[i].d, &by, &err) == ATTN_OK,
                       "sub-descriptor validates");
        HARNESS_EXPECT(g[i].q_off == unit * r * sq * (size_t)d->head_dim,
                       "q slice starts where the last ended");
        HARNESS_EXPECT(g[i].k_off == unit * skv * (size_t)d->head_dim,
                       "k slice");
        HARNESS_EXPECT(g[i].v_off == unit * skv * (size_t)d->head_dim_v,
                       "v slice");
        HARNESS_EXPECT(g[i].lse_off == unit * r * sq, "lse slice");
        HARNESS_EXPECT(g[i].q_len * 4 == by.q && g[i].k_len * 4 == by.k &&
                           g[i].o_len * 4 == by.o && g[i].lse_len * 4 == by.lse,
                       "slice lengths match the sub-descriptor");
        HARNESS_EXPECT(g[i].d.heads_q == g[i].d.heads_kv * (int)r,
                       "query heads follow their kv heads");
        HARNESS_EXPECT(g[i].slot >= 0 && g[i].slot < n_slots, "slot range");
        HARNESS_EXPECT(i == 0 || g[i].slot >= g[i - 1].slot, "slots in order");
        if (d->mask.bias_kind == ATTN_BIAS_FULL)
            HARNESS_EXPECT(g[i].d.mask.bias ==
                               d->mask.bias +
                                   (b0 * (size_t)d->heads_q + h0) * sq * skv,
                           "FULL bias follows the group");
        if (d->mask.bias_kind == ATTN_BIAS_PER_HEAD)
            HARNESS_EXPECT(
                g[i].d.mask.bias ==
                    d->mask.bias +
                        (g[i].d.batch == 1 && g[i].d.heads_q < d->heads_q
                             ? h0 * sq * skv
                             : 0),
                "PER_HEAD bias follows the heads");
        if (d->mask.kv_len)
            HARNESS_EXPECT(g[i].d.mask.kv_len == d->mask.kv_len + b0,
                           "kv_len follows the batch item");
        units_per_slot[g[i].slot] += units;
        unit += units;
    }
    HARNESS_EXPECT(unit == (size_t)d->batch * (size_t)d->heads_kv,
                   "every unit exactly once");
    free(g);
}

static void test_shapes(void)
{
    static const float bias[1];
    static const int32_t kv_len[64];
    size_t per[8];
    unsigned seed = 7;
    for (int it = 0; it < 300; it++) {
        int hkv = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        int r = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
        int b = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 5;
        int slots = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
        attn_sdpa_desc d = desc(b, hkv * r, hkv, 3, 5, 4, 6);
        d.mask.bias = bias;
        d.mask.bias_kind = (attn_bias_kind)(it % 4);
        if (d.mask.bias_kind == ATTN_BIAS_NONE)
            d.mask.bias = NULL;
        d.mask.kv_len = it % 2 ? kv_len : NULL;
        check_split(&d, slots, NULL, per);
    }
}

static void test_weights(void)
{
    attn_sdpa_desc d = desc(1, 64, 64, 8, 8, 8, 8);
    const double w[3] = {1.0, 3.0, 4.0};
    size_t per[3];
    check_split(&d, 3, w, per);
    CU_ASSERT_EQUAL(per[0], 8);
    CU_ASSERT_EQUAL(per[1], 24);
    CU_ASSERT_EQUAL(per[2], 32);
    /* More slots than units: the extra slots get nothing, no empty
     * group. */
    d = desc(1, 2, 2, 8, 8, 8, 8);
    {
        size_t per8[8];
        check_split(&d, 8, NULL, per8);
        CU_ASSERT_EQUAL(per8[0] + per8[1] + per8[2] + per8[3] + per8[4] +
                            per8[5] + per8[6] + per8[7],
                        2);
    }
}

/* A device backend of n_dev devices with n_q queues each, for
 * attn_sched_slots. */
static int fake_dev, fake_q;
static int fake_n_devices(const attn_backend *b)
{
    (void)b;
    return fake_dev;
}
static int fake_n_queues(const attn_backend *b, int dev)
{
    (void)b;
    (void)dev;
    return fake_q;
}
static double fake_weight(const attn_backend *b, int dev)
{
    (void)b;
    return 1.0 + dev;
}

/* Every device gets a slot, also past ATTN_SCHED_MAX_SLOTS queues in all
 * (9 devices x 8 queues: 7 queues each), so that each takes work and can
 * take over another's. */
static void test_slots(void)
{
    static const attn_exec_ops x = {.n_devices = fake_n_devices,
                                    .n_queues = fake_n_queues,
                                    .weight = fake_weight};
    static const attn_backend_ops ops = {.name = "fake", .exec = &x};
    const attn_backend b = {&ops, NULL};
    static const int cases[][2] = {{1, 1}, {2, 8}, {8, 8}, {9, 8}, {16, 8}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        attn_work w;
        double weights[ATTN_SCHED_MAX_SLOTS];
        int per[16] = {0};
        fake_dev = cases[c][0];
        fake_q = cases[c][1];
        attn_sched_slots(&b, &w, weights);
        CU_ASSERT(w.n_slots >= 1 && w.n_slots <= ATTN_SCHED_MAX_SLOTS);
        for (int i = 0; i < w.n_slots; i++) {
            CU_ASSERT_FATAL(w.slot_dev[i] >= 0 && w.slot_dev[i] < fake_dev);
            per[w.slot_dev[i]]++;
            CU_ASSERT(weights[i] > 0.0);
        }
        for (int dv = 0; dv < fake_dev; dv++)
            HARNESS_EXPECT(per[dv] >= 1 && per[dv] <= fake_q,
                           "every device a slot");
        if (fake_dev * fake_q <= ATTN_SCHED_MAX_SLOTS)
            CU_ASSERT_EQUAL(w.n_slots, fake_dev * fake_q);
    }
}

static void test_bad(void)
{
    attn_sdpa_desc d = desc(2, 4, 2, 8, 8, 8, 8);
    attn_group g[16];
    size_t n = 0;
    const double bad[2] = {1.0, 0.0};
    CU_ASSERT_EQUAL(attn_sched_split(&d, 0, NULL, g, 16, &n, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sched_split(&d, 2, bad, g, 16, &n, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_sched_split(&d, 4, NULL, g, 1, &n, NULL),
                    ATTN_ERR_OUT_OF_MEMORY);
}

int main(void)
{
    static const harness_test tests[] = {
        {"random shapes, masks and slot counts", test_shapes},
        {"work in proportion to the weights", test_weights},
        {"bad slot counts and weights", test_bad},
        {"slots: every device, past 64 queues in all", test_slots},
        {NULL, NULL}};
    return harness_main("sched", NULL, NULL, tests);
}
