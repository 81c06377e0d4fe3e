/*
 * The program cache and the offline-binary loader (src/opencl/program.c) on
 * the real OpenCL CPU device (PoCL), through the public API: contexts on
 * device "cpu" with fallback off, the cache in a folder of the test's own
 * (options.cache_dir), the log callback at DEBUG, and every result checked
 * against the reference oracle.
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
 * processes are this executable run again as "--child MODE ..." (see
 * child_main), which reports through its exit status and a log file.
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
#define _DEFAULT_SOURCE /* syscall(), for capget/capset */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/capability.h>
#include <sys/syscall.h>
#endif

#include "api/context.h"
#include "cases.h"
#include "harness.h"
#include "opencl/backend_cl.h"
#include "opencl/discovery.h"
#include "opencl/driver.h"
#include "program_fixture.h"

static int root_made;

/* ---- child processes -------------------------------------------------- */

/* This executable, run again for the tests that need other processes. */
static char self_exe[1024];

/* Exit statuses of a child. */
enum {
    CHILD_OK = 0,         /* computed right */
    CHILD_USAGE = 2,      /* bad arguments, or the cases could not be made */
    CHILD_NO_CONTEXT = 3, /* attn_context_create failed */
    CHILD_NOT_DEVICE = 4, /* the context is not on the OpenCL CPU device */
    CHILD_WRONG = 5,      /* the call failed or computed wrong */
    CHILD_CANNOT = 6      /* the situation cannot be made here (nodac) */
};

/* The cache write of a child: it comes right after the log line that says
 * the program was built and ends with the line that says how it went.  The
 * fsize and nodac modes narrow their fault to it, because the driver
 * writes files of its own while it builds (PoCL: the source, the bitcode,
 * the kernels, in its cache under $HOME), and those must go on working. */
static struct {
    int fsize; /* RLIMIT_FSIZE = limit in the window */
    rlim_t limit;
    struct rlimit saved;
    int nodac; /* no CAP_DAC_OVERRIDE in the window */
    int dac_was_on;
} window;

/* Sets CAP_DAC_OVERRIDE (root's pass through file permissions) in the
 * calling thread's effective set, or clears it; it stays permitted, so it
 * can come back.  Without it a folder without write permission is one for
 * root too.  0 or -1. */
static int set_dac_override(int on, int *was_on)
{
#ifdef __linux__
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    const unsigned word = CAP_DAC_OVERRIDE / 32;
    const uint32_t bit = 1u << (CAP_DAC_OVERRIDE % 32);
    if (syscall(SYS_capget, &h, d) != 0)
        return -1;
    if (was_on)
        *was_on = (d[word].effective & bit) != 0;
    if (on)
        d[word].effective |= bit & d[word].permitted;
    else
        d[word].effective &= ~bit;
    return syscall(SYS_capset, &h, d) == 0 ? 0 : -1;
#else
    if (was_on)
        *was_on = 0;
    return on || geteuid() != 0 ? 0 : -1;
#endif
}

static void child_log(int level, const char *msg, void *user)
{
    fixture_capture(level, msg, user);
    if (!strncmp(msg, "built program", 13)) {
        if (window.fsize) {
            struct rlimit r = window.saved;
            r.rlim_cur = window.limit < r.rlim_max ? window.limit : r.rlim_max;
            setrlimit(RLIMIT_FSIZE, &r);
        }
        if (window.nodac)
            set_dac_override(0, NULL);
    } else if (strstr(msg, "program cache") ||
               !strncmp(msg, "cached program", 14)) {
        if (window.fsize)
            setrlimit(RLIMIT_FSIZE, &window.saved);
        if (window.nodac)
            set_dac_override(window.dac_was_on, NULL);
    }
}

/* 1 when this process can create a file in dir. */
static int can_write_in(const char *dir)
{
    char probe[1100];
    int fd;
    snprintf(probe, sizeof probe, "%s/write-probe", dir);
    fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return 0;
    close(fd);
    unlink(probe);
    return 1;
}

/* test_program --child MODE CACHE_DIR LOG_FILE ARG READY_FD GO_FD
 *
 * One f32 call with fallback off on a fresh context on the OpenCL CPU
 * device, the cache in CACHE_DIR; the log (at DEBUG) goes to LOG_FILE, the
 * verdict to the exit status (CHILD_*).  MODE:
 *   run    just that;
 *   fsize  RLIMIT_FSIZE = ARG bytes while the cache entry is written, with
 *          SIGXFSZ ignored: writes fail with EFBIG as on a full disk;
 *   nodac  without CAP_DAC_OVERRIDE while the cache entry is written;
 *          CHILD_CANNOT when CACHE_DIR is writable even so.
 * READY_FD, GO_FD >= 0: once its context exists the child writes a byte to
 * READY_FD and waits until GO_FD reaches its end (the parent closes it),
 * so that the children of one test build at the same time. */
