/* The rendezvous key-value store over TCP (see coll.h): a server the coordinator hosts and
 * the client callbacks gloo uses through coll_store_ops. One request per connection keeps both
 * sides stateless; input from the network is bounded and checked (never asserted). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "coll/coll.h"
#include "coll/store_conn.h"
#include "common/status.h"

#define KEY_MAX       4096
#define VAL_MAX       (1u << 20)
#define NKEYS_MAX     1024
#define IO_TIMEOUT_MS 10000
#define SECRET_MAX    256
#define NONCE_LEN     16
#define MAC_LEN       32 /* HMAC-SHA256 */

/* What one client address holds: connections being served and bytes stored. */
typedef struct client_acct {
    char ip[INET6_ADDRSTRLEN];
    int conns;
    size_t bytes;
    struct client_acct *next;
} client_acct;

typedef struct kv_entry {
    char *key;
    void *val;
    size_t len;
    char owner[INET6_ADDRSTRLEN]; /* the client address that stored it (its bytes count there) */
    struct kv_entry *next;
} kv_entry;

struct coll_store_server {
    int lfd;
    pthread_t accept_thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kv_entry *head;
    size_t count, bytes; /* keys held and their key + value bytes */
    int stopping;
    int active;                  /* request threads running */
    char secret[SECRET_MAX + 1]; /* "" = none required */
    int max_conn_per_client;
    size_t max_bytes_per_client;
    client_acct *clients; /* addresses with a connection or stored bytes */
    SSL_CTX *tls;         /* mutual TLS on every connection; NULL: plain TCP */
};

/* ---- socket helpers ------------------------------------------------------------------ */

static em_status put_u32(store_conn *c, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return store_io(c, b, 4, 1);
}

static em_status get_u32(store_conn *c, uint32_t *v)
{
    uint8_t b[4];
    if (store_io(c, b, 4, 0) != EM_OK) {
        return EM_EIO;
    }
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return EM_OK;
}

static em_status put_str(store_conn *c, const void *s, size_t n)
{
    em_status st = put_u32(c, (uint32_t)n);
    return st == EM_OK ? store_io(c, (void *)s, n, 1) : st;
}

/* Reads a length-prefixed string of at most max bytes into a NUL-terminated malloc'd copy. */
static char *get_str(store_conn *c, size_t max, size_t *len)
{
    uint32_t n;
    if (get_u32(c, &n) != EM_OK || n > max) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s == NULL) {
        return NULL;
    }
    if (n > 0 && store_io(c, s, n, 0) != EM_OK) {
        free(s);
        return NULL;
    }
    s[n] = 0;
    if (len) {
        *len = n;
    }
    return s;
}

