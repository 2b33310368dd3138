/* Stable descending ranking by LSD radix sort on 32-bit keys: linear time and stable by
 * construction, which is what "ties to the lower flat index" needs, and several times faster
 * than a comparison sort on the 10^4 - 10^5 pixels of a map. */
#include "rank.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "alloc.h"
#include "parallel.h"

#define DIGIT_BITS 11
#define N_BUCKETS (1u << DIGIT_BITS)
#define N_PASSES 3 /* 11 + 11 + 10 bits */

/* A pixel in the sort: its key in the high 32 bits, its flat index in the low ones. One 8-byte
 * store per pixel and pass, into one stream per bucket, instead of two stores into two. */
typedef uint64_t entry;

#define ENTRY_INDEX(e) ((uint32_t)(e))
#define ENTRY_KEY(e) ((uint32_t)((e) >> 32))

typedef struct {
    entry *e, *tmp; /* e: the entries in their current order */
} work_t;

/* An unsigned key whose ascending order is the descending order of the floats. Branch-free so
 * that the key loop vectorises: adding +0.0 turns -0.0 into +0.0 (round to nearest) and leaves
 * every other value as it is, so the zeros tie; a negative float's bits are all flipped, a
 * positive one's sign bit is set (ascending order), and the result is flipped (descending). */
static uint32_t desc_key(float v)
{
    uint32_t u;
    v += 0.0f;
    memcpy(&u, &v, sizeof u);
    const uint32_t neg = (uint32_t)0 - (u >> 31);
    u = ~(u ^ (neg | 0x80000000u));
    return v != v ? UINT32_MAX : u; /* NaN after everything; no number maps to UINT32_MAX */
}

static int work_alloc(work_t *w, ptrdiff_t n_pix)
{
    int status = FC_OK;
    w->e = fc_malloc(n_pix, sizeof(entry), &status);
    w->tmp = fc_malloc(n_pix, sizeof(entry), &status);
    return status;
}

static void work_free(work_t *w)
{
    free(w->e);
    free(w->tmp);
}

/* LSD passes over the m entries in w->e with histograms already counted; leaves them sorted in
 * w->e. The arrays are read through local pointers: with -fno-strict-aliasing a store through
 * w->tmp could change w itself, and the compiler would reload the pointers after every store. */
