/* Tests of the quantized-format reference (kernels/ref/quant_ref.c, quant_dot_ref.c), the
 * specification the fast kernels are checked against:
 *   1. block geometry of every dtype (and 0 / "?" for bad ones);
 *   2. dequantisers on hand-built blocks with known values (exact);
 *   3. dequantisers and the Q8_0/Q4_0/Q4_1 quantisers against gguf-py (fixture produced by
 *      tests/kernels/gguf_py_fixture.py from the real SmolLM2 Q4_1 file; exact, see quant_ref.c);
 *   4. round-trip error bounds of every weight quantiser;
 *   5. activation quantisers: rounding, zero and non-finite blocks, s and bsums;
 *   6. the reference quantized matmul against a double-precision sum over the dequantised
 *      weights and activations, and kern_embed_row against kern_dequant_row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/quant.h"
#include "kernels/ref/kern_ref.h"
#include "tests/kernels/gguf_py_fixture.h"
#include "tests/kernels/kern_test_util.h"
#include "tests/testutil/testutil.h"

static const kern_dtype k_quant[] = {KERN_Q4_0, KERN_Q4_1, KERN_Q8_0, KERN_Q4_K, KERN_Q6_K};
enum { N_QUANT = sizeof k_quant / sizeof k_quant[0] };

/* ---------------------------------------------------------------- 1. geometry */

static void test_geometry(void)
{
    static const struct {
        int t;
        const char *name;
        int be;
        size_t bb;
    } g[] = {
        {KERN_F32, "f32", 1, 4},       {KERN_F16, "f16", 1, 2},     {KERN_Q4_0, "q4_0", 32, 18},
        {KERN_Q4_1, "q4_1", 32, 20},   {KERN_Q8_0, "q8_0", 32, 34}, {KERN_Q4_K, "q4_k", 256, 144},
        {KERN_Q6_K, "q6_k", 256, 210},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        kern_dtype t = (kern_dtype)g[i].t;
        CHECK(kern_dtype_valid(g[i].t), "%s valid", g[i].name);
        CHECK(kern_dtype_is_quant(t) == (g[i].be > 1), "%s is_quant", g[i].name);
        CHECK(strcmp(kern_dtype_name(g[i].t), g[i].name) == 0, "name %s", kern_dtype_name(g[i].t));
        CHECK(kern_dtype_block_elems(t) == g[i].be, "%s block elems", g[i].name);
        CHECK(kern_dtype_block_bytes(t) == g[i].bb, "%s block bytes", g[i].name);
        CHECK(kern_row_bytes(t, 4 * g[i].be) == 4 * g[i].bb, "%s row bytes", g[i].name);
        CHECK(kern_row_bytes(t, 0) == 0 && kern_row_bytes(t, -g[i].be) == 0, "%s row bytes <= 0",
              g[i].name);
        if (g[i].be > 1)
            CHECK(kern_row_bytes(t, g[i].be + 1) == 0, "%s: cols not a block multiple", g[i].name);
    }
    CHECK(kern_row_bytes(KERN_Q4_1, 576) == 360 && kern_row_bytes(KERN_Q8_0, 576) == 612,
          "SmolLM2 rows");
    static const int bad[] = {-1, 4, 5, 6, 7, 9, 10, 11, 13, 15, 16, 30, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!kern_dtype_valid(bad[i]) && !kern_dtype_is_quant((kern_dtype)bad[i]), "dtype %d",
              bad[i]);
        CHECK(strcmp(kern_dtype_name(bad[i]), "?") == 0, "name of %d", bad[i]);
        CHECK(kern_dtype_block_elems((kern_dtype)bad[i]) == 0 &&
                  kern_dtype_block_bytes((kern_dtype)bad[i]) == 0 &&
                  kern_row_bytes((kern_dtype)bad[i], 256) == 0,
              "geometry of %d", bad[i]);
    }
    CHECK(kern_vecdot_type(KERN_Q4_0) == KERN_ACT_Q8_0X &&
              kern_vecdot_type(KERN_Q8_0) == KERN_ACT_Q8_0X &&
              kern_vecdot_type(KERN_Q4_1) == KERN_ACT_Q8_1X &&
              kern_vecdot_type(KERN_Q4_K) == KERN_ACT_Q8_KX &&
              kern_vecdot_type(KERN_Q6_K) == KERN_ACT_Q8_KX &&
              kern_vecdot_type(KERN_F32) == KERN_ACT_NONE,
          "vec-dot types");
}

