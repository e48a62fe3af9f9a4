/* Tokenizer over the GGUF vocabulary, one interface with two implementations chosen by
 * tokenizer.ggml.model:
 *   "llama"  SentencePiece-style BPE by piece scores with <0xXX> byte fallback (tok_spm.c),
 *            a leading space per tokenizer.ggml.add_space_prefix (default on);
 *   "gpt2"   byte-level BPE by merge ranks (tokenizer.ggml.merges) after the pre-tokenizer
 *            named by tokenizer.ggml.pre (gpt-2 and smollm families; tok_bpe.c, tok_pretok.c).
 * Both reproduce llama.cpp's llama_tokenize ids (tests/model/tokenizer_gpt2_test checks both
 * against a table made by llama.cpp). Not reproduced, as neither test model needs it: llama.cpp's
 * renaming of tokens by text (e.g. a non-control "<|endoftext|>" made control), per-model
 * LSTRIP/RSTRIP of specials (phi-3), its "default" and other pre-tokenizers (refused with
 * EM_EUNSUPPORTED), and clean_up_tokenization_spaces in llama_detokenize (off for smollm). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

typedef struct tokenizer tokenizer;

/* EM_EINVAL with a message for a malformed vocabulary (e.g. a gpt2 one without merges, or a
 * merge naming a piece that is not in it); EM_EUNSUPPORTED for another model or pre-tokenizer. */
em_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen);
void tok_free(tokenizer *t);

/* The id of no token (a model without BOS, a piece not in the vocabulary). */
#define TOK_ID_NONE (-1)

int tok_n_vocab(const tokenizer *t);
int tok_bos(const tokenizer *t); /* TOK_ID_NONE if none */
int tok_eos(const tokenizer *t); /* TOK_ID_NONE if none */
/* tokenizer.ggml.add_bos_token (default: 1 for "llama", 0 for "gpt2"). */
int tok_add_bos_default(const tokenizer *t);

#define TOK_ADD_BOS 1u /* prepend BOS */
#define TOK_PARSE_SPECIAL                                                  \
    2u /* control/user-defined token texts (e.g. <|im_start|>) in the text \
          become their ids; user-defined ones always do (as llama.cpp) */

/* Encodes len bytes of text (any bytes; invalid UTF-8 goes through byte fallback ("llama") or
 * becomes U+FFFD ("gpt2"), as in llama.cpp). Writes up to cap ids; *n_out gets the full count
 * (EM_ENOSPC if it exceeded cap). EM_EINVAL beyond 512 MiB of text. */
em_status tok_encode_ex(const tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t *ids, int cap, int *n_out);
/* tok_encode_ex with TOK_ADD_BOS when add_bos, no special-token parsing. */
em_status tok_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                     int cap, int *n_out);

/* Exact piece lookup (any token type; of equal pieces the last id); EM_EINVAL if absent. */
em_status tok_token_id(const tokenizer *t, const char *piece, int32_t *id);
/* 1 for a control token (never printed as text by tok_piece_bytes), else 0. */
int tok_is_special(const tokenizer *t, int32_t id);

/* Raw bytes of one piece as it appears in text, as llama_token_to_piece(special = false):
 * control, unknown and unused tokens give nothing, user-defined ones their text, byte pieces
 * their byte; "llama": "▁" is a space, dropped right after BOS (`prev` is the previous id);
 * "gpt2": byte characters back to bytes. Writes at most cap bytes. */
size_t tok_piece_bytes(const tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap);
/* An upper bound on what tok_piece_bytes writes for any id (the longest piece's stored bytes);
 * >= 1. Scans the vocabulary: call it once per tokenizer, not per token. */
size_t tok_max_piece_bytes(const tokenizer *t);

/* Streaming detokenizer that never emits a partial UTF-8 character: feed ids, get text deltas
 * containing only complete characters; flush returns what is left (invalid bytes as U+FFFD). */
typedef struct tok_stream {
    const tokenizer *t;
    int32_t prev;
    char pend[8];
    int n_pend;
} tok_stream;
void tok_stream_init(tok_stream *s, const tokenizer *t, int32_t prev_id);
/* Appends the text for id to out (cap bytes, NUL-terminated); returns bytes written. */
size_t tok_stream_feed(tok_stream *s, int32_t id, char *out, size_t cap);
size_t tok_stream_flush(tok_stream *s, char *out, size_t cap);
