#include "resize.h"

#include <math.h>
#include <stdlib.h>

#include "alloc.h"

static void axis_table(ptrdiff_t n_in, ptrdiff_t n_out, int align_corners, ptrdiff_t *i0,
                       ptrdiff_t *i1, double *lam)
{
    const double scale = align_corners
                             ? (n_out > 1 ? (double)(n_in - 1) / (double)(n_out - 1) : 0.0)
                             : (double)n_in / (double)n_out;
    for (ptrdiff_t d = 0; d < n_out; d++) {
        double src;
        if (align_corners) {
            src = (double)d * scale;
        } else {
            src = ((double)d + 0.5) * scale - 0.5;
            if (src < 0.0) {
                src = 0.0;
            }
        }
        ptrdiff_t i = (ptrdiff_t)floor(src);
        if (i > n_in - 1) {
            i = n_in - 1;
        }
        i0[d] = i;
        i1[d] = i + 1 < n_in ? i + 1 : n_in - 1;
        lam[d] = src - (double)i;
    }
}

fc_resize_plan *fc_resize_plan_new(ptrdiff_t h, ptrdiff_t w, ptrdiff_t H, ptrdiff_t W,
                                   int align_corners, int *status)
{
    fc_resize_plan *plan = NULL;
    ptrdiff_t tmp_count = h;
    *status = FC_OK;
    if (h < 1 || w < 1 || H < 1 || W < 1 || !fc_mul_ok(&tmp_count, W)) {
        *status = FC_EOVERFLOW;
        goto fail;
    }
    if ((plan = fc_calloc(1, sizeof(*plan), status)) == NULL) {
        goto fail;
    }
    plan->h = h;
    plan->w = w;
    plan->H = H;
    plan->W = W;
    if ((plan->r0 = fc_malloc(H, sizeof(ptrdiff_t), status)) == NULL ||
        (plan->r1 = fc_malloc(H, sizeof(ptrdiff_t), status)) == NULL ||
        (plan->ry = fc_malloc(H, sizeof(double), status)) == NULL ||
        (plan->c0 = fc_malloc(W, sizeof(ptrdiff_t), status)) == NULL ||
        (plan->c1 = fc_malloc(W, sizeof(ptrdiff_t), status)) == NULL ||
        (plan->cx = fc_malloc(W, sizeof(double), status)) == NULL ||
        (plan->tmp = fc_malloc(tmp_count, sizeof(double), status)) == NULL ||
        (plan->tmp_bad = fc_malloc(h, 1, status)) == NULL) {
        goto fail;
    }
    axis_table(h, H, align_corners, plan->r0, plan->r1, plan->ry);
    axis_table(w, W, align_corners, plan->c0, plan->c1, plan->cx);
    return plan;
fail:
    fc_resize_plan_free(plan);
    return NULL;
}

void fc_resize_plan_free(fc_resize_plan *plan)
{
    if (plan == NULL) {
        return;
    }
    free(plan->r0);
    free(plan->r1);
    free(plan->ry);
    free(plan->c0);
    free(plan->c1);
    free(plan->cx);
    free(plan->tmp);
    free(plan->tmp_bad);
    free(plan);
}

static inline double relu_d(double v)
{
    return v < 0.0 ? 0.0 : v; /* keeps NaN, unlike fmax */
}

void fc_resize_rows(fc_resize_plan *plan, const float *src, int relu)
{
    const ptrdiff_t h = plan->h, w = plan->w, W = plan->W;
    const ptrdiff_t *c0 = plan->c0, *c1 = plan->c1;
    const double *cx = plan->cx;
    for (ptrdiff_t r = 0; r < h; r++) {
        const float *row = src + r * w;
        double *t = plan->tmp + r * W;
        int bad = 0;
        if (relu) {
            for (ptrdiff_t x = 0; x < W; x++) {
                const double a = relu_d(row[c0[x]]), b = relu_d(row[c1[x]]);
                t[x] = a + cx[x] * (b - a);
                bad |= !(t[x] - t[x] == 0.0);
            }
        } else {
            for (ptrdiff_t x = 0; x < W; x++) {
                const double a = row[c0[x]], b = row[c1[x]];
                t[x] = a + cx[x] * (b - a);
                bad |= !(t[x] - t[x] == 0.0);
            }
        }
        plan->tmp_bad[r] = (unsigned char)bad;
    }
}

int fc_resize(fc_resize_plan *plan, const float *src, ptrdiff_t N, float *dst)
{
    const ptrdiff_t H = plan->H, W = plan->W, in_size = plan->h * plan->w;
    for (ptrdiff_t n = 0; n < N; n++) {
        fc_resize_rows(plan, src + n * in_size, 0);
        float *out = dst + n * H * W;
        for (ptrdiff_t y = 0; y < H; y++) {
            const double *t0 = plan->tmp + plan->r0[y] * W;
            const double *t1 = plan->tmp + plan->r1[y] * W;
            const double l = plan->ry[y];
            float *d = out + y * W;
            for (ptrdiff_t x = 0; x < W; x++) {
                d[x] = (float)(t0[x] + l * (t1[x] - t0[x]));
            }
        }
    }
    return FC_OK;
}
