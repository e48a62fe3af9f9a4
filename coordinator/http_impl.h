/* Private to the HTTP server (http_*.c): the server struct, the gate in front of the scheduler,
 * reply helpers, the OpenAI request parser, one generation in flight and the JSON it renders. */
#pragma once
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/http_server.h"
#include "coordinator/prompt.h"
#include "coordinator/req_spec.h"
#include "coordinator/request.h"

struct coord_http {
    coord_http_opts o;
    coord_prompt_ctx pc;
    struct MHD_Daemon *d;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, users; /* the gate (coord__http_enter) */
    int draining;        /* no new generations (coord_http_drain) */
    int streams;         /* generations whose reply is not fully written yet (atomic) */
    uint64_t serial;
    coord_sink sink; /* http_gen.c's emit/release */
    char model_id[256];
    int64_t created;  /* unix time of start (the model's "created") */
    size_t piece_max; /* tok_max_piece_bytes */
};

/* ---- http_server.c ------------------------------------------------------------------------- */

/* 1: the caller may use the scheduler and the group until coord__http_leave; 0: shutting down
 * (do not touch them, do not call leave). */
/* 1 while draining (new generations are refused). */
int coord__http_draining(coord_http *h);
int coord__http_enter(coord_http *h);
void coord__http_leave(coord_http *h);

/* Queues a complete response (body copied). */
enum MHD_Result coord__http_reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                                  const char *body, size_t len);
/* Queues an OpenAI-style error: {"error": {"message", "type", "param", "code"}}; param NULL =
 * the field a "field: reason" message starts with. */
enum MHD_Result coord__http_error(struct MHD_Connection *c, unsigned status, const char *message,
                                  const char *param, const char *code);
/* The HTTP status of an em_status (the usual gRPC -> HTTP mapping). */
unsigned coord__http_status_of(em_status st);
/* The OpenAI error "type" of an HTTP status ("invalid_request_error", ...). */
const char *coord__http_error_type(unsigned status);

#define COORD_HTTP_IDLE_TIMEOUT_S 300u /* an idle keep-alive connection is closed after this */

/* ---- http_parse.c: an OpenAI request body -> coord_req_spec --------------------------------- */

typedef enum { HTTP_API_COMPLETIONS, HTTP_API_CHAT } http_api;

typedef struct http_parsed {
    coord_req_spec sp; /* strings point into root or the arrays below */
    http_api api;
    int stream, include_usage;
    int want_logprobs, n_top; /* what the reply shows (the scheduler is asked for >= 1) */
    cJSON *root;
    coord_chat_msg *msgs;
    char **joined; /* content parts joined, one per message (NULL where not needed) */
    size_t n_joined;
    const char **stops, **kv_keys, **kv_vals;
    char (*kv_num)[40]; /* numbers and booleans of kv.params as text */
    int32_t *tokens, *stop_ids;
} http_parsed;

/* Parses and checks the JSON body for api into out (free with coord__http_parsed_free, also on
 * failure). EM_EINVAL with "field: reason" in err; *status the HTTP status to answer (400, or
 * 404 for a model this server does not serve). Range checks of the values are left to
 * coord_req_from_spec. */
em_status coord__http_parse(const coord_http *h, http_api api, const char *body, size_t len,
                            http_parsed *out, unsigned *status, char *err, size_t errlen);
void coord__http_parsed_free(http_parsed *p);

/* ---- http_gen.c: one generation in flight ---------------------------------------------------- */

/* Tokens the scheduler sent that the connection has not consumed yet. */
typedef struct http_acc {
    char *text;
    size_t len, cap;
    int32_t *ids;
    coord_logprob *lps; /* [n] when logprobs were asked for */
    int n, cap_n;
} http_acc;

typedef struct http_gen {
    coord_http *h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs, sched_held;
    int counted; /* in coord_http.streams */
    /* written by the scheduler thread under mu */
    http_acc acc;
    int done;      /* COMPLETE or ERROR seen (or released without one) */
    em_status err; /* EM_OK: completed */
    char err_msg[512];
    char finish[16];
    int prompt_tokens, completion_tokens;
    int64_t kv_kept, kv_full;
    char *full_text;
    size_t full_len;
    /* the connection's side */
    struct MHD_Connection *conn;
    int fd;
    http_api api;
    int stream, include_usage, want_lp, n_top;
    char id[64];
    int64_t created;    /* unix time of the request */
    int32_t prev_id;    /* last token rendered (the piece text of the next depends on it) */
    size_t text_off;    /* bytes of text rendered so far (completions logprobs text_offset) */
    int started, ended; /* stream: first chunk out; [DONE] out */
    char *out;          /* stream bytes formatted, not yet handed to MHD */
    size_t out_len, out_off;
} http_gen;

/* Validates p (coord_req_from_spec) and submits it; *out holds one reference for the caller.
 * EM_EINVAL etc. with the message in err when it cannot start. */
em_status coord__http_gen_start(coord_http *h, struct MHD_Connection *c, const http_parsed *p,
                                http_gen **out, char *err, size_t errlen);
/* Waits for the first tokens (stream) or the end (not stream). EM_ECANCELED when the client went
 * away (the request was cancelled). */
em_status coord__http_gen_wait(http_gen *g, int want_tokens);
/* Moves the pending tokens into *a (free with coord__http_acc_free). Holds no lock after. */
void coord__http_gen_take(http_gen *g, http_acc *a);
void coord__http_acc_free(http_acc *a);
/* Drops the caller's reference; cancels the generation when it is still running. */
void coord__http_gen_put(http_gen *g);
/* The MHD response that streams g as server-sent events (takes the caller's reference). */
struct MHD_Response *coord__http_gen_sse(http_gen *g);

/* ---- http_render.c: JSON of the replies ---------------------------------------------------- */

/* Whole reply of a finished generation (malloc'd JSON). */
char *coord__http_render_final(http_gen *g);
/* One stream chunk with the tokens of a; finish = NULL until the last (malloc'd JSON). */
char *coord__http_render_chunk(http_gen *g, const http_acc *a, const char *finish, int role);
/* The usage-only chunk of stream_options.include_usage. */
char *coord__http_render_usage_chunk(http_gen *g);
/* {"error": {...}} (malloc'd). */
char *coord__http_render_error(const char *message, const char *type, const char *param,
                               const char *code);
/* GET /v1/models and /v1/models/{id}. */
char *coord__http_render_models(const coord_http *h, int one);

/* ---- http_openai.c: POST /v1/completions and /v1/chat/completions --------------------------- */

/* *hold gets a whole (not streamed) reply's generation: the caller drops it with
 * coord__http_gen_put once the reply is written (it counts as in flight until then). */
enum MHD_Result coord__http_generate(coord_http *h, struct MHD_Connection *c, http_api api,
                                     const char *body, size_t len, http_gen **hold);
/* The scheduler sink of HTTP generations (http_gen.c). */
void coord__http_sink_init(coord_sink *s);
