/* Reference of the quantized weight formats (kernels/quant.h): block geometry, the scalar
 * dequantisers (the specification of each bit layout, element accessors in quant_blocks.h) and
 * the weight quantisers that make test models and test data. The activation side and the
 * quantized matmul live in quant_dot_ref.c.
 *
 * Every dequantiser is exact arithmetic up to one final rounding: an f16 scale has 11
 * significant bits, so d*q (Q8_0, Q4_0, Q4_1), (d*sc)*q (Q4_K) and (d*sc)*(q-32) (Q6_K) are
 * exact in f32, and the one add of Q4_1 / Q4_K rounds once whether or not the compiler fuses
 * it. The values therefore equal ggml's (and gguf-py's) bit for bit. */
#include <math.h>
#include <string.h>

/* No fused multiply-adds in this file: the quantisers round x * id + 0.5 (and the like) as
 * llama.cpp's C reference does (compiled as ISO C, unfused), so they match it and gguf-py bit for
 * bit. (The dequantisers do not depend on it, see above.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "common/assert.h"
#include "kernels/quant.h"
#include "kernels/ref/quant_blocks.h"

/* ---------------------------------------------------------------- geometry */

int kern_dtype_valid(int t)
{
    switch (t) {
    case KERN_F32:
    case KERN_F16:
    case KERN_Q4_0:
    case KERN_Q4_1:
    case KERN_Q8_0:
    case KERN_Q4_K:
    case KERN_Q6_K:
        return 1;
    default:
        return 0;
    }
}

int kern_dtype_is_quant(kern_dtype t)
{
    return kern_dtype_valid((int)t) && t != KERN_F32 && t != KERN_F16;
}

const char *kern_dtype_name(int t)
{
    switch (t) {
    case KERN_F32:
        return "f32";
    case KERN_F16:
        return "f16";
    case KERN_Q4_0:
        return "q4_0";
    case KERN_Q4_1:
        return "q4_1";
    case KERN_Q8_0:
        return "q8_0";
    case KERN_Q4_K:
        return "q4_k";
    case KERN_Q6_K:
        return "q6_k";
    default:
        return "?";
    }
}

int kern_dtype_block_elems(kern_dtype t)
{
    switch (t) {
    case KERN_F32:
    case KERN_F16:
        return 1;
    case KERN_Q4_0:
    case KERN_Q4_1:
    case KERN_Q8_0:
        return 32;
    case KERN_Q4_K:
    case KERN_Q6_K:
        return 256;
    default:
        return 0;
    }
}

size_t kern_dtype_block_bytes(kern_dtype t)
{
    switch (t) {
    case KERN_F32:
        return 4;
    case KERN_F16:
        return 2;
    case KERN_Q4_0:
        return 18;
    case KERN_Q4_1:
        return 20;
    case KERN_Q8_0:
        return 34;
    case KERN_Q4_K:
        return 144;
    case KERN_Q6_K:
        return 210;
    default:
        return 0;
    }
}

size_t kern_row_bytes(kern_dtype t, int cols)
{
    int be = kern_dtype_block_elems(t);
    if (be == 0 || cols <= 0 || cols % be)
        return 0;
    return (size_t)(cols / be) * kern_dtype_block_bytes(t);
}

/* ---------------------------------------------------------------- dequantisers */

static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = qb_f16(b + QB_Q8_0_D);
    for (int i = 0; i < 32; i++)
        y[i] = d * (float)(int8_t)b[QB_Q8_0_QS + i];
}

static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = qb_f16(b + QB_Q4_0_D);
    for (int i = 0; i < 32; i++)
        y[i] = d * (float)(qb_nibble32(b + QB_Q4_0_QS, i) - 8);
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = qb_f16(b + QB_Q4_1_D), m = qb_f16(b + QB_Q4_1_M);
    for (int i = 0; i < 32; i++)
        y[i] = d * (float)qb_nibble32(b + QB_Q4_1_QS, i) + m;
}

static void deq_q4_k(const uint8_t *b, float *y)
{
    float d = qb_f16(b + QB_Q4_K_D), dmin = qb_f16(b + QB_Q4_K_DMIN);
    for (int j = 0; j < 8; j++) {
        int sc, mn;
        qb_q4k_scale_min(b + QB_Q4_K_SCALES, j, &sc, &mn);
        float d1 = d * (float)sc, m1 = dmin * (float)mn;
        for (int i = 32 * j; i < 32 * j + 32; i++)
            y[i] = d1 * (float)qb_q4k_q(b, i) - m1;
    }
}

