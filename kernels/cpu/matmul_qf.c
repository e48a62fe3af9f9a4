/* Fast quantized matmul with f32 activations (KERN_ACT_F32, the default): Y = X . deq(W)^T for
 * Q4_0/Q4_1/Q8_0/Q4_K/Q6_K weights, read in their block format.
 *
 * Arithmetic: exactly the f32 path of matmul.c over the kern_dequant_row values: per output
 * element one 8-lane FMA accumulator acc = fma(w[c..c+8), x[c..c+8), acc) over the columns in
 * order from c = 0, then kern_cpu__hsum8's lane tree. Every dequantised weight is exact f32
 * arithmetic up to one rounding (quant_ref.c), and qf_deq8 below computes the same values, signs
 * of zeros included (a product of an f16 scale and a small integer is exact, so d*q+m rounds
 * once whether fused or not). Hence the result equals kern_cpu__matmul on the dequantised f32
 * matrix bit for bit, whichever of the two paths below computes it:
 *   decode / few tokens (GEMV): 8 rows per pass share the x loads; each weight block is
 *     dequantised in registers (nibbles or int8 -> f32 times the block scale) right before its
 *     FMAs, so the matrix is read once in its quantized form and never written out;
 *   prefill (n >= QF_TILE_MIN_N): a tile of rows is dequantised into per-thread scratch (~L2
 *     size) and multiplied by all n tokens with matmul.c's f32 micro-kernels.
 * Results therefore do not depend on the thread count, on the number of tokens in the call or
 * on the row blocking. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/simd.h"
#include "kernels/quant.h"
#include "kernels/ref/quant_blocks.h"

#define AI static inline __attribute__((always_inline))

#ifndef QF_PAR_MIN
#define QF_PAR_MIN (1 << 16) /* multiply-adds below which the caller works alone */
#endif
#ifndef QF_TILE_MIN_N
#define QF_TILE_MIN_N 2 /* tokens from which weight tiles are dequantised to scratch */
#endif
#ifndef QF_TILE_BYTES
#define QF_TILE_BYTES (96 * 1024) /* dequantised (f32) bytes per prefill tile */
#endif
#ifndef QF_PF_ROWS
#define QF_PF_ROWS 16 /* GEMV prefetch distance in rows (the 8-row groups are short streams) */
#endif
#define QF_TB 8 /* tokens per item when a call is split over tokens */

/* ---------------------------------------------------------------- dequantisation */

/* A weight block's scales, ready for deq8. Q8_0, Q4_0: d; Q4_1: d, m; Q4_K: d = d*sc_j,
 * m = -(dmin*mn_j) (lane j: sub-block j); Q6_K: d / m = d*scales[k] for groups k 0..7 / 8..15. */
typedef struct qf_scales {
    __m256 d, m;
} qf_scales;

AI int qf_block_elems(kern_dtype T)
{
    return T == KERN_Q4_K || T == KERN_Q6_K ? 256 : 32;
}

AI size_t qf_block_bytes(kern_dtype T)
{
    return T == KERN_Q8_0   ? 34
           : T == KERN_Q4_0 ? 18
           : T == KERN_Q4_1 ? 20
           : T == KERN_Q4_K ? 144
                            : 210;
}

AI __m256 f16_bcast(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_set1_epi16((short)qb_u16(p)));
}

/* 8 bytes from p zero- / sign-extended to int32 lanes. */
AI __m256i u8x8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}
AI __m256i i8x8(const uint8_t *p)
{
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

AI __m256 lane_bcast(__m256 v, int j)
{
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j));
}

/* Q4_K: the 8 6-bit scales (sc) and mins (mn) of a block as int32 lanes (layout of
 * qb_q4k_scale_min: sub-blocks 0..3 in the low 6 bits of bytes j / j+4, sub-blocks 4..7 with
 * their low 4 bits in byte j+4 and their top 2 bits in the top bits of bytes j-4 / j). */
