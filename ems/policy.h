/* The compression entry point: after each engine_forward the generation loop calls
 * ems_policy_step, which decides per (layer, KV head) what to keep, merge or quantize
 * according to an ems_config, and applies it with ems_head_compact and in-place merges.
 *
 * Distributed use: a worker holds only its own KV heads (c->kv_head0 ..). Policies that decide
 * across the heads of a layer (TOVA per layer, SimLayerKV, EMS head-wise budgets) fill a zeroed
 * buffer indexed by GLOBAL KV head, sum it over workers with the reduce hook and decide
 * identically everywhere, so results never depend on the worker count. Every worker must call
 * ems_policy_step for the same sequence at the same point (the hook is called the same number
 * of times on each). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "ems/config.h"
#include "ems/kv_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PREFILL_CHUNK: after a chunk of the prompt that is not its last; only a config with
 * prefill_keep > 0 does anything then (a head holding more than prefill_keep + slack entries
 * is compressed back to prefill_keep, scored like the prefill-end step). */
enum { EMS_PHASE_PREFILL_END = 0, EMS_PHASE_DECODE = 1, EMS_PHASE_PREFILL_CHUNK = 2 };

typedef struct ems_reduce {
    /* all-reduce (sum) of n floats in place over worker processes; EM_OK on success.
     * NULL = a single process. */
    em_status (*fn)(void *user, float *buf, size_t n);
    void *user;
    int n_head_kv_global; /* KV heads of the model (0 = c->n_head_kv, one process) */
} ems_reduce;

/* Runs the policy of cfg on cache c. phase EMS_PHASE_PREFILL_END after the prompt's forward,
 * EMS_PHASE_DECODE after each later forward, EMS_PHASE_PREFILL_CHUNK after each earlier chunk
 * of the prompt (a no-op unless cfg->prefill_keep > 0). Returns quickly when nothing is due. On the
 * first call with cfg->quant set, the heads become quantized (entries older than the residual). red
 * may be NULL (one process). Errors: EM_EINVAL (cfg invalid), EM_ENOMEM, EM_EUNAVAILABLE (reduce
 * hook failed; the cache is then unchanged for the failing layer). */
em_status ems_policy_step(ems_cache *c, const ems_config *cfg, int phase, const ems_reduce *red);

/* Running totals for a cache (compression cost and what happened). */
typedef struct ems_policy_stats {
    int64_t n_events;    /* compression events (per layer or head that was compressed) */
    int64_t n_steps;     /* ems_policy_step calls that compressed something */
    int64_t n_evicted;   /* entries dropped without merging */
    int64_t n_merged;    /* entries merged into a centre */
    double mass_evicted; /* tokens represented by the dropped entries (merge mass) */
    double seconds;      /* wall time spent inside ems_policy_step */
    int n_lazy_layers;   /* SimLayerKV: layers found lazy (-1 before the decision) */
} ems_policy_stats;
void ems_policy_get_stats(const ems_cache *c, ems_policy_stats *out);

/* Bytes of the policy state allocated on c (0 before the first ems_policy_step). */
uint64_t ems_policy_state_bytes(const ems_cache *c);

/* Copies the policy state of src (running stats, SimLayerKV decisions, ...) to dst, which has
 * none yet and the same number of layers (ems_cache_clone). EM_EINVAL otherwise, EM_ENOMEM. */
em_status ems_policy_copy_state(const ems_cache *src, ems_cache *dst);

#ifdef __cplusplus
}
#endif
