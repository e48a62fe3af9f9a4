/* Bounded prefill (prefill_keep) turns into concurrency: through the real scheduler, worker
 * state and caches on stories260K (in-process group, fake_group.h; synchronous steps, nothing
 * timed), 8 requests with prompts of 400 tokens fed in chunks of 32 run under a KV budget of
 * 1.2 uncompressed prompts:
 *   - SnapKV B = 16 without prefill_keep is charged its whole prompt while it is fed: one prompt
 *     at a time, beside at most 2 decoding requests (3 at once);
 *   - with prefill_keep=32 each is charged keep + slack + chunk entries per head: all 8 run at
 *     once (the scheduler's own running_max, in its stats and in the group's log);
 *   - both complete every request, no step holds more than the budget and every held-bytes report
 *     equals the caches' real size;
 *   - with prefill_keep, compression steps come only at multiples of the chunk (P / CHUNK per
 *     request, whatever pieces the steps' room cut the prompt into: a tight budget makes prompts
 *     share steps with decodes), and the greedy ids under either budget equal those of a run
 *     without one;
 *   - the charge itself (coord_kv_charge of a fresh request) is below a quarter of the unbounded
 *     one, and a request with prefill_keep but no chunk known is charged the whole prompt. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/sched.h"
#include "coordinator/sched_kv.h"
#include "ems/footprint.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/coordinator/fake_group.h"
#include "tests/coordinator/sched_board.h"
#include "tests/testutil/testutil.h"

enum { P = 400, GEN = 32, N_REQ = 8, BATCH = 256, SLOTS = 16, CHUNK = 32, MIXED = 48 };
_Static_assert(GEN <= SB_MAX_IDS && N_REQ <= SB_MAX_REQ, "the board holds every request's ids");

typedef struct outcome {
    sb_board b;
    coord_sched_stats st;
    fake_group_log log;
} outcome;

static void run(const model *m, const tokenizer *tok, const char *kv, int64_t budget, outcome *o)
{
    char err[256];
    coord_group *g;
    REQUIRE(fake_group_create(tu_model_path(1), BATCH, SLOTS, &g, err, sizeof err) == EM_OK, "%s",
            err);
    memset(o, 0, sizeof *o);
    sb_board_init(&o->b);
    coord_sched_opts so = {.max_batch_tokens = BATCH,
                           .max_slots = SLOTS,
                           .prefill_chunk = CHUNK,
                           .mixed_prefill = MIXED,
                           .kv_memory = budget};
    fake_group_hold(g, 1);
    coord_sched *s;
    REQUIRE(coord_sched_start(g, m, tok, &so, &s) == EM_OK, "sched start");
    fake_group_wait_held(g);
    sb_user users[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        users[i] = (sb_user){&o->b, i};
        coord_sched_submit(s, sb_make_req(m, i, P, GEN, kv, &users[i]));
    }
    fake_group_hold(g, 0);
    sb_board_wait(&o->b, N_REQ);
    coord_sched_get_stats(s, &o->st);
    coord_sched_stop(s);
    fake_group_get_log(g, &o->log);
    fake_group_free(g);
    for (int i = 0; i < N_REQ; i++)
        CHECK(o->b.res[i].ok && o->b.res[i].n_ids == GEN, "%s: request %d ok %d with %d ids", kv, i,
              o->b.res[i].ok, o->b.res[i].n_ids);
    CHECK(o->log.held_mismatch == 0, "%s: %d held-bytes reports differ from the caches", kv,
          o->log.held_mismatch);
    CHECK(budget == 0 || o->log.peak_max <= budget, "%s: a step held %lld bytes, budget %lld", kv,
          (long long)o->log.peak_max, (long long)budget);
    CHECK(o->st.running_max == o->log.running_max, "%s: stats say %d at once, the group %d", kv,
          o->st.running_max, o->log.running_max);
    printf("%-40s running at most %d, peak %lld of %lld bytes, %d steps\n", kv, o->st.running_max,
           (long long)o->log.peak_max, (long long)budget, o->log.steps);
}

/* coord_kv_charge of a fresh request (nothing fed) on one worker holding every head. */
static int64_t fresh_charge(const model *m, const char *kv, int chunk)
{
    coord_req q;
    memset(&q, 0, sizeof q);
    ems_config_default(&q.kv);
    sb_set_kv(&q, kv);
    coord_kv_budget b = {.bytes = 1, .reserve = 1.0, .world = 1};
    b.shape[0] = (ems_footprint_shape){m->hp.n_layer, m->hp.head_dim, m->hp.n_kv_head,
                                       m->hp.n_kv_head, chunk};
    coord_kv_seq s = {&q.kv, P, 0, P + GEN - 1, 1, chunk, NULL};
    int64_t c = coord_kv_charge(&b, &s, 0, 1);
    for (int i = 0; i < q.n_kv; i++)
        free(q.kv_key[i]), free(q.kv_val[i]);
    return c;
}

