/* CPU-only checks of the references behind the GPU-only ops (kernels/cuda/ems_step_ref.c,
 * kvquant_ref.c), so the specifications the GPU is compared against are themselves tested in the
 * default build: K/V quantization round-trip bounds per bit width, and EMS-step invariants
 * (untouched short heads, window kept verbatim, kept set = top-k by an independent double-precision
 * score, positions increasing, pure eviction when tau > 1, exact duplicates merged into their
 * centre, mass conserved between centres and merged members). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ems_step.h"
#include "kernels/cuda/kvquant.h"
#include "tests/cuda/harness.h"

static void quant_case(kern_kv_fmt f, int n, int hd, th_rng *r)
{
    int qg = kern_kv_group(hd), ng = hd / qg, qmax = f == KERN_KV_Q8 ? 255 : 15, bad = 0;
    float *x = malloc(sizeof(float) * n * hd), *y = malloc(sizeof(float) * n * hd);
    float *sm = malloc(sizeof(float) * 2 * n * ng);
    uint8_t *codes = malloc(kern_kv_row_bytes(f, hd) * n);
    th_fill(r, x, (size_t)n * hd, -3.0f, 3.0f);
    for (int d = 0; d < hd; d++)
        x[d] = 0.5f; /* a constant row: scale 0, exact */
    kern_kv_quantize_ref(f, x, n, hd, hd, codes, sm);
    kern_kv_dequantize_ref(f, codes, sm, n, hd, y);
    double se = 0.0;
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < hd; d++) {
            float scale = sm[((size_t)i * ng + d / qg) * 2];
            float err = fabsf(y[(size_t)i * hd + d] - x[(size_t)i * hd + d]);
            se += (double)err * err;
            /* rounding to the nearest level: half a step, plus float slack */
            if (err > 0.5f * scale * (1.0f + 1e-5f) + 1e-6f) {
                if (bad < 5)
                    printf("    row %d ch %d: err %g > scale/2 %g\n", i, d, err, 0.5f * scale);
                bad++;
            }
        }
    }
    double rmse = sqrt(se / ((double)n * hd));
    /* uniform data over a 6-wide group range: RMSE ~ step/sqrt(12) = 6/qmax/3.46 (looser 1.5x) */
    double bound = 1.5 * 6.0 / qmax / sqrt(12.0);
    if (rmse > bound)
        printf("    rmse %g > %g\n", rmse, bound), bad++;
    for (int d = 0; d < hd; d++)
        bad += y[d] != 0.5f;
    char name[96];
    snprintf(name, sizeof name, "kv quant ref %s hd=%d: |err| <= step/2, rmse %.4f <= %.4f",
             f == KERN_KV_Q8 ? "int8" : "int4", hd, rmse, bound);
    th_report(name, bad);
    free(x), free(y), free(sm), free(codes);
}

typedef struct ems_host {
    float *k, *v, *sg, *ms, *loc;
    int32_t *pos;
    int len;
} ems_host;

static void gen(ems_host *e, int len, int hd, int w_loc, th_rng *r)
{
    e->len = len;
    e->k = malloc(4 * (size_t)len * hd), e->v = malloc(4 * (size_t)len * hd);
    e->sg = malloc(4 * (size_t)len), e->ms = malloc(4 * (size_t)len);
    e->loc = calloc((size_t)(w_loc ? w_loc : 1) * len, 4), e->pos = malloc(4 * (size_t)len);
    th_fill(r, e->k, (size_t)len * hd, -1.0f, 1.0f);
    th_fill(r, e->v, (size_t)len * hd, -1.0f, 1.0f);
    th_fill(r, e->sg, (size_t)len, 0.0f, 5.0f);
    th_fill(r, e->loc, (size_t)w_loc * len, 0.0f, 0.1f);
    for (int j = 0; j < len; j++)
        e->ms[j] = 1.0f, e->pos[j] = 10 + 2 * j;
}

static kern_cuda_ems_head view(ems_host *e)
{
    kern_cuda_ems_head h = {e->k, e->v, e->pos, e->sg, e->ms, e->loc, e->len, e->len};
    return h;
}

