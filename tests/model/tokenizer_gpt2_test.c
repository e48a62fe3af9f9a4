/* The byte-level BPE tokenizer against llama.cpp: every row of tokenizer_table.tsv (made by
 * tokenizer_table/gen_table.py from llama.cpp's own tokenizer) must give exactly llama.cpp's
 * ids, for SmolLM2 (gpt2 / smollm) and stories260K (SentencePiece, the flag combinations of
 * //tools:tokenize). For SmolLM2 also: decoding equals llama_detokenize(special = false) and,
 * where that is the input, the input (round trip); the streaming detokenizer holds characters
 * split across pieces; the API extras; huge, empty and NUL-containing input. Hostile
 * vocabularies (no merges, merges naming unknown pieces, ...) are built in memory.
 * SmolLM2: model_find_default() ($EMSERVE_MODEL or the installed file);
 * where absent its checks print SKIPPED and the rest still runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf_write.h"
#include "model/model.h"
#include "model/tok_utf8.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

#define MAX_IDS 8192

typedef struct {
    char model[16];
    int add, special;
    char *text, *detok;
    size_t text_len, detok_len;
    int32_t ids[MAX_IDS];
    int n_ids;
} row;

/* ---------------------------------------------------------------- the table */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Undoes gen_table.py's escape() in place; returns the length. */
static size_t unescape(char *s)
{
    size_t o = 0;
    for (size_t i = 0; s[i];) {
        if (s[i] != '\\') {
            s[o++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        if (c == 'x' && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
            s[o++] = (char)(hexval(s[i + 2]) * 16 + hexval(s[i + 3]));
            i += 4;
            continue;
        }
        s[o++] = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
        i += 2;
    }
    s[o] = 0;
    return o;
}

/* One tab-separated table row into r (text fields unescaped in place); EM_EINVAL when a
 * field is missing or an id is not a number. */
static em_status parse_row(char *line, row *r)
{
    char *f[6];
    for (int i = 0; i < 6; i++) {
        f[i] = line;
        char *tab = strchr(line, '\t');
        if (i < 5) {
            if (!tab)
                return EM_EINVAL;
            *tab = 0;
            line = tab + 1;
        }
    }
    snprintf(r->model, sizeof r->model, "%s", f[0]);
    r->add = atoi(f[1]);
    r->special = atoi(f[2]);
    r->text = f[3];
    r->text_len = unescape(f[3]);
    r->detok = f[5];
    r->detok_len = unescape(f[5]);
    r->n_ids = 0;
    for (char *p = f[4], *end; *p && r->n_ids < MAX_IDS; p = end) {
        r->ids[r->n_ids++] = (int32_t)strtol(p, &end, 10);
        if (end == p)
            return EM_EINVAL;
    }
    return EM_OK;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = b ? fread(b, 1, (size_t)sz, fp) : 0;
    if (b)
        b[*n] = 0;
    fclose(fp);
    return b;
}

/* Rows of the table (pointers into buf, which is modified). */
static row *load_table(char *buf, int *n_rows)
{
    int cap = 0;
    for (char *p = buf; *p; p++)
        cap += *p == '\n';
    row *rows = calloc((size_t)cap + 1, sizeof *rows);
    int n = 0;
    for (char *line = buf, *nl; line && *line; line = nl) {
        nl = strchr(line, '\n');
        if (nl)
            *nl++ = 0;
        if (line[0] == '#' || !line[0])
            continue;
        CHECK(parse_row(line, &rows[n]) == EM_OK, "malformed table row %d", n + 1);
        n++;
    }
    *n_rows = n;
    return rows;
}

/* ---------------------------------------------------------------- helpers */

static void ids_str(const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n && o + 16 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%d", i ? " " : "", ids[i]);
}

static size_t decode_raw(const tokenizer *t, const int32_t *ids, int n, char *out, size_t cap)
{
    size_t o = 0;
    for (int i = 0; i < n; i++)
        o += tok_piece_bytes(t, i ? ids[i - 1] : -1, ids[i], out + o, cap - o);
    return o;
}

static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        int len;
        if (tok_utf8_scan((const uint8_t *)s + i, n - i, &len) != TOK_UTF8_CHAR)
            return 0;
        i += (size_t)len;
    }
    return 1;
}

