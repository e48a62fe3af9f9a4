/* //eval:longctx task kl-long: next-token fidelity on LONG real prose in the end-of-prompt mode.
 * For each text, its first P tokens (every --kl-prefixes value, ascending; the prompt cache is
 * prefilled once and extended from one prefix to the next) are the prompt: every method forks
 * that cache, compresses it once (PREFILL_END) and is then teacher-forced through the next S
 * tokens of the text (--kl-score) with a DECODE step after each; the full cache does the same
 * without compressing and is the reference. Per prediction: KL(full || method), top-1 agreement
 * and the NLL of the text's next token (perplexity). Pooled over texts per prefix, with block-
 * bootstrap 95 % intervals (blocks of KLL_BLOCK consecutive predictions: S / KLL_BLOCK blocks a
 * text) and paired EMS - method intervals on the same predictions.
 * Files: kl_long_windows.csv (a row per text, prefix, method, budget), kl_long.csv, kl_long.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/budget_match.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/stream.h"

#define KLL_BLOCK 16

/* Scores of one (prefix, policy): predictions appended text after text. */
typedef struct kll_acc {
    double *kl, *top1, *nll;
    int n;
    double bytes_sum; /* bytes_mean x predictions, summed */
    double peak;
    int n_texts, b_min, b_max; /* budgets run with (--match-bytes: per text) */
    double b_sum;
} kll_acc;

/* One policy's run on one prompt: per-prediction scores (S each) and bytes. */
typedef struct kll_run {
    double *kl, *top1, *nll;
    lc_stream r;
    int B;
} kll_run;

static int kll_ring(const lc_opts *o)
{
    int wl = 16;
    for (int b = 0; b < o->n_kl_budgets; b++)
        wl = lc_ring_size(o->kl_budgets[b]) > wl ? lc_ring_size(o->kl_budgets[b]) : wl;
    return wl;
}

static double mean(const double *x, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += x[i];
    return n ? s / n : NAN;
}

/* Runs method mi (-1 = the full cache) at budget B on the prompt cache: its logits into q,
 * scored against ref (NULL: against itself) into *run. */
static em_status kll_policy(const lc_opts *o, engine *e, const ems_cache *base, const int32_t *ids,
                            int P, int mi, int B, const float *ref, float *q, kll_run *run)
{
    int S = o->kl_score, V = engine_hparams(e)->n_vocab;
    ems_config cfg;
    if (lc_make_cfg(mi, B, &cfg))
        return EM_EINVAL;
    run->B = B;
    em_status st = lc_fork_logits(e, base, &cfg, ids, P, S, q, &run->r);
    if (st == EM_OK)
        st = lc_row_scores(ref ? ref : q, q, ids + P + 1, S, V, run->kl, run->top1, run->nll);
    return st;
}

/* Appends a run of method mi in budget group B to a, with its row in f. */
static void kll_commit(const lc_opts *o, int P, int mi, int B, const kll_run *run, kll_acc *a,
                       FILE *f, const char *text)
{
    int S = o->kl_score;
    memcpy(a->kl + a->n, run->kl, sizeof(double) * (size_t)S);
    memcpy(a->top1 + a->n, run->top1, sizeof(double) * (size_t)S);
    memcpy(a->nll + a->n, run->nll, sizeof(double) * (size_t)S);
    const char *name = mi < 0 ? "full" : lc_methods[mi];
    double k = mean(run->kl, S), t = mean(run->top1, S), l = mean(run->nll, S);
    const lc_stream *r = &run->r;
    fprintf(f, "%s,%d,%s,%d,%d,%.6f,%.4f,%.4f,%.0f,%llu,%.1f,%d\n", text, P, name, B, S, k, t,
            exp(l), r->bytes_mean, (unsigned long long)r->bytes_peak, r->seconds, run->B);
    fflush(f);
    fprintf(stderr, "  P=%d %-14s B=%-4d (ran %d) KL %.4f top1 %.3f ppl %.2f (%.1fs)\n", P, name, B,
            run->B, k, t, exp(l), r->seconds);
    a->n += S;
    a->bytes_sum += r->bytes_mean * S;
    a->peak = (double)r->bytes_peak > a->peak ? (double)r->bytes_peak : a->peak;
    a->b_min = !a->n_texts || run->B < a->b_min ? run->B : a->b_min;
    a->b_max = !a->n_texts || run->B > a->b_max ? run->B : a->b_max;
    a->b_sum += run->B;
    a->n_texts++;
}

