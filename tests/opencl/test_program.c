/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The program cache and the offline-binary loader (src/opencl/program.c,
 * program_cache.c) on the real OpenCL CPU device (PoCL), through the
 * public API: contexts on device "cpu" with fallback off, the cache in a
 * folder of the test's own (options.cache_dir), the log callback at DEBUG,
 * and every result checked against the reference oracle.
 *
 * Cache: a miss writes one entry, a second runtime hits it; truncated,
 * garbage and rejected entries are rebuilt and rewritten; a folder that
 * cannot be created (or is a file) costs only time; "" disables the cache;
 * two threads, and two processes started together, building into one
 * folder leave one valid entry that a third process hits; a read-only
 * folder (for root too: the child process gives up CAP_DAC_OVERRIDE) is
 * read but never written; a full disk (RLIMIT_FSIZE while the entry is
 * written, SIGXFSZ ignored) is logged, leaves no partial or temporary file
 * and no damaged entry, and a later process caches the program.  The
 * processes are this executable run again (program_child.c).  What the
 * cache trusts, refuses and removes is test_cache_trust.c's.
 *
 * Binaries: the payload of a cache entry, placed in ATTN_KERNEL_BINARY_DIR
 * under the program's name ("<device> unfused_f32" normalised), runs; a
 * program without a binary is built; a garbage binary fails with fallback
 * off (o untouched) and falls back with fallback on.  A failed build hands
 * its log to the log callback.
 *
 * Every test works in its own folder under one mkdtemp'd root, removed at
 * the end.  Without a usable OpenCL device the suite prints SKIP and exits
 * 77.  The fixtures (cases, folders, cache files, the log capture) are in
 * program_fixture.c.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/context.h"
#include "cases.h"
#include "harness.h"
#include "opencl/backend_cl.h"
#include "opencl/discovery.h"
#include "opencl/driver.h"
#include "program_child.h"
#include "program_fixture.h"

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
    CU_ASSERT(now && n2 > ENTRY_HEADER &&
              memcmp(now, orig, ENTRY_KEY_END) == 0);

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
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_FATAL(fixture_valid_entry(path)); /* the checksum mirror agrees */
    memcpy(p, e, ENTRY_HEADER);
    for (size_t i = ENTRY_HEADER; i < n; i++)
        p[i] = (unsigned char)(i * 131u + 7u);
    fixture_seal_entry(p, n);
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

    /* The cache path is a file itself: it exists, but holds no entries. */
    CU_ASSERT(fixture_run_f32(file, cap, "cache path is a file"));
    CU_ASSERT(fixture_logged(cap, "cannot be created"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    {
        size_t n = 0;
        unsigned char *x = fixture_read_all(file, &n);
        CU_ASSERT(x && n == 1 && x[0] == 'x');
        free(x);
    }

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

/* Two processes started together build the same program into one empty
 * folder: both compute right, one valid entry and nothing else is left,
 * and a third process hits it without rewriting it. */
static void test_two_processes(void)
{
    for (int round = 0; round < 2; round++) {
        char name[32], dir[512], logs[512], logp[3][600], entry[1024];
        char again[1024];
        int ready[2], go[2], rc[2], built = 0;
        pid_t pid[2];
        size_t got = 0;
        struct stat st1, st2;
        log_capture *cap = calloc(1, sizeof *cap);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
        snprintf(name, sizeof name, "procs-%d", round);
        CU_ASSERT_EQUAL_FATAL(fixture_test_dir(name, dir, sizeof dir), 0);
        snprintf(name, sizeof name, "procs-%d-logs", round);
        CU_ASSERT_EQUAL_FATAL(fixture_test_dir(name, logs, sizeof logs), 0);
        for (int i = 0; i < 3; i++)
            snprintf(logp[i], sizeof logp[i], "%s/child-%d.log", logs, i);
        CU_ASSERT_EQUAL_FATAL(pipe(ready), 0);
        CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
        for (int i = 0; i < 2; i++)
            pid[i] = child_spawn("run", dir, logp[i], "-", ready[1], go[0],
                                 ready[0], go[1]);
        close(ready[1]);
        close(go[0]);
        /* Both contexts exist; then both start at once (end of go). */
        while (got < 2) {
            char byte;
            ssize_t r = read(ready[0], &byte, 1);
            if (r > 0)
                got++;
            else if (r == 0 || errno != EINTR)
                break;
        }
        close(go[1]);
        close(ready[0]);
        for (int i = 0; i < 2; i++)
            rc[i] = pid[i] > 0 ? child_wait(pid[i], NULL) : -1;
        CU_ASSERT(pid[0] > 0 && pid[1] > 0);
        CU_ASSERT_EQUAL(got, 2);
        for (int i = 0; i < 2; i++) {
            CU_ASSERT_EQUAL(fixture_load_log(logp[i], cap), 0);
            if (rc[i] != CHILD_OK)
                printf("\n  racer %d: exit %d; log:\n%s", i, rc[i], cap->text);
            CU_ASSERT_EQUAL(rc[i], CHILD_OK);
            /* The first to look finds nothing; the other may find its
             * entry already. */
            CU_ASSERT(fixture_logged(cap, "built program") !=
                      fixture_logged(cap, "cache hit"));
            if (fixture_logged(cap, "built program")) {
                built++;
                CU_ASSERT(fixture_logged(cap, "cached program"));
            }
            CU_ASSERT(!fixture_logged(cap, "corrupt"));
            CU_ASSERT(!fixture_logged(cap, "cannot write"));
        }
        CU_ASSERT(built >= 1);
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", entry, sizeof entry),
                        1);
        CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 3); /* . .. */
        CU_ASSERT(fixture_valid_entry(entry));
        CU_ASSERT_EQUAL(stat(entry, &st1), 0);

        CU_ASSERT_EQUAL(child_run("run", dir, "-", logp[2], cap, NULL),
                        CHILD_OK);
        CU_ASSERT(fixture_logged(cap, "cache hit"));
        CU_ASSERT(!fixture_logged(cap, "built program"));
        CU_ASSERT(!fixture_logged(cap, "cached program"));
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", again, sizeof again),
                        1);
        CU_ASSERT_STRING_EQUAL(again, entry);
        CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 3);
        CU_ASSERT(stat(entry, &st2) == 0 && st2.st_ino == st1.st_ino &&
                  st2.st_size == st1.st_size);
        free(cap);
    }
}

