/* Tables for the dense ops: matmul (GEMV and cuBLAS paths, f32/f16; quantized Q8_0/Q4_0/Q4_1),
 * RMSNorm, RoPE, SwiGLU, embedding lookup (also quantized tables), softmax/argmax/sampling;
 * plus the device-free validation checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attn.h"
#include "kernels/cuda/embed.h"
#include "kernels/cuda/kern_cuda.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sample.h"
#include "kernels/cuda/swiglu.h"
#include "kernels/quant.h"
#include "kernels/ref/kern_ref.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"
#include "tests/cuda/qcheck.h"

/* ---- matmul ---- */

typedef struct mm_case {
    int rows, cols, n, xs_pad, ys_pad;
    kern_dtype dt;
} mm_case;

/* f32 accumulation over cols terms of size <= 1: the two summation orders differ by about
 * sqrt(cols) * 2^-24 * |terms|; atol = 2e-6 * sqrt(cols) covers 10 sigma, rtol 1e-5. */
static const mm_case MM[] = {
    {1, 8, 1, 0, 0, KERN_F32},      {7, 33, 1, 3, 1, KERN_F32},
    {64, 288, 3, 0, 0, KERN_F16},   {257, 288, 8, 5, 7, KERN_F32},
    {257, 288, 8, 0, 0, KERN_F16},  {96, 64, 9, 0, 3, KERN_F32},
    {96, 64, 9, 2, 0, KERN_F16},    {512, 4096, 1, 0, 0, KERN_F16},
    {4096, 512, 2, 0, 0, KERN_F32}, {1000, 4096, 33, 0, 0, KERN_F16},
    {32, 16, 0, 0, 0, KERN_F32}, /* empty batch */
};

static void case_matmul(kern_cuda_ctx *c, const mm_case *t, th_rng *r)
{
    int xs = t->cols + t->xs_pad, ys = t->rows + t->ys_pad, n = t->n;
    size_t wn = (size_t)t->rows * t->cols;
    float *wf = malloc(sizeof(float) * wn), *x = malloc(sizeof(float) * ((size_t)n * xs + 1));
    uint16_t *wh = malloc(sizeof(uint16_t) * wn);
    float *yr = calloc((size_t)n * ys + 1, sizeof(float));
    float sc = 1.0f / sqrtf((float)t->cols);
    th_fill(r, wf, wn, -sc, sc);
    th_fill(r, x, (size_t)n * xs, -1.0f, 1.0f);
    for (size_t i = 0; i < wn; i++)
        wh[i] = kern_f32_to_f16(wf[i]);
    kern_weight w = {t->dt == KERN_F16 ? (const void *)wh : wf, t->dt, t->rows, t->cols};
    int bad = kern_ref_matmul(NULL, &w, x, xs, n, yr, ys) != EM_OK;
    kern_weight dw = w;
    dw.data = th_dev(c, w.data, wn * (t->dt == KERN_F16 ? 2 : 4));
    float *dx = th_dev(c, x, sizeof(float) * ((size_t)n * xs + 1));
    float *dy = th_dev_zero(sizeof(float) * ((size_t)n * ys + 1));
    em_status st = kern_cuda_matmul(c, &dw, dx, xs, n, dy, ys);
    float *y = th_host(c, dy, sizeof(float) * ((size_t)n * ys + 1));
    bad += st != EM_OK;
    for (int i = 0; i < n && !bad; i++) {
        bad += th_check("y", y + (size_t)i * ys, yr + (size_t)i * ys, (size_t)t->rows,
                        2e-6f * sqrtf((float)t->cols), 1e-5f);
    }
    char name[128];
    snprintf(name, sizeof name, "matmul %s rows=%d cols=%d n=%d xs=%d ys=%d",
             t->dt == KERN_F16 ? "f16" : "f32", t->rows, t->cols, n, xs, ys);
    th_report(name, bad);
    kern_cuda_free((void *)dw.data), kern_cuda_free(dx), kern_cuda_free(dy);
    free(wf), free(wh), free(x), free(yr), free(y);
}

/* ---- quantized matmul: vs kern_ref_matmul (bound in qcheck.h), tokens alone == batch ---- */

typedef struct qmm_case {
    int rows, cols, n, xs_pad, ys_pad;
} qmm_case;

static const qmm_case QMM[] = {
    {7, 32, 1, 0, 0},   {33, 576, 3, 5, 1},    {577, 576, 8, 0, 3},   {64, 1536, 13, 3, 0},
    {9, 96, 200, 1, 1}, {1000, 4096, 1, 0, 0}, {49152, 576, 1, 0, 0}, {16, 64, 0, 0, 0},
};