static tokenizer *open_tok(const char *path, gguf_file **f)
{
    char err[256];
    if (gguf_open(path, f, err, sizeof err) != EM_OK) {
        CHECK(0, "%s", err);
        return NULL;
    }
    tokenizer *t = NULL;
    CHECK(tok_create(*f, &t, err, sizeof err) == EM_OK, "tok_create %s: %s", path, err);
    return t;
}

/* ---------------------------------------------------------------- table rows */

/* Encodes every row of `model` with //tools:tokenize's flags; returns the rows checked. */
static int check_rows(const tokenizer *t, const char *model, const row *rows, int n_rows)
{
    static int32_t ids[MAX_IDS];
    char got[2048], want[2048];
    int checked = 0, bad = 0;
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        if (strcmp(r->model, model) != 0)
            continue;
        unsigned fl = (r->add && tok_add_bos_default(t) ? TOK_ADD_BOS : 0) |
                      (r->special ? TOK_PARSE_SPECIAL : 0);
        int n = 0;
        em_status st = tok_encode_ex(t, r->text, r->text_len, fl, ids, MAX_IDS, &n);
        checked++;
        if (st == EM_OK && n == r->n_ids && memcmp(ids, r->ids, (size_t)n * sizeof *ids) == 0)
            continue;
        if (bad++ < 8) {
            ids_str(ids, n, got, sizeof got);
            ids_str(r->ids, r->n_ids, want, sizeof want);
            CHECK(0, "%s add=%d special=%d '%.*s': got [%s] want [%s] (st %d)", model, r->add,
                  r->special, (int)r->text_len, r->text, got, want, st);
        }
    }
    CHECK(bad == 0, "%s: %d of %d rows differ from llama.cpp", model, bad, checked);
    printf("%s: %d rows checked, %d match llama.cpp\n", model, checked, checked - bad);
    return checked;
}

/* Decoding of the SmolLM2 rows: pieces == llama_detokenize(special = false), the stream gives
 * the same text in whole characters, and the input comes back where llama.cpp's does. */
static void check_decode(const tokenizer *t, const row *rows, int n_rows)
{
    static char out[1 << 16], delta[8192];
    int round_trips = 0, held = 0;
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        if (strcmp(r->model, "smollm2") != 0)
            continue;
        size_t o = decode_raw(t, r->ids, r->n_ids, out, sizeof out);
        CHECK(o == r->detok_len && memcmp(out, r->detok, o) == 0, "row %d '%.*s': decoded '%.*s'",
              i, (int)r->text_len, r->text, (int)o, out);
        if (r->detok_len == r->text_len && memcmp(r->detok, r->text, r->text_len) == 0)
            round_trips++;
        if (!valid_utf8(r->detok, r->detok_len))
            continue;
        tok_stream s;
        tok_stream_init(&s, t, -1);
        size_t so = 0;
        for (int k = 0; k < r->n_ids; k++) {
            char piece[64];
            size_t pn = tok_piece_bytes(t, -1, r->ids[k], piece, sizeof piece);
            size_t dn = tok_stream_feed(&s, r->ids[k], delta, sizeof delta);
            CHECK(valid_utf8(delta, dn), "row %d: stream delta %d is not whole UTF-8", i, k);
            held += pn > 0 && dn == 0;
            memcpy(out + so, delta, dn);
            so += dn;
        }
        so += tok_stream_flush(&s, out + so, sizeof out - so);
        CHECK(so == r->detok_len && memcmp(out, r->detok, so) == 0, "row %d: stream gave '%.*s'", i,
              (int)so, out);
    }
    /* round trips must be the common case, and some characters must have been split */
    CHECK(round_trips > 180, "only %d rows round-trip", round_trips);
    CHECK(held > 20, "only %d pieces held back a partial character", held);
    printf("smollm2: %d rows round-trip to the input, %d partial characters held by the stream\n",
           round_trips, held);
}

