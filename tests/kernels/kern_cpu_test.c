/* Table-driven test of the fast CPU backend (kernels/cpu) against the scalar reference
 * (kernels/ref), ggml test-backend-ops style: each case = op x shape x dtype, fixed-seed random
 * inputs, reference vs fast with 1, 2 and 3 threads. Checks |fast - ref| <= atol + rtol*|ref|
 * (NMSE and first mismatches printed), that outputs are bit-identical across thread counts
 * (memcmp, the determinism contract) and that padding around strided outputs is untouched. */
#include <stdlib.h>

#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern.h"
#include "kernels/ref/kern_ref.h"
#include "tests/kernels/kern_test_util.h"

#define N_BACKENDS KT_N_BACKENDS
#define g_cpu      kt_cpu
#define xmalloc    kt_xmalloc
#define alloc_fill kt_alloc_fill
#define check_same kt_check_same
#define report     kt_report
#define SENTINEL   KT_SENTINEL

/* ---------------- matmul ---------------- */

typedef struct mm_case {
    int rows, cols, n, xs_pad, ys_pad;
    kern_dtype dt;
} mm_case;

static const mm_case mm_cases[] = {
    {1, 1, 1, 0, 0, KERN_F32},
    {3, 17, 1, 0, 0, KERN_F32},
    {3, 17, 5, 2, 3, KERN_F32},
    {172, 64, 1, 0, 0, KERN_F32},
    {64, 172, 1, 0, 0, KERN_F32},
    {512, 64, 1, 0, 0, KERN_F32},
    {172, 64, 7, 0, 0, KERN_F32},
    {64, 172, 9, 5, 1, KERN_F32},
    {512, 64, 17, 0, 0, KERN_F32},
    {768, 768, 1, 0, 0, KERN_F32},
    {300, 257, 6, 3, 2, KERN_F32},
    {1000, 96, 1, 0, 4, KERN_F32},
    {1, 1, 1, 0, 0, KERN_F16},
    {3, 17, 4, 1, 1, KERN_F16},
    {172, 64, 1, 0, 0, KERN_F16},
    {64, 172, 13, 0, 0, KERN_F16},
    {512, 64, 8, 0, 0, KERN_F16},
    {768, 768, 1, 0, 0, KERN_F16},
    {300, 257, 6, 3, 2, KERN_F16},
    {20, 1003, 3, 0, 0, KERN_F16},
    {7, 100, 200, 1, 0, KERN_F32},
    {12, 64, 130, 0, 2, KERN_F16}, /* few rows, many tokens */
    /* stories260K per-unit wo / w2 shapes (16 and 43 columns), f16 tile conversion + tails */
    {64, 16, 33, 0, 0, KERN_F32},
    {64, 43, 31, 2, 0, KERN_F32},
    {37, 43, 40, 1, 2, KERN_F16},
};

