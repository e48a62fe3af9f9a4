/* emserve: the coordinator. Starts N local workers (or uses --worker-addr workers on other
 * machines), forms the gloo group, serves emserve.v1 over gRPC and prints
 * "listening on HOST:PORT" once every worker has joined. Flags and wiring only. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "coll/coll.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "common/version.h"
#include "coordinator/chat_template.h"
#include "coordinator/client.h"
#include "coordinator/group.h"
#include "coordinator/http_server.h"
#include "coordinator/rpc_server.h"
#include "coordinator/sched.h"
#include "coordinator/sched_kv.h"
#include "coordinator/spawner.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rpc/rpc_auth.h"
#include "rpc/rpc_log.h"
#include "rpc/rpc_tls.h"

typedef struct flags {
    const char *model, *listen, *worker_bin, *store_bind, *advertise, *demo_prompt, *demo_chat;
    const char *metrics, *http, *log_format, *act_quant_name;
    const char *secret_file;                                    /* hardening (issue 12) */
    const char *tls_cert, *tls_key, *tls_client_ca;             /* public port TLS */
    const char *http_tls_cert, *http_tls_key;                   /* HTTPS on the HTTP ports */
    const char *itls_cert, *itls_key, *itls_ca, *itls_name;     /* internal mutual TLS */
    int store_conn_per_client, http_max_conn, http_conn_per_ip; /* per-client bounds */
    long store_bytes_per_client, http_conn_memory;
    const char *addr_items[COORD_MAX_WORKERS];
    em_flag_list addrs;
    int workers, workers_set, threads, threads_set, max_batch_tokens, max_seqs, prefill_chunk,
        mixed_prefill;
    int respawn_delay_ms, demo_tokens, exit_after_demo, log_debug, store_port, act_quant;
    long coll_timeout_ms, ready_timeout_ms;
    long step_timeout_ms, max_message_bytes, drain_grace_ms; /* hardening (issue 12) */
    int max_queue;
    const char *kv_memory, *kv_reserve; /* KV memory budget (coordinator/sched_kv.h) */
} flags;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---- flags (common/flags.h: command line > EMSERVE_* environment > --config file) ------------ */

#define N_FLAGS 46