AI void q4k_scales(const uint8_t *s12, __m256i *sc, __m256i *mn)
{
    uint32_t s[3];
    memcpy(s, s12, 12);
    uint32_t sc_lo = s[0] & 0x3f3f3f3fu, mn_lo = s[1] & 0x3f3f3f3fu;
    uint32_t sc_hi = (s[2] & 0x0f0f0f0fu) | ((s[0] >> 6) & 0x03030303u) << 4;
    uint32_t mn_hi = ((s[2] >> 4) & 0x0f0f0f0fu) | ((s[1] >> 6) & 0x03030303u) << 4;
    *sc = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)((uint64_t)sc_hi << 32 | sc_lo)));
    *mn = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)((uint64_t)mn_hi << 32 | mn_lo)));
}

AI void qf_prep(kern_dtype T, const uint8_t *b, qf_scales *s)
{
    if (T == KERN_Q8_0) {
        s->d = f16_bcast(b + QB_Q8_0_D);
    } else if (T == KERN_Q4_0) {
        s->d = f16_bcast(b + QB_Q4_0_D);
    } else if (T == KERN_Q4_1) {
        s->d = f16_bcast(b + QB_Q4_1_D);
        s->m = f16_bcast(b + QB_Q4_1_M);
    } else if (T == KERN_Q4_K) {
        __m256i sc, mn;
        q4k_scales(b + QB_Q4_K_SCALES, &sc, &mn);
        s->d = _mm256_mul_ps(f16_bcast(b + QB_Q4_K_D), _mm256_cvtepi32_ps(sc));
        __m256 ndmin = _mm256_xor_ps(f16_bcast(b + QB_Q4_K_DMIN), _mm256_set1_ps(-0.0f));
        s->m = _mm256_mul_ps(ndmin, _mm256_cvtepi32_ps(mn));
    } else {
        __m256 d = f16_bcast(b + QB_Q6_K_D);
        s->d = _mm256_mul_ps(d, _mm256_cvtepi32_ps(i8x8(b + QB_Q6_K_SCALES)));
        s->m = _mm256_mul_ps(d, _mm256_cvtepi32_ps(i8x8(b + QB_Q6_K_SCALES + 8)));
    }
}

/* Dequantised elements 8k .. 8k+7 of block b (k < block elems / 8, a compile-time constant
 * after unrolling), equal to kern_dequant_row's values bit for bit. */
AI __m256 qf_deq8(kern_dtype T, const uint8_t *b, const qf_scales *s, int k)
{
    const __m256i m4 = _mm256_set1_epi32(15);
    if (T == KERN_Q8_0)
        return _mm256_mul_ps(_mm256_cvtepi32_ps(i8x8(b + QB_Q8_0_QS + 8 * k)), s->d);
    if (T == KERN_Q4_0 || T == KERN_Q4_1) { /* element i < 16: low nibble of qs[i], else high */
        __m256i v = u8x8(b + (T == KERN_Q4_0 ? QB_Q4_0_QS : QB_Q4_1_QS) + 8 * (k & 1));
        v = k < 2 ? _mm256_and_si256(v, m4) : _mm256_srli_epi32(v, 4);
        if (T == KERN_Q4_0) /* d * (q - 8) as the reference (also the sign of a zero) */
            return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8))),
                                 s->d);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), s->d, s->m);
    }
    if (T == KERN_Q4_K) { /* sub-block j = k/4; pair j/2 shares 32 bytes (low nibbles: even j) */
        int j = k / 4;
        __m256i v = u8x8(b + QB_Q4_K_QS + 32 * (j / 2) + 8 * (k % 4));
        v = j & 1 ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, m4);
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), lane_bcast(s->d, j), lane_bcast(s->m, j));
    }
    /* Q6_K (qb_q6k_q): element e = 8k, half h, quarter q, offset l; group e/16 */
    int e = 8 * k, h = e / 128, q = (e % 128) / 32, l = e % 32, g = e / 16;
    __m256i lo = u8x8(b + QB_Q6_K_QL + 64 * h + l + 32 * (q & 1));
    __m256i hi = u8x8(b + QB_Q6_K_QH + 32 * h + l);
    lo = q < 2 ? _mm256_and_si256(lo, m4) : _mm256_srli_epi32(lo, 4);
    if (q < 2)
        hi = _mm256_slli_epi32(hi, 4 - 2 * q);
    if (q == 3)
        hi = _mm256_srli_epi32(hi, 2);
    __m256i v = _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi32(0x30)));
    __m256 w = _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(32)));
    return _mm256_mul_ps(w, lane_bcast(g < 8 ? s->d : s->m, g % 8));
}

