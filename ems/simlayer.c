/* SimLayerKV (methods.md 2): a layer is lazy when its head-averaged attention mass on the
 * initial entries plus the recent entries exceeds delta; lazy layers keep initial + recent,
 * other layers keep everything. The decision is taken once per layer, from the global mean over
 * all KV heads (buffer indexed by global head, reduced over workers), and never revisited.
 * Decision time: the first decode step after prefill (official), or with simlayerkv.decide =
 * prefill at the end of prefill from the last n_last queries. A sequence streamed without a
 * prefill decides on the first step at which the layer is over budget + N. */
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

/* Per-head lazy score: decode variant = newest row; prefill variant = mean of the last
 * n_last rows (row r back from the newest belongs to the query at newest position - r). */
static float head_score(const ems__ctx *x, const ems_head *h)
{
    const ems_config *cfg = x->cfg;
    if (!h->loc || h->loc_newest < 0 || h->len == 0)
        return 0.0f;
    int newest = h->pos[h->len - 1];
    if (!cfg->slk_prefill) {
        return row_mass(h, h->loc + (size_t)h->loc_newest * h->cap, cfg->slk_initial, recent_of(x),
                        newest);
    }
    int nr = cfg->slk_n_last < h->loc_count ? cfg->slk_n_last : h->loc_count;
    float s = 0.0f;
    for (int r = 0; r < nr; r++) {
        int slot = ((h->loc_newest - r) % h->w_loc + h->w_loc) % h->w_loc;
        s += row_mass(h, h->loc + (size_t)slot * h->cap, cfg->slk_initial, cfg->slk_span,
                      newest - r);
    }
    return nr > 0 ? s / (float)nr : 0.0f;
}

static int decide_now(const ems__ctx *x, int len0)
{
    if (x->ps->prefill_seen) {
        return x->cfg->slk_prefill ? x->phase == EMS_PHASE_PREFILL_END
                                   : x->phase == EMS_PHASE_DECODE;
    }
    return x->phase == EMS_PHASE_DECODE && ems__due(x, len0, x->B);
}

static void trim(ems__ctx *x, ems_head *h, int initial, int recent)
{
    if (h->len <= initial + recent)
        return;
    int *keep = malloc(sizeof(int) * (size_t)(initial + recent));
    if (!keep)
        return;
    int n = ems__keep_union(h->len, initial, NULL, 0, recent, keep);
    ems__apply_keep(x, h, keep, n);
    free(keep);
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
        for (int h = 0; h < c->n_head_kv; h++) {
            buf[c->kv_head0 + h] = head_score(x, ems_cache_head(c, l, h));
        }
        em_status st = ems__reduce(x, buf, (size_t)x->H);
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
    if (ls->lazy != 1)
        return EM_OK;
    for (int h = 0; h < c->n_head_kv; h++) {
        ems_head *hh = ems_cache_head(c, l, h);
        if (just || (x->cfg->slk_retrim && ems__due(x, hh->len, initial + recent))) {
            trim(x, hh, initial, recent);
        }
    }
    return EM_OK;
}
