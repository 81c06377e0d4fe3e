/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_threads: one context shared by 8 threads making many mixed calls,
 * two contexts used at once, and contexts created and destroyed on several
 * threads at the same time.  Every result is checked against a reference
 * computed before the threads start; invalid calls mixed in must fail on
 * their own thread only.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"
#include "ref.h"

#define NTHREADS 8
#define NCALLS   50
#define NSDPA    7
#define NMHA     3

static sdpa_case sdpa[NSDPA];
static ref_sdpa_result sdpa_ref[NSDPA];
static mha_case mha[NMHA];
static double *mha_ref[NMHA];

static attn_sdpa_desc shape(int batch, int hq, int hkv, int sq, int skv, int d,
                            int dv)
{
    attn_sdpa_desc s;
    memset(&s, 0, sizeof s);
    s.batch = batch;
    s.heads_q = hq;
    s.heads_kv = hkv;
    s.seq_q = sq;
    s.seq_kv = skv;
    s.head_dim = d;
    s.head_dim_v = dv;
    return s;
}

static int build_problems(void)
{
    attn_sdpa_desc s[NSDPA];
    int kv[NSDPA] = {0, 0, 1, 0, 1, 0, 0};
    s[0] = shape(2, 4, 4, 17, 17, 16, 16);
    s[0].mask.causal = 1;
    s[1] = shape(1, 2, 1, 33, 50, 8, 12);
    s[1].dtype = ATTN_F16;
    s[1].mask.window = 9;
    s[2] = shape(3, 6, 2, 9, 21, 8, 8);
    s[2].mask.bias_kind = ATTN_BIAS_PER_HEAD;
    s[3] = shape(2, 2, 2, 12, 15, 10, 7);
    s[3].score = ATTN_SCORE_ADDITIVE;
    s[3].mask.causal = 1;
    s[4] = shape(2, 4, 1, 200, 300, 16, 16);
    s[4].mask.causal = 1;
    s[4].mask.bias_kind = ATTN_BIAS_SHARED;
    s[5] = shape(1, 1, 1, 1, 64, 32, 32);
    s[5].dtype = ATTN_F16;
    s[6] = shape(1, 2, 2, 10, 20, 300, 300); /* grows working memory */
    s[6].mask.causal = 1;
    for (int i = 0; i < NSDPA; i++) {
        if (sdpa_case_init(&sdpa[i], &s[i], 700 + (uint64_t)i, 1.5, 0.1,
                           kv[i]) != 0 ||
            ref_sdpa(&sdpa[i].d, sdpa[i].q, sdpa[i].k, sdpa[i].v,
                     &sdpa_ref[i]) != 0)
            return -1;
    }
    for (int i = 0; i < NMHA; i++) {
        mha_spec m;
        memset(&m, 0, sizeof m);
        m.d_model = 16;
        m.heads_q = 4;
        m.heads_kv = i == 2 ? 1 : 2;
        m.head_dim = 4 + i;
        m.batch = 2;
        m.seq_q = 6 + i;
        m.seq_kv = 9;
        m.self = i != 1;
        m.with_bias = 1;
        m.posenc = i == 0   ? ATTN_POSENC_ROPE
                   : i == 1 ? ATTN_POSENC_LEARNED
                            : ATTN_POSENC_SINUSOIDAL;
        m.pos_offset = 2 * i;
        m.causal = i != 1;
        m.with_kv_len = i == 2;
        if (mha_case_init(&mha[i], &m, 800 + (uint64_t)i) != 0 ||
            !(mha_ref[i] = mha_case_reference(&mha[i])))
            return -1;
    }
    return 0;
}

static int suite_init(void)
{
    return build_problems() == 0 ? 0 : 1;
}

static int suite_clean(void)
{
    for (int i = 0; i < NSDPA; i++) {
        sdpa_case_free(&sdpa[i]);
        ref_sdpa_free(&sdpa_ref[i]);
    }
    for (int i = 0; i < NMHA; i++) {
        mha_case_free(&mha[i]);
        free(mha_ref[i]);
        mha_ref[i] = NULL;
    }
    return 0;
}

typedef struct worker {
    attn_context *ctx[2]; /* call i uses ctx[i % 2]; both may be the same */
    int id, own_context;
    int calls, failures, errors_wrong;
} worker;

