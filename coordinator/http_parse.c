/* OpenAI request bodies -> coord_req_spec (see http_impl.h). Checks the JSON shape and types
 * and what this server does not do (n > 1, penalties the sampler lacks, tools, echo, ...);
 * ranges are checked by the shared validator (req_spec.h), as for gRPC. null = not given;
 * unknown fields are ignored, as OpenAI-compatible servers do. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/http_impl.h"
#include "rpc/rpc_strings.h" /* rpc_utf8_valid */

#define COMPLETIONS_MAX_TOKENS 16 /* OpenAI's default for /v1/completions */

typedef struct pctx {
    char *err;
    size_t errlen;
    const coord_http *h;
    unsigned *status; /* the HTTP status of a failure (400 unless a step says otherwise) */
} pctx;

/* EM_EINVAL with "field: why". */
static em_status bad(pctx *p, const char *field, const char *why)
{
    snprintf(p->err, p->errlen, "%s: %s", field, why);
    return EM_EINVAL;
}

/* The member name of o, NULL when absent or null. */
static const cJSON *get(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static em_status get_float(pctx *p, const cJSON *o, const char *name, int *has, float *out)
{
    const cJSON *v = get(o, name);
    if (v == NULL) {
        return EM_OK;
    }
    if (!cJSON_IsNumber(v)) {
        return bad(p, name, "must be a number");
    }
    *has = 1;
    *out = (float)v->valuedouble;
    return EM_OK;
}

static int is_int(const cJSON *v, double lo, double hi)
{
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo &&
           v->valuedouble <= hi;
}

static em_status get_int(pctx *p, const cJSON *o, const char *name, int *has, int *out)
{
    const cJSON *v = get(o, name);
    if (v == NULL) {
        return EM_OK;
    }
    if (!is_int(v, INT_MIN, INT_MAX)) {
        return bad(p, name, "must be an integer");
    }
    *has = 1;
    *out = (int)v->valuedouble;
    return EM_OK;
}

static em_status get_bool(pctx *p, const cJSON *o, const char *name, int *has, int *out)
{
    const cJSON *v = get(o, name);
    if (v == NULL) {
        return EM_OK;
    }
    if (!cJSON_IsBool(v)) {
        return bad(p, name, "must be true or false");
    }
    *has = 1;
    *out = cJSON_IsTrue(v);
    return EM_OK;
}

/* ---- fields this server refuses when they ask for something -------------------------------- */

static em_status refuse_unsupported(pctx *p, const cJSON *o, http_parsed *out)
{
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = get(o, penalties[i]);
        if (v && (!cJSON_IsNumber(v) || v->valuedouble != 0)) {
            return bad(p, penalties[i],
                       "not supported (the sampler has repetition_penalty, an extension field)");
        }
    }
    const cJSON *v = get(o, "best_of");
    if (v && !(is_int(v, 1, 1))) {
        return bad(p, "best_of", "only 1 is supported");
    }
    if ((v = get(o, "echo")) && !cJSON_IsFalse(v)) {
        return bad(p, "echo", "not supported");
    }
    if ((v = get(o, "suffix")) && !(cJSON_IsString(v) && v->valuestring[0] == 0)) {
        return bad(p, "suffix", "not supported");
    }
    if ((v = get(o, "logit_bias")) && !(cJSON_IsObject(v) && v->child == NULL)) {
        return bad(p, "logit_bias", "not supported");
    }
    static const char *const tools[] = {"tools", "functions"};
    for (int i = 0; i < 2; i++) {
        if ((v = get(o, tools[i])) && !(cJSON_IsArray(v) && v->child == NULL)) {
            return bad(p, tools[i], "not supported (no tool calling)");
        }
    }
    if ((v = get(o, "tool_choice")) && !(cJSON_IsString(v) && (!strcmp(v->valuestring, "none") ||
                                                               !strcmp(v->valuestring, "auto")))) {
        return bad(p, "tool_choice", "not supported (no tool calling)");
    }
    const cJSON *rf = get(o, "response_format");
    if (rf && !(cJSON_IsObject(rf) && (v = get(rf, "type")) && cJSON_IsString(v) &&
                strcmp(v->valuestring, "text") == 0)) {
        return bad(p, "response_format", "only {\"type\": \"text\"} is supported");
    }
    (void)out;
    return EM_OK;
}

