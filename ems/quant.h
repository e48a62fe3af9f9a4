/* Quantized K/V storage for a head (int8 / int4, KIVI-style: keys per channel over groups of
 * tokens, values per token over groups of channels; the most recent tokens stay f32).
 * Called by kv_cache.c only when h->qstate != NULL. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/kv_cache.h"

void ems_quant_free(void *qstate); /* NULL ok */
/* After entries were appended to h (f32 rows at the end): quantize what left the residual. */
em_status ems_quant_on_append(ems_head *h);
/* After ems_head_compact(h, keep, n): drop/move the quantized rows accordingly. */
void ems_quant_on_compact(ems_head *h, const int *keep, int n);
/* Dequantised f32 K and V for all h->len entries (scratch owned by h). */
em_status ems_quant_view(ems_head *h, const float **k, const float **v);
/* Bytes held by K and V of this head (packed codes + scales + f32 residual). */
uint64_t ems_quant_bytes(const ems_head *h);
