/* ROAD's noisy linear imputation: cascadic conjugate gradients on the eight-neighbour Laplacian
 * (see impute.h for the system and the rules). */
#include "impute.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "parallel.h"

/* The neighbours and their weights, as in the published imputer (tleemann/road_evaluation). */
static const int NB_DR[8] = {1, 0, -1, 1, 0, -1, 1, -1};
static const int NB_DC[8] = {1, 1, 1, -1, -1, -1, 0, 0};
static const double NB_W[8] = {1.0 / 12, 1.0 / 6,  1.0 / 12, 1.0 / 12,
                               1.0 / 6,  1.0 / 12, 1.0 / 6,  1.0 / 6};

/* One level of the cascade: values on the grid (kept values, and the solution where unknown). */
typedef struct {
    ptrdiff_t h, w, n_ch;
    double *x;        /* (h * w, n_ch), pixel-major: the channels of a pixel side by side */
    uint8_t *unknown; /* (h * w): 1 where the value is solved for */
} grid;

/* ---------------------------------------------------------------- noise */

static uint64_t splitmix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double fc_impute_normal(uint64_t seed, uint64_t counter)
{
    const uint64_t k = splitmix64(seed ^ splitmix64(counter));
    /* two 26- and 27-bit uniforms from one draw; u1 in (0, 1] keeps the log finite */
    const double u1 = ((double)(k >> 38) + 1.0) / 67108864.0;
    const double u2 = (double)((k >> 11) & ((1ull << 27) - 1)) / 134217728.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---------------------------------------------------------------- the grid */

/* Whether (r + dr, c + dc) lies in the h x w grid. */
static int inside(ptrdiff_t r, ptrdiff_t c, int dr, int dc, ptrdiff_t h, ptrdiff_t w)
{
    return r + dr >= 0 && r + dr < h && c + dc >= 0 && c + dc < w;
}

/* s_p: the summed weights of the neighbours of pixel (r, c) that lie inside the h x w image. */
static double neighbour_weight(ptrdiff_t r, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w)
{
    double s = 0.0;
    for (int j = 0; j < 8; j++) {
        s += inside(r, c, NB_DR[j], NB_DC[j], h, w) ? NB_W[j] : 0.0;
    }
    return s;
}

/* ---------------------------------------------------------------- the multigrid preconditioner */

/* Levels: each halves the grid while both sides are at least COARSE_SIDE and it has unknowns. */
#define MAX_LEVELS 16
#define COARSE_SIDE 8
/* Gauss-Seidel sweeps each way on the coarsest level (a few hundred unknowns at most). */
#define COARSEST_SWEEPS 16

/* One level of the V-cycle. A coarse pixel is unknown when its 2 x 2 children all are: the
 * correction is zero at kept pixels (their values are known), and at coarse pixels that hold one.
 */
typedef struct {
    ptrdiff_t h, w, n_u;
    uint8_t *unknown; /* (h * w) */
    ptrdiff_t *var;   /* (h * w) the pixel's unknown index, or -1 */
    ptrdiff_t *at;    /* (n_u) the unknown's index in the zero-padded (h + 2) x (w + 2) grid */
    double *diag;     /* (n_u) s_p */
    double
        *inv_diag; /* (n_u) 1 / s_p: the sweeps multiply (a division would lengthen their chain) */
    double *e;     /* (padded, n_ch) the correction; zero at kept pixels and the padding */
    double *rhs, *res; /* (n_u, n_ch) */
    ptrdiff_t off[8];  /* the neighbours' offsets in the padded grid */
    /* (n_u, 4) each unknown's bilinear stencil on the next level: the coarse unknowns' padded
     * indices (0, a padding cell, where the coarse pixel is kept) and their weights */
    ptrdiff_t *s_at;
    double *s_wt;
} level;

typedef struct {
    int n;
    ptrdiff_t n_ch;
    level lv[MAX_LEVELS];
} hierarchy;

static void level_free(level *l)
{
    free(l->unknown);
    free(l->var);
    free(l->at);
    free(l->diag);
    free(l->inv_diag);
    free(l->e);
    free(l->rhs);
    free(l->res);
    free(l->s_at);
    free(l->s_wt);
}

/* Fills the level's tables from l->unknown (allocated and set by the caller). */
static int level_init(level *l, ptrdiff_t n_ch)
{
    const ptrdiff_t h = l->h, w = l->w, n = h * w;
    int status = FC_OK;
    ptrdiff_t padded = (h + 2) * (w + 2), unk = 0;
    l->n_u = 0;
    for (ptrdiff_t p = 0; p < n; p++) {
        l->n_u += l->unknown[p] != 0;
    }
    unk = l->n_u * n_ch; /* at most the image's size times its channels: fits */
    padded *= n_ch;
    l->var = fc_malloc(n, sizeof(ptrdiff_t), &status);
    l->at = fc_malloc(l->n_u, sizeof(ptrdiff_t), &status);
    l->diag = fc_malloc(l->n_u, sizeof(double), &status);
    l->inv_diag = fc_malloc(l->n_u, sizeof(double), &status);
    l->e = fc_calloc(padded, sizeof(double), &status);
    l->rhs = fc_malloc(unk, sizeof(double), &status);
    l->res = fc_malloc(unk, sizeof(double), &status);
    if (status != FC_OK) {
        return status;
    }
    for (int j = 0; j < 8; j++) {
        l->off[j] = NB_DR[j] * (w + 2) + NB_DC[j];
    }
    ptrdiff_t u = 0;
    for (ptrdiff_t p = 0; p < n; p++) {
        l->var[p] = -1;
        if (!l->unknown[p]) {
            continue;
        }
        const ptrdiff_t r = p / w, c = p % w;
        const double s = neighbour_weight(r, c, h, w);
        l->var[p] = u;
        l->at[u] = (r + 1) * (w + 2) + c + 1;
        l->diag[u] = s;
        /* s > 0: an unknown of level 0 was reached from a neighbour, coarse levels are >= 4 x 4 */
        l->inv_diag[u] = 1.0 / s;
        u++;
    }
    return FC_OK;
}

static void hierarchy_free(hierarchy *H)
{
    for (int i = 0; i < H->n; i++) {
        level_free(&H->lv[i]);
    }
    H->n = 0;
}

/* Source index and weight of fine index i on a coarse axis of n (half-pixel centres). */
static void coarse_coord(ptrdiff_t i, ptrdiff_t n, ptrdiff_t *i0, ptrdiff_t *i1, double *t)
{
    double s = (i + 0.5) * 0.5 - 0.5;
    if (s < 0.0) {
        s = 0.0;
    }
    *i0 = (ptrdiff_t)s;
    if (*i0 > n - 1) {
        *i0 = n - 1;
    }
    *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1;
    *t = s - (double)*i0;
}

/* The bilinear stencil of fine pixel p on the coarse grid: four coarse pixels and weights. */
static void stencil(const level *f, const level *c, ptrdiff_t p, ptrdiff_t cp[4], double wt[4])
{
    ptrdiff_t r0, r1, c0, c1;
    double tr, tc;
    coarse_coord(p / f->w, c->h, &r0, &r1, &tr);
    coarse_coord(p % f->w, c->w, &c0, &c1, &tc);
    cp[0] = r0 * c->w + c0;
    cp[1] = r0 * c->w + c1;
    cp[2] = r1 * c->w + c0;
    cp[3] = r1 * c->w + c1;
    wt[0] = (1.0 - tr) * (1.0 - tc);
    wt[1] = (1.0 - tr) * tc;
    wt[2] = tr * (1.0 - tc);
    wt[3] = tr * tc;
}

/* The fine pixel of unknown u. */
static ptrdiff_t pixel_of(const level *l, ptrdiff_t u)
{
    return (l->at[u] / (l->w + 2) - 1) * l->w + l->at[u] % (l->w + 2) - 1;
}

/* The stencil tables of fine level f on coarse level c. */
static int stencil_tables(level *f, const level *c)
{
    int status = FC_OK;
    f->s_at = fc_malloc(f->n_u * 4, sizeof(ptrdiff_t), &status);
    f->s_wt = fc_malloc(f->n_u * 4, sizeof(double), &status);
    if (status != FC_OK) {
        return status;
    }
    for (ptrdiff_t u = 0; u < f->n_u; u++) {
        ptrdiff_t cp[4];
        double wt[4];
        stencil(f, c, pixel_of(f, u), cp, wt);
        for (int k = 0; k < 4; k++) {
            const ptrdiff_t v = c->var[cp[k]];
            f->s_at[u * 4 + k] = v >= 0 ? c->at[v] : 0;
            f->s_wt[u * 4 + k] = v >= 0 ? wt[k] : 0.0;
        }
    }
    return FC_OK;
}

/* The levels under the unknowns of g. */
static int hierarchy_build(hierarchy *H, const grid *g)
{
    int status = FC_OK;
    H->n = 0;
    H->n_ch = g->n_ch;
    level *l = &H->lv[0];
    memset(l, 0, sizeof(*l));
    l->h = g->h;
    l->w = g->w;
    if ((l->unknown = fc_malloc(g->h * g->w, 1, &status)) == NULL) {
        goto exit;
    }
    memcpy(l->unknown, g->unknown, (size_t)(g->h * g->w));
    H->n = 1;
    if ((status = level_init(l, g->n_ch)) != FC_OK) {
        goto exit;
    }
    while (H->n < MAX_LEVELS && l->h >= COARSE_SIDE && l->w >= COARSE_SIDE) {
        level *c = &H->lv[H->n];
        memset(c, 0, sizeof(*c));
        c->h = (l->h + 1) / 2;
        c->w = (l->w + 1) / 2;
        if ((c->unknown = fc_malloc(c->h * c->w, 1, &status)) == NULL) {
            H->n++; /* freed with the others */
            goto exit;
        }
        ptrdiff_t n_u = 0;
        for (ptrdiff_t R = 0; R < c->h; R++) {
            for (ptrdiff_t C = 0; C < c->w; C++) {
                int all = 1;
                for (ptrdiff_t r = 2 * R; r < 2 * R + 2 && r < l->h; r++) {
                    for (ptrdiff_t col = 2 * C; col < 2 * C + 2 && col < l->w; col++) {
                        all &= l->unknown[r * l->w + col] != 0;
                    }
                }
                c->unknown[R * c->w + C] = (uint8_t)all;
                n_u += all;
            }
        }
        H->n++;
        if (n_u == 0) {
            level_free(c);
            H->n--;
            break;
        }
        if ((status = level_init(c, g->n_ch)) != FC_OK ||
            (status = stencil_tables(l, c)) != FC_OK) {
            goto exit;
        }
        l = c;
    }
exit:
    return status;
}

/* res = rhs - A e on the fine level, then the coarse rhs = P^T res, gathered in the coarse
 * level's padded e (cleared first; the V-cycle on that level clears it again) and copied out. */
static inline void restrict_impl(level *f, level *c, ptrdiff_t n_ch)
{
    double *acc = c->e; /* kept cells hold zero always; the unknown ones are cleared here */
    for (ptrdiff_t v = 0; v < c->n_u; v++) {
        for (ptrdiff_t ch = 0; ch < n_ch; ch++) {
            acc[c->at[v] * n_ch + ch] = 0.0;
        }
    }
    for (ptrdiff_t u = 0; u < f->n_u; u++) {
        const double *e = f->e + f->at[u] * n_ch;
        const ptrdiff_t *sa = f->s_at + u * 4;
        const double *sw = f->s_wt + u * 4;
        for (ptrdiff_t ch = 0; ch < n_ch; ch++) {
            double ae = f->diag[u] * e[ch];
            for (int j = 0; j < 8; j++) {
                ae -= NB_W[j] * e[f->off[j] * n_ch + ch];
            }
            const double res = f->rhs[u * n_ch + ch] - ae;
            for (int k = 0; k < 4; k++) {
                acc[sa[k] * n_ch + ch] += sw[k] * res;
            }
        }
    }
    for (ptrdiff_t v = 0; v < c->n_u; v++) {
        for (ptrdiff_t ch = 0; ch < n_ch; ch++) {
            c->rhs[v * n_ch + ch] = acc[c->at[v] * n_ch + ch];
            acc[c->at[v] * n_ch + ch] = 0.0;
        }
    }
    for (ptrdiff_t ch = 0; ch < n_ch; ch++) {
        acc[ch] = 0.0; /* cell 0, where kept coarse pixels' shares went */
    }
}

/* e_fine += P e_coarse (zero at the coarse kept pixels). */
static inline void prolong_impl(const level *c, level *f, ptrdiff_t n_ch)
{
    for (ptrdiff_t u = 0; u < f->n_u; u++) {
        double *e = f->e + f->at[u] * n_ch;
        const ptrdiff_t *sa = f->s_at + u * 4;
        const double *sw = f->s_wt + u * 4;
        for (ptrdiff_t ch = 0; ch < n_ch; ch++) {
            double v = 0.0;
            for (int k = 0; k < 4; k++) {
                v += sw[k] * c->e[sa[k] * n_ch + ch];
            }
            e[ch] += v;
        }
    }
}

/* One Gauss-Seidel sweep on A e = rhs over the unknowns, forward or backward. */
static inline void smooth_impl(level *l, ptrdiff_t n_ch, int backward)
{
    for (ptrdiff_t k = 0; k < l->n_u; k++) {
        const ptrdiff_t u = backward ? l->n_u - 1 - k : k;
        double *e = l->e + l->at[u] * n_ch;
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            double v = l->rhs[u * n_ch + c];
            for (int j = 0; j < 8; j++) {
                v += NB_W[j] * e[l->off[j] * n_ch + c];
            }
            e[c] = v * l->inv_diag[u];
        }
    }
}

