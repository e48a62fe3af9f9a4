/* Fast matmul Y[n][rows] = X[n][cols] . W^T for f32 and f16 weights (AVX2/FMA/F16C);
 * quantized weights go to matmul_qf.c (KERN_ACT_F32, which reuses the f32 path below on
 * dequantised tiles) or matmul_q.c (KERN_ACT_Q8).
 * Every output element is one dot product with a fixed order: one 8-lane FMA accumulator over
 * the column blocks, the last partial block zero-padded, then kern_cpu__hsum8's lane tree.
 * The micro-kernels (8 rows x 1 token for GEMV and tails, RB rows x TB tokens for prefill)
 * reduce 8 accumulators at once with kern_cpu__hsum8, whose lane j depends on accumulator j
 * only, so results do not depend on blocking or on the thread split (over rows or tokens). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/quant_cpu.h"
#include "kernels/cpu/simd.h"
#include "kernels/quant.h"

#define AI static inline __attribute__((always_inline))

/* Work (multiply-adds) below which the caller thread does it alone. */
#ifndef MATMUL_PAR_MIN
#define MATMUL_PAR_MIN (1 << 16)
#endif
#ifndef RB
#define RB 4 /* rows per prefill micro-kernel */
#endif
#ifndef TB
#define TB 3 /* tokens per prefill micro-kernel */
#endif
#define TILE_BYTES (96 * 1024) /* weight rows per L2 tile in prefill */

