/* The public services' FileDescriptorSet (emserve.v1, grpc.health.v1, grpc.reflection.v1) as
 * protoc wrote it: field 1 repeated, each a serialized google.protobuf.FileDescriptorProto. */
#pragma once
#include <stddef.h>

extern const unsigned char proto_public_descriptors[];
extern const size_t proto_public_descriptors_len;
