/* SwiGLU: elementwise, one thread per element (memory bound; expf at full precision). */
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/swiglu.h"

static __global__ void swiglu_kernel(const float *gate, const float *up, long long n, float *out)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
}

extern "C" em_status kern_cuda_swiglu(kern_cuda_ctx *c, const float *gate, const float *up, int n,
                                      int dim, float *out)
{
    if (n < 0 || dim < 0)
        return EM_EINVAL;
    long long total = (long long)n * dim;
    if (total == 0)
        return EM_OK;
    swiglu_kernel<<<kern_cuda__blocks(total, 256), 256, 0, (cudaStream_t)c->stream>>>(gate, up,
                                                                                      total, out);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
