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
 * sum, one row at a time, or - for calls of 2 rows or more with hd % 8 == 0 - the same
 * arithmetic register-blocked over several rows, so that each K/V vector loaded serves
 * several rows (see "many rows" below; the bits of a row do not depend on the path).
 * kern_attn_args.kbias (proportional attention) is added to the scaled scores. Scratch is per
 * thread. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/simd.h"
#include "kernels/ref/kern_ref.h"

#define AI static inline __attribute__((always_inline))
/* a pass of its own: keeps the register allocation of its loops local */
#define NI          static __attribute__((noinline))
#define SMALL_HD    16 /* heads up to this size take the transposed path */
#define VT_MIN_ROWS 6  /* rows (queries x G) above which V is transposed too */
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
    int T;          /* tiles: ceil(len / 8) */
    int32_t *kp;    /* [8T] key positions, INT32_MAX in the padding */
    int32_t *mk;    /* [8T] per query: -1 where invisible */
    float *kt, *vt; /* small path: [T][hd][8] transposed K and V (zero padding) */
    float *s;       /* [G][8T] scores, then exp values */
    float *pr;      /* [8T] reduced probabilities (statistics) */
    float *kb;      /* [8T] kern_attn_args.kbias zero-padded, or NULL */
    int tfull;      /* per query: leading tiles with every entry visible (masking them is
                       the identity, so the small path skips it there) */
    float tot[64];  /* per head: sum of the exp values (G <= 64 on the fast path) */
} attn_ws;

/* 8 rows of 8 floats (row stride `stride`) -> dst[d*8 + r] = src[r*stride + d]. */
AI void transpose8x8(const float *src, size_t stride, float *dst)
{
    __m256 r[8];
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + (size_t)i * stride)),
                                    _mm_loadu_ps(src + (size_t)(i + 4) * stride), 1);
        r[i + 4] =
            _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(src + (size_t)i * stride + 4)),
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
            for (int d = 0; d < hd; d += 8)
                transpose8x8(src + d, (size_t)hd, dst + (size_t)d * 8);
            continue;
        }
        for (int d = 0; d < hd; d++)
            for (int l = 0; l < 8; l++)
                dst[d * 8 + l] = 8 * t + l < len ? src[(size_t)l * hd + d] : 0.0f;
    }
}

/* Tiles up to the last one with an entry visible from query position qp (found scanning back
 * from the end). */
static int query_tend(const attn_ws *w, int32_t qp)
{
    __m256i vqp = _mm256_set1_epi32(qp);
    int tend = w->T;
    for (; tend > 0; tend--) {
        __m256i inv =
            _mm256_cmpgt_epi32(_mm256_load_si256((const __m256i *)(w->kp + 8 * (tend - 1))), vqp);
        if (_mm256_movemask_ps(_mm256_castsi256_ps(inv)) != 0xff)
            break;
    }
    return tend;
}

