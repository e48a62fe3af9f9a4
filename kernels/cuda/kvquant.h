/* Quantized K/V rows for the GPU cache (int8 / int4) and their CPU reference.
 *
 * Format (per cache entry = one row of hd values, K and V alike): groups of
 * QG = kern_kv_group(hd) consecutive channels (32, or hd when hd < 32); per group an asymmetric
 * (scale, min) pair in f32; codes q = rint((x - min) / scale) clamped to [0, 2^bits - 1];
 * x' = q * scale + min. Q8: one byte per value, codes [len][hd]. Q4: two values per byte,
 * codes [len][hd/2], channel d in byte d/2, low nibble for even d. sm [len][hd/QG][2].
 * Per-token groups (like llama.cpp's q8_0/q4_0 KV cache) rather than KIVI's per-channel keys:
 * every appended token is quantized once, on its own, with no residual f32 block. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/cuda/cuda_ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KERN_KV_F32 = 0, KERN_KV_Q8 = 1, KERN_KV_Q4 = 2 } kern_kv_fmt;

static inline int kern_kv_group(int hd)
{
    return hd < 32 ? hd : 32;
}
static inline int kern_kv_n_groups(int hd)
{
    return hd / kern_kv_group(hd);
}
/* Bytes of one row of codes (f32: the row itself). */
static inline size_t kern_kv_row_bytes(kern_kv_fmt f, int hd)
{
    return f == KERN_KV_F32  ? sizeof(float) * (size_t)hd
           : f == KERN_KV_Q8 ? (size_t)hd
                             : (size_t)hd / 2;
}
/* EM_OK when (fmt, hd) is supported: hd in [1, 256]; quantized: hd multiple of the group,
 * even for Q4. */
em_status kern_kv_check(kern_kv_fmt f, int hd);

/* CPU reference: quantize n rows x + i*x_stride (hd floats) into codes/sm (layout above). */
void kern_kv_quantize_ref(kern_kv_fmt f, const float *x, int n, int hd, int x_stride,
                          uint8_t *codes, float *sm);
/* CPU reference: rows back to f32, out [n][hd]. */
void kern_kv_dequantize_ref(kern_kv_fmt f, const uint8_t *codes, const float *sm, int n, int hd,
                            float *out);

/* GPU: same as kern_kv_quantize_ref with device pointers (bit-identical codes and sm). */
em_status kern_cuda_kv_quantize(kern_cuda_ctx *c, kern_kv_fmt f, const float *x, int n, int hd,
                                int x_stride, uint8_t *codes, float *sm);
/* Same, with input row i written to output row i*out_rows (e.g. one new token for every head of
 * a [head][cap] cache: out_rows = cap). kern_cuda_kv_quantize is out_rows = 1. */
em_status kern_cuda_kv_quantize_strided(kern_cuda_ctx *c, kern_kv_fmt f, const float *x, int n,
                                        int hd, int x_stride, uint8_t *codes, float *sm,
                                        int out_rows);

#ifdef __cplusplus
}
#endif
