/* Matrix products (quantized weights: matmul_q.cu): GEMV (warp per output row, up to 8 tokens at
 * once, f32 accumulation; 16-byte vector loads when rows are aligned) for decode, cuBLAS SGEMM for
 * batches (prefill). cuBLAS runs in default math mode (no TF32). */
#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/matmul.h"
#include "kernels/quant.h"

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
    if (r >= rows)
        return;
    const T *wr = w + (size_t)r * cols;
    float acc[KERN_CUDA_GEMV_MAX_N];
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++)
        acc[t] = 0.0f;
    for (int c = lane; c < cols; c += 32) {
        float wv = ld_f32<T>(wr, c);
#pragma unroll
        for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
            if (t < nt)
                acc[t] += wv * __ldg(x + (size_t)t * xs + c);
        }
    }
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
        if (t >= nt)
            break;
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0)
            y[(size_t)t * ys + r] = v;
    }
}

/* Vectorised GEMV: each lane loads 16 bytes of the weight row (8 halves or 4 floats) and the
 * matching x values as float4; needs cols % 8 == 0 and 16-byte aligned rows of W and X. */
template <typename T>
static __global__ void gemv_vec_kernel(const T *w, int rows, int cols, const float *x, int xs,
                                       int nt, float *y, int ys)
{
    constexpr int VEC = 16 / sizeof(T);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * 8 + warp;
    if (r >= rows)
        return;
    const T *wr = w + (size_t)r * cols;
    float acc[KERN_CUDA_GEMV_MAX_N];
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++)
        acc[t] = 0.0f;
    for (int c = lane * VEC; c < cols; c += 32 * VEC) {
        float wv[VEC];
        uint4 raw = __ldg((const uint4 *)(wr + c));
        if (sizeof(T) == 2) {
            const __half2 *h2 = (const __half2 *)&raw;
#pragma unroll
            for (int e = 0; e < VEC / 2; e++) {
                float2 f = __half22float2(h2[e]);
                wv[2 * e] = f.x, wv[2 * e + 1] = f.y;
            }
        } else {
            const float *f = (const float *)&raw;
#pragma unroll
            for (int e = 0; e < VEC; e++)
                wv[e] = f[e];
        }
#pragma unroll
        for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
            if (t < nt) {
                const float4 *xp = (const float4 *)(x + (size_t)t * xs + c);
#pragma unroll
                for (int e = 0; e < VEC / 4; e++) {
                    float4 xv = __ldg(xp + e);
                    acc[t] += wv[4 * e] * xv.x + wv[4 * e + 1] * xv.y + wv[4 * e + 2] * xv.z +
                              wv[4 * e + 3] * xv.w;
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < KERN_CUDA_GEMV_MAX_N; t++) {
        if (t >= nt)
            break;
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0)
            y[(size_t)t * ys + r] = v;
    }
}

static bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static __global__ void widen_kernel(const __half *src, long long n, float *dst)
{
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __half2float(src[i]);
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
    if (kern_dtype_is_quant(w->dtype))
        return kern_cuda__matmul_q(c, w, x, x_stride, n, y, y_stride);
    if (w->dtype != KERN_F32 && w->dtype != KERN_F16)
        return EM_EUNSUPPORTED;
    if (n == 0)
        return EM_OK;
    cudaStream_t s = (cudaStream_t)c->stream;
    if (n <= KERN_CUDA_GEMV_MAX_N) {
        unsigned nb = kern_cuda__blocks(w->rows, 8);
        bool vec = w->cols % 8 == 0 && x_stride % 4 == 0 && aligned16(w->data) && aligned16(x);
        if (vec && w->dtype == KERN_F32) {
            gemv_vec_kernel<float><<<nb, 256, 0, s>>>((const float *)w->data, w->rows, w->cols, x,
                                                      x_stride, n, y, y_stride);
        } else if (vec) {
            gemv_vec_kernel<__half><<<nb, 256, 0, s>>>((const __half *)w->data, w->rows, w->cols, x,
                                                       x_stride, n, y, y_stride);
        } else if (w->dtype == KERN_F32) {
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
