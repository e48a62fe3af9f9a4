/* The worker group's step (see group.h): one request fanned out to every worker under a
 * progress deadline derived from the work, and every field of every reply checked against what
 * was asked before anything is copied (step id, slot list, entry counts, logits size). A bad
 * or late reply ends the step with UNAVAILABLE and marks the group lost; it never reaches the
 * scheduler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/group_impl.h"
#include "coordinator/step_reply.h"
#include "proto/emserve/internal/v1/worker.pb-c.h"
#include "proto/worker_proto.h"

#define DEADLINE_FACTOR      8.0  /* deadline = floor + factor x expected work */
#define MS_PER_TOKEN_INITIAL 10.0 /* before any step was measured: generous */

/* ---- the request message ----------------------------------------------------------------- */

/* The protobuf view of one coord_step; owns the arrays it needed (no VLAs). */
typedef struct step_msg {
    Emserve__Internal__V1__StepRequest rq;
    Emserve__Internal__V1__SeqOpen *opens, **open_p;
    Emserve__Internal__V1__SeqPolicy *pols, **pol_p;
    Emserve__Internal__V1__KvParam *kvs, **kv_p;
} step_msg;

static void step_msg_free(step_msg *m)
{
    free(m->opens);
    free(m->open_p);
    free(m->pols);
    free(m->pol_p);
    free(m->kvs);
    free(m->kv_p);
}

static em_status step_msg_build(const coord_step *st, step_msg *m)
{
    size_t n_kv = 0;
    memset(m, 0, sizeof *m);
    for (int i = 0; i < st->n_open; i++) {
        n_kv += (size_t)st->open[i].n_kv;
    }
    m->opens = calloc((size_t)st->n_open + 1, sizeof *m->opens);
    m->open_p = calloc((size_t)st->n_open + 1, sizeof *m->open_p);
    m->pols = calloc((size_t)st->n_policy + 1, sizeof *m->pols);
    m->pol_p = calloc((size_t)st->n_policy + 1, sizeof *m->pol_p);
    m->kvs = calloc(n_kv + 1, sizeof *m->kvs);
    m->kv_p = calloc(n_kv + 1, sizeof *m->kv_p);
    if (!m->opens || !m->open_p || !m->pols || !m->pol_p || !m->kvs || !m->kv_p) {
        step_msg_free(m);
        return EM_ENOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < st->n_open; i++) {
        emserve__internal__v1__seq_open__init(&m->opens[i]);
        m->opens[i].slot = st->open[i].slot;
        m->opens[i].kv = &m->kv_p[k];
        m->opens[i].n_kv = (size_t)st->open[i].n_kv;
        for (int j = 0; j < st->open[i].n_kv; j++, k++) {
            emserve__internal__v1__kv_param__init(&m->kvs[k]);
            m->kvs[k].key = st->open[i].keys[j];
            m->kvs[k].value = st->open[i].vals[j];
            m->kv_p[k] = &m->kvs[k];
        }
        m->open_p[i] = &m->opens[i];
    }
    for (int i = 0; i < st->n_policy; i++) {
        emserve__internal__v1__seq_policy__init(&m->pols[i]);
        m->pols[i].slot = st->pol_slot[i];
        m->pols[i].phase = st->pol_phase[i];
        m->pol_p[i] = &m->pols[i];
    }
    Emserve__Internal__V1__StepRequest *rq = &m->rq;
    emserve__internal__v1__step_request__init(rq);
    rq->n_drop = (size_t)st->n_drop;
    rq->drop = (int32_t *)st->drop;
    rq->n_open = (size_t)st->n_open;
    rq->open = m->open_p;
    rq->n_tokens = rq->n_pos = rq->n_seq = (size_t)st->n_tokens;
    rq->tokens = (int32_t *)st->tokens;
    rq->pos = (int32_t *)st->pos;
    rq->seq = (int32_t *)st->seq;
    rq->want_logits.data = (uint8_t *)st->want;
    rq->want_logits.len = (size_t)st->n_tokens;
    rq->n_policy = (size_t)st->n_policy;
    rq->policy = m->pol_p;
    return EM_OK;
}

/* ---- what the replies must say --------------------------------------------------------------- */

