/* Invariants of every policy on synthetic caches, streamed (decode events every step) and
 * prefilled (one chunk, prefill-end event, then decode):
 *  - budget respected: a head never holds more than B + N - 1 entries after a step (head-wise
 *    EMS: the layer never more than H (B + N - 1); PyramidKV: its layer budget); after the
 *    prefill-end event at most B (layer total H B);
 *  - SimLayerKV: every layer is either lazy (each head: the initial entries and the recent ones,
 *    at most initial + recent + N - 1) or whole, lazy layers = the decision's count, and
 *    delta = 0 makes every layer lazy, delta = 1 none;
 *  - positions strictly increasing, original (< tokens seen), never renumbered;
 *  - the recent window and the sinks are kept;
 *  - merge mass is conserved: sum of entry masses + evicted entries = tokens appended. */
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

typedef struct inv_case {
    const char *kv[5];
    int lazy; /* SimLayerKV: lazy layers expected at the end (-1 = any; read for SimLayerKV only) */
} inv_case;

#define N_LAYER 2

static const inv_case k_cases[] = {
    {{"method=full"}, -1},
    {{"method=streamingllm", "budget=16"}, -1},
    {{"method=h2o", "budget=16"}, -1},
    {{"method=h2o", "budget=48", "compress_every=4"}, -1},
    {{"method=snapkv", "budget=32"}, -1},
    {{"method=pyramidkv", "budget=32"}, -1},
    {{"method=tova", "budget=16"}, -1},
    {{"method=tova", "budget=16", "tova.scope=head"}, -1},
    {{"method=roco", "budget=32"}, -1},
    {{"method=roco", "budget=32", "roco.stride=0", "compress_every=8"}, -1},
    {{"method=simlayerkv", "budget=24", "simlayerkv.delta=0.2"}, -1},
    {{"method=simlayerkv", "budget=24", "simlayerkv.delta=0"}, N_LAYER},
    {{"method=simlayerkv", "budget=24", "simlayerkv.delta=0", "simlayerkv.decide=prefill"},
     N_LAYER},
    {{"method=simlayerkv", "budget=24", "simlayerkv.delta=1"}, 0},
    {{"method=simlayerkv", "budget=24", "simlayerkv.delta=0", "compress_every=1"}, N_LAYER},
    {{"method=ems", "budget=16"}, -1},
    {{"method=ems", "budget=32", "ems.headwise=0"}, -1},
    {{"method=ems", "budget=32", "ems.zero_class=0", "sinks=2"}, -1},
    {{"method=ems", "budget=24", "ems.strategy=merge"}, -1},
    {{"method=ems", "budget_frac=0.25"}, -1},
    {{"method=h2o", "budget=16", "quant=int4", "quant.group=8", "quant.residual=4"}, -1},
    {{"method=ems", "budget=24", "quant=int8", "quant.group=4", "quant.residual=4"}, -1},
};

static int has_pos(const ems_head *h, int p)
{
    for (int j = 0; j < h->len; j++) {
        if (h->pos[j] == p)
            return 1;
    }
    return 0;
}