static void case_matmul_q(kern_cuda_ctx *c, kern_dtype dt, const qmm_case *t, th_rng *r)
{
    int xs = t->cols + t->xs_pad, ys = t->rows + t->ys_pad, n = t->n;
    size_t wb = kern_row_bytes(dt, t->cols) * (size_t)t->rows, ny = (size_t)n * ys + 1;
    uint8_t *w = qc_weights(dt, t->rows, t->cols, 1.0f, r);
    float *x = malloc(sizeof(float) * ((size_t)n * xs + 1)), *yr = calloc(ny, sizeof(float));
    th_fill(r, x, (size_t)n * xs, -1.0f, 1.0f);
    kern_weight hw = {w, dt, t->rows, t->cols};
    int bad = kern_ref_matmul(NULL, &hw, x, xs, n, yr, ys) != EM_OK;
    kern_weight dw = hw;
    dw.data = th_dev(c, w, wb);
    float *dx = th_dev(c, x, sizeof(float) * ((size_t)n * xs + 1));
    float *dy = th_dev_zero(sizeof(float) * ny), *dy1 = th_dev_zero(sizeof(float) * ny);
    bad += kern_cuda_matmul(c, &dw, dx, xs, n, dy, ys) != EM_OK;
    for (int k = 0; k < n && n <= 16; k++) /* batch invariance: each token alone */
        bad +=
            kern_cuda_matmul(c, &dw, dx + (size_t)k * xs, xs, 1, dy1 + (size_t)k * ys, ys) != EM_OK;
    float *y = th_host(c, dy, sizeof(float) * ny), *y1 = th_host(c, dy1, sizeof(float) * ny);
    char name[128];
    snprintf(name, sizeof name, "matmul %s rows=%d cols=%d n=%d xs=%d ys=%d", kern_dtype_name(dt),
             t->rows, t->cols, n, xs, ys);
    bad += qc_check(name, dt, w, t->rows, t->cols, x, xs, n, y, yr, ys);
    if (n <= 16 && y && y1 && memcmp(y, y1, sizeof(float) * (size_t)n * ys) != 0) {
        printf("    tokens alone differ from the batch\n");
        bad++;
    }
    th_report(name, bad);
    kern_cuda_free((void *)dw.data), kern_cuda_free(dx), kern_cuda_free(dy), kern_cuda_free(dy1);
    free(w), free(x), free(yr), free(y), free(y1);
}

static void case_embed_q(kern_cuda_ctx *c, kern_dtype dt, int rows, int cols, th_rng *r)
{
    uint8_t *w = qc_weights(dt, rows, cols, 1.0f, r);
    size_t wb = kern_row_bytes(dt, cols) * (size_t)rows;
    float *ref = malloc(sizeof(float) * 4 * cols);
    kern_weight hw = {w, dt, rows, cols};
    int32_t ids[4] = {0, rows - 1, rows / 2, 1 % rows};
    for (int i = 0; i < 4; i++)
        kern_embed_row(&hw, ids[i], ref + (size_t)i * cols);
    kern_weight dw = hw;
    dw.data = th_dev(c, w, wb);
    int32_t *dids = th_dev(c, ids, sizeof ids);
    float *dout = th_dev_zero(sizeof(float) * 4 * cols);
    int bad = kern_cuda_embed(c, &dw, dids, 4, dout, cols) != EM_OK;
    float *out = th_host(c, dout, sizeof(float) * 4 * cols);
    bad += th_check("row", out, ref, (size_t)4 * cols, 0.0f, 0.0f); /* exact (quant.cuh) */
    char name[96];
    snprintf(name, sizeof name, "embed %s vocab=%d dim=%d", kern_dtype_name(dt), rows, cols);
    th_report(name, bad);
    kern_cuda_free((void *)dw.data), kern_cuda_free(dids), kern_cuda_free(dout);
    free(w), free(ref), free(out);
}

/* ---- rmsnorm / swiglu / rope ---- */

