/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every test executable shares: a CUnit runner whose exit status tells
 * ctest about failures, and the context the correctness suites run on.
 */
#ifndef ATTN_TEST_HARNESS_H
#define ATTN_TEST_HARNESS_H

#include <CUnit/CUnit.h>

#include "attn/attn.h"

typedef struct harness_test {
    const char *name;
    CU_TestFunc fn;
} harness_test;

/* Registers one suite with tests (ended by a {NULL, NULL} entry), runs it
 * with CUnit's basic interface (failures and the summary only) and returns
 * the process exit status: 0 when every test ran and passed, 1 otherwise.
 * init and clean may be NULL. */
int harness_main(const char *suite, CU_InitializeFunc init,
                 CU_CleanupFunc clean, const harness_test *tests);

/* A CUnit assertion whose failure record names the case: "what: cond". */
#define HARNESS_EXPECT(cond, what)                                             \
    harness_expect((cond) ? 1 : 0, __LINE__, __FILE__, #cond, (what))
void harness_expect(int ok, unsigned line, const char *file, const char *cond,
                    const char *what);

/* Exit status of a suite that did not run (ctest SKIP_RETURN_CODE). */
#define HARNESS_SKIP 77

/* The options the correctness suites run with: attn_options_init defaults,
 * or, when the test-only variable ATTN_TEST_DEVICE is set (or ATTN_DEVICE
 * names an OpenCL device, e.g. ATTN_DEVICE=gpu), that device with
 * fallback off (and ATTN_TEST_PATH=fused|unfused for the kernel path,
 * ATTN_TEST_KERNEL=NAME for one kernel variant forced by name, or
 * "each" for the suite run once per variant (harness_main; a forced
 * variant must take some of the suite's calls, unless
 * ATTN_TEST_KERNEL_MAY_DECLINE lists it and it declined them all),
 * ATTN_TEST_QUEUES=N for the queues per device).  A
 * suite whose test device is not on the machine (no OpenCL at all, or
 * "cpu" on a machine with only a GPU) exits with HARNESS_SKIP after saying
 * so; so does one run with ATTN_TEST_DEVICE_ONLY set when no device is
 * named (ctest's device_ entries, for `ATTN_DEVICE=gpu ctest -R
 * '^device_'`).  A suite run with ATTN_CPU_ISA set (a run for one instruction
 * set of the native backend) on a machine whose native backend then runs
 * another set's kernels also exits with HARNESS_SKIP, saying so. */
void harness_options(attn_options *o);

/* The kernel variant the suite forces (ATTN_TEST_KERNEL), or NULL. */
const char *harness_kernel(void);

/* Whether a failed attn_sdpa of d on ctx is the forced kernel variant
 * declining a shape it does not take: status ATTN_ERR_UNSUPPORTED, a
 * message naming the variant, and attn_sdpa_kernel saying the same (d
 * NULL: a layer call, whose attention step declined).  The
 * caller checks that nothing was written.  Counted: a suite with a forced
 * kernel fails when the kernel took none of its calls (harness_main). */
int harness_declined(attn_context *ctx, const attn_sdpa_desc *d, attn_status st,
                     const char *what);
/* Counts a call the forced kernel took. */
void harness_taken(void);
/* The counts so far (tests/forced.c). */
void harness_kernel_counts(unsigned long *taken, unsigned long *declined);

/* A context from harness_options.  NULL on failure (also when a device was
 * asked for and the native backend was selected), after printing why. */
attn_context *harness_context(void);

#endif /* ATTN_TEST_HARNESS_H */
