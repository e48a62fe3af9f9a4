/* ROUGE-1, ROUGE-2 and ROUGE-L F1 of a prediction against one reference (the scalar reference
 * implementation; no stemming, no stop words). Tokens: maximal runs of ASCII letters and digits,
 * lower-cased (every other byte separates tokens, as in Google's rouge_score tokenizer).
 * ROUGE-N: clipped n-gram overlap (each reference n-gram matched at most as often as it occurs),
 * P = overlap / pred n-grams, R = overlap / ref n-grams, F1 = 2PR / (P + R), 0 when the overlap
 * is 0. ROUGE-L: the same F1 with the longest common subsequence (not substring) of the token
 * sequences as the overlap. Identical token sequences (both empty included) score 1 on all three
 * (so a single-token text agrees with itself on ROUGE-2 too). */
#pragma once
#include "common/status.h"

typedef struct rouge_f {
    double r1, r2, rl;
} rouge_f;

/* EM_ENOMEM when scratch cannot be allocated (out is then zeroed). */
em_status rouge_score(const char *pred, const char *ref, rouge_f *out);
