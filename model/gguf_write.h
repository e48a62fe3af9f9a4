/* GGUF v3 writer: collects metadata and tensor descriptions, then writes the header and the
 * tensor data, either from caller buffers or produced one tensor at a time by a callback (so a
 * multi-GB model never needs to sit in memory). Also exposes the little-endian byte builder
 * that tests use to hand-craft truncated, corrupt and hostile files. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

/* Growable byte buffer; after an allocation failure `oom` is set and further puts are no-ops. */
typedef struct gguf_buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} gguf_buf;
void gguf_buf_put(gguf_buf *b, const void *data, size_t n);
void gguf_buf_u32(gguf_buf *b, uint32_t v);
void gguf_buf_u64(gguf_buf *b, uint64_t v);
void gguf_buf_str(gguf_buf *b, const char *s); /* u64 length + bytes (no NUL) */
void gguf_buf_pad(gguf_buf *b, size_t align);  /* zero bytes up to a multiple of align */
void gguf_buf_free(gguf_buf *b);

/* Bytes of a tensor with n elements of ggml type `type` (f32, f16 and the block types of
 * kernels/quant.h: q4_0, q4_1, q8_0, q4_k, q6_k); 0 when unknown or when n is not a multiple of
 * the block size. */
size_t gguf_type_nbytes(uint32_t type, uint64_t n);

typedef struct gguf_writer gguf_writer;

/* alignment: data alignment used for layout (a power of two; GGUF default 32). The caller adds
 * the general.alignment key itself when it wants one (tests may deliberately omit or falsify it).
 */
em_status gguf_writer_create(uint32_t alignment, gguf_writer **out);
void gguf_writer_free(gguf_writer *w); /* NULL ok */

/* Metadata, written in the order added. Keys and strings are copied. */
em_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
em_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
em_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
em_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
em_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
em_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
em_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v,
                                  uint64_t n);
em_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
em_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);

/* Adds a tensor (ne[0] fastest, unused dims ignored). data: nbytes (gguf_type_nbytes) bytes,
 * borrowed until the write, or NULL to have the write callback produce it. */
em_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, uint32_t type, const void *data);

/* Produces tensor idx (in add order) into dst (nbytes). Non-OK aborts the write. */
typedef em_status (*gguf_fill_fn)(void *user, int idx, const char *name, void *dst, size_t nbytes);

/* Writes the whole file; fill may be NULL when every tensor has data. */
em_status gguf_writer_write_file(const gguf_writer *w, const char *path, gguf_fill_fn fill,
                                 void *user, char *err, size_t errlen);
/* Same into a malloc'd buffer (*buf, *size) that the caller frees. */
em_status gguf_writer_write_mem(const gguf_writer *w, gguf_fill_fn fill, void *user, void **buf,
                                size_t *size, char *err, size_t errlen);
