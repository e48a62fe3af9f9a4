/* The Prometheus text endpoint (see metrics.h). */
#define _GNU_SOURCE
#include "coordinator/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct coord_metrics {
    int fd;
    coord_sched *sched;
    int64_t kv_capacity;
    pthread_t thr;
    volatile int stop;
};

/* The KV memory budget's gauges and counters (coordinator/sched_kv.h). */
static size_t render_kv_budget(const coord_sched_stats *st, char *buf, size_t cap)
{
    int n = snprintf(
        buf, cap,
        "# HELP emserve_kv_memory_budget_bytes KV memory budget per worker (0 = none).\n"
        "# TYPE emserve_kv_memory_budget_bytes gauge\n"
        "emserve_kv_memory_budget_bytes %lld\n"
        "# HELP emserve_kv_memory_used_bytes KV bytes held for running sequences on the fullest "
        "worker.\n"
        "# TYPE emserve_kv_memory_used_bytes gauge\n"
        "emserve_kv_memory_used_bytes %lld\n"
        "# HELP emserve_kv_memory_peak_bytes Most KV bytes any worker held at any step so far.\n"
        "# TYPE emserve_kv_memory_peak_bytes gauge\n"
        "emserve_kv_memory_peak_bytes %lld\n"
        "# HELP emserve_num_requests_running_max Most requests running at once so far.\n"
        "# TYPE emserve_num_requests_running_max gauge\n"
        "emserve_num_requests_running_max %d\n"
        "# HELP emserve_preemptions_total Sequences preempted for KV memory (recomputed).\n"
        "# TYPE emserve_preemptions_total counter\n"
        "emserve_preemptions_total %lld\n",
        (long long)st->kv_budget, (long long)st->kv_held, (long long)st->kv_peak, st->running_max,
        (long long)st->preemptions);
    if (n < 0) {
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap;
}

size_t coord_metrics_render(const coord_sched_stats *st, int64_t kv_capacity, char *buf, size_t cap)
{
    double usage = kv_capacity > 0 ? (double)st->kv_entries / (double)kv_capacity : 0.0;
    int n = snprintf(
        buf, cap,
        "# HELP emserve_num_requests_running Requests with a sequence slot (prefill or decode).\n"
        "# TYPE emserve_num_requests_running gauge\n"
        "emserve_num_requests_running %d\n"
        "# HELP emserve_num_requests_waiting Requests queued for a slot.\n"
        "# TYPE emserve_num_requests_waiting gauge\n"
        "emserve_num_requests_waiting %d\n"
        "# HELP emserve_kv_cache_usage_perc KV entries held / (max sequences x context x layers x "
        "KV heads).\n"
        "# TYPE emserve_kv_cache_usage_perc gauge\n"
        "emserve_kv_cache_usage_perc %.6f\n"
        "# HELP emserve_kv_cache_entries KV entries held for running sequences (all workers).\n"
        "# TYPE emserve_kv_cache_entries gauge\n"
        "emserve_kv_cache_entries %lld\n"
        "# HELP emserve_serving 1 while every worker has joined the group.\n"
        "# TYPE emserve_serving gauge\n"
        "emserve_serving %d\n"
        "# HELP emserve_group_generation Worker-group formations so far.\n"
        "# TYPE emserve_group_generation gauge\n"
        "emserve_group_generation %lld\n"
        "# TYPE emserve_requests_total counter\n"
        "emserve_requests_total %lld\n"
        "# TYPE emserve_requests_failed_total counter\n"
        "emserve_requests_failed_total %lld\n"
        "# TYPE emserve_prompt_tokens_total counter\n"
        "emserve_prompt_tokens_total %lld\n"
        "# TYPE emserve_generation_tokens_total counter\n"
        "emserve_generation_tokens_total %lld\n"
        "# TYPE emserve_steps_total counter\n"
        "emserve_steps_total %lld\n",
        st->running, st->queued, usage, (long long)st->kv_entries, st->serving,
        (long long)st->generation, (long long)st->requests_total, (long long)st->requests_failed,
        (long long)st->prompt_tokens, (long long)st->tokens_generated, (long long)st->steps);
    if (n < 0 || (size_t)n >= cap) {
        return n < 0 ? 0 : cap - 1;
    }
    size_t len = (size_t)n;
    len += render_kv_budget(st, buf + len, cap - len);
    if (len >= cap) {
        return cap - 1;
    }
    const coord_lat_hist *hs[3] = {&st->ttft, &st->itl, &st->queue};
    static const char *const names[3] = {"emserve_time_to_first_token_seconds",
                                         "emserve_time_per_output_token_seconds",
                                         "emserve_request_queue_time_seconds"};
    for (int h = 0; h < 3 && len < cap; h++) {
        int64_t cum = 0;
        len += (size_t)snprintf(buf + len, cap - len, "# TYPE %s histogram\n", names[h]);
        for (int b = 0; b <= COORD_LAT_BUCKETS && len < cap; b++) {
            cum += hs[h]->count[b];
            if (b < COORD_LAT_BUCKETS) {
                len += (size_t)snprintf(buf + len, cap - len, "%s_bucket{le=\"%g\"} %lld\n",
                                        names[h], coord_lat_bucket_ms[b] / 1e3, (long long)cum);
            } else {
                len += (size_t)snprintf(buf + len, cap - len, "%s_bucket{le=\"+Inf\"} %lld\n",
                                        names[h], (long long)cum);
            }
        }
        if (len < cap) {
            len += (size_t)snprintf(buf + len, cap - len, "%s_sum %.6f\n%s_count %lld\n", names[h],
                                    hs[h]->sum_ms / 1e3, names[h], (long long)hs[h]->n);
        }
    }
    return len < cap ? len : cap - 1;
}

static void serve_conn(coord_metrics *m, int fd)
{
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[2048];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) {
            break;
        }
    }
    req[n] = 0;
    char body[16384], head[256];
    const char *status = "200 OK";
    size_t blen;
    if (strncmp(req, "GET /metrics", 12) == 0 || strncmp(req, "GET / ", 6) == 0) {
        coord_sched_stats st;
        coord_sched_get_stats(m->sched, &st);
        blen = coord_metrics_render(&st, m->kv_capacity, body, sizeof body);
    } else {
        status = "404 Not Found";
        blen = (size_t)snprintf(body, sizeof body, "try GET /metrics\n");
    }
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, blen);
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL) == hl) {
        ssize_t w = send(fd, body, blen, MSG_NOSIGNAL);
        (void)w;
    }
    close(fd);
}

