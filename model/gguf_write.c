/* GGUF v3 writer (see gguf_write.h): metadata is serialised as it is added; tensor infos are
 * laid out at write time with each tensor's data aligned; data comes from caller buffers or from
 * a fill callback into one scratch buffer reused across tensors. */
#include "model/gguf_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant.h"
#include "model/ggml_types.h"

/* ---------------------------------------------------------------- byte builder */

void gguf_buf_put(gguf_buf *b, const void *data, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n > SIZE_MAX / 2 - b->n) {
        b->oom = 1;
        return;
    }
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n)
            nc *= 2;
        uint8_t *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    if (data)
        memcpy(b->p + b->n, data, n);
    else
        memset(b->p + b->n, 0, n);
    b->n += n;
}

void gguf_buf_u32(gguf_buf *b, uint32_t v)
{
    gguf_buf_put(b, &v, 4);
} /* x86/arm: LE */
void gguf_buf_u64(gguf_buf *b, uint64_t v)
{
    gguf_buf_put(b, &v, 8);
}

void gguf_buf_str(gguf_buf *b, const char *s)
{
    size_t n = strlen(s);
    gguf_buf_u64(b, n);
    gguf_buf_put(b, s, n);
}

void gguf_buf_pad(gguf_buf *b, size_t align)
{
    if (align > 1 && b->n % align)
        gguf_buf_put(b, NULL, align - b->n % align);
}

void gguf_buf_free(gguf_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

size_t gguf_type_nbytes(uint32_t type, uint64_t n)
{
    if (n > ((uint64_t)1 << 50))
        return 0;
    ggml_type_info ti = ggml_type_get(type);
    if (!ti.name || n % ti.block_elems)
        return 0;
    return (size_t)(n / ti.block_elems) * ti.block_bytes;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    uint32_t n_dims, type;
    uint64_t ne[4];
    size_t nbytes;
    const void *data;
} wtensor;

struct gguf_writer {
    uint32_t alignment;
    uint64_t n_kv;
    gguf_buf kv;
    wtensor *t;
    int n_t, cap_t;
};

em_status gguf_writer_create(uint32_t alignment, gguf_writer **out)
{
    *out = NULL;
    if (alignment == 0 || (alignment & (alignment - 1)))
        return EM_EINVAL;
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return EM_ENOMEM;
    w->alignment = alignment;
    *out = w;
    return EM_OK;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->t);
    gguf_buf_free(&w->kv);
    free(w);
}

static em_status kv_head(gguf_writer *w, const char *key, gguf_type type)
{
    gguf_buf_str(&w->kv, key);
    gguf_buf_u32(&w->kv, (uint32_t)type);
    w->n_kv++;
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

static em_status kv_scalar(gguf_writer *w, const char *key, gguf_type type, const void *v, size_t n)
{
    kv_head(w, key, type);
    gguf_buf_put(&w->kv, v, n);
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

em_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return kv_scalar(w, key, GGUF_TYPE_UINT32, &v, 4);
}
em_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return kv_scalar(w, key, GGUF_TYPE_INT32, &v, 4);
}
em_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    return kv_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}
em_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return kv_scalar(w, key, GGUF_TYPE_UINT64, &v, 8);
}

em_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v)
{
    uint8_t b = v != 0;
    return kv_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

em_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    kv_head(w, key, GGUF_TYPE_STRING);
    gguf_buf_str(&w->kv, v);
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

static void arr_head(gguf_writer *w, const char *key, gguf_type et, uint64_t n)
{
    kv_head(w, key, GGUF_TYPE_ARRAY);
    gguf_buf_u32(&w->kv, (uint32_t)et);
    gguf_buf_u64(&w->kv, n);
}

em_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
    arr_head(w, key, GGUF_TYPE_STRING, n);
    for (uint64_t i = 0; i < n; i++)
        gguf_buf_str(&w->kv, v[i]);
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

em_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    if (n > SIZE_MAX / 4)
        return EM_EINVAL;
    arr_head(w, key, GGUF_TYPE_FLOAT32, n);
    gguf_buf_put(&w->kv, v, (size_t)n * 4);
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

em_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    if (n > SIZE_MAX / 4)
        return EM_EINVAL;
    arr_head(w, key, GGUF_TYPE_INT32, n);
    gguf_buf_put(&w->kv, v, (size_t)n * 4);
    return w->kv.oom ? EM_ENOMEM : EM_OK;
}

