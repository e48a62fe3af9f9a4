/* One request's life in the scheduler: admission to a slot, sampling each token with the
 * engine's sampler and stop logic (the single-process generator's per-token steps), streaming
 * events to the sink, completion and release. Runs on the scheduler thread only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "coordinator/sched_impl.h"

const double coord_lat_bucket_ms[COORD_LAT_BUCKETS] = {1,   2,   5,    10,   20,   50,    100,
                                                       200, 500, 1000, 2000, 5000, 10000, 30000};

static void hist_add(coord_lat_hist *h, double ms)
{
    int b = 0;
    while (b < COORD_LAT_BUCKETS && ms > coord_lat_bucket_ms[b]) {
        b++;
    }
    h->count[b]++;
    h->sum_ms += ms;
    h->n++;
}

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

void coord__run_release(coord_sched *s, run *r)
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

void coord__run_fail(coord_sched *s, run *r, em_status st, const char *msg)
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
    coord__run_release(s, r);
}

void coord__run_complete(coord_sched *s, run *r, const char *reason, const char *matched,
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
    coord__run_release(s, r);
}

/* Takes a slot and prepares sampling state; -1 when no slot is free. */
int coord__run_admit(coord_sched *s, run *r)
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

static void fill_logprobs(coord_sched *s, const float *raw, int32_t id, int top_n,
                          coord_logprob *lp)
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
int coord__run_sample(coord_sched *s, run *r, float *logits)
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
    double now = em_now_s();
    pthread_mutex_lock(&s->mu);
    s->stats.tokens_generated++;
    hist_add(r->n_out == 1 ? &s->stats.ttft : &s->stats.itl,
             (now - (r->n_out == 1 ? r->t_submit : r->t_last)) * 1e3);
    pthread_mutex_unlock(&s->mu);
    r->t_last = now;
    if (why == STOP_NONE) {
        r->pending = id;
        r->state = RUN_DECODE;
        return 0;
    }
    r->fin_matched = why == STOP_STRING && r->ss.matched >= 0 ? r->ss.p->stop[r->ss.matched] : NULL;
    r->fin_reason = stop_reason_str(why);
    r->fin_token = (why == STOP_TOKEN || why == STOP_EOS) ? id : -1;
    return 1;
}
