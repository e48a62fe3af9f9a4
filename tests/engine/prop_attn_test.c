/* Proportional attention (ems.prop_attn): an entry that stands for m merged tokens gets log(m)
 * added to its attention logit.
 * 1. Kernel property, reference and fast CPU backends: a cache holding an entry m times equals
 *    the cache holding it once with kbias = log(m).
 * 2. EMS: on a cache where every dropped entry is an exact duplicate of a kept centre, merging
 *    with prop_attn reproduces the full cache's attention output (kbias = log(mass) on merged
 *    centres, 0 elsewhere); without prop_attn the output is measurably off. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/config.h"
#include "ems/kv_cache.h"
#include "ems/policy.h"
#include "kernels/cpu/kern_cpu.h"
#include "kernels/kern.h"
#include "tests/testutil/testutil.h"

#define HD 8
#define NG 2

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((float)((*s >> 8) & 0xffff) / 65535.0f) * 2.0f - 1.0f;
}

static void attend(const kern_ops *o, const float *q, int len, const float *k, const float *v,
                   const int32_t *pos, const float *bias, float *out)
{
    int32_t qp = 1000;
    kern_attn_args a = {0};
    a.n_q = 1, a.G = NG, a.hd = HD, a.len = len;
    a.q = q, a.q_stride = NG * HD, a.q_pos = &qp;
    a.k = k, a.v = v, a.kpos = pos, a.kbias = bias;
    a.out = out, a.o_stride = NG * HD, a.scale = 1.0f / sqrtf((float)HD);
    CHECK(kern_attn(o, &a) == EM_OK, "%s attention", o->name);
}

static float max_abs_diff(const float *a, const float *b, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static void test_kernel(const kern_ops *o)
{
    unsigned seed = 7;
    float q[NG * HD], k[8 * HD], v[8 * HD], kd[16 * HD], vd[16 * HD], bias[8];
    int32_t pos[16];
    for (int i = 0; i < NG * HD; i++)
        q[i] = frand(&seed);
    for (int i = 0; i < 8 * HD; i++)
        k[i] = frand(&seed), v[i] = frand(&seed);
    /* entry j is repeated mult[j] times in the expanded cache */
    const int mult[8] = {1, 3, 1, 2, 5, 1, 1, 2};
    int n = 0;
    for (int j = 0; j < 8; j++) {
        bias[j] = logf((float)mult[j]);
        for (int r = 0; r < mult[j]; r++, n++) {
            memcpy(kd + n * HD, k + j * HD, sizeof(float) * HD);
            memcpy(vd + n * HD, v + j * HD, sizeof(float) * HD);
        }
    }
    for (int i = 0; i < 16; i++)
        pos[i] = i;
    float o1[NG * HD], o2[NG * HD];
    attend(o, q, n, kd, vd, pos, NULL, o1);
    attend(o, q, 8, k, v, pos, bias, o2);
    float d = max_abs_diff(o1, o2, NG * HD);
    /* the two sums differ only in f32 rounding of repeated terms: 1e-5 absolute */
    CHECK(d < 1e-5f, "%s: duplicates vs kbias differ by %g", o->name, d);
    printf("ok   %s: m duplicates == kbias log(m) (max diff %.2g)\n", o->name, d);
}

