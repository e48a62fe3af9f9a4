/* ems_config: defaults, the parameter table (key, type, range, default, help), parsing of
 * key=value settings, validation of combinations and the --help listing. One table drives
 * parsing, help and description so a parameter cannot exist in one and not the others. */
#include "ems/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_method_names[EMS_METHOD_COUNT] = {
    "full", "streamingllm", "h2o", "snapkv", "pyramidkv", "tova", "simlayerkv", "roco", "ems"};

static const char *const g_method_help[EMS_METHOD_COUNT] = {
    "no compression (quantization still allowed)",
    "StreamingLLM: first `sinks` entries + most recent (budget - sinks)",
    "H2O: top (budget - window) by accumulated attention + `window` recent",
    "SnapKV: observation-window attention (last `window` queries), pooled, top-k + window",
    "PyramidKV: SnapKV scoring with arithmetic per-layer budgets (mean = budget)",
    "TOVA: top `budget` by the newest query's attention (per layer by default)",
    "SimLayerKV: lazy layers (attention mass on initial+recent > delta) keep initial+recent",
    "RoCo (EasyKV): evict lowest mean attention inside a std-aware eviction scope",
    "EMS: Global-Local score, evict-then-merge into class centres, zero class, head-wise "
    "budgets"};

const char *ems_method_name(ems_method m)
{
    return (m >= 0 && m < EMS_METHOD_COUNT) ? g_method_names[m] : "?";
}

em_status ems_method_parse(const char *name, ems_method *out)
{
    for (int i = 0; i < EMS_METHOD_COUNT; i++) {
        if (strcmp(name, g_method_names[i]) == 0) {
            *out = (ems_method)i;
            return EM_OK;
        }
    }
    return EM_EINVAL;
}

/* ---- parameter table ---------------------------------------------------------------- */

typedef enum { P_INT, P_FLOAT, P_ENUM } ptype;

typedef struct param {
    const char *key;
    ptype type;
    size_t off;
    double lo, hi;            /* numeric range (inclusive) */
    const char *const *names; /* P_ENUM: NULL-terminated value names (index = value) */
    const int *values;        /* P_ENUM: optional values when not 0..n-1 */
    const char *def;          /* default as text (help) */
    const char *help;
} param;

#define OFF(f) offsetof(ems_config, f)
static const char *const n_bool[] = {"0", "1", NULL};
static const char *const n_group[] = {"mean", "max", NULL};
static const char *const n_quant[] = {"none", "int8", "int4", "int2", NULL};
static const int v_quant[] = {EMS_QUANT_NONE, EMS_QUANT_INT8, EMS_QUANT_INT4, EMS_QUANT_INT2};
static const char *const n_score[] = {"gl", "global", "local", NULL};
static const char *const n_align[] = {"max", "ratio", "shift", NULL};
static const char *const n_strat[] = {"evict_merge", "evict", "merge", NULL};
static const char *const n_split[] = {"threshold", "placeholder", NULL};
static const char *const n_sim[] = {"kv", "k", NULL};
static const char *const n_kmerge[] = {"dirnorm", "mean", NULL};
static const char *const n_mw[] = {"score", "uniform", NULL};
static const char *const n_pool[] = {"max", "avg", NULL};
static const char *const n_tova[] = {"layer", "head", NULL};
static const char *const n_slk[] = {"decode", "prefill", NULL};
static const char *const n_roco_score[] = {"mean", "acc", NULL};
static const char *const n_slk_test[] = {"recent", "importance", NULL};
static const char *const n_slk_inner[] = {"none", "ems", "h2o", "snapkv", NULL};
static const int v_slk_inner[] = {EMS_METHOD_FULL, EMS_METHOD_EMS, EMS_METHOD_H2O,
                                  EMS_METHOD_SNAPKV};

