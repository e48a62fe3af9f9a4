/* A worker's native state: group formation, sequence slots and the step (see wstate.h). */
#include "worker/wstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "ems/policy.h"
#include "proto/worker_proto.h"

void worker_state_init(worker_state *w, const char *model_path, int n_threads)
{
    memset(w, 0, sizeof *w);
    snprintf(w->model_path, sizeof w->model_path, "%s", model_path ? model_path : "");
    w->n_threads = n_threads;
}

static void drop_all(worker_state *w)
{
    for (int i = 0; i < w->max_slots; i++) {
        ems_cache_destroy(w->cache[i]);
        w->cache[i] = NULL;
    }
}

void worker_group_leave(worker_state *w)
{
    if (w->cache) {
        drop_all(w);
    }
    coll_destroy(w->coll);
    w->coll = NULL;
    w->generation = 0;
}

void worker_state_free(worker_state *w)
{
    worker_group_leave(w);
    free(w->cache);
    free(w->cfg);
    free(w->logits);
    engine_free(w->e);
    model_free(w->m);
    memset(w, 0, sizeof *w);
}

static int reduce_hook(void *user, float *buf, size_t n)
{
    worker_state *w = user;
    if (w->coll == NULL) {
        return -1;
    }
    if (coll_allreduce_sum_float(w->coll, buf, n) != 0) {
        EM_LOG_ERROR("all-reduce of %zu floats failed: %s", n, coll_last_error(w->coll));
        return -1;
    }
    return 0;
}

static em_status ensure_slots(worker_state *w, int max_slots)
{
    if (max_slots <= 0) {
        max_slots = 64;
    }
    if (w->cache && w->max_slots == max_slots) {
        return EM_OK;
    }
    free(w->cache);
    free(w->cfg);
    w->cache = calloc((size_t)max_slots, sizeof *w->cache);
    w->cfg = calloc((size_t)max_slots, sizeof *w->cfg);
    w->max_slots = (w->cache && w->cfg) ? max_slots : 0;
    return w->max_slots ? EM_OK : EM_ENOMEM;
}

em_status worker_group_form(worker_state *w, const worker_form *f, char *err, size_t errlen)
{
    worker_group_leave(w);
    const char *path = w->model_path[0] ? w->model_path : f->model_path;
    if (w->m == NULL) {
        if (path == NULL || path[0] == 0) {
            snprintf(err, errlen, "no model: start the worker with --model or send model_path");
            return EM_EINVAL;
        }
        em_status st = model_load(path, &w->m, err, errlen);
        if (st != EM_OK) {
            return st;
        }
        snprintf(w->model_path, sizeof w->model_path, "%s", path);
    }
    const model_hparams *hp = &w->m->hp;
    if (f->world < 1 || f->rank < 0 || f->rank >= f->world) {
        snprintf(err, errlen, "bad rank %d of world %d", f->rank, f->world);
        return EM_EINVAL;
    }
    shard_desc sd;
    if (shard_for_rank(hp->n_kv_head, f->rank, f->world, &sd) != EM_OK) {
        snprintf(err, errlen, "%d workers cannot split the %d KV heads of the model (at most one "
                 "worker per KV head)", f->world, hp->n_kv_head);
        return EM_EINVAL;
    }
    int mbt = f->max_batch_tokens > 0 ? f->max_batch_tokens : 256;
    if (w->e == NULL || w->rank != f->rank || w->world != f->world || w->max_batch_tokens != mbt ||
        (f->n_threads > 0 && f->n_threads != w->n_threads)) {
        engine_free(w->e);
        w->e = NULL;
        if (f->n_threads > 0) {
            w->n_threads = f->n_threads;
        }
        sd.reduce = f->world > 1 ? reduce_hook : NULL;
        sd.reduce_user = w;
        engine_opts eo = {.n_threads = w->n_threads, .max_batch_tokens = mbt};
        em_status st = engine_create(w->m, &sd, &eo, &w->e);
        if (st != EM_OK) {
            snprintf(err, errlen, "engine_create: %s", em_status_str(st));
            return st;
        }
        w->sd = sd;
        w->rank = f->rank;
        w->world = f->world;
        w->max_batch_tokens = mbt;
        w->weight_bytes = (int64_t)engine_weight_bytes(w->e);
    }
    em_status st = ensure_slots(w, f->max_slots);
    if (st != EM_OK) {
        snprintf(err, errlen, "out of memory for %d slots", f->max_slots);
        return st;
    }
    if (f->world > 1) {
        char rdv[300];
        snprintf(rdv, sizeof rdv, "tcp:%s", f->store_addr ? f->store_addr : "");
        const char *host = w->gloo_host[0] ? w->gloo_host : f->gloo_host;
        w->coll = coll_init(f->rank, f->world, rdv, NULL, f->prefix, host && host[0] ? host : NULL,
                            f->timeout_ms > 0 ? f->timeout_ms : 10000, err, errlen);
        if (w->coll == NULL) {
            return EM_EUNAVAILABLE;
        }
    }
    w->generation = f->generation;
    EM_LOG_INFO("joined group generation %lld as rank %d of %d (KV heads %d..%d)",
                (long long)f->generation, f->rank, f->world, sd.unit0,
                sd.unit0 + sd.n_units_local - 1);
    return EM_OK;
}

