/* The continuous-batching scheduler (see sched.h). Concurrency: other threads only touch the
 * inbox and the per-run request flags under `mu`; everything else (runs, slots, the worker
 * group, sampling) belongs to the scheduler thread. */
#include "coordinator/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/sched_impl.h"
#include "proto/worker_proto.h"

/* ---- the loop -------------------------------------------------------------------------------- */

/* Unlinks the runs for which pred holds and returns them as a list. Caller holds mu (other
 * threads walk the active list under mu to flag runs). */
static run *active_take_if(coord_sched *s, int (*pred)(run *))
{
    run **pp = &s->active, *taken = NULL, **tp = &taken;
    s->active_tail = NULL;
    while (*pp) {
        run *r = *pp;
        if (pred(r)) {
            *pp = r->next;
            r->next = NULL;
            *tp = r;
            tp = &r->next;
        } else {
            s->active_tail = r;
            pp = &r->next;
        }
    }
    return taken;
}

static int pred_all(run *r)
{
    (void)r;
    return 1;
}

static int pred_flagged(run *r)
{
    return r->cancel_req || r->abort_req || r->oom || r->kv_fail ||
           (r->req->deadline_us > 0 && em_now_us() > r->req->deadline_us);
}

static int pred_finished(run *r)
{
    return r->fin_reason != NULL;
}

/* Ends flagged runs (list from active_take_if), outside mu. */
static void end_flagged(coord_sched *s, run *list)
{
    while (list) {
        run *r = list;
        list = r->next;
        if (r->cancel_req) {
            coord__run_release(s, r); /* the client is gone: no events */
        } else if (r->abort_req) {
            coord__run_complete(s, r, "abort", NULL, -1);
        } else if (r->oom) {
            coord__run_fail(s, r, EM_ENOMEM, "out of memory for this request");
        } else if (r->kv_fail) {
            coord__run_fail(s, r, EM_ENOMEM, r->kv_msg);
        } else {
            coord__run_fail(s, r, EM_ETIMEDOUT, "deadline exceeded");
        }
    }
}

static void fail_all(coord_sched *s, em_status st, const char *msg)
{
    pthread_mutex_lock(&s->mu);
    run *list = active_take_if(s, pred_all);
    pthread_mutex_unlock(&s->mu);
    while (list) {
        run *r = list;
        list = r->next;
        coord__run_fail(s, r, st, msg);
    }
    s->n_drops = 0; /* workers drop every sequence when the group re-forms */
    memset(s->slot_used, 0, (size_t)s->o.max_slots);
}

typedef struct batch {
    int n, n_open, n_pol, n_want;
    int32_t *tokens, *pos, *seq, *pol_slot, *pol_phase;
    uint8_t *want;
    coord_step_open *open;
    run **want_run; /* [n_want] run that owns each logits row */
} batch;

static void batch_add_open(batch *b, run *r)
{
    coord_step_open *o = &b->open[b->n_open++];
    o->slot = r->slot;
    o->n_kv = r->req->n_kv;
    o->keys = r->req->kv_key;
    o->vals = r->req->kv_val;
    r->opened = 1;
}

/* Decodes (and replays) first, one token each, then prefill chunks in arrival order: at most
 * max_batch_tokens in all, and at most mixed_prefill prompt tokens when the step carries decode
 * tokens (a step's time is about proportional to its tokens, and the running requests wait for
 * the whole step: this bounds their inter-token latency, at a few % of prefill speed). */
