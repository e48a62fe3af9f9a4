/* A failing kernel op surfaces from engine_forward as its status. The engine runs on a faulty
 * backend that wraps the reference or the fast CPU backend (whose pool then runs the attention
 * tasks) and fails the Nth call of one op with a chosen status. Table-driven over every op and
 * over the first call, a middle call and the last call (the logits matmul) of a forward pass,
 * on a two-sequence prefill and on a decode step after it. Checked each time: engine_forward
 * returns exactly that status, no op runs after a failed one (the pool's other attention tasks
 * excepted), no cache's n_seen moves, the layers after the failure hold none of the batch's K/V
 * (engine.h), the caches can be destroyed, and the same engine then gives the logits of a
 * clean run bit for bit. Skips loudly without the stories260K model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "kernels/cpu/kern_cpu.h"
#include "model/model.h"
#include "tests/testutil/testutil.h"

typedef enum { OP_MATMUL, OP_RMSNORM, OP_ROPE, OP_SWIGLU, OP_ATTN, N_OPS } op_kind;
static const char *const k_op_names[N_OPS] = {"matmul", "rmsnorm", "rope", "swiglu", "attn"};

typedef struct faulty {
    kern_ops ops; /* first member: ops.ctx points back here */
    const kern_ops *inner;
    op_kind fail_op;
    long fail_at; /* 1-based call of fail_op that fails; 0: none */
    em_status fail_with;
    long calls[N_OPS]; /* calls so far, per op (atomic) */
    int failed;        /* the failure happened (atomic) */
    long after[N_OPS]; /* calls that started after it, per op (atomic) */
} faulty;

/* Counts the call; returns the injected status for the chosen call, else EM_OK. */
static em_status enter(faulty *f, op_kind op)
{
    if (__atomic_load_n(&f->failed, __ATOMIC_ACQUIRE))
        __atomic_fetch_add(&f->after[op], 1, __ATOMIC_RELAXED);
    long n = __atomic_add_fetch(&f->calls[op], 1, __ATOMIC_RELAXED);
    if (op != f->fail_op || n != f->fail_at)
        return EM_OK;
    __atomic_store_n(&f->failed, 1, __ATOMIC_RELEASE);
    return f->fail_with;
}

static em_status f_matmul(void *ctx, const kern_weight *w, const float *x, int xs, int n, float *y,
                          int ys)
{
    faulty *f = ctx;
    em_status st = enter(f, OP_MATMUL);
    return st != EM_OK ? st : kern_matmul(f->inner, w, x, xs, n, y, ys);
}

static em_status f_rmsnorm(void *ctx, const float *x, const float *g, int n, int dim, float eps,
                           float *y)
{
    faulty *f = ctx;
    em_status st = enter(f, OP_RMSNORM);
    return st != EM_OK ? st : kern_rmsnorm(f->inner, x, g, n, dim, eps, y);
}

static em_status f_rope(void *ctx, float *x, int n_tok, int n_heads, int hd, int stride,
                        const int32_t *pos, float base, int rope_dim)
{
    faulty *f = ctx;
    em_status st = enter(f, OP_ROPE);
    return st != EM_OK ? st
                       : kern_rope(f->inner, x, n_tok, n_heads, hd, stride, pos, base, rope_dim);
}

static em_status f_swiglu(void *ctx, const float *gate, const float *up, int n, int dim, float *out)
{
    faulty *f = ctx;
    em_status st = enter(f, OP_SWIGLU);
    return st != EM_OK ? st : kern_swiglu(f->inner, gate, up, n, dim, out);
}

static em_status f_attn(void *ctx, const kern_attn_args *a)
{
    faulty *f = ctx;
    em_status st = enter(f, OP_ATTN);
    return st != EM_OK ? st : kern_attn(f->inner, a);
}

static void f_parallel_for(void *ctx, int n, void (*fn)(void *user, int i, int tid), void *user)
{
    const kern_ops *in = ((faulty *)ctx)->inner;
    in->parallel_for(in->ctx, n, fn, user);
}

