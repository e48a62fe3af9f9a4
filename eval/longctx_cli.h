/* Internals of //eval:longctx shared by its task files: options, the method table, the
 * end-of-prompt case runner (every method forked from one prompt cache, optionally at matched
 * KV bytes) and the summary of a task's cases CSV.
 *
 * Cases CSV (<task>_cases.csv; one row per case and policy):
 *   tokens,prompt_tokens,depth,key,method,budget,budget_pct,retrieved,answer,kv_bytes_mean,
 *   kv_bytes_peak,kv_entries_prompt,compress_ms,budget_used,exact,key_kept,key_merged,
 *   compress_cpu_ms
 * `retrieved` is the task's score (passkey / needle: 0 or 1; QA: token F1; summary: ROUGE-L F1
 * against the reference), `exact` the exact-match score (= retrieved for passkey, needle and
 * summary), `budget` the reference budget of
 * the row's group and `budget_used` the entries per head the method actually ran with (they
 * differ under --match-bytes). `key` is the passkey, the needle's index or the question's.
 * compress_ms / compress_cpu_ms: the prefill-end step in wall / thread CPU time. key_kept /
 * key_merged (cases with probe positions: the passkey's digits; empty otherwise): share of
 * the probe entries held after that step over every (layer, KV head), and share of those held
 * as merged centres (lc_answer_probe). */
#pragma once
#include <stdio.h>

#include "ems/config.h"
#include "engine/engine.h"
#include "model/tokenizer.h"

#define MAXV   16
#define N_BOOT 2000

typedef struct lc_opts {
    const char *model, *out;
    int sizes[MAXV], n_sizes;
    double depths[MAXV];
    int n_depths, keys, budgets[MAXV], n_budgets, threads, max_new;
    const char *texts[MAXV];
    int n_texts, kl_window, kl_budgets[MAXV], n_kl_budgets, quick, summarize, first_key;
    int kl_prefill; /* KL: tokens prefilled before streaming (0 = the budget B) */
    int do_passkey, do_kl, do_needle, do_qa, do_kl_long, do_summary;
    int kl_prefixes[MAXV], n_kl_prefixes, kl_score; /* kl-long: prompt lengths, tokens scored */
    int match_bytes; /* every non-EMS budget re-solved to EMS's bytes per case / window / prompt
                        (eval/budget_match.h; passkey, needle, qa, kl, kl-long) */
    const char *haystack[8];         /* needle: haystack files, concatenated in this order */
    int n_haystack, needle_keys;     /* needles per (size, depth) cell */
    const char *qa_files[8];         /* QA: tsv files (eval/qa/README.md) */
    int n_qa, answer_tokens;         /* needle and QA: answer tokens */
    const char *summary_files[MAXV]; /* summary: documents (eval/summary.h) */
    int n_summary, summary_cap;      /* summary: prompt tokens at most (documents cut) */
    int summary_tokens;              /* summary: answer tokens */
    const char *dump_dir;            /* --dump-cache DIR: the prompt cache of each size's first
                                        passkey case (eval/cache_io.h; bench:ems_step_bench) */
} lc_opts;

/* methods compared at every budget: the baselines, EMS (EMS_IDX), EMS with int4 (INT4_IDX),
 * then the variants of --variant METHOD:LABEL:K=V,... (rows "METHOD-LABEL": the method with
 * extra parameters, on the same prompt cache; --ems-variant LABEL:... = --variant
 * ems:LABEL:...); lc_n_methods rows in all */
#define MAXM     40
#define EMS_IDX  7
#define INT4_IDX 8
extern const char *lc_methods[MAXM];
extern int lc_n_methods;
#define N_METHODS lc_n_methods
/* 1 for the methods run (EMS is always run: it is the reference of --match-bytes; variants
 * always) */
extern int lc_use[MAXM];
/* The row every other is compared with (paired differences, bytes ratio): EMS unless --ref;
 * -1 = the full cache (end-of-prompt tasks; the KL table then has no paired column). */
extern int lc_ref_idx;
/* Base method (an index <= INT4_IDX) of row mi (mi itself for a method). */
int lc_variant_base(int mi);

/* Config of method mi (-1 = full cache) at budget B, with the --ems-param settings on the
 * EMS rows (and a variant's own settings on its row). Nonzero when ems_config rejects it. */
int lc_make_cfg(int mi, int B, ems_config *cfg);
/* --variant METHOD:LABEL:K=V[,K=V...]: one more row "METHOD-LABEL" (METHOD one of lc_methods
 * up to INT4_IDX; EMS variants also get --ems-param); nonzero (with a message) on a bad spec,
 * a duplicate row, too many variants or parameters ems_config rejects. */
