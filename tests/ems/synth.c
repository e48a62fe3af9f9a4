/* Synthetic caches for the ems tests (see synth.h). */
#include "tests/ems/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "tests/testutil/testutil.h"

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

float synth_u(uint64_t seed, int layer, int head, int tok, int d, int kind)
{
    uint64_t h = mix(seed ^ mix((uint64_t)layer * 1000003u + (uint64_t)head));
    h = mix(h ^ ((uint64_t)tok << 20) ^ ((uint64_t)d << 4) ^ (uint64_t)kind);
    return (float)((double)(h >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* K and V of token t in (l, gh): random, or a noisy copy of an earlier token. */
static void kv_of(const synth_spec *sp, int l, int gh, int t, float *k, float *v)
{
    float r = 0.5f * (synth_u(sp->seed, l, gh, t, 0, 7) + 1.0f);
    int src = t;
    if (t > 0 && t >= sp->dup_src_max && r < sp->dup_frac) {
        float u = 0.5f * (synth_u(sp->seed, l, gh, t, 1, 8) + 1.0f);
        src = (int)(u * (float)(sp->dup_src_max > 0 ? sp->dup_src_max : t));
        if (src >= t)
            src = t - 1;
    }
    for (int d = 0; d < sp->hd; d++) {
        k[d] = sp->key_scale * synth_u(sp->seed, l, gh, src, d, 1);
        v[d] = synth_u(sp->seed, l, gh, src, d, 2);
        if (src != t) {
            k[d] += sp->dup_noise * sp->key_scale * synth_u(sp->seed, l, gh, t, d, 3);
            v[d] += (sp->dup_vnoise > 0 ? sp->dup_vnoise : sp->dup_noise) *
                    synth_u(sp->seed, l, gh, t, d, 4);
        }
    }
}

void synth_query(const synth_spec *sp, int l, int gh, int g, int tok, float *q)
{
    for (int d = 0; d < sp->hd; d++) {
        q[d] = synth_u(sp->seed, l, gh * 64 + g, tok, d, 5) +
               sp->q_bias * synth_u(sp->seed, l, gh * 64 + g, 0, d, 6);
    }
}

void synth_step(ems_cache *c, const synth_spec *sp, int t0, int n)
{
    int hd = sp->hd, G = sp->G;
    float *k = malloc(sizeof(float) * (size_t)n * hd), *v = malloc(sizeof(float) * (size_t)n * hd);
    float *q = malloc(sizeof(float) * (size_t)n * G * hd),
          *o = malloc(sizeof(float) * (size_t)n * G * hd);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        pos[i] = t0 + i;
    for (int l = 0; l < c->n_layer; l++) {
        for (int h = 0; h < c->n_head_kv; h++) {
            int gh = c->kv_head0 + h;
            ems_head *hh = ems_cache_head(c, l, h);
            for (int i = 0; i < n; i++) {
                kv_of(sp, l, gh, t0 + i, k + (size_t)i * hd, v + (size_t)i * hd);
                for (int g = 0; g < G; g++)
                    synth_query(sp, l, gh, g, t0 + i, q + ((size_t)i * G + g) * hd);
            }
            REQUIRE(ems_head_append(hh, k, v, hd, pos, n) == EM_OK, "synth append");
            kern_attn_args a = {0};
            kern_attn_stats st;
            float *rows[4096];
            a.n_q = n;
            a.G = G;
            a.hd = hd;
            a.q = q;
            a.q_stride = G * hd;
            a.q_pos = pos;
            a.out = o;
            a.o_stride = G * hd;
            a.scale = 1.0f / sqrtf((float)hd);
            ems_scratch scr = {0};
            REQUIRE(ems_head_attn_begin(hh, n, &a, c->want_stats ? &st : NULL, rows, sp->group_max,
                                        &scr) == EM_OK,
                    "synth attention setup");
            REQUIRE(kern_attn(kern_ops_ref(), &a) == EM_OK, "synth attention");
            ems_scratch_free(&scr);
        }
    }
    c->n_seen = t0 + n;
    free(k), free(v), free(q), free(o), free(pos);
}

double synth_attn_err(const synth_spec *sp, ems_cache *cmp, ems_cache *full, int l, int h,
                      int n_probe, int probe_seed)
{
    ems_head *hc = ems_cache_head(cmp, l, h), *hf = ems_cache_head(full, l, h);
    int hd = sp->hd, G = sp->G;
    float *q = malloc(sizeof(float) * (size_t)n_probe * G * hd);
    float *oc = malloc(sizeof(float) * (size_t)n_probe * G * hd);
    float *of = malloc(sizeof(float) * (size_t)n_probe * G * hd);
    int32_t *qp = malloc(sizeof(int32_t) * (size_t)n_probe);
    int gh = cmp->kv_head0 + h;
    for (int i = 0; i < n_probe; i++) {
        qp[i] = 1 << 20;
        for (int g = 0; g < G; g++)
            synth_query(sp, l, gh, g, 1000000 + probe_seed * 1000 + i,
                        q + ((size_t)i * G + g) * hd);
    }
    double num = 0.0, den = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        ems_head *hh = pass ? hf : hc;
        kern_attn_args a = {0};
        a.n_q = n_probe;
        a.G = G;
        a.hd = hd;
        a.q = q;
        a.q_stride = G * hd;
        a.q_pos = qp;
        a.out = pass ? of : oc;
        a.o_stride = G * hd;
        a.scale = 1.0f / sqrtf((float)hd);
        ems_scratch scr = {0};
        REQUIRE(ems_head_attn_begin(hh, n_probe, &a, NULL, NULL, 0, &scr) == EM_OK,
                "probe attention setup");
        REQUIRE(kern_attn(kern_ops_ref(), &a) == EM_OK, "probe attention");
        ems_scratch_free(&scr);
    }
    for (size_t i = 0; i < (size_t)n_probe * G * hd; i++) {
        num += (double)(oc[i] - of[i]) * (oc[i] - of[i]);
        den += (double)of[i] * of[i];
    }
    free(q), free(oc), free(of), free(qp);
    return den > 0 ? sqrt(num / den) : 0.0;
}
