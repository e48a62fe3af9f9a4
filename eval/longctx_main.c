/* //eval:longctx — long-context compression quality on SmolLM2 (or any chat GGUF):
 *   passkey retrieval with end-of-prompt compression (longctx.h protocol) and decode-time
 *   KL(full || compressed) on real prose, with bootstrap 95 % intervals and KV bytes held.
 * Writes CSV + markdown + gnuplot PNGs under --out; progress on stderr. See eval/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/cache_io.h"
#include "eval/eval.h"
#include "eval/longctx.h"
#include "eval/stream.h"
#include "model/model.h"

#define MAXV   16
#define N_BOOT 2000

typedef struct opts {
    const char *model, *out;
    int sizes[MAXV], n_sizes;
    double depths[MAXV];
    int n_depths, keys, budgets[MAXV], n_budgets, threads, max_new;
    const char *texts[MAXV];
    int n_texts, kl_window, kl_budgets[MAXV], n_kl_budgets, do_passkey, do_kl, quick, summarize,
        first_key;
    const char *dump_dir; /* --dump-cache DIR: the prompt cache of each size's first case */
} opts;

/* methods compared at every budget: the baselines, EMS, EMS with int4, then the EMS variants
 * of --ems-variant (rows "ems-LABEL", EMS with extra parameters; same prompt cache) */
#define MAXM     24
#define EMS_IDX  7
#define INT4_IDX 8
static const char *k_methods[MAXM] = {"streamingllm", "h2o",  "snapkv", "pyramidkv", "tova",
                                      "simlayerkv",   "roco", "ems",    "ems+int4"};
static int g_n_methods = INT4_IDX + 1;
#define N_METHODS g_n_methods
/* methods run (all by default; --quick: streamingllm, h2o, ems) */
static int g_use[MAXM] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
/* --ems-variant LABEL:K=V,K=V: the parameters of each variant row */
static char g_var_name[MAXM][24];
static const char *g_var_kv[MAXM][8];
static int g_var_n[MAXM];

/* --ems-param settings added to both EMS rows (ablations; none by default) */
static const char *g_ems_kv[10];
static int g_n_ems_kv;

static int make_cfg(int mi, int B, ems_config *cfg)
{
    const char *kv[12] = {0};
    int n = 0;
    if (mi == EMS_IDX || mi >= INT4_IDX) {
        for (int i = 0; i < g_n_ems_kv; i++)
            kv[n++] = g_ems_kv[i];
    }
    if (mi == INT4_IDX)
        kv[n++] = "quant=int4";
    for (int i = 0; mi > INT4_IDX && i < g_var_n[mi] && n < 11; i++)
        kv[n++] = g_var_kv[mi][i];
    ev_policy p;
    int bad = mi < 0
                  ? ev_policy_make(&p, "full", "full", 0, NULL)
                  : ev_policy_make(&p, k_methods[mi], mi >= EMS_IDX ? "ems" : k_methods[mi], B, kv);
    *cfg = p.cfg;
    return bad;
}

/* --ems-variant LABEL:K=V,K=V,...: one more EMS row, "ems-LABEL" (run even with --methods) */
static int make_cfg(int mi, int B, ems_config *cfg);

static int add_variant(const char *arg)
{
    char *spec = strdup(arg), *colon = spec ? strchr(spec, ':') : NULL;
    int mi = g_n_methods;
    if (!colon || colon == spec || colon - spec > 19 || mi >= MAXM) {
        fprintf(stderr,
                "error: --ems-variant wants LABEL:K=V[,K=V...] (label <= 19 chars, "
                "at most %d variants)\n",
                MAXM - INT4_IDX - 1);
        return 1;
    }
    *colon = 0;
    snprintf(g_var_name[mi], sizeof g_var_name[mi], "ems-%s", spec);
    k_methods[mi] = g_var_name[mi];
    for (char *t = strtok(colon + 1, ","); t && g_var_n[mi] < 8; t = strtok(NULL, ","))
        g_var_kv[mi][g_var_n[mi]++] = t;
    g_use[mi] = 1;
    g_n_methods++;
    ems_config c;
    if (make_cfg(mi, 128, &c)) {
        fprintf(stderr, "error: --ems-variant %s: invalid parameters\n", arg);
        return 1;
    }
    return 0; /* spec stays allocated: the rows point into it */
}

