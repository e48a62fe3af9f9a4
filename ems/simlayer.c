/* SimLayerKV (methods.md 2): a layer is lazy when its head-averaged attention mass on the
 * initial entries plus the recent entries exceeds delta; lazy layers keep initial + recent,
 * other layers keep everything. Ablation options: simlayerkv.test = importance (the mass on
 * each head's initial + top accumulated-attention + recent-window set, which a lazy layer then
 * keeps) and simlayerkv.inner (non-lazy layers compressed by EMS / H2O / SnapKV at B). The decision
 * is taken once per layer, from the global mean over all KV heads (buffer indexed by global head,
 * reduced over workers), and never revisited. Decision time: the first decode step after prefill
 * (official), or with simlayerkv.decide = prefill at the end of prefill from the last n_last
 * queries. A sequence streamed without a prefill decides on the first step at which the layer is
 * over budget + N. */
#include <stdlib.h>
#include <string.h>

#include "ems/policy_impl.h"

static int recent_of(const ems__ctx *x)
{
    return x->cfg->slk_recent >= 0 ? x->cfg->slk_recent : x->B - x->cfg->slk_initial;
}

/* Mass of one attention row (query at position qp, row over len entries) on the initial
 * entries plus the `span` entries ending at the query. */
static float row_mass(const ems_head *h, const float *row, int initial, int span, int qp)
{
    float s = 0.0f;
    for (int j = 0; j < h->len; j++) {
        if (j < initial || (h->pos[j] <= qp && h->pos[j] > qp - span))
            s += row[j];
    }
    return s;
}

/* Recent window of the importance test: `window` (default 8), leaving room for one entry. */
static int imp_window(const ems__ctx *x)
{
    int w = x->cfg->window >= 0 ? x->cfg->window : 8, top = x->B - x->cfg->slk_initial - 1;
    w = w < top ? w : top;
    return w < 0 ? 0 : w;
}

/* Importance test's set of head h (simlayerkv.test = importance): the first `initial`
 * entries, the top B - initial - w of [initial, len - w) by accumulated attention s_glo, the
 * last w; all entries when len <= B. keep has room for len; *n its size. */
static em_status importance_keep(const ems__ctx *x, const ems_head *h, int *keep, int *n)
{
    int len = h->len, B = x->B, initial = x->cfg->slk_initial, w = imp_window(x);
    if (len <= B) {
        for (int j = 0; j < len; j++)
            keep[j] = j;
        *n = len;
        return EM_OK;
    }
    int m = len - w - initial, k = 0;
    int *sel = malloc(sizeof(int) * (size_t)(m > 0 ? m : 1));
    if (!sel)
        return EM_ENOMEM;
    em_status st = ems__topk(h->s_glo + initial, m, B - initial - w, sel, &k);
    for (int i = 0; i < k; i++)
        sel[i] += initial;
    if (st == EM_OK)
        *n = ems__keep_union(len, initial, sel, k, w, keep);
    free(sel);
    return st;
}

/* Newest ring row r back (r = 0: the newest). */
static const float *ring_row(const ems_head *h, int r)
{
    int slot = ((h->loc_newest - r) % h->w_loc + h->w_loc) % h->w_loc;
    return h->loc + (size_t)slot * h->cap;
}

/* Per-head lazy score: decode variant = newest row; prefill variant = mean of the last
 * n_last rows (row r back from the newest belongs to the query at newest position - r).
 * Test recent: mass on initial + recent (span) entries; importance: mass on importance_keep. */
static em_status head_score(const ems__ctx *x, const ems_head *h, float *out)
{
    const ems_config *cfg = x->cfg;
    *out = 0.0f;
    if (!h->loc || h->loc_newest < 0 || h->len == 0)
        return EM_OK;
    int newest = h->pos[h->len - 1];
    int nr = !cfg->slk_prefill                ? 1
             : cfg->slk_n_last < h->loc_count ? cfg->slk_n_last
                                              : h->loc_count;
    int span = cfg->slk_prefill ? cfg->slk_span : recent_of(x);
    int *keep = NULL, nk = 0;
    if (cfg->slk_test) {
        keep = malloc(sizeof(int) * (size_t)h->len);
        em_status st = keep ? importance_keep(x, h, keep, &nk) : EM_ENOMEM;
        if (st != EM_OK) {
            free(keep);
            return st;
        }
    }
    float s = 0.0f;
    for (int r = 0; r < nr; r++) {
        const float *row = ring_row(h, r);
        if (!cfg->slk_test) {
            s += row_mass(h, row, cfg->slk_initial, span, newest - r);
            continue;
        }
        float m = 0.0f;
        for (int i = 0; i < nk; i++)
            m += row[keep[i]];
        s += m;
    }
    free(keep);
    *out = cfg->slk_prefill ? (nr > 0 ? s / (float)nr : 0.0f) : s;
    return EM_OK;
}

