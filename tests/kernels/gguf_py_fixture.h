/* Expected values produced by gguf-py (tests/kernels/gguf_py_fixture.py writes
 * gguf_py_fixture.c): dequantised rows of the real SmolLM2 Q4_1 model and of synthetic
 * Q4_0/Q4_K/Q6_K blocks, and gguf-py's quantisation of fixed random rows. */
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct gpf_dequant_case {
    const char *what;
    int dtype; /* ggml type id = kern_dtype */
    int cols;
    const uint8_t *bytes; /* one row in dtype */
    size_t nbytes;
    const float *want; /* [cols], gguf.quants.dequantize */
} gpf_dequant_case;

typedef struct gpf_quant_case {
    const char *what;
    int dtype;
    int cols;
    const float *x;       /* [cols] input */
    const uint8_t *bytes; /* gguf.quants.quantize(x) */
    size_t nbytes;
} gpf_quant_case;

extern const gpf_dequant_case gpf_dequant[];
extern const int gpf_n_dequant;
extern const gpf_quant_case gpf_quant[];
extern const int gpf_n_quant;
