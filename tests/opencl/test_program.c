/*
 * The program cache and the offline-binary loader (src/opencl/program.c) on
 * the real OpenCL CPU device (PoCL), through the public API: contexts on
 * device "cpu" with fallback off, the cache in a folder of the test's own
 * (options.cache_dir), the log callback at DEBUG, and every result checked
 * against the reference oracle.
 *
 * Cache: a miss writes one entry, a second runtime hits it; truncated,
 * garbage and rejected entries are rebuilt and rewritten; a folder that
 * cannot be created costs only time; "" disables the cache; two threads
 * building into one folder leave one valid entry.  Binaries: the payload
 * of a cache entry, placed in ATTN_KERNEL_BINARY_DIR under the program's
 * name ("<device> unfused_f32" normalised), runs; a program without a
 * binary is built; a garbage binary fails with fallback off (o untouched)
 * and falls back with fallback on.  A failed build hands its
 * log to the log callback.
 *
 * Every test works in its own folder under one mkdtemp'd root, removed at
 * the end.  Without a usable OpenCL device the suite prints SKIP and exits
 * 77.  The fixtures (cases, folders, cache files, the log capture) are in
 * program_fixture.c.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn_impl.h"
#include "cases.h"
#include "harness.h"
#include "opencl/backend_cl.h"
#include "opencl/discovery.h"
#include "opencl/sdpa_cl.h"
#include "program_fixture.h"

static int root_made;

/* ---- tests ------------------------------------------------------------ */

static void test_miss_then_hit(void)
{
    char dir[512], entry[1024], again[1024];
    log_capture *cap = calloc(1, sizeof *cap);
    struct stat st1, st2;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("hit", dir, sizeof dir), 0);

    CU_ASSERT(fixture_run_f32(dir, cap, "miss"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT(!fixture_logged(cap, "cache hit"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", entry, sizeof entry), 1);
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".tmp", NULL, 0), 0);
    CU_ASSERT(fixture_valid_entry(entry));
    CU_ASSERT_EQUAL_FATAL(stat(entry, &st1), 0);

    /* A second runtime (a new context) finds it and does not rewrite it. */
    CU_ASSERT(fixture_run_f32(dir, cap, "hit"));
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", again, sizeof again), 1);
    CU_ASSERT_STRING_EQUAL(again, entry);
    CU_ASSERT_EQUAL(stat(entry, &st2), 0);
    CU_ASSERT_EQUAL(st2.st_ino, st1.st_ino);
    CU_ASSERT_EQUAL(st2.st_size, st1.st_size);

    /* Other build options (the F16 program) are another key. */
    {
        attn_context *ctx = fixture_make_ctx(dir, 0, cap);
        if (ctx) {
            CU_ASSERT(sdpa_case_check(ctx, &fixture_f16_case, &fixture_f16_ref,
                                      1, NULL, "f16 miss"));
            attn_context_destroy(ctx);
        }
    }
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 2);
    free(cap);
}

/* Damages the only entry of dir with damage(), then checks that a new
 * runtime notices, computes right and rewrites it, and that the rewritten
 * entry is hit by the next one. */
typedef void (*damage_fn)(const char *path, const unsigned char *entry,
                          size_t n);

static void check_rebuilt(const char *name, damage_fn damage,
                          const char *expect_log)
{
    char dir[512], entry[1024];
    log_capture *cap = calloc(1, sizeof *cap);
    unsigned char *orig = NULL, *now = NULL;
    size_t n = 0, n2 = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir(name, dir, sizeof dir), 0);
    CU_ASSERT(fixture_run_f32(dir, cap, name));
    CU_ASSERT_EQUAL_FATAL(
        fixture_count_files(dir, ".clbin", entry, sizeof entry), 1);
    orig = fixture_read_all(entry, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);
    CU_ASSERT_FATAL(n > ENTRY_HEADER);

    damage(entry, orig, n);
    CU_ASSERT(!fixture_valid_entry(entry) || !strcmp(name, "rejected"));
    CU_ASSERT(fixture_run_f32(dir, cap, name));
    if (!fixture_logged(cap, expect_log))
        printf("\n  %s: log lacks \"%s\":\n%s", name, expect_log, cap->text);
    CU_ASSERT(fixture_logged(cap, expect_log));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cache hit"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 1);
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".tmp", NULL, 0), 0);
    CU_ASSERT(fixture_valid_entry(entry));
    /* Same magic and key (the payload of a rebuild need not be equal). */
    now = fixture_read_all(entry, &n2);
    CU_ASSERT(now && n2 > ENTRY_HEADER && memcmp(now, orig, 24) == 0);

    CU_ASSERT(fixture_run_f32(dir, cap, name));
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    free(now);
    free(orig);
    free(cap);
}