/* Read-only cache folders, for root too (the child gives up
 * CAP_DAC_OVERRIDE): an empty one is not written; one with a valid entry
 * is hit; one with a corrupt entry rebuilds and leaves it as it is. */
static void test_read_only_dir(void)
{
    char dir[512], logs[512], logp[600], empty[700], hit[700];
    char bad[700], entry_hit[1100], entry_bad[1100];
    unsigned char *before_hit = NULL, *before_bad = NULL, *now = NULL;
    size_t n_hit = 0, n_bad = 0, n = 0;
    log_capture *cap = calloc(1, sizeof *cap);
    int rc;
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("read-only", dir, sizeof dir), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("read-only-logs", logs, sizeof logs),
                          0);
    snprintf(logp, sizeof logp, "%s/child.log", logs);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    snprintf(hit, sizeof hit, "%s/valid", dir);
    snprintf(bad, sizeof bad, "%s/corrupt", dir);
    CU_ASSERT_EQUAL_FATAL(mkdir(empty, 0755), 0);
    CU_ASSERT_FATAL(fixture_run_f32(hit, cap, "fill the read-only cache"));
    CU_ASSERT_FATAL(fixture_run_f32(bad, cap, "fill the read-only cache"));
    CU_ASSERT_EQUAL_FATAL(
        fixture_count_files(hit, ".clbin", entry_hit, sizeof entry_hit), 1);
    CU_ASSERT_EQUAL_FATAL(
        fixture_count_files(bad, ".clbin", entry_bad, sizeof entry_bad), 1);
    before_hit = fixture_read_all(entry_hit, &n_hit);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before_hit);
    before_bad = fixture_read_all(entry_bad, &n_bad);
    CU_ASSERT_PTR_NOT_NULL_FATAL(before_bad);
    for (size_t i = ENTRY_HEADER; i < n_bad; i++)
        before_bad[i] ^= 0x5a;
    CU_ASSERT_EQUAL_FATAL(fixture_write_all(entry_bad, before_bad, n_bad), 0);
    CU_ASSERT_FATAL(chmod(empty, 0500) == 0 && chmod(hit, 0500) == 0 &&
                    chmod(bad, 0500) == 0);

    rc = child_run("nodac", empty, "-", logp, cap, NULL);
    if (rc == CHILD_CANNOT) {
        printf("\n  (no way to make a folder read-only for this process "
               "here: skipped)\n");
        goto out;
    }
    CU_ASSERT_EQUAL(rc, CHILD_OK);
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(fixture_logged(cap, "not writable"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(empty, "", NULL, 0), 2); /* . .. */

    CU_ASSERT_EQUAL(child_run("nodac", hit, "-", logp, cap, NULL), CHILD_OK);
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "not writable"));
    CU_ASSERT_EQUAL(fixture_count_files(hit, "", NULL, 0), 3);
    now = fixture_read_all(entry_hit, &n);
    CU_ASSERT(now && n == n_hit && !memcmp(now, before_hit, n));
    free(now);

    CU_ASSERT_EQUAL(child_run("nodac", bad, "-", logp, cap, NULL), CHILD_OK);
    CU_ASSERT(fixture_logged(cap, "is corrupt"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(fixture_logged(cap, "not writable"));
    CU_ASSERT_EQUAL(fixture_count_files(bad, "", NULL, 0), 3);
    now = fixture_read_all(entry_bad, &n);
    CU_ASSERT(now && n == n_bad && !memcmp(now, before_bad, n));
    free(now);
out:
    free(before_hit);
    free(before_bad);
    free(cap);
}

/* A full disk, simulated: the child's writes of the entry fail with EFBIG
 * (RLIMIT_FSIZE, SIGXFSZ ignored), at the first byte or within the
 * payload.  The call computes right, the failure is logged, no partial or
 * temporary file is left (nor does it replace an older entry), and a
 * later process with room caches the program. */
static void test_full_disk(void)
{
    static const unsigned long limits[] = {0, ENTRY_HEADER + 4096};
    char logs[512], logp[600], want[256], arg[32];
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("full-logs", logs, sizeof logs), 0);
    snprintf(logp, sizeof logp, "%s/child.log", logs);
    snprintf(want, sizeof want, "(write: %s)", strerror(EFBIG));
    for (int round = 0; round < 3; round++) {
        char name[32], dir[512], entry[1024];
        unsigned char *old = NULL, *now = NULL;
        size_t n_old = 0, n = 0;
        snprintf(name, sizeof name, "full-%d", round);
        CU_ASSERT_EQUAL_FATAL(fixture_test_dir(name, dir, sizeof dir), 0);
        snprintf(arg, sizeof arg, "%lu", limits[round ? 1 : 0]);
        if (round == 2) {
            /* A corrupt entry the failed write must not replace. */
            CU_ASSERT_FATAL(fixture_run_f32(dir, cap, "entry to damage"));
            CU_ASSERT_EQUAL_FATAL(
                fixture_count_files(dir, ".clbin", entry, sizeof entry), 1);
            old = fixture_read_all(entry, &n_old);
            CU_ASSERT_PTR_NOT_NULL_FATAL(old);
            n_old = ENTRY_HEADER + (n_old - ENTRY_HEADER) / 2;
            CU_ASSERT_EQUAL_FATAL(fixture_write_all(entry, old, n_old), 0);
        }

        CU_ASSERT_EQUAL(child_run("fsize", dir, arg, logp, cap, NULL),
                        CHILD_OK);
        if (!fixture_logged(cap, want))
            printf("\n  full disk: log lacks \"%s\":\n%s", want, cap->text);
        CU_ASSERT(fixture_logged(cap, "built program"));
        CU_ASSERT(fixture_logged(cap, "[2] cannot write program cache entry"));
        CU_ASSERT(fixture_logged(cap, want));
        CU_ASSERT(!fixture_logged(cap, "cached program"));
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".tmp", NULL, 0), 0);
        if (round < 2) {
            CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 2);
        } else {
            CU_ASSERT(fixture_logged(cap, "is corrupt"));
            CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 3);
            now = fixture_read_all(entry, &n);
            CU_ASSERT(now && n == n_old && !memcmp(now, old, n));
            free(now);
        }

        /* A later process, with room. */
        CU_ASSERT_EQUAL(child_run("run", dir, "-", logp, cap, NULL), CHILD_OK);
        CU_ASSERT(fixture_logged(cap, "built program"));
        CU_ASSERT(fixture_logged(cap, "cached program"));
        CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", entry, sizeof entry),
                        1);
        CU_ASSERT_EQUAL(fixture_count_files(dir, "", NULL, 0), 3);
        CU_ASSERT(fixture_valid_entry(entry));
        CU_ASSERT(fixture_run_f32(dir, cap, "after the full disk"));
        CU_ASSERT(fixture_logged(cap, "cache hit"));
        free(old);
    }
    free(cap);
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

