/* Tensor parallelism must not change answers: N in-process shards (threads, one engine each,
 * an all-reduce built on a barrier) give logits bit-identical to the 1-of-1 engine, for
 * N = 1, 2, 3, 4 (3 deals 4 KV heads out as 2 + 1 + 1), over a prefill and many decode steps of two
 * interleaved sequences (continuous batching), with the full cache and with KV compression policies
 * whose decisions span heads (EMS head-wise budgets, TOVA per layer, SimLayerKV) running on each
 * shard's own heads. Also checks that shard_for_rank rejects more shards than KV heads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/testutil/inproc_group.h"
#include "tests/testutil/testutil.h"

#define MAXW 4
typedef tu_group group;

typedef struct rank_ctx {
    group *g;
    int rank;
    const model *m;
    const ems_config *kv;
    float *logits; /* [steps][2][vocab] */
    int status;
    uint64_t entries; /* KV entries this rank holds at the end */
} rank_ctx;

static em_status fake_allreduce(void *user, float *buf, size_t n)
{
    rank_ctx *r = user;
    return tu_group_allreduce(r->g, r->rank, buf, n);
}

#define STEPS 40
static const int32_t PROMPT_A[] = {1, 403, 407, 261, 378};
static const int32_t PROMPT_B[] = {1, 317, 269, 368, 302, 263, 377, 267};

static void *run_rank(void *arg)
{
    rank_ctx *r = arg;
    const model *m = r->m;
    int V = m->hp.n_vocab;
    shard_desc sd;
    if (shard_for_rank(m->hp.n_kv_head, r->rank, r->g ? r->g->world : 1, &sd) != EM_OK) {
        r->status = 1;
        return NULL;
    }
    if (r->g && r->g->world > 1) {
        sd.reduce = fake_allreduce; /* also used by ems_reduce below */
        sd.reduce_user = r;
    }
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 16};
    engine *e;
    ems_cache *c[2];
    int wl = ems_config_w_loc(r->kv), ws = ems_config_wants_stats(r->kv);
    ems_reduce red = {NULL, NULL, m->hp.n_kv_head};
    if (r->g && r->g->world > 1)
        red.fn = fake_allreduce, red.user = r;
    if (engine_create(m, &sd, &eo, &e) != EM_OK || engine_cache_create(e, wl, ws, 0, &c[0]) ||
        engine_cache_create(e, wl, ws, 0, &c[1])) {
        r->status = 1;
        return NULL;
    }
    /* step 0: both prompts in one batch (two prefill runs); then decode both each step */
    int32_t tok[16], pos[16], seq[16];
    int n = 0;
    for (int i = 0; i < 5; i++)
        tok[n] = PROMPT_A[i], pos[n] = i, seq[n++] = 0;
    for (int i = 0; i < 8; i++)
        tok[n] = PROMPT_B[i], pos[n] = i, seq[n++] = 1;
    int len[2] = {5, 8};
    for (int s = 0; s < STEPS; s++) {
        engine_batch b = {n, tok, pos, seq, NULL};
        float *out = r->logits + (size_t)s * 2 * V;
        if (engine_forward(e, &b, c, out) != EM_OK ||
            ems_policy_step(c[0], r->kv, s ? EMS_PHASE_DECODE : EMS_PHASE_PREFILL_END, &red) ||
            ems_policy_step(c[1], r->kv, s ? EMS_PHASE_DECODE : EMS_PHASE_PREFILL_END, &red)) {
            r->status = 1;
            break;
        }
        if (s == STEPS - 1)
            r->entries = ems_cache_entries(c[0]) + ems_cache_entries(c[1]);
        n = 0;
        for (int q = 0; q < 2; q++) {
            int best = 0;
            for (int i = 1; i < V; i++)
                best = out[q * V + i] > out[q * V + best] ? i : best;
            tok[n] = best, pos[n] = len[q]++, seq[n++] = q;
        }
    }
    ems_cache_destroy(c[0]);
    ems_cache_destroy(c[1]);
    engine_free(e);
    return NULL;
}

