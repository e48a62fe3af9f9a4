/* Internals shared by the policy files (not part of the public API): the per-call context,
 * selection helpers and one layer function per method. A layer function compresses the due
 * heads of one layer of the local cache; cross-head methods use ems__reduce. */
#pragma once
#include <stdint.h>

#include "ems/config.h"
#include "ems/kv_cache.h"
#include "ems/policy.h"

/* Policy state kept in c->policy (one allocation: freed by ems_cache_destroy with free()). */
typedef struct ems__layer_state {
    int lazy;           /* SimLayerKV: -1 undecided, 0 no, 1 lazy */
    int len0_after;     /* local head 0 length after the last layer-level compression */
    double total_after; /* global entries of the layer after it (head-wise EMS) */
    int compressed;     /* a layer-level compression happened */
} ems__layer_state;

typedef struct ems__pstate {
    int n_layer;
    int quant_attached;
    int prefill_seen;
    ems_policy_stats st;
    ems__layer_state layer[]; /* [n_layer] */
} ems__pstate;

typedef struct ems__ctx {
    ems_cache *c;
    const ems_config *cfg;
    ems__pstate *ps;
    int phase;
    int H; /* global KV heads */
    int B; /* budget per (layer, KV head); prefill_keep at a PREFILL_CHUNK step */
    int N; /* decode / chunk trigger: compress once len >= B + N */
    const ems_reduce *red;
} ems__ctx;

/* 1 when a head holding len entries with budget B must be compressed now. */
int ems__due(const ems__ctx *x, int len, int B);
/* All-reduce through the hook (no-op for one process); EM_EUNAVAILABLE on failure. */
em_status ems__reduce(const ems__ctx *x, float *buf, size_t n);

/* Top-k of s over candidate indices [0, n): largest first, ties -> smaller index. Writes the k
 * chosen indices to out in INCREASING index order and their count (k clamped to [0, n]) to
 * *n_out. EM_ENOMEM (and *n_out = 0) when its index scratch cannot be allocated. */
em_status ems__topk(const float *s, int n, int k, int *out, int *n_out);
/* Indices [0, n) ordered by s descending, ties -> smaller index (full ranking). */
void ems__rank(const float *s, int n, int *order);
/* order[0..k) = the first k of ems__rank's order (order has room for n; the rest is scratch). */
void ems__rank_top(const float *s, int n, int k, int *order);
/* Local score: sum of the head's ring rows (the last w_loc queries), out[len]. */
void ems__local_score(const ems_head *h, float *out);
/* Newest attention row of the head (NULL when none). */
const float *ems__newest_row(const ems_head *h);
/* keep = [0, sinks) U sel[0..n_sel) U [len - w, len), sorted, deduplicated; returns count. */
int ems__keep_union(int len, int sinks, const int *sel, int n_sel, int w, int *keep);
/* Compacts h to keep[0..n) and accounts evictions. */
void ems__apply_keep(ems__ctx *x, ems_head *h, const int *keep, int n);

/* Per-method layer functions (evict.c, ems_merge.c). */
em_status ems__streaming_layer(ems__ctx *x, int l);
em_status ems__h2o_layer(ems__ctx *x, int l);
em_status ems__snapkv_layer(ems__ctx *x, int l);
em_status ems__pyramid_layer(ems__ctx *x, int l);
em_status ems__tova_layer(ems__ctx *x, int l);
em_status ems__simlayer_layer(ems__ctx *x, int l);
em_status ems__roco_layer(ems__ctx *x, int l);
em_status ems__ems_layer(ems__ctx *x, int l);

/* Pyramid budget (selected entries, excluding the window) of layer l of L; see methods.md 4.4. */
int ems__pyramid_keep(int B, int w, int n, int L, int beta, int l);
/* SnapKV pooled observation score over candidates [0, m): v = window sums, out = pooled. */
void ems__snapkv_pool(const float *v, int m, int kernel, int avg, float *out);
