/* One request's life in the scheduler: admission to a slot, one decode step per token (the
 * single-process generator's step, engine/decode_step.h), streaming events to the sink,
 * completion and release. Runs on the scheduler thread only. */
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
    decode_seq_free(&r->dec);
    r->req->sink->release(r->req->sink_user);
    coord_req_free(r->req);
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
    int n_out = decode_seq_n_ids(&r->dec);
    ev.output_ids = decode_seq_ids(&r->dec);
    ev.n_output = n_out;
    ev.matched_stop = matched ? matched : "";
    ev.matched_stop_token = matched_token;
    ev.full_text = r->dec.have_ss && r->dec.ss.text ? r->dec.ss.text : "";
    ev.full_text_len = r->dec.have_ss && r->dec.ss.text ? r->dec.ss.len : 0;
    ev.prompt_tokens = r->req->n_prompt;
    ev.completion_tokens = n_out;
    const model_hparams *hp = &s->m->hp;
    int64_t seen = r->dec.n_hist > 0 ? r->dec.n_hist - 1 : 0; /* the last sampled id is not fed */
    ev.kv_entries_kept = r->kv_entries;
    ev.kv_entries_full = seen * hp->n_layer * hp->n_kv_head;
    r->req->sink->emit(r->req->sink_user, &ev);
    coord__run_release(s, r);
}

/* Takes a slot and prepares sampling state; EM_ENOSPC when no slot is free. */
em_status coord__run_admit(coord_sched *s, run *r)
{
    int slot = -1;
    for (int i = 0; i < s->o.max_slots; i++) {
        if (!s->slot_used[i]) {
            slot = i;
            break;
        }
    }
    if (slot < 0) {
        return EM_ENOSPC;
    }
    coord_req *q = r->req;
    if (!r->resumed && decode_seq_init(&r->dec, &s->m->hp, s->tok, &q->sp, &q->stop, q->prompt,
                                       q->n_prompt) != EM_OK) {
        return EM_ENOMEM; /* the prompt was validated by the rpc layer: only allocation can fail */
    }
    s->slot_used[slot] = 1;
    r->slot = slot;
    r->state = RUN_PREFILL;
    r->n_done = 0;
    r->n_prefill = coord__run_prefill_len(r);
    r->admit_seq = ++s->admit_count;
    if (!r->queue_timed) {
        r->queue_timed = 1;
        pthread_mutex_lock(&s->mu);
        hist_add(&s->stats.queue, (em_now_s() - r->t_submit) * 1e3);
        pthread_mutex_unlock(&s->mu);
    }
    return EM_OK;
}

/* ---- the KV memory budget's view of a run ---------------------------------------------------- */

int coord__run_prefill_len(const run *r)
{
    const ems_config *kv = &r->req->kv;
    int generated = r->resumed && r->dec.n_hist > r->req->n_prompt;
    if (generated && kv->method == EMS_METHOD_FULL && kv->quant == EMS_QUANT_NONE) {
        return r->dec.n_hist - 1; /* a full cache is the same however it was fed */
    }
    return r->req->n_prompt; /* the rest is replayed one token per step */
}

int coord__run_fed(const run *r)
{
    if (r->state == RUN_QUEUED) {
        return 0;
    }
    return r->state == RUN_DECODE ? r->dec.n_hist - 1 : r->n_done;
}

void coord__run_kv_seq(const coord_sched *s, const run *r, coord_kv_seq *q)
{
    const coord_req *rq = r->req;
    int n_ctx = s->m->hp.n_ctx;
    int max_new =
        rq->stop.max_tokens < n_ctx - rq->n_prompt ? rq->stop.max_tokens : n_ctx - rq->n_prompt;
    int queued = r->state == RUN_QUEUED;
    int n_prefill = queued ? coord__run_prefill_len(r) : r->n_prefill;
    q->cfg = &rq->kv;
    q->n_prompt = n_prefill;
    q->n_fed = coord__run_fed(r);
    q->n_end = rq->n_prompt + max_new - 1;
    q->prompt_ahead = q->n_fed <= n_prefill;
    q->held = queued ? NULL : r->held;
    if (queued || r->state == RUN_PREFILL) {
        int left = n_prefill - q->n_fed;
        q->next_tokens = left < s->o.prefill_chunk ? left : s->o.prefill_chunk;
    } else {
        q->next_tokens = 1;
    }
}

/* ---- one token: the shared decode step, then the stream event and latency statistics ------ */

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
    decode_token tk;
    decode_seq_step(&r->dec, logits, &tk);
    if (want_lp) {
        fill_logprobs(s, s->raw, tk.id, r->req->logprobs, &lp);
    }
    int n_out = decode_seq_n_ids(&r->dec);
    coord_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = COORD_EV_CHUNK;
    ev.request_id = r->req->id;
    ev.ids = &tk.id;
    ev.n_ids = 1;
    ev.text = tk.text;
    ev.text_len = tk.text_len;
    ev.logprobs = want_lp ? &lp : NULL;
    ev.prompt_tokens = r->req->n_prompt;
    ev.completion_tokens = n_out;
    r->req->sink->emit(r->req->sink_user, &ev);
    double now = em_now_s();
    pthread_mutex_lock(&s->mu);
    s->stats.tokens_generated++;
    hist_add(n_out == 1 ? &s->stats.ttft : &s->stats.itl,
             (now - (n_out == 1 ? r->t_submit : r->t_last)) * 1e3);
    pthread_mutex_unlock(&s->mu);
    r->t_last = now;
    if (tk.reason == STOP_NONE) {
        r->pending = tk.id;
        r->state = RUN_DECODE;
        return 0;
    }
    r->fin_matched = tk.matched_stop;
    r->fin_reason = stop_reason_str(tk.reason);
    r->fin_token = (tk.reason == STOP_TOKEN || tk.reason == STOP_EOS) ? tk.id : -1;
    return 1;
}
