/* Scalar reference ops: the specification every fast backend is tested against.
 * Single-threaded, straightforward loops, double accumulators only where stated. */
#include "kernels/ref/kern_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "kernels/kern.h"
#include "kernels/quant.h"
#include "kernels/ref/quant_blocks.h"

float kern_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kern_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - exp;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exp << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++;
    return (uint16_t)half;
}

static float weight_at(const kern_weight *w, int r, int c)
{
    size_t i = (size_t)r * (size_t)w->cols + (size_t)c;
    if (w->dtype == KERN_F16)
        return kern_f16_to_f32(((const uint16_t *)w->data)[i]);
    return ((const float *)w->data)[i];
}

void kern_embed_row(const kern_weight *table, int row, float *out)
{
    size_t rb = kern_row_bytes(table->dtype, table->cols);
    kern_dequant_row(table->dtype, (const uint8_t *)table->data + (size_t)row * rb, out,
                     table->cols);
}

/* acc + sum_i w[i] * x[i], added in i order in f32 (the one f32 dot of the reference). */
static float dot_acc(float acc, const float *w, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        acc += x[i] * w[i];
    return acc;
}

/* Quantized weight, KERN_ACT_F32: the f32 rule below over the kern_dequant_row values,
 * Y[t][r] = sum_c deq(W)[r][c] * X[t][c] added in c order from 0.0f (bit for bit the f32 matmul
 * over the dequantised matrix). One weight block is dequantised at a time and added to every
 * token; the output element carries the sum from block to block. */
static void matmul_qf(const kern_weight *w, const float *x, int xs, int n, float *y, int ys)
{
    size_t rb = kern_row_bytes(w->dtype, w->cols), bb = kern_dtype_block_bytes(w->dtype);
    EM_ASSERT(rb != 0 || w->cols == 0); /* kern_check_matmul passed */
    int be = kern_dtype_block_elems(w->dtype), nb = w->cols / be;
    float wb[256];
    EM_ASSERT(be <= 256);
    for (int r = 0; r < w->rows; r++) {
        for (int t = 0; t < n; t++)
            y[(size_t)t * ys + r] = 0.0f;
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * rb;
        for (int b = 0; b < nb; b++) {
            kern_dequant_row(w->dtype, row + (size_t)b * bb, wb, be);
            for (int t = 0; t < n; t++) {
                float *yt = y + (size_t)t * ys + r;
                *yt = dot_acc(*yt, wb, x + (size_t)t * xs + (size_t)b * be, be);
            }
        }
    }
}

/* The reference backend's ctx: its activation mode (NULL ctx: KERN_ACT_F32). */
typedef struct ref_ctx {
    kern_act_mode act;
} ref_ctx;

/* f32/f16: Y[t][r] = sum_c X[t][c] * W[r][c], summed in c order in f32. Quantized weights:
 * matmul_qf above (KERN_ACT_F32) or kern_ref__matmul_q (KERN_ACT_Q8: quant_dot_ref.c, the
 * contract in kernels/quant.h). */
em_status kern_ref_matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                          int ys)
{
    em_status st = kern_check_matmul(w, x, xs, n, y, ys);
    if (st != EM_OK)
        return st;
    if (kern_dtype_is_quant(w->dtype)) {
        if (ctx && ((const ref_ctx *)ctx)->act == KERN_ACT_Q8)
            kern_ref__matmul_q(w, x, xs, n, y, ys);
        else
            matmul_qf(w, x, xs, n, y, ys);
        return EM_OK;
    }
    for (int t = 0; t < n; t++) {
        for (int r = 0; r < w->rows; r++) {
            const float *xt = x + (size_t)t * xs;
            if (w->dtype == KERN_F32) {
                const float *wr = (const float *)w->data + (size_t)r * (size_t)w->cols;
                y[(size_t)t * ys + r] = dot_acc(0.0f, wr, xt, w->cols);
                continue;
            }
            float acc = 0.0f;
            for (int c = 0; c < w->cols; c++)
                acc += xt[c] * weight_at(w, r, c);
            y[(size_t)t * ys + r] = acc;
        }
    }
    return EM_OK;
}

em_status kern_ref_rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                           float *y)
{
    em_status st = kern_check_rows(x, g, n, dim, y);
    if (st != EM_OK)
        return st;
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * dim;
        float *yr = y + (size_t)t * dim;
        float ss = 0.0f;
        for (int i = 0; i < dim; i++)
            ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)dim + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = xr[i] * inv * g[i];
    }
    return EM_OK;
}

em_status kern_ref_rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                        const int32_t *pos, float base, int rope_dim)
{
    em_status st = kern_check_rope(x, n_tok, n_heads, hd, stride, pos, rope_dim);
    if (st != EM_OK)
        return st;
    for (int t = 0; t < n_tok; t++) {
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)t * stride + (size_t)h * hd;
            for (int i = 0; i < rope_dim / 2; i++) {
                float freq = powf(base, -2.0f * (float)i / (float)rope_dim);
                float th = (float)pos[t] * freq, c = cosf(th), s = sinf(th);
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c - b * s;
                v[2 * i + 1] = a * s + b * c;
            }
        }
    }
    return EM_OK;
}

