/* Quantized K/V storage for a head (int8 / int4 / int2, KIVI-style, methods.md 4.6): keys per
 * channel over groups of `group` consecutive tokens, values per token over groups of channels; the
 * most recent tokens stay f32 (keys are quantized in whole groups once `residual + group` entries
 * are unquantized, so between residual and residual + group - 1 recent entries are f32).
 * Asymmetric min-max: scale = (max - min) / (2^b - 1), q = round((x - min) / scale).
 *
 * Storage: packed codes (two int4 / four int2 codes per byte) + f16 scale and zero per group (+ a
 * key-group id per entry), and the f32 rows of the residual window. That is all a quantized head
 * holds: ems_quant_attach frees the head's f32 K/V arrays, and h->k / h->v are NULL between steps.
 * Readers get f32 rows two ways, neither of them held by the head between steps:
 *   - attention: ems_quant_view dequantises every entry into a caller-owned ems_scratch (the
 *     engine keeps one per pool thread, reused by every head, layer and sequence);
 *   - policies that read or rewrite K/V (EMS's similarities and merges): ems_quant_materialize
 *     points h->k / h->v at a dequantised copy for the duration of one compression event, and
 *     ems_quant_settle writes the window rows back and frees the copy.
 * Dequantised values are what attention and the policies see, so the numbers are those of a
 * store that overwrote its f32 rows with their dequantised values.
 * Byte accounting: ems_quant_held_bytes counts exactly these arrays per entry/group/window row
 * (ems_cache_held_bytes), ems_quant_alloc_bytes their allocated capacity.
 * Called by kv_cache.c and the policies only when h->qstate != NULL. */
#pragma once
#include <stdint.h>

#include "common/status.h"
#include "ems/kv_cache.h"

/* Makes h quantized (bits 8, 4 or 2): quantizes the entries already older than the residual,
 * moves the others to the window and frees the head's f32 K/V. No-op when h is already
 * quantized. EM_EINVAL for bad parameters, EM_ENOMEM (h unchanged). */
em_status ems_quant_attach(ems_head *h, int bits, int group, int residual);
void ems_quant_free(void *qstate); /* NULL ok */
/* Copies n new f32 K/V rows (k + i*stride) to the end of the window; h->len does not include
 * them yet. EM_ENOMEM (nothing copied). */
em_status ems_quant_append(ems_head *h, const float *k, const float *v, int stride, int n);
/* After h->len grew by the rows appended: quantize whole groups that left the residual. */
em_status ems_quant_on_append(ems_head *h);
/* After ems_head_compact(h, keep, n): drop/move the quantized entries and window rows. */
void ems_quant_on_compact(ems_head *h, const int *keep, int n);
/* Entries idx[0..n) of a materialised h were rewritten in f32 (merged): re-encode the
 * quantized ones (keys with their group's scales, clamped; values with fresh per-token scales)
 * and write their dequantised values back into h->k / h->v. */
em_status ems_quant_on_update(ems_head *h, const int *idx, int n);
/* h->k / h->v := dequantised K and V of all h->len entries, until ems_quant_settle (no-op on an
 * unquantized or already materialised head). EM_ENOMEM. */
em_status ems_quant_materialize(ems_head *h);
/* Writes the window rows of a materialised h back, frees the copy, h->k = h->v = NULL. No-op
 * when h is not materialised. */
void ems_quant_settle(ems_head *h);
/* Dequantised f32 K and V of all h->len entries into s (grown as needed). EM_ENOMEM. */
em_status ems_quant_view(const ems_head *h, ems_scratch *s, const float **k, const float **v);
/* Scalar reference of one entry j < h->len of a quantized head: its K and V as attention sees
 * them (dequantised codes, or the window's f32 row). ems_quant_view must equal it bit for bit. */
void ems_quant_decode_ref(const ems_head *h, int j, float *k, float *v);
/* Bytes of KV payload (packed codes + the key-group scales still referenced + value scales +
 * f32 window): what the quality tables report (ems_cache_kv_bytes). */
uint64_t ems_quant_bytes(const ems_head *h);
/* Bytes the quantized store holds: per quantized entry ems_quant_entry_bytes, every key group's
 * scales, and the f32 window rows. ems_cache_held_bytes adds the entries' positions and
 * statistics. */
uint64_t ems_quant_held_bytes(const ems_head *h);
/* Bytes allocated by the store (capacities, the qstate itself, a materialised copy). */
uint64_t ems_quant_alloc_bytes(const ems_head *h);
/* Bytes per quantized entry for hd channels: K and V codes, key group id, value zero + scale. */
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
