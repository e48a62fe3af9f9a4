/* Unification check: the CPU reference of the GPU EMS step (kernels/cuda/ems_step_ref.c, which
 * the GPU kernels are tested against) must agree with the project's EMS reference
 * (ems/ref/ems_ref.c, ems_ref_ems_layer) on the configuration both implement: methods.md 1.14
 * defaults without score pooling (ems.pool=1: the GPU step has none), with equal per-head budgets
 * (ems.headwise=0) and with head-wise budgets (ems.headwise=1, ragged lengths). Same lengths and
 * kept positions exactly; merged K/V, s_glo, local rows within 1e-5 (the project reference
 * accumulates in double, the GPU step in float); mass exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/config.h"
#include "ems/kv_cache.h"
#include "ems/ref/ems_ref.h"
#include "kernels/cuda/ems_step.h"
#include "tests/cuda/harness.h"
#include "tests/testutil/testutil.h"

typedef struct unify_case {
    int H, hd, len0, len_step, B, w_loc;
    const char *tau;
    int headwise;
} unify_case;

static const unify_case UC[] = {
    {4, 8, 40, 9, 16, 16, "0.8", 0}, /* stories260K-like heads */
    {3, 64, 300, 60, 32, 16, "0.8", 0},
    {2, 128, 700, 1, 64, 8, "0.5", 0}, /* more merging */
    {4, 8, 10, 5, 16, 16, "0.8", 0},   /* some heads at or below the budget */
    {4, 8, 40, 9, 16, 16, "0.8", 1},   /* head-wise budgets: ragged results */
    {8, 64, 120, 37, 32, 16, "0.8", 1},
    {4, 8, 10, 5, 16, 16, "0.8", 1}, /* short heads take part too */
};

static void fill_head(ems_head *h, int len, int hd, th_rng *r, const float *dirk, const float *dirv)
{
    float *k = calloc((size_t)len * hd, sizeof(float)),
          *v = calloc((size_t)len * hd, sizeof(float));
    int32_t *pos = calloc((size_t)len, sizeof(int32_t));
    for (int j = 0; j < len; j++) {
        int cl = (int)(th_uniform(r, 0.0f, 1.0f) * 8.0f); /* half the rows near 4 directions */
        float amp = th_uniform(r, 0.5f, 2.0f);
        for (int d = 0; d < hd; d++) {
            float nk = th_uniform(r, -1.0f, 1.0f), nv = th_uniform(r, -1.0f, 1.0f);
            k[(size_t)j * hd + d] = cl < 4 ? amp * dirk[cl * hd + d] + 0.15f * nk : nk;
            v[(size_t)j * hd + d] = cl < 4 ? dirv[cl * hd + d] + 0.15f * nv : nv;
        }
        pos[j] = 5 * j + 1;
    }
    REQUIRE(ems_head_append(h, k, v, hd, pos, len) == EM_OK, "ems_head_append");
    for (int j = 0; j < len; j++) {
        float u = th_uniform(r, 0.0f, 1.0f);
        h->s_glo[j] = u * u * u * 6.0f;
        h->mass[j] = (float)(1 + j % 4);
        for (int q = 0; q < h->w_loc; q++)
            h->loc[(size_t)q * h->cap + j] = th_uniform(r, 0.0f, 0.06f);
    }
    free(k), free(v), free(pos);
}