static const param g_params[] = {
    {"budget", P_INT, OFF(budget), 0, 1 << 20, NULL, NULL, "0",
     "entries kept per (layer, KV head); 0 = use budget_frac"},
    {"budget_frac", P_FLOAT, OFF(budget_frac), 0, 1, NULL, NULL, "0",
     "budget as a fraction of the context (used when budget = 0)"},
    {"window", P_INT, OFF(window), -1, 1 << 20, NULL, NULL, "-1",
     "recent entries kept verbatim; -1 = method default (H2O B/2; SnapKV, PyramidKV "
     "min(32, B/4), scoring with the last 32 queries; EMS round(B/ems.window_div)); a set "
     "window is also SnapKV's number of scored queries"},
    {"sinks", P_INT, OFF(sinks), -1, 1 << 20, NULL, NULL, "-1",
     "first entries always kept; -1 = method default (streamingllm 4, others 0)"},
    {"w_loc", P_INT, OFF(w_loc), -1, 4096, NULL, NULL, "-1",
     "local query window (EMS s_Loc; SnapKV observation window = window); -1 = 16 for EMS"},
    {"compress_every", P_INT, OFF(compress_every), 0, 1 << 20, NULL, NULL, "0",
     "decode: compress a head once it holds budget + N entries; 0 = method default "
     "(tova and roco 1, others 16)"},
    {"compress_prefill", P_ENUM, OFF(compress_prefill), 0, 0, n_bool, NULL, "1",
     "compress at the end of prefill"},
    {"prefill_keep", P_INT, OFF(prefill_keep), 0, 1 << 20, NULL, NULL, "0",
     "bounded prefill: while the prompt is fed in chunks, a head holding more than prefill_keep "
     "+ prefill_slack entries is compressed back to prefill_keep (observation window: the "
     "chunk's last queries); the prompt's end still compresses to the budget; 0 = off (the "
     "prompt is held whole until its end); needs an explicit budget <= prefill_keep"},
    {"prefill_slack", P_INT, OFF(prefill_slack), -1, 1 << 20, NULL, NULL, "-1",
     "bounded prefill: entries over prefill_keep a head may hold before it is compressed "
     "(amortizes the steps); -1 = prefill_keep"},
    {"group_reduce", P_ENUM, OFF(group_max), 0, 0, n_group, NULL, "mean",
     "reduction of per-query-head attention to the KV head (GQA group)"},
    {"quant", P_ENUM, OFF(quant), 0, 0, n_quant, v_quant, "none",
     "KIVI-style K/V quantization, combinable with any method"},
    {"quant.group", P_INT, OFF(quant_group), 1, 4096, NULL, NULL, "32",
     "keys: tokens per group (per channel); values: channels per group (capped at head dim)"},
    {"quant.residual", P_INT, OFF(quant_residual), 0, 1 << 20, NULL, NULL, "32",
     "most recent entries kept f32 (keys are quantized in whole groups behind them)"},
    {"ems.score", P_ENUM, OFF(ems_score), 0, 0, n_score, NULL, "gl",
     "EMS importance score: Global-Local, global only (accumulated), local only (last w_loc)"},
    {"ems.align", P_ENUM, OFF(ems_align), 0, 0, n_align, NULL, "max",
     "mean alignment: max(gw*s_Glo*mean(s_Loc)/mean(s_Glo), s_Loc) | ratio | shift"},
    {"ems.lambda", P_FLOAT, OFF(ems_lambda), 0, 1, NULL, NULL, "0.5",
     "weight of the global term for align ratio/shift (inferred)"},
    {"ems.gw", P_FLOAT, OFF(ems_gw), 0, 100, NULL, NULL, "1",
     "weight on the aligned global term in align max (1.5 trades ~1% ppl for retrieval)"},
    {"ems.glo_mean", P_ENUM, OFF(ems_glo_mean), 0, 0, n_bool, NULL, "0",
     "1: s_Glo divided by the number of queries that saw the entry (was worse)"},
    {"ems.window_div", P_INT, OFF(ems_window_div), 1, 1 << 20, NULL, NULL, "4",
     "EMS default window = clamp(round(B / div), 1, B - 1)"},
    {"ems.strategy", P_ENUM, OFF(ems_strategy), 0, 0, n_strat, NULL, "evict_merge",
     "evict_merge | evict (all dropped -> zero class) | merge (all dropped -> best centre)"},
    {"ems.split", P_ENUM, OFF(ems_split), 0, 0, n_split, NULL, "threshold",
     "to-be-merged vs irrelevant: threshold (sim >= tau) | placeholder (methods.md 1.5)"},
    {"ems.sim", P_ENUM, OFF(ems_sim), 0, 0, n_sim, NULL, "kv",
     "assignment similarity: cos(K)*cos(V) | cos(K)"},
    {"ems.tau", P_FLOAT, OFF(ems_tau), -1, 1, NULL, NULL, "0.8",
     "zero-class threshold: a dropped entry merges only if its best similarity >= tau"},
    {"ems.key_merge", P_ENUM, OFF(ems_key_merge), 0, 0, n_kmerge, NULL, "dirnorm",
     "key merge: unit direction + weighted mean norm | plain weighted mean"},
    {"ems.merge_weight", P_ENUM, OFF(ems_merge_weight), 0, 0, n_mw, NULL, "score",
     "merge weights: EMS score | uniform"},
    {"ems.headwise", P_ENUM, OFF(ems_headwise), 0, 0, n_bool, NULL, "1",
     "head-wise adaptive budgets inside a layer (layer total stays H*B)"},
    {"ems.floor", P_FLOAT, OFF(ems_floor), 0, 1, NULL, NULL, "0.2",
     "head-wise: each head first keeps its top max(1, round(floor*(B-w))) candidates"},
    {"ems.zero_class", P_ENUM, OFF(ems_zero_class), 0, 0, n_bool, NULL, "1",
     "1: evict+merge as one batched scatter over all heads; 0: two sequential per-head passes"},
    {"ems.prop_attn", P_ENUM, OFF(ems_prop_attn), 0, 0, n_bool, NULL, "0",
     "proportional attention: a centre that merged m tokens gets log(m) added to its logit"},
    {"ems.pool", P_INT, OFF(ems_pool), 1, 63, NULL, NULL, "11",
     "max-pool the score over this many neighbouring candidates (odd; 1 = off) so that runs such "
     "as a number's digits are kept together (SnapKV pools with 7)"},
    {"ems.pool_decode", P_ENUM, OFF(ems_pool_decode), 0, 0, n_bool, NULL, "0",
     "1: ems.pool also at decode-time compressions; 0: at the prefill-end step only"},
    {"snapkv.kernel", P_INT, OFF(snapkv_kernel), 1, 63, NULL, NULL, "7",
     "pooling kernel size (odd)"},
    {"snapkv.pool", P_ENUM, OFF(snapkv_avgpool), 0, 0, n_pool, NULL, "max", "pooling"},
    {"pyramidkv.beta", P_INT, OFF(pyramid_beta), 1, 1000, NULL, NULL, "20",
     "smallest layer budget = (B - w) / beta"},
    {"tova.scope", P_ENUM, OFF(tova_per_head), 0, 0, n_tova, NULL, "layer",
     "one selection per layer (official, head-averaged) or per head"},
    {"simlayerkv.delta", P_FLOAT, OFF(slk_delta), 0, 1, NULL, NULL, "0.65",
     "a layer is lazy when its attention mass on initial + recent entries > delta "
     "(official: llama2 0.65, mistral 0.8, llama3 0.9)"},
    {"simlayerkv.initial", P_INT, OFF(slk_initial), 0, 1 << 20, NULL, NULL, "4",
     "initial entries kept in lazy layers"},
    {"simlayerkv.recent", P_INT, OFF(slk_recent), -1, 1 << 20, NULL, NULL, "-1",
     "recent entries kept in lazy layers (and counted by the test); -1 = budget - initial"},
    {"simlayerkv.decide", P_ENUM, OFF(slk_prefill), 0, 0, n_slk, NULL, "decode",
     "decode: newest query on the first decode step; prefill: mean of the last n_last queries"},
    {"simlayerkv.n_last", P_INT, OFF(slk_n_last), 1, 4096, NULL, NULL, "32",
     "prefill variant: queries averaged"},
    {"simlayerkv.span", P_INT, OFF(slk_span), 1, 1 << 20, NULL, NULL, "512",
     "prefill variant: entries preceding each query counted as recent"},
    {"simlayerkv.retrim", P_ENUM, OFF(slk_retrim), 0, 0, n_bool, NULL, "1",
     "1: lazy layers trimmed again whenever over budget + N (0 = official: trim once)"},
    {"simlayerkv.test", P_ENUM, OFF(slk_test), 0, 0, n_slk_test, NULL, "recent",
     "lazy test: recent = mass on initial + recent entries (official); importance = mass on "
     "initial + top (B - initial - window) by accumulated attention + last window (window "
     "default 8), the set a lazy layer then keeps"},
    {"simlayerkv.inner", P_ENUM, OFF(slk_inner), 0, 0, n_slk_inner, v_slk_inner, "none",
     "non-lazy layers: none = kept whole (official), or compressed by ems | h2o | snapkv at "
     "the same budget (their defaults; the deciding step counts as their prefill-end step)"},
    {"roco.recent_ratio", P_FLOAT, OFF(roco_recent_ratio), 0, 1, NULL, NULL, "0.3",
     "EasyKV decoding recent ratio (scope = B - ratio*B - sinks)"},
    {"roco.sinks", P_INT, OFF(roco_sinks), 0, 1 << 20, NULL, NULL, "0",
     "RoCo protected first entries (EasyKV decoding: 0, prefill: 4)"},
    {"roco.protect", P_INT, OFF(roco_protect), 0, 1 << 20, NULL, NULL, "10",
     "last entries never evicted"},
    {"roco.stride", P_INT, OFF(roco_stride), 0, 1 << 20, NULL, NULL, "1",
     "entries evicted per iteration; 0 = all at once (batched)"},
    {"roco.score", P_ENUM, OFF(roco_acc), 0, 0, n_roco_score, NULL, "mean",
     "importance inside the scope: mean attention s_glo / count (EasyKV) | acc (accumulated, "
     "H2O's)"},
    {"roco.std_top", P_INT, OFF(roco_std_top), -1, 1 << 20, NULL, NULL, "-1",
     "eviction scope: -1 = EasyKV's (the max(B - recent_ratio*B - sinks, stride) smallest-std "
     "entries); r >= 0 = every evictable entry but the r of largest std (0: no std exclusion; "
     "the scope keeps at least the entries to evict)"},
};
#define N_PARAMS ((int)(sizeof g_params / sizeof g_params[0]))

