/* SentencePiece-style BPE tokenizer (llama.cpp llm_tokenizer_spm semantics) over the GGUF
 * vocabulary: text -> "▁"-escaped UTF-8 characters -> greedy merges of the adjacent pair with the
 * highest-scoring vocabulary piece (ties: leftmost), driven by a binary heap, then <0xXX> byte
 * fallback for characters outside the vocabulary. Also piece decoding and a UTF-8-safe stream. */
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

struct tokenizer {
    int n_vocab;
    char *arena;        /* all piece texts, back to back */
    uint32_t *off;      /* [n_vocab + 1] offsets into arena */
    float *score;       /* [n_vocab] */
    uint8_t *type;      /* [n_vocab] */
    int16_t *byte_val;  /* [n_vocab] decoded byte of a byte piece, else -1 */
    int32_t byte_id[256];
    int32_t *slots;     /* open-addressing hash of mergeable pieces -> id, -1 = empty */
    uint32_t mask;
    int bos, eos, unk;
};

/* ---------------------------------------------------------------- construction */

/* One UTF-8 character at p (n bytes available): its length (> 0) when complete and valid; 0 when
 * the bytes are a valid but truncated prefix; -k when the first k bytes form an invalid
 * sequence (maximal subpart, Unicode "substitution of maximal subparts": one U+FFFD each). */
static int utf8_scan(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    int len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return -1;
    }
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return 0;
        uint8_t b = p[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return -k;
    }
    return len;
}

static void seterr(char *err, size_t errlen, const char *msg, const char *detail) {
    if (err && errlen) snprintf(err, errlen, "tokenizer: %s%s", msg, detail ? detail : "");
}

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int32_t lookup(const tokenizer *t, const char *s, size_t n) {
    for (uint32_t i = fnv1a(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        size_t len = t->off[id + 1] - t->off[id];
        if (len == n && memcmp(t->arena + t->off[id], s, n) == 0) return id;
    }
}

/* "<0xAB>" -> 0xAB, else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static const gguf_kv *find_arr(const gguf_file *f, const char *key, gguf_type et, uint64_t n) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != et || kv->arr_len != n) return NULL;
    return kv;
}

static int get_id(const gguf_file *f, const char *key, int def, int n_vocab) {
    uint32_t v;
    if (gguf_get_u32(f, key, &v) != EM_OK || v >= (uint32_t)n_vocab) return def;
    return (int)v;
}

em_status tok_create(const gguf_file *f, tokenizer **out, char *err, size_t errlen) {
    *out = NULL;
    const gguf_kv *mk = gguf_find_kv(f, "tokenizer.ggml.model");
    gguf_str model;
    if (mk && gguf_get_arr_str(f, mk, 0, &model) == EM_OK &&
        !(model.len == 5 && memcmp(model.data, "llama", 5) == 0)) {
        char m[64];
        snprintf(m, sizeof m, "%.*s", (int)(model.len < 40 ? model.len : 40), model.data);
        seterr(err, errlen, "unsupported tokenizer.ggml.model: ", m);
        return EM_EUNSUPPORTED;
    }
    const gguf_kv *tk = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GGUF_TYPE_ARRAY || tk->arr_type != GGUF_TYPE_STRING) {
        seterr(err, errlen, "missing string array tokenizer.ggml.tokens", NULL);
        return EM_EINVAL;
    }
    if (tk->arr_len < 1 || tk->arr_len > (1u << 24)) {
        seterr(err, errlen, "vocabulary size out of range (1..16M)", NULL);
        return EM_EINVAL;
    }
    int n = (int)tk->arr_len;
    const gguf_kv *sk = find_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, tk->arr_len);
    const gguf_kv *yk = find_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, tk->arr_len);
    if (!yk) yk = find_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_UINT32, tk->arr_len);

    gguf_str *strs = NULL;
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->n_vocab = n;
    t->off = malloc(((size_t)n + 1) * sizeof *t->off);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->type = malloc((size_t)n);
    t->byte_val = malloc((size_t)n * sizeof *t->byte_val);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n) cap <<= 1;
    t->mask = cap - 1;
    t->slots = malloc((size_t)cap * sizeof *t->slots);
    if (!t->off || !t->score || !t->type || !t->byte_val || !t->slots) goto oom;
    memset(t->slots, 0xff, (size_t)cap * sizeof *t->slots);

    strs = malloc((size_t)n * sizeof *strs);
    if (!strs) goto oom;
    gguf_get_arr_strs(tk, strs);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (strs[i].len > 4096) {
            seterr(err, errlen, "oversized piece in tokenizer.ggml.tokens", NULL);
            goto fail;
        }
        total += strs[i].len;
    }
    if (total >= UINT32_MAX) {
        seterr(err, errlen, "vocabulary text too large", NULL);
        goto fail;
    }
    t->arena = malloc(total + 1);
    if (!t->arena) goto oom;
    uint32_t pos = 0;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int i = 0; i < n; i++) {
        gguf_str s = strs[i];
        t->off[i] = pos;
        memcpy(t->arena + pos, s.data, s.len);
        pos += (uint32_t)s.len;
        if (sk) memcpy(&t->score[i], sk->val + 4 * (size_t)i, 4);
        int32_t ty = TOK_NORMAL;
        if (yk) memcpy(&ty, yk->val + 4 * (size_t)i, 4);
        int bv = parse_byte_piece(s.data, s.len);
        if (!yk && bv >= 0) ty = TOK_BYTE;
        t->type[i] = (uint8_t)(ty >= TOK_NORMAL && ty <= TOK_BYTE ? ty : TOK_UNUSED);
        t->byte_val[i] = (int16_t)(t->type[i] == TOK_BYTE ? bv : -1);
        if (t->byte_val[i] >= 0 && t->byte_id[bv] < 0) t->byte_id[bv] = i;
        /* Only normal and user-defined pieces take part in merging (as SentencePiece does):
         * literal "<s>" or "<0x41>" in the text must not turn into control or byte tokens. */
        if ((t->type[i] == TOK_NORMAL || t->type[i] == TOK_USER) && s.len > 0 &&
            lookup(t, s.data, s.len) < 0) {
            uint32_t h = fnv1a(s.data, s.len) & t->mask;
            while (t->slots[h] >= 0) h = (h + 1) & t->mask;
            t->slots[h] = i;
        }
    }
    t->off[n] = pos;
    t->unk = get_id(f, "tokenizer.ggml.unknown_token_id", n > 0 ? 0 : -1, n);
    t->bos = get_id(f, "tokenizer.ggml.bos_token_id", n > 1 ? 1 : -1, n);
    t->eos = get_id(f, "tokenizer.ggml.eos_token_id", n > 2 ? 2 : -1, n);
    free(strs);
    *out = t;
    return EM_OK;
