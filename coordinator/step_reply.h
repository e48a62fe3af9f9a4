/* What a worker's StepResponse must say, checked before the coordinator reads any of it: the
 * step id, the slot list (as the worker computes it from the batch), one entry and byte count
 * per slot (and the compression counts of /metrics: one per slot, or none), the KV entries and
 * the compression counts within what a slot can hold, every byte count and time within the
 * bounds below (so that sums over slots and workers cannot overflow), and exactly the logits
 * asked for. Apart
 * from group_step.c so that //fuzz:step_reply can drive it from wire bytes. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"

/* Bounds on what one worker may report for one slot: 1 TiB of KV, a day of compression time.
 * Sums of 64 workers x any batch of such values stay far from INT64_MAX. */
#define COORD_REPLY_BYTES_MAX   ((int64_t)1 << 40)
#define COORD_REPLY_SECONDS_MAX 86400.0

typedef struct coord_reply_want {
    uint64_t step_id;
    int n_logits;         /* rows of logits this rank must return (0 but on rank 0) */
    int n_vocab;          /* floats per row */
    const int32_t *slots; /* the batch's slots in first-appearance order */
    int n_slots;
    int64_t max_entries; /* KV entries one slot can hold on this worker (all its heads) */
} coord_reply_want;

/* EM_OK when sr says exactly what was asked: then kv_slots, kv_entries and kv_bytes have
 * n_slots elements and logits is n_logits x n_vocab floats. Else EM_EPROTO with the first
 * difference in why. */
em_status coord_step_reply_check(const Emserve__Internal__V1__StepResponse *sr,
                                 const coord_reply_want *w, char *why, size_t whylen);
