/* The worker's gRPC server (see rpc_worker.h). Protobuf stays here: requests are converted to
 * worker_state calls at once. One heap context per call; its pointer is the tag. */
#include "worker/rpc_worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/log.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"
#include "rpc/rpc_auth.h"
#include "rpc/rpc_serve.h"
#include "rpc/rpc_strings.h"
#include "rpc/rpc_util.h"
#include "worker/step_decode.h"

typedef enum { CALL_NEW, CALL_GOT_REQUEST, CALL_FINISHING } call_state;

typedef struct wcall {
    call_state state;
    rpc_scall sc;
} wcall;

typedef struct server_ctx {
    grpc_server *server;
    grpc_completion_queue *cq;
    worker_state *w;
    int hello_ok;                         /* a Hello with our protocol version has been answered */
    char group_token[RPC_SECRET_MAX + 1]; /* from the FormGroup of our group; "" = none */
} server_ctx;

static void post_request(server_ctx *s)
{
    wcall *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->state = CALL_NEW;
    if (!rpc_scall_request(s->server, s->cq, &c->sc, c)) {
        free(c);
    }
}

static void call_free(wcall *c)
{
    rpc_scall_release(&c->sc);
    free(c);
}

/* Sends the reply (msg may be NULL for an error status) and moves to FINISHING. */
static void finish(wcall *c, const ProtobufCMessage *msg, grpc_status_code code, const char *why)
{
    c->state = CALL_FINISHING;
    if (!rpc_scall_reply(&c->sc, msg, code, why, c)) {
        call_free(c); /* no completion will come */
    }
}

