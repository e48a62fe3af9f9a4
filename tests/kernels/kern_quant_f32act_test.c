/* Quantized matmul with f32 activations (KERN_ACT_F32, the default; kernels/cpu/matmul_qf.c)
 * against its reference (kern_ref_matmul in that mode), table-driven over every quantized type,
 * decode and prefill token counts (1, 2, 3, 7, 64, 200), awkward row counts, x / y strides wider
 * than the matrix, weights from kern_quant_row and from raw random bytes (every bit pattern:
 * Q8_0 -128, Q4_K high scale bits, negative Q6_K scales). Per case:
 *   - |fast - ref| <= 1e-5 * M + 1e-30, M = sum_c |deq(W)[r][c] * x[c]|: both add the same exact
 *     weights times x in f32, only in another order (8 lanes then a lane tree vs column order),
 *     so each is within ~cols * 2^-24 * M of the exact sum in the worst case and ~sqrt(cols) *
 *     2^-24 * M in practice (< 3e-6 M at 1536 columns); a wrong weight block is off by ~M/blocks;
 *   - bit for bit the fast f32 matmul (kern_cpu__matmul on F32 weights) over the kern_dequant_row
 *     matrix, and the reference equally bit for bit the reference f32 matmul over it;
 *   - 2 and 3 threads give the same bits as 1 thread;
 *   - batch invariance: every token computed alone gives the same bits as in the batch;
 *   - output padding between rows (ys > rows) untouched.
 * Also: one-hot activations read back every dequantised weight exactly (the in-register
 * dequantisers equal kern_dequant_row), non-finite values stay in their token / row, the default
 * backends are KERN_ACT_F32, the mode does not change f32 / f16 weights, invalid modes are
 * refused, and a huge activation (SmolLM2's |x| ~ 3000) is exact in f32 mode where int8 blocks
 * lose its neighbours. */
#include <stdlib.h>

#include "kernels/cpu/kern_cpu.h"
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
    {9, 1536, 1, 0, 0, 1},   {3, 1536, 200, 0, 0, 1},
};
static const qcase k_cases_k[] = {
    {1, 256, 1, 0, 0, 0},    {3, 512, 2, 1, 0, 0},     {7, 1536, 3, 0, 2, 0},
    {9, 256, 7, 5, 1, 0},    {33, 512, 64, 0, 0, 0},   {577, 256, 1, 0, 3, 0},
    {577, 1536, 1, 0, 0, 0}, {33, 1536, 200, 0, 0, 0}, {9, 256, 200, 3, 0, 0},
    {64, 512, 13, 0, 0, 0},  {33, 512, 7, 3, 0, 1},    {577, 256, 64, 0, 1, 1},
    {9, 1536, 2, 0, 0, 1},
};
static const kern_dtype k_types[] = {KERN_Q4_0, KERN_Q4_1, KERN_Q8_0, KERN_Q4_K, KERN_Q6_K};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

static kern_ops *g_cpu[KT_N_BACKENDS]; /* kern_ops_cpu_create: the default mode */

/* ---------------------------------------------------------------- data */

/* The kern_dequant_row matrix of w. */
static float *dequant_matrix(const kern_weight *w)
{
    size_t rb = kern_row_bytes(w->dtype, w->cols);
    float *f = kt_alloc_fill((size_t)w->rows * w->cols, 0);
    for (int k = 0; k < w->rows; k++)
        kern_dequant_row(w->dtype, (const uint8_t *)w->data + k * rb, f + (size_t)k * w->cols,
                         w->cols);
    return f;
}

/* ---------------------------------------------------------------- matmul cases */

