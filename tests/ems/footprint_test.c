/* The KV footprint the service budgets (ems/footprint.h) against real caches: for every method
 * (and int4 on top), a 4-KV-head cache is fed a 100-token prompt in chunks of 30, compressed at
 * the prompt's end, then decoded 80 tokens with a policy step after each. At every point -- after
 * each append, before the policy runs, which is when a head is largest -- the bytes held by each
 * contiguous range of heads (what a worker holding those heads holds; compression does not
 * depend on the worker count, shard_test) stay within ems_footprint_peak_bytes for that many
 * local heads, and ems_cache_held_bytes equals the per-entry arrays it claims to count. For the
 * methods whose bound is exact the largest observed size equals it (the bound is not vacuous).
 * Capacity stays within held + 25 % + 128 entries per head after compactions. */
#include <stdio.h>
#include <string.h>

#include "ems/footprint.h"
#include "ems/policy.h"
#include "ems/quant.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

enum { H = 4, P = 100, CHUNK = 30, GEN = 80 };

typedef struct tracker {
    const ems_config *cfg;
    ems_footprint_shape sh;
    uint64_t max_held[H + 1][H]; /* [n_local][head0] largest bytes seen */
    const char *name;
} tracker;

static uint64_t head_bytes(const ems_head *h)
{
    if (h->qstate)
        return (uint64_t)h->len * ems_head_meta_bytes(h->w_loc) + ems_quant_held_bytes(h);
    return (uint64_t)h->len * ems_head_entry_bytes(h->hd, h->w_loc);
}

/* Checks every head range against the bound for n_end tokens fed in the end. */
static void observe(tracker *t, ems_cache *c, int prompt_ahead, const char *when)
{
    uint64_t total = 0;
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++)
        total += head_bytes(&c->heads[i]);
    CHECK(total == ems_cache_held_bytes(c), "%s %s: held %llu, arrays %llu", t->name, when,
          (unsigned long long)ems_cache_held_bytes(c), (unsigned long long)total);
    for (int hl = 1; hl <= H; hl++) {
        ems_footprint_shape sh = t->sh;
        sh.n_head_local = hl;
        uint64_t bound = ems_footprint_peak_bytes(t->cfg, &sh, P, P + GEN, prompt_ahead);
        for (int h0 = 0; h0 + hl <= H; h0++) {
            uint64_t b = 0;
            for (int l = 0; l < c->n_layer; l++)
                for (int h = h0; h < h0 + hl; h++)
                    b += head_bytes(ems_cache_head(c, l, h));
            CHECK(b <= bound, "%s %s: heads %d..%d hold %llu > bound %llu", t->name, when, h0,
                  h0 + hl - 1, (unsigned long long)b, (unsigned long long)bound);
            if (!prompt_ahead && b > t->max_held[hl][h0])
                t->max_held[hl][h0] = b;
        }
    }
}

