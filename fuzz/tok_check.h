/* The properties both tokenizer targets check on one input (tok_check.c). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer.h"

/* data[0] selects the flags (bit 0: TOK_ADD_BOS, bit 1: TOK_PARSE_SPECIAL), the rest is the
 * text. Encodes it, checks every id is in the vocabulary, decodes it piece by piece and with
 * the streaming detokenizer (whole UTF-8 characters in every delta, the raw text where that is
 * valid UTF-8), and, where the tokenizer promises it, decode(encode(x)) == x: "llama"
 * (byte_exact) for any bytes when BOS is added and specials are not parsed (but text holding
 * U+2581, SentencePiece's space), "gpt2" for valid UTF-8 without special parsing made of bytes
 * that have a piece (bytes_ok[b]: SmolLM2 has none for 21 bytes, e.g. 0x04 and 0xf1, which it
 * drops, as llama.cpp does). */
void fuzz_tok_check(const tokenizer *t, int byte_exact, const uint8_t *bytes_ok,
                    const uint8_t *data, size_t size);
