/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Discovery on the real machine.  Without an OpenCL platform the suite
 * prints "SKIP: no OpenCL platform" and exits 77 (ctest's SKIP_RETURN_CODE)
 * without asserting anything.  With PoCL the CPU device must be found,
 * classified CPU_OPENCL, usable, and listed in the same order every time.
 * ATTN_TEST_POCL_DEVICES, when set (ctest sets it together with
 * POCL_DEVICES), is the number of PoCL devices expected.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "opencl/discovery.h"

#define POCL_PLATFORM "Portable Computing Language"

static attn_cl_device *devs;
static size_t ndevs;

static int suite_init(void)
{
    attn_err err = {{0}};
    attn_status s = attn_cl_discover(&devs, &ndevs, &err);
    if (s != ATTN_OK)
        printf("\nattn_cl_discover: %s: %s\n", attn_status_string(s), err.msg);
    return s != ATTN_OK;
}

static int suite_clean(void)
{
    free(devs);
    devs = NULL;
    ndevs = 0;
    return 0;
}

static size_t count_pocl(const attn_cl_device *d, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += strcmp(d[i].info.platform, POCL_PLATFORM) == 0;
    return c;
}

static void test_every_device_described(void)
{
    for (size_t i = 0; i < ndevs; i++) {
        const attn_device_info *d = &devs[i].info;
        printf("\n  %d:%d %-5s %s  rank %.1f  %s", d->platform_index,
               d->device_index, attn_cl_kind_name(d->kind), d->name, d->rank,
               d->reason);
        CU_ASSERT_PTR_NOT_NULL(devs[i].device);
        CU_ASSERT_PTR_NOT_NULL(devs[i].platform);
        CU_ASSERT(d->reason[0] != '\0');
        CU_ASSERT(d->kind != ATTN_DEVICE_NATIVE);
        CU_ASSERT(d->rank > 0.0);
        /* Indices are positions in the sorted order: platforms never go
         * back, devices count from 0 within a platform. */
        if (i == 0) {
            CU_ASSERT_EQUAL(d->device_index, 0);
        } else {
            const attn_device_info *p = &devs[i - 1].info;
            CU_ASSERT(d->platform_index >= p->platform_index);
            CU_ASSERT_EQUAL(d->device_index,
                            d->platform_index == p->platform_index
                                ? p->device_index + 1
                                : 0);
            if (d->platform_index == p->platform_index)
                CU_ASSERT(strcmp(p->name, d->name) <= 0);
        }
    }
    printf("\n");
}

static void test_pocl_device(void)
{
    size_t found = 0;
    const char *want = getenv("ATTN_TEST_POCL_DEVICES");
    for (size_t i = 0; i < ndevs; i++) {
        const attn_cl_device *c = &devs[i];
        if (strcmp(c->info.platform, POCL_PLATFORM) != 0)
            continue;
        found++;
        CU_ASSERT_EQUAL(c->info.kind, ATTN_DEVICE_CPU_OPENCL);
        CU_ASSERT_EQUAL(c->info.usable, 1);
        CU_ASSERT(c->info.rank >= 1000.0 && c->info.rank < 1500.0);
        CU_ASSERT(c->info.name[0] != '\0');
        CU_ASSERT(strncmp(c->info.opencl_c_version, "OpenCL C ", 9) == 0);
        CU_ASSERT(c->info.compute_units > 0);
        CU_ASSERT(c->info.global_mem_bytes > 0);
        CU_ASSERT(c->info.local_mem_bytes >= 16 * 1024);
        CU_ASSERT(c->info.max_work_group_size >= 64);
        CU_ASSERT_EQUAL(c->has_binary, 0);
        CU_ASSERT_EQUAL(c->query_failed, 0);
    }
    if (found == 0) {
        printf("\n  SKIP: no PoCL platform (\"%s\") on this machine\n",
               POCL_PLATFORM);
        return;
    }
    if (want && *want) {
        printf("\n  PoCL devices: %zu (expected %s)\n", found, want);
        CU_ASSERT_EQUAL(found, (size_t)strtoul(want, NULL, 10));
    }
}

/* Whether d lists extension name (a whole word). */
static int lists(cl_device_id d, const char *name)
{
    char ext[8192] = "";
    const size_t len = strlen(name);
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL) !=
        CL_SUCCESS)
        return 0;
    for (const char *p = ext; (p = strstr(p, name)) != NULL; p += len)
        if ((p == ext || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' '))
            return 1;
    return 0;
}

/* The subgroup shuffles of each device as its extensions say, and the
 * probe kernels: inline PTX, which a device other than NVIDIA's refuses,
 * and the extensions' shuffles, which build where they are listed and
 * (Khronos') not where they are not (the programs released: the context's
 * references are back to one). */
