/* Prompts in native form, shared by every front end (gRPC, HTTP): text, token ids or chat
 * messages to prompt ids. Chat messages are rendered with the model's chat template
 * (chat_template.h) and tokenized with special-token parsing; text keeps the generator's
 * tokenization (BOS where the model asks for it, no special-token parsing). Errors are EM_EINVAL
 * with "field: reason" in err, the field named by the caller (the front ends name their fields
 * differently: "text" / "tokens.ids" in gRPC, "prompt" in HTTP). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/chat_template.h"
#include "model/model.h"
#include "model/tokenizer.h"

#define COORD_PROMPT_TEXT_MAX (1 << 20) /* bytes of text, or of a rendered chat prompt */

/* What prompts are made with (all borrowed). */
typedef struct coord_prompt_ctx {
    const model_hparams *hp; /* n_ctx, n_vocab */
    const tokenizer *tok;
    const coord_chat_template *chat; /* COORD_CHAT_NONE: messages are refused */
} coord_prompt_ctx;

/* Tokenizes text (at most COORD_PROMPT_TEXT_MAX bytes): add_special = BOS where the model asks
 * for it, parse_special = "<|im_start|>" becomes that token. *ids malloc'd, *n its count (not
 * limited by the context). */
em_status coord_prompt_text(const coord_prompt_ctx *pc, const char *text, int add_special,
                            int parse_special, const char *field, int32_t **ids, int *n, char *err,
                            size_t errlen);

/* Renders n_msgs messages with the model's template (ending with the assistant's opening when
 * add_generation_prompt) and tokenizes the result with BOS as the model asks and special tokens
 * parsed. *prompt gets the rendered text (malloc'd) when prompt is non-NULL. Errors name
 * "messages". */
em_status coord_prompt_chat(const coord_prompt_ctx *pc, const coord_chat_msg *msgs, size_t n_msgs,
                            int add_generation_prompt, int32_t **ids, int *n, char **prompt,
                            char *err, size_t errlen);

/* Copies token ids given by the client: 1 .. n_ctx - 1 of them, each inside the vocabulary
 * ("field[i]: ..." names a bad one). */
em_status coord_prompt_tokens(const model_hparams *hp, const int32_t *in, size_t n_in,
                              const char *field, int32_t **ids, int *n, char *err, size_t errlen);
