/* The coordinator's HTTP server (libmicrohttpd, one thread per connection, so an idle or slow
 * connection never holds up another): the OpenAI-compatible API (POST /v1/completions,
 * POST /v1/chat/completions, both with server-sent events when "stream": true, GET /v1/models),
 * GET /health (liveness: 200 while the process runs), GET /health/ready (200 when every worker
 * has joined, else 503) and GET /metrics (Prometheus text). Generation requests are validated by
 * the same code as gRPC's (req_spec.h) and go straight to the scheduler. Unknown paths are 404,
 * a known path with another method 405; errors carry an OpenAI-style JSON body. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/chat_template.h"
#include "coordinator/group.h"
#include "coordinator/sched.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct coord_http coord_http;

typedef struct coord_http_opts {
    const char *listen_addr; /* "HOST:PORT", port 0 = any free one */
    int api;                 /* 1: the /v1 API too; 0: /metrics and /health only */
    const char *model_path;  /* /v1/models names the model by its file name without .gguf */
    const model *m;
    const tokenizer *tok;
    const coord_chat_template *chat;
    coord_sched *sched;
    coord_group *group;
    /* per-client bounds (0: the default): connections in all (a thread each), connections from
     * one client IP, and the read buffer of one connection (headers larger get 431) */
    int max_conn, max_conn_per_ip;
    long conn_memory_bytes;
    const char *tls_cert_pem, *tls_key_pem; /* HTTPS with this PEM certificate and key (the text,
                                             * kept by the caller); NULL: plain HTTP */
} coord_http_opts;

#define COORD_HTTP_MAX_CONN        1000
#define COORD_HTTP_MAX_CONN_PER_IP 64
#define COORD_HTTP_CONN_MEMORY     (64L << 10)

/* Binds and starts serving; *port gets the bound port. Everything in o is borrowed and must
 * outlive coord_http_stop. EM_EINVAL for a bad address, EM_EIO when it cannot listen. */
em_status coord_http_start(const coord_http_opts *o, coord_http **out, int *port, char *err,
                           size_t errlen);
/* Graceful drain (SIGTERM): new generation requests get 503 and /health/ready says 503;
 * running ones go on. NULL ok. */
void coord_http_drain(coord_http *h);
/* Generations whose reply is not fully written yet (a drain waits for 0). NULL: 0. */
int coord_http_streams(coord_http *h);
/* Phase 1 of shutdown (before the scheduler stops): new generation requests get 503 and no
 * thread touches the scheduler or the group any more once this returns. NULL ok. */
void coord_http_shutdown(coord_http *h);
/* Phase 2 (after the scheduler stopped, which ended every generation): closes every connection,
 * joins the threads, frees h. NULL ok. */
void coord_http_stop(coord_http *h);
