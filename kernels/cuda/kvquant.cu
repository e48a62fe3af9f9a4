/* K/V quantization on the GPU: one thread per (row, group); the same correctly rounded steps
 * as kvquant_ref.c (explicit __fsub_rn/__fmul_rn, no contraction), hence identical codes. */
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kvquant.h"

template <int FMT>
static __global__ void quantize_kernel(const float *x, int n, int hd, int xs, uint8_t *codes,
                                       float *sm, int out_rows)
{
    int qg = hd < 32 ? hd : 32, ng = hd / qg, qmax = FMT == KERN_KV_Q8 ? 255 : 15;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * ng)
        return;
    int i = (int)(idx / ng), gi = (int)(idx % ng);
    const float *xg = x + (size_t)i * xs + gi * qg;
    float mn = xg[0], mx = xg[0];
    for (int d = 1; d < qg; d++) {
        mn = xg[d] < mn ? xg[d] : mn;
        mx = xg[d] > mx ? xg[d] : mx;
    }
    float scale = __fdiv_rn(__fsub_rn(mx, mn), (float)qmax);
    float inv = scale > 0.0f ? __fdiv_rn(1.0f, scale) : 0.0f;
    size_t orow = (size_t)i * out_rows, sidx = orow * ng + gi;
    sm[sidx * 2] = scale;
    sm[sidx * 2 + 1] = mn;
    size_t rb = FMT == KERN_KV_Q8 ? (size_t)hd : (size_t)hd / 2;
    uint8_t *cr = codes + orow * rb;
    for (int d = 0; d < qg; d += (FMT == KERN_KV_Q8 ? 1 : 2)) {
        int q0 = (int)rintf(__fmul_rn(__fsub_rn(xg[d], mn), inv));
        q0 = q0 < 0 ? 0 : q0 > qmax ? qmax : q0;
        int ch = gi * qg + d;
        if (FMT == KERN_KV_Q8) {
            cr[ch] = (uint8_t)q0;
        } else { /* qg is even, so channels d and d+1 share one byte of this group */
            int q1 = (int)rintf(__fmul_rn(__fsub_rn(xg[d + 1], mn), inv));
            q1 = q1 < 0 ? 0 : q1 > qmax ? qmax : q1;
            cr[ch >> 1] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

extern "C" em_status kern_cuda_kv_quantize(kern_cuda_ctx *c, kern_kv_fmt f, const float *x, int n,
                                           int hd, int x_stride, uint8_t *codes, float *sm)
{
    return kern_cuda_kv_quantize_strided(c, f, x, n, hd, x_stride, codes, sm, 1);
}

extern "C" em_status kern_cuda_kv_quantize_strided(kern_cuda_ctx *c, kern_kv_fmt f, const float *x,
                                                   int n, int hd, int x_stride, uint8_t *codes,
                                                   float *sm, int out_rows)
{
    em_status st = kern_kv_check(f, hd);
    if (st != EM_OK)
        return st;
    if (f == KERN_KV_F32 || n < 0 || x_stride < hd || out_rows < 1)
        return EM_EINVAL;
    long long total = (long long)n * kern_kv_n_groups(hd);
    if (total == 0)
        return EM_OK;
    cudaStream_t s = (cudaStream_t)c->stream;
    unsigned nb = kern_cuda__blocks(total, 128);
    if (f == KERN_KV_Q8) {
        quantize_kernel<KERN_KV_Q8><<<nb, 128, 0, s>>>(x, n, hd, x_stride, codes, sm, out_rows);
    } else {
        quantize_kernel<KERN_KV_Q4><<<nb, 128, 0, s>>>(x, n, hd, x_stride, codes, sm, out_rows);
    }
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
