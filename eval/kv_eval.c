/* //eval:kv_eval - the KV-compression quality harness. Runs a model (stories260K by default)
 * with every policy at several budgets and writes CSV tables and PNG plots under --out:
 *   quality.csv / quality_pooled.csv  perplexity, KL(full||compressed), top-1 agreement, KV
 *                                     bytes, compression time; text streamed token by token
 *   retrieval.csv                     a name given early must be reproduced (vs budget, distance)
 *   fidelity.csv                      per-layer attention-output relative error vs full cache
 *   ablation.csv                      EMS and SimLayerKV variants, quantization combinations
 * Texts: the sample in ../shared/data plus texts sampled from the model with fixed seeds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "eval/eval.h"
#include "eval/stream.h"

#define MAX_TEXTS 6
#define MAX_CASES 128

typedef struct harness {
    model *m;
    tokenizer *tok;
    engine *e;
    const char *out;
    int n_texts;
    int32_t *text[MAX_TEXTS];
    int text_len[MAX_TEXTS];
    char text_name[MAX_TEXTS][32];
    float *ref_logits[MAX_TEXTS];
    ev_rcase *cases;
    int n_cases;
    int full_ok[MAX_CASES]; /* cases the full cache gets right (the only ones scored) */
} harness;

/* Pooled quality of one policy over all texts (sampled texts pooled separately). */
typedef struct quality {
    double nll_s, kl_s, n_s, top1_s; /* sampled texts */
    double nll_0, n_0;               /* the data sample */
    double kl_0, top1_0;
    double bytes, full_bytes, t_compress, n_calls;
    int lazy; /* SimLayerKV lazy layers on the last text */
} quality;

static FILE *open_csv(const harness *H, const char *name, const char *header)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", H->out, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fprintf(f, "%s\n", header);
    return f;
}

static void run_quality(harness *H, const ev_policy *p, int B, FILE *f, quality *q)
{
    memset(q, 0, sizeof *q);
    for (int t = 0; t < H->n_texts; t++) {
        ev_stream_opts o = {0};
        o.ref_logits = H->ref_logits[t];
        ev_stream_result r;
        em_status st = ev_stream(H->e, &p->cfg, H->text[t], H->text_len[t], &o, &r);
        if (st != EM_OK) {
            fprintf(stderr, "%s B=%d text %d: %s\n", p->name, B, t, em_status_str(st));
            exit(1);
        }
        double n = r.n_scored;
        if (f) {
            fprintf(f, "%s,%d,%s,%d,%.5f,%.6f,%.6f,%.5f,%.0f,%llu,%llu,%.4f,%lld\n", p->name, B,
                    H->text_name[t], r.n_scored, exp(r.nll_sum / n), r.nll_sum / n, r.kl_sum / n,
                    r.top1_agree / n, r.kv_bytes_mean, (unsigned long long)r.kv_bytes_end,
                    (unsigned long long)r.kv_entries_end,
                    1e6 * r.compress_s / (double)r.n_policy_calls, (long long)r.n_compress_steps);
        }
        if (t == 0) {
            q->nll_0 += r.nll_sum, q->n_0 += n, q->kl_0 += r.kl_sum, q->top1_0 += r.top1_agree;
        } else {
            q->nll_s += r.nll_sum, q->n_s += n, q->kl_s += r.kl_sum, q->top1_s += r.top1_agree;
        }
        q->bytes += r.kv_bytes_mean * n;
        q->t_compress += r.compress_s;
        q->n_calls += (double)r.n_policy_calls;
        q->lazy = r.n_lazy_layers;
    }
}

/* Retrieval accuracy over the scored cases; per-distance counts into by_dist[5][2]. */
static double run_retrieval(harness *H, const ev_policy *p, int stream, const int *dists,
                            int n_dist, int (*by_dist)[2])
{
    int ok_n = 0, tot = 0;
    for (int d = 0; d < n_dist && by_dist; d++)
        by_dist[d][0] = by_dist[d][1] = 0;
    for (int i = 0; i < H->n_cases; i++) {
        if (!H->full_ok[i])
            continue;
        int ok = 0;
        if (ev_retrieval_run(H->e, &p->cfg, &H->cases[i], stream, &ok) != EM_OK)
            exit(1);
        ok_n += ok;
        tot++;
        for (int d = 0; d < n_dist && by_dist; d++) {
            if (H->cases[i].dist_idx == d)
                by_dist[d][0] += ok, by_dist[d][1]++;
        }
    }
    return tot ? (double)ok_n / tot : 0.0;
}

