/* Fast quantized matmul with int8 activations (KERN_ACT_Q8, kernels/cpu/matmul_q.c) against the
 * reference in that mode (kern_ops_ref_mode(KERN_ACT_Q8)); both sides are made in KERN_ACT_Q8
 * explicitly (the default mode, KERN_ACT_F32, is kern_quant_f32act_test's),
 * table-driven over every quantized type, decode (n = 1) and prefill shapes, awkward row
 * counts, x / y strides wider than the matrix, weights from kern_quant_row and from raw random
 * bytes (every bit pattern: Q8_0 -128, Q4_K high scale bits, negative Q6_K scales). Per case:
 *   - |fast - ref| <= 1e-5 * M (+1e-30), M = sum_i (|a_i| + |b_i|) * |d_x q_x[i]| with a_i the
 *     weight's scaled-integer part and b_i its offset part (m, dmin*mn) at element i: both sum
 *     the same exact integer block products in f32, only in another order (8 lanes then a
 *     lane tree vs block order), so each is within ~(blocks + 6) * 2^-24 * M of the exact sum
 *     (<= 3e-6 M at 1536 columns); a wrong block would be off by ~M / blocks;
 *   - 2 and 3 threads give the same bits as 1 thread;
 *   - batch invariance: every token computed alone gives the same bits as in the batch;
 *   - output padding between rows (ys > rows) untouched.
 * Also: the fast activation quantiser equals the reference bit for bit (q, d, sums), and a
 * non-finite activation or weight scale stays in its own token / row. */
#include <stdlib.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/cpu/quant_cpu.h"
#include "kernels/kern.h"
#include "kernels/quant.h"
#include "kernels/ref/kern_ref.h"
#include "kernels/ref/quant_blocks.h"
#include "tests/kernels/kern_quant_gen.h"
#include "tests/kernels/kern_test_util.h"
#include "tests/testutil/testutil.h"

typedef struct qcase {
    int rows, cols, n, xs_pad, ys_pad;
    int raw; /* weights from random bytes instead of kern_quant_row */
} qcase;

static const qcase k_cases32[] = {
    {1, 32, 1, 0, 0, 0},     {3, 64, 2, 1, 0, 0},     {7, 96, 3, 0, 2, 0},
    {9, 576, 7, 5, 1, 0},    {33, 1536, 64, 0, 0, 0}, {577, 576, 1, 0, 3, 0},
    {577, 96, 200, 2, 0, 0}, {33, 576, 200, 0, 0, 0}, {9, 1536, 3, 7, 0, 0},
    {1, 576, 64, 0, 0, 0},   {7, 32, 200, 1, 1, 0},   {577, 1536, 2, 0, 0, 0},
    {64, 576, 13, 0, 0, 0},  {33, 576, 7, 3, 0, 1},   {577, 64, 64, 0, 1, 1},
    {9, 1536, 1, 0, 0, 1},
};
static const qcase k_cases_k[] = {
    {1, 256, 1, 0, 0, 0},    {3, 512, 2, 1, 0, 0},     {7, 1536, 3, 0, 2, 0},
    {9, 256, 7, 5, 1, 0},    {33, 512, 64, 0, 0, 0},   {577, 256, 1, 0, 3, 0},
    {577, 1536, 1, 0, 0, 0}, {33, 1536, 200, 0, 0, 0}, {9, 256, 200, 3, 0, 0},
    {64, 512, 13, 0, 0, 0},  {33, 512, 7, 3, 0, 1},    {577, 256, 64, 0, 1, 1},
    {9, 1536, 2, 0, 0, 1},
};

static kern_ops *g_cpu[KT_N_BACKENDS];

/* ---------------------------------------------------------------- data */

