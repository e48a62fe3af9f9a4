/* emserve_worker: holds one shard of the model (its KV heads and FFN rows) and runs the
 * coordinator's batched steps, all-reducing with the other workers through gloo.
 *   emserve_worker --listen HOST:PORT --cluster-secret-file F [--model PATH] [--threads N]
 *                  [--gloo-host ADDR]
 * Started by the coordinator on one machine, or by hand on each machine of a multi-node group
 * (the coordinator then gets --worker-addr for each). Flags and wiring only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/flags.h"
#include "common/log.h"
#include "common/version.h"
#include "rpc/rpc_auth.h"
#include "rpc/rpc_log.h"
#include "rpc/rpc_tls.h"
#include "worker/rpc_worker.h"
#include "worker/wstate.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct listen_info {
    int report_fd;
    const char *host;
} listen_info;

static void on_listening(int port, void *user)
{
    listen_info *li = user;
    if (li->report_fd < 0) { /* started by hand: tell the operator; else tell the spawner */
        printf("listening on %s:%d\n", li->host, port);
        fflush(stdout);
    } else {
        char line[32];
        int n = snprintf(line, sizeof line, "%d\n", port);
        if (write(li->report_fd, line, (size_t)n) != n) {
            EM_LOG_WARN("cannot report the port on fd %d", li->report_fd);
        }
        close(li->report_fd);
    }
}

/* Flags (common/flags.h: command line > EMSERVE_WORKER_* environment > --config file, section
 * [emserve_worker]). */
typedef struct wflags {
    const char *listen_addr, *model_path, *gloo_host, *name, *log_format, *secret_file;
    const char *tls_cert, *tls_key, *tls_ca; /* internal mutual TLS (rpc/rpc_tls.h) */
    int threads, report_fd, secret_fd;
    long max_msg;
} wflags;

#define N_WFLAGS 13

static void flag_table(wflags *w, em_flag *t)
{
    const em_flag table[N_WFLAGS] = {
        {"listen", EM_FLAG_STR, &w->listen_addr, 0, 0, "HOST:PORT",
         "address of the worker's gRPC endpoint", 0, 0},
        {"model", EM_FLAG_STR, &w->model_path, 0, 0, "PATH",
         "GGUF model (default: the path the coordinator sends)", 0, 0},
        {"threads", EM_FLAG_INT, &w->threads, 0, 256, "N",
         "CPU threads for the fast kernels (0 = reference)", 0, 0},
        {"gloo-host", EM_FLAG_STR, &w->gloo_host, 0, 0, "ADDR",
         "address gloo binds and advertises to the other workers (default: the coordinator's "
         "suggestion, 127.0.0.1 locally)",
         0, 0},
        {"cluster-secret-file", EM_FLAG_STR, &w->secret_file, 0, 0, "FILE",
         "the cluster's shared secret (the coordinator's --cluster-secret-file); required when "
         "started by hand",
         0, 0},
        {"internal-tls-cert", EM_FLAG_STR, &w->tls_cert, 0, 0, "FILE",
         "PEM certificate of this worker's port: it then speaks TLS only (the coordinator's "
         "--internal-tls-*)",
         0, 0},
        {"internal-tls-key", EM_FLAG_STR, &w->tls_key, 0, 0, "FILE",
         "PEM private key of --internal-tls-cert", 0, 0},
        {"internal-tls-ca", EM_FLAG_STR, &w->tls_ca, 0, 0, "FILE",
         "PEM CA: only a client with a certificate it signed (the coordinator) is served; required "
         "with --internal-tls-cert",
         0, 0},
        {"max-message-bytes", EM_FLAG_LONG, &w->max_msg, 0, 1L << 30, "N",
         "largest request accepted (0 = 4194304)", 0, 0},
        {"log-format", EM_FLAG_STR, &w->log_format, 0, 0, "text|json",
         "log lines as text or JSON objects", 0, 0},
        {"name", EM_FLAG_STR, &w->name, 0, 0, "NAME", "log name (set by the coordinator's spawner)",
         0, 0},
        {"report-fd", EM_FLAG_INT, &w->report_fd, -1, 1 << 20, "FD",
         "write the bound port to this descriptor (set by the spawner)", 0, 0},
        {"cluster-secret-fd", EM_FLAG_INT, &w->secret_fd, -1, 1 << 20, "FD",
         "read the secret from this descriptor (set by the spawner)", 0, 0},
    };
    memcpy(t, table, sizeof table);
}