em_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, uint32_t type, const void *data)
{
    if (n_dims < 1 || n_dims > 4)
        return EM_EINVAL;
    uint64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || nel > ((uint64_t)1 << 50) / ne[d])
            return EM_EINVAL;
        nel *= ne[d];
    }
    size_t nb = gguf_type_nbytes(type, nel);
    if (nb == 0)
        return EM_EINVAL;
    if (w->n_t == w->cap_t) {
        int nc = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *nt = realloc(w->t, (size_t)nc * sizeof *nt);
        if (!nt)
            return EM_ENOMEM;
        w->t = nt;
        w->cap_t = nc;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name)
        return EM_ENOMEM;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++)
        t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->type = type;
    t->nbytes = nb;
    t->data = data;
    w->n_t++;
    return EM_OK;
}

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* Header (magic .. tensor infos, padded to the alignment) into b. */
static void write_header(const gguf_writer *w, gguf_buf *b)
{
    gguf_buf_put(b, "GGUF", 4);
    gguf_buf_u32(b, 3);
    gguf_buf_u64(b, (uint64_t)w->n_t);
    gguf_buf_u64(b, w->n_kv);
    gguf_buf_put(b, w->kv.p, w->kv.n);
    size_t off = 0;
    for (int i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        gguf_buf_str(b, t->name);
        gguf_buf_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            gguf_buf_u64(b, t->ne[d]);
        gguf_buf_u32(b, t->type);
        gguf_buf_u64(b, off);
        off = align_up(off + t->nbytes, w->alignment);
    }
    gguf_buf_pad(b, w->alignment);
}

/* Calls sink(ctx, bytes, n) for the header and every tensor (plus padding) in order; a sink
 * returns EM_EIO (errno set) or EM_ENOMEM when it cannot take the bytes. */
typedef em_status (*sink_fn)(void *ctx, const void *p, size_t n);

static em_status emit_all(const gguf_writer *w, gguf_fill_fn fill, void *user, sink_fn sink,
                          void *ctx, char *err, size_t errlen)
{
    gguf_buf h = {0};
    write_header(w, &h);
    if (h.oom) {
        gguf_buf_free(&h);
        snprintf(err, errlen, "gguf_write: out of memory");
        return EM_ENOMEM;
    }
    em_status io = sink(ctx, h.p, h.n), st = io; /* io: the status of the last write */
    gguf_buf_free(&h);
    void *scratch = NULL;
    size_t scap = 0;
    static const uint8_t zeros[256];
    for (int i = 0; i < w->n_t && st == EM_OK; i++) {
        const wtensor *t = &w->t[i];
        const void *data = t->data;
        if (!data) {
            if (!fill) {
                snprintf(err, errlen, "gguf_write: tensor '%s' has no data and no fill callback",
                         t->name);
                st = EM_EINVAL;
                break;
            }
            if (t->nbytes > scap) {
                free(scratch);
                scratch = malloc(t->nbytes);
                scap = scratch ? t->nbytes : 0;
                if (!scratch) {
                    snprintf(err, errlen, "gguf_write: out of memory (%zu bytes for '%s')",
                             t->nbytes, t->name);
                    st = EM_ENOMEM;
                    break;
                }
            }
            st = fill(user, i, t->name, scratch, t->nbytes);
            if (st != EM_OK) {
                snprintf(err, errlen, "gguf_write: producing tensor '%s' failed: %s", t->name,
                         em_status_str(st));
                break;
            }
            data = scratch;
        }
        size_t pad = align_up(t->nbytes, w->alignment) - t->nbytes;
        io = sink(ctx, data, t->nbytes);
        for (size_t k; pad && io == EM_OK; pad -= k) {
            k = pad < sizeof zeros ? pad : sizeof zeros;
            io = sink(ctx, zeros, k);
        }
        st = io;
    }
    free(scratch);
    if (io == EM_ENOMEM)
        snprintf(err, errlen, "gguf_write: out of memory");
    else if (io != EM_OK)
        snprintf(err, errlen, "gguf_write: write failed: %s", strerror(errno));
    return st;
}

static em_status file_sink(void *ctx, const void *p, size_t n)
{
    return fwrite(p, 1, n, (FILE *)ctx) == n ? EM_OK : EM_EIO;
}

static em_status mem_sink(void *ctx, const void *p, size_t n)
{
    gguf_buf *b = ctx;
    gguf_buf_put(b, p, n);
    return b->oom ? EM_ENOMEM : EM_OK;
}

em_status gguf_writer_write_file(const gguf_writer *w, const char *path, gguf_fill_fn fill,
                                 void *user, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        snprintf(err, errlen, "gguf_write: cannot create %s: %s", path, strerror(errno));
        return EM_EIO;
    }
    em_status st = emit_all(w, fill, user, file_sink, fp, err, errlen);
    if (fclose(fp) != 0 && st == EM_OK) {
        snprintf(err, errlen, "gguf_write: closing %s: %s", path, strerror(errno));
        st = EM_EIO;
    }
    if (st != EM_OK)
        remove(path);
    return st;
}

em_status gguf_writer_write_mem(const gguf_writer *w, gguf_fill_fn fill, void *user, void **buf,
                                size_t *size, char *err, size_t errlen)
{
    gguf_buf b = {0};
    em_status st = emit_all(w, fill, user, mem_sink, &b, err, errlen);
    if (st != EM_OK) {
        gguf_buf_free(&b);
        return st;
    }
    *buf = b.p;
    *size = b.n;
    return EM_OK;
}
