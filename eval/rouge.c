/* ROUGE-1 / ROUGE-2 / ROUGE-L F1 (see rouge.h). */
#include "eval/rouge.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* Token sequence of a text: a lower-cased copy with NUL between tokens, and their starts. */
typedef struct toks {
    char *buf;
    const char **w;
    int n;
} toks;

static int is_tok_char(char c)
{
    return (unsigned char)c < 128 && isalnum((unsigned char)c);
}

static em_status tokenize(const char *s, toks *t)
{
    size_t len = strlen(s);
    t->n = 0;
    t->buf = malloc(len + 1);
    t->w = malloc(sizeof *t->w * (len / 2 + 1));
    if (!t->buf || !t->w)
        return EM_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        if (!is_tok_char(s[i])) {
            i++;
            continue;
        }
        t->w[t->n++] = t->buf + k;
        while (i < len && is_tok_char(s[i]))
            t->buf[k++] = (char)tolower((unsigned char)s[i++]);
        t->buf[k++] = 0;
    }
    return EM_OK;
}

static void toks_free(toks *t)
{
    free(t->buf);
    free(t->w);
}

static int same_gram(const toks *a, int i, const toks *b, int j, int order)
{
    for (int k = 0; k < order; k++) {
        if (strcmp(a->w[i + k], b->w[j + k]))
            return 0;
    }
    return 1;
}

static double f1(int overlap, int n_pred, int n_ref)
{
    if (!overlap)
        return 0.0;
    double p = (double)overlap / n_pred, r = (double)overlap / n_ref;
    return 2 * p * r / (p + r);
}

/* ROUGE-N F1: each reference n-gram is used by at most one prediction n-gram (clipping). */
static em_status rouge_n(const toks *p, const toks *r, int order, double *out)
{
    int np = p->n - order + 1, nr = r->n - order + 1, overlap = 0;
    *out = 0.0;
    if (np < 1 || nr < 1)
        return EM_OK;
    unsigned char *used = calloc((size_t)nr, 1);
    if (!used)
        return EM_ENOMEM;
    for (int i = 0; i < np; i++) {
        for (int j = 0; j < nr; j++) {
            if (!used[j] && same_gram(p, i, r, j, order)) {
                used[j] = 1, overlap++;
                break;
            }
        }
    }
    free(used);
    *out = f1(overlap, np, nr);
    return EM_OK;
}

/* Length of the longest common subsequence (two DP rows). */
static em_status lcs(const toks *a, const toks *b, int *out)
{
    int *prev = calloc((size_t)b->n + 1, sizeof(int)), *cur = calloc((size_t)b->n + 1, sizeof(int));
    *out = 0;
    if (!prev || !cur) {
        free(prev), free(cur);
        return EM_ENOMEM;
    }
    for (int i = 1; i <= a->n; i++) {
        for (int j = 1; j <= b->n; j++) {
            int up = prev[j], left = cur[j - 1];
            cur[j] = !strcmp(a->w[i - 1], b->w[j - 1]) ? prev[j - 1] + 1 : up > left ? up : left;
        }
        int *t = prev;
        prev = cur, cur = t;
    }
    *out = prev[b->n];
    free(prev), free(cur);
    return EM_OK;
}

static int identical(const toks *a, const toks *b)
{
    return a->n == b->n && (a->n == 0 || same_gram(a, 0, b, 0, a->n));
}

em_status rouge_score(const char *pred, const char *ref, rouge_f *out)
{
    toks p = {0}, r = {0};
    memset(out, 0, sizeof *out);
    em_status st = tokenize(pred, &p);
    if (st == EM_OK)
        st = tokenize(ref, &r);
    if (st == EM_OK && identical(&p, &r)) {
        out->r1 = out->r2 = out->rl = 1.0;
    } else if (st == EM_OK) {
        int l = 0;
        st = rouge_n(&p, &r, 1, &out->r1);
        if (st == EM_OK)
            st = rouge_n(&p, &r, 2, &out->r2);
        if (st == EM_OK)
            st = lcs(&p, &r, &l);
        out->rl = p.n && r.n ? f1(l, p.n, r.n) : 0.0;
    }
    if (st != EM_OK)
        memset(out, 0, sizeof *out);
    toks_free(&p);
    toks_free(&r);
    return st;
}
