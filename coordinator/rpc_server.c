/* The public gRPC server (see rpc_server.h). Locking: a call's mutex guards its send queue and
 * flags; it is never held while calling into the scheduler (which takes its own lock and
 * calls back into emit/release). Health Watch calls stay on a list that only the server thread
 * touches; each turn of its loop sends a watcher the status when it changed. */
#include "coordinator/rpc_server.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/support/time.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/model_name.h"
#include "coordinator/rpc_convert.h"
#include "coordinator/rpc_reflection.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"
#include "proto/grpc/health/v1/health.pb-c.h"
#include "rpc/rpc_auth.h"
#include "rpc/rpc_serve.h"
#include "rpc/rpc_strings.h"
#include "rpc/rpc_util.h"

typedef enum {
    M_GENERATE,
    M_ABORT,
    M_MODEL_INFO,
    M_SERVER_INFO,
    M_TOKENIZE,
    M_HEALTH,
    M_HEALTH_WATCH,
    M_REFLECT, /* ServerReflectionInfo (v1 and v1alpha): a bidirectional stream */
    M_UNKNOWN
} method;
typedef enum { ST_NEW, ST_READ, ST_FINISH } call_state;
typedef enum { TAG_MAIN, TAG_SEND, TAG_CLOSE } tag_kind;

typedef struct gcall gcall;
typedef struct gtag {
    tag_kind kind;
    gcall *c;
} gtag;

#define QCAP                                                                     \
    1024 /* stream messages a call may have waiting (a client that falls further \
          * behind is ended with RESOURCE_EXHAUSTED) */

struct gcall {
    coord_server *srv;
    method m;
    call_state state;
    rpc_scall sc; /* sc.status: the final status details, unary or streaming */
    gtag t_main, t_send, t_close;
    pthread_mutex_t mu;
    int refs;
    grpc_byte_buffer *q[QCAP]; /* stream messages waiting to be sent (ring) */
    int q_head, q_n;
    grpc_byte_buffer *inflight;
    int send_busy, md_sent, final_ready, final_started, dead, sched_held;
    grpc_status_code final_code;
    int watch_status; /* Health/Watch: the status last sent */
    int counted;      /* in coord_server.streams */
    gcall *watch_next;
};

struct coord_server {
    coord_server_opts o;
    coord_prompt_ctx pc; /* the model's hparams, tokenizer and chat template */
    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t thr;
    pthread_mutex_t mu;
    int stop, allow_cq_shutdown;
    int drain; /* stop accepting calls, let running ones finish (SIGTERM grace) */
    uint64_t serial;
    coord_sink sink;
    gcall *watchers; /* Health/Watch calls (server thread only) */
    int streams;     /* Generate calls not yet freed (atomic) */
    double t_start;  /* em_now_s when the server started (GetServerInfo.uptime_seconds) */
    char model_name[256];
};

/* ---- call lifetime ------------------------------------------------------------------------- */

static void post_request(coord_server *s)
{
    gcall *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->srv = s;
    c->state = ST_NEW;
    c->refs = 1;
    c->t_main = (gtag){TAG_MAIN, c};
    c->t_send = (gtag){TAG_SEND, c};
    c->t_close = (gtag){TAG_CLOSE, c};
    pthread_mutex_init(&c->mu, NULL);
    if (!rpc_scall_request(s->server, s->cq, &c->sc, &c->t_main)) {
        pthread_mutex_destroy(&c->mu);
        free(c);
    }
}

static void call_free(gcall *c)
{
    if (c->counted) {
        __atomic_sub_fetch(&c->srv->streams, 1, __ATOMIC_SEQ_CST);
    }
    if (c->inflight) {
        grpc_byte_buffer_destroy(c->inflight);
    }
    while (c->q_n > 0) {
        grpc_byte_buffer_destroy(c->q[c->q_head]);
        c->q_head = (c->q_head + 1) % QCAP;
        c->q_n--;
    }
    rpc_scall_release(&c->sc);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void call_unref(gcall *c)
{
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left == 0) {
        call_free(c);
    }
}