static void deq_q6_k(const uint8_t *b, float *y)
{
    float d = qb_f16(b + QB_Q6_K_D);
    for (int i = 0; i < 256; i++) {
        float ds = d * (float)(int8_t)b[QB_Q6_K_SCALES + i / 16];
        y[i] = ds * (float)(qb_q6k_q(b, i) - 32);
    }
}

void kern_dequant_row(kern_dtype t, const void *row, float *out, int cols)
{
    if (cols == 0)
        return;
    size_t rb = kern_row_bytes(t, cols);
    EM_ASSERT(rb != 0); /* callers validate shapes (the loader rejects bad files) */
    const uint8_t *p = row;
    if (t == KERN_F32) {
        memcpy(out, row, rb);
        return;
    }
    if (t == KERN_F16) {
        for (int c = 0; c < cols; c++)
            out[c] = kern_f16_to_f32(qb_u16(p + 2 * (size_t)c));
        return;
    }
    int be = kern_dtype_block_elems(t);
    size_t bb = kern_dtype_block_bytes(t);
    for (int b = 0; b < cols / be; b++, p += bb) {
        float *y = out + (size_t)b * be;
        switch (t) {
        case KERN_Q8_0:
            deq_q8_0(p, y);
            break;
        case KERN_Q4_0:
            deq_q4_0(p, y);
            break;
        case KERN_Q4_1:
            deq_q4_1(p, y);
            break;
        case KERN_Q4_K:
            deq_q4_k(p, y);
            break;
        case KERN_Q6_K:
            deq_q6_k(p, y);
            break;
        default:
            EM_ABORT("kern_dequant_row: dtype %d", (int)t);
        }
    }
}

/* ---------------------------------------------------------------- weight quantisers */

static void put_f16(uint8_t *p, float v)
{
    uint16_t h = kern_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* v clamped to [lo, hi] (NaN -> lo), so the conversions below never see an out-of-range value. */
static float clampf(float v, float lo, float hi)
{
    return v > lo ? (v < hi ? v : hi) : lo;
}
static int round_half_away(float v, int lo, int hi)
{
    return (int)lroundf(clampf(v, (float)lo, (float)hi));
}
static int round_even(float v, int lo, int hi)
{
    return (int)lrintf(clampf(v, (float)lo, (float)hi));
}
static int trunc_clamp(float v, int lo, int hi)
{
    return (int)clampf(v, (float)lo, (float)hi);
}

/* llama.cpp quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) (half away from zero). */
static void qnt_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int i = 0; i < 32; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(b + QB_Q8_0_D, d);
    for (int i = 0; i < 32; i++)
        b[QB_Q8_0_QS + i] = (uint8_t)(int8_t)round_half_away(x[i] * id, -127, 127);
}

/* llama.cpp quantize_row_q4_0_ref: d = (signed value of largest magnitude) / -8, so that value
 * maps to q = 0 exactly; q = min(15, trunc(x / d + 8.5)). */
static void qnt_q4_0(const float *x, uint8_t *b)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < 32; i++)
        if (amax < fabsf(x[i]))
            amax = fabsf(x[i]), max = x[i];
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(b + QB_Q4_0_D, d);
    for (int i = 0; i < 16; i++) {
        int q0 = trunc_clamp(x[i] * id + 8.5f, 0, 15),
            q1 = trunc_clamp(x[16 + i] * id + 8.5f, 0, 15);
        b[QB_Q4_0_QS + i] = (uint8_t)(q0 | q1 << 4);
    }
}

/* llama.cpp quantize_row_q4_1_ref: m = min, d = (max - min) / 15, q = min(15, trunc((x-m)/d +
 * 0.5)). */
static void qnt_q4_1(const float *x, uint8_t *b)
{
    float mn = x[0], mx = x[0];
    for (int i = 1; i < 32; i++)
        mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    put_f16(b + QB_Q4_1_D, d);
    put_f16(b + QB_Q4_1_M, mn);
    for (int i = 0; i < 16; i++) {
        int q0 = trunc_clamp((x[i] - mn) * id + 0.5f, 0, 15);
        int q1 = trunc_clamp((x[16 + i] - mn) * id + 0.5f, 0, 15);
        b[QB_Q4_1_QS + i] = (uint8_t)(q0 | q1 << 4);
    }
}

/* Q4_K, a simple max-abs scheme (not llama.cpp's search): sub-block j covers [lo_j, hi_j] with
 * lo_j = min(0, min x) so its min is >= 0; scale_j = (hi_j - lo_j) / 15. d and dmin are the
 * largest scale / min over 63; the 6-bit sc / mn and then q are rounded against the f16 values
 * actually stored. */
