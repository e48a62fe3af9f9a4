/* Softmax, argmax and inverse-CDF sampling: one 256-thread block per row (vocab-sized rows). */
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <math.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/sample.h"

#define SAMPLE_BLOCK 256

/* Own functors: CCCL 3 (CUDA 13) dropped cub::Max/cub::Min. */
struct max_op {
    template <typename T> __device__ T operator()(const T &a, const T &b) const
    {
        return a > b ? a : b;
    }
};
struct min_op {
    template <typename T> __device__ T operator()(const T &a, const T &b) const
    {
        return a < b ? a : b;
    }
};

static __global__ void softmax_kernel(const float *logits, int dim, float inv_temp, float *probs)
{
    typedef cub::BlockReduce<float, SAMPLE_BLOCK> reduce_t;
    __shared__ typename reduce_t::TempStorage tmp;
    __shared__ float s_max, s_sum;
    const float *x = logits + (size_t)blockIdx.x * dim;
    float *p = probs + (size_t)blockIdx.x * dim;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        mx = fmaxf(mx, x[i] * inv_temp);
    float m = reduce_t(tmp).Reduce(mx, max_op());
    if (threadIdx.x == 0)
        s_max = m;
    __syncthreads();
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        sum += expf(x[i] * inv_temp - s_max);
    float tot = reduce_t(tmp).Sum(sum);
    if (threadIdx.x == 0)
        s_sum = tot;
    __syncthreads();
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        p[i] = expf(x[i] * inv_temp - s_max) / s_sum;
}

struct arg_pair {
    float v;
    int i;
};

struct arg_max_op {
    __device__ arg_pair operator()(const arg_pair &a, const arg_pair &b) const
    {
        if (a.v > b.v || (a.v == b.v && a.i < b.i))
            return a;
        return b;
    }
};

static __global__ void argmax_kernel(const float *logits, int dim, int32_t *ids)
{
    typedef cub::BlockReduce<arg_pair, SAMPLE_BLOCK> reduce_t;
    __shared__ typename reduce_t::TempStorage tmp;
    const float *x = logits + (size_t)blockIdx.x * dim;
    arg_pair best = {-INFINITY, 0x7fffffff};
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = x[i];
        if (v > best.v || (v == best.v && i < best.i))
            best = arg_pair{v, i}; /* NaN never wins */
    }
    arg_pair r = reduce_t(tmp).Reduce(best, arg_max_op());
    if (threadIdx.x == 0)
        ids[blockIdx.x] = r.i == 0x7fffffff ? 0 : r.i;
}

static __global__ void sample_kernel(const float *probs, int dim, const float *u, int32_t *ids)
{
    typedef cub::BlockScan<float, SAMPLE_BLOCK> scan_t;
    typedef cub::BlockReduce<int, SAMPLE_BLOCK> reduce_t;
    __shared__ typename scan_t::TempStorage tmp;
    __shared__ typename reduce_t::TempStorage tmp2;
    __shared__ float s_run;
    __shared__ int s_found, s_last;
    const float *p = probs + (size_t)blockIdx.x * dim;
    float target = u[blockIdx.x];
    if (threadIdx.x == 0) {
        s_run = 0.0f;
        s_found = 0x7fffffff;
        s_last = 0;
    }
    __syncthreads();
    for (int base = 0; base < dim; base += SAMPLE_BLOCK) {
        int i = base + threadIdx.x;
        float v = i < dim ? p[i] : 0.0f, incl, total;
        scan_t(tmp).InclusiveSum(v, incl, total);
        int hit = (i < dim && s_run + incl > target) ? i : 0x7fffffff;
        int last = (i < dim && v > 0.0f) ? i : -1;
        int first = reduce_t(tmp2).Reduce(hit, min_op());
        __syncthreads();
        int lastnz = reduce_t(tmp2).Reduce(last, max_op());
        if (threadIdx.x == 0) {
            if (first < s_found)
                s_found = first;
            if (lastnz > s_last)
                s_last = lastnz;
            s_run += total;
        }
        __syncthreads();
        if (s_found != 0x7fffffff)
            break;
    }
    if (threadIdx.x == 0)
        ids[blockIdx.x] = s_found != 0x7fffffff ? s_found : s_last;
}

extern "C" em_status kern_cuda_softmax(kern_cuda_ctx *c, const float *logits, int n, int dim,
                                       float temp, float *probs)
{
    if (n < 0 || dim <= 0 || !(temp > 0.0f))
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    softmax_kernel<<<n, SAMPLE_BLOCK, 0, (cudaStream_t)c->stream>>>(logits, dim, 1.0f / temp,
                                                                    probs);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}

extern "C" em_status kern_cuda_argmax(kern_cuda_ctx *c, const float *logits, int n, int dim,
                                      int32_t *ids)
{
    if (n < 0 || dim <= 0)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    argmax_kernel<<<n, SAMPLE_BLOCK, 0, (cudaStream_t)c->stream>>>(logits, dim, ids);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}

extern "C" em_status kern_cuda_sample(kern_cuda_ctx *c, const float *probs, int n, int dim,
                                      const float *u, int32_t *ids)
{
    if (n < 0 || dim <= 0)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    sample_kernel<<<n, SAMPLE_BLOCK, 0, (cudaStream_t)c->stream>>>(probs, dim, u, ids);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
