/* RMSNorm: one block per row, block-wide sum of squares, then scale. */
#include <cub/block/block_reduce.cuh>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/rmsnorm.h"

static __global__ void rmsnorm_kernel(const float *x, const float *g, int dim, float eps, float *y)
{
    typedef cub::BlockReduce<float, 256> reduce_t;
    __shared__ typename reduce_t::TempStorage tmp;
    __shared__ float s_inv;
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        ss += xr[i] * xr[i];
    float tot = reduce_t(tmp).Sum(ss);
    if (threadIdx.x == 0)
        s_inv = 1.0f / sqrtf(tot / (float)dim + eps);
    __syncthreads();
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = xr[i] * s_inv * g[i];
}

extern "C" em_status kern_cuda_rmsnorm(kern_cuda_ctx *c, const float *x, const float *g, int n,
                                       int dim, float eps, float *y)
{
    if (n < 0 || dim <= 0)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    rmsnorm_kernel<<<n, 256, 0, (cudaStream_t)c->stream>>>(x, g, dim, eps, y);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