/* bm_search's callback: one method on one prompt, the closest run kept in best */
typedef struct kll_match {
    const lc_opts *o;
    engine *e;
    const ems_cache *base;
    const int32_t *ids;
    int P, mi;
    const float *ref;
    float *q;
    kll_run cur, best;
} kll_match;

static em_status kll_match_eval(void *ctx, int B, double *bytes)
{
    kll_match *m = ctx;
    em_status st = kll_policy(m->o, m->e, m->base, m->ids, m->P, m->mi, B, m->ref, m->q, &m->cur);
    *bytes = m->cur.r.bytes_mean;
    if (st == EM_OK)
        fprintf(stderr, "    try %s B=%d: bytes %.1f MiB\n", lc_methods[m->mi], B,
                *bytes / 1048576.0);
    return st;
}

static void kll_match_keep(void *ctx)
{
    kll_match *m = ctx;
    size_t S = (size_t)m->o->kl_score;
    memcpy(m->best.kl, m->cur.kl, sizeof(double) * S);
    memcpy(m->best.top1, m->cur.top1, sizeof(double) * S);
    memcpy(m->best.nll, m->cur.nll, sizeof(double) * S);
    m->best.r = m->cur.r;
    m->best.B = m->cur.B;
}

/* Every method at every budget on the prompt cache of P tokens (the full cache first, then per
 * budget EMS first: its bytes are the target of --match-bytes for the other methods except the
 * EMS rows, which stay at B). scratch: 6 x S doubles. */
static em_status kll_prefix(const lc_opts *o, engine *e, const ems_cache *base, const int32_t *ids,
                            int P, kll_acc *row, float *ref, float *q, double *scratch, FILE *f,
                            const char *text)
{
    int S = o->kl_score, n_pol = N_METHODS * o->n_kl_budgets;
    kll_match m = {.o = o, .e = e, .base = base, .ids = ids, .P = P, .ref = ref, .q = q};
    m.cur = (kll_run){.kl = scratch, .top1 = scratch + S, .nll = scratch + 2 * S};
    m.best = (kll_run){.kl = scratch + 3 * S, .top1 = scratch + 4 * S, .nll = scratch + 5 * S};
    em_status st = kll_policy(o, e, base, ids, P, -1, 0, NULL, ref, &m.cur);
    if (st == EM_OK)
        kll_commit(o, P, -1, 0, &m.cur, &row[n_pol], f, text);
    for (int bi = 0; bi < o->n_kl_budgets && st == EM_OK; bi++) {
        int B = o->kl_budgets[bi];
        double target = 0;
        for (int k = 0; k < N_METHODS && st == EM_OK; k++) {
            int mi = k == 0 ? EMS_IDX : k <= EMS_IDX ? k - 1 : k;
            if (!lc_use[mi])
                continue;
            m.mi = mi;
            bm_result r;
            int ref_row = lc_variant_base(mi) >= EMS_IDX;
            /* above P + S the method holds everything: the search stops there, a larger B
             * runs as given */
            int b_max = B > P + S ? B : P + S;
            st = bm_search(B, 8, b_max, ref_row ? 0 : target, kll_match_eval, kll_match_keep, &m,
                           &r);
            if (st != EM_OK) {
                fprintf(stderr, "error: kl-long %s B=%d: %s\n", lc_methods[mi], B,
                        em_status_str(st));
                break;
            }
            if (mi == EMS_IDX && o->match_bytes)
                target = r.bytes;
            kll_commit(o, P, mi, B, &m.best, &row[bi * N_METHODS + mi], f, text);
        }
    }
    return st;
}

