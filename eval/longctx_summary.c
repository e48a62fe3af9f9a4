/* //eval:longctx: tables from a task's cases CSV (so partial runs can be summarised) and the
 * needle heat maps (see longctx_cli.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/rouge.h"

#define MAX_CASES 1024

typedef struct row {
    char method[24];
    int budget, tokens, key, b_used;
    double depth, score, exact, bytes, peak, ms;
    int cpu;      /* ms is thread CPU time (else wall time) */
    char cid[48]; /* tokens/depth/key */
    char answer[1024];
    double agree, r1, r2; /* annotate(): vs the full row's answer; vs the reference */
} row;

typedef struct acc {
    double s[MAX_CASES], x[MAX_CASES], g[MAX_CASES], r1[MAX_CASES], r2[MAX_CASES];
    int n, n_wall; /* n_wall: rows whose ms is wall time (files without compress_cpu_ms) */
    double bytes, peak_max, ms, b_used;
} acc;

/* 1 when method/budget is one of the policies of this run (*index: its slot), else 0. */
static int policy_index(const char *method, int budget, const lc_opts *o, int *index)
{
    *index = 0;
    if (!strcmp(method, "full"))
        return 1;
    for (int b = 0; b < o->n_budgets; b++) {
        for (int mi = 0; mi < N_METHODS; mi++) {
            if (o->budgets[b] == budget && !strcmp(method, lc_methods[mi])) {
                *index = 1 + b * N_METHODS + mi;
                return 1;
            }
        }
    }
    return 0;
}

/* The comma-separated fields of s (empty ones read as NaN) into v; returns their number. */
static int numeric_fields(const char *s, double *v, int cap)
{
    int n = 0;
    while (*s == ',' && n < cap) {
        char *e;
        v[n] = strtod(s + 1, &e);
        if (e == s + 1)
            v[n] = NAN;
        n++;
        s = e + strcspn(e, ",\r\n");
    }
    return n;
}

/* The quoted CSV field at p ('"' first; "" = '"', and with newlines the two characters \n = a
 * line end) into out[cap]; returns the byte after its closing quote, NULL when p is no quoted
 * field. */
static const char *quoted_field(const char *p, int newlines, char *out, size_t cap)
{
    size_t k = 0;
    if (*p != '"')
        return NULL;
    for (p++; *p; p++) {
        char c = *p;
        if (c == '"' && p[1] != '"')
            break;
        if (c == '"')
            p++;
        else if (newlines && c == '\\' && p[1] == 'n')
            c = '\n', p++;
        if (k + 1 < cap)
            out[k++] = c;
    }
    out[k] = 0;
    return *p == '"' ? p + 1 : NULL;
}

/* Rows of <task>_cases.csv; *n rows. Answers (quoted text) are kept in row.answer. After the answer
 * come 4 fields (bytes mean and peak, entries, compress_ms) and by version: nothing more
 * (budget_used = budget, exact = score), key_kept,key_merged,compress_cpu_ms (7), budget_used,
 * exact (6) or all of them (9). The thread CPU time of the step is preferred when present. */
static row *read_cases(const lc_opts *o, const char *task, int *n)
{
    char p[256], line[4096];
    snprintf(p, sizeof p, "%s_cases.csv", task);
    FILE *f = lc_open_out(o, p, "r");
    *n = 0;
    if (!f)
        return NULL;
    int cap = 16384;
    row *r = calloc(cap, sizeof *r);
    while (r && fgets(line, sizeof line, f) && *n < cap) {
        row x = {0};
        double pct, ent;
        int ptok;
        char *q = strrchr(line, '"'); /* after the answer */
        if (sscanf(line, "%d,%d,%lf,%d,%23[^,],%d,%lf,%lf,", &x.tokens, &ptok, &x.depth, &x.key,
                   x.method, &x.budget, &pct, &x.score) != 8 ||
            !q)
            continue;
        double v[9];
        int got = numeric_fields(q + 1, v, 9);
        if (got < 4 || got == 5 || got == 8)
            continue;
        x.bytes = v[0], x.peak = v[1], ent = v[2], x.ms = v[3];
        x.b_used = x.budget, x.exact = x.score;
        if (got == 6 || got == 9)
            x.b_used = (int)v[4], x.exact = v[5];
        if ((got == 7 || got == 9) && !isnan(v[got - 1]))
            x.ms = v[got - 1], x.cpu = 1;
        (void)ent;
        snprintf(x.cid, sizeof x.cid, "%d/%.2f/%d", x.tokens, x.depth, x.key);
        const char *a = strchr(line, '"');
        if (!a || !quoted_field(a, 1, x.answer, sizeof x.answer))
            continue;
        r[(*n)++] = x;
    }
    fclose(f);
    return r;
}

