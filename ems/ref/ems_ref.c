/* Scalar reference of EMS for one layer (methods.md 1.3-1.6, 1.14): score, head-wise budgets
 * over all heads of the layer, centres, zero-class assignment, then two plain per-head passes:
 * evict the zero class, merge each centre's members into it. Written for reading, not speed. */
#include "ems/ref/ems_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ems_ref_ems_score(const ems_config *cfg, const ems_head *h, int lo, int hi, float *s)
{
    int m = hi - lo;
    if (m <= 0)
        return;
    float *glo = calloc((size_t)h->len, sizeof(float)),
          *loc = calloc((size_t)h->len, sizeof(float));
    for (int r = 0; r < h->w_loc; r++) {
        for (int j = 0; j < h->len; j++)
            loc[j] += h->loc[(size_t)r * h->cap + j];
    }
    double mg = 0.0, ml = 0.0;
    for (int j = lo; j < hi; j++) {
        glo[j] = h->s_glo[j];
        if (cfg->ems_glo_mean && h->cnt[j] > 0)
            glo[j] /= (float)h->cnt[j];
        mg += glo[j];
        ml += loc[j];
    }
    mg /= m; /* means over the head's candidates */
    ml /= m;
    for (int j = lo; j < hi; j++) {
        if (cfg->ems_score == EMS_SCORE_GLOBAL) {
            s[j] = glo[j];
        } else if (cfg->ems_score == EMS_SCORE_LOCAL) {
            s[j] = loc[j];
        } else if (cfg->ems_align ==
                   EMS_ALIGN_MAX) { /* max(gw * s_Glo * mean(Loc)/mean(Glo), s_Loc) */
            float a = mg > 0.0 ? cfg->ems_gw * glo[j] * (float)(ml / mg) : 0.0f;
            s[j] = fmaxf(a, loc[j]);
        } else if (cfg->ems_align == EMS_ALIGN_RATIO) {
            float a = mg > 0.0 ? glo[j] / (float)mg : 0.0f,
                  b = ml > 0.0 ? loc[j] / (float)ml : 0.0f;
            s[j] = cfg->ems_lambda * a + (1.0f - cfg->ems_lambda) * b;
        } else {
            s[j] = cfg->ems_lambda * glo[j] +
                   (1.0f - cfg->ems_lambda) * (loc[j] - (float)ml + (float)mg);
        }
    }
    if (cfg->ems_pool > 1) { /* ems.pool: max over the neighbours j-r..j+r among candidates */
        int r = cfg->ems_pool / 2;
        float *raw = malloc(sizeof(float) * (size_t)h->len);
        memcpy(raw, s, sizeof(float) * (size_t)h->len);
        for (int j = lo; j < hi; j++) {
            float mx = raw[j];
            for (int t = j - r; t <= j + r; t++) {
                if (t >= lo && t < hi && raw[t] > mx)
                    mx = raw[t];
            }
            s[j] = mx;
        }
        free(raw);
    }
    free(glo), free(loc);
}

static float ref_cos(const float *a, const float *b, int n)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int d = 0; d < n; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return aa > 0.0 && bb > 0.0 ? (float)(ab / sqrt(aa * bb)) : 0.0f;
}

static float ref_sim(const ems_config *cfg, const ems_head *h, int a, int b)
{
    int d = h->hd;
    float ck = ref_cos(h->k + (size_t)a * d, h->k + (size_t)b * d, d);
    return cfg->ems_sim == EMS_SIM_K ? ck
                                     : ck * ref_cos(h->v + (size_t)a * d, h->v + (size_t)b * d, d);
}

/* rank[0..m) = candidate offsets by score descending, ties: earlier (selection sort) */
static void ref_rank(const float *s, int m, int *rank)
{
    char *used = calloc((size_t)m + 1, 1);
    for (int t = 0; t < m; t++) {
        int best = -1;
        for (int j = 0; j < m; j++) {
            if (!used[j] && (best < 0 || s[j] > s[best]))
                best = j;
        }
        used[best] = 1;
        rank[t] = best;
    }
    free(used);
}

