/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Communication that never hangs: waits on MPI requests bounded by a
 * deadline (MPI_Testall in a loop), the cancellation of what a failed wait
 * left open, the ranks' agreement on a status (a non-blocking all-reduce),
 * and the thread's last error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ring_impl.h"

static _Thread_local char last_error[512];

void ring_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *attn_ring_last_error(void)
{
    return last_error;
}

double ring_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Polls without taking a whole core from a rank that shares it, or from
 * the blocks computing on this rank (busy): a few hundred tests back to
 * back (a message due now costs no sleep), then a short sleep between
 * tests. */
static void pause_poll(unsigned long polls, int busy)
{
    if (polls < 256 && !busy)
        return;
    struct timespec ts = {0, busy ? 100000 : 20000};
    nanosleep(&ts, NULL);
}

attn_status ring_wait(MPI_Request *reqs, int n, double tmo,
                      const atomic_int *busy, char *why, size_t cap,
                      const char *what)
{
    double deadline = ring_now() + tmo;
    for (unsigned long polls = 0;; polls++) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) {
            char msg[MPI_MAX_ERROR_STRING] = "";
            int len = 0;
            MPI_Error_string(rc, msg, &len);
            snprintf(why, cap, "%s: MPI error: %s", what, msg);
            return ATTN_ERR_DEVICE;
        }
        if (done)
            return ATTN_OK;
        double now = ring_now();
        int running =
            busy && atomic_load_explicit(busy, memory_order_acquire) != 0;
        if (running)
            deadline = now + tmo;
        else if (now > deadline) {
            snprintf(why, cap, "%s: no answer within the timeout", what);
            return ATTN_ERR_DEVICE;
        }
        pause_poll(polls, running);
    }
}

int ring_cancel(MPI_Request *reqs, int n, double grace_s)
{
    for (int i = 0; i < n; i++)
        if (reqs[i] != MPI_REQUEST_NULL)
            MPI_Cancel(&reqs[i]);
    double deadline = ring_now() + grace_s;
    for (unsigned long polls = 0;; polls++) {
        int done = 0;
        if (MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            return 0;
        if (done)
            return 1;
        if (ring_now() > deadline)
            return 0;
        pause_poll(polls, 0);
    }
}

attn_status ring_agree(MPI_Comm comm, int rank, attn_status mine, uint32_t hash,
                       double tmo, attn_status *agreed, int *failed_rank,
                       int *same, char *why, size_t cap)
{
    /* Max of (status, failing rank, hash, -hash): the hash's max and min
     * are equal when every rank's is.  30 bits keep -hash an int.  The
     * buffers live on the heap: after a timeout the collective stays open
     * (MPI cannot cancel one) and may still read and write them, so they
     * are then left to it. */
    int *buf = malloc(8 * sizeof *buf);
    if (!buf) {
        snprintf(why, cap, "no memory for the ranks' agreement");
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    int h = (int)(hash & 0x3fffffffu);
    int *send = buf, *recv = buf + 4;
    send[0] = (int)mine;
    send[1] = mine != ATTN_OK ? rank : -1;
    send[2] = h;
    send[3] = -h;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(send, recv, 4, MPI_INT, MPI_MAX, comm, &req);
    if (rc != MPI_SUCCESS) {
        free(buf);
        snprintf(why, cap, "the ranks' agreement could not start");
        return ATTN_ERR_DEVICE;
    }
    attn_status st = ring_wait(&req, 1, tmo, NULL, why, cap,
                               "the ranks' agreement (MPI_Iallreduce)");
    if (st != ATTN_OK)
        return st; /* buf stays with the open collective */
    *agreed = (attn_status)recv[0];
    *failed_rank = recv[1];
    *same = recv[2] == -recv[3];
    free(buf);
    return ATTN_OK;
}
