/* Stable descending ranking of saliency maps, and top-fraction masking of images.
 *
 * Plain C, no Python types.  Every function returns 0 on success, FC_ENOMEM when a scratch
 * allocation fails and FC_EOVERFLOW when a map has more than 2^32 - 1 pixels (ranks are kept
 * in 32 bits to halve the memory traffic of the sort).
 *
 * The order: pixels by decreasing value, ties to the lower flat index (a stable sort), -0.0 equal
 * to +0.0, NaN after every number (the Python layer rejects NaN maps before they get here; the
 * rule only makes the result defined).
 *
 * n_threads: how many threads a call may use (see parallel.h; 1 = the calling thread only). The
 * results do not depend on it: every map is sorted whole by one thread, and every output plane
 * is written by one thread from the same ranks.
 */
#ifndef FINERCAM_RANK_H
#define FINERCAM_RANK_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* order[m, r] = flat index of the r-th largest pixel of maps[m]; maps (n_maps, n_pix) float32,
 * order (n_maps, n_pix) int64, both C-contiguous, caller-owned. */
int fc_argsort_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *order,
                    int n_threads);

/* rank[m, p] = position of pixel p in that order (0 = the largest): the inverse permutation. */
int fc_rank_desc(const float *maps, ptrdiff_t n_maps, ptrdiff_t n_pix, int64_t *rank,
                 int n_threads);

/* Many masked copies of a batch of images, in one pass over the output.
 *
 * images, baseline: (n_img, n_ch, n_pix) float32; maps: (n_img, n_pix); counts: (n_counts,),
 * each in [0, n_pix] (checked by the caller); out: (n_img * n_counts, n_ch, n_pix), caller-owned.
 * out[i * n_counts + s, c, p] = baseline[i, c, p] if rank_i(p) < counts[s] else images[i, c, p],
 * i.e. the counts[s] top-ranked pixels of maps[i] replaced in every channel. Images are ranked
 * over threads (one image per thread at a time), then the output planes are filled over threads;
 * outputs of 8 MiB and more are written with non-temporal stores. */
int fc_mask_top(const float *images, const float *maps, const float *baseline, ptrdiff_t n_img,
                ptrdiff_t n_ch, ptrdiff_t n_pix, const int64_t *counts, ptrdiff_t n_counts,
                float *out, int n_threads);

#endif