static void test_matmul(int ci, const mm_case *c)
{
    char name[128];
    snprintf(name, sizeof name, "matmul %s rows=%d cols=%d n=%d xs=+%d ys=+%d",
             c->dt == KERN_F16 ? "f16" : "f32", c->rows, c->cols, c->n, c->xs_pad, c->ys_pad);
    kt_rng r = {1000u + (uint64_t)ci};
    size_t nw = (size_t)c->rows * c->cols;
    int xs = c->cols + c->xs_pad, ys = c->rows + c->ys_pad;
    void *wd = xmalloc(nw * (c->dt == KERN_F16 ? 2 : 4));
    for (size_t i = 0; i < nw; i++) {
        float v = kt_unif(&r, -1.0f, 1.0f);
        if (c->dt == KERN_F16)
            ((uint16_t *)wd)[i] = kern_f32_to_f16(v);
        else
            ((float *)wd)[i] = v;
    }
    kern_weight w = {wd, c->dt, c->rows, c->cols};
    float *x = alloc_fill((size_t)c->n * xs, 0.0f);
    kt_fill(&r, x, (size_t)c->n * xs, -1.0f, 1.0f);
    size_t ny = (size_t)c->n * ys;
    float *ref = alloc_fill(ny, SENTINEL), *got[N_BACKENDS];
    int bad = kern_matmul(kern_ops_ref(), &w, x, xs, c->n, ref, ys) != EM_OK;
    for (int t = 0; t < N_BACKENDS; t++) {
        got[t] = alloc_fill(ny, SENTINEL);
        bad |= kern_matmul(g_cpu[t], &w, x, xs, c->n, got[t], ys) != EM_OK;
        if (t > 0)
            bad |= check_same("y", t, got[t], got[0], ny * sizeof(float));
    }
    /* batch invariance: each token alone (GEMV path) gives the same bits as in the batch */
    if (c->n > 1) {
        float *one = alloc_fill(ny, SENTINEL);
        for (int t = 0; t < c->n; t++)
            bad |= kern_matmul(g_cpu[1], &w, x + (size_t)t * xs, xs, 1, one + (size_t)t * ys, ys) !=
                   EM_OK;
        if (memcmp(one, got[0], ny * sizeof(float)) != 0) {
            fprintf(stderr, "    BATCH INVARIANCE: n=%d differs from n=1 calls\n", c->n);
            bad = 1;
        }
        free(one);
    }
    /* f32 reassociation: fast sums 8 lanes then the lanes, the reference sums in column
     * order; both errors are bounded by ~cols * 6e-8 * E|x*w| (E|x*w| = 0.25 here), so atol =
     * 1e-6 * cols leaves a wide margin yet catches any wrong term (error ~0.1 or more). */
    bad |= kt_compare("y", ref, got[0], ny, 1e-6 * c->cols, 1e-5) != 0;
    report(name, bad);
    for (int t = 0; t < N_BACKENDS; t++)
        free(got[t]);
    free(ref);
    free(x);
    free(wd);
}

/* A non-finite weight stays in its own output row: the column tail of the row before it is
 * read with a plain load (lanes cleared afterwards), which must not turn inf * 0 into NaN. */
static int test_matmul_nonfinite(void)
{
    enum { ROWS = 9, COLS = 11, N = 7, BAD = 5 };
    int cases = 0;
    for (int dt = 0; dt < 2; dt++) {
        kt_rng r = {1500u + (uint64_t)dt};
        size_t nw = (size_t)ROWS * COLS;
        void *wd = xmalloc(nw * 4);
        for (size_t i = 0; i < nw; i++) {
            float v = i < (size_t)BAD * COLS || i >= (size_t)(BAD + 1) * COLS ? kt_unif(&r, -1, 1)
                                                                              : INFINITY;
            if (dt)
                ((uint16_t *)wd)[i] = kern_f32_to_f16(v);
            else
                ((float *)wd)[i] = v;
        }
        kern_weight w = {wd, dt ? KERN_F16 : KERN_F32, ROWS, COLS};
        float *x = alloc_fill((size_t)N * COLS, 0);
        kt_fill(&r, x, (size_t)N * COLS, -1, 1);
        float ref[N * ROWS], got[N * ROWS], one[N * ROWS];
        int bad = kern_matmul(kern_ops_ref(), &w, x, COLS, N, ref, ROWS) != EM_OK;
        bad |= kern_matmul(g_cpu[0], &w, x, COLS, N, got, ROWS) != EM_OK;
        for (int t = 0; t < N; t++)
            bad |= kern_matmul(g_cpu[0], &w, x + t * COLS, COLS, 1, one + t * ROWS, ROWS) != EM_OK;
        for (int t = 0; t < N; t++)
            for (int k = 0; k < ROWS; k++) {
                float a = ref[t * ROWS + k], b = got[t * ROWS + k], c = one[t * ROWS + k];
                if (k == BAD ? isfinite(b) || isfinite(c)
                             : !isfinite(b) || !isfinite(c) || fabsf(a - b) > 1e-4f ||
                                   fabsf(a - c) > 1e-4f) {
                    fprintf(stderr, "    t=%d row=%d ref=%g prefill=%g gemv=%g\n", t, k, a, b, c);
                    bad = 1;
                }
            }
        char name[96];
        snprintf(name, sizeof name, "matmul %s non-finite weight row %d of %dx%d stays in its row",
                 dt ? "f16" : "f32", BAD, ROWS, COLS);
        report(name, bad);
        cases++;
        free(wd);
        free(x);
    }
    return cases;
}