/* Visibility masks of query position qp for its query_tend tiles; returns that number. */
static int query_mask(attn_ws *w, int32_t qp)
{
    __m256i vqp = _mm256_set1_epi32(qp);
    int tend = query_tend(w, qp);
    w->tfull = 0;
    for (int t = 0; t < tend; t++) {
        __m256i inv = _mm256_cmpgt_epi32(_mm256_load_si256((const __m256i *)(w->kp + 8 * t)), vqp);
        _mm256_store_si256((__m256i *)(w->mk + 8 * t), inv);
        if (w->tfull == t && _mm256_testz_si256(inv, inv))
            w->tfull = t + 1;
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

/* row_exp with the masks computed from the key positions (kp > qp: masked), same bits. */
AI float row_exp_at(float *s, const int32_t *kp, int32_t qp, int T, float mx)
{
    __m256 vm = _mm256_set1_ps(mx), sum = _mm256_setzero_ps();
    __m256i vqp = _mm256_set1_epi32(qp);
    for (int t = 0; t < T; t++) {
        __m256 e = exp_neg(_mm256_sub_ps(_mm256_load_ps(s + 8 * t), vm));
        __m256i inv = _mm256_cmpgt_epi32(_mm256_load_si256((const __m256i *)(kp + 8 * t)), vqp);
        e = _mm256_andnot_ps(_mm256_castsi256_ps(inv), e);
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
    for (int d = 0; d < SMALL_HD; d++)
        qb[d] = d < HD ? _mm256_set1_ps(q[d] * scale) : _mm256_setzero_ps();
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int t = 0;
#define SC_TILES(U, MASK)                                                                          \
    {                                                                                              \
        __m256 a[U];                                                                               \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) a[u] =                                 \
            _mm256_mul_ps(qb[0], _mm256_load_ps(kt + (size_t)(t + u) * HD * 8));                   \
        _Pragma("GCC unroll 16") for (int d = 1; d < HD; d++)                                      \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) a[u] =                             \
                _mm256_fmadd_ps(qb[d], _mm256_load_ps(kt + ((size_t)(t + u) * HD + d) * 8), a[u]); \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                        \
        {                                                                                          \
            if (kb)                                                                                \
                a[u] = _mm256_add_ps(a[u], _mm256_load_ps(kb + 8 * (t + u)));                      \
            __m256 x = a[u];                                                                       \
            if (MASK)                                                                              \
                x = _mm256_blendv_ps(x, ninf, _mm256_load_ps((const float *)mk + 8 * (t + u)));    \
            mx = _mm256_max_ps(mx, x);                                                             \
            _mm256_store_ps(s + 8 * (t + u), x);                                                   \
        }                                                                                          \
    }
    for (; t + 4 <= tfull; t += 4)
        SC_TILES(4, 0)
    for (; t + 4 <= T; t += 4)
        SC_TILES(4, 1)
    for (; t < T; t++)
        SC_TILES(1, 1)
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
        for (int d = 0; d < 8; d++)
            acc[d] = _mm256_setzero_ps();
        for (int t = 0; t < T; t++) {
            __m256 ev = _mm256_load_ps(e + 8 * t);
            const float *v = vt + ((size_t)t * HD + d0) * 8;
#pragma GCC unroll 8
            for (int d = 0; d < nb; d++)
                acc[d] = _mm256_fmadd_ps(ev, _mm256_load_ps(v + 8 * d), acc[d]);
        }
        __m256 r = _mm256_mul_ps(kern_cpu__hsum8(acc), _mm256_set1_ps(inv));
        if (nb == 8)
            _mm256_storeu_ps(out + d0, r);
        else
            _mm256_maskstore_ps(out + d0, kern_cpu__mask(nb), r);
    }
}

/* small_wsum from row-major V (used when few rows share the call, so transposing V would
 * cost more than it saves), bit-identical to it: accumulator l (a vector over dimensions)
 * takes the keys 8t + l in tile order, padding keys add +0 as the zero rows of the
 * transposed copy do, and the accumulators are summed in kern_cpu__hsum8's lane order. */
AI void small_wsum_rm(const float *e, int HD, const float *v, int len, int T, float inv, float *out)
{
    for (int d0 = 0; d0 < HD; d0 += 8) {
        int nb = HD - d0 < 8 ? HD - d0 : 8;
        __m256i m = kern_cpu__mask(nb);
        __m256 acc[8];
#pragma GCC unroll 8
        for (int l = 0; l < 8; l++)
            acc[l] = _mm256_setzero_ps();
        for (int t = 0; t < T; t++) {
            const float *vr = v + (size_t)8 * t * HD + d0;
            if (8 * t + 8 <= len) {
#pragma GCC unroll 8
                for (int l = 0; l < 8; l++) {
                    __m256 x = nb == 8 ? _mm256_loadu_ps(vr + (size_t)l * HD)
                                       : _mm256_maskload_ps(vr + (size_t)l * HD, m);
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
        __m256 r = _mm256_add_ps(
            _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
            _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])));
        r = _mm256_mul_ps(r, _mm256_set1_ps(inv));
        if (nb == 8)
            _mm256_storeu_ps(out + d0, r);
        else
            _mm256_maskstore_ps(out + d0, m, r);
    }
}

