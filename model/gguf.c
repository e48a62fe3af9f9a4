/* GGUF v3 reader with full bounds checking: every read goes through a cursor that fails
 * instead of reading past the end; counts are checked against the bytes that remain. */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/ggml_types.h"

typedef struct cursor {
    const uint8_t *p, *end;
    char *err;
    size_t errlen;
} cursor;

static em_status fail(cursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static em_status fail(cursor *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return EM_EINVAL;
}

static size_t left(const cursor *c)
{
    return (size_t)(c->end - c->p);
}

/* n bytes from the cursor; EM_EINVAL when fewer are left (the file is truncated). */
static em_status rd(cursor *c, void *dst, size_t n)
{
    if (left(c) < n)
        return EM_EINVAL;
    memcpy(dst, c->p, n);
    c->p += n;
    return EM_OK;
}

/* A length-prefixed string (a view into the mapping); EM_EINVAL when it runs past the end. */
static em_status rd_str(cursor *c, gguf_str *s)
{
    uint64_t len;
    if (rd(c, &len, 8) != EM_OK || len > left(c))
        return EM_EINVAL;
    s->len = len;
    s->data = (const char *)c->p;
    c->p += len;
    return EM_OK;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Skips one value of type t; arrays may not nest (GGUF writers never nest them). */
static em_status skip_value(cursor *c, gguf_kv *kv, uint32_t t)
{
    if (t == GGUF_TYPE_STRING) {
        gguf_str s;
        kv->val = c->p;
        if (rd_str(c, &s) != EM_OK) {
            return fail(c, "string value of '%.*s' runs past the end of the file", (int)kv->key.len,
                        kv->key.data);
        }
        return EM_OK;
    }
    if (t == GGUF_TYPE_ARRAY) {
        uint32_t at;
        uint64_t n;
        if (rd(c, &at, 4) != EM_OK || rd(c, &n, 8) != EM_OK) {
            return fail(c, "truncated array header");
        }
        kv->arr_type = (gguf_type)at;
        kv->arr_len = n;
        kv->val = c->p;
        if (at == GGUF_TYPE_ARRAY)
            return fail(c, "nested arrays are not supported");
        if (at == GGUF_TYPE_STRING) {
            if (n > left(c) / 8)
                return fail(c, "array of %llu strings cannot fit in the file",
                            (unsigned long long)n);
            for (uint64_t i = 0; i < n; i++) {
                gguf_str s;
                if (rd_str(c, &s) != EM_OK) {
                    return fail(c, "string %llu of array '%.*s' runs past the end",
                                (unsigned long long)i, (int)kv->key.len, kv->key.data);
                }
            }
            return EM_OK;
        }
        size_t es = scalar_size(at);
        if (!es)
            return fail(c, "array of unknown type %u", at);
        if (n > left(c) / es)
            return fail(c, "array '%.*s' (%llu elements) runs past the end", (int)kv->key.len,
                        kv->key.data, (unsigned long long)n);
        c->p += n * es;
        return EM_OK;
    }
    size_t sz = scalar_size(t);
    if (!sz)
        return fail(c, "key '%.*s' has unknown value type %u", (int)kv->key.len, kv->key.data, t);
    if (left(c) < sz)
        return fail(c, "value of '%.*s' runs past the end", (int)kv->key.len, kv->key.data);
    kv->val = c->p;
    c->p += sz;
    return EM_OK;
}

static int str_eq(gguf_str s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && memcmp(s.data, z, n) == 0;
}

static size_t type_nbytes(uint32_t type, uint64_t nel, int *ok)
{
    ggml_type_info ti = ggml_type_get(type);
    *ok = ti.name != NULL && nel % ti.block_elems == 0;
    return *ok ? (size_t)(nel / ti.block_elems * ti.block_bytes) : 0;
}

/* Duplicate tensor names through a hash set: a pairwise scan is quadratic, and a hostile file
 * of a few MB with ~10^5 tiny tensors would stall the loader for minutes. */
static em_status check_unique_names(cursor *c, const gguf_file *f)
{
    if (f->n_tensors < 2)
        return EM_OK;
    size_t cap = 16;
    while (cap < 2 * f->n_tensors)
        cap <<= 1;
    uint64_t *slot = malloc(cap * sizeof *slot); /* tensor index + 1, 0 = empty */
    if (!slot)
        return EM_ENOMEM;
    memset(slot, 0, cap * sizeof *slot);
    em_status st = EM_OK;
    for (uint64_t i = 0; i < f->n_tensors && st == EM_OK; i++) {
        gguf_str n = f->tensors[i].name;
        uint64_t h = 1469598103934665603ull;
        for (uint64_t k = 0; k < n.len; k++)
            h = (h ^ (uint8_t)n.data[k]) * 1099511628211ull;
        for (size_t j = (size_t)h & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (!slot[j]) {
                slot[j] = i + 1;
                break;
            }
            gguf_str o = f->tensors[slot[j] - 1].name;
            if (o.len == n.len && memcmp(o.data, n.data, n.len) == 0) {
                st = fail(c, "duplicate tensor name '%.*s'", (int)n.len, n.data);
                break;
            }
        }
    }
    free(slot);
    return st;
}

static em_status parse_tensors(cursor *c, gguf_file *f)
{
    const uint64_t max_ne = (uint64_t)1 << 40;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        if (rd_str(c, &t->name) != EM_OK) {
            return fail(c, "tensor %llu: name runs past the end", (unsigned long long)i);
        }
        if (rd(c, &t->n_dims, 4) != EM_OK) {
            return fail(c, "tensor %llu: truncated", (unsigned long long)i);
        }
        if (t->n_dims < 1 || t->n_dims > 4)
            return fail(c, "tensor '%.*s': %u dimensions (1-4 allowed)", (int)t->name.len,
                        t->name.data, t->n_dims);
        uint64_t nel = 1;
        for (int d = 0; d < 4; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (rd(c, &t->ne[d], 8) != EM_OK) {
                return fail(c, "tensor '%.*s': truncated shape", (int)t->name.len, t->name.data);
            }
            if (t->ne[d] == 0 || t->ne[d] > max_ne || nel > max_ne / t->ne[d]) {
                return fail(c, "tensor '%.*s': shape out of range", (int)t->name.len, t->name.data);
            }
            nel *= t->ne[d];
        }
        if (rd(c, &t->type, 4) != EM_OK || rd(c, &t->offset, 8) != EM_OK) {
            return fail(c, "tensor '%.*s': truncated", (int)t->name.len, t->name.data);
        }
        int ok;
        t->nbytes = type_nbytes(t->type, nel, &ok);
        if (!ok && ggml_type_get(t->type).name) {
            return fail(c, "tensor '%.*s': %llu elements are not whole blocks of its type %s",
                        (int)t->name.len, t->name.data, (unsigned long long)nel,
                        ggml_type_get(t->type).name);
        }
        if (!ok)
            return fail(c, "tensor '%.*s': unknown ggml type %u", (int)t->name.len, t->name.data,
                        t->type);
    }
    return check_unique_names(c, f);
}

static em_status parse(const uint8_t *buf, size_t size, gguf_file *f, char *err, size_t errlen)
{
    cursor c = {buf, buf + size, err, errlen};
    char magic[4];
    if (rd(&c, magic, 4) != EM_OK || memcmp(magic, "GGUF", 4) != 0) {
        return fail(&c, "not a GGUF file (bad magic)");
    }
    if (rd(&c, &f->version, 4) != EM_OK)
        return fail(&c, "truncated header");
    if (f->version != 3)
        return fail(&c, "GGUF version %u not supported (need 3)", f->version);
    if (rd(&c, &f->n_tensors, 8) != EM_OK || rd(&c, &f->n_kv, 8) != EM_OK) {
        return fail(&c, "truncated header");
    }
    /* Each kv needs >= 12 bytes, each tensor info >= 8+4+8+4+8 bytes. */
    if (f->n_kv > left(&c) / 12)
        return fail(&c, "n_kv %llu cannot fit in the file", (unsigned long long)f->n_kv);
    if (f->n_tensors > left(&c) / 32)
        return fail(&c, "n_tensors %llu cannot fit in the file", (unsigned long long)f->n_tensors);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors)
        return EM_ENOMEM;
    f->alignment = 32;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        uint32_t t;
        if (rd_str(&c, &kv->key) != EM_OK) {
            return fail(&c, "key %llu runs past the end", (unsigned long long)i);
        }
        if (rd(&c, &t, 4) != EM_OK) {
            return fail(&c, "truncated key/value %llu", (unsigned long long)i);
        }
        kv->type = (gguf_type)t;
        em_status st = skip_value(&c, kv, t);
        if (st != EM_OK)
            return st;
        if (str_eq(kv->key, "general.alignment")) {
            if (t != GGUF_TYPE_UINT32)
                return fail(&c, "general.alignment must be uint32");
            memcpy(&f->alignment, kv->val, 4);
            if (f->alignment == 0 || (f->alignment & (f->alignment - 1)) || f->alignment > 65536) {
                return fail(&c, "bad alignment %u", f->alignment);
            }
        }
    }
    em_status st = parse_tensors(&c, f);
    if (st != EM_OK)
        return st;
    size_t hdr = (size_t)(c.p - buf);
    size_t data_off = (hdr + f->alignment - 1) / f->alignment * f->alignment;
    if (data_off > size)
        return fail(&c, "data section starts past the end of the file");
    size_t data_size = size - data_off;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        if (t->offset % f->alignment)
            return fail(&c, "tensor '%.*s': misaligned offset", (int)t->name.len, t->name.data);
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            return fail(
                &c, "tensor '%.*s': data (offset %llu, %zu bytes) runs past the end of the file",
                (int)t->name.len, t->name.data, (unsigned long long)t->offset, t->nbytes);
        }
        t->data = buf + data_off + t->offset;
    }
    return EM_OK;
}

