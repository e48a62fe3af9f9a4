/* Validation of a worker's StepResponse (see step_reply.h). */
#include "coordinator/step_reply.h"

#include <stdio.h>

static int count_ok(int64_t v, int64_t max)
{
    return v >= 0 && v <= max;
}

em_status coord_step_reply_check(const Emserve__Internal__V1__StepResponse *sr,
                                 const coord_reply_want *w, char *why, size_t whylen)
{
    size_t want_bytes = sizeof(float) * (size_t)w->n_logits * (size_t)w->n_vocab;
    if (sr->step_id != w->step_id) {
        snprintf(why, whylen, "reply to step %llu, expected %llu", (unsigned long long)sr->step_id,
                 (unsigned long long)w->step_id);
        return EM_EPROTO;
    }
    size_t n = (size_t)w->n_slots;
    if (sr->n_kv_slots != n || sr->n_kv_entries != n || sr->n_kv_bytes != n) {
        snprintf(why, whylen, "%zu slots and %zu entry counts (%zu byte counts), expected %d",
                 sr->n_kv_slots, sr->n_kv_entries, sr->n_kv_bytes, w->n_slots);
        return EM_EPROTO;
    }
    size_t nc = sr->n_kv_bytes_quant; /* the metrics fields: all n_slots long, or all empty */
    if ((nc != 0 && nc != n) || sr->n_kv_evicted != nc || sr->n_kv_merged != nc ||
        sr->n_kv_quantized != nc || sr->n_compress_seconds != nc) {
        snprintf(why, whylen, "compression counts for %zu/%zu/%zu/%zu/%zu slots, expected %d or 0",
                 nc, sr->n_kv_evicted, sr->n_kv_merged, sr->n_kv_quantized, sr->n_compress_seconds,
                 w->n_slots);
        return EM_EPROTO;
    }
    for (size_t i = 0; i < nc; i++) {
        if (!count_ok(sr->kv_bytes_quant[i], COORD_REPLY_BYTES_MAX) ||
            !count_ok(sr->kv_evicted[i], w->max_entries) ||
            !count_ok(sr->kv_merged[i], w->max_entries) ||
            !count_ok(sr->kv_quantized[i], w->max_entries) ||
            !(sr->compress_seconds[i] >= 0 && sr->compress_seconds[i] <= COORD_REPLY_SECONDS_MAX)) {
            snprintf(why, whylen, "compression count out of range for slot %d", w->slots[i]);
            return EM_EPROTO;
        }
    }
    if (!count_ok(sr->kv_bytes_peak, COORD_REPLY_BYTES_MAX)) {
        snprintf(why, whylen, "KV byte peak %lld out of range", (long long)sr->kv_bytes_peak);
        return EM_EPROTO;
    }
    for (int i = 0; i < w->n_slots; i++) {
        if (sr->kv_slots[i] != w->slots[i]) {
            snprintf(why, whylen, "slot %d is %d, expected %d", i, sr->kv_slots[i], w->slots[i]);
            return EM_EPROTO;
        }
        if (sr->kv_entries[i] < 0 || sr->kv_entries[i] > w->max_entries) {
            snprintf(why, whylen, "%lld KV entries for slot %d (at most %lld)",
                     (long long)sr->kv_entries[i], w->slots[i], (long long)w->max_entries);
            return EM_EPROTO;
        }
        if (!count_ok(sr->kv_bytes[i], COORD_REPLY_BYTES_MAX)) {
            snprintf(why, whylen, "%lld KV bytes for slot %d (at most %lld)",
                     (long long)sr->kv_bytes[i], w->slots[i], (long long)COORD_REPLY_BYTES_MAX);
            return EM_EPROTO;
        }
    }
    if (sr->n_logits != w->n_logits || sr->logits.len != want_bytes) {
        snprintf(why, whylen, "%d logits rows in %zu bytes, expected %d in %zu", sr->n_logits,
                 sr->logits.len, w->n_logits, want_bytes);
        return EM_EPROTO;
    }
    return EM_OK;
}
