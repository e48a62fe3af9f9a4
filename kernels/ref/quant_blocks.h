/* Byte layout of the quantized weight blocks (kernels/quant.h) as offsets and scalar element
 * accessors, shared by the reference (kernels/ref) and the fast CPU code (kernels/cpu); not a
 * public header. All multi-byte fields are little-endian and unaligned (blocks are packed). */
#pragma once
#include <stdint.h>
#include <string.h>

#include "kernels/kern.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Q8_0, 34 B: f16 d @0, int8 q[32] @2. */
#define QB_Q8_0_D  0
#define QB_Q8_0_QS 2
/* Q4_0, 18 B: f16 d @0, u8 qs[16] @2. */
#define QB_Q4_0_D  0
#define QB_Q4_0_QS 2
/* Q4_1, 20 B: f16 d @0, f16 m @2, u8 qs[16] @4. */
#define QB_Q4_1_D  0
#define QB_Q4_1_M  2
#define QB_Q4_1_QS 4
/* Q4_K, 144 B: f16 d @0, f16 dmin @2, u8 scales[12] @4, u8 qs[128] @16. */
#define QB_Q4_K_D      0
#define QB_Q4_K_DMIN   2
#define QB_Q4_K_SCALES 4
#define QB_Q4_K_QS     16
/* Q6_K, 210 B: u8 ql[128] @0, u8 qh[64] @128, int8 scales[16] @192, f16 d @208. */
#define QB_Q6_K_QL     0
#define QB_Q6_K_QH     128
#define QB_Q6_K_SCALES 192
#define QB_Q6_K_D      208

static inline uint16_t qb_u16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static inline float qb_f16(const uint8_t *p)
{
    return kern_f16_to_f32(qb_u16(p));
}

/* 4-bit element i (0..31) of a 32-block's 16 bytes qs: element i < 16 is the low nibble of
 * qs[i], element i >= 16 the high nibble of qs[i - 16]. */
static inline int qb_nibble32(const uint8_t *qs, int i)
{
    return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4;
}

/* Q4_K sub-block j (0..7): 6-bit scale and min from the 12 packed bytes. Sub-blocks 0..3 keep
 * their scale / min in the low 6 bits of bytes j / j+4; sub-blocks 4..7 keep their low 4 bits
 * in byte j+4 (scale low nibble, min high nibble) and their top 2 bits in the top 2 bits of
 * bytes j-4 (scale) and j (min). */
static inline void qb_q4k_scale_min(const uint8_t *s, int j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K element e (0..255), 0..15: 64-element pair p = e/64 shares qs[32p .. 32p+32): the first
 * sub-block of the pair in the low nibbles, the second in the high nibbles. */
static inline int qb_q4k_q(const uint8_t *blk, int e)
{
    uint8_t b = blk[QB_Q4_K_QS + 32 * (e / 64) + e % 32];
    return (e / 32) & 1 ? b >> 4 : b & 15;
}

/* Q6_K element e (0..255), 0..63: half h = e/128, r = e%128, quarter k = r/32, l = r%32.
 * Low 4 bits: ql[64h + l + 32(k&1)], low nibble for k < 2, high nibble for k >= 2; high 2 bits:
 * bits 2k..2k+1 of qh[32h + l]. The value is scales[e/16] * (q - 32) * d. */
static inline int qb_q6k_q(const uint8_t *blk, int e)
{
    int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    uint8_t lo = blk[QB_Q6_K_QL + 64 * h + l + 32 * (k & 1)];
    uint8_t hi = blk[QB_Q6_K_QH + 32 * h + l];
    return (k < 2 ? lo & 15 : lo >> 4) | (((hi >> (2 * k)) & 3) << 4);
}

/* The quantized reference matmul behind kern_ref_matmul (quant_dot_ref.c). */
void kern_ref__matmul_q(const kern_weight *w, const float *x, int xs, int n, float *y, int ys);

#ifdef __cplusplus
}
#endif
