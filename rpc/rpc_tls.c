/* TLS credentials for gRPC from PEM files (see rpc_tls.h). */
#include "rpc/rpc_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

/* Reads one PEM file into *out (NULL path: *out stays NULL). */
static em_status read_pem(const char *path, const char *what, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (path == NULL || path[0] == 0) {
        return EM_OK;
    }
    size_t len = 0;
    em_status st = em_read_file(path, out, &len);
    if (st != EM_OK) {
        snprintf(err, errlen, "cannot read the TLS %s %s: %s", what, path,
                 st == EM_ENOMEM ? "out of memory" : strerror(errno));
        return st;
    }
    if (len == 0 || strstr(*out, "-----BEGIN") == NULL || strlen(*out) != len) {
        snprintf(err, errlen, "the TLS %s %s is not a PEM file", what, path);
        free(*out);
        *out = NULL;
        return EM_EINVAL;
    }
    return EM_OK;
}

em_status rpc_tls_load(const rpc_tls_files *f, int require_cert, rpc_tls *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    int has_cert = f->cert && f->cert[0], has_key = f->key && f->key[0];
    int has_ca = f->ca && f->ca[0];
    if (has_cert != has_key) {
        snprintf(err, errlen,
                 "a TLS certificate needs its key and a key its certificate (%s "
                 "given without %s)",
                 has_cert ? "certificate" : "key", has_cert ? "key" : "certificate");
        return EM_EINVAL;
    }
    if (require_cert && has_ca && !has_cert) {
        snprintf(err, errlen, "a TLS CA was given without the certificate and key to serve");
        return EM_EINVAL;
    }
    em_status st = read_pem(f->cert, "certificate", &out->cert, err, errlen);
    if (st == EM_OK) {
        st = read_pem(f->key, "key", &out->key, err, errlen);
    }
    if (st == EM_OK) {
        st = read_pem(f->ca, "CA", &out->ca, err, errlen);
    }
    if (st != EM_OK) {
        rpc_tls_free(out);
    }
    return st;
}

void rpc_tls_free(rpc_tls *t)
{
    if (t == NULL) {
        return;
    }
    if (t->key) {
        memset(t->key, 0, strlen(t->key));
    }
    free(t->cert);
    free(t->key);
    free(t->ca);
    memset(t, 0, sizeof *t);
}

int rpc_tls_on(const rpc_tls *t)
{
    return t != NULL && t->cert != NULL;
}

grpc_server_credentials *rpc_tls_server_credentials(const rpc_tls *t)
{
    if (!rpc_tls_on(t)) {
        return grpc_insecure_server_credentials_create();
    }
    grpc_ssl_pem_key_cert_pair pair = {t->key, t->cert};
    return grpc_ssl_server_credentials_create_ex(
        t->ca, &pair, 1,
        t->ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
              : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
}

grpc_channel_credentials *rpc_tls_channel_credentials(const rpc_tls *t)
{
    if (t == NULL || (t->ca == NULL && t->cert == NULL)) {
        return grpc_insecure_credentials_create();
    }
    grpc_ssl_pem_key_cert_pair pair = {t->key, t->cert};
    return grpc_ssl_credentials_create_ex(t->ca, t->cert ? &pair : NULL, NULL, NULL);
}
