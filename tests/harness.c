/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CUnit runner shared by the suites.
 */
#include "harness.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

/* The device the correctness suites run on: the test-only ATTN_TEST_DEVICE,
 * else ATTN_DEVICE when it names an OpenCL device (so `ATTN_DEVICE=gpu
 * ctest` runs the suites on the GPU with fallback off), else none. */
static const char *test_device(void)
{
    const char *dev = getenv("ATTN_TEST_DEVICE");
    if (dev && *dev)
        return dev;
    dev = getenv("ATTN_DEVICE");
    if (dev && *dev && strcmp(dev, "auto") != 0 && strcmp(dev, "native") != 0)
        return dev;
    return NULL;
}

/* Whether the test device is on this machine: a context on it can be
 * created (0 when the spec matches no device). */
static int test_device_present(const char *dev)
{
    attn_options o;
    attn_context *ctx = NULL;
    size_t n_devices = 0;
    if (attn_devices(NULL, 0, &n_devices) != ATTN_OK || n_devices == 0)
        return 0;
    attn_options_init(&o);
    o.device = dev;
    o.allow_fallback = 0;
    if (attn_context_create(&o, &ctx) == ATTN_ERR_NO_DEVICE)
        return 0;
    attn_context_destroy(ctx);
    return 1;
}

/* Whether a run for one instruction set of the native backend
 * (ATTN_CPU_ISA, tests/CMakeLists.txt) gets that set's kernels: on a CPU
 * that lacks it the library runs another set, and the run would test the
 * wrong thing.  The set a context runs is in its device reason ("native C
 * backend, avx2 kernels, 2 threads").  1 when ATTN_CPU_ISA is unset. */
static int isa_honoured(const char *suite)
{
    const char *isa = getenv("ATTN_CPU_ISA");
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    char want[64];
    size_t i;
    int ok;

    if (!isa || !*isa)
        return 1;
    snprintf(want, sizeof want, ", %.32s kernels,", isa);
    for (i = 0; want[i]; i++)
        want[i] = (char)tolower((unsigned char)want[i]);
    attn_options_init(&o);
    o.device = "native";
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return 1; /* the suite itself reports that */
    memset(&info, 0, sizeof info);
    attn_context_device(ctx, &info);
    attn_context_destroy(ctx);
    ok = strstr(info.reason, want) != NULL;
    if (!ok)
        printf("SKIP: %s with ATTN_CPU_ISA=%s: this machine runs other "
               "kernels (%s)\n",
               suite, isa, info.reason);
    return ok;
}

/* Whether name is an item of the comma-separated list (NULL: empty). */
static int listed(const char *list, const char *name)
{
    const size_t n = strlen(name);
    while (list && *list) {
        const char *end = strchr(list, ',');
        const size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len == n && !strncmp(list, name, n))
            return 1;
        list = end ? end + 1 : NULL;
    }
    return 0;
}

/* One run of the suite; 0 when every test ran and passed. */
static int run_once(const char *suite, CU_InitializeFunc init,
                    CU_CleanupFunc clean, const harness_test *tests)
{
    unsigned long taken0 = 0, declined0 = 0, taken = 0, declined = 0;
    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "%s: CUnit: %s\n", suite, CU_get_error_msg());
        return 1;
    }
    CU_pSuite s = CU_add_suite(suite, init, clean);
    int ok = s != NULL;
    for (const harness_test *t = tests; ok && t->name; t++)
        ok = CU_add_test(s, t->name, t->fn) != NULL;
    if (!ok) {
        fprintf(stderr, "%s: CUnit: %s\n", suite, CU_get_error_msg());
        CU_cleanup_registry();
        return 1;
    }
    harness_kernel_counts(&taken0, &declined0);
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_ErrorCode err = CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() +
                      CU_get_number_of_tests_failed() +
                      CU_get_number_of_suites_failed();
    unsigned ran = CU_get_number_of_tests_run();
    printf("\n");
    CU_cleanup_registry();
    harness_kernel_counts(&taken, &declined);
    if (harness_kernel()) {
        /* A forced kernel must have run the calls it takes. */
        printf("kernel %s: %lu calls run by it, %lu shapes declined\n",
               harness_kernel(), taken - taken0, declined - declined0);
        if (taken == taken0 && declined > declined0 &&
            listed(getenv("ATTN_TEST_KERNEL_MAY_DECLINE"), harness_kernel())) {
            /* A variant that may find nothing to take on this device (a
             * matrix unit without the suite's storage type), every call
             * declined cleanly: said, not failed. */
            printf("kernel %s took none of the suite's calls on this device "
                   "(ATTN_TEST_KERNEL_MAY_DECLINE)\n",
                   harness_kernel());
        } else if (taken == taken0) {
            printf("FAIL: kernel %s ran none of the suite's calls\n",
                   harness_kernel());
            failed++;
        }
    }
    return err != CUE_SUCCESS || failed != 0 || ran == 0;
}

