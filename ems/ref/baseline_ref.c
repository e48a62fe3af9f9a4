/* Scalar references of the eviction baselines (methods.md 2-4). Top-k is done the slow, obvious
 * way: repeated arg-max, ties -> the earlier entry. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/ref/ems_ref.h"

/* Marks the k best of s over [lo, hi) in mark[] (repeated arg-max, ties: earlier index). */
static void ref_topk(const float *s, int lo, int hi, int k, char *mark)
{
    for (int t = 0; t < k; t++) {
        int best = -1;
        for (int j = lo; j < hi; j++) {
            if (mark[j])
                continue;
            if (best < 0 || s[j] > s[best])
                best = j;
        }
        if (best < 0)
            return;
        mark[best] = 1;
    }
}

static int collect(const char *mark, int len, int *keep)
{
    int n = 0;
    for (int j = 0; j < len; j++) {
        if (mark[j])
            keep[n++] = j;
    }
    return n;
}

int ems_ref_streaming(int len, int B, int sinks, int *keep)
{
    int n = 0;
    for (int j = 0; j < len; j++) {
        if (j < sinks || j >= len - (B - sinks))
            keep[n++] = j;
    }
    return n;
}

int ems_ref_h2o(const ems_head *h, int B, int w, int *keep)
{
    char *mark = calloc((size_t)h->len, 1);
    for (int j = h->len - w; j < h->len; j++)
        mark[j] = 1;
    ref_topk(h->s_glo, 0, h->len - w, B - w, mark);
    int n = collect(mark, h->len, keep);
    free(mark);
    return n;
}

int ems_ref_snapkv(const ems_head *h, int B, int w, int kernel, int avg, int *keep)
{
    int len = h->len, m = len - w;
    float *v = calloc((size_t)len, sizeof(float)), *p = calloc((size_t)len, sizeof(float));
    char *mark = calloc((size_t)len, 1);
    for (int r = 0; r < h->w_loc; r++) {
        for (int j = 0; j < len; j++)
            v[j] += h->loc[(size_t)r * h->cap + j];
    }
    for (int j = 0; j < m; j++) {
        float acc = avg ? 0.0f : -INFINITY;
        for (int i = j - kernel / 2; i <= j + kernel / 2; i++) {
            if (i < 0 || i >= m)
                continue; /* padding: -inf for max, 0 for avg */
            acc = avg ? acc + v[i] : fmaxf(acc, v[i]);
        }
        p[j] = avg ? acc / (float)kernel : acc;
    }
    for (int j = m; j < len; j++)
        mark[j] = 1;
    ref_topk(p, 0, m, B - w, mark);
    int n = collect(mark, len, keep);
    free(v), free(p), free(mark);
    return n;
}

int ems_ref_pyramid_budget(int B, int w, int n, int L, int beta, int l)
{
    int k = B - w;
    if (L <= 1 || n < 2 * k)
        return k; /* uniform fallback */
    int min_k = k / beta, max_k = 2 * k - min_k;
    if (max_k >= n - w) {
        max_k = n - w;
        min_k = 2 * k - max_k;
    }
    return max_k - l * ((max_k - min_k) / (L - 1));
}

static const float *newest(const ems_head *h)
{
    return h->loc + (size_t)h->loc_newest * h->cap;
}

int ems_ref_tova_head(const ems_head *h, int B, int *keep)
{
    char *mark = calloc((size_t)h->len, 1);
    ref_topk(newest(h), 0, h->len, B, mark);
    int n = collect(mark, h->len, keep);
    free(mark);
    return n;
}

int ems_ref_tova_layer(ems_head *const *heads, int H, int B, int *keep)
{
    int len = heads[0]->len;
    float *s = calloc((size_t)len, sizeof(float));
    char *mark = calloc((size_t)len, 1);
    for (int j = 0; j < len; j++) {
        float acc = 0.0f;
        for (int g = 0; g < H; g++)
            acc += newest(heads[g])[j];
        s[j] = acc / (float)H;
    }
    ref_topk(s, 0, len, B, mark);
    int n = collect(mark, len, keep);
    free(s), free(mark);
    return n;
}

