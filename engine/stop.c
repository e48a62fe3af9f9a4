#define _GNU_SOURCE /* memmem */
/* Stop-condition bookkeeping (see stop.h). */
#include "engine/stop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stop_params_default(stop_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = 256;
}

em_status stop_params_add_string(stop_params *p, const char *s, size_t len, char *err,
                                 size_t errlen)
{
    if (p->n_stop >= STOP_MAX_STRINGS) {
        snprintf(err, errlen, "stop: at most %d stop strings", STOP_MAX_STRINGS);
        return EM_EINVAL;
    }
    if (len == 0 || len > STOP_MAX_STRING_LEN || memchr(s, 0, len)) {
        snprintf(err, errlen, "stop: each stop string must have 1-%d bytes and no NUL",
                 STOP_MAX_STRING_LEN);
        return EM_EINVAL;
    }
    memcpy(p->stop[p->n_stop], s, len);
    p->stop[p->n_stop][len] = 0;
    p->n_stop++;
    return EM_OK;
}

em_status stop_params_add_id(stop_params *p, int32_t id, int n_vocab, char *err, size_t errlen)
{
    if (p->n_stop_ids >= STOP_MAX_IDS) {
        snprintf(err, errlen, "stop_token_ids: at most %d ids", STOP_MAX_IDS);
        return EM_EINVAL;
    }
    if (id < 0 || id >= n_vocab) {
        snprintf(err, errlen, "stop_token_ids: %d is outside the vocabulary [0, %d)", id, n_vocab);
        return EM_EINVAL;
    }
    p->stop_ids[p->n_stop_ids++] = id;
    return EM_OK;
}

em_status stop_params_validate(const stop_params *p, int max_ctx_tokens, char *err, size_t errlen)
{
    if (p->max_tokens <= 0 || p->max_tokens > max_ctx_tokens) {
        snprintf(err, errlen, "max_tokens must be in [1, %d]", max_ctx_tokens);
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status stop_state_init(stop_state *s, const stop_params *p, int eos_id)
{
    memset(s, 0, sizeof *s);
    s->p = p;
    s->eos_id = eos_id;
    s->matched = -1;
    s->cap = 256;
    s->text = malloc(s->cap);
    if (!s->text)
        return EM_ENOMEM;
    s->text[0] = 0;
    return EM_OK;
}

void stop_state_free(stop_state *s)
{
    free(s->text);
    s->text = NULL;
}

stop_reason stop_state_append_text(stop_state *s, const char *piece, size_t piece_len)
{
    const stop_params *p = s->p;
    if (s->len + piece_len + 1 > s->cap) {
        size_t nc = s->cap;
        while (s->len + piece_len + 1 > nc)
            nc *= 2;
        char *t = realloc(s->text, nc);
        if (!t)
            return STOP_LENGTH; /* out of memory: end the generation cleanly */
        s->text = t;
        s->cap = nc;
    }
    memcpy(s->text + s->len, piece, piece_len);
    s->len += piece_len;
    s->text[s->len] = 0;
    /* A stop string can only newly match in a window ending in the new piece. */
    for (int i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        size_t from = s->len > piece_len + sl ? s->len - piece_len - sl : 0;
        if (from < s->emitted)
            from = s->emitted;
        char *hit = memmem(s->text + from, s->len - from, p->stop[i], sl);
        if (hit) {
            s->len = (size_t)(hit - s->text) + (p->include_stop ? sl : 0);
            s->text[s->len] = 0;
            s->matched = i;
            return STOP_STRING;
        }
    }
    return STOP_NONE;
}

stop_reason stop_state_feed(stop_state *s, int32_t id, const char *piece, size_t piece_len)
{
    const stop_params *p = s->p;
    s->n_generated++;
    if (id == s->eos_id && !p->ignore_eos)
        return STOP_EOS;
    for (int i = 0; i < p->n_stop_ids; i++) {
        if (p->stop_ids[i] == id)
            return STOP_TOKEN;
    }
    stop_reason r = stop_state_append_text(s, piece, piece_len);
    if (r != STOP_NONE)
        return r;
    if (s->n_generated >= p->max_tokens)
        return STOP_LENGTH;
    return STOP_NONE;
}

void stop_state_take(stop_state *s, int final, const char **out, size_t *n)
{
    size_t safe = s->len;
    if (!final) {
        /* Hold back the longest suffix that is a proper prefix of some stop string. */
        for (int i = 0; i < s->p->n_stop; i++) {
            size_t sl = strlen(s->p->stop[i]);
            for (size_t k = sl - 1; k > 0; k--) {
                if (k <= s->len && memcmp(s->text + s->len - k, s->p->stop[i], k) == 0) {
                    if (s->len - k < safe)
                        safe = s->len - k;
                    break;
                }
            }
        }
    }
    if (safe < s->emitted)
        safe = s->emitted;
    *out = s->text + s->emitted;
    *n = safe - s->emitted;
    s->emitted = safe;
}

const char *stop_reason_str(stop_reason r)
{
    switch (r) {
    case STOP_EOS:
    case STOP_TOKEN:
    case STOP_STRING:
        return "stop";
    case STOP_LENGTH:
        return "length";
    default:
        return "";
    }
}
