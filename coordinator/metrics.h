/* The coordinator's Prometheus text (served as GET /metrics by http_server.h): request queue and
 * running gauges, KV-cache use, token and request counters, worker-group state. The gauges follow
 * the model-server protocol of the Gateway API Inference Extension (serving-anchors.md section 6):
 * queued requests, running requests, KV-cache utilization. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sched.h"

/* Renders the metrics text into buf (NUL-terminated); returns its length (cap - 1 when it was
 * cut). kv_capacity = the entry count the usage gauge is relative to (max sequences x context x
 * layers x KV heads). */
size_t coord_metrics_render(const coord_sched_stats *st, int64_t kv_capacity, char *buf,
                            size_t cap);
