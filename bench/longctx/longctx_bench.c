/* One point of the long-context throughput suite (bench/longctx/run.sh): sends --requests
 * passkey-retrieval prompts of exactly --context tokens to a running emserve at once (the
 * server's KV memory budget decides how many run together), each generating --max-tokens, and
 * appends one CSV row: output tokens/s over the whole batch, TTFT and inter-token latency
 * p50/p99, KV bytes held per request at its end, the most requests running at once (from
 * /metrics when --metrics is given, else -1), and how many answers contain their passkey.
 *
 * --ignore-eos 1 (default) makes every request generate exactly --max-tokens, as serving
 * benchmarks do (vLLM's benchmark_serving --ignore-eos): otherwise output tokens/s measures how
 * long the answers are, and a method that breaks the model into rambling would look faster. The
 * passkey is then looked for in the answer, the text streamed up to and including the chunk
 * that carries the first end-of-turn id (<|im_end|> or <|endoftext|>, as the server's Tokenize
 * names them), not in what the model generates past it.
 *
 * Prompt i: an instruction, filler text (--text, real prose) with "The pass key is NNNNN.
 * Remember it. NNNNN is the pass key." inserted at depth (i + 0.5) / requests, and the question;
 * with --format chat (default) all of it is one ChatML user turn ending in "What is the pass
 * key? Answer with the number only." followed by the assistant prompt, as eval/longctx asks
 * (the raw form, ending in "The pass key is", made the model continue the prose instead: the
 * same ids through tools:generate and the service gave the same wrong answers); ids come from
 * the server's Tokenize (specials parsed in the chat parts), so the count is exact for its
 * tokenizer. --kv KEY=VALUE adds KV parameters (e.g. prefill_keep=512). Progress goes to
 * stderr. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "bench/longctx/answer.h"
#include "common/file.h"
#include "common/status.h"
#include "common/timeutil.h"
#include "coordinator/client.h"
#include "ems/config.h"
#include "ems/footprint.h"

#define MAX_KV 8

typedef struct opts {
    const char *addr, *text, *csv, *metrics, *method, *quant, *label, *format;
    int context, requests, max_tokens, budget, workers, head_dim, ignore_eos, show;
    int32_t end_ids[2]; /* end-of-turn ids (-1: the tokenizer has no such single token) */
    long long kv_memory;
    int n_kv;                   /* --kv KEY=VALUE (repeatable) */
    const char *kv_key[MAX_KV]; /* points into kv_buf */
    const char *kv_val[MAX_KV];
    char kv_buf[MAX_KV][128];
} opts;

typedef struct job {
    const opts *o;
    int32_t *ids;
    int n_ids;
    char key[8];
    lc_answer answer; /* streamed text up to the first end-of-turn chunk */
    coord_client_result res;
    double t0;
} job;

static void usage(void)
{
    fprintf(stderr,
            "usage: longctx_bench --addr HOST:PORT --text FILE --context N [--requests R]\n"
            "  [--max-tokens T] [--kv-method M] [--kv-budget B] [--kv-quant int4|int8]\n"
            "  [--kv KEY=VALUE ...] [--format chat|raw] [--label NAME] [--ignore-eos 1|0]\n"
            "  [--show 1] (each request's key and answer to stderr)\n"
            "  [--workers W] [--kv-memory BYTES] (labels for the CSV) [--metrics HOST:PORT]\n"
            "  [--head-dim 64] [--csv PATH]\n"
            "  --format chat (default): the ChatML user turn + assistant prompt, as the eval\n"
            "  harness asks; raw: plain text ending in 'The pass key is'\n");
}

