/* The threaded kernels (parallel.c, rank.c) with 1, 2, 3 and 8 threads, under ASan/UBSan
 * (`make csan`): every result equals an independent qsort-based ranking and the single-threaded
 * result, whatever the thread count, and when thread creation fails.
 *
 * Built with -Wl,--wrap=pthread_create: every pthread_create of the kernels goes through
 * __wrap_pthread_create below, which counts the threads and fails once `spawn_budget` creations
 * have been allowed (a negative budget never fails). Prints one line per failure and closes with
 * "N passed, N failed". */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "rank.h"

#include "check.h"

/* ---------------------------------------------------------------- pthread_create under test */

int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
int __wrap_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);

static pthread_mutex_t spawn_lock = PTHREAD_MUTEX_INITIALIZER;
static int spawn_budget = -1, spawned;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    pthread_mutex_lock(&spawn_lock);
    const int refuse = spawn_budget == 0;
    if (!refuse) {
        spawned++;
        if (spawn_budget > 0) {
            spawn_budget--;
        }
    }
    pthread_mutex_unlock(&spawn_lock);
    return refuse ? 11 /* EAGAIN */ : __real_pthread_create(t, attr, fn, arg);
}

/* ---------------------------------------------------------------- the oracle */

static const float *sort_map; /* qsort has no context argument */

/* The rule spelled out: larger first, -0.0 == +0.0, NaN last, ties to the lower index. */
static int cmp_desc(const void *pa, const void *pb)
{
    const int64_t a = *(const int64_t *)pa, b = *(const int64_t *)pb;
    const float x = sort_map[a], y = sort_map[b];
    const int xn = x != x, yn = y != y;
    if (xn != yn) {
        return xn ? 1 : -1;
    }
    if (!xn && x != y) {
        return x > y ? -1 : 1;
    }
    return a < b ? -1 : a > b;
}

static void oracle_order(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *order)
{
    for (ptrdiff_t m = 0; m < n_maps; m++) {
        int64_t *o = order + m * n_pix;
        for (ptrdiff_t p = 0; p < n_pix; p++) {
            o[p] = p;
        }
        sort_map = maps + m * n_pix;
        qsort(o, (size_t)n_pix, sizeof(int64_t), cmp_desc);
    }
}

/* Maps of few distinct values (ties), both zero signs, NaN now and then; or continuous ones. */
static void fill_maps(float *x, ptrdiff_t n, int tied)
{
    for (ptrdiff_t p = 0; p < n; p++) {
        if (tied) {
            const uint32_t v = rng() % 11;
            x[p] = v == 0 ? NAN : v == 1 ? -0.0f : (float)((int)v - 5) * 0.5f;
        } else {
            x[p] = (float)rng() / 4294967296.0f;
        }
    }
}

/* ---------------------------------------------------------------- the kernels */

static const int thread_counts[] = {1, 2, 3, 8};
#define N_COUNTS (sizeof(thread_counts) / sizeof(thread_counts[0]))

/* argsort_desc and rank_desc of n_maps maps with every thread count against the oracle. */
static void check_ranking(ptrdiff_t n_maps, ptrdiff_t n_pix, int tied)
{
    const ptrdiff_t n = n_maps * n_pix;
    float *maps = malloc(sizeof(float) * n);
    int64_t *want = malloc(sizeof(int64_t) * n), *order = malloc(sizeof(int64_t) * n);
    int64_t *rank = malloc(sizeof(int64_t) * n);
    if (!maps || !want || !order || !rank) {
        failed++;
        goto exit;
    }
    fill_maps(maps, n, tied);
    oracle_order(maps, n_maps, n_pix, want);
    for (size_t t = 0; t < N_COUNTS; t++) {
        int ok_order = 1, ok_rank = 1;
        memset(order, 0xAB, sizeof(int64_t) * n);
        CHECK(fc_argsort_desc(maps, n_maps, n_pix, order, thread_counts[t]) == FC_OK);
        CHECK(fc_rank_desc(maps, n_maps, n_pix, rank, thread_counts[t]) == FC_OK);
        for (ptrdiff_t m = 0; m < n_maps; m++) {
            for (ptrdiff_t r = 0; r < n_pix; r++) {
                const int64_t p = want[m * n_pix + r];
                ok_order &= order[m * n_pix + r] == p;
                ok_rank &= rank[m * n_pix + p] == r;
            }
        }
        CHECK(ok_order);
        CHECK(ok_rank);
        if (!ok_order || !ok_rank) {
            printf("  ranking of %td x %td px (tied %d) with %d threads\n", n_maps, n_pix, tied,
                   thread_counts[t]);
        }
    }
exit:
    free(maps);
    free(want);
    free(order);
    free(rank);
}

