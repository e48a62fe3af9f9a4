/* Small AVX2/FMA helpers shared by the CPU kernels: a fixed-order horizontal sum (the same
 * order everywhere, which the determinism contract relies on), an 8-way transpose-sum and a
 * vector expf (Cephes polynomial, ~2 ulp on the softmax/silu range). */
#pragma once
#include <immintrin.h>

/* Sum of the 8 lanes, always in the order ((lo+hi) pairs, then halves). */
static inline float kern_cpu__hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Lane j of the result = horizontal sum of a[j] (8 accumulators -> 8 dot products), always
 * in the order ((0+1)+(2+3))+((4+5)+(6+7)) over a[j]'s lanes. */
static inline __m256 kern_cpu__hsum8(const __m256 a[8])
{
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    /* (u0.lo, u1.lo) + (u0.hi, u1.hi); inserts rather than vperm2f128 (slow on Zen 1) */
    __m256 lo = _mm256_insertf128_ps(u0, _mm256_castps256_ps128(u1), 1);
    __m256 hi = _mm256_insertf128_ps(u1, _mm256_extractf128_ps(u0, 1), 0);
    return _mm256_add_ps(lo, hi);
}

/* The exp polynomial shared by kern_cpu__exp and attn.c's exp_neg: for x already clamped to
 * [-87.3, 88.7], returns y ~ exp(x - fx ln2) and writes fx = round(x / ln2); the caller
 * multiplies by 2^fx in the way its range allows. */
static inline __attribute__((always_inline)) __m256 kern_cpu__exp_poly(__m256 x, __m256 *fx_out)
{
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    *fx_out = fx;
    return _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
}

/* exp(x) for x in any range: clamped to [-87.3, 88.7] (exp of the lower bound ~1e-38). */
static inline __m256 kern_cpu__exp(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(88.7f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 fx, y = kern_cpu__exp_poly(x, &fx);
    /* 2^fx with fx in [-126, 128]: split in two factors so 2^128 does not overflow the
     * exponent field before the product. */
    __m256i e = _mm256_cvtps_epi32(fx);
    __m256i e1 = _mm256_srai_epi32(e, 1), e2 = _mm256_sub_epi32(e, e1);
    __m256 p1 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, _mm256_set1_epi32(127)), 23));
    __m256 p2 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, p1), p2);
}

/* Mask with the first n (0..8) lanes set, for maskload/maskstore. */
static inline __m256i kern_cpu__mask(int n)
{
    static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - n));
}
