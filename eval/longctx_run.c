/* //eval:longctx: the method table and the end-of-prompt case runner, with the matched-bytes
 * protocol (see longctx_cli.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/budget_match.h"
#include "eval/cache_io.h"
#include "eval/eval.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"

const char *lc_methods[MAXM] = {"streamingllm", "h2o",  "snapkv", "pyramidkv", "tova",
                                "simlayerkv",   "roco", "ems",    "ems+int4"};
int lc_n_methods = INT4_IDX + 1;
int lc_use[MAXM] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

/* --ems-param settings added to every EMS row (ablations; none by default) */
static const char *g_ems_kv[10];
static int g_n_ems_kv;

/* --variant / --ems-variant rows: name "METHOD-LABEL", base method (an index <= INT4_IDX) and
 * parameters */
#define MAX_VAR_KV 8
static char g_var_name[MAXM][32];
static const char *g_var_kv[MAXM][MAX_VAR_KV];
static int g_var_n[MAXM], g_var_base[MAXM];

int lc_ref_idx = EMS_IDX;

int lc_add_ems_param(const char *kv)
{
    if (g_n_ems_kv >= 8)
        return 1;
    g_ems_kv[g_n_ems_kv++] = kv;
    return 0;
}

int lc_variant_base(int mi)
{
    return mi > INT4_IDX ? g_var_base[mi] : mi;
}

int lc_make_cfg(int mi, int B, ems_config *cfg)
{
    const char *kv[20] = {0};
    int n = 0, base = mi < 0 ? -1 : lc_variant_base(mi);
    if (base >= EMS_IDX) {
        for (int i = 0; i < g_n_ems_kv; i++)
            kv[n++] = g_ems_kv[i];
    }
    if (base == INT4_IDX)
        kv[n++] = "quant=int4";
    for (int i = 0; mi > INT4_IDX && i < g_var_n[mi]; i++)
        kv[n++] = g_var_kv[mi][i];
    ev_policy p;
    int bad = mi < 0 ? ev_policy_make(&p, "full", "full", 0, NULL)
                     : ev_policy_make(&p, lc_methods[mi],
                                      base >= EMS_IDX ? "ems" : lc_methods[base], B, kv);
    *cfg = p.cfg;
    return bad;
}

int lc_add_method_variant(const char *arg)
{
    int mi = lc_n_methods, base = -1;
    const char *c1 = strchr(arg, ':');
    for (int k = 0; c1 && k <= INT4_IDX; k++) {
        if ((size_t)(c1 - arg) == strlen(lc_methods[k]) && !strncmp(arg, lc_methods[k], c1 - arg))
            base = k;
    }
    const char *colon = c1 ? strchr(c1 + 1, ':') : NULL;
    if (base < 0 || !colon || colon == c1 + 1 || colon - c1 - 1 > 19 || !colon[1] || mi >= MAXM) {
        fprintf(stderr,
                "error: --variant %s: wants METHOD:LABEL:K=V[,K=V...] (METHOD one of the "
                "methods, label <= 19 chars, at most %d variants)\n",
                arg, MAXM - INT4_IDX - 1);
        return 1;
    }
    char *kvs = strdup(colon + 1); /* stays allocated: the row's parameters point into it */
    if (!kvs) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    snprintf(g_var_name[mi], sizeof g_var_name[mi], "%s-%.*s", lc_methods[base],
             (int)(colon - c1 - 1), c1 + 1);
    for (int k = 0; k < mi; k++) {
        if (!strcmp(lc_methods[k], g_var_name[mi])) {
            fprintf(stderr, "error: --variant %s: row %s exists already\n", arg, g_var_name[mi]);
            free(kvs);
            return 1;
        }
    }
    lc_methods[mi] = g_var_name[mi];
    g_var_base[mi] = base;
    g_var_n[mi] = 0;
    char *save = NULL;
    for (char *t = strtok_r(kvs, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (g_var_n[mi] == MAX_VAR_KV) {
            fprintf(stderr, "error: --variant %s: more than %d parameters\n", arg, MAX_VAR_KV);
            return 1;
        }
        g_var_kv[mi][g_var_n[mi]++] = t;
    }
    lc_use[mi] = 1;
    lc_n_methods++;
    ems_config c;
    if (lc_make_cfg(mi, 128, &c)) {
        fprintf(stderr, "error: --variant %s: invalid parameters\n", arg);
        return 1;
    }
    return 0;
}

int lc_add_variant(const char *arg)
{
    char buf[512];
    if (snprintf(buf, sizeof buf, "ems:%s", arg) >= (int)sizeof buf || !strchr(arg, ':')) {
        fprintf(stderr, "error: --ems-variant wants LABEL:K=V[,K=V...]\n");
        return 1;
    }
    int rc = lc_add_method_variant(buf);
    if (rc)
        fprintf(stderr, "error: --ems-variant %s refused\n", arg);
    return rc;
}

int lc_set_ref(const char *name)
{
    if (!strcmp(name, "full")) { /* the full cache's row (end-of-prompt tasks only) */
        lc_ref_idx = -1;
        return 0;
    }
    for (int k = 0; k < lc_n_methods; k++) {
        if (!strcmp(lc_methods[k], name)) {
            lc_ref_idx = k;
            lc_use[k] = 1;
            return 0;
        }
    }
    fprintf(stderr, "error: --ref %s: no such row (a method, or a variant given before it)\n",
            name);
    return 1;
}

int lc_set_methods(const char *list)
{
    for (int k = 0; k <= INT4_IDX; k++)
        lc_use[k] = k == EMS_IDX;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int found = 0;
        for (int k = 0; k <= INT4_IDX; k++) {
            if (!strcmp(t, lc_methods[k]))
                lc_use[k] = 1, found = 1;
        }
        if (!found) {
            fprintf(stderr, "error: unknown method %s\n", t);
            return 1;
        }
    }
    return 0;
}

