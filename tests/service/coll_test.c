/* The gloo shim and the TCP rendezvous store: 2 forked ranks sum 1 / 1,000 / 1M floats
 * (exact integers, so the expected sums are exact), pass a barrier, re-form with a new prefix,
 * through the TCP store (hosted by the parent, as the coordinator does) and FileStore. Also:
 * a missing peer fails init within its timeout, and garbage sent to the store is harmless. */
#undef NDEBUG
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coll/coll.h"
#include "tests/testutil/testutil.h"

static const size_t k_sizes[] = {1, 1000, 1000000};

/* One rank's work; returns the number of failed checks. */
static int run_rank(int rank, const char *rdv, const char *prefix)
{
    char err[512] = "";
    int fails = 0;
    coll_ctx *c = coll_init(rank, 2, rdv, NULL, prefix, "127.0.0.1", 10000, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "rank %d: coll_init(%s, %s) failed: %s\n", rank, rdv, prefix, err);
        return 1;
    }
    for (size_t t = 0; t < sizeof k_sizes / sizeof k_sizes[0]; t++) {
        size_t n = k_sizes[t];
        float *buf = malloc(n * sizeof *buf);
        for (size_t i = 0; i < n; i++) {
            /* rank 0 holds i % 1000, rank 1 holds 2 * (i % 1000): sum is 3 * (i % 1000) */
            buf[i] = (float)((rank + 1) * (int)(i % 1000));
        }
        if (coll_allreduce_sum_float(c, buf, n) != 0) {
            fprintf(stderr, "rank %d: allreduce n=%zu: %s\n", rank, n, coll_last_error(c));
            fails++;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (buf[i] != (float)(3 * (int)(i % 1000))) {
                    fprintf(stderr, "rank %d n=%zu: buf[%zu]=%g want %d\n", rank, n, i, buf[i],
                            3 * (int)(i % 1000));
                    fails++;
                    break;
                }
            }
        }
        free(buf);
    }
    if (coll_barrier(c) != 0) {
        fprintf(stderr, "rank %d: barrier: %s\n", rank, coll_last_error(c));
        fails++;
    }
    if (coll_rank(c) != rank || coll_size(c) != 2) {
        fails++;
    }
    coll_destroy(c);
    return fails;
}

/* Forks 2 ranks that each form two groups in turn (prefixes p1 then p2). */
static int run_group(const char *rdv, const char *p1, const char *p2)
{
    pid_t pids[2];
    for (int r = 0; r < 2; r++) {
        pids[r] = fork();
        assert(pids[r] >= 0);
        if (pids[r] == 0) {
            int f = run_rank(r, rdv, p1) + run_rank(r, rdv, p2);
            fflush(NULL);
            exit(f == 0 ? 0 : 1);
        }
    }
    int fails = 0;
    for (int r = 0; r < 2; r++) {
        int st = 0;
        waitpid(pids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "%s: rank %d failed (status %d)\n", rdv, r, st);
            fails++;
        }
    }
    return fails;
}

static void send_garbage(int port)
{
    static const struct {
        const char *b;
        size_t n;
    } junk[] = {
        {"", 0},                                  /* connect and close */
        {"X", 1},                                 /* unknown op */
        {"S\xff\xff\xff\xff", 5},                 /* key length 4 GiB */
        {"W\x01\x00\x00\x00\xff\xff\xff\x7f", 9}, /* 2^31 keys */
        {"G\x05\x00\x00\x00"
         "ab",
         7}, /* key cut short */
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
        if (junk[i].n > 0) {
            ssize_t w = send(fd, junk[i].b, junk[i].n, MSG_NOSIGNAL);
            (void)w;
        }
        close(fd);
    }
}

int main(void)
{
    char err[256];
    int port = 0, fails = 0;
    coll_store_server *srv = NULL;
    assert(coll_store_server_start("127.0.0.1", 0, &srv, &port, err, sizeof err) == 0);
    assert(port > 0);

    /* Store round trip through the client ops, after garbage. */
    send_garbage(port);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    coll_store_ops ops;
    assert(coll_store_client_ops(addr, &ops) == 0);
    assert(ops.set(ops.user, "k1", "hello", 5) == 0);
    size_t len = 0;
    char *v = ops.get(ops.user, "k1", &len);
    assert(v != NULL && len == 5 && memcmp(v, "hello", 5) == 0);
    free(v);
    assert(ops.get(ops.user, "absent", &len) == NULL);
    const char *keys[] = {"k1", "absent"};
    assert(ops.wait(ops.user, keys, 1, 1000) == 0);
    assert(ops.wait(ops.user, keys, 2, 200) != 0); /* times out */
    coll_store_client_ops_free(&ops);
    {
        coll_store_ops bad;
        assert(coll_store_client_ops("nocolon", &bad) != 0);
        assert(coll_store_client_ops("h:99999", &bad) != 0);
    }
    coll_store_server_clear(srv);
    assert(coll_store_server_count(srv) == 0);
    coll_store_server_stop(srv); /* joins its threads: nothing half-done is forked below */

    /* The ranks rendezvous through a store hosted by another process (as the coordinator
     * does); forking them from a process with live server threads would copy those threads'
     * half-done allocations. */
    int pp[2], cp[2];
    assert(pipe(pp) == 0 && pipe(cp) == 0);
    pid_t store_pid = fork();
    assert(store_pid >= 0);
    if (store_pid == 0) {
        close(pp[0]);
        close(cp[1]);
        coll_store_server *s2 = NULL;
        int p2 = 0;
        if (coll_store_server_start("127.0.0.1", 0, &s2, &p2, err, sizeof err) != 0) {
            exit(1);
        }
        ssize_t w = write(pp[1], &p2, sizeof p2);
        char c;
        ssize_t r = read(cp[0], &c, 1); /* until the parent closes its end */
        (void)w;
        (void)r;
        coll_store_server_stop(s2);
        fflush(NULL);
        exit(0);
    }
    close(pp[1]);
    close(cp[0]);
    assert(read(pp[0], &port, sizeof port) == (ssize_t)sizeof port && port > 0);

    /* Two groups through the TCP store (the coordinator's way), then through FileStore. */
    char rdv[96];
    snprintf(rdv, sizeof rdv, "tcp:127.0.0.1:%d", port);
    fails += run_group(rdv, "gen1", "gen2");
    char dir[512];
    snprintf(dir, sizeof dir, "file:%s", tu_tmpdir());
    fails += run_group(dir, "fgen1", "fgen2");

    /* A missing peer: init fails after its timeout with a message. */
    coll_ctx *c = coll_init(0, 2, rdv, NULL, "lonely", "127.0.0.1", 500, err, sizeof err);
    assert(c == NULL);
    printf("missing peer: %s\n", err);
    assert(strlen(err) > 0);
    /* Bad arguments are errors, not crashes. */
    assert(coll_init(2, 2, rdv, NULL, "x", NULL, 100, err, sizeof err) == NULL);
    assert(coll_init(0, 1, NULL, NULL, "x", NULL, 100, err, sizeof err) == NULL);
    assert(coll_allreduce_sum_float(NULL, NULL, 0) == -1);

    close(cp[1]);
    int st = 0;
    waitpid(store_pid, &st, 0);
    fails += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("coll_test: %s (%d failures)\n", fails ? "FAIL" : "ok", fails);
    return fails ? 1 : 0;
}
