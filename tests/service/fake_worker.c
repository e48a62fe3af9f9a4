/* fake_worker: a worker that lies. It speaks the internal protocol (Hello, FormGroup with the
 * shape and placement the coordinator expects) but answers each Step with the next entry of
 * --modes (the last one repeats):
 *   huge         2,000,000 KV slots (the issue-12 attack that made the coordinator abort)
 *   extra-slots  one slot more than the batch has (overflowed the coordinator's buffers)
 *   bad-slot     the right number of slots, the first one wrong
 *   entries      a slot with more KV entries than the context can hold
 *   short-logits rank 0 returns one logits row too few
 *   step-id      the reply names another step
 *   counts-len   compression counts for one slot more than the batch has
 *   counts-neg   a negative count of evicted entries
 *   bytes-huge   2^62 KV bytes for a slot (sums over slots and workers would overflow)
 *   ok           a well-formed reply (zero logits: greedy picks token 0)
 *   fail         INTERNAL
 * It checks no secret (it is the attacker's side) and holds no model.
 *   fake_worker [--listen HOST:PORT] [--modes m1,m2,...] [--vocab 512] [--layers 5]
 *               [--kv-heads 4] [--dim 64]
 * Prints "listening on HOST:PORT" once bound; stops on SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"
#include "rpc/rpc_serve.h"
#include "rpc/rpc_util.h"

#define HUGE_SLOTS 2000000

typedef struct fake {
    char modes[16][16];
    int n_modes, n_steps;
    int vocab, layers, kv_heads, dim;
    int64_t generation;
    int rank, world;
} fake;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct fcall {
    int got_request, finishing;
    rpc_scall sc;
} fcall;

static void reply(fcall *c, const ProtobufCMessage *m, grpc_status_code code, const char *why)
{
    c->finishing = 1;
    if (!rpc_scall_reply(&c->sc, m, code, why, c)) {
        rpc_scall_release(&c->sc);
        free(c);
    }
}

static void do_form(fake *f, fcall *c, const Emserve__Internal__V1__FormGroupRequest *rq)
{
    Emserve__Internal__V1__FormGroupResponse r = EMSERVE__INTERNAL__V1__FORM_GROUP_RESPONSE__INIT;
    f->generation = rq->generation;
    f->rank = rq->rank;
    f->world = rq->world > 0 ? rq->world : 1;
    int per = f->kv_heads / f->world; /* even splits only: enough for the tests */
    r.unit0 = f->rank * per;
    r.n_units_local = per;
    r.weight_bytes = 1;
    r.n_vocab = f->vocab;
    r.n_layer = f->layers;
    r.n_kv_head = f->kv_heads;
    r.dim = f->dim;
    reply(c, &r.base, GRPC_STATUS_OK, NULL);
}

static void do_step(fake *f, fcall *c, const Emserve__Internal__V1__StepRequest *rq)
{
    const char *mode = f->modes[f->n_steps < f->n_modes ? f->n_steps : f->n_modes - 1];
    f->n_steps++;
    if (strcmp(mode, "fail") == 0) {
        reply(c, NULL, GRPC_STATUS_INTERNAL, "fake failure");
        return;
    }
    size_t nt = rq->n_tokens, n_slots = 0, n_want = 0;
    int huge = strcmp(mode, "huge") == 0;
    size_t cap = huge ? HUGE_SLOTS : nt + 2;
    int32_t *slots = calloc(cap, sizeof *slots);
    int64_t *entries = calloc(cap, sizeof *entries);
    int64_t *bytes = calloc(cap, sizeof *bytes); /* KV bytes per slot (the memory budget) */
    for (size_t i = 0; i < nt; i++) {
        if (i == 0 || rq->seq[i] != rq->seq[i - 1]) {
            slots[n_slots] = rq->seq[i];
            bytes[n_slots] = 1024;
            entries[n_slots++] = 1;
        }
        n_want += rq->want_logits.len == nt ? rq->want_logits.data[i] != 0 : 0;
    }
    if (huge) {
        n_slots = HUGE_SLOTS;
    } else if (strcmp(mode, "extra-slots") == 0) {
        slots[n_slots] = 0;
        bytes[n_slots] = 1024;
        entries[n_slots++] = 1;
    } else if (strcmp(mode, "bad-slot") == 0 && n_slots > 0) {
        slots[0] += 1000;
    } else if (strcmp(mode, "entries") == 0 && n_slots > 0) {
        entries[0] = (int64_t)1 << 40;
    } else if (strcmp(mode, "bytes-huge") == 0 && n_slots > 0) {
        bytes[0] = (int64_t)1 << 62;
    }
    if (rq->return_logits && strcmp(mode, "short-logits") == 0 && n_want > 0) {
        n_want--;
    }
    float *logits =
        rq->return_logits ? calloc(n_want * (size_t)f->vocab + 1, sizeof *logits) : NULL;
    Emserve__Internal__V1__StepResponse r = EMSERVE__INTERNAL__V1__STEP_RESPONSE__INIT;
    r.step_id = rq->step_id + (strcmp(mode, "step-id") == 0);
    r.n_logits = rq->return_logits ? (int32_t)n_want : 0;
    r.logits.data = (uint8_t *)logits;
    r.logits.len = logits ? sizeof(float) * n_want * (size_t)f->vocab : 0;
    r.n_kv_slots = r.n_kv_entries = r.n_kv_bytes = n_slots;
    r.kv_slots = slots;
    r.kv_entries = entries;
    r.kv_bytes = bytes;
    /* the optional compression counts (zeros: nothing compressed), or a lie about them */
    int64_t *counts = calloc(cap, sizeof *counts);
    double *secs = calloc(cap, sizeof *secs);
    size_t nc = (size_t)n_slots;
    if (strcmp(mode, "counts-len") == 0) {
        nc++;
    } else if (strcmp(mode, "counts-neg") == 0 && nc > 0) {
        counts[0] = -1;
    }
    if (!huge) {
        r.n_kv_bytes_quant = r.n_kv_evicted = r.n_kv_merged = r.n_kv_quantized = nc;
        r.n_compress_seconds = nc;
        r.kv_bytes_quant = r.kv_merged = r.kv_quantized = counts + 1;
        r.kv_evicted = counts;
        r.compress_seconds = secs;
    }
    reply(c, &r.base, GRPC_STATUS_OK, NULL); /* packs at once */
    free(counts);
    free(secs);
    free(slots);
    free(entries);
    free(bytes);
    free(logits);
}