/* 8 centres, each followed by 3 exact duplicates (low score), then a 4-entry window. */
static float test_ems(const kern_ops *o, int prop, float *full_out, int want_full)
{
    enum { NC = 8, DUP = 3, WIN = 4, LEN = NC * (1 + DUP) + WIN };
    unsigned seed = 11;
    ems_cache *c;
    CHECK(ems_cache_create(1, 1, 0, HD, 0, 1, &c) == EM_OK, "cache");
    float k[LEN * HD], v[LEN * HD], q[NG * HD];
    int32_t pos[LEN];
    int n = 0;
    for (int i = 0; i < NC; i++) {
        float ck[HD], cv[HD];
        for (int d = 0; d < HD; d++)
            ck[d] = frand(&seed), cv[d] = frand(&seed);
        for (int r = 0; r <= DUP; r++, n++) {
            memcpy(k + n * HD, ck, sizeof ck);
            memcpy(v + n * HD, cv, sizeof cv);
        }
    }
    for (; n < LEN; n++) {
        for (int d = 0; d < HD; d++)
            k[n * HD + d] = frand(&seed), v[n * HD + d] = frand(&seed);
    }
    for (int i = 0; i < LEN; i++)
        pos[i] = i;
    for (int i = 0; i < NG * HD; i++)
        q[i] = frand(&seed);
    ems_head *h = ems_cache_head(c, 0, 0);
    ems_head_append(h, k, v, HD, pos, LEN);
    if (want_full)
        attend(o, q, LEN, k, v, pos, NULL, full_out);
    /* global scores: centres 10 + i, duplicates 1 (they rank below every centre) */
    for (int j = 0; j < LEN; j++)
        h->s_glo[j] = (j < NC * (1 + DUP) && j % (1 + DUP) == 0) ? 10.0f + j : 1.0f;
    c->n_seen = LEN;
    ems_config cfg;
    char err[256];
    ems_config_default(&cfg);
    /* ems.pool=1: the centres must be exactly the planted ones (pooling would pick neighbours) */
    const char *kv[] = {"method=ems",     "budget=12",
                        "window=4",       "ems.score=global",
                        "ems.headwise=0", prop ? "ems.prop_attn=1" : "ems.prop_attn=0",
                        "ems.pool=1"};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        CHECK(ems_config_set_kv(&cfg, kv[i], err, sizeof err) == EM_OK, "%s: %s", kv[i], err);
    }
    CHECK(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "validate: %s", err);
    CHECK(ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "policy step");
    CHECK(h->len == 12, "kept %d entries, expected 12", h->len);
    int merged = 0;
    for (int j = 0; j < h->len; j++) {
        if (h->mass[j] > 1.0f)
            merged++;
        float want = prop ? logf(h->mass[j]) : h->kbias[j];
        CHECK(fabsf(h->kbias[j] - want) < 1e-6f, "kbias[%d] = %g, mass %g", j, h->kbias[j],
              h->mass[j]);
    }
    CHECK(merged == NC, "%d merged centres, expected %d", merged, NC);
    kern_attn_args a = {0};
    ems_head_attn_begin(h, 1, &a, NULL, NULL, 0, NULL);
    CHECK((a.kbias != NULL) == (prop != 0), "kbias handed to attention iff prop_attn");
    float out[NG * HD];
    attend(o, q, h->len, a.k, a.v, a.kpos, a.kbias, out);
    ems_cache_destroy(c);
    return max_abs_diff(out, full_out, NG * HD);
}

int main(void)
{
    kern_ops *cpu = kern_ops_cpu_create(2);
    const kern_ops *ops[] = {kern_ops_ref(), cpu};
    for (int b = 0; b < 2; b++) {
        test_kernel(ops[b]);
        float full[NG * HD];
        float with = test_ems(ops[b], 1, full, 1);
        float without = test_ems(ops[b], 0, full, 0);
        /* exact duplicates merge without loss of direction or norm: only rounding remains */
        CHECK(with < 1e-5f, "%s: EMS+prop_attn vs full: %g", ops[b]->name, with);
        CHECK(without > 100.0f * with && without > 1e-3f,
              "%s: without prop_attn the error (%g) "
              "should be clearly larger than with it (%g)",
              ops[b]->name, without, with);
        printf("ok   %s: EMS merge of exact duplicates, error vs full cache %.2g with prop_attn, "
               "%.2g without\n",
               ops[b]->name, with, without);
    }
    kern_ops_cpu_free(cpu);
    TEST_END();
}
