/* //bench:bench_engine — prompt-processing and decode tokens/s of the engine, llama-bench style.
 * For each model and thread count: pp512 (512 prompt tokens in one forward call after `depth`
 * tokens already cached) and tg (decode tokens one by one after `depth` tokens). Prints a
 * markdown table and writes CSV rows (--csv PATH). Random token ids, fixed seed.
 * The context limit of the model is lifted for the measurement (RoPE works at any position),
 * so depth 2048 + decode is measurable on a 2048-context model, as in llama-bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "engine/engine.h"
#include "model/model.h"

int main(int argc, char **argv)
{
    const char *csv = NULL, *label = NULL;
    int threads = 1, n_pp = 512, n_tg = 32, reps = 2;
    int depths[16], n_depths = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--label") && i + 1 < argc) label = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pp") && i + 1 < argc) n_pp = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--tg") && i + 1 < argc) n_tg = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--depth") && i + 1 < argc && n_depths < 16) depths[n_depths++] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
        else {
            fprintf(stderr, "usage: bench_engine --model PATH [--label NAME] [--threads N] [--depth D]... "
                            "[--pp 512] [--tg 32] [--reps 2] [--csv PATH]\n");
            return 2;
        }
    }
    if (!path) path = model_find_default();
    if (!path || threads < 1 || n_pp < 1 || n_tg < 1 || reps < 1) {
        fprintf(stderr, "error: need --model PATH and positive counts\n");
        return 2;
    }
    if (!n_depths) depths[n_depths++] = 0;
    char err[256];
    model *m;
    if (model_load(path, &m, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int maxd = 0;
    for (int i = 0; i < n_depths; i++) maxd = depths[i] > maxd ? depths[i] : maxd;
    m->hp.n_ctx = maxd + n_pp + n_tg + 8; /* see the file comment */
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = threads, .max_batch_tokens = 512};
    engine *e;
    if (engine_create(m, &sd, &eo, &e) != EM_OK) {
        fprintf(stderr, "error: engine_create\n");
        return 1;
    }
    int total = maxd + n_pp + n_tg;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total);
    uint64_t r = 12345;
    for (int i = 0; i < total; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((r >> 33) % (uint64_t)m->hp.n_vocab);
    }
    float *logits = malloc(sizeof(float) * (size_t)m->hp.n_vocab);
    FILE *fc = csv ? fopen(csv, "a") : NULL;
    if (!label) label = path;
    printf("| model | threads | test | depth | tok/s |\n|---|---|---|---|---|\n");
    for (int di = 0; di < n_depths; di++) {
        int d = depths[di];
        double best_pp = 0, best_tg = 0;
        for (int rep = 0; rep < reps; rep++) {
            ems_cache *c;
            engine_cache_create(e, 0, 0, 0, &c);
            if (d > 0) engine_forward_seq(e, c, ids, d, 0, 512, NULL);
            /* pp: one forward of n_pp tokens on top of the cached depth */
            double t0 = em_now_s();
            engine_forward_seq(e, c, ids + d, n_pp, d, n_pp, logits);
            double pp = n_pp / (em_now_s() - t0);
            ems_cache_destroy(c);
            /* tg: n_tg single-token steps on top of the depth */
            engine_cache_create(e, 0, 0, 0, &c);
            if (d > 0) engine_forward_seq(e, c, ids, d, 0, 512, NULL);
            t0 = em_now_s();
            for (int i = 0; i < n_tg; i++) engine_forward_seq(e, c, ids + d + i, 1, d + i, 1, logits);
            double tg = n_tg / (em_now_s() - t0);
            ems_cache_destroy(c);
            if (pp > best_pp) best_pp = pp;
            if (tg > best_tg) best_tg = tg;
        }
        printf("| %s | %d | pp%d | %d | %.1f |\n", label, threads, n_pp, d, best_pp);
        printf("| %s | %d | tg%d | %d | %.1f |\n", label, threads, n_tg, d, best_tg);
        fflush(stdout);
        if (fc) {
            fprintf(fc, "%s,%d,pp%d,%d,%.2f\n", label, threads, n_pp, d, best_pp);
            fprintf(fc, "%s,%d,tg%d,%d,%.2f\n", label, threads, n_tg, d, best_tg);
            fflush(fc);
        }
    }
    if (fc) fclose(fc);
    free(ids);
    free(logits);
    engine_free(e);
    model_free(m);
    return 0;
}