/* Merges the members of class `slot` (entries with cls == slot, in entry order) into centre c. */
static void ref_merge(ems_head *h, const int *cls, const double *wt, int slot, int c,
                      const ems_config *cfg)
{
    int hd = h->hd, members = 0, cnt = 0;
    double W = 0, knorm = 0, sq = 0, mass = 0, glo = 0;
    double *K = calloc((size_t)hd, sizeof(double)), *V = calloc((size_t)hd, sizeof(double));
    double *L = calloc((size_t)h->w_loc + 1, sizeof(double));
    for (int t = 0; t < h->len; t++) {
        if (cls[t] != slot)
            continue;
        const float *k = h->k + (size_t)t * hd, *v = h->v + (size_t)t * hd;
        double n = 0;
        for (int d = 0; d < hd; d++)
            n += (double)k[d] * k[d];
        n = sqrt(n);
        for (int d = 0; d < hd; d++) {
            if (cfg->ems_key_merge == EMS_KMERGE_DIRNORM)
                K[d] += n > 0 ? wt[t] * k[d] / n : 0.0;
            else
                K[d] += wt[t] * k[d];
            V[d] += wt[t] * v[d];
        }
        if (cfg->ems_key_merge == EMS_KMERGE_DIRNORM)
            knorm += wt[t] * n;
        for (int r = 0; r < h->w_loc; r++)
            L[r] += h->loc[(size_t)r * h->cap + t];
        glo += h->s_glo[t];
        W += wt[t];
        sq += h->s_sq[t];
        mass += h->mass[t];
        if (h->cnt[t] > cnt)
            cnt = h->cnt[t];
        members++;
    }
    if (members > 1) {
        double kn = 0;
        for (int d = 0; d < hd; d++)
            kn += K[d] * K[d];
        kn = sqrt(kn);
        for (int d = 0; d < hd; d++) {
            if (cfg->ems_key_merge == EMS_KMERGE_DIRNORM) {
                h->k[(size_t)c * hd + d] = (float)(K[d] * (kn > 0 ? (knorm / W) / kn : 0.0));
            } else {
                h->k[(size_t)c * hd + d] = (float)(K[d] / W);
            }
            h->v[(size_t)c * hd + d] = (float)(V[d] / W);
        }
        h->s_glo[c] = (float)glo;
        h->s_sq[c] = (float)sq;
        h->cnt[c] = cnt;
        h->mass[c] = (float)mass;
        h->kbias[c] = logf((float)mass);
        for (int r = 0; r < h->w_loc; r++)
            h->loc[(size_t)r * h->cap + c] = (float)L[r];
    }
    free(K), free(V), free(L);
}

/* Applies centres/classes to one head: pass 1 evicts class 0, pass 2 merges each class. */
static void ref_apply(ems_head *h, int *cls, double *wt, char *centre, int k)
{
    int n = 0;
    int *keep = malloc(sizeof(int) * (size_t)h->len + 1);
    for (int j = 0; j < h->len; j++) {
        if (cls[j] != 0)
            keep[n++] = j;
    }
    for (int i = 0; i < n; i++) {
        cls[i] = cls[keep[i]];
        wt[i] = wt[keep[i]];
        centre[i] = centre[keep[i]];
    }
    ems_head_compact(h, keep, n);
    free(keep);
    (void)k;
}

