/* The SmolLM2-135M-Instruct goldens of tests/testutil/smollm2_goldens.txt, produced by the
 * independent NumPy reference tools/ref/numpy_llama.py (not emserve): per prompt and activation
 * mode (f32 or q8), the prompt ids, the top-5 logits after the prompt, the greedy ids, how many
 * of them are stable under perturbed float arithmetic (agree_steps) and the logit wobble that
 * perturbation causes (prompt_dlogit). */
#pragma once
#include <stdint.h>

#define SG_MAX_IDS     512
#define SG_MAX_RECORDS 32

typedef struct sg_record {
    char name[64];
    char mode[8]; /* "f32" or "q8" */
    int32_t prompt_ids[SG_MAX_IDS];
    int n_prompt;
    int32_t top5_id[5];
    float top5_logit[5];
    int32_t greedy[SG_MAX_IDS];
    int n_greedy;
    int stopped;     /* the last greedy id is <|im_end|> */
    int agree_steps; /* leading greedy ids safe to compare exactly */
    float prompt_dlogit;
    float min_margin;
    char text[1024]; /* greedy ids decoded (escapes resolved) */
} sg_record;

typedef struct sg_goldens {
    sg_record rec[SG_MAX_RECORDS];
    int n;
} sg_goldens;

/* Parses the file; 0 on success, else prints why and returns 1 (a malformed file is a test
 * failure, not a skip). */
int sg_load(const char *path, sg_goldens *g);
