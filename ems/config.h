/* The request-level KV-compression configuration: which policy (method), its budget, window,
 * sinks and every method parameter, and the optional int8/int4 quantization. The engine, the
 * command-line tools and the gRPC service pass this struct through unchanged; ems_policy_step
 * (ems/policy.h) interprets it. Every parameter has a documented default (ems_config_help);
 * details that methods.md marks as inferred or unknown are parameters, never hidden constants. */
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    EMS_METHOD_FULL = 0,     /* no compression */
    EMS_METHOD_STREAMINGLLM, /* sinks + recent */
    EMS_METHOD_H2O,          /* accumulated attention (global score) + recent window */
    EMS_METHOD_SNAPKV,       /* observation-window score, pooled, + recent window */
    EMS_METHOD_PYRAMIDKV,    /* SnapKV scoring with pyramidal per-layer budgets */
    EMS_METHOD_TOVA,         /* attention of the newest query, per layer (or per head) */
    EMS_METHOD_SIMLAYERKV,   /* lazy layers trimmed to initial + recent */
    EMS_METHOD_ROCO,         /* EasyKV RoCo: mean score inside a std-aware eviction scope */
    EMS_METHOD_EMS,          /* Global-Local score, evict-then-merge, zero class, head-wise */
    EMS_METHOD_COUNT
} ems_method;

/* Largest ring of recent attention rows a config may ask for (the engine's row buffer). */
#define EMS_MAX_W_LOC 256

typedef enum {
    EMS_QUANT_NONE = 0,
    EMS_QUANT_INT8 = 8,
    EMS_QUANT_INT4 = 4,
    EMS_QUANT_INT2 = 2
} ems_quant_kind;

/* EMS choices (methods.md 1.3-1.6, 1.14). */
typedef enum { EMS_ALIGN_MAX = 0, EMS_ALIGN_RATIO, EMS_ALIGN_SHIFT } ems_align_mode;
typedef enum { EMS_SCORE_GL = 0, EMS_SCORE_GLOBAL, EMS_SCORE_LOCAL } ems_score_mode;
typedef enum { EMS_STRAT_EVICT_MERGE = 0, EMS_STRAT_EVICT, EMS_STRAT_MERGE } ems_strategy;
typedef enum { EMS_SIM_KV = 0, EMS_SIM_K } ems_sim_mode;
typedef enum { EMS_SPLIT_THRESHOLD = 0, EMS_SPLIT_PLACEHOLDER } ems_split_rule;
typedef enum { EMS_KMERGE_DIRNORM = 0, EMS_KMERGE_MEAN } ems_key_merge;
typedef enum { EMS_MW_SCORE = 0, EMS_MW_UNIFORM } ems_merge_weight;

typedef struct ems_config {
    ems_method method;
    int budget;           /* entries kept per (layer, KV head); 0 = use budget_frac */
    float budget_frac;    /* budget as a fraction of the context length (when budget == 0) */
    int window;           /* recent entries kept verbatim; -1 = method default */
    int sinks;            /* first entries always kept; -1 = method default */
    int w_loc;            /* local query window (rows of recent attention kept); -1 = default */
    int compress_every;   /* decode: compress a head once it holds budget + N; 0 = method default */
    int compress_prefill; /* 1: compress at the end of prefill */
    int prefill_keep;     /* prompt fed in chunks: compress a head back to this many entries
                           * once it holds more than prefill_keep + slack; 0 = off */
    int prefill_slack;    /* that slack; -1 = prefill_keep (see ems_config_prefill_slack) */
    int group_max;        /* GQA reduction of statistics: 0 mean over the query group, 1 max */

    /* quantization (any method) */
    ems_quant_kind quant;
    int quant_group;    /* keys: tokens per group (per channel); values: channels per group */
    int quant_residual; /* most recent entries kept f32 */

    /* EMS */
    ems_score_mode ems_score;
    ems_align_mode ems_align;
    float ems_lambda;   /* weight of the global term for align ratio/shift */
    float ems_gw;       /* weight on the global term in align max */
    int ems_glo_mean;   /* 1: s_Glo divided by the number of queries that saw the entry */
    int ems_window_div; /* default window = clamp(round(B / div), 1, B - 1) */
    ems_strategy ems_strategy;
    ems_split_rule ems_split;
    ems_sim_mode ems_sim;
    float ems_tau; /* zero-class similarity threshold */
    ems_key_merge ems_key_merge;
    ems_merge_weight ems_merge_weight;
    int ems_headwise;    /* head-wise adaptive budgets inside a layer */
    float ems_floor;     /* head-wise: each head first gets round(floor * (B - w)) entries */
    int ems_zero_class;  /* 1: one batched scatter over all heads; 0: two per-head passes */
    int ems_prop_attn;   /* 1: attention adds log(mass) to a merged entry's logit (inferred) */
    int ems_pool;        /* max-pool the score over this many neighbouring entries (odd; 1 = off) */
    int ems_pool_decode; /* 1: ems_pool also at decode-time steps; 0: at the prefill-end step only
                          */

    /* SnapKV / PyramidKV */
    int snapkv_kernel;  /* pooling kernel (odd) */
    int snapkv_avgpool; /* 0 maxpool, 1 avgpool */
    int pyramid_beta;

    /* TOVA */
    int tova_per_head; /* 0: one selection per layer (official), 1: per head */

    /* SimLayerKV */
    float slk_delta; /* lazy threshold on attention mass (initial + recent) */
    int slk_initial; /* initial entries kept in lazy layers */
    int slk_recent;  /* recent entries kept in lazy layers; -1 = budget - initial */
    int slk_prefill; /* 0: decide on the first decode step (official); 1: prefill variant */
    int slk_n_last;  /* prefill variant: last queries averaged */
    int slk_span;    /* prefill variant: tokens preceding each query counted */
    int slk_retrim;  /* 1: lazy layers are re-trimmed whenever over budget + N */

    /* RoCo (EasyKV) */
    float roco_recent_ratio; /* eviction scope size = budget - ratio*budget - sinks */
    int roco_sinks;
    int roco_protect; /* last entries never evicted */
    int roco_stride;  /* entries evicted per iteration; 0 = all at once (batched) */
    int roco_acc;     /* importance: 0 mean attention s_glo / cnt (EasyKV), 1 accumulated s_glo */
    int roco_std_top; /* scope: -1 EasyKV's (K smallest std); r >= 0: all but the r largest std */

    /* SimLayerKV extensions (ablations) */
    int slk_test;  /* lazy test: 0 mass on initial + recent (official), 1 token importance */
    int slk_inner; /* non-lazy layers: EMS_METHOD_FULL (kept whole, official), or compressed by
                      EMS_METHOD_EMS / _H2O / _SNAPKV at the same budget */
} ems_config;

