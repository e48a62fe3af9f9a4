/* gRPC C core helpers (see rpc_util.h). */
#include "rpc/rpc_util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    size_t w = protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    if (w != n) { /* our bug: the two sizes must match */
        grpc_slice_unref(s);
        return NULL;
    }
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

ProtobufCMessage *rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d)
{
    if (bb == NULL) {
        return NULL;
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return NULL;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    grpc_slice_unref(all);
    grpc_byte_buffer_reader_destroy(&r);
    return m;
}

grpc_status_code rpc_status_from_em(em_status st)
{
    switch (st) {
    case EM_OK:
        return GRPC_STATUS_OK;
    case EM_EINVAL:
    case EM_EPROTO:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case EM_ENOMEM:
    case EM_ENOSPC:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case EM_ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case EM_ECANCELED:
        return GRPC_STATUS_CANCELLED;
    case EM_EUNSUPPORTED:
        return GRPC_STATUS_UNIMPLEMENTED;
    case EM_EUNAVAILABLE:
    case EM_EIO:
        return GRPC_STATUS_UNAVAILABLE;
    case EM_EDEVICE:
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

em_status rpc_status_to_em(grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_OK:
        return EM_OK;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return EM_EINVAL;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return EM_ENOSPC;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return EM_ETIMEDOUT;
    case GRPC_STATUS_CANCELLED:
        return EM_ECANCELED;
    case GRPC_STATUS_UNIMPLEMENTED:
        return EM_EUNSUPPORTED;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return EM_EPROTO;
    default:
        return EM_EUNAVAILABLE;
    }
}

static grpc_arg g_chan_args[5];
static grpc_channel_args g_chan;
static pthread_once_t g_chan_once = PTHREAD_ONCE_INIT;

static void chan_args_init(void)
{
    g_chan_args[0].type = GRPC_ARG_INTEGER;
    g_chan_args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    g_chan_args[0].value.integer = -1;
    g_chan_args[1].type = GRPC_ARG_INTEGER;
    g_chan_args[1].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    g_chan_args[1].value.integer = -1;
    g_chan_args[2].type = GRPC_ARG_INTEGER; /* reconnect quickly to a restarted worker */
    g_chan_args[2].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    g_chan_args[2].value.integer = 500;
    g_chan_args[3].type = GRPC_ARG_INTEGER;
    g_chan_args[3].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    g_chan_args[3].value.integer = 100;
    /* gRPC reads this one as the shortest time a connection attempt may take (its deadline is
     * the later of the next backoff time and now + this): at 100 ms a TLS handshake on a loaded
     * machine timed out ("connection attempt timed out before receiving SETTINGS frame"). A
     * dead worker's port refuses at once, so reconnection stays as quick as the backoff above. */
    g_chan_args[4].type = GRPC_ARG_INTEGER;
    g_chan_args[4].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    g_chan_args[4].value.integer = 3000;
    g_chan.args = g_chan_args;
    g_chan.num_args = 5;
}

/* Built once (pthread_once: clients are created from several threads). */
const grpc_channel_args *rpc_channel_args(void)
{
    pthread_once(&g_chan_once, chan_args_init);
    return &g_chan;
}

const grpc_channel_args *rpc_args_init(rpc_args *a, long max_recv_bytes, int server)
{
    const grpc_channel_args *base = rpc_channel_args();
    size_t n = 0;
    int cap =
        max_recv_bytes <= 0 ? -1 : (max_recv_bytes < 0x7fffffff ? (int)max_recv_bytes : 0x7fffffff);
    for (size_t i = 0; i < base->num_args && n < 6; i++) {
        a->arg[n] = base->args[i];
        if (strcmp(a->arg[n].key, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH) == 0) {
            a->arg[n].value.integer = cap;
        }
        n++;
    }
    if (server) {
        a->arg[n].type = GRPC_ARG_INTEGER;
        a->arg[n].key = GRPC_ARG_ALLOW_REUSEPORT;
        a->arg[n++].value.integer = 0;
    }
    a->ca.args = a->arg;
    a->ca.num_args = n;
    return &a->ca;
}

void rpc_args_set_tls_name(rpc_args *a, const char *name)
{
    size_t n = a->ca.num_args;
    if (name == NULL || name[0] == 0 || n >= sizeof a->arg / sizeof a->arg[0]) {
        return;
    }
    a->arg[n].type = GRPC_ARG_STRING;
    a->arg[n].key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    a->arg[n].value.string = (char *)name;
    a->ca.num_args = n + 1;
}

void rpc_slice_str(grpc_slice s, char *buf, size_t len)
{
    if (len == 0) {
        return;
    }
    size_t n = GRPC_SLICE_LENGTH(s);
    if (n >= len) {
        n = len - 1;
    }
    memcpy(buf, GRPC_SLICE_START_PTR(s), n);
    buf[n] = 0;
}

gpr_timespec rpc_deadline_ms(long ms)
{
    if (ms <= 0) {
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    }
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

void rpc_pluck_cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    grpc_completion_queue_destroy(cq);
}

/* Starts the six-op unary batch of p (tag p); md_flags go on the initial metadata. */
static void pending_begin(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                          const char *method, const ProtobufCMessage *msg, long timeout_ms,
                          uint32_t md_flags, const char *secret, const char *token)
{
    memset(p, 0, sizeof *p);
    grpc_metadata_array_init(&p->init_md);
    grpc_metadata_array_init(&p->trail_md);
    p->details = grpc_empty_slice();
    p->status = GRPC_STATUS_UNAVAILABLE;
    if (ch == NULL) {
        return;
    }
    p->call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       grpc_slice_from_static_string(method), NULL,
                                       rpc_deadline_ms(timeout_ms), NULL);
    p->send = rpc_pack(msg);
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].flags = md_flags;
    size_t n_md = 0;
    if (secret && secret[0]) {
        rpc_secret_metadata(secret, &p->md[n_md++], p->md_value, sizeof p->md_value);
    }
    if (token && token[0]) {
        p->md[n_md].key = grpc_slice_from_static_string(RPC_GROUP_TOKEN_KEY);
        p->md[n_md++].value = grpc_slice_from_static_string(token);
    }
    ops[0].data.send_initial_metadata.count = n_md;
    ops[0].data.send_initial_metadata.metadata = n_md ? p->md : NULL;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = p->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &p->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &p->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &p->trail_md;
    ops[5].data.recv_status_on_client.status = &p->status;
    ops[5].data.recv_status_on_client.status_details = &p->details;
    p->started = grpc_call_start_batch(p->call, ops, 6, p, NULL) == GRPC_CALL_OK;
}

