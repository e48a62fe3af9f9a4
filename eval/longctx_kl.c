/* //eval:longctx decode-time KL task: real prose streamed token by token with a DECODE step
 * after each, KL(full || compressed) and top-1 agreement per prediction, pooled over texts
 * with paired block-bootstrap intervals (kl_windows.csv, kl.csv, kl.md); with --match-bytes every
 * method except the EMS rows runs at the budget that holds EMS's bytes (eval/budget_match.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/budget_match.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/stream.h"
#include "model/model.h"

/* ---- KL on prose ------------------------------------------------------------------------ */

/* bm_search's callback: one method streamed over one window at budget B (scored from the
 * group's prefill P), the closest run kept in kb / ab */
typedef struct kl_match {
    engine *e;
    const int32_t *ids;
    int W, P, mi;
    const float *ref;
    double *k1, *kb;
    uint8_t *a1, *ab;
    lc_stream cur, best;
    int B, best_B;
} kl_match;

static em_status kl_match_eval(void *ctx, int B, double *bytes)
{
    kl_match *m = ctx;
    ems_config cfg;
    if (lc_make_cfg(m->mi, B, &cfg))
        return EM_EINVAL;
    m->B = B;
    em_status st = lc_stream_kl(m->e, &cfg, m->ids, m->W, m->P, m->ref, m->k1, m->a1, &m->cur);
    *bytes = m->cur.bytes_mean;
    return st;
}

static void kl_match_keep(void *ctx)
{
    kl_match *m = ctx;
    memcpy(m->kb, m->k1, sizeof(double) * (size_t)m->W);
    memcpy(m->ab, m->a1, (size_t)m->W);
    m->best = m->cur;
    m->best_B = m->B;
}

