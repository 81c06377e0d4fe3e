/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the program cache (src/opencl/program_cache.c) trusts, refuses and
 * removes, on the OpenCL CPU device (PoCL) through the public API, with
 * entries planted by the test itself (copies of entries the library wrote,
 * or crafted ones).  The cases that need a second user are in
 * test_cache_owners.c.
 *
 * Trust: folders the cache creates are 0700 and entries 0600, whatever the
 * umask; a symbolic link as the entry or as the cache folder, and a folder
 * or entry writable by group or others, are not read (a warning names them
 * and says why), the program is built from source and nothing is written
 * there; a relative XDG_CACHE_HOME or HOME is ignored; the default folder
 * is not used on PoCL (a named one is).  Files: a FIFO at
 * an entry's path does not hang the call; an entry whose header claims
 * more than the file holds, or that holds more than an entry may, is
 * rejected before its payload is allocated or read.  Wrong programs: a
 * well-formed entry holding another program (one without the expected
 * kernels) or one the driver rejects is removed and the program rebuilt
 * once.  Paths: a cache path over ATTN_CL_CACHE_DIR_MAX bytes turns the
 * cache off with a warning and creates nothing.  Key: it comes from what
 * the device reports, not from the runtime's record, and it changes with
 * the source and the options; every program of the library is found again
 * under its key.
 *
 * The suite skips (exit 77) without a usable OpenCL CPU device.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/context.h"
#include "cases.h"
#include "harness.h"
#include "opencl/backend_cl.h"
#include "opencl/program_cache.h"
#include "program_child.h"
#include "program_fixture.h"

/* A call that hangs is ended after this many seconds (the "watched"
 * child); a right one takes a few, a minute under valgrind. */
#define WATCHDOG_S "300"

static log_capture *new_cap(void)
{
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    return cap;
}

static unsigned mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? (unsigned)(st.st_mode & 07777) : 0xffffu;
}

/* ---- trust ------------------------------------------------------------ */

static void test_created_modes(void)
{
    char dir[512], a[600], cache[700], entry[1024];
    log_capture *cap = new_cap();
    mode_t old = umask(0); /* the modes are the library's own choice */
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("modes", dir, sizeof dir), 0);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(cache, sizeof cache, "%s/b/cache", a);
    CU_ASSERT(fixture_run_f32(cache, cap, "a new cache folder"));
    umask(old);
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(mode_of(a), 0700);
    CU_ASSERT_EQUAL(mode_of(cache), 0700);
    CU_ASSERT_EQUAL_FATAL(
        fixture_count_files(cache, ".clbin", entry, sizeof entry), 1);
    CU_ASSERT_EQUAL(mode_of(entry), 0600);
    /* and under a umask that takes the owner's bits too */
    snprintf(a, sizeof a, "%s/c", dir);
    snprintf(cache, sizeof cache, "%s/d/cache", a);
    old = umask(0277);
    CU_ASSERT(fixture_run_f32(cache, cap, "a new cache folder, umask 0277"));
    umask(old);
    CU_ASSERT_EQUAL(mode_of(a), 0700);
    CU_ASSERT_EQUAL(mode_of(cache), 0700);
    CU_ASSERT_EQUAL_FATAL(
        fixture_count_files(cache, ".clbin", entry, sizeof entry), 1);
    CU_ASSERT_EQUAL(mode_of(entry), 0600);
    free(cap);
}

