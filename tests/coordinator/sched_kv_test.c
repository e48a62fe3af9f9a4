/* The scheduler's KV memory budget, driven through the real scheduler, engine and caches on
 * stories260K with an in-process worker group (fake_group.h; steps are synchronous, so every
 * outcome below is deterministic -- no timing is asserted):
 *   - admission never overcommits: a budget that fits 2 full-cache requests (of 40 + 200 tokens)
 *     runs 2 at once and queues the rest, and no step ever holds more than the budget;
 *   - with EMS (B = 16) the same budget runs many more at once;
 *   - greedy ids are the same with and without a budget;
 *   - with --kv-reserve 0 (overcommit) memory runs out mid-generation: sequences are preempted by
 *     recompute (full, EMS and EMS + int4) and every one ends with the ids of an unpreempted run;
 *   - a request that can never fit fails with RESOURCE_EXHAUSTED naming --kv-memory, while the
 *     others are served;
 *   - every held-bytes report equals ems_cache_held_bytes; queue time and preemptions are
 *     counted;
 *   - a step that carries decode tokens carries at most MIXED prompt tokens (mixed_prefill), and
 *     the prompts split that way (P > MIXED) give the same ids. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/metrics.h"
#include "coordinator/sched.h"
#include "ems/footprint.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/coordinator/fake_group.h"
#include "tests/coordinator/sched_board.h"
#include "tests/testutil/testutil.h"

enum { P = 40, GEN = 200, MAX_REQ = SB_MAX_REQ, BATCH = 256, SLOTS = 32, MIXED = 16 };
_Static_assert(GEN <= SB_MAX_IDS, "the board keeps every generated id");

typedef struct scenario {
    const char *name;
    int n;
    const char *kv[MAX_REQ]; /* per request */
    int64_t kv_memory;
    double overcommit;
    int mixed; /* mixed_prefill (0: MIXED) */
} scenario;

typedef struct outcome {
    sb_board b;
    coord_sched_stats st;
    fake_group_log log;
} outcome;

/* The per-request histograms and the compression counters after the 8 requests of the "mix"
 * scenario (4 ems budget=16, 2 of them int4; 4 full; every one generates GEN tokens), in the
 * stats and the text. */
static void check_request_metrics(const outcome *o, const char *text)
{
    const coord_sched_stats *st = &o->st;
    CHECK(st->e2e.n == 8 && st->prefill.n == 8 && st->decode.n == 8 && st->prompt_len.n == 8 &&
              st->gen_len.n == 8,
          "per-request histograms: e2e %lld prefill %lld decode %lld prompt %lld gen %lld",
          (long long)st->e2e.n, (long long)st->prefill.n, (long long)st->decode.n,
          (long long)st->prompt_len.n, (long long)st->gen_len.n);
    CHECK(st->gen_len.sum == 8.0 * GEN, "generation length sum %g", st->gen_len.sum);
    CHECK(st->finished[COORD_FIN_LENGTH] == 8, "%lld finished by length",
          (long long)st->finished[COORD_FIN_LENGTH]);
    const coord_kv_counts *ems = &st->kv_counts[EMS_METHOD_EMS];
    const coord_kv_counts *full = &st->kv_counts[EMS_METHOD_FULL];
    CHECK(ems->evicted + ems->merged > 0 && ems->quantized > 0 && ems->seconds > 0,
          "ems: %lld evicted, %lld merged, %lld quantized, %g s", (long long)ems->evicted,
          (long long)ems->merged, (long long)ems->quantized, ems->seconds);
    CHECK(full->evicted == 0 && full->merged == 0 && full->quantized == 0,
          "the full cache compressed: %lld evicted, %lld merged", (long long)full->evicted,
          (long long)full->merged);
    char want[160];
    snprintf(want, sizeof want, "emserve_kv_entries_evicted_total{method=\"ems\"} %lld\n",
             (long long)ems->evicted);
    CHECK(strstr(text, want) != NULL, "metrics lack '%s'", want);
    CHECK(strstr(text, "emserve_request_success_total{finished_reason=\"length\"} 8\n") != NULL,
          "metrics lack the 8 requests finished by length");
    CHECK(strstr(text, "emserve_e2e_request_latency_seconds_count 8\n") != NULL,
          "metrics lack the e2e latency of 8 requests");
}