static void radix_passes(uint32_t m, uint32_t hist[N_PASSES][N_BUCKETS], work_t *w)
{
    for (int pass = 0; pass < N_PASSES; pass++) {
        uint32_t *h = hist[pass];
        const entry *src = w->e;
        entry *dst = w->tmp;
        const unsigned shift = 32 + (unsigned)pass * DIGIT_BITS;
        /* A digit shared by every key leaves the order unchanged: skip the pass. Min-max
         * normalised maps share their top bits, so this often saves a pass. */
        if (m == 0 || h[(src[0] >> shift) & (N_BUCKETS - 1)] == m) {
            continue;
        }
        uint32_t sum = 0;
        for (unsigned b = 0; b < N_BUCKETS; b++) {
            const uint32_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (uint32_t i = 0; i < m; i++) {
            const entry e = src[i];
            dst[h[(e >> shift) & (N_BUCKETS - 1)]++] = e;
        }
        w->tmp = w->e;
        w->e = dst;
    }
}

#define TOP_SHIFT (32 + 2 * DIGIT_BITS) /* the top key digit of an entry */

/* Copies the entries all[0, n) whose top digit is at most the one that the `limit`-th largest
 * key falls in to kept, in index order (which keeps the sort stable); returns how many.
 *
 * Neighbouring pixels of a smooth map share their top digit: counting into one array would make
 * each increment wait for the previous one. Two arrays, even and odd pixels, halve that chain. */
static uint32_t keep_head(const entry *all, uint32_t n, uint32_t limit, entry *kept)
{
    uint32_t even[N_BUCKETS], odd[N_BUCKETS];
    memset(even, 0, sizeof even);
    memset(odd, 0, sizeof odd);
    uint32_t i = 0;
    for (; i + 1 < n; i += 2) {
        even[all[i] >> TOP_SHIFT]++;
        odd[all[i + 1] >> TOP_SHIFT]++;
    }
    if (i < n) {
        even[all[i] >> TOP_SHIFT]++;
    }
    uint32_t cut = 0, sum = 0;
    for (; cut < N_BUCKETS; cut++) {
        sum += even[cut] + odd[cut];
        if (sum >= limit) {
            break;
        }
    }
    uint32_t m = 0;
    for (i = 0; i < n; i++) {
        const entry e = all[i];
        kept[m] = e;
        m += (e >> TOP_SHIFT) <= cut; /* branch-free: the next pixel overwrites a skipped one */
    }
    return m;
}

/* Sorts the pixels of one map that can be among its `limit` largest and leaves their order in
 * w->e[0, m) (ENTRY_INDEX); returns m (limit <= m <= n; m = n when limit = n).
 *
 * Masking the top 5 or 10 % needs only those pixels ranked: a histogram of the top key digit
 * finds the digit the limit falls in, the pixels up to that digit are compacted and only they
 * are radix-sorted. */
static uint32_t sort_top(const float *map, uint32_t n, uint32_t limit, work_t *w)
{
    entry *all = limit < n ? w->tmp : w->e; /* compacted from tmp into e */
    for (uint32_t i = 0; i < n; i++) {
        all[i] = (entry)desc_key(map[i]) << 32 | i;
    }
    const uint32_t m = limit < n ? keep_head(all, n, limit, w->e) : n;
    uint32_t hist[N_PASSES][N_BUCKETS];
    memset(hist, 0, sizeof hist);
    for (uint32_t i = 0; i < m; i++) {
        const uint32_t k = ENTRY_KEY(w->e[i]);
        hist[0][k & (N_BUCKETS - 1)]++;
        hist[1][(k >> DIGIT_BITS) & (N_BUCKETS - 1)]++;
        hist[2][k >> (2 * DIGIT_BITS)]++;
    }
    radix_passes(m, hist, w);
    return m;
}

/* ---------------------------------------------------------------- ranking */

/* The rank of a pixel outside the sorted head: after every count, never masked. */
#define RANK_NEVER UINT32_MAX

/* Sorting maps[first + j] for the items j, and what is written from each sorted map. */
typedef struct {
    const float *maps;
    ptrdiff_t n_pix, first;
    uint32_t limit; /* how much of each order is needed (n_pix: all of it) */
    int64_t *order; /* argsort_desc: order[j] = the order; or NULL */
    int64_t *rank;  /* rank_desc: rank[j][p] = the position of p; or NULL */
    uint32_t *head; /* mask_top: head[j][p] = the position of p, RANK_NEVER past the head */
} sort_job;

static void write_sorted(const sort_job *job, ptrdiff_t j, const entry *e, uint32_t m)
{
    const ptrdiff_t at = j * job->n_pix;
    if (job->order) {
        for (uint32_t r = 0; r < m; r++) {
            job->order[at + r] = ENTRY_INDEX(e[r]);
        }
    }
    if (job->rank) {
        for (uint32_t r = 0; r < m; r++) {
            job->rank[at + ENTRY_INDEX(e[r])] = r;
        }
    }
    if (job->head) {
        memset(job->head + at, 0xFF, (size_t)job->n_pix * sizeof(uint32_t)); /* RANK_NEVER */
        for (uint32_t r = 0; r < m; r++) {
            job->head[at + ENTRY_INDEX(e[r])] = r;
        }
    }
}

/* Items: maps. Each worker sorts the maps it claims with its own scratch. */
static int sort_worker(void *arg, fc_queue *q)
{
    const sort_job *job = arg;
    work_t w = {NULL, NULL};
    int status = FC_OK, have = 0;
    ptrdiff_t b, e;
    while (fc_queue_next(q, &b, &e)) {
        /* scratch on the first claim: a thread that finds the queue empty allocates nothing */
        if (!have) {
            have = 1;
            if ((status = work_alloc(&w, job->n_pix)) != FC_OK) {
                goto exit;
            }
        }
        for (ptrdiff_t j = b; j < e; j++) {
            const uint32_t m = sort_top(job->maps + (job->first + j) * job->n_pix,
                                        (uint32_t)job->n_pix, job->limit, &w);
            write_sorted(job, j, w.e, m);
        }
    }
exit:
    work_free(&w);
    return status;
}

static int rank_or_order(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *out,
                         int inverse, int n_threads)
{
    if (n_pix > 0 && (uint64_t)n_pix > UINT32_MAX) {
        return FC_EOVERFLOW;
    }
    if (n_maps <= 0 || n_pix <= 0) {
        return FC_OK;
    }
    sort_job job = {.maps = maps, .n_pix = n_pix, .limit = (uint32_t)n_pix};
    if (inverse) {
        job.rank = out;
    } else {
        job.order = out;
    }
    /* n_maps * n_pix is the size of the caller's output array: it fits */
    return fc_parallel(sort_worker, &job, n_maps, n_maps * n_pix, n_threads);
}

int fc_argsort_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *order,
                    int n_threads)
{
    return rank_or_order(maps, n_maps, n_pix, order, 0, n_threads);
}

