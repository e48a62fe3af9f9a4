/* Stop conditions of a generation: max tokens, EOS (unless ignored), stop token ids and stop
 * strings. Stop strings are matched on the generated text; the text handed to the client ends
 * right before a matched stop string (or right after it with include_stop), and bytes that could
 * still become one are held back. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define STOP_MAX_STRINGS    16
#define STOP_MAX_IDS        64
#define STOP_MAX_STRING_LEN 256

typedef struct stop_params {
    int max_tokens; /* > 0 */
    int ignore_eos;
    int include_stop; /* a matched stop string stays at the end of the text */
    int n_stop;
    char stop[STOP_MAX_STRINGS][STOP_MAX_STRING_LEN + 1];
    int n_stop_ids;
    int32_t stop_ids[STOP_MAX_IDS];
} stop_params;

typedef enum {
    STOP_NONE = 0,
    STOP_EOS,    /* finish_reason "stop" */
    STOP_TOKEN,  /* a stop token id: "stop" */
    STOP_STRING, /* a stop string: "stop" */
    STOP_LENGTH  /* max_tokens reached: "length" */
} stop_reason;

void stop_params_default(stop_params *p);
/* Adds a stop string / id; EM_EINVAL (message names the field) when over the limits. */
em_status stop_params_add_string(stop_params *p, const char *s, size_t len, char *err,
                                 size_t errlen);
em_status stop_params_add_id(stop_params *p, int32_t id, int n_vocab, char *err, size_t errlen);
em_status stop_params_validate(const stop_params *p, int max_ctx_tokens, char *err, size_t errlen);

typedef struct stop_state {
    const stop_params *p;
    int eos_id;
    int n_generated;
    char *text; /* generated text so far (NUL-terminated) */
    size_t len, cap;
    size_t emitted; /* bytes already handed out */
    int matched;    /* index of the matched stop string, -1 none */
} stop_state;

em_status stop_state_init(stop_state *s, const stop_params *p, int eos_id);
void stop_state_free(stop_state *s);

/* Feeds one generated token and its text; returns the reason to stop (or STOP_NONE). When a stop
 * string matches, the text is cut right before it (right after it with include_stop). */
stop_reason stop_state_feed(stop_state *s, int32_t id, const char *piece, size_t piece_len);

/* Appends text that belongs to no new token (e.g. a detokenizer flush); checks stop strings. */
stop_reason stop_state_append_text(stop_state *s, const char *text, size_t len);

/* Text that can be sent now: [*out, *out + *n). final=1 releases everything still held. */
void stop_state_take(stop_state *s, int final, const char **out, size_t *n);

const char *stop_reason_str(stop_reason r); /* "stop", "length", or "" */
