/* Robustness of the GGUF reader, the model loader and the tokenizer against broken files:
 * every truncation of the real stories260K header (and a grid over its data), a few thousand
 * bit flips aimed at counts, string lengths, type fields, dims and offsets (fixed seed), and
 * hand-made hostile headers. Each must give a non-OK status with a message, never a crash
 * (run under --config=asan_ubsan to catch out-of-bounds reads: every buffer is exactly sized). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/quant.h"
#include "model/gguf.h"
#include "model/gguf_write.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/testutil/testutil.h"

static uint8_t *g_orig;
static size_t g_size;

/* Opens buf[0..len) from an exactly sized copy; on success also builds the tokenizer and runs
 * it (a corrupt vocabulary must not crash it). Returns the reader's status. */
static em_status probe_buf(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, buf, len);
    gguf_file *f = NULL;
    err[0] = 0;
    em_status st = gguf_open_buffer(copy, len, &f, err, errlen);
    if (st == EM_OK) {
        tokenizer *t = NULL;
        char terr[256] = "";
        em_status ts = tok_create(f, &t, terr, sizeof terr);
        CHECK(ts == EM_OK || ts == EM_ENOMEM || terr[0], "tok_create failed (%d) without a message",
              ts);
        if (ts == EM_OK) {
            static const char text[] = "Once upon a time, \xe2\x98\x83 \xff!";
            int32_t ids[256];
            int n = 0;
            if (tok_encode(t, text, sizeof text - 1, 1, ids, 256, &n) == EM_OK) {
                tok_stream s;
                char out[4096];
                tok_stream_init(&s, t, ids[0]);
                for (int i = 1; i < n; i++)
                    tok_stream_feed(&s, ids[i], out, sizeof out);
                tok_stream_flush(&s, out, sizeof out);
            }
            tok_free(t);
        }
        gguf_close(f);
    } else {
        CHECK(st == EM_ENOMEM || err[0], "status %d without a message", st);
    }
    free(copy);
    return st;
}

static em_status probe_model(const char *path, char *err, size_t errlen)
{
    model *m = NULL;
    err[0] = 0;
    em_status st = model_load(path, &m, err, errlen);
    if (st != EM_OK)
        CHECK(st == EM_ENOMEM || err[0], "model_load status %d without a message", st);
    model_free(m);
    return st;
}

static void write_all(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(p, 1, n, fp) == n, "writing %s", path);
    if (fp)
        fclose(fp);
}

/* ---------------------------------------------------------------- field map of the real file */

enum {
    F_MAGIC,
    F_VERSION,
    F_COUNT,
    F_KEYLEN,
    F_VTYPE,
    F_ARRTYPE,
    F_ARRLEN,
    F_STRLEN,
    F_TNAMELEN,
    F_NDIMS,
    F_NE,
    F_TTYPE,
    F_OFFSET,
    F_N
};
static const char *const k_kind[F_N] = {
    "magic",      "version",      "count",         "key length",         "value type",
    "array type", "array length", "string length", "tensor name length", "n_dims",
    "ne",         "tensor type",  "offset"};
typedef struct {
    size_t pos, len;
    int kind;
} field;
static field g_fields[4096];
static int g_nf;

static void add_field(size_t pos, size_t len, int kind)
{
    if (g_nf < (int)(sizeof g_fields / sizeof g_fields[0]))
        g_fields[g_nf++] = (field){pos, len, kind};
}

