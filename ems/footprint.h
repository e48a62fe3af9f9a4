/* The KV memory one sequence holds under an ems_config, computed from the config and the model's
 * shape alone (no cache, no policy code): bytes per entry, and the most entries and bytes a
 * worker holding some of the KV heads can hold for the sequence until it has been fed a given
 * number of tokens. The coordinator's KV memory budget admits requests with it; tests check it
 * against ems_cache_held_bytes of real caches (tests/ems/footprint_test.c).
 *
 * The peak, per (layer, KV head), for a sequence with a prompt of P tokens fed until E tokens:
 *   full                    E (every token stays)
 *   SimLayerKV              E (layers that are not lazy keep every token)
 *   other methods           max(prefill, B + N), at most E, where B = ems_config_budget at E,
 *                           N = ems_config_every (a head is compressed back to its budget once
 *                           it holds B + N: the newest entry is appended before the policy runs)
 *                           and prefill = P until the first generated token is fed (the prompt
 *                           is fed in chunks and compressed once complete; P + 1 with
 *                           compress_prefill=0, which leaves it to the first decode step)
 *   bounded prefill         with prefill_keep = K > 0 and a known chunk C (the most tokens one
 *                           step feeds the sequence), prefill = min(P, K + S + C) (+ 1 as above),
 *                           S = ems_config_prefill_slack: after each chunk a head holding more
 *                           than K + S is compressed back to K, so it holds at most K + S before
 *                           a chunk and K + S + C after it (PyramidKV: K -> its largest layer
 *                           budget at K; EMS head-wise: the layer's worker heads hold at most
 *                           H (K + S + 1 + C) - (H - h) (w + F), w and F at K)
 *   PyramidKV               B_l + N with B_l the largest budget layer l can get (ems/evict.c)
 *   EMS head-wise budgets   per layer, the worker's heads together hold at most
 *                           H (B + N) - (H - h) (w + F): the layer's total over all H heads is
 *                           compressed back to H B once it reaches H (B + N), and each of the
 *                           other H - h heads keeps at least its window w and floor F. */
#pragma once
#include <stdint.h>

#include "ems/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ems_footprint_shape {
    int n_layer, hd;
    int n_head_kv;    /* KV heads of the model */
    int n_head_local; /* KV heads the worker holds (1 .. n_head_kv) */
    int chunk;        /* most prompt tokens one step feeds a sequence (the scheduler's prefill
                       * chunk); 0 = unknown: prefill_keep is not counted (the whole prompt) */
} ems_footprint_shape;

/* Bytes one entry of one head holds under cfg: position, the policies' statistics, the
 * local-ring column and K and V -- f32, or for a quantized config the packed codes and scales
 * of a quantized entry (ems_cache_held_bytes counts the same arrays). */
uint64_t ems_footprint_entry_bytes(const ems_config *cfg, int hd);
/* Bytes one newly appended entry holds until it is quantized (f32 K and V in the residual
 * window, or in the unquantized prompt): ems_footprint_entry_bytes without quantization. */
uint64_t ems_footprint_append_bytes(const ems_config *cfg, int hd);

/* Most entries (summed over layers and the worker's heads) held at any point until n_end tokens
 * have been fed. prompt_ahead = 1 until the first generated token has been fed: the prompt, fed
 * in chunks, is held whole until it is compressed at its end (compress_prefill=1) or at the first
 * decode step (compress_prefill=0), so until then its uncompressed size may still lie ahead. */
int64_t ems_footprint_peak_entries(const ems_config *cfg, const ems_footprint_shape *sh,
                                   int n_prompt, int n_end, int prompt_ahead);

/* The same in bytes: peak entries x entry bytes; for a quantized config plus each head's f32
 * residual window (residual + group - 1 rows at most) and the key-group scales it accumulates
 * over n_end tokens (one group of scales per quant_group tokens, never freed), and at least the
 * prompt in f32 while prompt_ahead (quantization attaches at the first policy step). */
uint64_t ems_footprint_peak_bytes(const ems_config *cfg, const ems_footprint_shape *sh,
                                  int n_prompt, int n_end, int prompt_ahead);

/* PyramidKV's selected entries (budget minus window) of layer l of L for a head of n entries
 * (methods.md 4.4); the policy (ems/evict.c) uses the same function. */
int ems_pyramid_keep(int B, int w, int n, int L, int beta, int l);

#ifdef __cplusplus
}
#endif