static void *metrics_main(void *p)
{
    coord_metrics *m = p;
    while (!m->stop) {
        struct pollfd pfd = {m->fd, POLLIN, 0};
        if (poll(&pfd, 1, 100) <= 0) {
            continue;
        }
        int c = accept(m->fd, NULL, NULL);
        if (c >= 0) {
            serve_conn(m, c);
        }
    }
    return NULL;
}

em_status coord_metrics_start(const char *listen_addr, coord_sched *sched, int64_t kv_capacity,
                              coord_metrics **out, int *port, char *err, size_t errlen)
{
    char host[256];
    *out = NULL;
    snprintf(host, sizeof host, "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "--metrics-listen wants HOST:PORT");
        return EM_EINVAL;
    }
    *colon = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res) != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve %s", listen_addr);
        return EM_EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "cannot listen on %s", listen_addr);
        freeaddrinfo(res);
        if (fd >= 0) {
            close(fd);
        }
        return EM_EIO;
    }
    freeaddrinfo(res);
    coord_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) {
        close(fd);
        return EM_ENOMEM;
    }
    m->fd = fd;
    m->sched = sched;
    m->kv_capacity = kv_capacity;
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    if (pthread_create(&m->thr, NULL, metrics_main, m) != 0) {
        close(fd);
        free(m);
        return EM_ENOMEM;
    }
    *out = m;
    return EM_OK;
}

void coord_metrics_stop(coord_metrics *m)
{
    if (m == NULL) {
        return;
    }
    m->stop = 1;
    pthread_join(m->thr, NULL);
    close(m->fd);
    free(m);
}
