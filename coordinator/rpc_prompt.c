/* Prompts of the public gRPC API (see rpc_prompt.h). */
#include "coordinator/rpc_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

coord_chat_msg *coord_rpc_chat_msgs(Emserve__V1__ChatMessage *const *m, size_t n)
{
    if (n == 0) {
        return NULL;
    }
    coord_chat_msg *cm = malloc(sizeof *cm * n);
    for (size_t i = 0; cm && i < n; i++) {
        cm[i] = (coord_chat_msg){m[i]->role, m[i]->content};
    }
    return cm;
}

static em_status tokenize_chat(const Emserve__V1__TokenizeRequest *rq, int gen,
                               const coord_prompt_ctx *pc, int32_t **ids, int *n, char **prompt,
                               char *err, size_t errlen)
{
    if (rq->n_messages > COORD_CHAT_MAX_MESSAGES) {
        snprintf(err, errlen, "messages: %zu messages, at most %d", rq->n_messages,
                 COORD_CHAT_MAX_MESSAGES);
        return EM_EINVAL;
    }
    coord_chat_msg *cm = coord_rpc_chat_msgs(rq->messages, rq->n_messages);
    if (cm == NULL) {
        return EM_ENOMEM;
    }
    em_status st = coord_prompt_chat(pc, cm, rq->n_messages, gen, ids, n, prompt, err, errlen);
    free(cm);
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
        return coord_prompt_text(pc, rq->text, has_add ? rq->add_special : 1,
                                 has_parse && rq->parse_special, "text", ids, n, err, errlen);
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
    return tokenize_chat(rq, has_gen ? rq->add_generation_prompt : 1, pc, ids, n, prompt, err,
                         errlen);
}
