/* AVX2 block kernels of the quantized matmul (included by matmul_q.c only): a weight block is
 * unpacked once into registers (qw_unpack) and then dotted with the quantised activation block
 * of one or several tokens (qw_dot), integer products via maddubs/madd, then one or two f32
 * FMAs into an 8-lane accumulator.
 *
 * Per output element and weight block the f32 arithmetic is fixed:
 *   Q8_0, Q4_0:  acc = fma(d_w*d_x, P, acc)
 *   Q4_1:        acc = fma(d_w*d_x, P, acc); acc = fma(m_w, L, acc)
 *   Q4_K:        acc = fma(d_w*d_x, P, acc); acc = fnma(dmin_w*d_x, M, acc)
 *   Q6_K:        acc = fma(d_w*d_x, P - 32 C, acc)
 * where P, M, C are exact int32 lane sums (lane k of P: the products of elements 4k..4k+3 of
 * every 32-element chunk, scaled per sub-block for K types; M lane j = mn_j * sum of x_q over
 * sub-block j; C lane i = sum of scales * x_q sums of groups 2i, 2i+1) and L is the activation
 * lane sum of quant_cpu.h. Integer sums are exact in any order, so every caller (GEMV, prefill,
 * row and token tails) produces the same bits for the same (row, token). */
#pragma once
#include <immintrin.h>

#include "kernels/cpu/quant_cpu.h"
#include "kernels/ref/quant_blocks.h"

#define QAI static inline __attribute__((always_inline))

/* A weight block ready for the integer dot. */
typedef struct qw {
    __m256i q[8];  /* Q8_0/Q4_0: q[0] = |w| (u8), q[1] = w (sign source); Q4_1: q[0] = 0..15;
                      K: one vector per 32-element chunk (Q4_K 0..15, Q6_K 0..63) */
    __m256i sc[8]; /* K: the chunk's scales as int16 (Q6_K: low half / high half of the chunk) */
    __m256i k;     /* Q4_K: the 8 mins as int32; Q6_K: the 16 scales as int16 */
    __m256 d, m;   /* d; Q4_1: m, Q4_K: dmin (broadcast) */
} qw;

QAI int q_is_k(kern_dtype T)
{
    return T == KERN_Q4_K || T == KERN_Q6_K;
}
QAI int q_block_elems(kern_dtype T)
{
    return q_is_k(T) ? 256 : 32;
}
QAI size_t q_block_bytes(kern_dtype T)
{
    return T == KERN_Q8_0   ? 34
           : T == KERN_Q4_0 ? 18
           : T == KERN_Q4_1 ? 20
           : T == KERN_Q4_K ? 144
                            : 210;
}

/* An f16 at p broadcast to 8 f32 lanes (one broadcast load, one conversion). */
QAI __m256 q_f16(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_set1_epi16((short)qb_u16(p)));
}

/* Two adjacent f16 (d, then m or dmin) broadcast: *d = 8 x p[0], *m = 8 x p[1]. */
QAI void q_f16x2(const uint8_t *p, __m256 *d, __m256 *m)
{
    uint32_t u;
    memcpy(&u, p, 4);
    __m256 v = _mm256_cvtph_ps(_mm_set1_epi32((int)u)); /* d m d m d m d m */
    *d = _mm256_permute_ps(v, 0x00);
    *m = _mm256_permute_ps(v, 0x55);
}

/* 16 bytes of nibbles -> 32 values 0..15 in element order (low nibbles first). */
QAI __m256i q_nibbles32(const uint8_t *qs)
{
    /* the 16 bytes in both halves, the high half shifted right by 4, then the low nibbles */
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    return _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(15));
}

QAI void unpack_q4_k(const uint8_t *b, qw *w)
{
    q_f16x2(b + QB_Q4_K_D, &w->d, &w->m); /* d, dmin */
    uint32_t s[3];
    memcpy(s, b + QB_Q4_K_SCALES, 12);
    /* bytes of sc / mn for sub-blocks 0..3 and 4..7 (layout in quant_blocks.h) */
    uint32_t sc_lo = s[0] & 0x3f3f3f3fu, mn_lo = s[1] & 0x3f3f3f3fu;
    uint32_t sc_hi = (s[2] & 0x0f0f0f0fu) | ((s[0] >> 6) & 0x03030303u) << 4;
    uint32_t mn_hi = ((s[2] >> 4) & 0x0f0f0f0fu) | ((s[1] >> 6) & 0x03030303u) << 4;
    __m128i sc8 = _mm_cvtsi64_si128((long long)((uint64_t)sc_hi << 32 | sc_lo));
    __m128i mn8 = _mm_cvtsi64_si128((long long)((uint64_t)mn_hi << 32 | mn_lo));
    __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        w->sc[j] = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)((2 * j + 1) << 8 | 2 * j)));
    w->k = _mm256_cvtepu8_epi32(mn8);
    const __m256i m4 = _mm256_set1_epi8(15);
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(b + QB_Q4_K_QS + 32 * p));
        w->q[2 * p] = _mm256_and_si256(v, m4);
        w->q[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
}