/* Starts the next send or the final status when nothing is in flight. Holds c->mu. */
static void kick_locked(gcall *c)
{
    if (c->send_busy || c->final_started) {
        return;
    }
    grpc_op ops[2];
    int n = 0;
    memset(ops, 0, sizeof ops);
    if (c->q_n > 0 && !c->dead) {
        if (!c->md_sent) {
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
            c->md_sent = 1;
        }
        c->inflight = c->q[c->q_head];
        c->q_head = (c->q_head + 1) % QCAP;
        c->q_n--;
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->inflight;
        c->send_busy = 1;
        if (grpc_call_start_batch(c->sc.call, ops, (size_t)n, &c->t_send, NULL) != GRPC_CALL_OK) {
            c->send_busy = 0;
            c->dead = 1;
        }
        return;
    }
    if (!c->final_ready) {
        return;
    }
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = c->final_code;
    ops[n++].data.send_status_from_server.status_details = &c->sc.status;
    c->final_started = 1;
    c->state = ST_FINISH;
    if (grpc_call_start_batch(c->sc.call, ops, (size_t)n, &c->t_main, NULL) != GRPC_CALL_OK) {
        c->refs--; /* no completion will come for the main path (refs stays > 0: close tag) */
    }
}

static void set_final_locked(gcall *c, grpc_status_code code, const char *msg)
{
    if (c->final_ready) {
        return;
    }
    c->final_ready = 1;
    c->final_code = code;
    c->sc.status = grpc_slice_from_copied_string(msg ? msg : "");
}

/* Unary reply: initial metadata + message (may be NULL) + status + close, on the main tag. */
static void finish_unary(gcall *c, const ProtobufCMessage *msg, grpc_status_code code,
                         const char *why)
{
    c->state = ST_FINISH;
    if (!rpc_scall_reply(&c->sc, msg, code, why, &c->t_main)) {
        call_unref(c);
    }
}

/* ---- scheduler sink (called on the scheduler thread) -------------------------------------- */

static void sink_emit(void *user, const coord_event *ev)
{
    gcall *c = user;
    grpc_byte_buffer *bb = NULL;
    if (ev->kind != COORD_EV_ERROR) {
        bb = coord_rpc_pack_event(ev);
    }
    pthread_mutex_lock(&c->mu);
    if (bb && (c->dead || c->final_ready || c->q_n == QCAP)) {
        if (c->q_n == QCAP && !c->dead && !c->final_ready) {
            /* the client reads far slower than we generate: end the call */
            set_final_locked(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "client too slow");
        }
        grpc_byte_buffer_destroy(bb);
        bb = NULL;
    }
    if (bb) {
        c->q[(c->q_head + c->q_n) % QCAP] = bb;
        c->q_n++;
    }
    if (ev->kind == COORD_EV_COMPLETE) {
        set_final_locked(c, GRPC_STATUS_OK, "");
    } else if (ev->kind == COORD_EV_ERROR) {
        set_final_locked(c, rpc_status_from_em(ev->status), ev->message);
    }
    kick_locked(c);
    pthread_mutex_unlock(&c->mu);
}