/* The masked copies made from the oracle's order (order: scratch of n_img * n_pix, rank: of
 * n_pix). */
static void oracle_mask(const float *img, const float *maps, const float *base, ptrdiff_t n_img,
                        ptrdiff_t n_ch, ptrdiff_t n_pix, const int64_t *counts, ptrdiff_t n_counts,
                        int64_t *order, int64_t *rank, float *want)
{
    oracle_order(maps, n_img, n_pix, order);
    for (ptrdiff_t i = 0; i < n_img; i++) {
        for (ptrdiff_t r = 0; r < n_pix; r++) {
            rank[order[i * n_pix + r]] = r;
        }
        for (ptrdiff_t s = 0; s < n_counts; s++) {
            for (ptrdiff_t c = 0; c < n_ch; c++) {
                for (ptrdiff_t p = 0; p < n_pix; p++) {
                    const ptrdiff_t src = (i * n_ch + c) * n_pix + p;
                    want[((i * n_counts + s) * n_ch + c) * n_pix + p] =
                        rank[p] < counts[s] ? base[src] : img[src];
                }
            }
        }
    }
}

/* mask_top with every thread count against masks made from the oracle's order. */
static void check_mask(ptrdiff_t n_img, ptrdiff_t n_ch, ptrdiff_t n_pix, const int64_t *counts,
                       ptrdiff_t n_counts, int tied)
{
    const ptrdiff_t n_in = n_img * n_ch * n_pix, n_out = n_in * n_counts;
    float *img = malloc(sizeof(float) * n_in), *base = malloc(sizeof(float) * n_in);
    float *maps = malloc(sizeof(float) * n_img * n_pix);
    float *want = malloc(sizeof(float) * n_out), *out = malloc(sizeof(float) * n_out);
    int64_t *order = malloc(sizeof(int64_t) * n_img * n_pix);
    int64_t *rank = malloc(sizeof(int64_t) * n_pix);
    if (!img || !base || !maps || !want || !out || !order || !rank) {
        failed++;
        goto exit;
    }
    for (ptrdiff_t p = 0; p < n_in; p++) {
        img[p] = (float)p;
        base[p] = -1.0f - (float)p;
    }
    fill_maps(maps, n_img * n_pix, tied);
    oracle_mask(img, maps, base, n_img, n_ch, n_pix, counts, n_counts, order, rank, want);
    for (size_t t = 0; t < N_COUNTS; t++) {
        memset(out, 0xAB, sizeof(float) * n_out);
        CHECK(fc_mask_top(img, maps, base, n_img, n_ch, n_pix, counts, n_counts, out,
                          thread_counts[t]) == FC_OK);
        CHECK(memcmp(out, want, sizeof(float) * n_out) == 0);
    }
    /* an output plane that starts off the 16-byte grid: the fill's unaligned head and tail */
    if (n_out > 1) {
        float *shifted = malloc(sizeof(float) * (n_out + 1));
        if (shifted) {
            CHECK(fc_mask_top(img, maps, base, n_img, n_ch, n_pix, counts, n_counts, shifted + 1,
                              2) == FC_OK);
            CHECK(memcmp(shifted + 1, want, sizeof(float) * n_out) == 0);
        }
        free(shifted);
    }
exit:
    free(img);
    free(base);
    free(maps);
    free(want);
    free(out);
    free(order);
    free(rank);
}

static void test_kernels(void)
{
    const int64_t few[3] = {0, 1000, 5000}, all[2] = {70000, 0};
    int64_t steps[21], tiny[3] = {0, 1, 4};
    const int before = spawned;
    for (int s = 0; s <= 20; s++) {
        steps[s] = (s * 67 * 67 + 19) / 20; /* a deletion curve's counts, up to every pixel */
    }

    check_ranking(1, 300 * 300, 0);          /* one map: one thread sorts it */
    check_ranking(2, 181 * 181, 1);          /* fewer maps than threads, ties and NaN */
    check_ranking(7, 113 * 97, 0);           /* more maps than threads, an odd count */
    check_ranking(20000, 4, 1);              /* tiny maps, many of them */
    check_mask(1, 3, 67 * 67, steps, 21, 0); /* one image: the planes are split */
    check_mask(3, 1, 151 * 151, few, 3, 1);  /* head-only sort, RD-like counts */
    check_mask(2, 2, 70000, all, 2, 0);      /* every pixel masked, and none */
    check_mask(6000, 3, 4, tiny, 3, 1);      /* tiny maps: 2x2 */
    check_mask(1, 3, 301, tiny, 1, 0);       /* below the threshold: single-threaded */
    CHECK(spawned > before);                 /* the checks above did run on several threads */
}

