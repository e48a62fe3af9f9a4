/* EMS compression step: GPU (kern_cuda_ems_step) vs its CPU reference (kern_ems_step_ref) on
 * ragged heads (some below the budget, left untouched), head sizes 8..128, long caches,
 * clustered keys/values so that merging really happens, ties (all scores equal), zero-norm
 * rows, w_loc = 0. Must match: lengths and kept positions exactly; merged K/V, s_glo, mass and
 * local rows within float-atomics rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ems_step.h"
#include "tests/cuda/cases.h"
#include "tests/cuda/harness.h"

typedef struct ems_case {
    int H, hd, len0, len_step, B, w_loc;
    float tau, gw;
    int flat_scores; /* 1: every score equal (tie handling) */
    int zero_rows;   /* number of all-zero K/V rows per head */
    int headwise;    /* head-wise budgets (ragged results) */
} ems_case;

static const ems_case EC[] = {
    {4, 8, 40, 9, 16, 16, 0.8f, 1.0f, 0, 0, 0},        /* stories260K-like heads */
    {8, 128, 200, 40, 256, 16, 0.8f, 1.0f, 0, 0, 0},   /* heads 0-1 below budget */
    {4, 128, 4096, 333, 256, 16, 0.8f, 1.0f, 0, 0, 0}, /* long caches */
    {2, 64, 1000, 1, 32, 8, 0.5f, 1.5f, 0, 3, 0},      /* more merging, zero-norm rows */
    {3, 8, 100, 0, 16, 0, 0.8f, 1.0f, 1, 0, 0},        /* all ties, no local rows */
    {4, 8, 40, 9, 16, 16, 0.8f, 1.0f, 0, 0, 1},        /* head-wise budgets */
    {8, 128, 200, 40, 256, 16, 0.8f, 1.0f, 0, 0, 1},   /* head-wise, some heads short */
    {4, 128, 4096, 333, 256, 16, 0.8f, 1.0f, 0, 0, 1}, /* head-wise, long */
    {3, 8, 100, 0, 16, 0, 0.8f, 1.0f, 1, 0, 1},        /* head-wise with all ties */
};

typedef struct ems_data {
    kern_cuda_ems_head ref, dev;
    int len0, stride;
} ems_data;

static void gen_head(const ems_case *t, int h, ems_data *d, th_rng *r, kern_cuda_ctx *c)
{
    int len = t->len0 + h * t->len_step, hd = t->hd, nw = t->w_loc, stride = len + 3;
    float *k = malloc(sizeof(float) * len * hd), *v = malloc(sizeof(float) * len * hd);
    float *sg = malloc(sizeof(float) * len), *ms = malloc(sizeof(float) * len);
    float *loc = nw ? malloc(sizeof(float) * nw * stride) : NULL;
    int32_t *pos = malloc(sizeof(int32_t) * len);
    float dirk[6][128], dirv[6][128];
    for (int i = 0; i < 6; i++) {
        th_fill(r, dirk[i], (size_t)hd, -1.0f, 1.0f);
        th_fill(r, dirv[i], (size_t)hd, -1.0f, 1.0f);
    }
    for (int j = 0; j < len; j++) {
        int cl = (int)(th_uniform(r, 0.0f, 1.0f) * 12.0f); /* half the rows near 6 directions */
        float amp = th_uniform(r, 0.5f, 2.0f);
        for (int e = 0; e < hd; e++) {
            float nk = th_uniform(r, -1.0f, 1.0f), nv = th_uniform(r, -1.0f, 1.0f);
            k[(size_t)j * hd + e] = cl < 6 ? amp * dirk[cl][e] + 0.15f * nk : nk;
            v[(size_t)j * hd + e] = cl < 6 ? dirv[cl][e] + 0.15f * nv : nv;
        }
        float u = th_uniform(r, 0.0f, 1.0f);
        sg[j] = t->flat_scores ? 1.0f : u * u * u * u * 8.0f;
        ms[j] = (float)(1 + j % 3);
        pos[j] = 3 * j + (h & 1);
    }
    for (int z = 0; z < t->zero_rows; z++) {
        int j = (z * 37) % (len > 0 ? len : 1);
        memset(k + (size_t)j * hd, 0, sizeof(float) * hd);
        memset(v + (size_t)j * hd, 0, sizeof(float) * hd);
    }
    for (int i = 0; i < nw * stride; i++)
        loc[i] = t->flat_scores ? 0.0f : th_uniform(r, 0.0f, 0.05f);
    kern_cuda_ems_head *a = &d->ref, *b = &d->dev;
    a->k = k, a->v = v, a->pos = pos, a->s_glo = sg, a->mass = ms, a->loc = loc;
    a->loc_stride = stride, a->len = len;
    b->k = th_dev(c, k, sizeof(float) * len * hd), b->v = th_dev(c, v, sizeof(float) * len * hd);
    b->pos = th_dev(c, pos, sizeof(int32_t) * len), b->s_glo = th_dev(c, sg, sizeof(float) * len);
    b->mass = th_dev(c, ms, sizeof(float) * len);
    b->loc = nw ? th_dev(c, loc, sizeof(float) * nw * stride) : NULL;
    b->loc_stride = stride, b->len = len;
    d->len0 = len, d->stride = stride;
}

