/* EMS fast path (methods.md 1.3-1.6, 1.14), applying the plans of ems_plan.c: ONE scatter over
 * all due heads of a layer into a [heads][1 + centres][hd] accumulator, slot 0 of each head
 * being the zero class - eviction and merging in one pass whatever each head's split. The
 * zero-class slot is never read, so its members are skipped rather than accumulated (on a CPU
 * summing them only to throw the sum away costs ~25 % of the step at 4K tokens; the result is
 * the same). With ems.zero_class = 0 the same classes are applied as two
 * sequential per-head passes (evict, then merge each centre's members). Both accumulate
 * members in increasing entry order, so they give bit-identical caches. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/ems_plan.h"
#include "ems/quant.h"

typedef struct slot_acc {
    double w, knorm, sq, mass;
    int cnt, members;
} slot_acc;

/* Adds entry j of h with weight wt into one slot. aloc[0..w_loc) ring sums, aloc[w_loc] s_glo. */
static void accumulate(const ems_head *h, int j, double wt, const ems_config *cfg, slot_acc *a,
                       double *ak, double *av, double *aloc)
{
    int hd = h->hd;
    const float *k = h->k + (size_t)j * hd, *v = h->v + (size_t)j * hd;
    if (cfg->ems_key_merge == EMS_KMERGE_DIRNORM) {
        double n = 0.0;
        for (int d = 0; d < hd; d++)
            n += (double)k[d] * k[d];
        n = sqrt(n);
        for (int d = 0; d < hd; d++)
            ak[d] += n > 0.0 ? wt * k[d] / n : 0.0;
        a->knorm += wt * n;
    } else {
        for (int d = 0; d < hd; d++)
            ak[d] += wt * k[d];
    }
    for (int d = 0; d < hd; d++)
        av[d] += wt * v[d];
    for (int r = 0; r < h->w_loc; r++)
        aloc[r] += h->loc[(size_t)r * h->cap + j];
    aloc[h->w_loc] += h->s_glo[j];
    a->w += wt;
    a->sq += h->s_sq[j];
    a->mass += h->mass[j];
    if (h->cnt[j] > a->cnt)
        a->cnt = h->cnt[j];
    a->members++;
}

/* Writes the merged centre c: K (unit direction x weighted mean norm, or weighted mean),
 * V (weighted mean), summed statistics and ring rows, mass, max count. */
static void finalize(ems_head *h, int c, const slot_acc *a, const double *ak, const double *av,
                     const double *aloc, const ems_config *cfg)
{
    int hd = h->hd;
    float *k = h->k + (size_t)c * hd, *v = h->v + (size_t)c * hd;
    if (cfg->ems_key_merge == EMS_KMERGE_DIRNORM) {
        double nn = 0.0;
        for (int d = 0; d < hd; d++)
            nn += ak[d] * ak[d];
        nn = sqrt(nn);
        double scale = nn > 0.0 ? (a->knorm / a->w) / nn : 0.0;
        for (int d = 0; d < hd; d++)
            k[d] = (float)(ak[d] * scale);
    } else {
        for (int d = 0; d < hd; d++)
            k[d] = (float)(ak[d] / a->w);
    }
    for (int d = 0; d < hd; d++)
        v[d] = (float)(av[d] / a->w);
    h->s_glo[c] = (float)aloc[h->w_loc];
    h->s_sq[c] = (float)a->sq;
    h->cnt[c] = a->cnt;
    h->mass[c] = (float)a->mass;
    h->kbias[c] = logf((float)a->mass);
    for (int r = 0; r < h->w_loc; r++)
        h->loc[(size_t)r * h->cap + c] = (float)aloc[r];
}

static void account(ems__ctx *x, const ems_head *h, const ems__plan *p)
{
    for (int j = 0; j < p->len; j++) {
        if (p->cls[j] == 0)
            x->ps->st.n_evicted++;
        if (p->cls[j] == 0)
            x->ps->st.mass_evicted += h->mass[j];
        if (p->cls[j] > 0 && !p->is_centre[j])
            x->ps->st.n_merged++;
    }
    x->ps->st.n_events++;
}