void ems_config_default(ems_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->method = EMS_METHOD_FULL;
    char err[8];
    for (int i = 0; i < N_PARAMS; i++) {
        em_status st = ems_config_set(cfg, g_params[i].key, g_params[i].def, err, sizeof err);
        (void)st; /* table defaults are valid (tests check ems_config_validate) */
    }
}

static int enum_count(const param *p)
{
    int n = 0;
    while (p->names[n])
        n++;
    return n;
}

em_status ems_config_set(ems_config *cfg, const char *key, const char *value, char *err,
                         size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!key || !value) {
        snprintf(err, errlen, "kv parameter: missing key or value");
        return EM_EINVAL;
    }
    if (strcmp(key, "method") == 0) {
        ems_method m;
        if (ems_method_parse(value, &m) != EM_OK) {
            snprintf(err, errlen, "method: unknown method '%s' (see --help)", value);
            return EM_EINVAL;
        }
        cfg->method = m;
        return EM_OK;
    }
    for (int i = 0; i < N_PARAMS; i++) {
        const param *p = &g_params[i];
        if (strcmp(p->key, key) != 0)
            continue;
        char *end = NULL;
        errno = 0;
        if (p->type == P_INT) {
            long v = strtol(value, &end, 10);
            if (end == value || *end || errno || v < p->lo || v > p->hi) {
                snprintf(err, errlen, "%s: '%s' is not an integer in [%.0f, %.0f]", key, value,
                         p->lo, p->hi);
                return EM_EINVAL;
            }
            *(int *)((char *)cfg + p->off) = (int)v;
        } else if (p->type == P_FLOAT) {
            double v = strtod(value, &end);
            if (end == value || *end || errno || !isfinite(v) || v < p->lo || v > p->hi) {
                snprintf(err, errlen, "%s: '%s' is not a number in [%g, %g]", key, value, p->lo,
                         p->hi);
                return EM_EINVAL;
            }
            *(float *)((char *)cfg + p->off) = (float)v;
        } else {
            int n = enum_count(p), found = -1;
            for (int k = 0; k < n; k++) {
                if (strcmp(p->names[k], value) == 0)
                    found = k;
            }
            if (found < 0) {
                char opts[160] = "";
                for (int k = 0; k < n; k++) {
                    strncat(opts, k ? "|" : "", sizeof opts - strlen(opts) - 1);
                    strncat(opts, p->names[k], sizeof opts - strlen(opts) - 1);
                }
                snprintf(err, errlen, "%s: '%s' is not one of %s", key, value, opts);
                return EM_EINVAL;
            }
            *(int *)((char *)cfg + p->off) = p->values ? p->values[found] : found;
        }
        return EM_OK;
    }
    snprintf(err, errlen, "unknown kv parameter '%s' (see --help)", key);
    return EM_EINVAL;
}

