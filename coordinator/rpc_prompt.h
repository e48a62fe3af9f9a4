/* Prompts of the public API: a GenerateRequest's input (text, token ids or chat messages) to
 * prompt ids, and the Tokenize RPC. Chat messages are rendered with the model's chat template
 * (chat_template.h) and tokenized with special-token parsing; text keeps the generator's
 * tokenization (BOS where the model asks for it, no special-token parsing). Errors are EM_EINVAL
 * with "field: reason" in err. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "proto/c/emserve/v1/emserve.pb-c.h"

/* What prompts are made with (all borrowed). */
typedef struct coord_prompt_ctx {
    const model_hparams *hp; /* n_ctx, n_vocab */
    const tokenizer *tok;
    const coord_chat_template *chat; /* COORD_CHAT_NONE: messages are refused */
} coord_prompt_ctx;

/* The prompt ids of rq (exactly one of text, tokens, messages; shorter than the context):
 * *ids malloc'd, *n their count. */
em_status coord_rpc_prompt_from_proto(const Emserve__V1__GenerateRequest *rq,
                                      const coord_prompt_ctx *pc, int32_t **ids, int *n, char *err,
                                      size_t errlen);

/* Tokenize: *ids (malloc'd, *n of them; not limited by the context) and, when messages were
 * given, the rendered prompt in *prompt (malloc'd; NULL otherwise). */
em_status coord_rpc_tokenize(const Emserve__V1__TokenizeRequest *rq, const coord_prompt_ctx *pc,
                             int32_t **ids, int *n, char **prompt, char *err, size_t errlen);
