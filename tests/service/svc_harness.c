/* Test harness for the service (see svc_harness.h). */
#define _GNU_SOURCE
#include "tests/service/svc_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/testutil/goldens.h"
#include "tests/testutil/testutil.h"

extern char **environ;

const char *svc_model(void)
{
    return tu_model_path(0); /* style.md 10: golden runs are skipped, loudly, without the model */
}

const char *svc_secret(void)
{
    return "emserve-test-cluster-secret-0123456789";
}

const char *svc_secret_file(void)
{
    static char path[PATH_MAX];
    if (path[0] == 0) {
        char p[PATH_MAX];
        tu_tmp_path(p, sizeof p, "cluster.secret");
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, svc_secret(), strlen(svc_secret())) < 0) {
            fprintf(stderr, "cannot write %s: %s\n", p, strerror(errno));
        }
        if (fd >= 0) {
            close(fd);
        }
        snprintf(path, sizeof path, "%s", p);
    }
    return path;
}

/* Parent pid of pid (from /proc/PID/stat), SVC_NO_PID when unknown. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return SVC_NO_PID;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    int ppid = 0;
    if (p == NULL || sscanf(p + 2, "%*c %d", &ppid) != 1) {
        return SVC_NO_PID;
    }
    return (pid_t)ppid;
}

/* 1 when pid's command line has the argument `want`. */
static int has_arg(pid_t pid, const char *want)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    for (size_t i = 0; i < n; i += strlen(buf + i) + 1) {
        if (strncmp(buf + i, want, strlen(want)) == 0) {
            return 1;
        }
    }
    return 0;
}

pid_t svc_local_worker_pid(const svc *s, int rank)
{
    char want[32];
    snprintf(want, sizeof want, "worker %d/", rank);
    DIR *d = opendir("/proc");
    pid_t found = SVC_NO_PID;
    struct dirent *e;
    while (d && found == SVC_NO_PID && (e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid > 0 && parent_of(parent_of(pid)) == s->pid && has_arg(pid, want)) {
            found = pid;
        }
    }
    if (d) {
        closedir(d);
    }
    return found;
}

pid_t svc_spawner_pid(const svc *s)
{
    DIR *d = opendir("/proc");
    pid_t found = SVC_NO_PID;
    struct dirent *e;
    while (d && found == SVC_NO_PID && (e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid > 0 && parent_of(pid) == s->pid) {
            found = pid;
        }
    }
    if (d) {
        closedir(d);
    }
    return found;
}

const char *svc_health(coord_client *cl, long timeout_ms)
{
    int serving;
    em_status st = coord_client_health(cl, timeout_ms, &serving);
    return st != EM_OK ? em_status_str(st) : serving ? "SERVING" : "NOT_SERVING";
}

int svc_golden_ok(coord_client *cl, int n_tokens, const char *what)
{
    coord_client_req rq;
    coord_client_result res;
    memset(&rq, 0, sizeof rq);
    rq.text = tu_goldens[0].prompt;
    rq.max_tokens = n_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 30000;
    coord_client_generate(cl, &rq, &res);
    int ok = res.status == GRPC_STATUS_OK && res.n_output == n_tokens &&
             memcmp(res.output_ids, tu_goldens[0].ids, sizeof(int32_t) * (size_t)n_tokens) == 0;
    if (!ok) {
        fprintf(stderr, "FAIL golden generation %s: status %d (%s), %d ids\n", what, res.status,
                res.message, res.n_output);
    }
    coord_client_result_free(&res);
    return ok;
}

static void bin_path(const char *rel, const char *env, char *out, size_t len)
{
    const char *e = getenv(env);
    const char *src = getenv("TEST_SRCDIR");
    if (e && e[0]) {
        snprintf(out, len, "%s", e);
    } else if (src) {
        snprintf(out, len, "%s/emserve/%s", src, rel);
    } else {
        snprintf(out, len, "bazel-bin/%s", rel);
    }
}

/* Processes started here and not yet stopped: stopped at exit (a failed REQUIRE, an early
 * return), so no service outlives its test. */
#define MAX_STARTED 64
static pid_t g_started[MAX_STARTED];

static void stop_leftovers(void)
{
    for (int i = 0; i < MAX_STARTED; i++) {
        /* only a live child of ours: a pid reaped by the test is not signalled */
        if (g_started[i] > 0 && waitpid(g_started[i], NULL, WNOHANG) == 0) {
            svc s = {.pid = g_started[i]};
            svc_stop(&s);
        }
        g_started[i] = 0;
    }
}

