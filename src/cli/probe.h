/* attn-probe's parts (private to the tool). */
#ifndef ATTN_CLI_PROBE_H
#define ATTN_CLI_PROBE_H

#include "attn/attn.h"
#include "api/tools.h"

/* Benchmarks the native backend (the reference) and each device of sel
 * (NULL: every usable device of devs), printing one row each.  Returns the
 * number of devices that failed. */
int probe_bench(const attn_tool_device *devs, size_t n,
                const attn_tool_selection *sel);

#endif /* ATTN_CLI_PROBE_H */