/* ---------------------------------------------------------------- 2. hand-built blocks */

static void put16(uint8_t *p, uint16_t h)
{
    memcpy(p, &h, 2);
}

/* Dequantises blk (one block of t) and compares with want[] exactly. */
static void check_block(const char *what, kern_dtype t, const uint8_t *blk, const double *want)
{
    int n = kern_dtype_block_elems(t), bad = 0;
    float y[256];
    kern_dequant_row(t, blk, y, n);
    for (int i = 0; i < n; i++) {
        if ((double)y[i] != want[i] && bad++ < 3)
            fprintf(stderr, "    %s [%d]: got %.9g want %.9g\n", what, i, y[i], want[i]);
    }
    CHECK(bad == 0, "%s: %d of %d values differ", what, bad, n);
}

static void test_hand_blocks(void)
{
    uint8_t b[256];
    double want[256];
    /* Q8_0: d = 0.25 (f16 0x3400), q[i] = i - 16 */
    put16(b, 0x3400);
    for (int i = 0; i < 32; i++)
        b[2 + i] = (uint8_t)(int8_t)(i - 16), want[i] = 0.25 * (i - 16);
    check_block("q8_0 hand block", KERN_Q8_0, b, want);
    /* Q4_0: d = -0.5 (0xB800); byte i = i | (15 - i) << 4: element i has q = i, element 16+i q =
     * 15-i */
    put16(b, 0xB800);
    for (int i = 0; i < 16; i++) {
        b[2 + i] = (uint8_t)(i | (15 - i) << 4);
        want[i] = -0.5 * (i - 8);
        want[16 + i] = -0.5 * (15 - i - 8);
    }
    check_block("q4_0 hand block", KERN_Q4_0, b, want);
    /* Q4_1: d = 0.125 (0x3000), m = -1 (0xBC00), same nibbles */
    put16(b, 0x3000);
    put16(b + 2, 0xBC00);
    for (int i = 0; i < 16; i++) {
        b[4 + i] = (uint8_t)(i | (15 - i) << 4);
        want[i] = 0.125 * i - 1.0;
        want[16 + i] = 0.125 * (15 - i) - 1.0;
    }
    check_block("q4_1 hand block", KERN_Q4_1, b, want);
    /* Q4_K: d = 0.5 (0x3800), dmin = 0.25 (0x3400); sub-block scales {1,2,3,4,33,45,60,63} and
     * mins {0,5,10,63,17,32,48,1} packed by hand (bytes worked out from ggml's layout and
     * confirmed with gguf-py's get_scale_min); element e has q = (e + e/32) % 16. */
    static const int sc[8] = {1, 2, 3, 4, 33, 45, 60, 63}, mn[8] = {0, 5, 10, 63, 17, 32, 48, 1};
    static const uint8_t scales[12] = {0x81, 0x82, 0xc3, 0xc4, 0x40, 0x85,
                                       0xca, 0x3f, 0x11, 0x0d, 0x0c, 0x1f};
    memset(b, 0, 144);
    put16(b, 0x3800);
    put16(b + 2, 0x3400);
    memcpy(b + 4, scales, 12);
    for (int e = 0; e < 256; e++) {
        int q = (e + e / 32) % 16, j = e / 32;
        b[16 + 32 * (e / 64) + e % 32] |= (uint8_t)(j & 1 ? q << 4 : q);
        want[e] = 0.5 * sc[j] * q - 0.25 * mn[j];
    }
    check_block("q4_k hand block", KERN_Q4_K, b, want);
    /* Q6_K: d = 0.0625 (0x2C00), scales[k] = k - 8, element e has q = (e * 7) % 64: low 4 bits in
     * ql[64h + l + 32(k&1)] (low nibble for quarter k < 2), high 2 bits at 2k of qh[32h + l] */
    memset(b, 0, 210);
    put16(b + 208, 0x2C00);
    for (int k = 0; k < 16; k++)
        b[192 + k] = (uint8_t)(int8_t)(k - 8);
    for (int e = 0; e < 256; e++) {
        int q = (e * 7) % 64, h = e / 128, r = e % 128, k = r / 32, l = r % 32;
        b[64 * h + l + 32 * (k & 1)] |= (uint8_t)(k < 2 ? q & 15 : (q & 15) << 4);
        b[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
        want[e] = 0.0625 * (e / 16 - 8) * (q - 32);
    }
    check_block("q6_k hand block", KERN_Q6_K, b, want);
}

/* ---------------------------------------------------------------- 3. gguf-py */

static void test_gguf_py(void)
{
    for (int i = 0; i < gpf_n_dequant; i++) {
        const gpf_dequant_case *c = &gpf_dequant[i];
        CHECK(kern_row_bytes((kern_dtype)c->dtype, c->cols) == c->nbytes, "%s: row bytes", c->what);
        float *y = kt_alloc_fill((size_t)c->cols, NAN);
        kern_dequant_row((kern_dtype)c->dtype, c->bytes, y, c->cols);
        int bad = 0;
        for (int k = 0; k < c->cols; k++) {
            if (memcmp(&y[k], &c->want[k], 4) != 0 && bad++ < 3)
                fprintf(stderr, "    %s [%d]: got %.9g gguf-py %.9g\n", c->what, k, y[k],
                        c->want[k]);
        }
        CHECK(bad == 0, "%s: %d of %d values differ from gguf-py", c->what, bad, c->cols);
        printf("%s dequant vs gguf-py: %s\n", bad ? "FAIL" : "ok  ", c->what);
        free(y);
    }
    for (int i = 0; i < gpf_n_quant; i++) {
        const gpf_quant_case *c = &gpf_quant[i];
        uint8_t *got = kt_xmalloc(c->nbytes);
        CHECK(kern_row_bytes((kern_dtype)c->dtype, c->cols) == c->nbytes, "%s: row bytes", c->what);
        kern_quant_row((kern_dtype)c->dtype, c->x, got, c->cols);
        size_t bad = 0;
        for (size_t k = 0; k < c->nbytes; k++)
            bad += got[k] != c->bytes[k];
        CHECK(bad == 0, "%s quantiser: %zu of %zu bytes differ from gguf-py", c->what, bad,
              c->nbytes);
        printf("%s quant vs gguf-py: %s\n", bad ? "FAIL" : "ok  ", c->what);
        free(got);
    }
}

/* ---------------------------------------------------------------- 4. round trips */

/* Max error per element of a block quantised by kern_quant_row, relative to the block's max
 * |x| (32-blocks) or sub-block range, and the RMS error over the row relative to RMS(x).
 * Bounds (uniform x in [-1, 1] plus a shifted block): q8_0: half a step (amax/254) plus the
 * f16 rounding of d (127 * d * 2^-11) -> 0.0045 amax; q4_0: one step amax/8 at the clamped
 * end (q = 16 -> 15) -> 0.126 amax; q4_1: half a step (range/30) plus f16 rounding of d and m
 * -> 0.035 range + 1e-3 |m|. K types: rms only (6-bit scales make the per-element bound
 * loose): expected rms/RMS(x) = step/sqrt(12)/0.577 ~ 0.067 (4-bit), 0.016 (q6_k). */
static void test_round_trip(void)
{
    static const int cols[] = {256, 512, 1536};
    static const double rms_max[N_QUANT] = {0.08, 0.08, 0.005, 0.09, 0.02};
    for (int ti = 0; ti < N_QUANT; ti++) {
        kern_dtype t = k_quant[ti];
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            int n = cols[ci];
            kt_rng r = {77u + (uint64_t)ti * 10 + ci};
            float *x = kt_alloc_fill((size_t)n, 0), *y = kt_alloc_fill((size_t)n, 0);
            kt_fill(&r, x, (size_t)n, -1.0f, 1.0f);
            for (int i = 64; i < 96; i++)
                x[i] += 3.0f; /* a block far from zero */
            uint8_t *q = kt_xmalloc(kern_row_bytes(t, n));
            kern_quant_row(t, x, q, n);
            kern_dequant_row(t, q, y, n);
            double se = 0, sx = 0;
            int bad = 0;
            for (int b = 0; b < n / 32; b++) {
                float mn = x[32 * b], mx = x[32 * b], amax = 0;
                for (int i = 32 * b; i < 32 * b + 32; i++)
                    mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]), amax = fmaxf(amax, fabsf(x[i]));
                double bound = t == KERN_Q8_0   ? 0.0045 * amax
                               : t == KERN_Q4_0 ? 0.126 * amax
                               : t == KERN_Q4_1 ? 0.035 * (mx - mn) + 1e-3 * fabsf(mn)
                                                : INFINITY;
                for (int i = 32 * b; i < 32 * b + 32; i++) {
                    double e = fabs((double)y[i] - x[i]);
                    se += e * e, sx += (double)x[i] * x[i];
                    if (e > bound && bad++ < 3)
                        fprintf(stderr, "    %s [%d]: x %.6g -> %.6g (bound %.3g)\n",
                                kern_dtype_name(t), i, x[i], y[i], bound);
                }
            }
            double rel = sqrt(se / sx);
            CHECK(bad == 0, "%s cols %d: %d elements over the per-block bound", kern_dtype_name(t),
                  n, bad);
            CHECK(rel <= rms_max[ti], "%s cols %d: rms error %.4f > %.4f", kern_dtype_name(t), n,
                  rel, rms_max[ti]);
            printf("%s round trip %s cols=%d: rms/RMS(x) = %.4f (bound %.3f)\n",
                   bad || rel > rms_max[ti] ? "FAIL" : "ok  ", kern_dtype_name(t), n, rel,
                   rms_max[ti]);
            free(x), free(y), free(q);
        }
    }
}

