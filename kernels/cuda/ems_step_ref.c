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
}

int kern_ems_window(const kern_cuda_ems_params *p)
{
    if (p->w > 0) return p->w < p->B ? p->w : p->B - 1;
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
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->j - y->j;
}

static double norm_d(const float *x, int hd)
{
    double s = 0.0;
    for (int d = 0; d < hd; d++) s += (double)x[d] * (double)x[d];
    return sqrt(s);
}

static double dot_d(const float *a, const float *b, int hd)
{
    double s = 0.0;
    for (int d = 0; d < hd; d++) s += (double)a[d] * (double)b[d];
    return s;
}

/* Scores s[0..m) for one head (same float/double steps as ems_score_kernel). */
static void head_scores(const kern_cuda_ems_head *h, int m, int w_loc, float gw, float *s)
{
    double sg = 0.0, sl = 0.0;
    for (int j = 0; j < m; j++) {
        float l = 0.0f;
        for (int r = 0; r < w_loc; r++) l += h->loc[(size_t)r * h->loc_stride + j];
        s[j] = l;
        sl += (double)l;
        sg += (double)h->s_glo[j];
    }
    float a = sg > 0.0 ? (float)((double)gw * (sl / m) / (sg / m)) : 0.0f;
    for (int j = 0; j < m; j++) s[j] = fmaxf(h->s_glo[j] * a, s[j]);
}

static em_status head_step(kern_cuda_ems_head *h, int hd, int w_loc, int B, int w, float tau,
                           float gw)
{
    int n = h->len, m = n - w, k = B - w;
    float *s = malloc(sizeof(float) * m), *acc = calloc((size_t)k * (2 * hd + 5 + w_loc), 4);
    scored *ord = malloc(sizeof(scored) * m);
    int *cls = malloc(sizeof(int) * m), *centre = malloc(sizeof(int) * k);
    double *nk = malloc(sizeof(double) * 2 * m);
    float *tmp = malloc(sizeof(float) * ((size_t)B * (2 * hd + 3 + w_loc)));
    if (!s || !acc || !ord || !cls || !centre || !nk || !tmp) {
        free(s), free(acc), free(ord), free(cls), free(centre), free(nk), free(tmp);
        return EM_ENOMEM;
    }
    head_scores(h, m, w_loc, gw, s);
    for (int j = 0; j < m; j++) ord[j] = (scored){s[j], j};
    qsort(ord, (size_t)m, sizeof *ord, by_score_desc);
    for (int j = 0; j < m; j++) cls[j] = -1;
    for (int i = 0; i < k; i++) cls[ord[i].j] = 0; /* mark kept */
    for (int j = 0, slot = 0; j < m; j++) {
        if (cls[j] == 0) {
            centre[slot] = j;
            cls[j] = ++slot;
        }
        nk[2 * j] = norm_d(h->k + (size_t)j * hd, hd);
        nk[2 * j + 1] = norm_d(h->v + (size_t)j * hd, hd);
    }
    for (int t = 0; t < m; t++) { /* zero-class assignment of dropped candidates */
        if (cls[t] != -1) continue;
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
        if (cls[t] <= 0) continue;
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
        for (int r = 0; r < w_loc; r++) a[2 * hd + 5 + r] += h->loc[(size_t)r * h->loc_stride + t];
    }
    /* new entries o < B into tmp: K V [B][hd], pos, s_glo, mass [B], loc [w_loc][B] */
    float *tk = tmp, *tv = tk + (size_t)B * hd, *tg = tv + (size_t)B * hd, *tm = tg + B;
    float *tl = tm + B;
    int32_t *tp = malloc(sizeof(int32_t) * B);
    if (!tp) {
        free(s), free(acc), free(ord), free(cls), free(centre), free(nk), free(tmp);
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
        for (int r = 0; r < w_loc; r++) tl[(size_t)r * B + o] = h->loc[(size_t)r * h->loc_stride + src];
        if (o >= k) continue;
        const float *a = acc + (size_t)o * st;
        if (a[2 * hd + 4] < 1.5f) continue; /* a centre without members stays as it is */
        float W = a[2 * hd], dn = 0.0f;
        for (int d = 0; d < hd; d++) dn += a[d] * a[d];
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
        for (int r = 0; r < w_loc; r++) tl[(size_t)r * B + o] = a[2 * hd + 5 + r];
    }
    memcpy(h->k, tk, sizeof(float) * (size_t)B * hd);
    memcpy(h->v, tv, sizeof(float) * (size_t)B * hd);
    memcpy(h->pos, tp, sizeof(int32_t) * B);
    memcpy(h->s_glo, tg, sizeof(float) * B);
    if (h->mass) memcpy(h->mass, tm, sizeof(float) * B);
    for (int r = 0; r < w_loc; r++) memcpy(h->loc + (size_t)r * h->loc_stride, tl + (size_t)r * B, sizeof(float) * B);
    h->len = B;
    free(s), free(acc), free(ord), free(cls), free(centre), free(nk), free(tmp), free(tp);
    return EM_OK;
}

em_status kern_ems_step_ref(kern_cuda_ems_head *heads, int n_heads, int hd, int w_loc,
                            const kern_cuda_ems_params *p)
{
    if (p->B < 2 || hd <= 0 || w_loc < 0 || n_heads < 0) return EM_EINVAL;
    int w = kern_ems_window(p);
    for (int h = 0; h < n_heads; h++) {
        if (heads[h].len <= p->B) continue;
        em_status st = head_step(&heads[h], hd, w_loc, p->B, w, p->tau, p->gw);
        if (st != EM_OK) return st;
    }
    return EM_OK;
}
