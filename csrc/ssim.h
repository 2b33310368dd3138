/* The structural similarity index (Wang et al., 2004) of pairs of maps, as scikit-image's
 * structural_similarity computes it by default: a uniform win x win window, sample covariances
 * (normalised by n - 1, n = win^2), K1 = 0.01, K2 = 0.03, and the mean of the SSIM map over the
 * pixels whose window lies inside the image (a border of (win - 1) / 2 cropped).
 *
 *   SSIM = (2 mx my + C1)(2 sxy + C2) / ((mx^2 + my^2 + C1)(sx^2 + sy^2 + C2)),
 *   C1 = (K1 R)^2, C2 = (K2 R)^2, R = data_range.
 *
 * Plain C, no Python; window sums from summed-area tables in double. */
#ifndef FINERCAM_SSIM_H
#define FINERCAM_SSIM_H

#include <stddef.h>

#include "status.h"

/* out[m] = the mean SSIM of a[m] and b[m], maps (n_maps, h, w) float32 with h, w >= win, win odd
 * >= 3 (checked by the caller), data_range > 0. A map holding NaN or inf gives NaN.
 * Returns FC_OK, FC_ENOMEM or FC_EOVERFLOW. */
int fc_ssim(const float *a, const float *b, ptrdiff_t n_maps, ptrdiff_t h, ptrdiff_t w, int win,
            double data_range, double *out);

#endif
