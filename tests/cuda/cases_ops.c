/* The kern_ops dispatcher (host pointers, weight cache) vs the reference vtable: every entry
 * of kern_ops once on stories260K-like shapes (dim 64, hd 8, GQA 2) and once on a larger one,
 * including the attention statistics the EMS policy reads through kern_attn_stats. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kern_cuda.h"
#include "kernels/ref/kern_ref.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"
#include "tests/cuda/qcheck.h"

static int run_mm(const kern_ops *g, const kern_ops *ref, kern_dtype dt, int rows, int cols, int n,
                  th_rng *r)
{
    size_t wn = (size_t)rows * cols;
    float *wf = malloc(4 * wn), *x = malloc(4 * (size_t)n * (cols + 2));
    float *y1 = calloc((size_t)n * (rows + 1), 4), *y2 = calloc((size_t)n * (rows + 1), 4);
    uint16_t *wh = malloc(2 * wn);
    th_fill(r, wf, wn, -0.1f, 0.1f);
    th_fill(r, x, (size_t)n * (cols + 2), -1.0f, 1.0f);
    for (size_t i = 0; i < wn; i++)
        wh[i] = kern_f32_to_f16(wf[i]);
    kern_weight w = {dt == KERN_F16 ? (const void *)wh : wf, dt, rows, cols};
    int bad = kern_matmul(g, &w, x, cols + 2, n, y1, rows + 1) != EM_OK;
    bad += kern_matmul(g, &w, x, cols + 2, n, y1, rows + 1) != EM_OK; /* cached weight */
    bad += kern_matmul(ref, &w, x, cols + 2, n, y2, rows + 1) != EM_OK;
    bad += th_check("matmul", y1, y2, (size_t)n * (rows + 1), 2e-6f * sqrtf((float)cols), 1e-5f);
    free(wf), free(x), free(y1), free(y2), free(wh);
    return bad;
}

/* A quantized weight through the vtable (weight cache sized by kern_row_bytes, strides). */
static int run_mm_q(const kern_ops *g, const kern_ops *ref, kern_dtype dt, int rows, int cols,
                    int n, th_rng *r)
{
    uint8_t *w = qc_weights(dt, rows, cols, 0.1f, r);
    float *x = malloc(4 * (size_t)n * (cols + 2));
    float *y1 = calloc((size_t)n * (rows + 1), 4), *y2 = calloc((size_t)n * (rows + 1), 4);
    th_fill(r, x, (size_t)n * (cols + 2), -1.0f, 1.0f);
    kern_weight kw = {w, dt, rows, cols};
    int bad = kern_matmul(g, &kw, x, cols + 2, n, y1, rows + 1) != EM_OK;
    bad += kern_matmul(g, &kw, x, cols + 2, n, y1, rows + 1) != EM_OK; /* cached weight */
    bad += kern_matmul(ref, &kw, x, cols + 2, n, y2, rows + 1) != EM_OK;
    bad += qc_check("matmul", dt, w, rows, cols, x, cols + 2, n, y1, y2, rows + 1);
    free(w), free(x), free(y1), free(y2);
    return bad;
}

static int run_small_ops(const kern_ops *g, const kern_ops *ref, int n, int dim, th_rng *r)
{
    size_t cnt = (size_t)n * dim;
    float *x = malloc(4 * cnt), *gn = malloc(4 * dim), *a = malloc(4 * cnt), *b = malloc(4 * cnt);
    float *u = malloc(4 * cnt);
    int32_t *pos = malloc(4 * n);
    th_fill(r, x, cnt, -1.0f, 1.0f);
    th_fill(r, gn, (size_t)dim, 0.5f, 1.5f);
    th_fill(r, u, cnt, -1.0f, 1.0f);
    for (int i = 0; i < n; i++)
        pos[i] = 7 * i;
    int bad = 0;
    bad += kern_rmsnorm(g, x, gn, n, dim, 1e-5f, a) != EM_OK;
    bad += kern_rmsnorm(ref, x, gn, n, dim, 1e-5f, b) != EM_OK;
    bad += th_check("rmsnorm", a, b, cnt, 1e-6f, 1e-5f);
    memcpy(a, x, 4 * cnt), memcpy(b, x, 4 * cnt);
    bad += kern_rope(g, a, n, dim / 8, 8, dim, pos, 10000.0f, 8) != EM_OK;
    bad += kern_rope(ref, b, n, dim / 8, 8, dim, pos, 10000.0f, 8) != EM_OK;
    bad += th_check("rope", a, b, cnt, 1e-4f, 0.0f); /* positions < 7n: powf ulps * pos */
    bad += kern_swiglu(g, x, u, n, dim, a) != EM_OK;
    bad += kern_swiglu(ref, x, u, n, dim, b) != EM_OK;
    bad += th_check("swiglu", a, b, cnt, 1e-6f, 1e-6f);
    free(x), free(gn), free(a), free(b), free(u), free(pos);
    return bad;
}

