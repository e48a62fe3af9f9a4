/* //bench:bench_engine — prompt-processing and decode tokens/s of the engine, llama-bench style.
 * For each depth and thread count: pp<N> (N prompt tokens in one forward call after `depth`
 * tokens already cached) and tg<N> (decode tokens one by one after `depth` tokens). Prints a
 * markdown table and appends CSV rows (--csv PATH). Random token ids, fixed seed.
 * With --kv-method etc. the depth tokens are compressed (policy step after the prefill and
 * after every decode step, as the service does) before decode is timed.
 * The context limit of the model is lifted for the measurement (RoPE works at any position),
 * so deep decode is measurable on a short-context model, as in llama-bench. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timeutil.h"
#include "ems/config.h"
#include "ems/policy.h"
#include "engine/engine.h"
#include "model/model.h"

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_engine [--model PATH] [--label NAME] [--threads N] [--depth D]... "
            "[--pp 512] [--tg 32] [--reps 2] [--tests pp,tg] [--act-quant f32|q8] [--csv PATH] "
            "[KV flags]\n");
    ems_config_cli_usage(stderr);
}

typedef struct bench {
    engine *e;
    const ems_config *kv;
    const int32_t *ids;
    float *logits;
} bench;

static em_status new_cache(const bench *b, ems_cache **c)
{
    return engine_cache_create(b->e, ems_config_w_loc(b->kv), ems_config_wants_stats(b->kv),
                               b->kv->group_max, c);
}

/* A cache holding `depth` tokens, compressed as the service would after a prefill. */
static em_status fill(const bench *b, ems_cache *c, int depth)
{
    if (depth == 0)
        return EM_OK;
    em_status st = engine_forward_seq(b->e, c, b->ids, depth, 0, 512, NULL);
    return st == EM_OK ? ems_policy_step(c, b->kv, EMS_PHASE_PREFILL_END, NULL) : st;
}