/* ---------------------------------------------------------------- 5. activations */

static void test_act_quant(void)
{
    float x[256];
    kern_q8_0x a0[8];
    kern_q8_1x a1[8];
    kern_q8_kx ak;
    /* amax 127 -> id = 1: q = rint(x), ties to even */
    static const float v[8] = {127.0f, -63.5f, 0.5f, 1.5f, 2.5f, -2.5f, 3.49f, -126.51f};
    static const int8_t qv[8] = {127, -64, 0, 2, 2, -2, 3, -127};
    for (int i = 0; i < 32; i++)
        x[i] = i < 8 ? v[i] : 0.0f;
    kern_quant_act_q8_0x(x, a0, 32);
    CHECK(a0[0].d == 1.0f, "q8_0x d %g", a0[0].d);
    for (int i = 0; i < 8; i++)
        CHECK(a0[0].q[i] == qv[i], "q8_0x rint(%g) = %d", v[i], a0[0].q[i]);
    /* scale: amax 2 -> d = 2/127, x = 1 -> rint(63.5) = 64 */
    for (int i = 0; i < 32; i++)
        x[i] = i == 3 ? -2.0f : i == 5 ? 1.0f : 0.25f;
    kern_quant_act_q8_1x(x, a1, 32);
    int sum = 0;
    for (int i = 0; i < 32; i++)
        sum += a1[0].q[i];
    CHECK(a1[0].d == 2.0f / 127.0f && a1[0].q[3] == -127 && a1[0].q[5] == 64 && a1[0].q[0] == 16,
          "q8_1x d %g q %d %d %d", a1[0].d, a1[0].q[3], a1[0].q[5], a1[0].q[0]);
    CHECK(a1[0].s == a1[0].d * (float)sum, "q8_1x s");
    /* zero block, non-finite blocks */
    for (int i = 0; i < 96; i++)
        x[i] = 0.0f;
    x[40] = INFINITY, x[70] = NAN;
    kern_quant_act_q8_1x(x, a1, 96);
    CHECK(a1[0].d == 0.0f && a1[0].s == 0.0f, "zero block");
    CHECK(isnan(a1[1].d) && isnan(a1[2].d) && isnan(a1[1].s), "non-finite blocks give NaN scales");
    int nz = 0;
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 32; i++)
            nz += a1[b].q[i] != 0;
    CHECK(nz == 0, "zero / non-finite blocks have q = 0 (%d non-zero)", nz);
    /* q8_kx: one scale per 256, bsums per 16 */
    kt_rng r = {5};
    kt_fill(&r, x, 256, -3.0f, 3.0f);
    kern_quant_act_q8_kx(x, &ak, 256);
    float amax = 0;
    for (int i = 0; i < 256; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    CHECK(ak.d == amax / 127.0f, "q8_kx d");
    int bad = 0;
    for (int k = 0; k < 16; k++) {
        int s = 0;
        for (int i = 16 * k; i < 16 * k + 16; i++)
            s += ak.q[i];
        bad += s != ak.bsums[k];
    }
    for (int i = 0; i < 256; i++)
        bad += ak.q[i] != (int8_t)lrintf(x[i] * (127.0f / amax));
    CHECK(bad == 0, "q8_kx q / bsums (%d bad)", bad);
}