static const char *const k_methods[] = {"streamingllm", "h2o",        "snapkv", "pyramidkv",
                                        "tova",         "simlayerkv", "roco",   "ems"};
#define N_METHODS (int)(sizeof k_methods / sizeof k_methods[0])
static const char *const k_q4[] = {"quant=int4", "quant.group=8", "quant.residual=8", NULL};

/* ev_policy_make, or the end of the run (the harness' own policy lists are wrong). */
static void policy_or_exit(ev_policy *p, const char *name, const char *method, int B,
                           const char *const *kv)
{
    if (ev_policy_make(p, name, method, B, kv) != EM_OK)
        exit(1);
}

/* Policy i of the compared list at budget B: k_methods, then ems+int4, then h2o+int4. */
static void compared_policy(ev_policy *p, int i, int B)
{
    static const char *const k_quantized[][2] = {{"ems+int4", "ems"}, {"h2o+int4", "h2o"}};
    if (i < N_METHODS)
        policy_or_exit(p, k_methods[i], k_methods[i], B, NULL);
    else
        policy_or_exit(p, k_quantized[i - N_METHODS][0], k_quantized[i - N_METHODS][1], B, k_q4);
}

static void experiment_quality(harness *H, const int *budgets, int n_b)
{
    FILE *f = open_csv(H, "quality.csv",
                       "policy,budget,text,tokens,ppl,nll,kl,top1,kv_bytes_mean,kv_bytes_end,"
                       "kv_entries_end,compress_us_per_token,compress_steps");
    FILE *g = open_csv(H, "quality_pooled.csv",
                       "policy,budget,ppl_sampled,ppl_data,kl_sampled,kl_data,top1_sampled,"
                       "kv_bytes_mean,kv_frac_of_full,compress_us_per_token");
    ev_policy full;
    policy_or_exit(&full, "full", "full", 0, NULL);
    quality qf;
    run_quality(H, &full, 0, f, &qf);
    double full_bytes = qf.bytes;
    int n_pol = N_METHODS + 2;
    for (int b = 0; b < n_b; b++) {
        for (int i = 0; i < n_pol; i++) {
            ev_policy p;
            compared_policy(&p, i, budgets[b]);
            double t0 = em_now_s();
            quality q;
            run_quality(H, &p, budgets[b], f, &q);
            fprintf(g, "%s,%d,%.5f,%.5f,%.6f,%.6f,%.5f,%.0f,%.4f,%.3f\n", p.name, budgets[b],
                    exp(q.nll_s / q.n_s), exp(q.nll_0 / q.n_0), q.kl_s / q.n_s, q.kl_0 / q.n_0,
                    q.top1_s / q.n_s, q.bytes / (q.n_s + q.n_0), q.bytes / full_bytes,
                    1e6 * q.t_compress / q.n_calls);
            fprintf(stderr, "quality %-12s B=%-4d ppl %.4f kl %.4f top1 %.3f (%.1fs)\n", p.name,
                    budgets[b], exp(q.nll_s / q.n_s), q.kl_s / q.n_s, q.top1_s / q.n_s,
                    em_now_s() - t0);
        }
    }
    fprintf(g, "full,0,%.5f,%.5f,0,0,1,%.0f,1,0\n", exp(qf.nll_s / qf.n_s), exp(qf.nll_0 / qf.n_0),
            qf.bytes / (qf.n_s + qf.n_0));
    fclose(f);
    fclose(g);
}

