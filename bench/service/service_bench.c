/* Benchmark of the gRPC service: requests/s, tokens/s, TTFT and inter-token latency percentiles
 * against concurrency and context length, for 1 and 2 workers, with and without EMS. Each
 * configuration starts its own emserve (local workers) and drives it with closed-loop client
 * threads (each sends its next request when the previous one ends). Writes a markdown table and
 * TSV data under --out (default bench/results); bench/service/run.sh plots them.
 *   service_bench [--out DIR] [--gen N] [--quick] */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/timeutil.h"
#include "coordinator/client.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/service/svc_harness.h"

typedef struct level {
    int workers, ems, conc, ctx;
} level;

typedef struct lat {
    double *v;
    int n, cap;
} lat;

static void lat_add(lat *l, double x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, sizeof(double) * (size_t)l->cap);
    }
    l->v[l->n++] = x;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(lat *l, double p)
{
    if (l->n == 0) {
        return 0;
    }
    qsort(l->v, (size_t)l->n, sizeof(double), cmp_d);
    int i = (int)(p / 100.0 * (l->n - 1) + 0.5);
    return l->v[i];
}

typedef struct shared {
    coord_client *cl;
    const int32_t *prompt;
    int n_prompt, gen, per_thread, ems;
    pthread_mutex_t mu;
    lat ttft, itl;
    long tokens, requests, errors;
} shared;

static void *client_thread(void *p)
{
    shared *s = p;
    for (int i = 0; i < s->per_thread; i++) {
        coord_client_req rq;
        coord_client_result res;
        memset(&rq, 0, sizeof rq);
        rq.ids = s->prompt;
        rq.n_ids = s->n_prompt;
        rq.max_tokens = s->gen;
        rq.ignore_eos = 1;
        rq.temperature = 0;
        rq.top_k = -1;
        rq.timeout_ms = 300000;
        if (s->ems) {
            rq.kv_method = "ems";
            rq.kv_budget = 64;
        }
        coord_client_generate(s->cl, &rq, &res);
        pthread_mutex_lock(&s->mu);
        if (res.status == GRPC_STATUS_OK) {
            lat_add(&s->ttft, res.t_first_s * 1e3);
            for (int k = 1; k < res.n_chunks; k++) {
                lat_add(&s->itl, (res.t_chunk_s[k] - res.t_chunk_s[k - 1]) * 1e3);
            }
            s->tokens += res.n_output;
            s->requests++;
        } else {
            s->errors++;
        }
        pthread_mutex_unlock(&s->mu);
        coord_client_result_free(&res);
    }
    return NULL;
}

/* Tokens of the TinyStories sample (BOS first), repeated to fill n. */
static int32_t *make_prompt(int n)
{
    char err[256];
    model *m = NULL;
    tokenizer *tok = NULL;
    const char *mp = svc_model();
    if (model_load(mp, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "cannot load %s: %s\n", mp, err);
        exit(1);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", mp);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
             "../data/tinystories_sample.txt");
    FILE *f = fopen(path, "r");
    static char text[1 << 16];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) {
        fclose(f);
    }
    if (len == 0) {
        len = (size_t)snprintf(text, sizeof text, "Once upon a time, there was a little girl. ");
    }
    text[len] = 0;
    int32_t *ids = malloc(sizeof(int32_t) * 8192), *out = malloc(sizeof(int32_t) * (size_t)n);
    int nt = 0;
    tok_encode_ex(tok, text, len, tok_add_bos_default(tok) ? TOK_ADD_BOS : 0, ids, 8192, &nt);
    nt = nt > 8192 ? 8192 : nt;
    for (int i = 0; i < n; i++) {
        out[i] = i == 0 ? 1 : ids[1 + (i - 1) % (nt - 1)];
    }
    free(ids);
    tok_free(tok);
    model_free(m);
    return out;
}

