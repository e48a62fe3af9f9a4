/* The scheduler's use of its KV memory budget (sched_kv.h): what the running sequences are
 * charged, admission of a waiting one, and preemption by recompute. Scheduler thread only.
 *
 * Preemption: before each step, when what the running sequences hold plus what the step can add
 * exceeds a worker's budget (possible only with --kv-reserve < 1, or when a projection was
 * wrong), the most recently admitted sequence is preempted by recompute: its caches are dropped,
 * its slot freed, and it goes back to waiting with everything it generated kept (the stream to
 * its client simply pauses). When readmitted, its prefill rebuilds the cache: a full cache by
 * one prefill of every id fed before; a compressing or quantized one by a prefill of the prompt
 * and then the generated ids one per step through the decode path (RUN_REPLAY), so the policies
 * take the same decisions and the greedy continuation is the one an unpreempted run produces.
 * A sequence that outgrows the budget alone fails with RESOURCE_EXHAUSTED. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "coordinator/sched_impl.h"

/* Bytes charged on each worker for the runs holding a slot (sched_kv.h). */
void coord__kv_used(coord_sched *s, int64_t *used)
{
    for (int w = 0; w < s->kv.world; w++) {
        used[w] = 0;
    }
    for (run *r = s->active; r; r = r->next) {
        if (r->state == RUN_QUEUED) {
            continue;
        }
        coord_kv_seq q;
        coord__run_kv_seq(s, r, &q);
        for (int w = 0; w < s->kv.world; w++) {
            used[w] += coord_kv_charge(&s->kv, &q, w, 0);
        }
    }
}

/* Admission under the KV memory budget: *fits 1 when r's charge fits next to used on every
 * worker (then added to used), 0 when it must wait; EM_ENOMEM when it can never fit (message in
 * r->kv_msg). */
em_status coord__kv_admit(coord_sched *s, run *r, int64_t *used, int *fits)
{
    *fits = 1;
    if (s->kv.bytes <= 0) {
        return EM_OK;
    }
    coord_kv_seq q;
    coord__run_kv_seq(s, r, &q);
    int64_t c[COORD_MAX_WORKERS];
    for (int w = 0; w < s->kv.world; w++) {
        int64_t whole = coord_kv_charge(&s->kv, &q, w, 1);
        if (whole > s->kv.bytes) {
            snprintf(r->kv_msg, sizeof r->kv_msg,
                     "request needs %lld bytes of KV memory on worker %d (%d prompt + %d "
                     "generated tokens under its kv settings); the budget is %lld bytes per worker "
                     "(--kv-memory)",
                     (long long)whole, w, r->req->n_prompt, q.n_end + 1 - r->req->n_prompt,
                     (long long)s->kv.bytes);
            return EM_ENOMEM;
        }
        c[w] = coord_kv_charge(&s->kv, &q, w, 0);
        *fits &= used[w] + c[w] <= s->kv.bytes;
    }
    if (*fits) {
        for (int w = 0; w < s->kv.world; w++) {
            used[w] += c[w];
        }
    }
    return EM_OK;
}

static void kv_step_need(coord_sched *s, int64_t *need, run **newest, int *n_running)
{
    *newest = NULL;
    *n_running = 0;
    for (int w = 0; w < s->kv.world; w++) {
        need[w] = 0;
    }
    for (run *r = s->active; r; r = r->next) {
        if (r->state == RUN_QUEUED) {
            continue;
        }
        coord_kv_seq q;
        coord__run_kv_seq(s, r, &q);
        for (int w = 0; w < s->kv.world; w++) {
            need[w] += r->held[w] + coord_kv_step_growth(&s->kv, &q, w);
        }
        (*n_running)++;
        if (*newest == NULL || r->admit_seq > (*newest)->admit_seq) {
            *newest = r;
        }
    }
}

static void preempt(coord_sched *s, run *r)
{
    if (r->opened) {
        s->drops[s->n_drops++] = r->slot;
    }
    s->slot_used[r->slot] = 0;
    r->slot = -1;
    r->opened = 0;
    r->state = RUN_QUEUED;
    r->resumed = 1;
    r->n_done = 0;
    r->kv_entries = 0;
    memset(r->held, 0, sizeof r->held);
    pthread_mutex_lock(&s->mu);
    s->stats.preemptions++;
    pthread_mutex_unlock(&s->mu);
}

/* Returns the number of sequences preempted (none are admitted in the same turn). */
int coord__kv_preempt(coord_sched *s)
{
    if (s->kv.bytes <= 0) {
        return 0;
    }
    for (int n = 0;; n++) {
        int64_t need[COORD_MAX_WORKERS];
        run *victim;
        int n_running, over = -1;
        kv_step_need(s, need, &victim, &n_running);
        for (int w = 0; w < s->kv.world && over < 0; w++) {
            over = need[w] > s->kv.bytes ? w : -1;
        }
        if (over < 0 || victim == NULL) {
            return n;
        }
        if (n_running == 1) {
            snprintf(victim->kv_msg, sizeof victim->kv_msg,
                     "KV memory budget exhausted: this request alone needs %lld bytes on worker "
                     "%d; the budget is %lld bytes per worker (--kv-memory)",
                     (long long)need[over], over, (long long)s->kv.bytes);
            victim->kv_fail = 1;
            preempt(s, victim); /* releases its memory; it fails on the next turn */
            continue;
        }
        EM_LOG_INFO("KV memory: worker %d would need %lld of %lld bytes; preempting request %s",
                    over, (long long)need[over], (long long)s->kv.bytes, victim->req->id);
        preempt(s, victim);
    }
}