/* HD <= 8: row_exp and small_wsum fused in one pass over the tiles (same arithmetic). */
AI float small_exp_wsum8(float *s, const int32_t *mk, const float *vt, int HD, int T, int tfull,
                         float mx, float *out)
{
    __m256 vm = _mm256_set1_ps(mx), sum = _mm256_setzero_ps(), acc[8];
#pragma GCC unroll 8
    for (int d = 0; d < 8; d++)
        acc[d] = _mm256_setzero_ps();
    int t = 0;
    /* U tiles per step: their exp chains are independent and interleave; the sums and the
     * accumulators still take the tiles in order */
#define EW_TILES(U, MASK)                                                                       \
    {                                                                                           \
        __m256 e[U];                                                                            \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                     \
        {                                                                                       \
            e[u] = exp_neg(_mm256_sub_ps(_mm256_load_ps(s + 8 * (t + u)), vm));                 \
            if (MASK)                                                                           \
                e[u] = _mm256_andnot_ps(_mm256_load_ps((const float *)mk + 8 * (t + u)), e[u]); \
        }                                                                                       \
        _Pragma("GCC unroll 4") for (int u = 0; u < U; u++)                                     \
        {                                                                                       \
            sum = _mm256_add_ps(sum, e[u]);                                                     \
            _mm256_store_ps(s + 8 * (t + u), e[u]);                                             \
            const float *v = vt + (size_t)(t + u) * HD * 8;                                     \
            _Pragma("GCC unroll 8") for (int d = 0; d < HD; d++) acc[d] =                       \
                _mm256_fmadd_ps(e[u], _mm256_load_ps(v + 8 * d), acc[d]);                       \
        }                                                                                       \
    }
    for (; t + EW_U <= tfull; t += EW_U)
        EW_TILES(EW_U, 0)
    for (; t + EW_U <= T; t += EW_U)
        EW_TILES(EW_U, 1)
    for (; t < T; t++)
        EW_TILES(1, 1)
#undef EW_TILES
    float tot = kern_cpu__hsum(sum);
    __m256 r = _mm256_mul_ps(kern_cpu__hsum8(acc), _mm256_set1_ps(1.0f / tot));
    if (HD == 8)
        _mm256_storeu_ps(out, r);
    else
        _mm256_maskstore_ps(out, kern_cpu__mask(HD), r);
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
    for (int r = 0; r < 8; r++)
        acc[r] = _mm256_setzero_ps();
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

/* Scaled dot products of q with the keys of the last, partial tile t (8t + 8 > len), key by
 * key (dot1); 0 for the padding and the keys masked in mk (8 entries of the tile). */
static __m256 tail_dots(const float *q, int hd, const float *k, int len, int t, const int32_t *mk,
                        float scale)
{
    float tmp[8];
    for (int l = 0; l < 8; l++) {
        int j = 8 * t + l;
        tmp[l] = j < len && mk[l] == 0 ? dot1(q, k + (size_t)j * hd, hd) * scale : 0.0f;
    }
    return _mm256_loadu_ps(tmp);
}

/* Pass A for row-major keys: full tiles by dot8 times scale, the tail tile by tail_dots; plus
 * kbias, masked entries -inf; returns the max. */
static float big_scores(const float *q, int hd, const float *k, int len, const attn_ws *w, int tend,
                        float scale, float *s)
{
    const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    for (int t = 0; t < tend; t++) {
        __m256 inv = _mm256_load_ps((const float *)w->mk + 8 * t), x;
        if (8 * t + 8 <= len)
            x = _mm256_mul_ps(dot8(q, k + (size_t)t * 8 * hd, hd), vscale);
        else
            x = tail_dots(q, hd, k, len, t, w->mk + 8 * t, scale);
        if (w->kb)
            x = _mm256_add_ps(x, _mm256_load_ps(w->kb + 8 * t));
        x = _mm256_blendv_ps(x, ninf, inv);
        mx = _mm256_max_ps(mx, x);
        _mm256_store_ps(s + 8 * t, x);
    }
    return hmax(mx);
}

/* o[d0, hd) for the dimensions past the multiples of 64: vectors one at a time, last one
 * masked; four accumulators over j (key j < 4 floor(len / 4) goes to j % 4, the rest to the
 * first: fixed order) hide the FMA latency, summed (0 + 1) + (2 + 3), times inv. */
static void wsum_tail(const float *p, const float *v, int len, int hd, int d0, float inv, float *o)
{
    __m256 vinv = _mm256_set1_ps(inv);
    for (; d0 < hd; d0 += 8) {
        __m256i m = kern_cpu__mask(hd - d0 < 8 ? hd - d0 : 8);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        const float *vd = v + d0;
        int j = 0;
#define WS_LOOP(LOAD)                                                                              \
    for (; j + 4 <= len; j += 4) {                                                                 \
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), LOAD(vd + (size_t)j * hd), a0);           \
        a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 1), LOAD(vd + (size_t)(j + 1) * hd), a1); \
        a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 2), LOAD(vd + (size_t)(j + 2) * hd), a2); \
        a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j + 3), LOAD(vd + (size_t)(j + 3) * hd), a3); \
    }                                                                                              \
    for (; j < len; j++)                                                                           \
        a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), LOAD(vd + (size_t)j * hd), a0);
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

