/* //eval:longctx — long-context compression quality on SmolLM2 (or any chat GGUF), tasks in
 * the end-of-prompt mode (eval/longctx.h: passkey, needle in a haystack of real prose, QA over
 * documents, summarization of long documents scored by ROUGE) and decode-time KL(full ||
 * compressed) on real prose, with bootstrap 95 % intervals, KV bytes held and an optional
 * matched-bytes protocol. Writes CSV + markdown + gnuplot PNGs under --out; progress on stderr. See
 * eval/README.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/eval.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "model/model.h"

static int parse_ints(const char *s, int *v)
{
    int n = 0;
    for (char *e; *s && n < MAXV; s = *e ? e + 1 : e)
        v[n++] = (int)strtol(s, &e, 10);
    return n;
}

/* ---- plots ------------------------------------------------------------------------------ */

static void write_plots(const lc_opts *o)
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
        "with labels rotate by 35 left offset 0.5,0.3 font ',8'\n}\n"
        "if (system('test -s kl_long.csv && echo 1') eq '1') {\n"
        "set output 'kl_long_bytes.png'\nset autoscale xy\nset logscale xy\nset key top right\n"
        "set xlabel 'KV cache held, MiB (mean over the scored tokens)'\n"
        "set title 'SmolLM2 KL(full || compressed), long prose, compressed at the "
        "prompt end (95% block-bootstrap CI)'\nset ylabel 'mean KL (nats)'\n"
        "plot for [P in system(\"tail -n +2 kl_long.csv | cut -d, -f1 | sort -un | tr '\\\\n' ' "
        "'\")] "
        "'kl_long.csv' every ::1 using ($1 == P + 0 && $5 > 0 ? $12/1048576 : 1/0):5:6:7 "
        "with yerrorbars pt 7 title sprintf('prompt %s tokens', P), \\\n"
        "     '' every ::1 using ($5 > 0 ? $12/1048576 : 1/0):5:(sprintf('%s B%d', strcol(2), $3)) "
        "with labels rotate by 35 left offset 0.5,0.3 font ',8' notitle\n}\n"
        "if (system('test -s summary.csv && echo 1') eq '1') {\n"
        "set terminal pngcairo size 1400,600\nset output 'summary_bytes.png'\nunset logscale\n"
        "set autoscale xy\nset key top left font ',9'\nset logscale x\n"
        "M = system(\"tail -n +2 summary.csv | cut -d, -f1 | awk '!s[$0]++' | tr '\\n' ' '\")\n"
        "set linetype 9 lc rgb '#8b4513' pt 9\nset linetype 10 lc rgb '#000080' pt 11\n"
        "set multiplot layout 1,2\n"
        "set xlabel 'KV cache held, MiB (mean over the answer tokens)'\n"
        "set title 'SmolLM2 summaries: ROUGE-L vs the full cache''s own answer (95% CI)'\n"
        "set ylabel 'ROUGE-L F1 vs the full answer'\n"
        "plot for [i = 1:words(M)] sprintf(\"< grep '^%s,' summary.csv\", word(M, i)) using "
        "($7/1048576):21:22:23 with yerrorlines lt i title word(M, i)\n"
        "set title 'SmolLM2 summaries: ROUGE-L vs the reference (the author''s intro; 95% CI)'\n"
        "set ylabel 'ROUGE-L F1 vs the reference'\n"
        "plot for [i = 1:words(M)] sprintf(\"< grep '^%s,' summary.csv\", word(M, i)) using "
        "($7/1048576):4:5:6 with yerrorlines lt i title word(M, i)\n"
        "unset multiplot\n}\n");
}

