#include "ssim.h"

#include <stdlib.h>

#include "alloc.h"

/* The five summed-area tables of one pair, (h + 1) x (w + 1) each: x, y, x^2, y^2, x y. */
enum { SX, SY, SXX, SYY, SXY, N_TABLES };

static void fill_tables(const float *x, const float *y, ptrdiff_t h, ptrdiff_t w, double *t)
{
    const ptrdiff_t stride = w + 1, size = (h + 1) * (w + 1);
    for (int k = 0; k < N_TABLES; k++) {
        for (ptrdiff_t c = 0; c <= w; c++) {
            t[k * size + c] = 0.0; /* row 0 */
        }
    }
    for (ptrdiff_t r = 0; r < h; r++) {
        double run[N_TABLES] = {0.0, 0.0, 0.0, 0.0, 0.0};
        for (int k = 0; k < N_TABLES; k++) {
            t[k * size + (r + 1) * stride] = 0.0; /* column 0 */
        }
        for (ptrdiff_t c = 0; c < w; c++) {
            const double u = (double)x[r * w + c], v = (double)y[r * w + c];
            const double vals[N_TABLES] = {u, v, u * u, v * v, u * v};
            for (int k = 0; k < N_TABLES; k++) {
                run[k] += vals[k];
                t[k * size + (r + 1) * stride + c + 1] = t[k * size + r * stride + c + 1] + run[k];
            }
        }
    }
}

/* The sum of table k over rows [r0, r0 + win) and columns [c0, c0 + win). */
static double window_sum(const double *t, ptrdiff_t stride, ptrdiff_t r0, ptrdiff_t c0, int win)
{
    return t[(r0 + win) * stride + c0 + win] - t[r0 * stride + c0 + win] -
           t[(r0 + win) * stride + c0] + t[r0 * stride + c0];
}

int fc_ssim(const float *a, const float *b, ptrdiff_t n_maps, ptrdiff_t h, ptrdiff_t w, int win,
            double data_range, double *out)
{
    int status = FC_OK;
    double *t = NULL;
    ptrdiff_t size = h + 1;
    if (n_maps <= 0 || h < win || w < win) {
        goto exit;
    }
    if (!fc_mul_ok(&size, w + 1) || !fc_mul_ok(&size, N_TABLES)) {
        status = FC_EOVERFLOW;
        goto exit;
    }
    if ((t = fc_malloc(size, sizeof(double), &status)) == NULL) {
        goto exit;
    }
    const ptrdiff_t one = size / N_TABLES, stride = w + 1;
    const double n = (double)win * win, cov_norm = n / (n - 1.0);
    const double c1 = (0.01 * data_range) * (0.01 * data_range);
    const double c2 = (0.03 * data_range) * (0.03 * data_range);
    for (ptrdiff_t m = 0; m < n_maps; m++) {
        fill_tables(a + m * h * w, b + m * h * w, h, w, t);
        double total = 0.0;
        for (ptrdiff_t r0 = 0; r0 + win <= h; r0++) {
            for (ptrdiff_t c0 = 0; c0 + win <= w; c0++) {
                const double mx = window_sum(t + SX * one, stride, r0, c0, win) / n;
                const double my = window_sum(t + SY * one, stride, r0, c0, win) / n;
                const double mxx = window_sum(t + SXX * one, stride, r0, c0, win) / n;
                const double myy = window_sum(t + SYY * one, stride, r0, c0, win) / n;
                const double mxy = window_sum(t + SXY * one, stride, r0, c0, win) / n;
                const double vx = cov_norm * (mxx - mx * mx), vy = cov_norm * (myy - my * my);
                const double vxy = cov_norm * (mxy - mx * my);
                total += ((2.0 * mx * my + c1) * (2.0 * vxy + c2)) /
                         ((mx * mx + my * my + c1) * (vx + vy + c2));
            }
        }
        out[m] = total / (double)((h - win + 1) * (w - win + 1));
    }
exit:
    free(t);
    return status;
}