em_status ems_config_set_kv(ems_config *cfg, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        snprintf(err, errlen, "kv parameter '%s': expected key=value", kv);
        return EM_EINVAL;
    }
    char key[64];
    size_t n = (size_t)(eq - kv);
    if (n >= sizeof key) {
        snprintf(err, errlen, "kv parameter '%.40s...': key too long", kv);
        return EM_EINVAL;
    }
    memcpy(key, kv, n);
    key[n] = '\0';
    return ems_config_set(cfg, key, eq + 1, err, errlen);
}

/* ---- resolved values ---------------------------------------------------------------- */

int ems_config_budget(const ems_config *cfg, int n_ctx)
{
    if (cfg->method == EMS_METHOD_FULL)
        return 0;
    if (cfg->budget > 0)
        return cfg->budget;
    int b = (int)lrintf(cfg->budget_frac * (float)n_ctx);
    return b < 2 ? 2 : b;
}

int ems_config_window(const ems_config *cfg, int B)
{
    int w;
    if (cfg->window >= 0) {
        w = cfg->window;
    } else if (cfg->method == EMS_METHOD_EMS) {
        w = (int)lrint((double)B / cfg->ems_window_div);
        if (w < 1)
            w = 1;
    } else if (cfg->method == EMS_METHOD_TOVA || cfg->method == EMS_METHOD_STREAMINGLLM ||
               cfg->method == EMS_METHOD_SIMLAYERKV || cfg->method == EMS_METHOD_ROCO) {
        w = 0; /* these define their recent part through their own parameters */
    } else if (cfg->method == EMS_METHOD_H2O) {
        w = B / 2; /* the H2O paper: equal heavy-hitter and recent shares */
    } else {
        /* SnapKV (and PyramidKV, which scores with it): the observation window of SnapKV's
         * LongBench configs (32; kernel 7 and max-pool are the defaults), at most a quarter of
         * the budget so that small budgets keep room for selected entries */
        w = (int)lrint((double)B / 4);
        w = w > 32 ? 32 : w < 1 ? 1 : w;
    }
    if (B > 0 && w > B - 1)
        w = B - 1;
    return w < 0 ? 0 : w;
}