/* References of <task>_docs.csv (key,...,"title","reference" per line): refs[key] (strdup'ed;
 * at most cap keys). EM_EIO when the file cannot be opened. */
static em_status read_refs(const lc_opts *o, const char *task, char **refs, int cap)
{
    char p[256], line[8192], title[256], ref[4096];
    snprintf(p, sizeof p, "%s_docs.csv", task);
    FILE *f = lc_open_out(o, p, "r");
    if (!f)
        return EM_EIO;
    int key;
    while (fgets(line, sizeof line, f)) {
        const char *q = strchr(line, '"');
        const char *e = q ? quoted_field(q, 0, title, sizeof title) : NULL;
        if (sscanf(line, "%d,", &key) != 1 || key < 0 || key >= cap || !e || *e != ',' ||
            !quoted_field(e + 1, 0, ref, sizeof ref))
            continue;
        free(refs[key]);
        refs[key] = strdup(ref); /* NULL (no memory): that key's ROUGE-1/2 stay NaN */
    }
    fclose(f);
    return EM_OK;
}

/* Per row: ROUGE-L F1 against the answer of its case's full row (agree; NaN without one) and,
 * when refs, ROUGE-1 / ROUGE-2 against the reference of its key (NaN without one). */
static void annotate(row *rows, int nr, char *const *refs, int n_refs)
{
    for (int i = 0; i < nr;) {
        int j = i, full = -1;
        while (j < nr && !strcmp(rows[j].cid, rows[i].cid))
            full = !strcmp(rows[j].method, "full") ? j : full, j++;
        for (int k = i; k < j; k++) {
            rouge_f r;
            row *x = &rows[k];
            x->agree = x->r1 = x->r2 = NAN;
            if (full >= 0 && rouge_score(x->answer, rows[full].answer, &r) == EM_OK)
                x->agree = r.rl;
            if (refs && x->key >= 0 && x->key < n_refs && refs[x->key] &&
                rouge_score(x->answer, refs[x->key], &r) == EM_OK)
                x->r1 = r.r1, x->r2 = r.r2;
        }
        i = j;
    }
}

static int wanted_rows(const lc_opts *o)
{
    int want = 1;
    for (int b = 0; b < o->n_budgets; b++) {
        for (int mi = 0; mi < N_METHODS; mi++)
            want += lc_use[mi];
    }
    return want;
}

/* Calls fn on every row of every complete case; returns the number of complete cases. */
static int for_complete(const lc_opts *o, const row *rows, int nr, int *n_cases,
                        void (*fn)(const row *, int pi, void *), void *ctx)
{
    int n_used = 0, want = wanted_rows(o);
    *n_cases = 0;
    for (int i = 0; i < nr;) { /* one case = consecutive rows with the same id */
        int j = i;
        while (j < nr && !strcmp(rows[j].cid, rows[i].cid))
            j++;
        if (j - i == want) {
            for (int k = i; k < j; k++) {
                int pi;
                if (policy_index(rows[k].method, rows[k].budget, o, &pi))
                    fn(&rows[k], pi, ctx);
            }
            n_used++;
        }
        (*n_cases)++;
        i = j;
    }
    return n_used;
}

