/* The continuous-batching scheduler (see sched.h). Concurrency: other threads only touch the
 * inbox and the per-run request flags under `mu`; everything else (runs, slots, the worker
 * group, sampling) belongs to the scheduler thread. */
#include "coordinator/sched.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "worker/wproto.h"

typedef enum { RUN_QUEUED, RUN_PREFILL, RUN_DECODE } run_state;

typedef struct run {
    coord_req *req;
    run_state state;
    int slot, opened;
    int n_done; /* prompt tokens fed */
    int32_t *hist;
    int n_hist, max_new;
    int32_t *out;
    int n_out;
    int32_t pending; /* sampled, not yet fed */
    sampler smp;
    stop_state ss;
    tok_stream ts;
    int have_smp, have_ss;
    int64_t kv_entries;
    int cancel_req, abort_req; /* set by other threads under mu */
    const char *fin_reason, *fin_matched; /* set when sampling finished the run */
    int fin_token;
    int oom;
    struct run *next;
} run;

struct coord_sched {
    coord_group *g;
    const model *m;
    const tokenizer *tok;
    coord_sched_opts o;
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    run *inbox, *inbox_tail; /* submitted, not yet seen by the scheduler */
    run *active, *active_tail;
    coord_sched_stats stats;
    /* scheduler-thread state */
    uint8_t *slot_used;
    int32_t *drops;
    int n_drops;
    float *raw; /* [n_vocab] logits copy for logprobs */
};

void coord_req_free(coord_req *r)
{
    if (r == NULL) {
        return;
    }
    free(r->prompt);
    for (int i = 0; i < r->n_kv; i++) {
        free(r->kv_key[i]);
        free(r->kv_val[i]);
    }
    free(r);
}

/* ---- run lifetime ---------------------------------------------------------------------------- */

static void run_release(coord_sched *s, run *r)
{
    if (r->opened) {
        s->drops[s->n_drops++] = r->slot;
    }
    if (r->slot >= 0) {
        s->slot_used[r->slot] = 0;
    }
    if (r->have_smp) {
        sampler_free(&r->smp);
    }
    if (r->have_ss) {
        stop_state_free(&r->ss);
    }
    r->req->sink->release(r->req->sink_user);
    coord_req_free(r->req);
    free(r->hist);
    free(r->out);
    free(r);
}

static void run_fail(coord_sched *s, run *r, em_status st, const char *msg)
{
    coord_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = COORD_EV_ERROR;
    ev.request_id = r->req->id;
    ev.status = st;
    ev.message = msg;
    r->req->sink->emit(r->req->sink_user, &ev);
    pthread_mutex_lock(&s->mu);
    s->stats.requests_failed++;
    pthread_mutex_unlock(&s->mu);
    run_release(s, r);
}

static void run_complete(coord_sched *s, run *r, const char *reason, const char *matched,
                         int matched_token)
{
    coord_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = COORD_EV_COMPLETE;
    ev.request_id = r->req->id;
    ev.finish_reason = reason;
    ev.output_ids = r->out;
    ev.n_output = r->n_out;
    ev.matched_stop = matched ? matched : "";
    ev.matched_stop_token = matched_token;
    ev.full_text = r->have_ss && r->ss.text ? r->ss.text : "";
    ev.full_text_len = r->have_ss && r->ss.text ? r->ss.len : 0;
    ev.prompt_tokens = r->req->n_prompt;
    ev.completion_tokens = r->n_out;
    const model_hparams *hp = &s->m->hp;
    int64_t seen = r->n_done + (r->n_out > 0 ? r->n_out - 1 : 0);
    ev.kv_entries_kept = r->kv_entries;
    ev.kv_entries_full = seen * hp->n_layer * hp->n_kv_head;
    r->req->sink->emit(r->req->sink_user, &ev);
    run_release(s, r);
}

/* Takes a slot and prepares sampling state; -1 when no slot is free. */
static int run_admit(coord_sched *s, run *r)
{
    int slot = -1;
    for (int i = 0; i < s->o.max_slots; i++) {
        if (!s->slot_used[i]) {
            slot = i;
            break;
        }
    }
    if (slot < 0) {
        return -1;
    }
    const model_hparams *hp = &s->m->hp;
    coord_req *q = r->req;
    r->max_new = q->stop.max_tokens;
    if (r->max_new > hp->n_ctx - q->n_prompt) {
        r->max_new = hp->n_ctx - q->n_prompt;
    }
    r->hist = malloc(sizeof(int32_t) * (size_t)(q->n_prompt + r->max_new + 1));
    r->out = malloc(sizeof(int32_t) * (size_t)(r->max_new + 1));
    if (!r->hist || !r->out || sampler_init(&r->smp, &q->sp, hp->n_vocab) != EM_OK) {
        return -2;
    }
    r->have_smp = 1;
    if (stop_state_init(&r->ss, &q->stop, hp->eos_id) != EM_OK) {
        return -2;
    }
    r->have_ss = 1;
    memcpy(r->hist, q->prompt, sizeof(int32_t) * (size_t)q->n_prompt);
    r->n_hist = q->n_prompt;
    tok_stream_init(&r->ts, s->tok, q->prompt[q->n_prompt - 1]);
    s->slot_used[slot] = 1;
    r->slot = slot;
    r->state = RUN_PREFILL;
    return 0;
}

