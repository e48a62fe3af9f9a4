/* Collectives for the worker group: a C API over gloo (TCP transport, CPU buffers), plus a
 * tiny TCP key-value store for the rendezvous so that no shared filesystem is needed (the
 * coordinator hosts the store; workers reach it over TCP). No C++ exception crosses this API.
 * A context is bound to one group formation: after any failure it is unusable; destroy it and
 * form a new group with a NEW prefix (gloo keys of an old formation would be read again).
 * Pairs run in gloo's sync mode: collectives do their socket I/O on the calling thread. */
#pragma once
#include <stddef.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coll_ctx coll_ctx;

/* Optional store implemented in C (callbacks: EM_OK on success). */
typedef struct coll_store_ops {
    void *user;
    em_status (*set)(void *user, const char *key, const void *val, size_t len);
    void *(*get)(void *user, const char *key, size_t *len); /* malloc'd copy or NULL */
    em_status (*wait)(void *user, const char *const *keys, size_t nkeys, long timeout_ms);
} coll_store_ops;

/* Joins a group of `size` ranks as `rank`. rendezvous: "file:<dir>" (FileStore),
 * "tcp:HOST:PORT" (a coll_store_server), or NULL with store_ops. prefix must be new for each
 * group formation. host: the address gloo binds and advertises (e.g. "127.0.0.1").
 * timeout_ms bounds the rendezvous and every later collective. Blocks until all ranks have
 * connected. NULL on failure with a message in err. Thread-safety: one thread per context. */
coll_ctx *coll_init(int rank, int size, const char *rendezvous, const coll_store_ops *store_ops,
                    const char *prefix, const char *host, long timeout_ms, char *err,
                    size_t errlen);
/* In-place sum over the group. EM_OK, or EM_EUNAVAILABLE (a peer failed or timed out; see
 * coll_last_error), EM_EINVAL for a NULL context or more than 2^31 floats. */
em_status coll_allreduce_sum_float(coll_ctx *c, float *buf, size_t n);
/* Same with the signature of a shard reduce hook (user = coll_ctx *). */
em_status coll_reduce_hook(void *user, float *buf, size_t n);
em_status coll_barrier(coll_ctx *c);
int coll_rank(const coll_ctx *c);
int coll_size(const coll_ctx *c);
const char *coll_last_error(const coll_ctx *c);
void coll_destroy(coll_ctx *c); /* NULL ok */

/* ---- TCP key-value store (tcpstore.c) ---------------------------------------------------
 * Server: one accept thread, one short-lived thread per request; keys live until cleared.
 * Each client operation is one TCP connection: [op u8][key] for get, [op][key][val] for set,
 * [op][timeout_ms u32][nkeys u32][keys...] for wait; strings are [len u32 LE][bytes]. A server
 * started with a secret first sends a 16-byte random nonce and requires ['A'][HMAC-SHA256 of
 * the nonce keyed by the secret] (32 bytes, as a string): anything else closes the connection
 * before an operation is read, and the secret never crosses the wire. Bounded per server:
 * COLL_STORE_MAX_CONN connections served at once (more are closed at once), COLL_STORE_MAX_BYTES
 * of keys and values, COLL_STORE_MAX_KEYS keys, waits of at most COLL_STORE_MAX_WAIT_MS, and a
 * waiter whose client hung up leaves. Bounded per client address (coll_store_opts): the
 * connections (each a thread) it holds at once, and the key + value bytes it has stored.
 * The store can run mutual TLS (coll_tls); gloo's all-reduce speaks plain TCP (the gloo build
 * here has no TLS transport): in a multi-node layout keep it on a private interface. */
#define COLL_STORE_MAX_CONN             128
#define COLL_STORE_MAX_BYTES            (16u << 20)
#define COLL_STORE_MAX_KEYS             4096
#define COLL_STORE_MAX_WAIT_MS          600000
#define COLL_STORE_MAX_CONN_PER_CLIENT  32
#define COLL_STORE_MAX_BYTES_PER_CLIENT (4u << 20)
typedef struct coll_store_server coll_store_server;

/* Listens on host:port (port 0 = pick one); *port_out gets the bound port. EM_EINVAL (bad
 * host or secret), EM_EIO (socket, bind), EM_ENOMEM; message in err. */
em_status coll_store_server_start(const char *host, int port, coll_store_server **out,
                                  int *port_out, char *err, size_t errlen);
/* The same requiring secret (NULL or "": none) on every connection. */
em_status coll_store_server_start_auth(const char *host, int port, const char *secret,
                                       coll_store_server **out, int *port_out, char *err,
                                       size_t errlen);
/* Mutual TLS on the store's connections: PEM text (not file names) of this side's certificate,
 * its key, and the CA the peer's certificate must be signed by (no host name check). */
typedef struct coll_tls {
    const char *cert_pem, *key_pem, *ca_pem;
} coll_tls;

typedef struct coll_store_opts {
    const char *secret;          /* NULL or "": none required */
    int max_conn_per_client;     /* <= 0: COLL_STORE_MAX_CONN_PER_CLIENT */
    size_t max_bytes_per_client; /* 0: COLL_STORE_MAX_BYTES_PER_CLIENT */
    const coll_tls *tls;         /* NULL: plain TCP */
} coll_store_opts;
/* The same with the per-client bounds and TLS of o (EM_EINVAL when its PEMs cannot be used). */
em_status coll_store_server_start_opts(const char *host, int port, const coll_store_opts *o,
                                       coll_store_server **out, int *port_out, char *err,
                                       size_t errlen);
/* Forgets every key (call between group formations). */
void coll_store_server_clear(coll_store_server *s);
/* Number of keys held (tests). */
size_t coll_store_server_count(coll_store_server *s);
/* Connections being served now, each on its own thread (tests). */
int coll_store_server_active(coll_store_server *s);
void coll_store_server_stop(coll_store_server *s); /* NULL ok; joins its threads */

/* Client ops for a server at "HOST:PORT" (freed by _free). EM_EINVAL for a bad address. */
em_status coll_store_client_ops(const char *addr, coll_store_ops *ops);
/* The same presenting secret (NULL or "": none) on every connection. */
em_status coll_store_client_ops_auth(const char *addr, const char *secret, coll_store_ops *ops);
/* The same over mutual TLS (tls NULL: plain TCP); EM_EINVAL with a message in err (may be NULL)
 * when the PEMs cannot be used. */
em_status coll_store_client_ops_tls(const char *addr, const char *secret, const coll_tls *tls,
                                    coll_store_ops *ops, char *err, size_t errlen);
void coll_store_client_ops_free(coll_store_ops *ops);

#ifdef __cplusplus
}
#endif