static void add_row(const row *r, int pi, void *ctx)
{
    acc *a = (acc *)ctx + pi;
    if (a->n >= MAX_CASES)
        return;
    a->s[a->n] = r->score, a->x[a->n] = r->exact, a->g[a->n] = r->agree;
    a->r1[a->n] = r->r1, a->r2[a->n] = r->r2, a->n++;
    a->bytes += r->bytes, a->ms += r->ms, a->b_used += r->b_used, a->n_wall += !r->cpu;
    a->peak_max = r->peak > a->peak_max ? r->peak : a->peak_max;
}

static double mean(const double *x, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m += x[i];
    return n ? m / n : NAN;
}

/* paired reference (EMS unless --ref) - this over cases of the values x_ref of ems and x of a
 * (a->n of each; NaN in either: no interval): mean and CI (NaN when not comparable) */
static void paired_of(const acc *ems, const acc *a, const double *x_ref, const double *x,
                      double *dm, double *lo, double *hi)
{
    static double d[MAX_CASES];
    *dm = *lo = *hi = NAN;
    if (ems == a || ems->n != a->n || !a->n)
        return;
    for (int i = 0; i < a->n; i++) {
        d[i] = x_ref[i] - x[i];
        if (isnan(d[i]))
            return;
    }
    *dm = mean(d, a->n);
    lc_boot_ci(d, a->n, 1, N_BOOT, 11, lo, hi);
}

/* the same on the primary score */
static void paired(const acc *ems, const acc *a, double *dm, double *lo, double *hi)
{
    paired_of(ems, a, ems->s, a->s, dm, lo, hi);
}

/* Mean of the non-NaN values of x[0, n) (NaN when none). */
static double mean_valid(const double *x, int n, int *n_valid)
{
    double m = 0;
    *n_valid = 0;
    for (int i = 0; i < n; i++) {
        if (!isnan(x[i]))
            m += x[i], (*n_valid)++;
    }
    return *n_valid ? m / *n_valid : NAN;
}

/* A paired difference with its interval ("win" / "loss" when it excludes 0); nothing when NaN. */
static void md_diff(FILE *md, double dm, double lo, double hi)
{
    if (!isnan(dm))
        fprintf(md, "%+.2f [%+.2f, %+.2f]%s", dm, lo, hi, lo > 0 ? " win" : hi < 0 ? " loss" : "");
}

static void md_header(FILE *md, int flags, const char *rn, int n_wall)
{
    int ex = flags & LC_SUM_EXACT, ro = flags & LC_SUM_ROUGE, ag = flags & LC_SUM_AGREE;
    fprintf(md,
            "| method | B | B used (mean) | %s [95%% CI] |%s%s%s KV MiB mean (peak) | %% of full "
            "| bytes / %s's | %s - method [95%% CI] | prefill-end compression, %s ms |",
            ex   ? "token F1"
            : ro ? "ROUGE-L F1 vs the reference"
                 : "accuracy",
            ex ? " exact match [95% CI] |" : "", ro ? " ROUGE-1 vs ref. | ROUGE-2 vs ref. |" : "",
            ag ? " ROUGE-L vs the full cache's answer [95% CI] |" : "", rn, rn,
            n_wall ? "wall" : "CPU");
    if (ag)
        fprintf(md, " %s - method, ROUGE-L vs the full cache's answer [95%% CI] |", rn);
    fprintf(md, "\n|---|---|---|---|%s%s%s---|---|---|---|---|\n", ex ? "---|" : "",
            ro ? "---|---|" : "", ag ? "---|---|" : "");
}

