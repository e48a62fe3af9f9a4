/* End-to-end golden check of the CUDA kern_ops backend on stories260K (model README): a
 * compact llama forward pass written against the kern_ops vtable only (prefill of the prompt
 * as one batch, then greedy decode one token at a time) must reproduce the README's top-5
 * logits after the prompt within 1e-3 and its greedy ids exactly. The same forward runs first
 * with the reference ops, which checks this harness itself on any machine; the CUDA run needs a
 * device ("skipped: no CUDA device" otherwise). Stand-in until engine_opts can take a kern_ops
 * (then the engine's own forward should be run with kern_ops_cuda_create instead).
 * Skips loudly without the model file. Usage: cuda_golden_test [model.gguf] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/kern_cuda.h"
#include "kernels/kern.h"
#include "model/model.h"
#include "tests/testutil/goldens.h"

typedef struct fwd {
    const model *m;
    const kern_ops *o;
    int hd, G, cap, len;
    float *kc, *vc; /* [layer][kv_head][cap][hd] */
    int32_t *kpos;  /* [cap] */
    float *x, *xb, *q, *k, *v, *att, *h1, *h3, *y, *logits;
} fwd;

static void add(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

#define TRY(expr)                   \
    do {                            \
        em_status try_st_ = (expr); \
        if (try_st_ != EM_OK)       \
            return try_st_;         \
    } while (0)

/* Attention of layer l over the first len + n cached entries, one call per KV head. */
static em_status attention(fwd *f, int l, const int32_t *pos, int n)
{
    const model_hparams *hp = &f->m->hp;
    int hd = f->hd, qd = hp->n_head * hd, kd = hp->n_kv_head * hd;
    for (int h = 0; h < hp->n_kv_head; h++) {
        float *kc = f->kc + ((size_t)l * hp->n_kv_head + h) * f->cap * hd;
        float *vc = f->vc + ((size_t)l * hp->n_kv_head + h) * f->cap * hd;
        for (int t = 0; t < n; t++) {
            memcpy(kc + (size_t)(f->len + t) * hd, f->k + (size_t)t * kd + h * hd, 4 * hd);
            memcpy(vc + (size_t)(f->len + t) * hd, f->v + (size_t)t * kd + h * hd, 4 * hd);
        }
        kern_attn_args a = {
            n,   f->G, hd,      f->len + n, f->q + h * f->G * hd,   qd, pos,
            kc,  vc,   f->kpos, NULL,       f->att + h * f->G * hd, qd, 1.0f / sqrtf((float)hd),
            NULL};
        TRY(kern_attn(f->o, &a));
    }
    return EM_OK;
}

/* Runs n tokens at positions len.. and leaves the last token's logits in f->logits. */
static em_status forward(fwd *f, const int32_t *tok, int n)
{
    const model_hparams *hp = &f->m->hp;
    const kern_ops *o = f->o;
    int dim = hp->dim, hd = f->hd, qd = hp->n_head * hd, kd = hp->n_kv_head * hd, ff = hp->ffn_dim;
    int32_t pos[64];
    for (int t = 0; t < n; t++)
        kern_embed_row(&f->m->tok_embd, tok[t], f->x + (size_t)t * dim);
    for (int t = 0; t < n; t++)
        pos[t] = f->len + t, f->kpos[f->len + t] = f->len + t;
    for (int l = 0; l < hp->n_layer; l++) {
        const model_layer *L = &f->m->layers[l];
        TRY(kern_rmsnorm(o, f->x, L->attn_norm.data, n, dim, hp->norm_eps, f->xb));
        TRY(kern_matmul(o, &L->wq, f->xb, dim, n, f->q, qd));
        TRY(kern_matmul(o, &L->wk, f->xb, dim, n, f->k, kd));
        TRY(kern_matmul(o, &L->wv, f->xb, dim, n, f->v, kd));
        TRY(kern_rope(o, f->q, n, hp->n_head, hd, qd, pos, hp->rope_base, hp->rope_dim));
        TRY(kern_rope(o, f->k, n, hp->n_kv_head, hd, kd, pos, hp->rope_base, hp->rope_dim));
        TRY(attention(f, l, pos, n));
        TRY(kern_matmul(o, &L->wo, f->att, qd, n, f->y, dim));
        add(f->x, f->y, (size_t)n * dim);
        TRY(kern_rmsnorm(o, f->x, L->ffn_norm.data, n, dim, hp->norm_eps, f->xb));
        TRY(kern_matmul(o, &L->w1, f->xb, dim, n, f->h1, ff));
        TRY(kern_matmul(o, &L->w3, f->xb, dim, n, f->h3, ff));
        TRY(kern_swiglu(o, f->h1, f->h3, n, ff, f->h1));
        TRY(kern_matmul(o, &L->w2, f->h1, ff, n, f->y, dim));
        add(f->x, f->y, (size_t)n * dim);
    }
    TRY(kern_rmsnorm(o, f->x + (size_t)(n - 1) * dim, f->m->out_norm.data, 1, dim, hp->norm_eps,
                     f->xb));
    TRY(kern_matmul(o, &f->m->output, f->xb, dim, 1, f->logits, hp->n_vocab));
    f->len += n;
    return EM_OK;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        b = x[i] > x[b] ? i : b;
    return b;
}

/* 0 when the golden matches with ops o. */
static int run_golden(const model *m, const kern_ops *o, const tu_golden *g)
{
    const model_hparams *hp = &m->hp;
    fwd f = {.m = m,
             .o = o,
             .hd = hp->head_dim,
             .G = hp->n_head / hp->n_kv_head,
             .cap = g->n_prompt + g->n_ids + 1};
    size_t kvn = (size_t)hp->n_layer * hp->n_kv_head * f.cap * f.hd, T = 64;
    f.kc = calloc(kvn, 4), f.vc = calloc(kvn, 4), f.kpos = calloc((size_t)f.cap, 4);
    size_t big = (size_t)(hp->dim > hp->ffn_dim ? hp->dim : hp->ffn_dim) * hp->n_head;
    float **bufs[] = {&f.x, &f.xb, &f.q, &f.k, &f.v, &f.att, &f.h1, &f.h3, &f.y};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        *bufs[i] = calloc(T * big, 4);
    f.logits = calloc((size_t)hp->n_vocab, 4);
    em_status st = forward(&f, g->prompt_ids, g->n_prompt);
    int bad = st != EM_OK;
    if (st != EM_OK)
        printf("    %s: prompt forward failed: %s\n", o->name, em_status_str(st));
    for (int i = 0; i < 5 && st == EM_OK; i++) {
        float lg = f.logits[g->top5_id[i]];
        if (fabsf(lg - g->top5_logit[i]) > 1e-3f) {
            printf("    %s: logit[%d] = %.5f, golden %.5f\n", o->name, g->top5_id[i], lg,
                   g->top5_logit[i]);
            bad++;
        }
    }
    for (int i = 0; i < g->n_ids && st == EM_OK; i++) {
        int32_t id = argmax(f.logits, hp->n_vocab);
        if (id != g->ids[i]) {
            printf("    %s: greedy id %d = %d, golden %d\n", o->name, i, id, g->ids[i]);
            bad++;
            break;
        }
        st = forward(&f, &id, 1);
        if (st != EM_OK) {
            printf("    %s: forward of id %d failed: %s\n", o->name, i, em_status_str(st));
            bad++;
        }
    }
    free(f.kc), free(f.vc), free(f.kpos), free(f.logits);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(*bufs[i]);
    return bad;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : model_find_test_small();
    model *m = NULL;
    char err[256] = "";
    if (!path || model_load(path, &m, err, sizeof err) != EM_OK) {
        printf("SKIPPED (loudly): stories260K model not found or not loadable (%s); set "
               "EMSERVE_TEST_MODEL\n",
               err[0] ? err : "no path");
        return 0;
    }
    int bad = 0;
    for (int i = 0; i < TU_N_GOLDENS; i++) {
        int b = run_golden(m, kern_ops_ref(), &tu_goldens[i]);
        printf("%s golden %d with the reference ops (checks this harness)\n", b ? "FAIL" : "ok  ",
               i);
        bad += b;
    }
    if (kern_cuda_device_count() == 0) {
        printf("skipped: no CUDA device\n");
        model_free(m);
        return bad ? 1 : 0;
    }
    kern_ops *cu = kern_ops_cuda_create(0);
    for (int i = 0; i < TU_N_GOLDENS && cu; i++) {
        int b = run_golden(m, cu, &tu_goldens[i]);
        b += kern_ops_cuda_status(cu) != EM_OK;
        printf("%s golden %d with the CUDA kern_ops\n", b ? "FAIL" : "ok  ", i);
        bad += b;
    }
    bad += cu == NULL;
    kern_ops_cuda_free(cu);
    model_free(m);
    return bad ? 1 : 0;
}
