/* Calls the C kernels directly, without Python, under AddressSanitizer and UBSan (`make csan`).
 * Each check compares against values worked out by hand; the program ends with the line
 * "N passed, N failed" and exits non-zero when anything failed. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "combine.h"
#include "normalize.h"
#include "resize.h"
#include "status.h"

#include "check.h"

static int close_to(double a, double b, double tol)
{
    return fabs(a - b) <= tol;
}

static int all_close(const float *got, const double *want, ptrdiff_t n, double tol)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        if (!close_to(got[i], want[i], tol)) {
            printf("  at %td: got %.9g want %.9g\n", i, (double)got[i], want[i]);
            return 0;
        }
    }
    return 1;
}

/* Inputs must come back untouched: every kernel gets a copy and the copy is compared after. */
static int same_bytes(const float *a, const float *b, ptrdiff_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static void test_combine(void)
{
    /* N=1, K=2, P=2 (h=1, w=2), G=2 */
    const float A[4] = {1, 2, 3, -4};
    const float W[4] = {1, 1, 2, -1};
    float A0[4], W0[4], out[4];
    memcpy(A0, A, sizeof A);
    memcpy(W0, W, sizeof W);
    CHECK(fc_combine(A, W, 1, 2, 2, 2, 0, out) == FC_OK);
    const double want[4] = {4, -2, -1, 8};
    CHECK(all_close(out, want, 4, 0));
    CHECK(fc_combine(A, W, 1, 2, 2, 2, 1, out) == FC_OK);
    const double want_relu[4] = {4, 0, 0, 8};
    CHECK(all_close(out, want_relu, 4, 0));
    CHECK(same_bytes(A, A0, 4) && same_bytes(W, W0, 4));

    /* 0 * inf is NaN and the ReLU keeps NaN */
    const float Ai[2] = {INFINITY, 1};
    const float Wz[1] = {0};
    CHECK(fc_combine(Ai, Wz, 1, 1, 1, 2, 1, out) == FC_OK);
    CHECK(isnan(out[0]) && out[1] == 0.0f);

    /* float32 extremes accumulate in double: FLT_MAX + FLT_MAX - FLT_MAX stays FLT_MAX */
    const float Ab[3] = {FLT_MAX, FLT_MAX, FLT_MAX};
    const float Wb[3] = {1, 1, -1};
    CHECK(fc_combine(Ab, Wb, 1, 3, 1, 1, 0, out) == FC_OK);
    CHECK(out[0] == FLT_MAX);

    /* nothing to do: N = 0, G = 0, K = 0 */
    CHECK(fc_combine(NULL, NULL, 0, 2, 2, 2, 0, NULL) == FC_OK);
    CHECK(fc_combine(A, W, 1, 2, 0, 2, 0, NULL) == FC_OK);
    CHECK(fc_combine(A, W, 1, 0, 1, 2, 0, out) == FC_OK && out[0] == 0.0f && out[1] == 0.0f);

    /* sizes whose scratch would overflow are refused, not allocated */
    CHECK(fc_combine(A, W, 1, 1, PTRDIFF_MAX / 2, 4, 0, out) == FC_EOVERFLOW);
}

/* K = 6 runs one four-channel sweep and two single ones; G = 3 weight sets share each
 * activation row: compare with the plain triple loop (small integers: exact in any order) */
static void test_combine_sweeps(void)
{
    enum { N = 2, K = 6, G = 3, P = 5 };
    float a[N * K * P], w[N * G * K], out[N * G * P];
    for (int i = 0; i < N * K * P; i++) {
        a[i] = (float)((i * 7) % 11 - 5);
    }
    for (int i = 0; i < N * G * K; i++) {
        w[i] = (float)((i * 5) % 7 - 3);
    }
    CHECK(fc_combine(a, w, N, K, G, P, 0, out) == FC_OK);
    int same = 1;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            for (int p = 0; p < P; p++) {
                double sum = 0;
                for (int k = 0; k < K; k++) {
                    sum += (double)w[(n * G + g) * K + k] * a[(n * K + k) * P + p];
                }
                same &= out[(n * G + g) * P + p] == (float)sum;
            }
        }
    }
    CHECK(same);
}

static void test_combine_pixelwise(void)
{
    /* N=1, K=2, P=2, G=1; negative per-pixel weights are clamped to 0 */
    const float A[4] = {1, 2, 3, 4};
    const float P[4] = {2, -1, -5, 0.5f};
    float out[2];
    CHECK(fc_combine_pixelwise(A, P, 1, 2, 1, 2, 0, out) == FC_OK);
    const double want[2] = {2, 2};
    CHECK(all_close(out, want, 2, 0));
    const float Pn[4] = {NAN, 1, 1, 1};
    CHECK(fc_combine_pixelwise(A, Pn, 1, 2, 1, 2, 1, out) == FC_OK);
    CHECK(isnan(out[0]) && out[1] == 6.0f);
    const float An[4] = {-1, -2, -3, -4};
    CHECK(fc_combine_pixelwise(An, P, 1, 2, 1, 2, 1, out) == FC_OK);
    CHECK(out[0] == 0.0f && out[1] == 0.0f);
}