AI __m256 load_w(const void *w, int f16, size_t i)
{
    if (f16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    return _mm256_loadu_ps((const float *)w + i);
}

/* The last nt (1..7) weights of a row from i, zero-padded to 8 lanes. */
AI __m256 load_w_tail(const void *w, int f16, size_t i, int nt, __m256i m)
{
    if (f16) {
        uint16_t h[8] = {0};
        memcpy(h, (const uint16_t *)w + i, sizeof(uint16_t) * (size_t)nt);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    }
    return _mm256_maskload_ps((const float *)w + i, m);
}

/* Same values as load_w_tail: where the 8 elements from i lie inside the weight view (wend
 * elements) a plain load with the pad lanes cleared (vmaskmovps is slow on Zen 1). */
AI __m256 load_w_tail_fast(const void *w, int f16, size_t i, int nt, __m256i m, size_t wend)
{
    if (i + 8 > wend)
        return load_w_tail(w, f16, i, nt, m);
    if (f16) {
        static const int16_t m16[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
        return _mm256_cvtph_ps(_mm_and_si128(h, _mm_loadu_si128((const __m128i *)(m16 + 8 - nt))));
    }
    return _mm256_and_ps(_mm256_loadu_ps((const float *)w + i), _mm256_castsi256_ps(m));
}

/* nr (<= 8) rows starting at r0, one token: y[r0 .. r0+nr). xtail: x's column tail
 * zero-padded to 8; wend: elements of the weight view from w. */
AI void kernel_rows_tok1(const void *w, int f16, int cols, int r0, int nr, const float *x, float *y,
                         const float *xtail, size_t wend)
{
    __m256 acc[8];
    int c8 = cols & ~7, nt = cols - c8;
    size_t off[8];
    for (int r = 0; r < 8; r++) {
        acc[r] = _mm256_setzero_ps();
        off[r] = (size_t)(r0 + (r < nr ? r : 0)) * (size_t)cols;
    }
    __m256i m = kern_cpu__mask(nt);
    if (nr == 8) {
        for (int c = 0; c < c8; c += 8) {
            __m256 xv = _mm256_loadu_ps(x + c);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                acc[r] = _mm256_fmadd_ps(load_w(w, f16, off[r] + c), xv, acc[r]);
        }
        if (nt) {
            __m256 xv = _mm256_load_ps(xtail);
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++)
                acc[r] =
                    _mm256_fmadd_ps(load_w_tail_fast(w, f16, off[r] + c8, nt, m, wend), xv, acc[r]);
        }
        _mm256_storeu_ps(y + r0, kern_cpu__hsum8(acc));
        return;
    }
    for (int c = 0; c < c8; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        for (int r = 0; r < nr; r++)
            acc[r] = _mm256_fmadd_ps(load_w(w, f16, off[r] + c), xv, acc[r]);
    }
    if (nt) {
        __m256 xv = _mm256_load_ps(xtail);
        for (int r = 0; r < nr; r++)
            acc[r] =
                _mm256_fmadd_ps(load_w_tail_fast(w, f16, off[r] + c8, nt, m, wend), xv, acc[r]);
    }
    _mm256_maskstore_ps(y + r0, kern_cpu__mask(nr), kern_cpu__hsum8(acc));
}

/* RB rows x TB tokens; accumulator k = r + RB*t, reduced 8 at a time by kern_cpu__hsum8
 * (the last group zero-padded). */
AI void kernel_block(const void *w, int f16, int cols, int r0, const float *x, int xs, float *y,
                     int ys, const float *wtail, const float *xtail)
{
    enum { NA = RB * TB, NG = (NA + 7) / 8 };
    __m256 acc[NG * 8];
    int c8 = cols & ~7, nt = cols - c8;
#pragma GCC unroll 16
    for (int k = 0; k < NG * 8; k++)
        acc[k] = _mm256_setzero_ps();
    const float *xt[TB];
#pragma GCC unroll 8
    for (int t = 0; t < TB; t++)
        xt[t] = x + (size_t)t * xs;
    size_t off0 = (size_t)r0 * (size_t)cols;
    for (int c = 0; c < c8; c += 8) {
        __m256 xv[TB];
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++)
            xv[t] = _mm256_loadu_ps(xt[t] + c);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m256 wv = load_w(w, f16, off0 + (size_t)r * cols + c);
#pragma GCC unroll 8
            for (int t = 0; t < TB; t++)
                acc[r + RB * t] = _mm256_fmadd_ps(wv, xv[t], acc[r + RB * t]);
        }
    }
    if (nt) { /* zero-padded copies of the tails (the values masked loads would give) */
        __m256 xv[TB];
#pragma GCC unroll 8
        for (int t = 0; t < TB; t++)
            xv[t] = _mm256_load_ps(xtail + 8 * t);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m256 wv = _mm256_load_ps(wtail + 8 * (r0 + r));
#pragma GCC unroll 8
            for (int t = 0; t < TB; t++)
                acc[r + RB * t] = _mm256_fmadd_ps(wv, xv[t], acc[r + RB * t]);
        }
    }
#pragma GCC unroll 4
    for (int g = 0; g < NG; g++) {
        __m256 h = kern_cpu__hsum8(acc + 8 * g);
        if (RB == 4) { /* each half = the 4 rows of one token */
            int t = 2 * g;
            _mm_storeu_ps(y + (size_t)t * ys + r0, _mm256_castps256_ps128(h));
            if (t + 1 < TB)
                _mm_storeu_ps(y + (size_t)(t + 1) * ys + r0, _mm256_extractf128_ps(h, 1));
        } else {
            float tmp[8];
            _mm256_storeu_ps(tmp, h);
            for (int k = 8 * g; k < NA && k < 8 * g + 8; k++)
                y[(size_t)(k / RB) * ys + r0 + k % RB] = tmp[k - 8 * g];
        }
    }
}

/* Prefill over one weight tile: rows [0, nr) of w (row stride cols) for tokens [0, tn),
 * tn a multiple of TB; y points at the tile's first output column. */
