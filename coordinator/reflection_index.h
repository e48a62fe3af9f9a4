/* Lookups in a serialized FileDescriptorSet without a protobuf runtime, for server reflection:
 * its files, a file by name, and whether a file declares a fully-qualified symbol (a message,
 * a nested message or enum, an enum, a service or a service's method). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* One file of the set: the bytes of its FileDescriptorProto. */
typedef struct refl_file {
    const uint8_t *data;
    size_t len;
} refl_file;

/* The set's files, at most cap of them. EM_EPROTO when the set is malformed, EM_ENOSPC when it
 * holds more than cap files. */
em_status refl_set_files(const uint8_t *set, size_t len, refl_file *files, int cap, int *n);

/* Whether f's name (e.g. "emserve/v1/emserve.proto") is name. */
bool refl_file_named(const refl_file *f, const char *name);

/* Whether f declares symbol ("emserve.v1.GenerateRequest", "emserve.v1.Emserve.Generate"). */
bool refl_file_declares(const refl_file *f, const char *symbol);