/* --methods a,b,...: only these rows (EMS is always run: it is the paired reference) */
static int set_methods(const char *list)
{
    for (int k = 0; k <= INT4_IDX; k++)
        g_use[k] = k == EMS_IDX;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int found = 0;
        for (int k = 0; k <= INT4_IDX; k++) {
            if (!strcmp(t, k_methods[k]))
                g_use[k] = 1, found = 1;
        }
        if (!found) {
            fprintf(stderr, "error: unknown method %s\n", t);
            return 1;
        }
    }
    return 0;
}

static int parse_ints(const char *s, int *v)
{
    int n = 0;
    for (char *e; *s && n < MAXV; s = *e ? e + 1 : e)
        v[n++] = (int)strtol(s, &e, 10);
    return n;
}

static FILE *open_out(const opts *o, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", o->out, name);
    FILE *f = fopen(p, "w");
    if (!f)
        fprintf(stderr, "error: cannot write %s\n", p);
    return f;
}

static void csv_text(FILE *f, const tokenizer *tok, const int32_t *ids, int n)
{
    fputc('"', f);
    for (int i = 0; i < n; i++) {
        char b[256];
        size_t m = tok_piece_bytes(tok, i ? ids[i - 1] : -1, ids[i], b, sizeof b);
        for (size_t j = 0; j < m; j++)
            fputs(b[j] == '"' ? "\"\"" : b[j] == '\n' ? "\\n" : (char[2]){b[j], 0}, f);
    }
    fputc('"', f);
}

/* Positions of the key's digit tokens in ids[0..n) (every occurrence of 5 consecutive
 * single-digit tokens spelling it); at most cap. */
static int key_positions(const tokenizer *tok, const int32_t *ids, int n, int key, int32_t *out,
                         int cap)
{
    char want[8];
    snprintf(want, sizeof want, "%d", key);
    int m = 0;
    for (int i = 0; i + 5 <= n && m + 5 <= cap; i++) {
        int ok = 1;
        for (int d = 0; d < 5 && ok; d++) {
            char b[256];
            size_t len = tok_piece_bytes(tok, i + d ? ids[i + d - 1] : -1, ids[i + d], b, sizeof b);
            ok = len == 1 && b[0] == want[d];
        }
        for (int d = 0; ok && d < 5; d++)
            out[m++] = i + d;
    }
    return m;
}

static int has_key(const tokenizer *tok, const int32_t *ids, int n, int key)
{
    char text[1024] = "", want[16];
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof text - 300; i++)
        len += tok_piece_bytes(tok, i ? ids[i - 1] : -1, ids[i], text + len, 256);
    text[len] = 0;
    snprintf(want, sizeof want, "%d", key);
    return strstr(text, want) != NULL;
}

/* ---- passkey ---------------------------------------------------------------------------- */

typedef struct pk_acc {
    double ok[1024];
    int n;
    double bytes, peak_max, ms;
} pk_acc;

static void pk_add(pk_acc *a, int ok, const lc_answer *ans)
{
    if (a->n < 1024)
        a->ok[a->n++] = ok;
    a->bytes += ans->bytes_mean;
    a->peak_max = ans->bytes_peak > a->peak_max ? ans->bytes_peak : a->peak_max;
}

