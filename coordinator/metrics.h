/* The coordinator's Prometheus text (served as GET /metrics by http_server.h), vLLM/SGLang-style
 * names with the emserve_ prefix and HELP and TYPE on every family: request queue and running
 * gauges, per-request latency and length histograms, requests by finish reason and errors by
 * reason, token counters, KV memory (bytes held f32 / quantized, what full caches would hold,
 * use of the --kv-memory budget), compression counters by method, worker-group state and build
 * info. The gauges follow the model-server protocol of the Gateway API Inference Extension
 * (serving-anchors.md section 6): queued requests, running requests, KV-cache utilization. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sched.h"

/* Renders the metrics text into buf (NUL-terminated); returns its length (cap - 1 when it was
 * cut: the caller retries with a larger buffer). */
size_t coord_metrics_render(const coord_sched_stats *st, char *buf, size_t cap);