/* 🫨 (U+1FAE8) is three pieces: F0 9F | AB | A8; the stream shows it only on the last. */
static void check_stream_split(const tokenizer *t)
{
    int32_t ids[8];
    int n = 0;
    CHECK(tok_encode_ex(t, "\xf0\x9f\xab\xa8", 4, 0, ids, 8, &n) == EM_OK && n == 3,
          "emoji: %d ids", n);
    tok_stream s;
    tok_stream_init(&s, t, -1);
    char out[16];
    CHECK(tok_stream_feed(&s, ids[0], out, sizeof out) == 0, "first piece held");
    CHECK(tok_stream_feed(&s, ids[1], out, sizeof out) == 0, "second piece held");
    size_t o = tok_stream_feed(&s, ids[2], out, sizeof out);
    CHECK(o == 4 && strcmp(out, "\xf0\x9f\xab\xa8") == 0, "whole character on the third piece");
    /* an unfinished character at the end becomes U+FFFD */
    tok_stream_init(&s, t, -1);
    tok_stream_feed(&s, ids[0], out, sizeof out);
    o = tok_stream_flush(&s, out, sizeof out);
    CHECK(o == 3 && strcmp(out, "\xef\xbf\xbd") == 0, "flush of a partial character: '%s'", out);
    /* control tokens print nothing, user text around them does */
    tok_stream_init(&s, t, -1);
    CHECK(tok_stream_feed(&s, 1, out, sizeof out) == 0, "<|im_start|> prints nothing");
}

static void check_api(const tokenizer *t)
{
    int32_t id = -1;
    CHECK(tok_n_vocab(t) == 49152 && tok_bos(t) == 1 && tok_eos(t) == 2, "vocab %d bos %d eos %d",
          tok_n_vocab(t), tok_bos(t), tok_eos(t));
    CHECK(tok_add_bos_default(t) == 0, "SmolLM2 asks for no BOS");
    CHECK(tok_token_id(t, "<|im_start|>", &id) == EM_OK && id == 1, "<|im_start|> -> %d", id);
    CHECK(tok_token_id(t, "<|im_end|>", &id) == EM_OK && id == 2, "<|im_end|> -> %d", id);
    CHECK(tok_token_id(t, "\xc4\xa0the", &id) == EM_OK && id == 260, "'Ġthe' -> %d", id);
    CHECK(tok_token_id(t, "<|nope|>", &id) == EM_EINVAL && tok_token_id(t, "", &id) == EM_EINVAL,
          "absent pieces");
    CHECK(tok_is_special(t, 0) && tok_is_special(t, 1) && tok_is_special(t, 16) &&
              !tok_is_special(t, 17) && !tok_is_special(t, 260) && !tok_is_special(t, -1) &&
              !tok_is_special(t, 49152),
          "tok_is_special");
    int32_t ids[16];
    int n = -1;
    CHECK(tok_encode_ex(t, "", 0, 0, ids, 4, &n) == EM_OK && n == 0, "empty: %d ids", n);
    CHECK(tok_encode_ex(t, "", 0, TOK_ADD_BOS, ids, 4, &n) == EM_OK && n == 1 && ids[0] == 1,
          "empty + BOS");
    CHECK(tok_encode(t, "<|im_end|>", 10, 0, ids, 16, &n) == EM_OK && n > 1 && ids[0] != 2,
          "tok_encode parses no specials: %d ids", n);
    em_status st = tok_encode_ex(t, "Hello world", 11, 0, ids, 1, &n);
    CHECK(st == EM_ENOSPC && n == 2 && ids[0] == 19556, "ENOSPC: st %d n %d", st, n);
    st = tok_encode_ex(t, "a\0b", 3, 0, ids, 16, &n);
    CHECK(st == EM_OK && n == 3 && ids[1] != ids[0], "NUL inside the text: st %d n %d", st, n);
    st = tok_encode_ex(t, "x", (size_t)1 << 40, 0, ids, 16, &n);
    CHECK(st == EM_EINVAL, "a terabyte of text is refused before it is read: %d", st);
}

/* Megabytes of text: ids of a repeated paragraph are the paragraph's ids repeated (words never
 * cross its final newline), and one 1 MB word round-trips. */
