/* A reader of the protobuf wire format, field by field, for bytes that no generated code
 * describes (e.g. a FileDescriptorSet read without a protobuf runtime). Every length is checked
 * against the buffer: malformed input ends the walk with an error, never an overread. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rpc_wire {
    const uint8_t *p;
    size_t len, at;
    bool bad; /* set when the bytes are not well-formed protobuf */
} rpc_wire;

typedef struct rpc_wire_field {
    uint32_t num;        /* field number */
    int wt;              /* wire type: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
    uint64_t v;          /* wt 0: the value */
    const uint8_t *data; /* wt 1, 2, 5: the bytes */
    size_t n;
} rpc_wire_field;

static inline rpc_wire rpc_wire_of(const uint8_t *p, size_t len)
{
    return (rpc_wire){p, len, 0, false};
}

/* The next field into f: true, or false at the end of the bytes or on malformed input (then
 * w->bad is set). Groups (wire types 3, 4) count as malformed. */
bool rpc_wire_next(rpc_wire *w, rpc_wire_field *f);

/* The first length-delimited field num of a message (e.g. a name), or false. */
bool rpc_wire_find_bytes(const uint8_t *p, size_t len, uint32_t num, const uint8_t **data,
                         size_t *n);