static void write_tables(const lc_opts *o, const acc *accs, int n_pol, int flags, FILE *s, FILE *md)
{
    double fb = accs[0].n ? accs[0].bytes / accs[0].n : NAN;
    int n_wall = 0, nv;
    for (int pi = 0; pi < n_pol; pi++)
        n_wall += accs[pi].n_wall;
    fprintf(s,
            "method,budget,n_cases,accuracy,ci_lo,ci_hi,kv_bytes_mean,kv_bytes_peak,"
            "frac_of_full,bytes_vs_ems,ems_minus_this,diff_lo,diff_hi,compress_ms,"
            "budget_used_mean,exact,exact_lo,exact_hi%s%s\n",
            flags & LC_SUM_ROUGE ? ",rouge1,rouge2" : "",
            flags & LC_SUM_AGREE
                ? ",agree_full,agree_lo,agree_hi,agree_ems_minus_this,agree_diff_lo,agree_diff_hi"
                : "");
    const char *rn = lc_ref_idx == EMS_IDX ? "EMS"
                     : lc_ref_idx < 0      ? "full"
                                           : lc_methods[lc_ref_idx];
    md_header(md, flags, rn, n_wall);
    for (int pi = 0; pi < n_pol; pi++) {
        const acc *a = &accs[pi];
        int mi = pi == 0 ? -1 : (pi - 1) % N_METHODS, bi = pi == 0 ? 0 : (pi - 1) / N_METHODS;
        if (!a->n)
            continue;
        int B = pi == 0 ? 0 : o->budgets[bi];
        const acc *ea = lc_ref_idx < 0 ? &accs[0] : &accs[1 + bi * N_METHODS + lc_ref_idx];
        double m = mean(a->s, a->n), xm = mean(a->x, a->n), lo, hi, xlo, xhi, dm, dlo, dhi;
        lc_boot_ci(a->s, a->n, 1, N_BOOT, 7, &lo, &hi);
        lc_boot_ci(a->x, a->n, 1, N_BOOT, 13, &xlo, &xhi);
        double bytes = a->bytes / a->n, ratio = pi && ea->n ? bytes / (ea->bytes / ea->n) : NAN;
        if (pi)
            paired(ea, a, &dm, &dlo, &dhi);
        else
            dm = dlo = dhi = NAN;
        const char *name = mi < 0 ? "full" : lc_methods[mi];
        int flag = pi && fabs(ratio - 1) > 0.05;
        fprintf(s,
                "%s,%d,%d,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f,%.1f,%.4f,"
                "%.4f,%.4f",
                name, B, a->n, m, lo, hi, bytes, a->peak_max, bytes / fb, ratio, dm, dlo, dhi,
                a->ms / a->n, a->b_used / a->n, xm, xlo, xhi);
        fprintf(md, "| %s | %d | %.0f | %.2f [%.2f, %.2f] | ", name, B, a->b_used / a->n, m, lo,
                hi);
        if (flags & LC_SUM_EXACT)
            fprintf(md, "%.2f [%.2f, %.2f] | ", xm, xlo, xhi);
        if (flags & LC_SUM_ROUGE) {
            double r1 = mean_valid(a->r1, a->n, &nv), r2 = mean_valid(a->r2, a->n, &nv);
            fprintf(s, ",%.4f,%.4f", r1, r2);
            fprintf(md, "%.2f | %.2f | ", r1, r2);
        }
        if (flags & LC_SUM_AGREE) { /* NaN only without a full row: not a complete case */
            double g = mean_valid(a->g, a->n, &nv), glo = NAN, ghi = NAN;
            if (nv == a->n)
                lc_boot_ci(a->g, a->n, 1, N_BOOT, 17, &glo, &ghi);
            fprintf(s, ",%.4f,%.4f,%.4f", g, glo, ghi);
            fprintf(md, "%.2f [%.2f, %.2f] | ", g, glo, ghi);
        }
        fprintf(md, "%.2f (%.2f) | %.1f | %s%.2f%s | ", bytes / 1048576.0, a->peak_max / 1048576.0,
                100.0 * bytes / fb, flag ? "**" : "", pi ? ratio : 1.0, flag ? "**" : "");
        md_diff(md, dm, dlo, dhi);
        fprintf(md, " | %.0f |", a->ms / a->n);
        if (flags & LC_SUM_AGREE) {
            if (pi)
                paired_of(ea, a, ea->g, a->g, &dm, &dlo, &dhi);
            fprintf(s, ",%.4f,%.4f,%.4f", dm, dlo, dhi);
            fputc(' ', md);
            md_diff(md, dm, dlo, dhi);
            fprintf(md, " |");
        }
        fputc('\n', s);
        fputc('\n', md);
    }
}