/* The same loops with the channel count a constant for the common 3 and 1: the compiler unrolls
 * the channel loop. */
static void smooth(level *l, ptrdiff_t n_ch, int backward)
{
    if (n_ch == 3) {
        smooth_impl(l, 3, backward);
    } else if (n_ch == 1) {
        smooth_impl(l, 1, backward);
    } else {
        smooth_impl(l, n_ch, backward);
    }
}

static void restrict_residual(level *f, level *c, ptrdiff_t n_ch)
{
    if (n_ch == 3) {
        restrict_impl(f, c, 3);
    } else if (n_ch == 1) {
        restrict_impl(f, c, 1);
    } else {
        restrict_impl(f, c, n_ch);
    }
}

static void prolong_correction(const level *c, level *f, ptrdiff_t n_ch)
{
    if (n_ch == 3) {
        prolong_impl(c, f, 3);
    } else if (n_ch == 1) {
        prolong_impl(c, f, 1);
    } else {
        prolong_impl(c, f, n_ch);
    }
}

/* e = M^-1 rhs on level i: a symmetric V-cycle (forward sweep, coarse correction, backward
 * sweep; symmetric sweeps on the coarsest level), so that M is symmetric. */
static void vcycle(hierarchy *H, int i)
{
    level *l = &H->lv[i];
    const ptrdiff_t n_ch = H->n_ch;
    for (ptrdiff_t u = 0; u < l->n_u; u++) {
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            l->e[l->at[u] * n_ch + c] = 0.0;
        }
    }
    if (i == H->n - 1) {
        for (int k = 0; k < COARSEST_SWEEPS; k++) {
            smooth(l, n_ch, 0);
        }
        for (int k = 0; k < COARSEST_SWEEPS; k++) {
            smooth(l, n_ch, 1);
        }
        return;
    }
    smooth(l, n_ch, 0);
    restrict_residual(l, &H->lv[i + 1], n_ch);
    vcycle(H, i + 1);
    prolong_correction(&H->lv[i + 1], l, n_ch);
    smooth(l, n_ch, 1);
}