/* Elements of got outside 1e-5 * M + 1e-30 of ref (M = sum_c |wf[r][c] * x[t][c]|). */
static int compare_ref(const qcase *c, const float *wf, const float *x, int xs, const float *ref,
                       const float *got, int ys)
{
    int bad = 0;
    double worst = 0;
    for (int k = 0; k < c->rows; k++) {
        for (int tk = 0; tk < c->n; tk++) {
            double m = 0;
            for (int i = 0; i < c->cols; i++)
                m += fabs((double)wf[(size_t)k * c->cols + i] * x[(size_t)tk * xs + i]);
            float g = got[(size_t)tk * ys + k], rf = ref[(size_t)tk * ys + k];
            double e = fabs((double)g - rf);
            if (m > 0 && e / m > worst)
                worst = e / m;
            if (!(e <= 1e-5 * m + 1e-30) && bad++ < 3)
                fprintf(stderr, "    t=%d r=%d: fast %.9g ref %.9g (M %.3g)\n", tk, k, g, rf, m);
        }
    }
    printf("    max |fast - ref| / M = %.3g\n", worst);
    return bad;
}

static void run_case(kern_dtype t, const qcase *c, uint64_t seed)
{
    kt_rng r = {seed};
    int xs = c->cols + c->xs_pad, ys = c->rows + c->ys_pad;
    size_t ny = (size_t)c->n * ys, yb = ny * sizeof(float);
    uint8_t *wd = kt_make_qweights(t, c->rows, c->cols, c->raw, &r);
    float *x = kt_make_x(c->n, c->cols, xs, &r);
    kern_weight w = {wd, t, c->rows, c->cols};
    float *wf = dequant_matrix(&w);
    kern_weight w32 = {wf, KERN_F32, c->rows, c->cols};
    float *ref = kt_alloc_fill(ny, KT_SENTINEL), *ref32 = kt_alloc_fill(ny, KT_SENTINEL);
    float *got[KT_N_BACKENDS], *f32 = kt_alloc_fill(ny, KT_SENTINEL);
    float *one = kt_alloc_fill(ny, KT_SENTINEL);
    CHECK(kern_matmul(kern_ops_ref(), &w, x, xs, c->n, ref, ys) == EM_OK, "matmul status");
    CHECK(kern_matmul(kern_ops_ref(), &w32, x, xs, c->n, ref32, ys) == EM_OK, "matmul status");
    CHECK(kern_matmul(g_cpu[0], &w32, x, xs, c->n, f32, ys) == EM_OK, "matmul status");
    int bad_same = 0, bad_pad = 0;
    for (int b = 0; b < KT_N_BACKENDS; b++) {
        got[b] = kt_alloc_fill(ny, KT_SENTINEL);
        CHECK(kern_matmul(g_cpu[b], &w, x, xs, c->n, got[b], ys) == EM_OK, "matmul status");
        if (b > 0)
            bad_same += kt_check_same("y", b, got[b], got[0], yb);
    }
    for (int tk = 0; tk < c->n; tk++) {
        CHECK(kern_matmul(g_cpu[1], &w, x + (size_t)tk * xs, xs, 1, one + (size_t)tk * ys, ys) ==
                  EM_OK,
              "matmul status");
        for (int k = c->rows; k < ys; k++)
            bad_pad += got[0][(size_t)tk * ys + k] != KT_SENTINEL;
    }
    int bad_batch = memcmp(one, got[0], yb) != 0;
    int bad_f32 = memcmp(f32, got[0], yb) != 0, bad_ref32 = memcmp(ref32, ref, yb) != 0;
    char name[160];
    snprintf(name, sizeof name, "%s rows=%d cols=%d n=%d xs=+%d ys=+%d%s", kern_dtype_name(t),
             c->rows, c->cols, c->n, c->xs_pad, c->ys_pad, c->raw ? " raw-bytes" : "");
    int bad_ref = compare_ref(c, wf, x, xs, ref, got[0], ys);
    CHECK(bad_ref == 0, "%s: %d elements outside 1e-5 * M of the reference", name, bad_ref);
    CHECK(!bad_f32, "%s: differs from the fast f32 matmul over the dequantised matrix", name);
    CHECK(!bad_ref32, "%s: reference differs from the f32 reference over the dequantised matrix",
          name);
    CHECK(bad_same == 0, "%s: thread counts differ", name);
    CHECK(!bad_batch, "%s: tokens alone differ from the batch (batch invariance)", name);
    CHECK(bad_pad == 0, "%s: output padding overwritten", name);
    int bad = bad_ref || bad_f32 || bad_ref32 || bad_same || bad_batch || bad_pad;
    printf("%s %s\n", bad ? "FAIL" : "ok  ", name);
    for (int b = 0; b < KT_N_BACKENDS; b++)
        free(got[b]);
    free(ref), free(ref32), free(f32), free(one), free(x), free(wd), free(wf);
}