static void faulty_init(faulty *f, const kern_ops *inner)
{
    memset(f, 0, sizeof *f);
    f->inner = inner;
    f->ops = (kern_ops){.name = "faulty",
                        .matmul = f_matmul,
                        .rmsnorm = f_rmsnorm,
                        .rope = f_rope,
                        .swiglu = f_swiglu,
                        .attn = f_attn,
                        .parallel_for = inner->parallel_for ? f_parallel_for : NULL,
                        .ctx = f};
}

/* Arms the next failure (fail_at 0: none) and clears the counters. */
static void faulty_arm(faulty *f, op_kind op, long fail_at, em_status with)
{
    f->fail_op = op;
    f->fail_at = fail_at;
    f->fail_with = with;
    f->failed = 0;
    memset(f->calls, 0, sizeof f->calls);
    memset(f->after, 0, sizeof f->after);
}

/* ---- the batch: a prefill of two sequences, then one decode step of sequence 0 ---- */

enum { N0 = 24, N1 = 16, N_PREFILL = N0 + N1 };

typedef struct fixture {
    const model *m;
    engine *e;
    faulty *f;
    int32_t tok[N_PREFILL], pos[N_PREFILL], seq[N_PREFILL];
    float *logits; /* [2][n_vocab] */
} fixture;

static em_status new_caches(fixture *x, ems_cache **c)
{
    c[0] = c[1] = NULL;
    em_status st = engine_cache_create(x->e, 0, 0, 0, &c[0]);
    return st == EM_OK ? engine_cache_create(x->e, 0, 0, 0, &c[1]) : st;
}

static void free_caches(ems_cache **c)
{
    ems_cache_destroy(c[0]);
    ems_cache_destroy(c[1]);
}

static em_status prefill(fixture *x, ems_cache **c)
{
    engine_batch b = {N_PREFILL, x->tok, x->pos, x->seq, NULL};
    return engine_forward(x->e, &b, c, x->logits);
}

static em_status decode(fixture *x, ems_cache **c)
{
    int32_t tok = 7, pos = N0, seq = 0;
    engine_batch b = {1, &tok, &pos, &seq, NULL};
    return engine_forward(x->e, &b, c, x->logits);
}

/* Calls of each op in one clean prefill and in one clean decode step. */
static void count_calls(fixture *x, long pre[N_OPS], long dec[N_OPS])
{
    ems_cache *c[2];
    faulty_arm(x->f, OP_MATMUL, 0, EM_OK);
    REQUIRE(new_caches(x, c) == EM_OK && prefill(x, c) == EM_OK, "clean prefill");
    memcpy(pre, x->f->calls, sizeof x->f->calls);
    faulty_arm(x->f, OP_MATMUL, 0, EM_OK);
    REQUIRE(decode(x, c) == EM_OK, "clean decode");
    memcpy(dec, x->f->calls, sizeof x->f->calls);
    free_caches(c);
}

typedef struct fail_case {
    op_kind op;
    int at; /* 0: first call, 1: middle, 2: last */
    int in_decode;
    em_status with;
} fail_case;

static const fail_case k_cases[] = {
    {OP_MATMUL, 0, 0, EM_EDEVICE},    {OP_MATMUL, 1, 0, EM_ENOMEM},   {OP_MATMUL, 2, 0, EM_EDEVICE},
    {OP_RMSNORM, 0, 0, EM_EINVAL},    {OP_RMSNORM, 2, 0, EM_EDEVICE}, {OP_ROPE, 1, 0, EM_EDEVICE},
    {OP_SWIGLU, 2, 0, EM_ENOMEM},     {OP_ATTN, 0, 0, EM_ENOMEM},     {OP_ATTN, 1, 0, EM_EDEVICE},
    {OP_ATTN, 2, 0, EM_EUNSUPPORTED}, {OP_MATMUL, 0, 1, EM_EDEVICE},  {OP_MATMUL, 1, 1, EM_EDEVICE},
    {OP_MATMUL, 2, 1, EM_ENOMEM},     {OP_RMSNORM, 1, 1, EM_EDEVICE}, {OP_ROPE, 2, 1, EM_EINVAL},
    {OP_SWIGLU, 0, 1, EM_EDEVICE},    {OP_ATTN, 1, 1, EM_ENOMEM},     {OP_ATTN, 2, 1, EM_EDEVICE},
};