int ems_config_sinks(const ems_config *cfg)
{
    if (cfg->sinks >= 0)
        return cfg->sinks;
    return cfg->method == EMS_METHOD_STREAMINGLLM ? 4 : 0;
}

int ems_config_prefill_slack(const ems_config *cfg)
{
    if (cfg->prefill_keep <= 0)
        return 0;
    return cfg->prefill_slack >= 0 ? cfg->prefill_slack : cfg->prefill_keep;
}

/* prefill_keep: a compressing method with an explicit budget it cannot undercut. */
static em_status check_prefill_keep(const ems_config *cfg, char *err, size_t errlen)
{
    if (cfg->prefill_keep <= 0)
        return EM_OK;
    if (cfg->method == EMS_METHOD_SIMLAYERKV) {
        snprintf(err, errlen,
                 "prefill_keep: simlayerkv decides its lazy layers on the whole "
                 "prompt; bounded prefill is not supported for it");
        return EM_EINVAL;
    }
    if (cfg->budget <= 0) {
        snprintf(err, errlen, "prefill_keep: needs an explicit budget (budget=N, not budget_frac)");
        return EM_EINVAL;
    }
    if (cfg->prefill_keep < cfg->budget) {
        snprintf(err, errlen,
                 "prefill_keep: %d is below the budget %d (the prompt's end "
                 "compresses to the budget: prefill_keep >= budget)",
                 cfg->prefill_keep, cfg->budget);
        return EM_EINVAL;
    }
    return EM_OK;
}