int main(int argc, char **argv)
{
    const char *out_dir = "bench/results";
    int gen = 32, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out_dir = argv[++i];
        } else if (strcmp(argv[i], "--gen") == 0 && i + 1 < argc) {
            gen = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: service_bench [--out DIR] [--gen N] [--quick]\n");
            return 2;
        }
    }
    /* binaries beside this one in bazel-bin: ../../coordinator, ../../worker */
    char exe[PATH_MAX], p1[PATH_MAX + 64], p2[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0 && getenv("EMSERVE_BIN") == NULL) {
        exe[n] = 0;
        *strrchr(exe, '/') = 0;
        snprintf(p1, sizeof p1, "%s/../../coordinator/emserve", exe);
        snprintf(p2, sizeof p2, "%s/../../worker/emserve_worker", exe);
        setenv("EMSERVE_BIN", p1, 1);
        setenv("EMSERVE_WORKER_BIN", p2, 1);
    }
    mkdir(out_dir, 0755);
    static const int concs[] = {1, 4, 16, 32};
    static const int ctxs[] = {16, 128, 384};
    level levels[64];
    int nl = 0;
    for (int w = 1; w <= 2; w++) {
        for (int e = 0; e <= 1; e++) {
            for (int c = 0; c < 4; c++) {
                levels[nl++] = (level){w, e, concs[c], 128};
            }
            for (int x = 0; x < 3; x++) {
                if (ctxs[x] != 128) {
                    levels[nl++] = (level){w, e, 8, ctxs[x]};
                }
            }
        }
    }
    int32_t *prompt = make_prompt(512);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/service.tsv", out_dir);
    FILE *tsv = fopen(path, "w");
    snprintf(path, sizeof path, "%s/service.md", out_dir);
    FILE *md = fopen(path, "w");
    if (!tsv || !md) {
        fprintf(stderr, "cannot write to %s\n", out_dir);
        return 1;
    }
    fprintf(tsv, "workers\tems\tconc\tctx\treq_s\ttok_s\tttft_p50\tttft_p90\tttft_p99\titl_p50\t"
                 "itl_p90\titl_p99\trequests\terrors\n");
    fprintf(
        md,
        "| workers | KV | concurrency | context | req/s | tok/s | TTFT p50 / p90 / p99 "
        "(ms) | ITL p50 / p90 / p99 (ms) | requests |\n|---|---|---|---|---|---|---|---|---|\n");
    grpc_init();
    int cur_w = -1;
    svc s = {0};
    coord_client *cl = NULL;
    for (int i = 0; i < nl; i++) {
        level *L = &levels[i];
        if (L->workers != cur_w) {
            if (cl) {
                coord_client_free(cl);
                svc_stop(&s);
            }
            if (svc_start(&s, L->workers, NULL) != EM_OK) {
                fprintf(stderr, "cannot start emserve with %d workers\n", L->workers);
                return 1;
            }
            cl = coord_client_create(s.addr);
            cur_w = L->workers;
        }
        shared sh;
        memset(&sh, 0, sizeof sh);
        pthread_mutex_init(&sh.mu, NULL);
        sh.cl = cl;
        sh.prompt = prompt;
        sh.n_prompt = L->ctx;
        sh.gen = gen;
        sh.ems = L->ems;
        sh.per_thread = quick ? 1 : (L->conc >= 16 ? 2 : 64 / L->conc > 8 ? 8 : 64 / L->conc);
        pthread_t th[64];
        double t0 = em_now_s();
        for (int c = 0; c < L->conc; c++) {
            pthread_create(&th[c], NULL, client_thread, &sh);
        }
        for (int c = 0; c < L->conc; c++) {
            pthread_join(th[c], NULL);
        }
        double wall = em_now_s() - t0;
        double rps = sh.requests / wall, tps = sh.tokens / wall;
        double t50 = pct(&sh.ttft, 50), t90 = pct(&sh.ttft, 90), t99 = pct(&sh.ttft, 99);
        double i50 = pct(&sh.itl, 50), i90 = pct(&sh.itl, 90), i99 = pct(&sh.itl, 99);
        fprintf(tsv, "%d\t%d\t%d\t%d\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f\t%.3f\t%.3f\t%.3f\t%ld\t%ld\n",
                L->workers, L->ems, L->conc, L->ctx, rps, tps, t50, t90, t99, i50, i90, i99,
                sh.requests, sh.errors);
        fprintf(md,
                "| %d | %s | %d | %d | %.1f | %.0f | %.1f / %.1f / %.1f | %.2f / %.2f / %.2f | "
                "%ld%s |\n",
                L->workers, L->ems ? "ems B=64" : "full", L->conc, L->ctx, rps, tps, t50, t90, t99,
                i50, i90, i99, sh.requests, sh.errors ? " (errors!)" : "");
        fflush(tsv);
        fflush(md);
        printf("workers %d %-8s conc %2d ctx %3d: %6.1f req/s %7.0f tok/s TTFT p50 %6.1f ms "
               "ITL p50 %6.2f ms (%ld req, %ld err)\n",
               L->workers, L->ems ? "ems" : "full", L->conc, L->ctx, rps, tps, t50, i50,
               sh.requests, sh.errors);
        fflush(stdout);
        free(sh.ttft.v);
        free(sh.itl.v);
    }
    coord_client_free(cl);
    svc_stop(&s);
    grpc_shutdown();
    fclose(tsv);
    fclose(md);
    free(prompt);
    return 0;
}
