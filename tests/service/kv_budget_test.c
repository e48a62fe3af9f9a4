/* The KV memory budget through the real service: a coordinator and 2 worker processes
 * (stories260K's 4 KV heads, 2 each), --kv-memory sized for 2 full-cache requests of
 * 40 + 200 tokens per worker. Six such requests sent at once all complete with the same greedy
 * ids; the metrics, fed by the workers' own per-step reports, show that no worker ever held more
 * than the budget and that at most 2 ran at once (upper bounds only: how many overlap depends on
 * when the calls arrive). A request that cannot fit alone gets RESOURCE_EXHAUSTED naming
 * --kv-memory. GetServerInfo's KV fields, sampled while they run: every worker's budget is
 * --kv-memory, it holds 0 < bytes <= budget, and (full-cache requests) exactly what the full
 * cache needs; once all are done, 0 and 0. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "coordinator/client.h"
#include "ems/footprint.h"
#include "model/model.h"
#include "tests/service/svc_harness.h"
#include "tests/testutil/testutil.h"

enum { P = 40, GEN = 200, N_REQ = 6 };

typedef struct call {
    const char *addr;
    int32_t prompt[P];
    int max_tokens;
    coord_client_result res;
} call;

static void *call_main(void *arg)
{
    call *c = arg;
    coord_client *cl = coord_client_create(c->addr);
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.ids = c->prompt;
    rq.n_ids = P;
    rq.max_tokens = c->max_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.ignore_eos = 1;
    rq.timeout_ms = 120000;
    coord_client_generate(cl, &rq, &c->res);
    coord_client_free(cl);
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* Polls GetServerInfo until both workers hold KV bytes (or 60 s); checks the KV fields of that
 * snapshot against the budget. */
static void check_info_running(const char *addr, long long budget)
{
    coord_client *cl = coord_client_create(addr);
    coord_client_info info;
    int seen = 0;
    for (int i = 0; i < 600 && !seen; i++) { /* gently: the server is busy (TSan, 2 cores) */
        seen = coord_client_server_info(cl, &info) == 0 && info.worker_count == 2 &&
               info.kv_held[0] > 0 && info.kv_held[1] > 0;
        if (!seen) {
            usleep(100000);
        }
    }
    CHECK(seen, "GetServerInfo never showed KV bytes held on both workers");
    for (int w = 0; seen && w < 2; w++) {
        printf("worker %d: budget %lld, held %lld, full cache %lld\n", w,
               (long long)info.kv_budget[w], (long long)info.kv_held[w],
               (long long)info.kv_full[w]);
        CHECK(info.kv_budget[w] == budget, "worker %d: budget %lld, want %lld", w,
              (long long)info.kv_budget[w], budget);
        CHECK(info.kv_held[w] <= budget, "worker %d holds %lld > budget %lld", w,
              (long long)info.kv_held[w], budget);
        CHECK(info.kv_full[w] == info.kv_held[w], "worker %d: full cache %lld, held %lld", w,
              (long long)info.kv_full[w], (long long)info.kv_held[w]);
    }
    coord_client_free(cl);
}

/* Polls GetServerInfo until nothing is held (or 10 s). */
static void check_info_idle(const char *addr)
{
    coord_client *cl = coord_client_create(addr);
    coord_client_info info;
    int idle = 0;
    for (int i = 0; i < 100 && !idle; i++) {
        idle = coord_client_server_info(cl, &info) == 0 && info.kv_held[0] == 0 &&
               info.kv_held[1] == 0 && info.kv_full[0] == 0 && info.kv_full[1] == 0;
        if (!idle) {
            usleep(100000);
        }
    }
    CHECK(idle, "KV bytes still held after every request ended: %lld %lld (full %lld %lld)",
          (long long)info.kv_held[0], (long long)info.kv_held[1], (long long)info.kv_full[0],
          (long long)info.kv_full[1]);
    coord_client_free(cl);
}

/* GET /metrics into buf; *v the value of one metric line. EM_EIO when /metrics cannot be
 * fetched, EM_EPROTO when the metric is not in it. */
