/* SentencePiece-style BPE tokenizer (llama.cpp llm_tokenizer_spm semantics) over the GGUF
 * vocabulary: text -> "▁"-escaped UTF-8 characters -> greedy merges of the adjacent pair with the
 * highest-scoring vocabulary piece (ties: leftmost), driven by a binary heap, then <0xXX> byte
 * fallback for characters outside the vocabulary. Also piece decoding. */
#include <stdlib.h>
#include <string.h>

#include "model/tok_heap.h"
#include "model/tok_impl.h"
#include "model/tok_utf8.h"

struct tok_spm {
    float *score;      /* [n] */
    int16_t *byte_val; /* [n] decoded byte of a byte piece, else -1 */
    int32_t byte_id[256];
    int32_t *slots; /* open addressing: mergeable piece -> id (the first of equal pieces) */
    uint32_t mask;
};

static int32_t spm_lookup(const tokenizer *t, const char *s, size_t n)
{
    const tok_spm *m = t->spm;
    for (uint32_t i = tok_hash(s, n) & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slots[i];
        if (id < 0)
            return TOK_ID_NONE;
        size_t len;
        const char *p = tok_piece(&t->v, id, &len);
        if (len == n && memcmp(p, s, n) == 0)
            return id;
    }
}

em_status tok_spm_create(tokenizer *t, const gguf_file *f, char *err, size_t errlen)
{
    tok_vocab *v = &t->v;
    tok_spm *m = calloc(1, sizeof *m);
    if (!m)
        goto oom;
    t->spm = m;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)v->n)
        cap <<= 1;
    m->mask = cap - 1;
    m->score = calloc((size_t)v->n, sizeof *m->score);
    m->byte_val = malloc((size_t)v->n * sizeof *m->byte_val);
    m->slots = malloc((size_t)cap * sizeof *m->slots);
    if (!m->score || !m->byte_val || !m->slots)
        goto oom;
    memset(m->slots, 0xff, (size_t)cap * sizeof *m->slots);
    const gguf_kv *sk = gguf_find_kv(f, "tokenizer.ggml.scores");
    if (sk && (sk->type != GGUF_TYPE_ARRAY || sk->arr_type != GGUF_TYPE_FLOAT32 ||
               sk->arr_len != (uint64_t)v->n))
        sk = NULL;
    for (int i = 0; i < 256; i++)
        m->byte_id[i] = -1;
    for (int i = 0; i < v->n; i++) {
        size_t n;
        const char *s = tok_piece(v, i, &n);
        if (sk)
            memcpy(&m->score[i], sk->val + 4 * (size_t)i, 4);
        uint8_t bv = 0;
        int is_byte = tok_parse_byte_piece(s, n, &bv);
        if (!v->has_types && is_byte)
            v->type[i] = TOK_BYTE;
        m->byte_val[i] = (int16_t)(v->type[i] == TOK_BYTE && is_byte ? bv : -1);
        if (m->byte_val[i] >= 0 && m->byte_id[bv] < 0)
            m->byte_id[bv] = i;
        /* Only normal and user-defined pieces take part in merging (as SentencePiece does):
         * literal "<s>" or "<0x41>" in the text must not turn into control or byte tokens. */
        if ((v->type[i] == TOK_NORMAL || v->type[i] == TOK_USER) && n > 0 &&
            spm_lookup(t, s, n) == TOK_ID_NONE) {
            uint32_t h = tok_hash(s, n) & m->mask;
            while (m->slots[h] >= 0)
                h = (h + 1) & m->mask;
            m->slots[h] = i;
        }
    }
    return EM_OK;
oom:
    tok_seterr(err, errlen, "out of memory");
    return EM_ENOMEM;
}

void tok_spm_free(tok_spm *m)
{
    if (!m)
        return;
    free(m->score);
    free(m->byte_val);
    free(m->slots);
    free(m);
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    int prev, next;
    uint32_t off, len;
} sym;
typedef struct {
    int left, right;
    float score;
    uint32_t len;
} bigram;

