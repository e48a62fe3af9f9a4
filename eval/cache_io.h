/* A prompt's KV cache (entries, positions, attention statistics, local ring) written to a file
 * and read back, so that one SmolLM2 prefill can be replayed by benchmarks
 * (bench:ems_step_bench --cache) without the model. Host-endian binary, not an exchange
 * format: "EMSKV1", then n_layer, n_head_kv, hd, w_loc, n_seen, group_max (int32) and per head
 * len, loc_count, loc_newest, then k, v [len][hd], pos, s_glo, s_sq, cnt, mass [len] and the
 * w_loc ring rows [w_loc][len]. Unquantized caches only. */
#pragma once
#include "ems/kv_cache.h"

/* EM_EIO when the file cannot be written, EM_EUNSUPPORTED for a quantized head. */
em_status lc_cache_write(const ems_cache *c, const char *path);
/* A new cache (statistics collected, as a prefill leaves it); EM_EIO for a missing file,
 * EM_EINVAL for a malformed one, EM_ENOMEM. */
em_status lc_cache_read(const char *path, ems_cache **out);
