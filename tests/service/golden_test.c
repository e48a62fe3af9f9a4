/* Greedy ids through the gRPC service with 1, 2 and 4 workers equal the golden ids of
 * shared/models/README.md and the single-process engine (gen_run), with and without KV
 * compression: compressed generations must not depend on the worker count either. Uses the
 * C client's streaming path (chunks are concatenated and checked against Complete.output_ids). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "engine/generate.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

typedef struct gcase {
    const char *name;
    int use_ids; /* 1: send the golden prompt ids instead of text */
    const char *prompt;
    int max_tokens;
    const char *method; /* NULL = full */
    int budget;
    const char *k1, *v1; /* one extra kv parameter */
    const int32_t *golden;
    int n_golden;
} gcase;

static const gcase k_cases[] = {
    {"golden1 text", 0, "Once upon a time", 60, NULL, 0, NULL, NULL, tu_goldens[0].ids, 60},
    {"golden1 ids", 1, NULL, 60, NULL, 0, NULL, NULL, tu_goldens[0].ids, 60},
    {"golden2 text", 0, "Lily and Ben went to the park. They saw a", 40, NULL, 0, NULL, NULL,
     tu_goldens[1].ids, 40},
    {"ems B=16", 0, "Once upon a time", 60, "ems", 16, NULL, NULL, NULL, 0},
    {"ems B=12 int8", 0, "Lily and Ben went to the park. They saw a", 48, "ems", 12, "quant",
     "int8", NULL, 0},
    {"h2o B=16", 0, "Once upon a time", 60, "h2o", 16, NULL, NULL, NULL, 0},
    {"snapkv B=12", 0, "Lily and Ben went to the park. They saw a", 48, "snapkv", 12, NULL, NULL,
     NULL, 0},
    {"tova B=16", 0, "Once upon a time", 50, "tova", 16, NULL, NULL, NULL, 0},
};
#define N_CASES (int)(sizeof k_cases / sizeof k_cases[0])

static int32_t g_ref[N_CASES][512];
static int g_ref_n[N_CASES];
static int64_t g_ref_kv[N_CASES];

/* The single-process engine's answer for each case. */
static void compute_refs(void)
{
    char err[256];
    model *m = NULL;
    tokenizer *tok = NULL;
    em_status st = model_load(svc_model(), &m, err, sizeof err);
    REQUIRE(st == EM_OK, "model_load: %s", err);
    st = tok_create(m->gguf, &tok, err, sizeof err);
    REQUIRE(st == EM_OK, "tok_create: %s", err);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = 1, .max_batch_tokens = 256};
    engine *e = NULL;
    st = engine_create(m, &sd, &eo, &e);
    REQUIRE(st == EM_OK, "engine_create: %s", em_status_str(st));
    for (int c = 0; c < N_CASES; c++) {
        const gcase *k = &k_cases[c];
        int32_t ids[512];
        int n = 0;
        if (k->use_ids) {
            n = tu_goldens[0].n_prompt;
            memcpy(ids, tu_goldens[0].prompt_ids, sizeof(int32_t) * (size_t)n);
        } else {
            st = tok_encode(tok, k->prompt, strlen(k->prompt), 1, ids, 512, &n);
            REQUIRE(st == EM_OK, "%s: tok_encode: %s", k->name, em_status_str(st));
        }
        gen_params gp;
        gen_params_default(&gp);
        gp.sp.temperature = 0;
        gp.stop.max_tokens = k->max_tokens;
        if (k->method) {
            char b[16];
            snprintf(b, sizeof b, "%d", k->budget);
            st = ems_config_set(&gp.kv, "method", k->method, err, sizeof err);
            if (st == EM_OK) {
                st = ems_config_set(&gp.kv, "budget", b, err, sizeof err);
            }
            if (st == EM_OK && k->k1) {
                st = ems_config_set(&gp.kv, k->k1, k->v1, err, sizeof err);
            }
            if (st == EM_OK) {
                st = ems_config_validate(&gp.kv, err, sizeof err);
            }
            REQUIRE(st == EM_OK, "%s: kv config: %s", k->name, err);
        }
        gen_result res;
        st = gen_run(e, tok, ids, n, &gp, NULL, NULL, &res);
        REQUIRE(st == EM_OK, "%s: gen_run: %s", k->name, em_status_str(st));
        memcpy(g_ref[c], res.ids, sizeof(int32_t) * (size_t)res.n_ids);
        g_ref_n[c] = res.n_ids;
        g_ref_kv[c] = (int64_t)res.kv_entries;
        gen_result_free(&res);
    }
    engine_free(e);
    tok_free(tok);
    model_free(m);
}

static int same(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && memcmp(a, b, sizeof(int32_t) * (size_t)na) == 0;
}

static void print_ids(const char *what, const int32_t *a, int n)
{
    fprintf(stderr, "  %s (%d):", what, n);
    for (int i = 0; i < n; i++) {
        fprintf(stderr, " %d", a[i]);
    }
    fprintf(stderr, "\n");
}

