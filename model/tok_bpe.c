/* Byte-level BPE tokenizer (tokenizer.ggml.model "gpt2"; llama.cpp llm_tokenizer_bpe
 * semantics). Text -> code points (llama.cpp's lax UTF-8 decoding) -> words (the
 * pre-tokenizer named by tokenizer.ggml.pre, tok_pretok.c) -> per word, its UTF-8 bytes as
 * GPT-2's byte-to-unicode characters, one symbol each -> repeatedly merge the adjacent pair
 * with the lowest rank in tokenizer.ggml.merges (ties: leftmost), driven by a binary heap ->
 * one id per symbol. A character whose piece is missing from the vocabulary is dropped (as
 * llama.cpp does: its fallback looks up single bytes of the character's UTF-8 text, which no
 * byte-level vocabulary has). Every merge must name two pieces of the vocabulary whose
 * concatenation is a piece too (checked at load), so symbols are tracked by id. */
#include <stdlib.h>
#include <string.h>

#include "model/tok_heap.h"
#include "model/tok_impl.h"
#include "model/tok_pretok.h"
#include "model/tok_utf8.h"

#define N_MAPPED_CP 324 /* byte characters are U+0021..U+00FF and U+0100..U+0143 */

typedef struct {
    uint64_t key;
    int32_t rank, result;
} merge_slot; /* key 0 = empty */

struct tok_bpe {
    pretok_kind pre;
    int32_t byte_sym[256];        /* id of the piece of byte b's character, -1 if none */
    int32_t byte_fb[256][2];      /* llama.cpp's fallback: ids of the single-byte pieces of the
                                     character's UTF-8 bytes (-1: none) */
    int16_t cp_byte[N_MAPPED_CP]; /* byte of a byte character, -1 for others */
    merge_slot *slots;
    uint32_t mask;
};

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes in
 * order to U+0100.. */
static uint32_t byte_char(int b, int *n_other)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return (uint32_t)b;
    return 256u + (uint32_t)(*n_other)++;
}

static void build_byte_maps(const tokenizer *t, tok_bpe *b)
{
    int n_other = 0;
    for (int i = 0; i < N_MAPPED_CP; i++)
        b->cp_byte[i] = -1;
    for (int x = 0; x < 256; x++) {
        uint32_t cp = byte_char(x, &n_other);
        char u[4];
        int n = tok_utf8_put(cp, u);
        b->cp_byte[cp] = (int16_t)x;
        b->byte_sym[x] = tok_vocab_find(&t->v, u, (size_t)n);
        for (int k = 0; k < 2; k++)
            b->byte_fb[x][k] = k < n ? tok_vocab_find(&t->v, u + k, 1) : -1;
    }
}

static uint64_t pair_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) + 1; /* never 0 */
}

static uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static const merge_slot *find_merge(const tok_bpe *b, int32_t l, int32_t r)
{
    uint64_t k = pair_key(l, r);
    for (uint32_t i = pair_hash(k) & b->mask;; i = (i + 1) & b->mask) {
        if (b->slots[i].key == k)
            return &b->slots[i];
        if (b->slots[i].key == 0)
            return NULL;
    }
}

/* Parses merge `rank` ("left right", split at the first space after the first byte, as
 * llama.cpp does) and adds it unless the pair is there already (the first rank counts). */
static em_status add_merge(const tokenizer *t, tok_bpe *b, int32_t rank, gguf_str m, char *cat,
                           char *err, size_t errlen)
{
    const char *sp = m.len > 1 ? memchr(m.data + 1, ' ', m.len - 1) : NULL;
    if (!sp || m.len > 2 * TOK_MAX_PIECE + 1) {
        tok_seterr(err, errlen, "tokenizer.ggml.merges[%d] is not \"left right\": '%.*s'", rank,
                   (int)(m.len < 60 ? m.len : 60), m.data);
        return EM_EINVAL;
    }
    size_t nl = (size_t)(sp - m.data), nr = m.len - nl - 1;
    memcpy(cat, m.data, nl);
    memcpy(cat + nl, sp + 1, nr);
    int32_t l = tok_vocab_find(&t->v, m.data, nl), r = tok_vocab_find(&t->v, sp + 1, nr);
    int32_t res = tok_vocab_find(&t->v, cat, nl + nr);
    if (l < 0 || r < 0 || res < 0) {
        tok_seterr(err, errlen,
                   "tokenizer.ggml.merges[%d] '%.*s' names a piece missing from the "
                   "vocabulary ('%.*s')",
                   rank, (int)(m.len < 60 ? m.len : 60), m.data,
                   l < 0   ? (int)(nl < 60 ? nl : 60)
                   : r < 0 ? (int)(nr < 60 ? nr : 60)
                           : (int)(nl + nr < 60 ? nl + nr : 60),
                   l < 0   ? m.data
                   : r < 0 ? sp + 1
                           : cat);
        return EM_EINVAL;
    }
    uint64_t k = pair_key(l, r);
    uint32_t i = pair_hash(k) & b->mask;
    while (b->slots[i].key != 0 && b->slots[i].key != k)
        i = (i + 1) & b->mask;
    if (b->slots[i].key == 0)
        b->slots[i] = (merge_slot){k, rank, res};
    return EM_OK;
}

