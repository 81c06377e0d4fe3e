/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-probe as a user runs it: the --json output parses (with the strict
 * reader in mini_json.c) and has the documented structure, the listing
 * matches discovery in this process (OpenCL versions and, with --verbose,
 * extensions included), the native backend's instruction set and threads
 * follow ATTN_CPU_ISA and ATTN_NUM_THREADS, a machine without an OpenCL
 * platform (OCL_ICD_VENDORS pointing at an empty directory) exits 0 and
 * says so with a hint about drivers, and failures give the documented exit
 * status.
 *
 * Usage: test_probe PATH-TO-attn-probe
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mini_json.h"
#include "opencl/discovery.h"

static const char *probe;
static char empty_dir[] = "/tmp/attn-no-iCDXXXXXX";

/* Runs "env ENV probe ARGS" through the shell (ATTN_DEVICE removed unless
 * ENV sets it) and returns its exit status, -1 when it did not exit; *out
 * receives stdout (and stderr with merge) as a malloc'ed string. */
static int run(const char *env, const char *args, int merge, char **out)
{
    char cmd[8192];
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    FILE *p;
    int st;
    *out = NULL;
    if (!buf)
        return -1;
    snprintf(cmd, sizeof cmd, "env -u ATTN_DEVICE %s '%s' %s %s", env, probe,
             args, merge ? "2>&1" : "2>/dev/null");
    if (!(p = popen(cmd, "r"))) {
        free(buf);
        return -1;
    }
    for (;;) {
        size_t got;
        if (len + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        got = fread(buf + len, 1, cap - len - 1, p);
        if (got == 0)
            break;
        len += got;
    }
    buf[len] = '\0';
    st = pclose(p);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs with --json, expects exit status want and returns the parsed tree
 * (NULL after a CUnit failure). */
static mj *run_json(const char *env, const char *args, int want)
{
    char full[1024], err[256];
    char *text = NULL;
    mj *v;
    int rc;
    snprintf(full, sizeof full, "--json %s", args);
    rc = run(env, full, 0, &text);
    CU_ASSERT_EQUAL(rc, want);
    if (!text) {
        CU_FAIL("attn-probe did not run");
        return NULL;
    }
    v = mj_parse(text, err, sizeof err);
    if (!v)
        printf("\n  invalid JSON (%s):\n%s\n", err, text);
    CU_ASSERT_PTR_NOT_NULL(v);
    free(text);
    return v;
}

static int is(const mj *v, mj_type t)
{
    return v && v->type == t;
}

static void check_selected(const mj *sel)
{
    const mj *kind = mj_get(sel, "kind");
    CU_ASSERT_FATAL(is(sel, MJ_OBJ));
    CU_ASSERT_FATAL(is(kind, MJ_STR));
    CU_ASSERT_FATAL(is(mj_get(sel, "name"), MJ_STR));
    CU_ASSERT_FATAL(is(mj_get(sel, "platform_index"), MJ_NUM));
    CU_ASSERT_FATAL(is(mj_get(sel, "device_index"), MJ_NUM));
}

static void test_json_structure(void)
{
    static const char *const strs[] = {"platform", "name", "vendor", "kind",
                                       "reason"};
    static const char *const nums[] = {
        "platform_index",   "device_index",    "compute_units", "max_clock_mhz",
        "global_mem_bytes", "local_mem_bytes", "rank"};
    static const char *const bools[] = {"fp16", "fp64", "unified_memory",
                                        "usable"};
    attn_cl_device *devs = NULL;
    size_t n = 0, pocl = 0, usable = 0;
    mj *root = run_json("", "", 0);
    const mj *list, *ver;
    if (!root)
        return;
    CU_ASSERT_EQUAL_FATAL(attn_cl_discover(&devs, &n, NULL), ATTN_OK);
    CU_ASSERT(is(root, MJ_OBJ));
    ver = mj_get(root, "version");
    CU_ASSERT(is(ver, MJ_STR) && !strcmp(ver->str, attn_version()));
    list = mj_get(root, "devices");
    CU_ASSERT_FATAL(is(list, MJ_ARR));
    CU_ASSERT_EQUAL(list->n, n);
    for (size_t i = 0; i < list->n && i < n; i++) {
        const mj *d = &list->items[i], *kind = mj_get(d, "kind");
        for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++)
            CU_ASSERT(is(mj_get(d, strs[k]), MJ_STR));
        for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++)
            CU_ASSERT(is(mj_get(d, nums[k]), MJ_NUM));
        for (size_t k = 0; k < sizeof bools / sizeof bools[0]; k++)
            CU_ASSERT(is(mj_get(d, bools[k]), MJ_BOOL));
        if (!is(kind, MJ_STR) || !is(mj_get(d, "name"), MJ_STR) ||
            !is(mj_get(d, "usable"), MJ_BOOL))
            continue;
        CU_ASSERT(!strcmp(kind->str, "gpu") || !strcmp(kind->str, "igpu") ||
                  !strcmp(kind->str, "fpga") || !strcmp(kind->str, "cpu") ||
                  !strcmp(kind->str, "other"));
        /* The same devices in the same order as discovery here. */
        CU_ASSERT_STRING_EQUAL(mj_get(d, "name")->str, devs[i].info.name);
        CU_ASSERT_EQUAL(mj_get(d, "usable")->boolean, devs[i].info.usable);
        usable += devs[i].info.usable != 0;
        if (!strcmp(devs[i].info.platform, "Portable Computing Language")) {
            pocl++;
            CU_ASSERT_STRING_EQUAL(kind->str, "cpu");
        }
    }
    printf("\n  %zu device(s) in the JSON, %zu from PoCL\n", list->n, pocl);
    check_selected(mj_get(root, "selected"));
    {
        /* The probe reports the choice attn_context_create makes. */
        attn_device_info *infos = calloc(n ? n : 1, sizeof *infos);
        attn_selection sel;
        attn_err err = {{0}};
        CU_ASSERT_PTR_NOT_NULL_FATAL(infos);
        for (size_t i = 0; i < n; i++)
            infos[i] = devs[i].info;
        CU_ASSERT_EQUAL(attn_cl_select(infos, n, "auto",
                                       ATTN_CL_NATIVE_BEATS_CPU, &sel, &err),
                        ATTN_OK);
        CU_ASSERT_EQUAL(
            !strcmp(mj_get(mj_get(root, "selected"), "kind")->str, "native"),
            sel.native);
        CU_ASSERT(usable > 0 || sel.native);
        free(infos);
    }
    mj_free(root);
    free(devs);
}

