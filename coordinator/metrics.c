/* The Prometheus text of the coordinator (see metrics.h). */
#include "coordinator/metrics.h"

#include <stdio.h>

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
    const coord_lat_hist *hs[2] = {&st->ttft, &st->itl};
    static const char *const names[2] = {"emserve_time_to_first_token_seconds",
                                         "emserve_time_per_output_token_seconds"};
    for (int h = 0; h < 2 && len < cap; h++) {
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
