/* SPDX-License-Identifier: Apache-2.0 */
/*
 * attn-bench's child processes (the python peers): started with their
 * stdout and stderr on one pipe and their stdin on another (or on
 * /dev/null), their answers read a line at a time, then waited for.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int cloexec_pipe(int fd[2])
{
    if (pipe(fd) != 0)
        return -1;
    /* so that no other child holds this one's ends */
    fcntl(fd[0], F_SETFD, FD_CLOEXEC);
    fcntl(fd[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* In the child: fd as dst, open across exec. */
static void to_fd(int fd, int dst)
{
    if (fd == dst)
        fcntl(dst, F_SETFD, 0);
    else
        dup2(fd, dst);
}

static void close_pair(int fd[2])
{
    if (fd[0] >= 0)
        close(fd[0]);
    if (fd[1] >= 0)
        close(fd[1]);
}

int child_start(child_proc *c, const char *const *argv, char **env,
                int with_stdin, char *why, size_t why_len)
{
    memset(c, 0, sizeof *c);
    c->pid = -1;
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if ((with_stdin && cloexec_pipe(in) != 0) || cloexec_pipe(out) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        close_pair(in);
        return -1;
    }
    fflush(NULL);
    c->pid = fork();
    if (c->pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        close_pair(in);
        close_pair(out);
        return -1;
    }
    if (c->pid == 0) {
        int devnull = with_stdin ? -1 : open("/dev/null", O_RDONLY);
        if (with_stdin || devnull >= 0)
            to_fd(with_stdin ? in[0] : devnull, STDIN_FILENO);
        to_fd(out[1], STDOUT_FILENO);
        dup2(STDOUT_FILENO, STDERR_FILENO);
        if (env)
            environ = env;
        execvp(argv[0], (char *const *)argv);
        char msg[600];
        int len = snprintf(msg, sizeof msg, "ERROR cannot run %s: %s\n",
                           argv[0], strerror(errno));
        if (len > 0 && write(STDOUT_FILENO, msg, (size_t)len) < 0)
            _exit(126);
        _exit(127);
    }
    if (with_stdin) {
        close(in[0]);
        if (!(c->to = fdopen(in[1], "w")))
            close(in[1]);
    }
    close(out[1]);
    if (!(c->from = fdopen(out[0], "r")))
        close(out[0]);
    if ((with_stdin && !c->to) || !c->from) {
        snprintf(why, why_len, "fdopen: %s", strerror(errno));
        child_wait(c);
        return -1;
    }
    return 0;
}

int child_answer(child_proc *c, const char *const *answers, char *line,
                 size_t len, char *last, size_t last_len)
{
    while (c->from && fgets(line, (int)len, c->from)) {
        line[strcspn(line, "\r\n")] = '\0';
        for (int i = 0; answers[i]; i++)
            if (strncmp(line, answers[i], strlen(answers[i])) == 0)
                return 0;
        if (line[0] && last)
            util_scopy(last, last_len, line);
    }
    return -1;
}

int child_wait(child_proc *c)
{
    if (c->to)
        fclose(c->to); /* its end of input */
    if (c->from)
        fclose(c->from);
    c->to = c->from = NULL;
    int status = -1;
    while (c->pid > 0 && waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        ;
    c->pid = -1;
    return status;
}
