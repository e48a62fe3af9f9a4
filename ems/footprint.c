/* KV footprint of a sequence from its config and the model's shape (see footprint.h). */
#include "ems/footprint.h"

#include <math.h>

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

int ems_pyramid_keep(int B, int w, int n, int L, int beta, int l)
{
    int k = B - w;
    if (L <= 1 || n < 2 * k)
        return k;
    int mn = k / beta, mx = 2 * k - mn;
    if (mx >= n - w) {
        mx = n - w;
        mn = 2 * k - mx;
    }
    int step = (mx - mn) / (L - 1);
    return mx - l * step;
}

/* One unquantized entry: k, v (f32); pos, cnt (int32); s_glo, s_sq, mass, kbias (f32); the
 * local ring's column. */
static uint64_t f32_entry_bytes(const ems_config *cfg, int hd)
{
    return 2ull * 4 * (uint64_t)hd + 2 * 4 + 4 * 4 + 4ull * (uint64_t)ems_config_w_loc(cfg);
}

uint64_t ems_footprint_append_bytes(const ems_config *cfg, int hd)
{
    return f32_entry_bytes(cfg, hd);
}

uint64_t ems_footprint_entry_bytes(const ems_config *cfg, int hd)
{
    if (cfg->quant == EMS_QUANT_NONE)
        return f32_entry_bytes(cfg, hd);
    int bits = (int)cfg->quant, g = cfg->quant_group;
    int vgroup = g < hd ? g : hd, n_vg = (hd + vgroup - 1) / vgroup;
    uint64_t row = ((uint64_t)hd * (uint64_t)bits + 7) / 8;
    /* the entry without its f32 K/V, plus K and V codes, key group id, value zero + scale */
    return f32_entry_bytes(cfg, hd) - 2ull * 4 * (uint64_t)hd + 2 * row + 4 +
           2 * 2 * (uint64_t)n_vg;
}

/* Largest budget layer l of PyramidKV can get: its keep count is linear in the largest layer's
 * share, which grows with the length it is computed at, so the extremes are the shortest
 * pyramidal length (2k) and the longest (n_end); +1 for the integer step. */
static int64_t pyramid_layer_budget(const ems_config *cfg, int B, int w, int n_end, int L, int l)
{
    int k = B - w;
    int a = ems_pyramid_keep(B, w, 2 * k, L, cfg->pyramid_beta, l);
    int b = ems_pyramid_keep(B, w, n_end, L, cfg->pyramid_beta, l);
    return w + max64(k, max64(a, b)) + 1;
}

/* Bounded prefill (prefill_keep, footprint.h): most entries the worker's heads of layer l hold
 * while the prompt is fed, or INT64_MAX when the prompt may be held whole (off, or chunk
 * unknown). */
static int64_t bounded_prefill_layer(const ems_config *cfg, const ems_footprint_shape *sh,
                                     int n_prompt, int l)
{
    int K = cfg->prefill_keep, C = sh->chunk;
    if (K <= 0 || C <= 0)
        return INT64_MAX;
    int64_t S = ems_config_prefill_slack(cfg), hl = sh->n_head_local, H = sh->n_head_kv;
    int64_t late = cfg->compress_prefill ? 0 : 1, P = (int64_t)n_prompt + late;
    int w = ems_config_window(cfg, K);
    int64_t kl = K;
    if (cfg->method == EMS_METHOD_PYRAMIDKV)
        kl = pyramid_layer_budget(cfg, K, w, n_prompt, sh->n_layer, l);
    int64_t head = min64(P, kl + S + C + late);
    if (cfg->method == EMS_METHOD_EMS && cfg->ems_headwise) {
        int kglob = K - w - ems_config_sinks(cfg);
        int64_t F = lrintf(cfg->ems_floor * (float)kglob);
        F = F < 1 ? 1 : F;
        int64_t shared = H * ((int64_t)K + S + 1 + C + late) - (H - hl) * (w + F);
        return min64(hl * P, shared);
    }
    return hl * head;
}

int64_t ems_footprint_peak_entries(const ems_config *cfg, const ems_footprint_shape *sh,
                                   int n_prompt, int n_end, int prompt_ahead)
{
    int64_t E = n_end > 0 ? n_end : 0, hl = sh->n_head_local, H = sh->n_head_kv;
    if (cfg->method == EMS_METHOD_FULL || cfg->method == EMS_METHOD_SIMLAYERKV)
        return E * hl * sh->n_layer;
    int B = ems_config_budget(cfg, n_end), N = ems_config_every(cfg);
    int w = ems_config_window(cfg, B);
    int64_t pre = prompt_ahead ? (int64_t)n_prompt + (cfg->compress_prefill ? 0 : 1) : 0;
    int64_t total = 0;
    for (int l = 0; l < sh->n_layer; l++) {
        int64_t pre_l = hl * pre; /* the worker's heads of the layer while the prompt is fed */
        if (prompt_ahead)
            pre_l = min64(pre_l, bounded_prefill_layer(cfg, sh, n_prompt, l));
        int64_t steady = (int64_t)B + N; /* per head */
        if (cfg->method == EMS_METHOD_PYRAMIDKV)
            steady = pyramid_layer_budget(cfg, B, w, n_end, sh->n_layer, l) + N;
        int64_t layer = min64(hl * E, max64(pre_l, hl * steady));
        if (cfg->method == EMS_METHOD_EMS && cfg->ems_headwise) {
            int kglob = B - w - ems_config_sinks(cfg);
            int64_t F = lrintf(cfg->ems_floor * (float)kglob);
            F = F < 1 ? 1 : F;
            int64_t shared = H * ((int64_t)B + N) - (H - hl) * (w + F);
            layer = min64(hl * E, max64(pre_l, shared));
        }
        total += layer;
    }
    return total;
}

uint64_t ems_footprint_peak_bytes(const ems_config *cfg, const ems_footprint_shape *sh,
                                  int n_prompt, int n_end, int prompt_ahead)
{
    int64_t n = ems_footprint_peak_entries(cfg, sh, n_prompt, n_end, prompt_ahead);
    uint64_t b = (uint64_t)n * ems_footprint_entry_bytes(cfg, sh->hd);
    if (cfg->quant == EMS_QUANT_NONE)
        return b;
    int64_t E = n_end > 0 ? n_end : 0, heads = (int64_t)sh->n_head_local * sh->n_layer;
    /* each head's residual window (at most residual + group - 1 rows) stays f32 */
    int64_t win = cfg->quant_residual + cfg->quant_group - 1;
    win = win < E ? win : E;
    b += (uint64_t)(heads * win) *
         (f32_entry_bytes(cfg, sh->hd) - ems_footprint_entry_bytes(cfg, sh->hd));
    /* key-group scales: one group per quant_group tokens, never freed */
    if (cfg->quant_group > 0) {
        uint64_t groups = (uint64_t)E / (uint64_t)cfg->quant_group;
        b += groups * (uint64_t)sh->hd * 2 * 2 * (uint64_t)heads;
    }
    /* until the first policy step the prompt is held unquantized, in f32 (with bounded prefill
     * the first chunk step quantizes: at most the bounded entries, all counted in f32) */
    if (prompt_ahead) {
        int64_t pre = (int64_t)(n_prompt < E ? n_prompt : E) * heads;
        if (cfg->prefill_keep > 0 && sh->chunk > 0)
            pre = min64(pre, n);
        uint64_t f = (uint64_t)pre * f32_entry_bytes(cfg, sh->hd);
        b = f > b ? f : b;
    }
    return b;
}