static void experiment_retrieval(harness *H, const int *budgets, int n_b, const int *dists,
                                 int n_dist, int stream_budget)
{
    FILE *f = open_csv(H, "retrieval.csv", "policy,budget,mode,distance,n_cases,n_ok,accuracy");
    int by[8][2];
    for (int b = 0; b < n_b; b++) {
        for (int i = 0; i < N_METHODS + 1; i++) {
            ev_policy p;
            compared_policy(&p, i, budgets[b]);
            for (int stream = 0; stream < 2; stream++) {
                if (stream && budgets[b] != stream_budget)
                    continue;
                double acc = run_retrieval(H, &p, stream, dists, n_dist, by);
                int tn = 0, tk = 0;
                for (int d = 0; d < n_dist; d++) {
                    fprintf(f, "%s,%d,%s,%d,%d,%d,%.4f\n", p.name, budgets[b],
                            stream ? "stream" : "prefill", dists[d], by[d][1], by[d][0],
                            by[d][1] ? (double)by[d][0] / by[d][1] : 0.0);
                    tn += by[d][1], tk += by[d][0];
                }
                fprintf(f, "%s,%d,%s,all,%d,%d,%.4f\n", p.name, budgets[b],
                        stream ? "stream" : "prefill", tn, tk, acc);
                fprintf(stderr, "retrieval %-12s B=%-4d %s %.3f\n", p.name, budgets[b],
                        stream ? "stream " : "prefill", acc);
            }
        }
    }
    fclose(f);
}

static void experiment_fidelity(harness *H, const int *budgets, int n_b)
{
    FILE *f = open_csv(H, "fidelity.csv", "policy,budget,layer,rel_err");
    int L = H->m->hp.n_layer, n = H->text_len[1] < 800 ? H->text_len[1] : 800;
    double err[64], chk = 0, worst = 0;
    for (int b = 0; b < n_b; b++) {
        for (int i = 0; i < N_METHODS + 1; i++) {
            ev_policy p;
            compared_policy(&p, i, budgets[b]);
            if (ev_fidelity(H->e, H->m, &p.cfg, H->text[1], n, 64, 16, err, &chk) != EM_OK)
                exit(1);
            worst = chk > worst ? chk : worst;
            for (int l = 0; l < L; l++)
                fprintf(f, "%s,%d,%d,%.6f\n", p.name, budgets[b], l, err[l]);
        }
    }
    fprintf(stderr, "fidelity: probe forward vs engine logits max |diff| %.2e\n", worst);
    fclose(f);
}

typedef struct abl {
    const char *name, *method;
    const char *kv[6];
} abl;

static const abl k_abl[] = {
    {"ems (default)", "ems", {NULL}},
    {"ems zero_class=0", "ems", {"ems.zero_class=0", NULL}},
    {"ems headwise=0", "ems", {"ems.headwise=0", NULL}},
    {"ems score=global", "ems", {"ems.score=global", NULL}},
    {"ems score=local", "ems", {"ems.score=local", NULL}},
    {"ems strategy=evict", "ems", {"ems.strategy=evict", NULL}},
    {"ems strategy=merge", "ems", {"ems.strategy=merge", NULL}},
    {"ems split=placeholder", "ems", {"ems.split=placeholder", NULL}},
    {"ems tau=0.5", "ems", {"ems.tau=0.5", NULL}},
    {"ems align=ratio", "ems", {"ems.align=ratio", NULL}},
    {"ems gw=1.5", "ems", {"ems.gw=1.5", NULL}},
    {"ems prop_attn=1", "ems", {"ems.prop_attn=1", NULL}},
    {"ems prop_attn=1 tau=0.5", "ems", {"ems.prop_attn=1", "ems.tau=0.5", NULL}},
    {"ems prop_attn=1 strategy=merge", "ems", {"ems.prop_attn=1", "ems.strategy=merge", NULL}},
    {"ems+int8", "ems", {"quant=int8", "quant.group=8", "quant.residual=8", NULL}},
    {"ems+int4", "ems", {"quant=int4", "quant.group=8", "quant.residual=8", NULL}},
    {"simlayerkv decide=decode", "simlayerkv", {NULL}},
    {"simlayerkv decide=prefill", "simlayerkv", {"simlayerkv.decide=prefill", NULL}},
    {"simlayerkv retrim=0", "simlayerkv", {"simlayerkv.retrim=0", NULL}},
    {"simlayerkv delta=0.8", "simlayerkv", {"simlayerkv.delta=0.8", NULL}},
    {"simlayerkv delta=0.9", "simlayerkv", {"simlayerkv.delta=0.9", NULL}},
    {"simlayerkv+int8", "simlayerkv", {"quant=int8", "quant.group=8", "quant.residual=8", NULL}},
    {"simlayerkv+int4", "simlayerkv", {"quant=int4", "quant.group=8", "quant.residual=8", NULL}},
    {"simlayerkv delta=0.8+int4",
     "simlayerkv",
     {"simlayerkv.delta=0.8", "quant=int4", "quant.group=8", "quant.residual=8", NULL}},
    {"full+int8", "full", {"quant=int8", "quant.group=8", "quant.residual=8", NULL}},
    {"full+int4", "full", {"quant=int4", "quant.group=8", "quant.residual=8", NULL}},
    {"h2o", "h2o", {NULL}},
};