static int run_passkey(const opts *o, engine *e, const tokenizer *tok)
{
    int nb = o->n_budgets, n_pol = 1 + N_METHODS * nb, rc = 0;
    pk_acc *acc = calloc((size_t)n_pol, sizeof *acc);
    double *full_bytes = calloc(1024, sizeof(double)); /* per case: full cache bytes */
    FILE *f = open_out(o, "passkey_cases.csv");
    if (!acc || !full_bytes || !f)
        return 1;
    fprintf(f, "tokens,prompt_tokens,depth,key,method,budget,budget_pct,retrieved,answer,"
               "kv_bytes_mean,kv_bytes_peak,kv_entries_prompt,compress_ms,key_kept,"
               "key_merged,compress_cpu_ms\n");
    int32_t stop = 2; /* <|im_end|> */
    tok_token_id(tok, "<|im_end|>", &stop);
    int case_i = 0, wl = 16;
    for (int mi = 0; mi < N_METHODS; mi++) {
        ems_config c;
        make_cfg(mi, o->budgets[0], &c);
        wl = ems_config_w_loc(&c) > wl ? ems_config_w_loc(&c) : wl;
    }
    for (int si = 0; si < o->n_sizes; si++) {
        for (int di = 0; di < o->n_depths; di++) {
            for (int k = o->first_key; k < o->first_key + o->keys; k++, case_i++) {
                int key = 10000 + (int)((case_i * 7919u + 12345u * (k + 1)) % 90000u);
                int32_t *ids = NULL;
                int n = 0;
                if (lc_passkey_prompt(tok, key, o->sizes[si], o->depths[di], &ids, &n) != EM_OK) {
                    fprintf(stderr, "error: passkey prompt\n");
                    return 1;
                }
                double t0 = em_now_s();
                ems_cache *base = NULL;
                if (lc_prompt_cache(e, ids, n - 1, wl, 512, &base) != EM_OK) {
                    fprintf(stderr, "error: prompt forward\n");
                    return 1;
                }
                if (o->dump_dir && di == 0 && k == o->first_key) {
                    char p[1024];
                    snprintf(p, sizeof p, "%s/cache_%d.bin", o->dump_dir, n - 1);
                    em_status ds = lc_cache_write(base, p);
                    fprintf(stderr, "  prompt cache -> %s: %s\n", p, em_status_str(ds));
                }
                int32_t kpos[20];
                int n_kpos = key_positions(tok, ids, n, key, kpos, 20);
                fprintf(stderr, "passkey %d tokens depth %.1f key %d: prompt %.1fs\n", n,
                        o->depths[di], key, em_now_s() - t0);
                for (int pi = 0; pi < n_pol; pi++) {
                    int mi = pi == 0 ? -1 : (pi - 1) % N_METHODS;
                    int B = pi == 0 ? 0 : o->budgets[(pi - 1) / N_METHODS];
                    ems_config cfg;
                    if (mi >= 0 && !g_use[mi])
                        continue;
                    make_cfg(mi, B, &cfg);
                    lc_answer a;
                    em_status st = lc_answer_probe(e, base, &cfg, ids[n - 1], n - 1, o->max_new,
                                                   stop, kpos, n_kpos, &a);
                    if (st != EM_OK) {
                        fprintf(stderr, "error: %s B=%d: %s\n", mi < 0 ? "full" : k_methods[mi], B,
                                em_status_str(st));
                        rc = 1;
                        continue;
                    }
                    int ok = has_key(tok, a.ids, a.n, key);
                    if (pi == 0 && case_i < 1024)
                        full_bytes[case_i] = a.bytes_mean;
                    pk_add(&acc[pi], ok, &a);
                    fprintf(f, "%d,%d,%.2f,%d,%s,%d,%.1f,%d,", o->sizes[si], n, o->depths[di], key,
                            mi < 0 ? "full" : k_methods[mi], B, 100.0 * B / n, ok);
                    csv_text(f, tok, a.ids, a.n);
                    fprintf(f, ",%.0f,%llu,%llu,%.2f,%.4f,%.4f,%.2f\n", a.bytes_mean,
                            (unsigned long long)a.bytes_peak, (unsigned long long)a.entries_prompt,
                            1e3 * a.compress_s, a.probe_kept, a.probe_merged,
                            1e3 * a.compress_cpu_s);
                    fflush(f);
                }
                fprintf(stderr, "  all methods answered (%.1fs)\n", em_now_s() - t0);
                ems_cache_destroy(base);
                free(ids);
            }
        }
    }
    fclose(f);
    free(acc);
    free(full_bytes);
    return rc;
}

/* ---- passkey summary (from passkey_cases.csv, so a partial run can be summarised) ------- */