static void case_rmsnorm(kern_cuda_ctx *c, int n, int dim, th_rng *r)
{
    size_t cnt = (size_t)n * dim;
    float *x = malloc(sizeof(float) * (cnt + 1)), *g = malloc(sizeof(float) * dim);
    float *yr = malloc(sizeof(float) * (cnt + 1));
    th_fill(r, x, cnt, -2.0f, 2.0f);
    th_fill(r, g, (size_t)dim, 0.5f, 1.5f);
    int bad = kern_ref_rmsnorm(NULL, x, g, n, dim, 1e-5f, yr) != EM_OK;
    float *dx = th_dev(c, x, sizeof(float) * (cnt + 1)), *dg = th_dev(c, g, sizeof(float) * dim);
    bad += kern_cuda_rmsnorm(c, dx, dg, n, dim, 1e-5f, dx) != EM_OK; /* in place */
    float *y = th_host(c, dx, sizeof(float) * (cnt + 1));
    /* one sum of dim squares: relative error ~ sqrt(dim) 2^-24; 1e-5 relative is ample */
    bad += th_check("y", y, yr, cnt, 1e-6f, 1e-5f);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm n=%d dim=%d (in place)", n, dim);
    th_report(name, bad);
    kern_cuda_free(dx), kern_cuda_free(dg), free(x), free(g), free(yr), free(y);
}

static void case_swiglu(kern_cuda_ctx *c, int n, int dim, th_rng *r)
{
    size_t cnt = (size_t)n * dim;
    float *g = malloc(sizeof(float) * (cnt + 1)), *u = malloc(sizeof(float) * (cnt + 1));
    float *yr = malloc(sizeof(float) * (cnt + 1));
    th_fill(r, g, cnt, -8.0f, 8.0f);
    th_fill(r, u, cnt, -2.0f, 2.0f);
    int bad = kern_ref_swiglu(NULL, g, u, n, dim, yr) != EM_OK;
    float *dg = th_dev(c, g, sizeof(float) * (cnt + 1)),
          *du = th_dev(c, u, sizeof(float) * (cnt + 1));
    float *dy = th_dev_zero(sizeof(float) * (cnt + 1));
    bad += kern_cuda_swiglu(c, dg, du, n, dim, dy) != EM_OK;
    float *y = th_host(c, dy, sizeof(float) * (cnt + 1));
    bad += th_check("y", y, yr, cnt, 1e-6f, 1e-6f); /* expf: CUDA <= 2 ulp vs glibc */
    char name[96];
    snprintf(name, sizeof name, "swiglu n=%d dim=%d", n, dim);
    th_report(name, bad);
    kern_cuda_free(dg), kern_cuda_free(du), kern_cuda_free(dy);
    free(g), free(u), free(yr), free(y);
}

typedef struct rope_case {
    int n_tok, n_heads, hd, stride_pad, rope_dim, pos_max;
    float atol; /* theta = pos * base^(-2i/d): a 1-4 ulp powf difference moves theta by up to
                   pos_max * 4 * 2^-24 rad, so long positions need a looser bound */
} rope_case;

static const rope_case ROPE[] = {
    {1, 1, 8, 0, 8, 3, 1e-5f},           {5, 6, 8, 4, 8, 500, 2e-4f},
    {3, 32, 128, 0, 128, 100, 1e-4f},    {7, 4, 128, 16, 64, 4096, 2e-3f},
    {2, 8, 128, 0, 128, 32767, 1.5e-2f},
};

static void case_rope(kern_cuda_ctx *c, const rope_case *t, th_rng *r)
{
    int stride = t->n_heads * t->hd + t->stride_pad;
    size_t cnt = (size_t)t->n_tok * stride;
    float *x = malloc(sizeof(float) * cnt), *xr = malloc(sizeof(float) * cnt);
    int32_t *pos = malloc(sizeof(int32_t) * t->n_tok);
    th_fill(r, x, cnt, -1.0f, 1.0f);
    for (int i = 0; i < t->n_tok; i++)
        pos[i] = i == 0 ? t->pos_max : (int32_t)(th_uniform(r, 0, 1) * t->pos_max);
    memcpy(xr, x, sizeof(float) * cnt);
    int bad = kern_ref_rope(NULL, xr, t->n_tok, t->n_heads, t->hd, stride, pos, 10000.0f,
                            t->rope_dim) != EM_OK;
    float *dx = th_dev(c, x, sizeof(float) * cnt);
    int32_t *dp = th_dev(c, pos, sizeof(int32_t) * t->n_tok);
    bad += kern_cuda_rope(c, dx, t->n_tok, t->n_heads, t->hd, stride, dp, 10000.0f, t->rope_dim) !=
           EM_OK;
    float *y = th_host(c, dx, sizeof(float) * cnt);
    bad += th_check("x", y, xr, cnt, t->atol, 0.0f);
    char name[128];
    snprintf(name, sizeof name, "rope tok=%d heads=%d hd=%d rope_dim=%d pos<=%d", t->n_tok,
             t->n_heads, t->hd, t->rope_dim, t->pos_max);
    th_report(name, bad);
    kern_cuda_free(dx), kern_cuda_free(dp), free(x), free(xr), free(pos), free(y);
}

