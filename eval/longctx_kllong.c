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
} kll_acc;

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

/* Runs policy pi (-1 = the full cache) on the prompt cache and appends its scores to a. */
static em_status kll_policy(const lc_opts *o, engine *e, const ems_cache *base, const int32_t *ids,
                            int P, int pi, const float *ref, float *q, kll_acc *a, FILE *f,
                            const char *text)
{
    int S = o->kl_score, V = engine_hparams(e)->n_vocab;
    int mi = pi < 0 ? -1 : pi % N_METHODS, B = pi < 0 ? 0 : o->kl_budgets[pi / N_METHODS];
    ems_config cfg;
    if (lc_make_cfg(mi, B, &cfg))
        return EM_EINVAL;
    lc_stream r;
    em_status st = lc_fork_logits(e, base, &cfg, ids, P, S, q, &r);
    if (st == EM_OK)
        st = lc_row_scores(ref ? ref : q, q, ids + P + 1, S, V, a->kl + a->n, a->top1 + a->n,
                           a->nll + a->n);
    if (st != EM_OK)
        return st;
    const char *name = mi < 0 ? "full" : lc_methods[mi];
    double k = mean(a->kl + a->n, S), t = mean(a->top1 + a->n, S), l = mean(a->nll + a->n, S);
    fprintf(f, "%s,%d,%s,%d,%d,%.6f,%.4f,%.4f,%.0f,%llu,%.1f\n", text, P, name, B, S, k, t, exp(l),
            r.bytes_mean, (unsigned long long)r.bytes_peak, r.seconds);
    fflush(f);
    fprintf(stderr, "  P=%d %-14s B=%-4d KL %.4f top1 %.3f ppl %.2f (%.1fs)\n", P, name, B, k, t,
            exp(l), r.seconds);
    a->n += S;
    a->bytes_sum += r.bytes_mean * S;
    a->peak = (double)r.bytes_peak > a->peak ? (double)r.bytes_peak : a->peak;
    return EM_OK;
}

/* One text: its prompt cache at every prefix, then every policy at each. */
static em_status kll_text(const lc_opts *o, engine *e, const tokenizer *tok, const char *text,
                          kll_acc *acc, float *ref, float *q, FILE *f)
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
        kll_acc *row = acc + (size_t)k * (n_pol + 1);
        if (st == EM_OK)
            st = kll_policy(o, e, base, ids, P, -1, NULL, ref, &row[n_pol], f, text);
        for (int pi = 0; pi < n_pol && st == EM_OK; pi++) {
            if (lc_use[pi % N_METHODS])
                st = kll_policy(o, e, base, ids, P, pi, ref, q, &row[pi], f, text);
        }
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
               "kv_bytes_peak,bytes_vs_ems,ems_minus_this_kl,diff_lo,diff_hi\n");
    fprintf(md,
            "| prompt tokens | method | B | KL [95%% CI] | top-1 | perplexity [95%% CI] | KV MiB "
            "mean (peak) | bytes / EMS's | EMS - method, KL [95%% CI] |\n"
            "|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < o->n_kl_prefixes; k++) {
        const kll_acc *row = acc + (size_t)k * (n_pol + 1), *full = &row[n_pol];
        int P = o->kl_prefixes[k];
        double pm, plo, phi;
        ppl_ci(full->nll, full->n, 3, &pm, &plo, &phi);
        fprintf(s, "%d,full,0,%d,0,0,0,1,%.4f,%.4f,%.4f,%.0f,%.0f,,,,\n", P, full->n, pm, plo, phi,
                full->bytes_sum / full->n, full->peak);
        fprintf(md, "| %d | full | - | 0 | 1 | %.2f [%.2f, %.2f] | %.2f (%.2f) | | |\n", P, pm, plo,
                phi, full->bytes_sum / full->n / 1048576.0, full->peak / 1048576.0);
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
            fprintf(
                s, "%d,%s,%d,%d,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%.6f,%.6f,%.6f\n",
                P, lc_methods[mi], B, a->n, km, lo, hi, tm, pm, plo, phi, a->bytes_sum / a->n,
                a->peak, ratio, dm, dlo, dhi);
            int off = fabs(ratio - 1) > 0.05;
            fprintf(md,
                    "| %d | %s | %d | %.4f [%.4f, %.4f] | %.3f | %.2f [%.2f, %.2f] | %.2f (%.2f) | "
                    "%s%.2f%s | ",
                    P, lc_methods[mi], B, km, lo, hi, tm, pm, plo, phi,
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
    int bad = !acc || !ref || !q;
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
                   "seconds\n");
    for (int ti = 0; ti < o->n_texts && st == EM_OK; ti++)
        st = kll_text(o, e, tok, o->texts[ti], acc, ref, q, f);
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
    free(acc), free(ref), free(q);
    return st != EM_OK;
}
