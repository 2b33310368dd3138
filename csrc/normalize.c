#include "normalize.h"

#include <math.h>
#include <stdlib.h>

#include "alloc.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Running min / max of a map plus whether it held NaN or +-inf. When `bad` is set, lo and hi
 * mean nothing (the whole map becomes NaN). */
typedef struct {
    double lo, hi;
    int bad;
} range;

static range range_empty(void)
{
    range r = {INFINITY, -INFINITY, 0};
    return r;
}

/* One value into a running range: the scalar path, and the tail of the SIMD ones. `v - v` is 0
 * for finite v and NaN for NaN and +-inf. */
static void range_add(range *r, double v)
{
    r->lo = v < r->lo ? v : r->lo;
    r->hi = v > r->hi ? v : r->hi;
    r->bad |= !(v - v == 0.0);
}

#if defined(__SSE2__)
/* The compilers do not vectorise an IEEE min/max reduction on their own, hence SSE2 (every
 * x86-64): two double lanes of a running range, shared by the float and the double inputs
 * (a float converts to double exactly, so the range is the same either way). */
typedef struct {
    __m128d lo, hi, bad;
} lanes;

static lanes lanes_of(const range *r)
{
    lanes l = {_mm_set1_pd(r->lo), _mm_set1_pd(r->hi), _mm_setzero_pd()};
    return l;
}

static void lanes_add(lanes *l, __m128d v)
{
    const __m128d z = _mm_sub_pd(v, v);
    l->lo = _mm_min_pd(l->lo, v);
    l->hi = _mm_max_pd(l->hi, v);
    l->bad = _mm_or_pd(l->bad, _mm_cmpunord_pd(z, z));
}

/* The lanes merged into r. */
static void lanes_fold(const lanes *l, range *r)
{
    double l2[2], h2[2];
    _mm_storeu_pd(l2, l->lo);
    _mm_storeu_pd(h2, l->hi);
    range_add(r, l2[0]); /* lo and hi are the values of v seen: a NaN among them is in bad */
    range_add(r, l2[1]);
    range_add(r, h2[0]);
    range_add(r, h2[1]);
    r->bad |= _mm_movemask_pd(l->bad) != 0;
}
#endif

static void range_update_d(range *r, const double *x, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#if defined(__SSE2__)
    if (n >= 2) {
        lanes l = lanes_of(r);
        for (; i + 2 <= n; i += 2) {
            lanes_add(&l, _mm_loadu_pd(x + i));
        }
        lanes_fold(&l, r);
    }
#endif
    for (; i < n; i++) {
        range_add(r, x[i]);
    }
}

static void range_update_f(range *r, const float *x, ptrdiff_t n)
{
    ptrdiff_t i = 0;
#if defined(__SSE2__)
    if (n >= 4) {
        /* four float lanes (twice the double rate), widened exactly into double lanes once */
        __m128 lo = _mm_set1_ps((float)r->lo), hi = _mm_set1_ps((float)r->hi);
        __m128 bad = _mm_setzero_ps();
        for (; i + 4 <= n; i += 4) {
            const __m128 v = _mm_loadu_ps(x + i), z = _mm_sub_ps(v, v);
            lo = _mm_min_ps(lo, v);
            hi = _mm_max_ps(hi, v);
            bad = _mm_or_ps(bad, _mm_cmpunord_ps(z, z));
        }
        lanes l = {_mm_min_pd(_mm_cvtps_pd(lo), _mm_cvtps_pd(_mm_movehl_ps(lo, lo))),
                   _mm_max_pd(_mm_cvtps_pd(hi), _mm_cvtps_pd(_mm_movehl_ps(hi, hi))),
                   _mm_setzero_pd()};
        lanes_fold(&l, r);
        r->bad |= _mm_movemask_ps(bad) != 0;
    }
#endif
    for (; i < n; i++) {
        range_add(r, x[i]);
    }
}

