/* Tensor parallelism with KV compression on SmolLM2-135M (3 KV heads): 1, 2 (2 + 1 heads) and
 * 3 in-process shards (threads, one engine each, an all-reduce built on a barrier) give
 * bit-identical logits at every step AND identical compressed caches (per layer and global KV
 * head: length, original positions, K and V bytes) after a 131-token prompt compressed at its
 * end and 24 decode steps with compression, for EMS (head-wise budgets, a cross-head decision),
 * SnapKV, TOVA (one selection per layer across heads) and EMS + int4; and with bounded prefill
 * (prefill_keep: the prompt fed in chunks of 32 with a PREFILL_CHUNK step after each but the
 * last, which compresses mid-prompt) for EMS and SnapKV.
 * Prints SKIPPED when SmolLM2 is not installed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "ems/quant.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/inproc_group.h"
#include "tests/testutil/testutil.h"

#define MAXW     3
#define STEPS    24
#define MAX_HASH (64 * 8)

typedef tu_group group;

typedef struct rank_ctx {
    group *g;
    int rank;
    const model *m;
    const ems_config *kv;
    const int32_t *prompt;
    int n_prompt;
    float *logits;  /* [STEPS][vocab], rank 0's copy compared */
    uint64_t *hash; /* [n_layer][n_kv_head] shared: each rank fills its own heads */
    int status;
    uint64_t entries; /* KV entries this rank holds at the end */
} rank_ctx;

static em_status fake_allreduce(void *user, float *buf, size_t n)
{
    rank_ctx *r = user;
    return tu_group_allreduce(r->g, r->rank, buf, n);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Hash of each local head's entries into the shared table at its GLOBAL head index. */
static void hash_heads(ems_cache *c, int H, uint64_t *out)
{
    for (int l = 0; l < c->n_layer; l++) {
        for (int h = 0; h < c->n_head_kv; h++) {
            ems_head *hd = ems_cache_head(c, l, h);
            uint64_t x = fnv(1469598103934665603ull, &hd->len, sizeof hd->len);
            x = fnv(x, hd->pos, sizeof(int32_t) * hd->len);
            CHECK(ems_quant_materialize(hd) == EM_OK, "materialize"); /* f32 rows of int4 heads */
            x = fnv(x, hd->k, sizeof(float) * hd->len * hd->hd);
            x = fnv(x, hd->v, sizeof(float) * hd->len * hd->hd);
            ems_quant_settle(hd);
            out[l * H + c->kv_head0 + h] = x;
        }
    }
}

static void *run_rank(void *arg)
{
    rank_ctx *r = arg;
    const model *m = r->m;
    int V = m->hp.n_vocab, world = r->g->world;
    shard_desc sd;
    r->status = 1;
    if (shard_for_rank(m->hp.n_kv_head, r->rank, world, &sd) != EM_OK)
        return NULL;
    ems_reduce red = {NULL, NULL, m->hp.n_kv_head};
    if (world > 1) {
        sd.reduce = fake_allreduce, sd.reduce_user = r;
        red.fn = fake_allreduce, red.user = r;
    }
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 256};
    engine *e = NULL;
    ems_cache *c = NULL;
    float *lg = malloc(sizeof(float) * V);
    if (engine_create(m, &sd, &eo, &e) != EM_OK ||
        engine_cache_create(e, ems_config_w_loc(r->kv), ems_config_wants_stats(r->kv), 0, &c) !=
            EM_OK) {
        engine_free(e);
        free(lg);
        return NULL;
    }
    em_status st = EM_OK;
    int chunk = r->kv->prefill_keep > 0 ? 32 : r->n_prompt; /* bounded prefill: chunk steps */
    for (int s0 = 0; s0 < r->n_prompt && st == EM_OK; s0 += chunk) {
        int k = r->n_prompt - s0 < chunk ? r->n_prompt - s0 : chunk, last = s0 + k == r->n_prompt;
        st = engine_forward_seq(e, c, r->prompt + s0, k, s0, k, lg);
        if (st == EM_OK)
            st = ems_policy_step(c, r->kv, last ? EMS_PHASE_PREFILL_END : EMS_PHASE_PREFILL_CHUNK,
                                 &red);
    }
    for (int s = 0; s < STEPS && st == EM_OK; s++) {
        if (r->rank == 0)
            memcpy(r->logits + (size_t)s * V, lg, sizeof(float) * V);
        int32_t tok = 0, pos = r->n_prompt + s, seq = 0;
        for (int i = 1; i < V; i++)
            tok = lg[i] > lg[tok] ? i : tok;
        engine_batch b = {1, &tok, &pos, &seq, NULL};
        st = engine_forward(e, &b, &c, lg);
        if (st == EM_OK)
            st = ems_policy_step(c, r->kv, EMS_PHASE_DECODE, &red);
    }
    if (st == EM_OK) {
        hash_heads(c, m->hp.n_kv_head, r->hash);
        r->entries = ems_cache_entries(c);
        r->status = 0;
    }
    ems_cache_destroy(c);
    engine_free(e);
    free(lg);
    return NULL;
}

