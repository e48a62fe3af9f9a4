/* The properties both tokenizer targets check on one input (tok_check.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* data[0] selects the flags (bit 0: TOK_ADD_BOS, bit 1: TOK_PARSE_SPECIAL), the rest is the
 * text. Encodes it, checks every id is in the vocabulary, decodes it piece by piece and with
 * the streaming detokenizer (whole UTF-8 characters in every delta, the raw text where that is
 * valid UTF-8), and, where the tokenizer promises it, decode(encode(x)) == x: "llama"
 * (byte_exact) for any bytes when BOS is added and specials are not parsed, "gpt2" for valid
 * UTF-8 without special parsing. */
void fuzz_tok_check(const tokenizer *t, int byte_exact, const uint8_t *data, size_t size);