/* ---------------- rmsnorm ---------------- */

typedef struct rms_case {
    int n, dim, in_place;
} rms_case;

static const rms_case rms_cases[] = {{1, 1, 0},  {1, 8, 0},   {3, 17, 1},   {5, 64, 0},
                                     {2, 67, 1}, {1, 768, 0}, {64, 768, 0}, {100, 1000, 1}};

static void test_rmsnorm(int ci, const rms_case *c)
{
    char name[96];
    snprintf(name, sizeof name, "rmsnorm n=%d dim=%d%s", c->n, c->dim,
             c->in_place ? " in-place" : "");
    kt_rng r = {2000u + (uint64_t)ci};
    size_t nx = (size_t)c->n * c->dim;
    float *x = alloc_fill(nx, 0), *g = alloc_fill((size_t)c->dim, 0);
    kt_fill(&r, x, nx, -3.0f, 3.0f);
    kt_fill(&r, g, (size_t)c->dim, 0.5f, 1.5f);
    float *ref = alloc_fill(nx, 0), *got[N_BACKENDS];
    memcpy(ref, x, nx * sizeof(float));
    int bad =
        kern_rmsnorm(kern_ops_ref(), c->in_place ? ref : x, g, c->n, c->dim, 1e-5f, ref) != EM_OK;
    for (int t = 0; t < N_BACKENDS; t++) {
        got[t] = alloc_fill(nx, SENTINEL);
        if (c->in_place)
            memcpy(got[t], x, nx * sizeof(float));
        bad |= kern_rmsnorm(g_cpu[t], c->in_place ? got[t] : x, g, c->n, c->dim, 1e-5f, got[t]) !=
               EM_OK;
        if (t > 0)
            bad |= check_same("y", t, got[t], got[0], nx * sizeof(float));
    }
    /* sum of squares reassociated over dim (relative error ~dim * 6e-8 at most), then one
     * rsqrt and two products: rtol 1e-5 covers dim <= 1000 with margin. */
    bad |= kt_compare("y", ref, got[0], nx, 1e-6, 1e-5) != 0;
    report(name, bad);
    for (int t = 0; t < N_BACKENDS; t++)
        free(got[t]);
    free(ref);
    free(x);
    free(g);
}

/* ---------------- rope ---------------- */

typedef struct rope_case {
    int n_tok, n_heads, hd, rope_dim, stride_pad, max_pos;
    float base;
} rope_case;

static const rope_case rope_cases[] = {
    {1, 1, 8, 8, 0, 10, 10000.0f},
    {7, 8, 8, 8, 0, 600, 10000.0f},
    {3, 4, 128, 128, 5, 4000, 10000.0f},
    {5, 2, 64, 32, 0, 100000, 500000.0f},
    {300, 8, 128, 128, 0, 2048, 10000.0f},
    {64, 6, 10, 6, 3, 50, 10000.0f},
    /* more pairs than one cos/sin chunk (64): whole chunks, and a chunk + a scalar tail */
    {3, 2, 256, 256, 1, 5000, 10000.0f},
    {70, 3, 200, 196, 0, 3000, 1000000.0f},
};