static void ems_invariants(int len, int hd, int B, int w_loc, float tau, int dup, th_rng *r)
{
    ems_host e, o;
    gen(&e, len, hd, w_loc, r);
    if (dup) { /* entry 1 is an exact copy of entry 0 with a tiny score: it must merge into 0 */
        memcpy(e.k + hd, e.k, 4 * hd), memcpy(e.v + hd, e.v, 4 * hd);
        e.sg[0] = 100.0f, e.sg[1] = 0.0f;
        for (int i = 0; i < w_loc; i++)
            e.loc[(size_t)i * len + 1] = 0.0f;
    }
    gen(&o, len, hd, w_loc, r); /* o = untouched copy of e */
    memcpy(o.k, e.k, 4 * (size_t)len * hd), memcpy(o.v, e.v, 4 * (size_t)len * hd);
    memcpy(o.sg, e.sg, 4 * (size_t)len),
        memcpy(o.loc, e.loc, 4 * (size_t)(w_loc ? w_loc : 1) * len);
    kern_cuda_ems_head h = view(&e);
    kern_cuda_ems_params p;
    kern_ems_params_default(B, &p);
    p.tau = tau;
    int w = kern_ems_window(&p), k = B - w, m = len - w, bad = 0;
    bad += kern_ems_step_ref(&h, 1, hd, w_loc, &p) != EM_OK;
    if (len <= B) {
        bad += h.len != len || memcmp(e.k, o.k, 4 * (size_t)len * hd) != 0;
    } else {
        bad += h.len != B;
        /* window verbatim at [k, B) */
        bad += memcmp(e.k + (size_t)k * hd, o.k + (size_t)m * hd, 4 * (size_t)w * hd) != 0;
        bad += memcmp(e.pos + k, o.pos + m, 4 * (size_t)w) != 0;
        /* independent scores in double; kept = top k (ties -> lower index) */
        double *s = malloc(sizeof(double) * m), sgm = 0, slm = 0;
        for (int j = 0; j < m; j++) {
            double l = 0;
            for (int i = 0; i < w_loc; i++)
                l += o.loc[(size_t)i * len + j];
            s[j] = l, slm += l, sgm += o.sg[j];
        }
        for (int j = 0; j < m; j++)
            s[j] = fmax(o.sg[j] * (slm / sgm), s[j]);
        double min_kept = INFINITY, max_drop = -INFINITY;
        int ci = 0;
        for (int j = 0; j < m; j++) {
            int kept = ci < k && e.pos[ci] == o.pos[j];
            if (kept)
                ci++, min_kept = fmin(min_kept, s[j]);
            else
                max_drop = fmax(max_drop, s[j]);
        }
        bad += ci != k || min_kept < max_drop * (1.0 - 1e-6);
        for (int i = 1; i < B; i++)
            bad += e.pos[i] <= e.pos[i - 1];
        double mass = 0.0;
        for (int i = 0; i < B; i++)
            mass += e.ms[i];
        bad += mass < B || mass > len; /* each entry >= itself, never more than all tokens */
        if (tau > 1.0f) {              /* no merge possible: kept entries equal their originals */
            bad += mass != B;
            for (int i = 0, j = 0; i < k; i++) {
                while (o.pos[j] != e.pos[i])
                    j++;
                for (int d = 0; d < hd; d++) {
                    bad += fabsf(e.k[(size_t)i * hd + d] - o.k[(size_t)j * hd + d]) > 1e-6f;
                    bad += fabsf(e.v[(size_t)i * hd + d] - o.v[(size_t)j * hd + d]) >
                           1e-6f; /* (s v)/s */
                }
                bad += e.sg[i] != o.sg[j];
            }
        }
        if (dup)
            bad += e.pos[0] != o.pos[0] || e.ms[0] < 2.0f; /* 1 folded into 0 */
        free(s);
    }
    char name[128];
    snprintf(name, sizeof name, "ems step ref invariants len=%d hd=%d B=%d w_loc=%d tau=%.1f%s",
             len, hd, B, w_loc, tau, dup ? " duplicate" : "");
    th_report(name, bad);
    free(e.k), free(e.v), free(e.sg), free(e.ms), free(e.loc), free(e.pos);
    free(o.k), free(o.v), free(o.sg), free(o.ms), free(o.loc), free(o.pos);
}

int main(void)
{
    th_rng r = {12345};
    quant_case(KERN_KV_Q8, 50, 8, &r);
    quant_case(KERN_KV_Q4, 50, 8, &r);
    quant_case(KERN_KV_Q8, 40, 128, &r);
    quant_case(KERN_KV_Q4, 40, 128, &r);
    ems_invariants(12, 8, 16, 16, 0.8f, 0, &r); /* below budget */
    ems_invariants(60, 8, 16, 16, 0.8f, 0, &r);
    ems_invariants(60, 8, 16, 16, 2.0f, 0, &r);  /* eviction only */
    ems_invariants(300, 64, 32, 8, 0.8f, 1, &r); /* duplicate merges */
    ems_invariants(500, 16, 64, 0, 0.5f, 0, &r); /* no local rows */
    printf("%d cases, %d failed\n", th_cases, th_failed);
    return th_failed ? 1 : 0;
}
