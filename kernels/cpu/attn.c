/* Fast attention of one KV head for a group of G query heads, with the compression statistics
 * of kern_attn_stats. Runs entirely on the calling thread (the engine parallelises over
 * sequences x KV heads with kern_cpu_parallel_for), so it is trivially thread-count
 * independent. Keys are processed in tiles of 8 (tile t = entries [8t, 8t+8), fixed by the
 * entry index), and every (query, head) row does the same arithmetic over the tiles up to its
 * last visible one, whatever the other queries of the call: a query's result does not depend
 * on the batch. Per row: pass A scores + masking + lane max, pass B exp(s - max) + lane sum,
 * then the weighted sum of V times 1/sum (no division pass, no per-key branch).
 * Small heads (hd <= 16): K and V are transposed once per call into tiles [hd][8 keys]
 * (exact copies), scores are hd FMA chains with 8 keys in the lanes and the weighted sum keeps
 * one lane-per-key accumulator per dimension, so no horizontal sum per key.
 * Larger heads: row-major dot products (kern_cpu__hsum8 per 8 keys) and a broadcast weighted
 * sum. kern_attn_args.kbias (proportional attention) is added to the scaled scores. Scratch
 * is per thread. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/simd.h"
#include "kernels/ref/kern_ref.h"

#define AI static inline __attribute__((always_inline))
#define SMALL_HD 16   /* heads up to this size take the transposed path */
#define VT_MIN_ROWS 6 /* rows (queries x G) above which V is transposed too */
#ifndef EW_U
#define EW_U 4 /* tiles per step of the fused exp + weighted sum */
#endif

/* exp(x) for x <= 0 (softmax arguments): kern_cpu__exp's polynomial with a single 2^n factor
 * (n >= -126 after the clamp, so it never leaves the normal range). */
AI __m256 exp_neg(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 fx, y = kern_cpu__exp_poly(x, &fx);
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
}

AI float hmax(__m256 v)
{
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

/* ---- per-call layout ---- */

typedef struct attn_ws {
    int T;           /* tiles: ceil(len / 8) */
    int32_t *kp;     /* [8T] key positions, INT32_MAX in the padding */
    int32_t *mk;     /* [8T] per query: -1 where invisible */
    float *kt, *vt;  /* small path: [T][hd][8] transposed K and V (zero padding) */
    float *s;        /* [G][8T] scores, then exp values */
    float *pr;       /* [8T] reduced probabilities (statistics) */
    float *kb;       /* [8T] kern_attn_args.kbias zero-padded, or NULL */
    int tfull;       /* per query: leading tiles with every entry visible (masking them is
                        the identity, so the small path skips it there) */
    float tot[64];   /* per head: sum of the exp values (G <= 64 on the fast path) */
} attn_ws;

/* 8 rows of 8 floats (row stride `stride`) -> dst[d*8 + r] = src[r*stride + d]. */
AI void transpose8x8(const float *src, size_t stride, float *dst)
{
    __m256 r[8];
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + (size_t)i * stride)),
                                    _mm_loadu_ps(src + (size_t)(i + 4) * stride), 1);
        r[i + 4] = _mm256_insertf128_ps(
            _mm256_castps128_ps256(_mm_loadu_ps(src + (size_t)i * stride + 4)),
            _mm_loadu_ps(src + (size_t)(i + 4) * stride + 4), 1);
    }
    for (int h = 0; h < 2; h++) {
        __m256 *a = r + 4 * h;
        __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
        __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
        float *o = dst + 32 * h;
        _mm256_store_ps(o, _mm256_shuffle_ps(t0, t2, 0x44));
        _mm256_store_ps(o + 8, _mm256_shuffle_ps(t0, t2, 0xEE));
        _mm256_store_ps(o + 16, _mm256_shuffle_ps(t1, t3, 0x44));
        _mm256_store_ps(o + 24, _mm256_shuffle_ps(t1, t3, 0xEE));
    }
}

/* x [len][hd] -> xt [T][hd][8] */
static void transpose_kv(const float *x, int len, int hd, int T, float *xt)
{
    for (int t = 0; t < T; t++) {
        float *dst = xt + (size_t)t * hd * 8;
        const float *src = x + (size_t)t * 8 * hd;
        if (8 * t + 8 <= len && (hd & 7) == 0) {
            for (int d = 0; d < hd; d += 8) transpose8x8(src + d, (size_t)hd, dst + (size_t)d * 8);
            continue;
        }
        for (int d = 0; d < hd; d++)
            for (int l = 0; l < 8; l++)
                dst[d * 8 + l] = 8 * t + l < len ? src[(size_t)l * hd + d] : 0.0f;
    }
}