static void test_rope(int ci, const rope_case *c)
{
    char name[128];
    snprintf(name, sizeof name, "rope n_tok=%d heads=%d hd=%d rope_dim=%d stride=+%d base=%g",
             c->n_tok, c->n_heads, c->hd, c->rope_dim, c->stride_pad, c->base);
    kt_rng r = {3000u + (uint64_t)ci};
    int stride = c->n_heads * c->hd + c->stride_pad;
    size_t nx = (size_t)c->n_tok * stride;
    float *x = alloc_fill(nx, 0);
    kt_fill(&r, x, nx, -2.0f, 2.0f);
    int32_t *pos = xmalloc(sizeof(int32_t) * (size_t)c->n_tok);
    for (int t = 0; t < c->n_tok; t++)
        pos[t] = kt_int(&r, c->max_pos + 1);
    float *ref = alloc_fill(nx, 0), *got[N_BACKENDS];
    memcpy(ref, x, nx * sizeof(float));
    int bad = kern_rope(kern_ops_ref(), ref, c->n_tok, c->n_heads, c->hd, stride, pos, c->base,
                        c->rope_dim) != EM_OK;
    for (int t = 0; t < N_BACKENDS; t++) {
        got[t] = alloc_fill(nx, 0);
        for (int rep = 0; rep < 2; rep++) { /* the second call uses the cached frequencies */
            memcpy(got[t], x, nx * sizeof(float));
            bad |= kern_rope(g_cpu[t], got[t], c->n_tok, c->n_heads, c->hd, stride, pos, c->base,
                             c->rope_dim) != EM_OK;
        }
        if (t > 0)
            bad |= check_same("x", t, got[t], got[0], nx * sizeof(float));
    }
    /* same angles and sin/cos as the reference; only a*c - b*s may be fused differently:
     * a few ulp of values of magnitude <= 2.83. */
    bad |= kt_compare("x", ref, got[0], nx, 2e-6, 1e-5) != 0;
    report(name, bad);
    for (int t = 0; t < N_BACKENDS; t++)
        free(got[t]);
    free(ref);
    free(x);
    free(pos);
}

/* ---------------- swiglu ---------------- */

typedef struct swiglu_case {
    int n, dim;
    float range;
} swiglu_case;

static const swiglu_case swiglu_cases[] = {{1, 1, 5.0f},   {3, 17, 5.0f},    {5, 172, 12.0f},
                                           {1, 9, 120.0f}, {64, 1000, 8.0f}, {7, 2048, 30.0f}};

static void test_swiglu(int ci, const swiglu_case *c)
{
    char name[96];
    snprintf(name, sizeof name, "swiglu n=%d dim=%d range=%g", c->n, c->dim, c->range);
    kt_rng r = {4000u + (uint64_t)ci};
    size_t nx = (size_t)c->n * c->dim;
    float *gate = alloc_fill(nx, 0), *up = alloc_fill(nx, 0);
    kt_fill(&r, gate, nx, -c->range, c->range);
    kt_fill(&r, up, nx, -2.0f, 2.0f);
    float *ref = alloc_fill(nx + 1, SENTINEL), *got[N_BACKENDS];
    int bad = kern_swiglu(kern_ops_ref(), gate, up, c->n, c->dim, ref) != EM_OK;
    for (int t = 0; t < N_BACKENDS; t++) {
        got[t] = alloc_fill(nx + 1, SENTINEL);
        bad |= kern_swiglu(g_cpu[t], gate, up, c->n, c->dim, got[t]) != EM_OK;
        if (t > 0)
            bad |= check_same("out", t, got[t], got[0], (nx + 1) * sizeof(float));
    }
    /* vector exp (Cephes polynomial, ~2 ulp) vs libm expf, then one divide and one product:
     * a few ulp relative; atol for silu(x) ~ -x*exp(x) underflowing differently at x << 0. */
    bad |= kt_compare("out", ref, got[0], nx + 1, 1e-6, 1e-5) != 0;
    report(name, bad);
    for (int t = 0; t < N_BACKENDS; t++)
        free(got[t]);
    free(ref);
    free(gate);
    free(up);
}

int main(void)
{
    for (int t = 0; t < N_BACKENDS; t++) {
        g_cpu[t] = kern_ops_cpu_create(kt_threads[t]);
        if (!g_cpu[t]) {
            fprintf(stderr, "kern_ops_cpu_create(%d) failed\n", kt_threads[t]);
            return 1;
        }
    }
    int n_cases = 0;
#define RUN(arr, fn)                                                       \
    for (int i = 0; i < (int)(sizeof arr / sizeof arr[0]); i++, n_cases++) \
        fn(i, &arr[i]);
    RUN(mm_cases, test_matmul);
    n_cases += test_matmul_nonfinite();
    RUN(rms_cases, test_rmsnorm);
    RUN(rope_cases, test_rope);
    RUN(swiglu_cases, test_swiglu);
    n_cases += kt_attn_run_all();
    for (int t = 0; t < N_BACKENDS; t++)
        kern_ops_cpu_free(g_cpu[t]);
    kern_ops_cpu_free(NULL);
    printf("%d cases, %d failed\n", n_cases, kt_failures);
    return kt_failures ? 1 : 0;
}
