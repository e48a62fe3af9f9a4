/* Fast activation quantiser of the quantized matmul (AVX2): each block of x becomes
 * d = amax / 127 and q = round-to-nearest-even(x * (127 / amax)), bit-identical to the
 * reference kern_quant_act_* (same IEEE operations; amax as an integer max over |x|'s bit
 * patterns, which orders non-negative floats as floats do and puts NaN above inf), plus the
 * per-block auxiliary sums the dot products need (layout in quant_cpu.h). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/quant_cpu.h"
#include "kernels/quant.h"

#define AI static inline __attribute__((always_inline))

static size_t up64(size_t b)
{
    return (b + 63) & ~(size_t)63;
}

size_t kern_cpu__qact_bytes(kern_dtype t, int n, int cols)
{
    size_t nb = (size_t)(cols / kern_dtype_block_elems(t)) * (size_t)n;
    return up64((size_t)n * (size_t)cols) + up64(nb * 4) + up64(nb * 32);
}

void kern_cpu__qact_init(kern_cpu__qact *a, kern_dtype t, int n, int cols, void *buf)
{
    a->dtype = t;
    a->n = n;
    a->cols = cols;
    a->nb = cols / kern_dtype_block_elems(t);
    size_t nb = (size_t)a->nb * (size_t)n;
    uint8_t *p = buf;
    a->q = (int8_t *)p;
    a->d = (float *)(p + up64((size_t)n * (size_t)cols));
    a->aux = p + up64((size_t)n * (size_t)cols) + up64(nb * 4);
}

/* Bit pattern of max |x| over 8k floats (NaN sorts above inf). */
AI uint32_t amax_bits(const float *x, int k)
{
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    __m256i m = _mm256_setzero_si256();
    for (int i = 0; i < k; i++)
        m = _mm256_max_epi32(
            m, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + 8 * i)), abs_mask));
    __m128i h = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_max_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(h);
}

/* 32 floats * id -> 32 int8 in element order (cvtps rounds to nearest even). */
AI __m256i quant32(const float *x, __m256 id)
{
    __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    /* packs work per 128-bit lane: the bytes come out as 4-element groups in the order
     * 0 2 4 6 1 3 5 7; the permute restores element order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One block of be (32 or 256) elements: q into qdst, returns d. */
AI float quant_block(const float *x, int be, int8_t *qdst)
{
    uint32_t bits = amax_bits(x, be / 8);
    if (bits >= 0x7f800000u) { /* inf or NaN */
        memset(qdst, 0, (size_t)be);
        return NAN;
    }
    float amax;
    memcpy(&amax, &bits, 4);
    __m256 id = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    for (int c = 0; c < be; c += 32)
        _mm256_store_si256((__m256i *)(qdst + c), quant32(x + c, id));
    return amax / 127.0f;
}

/* Q4_1 aux: lane k = d * sum(q[4k .. 4k+3]). */
AI void aux_q4_1(const int8_t *q, float d, uint8_t *aux)
{
    __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_load_si256((const __m256i *)q));
    __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
    _mm256_store_ps((float *)aux, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s32)));
}

/* K aux: Q4_K sums per 32, Q6_K sums per 16 (exact small integers). */
static void aux_k(kern_dtype t, const int8_t *q, uint8_t *aux)
{
    int32_t s16[16];
    for (int k = 0; k < 16; k++) {
        int s = 0;
        for (int i = 16 * k; i < 16 * k + 16; i++)
            s += q[i];
        s16[k] = s;
    }
    if (t == KERN_Q4_K) {
        int32_t s32[8];
        for (int j = 0; j < 8; j++)
            s32[j] = s16[2 * j] + s16[2 * j + 1];
        memcpy(aux, s32, 32);
    } else {
        int16_t h[16];
        for (int k = 0; k < 16; k++)
            h[k] = (int16_t)s16[k];
        memcpy(aux, h, 32);
    }
}

void kern_cpu__qact_fill(const kern_cpu__qact *a, const float *x, int xs, int t0, int t1)
{
    int be = kern_dtype_block_elems(a->dtype);
    for (int t = t0; t < t1; t++) {
        const float *xt = x + (size_t)t * xs;
        for (int b = 0; b < a->nb; b++) {
            size_t k = (size_t)t * a->nb + b;
            int8_t *q = a->q + (size_t)t * a->cols + (size_t)b * be;
            float d = quant_block(xt + (size_t)b * be, be, q);
            a->d[k] = d;
            if (a->dtype == KERN_Q4_1)
                aux_q4_1(q, d, a->aux + 32 * k);
            else if (be == 256)
                aux_k(a->dtype, q, a->aux + 32 * k);
        }
    }
}
