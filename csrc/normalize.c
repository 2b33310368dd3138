#include "normalize.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    double lo, hi;
    int finite;
} range;

/* `v - v != 0` is true exactly for NaN and +-inf; an integer OR keeps the loop vectorisable. */
static range range_f(const float *x, ptrdiff_t n)
{
    float lo = x[0], hi = x[0];
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        const float v = x[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        bad |= !(v - v == 0.0f);
    }
    range r = {lo, hi, !bad};
    return r;
}

static range range_d(const double *x, ptrdiff_t n)
{
    double lo = x[0], hi = x[0];
    int bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        const double v = x[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        bad |= !(v - v == 0.0);
    }
    range r = {lo, hi, !bad};
    return r;
}

/* Writes the normalised map as float32 (dst_f) or adds it to a double accumulator (acc_d). */
static void apply_d(const double *x, ptrdiff_t n, range r, double eps, float *dst_f,
                    double *acc_d)
{
    if (!r.finite) {
        for (ptrdiff_t i = 0; i < n; i++) {
            if (dst_f) {
                dst_f[i] = NAN;
            } else {
                acc_d[i] = NAN;
            }
        }
        return;
    }
    if (r.hi == r.lo) {
        if (dst_f) {
            for (ptrdiff_t i = 0; i < n; i++) {
                dst_f[i] = 0.0f;
            }
        }
        return; /* adding zeros to the accumulator changes nothing */
    }
    const double lo = r.lo, inv = 1.0 / (r.hi - r.lo + eps);
    if (dst_f) {
        for (ptrdiff_t i = 0; i < n; i++) {
            dst_f[i] = (float)((x[i] - lo) * inv);
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            acc_d[i] += (x[i] - lo) * inv;
        }
    }
}

void fc_minmax(const float *maps, ptrdiff_t N, ptrdiff_t size, double eps, float *dst)
{
    for (ptrdiff_t n = 0; n < N; n++) {
        const float *x = maps + n * size;
        float *d = dst + n * size;
        range r = range_f(x, size);
        if (!r.finite) {
            for (ptrdiff_t i = 0; i < size; i++) {
                d[i] = NAN;
            }
        } else if (r.hi == r.lo) {
            for (ptrdiff_t i = 0; i < size; i++) {
                d[i] = 0.0f;
            }
        } else {
            const double lo = r.lo, inv = 1.0 / (r.hi - r.lo + eps);
            for (ptrdiff_t i = 0; i < size; i++) {
                d[i] = (float)(((double)x[i] - lo) * inv);
            }
        }
    }
}

static double *alloc_doubles(ptrdiff_t count, int *status)
{
    ptrdiff_t bytes = count;
    if (!fc_mul_ok(&bytes, (ptrdiff_t)sizeof(double))) {
        *status = FC_EOVERFLOW;
        return NULL;
    }
    double *p = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (p == NULL) {
        *status = FC_ENOMEM;
    }
    return p;
}

int fc_postprocess(fc_resize_plan *plan, const float *maps, ptrdiff_t N, int relu, double eps,
                   float *dst)
{
    int status = FC_OK;
    double *buf = NULL;
    const ptrdiff_t in_size = plan->h * plan->w, out_size = plan->H * plan->W;
    if (N == 0) {
        goto exit;
    }
    if ((buf = alloc_doubles(out_size, &status)) == NULL) {
        goto exit;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        fc_resize_map(plan, maps + n * in_size, relu, buf);
        apply_d(buf, out_size, range_d(buf, out_size), eps, dst + n * out_size, NULL);
    }
exit:
    free(buf);
    return status;
}

int fc_fuse_layers(fc_resize_plan *const *plans, const float *const *maps, ptrdiff_t L,
                   ptrdiff_t N, int relu, double eps, float *dst)
{
    int status = FC_OK;
    double *buf = NULL, *acc = NULL;
    if (N == 0 || L == 0) {
        goto exit;
    }
    const ptrdiff_t out_size = plans[0]->H * plans[0]->W;
    if ((buf = alloc_doubles(out_size, &status)) == NULL ||
        (acc = alloc_doubles(out_size, &status)) == NULL) {
        goto exit;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        for (ptrdiff_t i = 0; i < out_size; i++) {
            acc[i] = 0.0;
        }
        for (ptrdiff_t l = 0; l < L; l++) {
            const ptrdiff_t in_size = plans[l]->h * plans[l]->w;
            fc_resize_map(plans[l], maps[l] + n * in_size, relu, buf);
            apply_d(buf, out_size, range_d(buf, out_size), eps, NULL, acc);
        }
        for (ptrdiff_t i = 0; i < out_size; i++) {
            acc[i] /= (double)L;
        }
        apply_d(acc, out_size, range_d(acc, out_size), eps, dst + n * out_size, NULL);
    }
exit:
    free(buf);
    free(acc);
    return status;
}