static void run_case(const char *const *kv, int exact)
{
    char err[256];
    ems_config cfg;
    ems_config_default(&cfg);
    for (int j = 0; kv[j]; j++)
        CHECK(ems_config_set_kv(&cfg, kv[j], err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s", err);
    char name[128];
    ems_config_describe(&cfg, name, sizeof name);
    synth_spec sp = {.n_layer = 3,
                     .hd = 8,
                     .G = 2,
                     .seed = 7,
                     .dup_frac = 0.3f,
                     .dup_noise = 0.1f,
                     .key_scale = 2.5f};
    tracker t;
    memset(&t, 0, sizeof t);
    t.cfg = &cfg;
    t.sh = (ems_footprint_shape){sp.n_layer, sp.hd, H, H, 0};
    t.name = name;
    ems_cache *c;
    REQUIRE(ems_cache_create(sp.n_layer, H, 0, sp.hd, ems_config_w_loc(&cfg),
                             ems_config_wants_stats(&cfg), &c) == EM_OK,
            "create");
    for (int t0 = 0; t0 < P; t0 += CHUNK) {
        synth_step(c, &sp, t0, t0 + CHUNK <= P ? CHUNK : P - t0);
        observe(&t, c, 1, "prefill");
    }
    CHECK(ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL) == EM_OK, "%s prefill end", name);
    observe(&t, c, 1, "after prefill");
    for (int i = 0; i < GEN - 1; i++) { /* the last sampled token is never fed */
        synth_step(c, &sp, P + i, 1);
        observe(&t, c, i == 0, "decode, before policy");
        CHECK(ems_policy_step(c, &cfg, EMS_PHASE_DECODE, NULL) == EM_OK, "%s decode", name);
        observe(&t, c, 0, "decode");
    }
    if (exact) {
        for (int hl = 1; hl <= H; hl++) {
            ems_footprint_shape sh = t.sh;
            sh.n_head_local = hl;
            uint64_t bound = ems_footprint_peak_bytes(&cfg, &sh, P, P + GEN - 1, 0);
            CHECK(t.max_held[hl][0] == bound, "%s: %d heads peaked at %llu, bound %llu", name, hl,
                  (unsigned long long)t.max_held[hl][0], (unsigned long long)bound);
        }
    }
    for (int i = 0; i < c->n_layer * c->n_head_kv; i++) {
        const ems_head *h = &c->heads[i];
        CHECK(h->cap <= h->len + h->len / 4 + 128, "%s: head %d cap %d for %d entries", name, i,
              h->cap, h->len);
    }
    ems_cache_destroy(c);
}

/* Capacity policy: growth by 25 % rounded to 64, trimming only well above the entries. */
static void test_cap_policy(void)
{
    CHECK(ems_cache_grow_cap(0, 1) == 64, "first growth: %d", ems_cache_grow_cap(0, 1));
    CHECK(ems_cache_grow_cap(64, 65) == 128, "64 -> %d", ems_cache_grow_cap(64, 65));
    CHECK(ems_cache_grow_cap(1024, 1025) == 1280, "1024 -> %d", ems_cache_grow_cap(1024, 1025));
    CHECK(ems_cache_grow_cap(256, 4000) == 4032, "jump -> %d", ems_cache_grow_cap(256, 4000));
    CHECK(ems_cache_grow_cap(512, 100) == 512, "no growth");
    CHECK(ems_cache_fit_cap(4096, 256) == 384, "4096 for 256 -> %d", ems_cache_fit_cap(4096, 256));
    CHECK(ems_cache_fit_cap(384, 256) == 384, "already tight");
    CHECK(ems_cache_fit_cap(384, 272) == 384, "no thrash between B and B + N");
}

int main(void)
{
    test_cap_policy();
    static const char *const exact_cases[][6] = {
        {"method=full", NULL},
        {"method=h2o", "budget=24", NULL},
        {"method=streamingllm", "budget=24", NULL},
        {"method=tova", "budget=16", NULL},
        {"method=ems", "budget=24", "ems.headwise=0", NULL},
        {"method=snapkv", "budget=24", "compress_every=8", NULL},
    };
    for (size_t i = 0; i < sizeof exact_cases / sizeof exact_cases[0]; i++)
        run_case(exact_cases[i], 1);
    static const char *const bound_cases[][6] = {
        {"method=full", "quant=int4", NULL},
        {"method=ems", "budget=24", NULL},
        {"method=ems", "budget=16", "quant=int4", NULL},
        {"method=ems", "budget=16", "quant=int2", NULL},
        {"method=ems", "budget_frac=0.2", NULL},
        {"method=pyramidkv", "budget=24", NULL},
        {"method=roco", "budget=24", NULL},
        {"method=simlayerkv", "budget=24", "simlayerkv.delta=0.2", NULL},
        {"method=simlayerkv", "budget=24", "simlayerkv.inner=ems", "quant=int2", NULL},
        {"method=h2o", "budget=24", "compress_prefill=0", NULL},
        {"method=h2o", "budget=24", "quant=int8", "quant.group=16", NULL},
    };
    for (size_t i = 0; i < sizeof bound_cases / sizeof bound_cases[0]; i++)
        run_case(bound_cases[i], 0);
    TEST_END();
}