/* ---- the prompt ------------------------------------------------------------------------------ */

static em_status token_array(pctx *p, const cJSON *a, const char *field, int32_t **out, size_t *n)
{
    size_t len = (size_t)cJSON_GetArraySize(a), i = 0;
    *out = malloc(sizeof(int32_t) * (len ? len : 1));
    if (*out == NULL) {
        return EM_ENOMEM;
    }
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        if (!is_int(e, INT32_MIN, INT32_MAX)) {
            char f[64];
            snprintf(f, sizeof f, "%s[%zu]", field, i);
            return bad(p, f, "must be a token id (an integer)");
        }
        (*out)[i] = (int32_t)e->valuedouble;
    }
    *n = len;
    return EM_OK;
}

/* "prompt": a string, token ids, or a list of one of either. */
static em_status parse_prompt(pctx *p, const cJSON *o, http_parsed *out)
{
    const cJSON *v = get(o, "prompt");
    if (v == NULL) {
        return bad(p, "prompt", "required (a string or an array of token ids)");
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 &&
        (cJSON_IsString(v->child) || cJSON_IsArray(v->child))) {
        v = v->child; /* a batch of one prompt */
    } else if (cJSON_IsArray(v) && v->child && !cJSON_IsNumber(v->child)) {
        return bad(p, "prompt",
                   cJSON_GetArraySize(v) > 1 ? "one prompt per request (got a batch of several)"
                                             : "must be a string or an array of token ids");
    }
    if (cJSON_IsString(v)) {
        out->sp.text = v->valuestring;
        return EM_OK;
    }
    if (!cJSON_IsArray(v)) {
        return bad(p, "prompt", "must be a string or an array of token ids");
    }
    out->sp.has_tokens = 1;
    em_status st = token_array(p, v, "prompt", &out->tokens, &out->sp.n_tokens);
    out->sp.tokens = out->tokens;
    return st;
}

/* A message's content: a string, null, or text parts (joined with newlines). */
static em_status message_content(pctx *p, const cJSON *m, size_t i, http_parsed *out,
                                 const char **content)
{
    const cJSON *c = get(m, "content");
    char f[64];
    snprintf(f, sizeof f, "messages[%zu].content", i);
    *content = "";
    if (c == NULL) {
        return EM_OK;
    }
    if (cJSON_IsString(c)) {
        *content = c->valuestring;
        return EM_OK;
    }
    if (!cJSON_IsArray(c)) {
        return bad(p, f, "must be a string or an array of text parts");
    }
    size_t len = 1, j = 0;
    for (const cJSON *part = c->child; part; part = part->next, j++) {
        const cJSON *type = get(part, "type"), *text = get(part, "text");
        if (!type || !cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !text ||
            !cJSON_IsString(text)) {
            snprintf(f, sizeof f, "messages[%zu].content[%zu]", i, j);
            return bad(p, f, "only {\"type\": \"text\", \"text\": ...} parts are supported");
        }
        len += strlen(text->valuestring) + 1;
    }
    char *joined = malloc(len), *w = joined;
    if (joined == NULL) {
        return EM_ENOMEM;
    }
    *w = 0;
    for (const cJSON *part = c->child; part; part = part->next) {
        size_t n = strlen(get(part, "text")->valuestring);
        memcpy(w, get(part, "text")->valuestring, n);
        w += n;
        *w++ = part->next ? '\n' : 0;
    }
    out->joined[i] = joined;
    *content = joined;
    return EM_OK;
}

