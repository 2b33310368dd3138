/* sched_getaffinity and CPU_COUNT are GNU extensions: they need _GNU_SOURCE before any header. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "parallel.h"

#include <stdlib.h>

#if defined(_WIN32)
#define FC_NO_THREADS 1 /* no pthreads: every call runs on the calling thread */
#else
#include <pthread.h>
#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif
#endif

struct fc_queue {
#if !FC_NO_THREADS
    pthread_mutex_t lock;
#endif
    int locked; /* 0 while only the calling thread runs: no locking needed */
    int status; /* the first failure; stops every later claim */
    ptrdiff_t next, n_items, grain;
    fc_worker worker;
    void *ctx;
};

#if !FC_NO_THREADS
static void queue_lock(fc_queue *q)
{
    if (q->locked)
        pthread_mutex_lock(&q->lock);
}

static void queue_unlock(fc_queue *q)
{
    if (q->locked)
        pthread_mutex_unlock(&q->lock);
}
#else
#define queue_lock(q) ((void)(q))
#define queue_unlock(q) ((void)(q))
#endif

int fc_queue_next(fc_queue *q, ptrdiff_t *begin, ptrdiff_t *end)
{
    int got = 0;
    queue_lock(q);
    if (q->status == FC_OK && q->next < q->n_items) {
        *begin = q->next;
        q->next = q->n_items - q->next > q->grain ? q->next + q->grain : q->n_items;
        *end = q->next;
        got = 1;
    }
    queue_unlock(q);
    return got;
}

static void queue_fail(fc_queue *q, int status)
{
    queue_lock(q);
    if (q->status == FC_OK)
        q->status = status;
    queue_unlock(q);
}

#if !FC_NO_THREADS
static void *thread_main(void *arg)
{
    fc_queue *q = arg;
    int status = q->worker(q->ctx, q);
    if (status != FC_OK)
        queue_fail(q, status);
    return NULL;
}
#endif

int fc_parallel(fc_worker worker, void *ctx, ptrdiff_t n_items, ptrdiff_t work, int n_threads)
{
    fc_queue q;
    ptrdiff_t n = n_threads > 1 ? n_threads : 1;
    int status;
#if !FC_NO_THREADS
    pthread_t *tids = NULL;
    ptrdiff_t t, started = 0;
#endif

    if (n > n_items)
        n = n_items;
    if (work < FC_SERIAL_WORK || n < 1)
        n = 1;
    q.locked = 0;
    q.status = FC_OK;
    q.next = 0;
    q.n_items = n_items > 0 ? n_items : 0;
    /* about four claims per thread: small enough to balance a thread slowed by other processes,
     * large enough that the lock is taken rarely */
    q.grain = q.n_items / (4 * n) > 1 ? q.n_items / (4 * n) : 1;
    q.worker = worker;
    q.ctx = ctx;
#if !FC_NO_THREADS
    if (n > 1 && (tids = malloc((size_t)(n - 1) * sizeof(*tids))) != NULL &&
        pthread_mutex_init(&q.lock, NULL) == 0) {
        q.locked = 1;
        for (t = 0; t < n - 1; t++) {
            /* a thread that cannot be created leaves its share to the others */
            if (pthread_create(&tids[t], NULL, thread_main, &q) != 0)
                break;
            started++;
        }
    }
#endif
    status = worker(ctx, &q);
    if (status != FC_OK)
        queue_fail(&q, status);
#if !FC_NO_THREADS
    for (t = 0; t < started; t++)
        pthread_join(tids[t], NULL);
    if (q.locked)
        pthread_mutex_destroy(&q.lock);
    free(tids);
#endif
    return q.status;
}

int fc_default_threads(void)
{
    long n = 1;
#if !FC_NO_THREADS
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    /* the affinity mask, not the machine: a process pinned to 2 of 64 CPUs gets 2 threads */
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    else
        n = sysconf(_SC_NPROCESSORS_ONLN);
#elif defined(_SC_NPROCESSORS_ONLN)
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
#endif
    if (n < 1)
        n = 1;
    return n > FC_DEFAULT_MAX_THREADS ? FC_DEFAULT_MAX_THREADS : (int)n;
}