/* What the score columns are (tasks with answers compared to the full cache's / references). */
static void md_legend(FILE *md, int flags)
{
    if (flags & LC_SUM_ROUGE)
        fprintf(md, "Score: **ROUGE-L F1 against the reference summary** (primary; the paired "
                    "column compares it), ROUGE-1 / ROUGE-2 F1 against the same reference "
                    "(lower-cased alphanumeric tokens, no stemming).\n");
    if (flags & LC_SUM_AGREE)
        fprintf(md, "**ROUGE-L vs the full cache's answer**: ROUGE-L F1 of the row's answer "
                    "against the answer the full cache gave to the same case (1 = the same words "
                    "in the same order; the full row is 1 by construction). It measures how much "
                    "compression changes the answer, not whether the answer is right.\n");
    if (flags & (LC_SUM_ROUGE | LC_SUM_AGREE))
        fputc('\n', md);
}

/* The floors of the two ROUGE-L columns: the full rows' answers against the references of the
 * other keys (mean over ordered pairs of distinct keys; and against their own), and against the
 * full rows' answers to the other cases. */
static void md_floor(FILE *md, const row *rows, int nr, char *const *refs, int n_refs, int agree)
{
    double own = 0, other = 0, cross = 0;
    int n_own = 0, n_other = 0, n_cross = 0;
    for (int i = 0; i < nr; i++) {
        if (strcmp(rows[i].method, "full"))
            continue;
        for (int j = 0; agree && j < nr; j++) {
            rouge_f r;
            if (j != i && !strcmp(rows[j].method, "full") && strcmp(rows[j].cid, rows[i].cid) &&
                rouge_score(rows[i].answer, rows[j].answer, &r) == EM_OK)
                cross += r.rl, n_cross++;
        }
        if (!refs || rows[i].key < 0 || rows[i].key >= n_refs || !refs[rows[i].key])
            continue;
        for (int k = 0; k < n_refs; k++) {
            rouge_f r;
            if (!refs[k] || rouge_score(rows[i].answer, refs[k], &r) != EM_OK)
                continue;
            if (k == rows[i].key)
                own += r.rl, n_own++;
            else
                other += r.rl, n_other++;
        }
    }
    if (n_own && n_other)
        fprintf(md,
                "Floor: the full cache's answers score ROUGE-L %.3f against their own references "
                "and %.3f against the other documents' references (mean over %d pairs): only the "
                "difference is specific to the document.\n",
                own / n_own, other / n_other, n_other);
    if (n_cross)
        fprintf(md,
                "The full cache's answers to two different cases agree at ROUGE-L %.3f (mean "
                "over %d pairs): about the floor of the agreement column.\n",
                cross / n_cross, n_cross);
    fputc('\n', md);
}