int ems_config_every(const ems_config *cfg)
{
    if (cfg->compress_every > 0)
        return cfg->compress_every;
    if (cfg->method == EMS_METHOD_TOVA || cfg->method == EMS_METHOD_ROCO)
        return 1;
    return 16;
}

int ems_config_pool(const ems_config *cfg, int prefill_end)
{
    return prefill_end || cfg->ems_pool_decode ? cfg->ems_pool : 1;
}

int ems_config_w_loc(const ems_config *cfg)
{
    switch (cfg->method) {
    case EMS_METHOD_EMS:
        if (cfg->ems_score == EMS_SCORE_GLOBAL)
            return 0;
        return cfg->w_loc >= 0 ? cfg->w_loc : 16;
    case EMS_METHOD_SNAPKV:
    case EMS_METHOD_PYRAMIDKV: {
        /* observation window = the recent window when one is set (SnapKV), else the 32 queries
         * of SnapKV's LongBench configs; at least one row */
        int w = cfg->window >= 0 ? cfg->window : 32;
        if (cfg->w_loc > w)
            w = cfg->w_loc;
        return w < 1 ? 1 : w;
    }
    case EMS_METHOD_TOVA:
        return 1;
    case EMS_METHOD_SIMLAYERKV: {
        int w = cfg->slk_prefill ? cfg->slk_n_last : 1;
        if (cfg->slk_inner != EMS_METHOD_FULL) {
            ems_config in;
            ems_config_slk_inner(cfg, &in);
            int wi = ems_config_w_loc(&in);
            w = wi > w ? wi : w;
        }
        return w;
    }
    default:
        return cfg->w_loc > 0 ? cfg->w_loc : 0;
    }
}

void ems_config_slk_inner(const ems_config *cfg, ems_config *inner)
{
    *inner = *cfg;
    inner->method =
        cfg->method == EMS_METHOD_SIMLAYERKV ? (ems_method)cfg->slk_inner : EMS_METHOD_FULL;
    inner->slk_inner = EMS_METHOD_FULL;
}

int ems_config_wants_stats(const ems_config *cfg)
{
    return cfg->method != EMS_METHOD_FULL && cfg->method != EMS_METHOD_STREAMINGLLM;
}

