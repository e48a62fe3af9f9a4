/* Server reflection of the public services (grpc.reflection.v1 and v1alpha: the same messages,
 * proto/grpc/reflection/v1/reflection.proto): the answer to each request of a
 * ServerReflectionInfo stream, from the FileDescriptorSet built into the binary
 * (proto/public_descriptors.h), so that grpcurl and similar tools can list, describe and call
 * emserve.v1 without its .proto files. */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>

/* The packed ServerReflectionResponse to one packed request: list_services, file_by_filename
 * and file_containing_symbol answered; unknown names and extension queries get an
 * ErrorResponse (NOT_FOUND). NULL when req is not a well-formed request (why then says what)
 * or memory ran out. */
grpc_byte_buffer *coord_reflection_answer(grpc_byte_buffer *req, char *why, size_t whylen);
