/* Separable bilinear resizing of (h, w) float32 maps to (H, W).
 *
 * Sampling (torch's `interpolate(mode="bilinear")` conventions):
 *   align_corners = 0: src = max((dst + 0.5) * in / out - 0.5, 0)   (half-pixel centres)
 *   align_corners = 1: src = dst * (in - 1) / (out - 1), or 0 when out == 1
 *   i0 = min(floor(src), in - 1), i1 = min(i0 + 1, in - 1), lam = src - i0.
 * Each pass interpolates as a + lam * (b - a) in double, so a constant map stays exactly constant
 * (the min-max "all equal -> zeros" rule then holds after resizing) and float32 inputs can not
 * overflow. Rows are interpolated first (h x W), then columns of that (H x W): the wide second
 * pass is contiguous and vectorises. A non-finite input value makes every output it touches
 * non-finite (NaN or inf).
 *
 * A plan holds the coefficient tables and the scratch rows for one (h, w) -> (H, W) geometry; it
 * is built before the GIL is released and used by one thread at a time.
 */
#ifndef FINERCAM_RESIZE_H
#define FINERCAM_RESIZE_H

#include <stddef.h>

#include "status.h"

typedef struct fc_resize_plan {
    ptrdiff_t h, w, H, W;
    ptrdiff_t *r0, *r1, *c0, *c1; /* source rows for each output row, columns for each column */
    double *ry, *cx;              /* weight of r1 / c1 */
    double *tmp;                  /* h x W: the horizontally resized rows */
    unsigned char *tmp_bad;       /* h flags: row r of tmp holds a NaN or +-inf */
} fc_resize_plan;

/* Allocates a plan; NULL with *status set (FC_ENOMEM / FC_EOVERFLOW) on failure.
 * Requires h, w, H, W >= 1. */
fc_resize_plan *fc_resize_plan_new(ptrdiff_t h, ptrdiff_t w, ptrdiff_t H, ptrdiff_t W,
                                   int align_corners, int *status);
void fc_resize_plan_free(fc_resize_plan *plan);

/* One map in two steps, so that callers can stream the output row by row: fc_resize_rows
 * interpolates the source rows of `src` (h, w) into plan->tmp (h x W), clamping values below 0
 * first when relu is set (NaN is kept), and flags the rows holding a non-finite value (an output
 * row is non-finite exactly where one of its two source rows is); output row y is then
 *     tmp[r0[y], x] + ry[y] * (tmp[r1[y], x] - tmp[r0[y], x]). */
void fc_resize_rows(fc_resize_plan *plan, const float *src, int relu);

/* N maps (N, h, w) -> (N, H, W) float32. */
int fc_resize(fc_resize_plan *plan, const float *src, ptrdiff_t N, float *dst);

#endif