/* pthread_create failing (from the first thread, or after one) changes nothing but the time. */
static void test_spawn_failures(void)
{
    const int64_t counts[2] = {100, 2000};
    spawn_budget = 0;
    check_ranking(5, 120 * 120, 1);
    check_mask(3, 3, 120 * 120, counts, 2, 0);
    spawn_budget = 1;
    check_ranking(5, 120 * 120, 1);
    check_mask(3, 3, 120 * 120, counts, 2, 0);
    spawn_budget = -1;
}

/* ---------------------------------------------------------------- fc_parallel itself */

typedef struct {
    pthread_mutex_t lock;
    ptrdiff_t n_items;
    unsigned char *seen; /* how often each item was claimed */
    int workers;         /* how many copies of the worker ran */
    ptrdiff_t fail_at;   /* the item whose worker returns FC_ENOMEM, or -1 */
} count_job;

static int count_worker(void *arg, fc_queue *q)
{
    count_job *job = arg;
    int status = FC_OK;
    void *scratch = malloc(64); /* a worker's own scratch, freed on every path */
    pthread_mutex_lock(&job->lock);
    job->workers++;
    pthread_mutex_unlock(&job->lock);
    if (!scratch) {
        status = FC_ENOMEM;
        goto exit;
    }
    ptrdiff_t b, e;
    while (fc_queue_next(q, &b, &e)) {
        for (ptrdiff_t i = b; i < e; i++) {
            pthread_mutex_lock(&job->lock);
            job->seen[i]++;
            pthread_mutex_unlock(&job->lock);
            if (i == job->fail_at) {
                status = FC_ENOMEM;
                goto exit;
            }
        }
    }
exit:
    free(scratch);
    return status;
}

/* Runs count_worker; returns fc_parallel's status, the copies that ran and the claims. */
static int run_counted(ptrdiff_t n_items, ptrdiff_t work, int n_threads, ptrdiff_t fail_at,
                       int *workers, int *all_once)
{
    count_job job;
    pthread_mutex_init(&job.lock, NULL);
    job.n_items = n_items;
    job.seen = calloc((size_t)(n_items > 0 ? n_items : 1), 1);
    job.workers = 0;
    job.fail_at = fail_at;
    const int status = fc_parallel(count_worker, &job, n_items, work, n_threads);
    *workers = job.workers;
    *all_once = 1;
    for (ptrdiff_t i = 0; i < n_items; i++) {
        *all_once &= job.seen[i] == 1;
    }
    free(job.seen);
    pthread_mutex_destroy(&job.lock);
    return status;
}

static void test_parallel(void)
{
    int workers, once;
    CHECK(run_counted(1000, 1 << 20, 4, -1, &workers, &once) == FC_OK);
    CHECK(workers == 4 && once);
    CHECK(run_counted(3, 1 << 20, 8, -1, &workers, &once) == FC_OK);
    CHECK(workers == 3 && once); /* never more threads than items */
    const int before = spawned;
    CHECK(run_counted(1000, FC_SERIAL_WORK - 1, 8, -1, &workers, &once) == FC_OK);
    CHECK(workers == 1 && once && spawned == before); /* a small job stays on the caller */
    CHECK(run_counted(0, 1 << 20, 4, -1, &workers, &once) == FC_OK);
    CHECK(run_counted(1000, 1 << 20, 0, -1, &workers, &once) == FC_OK);
    CHECK(workers == 1 && once); /* a thread count below 1 means one */
    /* a failing worker: its status comes back, the other workers stop claiming */
    CHECK(run_counted(1000, 1 << 20, 4, 10, &workers, &once) == FC_ENOMEM);
    CHECK(run_counted(1000, 1 << 20, 1, 999, &workers, &once) == FC_ENOMEM);
    spawn_budget = 0;
    CHECK(run_counted(1000, 1 << 20, 4, -1, &workers, &once) == FC_OK);
    CHECK(workers == 1 && once); /* no thread could be created: the caller did everything */
    spawn_budget = 2;
    CHECK(run_counted(1000, 1 << 20, 8, -1, &workers, &once) == FC_OK);
    CHECK(workers == 3 && once);
    spawn_budget = -1;
    CHECK(fc_default_threads() >= 1 && fc_default_threads() <= FC_DEFAULT_MAX_THREADS);
}

int main(void)
{
    test_parallel();
    test_kernels();
    test_spawn_failures();
    return check_report();
}