static em_status parse_messages(pctx *p, const cJSON *o, http_parsed *out)
{
    const cJSON *a = get(o, "messages");
    if (a == NULL || !cJSON_IsArray(a) || a->child == NULL) {
        return bad(p, "messages", "required (a non-empty array of {role, content})");
    }
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    if (n > COORD_CHAT_MAX_MESSAGES) {
        snprintf(p->err, p->errlen, "messages: %zu messages, at most %d", n,
                 COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    out->msgs = calloc(n, sizeof *out->msgs);
    out->joined = calloc(n, sizeof *out->joined);
    if (out->msgs == NULL || out->joined == NULL) {
        return EM_ENOMEM;
    }
    out->n_joined = n;
    for (const cJSON *m = a->child; m; m = m->next, i++) {
        char f[64];
        snprintf(f, sizeof f, "messages[%zu]", i);
        const cJSON *role = get(m, "role");
        if (!cJSON_IsObject(m) || (role && !cJSON_IsString(role))) {
            return bad(p, f, "must be an object with a string role");
        }
        const char *r = role ? role->valuestring : "";
        out->msgs[i].role = strcmp(r, "developer") == 0 ? "system" : r; /* OpenAI's new name */
        em_status st = message_content(p, m, i, out, &out->msgs[i].content);
        if (st != EM_OK) {
            return st;
        }
    }
    out->sp.messages = out->msgs;
    out->sp.n_messages = n;
    return get_bool(p, o, "add_generation_prompt", &out->sp.has_add_generation_prompt,
                    &out->sp.add_generation_prompt);
}

/* ---- sampling and stopping ------------------------------------------------------------------ */

static em_status parse_sampling(pctx *p, const cJSON *o, http_parsed *out)
{
    coord_req_spec *sp = &out->sp;
    em_status st = EM_OK;
    if (st == EM_OK) {
        st = get_float(p, o, "temperature", &sp->has_temperature, &sp->temperature);
    }
    if (st == EM_OK) {
        st = get_float(p, o, "top_p", &sp->has_top_p, &sp->top_p);
    }
    if (st == EM_OK) {
        st = get_int(p, o, "top_k", &sp->has_top_k, &sp->top_k);
        if (sp->has_top_k && sp->top_k == -1) {
            sp->top_k = 0; /* vLLM's "off" */
        }
    }
    if (st == EM_OK) {
        st = get_float(p, o, "min_p", &sp->has_min_p, &sp->min_p);
    }
    if (st == EM_OK) {
        st = get_float(p, o, "repetition_penalty", &sp->has_repetition_penalty,
                       &sp->repetition_penalty);
    }
    if (st == EM_OK) {
        st = get_int(p, o, "n", &sp->has_n, &sp->n);
    }
    const cJSON *seed = get(o, "seed");
    if (st == EM_OK && seed) {
        if (!is_int(seed, -9223372036854775808.0, 9223372036854775807.0)) {
            return bad(p, "seed", "must be an integer");
        }
        sp->has_seed = 1;
        sp->seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    return st;
}

static em_status parse_stop(pctx *p, const cJSON *o, http_parsed *out)
{
    const cJSON *v = get(o, "stop");
    if (v && cJSON_IsString(v)) {
        out->stops = malloc(sizeof *out->stops);
        if (out->stops == NULL) {
            return EM_ENOMEM;
        }
        out->stops[0] = v->valuestring;
        out->sp.n_stop = 1;
    } else if (v && cJSON_IsArray(v)) {
        size_t n = (size_t)cJSON_GetArraySize(v), i = 0;
        out->stops = malloc(sizeof *out->stops * (n ? n : 1));
        if (out->stops == NULL) {
            return EM_ENOMEM;
        }
        for (const cJSON *e = v->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e)) {
                return bad(p, "stop", "must be a string or an array of strings");
            }
            out->stops[i] = e->valuestring;
        }
        out->sp.n_stop = n;
    } else if (v) {
        return bad(p, "stop", "must be a string or an array of strings");
    }
    out->sp.stop = out->stops;
    const cJSON *ids = get(o, "stop_token_ids");
    if (ids && !cJSON_IsArray(ids)) {
        return bad(p, "stop_token_ids", "must be an array of token ids");
    }
    if (ids) {
        em_status st = token_array(p, ids, "stop_token_ids", &out->stop_ids, &out->sp.n_stop_ids);
        out->sp.stop_ids = out->stop_ids;
        if (st != EM_OK) {
            return st;
        }
    }
    int has = 0;
    em_status st =
        get_bool(p, o, "include_stop_str_in_output", &has, &out->sp.include_stop_str_in_output);
    if (st != EM_OK) {
        return st;
    }
    return get_bool(p, o, "ignore_eos", &out->sp.has_ignore_eos, &out->sp.ignore_eos);
}

static em_status parse_max_tokens(pctx *p, const cJSON *o, http_parsed *out)
{
    coord_req_spec *sp = &out->sp;
    int has_mct = 0, mct = 0;
    em_status st = get_int(p, o, "max_tokens", &sp->has_max_tokens, &sp->max_tokens);
    if (st == EM_OK && out->api == HTTP_API_CHAT) {
        st = get_int(p, o, "max_completion_tokens", &has_mct, &mct);
    }
    if (st != EM_OK) {
        return st;
    }
    if (has_mct && sp->has_max_tokens && mct != sp->max_tokens) {
        return bad(p, "max_completion_tokens", "differs from max_tokens (set one of them)");
    }
    if (has_mct) {
        sp->has_max_tokens = 1;
        sp->max_tokens = mct;
    }
    if (!sp->has_max_tokens) { /* completions: OpenAI's 16; chat: until EOS or a full context */
        sp->has_max_tokens = 1;
        sp->max_tokens = out->api == HTTP_API_CHAT ? p->h->o.m->hp.n_ctx : COMPLETIONS_MAX_TOKENS;
    }
    return EM_OK;
}

/* completions: "logprobs": N (top N); chat: "logprobs": true with "top_logprobs": N. */
static em_status parse_logprobs(pctx *p, const cJSON *o, http_parsed *out)
{
    int has = 0, n = 0, on = 0;
    em_status st;
    if (out->api == HTTP_API_COMPLETIONS) {
        st = get_int(p, o, "logprobs", &has, &n);
        on = has;
    } else {
        int has_top = 0;
        st = get_bool(p, o, "logprobs", &has, &on);
        if (st == EM_OK) {
            st = get_int(p, o, "top_logprobs", &has_top, &n);
        }
        if (st == EM_OK && has_top && !on) {
            return bad(p, "top_logprobs", "needs \"logprobs\": true");
        }
        if (st == EM_OK && has_top && (n < 0 || n > COORD_LOGPROBS_MAX)) {
            snprintf(p->err, p->errlen, "top_logprobs: must be in [0, %d] (got %d)",
                     COORD_LOGPROBS_MAX, n);
            return EM_EINVAL;
        }
    }
    if (st != EM_OK || !on) {
        return st;
    }
    out->want_logprobs = 1;
    out->n_top = n;
    out->sp.has_logprobs = 1; /* the scheduler sends the chosen token's logprob only with N >= 1 */
    out->sp.logprobs = n == 0 ? 1 : n;
    return EM_OK;
}

static em_status parse_stream(pctx *p, const cJSON *o, http_parsed *out)
{
    int has = 0;
    em_status st = get_bool(p, o, "stream", &has, &out->stream);
    const cJSON *so = get(o, "stream_options");
    if (st == EM_OK && so && out->stream) {
        if (!cJSON_IsObject(so)) {
            return bad(p, "stream_options", "must be an object");
        }
        st = get_bool(p, so, "include_usage", &has, &out->include_usage);
        if (st != EM_OK) {
            snprintf(p->err, p->errlen, "stream_options.include_usage: must be true or false");
        }
    }
    return st;
}

/* ---- the kv extension ----------------------------------------------------------------------- */

static em_status kv_param(pctx *p, const cJSON *v, size_t i, http_parsed *out)
{
    char f[96];
    snprintf(f, sizeof f, "kv.params.%.60s", v->string);
    out->kv_keys[i] = v->string;
    if (cJSON_IsString(v)) {
        out->kv_vals[i] = v->valuestring;
    } else if (cJSON_IsBool(v)) {
        out->kv_vals[i] = cJSON_IsTrue(v) ? "1" : "0";
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15) {
            snprintf(out->kv_num[i], sizeof out->kv_num[i], "%lld", (long long)d);
        } else {
            snprintf(out->kv_num[i], sizeof out->kv_num[i], "%.9g", d);
        }
        out->kv_vals[i] = out->kv_num[i];
    } else {
        return bad(p, f, "must be a string, a number or a boolean");
    }
    return EM_OK;
}

