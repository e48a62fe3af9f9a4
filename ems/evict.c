/* Eviction baselines, one layer function each (fast path: scores for all due heads of a layer,
 * deterministic top-k by selection). Specifications: methods.md section 4 and 2-3; the scalar
 * references in ems/ref/baseline_ref.c are what tests compare these against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/footprint.h"
#include "ems/policy_impl.h"

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ems_head *head(ems__ctx *x, int l, int h)
{
    return ems_cache_head(x->c, l, h);
}

/* scratch sized for the longest head of the layer */
typedef struct scratch {
    float *s, *t;
    int *sel, *keep;
} scratch;

/* EM_ENOMEM when a buffer cannot be allocated (scratch_free is needed either way). */
static em_status scratch_get(scratch *sc, ems__ctx *x, int l)
{
    int n = 1;
    for (int h = 0; h < x->c->n_head_kv; h++) {
        if (head(x, l, h)->len > n)
            n = head(x, l, h)->len;
    }
    sc->s = malloc(sizeof(float) * (size_t)n);
    sc->t = malloc(sizeof(float) * (size_t)n);
    sc->sel = malloc(sizeof(int) * (size_t)n);
    sc->keep = malloc(sizeof(int) * (size_t)n);
    return sc->s && sc->t && sc->sel && sc->keep ? EM_OK : EM_ENOMEM;
}

static void scratch_free(scratch *sc)
{
    free(sc->s);
    free(sc->t);
    free(sc->sel);
    free(sc->keep);
}

/* Runs fn on every KV head of layer l (fn decides whether the head is due), with one scratch
 * sized for the layer; stops at the first failure and returns it. */
typedef em_status (*head_fn)(ems__ctx *x, ems_head *hh, int l, scratch *sc);

static em_status each_head(ems__ctx *x, int l, head_fn fn)
{
    scratch sc;
    em_status st = scratch_get(&sc, x, l);
    for (int h = 0; h < x->c->n_head_kv && st == EM_OK; h++)
        st = fn(x, head(x, l, h), l, &sc);
    scratch_free(&sc);
    return st;
}

/* top (B - w - sinks) of score among [sinks, len - w), plus sinks and window; the head is
 * unchanged on failure */
static em_status keep_top(ems__ctx *x, ems_head *hh, const float *score, int B, int w, int sinks,
                          scratch *sc)
{
    int m = hh->len - w - sinks, k;
    em_status st = ems__topk(score + sinks, m, B - w - sinks, sc->sel, &k);
    if (st != EM_OK)
        return st;
    for (int i = 0; i < k; i++)
        sc->sel[i] += sinks;
    int n = ems__keep_union(hh->len, sinks, sc->sel, k, w, sc->keep);
    ems__apply_keep(x, hh, sc->keep, n);
    return EM_OK;
}

em_status ems__streaming_layer(ems__ctx *x, int l)
{
    int s = ems_config_sinks(x->cfg);
    for (int h = 0; h < x->c->n_head_kv; h++) {
        ems_head *hh = head(x, l, h);
        if (!ems__due(x, hh->len, x->B))
            continue;
        int *keep = malloc(sizeof(int) * (size_t)x->B);
        if (!keep)
            return EM_ENOMEM;
        int n = ems__keep_union(hh->len, s, NULL, 0, x->B - s, keep);
        ems__apply_keep(x, hh, keep, n);
        free(keep);
    }
    return EM_OK;
}

static em_status h2o_head(ems__ctx *x, ems_head *hh, int l, scratch *sc)
{
    (void)l;
    if (!ems__due(x, hh->len, x->B))
        return EM_OK;
    return keep_top(x, hh, hh->s_glo, x->B, ems_config_window(x->cfg, x->B), 0, sc);
}

em_status ems__h2o_layer(ems__ctx *x, int l)
{
    return each_head(x, l, h2o_head);
}

