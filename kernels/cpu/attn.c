/* Fast attention of one KV head for a group of G query heads, with the compression statistics
 * of kern_attn_stats. Runs entirely on the calling thread (the engine parallelises over
 * sequences x KV heads with kern_cpu_parallel_for), so it is trivially thread-count
 * independent. Per query: scores for 8 keys at a time (8 FMA accumulators + kern_cpu__hsum8),
 * masked by position, vector exp softmax, then out += p * v, all limited to the key blocks the
 * query can see (causal prefill skips the invisible tail). A query's result does not depend
 * on the other queries of the call. Scratch is per thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/simd.h"
#include "kernels/ref/kern_ref.h"

/* ---- kernels ---- */

/* Dot products of q with 8 consecutive keys (rows of hd floats). */
static inline __m256 dot8(const float *q, const float *k, int hd)
{
    __m256 acc[8];
    for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 qv = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + (size_t)r * hd + d), acc[r]);
    }
    if (d < hd) {
        __m256i m = kern_cpu__mask(hd - d);
        __m256 qv = _mm256_maskload_ps(q + d, m);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++)
            acc[r] = _mm256_fmadd_ps(qv, _mm256_maskload_ps(k + (size_t)r * hd + d, m), acc[r]);
    }
    return kern_cpu__hsum8(acc);
}

static inline float dot1(const float *q, const float *k, int hd)
{
    __m256 acc = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= hd; d += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), acc);
    if (d < hd) {
        __m256i m = kern_cpu__mask(hd - d);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(q + d, m), _mm256_maskload_ps(k + d, m), acc);
    }
    return kern_cpu__hsum(acc);
}

/* o[0..hd) = sum_j p[j] * v[j] over entries with p[j] != 0. */
static void weighted_sum(const float *p, const float *v, int len, int hd, float *o)
{
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) { /* 8 accumulators in registers */
        __m256 acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
        for (int j = 0; j < len; j++) {
            if (p[j] == 0.0f) continue;
            __m256 pv = _mm256_set1_ps(p[j]);
            const float *vj = v + (size_t)j * hd + d0;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vj + 8 * r), acc[r]);
        }
        for (int r = 0; r < 8; r++) _mm256_storeu_ps(o + d0 + 8 * r, acc[r]);
    }
    for (; d0 < hd; d0 += 8) { /* remaining vectors one at a time, last one masked; four
                                  accumulators over j (fixed order) hide the FMA latency */
        __m256i m = kern_cpu__mask(hd - d0 < 8 ? hd - d0 : 8);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *vd = v + d0;
        int j = 0;
#define WS_LOOP(LOAD)                                                                          \
    for (; j + 4 <= len; j += 4) {                                                             \
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), LOAD(vd + (size_t)j * hd), a0);       \
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 1), LOAD(vd + (size_t)(j + 1) * hd), a1); \
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 2), LOAD(vd + (size_t)(j + 2) * hd), a2); \
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 3), LOAD(vd + (size_t)(j + 3) * hd), a3); \
    }                                                                                          \
    for (; j < len; j++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), LOAD(vd + (size_t)j * hd), a0);
#define WS_MASKED(ptr) _mm256_maskload_ps(ptr, m)
        if (hd - d0 >= 8) {
            WS_LOOP(_mm256_loadu_ps)
        } else {
            WS_LOOP(WS_MASKED)
        }
#undef WS_LOOP
#undef WS_MASKED
        _mm256_maskstore_ps(o + d0, m, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

/* pr[j] = mean (p / G summed in g order, as the reference) or max over the group, for
 * j < jend (p rows have stride lenp). */
static void stats_reduce(const float *buf, int lenp, int jend, int G, int group_max, float *pr)
{
    int pow2 = (G & (G - 1)) == 0; /* then p * (1/G) == p / G exactly */
    __m256 vg = _mm256_set1_ps((float)G), vinv = _mm256_set1_ps(1.0f / (float)G);
    for (int j = 0; j < jend; j += 8) {
        __m256 r = _mm256_setzero_ps();
        for (int g = 0; g < G; g++) {
            __m256 p = _mm256_loadu_ps(buf + (size_t)g * lenp + j);
            if (group_max) r = _mm256_max_ps(r, p);
            else r = _mm256_add_ps(r, pow2 ? _mm256_mul_ps(p, vinv) : _mm256_div_ps(p, vg));
        }
        _mm256_storeu_ps(pr + j, r);
    }
}

/* col_sum += pr, col_sqsum += pr^2, col_cnt += 1 over the entries query position qp sees;
 * invisible entries are left bit-for-bit untouched. */
static void stats_accumulate(kern_attn_stats *st, const float *pr, const int32_t *kpos,
                             int32_t qp, int len)
{
    int len8 = len & ~7, j = 0;
    __m256i vqp = _mm256_set1_epi32(qp);
    for (; j < len8; j += 8) {
        __m256i inv = _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)(kpos + j)), vqp);
        __m256 invf = _mm256_castsi256_ps(inv), p = _mm256_loadu_ps(pr + j);
        if (st->col_sum) {
            __m256 o = _mm256_loadu_ps(st->col_sum + j);
            _mm256_storeu_ps(st->col_sum + j, _mm256_blendv_ps(_mm256_add_ps(o, p), o, invf));
        }
        if (st->col_sqsum) {
            __m256 o = _mm256_loadu_ps(st->col_sqsum + j);
            __m256 n = _mm256_add_ps(o, _mm256_mul_ps(p, p));
            _mm256_storeu_ps(st->col_sqsum + j, _mm256_blendv_ps(n, o, invf));
        }
        if (st->col_cnt) { /* visible lanes: cnt - (-1) */
            __m256i c = _mm256_loadu_si256((const __m256i *)(st->col_cnt + j));
            __m256i vis = _mm256_andnot_si256(inv, _mm256_set1_epi32(-1));
            _mm256_storeu_si256((__m256i *)(st->col_cnt + j), _mm256_sub_epi32(c, vis));
        }
    }
    for (; j < len; j++) {
        if (kpos[j] > qp) continue;
        if (st->col_sum) st->col_sum[j] += pr[j];
        if (st->col_sqsum) st->col_sqsum[j] += pr[j] * pr[j];
        if (st->col_cnt) st->col_cnt[j] += 1;
    }
}

