/* The worker group (see group.h): placement, channels, formation, step fan-out, loss. */
#include "coordinator/group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "coll/coll.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "rpc/rpc_util.h"
#include "engine/placement.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"

typedef struct wlink {
    coord_placement pl;
    char addr[256];
    int local;
    grpc_channel *ch;
    int64_t pid, weight_bytes;
    int joined;
} wlink;

struct coord_group {
    int world, n_vocab;
    model_hparams hp;
    wlink w[COORD_MAX_WORKERS];
    coord_spawner *spawner;
    coord_group_opts o;
    char model_path[1024], store_adv[300];
    coll_store_server *store;
    grpc_completion_queue *cq;
    pthread_mutex_t mu; /* guards serving, generation, w[].addr/joined/pid for snapshots */
    int serving;
    int64_t generation;
    char lost_reason[512];
    double next_form_at, last_ping;
    uint64_t step_id;
    float *logits;
    size_t cap_logits;
    int32_t *slots;
    int64_t *entries;
    int64_t *kv_bytes; /* [cap_slots][world] (KV memory budget) */
    int64_t kv_peak[COORD_MAX_WORKERS];
    int cap_slots;
};

/* ---- placement, creation ----------------------------------------------------------------- */

static void set_addr(coord_group *g, int r, const char *addr, int64_t pid)
{
    wlink *w = &g->w[r];
    pthread_mutex_lock(&g->mu);
    snprintf(w->addr, sizeof w->addr, "%s", addr ? addr : "");
    w->pid = pid;
    w->joined = 0;
    pthread_mutex_unlock(&g->mu);
    if (w->ch) {
        grpc_channel_destroy(w->ch);
        w->ch = NULL;
    }
    if (w->addr[0]) {
        grpc_channel_credentials *cr = grpc_insecure_credentials_create();
        w->ch = grpc_channel_create(w->addr, cr, rpc_channel_args());
        grpc_channel_credentials_release(cr);
    }
}

em_status coord_group_create(const model_hparams *hp, int world, const char *const *addrs,
                             coord_spawner *spawner, const coord_group_opts *o, coord_group **out,
                             char *err, size_t errlen)
{
    *out = NULL;
    if (world < 1 || world > COORD_MAX_WORKERS || world > hp->n_kv_head) {
        snprintf(err, errlen,
                 "%d workers cannot split the model: each worker needs at least one of its %d KV "
                 "heads (use 1 to %d workers)",
                 world, hp->n_kv_head,
                 hp->n_kv_head < COORD_MAX_WORKERS ? hp->n_kv_head : COORD_MAX_WORKERS);
        return EM_EINVAL;
    }
    coord_group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return EM_ENOMEM;
    }
    g->world = world;
    g->n_vocab = hp->n_vocab;
    g->hp = *hp;
    g->o = *o;
    g->spawner = spawner;
    snprintf(g->model_path, sizeof g->model_path, "%s", o->model_path ? o->model_path : "");
    g->o.model_path = g->model_path;
    if (g->o.coll_timeout_ms <= 0) {
        g->o.coll_timeout_ms = 10000;
    }
    if (g->o.step_timeout_ms <= 0) {
        g->o.step_timeout_ms = 60000;
    }
    pthread_mutex_init(&g->mu, NULL);
    g->cq = grpc_completion_queue_create_for_pluck(NULL);
    int G = hp->n_head / hp->n_kv_head;
    for (int r = 0; r < world; r++) {
        shard_desc sd;
        coord_placement *pl = &g->w[r].pl;
        if (shard_for_rank(hp->n_kv_head, r, world, &sd) != EM_OK) {
            snprintf(err, errlen, "placement failed for rank %d", r);
            coord_group_free(g);
            return EM_EINVAL;
        }
        int lo, hi, lo2;
        shard_ffn_range(hp, sd.n_units, sd.unit0, &lo, &hi);
        shard_ffn_range(hp, sd.n_units, sd.unit0 + sd.n_units_local - 1, &lo2, &hi);
        *pl = (coord_placement){r,  sd.unit0, sd.n_units_local, sd.unit0 * G, sd.n_units_local * G,
                                lo, hi};
        g->w[r].local = addrs == NULL || addrs[r] == NULL || addrs[r][0] == 0;
        if (!g->w[r].local) {
            set_addr(g, r, addrs[r], 0);
        }
    }
    const char *bind = o->store_bind && o->store_bind[0] ? o->store_bind : "127.0.0.1";
    int port = 0;
    if (coll_store_server_start(bind, o->store_port, &g->store, &port, err, errlen) != 0) {
        coord_group_free(g);
        return EM_EIO;
    }
    const char *adv = o->store_advertise && o->store_advertise[0] ? o->store_advertise : bind;
    snprintf(g->store_adv, sizeof g->store_adv, "%s:%d", adv, port);
    EM_LOG_INFO("rendezvous store on %s:%d (workers use %s)", bind, port, g->store_adv);
    *out = g;
    return EM_OK;
}

