/* Checks every string field of a protobuf message on the wire, before protobuf-c unpacks it
 * into NUL-terminated C strings: proto3 strings must be valid UTF-8, and a NUL byte would cut
 * the C string silently. Walks the wire format with the message's descriptor, nested messages
 * included (depth-limited); unknown fields and bytes fields are skipped. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "common/status.h"

/* EM_OK when every string field of the message in data[0..len) is valid UTF-8 without a NUL;
 * EM_EINVAL with "<field path>: ..." in err otherwise; EM_EPROTO (no message) when the bytes
 * are not a well-formed message (unpacking reports that). */
em_status rpc_check_strings(const uint8_t *data, size_t len, const ProtobufCMessageDescriptor *d,
                            char *err, size_t errlen);

/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF). */
int rpc_utf8_valid(const uint8_t *s, size_t n);

/* rpc_unpack with the string check first: NULL with a message in err when the strings are bad
 * ("request_id: not valid UTF-8") or the message is malformed (err left as is). */
ProtobufCMessage *rpc_unpack_checked(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d,
                                     char *err, size_t errlen);