static em_status apply_batched(ems__ctx *x, int l, ems__plan *pl, int n_due)
{
    ems_cache *c = x->c;
    int hd = c->hd, wl = c->heads[0].w_loc;
    size_t n_slots = 0;
    size_t *base = malloc(sizeof(size_t) * (size_t)(n_due + 1));
    for (int i = 0; base && i < n_due; i++) {
        base[i] = n_slots;
        n_slots += (size_t)pl[i].k + 1; /* slot 0 = zero class */
    }
    slot_acc *acc = calloc(n_slots + 1, sizeof *acc);
    double *ak = calloc((n_slots + 1) * hd, sizeof(double));
    double *av = calloc((n_slots + 1) * hd, sizeof(double));
    double *aloc = calloc((n_slots + 1) * (wl + 1), sizeof(double));
    em_status st = (base && acc && ak && av && aloc) ? EM_OK : EM_ENOMEM;
    /* the scatter: every candidate of every due head into its slot (0 = zero class) */
    for (int i = 0; i < n_due && st == EM_OK; i++) {
        ems_head *h = ems_cache_head(c, l, pl[i].h);
        for (int j = 0; j < h->len; j++) {
            int s = pl[i].cls[j];
            if (s <= 0)
                continue; /* sink / window: kept verbatim; zero class: discarded unread */
            size_t q = base[i] + (size_t)s;
            accumulate(h, j, pl[i].wt[j], x->cfg, &acc[q], ak + q * hd, av + q * hd,
                       aloc + q * (wl + 1));
        }
    }
    for (int i = 0; i < n_due && st == EM_OK; i++) {
        ems__plan *p = &pl[i];
        ems_head *h = ems_cache_head(c, l, p->h);
        int n_upd = 0;
        for (int s = 1; s <= p->k; s++) {
            size_t q = base[i] + (size_t)s;
            if (acc[q].members <= 1)
                continue; /* centre alone: unchanged, bit-exact */
            finalize(h, p->cent[s - 1], &acc[q], ak + q * hd, av + q * hd, aloc + q * (wl + 1),
                     x->cfg);
            p->upd[n_upd++] = p->cent[s - 1];
        }
        if (h->qstate && n_upd)
            st = ems_quant_on_update(h, p->upd, n_upd);
        int n = 0;
        for (int j = 0; j < h->len; j++) {
            if (p->cls[j] < 0 || p->is_centre[j])
                p->keep[n++] = j;
        }
        account(x, h, p);
        ems_head_compact(h, p->keep, n);
    }
    free(base), free(acc), free(ak), free(av), free(aloc);
    return st;
}

static em_status apply_sequential(ems__ctx *x, int l, ems__plan *p)
{
    ems_head *h = ems_cache_head(x->c, l, p->h);
    int hd = h->hd, wl = h->w_loc;
    account(x, h, p);
    /* pass 1: eviction - drop the zero class, carrying classes, weights, centre flags along */
    int n = 0;
    for (int j = 0; j < h->len; j++) {
        if (p->cls[j] != 0)
            p->keep[n++] = j;
    }
    for (int i = 0; i < n; i++) {
        int j = p->keep[i];
        p->cls[i] = p->cls[j];
        p->wt[i] = p->wt[j];
        p->is_centre[i] = p->is_centre[j];
    }
    ems_head_compact(h, p->keep, n);
    /* pass 2: merging - for each centre, its members in entry order (the centre included) */
    double *ak = malloc(sizeof(double) * hd), *av = malloc(sizeof(double) * hd);
    double *aloc = malloc(sizeof(double) * (wl + 1));
    em_status st = (ak && av && aloc) ? EM_OK : EM_ENOMEM;
    int n_upd = 0;
    for (int s = 1; s <= p->k && st == EM_OK; s++) {
        slot_acc a = {0};
        int ci = -1;
        memset(ak, 0, sizeof(double) * hd);
        memset(av, 0, sizeof(double) * hd);
        memset(aloc, 0, sizeof(double) * (wl + 1));
        for (int i = 0; i < h->len; i++) {
            if (p->cls[i] != s)
                continue;
            if (p->is_centre[i])
                ci = i;
            accumulate(h, i, p->wt[i], x->cfg, &a, ak, av, aloc);
        }
        if (a.members <= 1 || ci < 0)
            continue;
        finalize(h, ci, &a, ak, av, aloc, x->cfg);
        p->upd[n_upd++] = ci;
    }
    if (st == EM_OK && h->qstate && n_upd)
        st = ems_quant_on_update(h, p->upd, n_upd);
    int m = 0;
    for (int i = 0; i < h->len; i++) {
        if (p->cls[i] < 0 || p->is_centre[i])
            p->keep[m++] = i;
    }
    ems_head_compact(h, p->keep, m);
    free(ak), free(av), free(aloc);
    return st;
}

em_status ems__ems_layer(ems__ctx *x, int l)
{
    ems__plan *pl = NULL;
    int n_due = 0;
    em_status st = ems__ems_plan_layer(x, l, &pl, &n_due);
    if (st == EM_OK && n_due > 0) {
        if (x->cfg->ems_zero_class) {
            st = apply_batched(x, l, pl, n_due);
        } else {
            for (int i = 0; i < n_due && st == EM_OK; i++)
                st = apply_sequential(x, l, &pl[i]);
        }
    }
    ems__plans_free(pl, n_due);
    for (int h = 0; h < x->c->n_head_kv; h++)
        ems_quant_settle(ems_cache_head(x->c, l, h)); /* the plan materialised quantized heads */
    return st;
}