/* Scaled-integer part a_i and offset part b_i of every element of one weight row. */
static void weight_parts(kern_dtype t, const uint8_t *row, int cols, double *a, double *b)
{
    int be = kern_dtype_block_elems(t);
    size_t bb = kern_dtype_block_bytes(t);
    for (int i = 0; i < cols; i++) {
        const uint8_t *blk = row + (size_t)(i / be) * bb;
        int e = i % be, sc, mn;
        switch (t) {
        case KERN_Q8_0:
            a[i] = qb_f16(blk) * (int8_t)blk[QB_Q8_0_QS + e], b[i] = 0;
            break;
        case KERN_Q4_0:
            a[i] = qb_f16(blk) * (qb_nibble32(blk + QB_Q4_0_QS, e) - 8), b[i] = 0;
            break;
        case KERN_Q4_1:
            a[i] = qb_f16(blk) * qb_nibble32(blk + QB_Q4_1_QS, e), b[i] = qb_f16(blk + QB_Q4_1_M);
            break;
        case KERN_Q4_K:
            qb_q4k_scale_min(blk + QB_Q4_K_SCALES, e / 32, &sc, &mn);
            a[i] = (double)qb_f16(blk) * sc * qb_q4k_q(blk, e),
            b[i] = (double)qb_f16(blk + QB_Q4_K_DMIN) * mn;
            break;
        default:
            a[i] = (double)qb_f16(blk + QB_Q6_K_D) * (int8_t)blk[QB_Q6_K_SCALES + e / 16] *
                   (qb_q6k_q(blk, e) - 32);
            b[i] = 0;
        }
    }
}

/* d_x * q_x per element of one token, from the reference activation quantiser. */
static void act_values(kern_dtype t, const float *x, int cols, double *out)
{
    int be = kern_dtype_block_elems(t);
    for (int b = 0; b < cols / be; b++) {
        kern_q8_kx a; /* q8_kx's q and d cover 256; q8_0x rules are the same per 32 */
        if (be == 256) {
            kern_quant_act_q8_kx(x + 256 * b, &a, 256);
            for (int i = 0; i < 256; i++)
                out[256 * b + i] = (double)a.d * a.q[i];
        } else {
            kern_q8_0x a0;
            kern_quant_act_q8_0x(x + 32 * b, &a0, 32);
            for (int i = 0; i < 32; i++)
                out[32 * b + i] = (double)a0.d * a0.q[i];
        }
    }
}

/* ---------------------------------------------------------------- matmul cases */

static int compare_ref(kern_dtype t, const qcase *c, const uint8_t *w, const float *x, int xs,
                       const float *ref, const float *got, int ys)
{
    size_t rb = kern_row_bytes(t, c->cols);
    double *pa = calloc((size_t)c->cols, sizeof(double)),
           *pb = calloc((size_t)c->cols, sizeof(double));
    double *xv = calloc((size_t)c->cols * c->n, sizeof(double));
    for (int tk = 0; tk < c->n; tk++)
        act_values(t, x + (size_t)tk * xs, c->cols, xv + (size_t)tk * c->cols);
    int bad = 0;
    double worst = 0;
    for (int k = 0; k < c->rows; k++) {
        weight_parts(t, w + k * rb, c->cols, pa, pb);
        for (int tk = 0; tk < c->n; tk++) {
            double m = 0;
            for (int i = 0; i < c->cols; i++)
                m += (fabs(pa[i]) + fabs(pb[i])) * fabs(xv[(size_t)tk * c->cols + i]);
            double e = fabs((double)got[(size_t)tk * ys + k] - ref[(size_t)tk * ys + k]);
            if (m > 0 && e / m > worst)
                worst = e / m;
            if (!(e <= 1e-5 * m + 1e-30) && bad++ < 3)
                fprintf(stderr, "    t=%d r=%d: fast %.9g ref %.9g (M %.3g)\n", tk, k,
                        got[(size_t)tk * ys + k], ref[(size_t)tk * ys + k], m);
        }
    }
    printf("    max |fast - ref| / M = %.3g\n", worst);
    free(pa), free(pb), free(xv);
    return bad;
}

