/* SmolLM2-135M-Instruct through gRPC with 1, 2 and 3 workers (3 KV heads: 3, 2 + 1, 1 + 1 + 1):
 * greedy ids of every f32 golden prompt (independent NumPy reference, tools/ref/) equal the
 * golden ids over the steps the reference marks stable, and are identical for every worker
 * count over the whole generation (exact tensor parallelism); the chat message "What is 2+2?"
 * gets "The answer to this classic math problem is 4." with 1 and 3 workers. Prints SKIPPED
 * when SmolLM2 is not installed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "model/model.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/smollm2_goldens.h"
#include "tests/testutil/testutil.h"

static int32_t g_first[SG_MAX_RECORDS][SG_MAX_IDS]; /* ids with the first worker count */
static int g_first_n[SG_MAX_RECORDS];

static void run_record(coord_client *cl, const sg_record *r, int idx, int workers, int first)
{
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.ids = r->prompt_ids;
    rq.n_ids = r->n_prompt;
    rq.max_tokens = r->n_greedy;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 120000;
    coord_client_generate(cl, &rq, &res);
    CHECK(res.status == GRPC_STATUS_OK && res.got_complete, "%s, %d workers: status %d %s", r->name,
          workers, res.status, res.message);
    if (res.status == GRPC_STATUS_OK) {
        int same = 0;
        while (same < res.n_output && same < r->n_greedy &&
               res.output_ids[same] == r->greedy[same]) {
            same++;
        }
        CHECK(same >= r->agree_steps, "%s, %d workers: %d leading ids equal the golden, %d stable",
              r->name, workers, same, r->agree_steps);
        if (first) {
            memcpy(g_first[idx], res.output_ids, sizeof(int32_t) * (size_t)res.n_output);
            g_first_n[idx] = res.n_output;
        } else {
            CHECK(res.n_output == g_first_n[idx] &&
                      memcmp(res.output_ids, g_first[idx],
                             sizeof(int32_t) * (size_t)res.n_output) == 0,
                  "%s: %d workers differ from 1 worker", r->name, workers);
        }
        printf("%-14s %d worker(s): %d ids, %d equal the golden (stable %d): \"%.50s\"\n", r->name,
               workers, res.n_output, same, r->agree_steps, res.text);
    }
    coord_client_result_free(&res);
}

static void run_chat(coord_client *cl, int workers)
{
    coord_chat_msg msg = {.role = "user", .content = "What is 2+2?"};
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.messages = &msg;
    rq.n_messages = 1;
    rq.max_tokens = 32;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 120000;
    coord_client_generate(cl, &rq, &res);
    CHECK(res.status == GRPC_STATUS_OK && res.text &&
              strcmp(res.text, "The answer to this classic math problem is 4.") == 0 &&
              strcmp(res.finish_reason, "stop") == 0,
          "chat, %d workers: status %d, finish %s, text '%s'", workers, res.status,
          res.finish_reason, res.text ? res.text : "");
    coord_client_result_free(&res);
}

int main(int argc, char **argv)
{
    const char *path = model_find_default();
    if (!path) {
        printf("SKIPPED: SmolLM2 not installed (scripts/install-deps.sh, or set EMSERVE_MODEL)\n");
        return 0;
    }
    static sg_goldens g;
    REQUIRE(argc > 1 && sg_load(argv[1], &g) == 0, "goldens");
    grpc_init();
    static const int k_workers[] = {1, 2, 3};
    for (int w = 0; w < 3; w++) {
        int nw = k_workers[w];
        svc s;
        const char *extra[] = {"--threads", "1", NULL};
        if (svc_start_model(&s, path, nw, extra) != EM_OK) {
            CHECK(0, "service with %d workers did not start", nw);
            continue;
        }
        coord_client *cl = coord_client_create(s.addr);
        for (int i = 0; i < g.n; i++) {
            if (strcmp(g.rec[i].mode, "f32") == 0)
                run_record(cl, &g.rec[i], i, nw, w == 0);
        }
        if (nw != 2)
            run_chat(cl, nw);
        coord_client_free(cl);
        int st = svc_stop(&s);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "emserve exit status %d", st);
    }
    grpc_shutdown();
    TEST_END();
}
