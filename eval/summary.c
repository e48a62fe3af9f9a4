/* Summarization documents: split into document and reference, and the capped prompt (see
 * summary.h). */
#include "eval/summary.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "eval/needle.h"

/* Start of the line after the one at p (or the end). */
static size_t next_line(const char *t, size_t len, size_t p)
{
    while (p < len && t[p] != '\n')
        p++;
    return p < len ? p + 1 : len;
}

static int blank_line(const char *t, size_t len, size_t p)
{
    while (p < len && t[p] != '\n' && isspace((unsigned char)t[p]))
        p++;
    return p >= len || t[p] == '\n';
}

/* text[a, b) with white space runs collapsed to one space and trimmed, into out[cap]. */
static void collapse(const char *t, size_t a, size_t b, char *out, size_t cap)
{
    size_t k = 0;
    int space = 0;
    for (size_t i = a; i < b && k + 2 < cap; i++) {
        if (isspace((unsigned char)t[i])) {
            space = k > 0;
            continue;
        }
        if (space)
            out[k++] = ' ', space = 0;
        out[k++] = t[i];
    }
    out[k] = 0;
}

static size_t skip_blank(const char *t, size_t len, size_t p)
{
    while (p < len && blank_line(t, len, p))
        p = next_line(t, len, p);
    return p;
}

/* Vim chapter: line 1 the tag, then the "VIM USER MANUAL" line, the title, the intro up to the
 * section list ("|NN.1|"), the body between the first and the last "=====" rule. */
static int split_vim(sd_doc *d, size_t len)
{
    const char *t = d->text;
    size_t p = next_line(t, len, 0);
    p = skip_blank(t, len, p);
    if (!strstr(t + p, "VIM USER MANUAL") ||
        strstr(t + p, "VIM USER MANUAL") > t + next_line(t, len, p))
        return 0;
    p = skip_blank(t, len, next_line(t, len, p));
    size_t title_end = next_line(t, len, p);
    collapse(t, p, title_end, d->title, sizeof d->title);
    size_t a = skip_blank(t, len, title_end), b = a;
    while (b < len && t[b] != '|' && strncmp(t + b, "=====", 5))
        b = next_line(t, len, b);
    collapse(t, a, b, d->ref, sizeof d->ref);
    const char *first = strstr(t + b, "\n====="), *last = first;
    for (const char *q = first; q; q = strstr(q + 1, "\n====="))
        last = q;
    if (!first)
        return 0;
    d->doc = next_line(t, len, (size_t)(first - t) + 1);
    size_t end = last != first ? (size_t)(last - t) : len;
    d->doc_len = end > d->doc ? end - d->doc : 0;
    return 1;
}

/* Any text: the first paragraph, then the rest. */
static void split_plain(sd_doc *d, size_t len)
{
    const char *t = d->text;
    size_t a = skip_blank(t, len, 0), b = a;
    while (b < len && !blank_line(t, len, b))
        b = next_line(t, len, b);
    collapse(t, a, b, d->ref, sizeof d->ref);
    d->doc = skip_blank(t, len, b);
    d->doc_len = len - d->doc;
    snprintf(d->title, sizeof d->title, "%.127s", d->source);
}

em_status sd_load(const char *path, sd_doc *d, char *err, size_t errlen)
{
    size_t len = 0;
    memset(d, 0, sizeof *d);
    em_read_file(path, &d->text, &len); /* on failure d->text stays NULL */
    if (!d->text || !len) {
        snprintf(err, errlen, "summary: cannot read %s (or it is empty)", path);
        sd_free(d);
        return EM_EIO;
    }
    const char *base = strrchr(path, '/');
    snprintf(d->source, sizeof d->source, "%s", base ? base + 1 : path);
    if (strncmp(d->text, "*usr_", 5) || !split_vim(d, len))
        split_plain(d, len);
    /* no blank-only document: at least one non-space byte */
    size_t k = 0;
    while (k < d->doc_len && isspace((unsigned char)d->text[d->doc + k]))
        k++;
    if (!d->ref[0] || k == d->doc_len) {
        snprintf(err, errlen, "summary: %s has no %s", path, d->ref[0] ? "document" : "reference");
        sd_free(d);
        return EM_EINVAL;
    }
    return EM_OK;
}

void sd_free(sd_doc *d)
{
    free(d->text);
    memset(d, 0, sizeof *d);
}

/* Largest cut <= p at a paragraph start (after a blank line), else a line start, else p. */
static size_t cut_before(const char *t, size_t p)
{
    for (size_t q = p; q > 1; q--) {
        if (t[q - 1] == '\n' && t[q - 2] == '\n')
            return q;
    }
    for (size_t q = p; q > 0; q--) {
        if (t[q - 1] == '\n')
            return q;
    }
    return p;
}

em_status sd_prompt(const tokenizer *tok, const sd_doc *d, int cap, int32_t **ids, int *n,
                    size_t *used)
{
    const char *doc = d->text + d->doc;
    int fixed = 0;
    em_status st = nd_summary_prompt(tok, doc, 0, ids, &fixed);
    free(*ids);
    *ids = NULL;
    if (st != EM_OK)
        return st;
    if (fixed >= cap)
        return EM_EINVAL;
    size_t keep = d->doc_len;
    for (;;) {
        st = nd_summary_prompt(tok, doc, keep, ids, n);
        if (st != EM_OK || *n <= cap) {
            *used = keep;
            return st;
        }
        free(*ids);
        *ids = NULL;
        /* proportional guess, walked back to a boundary; always shorter than before */
        size_t guess = (size_t)((double)keep * (cap - fixed) / (*n - fixed) * 0.98);
        size_t c = cut_before(doc, guess < keep ? guess : keep - 1);
        keep = c < keep ? c : keep - 1;
    }
}