static void test_shuffles(void)
{
    size_t probed = 0;
    for (size_t i = 0; i < ndevs; i++) {
        const cl_device_id d = devs[i].device;
        const int s = attn_cl_shuffle(d);
        const int want = lists(d, "cl_intel_subgroups") ? ATTN_CL_SHUFFLE_INTEL
                         : lists(d, "cl_khr_subgroups") &&
                                 lists(d, "cl_khr_subgroup_shuffle")
                             ? ATTN_CL_SHUFFLE_KHR
                             : ATTN_CL_SHUFFLE_NONE;
        CU_ASSERT_EQUAL(s, want);
        if (devs[i].nv_sm || !devs[i].info.usable)
            continue;
        cl_int rc;
        cl_uint refs = 0;
        cl_context ctx = clCreateContext(NULL, 1, &d, NULL, NULL, &rc);
        CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
        CU_ASSERT_EQUAL(attn_cl_shuffle_builds(ctx, d, ATTN_CL_SHUFFLE_PTX), 0);
        /* The Khronos and Intel probes build where the extensions are. */
        if (lists(d, "cl_khr_subgroups") && lists(d, "cl_khr_subgroup_shuffle"))
            CU_ASSERT_EQUAL(attn_cl_shuffle_builds(ctx, d, ATTN_CL_SHUFFLE_KHR),
                            1);
        if (!lists(d, "cl_khr_subgroup_shuffle"))
            CU_ASSERT_EQUAL(attn_cl_shuffle_builds(ctx, d, ATTN_CL_SHUFFLE_KHR),
                            0);
        if (lists(d, "cl_intel_subgroups"))
            CU_ASSERT_EQUAL(
                attn_cl_shuffle_builds(ctx, d, ATTN_CL_SHUFFLE_INTEL), 1);
        CU_ASSERT_EQUAL(attn_cl_shuffle_builds(ctx, d, ATTN_CL_SHUFFLE_NONE),
                        0);
        CU_ASSERT_EQUAL(clGetContextInfo(ctx, CL_CONTEXT_REFERENCE_COUNT,
                                         sizeof refs, &refs, NULL),
                        CL_SUCCESS);
        CU_ASSERT_EQUAL(refs, 1);
        clReleaseContext(ctx);
        probed++;
    }
    CU_ASSERT(probed > 0 || count_pocl(devs, ndevs) == 0);
}

/* The PTX target of a program binary (the mma variant's check): the first
 * .target directive of PTX text, 0 for a binary that holds none (the CPU
 * device's, built here). */
static void test_ptx_target(void)
{
    static const struct {
        const char *text;
        int want;
    } cases[] = {
        {"//\n// Generated by NVIDIA NVVM Compiler\n.version 8.5\n"
         ".target sm_90\n.address_size 64\n",
         90},
        {".version 7.0\n.target sm_80, texmode_independent\n", 80},
        {".version 8.0\n.target\tsm_90a\n", 90},
        {".version 6.4\n.target sm_75\n", 75},
        {".version 3.0\n.target sm_30\n.target sm_90\n", 30},
        {"// .target sm_86 in a comment\n.target sm_61\n", 61},
        {".version 8.0\n.address_size 64\n", 0},
        {".target compute_90\n", 0},
        {".target sm_\n", 0},
        {".targetsm_90\n", 0},
        {".target sm_1000\n", 0},
        {"\x7f"
         "ELF\2\1\1",
         0},
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int got =
            attn_cl_ptx_target_of(cases[i].text, strlen(cases[i].text));
        if (got != cases[i].want)
            printf("\n  case %zu: %d, not %d\n", i, got, cases[i].want);
        CU_ASSERT_EQUAL(got, cases[i].want);
    }
    /* The text stops where n says. */
    CU_ASSERT_EQUAL(attn_cl_ptx_target_of(".target sm_90", 12), 9);
    CU_ASSERT_EQUAL(attn_cl_ptx_target_of(".target sm_90", 10), 0);
    CU_ASSERT_EQUAL(attn_cl_ptx_target_of(NULL, 20), 0);

    for (size_t i = 0; i < ndevs; i++) {
        const cl_device_id d = devs[i].device;
        const char *src = "__kernel void k(__global float *x) { x[0] = 1; }";
        cl_int rc;
        if (devs[i].nv_sm || !devs[i].info.usable)
            continue;
        cl_context ctx = clCreateContext(NULL, 1, &d, NULL, NULL, &rc);
        CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
        cl_program p = clCreateProgramWithSource(ctx, 1, &src, NULL, &rc);
        CU_ASSERT_EQUAL_FATAL(rc, CL_SUCCESS);
        CU_ASSERT_EQUAL(clBuildProgram(p, 1, &d, "", NULL, NULL), CL_SUCCESS);
        CU_ASSERT_EQUAL(attn_cl_ptx_target(p), 0);
        clReleaseProgram(p);
        clReleaseContext(ctx);
    }
}

