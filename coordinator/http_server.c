/* The HTTP server: daemon, routes, liveness/readiness, metrics (see http_server.h). Threads:
 * libmicrohttpd's listener and one thread per connection; handlers that touch the scheduler or
 * the group do so through the gate, so that shutdown can stop them before the scheduler goes. */
#define _GNU_SOURCE
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/log.h"
#include "coordinator/http_impl.h"
#include "coordinator/metrics.h"

#define BODY_MAX        (8u << 20) /* bytes of a request body (a 1 MiB prompt as JSON fits) */
#define METRICS_BUF_MAX (1u << 20)

typedef struct http_body { /* one request's body as it arrives */
    char *data;
    size_t len, cap;
    int too_big;
    http_gen *gen; /* a whole reply's generation, dropped when the request completes */
} http_body;

/* ---- the gate ------------------------------------------------------------------------------- */

int coord__http_enter(coord_http *h)
{
    pthread_mutex_lock(&h->mu);
    int ok = !h->stopping;
    h->users += ok;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

int coord__http_draining(coord_http *h)
{
    pthread_mutex_lock(&h->mu);
    int d = h->draining;
    pthread_mutex_unlock(&h->mu);
    return d;
}

void coord__http_leave(coord_http *h)
{
    pthread_mutex_lock(&h->mu);
    if (--h->users == 0) {
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/* ---- replies -------------------------------------------------------------------------------- */

enum MHD_Result coord__http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                                  const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

unsigned coord__http_status_of(em_status st)
{
    switch (st) {
    case EM_OK:
        return MHD_HTTP_OK;
    case EM_EINVAL:
    case EM_EPROTO:
    case EM_EUNSUPPORTED:
        return MHD_HTTP_BAD_REQUEST;
    case EM_ENOMEM:
    case EM_ENOSPC:
        return MHD_HTTP_TOO_MANY_REQUESTS;
    case EM_ETIMEDOUT:
        return MHD_HTTP_GATEWAY_TIMEOUT;
    case EM_EUNAVAILABLE:
    case EM_EIO:
    case EM_ECANCELED:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    default:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
}

const char *coord__http_error_type(unsigned status)
{
    switch (status) {
    case MHD_HTTP_NOT_FOUND:
        return "not_found_error";
    case MHD_HTTP_TOO_MANY_REQUESTS:
        return "rate_limit_error";
    case MHD_HTTP_SERVICE_UNAVAILABLE:
        return "service_unavailable_error";
    case MHD_HTTP_GATEWAY_TIMEOUT:
        return "timeout_error";
    case MHD_HTTP_INTERNAL_SERVER_ERROR:
        return "server_error";
    default:
        return "invalid_request_error";
    }
}

enum MHD_Result coord__http_error(struct MHD_Connection *c, unsigned status, const char *message,
                                  const char *param, const char *code)
{
    char field[128] = "";
    if (param == NULL && status == MHD_HTTP_BAD_REQUEST) { /* "field: reason" / "field must" */
        size_t n = strcspn(message, ": ");
        if (n > 0 && n < sizeof field && message[n] != 0) {
            memcpy(field, message, n);
            field[n] = 0;
            param = field;
        }
    }
    char *body = coord__http_render_error(message, coord__http_error_type(status), param, code);
    if (body == NULL) {
        return MHD_NO;
    }
    enum MHD_Result rc = coord__http_reply(c, status, "application/json", body, strlen(body));
    free(body);
    return rc;
}

/* ---- plain routes --------------------------------------------------------------------------- */

static enum MHD_Result on_live(coord_http *h, struct MHD_Connection *c)
{
    (void)h;
    static const char ok[] = "{\"status\":\"ok\"}";
    return coord__http_reply(c, MHD_HTTP_OK, "application/json", ok, sizeof ok - 1);
}

static enum MHD_Result on_ready(coord_http *h, struct MHD_Connection *c)
{
    int serving = 0;
    char body[800];
    if (coord__http_draining(h)) {
        snprintf(body, sizeof body, "{\"status\":\"draining\"}");
    } else if (coord__http_enter(h)) {
        serving = coord_group_serving(h->o.group);
        snprintf(body, sizeof body, "{\"status\":\"%s\"}", serving ? "ready" : "not ready");
        coord__http_leave(h);
    } else {
        snprintf(body, sizeof body, "{\"status\":\"shutting down\"}");
    }
    return coord__http_reply(c, serving ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                             "application/json", body, strlen(body));
}

static enum MHD_Result on_metrics(coord_http *h, struct MHD_Connection *c)
{
    coord_sched_stats st;
    if (!coord__http_enter(h)) {
        return coord__http_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", NULL, NULL);
    }
    coord_sched_get_stats(h->o.sched, &st);
    coord__http_leave(h);
    size_t cap = 1u << 16, len = 0;
    char *buf = NULL;
    for (;;) { /* grow until the text fits */
        char *nb = realloc(buf, cap);
        if (nb == NULL) {
            free(buf);
            return MHD_NO;
        }
        buf = nb;
        len = coord_metrics_render(&st, buf, cap);
        if (len + 1 < cap || cap >= METRICS_BUF_MAX) {
            break;
        }
        cap *= 2;
    }
    enum MHD_Result rc =
        coord__http_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
    return rc;
}

static enum MHD_Result on_models(coord_http *h, struct MHD_Connection *c, const char *id)
{
    if (id && strcmp(id, h->model_id) != 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist (this server serves '%.200s')",
                 id, h->model_id);
        return coord__http_error(c, MHD_HTTP_NOT_FOUND, msg, "model", "model_not_found");
    }
    char *body = coord__http_render_models(h, id != NULL);
    if (body == NULL) {
        return MHD_NO;
    }
    enum MHD_Result rc = coord__http_reply(c, MHD_HTTP_OK, "application/json", body, strlen(body));
    free(body);
    return rc;
}

/* ---- routing -------------------------------------------------------------------------------- */

typedef enum { R_LIVE, R_READY, R_METRICS, R_MODELS, R_MODEL, R_COMPLETIONS, R_CHAT } route_id;

static const struct route {
    const char *path; /* a trailing '*': any suffix */
    const char *method;
    route_id id;
    int api;
} routes[] = {
    {"/health", "GET", R_LIVE, 0},
    {"/health/ready", "GET", R_READY, 0},
    {"/metrics", "GET", R_METRICS, 0},
    {"/v1/models", "GET", R_MODELS, 1},
    {"/v1/models/*", "GET", R_MODEL, 1},
    {"/v1/completions", "POST", R_COMPLETIONS, 1},
    {"/v1/chat/completions", "POST", R_CHAT, 1},
};

static int path_matches(const char *pattern, const char *url)
{
    size_t n = strlen(pattern);
    if (pattern[n - 1] == '*') {
        return strncmp(pattern, url, n - 1) == 0 && url[n - 1] != 0 && !strchr(url + n - 1, '/');
    }
    return strcmp(pattern, url) == 0;
}

static enum MHD_Result dispatch(coord_http *h, struct MHD_Connection *c, const struct route *r,
                                const char *url, http_body *b)
{
    switch (r->id) {
    case R_LIVE:
        return on_live(h, c);
    case R_READY:
        return on_ready(h, c);
    case R_METRICS:
        return on_metrics(h, c);
    case R_MODELS:
        return on_models(h, c, NULL);
    case R_MODEL:
        return on_models(h, c, url + strlen("/v1/models/"));
    case R_COMPLETIONS:
        return coord__http_generate(h, c, HTTP_API_COMPLETIONS, b->data ? b->data : "", b->len,
                                    &b->gen);
    case R_CHAT:
        return coord__http_generate(h, c, HTTP_API_CHAT, b->data ? b->data : "", b->len, &b->gen);
    }
    return MHD_NO;
}

static enum MHD_Result route(coord_http *h, struct MHD_Connection *c, const char *url,
                             const char *method, http_body *b)
{
    const struct route *path_hit = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if ((r->api && !h->o.api) || !path_matches(r->path, url)) {
            continue;
        }
        path_hit = r;
        int head = strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
        if (strcmp(method, r->method) == 0 || head) {
            return dispatch(h, c, r, url, b);
        }
    }
    if (path_hit) {
        char msg[160];
        snprintf(msg, sizeof msg, "method %.16s not allowed on %.100s (use %s)", method, url,
                 path_hit->method);
        char *body = coord__http_render_error(msg, "invalid_request_error", NULL, NULL);
        if (body == NULL) {
            return MHD_NO;
        }
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, path_hit->method);
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "no route %.100s", url);
    return coord__http_error(c, MHD_HTTP_NOT_FOUND, msg, NULL, NULL);
}

/* libmicrohttpd calls this first with no body (we allocate the request's state), then with each
 * piece of the body, then once with none left: then we answer. */
static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    coord_http *h = cls;
    http_body *b = *con_cls;
    if (b == NULL) {
        b = calloc(1, sizeof *b);
        *con_cls = b;
        return b ? MHD_YES : MHD_NO;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (b->too_big || b->len + n > BODY_MAX) {
            b->too_big = 1;
            return MHD_YES;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = (b->len + n + 1) * 2;
            char *d = realloc(b->data, cap < BODY_MAX + 1 ? cap : BODY_MAX + 1);
            if (d == NULL) {
                return MHD_NO;
            }
            b->data = d;
            b->cap = cap < BODY_MAX + 1 ? cap : BODY_MAX + 1;
        }
        memcpy(b->data + b->len, upload, n);
        b->len += n;
        b->data[b->len] = 0;
        return MHD_YES;
    }
    if (b->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body larger than %u bytes", BODY_MAX);
        return coord__http_error(c, MHD_HTTP_CONTENT_TOO_LARGE, msg, NULL, NULL);
    }
    return route(h, c, url, method, b);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    http_body *b = *con_cls;
    if (b) {
        coord__http_gen_put(b->gen);
        free(b->data);
        free(b);
        *con_cls = NULL;
    }
}

