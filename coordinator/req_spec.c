/* The one validator of generation requests (see req_spec.h). */
#include "coordinator/req_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ems/config.h"

const coord_req_names coord_req_names_grpc = {"sampling.", "stopping.", "input",
                                              "text",      "tokens",    "tokens.ids"};

/* ---- prompt ---------------------------------------------------------------------------------- */

static em_status build_prompt(const coord_req_spec *sp, const coord_req_names *nm,
                              const coord_prompt_ctx *pc, coord_req *r, char *err, size_t errlen)
{
    const char *field = nm->text;
    em_status st;
    if (sp->n_messages > 0 && (sp->text || sp->has_tokens)) {
        snprintf(err, errlen, "messages: set only one of %s, %s and messages (got messages and %s)",
                 nm->text, nm->tokens, sp->text ? nm->text : nm->tokens);
        return EM_EINVAL;
    }
    if (sp->has_add_generation_prompt && sp->n_messages == 0) {
        snprintf(err, errlen, "add_generation_prompt: applies to messages only");
        return EM_EINVAL;
    }
    if (sp->n_messages > 0) {
        field = "messages";
        int gen = sp->has_add_generation_prompt ? sp->add_generation_prompt : 1;
        st = coord_prompt_chat(pc, sp->messages, sp->n_messages, gen, &r->prompt, &r->n_prompt,
                               NULL, err, errlen);
    } else if (sp->has_tokens) {
        return coord_prompt_tokens(pc->hp, sp->tokens, sp->n_tokens, nm->token_ids, &r->prompt,
                                   &r->n_prompt, err, errlen);
    } else if (sp->text && sp->text[0] == 0) { /* would generate from BOS alone */
        snprintf(err, errlen, "%s: empty", nm->text);
        return EM_EINVAL;
    } else if (sp->text) {
        st = coord_prompt_text(pc, sp->text, 1, 0, nm->text, &r->prompt, &r->n_prompt, err, errlen);
    } else {
        snprintf(err, errlen, "%s: set %s, %s or messages", nm->input, nm->text, nm->tokens);
        return EM_EINVAL;
    }
    if (st == EM_OK && r->n_prompt == 0) {
        snprintf(err, errlen, "%s: the prompt has no tokens", field);
        st = EM_EINVAL;
    } else if (st == EM_OK && r->n_prompt >= pc->hp->n_ctx) {
        snprintf(err, errlen, "%s: %d tokens, the context holds %d", field, r->n_prompt,
                 pc->hp->n_ctx);
        st = EM_EINVAL;
    }
    return st;
}

/* ---- sampling and stopping ------------------------------------------------------------------- */

static em_status build_sampling(const coord_req_spec *sp, const char *pre, coord_req *r,
                                int n_vocab, char *err, size_t errlen)
{
    sampler_params_default(&r->sp);
    if (sp->has_n && sp->n != 1) {
        snprintf(err, errlen, "%sn: only 1 is supported (got %d)", pre, sp->n);
        return EM_EINVAL;
    }
    if (sp->has_temperature) {
        r->sp.temperature = sp->temperature;
    }
    if (sp->has_top_p) {
        r->sp.top_p = sp->top_p;
    }
    if (sp->has_top_k) {
        if (sp->top_k < 0 || sp->top_k > n_vocab) {
            snprintf(err, errlen, "%stop_k: must be in [0, %d] (got %d)", pre, n_vocab, sp->top_k);
            return EM_EINVAL;
        }
        r->sp.top_k = sp->top_k;
    }
    if (sp->has_min_p) {
        r->sp.min_p = sp->min_p;
    }
    if (sp->has_repetition_penalty) {
        r->sp.repetition_penalty = sp->repetition_penalty;
    }
    if (sp->has_seed) {
        r->sp.seed = sp->seed;
    }
    if (sp->has_logprobs) {
        if (sp->logprobs < 0 || sp->logprobs > COORD_LOGPROBS_MAX) {
            snprintf(err, errlen, "%slogprobs: must be in [0, %d] (got %d)", pre,
                     COORD_LOGPROBS_MAX, sp->logprobs);
            return EM_EINVAL;
        }
        r->logprobs = sp->logprobs;
    }
    char e2[256] = "";
    if (sampler_params_validate(&r->sp, e2, sizeof e2) != EM_OK) {
        snprintf(err, errlen, "%s%s", pre, e2);
        return EM_EINVAL;
    }
    return EM_OK;
}

static em_status build_stopping(const coord_req_spec *sp, const char *pre, coord_req *r,
                                const model_hparams *hp, char *err, size_t errlen)
{
    char e2[256] = "";
    stop_params_default(&r->stop);
    if (sp->has_max_tokens) {
        if (sp->max_tokens < 1 || sp->max_tokens > hp->n_ctx) {
            snprintf(err, errlen, "%smax_tokens: must be in [1, %d] (got %d)", pre, hp->n_ctx,
                     sp->max_tokens);
            return EM_EINVAL;
        }
        r->stop.max_tokens = sp->max_tokens;
    }
    if (sp->has_ignore_eos) {
        r->stop.ignore_eos = sp->ignore_eos;
    }
    r->stop.include_stop = sp->include_stop_str_in_output != 0;
    for (size_t i = 0; i < sp->n_stop; i++) {
        if (stop_params_add_string(&r->stop, sp->stop[i], strlen(sp->stop[i]), e2, sizeof e2) !=
            EM_OK) {
            snprintf(err, errlen, "%s%s", pre, e2);
            return EM_EINVAL;
        }
    }
    for (size_t i = 0; i < sp->n_stop_ids; i++) {
        if (stop_params_add_id(&r->stop, sp->stop_ids[i], hp->n_vocab, e2, sizeof e2) != EM_OK) {
            snprintf(err, errlen, "%s%s", pre, e2);
            return EM_EINVAL;
        }
    }
    if (stop_params_validate(&r->stop, hp->n_ctx, e2, sizeof e2) != EM_OK) {
        snprintf(err, errlen, "%s%s", pre, e2);
        return EM_EINVAL;
    }
    return EM_OK;
}

