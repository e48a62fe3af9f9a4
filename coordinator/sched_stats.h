/* The scheduler's statistics (GetServerInfo, health, /metrics): counters, gauges and histograms.
 * The scheduler thread updates them under the scheduler's mutex; other threads read a copy
 * (coord_sched_get_stats), so a reader never sees a half-updated histogram. */
#pragma once
#include <stdint.h>

#include "coordinator/group.h" /* coord_kv_counts */
#include "ems/config.h"        /* EMS_METHOD_COUNT */

/* Histogram buckets (upper bounds): times in seconds, lengths in tokens. */
#define COORD_HIST_BUCKETS 14
extern const double coord_time_buckets_s[COORD_HIST_BUCKETS];
extern const double coord_token_buckets[COORD_HIST_BUCKETS];

typedef struct coord_hist {
    int64_t count[COORD_HIST_BUCKETS + 1]; /* observations per bucket (last = +Inf) */
    double sum;
    int64_t n;
} coord_hist;

/* Adds v to the bucket of bounds (coord_time_buckets_s or coord_token_buckets) it falls in. */
void coord_hist_add(coord_hist *h, const double *bounds, double v);

/* How a completed request finished (the finish_reason of its last event). */
typedef enum { COORD_FIN_STOP, COORD_FIN_LENGTH, COORD_FIN_ABORT, COORD_FIN_COUNT } coord_finish;
extern const char *const coord_finish_name[COORD_FIN_COUNT]; /* "stop", "length", "abort" */
coord_finish coord_finish_of(const char *reason);            /* unknown reasons count as stop */

/* Why a request ended with an error instead of a completion. */
typedef enum {
    COORD_REJ_INVALID,       /* bad input, refused by validation (INVALID_ARGUMENT) */
    COORD_REJ_QUEUE_FULL,    /* max_slots + max_queue held (RESOURCE_EXHAUSTED) */
    COORD_REJ_KV_MEMORY,     /* can never fit the KV memory budget (RESOURCE_EXHAUSTED) */
    COORD_REJ_OUT_OF_MEMORY, /* host memory (RESOURCE_EXHAUSTED) */
    COORD_REJ_UNAVAILABLE,   /* worker group not serving or lost, shutting down (UNAVAILABLE) */
    COORD_REJ_DEADLINE,      /* its deadline passed (DEADLINE_EXCEEDED) */
    COORD_REJ_COUNT
} coord_reject;
extern const char *const coord_reject_name[COORD_REJ_COUNT];

typedef struct coord_sched_stats {
    int serving;
    int64_t generation;
    int running, queued;
    int64_t requests_total, requests_failed, tokens_generated, prompt_tokens, steps;
    int64_t kv_entries; /* KV entries held for running sequences, summed over workers */
    coord_hist ttft;    /* submit -> first token, seconds */
    coord_hist itl;     /* between tokens (scheduler side), seconds */
    coord_hist queue;   /* submit -> first admission, seconds */
    coord_hist e2e;     /* submit -> completion, seconds (completed requests) */
    coord_hist prefill; /* first admission -> first token, seconds (completed requests) */
    coord_hist decode;  /* first token -> completion, seconds (completed requests) */
    coord_hist prompt_len, gen_len; /* tokens (completed requests) */
    int64_t finished[COORD_FIN_COUNT];
    int64_t rejected[COORD_REJ_COUNT];
    /* KV memory budget */
    int64_t kv_budget; /* bytes per worker (0 = none) */
    int64_t kv_held;   /* bytes held for running sequences, on the fullest worker */
    int kv_world;      /* workers of the two arrays below */
    int64_t kv_held_worker[COORD_MAX_WORKERS]; /* bytes each worker holds for running sequences */
    int64_t kv_full_worker[COORD_MAX_WORKERS]; /* what the full cache would hold there for them */
    int64_t kv_peak;     /* most bytes any worker held at any step so far (its report) */
    int64_t preemptions; /* sequences preempted (dropped and recomputed) */
    int running_max;     /* most sequences running at once so far */
    /* KV bytes of running sequences over all workers: held (f32 entries and statistics / quantized
     * stores) and what full caches of the same tokens would hold */
    int64_t kv_bytes_f32, kv_bytes_quant, kv_bytes_full;
    coord_kv_counts kv_counts[EMS_METHOD_COUNT]; /* compression so far, by method */
} coord_sched_stats;