AI void prefill_tile(const void *w, int f16, int cols, int nr, const float *x, int xs, int tn,
                     float *y, int ys, float *wtail, size_t wend)
{
    int c8 = cols & ~7, nt = cols - c8;
    if (nt) { /* the column tail of every row, zero-padded to 8 (exact copies) */
        __m256i m = kern_cpu__mask(nt);
        for (int r = 0; r < nr; r++)
            _mm256_store_ps(wtail + 8 * r, load_w_tail(w, f16, (size_t)r * cols + c8, nt, m));
    }
    float xtail[8 * TB] __attribute__((aligned(32)));
    for (int t0 = 0; t0 < tn; t0 += TB) {
        const float *xb = x + (size_t)t0 * xs;
        float *yb = y + (size_t)t0 * ys;
        if (nt) {
            __m256i m = kern_cpu__mask(nt);
            for (int t = 0; t < TB; t++)
                _mm256_store_ps(xtail + 8 * t, _mm256_maskload_ps(xb + (size_t)t * xs + c8, m));
        }
        int r = 0;
        for (; r + RB <= nr; r += RB)
            kernel_block(w, f16, cols, r, xb, xs, yb, ys, wtail, xtail);
        if (r < nr) /* row tail */
            for (int k = 0; k < TB; k++)
                kernel_rows_tok1(w, f16, cols, r, nr - r, xb + (size_t)k * xs, yb + (size_t)k * ys,
                                 xtail + 8 * k, wend);
    }
}

/* Rows [ra, rb) for all n tokens. Prefill: weight tiles of ~TILE_BYTES (as f32) stay in L2
 * while every block of TB tokens (in L1) passes over them; f16 tiles are first converted to
 * f32 in per-thread scratch (exact, so the arithmetic per element is unchanged). */