int lc_task_kl(const lc_opts *o, engine *e, const tokenizer *tok)
{
    int V = engine_hparams(e)->n_vocab, W = o->kl_window, nb = o->n_kl_budgets;
    int n_pol = N_METHODS * nb, per_win = W, rc = 0;
    size_t cap = (size_t)o->n_texts * per_win;
    double *kl = calloc((size_t)n_pol * cap, sizeof(double));
    double *t1 = calloc((size_t)n_pol * cap, sizeof(double));
    int *cnt = calloc((size_t)n_pol, sizeof(int));
    double *bytes = calloc((size_t)n_pol, sizeof(double)), *peak = calloc(n_pol, sizeof(double));
    double *full = calloc((size_t)n_pol, sizeof(double)); /* full cache's bytes, same weights */
    double *bsum = calloc((size_t)n_pol, sizeof(double)); /* budgets run with, per window */
    int *bmin = calloc((size_t)n_pol, sizeof(int)), *bmax = calloc((size_t)n_pol, sizeof(int));
    int *nwin = calloc((size_t)n_pol, sizeof(int));
    const model_hparams *hp = engine_hparams(e);
    double entry = 2.0 * sizeof(float) * hp->n_layer * hp->n_kv_head * hp->head_dim;
    float *ref = malloc(sizeof(float) * (size_t)W * V);
    double *k1 = malloc(sizeof(double) * W), *kb = malloc(sizeof(double) * W);
    uint8_t *a1 = malloc(W), *ab = malloc(W);
    FILE *f = lc_open_out(o, "kl_windows.csv", "w");
    if (!kl || !t1 || !cnt || !bytes || !peak || !full || !bsum || !bmin || !bmax || !nwin ||
        !ref || !k1 || !kb || !a1 || !ab || !f)
        return 1;
    fprintf(f, "text,tokens,method,budget,n_scored,kl,top1,kv_bytes_mean,kv_bytes_peak,seconds,"
               "budget_used\n");
    for (int ti = 0; ti < o->n_texts; ti++) {
        int32_t *ids = NULL;
        int n = 0;
        char err[256];
        if (ev_load_text(tok, o->texts[ti], 0, W, &ids, &n, err, sizeof err) != EM_OK || n < W) {
            fprintf(stderr, "error: %s (%d tokens, need %d)\n", err, n, W);
            free(ids);
            return 1;
        }
        double t0 = em_now_s();
        if (lc_full_logits(e, ids, W, 256, ref) != EM_OK)
            return 1;
        fprintf(stderr, "kl %s: %d tokens, full logits %.1fs\n", o->texts[ti], W, em_now_s() - t0);
        kl_match m = {
            .e = e, .ids = ids, .W = W, .ref = ref, .k1 = k1, .kb = kb, .a1 = a1, .ab = ab};
        for (int bi = 0; bi < nb; bi++) {
            int B = o->kl_budgets[bi];
            double target = 0;
            /* predictions of positions >= P are scored, P = B (before that no method has
             * compressed) or --kl-prefill: the first P tokens prefilled in one call; under
             * --match-bytes P stays the group's while a method's budget moves */
            m.P = o->kl_prefill > 0 ? o->kl_prefill : B;
            /* EMS first: its bytes are the target of --match-bytes (EMS + int4 and the EMS
             * variants stay at B) */
            for (int k = 0; k < N_METHODS; k++) {
                int mi = k == 0 ? EMS_IDX : k <= EMS_IDX ? k - 1 : k, pi = bi * N_METHODS + mi;
                if (!lc_use[mi])
                    continue;
                m.mi = mi;
                bm_result br;
                int ref_row = lc_variant_base(mi) >= EMS_IDX;
                if (bm_search(B, 8, W, ref_row ? 0 : target, kl_match_eval, kl_match_keep, &m,
                              &br) != EM_OK) {
                    fprintf(stderr, "error: kl %s B=%d\n", lc_methods[mi], B);
                    rc = 1;
                    continue;
                }
                if (mi == EMS_IDX && o->match_bytes)
                    target = br.bytes;
                const lc_stream *r = &m.best;
                int P = m.P, mw = W - 1 - P;
                double sk = 0, sa = 0;
                for (int i = 0; i < mw; i++) {
                    kl[(size_t)pi * cap + cnt[pi] + i] = kb[i];
                    t1[(size_t)pi * cap + cnt[pi] + i] = ab[i];
                    sk += kb[i], sa += ab[i];
                }
                cnt[pi] += mw;
                bytes[pi] += r->bytes_mean * mw;
                for (int i = P; i < W - 1; i++) /* the full cache after feeding token i: i + 1 */
                    full[pi] += entry * (i + 1);
                peak[pi] = r->bytes_peak > peak[pi] ? r->bytes_peak : peak[pi];
                bmin[pi] = !nwin[pi] || m.best_B < bmin[pi] ? m.best_B : bmin[pi];
                bmax[pi] = !nwin[pi] || m.best_B > bmax[pi] ? m.best_B : bmax[pi];
                bsum[pi] += m.best_B, nwin[pi]++;
                fprintf(f, "%s,%d,%s,%d,%d,%.6f,%.4f,%.0f,%llu,%.1f,%d\n", o->texts[ti], W,
                        lc_methods[mi], B, mw, sk / mw, sa / mw, r->bytes_mean,
                        (unsigned long long)r->bytes_peak, r->seconds, m.best_B);
                fflush(f);
                fprintf(stderr, "  %-12s B=%-4d (ran %d, %d tries) KL %.4f top1 %.3f (%.1fs)\n",
                        lc_methods[mi], B, m.best_B, br.evals, sk / mw, sa / mw, r->seconds);
            }
        }
        free(ids);
    }
    fclose(f);
    /* pooled table with paired block-bootstrap CIs of reference (EMS unless --ref) - method
     * (blocks of 64 positions) */
    const char *rn = lc_ref_idx == EMS_IDX ? "EMS"
                     : lc_ref_idx < 0      ? "full"
                                           : lc_methods[lc_ref_idx];
    FILE *s = lc_open_out(o, "kl.csv", "w"), *md = lc_open_out(o, "kl.md", "w");
    if (!s || !md)
        return 1;
    fprintf(s, "method,budget,n_scored,kl,kl_lo,kl_hi,top1,kv_bytes_mean,kv_bytes_peak,"
               "bytes_vs_ems,ems_minus_this_kl,diff_lo,diff_hi,budget_used_mean,budget_used_min,"
               "budget_used_max\n");
    if (o->match_bytes)
        fprintf(md,
                "Protocol: matched bytes. Per window and budget group B, EMS streams at B and "
                "every other method (EMS + int4 and EMS variants excepted: they stay at B) at "
                "the budget whose mean KV bytes come closest to EMS's (secant search, at most "
                "%d tries, stopping within %.0f %%), all scored from the same position; \"B "
                "used\" is the mean (range) over windows. Bold: still more than 5 %% off "
                "%s's bytes.\n\n",
                BM_MAX_EVALS, 100 * BM_TOL, rn);
    else
        fprintf(md,
                "Protocol: equal budget B (entries per KV head) for every method; bytes differ "
                "per method (bold: more than 5 %% off %s's).\n\n",
                rn);
    fprintf(md,
            "| method | B | B used | KL [95%% CI] | top-1 | KV MiB mean (peak) | %% of full | "
            "bytes / %s's | %s - method, KL [95%% CI] |\n|---|---|---|---|---|---|---|---|---|\n",
            rn, rn);
    double *d = malloc(sizeof(double) * cap);
    for (int pi = 0; pi < n_pol && d; pi++) {
        int mi = pi % N_METHODS, bi = pi / N_METHODS, n = cnt[pi];
        /* the reference's slot; with --ref full (KL 0 by definition) the row itself */
        int ei = lc_ref_idx < 0 ? pi : bi * N_METHODS + lc_ref_idx;
        if (!n)
            continue;
        const double *x = kl + (size_t)pi * cap, *xe = kl + (size_t)ei * cap;
        double m = 0, a = 0, lo, hi, dm = NAN, dlo = NAN, dhi = NAN;
        for (int i = 0; i < n; i++)
            m += x[i], a += t1[(size_t)pi * cap + i];
        m /= n, a /= n;
        lc_boot_ci(x, n, 64, N_BOOT, 5, &lo, &hi);
        double ratio =
            lc_ref_idx < 0 ? bytes[pi] / full[pi] : (bytes[pi] / n) / (bytes[ei] / cnt[ei]);
        if (lc_ref_idx >= 0 && mi != lc_ref_idx && cnt[ei] == n) {
            dm = 0;
            for (int i = 0; i < n; i++)
                d[i] = xe[i] - x[i], dm += d[i];
            dm /= n;
            lc_boot_ci(d, n, 64, N_BOOT, 9, &dlo, &dhi);
        }
        fprintf(s, "%s,%d,%d,%.6f,%.6f,%.6f,%.4f,%.0f,%.0f,%.4f,%.6f,%.6f,%.6f,%.1f,%d,%d\n",
                lc_methods[mi], o->kl_budgets[bi], n, m, lo, hi, a, bytes[pi] / n, peak[pi], ratio,
                dm, dlo, dhi, bsum[pi] / nwin[pi], bmin[pi], bmax[pi]);
        char used[48];
        if (bmin[pi] == bmax[pi])
            snprintf(used, sizeof used, "%d", bmin[pi]);
        else
            snprintf(used, sizeof used, "%.0f (%d-%d)", bsum[pi] / nwin[pi], bmin[pi], bmax[pi]);
        fprintf(md, "| %s | %d | %s | %.4f [%.4f, %.4f] | %.3f | %.2f (%.2f) | %.1f | %s%.2f%s | ",
                lc_methods[mi], o->kl_budgets[bi], used, m, lo, hi, a, bytes[pi] / n / 1048576.0,
                peak[pi] / 1048576.0, 100.0 * bytes[pi] / full[pi],
                fabs(ratio - 1) > 0.05 ? "**" : "", ratio, fabs(ratio - 1) > 0.05 ? "**" : "");
        if (isnan(dm))
            fprintf(md, " |\n");
        else
            fprintf(md, "%+.4f [%+.4f, %+.4f]%s%s%s |\n", dm, dlo, dhi,
                    dhi < 0 || dlo > 0 ? " " : "",
                    dhi < 0   ? rn
                    : dlo > 0 ? rn
                              : "",
                    dhi < 0   ? " lower"
                    : dlo > 0 ? " higher"
                              : "");
    }
    fclose(s);
    fclose(md);
    free(d), free(kl), free(t1), free(cnt), free(bytes), free(peak), free(full), free(ref),
        free(k1);
    free(a1), free(kb), free(ab), free(bsum), free(bmin), free(bmax), free(nwin);
    return rc;
}