static void cut_in_payload(const char *path, const unsigned char *e, size_t n)
{
    CU_ASSERT_EQUAL(
        fixture_write_all(path, e, ENTRY_HEADER + (n - ENTRY_HEADER) / 2), 0);
}

static void cut_in_header(const char *path, const unsigned char *e, size_t n)
{
    (void)n;
    CU_ASSERT_EQUAL(fixture_write_all(path, e, ENTRY_HEADER / 2), 0);
}

static void empty_file(const char *path, const unsigned char *e, size_t n)
{
    (void)e;
    (void)n;
    CU_ASSERT_EQUAL(fixture_write_all(path, "", 0), 0);
}

static void one_byte_more(const char *path, const unsigned char *e, size_t n)
{
    unsigned char *p = malloc(n + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memcpy(p, e, n);
    p[n] = 0;
    CU_ASSERT_EQUAL(fixture_write_all(path, p, n + 1), 0);
    free(p);
}

static void garbage(const char *path, const unsigned char *e, size_t n)
{
    unsigned char *p = malloc(n);
    ref_rng r;
    (void)e;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    ref_rng_seed(&r, 7);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)ref_rng_next(&r);
    CU_ASSERT_EQUAL(fixture_write_all(path, p, n), 0);
    free(p);
}

/* One flipped payload byte: the checksum no longer matches. */
static void flipped_byte(const char *path, const unsigned char *e, size_t n)
{
    unsigned char *p = malloc(n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    memcpy(p, e, n);
    p[ENTRY_HEADER + (n - ENTRY_HEADER) / 3] ^= 0x10;
    CU_ASSERT_EQUAL(fixture_write_all(path, p, n), 0);
    free(p);
}

/* A well-formed entry (right key, size and checksum) whose payload the
 * driver rejects: the "cached program rejected" path. */
static void rejected(const char *path, const unsigned char *e, size_t n)
{
    unsigned char *p = malloc(n);
    uint64_t sum;
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_FATAL(fixture_valid_entry(path)); /* the checksum mirror agrees */
    memcpy(p, e, ENTRY_HEADER);
    for (size_t i = ENTRY_HEADER; i < n; i++)
        p[i] = (unsigned char)(i * 131u + 7u);
    sum = fixture_entry_checksum(p + ENTRY_HEADER, n - ENTRY_HEADER);
    memcpy(p + 32, &sum, 8);
    CU_ASSERT_EQUAL(fixture_write_all(path, p, n), 0);
    free(p);
}

static void test_truncated_entry(void)
{
    check_rebuilt("cut-payload", cut_in_payload, "is corrupt");
    check_rebuilt("cut-header", cut_in_header, "is corrupt");
    check_rebuilt("empty", empty_file, "is corrupt");
    check_rebuilt("longer", one_byte_more, "is corrupt");
}

static void test_garbage_entry(void)
{
    check_rebuilt("garbage", garbage, "is corrupt");
    check_rebuilt("flipped", flipped_byte, "is corrupt");
    check_rebuilt("rejected", rejected, "cached program rejected");
}

static void test_unwritable_dir(void)
{
    char dir[512], file[600], cache[700];
    log_capture *cap = calloc(1, sizeof *cap);
    struct stat st;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("unwritable", dir, sizeof dir), 0);
    /* A folder under a regular file can never be created, even by root
     * (chmod does not stop root, and CI runs as root). */
    snprintf(file, sizeof file, "%s/plain-file", dir);
    snprintf(cache, sizeof cache, "%s/sub/cache", file);
    CU_ASSERT_EQUAL_FATAL(fixture_write_all(file, "x", 1), 0);
    CU_ASSERT(fixture_run_f32(cache, cap, "cache under a file"));
    CU_ASSERT(fixture_logged(cap, "cannot be created"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(stat(cache, &st) != 0);
    CU_ASSERT(fixture_run_f32(cache, cap, "cache under a file, again"));
    CU_ASSERT(fixture_logged(cap, "built program"));

    /* chmod 0500 where it means something (not root). */
    if (geteuid() != 0) {
        char ro[700];
        snprintf(ro, sizeof ro, "%s/read-only", dir);
        CU_ASSERT_EQUAL_FATAL(mkdir(ro, 0500), 0);
        CU_ASSERT(fixture_run_f32(ro, cap, "read-only cache"));
        CU_ASSERT(fixture_logged(cap, "not writable"));
        CU_ASSERT_EQUAL(fixture_count_files(ro, "", NULL, 0), 2); /* . and .. */
    } else {
        printf("\n  (root: the chmod 0500 case is skipped)\n");
    }
    free(cap);
}

static void test_empty_disables(void)
{
    char dir[512];
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("disabled", dir, sizeof dir), 0);
    /* "" wins over ATTN_CACHE_DIR ... */
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_CACHE_DIR", dir, 1), 0);
    CU_ASSERT(fixture_run_f32("", cap, "cache off"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 2); /* . and .. */
    CU_ASSERT(fixture_run_f32("", cap, "cache off, again"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cache hit"));
    /* ... and NULL means ATTN_CACHE_DIR. */
    CU_ASSERT(fixture_run_f32(NULL, cap, "ATTN_CACHE_DIR"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 1);
    unsetenv("ATTN_CACHE_DIR");
    free(cap);
}

typedef struct racer {
    const char *dir;
    pthread_barrier_t *start;
    log_capture cap;
    int ok;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    attn_options o;
    attn_context *ctx = NULL;
    attn_options_init(&o);
    o.device = "cpu";
    o.allow_fallback = 0;
    o.path = ATTN_PATH_UNFUSED; /* the program the cache checks count */
    o.cache_dir = r->dir;
    o.log = fixture_capture;
    o.log_user = &r->cap;
    o.log_level = ATTN_LOG_DEBUG;
    /* Both contexts exist before either builds. */
    r->ok = attn_context_create(&o, &ctx) == ATTN_OK;
    pthread_barrier_wait(r->start);
    if (r->ok)
        r->ok = sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref, 1,
                                NULL, "racer");
    attn_context_destroy(ctx);
    return NULL;
}

static void test_two_threads(void)
{
    for (int round = 0; round < 3; round++) {
        char name[32], dir[512], entry[1024];
        racer *r = calloc(2, sizeof *r);
        pthread_barrier_t start;
        pthread_t t[2];
        int started[2];
        log_capture *cap = calloc(1, sizeof *cap);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
        snprintf(name, sizeof name, "race-%d", round);
        CU_ASSERT_EQUAL_FATAL(fixture_test_dir(name, dir, sizeof dir), 0);
        CU_ASSERT_EQUAL_FATAL(pthread_barrier_init(&start, NULL, 2), 0);
        for (int i = 0; i < 2; i++) {
            r[i].dir = dir;
            r[i].start = &start;
            started[i] = pthread_create(&t[i], NULL, race, &r[i]) == 0;
        }
        CU_ASSERT_FATAL(started[0] && started[1]);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        CU_ASSERT(r[0].ok);
        CU_ASSERT(r[1].ok);
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", entry, sizeof entry),
                        1);
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".tmp", NULL, 0), 0);
        CU_ASSERT(fixture_valid_entry(entry));
        CU_ASSERT(fixture_run_f32(dir, cap, "after the race"));
        CU_ASSERT(fixture_logged(cap, "cache hit"));
        free(cap);
        free(r);
    }
}

static void test_binary_loader(void)
{
    char src32[512], src16[512], bins[512], cache[512], path[1400];
    char found[1400], full[600];
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(
        fixture_test_dir("binary-src-f32", src32, sizeof src32), 0);
    CU_ASSERT_EQUAL_FATAL(
        fixture_test_dir("binary-src-f16", src16, sizeof src16), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("binary", bins, sizeof bins), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("binary-cache", cache, sizeof cache),
                          0);
    /* Binaries PoCL produced: the payloads of cache entries. */
    CU_ASSERT_FATAL(fixture_run_case(&fixture_f32_case, &fixture_f32_ref, src32,
                                     cap, "f32 source"));
    CU_ASSERT_FATAL(fixture_run_case(&fixture_f16_case, &fixture_f16_ref, src16,
                                     cap, "f16 source"));
    CU_ASSERT_EQUAL_FATAL(fixture_export_binary(src32, bins, "unfused_f32"), 0);
    fixture_binary_path(bins, "unfused_f32", path, sizeof path);
    snprintf(full, sizeof full, "%s unfused_f32", fixture_device_name);
    CU_ASSERT(attn_cl_find_binary(bins, full, found, sizeof found));
    CU_ASSERT_STRING_EQUAL(found, path);

    /* Only the F32 program has a binary: F32 loads it, F16 builds. */
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_KERNEL_BINARY_DIR", bins, 1), 0);
    CU_ASSERT(fixture_run_case(&fixture_f32_case, &fixture_f32_ref, cache, cap,
                               "f32 from binary"));
    if (!fixture_logged(cap, "loaded program binary"))
        printf("\n  log:\n%s", cap->text);
    CU_ASSERT(fixture_logged(cap, "loaded program binary"));
    CU_ASSERT(fixture_logged(cap, path));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    CU_ASSERT_EQUAL(fixture_count_files(cache, ".clbin", NULL, 0), 0);
    CU_ASSERT(fixture_run_case(&fixture_f16_case, &fixture_f16_ref, cache, cap,
                               "f16 built"));
    CU_ASSERT(!fixture_logged(cap, "loaded program binary"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT_EQUAL(fixture_count_files(cache, ".clbin", NULL, 0), 1);

    /* Both programs from their binaries, on one context. */
    CU_ASSERT_EQUAL_FATAL(fixture_export_binary(src16, bins, "unfused_f16"), 0);
    {
        attn_context *ctx = fixture_make_ctx("", 0, cap);
        if (ctx) {
            CU_ASSERT(sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref,
                                      1, NULL,
                                      "f32 from binary, shared context"));
            CU_ASSERT(sdpa_case_check(ctx, &fixture_f16_case, &fixture_f16_ref,
                                      1, NULL,
                                      "f16 from binary, shared context"));
            attn_context_destroy(ctx);
        }
    }
    CU_ASSERT(strstr(cap->text, "unfused_f32.bin") &&
              strstr(cap->text, "unfused_f16.bin"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    free(cap);
}

/* attn_sdpa on a context whose program binary is garbage: fails with
 * fallback off (o and lse untouched), runs natively with it on. */
static void check_bad_binary(const char *bins, const char *what)
{
    log_capture *cap = calloc(1, sizeof *cap);
    const size_t no = fixture_f32_case.no, nl = fixture_f32_case.nlse;
    float *o = malloc(no * sizeof *o), *lse = malloc(nl * sizeof *lse);
    attn_context *ctx;
    attn_status s;
    int untouched = 1;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_FATAL(o && lse);
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_KERNEL_BINARY_DIR", bins, 1), 0);

    if ((ctx = fixture_make_ctx("", 0, cap))) {
        for (int call = 0; call < 2; call++) {
            for (size_t i = 0; i < no; i++)
                o[i] = 1234.5f;
            for (size_t i = 0; i < nl; i++)
                lse[i] = -99.0f;
            s = attn_sdpa(ctx, &fixture_f32_case.d, fixture_f32_case.q,
                          fixture_f32_case.k, fixture_f32_case.v, o, lse);
            HARNESS_EXPECT(s == ATTN_ERR_BUILD_FAILED, what);
            for (size_t i = 0; i < no; i++)
                untouched &= o[i] == 1234.5f;
            for (size_t i = 0; i < nl; i++)
                untouched &= lse[i] == -99.0f;
            HARNESS_EXPECT(untouched, what);
            HARNESS_EXPECT(attn_context_last_error(ctx)[0] != '\0', what);
            HARNESS_EXPECT(!strstr(attn_context_last_error(ctx), "fell back"),
                           what);
        }
        attn_context_destroy(ctx);
    }

    if ((ctx = fixture_make_ctx("", 1, cap))) {
        HARNESS_EXPECT(sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref,
                                       1, NULL, "fallback"),
                       what);
        HARNESS_EXPECT(
            strstr(attn_context_last_error(ctx), "fell back") != NULL, what);
        HARNESS_EXPECT(fixture_logged(cap, "fell back"), what);
        /* Still the device's context: the next call falls back again. */
        HARNESS_EXPECT(sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref,
                                       0, NULL, "fallback, again"),
                       what);
        attn_context_destroy(ctx);
    }
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    free(lse);
    free(o);
    free(cap);
}

static void test_bad_binary(void)
{
    char bins[512], path[1400];
    unsigned char junk[4096];
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("bad-binary", bins, sizeof bins), 0);
    fixture_binary_path(bins, "unfused_f32", path, sizeof path);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37u + 11u);
    CU_ASSERT_EQUAL_FATAL(fixture_write_all(path, junk, sizeof junk), 0);
    check_bad_binary(bins, "garbage binary");
    CU_ASSERT_EQUAL_FATAL(fixture_write_all(path, "", 0), 0);
    check_bad_binary(bins, "empty binary");
}