void ems_ref_ems_layer(ems_head *const *heads, int H, const ems_config *cfg, int B)
{
    int w = ems_config_window(cfg, B), sinks = ems_config_sinks(cfg);
    int kg = B - w - sinks > 0 ? B - w - sinks : 0;
    int *lo = calloc((size_t)H, sizeof(int)), *hi = calloc((size_t)H, sizeof(int));
    int *k = calloc((size_t)H, sizeof(int));
    float **s = calloc((size_t)H, sizeof(float *));
    int **rank = calloc((size_t)H, sizeof(int *));
    for (int g = 0; g < H; g++) {
        ems_head *h = heads[g];
        int wh = w < h->len ? w : h->len;
        lo[g] = sinks < h->len - wh ? sinks : h->len - wh;
        hi[g] = h->len - wh;
        s[g] = calloc((size_t)h->len + 1, sizeof(float));
        ems_ref_ems_score(cfg, h, lo[g], hi[g], s[g]);
        rank[g] = calloc((size_t)(hi[g] - lo[g]) + 1, sizeof(int));
        ref_rank(s[g] + lo[g], hi[g] - lo[g], rank[g]);
        k[g] = kg < hi[g] - lo[g] ? kg : hi[g] - lo[g];
    }
    if (cfg->ems_headwise) {
        /* every head first gets its top F; the rest goes to the largest s/sum(s) anywhere */
        int F = (int)lrintf(cfg->ems_floor * (float)kg);
        if (F < 1)
            F = 1;
        long R = (long)H * kg;
        int *taken = calloc((size_t)H, sizeof(int));
        for (int g = 0; g < H; g++) {
            int m = hi[g] - lo[g];
            k[g] = F < m ? F : m;
            R -= k[g];
        }
        for (; R > 0; R--) {
            int bg = -1;
            float bp = 0.0f;
            for (int g = 0; g < H; g++) {
                int m = hi[g] - lo[g], r = k[g];
                if (r >= m)
                    continue;
                double sum = 0.0;
                for (int j = lo[g]; j < hi[g]; j++)
                    sum += s[g][j];
                float p = sum > 0.0 ? (float)(s[g][lo[g] + rank[g][r]] / sum) : 0.0f;
                if (bg < 0 || p > bp) {
                    bg = g;
                    bp = p;
                }
            }
            if (bg < 0)
                break;
            k[bg]++;
        }
        free(taken);
    }
    for (int g = 0; g < H; g++) {
        ems_head *h = heads[g];
        int n = h->len, m = hi[g] - lo[g];
        int *cls = malloc(sizeof(int) * (size_t)n + 1);
        double *wt = malloc(sizeof(double) * (size_t)n + 1);
        char *centre = calloc((size_t)n + 1, 1);
        int *cent = malloc(sizeof(int) * (size_t)k[g] + 1);
        /* centres: the top k by score, slots numbered in entry order */
        for (int t = 0; t < k[g]; t++)
            centre[lo[g] + rank[g][t]] = 1;
        int slot = 0;
        for (int j = 0; j < n; j++) {
            cls[j] = (j < lo[g] || j >= hi[g]) ? -1 : 0;
            wt[j] = 0.0;
            if (j >= lo[g] && j < hi[g]) {
                wt[j] = cfg->ems_merge_weight == EMS_MW_SCORE ? fmax(s[g][j], 0.0) + 1e-30 : 1.0;
            }
            if (centre[j]) {
                cls[j] = ++slot;
                cent[slot - 1] = j;
            }
        }
        /* dropped candidates: best centre, then the zero-class rule */
        int n_drop = m - k[g];
        double red = 0, s_cent = 0, s_all = 0;
        float *bs = malloc(sizeof(float) * (size_t)n + 1);
        int *bc = malloc(sizeof(int) * (size_t)n + 1);
        for (int j = lo[g]; j < hi[g]; j++) {
            s_all += fmax(s[g][j], 0.0);
            if (centre[j]) {
                s_cent += fmax(s[g][j], 0.0);
                continue;
            }
            bs[j] = -INFINITY;
            bc[j] = 0;
            for (int c = 0; c < k[g]; c++) {
                float q = ref_sim(cfg, h, j, cent[c]);
                if (q > bs[j]) {
                    bs[j] = q;
                    bc[j] = c + 1;
                }
            }
            red += fmax(bs[j], 0.0);
        }
        if (k[g] > 0 && cfg->ems_strategy != EMS_STRAT_EVICT) {
            int n_tbm = n_drop;
            if (cfg->ems_strategy == EMS_STRAT_EVICT_MERGE &&
                cfg->ems_split == EMS_SPLIT_PLACEHOLDER && n_drop > 0) {
                double r = red / n_drop, sp = s_all > 0 ? s_cent / s_all : 1.0;
                n_tbm = (int)lrint(n_drop * fmin(fmax(r, 0.0), 1.0) * (1.0 - sp));
            }
            /* the n_tbm best-scored dropped entries may merge (rank order skips centres) */
            int seen = 0;
            for (int t = 0; t < m && seen < n_tbm; t++) {
                int j = lo[g] + rank[g][t];
                if (centre[j])
                    continue;
                seen++;
                if (cfg->ems_strategy == EMS_STRAT_MERGE || bs[j] >= cfg->ems_tau)
                    cls[j] = bc[j];
            }
        }
        ref_apply(h, cls, wt, centre, k[g]);
        for (int c = 1; c <= k[g]; c++) {
            int ci = -1;
            for (int j = 0; j < h->len; j++) {
                if (cls[j] == c && centre[j])
                    ci = j;
            }
            ref_merge(h, cls, wt, c, ci, cfg);
        }
        int nk = 0;
        int *keep = malloc(sizeof(int) * (size_t)h->len + 1);
        for (int j = 0; j < h->len; j++) {
            if (cls[j] < 0 || centre[j])
                keep[nk++] = j;
        }
        ems_head_compact(h, keep, nk);
        free(keep), free(cls), free(wt), free(centre), free(cent), free(bs), free(bc);
    }
    for (int g = 0; g < H; g++)
        free(s[g]), free(rank[g]);
    free(lo), free(hi), free(k), free(s), free(rank);
}
