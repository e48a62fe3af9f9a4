/* gRPC's own log lines (gpr_log) through common/log.h, so that a process writes one format:
 * function "grpc", message "file.cc:123 text", gRPC's severities mapped onto ours. gRPC still
 * decides what it logs (GRPC_VERBOSITY, default ERROR). */
#pragma once

/* Installs the route; call once, before grpc_init. */
void rpc_log_route(void);
