/* SentencePiece-style BPE tokenizer (tokenizer.ggml.model = "llama") driven by the GGUF
 * vocabulary and scores, with <0xXX> byte fallback. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

typedef struct tokenizer tokenizer;

em_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen);
void tok_free(tokenizer *t);

int tok_n_vocab(const tokenizer *t);
int tok_bos(const tokenizer *t);
int tok_eos(const tokenizer *t);

/* Encodes text: optional BOS, then a leading space is added (SentencePiece add_dummy_prefix)
 * and BPE merges by score. Writes up to cap ids; *n_out gets the full count (EM_ENOSPC if it
 * exceeded cap). Invalid UTF-8 bytes are encoded through byte fallback. */
em_status tok_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                     int cap, int *n_out);

/* Raw bytes of one piece as it appears in text (byte pieces decoded to their byte, "▁" to a
 * space). `prev` is the previous id (a leading space is dropped right after BOS). */
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