int fc_rank_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *rank, int n_threads)
{
    return rank_or_order(maps, n_maps, n_pix, rank, 1, n_threads);
}

/* ---------------------------------------------------------------- masking */

/* Rank arrays of at most this many pixels are kept at once (16 MiB): images are masked in groups
 * that fit, so the scratch does not grow with the batch. */
#define RANK_BUDGET ((ptrdiff_t)1 << 22)

/* Outputs of at least this many bytes are written with non-temporal stores: far larger than the
 * caches, they would only evict the inputs, and a streaming store skips reading each destination
 * line before writing it (half the memory traffic of a write-bound fill). */
#define STREAM_BYTES ((ptrdiff_t)8 << 20)

typedef struct {
    const float *images, *baseline;
    const int64_t *counts;
    float *out;
    const uint32_t *rank; /* (group, n_pix) ranks of the group's images, RANK_NEVER past the head */
    ptrdiff_t n_ch, n_pix, n_counts;
    ptrdiff_t first; /* the group's first image */
    int stream;
} mask_job;

/* o[p] = rank[p] < k ? base[p] : img[p] for one plane of n pixels. Bits are copied, not
 * computed: NaN payloads and -0.0 survive as in the NumPy twin's np.where. */
static void fill_plane(float *o, const float *img, const float *base, const uint32_t *rank,
                       uint32_t k, uint32_t n, int stream)
{
    uint32_t p = 0;
#if defined(__SSE2__)
    if (((uintptr_t)o & 3) == 0) {
        /* unsigned rank < k as a signed compare: flip the sign bit of both sides */
        const __m128i bias = _mm_set1_epi32(INT32_MIN);
        const __m128i kv = _mm_xor_si128(_mm_set1_epi32((int32_t)k), bias);
        for (; p < n && ((uintptr_t)(o + p) & 15) != 0; p++) {
            o[p] = rank[p] < k ? base[p] : img[p];
        }
        for (; p + 4 <= n; p += 4) {
            const __m128i r = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(rank + p)), bias);
            const __m128 sel = _mm_castsi128_ps(_mm_cmplt_epi32(r, kv));
            const __m128 v = _mm_or_ps(_mm_and_ps(sel, _mm_loadu_ps(base + p)),
                                       _mm_andnot_ps(sel, _mm_loadu_ps(img + p)));
            if (stream) {
                _mm_stream_ps(o + p, v);
            } else {
                _mm_store_ps(o + p, v);
            }
        }
    }
#else
    (void)stream;
#endif
    for (; p < n; p++) {
        o[p] = rank[p] < k ? base[p] : img[p];
    }
}

/* Items: the group's output planes (image, count, channel), in the output's order. */
static int mask_fill_worker(void *arg, fc_queue *q)
{
    const mask_job *job = arg;
    const ptrdiff_t n_ch = job->n_ch, n_pix = job->n_pix, per_img = job->n_counts * n_ch;
    ptrdiff_t b, e;
    while (fc_queue_next(q, &b, &e)) {
        for (ptrdiff_t t = b; t < e; t++) {
            const ptrdiff_t j = t / per_img, s = (t / n_ch) % job->n_counts, c = t % n_ch;
            const ptrdiff_t plane = ((job->first + j) * n_ch + c) * n_pix;
            /* counts are in [0, n_pix] <= UINT32_MAX, so the comparison is exact */
            fill_plane(job->out + (job->first * per_img + t) * n_pix, job->images + plane,
                       job->baseline + plane, job->rank + j * n_pix, (uint32_t)job->counts[s],
                       (uint32_t)n_pix, job->stream);
        }
    }
#if defined(__SSE2__)
    /* streaming stores are weakly ordered: make them visible before the thread is joined */
    if (job->stream) {
        _mm_sfence();
    }
#endif
    return FC_OK;
}

