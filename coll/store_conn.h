/* One connection of the rendezvous store (private to coll/tcpstore.c): a socket, optionally
 * wrapped in TLS (OpenSSL). Both sides run mutual TLS when the store has certificates: each end
 * presents its certificate and accepts only a peer whose certificate the configured CA signed
 * (no host name check: the internal CA signs cluster members only). */
#pragma once
#include <openssl/ssl.h>
#include <stddef.h>

#include "coll/coll.h"
#include "common/status.h"

typedef struct store_conn {
    int fd;
    SSL *ssl; /* NULL: plain TCP */
} store_conn;

/* Reads or writes exactly n bytes (the socket's timeouts bound each wait). EM_EIO on failure. */
em_status store_io(store_conn *c, void *buf, size_t n, int writing);

/* A TLS context from t's PEM text (server: a verified client certificate required; client: the
 * server's certificate verified). NULL with a message in err when a PEM cannot be used. */
SSL_CTX *store_tls_ctx(const coll_tls *t, int server, char *err, size_t errlen);

/* Runs the handshake on c->fd (ctx NULL: nothing to do). 1 ok; 0: refused (c stays plain). */
int store_conn_handshake(store_conn *c, SSL_CTX *ctx, int server);

/* Closes the TLS session (if any) and the socket. */
void store_conn_close(store_conn *c);
