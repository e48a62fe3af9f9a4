/* Test models with a changed vocabulary: copies a GGUF file with one piece of
 * tokenizer.ggml.tokens replaced (weights and every other field unchanged), e.g. to give the
 * stories260K model a piece longer than any text buffer of the detokenizing path. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* Writes src to dst with piece `id` replaced by a text of at least min_len bytes (ASCII and
 * two-byte UTF-8 characters, no "▁", so it decodes to itself; its length keeps the data
 * section aligned). The piece is written to piece[cap] (NUL-terminated). Errors (a message on
 * stderr): gguf_open's, EM_EINVAL without piece `id` or room in piece, EM_EIO when dst cannot be
 * written. */
em_status tu_gguf_replace_piece(const char *src, const char *dst, int32_t id, size_t min_len,
                                char *piece, size_t cap);