/* What the policy does with a map of range r: NaN fill, zeros, or (x - lo) * inv. */
typedef struct {
    enum { FILL_NAN, FILL_ZERO, SCALE } mode;
    double lo, inv;
} scaling;

static scaling scaling_of(range r, double eps)
{
    scaling s = {SCALE, r.lo, 0.0};
    if (r.bad) {
        s.mode = FILL_NAN;
    } else if (r.hi == r.lo) {
        s.mode = FILL_ZERO;
    } else {
        /* one division per map; x * inv differs from x / d by at most an ulp of double */
        s.inv = 1.0 / (r.hi - r.lo + eps);
    }
    return s;
}

static void apply_row(scaling s, const double *x, ptrdiff_t n, float *dst)
{
    if (s.mode == FILL_NAN) {
        for (ptrdiff_t i = 0; i < n; i++) {
            dst[i] = NAN;
        }
    } else if (s.mode == FILL_ZERO) {
        for (ptrdiff_t i = 0; i < n; i++) {
            dst[i] = 0.0f;
        }
    } else {
        const double lo = s.lo, inv = s.inv;
        for (ptrdiff_t i = 0; i < n; i++) {
            dst[i] = (float)((x[i] - lo) * inv);
        }
    }
}

static void accumulate_row(scaling s, const double *x, ptrdiff_t n, double *acc)
{
    if (s.mode == FILL_NAN) {
        for (ptrdiff_t i = 0; i < n; i++) {
            acc[i] = NAN;
        }
    } else if (s.mode == SCALE) {
        const double lo = s.lo, inv = s.inv;
        for (ptrdiff_t i = 0; i < n; i++) {
            acc[i] += (x[i] - lo) * inv;
        }
    } /* FILL_ZERO adds nothing */
}

void fc_minmax(const float *maps, ptrdiff_t N, ptrdiff_t size, double eps, float *dst)
{
    for (ptrdiff_t n = 0; n < N; n++) {
        const float *x = maps + n * size;
        float *d = dst + n * size;
        range r = range_empty();
        range_update_f(&r, x, size);
        const scaling s = scaling_of(r, eps);
        if (s.mode != SCALE) {
            apply_row(s, NULL, size, d);
            continue;
        }
        const double lo = s.lo, inv = s.inv;
        for (ptrdiff_t i = 0; i < size; i++) {
            d[i] = (float)(((double)x[i] - lo) * inv);
        }
    }
}

/* The two passes over a resized map read the plan's interpolated source rows (h x W, in L1/L2)
 * and interpolate each output value on the fly: recomputing a + l * (b - a) is cheaper than
 * writing and re-reading an H x W buffer. Pass 1: the range of the resized map. */