static void flag_table(flags *f, em_flag *t)
{
    const em_flag table[N_FLAGS] = {
        {"model", EM_FLAG_STR, &f->model, 0, 0, "PATH",
         "GGUF model (default: the installed SmolLM2-135M-Instruct, or the test model)", 0, 0},
        {"workers", EM_FLAG_INT, &f->workers, 1, COORD_MAX_WORKERS, "N",
         "local worker processes (at most the model's KV heads)", 0, 0},
        {"listen", EM_FLAG_STR, &f->listen, 0, 0, "HOST:PORT", "public gRPC address (port 0 = any)",
         0, 0},
        {"worker-addr", EM_FLAG_LIST, &f->addrs, 0, 0, "HOST:PORT",
         "a worker started by hand (once per worker, in rank order; replaces local workers)", 0, 0},
        {"http-listen", EM_FLAG_STR, &f->http, 0, 0, "HOST:PORT",
         "OpenAI-compatible HTTP API with /health, /health/ready, /metrics (port 0 = any)", 0, 0},
        {"metrics-listen", EM_FLAG_STR, &f->metrics, 0, 0, "HOST:PORT",
         "/metrics and /health only, on a port of their own", 0, 0},
        {"worker-bin", EM_FLAG_STR, &f->worker_bin, 0, 0, "PATH",
         "emserve_worker binary (default: next to this binary)", 0, 0},
        {"threads", EM_FLAG_INT, &f->threads, 0, 1024, "N",
         "kernel threads per worker (default: the online CPUs / local workers, at least 1)", 0, 0},
        {"act-quant", EM_FLAG_STR, &f->act_quant_name, 0, 0, "f32|q8",
         "quantized-weight matmuls: f32 activations (the f32 reference's answers) or int8 "
         "activations (llama.cpp's numerics, faster prompt processing)",
         0, 0},
        {"max-batch-tokens", EM_FLAG_INT, &f->max_batch_tokens, 1, 1 << 20, "N",
         "tokens per scheduler step", 0, 0},
        {"max-seqs", EM_FLAG_INT, &f->max_seqs, 1, 1 << 16, "N", "sequences running at once", 0, 0},
        {"prefill-chunk", EM_FLAG_INT, &f->prefill_chunk, 1, 1 << 20, "N",
         "most prompt tokens of one request per step", 0, 0},
        {"mixed-prefill", EM_FLAG_INT, &f->mixed_prefill, 1, 1 << 20, "N",
         "most prompt tokens of a step that also decodes (bounds inter-token latency)", 0, 0},
        {"max-queue", EM_FLAG_INT, &f->max_queue, 0, 1 << 20, "N",
         "requests waiting for a sequence slot before new ones get RESOURCE_EXHAUSTED", 0, 0},
        {"respawn-delay-ms", EM_FLAG_INT, &f->respawn_delay_ms, -1, 3600000, "N",
         "restart a dead local worker after N ms (-1 never)", 0, 0},
        {"store-bind", EM_FLAG_STR, &f->store_bind, 0, 0, "HOST",
         "rendezvous store address (default 127.0.0.1; 0.0.0.0 multi-node)", 0, 0},
        {"store-port", EM_FLAG_INT, &f->store_port, 0, 65535, "N",
         "rendezvous store port (0 = any free port)", 0, 0},
        {"advertise-host", EM_FLAG_STR, &f->advertise, 0, 0, "HOST",
         "address workers use to reach the store (default: store-bind)", 0, 0},
        {"cluster-secret-file", EM_FLAG_STR, &f->secret_file, 0, 0, "FILE",
         "shared secret of internal traffic and of GetServerInfo's admin view; required with "
         "--worker-addr (default for local workers: a random one made at start)",
         0, 0},
        {"tls-cert", EM_FLAG_STR, &f->tls_cert, 0, 0, "FILE",
         "PEM certificate (chain) of the public gRPC port: it then speaks TLS only", 0, 0},
        {"tls-key", EM_FLAG_STR, &f->tls_key, 0, 0, "FILE", "PEM private key of --tls-cert", 0, 0},
        {"tls-client-ca", EM_FLAG_STR, &f->tls_client_ca, 0, 0, "FILE",
         "PEM CA: the public port then serves only clients presenting a certificate it signed "
         "(mutual TLS)",
         0, 0},
        {"http-tls-cert", EM_FLAG_STR, &f->http_tls_cert, 0, 0, "FILE",
         "PEM certificate of the HTTP ports (--http-listen, --metrics-listen): HTTPS only", 0, 0},
        {"http-tls-key", EM_FLAG_STR, &f->http_tls_key, 0, 0, "FILE",
         "PEM private key of --http-tls-cert", 0, 0},
        {"internal-tls-cert", EM_FLAG_STR, &f->itls_cert, 0, 0, "FILE",
         "PEM certificate for coordinator <-> worker traffic (mutual TLS; the same on the "
         "workers, local ones get it passed on)",
         0, 0},
        {"internal-tls-key", EM_FLAG_STR, &f->itls_key, 0, 0, "FILE",
         "PEM private key of --internal-tls-cert", 0, 0},
        {"internal-tls-ca", EM_FLAG_STR, &f->itls_ca, 0, 0, "FILE",
         "PEM CA that signed the workers' and the coordinator's internal certificates", 0, 0},
        {"internal-tls-name", EM_FLAG_STR, &f->itls_name, 0, 0, "NAME",
         "check the workers' certificates against NAME instead of their address", 0, 0},
        {"store-max-conn-per-client", EM_FLAG_INT, &f->store_conn_per_client, 1, 128, "N",
         "rendezvous store: connections (threads) one client address may hold at once", 0, 0},
        {"store-max-bytes-per-client", EM_FLAG_LONG, &f->store_bytes_per_client, 1024, 16L << 20,
         "N", "rendezvous store: key + value bytes one client address may store", 0, 0},
        {"http-max-conn", EM_FLAG_INT, &f->http_max_conn, 1, 1 << 16, "N",
         "HTTP/metrics servers: connections at once (a thread each)", 0, 0},
        {"http-max-conn-per-ip", EM_FLAG_INT, &f->http_conn_per_ip, 1, 1 << 16, "N",
         "HTTP/metrics servers: connections at once from one client IP", 0, 0},
        {"http-conn-memory", EM_FLAG_LONG, &f->http_conn_memory, 4096, 1L << 30, "N",
         "HTTP/metrics servers: read buffer of one connection (larger headers get 431)", 0, 0},
        {"coll-timeout-ms", EM_FLAG_LONG, &f->coll_timeout_ms, 1, 86400000, "N",
         "gloo rendezvous/collective timeout", 0, 0},
        {"step-timeout-ms", EM_FLAG_LONG, &f->step_timeout_ms, 1, 86400000, "N",
         "floor of a step's progress deadline; a worker that misses it is declared hung, killed "
         "and restarted",
         0, 0},
        {"ready-timeout-ms", EM_FLAG_LONG, &f->ready_timeout_ms, 0, 86400000, "N",
         "wait this long for the workers before serving", 0, 0},
        {"max-message-bytes", EM_FLAG_LONG, &f->max_message_bytes, 1024, 1L << 30, "N",
         "largest gRPC request message accepted", 0, 0},
        {"drain-grace-ms", EM_FLAG_LONG, &f->drain_grace_ms, 0, 86400000, "N",
         "on SIGTERM, stop accepting calls and let running ones finish for up to N ms (0 = end "
         "them at once)",
         0, 0},
        {"kv-memory", EM_FLAG_STR, &f->kv_memory, 0, 0, "BYTES",
         "KV cache budget per worker: BYTES or N{K,M,G} (default: half the RAM split between the "
         "workers; 0 = no budget); requests wait until theirs fits",
         0, 0},
        {"kv-reserve", EM_FLAG_STR, &f->kv_reserve, 0, 0, "F",
         "share of max_tokens reserved at admission, 0..1 (default 1: never overcommit; lower "
         "admits more and preempts by recompute when memory runs out)",
         0, 0},
        {"demo-prompt", EM_FLAG_STR, &f->demo_prompt, 0, 0, "TEXT",
         "after start-up, run one generation through gRPC and print it", 0, 0},
        {"demo-chat", EM_FLAG_STR, &f->demo_chat, 0, 0, "MESSAGE",
         "the same with MESSAGE as a user chat message (the model's chat template)", 0, 0},
        {"demo-tokens", EM_FLAG_INT, &f->demo_tokens, 1, 1 << 20, "N",
         "tokens of the demo generation", 0, 0},
        {"exit-after-demo", EM_FLAG_BOOL, &f->exit_after_demo, 0, 1, NULL,
         "exit after the demo instead of serving", 0, 0},
        {"verbose", EM_FLAG_BOOL, &f->log_debug, 0, 1, NULL, "debug logging", 0, 0},
        {"log-format", EM_FLAG_STR, &f->log_format, 0, 0, "text|json",
         "log lines as text or as JSON objects (local workers follow)", 0, 0},
    };
    memcpy(t, table, sizeof table);
}