static void check_huge(const tokenizer *t)
{
    const char *para =
        "The quick brown fox (id 42) jumps over \xe2\x80\x9cthe\xe2\x80\x9d lazy dog; "
        "caf\xc3\xa9 \xf0\x9f\x98\x80 x += 1;\n";
    size_t pl = strlen(para), reps = (4u << 20) / pl, len = reps * pl;
    char *big = malloc(len + 1);
    for (size_t r = 0; r < reps; r++)
        memcpy(big + r * pl, para, pl);
    int32_t one[128];
    int n1 = 0, n = 0;
    CHECK(tok_encode_ex(t, para, pl, 0, one, 128, &n1) == EM_OK && n1 > 10, "paragraph: %d ids",
          n1);
    int cap = (int)(reps * (size_t)n1) + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    em_status st = tok_encode_ex(t, big, len, TOK_PARSE_SPECIAL, ids, cap, &n);
    CHECK(st == EM_OK && (size_t)n == reps * (size_t)n1, "4 MB: st %d, %d ids, want %zu", st, n,
          reps * (size_t)n1);
    int same = 1;
    for (size_t r = 0; st == EM_OK && r < reps && same; r++)
        same = memcmp(ids + r * (size_t)n1, one, (size_t)n1 * 4) == 0;
    CHECK(same, "4 MB: a repetition differs");
    memset(big, 'a', 1u << 20);
    st = tok_encode_ex(t, big, 1u << 20, 0, ids, cap, &n);
    CHECK(st == EM_OK && n > 0, "1 MB word: st %d n %d", st, n);
    char *back = malloc((1u << 20) + 64);
    size_t o = st == EM_OK ? decode_raw(t, ids, n, back, (1u << 20) + 64) : 0;
    CHECK(o == (1u << 20) && memcmp(back, big, o) == 0, "1 MB word round trip (%zu bytes)", o);
    free(back);
    free(ids);
    free(big);
}

/* ---------------------------------------------------------------- hostile vocabularies */

static const char *const k_toks[] = {"<|end|>",
                                     "a",
                                     "b",
                                     "c",
                                     "\xc4\xa0",
                                     "ab",
                                     "abc",
                                     "\xc4\xa0"
                                     "a",
                                     "\xc4\x8a"};
static const int32_t k_types[] = {3, 1, 1, 1, 1, 1, 1, 1, 1};
#define N_TOKS 9

typedef struct {
    const char *what;
    const char *model, *pre; /* NULL: key left out */
    const char *merges[4];
    int n_merges; /* -1: key left out */
    em_status want;
    const char *msg; /* substring of the error */
} vcase;

static const vcase k_vocabs[] = {
    {"valid", "gpt2", "gpt-2", {"a b", "ab c", "\xc4\xa0 a"}, 3, EM_OK, ""},
    {"duplicate merge", "gpt2", "gpt-2", {"a b", "a b", "ab c", "\xc4\xa0 a"}, 4, EM_OK, ""},
    {"no merges key", "gpt2", "gpt-2", {0}, -1, EM_EINVAL, "merges"},
    {"empty merges", "gpt2", "gpt-2", {0}, 0, EM_EINVAL, "merges has 0 entries"},
    {"unknown left piece",
     "gpt2",
     "gpt-2",
     {"a b", "q b"},
     2,
     EM_EINVAL,
     "merges[1] 'q b' names a piece missing"},
    {"unknown right piece",
     "gpt2",
     "gpt-2",
     {"a zz"},
     1,
     EM_EINVAL,
     "missing from the vocabulary ('zz')"},
    {"result not a piece", "gpt2", "gpt-2", {"b c"}, 1, EM_EINVAL, "('bc')"},
    {"no space", "gpt2", "gpt-2", {"ab"}, 1, EM_EINVAL, "is not \"left right\""},
    {"leading space only", "gpt2", "gpt-2", {" a"}, 1, EM_EINVAL, "is not \"left right\""},
    {"other pre-tokenizer", "gpt2", "llama-bpe", {"a b"}, 1, EM_EUNSUPPORTED, "'llama-bpe'"},
    {"no pre-tokenizer", "gpt2", NULL, {"a b"}, 1, EM_EUNSUPPORTED, "tokenizer.ggml.pre"},
    {"other model", "bert", "gpt-2", {"a b"}, 1, EM_EUNSUPPORTED, "bert"},
};

static em_status make_vocab(const vcase *c, void **buf, size_t *size)
{
    gguf_writer *w;
    char err[128];
    if (gguf_writer_create(32, &w) != EM_OK)
        return EM_ENOMEM;
    if (c->model)
        gguf_writer_set_str(w, "tokenizer.ggml.model", c->model);
    if (c->pre)
        gguf_writer_set_str(w, "tokenizer.ggml.pre", c->pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", k_toks, N_TOKS);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", k_types, N_TOKS);
    if (c->n_merges >= 0)
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", c->merges, (uint64_t)c->n_merges);
    em_status st = gguf_writer_write_mem(w, NULL, NULL, buf, size, err, sizeof err);
    gguf_writer_free(w);
    return st;
}

