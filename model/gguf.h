/* GGUF v3 reader: memory-maps a file and validates every header field, count, offset, type and
 * shape before anything is used. A truncated, corrupt or hostile file yields EM_EINVAL/EM_EIO
 * with a message, never a crash or an out-of-bounds read. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12
} gguf_type;

/* ggml tensor type ids used by name in the code (model/ggml_types.h has the whole table;
 * the model loader says which types it computes with). */
enum {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q6_K = 14
};

typedef struct gguf_str {
    uint64_t len;
    const char *data; /* points into the mapping, NOT NUL-terminated */
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_type type;
    gguf_type arr_type; /* for arrays */
    uint64_t arr_len;   /* for arrays */
    const uint8_t *val; /* raw little-endian value (scalars) or first element (arrays) */
} gguf_kv;

typedef struct gguf_tensor_info {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[4]; /* ne[0] fastest; unused dims are 1 */
    uint32_t type;
    uint64_t offset; /* relative to the data section */
    size_t nbytes;
    const void *data; /* validated pointer into the mapping */
} gguf_tensor_info;

typedef struct gguf_file {
    void *map;
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;               /* [n_kv] */
    gguf_tensor_info *tensors; /* [n_tensors] */
} gguf_file;

/* Opens and validates path; on failure writes a one-line reason to err and returns non-OK. */
em_status gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);
/* Same on a caller-owned buffer (not copied; must outlive the gguf_file). Used by fuzz tests. */
em_status gguf_open_buffer(const void *buf, size_t size, gguf_file **out, char *err, size_t errlen);
void gguf_close(gguf_file *f); /* NULL ok */

/* Lookups (NULL when absent or of another type). */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name);
/* Scalar getters: return EM_OK and write *v when key exists with a compatible integer/float type.
 */
em_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *v);
em_status gguf_get_f32(const gguf_file *f, const char *key, float *v);
/* i-th string of a string array, or the string value itself when i == 0 and it is a string. */
em_status gguf_get_arr_str(const gguf_file *f, const gguf_kv *kv, uint64_t i, gguf_str *s);
/* All strings of a string array at once (out has kv->arr_len slots): O(total length). */
em_status gguf_get_arr_strs(const gguf_kv *kv, gguf_str *out);
