/* The one allocator of the kernels: every malloc / calloc of csrc/ goes through it, so every
 * byte count is checked for overflow before the allocation is tried.
 *
 * fc_malloc(count, size, &status) allocates count * size bytes (count >= 0); fc_calloc zeroes
 * them. A byte count above PTRDIFF_MAX (or a negative count) returns NULL with status set to
 * FC_EOVERFLOW, a failed allocation NULL with FC_ENOMEM; on success status is left as it is, so
 * that a chain of allocations can share one status. A zero count allocates one byte: NULL always
 * means failure. Release with free(). No Python: safe with the GIL released.
 */
#ifndef FINERCAM_ALLOC_H
#define FINERCAM_ALLOC_H

#include <stddef.h>

#include "status.h"

void *fc_malloc(ptrdiff_t count, size_t size, int *status);
void *fc_calloc(ptrdiff_t count, size_t size, int *status);

#endif
