/* Issue 12 item 5, re-expressed. (A) A bounded queue: with --max-seqs 1 --max-queue 1, one
 * request runs, one waits, and a third is RESOURCE_EXHAUSTED at once (100 requests against
 * --max-seqs 2 used to be queued without limit); after the two end, requests are served again.
 * (B) SO_REUSEPORT off: a second coordinator on the first one's port fails to start (two could
 * bind it and split the connections). (The 4 MiB message cap: bad_input_test, worker_proto_test.)
 * Every wait has a limit. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

typedef struct job {
    coord_client *cl;
    volatile int n_chunks, stop;
    coord_client_result res;
} job;

static int on_chunk(void *user, const int32_t *ids, int n, const char *text)
{
    job *j = user;
    (void)ids;
    (void)n;
    (void)text;
    __atomic_add_fetch(&j->n_chunks, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&j->stop, __ATOMIC_SEQ_CST); /* non-zero: cancel the call */
}

static void *run_job(void *p)
{
    job *j = p;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = 2000;
    rq.ignore_eos = 1;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 60000;
    rq.on_chunk = on_chunk;
    rq.user = j;
    coord_client_generate(j->cl, &rq, &j->res);
    return NULL;
}

/* Waits up to 30 s until GetServerInfo shows `running` running and `queued` queued. */
static int wait_counts(coord_client *cl, int running, int queued)
{
    double t0 = em_now_s();
    while (em_now_s() - t0 < 30) {
        coord_client_info info;
        if (coord_client_server_info(cl, &info) == 0 && info.running == running &&
            info.queued == queued) {
            return 1;
        }
        usleep(20000);
    }
    return 0;
}

static void test_queue(void)
{
    const char *extra[] = {"--max-seqs", "1", "--max-queue", "1", NULL};
    svc s;
    REQUIRE(svc_start(&s, 1, extra) == 0, "service did not start");
    coord_client *cl = coord_client_create(s.addr);
    job j[2];
    pthread_t t[2];
    memset(j, 0, sizeof j);
    for (int i = 0; i < 2; i++) {
        j[i].cl = cl;
        REQUIRE(pthread_create(&t[i], NULL, run_job, &j[i]) == 0, "thread");
    }
    CHECK(wait_counts(cl, 1, 1), "not 1 running + 1 queued within 30 s");
    coord_client_result res;
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.text = "Once upon a time";
    rq.max_tokens = 4;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 10000;
    grpc_status_code st = coord_client_generate(cl, &rq, &res);
    printf("third request with 1 running + 1 queued: status %d (%s)\n", st, res.message);
    CHECK(st == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(res.message, "--max-queue"),
          "third request: status %d (%s), want RESOURCE_EXHAUSTED", st, res.message);
    coord_client_result_free(&res);
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&j[i].stop, 1, __ATOMIC_SEQ_CST); /* cancel at the next chunk */
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL); /* bounded by the call's deadline */
        coord_client_result_free(&j[i].res);
    }
    CHECK(wait_counts(cl, 0, 0), "the cancelled requests were not released within 30 s");
    CHECK(svc_golden_ok(cl, 20, "after the queue drained"), "golden ids");
    coord_client_free(cl);
    svc_stop(&s);
}

static void test_reuseport(void)
{
    svc a, b;
    REQUIRE(svc_start(&a, 1, NULL) == 0, "first service did not start");
    const char *extra[] = {"--listen", a.addr, NULL};
    int rc = svc_start(&b, 1, extra);
    CHECK(rc != 0, "a second coordinator started on %s (SO_REUSEPORT)", a.addr);
    if (rc == 0) {
        svc_stop(&b);
    }
    coord_client *cl = coord_client_create(a.addr);
    CHECK(svc_golden_ok(cl, 20, "first coordinator after the second one's attempt"), "golden");
    coord_client_free(cl);
    svc_stop(&a);
}

int main(void)
{
    svc_model();
    grpc_init();
    test_queue();
    test_reuseport();
    grpc_shutdown();
    TEST_END();
}
