/* CPU reference of the GPU EMS compression step (contract in ems_step.h). Written for clarity:
 * one head at a time, sequential sums, qsort for the top-k. It mirrors the GPU's numerics where
 * a decision depends on them (double means and similarities, float score formula), so both
 * keep the same entries. To be unified with ems/'s CPU EMS policy (see the report). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ems_step.h"

void kern_ems_params_default(int B, kern_cuda_ems_params *p)
{
    p->B = B;
    p->w = 0;
    p->tau = 0.8f;
    p->gw = 1.0f;
    p->headwise = 0;
    p->floor = 0.2f;
}

int kern_ems_window(const kern_cuda_ems_params *p)
{
    if (p->w > 0)
        return p->w < p->B ? p->w : p->B - 1;
    int w = (int)lround(p->B / 4.0);
    return w < 1 ? 1 : w > p->B - 1 ? p->B - 1 : w;
}

typedef struct {
    float s;
    int j;
} scored;

static int by_score_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->j - y->j;
}

static double norm_d(const float *x, int hd)
{
    double s = 0.0;
    for (int d = 0; d < hd; d++)
        s += (double)x[d] * (double)x[d];
    return sqrt(s);
}

static double dot_d(const float *a, const float *b, int hd)
{
    double s = 0.0;
    for (int d = 0; d < hd; d++)
        s += (double)a[d] * (double)b[d];
    return s;
}

/* Scores s[0..m) for one head (same float/double steps as ems_score_kernel). */
static void head_scores(const kern_cuda_ems_head *h, int m, int w_loc, float gw, float *s)
{
    if (m <= 0)
        return;
    double sg = 0.0, sl = 0.0;
    for (int j = 0; j < m; j++) {
        float l = 0.0f;
        for (int r = 0; r < w_loc; r++)
            l += h->loc[(size_t)r * h->loc_stride + j];
        s[j] = l;
        sl += (double)l;
        sg += (double)h->s_glo[j];
    }
    float a = sg > 0.0 ? (float)((double)gw * (sl / m) / (sg / m)) : 0.0f;
    for (int j = 0; j < m; j++)
        s[j] = fmaxf(h->s_glo[j] * a, s[j]);
}

/* Compresses one head: keeps the first k entries of ord (its candidates ranked by score) as
 * centres, merges/evicts the other candidates, keeps the last w entries; new length k + w. */