/* The variants built per shape never load an offline binary (one binary
 * cannot hold every head size's build): garbage under every name they
 * could be looked up by is ignored and the program is built. */
static void test_per_shape_no_binary(void)
{
    static const char *const names[] = {"tiled_f32", "splitkv_f32", ""};
    static const char *const kernels[] = {"tiled", "splitkv"};
    char bins[512], path[1400];
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("shape-binary", bins, sizeof bins),
                          0);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        fixture_binary_path(bins, names[i], path, sizeof path);
        CU_ASSERT_EQUAL_FATAL(fixture_write_all(path, "junk", 4), 0);
    }
    CU_ASSERT_EQUAL_FATAL(setenv("ATTN_KERNEL_BINARY_DIR", bins, 1), 0);
    for (size_t i = 0; i < 2; i++) {
        attn_options o;
        attn_context *ctx = NULL;
        sdpa_case c;
        attn_sdpa_desc d = {.batch = 1,
                            .heads_q = 2,
                            .heads_kv = 1,
                            .seq_q = 2,
                            .seq_kv = 40,
                            .head_dim = 32,
                            .head_dim_v = 32,
                            .dtype = ATTN_F32};
        fixture_options(&o, "", 0, cap);
        o.path = ATTN_PATH_AUTO;
        o.kernel = kernels[i];
        CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
        CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&c, &d, 7, 1.0, 0.0, 0), 0);
        HARNESS_EXPECT(sdpa_case_check(ctx, &c, NULL, 1, NULL, kernels[i]),
                       kernels[i]);
        HARNESS_EXPECT(!fixture_logged(cap, "loaded program binary"),
                       kernels[i]);
        HARNESS_EXPECT(fixture_logged(cap, "built program"), kernels[i]);
        sdpa_case_free(&c);
        attn_context_destroy(ctx);
    }
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    free(cap);
}

