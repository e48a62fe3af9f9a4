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
    free(w->next_pos);
    free(w->scr_pos);
    free(w->scr_open);
    free(w->reported);
    free(w->logits);
    engine_free(w->e);
    model_free(w->m);
    memset(w, 0, sizeof *w);
}

static em_status reduce_hook(void *user, float *buf, size_t n)
{
    worker_state *w = user;
    if (w->coll == NULL) { /* the group was torn down under a running step */
        return EM_EUNAVAILABLE;
    }
    em_status st = coll_allreduce_sum_float(w->coll, buf, n);
    if (st != EM_OK) {
        EM_LOG_ERROR("all-reduce of %zu floats failed: %s", n, coll_last_error(w->coll));
        return st;
    }
    return EM_OK;
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
    free(w->next_pos);
    free(w->scr_pos);
    free(w->scr_open);
    free(w->reported);
    w->cache = calloc((size_t)max_slots, sizeof *w->cache);
    w->cfg = calloc((size_t)max_slots, sizeof *w->cfg);
    w->next_pos = calloc((size_t)max_slots, sizeof *w->next_pos);
    w->scr_pos = calloc((size_t)max_slots, sizeof *w->scr_pos);
    w->scr_open = calloc((size_t)max_slots, sizeof *w->scr_open);
    w->reported = calloc((size_t)max_slots, sizeof *w->reported);
    int ok = w->cache && w->cfg && w->next_pos && w->scr_pos && w->scr_open && w->reported;
    w->max_slots = ok ? max_slots : 0;
    return ok ? EM_OK : EM_ENOMEM;
}