/* Fills every field with its documented default (method full, no quantization). */
void ems_config_default(ems_config *cfg);

/* Sets one field from text. Keys: "method", "budget", "budget_frac", "quant", "window", ...
 * and every method parameter ("ems.tau", "snapkv.kernel", ...; see ems_config_help).
 * Unknown key, unknown method or a bad value -> EM_EINVAL with a message naming the field in
 * err (cfg unchanged). */
em_status ems_config_set(ems_config *cfg, const char *key, const char *value, char *err,
                         size_t errlen);
/* "key=value" form of ems_config_set. */
em_status ems_config_set_kv(ems_config *cfg, const char *kv, char *err, size_t errlen);

/* Rejects invalid combinations (window >= budget, no budget for a compressing method, ...). */
em_status ems_config_validate(const ems_config *cfg, char *err, size_t errlen);

/* The command-line form shared by the tools: --kv-method NAME, --kv-budget N,
 * --kv-quant int8|int4|int2, --kv-param KEY=VALUE. Returns 0 when flag is none of them; otherwise
 * 1, with *st = the result of applying value (EM_EINVAL with a message in err). */
int ems_config_cli(ems_config *cfg, const char *flag, const char *value, em_status *st, char *err,
                   size_t errlen);
/* Usage lines of those flags. */
void ems_config_cli_usage(FILE *f);

/* Lists every method and every parameter with its default. */
void ems_config_help(FILE *f);

/* Short text form of the non-default fields, e.g. "ems B=32 quant=int4 ems.tau=0.5". */
void ems_config_describe(const ems_config *cfg, char *buf, size_t len);

const char *ems_method_name(ems_method m);
/* EM_EINVAL for an unknown name. */
em_status ems_method_parse(const char *name, ems_method *out);

/* EMS score pooling in effect at a step (ems.pool, or 1 at decode unless ems.pool_decode). */
int ems_config_pool(const ems_config *cfg, int prefill_end);
/* Rows of recent attention the engine must keep per head (size of the local ring). */
int ems_config_w_loc(const ems_config *cfg);
/* SimLayerKV's config for its non-lazy layers (simlayerkv.inner): cfg with method = the inner
 * method (EMS_METHOD_FULL when none, or when cfg is not SimLayerKV), every other field kept. */
void ems_config_slk_inner(const ems_config *cfg, ems_config *inner);
/* 1 when attention statistics must be collected during attention. */
int ems_config_wants_stats(const ems_config *cfg);

/* Resolved per-compression values (method defaults applied) for a head budget B. */
int ems_config_window(const ems_config *cfg, int B);
int ems_config_sinks(const ems_config *cfg);
int ems_config_every(const ems_config *cfg);
/* Entries a head may hold beyond prefill_keep before a prefill-chunk step compresses it
 * (prefill_slack, or prefill_keep when -1); 0 when prefill_keep is off. */
int ems_config_prefill_slack(const ems_config *cfg);
/* Budget for a context of n_ctx tokens (budget or budget_frac); 0 for method full. */
int ems_config_budget(const ems_config *cfg, int n_ctx);

#ifdef __cplusplus
}
#endif
