/* The continuous-batching scheduler: one thread that owns the worker group and every running
 * sequence. Each step mixes the decode tokens of running requests with prefill chunks of new
 * ones under a max-batch-tokens budget, sends the batch to all workers, samples from rank 0's
 * logits with the engine's sampler and stop logic, and streams events to each request's sink.
 * Other threads only enqueue (submit, cancel, abort) and read snapshots. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "coordinator/group.h"
#include "coordinator/request.h"
#include "coordinator/sched_stats.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct coord_sched coord_sched;

typedef struct coord_sched_opts {
    int max_batch_tokens; /* tokens per step (default 256) */
    int max_slots;        /* sequences running at once (default 64) */
    int prefill_chunk;    /* most prompt tokens of one request per step (default 256) */
    int mixed_prefill;    /* most prompt tokens a step carries when it also carries decode
                           * tokens, so a prompt arriving does not stall the running requests
                           * for a whole chunk (default 64; >= max_batch_tokens: no limit) */
    int max_queue;        /* requests held beyond max_slots; more get RESOURCE_EXHAUSTED
                           * (0 = none may wait) */
    int64_t kv_memory;    /* KV bytes per worker (sched_kv.h); 0 = no budget */
    double kv_overcommit; /* share of the tokens a request may generate NOT reserved at
                             admission, [0, 1]; 0 (default) reserves them all (sched_kv.h) */
} coord_sched_opts;

/* Starts the scheduler thread. g, m and tok are borrowed (must outlive it). */
em_status coord_sched_start(coord_group *g, const model *m, const tokenizer *tok,
                            const coord_sched_opts *o, coord_sched **out);
/* Stops the thread; every request still held gets an UNAVAILABLE error and is released. */
void coord_sched_stop(coord_sched *s);

/* Takes ownership of r. When the group is not serving, r fails at once with EM_EUNAVAILABLE;
 * when max_slots + max_queue requests are already held, with EM_ENOSPC (RESOURCE_EXHAUSTED). */
void coord_sched_submit(coord_sched *s, coord_req *r);
/* The client of sink_user went away: drop its request (released without further events). */
void coord_sched_cancel(coord_sched *s, void *sink_user);
/* Aborts every request with this id (finish_reason "abort"); returns how many were found. */
int coord_sched_abort(coord_sched *s, const char *request_id);

void coord_sched_get_stats(coord_sched *s, coord_sched_stats *out);
/* Counts a request that a front end refused with st before submitting it (thread-safe). */
void coord_sched_note_refused(coord_sched *s, em_status st);
