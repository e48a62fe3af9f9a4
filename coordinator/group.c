/* The worker group (see group.h): placement, channels, formation, liveness and loss; the step
 * fan-out is in group_step.c. */
#include "coordinator/group.h"

#include <pthread.h>
#include <signal.h>
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
#include "coordinator/group_impl.h"
#include "engine/placement.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"
#include "rpc/rpc_tls.h"
#include "rpc/rpc_util.h"

/* ---- placement, creation ----------------------------------------------------------------- */

static void set_addr(coord_group *g, int r, const char *addr, int64_t pid)
{
    wlink *w = &g->w[r];
    pthread_mutex_lock(&g->mu);
    snprintf(w->addr, sizeof w->addr, "%s", addr ? addr : "");
    w->pid = pid;
    w->joined = 0;
    w->hello_timeouts = 0;
    pthread_mutex_unlock(&g->mu);
    if (w->ch) {
        grpc_channel_destroy(w->ch);
        w->ch = NULL;
    }
    if (w->addr[0]) {
        grpc_channel_credentials *cr = rpc_tls_channel_credentials(g->o.internal_tls);
        w->ch = grpc_channel_create(w->addr, cr, &g->chargs.ca);
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
        g->o.step_timeout_ms = 3000;
    }
    if (g->o.max_batch_tokens <= 0) {
        g->o.max_batch_tokens = 256;
    }
    if (g->o.max_batch_tokens < g->o.max_slots) {
        g->o.max_batch_tokens = g->o.max_slots; /* as the scheduler does: all decodes fit */
    }
    snprintf(g->secret, sizeof g->secret, "%s", o->cluster_secret ? o->cluster_secret : "");
    g->o.cluster_secret = g->secret;
    /* the largest reply is rank 0's logits for every token of the largest step */
    rpc_args_init(&g->chargs,
                  (long)sizeof(float) * g->o.max_batch_tokens * (long)hp->n_vocab + (1L << 20), 0);
    if (o->internal_tls_name) {
        snprintf(g->tls_name, sizeof g->tls_name, "%s", o->internal_tls_name);
        rpc_args_set_tls_name(&g->chargs, g->tls_name);
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
    const rpc_tls *it = o->internal_tls; /* the store runs the same mutual TLS */
    coll_tls stls = {it ? it->cert : NULL, it ? it->key : NULL, it ? it->ca : NULL};
    coll_store_opts so = {
        g->secret, o->store_max_conn_per_client,
        (size_t)(o->store_max_bytes_per_client > 0 ? o->store_max_bytes_per_client : 0),
        rpc_tls_on(it) ? &stls : NULL};
    if (coll_store_server_start_opts(bind, o->store_port, &so, &g->store, &port, err, errlen) !=
        EM_OK) {
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
    free(g->kv_quant);
    free(g->counts);
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

void coord_group_lost_reason(coord_group *g, char *out, size_t len)
{
    pthread_mutex_lock(&g->mu);
    snprintf(out, len, "%s", g->lost_reason);
    pthread_mutex_unlock(&g->mu);
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

/* Hello to every worker; EM_OK when all answered with our protocol version (and, with check_gen,
 * are still in the current group: a worker restarted between two pings is not), else
 * EM_EUNAVAILABLE with the first failure in why. */
static em_status hello_all(coord_group *g, long timeout_ms, int check_gen, char *why, size_t whylen)
{
    rpc_pending p[COORD_MAX_WORKERS];
    Emserve__Internal__V1__HelloRequest rq = EMSERVE__INTERNAL__V1__HELLO_REQUEST__INIT;
    rq.protocol_version = WORKER_PROTO_VERSION;
    int timed_out[COORD_MAX_WORKERS] = {0}, n_late = 0;
    for (int r = 0; r < g->world; r++) {
        rpc_pending_start_auth(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_HELLO, &rq.base, timeout_ms,
                               g->secret);
    }
    int bad = 0;
    for (int r = 0; r < g->world; r++) {
        ProtobufCMessage *m = NULL;
        char d[256] = "";
        grpc_status_code st = rpc_pending_finish(
            g->cq, &p[r], &emserve__internal__v1__hello_response__descriptor, &m, d, sizeof d);
        Emserve__Internal__V1__HelloResponse *h = (Emserve__Internal__V1__HelloResponse *)m;
        /* a worker that does not even answer Hello, twice in a row, is hung */
        g->w[r].hello_timeouts =
            st == GRPC_STATUS_DEADLINE_EXCEEDED ? g->w[r].hello_timeouts + 1 : 0;
        timed_out[r] = g->w[r].hello_timeouts >= 2;
        n_late += timed_out[r];
        if (st != GRPC_STATUS_OK || h == NULL || h->protocol_version != WORKER_PROTO_VERSION) {
            if (!bad) {
                if (st == GRPC_STATUS_DEADLINE_EXCEEDED) {
                    snprintf(d, sizeof d, "no answer to Hello within %ld ms", timeout_ms);
                }
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
    if (n_late > 0) {
        coord__group_kill_hung(g, timed_out, "Hello", timeout_ms);
    }
    return bad ? EM_EUNAVAILABLE : EM_OK;
}

/* Hello, then FormGroup with the next generation; EM_EUNAVAILABLE when any worker is missing or
 * disagrees. */
static em_status form(coord_group *g)
{
    char why[512] = "";
    if (hello_all(g, 1000, 0, why, sizeof why) != EM_OK) {
        EM_LOG_DEBUG("not forming yet: %s", why);
        return EM_EUNAVAILABLE;
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
        rq.act_quant = g->o.act_quant;
        rq.max_batch_tokens = g->o.max_batch_tokens;
        rq.max_slots = g->o.max_slots;
        if (rpc_secret_generate(g->w[r].token, sizeof g->w[r].token) != EM_OK) {
            g->w[r].token[0] = 0; /* the worker refuses a FormGroup without one */
        }
        rpc_pending_start_token(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_FORM_GROUP, &rq.base,
                                g->o.coll_timeout_ms + 60000, g->secret, g->w[r].token);
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
        return EM_EUNAVAILABLE;
    }
    pthread_mutex_lock(&g->mu);
    g->serving = 1;
    for (int r = 0; r < g->world; r++) {
        g->w[r].joined = 1;
    }
    pthread_mutex_unlock(&g->mu);
    char heads[128] = "";
    for (int r = 0, o = 0; r < g->world && o < (int)sizeof heads - 8; r++) {
        o += snprintf(heads + o, sizeof heads - (size_t)o, "%s%d", r ? " + " : "",
                      g->w[r].pl.n_kv_heads);
    }
    EM_LOG_INFO("worker group generation %lld formed: %d worker(s), KV heads %s", (long long)gen,
                g->world, heads);
    return EM_OK;
}

coord_group_event coord_group_tick(coord_group *g, int idle)
{
    coord_spawn_event ev;
    coord_group_event result = COORD_GROUP_UNCHANGED;
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
            result = was ? COORD_GROUP_LOST : result;
        }
    }
    double now = em_now_s();
    int serving = coord_group_serving(g);
    if (!serving && now >= g->next_form_at) {
        g->next_form_at = now + 0.3;
        if (form(g) == EM_OK) {
            g->last_ping = em_now_s();
            return COORD_GROUP_FORMED;
        }
    } else if (serving && idle && now - g->last_ping > 1.0) {
        char why[512];
        g->last_ping = now;
        if (hello_all(g, 2000, 1, why, sizeof why) != EM_OK) {
            coord_group_mark_lost(g, why);
            return COORD_GROUP_LOST;
        }
    }
    return result;
}

int coord_group_kv_heads(const coord_group *g, int rank)
{
    return g->w[rank].pl.n_kv_heads;
}

/* ---- hung workers ------------------------------------------------------------------------------
 */

/* 1 when the process is stopped (state T or t in /proc/PID/stat). */
static int proc_stopped(int64_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *close_paren = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
    if (close_paren == NULL || close_paren[1] != ' ') {
        return 0;
    }
    return close_paren[2] == 'T' || close_paren[2] == 't';
}

void coord__group_kill_hung(coord_group *g, const int *timed_out, const char *what,
                            long deadline_ms)
{
    int stopped[COORD_MAX_WORKERS] = {0}, n_stopped = 0;
    for (int r = 0; r < g->world; r++) {
        if (timed_out[r] && g->w[r].local && g->w[r].pid > 0) {
            stopped[r] = proc_stopped(g->w[r].pid);
            n_stopped += stopped[r];
        }
    }
    for (int r = 0; r < g->world; r++) {
        if (!timed_out[r]) {
            continue;
        }
        if (!g->w[r].local) {
            EM_LOG_ERROR("worker %d (%s) made no progress on a %s within %ld ms; it runs on "
                         "another host: restart it there",
                         r, g->w[r].addr, what, deadline_ms);
        } else if (g->w[r].pid > 0 && (n_stopped == 0 || stopped[r])) {
            EM_LOG_ERROR("worker %d (pid %lld%s) made no progress on a %s within %ld ms: "
                         "killing it (the spawner restarts it)",
                         r, (long long)g->w[r].pid, stopped[r] ? ", stopped" : "", what,
                         deadline_ms);
            coord_spawner_kill(g->spawner, r);
            g->w[r].hello_timeouts = 0;
        }
    }
}