/* ---- main ------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: longctx [--model M] [--out DIR] [--quick] [--task "
        "passkey|kl|kl-long|needle|qa|summary|all]\n"
        "  [--sizes 1024,2048,4096] [--depths 10,50,90] [--keys 2] [--first-key 0] [--budgets "
        "128,256]\n"
        "  [--match-bytes] [--haystack FILE]... [--needle-keys 1] [--qa FILE.tsv]... "
        "[--answer-tokens 24]\n"
        "  [--summary FILE]... [--summary-cap 6144] [--summary-tokens 64] (summary: documents, "
        "prompt tokens at most, answer tokens)\n"
        "  [--text FILE]... [--kl-window 1024] [--kl-budgets 128,256] [--kl-prefill 0]\n"
        "  [--threads 1]\n"
        "  [--kl-prefixes 4096,7168] [--kl-score 128] (kl-long: prompt lengths of the texts, "
        "tokens scored after each)\n"
        "  [--max-new 12] [--summarize] [--methods ems,snapkv,...] [--ems-param KEY=VALUE]...\n"
        "  [--ems-variant LABEL:KEY=VALUE[,KEY=VALUE...]]... (extra EMS rows \"ems-LABEL\")\n"
        "  [--variant METHOD:LABEL:KEY=VALUE[,...]]... (extra rows \"METHOD-LABEL\")\n"
        "  [--ref ROW] (the row the others are compared with; default ems)\n"
        "  [--dump-cache DIR] (passkey: prompt cache of each size's first case, for "
        "bench:ems_step_bench)\n"
        "--task all = passkey + kl (the default); needle, qa, summary and kl-long run only when "
        "named\n"
        "  (several tasks: --task needle --task qa). --summarize redoes the tables of the named\n"
        "  tasks from their *_cases.csv: pass the run's --budgets/--methods/--sizes/--depths\n"
        "  and --match-bytes again (and --ems-variant / --variant / --ref).\n");
}

static int parse_args(int argc, char **argv, lc_opts *o)
{
    *o = (lc_opts){.model = model_find_default(),
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
                   .n_kl_prefixes = 2,
                   .kl_prefixes = {4096, 7168},
                   .kl_score = 128,
                   .do_passkey = 1,
                   .do_kl = 1,
                   .needle_keys = 1,
                   .answer_tokens = 24,
                   .summary_cap = 6144,
                   .summary_tokens = 64};
    int named_task = 0;
    const char *ref = NULL; /* resolved after every --variant */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int dep[MAXV];
        if (!strcmp(a, "--quick")) {
            o->quick = 1, o->n_sizes = 1, o->sizes[0] = 320, o->n_depths = 1, o->depths[0] = 0.5;
            o->keys = 1, o->n_budgets = 1, o->budgets[0] = 64;
            o->n_kl_budgets = 1, o->kl_budgets[0] = 64, o->max_new = 12;
            o->kl_window = 128, o->summary_cap = 320, o->summary_tokens = 16;
            for (int k = 0; k <= INT4_IDX; k++) /* --ems-variant rows stay */
                lc_use[k] = k == 0 || k == 1 || k == EMS_IDX;
            continue;
        }
        if (!strcmp(a, "--match-bytes")) {
            o->match_bytes = 1;
            continue;
        }
        if (!strcmp(a, "--summarize")) { /* tables again from the cases CSVs, no model run */
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
        else if (!strcmp(a, "--task")) {
            if (!named_task)
                o->do_passkey = o->do_kl = 0, named_task = 1;
            int all = !strcmp(v, "all");
            o->do_passkey |= all || !strcmp(v, "passkey");
            o->do_kl |= all || !strcmp(v, "kl");
            o->do_needle |= !strcmp(v, "needle");
            o->do_qa |= !strcmp(v, "qa");
            o->do_kl_long |= !strcmp(v, "kl-long");
            o->do_summary |= !strcmp(v, "summary");
            if (!all && strcmp(v, "passkey") && strcmp(v, "kl") && strcmp(v, "needle") &&
                strcmp(v, "qa") && strcmp(v, "kl-long") && strcmp(v, "summary")) {
                fprintf(stderr, "error: unknown task %s\n", v);
                return 1;
            }
        } else if (!strcmp(a, "--haystack") && o->n_haystack < 8)
            o->haystack[o->n_haystack++] = v;
        else if (!strcmp(a, "--qa") && o->n_qa < 8)
            o->qa_files[o->n_qa++] = v;
        else if (!strcmp(a, "--summary")) {
            if (o->n_summary == MAXV) {
                fprintf(stderr, "error: more than %d --summary documents\n", MAXV);
                return 1;
            }
            o->summary_files[o->n_summary++] = v;
        } else if (!strcmp(a, "--summary-cap"))
            o->summary_cap = atoi(v);
        else if (!strcmp(a, "--summary-tokens"))
            o->summary_tokens = atoi(v);
        else if (!strcmp(a, "--needle-keys"))
            o->needle_keys = atoi(v);
        else if (!strcmp(a, "--answer-tokens"))
            o->answer_tokens = atoi(v);
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
            if (lc_set_methods(v))
                return 1;
        } else if (!strcmp(a, "--ems-param")) {
            if (lc_add_ems_param(v)) {
                fprintf(stderr, "error: more than 8 --ems-param\n");
                return 1;
            }
        } else if (!strcmp(a, "--ems-variant")) {
            if (lc_add_variant(v))
                return 1;
        } else if (!strcmp(a, "--variant")) {
            if (lc_add_method_variant(v))
                return 1;
        } else if (!strcmp(a, "--ref"))
            ref = v;
        else if (!strcmp(a, "--dump-cache"))
            o->dump_dir = v;
        else if (!strcmp(a, "--budgets"))
            o->n_budgets = parse_ints(v, o->budgets);
        else if (!strcmp(a, "--kl-budgets"))
            o->n_kl_budgets = parse_ints(v, o->kl_budgets);
        else if (!strcmp(a, "--text") && o->n_texts < MAXV)
            o->texts[o->n_texts++] = v;
        else if (!strcmp(a, "--kl-prefixes"))
            o->n_kl_prefixes = parse_ints(v, o->kl_prefixes);
        else if (!strcmp(a, "--kl-score"))
            o->kl_score = atoi(v);
        else if (!strcmp(a, "--kl-window"))
            o->kl_window = atoi(v);
        else if (!strcmp(a, "--kl-prefill"))
            o->kl_prefill = atoi(v);
        else if (!strcmp(a, "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(a, "--max-new"))
            o->max_new = atoi(v);
        else {
            usage();
            return 1;
        }
    }
    if (ref && lc_set_ref(ref))
        return 1;
    if (!o->n_texts)
        o->texts[o->n_texts++] = "/usr/share/common-licenses/GPL-3";
    if (!o->n_haystack) { /* ~13.4K tokens of prose: enough for 8K prompts */
        o->haystack[o->n_haystack++] = "/usr/share/common-licenses/GPL-3";
        o->haystack[o->n_haystack++] = "/usr/share/common-licenses/GFDL-1.3";
    }
    if (!o->n_summary) { /* 16 Vim user-manual chapters of 7-20 KB: 1.8K-5.5K-token prompts */
        static const char *const k_vim[] = {"01", "04", "06", "07", "08", "09", "11", "12",
                                            "20", "21", "22", "23", "26", "28", "31", "43"};
        static char paths[sizeof k_vim / sizeof k_vim[0]][64];
        for (size_t k = 0; k < sizeof k_vim / sizeof k_vim[0]; k++) {
            snprintf(paths[k], sizeof paths[k], "/usr/share/vim/vim90/doc/usr_%s.txt", k_vim[k]);
            o->summary_files[o->n_summary++] = paths[k];
        }
    }
    int bad = !o->model || o->keys < 1 || o->keys > 16 || o->first_key < 0 || o->threads < 1 ||
              o->max_new < 1 || o->max_new > LC_MAX_ANSWER || o->kl_window < 64 ||
              o->needle_keys < 1 || o->needle_keys > 16 || o->answer_tokens < 1 ||
              o->answer_tokens > LC_MAX_ANSWER || o->n_sizes < 1 || o->n_depths < 1 ||
              o->n_budgets < 1 || o->summary_cap < 64 || o->summary_cap > 8000 ||
              o->summary_tokens < 1 || o->summary_tokens > LC_MAX_ANSWER;
    for (int k = 0; k < o->n_sizes; k++)
        bad |= o->sizes[k] < 64 || o->sizes[k] + o->max_new > 8192;
    for (int k = 0; k < o->n_depths; k++)
        bad |= o->depths[k] < 0 || o->depths[k] > 1;
    for (int k = 0; k < o->n_budgets; k++)
        bad |= o->budgets[k] < 8;
    for (int k = 0; k < o->n_kl_budgets; k++)
        bad |= o->kl_budgets[k] < 8 || o->kl_budgets[k] >= o->kl_window - 16;
    bad |= o->kl_prefill < 0 || o->kl_prefill >= o->kl_window - 16;
    bad |= o->n_kl_prefixes < 1 || o->kl_score < 1 || o->kl_score > 1024;
    for (int k = 0; k < o->n_kl_prefixes; k++) /* ascending: the prompt cache is extended */
        bad |= o->kl_prefixes[k] < 64 || o->kl_prefixes[k] + o->kl_score + 1 > 8192 ||
               (k > 0 && o->kl_prefixes[k] <= o->kl_prefixes[k - 1]);
    if (bad)
        fprintf(stderr, "error: %s\n", o->model ? "bad option value" : "no model (--model)");
    return bad;
}

