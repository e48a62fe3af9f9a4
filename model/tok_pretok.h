/* Pre-tokenizers of the byte-level BPE tokenizer: llama.cpp's word splits for
 * tokenizer.ggml.pre, on code points.
 *   gpt2   'the GPT-2 regex  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 * ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (llama.cpp's hand-written matcher: the contractions are lower
 * case only, \s is the White_Space property) smollm  first every \p{N} code point on its own, then
 * the GPT-2 regex inside each stretch between them (a regex match never crosses a stretch boundary)
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum { PRETOK_GPT2 = 0, PRETOK_SMOLLM = 1 } pretok_kind;

/* The pre-tokenizer llama.cpp uses for a tokenizer.ggml.pre name (the names it maps to the
 * same regexes as "gpt-2" or "smollm"); EM_EUNSUPPORTED for any other name. */
em_status pretok_from_name(const char *name, size_t len, pretok_kind *out);

/* Walks the words of cps[0..n) in order. */
typedef struct pretok_iter {
    pretok_kind kind;
    const uint32_t *cps;
    size_t n, pos, chunk_end; /* chunk: the stretch the GPT-2 matcher may look into */
} pretok_iter;

void pretok_begin(pretok_iter *it, pretok_kind kind, const uint32_t *cps, size_t n);
/* Next word [*start, *end); returns 0 when there is none left. */
int pretok_next(pretok_iter *it, size_t *start, size_t *end);