/* Resizes one (h, w) map to (H, W) and compares the result with want (tolerance tol). */
static void check_resize(ptrdiff_t h, ptrdiff_t w, ptrdiff_t H, ptrdiff_t W, int align_corners,
                         const float *src, const double *want, double tol)
{
    int status = -7;
    fc_resize_plan *plan = fc_resize_plan_new(h, w, H, W, align_corners, &status);
    float *out = malloc(sizeof(float) * (size_t)(H * W));
    CHECK(plan != NULL && status == FC_OK && out != NULL);
    if (plan != NULL && out != NULL) {
        CHECK(fc_resize(plan, src, 1, out) == FC_OK && all_close(out, want, H * W, tol));
    }
    free(out);
    fc_resize_plan_free(plan);
}

static void test_resize(void)
{
    /* 2x2 -> 4x4 at half-pixel centres: each axis samples [a, .75a + .25b, .25a + .75b, b] */
    const float m[4] = {0, 1, 2, 3};
    const double axis[4] = {0, 0.25, 0.75, 1};
    double want[16];
    for (int y = 0; y < 4; y++) {
        for (int x = 0; x < 4; x++) {
            want[y * 4 + x] = 2 * axis[y] + axis[x];
        }
    }
    check_resize(2, 2, 4, 4, 0, m, want, 1e-7);

    /* align_corners: 2 -> 3 samples 0, .5, 1 */
    const float row2[2] = {10, 20};
    const double want3[3] = {10, 15, 20};
    check_resize(1, 2, 1, 3, 1, row2, want3, 0);

    /* 4 -> 2 downsampling at half-pixel centres: src = 0.5 and 2.5 */
    const float row4[4] = {0, 2, 4, 8};
    const double want2[2] = {1, 6};
    check_resize(1, 4, 1, 2, 0, row4, want2, 0);

    /* 1x1 input, 1x1 output */
    const float one[1] = {-3};
    const double want1[1] = {-3};
    check_resize(1, 1, 1, 1, 0, one, want1, 0);

    /* refused geometries */
    int status;
    CHECK(fc_resize_plan_new(0, 2, 2, 2, 0, &status) == NULL && status == FC_EOVERFLOW);
    CHECK(fc_resize_plan_new(PTRDIFF_MAX / 2, 2, 2, 4, 0, &status) == NULL &&
          status == FC_EOVERFLOW);
    fc_resize_plan_free(NULL);
}

/* A constant map stays exactly constant (a + lam * (b - a)), even at float32's edge. */
static void test_resize_constant(void)
{
    int status;
    fc_resize_plan *plan = fc_resize_plan_new(3, 3, 7, 5, 0, &status);
    CHECK(plan != NULL);
    if (plan == NULL) {
        return;
    }
    float c[9], out[35];
    for (int i = 0; i < 9; i++) {
        c[i] = 0.1f;
    }
    CHECK(fc_resize(plan, c, 1, out) == FC_OK);
    int exact = 1;
    for (int i = 0; i < 35; i++) {
        exact &= out[i] == 0.1f;
    }
    CHECK(exact);
    /* opposite extremes do not overflow */
    for (int i = 0; i < 9; i++) {
        c[i] = (i % 2) ? FLT_MAX : -FLT_MAX;
    }
    CHECK(fc_resize(plan, c, 1, out) == FC_OK);
    int finite = 1;
    for (int i = 0; i < 35; i++) {
        finite &= isfinite(out[i]) != 0;
    }
    CHECK(finite);
    fc_resize_plan_free(plan);
}

static void test_minmax(void)
{
    const float m[8] = {1, 3, 2, 5, /* second map: all equal */ 7, 7, 7, 7};
    float out[8];
    fc_minmax(m, 2, 4, 0.0, out);
    const double want[8] = {0, 0.5, 0.25, 1, 0, 0, 0, 0};
    CHECK(all_close(out, want, 8, 1e-7));

    /* eps shrinks the top; an all-equal map stays zero whatever eps */
    fc_minmax(m, 2, 4, 4.0, out);
    const double want_eps[8] = {0, 0.25, 0.125, 0.5, 0, 0, 0, 0};
    CHECK(all_close(out, want_eps, 8, 1e-7));

    /* NaN or inf anywhere: that map (only) is all NaN */
    const float bad[8] = {1, NAN, 2, 3, 1, 2, INFINITY, 0};
    fc_minmax(bad, 2, 4, 0.0, out);
    int nan_maps = 1;
    for (int i = 0; i < 8; i++) {
        nan_maps &= isnan(out[i]) != 0;
    }
    CHECK(nan_maps);
    const float ok_then_bad[8] = {0, 2, 4, 8, -INFINITY, 0, 0, 0};
    fc_minmax(ok_then_bad, 2, 4, 0.0, out);
    CHECK(out[1] == 0.25f && isnan(out[4]) && isnan(out[7]));

    /* max - min overflows float32 but not the double it is computed in */
    const float huge[2] = {-FLT_MAX, FLT_MAX};
    fc_minmax(huge, 1, 2, 1e-8, out);
    CHECK(out[0] == 0.0f && out[1] == 1.0f);

    /* denormals are values like any other */
    const float tiny[2] = {0, 1e-45f}; /* the smallest denormal */
    fc_minmax(tiny, 1, 2, 0.0, out);
    CHECK(out[0] == 0.0f && out[1] == 1.0f);
}