int lc_summarize(const lc_opts *o, const char *task, int flags)
{
    int nr = 0, n_pol = 1 + N_METHODS * o->n_budgets, n_cases = 0;
    row *rows = read_cases(o, task, &nr);
    acc *accs = calloc((size_t)n_pol, sizeof *accs);
    char **refs = flags & LC_SUM_ROUGE ? calloc(MAX_CASES, sizeof *refs) : NULL;
    if (!rows || !accs || nr == 0 || ((flags & LC_SUM_ROUGE) && !refs)) {
        fprintf(stderr, "error: no %s cases in %s\n", task, o->out);
        free(rows), free(accs), free(refs);
        return 1;
    }
    if (refs && read_refs(o, task, refs, MAX_CASES) != EM_OK) {
        free(rows), free(accs), free(refs);
        return 1;
    }
    annotate(rows, nr, refs, refs ? MAX_CASES : 0);
    int n_used = for_complete(o, rows, nr, &n_cases, add_row, accs);
    char name[64];
    snprintf(name, sizeof name, "%s.csv", task);
    FILE *s = n_used ? lc_open_out(o, name, "w") : NULL;
    snprintf(name, sizeof name, "%s.md", task);
    FILE *md = s ? lc_open_out(o, name, "w") : NULL;
    if (md) {
        const char *rn = lc_ref_idx == EMS_IDX ? "EMS"
                         : lc_ref_idx < 0      ? "the full cache"
                                               : lc_methods[lc_ref_idx];
        fprintf(md, "%d complete cases (of %d in %s_cases.csv). Budget protocol: %s\n\n", n_used,
                n_cases, task,
                o->match_bytes
                    ? "**matched bytes** (`--match-bytes`: every method but EMS re-budgeted per "
                      "case towards EMS's mean KV bytes at B, target 2 %; `B used` is its mean "
                      "budget; bold = still more than 5 % away)"
                    : "**same budget B** (entries per layer and KV head)");
        if (lc_ref_idx != EMS_IDX || !o->match_bytes)
            fprintf(md,
                    "Reference row: %s (bold bytes = more than 5 %% away from its bytes; "
                    "\"win\" = the reference is better, \"loss\" = worse).\n\n",
                    rn);
        md_legend(md, flags);
        if (flags & (LC_SUM_ROUGE | LC_SUM_AGREE))
            md_floor(md, rows, nr, refs, refs ? MAX_CASES : 0, flags & LC_SUM_AGREE);
        write_tables(o, accs, n_pol, flags, s, md);
    } else
        fprintf(stderr, "error: no complete %s case\n", task);
    if (s)
        fclose(s);
    if (md)
        fclose(md);
    for (int k = 0; refs && k < MAX_CASES; k++)
        free(refs[k]);
    free(rows), free(accs), free(refs);
    return !md;
}

/* ---- needle grid and heat maps ----------------------------------------------------------- */

typedef struct grid {
    const lc_opts *o;
    double *sum; /* [n_pol][n_sizes][n_depths] */
    int *cnt;
} grid;

/* 1 when x is in v[0..n) (*index: its first slot), else 0. */
static int index_of(const int *v, int n, int x, int *index)
{
    *index = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] == x) {
            *index = i;
            return 1;
        }
    }
    return 0;
}

static void add_cell(const row *r, int pi, void *ctx)
{
    grid *g = ctx;
    int si, di = -1;
    if (!index_of(g->o->sizes, g->o->n_sizes, r->tokens, &si))
        return;
    for (int k = 0; k < g->o->n_depths; k++)
        di = fabs(g->o->depths[k] - r->depth) < 0.005 ? k : di;
    if (di < 0)
        return;
    size_t at = ((size_t)pi * g->o->n_sizes + si) * g->o->n_depths + di;
    g->sum[at] += r->score, g->cnt[at]++;
}

static void heat_script(FILE *gp, const char *name, int B)
{
    char label[64];
    snprintf(label, sizeof label, B ? "%s, B = %d" : "%s cache", name, B);
    fprintf(gp, "set output 'needle_heat_%s_B%d.png'\n", name, B);
    fprintf(gp,
            "set title \"needle retrieval, %s (SmolLM2, end-of-prompt compression)\"\n"
            "plot \"< grep '^%s,%d,' needle_grid.csv\" using 5:6:(0.5):(0.5):8 with boxxyerror "
            "fs solid 1.0 lc palette, '' using 5:6:(sprintf('%%.2f (%%d)', $8, int($7))) with "
            "labels font ',10'\n",
            label, name, B);
}