typedef struct pk_row {
    char method[24];
    int budget, ok, tokens;
    char cid[48]; /* tokens/depth/key */
    double bytes, peak, ms;
    int cpu; /* ms is thread CPU time (else wall time) */
} pk_row;

/* 1 when method/budget is one of the policies of this run (*index: its slot), else 0. */
static int policy_index(const char *method, int budget, const opts *o, int *index)
{
    *index = 0;
    if (!strcmp(method, "full"))
        return 1;
    for (int b = 0; b < o->n_budgets; b++) {
        for (int mi = 0; mi < N_METHODS; mi++) {
            if (o->budgets[b] == budget && !strcmp(method, k_methods[mi])) {
                *index = 1 + b * N_METHODS + mi;
                return 1;
            }
        }
    }
    return 0;
}

/* Rows of the cases CSV; *n rows. Answers (quoted text) are skipped over. */
static pk_row *read_cases(const opts *o, int *n)
{
    char p[1024], line[4096];
    snprintf(p, sizeof p, "%s/passkey_cases.csv", o->out);
    FILE *f = fopen(p, "r");
    *n = 0;
    if (!f)
        return NULL;
    int cap = 4096;
    pk_row *r = calloc(cap, sizeof *r);
    while (r && fgets(line, sizeof line, f) && *n < cap) {
        pk_row x = {0};
        double depth, pct, ent;
        int ptok, key;
        char *q = strrchr(line, '"'); /* after the answer */
        if (sscanf(line, "%d,%d,%lf,%d,%23[^,],%d,%lf,%d,", &x.tokens, &ptok, &depth, &key,
                   x.method, &x.budget, &pct, &x.ok) != 8 ||
            !q || sscanf(q + 1, ",%lf,%lf,%lf,%lf", &x.bytes, &x.peak, &ent, &x.ms) != 4)
            continue;
        double kept, merged, cpu; /* newer files: thread CPU time of the step, preferred */
        (void)kept, (void)merged;
        if (sscanf(q + 1, ",%*f,%*f,%*f,%*f,%lf,%lf,%lf", &kept, &merged, &cpu) == 3)
            x.ms = cpu, x.cpu = 1;
        snprintf(x.cid, sizeof x.cid, "%d/%.2f/%d", x.tokens, depth, key);
        r[(*n)++] = x;
    }
    fclose(f);
    return r;
}