int main(int argc, char **argv)
{
    lc_opts o;
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
    double t0 = em_now_s(), t[4] = {0};
    int rc = 0;
    if (o.do_passkey && !o.summarize)
        rc |= lc_task_passkey(&o, e, tok);
    if (o.do_passkey)
        rc |= lc_summarize(&o, "passkey", 0);
    t[0] = em_now_s() - t0;
    if (o.do_needle && !o.summarize)
        rc |= lc_task_needle(&o, e, tok);
    if (o.do_needle)
        rc |= lc_summarize(&o, "needle", 0) | lc_needle_grid(&o);
    t[1] = em_now_s() - t0 - t[0];
    if (o.do_qa && !o.summarize)
        rc |= lc_task_qa(&o, e, tok);
    if (o.do_qa)
        rc |= lc_summarize(&o, "qa", LC_SUM_EXACT | LC_SUM_AGREE);
    if (o.do_summary && !o.summarize)
        rc |= lc_task_summary(&o, e, tok);
    if (o.do_summary)
        rc |= lc_summarize(&o, "summary", LC_SUM_AGREE | LC_SUM_ROUGE);
    t[2] = em_now_s() - t0 - t[0] - t[1];
    if (o.do_kl && !o.summarize)
        rc |= lc_task_kl(&o, e, tok);
    if (o.do_kl_long && !o.summarize)
        rc |= lc_task_kl_long(&o, e, tok);
    t[3] = em_now_s() - t0 - t[0] - t[1] - t[2];
    write_plots(&o);
    fprintf(stderr, "done: passkey %.0fs, needle %.0fs, qa + summary %.0fs, kl + kl-long %.0fs\n",
            t[0], t[1], t[2], t[3]);
    engine_free(e);
    tok_free(tok);
    model_free(m);
    return rc;
}
