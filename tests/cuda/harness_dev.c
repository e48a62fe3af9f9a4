/* Device-copy helpers of the CUDA tests (see harness.h); separate from harness.c so that the
 * CPU-only reference test links without CUDA. */
#include <stdlib.h>

#include "tests/cuda/harness.h"

void *th_dev(kern_cuda_ctx *c, const void *host, size_t bytes)
{
    void *d = NULL;
    if (kern_cuda_alloc(bytes, &d) != EM_OK)
        return NULL;
    if (bytes && kern_cuda_h2d(c, d, host, bytes) != EM_OK) {
        kern_cuda_free(d);
        return NULL;
    }
    return d;
}

void *th_dev_zero(size_t bytes)
{
    void *d = NULL;
    return kern_cuda_alloc(bytes, &d) == EM_OK ? d : NULL;
}

void *th_host(kern_cuda_ctx *c, const void *dev, size_t bytes)
{
    void *h = malloc(bytes ? bytes : 1);
    if (h && bytes && kern_cuda_d2h(c, h, dev, bytes) != EM_OK) {
        free(h);
        return NULL;
    }
    return h;
}
