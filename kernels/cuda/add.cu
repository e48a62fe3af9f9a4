/* Residual add: one thread per element. */
#include "kernels/cuda/add.h"
#include "kernels/cuda/check.cuh"

static __global__ void add_kernel(float *x, const float *y, long long n)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += y[i];
}

extern "C" em_status kern_cuda_add(kern_cuda_ctx *c, float *x, const float *y, long long n)
{
    if (n < 0)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    add_kernel<<<kern_cuda__blocks(n, 256), 256, 0, (cudaStream_t)c->stream>>>(x, y, n);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