static void test_postprocess(void)
{
    int status;
    /* relu -> 2x2 -> 4x4 -> minmax: {-1, 1, 1, 3} relu {0, 1, 1, 3}; corners map to 0 and 1 */
    const float m[4] = {-1, 1, 1, 3};
    float out[16];
    fc_resize_plan *plan = fc_resize_plan_new(2, 2, 4, 4, 0, &status);
    CHECK(plan != NULL);
    if (plan == NULL) {
        return;
    }
    CHECK(fc_postprocess(plan, m, 1, 1, 0.0, out) == FC_OK);
    CHECK(out[0] == 0.0f && out[15] == 1.0f);
    /* exact middle values: v(y, x) = lerp over the relu'd corners; check against a direct sum */
    const double ax[4] = {0, 0.25, 0.75, 1};
    const double c00 = 0, c01 = 1, c10 = 1, c11 = 3;
    double want[16];
    for (int y = 0; y < 4; y++) {
        for (int x = 0; x < 4; x++) {
            const double top = c00 + ax[x] * (c01 - c00), bot = c10 + ax[x] * (c11 - c10);
            want[y * 4 + x] = (top + ax[y] * (bot - top)) / 3.0;
        }
    }
    CHECK(all_close(out, want, 16, 1e-7));

    /* all-negative input under ReLU: all equal (zero) -> zeros */
    const float neg[4] = {-1, -2, -3, -4};
    CHECK(fc_postprocess(plan, neg, 1, 1, 1e-8, out) == FC_OK);
    int zeros = 1;
    for (int i = 0; i < 16; i++) {
        zeros &= out[i] == 0.0f;
    }
    CHECK(zeros);

    /* NaN input -> the whole map NaN */
    const float nan_in[4] = {0, NAN, 1, 2};
    CHECK(fc_postprocess(plan, nan_in, 1, 1, 1e-8, out) == FC_OK);
    CHECK(isnan(out[0]) && isnan(out[15]));

    CHECK(fc_postprocess(plan, NULL, 0, 1, 1e-8, NULL) == FC_OK);
    fc_resize_plan_free(plan);

    /* 4 x 2 -> 1 x 2 samples rows 1 and 2 only (src = 1.5): a NaN in row 0 never reaches the
     * output and the map stays finite; a NaN in row 2 does, and the map is NaN */
    plan = fc_resize_plan_new(4, 2, 1, 2, 0, &status);
    CHECK(plan != NULL);
    if (plan != NULL) {
        float rows[8] = {NAN, NAN, 0, 1, 2, 3, 4, 5};
        CHECK(fc_postprocess(plan, rows, 1, 0, 0.0, out) == FC_OK);
        CHECK(out[0] == 0.0f && out[1] == 1.0f);
        rows[0] = rows[1] = 0;
        rows[5] = NAN;
        CHECK(fc_postprocess(plan, rows, 1, 0, 0.0, out) == FC_OK);
        CHECK(isnan(out[0]) && isnan(out[1]));
        fc_resize_plan_free(plan);
    }
}

static void test_fuse_layers(void)
{
    int status;
    /* layer 0: 1x2 {0, 2} -> 1x2 identity -> {0, 1}; layer 1: 1x1 {5} -> constant -> zeros;
     * mean {0, .5} -> minmax {0, 1} */
    const float l0[2] = {0, 2}, l1[1] = {5};
    fc_resize_plan *plans[2] = {fc_resize_plan_new(1, 2, 1, 2, 0, &status),
                                fc_resize_plan_new(1, 1, 1, 2, 0, &status)};
    const float *maps[2] = {l0, l1};
    float out[2];
    CHECK(plans[0] != NULL && plans[1] != NULL);
    if (plans[0] != NULL && plans[1] != NULL) {
        CHECK(fc_fuse_layers(plans, maps, 2, 1, 1, 0.0, out) == FC_OK);
        CHECK(out[0] == 0.0f && out[1] == 1.0f);
        const float lnan[1] = {NAN};
        const float *maps_nan[2] = {l0, lnan};
        CHECK(fc_fuse_layers(plans, maps_nan, 2, 1, 1, 0.0, out) == FC_OK);
        CHECK(isnan(out[0]) && isnan(out[1]));
    }
    fc_resize_plan_free(plans[0]);
    fc_resize_plan_free(plans[1]);
}

int main(void)
{
    test_combine();
    test_combine_sweeps();
    test_combine_pixelwise();
    test_resize();
    test_resize_constant();
    test_minmax();
    test_postprocess();
    test_fuse_layers();
    return check_report();
}