static void test_symlinked_entry(void)
{
    char dir[512], cache[600], elsewhere[600], entry[1024], target[1024];
    char link[2100];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    struct stat st;
    ssize_t n;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("link-entry", dir, sizeof dir), 0);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", dir);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(elsewhere, cap, target, sizeof target),
                          0);
    CU_ASSERT_EQUAL_FATAL(mkdir(cache, 0700), 0);
    /* The entry's name in the cache is a link to a valid entry. */
    snprintf(entry, sizeof entry, "%s", strrchr(target, '/') + 1);
    snprintf(link, sizeof link, "%s/%s", cache, entry);
    CU_ASSERT_EQUAL_FATAL(symlink(target, link), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_snapshot(elsewhere, &snap), 0);

    fixture_expect_refused(cache, cap, link, "it is a symbolic link");
    CU_ASSERT(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    n = readlink(link, entry, sizeof entry - 1);
    CU_ASSERT(n > 0 && (size_t)n == strlen(target) &&
              !strncmp(entry, target, (size_t)n));
    CU_ASSERT_EQUAL(fixture_count_files(cache, "", NULL, 0), 3);
    CU_ASSERT(fixture_unchanged(elsewhere, &snap));
    fixture_snapshot_free(&snap);
    free(cap);
}

static void test_symlinked_folder(void)
{
    char dir[512], real[600], link[600], entry[1024];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("link-dir", dir, sizeof dir), 0);
    snprintf(real, sizeof real, "%s/real", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(real, cap, entry, sizeof entry), 0);
    CU_ASSERT_EQUAL_FATAL(symlink(real, link), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_snapshot(real, &snap), 0);
    fixture_expect_refused(link, cap, link, "it is a symbolic link");
    CU_ASSERT(fixture_unchanged(real, &snap));
    /* With a trailing '/' too: still the link's own name; and "/." */
    strcat(link, "/");
    fixture_expect_refused(link, cap, "link is not used",
                           "it is a symbolic link");
    CU_ASSERT(fixture_unchanged(real, &snap));
    strcat(link, "./.");
    fixture_expect_refused(link, cap, "link is not used",
                           "it is a symbolic link");
    CU_ASSERT(fixture_unchanged(real, &snap));
    /* a last part "..": no cache at all (its link could not be seen) */
    snprintf(link, sizeof link, "%s/real/sub/..", dir);
    fixture_expect_refused(link, cap, "ends in", "caching off");
    CU_ASSERT(fixture_unchanged(real, &snap));
    fixture_snapshot_free(&snap);
    free(cap);
}

static void test_writable_by_others(void)
{
    static const unsigned dir_modes[] = {0777, 0770, 01777};
    static const unsigned entry_modes[] = {0666, 0620};
    char dir[512], sub[600], entry[1024], why[64];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("writable", dir, sizeof dir), 0);
    for (size_t i = 0; i < sizeof dir_modes / sizeof dir_modes[0]; i++) {
        snprintf(sub, sizeof sub, "%s/dir-%04o", dir, dir_modes[i]);
        CU_ASSERT_EQUAL_FATAL(fixture_fill(sub, cap, entry, sizeof entry), 0);
        CU_ASSERT_EQUAL_FATAL(chmod(sub, dir_modes[i]), 0);
        CU_ASSERT_EQUAL_FATAL(fixture_snapshot(sub, &snap), 0);
        snprintf(why, sizeof why, "writable by group or others (mode %04o)",
                 dir_modes[i]);
        fixture_expect_refused(sub, cap, sub, why);
        CU_ASSERT(fixture_unchanged(sub, &snap));
        fixture_snapshot_free(&snap);
    }
    for (size_t i = 0; i < sizeof entry_modes / sizeof entry_modes[0]; i++) {
        snprintf(sub, sizeof sub, "%s/entry-%04o", dir, entry_modes[i]);
        CU_ASSERT_EQUAL_FATAL(fixture_fill(sub, cap, entry, sizeof entry), 0);
        CU_ASSERT_EQUAL_FATAL(chmod(entry, entry_modes[i]), 0);
        CU_ASSERT_EQUAL_FATAL(fixture_snapshot(sub, &snap), 0);
        snprintf(why, sizeof why, "writable by group or others (mode %04o)",
                 entry_modes[i]);
        fixture_expect_refused(sub, cap, entry, why);
        CU_ASSERT(fixture_unchanged(sub, &snap));
        CU_ASSERT_EQUAL(mode_of(entry), entry_modes[i]);
        fixture_snapshot_free(&snap);
    }
    free(cap);
}