static void dispatch(fake *f, fcall *c)
{
    grpc_slice m = c->sc.details.method;
    if (grpc_slice_str_cmp(m, WORKER_METHOD_HELLO) == 0) {
        Emserve__Internal__V1__HelloResponse r = EMSERVE__INTERNAL__V1__HELLO_RESPONSE__INIT;
        r.protocol_version = WORKER_PROTO_VERSION;
        r.pid = (int64_t)getpid();
        r.model_path = "";
        r.generation = f->generation;
        r.in_group = f->generation != 0;
        reply(c, &r.base, GRPC_STATUS_OK, NULL);
        return;
    }
    const ProtobufCMessageDescriptor *d =
        grpc_slice_str_cmp(m, WORKER_METHOD_STEP) == 0
            ? &emserve__internal__v1__step_request__descriptor
            : &emserve__internal__v1__form_group_request__descriptor;
    ProtobufCMessage *msg = rpc_unpack(c->sc.request, d);
    if (msg == NULL) {
        reply(c, NULL, GRPC_STATUS_INVALID_ARGUMENT, "malformed");
        return;
    }
    if (d == &emserve__internal__v1__step_request__descriptor) {
        do_step(f, c, (const Emserve__Internal__V1__StepRequest *)msg);
    } else {
        do_form(f, c, (const Emserve__Internal__V1__FormGroupRequest *)msg);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void post(grpc_server *srv, grpc_completion_queue *cq)
{
    fcall *c = calloc(1, sizeof *c);
    if (c && !rpc_scall_request(srv, cq, &c->sc, c)) {
        free(c);
    }
}

static void parse_modes(fake *f, const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    f->n_modes = 0;
    for (char *t = strtok(buf, ","); t && f->n_modes < 16; t = strtok(NULL, ",")) {
        snprintf(f->modes[f->n_modes++], sizeof f->modes[0], "%s", t);
    }
}

int main(int argc, char **argv)
{
    fake f = {.vocab = 512, .layers = 5, .kv_heads = 4, .dim = 64};
    const char *listen = "127.0.0.1:0";
    parse_modes(&f, "ok");
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--listen") == 0) {
            listen = v;
        } else if (strcmp(a, "--modes") == 0) {
            parse_modes(&f, v);
        } else if (strcmp(a, "--vocab") == 0) {
            f.vocab = atoi(v);
        } else if (strcmp(a, "--layers") == 0) {
            f.layers = atoi(v);
        } else if (strcmp(a, "--kv-heads") == 0) {
            f.kv_heads = atoi(v);
        } else if (strcmp(a, "--dim") == 0) {
            f.dim = atoi(v);
        } else {
            fprintf(stderr, "fake_worker: unknown flag %s\n", a);
            return 2;
        }
    }
    signal(SIGTERM, on_signal);
    grpc_init();
    grpc_completion_queue *cq = NULL;
    int port = 0;
    grpc_server *srv = rpc_server_create(listen, &cq, &port);
    if (srv == NULL) {
        fprintf(stderr, "fake_worker: cannot listen on %s\n", listen);
        return 1;
    }
    grpc_server_start(srv);
    for (int i = 0; i < 4; i++) {
        post(srv, cq);
    }
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    int shut = 0, tag = 0;
    for (;;) {
        if (g_stop && !shut) {
            shut = 1;
            grpc_server_shutdown_and_notify(srv, cq, &tag);
            grpc_server_cancel_all_calls(srv);
        }
        grpc_event ev = rpc_cq_next_ms(cq, 200);
        if (ev.type == GRPC_QUEUE_TIMEOUT) {
            continue;
        }
        if (ev.type == GRPC_QUEUE_SHUTDOWN) {
            break;
        }
        if (ev.tag == &tag) {
            grpc_server_destroy(srv);
            grpc_completion_queue_shutdown(cq);
            continue;
        }
        fcall *c = ev.tag;
        if (c->finishing || (!ev.success && !c->got_request)) {
            rpc_scall_release(&c->sc);
            free(c);
        } else if (!c->got_request) {
            c->got_request = 1;
            post(srv, cq);
            if (!rpc_scall_recv(&c->sc, c)) {
                rpc_scall_release(&c->sc);
                free(c);
            }
        } else {
            dispatch(&f, c);
        }
    }
    grpc_completion_queue_destroy(cq);
    grpc_shutdown();
    return 0;
}