static em_status load_merges(const tokenizer *t, tok_bpe *b, const gguf_file *f, char *err,
                             size_t errlen)
{
    const gguf_kv *mk = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (!mk || mk->type != GGUF_TYPE_ARRAY || mk->arr_type != GGUF_TYPE_STRING) {
        tok_seterr(err, errlen, "gpt2 tokenizer without the string array tokenizer.ggml.merges");
        return EM_EINVAL;
    }
    if (mk->arr_len == 0 || mk->arr_len > (1u << 24)) {
        tok_seterr(err, errlen, "tokenizer.ggml.merges has %llu entries (need 1..16M)",
                   (unsigned long long)mk->arr_len);
        return EM_EINVAL;
    }
    int n = (int)mk->arr_len;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n)
        cap <<= 1;
    b->mask = cap - 1;
    b->slots = calloc(cap, sizeof *b->slots);
    gguf_str *ms = malloc((size_t)n * sizeof *ms);
    char *cat = malloc(2 * TOK_MAX_PIECE + 2);
    em_status st = EM_ENOMEM;
    if (b->slots && ms && cat) {
        gguf_get_arr_strs(mk, ms);
        st = EM_OK;
        for (int i = 0; i < n && st == EM_OK; i++)
            st = add_merge(t, b, i, ms[i], cat, err, errlen);
    } else {
        tok_seterr(err, errlen, "out of memory");
    }
    free(ms);
    free(cat);
    return st;
}

em_status tok_bpe_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    tok_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        tok_seterr(err, errlen, "out of memory");
        return EM_ENOMEM;
    }
    t->bpe = b;
    const gguf_kv *pk = gguf_find_kv(f, "tokenizer.ggml.pre");
    gguf_str pre = {0, ""};
    if (pk && gguf_get_arr_str(f, pk, 0, &pre) != EM_OK)
        pre = (gguf_str){0, ""};
    if (pretok_from_name(pre.data, pre.len, &b->pre) != EM_OK) {
        /* no name means llama.cpp's "default" regexes, which are not implemented here */
        tok_seterr(err, errlen,
                   "unsupported tokenizer.ggml.pre '%.*s' (supported: the gpt-2 and "
                   "smollm families)",
                   (int)(pre.len < 40 ? pre.len : 40), pre.data);
        return EM_EUNSUPPORTED;
    }
    build_byte_maps(t, b);
    return load_merges(t, b, f, err, errlen);
}

void tok_bpe_free(tok_bpe *b)
{
    if (!b)
        return;
    free(b->slots);
    free(b);
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    int32_t id;
    int prev, next;
    uint32_t len;
    uint8_t byte;
} bsym; /* len: bytes,
 0 = merged away */
typedef struct {
    int32_t rank, result;
    int left, right;
    uint32_t len;
} bpair;

