/* Synthetic KV caches for the ems tests: deterministic K/V/queries per (layer, GLOBAL head,
 * token) from a hash (so a 4-head cache and two 2-head shards hold identical data), optional
 * planted redundancy (entries that are near-copies of earlier ones), and genuine attention
 * statistics from the reference attention kernel through ems_head_attn_begin. */
#pragma once
#include <stdint.h>

#include "ems/kv_cache.h"

typedef struct synth_spec {
    int n_layer, hd, G; /* G query heads per KV head */
    uint64_t seed;
    float dup_frac;   /* probability that a token's K/V copies an earlier token (+noise) */
    float dup_noise;  /* relative noise of a planted copy's key */
    float dup_vnoise; /* noise of a planted copy's value (0 = dup_noise) */
    float key_scale;  /* sharpness of attention */
    int group_max;    /* GQA reduction of statistics */
    float q_bias;     /* queries = q_bias * fixed per-head direction + uniform noise */
    int dup_src_max;  /* > 0: tokens [0, dup_src_max) are originals and later copies come
                         from them only (clusters); 0: copies of any earlier token */
} synth_spec;

/* Appends tokens [t0, t0 + n) to every local head of c and runs their n queries' attention
 * (causal) with statistics. */
void synth_step(ems_cache *c, const synth_spec *sp, int t0, int n);
/* Deterministic uniform(-1, 1) for a key. */
float synth_u(uint64_t seed, int layer, int head, int tok, int d, int kind);
/* Query of query-head g of global KV head gh at token tok, layer l into q[hd]. */
void synth_query(const synth_spec *sp, int l, int gh, int g, int tok, float *q);
/* Relative error ||o_c - o_f|| / ||o_f|| of attention outputs of n_probe fresh queries
 * (positions after the last entry) over head (l, h) of two caches. */
double synth_attn_err(const synth_spec *sp, ems_cache *cmp, ems_cache *full, int l, int h,
                      int n_probe, int probe_seed);