void ems__snapkv_pool(const float *v, int m, int kernel, int avg, float *out)
{
    int r = kernel / 2;
    for (int j = 0; j < m; j++) {
        int a = j - r < 0 ? 0 : j - r, b = j + r >= m ? m - 1 : j + r;
        float acc = avg ? 0.0f : -INFINITY;
        for (int i = a; i <= b; i++)
            acc = avg ? acc + v[i] : fmaxf(acc, v[i]);
        out[j] = avg ? acc / (float)kernel : acc; /* avg: zero padding, count_include_pad */
    }
}

static em_status snapkv_head(ems__ctx *x, ems_head *hh, int B, int w, scratch *sc)
{
    ems__local_score(hh, sc->s);
    int m = hh->len - w;
    ems__snapkv_pool(sc->s, m, x->cfg->snapkv_kernel, x->cfg->snapkv_avgpool, sc->t);
    return keep_top(x, hh, sc->t, B, w, 0, sc);
}

static em_status snapkv_due_head(ems__ctx *x, ems_head *hh, int l, scratch *sc)
{
    (void)l;
    if (!ems__due(x, hh->len, x->B))
        return EM_OK;
    return snapkv_head(x, hh, x->B, ems_config_window(x->cfg, x->B), sc);
}

em_status ems__snapkv_layer(ems__ctx *x, int l)
{
    return each_head(x, l, snapkv_due_head);
}

int ems__pyramid_keep(int B, int w, int n, int L, int beta, int l)
{
    return ems_pyramid_keep(B, w, n, L, beta, l);
}

static em_status pyramid_head(ems__ctx *x, ems_head *hh, int l, scratch *sc)
{
    int w = ems_config_window(x->cfg, x->B);
    int Bl = w + ems__pyramid_keep(x->B, w, hh->len, x->c->n_layer, x->cfg->pyramid_beta, l);
    if (Bl < 1)
        Bl = 1;
    if (!ems__due(x, hh->len, Bl))
        return EM_OK;
    return snapkv_head(x, hh, Bl, w, sc);
}

em_status ems__pyramid_layer(ems__ctx *x, int l)
{
    return each_head(x, l, pyramid_head);
}

static em_status tova_head(ems__ctx *x, ems_head *hh, int l, scratch *sc)
{
    (void)l;
    const float *row = ems__newest_row(hh);
    if (!row || !ems__due(x, hh->len, x->B))
        return EM_OK;
    return keep_top(x, hh, row, x->B, 0, 0, sc);
}

/* TOVA: per head (each head decides when it is due: after a failed step some heads of a
 * layer may be compressed and others not), or one head-averaged selection per layer (reduced
 * over workers; the heads of a layer stay aligned). */
em_status ems__tova_layer(ems__ctx *x, int l)
{
    ems_cache *c = x->c;
    if (x->cfg->tova_per_head)
        return each_head(x, l, tova_head);
    int len = head(x, l, 0)->len;
    if (!ems__due(x, len, x->B))
        return EM_OK;
    scratch sc;
    em_status st = scratch_get(&sc, x, l);
    if (st != EM_OK) {
        scratch_free(&sc);
        return st;
    }
    for (int h = 1; h < c->n_head_kv; h++) {
        if (head(x, l, h)->len != len)
            st = EM_EINVAL; /* per-layer TOVA keeps heads aligned */
    }
    float *buf = calloc((size_t)x->H * len, sizeof(float));
    if (!buf || st != EM_OK) {
        free(buf);
        scratch_free(&sc);
        return st != EM_OK ? st : EM_ENOMEM;
    }
    for (int h = 0; h < c->n_head_kv; h++) {
        const float *row = ems__newest_row(head(x, l, h));
        if (row)
            memcpy(buf + (size_t)(c->kv_head0 + h) * len, row, sizeof(float) * len);
    }
    st = ems__reduce(x, buf, (size_t)x->H * len);
    if (st == EM_OK) {
        for (int j = 0; j < len; j++) {
            float s = 0.0f;
            for (int g = 0; g < x->H; g++)
                s += buf[(size_t)g * len + j];
            sc.s[j] = s / (float)x->H;
        }
        int k;
        st = ems__topk(sc.s, len, x->B, sc.sel, &k);
        for (int h = 0; h < c->n_head_kv && st == EM_OK; h++)
            ems__apply_keep(x, head(x, l, h), sc.sel, k);
    }
    free(buf);
    scratch_free(&sc);
    return st;
}