/* Images per group: as many rank arrays as the budget holds, and one per thread (up to the
 * default cap) so that the ranking of a group keeps every thread busy. */
static ptrdiff_t group_size(ptrdiff_t n_img, ptrdiff_t n_pix, int n_threads)
{
    ptrdiff_t group = RANK_BUDGET / n_pix;
    if (group < n_threads) {
        group = n_threads < FC_DEFAULT_MAX_THREADS ? n_threads : FC_DEFAULT_MAX_THREADS;
    }
    if (group < 1) {
        group = 1;
    }
    return group > n_img ? n_img : group;
}

/* The largest count: how much of each map's order is needed. Counts are in [0, n_pix] (checked
 * by the caller). */
static uint32_t max_count(const int64_t *counts, ptrdiff_t n_counts)
{
    uint32_t limit = 0;
    for (ptrdiff_t s = 0; s < n_counts; s++) {
        limit = (uint32_t)counts[s] > limit ? (uint32_t)counts[s] : limit;
    }
    return limit;
}

/* Ranks the images of each group, then fills their planes: two rounds of threads per group. */
static int mask_groups(sort_job *sort, mask_job *job, ptrdiff_t n_img, ptrdiff_t group,
                       int n_threads)
{
    const ptrdiff_t n_pix = job->n_pix, per_img = job->n_counts * job->n_ch;
    for (job->first = 0; job->first < n_img; job->first += group) {
        const ptrdiff_t g = n_img - job->first < group ? n_img - job->first : group;
        sort->first = job->first;
        int status = fc_parallel(sort_worker, sort, g, g * n_pix, n_threads);
        if (status == FC_OK) {
            status =
                fc_parallel(mask_fill_worker, job, g * per_img, g * per_img * n_pix, n_threads);
        }
        if (status != FC_OK) {
            return status;
        }
    }
    return FC_OK;
}

int fc_mask_top(const float *images, const float *maps, const float *baseline, ptrdiff_t n_img,
                ptrdiff_t n_ch, ptrdiff_t n_pix, const int64_t *counts, ptrdiff_t n_counts,
                float *out, int n_threads)
{
    if (n_pix > 0 && (uint64_t)n_pix > UINT32_MAX) {
        return FC_EOVERFLOW;
    }
    if (n_img <= 0 || n_ch <= 0 || n_pix <= 0 || n_counts <= 0) {
        return FC_OK;
    }
    ptrdiff_t per_img = n_counts, out_bytes = (ptrdiff_t)sizeof(float); /* planes per image */
    ptrdiff_t rank_count = group_size(n_img, n_pix, n_threads);
    const ptrdiff_t group = rank_count;
    if (!fc_mul_ok(&per_img, n_ch) || !fc_mul_ok(&out_bytes, n_img) ||
        !fc_mul_ok(&out_bytes, per_img) || !fc_mul_ok(&out_bytes, n_pix) ||
        !fc_mul_ok(&rank_count, n_pix)) {
        return FC_EOVERFLOW;
    }
    int status = FC_OK;
    uint32_t *rank = fc_malloc(rank_count, sizeof(uint32_t), &status);
    if (rank == NULL) {
        return status;
    }
    sort_job sort = {
        .maps = maps, .n_pix = n_pix, .limit = max_count(counts, n_counts), .head = rank};
    mask_job job = {.images = images,
                    .baseline = baseline,
                    .counts = counts,
                    .out = out,
                    .rank = rank,
                    .n_ch = n_ch,
                    .n_pix = n_pix,
                    .n_counts = n_counts,
                    .stream = out_bytes >= STREAM_BYTES};
    status = mask_groups(&sort, &job, n_img, group, n_threads);
    free(rank);
    return status;
}
