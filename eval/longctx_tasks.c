/* //eval:longctx tasks in the end-of-prompt mode: passkey retrieval, needle in a haystack of
 * real prose, and question answering over whole documents (the tsv files of eval/qa). Each builds
 * its prompts, runs every method on them with lc_run_case and writes <task>_cases.csv. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timeutil.h"
#include "eval/longctx.h"
#include "eval/longctx_cli.h"
#include "eval/needle.h"

static double score_contains(const char *answer, const void *ctx, double *exact)
{
    *exact = nd_contains(answer, ctx);
    return *exact;
}

/* ---- passkey ------------------------------------------------------------------------------ */

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

int lc_task_passkey(const lc_opts *o, engine *e, const tokenizer *tok)
{
    FILE *f = lc_open_out(o, "passkey_cases.csv", "w");
    if (!f)
        return 1;
    lc_cases_header(f);
    int case_i = 0, rc = 0;
    for (int si = 0; si < o->n_sizes; si++) {
        for (int di = 0; di < o->n_depths; di++) {
            for (int k = o->first_key; k < o->first_key + o->keys; k++, case_i++) {
                int key = 10000 + (int)((case_i * 7919u + 12345u * (k + 1)) % 90000u);
                char want[16];
                snprintf(want, sizeof want, "%d", key);
                lc_case c = {.tokens = o->sizes[si],
                             .depth = o->depths[di],
                             .key = key,
                             .max_new = o->max_new,
                             .score = score_contains,
                             .ctx = want};
                int32_t *ids = NULL;
                if (lc_passkey_prompt(tok, key, o->sizes[si], o->depths[di], &ids, &c.n) != EM_OK) {
                    fprintf(stderr, "error: passkey prompt\n");
                    fclose(f);
                    return 1;
                }
                c.ids = ids;
                int32_t kpos[20];
                c.probe = kpos;
                c.n_probe = key_positions(tok, ids, c.n, key, kpos, 20);
                char dump[1024];
                if (o->dump_dir && di == 0 && k == o->first_key) {
                    snprintf(dump, sizeof dump, "%s/cache_%d.bin", o->dump_dir, c.n - 1);
                    c.dump_path = dump;
                }
                fprintf(stderr, "passkey %d tokens depth %.2f key %d\n", c.n, c.depth, key);
                rc |= lc_run_case(o, e, tok, &c, f);
                free(ids);
            }
        }
    }
    fclose(f);
    return rc;
}

/* ---- needle in a haystack -------------------------------------------------------------------- */

