/* Embedding lookup: one block per token, threads over columns, f16 rows converted to f32. */
#include "kernels/cuda/embed.h"

#include <cuda_fp16.h>

#include "kernels/cuda/check.cuh"

template <typename T> static __device__ float to_f32(T v);
template <> __device__ float to_f32<float>(float v) { return v; }
template <> __device__ float to_f32<__half>(__half v) { return __half2float(v); }

template <typename T>
static __global__ void embed_kernel(const T *table, int rows, int cols, const int32_t *ids,
                                    float *out, int out_stride)
{
    int t = blockIdx.x, id = ids[t];
    float *o = out + (size_t)t * out_stride;
    bool ok = id >= 0 && id < rows;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        o[c] = ok ? to_f32<T>(table[(size_t)id * cols + c]) : 0.0f;
    }
}

extern "C" em_status kern_cuda_embed(kern_cuda_ctx *c, const kern_weight *table,
                                     const int32_t *ids, int n, float *out, int out_stride)
{
    if (n < 0 || table->cols <= 0 || out_stride < table->cols) return EM_EINVAL;
    if (n == 0) return EM_OK;
    cudaStream_t s = (cudaStream_t)c->stream;
    if (table->dtype == KERN_F32) {
        embed_kernel<float><<<n, 256, 0, s>>>((const float *)table->data, table->rows, table->cols,
                                              ids, out, out_stride);
    } else if (table->dtype == KERN_F16) {
        embed_kernel<__half><<<n, 256, 0, s>>>((const __half *)table->data, table->rows,
                                               table->cols, ids, out, out_stride);
    } else {
        return EM_EUNSUPPORTED;
    }
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
