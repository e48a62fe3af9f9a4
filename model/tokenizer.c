/* The tokenizer front end: reads the GGUF tokenizer keys, picks the implementation
 * (SentencePiece tok_spm.c or byte-level BPE tok_bpe.c), splits special-token texts out of the
 * input (llama.cpp's tokenizer_st_partition), adds BOS, and dispatches piece decoding. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "model/tok_impl.h"

static int get_id(const gguf_file *f, const char *key, int def, int n_vocab)
{
    uint32_t v;
    if (gguf_get_u32(f, key, &v) != EM_OK)
        return def;
    return v < (uint32_t)n_vocab ? (int)v : def;
}

static int get_bool(const gguf_file *f, const char *key, int def)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL)
        return def;
    return kv->val[0] != 0;
}

/* tokenizer.ggml.model: "llama" (also when absent) or "gpt2". */
static em_status read_kind(const gguf_file *f, tok_kind *kind, char *err, size_t errlen)
{
    const gguf_kv *mk = gguf_find_kv(f, "tokenizer.ggml.model");
    gguf_str m;
    *kind = TOK_KIND_SPM;
    if (!mk || gguf_get_arr_str(f, mk, 0, &m) != EM_OK)
        return EM_OK;
    if (m.len == 5 && memcmp(m.data, "llama", 5) == 0)
        return EM_OK;
    if (m.len == 4 && memcmp(m.data, "gpt2", 4) == 0) {
        *kind = TOK_KIND_BPE;
        return EM_OK;
    }
    tok_seterr(err, errlen, "unsupported tokenizer.ggml.model: %.*s",
               (int)(m.len < 40 ? m.len : 40), m.data);
    return EM_EUNSUPPORTED;
}

em_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen)
{
    *out = NULL;
    tok_kind kind;
    em_status st = read_kind(f, &kind, err, errlen);
    if (st != EM_OK)
        return st;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        tok_seterr(err, errlen, "out of memory");
        return EM_ENOMEM;
    }
    t->kind = kind;
    if ((st = tok_vocab_load(&t->v, f, err, errlen)) != EM_OK) {
        free(t);
        return st;
    }
    int n = t->v.n, spm = kind == TOK_KIND_SPM;
    t->unk = get_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : TOK_ID_NONE, n);
    t->bos = get_id(f, "tokenizer.ggml.bos_token_id", spm && n > 1 ? 1 : TOK_ID_NONE, n);
    t->eos = get_id(f, "tokenizer.ggml.eos_token_id", spm && n > 2 ? 2 : TOK_ID_NONE, n);
    t->add_bos = get_bool(f, "tokenizer.ggml.add_bos_token", spm);
    t->add_space_prefix = spm && get_bool(f, "tokenizer.ggml.add_space_prefix", 1);
    st = spm ? tok_spm_create(t, f, err, errlen) : tok_bpe_create(t, f, err, errlen);
    if (st != EM_OK) {
        tok_free(t);
        return st;
    }
    *out = t;
    return EM_OK;
}

void tok_free(tokenizer *t)
{
    if (!t)
        return;
    tok_spm_free(t->spm);
    tok_bpe_free(t->bpe);
    tok_vocab_free(&t->v);
    free(t);
}

int tok_n_vocab(const tokenizer *t)
{
    return t->v.n;
}
int tok_bos(const tokenizer *t)
{
    return t->bos;
}
int tok_eos(const tokenizer *t)
{
    return t->eos;
}
int tok_add_bos_default(const tokenizer *t)
{
    return t->add_bos;
}

em_status tok_token_id(const tokenizer *t, const char *piece, int32_t *id)
{
    int32_t i = piece ? tok_vocab_find(&t->v, piece, strlen(piece)) : TOK_ID_NONE;
    if (i == TOK_ID_NONE)
        return EM_EINVAL;
    *id = i;
    return EM_OK;
}

int tok_is_special(const tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->v.n && t->v.type[id] == TOK_CONTROL;
}

/* ---------------------------------------------------------------- special tokens */

/* A stretch of the input: raw text (id < 0) or one special token. */
typedef struct {
    size_t off, len;
    int32_t id;
} frag;
typedef struct {
    frag *v;
    size_t n, cap;
} frag_list;

static em_status frag_add(frag_list *l, size_t off, size_t len, int32_t id)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        frag *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return EM_ENOMEM;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = (frag){off, len, id};
    return EM_OK;
}

