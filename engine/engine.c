/* The llama forward pass of one shard over a batch of tokens from several sequences.
 * Layer code is identical for 1 and N processes: per-unit partial sums + reduce hook + sum in
 * unit order (see shard.h). Scratch buffers grow with the largest batch seen. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/assert.h"
#include "common/log.h"
#include "ems/config.h" /* EMS_MAX_W_LOC */
#include "kernels/cpu/kern_cpu.h"
#include "kernels/quant.h"

/* Multiply-adds of attention below which the (sequence, head) tasks run on the caller. */
#ifndef ENGINE_ATTN_PAR_MIN
#define ENGINE_ATTN_PAR_MIN 65536
#endif

/* Pool threads that can run attention tasks (kern_ops_cpu_create clamps to 128). */
enum { ENGINE_MAX_THREADS = 128 };

struct engine {
    const model *m;
    shard_desc sd;
    shard_weights *sw;
    const kern_ops *ops;
    kern_ops *cpu_ops; /* owned when n_threads > 0 */
    int G, hd, n_local;
    /* q/k/v/o views over the contiguous row ranges of the local units, per layer */
    kern_weight *wq, *wk, *wv, *w1, *w3; /* [n_layer] */
    int ffn_local;                       /* rows of w1/w3 owned */
    int *ffn_off;                        /* [n_local+1] row offset of each local unit's chunk */
    /* scratch, capacity cap_tok tokens */
    int cap_tok;
    float *x, *xb;  /* [cap][dim] residual, normed */
    float *q, *att; /* [cap][n_local*G*hd] */
    float *k, *v;   /* [cap][n_local*hd] */
    float *h1, *h3; /* [cap][ffn_local] */
    float *part;    /* [n_units][cap][dim] per-unit partial sums */
    float *xn;      /* [cap][dim] final norm rows for logits */
    /* per pool thread: dequantised K/V of the quantized head it attends over (grows to the
     * longest such head; shared by every head, layer and sequence, not held by any cache) */
    ems_scratch kv_scratch[ENGINE_MAX_THREADS];
};

static kern_weight rows_of(const kern_weight *w, int r0, int n)
{
    kern_weight v = *w;
    v.data = (const char *)w->data + (size_t)r0 * kern_row_bytes(w->dtype, w->cols);
    v.rows = n;
    return v;
}

static em_status grow_scratch(engine *e, int n)
{
    if (n <= e->cap_tok)
        return EM_OK;
    const model_hparams *hp = &e->m->hp;
    size_t c = (size_t)n, dim = (size_t)hp->dim, qd = (size_t)e->n_local * e->G * e->hd,
           kd = (size_t)e->n_local * e->hd;
    float **bufs[] = {&e->x, &e->xb, &e->q,  &e->att,  &e->k,
                      &e->v, &e->h1, &e->h3, &e->part, &e->xn};
    size_t sizes[] = {c * dim,
                      c * dim,
                      c * qd,
                      c * qd,
                      c * kd,
                      c * kd,
                      c * (size_t)e->ffn_local,
                      c * (size_t)e->ffn_local,
                      (size_t)e->sd.n_units * c * dim,
                      c * dim};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        float *p = realloc(*bufs[i], (sizes[i] ? sizes[i] : 1) * sizeof(float));
        if (!p)
            return EM_ENOMEM;
        *bufs[i] = p;
    }
    e->cap_tok = n;
    return EM_OK;
}

