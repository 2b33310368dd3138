/* ROAD's noisy linear imputation (Rong et al., ICML 2022): every removed pixel takes the weighted
 * mean of its eight neighbours, the weights of the published code (1/6 for the four edge
 * neighbours, 1/12 for the four diagonal ones), neighbours outside the image left out:
 *
 *     s_p x_p - sum_{q ~ p, q removed} w_pq x_q = sum_{q ~ p, q kept} w_pq v_q
 *
 * with s_p = sum_{q ~ p} w_pq:
 *
 * one sparse symmetric positive definite system per image, mask and channel (a graph Laplacian
 * with the kept pixels as its boundary). It is solved by conjugate gradients preconditioned by a
 * symmetric multigrid V-cycle (Gauss-Seidel forward before and backward after the coarse
 * correction; a coarse pixel is solved for when its 2 x 2 children all are; bilinear
 * prolongation, its transpose as restriction), until ||r||_2 <= tol * ||b||_2 per channel (b: the
 * right-hand side above; ~10 iterations for 1e-6 on 224 x 224 images), or max_iter iterations;
 * plain conjugate gradients take over from there if they did not converge. A group of removed
 * pixels with no kept pixel among its neighbours (say, every pixel removed) has no boundary
 * value: it takes 0, the minimum-norm solution. Then noise * z is added to every removed pixel,
 * z a standard normal drawn from a counter-based generator keyed by (seed, row, pixel, channel):
 * the same numbers whatever the threads.
 *
 * Plain C, no Python; double precision inside, float32 in and out. */
#ifndef FINERCAM_IMPUTE_H
#define FINERCAM_IMPUTE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* The solver's settings. */
typedef struct {
    double noise;   /* >= 0: the standard deviation added to imputed pixels */
    uint64_t seed;  /* the noise's seed */
    uint64_t first; /* output row t draws as row first + t (a caller's chunk offset) */
    double tol;     /* > 0: relative residual at which the solve stops */
    int max_iter;   /* >= 1: conjugate-gradient iterations at most */
    int n_threads;  /* threads over the (image, mask) pairs */
} fc_impute_opts;

/* images (n_img, n_ch, h * w) float32; removed (n_img, n_masks, h * w) uint8 (nonzero: impute
 * this pixel); out (n_img * n_masks, n_ch, h * w) float32, caller-owned: row i * n_masks + s is
 * images[i] with the pixels of removed[i, s] imputed. Kept pixels are copied bit for bit.
 * Returns FC_OK, FC_ENOMEM or FC_EOVERFLOW. */
int fc_road_impute(const float *images, const uint8_t *removed, ptrdiff_t n_img, ptrdiff_t n_masks,
                   ptrdiff_t n_ch, ptrdiff_t h, ptrdiff_t w, const fc_impute_opts *opts,
                   float *out);

/* The standard normal of the imputation noise for key (seed, counter): a Box-Muller transform of
 * two splitmix64 draws. Exposed for the C tests. */
double fc_impute_normal(uint64_t seed, uint64_t counter);

#endif
