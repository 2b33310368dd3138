/* The metrics kernels (rank.c, measure.c) called directly from C, against hand-computed values
 * and a brute-force O(n^2) ranking; built and run under ASan/UBSan by `make csan`. The inputs
 * are below the threads' work threshold: test_threads.c runs the kernels on several threads.
 * Prints one line per failure and closes with "N passed, N failed". */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "rank.h"

#include "check.h"

/* The rule spelled out: p ranks after q when q is larger, or equal and earlier; NaN last. */
static int64_t brute_rank(const float *x, int64_t n, int64_t p)
{
    int64_t r = 0;
    for (int64_t q = 0; q < n; q++) {
        const int q_nan = x[q] != x[q], p_nan = x[p] != x[p];
        int before;
        if (q == p) {
            continue;
        }
        if (p_nan && q_nan) {
            before = q < p;
        } else if (p_nan || q_nan) {
            before = p_nan;
        } else {
            before = x[q] > x[p] || (x[q] == x[p] && q < p);
        }
        r += before;
    }
    return r;
}

static void test_argsort_hand(void)
{
    const float x[6] = {0.5f, -0.0f, 1.0f, 0.0f, 0.5f, -INFINITY};
    const int64_t want[6] = {2, 0, 4, 1, 3, 5};
    int64_t order[6], rank[6];
    int ok = 1;
    CHECK(fc_argsort_desc(x, 1, 6, order, 2) == 0);
    for (int i = 0; i < 6; i++) {
        ok &= order[i] == want[i];
    }
    CHECK(ok);
    CHECK(fc_rank_desc(x, 1, 6, rank, 2) == 0);
    ok = 1;
    for (int i = 0; i < 6; i++) {
        ok &= rank[want[i]] == i;
    }
    CHECK(ok);
}

static void test_argsort_nan_last(void)
{
    const float x[4] = {NAN, -1.0f, NAN, 2.0f};
    int64_t order[4];
    CHECK(fc_argsort_desc(x, 1, 4, order, 2) == 0);
    CHECK(order[0] == 3 && order[1] == 1 && order[2] == 0 && order[3] == 2);
}

static void test_rank_against_brute(void)
{
    enum { M = 3, N = 257 };
    float *x = malloc(sizeof(float) * M * N);
    int64_t *rank = malloc(sizeof(int64_t) * M * N), *order = malloc(sizeof(int64_t) * M * N);
    int ok = 1, inv = 1;
    if (!x || !rank || !order) {
        failed++;
        goto exit;
    }
    /* few distinct values: many ties, both signs, a NaN or two */
    for (ptrdiff_t p = 0; p < M * N; p++) {
        x[p] = (rng() % 97 == 0) ? NAN : (float)((int)(rng() % 9) - 4) * 0.25f;
    }
    CHECK(fc_rank_desc(x, M, N, rank, 2) == 0);
    CHECK(fc_argsort_desc(x, M, N, order, 2) == 0);
    for (ptrdiff_t m = 0; m < M; m++) {
        for (ptrdiff_t p = 0; p < N; p++) {
            ok &= rank[m * N + p] == brute_rank(x + m * N, N, p);
            inv &= rank[m * N + order[m * N + p]] == p;
        }
    }
    CHECK(ok);
    CHECK(inv);
exit:
    free(x);
    free(rank);
    free(order);
}

/* counts reaching H*W take the full sort; small ones only sort the head of the order */
static void test_mask_top(const int64_t *counts)
{
    enum { NI = 2, NC = 3, NP = 50, NS = 4 };
    float *img = malloc(sizeof(float) * NI * NC * NP), *base = malloc(sizeof(float) * NI * NC * NP);
    float *maps = malloc(sizeof(float) * NI * NP), *out = malloc(sizeof(float) * NI * NS * NC * NP);
    int ok = 1;
    if (!img || !base || !maps || !out) {
        failed++;
        goto exit;
    }
    for (ptrdiff_t p = 0; p < NI * NC * NP; p++) {
        img[p] = (float)p;
        base[p] = -1.0f - (float)p;
    }
    for (ptrdiff_t p = 0; p < NI * NP; p++) {
        maps[p] = (float)(rng() % 7) * (p % 3 ? 1.0f : 1e-3f); /* ties, several exponents */
    }
    CHECK(fc_mask_top(img, maps, base, NI, NC, NP, counts, NS, out, 2) == 0);
    for (ptrdiff_t i = 0; i < NI; i++) {
        for (ptrdiff_t s = 0; s < NS; s++) {
            for (ptrdiff_t c = 0; c < NC; c++) {
                for (ptrdiff_t p = 0; p < NP; p++) {
                    const ptrdiff_t src = (i * NC + c) * NP + p;
                    const int masked = brute_rank(maps + i * NP, NP, p) < counts[s];
                    ok &= out[((i * NS + s) * NC + c) * NP + p] == (masked ? base[src] : img[src]);
                }
            }
        }
    }
    CHECK(ok);
exit:
    free(img);
    free(base);
    free(maps);
    free(out);
}

