/* UTF-8 helpers of the tokenizers: a strict scanner (Unicode maximal subparts, for the
 * SentencePiece tokenizer and the streaming detokenizer), llama.cpp's lax decoder (for the
 * byte-level BPE pre-tokenizer, which must see the code points llama.cpp sees) and an encoder. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* What tok_utf8_scan found at p. */
typedef enum {
    TOK_UTF8_CHAR,      /* a complete, valid character of *len bytes */
    TOK_UTF8_TRUNCATED, /* all *len = n bytes are a valid but truncated prefix */
    TOK_UTF8_INVALID    /* the first *len bytes form an invalid sequence (a maximal subpart: one
                           U+FFFD each) */
} tok_utf8_kind;

/* One character at p (n > 0 bytes available); *len as tok_utf8_kind says (always > 0). */
tok_utf8_kind tok_utf8_scan(const uint8_t *p, size_t n, int *len);

/* Decodes s as llama.cpp's unicode_cpts_from_utf8 does: lead-byte length, continuation bytes
 * checked, no check for overlong forms or surrogates; an invalid or truncated sequence gives
 * U+FFFD for its first byte and decoding resumes at the next byte. One difference: a 4-byte
 * form above U+10FFFF (llama.cpp throws on it later) is invalid here too. cps needs len slots;
 * returns the number of code points. */
size_t tok_utf8_decode_lax(const char *s, size_t len, uint32_t *cps);

/* Writes cp (<= U+10FFFF, surrogates allowed) as 1..4 bytes; returns the length. */
int tok_utf8_put(uint32_t cp, char *out);
