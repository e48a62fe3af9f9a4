/* A small blocking C client of the public API (emserve.v1), used by //coordinator:emserve_client,
 * the demo mode, the tests and the benchmark. One client = one channel (thread-safe: several
 * threads may run calls on it at once). Requires grpc_init. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "common/status.h"
#include "coordinator/chat_template.h" /* coord_chat_msg */
#include "rpc/rpc_tls.h"

typedef struct coord_client coord_client;

typedef struct coord_client_req {
    const char *request_id; /* NULL = server assigns */
    const char *text;       /* text input, or ... */
    const int32_t *ids;     /* ... token ids (sent when text == NULL and ids or no messages) */
    int n_ids;
    const coord_chat_msg *messages; /* ... or chat messages (sent whenever n_messages > 0, so a */
    int n_messages;                 /* test can send them together with text or ids) */
    int max_tokens;                 /* < 0: server default (16); 0 is sent (and rejected) */
    float temperature;              /* < 0: server default */
    int top_k;                      /* < 0: unset */
    uint64_t seed;
    int has_seed;
    int ignore_eos;
    const char *kv_method;      /* NULL = default ("full") */
    int kv_budget;              /* <= 0: unset */
    const char *const *kv_keys; /* extra kv params */
    const char *const *kv_vals;
    int n_kv;
    long timeout_ms; /* <= 0: none */
    /* streaming callback: each chunk's ids and text; return non-zero to cancel the call */
    int (*on_chunk)(void *user, const int32_t *ids, int n, const char *text);
    void *user;
} coord_client_req;

typedef struct coord_client_result {
    grpc_status_code status;
    char message[512];
    int32_t *ids; /* streamed ids (owned) */
    int n_ids;
    int32_t *output_ids; /* Complete.output_ids (owned) */
    int n_output;
    char *text; /* concatenated chunk text (owned, NUL-terminated) */
    char finish_reason[16];
    int prompt_tokens, completion_tokens;
    int64_t kv_entries_kept, kv_entries_full;
    int n_chunks;
    int got_complete;
    double t_first_s, t_total_s; /* time to the first chunk / to the end */
    double *t_chunk_s;           /* arrival time of each chunk (owned) */
} coord_client_result;

coord_client *coord_client_create(const char *addr);
/* The same over TLS (rpc/rpc_tls.h: the CA trusted for the server's certificate, and the client
 * certificate presented, when set); NULL: plaintext. */
coord_client *coord_client_create_tls(const char *addr, const rpc_tls *tls);
void coord_client_free(coord_client *c);
grpc_channel *coord_client_channel(coord_client *c);

/* An on_chunk callback that writes each chunk's text to stdout at once (user is unused). */
int coord_client_chunk_to_stdout(void *user, const int32_t *ids, int n, const char *text);

/* Runs one Generate call to the end (or until on_chunk cancels). Returns res->status. */
grpc_status_code coord_client_generate(coord_client *c, const coord_client_req *rq,
                                       coord_client_result *res);
void coord_client_result_free(coord_client_result *r);

/* Abort(request_id): *found 1 when the server had it, else 0; the RPC's failure as an em_status
 * (rpc_status_to_em). */
em_status coord_client_abort(coord_client *c, const char *request_id, int *found);
/* Health/Check(""): *serving 1 SERVING, 0 NOT_SERVING; the RPC's failure as an em_status. */
em_status coord_client_health(coord_client *c, long timeout_ms, int *serving);
/* Waits until health reports SERVING; EM_ETIMEDOUT after timeout_ms. */
em_status coord_client_wait_serving(coord_client *c, long timeout_ms);
/* Sends raw bytes as a Generate request (tests of malformed input); returns the status. */
grpc_status_code coord_client_generate_raw(coord_client *c, const void *bytes, size_t len,
                                           char *msg, size_t msglen);

/* Tokenize: text, or messages (n_messages > 0); add_special / parse_special < 0: unset. */
typedef struct coord_client_tokenize_req {
    const char *text;
    const coord_chat_msg *messages;
    int n_messages;
    int add_special, parse_special;
} coord_client_tokenize_req;

typedef struct coord_client_tokens {
    grpc_status_code status;
    char message[512]; /* status details */
    int32_t *ids;      /* owned */
    int n_ids;
    char *prompt; /* the rendered chat prompt (owned; "" for text) */
} coord_client_tokens;

/* Runs Tokenize; returns out->status (ids and prompt are set only when it is OK). */
grpc_status_code coord_client_tokenize(coord_client *c, const coord_client_tokenize_req *rq,
                                       coord_client_tokens *out);
void coord_client_tokens_free(coord_client_tokens *t);

typedef struct coord_client_info {
    int serving, worker_count, heads_per_worker, running, queued;
    int64_t generation, requests_total;
    int64_t pid[64];
    int64_t weight_bytes[64];
    int kv_head0[64], n_kv_heads[64];
    int64_t kv_budget[64], kv_held[64], kv_full[64]; /* KV memory per worker (WorkerInfo) */
} coord_client_info;

/* The cluster secret (rpc/rpc_auth.h) GetServerInfo presents to see the workers' addresses and
 * pids (without it they are empty / 0). NULL or "": none. */
void coord_client_set_admin_secret(coord_client *c, const char *secret);
/* GetServerInfo; the RPC's failure as an em_status (rpc_status_to_em). */
em_status coord_client_server_info(coord_client *c, coord_client_info *out);
