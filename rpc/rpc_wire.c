/* Protobuf wire-format reader (see rpc_wire.h). */
#include "rpc/rpc_wire.h"

static bool varint(rpc_wire *w, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && w->at < w->len; shift += 7) {
        uint8_t b = w->p[w->at++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* wt 1, 2, 5: n bytes from here into f. */
static bool take(rpc_wire *w, size_t n, rpc_wire_field *f)
{
    if (n > w->len - w->at)
        return false;
    f->data = w->p + w->at;
    f->n = n;
    w->at += n;
    return true;
}

static bool next_field(rpc_wire *w, rpc_wire_field *f)
{
    uint64_t key, n;
    if (!varint(w, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return false;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    f->v = 0;
    f->data = NULL;
    f->n = 0;
    switch (f->wt) {
    case 0:
        return varint(w, &f->v);
    case 1:
        return take(w, 8, f);
    case 5:
        return take(w, 4, f);
    case 2:
        return varint(w, &n) && n <= (uint64_t)(w->len - w->at) && take(w, (size_t)n, f);
    default:
        return false;
    }
}

bool rpc_wire_next(rpc_wire *w, rpc_wire_field *f)
{
    if (w->bad || w->at >= w->len)
        return false;
    if (!next_field(w, f)) {
        w->bad = true;
        return false;
    }
    return true;
}

bool rpc_wire_find_bytes(const uint8_t *p, size_t len, uint32_t num, const uint8_t **data,
                         size_t *n)
{
    rpc_wire w = rpc_wire_of(p, len);
    rpc_wire_field f;
    while (rpc_wire_next(&w, &f)) {
        if (f.num == num && f.wt == 2) {
            *data = f.data;
            *n = f.n;
            return true;
        }
    }
    return false;
}
