/* The forward pass of a llama model for one shard, over a batch of tokens drawn from several
 * sequences (continuous batching): each sequence has its own ems_cache and positions.
 *
 * Tokens of one sequence must be contiguous in the batch and in increasing position order; a
 * run of tokens of one sequence is processed as one prefill chunk (matrix-matrix), a run of
 * length 1 is a decode step. Layer code is the same for 1 and N processes (see shard.h). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "ems/kv_cache.h"
#include "engine/shard.h"
#include "kernels/kern.h"
#include "model/model.h"

typedef struct engine engine;

typedef struct engine_opts {
    int n_threads;        /* fast CPU kernels with this many threads; 0 = reference kernels */
    int max_batch_tokens; /* scratch size: tokens per forward call (default 512) */
    const kern_ops *ops;  /* optional backend (e.g. kern_ops_cuda_create); borrowed, must
                             outlive the engine; overrides n_threads and act when set */
    kern_act_mode act;    /* quantized-weight matmuls: KERN_ACT_F32 (default) or KERN_ACT_Q8 */
} engine_opts;

em_status engine_create(const model *m, const shard_desc *sd, const engine_opts *opts,
                        engine **out);
void engine_free(engine *e);

const model_hparams *engine_hparams(const engine *e);
const shard_desc *engine_shard(const engine *e);
const kern_ops *engine_ops(const engine *e);
/* Bytes of layer weights this shard holds, in their stored types (shard_weights_bytes). */
size_t engine_weight_bytes(const engine *e);

/* Creates an empty cache for one sequence shaped for this shard (w_loc, stats per policy). */
em_status engine_cache_create(const engine *e, int w_loc, int want_stats, int group_max,
                              ems_cache **out);

typedef struct engine_batch {
    int n_tokens;
    const int32_t *tokens; /* [n_tokens] */
    const int32_t *pos;    /* [n_tokens] position of each token */
    const int32_t *seq;    /* [n_tokens] index into caches[] */
    const uint8_t
        *logits; /* [n_tokens] 1 = produce logits for this token (NULL: last of each run) */
} engine_batch;

/* Runs all layers. caches[seq[i]] receive the new K/V of their tokens (and statistics).
 * logits_out: [n_logits][n_vocab] for tokens with logits requested, in batch order;
 * may be NULL on processes that do not sample. Returns EM_EINVAL on bad token ids/positions
 * or a cache not made by engine_cache_create for this model and shard, EM_EUNAVAILABLE when
 * the reduce hook fails, and the status of the first kernel op or cache
 * append that fails (kernels/kern.h: EM_ENOMEM, EM_EDEVICE, ...); nothing runs after it. On
 * error no cache's n_seen moves, but the layers before the failure may hold this batch's K/V
 * (and statistics): the caller must drop those sequences (ems_cache_destroy). The engine
 * itself stays usable. */
em_status engine_forward(engine *e, const engine_batch *b, ems_cache **caches, float *logits_out);

/* Tokens ids[0, n) of ONE sequence at positions pos0, pos0+1, ... through engine_forward in
 * calls of at most `chunk` tokens; logits (may be NULL) receive the last token's logits. */
em_status engine_forward_seq(engine *e, ems_cache *c, const int32_t *ids, int n, int pos0,
                             int chunk, float *logits);
