/* gRPC's log through ours (see rpc_log.h). */
#include "rpc/rpc_log.h"

#include <stdio.h>
#include <string.h>

#include <grpc/support/log.h>

#include "common/log.h"

static void on_grpc_log(gpr_log_func_args *a)
{
    em_log_level lvl = a->severity == GPR_LOG_SEVERITY_ERROR  ? EM_LOG_ERROR
                       : a->severity == GPR_LOG_SEVERITY_INFO ? EM_LOG_INFO
                                                              : EM_LOG_DEBUG;
    const char *file = a->file ? a->file : "?", *base = strrchr(file, '/');
    char msg[1024];
    snprintf(msg, sizeof msg, "%s:%d %s", base ? base + 1 : file, a->line,
             a->message ? a->message : "");
    em_log_message(lvl, "grpc", msg);
}

void rpc_log_route(void)
{
    gpr_set_log_function(on_grpc_log);
}