/* A build that fails (a broken -D through the tuning options): its log
 * reaches the log callback at ERROR, an excerpt reaches last_error,
 * nothing is cached, and with fallback on the call runs natively. */
static void test_build_log(void)
{
    char dir[512];
    log_capture *cap = calloc(1, sizeof *cap);
    const int unfused = attn_cl_variant_find("unfused");
    attn_cl_tuning t;
    attn_err err = {{0}};
    const size_t no = fixture_f32_case.no;
    float *o = malloc(no * sizeof *o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("build-log", dir, sizeof dir), 0);
    CU_ASSERT_TRUE_FATAL(unfused >= 0);
    attn_cl_tuning_default(attn_cl_variants[unfused], &t);
    snprintf(t.options, sizeof t.options, "-DSC_TQ=(");
    for (int fallback = 0; fallback <= 1; fallback++) {
        attn_context *ctx = fixture_make_ctx(dir, fallback, cap);
        attn_cl_runtime *rt;
        attn_status s;
        if (!ctx)
            continue;
        rt = attn_backend_cl_runtime(ctx->backend);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
        CU_ASSERT_EQUAL(attn_cl_set_tuning(rt, unfused, &t, &err), ATTN_OK);
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

int main(int argc, char **argv)
{
    static const harness_test tests[] = {
        {"miss then hit", test_miss_then_hit},
        {"truncated entry rebuilt", test_truncated_entry},
        {"garbage entry rebuilt", test_garbage_entry},
        {"unwritable cache folder", test_unwritable_dir},
        {"\"\" disables the cache", test_empty_disables},
        {"two threads, one folder", test_two_threads},
        {"two processes, one folder", test_two_processes},
        {"read-only cache folder", test_read_only_dir},
        {"full disk", test_full_disk},
        {"offline binary loader", test_binary_loader},
        {"garbage offline binary and fallback", test_bad_binary},
        {"variants built per shape take no offline binary",
         test_per_shape_no_binary},
        {"a failed build's log reaches the log", test_build_log},
        {NULL, NULL}};
    return fixture_main(argc, argv, "program cache", tests, NULL, NULL);
}