/* ---- KV compression -------------------------------------------------------------------------- */

static em_status kv_add(coord_req *r, const char *key, const char *val, char *err, size_t errlen)
{
    char e2[256] = "";
    if (r->n_kv >= COORD_KV_MAX) {
        snprintf(err, errlen, "kv.params: at most %d parameters", COORD_KV_MAX - 4);
        return EM_EINVAL;
    }
    if (ems_config_set(&r->kv, key, val, e2, sizeof e2) != EM_OK) {
        size_t kl = strlen(key); /* ems messages may already start with "key: " */
        const char *why = strncmp(e2, key, kl) == 0 && e2[kl] == ':' ? e2 + kl + 1 : e2;
        snprintf(err, errlen, "kv.%s:%s%s", key, why[0] == ' ' ? "" : " ", why);
        return EM_EINVAL;
    }
    r->kv_key[r->n_kv] = strdup(key);
    r->kv_val[r->n_kv] = strdup(val);
    if (!r->kv_key[r->n_kv] || !r->kv_val[r->n_kv]) {
        free(r->kv_key[r->n_kv]);
        free(r->kv_val[r->n_kv]);
        return EM_ENOMEM;
    }
    r->n_kv++;
    return EM_OK;
}

static em_status kv_add_int(coord_req *r, const char *key, int v, char *err, size_t errlen)
{
    char num[32];
    snprintf(num, sizeof num, "%d", v);
    return kv_add(r, key, num, err, errlen);
}

static em_status build_kv(const coord_req_spec *sp, coord_req *r, char *err, size_t errlen)
{
    em_status st = EM_OK;
    ems_config_default(&r->kv);
    if (sp->kv_method && sp->kv_method[0]) {
        st = kv_add(r, "method", sp->kv_method, err, errlen);
    }
    if (st == EM_OK && sp->has_kv_budget) {
        if (sp->kv_budget < 1) {
            snprintf(err, errlen, "kv.budget: must be >= 1 (got %d)", sp->kv_budget);
            return EM_EINVAL;
        }
        st = kv_add_int(r, "budget", sp->kv_budget, err, errlen);
    }
    if (st == EM_OK && sp->has_kv_window) {
        st = kv_add_int(r, "window", sp->kv_window, err, errlen);
    }
    if (st == EM_OK && sp->has_kv_sinks) {
        st = kv_add_int(r, "sinks", sp->kv_sinks, err, errlen);
    }
    for (size_t i = 0; st == EM_OK && i < sp->n_kv_params; i++) {
        if (strcmp(sp->kv_keys[i], "method") == 0) {
            snprintf(err, errlen, "kv.params: set the method with kv.method");
            return EM_EINVAL;
        }
        st = kv_add(r, sp->kv_keys[i], sp->kv_vals[i], err, errlen);
    }
    if (st == EM_OK) {
        char e2[256] = "";
        if (ems_config_validate(&r->kv, e2, sizeof e2) != EM_OK) {
            snprintf(err, errlen, "kv: %s", e2);
            return EM_EINVAL;
        }
    }
    return st;
}

/* ---- the request ----------------------------------------------------------------------------- */

em_status coord_req_from_spec(const coord_req_spec *sp, const coord_req_names *names,
                              const coord_prompt_ctx *pc, uint64_t serial, coord_req **out,
                              char *err, size_t errlen)
{
    *out = NULL;
    coord_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return EM_ENOMEM;
    }
    em_status st = EM_OK;
    const char *id = sp->request_id ? sp->request_id : "";
    if (strlen(id) > COORD_ID_MAX) {
        snprintf(err, errlen, "request_id: longer than %d bytes", COORD_ID_MAX);
        st = EM_EINVAL;
    } else if (id[0]) {
        snprintf(r->id, sizeof r->id, "%s", id);
    } else {
        snprintf(r->id, sizeof r->id, "req-%llu", (unsigned long long)serial);
    }
    if (st == EM_OK) {
        st = build_prompt(sp, names, pc, r, err, errlen);
    }
    if (st == EM_OK) {
        st = build_sampling(sp, names->sampling, r, pc->hp->n_vocab, err, errlen);
    }
    if (st == EM_OK) {
        st = build_stopping(sp, names->stopping, r, pc->hp, err, errlen);
    }
    if (st == EM_OK) {
        st = build_kv(sp, r, err, errlen);
    }
    if (st != EM_OK) {
        coord_req_free(r);
        return st;
    }
    *out = r;
    return EM_OK;
}