em_status engine_create(const model *m, const shard_desc *sd, const engine_opts *opts, engine **out)
{
    *out = NULL;
    const model_hparams *hp = &m->hp;
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return EM_ENOMEM;
    e->m = m;
    e->sd = *sd;
    e->G = hp->n_head / hp->n_kv_head;
    e->hd = hp->head_dim;
    e->n_local = sd->n_units_local;
    em_status st = shard_weights_create(m, sd, &e->sw);
    if (st != EM_OK) {
        free(e);
        return st;
    }
    int nl = hp->n_layer, u0 = sd->unit0, lo, hi;
    e->wq = calloc((size_t)nl, sizeof(kern_weight));
    e->wk = calloc((size_t)nl, sizeof(kern_weight));
    e->wv = calloc((size_t)nl, sizeof(kern_weight));
    e->w1 = calloc((size_t)nl, sizeof(kern_weight));
    e->w3 = calloc((size_t)nl, sizeof(kern_weight));
    e->ffn_off = calloc((size_t)e->n_local + 1, sizeof(int));
    if (!e->wq || !e->wk || !e->wv || !e->w1 || !e->w3 || !e->ffn_off) {
        engine_free(e);
        return EM_ENOMEM;
    }
    int f0;
    shard_ffn_range(hp, sd->n_units, u0, &f0, &hi);
    for (int i = 0; i < e->n_local; i++) {
        shard_ffn_range(hp, sd->n_units, u0 + i, &lo, &hi);
        e->ffn_off[i] = lo - f0;
        e->ffn_off[i + 1] = hi - f0;
    }
    e->ffn_local = e->ffn_off[e->n_local];
    int gq = e->G * e->hd;
    for (int l = 0; l < nl; l++) {
        const model_layer *L = &m->layers[l];
        e->wq[l] = rows_of(&L->wq, u0 * gq, e->n_local * gq);
        e->wk[l] = rows_of(&L->wk, u0 * e->hd, e->n_local * e->hd);
        e->wv[l] = rows_of(&L->wv, u0 * e->hd, e->n_local * e->hd);
        e->w1[l] = rows_of(&L->w1, f0, e->ffn_local);
        e->w3[l] = rows_of(&L->w3, f0, e->ffn_local);
    }
    int nt = opts ? opts->n_threads : 1;
    if (opts && opts->ops) {
        e->ops = opts->ops;
    } else if (nt > 0) {
        e->cpu_ops = kern_ops_cpu_create_mode(nt, opts ? opts->act : KERN_ACT_F32);
        if (!e->cpu_ops) {
            engine_free(e);
            return EM_ENOMEM;
        }
        e->ops = e->cpu_ops;
    } else {
        e->ops = kern_ops_ref_mode(opts ? opts->act : KERN_ACT_F32);
    }
    st = grow_scratch(e, opts && opts->max_batch_tokens > 0 ? opts->max_batch_tokens : 64);
    if (st != EM_OK) {
        engine_free(e);
        return st;
    }
    *out = e;
    return EM_OK;
}

void engine_free(engine *e)
{
    if (!e)
        return;
    shard_weights_free(e->sw);
    kern_ops_cpu_free(e->cpu_ops);
    free(e->wq);
    free(e->wk);
    free(e->wv);
    free(e->w1);
    free(e->w3);
    free(e->ffn_off);
    float *bufs[] = {e->x, e->xb, e->q, e->att, e->k, e->v, e->h1, e->h3, e->part, e->xn};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    for (int i = 0; i < ENGINE_MAX_THREADS; i++)
        ems_scratch_free(&e->kv_scratch[i]);
    free(e);
}

const model_hparams *engine_hparams(const engine *e)
{
    return &e->m->hp;
}
const shard_desc *engine_shard(const engine *e)
{
    return &e->sd;
}
const kern_ops *engine_ops(const engine *e)
{
    return e->ops;
}
size_t engine_weight_bytes(const engine *e)
{
    return shard_weights_bytes(e->sw);
}

em_status engine_cache_create(const engine *e, int w_loc, int want_stats, int group_max,
                              ems_cache **out)
{
    *out = NULL;
    if (w_loc < 0 || w_loc > EMS_MAX_W_LOC)
        return EM_EINVAL; /* attn_one's row buffer */
    em_status st =
        ems_cache_create(e->m->hp.n_layer, e->n_local, e->sd.unit0, e->hd, w_loc, want_stats, out);
    if (st == EM_OK)
        (*out)->group_max = group_max;
    return st;
}

/* ---- attention over every (run, local unit) ------------------------------------------- */

