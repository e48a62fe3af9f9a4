/* ems_cache_clone: a copy with a smaller local ring looks exactly like a cache built with that
 * ring from the start, so forking one prompt's cache for several policies gives what each
 * policy would have got on its own cache:
 *  - entries, positions, statistics and the newest w_loc attention rows equal those of a cache
 *    created with ring w_loc that saw the same queries (a prefill chunk larger than the source
 *    ring, then single tokens; source ring 32, a multiple of every w_loc used);
 *  - after the same prefill-end step (EMS, SnapKV, TOVA, H2O+...) and decode steps both hold
 *    identical entries and statistics;
 *  - the copy is independent of the source (compressing one leaves the other as it was);
 *  - policy state is copied (SimLayerKV's lazy decision, stats);
 *  - bad calls: a ring larger than the source's, a quantized source. */
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "ems/quant.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

#define N_LAYER 2
#define N_HEAD  4

/* Ring row of age a (0 = newest) of head h, NULL when it holds fewer rows. */
static const float *row_by_age(const ems_head *h, int a)
{
    if (a >= h->loc_count)
        return NULL;
    int slot = ((h->loc_newest - a) % h->w_loc + h->w_loc) % h->w_loc;
    return h->loc + (size_t)slot * h->cap;
}

static int heads_equal(const ems_head *a, const ems_head *b)
{
    int n = a->len;
    if (n != b->len || a->loc_count != b->loc_count || a->w_loc != b->w_loc ||
        a->loc_newest != b->loc_newest)
        return 0;
    size_t kv = sizeof(float) * (size_t)n * a->hd;
    if (memcmp(a->k, b->k, kv) || memcmp(a->v, b->v, kv) ||
        memcmp(a->pos, b->pos, sizeof(int32_t) * n) ||
        memcmp(a->s_glo, b->s_glo, sizeof(float) * n) ||
        memcmp(a->s_sq, b->s_sq, sizeof(float) * n) ||
        memcmp(a->cnt, b->cnt, sizeof(int32_t) * n) ||
        memcmp(a->mass, b->mass, sizeof(float) * n) ||
        memcmp(a->kbias, b->kbias, sizeof(float) * n))
        return 0;
    for (int r = 0; r < a->loc_count; r++) {
        if (memcmp(row_by_age(a, r), row_by_age(b, r), sizeof(float) * n))
            return 0;
    }
    return 1;
}

static int caches_equal(const ems_cache *a, const ems_cache *b)
{
    if (a->n_seen != b->n_seen)
        return 0;
    for (int i = 0; i < N_LAYER * N_HEAD; i++) {
        if (!heads_equal(&a->heads[i], &b->heads[i]))
            return 0;
    }
    return 1;
}

static void make(const synth_spec *sp, int w_loc, int n_tok, ems_cache **c)
{
    ems_cache_create(N_LAYER, N_HEAD, 0, sp->hd, w_loc, 1, c);
    synth_step(*c, sp, 0, n_tok - 20); /* a prefill chunk, then single tokens */
    for (int t = n_tok - 20; t < n_tok; t++)
        synth_step(*c, sp, t, 1);
    (*c)->n_seen = n_tok;
}

