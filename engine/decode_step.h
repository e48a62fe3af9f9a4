/* One sequence's per-token decode step, shared by the single-process generation loop
 * (engine/generate.c) and the service's scheduler (coordinator/sched_run.c): sample from the
 * logits, append to the history, feed the streaming detokenizer, check the stop conditions and
 * release the text that is safe to send. It needs no forward pass: the coordinator links it
 * (//engine:decode) without the engine. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct decode_seq {
    sampler smp;
    stop_state ss;
    tok_stream ts;
    const tokenizer *tok; /* borrowed; NULL = no text (stop strings never match) */
    int32_t *hist;        /* [n_prompt + max_new] the prompt, then the generated ids */
    int n_prompt, n_hist;
    int max_new; /* generated tokens allowed: max_tokens, clipped to the context */
    char *piece; /* [piece_cap] one token's detokenized text */
    size_t piece_cap;
    int have_smp, have_ss;
} decode_seq;

/* What one step produced. text is valid until the next step or decode_seq_free. */
typedef struct decode_token {
    int32_t id;
    stop_reason reason; /* STOP_NONE: feed id to the model and step again */
    const char *text;   /* text that became safe to release (may be empty) */
    size_t text_len;
    const char *matched_stop; /* the stop string when reason is STOP_STRING, else NULL */
} decode_token;

/* Prepares a sequence: sp and stop are copied or borrowed as sampler/stop_state do (stop must
 * outlive d). EM_EINVAL when n_prompt is not in [1, n_ctx); EM_ENOMEM. On failure d is left
 * freeable (decode_seq_free) and holds nothing. */
em_status decode_seq_init(decode_seq *d, const model_hparams *hp, const tokenizer *tok,
                          const sampler_params *sp, const stop_params *stop, const int32_t *prompt,
                          int n_prompt);
void decode_seq_free(decode_seq *d);

/* The generated ids so far: [decode_seq_ids(d), + decode_seq_n_ids(d)). */
const int32_t *decode_seq_ids(const decode_seq *d);
int decode_seq_n_ids(const decode_seq *d);

/* One step: samples from logits[n_vocab] (modified: penalty, temperature) and fills *out. Call
 * only while the previous step returned STOP_NONE. */
void decode_seq_step(decode_seq *d, float *logits, decode_token *out);
