/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The child processes of the program-cache suites: the suite's executable
 * run again as "--child MODE CACHE_DIR LOG_FILE ARG READY_FD GO_FD" (see
 * child_main), which makes one f32 call on a fresh context on the OpenCL
 * CPU device and reports through its exit status and a log file.
 */
#ifndef ATTN_TEST_PROGRAM_CHILD_H
#define ATTN_TEST_PROGRAM_CHILD_H

#include <sys/resource.h>
#include <sys/types.h>

#include "program_fixture.h"

/* Exit statuses of a child. */
enum {
    CHILD_OK = 0,         /* computed right */
    CHILD_USAGE = 2,      /* bad arguments, or the cases could not be made */
    CHILD_NO_CONTEXT = 3, /* attn_context_create failed */
    CHILD_NOT_DEVICE = 4, /* the context is not on the OpenCL CPU device */
    CHILD_WRONG = 5,      /* the call failed or computed wrong */
    CHILD_CANNOT = 6      /* the situation cannot be made here */
};

/* The uid and gid the "nobody" mode runs as. */
#define CHILD_NOBODY 65534

/* Finds this executable (/proc/self/exe, else argv0) for child_spawn. */
void child_init_self(const char *argv0);
/* Its path. */
const char *child_self(void);

/* main of a child (argv[1] is "--child").  MODE:
 *   run      just the call;
 *   fsize    RLIMIT_FSIZE = ARG bytes while the cache entry is written,
 *            with SIGXFSZ ignored: writes fail with EFBIG as on a full
 *            disk;
 *   nodac    without CAP_DAC_OVERRIDE while the cache entry is written;
 *            CHILD_CANNOT when CACHE_DIR is writable even so;
 *   watched  the call, and SIGALRM (death) after ARG seconds: a call that
 *            hangs ends the child instead of the suite;
 *   nobody   as uid and gid CHILD_NOBODY, with HOME=ARG (a folder that
 *            user owns) and POCL_CACHE_DIR=ARG/pocl, for the driver's own
 *            cache; CHILD_CANNOT when the privileges cannot be dropped.
 * READY_FD, GO_FD >= 0: once its context exists the child writes a byte
 * to READY_FD and waits until GO_FD reaches its end (the parent closes
 * it), so that the children of one test build at the same time.  The log
 * (at DEBUG) goes to LOG_FILE, the verdict to the exit status (CHILD_*). */
int child_main(int argc, char **argv);

/* Starts a child; in it, close_a and close_b (the parent's ends of the
 * start pipes, or -1) are closed first.  Its pid, or -1. */
pid_t child_spawn(const char *mode, const char *dir, const char *log,
                  const char *arg, int ready, int go, int close_a, int close_b);
/* The exit status of child pid; -1 when it did not exit on its own.  Its
 * resource usage goes to ru when not NULL. */
int child_wait(pid_t pid, struct rusage *ru);
/* Runs one child to its end; its log lands in cap, its resource usage in
 * ru (when not NULL).  Its exit status; a failure is printed with the
 * log. */
int child_run(const char *mode, const char *dir, const char *arg,
              const char *log, log_capture *cap, struct rusage *ru);

/* Sets CAP_DAC_OVERRIDE (root's pass through file permissions) in the
 * calling thread's effective set, or clears it; it stays permitted, so it
 * can come back.  0 or -1. */
int child_set_dac_override(int on, int *was_on);

#endif /* ATTN_TEST_PROGRAM_CHILD_H */