static int summarize_passkey(const opts *o)
{
    int nr = 0, n_pol = 1 + N_METHODS * o->n_budgets;
    pk_row *rows = read_cases(o, &nr);
    pk_acc *acc = calloc((size_t)n_pol, sizeof *acc);
    int *seen = calloc((size_t)n_pol, sizeof(int));
    if (!rows || !acc || !seen || nr == 0) {
        fprintf(stderr, "error: no passkey cases in %s\n", o->out);
        return 1;
    }
    int n_used = 0, n_cases = 0, want = 0, all_cpu = 1;
    for (int pi = 0; pi < n_pol; pi++)
        want += pi == 0 || g_use[(pi - 1) % N_METHODS];
    double fb = 0;
    for (int i = 0; i < nr;) { /* one case = consecutive rows with the same id */
        int j = i;
        while (j < nr && !strcmp(rows[j].cid, rows[i].cid))
            j++;
        if (j - i == want) { /* complete cases only */
            for (int k = i; k < j; k++) {
                int pi;
                if (!policy_index(rows[k].method, rows[k].budget, o, &pi))
                    continue;
                lc_answer a = {.bytes_mean = rows[k].bytes, .bytes_peak = (uint64_t)rows[k].peak};
                pk_add(&acc[pi], rows[k].ok, &a);
                acc[pi].ms += rows[k].ms;
                all_cpu &= rows[k].cpu;
                fb += pi == 0 ? rows[k].bytes : 0;
            }
            n_used++;
        }
        n_cases++;
        i = j;
    }
    if (!n_used) {
        fprintf(stderr, "error: no complete passkey case\n");
        return 1;
    }
    fb /= n_used;
    FILE *s = open_out(o, "passkey.csv"), *md = open_out(o, "passkey.md");
    if (!s || !md)
        return 1;
    fprintf(s, "method,budget,n_cases,accuracy,ci_lo,ci_hi,kv_bytes_mean,kv_bytes_peak,"
               "frac_of_full,bytes_vs_ems,ems_minus_this,diff_lo,diff_hi,compress_ms\n");
    fprintf(md, "%d complete cases (of %d in passkey_cases.csv)\n\n", n_used, n_cases);
    fprintf(md,
            "| method | B | accuracy [95%% CI] | KV MiB mean (peak) | %% of full | bytes / EMS's | "
            "EMS - method [95%% CI] | prefill-end compression, %s ms |\n"
            "|---|---|---|---|---|---|---|---|\n",
            all_cpu ? "CPU" : "wall");
    for (int pi = 0; pi < n_pol; pi++) {
        pk_acc *a = &acc[pi];
        int mi = pi == 0 ? -1 : (pi - 1) % N_METHODS, bi = pi == 0 ? 0 : (pi - 1) / N_METHODS;
        if (!a->n)
            continue;
        int B = pi == 0 ? 0 : o->budgets[bi];
        double m = 0, lo, hi, dlo = NAN, dhi = NAN, dm = NAN;
        for (int i = 0; i < a->n; i++)
            m += a->ok[i];
        m /= a->n;
        lc_boot_ci(a->ok, a->n, 1, N_BOOT, 7, &lo, &hi);
        pk_acc *ea = &acc[1 + bi * N_METHODS + EMS_IDX];
        double bytes = a->bytes / a->n, ratio = pi ? bytes / (ea->bytes / ea->n) : NAN;
        if (pi && mi != EMS_IDX && ea->n == a->n) {
            double d[1024];
            dm = 0;
            for (int i = 0; i < a->n; i++)
                d[i] = ea->ok[i] - a->ok[i], dm += d[i];
            dm /= a->n;
            lc_boot_ci(d, a->n, 1, N_BOOT, 11, &dlo, &dhi);
        }
        const char *name = mi < 0 ? "full" : k_methods[mi];
        int flag = pi && fabs(ratio - 1) > 0.05;
        fprintf(s, "%s,%d,%d,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f\n", name, B,
                a->n, m, lo, hi, bytes, a->peak_max, bytes / fb, ratio, dm, dlo, dhi, a->ms / a->n);
        fprintf(md, "| %s | %d | %.2f [%.2f, %.2f] | %.2f (%.2f) | %.1f | %s%.2f%s | ", name, B, m,
                lo, hi, bytes / 1048576.0, a->peak_max / 1048576.0, 100.0 * bytes / fb,
                flag ? "**" : "", pi ? ratio : 1.0, flag ? "**" : "");
        if (isnan(dm))
            fprintf(md, " | %.0f |\n", a->ms / a->n);
        else
            fprintf(md, "%+.2f [%+.2f, %+.2f]%s | %.0f |\n", dm, dlo, dhi,
                    dlo > 0   ? " win"
                    : dhi < 0 ? " loss"
                              : "",
                    a->ms / a->n);
    }
    fclose(s);
    fclose(md);
    free(rows), free(acc), free(seen);
    return 0;
}

/* ---- KL on prose ------------------------------------------------------------------------ */