int lc_needle_grid(const lc_opts *o)
{
    int nr = 0, n_pol = 1 + N_METHODS * o->n_budgets, n_cases = 0;
    size_t cells = (size_t)n_pol * o->n_sizes * o->n_depths;
    row *rows = read_cases(o, "needle", &nr);
    grid g = {o, calloc(cells, sizeof(double)), calloc(cells, sizeof(int))};
    FILE *csv = NULL, *md = NULL, *gp = NULL;
    int rc = 1;
    if (!rows || !g.sum || !g.cnt || !for_complete(o, rows, nr, &n_cases, add_cell, &g))
        goto done;
    csv = lc_open_out(o, "needle_grid.csv", "w");
    md = lc_open_out(o, "needle_grid.md", "w");
    gp = lc_open_out(o, "needle.gp", "w");
    if (!csv || !md || !gp)
        goto done;
    fprintf(csv, "method,budget,tokens,depth_pct,size_idx,depth_idx,n,accuracy\n");
    fprintf(md, "Needle accuracy per context size (columns) and depth (rows), per method and "
                "budget; cells: mean over needles.\n\n");
    fprintf(gp, "set terminal pngcairo size 640,480 noenhanced\nset datafile separator ','\n"
                "set key off\nset cbrange [0:1]\nset palette defined (0 '#c0392b', 0.5 "
                "'#f1c40f', 1 '#27ae60')\nset xlabel 'context (tokens)'\nset ylabel 'needle "
                "depth (%% of the document)'\nset xtics (");
    for (int si = 0; si < o->n_sizes; si++)
        fprintf(gp, "%s\"%d\" %d", si ? ", " : "", o->sizes[si], si);
    fprintf(gp, ")\nset ytics (");
    for (int di = 0; di < o->n_depths; di++)
        fprintf(gp, "%s\"%.0f\" %d", di ? ", " : "", 100 * o->depths[di], di);
    fprintf(gp, ")\nset xrange [-0.5:%g]\nset yrange [%g:-0.5]\n", o->n_sizes - 0.5,
            o->n_depths - 0.5);
    for (int pi = 0; pi < n_pol; pi++) {
        int mi = pi == 0 ? -1 : (pi - 1) % N_METHODS, B = pi ? o->budgets[(pi - 1) / N_METHODS] : 0;
        const char *name = mi < 0 ? "full" : lc_methods[mi];
        if (mi >= 0 && !lc_use[mi])
            continue;
        fprintf(md, "**%s", name);
        if (B)
            fprintf(md, ", B = %d", B);
        fprintf(md, "**\n\n| depth |");
        for (int si = 0; si < o->n_sizes; si++)
            fprintf(md, " %d |", o->sizes[si]);
        fprintf(md, "\n|---|");
        for (int si = 0; si < o->n_sizes; si++)
            fprintf(md, "---|");
        for (int di = 0; di < o->n_depths; di++) {
            fprintf(md, "\n| %.0f %% |", 100 * o->depths[di]);
            for (int si = 0; si < o->n_sizes; si++) {
                size_t at = ((size_t)pi * o->n_sizes + si) * o->n_depths + di;
                if (!g.cnt[at]) {
                    fprintf(md, " - |");
                    continue;
                }
                double a = g.sum[at] / g.cnt[at];
                fprintf(md, " %.2f |", a);
                fprintf(csv, "%s,%d,%d,%.0f,%d,%d,%d,%.4f\n", name, B, o->sizes[si],
                        100 * o->depths[di], si, di, g.cnt[at], a);
            }
        }
        fprintf(md, "\n\n");
        heat_script(gp, name, B);
    }
    rc = 0;
done:
    if (csv)
        fclose(csv);
    if (md)
        fclose(md);
    if (gp)
        fclose(gp);
    if (!rc) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot needle.gp", o->out);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: gnuplot failed (needle.gp kept in %s)\n", o->out);
    }
    free(rows), free(g.sum), free(g.cnt);
    return rc;
}
