/* Attention table: f32 / int8 / int4 caches, head sizes 8..256, GQA 1/2/8, ragged per-head
 * lengths (one head may be empty), one token, long caches (4096+), decode and prefill with a
 * causal mask or scattered positions, statistics (column sums, squares, counts, ring rows,
 * mean or max over the group) accumulated onto non-zero initial values. The reference is
 * kern_ref_attn per KV head over K/V dequantized by kern_kv_dequantize_ref from the codes the
 * GPU produced, after checking those codes equal the CPU quantizer's byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attn.h"
#include "kernels/ref/kern_ref.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"

typedef struct attn_case {
    int n_q, n_kv, G, hd, len0, len_step;
    int random_pos; /* 0: cache = older entries + the call's own tokens (causal); 1: scattered */
    kern_kv_fmt fmt;
    int stats, n_rows, group_max;
    float qamp; /* query amplitude: larger = peakier softmax */
} attn_case;

static const attn_case AT[] = {
    {1, 2, 2, 8, 37, 13, 0, KERN_KV_F32, 1, 1, 0, 2.0f},    /* stories260K shape, decode */
    {1, 1, 1, 8, 1, 0, 0, KERN_KV_F32, 1, 1, 0, 1.0f},      /* one token */
    {1, 4, 1, 128, 4096, 1, 0, KERN_KV_F32, 1, 1, 0, 1.0f}, /* long, ragged by one */
    {1, 2, 8, 128, 5000, -1234, 0, KERN_KV_F32, 1, 1, 1, 3.0f},
    {17, 3, 2, 128, 100, 50, 0, KERN_KV_F32, 1, 16, 0, 2.0f}, /* prefill chunk, causal */
    {64, 2, 8, 8, 300, 7, 1, KERN_KV_F32, 1, 8, 1, 3.0f},     /* scattered positions */
    {1, 3, 2, 64, 0, 20, 0, KERN_KV_F32, 1, 1, 0, 1.0f},      /* head 0 empty */
    {3, 2, 1, 256, 70, 3, 0, KERN_KV_F32, 0, 0, 0, 1.0f},     /* hd 256, no stats */
    {1, 2, 2, 8, 37, 13, 0, KERN_KV_Q8, 1, 1, 0, 2.0f},
    {1, 2, 2, 8, 37, 13, 0, KERN_KV_Q4, 1, 1, 0, 2.0f},
    {1, 4, 2, 128, 4096, 5, 0, KERN_KV_Q8, 1, 1, 0, 2.0f},
    {1, 4, 2, 128, 4096, 5, 0, KERN_KV_Q4, 1, 1, 0, 2.0f},
    {9, 2, 8, 64, 4500, -300, 0, KERN_KV_Q4, 1, 4, 1, 2.0f},
    {12, 3, 2, 96, 50, 11, 1, KERN_KV_Q8, 1, 12, 0, 2.0f},
};

typedef struct head_data {
    int len;
    float *k, *v, *kd, *vd; /* f32 source, dequantized (or = source for f32) */
    int32_t *kpos;
    float *sum, *sq, *rows; /* reference stats (initial values copied to the GPU) */
    int32_t *cnt;
    /* device */
    void *dk, *dv;
    float *dks, *dvs, *dsum, *dsq, *drows;
    int32_t *dkpos, *dcnt;
} head_data;

static int quantize_both(kern_cuda_ctx *c, kern_kv_fmt f, const float *x, int len, int hd,
                         void **dcodes, float **dsm, float *deq)
{
    size_t cb = kern_kv_row_bytes(f, hd) * len, sb = sizeof(float) * 2 * kern_kv_n_groups(hd) * len;
    uint8_t *codes = malloc(cb + 1);
    float *sm = malloc(sb + 4);
    kern_kv_quantize_ref(f, x, len, hd, hd, codes, sm);
    float *dx = th_dev(c, x, sizeof(float) * len * hd + 4);
    *dcodes = th_dev_zero(cb + 1);
    *dsm = th_dev_zero(sb + 4);
    int bad = kern_cuda_kv_quantize(c, f, dx, len, hd, hd, *dcodes, *dsm) != EM_OK;
    uint8_t *gc = th_host(c, *dcodes, cb + 1);
    float *gs = th_host(c, *dsm, sb + 4);
    if (gc && memcmp(gc, codes, cb) != 0) {
        printf("    codes differ from the CPU quantizer\n");
        bad++;
    }
    bad += th_check("scale/min", gs, sm, 2 * kern_kv_n_groups(hd) * (size_t)len, 0.0f, 0.0f);
    if (gc && gs)
        kern_kv_dequantize_ref(f, gc, gs, len, hd, deq);
    kern_cuda_free(dx);
    free(codes), free(sm), free(gc), free(gs);
    return bad;
}

