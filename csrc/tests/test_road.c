/* ROAD's imputation (impute.c) and SSIM (ssim.c) called directly from C: against a dense Gaussian
 * elimination of the same system, hand-computed values and brute-force window sums; built and
 * run under ASan/UBSan by `make csan`. Prints one line per failure and closes with
 * "N passed, N failed". */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impute.h"
#include "ssim.h"

#include "check.h"

static const int DR[8] = {1, 0, -1, 1, 0, -1, 1, -1};
static const int DC[8] = {1, 1, 1, -1, -1, -1, 0, 0};
static const double WT[8] = {1.0 / 12, 1.0 / 6,  1.0 / 12, 1.0 / 12,
                             1.0 / 6,  1.0 / 12, 1.0 / 6,  1.0 / 6};

static fc_impute_opts opts(double noise, int n_threads)
{
    fc_impute_opts o = {noise, 7, 0, 1e-10, 500, n_threads};
    return o;
}

/* The system of one channel written out densely and solved by Gaussian elimination with partial
 * pivoting; every removed pixel here touches a kept one through removed neighbours. */
static void dense_impute(const float *img, const uint8_t *rm, int h, int w, double *out)
{
    const int n = h * w;
    int *var = malloc(sizeof(int) * (size_t)n), m = 0;
    for (int p = 0; p < n; p++) {
        var[p] = rm[p] ? m++ : -1;
        out[p] = img[p];
    }
    double *a = calloc((size_t)m * (size_t)(m + 1), sizeof(double));
    for (int p = 0; p < n; p++) {
        if (!rm[p]) {
            continue;
        }
        const int i = var[p], r = p / w, c = p % w;
        for (int j = 0; j < 8; j++) {
            const int r1 = r + DR[j], c1 = c + DC[j];
            if (r1 < 0 || r1 >= h || c1 < 0 || c1 >= w) {
                continue;
            }
            const int q = r1 * w + c1;
            a[i * (m + 1) + i] += WT[j];
            if (rm[q]) {
                a[i * (m + 1) + var[q]] -= WT[j];
            } else {
                a[i * (m + 1) + m] += WT[j] * img[q];
            }
        }
    }
    for (int k = 0; k < m; k++) {
        int piv = k;
        for (int i = k + 1; i < m; i++) {
            piv = fabs(a[i * (m + 1) + k]) > fabs(a[piv * (m + 1) + k]) ? i : piv;
        }
        for (int j = 0; j <= m; j++) {
            const double t = a[k * (m + 1) + j];
            a[k * (m + 1) + j] = a[piv * (m + 1) + j];
            a[piv * (m + 1) + j] = t;
        }
        for (int i = k + 1; i < m; i++) {
            const double f = a[i * (m + 1) + k] / a[k * (m + 1) + k];
            for (int j = k; j <= m; j++) {
                a[i * (m + 1) + j] -= f * a[k * (m + 1) + j];
            }
        }
    }
    for (int k = m - 1; k >= 0; k--) {
        double v = a[k * (m + 1) + m];
        for (int j = k + 1; j < m; j++) {
            v -= a[k * (m + 1) + j] * a[j * (m + 1) + m];
        }
        a[k * (m + 1) + m] = v / a[k * (m + 1) + k];
    }
    for (int p = 0; p < n; p++) {
        if (rm[p]) {
            out[p] = a[var[p] * (m + 1) + m];
        }
    }
    free(a);
    free(var);
}

static void test_centre_is_the_weighted_mean(void)
{
    const float img[9] = {1, 2, 3, 4, 100, 6, 7, 8, 9};
    const uint8_t rm[9] = {0, 0, 0, 0, 1, 0, 0, 0, 0};
    float out[9];
    fc_impute_opts o = opts(0.0, 1);
    CHECK(fc_road_impute(img, rm, 1, 1, 1, 3, 3, &o, out) == FC_OK);
    const double want = (1 + 3 + 7 + 9) / 12.0 + (2 + 4 + 6 + 8) / 6.0;
    CHECK(fabs(out[4] - want) < 1e-6);
    CHECK(out[0] == 1.0f && out[8] == 9.0f);
}

/* Two channels, a ragged mask touching the edges, against the dense solve; a level deep enough
 * for the multigrid hierarchy (24 x 20). */
