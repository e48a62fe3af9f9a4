/* The rendezvous store's connections, plain or TLS (see store_conn.h). */
#include "coll/store_conn.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

em_status store_io(store_conn *c, void *buf, size_t n, int writing)
{
    char *p = buf;
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        ssize_t r;
        if (c->ssl) {
            r = writing ? SSL_write(c->ssl, p, chunk) : SSL_read(c->ssl, p, chunk);
        } else {
            r = writing ? send(c->fd, p, (size_t)chunk, MSG_NOSIGNAL)
                        : recv(c->fd, p, (size_t)chunk, 0);
            if (r < 0 && errno == EINTR) {
                continue;
            }
        }
        if (r <= 0) {
            return EM_EIO;
        }
        p += r;
        n -= (size_t)r;
    }
    return EM_OK;
}

/* Adds every certificate of pem to ctx's trust store (ca) or as the certificate and its chain.
 * 0 when pem holds none. */
static int load_certs(SSL_CTX *ctx, const char *pem, int ca)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        int ok = ca       ? X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x)
                 : n == 0 ? SSL_CTX_use_certificate(ctx, x)
                          : SSL_CTX_add_extra_chain_cert(ctx, x);
        if (ca || n == 0 || !ok) {
            X509_free(x); /* add_extra_chain_cert keeps x on success */
        }
        n += ok == 1;
    }
    ERR_clear_error(); /* the end of the PEM text reads as an error */
    BIO_free(b);
    return n;
}

SSL_CTX *store_tls_ctx(const coll_tls *t, int server, char *err, size_t errlen)
{
    if (t->cert_pem == NULL || t->key_pem == NULL || t->ca_pem == NULL) {
        snprintf(err, errlen, "store TLS needs a certificate, its key and a CA");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    BIO *kb = BIO_new_mem_buf(t->key_pem, -1);
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    const char *bad = ctx == NULL                             ? "cannot make a TLS context"
                      : !load_certs(ctx, t->cert_pem, 0)      ? "no usable certificate"
                      : key == NULL                           ? "no usable private key"
                      : SSL_CTX_use_PrivateKey(ctx, key) != 1 ? "the key cannot be used"
                      : SSL_CTX_check_private_key(ctx) != 1   ? "the key does not match"
                      : !load_certs(ctx, t->ca_pem, 1)        ? "no usable CA certificate"
                      : !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ? "no TLS 1.2"
                                                                            : NULL;
    EVP_PKEY_free(key);
    if (bad) {
        snprintf(err, errlen, "store TLS: %s", bad);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    return ctx;
}

int store_conn_handshake(store_conn *c, SSL_CTX *ctx, int server)
{
    if (ctx == NULL) {
        return 1;
    }
    SSL *ssl = SSL_new(ctx);
    int ok = ssl != NULL && SSL_set_fd(ssl, c->fd) == 1 &&
             (server ? SSL_accept(ssl) : SSL_connect(ssl)) == 1;
    if (!ok) {
        SSL_free(ssl);
        ERR_clear_error();
        return 0;
    }
    c->ssl = ssl;
    return 1;
}

void store_conn_close(store_conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl); /* no close_notify: one request per connection, the length framing
                           * already tells each side where the data ends */
        c->ssl = NULL;
        ERR_clear_error();
    }
    /* plain TCP calls no OpenSSL function at all: a process forked while another thread was
     * inside OpenSSL (e.g. its thread-exit cleanup) would deadlock on an inherited lock */
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}