int main(void)
{
    synth_spec sp = {.n_layer = N_LAYER,
                     .hd = 8,
                     .G = 2,
                     .seed = 11,
                     .dup_frac = 0.3f,
                     .dup_noise = 0.1f,
                     .key_scale = 2.5f};
    const char *configs[][3] = {
        {"method=ems", "budget=24", NULL},
        {"method=ems", "budget=24", "ems.prop_attn=1"},
        {"method=snapkv", "budget=24", NULL},
        {"method=tova", "budget=24", NULL},
        {"method=h2o", "budget=24", "quant=int4"},
        {"method=roco", "budget=24", NULL},
        {"method=simlayerkv", "budget=24", "simlayerkv.delta=0"},
    };
    const int n_tok = 120, big = 32;
    ems_cache *src;
    make(&sp, big, n_tok, &src);
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        char err[256];
        ems_config cfg;
        ems_config_default(&cfg);
        for (int k = 0; k < 3 && configs[ci][k]; k++)
            CHECK(ems_config_set_kv(&cfg, configs[ci][k], err, sizeof err) == EM_OK, "%s", err);
        int wl = ems_config_w_loc(&cfg);
        ems_cache *own, *fork;
        make(&sp, wl, n_tok, &own);
        CHECK(ems_cache_clone(src, wl, &fork) == EM_OK, "%s: clone", configs[ci][0]);
        if (!fork) {
            ems_cache_destroy(own);
            continue;
        }
        CHECK(caches_equal(own, fork), "%s w_loc %d: clone differs from its own cache",
              configs[ci][0], wl);
        CHECK(ems_policy_step(own, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "step own");
        CHECK(ems_policy_step(fork, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "step fork");
        for (int t = n_tok; t < n_tok + 30; t++) {
            synth_step(own, &sp, t, 1);
            synth_step(fork, &sp, t, 1);
            own->n_seen++, fork->n_seen++;
            ems_policy_step(own, &cfg, EMS_PHASE_DECODE, NULL);
            ems_policy_step(fork, &cfg, EMS_PHASE_DECODE, NULL);
        }
        CHECK(ems_cache_entries(fork) < ems_cache_entries(src), "%s: fork not compressed",
              configs[ci][1]);
        CHECK(ems_cache_kv_bytes(own) == ems_cache_kv_bytes(fork), "%s: bytes differ",
              configs[ci][0]);
        int same = 1;
        for (int i = 0; i < N_LAYER * N_HEAD; i++) {
            ems_head *a = &own->heads[i], *b = &fork->heads[i];
            /* K/V as attention reads them (dequantised from a quantized head's store) */
            CHECK(ems_quant_materialize(a) == EM_OK && ems_quant_materialize(b) == EM_OK, "mat");
            same &= a->len == b->len && !memcmp(a->pos, b->pos, sizeof(int32_t) * a->len) &&
                    !memcmp(a->k, b->k, sizeof(float) * a->len * a->hd) &&
                    !memcmp(a->v, b->v, sizeof(float) * a->len * a->hd) &&
                    !memcmp(a->s_glo, b->s_glo, sizeof(float) * a->len);
            ems_quant_settle(a);
            ems_quant_settle(b);
        }
        CHECK(same, "%s %s: compressed fork differs from the cache compressed on its own",
              configs[ci][0], configs[ci][2] ? configs[ci][2] : "");
        ems_policy_stats s1, s2;
        ems_policy_get_stats(own, &s1);
        ems_policy_get_stats(fork, &s2);
        CHECK(s1.n_evicted == s2.n_evicted && s1.n_merged == s2.n_merged &&
                  s1.n_lazy_layers == s2.n_lazy_layers,
              "%s: policy stats differ", configs[ci][0]);
        /* a clone of a compressed cache carries its policy state */
        ems_cache *again;
        if (!fork->heads[0].qstate) {
            CHECK(ems_cache_clone(fork, wl, &again) == EM_OK && caches_equal(again, fork),
                  "%s: clone of a compressed cache", configs[ci][0]);
            ems_policy_stats s3;
            ems_policy_get_stats(again, &s3);
            CHECK(!memcmp(&s2, &s3, sizeof s2), "%s: policy state not copied", configs[ci][0]);
            ems_cache_destroy(again);
        } else {
            CHECK(ems_cache_clone(fork, wl, &again) == EM_EUNSUPPORTED && !again,
                  "quantized source accepted");
        }
        ems_cache_destroy(own);
        ems_cache_destroy(fork);
    }
    /* the source was never touched by its forks */
    ems_cache *fresh;
    make(&sp, big, n_tok, &fresh);
    CHECK(caches_equal(src, fresh), "source changed by compressing its forks");
    ems_cache_destroy(fresh);
    ems_cache *bad = NULL;
    CHECK(ems_cache_clone(src, big + 1, &bad) == EM_EINVAL && !bad, "larger ring accepted");
    CHECK(ems_cache_clone(src, -1, &bad) == EM_EINVAL && !bad, "negative ring accepted");
    ems_cache_destroy(src);
    TEST_END();
}
