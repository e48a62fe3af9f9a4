/* A generation request as any front end (gRPC, HTTP) hands it over, before validation: plain C
 * fields with a "given" flag for each optional scalar. coord_req_from_spec is the one place
 * that checks them and builds the scheduler's coord_req, so both APIs accept and refuse the same
 * requests with the same messages; only the field names in the messages differ (the front end
 * says how it spells them). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/chat_template.h"
#include "coordinator/prompt.h"
#include "coordinator/request.h"

/* How a front end names its fields in error messages ("field: reason"). */
typedef struct coord_req_names {
    const char *sampling;  /* prefix of sampling fields ("sampling." or "") */
    const char *stopping;  /* prefix of stopping fields ("stopping." or "") */
    const char *input;     /* the prompt as a whole, when none or two are given */
    const char *text;      /* a text prompt */
    const char *tokens;    /* a token-id prompt */
    const char *token_ids; /* its ids (error messages about one id: "token_ids[3]: ...") */
} coord_req_names;

/* "sampling.", "stopping.", "input", "text", "tokens", "tokens.ids" */
extern const coord_req_names coord_req_names_grpc;

typedef struct coord_req_spec {
    const char *request_id; /* NULL or "" = "req-<serial>" */
    /* the prompt: exactly one of text (non-NULL), tokens (has_tokens) and messages (n > 0) */
    const char *text;
    int has_tokens;
    const int32_t *tokens;
    size_t n_tokens;
    const coord_chat_msg *messages;
    size_t n_messages;
    int has_add_generation_prompt, add_generation_prompt; /* messages only; default 1 */
    /* sampling (has_x: the client set x) */
    int has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty;
    int has_seed, has_logprobs, has_n;
    float temperature, top_p, min_p, repetition_penalty;
    int top_k, logprobs, n;
    uint64_t seed;
    /* stopping */
    int has_max_tokens, max_tokens;
    int has_ignore_eos, ignore_eos;
    int include_stop_str_in_output;
    const char *const *stop;
    size_t n_stop;
    const int32_t *stop_ids;
    size_t n_stop_ids;
    /* KV compression */
    const char *kv_method; /* NULL or "" = server default */
    int has_kv_budget, kv_budget, has_kv_window, kv_window, has_kv_sinks, kv_sinks;
    const char *const *kv_keys; /* further parameters as text ("ems.tau" = "0.5") */
    const char *const *kv_vals;
    size_t n_kv_params;
} coord_req_spec;

/* Validates every field of sp and builds the request (*out: owned by the caller, then by the
 * scheduler). EM_EINVAL with "field: reason" in err for anything unsupported or out of range;
 * EM_ENOMEM. serial names the request when it has no id. */
em_status coord_req_from_spec(const coord_req_spec *sp, const coord_req_names *names,
                              const coord_prompt_ctx *pc, uint64_t serial, coord_req **out,
                              char *err, size_t errlen);
