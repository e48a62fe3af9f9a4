/* In-process worker group for scheduler tests (see fake_group.h). */
#include "tests/coordinator/fake_group.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/kv_cache.h"
#include "proto/worker_proto.h"
#include "worker/wstate.h"

struct coord_group {
    worker_state w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hold, held;
    fake_group_log log;
    worker_step_out out;
    int64_t peak[1];
    coord_kv_counts *counts; /* the worker's counts in the group's form [out.n_slots] */
};

em_status fake_group_create(const char *model_path, int max_batch_tokens, int max_slots,
                            coord_group **out, char *err, size_t errlen)
{
    coord_group *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return EM_ENOMEM;
    }
    worker_state_init(&g->w, model_path, 1);
    worker_form f = {.generation = 1,
                     .rank = 0,
                     .world = 1,
                     .model_path = model_path,
                     .n_threads = 1,
                     .max_batch_tokens = max_batch_tokens,
                     .max_slots = max_slots};
    em_status st = worker_group_form(&g->w, &f, err, errlen);
    if (st != EM_OK) {
        worker_state_free(&g->w);
        free(g);
        return st;
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    *out = g;
    return EM_OK;
}

void fake_group_free(coord_group *g)
{
    if (g == NULL) {
        return;
    }
    worker_step_out_free(&g->out);
    free(g->counts);
    worker_state_free(&g->w);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

void fake_group_hold(coord_group *g, int hold)
{
    pthread_mutex_lock(&g->mu);
    g->hold = hold;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void fake_group_wait_held(coord_group *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->held) {
        pthread_cond_wait(&g->cv, &g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

void fake_group_get_log(coord_group *g, fake_group_log *out)
{
    pthread_mutex_lock(&g->mu);
    *out = g->log;
    pthread_mutex_unlock(&g->mu);
}

/* ---- coordinator/group.h, as the scheduler uses it ------------------------------------------- */

int coord_group_world(const coord_group *g)
{
    (void)g;
    return 1;
}

int coord_group_serving(coord_group *g)
{
    (void)g;
    return 1;
}

int64_t coord_group_generation(coord_group *g)
{
    (void)g;
    return 1;
}

void coord_group_lost_reason(coord_group *g, char *out, size_t len)
{
    (void)g;
    if (len)
        out[0] = 0;
}

int coord_group_kv_heads(const coord_group *g, int rank)
{
    (void)rank;
    return g->w.sd.n_units_local;
}

coord_group_event coord_group_tick(coord_group *g, int idle)
{
    (void)idle;
    pthread_mutex_lock(&g->mu);
    while (g->hold) {
        g->held = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_cond_wait(&g->cv, &g->mu);
    }
    g->held = 0;
    pthread_mutex_unlock(&g->mu);
    return COORD_GROUP_UNCHANGED;
}

static em_status convert_opens(const coord_step *st, worker_open *opens, char *err, size_t errlen)
{
    for (int i = 0; i < st->n_open; i++) {
        opens[i].slot = st->open[i].slot;
        ems_config_default(&opens[i].cfg);
        for (int k = 0; k < st->open[i].n_kv; k++) {
            em_status e = ems_config_set(&opens[i].cfg, st->open[i].keys[k], st->open[i].vals[k],
                                         err, errlen);
            if (e != EM_OK) {
                return e;
            }
        }
    }
    return EM_OK;
}

em_status coord_group_step(coord_group *g, const coord_step *st, coord_step_result *res, char *err,
                           size_t errlen)
{
    memset(res, 0, sizeof *res);
    worker_open *opens = calloc((size_t)st->n_open + 1, sizeof *opens);
    worker_policy *pols = calloc((size_t)st->n_policy + 1, sizeof *pols);
    em_status rc = opens && pols ? convert_opens(st, opens, err, errlen) : EM_ENOMEM;
    for (int i = 0; i < st->n_policy; i++) {
        pols[i] = (worker_policy){st->pol_slot[i], st->pol_phase[i]};
    }
    worker_step_in in = {.generation = 1,
                         .drop = st->drop,
                         .n_drop = st->n_drop,
                         .open = opens,
                         .n_open = st->n_open,
                         .n_tokens = st->n_tokens,
                         .tokens = st->tokens,
                         .pos = st->pos,
                         .seq = st->seq,
                         .want_logits = st->want,
                         .policy = pols,
                         .n_policy = st->n_policy,
                         .return_logits = 1};
    worker_step_out_free(&g->out);
    if (rc == EM_OK) {
        rc = worker_step(&g->w, &in, &g->out, err, errlen);
    }
    pthread_mutex_lock(&g->mu);
    for (int i = 0; rc == EM_OK && i < st->n_open; i++) {
        g->log.opens[opens[i].cfg.method]++;
    }
    g->log.drops += st->n_drop;
    if (rc == EM_OK) {
        int running = 0;
        for (int s = 0; s < g->w.max_slots; s++) {
            running += g->w.cache[s] != NULL;
        }
        for (int i = 0; i < g->out.n_slots; i++) {
            const ems_cache *c = g->w.cache[g->out.slots[i]];
            g->log.held_mismatch += g->out.bytes[i] != (int64_t)ems_cache_held_bytes(c);
        }
        g->log.steps++;
        for (int i = 0; i < st->n_policy; i++) {
            if (st->pol_phase[i] != WORKER_PHASE_PREFILL_CHUNK)
                continue;
            if (g->log.n_chunk_steps < (int)(sizeof g->log.chunk_pos / sizeof(int)))
                g->log.chunk_pos[g->log.n_chunk_steps] = g->w.next_pos[st->pol_slot[i]];
            g->log.n_chunk_steps++;
        }
        int n_dec = 0; /* a decode (or replay) token is the one row of a DECODE-phase sequence */
        for (int i = 0; i < st->n_policy; i++) {
            n_dec += st->pol_phase[i] == WORKER_PHASE_DECODE;
        }
        int n_pre = st->n_tokens - n_dec;
        if (n_dec > 0 && n_pre > 0) {
            g->log.mixed_steps++;
            g->log.mixed_prefill_max =
                n_pre > g->log.mixed_prefill_max ? n_pre : g->log.mixed_prefill_max;
        }
        g->log.running_max = running > g->log.running_max ? running : g->log.running_max;
        g->log.peak_max = g->out.peak_bytes > g->log.peak_max ? g->out.peak_bytes : g->log.peak_max;
    }
    pthread_mutex_unlock(&g->mu);
    free(opens);
    free(pols);
    if (rc != EM_OK) {
        return EM_EUNAVAILABLE;
    }
    g->peak[0] = g->out.peak_bytes;
    res->logits = g->out.logits;
    res->n_logits = g->out.n_logits;
    res->n_slots = g->out.n_slots;
    res->slots = g->out.slots;
    res->entries = g->out.entries;
    res->bytes = g->out.bytes;
    res->peak = g->peak;
    coord_kv_counts *nc = realloc(g->counts, sizeof *nc * (size_t)(g->out.n_slots + 1));
    if (nc == NULL) {
        return EM_ENOMEM;
    }
    g->counts = nc;
    for (int i = 0; i < g->out.n_slots; i++) {
        const worker_counts *c = &g->out.counts[i];
        g->counts[i] = (coord_kv_counts){c->evicted, c->merged, c->quantized, c->seconds};
    }
    res->bytes_quant = g->out.bytes_quant;
    res->counts = g->counts;
    return EM_OK;
}
