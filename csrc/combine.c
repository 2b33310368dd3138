#include "combine.h"

#include <stdlib.h>

#include "alloc.h"

/* G accumulators of P doubles: each activation row is loaded once and used by every weight set. */
static double *accumulators(ptrdiff_t G, ptrdiff_t P, int *status)
{
    ptrdiff_t n = G;
    if (!fc_mul_ok(&n, P)) {
        *status = FC_EOVERFLOW;
        return NULL;
    }
    return fc_malloc(n, sizeof(double), status);
}

static void store(const double *acc, ptrdiff_t n, int relu, float *out)
{
    if (relu) {
        for (ptrdiff_t i = 0; i < n; i++) {
            double v = acc[i];
            out[i] = (float)(v < 0.0 ? 0.0 : v);
        }
    } else {
        for (ptrdiff_t i = 0; i < n; i++) {
            out[i] = (float)acc[i];
        }
    }
}

int fc_combine(const float *A, const float *W, ptrdiff_t N, ptrdiff_t K, ptrdiff_t G, ptrdiff_t P,
               int relu, float *out)
{
    int status = FC_OK;
    double *acc = NULL;
    if (N == 0 || G == 0 || P == 0) {
        goto exit;
    }
    acc = accumulators(G, P, &status);
    if (acc == NULL) {
        goto exit;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        const float *a_n = A + n * K * P;
        const float *w_n = W + n * G * K;
        for (ptrdiff_t i = 0; i < G * P; i++) {
            acc[i] = 0.0;
        }
        /* four channels per sweep: a quarter of the accumulator loads and stores */
        ptrdiff_t k = 0;
        for (; k + 4 <= K; k += 4) {
            const float *a0 = a_n + k * P, *a1 = a0 + P, *a2 = a1 + P, *a3 = a2 + P;
            for (ptrdiff_t g = 0; g < G; g++) {
                const float *w = w_n + g * K + k;
                const double w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
                double *s = acc + g * P;
                for (ptrdiff_t p = 0; p < P; p++) {
                    s[p] += (w0 * (double)a0[p] + w1 * (double)a1[p]) +
                            (w2 * (double)a2[p] + w3 * (double)a3[p]);
                }
            }
        }
        for (; k < K; k++) {
            const float *a = a_n + k * P;
            for (ptrdiff_t g = 0; g < G; g++) {
                const double w = (double)w_n[g * K + k];
                double *s = acc + g * P;
                for (ptrdiff_t p = 0; p < P; p++) {
                    s[p] += w * (double)a[p];
                }
            }
        }
        store(acc, G * P, relu, out + n * G * P);
    }
exit:
    free(acc);
    return status;
}

int fc_combine_pixelwise(const float *A, const float *Pw, ptrdiff_t N, ptrdiff_t K, ptrdiff_t G,
                         ptrdiff_t P, int relu, float *out)
{
    int status = FC_OK;
    double *acc = NULL;
    if (N == 0 || G == 0 || P == 0) {
        goto exit;
    }
    acc = accumulators(1, P, &status);
    if (acc == NULL) {
        goto exit;
    }
    for (ptrdiff_t n = 0; n < N; n++) {
        for (ptrdiff_t g = 0; g < G; g++) {
            const float *pw = Pw + (n * G + g) * K * P;
            for (ptrdiff_t p = 0; p < P; p++) {
                acc[p] = 0.0;
            }
            for (ptrdiff_t k = 0; k < K; k++) {
                const float *a = A + (n * K + k) * P;
                const float *q = pw + k * P;
                for (ptrdiff_t p = 0; p < P; p++) {
                    const double w = (double)q[p];
                    /* `w < 0 ? 0 : w` rather than fmax: a NaN weight must stay NaN. */
                    acc[p] += (w < 0.0 ? 0.0 : w) * (double)a[p];
                }
            }
            store(acc, P, relu, out + (n * G + g) * P);
        }
    }
exit:
    free(acc);
    return status;
}