static void test_against_dense(void)
{
    enum { H = 24, W = 20, C = 2, N = H * W };
    float *img = malloc(sizeof(float) * C * N), *out = malloc(sizeof(float) * C * N);
    uint8_t *rm = malloc(N);
    double *want = malloc(sizeof(double) * N);
    double worst = 0.0;
    for (int p = 0; p < C * N; p++) {
        img[p] = (float)(rng() % 1000) / 100.0f - 5.0f;
    }
    for (int p = 0; p < N; p++) {
        const int r = p / W, c = p % W;
        rm[p] = (r - 10) * (r - 10) + (c - 8) * (c - 8) < 60 || r < 2 || (rng() % 3 == 0);
    }
    fc_impute_opts o = opts(0.0, 1);
    CHECK(fc_road_impute(img, rm, 1, 1, C, H, W, &o, out) == FC_OK);
    for (int c = 0; c < C; c++) {
        dense_impute(img + c * N, rm, H, W, want);
        for (int p = 0; p < N; p++) {
            const double d = fabs(out[c * N + p] - want[p]);
            worst = d > worst ? d : worst;
            if (!rm[p]) {
                CHECK(out[c * N + p] == img[c * N + p]);
            }
        }
    }
    CHECK(worst < 1e-5);
    free(img);
    free(out);
    free(rm);
    free(want);
}

/* Everything removed: no boundary value anywhere, every pixel is 0. */
static void test_all_removed_is_zero(void)
{
    enum { N = 40 * 40 };
    float *img = malloc(sizeof(float) * N), *out = malloc(sizeof(float) * N);
    uint8_t *rm = malloc(N);
    int ok = 1;
    for (int p = 0; p < N; p++) {
        img[p] = 3.0f;
        rm[p] = 1;
    }
    fc_impute_opts o = opts(0.0, 1);
    CHECK(fc_road_impute(img, rm, 1, 1, 1, 40, 40, &o, out) == FC_OK);
    for (int p = 0; p < N; p++) {
        ok &= out[p] == 0.0f;
    }
    CHECK(ok);
    free(img);
    free(out);
    free(rm);
}

/* The noise: the same numbers on 1 and 4 threads, mean about 0 and deviation about `noise`;
 * several images and masks (row i * S + s). */
static void test_noise_seeded_and_thread_independent(void)
{
    enum { NI = 3, S = 2, C = 3, H = 64, W = 64, N = H * W };
    float *img = malloc(sizeof(float) * NI * C * N);
    float *a = malloc(sizeof(float) * NI * S * C * N), *b = malloc(sizeof(float) * NI * S * C * N);
    float *clean = malloc(sizeof(float) * NI * S * C * N);
    uint8_t *rm = malloc((size_t)NI * S * N);
    for (int p = 0; p < NI * C * N; p++) {
        img[p] = (float)(rng() % 100) / 50.0f;
    }
    for (int p = 0; p < NI * S * N; p++) {
        rm[p] = rng() % 2;
    }
    fc_impute_opts one = opts(0.5, 1), four = opts(0.5, 4), none = opts(0.0, 4);
    CHECK(fc_road_impute(img, rm, NI, S, C, H, W, &one, a) == FC_OK);
    CHECK(fc_road_impute(img, rm, NI, S, C, H, W, &four, b) == FC_OK);
    CHECK(fc_road_impute(img, rm, NI, S, C, H, W, &none, clean) == FC_OK);
    CHECK(memcmp(a, b, sizeof(float) * NI * S * C * N) == 0);
    double sum = 0.0, sq = 0.0;
    long count = 0;
    for (int t = 0; t < NI * S; t++) {
        for (int c = 0; c < C; c++) {
            for (int p = 0; p < N; p++) {
                const double d = a[(t * C + c) * N + p] - clean[(t * C + c) * N + p];
                if (rm[t * N + p]) {
                    sum += d;
                    sq += d * d;
                    count++;
                } else {
                    CHECK(d == 0.0);
                }
            }
        }
    }
    CHECK(count > 1000 && fabs(sum / count) < 0.03 && fabs(sqrt(sq / count) - 0.5) < 0.03);
    free(img);
    free(a);
    free(b);
    free(clean);
    free(rm);
}

