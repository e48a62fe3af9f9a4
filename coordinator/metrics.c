/* The Prometheus text of the coordinator (see metrics.h). */
#include "coordinator/metrics.h"

#include <stdio.h>

/* The KV memory budget's gauges and counters (coordinator/sched_kv.h). */
static size_t render_kv_budget(const coord_sched_stats *st, char *buf, size_t cap)
{
    int n = snprintf(
        buf, cap,
        "# HELP emserve_kv_memory_budget_bytes KV memory budget per worker (0 = none).\n"
        "# TYPE emserve_kv_memory_budget_bytes gauge\n"
        "emserve_kv_memory_budget_bytes %lld\n"
        "# HELP emserve_kv_memory_used_bytes KV bytes held for running sequences on the fullest "
        "worker.\n"
        "# TYPE emserve_kv_memory_used_bytes gauge\n"
        "emserve_kv_memory_used_bytes %lld\n"
        "# HELP emserve_kv_memory_peak_bytes Most KV bytes any worker held at any step so far.\n"
        "# TYPE emserve_kv_memory_peak_bytes gauge\n"
        "emserve_kv_memory_peak_bytes %lld\n"
        "# HELP emserve_num_requests_running_max Most requests running at once so far.\n"
        "# TYPE emserve_num_requests_running_max gauge\n"
        "emserve_num_requests_running_max %d\n"
        "# HELP emserve_preemptions_total Sequences preempted for KV memory (recomputed).\n"
        "# TYPE emserve_preemptions_total counter\n"
        "emserve_preemptions_total %lld\n",
        (long long)st->kv_budget, (long long)st->kv_held, (long long)st->kv_peak, st->running_max,
        (long long)st->preemptions);
    if (n < 0) {
        return 0;
    }
    return (size_t)n < cap ? (size_t)n : cap;
}

size_t coord_metrics_render(const coord_sched_stats *st, int64_t kv_capacity, char *buf, size_t cap)
{
    double usage = kv_capacity > 0 ? (double)st->kv_entries / (double)kv_capacity : 0.0;
    int n = snprintf(
        buf, cap,
        "# HELP emserve_num_requests_running Requests with a sequence slot (prefill or decode).\n"
        "# TYPE emserve_num_requests_running gauge\n"
        "emserve_num_requests_running %d\n"
        "# HELP emserve_num_requests_waiting Requests queued for a slot.\n"
        "# TYPE emserve_num_requests_waiting gauge\n"
        "emserve_num_requests_waiting %d\n"
        "# HELP emserve_kv_cache_usage_perc KV entries held / (max sequences x context x layers x "
        "KV heads).\n"
        "# TYPE emserve_kv_cache_usage_perc gauge\n"
        "emserve_kv_cache_usage_perc %.6f\n"
        "# HELP emserve_kv_cache_entries KV entries held for running sequences (all workers).\n"
        "# TYPE emserve_kv_cache_entries gauge\n"
        "emserve_kv_cache_entries %lld\n"
        "# HELP emserve_serving 1 while every worker has joined the group.\n"
        "# TYPE emserve_serving gauge\n"
        "emserve_serving %d\n"
        "# HELP emserve_group_generation Worker-group formations so far.\n"
        "# TYPE emserve_group_generation gauge\n"
        "emserve_group_generation %lld\n"
        "# TYPE emserve_requests_total counter\n"
        "emserve_requests_total %lld\n"
        "# TYPE emserve_requests_failed_total counter\n"
        "emserve_requests_failed_total %lld\n"
        "# TYPE emserve_prompt_tokens_total counter\n"
        "emserve_prompt_tokens_total %lld\n"
        "# TYPE emserve_generation_tokens_total counter\n"
        "emserve_generation_tokens_total %lld\n"
        "# TYPE emserve_steps_total counter\n"
        "emserve_steps_total %lld\n",
        st->running, st->queued, usage, (long long)st->kv_entries, st->serving,
        (long long)st->generation, (long long)st->requests_total, (long long)st->requests_failed,
        (long long)st->prompt_tokens, (long long)st->tokens_generated, (long long)st->steps);
    if (n < 0 || (size_t)n >= cap) {
        return n < 0 ? 0 : cap - 1;
    }
    size_t len = (size_t)n;
    len += render_kv_budget(st, buf + len, cap - len);
    if (len >= cap) {
        return cap - 1;
    }
    const coord_lat_hist *hs[3] = {&st->ttft, &st->itl, &st->queue};
    static const char *const names[3] = {"emserve_time_to_first_token_seconds",
                                         "emserve_time_per_output_token_seconds",
                                         "emserve_request_queue_time_seconds"};
    for (int h = 0; h < 3 && len < cap; h++) {
        int64_t cum = 0;
        len += (size_t)snprintf(buf + len, cap - len, "# TYPE %s histogram\n", names[h]);
        for (int b = 0; b <= COORD_LAT_BUCKETS && len < cap; b++) {
            cum += hs[h]->count[b];
            if (b < COORD_LAT_BUCKETS) {
                len += (size_t)snprintf(buf + len, cap - len, "%s_bucket{le=\"%g\"} %lld\n",
                                        names[h], coord_lat_bucket_ms[b] / 1e3, (long long)cum);
            } else {
                len += (size_t)snprintf(buf + len, cap - len, "%s_bucket{le=\"+Inf\"} %lld\n",
                                        names[h], (long long)cum);
            }
        }
        if (len < cap) {
            len += (size_t)snprintf(buf + len, cap - len, "%s_sum %.6f\n%s_count %lld\n", names[h],
                                    hs[h]->sum_ms / 1e3, names[h], (long long)hs[h]->n);
        }
    }
    return len < cap ? len : cap - 1;
}