/* Sets or unsets (value NULL) an environment variable. */
static void set_env(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* HOME and XDG_CACHE_HOME back to the values saved (strdup'ed, or NULL:
 * unset), which are freed. */
static void restore_home(char *old_home, char *old_xdg)
{
    set_env("HOME", old_home);
    set_env("XDG_CACHE_HOME", old_xdg);
    free(old_home);
    free(old_xdg);
}

static void test_relative_xdg(void)
{
    char dir[512], home[600], cwd_dir[600], here[1024], path[800];
    char *old_home = getenv("HOME"), *old_xdg = getenv("XDG_CACHE_HOME");
    log_capture *cap = new_cap();
    struct stat st;
    old_home = old_home ? strdup(old_home) : NULL;
    old_xdg = old_xdg ? strdup(old_xdg) : NULL;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("xdg", dir, sizeof dir), 0);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(cwd_dir, sizeof cwd_dir, "%s/cwd", dir);
    CU_ASSERT_FATAL(mkdir(home, 0700) == 0 && mkdir(cwd_dir, 0700) == 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(getcwd(here, sizeof here));
    CU_ASSERT_EQUAL_FATAL(chdir(cwd_dir), 0);

    /* The default folder's rules, on PoCL too (test_driver_cache). */
    setenv("ATTN_TEST_DRIVER_CACHE", "0", 1);
    /* A relative XDG_CACHE_HOME: HOME's cache instead. */
    setenv("HOME", home, 1);
    setenv("XDG_CACHE_HOME", "relative-cache", 1);
    CU_ASSERT(fixture_run_f32(NULL, cap, "relative XDG_CACHE_HOME"));
    CU_ASSERT(fixture_logged(cap, "[2] XDG_CACHE_HOME \"relative-cache\""));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    snprintf(path, sizeof path, "%s/relative-cache/libattn", cwd_dir);
    CU_ASSERT(stat(path, &st) != 0);
    snprintf(path, sizeof path, "%s/.cache/libattn", home);
    CU_ASSERT_EQUAL(fixture_count_files(path, ".clbin", NULL, 0), 1);

    /* A relative HOME (and no XDG_CACHE_HOME): no cache at all. */
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "relative-home", 1);
    CU_ASSERT(fixture_run_f32(NULL, cap, "relative HOME"));
    CU_ASSERT(fixture_logged(cap, "[2] HOME \"relative-home\""));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    snprintf(path, sizeof path, "%s/relative-home/.cache/libattn", cwd_dir);
    CU_ASSERT(stat(path, &st) != 0);

    CU_ASSERT_EQUAL(chdir(here), 0);
    unsetenv("ATTN_TEST_DRIVER_CACHE");
    restore_home(old_home, old_xdg);
    free(cap);
}

/* Whether the fixture's device (the first usable OpenCL CPU device, as
 * "cpu" picks) is PoCL's: 1, 0, or -1 when there is none. */
static int fixture_device_is_pocl(void)
{
    attn_device_info devs[16] = {ATTN_DEVICE_INFO_INIT};
    size_t n = 0;
    if (attn_devices(devs, 16, &n) != ATTN_OK)
        return -1;
    for (size_t i = 0; i < n && i < 16; i++)
        if (devs[i].usable && devs[i].kind == ATTN_DEVICE_CPU_OPENCL)
            return strstr(devs[i].platform, "Portable Computing Language") !=
                   NULL;
    return -1;
}

/* The default folder is not used on a driver that keeps compiled kernels
 * itself (PoCL: a program's binary costs it another compile); a folder
 * named by ATTN_CACHE_DIR or options.cache_dir still is, and a test build
 * can say the driver has no cache of its own (ATTN_TEST_DRIVER_CACHE=0). */
