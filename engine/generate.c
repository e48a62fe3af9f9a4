/* The single-sequence generation loop (see generate.h). */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "ems/policy.h"
#include "engine/decode_step.h"

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

/* The prompt in chunks; with bounded prefill (prefill_keep) a PREFILL_CHUNK policy step after
 * every chunk but the last, as the service's workers do for each scheduled chunk. */
static em_status feed_prompt(engine *e, ems_cache *c, const int32_t *prompt, int n, int chunk,
                             const ems_config *kv, float *logits)
{
    if (kv->prefill_keep <= 0)
        return engine_forward_seq(e, c, prompt, n, 0, chunk, logits);
    em_status st = EM_OK;
    for (int s = 0; s < n && st == EM_OK; s += chunk) {
        int m = n - s < chunk ? n - s : chunk;
        st = engine_forward_seq(e, c, prompt + s, m, s, m, logits);
        if (st == EM_OK && s + m < n)
            st = ems_policy_step(c, kv, EMS_PHASE_PREFILL_CHUNK, NULL);
    }
    return st;
}

em_status gen_run(engine *e, const tokenizer *tok, const int32_t *prompt, int n_prompt,
                  const gen_params *gp, gen_on_token cb, void *user, gen_result *res)
{
    memset(res, 0, sizeof *res);
    const model_hparams *hp = engine_hparams(e);
    decode_seq d;
    em_status st = decode_seq_init(&d, hp, tok, &gp->sp, &gp->stop, prompt, n_prompt);
    if (st != EM_OK) {
        return st;
    }
    ems_cache *c = NULL;
    float *logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    res->ids = malloc(sizeof(int32_t) * (size_t)(d.max_new + 1));
    res->prompt_logits = malloc(sizeof(float) * (size_t)hp->n_vocab);
    st = (logits && res->ids && res->prompt_logits) ? EM_OK : EM_ENOMEM;
    if (st == EM_OK) {
        st = engine_cache_create(e, ems_config_w_loc(&gp->kv), ems_config_wants_stats(&gp->kv),
                                 gp->kv.group_max, &c);
    }
    if (st == EM_OK) {
        double t0 = em_now_s();
        int chunk = gp->prefill_chunk > 0 ? gp->prefill_chunk : 512;
        st = feed_prompt(e, c, prompt, n_prompt, chunk, &gp->kv, logits);
        if (st == EM_OK)
            st = ems_policy_step(c, &gp->kv, EMS_PHASE_PREFILL_END, NULL);
        res->prefill_s = em_now_s() - t0;
        if (st == EM_OK)
            memcpy(res->prompt_logits, logits, sizeof(float) * (size_t)hp->n_vocab);
    }
    double t1 = em_now_s();
    decode_token tk = {.reason = STOP_NONE};
    while (st == EM_OK && tk.reason == STOP_NONE) {
        decode_seq_step(&d, logits, &tk);
        res->ids[res->n_ids++] = tk.id;
        em_status cb_st = cb ? cb(user, tk.id, tk.text, tk.text_len) : EM_OK;
        if (cb_st != EM_OK) {
            if (cb_st != EM_ECANCELED)
                st = cb_st;
            break;
        }
        if (tk.reason != STOP_NONE)
            break;
        int32_t id = tk.id, pos = d.n_hist - 1, seq = 0;
        engine_batch b = {1, &id, &pos, &seq, NULL};
        st = engine_forward(e, &b, &c, logits);
        if (st == EM_OK)
            st = ems_policy_step(c, &gp->kv, EMS_PHASE_DECODE, NULL);
    }
    res->decode_s = em_now_s() - t1;
    res->reason = tk.reason;
    if (c) {
        res->kv_entries = ems_cache_entries(c);
        res->kv_entries_full = (uint64_t)c->n_seen * (uint64_t)c->n_layer * (uint64_t)c->n_head_kv;
        res->kv_bytes = ems_cache_kv_bytes(c);
    }
    ems_cache_destroy(c);
    decode_seq_free(&d);
    free(logits);
    if (st != EM_OK)
        gen_result_free(res);
    return st;
}