/* ---------------------------------------------------------------- single properties */

/* x = one-hot columns: y[t][r] = deq(W)[r][t] exactly (a single product with 1.0, the other
 * products +-0), through the prefill path (n = cols) and the GEMV path (n = 1). */
static void test_one_hot(kern_dtype t)
{
    enum { ROWS = 9 };
    int cols = kern_dtype_block_elems(t) * 2;
    kt_rng r = {55 + (uint64_t)t};
    uint8_t *wd = kt_make_qweights(t, ROWS, cols, 1, &r);
    kern_weight w = {wd, t, ROWS, cols};
    float *wf = dequant_matrix(&w), *x = kt_alloc_fill((size_t)cols * cols, 0);
    float *y = kt_alloc_fill((size_t)cols * ROWS, KT_SENTINEL), y1[ROWS];
    for (int c = 0; c < cols; c++)
        x[(size_t)c * cols + c] = 1.0f;
    CHECK(kern_matmul(g_cpu[1], &w, x, cols, cols, y, ROWS) == EM_OK, "matmul status");
    int bad = 0;
    for (int c = 0; c < cols; c++) {
        CHECK(kern_matmul(g_cpu[0], &w, x + (size_t)c * cols, cols, 1, y1, ROWS) == EM_OK,
              "matmul status");
        for (int k = 0; k < ROWS; k++) {
            float want = wf[(size_t)k * cols + c];
            bad += y[(size_t)c * ROWS + k] != want || y1[k] != want;
        }
    }
    CHECK(bad == 0, "%s: %d one-hot read-backs differ from kern_dequant_row", kern_dtype_name(t),
          bad);
    printf("%s %s one-hot activations read back kern_dequant_row exactly\n", bad ? "FAIL" : "ok  ",
           kern_dtype_name(t));
    free(wd), free(wf), free(x), free(y);
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
        for (int n = 1; n <= N; n += N - 1) { /* GEMV token by token, then all at once */
            for (int t0 = 0; t0 < N; t0 += n)
                CHECK(kern_matmul(g_cpu[b], &w, x + (size_t)t0 * cols, cols, n, y + t0 * ROWS,
                                  ROWS) == EM_OK,
                      "matmul status");
            for (int tk = 0; tk < N; tk++)
                for (int k = 0; k < ROWS; k++)
                    bad += (tk != 2 && k != 5) != (isfinite(y[tk * ROWS + k]) != 0);
        }
    }
    CHECK(bad == 0, "%s: non-finite values leak out of their token / row (%d)", kern_dtype_name(t),
          bad);
    printf("%s %s non-finite activation / weight scale stays in its token / row\n",
           bad ? "FAIL" : "ok  ", kern_dtype_name(t));
    free(wd), free(x);
}

/* The default backends are KERN_ACT_F32, invalid modes are refused, the Q8 backends compute
 * the int8-activation numerics, and f32 / f16 weights give the same bits in both modes. */
