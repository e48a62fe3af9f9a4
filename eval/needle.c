/* Needle-in-a-haystack and document-QA prompts and answer scoring (see needle.h). */
#include "eval/needle.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "eval/longctx.h"

static const nd_needle k_needles[] = {
    {"The secret ingredient of the lighthouse soup is saffron.",
     "What is the secret ingredient of the lighthouse soup?", "saffron"},
    {"The password to the old library vault is pineapple.",
     "What is the password to the old library vault?", "pineapple"},
    {"Captain Ortega's parrot is named Biscuit.", "What is the name of Captain Ortega's parrot?",
     "Biscuit"},
    {"The treasure of the mountain village is buried under the walnut tree.",
     "Under which tree is the treasure of the mountain village buried?", "walnut"},
    {"The favourite colour of the baker Ingrid is turquoise.",
     "What is the favourite colour of the baker Ingrid?", "turquoise"},
    {"The night train to Halvard is pulled by an engine called Thunderbolt.",
     "What is the name of the engine that pulls the night train to Halvard?", "Thunderbolt"},
};

static const char k_system[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

const nd_needle *nd_needles(int *n)
{
    *n = (int)(sizeof k_needles / sizeof k_needles[0]);
    return k_needles;
}

/* ---- haystack ------------------------------------------------------------------------ */

em_status nd_haystack_load(const char *const *paths, int n_paths, nd_haystack *h, char *err,
                           size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (n_paths < 1 || n_paths > 8) {
        snprintf(err, errlen, "haystack: 1 to 8 files, not %d", n_paths);
        return EM_EINVAL;
    }
    for (int i = 0; i < n_paths; i++) {
        size_t len = 0;
        char *s = NULL;
        em_read_file(paths[i], &s, &len); /* on failure s stays NULL */
        char *t = s && len ? realloc(h->text, h->len + len + 3) : NULL;
        if (!t) {
            snprintf(err, errlen, "haystack: cannot read %s (or it is empty)", paths[i]);
            free(s);
            nd_haystack_free(h);
            return EM_EIO;
        }
        h->text = t;
        if (h->len)
            memcpy(h->text + h->len, "\n\n", 2), h->len += 2;
        memcpy(h->text + h->len, s, len);
        h->len += len;
        h->text[h->len] = 0;
        free(s);
        const char *base = strrchr(paths[i], '/');
        size_t used = strlen(h->sources);
        snprintf(h->sources + used, sizeof h->sources - used, "%s%s", i ? "+" : "",
                 base ? base + 1 : paths[i]);
    }
    return EM_OK;
}

void nd_haystack_free(nd_haystack *h)
{
    free(h->text);
    memset(h, 0, sizeof *h);
}

/* ---- prompts ------------------------------------------------------------------------- */

/* 1 when a sentence ends right before text[p] (".!?" then white space, or a blank line). */
static int is_boundary(const char *t, size_t len, size_t p)
{
    if (p == 0 || p >= len)
        return 1;
    return (strchr(".!?", t[p - 1]) && isspace((unsigned char)t[p])) ||
           (p >= 2 && t[p - 1] == '\n' && t[p - 2] == '\n');
}

static size_t boundary_at_or_before(const char *t, size_t len, size_t p)
{
    while (p > 0 && !is_boundary(t, len, p))
        p--;
    return p;
}

static char *needle_text(const nd_haystack *h, const nd_needle *nd, size_t cut, double depth)
{
    size_t at = boundary_at_or_before(h->text, cut, (size_t)(depth * (double)cut + 0.5));
    size_t cap = cut + strlen(nd->fact) + strlen(nd->question) + 1024;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    snprintf(s, cap,
             "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\nBelow is a long document. One "
             "sentence in it does not belong to it. Read the document, then answer the "
             "question.\n\n<document>\n%.*s %s %.*s\n</document>\n\nQuestion: %s Answer with "
             "one word.<|im_end|>\n<|im_start|>assistant\n",
             k_system, (int)at, h->text, nd->fact, (int)(cut - at), h->text + at, nd->question);
    return s;
}

static int prompt_tokens(const tokenizer *tok, const nd_haystack *h, const nd_needle *nd,
                         size_t cut, double depth, int32_t **ids)
{
    char *s = needle_text(h, nd, cut, depth);
    int n = -1;
    if (!s || lc_encode(tok, s, ids, &n) != EM_OK)
        n = -1;
    free(s);
    return n;
}

em_status nd_needle_prompt(const tokenizer *tok, const nd_haystack *h, const nd_needle *nd,
                           int tokens, double depth, int32_t **ids, int *n)
{
    *ids = NULL;
    if (!h->text || tokens < 64 || depth < 0 || depth > 1)
        return EM_EINVAL;
    int32_t *tmp = NULL;
    int fixed = prompt_tokens(tok, h, nd, 0, depth, &tmp);
    free(tmp);
    int all = prompt_tokens(tok, h, nd, h->len, depth, &tmp);
    free(tmp);
    if (fixed < 0 || all < 0)
        return EM_ENOMEM;
    if (all < tokens)
        return EM_EINVAL; /* haystack too short */
    /* cut ~ proportional to the haystack tokens wanted, refined, then walked back */
    size_t cut = (size_t)((double)h->len * (tokens - fixed) / (all - fixed));
    for (int it = 0; it < 3; it++) {
        cut = boundary_at_or_before(h->text, h->len, cut < h->len ? cut : h->len);
        int m = prompt_tokens(tok, h, nd, cut, depth, &tmp);
        free(tmp);
        if (m < 0)
            return EM_ENOMEM;
        if (m <= tokens && tokens - m < 16)
            break;
        cut = (size_t)((double)cut * (tokens - fixed) / (m - fixed > 1 ? m - fixed : 1));
    }
    for (;;) {
        cut = boundary_at_or_before(h->text, h->len, cut < h->len ? cut : h->len);
        int m = prompt_tokens(tok, h, nd, cut, depth, ids);
        if (m < 0)
            return EM_ENOMEM;
        if (m <= tokens || cut == 0) {
            *n = m;
            return EM_OK;
        }
        free(*ids);
        *ids = NULL;
        cut = cut > 0 ? cut - 1 : 0;
    }
}

/* The ChatML prompt "task, the document, then tail_label tail" (QA and summary), tokenized. */
static em_status document_prompt(const tokenizer *tok, const char *task, const char *doc,
                                 size_t doc_len, const char *tail_label, const char *tail,
                                 int32_t **ids, int *n)
{
    size_t cap = doc_len + strlen(task) + strlen(tail_label) + strlen(tail) + 1024;
    char *s = malloc(cap);
    *ids = NULL;
    if (!s)
        return EM_ENOMEM;
    snprintf(s, cap,
             "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s\n\n<document>\n%.*s\n"
             "</document>\n\n%s%s<|im_end|>\n<|im_start|>assistant\n",
             k_system, task, (int)doc_len, doc, tail_label, tail);
    em_status st = lc_encode(tok, s, ids, n);
    free(s);
    return st;
}

em_status nd_qa_prompt(const tokenizer *tok, const char *doc, size_t doc_len, const char *question,
                       int32_t **ids, int *n)
{
    return document_prompt(tok,
                           "Read the document below, then answer the question with a short "
                           "phrase copied from the document.",
                           doc, doc_len, "Question: ", question, ids, n);
}

em_status nd_summary_prompt(const tokenizer *tok, const char *doc, size_t doc_len, int32_t **ids,
                            int *n)
{
    return document_prompt(tok, "Read the document below, then summarize it.", doc, doc_len, "",
                           "Write a short summary of the document above in two or three "
                           "sentences: what does it cover?",
                           ids, n);
}

/* ---- scoring ------------------------------------------------------------------------- */

int nd_contains(const char *text, const char *word)
{
    size_t m = strlen(word);
    if (!m)
        return 0;
    for (const char *p = text; *p; p++) {
        size_t k = 0;
        while (k < m && p[k] && tolower((unsigned char)p[k]) == tolower((unsigned char)word[k]))
            k++;
        if (k == m)
            return 1;
    }
    return 0;
}

#define ND_MAX_WORDS 64

/* SQuAD normalisation into words[][32]: lower case, punctuation dropped, articles dropped. */
static int normalize(const char *s, char words[][32])
{
    int n = 0;
    while (*s && n < ND_MAX_WORDS) {
        while (*s && !isalnum((unsigned char)*s))
            s++;
        int k = 0;
        while (*s && !isspace((unsigned char)*s)) {
            if (isalnum((unsigned char)*s) && k < 31)
                words[n][k++] = (char)tolower((unsigned char)*s);
            s++;
        }
        words[n][k] = 0;
        if (k && strcmp(words[n], "a") && strcmp(words[n], "an") && strcmp(words[n], "the"))
            n++;
    }
    return n;
}

double nd_exact_match(const char *pred, const char *ref)
{
    char a[ND_MAX_WORDS][32], b[ND_MAX_WORDS][32];
    int na = normalize(pred, a), nb = normalize(ref, b);
    if (na != nb)
        return 0.0;
    for (int i = 0; i < na; i++) {
        if (strcmp(a[i], b[i]))
            return 0.0;
    }
    return 1.0;
}

double nd_token_f1(const char *pred, const char *ref)
{
    char a[ND_MAX_WORDS][32], b[ND_MAX_WORDS][32];
    int na = normalize(pred, a), nb = normalize(ref, b), used[ND_MAX_WORDS] = {0}, common = 0;
    if (!na || !nb)
        return na == nb ? 1.0 : 0.0;
    for (int i = 0; i < na; i++) {
        for (int j = 0; j < nb; j++) {
            if (!used[j] && !strcmp(a[i], b[j])) {
                used[j] = 1, common++;
                break;
            }
        }
    }
    if (!common)
        return 0.0;
    double p = (double)common / na, r = (double)common / nb;
    return 2 * p * r / (p + r);
}