int harness_main(const char *suite, CU_InitializeFunc init,
                 CU_CleanupFunc clean, const harness_test *tests)
{
    const char *dev = test_device(), *kernel = harness_kernel();
    int rc = 0;
    if (!dev && getenv("ATTN_TEST_DEVICE_ONLY")) {
        /* The device_ entries of ctest: for the device ATTN_DEVICE names
         * (a GPU's session), never the native backend. */
        printf("SKIP: %s: this run is for the OpenCL device ATTN_DEVICE "
               "names (e.g. ATTN_DEVICE=gpu ctest -R '^device_'), and none "
               "is named\n",
               suite);
        return HARNESS_SKIP;
    }
    if (dev && !test_device_present(dev)) {
        printf("SKIP: %s on device \"%s\": no such OpenCL device on this "
               "machine\n",
               suite, dev);
        return HARNESS_SKIP;
    }
    if (!isa_honoured(suite))
        return HARNESS_SKIP;
    if (!kernel || strcmp(kernel, "each") != 0)
        return run_once(suite, init, clean, tests);
    /* ATTN_TEST_KERNEL=each: the suite once per kernel variant, but for
     * those ATTN_TEST_KERNEL_SKIP lists (comma-separated: variants other
     * runs of the suite force, through options.path or at another
     * precision). */
    for (int i = 0; attn_kernel_name(i); i++) {
        if (listed(getenv("ATTN_TEST_KERNEL_SKIP"), attn_kernel_name(i))) {
            printf("== %s: kernel %s left to other runs\n", suite,
                   attn_kernel_name(i));
            continue;
        }
        setenv("ATTN_TEST_KERNEL", attn_kernel_name(i), 1);
        printf("== %s with kernel %s\n", suite, attn_kernel_name(i));
        rc |= run_once(suite, init, clean, tests);
    }
    setenv("ATTN_TEST_KERNEL", "each", 1);
    if (!attn_kernel_name(0)) {
        printf("FAIL: ATTN_TEST_KERNEL=each, and this build has no kernel "
               "variant\n");
        rc = 1;
    }
    return rc;
}

void harness_expect(int ok, unsigned line, const char *file, const char *cond,
                    const char *what)
{
    char text[512];
    snprintf(text, sizeof text, "%s: %s", what ? what : "", cond);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, text, file, "",
                            CU_FALSE);
}

void harness_options(attn_options *o)
{
    const char *dev = test_device();
    const char *path = getenv("ATTN_TEST_PATH");
    attn_options_init(o);
    if (dev) {
        o->device = dev;
        o->allow_fallback = 0; /* a device failure must fail the test */
    }
    if (getenv("ATTN_TEST_QUEUES"))
        o->queues = atoi(getenv("ATTN_TEST_QUEUES"));
    o->kernel = harness_kernel();
    if (path && !strcmp(path, "fused"))
        o->path = ATTN_PATH_FUSED;
    else if (path && !strcmp(path, "unfused"))
        o->path = ATTN_PATH_UNFUSED;
}

attn_context *harness_context(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    harness_options(&o);
    attn_status st = attn_context_create(&o, &ctx);
    if (st != ATTN_OK) {
        printf("\nattn_context_create failed: %s: %s\n", attn_status_string(st),
               attn_last_error());
        return NULL;
    }
    /* A device run that silently landed on the native backend would test
     * the wrong thing. */
    if (test_device() && (attn_context_device(ctx, &info) != ATTN_OK ||
                          info.kind == ATTN_DEVICE_NATIVE)) {
        printf("\ntest device \"%s\" selected the native backend\n",
               test_device());
        attn_context_destroy(ctx);
        return NULL;
    }
    return ctx;
}