em_status gguf_open_buffer(const void *buf, size_t size, gguf_file **out, char *err, size_t errlen)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return EM_ENOMEM;
    em_status st = parse(buf, size, f, err, errlen);
    if (st != EM_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return EM_OK;
}

em_status gguf_open(const char *path, gguf_file **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return EM_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return EM_EIO;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 24) {
        snprintf(err, errlen, "%s: file too small for a GGUF header (%zu bytes)", path, size);
        close(fd);
        return EM_EINVAL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return EM_EIO;
    }
    gguf_file *f;
    char why[256] = "";
    em_status st = gguf_open_buffer(map, size, &f, why, sizeof why);
    if (st != EM_OK) {
        snprintf(err, errlen, "%s: %s", path, why);
        munmap(map, size);
        return st;
    }
    f->map = map;
    f->size = size;
    *out = f;
    return EM_OK;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->size);
    free(f->kv);
    free(f->tensors);
    free(f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if (str_eq(f->kv[i].key, key))
            return &f->kv[i];
    }
    return NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        if (str_eq(f->tensors[i].name, name))
            return &f->tensors[i];
    }
    return NULL;
}

em_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *v)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return EM_EINVAL;
    switch (kv->type) {
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32: {
        int32_t x;
        memcpy(&x, kv->val, 4);
        if (kv->type == GGUF_TYPE_INT32 && x < 0)
            return EM_EINVAL;
        *v = (uint32_t)x;
        return EM_OK;
    }
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64: {
        uint64_t x;
        memcpy(&x, kv->val, 8);
        if (x > 0xffffffffu)
            return EM_EINVAL;
        *v = (uint32_t)x;
        return EM_OK;
    }
    case GGUF_TYPE_UINT16: {
        uint16_t x;
        memcpy(&x, kv->val, 2);
        *v = x;
        return EM_OK;
    }
    default:
        return EM_EINVAL;
    }
}