static void test_modes(void)
{
    CHECK(kern_ops_ref_mode(KERN_ACT_F32) == kern_ops_ref(), "kern_ops_ref is not KERN_ACT_F32");
    CHECK(kern_ops_ref_mode(KERN_ACT_Q8) != NULL &&
              kern_ops_ref_mode(KERN_ACT_Q8) != kern_ops_ref(),
          "no distinct KERN_ACT_Q8 reference");
    CHECK(kern_ops_ref_mode((kern_act_mode)7) == NULL, "invalid mode accepted by the reference");
    CHECK(kern_ops_cpu_create_mode(1, (kern_act_mode)-1) == NULL, "invalid mode accepted (cpu)");
    enum { ROWS = 33, COLS = 576, N = 5 };
    kt_rng r = {4242};
    kern_ops *f32m = kern_ops_cpu_create_mode(2, KERN_ACT_F32);
    kern_ops *q8m = kern_ops_cpu_create_mode(2, KERN_ACT_Q8);
    REQUIRE(f32m && q8m, "kern_ops_cpu_create_mode failed");
    uint8_t *wd = kt_make_qweights(KERN_Q4_1, ROWS, COLS, 0, &r);
    float *x = kt_make_x(N, COLS, COLS, &r), *wf = kt_alloc_fill((size_t)ROWS * COLS, 0);
    kt_fill(&r, wf, (size_t)ROWS * COLS, -1, 1);
    uint16_t *wh = kt_xmalloc(sizeof(uint16_t) * ROWS * COLS);
    for (int i = 0; i < ROWS * COLS; i++)
        wh[i] = kern_f32_to_f16(wf[i]);
    float ya[N * ROWS], yb[N * ROWS], yq[N * ROWS];
    kern_weight wq = {wd, KERN_Q4_1, ROWS, COLS};
    CHECK(kern_matmul(g_cpu[1], &wq, x, COLS, N, ya, ROWS) == EM_OK, "matmul status");
    CHECK(kern_matmul(f32m, &wq, x, COLS, N, yb, ROWS) == EM_OK, "matmul status");
    CHECK(memcmp(ya, yb, sizeof ya) == 0, "kern_ops_cpu_create is not KERN_ACT_F32");
    CHECK(kern_matmul(q8m, &wq, x, COLS, N, yb, ROWS) == EM_OK, "matmul status");
    CHECK(kern_matmul(kern_ops_ref_mode(KERN_ACT_Q8), &wq, x, COLS, N, yq, ROWS) == EM_OK,
          "matmul status");
    float *wqf = dequant_matrix(&wq);
    int bad_q8 = 0; /* within 1e-5 * sum|w x| (x's int8 rounding moves that sum by < 1%) */
    for (int tk = 0; tk < N; tk++)
        for (int k = 0; k < ROWS; k++) {
            double m = 0;
            for (int c = 0; c < COLS; c++)
                m += fabs((double)wqf[k * COLS + c] * x[tk * COLS + c]);
            bad_q8 += !(fabs(yb[tk * ROWS + k] - yq[tk * ROWS + k]) <= 1.01e-5 * m);
        }
    free(wqf);
    CHECK(bad_q8 == 0, "the KERN_ACT_Q8 backend does not compute the q8 reference (%d)", bad_q8);
    int same_bits = memcmp(ya, yb, sizeof ya) == 0;
    CHECK(!same_bits, "KERN_ACT_Q8 gives the KERN_ACT_F32 bits");
    int bad_dense = 0;
    for (int d = 0; d < 2; d++) {
        kern_weight wdn = {d ? (const void *)wh : wf, d ? KERN_F16 : KERN_F32, ROWS, COLS};
        CHECK(kern_matmul(f32m, &wdn, x, COLS, N, ya, ROWS) == EM_OK, "matmul status");
        CHECK(kern_matmul(q8m, &wdn, x, COLS, N, yb, ROWS) == EM_OK, "matmul status");
        bad_dense += memcmp(ya, yb, sizeof ya) != 0;
        CHECK(kern_matmul(kern_ops_ref(), &wdn, x, COLS, N, ya, ROWS) == EM_OK, "matmul status");
        CHECK(kern_matmul(kern_ops_ref_mode(KERN_ACT_Q8), &wdn, x, COLS, N, yb, ROWS) == EM_OK,
              "matmul status");
        bad_dense += memcmp(ya, yb, sizeof ya) != 0;
    }
    CHECK(bad_dense == 0, "the activation mode changes f32 / f16 weights");
    printf("%s modes: defaults are f32, invalid refused, q8 backend = q8 reference, f32/f16 "
           "weights unaffected\n",
           bad_q8 || same_bits || bad_dense ? "FAIL" : "ok  ");
    kern_ops_cpu_free(f32m), kern_ops_cpu_free(q8m);
    free(wd), free(x), free(wf), free(wh);
}

