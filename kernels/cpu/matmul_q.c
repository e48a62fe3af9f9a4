/* Fast quantized matmul Y[n][rows] = X[n][cols] . W^T for Q4_0/Q4_1/Q8_0/Q4_K/Q6_K weights,
 * read in their block format (never dequantised to f32): the activation rows are quantised
 * once per call (quant_act.c, into the caller's scratch), then
 *   decode / token tails (GEMV): QRG rows at a time for one token, so the activation block is
 *     loaded once for QRG weight blocks;
 *   prefill: QRB rows x QTB tokens micro-kernels over weight tiles of ~QTILE_BYTES that stay in
 *     L2 while every QTB-token block passes, so each weight block is unpacked once per QTB tokens.
 * Every output element is one 8-lane f32 accumulator over the weight blocks in order (qdot.h
 * fixes the per-block arithmetic), reduced by kern_cpu__hsum; which kernel, thread or tile
 * computes it does not change a bit, so results do not depend on the thread count, on the
 * number of tokens in the call or on the row blocking. */
#include <string.h>

#include "common/assert.h"
#include "kernels/cpu/cpu_impl.h"
#include "kernels/cpu/qdot.h"
#include "kernels/cpu/quant_cpu.h"
#include "kernels/cpu/simd.h"
#include "kernels/quant.h"
#include "kernels/ref/quant_blocks.h"

#ifndef QMM_PAR_MIN
#define QMM_PAR_MIN (1 << 16) /* multiply-adds below which the caller works alone */
#endif
#ifndef QRG
#define QRG 4 /* rows per GEMV step */
#endif
/* Prefill micro-kernel QRB rows x QTB tokens. Measured on the 2-core Zen build box (thread
 * CPU time, SmolLM2 shapes, n = 64): 1 x 8 beat 2 x 4, 4 x 2, 3 x 4, 2 x 8 and 1 x 4..16 by
 * 5-20 % (Q4_1 ~65, Q4_K/Q6_K ~100 GFLOP/s): the unpacked weight block stays in registers for
 * 8 tokens, with 8 accumulators. */
#ifndef QRB
#define QRB 1
#endif
#ifndef QTB
#define QTB 8
#endif
/* GEMV prefetch distance in rows: decode streams the big matrices (the 49152 x 576 output)
 * from DRAM; prefetching 32 rows ahead measured 2.4x (Q8_0) and 1.1x (Q4_1) faster there, no
 * change in L2-resident ones. */
#ifndef QPF_ROWS
#define QPF_ROWS 32
#endif
#ifndef QTILE_BYTES
#define QTILE_BYTES (64 * 1024) /* quantized weight bytes per prefill tile */
#endif

/* ---------------------------------------------------------------- micro-kernels */

/* Rows r0 .. r0+NR of token t (NR compile-time: QRG or 1). pf: also prefetch the same blocks
 * of rows r0+QPF_ROWS .. (inside the matrix), for weights streamed from DRAM. */
QAI void gemv_rows(kern_dtype T, const uint8_t *w, size_t rb, int r0, const int NR,
                   const kern_cpu__qact *a, int t, float *y, int ys, int pf)
{
    const int be = q_block_elems(T);
    const size_t bb = q_block_bytes(T);
    const int8_t *xq = a->q + (size_t)t * a->cols;
    const float *xd = a->d + (size_t)t * a->nb;
    const uint8_t *xa = a->aux + (size_t)t * a->nb * 32;
    const uint8_t *wr = w + (size_t)r0 * rb;
    __m256 acc[QRG];
    for (int r = 0; r < NR; r++)
        acc[r] = _mm256_setzero_ps();
    for (int b = 0; b < a->nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            qw q;
            if (pf)
                _mm_prefetch((const char *)(wr + (size_t)(r + QPF_ROWS) * rb + (size_t)b * bb),
                             _MM_HINT_T0);
            qw_unpack(T, wr + (size_t)r * rb + (size_t)b * bb, &q);
            acc[r] = qw_dot(T, &q, xq + (size_t)b * be, xd[b], xa + 32 * (size_t)b, acc[r]);
        }
    }
    for (int r = 0; r < NR; r++)
        y[(size_t)t * ys + r0 + r] = kern_cpu__hsum(acc[r]);
}