/* ---- embedding, sampling ---- */

static void case_embed(kern_cuda_ctx *c, kern_dtype dt, int rows, int cols, th_rng *r)
{
    size_t wn = (size_t)rows * cols;
    float *wf = malloc(sizeof(float) * wn), *ref = malloc(sizeof(float) * 4 * cols);
    uint16_t *wh = malloc(sizeof(uint16_t) * wn);
    th_fill(r, wf, wn, -1.0f, 1.0f);
    for (size_t i = 0; i < wn; i++)
        wh[i] = kern_f32_to_f16(wf[i]);
    kern_weight w = {dt == KERN_F16 ? (const void *)wh : wf, dt, rows, cols};
    int32_t ids[4] = {0, rows - 1, rows / 2, 1 % rows};
    for (int i = 0; i < 4; i++)
        kern_embed_row(&w, ids[i], ref + (size_t)i * cols);
    kern_weight dw = w;
    dw.data = th_dev(c, w.data, wn * (dt == KERN_F16 ? 2 : 4));
    int32_t *dids = th_dev(c, ids, sizeof ids);
    float *dout = th_dev_zero(sizeof(float) * 4 * cols);
    int bad = kern_cuda_embed(c, &dw, dids, 4, dout, cols) != EM_OK;
    float *out = th_host(c, dout, sizeof(float) * 4 * cols);
    bad += th_check("row", out, ref, (size_t)4 * cols, 0.0f, 0.0f); /* exact conversion */
    char name[96];
    snprintf(name, sizeof name, "embed %s vocab=%d dim=%d", dt == KERN_F16 ? "f16" : "f32", rows,
             cols);
    th_report(name, bad);
    kern_cuda_free((void *)dw.data), kern_cuda_free(dids), kern_cuda_free(dout);
    free(wf), free(wh), free(ref), free(out);
}

static void case_sampling(kern_cuda_ctx *c, int n, int dim, float temp, th_rng *r)
{
    size_t cnt = (size_t)n * dim;
    float *lg = malloc(sizeof(float) * cnt), *pr = malloc(sizeof(float) * cnt), u[8];
    int32_t am_ref[8];
    th_fill(r, lg, cnt, -10.0f, 10.0f);
    for (int t = 0; t < n; t++) {
        const float *x = lg + (size_t)t * dim;
        float mx = -INFINITY;
        int am = 0;
        for (int i = 0; i < dim; i++) {
            if (x[i] > mx)
                mx = x[i], am = i;
        }
        double s = 0.0;
        for (int i = 0; i < dim; i++)
            s += exp((double)(x[i] - mx) / temp);
        for (int i = 0; i < dim; i++)
            pr[(size_t)t * dim + i] = (float)(exp((double)(x[i] - mx) / temp) / s);
        am_ref[t] = am;
        u[t] = th_uniform(r, 0.0f, 0.999f);
    }
    float *dl = th_dev(c, lg, sizeof(float) * cnt), *dp = th_dev_zero(sizeof(float) * cnt);
    float *du = th_dev(c, u, sizeof(float) * n);
    int32_t *dam = th_dev_zero(sizeof(int32_t) * n), *dsm = th_dev_zero(sizeof(int32_t) * n);
    int bad = kern_cuda_softmax(c, dl, n, dim, temp, dp) != EM_OK;
    bad += kern_cuda_argmax(c, dl, n, dim, dam) != EM_OK;
    bad += kern_cuda_sample(c, dp, n, dim, du, dsm) != EM_OK;
    float *p = th_host(c, dp, sizeof(float) * cnt);
    int32_t *am = th_host(c, dam, sizeof(int32_t) * n), *sm = th_host(c, dsm, sizeof(int32_t) * n);
    bad += th_check("probs", p, pr, cnt, 1e-7f, 1e-5f); /* expf vs exp in double */
    bad += th_check_i32("argmax", am, am_ref, (size_t)n);
    for (int t = 0; t < n && sm && p; t++) { /* the CDF of the reference probabilities must
                                                bracket u at the sampled id (1e-5 slack) */
        double lo = 0.0;
        for (int i = 0; i < sm[t]; i++)
            lo += pr[(size_t)t * dim + i];
        double hi = lo + pr[(size_t)t * dim + sm[t]];
        if (sm[t] < 0 || sm[t] >= dim || lo > u[t] + 1e-5 || hi < u[t] - 1e-5) {
            printf("    sample[%d] = %d: cdf [%g, %g] does not bracket u = %g\n", t, sm[t], lo, hi,
                   u[t]);
            bad++;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "softmax/argmax/sample n=%d vocab=%d temp=%.2f", n, dim, temp);
    th_report(name, bad);
    kern_cuda_free(dl), kern_cuda_free(dp), kern_cuda_free(du), kern_cuda_free(dam),
        kern_cuda_free(dsm);
    free(lg), free(pr), free(p), free(am), free(sm);
}

void cases_dense(kern_cuda_ctx *c)
{
    th_rng r = {0x9E3779B97F4A7C15ull};
    for (size_t i = 0; i < sizeof MM / sizeof MM[0]; i++)
        case_matmul(c, &MM[i], &r);
    static const kern_dtype qt[] = {KERN_Q8_0, KERN_Q4_0, KERN_Q4_1};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < sizeof QMM / sizeof QMM[0]; i++)
            case_matmul_q(c, qt[k], &QMM[i], &r);
        case_embed_q(c, qt[k], 49152, 576, &r);
    }
    int rn[][2] = {{1, 8}, {5, 288}, {3, 4096}, {0, 64}};
    for (int i = 0; i < 4; i++)
        case_rmsnorm(c, rn[i][0], rn[i][1], &r);
    case_swiglu(c, 1, 8, &r);
    case_swiglu(c, 9, 768, &r);
    for (size_t i = 0; i < sizeof ROPE / sizeof ROPE[0]; i++)
        case_rope(c, &ROPE[i], &r);
    case_embed(c, KERN_F32, 512, 64, &r);
    case_embed(c, KERN_F16, 32000, 288, &r);
    case_sampling(c, 1, 512, 1.0f, &r);
    case_sampling(c, 3, 32000, 0.7f, &r);
}

