/* emserve: the coordinator. Starts N local workers (or uses --worker-addr workers on other
 * machines), forms the gloo group, serves emserve.v1 over gRPC and prints
 * "listening on HOST:PORT" once every worker has joined. Flags and wiring only. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "coordinator/chat_template.h"
#include "coordinator/client.h"
#include "coordinator/group.h"
#include "coordinator/metrics.h"
#include "coordinator/rpc_server.h"
#include "coordinator/sched.h"
#include "coordinator/spawner.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "rpc/rpc_auth.h"

typedef struct flags {
    const char *model, *listen, *worker_bin, *store_bind, *advertise, *demo_prompt, *demo_chat;
    const char *metrics;
    const char *secret_file; /* hardening (issue 12) */
    char *addrs[COORD_MAX_WORKERS];
    int n_addrs, workers, workers_set, threads, max_batch_tokens, max_seqs, prefill_chunk;
    int respawn_delay_ms, demo_tokens, exit_after_demo, log_debug, store_port, act_quant;
    long coll_timeout_ms, ready_timeout_ms;
    long step_timeout_ms, max_message_bytes, drain_grace_ms; /* hardening (issue 12) */
    int max_queue;
} flags;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: emserve [--model PATH] [--workers N] [--listen HOST:PORT] [options]\n"
        "  --model PATH            GGUF model (default: $EMSERVE_MODEL or the test model)\n"
        "  --workers N             local worker processes (default 2; at most the KV heads)\n"
        "  --listen HOST:PORT      public gRPC address (default 127.0.0.1:50051; port 0 = any)\n"
        "  --worker-addr HOST:PORT a worker started by hand (repeat once per worker, in rank\n"
        "                          order); replaces local workers\n"
        "  --config FILE           lines 'flag value' (e.g. 'worker-addr 10.0.0.2:7001'), # "
        "comments\n"
        "  --worker-bin PATH       emserve_worker binary (default: next to this binary)\n"
        "  --threads N             kernel threads per worker (default 1)\n"
        "  --act-quant f32|q8      quantized-weight matmuls: f32 activations (default; the f32\n"
        "                          reference's answers) or int8 activations (llama.cpp's\n"
        "                          numerics, faster prompt processing)\n"
        "  --max-batch-tokens N    tokens per scheduler step (default 256)\n"
        "  --max-seqs N            sequences running at once (default 64)\n"
        "  --prefill-chunk N       most prompt tokens of one request per step (default 256)\n"
        "  --respawn-delay-ms N    restart a dead local worker after N ms (default 1000; -1 "
        "never)\n"
        "  --store-bind HOST       rendezvous store address (default 127.0.0.1; 0.0.0.0 "
        "multi-node)\n"
        "  --store-port N          rendezvous store port (default 0 = any free port)\n"
        "  --advertise-host HOST   address workers use to reach the store (default: store-bind)\n"
        "  --coll-timeout-ms N     gloo rendezvous/collective timeout (default 10000)\n"
        "  --ready-timeout-ms N    wait this long for the workers before serving (default 120000)\n"
        "  --metrics-listen H:P    Prometheus text endpoint (GET /metrics); off by default\n"
        "  --cluster-secret-file F shared secret of internal traffic (workers, rendezvous store)\n"
        "                          and of the admin view of GetServerInfo; required with\n"
        "                          --worker-addr (give the workers the same file); default for\n"
        "                          local workers: a random one made at start\n"
        "  --step-timeout-ms N     floor of a step's progress deadline (default 3000; the\n"
        "                          deadline grows with the step's tokens); a worker that misses\n"
        "                          it is declared hung, killed and restarted\n"
        "  --max-message-bytes N   largest request message accepted (default 4194304)\n"
        "  --max-queue N           requests waiting for a free sequence slot before new ones\n"
        "                          get RESOURCE_EXHAUSTED (default 256)\n"
        "  --drain-grace-ms N      on SIGTERM, stop accepting calls and let running ones finish\n"
        "                          for up to N ms before they end with UNAVAILABLE (default\n"
        "                          5000; 0 = end them at once)\n"
        "  --demo-prompt TEXT      after start-up, run one generation through gRPC and print it\n"
        "  --demo-chat MESSAGE     the same with MESSAGE as a user chat message (the model's chat\n"
        "                          template; SmolLM2 and other chat models)\n"
        "  --demo-tokens N         tokens of the demo generation (default 40)\n"
        "  --exit-after-demo       exit after the demo instead of serving\n"
        "  --verbose               debug logging\n");
}