static int run_kl(const opts *o, engine *e, const tokenizer *tok)
{
    int V = engine_hparams(e)->n_vocab, W = o->kl_window, nb = o->n_kl_budgets;
    int n_pol = N_METHODS * nb, per_win = W, rc = 0;
    size_t cap = (size_t)o->n_texts * per_win;
    double *kl = calloc((size_t)n_pol * cap, sizeof(double));
    double *t1 = calloc((size_t)n_pol * cap, sizeof(double));
    int *cnt = calloc((size_t)n_pol, sizeof(int));
    double *bytes = calloc((size_t)n_pol, sizeof(double)), *peak = calloc(n_pol, sizeof(double));
    float *ref = malloc(sizeof(float) * (size_t)W * V);
    double *k1 = malloc(sizeof(double) * W);
    uint8_t *a1 = malloc(W);
    FILE *f = open_out(o, "kl_windows.csv");
    if (!kl || !t1 || !cnt || !bytes || !peak || !ref || !k1 || !a1 || !f)
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
            if (!g_use[mi])
                continue;
            ems_config cfg;
            make_cfg(mi, B, &cfg);
            lc_stream r;
            /* predictions of positions >= B are scored: before that no method has compressed */
            if (lc_stream_kl(e, &cfg, ids, W, B, ref, k1, a1, &r) != EM_OK) {
                fprintf(stderr, "error: kl %s B=%d\n", k_methods[mi], B);
                rc = 1;
                continue;
            }
            int m = W - 1 - B;
            double sk = 0, sa = 0;
            for (int i = 0; i < m; i++) {
                kl[(size_t)pi * cap + cnt[pi] + i] = k1[i];
                t1[(size_t)pi * cap + cnt[pi] + i] = a1[i];
                sk += k1[i], sa += a1[i];
            }
            cnt[pi] += m;
            bytes[pi] += r.bytes_mean * m;
            peak[pi] = r.bytes_peak > peak[pi] ? r.bytes_peak : peak[pi];
            fprintf(f, "%s,%d,%s,%d,%d,%.6f,%.4f,%.0f,%llu,%.1f\n", o->texts[ti], W, k_methods[mi],
                    B, m, sk / m, sa / m, r.bytes_mean, (unsigned long long)r.bytes_peak,
                    r.seconds);
            fflush(f);
            fprintf(stderr, "  %-12s B=%-4d KL %.4f top1 %.3f (%.1fs)\n", k_methods[mi], B, sk / m,
                    sa / m, r.seconds);
        }
        free(ids);
    }
    fclose(f);
    /* pooled table with paired block-bootstrap CIs of EMS - method (blocks of 64 positions) */
    FILE *s = open_out(o, "kl.csv"), *md = open_out(o, "kl.md");
    if (!s || !md)
        return 1;
    fprintf(s, "method,budget,n_scored,kl,kl_lo,kl_hi,top1,kv_bytes_mean,kv_bytes_peak,"
               "bytes_vs_ems,ems_minus_this_kl,diff_lo,diff_hi\n");
    fprintf(md, "| method | B | KL [95%% CI] | top-1 | KV MiB mean (peak) | bytes / EMS's | EMS - "
                "method, KL [95%% CI] |\n|---|---|---|---|---|---|---|\n");
    double *d = malloc(sizeof(double) * cap);
    for (int pi = 0; pi < n_pol && d; pi++) {
        int mi = pi % N_METHODS, bi = pi / N_METHODS, ei = bi * N_METHODS + EMS_IDX, n = cnt[pi];
        if (!n)
            continue;
        const double *x = kl + (size_t)pi * cap, *xe = kl + (size_t)ei * cap;
        double m = 0, a = 0, lo, hi, dm = NAN, dlo = NAN, dhi = NAN;
        for (int i = 0; i < n; i++)
            m += x[i], a += t1[(size_t)pi * cap + i];
        m /= n, a /= n;
        lc_boot_ci(x, n, 64, N_BOOT, 5, &lo, &hi);
        double ratio = (bytes[pi] / n) / (bytes[ei] / cnt[ei]);
        if (mi != EMS_IDX && cnt[ei] == n) {
            dm = 0;
            for (int i = 0; i < n; i++)
                d[i] = xe[i] - x[i], dm += d[i];
            dm /= n;
            lc_boot_ci(d, n, 64, N_BOOT, 9, &dlo, &dhi);
        }
        fprintf(s, "%s,%d,%d,%.6f,%.6f,%.6f,%.4f,%.0f,%.0f,%.4f,%.6f,%.6f,%.6f\n", k_methods[mi],
                o->kl_budgets[bi], n, m, lo, hi, a, bytes[pi] / n, peak[pi], ratio, dm, dlo, dhi);
        fprintf(md, "| %s | %d | %.4f [%.4f, %.4f] | %.3f | %.2f (%.2f) | %s%.2f%s | ",
                k_methods[mi], o->kl_budgets[bi], m, lo, hi, a, bytes[pi] / n / 1048576.0,
                peak[pi] / 1048576.0, fabs(ratio - 1) > 0.05 ? "**" : "", ratio,
                fabs(ratio - 1) > 0.05 ? "**" : "");
        if (isnan(dm))
            fprintf(md, " |\n");
        else
            fprintf(md, "%+.4f [%+.4f, %+.4f]%s |\n", dm, dlo, dhi,
                    dhi < 0   ? " EMS lower"
                    : dlo > 0 ? " EMS higher"
                              : "");
    }
    fclose(s);
    fclose(md);
    free(d), free(kl), free(t1), free(cnt), free(bytes), free(peak), free(ref), free(k1), free(a1);
    return rc;
}