static em_status parse_kv(pctx *p, const cJSON *o, http_parsed *out)
{
    const cJSON *kv = get(o, "kv");
    if (kv == NULL) {
        return EM_OK;
    }
    if (!cJSON_IsObject(kv)) {
        return bad(p, "kv", "must be an object {method, budget, window, sinks, quant, params}");
    }
    static const char *const known[] = {"method", "budget", "window", "sinks", "quant", "params"};
    for (const cJSON *e = kv->child; e; e = e->next) {
        size_t k = 0;
        while (k < 6 && strcmp(e->string, known[k]) != 0) {
            k++;
        }
        if (k == 6) {
            char f[96];
            snprintf(f, sizeof f, "kv.%.60s", e->string);
            return bad(p, f, "unknown field (want method, budget, window, sinks, quant, params)");
        }
    }
    coord_req_spec *sp = &out->sp;
    const cJSON *m = get(kv, "method"), *q = get(kv, "quant"), *params = get(kv, "params");
    if ((m && !cJSON_IsString(m)) || (q && !cJSON_IsString(q))) {
        return bad(p, m && !cJSON_IsString(m) ? "kv.method" : "kv.quant", "must be a string");
    }
    sp->kv_method = m ? m->valuestring : NULL;
    em_status st = get_int(p, kv, "budget", &sp->has_kv_budget, &sp->kv_budget);
    if (st == EM_OK) {
        st = get_int(p, kv, "window", &sp->has_kv_window, &sp->kv_window);
    }
    if (st == EM_OK) {
        st = get_int(p, kv, "sinks", &sp->has_kv_sinks, &sp->kv_sinks);
    }
    if (st != EM_OK) { /* get_int named the field without its "kv." */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "kv.%s", p->err);
        snprintf(p->err, p->errlen, "%s", tmp);
        return st;
    }
    if (params && !cJSON_IsObject(params)) {
        return bad(p, "kv.params", "must be an object of key: value");
    }
    size_t n = (params ? (size_t)cJSON_GetArraySize(params) : 0) + (q ? 1 : 0), i = 0;
    out->kv_keys = calloc(n + 1, sizeof *out->kv_keys);
    out->kv_vals = calloc(n + 1, sizeof *out->kv_vals);
    out->kv_num = calloc(n + 1, sizeof *out->kv_num);
    if (!out->kv_keys || !out->kv_vals || !out->kv_num) {
        return EM_ENOMEM;
    }
    if (q) {
        out->kv_keys[i] = "quant";
        out->kv_vals[i++] = q->valuestring;
    }
    for (const cJSON *e = params ? params->child : NULL; e; e = e->next, i++) {
        if ((st = kv_param(p, e, i, out)) != EM_OK) {
            return st;
        }
    }
    sp->kv_keys = out->kv_keys;
    sp->kv_vals = out->kv_vals;
    sp->n_kv_params = n;
    return EM_OK;
}

