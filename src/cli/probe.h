/* SPDX-License-Identifier: Apache-2.0 */
/* attn-probe's parts (private to the tool). */
#ifndef ATTN_CLI_PROBE_H
#define ATTN_CLI_PROBE_H

#include "api/tools.h"
#include "attn/attn.h"

/* What a native context created now runs. */
typedef struct probe_native {
    const char *isa; /* "generic", "avx2" or "avx512" */
    int threads;
} probe_native;

/* Benchmarks the native backend (the reference) and each device of sel
 * (NULL: every usable device of devs), printing one row each.  Returns the
 * number of devices that failed. */
int probe_bench(const attn_tool_device *devs, size_t n,
                const attn_tool_selection *sel);

/* --json: the devices, the native backend and the selection (error: the
 * selection's failure, or NULL); verbose adds each device's extensions. */
void probe_json(const attn_tool_device *devs, size_t n, const char *spec,
                const attn_tool_selection *sel, const char *error,
                const probe_native *native, int verbose);

/* How many OpenCL ICD files are registered (in OCL_ICD_VENDORS, else
 * /etc/OpenCL/vendors); where (may be NULL) receives the folder. */
int probe_icd_files(char *where, size_t cap);

#endif /* ATTN_CLI_PROBE_H */
