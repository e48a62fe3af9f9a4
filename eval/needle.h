/* Needle-in-a-haystack, document-QA and summary prompts for the long-context harness
 * (eval/longctx): a haystack of real prose read from text files Debian ships (named in the output),
 * a one-sentence fact (the needle) inserted at a depth of it at a sentence boundary, SmolLM2's
 * ChatML with its default system message and the question at the end; answers scored by
 * case-insensitive containment (needle) or exact match / token F1 (QA, SQuAD-style
 * normalisation: lower case, punctuation and articles dropped, whitespace collapsed). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/tokenizer.h"

/* One needle: the sentence inserted, the question asked, the one-word answer looked for. */
typedef struct nd_needle {
    const char *fact, *question, *answer;
} nd_needle;

/* The built-in needles (distinct facts, none of them in the licences); *n gets the count. */
const nd_needle *nd_needles(int *n);

/* A haystack: the files' texts concatenated (blank line between), and their base names
 * joined by '+' (e.g. "GPL-3+GFDL-1.3") in `sources`. */
typedef struct nd_haystack {
    char *text;
    size_t len;
    char sources[256];
} nd_haystack;

/* Reads the files (at most 8); a missing or empty file: EM_EIO with its path in err. */
em_status nd_haystack_load(const char *const *paths, int n_paths, nd_haystack *h, char *err,
                           size_t errlen);
void nd_haystack_free(nd_haystack *h);

/* The needle prompt of about `tokens` tokens (at most that many): the start of the haystack,
 * cut at a sentence boundary, with nd->fact inserted at the sentence boundary nearest to
 * `depth` (0 = first sentence, 1 = after the last) of the used part. *ids (caller frees) gets the
 * ids with special tokens parsed. Too few haystack tokens for `tokens`: EM_EINVAL. */
em_status nd_needle_prompt(const tokenizer *tok, const nd_haystack *h, const nd_needle *nd,
                           int tokens, double depth, int32_t **ids, int *n);

/* The QA prompt: the whole document, then the question; asks for a short answer copied from
 * the document. */
em_status nd_qa_prompt(const tokenizer *tok, const char *doc, size_t doc_len, const char *question,
                       int32_t **ids, int *n);

/* The summary prompt: the document (doc_len bytes of it), then the request for a summary of two
 * or three sentences saying what it covers. */
em_status nd_summary_prompt(const tokenizer *tok, const char *doc, size_t doc_len, int32_t **ids,
                            int *n);

/* 1 when `word` occurs in text, ignoring case (ASCII). */
int nd_contains(const char *text, const char *word);

/* SQuAD-style exact match (0/1) and token F1 (0..1) of a prediction against one reference. */
double nd_exact_match(const char *pred, const char *ref);
double nd_token_f1(const char *pred, const char *ref);