static void set_timeouts(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* ---- server ---------------------------------------------------------------------------- */

static kv_entry *find(coll_store_server *s, const char *key)
{
    for (kv_entry *e = s->head; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

/* The account of ip, created when create is set (NULL: none, or out of memory). Under mu. */
static client_acct *client_of(coll_store_server *s, const char *ip, int create)
{
    for (client_acct *a = s->clients; a; a = a->next) {
        if (strcmp(a->ip, ip) == 0) {
            return a;
        }
    }
    client_acct *a = create ? calloc(1, sizeof *a) : NULL;
    if (a) {
        snprintf(a->ip, sizeof a->ip, "%s", ip);
        a->next = s->clients;
        s->clients = a;
    }
    return a;
}

/* Forgets accounts that hold nothing. Under mu. */
static void clients_prune(coll_store_server *s)
{
    for (client_acct **p = &s->clients; *p;) {
        client_acct *a = *p;
        if (a->conns == 0 && a->bytes == 0) {
            *p = a->next;
            free(a);
        } else {
            p = &a->next;
        }
    }
}

/* 1 when ip may store `add` more bytes after giving back `back` (a value it replaces). */
static int within_client_bytes(coll_store_server *s, const client_acct *a, size_t add, size_t back)
{
    size_t had = a ? a->bytes : 0;
    return had - (back < had ? back : had) + add <= s->max_bytes_per_client;
}

static void serve_set(coll_store_server *s, store_conn *c, char *key, const char *ip)
{
    size_t len = 0;
    char *val = get_str(c, VAL_MAX, &len);
    if (val == NULL) {
        free(key);
        return;
    }
    pthread_mutex_lock(&s->mu);
    kv_entry *e = find(s, key);
    size_t klen = strlen(key);
    size_t after = s->bytes + len + (e ? 0 : klen) - (e ? e->len : 0);
    client_acct *me = client_of(s, ip, 1), *prev = e ? client_of(s, e->owner, 0) : NULL;
    /* what this client will hold for the key: the value, and the key unless it holds it now */
    size_t mine = len + (e && prev == me ? 0 : klen), back = e && prev == me ? e->len : 0;
    if (after > COLL_STORE_MAX_BYTES || (!e && s->count >= COLL_STORE_MAX_KEYS) || me == NULL ||
        !within_client_bytes(s, me, mine, back)) {
        pthread_mutex_unlock(&s->mu); /* full: refused (the client sees no ok byte) */
        free(key);
        free(val);
        return;
    }
    s->bytes = after;
    if (prev) { /* the replaced value (and the key, when it changes hands) stops counting there */
        size_t gone = e->len + (prev != me ? klen : 0);
        prev->bytes -= gone < prev->bytes ? gone : prev->bytes;
    }
    me->bytes += mine;
    if (e) {
        free(e->val);
        free(key);
    } else {
        e = calloc(1, sizeof *e);
        if (e == NULL) {
            s->bytes -= len + klen;
            me->bytes -= mine;
            pthread_mutex_unlock(&s->mu);
            free(key);
            free(val);
            return;
        }
        e->key = key;
        e->next = s->head;
        s->head = e;
        s->count++;
    }
    e->val = val;
    e->len = len;
    snprintf(e->owner, sizeof e->owner, "%s", ip);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    uint8_t ok = 1;
    store_io(c, &ok, 1, 1);
}

static void serve_get(coll_store_server *s, store_conn *c, char *key)
{
    pthread_mutex_lock(&s->mu);
    kv_entry *e = find(s, key);
    void *copy = NULL;
    size_t len = 0;
    if (e) {
        copy = malloc(e->len ? e->len : 1);
        if (copy) {
            memcpy(copy, e->val, e->len);
            len = e->len;
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(key);
    uint8_t found = copy != NULL;
    if (store_io(c, &found, 1, 1) == EM_OK && found) {
        put_str(c, copy, len);
    }
    free(copy);
}

/* 1 when the client closed its end (a waiter for nobody). */
static int client_gone(const store_conn *c)
{
    struct pollfd pfd = {c->fd, POLLIN | POLLRDHUP, 0};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLIN));
}

static void serve_wait(coll_store_server *s, store_conn *c)
{
    uint32_t timeout_ms, nkeys;
    if (get_u32(c, &timeout_ms) != EM_OK || get_u32(c, &nkeys) != EM_OK || nkeys > NKEYS_MAX) {
        return;
    }
    if (timeout_ms > COLL_STORE_MAX_WAIT_MS) {
        timeout_ms = COLL_STORE_MAX_WAIT_MS;
    }
    char **keys = calloc(nkeys ? nkeys : 1, sizeof *keys);
    uint32_t got = 0;
    if (keys == NULL) {
        return;
    }
    for (; got < nkeys; got++) {
        keys[got] = get_str(c, KEY_MAX, NULL);
        if (keys[got] == NULL) {
            break;
        }
    }
    if (got == nkeys) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        uint8_t ok = 0;
        pthread_mutex_lock(&s->mu);
        for (;;) {
            uint32_t i = 0;
            while (i < nkeys && find(s, keys[i])) {
                i++;
            }
            if (i == nkeys) {
                ok = 1;
                break;
            }
            /* wake at least every 200 ms to see whether the client is still there */
            struct timespec now, slice;
            clock_gettime(CLOCK_REALTIME, &now);
            slice = now;
            slice.tv_nsec += 200000000L;
            if (slice.tv_nsec >= 1000000000L) {
                slice.tv_sec++;
                slice.tv_nsec -= 1000000000L;
            }
            int last = slice.tv_sec > dl.tv_sec ||
                       (slice.tv_sec == dl.tv_sec && slice.tv_nsec >= dl.tv_nsec);
            if (s->stopping) {
                break;
            }
            int rc = pthread_cond_timedwait(&s->cv, &s->mu, last ? &dl : &slice);
            if (rc == ETIMEDOUT && (last || client_gone(c))) {
                break;
            }
        }
        pthread_mutex_unlock(&s->mu);
        store_io(c, &ok, 1, 1);
    }
    for (uint32_t i = 0; i < got; i++) {
        free(keys[i]);
    }
    free(keys);
}

/* HMAC-SHA256(secret, nonce) into mac (MAC_LEN bytes); 0 when it cannot be computed. */
static int nonce_mac(const char *secret, const uint8_t *nonce, uint8_t *mac)
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), secret, (int)strlen(secret), nonce, NONCE_LEN, mac, &n) != NULL &&
           n == MAC_LEN;
}