/* Checks what one flag cannot: combinations and the enumerations. EM_EINVAL: bad (message
 * printed). */
static em_status check(flags *f, const em_flag *table)
{
    for (int i = 0; i < N_FLAGS; i++) {
        f->workers_set |= table[i].value == &f->workers && table[i].source != EM_FLAG_SRC_DEFAULT;
        f->threads_set |= table[i].value == &f->threads && table[i].source != EM_FLAG_SRC_DEFAULT;
    }
    if (!f->threads_set && f->addrs.n == 0) { /* local workers share this host's CPUs */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        f->threads = cpus > f->workers ? (int)(cpus / f->workers) : 1;
        f->threads = f->threads > 64 ? 64 : f->threads;
    }
    if (f->addrs.n > 0) {
        if (f->workers_set && f->workers != f->addrs.n) {
            fprintf(stderr, "emserve: --workers %d but %d --worker-addr given\n", f->workers,
                    f->addrs.n);
            return EM_EINVAL;
        }
        f->workers = f->addrs.n;
        if (f->secret_file == NULL) {
            fprintf(stderr, "emserve: --worker-addr needs --cluster-secret-file (the workers' "
                            "--cluster-secret-file, the same secret)\n");
            return EM_EINVAL;
        }
    }
    if (f->itls_cert && f->itls_cert[0] && !(f->itls_ca && f->itls_ca[0])) {
        fprintf(stderr, "emserve: --internal-tls-cert needs --internal-tls-ca (internal TLS is "
                        "mutual)\n");
        return EM_EINVAL;
    }
    if (strcmp(f->act_quant_name, "f32") != 0 && strcmp(f->act_quant_name, "q8") != 0) {
        fprintf(stderr, "emserve: --act-quant: '%s' is not f32 or q8\n", f->act_quant_name);
        return EM_EINVAL;
    }
    f->act_quant = strcmp(f->act_quant_name, "q8") == 0;
    em_log_format lf;
    if (em_log_format_parse(f->log_format, &lf) != EM_OK) {
        fprintf(stderr, "emserve: --log-format: '%s' is not text or json\n", f->log_format);
        return EM_EINVAL;
    }
    em_log_set_format(lf);
    setenv("EMSERVE_WORKER_LOG_FORMAT", f->log_format, 0); /* for the workers we spawn */
    if (f->log_debug) {
        em_log_set_level(EM_LOG_DEBUG);
    }
    return EM_OK;
}