int lc_add_method_variant(const char *spec);
/* --ems-variant LABEL:K=V[,K=V...] = lc_add_method_variant("ems:LABEL:..."). */
int lc_add_variant(const char *spec);
/* --ref NAME: the reference row (full, a method or a variant added before); nonzero when
 * unknown. */
int lc_set_ref(const char *name);
/* Adds one --ems-param KEY=VALUE (at most 8); nonzero when full. */
int lc_add_ems_param(const char *kv);
/* --methods a,b,...: nonzero (with a message) on an unknown name. */
int lc_set_methods(const char *list);
/* Largest w_loc of the methods run at budget B (the prompt cache's ring). */
int lc_ring_size(int B);

FILE *lc_open_out(const lc_opts *o, const char *name, const char *mode);
/* The answer's text (at most cap - 1 bytes, NUL-terminated). */
void lc_answer_text(const tokenizer *tok, const int32_t *ids, int n, char *buf, size_t cap);

/* Scores an answer's text: returns the task score in [0, 1], *exact the exact-match score. */
typedef double (*lc_score_fn)(const char *answer, const void *ctx, double *exact);

typedef struct lc_case {
    int tokens;   /* requested size (the cell) */
    double depth; /* 0..1; 0 where it has no meaning */
    int key;
    const int32_t *ids; /* the prompt */
    int n;
    int max_new;
    lc_score_fn score;
    const void *ctx;
    /* optional: a full cache of ids[0, n_prefix) (ring lc_ring_size of every budget) that the
     * case extends instead of prefilling from scratch (QA: one document, many questions) */
    const ems_cache *prefix;
    int n_prefix;
    /* optional: prompt positions whose entries are probed after the prefill-end step (the
     * CSV's key_kept / key_merged; passkey: the key's digit tokens) */
    const int32_t *probe;
    int n_probe;
    /* optional: write the prompt cache here (lc_cache_write) before answering */
    const char *dump_path;
} lc_case;

/* Prefills ids[0, n-1) once, then the full cache and every method at every budget answer
 * from forks of it (eval/longctx.h protocol); one CSV row each to f. With o->match_bytes the
 * EMS row of a budget runs first and every other method's budget (EMS + int4 and the
 * --ems-variant rows excepted: they stay at B) is re-solved by bm_search (eval/budget_match.h:
 * secant on the budget inside a bracket, at most 8 answers) until its mean KV bytes are within
 * 2 % of EMS's, the closest try kept (tables flag what stays more than 5 % away). Nonzero on an
 * engine error. */
int lc_run_case(const lc_opts *o, engine *e, const tokenizer *tok, const lc_case *c, FILE *f);
/* The ring of the prompt caches lc_run_case makes (the largest w_loc of every method and budget).
 */
int lc_case_ring(const lc_opts *o);
/* The header line of a cases CSV. */
void lc_cases_header(FILE *f);

/* Tables from <task>_cases.csv (complete cases only): <task>.csv and <task>.md, per method
 * and budget: mean score with a bootstrap 95 % CI over cases, KV bytes, bytes / EMS's, paired
 * EMS - method CI; with LC_SUM_EXACT the exact-match rate, with LC_SUM_AGREE the agreement
 * with the full cache (ROUGE-L F1 of the row's answer against the full cache's answer to the
 * same case, CI over cases; the full row scores 1), with LC_SUM_ROUGE ROUGE-1 / ROUGE-2 F1
 * against the references of <task>_docs.csv (key -> reference). Nonzero when no case. */
#define LC_SUM_EXACT 1
#define LC_SUM_AGREE 2
#define LC_SUM_ROUGE 4
int lc_summarize(const lc_opts *o, const char *task, int flags);
/* Needle: needle_grid.csv (accuracy per method, budget, size and depth), the grid as
 * markdown (needle_grid.md) and one heat map PNG per method and budget (needle.gp). */
int lc_needle_grid(const lc_opts *o);

/* The tasks (longctx_tasks.c); nonzero on error. */
int lc_task_passkey(const lc_opts *o, engine *e, const tokenizer *tok);
int lc_task_needle(const lc_opts *o, engine *e, const tokenizer *tok);
int lc_task_qa(const lc_opts *o, engine *e, const tokenizer *tok);
int lc_task_kl(const lc_opts *o, engine *e, const tokenizer *tok);
int lc_task_kl_long(const lc_opts *o, engine *e, const tokenizer *tok); /* longctx_kllong.c */
int lc_task_summary(const lc_opts *o, engine *e, const tokenizer *tok); /* longctx_summ.c */