/* A build that fails (a broken -D through the tuning options): its log
 * reaches the log callback at ERROR, an excerpt reaches last_error,
 * nothing is cached, and with fallback on the call runs natively. */
static void test_build_log(void)
{
    char dir[512];
    log_capture *cap = calloc(1, sizeof *cap);
    attn_cl_unfused_tuning t;
    attn_err err = {{0}};
    const size_t no = fixture_f32_case.no;
    float *o = malloc(no * sizeof *o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("build-log", dir, sizeof dir), 0);
    attn_cl_unfused_tuning_default(&t);
    snprintf(t.options, sizeof t.options, "-DSC_TQ=(");
    for (int fallback = 0; fallback <= 1; fallback++) {
        attn_context *ctx = fixture_make_ctx(dir, fallback, cap);
        attn_cl_runtime *rt;
        attn_status s;
        if (!ctx)
            continue;
        rt = attn_backend_cl_runtime(ctx->backend);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
        CU_ASSERT_EQUAL(attn_cl_unfused_set_tuning(rt, &t, &err), ATTN_OK);
        for (size_t i = 0; i < no; i++)
            o[i] = 7.0f;
        s = attn_sdpa(ctx, &fixture_f32_case.d, fixture_f32_case.q,
                      fixture_f32_case.k, fixture_f32_case.v, o, NULL);
        CU_ASSERT(fixture_logged(cap, "[1] kernel build failed"));
        CU_ASSERT(fixture_logged(cap, "SC_TQ=("));
        CU_ASSERT(fixture_logged(cap, "error"));
        if (!fallback) {
            int untouched = 1;
            CU_ASSERT_EQUAL(s, ATTN_ERR_BUILD_FAILED);
            CU_ASSERT(strstr(attn_context_last_error(ctx),
                             "CL_BUILD_PROGRAM_FAILURE") != NULL);
            for (size_t i = 0; i < no; i++)
                untouched &= o[i] == 7.0f;
            CU_ASSERT(untouched);
        } else {
            CU_ASSERT_EQUAL(s, ATTN_OK);
            CU_ASSERT(strstr(attn_context_last_error(ctx), "fell back") !=
                      NULL);
            CU_ASSERT(ref_check_sdpa("build failed, fallback",
                                     &fixture_f32_case.d, &fixture_f32_ref, o,
                                     NULL, NULL));
        }
        attn_context_destroy(ctx);
    }
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 0);
    free(o);
    free(cap);
}