static void do_hello(server_ctx *s, wcall *c, const Emserve__Internal__V1__HelloRequest *rq)
{
    Emserve__Internal__V1__HelloResponse r = EMSERVE__INTERNAL__V1__HELLO_RESPONSE__INIT;
    static char *caps[] = {"cpu", "gloo-tcp", "ems", "continuous-batching"};
    r.protocol_version = WORKER_PROTO_VERSION;
    r.n_capabilities = sizeof caps / sizeof caps[0];
    r.capabilities = caps;
    r.pid = (int64_t)getpid();
    r.model_path = s->w->model_path;
    r.generation = s->w->generation;
    r.in_group = s->w->generation != 0;
    if (rq->protocol_version != WORKER_PROTO_VERSION) {
        char why[128];
        snprintf(why, sizeof why, "protocol version %d not supported (worker speaks %d)",
                 rq->protocol_version, WORKER_PROTO_VERSION);
        finish(c, NULL, GRPC_STATUS_FAILED_PRECONDITION, why);
        return;
    }
    s->hello_ok = 1;
    finish(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_form(server_ctx *s, wcall *c, const Emserve__Internal__V1__FormGroupRequest *rq)
{
    char err[512] = "", token[RPC_SECRET_MAX + 1];
    if (rpc_metadata_get(&c->sc.md, RPC_GROUP_TOKEN_KEY, token, sizeof token) != EM_OK) {
        finish(c, NULL, GRPC_STATUS_INVALID_ARGUMENT,
               "FormGroup without a well-formed group token (" RPC_GROUP_TOKEN_KEY ")");
        return;
    }
    s->group_token[0] = 0; /* the old group's steps end here, whatever the outcome */
    worker_form f = {rq->generation,       rq->rank,       rq->world,
                     rq->store_addr,       rq->prefix,     rq->gloo_host,
                     rq->model_path,       rq->timeout_ms, rq->n_threads,
                     rq->max_batch_tokens, rq->max_slots,  rq->act_quant};
    em_status st = worker_group_form(s->w, &f, err, sizeof err);
    if (st != EM_OK) {
        EM_LOG_ERROR("form group %lld: %s", (long long)rq->generation, err);
        finish(c, NULL, rpc_status_from_em(st), err);
        return;
    }
    memcpy(s->group_token, token, sizeof token);
    Emserve__Internal__V1__FormGroupResponse r = EMSERVE__INTERNAL__V1__FORM_GROUP_RESPONSE__INIT;
    r.unit0 = s->w->sd.unit0;
    r.n_units_local = s->w->sd.n_units_local;
    r.weight_bytes = s->w->weight_bytes;
    r.n_vocab = s->w->m->hp.n_vocab;
    r.n_layer = s->w->m->hp.n_layer;
    r.n_kv_head = s->w->m->hp.n_kv_head;
    r.dim = s->w->m->hp.dim;
    finish(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_step(server_ctx *s, wcall *c, const Emserve__Internal__V1__StepRequest *rq)
{
    char err[512] = "";
    worker_step_in in;
    worker_step_out out;
    worker_open *opens = NULL;
    worker_policy *pols = NULL;
    int64_t *counts = NULL; /* evicted, merged, quantized: [3][n_slots] */
    double *seconds = NULL;
    memset(&in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    em_status st = worker_step_decode(rq, &in, &opens, &pols, err, sizeof err);
    if (st == EM_OK) {
        st = worker_step(s->w, &in, &out, err, sizeof err);
    }
    if (st != EM_OK) {
        finish(c, NULL, rpc_status_from_em(st), err);
    } else {
        Emserve__Internal__V1__StepResponse r = EMSERVE__INTERNAL__V1__STEP_RESPONSE__INIT;
        r.step_id = rq->step_id;
        r.n_logits = out.n_logits;
        r.logits.data = (uint8_t *)out.logits;
        r.logits.len =
            out.logits ? sizeof(float) * (size_t)out.n_logits * (size_t)s->w->m->hp.n_vocab : 0;
        r.n_kv_slots = (size_t)out.n_slots;
        r.kv_slots = out.slots;
        r.n_kv_entries = (size_t)out.n_slots;
        r.kv_entries = out.entries;
        r.n_kv_bytes = (size_t)out.n_slots;
        r.kv_bytes = out.bytes;
        r.kv_bytes_peak = out.peak_bytes;
        size_t n = (size_t)out.n_slots;
        counts = malloc(sizeof(int64_t) * 3 * (n + 1));
        seconds = malloc(sizeof(double) * (n + 1));
        if (counts && seconds) { /* else the reply goes without them (they are optional) */
            for (size_t i = 0; i < n; i++) {
                counts[i] = out.counts[i].evicted;
                counts[n + i] = out.counts[i].merged;
                counts[2 * n + i] = out.counts[i].quantized;
                seconds[i] = out.counts[i].seconds;
            }
            r.n_kv_bytes_quant = r.n_kv_evicted = r.n_kv_merged = r.n_kv_quantized = n;
            r.n_compress_seconds = n;
            r.kv_bytes_quant = out.bytes_quant;
            r.kv_evicted = counts;
            r.kv_merged = counts + n;
            r.kv_quantized = counts + 2 * n;
            r.compress_seconds = seconds;
        }
        finish(c, &r.base, GRPC_STATUS_OK, NULL);
    }
    free(counts);
    free(seconds);
    worker_step_out_free(&out);
    free(opens);
    free(pols);
}

static void dispatch(server_ctx *s, wcall *c)
{
    const ProtobufCMessageDescriptor *d = NULL;
    int op = -1;
    if (grpc_slice_str_cmp(c->sc.details.method, WORKER_METHOD_HELLO) == 0) {
        d = &emserve__internal__v1__hello_request__descriptor;
        op = WORKER_OP_HELLO;
    } else if (grpc_slice_str_cmp(c->sc.details.method, WORKER_METHOD_FORM_GROUP) == 0) {
        d = &emserve__internal__v1__form_group_request__descriptor;
        op = WORKER_OP_FORM_GROUP;
    } else if (grpc_slice_str_cmp(c->sc.details.method, WORKER_METHOD_STEP) == 0) {
        d = &emserve__internal__v1__step_request__descriptor;
        op = WORKER_OP_STEP;
    }
    if (!rpc_secret_check(&c->sc.md, s->w->cluster_secret)) {
        /* before anything else, even the method name: nothing is revealed to a stranger */
        finish(c, NULL, GRPC_STATUS_UNAUTHENTICATED, "missing or wrong cluster secret");
        return;
    }
    if (d == NULL) {
        finish(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        return;
    }
    if (op == WORKER_OP_STEP && s->group_token[0] &&
        !rpc_metadata_check(&c->sc.md, RPC_GROUP_TOKEN_KEY, s->group_token)) {
        /* the secret alone is not enough: only the coordinator that formed the group steps it */
        finish(c, NULL, GRPC_STATUS_PERMISSION_DENIED,
               "Step without this group's token: not from the coordinator that formed the group");
        return;
    }
    char why[256] = "";
    ProtobufCMessage *m = rpc_unpack_checked(c->sc.request, d, why, sizeof why);
    if (m == NULL) {
        finish(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, why[0] ? why : "malformed request");
        return;
    }
    if (op != WORKER_OP_HELLO && !s->hello_ok) {
        char why[96];
        snprintf(why, sizeof why, "call Hello first (protocol version %d)", WORKER_PROTO_VERSION);
        finish(c, NULL, GRPC_STATUS_FAILED_PRECONDITION, why);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    switch (op) {
    case WORKER_OP_HELLO:
        do_hello(s, c, (const Emserve__Internal__V1__HelloRequest *)m);
        break;
    case WORKER_OP_FORM_GROUP:
        do_form(s, c, (const Emserve__Internal__V1__FormGroupRequest *)m);
        break;
    default:
        do_step(s, c, (const Emserve__Internal__V1__StepRequest *)m);
        break;
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

static void on_event(server_ctx *s, wcall *c, int ok)
{
    switch (c->state) {
    case CALL_NEW: {
        if (!ok) {
            call_free(c);
            return;
        }
        post_request(s);
        c->state = CALL_GOT_REQUEST;
        if (!rpc_scall_recv(&c->sc, c)) {
            call_free(c);
        }
        return;
    }
    case CALL_GOT_REQUEST:
        if (!ok || c->sc.request == NULL) {
            finish(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
            return;
        }
        dispatch(s, c);
        return;
    case CALL_FINISHING:
        call_free(c);
        return;
    }
}

em_status worker_rpc_serve(worker_state *w, const char *listen_addr, long max_message_bytes,
                           const rpc_tls *tls, volatile sig_atomic_t *stop,
                           void (*on_listening)(int port, void *user), void *user)
{
    server_ctx s = {NULL, NULL, w, 0, ""};
    int port = 0;
    s.server = rpc_server_create_tls(listen_addr, &s.cq, &port, max_message_bytes, tls);
    if (s.server == NULL) {
        EM_LOG_ERROR("cannot listen on %s", listen_addr);
        return EM_EIO;
    }
    grpc_server_start(s.server);
    for (int i = 0; i < 4; i++) {
        post_request(&s);
    }
    if (on_listening) {
        on_listening(port, user);
    }
    int shutting_down = 0, shutdown_tag = 0;
    for (;;) {
        if (*stop && !shutting_down) {
            shutting_down = 1;
            grpc_server_shutdown_and_notify(s.server, s.cq, &shutdown_tag);
            grpc_server_cancel_all_calls(s.server);
        }
        grpc_event ev = rpc_cq_next_ms(s.cq, 200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            continue;
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.tag == &shutdown_tag) {
            grpc_server_destroy(s.server);
            grpc_completion_queue_shutdown(s.cq);
            continue;
        }
        on_event(&s, ev.tag, ev.success);
    }
    grpc_completion_queue_destroy(s.cq);
    return EM_OK;
}