static void check_small_vocab(const tokenizer *t, const char *what)
{
    static const struct {
        const char *text;
        unsigned flags;
        const char *ids;
    } k_enc[] = {
        {"abc ab\n", 0, "6 4 5 8"}, /* "abc" by two merges; " ab": a+b (rank 0) before Ġ+a */
        {"a<|end|>", TOK_PARSE_SPECIAL, "1 0"},
        {"a<|end|>", 0, "1"}, /* '<', '|', ... have no pieces: dropped like llama.cpp */
        {"d", 0, ""},
        {" a", 0, "7"},
    };
    for (size_t k = 0; k < sizeof k_enc / sizeof k_enc[0]; k++) {
        int32_t ids[16];
        int n = 0;
        char got[128];
        em_status st =
            tok_encode_ex(t, k_enc[k].text, strlen(k_enc[k].text), k_enc[k].flags, ids, 16, &n);
        ids_str(ids, n, got, sizeof got);
        const char *want = k_enc[k].ids;
        CHECK(st == EM_OK && strcmp(got, want) == 0, "%s: '%s' -> [%s] want [%s]", what,
              k_enc[k].text, got, want);
    }
}

static void check_hostile(void)
{
    for (size_t k = 0; k < sizeof k_vocabs / sizeof k_vocabs[0]; k++) {
        const vcase *c = &k_vocabs[k];
        void *buf = NULL;
        size_t size = 0;
        gguf_file *f = NULL;
        tokenizer *t = NULL;
        char err[256] = "";
        CHECK(make_vocab(c, &buf, &size) == EM_OK &&
                  gguf_open_buffer(buf, size, &f, err, sizeof err) == EM_OK,
              "%s: gguf %s", c->what, err);
        em_status st = f ? tok_create(f, &t, err, sizeof err) : EM_EINVAL;
        CHECK(st == c->want && strstr(err, c->msg) != NULL,
              "%s: status %s, error '%s' (want %s, '%s')", c->what, em_status_str(st), err,
              em_status_str(c->want), c->msg);
        CHECK((st == EM_OK) == (t != NULL), "%s: tokenizer iff OK", c->what);
        if (t)
            check_small_vocab(t, c->what);
        tok_free(t);
        gguf_close(f);
        free(buf);
    }
}

/* ---------------------------------------------------------------- main */

static const char *smollm2_path(void)
{
    return model_find_default();
}

int main(int argc, char **argv)
{
    size_t len = 0;
    char *buf = argc > 1 ? slurp(argv[1], &len) : NULL;
    CHECK(buf != NULL, "cannot read the table %s", argc > 1 ? argv[1] : "(no argument)");
    int n_rows = 0;
    row *rows = buf ? load_table(buf, &n_rows) : NULL;
    CHECK(n_rows >= 250, "table has %d rows", n_rows);
    check_hostile();

    gguf_file *f = NULL;
    const char *sp = model_find_test_small();
    tokenizer *t = sp ? open_tok(sp, &f) : NULL;
    if (t) {
        CHECK(tok_add_bos_default(t) == 1, "stories260K asks for BOS");
        CHECK(check_rows(t, "stories260k", rows, n_rows) == 36, "stories260k rows");
    } else {
        printf("SKIPPED: stories260K rows (model not found)\n");
    }
    tok_free(t);
    gguf_close(f);

    const char *path = smollm2_path();
    if (!path) {
        printf("SKIPPED: SmolLM2 not found (scripts/install-deps.sh installs it, or set "
               "EMSERVE_MODEL)\n");
    } else if ((t = open_tok(path, &f)) != NULL) {
        CHECK(check_rows(t, "smollm2", rows, n_rows) >= 150, "smollm2 rows");
        check_decode(t, rows, n_rows);
        check_stream_split(t);
        check_api(t);
        check_huge(t);
        tok_free(t);
        gguf_close(f);
    }
    free(rows);
    free(buf);
    TEST_END();
}