/* Every 7th call is an invalid one: it must fail with a message on this
 * thread, and the calls after it must still work. */
static void one_call(worker *w, attn_context *ctx, int i)
{
    int pick = (w->id * 5 + i * 3) % (NSDPA + NMHA + 1);
    char what[64];
    snprintf(what, sizeof what, "thread %d call %d problem %d", w->id, i, pick);
    w->calls++;
    if (i % 7 == 3) {
        attn_sdpa_desc d = sdpa[0].d;
        d.heads_kv = 3; /* 4 % 3 != 0 */
        float o[4];
        if (attn_sdpa(ctx, &d, sdpa[0].q, sdpa[0].k, sdpa[0].v, o, NULL) !=
                ATTN_ERR_INVALID_ARGUMENT ||
            attn_last_error()[0] == '\0')
            w->errors_wrong++;
        return;
    }
    int ok;
    if (pick < NSDPA)
        ok = sdpa_case_check(ctx, &sdpa[pick], &sdpa_ref[pick], (i & 1) == 0,
                             NULL, what);
    else if (pick < NSDPA + NMHA)
        ok = mha_case_check(ctx, &mha[pick - NSDPA], mha_ref[pick - NSDPA],
                            what);
    else {
        float t[5 * 9];
        ok = attn_posenc_sinusoidal(5, 9, i, t) == ATTN_OK;
        if (ok) {
            double want[5 * 9];
            for (int p = 0; p < 5; p++)
                for (int c = 0; c < 9; c++)
                    want[p * 9 + c] = ref_sinusoidal((double)(i + p), c, 9);
            ok = ref_check_f32(what, t, want, 5 * 9, REF_PE_ABS(i + 4), 0.0);
        }
    }
    if (!ok)
        w->failures++;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    if (w->own_context) {
        attn_options o;
        harness_options(&o);
        o.threads = 1 + w->id % 2;
        if (attn_context_create(&o, &w->ctx[0]) != ATTN_OK) {
            w->failures++;
            return NULL;
        }
        w->ctx[1] = w->ctx[0];
    }
    for (int i = 0; i < NCALLS; i++)
        one_call(w, w->ctx[i % 2], i);
    if (w->own_context)
        attn_context_destroy(w->ctx[0]);
    return NULL;
}

/* Runs NTHREADS workers on contexts a and b (mixed per worker and per
 * call), or on a context each when own_context. */
static void run_workers(attn_context *a, attn_context *b, int own_context)
{
    worker w[NTHREADS];
    pthread_t t[NTHREADS];
    int started[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].own_context = own_context;
        w[i].ctx[0] = (i & 1) ? b : a;
        w[i].ctx[1] = (i & 2) ? a : b;
        started[i] = pthread_create(&t[i], NULL, worker_main, &w[i]) == 0;
        CU_ASSERT(started[i]);
    }
    int calls = 0, failures = 0, wrong = 0;
    for (int i = 0; i < NTHREADS; i++) {
        if (started[i])
            pthread_join(t[i], NULL);
        calls += w[i].calls;
        failures += w[i].failures;
        wrong += w[i].errors_wrong;
    }
    CU_ASSERT_EQUAL(calls, NTHREADS * NCALLS);
    CU_ASSERT_EQUAL(failures, 0);
    CU_ASSERT_EQUAL(wrong, 0);
}

static void test_one_context(void)
{
    attn_context *ctx = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    run_workers(ctx, ctx, 0);
    /* The context still works afterwards, from this thread. */
    CU_ASSERT_TRUE(sdpa_case_check(ctx, &sdpa[0], &sdpa_ref[0], 1, NULL,
                                   "after the threads"));
    attn_context_destroy(ctx);
}

static void test_two_contexts(void)
{
    attn_context *a = harness_context(), *b = harness_context();
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    run_workers(a, b, 0);
    attn_context_destroy(a);
    attn_context_destroy(b);
}

static void test_contexts_per_thread(void)
{
    run_workers(NULL, NULL, 1);
}

int main(void)
{
    static const harness_test tests[] = {
        {"8 threads on one context", test_one_context},
        {"8 threads on two contexts", test_two_contexts},
        {"a context per thread, created concurrently",
         test_contexts_per_thread},
        {NULL, NULL},
    };
    return harness_main("threads", suite_init, suite_clean, tests);
}