static void batch_build(coord_sched *s, batch *b, int admit)
{
    int budget = s->o.max_batch_tokens;
    b->n = b->n_open = b->n_pol = b->n_want = 0;
    for (run *r = s->active; r && b->n < budget; r = r->next) {
        if (r->state != RUN_DECODE && r->state != RUN_REPLAY) {
            continue;
        }
        int replay = r->state == RUN_REPLAY;
        b->tokens[b->n] = replay ? r->dec.hist[r->n_done] : r->pending;
        b->pos[b->n] = replay ? r->n_done : r->dec.n_hist - 1;
        b->seq[b->n] = r->slot;
        b->want[b->n++] = !replay;
        if (!replay) {
            b->want_run[b->n_want++] = r;
        } else if (++r->n_done == r->dec.n_hist - 1) {
            r->state = RUN_DECODE; /* the cache is as it was: pending goes next */
        }
        b->pol_slot[b->n_pol] = r->slot;
        b->pol_phase[b->n_pol++] = WORKER_PHASE_DECODE;
    }
    if (b->n > 0 && b->n + s->o.mixed_prefill < budget) {
        budget = b->n + s->o.mixed_prefill;
    }
    int64_t used[COORD_MAX_WORKERS];
    if (s->kv.bytes > 0) {
        coord__kv_used(s, used);
    }
    for (run *r = s->active; r && b->n < budget; r = r->next) {
        if (r->kv_fail) {
            continue;
        }
        if (r->state == RUN_QUEUED) {
            if (!admit) {
                break;
            }
            int fits = 0;
            if (coord__kv_admit(s, r, used, &fits) != EM_OK) {
                r->kv_fail = 1; /* failed with RESOURCE_EXHAUSTED on the next turn */
                continue;
            }
            if (!fits) {
                break; /* waits for memory: keep arrival order */
            }
            em_status a = coord__run_admit(s, r);
            if (a == EM_ENOSPC) {
                break; /* no free slot: keep arrival order */
            }
            if (a != EM_OK) {
                r->oom = 1; /* failed with RESOURCE_EXHAUSTED on the next turn */
                continue;
            }
        }
        if (r->state != RUN_PREFILL || r->n_done == r->n_prefill) {
            continue;
        }
        int left = r->n_prefill - r->n_done;
        int chunk = left < s->o.prefill_chunk ? left : s->o.prefill_chunk;
        if (chunk > budget - b->n) {
            chunk = budget - b->n;
        }
        int keep = r->req->kv.prefill_keep > 0,
            to_boundary = s->o.prefill_chunk - r->n_done % s->o.prefill_chunk;
        if (keep && chunk > to_boundary) {
            chunk = to_boundary; /* bounded prefill: a piece never crosses a chunk boundary */
        }
        if (!r->opened) {
            batch_add_open(b, r);
        }
        for (int i = 0; i < chunk; i++) {
            b->tokens[b->n] = r->dec.hist[r->n_done + i];
            b->pos[b->n] = r->n_done + i;
            b->seq[b->n] = r->slot;
            b->want[b->n++] = 0;
        }
        r->n_done += chunk;
        if (keep && r->n_done < r->n_prefill && r->n_done % s->o.prefill_chunk == 0) {
            /* bounded prefill (ems/policy.h): compression points at multiples of the chunk,
             * whatever pieces the steps' room cut it into, so the decisions (and the greedy
             * output) do not depend on what else was scheduled, or on a recompute */
            b->pol_slot[b->n_pol] = r->slot;
            b->pol_phase[b->n_pol++] = WORKER_PHASE_PREFILL_CHUNK;
        }
        if (r->n_done == r->n_prefill) {
            b->pol_slot[b->n_pol] = r->slot;
            b->pol_phase[b->n_pol++] = WORKER_PHASE_PREFILL_END;
            if (r->n_done == r->dec.n_hist) { /* nothing sampled yet: sample from this row */
                b->want[b->n - 1] = 1;
                b->want_run[b->n_want++] = r;
            } else { /* a recompute: the next token was sampled before the preemption */
                r->state = r->n_done < r->dec.n_hist - 1 ? RUN_REPLAY : RUN_DECODE;
            }
        }
    }
}

/* What the workers reported for run r's slot (row i of res). Caller holds mu (the compression
 * counters are read by other threads). */
static void note_slot(coord_sched *s, run *r, const coord_step_result *res, int i)
{
    size_t row = (size_t)i * (size_t)s->kv.world;
    r->kv_entries = res->entries[i];
    r->held_quant = 0;
    for (int w = 0; w < s->kv.world; w++) {
        r->held[w] = res->bytes[row + (size_t)w];
        r->held_quant += res->bytes_quant[row + (size_t)w];
    }
    coord_kv_counts *c = &s->stats.kv_counts[r->req->kv.method];
    c->evicted += res->counts[i].evicted;
    c->merged += res->counts[i].merged;
    c->quantized += res->counts[i].quantized;
    c->seconds += res->counts[i].seconds;
}