/* ---- the request ------------------------------------------------------------------------------
 */

static em_status check_model(pctx *p, const cJSON *o, http_parsed *out)
{
    const coord_http *h = p->h;
    const cJSON *m = get(o, "model");
    (void)out;
    if (m == NULL) {
        return EM_OK; /* one model: not naming it is fine */
    }
    if (!cJSON_IsString(m)) {
        return bad(p, "model", "must be a string");
    }
    const char *path = h->o.model_path ? h->o.model_path : "";
    if (m->valuestring[0] == 0 || strcmp(m->valuestring, h->model_id) == 0 ||
        strcmp(m->valuestring, path) == 0) {
        return EM_OK;
    }
    *p->status = MHD_HTTP_NOT_FOUND;
    snprintf(p->err, p->errlen, "model: '%.200s' does not exist (this server serves '%.200s')",
             m->valuestring, h->model_id);
    return EM_EINVAL;
}

static em_status parse_input(pctx *p, const cJSON *o, http_parsed *out)
{
    return out->api == HTTP_API_CHAT ? parse_messages(p, o, out) : parse_prompt(p, o, out);
}

typedef em_status (*parse_step)(pctx *p, const cJSON *o, http_parsed *out);

/* 1 when a JSON string of body escapes a NUL ("\u0000" after an even run of backslashes): C
 * strings would end there silently. */