static void test_driver_cache(void)
{
    char dir[512], home[600], path[800], named[800];
    char *old_home = getenv("HOME"), *old_xdg = getenv("XDG_CACHE_HOME");
    const int pocl = fixture_device_is_pocl();
    log_capture *cap = new_cap();
    CU_ASSERT_FATAL(pocl >= 0);
    old_home = old_home ? strdup(old_home) : NULL;
    old_xdg = old_xdg ? strdup(old_xdg) : NULL;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("driver", dir, sizeof dir), 0);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(path, sizeof path, "%s/home/.cache/libattn", dir);
    snprintf(named, sizeof named, "%s/named", dir);
    CU_ASSERT_FATAL(mkdir(home, 0700) == 0);
    setenv("HOME", home, 1);
    unsetenv("XDG_CACHE_HOME");

    /* The default folder: none on PoCL, HOME's elsewhere. */
    CU_ASSERT(fixture_run_f32(NULL, cap, "the default folder"));
    CU_ASSERT_EQUAL(fixture_logged(cap, "no program cache on"), pocl);
    CU_ASSERT_EQUAL(fixture_logged(cap, "keeps compiled kernels itself"), pocl);
    CU_ASSERT_EQUAL(fixture_logged(cap, "cached program"), !pocl);
    CU_ASSERT_EQUAL(fixture_count_files(path, ".clbin", NULL, 0),
                    pocl ? -1 : 1);

    /* Named by ATTN_CACHE_DIR: used, on PoCL too. */
    setenv("ATTN_CACHE_DIR", named, 1);
    CU_ASSERT(fixture_run_f32(NULL, cap, "ATTN_CACHE_DIR"));
    CU_ASSERT(!fixture_logged(cap, "no program cache on"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(named, ".clbin", NULL, 0), 1);
    unsetenv("ATTN_CACHE_DIR");

    /* The test build's override: the default folder again. */
    fixture_remove_tree(path);
    setenv("ATTN_TEST_DRIVER_CACHE", "0", 1);
    CU_ASSERT(fixture_run_f32(NULL, cap, "ATTN_TEST_DRIVER_CACHE=0"));
    CU_ASSERT(!fixture_logged(cap, "no program cache on"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(path, ".clbin", NULL, 0), 1);
    unsetenv("ATTN_TEST_DRIVER_CACHE");

    restore_home(old_home, old_xdg);
    free(cap);
}

/* ---- files ------------------------------------------------------------ */

/* A FIFO where the entry should be: the call neither waits for a writer
 * nor reads; the FIFO stays. */
static void test_fifo_entry(void)
{
    char dir[512], cache[600], logs[600], logp[700], entry[1024];
    log_capture *cap = new_cap();
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("fifo", dir, sizeof dir), 0);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(logs, sizeof logs, "%s/logs", dir);
    snprintf(logp, sizeof logp, "%s/child.log", logs);
    CU_ASSERT_EQUAL_FATAL(mkdir(logs, 0700), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(cache, cap, entry, sizeof entry), 0);
    CU_ASSERT_EQUAL_FATAL(unlink(entry), 0);
    CU_ASSERT_EQUAL_FATAL(mkfifo(entry, 0600), 0);

    CU_ASSERT_EQUAL(child_run("watched", cache, WATCHDOG_S, logp, cap, NULL),
                    CHILD_OK);
    CU_ASSERT(fixture_logged(cap, entry));
    CU_ASSERT(fixture_logged(cap, "it is not a regular file"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    CU_ASSERT(lstat(entry, &st) == 0 && S_ISFIFO(st.st_mode));
    free(cap);
}

/* Writes the entry's header with the size field claiming `claim` bytes and
 * makes the file `real` payload bytes long (a sparse file past the
 * header). */
static int plant_claim(const char *entry, const unsigned char *head,
                       uint64_t claim, uint64_t real)
{
    unsigned char h[ENTRY_HEADER];
    int fd = open(entry, O_WRONLY | O_TRUNC), ok;
    memcpy(h, head, ENTRY_HEADER);
    for (int i = 0; i < 8; i++)
        h[ENTRY_KEY_END + i] = (unsigned char)(claim >> (8 * i));
    if (fd < 0)
        return -1;
    ok = write(fd, h, sizeof h) == (ssize_t)sizeof h &&
         ftruncate(fd, (off_t)(ENTRY_HEADER + real)) == 0;
    return (close(fd) == 0 && ok) ? 0 : -1;
}

static void test_size_claims(void)
{
    const uint64_t two_gib = (uint64_t)1 << 31;
    char dir[512], cache[600], empty[600], logp[700], entry[1024], why[128];
    log_capture *cap = new_cap();
    unsigned char *orig;
    size_t n = 0;
    struct rusage base, big;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("sizes", dir, sizeof dir), 0);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    snprintf(logp, sizeof logp, "%s/child.log", dir);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(cache, cap, entry, sizeof entry), 0);
    orig = fixture_read_all(entry, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(orig);

    /* A header that claims 2 GiB in a file of a few KiB. */
    CU_ASSERT_EQUAL_FATAL(plant_claim(entry, orig, two_gib, 4096), 0);
    snprintf(why, sizeof why,
             "its header claims %llu bytes, the file holds "
             "4096",
             (unsigned long long)two_gib);
    CU_ASSERT(fixture_run_f32(cache, cap, "a header that claims 2 GiB"));
    CU_ASSERT(fixture_logged(cap, "is corrupt"));
    CU_ASSERT(fixture_logged(cap, why));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT(fixture_valid_entry(entry));

    /* A 2 GiB entry whose header agrees: over the bound, so it is neither
     * allocated nor read.  The process that meets it needs no more memory
     * than one that finds an empty folder. */
    CU_ASSERT_EQUAL_FATAL(plant_claim(entry, orig, two_gib, two_gib), 0);
    CU_ASSERT_EQUAL_FATAL(mkdir(empty, 0700), 0);
    CU_ASSERT_EQUAL(child_run("run", empty, "-", logp, cap, &base), CHILD_OK);
    CU_ASSERT_EQUAL(child_run("run", cache, "-", logp, cap, &big), CHILD_OK);
    CU_ASSERT(fixture_logged(cap, "more than the 268435456 an entry may hold"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    /* ru_maxrss is in KiB; reading the entry would add 2 GiB. */
    if (big.ru_maxrss >= base.ru_maxrss + 512 * 1024)
        printf("\n  peak memory %ld KiB, %ld KiB with an empty folder\n",
               big.ru_maxrss, base.ru_maxrss);
    CU_ASSERT(big.ru_maxrss < base.ru_maxrss + 512 * 1024);
    CU_ASSERT(fixture_valid_entry(entry));
    free(orig);
    free(cap);
}

/* ---- wrong programs --------------------------------------------------- */

/* The payload of another program (the fused kernel's) under the key of
 * the three-kernel f32 program, sealed as a valid entry. */
static int plant_fused(const char *dir, const char *entry, log_capture *cap)
{
    char fused_dir[700], fused_entry[1024];
    attn_options o;
    attn_context *ctx = NULL;
    unsigned char *head, *other, *e;
    size_t n_head = 0, n_other = 0;
    int rc = -1;
    snprintf(fused_dir, sizeof fused_dir, "%s-fused", dir);
    mkdir(fused_dir, 0700);
    fixture_options(&o, fused_dir, 0, cap);
    o.path = ATTN_PATH_FUSED;
    if (attn_context_create(&o, &ctx) != ATTN_OK)
        return -1;
    if (sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref, 1, NULL,
                        "fused") &&
        fixture_count_files(fused_dir, ".clbin", fused_entry,
                            sizeof fused_entry) == 1 &&
        (head = fixture_read_all(entry, &n_head))) {
        if ((other = fixture_read_all(fused_entry, &n_other)) &&
            n_other > ENTRY_HEADER && (e = malloc(n_other))) {
            memcpy(e, head, ENTRY_HEADER);
            memcpy(e + ENTRY_HEADER, other + ENTRY_HEADER,
                   n_other - ENTRY_HEADER);
            fixture_seal_entry(e, n_other);
            rc = fixture_write_all(entry, e, n_other);
            free(e);
        }
        free(other);
        free(head);
    }
    attn_context_destroy(ctx);
    return rc;
}

/* Occurrences of what in the captured log. */
static int times_logged(const log_capture *c, const char *what)
{
    int n = 0;
    for (const char *p = c->text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void test_wrong_program(void)
{
    char dir[512], entry[1024], written[600];
    log_capture *cap = new_cap();
    unsigned char *planted, *now;
    size_t n_planted = 0, n_now = 0;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("wrong", dir, sizeof dir), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(dir, cap, entry, sizeof entry), 0);
    CU_ASSERT_EQUAL_FATAL(plant_fused(dir, entry, cap), 0);
    CU_ASSERT_FATAL(fixture_valid_entry(entry));
    planted = fixture_read_all(entry, &n_planted);
    CU_ASSERT_PTR_NOT_NULL_FATAL(planted);

    snprintf(written, sizeof written, "] cached program %s/", dir);
    CU_ASSERT(fixture_run_f32(dir, cap, "an entry of another program"));
    CU_ASSERT(fixture_logged(cap, "[2] cached program rejected (it has no "
                                  "kernel attn_score)"));
    CU_ASSERT_EQUAL(times_logged(cap, "built program"), 1);
    CU_ASSERT(fixture_logged(cap, written));
    now = fixture_read_all(entry, &n_now);
    CU_ASSERT(now && fixture_valid_entry(entry) &&
              (n_now != n_planted || memcmp(now, planted, n_now) != 0));
    CU_ASSERT(fixture_run_f32(dir, cap, "the rebuilt entry"));
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    free(now);
    free(planted);
    free(cap);
}

/* An entry the driver rejects, or of another program, is removed even when
 * the rebuilt program cannot be written (the child's disk is full): the
 * next process does not meet it again. */
static void test_wrong_entry_removed(void)
{
    char dir[512], sub[600], logp[700], entry[1024];
    log_capture *cap = new_cap();
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("removed", dir, sizeof dir), 0);
    snprintf(logp, sizeof logp, "%s/child.log", dir);
    for (int kind = 0; kind < 2; kind++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, kind ? "other" : "garbage");
        CU_ASSERT_EQUAL_FATAL(fixture_fill(sub, cap, entry, sizeof entry), 0);
        if (kind) {
            CU_ASSERT_EQUAL_FATAL(plant_fused(sub, entry, cap), 0);
        } else {
            size_t n = 0;
            unsigned char *e = fixture_read_all(entry, &n);
            CU_ASSERT_FATAL(e && n > ENTRY_HEADER);
            for (size_t i = ENTRY_HEADER; i < n; i++)
                e[i] = (unsigned char)(i * 131u + 7u);
            fixture_seal_entry(e, n);
            CU_ASSERT_EQUAL_FATAL(fixture_write_all(entry, e, n), 0);
            free(e);
        }
        CU_ASSERT_FATAL(fixture_valid_entry(entry));
        CU_ASSERT_EQUAL(child_run("fsize", sub, "0", logp, cap, NULL),
                        CHILD_OK);
        CU_ASSERT(fixture_logged(cap, "removing it and rebuilding"));
        CU_ASSERT(fixture_logged(cap, "cannot write program cache entry"));
        CU_ASSERT_EQUAL(times_logged(cap, "built program"), 1);
        CU_ASSERT_EQUAL(fixture_count_files(sub, "", NULL, 0), 2);
    }
    free(cap);
}

/* ---- paths ------------------------------------------------------------ */

/* "<base>/<c...>/..." exactly len bytes long, in parts of at most 200. */
static void long_path(const char *base, size_t len, char *out)
{
    size_t n = strlen(base);
    memcpy(out, base, n + 1);
    while (n < len) {
        size_t part = len - n - 1 < 200 ? len - n - 1 : 200;
        out[n++] = '/';
        memset(out + n, 'c', part);
        n += part;
        out[n] = '\0';
    }
}

static void test_long_path(void)
{
    char dir[512], first[1200], path[1200], *old_xdg = getenv("XDG_CACHE_HOME");
    log_capture *cap = new_cap();
    struct stat st;
    old_xdg = old_xdg ? strdup(old_xdg) : NULL;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("long", dir, sizeof dir), 0);
    long_path(dir, strlen(dir) + 201, first); /* its first part */
    for (size_t len = 1023; len <= 1100; len += 77) {
        char what[64];
        snprintf(what, sizeof what, "%zu bytes long, more than 1022", len);
        long_path(dir, len, path);
        CU_ASSERT_EQUAL(strlen(path), len);
        CU_ASSERT(fixture_run_f32(path, cap, "a long cache path"));
        CU_ASSERT(fixture_logged(cap, "[2] program cache folder"));
        CU_ASSERT(fixture_logged(cap, what));
        CU_ASSERT(fixture_logged(cap, "built program"));
        CU_ASSERT(!fixture_logged(cap, "cached program"));
        CU_ASSERT(stat(first, &st) != 0); /* nothing created */
        /* The same through ATTN_CACHE_DIR, and through XDG_CACHE_HOME
         * (plus "/libattn"). */
        setenv("ATTN_CACHE_DIR", path, 1);
        CU_ASSERT(fixture_run_f32(NULL, cap, "a long ATTN_CACHE_DIR"));
        CU_ASSERT(fixture_logged(cap, "(from ATTN_CACHE_DIR)"));
        unsetenv("ATTN_CACHE_DIR");
        path[len - 8] = '\0';
        setenv("ATTN_TEST_DRIVER_CACHE", "0", 1);
        setenv("XDG_CACHE_HOME", path, 1);
        CU_ASSERT(fixture_run_f32(NULL, cap, "a long XDG_CACHE_HOME"));
        CU_ASSERT(fixture_logged(cap, "(from XDG_CACHE_HOME)"));
        CU_ASSERT(fixture_logged(cap, what));
        CU_ASSERT(stat(first, &st) != 0);
        set_env("XDG_CACHE_HOME", old_xdg);
        unsetenv("ATTN_TEST_DRIVER_CACHE");
    }
    /* 1022 bytes: the longest that is used; trailing "/" do not count */
    long_path(dir, 1022, path);
    CU_ASSERT(fixture_run_f32(path, cap, "the longest cache path"));
    CU_ASSERT(fixture_logged(cap, "cached program"));
    CU_ASSERT_EQUAL(fixture_count_files(path, ".clbin", NULL, 0), 1);
    strcat(path, "///");
    CU_ASSERT(fixture_run_f32(path, cap, "the longest cache path, /// more"));
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    free(old_xdg);
    free(cap);
}

