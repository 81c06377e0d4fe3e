/*
 * CUnit runner shared by the suites.
 */
#include "harness.h"

#include <stdio.h>

#include <CUnit/Basic.h>

int harness_main(const char *suite, CU_InitializeFunc init,
                 CU_CleanupFunc clean, const harness_test *tests)
{
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
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_ErrorCode err = CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() +
                      CU_get_number_of_tests_failed() +
                      CU_get_number_of_suites_failed();
    unsigned ran = CU_get_number_of_tests_run();
    printf("\n");
    CU_cleanup_registry();
    return err != CUE_SUCCESS || failed != 0 || ran == 0;
}

void harness_expect(int ok, unsigned line, const char *file, const char *cond,
                    const char *what)
{
    char text[512];
    snprintf(text, sizeof text, "%s: %s", what ? what : "", cond);
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, text, file, "",
                            CU_FALSE);
}

attn_context *harness_context(void)
{
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    attn_status st = attn_context_create(&o, &ctx);
    if (st != ATTN_OK) {
        printf("\nattn_context_create failed: %s: %s\n", attn_status_string(st),
               attn_last_error());
        return NULL;
    }
    return ctx;
}
