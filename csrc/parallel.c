/* sched_getaffinity and CPU_COUNT are GNU extensions: they need _GNU_SOURCE before any header. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "parallel.h"

#include <stdlib.h>

#include "alloc.h"

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
    if (q->locked) {
        pthread_mutex_lock(&q->lock);
    }
}

static void queue_unlock(fc_queue *q)
{
    if (q->locked) {
        pthread_mutex_unlock(&q->lock);
    }
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
    if (q->status == FC_OK) {
        q->status = status;
    }
    queue_unlock(q);
}

static void run_worker(fc_queue *q)
{
    const int status = q->worker(q->ctx, q);
    if (status != FC_OK) {
        queue_fail(q, status);
    }
}

#if !FC_NO_THREADS
static void *thread_main(void *arg)
{
    run_worker(arg);
    return NULL;
}

/* Starts up to n - 1 threads on the queue (when n > 1), storing their ids in *tids; returns how
 * many started. A thread that cannot be created leaves its share to the others. */
static ptrdiff_t start_threads(fc_queue *q, ptrdiff_t n, pthread_t **tids)
{
    ptrdiff_t started = 0;
    int status = FC_OK;
    if (n <= 1 || (*tids = fc_malloc(n - 1, sizeof(**tids), &status)) == NULL ||
        pthread_mutex_init(&q->lock, NULL) != 0) {
        return 0;
    }
    q->locked = 1;
    while (started < n - 1 && pthread_create(&(*tids)[started], NULL, thread_main, q) == 0) {
        started++;
    }
    return started;
}
#endif

int fc_parallel(fc_worker worker, void *ctx, ptrdiff_t n_items, ptrdiff_t work, int n_threads)
{
    ptrdiff_t n = n_threads > 1 ? n_threads : 1;
    if (n > n_items) {
        n = n_items;
    }
    if (work < FC_SERIAL_WORK || n < 1) {
        n = 1;
    }
    fc_queue q = {.worker = worker, .ctx = ctx, .status = FC_OK};
    q.n_items = n_items > 0 ? n_items : 0;
    /* about four claims per thread: small enough to balance a thread slowed by other processes,
     * large enough that the lock is taken rarely */
    q.grain = q.n_items / (4 * n) > 1 ? q.n_items / (4 * n) : 1;
#if !FC_NO_THREADS
    pthread_t *tids = NULL;
    const ptrdiff_t started = start_threads(&q, n, &tids);
#endif
    run_worker(&q);
#if !FC_NO_THREADS
    for (ptrdiff_t t = 0; t < started; t++) {
        pthread_join(tids[t], NULL);
    }
    if (q.locked) {
        pthread_mutex_destroy(&q.lock);
    }
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
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        n = CPU_COUNT(&set);
    } else {
        n = sysconf(_SC_NPROCESSORS_ONLN);
    }
#elif defined(_SC_NPROCESSORS_ONLN)
    n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
#endif
    if (n < 1) {
        n = 1;
    }
    return n > FC_DEFAULT_MAX_THREADS ? FC_DEFAULT_MAX_THREADS : (int)n;
}
