/* int8/int4/int2 K/V store: codec error bounds (half a quantization step), the dequantising view
 * equals the head's f32 arrays, quantized/residual split, byte accounting, compaction and
 * re-encoding of merged entries, and quantization combined with a policy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "ems/quant.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

static float urand(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

typedef struct qcase {
    int bits, group, residual, hd, n;
} qcase;

static const qcase k_cases[] = {
    {8, 4, 6, 8, 40},
    {4, 4, 6, 8, 40},
    {8, 32, 32, 8, 200},
    {4, 32, 32, 8, 200},
    {4, 3, 0, 5, 31}, /* odd head dim: int4 packing of the last half byte */
    /* head sizes beyond one block of decoded channels (64), odd value groups starting mid-byte */
    {4, 32, 8, 64, 120},
    {8, 16, 4, 130, 90},
    {4, 5, 2, 131, 40},
    /* int2: four codes per byte; head sizes not a multiple of 4, groups starting mid-byte */
    {2, 4, 6, 8, 40},
    {2, 32, 8, 64, 120},
    {2, 3, 0, 5, 31},
    {2, 5, 2, 131, 40},
};

int main(void)
{
    unsigned seed = 1;
    /* codec: |x - x_hat| <= scale / 2, plus the f16 rounding of min and scale (2^-11 relative)
     * that can push the extremes to a clamped code: + 2^-10 (|min| + |max|) */
    for (int bits = 2; bits <= 8; bits *= 2) {
        float x[64];
        for (int i = 0; i < 64; i++)
            x[i] = 3.0f * urand(&seed);
        float z, s;
        ems_quant_minmax(x, 64, 1, bits, &z, &s);
        for (int i = 0; i < 64; i++) {
            float xh = ems_quant_code(x[i], z, s, bits) * s + z;
            CHECK(fabsf(xh - x[i]) <= 0.5f * s + 6e-3f, "bits %d: err %g > step/2 %g", bits,
                  fabsf(xh - x[i]), 0.5f * s);
        }
    }
    for (size_t ci = 0; ci < sizeof k_cases / sizeof k_cases[0]; ci++) {
        qcase q = k_cases[ci];
        ems_cache *c;
        ems_cache_create(1, 1, 0, q.hd, 0, 0, &c);
        ems_head *h = ems_cache_head(c, 0, 0);
        float *orig = malloc(sizeof(float) * q.n * q.hd * 2);
        for (int i = 0; i < q.n * q.hd * 2; i++)
            orig[i] = urand(&seed);
        CHECK(ems_quant_attach(h, q.bits, q.group, q.residual) == EM_OK, "attach");
        for (int t = 0; t < q.n; t++) {
            int32_t p = t;
            ems_head_append(h, orig + (size_t)t * q.hd * 2, orig + (size_t)t * q.hd * 2 + q.hd, 0,
                            &p, 1);
        }
        int nq = ems_quant_count(h);
        CHECK(h->len - nq >= q.residual && h->len - nq < q.residual + q.group,
              "case %zu: %d quantized of %d", ci, nq, h->len);
        CHECK(h->k == NULL && h->v == NULL, "a quantized head holds no f32 K/V");
        CHECK(ems_quant_materialize(h) == EM_OK && h->k && h->v, "materialize");
        CHECK(nq % q.group == 0, "whole key groups");
        CHECK(ems_quant_coded(h) == nq && ems_cache_quantized_total(c) == (uint64_t)nq,
              "case %zu: %lld coded, %d quantized", ci, (long long)ems_quant_coded(h), nq);
        CHECK(ems_cache_quant_held_bytes(c) == ems_quant_held_bytes(h) &&
                  ems_cache_quant_held_bytes(c) > 0 &&
                  ems_cache_quant_held_bytes(c) < ems_cache_held_bytes(c),
              "quantized store's share of the held bytes");
        /* error bound: keys per channel over the group range, values per token */
        float step = 2.0f / (float)((1 << q.bits) - 1);
        for (int j = 0; j < h->len; j++) {
            for (int d = 0; d < q.hd; d++) {
                float ek = fabsf(h->k[j * q.hd + d] - orig[(size_t)j * q.hd * 2 + d]);
                float ev = fabsf(h->v[j * q.hd + d] - orig[(size_t)j * q.hd * 2 + q.hd + d]);
                if (j >= nq)
                    CHECK(ek == 0 && ev == 0, "residual must be exact");
                CHECK(ek <= 0.5f * step + 2e-3f && ev <= 0.5f * step + 2e-3f,
                      /* + f16 rounding of min/scale */ "case %zu entry %d: err %g %g", ci, j, ek,
                      ev);
            }
        }
        /* view == materialised rows (both are the dequantised values) */
        const float *kv, *vv;
        ems_scratch scr = {0};
        CHECK(ems_quant_view(h, &scr, &kv, &vv) == EM_OK, "view");
        CHECK(memcmp(kv, h->k, sizeof(float) * h->len * q.hd) == 0 &&
                  memcmp(vv, h->v, sizeof(float) * h->len * q.hd) == 0,
              "view != head");
        /* the fast decode equals the scalar reference, entry by entry, bit for bit */
        float *rk = malloc(sizeof(float) * q.hd), *rv = malloc(sizeof(float) * q.hd);
        for (int j = 0; j < h->len; j++) {
            ems_quant_decode_ref(h, j, rk, rv);
            CHECK(memcmp(kv + j * q.hd, rk, sizeof(float) * q.hd) == 0 &&
                      memcmp(vv + j * q.hd, rv, sizeof(float) * q.hd) == 0,
                  "case %zu entry %d: view != scalar reference", ci, j);
        }
        free(rk), free(rv);
        /* bytes: codes + scales + residual, below f32 */
        int rb = (q.hd * q.bits + 7) / 8, nvg = (q.hd + (q.group < q.hd ? q.group : q.hd) - 1) /
                                                (q.group < q.hd ? q.group : q.hd);
        uint64_t want = 2ull * rb * nq + (uint64_t)(nq / q.group) * q.hd * 4 +
                        (uint64_t)nq * nvg * 4 + 8ull * q.hd * (h->len - nq);
        CHECK(ems_quant_bytes(h) == want, "case %zu: bytes %llu want %llu", ci,
              (unsigned long long)ems_quant_bytes(h), (unsigned long long)want);
        CHECK(ems_cache_kv_bytes(c) == want, "kv_bytes uses the quantized size");
        /* compaction: every other entry; view still equals the head, values unchanged */
        int *keep = malloc(sizeof(int) * h->len);
        float *before = malloc(sizeof(float) * h->len * q.hd);
        memcpy(before, h->k, sizeof(float) * h->len * q.hd);
        int n = 0;
        for (int j = 0; j < h->len; j += 2)
            keep[n++] = j;
        ems_head_compact(h, keep, n);
        CHECK(ems_quant_count(h) == (nq + 1) / 2, "quantized count after compaction %d",
              ems_quant_count(h));
        CHECK(ems_quant_coded(h) == nq, "the running total survives a compaction");
        ems_quant_view(h, &scr, &kv, &vv);
        CHECK(memcmp(kv, h->k, sizeof(float) * h->len * q.hd) == 0, "view after compaction");
        for (int i = 0; i < n; i++)
            CHECK(memcmp(h->k + i * q.hd, before + keep[i] * q.hd, sizeof(float) * q.hd) == 0,
                  "moved key");
        /* update a quantized entry (as a merge does): re-encoded, view consistent */
        if (ems_quant_count(h) > 0) {
            for (int d = 0; d < q.hd; d++)
                h->v[d] = 0.25f * d - 0.5f, h->k[d] = 0.1f * d;
            int idx = 0;
            ems_quant_on_update(h, &idx, 1);
            ems_quant_view(h, &scr, &kv, &vv);
            CHECK(memcmp(kv, h->k, sizeof(float) * h->len * q.hd) == 0 &&
                      memcmp(vv, h->v, sizeof(float) * h->len * q.hd) == 0,
                  "view after update");
            float vstep = (0.25f * (q.hd - 1)) / (float)((1 << q.bits) - 1);
            for (int d = 0; d < q.hd; d++)
                CHECK(fabsf(h->v[d] - (0.25f * d - 0.5f)) <= 0.5f * vstep + 2e-3f,
                      "updated value err");
        }
        /* settling keeps what the policy wrote; then appending keeps the residual rule */
        float *mat = malloc(sizeof(float) * h->len * q.hd * 2);
        memcpy(mat, h->k, sizeof(float) * h->len * q.hd);
        memcpy(mat + h->len * q.hd, h->v, sizeof(float) * h->len * q.hd);
        ems_quant_settle(h);
        CHECK(h->k == NULL && h->v == NULL, "settled");
        ems_quant_view(h, &scr, &kv, &vv);
        CHECK(memcmp(kv, mat, sizeof(float) * h->len * q.hd) == 0 &&
                  memcmp(vv, mat + h->len * q.hd, sizeof(float) * h->len * q.hd) == 0,
              "view after settle");
        free(mat);
        for (int t = 0; t < 2 * q.group; t++) {
            int32_t p = q.n + t;
            ems_head_append(h, orig, orig + q.hd, 0, &p, 1);
        }
        nq = ems_quant_count(h);
        CHECK(h->len - nq >= q.residual && h->len - nq < q.residual + q.group,
              "residual after append");
        free(keep), free(before), free(orig);
        ems_scratch_free(&scr);
        ems_cache_destroy(c);
    }
    /* quantization with a policy: int2 holds fewer bytes than int4 than int8 than f32 */
    char err[128];
    uint64_t bytes[4];
    const char *qs[4] = {"none", "int8", "int4", "int2"};
    synth_spec sp = {.n_layer = 2, .hd = 8, .G = 2, .seed = 3, .key_scale = 2.0f};
    for (int i = 0; i < 4; i++) {
        ems_config cfg;
        ems_config_default(&cfg);
        ems_config_set(&cfg, "method", "h2o", err, sizeof err);
        ems_config_set(&cfg, "budget", "64", err, sizeof err);
        ems_config_set(&cfg, "quant", qs[i], err, sizeof err);
        ems_config_set(&cfg, "quant.group", "8", err, sizeof err);
        ems_config_set(&cfg, "quant.residual", "8", err, sizeof err);
        ems_cache *c;
        ems_cache_create(2, 4, 0, 8, ems_config_w_loc(&cfg), 1, &c);
        for (int t = 0; t < 120; t++) {
            synth_step(c, &sp, t, 1);
            CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_OK, "step");
        }
        bytes[i] = ems_cache_kv_bytes(c);
        ems_cache_destroy(c);
    }
    CHECK(bytes[3] < bytes[2] && bytes[2] < bytes[1] && bytes[1] < bytes[0],
          "bytes f32 %llu int8 %llu int4 %llu int2 %llu", (unsigned long long)bytes[0],
          (unsigned long long)bytes[1], (unsigned long long)bytes[2], (unsigned long long)bytes[3]);
    TEST_END();
}