typedef struct attn_task {
    engine *e;
    ems_cache **caches;
    const engine_batch *b;
    const int *run_start; /* [n_runs+1] */
    int n_runs, layer;
    em_status status; /* the first failure of any task (set once, atomically) */
} attn_task;

/* Records st as the task's status unless a failure is already recorded (tasks may run on
 * several pool threads at once). */
static void attn_fail(attn_task *t, em_status st)
{
    em_status ok = EM_OK;
    __atomic_compare_exchange_n(&t->status, &ok, st, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void attn_one(void *user, int idx, int tid)
{
    attn_task *t = user;
    if (__atomic_load_n(&t->status, __ATOMIC_RELAXED) != EM_OK)
        return; /* the pass failed */
    engine *e = t->e;
    int r = idx / e->n_local, i = idx % e->n_local;
    int t0 = t->run_start[r], t1 = t->run_start[r + 1], n = t1 - t0;
    ems_cache *c = t->caches[t->b->seq[t0]];
    ems_head *h = ems_cache_head(c, t->layer, i);
    int kd = e->n_local * e->hd, qd = e->n_local * e->G * e->hd;
    em_status st =
        ems_head_append(h, e->k + (size_t)t0 * kd + (size_t)i * e->hd,
                        e->v + (size_t)t0 * kd + (size_t)i * e->hd, kd, t->b->pos + t0, n);
    if (st != EM_OK) {
        attn_fail(t, st);
        return;
    }
    kern_attn_args a = {0};
    kern_attn_stats stats;
    float *rowbuf[EMS_MAX_W_LOC]; /* ems_config_validate bounds w_loc by EMS_MAX_W_LOC */
    a.n_q = n;
    a.G = e->G;
    a.hd = e->hd;
    a.q = e->q + (size_t)t0 * qd + (size_t)i * e->G * e->hd;
    a.q_stride = qd;
    a.q_pos = t->b->pos + t0;
    a.out = e->att + (size_t)t0 * qd + (size_t)i * e->G * e->hd;
    a.o_stride = qd;
    a.scale = 1.0f / sqrtf((float)e->hd);
    EM_ASSERT(tid >= 0 && tid < ENGINE_MAX_THREADS); /* kern_parallel_for's contract */
    st = ems_head_attn_begin(h, n, &a, c->want_stats ? &stats : NULL, rowbuf, c->group_max,
                             &e->kv_scratch[tid]);
    if (st == EM_OK)
        st = kern_attn(e->ops, &a);
    if (st != EM_OK)
        attn_fail(t, st);
}

/* Zeroes the planes of units other processes own (local planes are overwritten by the unit
 * matmuls), so that the all-reduce only adds zeros to what a process wrote. */
static void zero_remote_planes(engine *e, size_t plane)
{
    int u0 = e->sd.unit0, u1 = e->sd.unit0 + e->sd.n_units_local;
    if (u0 > 0)
        memset(e->part, 0, sizeof(float) * plane * (size_t)u0);
    if (u1 < e->sd.n_units) {
        memset(e->part + plane * (size_t)u1, 0,
               sizeof(float) * plane * (size_t)(e->sd.n_units - u1));
    }
}

/* x += sum over units (in unit order) of part[u] after the all-reduce. */
static em_status reduce_add(engine *e, int n)
{
    const model_hparams *hp = &e->m->hp;
    size_t plane = (size_t)n * hp->dim;
    if (e->sd.reduce) {
        /* Only the local units' planes are non-zero here; the sum over processes gathers them. */
        if (e->sd.reduce(e->sd.reduce_user, e->part, plane * e->sd.n_units) != 0) {
            return EM_EUNAVAILABLE;
        }
    }
    for (size_t j = 0; j < plane; j++) {
        float s = e->part[j];
        for (int u = 1; u < e->sd.n_units; u++)
            s += e->part[(size_t)u * plane + j];
        e->x[j] += s;
    }
    return EM_OK;
}

/* Attention of layer l over every (sequence run, local KV head): appends the run's K/V to its
 * head and attends. One task per pair (heads own disjoint caches); the first failure wins. */
static em_status attention(engine *e, int l, const engine_batch *b, ems_cache **caches,
                           const int *run_start, int n_runs)
{
    int nlc = e->n_local;
    attn_task task = {e, caches, b, run_start, n_runs, l, EM_OK};
    /* Small attention work (tiny heads, short caches) runs inline: a pool dispatch costs more
     * than it saves. */
    long work = 0;
    for (int r = 0; r < n_runs; r++) {
        int t0 = run_start[r], nq = run_start[r + 1] - t0;
        long len = ems_cache_head(caches[b->seq[t0]], l, 0)->len + nq;
        work += (long)nq * len * e->G * e->hd * nlc;
    }
    if (n_runs * nlc > 1 && work >= ENGINE_ATTN_PAR_MIN) {
        kern_parallel_for(e->ops, n_runs * nlc, attn_one, &task);
    } else {
        for (int idx = 0; idx < n_runs * nlc; idx++)
            attn_one(&task, idx, 0);
    }
    return __atomic_load_n(&task.status, __ATOMIC_RELAXED);
}

/* part[unit] = src's columns of each local unit times that unit's weight (wo or w2). */
static em_status unit_matmuls(engine *e, int l, int which_w2, const float *src, int src_stride,
                              int n)
{
    const kern_ops *o = e->ops;
    int dim = e->m->hp.dim, nlc = e->n_local, gq = e->G * e->hd;
    size_t plane = (size_t)n * dim;
    zero_remote_planes(e, plane);
    for (int i = 0; i < nlc; i++) {
        const shard_unit_weights *uw = &e->sw->units[l * nlc + i];
        float *dst = e->part + (size_t)(e->sd.unit0 + i) * plane;
        const float *in = src + (which_w2 ? (size_t)e->ffn_off[i] : (size_t)i * gq);
        em_status st = kern_matmul(o, which_w2 ? &uw->w2 : &uw->wo, in, src_stride, n, dst, dim);
        if (st != EM_OK)
            return st;
    }
    return EM_OK;
}

/* Every op's status is checked; the first failure ends the layer and is returned. */
#define TRY(expr)                   \
    do {                            \
        em_status try_st_ = (expr); \
        if (try_st_ != EM_OK)       \
            return try_st_;         \
    } while (0)

static em_status layer_forward(engine *e, int l, const engine_batch *b, ems_cache **caches,
                               const int *run_start, int n_runs)
{
    const model_hparams *hp = &e->m->hp;
    const model_layer *L = &e->m->layers[l];
    const kern_ops *o = e->ops;
    int n = b->n_tokens, dim = hp->dim, hd = e->hd, G = e->G, nlc = e->n_local;
    int qd = nlc * G * hd, kd = nlc * hd;

    TRY(kern_rmsnorm(o, e->x, L->attn_norm.data, n, dim, hp->norm_eps, e->xb));
    TRY(kern_matmul(o, &e->wq[l], e->xb, dim, n, e->q, qd));
    TRY(kern_matmul(o, &e->wk[l], e->xb, dim, n, e->k, kd));
    TRY(kern_matmul(o, &e->wv[l], e->xb, dim, n, e->v, kd));
    TRY(kern_rope(o, e->q, n, nlc * G, hd, qd, b->pos, hp->rope_base, hp->rope_dim));
    TRY(kern_rope(o, e->k, n, nlc, hd, kd, b->pos, hp->rope_base, hp->rope_dim));
    TRY(attention(e, l, b, caches, run_start, n_runs));
    TRY(unit_matmuls(e, l, 0, e->att, qd, n));
    TRY(reduce_add(e, n));

    TRY(kern_rmsnorm(o, e->x, L->ffn_norm.data, n, dim, hp->norm_eps, e->xb));
    TRY(kern_matmul(o, &e->w1[l], e->xb, dim, n, e->h1, e->ffn_local));
    TRY(kern_matmul(o, &e->w3[l], e->xb, dim, n, e->h3, e->ffn_local));
    TRY(kern_swiglu(o, e->h1, e->h3, n, e->ffn_local, e->h1));
    TRY(unit_matmuls(e, l, 1, e->h1, e->ffn_local, n));
    return reduce_add(e, n);
}

/* Logits of the tokens that want them (b->logits, else the last of each run), in batch order. */
static em_status logits_forward(engine *e, const engine_batch *b, const int *run_start, int n_runs,
                                float *logits_out)
{
    const model_hparams *hp = &e->m->hp;
    int nl = 0;
    for (int r = 0; r < n_runs; r++) {
        for (int t = run_start[r]; t < run_start[r + 1]; t++) {
            int want = b->logits ? b->logits[t] : (t == run_start[r + 1] - 1);
            if (!want)
                continue;
            memcpy(e->xn + (size_t)nl * hp->dim, e->x + (size_t)t * hp->dim,
                   sizeof(float) * hp->dim);
            nl++;
        }
    }
    if (nl == 0)
        return EM_OK;
    const kern_ops *o = e->ops;
    TRY(kern_rmsnorm(o, e->xn, e->m->out_norm.data, nl, hp->dim, hp->norm_eps, e->xn));
    return kern_matmul(o, &e->m->output, e->xn, hp->dim, nl, logits_out, hp->n_vocab);
}

/* 1 when c was made by engine_cache_create of an engine with e's shape and shard. */
static int cache_fits(const engine *e, const ems_cache *c)
{
    return c && c->n_layer == e->m->hp.n_layer && c->n_head_kv == e->n_local &&
           c->kv_head0 == e->sd.unit0 && c->hd == e->hd;
}

em_status engine_forward(engine *e, const engine_batch *b, ems_cache **caches, float *logits_out)
{
    const model_hparams *hp = &e->m->hp;
    int n = b->n_tokens;
    if (n <= 0)
        return EM_EINVAL;
    for (int t = 0; t < n; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= hp->n_vocab || b->pos[t] < 0 ||
            b->pos[t] >= hp->n_ctx || b->seq[t] < 0 || !cache_fits(e, caches[b->seq[t]])) {
            return EM_EINVAL;
        }
    }
    em_status st = grow_scratch(e, n);
    if (st != EM_OK)
        return st;
    int *run_start = malloc(sizeof(int) * (size_t)(n + 1));
    if (!run_start)
        return EM_ENOMEM;
    int n_runs = 0;
    for (int t = 0; t < n; t++) {
        if (t == 0 || b->seq[t] != b->seq[t - 1])
            run_start[n_runs++] = t;
    }
    run_start[n_runs] = n;
    for (int t = 0; t < n; t++)
        kern_embed_row(&e->m->tok_embd, b->tokens[t], e->x + (size_t)t * hp->dim);
    for (int l = 0; l < hp->n_layer && st == EM_OK; l++) {
        st = layer_forward(e, l, b, caches, run_start, n_runs);
    }
    if (st == EM_OK && logits_out)
        st = logits_forward(e, b, run_start, n_runs, logits_out);
    if (st == EM_OK) {
        for (int t = 0; t < n; t++)
            caches[b->seq[t]]->n_seen++;
    }
    free(run_start);
    return st;
}

em_status engine_forward_seq(engine *e, ems_cache *c, const int32_t *ids, int n, int pos0,
                             int chunk, float *logits)
{
    if (n <= 0 || chunk <= 0)
        return EM_EINVAL;
    if (chunk > n)
        chunk = n;
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)chunk);
    int32_t *seq = calloc((size_t)chunk, sizeof(int32_t));
    if (!pos || !seq) {
        free(pos);
        free(seq);
        return EM_ENOMEM;
    }
    em_status st = EM_OK;
    for (int s = 0; s < n && st == EM_OK; s += chunk) {
        int m = n - s < chunk ? n - s : chunk;
        for (int i = 0; i < m; i++)
            pos[i] = pos0 + s + i;
        engine_batch b = {m, ids + s, pos, seq, NULL};
        st = engine_forward(e, &b, &c, s + m == n ? logits : NULL);
    }
    free(pos);
    free(seq);
    return st;
}
