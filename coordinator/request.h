/* A generation request in native form (validated by the rpc adapter), and the events the
 * scheduler sends back for it. The rpc layer implements coord_sink; the scheduler never sees
 * protobuf or gRPC. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "ems/config.h"
#include "engine/sampler.h"
#include "engine/stop.h"

#define COORD_ID_MAX       128
#define COORD_KV_MAX       64
#define COORD_LOGPROBS_MAX 20

typedef struct coord_event coord_event;

/* Implemented by the rpc layer; called from the scheduler thread. After a COMPLETE or ERROR
 * event the scheduler calls release exactly once and never touches the request again. */
typedef struct coord_sink {
    void (*emit)(void *user, const coord_event *ev);
    void (*release)(void *user);
} coord_sink;

typedef struct coord_req {
    char id[COORD_ID_MAX + 1];
    int32_t *prompt; /* owned */
    int n_prompt;
    sampler_params sp;
    stop_params stop;
    ems_config kv;
    int n_kv;                   /* the request's KV settings as key/value text for workers */
    char *kv_key[COORD_KV_MAX]; /* owned */
    char *kv_val[COORD_KV_MAX]; /* owned */
    int logprobs;               /* top-N, 0 = none */
    int64_t deadline_us;        /* monotonic (em_now_us), 0 = none */
    const coord_sink *sink;
    void *sink_user;
} coord_req;

typedef enum { COORD_EV_CHUNK, COORD_EV_COMPLETE, COORD_EV_ERROR } coord_event_kind;

typedef struct coord_logprob {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_id[COORD_LOGPROBS_MAX];
    float top_logprob[COORD_LOGPROBS_MAX];
} coord_logprob;

struct coord_event {
    coord_event_kind kind;
    const char *request_id;
    /* CHUNK */
    const int32_t *ids;
    int n_ids;
    const char *text;
    size_t text_len;
    const coord_logprob *logprobs; /* [n_ids] or NULL */
    int prompt_tokens, completion_tokens;
    /* COMPLETE */
    const char *finish_reason; /* "stop", "length", "abort" */
    const int32_t *output_ids;
    int n_output;
    const char *matched_stop; /* "" none */
    int matched_stop_token;   /* -1 none */
    const char *full_text;
    size_t full_text_len;
    int64_t kv_entries_kept, kv_entries_full;
    /* ERROR */
    em_status status;
    const char *message;
};

void coord_req_free(coord_req *r); /* frees owned fields and r itself; NULL ok */