/* RoCo (EasyKV): iteratively evict the lowest importance (mean attention; roco.score=acc:
 * accumulated) inside the eviction scope: the K entries with the smallest std (sinks and the
 * last `protect` entries have std = +inf), K = max(B - ratio*B - sinks, stride), or with
 * roco.std_top = r every evictable entry but the r of largest std (at least `stride`). */
static em_status roco_head(ems__ctx *x, ems_head *hh, scratch *sc)
{
    const ems_config *cfg = x->cfg;
    int B = x->B;
    int K = B - (int)lrintf(cfg->roco_recent_ratio * (float)B) - cfg->roco_sinks;
    float *mean = sc->s, *sd = sc->t;
    int *order = malloc(sizeof(int) * (size_t)hh->len);
    char *gone = malloc((size_t)hh->len);
    if (!order || !gone) {
        free(order);
        free(gone);
        return EM_ENOMEM;
    }
    while (hh->len > B) {
        int n = hh->len;
        int stride =
            (cfg->roco_stride == 0 || x->phase != EMS_PHASE_DECODE) ? n - B : cfg->roco_stride;
        if (stride > n - B)
            stride = n - B;
        int n_ok = 0;
        for (int j = 0; j < n; j++) {
            float c = hh->cnt[j] > 0 ? (float)hh->cnt[j] : 1.0f;
            mean[j] = hh->s_glo[j] / c;
            float var = hh->s_sq[j] / c - mean[j] * mean[j];
            sd[j] = sqrtf(var > 0.0f ? var : 0.0f);
            if (cfg->roco_acc)
                mean[j] = hh->s_glo[j]; /* importance = accumulated attention */
            if (j < cfg->roco_sinks || j >= n - cfg->roco_protect) {
                sd[j] = INFINITY;
            } else {
                n_ok++;
            }
            sd[j] = -sd[j]; /* rank ascending std as descending -std */
        }
        int Kc = cfg->roco_std_top >= 0 ? n_ok - cfg->roco_std_top : K;
        if (Kc < stride)
            Kc = stride;
        if (Kc > n_ok)
            Kc = n_ok;
        if (stride > Kc)
            stride = Kc;
        if (stride <= 0)
            break;
        ems__rank(sd, n, order); /* order[0..Kc) = smallest std (ties: earlier) = scope */
        qsort(order, (size_t)Kc, sizeof(int), cmp_int); /* scope in position order */
        for (int i = 0; i < Kc; i++)
            sd[i] = mean[order[i]];
        int *ev = sc->sel;
        ems__rank(sd, Kc, ev); /* by importance descending, ties: earlier entry first */
        memset(gone, 0, (size_t)n);
        for (int i = Kc - stride; i < Kc; i++)
            gone[order[ev[i]]] = 1; /* lowest importance */
        int nk = 0;
        for (int j = 0; j < n; j++) {
            if (!gone[j])
                sc->keep[nk++] = j;
        }
        ems__apply_keep(x, hh, sc->keep, nk);
    }
    free(order);
    free(gone);
    return EM_OK;
}

static em_status roco_due_head(ems__ctx *x, ems_head *hh, int l, scratch *sc)
{
    (void)l;
    if (!ems__due(x, hh->len, x->B))
        return EM_OK;
    return roco_head(x, hh, sc);
}

em_status ems__roco_layer(ems__ctx *x, int l)
{
    return each_head(x, l, roco_due_head);
}
