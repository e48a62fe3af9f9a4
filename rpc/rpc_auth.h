/* The per-cluster shared secret of internal traffic (coordinator <-> workers, the rendezvous
 * store) and of the admin view of GetServerInfo: generated at start for local workers (handed
 * to them through an inherited pipe, never argv), read from a file for workers started by hand.
 * On the wire it travels as gRPC metadata "authorization: Bearer <secret>" on every call and is
 * compared in constant time. A secret is 16..RPC_SECRET_MAX printable ASCII characters without
 * spaces (it must fit an HTTP/2 header value). */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>

#include "common/status.h"

#define RPC_SECRET_MAX 256
#define RPC_SECRET_MIN 16
#define RPC_AUTH_KEY   "authorization"
/* The group token: a random value the coordinator gives each worker with FormGroup (one per
 * rank and formation) and presents on every Step of that group, so that a worker takes steps
 * only from the coordinator that formed its group, not from anyone else holding the cluster
 * secret (another worker). Same character rules as the secret. */
#define RPC_GROUP_TOKEN_KEY "x-emserve-group-token"

/* 32 random bytes (getrandom) as 64 hex characters; out needs RPC_SECRET_MAX + 1 bytes. */
em_status rpc_secret_generate(char *out, size_t len);
/* Reads a secret from a file (surrounding whitespace ignored); a message in err when it is
 * missing, unreadable, too short or too long, or holds characters a header cannot carry. A file
 * that others can read is accepted with a warning. */
em_status rpc_secret_read_file(const char *path, char *out, size_t len, char *err, size_t errlen);
/* The same from an open descriptor (read to EOF, then closed). */
em_status rpc_secret_read_fd(int fd, char *out, size_t len, char *err, size_t errlen);
/* EM_OK when s is a well-formed secret (the rules above). */
em_status rpc_secret_validate(const char *s, char *err, size_t errlen);

/* 1 when md carries "authorization: Bearer <secret>" (constant-time compare); 0 otherwise,
 * and always 0 for an empty secret. */
int rpc_secret_check(const grpc_metadata_array *md, const char *secret);

/* 1 when md carries key with exactly value (constant-time; 0 for an empty value). */
int rpc_metadata_check(const grpc_metadata_array *md, const char *key, const char *value);
/* Copies md's value of key into out (NUL-terminated); EM_EINVAL when it is absent or is not a
 * well-formed secret (rpc_secret_validate). */
em_status rpc_metadata_get(const grpc_metadata_array *md, const char *key, char *out, size_t len);

/* Client side: fills *m with the header for secret; value_buf (RPC_SECRET_MAX + 8 bytes) backs
 * the value and must outlive the call's initial-metadata op. */
void rpc_secret_metadata(const char *secret, grpc_metadata *m, char *value_buf, size_t len);
