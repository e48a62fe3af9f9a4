/* Load-time sanity of a model's numbers (issue 12 item 7: corrupt files that loaded produced
 * garbage ids without an error): hyper-parameters within the ranges the engine can run, and no
 * NaN or Inf in any weight - every element of the f32 and f16 tensors (norm vectors included),
 * and every block scale of the quantized ones (a quantized element is finite when its scales
 * are). Called by model_load; a clear error names the tensor. */
#pragma once
#include <stddef.h>

#include "common/status.h"

struct model;
struct model_hparams;

/* Ranges: context <= MODEL_MAX_CTX, vocabulary, dim, FFN <= MODEL_MAX_DIM (products fit int),
 * KV heads <= heads, BOS/EOS/UNK within the vocabulary. EM_EINVAL with a message. */
#define MODEL_MAX_CTX (1 << 20)
#define MODEL_MAX_DIM (1 << 16)
em_status model_check_hparams(const struct model_hparams *hp, char *err, size_t errlen);

/* EM_EINVAL naming the first tensor that holds a NaN or Inf (scanned as stored). */
em_status model_check_finite(const struct model *m, char *err, size_t errlen);