static void test_normal_draws(void)
{
    double sum = 0.0, sq = 0.0;
    for (uint64_t k = 0; k < 20000; k++) {
        const double z = fc_impute_normal(42, k);
        CHECK(isfinite(z));
        sum += z;
        sq += z * z;
    }
    CHECK(fabs(sum / 20000) < 0.03 && fabs(sq / 20000 - 1.0) < 0.05);
    CHECK(fc_impute_normal(1, 5) == fc_impute_normal(1, 5) &&
          fc_impute_normal(1, 5) != fc_impute_normal(2, 5));
}

/* Degenerate and broken input: nothing to do, a single removed pixel, NaN in the image. */
static void test_degenerate_and_nan(void)
{
    float one = 5.0f, out1 = -1.0f;
    uint8_t yes = 1;
    fc_impute_opts o = opts(0.0, 2);
    CHECK(fc_road_impute(NULL, NULL, 0, 1, 1, 3, 3, &o, NULL) == FC_OK);
    CHECK(fc_road_impute(&one, &yes, 1, 1, 1, 1, 1, &o, &out1) == FC_OK && out1 == 0.0f);
    enum { N = 32 * 32 };
    float *img = malloc(sizeof(float) * N), *out = malloc(sizeof(float) * N);
    uint8_t *rm = malloc(N);
    for (int p = 0; p < N; p++) {
        img[p] = p == 101 ? NAN : 1.0f; /* a kept NaN */
        rm[p] = p % 5 == 0;
    }
    CHECK(fc_road_impute(img, rm, 1, 1, 1, 32, 32, &o, out) == FC_OK); /* finishes, no crash */
    CHECK(isnan(out[101]) && out[1] == 1.0f);
    CHECK(fc_road_impute(img, rm, 1, 1, 65, 32, 32, &o, out) == FC_EOVERFLOW); /* > 64 channels */
    free(img);
    free(out);
    free(rm);
}

/* SSIM against the window sums written out; 1 for identical maps, NaN for a NaN map. */
static void test_ssim(void)
{
    enum { H = 11, W = 9, N = H * W, WIN = 7 };
    float a[2 * N], b[2 * N];
    double out[2];
    for (int p = 0; p < 2 * N; p++) {
        a[p] = (float)(rng() % 256) / 255.0f;
        b[p] = p < N ? a[p] : (float)(rng() % 256) / 255.0f;
    }
    CHECK(fc_ssim(a, b, 2, H, W, WIN, 1.0, out) == FC_OK);
    CHECK(fabs(out[0] - 1.0) < 1e-12);
    double total = 0.0;
    const double n = WIN * WIN, c1 = 1e-4, c2 = 9e-4;
    for (int r0 = 0; r0 + WIN <= H; r0++) {
        for (int c0 = 0; c0 + WIN <= W; c0++) {
            double mx = 0, my = 0, vx = 0, vy = 0, vxy = 0;
            for (int r = r0; r < r0 + WIN; r++) {
                for (int c = c0; c < c0 + WIN; c++) {
                    mx += a[N + r * W + c] / n;
                    my += b[N + r * W + c] / n;
                }
            }
            for (int r = r0; r < r0 + WIN; r++) {
                for (int c = c0; c < c0 + WIN; c++) {
                    const double dx = a[N + r * W + c] - mx, dy = b[N + r * W + c] - my;
                    vx += dx * dx / (n - 1);
                    vy += dy * dy / (n - 1);
                    vxy += dx * dy / (n - 1);
                }
            }
            total +=
                (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
    }
    CHECK(fabs(out[1] - total / ((H - WIN + 1) * (W - WIN + 1))) < 1e-10);
    a[3] = NAN;
    CHECK(fc_ssim(a, b, 1, H, W, WIN, 1.0, out) == FC_OK && isnan(out[0]));
    CHECK(fc_ssim(NULL, NULL, 0, H, W, WIN, 1.0, NULL) == FC_OK);
}

int main(void)
{
    test_centre_is_the_weighted_mean();
    test_against_dense();
    test_all_removed_is_zero();
    test_noise_seeded_and_thread_independent();
    test_normal_draws();
    test_degenerate_and_nan();
    test_ssim();
    return check_report();
}
