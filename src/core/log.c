/* SPDX-License-Identifier: Apache-2.0 */
/* Error messages and logging: the only place libattn produces text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

attn_status attn_fail(attn_err *e, attn_status s, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}

static const char *const level_names[] = {"default", "error", "warn",
                                          "info",    "debug", "off"};

static int parse_level(const char *s)
{
    if (!strcasecmp(s, "error"))
        return ATTN_LOG_ERROR;
    if (!strcasecmp(s, "warn") || !strcasecmp(s, "warning"))
        return ATTN_LOG_WARN;
    if (!strcasecmp(s, "info"))
        return ATTN_LOG_INFO;
    if (!strcasecmp(s, "debug"))
        return ATTN_LOG_DEBUG;
    if (!strcasecmp(s, "off") || !strcasecmp(s, "none"))
        return ATTN_LOG_OFF;
    return -1;
}

/* Set while this thread runs a caller's log callback.  Messages may be
 * logged with locks of a context held; a call into the library from the
 * callback could wait on them forever, so the entry points refuse to run
 * while it is set (attn_log_in_callback), and what the library logs
 * meanwhile is dropped rather than handed to the callback again. */
static _Thread_local int in_callback;

int attn_log_in_callback(void)
{
    return in_callback;
}

/* Delivers msg at level to the callback, or to stderr without one,
 * whatever the logger's level; dropped when it would reach the callback
 * from inside the callback. */
static void deliver(const attn_logger *lg, int level, const char *msg)
{
    if (lg->fn) {
        if (in_callback)
            return;
        in_callback = 1;
        lg->fn(level, msg, lg->user);
        in_callback = 0;
    } else {
        fprintf(stderr, "libattn %s: %s\n", level_names[level], msg);
    }
}

void attn_log_env(const attn_logger *lg, const char *fmt, ...)
{
    char msg[ATTN_MSG_MAX];
    va_list ap;
    if (!lg || (lg->fn && in_callback))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (lg->note && lg->note_cap)
        snprintf(lg->note, lg->note_cap, "%s", msg);
    if (lg->level >= ATTN_LOG_WARN)
        deliver(lg, ATTN_LOG_WARN, msg);
}

attn_status attn_logger_init(attn_logger *lg, const attn_options *o,
                             attn_err *warn, attn_err *err)
{
    int level = o->log_level;
    const char *bad = NULL;
    if (level < ATTN_LOG_DEFAULT || level > ATTN_LOG_OFF)
        return attn_fail(err, ATTN_ERR_INVALID_ARGUMENT,
                         "options.log_level %d is not an attn_log_level "
                         "(0..5)",
                         level);
    if (level == ATTN_LOG_DEFAULT) {
        const char *env = getenv("ATTN_LOG");
        level = env && *env ? parse_level(env) : -1;
        if (env && *env && level < 0)
            bad = env;
        if (level < 0)
            level = o->log ? ATTN_LOG_WARN : ATTN_LOG_OFF;
    }
    lg->level = level == ATTN_LOG_OFF ? 0 : level;
    lg->fn = o->log;
    lg->user = o->log_user;
    if (bad) {
        /* Whoever set ATTN_LOG wants to hear from the library: the
         * warning is delivered even when the default level is silent. */
        attn_fail(warn, ATTN_OK,
                  "ATTN_LOG=\"%.64s\" is not one of error, warn, info, "
                  "debug, off; ignored (%s)",
                  bad,
                  o->log ? "warnings go to the log callback"
                         : "nothing is printed");
        deliver(lg, ATTN_LOG_WARN, warn->msg);
    }
    return ATTN_OK;
}

void attn_log(const attn_logger *lg, int level, const char *fmt, ...)
{
    char msg[ATTN_MSG_MAX];
    va_list ap;
    if (!lg || level > lg->level || level < ATTN_LOG_ERROR)
        return;
    if (lg->fn && in_callback)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    deliver(lg, level, msg);
}
