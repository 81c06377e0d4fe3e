/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Status and precision names, the library version and the calling
 * thread's last error: the answers every layer gives without calling any
 * other.
 */
#include <stdio.h>

#include "core/core.h"

static _Thread_local char thread_error[ATTN_MSG_MAX];

void attn_thread_set_error(const char *msg)
{
    snprintf(thread_error, sizeof thread_error, "%s", msg);
}

const char *attn_last_error(void)
{
    return thread_error;
}

const char *attn_status_string(attn_status s)
{
    switch (s) {
    case ATTN_OK:
        return "ATTN_OK";
    case ATTN_ERR_INVALID_ARGUMENT:
        return "ATTN_ERR_INVALID_ARGUMENT";
    case ATTN_ERR_OUT_OF_MEMORY:
        return "ATTN_ERR_OUT_OF_MEMORY";
    case ATTN_ERR_NO_DEVICE:
        return "ATTN_ERR_NO_DEVICE";
    case ATTN_ERR_BUILD_FAILED:
        return "ATTN_ERR_BUILD_FAILED";
    case ATTN_ERR_DEVICE:
        return "ATTN_ERR_DEVICE";
    case ATTN_ERR_UNSUPPORTED:
        return "ATTN_ERR_UNSUPPORTED";
    case ATTN_ERR_IO:
        return "ATTN_ERR_IO";
    }
    return "unknown status";
}

const char *attn_precision_name(attn_precision p)
{
    switch (p) {
    case ATTN_PRECISION_EXACT:
        return "exact";
    case ATTN_PRECISION_TF32:
        return "tf32";
    case ATTN_PRECISION_3XTF32:
        return "3xtf32";
    case ATTN_PRECISION_BF16:
        return "bf16";
    }
    return "unknown";
}

const char *attn_version(void)
{
    return ATTN_VERSION_STRING;
}