/* ---------------------------------------------------------------- GEMV */

/* Rows r0 .. r0+nr (nr <= 8) for one token: y[r0 .. r0+nr). Rows past nr repeat row r0 (valid
 * memory, results not stored). */
AI void gemv8(kern_dtype T, const uint8_t *w, size_t rbytes, int r0, int nr, const float *x, int nb,
              float *y)
{
    const int be = qf_block_elems(T);
    const size_t bb = qf_block_bytes(T);
    const uint8_t *wr[8];
    __m256 acc[8];
    for (int r = 0; r < 8; r++) {
        wr[r] = w + (size_t)(r0 + (r < nr ? r : 0)) * rbytes;
        acc[r] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * be;
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = wr[r] + (size_t)b * bb;
            if (QF_PF_ROWS)
                _mm_prefetch((const char *)blk + QF_PF_ROWS * rbytes, _MM_HINT_T0);
            qf_scales s;
            qf_prep(T, blk, &s);
#pragma GCC unroll 32
            for (int k = 0; k < be / 8; k++)
                acc[r] =
                    _mm256_fmadd_ps(qf_deq8(T, blk, &s, k), _mm256_loadu_ps(xb + 8 * k), acc[r]);
        }
    }
    __m256 h = kern_cpu__hsum8(acc);
    if (nr == 8)
        _mm256_storeu_ps(y + r0, h);
    else
        _mm256_maskstore_ps(y + r0, kern_cpu__mask(nr), h);
}

/* ---------------------------------------------------------------- rows of a call */

/* Rows [0, nr) from w dequantised into tile (row stride cols). */
AI void dequant_tile(kern_dtype T, const uint8_t *w, size_t rbytes, int nr, int cols, float *tile)
{
    const int be = qf_block_elems(T), nb = cols / be;
    const size_t bb = qf_block_bytes(T);
    for (int r = 0; r < nr; r++) {
        float *out = tile + (size_t)r * cols;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)r * rbytes + (size_t)b * bb;
            qf_scales s;
            qf_prep(T, blk, &s);
#pragma GCC unroll 32
            for (int k = 0; k < be / 8; k++)
                _mm256_store_ps(out + (size_t)b * be + 8 * k, qf_deq8(T, blk, &s, k));
        }
    }
}

/* Rows [ra, rb) x all n tokens; y points at token 0's output row. */
AI void qf_rows(kern_dtype T, const kern_weight *w, int ra, int rb, const float *x, int xs, int n,
                float *y, int ys)
{
    const uint8_t *wd = w->data;
    int cols = w->cols, nb = cols / qf_block_elems(T);
    size_t rbytes = kern_row_bytes(T, cols);
    if (n >= QF_TILE_MIN_N) {
        int tile = QF_TILE_BYTES / (4 * cols);
        tile = tile < 8 ? 8 : tile - tile % 8;
        float *buf = kern_cpu__scratch(KERN_CPU__SCRATCH_QF, (size_t)tile * cols);
        if (buf) { /* else out of memory: the GEMV below gives the same bits */
            for (int rt = ra; rt < rb; rt += tile) {
                int nr = rt + tile < rb ? tile : rb - rt;
                dequant_tile(T, wd + (size_t)rt * rbytes, rbytes, nr, cols, buf);
                kern_cpu__matmul_f32_rows(buf, cols, nr, x, xs, n, y + rt, ys);
            }
            return;
        }
    }
    for (int t = 0; t < n; t++)
        for (int r = ra; r < rb; r += 8)
            gemv8(T, wd, rbytes, r, rb - r < 8 ? rb - r : 8, x + (size_t)t * xs, nb,
                  y + (size_t)t * ys);
}

