/* The worker group as the coordinator sees it: head placement (explicit data), one channel per
 * worker, the rendezvous store, formation (Hello to all, then FormGroup with a new generation
 * and gloo prefix), the batched Step fan-out, and loss detection. Owned by the scheduler
 * thread; only coord_group_snapshot may be called from other threads. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "coordinator/spawner.h"
#include "model/model.h"

#define COORD_MAX_WORKERS 64

/* Where each worker's part of the model lives (computed once from the hyper-parameters). */
typedef struct coord_placement {
    int rank;
    int kv_head0, n_kv_heads; /* global KV heads (reduction units) [kv_head0, +n) */
    int q_head0, n_q_heads;   /* query heads */
    int ffn_row0, ffn_row1;   /* FFN rows [row0, row1) */
} coord_placement;

typedef struct coord_worker_snapshot {
    coord_placement pl;
    char addr[256];
    int joined;
    int64_t pid, weight_bytes;
} coord_worker_snapshot;

struct rpc_tls; /* rpc/rpc_tls.h */

typedef struct coord_group_opts {
    const char *model_path; /* sent to workers that have no --model of their own */
    int n_threads, max_batch_tokens, max_slots;
    int act_quant;               /* kern_act_mode of every worker (0 f32, 1 q8) */
    long coll_timeout_ms;        /* gloo rendezvous + collectives (default 10000) */
    long step_timeout_ms;        /* floor of a step's progress deadline (default 3000); the
                                  * deadline adds 8 x the slowest recent time per token x the
                                  * step's tokens. A worker that misses it is declared hung */
    const char *store_bind;      /* rendezvous store bind address (default 127.0.0.1) */
    const char *store_advertise; /* address workers use to reach it (default = store_bind) */
    int store_port;              /* 0 = any free port */
    const char *cluster_secret;  /* carried by every internal call and required by the store */

    /* mutual TLS to the workers (rpc/rpc_tls.h; NULL: plaintext), and the name their
     * certificate is checked against instead of their address (NULL: the address) */
    const struct rpc_tls *internal_tls;
    const char *internal_tls_name;
    /* the rendezvous store's per-client bounds (coll.h; 0: its defaults) */
    int store_max_conn_per_client;
    long store_max_bytes_per_client;
} coord_group_opts;

typedef struct coord_group coord_group;

/* Computes the placement for world workers; EM_EINVAL (message in err) when world exceeds
 * the model's KV heads (units are dealt out 2 + 1 etc., see engine/shard.h). Starts the rendezvous
 * store. addrs[r] may be NULL or "" for local workers whose address the spawner will report;
 * spawner may be NULL. */
em_status coord_group_create(const model_hparams *hp, int world, const char *const *addrs,
                             coord_spawner *spawner, const coord_group_opts *o, coord_group **out,
                             char *err, size_t errlen);
void coord_group_free(coord_group *g);

int coord_group_world(const coord_group *g);
int coord_group_serving(coord_group *g);        /* thread-safe */
int64_t coord_group_generation(coord_group *g); /* thread-safe */

/* What a coord_group_tick changed. */
typedef enum {
    COORD_GROUP_UNCHANGED = 0,
    COORD_GROUP_FORMED, /* the group just became serving */
    COORD_GROUP_LOST    /* the group was just lost */
} coord_group_event;

/* Housekeeping, called by the scheduler thread every turn: spawner events; when not serving,
 * tries (rate-limited) to form a new group; when serving and idle for idle_ms, pings workers. */
coord_group_event coord_group_tick(coord_group *g, int idle);

/* Marks the group lost (a step failed, a worker died): health goes NOT_SERVING. */
void coord_group_mark_lost(coord_group *g, const char *why);
/* Why the group was last lost ("" if never), copied into out (any thread). */
void coord_group_lost_reason(coord_group *g, char *out, size_t len);

typedef struct coord_step_open {
    int slot;
    int n_kv;
    char *const *keys, *const *vals;
} coord_step_open;

typedef struct coord_step {
    int n_drop;
    const int32_t *drop;
    int n_open;
    const coord_step_open *open;
    int n_tokens;
    const int32_t *tokens, *pos, *seq;
    const uint8_t *want; /* [n_tokens] */
    int n_policy;
    const int32_t *pol_slot, *pol_phase;
} coord_step;

/* What compression did to a sequence's cache (entries; seconds in the policy step). */
typedef struct coord_kv_counts {
    int64_t evicted, merged, quantized;
    double seconds;
} coord_kv_counts;

typedef struct coord_step_result {
    const float *logits; /* [n_logits][n_vocab], owned by the group, valid until the next step */
    int n_logits;
    int n_slots;
    const int32_t *slots;          /* owned by the group */
    const int64_t *entries;        /* KV entries of slots[i] summed over all workers */
    const int64_t *bytes;          /* [n_slots][world]: KV bytes worker r holds for slots[i] */
    const int64_t *peak;           /* [world]: KV bytes of all of worker r's sequences at the step's
                                      peak (after the forward, before compression) */
    const int64_t *bytes_quant;    /* [n_slots][world]: the part of bytes in quantized stores */
    const coord_kv_counts *counts; /* [n_slots]: compression in this step, summed over workers
                                      (zeros from workers that do not report it) */
} coord_step_result;

/* Runs one step on every worker under a progress deadline (see step_timeout_ms). Every reply
 * is checked against the request (step id, slots, entry counts within the context, logits
 * size) before anything is copied. On any failure - an error, a late or inconsistent reply -
 * the group is marked lost and EM_EUNAVAILABLE is returned with the reason in err; a local
 * worker that missed the deadline is killed and restarted by the spawner. */
em_status coord_group_step(coord_group *g, const coord_step *st, coord_step_result *res, char *err,
                           size_t errlen);

/* Local KV heads of worker rank (its placement), for the KV memory budget. */
int coord_group_kv_heads(const coord_group *g, int rank);

/* Copies the per-worker view (thread-safe). Returns the number of workers. */
int coord_group_snapshot(coord_group *g, coord_worker_snapshot *out, int cap);