int lc_ring_size(int B)
{
    int wl = 16;
    for (int mi = 0; mi < N_METHODS; mi++) {
        ems_config c;
        if (!lc_make_cfg(mi, B, &c))
            wl = ems_config_w_loc(&c) > wl ? ems_config_w_loc(&c) : wl;
    }
    return wl;
}

FILE *lc_open_out(const lc_opts *o, const char *name, const char *mode)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", o->out, name);
    FILE *f = fopen(p, mode);
    if (!f)
        fprintf(stderr, "error: cannot open %s\n", p);
    return f;
}

void lc_answer_text(const tokenizer *tok, const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t len = 0;
    for (int i = 0; i < n && len + 300 < cap; i++)
        len += tok_piece_bytes(tok, i ? ids[i - 1] : -1, ids[i], buf + len, 256);
    buf[len < cap ? len : cap - 1] = 0;
}

void lc_cases_header(FILE *f)
{
    fprintf(f, "tokens,prompt_tokens,depth,key,method,budget,budget_pct,retrieved,answer,"
               "kv_bytes_mean,kv_bytes_peak,kv_entries_prompt,compress_ms,budget_used,exact,"
               "key_kept,key_merged,compress_cpu_ms\n");
}

static void csv_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        fputs(*s == '"' ? "\"\"" : *s == '\n' ? "\\n" : (char[2]){*s, 0}, f);
    fputc('"', f);
}

/* One policy's answer on the case: mi (-1 full) at budget B (clamped to [8, n]). */
static em_status answer(const lc_case *c, engine *e, const ems_cache *base, int mi, int *B,
                        int32_t stop, lc_answer *a)
{
    ems_config cfg;
    *B = *B < 8 ? 8 : *B > c->n ? c->n : *B;
    if (lc_make_cfg(mi, mi < 0 ? 0 : *B, &cfg))
        return EM_EINVAL;
    return lc_answer_probe(e, base, &cfg, c->ids[c->n - 1], c->n - 1, c->max_new, stop, c->probe,
                           c->n_probe, a);
}

/* bm_search's callback of one end-of-prompt case and method */
typedef struct match_ctx {
    const lc_case *c;
    engine *e;
    const ems_cache *base;
    int mi;
    int32_t stop;
    lc_answer cur, *best;
} match_ctx;

static em_status match_eval(void *ctx, int B, double *bytes)
{
    match_ctx *m = ctx;
    em_status st = answer(m->c, m->e, m->base, m->mi, &B, m->stop, &m->cur);
    *bytes = m->cur.bytes_mean;
    return st;
}

static void match_keep(void *ctx)
{
    match_ctx *m = ctx;
    *m->best = m->cur;
}

/* Method mi at budget B, or (target > 0) at the budget in [8, n] whose bytes come closest to
 * target (bm_search: within 2 %, at most 8 answers); *a the answer at that budget. */
static em_status matched(const lc_case *c, engine *e, const ems_cache *base, int mi, int B,
                         double target, int32_t stop, lc_answer *a, int *B_used)
{
    match_ctx m = {.c = c, .e = e, .base = base, .mi = mi, .stop = stop, .best = a};
    bm_result r;
    em_status st = bm_search(B, 8, c->n, target, match_eval, match_keep, &m, &r);
    *B_used = r.B;
    if (st == EM_OK && target > 0)
        fprintf(stderr, "    match %s: B=%d bytes %.2f x EMS's (%d tries)\n", lc_methods[mi], r.B,
                r.bytes / target, r.evals);
    return st;
}

