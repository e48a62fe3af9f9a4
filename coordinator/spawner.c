/* The spawner process for local workers (see spawner.h). Protocol on the socketpair, one text
 * line per message: coordinator -> spawner "K <rank>\n" (kill); spawner -> coordinator
 * "U <rank> <pid> <port>\n" (worker up) and "D <rank> <pid> <status>\n" (worker down). */
#define _GNU_SOURCE
#include "coordinator/spawner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timeutil.h"

#define SPAWN_MAX 64

struct coord_spawner {
    int fd;    /* coordinator's end */
    pid_t pid; /* spawner process */
    char buf[1024];
    size_t n_buf;
    int lost; /* the spawner's end closed: it died (read with __atomic from other threads) */
};

#define REPORT_TIMEOUT_S 30.0 /* a started worker must report its port by then */
#define STABLE_S         10.0 /* a worker that ran this long resets the restart backoff */
#define MAX_BACKOFF_S    30.0

typedef struct child {
    pid_t pid;
    double respawn_at; /* 0 = not scheduled */
    double started_at, report_by;
    int port_fd; /* while starting: the pipe its port comes on (-1 otherwise) */
    char line[32];
    size_t n_line;
    int quick_deaths; /* deaths in a row within STABLE_S of the start */
} child;

static volatile sig_atomic_t g_spawner_stop;

static void on_term(int sig)
{
    (void)sig;
    g_spawner_stop = 1;
}

