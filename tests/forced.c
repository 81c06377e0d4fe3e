/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel variant a suite forces (ATTN_TEST_KERNEL) and what it took
 * and declined (harness.h).  No CUnit here: the soak uses the case checks
 * too.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Counted from the threads of the thread suites too. */
static atomic_ulong n_taken, n_declined;

const char *harness_kernel(void)
{
    const char *k = getenv("ATTN_TEST_KERNEL");
    return k && *k ? k : NULL;
}

void harness_taken(void)
{
    atomic_fetch_add(&n_taken, 1);
}

int harness_declined(attn_context *ctx, const attn_sdpa_desc *d, attn_status st,
                     const char *what)
{
    const char *k = harness_kernel();
    char name[64];
    if (!k || st != ATTN_ERR_UNSUPPORTED ||
        !strstr(attn_context_last_error(ctx), k))
        return 0;
    /* The question gives the same answer without running anything. */
    if (d &&
        attn_sdpa_kernel(ctx, d, name, sizeof name) != ATTN_ERR_UNSUPPORTED) {
        printf("\n%s: attn_sdpa declined, attn_sdpa_kernel did not\n", what);
        return 0;
    }
    atomic_fetch_add(&n_declined, 1);
    return 1;
}

void harness_kernel_counts(unsigned long *taken, unsigned long *declined)
{
    *taken = atomic_load(&n_taken);
    *declined = atomic_load(&n_declined);
}
