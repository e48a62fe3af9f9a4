/* Quantized matmul on the GPU (Q8_0, Q4_0, Q4_1; the contract of kern_ref_matmul in
 * kernels/quant.h): the activation rows are quantised on the device to q8_0x / q8_1x blocks
 * (bit-identical to kern_quant_act_*: the same IEEE operations, round to nearest even), then
 * each warp takes one weight row for up to QMM_TOK tokens: lane l walks blocks l, l+32, ... in
 * order, unpacks each block in registers (the matrix is never dequantised) and adds
 * (d_w*d_x)*isum (+ m_w*s_x) per token with __dp4a integer dots; a butterfly shuffle sums the
 * lanes. Each token's accumulators are independent, so a token's result does not depend on how
 * many tokens share the call. K-quants are not implemented here (EM_EUNSUPPORTED). */
#include <stdint.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/quant.cuh"

#define QMM_TOK 8 /* tokens per warp */

/* One warp per (token, 32-block) writes q[32], d and s (= d * sum q) of the block. */
static __global__ void qact_kernel(const float *x, int xs, int n, int nb, int cols, int8_t *q,
                                   float *d, float *s)
{
    long long gw = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (gw >= (long long)n * nb)
        return; /* whole warps only */
    int t = (int)(gw / nb), b = (int)(gw % nb);
    float v = x[(size_t)t * xs + (size_t)b * 32 + lane];
    unsigned bits = __float_as_uint(v) & 0x7fffffffu; /* |v| ordered as an integer, NaN on top */
    for (int o = 16; o > 0; o >>= 1)
        bits = max(bits, __shfl_xor_sync(0xffffffffu, bits, o));
    int qv = 0;
    float dv;
    if (bits >= 0x7f800000u) {
        dv = __int_as_float(0x7fc00000); /* non-finite block: d = NaN, q = 0 */
    } else {
        float amax = __uint_as_float(bits);
        float id = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
        dv = __fdiv_rn(amax, 127.0f);
        qv = __float2int_rn(__fmul_rn(v, id));
    }
    q[(size_t)t * cols + (size_t)b * 32 + lane] = (int8_t)qv;
    int sum = qv;
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) {
        d[(size_t)t * nb + b] = dv;
        s[(size_t)t * nb + b] = __fmul_rn(dv, (float)sum);
    }
}

/* grid.x = ceil(rows / 8) blocks of 8 warps (warp = one row), grid.y = token groups. */
template <kern_dtype T>
static __global__ void qmm_kernel(const uint8_t *w, int rows, int nb, const int8_t *xq,
                                  const float *xd, const float *xsum, int cols, int n, float *y,
                                  int ys)
{
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * 8 + warp;
    if (r >= rows)
        return;
    int t0 = blockIdx.y * QMM_TOK, nt = min(QMM_TOK, n - t0);
    const int bb = kq_block_bytes(T);
    const uint8_t *wr = w + (size_t)r * nb * bb;
    float acc[QMM_TOK];
#pragma unroll
    for (int t = 0; t < QMM_TOK; t++)
        acc[t] = 0.0f;
    for (int b = lane; b < nb; b += 32) {
        const uint8_t *blk = wr + (size_t)b * bb;
        int wq[8];
        kq_unpack(T, blk, wq);
        float dw = kq_f16(blk), mw = T == KERN_Q4_1 ? kq_f16(blk + QB_Q4_1_M) : 0.0f;
#pragma unroll
        for (int t = 0; t < QMM_TOK; t++) {
            if (t < nt) {
                size_t k = (size_t)(t0 + t) * nb + b;
                const int4 *xv = (const int4 *)(xq + (size_t)(t0 + t) * cols + (size_t)b * 32);
                int4 a = __ldg(xv), c = __ldg(xv + 1);
                int isum = __dp4a(wq[0], a.x, 0);
                isum = __dp4a(wq[1], a.y, isum), isum = __dp4a(wq[2], a.z, isum);
                isum = __dp4a(wq[3], a.w, isum), isum = __dp4a(wq[4], c.x, isum);
                isum = __dp4a(wq[5], c.y, isum), isum = __dp4a(wq[6], c.z, isum);
                isum = __dp4a(wq[7], c.w, isum);
                float term = __fmul_rn(dw, __ldg(xd + k)) * (float)isum;
                if (T == KERN_Q4_1)
                    term += mw * __ldg(xsum + k);
                acc[t] += term;
            }
        }
    }
#pragma unroll
    for (int t = 0; t < QMM_TOK; t++) {
        if (t >= nt)
            break;
        float v = acc[t];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0)
            y[(size_t)(t0 + t) * ys + r] = v;
    }
}

static size_t rnd256(size_t b)
{
    return (b + 255) / 256 * 256;
}

extern "C" em_status kern_cuda__matmul_q(kern_cuda_ctx *c, const kern_weight *w, const float *x,
                                         int x_stride, int n, float *y, int y_stride)
{
    if (w->dtype != KERN_Q8_0 && w->dtype != KERN_Q4_0 && w->dtype != KERN_Q4_1) {
        return EM_EUNSUPPORTED;
    }
    if (w->cols % 32)
        return EM_EINVAL;
    if (n == 0)
        return EM_OK;
    int nb = w->cols / 32;
    size_t qbytes = rnd256((size_t)n * w->cols), dbytes = rnd256(sizeof(float) * (size_t)n * nb);
    char *buf;
    KERN_CUDA_TRY(kern_cuda__scratch(c, KERN_CUDA_SCR_QACT, qbytes + 2 * dbytes, (void **)&buf));
    int8_t *xq = (int8_t *)buf;
    float *xd = (float *)(buf + qbytes), *xsum = (float *)(buf + qbytes + dbytes);
    cudaStream_t s = (cudaStream_t)c->stream;
    qact_kernel<<<kern_cuda__blocks((long long)n * nb * 32, 256), 256, 0, s>>>(
        x, x_stride, n, nb, w->cols, xq, xd, xsum);
    KERN_CUDA_CHECK_LAUNCH();
    dim3 grid(kern_cuda__blocks(w->rows, 8), (unsigned)((n + QMM_TOK - 1) / QMM_TOK));
    const uint8_t *wd = (const uint8_t *)w->data;
    if (w->dtype == KERN_Q8_0) {
        qmm_kernel<KERN_Q8_0>
            <<<grid, 256, 0, s>>>(wd, w->rows, nb, xq, xd, xsum, w->cols, n, y, y_stride);
    } else if (w->dtype == KERN_Q4_0) {
        qmm_kernel<KERN_Q4_0>
            <<<grid, 256, 0, s>>>(wd, w->rows, nb, xq, xd, xsum, w->cols, n, y, y_stride);
    } else {
        qmm_kernel<KERN_Q4_1>
            <<<grid, 256, 0, s>>>(wd, w->rows, nb, xq, xd, xsum, w->cols, n, y, y_stride);
    }
    KERN_CUDA_CHECK_LAUNCH();
    return EM_OK;
}