static void zero_out(const kern_attn_args *a, int i)
{
    for (int g = 0; g < a->G; g++)
        memset(a->out + (size_t)i * a->o_stride + (size_t)g * a->hd, 0, sizeof(float) * (size_t)a->hd);
}

void kern_cpu__attn(void *ctx, const kern_attn_args *a)
{
    int G = a->G, hd = a->hd, len = a->len, n_q = a->n_q;
    if (n_q <= 0 || G <= 0 || hd <= 0) return;
    int lenp = (len + 7) & ~7, len8 = len & ~7;
    kern_attn_stats *st = a->stats;
    size_t need = (size_t)(G + 1) * (size_t)(lenp > 0 ? lenp : 8);
    float *buf = len > 0 ? kern_cpu__scratch(KERN_CPU__SCRATCH_ATTN, need) : NULL;
    if (len > 0 && !buf) { /* out of memory: the reference is slow but needs no scratch */
        kern_ref_attn(NULL, a);
        return;
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY), vscale = _mm256_set1_ps(a->scale);
    for (int i = 0; i < n_q; i++) {
        int row = st && st->row_ptrs ? i - (n_q - st->n_rows) : -1;
        int32_t qp = a->q_pos[i];
        if (len == 0) {
            zero_out(a, i);
            continue;
        }
        float *pr = buf + (size_t)G * lenp; /* [lenp] reduced probabilities */
        /* 1. scores s[g][j] (scaled), -inf where invisible or padding */
        __m256i vqp = _mm256_set1_epi32(qp);
        int jend = 0; /* entries >= jend (a multiple of 8) are all invisible */
        for (int j = 0; j < len8; j += 8) {
            __m256i kp = _mm256_loadu_si256((const __m256i *)(a->kpos + j));
            __m256 inv = _mm256_castsi256_ps(_mm256_cmpgt_epi32(kp, vqp));
            int all_inv = _mm256_movemask_ps(inv) == 0xff;
            if (!all_inv) jend = j + 8;
            for (int g = 0; g < G; g++) {
                float *s = buf + (size_t)g * lenp + j;
                if (all_inv) {
                    _mm256_storeu_ps(s, ninf);
                    continue;
                }
                const float *q = a->q + (size_t)i * a->q_stride + (size_t)g * hd;
                __m256 sc = _mm256_mul_ps(dot8(q, a->k + (size_t)j * hd, hd), vscale);
                _mm256_storeu_ps(s, _mm256_blendv_ps(sc, ninf, inv));
            }
        }
        for (int g = 0; g < G; g++) {
            float *s = buf + (size_t)g * lenp;
            const float *q = a->q + (size_t)i * a->q_stride + (size_t)g * hd;
            for (int j = len8; j < lenp; j++) {
                if (j < len && a->kpos[j] <= qp) {
                    s[j] = dot1(q, a->k + (size_t)j * hd, hd) * a->scale;
                    jend = lenp;
                } else {
                    s[j] = -INFINITY;
                }
            }
        }
        if (jend == 0) {
            zero_out(a, i);
            if (row >= 0) memset(st->row_ptrs[row], 0, sizeof(float) * (size_t)len);
            continue;
        }
        /* 2. softmax per head in place: s -> p (0 where invisible) */
        for (int g = 0; g < G; g++) {
            float *s = buf + (size_t)g * lenp;
            __m256 vm = ninf;
            for (int j = 0; j < jend; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            __m256 mx = _mm256_set1_ps(_mm_cvtss_f32(m4)), acc = _mm256_setzero_ps();
            for (int j = 0; j < jend; j += 8) {
                __m256 x = _mm256_loadu_ps(s + j);
                __m256 e = kern_cpu__exp(_mm256_sub_ps(x, mx));
                e = _mm256_andnot_ps(_mm256_cmp_ps(x, ninf, _CMP_EQ_OQ), e);
                acc = _mm256_add_ps(acc, e);
                _mm256_storeu_ps(s + j, e);
            }
            __m256 sum = _mm256_set1_ps(kern_cpu__hsum(acc));
            for (int j = 0; j < jend; j += 8)
                _mm256_storeu_ps(s + j, _mm256_div_ps(_mm256_loadu_ps(s + j), sum));
        }
        /* 3. statistics: reduce over the group (same order as the reference) */
        if (st) {
            stats_reduce(buf, lenp, jend, G, st->group_max, pr);
            if (jend < lenp) memset(pr + jend, 0, sizeof(float) * (size_t)(lenp - jend));
            stats_accumulate(st, pr, a->kpos, qp, jend < len ? jend : len);
            if (row >= 0) memcpy(st->row_ptrs[row], pr, sizeof(float) * (size_t)len);
        }
        /* 4. outputs */
        for (int g = 0; g < G; g++)
            weighted_sum(buf + (size_t)g * lenp, a->v, jend < len ? jend : len, hd,
                         a->out + (size_t)i * a->o_stride + (size_t)g * hd);
    }
}