oom:
    seterr(err, errlen, "out of memory", NULL);
    free(strs);
    tok_free(t);
    return EM_ENOMEM;
fail:
    free(strs);
    tok_free(t);
    return EM_EINVAL;
}

void tok_free(tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->off);
    free(t->score);
    free(t->type);
    free(t->byte_val);
    free(t->slots);
    free(t);
}

int tok_n_vocab(const tokenizer *t) { return t->n_vocab; }
int tok_bos(const tokenizer *t) { return t->bos; }
int tok_eos(const tokenizer *t) { return t->eos; }

/* ---------------------------------------------------------------- encoding */

typedef struct { int prev, next; uint32_t off, len; } sym;
typedef struct { int left, right; float score; uint32_t len; } bigram;

/* Max-heap on (score, then smaller left index). */
static int bg_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct { bigram *v; size_t n, cap; } heap;

static int heap_push(heap *h, bigram b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 64;
        bigram *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return -1;
        h->v = nv;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return 0;
}

static bigram heap_pop(heap *h) {
    bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && bg_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bg_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static int try_bigram(const tokenizer *t, const char *text, const sym *sy, int l, int r, heap *h) {
    if (l < 0 || r < 0) return 0;
    uint32_t len = sy[l].len + sy[r].len;
    int32_t id = lookup(t, text + sy[l].off, len);
    if (id < 0) return 0;
    bigram b = {l, r, t->score[id], len};
    return heap_push(h, b);
}

typedef struct { int32_t *ids; int cap, n; } emitter;

static void emit(emitter *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

em_status tok_encode(const tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids,
                     int cap, int *n_out) {
    emitter e = {ids, cap < 0 ? 0 : cap, 0};
    *n_out = 0;
    if (add_bos && t->bos >= 0) emit(&e, t->bos);
    if (len > 0) {
        if (len > (SIZE_MAX - 3) / 3 || len > (size_t)INT32_MAX / 4) return EM_EINVAL;
        /* Escape: dummy prefix + spaces -> U+2581. */
        char *buf = malloc(3 * len + 3);
        sym *sy = malloc((len + 1) * sizeof *sy);
        heap h = {0};
        if (!buf || !sy) {
            free(buf);
            free(sy);
            return EM_ENOMEM;
        }
        size_t bn = 0;
        memcpy(buf, "\xe2\x96\x81", 3);
        bn = 3;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                memcpy(buf + bn, "\xe2\x96\x81", 3);
                bn += 3;
            } else {
                buf[bn++] = text[i];
            }
        }
        int ns = 0;
        for (size_t i = 0; i < bn;) {
            int v = utf8_scan((const uint8_t *)buf + i, bn - i);
            size_t cl = v > 0 ? (size_t)v : 1; /* invalid or truncated: one byte on its own */
            sy[ns].prev = ns - 1;
            sy[ns].next = i + cl < bn ? ns + 1 : -1;
            sy[ns].off = (uint32_t)i;
            sy[ns].len = (uint32_t)cl;
            ns++;
            i += cl;
        }
        em_status st = EM_OK;
        for (int i = 0; i + 1 < ns && st == EM_OK; i++)
            if (try_bigram(t, buf, sy, i, i + 1, &h) != 0) st = EM_ENOMEM;
        while (h.n > 0 && st == EM_OK) {
            bigram b = heap_pop(&h);
            sym *l = &sy[b.left], *r = &sy[b.right];
            if (l->len == 0 || r->len == 0 || l->len + r->len != b.len) continue; /* stale */
            l->len += r->len;
            r->len = 0;
            l->next = r->next;
            if (r->next >= 0) sy[r->next].prev = b.left;
            if (try_bigram(t, buf, sy, l->prev, b.left, &h) != 0 ||
                try_bigram(t, buf, sy, b.left, l->next, &h) != 0)
                st = EM_ENOMEM;
        }
        for (int i = 0; st == EM_OK && i >= 0 && ns > 0; i = sy[i].next) {
            int32_t id = lookup(t, buf + sy[i].off, sy[i].len);
            if (id >= 0) {
                emit(&e, id);
                continue;
            }
            for (uint32_t k = 0; k < sy[i].len; k++) {
                int32_t bid = t->byte_id[(uint8_t)buf[sy[i].off + k]];
                emit(&e, bid >= 0 ? bid : t->unk);
            }
        }
        free(h.v);
        free(sy);
        free(buf);
        if (st != EM_OK) return st;
    }
    *n_out = e.n;
    return e.n > e.cap ? EM_ENOSPC : EM_OK;
}

