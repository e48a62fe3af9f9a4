/* Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG.
 * Order (llama.cpp's): repetition penalty -> temperature 0 ? argmax : top-k -> softmax ->
 * top-p -> min-p -> draw. Deterministic for a given seed. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct sampler_params {
    float temperature;        /* 0 = greedy; default 1.0 */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off; (0, 1] */
    float min_p;              /* 0 = off; [0, 1) */
    float repetition_penalty; /* 1 = off; (0, 10] */
    int repetition_last_n;    /* tokens of history the penalty looks at; default 64 */
    uint64_t seed;
} sampler_params;

void sampler_params_default(sampler_params *p);
/* EM_EINVAL with a message naming the field when a value is out of range or not finite. */
em_status sampler_params_validate(const sampler_params *p, char *err, size_t errlen);

typedef struct sampler {
    sampler_params p;
    uint64_t rng;
    int n_vocab;
    int *idx;    /* [n_vocab] scratch */
    float *prob; /* [n_vocab] scratch */
} sampler;

em_status sampler_init(sampler *s, const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);

/* Picks the next token. logits[n_vocab] is modified (penalty, temperature). history = the
 * ids seen so far (prompt + generated), used by the repetition penalty. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, int n_hist);

/* Greedy pick (ties: lowest id), exposed for tests and the golden checks. */
int32_t sampler_argmax(const float *logits, int n);