static void remember(pid_t pid)
{
    static int registered;
    if (!registered) {
        registered = atexit(stop_leftovers) == 0;
    }
    for (int i = 0; i < MAX_STARTED; i++) {
        if (g_started[i] <= 0) {
            g_started[i] = pid;
            return;
        }
    }
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_STARTED; i++) {
        if (g_started[i] == pid) {
            g_started[i] = 0;
        }
    }
}

/* posix_spawn of argv with stdout to a pipe; waits for "listening on HOST:PORT". */
static em_status spawn_listen(const char *const *argv, svc *s)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        fprintf(stderr, "pipe: %s\n", strerror(errno));
        return EM_EIO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    memset(s, 0, sizeof *s);
    int rc = posix_spawn(&s->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        fprintf(stderr, "spawn %s: %s\n", argv[0], strerror(rc));
        close(p[0]);
        return EM_EIO;
    }
    remember(s->pid);
    char buf[512];
    size_t n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 90 || n + 1 >= sizeof buf) {
            break;
        }
        struct pollfd pfd = {p[0], POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0) {
            continue;
        }
        ssize_t r = read(p[0], buf + n, sizeof buf - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        buf[n] = 0;
        char *l = strstr(buf, "listening on ");
        if (l && strchr(l, '\n')) {
            *strchr(l, '\n') = 0;
            snprintf(s->addr, sizeof s->addr, "%s", l + strlen("listening on "));
            close(p[0]);
            return EM_OK;
        }
    }
    close(p[0]);
    fprintf(stderr, "no 'listening on' line from %s (got: %.*s)\n", argv[0], (int)n, buf);
    svc_stop(s);
    return EM_EUNAVAILABLE;
}

em_status svc_spawn(svc *s, const char *const *argv)
{
    return spawn_listen(argv, s);
}

void svc_bin(const char *rel, char *out, size_t len)
{
    bin_path(rel, "", out, len);
}

em_status svc_start(svc *s, int n_workers, const char *const *extra)
{
    return svc_start_model(s, svc_model(), n_workers, extra);
}

em_status svc_start_model(svc *s, const char *model, int n_workers, const char *const *extra)
{
    char bin[PATH_MAX], wbin[PATH_MAX], nw[16];
    bin_path("coordinator/emserve", "EMSERVE_BIN", bin, sizeof bin);
    bin_path("worker/emserve_worker", "EMSERVE_WORKER_BIN", wbin, sizeof wbin);
    snprintf(nw, sizeof nw, "%d", n_workers);
    const char *argv[64] = {bin,        "--model",     model,          "--workers", nw,
                            "--listen", "127.0.0.1:0", "--worker-bin", wbin};
    int argc = 9;
    for (int i = 0; extra && extra[i] && argc < 62; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    return spawn_listen(argv, s);
}

em_status svc_start_worker(svc *s, const char *listen)
{
    char wbin[PATH_MAX];
    bin_path("worker/emserve_worker", "EMSERVE_WORKER_BIN", wbin, sizeof wbin);
    const char *argv[] = {wbin,
                          "--listen",
                          listen,
                          "--model",
                          svc_model(),
                          "--cluster-secret-file",
                          svc_secret_file(),
                          NULL};
    return spawn_listen(argv, s);
}

em_status svc_start_coordinator(svc *s, const char *const *worker_addrs, int n,
                                const char *const *extra)
{
    char bin[PATH_MAX];
    bin_path("coordinator/emserve", "EMSERVE_BIN", bin, sizeof bin);
    const char *argv[64] = {bin,
                            "--model",
                            svc_model(),
                            "--listen",
                            "127.0.0.1:0",
                            "--cluster-secret-file",
                            svc_secret_file()};
    int argc = 7;
    for (int i = 0; i < n && argc < 60; i++) {
        argv[argc++] = "--worker-addr";
        argv[argc++] = worker_addrs[i];
    }
    for (int i = 0; extra && extra[i] && argc < 62; i++) {
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    return spawn_listen(argv, s);
}

int svc_alive(const svc *s)
{
    return s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0;
}

int svc_stop(svc *s)
{
    int st = -1;
    if (s->pid <= 0) {
        return st;
    }
    forget(s->pid);
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return st;
        }
        usleep(10000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return st;
}
