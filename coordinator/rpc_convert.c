/* Protobuf <-> native conversion for the public API (see rpc_convert.h). */
#include "coordinator/rpc_convert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/build_info.h"
#include "coordinator/req_spec.h"
#include "coordinator/rpc_server.h"
#include "ems/config.h"
#include "proto/worker_proto.h"
#include "rpc/rpc_util.h"

/* The proto's KvConfig params as two arrays of strings (malloc'd; strings borrowed). */
static em_status kv_params(const Emserve__V1__KvConfig *kv, coord_req_spec *sp)
{
    if (kv == NULL || kv->n_params == 0) {
        return EM_OK;
    }
    const char **keys = malloc(sizeof *keys * kv->n_params);
    const char **vals = malloc(sizeof *vals * kv->n_params);
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return EM_ENOMEM;
    }
    for (size_t i = 0; i < kv->n_params; i++) {
        keys[i] = kv->params[i]->key;
        vals[i] = kv->params[i]->value;
    }
    sp->kv_keys = keys;
    sp->kv_vals = vals;
    sp->n_kv_params = kv->n_params;
    return EM_OK;
}

static void spec_sampling(const Emserve__V1__SamplingParams *s, coord_req_spec *sp)
{
    if (s == NULL) {
        return;
    }
    sp->has_temperature = s->_temperature_case != 0;
    sp->temperature = s->temperature;
    sp->has_top_p = s->_top_p_case != 0;
    sp->top_p = s->top_p;
    sp->has_top_k = s->_top_k_case != 0;
    sp->top_k = s->top_k;
    sp->has_min_p = s->_min_p_case != 0;
    sp->min_p = s->min_p;
    sp->has_repetition_penalty = s->_repetition_penalty_case != 0;
    sp->repetition_penalty = s->repetition_penalty;
    sp->has_seed = s->_seed_case != 0;
    sp->seed = s->seed;
    sp->has_logprobs = s->_logprobs_case != 0;
    sp->logprobs = s->logprobs;
    sp->has_n = s->_n_case != 0;
    sp->n = s->n;
}

static void spec_stopping(const Emserve__V1__StoppingParams *s, coord_req_spec *sp)
{
    if (s == NULL) {
        return;
    }
    sp->has_max_tokens = s->_max_tokens_case != 0;
    sp->max_tokens = s->max_tokens;
    sp->has_ignore_eos = s->_ignore_eos_case != 0;
    sp->ignore_eos = s->ignore_eos;
    sp->include_stop_str_in_output =
        s->_include_stop_str_in_output_case && s->include_stop_str_in_output;
    sp->stop = (const char *const *)s->stop;
    sp->n_stop = s->n_stop;
    sp->stop_ids = s->stop_token_ids;
    sp->n_stop_ids = s->n_stop_token_ids;
}

static void spec_kv(const Emserve__V1__KvConfig *kv, coord_req_spec *sp)
{
    if (kv == NULL) {
        return;
    }
    sp->kv_method = kv->method;
    sp->has_kv_budget = kv->_budget_case == EMSERVE__V1__KV_CONFIG___BUDGET_BUDGET;
    sp->kv_budget = kv->budget;
    sp->has_kv_window = kv->_window_case == EMSERVE__V1__KV_CONFIG___WINDOW_WINDOW;
    sp->kv_window = kv->window;
    sp->has_kv_sinks = kv->_sinks_case == EMSERVE__V1__KV_CONFIG___SINKS_SINKS;
    sp->kv_sinks = kv->sinks;
}

em_status coord_rpc_req_from_proto(const Emserve__V1__GenerateRequest *rq,
                                   const coord_prompt_ctx *pc, uint64_t serial, coord_req **out,
                                   char *err, size_t errlen)
{
    coord_req_spec sp;
    memset(&sp, 0, sizeof sp);
    *out = NULL;
    sp.request_id = rq->request_id;
    if (rq->input_case == EMSERVE__V1__GENERATE_REQUEST__INPUT_TEXT) {
        sp.text = rq->text;
    } else if (rq->input_case == EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS) {
        sp.has_tokens = 1;
        sp.tokens = rq->tokens ? rq->tokens->ids : NULL;
        sp.n_tokens = rq->tokens ? rq->tokens->n_ids : 0;
    }
    coord_chat_msg *msgs = NULL;
    if (rq->n_messages > COORD_CHAT_MAX_MESSAGES) {
        snprintf(err, errlen, "messages: %zu messages, at most %d", rq->n_messages,
                 COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    if (rq->n_messages > 0 && (msgs = coord_rpc_chat_msgs(rq->messages, rq->n_messages)) == NULL) {
        return EM_ENOMEM;
    }
    sp.messages = msgs;
    sp.n_messages = rq->n_messages;
    sp.has_add_generation_prompt =
        rq->_add_generation_prompt_case ==
        EMSERVE__V1__GENERATE_REQUEST___ADD_GENERATION_PROMPT_ADD_GENERATION_PROMPT;
    sp.add_generation_prompt = rq->add_generation_prompt;
    spec_sampling(rq->sampling, &sp);
    spec_stopping(rq->stopping, &sp);
    spec_kv(rq->kv, &sp);
    em_status st = kv_params(rq->kv, &sp);
    if (st == EM_OK) {
        st = coord_req_from_spec(&sp, &coord_req_names_grpc, pc, serial, out, err, errlen);
    }
    free(msgs);
    free((void *)sp.kv_keys);
    free((void *)sp.kv_vals);
    return st;
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

void coord_rpc_model_info(const model_hparams *hp, const char *model_path, const char *name,
                          const coord_chat_template *chat, Emserve__V1__ModelInfo *r)
{
    r->model_path = (char *)model_path;
    r->name = (char *)name;
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
                           int max_batch_tokens, int max_slots, double uptime_s,
                           Emserve__V1__ServerInfo *r)
{
    static Emserve__V1__BuildInfo build;
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
        int rk = ws[i].pl.rank;
        if (rk >= 0 && rk < stats->kv_world) {
            wi[i].kv_memory_budget_bytes = stats->kv_budget;
            wi[i].kv_bytes_held = stats->kv_held_worker[rk];
            wi[i].kv_bytes_full = stats->kv_full_worker[rk];
        }
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
    r->uptime_seconds = uptime_s;
    emserve__v1__build_info__init(&build);
    build.version = EMSERVE_VERSION;
    build.git_commit = (char *)em_build_git();
    r->build = &build;
}