void coord_group_free(coord_group *g)
{
    if (g == NULL) {
        return;
    }
    for (int r = 0; r < g->world; r++) {
        if (g->w[r].ch) {
            grpc_channel_destroy(g->w[r].ch);
        }
    }
    coll_store_server_stop(g->store);
    if (g->cq) {
        rpc_pluck_cq_destroy(g->cq);
    }
    free(g->logits);
    free(g->slots);
    free(g->entries);
    free(g->kv_bytes);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int coord_group_world(const coord_group *g)
{
    return g->world;
}

int coord_group_serving(coord_group *g)
{
    pthread_mutex_lock(&g->mu);
    int s = g->serving;
    pthread_mutex_unlock(&g->mu);
    return s;
}

int64_t coord_group_generation(coord_group *g)
{
    pthread_mutex_lock(&g->mu);
    int64_t v = g->generation;
    pthread_mutex_unlock(&g->mu);
    return v;
}

void coord_group_mark_lost(coord_group *g, const char *why)
{
    pthread_mutex_lock(&g->mu);
    int was = g->serving;
    g->serving = 0;
    for (int r = 0; r < g->world; r++) {
        g->w[r].joined = 0;
    }
    snprintf(g->lost_reason, sizeof g->lost_reason, "%s", why);
    pthread_mutex_unlock(&g->mu);
    if (was) {
        EM_LOG_ERROR("worker group generation %lld lost: %s", (long long)g->generation, why);
    }
    g->next_form_at = em_now_s() + 0.2;
}

const char *coord_group_lost_reason(coord_group *g)
{
    return g->lost_reason;
}

int coord_group_snapshot(coord_group *g, coord_worker_snapshot *out, int cap)
{
    pthread_mutex_lock(&g->mu);
    int n = g->world < cap ? g->world : cap;
    for (int r = 0; r < n; r++) {
        out[r].pl = g->w[r].pl;
        snprintf(out[r].addr, sizeof out[r].addr, "%s", g->w[r].addr);
        out[r].joined = g->w[r].joined;
        out[r].pid = g->w[r].pid;
        out[r].weight_bytes = g->w[r].weight_bytes;
    }
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* ---- formation and liveness ---------------------------------------------------------------- */

/* Hello to every worker; 0 when all answered with our protocol version (and, with check_gen,
 * are still in the current group: a worker restarted between two pings is not). */
static int hello_all(coord_group *g, long timeout_ms, int check_gen, char *why, size_t whylen)
{
    rpc_pending p[COORD_MAX_WORKERS];
    Emserve__Internal__V1__HelloRequest rq = EMSERVE__INTERNAL__V1__HELLO_REQUEST__INIT;
    rq.protocol_version = WORKER_PROTO_VERSION;
    for (int r = 0; r < g->world; r++) {
        rpc_pending_start(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_HELLO, &rq.base,
                                timeout_ms);
    }
    int bad = 0;
    for (int r = 0; r < g->world; r++) {
        ProtobufCMessage *m = NULL;
        char d[256] = "";
        grpc_status_code st = rpc_pending_finish(
            g->cq, &p[r], &emserve__internal__v1__hello_response__descriptor, &m, d, sizeof d);
        Emserve__Internal__V1__HelloResponse *h = (Emserve__Internal__V1__HelloResponse *)m;
        if (st != GRPC_STATUS_OK || h == NULL || h->protocol_version != WORKER_PROTO_VERSION) {
            if (!bad) {
                snprintf(why, whylen, "worker %d (%s): %s", r,
                         g->w[r].addr[0] ? g->w[r].addr : "not started",
                         st != GRPC_STATUS_OK ? (d[0] ? d : "unreachable") : "protocol mismatch");
            }
            bad = 1;
        } else if (check_gen && (!h->in_group || h->generation != g->generation)) {
            if (!bad) {
                snprintf(why, whylen,
                         "worker %d (%s, pid %lld) left group generation %lld "
                         "(restarted?)",
                         r, g->w[r].addr, (long long)h->pid, (long long)g->generation);
            }
            bad = 1;
        } else if (!g->w[r].local) {
            pthread_mutex_lock(&g->mu);
            g->w[r].pid = h->pid;
            pthread_mutex_unlock(&g->mu);
        }
        if (m) {
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    return bad ? -1 : 0;
}

static int form(coord_group *g)
{
    char why[512] = "";
    if (hello_all(g, 1000, 0, why, sizeof why) != 0) {
        EM_LOG_DEBUG("not forming yet: %s", why);
        return -1;
    }
    int64_t gen = g->generation + 1;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "emserve/%d/gen%lld", (int)getpid(), (long long)gen);
    coll_store_server_clear(g->store);
    rpc_pending p[COORD_MAX_WORKERS];
    for (int r = 0; r < g->world; r++) {
        Emserve__Internal__V1__FormGroupRequest rq =
            EMSERVE__INTERNAL__V1__FORM_GROUP_REQUEST__INIT;
        char host[256];
        snprintf(host, sizeof host, "%s", g->w[r].local ? "127.0.0.1" : g->w[r].addr);
        char *colon = strrchr(host, ':');
        if (colon && !g->w[r].local) {
            *colon = 0;
        }
        rq.generation = gen;
        rq.rank = r;
        rq.world = g->world;
        rq.store_addr = g->store_adv;
        rq.prefix = prefix;
        rq.gloo_host = host;
        rq.timeout_ms = (int32_t)g->o.coll_timeout_ms;
        rq.model_path = g->model_path;
        rq.n_threads = g->o.n_threads;
        rq.max_batch_tokens = g->o.max_batch_tokens;
        rq.max_slots = g->o.max_slots;
        rpc_pending_start(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_FORM_GROUP, &rq.base,
                                g->o.coll_timeout_ms + 60000);
    }
    int bad = 0;
    for (int r = 0; r < g->world; r++) {
        ProtobufCMessage *m = NULL;
        char d[512] = "";
        grpc_status_code st = rpc_pending_finish(
            g->cq, &p[r], &emserve__internal__v1__form_group_response__descriptor, &m, d, sizeof d);
        if (st != GRPC_STATUS_OK) {
            if (!bad) {
                snprintf(why, sizeof why, "worker %d: %s", r, d);
            }
            bad = 1;
        } else {
            Emserve__Internal__V1__FormGroupResponse *f =
                (Emserve__Internal__V1__FormGroupResponse *)m;
            if (f->n_vocab != g->hp.n_vocab || f->n_layer != g->hp.n_layer ||
                f->n_kv_head != g->hp.n_kv_head || f->dim != g->hp.dim) {
                snprintf(why, sizeof why,
                         "worker %d loaded a different model (vocab %d, %d layers, %d KV heads, "
                         "dim %d; the coordinator has %d, %d, %d, %d)",
                         r, f->n_vocab, f->n_layer, f->n_kv_head, f->dim, g->hp.n_vocab,
                         g->hp.n_layer, g->hp.n_kv_head, g->hp.dim);
                bad = 1;
            } else if (f->unit0 != g->w[r].pl.kv_head0 ||
                       f->n_units_local != g->w[r].pl.n_kv_heads) {
                snprintf(why, sizeof why, "worker %d reports a different placement", r);
                bad = 1;
            }
            pthread_mutex_lock(&g->mu);
            g->w[r].weight_bytes = f->weight_bytes;
            pthread_mutex_unlock(&g->mu);
        }
        if (m) {
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    g->generation = gen; /* a failed formation still used up its prefix */
    if (bad) {
        EM_LOG_WARN("forming group generation %lld failed: %s", (long long)gen, why);
        return -1;
    }
    pthread_mutex_lock(&g->mu);
    g->serving = 1;
    for (int r = 0; r < g->world; r++) {
        g->w[r].joined = 1;
    }
    pthread_mutex_unlock(&g->mu);
    char heads[128] = "";
    for (int r = 0, o = 0; r < g->world && o < (int)sizeof heads - 8; r++) {
        o += snprintf(heads + o, sizeof heads - (size_t)o, "%s%d", r ? " + " : "", g->w[r].pl.n_kv_heads);
    }
    EM_LOG_INFO("worker group generation %lld formed: %d worker(s), KV heads %s", (long long)gen,
                g->world, heads);
    return 0;
}

int coord_group_tick(coord_group *g, int idle)
{
    coord_spawn_event ev;
    int result = 0;
    while (coord_spawner_poll(g->spawner, &ev)) {
        if (ev.rank < 0 || ev.rank >= g->world) {
            continue;
        }
        if (ev.kind == COORD_SPAWN_UP) {
            char addr[64];
            snprintf(addr, sizeof addr, "127.0.0.1:%d", ev.port);
            EM_LOG_INFO("worker %d started: pid %lld on %s", ev.rank, (long long)ev.pid, addr);
            set_addr(g, ev.rank, addr, ev.pid);
        } else {
            char why[160];
            int st = ev.status;
            if (WIFSIGNALED(st)) {
                snprintf(why, sizeof why, "worker %d (pid %lld) killed by signal %d", ev.rank,
                         (long long)ev.pid, WTERMSIG(st));
            } else {
                snprintf(why, sizeof why, "worker %d (pid %lld) exited with status %d", ev.rank,
                         (long long)ev.pid, WEXITSTATUS(st));
            }
            int was = coord_group_serving(g);
            coord_group_mark_lost(g, why);
            set_addr(g, ev.rank, "", 0);
            result = was ? -1 : result;
        }
    }
    double now = em_now_s();
    int serving = coord_group_serving(g);
    if (!serving && now >= g->next_form_at) {
        g->next_form_at = now + 0.3;
        if (form(g) == 0) {
            g->last_ping = em_now_s();
            return 1;
        }
    } else if (serving && idle && now - g->last_ping > 1.0) {
        char why[512];
        g->last_ping = now;
        if (hello_all(g, 2000, 1, why, sizeof why) != 0) {
            coord_group_mark_lost(g, why);
            return -1;
        }
    }
    return result;
}

int coord_group_kv_heads(const coord_group *g, int rank)
{
    return g->w[rank].pl.n_kv_heads;
}

/* ---- step -------------------------------------------------------------------------------- */

static em_status grow_results(coord_group *g, int n_logits, int n_tokens)
{
    size_t need = (size_t)n_logits * (size_t)g->n_vocab;
    if (need > g->cap_logits) {
        free(g->logits);
        g->logits = malloc(sizeof(float) * need);
        g->cap_logits = g->logits ? need : 0;
        if (!g->logits) {
            return EM_ENOMEM;
        }
    }
    if (n_tokens + 1 > g->cap_slots) {
        free(g->slots);
        free(g->entries);
        free(g->kv_bytes);
        g->slots = malloc(sizeof(int32_t) * (size_t)(n_tokens + 1));
        g->entries = malloc(sizeof(int64_t) * (size_t)(n_tokens + 1));
        g->kv_bytes = malloc(sizeof(int64_t) * (size_t)(n_tokens + 1) * (size_t)g->world);
        g->cap_slots = (g->slots && g->entries && g->kv_bytes) ? n_tokens + 1 : 0;
        if (!g->cap_slots) {
            return EM_ENOMEM;
        }
    }
    return EM_OK;
}

em_status coord_group_step(coord_group *g, const coord_step *st, coord_step_result *res, char *err,
                           size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (!coord_group_serving(g)) {
        snprintf(err, errlen, "worker group not serving: %s", g->lost_reason);
        return EM_EUNAVAILABLE;
    }
    int n_want = 0;
    for (int i = 0; i < st->n_tokens; i++) {
        n_want += st->want[i] != 0;
    }
    if (grow_results(g, n_want, st->n_tokens) != EM_OK) {
        snprintf(err, errlen, "out of memory");
        return EM_ENOMEM;
    }
    /* One request message; only return_logits differs between ranks. */
    Emserve__Internal__V1__StepRequest rq = EMSERVE__INTERNAL__V1__STEP_REQUEST__INIT;
    Emserve__Internal__V1__SeqOpen opens[st->n_open + 1], *open_p[st->n_open + 1];
    Emserve__Internal__V1__SeqPolicy pols[st->n_policy + 1], *pol_p[st->n_policy + 1];
    int n_kv_total = 0;
    for (int i = 0; i < st->n_open; i++) {
        n_kv_total += st->open[i].n_kv;
    }
    Emserve__Internal__V1__KvParam kvs[n_kv_total + 1], *kv_p[n_kv_total + 1];
    int k = 0;
    for (int i = 0; i < st->n_open; i++) {
        emserve__internal__v1__seq_open__init(&opens[i]);
        opens[i].slot = st->open[i].slot;
        opens[i].kv = &kv_p[k];
        opens[i].n_kv = (size_t)st->open[i].n_kv;
        for (int j = 0; j < st->open[i].n_kv; j++, k++) {
            emserve__internal__v1__kv_param__init(&kvs[k]);
            kvs[k].key = st->open[i].keys[j];
            kvs[k].value = st->open[i].vals[j];
            kv_p[k] = &kvs[k];
        }
        open_p[i] = &opens[i];
    }
    for (int i = 0; i < st->n_policy; i++) {
        emserve__internal__v1__seq_policy__init(&pols[i]);
        pols[i].slot = st->pol_slot[i];
        pols[i].phase = st->pol_phase[i];
        pol_p[i] = &pols[i];
    }
    rq.generation = g->generation;
    rq.step_id = ++g->step_id;
    rq.n_drop = (size_t)st->n_drop;
    rq.drop = (int32_t *)st->drop;
    rq.n_open = (size_t)st->n_open;
    rq.open = open_p;
    rq.n_tokens = rq.n_pos = rq.n_seq = (size_t)st->n_tokens;
    rq.tokens = (int32_t *)st->tokens;
    rq.pos = (int32_t *)st->pos;
    rq.seq = (int32_t *)st->seq;
    rq.want_logits.data = (uint8_t *)st->want;
    rq.want_logits.len = (size_t)st->n_tokens;
    rq.n_policy = (size_t)st->n_policy;
    rq.policy = pol_p;
    rpc_pending p[COORD_MAX_WORKERS];
    for (int r = 0; r < g->world; r++) {
        rq.return_logits = r == 0;
        rpc_pending_start(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_STEP, &rq.base,
                                g->o.step_timeout_ms);
    }
    int bad = 0;
    for (int r = 0; r < g->world; r++) {
        ProtobufCMessage *m = NULL;
        char d[512] = "";
        grpc_status_code code = rpc_pending_finish(
            g->cq, &p[r], &emserve__internal__v1__step_response__descriptor, &m, d, sizeof d);
        Emserve__Internal__V1__StepResponse *sr = (Emserve__Internal__V1__StepResponse *)m;
        if (code == GRPC_STATUS_OK && sr && sr->n_kv_entries == sr->n_kv_slots &&
            sr->n_kv_bytes == sr->n_kv_slots && sr->n_kv_slots <= (size_t)g->cap_slots &&
            (r == 0 ? sr->n_logits == n_want &&
                          sr->logits.len == sizeof(float) * (size_t)n_want * (size_t)g->n_vocab
                    : 1) &&
            (r == 0 || (int)sr->n_kv_slots == res->n_slots)) {
            if (r == 0) {
                if (sr->logits.len) {
                    memcpy(g->logits, sr->logits.data, sr->logits.len);
                }
                res->n_slots = (int)sr->n_kv_slots;
                for (size_t i = 0; i < sr->n_kv_slots && i < (size_t)g->cap_slots; i++) {
                    g->slots[i] = sr->kv_slots[i];
                    g->entries[i] = sr->kv_entries[i];
                }
            } else {
                for (size_t i = 0; i < sr->n_kv_slots; i++) {
                    g->entries[i] += sr->kv_entries[i];
                }
            }
            for (size_t i = 0; i < sr->n_kv_slots; i++) {
                g->kv_bytes[i * (size_t)g->world + (size_t)r] = sr->kv_bytes[i];
            }
            g->kv_peak[r] = sr->kv_bytes_peak;
        } else {
            /* name every failing worker: a dead worker's peers fail their all-reduce too */
            size_t l = bad ? strlen(err) : 0;
            snprintf(err + l, errlen - l, "%sworker %d (%s): %s%s%s%s", bad ? "; " : "", r,
                     g->w[r].addr,
                     code == GRPC_STATUS_OK ? "inconsistent reply" : rpc_status_name(code),
                     d[0] ? " (" : "", d, d[0] ? ")" : "");
            bad = 1;
        }
        if (m) {
            protobuf_c_message_free_unpacked(m, NULL);
        }
    }
    if (bad) {
        coord_group_mark_lost(g, err);
        return EM_EUNAVAILABLE;
    }
    g->last_ping = em_now_s();
    res->logits = g->logits;
    res->n_logits = n_want;
    res->slots = g->slots;
    res->entries = g->entries;
    res->bytes = g->kv_bytes;
    res->peak = g->kv_peak;
    return EM_OK;
}
