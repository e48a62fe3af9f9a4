/* Quantized weight formats (ggml block formats, kept quantized in memory) and their scalar
 * reference: block geometry, dequantisers (the specification of each bit layout), quantisers
 * for the activation side of a quantized matmul, and for writing test models.
 *
 * Bit layouts (all little-endian, f16 = IEEE half), QK = elements per block:
 *   Q8_0  QK 32,  34 B: f16 d; int8 q[32].                      x[i] = d * q[i]
 *   Q4_0  QK 32,  18 B: f16 d; u8 qs[16].  q[i] = qs[i] & 15 (i < 16), qs[i-16] >> 4 (i >= 16);
 *                                                                x[i] = d * (q[i] - 8)
 *   Q4_1  QK 32,  20 B: f16 d; f16 m; u8 qs[16] (nibbles as Q4_0). x[i] = d * q[i] + m
 *   Q4_K  QK 256, 144 B: f16 d; f16 dmin; u8 scales[12] (8 sub-blocks of 32: 6-bit scale and
 *                       6-bit min each, packed as ggml's get_scale_min_k4); u8 qs[128]
 *                       (sub-block pairs share 32 bytes: low nibbles = first, high = second).
 *                                                 x = d * sc[j] * q - dmin * mn[j]
 *   Q6_K  QK 256, 210 B: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16]
 *                       (one per 16 elements), f16 d.             x = d * scales[k] * (q - 32)
 *
 * A quantized matmul (kern_ops.matmul with a quantized weight) reads the weight in its block
 * format (4.5-8.5 bits per weight instead of 32) in one of two modes (kern_act_mode, kern.h):
 *
 * KERN_ACT_F32 (default): f32 activations times the dequantised weights, i.e. an f32 matmul over
 * the kern_dequant_row values. kern_ref_matmul adds deq(W)[r][c] * X[t][c] in c order from 0.0f;
 * the fast CPU backend sums exactly like its f32 matmul (kernels/cpu/matmul_qf.c).
 *
 * KERN_ACT_Q8 (llama.cpp's numerics): each activation row is first quantised to the weight's
 * "vec-dot" block format (kern_vecdot_type) and integer block dot products are summed, scaled by
 * the block scales. Per-32 int8 blocks lose the small activations that share a block with a huge
 * one, which changes greedy answers of real models (SmolLM2's ffn_down inputs reach |x| ~ 3000).
 * Per output element, kern_ref_matmul adds one f32 term per weight block, in block order from 0:
 *   Q8_0 / Q4_0 (x: q8_0x)  (d_w * d_x) * isum,                isum = sum w_q[i] * x_q[i]
 *                                                   (w_q = q for Q8_0, q - 8 for Q4_0)
 *   Q4_1 (x: q8_1x)         (d_w * d_x) * isum + m_w * s_x,   isum = sum q[i] * x_q[i]
 *   Q4_K (x: q8_kx)         (d_w * d_x) * isum - (dmin_w * d_x) * imin,
 *                           isum = sum_j sc[j] * sum_{i in j} q[i] x_q[i],
 *                           imin = sum_j mn[j] * sum_{i in j} x_q[i]    (j: sub-blocks of 32)
 *   Q6_K (x: q8_kx)         (d_w * d_x) * isum,  isum = sum_k scales[k] * sum_{i in k} (q[i] - 32)
 * x_q[i] (k: groups of 16) (integer sums are exact). Fast backends may add the same terms in
 * another fixed order (e.g. 8 f32 lanes, then a lane tree): they agree with the reference to f32
 * reassociation error. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 for f32/f16 and every listed block type; 0 for any other value (e.g. from a file). */
int kern_dtype_valid(int t);
int kern_dtype_is_quant(kern_dtype t);
/* "f32", "f16", "q4_0", "q4_1", "q8_0", "q4_k", "q6_k"; "?" for others. */
const char *kern_dtype_name(int t);
/* Elements per block (1 for f32/f16) and bytes per block. */
int kern_dtype_block_elems(kern_dtype t);
size_t kern_dtype_block_bytes(kern_dtype t);
/* Bytes of one row of cols elements; 0 when cols <= 0, cols is not a multiple of the block size
 * or t is not a valid dtype. */
size_t kern_row_bytes(kern_dtype t, int cols);

/* Reference dequantisation of one row (cols a multiple of the block size, or 0: nothing).
 * A shape that does not fit the type is a caller bug (EM_ASSERT): loaders validate first. */
void kern_dequant_row(kern_dtype t, const void *row, float *out, int cols);
/* Reference quantisation of one row into t (q8_0, q4_0, q4_1: round to nearest, llama.cpp's
 * reference rules; q4_k / q6_k: a simple max-abs scheme, good enough for test models). */
void kern_quant_row(kern_dtype t, const float *x, void *out, int cols);

/* Activation blocks (the vec-dot side of a quantized matmul), f32 scale kept exact. */
typedef struct kern_q8_0x {
    float d;
    int8_t q[32];
} kern_q8_0x; /* for Q4_0, Q8_0 */
typedef struct kern_q8_1x {
    float d;
    float s;
    int8_t q[32];
} kern_q8_1x; /* Q4_1: s = d*sum(q) */
typedef struct kern_q8_kx {
    float d;
    int8_t q[256];
    int16_t bsums[16];
} kern_q8_kx; /* K-quants */

/* The activation format a quantized weight type is multiplied with (KERN_ACT_NONE for f32/f16:
 * those multiply f32 activations directly). */
typedef enum { KERN_ACT_NONE = 0, KERN_ACT_Q8_0X, KERN_ACT_Q8_1X, KERN_ACT_Q8_KX } kern_act_type;
kern_act_type kern_vecdot_type(kern_dtype t);

/* Reference activation quantisers (the specification every fast one matches bit for bit):
 * per block amax = max |x|, d = amax / 127, q = round-to-nearest-even(x * (127 / amax))
 * (q = 0 when amax = 0). q8_1x adds s = d * (float)sum(q); q8_kx (256 per block) adds
 * bsums[k] = sum of q[16k .. 16k+15]. A block with a non-finite element gets d = NaN and
 * q = 0 (bsums 0, s NaN), so the NaN reaches every output that reads it.
 * cols: a multiple of 32 (q8_0x, q8_1x) or 256 (q8_kx); out has cols / block entries. */
void kern_quant_act_q8_0x(const float *x, kern_q8_0x *out, int cols);
void kern_quant_act_q8_1x(const float *x, kern_q8_1x *out, int cols);
void kern_quant_act_q8_kx(const float *x, kern_q8_kx *out, int cols);

#ifdef __cplusplus
}
#endif
