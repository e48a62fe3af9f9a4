/* The per-cluster shared secret (see rpc_auth.h). */
#include "rpc/rpc_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define BEARER "Bearer "

em_status rpc_secret_generate(char *out, size_t len)
{
    unsigned char raw[32];
    size_t got = 0;
    if (len < 2 * sizeof raw + 1) {
        return EM_EINVAL;
    }
    while (got < sizeof raw) {
        ssize_t r = getrandom(raw + got, sizeof raw - got, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return EM_EIO;
        }
        got += (size_t)r;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    }
    return EM_OK;
}

em_status rpc_secret_validate(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n < RPC_SECRET_MIN || n > RPC_SECRET_MAX) {
        snprintf(err, errlen, "the cluster secret must be %d to %d characters (got %zu)",
                 RPC_SECRET_MIN, RPC_SECRET_MAX, n);
        return EM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f) {
            snprintf(err, errlen,
                     "the cluster secret may hold printable ASCII only, without spaces (byte %zu "
                     "is 0x%02x)",
                     i, c);
            return EM_EINVAL;
        }
    }
    return EM_OK;
}

/* Reads all of fd (at most len - 1 bytes kept; more is an error), trims whitespace. */
static em_status read_trimmed(int fd, char *out, size_t len, const char *what, char *err,
                              size_t errlen)
{
    char buf[RPC_SECRET_MAX + 64];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            snprintf(err, errlen, "cannot read the cluster secret from %s: %s", what,
                     strerror(errno));
            return EM_EIO;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
        if (n == sizeof buf - 1) {
            snprintf(err, errlen, "the cluster secret in %s is longer than %d characters", what,
                     RPC_SECRET_MAX);
            return EM_EINVAL;
        }
    }
    buf[n] = 0;
    char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
    }
    size_t m = strlen(p);
    while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t' || p[m - 1] == '\n' || p[m - 1] == '\r')) {
        p[--m] = 0;
    }
    char e2[200];
    if (rpc_secret_validate(p, e2, sizeof e2) != EM_OK) {
        snprintf(err, errlen, "%s: %s", what, e2);
        return EM_EINVAL;
    }
    if (m + 1 > len) {
        snprintf(err, errlen, "%s: secret buffer too small", what);
        return EM_EINVAL;
    }
    memcpy(out, p, m + 1);
    memset(buf, 0, sizeof buf);
    return EM_OK;
}

em_status rpc_secret_read_file(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open the cluster secret file %s: %s", path, strerror(errno));
        return EM_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
        EM_LOG_WARN("cluster secret file %s can be read by other users (chmod 600 it)", path);
    }
    em_status s = read_trimmed(fd, out, len, path, err, errlen);
    close(fd);
    return s;
}

em_status rpc_secret_read_fd(int fd, char *out, size_t len, char *err, size_t errlen)
{
    char what[32];
    snprintf(what, sizeof what, "fd %d", fd);
    em_status s = read_trimmed(fd, out, len, what, err, errlen);
    close(fd);
    return s;
}

/* Constant-time comparison of the n bytes at a with the NUL-terminated b (length known). */
static int equal_ct(const char *a, size_t n, const char *b, size_t bn)
{
    unsigned diff = (unsigned)(n ^ bn);
    for (size_t i = 0; i < n; i++) {
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i < bn ? i : 0];
    }
    return diff == 0;
}

int rpc_secret_check(const grpc_metadata_array *md, const char *secret)
{
    size_t sn = secret ? strlen(secret) : 0;
    const size_t bl = sizeof BEARER - 1;
    if (sn == 0) {
        return 0;
    }
    int ok = 0;
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (grpc_slice_str_cmp(m->key, RPC_AUTH_KEY) != 0) {
            continue;
        }
        size_t vl = GRPC_SLICE_LENGTH(m->value);
        const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
        if (vl > bl && memcmp(v, BEARER, bl) == 0) {
            ok |= equal_ct(v + bl, vl - bl, secret, sn);
        }
    }
    return ok;
}

int rpc_metadata_check(const grpc_metadata_array *md, const char *key, const char *value)
{
    size_t vn = value ? strlen(value) : 0;
    int ok = 0;
    for (size_t i = 0; vn > 0 && i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        if (grpc_slice_str_cmp(m->key, key) == 0) {
            ok |= equal_ct((const char *)GRPC_SLICE_START_PTR(m->value),
                           GRPC_SLICE_LENGTH(m->value), value, vn);
        }
    }
    return ok;
}

em_status rpc_metadata_get(const grpc_metadata_array *md, const char *key, char *out, size_t len)
{
    for (size_t i = 0; i < md->count; i++) {
        const grpc_metadata *m = &md->metadata[i];
        size_t n = GRPC_SLICE_LENGTH(m->value);
        if (grpc_slice_str_cmp(m->key, key) != 0 || n + 1 > len) {
            continue;
        }
        memcpy(out, GRPC_SLICE_START_PTR(m->value), n);
        out[n] = 0;
        char err[160];
        if (rpc_secret_validate(out, err, sizeof err) == EM_OK) {
            return EM_OK;
        }
    }
    if (len > 0) {
        out[0] = 0;
    }
    return EM_EINVAL;
}

void rpc_secret_metadata(const char *secret, grpc_metadata *m, char *value_buf, size_t len)
{
    memset(m, 0, sizeof *m);
    snprintf(value_buf, len, BEARER "%s", secret);
    m->key = grpc_slice_from_static_string(RPC_AUTH_KEY);
    m->value = grpc_slice_from_static_string(value_buf);
}