int main(void)
{
    static const harness_test tests[] = {
        {"miss then hit", test_miss_then_hit},
        {"truncated entry rebuilt", test_truncated_entry},
        {"garbage entry rebuilt", test_garbage_entry},
        {"unwritable cache folder", test_unwritable_dir},
        {"\"\" disables the cache", test_empty_disables},
        {"two threads, one folder", test_two_threads},
        {"offline binary loader", test_binary_loader},
        {"garbage offline binary and fallback", test_bad_binary},
        {"a failed build's log reaches the log", test_build_log},
        {NULL, NULL}};
    attn_device_info devs[16];
    size_t n = 0, usable = 0;
    int rc;

    /* The test decides where programs come from. */
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_CACHE_DIR");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (attn_devices(devs, 16, &n) == ATTN_OK)
        for (size_t i = 0; i < n && i < 16; i++)
            usable += devs[i].usable && devs[i].kind == ATTN_DEVICE_CPU_OPENCL;
    if (usable == 0) {
        printf("SKIP: program cache: no usable OpenCL CPU device on this "
               "machine\n");
        return HARNESS_SKIP;
    }
    if (!mkdtemp(fixture_root)) {
        perror("mkdtemp");
        return 1;
    }
    root_made = 1;
    rc = harness_main("program cache", fixture_suite_init, fixture_suite_clean,
                      tests);
    if (root_made && fixture_remove_tree(fixture_root) != 0) {
        fprintf(stderr, "cannot remove %s\n", fixture_root);
        rc = 1;
    }
    return rc;
}
