/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The native backend's worker pool: threads - 1 persistent pthreads plus the
 * calling thread (worker 0).  A job is a function run once per item; items
 * are handed out one at a time from an atomic counter so uneven items
 * (causal tiles) balance themselves.
 *
 * Locking: job_lock serializes callers of attn_pool_run for the whole job.
 * lock guards generation, stop, the job fields and active; workers sleep on
 * wake and the caller sleeps on done.  The item counter is atomic and read
 * without lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "cpu/cpu_impl.h"

struct attn_pool {
    int threads;
    int started; /* helper threads actually created */
    pthread_t *tids;
    struct worker_arg *args;

    pthread_mutex_t job_lock;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;

    unsigned long generation; /* bumped for every job */
    int stop;
    int active; /* helpers still inside the current job */

    attn_pool_fn fn;
    void *arg;
    size_t n;
    atomic_size_t next;
};

struct worker_arg {
    attn_pool *pool;
    int worker;
};

static void run_items(attn_pool *p, attn_pool_fn fn, void *arg, size_t n,
                      int worker)
{
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n)
            break;
        fn(arg, i, worker);
    }
}

static void *worker_main(void *vp)
{
    struct worker_arg *wa = vp;
    attn_pool *p = wa->pool;
    unsigned long seen = 0;

    for (;;) {
        attn_pool_fn fn;
        void *arg;
        size_t n;

        pthread_mutex_lock(&p->lock);
        while (p->generation == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop) {
            pthread_mutex_unlock(&p->lock);
            break;
        }
        seen = p->generation;
        fn = p->fn;
        arg = p->arg;
        n = p->n;
        pthread_mutex_unlock(&p->lock);

        run_items(p, fn, arg, n, wa->worker);

        pthread_mutex_lock(&p->lock);
        if (--p->active == 0)
            pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

/* Stops and joins the helpers that were started, then frees everything.
 * Used by destroy and by every failure path of create. */
static void pool_teardown(attn_pool *p, int sync_ready)
{
    int i;

    if (sync_ready) {
        pthread_mutex_lock(&p->lock);
        p->stop = 1;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (i = 0; i < p->started; i++)
            pthread_join(p->tids[i], NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        pthread_mutex_destroy(&p->job_lock);
    }
    free(p->args);
    free(p->tids);
    free(p);
}

/* Initializes the locks in order; on failure undoes the ones made. */
static int pool_sync_init(attn_pool *p)
{
    if (pthread_mutex_init(&p->job_lock, NULL) != 0)
        return -1;
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        goto fail_lock;
    if (pthread_cond_init(&p->wake, NULL) != 0)
        goto fail_wake;
    if (pthread_cond_init(&p->done, NULL) != 0)
        goto fail_done;
    return 0;

fail_done:
    pthread_cond_destroy(&p->wake);
fail_wake:
    pthread_mutex_destroy(&p->lock);
fail_lock:
    pthread_mutex_destroy(&p->job_lock);
    return -1;
}

attn_status attn_pool_create(int threads, attn_pool **out)
{
    attn_pool *p;
    int i, helpers;

    if (!out)
        return ATTN_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (threads < 1)
        return ATTN_ERR_INVALID_ARGUMENT;

    p = calloc(1, sizeof *p);
    if (!p)
        return ATTN_ERR_OUT_OF_MEMORY;
    p->threads = threads;
    atomic_init(&p->next, 0);
    helpers = threads - 1;
    if (helpers > 0) {
        p->tids = calloc((size_t)helpers, sizeof *p->tids);
        p->args = calloc((size_t)helpers, sizeof *p->args);
        if (!p->tids || !p->args) {
            pool_teardown(p, 0);
            return ATTN_ERR_OUT_OF_MEMORY;
        }
    }
    if (pool_sync_init(p) != 0) {
        pool_teardown(p, 0);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    for (i = 0; i < helpers; i++) {
        p->args[i].pool = p;
        p->args[i].worker = i + 1;
        if (pthread_create(&p->tids[i], NULL, worker_main, &p->args[i]) != 0) {
            pool_teardown(p, 1);
            return ATTN_ERR_OUT_OF_MEMORY;
        }
        p->started++;
    }
    *out = p;
    return ATTN_OK;
}

void attn_pool_destroy(attn_pool *p)
{
    if (p)
        pool_teardown(p, 1);
}

int attn_pool_threads(const attn_pool *p)
{
    return p ? p->threads : 1;
}

void attn_pool_run(attn_pool *p, size_t n, attn_pool_fn fn, void *arg)
{
    size_t i;

    if (!p || !fn || n == 0)
        return;
    pthread_mutex_lock(&p->job_lock);
    if (p->started == 0 || n == 1) {
        /* nothing to share: skip the wake-up round trip */
        for (i = 0; i < n; i++)
            fn(arg, i, 0);
        pthread_mutex_unlock(&p->job_lock);
        return;
    }

    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->active = p->started;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    run_items(p, fn, arg, n, 0);

    pthread_mutex_lock(&p->lock);
    while (p->active > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->job_lock);
}
