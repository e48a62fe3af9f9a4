/* Single-sequence generation loop on one engine (prefill, then decode token by token), with
 * sampling, stop conditions and the request's KV-compression policy. Used by //tools:generate,
 * the perplexity tool and tests; the gRPC service runs the same per-token step (decode_step.h)
 * and policy calls in its own continuous-batching scheduler. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/config.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/stop.h"
#include "model/tokenizer.h"

typedef struct gen_params {
    sampler_params sp;
    stop_params stop;
    ems_config kv;
    int prefill_chunk; /* tokens per prefill forward call (default 512) */
} gen_params;

void gen_params_default(gen_params *p);

typedef struct gen_result {
    int32_t *ids; /* generated ids (owned) */
    int n_ids;
    stop_reason reason;
    float *prompt_logits; /* [n_vocab] logits after the prompt (owned) */
    double prefill_s, decode_s;
    uint64_t kv_entries;      /* entries held at the end (all layers and heads) */
    uint64_t kv_entries_full; /* entries a full cache would hold */
    uint64_t kv_bytes;
} gen_result;

/* Called for each generated token with the text that became safe to print (may be empty).
 * Returns EM_OK to go on, EM_ECANCELED to stop early (reason STOP_NONE, gen_run returns EM_OK),
 * any other status to fail: gen_run stops and returns it. */
typedef em_status (*gen_on_token)(void *user, int32_t id, const char *text, size_t len);

/* Runs one generation. tok may be NULL (no text, no stop strings). */
em_status gen_run(engine *e, const tokenizer *tok, const int32_t *prompt, int n_prompt,
                  const gen_params *gp, gen_on_token cb, void *user, gen_result *res);
void gen_result_free(gen_result *r);
