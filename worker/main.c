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

#include "common/log.h"
#include "rpc/rpc_auth.h"
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

static void usage(FILE *f)
{
    fprintf(f, "usage: emserve_worker --cluster-secret-file FILE [--listen HOST:PORT] [--model PATH]\n"
               "                      [--threads N] [--gloo-host ADDR] [--name NAME]\n"
               "  --cluster-secret-file  the cluster's shared secret (the coordinator's\n"
               "               --cluster-secret-file); every call must carry it. Required\n"
               "               (the coordinator hands it to the workers it starts itself)\n"
               "  --listen     address of the worker's gRPC endpoint (default 127.0.0.1:0)\n"
               "  --model      GGUF model (default: the path the coordinator sends)\n"
               "  --threads    CPU threads for the fast kernels (default 1; 0 = reference)\n"
               "  --gloo-host  address gloo binds and advertises to the other workers\n"
               "               (default: the coordinator's suggestion, 127.0.0.1 locally)\n"
               "  --max-message-bytes N  largest request accepted (default 4194304)\n");
}

int main(int argc, char **argv)
{
    const char *listen_addr = "127.0.0.1:0", *model_path = "", *gloo_host = "", *name = "worker";
    const char *secret_file = NULL;
    int threads = 1, report_fd = -1, secret_fd = -1;
    long max_msg = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "emserve_worker: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--listen") == 0) {
            listen_addr = v;
        } else if (strcmp(a, "--model") == 0) {
            model_path = v;
        } else if (strcmp(a, "--threads") == 0) {
            threads = atoi(v);
        } else if (strcmp(a, "--gloo-host") == 0) {
            gloo_host = v;
        } else if (strcmp(a, "--report-fd") == 0) {
            report_fd = atoi(v);
        } else if (strcmp(a, "--name") == 0) {
            name = v;
        } else if (strcmp(a, "--cluster-secret-file") == 0) {
            secret_file = v;
        } else if (strcmp(a, "--cluster-secret-fd") == 0) {
            secret_fd = atoi(v);
        } else if (strcmp(a, "--max-message-bytes") == 0) {
            max_msg = atol(v);
        } else {
            fprintf(stderr, "emserve_worker: unknown flag %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (threads < 0 || threads > 256) {
        fprintf(stderr, "emserve_worker: --threads must be in [0, 256]\n");
        return 2;
    }
    if (max_msg < 0) {
        fprintf(stderr, "emserve_worker: --max-message-bytes must be positive\n");
        return 2;
    }
    em_log_set_role(name);
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
    grpc_init();
    em_status st = worker_rpc_serve(&w, listen_addr, max_msg, &g_stop, on_listening, &li);
    worker_state_free(&w);
    grpc_shutdown();
    return st == EM_OK ? 0 : 1;
}
