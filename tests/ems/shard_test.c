/* Compression must not depend on the worker count: a 4-KV-head cache compressed in one process
 * and the same data held as two 2-head shards (kv_head0 0 and 2, one thread each, with an
 * in-process all-reduce hook) must keep the same entries with bit-identical values. Covers the
 * cross-head policies (EMS head-wise budgets, TOVA per layer, SimLayerKV) and per-head ones. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "tests/ems/synth.h"
#include "tests/testutil/testutil.h"

typedef struct shared {
    pthread_barrier_t bar;
    float *bufs[2];
    size_t n[2];
    int n_calls[2];
} shared;

typedef struct worker {
    shared *sh;
    int rank;
    ems_cache *c;
    const ems_config *cfg;
    const synth_spec *sp;
    em_status st;
} worker;

/* Sum over the two workers in rank order (x + 0 = x: exact). */
static em_status fake_reduce(void *user, float *buf, size_t n)
{
    worker *w = user;
    shared *sh = w->sh;
    sh->bufs[w->rank] = buf;
    sh->n[w->rank] = n;
    sh->n_calls[w->rank]++;
    pthread_barrier_wait(&sh->bar);
    if (sh->n[0] != sh->n[1])
        return EM_EPROTO;
    float *tmp = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        tmp[i] = sh->bufs[0][i] + sh->bufs[1][i];
    pthread_barrier_wait(&sh->bar); /* everyone has read both inputs */
    memcpy(buf, tmp, sizeof(float) * n);
    free(tmp);
    return EM_OK;
}

/* The scenario both sides run: prefill 100, prefill-end event, 60 decode steps. */
static em_status run(ems_cache *c, const ems_config *cfg, const synth_spec *sp, ems_reduce *red)
{
    synth_step(c, sp, 0, 100);
    em_status st = ems_policy_step(c, cfg, EMS_PHASE_PREFILL_END, red);
    for (int t = 100; t < 160 && st == EM_OK; t++) {
        synth_step(c, sp, t, 1);
        st = ems_policy_step(c, cfg, EMS_PHASE_DECODE, red);
    }
    return st;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    ems_reduce red = {fake_reduce, w, 4};
    w->st = run(w->c, w->cfg, w->sp, &red);
    return NULL;
}

static const char *const k_cases[][4] = {
    {"method=ems", "budget=16", NULL},
    {"method=ems", "budget=24", "ems.zero_class=0", NULL},
    {"method=tova", "budget=16", NULL},
    {"method=simlayerkv", "budget=24", "simlayerkv.delta=0.2", NULL},
    {"method=simlayerkv", "budget=24", "simlayerkv.decide=prefill", "simlayerkv.delta=0.3"},
    {"method=simlayerkv", "budget=24", "simlayerkv.test=importance", "simlayerkv.delta=0"},
    {"method=simlayerkv", "budget=24", "simlayerkv.inner=ems", "simlayerkv.delta=1"},
    {"method=h2o", "budget=16", NULL},
    {"method=pyramidkv", "budget=24", NULL},
};

int main(void)
{
    char err[256];
    synth_spec sp = {.n_layer = 3,
                     .hd = 8,
                     .G = 2,
                     .seed = 99,
                     .dup_frac = 0.4f,
                     .dup_noise = 0.1f,
                     .key_scale = 2.5f};
    for (size_t ci = 0; ci < sizeof k_cases / sizeof k_cases[0]; ci++) {
        ems_config cfg;
        ems_config_default(&cfg);
        for (int j = 0; j < 4 && k_cases[ci][j]; j++)
            ems_config_set_kv(&cfg, k_cases[ci][j], err, sizeof err);
        CHECK(ems_config_validate(&cfg, err, sizeof err) == EM_OK, "%s", err);
        const char *name = k_cases[ci][0];
        int wl = ems_config_w_loc(&cfg);
        ems_cache *one;
        ems_cache_create(sp.n_layer, 4, 0, sp.hd, wl, 1, &one);
        CHECK(run(one, &cfg, &sp, NULL) == EM_OK, "%s single", name);
        shared sh;
        memset(&sh, 0, sizeof sh);
        pthread_barrier_init(&sh.bar, NULL, 2);
        worker w[2];
        pthread_t th[2];
        for (int r = 0; r < 2; r++) {
            w[r] = (worker){&sh, r, NULL, &cfg, &sp, EM_OK};
            ems_cache_create(sp.n_layer, 2, 2 * r, sp.hd, wl, 1, &w[r].c);
            pthread_create(&th[r], NULL, worker_main, &w[r]);
        }
        for (int r = 0; r < 2; r++)
            pthread_join(th[r], NULL);
        CHECK(w[0].st == EM_OK && w[1].st == EM_OK, "%s shards: %d %d", name, w[0].st, w[1].st);
        CHECK(sh.n_calls[0] == sh.n_calls[1], "%s: reduce called %d vs %d times", name,
              sh.n_calls[0], sh.n_calls[1]);
        ems_policy_stats s1;
        ems_policy_get_stats(one, &s1);
        CHECK(s1.n_events > 0, "%s: nothing compressed", name);
        for (int l = 0; l < sp.n_layer; l++) {
            for (int g = 0; g < 4; g++) {
                ems_head *a = ems_cache_head(one, l, g), *b = ems_cache_head(w[g / 2].c, l, g % 2);
                CHECK(a->len == b->len, "%s layer %d head %d: len %d vs %d", name, l, g, a->len,
                      b->len);
                if (a->len != b->len)
                    continue;
                CHECK(memcmp(a->pos, b->pos, sizeof(int32_t) * a->len) == 0, "%s: positions", name);
                CHECK(memcmp(a->k, b->k, sizeof(float) * a->len * sp.hd) == 0 &&
                          memcmp(a->v, b->v, sizeof(float) * a->len * sp.hd) == 0,
                      "%s layer %d head %d: K/V not bit-identical", name, l, g);
            }
        }
        ems_cache_destroy(one);
        for (int r = 0; r < 2; r++)
            ems_cache_destroy(w[r].c);
        pthread_barrier_destroy(&sh.bar);
    }
    TEST_END();
}