/* ---- plots ------------------------------------------------------------------------------ */

static void write_plots(const opts *o)
{
    ev_gnuplot(
        o->out,
        "set terminal pngcairo size 900,600\nset datafile separator ','\nset key off\n"
        "set grid\n"
        "if (system('test -s passkey.csv && echo 1') eq '1') {\n"
        "set output 'passkey_acc_bytes.png'\n"
        "set xlabel 'KV cache held, MiB (mean over the answer tokens)'\n"
        "set title 'SmolLM2 passkey, end-of-prompt compression: accuracy vs KV bytes "
        "(bars: 95% bootstrap CI)'\nset ylabel 'retrieval accuracy'\nset yrange [-0.05:1.1]\n"
        "plot 'passkey.csv' every ::1 using ($7/1048576):4:6:5 with yerrorbars pt 7, \\\n"
        "     '' every ::1 using ($7/1048576):4:(sprintf('%s B%d', strcol(1), $2)) "
        "with labels rotate by 35 left offset 0.5,0.3 font ',8'\n}\n"
        "if (system('test -s kl.csv && echo 1') eq '1') {\n"
        "set output 'kl_bytes.png'\nset autoscale y\nset logscale y\n"
        "set xlabel 'KV cache held, MiB (mean over the streamed tokens)'\n"
        "set title 'SmolLM2 decode-time KL(full || compressed) on prose vs KV bytes "
        "(bars: 95% block-bootstrap CI)'\nset ylabel 'mean KL (nats)'\n"
        "plot 'kl.csv' every ::1 using ($8/1048576):4:6:5 with yerrorbars pt 7, \\\n"
        "     '' every ::1 using ($8/1048576):4:(sprintf('%s B%d', strcol(1), $2)) "
        "with labels rotate by 35 left offset 0.5,0.3 font ',8'\n}\n");
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: longctx [--model M] [--out DIR] [--quick] [--task passkey|kl|all]\n"
            "  [--sizes 1024,2048,4096] [--depths 10,50,90] [--keys 2] [--first-key 0] [--budgets "
            "128,256]\n"
            "  [--text FILE]... [--kl-window 1024] [--kl-budgets 128,256] [--threads 1]\n"
            "  [--max-new 12] [--summarize] [--methods ems,snapkv,...] [--ems-param KEY=VALUE]...\n"
            "  [--ems-variant LABEL:KEY=VALUE[,KEY=VALUE...]]... (extra EMS rows \"ems-LABEL\")\n"
            "  [--dump-cache DIR] (prompt cache of each size's first case, for "
            "bench:ems_step_bench)\n");
}