static void step_once(coord_sched *s, batch *b)
{
    coord_step st = {s->n_drops, s->drops, b->n_open, b->open,  b->n,        b->tokens,
                     b->pos,     b->seq,   b->want,   b->n_pol, b->pol_slot, b->pol_phase};
    coord_step_result res;
    char err[768];
    em_status rc = coord_group_step(s->g, &st, &res, err, sizeof err);
    if (rc != EM_OK) {
        fail_all(s, EM_EUNAVAILABLE, err);
        return;
    }
    s->n_drops = 0;
    pthread_mutex_lock(&s->mu);
    s->stats.steps++;
    pthread_mutex_unlock(&s->mu);
    /* KV entry counts per slot, then sampling in batch order. */
    pthread_mutex_lock(&s->mu);
    for (run *r = s->active; r; r = r->next) {
        for (int i = 0; i < res.n_slots; i++) {
            if (r->opened && res.slots[i] == r->slot) {
                note_slot(s, r, &res, i);
            }
        }
    }
    for (int w = 0; w < s->kv.world; w++) {
        s->stats.kv_peak = res.peak[w] > s->stats.kv_peak ? res.peak[w] : s->stats.kv_peak;
    }
    pthread_mutex_unlock(&s->mu);
    int n_vocab = s->m->hp.n_vocab, n_fin = 0;
    for (int j = 0; j < b->n_want && j < res.n_logits; j++) {
        float *row = (float *)res.logits + (size_t)j * (size_t)n_vocab;
        n_fin += coord__run_sample(s, b->want_run[j], row);
    }
    if (n_fin > 0) {
        pthread_mutex_lock(&s->mu);
        run *list = active_take_if(s, pred_finished);
        pthread_mutex_unlock(&s->mu);
        while (list) {
            run *r = list;
            list = r->next;
            coord__run_complete(s, r, r->fin_reason, r->fin_matched, r->fin_token);
        }
    }
}

