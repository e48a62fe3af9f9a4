/* Streams through the service: 40 concurrent streams with mixed prompts, lengths and per-request
 * KV settings all finish with the single-process engine's ids; Abort ends a stream with
 * finish_reason "abort"; a client that disconnects mid-stream, or whose deadline passes, frees
 * its slot (checked with --max-seqs 1: the next request can only run if the slot came back). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "engine/generate.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

static const char *const k_prompts[] = {"Once upon a time",
                                        "Lily and Ben went to the park. They saw a",
                                        "The cat sat on the", "Tom had a red ball. He"};
#define N_PROMPTS 4
#define REF_MAX   64
#define N_STREAMS 40

static int32_t g_ref[N_PROMPTS][2][REF_MAX]; /* [prompt][0 full, 1 ems B=16] */
static int g_ref_n[N_PROMPTS][2];

/* Long prompts (prefilled in several chunks and steps by the service, in one by gen_run). */
#define N_LONG   3
#define LONG_GEN 24
static const int k_long_len[N_LONG] = {300, 420, 517};
static int32_t g_long_prompt[N_LONG][600];
static int32_t g_long_ref[N_LONG][LONG_GEN];
static int g_long_ref_n[N_LONG];

static void compute_refs(void)
{
    char err[256];
    model *m = NULL;
    tokenizer *tok = NULL;
    engine *e = NULL;
    em_status st = model_load(svc_model(), &m, err, sizeof err);
    REQUIRE(st == EM_OK, "model_load: %s", err);
    st = tok_create(m->gguf, &tok, err, sizeof err);
    REQUIRE(st == EM_OK, "tok_create: %s", err);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 256};
    st = engine_create(m, &sd, &eo, &e);
    REQUIRE(st == EM_OK, "engine_create: %s", em_status_str(st));
    for (int p = 0; p < N_PROMPTS; p++) {
        for (int c = 0; c < 2; c++) {
            int32_t ids[256];
            int n = 0;
            st = tok_encode(tok, k_prompts[p], strlen(k_prompts[p]), 1, ids, 256, &n);
            REQUIRE(st == EM_OK, "tok_encode: %s", em_status_str(st));
            gen_params gp;
            gen_params_default(&gp);
            gp.sp.temperature = 0;
            gp.stop.max_tokens = REF_MAX;
            if (c == 1) {
                st = ems_config_set(&gp.kv, "method", "ems", err, sizeof err);
                if (st == EM_OK) {
                    st = ems_config_set(&gp.kv, "budget", "16", err, sizeof err);
                }
                REQUIRE(st == EM_OK, "kv config: %s", err);
            }
            gen_result res;
            st = gen_run(e, tok, ids, n, &gp, NULL, NULL, &res);
            REQUIRE(st == EM_OK, "gen_run: %s", em_status_str(st));
            memcpy(g_ref[p][c], res.ids, sizeof(int32_t) * (size_t)res.n_ids);
            g_ref_n[p][c] = res.n_ids;
            gen_result_free(&res);
        }
    }
    static const char *story =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
        "park with her friend Ben. One day, they saw a big red ball under a tree. ";
    int32_t ids[128];
    int n = 0;
    st = tok_encode(tok, story, strlen(story), 0, ids, 128, &n);
    REQUIRE(st == EM_OK, "tok_encode: %s", em_status_str(st));
    for (int l = 0; l < N_LONG; l++) {
        g_long_prompt[l][0] = 1;
        for (int i = 1; i < k_long_len[l]; i++) {
            g_long_prompt[l][i] = ids[(i - 1 + 7 * l) % n];
        }
        gen_params gp;
        gen_params_default(&gp);
        gp.sp.temperature = 0;
        gp.stop.max_tokens = LONG_GEN;
        gen_result res;
        st = gen_run(e, tok, g_long_prompt[l], k_long_len[l], &gp, NULL, NULL, &res);
        REQUIRE(st == EM_OK, "gen_run: %s", em_status_str(st));
        memcpy(g_long_ref[l], res.ids, sizeof(int32_t) * (size_t)res.n_ids);
        g_long_ref_n[l] = res.n_ids;
        gen_result_free(&res);
    }
    engine_free(e);
    tok_free(tok);
    model_free(m);
}

typedef struct long_prompt_job {
    coord_client *cl;
    int l, fail;
} long_prompt_job;

