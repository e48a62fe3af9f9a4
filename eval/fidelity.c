/* Per-layer attention fidelity: a full cache and a compressed cache receive the same tokens
 * (teacher-forced, through the engine). At probe steps a small independent forward of the
 * newest token over the FULL cache (reference kernels) yields each layer's queries; each
 * layer's attention output is computed over the full and over the compressed cache with the
 * same queries, isolating what compression does to that layer. The forward's logits are
 * checked against the engine's (logit_check = max |difference|). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ems/policy.h"
#include "eval/eval.h"

typedef struct fwd {
    const model *m;
    const kern_ops *o;
    float *x, *xn, *q, *att, *tmp, *h1, *h3, *out_c, *logits;
} fwd;

static em_status attn_head(const fwd *f, ems_head *h, const float *q, int32_t qpos, float *out)
{
    const model_hparams *hp = &f->m->hp;
    int G = hp->n_head / hp->n_kv_head;
    kern_attn_args a = {0};
    a.n_q = 1;
    a.G = G;
    a.hd = hp->head_dim;
    a.q = q;
    a.q_stride = G * hp->head_dim;
    a.q_pos = &qpos;
    a.out = out;
    a.o_stride = G * hp->head_dim;
    a.scale = 1.0f / sqrtf((float)hp->head_dim);
    ems_scratch scr = {0}; /* dequantised K/V of a quantized head, for this call */
    em_status st = ems_head_attn_begin(h, 1, &a, NULL, NULL, 0, &scr);
    if (st == EM_OK)
        st = kern_attn(f->o, &a);
    ems_scratch_free(&scr);
    return st;
}

#define TRY(expr)                   \
    do {                            \
        em_status try_st_ = (expr); \
        if (try_st_ != EM_OK)       \
            return try_st_;         \
    } while (0)

/* Attention of layer l for the query rows f->q over both caches: the full cache's output into
 * f->att, the relative squared error of the compressed one added to num/den. */
static em_status probe_attn(fwd *f, ems_cache *full, ems_cache *cmp, int l, int32_t pos,
                            double *num, double *den)
{
    const model_hparams *hp = &f->m->hp;
    int gq = hp->n_head / hp->n_kv_head * hp->head_dim;
    for (int h = 0; h < hp->n_kv_head; h++) {
        const float *q = f->q + (size_t)h * gq;
        float *ref = f->att + (size_t)h * gq;
        TRY(attn_head(f, ems_cache_head(full, l, h), q, pos, ref));
        TRY(attn_head(f, ems_cache_head(cmp, l, h), q, pos, f->out_c));
        for (int i = 0; i < gq; i++) {
            double d = (double)f->out_c[i] - ref[i];
            num[l] += d * d;
            den[l] += (double)ref[i] * ref[i];
        }
    }
    return EM_OK;
}

/* Forward of token `tok` at `pos` whose K/V are already the last entries of both caches. */
static em_status probe(fwd *f, ems_cache *full, ems_cache *cmp, int32_t tok, int32_t pos,
                       double *num, double *den)
{
    const model *m = f->m;
    const model_hparams *hp = &m->hp;
    const kern_ops *o = f->o;
    int dim = hp->dim, hd = hp->head_dim, qd = hp->n_head * hd;
    kern_embed_row(&m->tok_embd, tok, f->x);
    for (int l = 0; l < hp->n_layer; l++) {
        const model_layer *L = &m->layers[l];
        TRY(kern_rmsnorm(o, f->x, L->attn_norm.data, 1, dim, hp->norm_eps, f->xn));
        TRY(kern_matmul(o, &L->wq, f->xn, dim, 1, f->q, qd));
        TRY(kern_rope(o, f->q, 1, hp->n_head, hd, qd, &pos, hp->rope_base, hp->rope_dim));
        TRY(probe_attn(f, full, cmp, l, pos, num, den));
        TRY(kern_matmul(o, &L->wo, f->att, qd, 1, f->tmp, dim));
        for (int i = 0; i < dim; i++)
            f->x[i] += f->tmp[i];
        TRY(kern_rmsnorm(o, f->x, L->ffn_norm.data, 1, dim, hp->norm_eps, f->xn));
        TRY(kern_matmul(o, &L->w1, f->xn, dim, 1, f->h1, hp->ffn_dim));
        TRY(kern_matmul(o, &L->w3, f->xn, dim, 1, f->h3, hp->ffn_dim));
        TRY(kern_swiglu(o, f->h1, f->h3, 1, hp->ffn_dim, f->h1));
        TRY(kern_matmul(o, &L->w2, f->h1, hp->ffn_dim, 1, f->tmp, dim));
        for (int i = 0; i < dim; i++)
            f->x[i] += f->tmp[i];
    }
    TRY(kern_rmsnorm(o, f->x, m->out_norm.data, 1, dim, hp->norm_eps, f->xn));
    return kern_matmul(o, &m->output, f->xn, dim, 1, f->logits, hp->n_vocab);
}