static int set_flag(flags *f, const char *k, const char *v)
{
    if (strcmp(k, "model") == 0) {
        f->model = v;
    } else if (strcmp(k, "workers") == 0) {
        f->workers = atoi(v);
        f->workers_set = 1;
    } else if (strcmp(k, "listen") == 0) {
        f->listen = v;
    } else if (strcmp(k, "worker-addr") == 0) {
        if (f->n_addrs >= COORD_MAX_WORKERS) {
            return -1;
        }
        f->addrs[f->n_addrs++] = (char *)v;
    } else if (strcmp(k, "worker-bin") == 0) {
        f->worker_bin = v;
    } else if (strcmp(k, "threads") == 0) {
        f->threads = atoi(v);
    } else if (strcmp(k, "act-quant") == 0) {
        if (strcmp(v, "f32") != 0 && strcmp(v, "q8") != 0) {
            return -1;
        }
        f->act_quant = strcmp(v, "q8") == 0;
    } else if (strcmp(k, "max-batch-tokens") == 0) {
        f->max_batch_tokens = atoi(v);
    } else if (strcmp(k, "max-seqs") == 0) {
        f->max_seqs = atoi(v);
    } else if (strcmp(k, "prefill-chunk") == 0) {
        f->prefill_chunk = atoi(v);
    } else if (strcmp(k, "respawn-delay-ms") == 0) {
        f->respawn_delay_ms = atoi(v);
    } else if (strcmp(k, "store-bind") == 0) {
        f->store_bind = v;
    } else if (strcmp(k, "store-port") == 0) {
        f->store_port = atoi(v);
    } else if (strcmp(k, "advertise-host") == 0) {
        f->advertise = v;
    } else if (strcmp(k, "coll-timeout-ms") == 0) {
        f->coll_timeout_ms = atol(v);
    } else if (strcmp(k, "ready-timeout-ms") == 0) {
        f->ready_timeout_ms = atol(v);
    } else if (strcmp(k, "metrics-listen") == 0) {
        f->metrics = v;
    } else if (strcmp(k, "demo-prompt") == 0) {
        f->demo_prompt = v;
    } else if (strcmp(k, "demo-chat") == 0) {
        f->demo_chat = v;
    } else if (strcmp(k, "demo-tokens") == 0) {
        f->demo_tokens = atoi(v);
    } else if (strcmp(k, "cluster-secret-file") == 0) {
        f->secret_file = v;
    } else if (strcmp(k, "step-timeout-ms") == 0) {
        f->step_timeout_ms = atol(v);
    } else if (strcmp(k, "max-message-bytes") == 0) {
        f->max_message_bytes = atol(v);
    } else if (strcmp(k, "max-queue") == 0) {
        f->max_queue = atoi(v);
    } else if (strcmp(k, "drain-grace-ms") == 0) {
        f->drain_grace_ms = atol(v);
    } else {
        return -1;
    }
    return 0;
}

/* Reads 'flag value' lines; values are kept for the life of the process. */
static int read_config(flags *f, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "emserve: cannot open config %s\n", path);
        return -1;
    }
    char line[1024];
    int ln = 0;
    while (fgets(line, sizeof line, fp)) {
        ln++;
        char *p = line + strspn(line, " \t");
        p[strcspn(p, "#\r\n")] = 0;
        if (*p == 0) {
            continue;
        }
        char *k = strtok(p, " \t="), *v = strtok(NULL, " \t");
        if (k && strncmp(k, "--", 2) == 0) {
            k += 2;
        }
        if (k == NULL || v == NULL || set_flag(f, k, strdup(v)) != 0) {
            fprintf(stderr, "emserve: %s:%d: bad line (want 'flag value')\n", path, ln);
            fclose(fp);
            return -1;
        }
    }
    fclose(fp);
    return 0;
}