/* Runs every request of sc at once (queued before the first step) to completion. */
static void run(const model *m, const tokenizer *tok, const scenario *sc, outcome *o)
{
    char err[256];
    coord_group *g;
    REQUIRE(fake_group_create(tu_model_path(1), BATCH, SLOTS, &g, err, sizeof err) == EM_OK, "%s",
            err);
    memset(o, 0, sizeof *o);
    sb_board_init(&o->b);
    coord_sched_opts so = {.max_batch_tokens = BATCH,
                           .max_slots = SLOTS,
                           .prefill_chunk = BATCH,
                           .mixed_prefill = sc->mixed > 0 ? sc->mixed : MIXED,
                           .kv_memory = sc->kv_memory,
                           .kv_overcommit = sc->overcommit};
    fake_group_hold(g, 1);
    coord_sched *s;
    REQUIRE(coord_sched_start(g, m, tok, &so, &s) == EM_OK, "sched start");
    fake_group_wait_held(g);
    sb_user users[MAX_REQ];
    for (int i = 0; i < sc->n; i++) {
        users[i] = (sb_user){&o->b, i};
        coord_sched_submit(s, sb_make_req(m, i, P, GEN, sc->kv[i], &users[i]));
    }
    fake_group_hold(g, 0);
    sb_board_wait(&o->b, sc->n);
    coord_sched_get_stats(s, &o->st);
    coord_sched_stop(s);
    fake_group_get_log(g, &o->log);
    fake_group_free(g);
    CHECK(o->log.held_mismatch == 0, "%s: %d held-bytes reports differ from the caches", sc->name,
          o->log.held_mismatch);
    CHECK(o->st.kv_peak == o->log.peak_max, "%s: stats peak %lld, steps' peak %lld", sc->name,
          (long long)o->st.kv_peak, (long long)o->log.peak_max);
    CHECK(o->log.mixed_prefill_max <= (sc->mixed > 0 ? sc->mixed : MIXED),
          "%s: a step with decodes carried %d prompt tokens", sc->name, o->log.mixed_prefill_max);
    if (sc->kv_memory > 0) {
        CHECK(o->log.peak_max <= sc->kv_memory, "%s: a step held %lld bytes, budget %lld", sc->name,
              (long long)o->log.peak_max, (long long)sc->kv_memory);
    }
    printf("%s: running at most %d, %d preemptions, peak %lld of %lld bytes, %d steps (%d with "
           "decode and prompt tokens, at most %d of them prompt)\n",
           sc->name, o->log.running_max, (int)o->st.preemptions, (long long)o->log.peak_max,
           (long long)sc->kv_memory, o->log.steps, o->log.mixed_steps, o->log.mixed_prefill_max);
}

static int n_ok(const outcome *o, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        k += o->b.res[i].ok && o->b.res[i].n_ids == GEN;
    }
    return k;
}

static void check_same_ids(const char *what, const outcome *a, const outcome *b, int n)
{
    for (int i = 0; i < n; i++) {
        CHECK(a->b.res[i].n_ids == b->b.res[i].n_ids &&
                  memcmp(a->b.res[i].ids, b->b.res[i].ids,
                         sizeof(int32_t) * (size_t)a->b.res[i].n_ids) == 0,
              "%s: request %d's ids differ from the unbudgeted run", what, i);
    }
}

int main(void)
{
    const char *path = tu_model_path(0);
    char err[256];
    model *m;
    tokenizer *tok;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "%s", err);
    REQUIRE(tok_create(m->gguf, &tok, err, sizeof err) == EM_OK, "%s", err);

    /* A budget that fits two full-cache requests (their peak: every token, every head). */
    ems_config full;
    ems_config_default(&full);
    ems_footprint_shape sh = {m->hp.n_layer, m->hp.head_dim, m->hp.n_kv_head, m->hp.n_kv_head, 0};
    int64_t one = (int64_t)ems_footprint_peak_bytes(&full, &sh, P, P + GEN - 1, 1);
    int64_t two = 2 * one + one / 2;

    static outcome ref_full, adm_full, ref_ems, adm_ems, ref_mix, pre_mix, big, unsplit;
    scenario s_ref_full = {"full, no budget", 5, {0}, 0, 0, 0};
    scenario s_adm_full = {"full, budget for 2", 5, {0}, two, 0, 0};
    for (int i = 0; i < 5; i++) {
        s_ref_full.kv[i] = s_adm_full.kv[i] = "method=full";
    }
    run(m, tok, &s_ref_full, &ref_full);
    run(m, tok, &s_adm_full, &adm_full);
    CHECK(ref_full.log.running_max == 5, "no budget: %d at once", ref_full.log.running_max);
    CHECK(n_ok(&adm_full, 5) == 5, "budget for 2: %d of 5 completed", n_ok(&adm_full, 5));
    CHECK(adm_full.log.running_max == 2 && adm_full.st.running_max == 2,
          "budget for 2 full requests ran %d (stats %d) at once", adm_full.log.running_max,
          adm_full.st.running_max);
    CHECK(adm_full.st.preemptions == 0, "reserve 1 never preempts (%lld)",
          (long long)adm_full.st.preemptions);
    CHECK(adm_full.st.queue.n == 5, "queue time recorded %lld times",
          (long long)adm_full.st.queue.n);
    check_same_ids("full, budget", &adm_full, &ref_full, 5);

    scenario s_ref_ems = {"ems B=16, no budget", 12, {0}, 0, 0, 0};
    scenario s_adm_ems = {"ems B=16, budget for 2 full", 12, {0}, two, 0, 0};
    for (int i = 0; i < 12; i++) {
        s_ref_ems.kv[i] = s_adm_ems.kv[i] = "method=ems budget=16";
    }
    run(m, tok, &s_ref_ems, &ref_ems);
    run(m, tok, &s_adm_ems, &adm_ems);
    CHECK(n_ok(&adm_ems, 12) == 12, "ems: %d of 12 completed", n_ok(&adm_ems, 12));
    CHECK(adm_ems.log.running_max >= 6, "ems B=16 ran only %d at once under the budget of 2 full",
          adm_ems.log.running_max);
    check_same_ids("ems, budget", &adm_ems, &ref_ems, 12);
    /* 12 prompts of 40 do not fit one step of 256: the later ones are fed while the first
     * decode, MIXED tokens at a time, with the same ids as when fed whole (mixed_prefill =
     * BATCH: no limit) */
    scenario s_unsplit = s_ref_ems;
    s_unsplit.name = "ems B=16, no budget, prompts fed whole";
    s_unsplit.mixed = BATCH;
    run(m, tok, &s_unsplit, &unsplit);
    CHECK(ref_ems.log.mixed_steps >= 3 && ref_ems.log.mixed_prefill_max == MIXED,
          "ems: %d mixed steps, at most %d prompt tokens", ref_ems.log.mixed_steps,
          ref_ems.log.mixed_prefill_max);
    CHECK(unsplit.log.mixed_prefill_max > MIXED, "unsplit: at most %d prompt tokens",
          unsplit.log.mixed_prefill_max);
    check_same_ids("ems, prompts split", &ref_ems, &unsplit, 12);

    /* Overcommit: admitted on their prompts alone; full caches outgrow the budget. */
    /* small key groups and residual: a head of B + N entries has quantized entries */