static size_t map_fields(const gguf_file *f)
{
    const uint8_t *b = g_orig;
    add_field(0, 4, F_MAGIC);
    add_field(4, 4, F_VERSION);
    add_field(8, 8, F_COUNT);
    add_field(16, 8, F_COUNT);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        size_t kp = (size_t)((const uint8_t *)kv->key.data - b);
        add_field(kp - 8, 8, F_KEYLEN);
        add_field(kp + kv->key.len, 4, F_VTYPE);
        size_t vp = (size_t)(kv->val - b);
        if (kv->type == GGUF_TYPE_ARRAY) {
            add_field(vp - 12, 4, F_ARRTYPE);
            add_field(vp - 8, 8, F_ARRLEN);
            if (kv->arr_type == GGUF_TYPE_STRING) { /* every 8th element length */
                gguf_str *s = malloc(kv->arr_len * sizeof *s);
                gguf_get_arr_strs(kv, s);
                for (uint64_t j = 0; j < kv->arr_len; j += 8)
                    add_field((size_t)((const uint8_t *)s[j].data - b) - 8, 8, F_STRLEN);
                free(s);
            }
        } else if (kv->type == GGUF_TYPE_STRING) {
            add_field(vp, 8, F_STRLEN);
        }
    }
    size_t data_off = 0, end = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        size_t p = (size_t)((const uint8_t *)t->name.data - b);
        add_field(p - 8, 8, F_TNAMELEN);
        p += t->name.len;
        add_field(p, 4, F_NDIMS);
        p += 4;
        for (uint32_t d = 0; d < t->n_dims; d++, p += 8)
            add_field(p, 8, F_NE);
        add_field(p, 4, F_TTYPE);
        add_field(p + 4, 8, F_OFFSET);
        data_off = (size_t)((const uint8_t *)t->data - b) - t->offset;
        if (t->offset + t->nbytes > end)
            end = t->offset + t->nbytes;
    }
    return data_off + end; /* shortest valid length */
}

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* Whether a flip of `bit` (within the field) must make model_load fail. */
static int must_fail(const field *fd, int bit, uint64_t before)
{
    switch (fd->kind) {
    case F_MAGIC:
    case F_VERSION:
    case F_NE:
    case F_NDIMS:
        return 1;
    case F_COUNT:
        return bit >= 20;
    case F_KEYLEN:
    case F_STRLEN:
    case F_TNAMELEN:
    case F_ARRLEN:
        return bit >= 24;
    case F_OFFSET:
        return bit < 5 || bit >= 21; /* misaligned, or past the 1.2 MB file */
    case F_TTYPE: {
        uint64_t t = before ^ (1ull << bit);
        /* a type the kernels compute with may load (if the shape is whole blocks) */
        return t > 0xffffffffu || !kern_dtype_valid((int)t);
    }
    default:
        return 0;
    }
}

static void test_real_file(void)
{
    char err[512];
    gguf_file *f = NULL;
    if (gguf_open_buffer(g_orig, g_size, &f, err, sizeof err) != EM_OK) {
        CHECK(0, "original does not open: %s", err);
        return;
    }
    size_t min_valid = map_fields(f);
    size_t data_off = (size_t)((const uint8_t *)f->tensors[0].data - g_orig) - f->tensors[0].offset;
    gguf_close(f);
    CHECK(min_valid == g_size && data_off > 10000 && g_nf > 200,
          "min_valid %zu size %zu data_off %zu fields %d", min_valid, g_size, data_off, g_nf);

    /* 1. truncation: every length through the header (+64), then a coarse grid */
    int bad = 0;
    for (size_t len = 0; len < g_size; len += len < data_off + 64 ? 1 : 4093) {
        em_status st = probe_buf(g_orig, len, err, sizeof err);
        if (st == EM_OK && bad++ < 5)
            CHECK(0, "truncated to %zu bytes but accepted", len);
    }
    CHECK(probe_buf(g_orig, g_size, err, sizeof err) == EM_OK, "full file: %s", err);
    char path[1100];
    tu_tmp_path(path, sizeof path, "corrupt.gguf");
    write_all(path, g_orig, g_size);
    for (size_t len = g_size - 1; len > 0; len = len > 20000 ? len - 19997
                                                 : len > 300 ? len - 271
                                                             : len / 2) {
        CHECK(truncate(path, (off_t)len) == 0, "truncate");
        CHECK(probe_model(path, err, sizeof err) != EM_OK,
              "model_load accepted a %zu-byte truncation", len);
    }
    write_all(path, g_orig, g_size);
    CHECK(probe_model(path, err, sizeof err) == EM_OK, "model_load of the intact copy: %s", err);

    /* 2. bit flips: 2/3 aimed at structural fields, 1/3 anywhere in the header, and some in the
     * tensor data (must be accepted: data is not validated). Header flips also go through
     * model_load on a file patched in place. */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open %s", path);
    uint8_t *buf = malloc(g_size);
    memcpy(buf, g_orig, g_size);
    int n_fail_gguf = 0, n_fail_model = 0, per_kind[F_N] = {0};
    const int n_flips = 3000;
    for (int it = 0; it < n_flips + 300; it++) {
        size_t pos;
        int bit, kind = -1;
        uint64_t before = 0;
        const field *fdp = NULL;
        if (it >= n_flips) {
            pos = data_off + rnd() % (g_size - data_off);
            bit = (int)(rnd() % 8);
        } else if (it % 3 != 2) {
            fdp = &g_fields[rnd() % (uint64_t)g_nf];
            int fb = (int)(rnd() % (fdp->len * 8));
            memcpy(&before, g_orig + fdp->pos, fdp->len);
            pos = fdp->pos + (size_t)fb / 8;
            bit = fb % 8;
            kind = fdp->kind;
            per_kind[kind]++;
        } else {
            pos = rnd() % data_off;
            bit = (int)(rnd() % 8);
        }
        buf[pos] ^= (uint8_t)(1u << bit);
        em_status st = probe_buf(buf, g_size, err, sizeof err);
        n_fail_gguf += st != EM_OK;
        if (it >= n_flips) {
            CHECK(st == EM_OK, "data flip at %zu rejected: %s", pos, err);
        } else {
            CHECK(pwrite(fd, &buf[pos], 1, (off_t)pos) == 1, "pwrite");
            em_status ms = probe_model(path, err, sizeof err);
            n_fail_model += ms != EM_OK;
            int fb = fdp ? (int)(pos - fdp->pos) * 8 + bit : 0;
            if (fdp && must_fail(fdp, fb, before))
                CHECK(ms != EM_OK, "flip of bit %d of %s at %zu accepted by model_load", fb,
                      k_kind[kind], pos);
            CHECK(pwrite(fd, &g_orig[pos], 1, (off_t)pos) == 1, "pwrite");
        }
        buf[pos] = g_orig[pos];
    }
    close(fd);
    free(buf);
    printf("bit flips: %d header flips, %d rejected by gguf_open, %d by model_load; per field:",
           n_flips, n_fail_gguf, n_fail_model);
    for (int k = 0; k < F_N; k++)
        printf(" %s %d,", k_kind[k], per_kind[k]);
    printf("\n");
    CHECK(n_fail_model > n_flips / 4, "suspiciously few rejections (%d)", n_fail_model);
    remove(path);
}