int main(void)
{
    const char *path = tu_model_path(0);
    char err[256];
    model *m;
    tokenizer *tok;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(m->hp.n_ctx >= P + GEN, "context %d", m->hp.n_ctx);
    const char *plain = "method=snapkv budget=16",
               *keep = "method=snapkv budget=16 prefill_keep=16 prefill_slack=0";

    int64_t c_plain = fresh_charge(m, plain, CHUNK), c_keep = fresh_charge(m, keep, CHUNK);
    int64_t c_unknown = fresh_charge(m, keep, 0);
    CHECK(c_keep * 4 < c_plain, "bounded charge %lld vs %lld", (long long)c_keep,
          (long long)c_plain);
    CHECK(c_unknown == c_plain, "chunk unknown: charge %lld, whole prompt %lld",
          (long long)c_unknown, (long long)c_plain);

    int64_t budget = c_plain * 6 / 5;
    static outcome o_plain, o_keep, o_tight, o_free;
    run(m, tok, plain, budget, &o_plain);
    run(m, tok, keep, budget, &o_keep);
    run(m, tok, keep, c_keep * 3, &o_tight); /* a few prompts at a time, beside decodes */
    run(m, tok, keep, 0, &o_free);
    /* the budget changes which prompts share a step (and so how chunks are cut into pieces),
     * not where the compressions happen: the same greedy ids */
    CHECK(o_tight.st.running_max < N_REQ, "tight budget: %d at once", o_tight.st.running_max);
    /* every compression point is at a multiple of the chunk, and there are P / CHUNK of them
     * per request (the last chunk ends in the prefill-end step instead) */
    const outcome *runs[] = {&o_keep, &o_tight, &o_free};
    for (int k = 0; k < 3; k++) {
        const fake_group_log *lg = &runs[k]->log;
        CHECK(lg->n_chunk_steps == N_REQ * ((P - 1) / CHUNK), "run %d: %d chunk steps, want %d", k,
              lg->n_chunk_steps, N_REQ * ((P - 1) / CHUNK));
        for (int i = 0; i < lg->n_chunk_steps && i < 1024; i++)
            CHECK(lg->chunk_pos[i] % CHUNK == 0, "run %d: a chunk step after %d tokens", k,
                  lg->chunk_pos[i]);
    }
    CHECK(o_plain.log.n_chunk_steps == 0, "without prefill_keep: %d chunk steps",
          o_plain.log.n_chunk_steps);
    for (int i = 0; i < N_REQ; i++) {
        CHECK(o_keep.b.res[i].n_ids == o_free.b.res[i].n_ids &&
                  memcmp(o_keep.b.res[i].ids, o_free.b.res[i].ids,
                         sizeof(int32_t) * (size_t)o_keep.b.res[i].n_ids) == 0,
              "request %d: ids under the budget differ from the unbudgeted run", i);
        CHECK(o_tight.b.res[i].n_ids == o_free.b.res[i].n_ids &&
                  memcmp(o_tight.b.res[i].ids, o_free.b.res[i].ids,
                         sizeof(int32_t) * (size_t)o_tight.b.res[i].n_ids) == 0,
              "request %d: ids under the tight budget differ from the unbudgeted run", i);
    }
    /* without: one prompt at a time, beside at most 2 decoding (each charged B + N entries) */
    CHECK(o_plain.st.running_max <= 3, "without prefill_keep %d ran at once (budget for 1.2)",
          o_plain.st.running_max);
    CHECK(o_keep.st.running_max == N_REQ, "with prefill_keep only %d of %d ran at once",
          o_keep.st.running_max, N_REQ);
    tok_free(tok);
    model_free(m);
    TEST_END();
}
