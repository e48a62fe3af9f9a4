/* Selection helpers shared by every policy: deterministic top-k (ties keep the earlier entry),
 * ranking, local score from the ring of recent attention rows, keep-set assembly and
 * compaction with accounting. */
#define _GNU_SOURCE /* qsort_r */
#include <stdlib.h>
#include <string.h>

#include "ems/policy_impl.h"

/* a ranks before b: larger score, ties -> smaller index */
static inline int before(const float *s, int a, int b)
{
    return s[a] > s[b] || (s[a] == s[b] && a < b);
}

static void swap_i(int *a, int *b)
{
    int t = *a;
    *a = *b;
    *b = t;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Quickselect: afterwards idx[0..k) holds the k best (any order). Median-of-three pivots. */
static void select_k(const float *s, int *idx, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (before(s, idx[mid], idx[lo]))
            swap_i(&idx[mid], &idx[lo]);
        if (before(s, idx[hi], idx[lo]))
            swap_i(&idx[hi], &idx[lo]);
        if (before(s, idx[hi], idx[mid]))
            swap_i(&idx[hi], &idx[mid]);
        int piv = idx[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(s, idx[i], piv))
                i++;
            while (before(s, piv, idx[j]))
                j--;
            if (i <= j) {
                swap_i(&idx[i], &idx[j]);
                i++;
                j--;
            }
        }
        if (k - 1 <= j) {
            hi = j;
        } else if (k - 1 >= i) {
            lo = i;
        } else {
            break;
        }
    }
}

em_status ems__topk(const float *s, int n, int k, int *out, int *n_out)
{
    *n_out = 0;
    if (k > n)
        k = n;
    if (k <= 0)
        return EM_OK;
    int *idx = malloc(sizeof(int) * (size_t)n);
    if (!idx)
        return EM_ENOMEM;
    for (int i = 0; i < n; i++)
        idx[i] = i;
    if (k < n)
        select_k(s, idx, n, k);
    memcpy(out, idx, sizeof(int) * (size_t)k);
    free(idx);
    qsort(out, (size_t)k, sizeof(int), cmp_int);
    *n_out = k;
    return EM_OK;
}

/* qsort_r comparator: the scores travel as the context, so ranking is thread-safe (several
 * caches may be compressed at once, e.g. in-process shards in tests). */
static int cmp_rank(const void *a, const void *b, void *ctx)
{
    const float *s = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    return before(s, y, x) - before(s, x, y); /* -1 when x ranks first */
}

void ems__rank(const float *s, int n, int *order)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof(int), cmp_rank, (void *)s);
}

void ems__rank_top(const float *s, int n, int k, int *order)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    if (k > n)
        k = n;
    if (k <= 0)
        return;
    if (k < n)
        select_k(s, order, n, k);
    qsort_r(order, (size_t)k, sizeof(int), cmp_rank, (void *)s);
}

void ems__local_score(const ems_head *h, float *out)
{
    memset(out, 0, sizeof(float) * (size_t)h->len);
    for (int r = 0; r < h->w_loc && h->loc; r++) {
        const float *row = h->loc + (size_t)r * h->cap;
        for (int j = 0; j < h->len; j++)
            out[j] += row[j];
    }
}

const float *ems__newest_row(const ems_head *h)
{
    if (h->w_loc <= 0 || h->loc_newest < 0 || !h->loc)
        return NULL;
    return h->loc + (size_t)h->loc_newest * h->cap;
}

int ems__keep_union(int len, int sinks, const int *sel, int n_sel, int w, int *keep)
{
    if (sinks > len)
        sinks = len;
    if (w > len)
        w = len;
    int n = 0, s = 0;
    for (int j = 0; j < len; j++) {
        int in = j < sinks || j >= len - w;
        while (s < n_sel && sel[s] < j)
            s++;
        if (s < n_sel && sel[s] == j)
            in = 1;
        if (in)
            keep[n++] = j;
    }
    return n;
}

void ems__apply_keep(ems__ctx *x, ems_head *h, const int *keep, int n)
{
    x->ps->st.n_evicted += h->len - n;
    double m = 0.0;
    for (int j = 0; j < h->len; j++)
        m += h->mass[j];
    for (int i = 0; i < n; i++)
        m -= h->mass[keep[i]];
    x->ps->st.mass_evicted += m;
    x->ps->st.n_events++;
    ems_head_compact(h, keep, n);
}

int ems__due(const ems__ctx *x, int len, int B)
{
    if (B <= 0)
        return 0;
    if (x->phase == EMS_PHASE_PREFILL_END)
        return x->cfg->compress_prefill && len > B;
    return len >= B + x->N;
}

em_status ems__reduce(const ems__ctx *x, float *buf, size_t n)
{
    if (!x->red || !x->red->fn)
        return EM_OK;
    return x->red->fn(x->red->user, buf, n) == EM_OK ? EM_OK : EM_EUNAVAILABLE;
}
