/* EMS planning: Global-Local score with mean alignment (1.3, 1.14.1), centres = top candidates
 * (1.14.3), per-head adaptive budgets across the heads of a layer (1.14.5, through the reduce
 * hook so every worker decides the same), and the class of every dropped candidate: its most
 * similar centre when similar enough, else the zero class (1.14.4; the 1.5 placeholder split is
 * selectable). Every inferred detail is a parameter of ems_config. */
#include "ems/ems_plan.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/quant.h"

em_status ems__ems_score(const ems_config *cfg, const ems_head *h, int lo, int hi, float *s)
{
    int m = hi - lo;
    if (m <= 0)
        return EM_OK;
    float *loc = malloc(sizeof(float) * (size_t)h->len);
    if (!loc)
        return EM_ENOMEM;
    ems__local_score(h, loc);
    double mg = 0.0, ml = 0.0;
    for (int j = lo; j < hi; j++) {
        float g = h->s_glo[j];
        if (cfg->ems_glo_mean && h->cnt[j] > 0)
            g /= (float)h->cnt[j];
        s[j] = g; /* s holds glo until combined */
        mg += g;
        ml += loc[j];
    }
    mg /= m;
    ml /= m;
    for (int j = lo; j < hi; j++) {
        float g = s[j], l = loc[j];
        switch (cfg->ems_score) {
        case EMS_SCORE_GLOBAL:
            break;
        case EMS_SCORE_LOCAL:
            s[j] = l;
            break;
        default:
            if (cfg->ems_align == EMS_ALIGN_MAX) {
                float a = mg > 0.0 ? cfg->ems_gw * g * (float)(ml / mg) : 0.0f;
                s[j] = a > l ? a : l;
            } else if (cfg->ems_align == EMS_ALIGN_RATIO) {
                float a = mg > 0.0 ? g / (float)mg : 0.0f, b = ml > 0.0 ? l / (float)ml : 0.0f;
                s[j] = cfg->ems_lambda * a + (1.0f - cfg->ems_lambda) * b;
            } else {
                s[j] = cfg->ems_lambda * g + (1.0f - cfg->ems_lambda) * (l - (float)ml + (float)mg);
            }
        }
    }
    if (cfg->ems_pool > 1) { /* max over [j - r, j + r] inside the candidates */
        int r = cfg->ems_pool / 2;
        memcpy(loc + lo, s + lo, sizeof(float) * (size_t)m);
        for (int j = lo; j < hi; j++) {
            int a = j - r < lo ? lo : j - r, b = j + r >= hi ? hi - 1 : j + r;
            float mx = loc[a];
            for (int t = a + 1; t <= b; t++)
                mx = loc[t] > mx ? loc[t] : mx;
            s[j] = mx;
        }
    }
    free(loc);
    return EM_OK;
}

static float cosine(const float *a, const float *b, int n)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int d = 0; d < n; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return aa > 0.0 && bb > 0.0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

float ems__ems_sim(const ems_config *cfg, const ems_head *h, int a, int b)
{
    int hd = h->hd;
    float ck = cosine(h->k + (size_t)a * hd, h->k + (size_t)b * hd, hd);
    if (cfg->ems_sim == EMS_SIM_K)
        return ck;
    return ck * cosine(h->v + (size_t)a * hd, h->v + (size_t)b * hd, hd);
}

void ems__plans_free(ems__plan *p, int n)
{
    for (int i = 0; p && i < n; i++) {
        free(p[i].cls), free(p[i].cent), free(p[i].is_centre), free(p[i].wt);
        free(p[i].keep), free(p[i].upd);
    }
    free(p);
}

/* Per-plan scratch that survives planning: score and candidate range. */
typedef struct work {
    float *s;
    int lo, hi;
} work;

/* Head-wise budgets (1.14.5): every head first gets its top F candidates, the remaining
 * H*kglob - sum F slots go to the largest normalised scores s/sum(s) over all heads of the
 * layer (ties: lower global head, then higher-ranked entry). Sets pl[i].k. */
