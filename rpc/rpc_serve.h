/* Server-side gRPC C core plumbing shared by the public server (coordinator/rpc_server.c) and
 * the worker (worker/rpc_worker.c): creating a listening server, the per-call state every
 * handler needs, asking for the next call, receiving its request and sending a unary reply. */
#pragma once
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "rpc/rpc_tls.h"

/* The server side of one call; embedded in each server's own call struct. */
typedef struct rpc_scall {
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_byte_buffer *request; /* the request message, once received */
    grpc_byte_buffer *reply;   /* the packed unary reply */
    grpc_slice status;         /* details sent with the final status */
    int cancelled;             /* written by GRPC_OP_RECV_CLOSE_ON_SERVER */
} rpc_scall;

/* An insecure server on addr with a new completion queue (for next) registered; *port gets the
 * bound port. NULL when it cannot listen (nothing is left to free). Start it with
 * grpc_server_start. Received messages are capped at RPC_MAX_MESSAGE_DEFAULT bytes (larger ones
 * end with RESOURCE_EXHAUSTED before they are read) and SO_REUSEPORT is off. */
grpc_server *rpc_server_create(const char *addr, grpc_completion_queue **cq, int *port);
/* The same with another cap on received messages (<= 0: RPC_MAX_MESSAGE_DEFAULT). */
grpc_server *rpc_server_create_capped(const char *addr, grpc_completion_queue **cq, int *port,
                                      long max_recv_bytes);
/* The same speaking TLS with tls's certificate (mutual TLS when it has a CA; rpc_tls.h); NULL
 * or a tls without a certificate: insecure. */
grpc_server *rpc_server_create_tls(const char *addr, grpc_completion_queue **cq, int *port,
                                   long max_recv_bytes, const rpc_tls *tls);

/* Waits up to ms for the next event on a queue created for next. */
grpc_event rpc_cq_next_ms(grpc_completion_queue *cq, long ms);

/* Initialises sc and asks srv for its next call, completing on cq with tag. Returns 0 when it
 * could not be asked (sc is then released). */
int rpc_scall_request(grpc_server *srv, grpc_completion_queue *cq, rpc_scall *sc, void *tag);

/* Starts receiving the request message into sc->request. 0: not started (no completion). */
int rpc_scall_recv(rpc_scall *sc, void *tag);

/* Unary reply on tag: initial metadata, msg (only when non-NULL and code is OK), the status with
 * why (NULL = ""), and close. 0: not started (no completion will come for tag). */
int rpc_scall_reply(rpc_scall *sc, const ProtobufCMessage *msg, grpc_status_code code,
                    const char *why, void *tag);

/* Releases what sc holds (not sc itself). */
void rpc_scall_release(rpc_scall *sc);
