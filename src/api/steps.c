/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The steps every public entry point shares (api.c, backward.c, layer.c,
 * varlen.c, api_cl.c): the error report, the check against calls from
 * inside the log callback, and the runs of a checked attention or layer
 * call through the plan and the scheduler.  Nothing here knows how the
 * work is done, nor which entry point asked.
 */
#include <stdio.h>
#include <stdlib.h>

#include "api/context.h"

attn_status attn_api_report(attn_context *ctx, const char *fn, attn_status s,
                            const attn_err *err)
{
    char msg[ATTN_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "%s: %s", fn, err->msg);
    msg[ATTN_MSG_MAX - 1] = '\0';
    attn_context_set_error(ctx, s, msg);
    return s;
}

/* Calls that run work take the context's locks, and the log callback may
 * run while they are held: from inside it such a call is refused (attn.h,
 * attn_log_fn). */
int attn_api_from_callback(const char *fn, attn_err *err)
{
    if (!attn_log_in_callback())
        return 0;
    attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
              "called from inside the log callback, which may run while "
              "the library holds the context's locks; call %s after the "
              "callback returns",
              fn);
    return 1;
}

attn_status attn_sdpa_run(attn_context *ctx, const attn_sdpa_desc *d,
                          const void *q, const void *k, const void *v, void *o,
                          float *lse, attn_err *err)
{
    attn_sdpa_desc merged;
    float *merged_bias = NULL;
    attn_sdpa_call c = {d, q, k, v, o, lse};
    attn_plan *plan = NULL;
    const attn_work *work = NULL;
    char fell[ATTN_MSG_MAX];
    attn_status s = attn_validate_sdpa(d, q, k, v, o, lse, err);
    /* the devices take the boolean mask and kv_start merged into the
     * bias; the padding rows of q_start are zeroed below */
    if (s == ATTN_OK && ctx->backend->ops->exec &&
        (s = attn_keep_merge(d, &merged, &merged_bias, err)) == ATTN_OK)
        c.d = &merged;
    if (s == ATTN_OK && ctx->backend->ops->exec)
        s = attn_plan_sdpa(ctx->plans, ctx->backend, c.d, &plan, &work, err);
    if (s == ATTN_OK) {
        s = attn_sched_sdpa(&ctx->run, work, &c, fell, sizeof fell, err);
        if (fell[0])
            attn_context_note(ctx, fell);
    }
    if (s == ATTN_OK && c.d == &merged && d->q_start) {
        size_t ost[3];
        attn_tensor_strides(d, ATTN_T_O, ost);
        attn_pad_rows_zero(d, ost, o, lse);
    }
    attn_plan_release(ctx->plans, plan);
    free(merged_bias);
    return s;
}

attn_status attn_api_mha(attn_context *ctx, const char *fn,
                         const attn_mha_call *c)
{
    attn_err err = {{0}};
    attn_plan *plan = NULL;
    const attn_dev_work *work = NULL;
    char fell[ATTN_MSG_MAX];
    attn_status s = attn_validate_mha(c, &err);
    if (s == ATTN_OK && ctx->backend->ops->exec && ctx->backend->ops->mha) {
        attn_sdpa_desc sd;
        attn_mha_sdpa_desc(c, &sd);
        s = attn_plan_devices(ctx->plans, ctx->backend, &sd, &plan, &work,
                              &err);
    }
    if (s == ATTN_OK) {
        s = attn_sched_mha(&ctx->run, work, c, fell, sizeof fell, &err);
        if (fell[0])
            attn_context_note(ctx, fell);
    }
    attn_plan_release(ctx->plans, plan);
    return s == ATTN_OK ? s : attn_api_report(ctx, fn, s, &err);
}
