/* A Prometheus text endpoint (HTTP/1.0 GET /metrics) for the coordinator: request queue and
 * running gauges, KV-cache use, token and request counters, worker-group state. The gauges follow
 * the model-server protocol of the Gateway API Inference Extension (serving-anchors.md section 6):
 * queued requests, running requests, KV-cache utilization. One thread, plain sockets. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sched.h"

typedef struct coord_metrics coord_metrics;

/* Serves on listen_addr ("HOST:PORT", port 0 = any; *port gets it). kv_capacity = the entry count
 * the usage gauge is relative to (max sequences x context x layers x KV heads). */
em_status coord_metrics_start(const char *listen_addr, coord_sched *sched, int64_t kv_capacity,
                              coord_metrics **out, int *port, char *err, size_t errlen);
void coord_metrics_stop(coord_metrics *m); /* NULL ok */

/* Renders the metrics text into buf (NUL-terminated); returns its length. */
size_t coord_metrics_render(const coord_sched_stats *st, int64_t kv_capacity, char *buf,
                            size_t cap);