static void run_case(kern_dtype t, const qcase *c, uint64_t seed)
{
    kt_rng r = {seed};
    int xs = c->cols + c->xs_pad, ys = c->rows + c->ys_pad;
    size_t ny = (size_t)c->n * ys;
    uint8_t *wd = kt_make_qweights(t, c->rows, c->cols, c->raw, &r);
    float *x = kt_make_x(c->n, c->cols, xs, &r);
    kern_weight w = {wd, t, c->rows, c->cols};
    float *ref = kt_alloc_fill(ny, KT_SENTINEL), *got[KT_N_BACKENDS],
          *one = kt_alloc_fill(ny, KT_SENTINEL);
    CHECK(kern_matmul(kern_ops_ref_mode(KERN_ACT_Q8), &w, x, xs, c->n, ref, ys) == EM_OK,
          "matmul status");
    int bad_same = 0, bad_pad = 0;
    for (int b = 0; b < KT_N_BACKENDS; b++) {
        got[b] = kt_alloc_fill(ny, KT_SENTINEL);
        CHECK(kern_matmul(g_cpu[b], &w, x, xs, c->n, got[b], ys) == EM_OK, "matmul status");
        if (b > 0)
            bad_same += kt_check_same("y", b, got[b], got[0], ny * sizeof(float));
    }
    for (int tk = 0; tk < c->n; tk++) {
        CHECK(kern_matmul(g_cpu[1], &w, x + (size_t)tk * xs, xs, 1, one + (size_t)tk * ys, ys) ==
                  EM_OK,
              "matmul status");
        for (int k = c->rows; k < ys; k++)
            bad_pad += got[0][(size_t)tk * ys + k] != KT_SENTINEL;
    }
    int bad_batch = memcmp(one, got[0], ny * sizeof(float)) != 0;
    char name[160];
    snprintf(name, sizeof name, "%s rows=%d cols=%d n=%d xs=+%d ys=+%d%s", kern_dtype_name(t),
             c->rows, c->cols, c->n, c->xs_pad, c->ys_pad, c->raw ? " raw-bytes" : "");
    int bad_ref = compare_ref(t, c, wd, x, xs, ref, got[0], ys);
    CHECK(bad_ref == 0, "%s: %d elements outside 1e-5 * M of the reference", name, bad_ref);
    CHECK(bad_same == 0, "%s: thread counts differ", name);
    CHECK(!bad_batch, "%s: tokens alone differ from the batch (batch invariance)", name);
    CHECK(bad_pad == 0, "%s: output padding overwritten", name);
    printf("%s %s\n", bad_ref || bad_same || bad_batch || bad_pad ? "FAIL" : "ok  ", name);
    for (int b = 0; b < KT_N_BACKENDS; b++)
        free(got[b]);
    free(ref), free(one), free(x), free(wd);
}

/* ---------------------------------------------------------------- activation quantiser */

static void test_act_bits(kern_dtype t)
{
    enum { N = 3, COLS = 1536 };
    kt_rng r = {31 + (uint64_t)t};
    float *x = kt_make_x(N, COLS, COLS, &r);
    x[COLS + 700] = INFINITY; /* token 1: one non-finite block */
    kern_cpu__qact a;
    void *buf = aligned_alloc(64, (kern_cpu__qact_bytes(t, N, COLS) + 63) & ~(size_t)63);
    kern_cpu__qact_init(&a, t, N, COLS, buf);
    kern_cpu__qact_fill(&a, x, COLS, 0, N);
    int be = kern_dtype_block_elems(t), nb = COLS / be, bad = 0;
    for (int tk = 0; tk < N; tk++) {
        for (int b = 0; b < nb; b++) {
            const float *xb = x + (size_t)tk * COLS + (size_t)b * be;
            const int8_t *q = a.q + (size_t)tk * COLS + (size_t)b * be;
            const uint8_t *aux = a.aux + 32 * ((size_t)tk * nb + b);
            float d = a.d[(size_t)tk * nb + b];
            if (be == 256) {
                kern_q8_kx ref;
                kern_quant_act_q8_kx(xb, &ref, 256);
                bad += memcmp(&d, &ref.d, 4) != 0 || memcmp(q, ref.q, 256) != 0;
                int32_t s32[8];
                int16_t s16[16];
                memcpy(s32, aux, 32), memcpy(s16, aux, 32);
                for (int k = 0; k < 16; k++)
                    bad += t == KERN_Q6_K
                               ? s16[k] != ref.bsums[k]
                               : k < 8 && s32[k] != ref.bsums[2 * k] + ref.bsums[2 * k + 1];
            } else {
                kern_q8_1x ref;
                kern_quant_act_q8_1x(xb, &ref, 32);
                bad += memcmp(&d, &ref.d, 4) != 0 || memcmp(q, ref.q, 32) != 0;
                if (t == KERN_Q4_1) {
                    float lane[8];
                    memcpy(lane, aux, 32);
                    for (int k = 0; k < 8; k++) {
                        float want = ref.d * (float)(ref.q[4 * k] + ref.q[4 * k + 1] +
                                                     ref.q[4 * k + 2] + ref.q[4 * k + 3]);
                        bad += memcmp(&lane[k], &want, 4) != 0 && !(isnan(lane[k]) && isnan(want));
                    }
                }
            }
        }
    }
    CHECK(bad == 0, "%s activation quantiser: %d blocks differ from the reference",
          kern_dtype_name(t), bad);
    printf("%s fast activation quantiser == reference (bits) for %s\n", bad ? "FAIL" : "ok  ",
           kern_dtype_name(t));
    free(buf), free(x);
}

