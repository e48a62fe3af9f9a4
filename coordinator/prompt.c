/* Prompts in native form (see prompt.h). */
#include "coordinator/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tokenizes all of s (len <= COORD_PROMPT_TEXT_MAX) into a new array, growing it once when the
 * first guess is short. */
static em_status encode_all(const tokenizer *t, const char *s, size_t len, unsigned flags,
                            int32_t **ids, int *n)
{
    int cap = (int)len + 16, got = 0;
    *ids = NULL;
    *n = 0;
    for (int tries = 0; tries < 2; tries++) {
        int32_t *p = malloc(sizeof(int32_t) * (size_t)cap);
        if (p == NULL) {
            return EM_ENOMEM;
        }
        em_status st = tok_encode_ex(t, s, len, flags, p, cap, &got);
        if (st == EM_OK) {
            *ids = p;
            *n = got;
            return EM_OK;
        }
        free(p);
        if (st != EM_ENOSPC || got <= cap) {
            return st;
        }
        cap = got;
    }
    return EM_ENOSPC;
}

static unsigned bos_flag(const tokenizer *t)
{
    return tok_add_bos_default(t) ? TOK_ADD_BOS : 0u;
}

em_status coord_prompt_text(const coord_prompt_ctx *pc, const char *text, int add_special,
                            int parse_special, const char *field, int32_t **ids, int *n, char *err,
                            size_t errlen)
{
    size_t len = strlen(text);
    if (len > COORD_PROMPT_TEXT_MAX) {
        snprintf(err, errlen, "%s: longer than %d bytes", field, COORD_PROMPT_TEXT_MAX);
        return EM_EINVAL;
    }
    unsigned flags =
        (add_special ? bos_flag(pc->tok) : 0u) | (parse_special ? TOK_PARSE_SPECIAL : 0u);
    em_status st = encode_all(pc->tok, text, len, flags, ids, n);
    if (st != EM_OK && st != EM_ENOMEM) {
        snprintf(err, errlen, "%s: cannot tokenize (%s)", field, em_status_str(st));
        return EM_EINVAL;
    }
    return st;
}

em_status coord_prompt_chat(const coord_prompt_ctx *pc, const coord_chat_msg *msgs, size_t n_msgs,
                            int add_generation_prompt, int32_t **ids, int *n, char **prompt,
                            char *err, size_t errlen)
{
    *ids = NULL;
    *n = 0;
    if (n_msgs > COORD_CHAT_MAX_MESSAGES) {
        snprintf(err, errlen, "messages: %zu messages, at most %d", n_msgs,
                 COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    char *text = NULL;
    size_t len = 0;
    em_status st = coord_chat_render(pc->chat, msgs, (int)n_msgs, add_generation_prompt, &text,
                                     &len, err, errlen);
    if (st == EM_OK && len > COORD_PROMPT_TEXT_MAX) {
        snprintf(err, errlen, "messages: the rendered prompt is longer than %d bytes",
                 COORD_PROMPT_TEXT_MAX);
        st = EM_EINVAL;
    }
    if (st == EM_OK) {
        st = encode_all(pc->tok, text, len, bos_flag(pc->tok) | TOK_PARSE_SPECIAL, ids, n);
        if (st != EM_OK && st != EM_ENOMEM) {
            snprintf(err, errlen, "messages: cannot tokenize (%s)", em_status_str(st));
            st = EM_EINVAL;
        }
    }
    if (st == EM_OK && prompt) {
        *prompt = text;
        text = NULL;
    }
    free(text);
    return st;
}

em_status coord_prompt_tokens(const model_hparams *hp, const int32_t *in, size_t n_in,
                              const char *field, int32_t **ids, int *n, char *err, size_t errlen)
{
    *ids = NULL;
    *n = 0;
    if (n_in == 0) {
        snprintf(err, errlen, "%s: empty", field);
        return EM_EINVAL;
    }
    if (n_in >= (size_t)hp->n_ctx) {
        snprintf(err, errlen, "%s: %zu tokens, the context holds %d", field, n_in, hp->n_ctx);
        return EM_EINVAL;
    }
    for (size_t i = 0; i < n_in; i++) {
        if (in[i] < 0 || in[i] >= hp->n_vocab) {
            snprintf(err, errlen, "%s[%zu]: %d is outside the vocabulary [0, %d)", field, i, in[i],
                     hp->n_vocab);
            return EM_EINVAL;
        }
    }
    *ids = malloc(sizeof(int32_t) * n_in);
    if (*ids == NULL) {
        return EM_ENOMEM;
    }
    memcpy(*ids, in, sizeof(int32_t) * n_in);
    *n = (int)n_in;
    return EM_OK;
}
