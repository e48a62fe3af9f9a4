/* Reference of the activation side of a quantized matmul (kernels/quant.h): the activation
 * quantisers (q8_0x, q8_1x, q8_kx) and the block dot products, summed per output element in
 * block order in f32. This is the specification the fast CPU and CUDA kernels are tested
 * against; it needs no memory beyond one activation block on the stack. */
#include <math.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/quant.h"
#include "kernels/ref/kern_ref.h"
#include "kernels/ref/quant_blocks.h"

kern_act_type kern_vecdot_type(kern_dtype t)
{
    switch (t) {
    case KERN_Q4_0:
    case KERN_Q8_0:
        return KERN_ACT_Q8_0X;
    case KERN_Q4_1:
        return KERN_ACT_Q8_1X;
    case KERN_Q4_K:
    case KERN_Q6_K:
        return KERN_ACT_Q8_KX;
    default:
        return KERN_ACT_NONE;
    }
}

/* ---------------------------------------------------------------- activation quantisers */

/* One block of n: d and q as quant.h specifies; returns 0 when an element is not finite
 * (then d = NaN, q = 0). */
static int act_block(const float *x, int n, float *d, int8_t *q)
{
    float amax = 0.0f;
    int finite = 1;
    for (int i = 0; i < n; i++) {
        finite &= isfinite(x[i]) != 0;
        amax = fmaxf(amax, fabsf(x[i]));
    }
    if (!finite) {
        *d = NAN;
        memset(q, 0, (size_t)n);
        return 0;
    }
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    *d = amax / 127.0f;
    /* |x * id| <= 127 up to one rounding, so rint stays in [-127, 127] */
    for (int i = 0; i < n; i++)
        q[i] = (int8_t)lrintf(x[i] * id);
    return 1;
}

void kern_quant_act_q8_0x(const float *x, kern_q8_0x *out, int cols)
{
    for (int b = 0; b < cols / 32; b++)
        act_block(x + 32 * (size_t)b, 32, &out[b].d, out[b].q);
}

void kern_quant_act_q8_1x(const float *x, kern_q8_1x *out, int cols)
{
    for (int b = 0; b < cols / 32; b++) {
        kern_q8_1x *o = &out[b];
        act_block(x + 32 * (size_t)b, 32, &o->d, o->q);
        int sum = 0;
        for (int i = 0; i < 32; i++)
            sum += o->q[i];
        o->s = o->d * (float)sum;
    }
}

void kern_quant_act_q8_kx(const float *x, kern_q8_kx *out, int cols)
{
    for (int b = 0; b < cols / 256; b++) {
        kern_q8_kx *o = &out[b];
        act_block(x + 256 * (size_t)b, 256, &o->d, o->q);
        for (int k = 0; k < 16; k++) {
            int sum = 0;
            for (int i = 16 * k; i < 16 * k + 16; i++)
                sum += o->q[i];
            o->bsums[k] = (int16_t)sum;
        }
    }
}

/* ---------------------------------------------------------------- block terms */

static float term_q8_0(const uint8_t *w, const kern_q8_0x *a)
{
    int isum = 0;
    for (int i = 0; i < 32; i++)
        isum += (int8_t)w[QB_Q8_0_QS + i] * a->q[i];
    return (qb_f16(w + QB_Q8_0_D) * a->d) * (float)isum;
}

static float term_q4_0(const uint8_t *w, const kern_q8_0x *a)
{
    int isum = 0;
    for (int i = 0; i < 32; i++)
        isum += (qb_nibble32(w + QB_Q4_0_QS, i) - 8) * a->q[i];
    return (qb_f16(w + QB_Q4_0_D) * a->d) * (float)isum;
}

static float term_q4_1(const uint8_t *w, const kern_q8_1x *a)
{
    int isum = 0;
    for (int i = 0; i < 32; i++)
        isum += qb_nibble32(w + QB_Q4_1_QS, i) * a->q[i];
    return (qb_f16(w + QB_Q4_1_D) * a->d) * (float)isum + qb_f16(w + QB_Q4_1_M) * a->s;
}

static float term_q4_k(const uint8_t *w, const kern_q8_kx *a)
{
    int isum = 0, imin = 0;
    for (int j = 0; j < 8; j++) {
        int sc, mn, s = 0;
        qb_q4k_scale_min(w + QB_Q4_K_SCALES, j, &sc, &mn);
        for (int i = 32 * j; i < 32 * j + 32; i++)
            s += qb_q4k_q(w, i) * a->q[i];
        isum += sc * s;
        imin += mn * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    }
    return (qb_f16(w + QB_Q4_K_D) * a->d) * (float)isum -
           (qb_f16(w + QB_Q4_K_DMIN) * a->d) * (float)imin;
}

static float term_q6_k(const uint8_t *w, const kern_q8_kx *a)
{
    int isum = 0;
    for (int k = 0; k < 16; k++) {
        int s = 0;
        for (int i = 16 * k; i < 16 * k + 16; i++)
            s += (qb_q6k_q(w, i) - 32) * a->q[i];
        isum += (int8_t)w[QB_Q6_K_SCALES + k] * s;
    }
    return (qb_f16(w + QB_Q6_K_D) * a->d) * (float)isum;
}

/* ---------------------------------------------------------------- matmul */

typedef union act_blk {
    kern_q8_0x a0;
    kern_q8_1x a1;
    kern_q8_kx ak;
} act_blk;

static float term(kern_dtype t, const uint8_t *w, const act_blk *a)
{
    switch (t) {
    case KERN_Q8_0:
        return term_q8_0(w, &a->a0);
    case KERN_Q4_0:
        return term_q4_0(w, &a->a0);
    case KERN_Q4_1:
        return term_q4_1(w, &a->a1);
    case KERN_Q4_K:
        return term_q4_k(w, &a->ak);
    case KERN_Q6_K:
        return term_q6_k(w, &a->ak);
    default:
        EM_ABORT("quantized matmul: dtype %d", (int)t);
    }
}

/* Y[t][r] = sum over blocks b (in order, from 0.0f) of term(W[r] block b, x[t] block b). The
 * output row is the accumulator: block b of x is quantised once and added to every row. */
void kern_ref__matmul_q(const kern_weight *w, const float *x, int xs, int n, float *y, int ys)
{
    size_t rb = kern_row_bytes(w->dtype, w->cols), bb = kern_dtype_block_bytes(w->dtype);
    EM_ASSERT(rb != 0 || w->cols == 0); /* callers validate shapes */
    int be = kern_dtype_block_elems(w->dtype), nb = w->cols / be;
    kern_act_type at = kern_vecdot_type(w->dtype);
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * xs;
        float *yt = y + (size_t)t * ys;
        for (int r = 0; r < w->rows; r++)
            yt[r] = 0.0f;
        for (int b = 0; b < nb; b++) {
            act_blk a;
            if (at == KERN_ACT_Q8_0X)
                kern_quant_act_q8_0x(xt + (size_t)b * be, &a.a0, be);
            else if (at == KERN_ACT_Q8_1X)
                kern_quant_act_q8_1x(xt + (size_t)b * be, &a.a1, be);
            else
                kern_quant_act_q8_kx(xt + (size_t)b * be, &a.ak, be);
            const uint8_t *wb = (const uint8_t *)w->data + (size_t)b * bb;
            for (int r = 0; r < w->rows; r++)
                yt[r] += term(w->dtype, wb + (size_t)r * rb, &a);
        }
    }
}