/* ---------------------------------------------------------------- decoding */

size_t tok_piece_bytes(const tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap) {
    if (id < 0 || id >= t->n_vocab || cap == 0) return 0;
    int ty = t->type[id];
    if (ty == TOK_BYTE && t->byte_val[id] >= 0) {
        buf[0] = (char)t->byte_val[id];
        return 1;
    }
    if (ty != TOK_NORMAL && ty != TOK_USER) return 0; /* control / unknown / unused: no text */
    const char *p = t->arena + t->off[id];
    size_t n = t->off[id + 1] - t->off[id], o = 0;
    int first = 1;
    for (size_t i = 0; i < n;) {
        if (ty == TOK_NORMAL && n - i >= 3 && memcmp(p + i, "\xe2\x96\x81", 3) == 0) {
            i += 3;
            if (first && prev == t->bos && t->bos >= 0) { first = 0; continue; }
            if (o < cap) buf[o++] = ' ';
        } else {
            if (o < cap) buf[o++] = p[i];
            i++;
        }
        first = 0;
    }
    return o;
}

size_t tok_max_piece_bytes(const tokenizer *t) {
    size_t mx = 1; /* a byte piece */
    for (int id = 0; id < t->n_vocab; id++) {
        size_t n = t->off[id + 1] - t->off[id]; /* "\xe2\x96\x81" decodes to 1 byte: a bound */
        if (n > mx) mx = n;
    }
    return mx;
}

void tok_stream_init(tok_stream *s, const tokenizer *t, int32_t prev_id) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->prev = prev_id;
}

typedef struct { char *out; size_t cap, n; } sink;

static void put(sink *k, const char *p, size_t n) {
    if (k->cap == 0 || k->n + n > k->cap - 1) return; /* never split a character */
    memcpy(k->out + k->n, p, n);
    k->n += n;
}

/* Emits the complete characters of buf; an incomplete but still valid tail is kept in s->pend
 * unless final (then, like any invalid sequence, it becomes one U+FFFD). */
static void drain(tok_stream *s, const char *buf, size_t n, sink *k, int final) {
    size_t i = 0;
    s->n_pend = 0;
    while (i < n) {
        int v = utf8_scan((const uint8_t *)buf + i, n - i);
        if (v == 0 && !final) {
            memcpy(s->pend, buf + i, n - i); /* n - i <= 3 */
            s->n_pend = (int)(n - i);
            return;
        }
        if (v > 0) {
            put(k, buf + i, (size_t)v);
            i += (size_t)v;
        } else {
            put(k, "\xef\xbf\xbd", 3);
            i += v == 0 ? n - i : (size_t)-v;
        }
    }
}

size_t tok_stream_feed(tok_stream *s, int32_t id, char *out, size_t cap) {
    char buf[8 + 4096];
    int np = s->n_pend;
    memcpy(buf, s->pend, (size_t)np);
    size_t n = (size_t)np + tok_piece_bytes(s->t, s->prev, id, buf + np, sizeof buf - 8);
    s->prev = id;
    sink k = {out, cap, 0};
    drain(s, buf, n, &k, 0);
    if (cap) out[k.n] = 0;
    return k.n;
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap) {
    char buf[8];
    int np = s->n_pend;
    memcpy(buf, s->pend, (size_t)np);
    sink k = {out, cap, 0};
    drain(s, buf, (size_t)np, &k, 1);
    if (cap) out[k.n] = 0;
    return k.n;
}