static em_status metric(int port, const char *name, long long *v)
{
    *v = 0;
    static char buf[32768];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return EM_EIO;
    }
    const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return EM_EIO;
    }
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof buf && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0) {
        n += (size_t)r;
    }
    buf[n] = 0;
    close(fd);
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(buf, key);
    if (p == NULL) {
        return EM_EPROTO;
    }
    *v = atoll(p + strlen(key));
    return EM_OK;
}

int main(void)
{
    char err[256];
    model *m;
    REQUIRE(model_load(svc_model(), &m, err, sizeof err) == EM_OK, "%s", err);
    ems_config full;
    ems_config_default(&full);
    ems_footprint_shape sh = {m->hp.n_layer, m->hp.head_dim, m->hp.n_kv_head, m->hp.n_kv_head / 2,
                              0};
    long long one = (long long)ems_footprint_peak_bytes(&full, &sh, P, P + GEN - 1, 1);
    long long budget = 2 * one + one / 2;
    int n_vocab = m->hp.n_vocab;
    model_free(m);

    grpc_init();
    int mport = free_port();
    REQUIRE(mport > 0, "no free port");
    char mem[32], mlisten[64];
    snprintf(mem, sizeof mem, "%lld", budget);
    snprintf(mlisten, sizeof mlisten, "127.0.0.1:%d", mport);
    const char *extra[] = {"--kv-memory", mem, "--metrics-listen", mlisten, NULL};
    svc s;
    REQUIRE(svc_start(&s, 2, extra) == EM_OK, "service did not start");

    static call calls[N_REQ + 1];
    pthread_t th[N_REQ + 1];
    for (int i = 0; i <= N_REQ; i++) {
        calls[i].addr = s.addr;
        calls[i].max_tokens = i < N_REQ ? GEN : 1000; /* the last one cannot fit alone */
        for (int j = 0; j < P; j++) {
            calls[i].prompt[j] = 3 + (7 * j + j * j) % (n_vocab - 3);
        }
        pthread_create(&th[i], NULL, call_main, &calls[i]);
    }
    check_info_running(s.addr, budget);
    for (int i = 0; i <= N_REQ; i++) {
        pthread_join(th[i], NULL);
    }
    check_info_idle(s.addr);
    for (int i = 0; i < N_REQ; i++) {
        coord_client_result *r = &calls[i].res;
        CHECK(r->status == GRPC_STATUS_OK && r->n_output == GEN,
              "request %d: status %d (%s), %d ids", i, r->status, r->message, r->n_output);
        CHECK(r->n_output == calls[0].res.n_output &&
                  memcmp(r->output_ids, calls[0].res.output_ids,
                         sizeof(int32_t) * (size_t)r->n_output) == 0,
              "request %d: ids differ from request 0's", i);
    }
    coord_client_result *big = &calls[N_REQ].res;
    CHECK(big->status == GRPC_STATUS_RESOURCE_EXHAUSTED && strstr(big->message, "--kv-memory"),
          "oversized request: status %d (%s)", big->status, big->message);

    long long peak, running, bud, n_queue;
    CHECK(metric(mport, "emserve_kv_memory_peak_bytes", &peak) == EM_OK &&
              metric(mport, "emserve_num_requests_running_max", &running) == EM_OK &&
              metric(mport, "emserve_kv_memory_budget_bytes", &bud) == EM_OK &&
              metric(mport, "emserve_request_queue_time_seconds_count", &n_queue) == EM_OK,
          "metrics on port %d", mport);
    printf("budget %lld per worker, peak %lld, running at most %lld\n", budget, peak, running);
    CHECK(bud == budget, "metrics budget %lld, want %lld", bud, budget);
    CHECK(peak > 0 && peak <= budget, "a worker held %lld bytes, budget %lld", peak, budget);
    CHECK(running >= 1 && running <= 2, "%lld requests ran at once", running);
    CHECK(n_queue == N_REQ, "queue time counted %lld times", n_queue);

    for (int i = 0; i <= N_REQ; i++) {
        coord_client_result_free(&calls[i].res);
    }
    svc_stop(&s);
    grpc_shutdown();
    TEST_END();
}