static em_status alloc_headwise(ems__ctx *x, int l, ems__plan *pl, work *wk, int n, int kglob)
{
    ems_cache *c = x->c;
    int H = x->H, F = (int)lrintf(x->cfg->ems_floor * (float)kglob);
    if (F < 1)
        F = 1;
    float *b1 = calloc((size_t)3 * H, sizeof(float));
    int **order = calloc((size_t)n, sizeof(int *));
    if (!b1 || !order) {
        free(b1), free(order);
        return EM_ENOMEM;
    }
    em_status st = EM_OK;
    for (int i = 0; i < n; i++) {
        int g = c->kv_head0 + pl[i].h, m = wk[i].hi - wk[i].lo;
        int Fh = F < m ? F : m;
        order[i] = malloc(sizeof(int) * (size_t)(m > 0 ? m : 1));
        if (!order[i])
            st = EM_ENOMEM;
        b1[g] = (float)(m - Fh);
        b1[H + g] = (float)Fh;
        b1[2 * H + g] = (float)(pl[i].len - m);
    }
    if (st == EM_OK)
        st = ems__reduce(x, b1, (size_t)3 * H);
    /* a head gets at most R slots beyond its floor: only its top Fh + R entries are ranked */
    int mmax = 0;
    long f_all = 0;
    for (int g = 0; g < H; g++) {
        if ((int)b1[g] > mmax)
            mmax = (int)b1[g];
        f_all += (long)b1[H + g];
    }
    long r_cap = (long)H * kglob - f_all;
    if (r_cap < mmax)
        mmax = r_cap > 0 ? (int)r_cap : 0;
    float *b2 = st == EM_OK ? calloc((size_t)H * (mmax > 0 ? mmax : 1), sizeof(float)) : NULL;
    if (st == EM_OK && !b2)
        st = EM_ENOMEM;
    for (int i = 0; i < n && st == EM_OK; i++) {
        int g = c->kv_head0 + pl[i].h, m = wk[i].hi - wk[i].lo, Fh = (int)b1[H + g];
        const float *s = wk[i].s + wk[i].lo;
        ems__rank_top(s, m, Fh + mmax < m ? Fh + mmax : m, order[i]);
        double sum = 0.0;
        for (int j = 0; j < m; j++)
            sum += s[j];
        float *row = b2 + (size_t)g * mmax;
        for (int r = 0; r < mmax; r++) {
            int e = Fh + r;
            row[r] = e < m ? (sum > 0.0 ? (float)(s[order[i][e]] / sum) : 0.0f) : -FLT_MAX;
        }
    }
    if (st == EM_OK && mmax > 0)
        st = ems__reduce(x, b2, (size_t)H * mmax);
    if (st == EM_OK) {
        long rem_total = 0, f_total = 0;
        for (int g = 0; g < H; g++) {
            rem_total += (long)b1[g];
            f_total += (long)b1[H + g];
        }
        long R = (long)H * kglob - f_total;
        if (R > rem_total)
            R = rem_total;
        int *ptr = calloc((size_t)H, sizeof(int));
        if (!ptr)
            st = EM_ENOMEM;
        for (long r = 0; ptr && r < R; r++) {
            int best = -1;
            for (int g = 0; g < H; g++) {
                if (ptr[g] >= (int)b1[g])
                    continue;
                if (best < 0 || b2[(size_t)g * mmax + ptr[g]] > b2[(size_t)best * mmax + ptr[best]])
                    best = g;
            }
            ptr[best]++;
        }
        double total = 0.0;
        for (int g = 0; ptr && g < H; g++)
            total += b1[2 * H + g] + b1[H + g] + ptr[g];
        for (int i = 0; ptr && i < n; i++) {
            int g = c->kv_head0 + pl[i].h;
            pl[i].k = (int)b1[H + g] + ptr[g];
        }
        if (ptr) {
            ems__layer_state *ls = &x->ps->layer[l];
            ls->compressed = 1;
            ls->total_after = total;
            ls->len0_after = pl[0].len - (wk[0].hi - wk[0].lo) + pl[0].k;
        }
        free(ptr);
    }
    for (int i = 0; i < n; i++)
        free(order[i]);
    free(order), free(b1), free(b2);
    return st;
}

