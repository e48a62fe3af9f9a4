/* Interleaved-pair RoPE: one thread per (token, head, pair). Frequencies use powf, sincosf
 * with full-precision math (no --use_fast_math) so long positions stay close to the CPU. */
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/rope.h"

static __global__ void rope_kernel(float *x, int n_tok, int n_heads, int hd, int stride,
                                   const int32_t *pos, float base, int rope_dim)
{
    int half = rope_dim / 2;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n_tok * n_heads * half;
    if (idx >= total)
        return;
    int i = (int)(idx % half);
    int h = (int)((idx / half) % n_heads);
    int t = (int)(idx / ((long long)half * n_heads));
    float *v = x + (size_t)t * stride + (size_t)h * hd;
    float freq = powf(base, -2.0f * (float)i / (float)rope_dim);
    float th = (float)pos[t] * freq, s, co;
    sincosf(th, &s, &co);
    float a = v[2 * i], b = v[2 * i + 1];
    v[2 * i] = a * co - b * s;
    v[2 * i + 1] = a * s + b * co;
}

extern "C" em_status kern_cuda_rope(kern_cuda_ctx *c, float *x, int n_tok, int n_heads, int hd,
                                    int stride, const int32_t *pos, float base, int rope_dim)
{
    if (n_tok < 0 || n_heads <= 0 || rope_dim < 0 || rope_dim > hd || (rope_dim & 1)) {
        return EM_EINVAL;
    }
    long long total = (long long)n_tok * n_heads * (rope_dim / 2);
    if (total == 0)
        return EM_OK;
    rope_kernel<<<kern_cuda__blocks(total, 256), 256, 0, (cudaStream_t)c->stream>>>(
        x, n_tok, n_heads, hd, stride, pos, base, rope_dim);
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