static void run_case(const unify_case *t, th_rng *r)
{
    ems_cache *a = NULL, *b = NULL;
    REQUIRE(ems_cache_create(1, t->H, 0, t->hd, t->w_loc, 1, &a) == EM_OK, "ems_cache_create");
    REQUIRE(ems_cache_create(1, t->H, 0, t->hd, t->w_loc, 1, &b) == EM_OK, "ems_cache_create");
    float *dirk = malloc(sizeof(float) * 4 * t->hd), *dirv = malloc(sizeof(float) * 4 * t->hd);
    ems_head **ha = calloc((size_t)t->H, sizeof *ha);
    kern_cuda_ems_head *hb = calloc((size_t)t->H, sizeof *hb);
    for (int h = 0; h < t->H; h++) {
        th_fill(r, dirk, (size_t)4 * t->hd, -1.0f, 1.0f);
        th_fill(r, dirv, (size_t)4 * t->hd, -1.0f, 1.0f);
        th_rng r2 = *r; /* identical data in both caches */
        int len = t->len0 + h * t->len_step;
        ha[h] = ems_cache_head(a, 0, h);
        fill_head(ha[h], len, t->hd, r, dirk, dirv);
        ems_head *x = ems_cache_head(b, 0, h);
        fill_head(x, len, t->hd, &r2, dirk, dirv);
        hb[h] = (kern_cuda_ems_head){x->k, x->v, x->pos, x->s_glo, x->mass, x->loc, x->cap, x->len};
    }
    ems_config cfg;
    char err[128];
    ems_config_default(&cfg);
    int bad = ems_config_set(&cfg, "method", "ems", err, sizeof err) != EM_OK;
    bad += ems_config_set(&cfg, "ems.headwise", t->headwise ? "1" : "0", err, sizeof err) != EM_OK;
    bad += ems_config_set(&cfg, "ems.tau", t->tau, err, sizeof err) != EM_OK;
    /* the GPU step has no score pooling (ems.pool, 11 by default at the prefill-end step) */
    bad += ems_config_set(&cfg, "ems.pool", "1", err, sizeof err) != EM_OK;
    ems_ref_ems_layer(ha, t->H, &cfg, t->B);
    kern_cuda_ems_params p;
    kern_ems_params_default(t->B, &p);
    p.tau = cfg.ems_tau;
    p.headwise = t->headwise, p.floor = cfg.ems_floor;
    bad += kern_ems_step_ref(hb, t->H, t->hd, t->w_loc, &p) != EM_OK;
    bad += kern_ems_window(&p) != ems_config_window(&cfg, t->B);
    for (int h = 0; h < t->H; h++) {
        ems_head *x = ha[h];
        if (hb[h].len != x->len) {
            printf("    head %d: len %d vs project %d\n", h, hb[h].len, x->len);
            bad++;
            continue;
        }
        size_t n = (size_t)x->len;
        bad += th_check_i32("pos", hb[h].pos, x->pos, n);
        bad += th_check("k", hb[h].k, x->k, n * t->hd, 1e-5f, 1e-4f);
        bad += th_check("v", hb[h].v, x->v, n * t->hd, 1e-5f, 1e-4f);
        bad += th_check("s_glo", hb[h].s_glo, x->s_glo, n, 1e-5f, 1e-5f);
        bad += th_check("mass", hb[h].mass, x->mass, n, 0.0f, 0.0f);
        for (int q = 0; q < t->w_loc; q++) {
            bad += th_check("loc", hb[h].loc + (size_t)q * hb[h].loc_stride,
                            x->loc + (size_t)q * x->cap, n, 1e-6f, 1e-5f);
        }
    }
    char name[160];
    int tot = 0;
    for (int h = 0; h < t->H; h++)
        tot += hb[h].len;
    snprintf(
        name, sizeof name,
        "GPU-step ref == ems_ref_ems_layer: H=%d hd=%d len=%d%+d B=%d w_loc=%d tau=%s%s (kept %d)",
        t->H, t->hd, t->len0, t->len_step, t->B, t->w_loc, t->tau, t->headwise ? " headwise" : "",
        tot);
    th_report(name, bad);
    ems_cache_destroy(a), ems_cache_destroy(b);
    free(dirk), free(dirv), free(ha), free(hb);
}

int main(void)
{
    th_rng r = {424242};
    for (size_t i = 0; i < sizeof UC / sizeof UC[0]; i++)
        run_case(&UC[i], &r);
    printf("%d cases, %d failed\n", th_cases, th_failed);
    return th_failed ? 1 : 0;
}