static void *long_prompt_run(void *p)
{
    long_prompt_job *j = p;
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.ids = g_long_prompt[j->l];
    rq.n_ids = k_long_len[j->l];
    rq.max_tokens = LONG_GEN;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 90000;
    coord_client_generate(j->cl, &rq, &res);
    int want = g_long_ref_n[j->l];
    if (res.status != GRPC_STATUS_OK || res.n_output != want ||
        memcmp(res.output_ids, g_long_ref[j->l], sizeof(int32_t) * (size_t)want) != 0) {
        fprintf(stderr, "long prompt %d (%d tokens): status %d, %d ids (want %d)\n", j->l,
                k_long_len[j->l], res.status, res.n_output, want);
        j->fail = 1; /* checked by the main thread (CHECK counts are not thread-safe) */
    }
    coord_client_result_free(&res);
    return NULL;
}

/* Long prompts at once: prefill is split into chunks across steps and shares steps with the
 * other requests' chunks; the ids must still equal gen_run's (one prefill call). */
static void test_long_prompts(coord_client *cl)
{
    pthread_t th[N_LONG];
    long_prompt_job jobs[N_LONG];
    int fails = 0;
    for (int l = 0; l < N_LONG; l++) {
        jobs[l] = (long_prompt_job){cl, l, 0};
        REQUIRE(pthread_create(&th[l], NULL, long_prompt_run, &jobs[l]) == 0, "thread");
    }
    for (int l = 0; l < N_LONG; l++) {
        pthread_join(th[l], NULL); /* each call has a deadline */
        CHECK(!jobs[l].fail, "long prompt %d (%d tokens) differs from gen_run", l, k_long_len[l]);
        fails += jobs[l].fail;
    }
    printf("long prompts (300/420/517 tokens, chunked prefill): %s\n", fails ? "FAIL" : "ok");
}

typedef struct job {
    coord_client *cl;
    int idx, prompt, ems, max_tokens;
    int fail;
} job;

static void *stream_job(void *p)
{
    job *j = p;
    coord_client_req rq;
    coord_client_result res;
    char id[32];
    memset(&rq, 0, sizeof rq);
    snprintf(id, sizeof id, "stream-%d", j->idx);
    rq.request_id = id;
    rq.text = k_prompts[j->prompt];
    rq.max_tokens = j->max_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 90000;
    if (j->ems) {
        rq.kv_method = "ems";
        rq.kv_budget = 16;
    }
    coord_client_generate(j->cl, &rq, &res);
    const int32_t *ref = g_ref[j->prompt][j->ems];
    int want =
        g_ref_n[j->prompt][j->ems] < j->max_tokens ? g_ref_n[j->prompt][j->ems] : j->max_tokens;
    if (res.status != GRPC_STATUS_OK || !res.got_complete || res.n_output != want ||
        res.n_ids != want || memcmp(res.output_ids, ref, sizeof(int32_t) * (size_t)want) != 0 ||
        memcmp(res.ids, ref, sizeof(int32_t) * (size_t)want) != 0) {
        fprintf(stderr, "stream %d (prompt %d, ems %d, max %d): status %d %s, %d ids (want %d)\n",
                j->idx, j->prompt, j->ems, j->max_tokens, res.status, res.message, res.n_output,
                want);
        j->fail = 1; /* checked by the main thread */
    }
    coord_client_result_free(&res);
    return NULL;
}

static void test_concurrent(coord_client *cl)
{
    pthread_t th[N_STREAMS];
    job jobs[N_STREAMS];
    for (int i = 0; i < N_STREAMS; i++) {
        jobs[i] = (job){cl, i, i % N_PROMPTS, (i / N_PROMPTS) % 2, 8 + (i * 7) % 57, 0};
        REQUIRE(pthread_create(&th[i], NULL, stream_job, &jobs[i]) == 0, "thread %d", i);
    }
    int fails = 0;
    for (int i = 0; i < N_STREAMS; i++) {
        pthread_join(th[i], NULL); /* each call has a deadline */
        fails += jobs[i].fail;
    }
    CHECK(fails == 0, "%d of %d concurrent streams differ from gen_run", fails, N_STREAMS);
    printf("%d concurrent streams: %d failed\n", N_STREAMS, fails);
}

/* ---- abort ----------------------------------------------------------------------------------- */

typedef struct long_job {
    coord_client *cl;
    const char *id;
    volatile int got_chunk;
    int cancel_after; /* > 0: the client cancels after this many chunks */
    int n_seen;
    long timeout_ms;
    coord_client_result res;
} long_job;