em_status ems_config_validate(const ems_config *cfg, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (cfg->method < 0 || cfg->method >= EMS_METHOD_COUNT) {
        snprintf(err, errlen, "method: invalid value %d", (int)cfg->method);
        return EM_EINVAL;
    }
    if (cfg->budget > 0 && cfg->budget_frac > 0) {
        snprintf(err, errlen, "budget and budget_frac are exclusive: give one");
        return EM_EINVAL;
    }
    if (cfg->prefill_keep > 0 && cfg->method == EMS_METHOD_FULL) {
        snprintf(err, errlen, "prefill_keep: method full does not compress (use a method)");
        return EM_EINVAL;
    }
    if (cfg->method == EMS_METHOD_FULL)
        goto quant;
    if (cfg->budget <= 0 && cfg->budget_frac <= 0) {
        snprintf(err, errlen, "budget: method %s needs a budget (budget=N or budget_frac=F)",
                 ems_method_name(cfg->method));
        return EM_EINVAL;
    }
    if (cfg->budget > 0 && cfg->budget < 2) {
        snprintf(err, errlen, "budget: must be at least 2 entries per (layer, KV head)");
        return EM_EINVAL;
    }
    int B = cfg->budget > 0 ? cfg->budget : 0;
    if (B > 0 && cfg->window >= B) {
        snprintf(err, errlen, "window: %d must be smaller than budget %d", cfg->window, B);
        return EM_EINVAL;
    }
    if (B > 0 && cfg->sinks >= 0 && cfg->sinks + (cfg->window > 0 ? cfg->window : 0) >= B) {
        snprintf(err, errlen, "sinks: sinks (%d) + window must be smaller than budget %d",
                 cfg->sinks, B);
        return EM_EINVAL;
    }
    if (cfg->method == EMS_METHOD_STREAMINGLLM && B > 0 && ems_config_sinks(cfg) >= B) {
        snprintf(err, errlen, "sinks: streamingllm keeps %d sinks, budget %d leaves no recent part",
                 ems_config_sinks(cfg), B);
        return EM_EINVAL;
    }
    if (cfg->method == EMS_METHOD_EMS && cfg->ems_score != EMS_SCORE_GLOBAL && cfg->w_loc == 0) {
        snprintf(err, errlen, "w_loc: ems.score=%s needs a local window (w_loc > 0)",
                 cfg->ems_score == EMS_SCORE_GL ? "gl" : "local");
        return EM_EINVAL;
    }
    if (cfg->method == EMS_METHOD_EMS && cfg->ems_pool % 2 == 0) {
        snprintf(err, errlen, "ems.pool: must be odd (got %d)", cfg->ems_pool);
        return EM_EINVAL;
    }
    if ((cfg->method == EMS_METHOD_SNAPKV || cfg->method == EMS_METHOD_PYRAMIDKV) &&
        (cfg->snapkv_kernel % 2) == 0) {
        snprintf(err, errlen, "snapkv.kernel: must be odd (got %d)", cfg->snapkv_kernel);
        return EM_EINVAL;
    }
    if (cfg->method == EMS_METHOD_SNAPKV || cfg->method == EMS_METHOD_PYRAMIDKV) {
        if (cfg->window == 0) {
            snprintf(err, errlen, "window: %s needs an observation window (window >= 1)",
                     ems_method_name(cfg->method));
            return EM_EINVAL;
        }
    }
    if (cfg->method == EMS_METHOD_SIMLAYERKV && B > 0) {
        int rec = cfg->slk_recent >= 0 ? cfg->slk_recent : B - cfg->slk_initial;
        if (rec < 1 || cfg->slk_initial + rec > B) {
            snprintf(err, errlen,
                     "simlayerkv.recent: initial (%d) + recent (%d) must be in [initial+1, budget "
                     "%d]",
                     cfg->slk_initial, rec, B);
            return EM_EINVAL;
        }
    }
    if (cfg->method == EMS_METHOD_SIMLAYERKV && cfg->slk_inner != EMS_METHOD_FULL) {
        ems_config in;
        ems_config_slk_inner(cfg, &in);
        char ierr[160];
        if (ems_config_validate(&in, ierr, sizeof ierr) != EM_OK) {
            snprintf(err, errlen, "simlayerkv.inner=%s: %s", ems_method_name(in.method), ierr);
            return EM_EINVAL;
        }
    }
    if (cfg->method == EMS_METHOD_ROCO && B > 0 && cfg->roco_sinks + cfg->roco_protect >= B) {
        snprintf(err, errlen, "roco.protect: sinks (%d) + protect (%d) must be below budget %d",
                 cfg->roco_sinks, cfg->roco_protect, B);
        return EM_EINVAL;
    }
    if (cfg->method != EMS_METHOD_EMS && cfg->method != EMS_METHOD_STREAMINGLLM &&
        cfg->method != EMS_METHOD_ROCO && cfg->sinks > 0) {
        snprintf(err, errlen, "sinks: method %s does not use sinks", ems_method_name(cfg->method));
        return EM_EINVAL;
    }
    if (ems_config_w_loc(cfg) > EMS_MAX_W_LOC) {
        snprintf(err, errlen, "w_loc: %s needs %d rows of recent attention; at most %d",
                 ems_method_name(cfg->method), ems_config_w_loc(cfg), EMS_MAX_W_LOC);
        return EM_EINVAL;
    }
    if (check_prefill_keep(cfg, err, errlen) != EM_OK)
        return EM_EINVAL;
quant:
    if (cfg->quant != EMS_QUANT_NONE && cfg->quant != EMS_QUANT_INT8 &&
        cfg->quant != EMS_QUANT_INT4 && cfg->quant != EMS_QUANT_INT2) {
        snprintf(err, errlen, "quant: invalid value %d", (int)cfg->quant);
        return EM_EINVAL;
    }
    return EM_OK;
}

