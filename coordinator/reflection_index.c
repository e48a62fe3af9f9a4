/* FileDescriptorSet lookups (see reflection_index.h). Field numbers are those of
 * google/protobuf/descriptor.proto: FileDescriptorSet.file = 1; FileDescriptorProto name = 1,
 * package = 2, message_type = 4, enum_type = 5, service = 6; DescriptorProto name = 1,
 * nested_type = 3, enum_type = 4; EnumDescriptorProto name = 1; ServiceDescriptorProto
 * name = 1, method = 2; MethodDescriptorProto name = 1. */
#include "coordinator/reflection_index.h"

#include <string.h>

#include "rpc/rpc_wire.h"

#define MAX_NESTING 16

em_status refl_set_files(const uint8_t *set, size_t len, refl_file *files, int cap, int *n)
{
    rpc_wire w = rpc_wire_of(set, len);
    rpc_wire_field f;
    *n = 0;
    while (rpc_wire_next(&w, &f)) {
        if (f.num != 1 || f.wt != 2)
            continue;
        if (*n == cap)
            return EM_ENOSPC;
        files[(*n)++] = (refl_file){f.data, f.n};
    }
    return w.bad ? EM_EPROTO : EM_OK;
}

/* Whether the name field (1) of message p equals s[0, n). */
static bool name_is(const uint8_t *p, size_t len, const char *s, size_t n)
{
    const uint8_t *name;
    size_t nl;
    return rpc_wire_find_bytes(p, len, 1, &name, &nl) && nl == n && memcmp(name, s, n) == 0;
}

/* rest = "A" or "A.B...": whether the message at p (name A) is it or declares the rest. */
static bool message_declares(const uint8_t *p, size_t len, const char *rest, int depth)
{
    const char *dot = strchr(rest, '.');
    size_t head = dot ? (size_t)(dot - rest) : strlen(rest);
    if (depth > MAX_NESTING || !name_is(p, len, rest, head))
        return false;
    if (!dot)
        return true;
    rpc_wire w = rpc_wire_of(p, len);
    rpc_wire_field f;
    while (rpc_wire_next(&w, &f)) {
        if (f.wt != 2)
            continue;
        if (f.num == 3 && message_declares(f.data, f.n, dot + 1, depth + 1))
            return true;
        if (f.num == 4 && name_is(f.data, f.n, dot + 1, strlen(dot + 1)))
            return true;
    }
    return false;
}

/* rest = "Service" or "Service.Method". */
static bool service_declares(const uint8_t *p, size_t len, const char *rest)
{
    const char *dot = strchr(rest, '.');
    size_t head = dot ? (size_t)(dot - rest) : strlen(rest);
    if (!name_is(p, len, rest, head))
        return false;
    if (!dot)
        return true;
    rpc_wire w = rpc_wire_of(p, len);
    rpc_wire_field f;
    while (rpc_wire_next(&w, &f))
        if (f.num == 2 && f.wt == 2 && name_is(f.data, f.n, dot + 1, strlen(dot + 1)))
            return true;
    return false;
}

bool refl_file_named(const refl_file *f, const char *name)
{
    return name_is(f->data, f->len, name, strlen(name));
}

bool refl_file_declares(const refl_file *file, const char *symbol)
{
    const uint8_t *pkg;
    size_t pl = 0;
    if (!rpc_wire_find_bytes(file->data, file->len, 2, &pkg, &pl))
        pl = 0;
    if (pl > 0 && (strncmp(symbol, (const char *)pkg, pl) != 0 || symbol[pl] != '.'))
        return false;
    const char *rest = symbol + (pl > 0 ? pl + 1 : 0);
    rpc_wire w = rpc_wire_of(file->data, file->len);
    rpc_wire_field f;
    while (rpc_wire_next(&w, &f)) {
        if (f.wt != 2)
            continue;
        if (f.num == 4 && message_declares(f.data, f.n, rest, 0))
            return true;
        if (f.num == 5 && name_is(f.data, f.n, rest, strlen(rest)))
            return true;
        if (f.num == 6 && service_declares(f.data, f.n, rest))
            return true;
    }
    return false;
}
