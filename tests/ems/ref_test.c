/* Fast policies (ems_policy_step) against the scalar references (ems/ref): for every method
 * and the EMS variants, two identical synthetic caches, one compressed by the policy and one by
 * the reference; kept positions must be identical and K/V/statistics equal within
 * |a - b| <= 1e-6 + 1e-6 |b| (both sides accumulate in the same order; the tolerance only
 * allows for float contraction differences). Both a prefill-end event and a decode event. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "ems/ref/ems_ref.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

typedef struct ref_case {
    const char *name;
    const char *kv[6];
    float dup;
} ref_case;

static const ref_case k_cases[] = {
    {"streamingllm", {"method=streamingllm", "budget=24"}, 0},
    {"h2o", {"method=h2o", "budget=24"}, 0},
    {"snapkv", {"method=snapkv", "budget=24"}, 0},
    {"snapkv-avg", {"method=snapkv", "budget=20", "snapkv.pool=avg", "snapkv.kernel=5"}, 0},
    {"pyramidkv", {"method=pyramidkv", "budget=24"}, 0},
    {"tova-layer", {"method=tova", "budget=24"}, 0},
    {"tova-head", {"method=tova", "budget=24", "tova.scope=head"}, 0},
    {"roco", {"method=roco", "budget=24"}, 0},
    {"roco-sinks", {"method=roco", "budget=24", "roco.sinks=4", "roco.stride=3"}, 0},
    {"roco-acc", {"method=roco", "budget=24", "roco.score=acc", "roco.std_top=12"}, 0},
    {"roco-std0", {"method=roco", "budget=24", "roco.std_top=0"}, 0},
    {"roco-std12", {"method=roco", "budget=24", "roco.std_top=12"}, 0},
    {"roco-acc-easykv", {"method=roco", "budget=24", "roco.score=acc", "compress_every=4"}, 0},
    {"simlayerkv", {"method=simlayerkv", "budget=24", "simlayerkv.delta=0.2"}, 0},
    {"simlayerkv-pre",
     {"method=simlayerkv", "budget=24", "simlayerkv.decide=prefill", "simlayerkv.delta=0.25",
      "simlayerkv.span=40"},
     0},
    {"simlayerkv-imp",
     {"method=simlayerkv", "budget=24", "simlayerkv.test=importance", "simlayerkv.delta=0"},
     0},
    {"simlayerkv-d0", {"method=simlayerkv", "budget=24", "simlayerkv.delta=0"}, 0},
    {"simlayerkv-imp-pre",
     {"method=simlayerkv", "budget=24", "simlayerkv.test=importance", "simlayerkv.decide=prefill",
      "simlayerkv.delta=0.05", "window=4"},
     0},
    {"simlayerkv-h2o",
     {"method=simlayerkv", "budget=24", "simlayerkv.inner=h2o", "simlayerkv.delta=0.25"},
     0},
    {"simlayerkv-def", {"method=simlayerkv", "budget=24", "simlayerkv.delta=0.25"}, 0},
    {"simlayerkv-snapkv",
     {"method=simlayerkv", "budget=24", "simlayerkv.inner=snapkv", "simlayerkv.delta=0.25"},
     0},
    {"simlayerkv-ems",
     {"method=simlayerkv", "budget=24", "simlayerkv.inner=ems", "simlayerkv.delta=0.25"},
     0.4f},
    {"simlayerkv-ems-pre",
     {"method=simlayerkv", "budget=24", "simlayerkv.inner=ems", "simlayerkv.decide=prefill",
      "simlayerkv.span=40", "simlayerkv.delta=0.5"},
     0.4f},
    {"ems", {"method=ems", "budget=24"}, 0.4f},
    {"ems-uniform", {"method=ems", "budget=24", "ems.headwise=0"}, 0.4f},
    {"ems-seq", {"method=ems", "budget=24", "ems.zero_class=0"}, 0.4f},
    {"ems-ratio", {"method=ems", "budget=24", "ems.align=ratio", "ems.tau=0.5"}, 0.4f},
    {"ems-shift", {"method=ems", "budget=24", "ems.align=shift"}, 0.4f},
    {"ems-global", {"method=ems", "budget=24", "ems.score=global"}, 0.4f},
    {"ems-local", {"method=ems", "budget=24", "ems.score=local", "ems.headwise=0"}, 0.4f},
    {"ems-evict", {"method=ems", "budget=24", "ems.strategy=evict"}, 0.4f},
    {"ems-merge", {"method=ems", "budget=24", "ems.strategy=merge", "ems.key_merge=mean"}, 0.4f},
    {"ems-placeholder", {"method=ems", "budget=24", "ems.split=placeholder", "ems.tau=0.2"}, 0.4f},
    {"ems-simk", {"method=ems", "budget=24", "ems.sim=k", "ems.merge_weight=uniform"}, 0.4f},
    {"ems-sinks", {"method=ems", "budget=24", "sinks=2", "ems.glo_mean=1", "ems.gw=1.5"}, 0.4f},
    {"ems-groupmax", {"method=ems", "budget=24", "group_reduce=max"}, 0.4f},
    {"ems-pool", {"method=ems", "budget=24", "ems.pool=7"}, 0.4f},
    {"ems-pool-evict", {"method=ems", "budget=24", "ems.pool=3", "ems.strategy=evict"}, 0.4f},
    {"ems-pool-decode", {"method=ems", "budget=24", "ems.pool=5", "ems.pool_decode=1"}, 0.4f},
    {"h2o-groupmax", {"method=h2o", "budget=24", "group_reduce=max"}, 0},
};

/* Pairs of cases whose fast results on the same cache must keep different positions: the
 * option the first case tests does something. */