static void test_degenerate_sizes(void)
{
    float one = 3.0f, img = 1.0f, base = 0.0f, out[2] = {9.0f, 9.0f};
    int64_t order = -1, counts[2] = {0, 1};

    CHECK(fc_argsort_desc(&one, 1, 1, &order, 2) == 0 && order == 0);
    CHECK(fc_argsort_desc(NULL, 0, 5, NULL, 2) == 0);
    CHECK(fc_mask_top(NULL, NULL, NULL, 0, 3, 5, counts, 2, NULL, 2) == 0);
    CHECK(fc_mask_top(&img, &one, &base, 1, 1, 1, counts, 2, out, 2) == 0);
    CHECK(out[0] == 1.0f && out[1] == 0.0f);
    /* checked before any memory is touched */
    CHECK(fc_argsort_desc(NULL, 0, (ptrdiff_t)UINT32_MAX + 1, NULL, 2) == FC_EOVERFLOW);
    CHECK(fc_mask_top(NULL, NULL, NULL, 1, 1, (ptrdiff_t)UINT32_MAX + 1, counts, 1, NULL, 2) ==
          FC_EOVERFLOW);
}

static void test_energy(void)
{
    const float maps[3 * 4] = {1, 2, 3, 4, 0, 0, 0, 0, 1, INFINITY, 1, 1};
    const uint8_t masks[3 * 4] = {1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0};
    double out[3];

    fc_energy_in_mask(maps, masks, 3, 4, out);
    CHECK(fabs(out[0] - 0.5) < 1e-15);
    CHECK(isnan(out[1]));
    CHECK(isnan(out[2]));
}

static void test_pointing(void)
{
    const float maps[3 * 3] = {1, 5, 5, 2, 1, 0, NAN, NAN, NAN};
    const uint8_t masks[3 * 3] = {0, 1, 0, 0, 1, 1, 1, 1, 1};
    uint8_t out[3];

    fc_pointing_hit(maps, masks, 3, 3, out);
    CHECK(out[0] == 1); /* first of the tied maxima, index 1 */
    CHECK(out[1] == 0);
    CHECK(out[2] == 0); /* NaN only */
}

static void test_trapezoid(void)
{
    const double y[2 * 3] = {1.0, 0.5, 0.0, 2.0, 2.0, 2.0};
    const double x[3] = {0.0, 0.5, 1.0};
    double out[2], single;

    fc_trapezoid(y, x, 2, 3, out);
    CHECK(fabs(out[0] - 0.5) < 1e-15);
    CHECK(fabs(out[1] - 2.0) < 1e-15);
    fc_trapezoid(y, x, 1, 1, &single);
    CHECK(single == 0.0);
}

static void test_cosine(void)
{
    const float a[3 * 2] = {1, 0, 3, 4, 0, 0};
    const float b[2 * 2] = {0, 2, 3, 4};
    float out[3 * 2];

    CHECK(fc_cosine_matrix(a, 3, b, 2, 2, out) == 0);
    CHECK(out[0] == 0.0f && fabsf(out[1] - 0.6f) < 1e-7f);
    CHECK(fabsf(out[2] - 0.8f) < 1e-7f && fabsf(out[3] - 1.0f) < 1e-7f);
    CHECK(out[4] == 0.0f && out[5] == 0.0f);
    CHECK(fc_cosine_matrix(NULL, 0, b, 2, 2, NULL) == 0);
}

int main(void)
{
    test_argsort_hand();
    test_argsort_nan_last();
    test_rank_against_brute();
    {
        const int64_t full[4] = {0, 1, 17, 50}, head[4] = {3, 0, 9, 1}, none[4] = {0, 0, 0, 0};
        test_mask_top(full);
        test_mask_top(head);
        test_mask_top(none);
    }
    test_degenerate_sizes();
    test_energy();
    test_pointing();
    test_trapezoid();
    test_cosine();
    return check_report();
}