/* One text: its prompt cache at every prefix, then every policy at each. */
static em_status kll_text(const lc_opts *o, engine *e, const tokenizer *tok, const char *text,
                          kll_acc *acc, float *ref, float *q, double *scratch, FILE *f)
{
    int S = o->kl_score, n_pol = N_METHODS * o->n_kl_budgets;
    int last = o->kl_prefixes[o->n_kl_prefixes - 1], n = 0;
    int32_t *ids = NULL;
    char err[256] = "";
    em_status st = ev_load_text(tok, text, 0, last + S + 1, &ids, &n, err, sizeof err);
    if (st == EM_OK && n < last + S + 1) {
        snprintf(err, sizeof err, "%d tokens, kl-long needs %d", n, last + S + 1);
        st = EM_EINVAL;
    }
    if (st != EM_OK) {
        fprintf(stderr, "error: %s: %s\n", text, err);
        free(ids);
        return st;
    }
    ems_cache *base = NULL;
    int fed = 0;
    for (int k = 0; k < o->n_kl_prefixes && st == EM_OK; k++) {
        int P = o->kl_prefixes[k];
        double t0 = em_now_s();
        if (!base)
            st = lc_prompt_cache(e, ids, P, kll_ring(o), 512, &base);
        else
            st = engine_forward_seq(e, base, ids + fed, P - fed, fed, 512, NULL);
        fed = P;
        fprintf(stderr, "kl-long %s: prompt cache of %d tokens in %.1fs\n", text, P,
                em_now_s() - t0);
        if (st == EM_OK)
            st = kll_prefix(o, e, base, ids, P, acc + (size_t)k * (n_pol + 1), ref, q, scratch, f,
                            text);
    }
    ems_cache_destroy(base);
    free(ids);
    return st;
}

/* exp of the mean NLL with its bootstrap interval */
static void ppl_ci(const double *nll, int n, uint64_t seed, double *m, double *lo, double *hi)
{
    lc_boot_ci(nll, n, KLL_BLOCK, N_BOOT, seed, lo, hi);
    *m = exp(mean(nll, n)), *lo = exp(*lo), *hi = exp(*hi);
}

static void kll_tables(const lc_opts *o, const kll_acc *acc, FILE *s, FILE *md)
{
    int n_pol = N_METHODS * o->n_kl_budgets;
    fprintf(s, "prefix,method,budget,n_scored,kl,kl_lo,kl_hi,top1,ppl,ppl_lo,ppl_hi,kv_bytes_mean,"
               "kv_bytes_peak,bytes_vs_ems,ems_minus_this_kl,diff_lo,diff_hi,budget_used_mean,"
               "budget_used_min,budget_used_max\n");
    if (o->match_bytes)
        fprintf(md,
                "Protocol: matched bytes. Per text, prompt length and budget group B, EMS runs at "
                "B and every other method (EMS + int4 and EMS variants excepted: they stay at "
                "B) at the budget whose mean KV bytes over the scored tokens come closest to "
                "EMS's (secant search, at most %d tries, stopping within %.0f %%); \"B used\" "
                "is the mean (range) over texts. Bold: still more than 5 %% off EMS's bytes."
                "\n\n",
                BM_MAX_EVALS, 100 * BM_TOL);
    else
        fprintf(md, "Protocol: equal budget B (entries per KV head) for every method; bytes differ "
                    "per method (bold: more than 5 %% off EMS's).\n\n");
    fprintf(md,
            "| prompt tokens | method | B | B used | KL [95%% CI] | top-1 | perplexity [95%% CI] | "
            "KV MiB mean (peak) | bytes / EMS's | EMS - method, KL [95%% CI] |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < o->n_kl_prefixes; k++) {
        const kll_acc *row = acc + (size_t)k * (n_pol + 1), *full = &row[n_pol];
        int P = o->kl_prefixes[k];
        double pm, plo, phi;
        ppl_ci(full->nll, full->n, 3, &pm, &plo, &phi);
        fprintf(s, "%d,full,0,%d,0,0,0,1,%.4f,%.4f,%.4f,%.0f,%.0f,,,,,,,\n", P, full->n, pm, plo,
                phi, full->bytes_sum / full->n, full->peak);
        fprintf(md, "| %d | full | - | - | 0 | 1 | %.2f [%.2f, %.2f] | %.2f (%.2f) | | |\n", P, pm,
                plo, phi, full->bytes_sum / full->n / 1048576.0, full->peak / 1048576.0);
        for (int pi = 0; pi < n_pol; pi++) {
            const kll_acc *a = &row[pi];
            int mi = pi % N_METHODS, B = o->kl_budgets[pi / N_METHODS];
            const kll_acc *ems = &row[pi - mi + EMS_IDX];
            if (!a->n)
                continue;
            double lo, hi, dm = NAN, dlo = NAN, dhi = NAN;
            lc_boot_ci(a->kl, a->n, KLL_BLOCK, N_BOOT, 5, &lo, &hi);
            ppl_ci(a->nll, a->n, 7, &pm, &plo, &phi);
            double ratio = (a->bytes_sum / a->n) / (ems->bytes_sum / ems->n);
            double *d = malloc(sizeof(double) * (size_t)a->n);
            if (d && mi != EMS_IDX && ems->n == a->n) {
                for (int i = 0; i < a->n; i++)
                    d[i] = ems->kl[i] - a->kl[i];
                dm = mean(d, a->n);
                lc_boot_ci(d, a->n, KLL_BLOCK, N_BOOT, 9, &dlo, &dhi);
            }
            free(d);
            double km = mean(a->kl, a->n), tm = mean(a->top1, a->n);
            fprintf(s,
                    "%d,%s,%d,%d,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%.6f,%.6f,%.6f,%"
                    ".1f,%d,%d\n",
                    P, lc_methods[mi], B, a->n, km, lo, hi, tm, pm, plo, phi, a->bytes_sum / a->n,
                    a->peak, ratio, dm, dlo, dhi, a->b_sum / a->n_texts, a->b_min, a->b_max);
            int off = fabs(ratio - 1) > 0.05;
            char used[48];
            if (a->b_min == a->b_max)
                snprintf(used, sizeof used, "%d", a->b_min);
            else
                snprintf(used, sizeof used, "%.0f (%d-%d)", a->b_sum / a->n_texts, a->b_min,
                         a->b_max);
            fprintf(
                md,
                "| %d | %s | %d | %s | %.4f [%.4f, %.4f] | %.3f | %.2f [%.2f, %.2f] | %.2f (%.2f) "
                "| %s%.2f%s | ",
                P, lc_methods[mi], B, used, km, lo, hi, tm, pm, plo, phi,
                a->bytes_sum / a->n / 1048576.0, a->peak / 1048576.0, off ? "**" : "", ratio,
                off ? "**" : "");
            if (isnan(dm))
                fprintf(md, " |\n");
            else
                fprintf(md, "%+.4f [%+.4f, %+.4f]%s |\n", dm, dlo, dhi,
                        dhi < 0   ? " EMS lower"
                        : dlo > 0 ? " EMS higher"
                                  : "");
        }
    }
}

