/* Streaming detokenizer: pieces (tok_piece_bytes) in, text deltas made of complete UTF-8
 * characters out; an incomplete character waits for the next piece, an invalid sequence
 * becomes U+FFFD. */
#include <string.h>

#include "model/tok_impl.h"
#include "model/tok_utf8.h"

void tok_stream_init(tok_stream *s, const tokenizer *t, int32_t prev_id)
{
    memset(s, 0, sizeof *s);
    s->t = t;
    s->prev = prev_id;
}

typedef struct {
    char *out;
    size_t cap, n;
} sink;

static void put(sink *k, const char *p, size_t n)
{
    if (k->cap == 0 || k->n + n > k->cap - 1)
        return; /* never split a character */
    memcpy(k->out + k->n, p, n);
    k->n += n;
}

/* Emits the complete characters of buf; an incomplete but still valid tail is kept in s->pend
 * unless final (then, like any invalid sequence, it becomes one U+FFFD). */
static void drain(tok_stream *s, const char *buf, size_t n, sink *k, int final)
{
    size_t i = 0;
    s->n_pend = 0;
    while (i < n) {
        int len;
        tok_utf8_kind kind = tok_utf8_scan((const uint8_t *)buf + i, n - i, &len);
        if (kind == TOK_UTF8_TRUNCATED && !final) {
            memcpy(s->pend, buf + i, n - i); /* n - i <= 3 */
            s->n_pend = (int)(n - i);
            return;
        }
        if (kind == TOK_UTF8_CHAR) {
            put(k, buf + i, (size_t)len);
        } else {
            put(k, "\xef\xbf\xbd", 3);
        }
        i += (size_t)len;
    }
}

size_t tok_stream_feed(tok_stream *s, int32_t id, char *out, size_t cap)
{
    char buf[8 + TOK_MAX_PIECE];
    int np = s->n_pend;
    memcpy(buf, s->pend, (size_t)np);
    size_t n = (size_t)np + tok_piece_bytes(s->t, s->prev, id, buf + np, TOK_MAX_PIECE);
    s->prev = id;
    sink k = {out, cap, 0};
    drain(s, buf, n, &k, 0);
    if (cap)
        out[k.n] = 0;
    return k.n;
}

size_t tok_stream_flush(tok_stream *s, char *out, size_t cap)
{
    char buf[8];
    int np = s->n_pend;
    memcpy(buf, s->pend, (size_t)np);
    sink k = {out, cap, 0};
    drain(s, buf, (size_t)np, &k, 1);
    if (cap)
        out[k.n] = 0;
    return k.n;
}