static void send_line(int fd, const char *line)
{
    size_t n = strlen(line);
    while (n > 0) {
        ssize_t w = send(fd, line, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        line += w;
        n -= (size_t)w;
    }
}

/* In the forked child: a pipe holding the secret, *fd its read end, inherited by the worker
 * (which reads it to EOF and closes it); EM_EIO (*fd -1) when it cannot be made. */
static em_status secret_pipe(const char *secret, int *fd)
{
    int sp[2];
    size_t n = secret ? strlen(secret) : 0;
    *fd = -1;
    if (pipe(sp) != 0) { /* no CLOEXEC: the read end survives exec */
        return EM_EIO;
    }
    ssize_t w = write(sp[1], secret ? secret : "", n); /* far below the pipe's buffer */
    close(sp[1]);
    if (w != (ssize_t)n) {
        close(sp[0]);
        return EM_EIO;
    }
    *fd = sp[0];
    return EM_OK;
}

/* fork/exec of one worker: *pid, and *port_fd the read end of the pipe it reports its port on.
 * EM_EIO when the pipe or the fork fails. */
static em_status spawn_one(const coord_spawner_opts *o, int rank, pid_t *pid_out, int *port_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        return EM_EIO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return EM_EIO;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        dup2(2, 1);          /* worker stdout -> stderr: the coordinator's stdout stays its own */
        int wfd = dup(p[1]); /* without CLOEXEC */
        int sfd;             /* -1 when the pipe cannot be made: the worker then refuses to start */
        secret_pipe(o->cluster_secret, &sfd);
        char fdstr[16], threads[16], name[64], sfdstr[16];
        snprintf(fdstr, sizeof fdstr, "%d", wfd);
        snprintf(sfdstr, sizeof sfdstr, "%d", sfd);
        snprintf(threads, sizeof threads, "%d", o->n_threads);
        snprintf(name, sizeof name, "worker %d/%d", rank, o->n_workers);
        const char *argv[32] = {o->worker_bin, "--listen",  "127.0.0.1:0", "--model",
                                o->model_path, "--threads", threads,       "--report-fd",
                                fdstr,         "--name",    name,          "--cluster-secret-fd",
                                sfdstr};
        int n = 13;
        if (o->tls_cert) { /* paths, not secrets: the key file itself stays 0600 */
            const char *tls[6] = {"--internal-tls-cert", o->tls_cert,
                                  "--internal-tls-key",  o->tls_key,
                                  "--internal-tls-ca",   o->tls_ca};
            memcpy(argv + n, tls, sizeof tls);
            n += 6;
        }
        argv[n] = NULL;
        execv(o->worker_bin, (char *const *)argv);
        fprintf(stderr, "spawner: exec %s: %s\n", o->worker_bin, strerror(errno));
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    *port_fd = p[0];
    *pid_out = pid;
    return EM_OK;
}

/* Starts the children that are due. */
static void start_due(const coord_spawner_opts *o, child *kids, double now)
{
    for (int r = 0; r < o->n_workers; r++) {
        child *k = &kids[r];
        if (k->pid != 0 || k->respawn_at <= 0 || now < k->respawn_at) {
            continue;
        }
        k->respawn_at = 0;
        if (spawn_one(o, r, &k->pid, &k->port_fd) != EM_OK) {
            k->pid = 0;
            k->port_fd = -1;
            k->respawn_at = now + 1.0;
            continue;
        }
        k->started_at = now;
        k->report_by = now + REPORT_TIMEOUT_S;
        k->n_line = 0;
    }
}

/* Reads what a starting child reported; sends "U" once its port line is complete. A child that
 * has not reported by its deadline is killed (reaped and restarted like any dead worker). */
static void read_ports(int fd, const coord_spawner_opts *o, child *kids, double now)
{
    for (int r = 0; r < o->n_workers; r++) {
        child *k = &kids[r];
        if (k->port_fd < 0) {
            continue;
        }
        ssize_t n = read(k->port_fd, k->line + k->n_line, sizeof k->line - 1 - k->n_line);
        if (n > 0) {
            k->n_line += (size_t)n;
        }
        k->line[k->n_line] = 0;
        int done = memchr(k->line, '\n', k->n_line) != NULL || k->n_line == sizeof k->line - 1;
        if (done && atoi(k->line) > 0) {
            char msg[96];
            snprintf(msg, sizeof msg, "U %d %d %d\n", r, (int)k->pid, atoi(k->line));
            send_line(fd, msg);
        }
        if (done || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close(k->port_fd); /* reported, or gave up reporting (its exit is reaped) */
            k->port_fd = -1;
        } else if (now > k->report_by) {
            EM_LOG_ERROR("worker %d (pid %d) did not report its port within %.0f s: killing it", r,
                         (int)k->pid, REPORT_TIMEOUT_S);
            kill(k->pid, SIGKILL);
            close(k->port_fd);
            k->port_fd = -1;
        }
    }
}

/* Reaps dead children, reports "D" and schedules the restart: the delay doubles (up to
 * MAX_BACKOFF_S) for every death within STABLE_S of the start, and resets after a worker that
 * ran longer. */
static void reap(int fd, const coord_spawner_opts *o, child *kids)
{
    int st;
    pid_t dead;
    while ((dead = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int r = 0; r < o->n_workers; r++) {
            child *k = &kids[r];
            if (k->pid != dead) {
                continue;
            }
            char line[96];
            snprintf(line, sizeof line, "D %d %d %d\n", r, (int)dead, st);
            send_line(fd, line);
            double now = em_now_s(), up = now - k->started_at;
            k->pid = 0;
            if (k->port_fd >= 0) {
                close(k->port_fd);
                k->port_fd = -1;
            }
            k->quick_deaths = up < STABLE_S ? k->quick_deaths + 1 : 0;
            if (o->respawn_delay_ms >= 0) {
                double delay = o->respawn_delay_ms / 1000.0;
                for (int i = 1; i < k->quick_deaths && delay < MAX_BACKOFF_S; i++) {
                    delay = delay > 0 ? delay * 2 : 0.1;
                }
                delay = delay < MAX_BACKOFF_S ? delay : MAX_BACKOFF_S;
                if (k->quick_deaths > 1) {
                    EM_LOG_WARN("worker %d died %d times within %.0f s of starting: next start "
                                "in %.1f s",
                                r, k->quick_deaths, STABLE_S, delay);
                }
                k->respawn_at = now + delay + 1e-9;
            }
        }
    }
}

/* Handles the coordinator's "K <rank>" lines; EM_EUNAVAILABLE when the coordinator is gone. */
static em_status read_commands(int fd, const coord_spawner_opts *o, child *kids, char *in,
                               size_t *n_in, size_t cap)
{
    ssize_t r = read(fd, in + *n_in, cap - 1 - *n_in);
    if (r <= 0) {
        return EM_EUNAVAILABLE; /* coordinator gone */
    }
    *n_in += (size_t)r;
    char *nl;
    while ((nl = memchr(in, '\n', *n_in)) != NULL) {
        *nl = 0;
        int rank;
        if (sscanf(in, "K %d", &rank) == 1 && rank >= 0 && rank < o->n_workers &&
            kids[rank].pid > 0) {
            kill(kids[rank].pid, SIGKILL);
        }
        size_t used = (size_t)(nl - in) + 1;
        memmove(in, nl + 1, *n_in - used);
        *n_in -= used;
    }
    if (*n_in == cap - 1) {
        *n_in = 0;
    }
    return EM_OK;
}

static void spawner_main(int fd, const coord_spawner_opts *o)
{
    child kids[SPAWN_MAX];
    char in[256];
    size_t n_in = 0;
    memset(kids, 0, sizeof kids);
    for (int r = 0; r < o->n_workers; r++) {
        kids[r].respawn_at = 1e-9; /* due now */
        kids[r].port_fd = -1;
    }
    while (!g_spawner_stop) {
        start_due(o, kids, em_now_s());
        read_ports(fd, o, kids, em_now_s());
        reap(fd, o, kids);
        struct pollfd pfd[SPAWN_MAX + 1];
        int n = 0;
        pfd[n++] = (struct pollfd){fd, POLLIN, 0};
        for (int r = 0; r < o->n_workers; r++) {
            if (kids[r].port_fd >= 0) {
                pfd[n++] = (struct pollfd){kids[r].port_fd, POLLIN, 0};
            }
        }
        if (poll(pfd, (nfds_t)n, 50) > 0 && (pfd[0].revents & (POLLIN | POLLHUP)) &&
            read_commands(fd, o, kids, in, &n_in, sizeof in) != EM_OK) {
            break;
        }
    }
    for (int r = 0; r < o->n_workers; r++) {
        if (kids[r].pid > 0) {
            kill(kids[r].pid, SIGTERM);
        }
    }
    double t_end = em_now_s() + 3.0;
    for (int r = 0; r < o->n_workers; r++) {
        while (kids[r].pid > 0) {
            if (waitpid(kids[r].pid, NULL, WNOHANG) != 0) {
                break;
            }
            if (em_now_s() > t_end) {
                kill(kids[r].pid, SIGKILL);
                waitpid(kids[r].pid, NULL, 0);
                break;
            }
            usleep(10000);
        }
    }
}

em_status coord_spawner_start(const coord_spawner_opts *o, coord_spawner **out)
{
    int sv[2];
    *out = NULL;
    if (o->n_workers < 1 || o->n_workers > SPAWN_MAX) {
        return EM_EINVAL;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return EM_EIO;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return EM_EIO;
    }
    if (pid == 0) {
        close(sv[0]);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_term;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        em_log_set_role("spawner");
        spawner_main(sv[1], o);
        fflush(NULL);
        _exit(0); /* no atexit handlers of the coordinator */
    }
    close(sv[1]);
    coord_spawner *s = calloc(1, sizeof *s);
    if (s == NULL) {
        close(sv[0]);
        return EM_ENOMEM;
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    s->fd = sv[0];
    s->pid = pid;
    *out = s;
    return EM_OK;
}

int coord_spawner_poll(coord_spawner *s, coord_spawn_event *ev)
{
    if (s == NULL) {
        return 0;
    }
    for (;;) {
        char *nl = memchr(s->buf, '\n', s->n_buf);
        if (nl) {
            *nl = 0;
            char kind = 0;
            int rank = -1, pid = 0, val = 0;
            int ok = sscanf(s->buf, "%c %d %d %d", &kind, &rank, &pid, &val) == 4;
            size_t used = (size_t)(nl - s->buf) + 1;
            memmove(s->buf, nl + 1, s->n_buf - used);
            s->n_buf -= used;
            if (!ok || (kind != 'U' && kind != 'D')) {
                continue;
            }
            memset(ev, 0, sizeof *ev);
            ev->kind = kind == 'U' ? COORD_SPAWN_UP : COORD_SPAWN_DOWN;
            ev->rank = rank;
            ev->pid = pid;
            if (kind == 'U') {
                ev->port = val;
            } else {
                ev->status = val;
            }
            return 1;
        }
        if (s->n_buf >= sizeof s->buf - 1) {
            s->n_buf = 0;
        }
        ssize_t r = read(s->fd, s->buf + s->n_buf, sizeof s->buf - 1 - s->n_buf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            if (!__atomic_exchange_n(&s->lost, 1, __ATOMIC_SEQ_CST)) {
                EM_LOG_ERROR("the worker spawner (pid %d) is gone: local workers can no longer "
                             "be started",
                             (int)s->pid);
            }
            return 0;
        }
        if (r < 0) {
            return 0;
        }
        s->n_buf += (size_t)r;
    }
}

int coord_spawner_lost(coord_spawner *s)
{
    return s != NULL && __atomic_load_n(&s->lost, __ATOMIC_SEQ_CST);
}

void coord_spawner_kill(coord_spawner *s, int rank)
{
    if (s) {
        char line[32];
        snprintf(line, sizeof line, "K %d\n", rank);
        send_line(s->fd, line);
    }
}

void coord_spawner_stop(coord_spawner *s)
{
    if (s == NULL) {
        return;
    }
    close(s->fd); /* the spawner sees EOF, stops its workers and exits */
    double t_end = em_now_s() + 5.0;
    while (waitpid(s->pid, NULL, WNOHANG) == 0) {
        if (em_now_s() > t_end) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            break;
        }
        usleep(10000);
    }
    free(s);
}

static int is_exec(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

em_status coord_spawner_find_worker(const char *flag, char *out, size_t len)
{
    if (flag && flag[0]) {
        snprintf(out, len, "%s", flag);
        return is_exec(out) ? EM_OK : EM_EINVAL;
    }
    const char *env = getenv("EMSERVE_WORKER_BIN");
    if (env && env[0]) {
        snprintf(out, len, "%s", env);
        return is_exec(out) ? EM_OK : EM_EINVAL;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return EM_EIO;
    }
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash == NULL) {
        return EM_EIO;
    }
    *slash = 0;
    static const char *const rel[] = {"/emserve_worker", "/../worker/emserve_worker"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, len, "%s%s", exe, rel[i]);
        if (is_exec(out)) {
            return EM_OK;
        }
    }
    return EM_EIO;
}