static int run_attn(const kern_ops *g, const kern_ops *ref, int n_q, int G, int hd, int len,
                    int n_rows, th_rng *r)
{
    int qs = G * hd + 3;
    float *q = malloc(4 * (size_t)n_q * qs), *k = malloc(4 * (size_t)len * hd);
    float *v = malloc(4 * (size_t)len * hd), *o1 = calloc((size_t)n_q * qs, 4);
    float *o2 = calloc((size_t)n_q * qs, 4);
    int32_t *qp = malloc(4 * n_q), *kp = malloc(4 * len);
    th_fill(r, q, (size_t)n_q * qs, -2.0f, 2.0f);
    th_fill(r, k, (size_t)len * hd, -1.0f, 1.0f);
    th_fill(r, v, (size_t)len * hd, -1.0f, 1.0f);
    for (int j = 0; j < len; j++)
        kp[j] = j;
    for (int i = 0; i < n_q; i++)
        qp[i] = len - n_q + i;
    float *st[2][3];
    float *rows[2][8];
    int32_t *cnt[2];
    kern_attn_stats s[2];
    float **rp[2] = {rows[0], rows[1]};
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < 2; i++)
            st[b][i] = calloc((size_t)len, 4);
        cnt[b] = calloc((size_t)len, 4);
        for (int i = 0; i < n_rows; i++)
            rows[b][i] = calloc((size_t)len, 4);
        s[b] = (kern_attn_stats){st[b][0], st[b][1], cnt[b], rp[b], n_rows, 0};
    }
    kern_attn_args a = {
        n_q, G, hd, len, q, qs, qp, k, v, kp, NULL, o1, qs, 1.0f / sqrtf((float)hd), &s[0]};
    int bad = kern_attn(g, &a) != EM_OK;
    a.out = o2, a.stats = &s[1];
    bad += kern_attn(ref, &a) != EM_OK;
    bad += th_check("attn out", o1, o2, (size_t)n_q * qs, 2e-5f, 1e-4f);
    bad += th_check("col_sum", st[0][0], st[1][0], (size_t)len, 1e-6f, 1e-4f);
    bad += th_check("col_sqsum", st[0][1], st[1][1], (size_t)len, 1e-7f, 2e-4f);
    bad += th_check_i32("col_cnt", cnt[0], cnt[1], (size_t)len);
    for (int i = 0; i < n_rows; i++)
        bad += th_check("row", rows[0][i], rows[1][i], (size_t)len, 1e-7f, 1e-4f);
    for (int b = 0; b < 2; b++) {
        free(st[b][0]), free(st[b][1]), free(cnt[b]);
        for (int i = 0; i < n_rows; i++)
            free(rows[b][i]);
    }
    free(q), free(k), free(v), free(o1), free(o2), free(qp), free(kp);
    return bad;
}

/* Calls kern_check_* rejects get EM_EINVAL from the CUDA backend as from the reference, run
 * nothing, and leave the backend working (only a device error is sticky). */