em_status ev_fidelity(engine *e, const model *m, const ems_config *cfg, const int32_t *ids, int n,
                      int first, int every, double *err, double *logit_check)
{
    const model_hparams *hp = &m->hp;
    ems_config full_cfg;
    ems_config_default(&full_cfg);
    ems_cache *cf = NULL, *cc = NULL;
    em_status st = engine_cache_create(e, 0, 0, 0, &cf);
    if (st == EM_OK) {
        st = engine_cache_create(e, ems_config_w_loc(cfg), ems_config_wants_stats(cfg),
                                 cfg->group_max, &cc);
    }
    fwd f = {0};
    f.m = m;
    f.o = kern_ops_ref();
    int qd = hp->n_head * hp->head_dim, big = hp->dim > hp->ffn_dim ? hp->dim : hp->ffn_dim;
    f.x = malloc(sizeof(float) * big);
    f.xn = malloc(sizeof(float) * big);
    f.q = malloc(sizeof(float) * qd);
    f.att = malloc(sizeof(float) * qd);
    f.tmp = malloc(sizeof(float) * big);
    f.h1 = malloc(sizeof(float) * hp->ffn_dim);
    f.h3 = malloc(sizeof(float) * hp->ffn_dim);
    f.out_c = malloc(sizeof(float) * qd);
    f.logits = malloc(sizeof(float) * hp->n_vocab);
    float *lg = malloc(sizeof(float) * hp->n_vocab);
    double *num = calloc((size_t)hp->n_layer, sizeof(double)),
           *den = calloc((size_t)hp->n_layer, sizeof(double));
    if (st == EM_OK && (!f.x || !f.xn || !f.q || !f.att || !f.tmp || !f.h1 || !f.h3 || !f.out_c ||
                        !f.logits || !lg || !num || !den))
        st = EM_ENOMEM;
    *logit_check = 0.0;
    for (int i = 0; i < n && st == EM_OK; i++) {
        int32_t pos = i, sq = 0;
        engine_batch b = {1, ids + i, &pos, &sq, NULL};
        st = engine_forward(e, &b, &cf, lg);
        if (st == EM_OK)
            st = engine_forward(e, &b, &cc, NULL);
        int probe_now = i >= first && (i - first) % every == 0;
        if (st == EM_OK && probe_now)
            st = probe(&f, cf, cc, ids[i], pos, num, den);
        for (int v = 0; st == EM_OK && probe_now && v < hp->n_vocab; v++) {
            double d = fabs((double)f.logits[v] - lg[v]);
            if (d > *logit_check)
                *logit_check = d;
        }
        if (st == EM_OK)
            st = ems_policy_step(cc, cfg, EMS_PHASE_DECODE, NULL);
    }
    for (int l = 0; l < hp->n_layer && num && den; l++)
        err[l] = den[l] > 0 ? sqrt(num[l] / den[l]) : 0.0;
    ems_cache_destroy(cf);
    ems_cache_destroy(cc);
    free(f.x), free(f.xn), free(f.q), free(f.att), free(f.tmp), free(f.h1), free(f.h3);
    free(f.out_c), free(f.logits), free(lg), free(num), free(den);
    return st;
}