/* QRB rows from r0 x QTB tokens from t0. */
QAI void prefill_block(kern_dtype T, const uint8_t *w, size_t rb, int r0, const kern_cpu__qact *a,
                       int t0, float *y, int ys)
{
    const int be = q_block_elems(T);
    const size_t bb = q_block_bytes(T);
    const int8_t *xq = a->q + (size_t)t0 * a->cols;
    const float *xd = a->d + (size_t)t0 * a->nb;
    const uint8_t *xa = a->aux + (size_t)t0 * a->nb * 32;
    const uint8_t *wr = w + (size_t)r0 * rb;
    __m256 acc[QRB][QTB];
#pragma GCC unroll 16
    for (int k = 0; k < QRB * QTB; k++)
        acc[k / QTB][k % QTB] = _mm256_setzero_ps();
    for (int b = 0; b < a->nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < QRB; r++) {
            qw q;
            qw_unpack(T, wr + (size_t)r * rb + (size_t)b * bb, &q);
#pragma GCC unroll 8
            for (int t = 0; t < QTB; t++) {
                size_t k = (size_t)t * a->nb + b;
                acc[r][t] = qw_dot(T, &q, xq + (size_t)t * a->cols + (size_t)b * be, xd[k],
                                   xa + 32 * k, acc[r][t]);
            }
        }
    }
    for (int t = 0; t < QTB; t++)
        for (int r = 0; r < QRB; r++)
            y[(size_t)(t0 + t) * ys + r0 + r] = kern_cpu__hsum(acc[r][t]);
}

/* Rows [ra, rb) x tokens [t0, t1) of a matrix of `rows` rows, in row tiles of ~QTILE_BYTES:
 * each tile first passes every whole QTB-token block (prefill micro-kernel), then the remaining
 * tokens row group by row group (GEMV), so a tile is read from memory once for all tokens. */
QAI void qmm_rows(kern_dtype T, const uint8_t *w, size_t rbytes, int rows, const kern_cpu__qact *a,
                  int ra, int rb, int t0, int t1, float *y, int ys)
{
    int tend = t1 - (t1 - t0) % QTB;
    int tile = (int)(QTILE_BYTES / rbytes);
    tile = tile < QRG ? QRG : tile - tile % QRG; /* a multiple of QRG and of QRB (1) */
    for (int rt = ra; rt < rb; rt += tile) {
        int re = rt + tile < rb ? rt + tile : rb, r;
        for (int tt = t0; tt < tend; tt += QTB) {
            for (r = rt; r + QRB <= re; r += QRB)
                prefill_block(T, w, rbytes, r, a, tt, y, ys);
            for (; r < re; r++)
                for (int k = 0; k < QTB; k++)
                    gemv_rows(T, w, rbytes, r, 1, a, tt + k, y, ys, 0);
        }
        if (tend == t1)
            continue;
        for (r = rt; r + QRG <= re; r += QRG) {
            int pf = tend == t0 && r + QRG + QPF_ROWS <= rows; /* streaming: nothing cached */
            for (int t = tend; t < t1; t++)
                gemv_rows(T, w, rbytes, r, QRG, a, t, y, ys, pf && t == tend);
        }
        for (; r < re; r++)
            for (int t = tend; t < t1; t++)
                gemv_rows(T, w, rbytes, r, 1, a, t, y, ys, 0);
    }
}

#define QMM_ROWS_FN(name, T)                                                                     \
    static void name(const uint8_t *w, size_t rbytes, int rows, const kern_cpu__qact *a, int ra, \
                     int rb, int t0, int t1, float *y, int ys)                                   \
    {                                                                                            \
        qmm_rows(T, w, rbytes, rows, a, ra, rb, t0, t1, y, ys);                                  \
    }
QMM_ROWS_FN(qmm_rows_q4_0, KERN_Q4_0)
QMM_ROWS_FN(qmm_rows_q4_1, KERN_Q4_1)
QMM_ROWS_FN(qmm_rows_q8_0, KERN_Q8_0)
QMM_ROWS_FN(qmm_rows_q4_k, KERN_Q4_K)
QMM_ROWS_FN(qmm_rows_q6_k, KERN_Q6_K)

void kern_cpu__qmm_rows(const kern_weight *w, const kern_cpu__qact *a, int ra, int rb, int t0,
                        int t1, float *y, int ys)
{
    const uint8_t *wd = w->data;
    size_t rbytes = kern_row_bytes(w->dtype, w->cols);
    switch (w->dtype) {
    case KERN_Q4_0:
        qmm_rows_q4_0(wd, rbytes, w->rows, a, ra, rb, t0, t1, y, ys);
        break;
    case KERN_Q4_1:
        qmm_rows_q4_1(wd, rbytes, w->rows, a, ra, rb, t0, t1, y, ys);
        break;
    case KERN_Q8_0:
        qmm_rows_q8_0(wd, rbytes, w->rows, a, ra, rb, t0, t1, y, ys);
        break;
    case KERN_Q4_K:
        qmm_rows_q4_k(wd, rbytes, w->rows, a, ra, rb, t0, t1, y, ys);
        break;
    case KERN_Q6_K:
        qmm_rows_q6_k(wd, rbytes, w->rows, a, ra, rb, t0, t1, y, ys);
        break;
    default:
        EM_ABORT("kern_cpu__qmm_rows: dtype %d (kern_check_matmul lets no other through)",
                 (int)w->dtype);
    }
}