int lc_task_needle(const lc_opts *o, engine *e, const tokenizer *tok)
{
    char err[512];
    nd_haystack h;
    if (nd_haystack_load(o->haystack, o->n_haystack, &h, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    FILE *f = lc_open_out(o, "needle_cases.csv", "w");
    FILE *p = lc_open_out(o, "needle_prompts.csv", "w");
    if (!f || !p) {
        nd_haystack_free(&h);
        return 1;
    }
    lc_cases_header(f);
    fprintf(p, "tokens,depth,needle,prompt_tokens,haystack,fact,question,answer\n");
    int n_nd, case_i = 0, rc = 0;
    const nd_needle *nds = nd_needles(&n_nd);
    for (int si = 0; si < o->n_sizes && !rc; si++) {
        for (int di = 0; di < o->n_depths && !rc; di++) {
            for (int k = 0; k < o->needle_keys && !rc; k++, case_i++) {
                int ni = (case_i + o->first_key) % n_nd;
                lc_case c = {.tokens = o->sizes[si],
                             .depth = o->depths[di],
                             .key = ni,
                             .max_new = o->answer_tokens,
                             .score = score_contains,
                             .ctx = nds[ni].answer};
                int32_t *ids = NULL;
                if (nd_needle_prompt(tok, &h, &nds[ni], o->sizes[si], o->depths[di], &ids, &c.n) !=
                    EM_OK) {
                    fprintf(stderr, "error: needle prompt of %d tokens (haystack %s too short?)\n",
                            o->sizes[si], h.sources);
                    rc = 1;
                    break;
                }
                c.ids = ids;
                fprintf(p, "%d,%.2f,%d,%d,%s,\"%s\",\"%s\",%s\n", c.tokens, c.depth, ni, c.n,
                        h.sources, nds[ni].fact, nds[ni].question, nds[ni].answer);
                fflush(p);
                fprintf(stderr, "needle %d tokens depth %.2f needle %d (%s)\n", c.n, c.depth, ni,
                        nds[ni].answer);
                rc |= lc_run_case(o, e, tok, &c, f);
                free(ids);
            }
        }
    }
    fclose(f);
    fclose(p);
    nd_haystack_free(&h);
    return rc;
}

/* ---- QA over documents ------------------------------------------------------------------------
 */

typedef struct qa_item {
    char source[256], question[512], answers[512]; /* answers separated by '|' */
} qa_item;

static double score_qa(const char *answer, const void *ctx, double *exact)
{
    char refs[512];
    double f1 = 0;
    *exact = 0;
    snprintf(refs, sizeof refs, "%s", (const char *)ctx);
    for (char *save, *r = strtok_r(refs, "|", &save); r; r = strtok_r(NULL, "|", &save)) {
        double em = nd_exact_match(answer, r), f = nd_token_f1(answer, r);
        *exact = em > *exact ? em : *exact;
        f1 = f > f1 ? f : f1;
    }
    return f1;
}

/* Questions of a tsv file: source<TAB>question<TAB>answers; '#' lines and a "source" header
 * are skipped. *count: how many (at most cap). EM_EIO when the file cannot be read, EM_EINVAL
 * when a line is malformed. */
static em_status qa_load(const char *path, qa_item *q, int cap, int *count)
{
    *count = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return EM_EIO;
    char line[1400];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#' || !strncmp(line, "source\t", 7))
            continue;
        char *a = strchr(line, '\t'), *b = a ? strchr(a + 1, '\t') : NULL;
        if (!b) {
            bad = 1;
            break;
        }
        *a = *b = 0;
        if (strlen(line) >= sizeof q[n].source || strlen(a + 1) >= sizeof q[n].question ||
            strlen(b + 1) >= sizeof q[n].answers) {
            bad = 1;
            break;
        }
        strcpy(q[n].source, line);
        strcpy(q[n].question, a + 1);
        strcpy(q[n].answers, b + 1);
        n++;
    }
    fclose(f);
    *count = bad ? 0 : n;
    return bad ? EM_EINVAL : EM_OK;
}

/* Longest common prefix of the prompts' ids, at most min(n) - 2 (a question is never empty). */
static int common_prefix(int32_t *const *ids, const int *n, int m)
{
    int l = n[0] - 2;
    for (int q = 1; q < m; q++) {
        l = n[q] - 2 < l ? n[q] - 2 : l;
        int k = 0;
        while (k < l && ids[q][k] == ids[0][k])
            k++;
        l = k;
    }
    return l;
}

/* One document and its questions q[0, m): the document prefix is prefilled once. */
static int qa_document(const lc_opts *o, engine *e, const tokenizer *tok, const qa_item *q, int m,
                       int key0, FILE *f)
{
    nd_haystack doc;
    char err[512];
    const char *path = q[0].source;
    if (nd_haystack_load(&path, 1, &doc, err, sizeof err) != EM_OK) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    int32_t *ids[64] = {0};
    int n[64] = {0}, rc = 0;
    for (int i = 0; i < m && !rc; i++)
        rc = nd_qa_prompt(tok, doc.text, doc.len, q[i].question, &ids[i], &n[i]) != EM_OK;
    int lcp = rc ? 0 : common_prefix(ids, n, m);
    ems_cache *prefix = NULL;
    double t0 = em_now_s();
    if (!rc && lc_prompt_cache(e, ids[0], lcp, lc_case_ring(o), 512, &prefix) != EM_OK)
        rc = 1;
    if (!rc)
        fprintf(stderr, "qa %s: %d questions, document prefix %d tokens (%.1fs)\n", path, m, lcp,
                em_now_s() - t0);
    for (int i = 0; i < m && !rc; i++) {
        lc_case c = {.tokens = lcp,
                     .key = key0 + i,
                     .ids = ids[i],
                     .n = n[i],
                     .max_new = o->answer_tokens,
                     .score = score_qa,
                     .ctx = q[i].answers,
                     .prefix = prefix,
                     .n_prefix = lcp};
        fprintf(stderr, "qa %d: %s\n", key0 + i, q[i].question);
        rc |= lc_run_case(o, e, tok, &c, f);
    }
    ems_cache_destroy(prefix);
    for (int i = 0; i < m; i++)
        free(ids[i]);
    nd_haystack_free(&doc);
    return rc;
}

int lc_task_qa(const lc_opts *o, engine *e, const tokenizer *tok)
{
    static qa_item q[512];
    int n = 0;
    for (int i = 0; i < o->n_qa; i++) {
        int m = 0;
        if (qa_load(o->qa_files[i], q + n, 512 - n, &m) != EM_OK) {
            fprintf(stderr, "error: cannot read %s (or a line lacks its 3 tab-separated fields)\n",
                    o->qa_files[i]);
            return 1;
        }
        n += m;
    }
    if (!n) {
        fprintf(stderr, "error: no QA question (--qa FILE)\n");
        return 1;
    }
    FILE *f = lc_open_out(o, "qa_cases.csv", "w");
    if (!f)
        return 1;
    lc_cases_header(f);
    int rc = 0;
    for (int i = 0; i < n && !rc;) { /* consecutive questions on the same document */
        int j = i;
        while (j < n && j - i < 64 && !strcmp(q[j].source, q[i].source))
            j++;
        rc = qa_document(o, e, tok, q + i, j - i, i, f);
        i = j;
    }
    fclose(f);
    return rc;
}