/* Visibility masks of query position qp for the tiles up to the last one with a visible
 * entry (found scanning back from the end); returns that number of tiles. */
static int query_mask(attn_ws *w, int32_t qp)
{
    __m256i vqp = _mm256_set1_epi32(qp);
    int tend = w->T;
    for (; tend > 0; tend--) {
        __m256i inv = _mm256_cmpgt_epi32(_mm256_load_si256((const __m256i *)(w->kp + 8 * (tend - 1))), vqp);
        if (_mm256_movemask_ps(_mm256_castsi256_ps(inv)) != 0xff) break;
    }
    w->tfull = 0;
    for (int t = 0; t < tend; t++) {
        __m256i inv = _mm256_cmpgt_epi32(_mm256_load_si256((const __m256i *)(w->kp + 8 * t)), vqp);
        _mm256_store_si256((__m256i *)(w->mk + 8 * t), inv);
        if (w->tfull == t && _mm256_testz_si256(inv, inv)) w->tfull = t + 1;
    }
    return tend;
}

/* Pass B of one row: s[0, 8T) -> exp(s - max) (0 where masked), stored back; returns the sum
 * (lane sums over the tiles in order, then kern_cpu__hsum). */
AI float row_exp(float *s, const int32_t *mk, int T, float mx)
{
    __m256 vm = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    for (int t = 0; t < T; t++) {
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_load_ps(s + 8 * t), vm));
        e = _mm256_andnot_ps(_mm256_load_ps((const float *)mk + 8 * t), e);
        sum = _mm256_add_ps(sum, e);
        _mm256_store_ps(s + 8 * t, e);
    }
    return kern_cpu__hsum(sum);
}

/* ---- small heads: transposed tiles ---- */

/* Pass A: scores of q (HD dims) against tiles [0, T) into s; returns the max. Each score is
 * q'[0]*k[0] then FMAs over d in order, with q' = q * scale (rounded once per query); four
 * tiles in flight. */
AI float small_scores(const float *q, int HD, const float *kt, const int32_t *mk, const float *kb,
                      int T, int tfull, float scale, float *s)
{
    __m256 qb[SMALL_HD];
#pragma GCC unroll 16
    for (int d = 0; d < SMALL_HD; d++) qb[d] = d < HD ? _mm256_set1_ps(q[d] * scale) : _mm256_setzero_ps();
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int t = 0;
#define SC_TILES(U, MASK)                                                                      \
    {                                                                                          \
        __m256 a[U];                                                                           \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) a[u] = _mm256_mul_ps(qb[0], _mm256_load_ps(kt + (size_t)(t + u) * HD * 8)); \
        _Pragma("GCC unroll 16") for (int d = 1; d < HD; d++)                                  \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                \
                a[u] = _mm256_fmadd_ps(qb[d], _mm256_load_ps(kt + ((size_t)(t + u) * HD + d) * 8), a[u]); \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                                  \
            if (kb) a[u] = _mm256_add_ps(a[u], _mm256_load_ps(kb + 8 * (t + u)));              \
            __m256 x = a[u];                                                                   \
            if (MASK) x = _mm256_blendv_ps(x, ninf, _mm256_load_ps((const float *)mk + 8 * (t + u))); \
            mx = _mm256_max_ps(mx, x);                                                         \
            _mm256_store_ps(s + 8 * (t + u), x);                                               \
        }                                                                                      \
    }
    for (; t + 4 <= tfull; t += 4) SC_TILES(4, 0)
    for (; t + 4 <= T; t += 4) SC_TILES(4, 1)
    for (; t < T; t++) SC_TILES(1, 1)
#undef SC_TILES
    return hmax(mx);
}

/* out[0, HD) = (sum over tiles of e * V) * inv: one lane-per-key accumulator per dimension,
 * FMAs over the tiles in order, then kern_cpu__hsum8 over the lanes. */
