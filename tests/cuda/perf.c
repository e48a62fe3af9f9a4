/* `cuda_ops_test --perf`: kernel timings with L2 flushed before every run (a 512 MB memset),
 * median of 7 runs, effective bandwidth over the bytes each kernel must read. Correctness runs
 * never time; this mode checks nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attn.h"
#include "kernels/cuda/ems_step.h"
#include "kernels/cuda/matmul.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"

#define FLUSH_BYTES (512u << 20)
#define RUNS        7

typedef struct perf_op {
    em_status (*fn)(void *);
    void *arg;
} perf_op;

static void *g_flush;
static kern_cuda_ctx *g_c;

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The median time of RUNS calls of fn(arg) (cache flushed before each) in *ms. */
static em_status median_ms(em_status (*fn)(void *), void *arg, float *ms)
{
    float t[RUNS];
    for (int i = 0; i < RUNS; i++) {
        em_status st = kern_cuda_memset0(g_c, g_flush, FLUSH_BYTES);
        st = st != EM_OK ? st : kern_cuda_time_ms(g_c, fn, arg, &t[i]);
        if (st != EM_OK) {
            return st;
        }
    }
    qsort(t, RUNS, sizeof(float), cmp_f);
    *ms = t[RUNS / 2];
    return EM_OK;
}

typedef struct mm_arg {
    kern_weight w;
    float *x, *y;
} mm_arg;

static em_status run_mm(void *p)
{
    mm_arg *a = p;
    return kern_cuda_matmul(g_c, &a->w, a->x, a->w.cols, 1, a->y, a->w.rows);
}

static void perf_gemv(int rows, int cols)
{
    mm_arg a = {{th_dev_zero((size_t)rows * cols * 2), KERN_F16, rows, cols},
                th_dev_zero(4 * (size_t)cols),
                th_dev_zero(4 * (size_t)rows)};
    float ms;
    if (median_ms(run_mm, &a, &ms) != EM_OK)
        printf("perf gemv f16 %dx%d: failed\n", rows, cols);
    else
        printf("perf gemv f16 %dx%d: %.1f us, %.0f GB/s\n", rows, cols, ms * 1e3,
               (double)rows * cols * 2 / (ms * 1e6));
    kern_cuda_free((void *)a.w.data), kern_cuda_free(a.x), kern_cuda_free(a.y);
}

typedef struct at_arg {
    kern_cuda_attn_args a;
    kern_cuda_kv_head h[8];
} at_arg;

static em_status run_attn(void *p)
{
    return kern_cuda_attn(g_c, &((at_arg *)p)->a);
}

static void perf_attn(kern_kv_fmt f, int len, int stats)
{
    int hkv = 8, G = 4, hd = 128;
    size_t rb = kern_kv_row_bytes(f, hd), sm = 8 * (size_t)kern_kv_n_groups(hd);
    at_arg a;
    memset(&a, 0, sizeof a);
    void *bufs[8][6];
    for (int h = 0; h < hkv; h++) {
        a.h[h].k = bufs[h][0] = th_dev_zero(rb * len);
        a.h[h].v = bufs[h][1] = th_dev_zero(rb * len);
        a.h[h].k_sm = bufs[h][2] = th_dev_zero(sm * len);
        a.h[h].v_sm = bufs[h][3] = th_dev_zero(sm * len);
        a.h[h].kpos = bufs[h][4] = th_dev_zero(4 * (size_t)len);
        a.h[h].col_sum = bufs[h][5] = stats ? th_dev_zero(4 * (size_t)len) : NULL;
        a.h[h].len = len;
    }
    float *q = th_dev_zero(4 * (size_t)hkv * G * hd), *o = th_dev_zero(4 * (size_t)hkv * G * hd);
    int32_t *qp = th_dev_zero(4);
    a.a = (kern_cuda_attn_args){1,      hkv, G,   hd, q, hkv * G * hd, qp, o, hkv * G * hd,
                                0.088f, f,   a.h, 0,  0, NULL};
    float ms;
    em_status st = median_ms(run_attn, &a, &ms);
    double bytes = 2.0 * hkv * len * (rb + (f == KERN_KV_F32 ? 0 : sm));
    static const char *fn[] = {"f32", "q8", "q4"};
    if (st != EM_OK)
        printf("perf attn decode %s kv=8 G=4 hd=128 len=%d%s: failed\n", fn[f], len,
               stats ? " +stats" : "");
    else
        printf("perf attn decode %s kv=8 G=4 hd=128 len=%d%s: %.1f us, %.0f GB/s\n", fn[f], len,
               stats ? " +stats" : "", ms * 1e3, bytes / (ms * 1e6));
    for (int h = 0; h < hkv; h++) {
        for (int i = 0; i < 6; i++)
            kern_cuda_free(bufs[h][i]);
    }
    kern_cuda_free(q), kern_cuda_free(o), kern_cuda_free(qp);
}

typedef struct ems_arg {
    kern_cuda_ems_head h[8], h0[8];
    int H, hd;
} ems_arg;

static em_status run_ems(void *p)
{
    ems_arg *e = p;
    memcpy(e->h, e->h0, sizeof e->h); /* same lengths every run (the data is rewritten) */
    kern_cuda_ems_params prm;
    kern_ems_params_default(256, &prm);
    return kern_cuda_ems_step(g_c, e->h, e->H, e->hd, 16, &prm);
}

static void perf_ems(int len)
{
    ems_arg e;
    memset(&e, 0, sizeof e);
    e.H = 8, e.hd = 128;
    th_rng r = {99};
    float *host = malloc(4 * (size_t)len * 16);
    for (int h = 0; h < e.H; h++) {
        th_fill(&r, host, (size_t)len * 16, 0.0f, 1.0f);
        kern_cuda_ems_head *x = &e.h0[h];
        x->k = th_dev_zero(4 * (size_t)len * e.hd), x->v = th_dev_zero(4 * (size_t)len * e.hd);
        x->pos = th_dev_zero(4 * (size_t)len), x->s_glo = th_dev(g_c, host, 4 * (size_t)len);
        x->loc = th_dev(g_c, host, 4 * (size_t)len * 16), x->loc_stride = len, x->len = len;
    }
    float ms;
    if (median_ms(run_ems, &e, &ms) != EM_OK)
        printf("perf ems step H=8 hd=128 len=%d -> B=256: failed\n", len);
    else
        printf("perf ems step H=8 hd=128 len=%d -> B=256: %.1f us\n", len, ms * 1e3);
    for (int h = 0; h < e.H; h++) {
        kern_cuda_ems_head *x = &e.h0[h];
        kern_cuda_free(x->k), kern_cuda_free(x->v), kern_cuda_free(x->pos);
        kern_cuda_free(x->s_glo), kern_cuda_free(x->loc);
    }
    free(host);
}

void cases_perf(kern_cuda_ctx *c)
{
    g_c = c;
    g_flush = th_dev_zero(FLUSH_BYTES);
    if (!g_flush)
        return;
    perf_gemv(4096, 4096);
    perf_gemv(11008, 4096);
    for (int f = 0; f < 3; f++) {
        for (int len = 4096; len <= 32768; len *= 2)
            perf_attn((kern_kv_fmt)f, len, 0);
    }
    perf_attn(KERN_KV_F32, 32768, 1);
    perf_ems(4096);
    perf_ems(32768);
    kern_cuda_free(g_flush);
}