static const char *const k_differs[][2] = {
    {"roco-acc", "roco-std12"},           {"roco-std0", "roco"},
    {"roco-std12", "roco-std0"},          {"simlayerkv-imp", "simlayerkv-d0"},
    {"simlayerkv-h2o", "simlayerkv-def"}, {"simlayerkv-snapkv", "simlayerkv-def"},
    {"simlayerkv-ems", "simlayerkv-def"},
};

static const synth_spec k_spec_base = {
    .n_layer = 3, .hd = 8, .G = 2, .seed = 11, .dup_noise = 0.15f, .key_scale = 2.5f};

/* Reference compression of one layer of c (all heads local). */
static void ref_layer(ems_cache *c, const ems_config *cfg, int l, int phase, int B, int N)
{
    int H = c->n_head_kv, L = c->n_layer;
    ems_head *heads[16];
    for (int h = 0; h < H; h++)
        heads[h] = ems_cache_head(c, l, h);
    int w = ems_config_window(cfg, B);
    int *keep = malloc(sizeof(int) * (size_t)heads[0]->len * 2 + 8);
    int due_B = B;
    if (cfg->method == EMS_METHOD_PYRAMIDKV) {
        due_B = w + ems_ref_pyramid_budget(B, w, heads[0]->len, L, cfg->pyramid_beta, l);
    }
    int len = heads[0]->len;
    int due = phase == EMS_PHASE_PREFILL_END ? len > due_B : len >= due_B + N;
    switch (cfg->method) {
    case EMS_METHOD_EMS:
        if (due) {
            ems_config pc = *cfg; /* the pooling of this phase */
            pc.ems_pool = ems_config_pool(cfg, phase == EMS_PHASE_PREFILL_END);
            ems_ref_ems_layer(heads, H, &pc, B);
        }
        break;
    case EMS_METHOD_TOVA:
        if (!due)
            break;
        if (cfg->tova_per_head) {
            for (int h = 0; h < H; h++)
                ems_head_compact(heads[h], keep, ems_ref_tova_head(heads[h], B, keep));
        } else {
            int n = ems_ref_tova_layer(heads, H, B, keep);
            for (int h = 0; h < H; h++)
                ems_head_compact(heads[h], keep, n);
        }
        break;
    case EMS_METHOD_SIMLAYERKV: {
        /* decided at this event (the test drives exactly one decision event) */
        if (ems_ref_simlayer_lazy(heads, H, cfg, B)) {
            for (int h = 0; h < H; h++)
                ems_head_compact(heads[h], keep, ems_ref_simlayer_keep(heads[h], cfg, B, keep));
            break;
        }
        ems_config in; /* non-lazy: the inner method, this event as its prefill-end event */
        ems_config_slk_inner(cfg, &in);
        if (in.method != EMS_METHOD_FULL)
            ref_layer(c, &in, l, EMS_PHASE_PREFILL_END, B, ems_config_every(&in));
        break;
    }
    default:
        if (!due)
            break;
        for (int h = 0; h < H; h++) {
            ems_head *hh = heads[h];
            int n = 0;
            if (cfg->method == EMS_METHOD_STREAMINGLLM)
                n = ems_ref_streaming(hh->len, B, ems_config_sinks(cfg), keep);
            if (cfg->method == EMS_METHOD_H2O)
                n = ems_ref_h2o(hh, B, w, keep);
            if (cfg->method == EMS_METHOD_SNAPKV)
                n = ems_ref_snapkv(hh, B, w, cfg->snapkv_kernel, cfg->snapkv_avgpool, keep);
            if (cfg->method == EMS_METHOD_PYRAMIDKV)
                n = ems_ref_snapkv(hh, due_B, w, cfg->snapkv_kernel, cfg->snapkv_avgpool, keep);
            if (cfg->method == EMS_METHOD_ROCO) {
                int stride = phase == EMS_PHASE_PREFILL_END ? 0 : cfg->roco_stride;
                n = ems_ref_roco(hh, cfg, B, stride, keep);
            }
            ems_head_compact(hh, keep, n);
        }
    }
    free(keep);
}