em_status gguf_get_f32(const gguf_file *f, const char *key, float *v)
{
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv)
        return EM_EINVAL;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(v, kv->val, 4);
        return EM_OK;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *v = (float)d;
        return EM_OK;
    }
    return EM_EINVAL;
}

em_status gguf_get_arr_str(const gguf_file *f, const gguf_kv *kv, uint64_t i, gguf_str *s)
{
    (void)f;
    if (!kv)
        return EM_EINVAL;
    if (kv->type == GGUF_TYPE_STRING && i == 0) {
        memcpy(&s->len, kv->val, 8);
        s->data = (const char *)kv->val + 8;
        return EM_OK;
    }
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_len) {
        return EM_EINVAL;
    }
    /* Walk the (already validated) array; callers that need all strings iterate once. */
    const uint8_t *p = kv->val;
    for (uint64_t j = 0;; j++) {
        uint64_t len;
        memcpy(&len, p, 8);
        if (j == i) {
            s->len = len;
            s->data = (const char *)p + 8;
            return EM_OK;
        }
        p += 8 + len;
    }
}

em_status gguf_get_arr_strs(const gguf_kv *kv, gguf_str *out)
{
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return EM_EINVAL;
    const uint8_t *p = kv->val;
    for (uint64_t j = 0; j < kv->arr_len; j++) {
        uint64_t len;
        memcpy(&len, p, 8);
        out[j].len = len;
        out[j].data = (const char *)p + 8;
        p += 8 + len;
    }
    return EM_OK;
}
