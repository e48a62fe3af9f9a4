/* Tokenizer properties on one input (see tok_check.h). */
#define _GNU_SOURCE /* memmem */
#include "fuzz/tok_check.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"

/* tok_max_piece_bytes scans the vocabulary: once per tokenizer. */
static size_t max_piece(const tokenizer *t)
{
    static const tokenizer *cached;
    static size_t bound;
    if (t != cached) {
        bound = tok_max_piece_bytes(t);
        cached = t;
    }
    return bound;
}

/* Concatenated piece bytes of ids (prev = the previous id: the space after BOS is dropped). */
static char *decode_raw(const tokenizer *t, const int32_t *ids, int n, size_t *len)
{
    size_t per = max_piece(t);
    char *out = malloc(per * (size_t)n + 1);
    size_t o = 0;
    for (int i = 0; out && i < n; i++) {
        size_t k = tok_piece_bytes(t, i ? ids[i - 1] : -1, ids[i], out + o, per);
        if (k > per) {
            fuzz_fail("piece %d wrote %zu bytes, more than the bound %zu", ids[i], k, per);
        }
        o += k;
    }
    *len = o;
    return out;
}

/* The streaming detokenizer's text of ids; every delta must be whole UTF-8 characters. */
static char *decode_stream(const tokenizer *t, const int32_t *ids, int n, size_t *len)
{
    size_t per = max_piece(t) + 16; /* a delta: held bytes, the piece, U+FFFDs */
    char *out = malloc(4 * per * ((size_t)n + 1) + 1);
    tok_stream s;
    tok_stream_init(&s, t, -1);
    size_t o = 0;
    for (int i = 0; out && i <= n; i++) {
        size_t k = i < n ? tok_stream_feed(&s, ids[i], out + o, 4 * per)
                         : tok_stream_flush(&s, out + o, 4 * per);
        if (!fuzz_utf8_valid((const uint8_t *)out + o, k)) {
            fuzz_fail("stream delta %d (%zu bytes) is not whole UTF-8", i, k);
        }
        o += k;
    }
    *len = o;
    return out;
}

static void check_ids(const tokenizer *t, const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok_n_vocab(t)) {
            fuzz_fail("id %d at %d outside the vocabulary of %d", ids[i], i, tok_n_vocab(t));
        }
    }
}

static int all_bytes_ok(const uint8_t *bytes_ok, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!bytes_ok[(uint8_t)s[i]]) {
            return 0;
        }
    }
    return 1;
}

void fuzz_tok_check(const tokenizer *t, int byte_exact, const uint8_t *bytes_ok,
                    const uint8_t *data, size_t size)
{
    if (size == 0) {
        return;
    }
    unsigned flags = (data[0] & 1 ? TOK_ADD_BOS : 0) | (data[0] & 2 ? TOK_PARSE_SPECIAL : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int cap = (int)(len < 64 ? 64 : len), n = 0;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    em_status st = tok_encode_ex(t, text, len, flags, ids, cap, &n);
    if (st == EM_ENOSPC) { /* *n_out is the count it needs */
        if (n <= cap) {
            fuzz_fail("EM_ENOSPC with a count %d that fits %d", n, cap);
        }
        free(ids);
        cap = n;
        ids = malloc(sizeof *ids * (size_t)cap);
        st = tok_encode_ex(t, text, len, flags, ids, cap, &n);
    }
    if (st != EM_OK || n > cap) {
        fuzz_fail("encoding %zu bytes: %s, %d ids for %d slots", len, em_status_str(st), n, cap);
    }
    check_ids(t, ids, n);
    size_t raw_len, stream_len;
    char *raw = decode_raw(t, ids, n, &raw_len);
    char *stream = decode_stream(t, ids, n, &stream_len);
    if (raw == NULL || stream == NULL) {
        fuzz_fail("out of memory");
    }
    if (fuzz_utf8_valid((const uint8_t *)raw, raw_len) &&
        (stream_len != raw_len || memcmp(stream, raw, raw_len) != 0)) {
        fuzz_fail("stream text (%zu bytes) differs from the pieces (%zu bytes)", stream_len,
                  raw_len);
    }
    /* SentencePiece writes spaces as U+2581 "▁": one in the text comes back as a space */
    int promised = !(flags & TOK_PARSE_SPECIAL) &&
                   (byte_exact ? (flags & TOK_ADD_BOS) != 0 && !memmem(text, len, "\xe2\x96\x81", 3)
                               : fuzz_utf8_valid((const uint8_t *)text, len) &&
                                     all_bytes_ok(bytes_ok, text, len));
    if (promised && (raw_len != len || memcmp(raw, text, len) != 0)) {
        fuzz_fail("round trip: %zu bytes in, %zu bytes out ('%.*s' -> '%.*s')", len, raw_len,
                  (int)(len < 80 ? len : 80), text, (int)(raw_len < 80 ? raw_len : 80), raw);
    }
    free(raw);
    free(stream);
    free(ids);
}