/* o[0, hd) = (sum_j p[j] * v[j]) * inv over j < len (masked entries have p = 0): each
 * dimension of the multiples of 64 is one FMA chain over j from +0 in order, times inv;
 * the rest by wsum_tail. */
static void big_wsum(const float *p, const float *v, int len, int hd, float inv, float *o)
{
    __m256 vinv = _mm256_set1_ps(inv);
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) { /* 8 accumulators in registers */
        __m256 acc[8];
        for (int r = 0; r < 8; r++)
            acc[r] = _mm256_setzero_ps();
        for (int j = 0; j < len; j++) {
            __m256 pv = _mm256_broadcast_ss(p + j);
            const float *vj = v + (size_t)j * hd + d0;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                acc[r] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vj + 8 * r), acc[r]);
        }
        for (int r = 0; r < 8; r++)
            _mm256_storeu_ps(o + d0 + 8 * r, _mm256_mul_ps(acc[r], vinv));
    }
    wsum_tail(p, v, len, hd, d0, inv, o);
}

/* ---- statistics ---- */

/* pr[8t..] = mean (p / G summed in g order, as the reference) or max over the group of
 * p = e / tot[g], for tiles t < tend; head g's exp values at s + g * lenp. */
static void stats_reduce(const float *s, size_t lenp, const float *tot, float *pr, int tend, int G,
                         int group_max)
{
    int pow2 = (G & (G - 1)) == 0; /* then p * (1/G) == p / G exactly */
    __m256 vg = _mm256_set1_ps((float)G), vinv = _mm256_set1_ps(1.0f / (float)G);
    for (int j = 0; j < 8 * tend; j += 8) {
        __m256 r = _mm256_setzero_ps();
        for (int g = 0; g < G; g++) {
            __m256 p =
                _mm256_div_ps(_mm256_load_ps(s + (size_t)g * lenp + j), _mm256_set1_ps(tot[g]));
            if (group_max)
                r = _mm256_max_ps(r, p);
            else
                r = _mm256_add_ps(r, pow2 ? _mm256_mul_ps(p, vinv) : _mm256_div_ps(p, vg));
        }
        _mm256_store_ps(pr + j, r);
    }
}

/* col_sum += pr, col_sqsum += pr^2, col_cnt += 1 over the entries query position qp sees;
 * invisible entries are left bit-for-bit untouched. */
static void stats_accumulate(kern_attn_stats *st, const float *pr, const int32_t *kpos, int32_t qp,
                             int len)
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
        if (kpos[j] > qp)
            continue;
        if (st->col_sum)
            st->col_sum[j] += pr[j];
        if (st->col_sqsum)
            st->col_sqsum[j] += pr[j] * pr[j];
        if (st->col_cnt)
            st->col_cnt[j] += 1;
    }
}

/* The statistics of query i (exp values of its G heads at s + g * lenp, sums tot[g]) and its
 * kern_attn_stats.row_ptrs row. */
static void query_stats(const kern_attn_args *a, attn_ws *w, int i, int tend, const float *s,
                        const float *tot)
{
    kern_attn_stats *st = a->stats;
    int len = a->len, n = 8 * tend < len ? 8 * tend : len;
    int row = st->row_ptrs ? i - (a->n_q - st->n_rows) : -1;
    stats_reduce(s, (size_t)8 * w->T, tot, w->pr, tend, a->G, st->group_max);
    if (n < len)
        memset(w->pr + n, 0, sizeof(float) * (size_t)(len - n));
    stats_accumulate(st, w->pr, a->kpos, a->q_pos[i], n);
    if (row >= 0)
        memcpy(st->row_ptrs[row], w->pr, sizeof(float) * (size_t)len);
}

static void zero_out(const kern_attn_args *a, int i)
{
    for (int g = 0; g < a->G; g++)
        memset(a->out + (size_t)i * a->o_stride + (size_t)g * a->hd, 0,
               sizeof(float) * (size_t)a->hd);
}

/* ---- larger heads, many rows: register-blocked ---- */