#define QUANT "method=ems budget=16 quant=int4 quant.group=4 quant.residual=4"
    static const char *const mix[8] = {"method=full", "method=ems budget=16", "method=full", QUANT,
                                       "method=full", "method=ems budget=16", "method=full", QUANT};
    scenario s_ref_mix = {"mix, no budget", 8, {0}, 0, 0, 0};
    scenario s_pre_mix = {"mix, reserve 0", 8, {0}, two, 1.0, 0};
    for (int i = 0; i < 8; i++) {
        s_ref_mix.kv[i] = s_pre_mix.kv[i] = mix[i];
    }
    run(m, tok, &s_ref_mix, &ref_mix);
    run(m, tok, &s_pre_mix, &pre_mix);
    CHECK(n_ok(&pre_mix, 8) == 8, "mix: %d of 8 completed", n_ok(&pre_mix, 8));
    CHECK(pre_mix.st.preemptions > 0, "reserve 0 never ran out of memory");
    CHECK(pre_mix.log.opens[EMS_METHOD_EMS] > 4 && pre_mix.log.opens[EMS_METHOD_FULL] > 4,
          "recomputes: ems opened %d times, full %d (4 requests each)",
          pre_mix.log.opens[EMS_METHOD_EMS], pre_mix.log.opens[EMS_METHOD_FULL]);
    check_same_ids("preempted", &pre_mix, &ref_mix, 8);
    static char text[1 << 16];
    char want[128];
    size_t len = coord_metrics_render(&pre_mix.st, text, sizeof text);
    CHECK(len > 0 && len + 1 < sizeof text, "metrics text of %zu bytes", len);
    snprintf(want, sizeof want, "emserve_preemptions_total %lld\n",
             (long long)pre_mix.st.preemptions);
    CHECK(strstr(text, want) != NULL, "metrics lack '%s'", want);
    CHECK(strstr(text, "emserve_request_queue_time_seconds_count 8\n") != NULL,
          "metrics lack the queue time of 8 requests");
    snprintf(want, sizeof want, "emserve_kv_memory_budget_bytes %lld\n", (long long)two);
    CHECK(strstr(text, want) != NULL, "metrics lack '%s'", want);
    check_request_metrics(&pre_mix, text);

    /* A request that can never fit fails; the one behind it is served. */
    scenario s_big = {"too big", 2, {"method=full", "method=ems budget=16"}, one / 2, 0, 0};
    run(m, tok, &s_big, &big);
    CHECK(!big.b.res[0].ok && big.b.res[0].status == EM_ENOMEM &&
              strstr(big.b.res[0].message, "--kv-memory") != NULL,
          "too big: ok %d status %d '%s'", big.b.res[0].ok, big.b.res[0].status,
          big.b.res[0].message);
    CHECK(big.b.res[1].ok && big.b.res[1].n_ids == GEN, "the request behind it: ok %d",
          big.b.res[1].ok);
    CHECK(big.st.rejected[COORD_REJ_KV_MEMORY] == 1 && big.st.finished[COORD_FIN_LENGTH] == 1,
          "too big: %lld rejected for KV memory, %lld finished by length",
          (long long)big.st.rejected[COORD_REJ_KV_MEMORY],
          (long long)big.st.finished[COORD_FIN_LENGTH]);

    tok_free(tok);
    model_free(m);
    TEST_END();
}
