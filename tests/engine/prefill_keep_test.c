/* Bounded prefill (ems_config prefill_keep) on the engine, stories260K: a 240-token prompt is fed
 * in chunks of 24 with a PREFILL_CHUNK policy step after every chunk but the last, then the
 * prefill-end step and 16 greedy decode steps, on 1, 2 and 3 in-process shards (an all-reduce
 * built on a barrier). Checks, per config:
 *   - after every forward (before the policy, when the cache is largest) the bytes each shard
 *     holds stay within ems_footprint_peak_bytes for its heads with chunk = 24, and on one
 *     process that bound is below the whole prompt's (the setting bounds something);
 *   - the prompt is never held whole: the most bytes held during prefill are below what the
 *     prompt's entries take uncompressed;
 *   - every shard count gives bit-identical logits and the same KV entries as one process. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/footprint.h"
#include "ems/policy.h"
#include "engine/engine.h"
#include "model/model.h"
#include "tests/testutil/inproc_group.h"
#include "tests/testutil/testutil.h"

enum { P = 240, CHUNK = 24, GEN = 16, MAXW = 3 };

typedef struct rank_ctx {
    tu_group *g;
    int rank;
    const model *m;
    const ems_config *kv;
    float *logits;      /* [GEN + 1][vocab] */
    int status;         /* 0 ok, 1 failure (message printed) */
    uint64_t entries;   /* KV entries at the end */
    uint64_t max_pre;   /* most bytes held during prefill */
    uint64_t bound;     /* projection for this rank's heads (bounded prefill) */
    uint64_t unbounded; /* the same without prefill_keep */
    uint64_t whole;     /* the prompt's entries uncompressed */
} rank_ctx;

static em_status reduce(void *user, float *buf, size_t n)
{
    rank_ctx *r = user;
    return tu_group_allreduce(r->g, r->rank, buf, n);
}

static int32_t prompt_id(int i, int V)
{
    return (int32_t)(1 + (i * 37 + (i / 7) * 11) % (V - 1));
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

/* Feeds the prompt in chunks, checking held bytes after each forward against the bound. */
static em_status prefill(rank_ctx *r, engine *e, ems_cache *c, const ems_reduce *red, float *out)
{
    int V = r->m->hp.n_vocab;
    int32_t tok[CHUNK], pos[CHUNK], seq[CHUNK] = {0};
    for (int s = 0; s < P; s += CHUNK) {
        int n = P - s < CHUNK ? P - s : CHUNK;
        for (int i = 0; i < n; i++)
            tok[i] = prompt_id(s + i, V), pos[i] = s + i;
        engine_batch b = {n, tok, pos, seq, NULL};
        em_status st = engine_forward(e, &b, &c, out);
        if (st != EM_OK)
            return st;
        uint64_t held = ems_cache_held_bytes(c);
        r->max_pre = held > r->max_pre ? held : r->max_pre;
        if (held > r->bound) {
            printf("FAIL rank %d: %llu bytes held after %d prompt tokens > bound %llu\n", r->rank,
                   (unsigned long long)held, s + n, (unsigned long long)r->bound);
            r->status = 1;
        }
        int last = s + n == P;
        st = ems_policy_step(c, r->kv, last ? EMS_PHASE_PREFILL_END : EMS_PHASE_PREFILL_CHUNK, red);
        if (st != EM_OK)
            return st;
    }
    return EM_OK;
}

static void *run_rank(void *arg)
{
    rank_ctx *r = arg;
    const model *m = r->m;
    int V = m->hp.n_vocab, world = r->g ? r->g->world : 1;
    shard_desc sd;
    ems_reduce red = {NULL, NULL, m->hp.n_kv_head};
    if (shard_for_rank(m->hp.n_kv_head, r->rank, world, &sd) != EM_OK) {
        r->status = 1;
        return NULL;
    }
    if (world > 1) {
        sd.reduce = reduce;
        sd.reduce_user = r;
        red.fn = reduce, red.user = r;
    }
    ems_footprint_shape sh = {m->hp.n_layer, m->hp.head_dim, m->hp.n_kv_head, sd.n_units_local,
                              CHUNK};
    r->bound = ems_footprint_peak_bytes(r->kv, &sh, P, P + GEN, 1);
    ems_config off = *r->kv;
    off.prefill_keep = 0;
    r->unbounded = ems_footprint_peak_bytes(&off, &sh, P, P + GEN, 1);
    ems_config full;
    ems_config_default(&full);
    r->whole = ems_footprint_peak_bytes(&full, &sh, P, P, 1);
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = CHUNK};
    engine *e;
    ems_cache *c;
    if (engine_create(m, &sd, &eo, &e) != EM_OK) {
        r->status = 1;
        return NULL;
    }
    em_status st = engine_cache_create(e, ems_config_w_loc(r->kv), ems_config_wants_stats(r->kv),
                                       r->kv->group_max, &c);
    if (st == EM_OK)
        st = prefill(r, e, c, world > 1 ? &red : NULL, r->logits);
    for (int s = 1; s <= GEN && st == EM_OK; s++) {
        int32_t tok = argmax(r->logits + (size_t)(s - 1) * V, V), pos = P + s - 1, seq = 0;
        engine_batch b = {1, &tok, &pos, &seq, NULL};
        st = engine_forward(e, &b, &c, r->logits + (size_t)s * V);
        if (st == EM_OK)
            st = ems_policy_step(c, r->kv, EMS_PHASE_DECODE, world > 1 ? &red : NULL);
    }
    if (st != EM_OK) {
        printf("FAIL rank %d of %d: %s\n", r->rank, world, em_status_str(st));
        r->status = 1;
    } else {
        r->entries = ems_cache_entries(c);
    }
    if (st == EM_OK)
        ems_cache_destroy(c);
    engine_free(e);
    return NULL;
}