/* ---- the key ---------------------------------------------------------- */

static void test_key_identity(void)
{
    static const char *const names[] = {"posenc.cl", "heads.cl"};
    char dir[512];
    unsigned char k1[ATTN_CL_CACHE_KEY_BYTES], k2[ATTN_CL_CACHE_KEY_BYTES];
    log_capture *cap = new_cap();
    attn_context *ctx;
    attn_cl_runtime *rt;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("key", dir, sizeof dir), 0);
    CU_ASSERT_FATAL(fixture_run_f32(dir, cap, "first"));

    /* A runtime whose record of the device says something else still finds
     * the entry: the key is what the device reports. */
    ctx = fixture_make_ctx(dir, 0, cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    rt = attn_backend_cl_runtime(ctx->backend);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rt);
    attn_cl_cache_key(rt, "src", 3, "-DX=1", k1);
    snprintf(rt->info.name, sizeof rt->info.name, "a forged device name");
    snprintf(rt->info.driver_version, sizeof rt->info.driver_version, "0.0");
    attn_cl_cache_key(rt, "src", 3, "-DX=1", k2);
    CU_ASSERT(!memcmp(k1, k2, sizeof k1));
    CU_ASSERT(sdpa_case_check(ctx, &fixture_f32_case, &fixture_f32_ref, 1, NULL,
                              "forged record"));
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 1);

    /* Source and options are in it. */
    attn_cl_cache_key(rt, "src", 3, "-DX=2", k2);
    CU_ASSERT(memcmp(k1, k2, sizeof k1) != 0);
    attn_cl_cache_key(rt, "srd", 3, "-DX=1", k2);
    CU_ASSERT(memcmp(k1, k2, sizeof k1) != 0);
    attn_cl_cache_key(rt, "src-DX=1", 3, "", k2); /* fields stay apart */
    CU_ASSERT(memcmp(k1, k2, sizeof k1) != 0);

    /* Every program of the library (their kernels found in their sources)
     * is found again under its key: a source scan that missed a kernel
     * would leave the program uncached. */
    {
        cl_program p = NULL;
        attn_err err = {{0}};
        for (int round = 0; round < 2; round++) {
            memset(cap, 0, sizeof *cap);
            CU_ASSERT_EQUAL(attn_cl_build(rt, names, 2, "", &p, &err), ATTN_OK);
            if (p)
                clReleaseProgram(p);
            p = NULL;
            CU_ASSERT(!fixture_logged(cap, "has no kernel"));
            CU_ASSERT(fixture_logged(cap, round ? "cache hit" : "built"));
        }
    }
    attn_context_destroy(ctx);
    free(cap);
}