/* Layer of the k-th (1-based) call of op in a pass with calls_per_pass calls (the logits
 * rmsnorm/matmul count as layer n_layer). */
static int layer_of(const model *m, op_kind op, long k, long calls_per_pass)
{
    long extra = op == OP_MATMUL || op == OP_RMSNORM ? 1 : 0,
         per = (calls_per_pass - extra) / m->hp.n_layer;
    return (int)((k - 1) / per);
}

static void run_case(fixture *x, const fail_case *fc, const long pre[N_OPS], const long dec[N_OPS],
                     const float *clean, const char *backend)
{
    const long *calls = fc->in_decode ? dec : pre;
    long total = calls[fc->op], k = fc->at == 0 ? 1 : fc->at == 1 ? total / 2 + 1 : total;
    char what[160];
    snprintf(what, sizeof what, "%s: %s call %ld of %ld fails with %s in the %s", backend,
             k_op_names[fc->op], k, total, em_status_str(fc->with),
             fc->in_decode ? "decode step" : "prefill");
    ems_cache *c[2];
    REQUIRE(new_caches(x, c) == EM_OK, "%s: caches", what);
    if (fc->in_decode) {
        faulty_arm(x->f, fc->op, 0, EM_OK);
        REQUIRE(prefill(x, c) == EM_OK, "%s: prefill", what);
    }
    int len0[2] = {ems_cache_head(c[0], 0, 0)->len, ems_cache_head(c[1], 0, 0)->len};
    int seen0[2] = {c[0]->n_seen, c[1]->n_seen};
    faulty_arm(x->f, fc->op, k, fc->with);
    em_status st = fc->in_decode ? decode(x, c) : prefill(x, c);
    CHECK(st == fc->with, "%s: engine_forward returned %s", what, em_status_str(st));
    CHECK(x->f->failed, "%s: the failing call was never made", what);
    for (int o = 0; o < N_OPS; o++) {
        /* attention tasks already handed to the pool may still run; nothing else may */
        int allowed = fc->op == OP_ATTN && o == OP_ATTN && x->f->inner->parallel_for;
        CHECK(allowed || x->f->after[o] == 0, "%s: %ld %s calls after the failure", what,
              x->f->after[o], k_op_names[o]);
    }
    CHECK(c[0]->n_seen == seen0[0] && c[1]->n_seen == seen0[1], "%s: n_seen moved (%d, %d)", what,
          c[0]->n_seen, c[1]->n_seen);
    /* layers after the failing one never saw the batch: their heads keep their length */
    int fl = layer_of(x->m, fc->op, k, total), nl = x->m->hp.n_layer;
    for (int l = fl + 1; l < nl; l++)
        for (int s = 0; s < 2; s++)
            CHECK(ems_cache_head(c[s], l, 0)->len == len0[s],
                  "%s: layer %d of sequence %d holds %d entries, had %d", what, l, s,
                  ems_cache_head(c[s], l, 0)->len, len0[s]);
    free_caches(c);
    /* the engine is unharmed: a clean run gives the clean logits bit for bit */
    faulty_arm(x->f, fc->op, 0, EM_OK);
    REQUIRE(new_caches(x, c) == EM_OK, "%s: caches", what);
    st = prefill(x, c);
    if (st == EM_OK && fc->in_decode)
        st = decode(x, c);
    CHECK(st == EM_OK, "%s: clean rerun returned %s", what, em_status_str(st));
    size_t nb = sizeof(float) * 2 * (size_t)x->m->hp.n_vocab;
    CHECK(st != EM_OK || memcmp(x->logits, clean + (fc->in_decode ? 2 * x->m->hp.n_vocab : 0),
                                fc->in_decode ? nb / 2 : nb) == 0,
          "%s: clean rerun logits differ", what);
    free_caches(c);
}