/* Min-heap on (rank, then smaller left index). */
static int bp_before(const bpair *a, const bpair *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

TOK_HEAP(bheap, bpair, bp_before)

typedef struct {
    const tok_bpe *b;
    bsym *sy; /* symbols of the current word */
    size_t sy_cap;
    bheap h;
} bpe_work;

/* Queues the merge of symbols l and r when there is one. */
static em_status push_pair(bpe_work *w, int l, int r)
{
    if (l < 0 || r < 0 || w->sy[l].id < 0 || w->sy[r].id < 0)
        return EM_OK;
    const merge_slot *m = find_merge(w->b, w->sy[l].id, w->sy[r].id);
    if (!m)
        return EM_OK;
    bpair p = {m->rank, m->result, l, r, w->sy[l].len + w->sy[r].len};
    return bheap_push(&w->h, p);
}

/* Merges the symbols sy[0..ns) of one word. */
static em_status merge_word(bpe_work *w, int ns)
{
    bsym *sy = w->sy;
    w->h.n = 0;
    for (int i = 0; i + 1 < ns; i++)
        if (push_pair(w, i, i + 1) != EM_OK)
            return EM_ENOMEM;
    while (w->h.n > 0) {
        bpair p = bheap_pop(&w->h);
        bsym *l = &sy[p.left], *r = &sy[p.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != p.len)
            continue; /* stale */
        l->id = p.result;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            sy[r->next].prev = p.left;
        if (push_pair(w, l->prev, p.left) != EM_OK || push_pair(w, p.left, l->next) != EM_OK)
            return EM_ENOMEM;
    }
    return EM_OK;
}

/* Byte-encodes the word cps[0..n) into symbols, merges them and emits their ids. */
static em_status encode_word(bpe_work *w, const uint32_t *cps, size_t n, tok_emitter *e)
{
    if (n == 0)
        return EM_OK;
    if (4 * n > w->sy_cap) {
        size_t nc = 4 * n > 2 * w->sy_cap ? 4 * n : 2 * w->sy_cap;
        bsym *ns = realloc(w->sy, nc * sizeof *ns);
        if (!ns)
            return EM_ENOMEM;
        w->sy = ns;
        w->sy_cap = nc;
    }
    int ns = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int k = tok_utf8_put(cps[i], u);
        for (int j = 0; j < k; j++, ns++)
            w->sy[ns] = (bsym){w->b->byte_sym[(uint8_t)u[j]], ns - 1, ns + 1, 1, (uint8_t)u[j]};
    }
    w->sy[ns - 1].next = -1;
    em_status st = merge_word(w, ns);
    for (int i = 0; st == EM_OK && i >= 0; i = w->sy[i].next) {
        if (w->sy[i].id >= 0) {
            tok_emit(e, w->sy[i].id);
            continue;
        }
        /* a byte whose character has no piece (merges only yield known pieces) */
        for (int k = 0; k < 2; k++)
            if (w->b->byte_fb[w->sy[i].byte][k] >= 0)
                tok_emit(e, w->b->byte_fb[w->sy[i].byte][k]);
    }
    return st;
}

em_status tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_emitter *e)
{
    if (len == 0)
        return EM_OK;
    if (len > (size_t)INT32_MAX / 4)
        return EM_EINVAL;
    uint32_t *cps = malloc(len * sizeof *cps);
    if (!cps)
        return EM_ENOMEM;
    size_t n = tok_utf8_decode_lax(text, len, cps);
    bpe_work w = {.b = t->bpe};
    pretok_iter it;
    pretok_begin(&it, t->bpe->pre, cps, n);
    size_t s, end;
    em_status st = EM_OK;
    while (st == EM_OK && pretok_next(&it, &s, &end))
        st = encode_word(&w, cps + s, end - s, e);
    free(w.sy);
    free(w.h.v);
    free(cps);
    return st;
}

/* ---------------------------------------------------------------- decoding */

/* A normal piece's text: each character back to its byte. A character outside the byte
 * alphabet (no real vocabulary has one) is copied as is, where llama.cpp writes an
 * "[UNK_BYTE_0x..]" marker. */
static size_t unmap_piece(const tok_bpe *b, const char *p, size_t n, char *buf, size_t cap)
{
    uint32_t cps[TOK_MAX_PIECE];
    size_t nc = tok_utf8_decode_lax(p, n, cps), o = 0;
    for (size_t i = 0; i < nc; i++) {
        char u[4];
        int k = 1;
        if (cps[i] < N_MAPPED_CP && b->cp_byte[cps[i]] >= 0)
            u[0] = (char)b->cp_byte[cps[i]];
        else
            k = tok_utf8_put(cps[i], u);
        if (o + (size_t)k > cap)
            break;
        memcpy(buf + o, u, (size_t)k);
        o += (size_t)k;
    }
    return o;
}

size_t tok_bpe_piece(const tokenizer *t, int32_t id, char *buf, size_t cap)
{
    size_t n;
    const char *p = tok_piece(&t->v, id, &n);
    switch (t->v.type[id]) {
    case TOK_NORMAL:
        return unmap_piece(t->bpe, p, n, buf, cap);
    case TOK_USER:
        if (n > cap)
            n = cap;
        memcpy(buf, p, n);
        return n;
    case TOK_BYTE: {
        uint8_t v;
        if (!tok_parse_byte_piece(p, n, &v) || cap == 0)
            return 0;
        buf[0] = (char)v;
        return 1;
    }
    default: /* control, unknown, unused: no text (llama.cpp with special = false) */
        return 0;
    }
}