/* Bounds of a FormGroup request, checked before anything changes. */
static em_status check_form(const worker_form *f, char *err, size_t errlen)
{
    if (f->generation <= 0) {
        snprintf(err, errlen, "generation must be positive (got %lld)", (long long)f->generation);
        return EM_EINVAL;
    }
    if (f->world < 1 || f->rank < 0 || f->rank >= f->world) {
        snprintf(err, errlen, "bad rank %d of world %d", f->rank, f->world);
        return EM_EINVAL;
    }
    if (f->max_batch_tokens < 0 || f->max_batch_tokens > WORKER_MAX_BATCH_TOKENS ||
        f->max_slots < 0 || f->max_slots > WORKER_MAX_SLOTS || f->n_threads < 0 ||
        f->n_threads > WORKER_MAX_THREADS) {
        snprintf(err, errlen,
                 "max_batch_tokens %d, max_slots %d or n_threads %d out of range (at most %d, "
                 "%d, %d)",
                 f->max_batch_tokens, f->max_slots, f->n_threads, WORKER_MAX_BATCH_TOKENS,
                 WORKER_MAX_SLOTS, WORKER_MAX_THREADS);
        return EM_EINVAL;
    }
    if (f->timeout_ms < 0 || f->timeout_ms > 600000) {
        snprintf(err, errlen, "timeout_ms %ld out of range [0, 600000]", f->timeout_ms);
        return EM_EINVAL;
    }
    if (f->world > 1 && (f->store_addr == NULL || f->store_addr[0] == 0 || f->prefix == NULL ||
                         f->prefix[0] == 0)) {
        snprintf(err, errlen, "a group of %d needs store_addr and prefix", f->world);
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status worker_group_form(worker_state *w, const worker_form *f, char *err, size_t errlen)
{
    em_status cst = check_form(f, err, errlen);
    if (cst != EM_OK) {
        return cst;
    }
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
    shard_desc sd;
    if (shard_for_rank(hp->n_kv_head, f->rank, f->world, &sd) != EM_OK) {
        snprintf(err, errlen,
                 "%d workers cannot split the %d KV heads of the model (at most one "
                 "worker per KV head)",
                 f->world, hp->n_kv_head);
        return EM_EINVAL;
    }
    if (f->act_quant != KERN_ACT_F32 && f->act_quant != KERN_ACT_Q8) {
        snprintf(err, errlen, "act_quant %d is not 0 (f32) or 1 (q8)", f->act_quant);
        return EM_EINVAL;
    }
    int mbt = f->max_batch_tokens > 0 ? f->max_batch_tokens : 256;
    if (w->e == NULL || w->rank != f->rank || w->world != f->world || w->max_batch_tokens != mbt ||
        w->act_quant != f->act_quant || (f->n_threads > 0 && f->n_threads != w->n_threads)) {
        engine_free(w->e);
        w->e = NULL;
        if (f->n_threads > 0) {
            w->n_threads = f->n_threads;
        }
        sd.reduce = f->world > 1 ? reduce_hook : NULL;
        sd.reduce_user = w;
        engine_opts eo = {
            .n_threads = w->n_threads, .max_batch_tokens = mbt, .act = (kern_act_mode)f->act_quant};
        em_status st = engine_create(w->m, &sd, &eo, &w->e);
        if (st != EM_OK) {
            snprintf(err, errlen, "engine_create: %s", em_status_str(st));
            return st;
        }
        w->sd = sd;
        w->rank = f->rank;
        w->world = f->world;
        w->max_batch_tokens = mbt;
        w->act_quant = f->act_quant;
        w->weight_bytes = (int64_t)engine_weight_bytes(w->e);
    }
    em_status st = ensure_slots(w, f->max_slots);
    if (st != EM_OK) {
        snprintf(err, errlen, "out of memory for %d slots", f->max_slots);
        return st;
    }
    if (f->world > 1) {
        coll_store_ops ops;
        const coll_tls *tls = w->store_tls.cert_pem ? &w->store_tls : NULL;
        if (coll_store_client_ops_tls(f->store_addr, w->cluster_secret, tls, &ops, err, errlen) !=
            EM_OK) {
            if (!tls) {
                snprintf(err, errlen, "bad store address %s (want HOST:PORT)", f->store_addr);
            }
            return EM_EINVAL;
        }
        const char *host = w->gloo_host[0] ? w->gloo_host : f->gloo_host;
        w->coll = coll_init(f->rank, f->world, NULL, &ops, f->prefix, host && host[0] ? host : NULL,
                            f->timeout_ms > 0 ? f->timeout_ms : 10000, err, errlen);
        coll_store_client_ops_free(&ops);
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

static int slot_ok(const worker_state *w, int s)
{
    return s >= 0 && s < w->max_slots;
}

/* Checks the whole step against the state as it will be after the drops and opens, without
 * changing anything: slot table, vocabulary, step size, and per-slot position continuity. */
static em_status check_step(worker_state *w, const worker_step_in *in, char *err, size_t errlen)
{
    int n_vocab = w->m->hp.n_vocab, n_ctx = w->m->hp.n_ctx;
    if (in->n_tokens < 0 || in->n_tokens > w->max_batch_tokens) {
        snprintf(err, errlen, "%d tokens in one step, at most %d (max_batch_tokens)", in->n_tokens,
                 w->max_batch_tokens);
        return EM_EINVAL;
    }
    if (in->n_drop > 2 * w->max_slots || in->n_open > w->max_slots ||
        in->n_policy > in->n_tokens + w->max_slots) {
        snprintf(err, errlen, "%d drops, %d opens, %d policy steps: more than the %d slots allow",
                 in->n_drop, in->n_open, in->n_policy, w->max_slots);
        return EM_EINVAL;
    }
    for (int s = 0; s < w->max_slots; s++) {
        w->scr_open[s] = w->cache[s] != NULL;
        w->scr_pos[s] = w->next_pos[s];
    }
    for (int i = 0; i < in->n_drop; i++) {
        if (!slot_ok(w, in->drop[i])) {
            snprintf(err, errlen, "drop: slot %d outside the table of %d", in->drop[i],
                     w->max_slots);
            return EM_EINVAL;
        }
        w->scr_open[in->drop[i]] = 0;
    }
    for (int i = 0; i < in->n_open; i++) {
        if (!slot_ok(w, in->open[i].slot)) {
            snprintf(err, errlen, "open: slot %d out of range (the table has %d)", in->open[i].slot,
                     w->max_slots);
            return EM_EINVAL;
        }
        w->scr_open[in->open[i].slot] = 1;
        w->scr_pos[in->open[i].slot] = 0;
    }
    for (int i = 0; i < in->n_tokens; i++) {
        int s = in->seq[i];
        if (!slot_ok(w, s) || !w->scr_open[s]) {
            snprintf(err, errlen, "token %d: slot %d is not open", i, s);
            return EM_EINVAL;
        }
        if (in->tokens[i] < 0 || in->tokens[i] >= n_vocab || in->pos[i] < 0 ||
            in->pos[i] >= n_ctx) {
            snprintf(err, errlen, "token %d: id %d / position %d out of range", i, in->tokens[i],
                     in->pos[i]);
            return EM_EINVAL;
        }
        if (in->pos[i] != w->scr_pos[s]) {
            snprintf(err, errlen,
                     "token %d: position %d in slot %d, whose sequence continues at %d (positions "
                     "are fed once each, in order)",
                     i, in->pos[i], s, w->scr_pos[s]);
            return EM_EINVAL;
        }
        w->scr_pos[s]++;
    }
    for (int i = 0; i < in->n_policy; i++) {
        int s = in->policy[i].slot;
        if (!slot_ok(w, s) || !w->scr_open[s]) {
            snprintf(err, errlen, "policy: slot %d is not open", s);
            return EM_EINVAL;
        }
        if (in->policy[i].phase != WORKER_PHASE_PREFILL_END &&
            in->policy[i].phase != WORKER_PHASE_DECODE &&
            in->policy[i].phase != WORKER_PHASE_PREFILL_CHUNK) {
            snprintf(err, errlen, "policy: unknown phase %d", in->policy[i].phase);
            return EM_EINVAL;
        }
    }
    return EM_OK;
}

/* Applies the (checked) drops and opens. */
static em_status open_slots(worker_state *w, const worker_step_in *in, char *err, size_t errlen)
{
    for (int i = 0; i < in->n_drop; i++) {
        int s = in->drop[i];
        ems_cache_destroy(w->cache[s]);
        w->cache[s] = NULL;
        w->next_pos[s] = 0;
    }
    for (int i = 0; i < in->n_open; i++) {
        const worker_open *o = &in->open[i];
        ems_cache_destroy(w->cache[o->slot]);
        w->cache[o->slot] = NULL;
        w->next_pos[o->slot] = 0;
        memset(&w->reported[o->slot], 0, sizeof w->reported[o->slot]); /* a new cache: all 0 */
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

/* What compression did to slot s's cache since its last reply (and notes the new totals). */
static worker_counts counts_since_report(worker_state *w, int s)
{
    ems_policy_stats ps;
    ems_policy_get_stats(w->cache[s], &ps);
    worker_counts now = {ps.n_evicted, ps.n_merged, (int64_t)ems_cache_quantized_total(w->cache[s]),
                         ps.seconds};
    worker_counts *r = &w->reported[s];
    worker_counts d = {now.evicted - r->evicted, now.merged - r->merged,
                       now.quantized - r->quantized, now.seconds - r->seconds};
    *r = now;
    return d;
}

static em_status collect(worker_state *w, const worker_step_in *in, worker_step_out *out)
{
    size_t n = (size_t)(in->n_tokens + 1);
    out->slots = malloc(sizeof(int32_t) * n);
    out->entries = malloc(sizeof(int64_t) * n);
    out->bytes = malloc(sizeof(int64_t) * n);
    out->bytes_quant = malloc(sizeof(int64_t) * n);
    out->counts = malloc(sizeof(worker_counts) * n);
    if (!out->slots || !out->entries || !out->bytes || !out->bytes_quant || !out->counts) {
        return EM_ENOMEM;
    }
    for (int i = 0; i < in->n_tokens; i++) {
        int s = in->seq[i];
        if (i > 0 && in->seq[i - 1] == s) {
            continue;
        }
        out->slots[out->n_slots] = s;
        out->bytes[out->n_slots] = (int64_t)ems_cache_held_bytes(w->cache[s]);
        out->bytes_quant[out->n_slots] = (int64_t)ems_cache_quant_held_bytes(w->cache[s]);
        out->counts[out->n_slots] = counts_since_report(w, s);
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
    em_status st = check_step(w, in, err, errlen);
    if (st == EM_OK) {
        st = open_slots(w, in, err, errlen);
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
        }
        for (int i = 0; st == EM_OK && i < in->n_tokens; i++) {
            w->next_pos[in->seq[i]] = in->pos[i] + 1;
        }
        if (st == EM_OK && in->return_logits) {
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
        int phase = p->phase == WORKER_PHASE_PREFILL_END     ? EMS_PHASE_PREFILL_END
                    : p->phase == WORKER_PHASE_PREFILL_CHUNK ? EMS_PHASE_PREFILL_CHUNK
                                                             : EMS_PHASE_DECODE;
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
    free(out->bytes_quant);
    free(out->counts);
    memset(out, 0, sizeof *out);
}