static int setup_head(kern_cuda_ctx *c, const attn_case *t, int h, int P, head_data *d, th_rng *r)
{
    int len = t->len0 + h * t->len_step, hd = t->hd, bad = 0, ring = t->n_rows + 2;
    len = len < 0 ? 0 : len;
    d->len = len;
    size_t n = (size_t)len * hd + 1;
    d->k = malloc(sizeof(float) * n), d->v = malloc(sizeof(float) * n);
    d->kpos = malloc(sizeof(int32_t) * (len + 1));
    d->sum = malloc(sizeof(float) * (len + 1)), d->sq = malloc(sizeof(float) * (len + 1));
    d->cnt = malloc(sizeof(int32_t) * (len + 1));
    d->rows = calloc((size_t)ring * (len + 1), sizeof(float));
    th_fill(r, d->k, n, -1.0f, 1.0f);
    th_fill(r, d->v, n, -1.0f, 1.0f);
    th_fill(r, d->sum, (size_t)len + 1, 0.0f, 3.0f); /* stats accumulate onto these */
    th_fill(r, d->sq, (size_t)len + 1, 0.0f, 1.0f);
    for (int j = 0; j <= len; j++)
        d->cnt[j] = j % 5;
    int old = len >= t->n_q ? len - t->n_q : len;
    for (int j = 0; j < len; j++) {
        if (t->random_pos) {
            d->kpos[j] = (int32_t)(th_uniform(r, 0.0f, 1.0f) * (P + t->n_q));
        } else {
            d->kpos[j] = j < old ? 2 * j + (h & 1) : P + (j - old);
        }
    }
    if (t->fmt == KERN_KV_F32) {
        d->kd = d->k, d->vd = d->v;
        d->dk = th_dev(c, d->k, sizeof(float) * n), d->dv = th_dev(c, d->v, sizeof(float) * n);
    } else {
        d->kd = malloc(sizeof(float) * n), d->vd = malloc(sizeof(float) * n);
        bad += quantize_both(c, t->fmt, d->k, len, hd, &d->dk, &d->dks, d->kd);
        bad += quantize_both(c, t->fmt, d->v, len, hd, &d->dv, &d->dvs, d->vd);
    }
    d->dkpos = th_dev(c, d->kpos, sizeof(int32_t) * (len + 1));
    d->dsum = th_dev(c, d->sum, sizeof(float) * (len + 1));
    d->dsq = th_dev(c, d->sq, sizeof(float) * (len + 1));
    d->dcnt = th_dev(c, d->cnt, sizeof(int32_t) * (len + 1));
    d->drows = th_dev_zero(sizeof(float) * (size_t)ring * (len + 1));
    return bad;
}

static void free_head(head_data *d)
{
    if (d->kd != d->k)
        free(d->kd), free(d->vd);
    free(d->k), free(d->v), free(d->kpos), free(d->sum), free(d->sq), free(d->cnt), free(d->rows);
    kern_cuda_free(d->dk), kern_cuda_free(d->dv), kern_cuda_free(d->dks), kern_cuda_free(d->dvs);
    kern_cuda_free(d->dkpos), kern_cuda_free(d->dsum), kern_cuda_free(d->dsq);
    kern_cuda_free(d->dcnt), kern_cuda_free(d->drows);
}