/* *exit_now set: exit now with status 0 (--help, --version); EM_EINVAL: bad flags (message
 * printed). */
static em_status parse(wflags *w, int argc, char **argv, int *exit_now)
{
    static em_flag table[N_WFLAGS];
    static em_flags fl = {"emserve_worker",
                          "EMSERVE_WORKER_",
                          EMSERVE_VERSION,
                          "usage: emserve_worker --cluster-secret-file FILE [--listen HOST:PORT] "
                          "[--model PATH] [--threads N] [--gloo-host ADDR] [flags]",
                          table,
                          N_WFLAGS,
                          NULL,
                          0,
                          0};
    char err[512] = "";
    flag_table(w, table);
    if (em_flags_parse(&fl, argc, argv, exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve_worker: %s (see --help)\n", err);
        return EM_EINVAL;
    }
    if (*exit_now) {
        return EM_OK;
    }
    em_log_format lf;
    if (em_log_format_parse(w->log_format, &lf) != EM_OK) {
        fprintf(stderr, "emserve_worker: --log-format: '%s' is not text or json\n", w->log_format);
        return EM_EINVAL;
    }
    em_log_set_format(lf);
    em_log_set_role(w->name);
    if (w->report_fd < 0) { /* started by hand (a spawned worker runs the coordinator's config) */
        em_flags_log(&fl);
    }
    return EM_OK;
}

int main(int argc, char **argv)
{
    wflags fw = {.listen_addr = "127.0.0.1:0",
                 .model_path = "",
                 .gloo_host = "",
                 .name = "worker",
                 .log_format = "text",
                 .threads = 1,
                 .report_fd = -1,
                 .secret_fd = -1};
    int exit_now = 0;
    if (parse(&fw, argc, argv, &exit_now) != EM_OK) {
        return 2;
    }
    if (exit_now) {
        return 0;
    }
    const char *listen_addr = fw.listen_addr, *model_path = fw.model_path;
    const char *gloo_host = fw.gloo_host, *secret_file = fw.secret_file;
    int threads = fw.threads, report_fd = fw.report_fd, secret_fd = fw.secret_fd;
    long max_msg = fw.max_msg;
    worker_state w;
    worker_state_init(&w, model_path, threads);
    char err[512] = "";
    em_status sst = EM_EINVAL;
    if (secret_fd >= 0) {
        sst = rpc_secret_read_fd(secret_fd, w.cluster_secret, sizeof w.cluster_secret, err,
                                 sizeof err);
    } else if (secret_file) {
        sst = rpc_secret_read_file(secret_file, w.cluster_secret, sizeof w.cluster_secret, err,
                                   sizeof err);
    } else {
        snprintf(err, sizeof err,
                 "a cluster secret is required: --cluster-secret-file FILE, the same file as "
                 "the coordinator's");
    }
    if (sst != EM_OK) {
        fprintf(stderr, "emserve_worker: %s\n", err);
        worker_state_free(&w);
        return 2;
    }
    rpc_tls tls;
    rpc_tls_files tf = {fw.tls_cert, fw.tls_key, fw.tls_ca};
    if (rpc_tls_load(&tf, 1, &tls, err, sizeof err) != EM_OK ||
        (rpc_tls_on(&tls) && tls.ca == NULL)) {
        fprintf(stderr, "emserve_worker: %s\n",
                err[0] ? err
                       : "--internal-tls-cert needs --internal-tls-ca: internal TLS is mutual (the "
                         "coordinator must present a certificate the CA signed)");
        rpc_tls_free(&tls);
        worker_state_free(&w);
        return 2;
    }
    w.store_tls = (coll_tls){tls.cert, tls.key, tls.ca}; /* the store runs the same TLS */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    snprintf(w.gloo_host, sizeof w.gloo_host, "%s", gloo_host);
    char host[256];
    snprintf(host, sizeof host, "%s", listen_addr);
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = 0;
    }
    listen_info li = {report_fd, host};
    rpc_log_route(); /* gRPC's own lines in our format */
    grpc_init();
    em_status st = worker_rpc_serve(&w, listen_addr, max_msg, &tls, &g_stop, on_listening, &li);
    worker_state_free(&w);
    rpc_tls_free(&tls);
    grpc_shutdown();
    return st == EM_OK ? 0 : 1;
}