/* Fills f (defaults already in it); *exit_now set: exit now with status 0 (--help, --version);
 * EM_EINVAL: bad flags (message printed). Logs the effective configuration. */
static em_status parse(flags *f, int argc, char **argv, int *exit_now)
{
    static em_flag table[N_FLAGS];
    static em_flags fl = {"emserve",
                          "EMSERVE_",
                          EMSERVE_VERSION,
                          "usage: emserve [--model PATH] [--workers N] [--listen HOST:PORT] "
                          "[--http-listen HOST:PORT] [flags]",
                          table,
                          N_FLAGS,
                          NULL,
                          0,
                          0};
    char err[512] = "";
    flag_table(f, table);
    if (em_flags_parse(&fl, argc, argv, exit_now, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s (see --help)\n", err);
        return EM_EINVAL;
    }
    if (*exit_now) {
        return EM_OK;
    }
    if (check(f, table) != EM_OK) {
        return EM_EINVAL;
    }
    em_flags_log(&fl);
    return EM_OK;
}

/* One greedy generation through gRPC: of the text prompt, or (chat set) of one user message. */
static void run_demo(const char *addr, const flags *f, const char *prompt, int chat)
{
    coord_client *c = coord_client_create(addr);
    coord_client_req rq;
    coord_client_result res;
    coord_chat_msg msg = {"user", prompt};
    memset(&rq, 0, sizeof rq);
    if (chat) {
        rq.messages = &msg;
        rq.n_messages = 1;
        printf("demo user> %s\ndemo assistant> ", prompt);
    } else {
        rq.text = prompt;
        printf("demo> %s", prompt);
    }
    rq.max_tokens = f->demo_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.timeout_ms = 120000;
    rq.on_chunk = coord_client_chunk_to_stdout;
    fflush(stdout);
    coord_client_generate(c, &rq, &res);
    printf("\n");
    if (res.status != GRPC_STATUS_OK) {
        printf("demo failed: status %d: %s\n", res.status, res.message);
    } else {
        printf("demo ids:");
        for (int i = 0; i < res.n_output; i++) {
            printf(" %d", res.output_ids[i]);
        }
        printf("\ndemo finish_reason: %s (%d prompt + %d generated tokens)\n", res.finish_reason,
               res.prompt_tokens, res.completion_tokens);
    }
    fflush(stdout);
    coord_client_result_free(&res);
    coord_client_free(c);
}

/* SIGTERM: no new calls; running requests get up to grace_ms to finish (hardening, issue 12). */
/* Requests still held by the scheduler or still being written to their clients. */
static int busy(coord_server *srv, coord_sched *sched, coord_http *const *https,
                coord_sched_stats *st)
{
    coord_sched_get_stats(sched, st);
    return st->running + st->queued + coord_server_streams(srv) + coord_http_streams(https[0]) +
           coord_http_streams(https[1]);
}

static void drain(coord_server *srv, coord_sched *sched, coord_http *const *https, long grace_ms)
{
    coord_sched_stats st;
    if (busy(srv, sched, https, &st) == 0) {
        return;
    }
    EM_LOG_INFO("draining: %d running and %d queued requests get up to %ld ms", st.running,
                st.queued, grace_ms);
    coord_server_drain(srv);
    double t_end = em_now_s() + grace_ms / 1000.0;
    while (em_now_s() < t_end) {
        usleep(20000);
        if (busy(srv, sched, https, &st) == 0) {
            EM_LOG_INFO("drained");
            return;
        }
    }
    EM_LOG_WARN("drain grace over: ending %d running and %d queued requests with UNAVAILABLE",
                st.running, st.queued);
}

/* ---- HTTP (--http-listen: the API, health, metrics; --metrics-listen: health and metrics) -- */

static em_status start_http(const char *addr, int api, coord_http_opts o, coord_http **out)
{
    char err[512] = "";
    int port = 0;
    o.listen_addr = addr;
    o.api = api;
    em_status st = coord_http_start(&o, out, &port, err, sizeof err);
    if (st != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        return st;
    }
    char host[256];
    snprintf(host, sizeof host, "%s", addr);
    *strrchr(host, ':') = 0; /* coord_http_start checked the HOST:PORT form */
    if (api) {
        printf("http listening on %s:%d\n", host, port);
        fflush(stdout);
    } else {
        EM_LOG_INFO("metrics on http://%s (port %d)/metrics", addr, port);
    }
    return EM_OK;
}

/* --kv-memory (or $EMSERVE_KV_MEMORY, or the default share of RAM) and --kv-reserve. */
static em_status kv_budget_opts(const flags *f, coord_sched_opts *so, char *err, size_t errlen)
{
    const char *mem = f->kv_memory; /* the flag or its twin $EMSERVE_KV_MEMORY */
    if (mem && mem[0]) {
        em_status st = coord_kv_memory_parse(mem, &so->kv_memory, err, errlen);
        if (st != EM_OK) {
            return st;
        }
    } else {
        so->kv_memory = coord_kv_memory_default(f->workers);
    }
    if (f->kv_reserve) {
        char *end;
        double r = strtod(f->kv_reserve, &end);
        if (end == f->kv_reserve || *end || !(r >= 0 && r <= 1)) {
            snprintf(err, errlen, "--kv-reserve '%s': want a number in [0, 1]", f->kv_reserve);
            return EM_EINVAL;
        }
        so->kv_overcommit = 1.0 - r;
    }
    EM_LOG_INFO("KV memory budget: %lld bytes per worker%s", (long long)so->kv_memory,
                so->kv_memory == 0 ? " (none)" : "");
    return EM_OK;
}

/* The chat template of the model (tokenizer.chat_template); a model without one is fine. */
static em_status load_chat_template(const model *m, coord_chat_template *out)
{
    const gguf_kv *kv = gguf_find_kv(m->gguf, "tokenizer.chat_template");
    gguf_str s = {0, NULL};
    if (kv == NULL || gguf_get_arr_str(m->gguf, kv, 0, &s) != EM_OK) {
        s.len = 0;
    }
    em_status st = coord_chat_template_detect(s.data, (size_t)s.len, out);
    if (st == EM_OK) {
        const char *name = coord_chat_family_name(out->family);
        EM_LOG_INFO("chat template: %s%s", name[0] ? name : (kv ? "not supported" : "none"),
                    out->default_system ? " (with a default system message)" : "");
    }
    return st;
}

int main(int argc, char **argv)
{
    flags f = {.listen = "127.0.0.1:50051",
               .workers = 2,
               .threads = 1,
               .max_batch_tokens = 256,
               .max_seqs = 64,
               .prefill_chunk = 256,
               .mixed_prefill = 64,
               .respawn_delay_ms = 1000,
               .demo_tokens = 40,
               .coll_timeout_ms = 10000,
               .ready_timeout_ms = 120000,
               .step_timeout_ms = 3000,
               .max_message_bytes = 4L << 20,
               .max_queue = 256,
               .drain_grace_ms = 5000,
               .store_conn_per_client = COLL_STORE_MAX_CONN_PER_CLIENT,
               .store_bytes_per_client = COLL_STORE_MAX_BYTES_PER_CLIENT,
               .http_max_conn = COORD_HTTP_MAX_CONN,
               .http_conn_per_ip = COORD_HTTP_MAX_CONN_PER_IP,
               .http_conn_memory = COORD_HTTP_CONN_MEMORY,
               .act_quant_name = "f32",
               .log_format = "text"};
    f.addrs = (em_flag_list){f.addr_items, 0, COORD_MAX_WORKERS};
    em_log_set_role("coordinator");
    int exit_now = 0;
    if (parse(&f, argc, argv, &exit_now) != EM_OK) {
        return 2;
    }
    if (exit_now) {
        return 0;
    }
    if (f.model == NULL) {
        f.model = model_find_default();
    }
    if (f.model == NULL) {
        fprintf(stderr, "emserve: no --model given and the test model was not found\n");
        return 2;
    }
    /* `bazel run` starts us in the runfiles tree: resolve a relative --model against the
     * directory bazel was run from; workers get the absolute path. */
    static char model_abs[4096];
    const char *bwd = getenv("BUILD_WORKING_DIRECTORY");
    if (f.model[0] != '/' && access(f.model, R_OK) != 0 && bwd) {
        snprintf(model_abs, sizeof model_abs, "%s/%s", bwd, f.model);
        f.model = model_abs;
    }
    static char model_real[4096];
    if (realpath(f.model, model_real)) {
        f.model = model_real;
    }
    char err[512] = "";
    model *m = NULL;
    tokenizer *tok = NULL;
    coord_chat_template chat = {COORD_CHAT_NONE, NULL};
    if (model_load(f.model, &m, err, sizeof err) != EM_OK ||
        tok_create(m->gguf, &tok, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: cannot load %s: %s\n", f.model, err);
        model_free(m);
        return 2;
    }
    if (load_chat_template(m, &chat) != EM_OK) {
        fprintf(stderr, "emserve: out of memory reading the chat template\n");
        tok_free(tok);
        model_free(m);
        return 1;
    }
    if (f.workers > m->hp.n_kv_head) {
        fprintf(stderr,
                "emserve: %d workers cannot split %s: each worker needs at least one of its %d "
                "KV heads\n",
                f.workers, f.model, m->hp.n_kv_head);
        coord_chat_template_free(&chat);
        tok_free(tok);
        model_free(m);
        return 2;
    }
    /* The cluster secret: from the file, or made now for local workers (hardening, issue 12). */
    static char secret[RPC_SECRET_MAX + 1];
    if ((f.secret_file ? rpc_secret_read_file(f.secret_file, secret, sizeof secret, err, sizeof err)
                       : rpc_secret_generate(secret, sizeof secret)) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err[0] ? err : "cannot make a cluster secret");
        coord_chat_template_free(&chat);
        tok_free(tok);
        model_free(m);
        return 2;
    }
    /* TLS: the public port's and the internal one, read once (hardening, issue 12) */
    static rpc_tls tls, itls, htls;
    rpc_tls_files tf = {f.tls_cert, f.tls_key, f.tls_client_ca};
    rpc_tls_files itf = {f.itls_cert, f.itls_key, f.itls_ca};
    rpc_tls_files htf = {f.http_tls_cert, f.http_tls_key, NULL};
    if (rpc_tls_load(&tf, 1, &tls, err, sizeof err) != EM_OK ||
        rpc_tls_load(&itf, 1, &itls, err, sizeof err) != EM_OK ||
        rpc_tls_load(&htf, 1, &htls, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        rpc_tls_free(&tls);
        rpc_tls_free(&itls);
        coord_chat_template_free(&chat);
        tok_free(tok);
        model_free(m);
        return 2;
    }
    EM_LOG_INFO("public port: %s; HTTP ports: %s; internal traffic: %s",
                rpc_tls_on(&tls) ? (tls.ca ? "mutual TLS" : "TLS") : "plaintext",
                rpc_tls_on(&htls) ? "HTTPS" : "plain HTTP",
                rpc_tls_on(&itls) ? "mutual TLS (the store too; gloo: plaintext)"
                                  : "plaintext with the cluster secret");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Local workers: fork the spawner BEFORE grpc_init. */
    coord_spawner *sp = NULL;
    if (f.addrs.n == 0) {
        char bin[4096];
        if (coord_spawner_find_worker(f.worker_bin, bin, sizeof bin) != EM_OK) {
            fprintf(stderr, "emserve: emserve_worker not found (use --worker-bin PATH)\n");
            return 2;
        }
        coord_spawner_opts so = {bin,    f.model,     f.workers,  f.threads, f.respawn_delay_ms,
                                 secret, f.itls_cert, f.itls_key, f.itls_ca};
        if (!rpc_tls_on(&itls)) {
            so.tls_cert = so.tls_key = so.tls_ca = NULL;
        }
        if (coord_spawner_start(&so, &sp) != EM_OK) {
            fprintf(stderr, "emserve: cannot start the worker spawner\n");
            return 1;
        }
    }
    rpc_log_route(); /* gRPC's own lines in our format */
    grpc_init();
    coord_group *g = NULL;
    coord_sched *sched = NULL;
    coord_server *srv = NULL;
    coord_http *http = NULL, *mx = NULL;
    int port = 0, rc = 1;
    coord_group_opts go = {.model_path = f.model,
                           .n_threads = f.threads,
                           .max_batch_tokens = f.max_batch_tokens,
                           .max_slots = f.max_seqs,
                           .act_quant = f.act_quant,
                           .coll_timeout_ms = f.coll_timeout_ms,
                           .step_timeout_ms = f.step_timeout_ms,
                           .store_bind = f.store_bind,
                           .store_advertise = f.advertise,
                           .store_port = f.store_port,
                           .cluster_secret = secret,
                           .internal_tls = rpc_tls_on(&itls) ? &itls : NULL,
                           .internal_tls_name = f.itls_name,
                           .store_max_conn_per_client = f.store_conn_per_client,
                           .store_max_bytes_per_client = f.store_bytes_per_client};
    coord_sched_opts so = {.max_batch_tokens = f.max_batch_tokens,
                           .max_slots = f.max_seqs,
                           .prefill_chunk = f.prefill_chunk,
                           .mixed_prefill = f.mixed_prefill,
                           .max_queue = f.max_queue};
    if (kv_budget_opts(&f, &so, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        goto out;
    }
    if (coord_group_create(&m->hp, f.workers, f.addrs.n ? f.addrs.items : NULL, sp, &go, &g, err,
                           sizeof err) != EM_OK ||
        coord_sched_start(g, m, tok, &so, &sched) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err[0] ? err : "cannot start the scheduler");
        goto out;
    }
    coord_server_opts ro = {.listen_addr = f.listen,
                            .model_path = f.model,
                            .m = m,
                            .tok = tok,
                            .chat = &chat,
                            .sched = sched,
                            .group = g,
                            .max_batch_tokens = so.max_batch_tokens,
                            .max_slots = f.max_seqs,
                            .max_message_bytes = f.max_message_bytes,
                            .admin_secret = secret,
                            .tls = &tls};
    if (coord_server_start(&ro, &srv, &port, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        goto out;
    }
    coord_http_opts ho = {.model_path = f.model,
                          .m = m,
                          .tok = tok,
                          .chat = &chat,
                          .sched = sched,
                          .group = g,
                          .max_conn = f.http_max_conn,
                          .max_conn_per_ip = f.http_conn_per_ip,
                          .conn_memory_bytes = f.http_conn_memory,
                          .tls_cert_pem = htls.cert,
                          .tls_key_pem = htls.key};
    if ((f.metrics && start_http(f.metrics, 0, ho, &mx) != EM_OK) ||
        (f.http && start_http(f.http, 1, ho, &http) != EM_OK)) {
        goto out;
    }
    double t_end = em_now_s() + f.ready_timeout_ms / 1000.0;
    while (!coord_group_serving(g) && !g_stop && !coord_spawner_lost(sp) && em_now_s() < t_end) {
        usleep(20000);
    }
    if (!coord_group_serving(g)) {
        char why[512];
        coord_group_lost_reason(g, why, sizeof why);
        EM_LOG_WARN("workers not ready after %ld ms (%s); serving anyway (health: NOT_SERVING)",
                    f.ready_timeout_ms, why);
    }
    char host[256], addr[300];
    snprintf(host, sizeof host, "%s", f.listen);
    char *colon = strrchr(host, ':');
    if (colon) {
        *colon = 0;
    }
    snprintf(addr, sizeof addr, "%s:%d", strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host, port);
    printf("listening on %s:%d\n", host, port);
    fflush(stdout);
    EM_LOG_INFO("%d worker(s) over %d KV heads, model %s", f.workers, m->hp.n_kv_head, f.model);
    if ((f.demo_prompt || f.demo_chat) && rpc_tls_on(&tls)) {
        EM_LOG_WARN("the demo client speaks plaintext: no demo on a TLS port");
    } else {
        if (f.demo_prompt) {
            run_demo(addr, &f, f.demo_prompt, 0);
        }
        if (f.demo_chat) {
            run_demo(addr, &f, f.demo_chat, 1);
        }
    }
    if ((f.demo_prompt || f.demo_chat) && f.exit_after_demo) {
        g_stop = 1;
    }
    while (!g_stop && !coord_spawner_lost(sp)) {
        usleep(50000);
    }
    rc = 0;
    if (coord_spawner_lost(sp)) { /* it cannot be forked again after grpc_init */
        EM_LOG_ERROR("exiting with status 3 so that the supervisor restarts the service");
        rc = 3;
    } else if (f.drain_grace_ms > 0) {
        coord_http_drain(http); /* new HTTP generations 503, /health/ready 503 */
        coord_http_drain(mx);
        coord_http *https[2] = {http, mx};
        drain(srv, sched, https, f.drain_grace_ms);
    }
out:
    coord_http_shutdown(http); /* no HTTP thread touches the scheduler after these */
    coord_http_shutdown(mx);
    if (srv) {
        coord_server_shutdown(srv);
    }
    coord_sched_stop(sched);
    if (srv) {
        coord_server_join(srv);
    }
    coord_http_stop(http);
    coord_http_stop(mx);
    coord_group_free(g);
    grpc_shutdown();
    coord_spawner_stop(sp);
    coord_chat_template_free(&chat);
    tok_free(tok);
    model_free(m);
    rpc_tls_free(&tls);
    rpc_tls_free(&itls);
    rpc_tls_free(&htls);
    return rc;
}