#define QF_ROWS_FN(name, T)                                                               \
    static void name(const kern_weight *w, int ra, int rb, const float *x, int xs, int n, \
                     float *y, int ys)                                                    \
    {                                                                                     \
        qf_rows(T, w, ra, rb, x, xs, n, y, ys);                                           \
    }
QF_ROWS_FN(qf_rows_q4_0, KERN_Q4_0)
QF_ROWS_FN(qf_rows_q4_1, KERN_Q4_1)
QF_ROWS_FN(qf_rows_q8_0, KERN_Q8_0)
QF_ROWS_FN(qf_rows_q4_k, KERN_Q4_K)
QF_ROWS_FN(qf_rows_q6_k, KERN_Q6_K)

static void qf_rows_any(const kern_weight *w, int ra, int rb, const float *x, int xs, int n,
                        float *y, int ys)
{
    switch (w->dtype) {
    case KERN_Q4_0:
        qf_rows_q4_0(w, ra, rb, x, xs, n, y, ys);
        break;
    case KERN_Q4_1:
        qf_rows_q4_1(w, ra, rb, x, xs, n, y, ys);
        break;
    case KERN_Q8_0:
        qf_rows_q8_0(w, ra, rb, x, xs, n, y, ys);
        break;
    case KERN_Q4_K:
        qf_rows_q4_k(w, ra, rb, x, xs, n, y, ys);
        break;
    case KERN_Q6_K:
        qf_rows_q6_k(w, ra, rb, x, xs, n, y, ys);
        break;
    default:
        EM_ABORT("kern_cpu__matmul_qf: dtype %d (kern_check_matmul lets no other through)",
                 (int)w->dtype);
    }
}

/* ---------------------------------------------------------------- threads */

typedef struct qf_job {
    const kern_weight *w;
    const float *x;
    float *y;
    int xs, n, ys;
    int by_tokens; /* items split QF_TB-token blocks instead of 8-row units */
    int n_items;
} qf_job;

/* Item i: an even share of 8-row units or of token blocks (same arithmetic either way). */
static void qf_item(void *user, int i, int tid)
{
    const qf_job *j = user;
    int units = j->by_tokens ? (j->n + QF_TB - 1) / QF_TB : (j->w->rows + 7) / 8;
    int u0 = (int)((long)units * i / j->n_items), u1 = (int)((long)units * (i + 1) / j->n_items);
    if (j->by_tokens) {
        int t0 = u0 * QF_TB, t1 = u1 * QF_TB < j->n ? u1 * QF_TB : j->n;
        if (t0 < t1)
            qf_rows_any(j->w, 0, j->w->rows, j->x + (size_t)t0 * j->xs, j->xs, t1 - t0,
                        j->y + (size_t)t0 * j->ys, j->ys);
        return;
    }
    int ra = u0 * 8, rb = u1 * 8 < j->w->rows ? u1 * 8 : j->w->rows;
    if (ra < rb)
        qf_rows_any(j->w, ra, rb, j->x, j->xs, j->n, j->y, j->ys);
}

void kern_cpu__matmul_qf(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                         int ys)
{
    kern_cpu__ctx *c = ctx;
    EM_ASSERT(n > 0 && w->rows > 0 && kern_row_bytes(w->dtype, w->cols) != 0); /* checked */
    double work = (double)w->rows * (double)w->cols * (double)n;
    if (c->n_threads == 1 || work < QF_PAR_MIN) {
        qf_rows_any(w, 0, w->rows, x, xs, n, y, ys);
        return;
    }
    qf_job j = {w, x, y, xs, n, ys, 0, 0};
    int units = (w->rows + 7) / 8, blocks = (n + QF_TB - 1) / QF_TB;
    j.by_tokens = units < c->n_threads && blocks >= 2;
    j.n_items = kern_cpu__n_items(c->n_threads, j.by_tokens ? blocks : units);
    kern_cpu__pool_for(c->pool, j.n_items, qf_item, &j);
}