/* Centres and classes of one head (k already set). */
static em_status classify(const ems__ctx *x, ems_head *h, ems__plan *p, const work *wk)
{
    const ems_config *cfg = x->cfg;
    int lo = wk->lo, hi = wk->hi, m = hi - lo;
    const float *s = wk->s;
    if (p->k > m)
        p->k = m;
    p->cent = malloc(sizeof(int) * (size_t)(p->k > 0 ? p->k : 1));
    p->upd = malloc(sizeof(int) * (size_t)(p->k + 1));
    float *best_s = malloc(sizeof(float) * (size_t)p->len);
    int *best_c = malloc(sizeof(int) * (size_t)p->len);
    if (!p->cent || !p->upd || !best_s || !best_c) {
        free(best_s), free(best_c);
        return EM_ENOMEM;
    }
    em_status st = ems__topk(s + lo, m, p->k, p->cent, &p->k);
    if (st != EM_OK) {
        free(best_s), free(best_c);
        return st;
    }
    for (int i = 0; i < p->k; i++)
        p->cent[i] += lo;
    for (int j = 0; j < p->len; j++) {
        p->cls[j] = (j < lo || j >= hi) ? -1 : 0;
        p->is_centre[j] = 0;
        p->wt[j] = cfg->ems_merge_weight == EMS_MW_SCORE ? (s[j] > 0 ? s[j] : 0.0) + 1e-30 : 1.0;
        if (j < lo || j >= hi)
            p->wt[j] = 0.0;
    }
    for (int i = 0; i < p->k; i++) {
        p->cls[p->cent[i]] = i + 1;
        p->is_centre[p->cent[i]] = 1;
    }
    /* best centre of each dropped candidate (ties: lower slot); none needed to evict only */
    double red = 0.0, s_cent = 0.0, s_all = 0.0;
    int n_drop = 0;
    for (int j = lo; j < hi; j++) {
        s_all += s[j] > 0 ? s[j] : 0;
        if (p->is_centre[j])
            s_cent += s[j] > 0 ? s[j] : 0;
        else
            p->keep[n_drop++] = j; /* the dropped candidates, in entry order */
    }
    if (p->k == 0 || cfg->ems_strategy == EMS_STRAT_EVICT)
        goto done; /* all dropped -> zero */
    int all = cfg->ems_strategy == EMS_STRAT_MERGE || cfg->ems_split == EMS_SPLIT_PLACEHOLDER;
    st = ems__nearest_centres(cfg, h, p->cent, p->k, p->keep, n_drop, all, best_s, best_c);
    if (st != EM_OK)
        goto done;
    for (int t = 0; t < n_drop; t++)
        red += best_s[p->keep[t]] > 0 ? best_s[p->keep[t]] : 0;
    /* placeholder split (1.5): only the top N_tbm dropped (by score) may merge */
    int n_tbm = n_drop;
    if (cfg->ems_strategy == EMS_STRAT_EVICT_MERGE && cfg->ems_split == EMS_SPLIT_PLACEHOLDER &&
        n_drop > 0) {
        double r = red / n_drop, sp = s_all > 0 ? s_cent / s_all : 1.0;
        n_tbm = (int)lrint(n_drop * (r < 0 ? 0 : r > 1 ? 1 : r) * (1.0 - sp));
    }
    float *ds = malloc(sizeof(float) * (size_t)(n_drop > 0 ? n_drop : 1));
    int *di = malloc(sizeof(int) * (size_t)(n_drop > 0 ? n_drop : 1));
    int *tsel = malloc(sizeof(int) * (size_t)(n_drop > 0 ? n_drop : 1));
    if (!ds || !di || !tsel) {
        free(ds), free(di), free(tsel), free(best_s), free(best_c);
        return EM_ENOMEM;
    }
    int nd = 0;
    for (int j = lo; j < hi; j++) {
        if (!p->is_centre[j]) {
            di[nd] = j;
            ds[nd++] = s[j];
        }
    }
    int nt;
    st = ems__topk(ds, nd, n_tbm, tsel, &nt);
    for (int t = 0; t < nt; t++) {
        int j = di[tsel[t]];
        if (cfg->ems_strategy == EMS_STRAT_MERGE || best_s[j] >= cfg->ems_tau) {
            p->cls[j] = best_c[j];
        }
    }
    free(ds), free(di), free(tsel);
done:
    free(best_s), free(best_c);
    return st;
}

