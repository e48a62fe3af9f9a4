/* Word splitting before byte-level BPE, matching llama.cpp's unicode_regex_split for the
 * "gpt2" and "smollm" pre-tokenizer families (see tok_pretok.h). */
#include "model/tok_pretok.h"

#include <string.h>

#include "model/unicode_cat.h"

/* tokenizer.ggml.pre names llama.cpp gives the plain GPT-2 regex / the \p{N} + GPT-2 pair. */
static const char *const k_gpt2_names[] = {
    "gpt-2",      "phi-2",      "jina-es", "jina-de",  "gigachat",
    "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",   "modern-bert",
    "mpt",        "olmo",       "jais",    "trillion", "granite-docling",
};
static const char *const k_smollm_names[] = {
    "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva", "mellum2",
};

static int in_list(const char *const *list, size_t n_list, const char *name, size_t len)
{
    for (size_t i = 0; i < n_list; i++)
        if (strlen(list[i]) == len && memcmp(list[i], name, len) == 0)
            return 1;
    return 0;
}

em_status pretok_from_name(const char *name, size_t len, pretok_kind *out)
{
    if (in_list(k_smollm_names, sizeof k_smollm_names / sizeof *k_smollm_names, name, len)) {
        *out = PRETOK_SMOLLM;
        return EM_OK;
    }
    if (in_list(k_gpt2_names, sizeof k_gpt2_names / sizeof *k_gpt2_names, name, len)) {
        *out = PRETOK_GPT2;
        return EM_OK;
    }
    return EM_EUNSUPPORTED;
}

void pretok_begin(pretok_iter *it, pretok_kind kind, const uint32_t *cps, size_t n)
{
    it->kind = kind;
    it->cps = cps;
    it->n = n;
    it->pos = 0;
    it->chunk_end = 0;
}

/* Classes of the code point at pos, empty outside the current chunk (as llama.cpp's matcher). */
enum { C_NONE = 0, C_LETTER = 1, C_NUMBER = 2, C_SPACE = 3, C_OTHER = 4 };

static int cls(const pretok_iter *it, size_t pos)
{
    if (pos >= it->chunk_end)
        return C_NONE;
    uint32_t cp = it->cps[pos];
    if (ucat_is_space(cp))
        return C_SPACE;
    uint8_t f = ucat_flags(cp);
    return f == UCAT_LETTER ? C_LETTER : f == UCAT_NUMBER ? C_NUMBER : C_OTHER;
}

static int is_number(uint32_t cp)
{
    return ucat_flags(cp) == UCAT_NUMBER;
}

/* One GPT-2 regex match starting at pos (inside the chunk); returns its end. */
static size_t gpt2_match(const pretok_iter *it, size_t pos)
{
    const size_t end = it->chunk_end;
    const uint32_t c = it->cps[pos];
    if (c == '\'' && pos + 1 < end) { /* 's|'t|'re|'ve|'m|'ll|'d */
        uint32_t c1 = it->cps[pos + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return pos + 2;
        if (pos + 2 < end) {
            uint32_t c2 = it->cps[pos + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return pos + 3;
        }
    }
    int k = c == ' ' ? cls(it, pos + 1) : cls(it, pos);
    if (k == C_LETTER || k == C_NUMBER ||
        k == C_OTHER) { /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
        size_t p = pos + (c == ' ');
        while (cls(it, p) == k)
            p++;
        return p;
    }
    size_t n_ws = 0;
    while (cls(it, pos + n_ws) == C_SPACE)
        n_ws++;
    if (n_ws > 1 && pos + n_ws < end)
        return pos + n_ws - 1; /* \s+(?!\S) */
    if (n_ws > 0)
        return pos + n_ws; /* \s+ */
    return pos + 1;
}

int pretok_next(pretok_iter *it, size_t *start, size_t *end)
{
    if (it->pos >= it->n)
        return 0;
    if (it->pos >= it->chunk_end) {
        if (it->kind == PRETOK_SMOLLM && is_number(it->cps[it->pos])) {
            *start = it->pos;
            *end = ++it->pos;
            it->chunk_end = it->pos;
            return 1;
        }
        size_t e = it->pos + 1;
        if (it->kind == PRETOK_SMOLLM)
            while (e < it->n && !is_number(it->cps[e]))
                e++;
        else
            e = it->n;
        it->chunk_end = e;
    }
    *start = it->pos;
    it->pos = gpt2_match(it, it->pos);
    *end = it->pos;
    return 1;
}
