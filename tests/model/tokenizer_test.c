/* Tokenizer tests on the real stories260K vocabulary: golden ids from an independent
 * implementation, decode(encode(x)) == x round trips, the heap-driven BPE against a naive
 * O(n^2) reference merge loop, byte fallback of invalid UTF-8, and the streaming detokenizer
 * (no partial characters, U+FFFD for invalid sequences). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

static const struct {
    const char *text;
    const char *ids;
} k_golden[] = {
    {"Hello world", "1 346 306 414 263 304 341"},
    {"Tom's dog\nnew line", "1 274 287 439 419 400 428 13 416 411 424 278 271 411"},
    {"h\xc3\xa9llo \xc3\xbcn\xc3\xaf"
     "code \xe2\x98\x83",
     "1 270 485 306 414 410 198 191 416 198 178 429 414 418 411 410 229 155 134"},
    {"Once upon a time", "1 403 407 261 378"},
    {"Lily and Ben went to the park. They saw a",
     "1 317 269 368 302 263 377 267 265 282 295 433 426 342 394 261"},
    {"", "1"},
};

static void ids_str(const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o + 12 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", ids[i]);
}

/* Raw decode: concatenated piece bytes (prev = previous id, so the space after BOS is dropped). */
static size_t decode_raw(const tokenizer *t, const int32_t *ids, int n, char *out, size_t cap)
{
    size_t o = 0;
    for (int i = 1; i < n; i++)
        o += tok_piece_bytes(t, ids[i - 1], ids[i], out + o, cap - o);
    return o;
}

/* Streaming decode, feeding one id at a time. */
static size_t decode_stream(const tokenizer *t, const int32_t *ids, int n, char *out, size_t cap)
{
    tok_stream s;
    tok_stream_init(&s, t, ids[0]);
    size_t o = 0;
    for (int i = 1; i < n; i++)
        o += tok_stream_feed(&s, ids[i], out + o, cap - o);
    o += tok_stream_flush(&s, out + o, cap - o);
    return o;
}

/* ---- naive reference BPE: rescan all adjacent pairs after every merge ---- */
typedef struct {
    gguf_str *pieces;
    float *scores;
    int32_t *types;
    int n;
} ref_vocab;

static int ref_lookup(const ref_vocab *v, const char *s, size_t n)
{
    for (int i = 0; i < v->n; i++)
        if ((v->types[i] == 1 || v->types[i] == 4) && v->pieces[i].len == n &&
            memcmp(v->pieces[i].data, s, n) == 0)
            return i;
    return TOK_ID_NONE;
}

static int ref_encode(const ref_vocab *v, const char *text, size_t len, int32_t *ids)
{
    char buf[1024];
    size_t bn = 3;
    memcpy(buf, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + bn, "\xe2\x96\x81", 3);
            bn += 3;
        } else
            buf[bn++] = text[i];
    }
    size_t off[1024], ln[1024];
    int ns = 0;
    for (size_t i = 0; i < bn;) { /* the input of this test is valid UTF-8 */
        uint8_t c = (uint8_t)buf[i];
        size_t cl = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        off[ns] = i;
        ln[ns++] = cl;
        i += cl;
    }
    for (;;) {
        int best = -1;
        float bs = 0;
        for (int i = 0; i + 1 < ns; i++) {
            int id = ref_lookup(v, buf + off[i], ln[i] + ln[i + 1]);
            if (id != TOK_ID_NONE && (best < 0 || v->scores[id] > bs)) {
                best = i;
                bs = v->scores[id];
            }
        }
        if (best < 0)
            break;
        ln[best] += ln[best + 1];
        memmove(off + best + 1, off + best + 2, (size_t)(ns - best - 2) * sizeof off[0]);
        memmove(ln + best + 1, ln + best + 2, (size_t)(ns - best - 2) * sizeof ln[0]);
        ns--;
    }
    int n = 0;
    ids[n++] = 1;
    for (int i = 0; i < ns; i++) {
        int id = ref_lookup(v, buf + off[i], ln[i]);
        if (id != TOK_ID_NONE)
            ids[n++] = id;
        else
            for (size_t k = 0; k < ln[i]; k++)
                ids[n++] = 3 + (uint8_t)buf[off[i] + k];
    }
    return n;
}

static char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, fp);
    b[*n] = 0;
    fclose(fp);
    return b;
}

