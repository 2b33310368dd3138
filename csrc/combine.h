/* Channel combinations of feature-grid activations: the linear algebra behind every CAM.
 *
 * Contract (all kernels of this file):
 *   - arrays are C-contiguous float32, read-only inputs and a caller-owned output that does not
 *     alias them; P = h * w pixels per channel map;
 *   - sums accumulate in double, one (n, g) map at a time, then round once to float32, so the
 *     result is the correctly rounded float64 sum up to reordering;
 *   - NaN and inf propagate as IEEE arithmetic says (0 * inf = NaN included); the optional ReLU is
 *     `v < 0 ? 0 : v`, which keeps NaN;
 *   - no Python, no globals: safe to call from several threads at once.
 * Returns FC_OK, or FC_ENOMEM / FC_EOVERFLOW when the scratch buffer cannot be had.
 */
#ifndef FINERCAM_COMBINE_H
#define FINERCAM_COMBINE_H

#include <stddef.h>

#include "status.h"

/* out[n, g, p] = sum_k W[n, g, k] * A[n, k, p]; A (N, K, P), W (N, G, K), out (N, G, P). */
int fc_combine(const float *A, const float *W, ptrdiff_t N, ptrdiff_t K, ptrdiff_t G, ptrdiff_t P,
               int relu, float *out);

/* out[n, g, p] = sum_k relu(Pw[n, g, k, p]) * A[n, k, p]; Pw (N, G, K, P) per-pixel weights
 * (Layer-CAM). relu applies to the sum. */
int fc_combine_pixelwise(const float *A, const float *Pw, ptrdiff_t N, ptrdiff_t K, ptrdiff_t G,
                         ptrdiff_t P, int relu, float *out);

#endif