/* ---------------------------------------------------------------- 6. matmul, embedding */

/* Dequantised activations of one row, as the matmul sees them (d_x * q_x per element). */
static void act_dequant(kern_dtype t, const float *x, int cols, double *out)
{
    if (t == KERN_F32) { /* KERN_ACT_F32: x as it is */
        for (int c = 0; c < cols; c++)
            out[c] = x[c];
        return;
    }
    if (kern_vecdot_type(t) == KERN_ACT_Q8_KX) {
        kern_q8_kx a;
        for (int b = 0; b < cols / 256; b++) {
            kern_quant_act_q8_kx(x + 256 * b, &a, 256);
            for (int i = 0; i < 256; i++)
                out[256 * b + i] = (double)a.d * a.q[i];
        }
    } else {
        kern_q8_0x a;
        for (int b = 0; b < cols / 32; b++) {
            kern_quant_act_q8_0x(x + 32 * b, &a, 32);
            for (int i = 0; i < 32; i++)
                out[32 * b + i] = (double)a.d * a.q[i];
        }
    }
}

/* kern_ref_matmul in both activation modes vs the double sum over c of deq(W)[r][c] times
 *   KERN_ACT_Q8: deq(x)[t][c] (x's int8 blocks): the block-term formulas of quant.h are
 *     algebraically this sum, so only f32 rounding differs: the per-block f32 terms and their f32
 *     accumulation (~nb * 2^-24 relative to sum|terms|), plus for Q4_1 the f32 rounding of
 *     s = d*sum(q) (2^-24 relative). Tolerance 2e-6 * sum|terms| + 1e-6 covers nb <= 48 with
 *     margin; a wrong term (one block of 32 off) would be ~1e-2 of the sum.
 *   KERN_ACT_F32: x[t][c] itself: cols f32 products added in c order, each add rounding by
 *     2^-24 of a partial sum (random-signed terms: partial sums ~sqrt(c) terms, so the error is
 *     ~1e-6 of sum|terms| at 1536 columns); tolerance 1e-5 * sum|terms| + 1e-6. */
