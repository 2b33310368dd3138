#include "measure.h"

#include <math.h>
#include <stdlib.h>

#include "alloc.h"

void fc_energy_in_mask(const float *maps, const uint8_t *masks, ptrdiff_t n_maps, ptrdiff_t n_pix,
                       double *out)
{
    for (ptrdiff_t m = 0; m < n_maps; m++) {
        const float *x = maps + m * n_pix;
        const uint8_t *in = masks + m * n_pix;
        double inside = 0.0, total = 0.0;
        for (ptrdiff_t p = 0; p < n_pix; p++) {
            const double v = (double)x[p];
            total += v;
            inside += in[p] ? v : 0.0;
        }
        /* a non-finite value makes total non-finite; inf/inf would be NaN anyway, but
         * (finite + inf) / inf would be 1 or 0 and hide the broken input */
        out[m] = (total == 0.0 || !isfinite(total)) ? NAN : inside / total;
    }
}

void fc_pointing_hit(const float *maps, const uint8_t *masks, ptrdiff_t n_maps, ptrdiff_t n_pix,
                     uint8_t *out)
{
    for (ptrdiff_t m = 0; m < n_maps; m++) {
        const float *x = maps + m * n_pix;
        ptrdiff_t top = -1;
        float best = 0.0f;
        for (ptrdiff_t p = 0; p < n_pix; p++) {
            /* strict '>' keeps the first maximum; NaN never compares greater */
            if (x[p] == x[p] && (top < 0 || x[p] > best)) {
                best = x[p];
                top = p;
            }
        }
        out[m] = (uint8_t)(top >= 0 && masks[m * n_pix + top] != 0);
    }
}

void fc_trapezoid(const double *y, const double *x, ptrdiff_t n_curves, ptrdiff_t n_points,
                  double *out)
{
    for (ptrdiff_t c = 0; c < n_curves; c++) {
        const double *yc = y + c * n_points;
        double area = 0.0;
        for (ptrdiff_t j = 0; j + 1 < n_points; j++) {
            area += (x[j + 1] - x[j]) * (yc[j] + yc[j + 1]) * 0.5;
        }
        out[c] = area;
    }
}

/* norm[i] = |rows[i]| for n rows of d floats, summed in double. */
static void row_norms(const float *rows, ptrdiff_t n, ptrdiff_t d, double *norm)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        const float *r = rows + i * d;
        double s = 0.0;
        for (ptrdiff_t t = 0; t < d; t++) {
            s += (double)r[t] * (double)r[t];
        }
        norm[i] = sqrt(s);
    }
}

int fc_cosine_matrix(const float *a, ptrdiff_t m, const float *b, ptrdiff_t k, ptrdiff_t d,
                     float *out)
{
    int status = FC_OK;
    double *norm_a = NULL, *norm_b = NULL;
    if (m <= 0 || k <= 0) {
        goto exit;
    }
    if ((norm_a = fc_malloc(m, sizeof(double), &status)) == NULL ||
        (norm_b = fc_malloc(k, sizeof(double), &status)) == NULL) {
        goto exit;
    }
    row_norms(a, m, d, norm_a);
    row_norms(b, k, d, norm_b);
    for (ptrdiff_t i = 0; i < m; i++) {
        const float *ai = a + i * d;
        for (ptrdiff_t j = 0; j < k; j++) {
            const float *bj = b + j * d;
            const double denom = norm_a[i] * norm_b[j];
            double dot = 0.0;
            for (ptrdiff_t t = 0; t < d; t++) {
                dot += (double)ai[t] * (double)bj[t];
            }
            /* a zero row carries no direction; 0 keeps a similarity matrix usable for ranking */
            out[i * k + j] = (float)(denom == 0.0 ? 0.0 : dot / denom);
        }
    }
exit:
    free(norm_a);
    free(norm_b);
    return status;
}