/* Calls with at least BLK_MIN_ROWS rows (queries x G) and hd % 8 == 0 run their rows in blocks
 * of whole queries (about BLK_ROWS rows). Each row does exactly big_query's arithmetic (same
 * chains, same order, so a row's bits do not depend on the path, the block or the other
 * rows), but K and V are read once per micro-kernel of several rows instead of once per row:
 *   scores  - tile by tile; SR rows x 4 keys of dot8 accumulators per step, then dot8's
 *             kern_cpu__hsum8 tree; the tile stays in L1 for all the block's rows;
 *   softmax - per row (row_exp), then the statistics per query in query order;
 *   V       - chunks of VJ keys (in L1) x VD vectors of 8 dims x VR rows: each dimension's
 *             chain over the keys in order, its accumulator kept in the output row between
 *             chunks; dimensions past the multiples of 64 by wsum_tail per row.
 * Rows of a block that see fewer tiles than the block's last one get -inf scores, then zero
 * probabilities there: max, sums and FMA chains are unchanged by them (+0 terms; V entries
 * are finite, as the per-row path already assumes for the masked entries it multiplies). */
#ifndef BLK_MIN_ROWS
#define BLK_MIN_ROWS 2
#endif
#ifndef BLK_ROWS
#define BLK_ROWS 48 /* rows per block, rounded down to whole queries (at least one) */
#endif
#define BLK_MAX         64 /* rows per block at most: max(BLK_ROWS, G) with G <= 64 */
#define BLK_SCORE_BYTES ((size_t)4 << 20) /* scores of a block's rows at most (scratch) */
_Static_assert(BLK_ROWS <= BLK_MAX, "a block's rows must fit its arrays");
#ifndef SR
#define SR 3 /* rows per score micro-kernel */
#endif
#ifndef VR
#define VR 4 /* rows per weighted-sum micro-kernel */
#endif
#ifndef VD
#define VD 2 /* 8-float vectors of dimensions per weighted-sum micro-kernel */
#endif
#ifndef VJ
#define VJ 64 /* keys per weighted-sum chunk */
#endif

typedef struct blk_row {
    const float *q;
    float *s, *out; /* [8T] scores, then exp values; output row (hd floats) */
    int32_t qp;
    int n; /* keys of the weighted sum: min(8 tend, len) */
} blk_row;

/* Queries per block of a call: about BLK_ROWS rows, fewer where the rows' scores would pass
 * BLK_SCORE_BYTES (long caches), at least one query, at most the call's. */
static int blk_queries(const kern_attn_args *a)
{
    size_t row_bytes = sizeof(float) * 8 * (size_t)((a->len + 7) / 8);
    size_t rows = BLK_SCORE_BYTES / row_bytes < BLK_ROWS ? BLK_SCORE_BYTES / row_bytes : BLK_ROWS;
    int q = (int)rows / a->G > 1 ? (int)rows / a->G : 1;
    return q < a->n_q ? q : a->n_q;
}

/* Raw dot products of R rows with the 8 keys of a full tile (k: 8 rows of hd floats,
 * hd % 8 == 0): lane l of res[r] is dot8(q[r], k, hd)'s lane l bit for bit (a chain per lane
 * over the 8-float chunks of d in order, then kern_cpu__hsum8's tree in two halves), each K
 * vector loaded once for the R rows. */