static int make_cfg(const ref_case *rc, ems_config *cfg)
{
    char err[256];
    ems_config_default(cfg);
    for (int j = 0; j < 6 && rc->kv[j]; j++) {
        CHECK(ems_config_set_kv(cfg, rc->kv[j], err, sizeof err) == EM_OK, "%s", err);
    }
    CHECK(ems_config_validate(cfg, err, sizeof err) == EM_OK, "%s: %s", rc->name, err);
    return 0;
}

static const ref_case *find_case(const char *name)
{
    for (size_t ci = 0; ci < sizeof k_cases / sizeof k_cases[0]; ci++) {
        if (!strcmp(k_cases[ci].name, name))
            return &k_cases[ci];
    }
    return NULL;
}

/* Runs the events of `phase` (see main) on a fresh cache; the caller destroys it. */
static ems_cache *run_fast(const ems_config *cfg, const synth_spec *sp, int phase)
{
    ems_cache *a;
    int B = cfg->budget, N = ems_config_every(cfg);
    ems_cache_create(sp->n_layer, 4, 0, sp->hd, ems_config_w_loc(cfg), 1, &a);
    int n0 = phase == 0 ? 120 : B + N - 1;
    if (cfg->method == EMS_METHOD_SIMLAYERKV && phase == 1)
        n0 = 90;
    synth_step(a, sp, 0, n0);
    int ph = EMS_PHASE_PREFILL_END;
    if (phase == 1) {
        if (cfg->method == EMS_METHOD_SIMLAYERKV && !cfg->slk_prefill) {
            ems_config nop = *cfg;
            nop.compress_prefill = 0;
            ems_policy_step(a, &nop, EMS_PHASE_PREFILL_END, NULL);
        }
        synth_step(a, sp, n0, 1);
        ph = EMS_PHASE_DECODE;
    }
    CHECK(ems_policy_step(a, cfg, ph, NULL) == EM_OK, "step");
    return a;
}

/* 1 when some head of a and b keeps different positions. */
static int kept_differ(const ems_cache *a, const ems_cache *b)
{
    for (int i = 0; i < a->n_layer * a->n_head_kv; i++) {
        const ems_head *x = &a->heads[i], *y = &b->heads[i];
        if (x->len != y->len)
            return 1;
        for (int j = 0; j < x->len; j++) {
            if (x->pos[j] != y->pos[j])
                return 1;
        }
    }
    return 0;
}

static int close_f(float a, float b)
{
    return fabsf(a - b) <= 1e-6f + 1e-6f * fabsf(b);
}

static void compare(const char *name, const char *ph, ems_cache *a, ems_cache *b)
{
    int hd = a->hd, bad = 0;
    for (int i = 0; i < a->n_layer * a->n_head_kv && !bad; i++) {
        ems_head *x = &a->heads[i], *y = &b->heads[i];
        CHECK(x->len == y->len, "%s/%s head %d: len fast %d ref %d", name, ph, i, x->len, y->len);
        if (x->len != y->len) {
            bad = 1;
            break;
        }
        for (int j = 0; j < x->len && !bad; j++) {
            if (x->pos[j] != y->pos[j]) {
                CHECK(0, "%s/%s head %d entry %d: pos %d vs %d", name, ph, i, j, x->pos[j],
                      y->pos[j]);
                bad = 1;
            }
            for (int d = 0; d < hd && !bad; d++) {
                if (!close_f(x->k[j * hd + d], y->k[j * hd + d]) ||
                    !close_f(x->v[j * hd + d], y->v[j * hd + d])) {
                    CHECK(0, "%s/%s head %d entry %d dim %d: k %g/%g v %g/%g", name, ph, i, j, d,
                          x->k[j * hd + d], y->k[j * hd + d], x->v[j * hd + d], y->v[j * hd + d]);
                    bad = 1;
                }
            }
            if (!bad && (!close_f(x->s_glo[j], y->s_glo[j]) || !close_f(x->mass[j], y->mass[j]) ||
                         x->cnt[j] != y->cnt[j])) {
                CHECK(0, "%s/%s head %d entry %d: stats differ", name, ph, i, j);
                bad = 1;
            }
        }
    }
}

