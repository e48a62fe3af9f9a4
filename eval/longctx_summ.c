/* //eval:longctx --task summary: summarization of long real documents (eval/summary.h: Vim
 * user-manual chapters, the reference their author's intro paragraph), every method answering
 * from the end-of-prompt protocol with lc_run_case; the score is ROUGE-L F1 against the
 * reference (eval/rouge.h). Writes summary_cases.csv and summary_docs.csv (one line per
 * document: what was read, how much of it, the reference; the table's ROUGE-1 / ROUGE-2 come
 * from it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/rouge.h"
#include "eval/summary.h"

/* ROUGE-L F1 against the reference; *exact = the same (no exact-match score for summaries) */
static double score_summary(const char *answer, const void *ctx, double *exact)
{
    rouge_f r;
    rouge_score(answer, ctx, &r); /* ENOMEM: zeros */
    *exact = r.rl;
    return r.rl;
}

static void csv_text(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++)
        fputs(*s == '"' ? "\"\"" : (char[2]){*s, 0}, f);
    fputc('"', f);
}

/* Document `key` of path: its prompt, one case, one summary_docs.csv line. */
static int summary_document(const lc_opts *o, engine *e, const tokenizer *tok, const char *path,
                            int key, FILE *f, FILE *docs)
{
    char err[512];
    sd_doc d;
    if (sd_load(path, &d, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int32_t *ids = NULL;
    int n = 0;
    size_t used = 0;
    if (sd_prompt(tok, &d, o->summary_cap, &ids, &n, &used) != EM_OK) {
        fprintf(stderr, "error: summary prompt of %s (--summary-cap %d too small?)\n", path,
                o->summary_cap);
        sd_free(&d);
        return 1;
    }
    fprintf(docs, "%d,%s,%zu,%zu,%d,", key, d.source, d.doc_len, used, n);
    csv_text(docs, d.title);
    fputc(',', docs);
    csv_text(docs, d.ref);
    fputc('\n', docs);
    fflush(docs);
    lc_case c = {.tokens = n,
                 .key = key,
                 .ids = ids,
                 .n = n,
                 .max_new = o->summary_tokens,
                 .score = score_summary,
                 .ctx = d.ref};
    fprintf(stderr, "summary %d: %s (%s), %d prompt tokens, %zu of %zu document bytes\n", key,
            d.source, d.title, n, used, d.doc_len);
    int rc = lc_run_case(o, e, tok, &c, f);
    free(ids);
    sd_free(&d);
    return rc;
}

int lc_task_summary(const lc_opts *o, engine *e, const tokenizer *tok)
{
    FILE *f = lc_open_out(o, "summary_cases.csv", "w");
    FILE *docs = lc_open_out(o, "summary_docs.csv", "w");
    int rc = !f || !docs;
    if (!rc) {
        lc_cases_header(f);
        fprintf(docs, "key,source,doc_bytes,doc_bytes_used,prompt_tokens,title,reference\n");
    }
    for (int i = 0; i < o->n_summary && !rc; i++)
        rc = summary_document(o, e, tok, o->summary_files[i], i, f, docs);
    if (f)
        fclose(f);
    if (docs)
        fclose(docs);
    return rc;
}
