/* Cost of one end-of-prompt compression (ems_policy_step PREFILL_END) on a cache of
 * SmolLM2-135M's shape (30 layers x 3 KV heads of 64 by default) filled with synthetic data:
 * keys = a shared per-head direction + noise (real keys are anisotropic), values random, a
 * fraction of entries near-copies of earlier ones (repetitive filler), attention statistics
 * random with a heavy tail. Prints the median wall time over --reps fresh copies, and with
 * --check compares the result with the scalar reference (ems/ref) for method ems: kept
 * positions identical, K/V and statistics within 1e-6 + 1e-6 |ref|.
 *
 * With --cache FILE the cache is a real prompt's (longctx --dump-cache) instead.
 *
 *   bench/ems_step_bench [--cache FILE] [--len 4076] [--layers 30] [--heads 3] [--hd 64] [--budget
 * 128]
 *       [--method ems] [--param K=V]... [--reps 3] [--dup 0.3] [--check] [--per-head]
 *
 * --per-head: the step run per (layer, KV head), one ems_policy_step on a one-head view each,
 * instead of once over all heads (configs whose heads are independent); afterwards the
 * all-at-once result is computed too and the two caches compared (exit 1 when they differ).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"
#include "ems/config.h"
#include "ems/policy.h"
#include "ems/ref/ems_ref.h"
#include "eval/cache_io.h"

typedef struct opts {
    int len, layers, heads, hd, budget, reps, check, per_head;
    float dup;
    const char *method, *cache;
    const char *params[16];
    int n_params;
} opts;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static float uni(uint64_t *s) /* uniform (-1, 1) */
{
    return (float)((double)(rng_next(s) >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static em_status fill(ems_cache *c, const opts *o)
{
    int hd = o->hd, n = o->len;
    float *k = malloc(sizeof(float) * (size_t)n * hd), *v = malloc(sizeof(float) * (size_t)n * hd);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n);
    float *dir = malloc(sizeof(float) * (size_t)hd);
    em_status st = (k && v && pos && dir) ? EM_OK : EM_ENOMEM;
    uint64_t rs = 12345;
    for (int l = 0; l < o->layers && st == EM_OK; l++) {
        for (int h = 0; h < o->heads && st == EM_OK; h++) {
            ems_head *hh = ems_cache_head(c, l, h);
            for (int d = 0; d < hd; d++)
                dir[d] = 2.0f * uni(&rs);
            for (int i = 0; i < n; i++) {
                pos[i] = i;
                int src = (i > 0 && 0.5f * (uni(&rs) + 1.0f) < o->dup)
                              ? (int)(0.5f * (uni(&rs) + 1.0f) * (float)i)
                              : -1;
                for (int d = 0; d < hd; d++) {
                    float *kr = k + (size_t)i * hd, *vr = v + (size_t)i * hd;
                    if (src >= 0 && src < i) {
                        kr[d] = k[(size_t)src * hd + d] + 0.05f * uni(&rs);
                        vr[d] = v[(size_t)src * hd + d] + 0.05f * uni(&rs);
                    } else {
                        kr[d] = dir[d] + uni(&rs);
                        vr[d] = uni(&rs);
                    }
                }
            }
            st = ems_head_append(hh, k, v, hd, pos, n);
            for (int i = 0; i < n && st == EM_OK; i++) {
                float u = 0.5f * (uni(&rs) + 1.0f);
                hh->s_glo[i] = 0.01f * u * u * u * u * (float)(n - i);
                hh->s_sq[i] = hh->s_glo[i] * 0.01f;
                hh->cnt[i] = n - i;
                for (int r = 0; r < hh->w_loc; r++) {
                    float w = 0.5f * (uni(&rs) + 1.0f);
                    hh->loc[(size_t)r * hh->cap + i] = w * w * w * w * w * w / (float)n;
                }
            }
            hh->loc_count = hh->w_loc;
            hh->loc_newest = hh->w_loc - 1;
        }
    }
    c->n_seen = n;
    free(k), free(v), free(pos), free(dir);
    return st;
}

static int close_f(float a, float b)
{
    return fabsf(a - b) <= 1e-6f + 1e-6f * fabsf(b);
}

/* Returns the number of heads that differ (kept positions, K/V or statistics). */
static int compare(const ems_cache *a, const ems_cache *b)
{
    int bad = 0, hd = a->hd;
    for (int i = 0; i < a->n_layer * a->n_head_kv; i++) {
        const ems_head *x = &a->heads[i], *y = &b->heads[i];
        int diff = x->len != y->len;
        for (int j = 0; !diff && j < x->len; j++) {
            diff = x->pos[j] != y->pos[j] || x->cnt[j] != y->cnt[j] ||
                   !close_f(x->s_glo[j], y->s_glo[j]) || !close_f(x->mass[j], y->mass[j]);
            for (int d = 0; !diff && d < hd; d++) {
                diff = !close_f(x->k[(size_t)j * hd + d], y->k[(size_t)j * hd + d]) ||
                       !close_f(x->v[(size_t)j * hd + d], y->v[(size_t)j * hd + d]);
            }
        }
        bad += diff;
    }
    return bad;
}

/* Per-head sequential compression: one ems_policy_step per (layer, KV head), each on a
 * one-layer, one-head view of c (the head's own policy state, the model's head count through
 * the reduce descriptor). Only for configs that need no other head (no head-wise budgets, no
 * per-layer TOVA / SimLayerKV decision): the result is then the all-heads-at-once step's. */
static em_status step_per_head(ems_cache *c, const ems_config *cfg, ems_policy_stats *sum)
{
    memset(sum, 0, sizeof *sum);
    ems_reduce red = {NULL, NULL, c->n_head_kv};
    em_status st = EM_OK;
    for (int l = 0; l < c->n_layer && st == EM_OK; l++) {
        for (int h = 0; h < c->n_head_kv && st == EM_OK; h++) {
            ems_cache view = *c;
            view.n_layer = 1;
            view.n_head_kv = 1;
            view.kv_head0 = c->kv_head0 + h;
            view.heads = ems_cache_head(c, l, h);
            view.policy = NULL;
            st = ems_policy_step(&view, cfg, EMS_PHASE_PREFILL_END, &red);
            ems_policy_stats vs;
            ems_policy_get_stats(&view, &vs);
            sum->n_evicted += vs.n_evicted;
            sum->n_merged += vs.n_merged;
            free(view.policy);
        }
    }
    return st;
}

static int per_head_ok(const ems_config *cfg)
{
    if (cfg->method == EMS_METHOD_EMS)
        return !cfg->ems_headwise;
    return cfg->method != EMS_METHOD_TOVA && cfg->method != EMS_METHOD_SIMLAYERKV &&
           cfg->method != EMS_METHOD_PYRAMIDKV;
}

/* Heads of a and b whose entries differ in any bit (positions, K, V, s_glo, mass, cnt). */
static int differ_bits(const ems_cache *a, const ems_cache *b)
{
    int bad = 0, hd = a->hd;
    for (int i = 0; i < a->n_layer * a->n_head_kv; i++) {
        const ems_head *x = &a->heads[i], *y = &b->heads[i];
        size_t n = (size_t)x->len;
        bad += x->len != y->len || memcmp(x->pos, y->pos, n * sizeof *x->pos) ||
               memcmp(x->k, y->k, n * hd * sizeof(float)) ||
               memcmp(x->v, y->v, n * hd * sizeof(float)) ||
               memcmp(x->s_glo, y->s_glo, n * sizeof(float)) ||
               memcmp(x->mass, y->mass, n * sizeof(float)) ||
               memcmp(x->cnt, y->cnt, n * sizeof *x->cnt);
    }
    return bad;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static em_status parse(int argc, char **argv, opts *o)
{
    *o = (opts){.len = 4076,
                .layers = 30,
                .heads = 3,
                .hd = 64,
                .budget = 128,
                .reps = 3,
                .dup = 0.3f,
                .method = "ems"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--check")) {
            o->check = 1;
            continue;
        }
        if (!strcmp(a, "--per-head")) {
            o->per_head = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ems_step_bench: %s needs a value\n", a);
            return EM_EINVAL;
        }
        i++;
        if (!strcmp(a, "--len"))
            o->len = atoi(v);
        else if (!strcmp(a, "--layers"))
            o->layers = atoi(v);
        else if (!strcmp(a, "--heads"))
            o->heads = atoi(v);
        else if (!strcmp(a, "--hd"))
            o->hd = atoi(v);
        else if (!strcmp(a, "--budget"))
            o->budget = atoi(v);
        else if (!strcmp(a, "--reps"))
            o->reps = atoi(v);
        else if (!strcmp(a, "--dup"))
            o->dup = (float)atof(v);
        else if (!strcmp(a, "--cache"))
            o->cache = v;
        else if (!strcmp(a, "--method"))
            o->method = v;
        else if (!strcmp(a, "--param") && o->n_params < 16)
            o->params[o->n_params++] = v;
        else {
            fprintf(stderr, "ems_step_bench: unknown option %s\n", a);
            return EM_EINVAL;
        }
    }
    if (o->per_head && o->cache == NULL && o->check) {
        fprintf(stderr, "ems_step_bench: --per-head compares with the all-heads step itself; "
                        "no --check\n");
        return EM_EINVAL;
    }
    if (o->len < 1 || o->layers < 1 || o->heads < 1 || o->hd < 1 || o->reps < 1 || o->budget < 1) {
        fprintf(stderr, "ems_step_bench: sizes must be positive\n");
        return EM_EINVAL;
    }
    return EM_OK;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o) != EM_OK)
        return 2;
    char err[256], kv[64];
    ems_config cfg;
    ems_config_default(&cfg);
    snprintf(kv, sizeof kv, "method=%s", o.method);
    em_status st = ems_config_set_kv(&cfg, kv, err, sizeof err);
    snprintf(kv, sizeof kv, "budget=%d", o.budget);
    if (st == EM_OK)
        st = ems_config_set_kv(&cfg, kv, err, sizeof err);
    for (int i = 0; i < o.n_params && st == EM_OK; i++)
        st = ems_config_set_kv(&cfg, o.params[i], err, sizeof err);
    if (st == EM_OK)
        st = ems_config_validate(&cfg, err, sizeof err);
    if (st != EM_OK) {
        fprintf(stderr, "ems_step_bench: %s\n", err);
        return 2;
    }
    if (o.per_head && !per_head_ok(&cfg)) {
        fprintf(stderr, "ems_step_bench: --per-head needs a config whose heads are independent "
                        "(ems.headwise=0; not tova, simlayerkv, pyramidkv)\n");
        return 2;
    }
    ems_cache *base = NULL;
    if (o.cache) { /* a real prompt cache (longctx --dump-cache) */
        st = lc_cache_read(o.cache, &base);
        if (st == EM_OK) {
            o.layers = base->n_layer, o.heads = base->n_head_kv, o.hd = base->hd;
            o.len = base->heads[0].len;
            if (ems_config_w_loc(&cfg) > base->heads[0].w_loc)
                st = EM_EINVAL; /* the cache's ring is shorter than this config's */
        }
    } else {
        st = ems_cache_create(o.layers, o.heads, 0, o.hd, ems_config_w_loc(&cfg), 1, &base);
        if (st == EM_OK)
            st = fill(base, &o);
    }
    if (st != EM_OK) {
        fprintf(stderr, "ems_step_bench: cache setup failed (%s)\n", em_status_str(st));
        return 1;
    }
    double *t = calloc((size_t)o.reps, sizeof(double)),
           *tc = calloc((size_t)o.reps, sizeof(double));
    ems_policy_stats ps = {0};
    ems_cache *last = NULL;
    for (int r = 0; r < o.reps && st == EM_OK; r++) {
        ems_cache *c = NULL;
        st = ems_cache_clone(base, ems_config_w_loc(&cfg), &c);
        double t0 = em_now_s(), c0 = cpu_s();
        if (st == EM_OK)
            st = o.per_head ? step_per_head(c, &cfg, &ps)
                            : ems_policy_step(c, &cfg, EMS_PHASE_PREFILL_END, NULL);
        t[r] = em_now_s() - t0;
        tc[r] = cpu_s() - c0;
        if (st == EM_OK && !o.per_head)
            ems_policy_get_stats(c, &ps);
        ems_cache_destroy(last);
        last = c;
    }
    if (st != EM_OK) {
        fprintf(stderr, "ems_step_bench: policy step failed (%s)\n", em_status_str(st));
        return 1;
    }
    qsort(t, (size_t)o.reps, sizeof(double), cmp_double);
    qsort(tc, (size_t)o.reps, sizeof(double), cmp_double);
    printf("%smethod %s B %d len %d layers %d heads %d hd %d: wall %.2f ms median of %d (min %.2f),"
           " cpu %.2f ms median (min %.2f); evicted %lld merged %lld entries after %llu\n",
           o.per_head ? "per-head " : "", o.method, o.budget, o.len, o.layers, o.heads, o.hd,
           1e3 * t[o.reps / 2], o.reps, 1e3 * t[0], 1e3 * tc[o.reps / 2], 1e3 * tc[0],
           (long long)ps.n_evicted, (long long)ps.n_merged,
           (unsigned long long)ems_cache_entries(last));
    int rc = 0;
    if (o.per_head) { /* the same step on all heads at once must give the same cache */
        ems_cache *all = NULL;
        st = ems_cache_clone(base, ems_config_w_loc(&cfg), &all);
        if (st == EM_OK)
            st = ems_policy_step(all, &cfg, EMS_PHASE_PREFILL_END, NULL);
        int bad = st == EM_OK ? differ_bits(last, all) : -1;
        printf("all heads at once vs per head: heads differing (any bit) %d of %d\n", bad,
               o.layers * o.heads);
        rc = bad != 0;
        ems_cache_destroy(all);
    }
    if (o.check && cfg.method == EMS_METHOD_EMS) {
        ems_cache *ref = NULL;
        ems_head **hs = malloc(sizeof(ems_head *) * (size_t)o.heads);
        st = ems_cache_clone(base, ems_config_w_loc(&cfg), &ref);
        double t0 = em_now_s();
        for (int l = 0; st == EM_OK && hs && l < o.layers; l++) {
            for (int h = 0; h < o.heads; h++)
                hs[h] = ems_cache_head(ref, l, h);
            ems_ref_ems_layer(hs, o.heads, &cfg, o.budget);
        }
        int bad = st == EM_OK && hs ? compare(last, ref) : -1;
        printf("reference: %.0f ms; heads differing from it: %d of %d\n", 1e3 * (em_now_s() - t0),
               bad, o.layers * o.heads);
        rc = bad != 0;
        free(hs);
        ems_cache_destroy(ref);
    }
    ems_cache_destroy(last);
    ems_cache_destroy(base);
    free(t), free(tc);
    return rc;
}
