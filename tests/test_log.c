/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_log: the log callback calling back into the library (attn.h,
 * attn_log_fn).  The callback may run while the library holds locks of the
 * context (an OpenCL program is built under them and its build logged), so
 * a call that runs work, made from inside the callback, is refused with
 * ATTN_ERR_INVALID_ARGUMENT instead of waiting on those locks forever; the
 * outer call goes on and its results are right, and calls made after the
 * callback returned work.  A watchdog turns a deadlock into a failure
 * instead of a hang.  Runs on the native backend and, where the machine
 * has one, on an OpenCL CPU device.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>

#include "attn/attn.h"
#include "cases.h"
#include "harness.h"

#define WATCHDOG_S 240

static void watchdog(int sig)
{
    static const char msg[] =
        "\nFAIL test_log: no progress for 240 s: a log callback that called "
        "back into the library deadlocked\n";
    (void)sig;
    if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0)
        _exit(2);
    _exit(1);
}

/* What the callback does and saw. */
typedef struct reenter {
    attn_context *ctx;
    const sdpa_case *c;
    void *o;
    float *lse;
    int calls;          /* messages received */
    int inner;          /* calls made from inside */
    attn_status got[4]; /* statuses of the first inner calls */
    int nested_seen;    /* a message arrived while inside the callback */
    int inside;
} reenter;

static void callback(int level, const char *msg, void *user)
{
    reenter *r = user;
    char name[32];
    (void)level;
    (void)msg;
    if (r->inside) {
        /* A message from a call made in here: must not arrive. */
        r->nested_seen = 1;
        return;
    }
    r->inside = 1;
    r->calls++;
    if (r->ctx && r->inner < 4) {
        attn_status s[3];
        s[0] = attn_sdpa(r->ctx, &r->c->d, r->c->q, r->c->k, r->c->v, r->o,
                         r->lse);
        s[1] = attn_sdpa_kernel(r->ctx, &r->c->d, name, sizeof name);
        s[2] = attn_mha_forward(r->ctx, NULL, 1, 1, 1, NULL, NULL, NULL, NULL);
        r->got[r->inner++] = s[0] != ATTN_ERR_INVALID_ARGUMENT   ? s[0]
                             : s[1] != ATTN_ERR_INVALID_ARGUMENT ? s[1]
                                                                 : s[2];
    }
    r->inside = 0;
}

static void shape(attn_sdpa_desc *d)
{
    memset(d, 0, sizeof d[0]);
    d->batch = 2;
    d->heads_q = 4;
    d->heads_kv = 2;
    d->seq_q = 11;
    d->seq_kv = 23;
    d->head_dim = 16;
    d->head_dim_v = 8;
    d->mask.causal = 1;
}

/* Creates a context on device with the callback at level, runs a call
 * that logs (an argument error on native, the first build on OpenCL)
 * while the callback calls in, then a call from outside. */
static void run(const char *device, int level, int bad_first)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_sdpa_desc d;
    sdpa_case c;
    reenter *r = calloc(1, sizeof *r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    shape(&d);
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 77, 1.0, 0.0, 0), 0);
    attn_options_init(&o);
    o.device = device;
    o.cache_dir = ""; /* the OpenCL programs are built: logged at DEBUG */
    o.allow_fallback = 0;
    o.log = callback;
    o.log_user = r;
    o.log_level = level;
    attn_status s = attn_context_create(&o, &ctx);
    if (s == ATTN_ERR_NO_DEVICE && strcmp(device, "native") != 0) {
        printf("\n  SKIP: no OpenCL \"%s\" device: the OpenCL case did not "
               "run\n",
               device);
        free(r);
        sdpa_case_free(&c);
        return;
    }
    CU_ASSERT_EQUAL_FATAL(s, ATTN_OK);
    r->ctx = ctx;
    r->c = &c;
    r->o = malloc(c.no * sizeof(float));
    r->lse = malloc(c.nlse * sizeof(float));
    CU_ASSERT_FATAL(r->o && r->lse);
    alarm(WATCHDOG_S);
    if (bad_first) {
        /* An argument error is logged at ERROR: the callback calls in. */
        attn_sdpa_desc bad = c.d;
        bad.heads_kv = 3;
        CU_ASSERT_EQUAL(attn_sdpa(ctx, &bad, c.q, c.k, c.v, r->o, r->lse),
                        ATTN_ERR_INVALID_ARGUMENT);
    }
    /* The first call of the shape (on OpenCL: builds, logs under the
     * context's locks); checked against the oracle. */
    CU_ASSERT(sdpa_case_check(ctx, &c, NULL, 1, NULL, device));
    alarm(0);
    CU_ASSERT(r->calls > 0);
    CU_ASSERT(r->inner > 0);
    for (int i = 0; i < r->inner && i < 4; i++)
        CU_ASSERT_EQUAL(r->got[i], ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_FALSE(r->nested_seen);
    CU_ASSERT(strstr(attn_context_last_error(ctx), "log callback") != NULL ||
              r->inner == 0);
    /* Outside the callback the same calls run. */
    r->ctx = NULL;
    CU_ASSERT_EQUAL(attn_sdpa(ctx, &c.d, c.q, c.k, c.v, r->o, r->lse), ATTN_OK);
    attn_context_destroy(ctx);
    free(r->o);
    free(r->lse);
    free(r);
    sdpa_case_free(&c);
}

static void test_native(void)
{
    run("native", ATTN_LOG_DEBUG, 1);
}

static void test_opencl(void)
{
    run("cpu", ATTN_LOG_DEBUG, 0);
}

int main(void)
{
    static const harness_test tests[] = {
        {"native: calls from the callback are refused", test_native},
        {"OpenCL: no deadlock under the context's locks", test_opencl},
        {NULL, NULL}};
    signal(SIGALRM, watchdog);
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_LOG");
    return harness_main("log callback", NULL, NULL, tests);
}
