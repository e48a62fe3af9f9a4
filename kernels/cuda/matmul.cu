/* Matrix products: GEMV (warp per output row, up to 8 tokens at once, f32 accumulation) for
 * decode, cuBLAS SGEMM for batches (prefill). cuBLAS runs in default math mode (no TF32). */
#include "kernels/cuda/matmul.h"

#include <cuda_fp16.h>

#include "kernels/cuda/check.cuh"

template <typename T> static __device__ __forceinline__ float ld_f32(const T *p, size_t i);
template <> __device__ __forceinline__ float ld_f32<float>(const float *p, size_t i)
{
    return __ldg(p + i);
}
template <> __device__ __forceinline__ float ld_f32<__half>(const __half *p, size_t i)
{
    return __half2float(p[i]);
}

/* grid.x = ceil(rows / 8) blocks of 8 warps; warp = one output row for all nt (<= 8) tokens. */
template <typename T>
static __global__ void gemv_kernel(const T *w, int rows, int cols, const float *x, int xs, int nt,
                                   float *y, int ys)
{
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * 8 + warp;
    if (r >= rows) return;
    const T *wr = w + (size_t)r * cols;
    float acc[KERN_CUDA_GEMV_MAX_N];
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) acc[t] = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float wv = ld_f32<T>(wr, c);
#pragma unroll
        for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
            if (t < nt) acc[t] += wv * __ldg(x + (size_t)t * xs + c);
        }
    }
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
        if (t >= nt) break;
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)t * ys + r] = v;
    }
}

static __global__ void widen_kernel(const __half *src, long long n, float *dst)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __half2float(src[i]);
}

static em_status gemm(kern_cuda_ctx *c, const float *w, int rows, int cols, const float *x, int xs,
                      int n, float *y, int ys)
{
    const float one = 1.0f, zero = 0.0f;
    /* Column-major view: Y(rows x n, ld ys) = W^T(rows x cols) . X(cols x n, ld xs). */
    KERN_CUDA_CHECK(cublasSgemm((cublasHandle_t)c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols,
                                &one, w, cols, x, xs, &zero, y, ys));
    return EM_OK;
}

extern "C" em_status kern_cuda_matmul(kern_cuda_ctx *c, const kern_weight *w, const float *x,
                                      int x_stride, int n, float *y, int y_stride)
{
    if (n < 0 || w->rows <= 0 || w->cols <= 0 || x_stride < w->cols || y_stride < w->rows) {
        return EM_EINVAL;
    }
    if (w->dtype != KERN_F32 && w->dtype != KERN_F16) return EM_EUNSUPPORTED;
    if (n == 0) return EM_OK;
    cudaStream_t s = (cudaStream_t)c->stream;
    if (n <= KERN_CUDA_GEMV_MAX_N) {
        unsigned nb = kern_cuda__blocks(w->rows, 8);
        if (w->dtype == KERN_F32) {
            gemv_kernel<float><<<nb, 256, 0, s>>>((const float *)w->data, w->rows, w->cols, x,
                                                  x_stride, n, y, y_stride);
        } else {
            gemv_kernel<__half><<<nb, 256, 0, s>>>((const __half *)w->data, w->rows, w->cols, x,
                                                   x_stride, n, y, y_stride);
        }
        KERN_CUDA_CHECK_LAUNCH();
        return EM_OK;
    }
    const float *wf = (const float *)w->data;
    if (w->dtype == KERN_F16) {
        long long cnt = (long long)w->rows * w->cols;
        void *buf;
        KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_MM, (size_t)cnt * sizeof(float), &buf));
        widen_kernel<<<kern_cuda__blocks(cnt, 256), 256, 0, s>>>((const __half *)w->data, cnt,
                                                                 (float *)buf);
        KERN_CUDA_CHECK_LAUNCH();
        wf = (const float *)buf;
    }
    return gemm(c, wf, w->rows, w->cols, x, x_stride, n, y, y_stride);
}