static float *run_world(const model *m, const ems_config *kv, int world, uint64_t *entries)
{
    group g = {.world = world};
    pthread_barrier_init(&g.bar, NULL, (unsigned)world);
    rank_ctx rc[MAXW];
    pthread_t th[MAXW];
    size_t per = (size_t)STEPS * 2 * m->hp.n_vocab;
    for (int r = 0; r < world; r++) {
        rc[r] = (rank_ctx){&g, r, m, kv, calloc(per, sizeof(float)), 0, 0};
        pthread_create(&th[r], NULL, run_rank, &rc[r]);
    }
    int bad = 0;
    *entries = 0;
    for (int r = 0; r < world; r++) {
        pthread_join(th[r], NULL);
        bad |= rc[r].status;
        *entries += rc[r].entries;
    }
    /* every rank must hold the same logits */
    for (int r = 1; r < world; r++) {
        if (memcmp(rc[0].logits, rc[r].logits, per * sizeof(float)) != 0)
            bad = 1;
        free(rc[r].logits);
    }
    pthread_barrier_destroy(&g.bar);
    if (bad) {
        free(rc[0].logits);
        return NULL;
    }
    return rc[0].logits;
}

int main(void)
{
    const char *path = tu_model_path(0);
    char err[256];
    model *m;
    if (model_load(path, &m, err, sizeof err) != EM_OK) {
        printf("FAIL load: %s\n", err);
        return 1;
    }
    int fails = 0;
    shard_desc sd;
    if (shard_for_rank(m->hp.n_kv_head, 0, m->hp.n_kv_head + 1, &sd) == EM_OK) {
        printf("FAIL: %d workers accepted for %d KV heads\n", m->hp.n_kv_head + 1, m->hp.n_kv_head);
        fails++;
    }
    /* 4 units over 3 ranks: 2 + 1 + 1, contiguous and covering every unit once */
    int next = 0;
    for (int r = 0; r < 3; r++) {
        if (shard_for_rank(4, r, 3, &sd) != EM_OK || sd.unit0 != next ||
            sd.n_units_local != (r == 0 ? 2 : 1)) {
            printf("FAIL: placement of rank %d of 3 over 4 units\n", r);
            fails++;
        }
        next = sd.unit0 + sd.n_units_local;
    }
    const char *configs[][3] = {
        {"full", NULL, NULL},
        {"ems", "budget=8", "ems.headwise=1"},
        {"ems", "budget=8", "ems.headwise=0"},
        {"tova", "budget=8", NULL},
        {"simlayerkv", "budget=8", "simlayerkv.delta=0.5"},
        {"h2o", "budget=8", "quant=int4"},
    };
    size_t per = (size_t)STEPS * 2 * m->hp.n_vocab;
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        ems_config kv;
        ems_config_default(&kv);
        char e2[256] = "";
        ems_config_set(&kv, "method", configs[ci][0], e2, sizeof e2);
        for (int k = 1; k < 3; k++) {
            if (configs[ci][k] && ems_config_set_kv(&kv, configs[ci][k], e2, sizeof e2) != EM_OK) {
                printf("FAIL config %s: %s\n", configs[ci][k], e2);
                fails++;
            }
        }
        uint64_t ent1 = 0, entw = 0;
        float *ref = run_world(m, &kv, 1, &ent1);
        for (int w = 2; w <= 4; w++) {
            float *got = run_world(m, &kv, w, &entw);
            if (!got || !ref || memcmp(got, ref, per * sizeof(float)) != 0 || entw != ent1) {
                printf("FAIL: %s %s %s world %d differs from the single process (entries %llu vs "
                       "%llu)\n",
                       configs[ci][0], configs[ci][1] ? configs[ci][1] : "",
                       configs[ci][2] ? configs[ci][2] : "", w, (unsigned long long)entw,
                       (unsigned long long)ent1);
                fails++;
            } else {
                printf(
                    "ok   %-10s %-9s %-20s world %d: %zu logits bit-identical, %llu KV entries\n",
                    configs[ci][0], configs[ci][1] ? configs[ci][1] : "",
                    configs[ci][2] ? configs[ci][2] : "", w, per, (unsigned long long)entw);
            }
            free(got);
        }
        free(ref);
    }
    model_free(m);
    return fails ? 1 : 0;
}