static void experiment_ablation(harness *H, int B)
{
    FILE *f = open_csv(H, "ablation.csv",
                       "variant,budget,ppl_sampled,ppl_data,kl_sampled,top1_sampled,"
                       "retrieval_prefill,retrieval_stream,kv_bytes_mean,kv_frac_of_full,"
                       "compress_us_per_token,lazy_layers");
    ev_policy full;
    policy_or_exit(&full, "full", "full", 0, NULL);
    quality qf;
    run_quality(H, &full, 0, NULL, &qf);
    for (size_t i = 0; i < sizeof k_abl / sizeof k_abl[0]; i++) {
        ev_policy p;
        int b = strcmp(k_abl[i].method, "full") ? B : 0;
        policy_or_exit(&p, k_abl[i].name, k_abl[i].method, b, k_abl[i].kv);
        quality q;
        run_quality(H, &p, b, NULL, &q);
        double rp = run_retrieval(H, &p, 0, NULL, 0, NULL);
        double rs = run_retrieval(H, &p, 1, NULL, 0, NULL);
        fprintf(f, "%s,%d,%.5f,%.5f,%.6f,%.5f,%.4f,%.4f,%.0f,%.4f,%.3f,%d\n", p.name, b,
                exp(q.nll_s / q.n_s), exp(q.nll_0 / q.n_0), q.kl_s / q.n_s, q.top1_s / q.n_s, rp,
                rs, q.bytes / (q.n_s + q.n_0), q.bytes / qf.bytes, 1e6 * q.t_compress / q.n_calls,
                q.lazy);
        fprintf(stderr, "ablation %-28s ppl %.4f kl %.4f retr %.2f/%.2f\n", p.name,
                exp(q.nll_s / q.n_s), q.kl_s / q.n_s, rp, rs);
    }
    fclose(f);
}

void ev_write_plots(const char *dir, int have_b64);