em_status kern_ref_swiglu(void *ctx, const float *gate, const float *up, int n, int dim, float *out)
{
    em_status st = kern_check_rows(gate, up, n, dim, out);
    if (st != EM_OK)
        return st;
    for (size_t i = 0; i < (size_t)n * dim; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
    return EM_OK;
}

static void attn_rows(const kern_attn_args *a, float *p, float *pr);

/* Plain two-pass softmax attention per query and head; statistics from the probabilities.
 * Scores and the group's probabilities of one query live in two heap rows of len floats. */
em_status kern_ref_attn(void *ctx, const kern_attn_args *a)
{
    em_status st = kern_check_attn(a);
    if (st != EM_OK || a->n_q == 0)
        return st;
    size_t n = a->len > 0 ? (size_t)a->len : 1;
    float *p = malloc(sizeof(float) * n), *pr = malloc(sizeof(float) * n);
    if (p && pr)
        attn_rows(a, p, pr);
    st = p && pr ? EM_OK : EM_ENOMEM;
    free(p);
    free(pr);
    return st;
}

static void attn_rows(const kern_attn_args *a, float *p, float *pr)
{
    int hd = a->hd, len = a->len;
    for (int i = 0; i < a->n_q; i++) {
        int row = a->stats && a->stats->row_ptrs ? i - (a->n_q - a->stats->n_rows) : -1;
        if (len > 0)
            memset(pr, 0, sizeof(float) * (size_t)len);
        for (int g = 0; g < a->G; g++) {
            const float *q = a->q + (size_t)i * a->q_stride + (size_t)g * hd;
            float *o = a->out + (size_t)i * a->o_stride + (size_t)g * hd;
            float mx = -INFINITY;
            for (int j = 0; j < len; j++) {
                if (a->kpos[j] > a->q_pos[i]) {
                    p[j] = -INFINITY;
                    continue;
                }
                float s = 0.0f;
                for (int d = 0; d < hd; d++)
                    s += q[d] * a->k[(size_t)j * hd + d];
                p[j] = s * a->scale + (a->kbias ? a->kbias[j] : 0.0f);
                if (p[j] > mx)
                    mx = p[j];
            }
            float sum = 0.0f;
            for (int j = 0; j < len; j++) {
                p[j] = p[j] == -INFINITY ? 0.0f : expf(p[j] - mx);
                sum += p[j];
            }
            for (int d = 0; d < hd; d++)
                o[d] = 0.0f;
            if (sum == 0.0f)
                continue;
            for (int j = 0; j < len; j++) {
                p[j] /= sum;
                for (int d = 0; d < hd; d++)
                    o[d] += p[j] * a->v[(size_t)j * hd + d];
                if (a->stats) {
                    if (a->stats->group_max) {
                        if (p[j] > pr[j])
                            pr[j] = p[j];
                    } else {
                        pr[j] += p[j] / (float)a->G;
                    }
                }
            }
        }
        if (!a->stats)
            continue;
        kern_attn_stats *st = a->stats;
        for (int j = 0; j < len; j++) {
            if (a->kpos[j] > a->q_pos[i])
                continue;
            if (st->col_sum)
                st->col_sum[j] += pr[j];
            if (st->col_sqsum)
                st->col_sqsum[j] += pr[j] * pr[j];
            if (st->col_cnt)
                st->col_cnt[j] += 1;
        }
        if (row >= 0 && st->row_ptrs) {
            float *dst = st->row_ptrs[row];
            for (int j = 0; j < len; j++)
                dst[j] = pr[j];
        }
    }
}

static ref_ctx g_ref_ctx[2] = {{KERN_ACT_F32}, {KERN_ACT_Q8}};

#define REF_OPS(nm, mode)                                                                          \
    {                                                                                              \
        .name = nm, .matmul = kern_ref_matmul, .rmsnorm = kern_ref_rmsnorm, .rope = kern_ref_rope, \
        .swiglu = kern_ref_swiglu, .attn = kern_ref_attn, .ctx = &g_ref_ctx[mode],                 \
    }
static const kern_ops g_ref_ops[2] = {REF_OPS("ref", KERN_ACT_F32), REF_OPS("ref-q8", KERN_ACT_Q8)};

const kern_ops *kern_ops_ref(void)
{
    return &g_ref_ops[KERN_ACT_F32];
}

const kern_ops *kern_ops_ref_mode(kern_act_mode m)
{
    if (m != KERN_ACT_F32 && m != KERN_ACT_Q8)
        return NULL;
    return &g_ref_ops[m];
}
