/* Copy of a GGUF file with one vocabulary piece replaced (see gguf_piece.h). Byte surgery on the
 * validated mapping: the header grows by a multiple of the alignment, so the data section, whose
 * tensor offsets are relative to its start, stays aligned and is copied unchanged. */
#include "tests/testutil/gguf_piece.h"

#include <stdio.h>
#include <string.h>

#include "model/gguf.h"

/* Piece text of exactly len bytes: "é" / "ab" pairs, then ASCII padding. */
static void fill_piece(char *p, size_t len)
{
    size_t o = 0;
    for (int k = 0; o + 2 <= len; k++) {
        memcpy(p + o, k % 2 ? "\xc3\xa9" : "ab", 2);
        o += 2;
    }
    if (o < len) {
        p[o++] = 'z';
    }
    p[o] = 0;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static em_status write_parts(const char *dst, const gguf_file *f, size_t cut0, size_t cut1,
                             const char *piece, uint64_t len)
{
    FILE *o = fopen(dst, "wb");
    if (!o) {
        fprintf(stderr, "tu_gguf_replace_piece: cannot write %s\n", dst);
        return EM_EIO;
    }
    const uint8_t *m = f->map;
    int ok = fwrite(m, 1, cut0, o) == cut0 && fwrite(&len, 8, 1, o) == 1 &&
             fwrite(piece, 1, len, o) == len &&
             fwrite(m + cut1, 1, f->size - cut1, o) == f->size - cut1;
    ok &= fclose(o) == 0;
    if (!ok) {
        fprintf(stderr, "tu_gguf_replace_piece: cannot write %s\n", dst);
    }
    return ok ? EM_OK : EM_EIO;
}

em_status tu_gguf_replace_piece(const char *src, const char *dst, int32_t id, size_t min_len,
                                char *piece, size_t cap)
{
    char err[256] = "";
    gguf_file *f = NULL;
    em_status rc = gguf_open(src, &f, err, sizeof err);
    if (rc != EM_OK) {
        fprintf(stderr, "tu_gguf_replace_piece: %s: %s\n", src, err);
        return rc;
    }
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.tokens");
    rc = EM_EINVAL;
    if (!kv || kv->arr_type != GGUF_TYPE_STRING || id < 0 || (uint64_t)id >= kv->arr_len) {
        fprintf(stderr, "tu_gguf_replace_piece: no piece %d in %s\n", (int)id, src);
        goto out;
    }
    const uint8_t *p = kv->val; /* elements: u64 length, then the bytes (validated by gguf_open) */
    for (int32_t i = 0; i < id; i++) {
        p += 8 + get_u64(p);
    }
    size_t cut0 = (size_t)(p - (const uint8_t *)f->map), cut1 = cut0 + 8 + get_u64(p);
    size_t align = f->alignment, len = (size_t)get_u64(p);
    while (len < min_len) {
        len += align; /* the header grows by a multiple of the alignment */
    }
    if (len + 1 > cap) {
        fprintf(stderr, "tu_gguf_replace_piece: piece buffer too small (%zu)\n", len);
        goto out;
    }
    fill_piece(piece, len);
    rc = write_parts(dst, f, cut0, cut1, piece, (uint64_t)len);
out:
    gguf_close(f);
    return rc;
}
