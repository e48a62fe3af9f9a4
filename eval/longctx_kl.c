/* //eval:longctx decode-time KL task: real prose streamed token by token with a DECODE step
 * after each, KL(full || compressed) and top-1 agreement per prediction, pooled over texts
 * with paired block-bootstrap intervals (kl_windows.csv, kl.csv, kl.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/timeutil.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/stream.h"
#include "model/model.h"

/* ---- KL on prose ------------------------------------------------------------------------ */

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
    const model_hparams *hp = engine_hparams(e);
    double entry = 2.0 * sizeof(float) * hp->n_layer * hp->n_kv_head * hp->head_dim;
    float *ref = malloc(sizeof(float) * (size_t)W * V);
    double *k1 = malloc(sizeof(double) * W);
    uint8_t *a1 = malloc(W);
    FILE *f = lc_open_out(o, "kl_windows.csv", "w");
    if (!kl || !t1 || !cnt || !bytes || !peak || !full || !ref || !k1 || !a1 || !f)
        return 1;
    fprintf(f, "text,tokens,method,budget,n_scored,kl,top1,kv_bytes_mean,kv_bytes_peak,seconds\n");
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
        for (int pi = 0; pi < n_pol; pi++) {
            int mi = pi % N_METHODS, B = o->kl_budgets[pi / N_METHODS];
            if (!lc_use[mi])
                continue;
            ems_config cfg;
            lc_make_cfg(mi, B, &cfg);
            lc_stream r;
            /* predictions of positions >= P are scored, P = B (before that no method has
             * compressed) or --kl-prefill: the first P tokens prefilled in one call */
            int P = o->kl_prefill > 0 ? o->kl_prefill : B;
            if (lc_stream_kl(e, &cfg, ids, W, P, ref, k1, a1, &r) != EM_OK) {
                fprintf(stderr, "error: kl %s B=%d\n", lc_methods[mi], B);
                rc = 1;
                continue;
            }
            int m = W - 1 - P;
            double sk = 0, sa = 0;
            for (int i = 0; i < m; i++) {
                kl[(size_t)pi * cap + cnt[pi] + i] = k1[i];
                t1[(size_t)pi * cap + cnt[pi] + i] = a1[i];
                sk += k1[i], sa += a1[i];
            }
            cnt[pi] += m;
            bytes[pi] += r.bytes_mean * m;
            for (int i = P; i < W - 1; i++) /* the full cache after feeding token i: i + 1 */
                full[pi] += entry * (i + 1);
            peak[pi] = r.bytes_peak > peak[pi] ? r.bytes_peak : peak[pi];
            fprintf(f, "%s,%d,%s,%d,%d,%.6f,%.4f,%.0f,%llu,%.1f\n", o->texts[ti], W, lc_methods[mi],
                    B, m, sk / m, sa / m, r.bytes_mean, (unsigned long long)r.bytes_peak,
                    r.seconds);
            fflush(f);
            fprintf(stderr, "  %-12s B=%-4d KL %.4f top1 %.3f (%.1fs)\n", lc_methods[mi], B, sk / m,
                    sa / m, r.seconds);
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
               "bytes_vs_ems,ems_minus_this_kl,diff_lo,diff_hi\n");
    fprintf(
        md,
        "| method | B | KL [95%% CI] | top-1 | KV MiB mean (peak) | %% of full | bytes / %s's | "
        "%s - method, KL [95%% CI] |\n|---|---|---|---|---|---|---|---|\n",
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
        fprintf(s, "%s,%d,%d,%.6f,%.6f,%.6f,%.4f,%.0f,%.0f,%.4f,%.6f,%.6f,%.6f\n", lc_methods[mi],
                o->kl_budgets[bi], n, m, lo, hi, a, bytes[pi] / n, peak[pi], ratio, dm, dlo, dhi);
        fprintf(md, "| %s | %d | %.4f [%.4f, %.4f] | %.3f | %.2f (%.2f) | %.1f | %s%.2f%s | ",
                lc_methods[mi], o->kl_budgets[bi], m, lo, hi, a, bytes[pi] / n / 1048576.0,
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
    free(a1);
    return rc;
}