/* All cases on one engine over the given inner backend. */
static void run_backend(const model *m, const kern_ops *inner, const char *name)
{
    faulty f;
    faulty_init(&f, inner);
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.ops = &f.ops, .max_batch_tokens = N_PREFILL};
    fixture x = {.m = m, .f = &f};
    REQUIRE(engine_create(m, &sd, &eo, &x.e) == EM_OK, "engine_create over %s", name);
    for (int i = 0; i < N_PREFILL; i++) {
        x.tok[i] = 1 + (i * 37) % (m->hp.n_vocab - 1);
        x.seq[i] = i < N0 ? 0 : 1;
        x.pos[i] = i < N0 ? i : i - N0;
    }
    size_t nv = (size_t)m->hp.n_vocab;
    x.logits = malloc(sizeof(float) * 2 * nv);
    float *clean = malloc(sizeof(float) * 3 * nv); /* prefill's 2 rows, then the decode row */
    REQUIRE(x.logits && clean, "logit buffers");
    long pre[N_OPS], dec[N_OPS];
    count_calls(&x, pre, dec);
    ems_cache *c[2];
    REQUIRE(new_caches(&x, c) == EM_OK && prefill(&x, c) == EM_OK, "clean prefill");
    memcpy(clean, x.logits, sizeof(float) * 2 * nv);
    REQUIRE(decode(&x, c) == EM_OK, "clean decode");
    memcpy(clean + 2 * nv, x.logits, sizeof(float) * nv);
    free_caches(c);
    for (int op = 0; op < N_OPS; op++)
        CHECK(pre[op] > 0 && dec[op] > 0, "%s: op %s never called", name, k_op_names[op]);
    int before = tu_failures;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++)
        run_case(&x, &k_cases[i], pre, dec, clean, name);
    printf("%s %zu failure cases over %s (%ld matmuls per prefill, %ld per decode step)\n",
           tu_failures == before ? "ok  " : "FAIL", sizeof k_cases / sizeof k_cases[0], name,
           pre[OP_MATMUL], dec[OP_MATMUL]);
    engine_free(x.e);
    free(x.logits);
    free(clean);
}

/* A cache of another shape (here: another head size) is EM_EINVAL before any op runs. */
static void foreign_cache(const model *m)
{
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = 0};
    engine *e;
    ems_cache *c;
    REQUIRE(engine_create(m, &sd, &eo, &e) == EM_OK, "engine_create");
    REQUIRE(ems_cache_create(m->hp.n_layer, m->hp.n_kv_head, 0, m->hp.head_dim + 1, 0, 0, &c) ==
                EM_OK,
            "ems_cache_create");
    int32_t tok = 5, pos = 0, seq = 0;
    engine_batch b = {1, &tok, &pos, &seq, NULL};
    em_status st = engine_forward(e, &b, &c, NULL);
    CHECK(st == EM_EINVAL && ems_cache_head(c, 0, 0)->len == 0, "a cache with head size %d: %s",
          m->hp.head_dim + 1, em_status_str(st));
    ems_cache_destroy(c);
    engine_free(e);
}

int main(void)
{
    const char *path = tu_model_path(0);
    char err[256] = "";
    model *m = NULL;
    REQUIRE(model_load(path, &m, err, sizeof err) == EM_OK, "model_load: %s", err);
    foreign_cache(m);
    run_backend(m, kern_ops_ref(), "reference ops");
    kern_ops *cpu = kern_ops_cpu_create(3);
    REQUIRE(cpu != NULL, "kern_ops_cpu_create");
    run_backend(m, cpu, "CPU ops, 3 threads (attention on the pool)");
    kern_ops_cpu_free(cpu);
    model_free(m);
    TEST_END();
}