/* Prompt processing of n_pp tokens after a cache of depth d: *tok_s tokens per second. */
static em_status run_pp(const bench *b, int d, int n_pp, double *tok_s)
{
    ems_cache *c = NULL;
    em_status st = new_cache(b, &c);
    if (st == EM_OK)
        st = fill(b, c, d);
    double t0 = em_now_s();
    if (st == EM_OK)
        st = engine_forward_seq(b->e, c, b->ids + d, n_pp, d, n_pp, b->logits);
    *tok_s = st == EM_OK ? n_pp / (em_now_s() - t0) : 0.0;
    ems_cache_destroy(c);
    return st;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* n_tg decode steps (with the policy) after a cache of depth d: *tok_s tokens per second and
 * the KV entries kept at the end. Also reports (stderr) CPU time per token, total and in the
 * policy step: on a shared machine CPU time tracks the work better than wall time. */
static em_status run_tg(const bench *b, int d, int n_tg, double *tok_s, uint64_t *entries)
{
    ems_cache *c = NULL;
    em_status st = new_cache(b, &c);
    if (st == EM_OK)
        st = fill(b, c, d);
    double t0 = em_now_s(), c0 = cpu_s(), pol = 0;
    for (int i = 0; i < n_tg && st == EM_OK; i++) {
        st = engine_forward_seq(b->e, c, b->ids + d + i, 1, d + i, 1, b->logits);
        double p0 = cpu_s();
        if (st == EM_OK)
            st = ems_policy_step(c, b->kv, EMS_PHASE_DECODE, NULL);
        pol += cpu_s() - p0;
    }
    *tok_s = st == EM_OK ? n_tg / (em_now_s() - t0) : 0.0;
    if (st == EM_OK) {
        fprintf(stderr, "tg depth %d: %.2f ms CPU per token, %.3f of them in ems_policy_step\n", d,
                (cpu_s() - c0) * 1e3 / n_tg, pol * 1e3 / n_tg);
    }
    *entries = c ? ems_cache_entries(c) : 0;
    ems_cache_destroy(c);
    return st;
}

int main(int argc, char **argv)
{
    const char *csv = NULL, *label = NULL, *tests = "pp,tg", *path = NULL;
    int threads = 1, n_pp = 512, n_tg = 32, reps = 2;
    kern_act_mode act = KERN_ACT_F32;
    int depths[16], n_depths = 0;
    ems_config kv;
    ems_config_default(&kv);
    char err[256] = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        em_status st;
        int ok = v != NULL;
        if (v && ems_config_cli(&kv, a, v, &st, err, sizeof err)) {
            ok = st == EM_OK;
        } else if (!strcmp(a, "--model"))
            path = v;
        else if (!strcmp(a, "--label"))
            label = v;
        else if (!strcmp(a, "--tests"))
            tests = v;
        else if (!strcmp(a, "--csv"))
            csv = v;
        else if (!strcmp(a, "--threads"))
            ok = v && parse_int(v, 1, 128, &threads);
        else if (!strcmp(a, "--act-quant"))
            ok = v && kern_act_mode_parse(v, &act);
        else if (!strcmp(a, "--pp"))
            ok = v && parse_int(v, 1, 1 << 16, &n_pp);
        else if (!strcmp(a, "--tg"))
            ok = v && parse_int(v, 1, 1 << 16, &n_tg);
        else if (!strcmp(a, "--reps"))
            ok = v && parse_int(v, 1, 100, &reps);
        else if (!strcmp(a, "--depth") && n_depths < 16)
            ok = v && parse_int(v, 0, 1 << 20, &depths[n_depths++]);
        else
            ok = 0;
        if (!ok) {
            fprintf(stderr, "bench_engine: bad argument %s %s %s\n", a, v ? v : "", err);
            usage();
            return 2;
        }
        i++;
    }
    if (!path)
        path = model_find_default();
    if (!path || ems_config_validate(&kv, err, sizeof err) != EM_OK) {
        fprintf(stderr, "bench_engine: %s\n", path ? err : "no model (--model PATH)");
        return 2;
    }
    if (!n_depths)
        depths[n_depths++] = 0;
    int do_pp = strstr(tests, "pp") != NULL, do_tg = strstr(tests, "tg") != NULL;
    model *m;
    if (model_load(path, &m, err, sizeof err) != EM_OK) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 1;
    }
    int maxd = 0;
    for (int i = 0; i < n_depths; i++)
        maxd = depths[i] > maxd ? depths[i] : maxd;
    m->hp.n_ctx = maxd + n_pp + n_tg + 8; /* see the file comment */
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {
        .n_threads = threads, .max_batch_tokens = 512 > n_pp ? 512 : n_pp, .act = act};
    engine *e;
    if (engine_create(m, &sd, &eo, &e) != EM_OK) {
        fprintf(stderr, "bench_engine: engine_create failed\n");
        return 1;
    }
    int total = maxd + n_pp + n_tg;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    if (!ids || !logits)
        return 1;
    uint64_t r = 12345;
    for (int i = 0; i < total; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)m->hp.n_vocab);
    }
    bench b = {e, &kv, ids, logits};
    char kvdesc[128];
    ems_config_describe(&kv, kvdesc, sizeof kvdesc);
    FILE *fc = csv ? fopen(csv, "a") : NULL;
    if (!label)
        label = path;
    printf("| model | kv | threads | test | depth | tok/s | kv entries "
           "|\n|---|---|---|---|---|---|---|\n");
    int rc = 0;
    for (int di = 0; di < n_depths; di++) {
        int d = depths[di];
        double best_pp = 0, best_tg = 0;
        uint64_t ent = 0;
        for (int rep = 0; rep < reps && rc == 0; rep++) {
            double pp = 0, tg = 0;
            em_status st = do_pp ? run_pp(&b, d, n_pp, &pp) : EM_OK;
            if (st == EM_OK && do_tg)
                st = run_tg(&b, d, n_tg, &tg, &ent);
            if (st != EM_OK) {
                fprintf(stderr, "bench_engine: a forward pass failed: %s\n", em_status_str(st));
                rc = 1;
            }
            if (pp > best_pp)
                best_pp = pp;
            if (tg > best_tg)
                best_tg = tg;
        }
        if (do_pp)
            printf("| %s | %s | %d | pp%d | %d | %.1f | |\n", label, kvdesc, threads, n_pp, d,
                   best_pp);
        if (do_tg)
            printf("| %s | %s | %d | tg%d | %d | %.1f | %llu |\n", label, kvdesc, threads, n_tg, d,
                   best_tg, (unsigned long long)ent);
        fflush(stdout);
        if (fc && do_pp)
            fprintf(fc, "%s,%s,%d,pp%d,%d,%.2f\n", label, kvdesc, threads, n_pp, d, best_pp);
        if (fc && do_tg)
            fprintf(fc, "%s,%s,%d,tg%d,%d,%.2f\n", label, kvdesc, threads, n_tg, d, best_tg);
        if (fc)
            fflush(fc);
    }
    if (fc)
        fclose(fc);
    free(ids);
    free(logits);
    engine_free(e);
    model_free(m);
    return rc;
}