static void qnt_q4_k(const float *x, uint8_t *b)
{
    float scale[8], minv[8], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = 0.0f;
        for (int i = 32 * j; i < 32 * j + 32; i++)
            lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        scale[j] = (hi - lo) / 15.0f;
        minv[j] = -lo;
        smax = fmaxf(smax, scale[j]);
        mmax = fmaxf(mmax, minv[j]);
    }
    put_f16(b + QB_Q4_K_D, smax / 63.0f);
    put_f16(b + QB_Q4_K_DMIN, mmax / 63.0f);
    float d = qb_f16(b + QB_Q4_K_D), dmin = qb_f16(b + QB_Q4_K_DMIN);
    uint8_t *s = b + QB_Q4_K_SCALES;
    memset(s, 0, 12);
    memset(b + QB_Q4_K_QS, 0, 128);
    for (int j = 0; j < 8; j++) {
        int sc = d > 0.0f ? round_even(scale[j] / d, 0, 63) : 0;
        int mn = dmin > 0.0f ? round_even(minv[j] / dmin, 0, 63) : 0;
        if (j < 4) {
            s[j] |= (uint8_t)sc;
            s[j + 4] |= (uint8_t)mn;
        } else {
            s[j + 4] = (uint8_t)((sc & 15) | (mn & 15) << 4);
            s[j - 4] |= (uint8_t)((sc >> 4) << 6);
            s[j] |= (uint8_t)((mn >> 4) << 6);
        }
        float ds = d * (float)sc, dm = dmin * (float)mn;
        for (int i = 32 * j; i < 32 * j + 32; i++) {
            int q = ds > 0.0f ? round_even((x[i] + dm) / ds, 0, 15) : 0;
            b[QB_Q4_K_QS + 32 * (i / 64) + i % 32] |= (uint8_t)(j & 1 ? q << 4 : q);
        }
    }
}

/* Q6_K, a simple max-abs scheme: group k of 16 gets scale_k = amax_k / 31 (so q - 32 lies in
 * [-31, 31]); d = max scale_k / 127; scales[k] = round(scale_k / d); q rounded against the f16 d
 * actually stored. */
static void qnt_q6_k(const float *x, uint8_t *b)
{
    float scale[16], smax = 0.0f;
    for (int k = 0; k < 16; k++) {
        float amax = 0.0f;
        for (int i = 16 * k; i < 16 * k + 16; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        scale[k] = amax / 31.0f;
        smax = fmaxf(smax, scale[k]);
    }
    put_f16(b + QB_Q6_K_D, smax / 127.0f);
    float d = qb_f16(b + QB_Q6_K_D);
    memset(b, 0, QB_Q6_K_SCALES);
    for (int k = 0; k < 16; k++) {
        int sc = d > 0.0f ? round_even(scale[k] / d, -127, 127) : 0;
        b[QB_Q6_K_SCALES + k] = (uint8_t)(int8_t)sc;
        float ds = d * (float)sc;
        for (int e = 16 * k; e < 16 * k + 16; e++) {
            int q = (ds != 0.0f ? round_even(x[e] / ds, -32, 31) : 0) + 32;
            int h = e / 128, r = e % 128, qk = r / 32, l = r % 32;
            b[QB_Q6_K_QL + 64 * h + l + 32 * (qk & 1)] |=
                (uint8_t)(qk < 2 ? q & 15 : (q & 15) << 4);
            b[QB_Q6_K_QH + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * qk));
        }
    }
}

void kern_quant_row(kern_dtype t, const float *x, void *out, int cols)
{
    if (cols == 0)
        return;
    size_t rb = kern_row_bytes(t, cols);
    EM_ASSERT(rb != 0); /* callers validate shapes */
    uint8_t *p = out;
    if (t == KERN_F32) {
        memcpy(out, x, rb);
        return;
    }
    if (t == KERN_F16) {
        for (int c = 0; c < cols; c++)
            put_f16(p + 2 * (size_t)c, x[c]);
        return;
    }
    int be = kern_dtype_block_elems(t);
    size_t bb = kern_dtype_block_bytes(t);
    for (int b = 0; b < cols / be; b++, p += bb) {
        const float *xb = x + (size_t)b * be;
        switch (t) {
        case KERN_Q8_0:
            qnt_q8_0(xb, p);
            break;
        case KERN_Q4_0:
            qnt_q4_0(xb, p);
            break;
        case KERN_Q4_1:
            qnt_q4_1(xb, p);
            break;
        case KERN_Q4_K:
            qnt_q4_k(xb, p);
            break;
        case KERN_Q6_K:
            qnt_q6_k(xb, p);
            break;
        default:
            EM_ABORT("kern_quant_row: dtype %d", (int)t);
        }
    }
}