int main(int argc, char **argv)
{
    const char *model_path = NULL, *text_path = "../shared/data/tinystories_sample.txt";
    harness H = {0};
    H.out = "eval/results";
    int threads = 1, n_sampled = 3, sample_len = 1500, quick = 0, plots_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            quick = 1;
            continue;
        }
        if (!strcmp(a, "--plots-only")) { /* redraw the plots of an existing --out */
            plots_only = 1;
            continue;
        }
        if (!v || a[0] != '-') {
            fprintf(stderr, "usage: kv_eval [--model PATH] [--text-file PATH] [--out DIR] "
                            "[--threads N] [--sampled N] [--sample-len N] [--quick]\n");
            return 2;
        }
        if (!strcmp(a, "--model"))
            model_path = v;
        else if (!strcmp(a, "--text-file"))
            text_path = v;
        else if (!strcmp(a, "--out"))
            H.out = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--sampled"))
            n_sampled = atoi(v);
        else if (!strcmp(a, "--sample-len"))
            sample_len = atoi(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (plots_only) {
        ev_write_plots(H.out, 1);
        return 0;
    }
    if (n_sampled < 1 || n_sampled > MAX_TEXTS - 1 || sample_len < 64) {
        fprintf(stderr, "bad --sampled / --sample-len\n");
        return 2;
    }
    if (!model_path)
        model_path = model_find_test_small();
    char err[256];
    if (!model_path || model_load(model_path, &H.m, err, sizeof err) != EM_OK ||
        tok_create(H.m->gguf, &H.tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: cannot load the model (%s)\n", model_path ? err : "not found");
        return 1;
    }
    if (sample_len > H.m->hp.n_ctx)
        sample_len = H.m->hp.n_ctx;
    shard_desc sd = shard_single(H.m->hp.n_kv_head);
    engine_opts eo = {.n_threads = threads, .max_batch_tokens = 512};
    if (engine_create(H.m, &sd, &eo, &H.e) != EM_OK)
        return 1;
    mkdir(H.out, 0755);
    double t0 = em_now_s();
    /* texts: the data sample, then texts sampled from the model */
    if (ev_load_text(H.tok, text_path, 1, H.m->hp.n_ctx, &H.text[0], &H.text_len[0], err,
                     sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    snprintf(H.text_name[0], 32, "data_sample");
    H.n_texts = 1 + n_sampled;
    for (int t = 1; t < H.n_texts; t++) {
        H.text[t] = malloc(sizeof(int32_t) * sample_len);
        H.text_len[t] = sample_len;
        snprintf(H.text_name[t], 32, "sampled_seed%d", t);
        if (ev_sample_text(H.e, sample_len, (uint64_t)t, H.text[t]) != EM_OK)
            return 1;
    }
    ev_policy full;
    policy_or_exit(&full, "full", "full", 0, NULL);
    for (int t = 0; t < H.n_texts; t++) {
        H.ref_logits[t] = malloc(sizeof(float) * (size_t)H.text_len[t] * H.m->hp.n_vocab);
        ev_stream_opts o = {0};
        o.logits_out = H.ref_logits[t];
        ev_stream_result r;
        if (ev_stream(H.e, &full.cfg, H.text[t], H.text_len[t], &o, &r) != EM_OK)
            return 1;
        fprintf(stderr, "text %s: %d tokens, full-cache ppl %.4f\n", H.text_name[t], H.text_len[t],
                exp(r.nll_sum / r.n_scored));
    }
    /* retrieval cases; only those the full cache gets right are scored */
    static const int dists[] = {16, 32, 64, 96, 128};
    int n_dist = quick ? 3 : 5;
    H.cases = calloc(MAX_CASES, sizeof(ev_rcase));
    if (!H.cases ||
        ev_retrieval_cases(H.tok, dists, n_dist, H.cases, MAX_CASES, &H.n_cases) != EM_OK)
        return 1;
    int n_full_ok = 0;
    for (int i = 0; i < H.n_cases; i++) {
        if (ev_retrieval_run(H.e, &full.cfg, &H.cases[i], 0, &H.full_ok[i]) != EM_OK)
            return 1;
        n_full_ok += H.full_ok[i];
    }
    fprintf(stderr, "retrieval: %d cases, the full cache reproduces the name in %d\n", H.n_cases,
            n_full_ok);
    FILE *f = open_csv(&H, "retrieval_cases.csv", "case,name,distance,prompt_tokens,full_ok");
    for (int i = 0; i < H.n_cases; i++) {
        fprintf(f, "%d,%s,%d,%d,%d\n", i, H.cases[i].name, H.cases[i].distance, H.cases[i].n_prompt,
                H.full_ok[i]);
    }
    fclose(f);
    static const int budgets[] = {16, 32, 64, 128};
    int n_b = quick ? 2 : 4;
    /* two processes (2 cores): quality + fidelity here, retrieval + ablation in a child */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        experiment_retrieval(&H, budgets, quick ? 2 : 3, dists, n_dist, 32);
        experiment_ablation(&H, 32);
        _exit(0);
    }
    experiment_quality(&H, budgets, n_b);
    experiment_fidelity(&H, budgets + 1, quick ? 1 : 2);
    int wst = 0;
    if (child > 0) {
        waitpid(child, &wst, 0);
    } else {
        experiment_retrieval(&H, budgets, quick ? 2 : 3, dists, n_dist, 32);
        experiment_ablation(&H, 32);
    }
    if (child > 0 && !(WIFEXITED(wst) && WEXITSTATUS(wst) == 0)) {
        fprintf(stderr, "error: the retrieval/ablation process failed\n");
        return 1;
    }
    ev_write_plots(H.out, !quick);
    fprintf(stderr, "done in %.1f s; results in %s\n", em_now_s() - t0, H.out);
    for (int t = 0; t < H.n_texts; t++)
        free(H.text[t]), free(H.ref_logits[t]);
    free(H.cases);
    engine_free(H.e);
    tok_free(H.tok);
    model_free(H.m);
    return 0;
}