/* ---------------------------------------------------------------- the solver */

/* Conjugate gradients on the unknowns of g, preconditioned by the V-cycle of H (plain when H is
 * NULL), from the current values of g->x, for at most max_iter iterations. Per channel: stops
 * at ||r|| <= tol ||b|| (or, for b = 0, tol times the first residual), or at a breakdown (only
 * for non-finite input). Returns FC_OK, or FC_ENOMEM; *converged says whether every channel
 * reached its tolerance. */
static int pcg(grid *g, hierarchy *H, const fc_impute_opts *o, int *converged)
{
    const ptrdiff_t h = g->h, w = g->w, n_ch = g->n_ch;
    int status = FC_OK;
    ptrdiff_t n_u = 0, padded = (h + 2) * (w + 2) * n_ch;
    for (ptrdiff_t p = 0; p < h * w; p++) {
        n_u += g->unknown[p] != 0;
    }
    ptrdiff_t *idx = fc_malloc(n_u, sizeof(ptrdiff_t), &status);
    ptrdiff_t *at = fc_malloc(n_u, sizeof(ptrdiff_t), &status);
    double *diag = fc_malloc(n_u, sizeof(double), &status);
    double *r = fc_malloc(n_u * n_ch, sizeof(double), &status);
    double *q = fc_malloc(n_u * n_ch, sizeof(double), &status);
    double *z = fc_malloc(n_u * n_ch, sizeof(double), &status);
    double *pg = fc_calloc(padded, sizeof(double), &status);
    double rz[64], thresh[64], rr[64], dot[64];
    uint8_t active[64];
    ptrdiff_t off[8];
    *converged = 0;
    if (status != FC_OK) {
        goto exit;
    }
    for (int j = 0; j < 8; j++) {
        off[j] = NB_DR[j] * (w + 2) + NB_DC[j];
    }
    /* the unknowns, their diagonals, r = b - A x and |b| */
    for (ptrdiff_t c = 0; c < n_ch; c++) {
        rr[c] = thresh[c] = 0.0;
    }
    ptrdiff_t u = 0;
    for (ptrdiff_t p = 0; p < h * w; p++) {
        if (!g->unknown[p]) {
            continue;
        }
        const ptrdiff_t row = p / w, col = p % w;
        const double s = neighbour_weight(row, col, h, w);
        idx[u] = p;
        at[u] = (row + 1) * (w + 2) + col + 1;
        diag[u] = s;
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            double b = 0.0, ax = s * g->x[p * n_ch + c];
            for (int j = 0; j < 8; j++) {
                if (inside(row, col, NB_DR[j], NB_DC[j], h, w)) {
                    const ptrdiff_t nb = p + NB_DR[j] * w + NB_DC[j];
                    if (g->unknown[nb]) {
                        ax -= NB_W[j] * g->x[nb * n_ch + c];
                    } else {
                        b += NB_W[j] * g->x[nb * n_ch + c];
                    }
                }
            }
            r[u * n_ch + c] = b - ax;
            rr[c] += (b - ax) * (b - ax);
            thresh[c] += b * b;
        }
        u++;
    }
    int n_active = 0;
    for (ptrdiff_t c = 0; c < n_ch; c++) {
        thresh[c] = o->tol * o->tol * (thresh[c] > 0.0 ? thresh[c] : rr[c]);
        active[c] = isfinite(rr[c]) && rr[c] > thresh[c];
        n_active += active[c];
    }
    /* z = M r; p = z */
    for (int it = 0; n_active > 0 && it <= o->max_iter; it++) {
        if (H != NULL) {
            memcpy(H->lv[0].rhs, r, (size_t)(n_u * n_ch) * sizeof(double));
            vcycle(H, 0);
            for (u = 0; u < n_u; u++) {
                memcpy(z + u * n_ch, H->lv[0].e + at[u] * n_ch, (size_t)n_ch * sizeof(double));
            }
        } else {
            memcpy(z, r, (size_t)(n_u * n_ch) * sizeof(double));
        }
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            dot[c] = 0.0;
        }
        for (u = 0; u < n_u * n_ch; u++) {
            dot[u % n_ch] += r[u] * z[u];
        }
        if (it == o->max_iter) {
            break; /* the budget is spent: *converged stays 0 */
        }
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            /* beta = (r.z)_new / (r.z)_old; the first direction is z itself */
            const double beta = it == 0 || !active[c] ? 0.0 : dot[c] / rz[c];
            rz[c] = dot[c];
            if (active[c] && !(isfinite(rz[c]) && rz[c] > 0.0)) {
                active[c] = 0; /* not a positive definite step: left to the caller */
            }
            for (u = 0; u < n_u; u++) {
                double *pc = pg + at[u] * n_ch + c;
                *pc = active[c] ? z[u * n_ch + c] + beta * *pc : 0.0;
            }
        }
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            dot[c] = 0.0;
        }
        for (u = 0; u < n_u; u++) {
            const double *pc = pg + at[u] * n_ch;
            for (ptrdiff_t c = 0; c < n_ch; c++) {
                double aq = diag[u] * pc[c];
                for (int j = 0; j < 8; j++) {
                    aq -= NB_W[j] * pc[off[j] * n_ch + c];
                }
                q[u * n_ch + c] = aq;
                dot[c] += pc[c] * aq;
            }
        }
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            const double alpha = active[c] && dot[c] > 0.0 ? rz[c] / dot[c] : 0.0;
            if (!(dot[c] > 0.0)) {
                active[c] = 0;
            }
            rr[c] = 0.0;
            for (u = 0; u < n_u; u++) {
                g->x[idx[u] * n_ch + c] += alpha * pg[at[u] * n_ch + c];
                r[u * n_ch + c] -= alpha * q[u * n_ch + c];
                rr[c] += r[u * n_ch + c] * r[u * n_ch + c];
            }
        }
        n_active = 0;
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            active[c] = active[c] && isfinite(rr[c]) && rr[c] > thresh[c];
            n_active += active[c];
        }
    }
    *converged = 1;
    for (ptrdiff_t c = 0; c < n_ch; c++) {
        *converged &= !(isfinite(rr[c]) && rr[c] > thresh[c]);
    }
