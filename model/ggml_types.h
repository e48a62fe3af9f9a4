/* The ggml tensor type table of the GGUF format: name, elements per block and bytes per block
 * of every type id a GGUF file may carry. The reader sizes (and bounds-checks) every tensor
 * with it, so a file holding a type emserve cannot compute with still opens and the model
 * loader can name the tensor and its type in a clear error. */
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct ggml_type_info {
    const char *name; /* "q4_K" etc.; NULL for an unknown id */
    uint32_t block_elems;
    uint32_t block_bytes;
} ggml_type_info;

/* Info of type id t; .name == NULL when t is not a ggml type id we know. */
ggml_type_info ggml_type_get(uint32_t t);