/* SimLayerKV: each layer lazy-trimmed or whole; the trimmed ones are the decision's lazy ones. */
static void check_simlayer(const char *name, ems_cache *c, const ems_config *cfg, int n_tok,
                           int slack)
{
    int B = ems_config_budget(cfg, n_tok);
    int initial = cfg->slk_initial, recent = cfg->slk_recent >= 0 ? cfg->slk_recent : B - initial;
    if (n_tok <= initial + recent + slack) {
        return; /* nothing to trim yet: lazy and whole look alike */
    }
    ems_policy_stats st;
    ems_policy_get_stats(c, &st);
    int n_trimmed = 0;
    for (int l = 0; l < c->n_layer; l++) {
        int trimmed = 1, whole = 1;
        for (int h = 0; h < c->n_head_kv; h++) {
            ems_head *hh = ems_cache_head(c, l, h);
            trimmed &= hh->len <= initial + recent + slack;
            CHECK(hh->len >= initial + recent, "%s: layer %d head %d trimmed below %d: %d", name, l,
                  h, initial + recent, hh->len);
            whole &= hh->len == n_tok;
            for (int p = 0; p < initial; p++) {
                CHECK(has_pos(hh, p), "%s: layer %d initial entry %d dropped", name, l, p);
            }
            for (int p = n_tok - recent; p < n_tok; p++) {
                CHECK(has_pos(hh, p), "%s: layer %d recent entry %d dropped", name, l, p);
            }
        }
        CHECK(trimmed || whole, "%s: layer %d neither lazy-trimmed nor whole (%d tokens)", name, l,
              n_tok);
        n_trimmed += trimmed;
    }
    if (st.n_lazy_layers >= 0) {
        CHECK(n_trimmed == st.n_lazy_layers, "%s: %d layers trimmed, %d found lazy", name,
              n_trimmed, st.n_lazy_layers);
    }
}

/* At the end of a run: the expected number of lazy layers (delta 0: all, delta 1: none). */
static void check_lazy_count(const char *name, ems_cache *c, int want)
{
    ems_policy_stats st;
    ems_policy_get_stats(c, &st);
    CHECK(want < 0 || st.n_lazy_layers == want, "%s: %d lazy layers, want %d", name,
          st.n_lazy_layers, want);
}

static void check_cache(const char *name, ems_cache *c, const ems_config *cfg, int n_tok,
                        int after_prefill)
{
    int H = c->n_head_kv, L = c->n_layer;
    int B = ems_config_budget(cfg, n_tok), N = ems_config_every(cfg);
    int w = ems_config_window(cfg, B), s = ems_config_sinks(cfg);
    int slack = after_prefill ? 0 : N - 1;
    if (cfg->method == EMS_METHOD_SIMLAYERKV) {
        check_simlayer(name, c, cfg, n_tok, slack);
    }
    ems_policy_stats st;
    ems_policy_get_stats(c, &st);
    double mass = 0.0;
    for (int l = 0; l < L; l++) {
        int layer_total = 0;
        for (int h = 0; h < H; h++) {
            ems_head *hh = ems_cache_head(c, l, h);
            layer_total += hh->len;
            for (int j = 0; j < hh->len; j++) {
                mass += hh->mass[j];
                CHECK(hh->pos[j] >= 0 && hh->pos[j] < n_tok, "%s: pos %d out of range", name,
                      hh->pos[j]);
                if (j)
                    CHECK(hh->pos[j] > hh->pos[j - 1], "%s: positions not increasing", name);
            }
            if (cfg->method == EMS_METHOD_FULL) {
                CHECK(hh->len == n_tok, "%s: full dropped entries", name);
                continue;
            }
            int cap = B + slack;
            if (cfg->method == EMS_METHOD_PYRAMIDKV)
                cap = 2 * B + slack; /* bottom layer <= 2(B-w)+w */
            if (cfg->method == EMS_METHOD_SIMLAYERKV)
                cap = n_tok;
            if (cfg->method == EMS_METHOD_EMS && cfg->ems_headwise)
                cap = n_tok;
            CHECK(hh->len <= cap, "%s: layer %d head %d holds %d > %d", name, l, h, hh->len, cap);
            if (cfg->method != EMS_METHOD_TOVA && cfg->method != EMS_METHOD_ROCO &&
                cfg->method != EMS_METHOD_SIMLAYERKV && cfg->method != EMS_METHOD_STREAMINGLLM) {
                for (int p = n_tok - w < 0 ? 0 : n_tok - w; p < n_tok; p++) {
                    CHECK(has_pos(hh, p), "%s: window position %d dropped", name, p);
                }
            }
            if (cfg->method == EMS_METHOD_ROCO) {
                for (int p = n_tok - cfg->roco_protect < 0 ? 0 : n_tok - cfg->roco_protect;
                     p < n_tok; p++) {
                    CHECK(has_pos(hh, p), "%s: protected position %d dropped", name, p);
                }
            }
            for (int p = 0; p < s && p < n_tok; p++) {
                CHECK(has_pos(hh, p), "%s: sink %d dropped", name, p);
            }
            if (cfg->method == EMS_METHOD_STREAMINGLLM) {
                for (int p = n_tok - (B - s) + slack; p < n_tok; p++) {
                    CHECK(p < 0 || has_pos(hh, p), "%s: recent %d dropped", name, p);
                }
            }
        }
        if (cfg->method == EMS_METHOD_EMS && cfg->ems_headwise) {
            CHECK(layer_total <= H * (B + slack), "%s: layer %d total %d > H(B+N-1) %d", name, l,
                  layer_total, H * (B + slack));
        }
    }
    double want = (double)L * H * n_tok - st.mass_evicted;
    CHECK(mass > want - 1e-3 && mass < want + 1e-3,
          "%s: mass %.3f + evicted mass %.3f != %d tokens", name, mass, st.mass_evicted,
          L * H * n_tok);
    if (cfg->method != EMS_METHOD_EMS)
        CHECK(st.n_merged == 0, "%s: merged without EMS", name);
}