exit:
    free(idx);
    free(at);
    free(diag);
    free(r);
    free(q);
    free(z);
    free(pg);
    return status;
}

/* Multigrid-preconditioned conjugate gradients; plain conjugate gradients from where they
 * stopped if they did not converge (the V-cycle with its rediscretised coarse levels is
 * symmetric but not always positive definite near ragged masks). */
static int solve(grid *g, const fc_impute_opts *o)
{
    hierarchy H;
    int converged = 0, status = hierarchy_build(&H, g);
    if (status == FC_OK && H.lv[0].n_u > 0) {
        status = pcg(g, &H, o, &converged);
        if (status == FC_OK && !converged) {
            status = pcg(g, NULL, o, &converged);
        }
    }
    hierarchy_free(&H);
    return status;
}

/* Removed pixels that no chain of removed neighbours links to a kept pixel have no boundary
 * value: they are set to 0 and taken out of the system (breadth-first from the kept pixels). */
static int settle_unreached(grid *g)
{
    const ptrdiff_t h = g->h, w = g->w, n = h * w;
    int status = FC_OK;
    ptrdiff_t head = 0, tail = 0;
    ptrdiff_t *queue = fc_malloc(n, sizeof(ptrdiff_t), &status);
    uint8_t *seen = fc_malloc(n, 1, &status);
    if (status != FC_OK) {
        goto exit;
    }
    for (ptrdiff_t p = 0; p < n; p++) {
        seen[p] = !g->unknown[p];
        if (seen[p]) {
            queue[tail++] = p;
        }
    }
    while (head < tail) {
        const ptrdiff_t p = queue[head++], r = p / w, c = p % w;
        for (int j = 0; j < 8; j++) {
            const ptrdiff_t nb = p + NB_DR[j] * w + NB_DC[j];
            if (inside(r, c, NB_DR[j], NB_DC[j], h, w) && !seen[nb]) {
                seen[nb] = 1;
                queue[tail++] = nb;
            }
        }
    }
    for (ptrdiff_t p = 0; p < n; p++) {
        if (!seen[p]) {
            g->unknown[p] = 0;
            for (ptrdiff_t c = 0; c < g->n_ch; c++) {
                g->x[p * g->n_ch + c] = 0.0;
            }
        }
    }
exit:
    free(queue);
    free(seen);
    return status;
}