/* ---------------------------------------------------------------- hostile headers */

static void hdr(gguf_buf *b, uint64_t nt, uint64_t nkv)
{
    gguf_buf_put(b, "GGUF", 4);
    gguf_buf_u32(b, 3);
    gguf_buf_u64(b, nt);
    gguf_buf_u64(b, nkv);
}

static void kv_u32(gguf_buf *b, const char *k, uint32_t v)
{
    gguf_buf_str(b, k);
    gguf_buf_u32(b, GGUF_TYPE_UINT32);
    gguf_buf_u32(b, v);
}

static void tinfo(gguf_buf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                  uint64_t off)
{
    gguf_buf_str(b, name);
    gguf_buf_u32(b, nd);
    for (uint32_t d = 0; d < nd; d++)
        gguf_buf_u64(b, ne[d]);
    gguf_buf_u32(b, type);
    gguf_buf_u64(b, off);
}

static void data(gguf_buf *b, size_t n)
{
    gguf_buf_pad(b, 32);
    gguf_buf_put(b, NULL, n);
}

static const uint64_t k_ne42[4] = {4, 2, 1, 1};
#define E62 ((uint64_t)1 << 62)

/* One case per value of `c`; returns the expected message fragment ("" = valid file). */
static const char *hostile(int c, gguf_buf *b)
{
    static const uint64_t ne_big[5] = {1ull << 32, 1ull << 32, 1ull << 32, 1ull << 32, 1};
    static const uint64_t ne_ovf[2] = {1ull << 63, 2}, ne_zero[2] = {4, 0}, ne_33[1] = {33};
    switch (c) {
    case 0:
        hdr(b, 1, 1);
        kv_u32(b, "a", 1);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        data(b, 32);
        return "";
    case 1:
        gguf_buf_put(b, "GGUX", 4);
        gguf_buf_u32(b, 3);
        gguf_buf_u64(b, 0);
        gguf_buf_u64(b, 0);
        return "magic";
    case 2:
        gguf_buf_put(b, "GGUF", 4);
        gguf_buf_u32(b, 2);
        gguf_buf_u64(b, 0);
        gguf_buf_u64(b, 0);
        return "version";
    case 3:
        hdr(b, 1ull << 63, 0);
        data(b, 64);
        return "n_tensors";
    case 4:
        hdr(b, 0, 1ull << 63);
        data(b, 64);
        return "n_kv";
    case 5:
        hdr(b, 0, 1);
        gguf_buf_u64(b, E62);
        gguf_buf_put(b, "abcd", 4);
        data(b, 64);
        return "past the end";
    case 6:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_STRING);
        gguf_buf_u64(b, E62);
        data(b, 64);
        return "past the end";
    case 7:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, GGUF_TYPE_STRING);
        gguf_buf_u64(b, E62);
        data(b, 64);
        return "cannot fit";
    case 8:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, GGUF_TYPE_STRING);
        gguf_buf_u64(b, 2);
        gguf_buf_str(b, "x");
        gguf_buf_u64(b, E62);
        data(b, 64);
        return "past the end";
    case 9:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, GGUF_TYPE_UINT32);
        gguf_buf_u64(b, E62);
        data(b, 64);
        return "past the end";
    case 10:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, GGUF_TYPE_UINT64);
        gguf_buf_u64(b, 1ull << 61);
        data(b, 64);
        return "past the end"; /* 2^61 * 8 wraps to 0 */
    case 11:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, 13);
        gguf_buf_u64(b, 0);
        data(b, 64);
        return "unknown";
    case 12:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, 0xffffffffu);
        data(b, 64);
        return "unknown";
    case 13:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u64(b, 1);
        gguf_buf_u32(b, GGUF_TYPE_UINT32);
        gguf_buf_u64(b, 1);
        gguf_buf_u32(b, 7);
        data(b, 64);
        return "nested";
    case 14:
        hdr(b, 0, 1);
        gguf_buf_str(b, "k");
        gguf_buf_u32(b, GGUF_TYPE_ARRAY);
        gguf_buf_u32(b, 99);
        gguf_buf_u64(b, 1);
        data(b, 64);
        return "unknown";
    case 15:
        hdr(b, 1, 0);
        tinfo(b, "t", 5, ne_big, GGML_TYPE_F32, 0);
        data(b, 64);
        return "dimensions";
    case 16:
        hdr(b, 1, 0);
        tinfo(b, "t", 0, ne_big, GGML_TYPE_F32, 0);
        data(b, 64);
        return "dimensions";
    case 17:
        hdr(b, 1, 0);
        tinfo(b, "t", 4, ne_big, GGML_TYPE_F32, 0);
        data(b, 64);
        return "shape";
    case 18:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, ne_ovf, GGML_TYPE_F32, 0);
        data(b, 64);
        return "shape";
    case 19:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, ne_zero, GGML_TYPE_F32, 0);
        data(b, 64);
        return "shape";
    case 20:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 1 << 20);
        data(b, 64);
        return "past the end";
    case 21:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, UINT64_MAX - 31);
        data(b, 64);
        return "past the end";
    case 22:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 32);
        data(b, 60);
        return "past the end";
    case 23:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 4);
        data(b, 64);
        return "misaligned";
    case 24:
        hdr(b, 2, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 32);
        data(b, 64);
        return "duplicate";
    case 25:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, 2 /* q4_0 */, 0);
        data(b, 64);
        return "type";
    case 26:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, 1000, 0);
        data(b, 64);
        return "type";
    case 27:
        hdr(b, 1, 0);
        tinfo(b, "t", 1, ne_33, GGML_TYPE_Q8_0, 0);
        data(b, 64);
        return "type";
    case 28:
        hdr(b, 1, 1);
        gguf_buf_str(b, "general.alignment");
        gguf_buf_u32(b, GGUF_TYPE_STRING);
        gguf_buf_str(b, "32");
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        data(b, 64);
        return "alignment";
    case 29:
        hdr(b, 1, 1);
        kv_u32(b, "general.alignment", 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        data(b, 64);
        return "alignment";
    case 30:
        hdr(b, 1, 1);
        kv_u32(b, "general.alignment", 3);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        data(b, 64);
        return "alignment";
    case 31:
        hdr(b, 1, 1);
        kv_u32(b, "general.alignment", 1u << 31);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        data(b, 64);
        return "alignment";
    case 32:
        hdr(b, 1, 0);
        gguf_buf_u64(b, E62);
        gguf_buf_put(b, "t", 1);
        data(b, 64);
        return "past the end";
    case 33:
        hdr(b, 1, 0);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        return "past the end"; /* no data section */
    case 34:
        hdr(b, 3, 1);
        kv_u32(b, "a", 1);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 0);
        return "n_tensors"; /* 2 infos missing */
    case 35:
        hdr(b, 1, 1);
        kv_u32(b, "general.alignment", 64);
        tinfo(b, "t", 2, k_ne42, GGML_TYPE_F32, 32);
        data(b, 128);
        return "misaligned"; /* aligned to 32 but not to the declared 64 */
    default:
        return NULL;
    }
}