/* Checks that run without a device: argument validation happens before any CUDA call. */
void cases_no_device(void)
{
    int bad = 0;
    kern_cuda_ctx *c = NULL;
    if (kern_cuda_device_count() == 0) {
        bad += kern_cuda_ctx_create(0, &c) != EM_EDEVICE || c != NULL;
        bad += kern_ops_cuda_create(0) != NULL;
    }
    bad += kern_kv_check(KERN_KV_Q4, 7) != EM_EUNSUPPORTED;
    bad += kern_kv_check(KERN_KV_Q8, 48) != EM_EUNSUPPORTED; /* not a multiple of 32 */
    bad += kern_kv_check(KERN_KV_F32, 300) != EM_EUNSUPPORTED;
    bad += kern_kv_check(KERN_KV_Q4, 128) != EM_OK;
    kern_cuda_kv_head h;
    memset(&h, 0, sizeof h);
    kern_cuda_attn_args a;
    memset(&a, 0, sizeof a);
    a.n_q = 1, a.n_head_kv = 1, a.G = 1, a.hd = 300, a.heads = &h;
    bad += kern_cuda_attn(NULL, &a) != EM_EUNSUPPORTED;
    a.hd = 8, a.n_rows = 2; /* more rows than queries */
    bad += kern_cuda_attn(NULL, &a) != EM_EINVAL;
    kern_weight w = {NULL, KERN_F32, 4, 8};
    bad += kern_cuda_matmul(NULL, &w, NULL, 4, 1, NULL, 4) != EM_EINVAL; /* x_stride < cols */
    kern_weight wk = {NULL, KERN_Q4_K, 4, 256}, wq = {NULL, KERN_Q4_1, 4, 48};
    bad += kern_cuda_matmul(NULL, &wk, NULL, 256, 1, NULL, 4) != EM_EUNSUPPORTED; /* no K-quants */
    bad += kern_cuda_matmul(NULL, &wq, NULL, 48, 1, NULL, 4) != EM_EINVAL;        /* cols % 32 */
    bad += kern_cuda_embed(NULL, &wk, NULL, 1, NULL, 256) != EM_EUNSUPPORTED;
    bad += kern_cuda_embed(NULL, &wq, NULL, 1, NULL, 48) != EM_EINVAL;
    th_report("validation without device (status codes, no CUDA call)", bad);
}
