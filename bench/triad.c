/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory bandwidth the decode rows are held against: a STREAM-style
 * triad, a[i] = b[i] + s * c[i], over three arrays of doubles much larger
 * than the last-level cache, on the bench's thread count.  Decode reads
 * each element of K and V once, so it cannot beat what the memory gives.
 */
#include "bench.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t triad_llc_bytes(void)
{
    /* the highest cache level sysfs lists for cpu0 */
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[64];
        snprintf(path, sizeof path,
                 "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            unsigned long long v = strtoull(buf, &end, 10);
            if (*end == 'K')
                v <<= 10;
            else if (*end == 'M')
                v <<= 20;
            if (v > best)
                best = (size_t)v;
        }
        fclose(f);
    }
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (best == 0) {
        long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (l3 > 0)
            best = (size_t)l3;
    }
#endif
    return best;
}

size_t triad_default_mib(void)
{
    size_t mib = 4 * (triad_llc_bytes() >> 20);
    if (mib < 64)
        mib = 64;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0) {
        size_t cap = (size_t)pages / 8 * (size_t)psize >> 20;
        if (cap >= 16 && mib > cap)
            mib = cap;
    }
    return mib;
}

typedef struct triad_job {
    double *a, *b, *c;
    size_t lo, hi;
    int init; /* first touch instead of the triad */
} triad_job;

static void *triad_part(void *arg)
{
    const triad_job *j = arg;
    double *restrict a = j->a, *restrict b = j->b, *restrict c = j->c;
    const double s = 3.0;
    if (j->init) {
        for (size_t i = j->lo; i < j->hi; i++) {
            a[i] = 0.0;
            b[i] = 1.0;
            c[i] = 2.0;
        }
        return NULL;
    }
    for (size_t i = j->lo; i < j->hi; i++)
        a[i] = b[i] + s * c[i];
    return NULL;
}

/* One pass on every thread (the caller's is one of them): its time in ms,
 * or -1 when a thread could not be started (why). */
static double triad_pass(triad_job *jobs, pthread_t *tid, int threads, int init,
                         char *why, size_t why_len)
{
    double t0 = util_now_ms();
    int made = 1, err = 0;
    for (int t = 0; t < threads; t++)
        jobs[t].init = init;
    for (; made < threads && !err; made++)
        err = pthread_create(&tid[made], NULL, triad_part, &jobs[made]);
    if (err) /* the last try made no thread */
        made--;
    triad_part(&jobs[0]);
    for (int t = 1; t < made; t++)
        pthread_join(tid[t], NULL);
    double ms = util_now_ms() - t0;
    if (err) {
        snprintf(why, why_len, "pthread_create: %s", strerror(err));
        return -1;
    }
    return ms;
}

int triad_measure(int threads, size_t mib, int runs, double *median_gbps,
                  double *best_gbps, char *why, size_t why_len)
{
    *median_gbps = *best_gbps = 0;
    if (threads < 1 || runs < 1 || mib < 1) {
        snprintf(why, why_len, "bad arguments");
        return -1;
    }
    size_t n = (mib << 20) / sizeof(double);
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b),
           *c = malloc(n * sizeof *c), *ms = calloc((size_t)runs, sizeof *ms);
    triad_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int rc = -1;
    if (!a || !b || !c || !ms || !jobs || !tid) {
        snprintf(why, why_len, "out of memory (3 x %zu MiB)", mib);
        goto out;
    }
    for (int t = 0; t < threads; t++) {
        jobs[t].a = a;
        jobs[t].b = b;
        jobs[t].c = c;
        jobs[t].lo = n / (size_t)threads * (size_t)t;
        jobs[t].hi =
            t == threads - 1 ? n : n / (size_t)threads * (size_t)(t + 1);
    }
    /* first touch, then one untimed pass */
    if (triad_pass(jobs, tid, threads, 1, why, why_len) < 0 ||
        triad_pass(jobs, tid, threads, 0, why, why_len) < 0)
        goto out;
    for (int r = 0; r < runs; r++)
        if ((ms[r] = triad_pass(jobs, tid, threads, 0, why, why_len)) < 0)
            goto out;
    double bytes = 3.0 * sizeof(double) * (double)n;
    *best_gbps = bytes / (util_min(ms, runs) * 1e6);
    *median_gbps = bytes / (util_median(ms, runs) * 1e6);
    rc = 0;
out:
    free(a);
    free(b);
    free(c);
    free(ms);
    free(jobs);
    free(tid);
    return rc;
}
