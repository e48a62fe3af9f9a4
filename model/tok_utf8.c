/* UTF-8 scanning, lax decoding and encoding (see tok_utf8.h). */
#include "model/tok_utf8.h"

tok_utf8_kind tok_utf8_scan(const uint8_t *p, size_t n, int *len)
{
    uint8_t c = p[0];
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    *len = 1;
    if (c < 0x80)
        return TOK_UTF8_CHAR;
    if (c >= 0xc2 && c <= 0xdf) {
        *len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        *len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        *len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else {
        return TOK_UTF8_INVALID;
    }
    for (int k = 1; k < *len; k++) {
        if ((size_t)k >= n) {
            *len = (int)n;
            return TOK_UTF8_TRUNCATED;
        }
        uint8_t b = p[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) {
            *len = k;
            return TOK_UTF8_INVALID;
        }
    }
    return TOK_UTF8_CHAR;
}

/* Length of the form led by c (0 = not a lead byte), as llama.cpp reads the high bits. */
static int lax_len(uint8_t c)
{
    if (!(c & 0x80))
        return 1;
    if (!(c & 0x40))
        return 0;
    if (!(c & 0x20))
        return 2;
    if (!(c & 0x10))
        return 3;
    if (!(c & 0x08))
        return 4;
    return 0;
}

size_t tok_utf8_decode_lax(const char *s, size_t len, uint32_t *cps)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int k = lax_len(p[i]);
        uint32_t cp = k == 1 ? p[i] : k == 2 ? p[i] & 0x1fu : k == 3 ? p[i] & 0x0fu : p[i] & 0x07u;
        int ok = k > 0 && i + (size_t)k <= len;
        for (int j = 1; ok && j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                ok = 0;
            cp = (cp << 6) | (p[i + j] & 0x3fu);
        }
        if (ok && cp > 0x10ffff)
            ok = 0;
        cps[n++] = ok ? cp : 0xfffd;
        i += ok ? (size_t)k : 1;
    }
    return n;
}

int tok_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}