/* Runs one config on `world` shards; returns rank 0's logits (caller frees) or NULL. */
static float *run_world(const model *m, const ems_config *kv, int world, uint64_t *entries,
                        const char *name)
{
    tu_group g = {.world = world};
    pthread_barrier_init(&g.bar, NULL, (unsigned)world);
    rank_ctx rc[MAXW];
    pthread_t th[MAXW];
    size_t per = (size_t)(GEN + 1) * m->hp.n_vocab;
    for (int r = 0; r < world; r++) {
        rc[r] = (rank_ctx){.g = &g, .rank = r, .m = m, .kv = kv};
        rc[r].logits = calloc(per, sizeof(float));
        pthread_create(&th[r], NULL, run_rank, &rc[r]);
    }
    int bad = 0;
    *entries = 0;
    for (int r = 0; r < world; r++) {
        pthread_join(th[r], NULL);
        bad |= rc[r].status;
        *entries += rc[r].entries;
        /* (one head of a head-wise EMS layer may take most of the layer's share: on a shard
         * with few heads its bound can be the whole prompt; the single process's is not) */
        CHECK(world > 1 || rc[r].bound < rc[r].unbounded,
              "%s world %d rank %d: bound %llu not below %llu", name, world, r,
              (unsigned long long)rc[r].bound, (unsigned long long)rc[r].unbounded);
        CHECK(rc[r].max_pre < rc[r].whole,
              "%s world %d rank %d: held %llu during prefill, the "
              "whole prompt is %llu",
              name, world, r, (unsigned long long)rc[r].max_pre, (unsigned long long)rc[r].whole);
    }
    for (int r = 1; r < world; r++) {
        bad |= memcmp(rc[0].logits, rc[r].logits, per * sizeof(float)) != 0;
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
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "load %s: %s", path, err);
    REQUIRE(m->hp.n_ctx >= P + GEN, "model context %d", m->hp.n_ctx);
    static const char *const configs[][5] = {
        {"method=snapkv", "budget=16", "prefill_keep=32", NULL},
        {"method=ems", "budget=16", "prefill_keep=32", NULL},
        {"method=ems", "budget=16", "prefill_keep=24", "prefill_slack=40", NULL},
        {"method=ems", "budget=16", "prefill_keep=32", "quant=int4", NULL},
        {"method=h2o", "budget=16", "prefill_keep=16", "prefill_slack=8", NULL},
        {"method=pyramidkv", "budget=16", "prefill_keep=32", NULL},
        {"method=tova", "budget=16", "prefill_keep=32", NULL},
        {"method=roco", "budget=16", "prefill_keep=32", NULL},
    };
    size_t per = (size_t)(GEN + 1) * m->hp.n_vocab;
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        ems_config kv;
        ems_config_default(&kv);
        for (int k = 0; configs[ci][k]; k++)
            CHECK(ems_config_set_kv(&kv, configs[ci][k], err, sizeof err) == EM_OK, "%s", err);
        REQUIRE(ems_config_validate(&kv, err, sizeof err) == EM_OK, "%s", err);
        char name[160];
        ems_config_describe(&kv, name, sizeof name);
        uint64_t ent1 = 0, entw = 0;
        float *ref = run_world(m, &kv, 1, &ent1, name);
        CHECK(ref != NULL, "%s: single process failed", name);
        for (int w = 2; w <= MAXW && ref; w++) {
            float *got = run_world(m, &kv, w, &entw, name);
            CHECK(got && memcmp(got, ref, per * sizeof(float)) == 0 && entw == ent1,
                  "%s: %d shards differ from one process (entries %llu vs %llu)", name, w,
                  (unsigned long long)entw, (unsigned long long)ent1);
            free(got);
        }
        printf("ok   %s: 1/2/3 shards identical, %llu KV entries at the end\n", name,
               (unsigned long long)ent1);
        free(ref);
    }
    model_free(m);
    TEST_END();
}
