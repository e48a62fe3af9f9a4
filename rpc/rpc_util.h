/* gRPC C core helpers shared by the coordinator and the workers: protobuf-c <-> byte buffer,
 * em_status <-> grpc_status_code (the one mapping at the RPC edge), channel/server arguments,
 * and unary client calls (blocking, or started on a shared queue). The server side of a call is
 * in rpc_serve.h. Protobuf types never leave the rpc_* adapters. */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "common/status.h"
#include "rpc/rpc_auth.h"

/* Packs msg into a new byte buffer (destroy after the batch that sends it completes). */
grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg);
/* Unpacks bb (NULL -> NULL); a malformed message -> NULL. Free with
 * protobuf_c_message_free_unpacked. */
ProtobufCMessage *rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);

grpc_status_code rpc_status_from_em(em_status st);
em_status rpc_status_to_em(grpc_status_code code);

/* Channel / server arguments: unlimited message sizes, keepalive for fast peer-loss detection.
 * Returns a pointer to static storage. */
const grpc_channel_args *rpc_channel_args(void);

/* The same arguments with bounds, in caller storage: max_recv_bytes caps every received
 * message (<= 0: unlimited), and on a server SO_REUSEPORT is off (a second process cannot bind
 * the same port and split the connections). Returns &a->ca. */
#define RPC_MAX_MESSAGE_DEFAULT (4L << 20) /* servers' cap on a received message */

typedef struct rpc_args {
    grpc_arg arg[8];
    grpc_channel_args ca;
} rpc_args;
const grpc_channel_args *rpc_args_init(rpc_args *a, long max_recv_bytes, int server);
/* Adds to a's arguments the name a TLS server's certificate is checked against instead of the
 * target's host (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG; NULL or "": nothing added). name must
 * outlive the channels made with a. */
void rpc_args_set_tls_name(rpc_args *a, const char *name);

/* Blocking unary call on a private pluck queue. On success *resp is the unpacked reply.
 * Returns the gRPC status; details (if non-NULL) gets the status message. */
grpc_status_code rpc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                           long timeout_ms, int wait_for_ready, char *details, size_t details_len);
/* The same carrying the cluster secret (rpc_auth.h) in the call's metadata (NULL/"": none). */
grpc_status_code rpc_unary_auth(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, long timeout_ms, int wait_for_ready,
                                const char *secret, char *details, size_t details_len);

/* The same with a group token too (rpc_auth.h; NULL/"": none). */
grpc_status_code rpc_unary_token(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc,
                                 ProtobufCMessage **resp, long timeout_ms, const char *secret,
                                 const char *token, char *details, size_t details_len);

/* Copies a grpc_slice into a NUL-terminated buffer (truncating). */
void rpc_slice_str(grpc_slice s, char *buf, size_t len);

/* Shuts down a queue created for pluck, drains it and destroys it. */
void rpc_pluck_cq_destroy(grpc_completion_queue *cq);

/* Milliseconds from now as a monotonic deadline (<= 0: infinite). */
gpr_timespec rpc_deadline_ms(long ms);

/* "UNAVAILABLE", "INVALID_ARGUMENT", ... */
const char *rpc_status_name(grpc_status_code code);

/* An asynchronous unary call on a caller-owned pluck queue: start several (one per worker),
 * then finish each. The pending struct's address is the tag. */
typedef struct rpc_pending {
    grpc_call *call;
    grpc_byte_buffer *send, *recv;
    grpc_metadata_array init_md, trail_md;
    grpc_status_code status;
    grpc_slice details;
    int started;
    grpc_metadata md[2]; /* the secret and the group token, when the call carries them */
    char md_value[RPC_SECRET_MAX + 8];
} rpc_pending;

/* ch may be NULL (the call then finishes at once with UNAVAILABLE). */
void rpc_pending_start(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                       const char *method, const ProtobufCMessage *msg, long timeout_ms);
/* The same carrying the cluster secret (NULL/"": none). */
void rpc_pending_start_auth(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                            const char *method, const ProtobufCMessage *msg, long timeout_ms,
                            const char *secret);
/* The same also carrying a group token (rpc_auth.h; NULL/"": none). token must outlive the
 * call's start (it is referenced, not copied). */
void rpc_pending_start_token(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                             const char *method, const ProtobufCMessage *msg, long timeout_ms,
                             const char *secret, const char *token);
/* Waits for p; returns the status, the unpacked reply in *out (or NULL; free it with
 * protobuf_c_message_free_unpacked) and the status message in why. Frees the call. */
grpc_status_code rpc_pending_finish(grpc_completion_queue *cq, rpc_pending *p,
                                    const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                                    char *why, size_t whylen);