static em_status grow_results(coord_group *g, int n_logits, int n_tokens)
{
    size_t need = (size_t)n_logits * (size_t)g->n_vocab;
    if (need > g->cap_logits) {
        free(g->logits);
        g->logits = malloc(sizeof(float) * (need ? need : 1));
        g->cap_logits = g->logits ? need : 0;
        if (!g->logits) {
            return EM_ENOMEM;
        }
    }
    if (n_tokens + 1 > g->cap_slots) {
        free(g->slots);
        free(g->entries);
        free(g->kv_bytes);
        free(g->kv_quant);
        free(g->counts);
        size_t n = (size_t)(n_tokens + 1);
        g->slots = malloc(sizeof(int32_t) * n);
        g->entries = malloc(sizeof(int64_t) * n);
        g->kv_bytes = malloc(sizeof(int64_t) * n * (size_t)g->world);
        g->kv_quant = malloc(sizeof(int64_t) * n * (size_t)g->world);
        g->counts = malloc(sizeof(coord_kv_counts) * n);
        g->cap_slots =
            (g->slots && g->entries && g->kv_bytes && g->kv_quant && g->counts) ? n_tokens + 1 : 0;
        if (!g->cap_slots) {
            return EM_ENOMEM;
        }
    }
    return EM_OK;
}

/* The slots a worker reports, as it computes them: one per run of equal seq values. */
static int expected_slots(const coord_step *st, int32_t *out)
{
    int n = 0;
    for (int i = 0; i < st->n_tokens; i++) {
        if (i == 0 || st->seq[i] != st->seq[i - 1]) {
            out[n++] = st->seq[i];
        }
    }
    return n;
}

/* Adds rank r's compression figures for slot i (checked; absent = zeros) to the step's. */
static void add_counts(coord_group *g, int r, const Emserve__Internal__V1__StepResponse *sr, int i)
{
    coord_kv_counts *c = &g->counts[i];
    int has = sr->n_kv_bytes_quant > 0;
    if (r == 0) {
        memset(c, 0, sizeof *c);
    }
    g->kv_quant[(size_t)i * (size_t)g->world + (size_t)r] = has ? sr->kv_bytes_quant[i] : 0;
    if (has) {
        c->evicted += sr->kv_evicted[i];
        c->merged += sr->kv_merged[i];
        c->quantized += sr->kv_quantized[i];
        c->seconds += sr->compress_seconds[i];
    }
}

/* ---- progress deadline ----------------------------------------------------------------------- */

static long step_deadline_ms(const coord_group *g, int n_tokens)
{
    double per = g->ms_per_token > 0 ? g->ms_per_token : MS_PER_TOKEN_INITIAL;
    double ms =
        (double)g->o.step_timeout_ms + DEADLINE_FACTOR * per * (n_tokens > 0 ? n_tokens : 1);
    return ms < 86400000.0 ? (long)ms : 86400000L;
}

static void note_step_time(coord_group *g, int n_tokens, double ms)
{
    double per = ms / (n_tokens > 0 ? n_tokens : 1);
    double decayed = g->ms_per_token > 0 ? g->ms_per_token * 0.99 : 0;
    g->ms_per_token = per > decayed ? per : decayed;
}

/* ---- the step ----------------------------------------------------------------------------------
 */

/* Appends "worker r (addr): what" to err (the first failure, then "; ..."). */
static void add_failure(coord_group *g, int r, int first, const char *what, const char *detail,
                        char *err, size_t errlen)
{
    size_t l = first ? 0 : strlen(err);
    snprintf(err + l, errlen - l, "%sworker %d (%s): %s%s%s%s", first ? "" : "; ", r, g->w[r].addr,
             what, detail[0] ? " (" : "", detail, detail[0] ? ")" : "");
}