static void test_order_stable(void)
{
    attn_cl_device *again = NULL;
    size_t n = 0;
    attn_err err = {{0}};
    CU_ASSERT_EQUAL_FATAL(attn_cl_discover(&again, &n, &err), ATTN_OK);
    CU_ASSERT_EQUAL(n, ndevs);
    for (size_t i = 0; i < n && i < ndevs; i++) {
        CU_ASSERT_PTR_EQUAL(again[i].device, devs[i].device);
        CU_ASSERT_STRING_EQUAL(again[i].info.name, devs[i].info.name);
        CU_ASSERT_EQUAL(again[i].info.platform_index,
                        devs[i].info.platform_index);
        CU_ASSERT_EQUAL(again[i].info.device_index, devs[i].info.device_index);
        CU_ASSERT_EQUAL(again[i].info.rank, devs[i].info.rank);
    }
    free(again);
}

static void test_select_real(void)
{
    attn_device_info *infos = calloc(ndevs, sizeof *infos);
    attn_selection sel;
    attn_err err = {{0}};
    char spec[80], prefix[16];
    size_t usable = 0, pocl = count_pocl(devs, ndevs);
    CU_ASSERT_PTR_NOT_NULL_FATAL(infos);
    for (size_t i = 0; i < ndevs; i++) {
        infos[i] = devs[i].info;
        usable += infos[i].usable;
    }
    CU_ASSERT_EQUAL(attn_cl_select(infos, ndevs, "auto", 0, &sel, &err),
                    ATTN_OK);
    CU_ASSERT_EQUAL(sel.native, usable == 0);
    printf("\n  selection: %s\n", sel.why);
    if (usable > 0) {
        CU_ASSERT_EQUAL(attn_cl_select(infos, ndevs, "all", 0, &sel, &err),
                        ATTN_OK);
        CU_ASSERT_EQUAL(sel.count, usable < 16 ? usable : 16);
    }
    for (size_t i = 0; i < ndevs; i++) {
        if (strcmp(infos[i].platform, POCL_PLATFORM) != 0)
            continue;
        /* The first characters of the name in upper case select it (the
         * name differs between PoCL versions: "pthread-", "cpu-"). */
        snprintf(prefix, sizeof prefix, "%.7s", infos[i].name);
        for (char *c = prefix; *c; c++)
            *c = (*c >= 'a' && *c <= 'z') ? (char)(*c - 'a' + 'A') : *c;
        CU_ASSERT_EQUAL(attn_cl_select(infos, ndevs, prefix, 0, &sel, &err),
                        ATTN_OK);
        CU_ASSERT_EQUAL(sel.count, 1);
        CU_ASSERT_STRING_EQUAL(infos[sel.index[0]].platform, POCL_PLATFORM);
        snprintf(spec, sizeof spec, "%d:%d", infos[i].platform_index,
                 infos[i].device_index);
        CU_ASSERT_EQUAL(attn_cl_select(infos, ndevs, spec, 0, &sel, &err),
                        ATTN_OK);
        CU_ASSERT_EQUAL(sel.count, 1);
        CU_ASSERT_EQUAL(sel.index[0], i);
    }
    if (pocl >= 2) {
        const attn_device_info *a = NULL, *b = NULL;
        for (size_t i = 0; i < ndevs; i++)
            if (!strcmp(infos[i].platform, POCL_PLATFORM))
                *(a ? &b : &a) = &infos[i];
        snprintf(spec, sizeof spec, "%d:%d,%d:%d", b->platform_index,
                 b->device_index, a->platform_index, a->device_index);
        CU_ASSERT_EQUAL(attn_cl_select(infos, ndevs, spec, 0, &sel, &err),
                        ATTN_OK);
        CU_ASSERT_EQUAL(sel.count, 2);
        CU_ASSERT_PTR_EQUAL(&infos[sel.index[0]], b);
        CU_ASSERT_PTR_EQUAL(&infos[sel.index[1]], a);
    }
    free(infos);
}

static void test_arguments(void)
{
    attn_cl_device *d = NULL;
    size_t n = 0;
    attn_err err = {{0}};
    CU_ASSERT_EQUAL(attn_cl_discover(NULL, &n, &err),
                    ATTN_ERR_INVALID_ARGUMENT);
    CU_ASSERT_EQUAL(attn_cl_discover(&d, NULL, NULL),
                    ATTN_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    static const harness_test tests[] = {
        {"every device described", test_every_device_described},
        {"the PoCL CPU device", test_pocl_device},
        {"order stable across calls", test_order_stable},
        {"subgroup shuffles", test_shuffles},
        {"PTX targets", test_ptx_target},
        {"selection on this machine", test_select_real},
        {"argument checks", test_arguments},
        {NULL, NULL}};
    attn_cl_device *d = NULL;
    size_t n = 0;
    attn_err err = {{0}};
    attn_status s = attn_cl_discover(&d, &n, &err);
    free(d);
    if (s == ATTN_OK && n == 0) {
        printf("SKIP: no OpenCL platform (or no device on any platform); "
               "the OpenCL discovery tests did not run\n");
        return 77;
    }
    return harness_main("opencl_discovery", suite_init, suite_clean, tests);
}
