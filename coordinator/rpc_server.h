/* The public gRPC server: emserve.v1.Emserve (Generate streaming, Abort, GetModelInfo,
 * GetServerInfo, Tokenize) and grpc.health.v1.Health (Check, and Watch streaming every change;
 * service "" / "emserve.v1.Emserve" / "readiness": every worker joined, "liveness": the process
 * is up), on one completion-queue thread. Each call
 * has one heap context whose embedded tags carry an explicit state; the scheduler thread
 * pushes stream messages through the context's queue (one SEND_MESSAGE in flight). */
#pragma once

#include "common/status.h"
#include "common/version.h" /* EMSERVE_VERSION */
#include "coordinator/chat_template.h"
#include "coordinator/group.h"
#include "coordinator/sched.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rpc/rpc_tls.h"

typedef struct coord_server coord_server;

typedef struct coord_server_opts {
    const char *listen_addr; /* "HOST:PORT", port 0 = pick one */
    const char *model_path;
    const model *m;
    const tokenizer *tok;
    const coord_chat_template *chat; /* the model's chat template (family NONE: none) */
    coord_sched *sched;
    coord_group *group;
    int max_batch_tokens, max_slots;
    long max_message_bytes;   /* cap on a received message (<= 0: 4 MiB) */
    const char *admin_secret; /* GetServerInfo shows worker addresses and pids only to calls
                               * carrying it (rpc_auth.h); NULL: to nobody */

    const rpc_tls *tls; /* TLS on the port (a CA: client certificates required; rpc_tls.h);
                         * NULL: plaintext */
} coord_server_opts;

/* Binds and starts the server thread; *port gets the bound port. */
em_status coord_server_start(const coord_server_opts *o, coord_server **out, int *port, char *err,
                             size_t errlen);
/* Graceful drain (before phase 1): stop accepting calls (new ones are refused by the transport
 * with UNAVAILABLE), let the running ones go on. */
void coord_server_drain(coord_server *s);
/* Generate calls not finished yet (their last message and status may still be on the way after
 * the scheduler is done with them): a drain waits for 0. Thread-safe. */
int coord_server_streams(coord_server *s);
/* Phase 1 of shutdown: stop accepting calls and cancel running ones. Then stop the scheduler
 * (which releases its calls), then coord_server_join. */
void coord_server_shutdown(coord_server *s);
/* Phase 2: waits for every call to be freed and the thread to exit; frees s. */
void coord_server_join(coord_server *s);
