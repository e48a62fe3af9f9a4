/* Streaming evaluation core shared by //tools:perplexity and //eval:kv_eval: feeds a token
 * sequence through the engine one token at a time (position i = index i), compressing with
 * ems_policy_step after every token, and accumulates next-token NLL, KL(full || compressed)
 * and top-1 agreement against reference logits, KV memory and compression time. Also text
 * loading (stories separated by <|endoftext|>, each starting with BOS). */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/config.h"
#include "engine/engine.h"
#include "model/tokenizer.h"

typedef struct ev_stream_opts {
    const float *ref_logits; /* [n][n_vocab] logits of the full cache (KL/top-1); NULL = none */
    float *logits_out;       /* [n][n_vocab] receives this run's logits; NULL = not kept */
    int skip;                /* predictions of the first `skip` tokens are not scored */
    int progress;            /* print progress to stderr every `progress` tokens (0 = off) */
} ev_stream_opts;

typedef struct ev_stream_result {
    double nll_sum; /* sum of -log p(next token) over scored positions */
    int n_scored;
    double kl_sum;        /* sum of KL(full || this) over scored positions */
    int top1_agree;       /* argmax equal to the full cache's */
    double kv_bytes_mean; /* KV bytes averaged over steps */
    uint64_t kv_bytes_end, kv_entries_end;
    double compress_s;        /* time inside ems_policy_step */
    int64_t n_policy_calls;   /* ems_policy_step calls */
    int64_t n_compress_steps; /* calls that compressed something */
    double forward_s;
    int n_lazy_layers; /* SimLayerKV: layers found lazy (-1: undecided / other method) */
} ev_stream_result;

em_status ev_stream(engine *e, const ems_config *cfg, const int32_t *ids, int n,
                    const ev_stream_opts *o, ev_stream_result *r);

/* Reads a text file and tokenizes it: stories separated by "<|endoftext|>" are each encoded
 * with BOS (add_bos) and concatenated; at most cap ids. *out owned by the caller. */
em_status ev_load_text(const tokenizer *tok, const char *path, int add_bos, int cap, int32_t **out,
                       int *n_out, char *err, size_t errlen);