/* ---------------------------------------------------------------- the kernel */

typedef struct {
    const float *images;
    const uint8_t *removed;
    ptrdiff_t n_masks, n_ch, h, w;
    const fc_impute_opts *opts;
    float *out;
} impute_job;

/* One (image, mask) pair: out row t. */
static int impute_one(const impute_job *job, ptrdiff_t t, grid *g)
{
    const ptrdiff_t n_pix = job->h * job->w, n_ch = job->n_ch, img = t / job->n_masks;
    const float *src = job->images + img * n_ch * n_pix;
    const uint8_t *rm = job->removed + t * n_pix;
    float *dst = job->out + t * n_ch * n_pix;
    memcpy(dst, src, (size_t)(n_ch * n_pix) * sizeof(float));
    for (ptrdiff_t p = 0; p < n_pix; p++) {
        g->unknown[p] = rm[p] != 0;
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            g->x[p * n_ch + c] = rm[p] ? 0.0 : (double)src[c * n_pix + p];
        }
    }
    int status = settle_unreached(g);
    if (status == FC_OK) {
        status = solve(g, job->opts);
    }
    if (status != FC_OK) {
        return status;
    }
    const double noise = job->opts->noise;
    for (ptrdiff_t p = 0; p < n_pix; p++) {
        if (!rm[p]) {
            continue;
        }
        for (ptrdiff_t c = 0; c < n_ch; c++) {
            double v = g->x[p * n_ch + c];
            if (noise > 0.0) {
                const uint64_t counter =
                    ((job->opts->first + (uint64_t)t) * (uint64_t)n_pix + (uint64_t)p) *
                        (uint64_t)n_ch +
                    (uint64_t)c;
                v += noise * fc_impute_normal(job->opts->seed, counter);
            }
            dst[c * n_pix + p] = (float)v;
        }
    }
    return FC_OK;
}