static em_status head_step(kern_cuda_ems_head *h, int hd, int w_loc, int k, int w, float tau,
                           const float *s, const scored *ord)
{
    int n = h->len, m = n - w, B = k + w;
    float *acc = calloc((size_t)(k ? k : 1) * (2 * hd + 5 + w_loc), 4);
    int *cls = malloc(sizeof(int) * (m ? m : 1)), *centre = malloc(sizeof(int) * (k ? k : 1));
    double *nk = malloc(sizeof(double) * 2 * (m ? m : 1));
    float *tmp = malloc(sizeof(float) * ((size_t)(B ? B : 1) * (2 * hd + 3 + w_loc)));
    if (!acc || !cls || !centre || !nk || !tmp) {
        free(acc), free(cls), free(centre), free(nk), free(tmp);
        return EM_ENOMEM;
    }
    for (int j = 0; j < m; j++)
        cls[j] = -1;
    for (int i = 0; i < k; i++)
        cls[ord[i].j] = 0; /* mark kept */
    for (int j = 0, slot = 0; j < m; j++) {
        if (cls[j] == 0) {
            centre[slot] = j;
            cls[j] = ++slot;
        }
        nk[2 * j] = norm_d(h->k + (size_t)j * hd, hd);
        nk[2 * j + 1] = norm_d(h->v + (size_t)j * hd, hd);
    }
    for (int t = 0; t < m; t++) { /* zero-class assignment of dropped candidates */
        if (cls[t] != -1)
            continue;
        double best = -INFINITY;
        int bi = -1;
        for (int i = 0; i < k; i++) {
            int c = centre[i];
            double den_k = nk[2 * t] * nk[2 * c], den_v = nk[2 * t + 1] * nk[2 * c + 1];
            double sim = 0.0;
            if (den_k > 0.0 && den_v > 0.0) {
                sim = dot_d(h->k + (size_t)t * hd, h->k + (size_t)c * hd, hd) / den_k *
                      (dot_d(h->v + (size_t)t * hd, h->v + (size_t)c * hd, hd) / den_v);
            }
            if (sim > best) {
                best = sim;
                bi = i;
            }
        }
        cls[t] = best >= (double)tau ? bi + 1 : 0;
    }
    /* accumulator per centre i: K[hd] V[hd] W N G M COUNT L[w_loc] */
    size_t st = (size_t)2 * hd + 5 + w_loc;
    for (int t = 0; t < m; t++) {
        if (cls[t] <= 0)
            continue;
        float *a = acc + (size_t)(cls[t] - 1) * st, wt = fmaxf(s[t], 0.0f) + 1e-30f;
        float nkf = (float)nk[2 * t];
        const float *kt = h->k + (size_t)t * hd, *vt = h->v + (size_t)t * hd;
        for (int d = 0; d < hd; d++) {
            a[d] += wt * (nkf > 0.0f ? kt[d] / nkf : 0.0f);
            a[hd + d] += wt * vt[d];
        }
        a[2 * hd] += wt;
        a[2 * hd + 1] += wt * nkf;
        a[2 * hd + 2] += h->s_glo[t];
        a[2 * hd + 3] += h->mass ? h->mass[t] : 1.0f;
        a[2 * hd + 4] += 1.0f;
        for (int r = 0; r < w_loc; r++)
            a[2 * hd + 5 + r] += h->loc[(size_t)r * h->loc_stride + t];
    }
    /* new entries o < B into tmp: K V [B][hd], pos, s_glo, mass [B], loc [w_loc][B] */
    float *tk = tmp, *tv = tk + (size_t)B * hd, *tg = tv + (size_t)B * hd, *tm = tg + B;
    float *tl = tm + B;
    int32_t *tp = malloc(sizeof(int32_t) * (B ? B : 1));
    if (!tp) {
        free(acc), free(cls), free(centre), free(nk), free(tmp);
        return EM_ENOMEM;
    }
    for (int o = 0; o < B; o++) {
        int src = o < k ? centre[o] : n - w + (o - k);
        const float *ks = h->k + (size_t)src * hd, *vs = h->v + (size_t)src * hd;
        memcpy(tk + (size_t)o * hd, ks, sizeof(float) * hd);
        memcpy(tv + (size_t)o * hd, vs, sizeof(float) * hd);
        tp[o] = h->pos[src];
        tg[o] = h->s_glo[src];
        tm[o] = h->mass ? h->mass[src] : 1.0f;
        for (int r = 0; r < w_loc; r++)
            tl[(size_t)r * B + o] = h->loc[(size_t)r * h->loc_stride + src];
        if (o >= k)
            continue;
        const float *a = acc + (size_t)o * st;
        if (a[2 * hd + 4] < 1.5f)
            continue; /* a centre without members stays as it is */
        float W = a[2 * hd], dn = 0.0f;
        for (int d = 0; d < hd; d++)
            dn += a[d] * a[d];
        dn = sqrtf(dn);
        if (W > 0.0f && dn > 0.0f) {
            float kn = a[2 * hd + 1] / W;
            for (int d = 0; d < hd; d++) {
                tk[(size_t)o * hd + d] = kn * (a[d] / dn);
                tv[(size_t)o * hd + d] = a[hd + d] / W;
            }
        }
        tg[o] = a[2 * hd + 2];
        tm[o] = a[2 * hd + 3];
        for (int r = 0; r < w_loc; r++)
            tl[(size_t)r * B + o] = a[2 * hd + 5 + r];
    }
    memcpy(h->k, tk, sizeof(float) * (size_t)B * hd);
    memcpy(h->v, tv, sizeof(float) * (size_t)B * hd);
    memcpy(h->pos, tp, sizeof(int32_t) * B);
    memcpy(h->s_glo, tg, sizeof(float) * B);
    if (h->mass)
        memcpy(h->mass, tm, sizeof(float) * B);
    for (int r = 0; r < w_loc; r++)
        memcpy(h->loc + (size_t)r * h->loc_stride, tl + (size_t)r * B, sizeof(float) * B);
    h->len = B;
    free(acc), free(cls), free(centre), free(nk), free(tmp), free(tp);
    return EM_OK;
}