/* EM_EINVAL on an unknown flag, a flag without a value or a missing required one. */
static em_status parse(opts *o, int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--addr"))
            o->addr = v;
        else if (!strcmp(k, "--text"))
            o->text = v;
        else if (!strcmp(k, "--csv"))
            o->csv = v;
        else if (!strcmp(k, "--metrics"))
            o->metrics = v;
        else if (!strcmp(k, "--kv-method"))
            o->method = v;
        else if (!strcmp(k, "--kv-quant"))
            o->quant = v;
        else if (!strcmp(k, "--context"))
            o->context = atoi(v);
        else if (!strcmp(k, "--requests"))
            o->requests = atoi(v);
        else if (!strcmp(k, "--max-tokens"))
            o->max_tokens = atoi(v);
        else if (!strcmp(k, "--kv-budget"))
            o->budget = atoi(v);
        else if (!strcmp(k, "--workers"))
            o->workers = atoi(v);
        else if (!strcmp(k, "--head-dim"))
            o->head_dim = atoi(v);
        else if (!strcmp(k, "--kv-memory"))
            o->kv_memory = atoll(v);
        else if (!strcmp(k, "--label"))
            o->label = v;
        else if (!strcmp(k, "--show") && (!strcmp(v, "0") || !strcmp(v, "1")))
            o->show = atoi(v);
        else if (!strcmp(k, "--ignore-eos") && (!strcmp(v, "0") || !strcmp(v, "1")))
            o->ignore_eos = atoi(v);
        else if (!strcmp(k, "--format") && (!strcmp(v, "chat") || !strcmp(v, "raw")))
            o->format = v;
        else if (!strcmp(k, "--kv") && o->n_kv < MAX_KV && strchr(v, '=') &&
                 strlen(v) < sizeof o->kv_buf[0]) {
            char *b = o->kv_buf[o->n_kv];
            snprintf(b, sizeof o->kv_buf[0], "%s", v);
            char *eq = strchr(b, '=');
            *eq = 0;
            o->kv_key[o->n_kv] = b;
            o->kv_val[o->n_kv++] = eq + 1;
        } else
            return EM_EINVAL;
    }
    return (argc % 2 == 1 && o->addr && o->text && o->context > 0 && o->requests > 0) ? EM_OK
                                                                                      : EM_EINVAL;
}

/* special = 1: special-token texts (<|im_start|>) become their ids */
static int32_t *tokenize(coord_client *cl, const char *text, int special, int *n)
{
    coord_client_tokenize_req rq = {text, NULL, 0, 0, special};
    coord_client_tokens t;
    if (coord_client_tokenize(cl, &rq, &t) != GRPC_STATUS_OK) {
        fprintf(stderr, "Tokenize failed: %s\n", t.message);
        exit(1);
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(t.n_ids + 1));
    memcpy(ids, t.ids, sizeof(int32_t) * (size_t)t.n_ids);
    *n = t.n_ids;
    coord_client_tokens_free(&t);
    return ids;
}

/* Prompt i of exactly o->context tokens (filler repeated when the text is shorter). */
static void build_prompt(coord_client *cl, const opts *o, const int32_t *fill, int n_fill, int i,
                         job *j)
{
    snprintf(j->key, sizeof j->key, "%05d", (int)((i * 7919L + 12345) % 90000 + 10000));
    char needle[160];
    snprintf(needle, sizeof needle, " The pass key is %s. Remember it. %s is the pass key. ",
             j->key, j->key);
    int nh, nn, nq;
    int chat = strcmp(o->format, "chat") == 0;
    char head_text[256];
    snprintf(head_text, sizeof head_text,
             "%sThere is an important piece of information hidden "
             "inside a lot of irrelevant text. Find it and memorize it; I will ask you about it.\n",
             chat ? "<|im_start|>user\n" : "");
    int32_t *head = tokenize(cl, head_text, chat, &nh);
    int32_t *nd = tokenize(cl, needle, 0, &nn);
    int32_t *q = tokenize(cl,
                          chat ? "\nWhat is the pass key? Answer with the number only.<|im_end|>\n"
                                 "<|im_start|>assistant\n"
                               : "\nWhat is the pass key? The pass key is",
                          chat, &nq);
    int n_f = o->context - nh - nn - nq;
    if (n_f < 0) {
        fprintf(stderr, "context %d is too short for the passkey prompt\n", o->context);
        exit(1);
    }
    int at = (int)((i + 0.5) / o->requests * n_f);
    j->ids = malloc(sizeof(int32_t) * (size_t)o->context);
    int k = 0;
    memcpy(j->ids, head, sizeof(int32_t) * (size_t)nh);
    k = nh;
    for (int f = 0; f < n_f; f++) {
        if (f == at) {
            memcpy(j->ids + k, nd, sizeof(int32_t) * (size_t)nn);
            k += nn;
        }
        j->ids[k++] = fill[f % n_fill];
    }
    if (at >= n_f) {
        memcpy(j->ids + k, nd, sizeof(int32_t) * (size_t)nn);
        k += nn;
    }
    memcpy(j->ids + k, q, sizeof(int32_t) * (size_t)nq);
    j->n_ids = k + nq;
    free(head), free(nd), free(q);
}

