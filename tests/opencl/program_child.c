/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The child processes of the program-cache suites (program_child.h).
 */
#define _DEFAULT_SOURCE /* syscall(), wait4(), setgroups() */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/capability.h>
#include <sys/syscall.h>
#endif

#include "api/context.h"
#include "cases.h"
#include "program_child.h"

/* This executable, run again for the tests that need other processes. */
static char self_exe[1024];

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

void child_init_self(const char *argv0)
{
    ssize_t len = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (len > 0)
        self_exe[len] = '\0';
    else
        snprintf(self_exe, sizeof self_exe, "%s", argv0);
}

const char *child_self(void)
{
    return self_exe;
}

int child_set_dac_override(int on, int *was_on)
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
            child_set_dac_override(0, NULL);
    } else if (strstr(msg, "program cache") ||
               !strncmp(msg, "cached program", 14)) {
        if (window.fsize)
            setrlimit(RLIMIT_FSIZE, &window.saved);
        if (window.nodac)
            child_set_dac_override(window.dac_was_on, NULL);
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

/* Sets up MODE (child_main) before the context exists.  CHILD_OK, or the
 * exit status. */
static int child_mode(const char *mode, const char *dir, const char *arg)
{
    if (!strcmp(mode, "fsize")) {
        signal(SIGXFSZ, SIG_IGN);
        if (getrlimit(RLIMIT_FSIZE, &window.saved) != 0)
            return CHILD_USAGE;
        window.limit = (rlim_t)strtoull(arg, NULL, 10);
        window.fsize = 1;
    } else if (!strcmp(mode, "nodac")) {
        int writable;
        if (child_set_dac_override(0, &window.dac_was_on) != 0)
            return CHILD_CANNOT;
        writable = can_write_in(dir);
        if (child_set_dac_override(window.dac_was_on, NULL) != 0 || writable)
            return CHILD_CANNOT;
        window.nodac = 1;
    } else if (!strcmp(mode, "watched")) {
        signal(SIGALRM, SIG_DFL);
        alarm((unsigned)strtoul(arg, NULL, 10));
    } else if (!strcmp(mode, "nobody")) {
        if (setgroups(0, NULL) != 0 || setgid(CHILD_NOBODY) != 0 ||
            setuid(CHILD_NOBODY) != 0 || getuid() != CHILD_NOBODY ||
            setuid(0) == 0)
            return CHILD_CANNOT;
        char pocl[1100];
        snprintf(pocl, sizeof pocl, "%s/pocl", arg);
        if (setenv("HOME", arg, 1) != 0 || unsetenv("XDG_CACHE_HOME") != 0 ||
            setenv("POCL_CACHE_DIR", pocl, 1) != 0)
            return CHILD_USAGE;
    } else if (strcmp(mode, "run") != 0) {
        return CHILD_USAGE;
    }
    return CHILD_OK;
}

int child_main(int argc, char **argv)
{
    const char *mode, *dir, *log_path;
    int ready, go, rc;
    log_capture *cap;
    attn_options o;
    attn_context *ctx = NULL;
    attn_device_info info = ATTN_DEVICE_INFO_INIT;
    if (argc != 8)
        return CHILD_USAGE;
    mode = argv[2];
    dir = argv[3];
    log_path = argv[4];
    ready = atoi(argv[6]);
    go = atoi(argv[7]);
    if ((rc = child_mode(mode, dir, argv[5])) != CHILD_OK)
        return rc;
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

pid_t child_spawn(const char *mode, const char *dir, const char *log,
                  const char *arg, int ready, int go, int close_a, int close_b)
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

int child_wait(pid_t pid, struct rusage *ru)
{
    struct rusage none;
    int st;
    while (wait4(pid, &st, 0, ru ? ru : &none) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    printf("\n  child %ld: killed by signal %d\n", (long)pid,
           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return -1;
}

int child_run(const char *mode, const char *dir, const char *arg,
              const char *log, log_capture *cap, struct rusage *ru)
{
    pid_t pid = child_spawn(mode, dir, log, arg, -1, -1, -1, -1);
    int rc = pid > 0 ? child_wait(pid, ru) : -1;
    if (fixture_load_log(log, cap) != 0)
        memset(cap, 0, sizeof *cap);
    if (rc != CHILD_OK && rc != CHILD_CANNOT)
        printf("\n  child %s on %s: exit %d; log:\n%s", mode, dir, rc,
               cap->text);
    return rc;
}
