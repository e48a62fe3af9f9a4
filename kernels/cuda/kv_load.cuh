/* Device-side row loaders shared by the attention and EMS kernels: lane `lane` of a warp holds
 * channels d = lane + 32*r (r < R) of cache row j, dequantized to f32 on the fly. */
#pragma once
#include <stdint.h>

#include "kernels/cuda/kvquant.h"

template <int FMT, int R>
static __device__ __forceinline__ void kv_load_row(const void *codes, const float *sm, int j,
                                                   int hd, int lane, float (&out)[R])
{
#pragma unroll
    for (int r = 0; r < R; r++) {
        int d = lane + 32 * r;
        float x = 0.0f;
        if (d < hd) {
            if (FMT == KERN_KV_F32) {
                x = ((const float *)codes)[(size_t)j * hd + d];
            } else {
                int qg = hd < 32 ? hd : 32, ng = hd / qg, q;
                if (FMT == KERN_KV_Q8) {
                    q = ((const uint8_t *)codes)[(size_t)j * hd + d];
                } else {
                    uint8_t b = ((const uint8_t *)codes)[(size_t)j * (hd / 2) + (d >> 1)];
                    q = (d & 1) ? b >> 4 : b & 15;
                }
                const float *g = sm + ((size_t)j * ng + d / qg) * 2;
                x = (float)q * g[0] + g[1];
            }
        }
        out[r] = x;
    }
}

template <int R>
static __device__ __forceinline__ float warp_dot(const float (&a)[R], const float (&b)[R])
{
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < R; r++)
        s += a[r] * b[r];
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}