/* The fused and the decode programs (AUTO with one query row) are cached
 * and found again like the three-kernel one. */
static void test_every_program_hits(void)
{
    char dir[512];
    log_capture *cap = new_cap();
    sdpa_case one_row;
    ref_sdpa_result ref;
    attn_sdpa_desc d = fixture_f32_case.d;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("every", dir, sizeof dir), 0);
    d.seq_q = 1;
    d.mask.causal = 0;
    CU_ASSERT_EQUAL_FATAL(sdpa_case_init(&one_row, &d, 5, 1.0, 0.0, 0), 0);
    CU_ASSERT_EQUAL_FATAL(
        ref_sdpa(&one_row.d, one_row.q, one_row.k, one_row.v, &ref), 0);
    for (int path = 0; path < 2; path++)
        for (int round = 0; round < 2; round++) {
            attn_options o;
            attn_context *ctx = NULL;
            fixture_options(&o, dir, 0, cap);
            o.path = path ? ATTN_PATH_AUTO : ATTN_PATH_FUSED;
            CU_ASSERT_EQUAL_FATAL(attn_context_create(&o, &ctx), ATTN_OK);
            CU_ASSERT(sdpa_case_check(ctx, path ? &one_row : &fixture_f32_case,
                                      path ? &ref : &fixture_f32_ref, 1, NULL,
                                      path ? "decode" : "fused"));
            attn_context_destroy(ctx);
            CU_ASSERT(!fixture_logged(cap, "has no kernel"));
            CU_ASSERT(fixture_logged(cap, round ? "cache hit" : "cached"));
            CU_ASSERT(!round || !fixture_logged(cap, "built program"));
        }
    CU_ASSERT_EQUAL(fixture_count_files(dir, ".clbin", NULL, 0), 2);
    ref_sdpa_free(&ref);
    sdpa_case_free(&one_row);
    free(cap);
}

int main(int argc, char **argv)
{
    static const harness_test tests[] = {
        {"created folders 0700, entries 0600", test_created_modes},
        {"a symbolic link as the entry", test_symlinked_entry},
        {"a symbolic link as the folder", test_symlinked_folder},
        {"writable by group or others", test_writable_by_others},
        {"relative XDG_CACHE_HOME and HOME", test_relative_xdg},
        {"no default folder on a driver that caches", test_driver_cache},
        {"a FIFO as the entry", test_fifo_entry},
        {"sizes checked before allocating", test_size_claims},
        {"an entry of another program", test_wrong_program},
        {"wrong entries removed", test_wrong_entry_removed},
        {"cache paths that are too long", test_long_path},
        {"the key and the device", test_key_identity},
        {"every program found again", test_every_program_hits},
        {NULL, NULL}};
    return fixture_main(argc, argv, "program cache trust", tests, NULL, NULL);
}