static em_status check_batch(worker_state *w, const worker_step_in *in, char *err, size_t errlen)
{
    int n_vocab = w->m->hp.n_vocab, n_ctx = w->m->hp.n_ctx;
    for (int i = 0; i < in->n_tokens; i++) {
        int s = in->seq[i];
        if (s < 0 || s >= w->max_slots || w->cache[s] == NULL) {
            snprintf(err, errlen, "token %d: slot %d is not open", i, s);
            return EM_EINVAL;
        }
        if (in->tokens[i] < 0 || in->tokens[i] >= n_vocab || in->pos[i] < 0 ||
            in->pos[i] >= n_ctx) {
            snprintf(err, errlen, "token %d: id %d / position %d out of range", i, in->tokens[i],
                     in->pos[i]);
            return EM_EINVAL;
        }
    }
    for (int i = 0; i < in->n_policy; i++) {
        int s = in->policy[i].slot;
        if (s < 0 || s >= w->max_slots || w->cache[s] == NULL) {
            snprintf(err, errlen, "policy: slot %d is not open", s);
            return EM_EINVAL;
        }
    }
    return EM_OK;
}

static em_status open_slots(worker_state *w, const worker_step_in *in, char *err, size_t errlen)
{
    for (int i = 0; i < in->n_drop; i++) {
        int s = in->drop[i];
        if (s >= 0 && s < w->max_slots) {
            ems_cache_destroy(w->cache[s]);
            w->cache[s] = NULL;
        }
    }
    for (int i = 0; i < in->n_open; i++) {
        const worker_open *o = &in->open[i];
        if (o->slot < 0 || o->slot >= w->max_slots) {
            snprintf(err, errlen, "open: slot %d out of range", o->slot);
            return EM_EINVAL;
        }
        ems_cache_destroy(w->cache[o->slot]);
        w->cache[o->slot] = NULL;
        w->cfg[o->slot] = o->cfg;
        em_status st =
            engine_cache_create(w->e, ems_config_w_loc(&o->cfg), ems_config_wants_stats(&o->cfg),
                                o->cfg.group_max, &w->cache[o->slot]);
        if (st != EM_OK) {
            snprintf(err, errlen, "open slot %d: %s", o->slot, em_status_str(st));
            return st;
        }
    }
    return EM_OK;
}

