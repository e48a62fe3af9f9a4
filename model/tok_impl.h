/* Internals shared by the tokenizer front end (tokenizer.c) and its two implementations,
 * SentencePiece BPE (tok_spm.c, tokenizer.ggml.model "llama") and byte-level BPE (tok_bpe.c,
 * "gpt2"): the vocabulary common to both, the tokenizer object and the id emitter. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"
#include "model/tokenizer.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum {
    TOK_NORMAL = 1,
    TOK_UNKNOWN = 2,
    TOK_CONTROL = 3,
    TOK_USER = 4,
    TOK_UNUSED = 5,
    TOK_BYTE = 6
};

/* Longest piece accepted (bytes). */
#define TOK_MAX_PIECE 4096

typedef struct tok_vocab {
    int n;
    char *arena;       /* all piece texts, back to back */
    uint32_t *off;     /* [n + 1] offsets into arena */
    uint8_t *type;     /* [n] TOK_*; unknown values read as TOK_UNUSED */
    int32_t *slots;    /* open addressing: piece -> id, -1 = empty; of equal pieces the last */
    uint32_t mask;     /* id wins, as in llama.cpp's token_to_id */
    int32_t *specials; /* ids of the non-empty control, user-defined and unknown pieces, */
    int n_specials;    /* longest first (equal lengths by id) */
    int has_types;     /* the file has tokenizer.ggml.token_type (else all TOK_NORMAL) */
} tok_vocab;

typedef enum { TOK_KIND_SPM, TOK_KIND_BPE } tok_kind;

typedef struct tok_spm tok_spm;
typedef struct tok_bpe tok_bpe;

struct tokenizer {
    tok_vocab v;
    tok_kind kind;
    int bos, eos, unk;    /* TOK_ID_NONE when the model has none */
    int add_bos;          /* tokenizer.ggml.add_bos_token */
    int add_space_prefix; /* tokenizer.ggml.add_space_prefix (SentencePiece only) */
    tok_spm *spm;
    tok_bpe *bpe;
};

/* Collects ids: writes the first cap, counts all. */
typedef struct tok_emitter {
    int32_t *ids;
    int cap, n;
} tok_emitter;

static inline void tok_emit(tok_emitter *e, int32_t id)
{
    if (e->n < e->cap)
        e->ids[e->n] = id;
    e->n++;
}

static inline const char *tok_piece(const tok_vocab *v, int32_t id, size_t *len)
{
    *len = v->off[id + 1] - v->off[id];
    return v->arena + v->off[id];
}

void tok_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tok_vocab.c */
em_status tok_vocab_load(tok_vocab *v, const gguf_file *f, char *err, size_t errlen);
void tok_vocab_free(tok_vocab *v);
int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t n); /* TOK_ID_NONE if absent */
uint32_t tok_hash(const char *s, size_t n);                          /* FNV-1a */
/* 1 when s is a byte piece "<0xAB>" (then *byte = 0xAB), else 0. */
int tok_parse_byte_piece(const char *s, size_t n, uint8_t *byte);

/* tok_spm.c: SentencePiece BPE over scores with <0xXX> byte fallback. */
em_status tok_spm_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen);
void tok_spm_free(tok_spm *s);
/* Encodes one stretch of text (no special tokens in it); add_prefix: prepend a space. */
em_status tok_spm_encode(const tokenizer *t, const char *text, size_t len, int add_prefix,
                         tok_emitter *e);
size_t tok_spm_piece(const tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap);

/* tok_bpe.c: byte-level BPE over ranked merges. */
em_status tok_bpe_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen);
void tok_bpe_free(tok_bpe *b);
em_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_emitter *e);
size_t tok_bpe_piece(const tokenizer *t, int32_t id, char *buf, size_t cap);
