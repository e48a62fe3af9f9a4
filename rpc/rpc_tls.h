/* TLS for gRPC ports from PEM files (hardening, issue 12): a server certificate and key, and an
 * optional CA. On a server the CA means mutual TLS: every client must present a certificate it
 * signed (the handshake fails otherwise). On a client the CA is the trust root of the server's
 * certificate and the certificate and key, when given, are presented to the server. The public
 * port uses --tls-cert/--tls-key[/--tls-client-ca]; internal traffic (coordinator <-> workers)
 * uses one --internal-tls-cert/--internal-tls-key/--internal-tls-ca set on both sides. With no
 * certificate the credentials are insecure (plaintext), as before. */
#pragma once
#include <stddef.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "common/status.h"

/* File names (NULL or "": not given). */
typedef struct rpc_tls_files {
    const char *cert, *key, *ca;
} rpc_tls_files;

/* The PEM contents, read once at start (NULL: not given). */
typedef struct rpc_tls {
    char *cert, *key, *ca;
} rpc_tls;

/* Reads the files. Rules: cert and key come together; require_cert: a CA alone is an error
 * (a server needs its own certificate). Each file must hold a PEM block ("-----BEGIN"). A
 * message naming the file in err. */
em_status rpc_tls_load(const rpc_tls_files *f, int require_cert, rpc_tls *out, char *err,
                       size_t errlen);
void rpc_tls_free(rpc_tls *t); /* NULL ok */

/* 1 when t carries a certificate (a server then speaks TLS only). */
int rpc_tls_on(const rpc_tls *t);

/* Server credentials: TLS with t's certificate (and, with a CA, a verified client certificate
 * required), or insecure when t is NULL or off. Release with grpc_server_credentials_release. */
grpc_server_credentials *rpc_tls_server_credentials(const rpc_tls *t);

/* Channel credentials: TLS trusting t->ca (NULL: the system roots) and presenting t's
 * certificate when there is one, or insecure when t is NULL or has neither a CA nor a
 * certificate. Release with grpc_channel_credentials_release. */
grpc_channel_credentials *rpc_tls_channel_credentials(const rpc_tls *t);
