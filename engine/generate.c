/* The single-sequence generation loop (see generate.h). */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "ems/policy.h"

void gen_params_default(gen_params *p)
{
    memset(p, 0, sizeof *p);
    sampler_params_default(&p->sp);
    stop_params_default(&p->stop);
    ems_config_default(&p->kv);
    p->prefill_chunk = 512;
}

void gen_result_free(gen_result *r)
{
    free(r->ids);
    free(r->prompt_logits);
    memset(r, 0, sizeof *r);
}

em_status gen_run(engine *e, const tokenizer *tok, const int32_t *prompt, int n_prompt,
                  const gen_params *gp, gen_on_token cb, void *user, gen_result *res)
{
    memset(res, 0, sizeof *res);
    const model_hparams *hp = engine_hparams(e);
    if (n_prompt <= 0 || n_prompt >= hp->n_ctx) return EM_EINVAL;
    int max_new = gp->stop.max_tokens;
    if (max_new > hp->n_ctx - n_prompt) max_new = hp->n_ctx - n_prompt;
    ems_cache *c = NULL;
    sampler smp;
    stop_state ss;
    int32_t *hist = malloc(sizeof(int32_t) * (size_t)(n_prompt + max_new + 1));
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    res->ids = malloc(sizeof(int32_t) * (size_t)(max_new + 1));
    res->prompt_logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    em_status st = (hist && logits && res->ids && res->prompt_logits) ? EM_OK : EM_ENOMEM;
    int have_smp = 0, have_ss = 0;
    if (st == EM_OK) st = sampler_init(&smp, &gp->sp, hp->n_vocab);
    have_smp = st == EM_OK;
    if (st == EM_OK) st = stop_state_init(&ss, &gp->stop, hp->eos_id);
    have_ss = st == EM_OK;
    if (st == EM_OK) {
        st = engine_cache_create(e, ems_config_w_loc(&gp->kv), ems_config_wants_stats(&gp->kv),
                                 gp->kv.group_max, &c);
    }
    if (st == EM_OK) {
        memcpy(hist, prompt, sizeof(int32_t) * (size_t)n_prompt);
        double t0 = em_now_s();
        int chunk = gp->prefill_chunk > 0 ? gp->prefill_chunk : 512;
        st = engine_forward_seq(e, c, prompt, n_prompt, 0, chunk, logits);
        if (st == EM_OK) st = ems_policy_step(c, &gp->kv, EMS_PHASE_PREFILL_END, NULL);
        res->prefill_s = em_now_s() - t0;
        if (st == EM_OK) memcpy(res->prompt_logits, logits, sizeof(float) * (size_t)hp->n_vocab);
    }
    tok_stream ts;
    if (tok) tok_stream_init(&ts, tok, prompt[n_prompt - 1]);
    double t1 = em_now_s();
    int n_hist = n_prompt;
    stop_reason why = STOP_NONE;
    while (st == EM_OK && why == STOP_NONE) {
        int32_t id = sampler_sample(&smp, logits, hist, n_hist);
        hist[n_hist++] = id;
        res->ids[res->n_ids++] = id;
        char piece[4200] = ""; /* longest piece (4096 bytes) + a held partial character */
        size_t plen = tok ? tok_stream_feed(&ts, id, piece, sizeof piece) : 0;
        why = stop_state_feed(&ss, id, piece, plen);
        if (why == STOP_NONE && res->n_ids >= max_new) why = STOP_LENGTH;
        if (why != STOP_NONE && tok && why != STOP_STRING) {
            char rest[64];
            size_t rl = tok_stream_flush(&ts, rest, sizeof rest);
            if (rl && stop_state_append_text(&ss, rest, rl) == STOP_STRING) why = STOP_STRING;
        }
        const char *out;
        size_t olen;
        stop_state_take(&ss, why != STOP_NONE, &out, &olen);
        if (cb && cb(user, id, out, olen)) break;
        if (why != STOP_NONE) break;
        int32_t pos = n_hist - 1, seq = 0;
        engine_batch b = {1, &id, &pos, &seq, NULL};
        st = engine_forward(e, &b, &c, logits);
        if (st == EM_OK) st = ems_policy_step(c, &gp->kv, EMS_PHASE_DECODE, NULL);
    }
    res->decode_s = em_now_s() - t1;
    res->reason = why;
    if (c) {
        res->kv_entries = ems_cache_entries(c);
        res->kv_entries_full = (uint64_t)c->n_seen * (uint64_t)c->n_layer * (uint64_t)c->n_head_kv;
        res->kv_bytes = ems_cache_kv_bytes(c);
    }
    ems_cache_destroy(c);
    if (have_smp) sampler_free(&smp);
    if (have_ss) stop_state_free(&ss);
    free(hist);
    free(logits);
    if (st != EM_OK) gen_result_free(res);
    return st;
}
