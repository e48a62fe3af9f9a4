/* Server-side gRPC C core plumbing shared by the coordinator and the worker (see rpc_serve.h). */
#include "rpc/rpc_serve.h"

#include <string.h>

#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "rpc/rpc_util.h"

grpc_server *rpc_server_create(const char *addr, grpc_completion_queue **cq, int *port)
{
    return rpc_server_create_capped(addr, cq, port, RPC_MAX_MESSAGE_DEFAULT);
}

grpc_server *rpc_server_create_capped(const char *addr, grpc_completion_queue **cq, int *port,
                                      long max_recv_bytes)
{
    return rpc_server_create_tls(addr, cq, port, max_recv_bytes, NULL);
}

grpc_server *rpc_server_create_tls(const char *addr, grpc_completion_queue **cq, int *port,
                                   long max_recv_bytes, const rpc_tls *tls)
{
    rpc_args args; /* grpc_server_create copies the arguments */
    grpc_server *srv = grpc_server_create(
        rpc_args_init(&args, max_recv_bytes > 0 ? max_recv_bytes : RPC_MAX_MESSAGE_DEFAULT, 1),
        NULL);
    *cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv, *cq, NULL);
    grpc_server_credentials *cr = rpc_tls_server_credentials(tls);
    *port = grpc_server_add_http2_port(srv, addr, cr);
    grpc_server_credentials_release(cr);
    if (*port != 0) {
        return srv;
    }
    grpc_server_destroy(srv);
    grpc_completion_queue_shutdown(*cq);
    while (grpc_completion_queue_next(*cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(*cq);
    *cq = NULL;
    return NULL;
}

grpc_event rpc_cq_next_ms(grpc_completion_queue *cq, long ms)
{
    return grpc_completion_queue_next(
        cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN)),
        NULL);
}

int rpc_scall_request(grpc_server *srv, grpc_completion_queue *cq, rpc_scall *sc, void *tag)
{
    memset(sc, 0, sizeof *sc);
    grpc_call_details_init(&sc->details);
    grpc_metadata_array_init(&sc->md);
    if (grpc_server_request_call(srv, &sc->call, &sc->details, &sc->md, cq, cq, tag) !=
        GRPC_CALL_OK) {
        rpc_scall_release(sc);
        return 0;
    }
    return 1;
}

int rpc_scall_recv(rpc_scall *sc, void *tag)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &sc->request;
    return grpc_call_start_batch(sc->call, &op, 1, tag, NULL) == GRPC_CALL_OK;
}

int rpc_scall_reply(rpc_scall *sc, const ProtobufCMessage *msg, grpc_status_code code,
                    const char *why, void *tag)
{
    grpc_op ops[4];
    int n = 0;
    memset(ops, 0, sizeof ops);
    sc->status = grpc_slice_from_copied_string(why ? why : "");
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (msg && code == GRPC_STATUS_OK) {
        sc->reply = rpc_pack(msg);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = sc->reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = code;
    ops[n++].data.send_status_from_server.status_details = &sc->status;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &sc->cancelled;
    return grpc_call_start_batch(sc->call, ops, (size_t)n, tag, NULL) == GRPC_CALL_OK;
}

void rpc_scall_release(rpc_scall *sc)
{
    if (sc->request) {
        grpc_byte_buffer_destroy(sc->request);
        sc->request = NULL;
    }
    if (sc->reply) {
        grpc_byte_buffer_destroy(sc->reply);
        sc->reply = NULL;
    }
    grpc_slice_unref(sc->status);
    sc->status = grpc_empty_slice();
    if (sc->call) {
        grpc_call_unref(sc->call);
        sc->call = NULL;
    }
    grpc_call_details_destroy(&sc->details);
    grpc_metadata_array_destroy(&sc->md);
}
