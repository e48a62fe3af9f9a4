/* Quantized K/V storage for a head (int8 / int4, KIVI-style, methods.md 4.6): keys per channel
 * over groups of `group` consecutive tokens, values per token over groups of channels; the most
 * recent tokens stay f32 (keys are quantized in whole groups once `residual + group` entries
 * are unquantized, so between residual and residual + group - 1 recent entries are f32).
 * Asymmetric min-max: scale = (max - min) / (2^b - 1), q = round((x - min) / scale).
 *
 * Storage: packed codes (two int4 codes per byte) + f16 scale and zero per group, f32 residual.
 * The head's f32 arrays k/v are overwritten with the dequantised values of quantized entries,
 * so policies (scores, merging) see exactly what attention sees; attention reads the
 * dequantising view (ems_quant_view), which decodes the packed codes. Byte accounting
 * (ems_quant_bytes) counts the packed representation only.
 * Called by kv_cache.c only when h->qstate != NULL. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/kv_cache.h"

/* Makes h quantized (bits 8 or 4) and quantizes the entries already older than the residual.
 * No-op when h is already quantized. EM_EINVAL for bad parameters. */
em_status ems_quant_attach(ems_head *h, int bits, int group, int residual);
void ems_quant_free(void *qstate); /* NULL ok */
/* After entries were appended to h (f32 rows at the end): quantize what left the residual. */
em_status ems_quant_on_append(ems_head *h);
/* After ems_head_compact(h, keep, n): drop/move the quantized rows accordingly. */
void ems_quant_on_compact(ems_head *h, const int *keep, int n);
/* Entries idx[0..n) of h were rewritten in f32 (merged): re-encode the quantized ones (keys with
 * their group's scales, clamped; values with fresh per-token scales). */
em_status ems_quant_on_update(ems_head *h, const int *idx, int n);
/* Dequantised f32 K and V for all h->len entries (scratch owned by h). */
em_status ems_quant_view(ems_head *h, const float **k, const float **v);
/* Bytes held by K and V of this head (packed codes + scales + f32 residual). */
uint64_t ems_quant_bytes(const ems_head *h);
/* Bytes of memory the quantized store adds to the head's f32 entries: packed K/V codes, key
 * group ids and value scales of every entry, the key-group scales, and the dequantised view
 * (K and V, f32, one row per entry). See ems_cache_held_bytes. */
uint64_t ems_quant_held_bytes(const ems_head *h);
/* The same per entry (without the key-group scales), for a quantized head of hd channels. */
uint64_t ems_quant_entry_bytes(int bits, int group, int hd);
/* Number of quantized entries (a prefix [0, n) of the head). */
int ems_quant_count(const ems_head *h);
/* Entries quantized since the head became quantized (a running total: entries later dropped or
 * merged stay counted). */
int64_t ems_quant_coded(const ems_head *h);

/* Scalar codec used by the store (exposed for tests): min and scale of n values x[i*stride]
 * for bits b, rounded to f16 as stored; ems_quant_code gives a value's code. */
void ems_quant_minmax(const float *x, int n, int stride, int bits, float *zero, float *scale);
uint8_t ems_quant_code(float x, float zero, float scale, int bits);