static int child_main(int argc, char **argv)
{
    const char *mode, *dir, *log_path, *arg;
    int ready, go, rc = CHILD_OK;
    log_capture *cap;
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info;
    if (argc != 8)
        return CHILD_USAGE;
    mode = argv[2];
    dir = argv[3];
    log_path = argv[4];
    arg = argv[5];
    ready = atoi(argv[6]);
    go = atoi(argv[7]);
    if (!strcmp(mode, "fsize")) {
        signal(SIGXFSZ, SIG_IGN);
        if (getrlimit(RLIMIT_FSIZE, &window.saved) != 0)
            return CHILD_USAGE;
        window.limit = (rlim_t)strtoull(arg, NULL, 10);
        window.fsize = 1;
    } else if (!strcmp(mode, "nodac")) {
        int writable;
        if (set_dac_override(0, &window.dac_was_on) != 0)
            return CHILD_CANNOT;
        writable = can_write_in(dir);
        if (set_dac_override(window.dac_was_on, NULL) != 0 || writable)
            return CHILD_CANNOT;
        window.nodac = 1;
    } else if (strcmp(mode, "run") != 0) {
        return CHILD_USAGE;
    }
    if (!(cap = calloc(1, sizeof *cap)))
        return CHILD_USAGE;
    if (fixture_cases_init()) {
        free(cap);
        return CHILD_USAGE;
    }
    fixture_options(&o, dir, 0, cap);
    o.log = child_log;
    if (attn_context_create(&o, &ctx) != ATTN_OK) {
        fixture_capture(ATTN_LOG_ERROR, attn_last_error(), cap);
        rc = CHILD_NO_CONTEXT;
    } else if (attn_context_device(ctx, &info) != ATTN_OK ||
               info.kind != ATTN_DEVICE_CPU_OPENCL) {
        rc = CHILD_NOT_DEVICE;
    }
    if (ready >= 0) {
        char byte = 'r';
        ssize_t r;
        if (write(ready, &byte, 1) != 1)
            rc = rc ? rc : CHILD_USAGE;
        close(ready);
        while ((r = read(go, &byte, 1)) != 0)
            if (r < 0 && errno != EINTR)
                break;
        close(go);
    }
    if (rc == CHILD_OK && !sdpa_case_check(ctx, &fixture_f32_case,
                                           &fixture_f32_ref, 1, NULL, mode))
        rc = CHILD_WRONG;
    attn_context_destroy(ctx);
    if (fixture_write_all(log_path, cap->text, cap->len) != 0 && !rc)
        rc = CHILD_USAGE;
    fixture_suite_clean();
    free(cap);
    return rc;
}

/* Starts a child (child_main); in it, close_a and close_b (the parent's
 * ends of the start pipes, or -1) are closed first.  Its pid, or -1. */
static pid_t spawn_child(const char *mode, const char *dir, const char *log,
                         const char *arg, int ready, int go, int close_a,
                         int close_b)
{
    char rs[16], gs[16];
    char *argv[9];
    pid_t pid;
    snprintf(rs, sizeof rs, "%d", ready);
    snprintf(gs, sizeof gs, "%d", go);
    argv[0] = self_exe;
    argv[1] = (char *)"--child";
    argv[2] = (char *)mode;
    argv[3] = (char *)dir;
    argv[4] = (char *)log;
    argv[5] = (char *)arg;
    argv[6] = rs;
    argv[7] = gs;
    argv[8] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        if (close_a >= 0)
            close(close_a);
        if (close_b >= 0)
            close(close_b);
        execv(self_exe, argv);
        _exit(127);
    }
    return pid;
}

/* The exit status of child pid; -1 when it did not exit on its own. */
static int wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    printf("\n  child %ld: killed by signal %d\n", (long)pid,
           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
}

/* Runs one child to its end; its log lands in cap.  Its exit status. */
static int run_child(const char *mode, const char *dir, const char *arg,
                     const char *log, log_capture *cap)
{
    pid_t pid = spawn_child(mode, dir, log, arg, -1, -1, -1, -1);
    int rc = pid > 0 ? wait_child(pid) : -1;
    if (fixture_load_log(log, cap) != 0)
        memset(cap, 0, sizeof *cap);
    if (rc != CHILD_OK && rc != CHILD_CANNOT)
        printf("\n  child %s on %s: exit %d; log:\n%s", mode, dir, rc,
               cap->text);
    return rc;
}

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
            pid[i] = spawn_child("run", dir, logp[i], "-", ready[1], go[0],
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
            rc[i] = pid[i] > 0 ? wait_child(pid[i]) : -1;
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

        CU_ASSERT_EQUAL(run_child("run", dir, "-", logp[2], cap), CHILD_OK);
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

    rc = run_child("nodac", empty, "-", logp, cap);
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

    CU_ASSERT_EQUAL(run_child("nodac", hit, "-", logp, cap), CHILD_OK);
    CU_ASSERT(fixture_logged(cap, "cache hit"));
    CU_ASSERT(!fixture_logged(cap, "built program"));
    CU_ASSERT(!fixture_logged(cap, "not writable"));
    CU_ASSERT_EQUAL(fixture_count_files(hit, "", NULL, 0), 3);
    now = fixture_read_all(entry_hit, &n);
    CU_ASSERT(now && n == n_hit && !memcmp(now, before_hit, n));
    free(now);

    CU_ASSERT_EQUAL(run_child("nodac", bad, "-", logp, cap), CHILD_OK);
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

        CU_ASSERT_EQUAL(run_child("fsize", dir, arg, logp, cap), CHILD_OK);
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
        CU_ASSERT_EQUAL(run_child("run", dir, "-", logp, cap), CHILD_OK);
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
        {"a failed build's log reaches the log", test_build_log},
        {NULL, NULL}};
    attn_device_info devs[16];
    size_t n = 0, usable = 0;
    int rc;

    /* The test decides where programs come from. */
    unsetenv("ATTN_DEVICE");
    unsetenv("ATTN_CACHE_DIR");
    unsetenv("ATTN_KERNEL_BINARY_DIR");
    if (argc > 1 && !strcmp(argv[1], "--child"))
        return child_main(argc, argv);
    {
        ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
        if (len > 0)
            self_exe[len] = '\0';
        else
            snprintf(self_exe, sizeof self_exe, "%s", argv[0]);
    }
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