/* The id of a special token's text, or -1 when it is not one token of this tokenizer. */
static int32_t special_id(coord_client *cl, const char *text)
{
    int n;
    int32_t *ids = tokenize(cl, text, 1, &n), id = n == 1 ? ids[0] : -1;
    free(ids);
    return id;
}

/* on_chunk: the answer grows until a chunk has carried an end-of-turn id. */
static int keep_answer(void *user, const int32_t *ids, int n, const char *text)
{
    job *j = user;
    /* out of memory: cancel this request (it is counted as failed) */
    return lc_answer_add(&j->answer, ids, n, text, j->o->end_ids) != EM_OK;
}

static void *run_job(void *p)
{
    job *j = p;
    const opts *o = j->o;
    coord_client *cl = coord_client_create(o->addr);
    coord_client_req rq;
    memset(&rq, 0, sizeof rq);
    rq.ids = j->ids;
    rq.n_ids = j->n_ids;
    rq.max_tokens = o->max_tokens;
    rq.temperature = 0;
    rq.top_k = -1;
    rq.ignore_eos = o->ignore_eos;
    rq.on_chunk = keep_answer;
    rq.user = j;
    rq.timeout_ms = 3600 * 1000;
    rq.kv_method = o->method;
    rq.kv_budget = o->budget;
    const char *qk[MAX_KV + 1], *qv[MAX_KV + 1];
    int nkv = 0;
    if (o->quant && o->quant[0])
        qk[nkv] = "quant", qv[nkv++] = o->quant;
    for (int i = 0; i < o->n_kv; i++)
        qk[nkv] = o->kv_key[i], qv[nkv++] = o->kv_val[i];
    rq.kv_keys = qk;
    rq.kv_vals = qv;
    rq.n_kv = nkv;
    j->t0 = em_now_s();
    coord_client_generate(cl, &rq, &j->res);
    coord_client_free(cl);
    fprintf(stderr, ".");
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define NOT_MEASURED (-1) /* in the CSV: a percentile of nothing, a metric not read */

static double pct(double *v, int n, double p)
{
    if (n == 0)
        return NOT_MEASURED;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* One metric's value from GET /metrics at host:port, or NOT_MEASURED. */
static long long metric(const char *hostport, const char *name)
{
    char host[256];
    snprintf(host, sizeof host, "%s", hostport);
    char *c = strrchr(host, ':');
    if (!c)
        return NOT_MEASURED;
    *c = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, c + 1, &hints, &ai) != 0)
        return NOT_MEASURED;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    long long v = NOT_MEASURED;
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        write(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25) == 25) {
        static char buf[65536];
        size_t n = 0;
        ssize_t r;
        while (n + 1 < sizeof buf && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
            n += (size_t)r;
        buf[n] = 0;
        char key[128];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(buf, key);
        v = p ? atoll(p + strlen(key)) : NOT_MEASURED;
    }
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return v;
}