/* A non-finite activation (token 2) or weight scale (row 5) stays in its token / row. */
static void test_nonfinite(kern_dtype t)
{
    enum { ROWS = 9, N = 7 };
    int cols = kern_dtype_block_elems(t) * 2;
    kt_rng r = {77 + (uint64_t)t};
    uint8_t *wd = kt_make_qweights(t, ROWS, cols, 0, &r);
    size_t rb = kern_row_bytes(t, cols);
    kt_put_f16(wd + 5 * rb + (t == KERN_Q6_K ? QB_Q6_K_D : 0), INFINITY);
    float *x = kt_make_x(N, cols, cols, &r), y[N * ROWS];
    x[2 * cols + 3] = NAN;
    kern_weight w = {wd, t, ROWS, cols};
    int bad = 0;
    for (int b = 0; b < KT_N_BACKENDS; b++) {
        CHECK(kern_matmul(g_cpu[b], &w, x, cols, N, y, ROWS) == EM_OK, "matmul status");
        for (int tk = 0; tk < N; tk++)
            for (int k = 0; k < ROWS; k++) {
                int expect_finite = tk != 2 && k != 5; /* inf * 0-block may be NaN or inf: either */
                bad += expect_finite != (isfinite(y[tk * ROWS + k]) != 0);
            }
    }
    CHECK(bad == 0, "%s: non-finite values leak out of their token / row (%d)", kern_dtype_name(t),
          bad);
    printf("%s %s non-finite activation / weight scale stays in its token / row\n",
           bad ? "FAIL" : "ok  ", kern_dtype_name(t));
    free(wd), free(x);
}

int main(void)
{
    for (int b = 0; b < KT_N_BACKENDS; b++) {
        g_cpu[b] = kern_ops_cpu_create_mode(kt_threads[b], KERN_ACT_Q8);
        if (!g_cpu[b])
            return 1;
    }
    static const kern_dtype t32[] = {KERN_Q4_0, KERN_Q4_1, KERN_Q8_0},
                            tk[] = {KERN_Q4_K, KERN_Q6_K};
    for (int i = 0; i < 3; i++) {
        test_act_bits(t32[i]);
        test_nonfinite(t32[i]);
        for (size_t c = 0; c < sizeof k_cases32 / sizeof k_cases32[0]; c++)
            run_case(t32[i], &k_cases32[c], 1000 + 100 * (uint64_t)i + c);
    }
    for (int i = 0; i < 2; i++) {
        test_act_bits(tk[i]);
        test_nonfinite(tk[i]);
        for (size_t c = 0; c < sizeof k_cases_k / sizeof k_cases_k[0]; c++)
            run_case(tk[i], &k_cases_k[c], 5000 + 100 * (uint64_t)i + c);
    }
    for (int b = 0; b < KT_N_BACKENDS; b++)
        kern_ops_cpu_free(g_cpu[b]);
    TEST_END();
}