/* Head-wise budgets (methods.md 1.14 item 5, as ems/ref): every head first gets its top F; the
 * remaining H*kg - sum slots go one by one to the head whose next-ranked candidate has the
 * largest s / sum(s) (ties: lower head index). */
static void headwise_budgets(int H, int kg, float floor_frac, const int *m, float *const *s,
                             scored *const *ord, int *k)
{
    int F = (int)lrintf(floor_frac * (float)kg);
    if (F < 1)
        F = 1;
    long R = (long)H * kg;
    double *sum = calloc((size_t)H, sizeof(double));
    for (int g = 0; g < H; g++) {
        k[g] = F < m[g] ? F : m[g];
        R -= k[g];
        for (int j = 0; j < m[g]; j++)
            sum[g] += s[g][j];
    }
    for (; R > 0; R--) {
        int bg = -1;
        float bp = 0.0f;
        for (int g = 0; g < H; g++) {
            if (k[g] >= m[g])
                continue;
            float pr = sum[g] > 0.0 ? (float)(ord[g][k[g]].s / sum[g]) : 0.0f;
            if (bg < 0 || pr > bp) {
                bg = g;
                bp = pr;
            }
        }
        if (bg < 0)
            break;
        k[bg]++;
    }
    free(sum);
}

em_status kern_ems_step_ref(kern_cuda_ems_head *heads, int n_heads, int hd, int w_loc,
                            const kern_cuda_ems_params *p)
{
    if (p->B < 2 || hd <= 0 || w_loc < 0 || n_heads < 0)
        return EM_EINVAL;
    int w = kern_ems_window(p), kg = p->B - w, H = n_heads;
    int *m = calloc((size_t)H + 1, sizeof(int)), *k = calloc((size_t)H + 1, sizeof(int));
    int *wh = calloc((size_t)H + 1, sizeof(int));
    float **s = calloc((size_t)H + 1, sizeof(float *));
    scored **ord = calloc((size_t)H + 1, sizeof(scored *));
    em_status st = m && k && wh && s && ord ? EM_OK : EM_ENOMEM;
    for (int g = 0; g < H && st == EM_OK; g++) {
        kern_cuda_ems_head *h = &heads[g];
        wh[g] = w < h->len ? w : h->len;
        m[g] = h->len - wh[g];
        s[g] = malloc(sizeof(float) * (m[g] + 1));
        ord[g] = malloc(sizeof(scored) * (m[g] + 1));
        if (!s[g] || !ord[g]) {
            st = EM_ENOMEM;
            break;
        }
        head_scores(h, m[g], w_loc, p->gw, s[g]);
        for (int j = 0; j < m[g]; j++)
            ord[g][j] = (scored){s[g][j], j};
        qsort(ord[g], (size_t)m[g], sizeof(scored), by_score_desc);
        k[g] = kg < m[g] ? kg : m[g];
    }
    if (st == EM_OK && p->headwise)
        headwise_budgets(H, kg, p->floor, m, s, ord, k);
    for (int g = 0; g < H && st == EM_OK; g++) {
        if (!p->headwise && heads[g].len <= p->B)
            continue; /* equal budgets: only full heads */
        st = head_step(&heads[g], hd, w_loc, k[g], wh[g], p->tau, s[g], ord[g]);
    }
    for (int g = 0; g < H && s && ord; g++)
        free(s[g]), free(ord[g]);
    free(m), free(k), free(wh), free(s), free(ord);
    return st;
}