int main(void)
{
    const char *path = tu_model_path(1);
    char err[256];
    gguf_file *f;
    if (gguf_open(path, &f, err, sizeof err) != EM_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    tokenizer *t;
    if (tok_create(f, &t, err, sizeof err) != EM_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    CHECK(tok_n_vocab(t) == 512 && tok_bos(t) == 1 && tok_eos(t) == 2, "vocab %d bos %d eos %d",
          tok_n_vocab(t), tok_bos(t), tok_eos(t));

    static int32_t ids[40000], ids2[40000];
    static char out[200000], got[4096];
    int n;
    /* 1. golden ids and round trips (raw and streaming) */
    for (size_t k = 0; k < sizeof k_golden / sizeof k_golden[0]; k++) {
        const char *x = k_golden[k].text;
        em_status st = tok_encode(t, x, strlen(x), 1, ids, 100, &n);
        ids_str(ids, n, got, sizeof got);
        CHECK(st == EM_OK && strcmp(got, k_golden[k].ids) == 0, "'%s': got '%s' want '%s'", x, got,
              k_golden[k].ids);
        size_t o = decode_raw(t, ids, n, out, sizeof out);
        CHECK(o == strlen(x) && memcmp(out, x, o) == 0, "raw round trip '%s' -> '%.*s'", x, (int)o,
              out);
        o = decode_stream(t, ids, n, out, sizeof out);
        CHECK(o == strlen(x) && strcmp(out, x) == 0, "stream round trip '%s' -> '%s'", x, out);
    }
    /* 2. the space after BOS is dropped, elsewhere kept */
    char pb[64];
    size_t pn = tok_piece_bytes(t, 1, 346, pb, sizeof pb);
    CHECK(pn == 2 && memcmp(pb, "He", 2) == 0, "piece 346 after BOS: '%.*s'", (int)pn, pb);
    pn = tok_piece_bytes(t, 341, 346, pb, sizeof pb);
    CHECK(pn == 3 && memcmp(pb, " He", 3) == 0, "piece 346 mid-text: '%.*s'", (int)pn, pb);
    CHECK(tok_piece_bytes(t, 0, 1, pb, sizeof pb) == 0 &&
              tok_piece_bytes(t, 0, 2, pb, sizeof pb) == 0 &&
              tok_piece_bytes(t, 0, 512, pb, sizeof pb) == 0 &&
              tok_piece_bytes(t, 0, -1, pb, sizeof pb) == 0,
          "control and out-of-range ids decode to nothing");
    /* 3. ENOSPC: first cap ids written, full count reported */
    em_status st = tok_encode(t, "Hello world", 11, 1, ids, 3, &n);
    CHECK(st == EM_ENOSPC && n == 7 && ids[0] == 1 && ids[1] == 346 && ids[2] == 306,
          "enospc st %d n %d", st, n);
    st = tok_encode(t, "", 0, 0, ids, 0, &n);
    CHECK(st == EM_OK && n == 0, "empty without BOS: st %d n %d", st, n);

    /* 4. streaming: a snowman split over three byte pieces appears whole on the third */
    static const struct {
        int32_t id;
        const char *want;
    } k_snow[] = {
        {410, " "}, {229, ""}, {155, ""}, {134, "\xe2\x98\x83"}, {346, " He"},
    };
    tok_stream s;
    tok_stream_init(&s, t, 341);
    for (size_t i = 0; i < sizeof k_snow / sizeof k_snow[0]; i++) {
        size_t o = tok_stream_feed(&s, k_snow[i].id, out, sizeof out);
        const char *want = k_snow[i].want; /* 410 = "▁": a space, emitted at once */
        CHECK(o == strlen(want) && strcmp(out, want) == 0, "stream step %zu: '%s' want '%s'", i,
              out, want);
    }
    CHECK(tok_stream_flush(&s, out, sizeof out) == 0, "flush after complete text must be empty");
    /* a truncated character at the end becomes one U+FFFD at flush; a broken one at once */
    tok_stream_init(&s, t, 341);
    CHECK(tok_stream_feed(&s, 229, out, sizeof out) == 0 &&
              tok_stream_feed(&s, 155, out, sizeof out) == 0,
          "held");
    CHECK(tok_stream_flush(&s, out, sizeof out) == 3 && strcmp(out, "\xef\xbf\xbd") == 0,
          "flush: '%s'", out);
    tok_stream_init(&s, t, 341);
    CHECK(tok_stream_feed(&s, 229, out, sizeof out) == 0, "held");
    size_t o = tok_stream_feed(&s, 3 + 'A', out, sizeof out);
    CHECK(o == 4 && strcmp(out, "\xef\xbf\xbd"
                                "A") == 0,
          "impossible to complete: '%s'", out);

    /* 5. invalid UTF-8 input: byte fallback round trips the raw bytes; the stream substitutes */
    static const struct {
        const char *in;
        size_t len;
        const char *stream;
    } k_bad[] = {
        {"\xff\xfe a", 4, "\xef\xbf\xbd\xef\xbf\xbd a"},
        {"x\xc3(y", 4, "x\xef\xbf\xbd(y"},
        {"\xe2\x82 end", 6, "\xef\xbf\xbd end"},
        {"tail \xf0\x9f", 7, "tail \xef\xbf\xbd"},
        {"\xed\xa0\x80!", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"}, /* surrogate: 3 maximal subparts */
        {"nul\0byte", 8, NULL},
    };
    for (size_t k = 0; k < sizeof k_bad / sizeof k_bad[0]; k++) {
        st = tok_encode(t, k_bad[k].in, k_bad[k].len, 1, ids, 100, &n);
        o = decode_raw(t, ids, n, out, sizeof out);
        CHECK(st == EM_OK && o == k_bad[k].len && memcmp(out, k_bad[k].in, o) == 0,
              "bad case %zu raw round trip", k);
        if (k_bad[k].stream) {
            o = decode_stream(t, ids, n, out, sizeof out);
            CHECK(strcmp(out, k_bad[k].stream) == 0, "bad case %zu stream '%s'", k, out);
        }
    }

    /* 6. heap BPE == naive reference on chunks of real text; long text round trip */
    char dpath[4096];
    snprintf(dpath, sizeof dpath, "%s", path);
    char *slash = strrchr(dpath, '/');
    if (slash)
        *slash = 0;
    strncat(dpath, "/../data/tinystories_sample.txt", sizeof dpath - strlen(dpath) - 1);
    size_t tn = 0;
    char *text = read_file(dpath, &tn);
    CHECK(text != NULL && tn > 1000, "sample text %s", dpath);
    if (text) {
        ref_vocab rv = {0};
        const gguf_kv *tk = gguf_find_kv(f, "tokenizer.ggml.tokens");
        rv.n = (int)tk->arr_len;
        rv.pieces = malloc((size_t)rv.n * sizeof *rv.pieces);
        rv.scores = malloc((size_t)rv.n * sizeof *rv.scores);
        rv.types = malloc((size_t)rv.n * sizeof *rv.types);
        gguf_get_arr_strs(tk, rv.pieces);
        memcpy(rv.scores, gguf_find_kv(f, "tokenizer.ggml.scores")->val, (size_t)rv.n * 4);
        memcpy(rv.types, gguf_find_kv(f, "tokenizer.ggml.token_type")->val, (size_t)rv.n * 4);
        int chunks = 0, mism = 0;
        for (size_t at = 0; at + 1 < tn; chunks++) {
            size_t cl = 20 + (at * 7919) % 100; /* varied chunk sizes, cut at character starts */
            if (cl > tn - at)
                cl = tn - at;
            while (at + cl < tn && ((uint8_t)text[at + cl] & 0xc0) == 0x80)
                cl++;
            int nr = ref_encode(&rv, text + at, cl, ids2);
            tok_encode(t, text + at, cl, 1, ids, 1000, &n);
            if (n != nr || memcmp(ids, ids2, (size_t)n * 4) != 0) {
                if (mism++ < 3)
                    CHECK(0, "chunk at %zu len %zu: heap %d ids, reference %d ids", at, cl, n, nr);
            }
            at += cl;
        }
        CHECK(mism == 0 && chunks > 30, "%d of %d chunks differ", mism, chunks);
        /* score ties (equal pieces at several places) merge leftmost first: "booo" must give
         * [b][oo][o], not [b][o][oo]; plus whitespace corner cases */
        static const char *k_edge[] = {"booo", "helll", "oooo", "  two  spaces ",
                                       " ",    "a",     "\n\n", "lily's!!!"};
        for (size_t k = 0; k < sizeof k_edge / sizeof k_edge[0]; k++) {
            int nr = ref_encode(&rv, k_edge[k], strlen(k_edge[k]), ids2);
            tok_encode(t, k_edge[k], strlen(k_edge[k]), 1, ids, 1000, &n);
            CHECK(n == nr && memcmp(ids, ids2, (size_t)n * 4) == 0,
                  "edge '%s' differs from reference", k_edge[k]);
            o = decode_stream(t, ids, n, out, sizeof out);
            CHECK(strcmp(out, k_edge[k]) == 0, "edge '%s' round trip '%s'", k_edge[k], out);
        }
        /* ~10k tokens: the sample repeated */
        size_t reps = 40000 / tn + 1, bn = reps * tn;
        char *big = malloc(bn + 1);
        for (size_t r = 0; r < reps; r++)
            memcpy(big + r * tn, text, tn);
        st = tok_encode(t, big, bn, 1, ids, 40000, &n);
        CHECK(st == EM_OK && n > 8000, "long text: st %d n %d", st, n);
        o = decode_stream(t, ids, n, out, sizeof out);
        CHECK(o == bn && memcmp(out, big, bn) == 0, "long text round trip (%zu vs %zu bytes)", o,
              bn);
        free(big);
        free(rv.pieces);
        free(rv.scores);
        free(rv.types);
        free(text);
    }
    tok_free(t);
    gguf_close(f);
    TEST_END();
}
