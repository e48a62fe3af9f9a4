/* JSON of the OpenAI-compatible replies (cJSON): completions and chat completions, whole and as
 * stream chunks, with logprobs in each API's shape, usage, models and errors. Every string goes
 * out as valid UTF-8 (a token piece may be part of a character: invalid bytes become U+FFFD;
 * chat logprobs also carry the raw bytes). Runs on connection threads only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/http_impl.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80         ? 1
                 : (s[0] >> 5) == 6  ? 2
                 : (s[0] >> 4) == 14 ? 3
                 : (s[0] >> 3) == 30 ? 4
                                     : 0;
    if (len == 0 || len > n || (len == 2 && s[0] < 0xC2)) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    if ((len == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (len == 3 && s[0] == 0xED && s[1] >= 0xA0) ||
        (len == 4 && s[0] == 0xF0 && s[1] < 0x90) || (len == 4 && s[0] > 0xF4) ||
        (len == 4 && s[0] == 0xF4 && s[1] >= 0x90)) {
        return 0; /* overlong, surrogate, or beyond U+10FFFF */
    }
    return len;
}

/* Adds key: s[0..n) as a JSON string, invalid UTF-8 replaced. NULL obj: returns the item. */
static cJSON *add_text(cJSON *obj, const char *key, const char *s, size_t n)
{
    char *clean = malloc(n * 3 + 1), *o = clean;
    if (clean == NULL) {
        return NULL;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = u[i] ? utf8_seq(u + i, n - i) : 0;
        if (l == 0) {
            memcpy(o, "\xEF\xBF\xBD", 3); /* U+FFFD (and a NUL byte never ends the text) */
            o += 3;
            i++;
        } else {
            memcpy(o, u + i, l);
            o += l;
            i += l;
        }
    }
    *o = 0;
    cJSON *item = cJSON_CreateString(clean);
    free(clean);
    if (item && obj) {
        cJSON_AddItemToObject(obj, key, item);
    }
    return item;
}

static void add_head(cJSON *o, const http_gen *g, const char *object)
{
    cJSON_AddStringToObject(o, "id", g->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)g->created);
    cJSON_AddStringToObject(o, "model", g->h->model_id);
}

static void add_usage(cJSON *o, const http_gen *g)
{
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", g->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", g->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", g->prompt_tokens + g->completion_tokens);
    cJSON_AddNumberToObject(u, "kv_entries_kept", (double)g->kv_kept);
    cJSON_AddNumberToObject(u, "kv_entries_full", (double)g->kv_full);
}

static char *print_free(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* ---- logprobs ------------------------------------------------------------------------------- */

static size_t piece(const http_gen *g, int32_t prev, int32_t id, char *buf, size_t cap)
{
    return tok_piece_bytes(g->h->o.tok, prev, id, buf, cap);
}

static cJSON *bytes_array(const char *s, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)s[i]));
    }
    return a;
}

/* Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]} */
static cJSON *logprobs_chat(http_gen *g, const http_acc *a, char *buf, size_t cap)
{
    cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
    for (int i = 0; i < a->n && content; i++) {
        const coord_logprob *l = &a->lps[i];
        cJSON *e = cJSON_CreateObject();
        size_t n = piece(g, g->prev_id, a->ids[i], buf, cap);
        add_text(e, "token", buf, n);
        cJSON_AddNumberToObject(e, "logprob", l->logprob);
        cJSON_AddItemToObject(e, "bytes", bytes_array(buf, n));
        cJSON *tops = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int k = 0; k < l->n_top && k < g->n_top; k++) {
            cJSON *t = cJSON_CreateObject();
            size_t tn = piece(g, g->prev_id, l->top_id[k], buf, cap);
            add_text(t, "token", buf, tn);
            cJSON_AddNumberToObject(t, "logprob", l->top_logprob[k]);
            cJSON_AddItemToObject(t, "bytes", bytes_array(buf, tn));
            cJSON_AddItemToArray(tops, t);
        }
        cJSON_AddItemToArray(content, e);
        g->prev_id = a->ids[i];
    }
    return lp;
}

/* Completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} */
static cJSON *logprobs_completion(http_gen *g, const http_acc *a, char *buf, size_t cap)
{
    cJSON *lp = cJSON_CreateObject();
    cJSON *toks = cJSON_AddArrayToObject(lp, "tokens");
    cJSON *lps = cJSON_AddArrayToObject(lp, "token_logprobs");
    cJSON *tops = g->n_top > 0 ? cJSON_AddArrayToObject(lp, "top_logprobs")
                               : cJSON_AddNullToObject(lp, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(lp, "text_offset");
    for (int i = 0; i < a->n && offs; i++) {
        const coord_logprob *l = &a->lps[i];
        size_t n = piece(g, g->prev_id, a->ids[i], buf, cap);
        cJSON_AddItemToArray(toks, add_text(NULL, NULL, buf, n));
        cJSON_AddItemToArray(lps, cJSON_CreateNumber(l->logprob));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)g->text_off));
        if (g->n_top > 0) {
            cJSON *t = cJSON_CreateObject();
            for (int k = 0; k < l->n_top && k < g->n_top; k++) {
                size_t tn = piece(g, g->prev_id, l->top_id[k], buf, cap);
                cJSON *v = add_text(NULL, NULL, buf, tn);
                if (v && !cJSON_GetObjectItemCaseSensitive(t, v->valuestring)) {
                    cJSON_AddNumberToObject(t, v->valuestring, l->top_logprob[k]);
                }
                cJSON_Delete(v);
            }
            cJSON_AddItemToArray(tops, t);
        }
        g->text_off += n;
        g->prev_id = a->ids[i];
    }
    return lp;
}

static void add_logprobs(cJSON *choice, http_gen *g, const http_acc *a)
{
    if (!g->want_lp || a->lps == NULL) {
        cJSON_AddNullToObject(choice, "logprobs");
        return;
    }
    size_t cap = g->h->piece_max + 8;
    char *buf = malloc(cap);
    if (buf == NULL) {
        cJSON_AddNullToObject(choice, "logprobs");
        return;
    }
    cJSON_AddItemToObject(choice, "logprobs",
                          g->api == HTTP_API_CHAT ? logprobs_chat(g, a, buf, cap)
                                                  : logprobs_completion(g, a, buf, cap));
    free(buf);
}

/* ---- replies -------------------------------------------------------------------------------- */

char *coord__http_render_final(http_gen *g)
{
    http_acc a;
    coord__http_gen_take(g, &a);
    cJSON *o = cJSON_CreateObject();
    add_head(o, g, g->api == HTTP_API_CHAT ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (g->api == HTTP_API_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        add_text(m, "content", g->full_text ? g->full_text : "", g->full_len);
    } else {
        add_text(c, "text", g->full_text ? g->full_text : "", g->full_len);
    }
    add_logprobs(c, g, &a);
    cJSON_AddStringToObject(c, "finish_reason", g->finish);
    cJSON_AddItemToArray(choices, c);
    add_usage(o, g);
    coord__http_acc_free(&a);
    return print_free(o);
}

char *coord__http_render_chunk(http_gen *g, const http_acc *a, const char *finish, int role)
{
    cJSON *o = cJSON_CreateObject();
    int chat = g->api == HTTP_API_CHAT;
    add_head(o, g, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) {
            cJSON_AddStringToObject(d, "role", "assistant");
        }
        if (role || a->len > 0) {
            add_text(d, "content", a->text ? a->text : "", a->len);
        }
    } else {
        add_text(c, "text", a->text ? a->text : "", a->len);
    }
    add_logprobs(c, g, a);
    if (finish) {
        cJSON_AddStringToObject(c, "finish_reason", finish);
    } else {
        cJSON_AddNullToObject(c, "finish_reason");
    }
    cJSON_AddItemToArray(choices, c);
    return print_free(o);
}

char *coord__http_render_usage_chunk(http_gen *g)
{
    cJSON *o = cJSON_CreateObject();
    add_head(o, g, g->api == HTTP_API_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddArrayToObject(o, "choices");
    add_usage(o, g);
    return print_free(o);
}

char *coord__http_render_error(const char *message, const char *type, const char *param,
                               const char *code)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    add_text(e, "message", message, strlen(message));
    cJSON_AddStringToObject(e, "type", type);
    if (param) {
        add_text(e, "param", param, strlen(param));
    } else {
        cJSON_AddNullToObject(e, "param");
    }
    if (code) {
        cJSON_AddStringToObject(e, "code", code);
    } else {
        cJSON_AddNullToObject(e, "code");
    }
    return print_free(o);
}

static cJSON *model_json(const coord_http *h)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", h->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)h->created);
    cJSON_AddStringToObject(m, "owned_by", "emserve");
    cJSON_AddNumberToObject(m, "max_model_len", h->o.m->hp.n_ctx);
    return m;
}

char *coord__http_render_models(const coord_http *h, int one)
{
    if (one) {
        return print_free(model_json(h));
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(o, "data");
    cJSON_AddItemToArray(data, model_json(h));
    return print_free(o);
}
