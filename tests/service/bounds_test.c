/* Issue 12 item 5, re-expressed. (A) A bounded queue: with --max-seqs 1 --max-queue 1, one
 * request runs, one waits, and a third is RESOURCE_EXHAUSTED at once (100 requests against
 * --max-seqs 2 used to be queued without limit); after the two end, requests are served again.
 * (B) SO_REUSEPORT off: a second coordinator on the first one's port fails to start (two could
 * bind it and split the connections). (C) A metrics client trickling one byte at a time does
 * not hold up a normal scrape: it is answered while the slow client is still sending (the old
 * metrics server had one thread, so the slow client delayed every scrape by 15 s; the HTTP
 * server now has a thread per connection). (The 4 MiB message cap: bad_input_test,
 * worker_proto_test.) Every wait has a limit. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "tests/service/svc_harness.h"
#include "tests/service/svc_job.h"
#include "tests/testutil/testutil.h"

/* Waits up to 30 s until GetServerInfo shows `running` running and `queued` queued. */
static int wait_counts(coord_client *cl, int running, int queued)
{
    double t0 = em_now_s();
    while (em_now_s() - t0 < 30) {
        coord_client_info info;
        if (coord_client_server_info(cl, &info) == EM_OK && info.running == running &&
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
    REQUIRE(svc_start(&s, 1, extra) == EM_OK, "service did not start");
    coord_client *cl = coord_client_create(s.addr);
    svc_job j[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(svc_job_start(&j[i], cl, 2000, 60000) == EM_OK, "thread");
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
    for (int i = 0; i < 2; i++)
        svc_job_cancel(&j[i]); /* at the next chunk */
    for (int i = 0; i < 2; i++) {
        svc_job_join(&j[i]); /* bounded by the call's deadline */
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
    REQUIRE(svc_start(&a, 1, NULL) == EM_OK, "first service did not start");
    const char *extra[] = {"--listen", a.addr, NULL};
    em_status rc = svc_start(&b, 1, extra);
    CHECK(rc != EM_OK, "a second coordinator started on %s (SO_REUSEPORT)", a.addr);
    if (rc == EM_OK) {
        svc_stop(&b);
    }
    coord_client *cl = coord_client_create(a.addr);
    CHECK(svc_golden_ok(cl, 20, "first coordinator after the second one's attempt"), "golden");
    coord_client_free(cl);
    svc_stop(&a);
}

/* A TCP connection to 127.0.0.1:port in *fd; EM_EIO when there is none. */
static em_status connect_local(int port, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (*fd < 0) {
        return EM_EIO;
    }
    if (connect(*fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(*fd);
        *fd = -1;
        return EM_EIO;
    }
    return EM_OK;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t l = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

/* A normal scrape on its own connection: 1 when answered 200 within 10 s. */
static int scrape_ok(int port)
{
    int fd;
    if (connect_local(port, &fd) != EM_OK) {
        return 0;
    }
    const char *get = "GET /metrics HTTP/1.0\r\n\r\n";
    ssize_t w = send(fd, get, strlen(get), MSG_NOSIGNAL);
    char buf[512] = "";
    struct pollfd pfd = {fd, POLLIN, 0};
    ssize_t r = poll(&pfd, 1, 10000) > 0 ? recv(fd, buf, sizeof buf - 1, 0) : -1;
    close(fd);
    return w > 0 && r > 0 && strstr(buf, "200 OK") != NULL;
}

static void test_slow_metrics_client(void)
{
    int port = free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *extra[] = {"--metrics-listen", listen, NULL};
    svc s;
    REQUIRE(port > 0 && svc_start(&s, 1, extra) == EM_OK, "service did not start");
    int fd;
    REQUIRE(connect_local(port, &fd) == EM_OK, "connect to the metrics port %d", port);
    /* one byte of "GET /metrics ..." every 100 ms; after the 5th, a normal scrape */
    const char *req = "GET /metrics HTTP/1.0\r\nX-Slow: some more bytes that never end";
    int sent = 0, answered = 0, slow_open_after = 0;
    while (sent < 30) {
        int ok = send(fd, req + sent, 1, MSG_NOSIGNAL) == 1;
        if (answered) {
            slow_open_after = ok; /* the slow client was still being served after the scrape */
            break;
        }
        if (!ok) {
            break;
        }
        sent++;
        if (sent == 5) {
            answered = scrape_ok(port);
        }
        usleep(100000);
    }
    close(fd);
    printf("slow metrics client: %d bytes sent, scrape answered %d, slow client open %d\n", sent,
           answered, slow_open_after);
    CHECK(answered, "a normal scrape was not answered while a client trickled bytes");
    CHECK(slow_open_after, "the slow client was cut off (not needed: a thread per connection)");
    CHECK(scrape_ok(port), "a normal scrape after the slow client left");
    svc_stop(&s);
}

int main(void)
{
    svc_model();
    grpc_init();
    test_queue();
    test_reuseport();
    test_slow_metrics_client();
    grpc_shutdown();
    TEST_END();
}