int main(void)
{
    char err[256];
    int n_merged_total = 0;
    for (size_t ci = 0; ci < sizeof k_cases / sizeof k_cases[0]; ci++) {
        const ref_case *rc = &k_cases[ci];
        ems_config cfg;
        ems_config_default(&cfg);
        for (int j = 0; j < 6 && rc->kv[j]; j++) {
            CHECK(ems_config_set_kv(&cfg, rc->kv[j], err, sizeof err) == EM_OK, "%s", err);
        }
        CHECK(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s: %s", rc->name, err);
        synth_spec sp = k_spec_base;
        sp.dup_frac = rc->dup;
        sp.group_max = cfg.group_max; /* statistics reduced over the GQA group as configured */
        int B = cfg.budget, N = ems_config_every(&cfg);
        int want_differ = 0, n_differ = 0; /* k_differs: events whose kept entries differ */
        for (int phase = 0; phase < 2; phase++) {
            /* prefill: one chunk of 120 then the event; decode: B + N - 1 tokens in a chunk,
             * one decode token, then the event (simlayerkv: its decision event) */
            ems_cache *a, *b;
            ems_cache_create(sp.n_layer, 4, 0, sp.hd, ems_config_w_loc(&cfg), 1, &a);
            ems_cache_create(sp.n_layer, 4, 0, sp.hd, ems_config_w_loc(&cfg), 1, &b);
            int n0 = phase == 0 ? 120 : B + N - 1;
            if (cfg.method == EMS_METHOD_SIMLAYERKV && phase == 1)
                n0 = 90;
            synth_step(a, &sp, 0, n0);
            synth_step(b, &sp, 0, n0);
            int ph = EMS_PHASE_PREFILL_END;
            if (phase == 1) {
                /* simlayerkv decode decision: prefill end first (no decision), then a step */
                if (cfg.method == EMS_METHOD_SIMLAYERKV) {
                    ems_config nop = cfg;
                    nop.compress_prefill = 0;
                    if (!cfg.slk_prefill)
                        ems_policy_step(a, &nop, EMS_PHASE_PREFILL_END, NULL);
                }
                synth_step(a, &sp, n0, 1);
                synth_step(b, &sp, n0, 1);
                ph = EMS_PHASE_DECODE;
            }
            if (cfg.method == EMS_METHOD_SIMLAYERKV && cfg.slk_prefill != (phase == 0)) {
                ems_cache_destroy(a);
                ems_cache_destroy(b);
                continue; /* each variant decides at its own event only */
            }
            CHECK(ems_policy_step(a, &cfg, ph, NULL) == EM_OK, "%s step", rc->name);
            for (int l = 0; l < sp.n_layer; l++)
                ref_layer(b, &cfg, l, ph, B, N);
            compare(rc->name, phase ? "decode" : "prefill", a, b);
            for (size_t di = 0; di < sizeof k_differs / sizeof k_differs[0]; di++) {
                if (strcmp(k_differs[di][0], rc->name))
                    continue;
                const ref_case *oc = find_case(k_differs[di][1]);
                CHECK(oc != NULL, "%s: no case %s", rc->name, k_differs[di][1]);
                ems_config ocfg;
                if (oc) {
                    make_cfg(oc, &ocfg);
                    ems_cache *o = run_fast(&ocfg, &sp, phase);
                    n_differ += kept_differ(a, o);
                    ems_cache_destroy(o);
                }
                want_differ = 1;
            }
            ems_policy_stats st;
            ems_policy_get_stats(a, &st);
            /* simlayerkv-def: no layer lazy at the decode event (what its partners compress) */
            CHECK(st.n_events > 0 || !strcmp(rc->name, "simlayerkv-def"),
                  "%s/%d: nothing compressed", rc->name, phase);
            n_merged_total += (int)st.n_merged;
            if (strstr(rc->name, "ems") && !strstr(rc->name, "evict") && phase == 0) {
                CHECK(st.n_merged > 0, "%s: planted redundancy but nothing merged", rc->name);
            }
            ems_cache_destroy(a);
            ems_cache_destroy(b);
        }
        CHECK(!want_differ || n_differ > 0,
              "%s: same kept entries as its k_differs partner at "
              "every event (option inert?)",
              rc->name);
    }
    printf("merged entries over all cases: %d\n", n_merged_total);
    TEST_END();
}
