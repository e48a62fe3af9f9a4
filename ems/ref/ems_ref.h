/* Scalar reference policies: readable, single-head (or whole-layer) and unoptimised. They are
 * the specification the fast policies (ems_policy_step) are tested against: same kept entries,
 * same merged values. Every function sees ALL KV heads of a layer in one process (no reduce).
 * Functions returning a keep set write ascending entry indices and return their count. */
#pragma once
#include "ems/config.h"
#include "ems/kv_cache.h"

/* StreamingLLM: [0, sinks) + the last B - sinks entries. */
int ems_ref_streaming(int len, int B, int sinks, int *keep);
/* H2O: top B - w of s_glo over [0, len - w) + the last w. */
int ems_ref_h2o(const ems_head *h, int B, int w, int *keep);
/* SnapKV: window sums of the ring rows over [0, len - w), pooled (kernel, max/avg), top B - w,
 * + the last w. PyramidKV uses it with the layer's budget. */
int ems_ref_snapkv(const ems_head *h, int B, int w, int kernel, int avg, int *keep);
/* PyramidKV: selected entries (excluding the window) of layer l of L. */
int ems_ref_pyramid_budget(int B, int w, int n, int L, int beta, int l);
/* TOVA per head: top B by the newest row. Per layer: top B by the mean newest row of heads. */
int ems_ref_tova_head(const ems_head *h, int B, int *keep);
int ems_ref_tova_layer(ems_head *const *heads, int H, int B, int *keep);
/* RoCo: evict `stride` (0 = all at once) lowest-importance entries (mean attention, or
 * accumulated with roco.score=acc) inside the scope of the smallest std (EasyKV's size, or all
 * but the roco.std_top largest std), repeatedly, until B entries remain. */
int ems_ref_roco(const ems_head *h, const ems_config *cfg, int B, int stride, int *keep);
/* SimLayerKV lazy test of one layer (decode variant: newest rows; prefill variant per cfg;
 * simlayerkv.test = recent or importance). */
int ems_ref_simlayer_lazy(ems_head *const *heads, int H, const ems_config *cfg, int B);
/* Entries a lazy SimLayerKV head keeps: initial + recent, or (test importance) initial + top
 * B - initial - w by accumulated attention + the last w (w = window, default 8). */
int ems_ref_simlayer_keep(const ems_head *h, const ems_config *cfg, int B, int *keep);
/* EMS compression of one layer (all H heads, all due), applied in place with two sequential
 * per-head passes (evict, then merge). Budget B, cfg as for ems_policy_step with the score
 * pooling of the step's phase in cfg->ems_pool (ems_config_pool). */
void ems_ref_ems_layer(ems_head *const *heads, int H, const ems_config *cfg, int B);
/* EMS score of candidates [lo, hi) of h (for tests). */
void ems_ref_ems_score(const ems_config *cfg, const ems_head *h, int lo, int hi, float *s);
