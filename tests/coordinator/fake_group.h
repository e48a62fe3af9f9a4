/* An in-process worker group for scheduler tests: implements coordinator/group.h over one
 * worker_state (worker/wstate.h) of world 1, so the real scheduler drives the real engine and
 * KV caches synchronously, with no processes or sockets. Steps are therefore deterministic in
 * what they contain. The test can hold the scheduler in coord_group_tick (to queue requests
 * before the first step) and reads what every step held. */
#pragma once
#include <stdint.h>

#include "coordinator/group.h"
#include "ems/config.h"

typedef struct fake_group_log {
    int steps;
    int running_max;             /* most open sequences after a step */
    int64_t peak_max;            /* most bytes of all sequences at any step's peak */
    int opens[EMS_METHOD_COUNT]; /* sequences opened, by KV method (recomputes open again) */
    int drops;
    int held_mismatch;     /* steps where a reported slot's bytes != ems_cache_held_bytes */
    int mixed_steps;       /* steps carrying decode tokens and prompt tokens */
    int mixed_prefill_max; /* most prompt tokens of such a step */
    int n_chunk_steps;     /* PREFILL_CHUNK policy steps (bounded prefill) */
    int chunk_pos[1024];   /* tokens the slot had been fed at each (the first 1024) */
} fake_group_log;

/* Loads the model into a world-1 worker state; max_slots as the scheduler's. */
em_status fake_group_create(const char *model_path, int max_batch_tokens, int max_slots,
                            coord_group **out, char *err, size_t errlen);
void fake_group_free(coord_group *g);

/* hold = 1: the next coord_group_tick blocks until hold is set back to 0. */
void fake_group_hold(coord_group *g, int hold);
/* Waits until the scheduler is blocked in coord_group_tick by a hold. */
void fake_group_wait_held(coord_group *g);
void fake_group_get_log(coord_group *g, fake_group_log *out);