static void write_row(FILE *f, const tokenizer *tok, const lc_case *c, int mi, int B, int B_used,
                      const lc_answer *a)
{
    char text[1024];
    double exact = 0;
    lc_answer_text(tok, a->ids, a->n, text, sizeof text);
    double s = c->score(text, c->ctx, &exact);
    fprintf(f, "%d,%d,%.2f,%d,%s,%d,%.1f,%.4f,", c->tokens, c->n, c->depth, c->key,
            mi < 0 ? "full" : lc_methods[mi], B, 100.0 * B_used / c->n, s);
    csv_quoted(f, text);
    fprintf(f, ",%.0f,%llu,%llu,%.2f,%d,%.4f,", a->bytes_mean, (unsigned long long)a->bytes_peak,
            (unsigned long long)a->entries_prompt, 1e3 * a->compress_s, B_used, exact);
    if (c->n_probe > 0)
        fprintf(f, "%.4f,%.4f", a->probe_kept, a->probe_merged);
    else
        fputc(',', f);
    fprintf(f, ",%.2f\n", 1e3 * a->compress_cpu_s);
    fflush(f);
}

int lc_case_ring(const lc_opts *o)
{
    int wl = 16;
    for (int b = 0; b < o->n_budgets; b++)
        wl = lc_ring_size(o->budgets[b]) > wl ? lc_ring_size(o->budgets[b]) : wl;
    return wl;
}

/* The full cache of ids[0, n-1): prefilled, or c->prefix extended by the rest. */
static em_status prompt_cache(const lc_opts *o, engine *e, const lc_case *c, ems_cache **out)
{
    if (!c->prefix)
        return lc_prompt_cache(e, c->ids, c->n - 1, lc_case_ring(o), 512, out);
    if (c->n_prefix < 1 || c->n_prefix >= c->n - 1)
        return EM_EINVAL;
    em_status st = ems_cache_clone(c->prefix, lc_case_ring(o), out);
    if (st == EM_OK)
        st = engine_forward_seq(e, *out, c->ids + c->n_prefix, c->n - 1 - c->n_prefix, c->n_prefix,
                                512, NULL);
    if (st != EM_OK) {
        ems_cache_destroy(*out);
        *out = NULL;
    }
    return st;
}

int lc_run_case(const lc_opts *o, engine *e, const tokenizer *tok, const lc_case *c, FILE *f)
{
    int32_t stop = 2; /* <|im_end|> */
    tok_token_id(tok, "<|im_end|>", &stop);
    double t0 = em_now_s();
    ems_cache *base = NULL;
    if (prompt_cache(o, e, c, &base) != EM_OK) {
        fprintf(stderr, "error: prompt forward\n");
        return 1;
    }
    fprintf(stderr, "  %d tokens: prompt %.1fs\n", c->n, em_now_s() - t0);
    if (c->dump_path) {
        em_status ds = lc_cache_write(base, c->dump_path);
        fprintf(stderr, "  prompt cache -> %s: %s\n", c->dump_path, em_status_str(ds));
    }
    lc_answer a;
    int rc = 0, Bu = 0;
    if (answer(c, e, base, -1, &Bu, stop, &a) == EM_OK)
        write_row(f, tok, c, -1, 0, 0, &a);
    else
        rc = 1;
    for (int bi = 0; bi < o->n_budgets; bi++) {
        int B = o->budgets[bi];
        double target = 0;
        /* EMS first: its bytes are the reference of --match-bytes */
        for (int k = 0; k < N_METHODS; k++) {
            int mi = k == 0 ? EMS_IDX : k <= EMS_IDX ? k - 1 : k;
            if (!lc_use[mi])
                continue;
            /* EMS + int4 stays at EMS's budget: its point is fewer bytes at the same entries;
             * so do the EMS variant rows (EMS at the same budget, other parameters); a variant
             * of another method is matched like its method */
            int ref = lc_variant_base(mi) >= EMS_IDX;
            em_status st = matched(c, e, base, mi, B, ref ? 0 : target, stop, &a, &Bu);
            if (st != EM_OK) {
                fprintf(stderr, "error: %s B=%d: %s\n", lc_methods[mi], B, em_status_str(st));
                rc = 1;
                continue;
            }
            if (mi == EMS_IDX && o->match_bytes)
                target = a.bytes_mean;
            write_row(f, tok, c, mi, B, Bu, &a);
        }
    }
    fprintf(stderr, "  all methods answered (%.1fs)\n", em_now_s() - t0);
    ems_cache_destroy(base);
    return rc;
}
