/* The scheduler's KV memory budget (pure functions; the scheduler thread owns the state).
 *
 * Each worker has a budget of bytes (--kv-memory). What a sequence holds on a worker is what the
 * worker reports after every step (ems_cache_held_bytes of the sequence's cache: its heads only,
 * after compression and quantization, statistics included). What it may still need comes from
 * its KV settings (ems/footprint.h): the uncompressed prompt until the first generated token is
 * fed, then at most budget + compression interval entries per head for a compressing method, or
 * every token for the full cache.
 *
 * Charge: the bytes the budget sets aside for a sequence on a worker =
 *   max(held now + what its next step can add, projected peak until its end)
 * where the projection counts the prompt in full and `reserve` (0..1) of the tokens it may still
 * generate. reserve = 1 (the default) never overcommits: a request is admitted only when the sum
 * of the charges, its own included, fits every worker, and no running sequence can then outgrow
 * the budget. reserve < 1 admits more, betting that requests stop before max_tokens; when the
 * memory then runs out, the scheduler preempts (coordinator/sched.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/group.h"
#include "ems/config.h"
#include "ems/footprint.h"

typedef struct coord_kv_budget {
    int64_t bytes;  /* per worker; 0 = no budget (nothing is charged or preempted) */
    double reserve; /* share of the remaining generation reserved, in [0, 1] */
    int world;
    ems_footprint_shape shape[COORD_MAX_WORKERS]; /* the model's shape, each worker's KV heads */
} coord_kv_budget;

/* One sequence as the budget sees it. */
typedef struct coord_kv_seq {
    const ems_config *cfg;
    int n_prompt;        /* tokens fed by its prefill (prompt, or what a recompute re-feeds) */
    int n_fed;           /* tokens fed so far (in its current cache) */
    int n_end;           /* most tokens it will have fed when it finishes */
    int prompt_ahead;    /* 1 until its first decode-phase token has been fed */
    int next_tokens;     /* most tokens its next step feeds */
    const int64_t *held; /* [world] bytes now; NULL = nothing held yet */
} coord_kv_seq;

/* Most bytes the next step can add to the sequence on worker r: its next_tokens new entries per
 * local head (before compression), the quantized store of what it holds when quantization
 * attaches at the prompt's end, and new key-group scales. */
int64_t coord_kv_step_growth(const coord_kv_budget *b, const coord_kv_seq *q, int r);

/* The charge (see above) on worker r; reserve_all = 1 uses reserve 1 whatever b->reserve says. */
int64_t coord_kv_charge(const coord_kv_budget *b, const coord_kv_seq *q, int r, int reserve_all);

/* Parses a byte count: an integer or decimal number with an optional K, M or G suffix (binary:
 * 1K = 1024; "KiB", "MB" etc. are accepted the same way); 0 = no budget. EM_EINVAL with a
 * message in err for anything else. */
em_status coord_kv_memory_parse(const char *text, int64_t *out, char *err, size_t errlen);

/* The default budget per worker: half of this host's physical memory, split evenly between
 * n_workers (right for local workers; set --kv-memory for workers on other machines). */
int64_t coord_kv_memory_default(int n_workers);
