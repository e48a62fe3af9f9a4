/* Golden outputs of the stories260K test model (shared/models/README.md: an independent f32
 * reference implementation, greedy): prompt ids, top-5 logits after the prompt, and the greedy
 * continuation. One copy for the engine, CUDA and service tests. */
#pragma once
#include <stdint.h>

typedef struct tu_golden {
    const char *prompt;
    int32_t prompt_ids[16]; /* with BOS */
    int n_prompt;
    int32_t top5_id[5];
    float top5_logit[5]; /* agree to ~1e-3 absolute in f32 */
    int32_t ids[60];     /* greedy continuation */
    int n_ids;
} tu_golden;

#define TU_N_GOLDENS 2
/* [0] "Once upon a time" (60 ids), [1] "Lily and Ben went to the park. They saw a" (40 ids). */
extern const tu_golden tu_goldens[TU_N_GOLDENS];