static int long_chunk(void *user, const int32_t *ids, int n, const char *text)
{
    long_job *j = user;
    (void)ids;
    (void)n;
    (void)text;
    j->n_seen++;
    __atomic_store_n(&j->got_chunk, 1, __ATOMIC_SEQ_CST);
    return j->cancel_after > 0 && j->n_seen >= j->cancel_after;
}

static void *long_run(void *p)
{
    long_job *j = p;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.request_id = j->id;
    rq.text = "Once upon a time";
    rq.max_tokens = 1500;
    rq.ignore_eos = 1;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = j->timeout_ms;
    rq.on_chunk = long_chunk;
    rq.user = j;
    coord_client_generate(j->cl, &rq, &j->res);
    return NULL;
}

static void test_abort(coord_client *cl)
{
    long_job j;
    memset(&j, 0, sizeof j);
    j.cl = cl;
    j.id = "abort-me";
    j.timeout_ms = 30000;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, long_run, &j) == 0, "thread");
    double t0 = em_now_s();
    while (!__atomic_load_n(&j.got_chunk, __ATOMIC_SEQ_CST) && em_now_s() - t0 < 30.0) {
        usleep(1000);
    }
    int found = 0;
    em_status ast = coord_client_abort(cl, "abort-me", &found);
    pthread_join(t, NULL); /* bounded by the call's deadline */
    CHECK(ast == EM_OK && found && j.res.status == GRPC_STATUS_OK &&
              strcmp(j.res.finish_reason, "abort") == 0 && j.res.n_output < 1500 &&
              j.res.n_output == j.res.n_ids,
          "abort: found %d status %d reason '%s' %d ids", found, j.res.status, j.res.finish_reason,
          j.res.n_output);
    CHECK(coord_client_abort(cl, "no-such-request", &found) == EM_OK && !found,
          "abort of an unknown id");
    printf("abort: after %d tokens\n", j.res.n_output);
    coord_client_result_free(&j.res);
}

/* Waits for running == queued == 0; 1 when it happened within 10 s. */
static int wait_idle(coord_client *cl)
{
    for (int i = 0; i < 400; i++) {
        coord_client_info info;
        if (coord_client_server_info(cl, &info) == EM_OK && info.running == 0 && info.queued == 0) {
            return 1;
        }
        usleep(25000);
    }
    return 0;
}

/* With --max-seqs 1, a short request only completes if the previous request's slot was freed. */
static void check_next_request_runs(coord_client *cl, const char *what)
{
    CHECK(wait_idle(cl), "not idle within 10 s after %s", what);
    CHECK(svc_golden_ok(cl, 5, what), "the next request did not run after %s", what);
}

static void test_disconnect(coord_client *cl)
{
    /* 1. the client cancels mid-stream */
    long_job j;
    memset(&j, 0, sizeof j);
    j.cl = cl;
    j.id = "disconnect";
    j.cancel_after = 3;
    j.timeout_ms = 90000;
    long_run(&j);
    CHECK(j.res.status == GRPC_STATUS_CANCELLED, "disconnect: client saw status %d", j.res.status);
    coord_client_result_free(&j.res);
    check_next_request_runs(cl, "a client disconnect");
    /* 2. the deadline passes mid-stream */
    memset(&j, 0, sizeof j);
    j.cl = cl;
    j.id = "deadline";
    j.timeout_ms = 300;
    long_run(&j);
    CHECK(j.res.status == GRPC_STATUS_DEADLINE_EXCEEDED, "deadline: status %d", j.res.status);
    coord_client_result_free(&j.res);
    check_next_request_runs(cl, "a passed deadline");
}

int main(void)
{
    compute_refs();
    grpc_init();
    svc s;
    REQUIRE(svc_start(&s, 2, NULL) == EM_OK, "service did not start");
    coord_client *cl = coord_client_create(s.addr);
    test_concurrent(cl);
    test_long_prompts(cl);
    test_abort(cl);
    CHECK(wait_idle(cl), "not idle within 10 s");
    coord_client_free(cl);
    CHECK(svc_alive(&s), "the service died");
    svc_stop(&s);

    static const char *const one_slot[] = {"--max-seqs", "1", NULL};
    REQUIRE(svc_start(&s, 2, one_slot) == EM_OK, "service (--max-seqs 1) did not start");
    cl = coord_client_create(s.addr);
    test_disconnect(cl);
    coord_client_free(cl);
    CHECK(svc_alive(&s), "the service died");
    svc_stop(&s);
    grpc_shutdown();
    TEST_END();
}