static int escaped_nul(const char *body, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++) {
        if (body[i] == '\\' && (body[i + 1] == 'u' || body[i + 1] == 'U') &&
            strncmp(body + i + 2, "0000", 4) == 0) {
            size_t run = 0;
            while (run < i && body[i - 1 - run] == '\\') {
                run++;
            }
            if (run % 2 == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* The same string rules as the gRPC API (rpc_strings.h): UTF-8, no NUL. */
static em_status check_body(const char *body, size_t len, char *err, size_t errlen)
{
    if (!rpc_utf8_valid((const uint8_t *)body, len)) {
        snprintf(err, errlen, "the body is not valid UTF-8");
        return EM_EINVAL;
    }
    if (memchr(body, 0, len) || escaped_nul(body, len)) {
        snprintf(err, errlen, "a string holds a NUL character");
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status coord__http_parse(const coord_http *h, http_api api, const char *body, size_t len,
                            http_parsed *out, unsigned *status, char *err, size_t errlen)
{
    static const parse_step steps[] = {check_model,    refuse_unsupported, parse_input,
                                       parse_sampling, parse_stop,         parse_max_tokens,
                                       parse_logprobs, parse_stream,       parse_kv};
    pctx p = {err, errlen, h, status};
    memset(out, 0, sizeof *out);
    out->api = api;
    *status = MHD_HTTP_BAD_REQUEST;
    if (check_body(body, len, err, errlen) != EM_OK) {
        return EM_EINVAL;
    }
    out->root = cJSON_ParseWithLength(body, len);
    if (out->root == NULL || !cJSON_IsObject(out->root)) {
        snprintf(err, errlen, "the body must be a JSON object%s",
                 out->root ? "" : " (it is not valid JSON)");
        return EM_EINVAL;
    }
    em_status st = EM_OK;
    for (size_t i = 0; st == EM_OK && i < sizeof steps / sizeof steps[0]; i++) {
        st = steps[i](&p, out->root, out);
    }
    if (st == EM_ENOMEM) {
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        snprintf(err, errlen, "out of memory");
    }
    return st;
}

void coord__http_parsed_free(http_parsed *p)
{
    for (size_t i = 0; p->joined && i < p->n_joined; i++) {
        free(p->joined[i]);
    }
    free(p->joined);
    free(p->msgs);
    free(p->stops);
    free(p->kv_keys);
    free(p->kv_vals);
    free(p->kv_num);
    free(p->tokens);
    free(p->stop_ids);
    cJSON_Delete(p->root);
    memset(p, 0, sizeof *p);
}