AI void small_wsum(const float *e, int HD, const float *vt, int T, float inv, float *out)
{
    for (int d0 = 0; d0 < HD; d0 += 8) {
        int nb = HD - d0 < 8 ? HD - d0 : 8;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int d = 0; d < 8; d++) acc[d] = _mm256_setzero_ps();
        for (int t = 0; t < T; t++) {
            __m256 ev = _mm256_load_ps(e + 8 * t);
            const float *v = vt + ((size_t)t * HD + d0) * 8;
#pragma GCC unroll 8
            for (int d = 0; d < nb; d++) acc[d] = _mm256_fmadd_ps(ev, _mm256_load_ps(v + 8 * d), acc[d]);
        }
        __m256 r = _mm256_mul_ps(kern_cpu__hsum8(acc), _mm256_set1_ps(inv));
        if (nb == 8) _mm256_storeu_ps(out + d0, r);
        else _mm256_maskstore_ps(out + d0, kern_cpu__mask(nb), r);
    }
}

/* small_wsum from row-major V (used when few rows share the call, so transposing V would
 * cost more than it saves), bit-identical to it: accumulator l (a vector over dimensions)
 * takes the keys 8t + l in tile order, padding keys add +0 as the zero rows of the
 * transposed copy do, and the accumulators are summed in kern_cpu__hsum8's lane order. */
AI void small_wsum_rm(const float *e, int HD, const float *v, int len, int T, float inv,
                      float *out)
{
    for (int d0 = 0; d0 < HD; d0 += 8) {
        int nb = HD - d0 < 8 ? HD - d0 : 8;
        __m256i m = kern_cpu__mask(nb);
        __m256 acc[8];
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++) acc[l] = _mm256_setzero_ps();
        for (int t = 0; t < T; t++) {
            const float *vr = v + (size_t)8 * t * HD + d0;
            if (8 * t + 8 <= len) {
#pragma GCC unroll 8
                for (int l = 0; l < 8; l++) {
                    __m256 x = nb == 8 ? _mm256_loadu_ps(vr + (size_t)l * HD) : _mm256_maskload_ps(vr + (size_t)l * HD, m);
                    acc[l] = _mm256_fmadd_ps(_mm256_broadcast_ss(e + 8 * t + l), x, acc[l]);
                }
            } else {
                for (int l = 0; l < 8; l++) {
                    if (8 * t + l < len) {
                        __m256 x = _mm256_maskload_ps(vr + (size_t)l * HD, m);
                        acc[l] = _mm256_fmadd_ps(_mm256_broadcast_ss(e + 8 * t + l), x, acc[l]);
                    } else {
                        acc[l] = _mm256_add_ps(acc[l], _mm256_setzero_ps());
                    }
                }
            }
        }
        __m256 r = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
                                 _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])));
        r = _mm256_mul_ps(r, _mm256_set1_ps(inv));
        if (nb == 8) _mm256_storeu_ps(out + d0, r);
        else _mm256_maskstore_ps(out + d0, m, r);
    }
}

/* HD <= 8: row_exp and small_wsum fused in one pass over the tiles (same arithmetic). */
AI float small_exp_wsum8(float *s, const int32_t *mk, const float *vt, int HD, int T, int tfull,
                         float mx, float *out)
{
    __m256 vm = _mm256_set1_ps(mx), sum = _mm256_setzero_ps(), acc[8];
#pragma GCC unroll 8
    for (int d = 0; d < 8; d++) acc[d] = _mm256_setzero_ps();
    int t = 0;
    /* U tiles per step: their exp chains are independent and interleave; the sums and the
     * accumulators still take the tiles in order */
#define EW_TILES(U, MASK)                                                                      \
    {                                                                                          \
        __m256 e[U];                                                                           \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                                  \
            e[u] = exp_neg(_mm256_sub_ps(_mm256_load_ps(s + 8 * (t + u)), vm));                \
            if (MASK) e[u] = _mm256_andnot_ps(_mm256_load_ps((const float *)mk + 8 * (t + u)), e[u]); \
        }                                                                                      \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                                  \
            sum = _mm256_add_ps(sum, e[u]);                                                    \
            _mm256_store_ps(s + 8 * (t + u), e[u]);                                            \
            const float *v = vt + (size_t)(t + u) * HD * 8;                                    \
            _Pragma("GCC unroll 8") for (int d = 0; d < HD; d++)                               \
                acc[d] = _mm256_fmadd_ps(e[u], _mm256_load_ps(v + 8 * d), acc[d]);             \
        }                                                                                      \
    }
    for (; t + EW_U <= tfull; t += EW_U) EW_TILES(EW_U, 0)
    for (; t + EW_U <= T; t += EW_U) EW_TILES(EW_U, 1)
    for (; t < T; t++) EW_TILES(1, 1)
#undef EW_TILES
    float tot = kern_cpu__hsum(sum);
    __m256 r = _mm256_mul_ps(kern_cpu__hsum8(acc), _mm256_set1_ps(1.0f / tot));
    if (HD == 8) _mm256_storeu_ps(out, r);
    else _mm256_maskstore_ps(out, kern_cpu__mask(HD), r);
    return tot;
}

