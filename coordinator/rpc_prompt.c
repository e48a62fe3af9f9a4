/* Prompts of the public API (see rpc_prompt.h). */
#include "coordinator/rpc_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX (1 << 20) /* bytes of text, or of a rendered chat prompt */

/* Tokenizes all of s (len <= TEXT_MAX) into a new array, growing it once when the first guess
 * is short. */
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

/* Text as the generator tokenizes it (add_special: BOS where the model asks for it). */
static em_status text_ids(const char *text, int add_special, int parse_special,
                          const coord_prompt_ctx *pc, int32_t **ids, int *n, char *err,
                          size_t errlen)
{
    size_t len = strlen(text);
    if (len > TEXT_MAX) {
        snprintf(err, errlen, "text: longer than %d bytes", TEXT_MAX);
        return EM_EINVAL;
    }
    unsigned flags =
        (add_special ? bos_flag(pc->tok) : 0u) | (parse_special ? TOK_PARSE_SPECIAL : 0u);
    em_status st = encode_all(pc->tok, text, len, flags, ids, n);
    if (st != EM_OK && st != EM_ENOMEM) {
        snprintf(err, errlen, "text: cannot tokenize (%s)", em_status_str(st));
        return EM_EINVAL;
    }
    return st;
}

/* Renders the messages with the model's template and tokenizes the result with special tokens;
 * *prompt gets the rendered text when prompt is non-NULL. */
static em_status chat_ids(Emserve__V1__ChatMessage *const *m, size_t n_msgs, int gen,
                          const coord_prompt_ctx *pc, int32_t **ids, int *n, char **prompt,
                          char *err, size_t errlen)
{
    if (n_msgs > COORD_CHAT_MAX_MESSAGES) {
        snprintf(err, errlen, "messages: %zu messages, at most %d", n_msgs,
                 COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    coord_chat_msg *cm = malloc(sizeof *cm * (n_msgs + 1));
    if (cm == NULL) {
        return EM_ENOMEM;
    }
    for (size_t i = 0; i < n_msgs; i++) {
        cm[i] = (coord_chat_msg){m[i]->role, m[i]->content};
    }
    char *text = NULL;
    size_t len = 0;
    em_status st = coord_chat_render(pc->chat, cm, (int)n_msgs, gen, &text, &len, err, errlen);
    free(cm);
    if (st == EM_OK && len > TEXT_MAX) {
        snprintf(err, errlen, "messages: the rendered prompt is longer than %d bytes", TEXT_MAX);
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

static em_status token_ids(const Emserve__V1__TokenIds *t, const model_hparams *hp, int32_t **ids,
                           int *n, char *err, size_t errlen)
{
    if (t == NULL || t->n_ids == 0) {
        snprintf(err, errlen, "tokens.ids: empty");
        return EM_EINVAL;
    }
    if (t->n_ids >= (size_t)hp->n_ctx) {
        snprintf(err, errlen, "tokens.ids: %zu tokens, the context holds %d", t->n_ids, hp->n_ctx);
        return EM_EINVAL;
    }
    for (size_t i = 0; i < t->n_ids; i++) {
        if (t->ids[i] < 0 || t->ids[i] >= hp->n_vocab) {
            snprintf(err, errlen, "tokens.ids[%zu]: %d is outside the vocabulary [0, %d)", i,
                     t->ids[i], hp->n_vocab);
            return EM_EINVAL;
        }
    }
    *ids = malloc(sizeof(int32_t) * t->n_ids);
    if (*ids == NULL) {
        return EM_ENOMEM;
    }
    memcpy(*ids, t->ids, sizeof(int32_t) * t->n_ids);
    *n = (int)t->n_ids;
    return EM_OK;
}

em_status coord_rpc_prompt_from_proto(const Emserve__V1__GenerateRequest *rq,
                                      const coord_prompt_ctx *pc, int32_t **ids, int *n, char *err,
                                      size_t errlen)
{
    int has_text = rq->input_case == EMSERVE__V1__GENERATE_REQUEST__INPUT_TEXT;
    int has_tokens = rq->input_case == EMSERVE__V1__GENERATE_REQUEST__INPUT_TOKENS;
    int has_gen = rq->_add_generation_prompt_case ==
                  EMSERVE__V1__GENERATE_REQUEST___ADD_GENERATION_PROMPT_ADD_GENERATION_PROMPT;
    *ids = NULL;
    *n = 0;
    if (rq->n_messages > 0 && (has_text || has_tokens)) {
        snprintf(err, errlen,
                 "messages: set only one of text, tokens and messages (got messages "
                 "and %s)",
                 has_text ? "text" : "tokens");
        return EM_EINVAL;
    }
    if (has_gen && rq->n_messages == 0) {
        snprintf(err, errlen, "add_generation_prompt: applies to messages only");
        return EM_EINVAL;
    }
    em_status st;
    const char *field = "text";
    if (rq->n_messages > 0) {
        field = "messages";
        st = chat_ids(rq->messages, rq->n_messages, has_gen ? rq->add_generation_prompt : 1, pc,
                      ids, n, NULL, err, errlen);
    } else if (has_tokens) {
        return token_ids(rq->tokens, pc->hp, ids, n, err, errlen);
    } else if (has_text) {
        if (rq->text[0] == 0) { /* would generate from BOS alone */
            snprintf(err, errlen, "text: empty");
            return EM_EINVAL;
        }
        st = text_ids(rq->text, 1, 0, pc, ids, n, err, errlen);
    } else {
        snprintf(err, errlen, "input: set text, tokens or messages");
        return EM_EINVAL;
    }
    if (st == EM_OK && *n >= pc->hp->n_ctx) {
        snprintf(err, errlen, "%s: %d tokens, the context holds %d", field, *n, pc->hp->n_ctx);
        st = EM_EINVAL;
    }
    if (st != EM_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return st;
}

em_status coord_rpc_tokenize(const Emserve__V1__TokenizeRequest *rq, const coord_prompt_ctx *pc,
                             int32_t **ids, int *n, char **prompt, char *err, size_t errlen)
{
    int has_add = rq->_add_special_case == EMSERVE__V1__TOKENIZE_REQUEST___ADD_SPECIAL_ADD_SPECIAL;
    int has_parse =
        rq->_parse_special_case == EMSERVE__V1__TOKENIZE_REQUEST___PARSE_SPECIAL_PARSE_SPECIAL;
    int has_gen = rq->_add_generation_prompt_case ==
                  EMSERVE__V1__TOKENIZE_REQUEST___ADD_GENERATION_PROMPT_ADD_GENERATION_PROMPT;
    *ids = NULL;
    *n = 0;
    *prompt = NULL;
    if (rq->n_messages == 0) {
        if (has_gen) {
            snprintf(err, errlen, "add_generation_prompt: applies to messages only");
            return EM_EINVAL;
        }
        return text_ids(rq->text, has_add ? rq->add_special : 1, has_parse && rq->parse_special, pc,
                        ids, n, err, errlen);
    }
    if (rq->text[0]) {
        snprintf(err, errlen, "text and messages: set one of them, not both");
        return EM_EINVAL;
    }
    if (has_add || has_parse) {
        snprintf(err, errlen,
                 "%s: applies to text only (messages are tokenized with BOS as the "
                 "model asks and special tokens parsed)",
                 has_add ? "add_special" : "parse_special");
        return EM_EINVAL;
    }
    return chat_ids(rq->messages, rq->n_messages, has_gen ? rq->add_generation_prompt : 1, pc, ids,
                    n, prompt, err, errlen);
}
