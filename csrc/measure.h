/* Per-map measurements for the paper's metrics.  Plain C, no Python types; every sum is
 * accumulated in double.
 *
 * maps (n_maps, n_pix) float32, masks (n_maps, n_pix) uint8 (nonzero = inside), C-contiguous and
 * caller-owned; outputs are caller-owned too. */
#ifndef FINERCAM_MEASURE_H
#define FINERCAM_MEASURE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* out[m] = sum(map * [mask]) / sum(map): the map's energy inside the mask.  NaN when the sum
 * is zero (an all-zero map) or when the map holds NaN or +-inf. */
void fc_energy_in_mask(const float *maps, const uint8_t *masks, ptrdiff_t n_maps, ptrdiff_t n_pix,
                       double *out);

/* out[m] = 1 if the map's top-ranked pixel (its first maximum in flat order, NaN ignored: the
 * order of fc_argsort_desc) lies inside the mask, else 0.  An empty map or a map of NaN only
 * gives 0. */
void fc_pointing_hit(const float *maps, const uint8_t *masks, ptrdiff_t n_maps, ptrdiff_t n_pix,
                     uint8_t *out);

/* out[m] = sum_j (x[j+1] - x[j]) * (y[m, j] + y[m, j+1]) / 2, the trapezoid rule over the
 * points x (n_points,); y (n_curves, n_points) double.  Fewer than two points give 0. */
void fc_trapezoid(const double *y, const double *x, ptrdiff_t n_curves, ptrdiff_t n_points,
                  double *out);

/* out[i, j] = <a_i, b_j> / (|a_i| |b_j|) for rows a (m, d) and b (k, d) float32, out (m, k)
 * float32.  A zero row has similarity 0 with everything; non-finite inputs give NaN.
 * Returns FC_OK, or FC_ENOMEM / FC_EOVERFLOW when the norm scratch cannot be allocated. */
int fc_cosine_matrix(const float *a, ptrdiff_t m, const float *b, ptrdiff_t k, ptrdiff_t d,
                     float *out);

#endif