static void case_attn(kern_cuda_ctx *c, const attn_case *t, th_rng *r)
{
    int hq = t->n_kv * t->G, hd = t->hd, qs = hq * hd, ring = t->n_rows + 2, bad = 0;
    int P = 2 * (t->len0 + (t->len_step > 0 ? t->n_kv * t->len_step : 0)) + 4;
    size_t qn = (size_t)t->n_q * qs;
    float *q = malloc(sizeof(float) * qn), *oref = calloc(qn, sizeof(float));
    int32_t *qpos = malloc(sizeof(int32_t) * t->n_q);
    th_fill(r, q, qn, -t->qamp, t->qamp);
    for (int i = 0; i < t->n_q; i++)
        qpos[i] = P + i;
    head_data *hd_ = calloc((size_t)t->n_kv, sizeof *hd_);
    kern_cuda_kv_head *heads = calloc((size_t)t->n_kv, sizeof *heads);
    for (int h = 0; h < t->n_kv; h++) {
        head_data *d = &hd_[h];
        bad += setup_head(c, t, h, P, d, r);
        heads[h] = (kern_cuda_kv_head){.k = d->dk,
                                       .v = d->dv,
                                       .k_sm = d->dks,
                                       .v_sm = d->dvs,
                                       .kpos = d->dkpos,
                                       .len = d->len};
        if (t->stats) {
            heads[h].col_sum = d->dsum, heads[h].col_sqsum = d->dsq, heads[h].col_cnt = d->dcnt;
            heads[h].rows = d->drows, heads[h].row_stride = d->len + 1;
            heads[h].row_ring = ring, heads[h].row_slot0 = 1;
        }
        /* reference for this KV head: rows r -> ring slot (1 + r) % ring, as on the GPU */
        float *rp[64];
        for (int rr = 0; rr < t->n_rows; rr++)
            rp[rr] = d->rows + (size_t)((1 + rr) % ring) * (d->len + 1);
        kern_attn_stats st = {d->sum, d->sq, d->cnt, rp, t->n_rows, t->group_max};
        kern_attn_args a = {t->n_q,
                            t->G,
                            hd,
                            d->len,
                            q + (size_t)h * t->G * hd,
                            qs,
                            qpos,
                            d->kd,
                            d->vd,
                            d->kpos,
                            NULL,
                            oref + (size_t)h * t->G * hd,
                            qs,
                            1.0f / sqrtf((float)hd),
                            t->stats ? &st : NULL};
        bad += kern_ref_attn(NULL, &a) != EM_OK;
    }
    float *dq = th_dev(c, q, sizeof(float) * qn), *dout = th_dev_zero(sizeof(float) * qn);
    int32_t *dqpos = th_dev(c, qpos, sizeof(int32_t) * t->n_q);
    kern_cuda_attn_args ca = {t->n_q,
                              t->n_kv,
                              t->G,
                              hd,
                              dq,
                              qs,
                              dqpos,
                              dout,
                              qs,
                              1.0f / sqrtf((float)hd),
                              t->fmt,
                              heads,
                              t->stats ? t->n_rows : 0,
                              t->group_max,
                              NULL};
    bad += kern_cuda_attn(c, &ca) != EM_OK;
    float *out = th_host(c, dout, sizeof(float) * qn);
    /* outputs are convex combinations of |v| <= 1: f32 sums over up to 5000 entries in another
     * order (split-K + online rescaling) stay within 2e-5 absolute */
    bad += th_check("out", out, oref, qn, 2e-5f, 1e-4f);
    for (int h = 0; h < t->n_kv && t->stats; h++) {
        head_data *d = &hd_[h];
        size_t L = (size_t)d->len;
        float *gs = th_host(c, d->dsum, 4 * L + 4), *gq = th_host(c, d->dsq, 4 * L + 4);
        float *gr = th_host(c, d->drows, 4 * (size_t)ring * (L + 1));
        int32_t *gc = th_host(c, d->dcnt, 4 * L + 4);
        /* p = exp(s - lse) vs exp(s - max)/sum: relative difference ~ |s| * 2^-23 */
        bad += th_check("col_sum", gs, d->sum, L, 1e-6f, 1e-4f);
        bad += th_check("col_sqsum", gq, d->sq, L, 1e-7f, 2e-4f);
        bad += th_check_i32("col_cnt", gc, d->cnt, L);
        bad += th_check("rows", gr, d->rows, (size_t)ring * (L + 1), 1e-7f, 1e-4f);
        free(gs), free(gq), free(gr), free(gc);
    }
    static const char *fmt_name[] = {"f32", "q8", "q4"};
    char name[160];
    snprintf(name, sizeof name, "attn %s n_q=%d kv_heads=%d G=%d hd=%d len=%d%+d/head%s%s%s",
             fmt_name[t->fmt], t->n_q, t->n_kv, t->G, hd, t->len0, t->len_step,
             t->random_pos ? " scattered-pos" : "", t->stats ? " stats" : "",
             t->group_max ? " group-max" : "");
    th_report(name, bad);
    for (int h = 0; h < t->n_kv; h++)
        free_head(&hd_[h]);
    kern_cuda_free(dq), kern_cuda_free(dout), kern_cuda_free(dqpos);
    free(hd_), free(heads), free(q), free(oref), free(qpos), free(out);
}

void cases_attn(kern_cuda_ctx *c)
{
    th_rng r = {0xC0FFEE1234567ull};
    for (size_t i = 0; i < sizeof AT / sizeof AT[0]; i++)
        case_attn(c, &AT[i], &r);
}