/* Gauges for GetServerInfo and /metrics (called by the scheduler thread every turn). */
static void update_stats(coord_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int running = 0, queued = 0;
    int64_t kv = 0, held[COORD_MAX_WORKERS] = {0}, held_max = 0, quant = 0, all = 0, fed = 0;
    int64_t full[COORD_MAX_WORKERS] = {0};
    ems_config fc;
    ems_config_default(&fc); /* method full, no quantization */
    for (run *r = s->active; r; r = r->next) {
        running += r->state != RUN_QUEUED;
        queued += r->state == RUN_QUEUED;
        kv += r->kv_entries;
        int rfed = coord__run_fed(r);
        for (int w = 0; w < s->kv.world; w++) {
            held[w] += r->held[w];
            all += r->held[w];
            full[w] += (int64_t)ems_footprint_peak_bytes(&fc, &s->kv.shape[w], rfed, rfed, 0);
        }
        quant += r->held_quant;
        fed += r->opened ? coord__run_fed(r) : 0;
    }
    s->stats.kv_bytes_quant = quant;
    s->stats.kv_bytes_f32 = all - quant;
    s->stats.kv_bytes_full =
        fed * s->m->hp.n_layer * (int64_t)s->m->hp.n_kv_head * s->full_entry_bytes;
    for (int w = 0; w < s->kv.world; w++) {
        held_max = held[w] > held_max ? held[w] : held_max;
        s->stats.kv_held_worker[w] = held[w];
        s->stats.kv_full_worker[w] = full[w];
    }
    s->stats.kv_world = s->kv.world;
    s->stats.kv_held = held_max;
    s->stats.running_max = running > s->stats.running_max ? running : s->stats.running_max;
    for (run *r = s->inbox; r; r = r->next) {
        queued++;
    }
    s->stats.running = running;
    s->stats.queued = queued;
    s->stats.kv_entries = kv;
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *p)
{
    coord_sched *s = p;
    int cap = s->o.max_batch_tokens;
    batch b;
    memset(&b, 0, sizeof b);
    b.tokens = malloc(sizeof(int32_t) * (size_t)cap);
    b.pos = malloc(sizeof(int32_t) * (size_t)cap);
    b.seq = malloc(sizeof(int32_t) * (size_t)cap);
    b.want = malloc((size_t)cap);
    b.pol_slot = malloc(sizeof(int32_t) * (size_t)cap);
    b.pol_phase = malloc(sizeof(int32_t) * (size_t)cap);
    b.open = malloc(sizeof(coord_step_open) * (size_t)s->o.max_slots);
    b.want_run = malloc(sizeof(run *) * (size_t)cap);
    int idle = 1;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (idle && !s->stop && s->inbox == NULL) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        if (s->inbox) { /* move new requests to the end of the active list */
            if (s->active_tail) {
                s->active_tail->next = s->inbox;
            } else {
                s->active = s->inbox;
            }
            s->active_tail = s->inbox_tail;
            s->inbox = s->inbox_tail = NULL;
        }
        run *flagged = active_take_if(s, pred_flagged);
        pthread_mutex_unlock(&s->mu);
        end_flagged(s, flagged);
        update_stats(s);

        coord_group_event ev = coord_group_tick(s->g, idle);
        if (ev == COORD_GROUP_LOST || !coord_group_serving(s->g)) {
            if (s->active) {
                char msg[700], why[512];
                coord_group_lost_reason(s->g, why, sizeof why);
                snprintf(msg, sizeof msg, "worker group unavailable: %s", why);
                fail_all(s, EM_EUNAVAILABLE, msg);
            }
            idle = 1;
            continue;
        }
        int preempted = coord__kv_preempt(s);
        batch_build(s, &b, preempted == 0);
        if (b.n == 0 && s->n_drops == 0) {
            idle = 1;
            continue;
        }
        idle = 0;
        step_once(s, &b);
        update_stats(s);
    }
    fail_all(s, EM_EUNAVAILABLE, "server shutting down");
    free(b.tokens);
    free(b.pos);
    free(b.seq);
    free(b.want);
    free(b.pol_slot);
    free(b.pol_phase);
    free(b.open);
    free(b.want_run);
    return NULL;
}

/* ---- public API --------------------------------------------------------------------------------
 */

em_status coord_sched_start(coord_group *g, const model *m, const tokenizer *tok,
                            const coord_sched_opts *o, coord_sched **out)
{
    coord_sched *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return EM_ENOMEM;
    }
    s->g = g;
    s->m = m;
    s->tok = tok;
    s->o = *o;
    if (s->o.max_slots <= 0) {
        s->o.max_slots = 64;
    }
    if (s->o.max_batch_tokens <= 0) {
        s->o.max_batch_tokens = 256;
    }
    if (s->o.max_batch_tokens < s->o.max_slots) {
        s->o.max_batch_tokens = s->o.max_slots; /* every running decode fits in one step */
    }
    if (s->o.prefill_chunk <= 0) {
        s->o.prefill_chunk = s->o.max_batch_tokens;
    }
    if (s->o.mixed_prefill <= 0) {
        s->o.mixed_prefill = 64;
    }
    s->kv.bytes = s->o.kv_memory > 0 ? s->o.kv_memory : 0;
    s->kv.reserve =
        s->o.kv_overcommit > 0 && s->o.kv_overcommit <= 1 ? 1.0 - s->o.kv_overcommit : 1.0;
    s->kv.world = coord_group_world(g);
    for (int w = 0; w < s->kv.world; w++) {
        s->kv.shape[w] = (ems_footprint_shape){m->hp.n_layer, m->hp.head_dim, m->hp.n_kv_head,
                                               coord_group_kv_heads(g, w), s->o.prefill_chunk};
    }
    s->stats.kv_budget = s->kv.bytes;
    ems_config full;
    ems_config_default(&full);
    s->full_entry_bytes = (int64_t)ems_footprint_entry_bytes(&full, m->hp.head_dim);
    s->slot_used = calloc((size_t)s->o.max_slots, 1);
    s->drops = malloc(sizeof(int32_t) * (size_t)s->o.max_slots * 2);
    s->raw = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->slot_used || !s->drops || !s->raw ||
        pthread_create(&s->thr, NULL, sched_main, s) != 0) {
        free(s->slot_used);
        free(s->drops);
        free(s->raw);
        free(s);
        return EM_ENOMEM;
    }
    *out = s;
    return EM_OK;
}