static int decide_now(const ems__ctx *x, int len0)
{
    if (x->ps->prefill_seen) {
        return x->cfg->slk_prefill ? x->phase == EMS_PHASE_PREFILL_END
                                   : x->phase == EMS_PHASE_DECODE;
    }
    return x->phase == EMS_PHASE_DECODE && ems__due(x, len0, x->B);
}

/* A lazy head keeps initial + recent (test recent) or its importance set. */
static em_status trim(ems__ctx *x, ems_head *h, int initial, int recent)
{
    if (!x->cfg->slk_test && h->len <= initial + recent)
        return EM_OK;
    if (x->cfg->slk_test && h->len <= x->B)
        return EM_OK;
    int *keep = malloc(sizeof(int) * (size_t)h->len);
    if (!keep)
        return EM_ENOMEM;
    em_status st = EM_OK;
    int n = 0;
    if (x->cfg->slk_test)
        st = importance_keep(x, h, keep, &n);
    else
        n = ems__keep_union(h->len, initial, NULL, 0, recent, keep);
    if (st == EM_OK)
        ems__apply_keep(x, h, keep, n);
    free(keep);
    return st;
}

/* simlayerkv.inner: a non-lazy layer compressed by the inner method at the same budget; the
 * step that decided the layer is the inner method's prefill-end step. */
static em_status inner_layer(ems__ctx *x, int l, int just)
{
    ems_config in;
    ems_config_slk_inner(x->cfg, &in);
    ems__ctx y = *x;
    y.cfg = &in;
    y.N = ems_config_every(&in);
    if (just)
        y.phase = EMS_PHASE_PREFILL_END;
    switch (in.method) {
    case EMS_METHOD_EMS:
        return ems__ems_layer(&y, l);
    case EMS_METHOD_H2O:
        return ems__h2o_layer(&y, l);
    case EMS_METHOD_SNAPKV:
        return ems__snapkv_layer(&y, l);
    default:
        return EM_OK;
    }
}

em_status ems__simlayer_layer(ems__ctx *x, int l)
{
    ems_cache *c = x->c;
    ems__layer_state *ls = &x->ps->layer[l];
    int initial = x->cfg->slk_initial, recent = recent_of(x);
    int just = 0;
    if (ls->lazy < 0) {
        if (!decide_now(x, ems_cache_head(c, l, 0)->len))
            return EM_OK;
        float *buf = calloc((size_t)x->H, sizeof(float));
        if (!buf)
            return EM_ENOMEM;
        em_status st = EM_OK;
        for (int h = 0; h < c->n_head_kv && st == EM_OK; h++)
            st = head_score(x, ems_cache_head(c, l, h), &buf[c->kv_head0 + h]);
        if (st == EM_OK)
            st = ems__reduce(x, buf, (size_t)x->H);
        if (st != EM_OK) {
            free(buf);
            return st;
        }
        float s = 0.0f;
        for (int g = 0; g < x->H; g++)
            s += buf[g];
        free(buf);
        ls->lazy = s / (float)x->H > x->cfg->slk_delta;
        just = 1;
        int n_dec = 0, n_lazy = 0;
        for (int k = 0; k < c->n_layer; k++) {
            n_dec += x->ps->layer[k].lazy >= 0;
            n_lazy += x->ps->layer[k].lazy == 1;
        }
        if (n_dec == c->n_layer)
            x->ps->st.n_lazy_layers = n_lazy;
    }
    if (ls->lazy == 0)
        return inner_layer(x, l, just);
    int kept = x->cfg->slk_test ? x->B : initial + recent;
    em_status st = EM_OK;
    for (int h = 0; h < c->n_head_kv && st == EM_OK; h++) {
        ems_head *hh = ems_cache_head(c, l, h);
        if (just || (x->cfg->slk_retrim && ems__due(x, hh->len, kept)))
            st = trim(x, hh, initial, recent);
    }
    return st;
}