static void test_json_device_choice(void)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    mj *root;
    CU_ASSERT_EQUAL_FATAL(attn_cl_discover(&devs, &n, NULL), ATTN_OK);
    root = run_json("ATTN_DEVICE=native", "", 0);
    if (root) {
        check_selected(mj_get(root, "selected"));
        CU_ASSERT_STRING_EQUAL(mj_get(mj_get(root, "selected"), "kind")->str,
                               "native");
        mj_free(root);
    }
    if (n > 0 && devs[0].info.usable) {
        /* -d wins over ATTN_DEVICE. */
        const mj *sel;
        root = run_json("ATTN_DEVICE=native", "-d 0:0", 0);
        if (root) {
            sel = mj_get(root, "selected");
            check_selected(sel);
            CU_ASSERT_EQUAL(mj_get(sel, "platform_index")->num, 0.0);
            CU_ASSERT_EQUAL(mj_get(sel, "device_index")->num, 0.0);
            CU_ASSERT_STRING_EQUAL(mj_get(sel, "name")->str, devs[0].info.name);
            mj_free(root);
        }
    }
    /* A spec that names nothing: exit 1, still one JSON object. */
    root = run_json("", "-d no-such-device-anywhere", 1);
    if (root) {
        CU_ASSERT(is(mj_get(root, "selected"), MJ_NULL));
        CU_ASSERT(is(mj_get(root, "error"), MJ_STR));
        mj_free(root);
    }
    free(devs);
}