AI void small_row(const attn_ws *w, const float *q, int HD, int tend, float scale, float *s,
                  float *tot, float *out, const float *v, int len)
{
    float mx = small_scores(q, HD, w->kt, w->mk, w->kb, tend, w->tfull, scale, s);
    if (!w->vt) {
        float sum = row_exp(s, w->mk, tend, mx);
        *tot = sum;
        small_wsum_rm(s, HD, v, len, tend, 1.0f / sum, out);
        return;
    }
    if (HD <= 8) {
        *tot = small_exp_wsum8(s, w->mk, w->vt, HD, tend, w->tfull, mx, out);
        return;
    }
    float sum = row_exp(s, w->mk, tend, mx);
    *tot = sum;
    small_wsum(s, HD, w->vt, tend, 1.0f / sum, out);
}

/* ---- larger heads: row-major K and V ---- */

/* Dot products of q with 8 consecutive keys (rows of hd floats). */
AI __m256 dot8(const float *q, const float *k, int hd)
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

AI float dot1(const float *q, const float *k, int hd)
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

/* Pass A for row-major keys: full tiles by dot8, the tail tile key by key (dot1). */
static float big_scores(const float *q, int hd, const float *k, int len, const attn_ws *w,
                        int tend, float scale, float *s)
{
    const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    for (int t = 0; t < tend; t++) {
        __m256 inv = _mm256_load_ps((const float *)w->mk + 8 * t), x;
        if (8 * t + 8 <= len) {
            x = _mm256_mul_ps(dot8(q, k + (size_t)t * 8 * hd, hd), vscale);
        } else {
            float tmp[8];
            for (int l = 0; l < 8; l++) {
                int j = 8 * t + l;
                tmp[l] = j < len && w->mk[j] == 0 ? dot1(q, k + (size_t)j * hd, hd) * scale : 0.0f;
            }
            x = _mm256_loadu_ps(tmp);
        }
        if (w->kb) x = _mm256_add_ps(x, _mm256_load_ps(w->kb + 8 * t));
        x = _mm256_blendv_ps(x, ninf, inv);
        mx = _mm256_max_ps(mx, x);
        _mm256_store_ps(s + 8 * t, x);
    }
    return hmax(mx);
}

/* o[0, hd) = (sum_j p[j] * v[j]) * inv over j < len (masked entries have p = 0). */
static void big_wsum(const float *p, const float *v, int len, int hd, float inv, float *o)
{
    __m256 vinv = _mm256_set1_ps(inv);
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) { /* 8 accumulators in registers */
        __m256 acc[8];
        for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
        for (int j = 0; j < len; j++) {
            __m256 pv = _mm256_broadcast_ss(p + j);
            const float *vj = v + (size_t)j * hd + d0;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) acc[r] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vj + 8 * r), acc[r]);
        }
        for (int r = 0; r < 8; r++) _mm256_storeu_ps(o + d0 + 8 * r, _mm256_mul_ps(acc[r], vinv));
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
        __m256 r = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        _mm256_maskstore_ps(o + d0, m, _mm256_mul_ps(r, vinv));
    }
}

/* ---- statistics ---- */

/* pr[8t..] = mean (p / G summed in g order, as the reference) or max over the group of
 * p = e / tot[g], for tiles t < tend. */
