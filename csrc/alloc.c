#include "alloc.h"

#include <stdlib.h>

static void *checked_alloc(ptrdiff_t count, size_t size, int zero, int *status)
{
    ptrdiff_t bytes = count;
    if (size > (size_t)PTRDIFF_MAX || !fc_mul_ok(&bytes, (ptrdiff_t)size)) {
        *status = FC_EOVERFLOW;
        return NULL;
    }
    const size_t n = bytes > 0 ? (size_t)bytes : 1;
    void *p = zero ? calloc(1, n) : malloc(n);
    if (p == NULL) {
        *status = FC_ENOMEM;
    }
    return p;
}

void *fc_malloc(ptrdiff_t count, size_t size, int *status)
{
    return checked_alloc(count, size, 0, status);
}

void *fc_calloc(ptrdiff_t count, size_t size, int *status)
{
    return checked_alloc(count, size, 1, status);
}