static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    EM_LOG_WARN("http: %s", line);
}

/* ---- lifetime ------------------------------------------------------------------------------- */

/* The model's id in /v1/models: its file name without the directory and ".gguf". */
static void model_id_of(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0) {
        n -= 5;
    }
    snprintf(out, cap, "%.*s", (int)n, base);
}

static em_status resolve(const char *listen_addr, struct sockaddr_storage *ss, socklen_t *sl,
                         char *err, size_t errlen)
{
    char host[256];
    snprintf(host, sizeof host, "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (colon == NULL || colon[1] == 0) {
        snprintf(err, errlen, "http listen address '%s': want HOST:PORT", listen_addr);
        return EM_EINVAL;
    }
    *colon = 0;
    char *h = host;
    if (h[0] == '[' && colon > h && colon[-1] == ']') { /* [::1]:8080 */
        colon[-1] = 0;
        h++;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(h[0] ? h : NULL, colon + 1, &hints, &res) != 0 || res == NULL) {
        snprintf(err, errlen, "http listen address '%s': cannot resolve", listen_addr);
        return EM_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
    return EM_OK;
}

em_status coord_http_start(const coord_http_opts *o, coord_http **out, int *port, char *err,
                           size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    *out = NULL;
    em_status st = resolve(o->listen_addr, &ss, &sl, err, errlen);
    if (st != EM_OK) {
        return st;
    }
    coord_http *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return EM_ENOMEM;
    }
    h->o = *o;
    h->pc = (coord_prompt_ctx){&o->m->hp, o->tok, o->chat};
    h->created = (int64_t)time(NULL);
    coord__http_sink_init(&h->sink);
    h->piece_max = o->tok ? tok_max_piece_bytes(o->tok) : 0;
    model_id_of(o->model_path ? o->model_path : "model", h->model_id, sizeof h->model_id);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    /* per-client bounds: MHD refuses a connection past either count at accept */
    unsigned conn = (unsigned)(o->max_conn > 0 ? o->max_conn : COORD_HTTP_MAX_CONN);
    unsigned per_ip =
        (unsigned)(o->max_conn_per_ip > 0 ? o->max_conn_per_ip : COORD_HTTP_MAX_CONN_PER_IP);
    size_t mem = (size_t)(o->conn_memory_bytes > 0 ? o->conn_memory_bytes : COORD_HTTP_CONN_MEMORY);
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL}};
    if (o->tls_cert_pem && o->tls_key_pem) { /* HTTPS (libmicrohttpd's GnuTLS) */
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)o->tls_key_pem};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->tls_cert_pem};
        tls[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_CONNECTION_TIMEOUT, COORD_HTTP_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT, conn,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    const union MHD_DaemonInfo *di =
        h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (di == NULL) {
        snprintf(err, errlen, "cannot listen on %s (http)", o->listen_addr);
        if (h->d) {
            MHD_stop_daemon(h->d);
        }
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        return EM_EIO;
    }
    *port = di->port;
    *out = h;
    return EM_OK;
}

void coord_http_drain(coord_http *h)
{
    if (h) {
        pthread_mutex_lock(&h->mu);
        h->draining = 1;
        pthread_mutex_unlock(&h->mu);
    }
}

int coord_http_streams(coord_http *h)
{
    return h ? __atomic_load_n(&h->streams, __ATOMIC_SEQ_CST) : 0;
}

void coord_http_shutdown(coord_http *h)
{
    if (h == NULL) {
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    while (h->users > 0) {
        pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
}

void coord_http_stop(coord_http *h)
{
    if (h == NULL) {
        return;
    }
    coord_http_shutdown(h);
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
