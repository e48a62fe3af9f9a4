/* Device side of the 32-element quantized formats (Q8_0, Q4_0, Q4_1; layouts in
 * kernels/ref/quant_blocks.h): scales, 4-element packed integer words for __dp4a, and the
 * dequantised value of one element (the same exact arithmetic as kern_dequant_row). Blocks are
 * 18, 20 or 34 bytes, so only 2-byte alignment is assumed. Included by .cu files only. */
#pragma once
#include <stdint.h>

#include <cuda_fp16.h>

#include "kernels/kern.h"
#include "kernels/ref/quant_blocks.h"

static __device__ __forceinline__ float kq_f16(const uint8_t *p)
{
    return __half2float(*(const __half *)p);
}

/* Bytes p[0..3] as one little-endian word (p 2-byte aligned). */
static __device__ __forceinline__ int kq_word(const uint8_t *p)
{
    const uint16_t *h = (const uint16_t *)p;
    return (int)((uint32_t)h[0] | (uint32_t)h[1] << 16);
}

static __device__ __forceinline__ int kq_block_bytes(kern_dtype T)
{
    return T == KERN_Q8_0 ? 34 : T == KERN_Q4_0 ? 18 : 20;
}

/* Element i (0..31) of block b as f32: d*q (Q8_0), d*(q-8) (Q4_0), d*q + m (Q4_1); d*q is
 * exact in f32, so a fused d*q + m rounds the same as kern_dequant_row. */
static __device__ __forceinline__ float kq_dequant(kern_dtype T, const uint8_t *b, int i)
{
    if (T == KERN_Q8_0)
        return kq_f16(b + QB_Q8_0_D) * (float)(int8_t)b[QB_Q8_0_QS + i];
    const uint8_t *qs = b + (T == KERN_Q4_0 ? QB_Q4_0_QS : QB_Q4_1_QS);
    int q = i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
    if (T == KERN_Q4_0)
        return kq_f16(b + QB_Q4_0_D) * (float)(q - 8);
    return kq_f16(b + QB_Q4_1_D) * (float)q + kq_f16(b + QB_Q4_1_M);
}

/* The block's 32 values as 8 packed int8x4 words in element order: w[k] = elements 4k..4k+3
 * (Q4_0 already minus 8; Q4_1 0..15). */
static __device__ __forceinline__ void kq_unpack(kern_dtype T, const uint8_t *b, int w[8])
{
    if (T == KERN_Q8_0) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            w[k] = kq_word(b + QB_Q8_0_QS + 4 * k);
        return;
    }
    const uint8_t *qs = b + (T == KERN_Q4_0 ? QB_Q4_0_QS : QB_Q4_1_QS);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint32_t v = (uint32_t)kq_word(qs + 4 * k);
        uint32_t lo = v & 0x0f0f0f0fu, hi = (v >> 4) & 0x0f0f0f0fu;
        if (T == KERN_Q4_0) {
            lo = __vsub4(lo, 0x08080808u);
            hi = __vsub4(hi, 0x08080808u);
        }
        w[k] = (int)lo;     /* elements 4k .. 4k+3 */
        w[k + 4] = (int)hi; /* elements 16+4k .. */
    }
}