/* The server's side of the hello with a secret: a fresh nonce out, ['A'][HMAC(secret, nonce)]
 * back; the secret itself never crosses the wire. 1 when the client proved it holds it. */
static int hello_server(coll_store_server *s, store_conn *c)
{
    uint8_t nonce[NONCE_LEN], want[MAC_LEN], op = 0;
    size_t got = 0;
    if (getentropy(nonce, sizeof nonce) != 0 || !nonce_mac(s->secret, nonce, want) ||
        store_io(c, nonce, sizeof nonce, 1) != EM_OK || store_io(c, &op, 1, 0) != EM_OK ||
        op != 'A') {
        return 0;
    }
    char *mac = get_str(c, MAC_LEN, &got);
    int ok = mac != NULL && got == MAC_LEN && CRYPTO_memcmp(mac, want, MAC_LEN) == 0;
    free(mac);
    return ok;
}

typedef struct req_arg {
    coll_store_server *s;
    int fd;
    char ip[INET6_ADDRSTRLEN];
} req_arg;

static void *serve_one(void *p)
{
    req_arg a = *(req_arg *)p;
    free(p);
    uint8_t op;
    store_conn c = {a.fd, NULL};
    set_timeouts(a.fd, IO_TIMEOUT_MS); /* bounds the TLS handshake too */
    int ok = store_conn_handshake(&c, a.s->tls, 1) &&
             (a.s->secret[0] == 0 || hello_server(a.s, &c)) && store_io(&c, &op, 1, 0) == EM_OK;
    if (ok) {
        if (op == 'W') {
            serve_wait(a.s, &c);
        } else if (op == 'S' || op == 'G') {
            char *key = get_str(&c, KEY_MAX, NULL);
            if (key && op == 'S') {
                serve_set(a.s, &c, key, a.ip);
            } else if (key) {
                serve_get(a.s, &c, key);
            }
        }
    }
    store_conn_close(&c);
    pthread_mutex_lock(&a.s->mu);
    a.s->active--;
    client_acct *ac = client_of(a.s, a.ip, 0);
    if (ac) {
        ac->conns--;
    }
    clients_prune(a.s);
    pthread_cond_broadcast(&a.s->cv);
    pthread_mutex_unlock(&a.s->mu);
    return NULL;
}

/* The client's address as text ("" when unknown: such clients share one account). */
static void peer_ip(const struct sockaddr_storage *ss, char *ip, size_t len)
{
    const void *src = ss->ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (inet_ntop(ss->ss_family, src, ip, (socklen_t)len) == NULL) {
        ip[0] = 0;
    }
}

