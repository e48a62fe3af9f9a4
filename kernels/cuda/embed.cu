/* Embedding lookup: one block per token, threads over columns, f16 rows converted to f32,
 * Q8_0 / Q4_0 / Q4_1 rows dequantised (quant.cuh, the values of kern_embed_row). */
#include <cuda_fp16.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/embed.h"
#include "kernels/cuda/quant.cuh"

template <typename T> static __device__ float to_f32(T v);
template <> __device__ float to_f32<float>(float v)
{
    return v;
}
template <> __device__ float to_f32<__half>(__half v)
{
    return __half2float(v);
}

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

template <kern_dtype T>
static __global__ void embed_q_kernel(const uint8_t *table, int rows, int cols, const int32_t *ids,
                                      float *out, int out_stride)
{
    int t = blockIdx.x, id = ids[t];
    float *o = out + (size_t)t * out_stride;
    bool ok = id >= 0 && id < rows;
    const int bb = kq_block_bytes(T);
    const uint8_t *row = table + (size_t)(ok ? id : 0) * (size_t)(cols / 32) * bb;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        o[c] = ok ? kq_dequant(T, row + (size_t)(c / 32) * bb, c % 32) : 0.0f;
    }
}

extern "C" em_status kern_cuda_embed(kern_cuda_ctx *c, const kern_weight *table, const int32_t *ids,
                                     int n, float *out, int out_stride)
{
    kern_dtype dt = table->dtype;
    int quant = dt == KERN_Q8_0 || dt == KERN_Q4_0 || dt == KERN_Q4_1;
    if (n < 0 || table->cols <= 0 || out_stride < table->cols)
        return EM_EINVAL;
    if (dt != KERN_F32 && dt != KERN_F16 && !quant)
        return EM_EUNSUPPORTED;
    if (quant && table->cols % 32)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    cudaStream_t s = (cudaStream_t)c->stream;
    const uint8_t *tb = (const uint8_t *)table->data;
    int rows = table->rows, cols = table->cols;
    if (dt == KERN_F32) {
        embed_kernel<float><<<n, 256, 0, s>>>((const float *)tb, rows, cols, ids, out, out_stride);
    } else if (dt == KERN_F16) {
        embed_kernel<__half>
            <<<n, 256, 0, s>>>((const __half *)tb, rows, cols, ids, out, out_stride);
    } else if (dt == KERN_Q8_0) {
        embed_q_kernel<KERN_Q8_0><<<n, 256, 0, s>>>(tb, rows, cols, ids, out, out_stride);
    } else if (dt == KERN_Q4_0) {
        embed_q_kernel<KERN_Q4_0><<<n, 256, 0, s>>>(tb, rows, cols, ids, out, out_stride);
    } else {
        embed_q_kernel<KERN_Q4_1><<<n, 256, 0, s>>>(tb, rows, cols, ids, out, out_stride);
    }
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