static int parse(flags *f, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--exit-after-demo") == 0) {
            f->exit_after_demo = 1;
        } else if (strcmp(a, "--verbose") == 0) {
            f->log_debug = 1;
        } else if (strncmp(a, "--", 2) == 0 && i + 1 < argc) {
            int rc = strcmp(a, "--config") == 0 ? read_config(f, argv[i + 1])
                                                : set_flag(f, a + 2, argv[i + 1]);
            if (rc != 0) {
                fprintf(stderr, "emserve: unknown or bad flag %s\n", a);
                return -1;
            }
            i++;
        } else {
            fprintf(stderr, "emserve: unknown flag or missing value: %s\n", a);
            return -1;
        }
    }
    if (f->n_addrs > 0) {
        if (f->workers_set && f->workers != f->n_addrs) {
            fprintf(stderr, "emserve: --workers %d but %d --worker-addr given\n", f->workers,
                    f->n_addrs);
            return -1;
        }
        f->workers = f->n_addrs;
    }
    if (f->workers < 1 || f->workers > COORD_MAX_WORKERS || f->threads < 0 ||
        f->max_batch_tokens < 1 || f->max_seqs < 1 || f->prefill_chunk < 1 ||
        f->step_timeout_ms < 1 || f->max_message_bytes < 1024 || f->max_queue < 0 ||
        f->drain_grace_ms < 0) {
        fprintf(stderr,
                "emserve: --workers must be in [1, %d]; sizes and timeouts must be positive "
                "(--max-message-bytes at least 1024, --max-queue at least 0)\n",
                COORD_MAX_WORKERS);
        return -1;
    }
    if (f->n_addrs > 0 && f->secret_file == NULL) {
        fprintf(stderr, "emserve: --worker-addr needs --cluster-secret-file (the workers' "
                        "--cluster-secret-file, the same secret)\n");
        return -1;
    }
    return 0;
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
static void drain(coord_server *srv, coord_sched *sched, long grace_ms)
{
    coord_sched_stats st;
    coord_sched_get_stats(sched, &st);
    if (st.running + st.queued == 0) {
        return;
    }
    EM_LOG_INFO("draining: %d running and %d queued requests get up to %ld ms", st.running,
                st.queued, grace_ms);
    coord_server_drain(srv);
    double t_end = em_now_s() + grace_ms / 1000.0;
    while (em_now_s() < t_end) {
        usleep(20000);
        coord_sched_get_stats(sched, &st);
        if (st.running + st.queued == 0) {
            EM_LOG_INFO("drained");
            return;
        }
    }
    EM_LOG_WARN("drain grace over: ending %d running and %d queued requests with UNAVAILABLE",
                st.running, st.queued);
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
               .respawn_delay_ms = 1000,
               .demo_tokens = 40,
               .coll_timeout_ms = 10000,
               .ready_timeout_ms = 120000,
               .step_timeout_ms = 3000,
               .max_message_bytes = 4L << 20,
               .max_queue = 256,
               .drain_grace_ms = 5000};
    if (parse(&f, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    em_log_set_role("coordinator");
    if (f.log_debug) {
        em_log_set_level(EM_LOG_DEBUG);
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
    if ((f.secret_file ? rpc_secret_read_file(f.secret_file, secret, sizeof secret, err,
                                              sizeof err)
                       : rpc_secret_generate(secret, sizeof secret)) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err[0] ? err : "cannot make a cluster secret");
        coord_chat_template_free(&chat);
        tok_free(tok);
        model_free(m);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Local workers: fork the spawner BEFORE grpc_init. */
    coord_spawner *sp = NULL;
    if (f.n_addrs == 0) {
        char bin[4096];
        if (coord_spawner_find_worker(f.worker_bin, bin, sizeof bin) != 0) {
            fprintf(stderr, "emserve: emserve_worker not found (use --worker-bin PATH)\n");
            return 2;
        }
        coord_spawner_opts so = {bin,       f.model, f.workers, f.threads, f.respawn_delay_ms,
                                 secret};
        if (coord_spawner_start(&so, &sp) != EM_OK) {
            fprintf(stderr, "emserve: cannot start the worker spawner\n");
            return 1;
        }
    }
    grpc_init();
    coord_group *g = NULL;
    coord_sched *sched = NULL;
    coord_server *srv = NULL;
    coord_metrics *mx = NULL;
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
                           .cluster_secret = secret};
    coord_sched_opts so = {.max_batch_tokens = f.max_batch_tokens,
                           .max_slots = f.max_seqs,
                           .prefill_chunk = f.prefill_chunk,
                           .max_queue = f.max_queue};
    if (coord_group_create(&m->hp, f.workers, f.n_addrs ? (const char *const *)f.addrs : NULL, sp,
                           &go, &g, err, sizeof err) != EM_OK ||
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
                            .admin_secret = secret};
    if (coord_server_start(&ro, &srv, &port, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        goto out;
    }
    if (f.metrics) {
        int mport = 0;
        int64_t cap = (int64_t)f.max_seqs * m->hp.n_ctx * m->hp.n_layer * m->hp.n_kv_head;
        if (coord_metrics_start(f.metrics, sched, cap, &mx, &mport, err, sizeof err) != EM_OK) {
            fprintf(stderr, "emserve: %s\n", err);
            goto out;
        }
        EM_LOG_INFO("metrics on http://%s (port %d)/metrics", f.metrics, mport);
    }
    double t_end = em_now_s() + f.ready_timeout_ms / 1000.0;
    while (!coord_group_serving(g) && !g_stop && !coord_spawner_lost(sp) && em_now_s() < t_end) {
        usleep(20000);
    }
    if (!coord_group_serving(g)) {
        EM_LOG_WARN("workers not ready after %ld ms (%s); serving anyway (health: NOT_SERVING)",
                    f.ready_timeout_ms, coord_group_lost_reason(g));
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
    if (f.demo_prompt) {
        run_demo(addr, &f, f.demo_prompt, 0);
    }
    if (f.demo_chat) {
        run_demo(addr, &f, f.demo_chat, 1);
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
        drain(srv, sched, f.drain_grace_ms);
    }
out:
    coord_metrics_stop(mx);
    if (srv) {
        coord_server_shutdown(srv);
    }
    coord_sched_stop(sched);
    if (srv) {
        coord_server_join(srv);
    }
    coord_group_free(g);
    grpc_shutdown();
    coord_spawner_stop(sp);
    coord_chat_template_free(&chat);
    tok_free(tok);
    model_free(m);
    return rc;
}
