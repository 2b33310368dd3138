/* Stable descending ranking by LSD radix sort on 32-bit keys: linear time and stable by
 * construction, which is what "ties to the lower flat index" needs, and several times faster
 * than a comparison sort on the 10^4 - 10^5 pixels of a map. */
#include "rank.h"

#include <stdlib.h>
#include <string.h>

#define DIGIT_BITS 11
#define N_BUCKETS (1u << DIGIT_BITS)
#define N_PASSES 3 /* 11 + 11 + 10 bits */

typedef struct {
    uint32_t *key, *key_tmp, *idx, *idx_tmp;
} work_t;

/* An unsigned key whose ascending order is the descending order of the floats. */
static uint32_t desc_key(float v)
{
    uint32_t u;
    if (v != v)
        return UINT32_MAX; /* NaN after everything; no number maps to UINT32_MAX */
    if (v == 0.0f)
        v = 0.0f; /* -0.0 ties with +0.0 */
    memcpy(&u, &v, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending */
    return ~u;
}

static int work_alloc(work_t *w, ptrdiff_t n_pix)
{
    size_t n = (size_t)(n_pix > 0 ? n_pix : 1);
    w->key = malloc(n * sizeof(uint32_t));
    w->key_tmp = malloc(n * sizeof(uint32_t));
    w->idx = malloc(n * sizeof(uint32_t));
    w->idx_tmp = malloc(n * sizeof(uint32_t));
    return (w->key && w->key_tmp && w->idx && w->idx_tmp) ? 0 : FC_ENOMEM;
}

static void work_free(work_t *w)
{
    free(w->key);
    free(w->key_tmp);
    free(w->idx);
    free(w->idx_tmp);
}

/* LSD passes over the m keys in w->key / w->idx with histograms already counted; leaves the
 * sorted keys and indices in w->key / w->idx. */
static void radix_passes(uint32_t m, uint32_t hist[N_PASSES][N_BUCKETS], work_t *w)
{
    uint32_t i;
    int pass;

    for (pass = 0; pass < N_PASSES; pass++) {
        uint32_t *h = hist[pass];
        unsigned shift = (unsigned)pass * DIGIT_BITS;
        uint32_t sum = 0, *t;
        unsigned b;
        /* A digit shared by every key leaves the order unchanged: skip the pass. Min-max
         * normalised maps share their top bits, so this often saves a pass. */
        if (m == 0 || h[(w->key[0] >> shift) & (N_BUCKETS - 1)] == m)
            continue;
        for (b = 0; b < N_BUCKETS; b++) {
            uint32_t c = h[b];
            h[b] = sum;
            sum += c;
        }
        for (i = 0; i < m; i++) {
            uint32_t k = w->key[i];
            uint32_t dst = h[(k >> shift) & (N_BUCKETS - 1)]++;
            w->key_tmp[dst] = k;
            w->idx_tmp[dst] = w->idx[i];
        }
        t = w->key; w->key = w->key_tmp; w->key_tmp = t;
        t = w->idx; w->idx = w->idx_tmp; w->idx_tmp = t;
    }
}

/* Sorts the pixels of one map that can be among its `limit` largest and leaves their order in
 * w->idx[0, m); returns m (limit <= m <= n; m = n when limit = n).
 *
 * Masking the top 5 or 10 % needs only those pixels ranked: a histogram of the top key digit
 * finds the digit the limit falls in, the pixels up to that digit are compacted in index order
 * (which keeps the sort stable) and only they are radix-sorted. */
static uint32_t sort_top(const float *map, uint32_t n, uint32_t limit, work_t *w)
{
    uint32_t hist[N_PASSES][N_BUCKETS];
    uint32_t i, m = 0, cut = N_BUCKETS - 1;
    const unsigned top = 2 * DIGIT_BITS;

    memset(hist, 0, sizeof hist);
    for (i = 0; i < n; i++) {
        uint32_t k = desc_key(map[i]);
        w->key_tmp[i] = k;
        hist[2][k >> top]++;
    }
    if (limit < n) {
        uint32_t sum = 0;
        for (cut = 0; cut < N_BUCKETS; cut++) {
            sum += hist[2][cut];
            if (sum >= limit)
                break;
        }
        memset(hist[2], 0, sizeof hist[2]);
    }
    for (i = 0; i < n; i++) {
        uint32_t k = w->key_tmp[i];
        if (limit < n && (k >> top) > cut)
            continue;
        w->key[m] = k;
        w->idx[m] = i;
        m++;
        hist[0][k & (N_BUCKETS - 1)]++;
        hist[1][(k >> DIGIT_BITS) & (N_BUCKETS - 1)]++;
        if (limit < n)
            hist[2][k >> top]++;
    }
    radix_passes(m, hist, w);
    return m;
}

static int rank_or_order(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *out,
                         int inverse)
{
    work_t w = {NULL, NULL, NULL, NULL};
    int status = FC_OK;
    ptrdiff_t m;
    uint32_t r, n = (uint32_t)n_pix;

    if (n_pix > 0 && (uint64_t)n_pix > UINT32_MAX) {
        status = FC_EOVERFLOW;
        goto exit;
    }
    if (n_maps <= 0 || n_pix <= 0)
        goto exit;
    status = work_alloc(&w, n_pix);
    if (status)
        goto exit;
    for (m = 0; m < n_maps; m++) {
        int64_t *o = out + m * n_pix;
        sort_top(maps + m * n_pix, n, n, &w);
        if (inverse)
            for (r = 0; r < n; r++)
                o[w.idx[r]] = r;
        else
            for (r = 0; r < n; r++)
                o[r] = w.idx[r];
    }
exit:
    work_free(&w);
    return status;
}

int fc_argsort_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *order)
{
    return rank_or_order(maps, n_maps, n_pix, order, 0);
}