/* ---- help / describe ---------------------------------------------------------------- */

void ems_config_help(FILE *f)
{
    fprintf(f, "KV-cache compression methods (--kv-method NAME):\n");
    for (int i = 0; i < EMS_METHOD_COUNT; i++) {
        fprintf(f, "  %-13s %s\n", g_method_names[i], g_method_help[i]);
    }
    fprintf(f, "Parameters (--kv-param key=value; --kv-budget N = budget, --kv-quant = quant):\n");
    for (int i = 0; i < N_PARAMS; i++) {
        const param *p = &g_params[i];
        char vals[96] = "";
        if (p->type == P_ENUM && p->names != n_bool) {
            for (int k = 0; p->names[k]; k++) {
                strncat(vals, k ? "|" : " {", sizeof vals - strlen(vals) - 1);
                strncat(vals, p->names[k], sizeof vals - strlen(vals) - 1);
            }
            strncat(vals, "}", sizeof vals - strlen(vals) - 1);
        }
        fprintf(f, "  %-20s (default %s)%s\n      %s\n", p->key, p->def, vals, p->help);
    }
}

static void param_text(const ems_config *cfg, const param *p, char *buf, size_t len)
{
    const char *base = (const char *)cfg + p->off;
    if (p->type == P_INT) {
        snprintf(buf, len, "%d", *(const int *)base);
    } else if (p->type == P_FLOAT) {
        snprintf(buf, len, "%g", (double)*(const float *)base);
    } else {
        int v = *(const int *)base;
        snprintf(buf, len, "%d", v);
        for (int k = 0; p->names[k]; k++) {
            if ((p->values ? p->values[k] : k) == v)
                snprintf(buf, len, "%s", p->names[k]);
        }
    }
}

void ems_config_describe(const ems_config *cfg, char *buf, size_t len)
{
    ems_config d;
    ems_config_default(&d);
    size_t o = (size_t)snprintf(buf, len, "%s", ems_method_name(cfg->method));
    for (int i = 0; i < N_PARAMS && o < len; i++) {
        char a[48], b[48];
        param_text(cfg, &g_params[i], a, sizeof a);
        param_text(&d, &g_params[i], b, sizeof b);
        if (strcmp(a, b) != 0)
            o += (size_t)snprintf(buf + o, len - o, " %s=%s", g_params[i].key, a);
    }
}

int ems_config_cli(ems_config *cfg, const char *flag, const char *value, em_status *st, char *err,
                   size_t errlen)
{
    static const char *const flags[][2] = {
        {"--kv-method", "method"}, {"--kv-budget", "budget"}, {"--kv-quant", "quant"}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (strcmp(flag, flags[i][0]) == 0) {
            *st = ems_config_set(cfg, flags[i][1], value, err, errlen);
            return 1;
        }
    }
    if (strcmp(flag, "--kv-param") == 0) {
        *st = ems_config_set_kv(cfg, value, err, errlen);
        return 1;
    }
    return 0;
}

void ems_config_cli_usage(FILE *f)
{
    fprintf(f, "  --kv-method NAME     KV compression method (default full)\n"
               "  --kv-budget N        entries kept per (layer, KV head)\n"
               "  --kv-quant int8|int4|int2 quantize K/V (combinable with any method)\n"
               "  --kv-param KEY=VALUE method parameter (repeatable)\n");
}
