/* Per-map min-max normalisation and the fused post-processing built on it.
 *
 * Policy, per map x of `size` values (size >= 1):
 *   - any NaN or +-inf in x: the whole output map is NaN (a broken input stays visible);
 *   - max(x) == min(x): the output map is all zeros, whatever eps;
 *   - otherwise (x - min) / (max - min + eps), computed in double (float32 max - min can
 *     overflow), rounded once to float32.
 * eps must be finite and >= 0 (the binding checks it). No Python, no globals.
 */
#ifndef FINERCAM_NORMALIZE_H
#define FINERCAM_NORMALIZE_H

#include <stddef.h>

#include "resize.h"
#include "status.h"

/* maps (N, size) -> dst (N, size). */
void fc_minmax(const float *maps, ptrdiff_t N, ptrdiff_t size, double eps, float *dst);

/* minmax(resize(relu?(maps))): maps (N, h, w) -> dst (N, H, W), h/w/H/W taken from the plan. */
int fc_postprocess(fc_resize_plan *plan, const float *maps, ptrdiff_t N, int relu, double eps,
                   float *dst);

/* minmax(mean_l postprocess(maps_l)) over L layers: maps[l] is (N, h_l, w_l) with plans[l]
 * mapping it to the common (H, W); dst (N, H, W). */
int fc_fuse_layers(fc_resize_plan *const *plans, const float *const *maps, ptrdiff_t L, ptrdiff_t N,
                   int relu, double eps, float *dst);

#endif