/* SmolLM2's ffn_down input: one activation of 3000 among values ~0.5 in a block. In f32 mode the
 * result stays within f32 rounding of the exact double sum; int8 blocks (KERN_ACT_Q8) round the
 * neighbours to multiples of 3000/127 and are off by far more. */
static void test_outlier(void)
{
    enum { ROWS = 16, COLS = 1536 };
    kt_rng r = {3000};
    kern_ops *q8m = kern_ops_cpu_create_mode(1, KERN_ACT_Q8);
    REQUIRE(q8m, "kern_ops_cpu_create_mode failed");
    int bad = 0, q8_far = 0;
    for (int ti = 0; ti < N_TYPES; ti++) {
        kern_dtype t = k_types[ti];
        uint8_t *wd = kt_make_qweights(t, ROWS, COLS, 0, &r);
        kern_weight w = {wd, t, ROWS, COLS};
        float *wf = dequant_matrix(&w), x[COLS], yf[ROWS], yq[ROWS];
        kt_fill(&r, x, COLS, -0.5f, 0.5f);
        x[300] = 3000.0f;
        CHECK(kern_matmul(g_cpu[0], &w, x, COLS, 1, yf, ROWS) == EM_OK, "matmul status");
        CHECK(kern_matmul(q8m, &w, x, COLS, 1, yq, ROWS) == EM_OK, "matmul status");
        for (int k = 0; k < ROWS; k++) {
            double s = 0, m = 0;
            for (int c = 0; c < COLS; c++) {
                double p = (double)wf[(size_t)k * COLS + c] * x[c];
                s += p, m += fabs(p);
            }
            bad += !(fabs(yf[k] - s) <= 1e-5 * m);
            q8_far += fabs(yq[k] - s) > 1e-3 * m;
        }
        free(wd), free(wf);
    }
    CHECK(bad == 0, "f32 mode: %d outputs off the exact sum with a huge activation", bad);
    CHECK(q8_far > 0, "q8 mode unexpectedly exact with a huge activation (test is blind)");
    printf("%s huge activation: f32 mode within 1e-5 * M of the exact sum, q8 mode off in %d of "
           "%d\n",
           bad ? "FAIL" : "ok  ", q8_far, ROWS * N_TYPES);
    kern_ops_cpu_free(q8m);
}

int main(void)
{
    for (int b = 0; b < KT_N_BACKENDS; b++)
        REQUIRE((g_cpu[b] = kern_ops_cpu_create(kt_threads[b])), "cpu backend");
    test_modes();
    test_outlier();
    for (int ti = 0; ti < N_TYPES; ti++) {
        kern_dtype t = k_types[ti];
        int k = kern_dtype_block_elems(t) == 256;
        const qcase *cs = k ? k_cases_k : k_cases32;
        size_t nc =
            k ? sizeof k_cases_k / sizeof k_cases_k[0] : sizeof k_cases32 / sizeof k_cases32[0];
        test_one_hot(t);
        test_nonfinite(t);
        for (size_t c = 0; c < nc; c++)
            run_case(t, &cs[c], 8000 + 100 * (uint64_t)ti + c);
    }
    for (int b = 0; b < KT_N_BACKENDS; b++)
        kern_ops_cpu_free(g_cpu[b]);
    TEST_END();
}