/* Splits every raw fragment of *in at each (non-overlapping, leftmost first) occurrence of the
 * special piece id; the result replaces *in. */
static em_status split_on(const tokenizer *t, const char *text, frag_list *in, int32_t id)
{
    size_t pn;
    const char *p = tok_piece(&t->v, id, &pn);
    frag_list out = {0};
    for (size_t i = 0; i < in->n; i++) {
        frag f = in->v[i];
        const char *at = text + f.off, *end = at + f.len, *hit;
        em_status st = EM_OK;
        if (f.id >= 0) {
            st = frag_add(&out, f.off, f.len, f.id);
        } else {
            while (st == EM_OK && (hit = memmem(at, (size_t)(end - at), p, pn)) != NULL) {
                if (hit > at)
                    st = frag_add(&out, (size_t)(at - text), (size_t)(hit - at), -1);
                if (st == EM_OK)
                    st = frag_add(&out, (size_t)(hit - text), pn, id);
                at = hit + pn;
            }
            if (at < end && st == EM_OK)
                st = frag_add(&out, (size_t)(at - text), (size_t)(end - at), -1);
        }
        if (st != EM_OK) {
            free(out.v);
            return st;
        }
    }
    free(in->v);
    *in = out;
    return EM_OK;
}

/* User-defined pieces are always split out (as llama.cpp and HF tokenizers do); control and
 * unknown ones only when parse_special. Longer pieces first. */
static em_status partition(const tokenizer *t, const char *text, size_t len, int parse_special,
                           frag_list *l)
{
    if (len > 0 && frag_add(l, 0, len, -1) != EM_OK)
        return EM_ENOMEM;
    for (int k = 0; k < t->v.n_specials && l->n > 0; k++) {
        int32_t id = t->v.specials[k];
        if (!parse_special && t->v.type[id] != TOK_USER)
            continue;
        em_status st = split_on(t, text, l, id);
        if (st != EM_OK)
            return st;
    }
    return EM_OK;
}

/* ---------------------------------------------------------------- encoding */

em_status tok_encode_ex(const tokenizer *t, const char *text, size_t len, unsigned flags,
                        int32_t *ids, int cap, int *n_out)
{
    tok_emitter e = {ids, cap < 0 ? 0 : cap, 0};
    *n_out = 0;
    if (len > (size_t)INT32_MAX / 4)
        return EM_EINVAL;
    if ((flags & TOK_ADD_BOS) && t->bos >= 0)
        tok_emit(&e, t->bos);
    frag_list l = {0};
    em_status st = partition(t, text, len, (flags & TOK_PARSE_SPECIAL) != 0, &l);
    int prev_special =
        1; /* SentencePiece: a space goes before text at the start or after a special */
    for (size_t i = 0; i < l.n && st == EM_OK; i++) {
        frag f = l.v[i];
        if (f.id >= 0) {
            tok_emit(&e, f.id);
            prev_special = 1;
            continue;
        }
        if (t->kind == TOK_KIND_SPM)
            st = tok_spm_encode(t, text + f.off, f.len, t->add_space_prefix && prev_special, &e);
        else
            st = tok_bpe_encode(t, text + f.off, f.len, &e);
        prev_special = 0;
    }
    free(l.v);
    if (st != EM_OK)
        return st;
    *n_out = e.n;
    return e.n > e.cap ? EM_ENOSPC : EM_OK;
}

em_status tok_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                     int cap, int *n_out)
{
    return tok_encode_ex(t, text, len, add_bos ? TOK_ADD_BOS : 0, ids, cap, n_out);
}

/* ---------------------------------------------------------------- decoding */

/* A piece's stored text bounds its decoded bytes: "\xe2\x96\x81" (SentencePiece) and the
 * byte-level alphabet (GPT-2) both decode to fewer bytes than they take, "<0xAB>" to one. */
size_t tok_max_piece_bytes(const tokenizer *t)
{
    size_t mx = 1;
    for (int id = 0; id < t->v.n; id++) {
        size_t n = t->v.off[id + 1] - t->v.off[id];
        if (n > mx)
            mx = n;
    }
    return mx;
}

size_t tok_piece_bytes(const tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->v.n || cap == 0)
        return 0;
    if (t->kind == TOK_KIND_SPM)
        return tok_spm_piece(t, prev, id, buf, cap);
    return tok_bpe_piece(t, id, buf, cap);
}
