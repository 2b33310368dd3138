/* Splitting a kernel's independent work items over POSIX threads.
 *
 * The caller passes a worker function; fc_parallel runs it on the calling thread and on up to
 * n_threads - 1 threads it creates for this call and joins before returning. Every copy of the
 * worker claims chunks of items from a shared queue (fc_queue_next) until none is left, so a
 * thread slowed by another process on the machine simply claims fewer chunks. A worker owns its
 * scratch memory (allocate on entry, free on exit) and returns FC_OK or an error status; the
 * first error stops further claims and is what fc_parallel returns.
 *
 * Thread count: never more threads than items, and one thread for less than FC_SERIAL_WORK
 * elements of work (a thread's creation costs tens of microseconds, the order of the work
 * itself below that). When a thread cannot be created, the threads that exist (at least the
 * calling one) do all the work: results never depend on how many threads ran, only the time.
 *
 * No Python here: the bindings read the thread setting with the GIL held and pass it in.
 */
#ifndef FINERCAM_PARALLEL_H
#define FINERCAM_PARALLEL_H

#include <stddef.h>

#include "status.h"

/* Elements of work (pixels read or written) below which a call stays on the calling thread. */
#define FC_SERIAL_WORK 65536

/* The default thread count is the process's CPUs, capped here: the kernels are bound by memory
 * bandwidth well before eight cores. */
#define FC_DEFAULT_MAX_THREADS 8

typedef struct fc_queue fc_queue;

/* Claims the next chunk [*begin, *end) of items; returns 0 when none is left or a worker failed. */
int fc_queue_next(fc_queue *q, ptrdiff_t *begin, ptrdiff_t *end);

typedef int (*fc_worker)(void *ctx, fc_queue *q);

/* Runs `worker(ctx, q)` on min(n_threads, n_items) threads (one when work < FC_SERIAL_WORK) over
 * the items [0, n_items). Returns FC_OK or the first status a worker returned. */
int fc_parallel(fc_worker worker, void *ctx, ptrdiff_t n_items, ptrdiff_t work, int n_threads);

/* The CPUs this process may run on (sched_getaffinity where available), in [1,
 * FC_DEFAULT_MAX_THREADS]. */
int fc_default_threads(void);

#endif