int main(void)
{
    char err[256];
    synth_spec sp = {.n_layer = N_LAYER,
                     .hd = 8,
                     .G = 2,
                     .seed = 5,
                     .dup_frac = 0.3f,
                     .dup_noise = 0.1f,
                     .key_scale = 2.5f};
    for (size_t ci = 0; ci < sizeof k_cases / sizeof k_cases[0]; ci++) {
        ems_config cfg;
        ems_config_default(&cfg);
        char name[160] = "";
        for (int j = 0; j < 5 && k_cases[ci].kv[j]; j++) {
            CHECK(ems_config_set_kv(&cfg, k_cases[ci].kv[j], err, sizeof err) == EM_OK, "%s", err);
            strcat(name, k_cases[ci].kv[j]);
            strcat(name, " ");
        }
        CHECK(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s: %s", name, err);
        /* streamed: one token per step, a decode event after each */
        ems_cache *c;
        ems_cache_create(sp.n_layer, 4, 0, sp.hd, ems_config_w_loc(&cfg),
                         ems_config_wants_stats(&cfg), &c);
        int n_tok = 160;
        for (int t = 0; t < n_tok; t++) {
            synth_step(c, &sp, t, 1);
            CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_OK, "%s step", name);
            if (t % 37 == 0 || t == n_tok - 1)
                check_cache(name, c, &cfg, t + 1, 0);
        }
        if (cfg.method == EMS_METHOD_SIMLAYERKV)
            check_lazy_count(name, c, k_cases[ci].lazy);
        ems_cache_destroy(c);
        /* prefilled: one chunk, prefill-end event, then decode */
        ems_cache_create(sp.n_layer, 4, 0, sp.hd, ems_config_w_loc(&cfg),
                         ems_config_wants_stats(&cfg), &c);
        synth_step(c, &sp, 0, 150);
        CHECK(ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "%s prefill", name);
        if (cfg.method != EMS_METHOD_SIMLAYERKV)
            check_cache(name, c, &cfg, 150, 1);
        for (int t = 150; t < 190; t++) {
            synth_step(c, &sp, t, 1);
            CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_OK, "%s step", name);
        }
        check_cache(name, c, &cfg, 190, 0);
        if (cfg.method == EMS_METHOD_SIMLAYERKV)
            check_lazy_count(name, c, k_cases[ci].lazy);
        ems_cache_destroy(c);
    }
    /* bad calls */
    ems_config cfg;
    ems_config_default(&cfg);
    cfg.method = EMS_METHOD_H2O; /* no budget: invalid */
    ems_cache *c;
    ems_cache_create(1, 1, 0, 8, 0, 1, &c);
    CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_EINVAL, "invalid cfg accepted");
    CHECK(ems_policy_step(c, &cfg, 7, NULL) == EM_EINVAL, "bad phase accepted");
    ems_cache_destroy(c);
    TEST_END();
}