static void test_hostile(void)
{
    char err[512], path[1100];
    tu_tmp_path(path, sizeof path, "hostile.gguf");
    int n = 0;
    for (int c = 0;; c++) {
        gguf_buf b = {0};
        const char *want = hostile(c, &b);
        if (!want)
            break;
        n++;
        em_status st = probe_buf(b.p, b.n, err, sizeof err);
        if (!want[0]) {
            CHECK(st == EM_OK, "valid base case rejected: %s", err);
        } else {
            CHECK(st != EM_OK && strstr(err, want), "case %d: status %d, message '%s' (want '%s')",
                  c, st, err, want);
            write_all(path, b.p, b.n);
            CHECK(probe_model(path, err, sizeof err) != EM_OK, "case %d accepted by model_load", c);
        }
        gguf_buf_free(&b);
    }
    CHECK(n == 36, "%d hostile cases", n);
    remove(path);
}

int main(void)
{
    const char *mp = tu_model_path(1);
    FILE *fp = fopen(mp, "rb");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", mp);
        return 1;
    }
    fseek(fp, 0, SEEK_END);
    g_size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    g_orig = malloc(g_size);
    if (fread(g_orig, 1, g_size, fp) != g_size) {
        fprintf(stderr, "short read\n");
        return 1;
    }
    fclose(fp);
    test_hostile();
    test_real_file();
    free(g_orig);
    TEST_END();
}
