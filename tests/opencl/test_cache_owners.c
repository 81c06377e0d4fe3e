/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The program cache with two users: root (the suite) and nobody (uid and
 * gid 65534, in forked or started children that give up root).  A cache
 * folder or entry another user owns is not read: a warning names it, the
 * program is built from source and nothing is written there; and nobody
 * refuses root's folder the same way while its own folder works as any.
 *
 * Planted entries are entries the library wrote for root, copied by a
 * child running as nobody into a folder of its own (the attack: a second
 * user learns the key by running the library once, then plants), or
 * given to nobody with chown inside root's folder.
 *
 * Skipped (exit 77, saying why) when the suite does not run as root or
 * cannot run a process as nobody, and without a usable OpenCL CPU device.
 */
#define _DEFAULT_SOURCE /* setgroups() */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/context.h"
#include "harness.h"
#include "program_child.h"
#include "program_fixture.h"

static log_capture *new_cap(void)
{
    log_capture *cap = calloc(1, sizeof *cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cap);
    return cap;
}

/* In a child that gives up root for nobody: 0 when it could. */
static int become_nobody(void)
{
    return setgroups(0, NULL) == 0 && setgid(CHILD_NOBODY) == 0 &&
                   setuid(CHILD_NOBODY) == 0 && setuid(0) != 0
               ? 0
               : -1;
}

/* As nobody: makes the folder dir (0755) and writes n bytes of p into
 * dir/name (0644).  0 when it did. */
static int plant_as_nobody(const char *dir, const char *name,
                           const unsigned char *p, size_t n)
{
    char path[1200];
    pid_t pid;
    int st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        /* Only system calls between fork and _exit. */
        int fd;
        if (become_nobody() != 0 || mkdir(dir, 0755) != 0)
            _exit(1);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, p, n) != (ssize_t)n || close(fd) != 0)
            _exit(2);
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* A folder for nobody: made by root, given to nobody (mode 0700). */
static int nobody_dir(const char *path)
{
    return mkdir(path, 0700) == 0 &&
                   chown(path, CHILD_NOBODY, CHILD_NOBODY) == 0
               ? 0
               : -1;
}

static uid_t owner_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? st.st_uid : (uid_t)-1;
}

/* root meets a folder of nobody's holding a copy of root's own entry. */
static void test_folder_of_another_user(void)
{
    char dir[512], mine[600], theirs[600], entry[1024];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    unsigned char *bytes;
    size_t n = 0;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("their-folder", dir, sizeof dir), 0);
    snprintf(mine, sizeof mine, "%s/mine", dir);
    snprintf(theirs, sizeof theirs, "%s/theirs", dir);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(mine, cap, entry, sizeof entry), 0);
    bytes = fixture_read_all(entry, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bytes);
    /* nobody's folder lives in a folder nobody may write. */
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 01777), 0);
    CU_ASSERT_EQUAL_FATAL(
        plant_as_nobody(theirs, strrchr(entry, '/') + 1, bytes, n), 0);
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0755), 0);
    CU_ASSERT_EQUAL(owner_of(theirs), CHILD_NOBODY);
    CU_ASSERT_EQUAL_FATAL(fixture_snapshot(theirs, &snap), 0);

    fixture_expect_refused(theirs, cap, theirs,
                           "it is owned by uid 65534, not 0");
    CU_ASSERT(fixture_unchanged(theirs, &snap));
    CU_ASSERT_EQUAL(owner_of(snap.entry), CHILD_NOBODY);
    fixture_snapshot_free(&snap);
    free(bytes);
    free(cap);
}

/* root's own folder holding an entry that nobody owns. */
static void test_entry_of_another_user(void)
{
    char dir[512], entry[1024];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("their-entry", dir, sizeof dir), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(dir, cap, entry, sizeof entry), 0);
    CU_ASSERT_EQUAL_FATAL(chown(entry, CHILD_NOBODY, CHILD_NOBODY), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_snapshot(dir, &snap), 0);
    fixture_expect_refused(dir, cap, entry, "it is owned by uid 65534, not 0");
    CU_ASSERT(fixture_unchanged(dir, &snap));
    CU_ASSERT_EQUAL(owner_of(entry), CHILD_NOBODY);
    fixture_snapshot_free(&snap);
    free(cap);
}

/* nobody refuses root's folder (holding a valid entry) and uses its own. */
static void test_as_nobody(void)
{
    char dir[512], roots[600], own[600], home[600], logs[600], logp[700];
    char entry[1024];
    log_capture *cap = new_cap();
    dir_snapshot snap;
    int rc;
    CU_ASSERT_EQUAL_FATAL(fixture_test_dir("as-nobody", dir, sizeof dir), 0);
    snprintf(roots, sizeof roots, "%s/roots", dir);
    snprintf(own, sizeof own, "%s/own", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(logs, sizeof logs, "%s/logs", dir);
    snprintf(logp, sizeof logp, "%s/child.log", logs);
    CU_ASSERT_EQUAL_FATAL(fixture_fill(roots, cap, entry, sizeof entry), 0);
    CU_ASSERT_EQUAL_FATAL(nobody_dir(own), 0);
    CU_ASSERT_EQUAL_FATAL(nobody_dir(home), 0);
    CU_ASSERT_EQUAL_FATAL(nobody_dir(logs), 0);
    CU_ASSERT_EQUAL_FATAL(fixture_snapshot(roots, &snap), 0);

    rc = child_run("nobody", roots, home, logp, cap, NULL);
    CU_ASSERT_EQUAL(rc, CHILD_OK);
    CU_ASSERT(fixture_logged(cap, roots));
    CU_ASSERT(fixture_logged(cap, "it is owned by uid 0, not 65534"));
    CU_ASSERT(fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "cached program"));
    CU_ASSERT(fixture_unchanged(roots, &snap));

    for (int round = 0; round < 2; round++) {
        CU_ASSERT_EQUAL(child_run("nobody", own, home, logp, cap, NULL),
                        CHILD_OK);
        CU_ASSERT(!fixture_logged(cap, "[2] "));
        CU_ASSERT(fixture_logged(cap, round ? "cache hit" : "cached program"));
    }
    CU_ASSERT_EQUAL(fixture_count_files(own, ".clbin", entry, sizeof entry), 1);
    CU_ASSERT_EQUAL(owner_of(entry), CHILD_NOBODY);
    fixture_snapshot_free(&snap);
    free(cap);
}

/* Whether this process can make files of nobody's and run this executable
 * as nobody; says why not. */
static int can_run(void)
{
    pid_t pid;
    int st;
    if (geteuid() != 0) {
        printf("SKIP: program cache owners: not root, so no files of "
               "another user (uid %d) can be made here\n",
               CHILD_NOBODY);
        return 1;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        if (become_nobody() != 0)
            _exit(1);
        _exit(access(child_self(), X_OK) == 0 ? 0 : 2);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0) {
        printf("SKIP: program cache owners: a process cannot run %s as uid "
               "%d here\n",
               child_self(), CHILD_NOBODY);
        return 1;
    }
    return 0;
}

/* The folders of the tests must be reachable for nobody. */
static int init(void)
{
    return chmod(fixture_root, 0755) != 0 || fixture_suite_init();
}

int main(int argc, char **argv)
{
    static const harness_test tests[] = {
        {"a folder of another user", test_folder_of_another_user},
        {"an entry of another user", test_entry_of_another_user},
        {"as nobody: root's folder and its own", test_as_nobody},
        {NULL, NULL}};
    return fixture_main(argc, argv, "program cache owners", tests, can_run,
                        init);
}