AI void matmul_rows(const void *w, int f16, int cols, int rows, int ra, int rb, const float *x,
                    int xs, int n, float *y, int ys)
{
    size_t wend = (size_t)rows * (size_t)cols;
    int t = 0;
    if (n >= TB) {
        int tn = n - n % TB;
        int tile = TILE_BYTES / ((cols > 0 ? cols : 1) * 4);
        tile = tile < RB ? RB : tile - tile % RB;
        float *buf = NULL, *wtail = NULL;
        if (f16 && n >= 4 * TB && cols >= 8)
            buf = kern_cpu__scratch(KERN_CPU__SCRATCH_MATMUL, (size_t)tile * cols);
        if (cols & 7) {
            wtail = kern_cpu__scratch(KERN_CPU__SCRATCH_MATMUL_TAIL, (size_t)tile * 8);
            if (!wtail)
                tn = 0; /* out of memory: every token through the GEMV path below */
        }
        for (int rt = ra; tn > 0 && rt < rb; rt += tile) {
            int nr = rt + tile < rb ? tile : rb - rt;
            size_t off = (size_t)rt * (size_t)cols;
            if (buf) {
                const uint16_t *src = (const uint16_t *)w + off;
                size_t ne = (size_t)nr * cols, i = 0;
                for (; i + 8 <= ne; i += 8)
                    _mm256_store_ps(buf + i,
                                    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
                for (; i < ne; i++)
                    buf[i] = _cvtsh_ss(src[i]);
                prefill_tile(buf, 0, cols, nr, x, xs, tn, y + rt, ys, wtail, (size_t)nr * cols);
            } else if (f16) {
                prefill_tile((const uint16_t *)w + off, 1, cols, nr, x, xs, tn, y + rt, ys, wtail,
                             wend - off);
            } else {
                prefill_tile((const float *)w + off, 0, cols, nr, x, xs, tn, y + rt, ys, wtail,
                             wend - off);
            }
        }
        t = tn;
    }
    for (; t < n; t++) {
        const float *xr = x + (size_t)t * xs;
        float *yr = y + (size_t)t * ys;
        float xtail[8] __attribute__((aligned(32)));
        int c8 = cols & ~7;
        _mm256_store_ps(xtail, _mm256_maskload_ps(xr + c8, kern_cpu__mask(cols - c8)));
        int r = ra;
        for (; r + 8 <= rb; r += 8)
            kernel_rows_tok1(w, f16, cols, r, 8, xr, yr, xtail, wend);
        if (r < rb)
            kernel_rows_tok1(w, f16, cols, r, rb - r, xr, yr, xtail, wend);
    }
}

void kern_cpu__matmul_f32_rows(const float *w, int cols, int nr, const float *x, int xs, int n,
                               float *y, int ys)
{
    matmul_rows(w, 0, cols, nr, 0, nr, x, xs, n, y, ys);
}

static void matmul_rows_any(const kern_weight *w, int ra, int rb, const float *x, int xs, int n,
                            float *y, int ys)
{
    if (w->dtype == KERN_F16)
        matmul_rows(w->data, 1, w->cols, w->rows, ra, rb, x, xs, n, y, ys);
    else
        matmul_rows(w->data, 0, w->cols, w->rows, ra, rb, x, xs, n, y, ys);
}

typedef struct matmul_job {
    const kern_weight *w;
    const float *x;
    float *y;
    int xs, n, ys;
    int by_tokens; /* items split tokens (in TB blocks) instead of rows (in 8-row units) */
    int n_items;
} matmul_job;

/* Item i: an even share of 8-row units, or, when there are fewer units than threads and
 * several token blocks, of TB-token blocks (same per-element arithmetic either way). */
static void matmul_item(void *user, int i, int tid)
{
    const matmul_job *j = user;
    if (j->by_tokens) {
        int blocks = (j->n + TB - 1) / TB;
        int b0 = (int)((long)blocks * i / j->n_items),
            b1 = (int)((long)blocks * (i + 1) / j->n_items);
        int t0 = b0 * TB, t1 = b1 * TB < j->n ? b1 * TB : j->n;
        if (t0 < t1)
            matmul_rows_any(j->w, 0, j->w->rows, j->x + (size_t)t0 * j->xs, j->xs, t1 - t0,
                            j->y + (size_t)t0 * j->ys, j->ys);
        return;
    }
    int units = (j->w->rows + 7) / 8;
    int u0 = (int)((long)units * i / j->n_items), u1 = (int)((long)units * (i + 1) / j->n_items);
    int ra = u0 * 8, rb = u1 * 8 < j->w->rows ? u1 * 8 : j->w->rows;
    if (ra < rb)
        matmul_rows_any(j->w, ra, rb, j->x, j->xs, j->n, j->y, j->ys);
}

em_status kern_cpu__matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                           int ys)
{
    kern_cpu__ctx *c = ctx;
    em_status st = kern_check_matmul(w, x, xs, n, y, ys);
    if (st != EM_OK || n == 0 || w->rows == 0)
        return st;
    if (w->cols == 0) { /* empty sums (no block to read) */
        for (int t = 0; t < n; t++)
            memset(y + (size_t)t * ys, 0, sizeof(float) * (size_t)w->rows);
        return EM_OK;
    }
    if (kern_dtype_is_quant(w->dtype)) {
        if (c->act == KERN_ACT_Q8)
            kern_cpu__matmul_q(ctx, w, x, xs, n, y, ys);
        else
            kern_cpu__matmul_qf(ctx, w, x, xs, n, y, ys);
        return EM_OK;
    }
    double work = (double)w->rows * (double)w->cols * (double)n;
    if (c->n_threads == 1 || work < MATMUL_PAR_MIN || (w->rows < 16 && n < 2 * TB)) {
        matmul_rows_any(w, 0, w->rows, x, xs, n, y, ys);
        return EM_OK;
    }
    matmul_job j = {w, x, y, xs, n, ys, 0, 0};
    int units = (w->rows + 7) / 8, blocks = (n + TB - 1) / TB;
    j.by_tokens = units < c->n_threads && blocks >= 2;
    j.n_items = kern_cpu__n_items(c->n_threads, j.by_tokens ? blocks : units);
    kern_cpu__pool_for(c->pool, j.n_items, matmul_item, &j);
    return EM_OK;
}