/* Runs `world` shards; logits of rank 0 into logits, head hashes into hash. 0 on success. */
static int run_world(const model *m, const ems_config *kv, const int32_t *p, int n, int world,
                     float *logits, uint64_t *hash, uint64_t *entries)
{
    group g = {.world = world};
    pthread_barrier_init(&g.bar, NULL, (unsigned)world);
    rank_ctx rc[MAXW];
    pthread_t th[MAXW];
    for (int r = 0; r < world; r++) {
        rc[r] = (rank_ctx){&g, r, m, kv, p, n, logits, hash, 1, 0};
        pthread_create(&th[r], NULL, run_rank, &rc[r]);
    }
    int bad = 0;
    *entries = 0;
    for (int r = 0; r < world; r++) {
        pthread_join(th[r], NULL);
        bad |= rc[r].status;
        *entries += rc[r].entries;
    }
    pthread_barrier_destroy(&g.bar);
    return bad;
}

static const char k_text[] =
    "The old lighthouse keeper climbed the stairs every evening at dusk. He counted the steps, "
    "one hundred and twelve of them, and at the top he lit the great lamp that warned the ships "
    "away from the rocks. One night a storm came from the west, and the waves rose higher than "
    "he had ever seen. A small boat was caught between the cliffs. The keeper rang the bell and "
    "signalled with his lantern until the sailors saw the gap in the reef and rowed through it. "
    "In the morning they climbed up to thank him, and he made them tea. What did the keeper do "
    "when the storm came, and how many steps did he climb?";

int main(void)
{
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return 0;
    }
    char err[512];
    model *m = NULL;
    tokenizer *tok = NULL;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    int32_t ids[512];
    int n = 0;
    REQUIRE(tok_encode(tok, k_text, strlen(k_text), 0, ids, 512, &n) == EM_OK && n > 100, "text");
    int L = m->hp.n_layer, H = m->hp.n_kv_head, V = m->hp.n_vocab;
    REQUIRE(H <= MAXW && L * H <= MAX_HASH, "model shape");
    const char *configs[][4] = {
        {"method=ems", "budget=48", NULL},
        {"method=snapkv", "budget=48", NULL},
        {"method=tova", "budget=48", NULL},
        {"method=ems", "budget=48", "quant=int4"},
        {"method=ems", "budget=48", "prefill_keep=48"},
        {"method=snapkv", "budget=48", "prefill_keep=48", "prefill_slack=16"},
    };
    size_t per = (size_t)STEPS * V;
    float *ref = malloc(sizeof(float) * per), *got = malloc(sizeof(float) * per);
    uint64_t href[MAX_HASH], hgot[MAX_HASH];
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        ems_config kv;
        ems_config_default(&kv);
        for (int k = 0; k < 4 && configs[ci][k]; k++)
            REQUIRE(ems_config_set_kv(&kv, configs[ci][k], err, sizeof err) == EM_OK, "%s", err);
        uint64_t e1 = 0, ew = 0;
        REQUIRE(run_world(m, &kv, ids, n, 1, ref, href, &e1) == 0, "%s world 1", configs[ci][0]);
        CHECK(e1 > 0 && e1 <= (uint64_t)L * H * (48 + 16), "%s: %llu entries, not compressed",
              configs[ci][0], (unsigned long long)e1);
        for (int w = 2; w <= H; w++) {
            memset(hgot, 0, sizeof hgot);
            int bad = run_world(m, &kv, ids, n, w, got, hgot, &ew) || ew != e1;
            CHECK(!bad, "%s world %d failed", configs[ci][0], w);
            int same_logits = !bad && !memcmp(ref, got, sizeof(float) * per);
            int same_cache = !bad && !memcmp(href, hgot, sizeof(uint64_t) * L * H);
            CHECK(same_logits, "%s %s world %d: logits differ", configs[ci][0],
                  configs[ci][2] ? configs[ci][2] : "", w);
            CHECK(same_cache, "%s %s world %d: compressed caches differ", configs[ci][0],
                  configs[ci][2] ? configs[ci][2] : "", w);
            if (same_logits && same_cache)
                printf("ok   %-13s %-10s world %d: %d steps of logits and %d compressed heads "
                       "bit-identical (prompt %d tokens)\n",
                       configs[ci][0], configs[ci][2] ? configs[ci][2] : "", w, STEPS, L * H, n);
        }
    }
    free(ref), free(got);
    tok_free(tok);
    model_free(m);
    TEST_END();
}