/* Items: (image, mask) pairs. Each worker owns one level-0 grid. */
static int impute_worker(void *arg, fc_queue *q)
{
    const impute_job *job = arg;
    const ptrdiff_t n_pix = job->h * job->w;
    grid g = {job->h, job->w, job->n_ch, NULL, NULL};
    int status = FC_OK;
    ptrdiff_t b, e;
    while (status == FC_OK && fc_queue_next(q, &b, &e)) {
        if (g.x == NULL && ((g.x = fc_malloc(n_pix * job->n_ch, sizeof(double), &status)) == NULL ||
                            (g.unknown = fc_malloc(n_pix, 1, &status)) == NULL)) {
            goto exit;
        }
        for (ptrdiff_t t = b; t < e && status == FC_OK; t++) {
            status = impute_one(job, t, &g);
        }
    }
exit:
    free(g.x);
    free(g.unknown);
    return status;
}

int fc_road_impute(const float *images, const uint8_t *removed, ptrdiff_t n_img, ptrdiff_t n_masks,
                   ptrdiff_t n_ch, ptrdiff_t h, ptrdiff_t w, const fc_impute_opts *opts, float *out)
{
    ptrdiff_t items = n_img, cells = h, work = 0;
    if (n_img <= 0 || n_masks <= 0 || n_ch <= 0 || h <= 0 || w <= 0) {
        return FC_OK;
    }
    /* cells: the padded grid of doubles, the largest scratch; work: a solve costs many passes */
    if (n_ch > 64 || !fc_mul_ok(&items, n_masks) || !fc_mul_ok(&cells, w + 2) ||
        !fc_mul_ok(&cells, n_ch + 2) || !fc_mul_ok(&cells, (ptrdiff_t)sizeof(double) * 4)) {
        return FC_EOVERFLOW;
    }
    work = items;
    if (!fc_mul_ok(&work, h * w) || !fc_mul_ok(&work, 64)) {
        work = PTRDIFF_MAX;
    }
    impute_job job = {images, removed, n_masks, n_ch, h, w, opts, out};
    return fc_parallel(impute_worker, &job, items, work, opts->n_threads);
}