static int run_bad_args(const kern_ops *g, const kern_ops *ref, th_rng *r)
{
    float wf[64 * 40], x[3 * 64], y[3 * 40], gn[64];
    int32_t pos[3] = {0, 1, 2};
    th_fill(r, wf, 64 * 40, -0.1f, 0.1f);
    th_fill(r, x, 3 * 64, -1.0f, 1.0f);
    th_fill(r, gn, 64, 0.5f, 1.5f);
    kern_weight bad_type = {wf, (kern_dtype)7, 40, 64}, part_block = {wf, KERN_Q8_0, 40, 48};
    kern_weight w = {wf, KERN_F32, 40, 64};
    int bad = 0;
    for (int b = 0; b < 2; b++) {
        const kern_ops *o = b ? ref : g;
        bad += kern_matmul(o, &bad_type, x, 64, 3, y, 40) != EM_EINVAL;
        bad += kern_matmul(o, &part_block, x, 64, 3, y, 40) != EM_EINVAL;
        bad += kern_matmul(o, &w, x, 32, 3, y, 40) != EM_EINVAL; /* x rows overlap */
        bad += kern_rmsnorm(o, x, gn, -1, 64, 1e-5f, y) != EM_EINVAL;
        bad += kern_rope(o, x, 3, 8, 8, 64, pos, 1e4f, 7) != EM_EINVAL;  /* odd rope_dim */
        bad += kern_rope(o, x, 3, 8, 8, 64, pos, 1e4f, 10) != EM_EINVAL; /* rope_dim > hd */
        bad += kern_swiglu(o, x, x, 2, -3, y) != EM_EINVAL;
    }
    bad += kern_ops_cuda_status(g) != EM_OK;
    bad += kern_matmul(g, &w, x, 64, 3, y, 40) != EM_OK; /* still works */
    bad += kern_matmul(g, &w, x, 0, 1, y, 0) != EM_OK;   /* one token: strides unused */
    bad += kern_rope(g, x, 1, 8, 8, 0, pos, 1e4f, 8) != EM_OK;
    bad += kern_ops_cuda_status(g) != EM_OK;
    return bad;
}

void cases_ops(void)
{
    th_rng r = {0x0DDBA11ull};
    kern_ops *g = kern_ops_cuda_create(0);
    const kern_ops *ref = kern_ops_ref();
    if (!g) {
        th_report("kern_ops_cuda_create(0)", 1);
        return;
    }
    int bad = run_mm(g, ref, KERN_F32, 64, 64, 1, &r) + run_mm(g, ref, KERN_F16, 172, 64, 20, &r);
    bad += run_small_ops(g, ref, 5, 64, &r);
    bad += run_attn(g, ref, 1, 2, 8, 33, 1, &r) + run_attn(g, ref, 6, 2, 8, 40, 4, &r);
    bad += kern_ops_cuda_status(g) != EM_OK;
    th_report("kern_ops cuda vs ref (stories260K shapes: dim 64, hd 8, GQA 2)", bad);
    bad =
        run_mm(g, ref, KERN_F16, 4096, 4096, 1, &r) + run_mm(g, ref, KERN_F32, 1024, 4096, 16, &r);
    bad += run_small_ops(g, ref, 3, 4096, &r);
    bad += run_attn(g, ref, 1, 4, 128, 4100, 1, &r) + run_attn(g, ref, 16, 4, 128, 600, 8, &r);
    bad += kern_ops_cuda_status(g) != EM_OK;
    th_report("kern_ops cuda vs ref (dim 4096, hd 128, GQA 4, long cache)", bad);
    bad = run_mm_q(g, ref, KERN_Q4_1, 576, 576, 1, &r) +
          run_mm_q(g, ref, KERN_Q8_0, 1536, 576, 9, &r);
    bad += run_mm_q(g, ref, KERN_Q4_0, 576, 1536, 3, &r);
    bad += kern_ops_cuda_status(g) != EM_OK;
    th_report("kern_ops cuda vs ref (quantized matmul, SmolLM2 shapes)", bad);
    th_report("kern_ops cuda: bad arguments fail that call alone (EM_EINVAL, not sticky)",
              run_bad_args(g, ref, &r));
    kern_ops_cuda_free(g);
}