static void sink_release(void *user)
{
    gcall *c = user;
    pthread_mutex_lock(&c->mu);
    c->sched_held = 0;
    if (!c->final_ready) { /* released without a final event (client cancelled) */
        set_final_locked(c, GRPC_STATUS_CANCELLED, "cancelled");
        kick_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

/* ---- handlers --------------------------------------------------------------------------- */

static int64_t deadline_us(const gcall *c)
{
    gpr_timespec d = c->sc.details.deadline;
    if (gpr_time_cmp(d, gpr_inf_future(d.clock_type)) == 0) {
        return 0;
    }
    gpr_timespec left = gpr_time_sub(d, gpr_now(d.clock_type));
    int64_t us = (int64_t)left.tv_sec * 1000000 + left.tv_nsec / 1000;
    return em_now_us() + (us > 0 ? us : 0);
}

static void do_generate(coord_server *s, gcall *c, const Emserve__V1__GenerateRequest *rq)
{
    char err[512] = "";
    coord_req *r = NULL;
    uint64_t serial = __atomic_add_fetch(&s->serial, 1, __ATOMIC_RELAXED);
    em_status st = coord_rpc_req_from_proto(rq, &s->pc, serial, &r, err, sizeof err);
    if (st != EM_OK) {
        coord_sched_note_refused(s->o.sched, st);
        pthread_mutex_lock(&c->mu);
        set_final_locked(c, rpc_status_from_em(st), err);
        kick_locked(c);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    r->deadline_us = deadline_us(c);
    r->sink = &s->sink;
    r->sink_user = c;
    pthread_mutex_lock(&c->mu);
    c->refs++;
    c->sched_held = 1;
    pthread_mutex_unlock(&c->mu);
    coord_sched_submit(s->o.sched, r);
}

static void do_abort(coord_server *s, gcall *c, const Emserve__V1__AbortRequest *rq)
{
    if (rq->request_id[0] == 0) {
        finish_unary(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "request_id: empty");
        return;
    }
    Emserve__V1__AbortResponse r = EMSERVE__V1__ABORT_RESPONSE__INIT;
    r.found = coord_sched_abort(s->o.sched, rq->request_id) > 0;
    finish_unary(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_model_info(coord_server *s, gcall *c)
{
    Emserve__V1__ModelInfo r = EMSERVE__V1__MODEL_INFO__INIT;
    coord_rpc_model_info(&s->o.m->hp, s->o.model_path, s->model_name, s->o.chat, &r);
    finish_unary(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_server_info(coord_server *s, gcall *c)
{
    static coord_worker_snapshot ws[COORD_MAX_WORKERS]; /* only this thread runs handlers */
    coord_sched_stats stats;
    coord_sched_get_stats(s->o.sched, &stats);
    int n = coord_group_snapshot(s->o.group, ws, COORD_MAX_WORKERS);
    if (!rpc_secret_check(&c->sc.md, s->o.admin_secret)) {
        for (int i = 0; i < n; i++) { /* where the workers are is for the admin only */
            ws[i].addr[0] = 0;
            ws[i].pid = 0;
        }
    }
    Emserve__V1__ServerInfo r = EMSERVE__V1__SERVER_INFO__INIT;
    coord_rpc_server_info(ws, n, &stats, s->o.max_batch_tokens, s->o.max_slots,
                          em_now_s() - s->t_start, &r);
    finish_unary(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_tokenize(coord_server *s, gcall *c, const Emserve__V1__TokenizeRequest *rq)
{
    char err[512] = "";
    Emserve__V1__TokenizeResponse r = EMSERVE__V1__TOKENIZE_RESPONSE__INIT;
    int32_t *ids = NULL;
    int n = 0;
    char *prompt = NULL;
    em_status st = coord_rpc_tokenize(rq, &s->pc, &ids, &n, &prompt, err, sizeof err);
    if (st != EM_OK) {
        finish_unary(c, NULL, rpc_status_from_em(st), err[0] ? err : em_status_str(st));
        return;
    }
    r.n_ids = (size_t)n;
    r.ids = ids;
    if (prompt) {
        r.prompt = prompt;
    }
    finish_unary(c, &r.base, GRPC_STATUS_OK, NULL); /* packs the reply at once */
    free(ids);
    free(prompt);
}

/* Queues one message on a stream; 0 when the call is over or its queue full (bb not taken). */
static int queue_locked(gcall *c, grpc_byte_buffer *bb)
{
    if (c->dead || c->final_ready || c->q_n >= QCAP) {
        return 0;
    }
    c->q[(c->q_head + c->q_n) % QCAP] = bb;
    c->q_n++;
    return 1;
}

/* ---- health: Check and Watch ------------------------------------------------------------- */

/* The status of a health service name: "" (the server), "emserve.v1.Emserve" and "readiness"
 * follow the worker group (SERVING once every worker joined); "liveness" is SERVING while the
 * process runs; other names are SERVICE_UNKNOWN. */
static int health_status(coord_server *s, const char *service)
{
    if (strcmp(service, "liveness") == 0) {
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    }
    if (service[0] && strcmp(service, "emserve.v1.Emserve") != 0 &&
        strcmp(service, "readiness") != 0) {
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    }
    return coord_group_serving(s->o.group)
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void do_health(coord_server *s, gcall *c, const Grpc__Health__V1__HealthCheckRequest *rq)
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = health_status(s, rq->service);
    if (r.status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN) {
        finish_unary(c, NULL, GRPC_STATUS_NOT_FOUND, "unknown service");
        return;
    }
    finish_unary(c, &r.base, GRPC_STATUS_OK, NULL);
}

/* Queues one HealthCheckResponse on a Watch stream. */
static void watch_send(gcall *c, int status)
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = status;
    grpc_byte_buffer *bb = rpc_pack(&r.base);
    pthread_mutex_lock(&c->mu);
    if (bb && queue_locked(c, bb)) {
        bb = NULL;
        c->watch_status = status;
    }
    kick_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (bb) {
        grpc_byte_buffer_destroy(bb);
    }
}

/* Watch: the status now, then every change until the client goes away (an unknown service
 * gets SERVICE_UNKNOWN and the call stays open, as the health protocol asks). */
static void do_watch(coord_server *s, gcall *c, const Grpc__Health__V1__HealthCheckRequest *rq)
{
    int unknown = health_status(s, rq->service) ==
                  GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    int live = strcmp(rq->service, "liveness") == 0;
    watch_send(c, health_status(s, rq->service));
    if (!unknown && !live) { /* only the readiness status ever changes */
        c->watch_next = s->watchers;
        s->watchers = c;
    }
}

/* Sends every watcher the group's status when it changed (server thread, every loop turn). */
static void watch_tick(coord_server *s)
{
    if (s->watchers == NULL) {
        return;
    }
    int now = health_status(s, "");
    for (gcall *c = s->watchers; c; c = c->watch_next) {
        if (c->watch_status != now) {
            watch_send(c, now);
        }
    }
}

static void watch_remove(coord_server *s, gcall *c)
{
    for (gcall **pp = &s->watchers; *pp; pp = &(*pp)->watch_next) {
        if (*pp == c) {
            *pp = c->watch_next;
            return;
        }
    }
}

/* ---- reflection: one answer per request until the client half-closes -------------------- */

/* A read of a ServerReflectionInfo stream completed: answer it and read the next, or end the
 * call with OK once the client has sent everything (or with the reason it cannot go on). The
 * main tag has at most one operation in flight: the next read, or the final status. */
static void on_reflect_read(gcall *c, int ok)
{
    char why[300] = "";
    grpc_byte_buffer *bb = NULL;
    int more = ok && c->sc.request != NULL;
    if (more) {
        bb = coord_reflection_answer(c->sc.request, why, sizeof why);
        grpc_byte_buffer_destroy(c->sc.request);
        c->sc.request = NULL;
    }
    pthread_mutex_lock(&c->mu);
    if (!more) {
        set_final_locked(c, GRPC_STATUS_OK, NULL);
    } else if (bb == NULL) {
        set_final_locked(c, GRPC_STATUS_INVALID_ARGUMENT, why);
    } else if (!queue_locked(c, bb)) {
        grpc_byte_buffer_destroy(bb);
        set_final_locked(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "too many unread answers");
    } else if (!rpc_scall_recv(&c->sc, &c->t_main)) {
        set_final_locked(c, GRPC_STATUS_INTERNAL, "cannot read the next request");
    }
    kick_locked(c);
    pthread_mutex_unlock(&c->mu);
}

/* Streaming methods: a send queue, and a close op to learn about cancellation. */
static int is_stream(method m)
{
    return m == M_GENERATE || m == M_HEALTH_WATCH || m == M_REFLECT;
}

static method method_of(const grpc_slice m)
{
    static const struct {
        const char *name;
        method m;
    } table[] = {{"/emserve.v1.Emserve/Generate", M_GENERATE},
                 {"/emserve.v1.Emserve/Abort", M_ABORT},
                 {"/emserve.v1.Emserve/GetModelInfo", M_MODEL_INFO},
                 {"/emserve.v1.Emserve/GetServerInfo", M_SERVER_INFO},
                 {"/emserve.v1.Emserve/Tokenize", M_TOKENIZE},
                 {"/grpc.health.v1.Health/Check", M_HEALTH},
                 {"/grpc.health.v1.Health/Watch", M_HEALTH_WATCH},
                 {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", M_REFLECT},
                 {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", M_REFLECT}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (grpc_slice_str_cmp(m, table[i].name) == 0) {
            return table[i].m;
        }
    }
    return M_UNKNOWN;
}

static void on_request(coord_server *s, gcall *c)
{
    static const ProtobufCMessageDescriptor *const desc[] = {
        &emserve__v1__generate_request__descriptor,
        &emserve__v1__abort_request__descriptor,
        &emserve__v1__get_model_info_request__descriptor,
        &emserve__v1__get_server_info_request__descriptor,
        &emserve__v1__tokenize_request__descriptor,
        &grpc__health__v1__health_check_request__descriptor,
        &grpc__health__v1__health_check_request__descriptor};
    char why[300] = ""; /* a string field that is not UTF-8 or holds a NUL is named here */
    ProtobufCMessage *m = rpc_unpack_checked(c->sc.request, desc[c->m], why, sizeof why);
    if (m == NULL) {
        if (is_stream(c->m)) {
            pthread_mutex_lock(&c->mu);
            set_final_locked(c, GRPC_STATUS_INVALID_ARGUMENT,
                             why[0]               ? why
                             : c->m == M_GENERATE ? "malformed GenerateRequest"
                                                  : "malformed request message");
            kick_locked(c);
            pthread_mutex_unlock(&c->mu);
        } else {
            finish_unary(c, NULL, GRPC_STATUS_INVALID_ARGUMENT,
                         why[0] ? why : "malformed request message");
        }
        return;
    }
    switch (c->m) {
    case M_GENERATE:
        do_generate(s, c, (const Emserve__V1__GenerateRequest *)m);
        break;
    case M_ABORT:
        do_abort(s, c, (const Emserve__V1__AbortRequest *)m);
        break;
    case M_MODEL_INFO:
        do_model_info(s, c);
        break;
    case M_SERVER_INFO:
        do_server_info(s, c);
        break;
    case M_TOKENIZE:
        do_tokenize(s, c, (const Emserve__V1__TokenizeRequest *)m);
        break;
    case M_HEALTH_WATCH:
        do_watch(s, c, (const Grpc__Health__V1__HealthCheckRequest *)m);
        break;
    default:
        do_health(s, c, (const Grpc__Health__V1__HealthCheckRequest *)m);
        break;
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- the completion-queue state machine ------------------------------------------------------ */

static void on_main(coord_server *s, gcall *c, int ok)
{
    grpc_op op;
    pthread_mutex_lock(&c->mu); /* kick_locked may have moved it to ST_FINISH on another thread */
    int state = c->state;
    pthread_mutex_unlock(&c->mu);
    switch (state) {
    case ST_NEW:
        if (!ok) { /* shutting down */
            call_free(c);
            return;
        }
        post_request(s);
        c->m = method_of(c->sc.details.method);
        if (c->m == M_GENERATE) {
            c->counted = 1;
            __atomic_add_fetch(&s->streams, 1, __ATOMIC_SEQ_CST);
        }
        if (c->m == M_UNKNOWN) {
            finish_unary(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
            return;
        }
        if (is_stream(c->m)) { /* learn about cancellation as soon as it happens */
            memset(&op, 0, sizeof op);
            op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
            op.data.recv_close_on_server.cancelled = &c->sc.cancelled;
            c->refs++;
            if (grpc_call_start_batch(c->sc.call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
                c->refs--;
            }
        }
        c->state = ST_READ;
        if (!rpc_scall_recv(&c->sc, &c->t_main)) {
            call_unref(c);
        }
        return;
    case ST_READ:
        if (c->m == M_REFLECT) {
            on_reflect_read(c, ok);
            return;
        }
        if (!ok || c->sc.request == NULL) {
            if (is_stream(c->m)) {
                pthread_mutex_lock(&c->mu);
                set_final_locked(c, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
                kick_locked(c);
                pthread_mutex_unlock(&c->mu);
            } else {
                finish_unary(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
            }
            return;
        }
        on_request(s, c);
        return;
    case ST_FINISH:
        call_unref(c);
        return;
    }
}

static void on_send(gcall *c, int ok)
{
    pthread_mutex_lock(&c->mu);
    if (c->inflight) {
        grpc_byte_buffer_destroy(c->inflight);
        c->inflight = NULL;
    }
    c->send_busy = 0;
    if (!ok) {
        c->dead = 1;
    }
    kick_locked(c);
    pthread_mutex_unlock(&c->mu);
}

static void on_close(coord_server *s, gcall *c)
{
    if (c->m == M_HEALTH_WATCH) {
        watch_remove(s, c);
    }
    pthread_mutex_lock(&c->mu);
    int held = c->sched_held;
    int gone = c->sc.cancelled || !c->final_started;
    if (gone) {
        c->dead = 1;
    }
    if (c->m == M_HEALTH_WATCH) { /* a watch ends only when its client goes */
        set_final_locked(c, GRPC_STATUS_CANCELLED, "cancelled");
        kick_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    if (held && gone) {
        coord_sched_cancel(s->o.sched, c); /* frees the slot and the workers' KV */
    }
    call_unref(c);
}

static void *server_main(void *p)
{
    coord_server *s = p;
    int shutting_down = 0, cancelled = 0, destroyed = 0, cq_shut = 0, shutdown_tag = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop, allow = s->allow_cq_shutdown, drain = s->drain;
        pthread_mutex_unlock(&s->mu);
        if ((stop || drain) && !shutting_down) { /* no new calls; running ones go on */
            shutting_down = 1;
            grpc_server_shutdown_and_notify(s->server, s->cq, &shutdown_tag);
        }
        if (stop && !cancelled && !destroyed) {
            cancelled = 1;
            grpc_server_cancel_all_calls(s->server);
        }
        if (destroyed && allow && !cq_shut) {
            cq_shut = 1;
            grpc_completion_queue_shutdown(s->cq);
        }
        watch_tick(s);
        grpc_event ev = rpc_cq_next_ms(s->cq, 100);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            continue;
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.tag == &shutdown_tag) {
            grpc_server_destroy(s->server);
            s->server = NULL;
            destroyed = 1;
            continue;
        }
        gtag *t = ev.tag;
        switch (t->kind) {
        case TAG_MAIN:
            on_main(s, t->c, ev.success);
            break;
        case TAG_SEND:
            on_send(t->c, ev.success);
            break;
        case TAG_CLOSE:
            on_close(s, t->c);
            break;
        }
    }
    return NULL;
}

em_status coord_server_start(const coord_server_opts *o, coord_server **out, int *port, char *err,
                             size_t errlen)
{
    coord_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return EM_ENOMEM;
    }
    s->o = *o;
    s->t_start = em_now_s();
    coord_model_name(o->m, o->model_path, s->model_name, sizeof s->model_name);
    s->pc = (coord_prompt_ctx){&o->m->hp, o->tok, o->chat};
    s->sink.emit = sink_emit;
    s->sink.release = sink_release;
    s->server = rpc_server_create_tls(o->listen_addr, &s->cq, port, o->max_message_bytes, o->tls);
    if (s->server == NULL) {
        snprintf(err, errlen, "cannot listen on %s", o->listen_addr);
        free(s);
        return EM_EIO;
    }
    pthread_mutex_init(&s->mu, NULL);
    grpc_server_start(s->server);
    for (int i = 0; i < 8; i++) {
        post_request(s);
    }
    if (pthread_create(&s->thr, NULL, server_main, s) != 0) {
        snprintf(err, errlen, "pthread_create failed");
        return EM_ENOMEM;
    }
    *out = s;
    return EM_OK;
}

void coord_server_drain(coord_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->drain = 1;
    pthread_mutex_unlock(&s->mu);
}

int coord_server_streams(coord_server *s)
{
    return __atomic_load_n(&s->streams, __ATOMIC_SEQ_CST);
}

void coord_server_shutdown(coord_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
}

void coord_server_join(coord_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    s->allow_cq_shutdown = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thr, NULL);
    grpc_completion_queue_destroy(s->cq);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