void coord_sched_stop(coord_sched *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thr, NULL);
    /* requests that arrived after the thread's last turn */
    while (s->inbox) {
        run *r = s->inbox;
        s->inbox = r->next;
        r->slot = -1;
        coord__run_fail(s, r, EM_EUNAVAILABLE, "server shutting down");
    }
    free(s->slot_used);
    free(s->drops);
    free(s->raw);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* Fails q before it was queued. */
static void refuse(coord_req *q, em_status st, const char *msg)
{
    coord_event ev = {.kind = COORD_EV_ERROR, .request_id = q->id, .status = st, .message = msg};
    q->sink->emit(q->sink_user, &ev);
    q->sink->release(q->sink_user);
    coord_req_free(q);
}

/* Requests held (queued or running). Caller holds mu. (hardening, issue 12: bounded queue) */
static int held_locked(const coord_sched *s)
{
    int n = 0;
    for (const run *r = s->inbox; r; r = r->next) {
        n++;
    }
    for (const run *r = s->active; r; r = r->next) {
        n++;
    }
    return n;
}

void coord_sched_submit(coord_sched *s, coord_req *q)
{
    run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        refuse(q, EM_ENOMEM, "out of memory");
        return;
    }
    r->req = q;
    r->slot = -1;
    r->t_submit = em_now_s();
    r->state = RUN_QUEUED;
    pthread_mutex_lock(&s->mu);
    if (held_locked(s) >= s->o.max_slots + s->o.max_queue) {
        s->stats.requests_total++;
        s->stats.requests_failed++;
        s->stats.rejected[COORD_REJ_QUEUE_FULL]++;
        pthread_mutex_unlock(&s->mu);
        free(r);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "server busy: %d requests running and %d waiting (--max-queue); retry later",
                 s->o.max_slots, s->o.max_queue);
        refuse(q, EM_ENOSPC, msg);
        return;
    }
    if (s->inbox_tail) {
        s->inbox_tail->next = r;
    } else {
        s->inbox = r;
    }
    s->inbox_tail = r;
    s->stats.requests_total++;
    s->stats.prompt_tokens += q->n_prompt;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int flag_matching(coord_sched *s, run *list, void *sink_user, const char *id)
{
    int n = 0;
    for (run *r = list; r; r = r->next) {
        if (sink_user ? r->req->sink_user == sink_user : strcmp(r->req->id, id) == 0) {
            if (sink_user) {
                r->cancel_req = 1;
            } else {
                r->abort_req = 1;
            }
            n++;
        }
    }
    (void)s;
    return n;
}

void coord_sched_cancel(coord_sched *s, void *sink_user)
{
    pthread_mutex_lock(&s->mu);
    flag_matching(s, s->inbox, sink_user, NULL);
    flag_matching(s, s->active, sink_user, NULL);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int coord_sched_abort(coord_sched *s, const char *request_id)
{
    pthread_mutex_lock(&s->mu);
    int n = flag_matching(s, s->inbox, NULL, request_id) +
            flag_matching(s, s->active, NULL, request_id);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return n;
}

void coord_sched_note_refused(coord_sched *s, em_status st)
{
    pthread_mutex_lock(&s->mu);
    s->stats.rejected[coord__reject_of(st, 0)]++;
    pthread_mutex_unlock(&s->mu);
}

void coord_sched_get_stats(coord_sched *s, coord_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    out->serving = coord_group_serving(s->g);
    out->generation = coord_group_generation(s->g);
}