int fc_rank_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *rank)
{
    return rank_or_order(maps, n_maps, n_pix, rank, 1);
}

int fc_mask_top(const float *images, const float *maps, const float *baseline, ptrdiff_t n_img,
                ptrdiff_t n_ch, ptrdiff_t n_pix, const int64_t *counts, ptrdiff_t n_counts,
                float *out)
{
    work_t w = {NULL, NULL, NULL, NULL};
    uint32_t *rank = NULL;
    int status = FC_OK;
    ptrdiff_t i, s, c;
    uint32_t r, p, n = (uint32_t)n_pix, limit = 0;

    if (n_pix > 0 && (uint64_t)n_pix > UINT32_MAX) {
        status = FC_EOVERFLOW;
        goto exit;
    }
    if (n_img <= 0 || n_ch <= 0 || n_pix <= 0 || n_counts <= 0)
        goto exit;
    status = work_alloc(&w, n_pix);
    if (status)
        goto exit;
    rank = malloc((size_t)n_pix * sizeof(uint32_t));
    if (!rank) {
        status = FC_ENOMEM;
        goto exit;
    }
    for (s = 0; s < n_counts; s++)
        limit = (uint32_t)counts[s] > limit ? (uint32_t)counts[s] : limit;
    for (i = 0; i < n_img; i++) {
        uint32_t m = sort_top(maps + i * n_pix, n, limit, &w);
        /* pixels outside the sorted head rank after every count: never masked */
        memset(rank, 0xFF, (size_t)n_pix * sizeof(uint32_t));
        for (r = 0; r < m; r++)
            rank[w.idx[r]] = r;
        for (s = 0; s < n_counts; s++) {
            /* counts are in [0, n_pix] <= UINT32_MAX, so the comparison below is exact */
            uint32_t k = (uint32_t)counts[s];
            for (c = 0; c < n_ch; c++) {
                ptrdiff_t plane = (i * n_ch + c) * n_pix;
                const float *img = images + plane, *base = baseline + plane;
                float *o = out + ((i * n_counts + s) * n_ch + c) * n_pix;
                for (p = 0; p < n; p++)
                    o[p] = rank[p] < k ? base[p] : img[p];
            }
        }
    }
exit:
    free(rank);
    work_free(&w);
    return status;
}
