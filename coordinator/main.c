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
#include "coordinator/sched_kv.h"
#include "coordinator/spawner.h"
#include "model/model.h"
#include "model/tokenizer.h"

typedef struct flags {
    const char *model, *listen, *worker_bin, *store_bind, *advertise, *demo_prompt, *demo_chat;
    const char *metrics;
    char *addrs[COORD_MAX_WORKERS];
    int n_addrs, workers, workers_set, threads, max_batch_tokens, max_seqs, prefill_chunk;
    int respawn_delay_ms, demo_tokens, exit_after_demo, log_debug, store_port;
    long coll_timeout_ms, ready_timeout_ms;
    const char *kv_memory, *kv_reserve; /* KV memory budget (coordinator/sched_kv.h) */
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
        "  --kv-memory BYTES       KV cache budget per worker: BYTES or N{K,M,G} (default\n"
        "                          $EMSERVE_KV_MEMORY, else half the RAM split between the\n"
        "                          workers; 0 = no budget). Requests wait until theirs fits\n"
        "  --kv-reserve F          share of max_tokens reserved at admission, 0..1 (default 1:\n"
        "                          never overcommit; lower admits more and preempts by\n"
        "                          recompute when the memory runs out)\n"
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
    } else if (strcmp(k, "kv-memory") == 0) {
        f->kv_memory = v;
    } else if (strcmp(k, "kv-reserve") == 0) {
        f->kv_reserve = v;
    } else if (strcmp(k, "demo-prompt") == 0) {
        f->demo_prompt = v;
    } else if (strcmp(k, "demo-chat") == 0) {
        f->demo_chat = v;
    } else if (strcmp(k, "demo-tokens") == 0) {
        f->demo_tokens = atoi(v);
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
        f->max_batch_tokens < 1 || f->max_seqs < 1 || f->prefill_chunk < 1) {
        fprintf(stderr, "emserve: --workers must be in [1, %d]; sizes must be positive\n",
                COORD_MAX_WORKERS);
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

/* --kv-memory (or $EMSERVE_KV_MEMORY, or the default share of RAM) and --kv-reserve. */
static em_status kv_budget_opts(const flags *f, coord_sched_opts *so, char *err, size_t errlen)
{
    const char *mem = f->kv_memory ? f->kv_memory : getenv("EMSERVE_KV_MEMORY");
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
               .respawn_delay_ms = 1000,
               .demo_tokens = 40,
               .coll_timeout_ms = 10000,
               .ready_timeout_ms = 120000};
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
        coord_spawner_opts so = {bin, f.model, f.workers, f.threads, f.respawn_delay_ms};
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
    coord_group_opts go = {f.model,      f.threads,         f.max_batch_tokens,
                           f.max_seqs,   f.coll_timeout_ms, 0,
                           f.store_bind, f.advertise,       f.store_port};
    coord_sched_opts so = {f.max_batch_tokens, f.max_seqs, f.prefill_chunk, 0, 0};
    if (kv_budget_opts(&f, &so, err, sizeof err) != EM_OK) {
        fprintf(stderr, "emserve: %s\n", err);
        goto out;
    }
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
                            .max_slots = f.max_seqs};
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
    while (!coord_group_serving(g) && !g_stop && em_now_s() < t_end) {
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
    while (!g_stop) {
        usleep(50000);
    }
    rc = 0;
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