int lc_task_kl_long(const lc_opts *o, engine *e, const tokenizer *tok)
{
    int V = engine_hparams(e)->n_vocab, S = o->kl_score;
    int n_pol = N_METHODS * o->n_kl_budgets, n_acc = o->n_kl_prefixes * (n_pol + 1);
    size_t cap = (size_t)o->n_texts * (size_t)S;
    kll_acc *acc = calloc((size_t)n_acc, sizeof *acc);
    float *ref = malloc(sizeof(float) * (size_t)S * (size_t)V);
    float *q = malloc(sizeof(float) * (size_t)S * (size_t)V);
    double *scratch = malloc(sizeof(double) * 6 * (size_t)S);
    int bad = !acc || !ref || !q || !scratch;
    for (int i = 0; i < n_acc && !bad; i++) {
        acc[i].kl = malloc(sizeof(double) * cap);
        acc[i].top1 = malloc(sizeof(double) * cap);
        acc[i].nll = malloc(sizeof(double) * cap);
        bad = !acc[i].kl || !acc[i].top1 || !acc[i].nll;
    }
    FILE *f = bad ? NULL : lc_open_out(o, "kl_long_windows.csv", "w");
    em_status st = f ? EM_OK : EM_ENOMEM;
    if (f)
        fprintf(f, "text,prefix,method,budget,n_scored,kl,top1,ppl,kv_bytes_mean,kv_bytes_peak,"
                   "seconds,budget_used\n");
    for (int ti = 0; ti < o->n_texts && st == EM_OK; ti++)
        st = kll_text(o, e, tok, o->texts[ti], acc, ref, q, scratch, f);
    if (f)
        fclose(f);
    FILE *s = st == EM_OK ? lc_open_out(o, "kl_long.csv", "w") : NULL;
    FILE *md = s ? lc_open_out(o, "kl_long.md", "w") : NULL;
    if (s && md)
        kll_tables(o, acc, s, md);
    else if (st == EM_OK)
        st = EM_EIO;
    if (s)
        fclose(s);
    if (md)
        fclose(md);
    for (int i = 0; acc && i < n_acc; i++)
        free(acc[i].kl), free(acc[i].top1), free(acc[i].nll);
    free(acc), free(ref), free(q), free(scratch);
    return st != EM_OK;
}
