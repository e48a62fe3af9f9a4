/* TODO(tok-merge): temporary stand-in for the tokenizer API the gpt2-BPE branch adds to
 * model/tokenizer.h; delete this file, model/tok_ex_stub.c and the include at the end of
 * tokenizer.h when merging that branch. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define TOK_ADD_BOS       1u /* prepend BOS */
#define TOK_PARSE_SPECIAL 2u /* special-token text ("<|im_start|>") becomes the special token */

typedef struct tokenizer tokenizer;

/* tok_encode with flags. The stub ignores TOK_PARSE_SPECIAL (the SentencePiece tokenizer here
 * never parses special tokens). */
em_status tok_encode_ex(const tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t *ids, int cap, int *n_out);
/* Whether the model wants BOS at the start of a prompt (the stub: always 1, today's behaviour). */
int tok_add_bos_default(const tokenizer *t);
