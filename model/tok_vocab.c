/* The vocabulary both tokenizers share: piece texts and types from the GGUF, a piece -> id
 * hash over all pieces, and the special pieces (longest first) that may be matched in text. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

void tok_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    int n = snprintf(err, errlen, "tokenizer: ");
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

uint32_t tok_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* 1 when c is a hex digit (then *d its value). */
static int hex_digit(char c, int *d)
{
    if (c >= '0' && c <= '9')
        *d = c - '0';
    else if (c >= 'A' && c <= 'F')
        *d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
        *d = c - 'a' + 10;
    else
        return 0;
    return 1;
}

int tok_parse_byte_piece(const char *s, size_t n, uint8_t *byte)
{
    int hi, lo;
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>' || !hex_digit(s[3], &hi) ||
        !hex_digit(s[4], &lo))
        return 0;
    *byte = (uint8_t)(hi * 16 + lo);
    return 1;
}

int32_t tok_vocab_find(const tok_vocab *v, const char *s, size_t n)
{
    for (uint32_t i = tok_hash(s, n) & v->mask;; i = (i + 1) & v->mask) {
        int32_t id = v->slots[i];
        if (id < 0)
            return TOK_ID_NONE;
        size_t len;
        const char *p = tok_piece(v, id, &len);
        if (len == n && memcmp(p, s, n) == 0)
            return id;
    }
}

/* Inserts id; an equal piece already present is replaced (the last id wins). */
static void hash_put(tok_vocab *v, int32_t id)
{
    size_t n;
    const char *s = tok_piece(v, id, &n);
    uint32_t i = tok_hash(s, n) & v->mask;
    for (; v->slots[i] >= 0; i = (i + 1) & v->mask) {
        size_t len;
        const char *p = tok_piece(v, v->slots[i], &len);
        if (len == n && memcmp(p, s, n) == 0)
            break;
    }
    v->slots[i] = id;
}

static const gguf_kv *find_types(const gguf_file *f, uint64_t n)
{
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.token_type");
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_len != n)
        return NULL;
    return kv->arr_type == GGUF_TYPE_INT32 || kv->arr_type == GGUF_TYPE_UINT32 ? kv : NULL;
}

typedef struct {
    uint32_t len;
    int32_t id;
} len_id;

static int longest_first(const void *a, const void *b)
{
    const len_id *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static em_status collect_specials(tok_vocab *v)
{
    len_id *tmp = malloc((size_t)v->n * sizeof *tmp);
    v->specials = malloc((size_t)v->n * sizeof *v->specials);
    if (!tmp || !v->specials) {
        free(tmp);
        return EM_ENOMEM;
    }
    int k = 0;
    for (int32_t id = 0; id < v->n; id++) {
        int ty = v->type[id];
        uint32_t len = v->off[id + 1] - v->off[id];
        if ((ty == TOK_CONTROL || ty == TOK_USER || ty == TOK_UNKNOWN) && len > 0)
            tmp[k++] = (len_id){len, id};
    }
    qsort(tmp, (size_t)k, sizeof *tmp, longest_first);
    for (int i = 0; i < k; i++)
        v->specials[i] = tmp[i].id;
    v->n_specials = k;
    free(tmp);
    return EM_OK;
}

/* Copies the piece texts into one arena; rejects oversized pieces. */
static em_status copy_pieces(tok_vocab *v, const gguf_str *strs, char *err, size_t errlen)
{
    uint64_t total = 0;
    for (int i = 0; i < v->n; i++) {
        if (strs[i].len > TOK_MAX_PIECE) {
            tok_seterr(err, errlen, "piece %d in tokenizer.ggml.tokens is longer than %d bytes", i,
                       TOK_MAX_PIECE);
            return EM_EINVAL;
        }
        total += strs[i].len;
    }
    if (total >= UINT32_MAX) {
        tok_seterr(err, errlen, "vocabulary text too large");
        return EM_EINVAL;
    }
    v->arena = malloc(total + 1);
    if (!v->arena)
        return EM_ENOMEM;
    uint32_t pos = 0;
    for (int i = 0; i < v->n; i++) {
        v->off[i] = pos;
        memcpy(v->arena + pos, strs[i].data, strs[i].len);
        pos += (uint32_t)strs[i].len;
    }
    v->off[v->n] = pos;
    return EM_OK;
}

em_status tok_vocab_load(tok_vocab *v, const gguf_file *f, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    const gguf_kv *tk = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GGUF_TYPE_ARRAY || tk->arr_type != GGUF_TYPE_STRING) {
        tok_seterr(err, errlen, "missing string array tokenizer.ggml.tokens");
        return EM_EINVAL;
    }
    if (tk->arr_len < 1 || tk->arr_len > (1u << 24)) {
        tok_seterr(err, errlen, "vocabulary size out of range (1..16M)");
        return EM_EINVAL;
    }
    v->n = (int)tk->arr_len;
    const gguf_kv *yk = find_types(f, tk->arr_len);
    v->has_types = yk != NULL;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)v->n)
        cap <<= 1;
    v->mask = cap - 1;
    gguf_str *strs = malloc((size_t)v->n * sizeof *strs);
    v->off = malloc(((size_t)v->n + 1) * sizeof *v->off);
    v->type = malloc((size_t)v->n);
    v->slots = malloc((size_t)cap * sizeof *v->slots);
    em_status st = EM_ENOMEM;
    if (!strs || !v->off || !v->type || !v->slots)
        goto out;
    gguf_get_arr_strs(tk, strs);
    if ((st = copy_pieces(v, strs, err, errlen)) != EM_OK)
        goto out;
    memset(v->slots, 0xff, (size_t)cap * sizeof *v->slots);
    for (int i = 0; i < v->n; i++) {
        int32_t ty = TOK_NORMAL;
        if (yk)
            memcpy(&ty, yk->val + 4 * (size_t)i, 4);
        v->type[i] = (uint8_t)(ty >= TOK_NORMAL && ty <= TOK_BYTE ? ty : TOK_UNUSED);
        hash_put(v, i);
    }
    st = collect_specials(v);
out:
    free(strs);
    if (st == EM_ENOMEM)
        tok_seterr(err, errlen, "out of memory");
    if (st != EM_OK)
        tok_vocab_free(v);
    return st;
}

void tok_vocab_free(tok_vocab *v)
{
    free(v->arena);
    free(v->off);
    free(v->type);
    free(v->slots);
    free(v->specials);
    memset(v, 0, sizeof *v);
}