grpc_status_code rpc_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                           const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                           long timeout_ms, int wait_for_ready, char *details, size_t details_len)
{
    return rpc_unary_auth(ch, method, req, resp_desc, resp, timeout_ms, wait_for_ready, NULL,
                          details, details_len);
}

/* One blocking unary call on a private pluck queue (rpc_unary_auth, rpc_unary_token). */
static grpc_status_code unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                              long timeout_ms, uint32_t md_flags, const char *secret,
                              const char *token, char *details, size_t details_len)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    rpc_pending p;
    pending_begin(cq, &p, ch, method, req, timeout_ms, md_flags, secret, token);
    if (p.call && !p.started) {
        p.status = GRPC_STATUS_INTERNAL; /* the batch was refused: our bug */
    }
    grpc_status_code status = rpc_pending_finish(cq, &p, resp_desc, resp, details, details_len);
    rpc_pluck_cq_destroy(cq);
    return status;
}

grpc_status_code rpc_unary_auth(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                const ProtobufCMessageDescriptor *resp_desc,
                                ProtobufCMessage **resp, long timeout_ms, int wait_for_ready,
                                const char *secret, char *details, size_t details_len)
{
    return unary(ch, method, req, resp_desc, resp, timeout_ms,
                 wait_for_ready ? GRPC_INITIAL_METADATA_WAIT_FOR_READY : 0, secret, NULL, details,
                 details_len);
}

grpc_status_code rpc_unary_token(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *resp_desc,
                                 ProtobufCMessage **resp, long timeout_ms, const char *secret,
                                 const char *token, char *details, size_t details_len)
{
    return unary(ch, method, req, resp_desc, resp, timeout_ms, 0, secret, token, details,
                 details_len);
}

const char *rpc_status_name(grpc_status_code code)
{
    static const char *const names[] = {"OK",
                                        "CANCELLED",
                                        "UNKNOWN",
                                        "INVALID_ARGUMENT",
                                        "DEADLINE_EXCEEDED",
                                        "NOT_FOUND",
                                        "ALREADY_EXISTS",
                                        "PERMISSION_DENIED",
                                        "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION",
                                        "ABORTED",
                                        "OUT_OF_RANGE",
                                        "UNIMPLEMENTED",
                                        "INTERNAL",
                                        "UNAVAILABLE",
                                        "DATA_LOSS",
                                        "UNAUTHENTICATED"};
    return (code >= 0 && code < (int)(sizeof names / sizeof names[0])) ? names[code] : "?";
}
void rpc_pending_start(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                       const char *method, const ProtobufCMessage *msg, long timeout_ms)
{
    pending_begin(cq, p, ch, method, msg, timeout_ms, 0, NULL, NULL);
}

void rpc_pending_start_auth(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                            const char *method, const ProtobufCMessage *msg, long timeout_ms,
                            const char *secret)
{
    pending_begin(cq, p, ch, method, msg, timeout_ms, 0, secret, NULL);
}

void rpc_pending_start_token(grpc_completion_queue *cq, rpc_pending *p, grpc_channel *ch,
                             const char *method, const ProtobufCMessage *msg, long timeout_ms,
                             const char *secret, const char *token)
{
    pending_begin(cq, p, ch, method, msg, timeout_ms, 0, secret, token);
}

grpc_status_code rpc_pending_finish(grpc_completion_queue *cq, rpc_pending *p,
                                    const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
                                    char *why, size_t whylen)
{
    *out = NULL;
    if (p->started) {
        grpc_completion_queue_pluck(cq, p, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    if (why) {
        rpc_slice_str(p->details, why, whylen);
    }
    grpc_status_code st = p->status;
    if (st == GRPC_STATUS_OK) {
        *out = rpc_unpack(p->recv, d);
        if (*out == NULL) {
            st = GRPC_STATUS_INTERNAL;
            if (why) {
                snprintf(why, whylen, "malformed reply");
            }
        }
    } else if (!p->started && why) {
        snprintf(why, whylen, "no channel");
    }
    grpc_slice_unref(p->details);
    if (p->recv) {
        grpc_byte_buffer_destroy(p->recv);
    }
    if (p->send) {
        grpc_byte_buffer_destroy(p->send);
    }
    grpc_metadata_array_destroy(&p->init_md);
    grpc_metadata_array_destroy(&p->trail_md);
    if (p->call) {
        grpc_call_unref(p->call);
    }
    return st;
}