static int compare_head(kern_cuda_ctx *c, const ems_case *t, ems_data *d)
{
    int L = d->ref.len, hd = t->hd, bad = 0;
    if (d->dev.len != L) {
        printf("    len: gpu %d ref %d\n", d->dev.len, L);
        return 1;
    }
    /* Compare the whole original extent: entries past the new length must be untouched on
     * both sides too (the step only rewrites [0, B)). */
    int n = d->len0;
    float *k = th_host(c, d->dev.k, sizeof(float) * n * hd),
          *v = th_host(c, d->dev.v, sizeof(float) * n * hd);
    int32_t *pos = th_host(c, d->dev.pos, sizeof(int32_t) * n);
    float *sg = th_host(c, d->dev.s_glo, sizeof(float) * n),
          *ms = th_host(c, d->dev.mass, sizeof(float) * n);
    bad += th_check_i32("pos (kept entries)", pos, d->ref.pos, (size_t)n);
    /* merged values: weighted sums of up to a few hundred members, |K| <= ~3, |V| <= ~1.2,
     * summed by float atomics in any order: 1e-5 absolute + 1e-4 relative */
    bad += th_check("k", k, d->ref.k, (size_t)n * hd, 1e-5f, 1e-4f);
    bad += th_check("v", v, d->ref.v, (size_t)n * hd, 1e-5f, 1e-4f);
    bad += th_check("s_glo", sg, d->ref.s_glo, (size_t)n, 1e-5f, 1e-5f);
    bad += th_check("mass", ms, d->ref.mass, (size_t)n, 0.0f, 0.0f); /* small integers: exact */
    if (t->w_loc) {
        float *loc = th_host(c, d->dev.loc, sizeof(float) * t->w_loc * d->stride);
        bad += th_check("loc", loc, d->ref.loc, (size_t)t->w_loc * d->stride, 1e-6f, 1e-5f);
        free(loc);
    }
    free(k), free(v), free(pos), free(sg), free(ms);
    return bad;
}

static void case_ems(kern_cuda_ctx *c, const ems_case *t, th_rng *r)
{
    ems_data *d = calloc((size_t)t->H, sizeof *d);
    kern_cuda_ems_head *ref = calloc((size_t)t->H, sizeof *ref),
                       *dev = calloc((size_t)t->H, sizeof *dev);
    for (int h = 0; h < t->H; h++) {
        gen_head(t, h, &d[h], r, c);
        ref[h] = d[h].ref, dev[h] = d[h].dev;
    }
    kern_cuda_ems_params p;
    kern_ems_params_default(t->B, &p);
    p.tau = t->tau, p.gw = t->gw, p.headwise = t->headwise;
    int bad = kern_ems_step_ref(ref, t->H, t->hd, t->w_loc, &p) != EM_OK;
    bad += kern_cuda_ems_step(c, dev, t->H, t->hd, t->w_loc, &p) != EM_OK;
    int compressed = 0;
    for (int h = 0; h < t->H; h++) {
        d[h].ref.len = ref[h].len, d[h].dev.len = dev[h].len;
        compressed += ref[h].len != d[h].len0;
        bad += compare_head(c, t, &d[h]);
    }
    char name[160];
    snprintf(
        name, sizeof name,
        "ems step H=%d hd=%d len=%d%+d/head B=%d w_loc=%d tau=%.1f gw=%.1f%s%s (%d compressed)",
        t->H, t->hd, t->len0, t->len_step, t->B, t->w_loc, t->tau, t->gw,
        t->flat_scores ? " ties" : "", t->zero_rows ? " zero-rows" : "", compressed);
    if (t->headwise)
        strncat(name, " headwise", sizeof name - strlen(name) - 1);
    th_report(name, bad);
    for (int h = 0; h < t->H; h++) {
        kern_cuda_ems_head *a = &d[h].ref, *b = &d[h].dev;
        free(a->k), free(a->v), free(a->pos), free(a->s_glo), free(a->mass), free(a->loc);
        kern_cuda_free(b->k), kern_cuda_free(b->v), kern_cuda_free(b->pos);
        kern_cuda_free(b->s_glo), kern_cuda_free(b->mass), kern_cuda_free(b->loc);
    }
    free(d), free(ref), free(dev);
}

void cases_ems(kern_cuda_ctx *c)
{
    th_rng r = {0xE35E35E35ull};
    for (size_t i = 0; i < sizeof EC / sizeof EC[0]; i++)
        case_ems(c, &EC[i], &r);
}