static void stats_reduce(const attn_ws *w, int tend, int G, int group_max)
{
    int lenp = 8 * w->T, pow2 = (G & (G - 1)) == 0; /* then p * (1/G) == p / G exactly */
    __m256 vg = _mm256_set1_ps((float)G), vinv = _mm256_set1_ps(1.0f / (float)G);
    for (int j = 0; j < 8 * tend; j += 8) {
        __m256 r = _mm256_setzero_ps();
        for (int g = 0; g < G; g++) {
            __m256 p = _mm256_div_ps(_mm256_load_ps(w->s + (size_t)g * lenp + j), _mm256_set1_ps(w->tot[g]));
            if (group_max) r = _mm256_max_ps(r, p);
            else r = _mm256_add_ps(r, pow2 ? _mm256_mul_ps(p, vinv) : _mm256_div_ps(p, vg));
        }
        _mm256_store_ps(w->pr + j, r);
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

/* ---- entry ---- */

/* Rows of query i for the small path, with HD a constant after inlining. */
AI void small_query(const kern_attn_args *a, attn_ws *w, int i, int tend, int HD)
{
    int lenp = 8 * w->T;
    for (int g = 0; g < a->G; g++)
        small_row(w, a->q + (size_t)i * a->q_stride + (size_t)g * HD, HD, tend, a->scale,
                  w->s + (size_t)g * lenp, &w->tot[g], a->out + (size_t)i * a->o_stride + (size_t)g * HD,
                  a->v, a->len);
}

static void big_query(const kern_attn_args *a, attn_ws *w, int i, int tend)
{
    int lenp = 8 * w->T, hd = a->hd, n = 8 * tend < a->len ? 8 * tend : a->len;
    for (int g = 0; g < a->G; g++) {
        float *s = w->s + (size_t)g * lenp;
        float mx = big_scores(a->q + (size_t)i * a->q_stride + (size_t)g * hd, hd, a->k, a->len,
                              w, tend, a->scale, s);
        float sum = row_exp(s, w->mk, tend, mx);
        w->tot[g] = sum;
        big_wsum(s, a->v, n, hd, 1.0f / sum, a->out + (size_t)i * a->o_stride + (size_t)g * hd);
    }
}

em_status kern_cpu__attn(void *ctx, const kern_attn_args *a)
{
    em_status status = kern_check_attn(a);
    if (status != EM_OK || a->n_q == 0) return status;
    int G = a->G, hd = a->hd, len = a->len, n_q = a->n_q;
    kern_attn_stats *st = a->stats;
    if (len == 0) {
        for (int i = 0; i < n_q; i++) zero_out(a, i);
        return EM_OK;
    }
    attn_ws w;
    w.T = (len + 7) / 8;
    int small = hd <= SMALL_HD;
    size_t lenp = (size_t)8 * w.T;
    size_t need = lenp * (3 + (a->kbias ? 1 : 0) + (size_t)G + (small ? 2 * (size_t)hd : 0));
    float *buf = G <= 64 ? kern_cpu__scratch(KERN_CPU__SCRATCH_ATTN, need) : NULL;
    if (!buf) /* out of memory or a huge group: the reference needs only two rows */
        return kern_ref_attn(NULL, a);
    w.kp = (int32_t *)buf;
    w.mk = (int32_t *)(buf + lenp);
    w.pr = buf + 2 * lenp;
    w.s = buf + 3 * lenp;
    w.kt = small ? w.s + (size_t)G * lenp : NULL;
    /* V transposed only when enough rows share it (else its row-major twin) */
    w.vt = small && (long)n_q * G > VT_MIN_ROWS ? w.kt + lenp * hd : NULL;
    memcpy(w.kp, a->kpos, sizeof(int32_t) * (size_t)len);
    for (size_t j = (size_t)len; j < lenp; j++) w.kp[j] = INT32_MAX;
    w.kb = NULL;
    if (a->kbias) { /* after the other buffers (kt/vt end at s + (G + 2 hd) * lenp) */
        w.kb = w.s + lenp * ((size_t)G + (small ? 2 * (size_t)hd : 0));
        memcpy(w.kb, a->kbias, sizeof(float) * (size_t)len);
        for (size_t j = (size_t)len; j < lenp; j++) w.kb[j] = 0.0f;
    }
    if (small) {
        transpose_kv(a->k, len, hd, w.T, w.kt);
        if (w.vt) transpose_kv(a->v, len, hd, w.T, w.vt);
    }
    for (int i = 0; i < n_q; i++) {
        int row = st && st->row_ptrs ? i - (n_q - st->n_rows) : -1;
        int32_t qp = a->q_pos[i];
        int tend = query_mask(&w, qp);
        if (tend == 0) {
            zero_out(a, i);
            if (row >= 0) memset(st->row_ptrs[row], 0, sizeof(float) * (size_t)len);
            continue;
        }
        if (hd == 8) small_query(a, &w, i, tend, 8);
        else if (hd == 16) small_query(a, &w, i, tend, 16);
        else if (small) small_query(a, &w, i, tend, hd);
        else big_query(a, &w, i, tend);
        if (st) {
            int n = 8 * tend < len ? 8 * tend : len;
            stats_reduce(&w, tend, G, st->group_max);
            if (n < len) memset(w.pr + n, 0, sizeof(float) * (size_t)(len - n));
            stats_accumulate(st, w.pr, a->kpos, qp, n);
            if (row >= 0) memcpy(st->row_ptrs[row], w.pr, sizeof(float) * (size_t)len);
        }
    }
    return EM_OK;
}