/* ---------------------------------------------------------------- threads */

typedef struct qmm_job {
    const kern_weight *w;
    const kern_cpu__qact *a;
    const float *x;
    float *y;
    int xs, ys, n;
    int by_tokens; /* items split QTB-token blocks instead of 8-row units */
    int n_items;
} qmm_job;

static void even_share(int units, int i, int n_items, int *u0, int *u1)
{
    *u0 = (int)((long)units * i / n_items);
    *u1 = (int)((long)units * (i + 1) / n_items);
}

static void quant_item(void *user, int i, int tid)
{
    const qmm_job *j = user;
    int t0, t1;
    even_share(j->n, i, j->n_items, &t0, &t1);
    kern_cpu__qact_fill(j->a, j->x, j->xs, t0, t1);
}

static void matmul_item(void *user, int i, int tid)
{
    const qmm_job *j = user;
    int u0, u1;
    if (j->by_tokens) {
        even_share((j->n + QTB - 1) / QTB, i, j->n_items, &u0, &u1);
        int t0 = u0 * QTB, t1 = u1 * QTB < j->n ? u1 * QTB : j->n;
        if (t0 < t1)
            kern_cpu__qmm_rows(j->w, j->a, 0, j->w->rows, t0, t1, j->y, j->ys);
        return;
    }
    even_share((j->w->rows + 7) / 8, i, j->n_items, &u0, &u1);
    int ra = u0 * 8, rb = u1 * 8 < j->w->rows ? u1 * 8 : j->w->rows;
    if (ra < rb)
        kern_cpu__qmm_rows(j->w, j->a, ra, rb, 0, j->n, j->y, j->ys);
}

/* n tokens at once with activations in buf. */
static void matmul_q_tokens(kern_cpu__ctx *c, const kern_weight *w, const float *x, int xs, int n,
                            float *y, int ys, void *buf)
{
    kern_cpu__qact a;
    kern_cpu__qact_init(&a, w->dtype, n, w->cols, buf);
    double work = (double)w->rows * (double)w->cols * (double)n;
    if (c->n_threads == 1 || work < QMM_PAR_MIN) {
        kern_cpu__qact_fill(&a, x, xs, 0, n);
        kern_cpu__qmm_rows(w, &a, 0, w->rows, 0, n, y, ys);
        return;
    }
    qmm_job j = {w, &a, x, y, xs, ys, n, 0, 0};
    if (n >= 2 * c->n_threads) {
        j.n_items = kern_cpu__n_items(c->n_threads, n);
        kern_cpu__pool_for(c->pool, j.n_items, quant_item, &j);
    } else {
        kern_cpu__qact_fill(&a, x, xs, 0, n);
    }
    int units = (w->rows + 7) / 8, blocks = (n + QTB - 1) / QTB;
    j.by_tokens = units < c->n_threads && blocks >= 2;
    j.n_items = kern_cpu__n_items(c->n_threads, j.by_tokens ? blocks : units);
    kern_cpu__pool_for(c->pool, j.n_items, matmul_item, &j);
}

void kern_cpu__matmul_q(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                        int ys)
{
    EM_ASSERT(n > 0 && w->rows > 0 && kern_row_bytes(w->dtype, w->cols) != 0); /* checked */
    size_t need = kern_cpu__qact_bytes(w->dtype, n, w->cols);
    void *buf = kern_cpu__scratch(KERN_CPU__SCRATCH_QACT, (need + 3) / 4);
    if (buf) {
        matmul_q_tokens(ctx, w, x, xs, n, y, ys, buf);
        return;
    }
    /* Out of memory for all tokens: one token at a time gives the same bits (batch
     * invariance); without even that, the KERN_ACT_Q8 reference (same values to f32
     * rounding), which needs no memory. */
    buf = kern_cpu__scratch(KERN_CPU__SCRATCH_QACT,
                            (kern_cpu__qact_bytes(w->dtype, 1, w->cols) + 3) / 4);
    for (int t = 0; t < n; t++) {
        if (buf)
            matmul_q_tokens(ctx, w, x + (size_t)t * xs, xs, 1, y + (size_t)t * ys, ys, buf);
        else
            kern_ref__matmul_q(w, x + (size_t)t * xs, xs, 1, y + (size_t)t * ys, ys);
    }
}
