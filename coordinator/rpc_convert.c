/* Protobuf <-> native conversion for the public API (see rpc_convert.h). */
#include "coordinator/rpc_convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/rpc_server.h"
#include "rpc/rpc_util.h"
#include "ems/config.h"
#include "proto/worker_proto.h"

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

static em_status convert_kv(const Emserve__V1__KvConfig *kv, coord_req *r, char *err, size_t errlen)
{
    char num[32];
    em_status st = EM_OK;
    ems_config_default(&r->kv);
    if (kv == NULL) {
        return EM_OK;
    }
    if (kv->method && kv->method[0]) {
        st = kv_add(r, "method", kv->method, err, errlen);
    }
    if (st == EM_OK && kv->_budget_case == EMSERVE__V1__KV_CONFIG___BUDGET_BUDGET) {
        if (kv->budget < 1) {
            snprintf(err, errlen, "kv.budget: must be >= 1 (got %d)", kv->budget);
            return EM_EINVAL;
        }
        snprintf(num, sizeof num, "%d", kv->budget);
        st = kv_add(r, "budget", num, err, errlen);
    }
    if (st == EM_OK && kv->_window_case == EMSERVE__V1__KV_CONFIG___WINDOW_WINDOW) {
        snprintf(num, sizeof num, "%d", kv->window);
        st = kv_add(r, "window", num, err, errlen);
    }
    if (st == EM_OK && kv->_sinks_case == EMSERVE__V1__KV_CONFIG___SINKS_SINKS) {
        snprintf(num, sizeof num, "%d", kv->sinks);
        st = kv_add(r, "sinks", num, err, errlen);
    }
    for (size_t i = 0; st == EM_OK && i < kv->n_params; i++) {
        const char *k = kv->params[i]->key, *v = kv->params[i]->value;
        if (strcmp(k, "method") == 0) {
            snprintf(err, errlen, "kv.params: set the method with kv.method");
            return EM_EINVAL;
        }
        st = kv_add(r, k, v, err, errlen);
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

static em_status convert_sampling(const Emserve__V1__SamplingParams *sp, coord_req *r, int n_vocab,
                                  char *err, size_t errlen)
{
    sampler_params_default(&r->sp);
    if (sp == NULL) {
        return EM_OK;
    }
    if (sp->_n_case && sp->n != 1) {
        snprintf(err, errlen, "sampling.n: only 1 is supported (got %d)", sp->n);
        return EM_EINVAL;
    }
    if (sp->_temperature_case) {
        r->sp.temperature = sp->temperature;
    }
    if (sp->_top_p_case) {
        r->sp.top_p = sp->top_p;
    }
    if (sp->_top_k_case) {
        if (sp->top_k < 0 || sp->top_k > n_vocab) {
            snprintf(err, errlen, "sampling.top_k: must be in [0, %d] (got %d)", n_vocab,
                     sp->top_k);
            return EM_EINVAL;
        }
        r->sp.top_k = sp->top_k;
    }
    if (sp->_min_p_case) {
        r->sp.min_p = sp->min_p;
    }
    if (sp->_repetition_penalty_case) {
        r->sp.repetition_penalty = sp->repetition_penalty;
    }
    if (sp->_seed_case) {
        r->sp.seed = sp->seed;
    }
    if (sp->_logprobs_case) {
        if (sp->logprobs < 0 || sp->logprobs > COORD_LOGPROBS_MAX) {
            snprintf(err, errlen, "sampling.logprobs: must be in [0, %d] (got %d)",
                     COORD_LOGPROBS_MAX, sp->logprobs);
            return EM_EINVAL;
        }
        r->logprobs = sp->logprobs;
    }
    char e2[256] = "";
    if (sampler_params_validate(&r->sp, e2, sizeof e2) != EM_OK) {
        snprintf(err, errlen, "sampling.%s", e2);
        return EM_EINVAL;
    }
    return EM_OK;
}

static em_status convert_stopping(const Emserve__V1__StoppingParams *sp, coord_req *r,
                                  const model_hparams *hp, char *err, size_t errlen)
{
    char e2[256] = "";
    stop_params_default(&r->stop);
    if (sp == NULL) {
        return EM_OK;
    }
    if (sp->_max_tokens_case) {
        if (sp->max_tokens < 1 || sp->max_tokens > hp->n_ctx) {
            snprintf(err, errlen, "stopping.max_tokens: must be in [1, %d] (got %d)", hp->n_ctx,
                     sp->max_tokens);
            return EM_EINVAL;
        }
        r->stop.max_tokens = sp->max_tokens;
    }
    if (sp->_ignore_eos_case) {
        r->stop.ignore_eos = sp->ignore_eos;
    }
    if (sp->_include_stop_str_in_output_case && sp->include_stop_str_in_output) {
        snprintf(err, errlen, "stopping.include_stop_str_in_output: not supported");
        return EM_EINVAL;
    }
    for (size_t i = 0; i < sp->n_stop; i++) {
        if (stop_params_add_string(&r->stop, sp->stop[i], strlen(sp->stop[i]), e2, sizeof e2) !=
            EM_OK) {
            snprintf(err, errlen, "stopping.%s", e2);
            return EM_EINVAL;
        }
    }
    for (size_t i = 0; i < sp->n_stop_token_ids; i++) {
        if (stop_params_add_id(&r->stop, sp->stop_token_ids[i], hp->n_vocab, e2, sizeof e2) !=
            EM_OK) {
            snprintf(err, errlen, "stopping.%s", e2);
            return EM_EINVAL;
        }
    }
    if (stop_params_validate(&r->stop, hp->n_ctx, e2, sizeof e2) != EM_OK) {
        snprintf(err, errlen, "stopping.%s", e2);
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status coord_rpc_req_from_proto(const Emserve__V1__GenerateRequest *rq,
                                   const coord_prompt_ctx *pc, uint64_t serial, coord_req **out,
                                   char *err, size_t errlen)
{
    *out = NULL;
    coord_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return EM_ENOMEM;
    }
    em_status st = EM_OK;
    if (strlen(rq->request_id) > COORD_ID_MAX) {
        snprintf(err, errlen, "request_id: longer than %d bytes", COORD_ID_MAX);
        st = EM_EINVAL;
    } else if (rq->request_id[0]) {
        snprintf(r->id, sizeof r->id, "%s", rq->request_id);
    } else {
        snprintf(r->id, sizeof r->id, "req-%llu", (unsigned long long)serial);
    }
    if (st == EM_OK) {
        st = coord_rpc_prompt_from_proto(rq, pc, &r->prompt, &r->n_prompt, err, errlen);
    }
    if (st == EM_OK) {
        st = convert_sampling(rq->sampling, r, pc->hp->n_vocab, err, errlen);
    }
    if (st == EM_OK) {
        st = convert_stopping(rq->stopping, r, pc->hp, err, errlen);
    }
    if (st == EM_OK) {
        st = convert_kv(rq->kv, r, err, errlen);
    }
    if (st != EM_OK) {
        coord_req_free(r);
        return st;
    }
    *out = r;
    return EM_OK;
}

grpc_byte_buffer *coord_rpc_pack_event(const coord_event *ev)
{
    Emserve__V1__GenerateResponse resp = EMSERVE__V1__GENERATE_RESPONSE__INIT;
    Emserve__V1__Chunk chunk = EMSERVE__V1__CHUNK__INIT;
    Emserve__V1__Complete comp = EMSERVE__V1__COMPLETE__INIT;
    Emserve__V1__Usage usage = EMSERVE__V1__USAGE__INIT;
    Emserve__V1__TokenLogprob lps[4], *lp_p[4];
    Emserve__V1__TopLogprob tops[4][COORD_LOGPROBS_MAX], *top_p[4][COORD_LOGPROBS_MAX];
    char *text = NULL;
    resp.request_id = (char *)ev->request_id;
    if (ev->kind == COORD_EV_CHUNK) {
        text = malloc(ev->text_len + 1);
        if (text == NULL) {
            return NULL;
        }
        memcpy(text, ev->text, ev->text_len);
        text[ev->text_len] = 0;
        chunk.n_token_ids = (size_t)ev->n_ids;
        chunk.token_ids = (int32_t *)ev->ids;
        chunk.text = text;
        chunk.prompt_tokens = ev->prompt_tokens;
        chunk.completion_tokens = ev->completion_tokens;
        if (ev->logprobs && ev->n_ids <= 4) {
            for (int i = 0; i < ev->n_ids; i++) {
                const coord_logprob *l = &ev->logprobs[i];
                emserve__v1__token_logprob__init(&lps[i]);
                lps[i].token_id = l->id;
                lps[i].logprob = l->logprob;
                for (int k = 0; k < l->n_top; k++) {
                    emserve__v1__top_logprob__init(&tops[i][k]);
                    tops[i][k].token_id = l->top_id[k];
                    tops[i][k].logprob = l->top_logprob[k];
                    top_p[i][k] = &tops[i][k];
                }
                lps[i].n_top = (size_t)l->n_top;
                lps[i].top = top_p[i];
                lp_p[i] = &lps[i];
            }
            chunk.n_logprobs = (size_t)ev->n_ids;
            chunk.logprobs = lp_p;
        }
        resp.response_case = EMSERVE__V1__GENERATE_RESPONSE__RESPONSE_CHUNK;
        resp.chunk = &chunk;
    } else {
        text = malloc(ev->full_text_len + 1);
        if (text == NULL) {
            return NULL;
        }
        memcpy(text, ev->full_text, ev->full_text_len);
        text[ev->full_text_len] = 0;
        comp.finish_reason = (char *)ev->finish_reason;
        comp.n_output_ids = (size_t)ev->n_output;
        comp.output_ids = (int32_t *)ev->output_ids;
        comp.matched_stop = (char *)ev->matched_stop;
        comp.matched_stop_token = ev->matched_stop_token;
        comp.text = text;
        usage.prompt_tokens = ev->prompt_tokens;
        usage.completion_tokens = ev->completion_tokens;
        usage.cached_tokens = 0;
        usage.kv_entries_kept = ev->kv_entries_kept;
        usage.kv_entries_full = ev->kv_entries_full;
        comp.usage = &usage;
        resp.response_case = EMSERVE__V1__GENERATE_RESPONSE__RESPONSE_COMPLETE;
        resp.complete = &comp;
    }
    grpc_byte_buffer *bb = rpc_pack(&resp.base);
    free(text);
    return bb;
}

void coord_rpc_model_info(const model_hparams *hp, const char *model_path,
                          const coord_chat_template *chat, Emserve__V1__ModelInfo *r)
{
    r->model_path = (char *)model_path;
    r->architecture = "llama";
    r->n_vocab = hp->n_vocab;
    r->dim = hp->dim;
    r->n_layer = hp->n_layer;
    r->n_head = hp->n_head;
    r->n_kv_head = hp->n_kv_head;
    r->head_dim = hp->head_dim;
    r->ffn_dim = hp->ffn_dim;
    r->context_length = hp->n_ctx;
    r->bos_id = hp->bos_id;
    r->eos_id = hp->eos_id;
    r->chat_template = (char *)coord_chat_family_name(chat ? chat->family : COORD_CHAT_NONE);
}

void coord_rpc_server_info(const coord_worker_snapshot *ws, int n, const coord_sched_stats *stats,
                           int max_batch_tokens, int max_slots, Emserve__V1__ServerInfo *r)
{
    static Emserve__V1__WorkerInfo wi[COORD_MAX_WORKERS];
    static Emserve__V1__WorkerInfo *wp[COORD_MAX_WORKERS];
    static int32_t kvh[COORD_MAX_WORKERS][64], qh[COORD_MAX_WORKERS][256];
    static char *methods[EMS_METHOD_COUNT];
    n = n < COORD_MAX_WORKERS ? n : COORD_MAX_WORKERS;
    for (int i = 0; i < n; i++) {
        emserve__v1__worker_info__init(&wi[i]);
        wi[i].rank = ws[i].pl.rank;
        wi[i].address = (char *)ws[i].addr;
        for (int k = 0; k < ws[i].pl.n_kv_heads && k < 64; k++) {
            kvh[i][k] = ws[i].pl.kv_head0 + k;
        }
        wi[i].n_kv_heads = (size_t)(ws[i].pl.n_kv_heads < 64 ? ws[i].pl.n_kv_heads : 64);
        wi[i].kv_heads = kvh[i];
        for (int k = 0; k < ws[i].pl.n_q_heads && k < 256; k++) {
            qh[i][k] = ws[i].pl.q_head0 + k;
        }
        wi[i].n_q_heads = (size_t)(ws[i].pl.n_q_heads < 256 ? ws[i].pl.n_q_heads : 256);
        wi[i].q_heads = qh[i];
        wi[i].ffn_row_begin = ws[i].pl.ffn_row0;
        wi[i].ffn_row_end = ws[i].pl.ffn_row1;
        wi[i].joined = ws[i].joined;
        wi[i].pid = ws[i].pid;
        wi[i].weight_bytes = ws[i].weight_bytes;
        wp[i] = &wi[i];
    }
    for (int m = 0; m < EMS_METHOD_COUNT; m++) {
        methods[m] = (char *)ems_method_name((ems_method)m);
    }
    r->version = EMSERVE_VERSION;
    r->protocol_version = WORKER_PROTO_VERSION;
    r->worker_count = n;
    r->heads_per_worker = n > 0 ? ws[0].pl.n_kv_heads : 0;
    r->n_workers = (size_t)n;
    r->workers = wp;
    r->n_kv_methods = EMS_METHOD_COUNT;
    r->kv_methods = methods;
    r->serving = stats->serving;
    r->group_generation = stats->generation;
    r->max_batch_tokens = max_batch_tokens;
    r->max_sequences = max_slots;
    r->running_requests = stats->running;
    r->queued_requests = stats->queued;
    r->requests_total = stats->requests_total;
    r->tokens_generated_total = stats->tokens_generated;
}