QAI void unpack_q6_k(const uint8_t *b, qw *w)
{
    w->d = q_f16(b + QB_Q6_K_D);
    __m128i s8 = _mm_loadu_si128((const __m128i *)(b + QB_Q6_K_SCALES));
    __m256i sb = _mm256_broadcastsi128_si256(s8);
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) { /* low half of chunk c: scale 2c, high half: 2c+1 */
        __m256i idx =
            _mm256_set_m128i(_mm_set1_epi8((char)(2 * c + 1)), _mm_set1_epi8((char)(2 * c)));
        w->sc[c] = _mm256_srai_epi16(_mm256_shuffle_epi8(sb, idx), 8); /* (s << 8 | s) >> 8 = s */
    }
    w->k = _mm256_cvtepi8_epi16(s8);
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) { /* quarter k of half h: low bits from ql, bits 2k.. of qh */
        __m256i la = _mm256_loadu_si256((const __m256i *)(b + QB_Q6_K_QL + 64 * h));
        __m256i lb = _mm256_loadu_si256((const __m256i *)(b + QB_Q6_K_QL + 64 * h + 32));
        __m256i hb = _mm256_loadu_si256((const __m256i *)(b + QB_Q6_K_QH + 32 * h));
        w->q[4 * h] = _mm256_or_si256(_mm256_and_si256(la, m4),
                                      _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
        w->q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(lb, m4),
                                          _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
        w->q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                                          _mm256_and_si256(hb, m2));
        w->q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                                          _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
    }
}

QAI void qw_unpack(kern_dtype T, const uint8_t *b, qw *w)
{
    if (T == KERN_Q8_0) {
        w->d = q_f16(b + QB_Q8_0_D);
        w->q[1] = _mm256_loadu_si256((const __m256i *)(b + QB_Q8_0_QS));
        w->q[0] = _mm256_abs_epi8(w->q[1]);
    } else if (T == KERN_Q4_0) {
        w->d = q_f16(b + QB_Q4_0_D);
        w->q[1] = _mm256_sub_epi8(q_nibbles32(b + QB_Q4_0_QS), _mm256_set1_epi8(8));
        w->q[0] = _mm256_abs_epi8(w->q[1]);
    } else if (T == KERN_Q4_1) {
        q_f16x2(b + QB_Q4_1_D, &w->d, &w->m); /* d, m */
        w->q[0] = q_nibbles32(b + QB_Q4_1_QS);
    } else if (T == KERN_Q4_K) {
        unpack_q4_k(b, w);
    } else {
        unpack_q6_k(b, w);
    }
}

/* acc += the block's contribution for one token: xq its int8 block, dx its scale, aux its
 * 32 auxiliary bytes (quant_cpu.h). */
QAI __m256 qw_dot(kern_dtype T, const qw *w, const int8_t *xq, float dx, const uint8_t *aux,
                  __m256 acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 dd = _mm256_mul_ps(w->d, _mm256_set1_ps(dx));
    if (T == KERN_Q8_0 || T == KERN_Q4_0) { /* |w| * (x with w's sign) = w * x, u8 x s8 */
        __m256i x = _mm256_load_si256((const __m256i *)xq);
        __m256i p =
            _mm256_madd_epi16(_mm256_maddubs_epi16(w->q[0], _mm256_sign_epi8(x, w->q[1])), ones);
        return _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc);
    }
    if (T == KERN_Q4_1) {
        __m256i x = _mm256_load_si256((const __m256i *)xq);
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(w->q[0], x), ones);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc);
        return _mm256_fmadd_ps(w->m, _mm256_load_ps((const float *)aux), acc);
    }
    __m256i p = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; c++) {
        __m256i x = _mm256_load_si256((const __m256i *)(xq + 32 * c));
        p = _mm256_add_epi32(p, _mm256_madd_epi16(_mm256_maddubs_epi16(w->q[c], x), w->sc[c]));
    }
    __m256i a = _mm256_load_si256((const __m256i *)aux);
    if (T == KERN_Q4_K) { /* mins are int32 < 64, so madd_epi16 = mn_j * (int16) sum_j */
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc);
        __m256 dm = _mm256_mul_ps(w->m, _mm256_set1_ps(dx));
        return _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(_mm256_madd_epi16(w->k, a)), acc);
    }
    p = _mm256_sub_epi32(p, _mm256_slli_epi32(_mm256_madd_epi16(w->k, a), 5)); /* q - 32 */
    return _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(p), acc);
}