em_status coord_group_step(coord_group *g, const coord_step *st, coord_step_result *res, char *err,
                           size_t errlen)
{
    memset(res, 0, sizeof *res);
    if (!coord_group_serving(g)) {
        char why[512];
        coord_group_lost_reason(g, why, sizeof why);
        snprintf(err, errlen, "worker group not serving: %s", why);
        return EM_EUNAVAILABLE;
    }
    int n_want = 0;
    for (int i = 0; i < st->n_tokens; i++) {
        n_want += st->want[i] != 0;
    }
    step_msg m;
    if (grow_results(g, n_want, st->n_tokens) != EM_OK || step_msg_build(st, &m) != EM_OK) {
        snprintf(err, errlen, "out of memory");
        return EM_ENOMEM;
    }
    int n_slots = expected_slots(st, g->slots);
    m.rq.generation = g->generation;
    m.rq.step_id = ++g->step_id;
    long deadline = step_deadline_ms(g, st->n_tokens);
    double t0 = em_now_s();
    rpc_pending p[COORD_MAX_WORKERS];
    for (int r = 0; r < g->world; r++) {
        m.rq.return_logits = r == 0; /* one request message; only this differs between ranks */
        rpc_pending_start_token(g->cq, &p[r], g->w[r].ch, WORKER_METHOD_STEP, &m.rq.base, deadline,
                                g->secret, g->w[r].token);
    }
    int bad = 0, timed_out[COORD_MAX_WORKERS] = {0}, n_late = 0;
    for (int r = 0; r < g->world; r++) {
        ProtobufCMessage *msg = NULL;
        char d[512] = "", why[256] = "";
        grpc_status_code code = rpc_pending_finish(
            g->cq, &p[r], &emserve__internal__v1__step_response__descriptor, &msg, d, sizeof d);
        Emserve__Internal__V1__StepResponse *sr = (Emserve__Internal__V1__StepResponse *)msg;
        coord_reply_want want = {.step_id = m.rq.step_id,
                                 .n_logits = r == 0 ? n_want : 0,
                                 .n_vocab = g->n_vocab,
                                 .slots = g->slots,
                                 .n_slots = n_slots,
                                 .max_entries = (int64_t)g->hp.n_ctx * g->hp.n_layer *
                                                (int64_t)g->w[r].pl.n_kv_heads};
        if (code == GRPC_STATUS_OK && coord_step_reply_check(sr, &want, why, sizeof why) == EM_OK) {
            for (int i = 0; i < n_slots; i++) {
                g->entries[i] = (r == 0 ? 0 : g->entries[i]) + sr->kv_entries[i];
                g->kv_bytes[(size_t)i * (size_t)g->world + (size_t)r] =
                    sr->kv_bytes[i] < 0 ? 0 : sr->kv_bytes[i];
                add_counts(g, r, sr, i);
            }
            g->kv_peak[r] = sr->kv_bytes_peak;
            if (r == 0 && sr->logits.len) {
                memcpy(g->logits, sr->logits.data, sr->logits.len);
            }
        } else if (code == GRPC_STATUS_OK) {
            add_failure(g, r, !bad, "inconsistent reply", why, err, errlen);
            bad = 1;
        } else {
            /* name every failing worker: a dead worker's peers fail their all-reduce too */
            timed_out[r] = code == GRPC_STATUS_DEADLINE_EXCEEDED;
            n_late += timed_out[r];
            add_failure(g, r, !bad, timed_out[r] ? "no progress" : rpc_status_name(code),
                        timed_out[r] ? "" : d, err, errlen);
            bad = 1;
        }
        if (msg) {
            protobuf_c_message_free_unpacked(msg, NULL);
        }
    }
    step_msg_free(&m);
    if (bad) {
        if (n_late > 0) {
            size_t l = strlen(err);
            snprintf(err + l, errlen - l, " [step of %d tokens, deadline %ld ms]", st->n_tokens,
                     deadline);
        }
        coord_group_mark_lost(g, err);
        if (n_late > 0) {
            coord__group_kill_hung(g, timed_out, "step", deadline);
        }
        return EM_EUNAVAILABLE;
    }
    note_step_time(g, st->n_tokens, (em_now_s() - t0) * 1e3);
    g->last_ping = em_now_s();
    res->logits = g->logits;
    res->n_logits = n_want;
    res->n_slots = n_slots;
    res->slots = g->slots;
    res->entries = g->entries;
    res->bytes = g->kv_bytes;
    res->peak = g->kv_peak;
    res->bytes_quant = g->kv_quant;
    res->counts = g->counts;
    return EM_OK;
}
