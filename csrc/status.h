/* Status codes shared by every kernel family: kernels never touch Python, so they report failure
 * by code and the binding turns the code into an exception once the GIL is held again. */
#ifndef FINERCAM_STATUS_H
#define FINERCAM_STATUS_H

enum fc_status {
    FC_OK = 0,
    FC_ENOMEM = -1,   /* a scratch allocation failed */
    FC_EOVERFLOW = -2 /* a size product does not fit in ptrdiff_t / size_t */
};

#include <stddef.h>
#include <stdint.h>

/* *acc *= v, returning 0 when the product would exceed PTRDIFF_MAX (all factors are >= 0). */
static inline int fc_mul_ok(ptrdiff_t *acc, ptrdiff_t v)
{
    if (*acc < 0 || v < 0) {
        return 0;
    }
    if (v != 0 && *acc > PTRDIFF_MAX / v) {
        return 0;
    }
    *acc *= v;
    return 1;
}

#endif
