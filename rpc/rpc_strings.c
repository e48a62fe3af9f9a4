/* String checks of protobuf messages on the wire (see rpc_strings.h). */
#include "rpc/rpc_strings.h"

#include <stdio.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>

#define MAX_DEPTH 32

int rpc_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : lo;
            hi = c == 0xed ? 0x9f : hi;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : lo;
            hi = c == 0xf4 ? 0x8f : hi;
        } else {
            return 0;
        }
        if (n - i < (size_t)len) {
            return 0;
        }
        for (int k = 1; k < len; k++) {
            uint8_t b = s[i + (size_t)k];
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) {
                return 0;
            }
        }
        i += (size_t)len;
    }
    return 1;
}

/* EM_EPROTO when the varint is cut short or longer than 64 bits. */
static em_status read_varint(const uint8_t *p, size_t len, size_t *at, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*at >= len) {
            return EM_EPROTO;
        }
        uint8_t b = p[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            return EM_OK;
        }
    }
    return EM_EPROTO;
}

/* path: the field names above this message ("" at the top), for messages. */
static em_status walk(const uint8_t *p, size_t len, const ProtobufCMessageDescriptor *d,
                      const char *path, int depth, char *err, size_t errlen)
{
    size_t at = 0;
    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "%s: messages nested more than %d deep", path, MAX_DEPTH);
        return EM_EINVAL;
    }
    while (at < len) {
        uint64_t key, v;
        if (read_varint(p, len, &at, &key) != EM_OK) {
            return EM_EPROTO;
        }
        unsigned wt = (unsigned)(key & 7);
        uint64_t num = key >> 3;
        if (wt == 0) {
            if (read_varint(p, len, &at, &v) != EM_OK) {
                return EM_EPROTO;
            }
            continue;
        }
        if (wt == 1 || wt == 5) {
            size_t w = wt == 1 ? 8 : 4;
            if (len - at < w) {
                return EM_EPROTO;
            }
            at += w;
            continue;
        }
        if (wt != 2) {
            return EM_EPROTO; /* groups (3, 4) do not exist in proto3 */
        }
        if (read_varint(p, len, &at, &v) != EM_OK || v > len - at) {
            return EM_EPROTO;
        }
        const uint8_t *f = p + at;
        size_t fl = (size_t)v;
        at += fl;
        const ProtobufCFieldDescriptor *fd =
            num <= 0x1fffffff ? protobuf_c_message_descriptor_get_field(d, (unsigned)num) : NULL;
        if (fd == NULL) {
            continue;
        }
        char sub[256];
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", fd->name);
        if (fd->type == PROTOBUF_C_TYPE_STRING) {
            if (memchr(f, 0, fl) != NULL) {
                snprintf(err, errlen, "%s: contains a NUL byte", sub);
                return EM_EINVAL;
            }
            if (!rpc_utf8_valid(f, fl)) {
                snprintf(err, errlen, "%s: not valid UTF-8", sub);
                return EM_EINVAL;
            }
        } else if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            em_status st = walk(f, fl, fd->descriptor, sub, depth + 1, err, errlen);
            if (st != EM_OK) {
                return st;
            }
        }
    }
    return EM_OK;
}

em_status rpc_check_strings(const uint8_t *data, size_t len, const ProtobufCMessageDescriptor *d,
                            char *err, size_t errlen)
{
    return walk(data, len, d, "", 0, err, errlen);
}

ProtobufCMessage *rpc_unpack_checked(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                     char *err, size_t errlen)
{
    if (bb == NULL) {
        return NULL;
    }
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) {
        return NULL;
    }
    grpc_slice all = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    const uint8_t *p = GRPC_SLICE_START_PTR(all);
    size_t n = GRPC_SLICE_LENGTH(all);
    ProtobufCMessage *m = NULL;
    if (rpc_check_strings(p, n, d, err, errlen) == EM_OK) {
        m = protobuf_c_message_unpack(d, NULL, n, p);
    }
    grpc_slice_unref(all);
    return m;
}