static int parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.model = model_find_default(),
                .out = "eval/results",
                .n_sizes = 3,
                .sizes = {1024, 2048, 4096},
                .n_depths = 3,
                .depths = {0.1, 0.5, 0.9},
                .keys = 2,
                .n_budgets = 2,
                .budgets = {128, 256},
                .threads = 1,
                .max_new = 12,
                .kl_window = 1024,
                .n_kl_budgets = 2,
                .kl_budgets = {128, 256},
                .do_passkey = 1,
                .do_kl = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int dep[MAXV];
        if (!strcmp(a, "--quick")) {
            o->quick = 1, o->n_sizes = 1, o->sizes[0] = 320, o->n_depths = 1, o->depths[0] = 0.5;
            o->keys = 1, o->n_budgets = 1, o->budgets[0] = 64;
            o->n_kl_budgets = 1, o->kl_budgets[0] = 64, o->max_new = 12;
            o->kl_window = 128;
            for (int k = 0; k <= INT4_IDX; k++)
                g_use[k] = k == 0 || k == 1 || k == EMS_IDX;
            continue;
        }
        if (!strcmp(a, "--summarize")) { /* tables again from passkey_cases.csv, no model run */
            o->summarize = 1;
            continue;
        }
        if (!v) {
            usage();
            return 1;
        }
        i++;
        if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "--out"))
            o->out = v;
        else if (!strcmp(a, "--task"))
            o->do_passkey = strcmp(v, "kl") != 0, o->do_kl = strcmp(v, "passkey") != 0;
        else if (!strcmp(a, "--sizes"))
            o->n_sizes = parse_ints(v, o->sizes);
        else if (!strcmp(a, "--depths")) {
            o->n_depths = parse_ints(v, dep);
            for (int k = 0; k < o->n_depths; k++)
                o->depths[k] = dep[k] / 100.0;
        } else if (!strcmp(a, "--keys"))
            o->keys = atoi(v);
        else if (!strcmp(a, "--first-key")) /* index of the first key per cell */
            o->first_key = atoi(v);
        else if (!strcmp(a, "--methods")) {
            if (set_methods(v))
                return 1;
        } else if (!strcmp(a, "--ems-param") && g_n_ems_kv < 8)
            g_ems_kv[g_n_ems_kv++] = v;
        else if (!strcmp(a, "--dump-cache"))
            o->dump_dir = v;
        else if (!strcmp(a, "--ems-variant")) {
            if (add_variant(v))
                return 1;
        } else if (!strcmp(a, "--budgets"))
            o->n_budgets = parse_ints(v, o->budgets);
        else if (!strcmp(a, "--kl-budgets"))
            o->n_kl_budgets = parse_ints(v, o->kl_budgets);
        else if (!strcmp(a, "--text") && o->n_texts < MAXV)
            o->texts[o->n_texts++] = v;
        else if (!strcmp(a, "--kl-window"))
            o->kl_window = atoi(v);
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--max-new"))
            o->max_new = atoi(v);
        else {
            usage();
            return 1;
        }
    }
    if (!o->n_texts)
        o->texts[o->n_texts++] = "/usr/share/common-licenses/GPL-3";
    int bad = !o->model || o->keys < 1 || o->keys > 16 || o->first_key < 0 || o->threads < 1 ||
              o->max_new < 1 || o->max_new > LC_MAX_ANSWER || o->kl_window < 64;
    for (int k = 0; k < o->n_budgets; k++)
        bad |= o->budgets[k] < 8;
    for (int k = 0; k < o->n_kl_budgets; k++)
        bad |= o->kl_budgets[k] < 8 || o->kl_budgets[k] >= o->kl_window - 16;
    if (bad)
        fprintf(stderr, "error: %s\n", o->model ? "bad option value" : "no model (--model)");
    return bad;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse_args(argc, argv, &o))
        return 2;
    char err[512];
    model *m = NULL;
    tokenizer *tok = NULL;
    engine *e = NULL;
    if (model_load(o.model, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    shard_desc sd = shard_single(m->hp.n_kv_head);
    engine_opts eo = {.n_threads = o.threads, .max_batch_tokens = 512};
    if (engine_create(m, &sd, &eo, &e) != EM_OK) {
        fprintf(stderr, "error: engine\n");
        return 1;
    }
    double t0 = em_now_s();
    int rc = 0;
    if (o.do_passkey && !o.summarize)
        rc |= run_passkey(&o, e, tok);
    if (o.do_passkey)
        rc |= summarize_passkey(&o);
    double t1 = em_now_s();
    if (o.do_kl && !o.summarize)
        rc |= run_kl(&o, e, tok);
    write_plots(&o);
    fprintf(stderr, "done: passkey %.0fs, kl %.0fs\n", t1 - t0, em_now_s() - t1);
    engine_free(e);
    tok_free(tok);
    model_free(m);
    return rc;
}