static em_status collect(worker_state *w, const worker_step_in *in, worker_step_out *out)
{
    out->slots = malloc(sizeof(int32_t) * (size_t)(in->n_tokens + 1));
    out->entries = malloc(sizeof(int64_t) * (size_t)(in->n_tokens + 1));
    out->bytes = malloc(sizeof(int64_t) * (size_t)(in->n_tokens + 1));
    if (!out->slots || !out->entries || !out->bytes) {
        return EM_ENOMEM;
    }
    for (int i = 0; i < in->n_tokens; i++) {
        int s = in->seq[i];
        if (i > 0 && in->seq[i - 1] == s) {
            continue;
        }
        out->slots[out->n_slots] = s;
        out->bytes[out->n_slots] = (int64_t)ems_cache_held_bytes(w->cache[s]);
        out->entries[out->n_slots++] = (int64_t)ems_cache_entries(w->cache[s]);
    }
    return EM_OK;
}

em_status worker_step(worker_state *w, const worker_step_in *in, worker_step_out *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (w->e == NULL || w->generation == 0 || in->generation != w->generation) {
        snprintf(err, errlen, "not in group generation %lld (in %lld)", (long long)in->generation,
                 (long long)w->generation);
        return EM_EUNAVAILABLE;
    }
    em_status st = open_slots(w, in, err, errlen);
    if (st == EM_OK) {
        st = check_batch(w, in, err, errlen);
    }
    if (st != EM_OK) {
        return st;
    }
    int n_vocab = w->m->hp.n_vocab;
    if (in->n_tokens > 0) {
        int n_want = 0;
        for (int i = 0; i < in->n_tokens; i++) {
            n_want += in->want_logits ? in->want_logits[i] != 0
                                      : (i + 1 == in->n_tokens || in->seq[i + 1] != in->seq[i]);
        }
        if (in->return_logits && n_want > w->cap_logits) {
            free(w->logits);
            w->logits = malloc(sizeof(float) * (size_t)n_want * (size_t)n_vocab);
            w->cap_logits = w->logits ? n_want : 0;
            if (w->logits == NULL) {
                return EM_ENOMEM;
            }
        }
        engine_batch b = {in->n_tokens, in->tokens, in->pos, in->seq, in->want_logits};
        st = engine_forward(w->e, &b, w->cache, in->return_logits ? w->logits : NULL);
        if (st != EM_OK) {
            snprintf(err, errlen, "engine_forward: %s", em_status_str(st));
        } else if (in->return_logits) {
            out->logits = w->logits;
            out->n_logits = n_want;
        }
    }
    /* KV memory budget: the step's peak is after the forward appended, before compression
     * (or after the policies, below, when they attached a quantized store) */
    for (int i = 0; i < w->max_slots; i++) {
        out->peak_bytes += w->cache[i] ? (int64_t)ems_cache_held_bytes(w->cache[i]) : 0;
    }
    ems_reduce red = {w->world > 1 ? reduce_hook : NULL, w, w->m->hp.n_kv_head};
    for (int i = 0; st == EM_OK && i < in->n_policy; i++) {
        const worker_policy *p = &in->policy[i];
        int phase = p->phase == WORKER_PHASE_PREFILL_END ? EMS_PHASE_PREFILL_END : EMS_PHASE_DECODE;
        st =
            ems_policy_step(w->cache[p->slot], &w->cfg[p->slot], phase, w->world > 1 ? &red : NULL);
        if (st != EM_OK) {
            snprintf(err, errlen, "ems_policy_step slot %d: %s", p->slot, em_status_str(st));
        }
    }
    if (st == EM_OK) {
        st = collect(w, in, out);
        /* attaching a quantized store at the prompt's end adds memory: that counts too */
        int64_t after = 0;
        for (int i = 0; i < w->max_slots; i++) {
            after += w->cache[i] ? (int64_t)ems_cache_held_bytes(w->cache[i]) : 0;
        }
        out->peak_bytes = after > out->peak_bytes ? after : out->peak_bytes;
    }
    if (st == EM_EUNAVAILABLE) {
        EM_LOG_ERROR("group generation %lld failed: %s", (long long)w->generation, err);
        worker_group_leave(w);
    }
    return st;
}

void worker_step_out_free(worker_step_out *out)
{
    free(out->slots);
    free(out->entries);
    free(out->bytes);
    memset(out, 0, sizeof *out);
}