static void test_ref_matmul_mode(kern_act_mode mode)
{
    static const struct {
        int rows, cols, n;
    } sh[] = {{7, 256, 3}, {33, 512, 2}, {5, 1536, 1}};
    for (int ti = 0; ti < N_QUANT; ti++) {
        kern_dtype t = k_quant[ti];
        for (size_t si = 0; si < sizeof sh / sizeof sh[0]; si++) {
            int rows = sh[si].rows, cols = sh[si].cols, n = sh[si].n, xs = cols + 3, bad = 0;
            kt_rng r = {900u + (uint64_t)ti * 7 + si};
            size_t rb = kern_row_bytes(t, cols);
            float *wf = kt_alloc_fill((size_t)rows * cols, 0),
                  *x = kt_alloc_fill((size_t)n * xs, 0);
            float *wd = kt_alloc_fill((size_t)rows * cols, 0),
                  *y = kt_alloc_fill((size_t)n * (rows + 1), KT_SENTINEL);
            double *xd = calloc((size_t)cols, sizeof(double));
            kt_fill(&r, wf, (size_t)rows * cols, -1, 1), kt_fill(&r, x, (size_t)n * xs, -2, 2);
            uint8_t *wq = kt_xmalloc(rb * rows);
            for (int k = 0; k < rows; k++) {
                kern_quant_row(t, wf + (size_t)k * cols, wq + k * rb, cols);
                kern_dequant_row(t, wq + k * rb, wd + (size_t)k * cols, cols);
                float e[1536];
                kern_weight w = {wq, t, rows, cols};
                kern_embed_row(&w, k, e);
                bad += memcmp(e, wd + (size_t)k * cols, sizeof(float) * cols) != 0;
            }
            CHECK(bad == 0, "%s: kern_embed_row differs from kern_dequant_row", kern_dtype_name(t));
            kern_weight w = {wq, t, rows, cols};
            CHECK(kern_matmul(kern_ops_ref_mode(mode), &w, x, xs, n, y, rows + 1) == EM_OK,
                  "matmul status");
            double rtol = mode == KERN_ACT_Q8 ? 2e-6 : 1e-5;
            for (int tk = 0; tk < n; tk++) {
                act_dequant(mode == KERN_ACT_Q8 ? t : KERN_F32, x + (size_t)tk * xs, cols, xd);
                for (int k = 0; k < rows; k++) {
                    double s = 0, sa = 0;
                    for (int c = 0; c < cols; c++) {
                        double p = (double)wd[(size_t)k * cols + c] * xd[c];
                        s += p, sa += fabs(p);
                    }
                    double got = y[(size_t)tk * (rows + 1) + k];
                    if (!(fabs(got - s) <= rtol * sa + 1e-6) && bad++ < 3)
                        fprintf(stderr, "    %s t=%d r=%d: ref %.9g exact %.9g (sum|p| %.3g)\n",
                                kern_dtype_name(t), tk, k, got, s, sa);
                }
                bad += y[(size_t)tk * (rows + 1) + rows] != KT_SENTINEL;
            }
            const char *mn = mode == KERN_ACT_Q8 ? "q8" : "f32";
            CHECK(bad == 0, "%s %dx%d n=%d %s activations: reference matmul vs dequantised sum",
                  kern_dtype_name(t), rows, cols, n, mn);
            printf("%s ref matmul %s %dx%d n=%d %s activations vs dequantised double sum\n",
                   bad ? "FAIL" : "ok  ", kern_dtype_name(t), rows, cols, n, mn);
            free(wf), free(x), free(wd), free(y), free(xd), free(wq);
        }
    }
}

static void test_ref_matmul(void)
{
    test_ref_matmul_mode(KERN_ACT_F32);
    test_ref_matmul_mode(KERN_ACT_Q8);
}

int main(void)
{
    test_geometry();
    test_hand_blocks();
    test_gguf_py();
    test_round_trip();
    test_act_quant();
    test_ref_matmul();
    TEST_END();
}