static void run_case(coord_client *cl, int c, int workers)
{
    const gcase *k = &k_cases[c];
    coord_client_req rq;
    coord_client_result res;
    char budget[16];
    memset(&rq, 0, sizeof rq);
    rq.text = k->use_ids ? NULL : k->prompt;
    rq.ids = tu_goldens[0].prompt_ids;
    rq.n_ids = tu_goldens[0].n_prompt;
    rq.max_tokens = k->max_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 60000;
    rq.kv_method = k->method;
    rq.kv_budget = k->budget;
    const char *keys[1] = {k->k1}, *vals[1] = {k->v1};
    rq.kv_keys = keys;
    rq.kv_vals = vals;
    rq.n_kv = k->k1 ? 1 : 0;
    (void)budget;
    coord_client_generate(cl, &rq, &res);
    int before = tu_failures;
    CHECK(res.status == GRPC_STATUS_OK && res.got_complete, "%s, %d workers: status %d %s", k->name,
          workers, res.status, res.message);
    if (res.status != GRPC_STATUS_OK || !res.got_complete) {
        coord_client_result_free(&res);
        return;
    }
    CHECK(same(res.ids, res.n_ids, res.output_ids, res.n_output),
          "%s, %d workers: streamed ids differ from Complete.output_ids", k->name, workers);
    int like_engine = same(res.output_ids, res.n_output, g_ref[c], g_ref_n[c]);
    CHECK(like_engine, "%s, %d workers: ids differ from the single-process engine", k->name,
          workers);
    if (!like_engine) {
        print_ids("service", res.output_ids, res.n_output);
        print_ids("engine ", g_ref[c], g_ref_n[c]);
    }
    int like_golden = !k->golden || same(res.output_ids, res.n_output, k->golden, k->n_golden);
    CHECK(like_golden, "%s, %d workers: ids differ from the golden ids", k->name, workers);
    if (!like_golden) {
        print_ids("service", res.output_ids, res.n_output);
        print_ids("golden ", k->golden, k->n_golden);
    }
    CHECK(!k->method || res.kv_entries_kept < res.kv_entries_full,
          "%s, %d workers: no compression (kv %lld of %lld)", k->name, workers,
          (long long)res.kv_entries_kept, (long long)res.kv_entries_full);
    CHECK(res.kv_entries_kept == g_ref_kv[c],
          "%s, %d workers: kv entries %lld, single process "
          "%lld",
          k->name, workers, (long long)res.kv_entries_kept, (long long)g_ref_kv[c]);
    printf("%-14s %d worker(s): %s (%d ids, kv %lld/%lld, \"%.40s...\")\n", k->name, workers,
           tu_failures > before ? "FAIL" : "ok", res.n_output, (long long)res.kv_entries_kept,
           (long long)res.kv_entries_full, res.text);
    coord_client_result_free(&res);
}

int main(void)
{
    compute_refs();
    for (int c = 0; c < 3; c++) { /* the engine itself must match the goldens */
        REQUIRE(same(g_ref[c], g_ref_n[c], k_cases[c].golden, k_cases[c].n_golden),
                "%s: the single-process engine is off the goldens", k_cases[c].name);
    }
    grpc_init();
    static const int k_workers[] = {1, 2, 4};
    for (int w = 0; w < 3; w++) {
        int nw = k_workers[w];
        svc s;
        if (svc_start(&s, nw, NULL) != EM_OK) {
            CHECK(0, "service with %d workers did not start", nw);
            continue;
        }
        coord_client *cl = coord_client_create(s.addr);
        coord_client_info info;
        REQUIRE(coord_client_server_info(cl, &info) == EM_OK, "%d workers: GetServerInfo", nw);
        CHECK(info.serving == 1 && info.worker_count == nw, "%d workers: serving %d, count %d", nw,
              info.serving, info.worker_count);
        CHECK(info.heads_per_worker == 4 / nw, "%d workers: %d heads per worker", nw,
              info.heads_per_worker);
        for (int r = 0; r < nw; r++) {
            CHECK(info.kv_head0[r] == r * (4 / nw) && info.n_kv_heads[r] == 4 / nw,
                  "%d workers: worker %d holds heads %d + %d", nw, r, info.kv_head0[r],
                  info.n_kv_heads[r]);
            /* memory per worker ~ 1/N of the layer weights */
            CHECK(r == 0 || (info.weight_bytes[r] > 0 &&
                             info.weight_bytes[r] <= info.weight_bytes[0] + 4096),
                  "%d workers: worker %d holds %lld weight bytes, worker 0 %lld", nw, r,
                  (long long)info.weight_bytes[r], (long long)info.weight_bytes[0]);
        }
        printf("%d worker(s): layer weight bytes per worker %lld\n", nw,
               (long long)info.weight_bytes[0]);
        for (int c = 0; c < N_CASES; c++) {
            run_case(cl, c, nw);
        }
        coord_client_free(cl);
        int st = svc_stop(&s);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "emserve exit status %d", st);
    }
    grpc_shutdown();
    TEST_END();
}