AI void tile_dots(const blk_row *rows, int R, const float *k, int hd, __m256 *res)
{
    __m256 u[2][SR];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256 acc[SR][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int l = 0; l < 4; l++)
                acc[r][l] = _mm256_setzero_ps();
        const float *kh = k + (size_t)4 * h * hd;
        for (int d = 0; d < hd; d += 8) {
            __m256 qv[SR];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                qv[r] = _mm256_loadu_ps(rows[r].q + d);
#pragma GCC unroll 4
            for (int l = 0; l < 4; l++) {
                __m256 kv = _mm256_loadu_ps(kh + (size_t)l * hd + d);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    acc[r][l] = _mm256_fmadd_ps(qv[r], kv, acc[r][l]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            u[h][r] = _mm256_hadd_ps(_mm256_hadd_ps(acc[r][0], acc[r][1]),
                                     _mm256_hadd_ps(acc[r][2], acc[r][3]));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) { /* kern_cpu__hsum8's last step */
        __m256 lo = _mm256_insertf128_ps(u[0][r], _mm256_castps256_ps128(u[1][r]), 1);
        __m256 hi = _mm256_insertf128_ps(u[1][r], _mm256_extractf128_ps(u[0][r], 1), 0);
        res[r] = _mm256_add_ps(lo, hi);
    }
}

/* Pass A of the block's rows over tiles [0, tmax): big_scores' values (-inf where masked) into
 * each row's s, the running lane max into mxv[r]. */
NI void block_scores(const kern_attn_args *a, const attn_ws *w, const blk_row *rows, int nr,
                     int tmax, __m256 *mxv)
{
    const int hd = a->hd, len = a->len;
    const __m256 vscale = _mm256_set1_ps(a->scale), ninf = _mm256_set1_ps(-INFINITY);
    for (int r = 0; r < nr; r++)
        mxv[r] = ninf;
    for (int t = 0; t < tmax; t++) {
        const float *k = a->k + (size_t)t * 8 * hd;
        __m256i kp = _mm256_load_si256((const __m256i *)(w->kp + 8 * t));
        int full = 8 * t + 8 <= len;
        for (int r0 = 0; r0 < nr; r0 += SR) {
            int R = nr - r0 < SR ? nr - r0 : SR;
            const blk_row *br = rows + r0;
            __m256 x[SR];
            if (full) {
                switch (R) { /* R a constant in each inlined micro-kernel */
                case SR:
                    tile_dots(br, SR, k, hd, x);
                    break;
#if SR > 3
                case 3:
                    tile_dots(br, 3, k, hd, x);
                    break;
#endif
#if SR > 2
                case 2:
                    tile_dots(br, 2, k, hd, x);
                    break;
#endif
                default:
                    tile_dots(br, 1, k, hd, x);
                    break;
                }
            }
            for (int r = 0; r < R; r++) {
                __m256i invi = _mm256_cmpgt_epi32(kp, _mm256_set1_epi32(br[r].qp));
                __m256 inv = _mm256_castsi256_ps(invi), y;
                if (full) {
                    y = _mm256_mul_ps(x[r], vscale);
                } else {
                    int32_t mk[8];
                    _mm256_storeu_si256((__m256i *)mk, invi);
                    y = tail_dots(br[r].q, hd, a->k, len, t, mk, a->scale);
                }
                if (w->kb)
                    y = _mm256_add_ps(y, _mm256_load_ps(w->kb + 8 * t));
                y = _mm256_blendv_ps(y, ninf, inv);
                mxv[r0 + r] = _mm256_max_ps(mxv[r0 + r], y);
                _mm256_store_ps(br[r].s + 8 * t, y);
            }
        }
    }
}

/* Keys [j0, j1) of R rows into their accumulators out[d0, d0 + 8 D) (big_wsum's chains): D
 * vectors of V loaded per key for the R rows. */
AI void wsum_kernel(const blk_row *rows, int R, int D, const float *v, int hd, int d0, int j0,
                    int j1)
{
    __m256 acc[VR][8];
    const float *p[VR];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        p[r] = rows[r].s;
#pragma GCC unroll 8
        for (int e = 0; e < D; e++)
            acc[r][e] = _mm256_loadu_ps(rows[r].out + d0 + 8 * e);
    }
    for (int j = j0; j < j1; j++) {
        const float *vj = v + (size_t)j * hd + d0;
        __m256 vv[8];
#pragma GCC unroll 8
        for (int e = 0; e < D; e++)
            vv[e] = _mm256_loadu_ps(vj + 8 * e);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 b = _mm256_broadcast_ss(p[r] + j);
#pragma GCC unroll 8
            for (int e = 0; e < D; e++)
                acc[r][e] = _mm256_fmadd_ps(b, vv[e], acc[r][e]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int e = 0; e < D; e++)
            _mm256_storeu_ps(rows[r].out + d0 + 8 * e, acc[r][e]);
}

/* Keys [j0, j1) of the rows [0, R), R <= VR, into out[d0, d0 + 64): VR rows x VD vectors, or
 * for fewer rows more vectors per key, so that enough chains are in flight. */
NI void wsum_rows(const blk_row *rows, int R, const float *v, int hd, int d0, int j0, int j1)
{
    if (R == VR) {
        for (int e = 0; e < 8; e += VD)
            wsum_kernel(rows, VR, VD, v, hd, d0 + 8 * e, j0, j1);
    } else if (R == 3) {
        for (int e = 0; e < 8; e += 2)
            wsum_kernel(rows, 3, 2, v, hd, d0 + 8 * e, j0, j1);
    } else if (R == 2) {
        for (int e = 0; e < 8; e += 4)
            wsum_kernel(rows, 2, 4, v, hd, d0 + 8 * e, j0, j1);
    } else {
        for (int r = 0; r < R; r++)
            wsum_kernel(rows + r, 1, 8, v, hd, d0, j0, j1);
    }
}

/* Pass C: out = (sum_j e[j] v[j]) / tot for the block's rows, big_wsum's arithmetic. */
NI void block_wsum(const kern_attn_args *a, const blk_row *rows, int nr, const float *tot)
{
    int hd = a->hd, d64 = hd & ~63, n = 0;
    for (int r = 0; r < nr; r++) {
        if (rows[r].n > n)
            n = rows[r].n;
        memset(rows[r].out, 0, sizeof(float) * (size_t)d64);
    }
    for (int j0 = 0; j0 < n && d64 > 0; j0 += VJ) {
        int j1 = j0 + VJ < n ? j0 + VJ : n;
        int nfull = nr - nr % VR;
        for (int d0 = 0; d0 < d64; d0 += 8 * VD)
            for (int r0 = 0; r0 < nfull; r0 += VR)
                wsum_kernel(rows + r0, VR, VD, a->v, hd, d0, j0, j1);
        for (int d0 = 0; d0 < d64 && nfull < nr; d0 += 64)
            wsum_rows(rows + nfull, nr - nfull, a->v, hd, d0, j0, j1);
    }
    for (int r = 0; r < nr; r++) {
        float inv = 1.0f / tot[r], *o = rows[r].out;
        __m256 vinv = _mm256_set1_ps(inv);
        for (int d = 0; d < d64; d += 8)
            _mm256_storeu_ps(o + d, _mm256_mul_ps(_mm256_loadu_ps(o + d), vinv));
        wsum_tail(rows[r].s, a->v, rows[r].n, hd, d64, inv, rows[r].out);
    }
}

/* Queries qi[0, nq) (each sees some entry: qtend[b] tiles) as one block. */
static void block_run(const kern_attn_args *a, attn_ws *w, const int *qi, const int *qtend, int nq)
{
    int G = a->G, hd = a->hd, nr = nq * G, tmax = 0;
    size_t lenp = (size_t)8 * w->T;
    blk_row rows[BLK_MAX];
    __m256 mxv[BLK_MAX];
    float tot[BLK_MAX];
    for (int b = 0; b < nq; b++) {
        int i = qi[b], tend = qtend[b];
        if (tend > tmax)
            tmax = tend;
        for (int g = 0; g < G; g++) {
            blk_row *r = rows + b * G + g;
            r->q = a->q + (size_t)i * a->q_stride + (size_t)g * hd;
            r->out = a->out + (size_t)i * a->o_stride + (size_t)g * hd;
            r->s = w->s + (size_t)(b * G + g) * lenp;
            r->qp = a->q_pos[i];
            r->n = 8 * tend < a->len ? 8 * tend : a->len;
        }
    }
    block_scores(a, w, rows, nr, tmax, mxv);
    for (int b = 0; b < nq; b++) { /* softmax, statistics in query order */
        int tend = qtend[b];
        for (int g = 0; g < G; g++) {
            int r = b * G + g;
            tot[r] = row_exp_at(rows[r].s, w->kp, rows[r].qp, tend, hmax(mxv[r]));
            memset(rows[r].s + 8 * tend, 0, sizeof(float) * 8 * (size_t)(tmax - tend));
        }
        if (a->stats)
            query_stats(a, w, qi[b], tend, rows[b * G].s, tot + b * G);
    }
    block_wsum(a, rows, nr, tot);
}

/* Every query of the call through blocks of blk_queries queries; a query that sees
 * nothing gets its zero output (and row) at once. */
static void block_all(const kern_attn_args *a, attn_ws *w)
{
    int qi[BLK_MAX], qtend[BLK_MAX], nq = 0;
    int cap = blk_queries(a);
    kern_attn_stats *st = a->stats;
    for (int i = 0; i < a->n_q; i++) {
        int tend = query_tend(w, a->q_pos[i]);
        if (tend == 0) {
            int row = st && st->row_ptrs ? i - (a->n_q - st->n_rows) : -1;
            zero_out(a, i);
            if (row >= 0)
                memset(st->row_ptrs[row], 0, sizeof(float) * (size_t)a->len);
        } else {
            qi[nq] = i;
            qtend[nq++] = tend;
        }
        if (nq == cap || (i == a->n_q - 1 && nq > 0)) {
            block_run(a, w, qi, qtend, nq);
            nq = 0;
        }
    }
}

/* ---- entry ---- */

/* Rows of query i for the small path, with HD a constant after inlining. */
AI void small_query(const kern_attn_args *a, attn_ws *w, int i, int tend, int HD)
{
    int lenp = 8 * w->T;
    for (int g = 0; g < a->G; g++)
        small_row(w, a->q + (size_t)i * a->q_stride + (size_t)g * HD, HD, tend, a->scale,
                  w->s + (size_t)g * lenp, &w->tot[g],
                  a->out + (size_t)i * a->o_stride + (size_t)g * HD, a->v, a->len);
}

static void big_query(const kern_attn_args *a, attn_ws *w, int i, int tend)
{
    int lenp = 8 * w->T, hd = a->hd, n = 8 * tend < a->len ? 8 * tend : a->len;
    for (int g = 0; g < a->G; g++) {
        float *s = w->s + (size_t)g * lenp;
        float mx = big_scores(a->q + (size_t)i * a->q_stride + (size_t)g * hd, hd, a->k, a->len, w,
                              tend, a->scale, s);
        float sum = row_exp(s, w->mk, tend, mx);
        w->tot[g] = sum;
        big_wsum(s, a->v, n, hd, 1.0f / sum, a->out + (size_t)i * a->o_stride + (size_t)g * hd);
    }
}

em_status kern_cpu__attn(void *ctx, const kern_attn_args *a)
{
    em_status status = kern_check_attn(a);
    if (status != EM_OK || a->n_q == 0)
        return status;
    int G = a->G, hd = a->hd, len = a->len, n_q = a->n_q;
    kern_attn_stats *st = a->stats;
    if (len == 0) {
        for (int i = 0; i < n_q; i++)
            zero_out(a, i);
        return EM_OK;
    }
    attn_ws w;
    w.T = (len + 7) / 8;
    int small = hd <= SMALL_HD;
    int blocked = !small && (hd & 7) == 0 && (long)n_q * G >= BLK_MIN_ROWS;
    size_t lenp = (size_t)8 * w.T, srows = (size_t)(blocked ? blk_queries(a) * G : G);
    size_t need = lenp * (3 + (a->kbias ? 1 : 0) + srows + (small ? 2 * (size_t)hd : 0));
    float *buf = G <= 64 ? kern_cpu__scratch(KERN_CPU__SCRATCH_ATTN, need) : NULL;
    if (!buf) /* out of memory or a huge group: the reference needs only two rows */
        return kern_ref_attn(NULL, a);
    w.kp = (int32_t *)buf;
    w.mk = (int32_t *)(buf + lenp);
    w.pr = buf + 2 * lenp;
    w.s = buf + 3 * lenp;
    w.kt = small ? w.s + srows * lenp : NULL;
    /* V transposed only when enough rows share it (else its row-major twin) */
    w.vt = small && (long)n_q * G > VT_MIN_ROWS ? w.kt + lenp * hd : NULL;
    memcpy(w.kp, a->kpos, sizeof(int32_t) * (size_t)len);
    for (size_t j = (size_t)len; j < lenp; j++)
        w.kp[j] = INT32_MAX;
    w.kb = NULL;
    if (a->kbias) { /* after the other buffers (kt/vt end at s + (srows + 2 hd) * lenp) */
        w.kb = w.s + lenp * (srows + (small ? 2 * (size_t)hd : 0));
        memcpy(w.kb, a->kbias, sizeof(float) * (size_t)len);
        for (size_t j = (size_t)len; j < lenp; j++)
            w.kb[j] = 0.0f;
    }
    if (small) {
        transpose_kv(a->k, len, hd, w.T, w.kt);
        if (w.vt)
            transpose_kv(a->v, len, hd, w.T, w.vt);
    }
    if (blocked) {
        block_all(a, &w);
        return EM_OK;
    }
    for (int i = 0; i < n_q; i++) {
        int row = st && st->row_ptrs ? i - (n_q - st->n_rows) : -1;
        int32_t qp = a->q_pos[i];
        int tend = query_mask(&w, qp);
        if (tend == 0) {
            zero_out(a, i);
            if (row >= 0)
                memset(st->row_ptrs[row], 0, sizeof(float) * (size_t)len);
            continue;
        }
        if (hd == 8)
            small_query(a, &w, i, tend, 8);
        else if (hd == 16)
            small_query(a, &w, i, tend, 16);
        else if (small)
            small_query(a, &w, i, tend, hd);
        else
            big_query(a, &w, i, tend);
        if (st)
            query_stats(a, &w, i, tend, w.s, w.tot);
    }
    return EM_OK;
}