static range resized_range(const fc_resize_plan *plan)
{
    const ptrdiff_t W = plan->W;
    range r = range_empty();
    for (ptrdiff_t y = 0; y < plan->H; y++) {
        if (plan->tmp_bad[plan->r0[y]] | plan->tmp_bad[plan->r1[y]]) {
            r.bad = 1; /* a non-finite source row makes its output rows non-finite */
            return r;
        }
    }
    double lo = r.lo, hi = r.hi;
    for (ptrdiff_t y = 0; y < plan->H; y++) {
        const double *t0 = plan->tmp + plan->r0[y] * W, *t1 = plan->tmp + plan->r1[y] * W;
        const double l = plan->ry[y];
        ptrdiff_t x = 0;
#if defined(__SSE2__)
        if (W >= 8) {
            /* four independent accumulators: one chain of min/max would be latency-bound */
            const __m128d vl = _mm_set1_pd(l);
            __m128d vlo[4], vhi[4];
            for (int j = 0; j < 4; j++) {
                vlo[j] = _mm_set1_pd(lo);
                vhi[j] = _mm_set1_pd(hi);
            }
            for (; x + 8 <= W; x += 8) {
                for (int j = 0; j < 4; j++) {
                    const __m128d a = _mm_loadu_pd(t0 + x + 2 * j);
                    const __m128d b = _mm_loadu_pd(t1 + x + 2 * j);
                    const __m128d v = _mm_add_pd(a, _mm_mul_pd(vl, _mm_sub_pd(b, a)));
                    vlo[j] = _mm_min_pd(vlo[j], v);
                    vhi[j] = _mm_max_pd(vhi[j], v);
                }
            }
            const __m128d mlo = _mm_min_pd(_mm_min_pd(vlo[0], vlo[1]), _mm_min_pd(vlo[2], vlo[3]));
            const __m128d mhi = _mm_max_pd(_mm_max_pd(vhi[0], vhi[1]), _mm_max_pd(vhi[2], vhi[3]));
            double l2[2], h2[2];
            _mm_storeu_pd(l2, mlo);
            _mm_storeu_pd(h2, mhi);
            lo = l2[0] < l2[1] ? l2[0] : l2[1];
            hi = h2[0] > h2[1] ? h2[0] : h2[1];
        }
#endif
        for (; x < W; x++) {
            const double v = t0[x] + l * (t1[x] - t0[x]);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    }
    r.lo = lo;
    r.hi = hi;
    return r;
}

/* Pass 2: the normalised map, written as float32 (dst) or added to a double accumulator (acc). */
static void resized_scaled(const fc_resize_plan *plan, scaling s, float *dst, double *acc)
{
    const ptrdiff_t H = plan->H, W = plan->W;
    if (s.mode != SCALE) {
        if (dst != NULL) {
            apply_row(s, NULL, H * W, dst);
        } else {
            accumulate_row(s, NULL, H * W, acc);
        }
        return;
    }
    const double lo = s.lo, inv = s.inv;
    for (ptrdiff_t y = 0; y < H; y++) {
        const double *t0 = plan->tmp + plan->r0[y] * W, *t1 = plan->tmp + plan->r1[y] * W;
        const double l = plan->ry[y];
        if (dst != NULL) {
            float *d = dst + y * W;
            for (ptrdiff_t x = 0; x < W; x++) {
                d[x] = (float)((t0[x] + l * (t1[x] - t0[x]) - lo) * inv);
            }
        } else {
            double *d = acc + y * W;
            for (ptrdiff_t x = 0; x < W; x++) {
                d[x] += (t0[x] + l * (t1[x] - t0[x]) - lo) * inv;
            }
        }
    }
}

int fc_postprocess(fc_resize_plan *plan, const float *maps, ptrdiff_t N, int relu, double eps,
                   float *dst)
{
    const ptrdiff_t in_size = plan->h * plan->w, out_size = plan->H * plan->W;
    for (ptrdiff_t n = 0; n < N; n++) {
        fc_resize_rows(plan, maps + n * in_size, relu);
        resized_scaled(plan, scaling_of(resized_range(plan), eps), dst + n * out_size, NULL);
    }
    return FC_OK;
}

int fc_fuse_layers(fc_resize_plan *const *plans, const float *const *maps, ptrdiff_t L, ptrdiff_t N,
                   int relu, double eps, float *dst)
{
    int status = FC_OK;
    double *acc = NULL;
    if (N == 0 || L == 0) {
        goto exit;
    }
    const ptrdiff_t out_size = plans[0]->H * plans[0]->W;
    if ((acc = fc_malloc(out_size, sizeof(double), &status)) == NULL) {
        goto exit;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        for (ptrdiff_t i = 0; i < out_size; i++) {
            acc[i] = 0.0;
        }
        for (ptrdiff_t l = 0; l < L; l++) {
            fc_resize_plan *plan = plans[l];
            fc_resize_rows(plan, maps[l] + n * plan->h * plan->w, relu);
            resized_scaled(plan, scaling_of(resized_range(plan), eps), NULL, acc);
        }
        for (ptrdiff_t i = 0; i < out_size; i++) {
            acc[i] /= (double)L;
        }
        range r = range_empty();
        range_update_d(&r, acc, out_size);
        apply_row(scaling_of(r, eps), acc, out_size, dst + n * out_size);
    }
exit:
    free(acc);
    return status;
}