static void test_no_platform(void)
{
    char env[256], *out = NULL;
    mj *root;
    int rc;
    /* An ICD loader that finds no vendor file sees no platform. */
    snprintf(env, sizeof env, "-u OCL_ICD_FILENAMES OCL_ICD_VENDORS='%s'",
             empty_dir);
    rc = run(env, "", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "No OpenCL platform"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "native"));
    /* The hint: no driver registered there, and what to install. */
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "no OpenCL driver (ICD) is registered"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, empty_dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "pocl-opencl-icd"));
    free(out);

    root = run_json(env, "", 0);
    if (root) {
        const mj *list = mj_get(root, "devices");
        CU_ASSERT(is(list, MJ_ARR) && list->n == 0);
        check_selected(mj_get(root, "selected"));
        CU_ASSERT_STRING_EQUAL(mj_get(mj_get(root, "selected"), "kind")->str,
                               "native");
        mj_free(root);
    }
    /* Asking for a GPU there is work that fails. */
    rc = run(env, "-d gpu", 1, &out);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT(out && strstr(out, "matches no device"));
    free(out);
}

static void test_exit_status(void)
{
    char *out = NULL;
    int rc = run("", "", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(out && strstr(out, "Selected (auto)"));
    /* PoCL lists no subgroup extension: the local-memory reductions. */
    CU_ASSERT(out && strstr(out, "Subgroup shuffles") &&
              strstr(out, "none (the tiled variant reduces through local "
                          "memory)"));
    free(out);

    rc = run("", "-d no-such-device-anywhere", 1, &out);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT(out && strstr(out, "matches no device") && strstr(out, "native"));
    free(out);

    rc = run("", "--bench --json", 1, &out);
    CU_ASSERT_EQUAL(rc, 2);
    CU_ASSERT(out && strstr(out, "do not combine"));
    free(out);

    rc = run("", "--help", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(out && strstr(out, "usage:"));
    free(out);

    rc = run("", "--no-such-option", 1, &out);
    CU_ASSERT_EQUAL(rc, 2);
    free(out);
}

/* --bench: the native backend is the reference; a device that passes
 * prints the kernel and precision it ran, its difference and GFLOP/s, one
 * that fails says why and makes the exit status 1 while the reference
 * still runs. */
static void test_bench(void)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    char *out = NULL, env[1200], dir[] = "/tmp/attn-bad-binXXXXXX";
    char name[256], path[600], path2[600];
    FILE *f;
    int rc = run("ATTN_CACHE_DIR=", "--bench -d native", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT(strstr(out, "N=1024") && strstr(out, "GFLOP/s"));
    CU_ASSERT(strstr(out, "native backend") && strstr(out, "(reference)"));
    CU_ASSERT(strstr(out, "all devices passed") && !strstr(out, "FAIL"));
    CU_ASSERT(strstr(out, " native exact ") &&
              strstr(out, "precision asked: exact"));
    free(out);

    /* What was asked, and what ran: the native backend computes EXACT. */
    rc = run("ATTN_CACHE_DIR= ATTN_PRECISION=tf32", "--bench -d native", 1,
             &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT(strstr(out, " native exact ") &&
              strstr(out, "precision asked: tf32"));
    free(out);

    snprintf(env, sizeof env, "-u OCL_ICD_FILENAMES OCL_ICD_VENDORS='%s'",
             empty_dir);
    rc = run(env, "--bench", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT(out && strstr(out, "only the native backend"));
    free(out);

    CU_ASSERT_EQUAL_FATAL(attn_cl_discover(&devs, &n, NULL), ATTN_OK);
    if (n == 0 || !devs[0].info.usable) {
        printf("\n  SKIP: no usable OpenCL device 0:0 for --bench\n");
        free(devs);
        return;
    }
    /* ATTN_DEVICE does not redirect the bench's own "P:D" contexts. */
    rc = run("ATTN_CACHE_DIR= ATTN_DEVICE=native", "--bench -d 0:0", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT(strstr(out, "\n0:0 ") && strstr(out, " pass "));
    CU_ASSERT(strstr(out, "all devices passed") && !strstr(out, "FAIL"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, " exact ")); /* the device's row */
    if (rc != 0)
        printf("\n%s\n", out);
    free(out);

    /* Garbage offline binaries for the device's f32 programs (whichever
     * path the bench takes): its build fails. */
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    snprintf(path, sizeof path, "%s fused_f32", devs[0].info.name);
    attn_cl_binary_name(path, name, sizeof name);
    snprintf(path2, sizeof path2, "%s/%s.bin", dir, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f = fopen(path2, "wb"));
    fputs("not a program binary", f);
    fclose(f);
    snprintf(path, sizeof path, "%s unfused_f32", devs[0].info.name);
    attn_cl_binary_name(path, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f = fopen(path, "wb"));
    fputs("not a program binary", f);
    fclose(f);
    snprintf(env, sizeof env, "ATTN_CACHE_DIR= ATTN_KERNEL_BINARY_DIR='%s'",
             dir);
    rc = run(env, "--bench -d 0:0", 1, &out);
    CU_ASSERT_EQUAL(rc, 1);
    CU_ASSERT_PTR_NOT_NULL(out);
    if (out) {
        CU_ASSERT(strstr(out, "(reference)") != NULL);
        CU_ASSERT(strstr(out, "\n0:0 ") && strstr(out, "FAILED: "));
        CU_ASSERT(strstr(out, "ATTN_ERR_BUILD_FAILED") != NULL);
        CU_ASSERT(strstr(out, "some devices FAILED") != NULL);
    }
    free(out);
    unlink(path);
    unlink(path2);
    rmdir(dir);
    free(devs);
}

/* The reader is strict, so a pass above means valid JSON. */
static void test_reader_strict(void)
{
    static const char *const bad[] = {
        "{\"a\": 1,}",   "[1 2]", "\"\x01\"", "01",       "{\"a\"}",
        "nan",           "\"abc", "[1]x",     "{'a': 1}", "[\"\\q\"]",
        "[\"\\ud800\"]", "",      "-",        "1."};
    const char *good = "{\"a\": [1, 2.5e3, -0, true, false, null, "
                       "\"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}}";
    mj *v = mj_parse(good, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_EQUAL(mj_get(v, "a")->n, 7);
    CU_ASSERT_EQUAL(mj_get(v, "a")->items[1].num, 2500.0);
    CU_ASSERT_STRING_EQUAL(mj_get(v, "a")->items[6].str,
                           "x\xc3\xa9\xf0\x9f\x98\x80\n");
    mj_free(v);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = mj_parse(bad[i], NULL, 0);
        CU_ASSERT_PTR_NULL(v);
        if (v)
            printf("\n  accepted invalid JSON: %s\n", bad[i]);
        mj_free(v);
    }
}

/* The OpenCL version of each device, the native backend's instruction set
 * and threads (as the variables set them), and --verbose's extensions. */
static void test_versions_native_extensions(void)
{
    attn_cl_device *devs = NULL;
    size_t n = 0;
    char *out = NULL;
    mj *root;
    int rc;
    CU_ASSERT_EQUAL_FATAL(attn_cl_discover(&devs, &n, NULL), ATTN_OK);
    root = run_json("ATTN_NUM_THREADS=3 ATTN_CPU_ISA=generic", "-v", 0);
    if (root) {
        const mj *nv = mj_get(root, "native"), *list = mj_get(root, "devices");
        CU_ASSERT_FATAL(is(nv, MJ_OBJ));
        CU_ASSERT(is(mj_get(nv, "isa"), MJ_STR) &&
                  !strcmp(mj_get(nv, "isa")->str, "generic"));
        CU_ASSERT(is(mj_get(nv, "threads"), MJ_NUM) &&
                  mj_get(nv, "threads")->num == 3.0);
        CU_ASSERT(is(mj_get(root, "icd_files"), MJ_NUM));
        CU_ASSERT_FATAL(is(list, MJ_ARR));
        for (size_t i = 0; i < list->n && i < n; i++) {
            const mj *d = &list->items[i], *ver = mj_get(d, "opencl_version");
            const mj *ext = mj_get(d, "extensions");
            CU_ASSERT(is(ver, MJ_STR) &&
                      !strcmp(ver->str, devs[i].info.opencl_version));
            CU_ASSERT(!strncmp(devs[i].info.opencl_version, "OpenCL ", 7));
            CU_ASSERT(is(ext, MJ_ARR) && ext->n > 0);
        }
        mj_free(root);
    }
    /* The native backend's threads do not depend on ATTN_DEVICE (which
     * would override a context's device): the same 3 when it names no
     * device and -d selects native. */
    root = run_json("ATTN_NUM_THREADS=3 ATTN_DEVICE=no-such-device-anywhere",
                    "-d native", 0);
    if (root) {
        const mj *nv = mj_get(root, "native");
        CU_ASSERT(is(nv, MJ_OBJ) && is(mj_get(nv, "threads"), MJ_NUM) &&
                  mj_get(nv, "threads")->num == 3.0);
        mj_free(root);
    }
    /* An ATTN_DEVICE that is no spec at all: a warning, and auto selects,
     * as attn_context_create does. */
    rc = run("ATTN_DEVICE=native,cpu", "", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT(strstr(out, "ATTN_DEVICE=\"native,cpu\" is not a device spec") !=
              NULL);
    CU_ASSERT(strstr(out, "Selected (auto)") != NULL);
    free(out);
    out = NULL;
    /* The table: the same, and the first extension of each device. */
    rc = run("ATTN_NUM_THREADS=3 ATTN_CPU_ISA=generic", "--verbose", 1, &out);
    CU_ASSERT_EQUAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT(
        strstr(out, "Native backend  generic kernels, 3 worker threads") !=
        NULL);
    for (size_t i = 0; i < n; i++) {
        char ext[4096] = "";
        size_t len;
        CU_ASSERT(strstr(out, devs[i].info.opencl_version) != NULL);
        if (clGetDeviceInfo(devs[i].device, CL_DEVICE_EXTENSIONS, sizeof ext,
                            ext, NULL) != CL_SUCCESS)
            continue;
        len = strcspn(ext, " ");
        ext[len] = '\0';
        CU_ASSERT(strstr(out, "Extensions") && strstr(out, ext));
    }
    free(out);
    /* Without --verbose, no extension list. */
    rc = run("", "", 1, &out);
    CU_ASSERT(rc == 0 && out && !strstr(out, "Extensions"));
    CU_ASSERT(out && strstr(out, "OpenCL version"));
    free(out);
    free(devs);
}

int main(int argc, char **argv)
{
    static const harness_test tests[] = {
        {"OpenCL versions, native backend, extensions",
         test_versions_native_extensions},
        {"--json parses and has the documented structure", test_json_structure},
        {"-d and ATTN_DEVICE", test_json_device_choice},
        {"no OpenCL platform", test_no_platform},
        {"exit status", test_exit_status},
        {"--bench", test_bench},
        {"the JSON reader is strict", test_reader_strict},
        {NULL, NULL}};
    int rc;
    if (argc != 2 || strchr(argv[1], '\'')) {
        fprintf(stderr, "usage: %s PATH-TO-attn-probe (without quotes)\n",
                argv[0]);
        return 2;
    }
    probe = argv[1];
    if (!mkdtemp(empty_dir)) {
        perror("mkdtemp");
        return 1;
    }
    rc = harness_main("opencl_probe", NULL, NULL, tests);
    rmdir(empty_dir);
    return rc;
}