/* Max-heap on (score, then smaller left index). */
static int bg_before(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

TOK_HEAP(heap, bigram, bg_before)

/* Queues the merge of symbols l and r when their concatenation is a piece. */
static em_status try_bigram(const tokenizer *t, const char *text, const sym *sy, int l, int r,
                            heap *h)
{
    if (l < 0 || r < 0)
        return EM_OK;
    uint32_t len = sy[l].len + sy[r].len;
    int32_t id = spm_lookup(t, text + sy[l].off, len);
    if (id < 0)
        return EM_OK;
    bigram b = {l, r, t->spm->score[id], len};
    return heap_push(h, b);
}

/* Escapes: optional leading space, then every space as U+2581. */
static size_t escape_spaces(const char *text, size_t len, int add_prefix, char *buf)
{
    size_t bn = 0;
    if (add_prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        bn = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + bn, "\xe2\x96\x81", 3);
            bn += 3;
        } else {
            buf[bn++] = text[i];
        }
    }
    return bn;
}

/* One symbol per UTF-8 character (an invalid or truncated byte on its own). */
static int split_chars(const char *buf, size_t bn, sym *sy)
{
    int ns = 0;
    for (size_t i = 0; i < bn;) {
        int len;
        size_t cl = tok_utf8_scan((const uint8_t *)buf + i, bn - i, &len) == TOK_UTF8_CHAR
                        ? (size_t)len
                        : 1;
        sy[ns].prev = ns - 1;
        sy[ns].next = i + cl < bn ? ns + 1 : -1;
        sy[ns].off = (uint32_t)i;
        sy[ns].len = (uint32_t)cl;
        ns++;
        i += cl;
    }
    return ns;
}

static em_status merge_all(const tokenizer *t, const char *buf, sym *sy, int ns)
{
    heap h = {0};
    em_status st = EM_OK;
    for (int i = 0; i + 1 < ns && st == EM_OK; i++)
        st = try_bigram(t, buf, sy, i, i + 1, &h);
    while (h.n > 0 && st == EM_OK) {
        bigram b = heap_pop(&h);
        sym *l = &sy[b.left], *r = &sy[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.len)
            continue; /* stale */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            sy[r->next].prev = b.left;
        st = try_bigram(t, buf, sy, l->prev, b.left, &h);
        if (st == EM_OK)
            st = try_bigram(t, buf, sy, b.left, l->next, &h);
    }
    free(h.v);
    return st;
}

em_status tok_spm_encode(const tokenizer *t, const char *text, size_t len, int add_prefix,
                         tok_emitter *e)
{
    if (len == 0 && !add_prefix)
        return EM_OK;
    if (len > (SIZE_MAX - 3) / 3 || len > (size_t)INT32_MAX / 4)
        return EM_EINVAL;
    char *buf = malloc(3 * len + 3);
    sym *sy = malloc((len + 1) * sizeof *sy);
    if (!buf || !sy) {
        free(buf);
        free(sy);
        return EM_ENOMEM;
    }
    size_t bn = escape_spaces(text, len, add_prefix, buf);
    int ns = split_chars(buf, bn, sy);
    em_status st = merge_all(t, buf, sy, ns);
    for (int i = 0; st == EM_OK && i >= 0 && ns > 0; i = sy[i].next) {
        int32_t id = spm_lookup(t, buf + sy[i].off, sy[i].len);
        if (id >= 0) {
            tok_emit(e, id);
            continue;
        }
        for (uint32_t k = 0; k < sy[i].len; k++) {
            int32_t bid = t->spm->byte_id[(uint8_t)buf[sy[i].off + k]];
            if (bid >= 0 || t->unk >= 0)
                tok_emit(e, bid >= 0 ? bid : t->unk);
        }
    }
    free(sy);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- decoding */

size_t tok_spm_piece(const tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap)
{
    int ty = t->v.type[id];
    if (ty == TOK_BYTE && t->spm->byte_val[id] >= 0) {
        buf[0] = (char)t->spm->byte_val[id];
        return 1;
    }
    if (ty != TOK_NORMAL && ty != TOK_USER)
        return 0; /* control / unknown / unused: no text */
    size_t n, o = 0;
    const char *p = tok_piece(&t->v, id, &n);
    int first = 1;
    for (size_t i = 0; i < n;) {
        if (ty == TOK_NORMAL && n - i >= 3 && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
            i += 3;
            if (first && prev == t->bos && t->bos >= 0) {
                first = 0;
                continue;
            }
            if (o < cap)
                buf[o++] = ' ';
        } else {
            if (o < cap)
                buf[o++] = p[i];
            i++;
        }
        first = 0;
    }
    return o;
}