em_status ems__ems_plan_layer(ems__ctx *x, int l, ems__plan **plans, int *n_due)
{
    ems_cache *c = x->c;
    const ems_config *cfg = x->cfg;
    int Hl = c->n_head_kv, B = x->B, w = ems_config_window(cfg, B), sinks = ems_config_sinks(cfg);
    int kglob = B - w - sinks;
    *plans = NULL;
    *n_due = 0;
    if (kglob < 0)
        kglob = 0;
    int *due = calloc((size_t)Hl, sizeof(int));
    if (!due)
        return EM_ENOMEM;
    int nd = 0;
    if (cfg->ems_headwise) {
        ems__layer_state *ls = &x->ps->layer[l];
        int len0 = ems_cache_head(c, l, 0)->len;
        double total = ls->compressed ? ls->total_after + (double)x->H * (len0 - ls->len0_after)
                                      : (double)x->H * len0;
        int go = x->phase == EMS_PHASE_PREFILL_END
                     ? cfg->compress_prefill && total > (double)x->H * B
                     : total >= (double)x->H * (B + x->N);
        for (int h = 0; h < Hl; h++)
            due[h] = go;
    } else {
        for (int h = 0; h < Hl; h++)
            due[h] = ems__due(x, ems_cache_head(c, l, h)->len, B);
    }
    for (int h = 0; h < Hl; h++)
        nd += due[h];
    if (nd == 0) {
        free(due);
        return EM_OK;
    }
    ems_config scfg = *cfg; /* the score's pooling of this phase */
    scfg.ems_pool = ems_config_pool(cfg, x->phase != EMS_PHASE_DECODE); /* prompt steps */
    ems__plan *pl = calloc((size_t)nd, sizeof *pl);
    work *wk = calloc((size_t)nd, sizeof *wk);
    em_status st = (pl && wk) ? EM_OK : EM_ENOMEM;
    /* similarities and merges read f32 K/V: quantized due heads are materialised until
     * ems__ems_layer settles them */
    for (int h = 0; h < Hl && st == EM_OK; h++) {
        if (due[h])
            st = ems_quant_materialize(ems_cache_head(c, l, h));
    }
    for (int h = 0, i = 0; h < Hl && st == EM_OK; h++) {
        if (!due[h])
            continue;
        ems_head *hh = ems_cache_head(c, l, h);
        ems__plan *p = &pl[i];
        p->h = h;
        p->len = hh->len;
        int wh = w < hh->len ? w : hh->len, sh = sinks < hh->len - wh ? sinks : hh->len - wh;
        wk[i].lo = sh;
        wk[i].hi = hh->len - wh;
        wk[i].s = calloc((size_t)hh->len + 1, sizeof(float));
        p->cls = malloc(sizeof(int) * (size_t)hh->len + 1);
        p->is_centre = malloc((size_t)hh->len + 1);
        p->wt = malloc(sizeof(double) * (size_t)hh->len + 1);
        p->keep = malloc(sizeof(int) * (size_t)hh->len + 1);
        if (!wk[i].s || !p->cls || !p->is_centre || !p->wt || !p->keep)
            st = EM_ENOMEM;
        else
            st = ems__ems_score(&scfg, hh, wk[i].lo, wk[i].hi, wk[i].s);
        p->k = kglob;
        i++;
    }
    if (st == EM_OK && cfg->ems_headwise)
        st = alloc_headwise(x, l, pl, wk, nd, kglob);
    for (int i = 0; i < nd && st == EM_OK; i++) {
        st = classify(x, ems_cache_head(c, l, pl[i].h), &pl[i], &wk[i]);
    }
    for (int i = 0; wk && i < nd; i++)
        free(wk[i].s);
    free(wk), free(due);
    if (st != EM_OK) {
        ems__plans_free(pl, nd);
        return st;
    }
    *plans = pl;
    *n_due = nd;
    return EM_OK;
}
