/* Private to the scheduler (sched.c, sched_run.c): the run and scheduler structs and the
 * per-request functions shared between the two files. */
#pragma once
#include <pthread.h>
#include <stdint.h>

#include "coordinator/sched.h"
#include "coordinator/sched_kv.h"
#include "engine/decode_step.h"
#include "model/tokenizer.h"

/* RUN_REPLAY: after a preemption, re-feeding generated tokens one per step (decode phase, no
 * sampling) so a compressing cache is rebuilt exactly as it was (see sched.c). */
typedef enum { RUN_QUEUED, RUN_PREFILL, RUN_REPLAY, RUN_DECODE } run_state;

typedef struct run {
    coord_req *req;
    run_state state;
    int slot, opened;
    int n_done;      /* history tokens fed into the current cache */
    int n_prefill;   /* history tokens the prefill feeds (the prompt; more after a recompute) */
    int resumed;     /* preempted at least once: dec is set up, generated ids are kept */
    decode_seq dec;  /* history, sampler, detokenizer, stop state (set up at admission) */
    int32_t pending; /* sampled, not yet fed */
    int64_t kv_entries;
    int64_t held[COORD_MAX_WORKERS]; /* KV bytes each worker holds for it (last report) */
    int64_t admit_seq;               /* admission order: the newest is preempted first */
    int queue_timed;                 /* its first admission went into the queue-time histogram */
    int cancel_req, abort_req;       /* set by other threads under mu */
    const char *fin_reason, *fin_matched; /* set when sampling finished the run */
    int fin_token;
    int oom;
    int kv_fail; /* can never fit the KV memory budget: fails with kv_msg */
    char kv_msg[256];
    double t_submit, t_last; /* em_now_s of submission / of the last token */
    struct run *next;
} run;

struct coord_sched {
    coord_group *g;
    const model *m;
    const tokenizer *tok;
    coord_sched_opts o;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    run *inbox, *inbox_tail; /* submitted, not yet seen by the scheduler */
    run *active, *active_tail;
    coord_sched_stats stats;
    /* scheduler-thread state */
    uint8_t *slot_used;
    int32_t *drops;
    int n_drops;
    float *raw;         /* [n_vocab] logits copy for logprobs */
    coord_kv_budget kv; /* KV memory budget per worker (sched_kv.h) */
    int64_t admit_count;
};

/* ---- sched_run.c: one request's life and its sampling --------------------------------------- */

/* Frees the run: its slot goes back (and to the drop list when workers hold KV for it), the
 * sink is released. */
void coord__run_release(coord_sched *s, run *r);
/* Sends an ERROR event, then releases. */
void coord__run_fail(coord_sched *s, run *r, em_status st, const char *msg);
/* Sends a COMPLETE event (with usage), then releases. */
void coord__run_complete(coord_sched *s, run *r, const char *reason, const char *matched,
                         int matched_token);
/* Takes a free slot and prepares sampling (once: a resumed run keeps its state): EM_ENOSPC no
 * free slot, EM_ENOMEM out of memory. */
em_status coord__run_admit(coord_sched *s, run *r);
/* ---- sched_mem.c: the KV memory budget in the scheduler -------------------------------------- */

/* Bytes charged on each worker ([world]) for the runs holding a slot. */
void coord__kv_used(coord_sched *s, int64_t *used);
/* *fits 1 when waiting run r's charge fits next to used on every worker (then added to used), 0
 * when it must wait; EM_ENOMEM when it can never fit (message in r->kv_msg). */
em_status coord__kv_admit(coord_sched *s, run *r, int64_t *used, int *fits);
/* Preempts running sequences until the next step fits every worker's budget; returns how many
 * (none is admitted in the same turn). */
int coord__kv_preempt(coord_sched *s);

/* The KV memory budget's view of a run (sched_kv.h). */
void coord__run_kv_seq(const coord_sched *s, const run *r, coord_kv_seq *q);
/* History tokens the run's prefill feeds: the prompt; after a preemption of a full-cache run,
 * every id fed before (one prefill rebuilds the same cache); otherwise the prompt, the generated
 * ids being replayed one per step (RUN_REPLAY) so compression decides exactly as before. */
int coord__run_prefill_len(const run *r);
/* History tokens held in the run's current cache. */
int coord__run_fed(const run *r);
/* Samples from logits (modified) and streams the token; returns 1 when the run finished (fin_*
 * set; the caller unlinks and completes it). */
int coord__run_sample(coord_sched *s, run *r, float *logits);