/* Counts a new connection from ip: 0 when the server or that client is at its bound. */
static int admit(coll_store_server *s, const char *ip)
{
    pthread_mutex_lock(&s->mu);
    client_acct *c = client_of(s, ip, 1);
    int ok = c != NULL && s->active < COLL_STORE_MAX_CONN && c->conns < s->max_conn_per_client;
    if (ok) {
        s->active++;
        c->conns++;
    }
    clients_prune(s);
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void unadmit(coll_store_server *s, const char *ip)
{
    pthread_mutex_lock(&s->mu);
    client_acct *c = client_of(s, ip, 0);
    s->active--;
    if (c) {
        c->conns--;
    }
    clients_prune(s);
    pthread_mutex_unlock(&s->mu);
}

static void *accept_loop(void *p)
{
    coll_store_server *s = p;
    for (;;) {
        struct pollfd pfd = {s->lfd, POLLIN, 0};
        int r = poll(&pfd, 1, 100);
        pthread_mutex_lock(&s->mu);
        int stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) {
            break;
        }
        if (r <= 0) {
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        memset(&ss, 0, sizeof ss);
        int fd = accept(s->lfd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) {
            continue;
        }
        char ip[INET6_ADDRSTRLEN];
        peer_ip(&ss, ip, sizeof ip);
        if (!admit(s, ip)) { /* a flood of idle or waiting clients: no thread for this one */
            close(fd);
            continue;
        }
        req_arg *a = malloc(sizeof *a);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (a) {
            a->s = s;
            a->fd = fd;
            snprintf(a->ip, sizeof a->ip, "%s", ip);
        }
        if (a == NULL || pthread_create(&t, &at, serve_one, a) != 0) {
            free(a);
            close(fd);
            unadmit(s, ip);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

static em_status resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
    struct addrinfo hints, *res = NULL;
    char ps[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL) {
        return EM_EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sl = res->ai_addrlen;
    freeaddrinfo(res);
    return EM_OK;
}

em_status coll_store_server_start(const char *host, int port, coll_store_server **out,
                                  int *port_out, char *err, size_t errlen)
{
    return coll_store_server_start_auth(host, port, NULL, out, port_out, err, errlen);
}

em_status coll_store_server_start_auth(const char *host, int port, const char *secret,
                                       coll_store_server **out, int *port_out, char *err,
                                       size_t errlen)
{
    coll_store_opts o = {secret, 0, 0, NULL};
    return coll_store_server_start_opts(host, port, &o, out, port_out, err, errlen);
}

em_status coll_store_server_start_opts(const char *host, int port, const coll_store_opts *o,
                                       coll_store_server **out, int *port_out, char *err,
                                       size_t errlen)
{
    const char *secret = o->secret;
    struct sockaddr_storage ss;
    if (secret && strlen(secret) > SECRET_MAX) {
        snprintf(err, errlen, "store secret longer than %d bytes", SECRET_MAX);
        return EM_EINVAL;
    }
    socklen_t sl;
    *out = NULL;
    if (resolve(host ? host : "127.0.0.1", port, &ss, &sl) != EM_OK) {
        snprintf(err, errlen, "cannot resolve store host %s", host ? host : "");
        return EM_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return EM_EIO;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "bind/listen %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return EM_EIO;
    }
    coll_store_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return EM_ENOMEM;
    }
    if (o->tls && (s->tls = store_tls_ctx(o->tls, 1, err, errlen)) == NULL) {
        close(fd);
        free(s);
        return EM_EINVAL;
    }
    s->lfd = fd;
    snprintf(s->secret, sizeof s->secret, "%s", secret ? secret : "");
    s->max_conn_per_client =
        o->max_conn_per_client > 0 ? o->max_conn_per_client : COLL_STORE_MAX_CONN_PER_CLIENT;
    s->max_bytes_per_client =
        o->max_bytes_per_client > 0 ? o->max_bytes_per_client : COLL_STORE_MAX_BYTES_PER_CLIENT;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (pthread_create(&s->accept_thr, NULL, accept_loop, s) != 0) {
        close(fd);
        SSL_CTX_free(s->tls);
        free(s);
        snprintf(err, errlen, "pthread_create failed");
        return EM_EIO;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *out = s;
    return EM_OK;
}

void coll_store_server_clear(coll_store_server *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->head) {
        kv_entry *e = s->head;
        s->head = e->next;
        free(e->key);
        free(e->val);
        free(e);
    }
    s->count = 0;
    s->bytes = 0;
    for (client_acct *a = s->clients; a; a = a->next) {
        a->bytes = 0;
    }
    clients_prune(s);
    pthread_mutex_unlock(&s->mu);
}

size_t coll_store_server_count(coll_store_server *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int coll_store_server_active(coll_store_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->active;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void coll_store_server_stop(coll_store_server *s)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->accept_thr, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->mu);
    while (s->active > 0) {
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    coll_store_server_clear(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    SSL_CTX_free(s->tls);
    free(s);
}

/* ---- client ------------------------------------------------------------------------- */

typedef struct client {
    char host[256];
    int port;
    char secret[SECRET_MAX + 1]; /* "" = none */
    SSL_CTX *tls;                /* mutual TLS; NULL: plain TCP */
} client;

/* A connection to the store (TLS when the client has it), authenticated when the client has a
 * secret. */
static em_status client_connect(const client *cl, store_conn *c)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    c->fd = -1;
    c->ssl = NULL;
    em_status st = resolve(cl->host, cl->port, &ss, &sl);
    if (st != EM_OK) {
        return st;
    }
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return EM_EIO;
    }
    set_timeouts(c->fd, IO_TIMEOUT_MS);
    if (connect(c->fd, (struct sockaddr *)&ss, sl) != 0) {
        store_conn_close(c);
        return EM_EUNAVAILABLE;
    }
    uint8_t a = 'A', nonce[NONCE_LEN], mac[MAC_LEN];
    if (!store_conn_handshake(c, cl->tls, 0) ||
        (cl->secret[0] &&
         (store_io(c, nonce, sizeof nonce, 0) != EM_OK || !nonce_mac(cl->secret, nonce, mac) ||
          store_io(c, &a, 1, 1) != EM_OK || put_str(c, mac, sizeof mac) != EM_OK))) {
        store_conn_close(c);
        return EM_EIO;
    }
    return EM_OK;
}

static em_status cl_set(void *user, const char *key, const void *val, size_t len)
{
    store_conn cn, *c = &cn;
    uint8_t op = 'S', ok = 0;
    em_status st = client_connect(user, c);
    if (st != EM_OK) {
        return st;
    }
    int done = store_io(c, &op, 1, 1) == EM_OK && put_str(c, key, strlen(key)) == EM_OK &&
               put_str(c, val, len) == EM_OK && store_io(c, &ok, 1, 0) == EM_OK && ok == 1;
    store_conn_close(c);
    return done ? EM_OK : EM_EIO;
}

static void *cl_get(void *user, const char *key, size_t *len)
{
    store_conn cn, *c = &cn;
    uint8_t op = 'G', found = 0;
    char *v = NULL;
    if (client_connect(user, c) != EM_OK) {
        return NULL;
    }
    if (store_io(c, &op, 1, 1) == EM_OK && put_str(c, key, strlen(key)) == EM_OK &&
        store_io(c, &found, 1, 0) == EM_OK && found) {
        v = get_str(c, VAL_MAX, len);
    }
    store_conn_close(c);
    return v;
}

static em_status cl_wait(void *user, const char *const *keys, size_t nkeys, long timeout_ms)
{
    if (nkeys > NKEYS_MAX) {
        return EM_EINVAL;
    }
    store_conn cn, *c = &cn;
    uint8_t op = 'W', ok = 0;
    em_status st = client_connect(user, c);
    if (st != EM_OK) {
        return st;
    }
    /* The server answers by the deadline; allow it a margin on the socket. */
    set_timeouts(c->fd, (int)(timeout_ms + 5000 < 0x7fffffff ? timeout_ms + 5000 : 0x7fffffff));
    int rc = store_io(c, &op, 1, 1) == EM_OK && put_u32(c, (uint32_t)timeout_ms) == EM_OK &&
             put_u32(c, (uint32_t)nkeys) == EM_OK;
    for (size_t i = 0; rc && i < nkeys; i++) {
        rc = put_str(c, keys[i], strlen(keys[i])) == EM_OK;
    }
    rc = rc && store_io(c, &ok, 1, 0) == EM_OK && ok == 1;
    store_conn_close(c);
    return rc ? EM_OK : EM_ETIMEDOUT;
}

em_status coll_store_client_ops(const char *addr, coll_store_ops *ops)
{
    return coll_store_client_ops_auth(addr, NULL, ops);
}

em_status coll_store_client_ops_auth(const char *addr, const char *secret, coll_store_ops *ops)
{
    return coll_store_client_ops_tls(addr, secret, NULL, ops, NULL, 0);
}

em_status coll_store_client_ops_tls(const char *addr, const char *secret, const coll_tls *tls,
                                    coll_store_ops *ops, char *err, size_t errlen)
{
    if (addr == NULL || (secret && strlen(secret) > SECRET_MAX)) {
        memset(ops, 0, sizeof *ops);
        return EM_EINVAL;
    }
    const char *colon = strrchr(addr, ':');
    memset(ops, 0, sizeof *ops);
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(((client *)0)->host)) {
        return EM_EINVAL;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != 0 || port <= 0 || port > 65535) {
        return EM_EINVAL;
    }
    client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return EM_ENOMEM;
    }
    char e2[256];
    if (tls && (c->tls = store_tls_ctx(tls, 0, err ? err : e2, err ? errlen : sizeof e2)) == NULL) {
        free(c);
        return EM_EINVAL;
    }
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') { /* [v6]:port */
        memcpy(c->host, addr + 1, hl - 2);
    } else {
        memcpy(c->host, addr, hl);
    }
    c->port = (int)port;
    snprintf(c->secret, sizeof c->secret, "%s", secret ? secret : "");
    ops->user = c;
    ops->set = cl_set;
    ops->get = cl_get;
    ops->wait = cl_wait;
    return EM_OK;
}

void coll_store_client_ops_free(coll_store_ops *ops)
{
    if (ops->user) {
        SSL_CTX_free(((client *)ops->user)->tls);
        memset(ops->user, 0, sizeof(client));
    }
    free(ops->user);
    ops->user = NULL;
}