int main(int argc, char **argv)
{
    opts o = {.requests = 8,
              .max_tokens = 64,
              .workers = 1,
              .head_dim = 64,
              .ignore_eos = 1,
              .method = "full",
              .format = "chat"};
    if (parse(&o, argc, argv) != EM_OK) {
        usage();
        return 2;
    }
    grpc_init();
    coord_client *cl = coord_client_create(o.addr);
    if (coord_client_wait_serving(cl, 600000) != EM_OK) {
        fprintf(stderr, "%s is not serving\n", o.addr);
        return 1;
    }
    char *text;
    size_t text_len;
    if (em_read_file(o.text, &text, &text_len) != EM_OK) {
        fprintf(stderr, "cannot read %s\n", o.text);
        return 1;
    }
    o.end_ids[0] = special_id(cl, "<|im_end|>");
    o.end_ids[1] = special_id(cl, "<|endoftext|>");
    int n_fill;
    int32_t *fill = tokenize(cl, text, 0, &n_fill);
    job *jobs = calloc((size_t)o.requests, sizeof *jobs);
    for (int i = 0; i < o.requests; i++) {
        jobs[i].o = &o;
        build_prompt(cl, &o, fill, n_fill, i, &jobs[i]);
    }
    fprintf(stderr, "%s B=%d %s: %d requests of %d tokens, %s%d generated each ", o.method,
            o.budget, o.quant ? o.quant : "", o.requests, o.context, o.ignore_eos ? "" : "up to ",
            o.max_tokens);
    pthread_t *th = malloc(sizeof(pthread_t) * (size_t)o.requests);
    double t0 = em_now_s();
    for (int i = 0; i < o.requests; i++)
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    for (int i = 0; i < o.requests; i++)
        pthread_join(th[i], NULL);
    double wall = em_now_s() - t0;

    ems_config cfg;
    ems_config_default(&cfg);
    char err[256];
    ems_config_set(&cfg, "method", o.method, err, sizeof err);
    if (o.budget > 0) {
        char b[32];
        snprintf(b, sizeof b, "%d", o.budget);
        ems_config_set(&cfg, "budget", b, err, sizeof err);
    }
    if (o.quant && o.quant[0])
        ems_config_set(&cfg, "quant", o.quant, err, sizeof err);
    for (int i = 0; i < o.n_kv; i++)
        ems_config_set(&cfg, o.kv_key[i], o.kv_val[i], err, sizeof err);
    double entry_bytes = (double)ems_footprint_entry_bytes(&cfg, o.head_dim);

    double *ttft = malloc(sizeof(double) * (size_t)o.requests), *itl = NULL, kv = 0;
    int n_ttft = 0, n_itl = 0, ok = 0, failed = 0;
    long tokens = 0;
    for (int i = 0; i < o.requests; i++) {
        coord_client_result *r = &jobs[i].res;
        if (r->status != GRPC_STATUS_OK) {
            fprintf(stderr, "\nrequest %d failed: %d %s", i, r->status, r->message);
            failed++;
            continue;
        }
        tokens += r->n_output;
        ttft[n_ttft++] = r->t_first_s * 1e3;
        itl = realloc(itl, sizeof(double) * (size_t)(n_itl + r->n_chunks));
        for (int k = 1; k < r->n_chunks; k++)
            itl[n_itl++] = (r->t_chunk_s[k] - r->t_chunk_s[k - 1]) * 1e3;
        kv += (double)r->kv_entries_kept * entry_bytes;
        ok += jobs[i].answer.text && strstr(jobs[i].answer.text, jobs[i].key) != NULL;
        if (o.show)
            fprintf(stderr, "\nrequest %d, key %s: %s", i, jobs[i].key,
                    jobs[i].answer.text ? jobs[i].answer.text : "");
    }
    if (o.show)
        fputc('\n', stderr); /* the summary below starts a line of its own */
    int n_done = o.requests - failed;
    long long running =
        o.metrics ? metric(o.metrics, "emserve_num_requests_running_max") : NOT_MEASURED;
    fprintf(stderr, " %.1f s, %.2f tok/s, passkey %d/%d, running at most %lld\n", wall,
            tokens / wall, ok, n_done, running);
    FILE *f = o.csv ? fopen(o.csv, "a") : stdout;
    if (f && o.csv && ftell(f) == 0) {
        fprintf(f,
                "method,budget,context,workers,kv_memory_bytes,out_tok_s,ttft_p50_ms,ttft_p99_ms,"
                "itl_p50_ms,itl_p99_ms,kv_bytes_per_req,running_max,passkey_ok,passkey_n,"
                "requests,max_tokens,failed,wall_s,ignore_eos\n");
    }
    const char *label = o.quant && o.quant[0] && !strcmp(o.method, "full") ? o.quant : o.method;
    char mlabel[64];
    if (o.quant && o.quant[0] && strcmp(o.method, "full")) {
        snprintf(mlabel, sizeof mlabel, "%s+%s", o.method, o.quant);
        label = mlabel;
    }
    if (o.label)
        label = o.label;
    fprintf(f, "%s,%d,%d,%d,%lld,%.3f,%.1f,%.1f,%.1f,%.1f,%.0f,%lld,%d,%d,%d,%d,%d,%.1f,%d\n",
            label, o.budget, o.context, o.workers, o.kv_memory, tokens / wall,
            pct(ttft, n_ttft, 0.5), pct(ttft, n_ttft, 0.99), pct(itl, n_itl, 0.5),
            pct(itl, n_itl, 0.99), n_done ? kv / n_done : 0, running, ok, n_done, o.requests,
            o.max_tokens, failed, wall, o.ignore_eos);
    if (o.csv)
        fclose(f);
    coord_client_free(cl);
    grpc_shutdown();
    return failed ? 1 : 0;
}