int ems_ref_roco(const ems_head *h, const ems_config *cfg, int B, int stride, int *keep)
{
    int len = h->len;
    char *alive = malloc((size_t)len), *scope = malloc((size_t)len);
    float *mean = malloc(sizeof(float) * len), *sd = malloc(sizeof(float) * len);
    memset(alive, 1, (size_t)len);
    int n = len;
    int K0 = B - (int)lrintf(cfg->roco_recent_ratio * (float)B) - cfg->roco_sinks;
    while (n > B) {
        int st = stride == 0 ? n - B : (stride < n - B ? stride : n - B);
        /* rank among alive entries: index i = rank position in the alive list */
        int pos = 0, n_ok = 0;
        for (int j = 0; j < len; j++) {
            if (!alive[j])
                continue;
            float c = h->cnt[j] > 0 ? (float)h->cnt[j] : 1.0f;
            mean[j] = h->s_glo[j] / c;
            float var = h->s_sq[j] / c - mean[j] * mean[j];
            sd[j] = sqrtf(var > 0.0f ? var : 0.0f);
            if (cfg->roco_acc)
                mean[j] = h->s_glo[j];
            if (pos < cfg->roco_sinks || pos >= n - cfg->roco_protect)
                sd[j] = INFINITY;
            else
                n_ok++;
            pos++;
        }
        int K = cfg->roco_std_top >= 0 ? n_ok - cfg->roco_std_top : K0;
        if (K < st)
            K = st;
        if (K > n_ok)
            K = n_ok;
        if (st > K)
            st = K;
        if (st <= 0)
            break;
        /* scope: K smallest std (ties: earlier) */
        memset(scope, 0, (size_t)len);
        for (int t = 0; t < K; t++) {
            int best = -1;
            for (int j = 0; j < len; j++) {
                if (!alive[j] || scope[j] || isinf(sd[j]))
                    continue;
                if (best < 0 || sd[j] < sd[best])
                    best = j;
            }
            scope[best] = 1;
        }
        /* evict the st lowest importances (mean or accumulated) in the scope (ties: the later entry
         * goes first) */
        for (int t = 0; t < st; t++) {
            int worst = -1;
            for (int j = 0; j < len; j++) {
                if (!scope[j])
                    continue;
                if (worst < 0 || mean[j] <= mean[worst])
                    worst = j;
            }
            scope[worst] = 0;
            alive[worst] = 0;
            n--;
        }
    }
    int k = collect(alive, len, keep);
    free(alive), free(scope), free(mean), free(sd);
    return k;
}

/* Importance set of a head: initial + top (B - initial - w) by s_glo over [initial, len - w)
 * + the last w, w = window (default 8) capped at B - initial - 1; everything when len <= B. */
static int imp_set(const ems_head *h, const ems_config *cfg, int B, char *mark)
{
    int len = h->len, initial = cfg->slk_initial;
    int w = cfg->window >= 0 ? cfg->window : 8;
    if (w > B - initial - 1)
        w = B - initial - 1;
    if (w < 0)
        w = 0;
    memset(mark, 0, (size_t)len);
    if (len <= B) {
        memset(mark, 1, (size_t)len);
        return len;
    }
    for (int j = 0; j < len; j++)
        mark[j] = j < initial || j >= len - w;
    ref_topk(h->s_glo, initial, len - w, B - initial - w, mark);
    int n = 0;
    for (int j = 0; j < len; j++)
        n += mark[j];
    return n;
}

int ems_ref_simlayer_keep(const ems_head *h, const ems_config *cfg, int B, int *keep)
{
    if (!cfg->slk_test) {
        int rec = cfg->slk_recent >= 0 ? cfg->slk_recent : B - cfg->slk_initial;
        return ems_ref_streaming(h->len, cfg->slk_initial + rec, cfg->slk_initial, keep);
    }
    char *mark = malloc((size_t)h->len);
    imp_set(h, cfg, B, mark);
    int n = collect(mark, h->len, keep);
    free(mark);
    return n;
}

int ems_ref_simlayer_lazy(ems_head *const *heads, int H, const ems_config *cfg, int B)
{
    int initial = cfg->slk_initial;
    int recent = cfg->slk_recent >= 0 ? cfg->slk_recent : B - initial;
    float total = 0.0f; /* float sum over heads in head order, like the fast path */
    for (int g = 0; g < H; g++) {
        const ems_head *h = heads[g];
        int newest_pos = h->pos[h->len - 1];
        int n_rows = 1, span = recent;
        if (cfg->slk_prefill) {
            n_rows = cfg->slk_n_last < h->loc_count ? cfg->slk_n_last : h->loc_count;
            span = cfg->slk_span;
        }
        char *mark = malloc((size_t)h->len);
        if (cfg->slk_test)
            imp_set(h, cfg, B, mark);
        float head_sum = 0.0f;
        for (int r = 0; r < n_rows; r++) {
            int slot = ((h->loc_newest - r) % h->w_loc + h->w_loc) % h->w_loc;
            const float *row = h->loc + (size_t)slot * h->cap;
            int qp = newest_pos - r; /* row r back from the newest = query at newest - r */
            float s = 0.0f;
            for (int j = 0; j < h->len; j++) {
                int in = cfg->slk_test ? mark[j]
                                       : j < initial || (h->pos[j] <= qp && h->pos[j] > qp - span);
                if (in)
                    s += row[j];
            }
            head_sum += s;
        }
        free(mark);
        if (cfg->slk_prefill)
            head_sum = n_rows > 0 ? head_sum / (float)n_rows : 0.0f;
        total += head_sum;
    }
    return total / (float)H > cfg->slk_delta;
}