/* ---- sampling one token (the single-process generator's per-token logic) ------------------ */

static void fill_logprobs(coord_sched *s, const float *raw, int32_t id, int top_n, coord_logprob *lp)
{
    int n = s->m->hp.n_vocab;
    float mx = raw[0];
    for (int i = 1; i < n; i++) {
        mx = raw[i] > mx ? raw[i] : mx;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        sum += exp((double)raw[i] - mx);
    }
    float lse = mx + (float)log(sum);
    lp->id = id;
    lp->logprob = raw[id] - lse;
    lp->n_top = 0;
    for (int k = 0; k < top_n && k < n; k++) { /* top_n <= 20: selection by repeated scans */
        int best = -1;
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < lp->n_top; j++) {
                taken |= lp->top_id[j] == i;
            }
            if (!taken && (best < 0 || raw[i] > raw[best])) {
                best = i;
            }
        }
        lp->top_id[lp->n_top] = best;
        lp->top_logprob[lp->n_top++] = raw[best] - lse;
    }
}

/* Samples from logits (modified); returns 1 when the run finished (fin_* set; the caller
 * unlinks and completes it). */
static int run_sample(coord_sched *s, run *r, float *logits)
{
    coord_logprob lp;
    int want_lp = r->req->logprobs > 0;
    if (want_lp) {
        memcpy(s->raw, logits, sizeof(float) * (size_t)s->m->hp.n_vocab);
    }
    int32_t id = sampler_sample(&r->smp, logits, r->hist, r->n_hist);
    if (want_lp) {
        fill_logprobs(s, s->raw, id, r->req->logprobs, &lp);
    }
    r->hist[r->n_hist++] = id;
    r->out[r->n_out++] = id;
    char piece[256] = "";
    size_t plen = tok_stream_feed(&r->ts, id, piece, sizeof piece);
    stop_reason why = stop_state_feed(&r->ss, id, piece, plen);
    if (why == STOP_NONE && r->n_out >= r->max_new) {
        why = STOP_LENGTH;
    }
    if (why != STOP_NONE && why != STOP_STRING) {
        char rest[64];
        size_t rl = tok_stream_flush(&r->ts, rest, sizeof rest);
        if (rl && stop_state_append_text(&r->ss, rest, rl) == STOP_STRING) {
            why = STOP_STRING;
        }
    }
    const char *txt;
    size_t tlen;
    stop_state_take(&r->ss, why != STOP_NONE, &txt, &tlen);
    coord_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = COORD_EV_CHUNK;
    ev.request_id = r->req->id;
    ev.ids = &id;
    ev.n_ids = 1;
    ev.text = txt;
    ev.text_len = tlen;
    ev.logprobs = want_lp ? &lp : NULL;
    ev.prompt_tokens = r->req->n_prompt;
    ev.completion_tokens = r->n_out;
    r->req->sink->emit(r->req->sink_user, &ev);
    pthread_mutex_lock(&s->mu);
    s->stats.tokens_generated++;
    pthread_mutex_unlock(&s->mu);
    if (why == STOP_NONE) {
        r->pending = id;
        r->state = RUN_DECODE;
        return 0;
    }
    r->fin_matched = why == STOP_STRING && r->ss.matched >= 0 ? r->ss.p->stop[r->ss.matched]
                                                               : NULL;
    r->fin_reason = stop_reason_str(why);
    r->fin_token = (why == STOP_TOKEN || why == STOP_EOS) ? id : -1;
    return 1;
}

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
    return r->cancel_req || r->abort_req || r->oom ||
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
            run_release(s, r); /* the client is gone: no events */
        } else if (r->abort_req) {
            run_complete(s, r, "abort", NULL, -1);
        } else if (r->oom) {
            run_fail(s, r, EM_ENOMEM, "out of memory for this request");
        } else {
            run_fail(s, r, EM_ETIMEDOUT, "deadline exceeded");
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
        run_fail(s, r, st, msg);
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

/* Decodes first (one token each), then prefill chunks in arrival order. */
static void batch_build(coord_sched *s, batch *b)
{
    int budget = s->o.max_batch_tokens;
    b->n = b->n_open = b->n_pol = b->n_want = 0;
    for (run *r = s->active; r && b->n < budget; r = r->next) {
        if (r->state != RUN_DECODE) {
            continue;
        }
        b->tokens[b->n] = r->pending;
        b->pos[b->n] = r->n_hist - 1;
        b->seq[b->n] = r->slot;
        b->want[b->n++] = 1;
        b->want_run[b->n_want++] = r;
        b->pol_slot[b->n_pol] = r->slot;
        b->pol_phase[b->n_pol++] = WORKER_PHASE_DECODE;
    }
    for (run *r = s->active; r && b->n < budget; r = r->next) {
        if (r->state == RUN_QUEUED) {
            int a = run_admit(s, r);
            if (a == -1) {
                break; /* no free slot: keep arrival order */
            }
            if (a == -2) {
                r->oom = 1; /* failed with RESOURCE_EXHAUSTED on the next turn */
                continue;
            }
        }
        if (r->state != RUN_PREFILL) {
            continue;
        }
        int left = r->req->n_prompt - r->n_done;
        int chunk = left < s->o.prefill_chunk ? left : s->o.prefill_chunk;
        if (chunk > budget - b->n) {
            chunk = budget - b->n;
        }
        if (!r->opened) {
            batch_add_open(b, r);
        }
        for (int i = 0; i < chunk; i++) {
            b->tokens[b->n] = r->req->prompt[r->n_done + i];
            b->pos[b->n] = r->n_done + i;
            b->seq[b->n] = r->slot;
            b->want[b->n++] = 0;
        }
        r->n_done += chunk;
        if (r->n_done == r->req->n_prompt) {
            b->want[b->n - 1] = 1;
            b->want_run[b->n_want++] = r;
            b->pol_slot[b->n_pol] = r->slot;
            b->pol_phase[b->n_pol++] = WORKER_PHASE_PREFILL_END;
        }
    }
}

static void step_once(coord_sched *s, batch *b)
{
    coord_step st = {s->n_drops, s->drops,   b->n_open, b->open, b->n,        b->tokens,
                     b->pos,     b->seq,     b->want,   b->n_pol, b->pol_slot, b->pol_phase};
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
    for (run *r = s->active; r; r = r->next) {
        for (int i = 0; i < res.n_slots; i++) {
            if (r->opened && res.slots[i] == r->slot) {
                r->kv_entries = res.entries[i];
            }
        }
    }
    int n_vocab = s->m->hp.n_vocab, n_fin = 0;
    for (int j = 0; j < b->n_want && j < res.n_logits; j++) {
        float *row = (float *)res.logits + (size_t)j * (size_t)n_vocab;
        n_fin += run_sample(s, b->want_run[j], row);
    }
    if (n_fin > 0) {
        pthread_mutex_lock(&s->mu);
        run *list = active_take_if(s, pred_finished);
        pthread_mutex_unlock(&s->mu);
        while (list) {
            run *r = list;
            list = r->next;
            run_complete(s, r, r->fin_reason, r->fin_matched, r->fin_token);
        }
    }
}

/* Gauges for GetServerInfo and /metrics (called by the scheduler thread every turn). */
static void update_stats(coord_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int running = 0, queued = 0;
    int64_t kv = 0;
    for (run *r = s->active; r; r = r->next) {
        running += r->state != RUN_QUEUED;
        queued += r->state == RUN_QUEUED;
        kv += r->kv_entries;
    }
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

        int ev = coord_group_tick(s->g, idle);
        if (ev == -1 || !coord_group_serving(s->g)) {
            if (s->active) {
                char msg[700];
                snprintf(msg, sizeof msg, "worker group unavailable: %s",
                         coord_group_lost_reason(s->g));
                fail_all(s, EM_EUNAVAILABLE, msg);
            }
            idle = 1;
            continue;
        }
        batch_build(s, &b);
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

/* ---- public API -------------------------------------------------------------------------------- */

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
        run_fail(s, r, EM_EUNAVAILABLE, "server shutting down");
    }
    free(s->slot_used);
    free(s->drops);
    free(s->raw);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

void coord_sched_submit(coord_sched *s, coord_req *q)
{
    run *r = calloc(1, sizeof *r);
    if (r == NULL) {
        coord_event ev = {.kind = COORD_EV_ERROR, .request_id = q->id, .status = EM_ENOMEM,
                          .message = "out of memory"};
        q->sink->emit(q->sink_user, &ev);
        q->sink->release(q->sink_user);
        coord_req_free(q);
        return;
    }
    r->req = q;
    r->slot = -1;
    r->state = RUN_QUEUED;
    pthread_mutex_lock(&s->mu);
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

void coord_sched_get_stats(coord_sched *s, coord_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
    out->serving = coord_group_serving(s->g);
    out->generation = coord_group_generation(s->g);
}
