/* A worker's native state, free of protobuf: the model, the engine of its shard, its place in
 * the gloo group, and the KV cache of every open sequence slot (its own KV heads only). One
 * thread (the worker's rpc loop) owns it; nothing here is thread-safe. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "coll/coll.h"
#include "common/status.h"
#include "ems/config.h"
#include "ems/kv_cache.h"
#include "engine/engine.h"
#include "model/model.h"

/* What compression did to one slot's cache (running totals, or their change since a report). */
typedef struct worker_counts {
    int64_t evicted, merged, quantized; /* entries (ems_policy_stats, ems_cache_quantized_total) */
    double seconds;                     /* spent in ems_policy_step */
} worker_counts;

typedef struct worker_state {
    char model_path[1024]; /* --model of this worker; empty = take the coordinator's */
    char gloo_host[256];   /* --gloo-host override; empty = the coordinator's suggestion */
    model *m;
    engine *e;
    shard_desc sd;
    int rank, world, n_threads, max_batch_tokens, act_quant;
    coll_ctx *coll;
    int64_t generation; /* group formation this worker is in; 0 = none */
    int max_slots;
    ems_cache **cache;       /* [max_slots] NULL = free */
    ems_config *cfg;         /* [max_slots] */
    int32_t *next_pos;       /* [max_slots] position the slot's next token must have (tokens fed) */
    int32_t *scr_pos;        /* [max_slots] scratch of the step check */
    uint8_t *scr_open;       /* [max_slots] scratch of the step check */
    worker_counts *reported; /* [max_slots] the slot's totals at its last step reply */
    float *logits;           /* [cap_logits][n_vocab] */
    int cap_logits;
    int64_t weight_bytes;
    char cluster_secret[257]; /* every call must carry it (rpc_auth.h); set by main */
    coll_tls store_tls;       /* mutual TLS to the rendezvous store (PEM text; NULLs: plain) */
} worker_state;

/* Bounds of what a FormGroup may ask for (a forged or corrupt request is refused). */
#define WORKER_MAX_BATCH_TOKENS 65536
#define WORKER_MAX_SLOTS        65536
#define WORKER_MAX_THREADS      256

typedef struct worker_form {
    int64_t generation;
    int rank, world;
    const char *store_addr, *prefix, *gloo_host, *model_path;
    long timeout_ms;
    int n_threads, max_batch_tokens, max_slots;
    int act_quant; /* kern_act_mode: 0 f32 activations, 1 q8 (validated) */
} worker_form;

typedef struct worker_open {
    int slot;
    ems_config cfg; /* parsed and validated by the rpc adapter */
} worker_open;

typedef struct worker_policy {
    int slot, phase; /* WORKER_PHASE_* */
} worker_policy;

typedef struct worker_step_in {
    int64_t generation;
    const int32_t *drop;
    int n_drop;
    const worker_open *open;
    int n_open;
    int n_tokens;
    const int32_t *tokens, *pos, *seq; /* seq = slot */
    const uint8_t *want_logits;        /* [n_tokens] or NULL (last of each run) */
    const worker_policy *policy;
    int n_policy;
    int return_logits;
} worker_step_in;

typedef struct worker_step_out {
    const float *logits; /* [n_logits][n_vocab], owned by the state (valid until next step) */
    int n_logits;
    int n_slots;
    int32_t *slots;        /* distinct slots of the batch, in first-appearance order (owned) */
    int64_t *entries;      /* KV entries this worker holds for slots[i] (owned) */
    int64_t *bytes;        /* bytes this worker holds for slots[i]: ems_cache_held_bytes (owned) */
    int64_t *bytes_quant;  /* the part of bytes[i] in quantized stores (owned) */
    worker_counts *counts; /* slots[i]'s compression since its previous reply (owned) */
    int64_t peak_bytes;    /* all open slots together after the forward, before the policies ran:
                              the most this step held (what the KV memory budget bounds) */
} worker_step_out;

void worker_state_init(worker_state *w, const char *model_path, int n_threads);
void worker_state_free(worker_state *w);

/* Leaves any old group, loads the model (once), builds the shard's engine and joins the new
 * gloo group. EM_EINVAL when world exceeds the KV heads, a size is out of bounds or the model
 * cannot load; EM_EUNAVAILABLE when the rendezvous fails. Messages go to err. */
em_status worker_group_form(worker_state *w, const worker_form *f, char *err, size_t errlen);

/* Drops every sequence and leaves the group (after a failure). */
void worker_group_leave(worker_state *w);

/* One step: drops, opens, the batched forward, policy steps. The whole request is checked
 * before anything changes: at most max_batch_tokens tokens, slots within the table and open,
 * ids within the vocabulary, and each slot's positions continuing its sequence without gaps or
 * repeats (so no cache grows past the tokens fed, nor past the context). EM_EUNAVAILABLE when
 * the group failed (the state has then left the group), EM_EINVAL for a bad batch (nothing
 * changed). out's arrays are freed by worker_step_out_free. */
em_status worker_step(worker_state *w, const worker_step_in *in, worker_step_out *out, char *err,
                      size_t errlen);
void worker_step_out_free(worker_step_out *out);
