/* The worker's gRPC server: a completion-queue loop on one thread that decodes the internal
 * protocol (Hello, FormGroup, Step), runs it on the worker_state and encodes the reply. */
#pragma once
#include <signal.h>

#include "common/status.h"
#include "rpc/rpc_tls.h"
#include "worker/wstate.h"

/* Serves on listen_addr ("HOST:PORT", port 0 = pick one) until *stop becomes non-zero.
 * Every call must carry w->cluster_secret (else UNAUTHENTICATED); a FormGroup must carry a group
 * token (rpc_auth.h) and, once a group is formed, a Step without that group's token is
 * PERMISSION_DENIED (only the coordinator that formed the group steps it); received messages are
 * capped at max_message_bytes (<= 0: the rpc default, 4 MiB). With tls on (rpc/rpc_tls.h) the port
 * speaks TLS only and, with its CA, only to clients holding a certificate the CA signed (the
 * coordinator's); NULL: plaintext. Calls on_listening(port) once bound (e.g. to report it to
 * the coordinator). grpc_init and grpc_shutdown are done by the caller. */
em_status worker_rpc_serve(worker_state *w, const char *listen_addr, long max_message_bytes,
                           const rpc_tls *tls, volatile sig_atomic_t *stop,
                           void (*on_listening)(int port, void *user), void *user);
